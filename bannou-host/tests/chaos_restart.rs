//! Chaos: `kill -9` the real `bannou-host serve` process during wave 2 of a
//! 3-wave deploy, start it again on the same Redis, and check that it reconciles by
//! itself: the cut-off deploy's record is found and cleared, the last stable
//! configuration (one node) runs again and is current, nothing of the cut-off deploy is
//! left running, the mappings version never went back, and a lease taken before the
//! kill is still there, unchanged, its worker started again by reconciliation.
//!
//! The backend is the in-process one, so the kill also kills every node: after the
//! restart only what reconciliation starts can run. Needs redis-server: skipped without
//! it unless `BANNOU_TEST_REQUIRE` names `redis`. Every wait is bounded.

use std::fs::File;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bannou_host::client::ApiClient;
use bannou_host::clock::TokioClock;
use orchestrator_backends::redis::connection::{RedisConfig, RedisConnection};
use orchestrator_backends::redis::leases::{RedisLeaseStore, RedisLeaseStoreConfig};
use orchestrator_backends::redis::server::RedisServer;
use orchestrator_backends::redis::store::RedisStore;
use orchestrator_core::api::{
    AcquireProcessorRequest, DeployRequest, ReleaseProcessorRequest, ServiceHealthRequest,
};
use orchestrator_core::ports::store::OrchestratorStore;
use orchestrator_core::time::Clock;
use orchestrator_pools::{FencingToken, LeaseId, LeaseStore, PoolType, WorkerState};

/// Upper bound of every wait (never an assertion about speed).
const PATIENCE: Duration = Duration::from_secs(90);

const BASE: &str = "\
name: base
description: the stable deployment
topology:
  nodes:
    - name: base-auth
      services: [auth]
processingPools:
  - poolType: chaos-brain
    plugin: asset
    minInstances: 1
    maxInstances: 1
";

/// Three waves; the wave-2 node never heartbeats, so wave 2 waits for its deadline.
const THREE: &str = "\
name: three
description: three waves, the second one stuck
topology:
  nodes:
    - name: three-account
      services: [account]
    - name: three-world
      services: [realm]
      environment:
        BANNOU_HEARTBEAT_ENABLED: \"false\"
    - name: three-features
      services: [matchmaking]
";

fn serve(port: u16, redis: &str, presets: &Path, logs: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_bannou-host"))
        .env_clear()
        .env("RUST_LOG", "info")
        .env("ORCHESTRATOR_WAVE_TIMEOUT_SECONDS", "300")
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--redis",
            redis,
            "--presets",
        ])
        .arg(presets)
        .stdin(Stdio::null())
        .stdout(File::create(logs.with_extension("out")).unwrap())
        .stderr(File::create(logs.with_extension("err")).unwrap())
        .spawn()
        .expect("bannou-host starts")
}

/// Polls `check` every 200 ms until it yields a value; panics after [`PATIENCE`].
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "gave up: {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `(app-id, service)` of every service reported healthy.
async fn healthy(api: &ApiClient) -> Option<Vec<(String, String)>> {
    let h = api
        .services_health(&ServiceHealthRequest::default())
        .await
        .ok()?;
    let mut v: Vec<(String, String)> = h
        .healthy_services
        .into_iter()
        .map(|s| (s.app_id, s.service_id))
        .collect();
    v.sort();
    Some(v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_wave_2_then_restart_reverts_to_the_last_stable_deployment() {
    let test = "kill_9_during_wave_2_then_restart_reverts_to_the_last_stable_deployment";
    let Some(redis) = RedisServer::for_test(test) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let presets = dir.path().join("presets");
    std::fs::create_dir(&presets).unwrap();
    std::fs::write(presets.join("base.yaml"), BASE).unwrap();
    std::fs::write(presets.join("three.yaml"), THREE).unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let store = RedisStore::new(
        RedisConnection::connect(RedisConfig::new(redis.url()))
            .await
            .unwrap(),
    );
    let api = ApiClient::new(&format!("http://127.0.0.1:{port}"))
        .unwrap()
        .with_timeout(PATIENCE);

    let mut first = serve(port, &redis.url(), &presets, &dir.path().join("first"));
    eventually("the first process answers", || async {
        api.health().await.ok()
    })
    .await;
    let base = api
        .deploy(&DeployRequest {
            preset: Some("base".to_owned()),
            ..DeployRequest::default()
        })
        .await
        .unwrap();
    assert_eq!(base.status, 200, "{:?}", base.body.warnings);
    let stable = store.current_config().await.unwrap().unwrap();
    assert!(stable.stable);

    // A lease on the pool's worker, held across the kill and the restart.
    let leases = RedisLeaseStore::connect(&redis.url(), RedisLeaseStoreConfig::default())
        .await
        .unwrap();
    let pool = PoolType::new("chaos-brain").unwrap();
    let clock = TokioClock::system();
    eventually("the pool's worker is Available", || async {
        let s = leases.status(&pool, clock.now()).await.ok()?;
        (s.workers_in(WorkerState::Available).count() == 1).then_some(())
    })
    .await;
    let lease = api
        .acquire_processor(&AcquireProcessorRequest {
            pool_type: "chaos-brain".to_owned(),
            priority: 0,
            timeout_seconds: 600,
            metadata: None,
            wait_ms: 0,
        })
        .await
        .unwrap();

    // The 3-wave deploy, left running in the background; kill -9 once wave 2 has begun
    // (wave 1's node healthy, the deploy on record).
    let deploying = {
        let api = api.clone();
        tokio::spawn(async move {
            api.deploy(&DeployRequest {
                preset: Some("three".to_owned()),
                ..DeployRequest::default()
            })
            .await
        })
    };
    eventually("wave 1 healthy", || async {
        healthy(&api)
            .await?
            .contains(&("three-account".to_owned(), "account".to_owned()))
            .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let record = store
        .deploy_in_progress()
        .await
        .unwrap()
        .expect("the 3-wave deploy is on record");
    assert_eq!(record.preset_name.as_deref(), Some("three"));
    let version_before = store.mappings_version().await.unwrap();
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    let cut = deploying.await.unwrap();
    assert!(cut.is_err(), "the client saw the process die: {cut:?}");
    assert!(
        store.deploy_in_progress().await.unwrap().is_some(),
        "the record outlives the process"
    );

    // Restart: reconciliation reverts the cut-off deploy by itself.
    let mut second = serve(port, &redis.url(), &presets, &dir.path().join("second"));
    eventually("the record is cleared", || async {
        store
            .deploy_in_progress()
            .await
            .ok()
            .filter(Option::is_none)
            .map(|_| ())
    })
    .await;
    let services = eventually("the stable node runs again", || async {
        let h = healthy(&api).await?;
        h.contains(&("base-auth".to_owned(), "auth".to_owned()))
            .then_some(h)
    })
    .await;
    // The control plane (`bannou`) hosts every service nobody else routes.
    assert!(
        services
            .iter()
            .all(|(app, _)| app == "base-auth" || app == "bannou" || *app == lease.app_id),
        "nothing of the cut-off deploy runs: {services:?}"
    );

    // The lease survived unchanged, and its worker (an in-process node, gone with the
    // killed process) was started again by reconciliation under the same app-id.
    eventually("the leased worker heartbeats again", || async {
        healthy(&api)
            .await?
            .iter()
            .any(|(app, _)| *app == lease.app_id)
            .then_some(())
    })
    .await;
    let status = leases.status(&pool, clock.now()).await.unwrap();
    assert_eq!(status.workers.len(), 1, "{status:?}");
    let worker = &status.workers[0];
    assert_eq!(worker.app_id.as_str(), lease.app_id);
    assert_eq!(worker.state, WorkerState::Leased);
    assert_eq!(worker.lease_id, Some(LeaseId(lease.lease_id)));
    assert_eq!(status.leases.len(), 1);
    assert_eq!(
        status.leases[0].fencing_token,
        FencingToken(lease.fencing_token)
    );
    let mut release = ReleaseProcessorRequest::new(lease.lease_id);
    release.fencing_token = Some(lease.fencing_token);
    api.release_processor(&release).await.unwrap();
    let current = store.current_config().await.unwrap().unwrap();
    assert!(current.stable);
    assert_eq!(
        current
            .nodes
            .iter()
            .map(|n| n.app_id.to_string())
            .collect::<Vec<_>>(),
        ["base-auth"]
    );
    let version_after = store.mappings_version().await.unwrap();
    assert!(version_after >= version_before, "mappings never go back");
    let _ = second.kill();
    let _ = second.wait();
    let log = std::fs::read_to_string(dir.path().join("second.err")).unwrap_or_default();
    assert!(log.contains("cut-off deploy reconciled"), "{log}");
    println!(
        "checked: kill -9 during wave 2 of `three` (deploy {}), restart: record cleared, \
         base-auth healthy again and alone, current config version {} stable, mappings \
         version {version_before} -> {version_after}; lease {} (token {}) on {} held across \
         the kill and the restart unchanged, its worker started again, released with its token",
        record.deployment_id.unwrap_or_default(),
        current.version,
        lease.lease_id,
        lease.fencing_token,
        lease.app_id
    );
}

//! A Sentinel failover under a whole control plane: the host (in-process backend) on
//! `redis+sentinel://` with every lease operation waiting for one replica
//! (docs/DECISIONS.md#d44), a master, two replicas and a Sentinel on loopback ports.
//! While 50 clients acquire and release pool workers over HTTP and the pool's nodes
//! heartbeat, a deploy starts, and the master is killed once its first wave's node
//! runs. Afterwards, with nothing done by hand: the host answers, the deploy completed
//! or failed with a clear error (and a deploy tried again succeeds), heartbeats are
//! received again, no worker was leased to two clients at once, no acknowledged grant
//! was lost, the host leads again with a fencing token at least the one from before,
//! and once the clients stop every worker is free again (grants nobody received are
//! reclaimed at expiry by the new leader). The figures are the whole-host row of
//! RELIABILITY.md, "Sentinel failover".
//!
//! Needs redis-server and redis-sentinel: skipped without them unless
//! `BANNOU_TEST_REQUIRE` names `redis` or `sentinel`. Every wait is bounded; the servers
//! are killed when their guards drop.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use bannou_host::client::ApiClient;
use common::{Host, config, eventually, get_json};
use orchestrator_backends::sentinel_topology::SentinelTopology;
use orchestrator_core::api::{
    AcquireProcessorRequest, DeployRequest, GetPoolStatusRequest, ReleaseProcessorRequest,
};

const MASTER: &str = "bannou";

/// The pool the clients lease from, with the node that coordinates it.
const POOL_PRESET: &str = "\
name: failover-pool
description: a coordinator node and a pool of eight workers
topology:
  nodes:
    - name: failover-coordinator
      layers: [AppFoundation, GameFoundation]
      services: [actor]
      environment:
        ACTOR_DEPLOYMENT_MODE: control-plane
processingPools:
  - poolType: failover-brain
    plugin: actor
    minInstances: 8
    maxInstances: 8
    environment:
      ACTOR_DEPLOYMENT_MODE: pool-node
      ACTOR_POOL_NODE_TYPE: npc-brain
      ACTOR_POOL_NODE_CAPACITY: 100
";

/// The deploy that runs across the kill: the same pool and one node more (two waves:
/// L1 first, then the L2 coordinator).
const MORE_PRESET: &str = "\
name: failover-more
description: the pool preset and one node more
topology:
  nodes:
    - name: failover-coordinator
      layers: [AppFoundation, GameFoundation]
      services: [actor]
      environment:
        ACTOR_DEPLOYMENT_MODE: control-plane
    - name: failover-auth
      layers: [AppFoundation]
      services: [auth]
processingPools:
  - poolType: failover-brain
    plugin: actor
    minInstances: 8
    maxInstances: 8
    environment:
      ACTOR_DEPLOYMENT_MODE: pool-node
      ACTOR_POOL_NODE_TYPE: npc-brain
      ACTOR_POOL_NODE_CAPACITY: 100
";

const POOL: &str = "failover-brain";

/// The clients' lease duration: a grant nobody received (refused for want of a replica,
/// kept by the master that then won) is reclaimed by the leader soon after.
const LEASE_SECONDS: i64 = 5;

/// Bound on one API call while the master is gone: longer means the host hung.
const NO_HANG: Duration = Duration::from_secs(20);

/// What the clients saw.
#[derive(Default)]
struct Tally {
    /// processor -> client, from the grant until the client lets go of it.
    held: Mutex<HashMap<String, usize>>,
    double: AtomicU64,
    acquires_failed: AtomicU64,
    releases_retried: AtomicU64,
    /// Releases answered "not found" at the first attempt: a grant the failover lost.
    lost: AtomicU64,
    pairs: AtomicU64,
    pairs_after_kill: AtomicU64,
    /// Milliseconds from the kill to the first grant after it.
    window_ms: AtomicU64,
    /// Leases the clients gave up releasing (still busy in the pool).
    abandoned: AtomicU64,
}

/// One client: acquire, hold 10-40 ms, release (retried while the store is out), until
/// `stop`.
async fn client(
    api: ApiClient,
    n: usize,
    tally: Arc<Tally>,
    stop: Arc<AtomicBool>,
    killed_at: Arc<Mutex<Option<Instant>>>,
) {
    while !stop.load(Ordering::Relaxed) {
        let asked = tokio::time::timeout(
            NO_HANG,
            api.acquire_processor(&AcquireProcessorRequest {
                wait_ms: 500,
                timeout_seconds: LEASE_SECONDS,
                ..AcquireProcessorRequest::new(POOL)
            }),
        )
        .await
        .unwrap_or_else(|_| panic!("client {n}: an acquire hung for {NO_HANG:?}"));
        let lease = match asked {
            Ok(l) => l,
            Err(e) => {
                // 503 while the store is out; "no worker free" (409/429) when all are busy.
                if e.status() == Some(503) {
                    tally.acquires_failed.fetch_add(1, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let kill = *killed_at.lock().unwrap();
        if let Some(at) = kill {
            let ms = (at.elapsed().as_millis() as u64).max(1);
            let _ = tally
                .window_ms
                .compare_exchange(0, ms, Ordering::AcqRel, Ordering::Relaxed);
        }
        if let Some(other) = tally
            .held
            .lock()
            .unwrap()
            .insert(lease.processor_id.clone(), n)
        {
            eprintln!(
                "double lease of {}: client {other} and client {n}",
                lease.processor_id
            );
            tally.double.fetch_add(1, Ordering::Relaxed);
        }
        tokio::time::sleep(Duration::from_millis(10 + (n as u64 % 7) * 5)).await;
        // Let go before asking: once the release is answered another client may get it.
        tally.held.lock().unwrap().remove(&lease.processor_id);
        let mut released = false;
        for attempt in 0..100 {
            let answer = tokio::time::timeout(
                NO_HANG,
                api.release_processor(&ReleaseProcessorRequest {
                    fencing_token: Some(lease.fencing_token),
                    ..ReleaseProcessorRequest::new(lease.lease_id)
                }),
            )
            .await
            .unwrap_or_else(|_| panic!("client {n}: a release hung for {NO_HANG:?}"));
            match answer {
                Ok(_) => {
                    released = true;
                    break;
                }
                Err(e) if e.status() == Some(404) => {
                    // Gone: lost with the old master, or an earlier attempt that timed
                    // out did release it.
                    if attempt == 0 {
                        tally.lost.fetch_add(1, Ordering::Relaxed);
                    }
                    released = true;
                    break;
                }
                Err(_) => {
                    tally.releases_retried.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        if !released {
            tally.abandoned.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        tally.pairs.fetch_add(1, Ordering::Relaxed);
        if kill.is_some() {
            tally.pairs_after_kill.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The leadership of the host's `/health`: whether it leads, and the token.
async fn leadership(health_url: &str) -> (u16, bool, Option<u64>) {
    let (code, body) = get_json(health_url).await;
    (
        code,
        body["leader"].as_bool().unwrap_or(false),
        body["leadership"]["token"].as_u64(),
    )
}

fn deploy(preset: &str) -> DeployRequest {
    DeployRequest {
        preset: Some(preset.to_owned()),
        environment: Some(std::collections::BTreeMap::from([(
            "BANNOU_HEARTBEAT_INTERVAL_SECONDS".to_owned(),
            "1".to_owned(),
        )])),
        ..DeployRequest::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_control_plane_rides_a_sentinel_failover_under_load_by_itself() {
    let test = "the_control_plane_rides_a_sentinel_failover_under_load_by_itself";
    let Some(mut servers) = SentinelTopology::start(test, MASTER, Duration::from_secs(10)).await
    else {
        return;
    };
    let presets = tempfile::tempdir().unwrap();
    std::fs::write(presets.path().join("failover-pool.yaml"), POOL_PRESET).unwrap();
    std::fs::write(presets.path().join("failover-more.yaml"), MORE_PRESET).unwrap();
    let mut cfg = config(presets.path());
    cfg.redis_url = Some(servers.url());
    cfg.redis_wait_replicas = 1;
    cfg.heartbeat_interval = Duration::from_secs(1);
    cfg.leader_lease = Duration::from_secs(2);
    cfg.lease_cleanup_interval = Duration::from_secs(1);
    let host = Host::start(cfg).await;
    let health_url = format!("{}/health", host.server.base_url());

    let reply = host.api.deploy(&deploy("failover-pool")).await.unwrap();
    assert_eq!(reply.status, 200, "{:?}", reply.body.warnings);
    let pool_status = || async {
        host.api
            .pool_status(&GetPoolStatusRequest {
                pool_type: POOL.to_owned(),
                include_metrics: false,
            })
            .await
    };
    eventually("the pool's eight workers are up", || async {
        let s = pool_status().await.ok()?;
        (s.total_instances >= 8).then_some(())
    })
    .await;
    let (_, leads, token_before) = leadership(&health_url).await;
    assert!(leads, "one control plane leads");

    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let killed_at: Arc<Mutex<Option<Instant>>> = Arc::default();
    let clients: Vec<_> = (0..50)
        .map(|n| {
            let api = ApiClient::new(&host.server.base_url()).unwrap();
            tokio::spawn(client(
                api,
                n,
                tally.clone(),
                stop.clone(),
                killed_at.clone(),
            ))
        })
        .collect();
    eventually("the clients lease and release", || async {
        (tally.pairs.load(Ordering::Relaxed) >= 50).then_some(())
    })
    .await;

    // The deploy runs while the master dies.
    let api = host.api.clone();
    let during = tokio::spawn(async move { api.deploy(&deploy("failover-more")).await });
    // Killed as soon as the first wave's new node runs: the deploy is then between its
    // waves (the store not yet told of the new routes).
    let deadline = Instant::now() + common::PATIENCE;
    while host.endpoints("failover-auth").is_empty() && !during.is_finished() {
        assert!(Instant::now() < deadline, "the first wave never started");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let deploy_running_at_kill = !during.is_finished();
    servers.master.kill();
    *killed_at.lock().unwrap() = Some(Instant::now());
    let deploy_outcome = tokio::time::timeout(Duration::from_secs(120), during)
        .await
        .expect("the deploy across the kill ends")
        .unwrap();
    let first_deploy = match &deploy_outcome {
        Ok(r) if r.status == 200 => "completed".to_owned(),
        Ok(r) => format!("answered {} ({:?})", r.status, r.body.warnings),
        Err(e) => {
            let message = e.to_string();
            assert!(
                message.contains("unavailable") || message.contains("Redis"),
                "a failed deploy says why: {message}"
            );
            format!("failed: {message}")
        }
    };

    // Back by itself: the host's store, a grant after the kill, the leader.
    let health_back = eventually("/health is 200 after the failover", || async {
        (get_json(&health_url).await.0 == 200).then(|| killed_at.lock().unwrap().unwrap().elapsed())
    })
    .await;
    eventually("a grant after the kill", || async {
        (tally.window_ms.load(Ordering::Relaxed) > 0).then_some(())
    })
    .await;
    let token_after = eventually("the host leads again", || async {
        match leadership(&health_url).await {
            (200, true, token) => Some(token),
            _ => None,
        }
    })
    .await;
    assert!(
        token_after >= token_before,
        "fencing token {token_after:?} after, {token_before:?} before"
    );
    eventually("a deploy after the failover succeeds", || async {
        let r = host.api.deploy(&deploy("failover-more")).await.ok()?;
        (r.status == 200).then_some(())
    })
    .await;
    // The nodes' heartbeats reach the store again.
    let beats = format!("{}/metrics", host.server.base_url());
    let received = || async {
        let text = common::http()
            .get(&beats)
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix("bannou_orchestrator_heartbeats_received_total "))?
            .trim()
            .parse::<f64>()
            .ok()
    };
    let beats_then = eventually("a heartbeat count", received).await;
    eventually("heartbeats are received after the failover", || async {
        (received().await? > beats_then).then_some(())
    })
    .await;
    eventually("work goes on after the failover", || async {
        (tally.pairs_after_kill.load(Ordering::Relaxed) >= 50).then_some(())
    })
    .await;

    stop.store(true, Ordering::Relaxed);
    for c in clients {
        tokio::time::timeout(Duration::from_secs(60), c)
            .await
            .expect("a client stops")
            .expect("a client ran to its end");
    }
    let busy = pool_status().await.unwrap().busy_instances;
    // Every client has let go; what is still busy is a grant the clients never received
    // or a lease a client gave up releasing. The re-elected leader reclaims them at
    // expiry, so the pool's records agree with the clients: nothing busy.
    eventually("every worker free once the clients stopped", || async {
        let s = pool_status().await.ok()?;
        (s.busy_instances == 0).then_some(())
    })
    .await;
    let t = &tally;
    let (double, lost, abandoned) = (
        t.double.load(Ordering::Relaxed),
        t.lost.load(Ordering::Relaxed),
        t.abandoned.load(Ordering::Relaxed),
    );
    assert_eq!(double, 0, "no worker leased to two clients at once");
    assert_eq!(
        lost, 0,
        "no acknowledged grant lost (leases wait for a replica)"
    );
    host.shutdown().await;
    println!(
        "failover under the host: deploy across the kill (running at the kill: \
         {deploy_running_at_kill}) {first_deploy}; /health 200 again \
         {health_back:?} after the kill; first grant {} ms after; acquires failed {}, \
         releases retried {}; double leases {double}, leases lost {lost}; pairs {} ({} after \
         the kill); busy when the clients stopped {busy} (abandoned {abandoned}), then 0; leader token \
         {token_before:?} -> {token_after:?}",
        t.window_ms.load(Ordering::Relaxed),
        t.acquires_failed.load(Ordering::Relaxed),
        t.releases_retried.load(Ordering::Relaxed),
        t.pairs.load(Ordering::Relaxed),
        t.pairs_after_kill.load(Ordering::Relaxed),
    );
}

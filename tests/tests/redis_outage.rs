//! A Redis outage under the whole host: the control
//! plane and one in-process node on a real `redis-server`, which is then frozen
//! (`SIGSTOP`: connections stay open, nothing answers, the case where a client that waits
//! for an answer hangs), and later killed outright.
//!
//! While Redis is frozen: `/health` answers 503 naming the store, API calls that need Redis
//! answer 503 with a clear message (each within a bound: they must not hang), and the
//! node's heartbeats are counted as dropped. When Redis continues, everything resumes by
//! itself: `/health` is 200, the configuration version is the one from before (nothing
//! lost), and the node is healthy again reporting how many beats it dropped. Killed
//! (connection refused), calls fail fast again; restarted, `/health` recovers.
//!
//! Needs redis-server: skipped without it unless `BANNOU_TEST_REQUIRE` names `redis`.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

use bannou_host::client::ClientError;
use common::{Host, config, eventually, get_json, http};
use orchestrator_backends::redis::server::RedisServer;
use orchestrator_core::api::{
    DeployRequest, GetConfigVersionRequest, GetPoolStatusRequest, ServiceHealthRequest,
};
use orchestrator_core::health::DROPPED_HEARTBEATS_KEY;

/// How long a call may take while Redis is out before we call it a hang. A bound on
/// liveness, not a performance assertion: the Redis client's own limits are 0.5 s to
/// connect and 1 s per answer.
const NO_HANG: Duration = Duration::from_secs(15);

const PRESET: &str = "\
name: outage
description: one node heartbeating through Redis
topology:
  nodes:
    - name: outage-auth
      services: [auth]
";

/// Runs `call` and fails the test when it takes longer than [`NO_HANG`]; returns its
/// result and how long it took.
async fn bounded<T>(what: &str, call: impl std::future::Future<Output = T>) -> (T, Duration) {
    let started = Instant::now();
    let out = tokio::time::timeout(NO_HANG, call)
        .await
        .unwrap_or_else(|_| panic!("{what} hung for {NO_HANG:?} while Redis was out"));
    (out, started.elapsed())
}

/// The value of the unlabelled series `name` in a scrape of `url`.
async fn metric(url: &str, name: &str) -> Option<f64> {
    let text = http().get(url).send().await.ok()?.text().await.ok()?;
    let line = text.lines().find(|l| l.split(' ').next() == Some(name))?;
    line.rsplit(' ').next()?.parse().ok()
}

fn status_and_message(e: &ClientError) -> (Option<u16>, String) {
    (
        e.status(),
        e.api_error()
            .map(|a| a.error.clone())
            .unwrap_or_else(|| e.to_string()),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_fails_fast_counts_dropped_heartbeats_and_recovers_by_itself() {
    let test = "a_redis_outage_fails_fast_counts_dropped_heartbeats_and_recovers_by_itself";
    let Some(mut redis) = RedisServer::for_test(test) else {
        return;
    };
    let presets = tempfile::tempdir().unwrap();
    std::fs::write(presets.path().join("outage.yaml"), PRESET).unwrap();
    let mut cfg = config(presets.path());
    cfg.redis_url = Some(redis.url());
    // The store monitor pings every heartbeat interval: every second, within the outage.
    cfg.heartbeat_interval = Duration::from_secs(1);
    let host = Host::start(cfg).await;
    let health_url = format!("{}/health", host.server.base_url());

    let deploy = DeployRequest {
        preset: Some("outage".to_owned()),
        // Beat every second so that dropped beats show within the outage.
        environment: Some(BTreeMap::from([(
            "BANNOU_HEARTBEAT_INTERVAL_SECONDS".to_owned(),
            "1".to_owned(),
        )])),
        ..DeployRequest::default()
    };
    let reply = host.api.deploy(&deploy).await.unwrap();
    assert_eq!(reply.status, 200, "{:?}", reply.body.warnings);
    let version = host
        .api
        .config_version(&GetConfigVersionRequest::default())
        .await
        .unwrap()
        .version;

    // --- Frozen: nothing answers, nothing is refused. ---
    redis.pause().unwrap();
    let ((code, body), health_took) = bounded("/health", get_json(&health_url)).await;
    assert_eq!(code, 503, "{body}");
    assert_eq!(body["status"], "degraded", "{body}");
    assert_ne!(body["store"], "ok", "{body}");

    let (answer, config_took) = bounded(
        "config version",
        host.api.config_version(&GetConfigVersionRequest::default()),
    )
    .await;
    let (status, message) = status_and_message(&answer.unwrap_err());
    assert_eq!(status, Some(503), "{message}");
    assert!(message.contains("unavailable"), "{message}");

    let (answer, pool_took) = bounded(
        "pool status",
        host.api.pool_status(&GetPoolStatusRequest {
            pool_type: "npc-brain".to_owned(),
            include_metrics: true,
        }),
    )
    .await;
    let (status, message) = status_and_message(&answer.unwrap_err());
    assert_eq!(status, Some(503), "{message}");
    assert!(message.contains("Redis unavailable"), "{message}");

    // Let the node's beats fail for a few seconds.
    tokio::time::sleep(Duration::from_secs(4)).await;
    redis.resume().unwrap();

    // --- Continued: everything resumes by itself, nothing lost. ---
    eventually("/health is 200 again", || async {
        (get_json(&health_url).await.0 == 200).then_some(())
    })
    .await;
    // The store monitor counted the failed pings and the store's return, and every bus
    // subscriber of the host lost Redis and got it back.
    let metrics_url = format!("{}/metrics", host.server.base_url());
    let counted = |name: &'static str| {
        let url = metrics_url.clone();
        async move {
            eventually(name, || async {
                let value = metric(&url, name).await?;
                (value >= 1.0).then_some(value)
            })
            .await
        }
    };
    counted("bannou_orchestrator_store_reconnects_total").await;
    counted("bannou_orchestrator_store_errors_total").await;
    counted("bannou_orchestrator_bus_reconnects_total").await;
    let after = host
        .api
        .config_version(&GetConfigVersionRequest::default())
        .await
        .unwrap()
        .version;
    assert_eq!(after, version, "the configuration survived the outage");
    let dropped = eventually("the node reports its dropped beats, healthy", || async {
        let health = host
            .api
            .services_health(&ServiceHealthRequest::default())
            .await
            .ok()?;
        let entry = health
            .healthy_services
            .iter()
            .find(|s| s.app_id == "outage-auth" && s.service_id == "auth")?;
        entry
            .metadata
            .as_ref()?
            .get(DROPPED_HEARTBEATS_KEY)?
            .as_u64()
    })
    .await;
    assert!(dropped >= 1, "{dropped}");

    // --- Killed: refused at once; restarted: back by itself. ---
    redis.kill();
    let ((code, _), killed_health_took) = bounded("/health", get_json(&health_url)).await;
    assert_eq!(code, 503);
    let (answer, killed_config_took) = bounded(
        "config version",
        host.api.config_version(&GetConfigVersionRequest::default()),
    )
    .await;
    assert_eq!(answer.unwrap_err().status(), Some(503));
    redis.restart().unwrap();
    eventually("/health is 200 after the restart", || async {
        (get_json(&health_url).await.0 == 200).then_some(())
    })
    .await;

    host.shutdown().await;
    println!(
        "checked: Redis frozen (SIGSTOP): /health 503 in {health_took:?}, config version 503 in \
         {config_took:?}, pool status 503 in {pool_took:?}; resumed: /health 200, config \
         version {version} kept, node healthy reporting {dropped} dropped heartbeat(s); Redis \
         killed: /health 503 in {killed_health_took:?}, config version 503 in \
         {killed_config_took:?}; restarted: /health 200"
    );
}

//! Renew and drain of pool workers over HTTP on a whole host in process (D60
//! (docs/DECISIONS.md#d60)): a renew extends a lease and a stale fencing token is refused
//! (409) and counted in `/metrics`; draining a busy worker sends its holder a
//! `pool.worker-draining` event on the event stream, no new lease goes to it, and it
//! stops at the deadline when never released; draining the whole pool leaves the busy
//! worker to finish, and it stops once released. The same flow runs over in-memory
//! adapters and over a real `redis-server` started on a free port.

mod common;

use std::time::Duration;

use bannou_host::client::EventStream;
use common::{Host, PATIENCE, config, deploy, eventually, http};
use futures::StreamExt;
use orchestrator_backends::redis::server::RedisServer;
use orchestrator_core::api::{
    AcquireProcessorRequest, AcquireProcessorResponse, DrainPoolRequest, ReleaseProcessorRequest,
    RenewProcessorRequest,
};
use serde_json::Value;

/// A pool of exactly two workers on the in-process backend.
const POOL_PRESET: &str = "\
name: drain-pool
description: One pool for renew and drain
processingPools:
  - poolType: drain-pool
    plugin: actor
    minInstances: 2
    maxInstances: 2
";

/// Waits (bounded) for the next `pool.worker-draining` event and returns its data.
async fn next_draining(stream: &mut EventStream) -> Value {
    let read = async {
        while let Some(item) = stream.next().await {
            let e = item.expect("a well-formed event");
            if e.event == "pool.worker-draining" {
                return serde_json::from_str(&e.data).expect("JSON data");
            }
        }
        panic!("the stream ended early");
    };
    tokio::time::timeout(PATIENCE, read)
        .await
        .expect("the draining event arrives in time")
}

async fn acquire(host: &Host) -> AcquireProcessorResponse {
    host.api
        .acquire_processor(&AcquireProcessorRequest {
            wait_ms: 20_000,
            ..AcquireProcessorRequest::new("drain-pool")
        })
        .await
        .unwrap()
}

/// One sample of the host's `/metrics` (no token configured: loopback).
async fn sample(host: &Host, series: &str) -> Option<f64> {
    let text = http()
        .get(format!("{}/metrics", host.server.base_url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    orchestrator_core::testkit::scrape::value(&text, series)
}

async fn flow(host: &Host, label: &str) {
    let mut stream = host
        .api
        .events(Some("pool.worker-draining"), None, None)
        .await
        .unwrap();
    let reply = host.api.deploy(&deploy("drain-pool")).await.unwrap();
    assert!(reply.body.success, "{:?}", reply.body.warnings);
    let a = acquire(host).await;

    // Renew: from the current expiry; a stale token is refused and counted.
    let renewed = host
        .api
        .renew_processor(&RenewProcessorRequest {
            extend_seconds: 60,
            ..RenewProcessorRequest::new(a.lease_id, a.fencing_token)
        })
        .await
        .unwrap();
    assert_eq!(renewed.expires_at, a.expires_at + Duration::from_secs(60));
    assert_eq!(renewed.fencing_token, a.fencing_token);
    let stale = host
        .api
        .renew_processor(&RenewProcessorRequest::new(a.lease_id, a.fencing_token + 1))
        .await
        .unwrap_err();
    assert_eq!(stale.status(), Some(409), "{stale}");
    let counted = r#"bannou_orchestrator_pool_stale_fencing_tokens_total{pool="drain-pool",operation="renew"}"#;
    assert_eq!(sample(host, counted).await, Some(1.0));
    let unknown = host
        .api
        .renew_processor(
            &serde_json::from_value(serde_json::json!(
                {"leaseId": "5a0e2c4e-4f4c-4a77-9d38-6d0f5c1e9b11", "fencingToken": 1}
            ))
            .unwrap(),
        )
        .await
        .unwrap_err();
    assert_eq!(unknown.status(), Some(404), "{unknown}");
    println!("[{label}] renew +60 s; stale token 409 and counted; unknown lease 404");

    // Drain the busy worker with a 2 s deadline; its holder never releases.
    let drained = host
        .api
        .drain_pool(&DrainPoolRequest {
            processor_id: Some(a.app_id.clone()),
            deadline_seconds: Some(2),
            ..DrainPoolRequest::new("drain-pool")
        })
        .await
        .unwrap();
    assert_eq!(drained.draining, vec![a.app_id.clone()]);
    let event = next_draining(&mut stream).await;
    assert_eq!(event["leaseId"], a.lease_id.to_string(), "{event}");
    assert_eq!(event["processorId"], a.processor_id, "{event}");
    assert_eq!(event["reason"], "drain", "{event}");
    let draining = host
        .api
        .renew_processor(&RenewProcessorRequest::new(a.lease_id, a.fencing_token))
        .await
        .unwrap_err();
    assert_eq!(draining.status(), Some(409), "{draining}");
    let b = acquire(host).await;
    assert_ne!(
        b.processor_id, a.processor_id,
        "no new lease on a drained worker"
    );
    eventually("the drained worker stops at its deadline", || async {
        (!host.listed().await.contains(&a.app_id)).then_some(())
    })
    .await;
    let late = host
        .api
        .release_processor(&ReleaseProcessorRequest {
            fencing_token: Some(a.fencing_token),
            ..ReleaseProcessorRequest::new(a.lease_id)
        })
        .await
        .unwrap_err();
    assert_eq!(
        late.status(),
        Some(404),
        "its lease ended at the deadline: {late}"
    );
    println!(
        "[{label}] drained {} (busy): event to its holder, next lease elsewhere, stopped at the 2 s deadline",
        a.app_id
    );

    // Drain the whole pool: the busy worker finishes, then stops once released.
    let all = host
        .api
        .drain_pool(&DrainPoolRequest::new("drain-pool"))
        .await
        .unwrap();
    assert!(all.draining.contains(&b.app_id), "{all:?}");
    let event = next_draining(&mut stream).await;
    assert_eq!(event["leaseId"], b.lease_id.to_string(), "{event}");
    assert!(
        host.listed().await.contains(&b.app_id),
        "not stopped mid-job"
    );
    host.api
        .release_processor(&ReleaseProcessorRequest {
            fencing_token: Some(b.fencing_token),
            ..ReleaseProcessorRequest::new(b.lease_id)
        })
        .await
        .unwrap();
    eventually("the released drained worker stops", || async {
        (!host.listed().await.contains(&b.app_id)).then_some(())
    })
    .await;
    println!(
        "[{label}] drained the whole pool: {} stopped at once, {} finished its job and stopped on release",
        all.removed.len(),
        b.app_id
    );
}

fn pool_config(dir: &std::path::Path) -> bannou_host::config::HostConfig {
    std::fs::write(dir.join("drain-pool.yaml"), POOL_PRESET).unwrap();
    config(dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renew_and_drain_over_http_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::start(pool_config(dir.path())).await;
    flow(&host, "memory").await;
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renew_and_drain_over_http_with_redis() {
    let Some(redis) = RedisServer::for_test("renew_and_drain_over_http_with_redis") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = pool_config(dir.path());
    cfg.redis_url = Some(redis.url());
    let host = Host::start(cfg).await;
    flow(&host, "redis").await;
    host.shutdown().await;
    drop(redis);
}

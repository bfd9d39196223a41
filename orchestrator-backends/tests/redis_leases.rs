//! The Redis lease store against a real `redis-server` on a free port (skipped with a
//! printed reason when `redis-server` is missing, a failure under
//! `BANNOU_TEST_REQUIRE=redis`): the shared conformance suite, the shared 64 x 2,000 stress
//! run, waiting through `watch`, one-round-trip scripts surviving `SCRIPT FLUSH`, and an
//! outage answering `Unavailable` fast.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use orchestrator_backends::redis::leases::{RedisLeaseStore, RedisLeaseStoreConfig};
use orchestrator_backends::redis::server::RedisServer;
use orchestrator_core::Timestamp;
use orchestrator_pools::testkit::{
    StressConfig, lease_store_conformance, lease_store_stress, pool_with_workers, t,
};
use orchestrator_pools::{AcquireOutcome, AcquireRequest, LeaseError, LeaseStore, acquire_waiting};

/// A fresh key prefix per store, so scenarios never see each other's keys.
fn prefix(test: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!("test:{test}:{}:", N.fetch_add(1, Ordering::SeqCst))
}

async fn store(server: &RedisServer, test: &str) -> RedisLeaseStore {
    RedisLeaseStore::connect(
        &server.url(),
        RedisLeaseStoreConfig::with_prefix(prefix(test)),
    )
    .await
    .expect("connect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_passes_the_conformance_suite() {
    let Some(server) = RedisServer::for_test("redis_store_passes_the_conformance_suite") else {
        return;
    };
    let server = &server;
    lease_store_conformance(|| async move { store(server, "conformance").await }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_tasks_never_double_lease_on_redis() {
    let Some(server) = RedisServer::for_test("sixty_four_tasks_never_double_lease_on_redis") else {
        return;
    };
    let store = store(&server, "stress").await;
    let report = lease_store_stress(Arc::new(store.clone()), StressConfig::default()).await;
    store
        .check_invariants(&report.pool)
        .await
        .expect("redis records agree with each other");
    eprintln!(
        "redis stress: {} completed, {} failed, {} reclaimed",
        report.completed, report.failed, report.reclaimed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_is_woken_by_the_release_not_by_polling() {
    let Some(server) = RedisServer::for_test("a_waiter_is_woken_by_the_release_not_by_polling")
    else {
        return;
    };
    let store = store(&server, "watch").await;
    let (pool, _) = pool_with_workers(&store, 1, 1).await;
    let now = || Timestamp::from_unix_millis(1_767_225_600_000) + tokio_elapsed();
    let held = match store
        .acquire(&pool, AcquireRequest::new("holder"), now())
        .await
        .expect("acquire")
        .outcome
    {
        AcquireOutcome::Leased(l) => l,
        other => panic!("expected a lease, got {other:?}"),
    };
    let releaser = {
        let store = store.clone();
        let pool = pool.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            store
                .release(&pool, held.lease_id, held.fencing_token, true, now())
                .await
                .expect("release")
        })
    };
    let started = tokio::time::Instant::now();
    // A sleep that would take the whole wait proves the wake-up came from the BLPOP.
    let got = acquire_waiting(
        &store,
        &pool,
        AcquireRequest::new("waiter").wait(Duration::from_secs(4)),
        now,
        |d| tokio::time::sleep(d),
    )
    .await
    .expect("acquire_waiting");
    let waited = started.elapsed();
    let released = releaser.await.expect("releaser");
    let lease = got
        .outcome
        .lease()
        .cloned()
        .expect("the waiter got the worker");
    assert_eq!(Some(&lease), released.handed_off.as_ref());
    assert_eq!(lease.holder, "waiter");
    assert!(
        waited < Duration::from_secs(2),
        "woken by the grant, not by the timeout: {waited:?}"
    );
    // No worker free and a short wait: Exhausted after the wait, ticket gone.
    let again = acquire_waiting(
        &store,
        &pool,
        AcquireRequest::new("late").wait(Duration::from_millis(300)),
        now,
        |d| tokio::time::sleep(d),
    )
    .await
    .expect("acquire_waiting");
    assert_eq!(again.outcome, AcquireOutcome::Exhausted);
    assert_eq!(
        store
            .status(&pool, now())
            .await
            .expect("status")
            .load
            .queue_depth,
        0
    );
    store.check_invariants(&pool).await.expect("invariants");
}

/// Milliseconds of tokio time since the first call, for a wall-like `now` in the wait test.
fn tokio_elapsed() -> Duration {
    static START: std::sync::OnceLock<tokio::time::Instant> = std::sync::OnceLock::new();
    START.get_or_init(tokio::time::Instant::now).elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_are_reloaded_after_script_flush_and_an_outage_is_unavailable_fast() {
    let Some(mut server) = RedisServer::for_test(
        "scripts_are_reloaded_after_script_flush_and_an_outage_is_unavailable_fast",
    ) else {
        return;
    };
    let store = store(&server, "noscript").await;
    let (pool, _) = pool_with_workers(&store, 2, 2).await;
    let client = redis::Client::open(server.url()).expect("client");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("conn");
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut conn)
        .await
        .expect("flush");
    let a = store
        .acquire(&pool, AcquireRequest::new("after-flush"), t(1))
        .await
        .expect("EVALSHA falls back to loading the script");
    assert!(a.outcome.lease().is_some());
    // No KEYS/SCAN needed and nothing outside the prefix: every key is the pool's.
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut conn)
        .await
        .expect("keys");
    assert!(
        keys.iter().all(|k| k.starts_with(store.prefix())),
        "{keys:?}"
    );

    server.kill();
    let started = tokio::time::Instant::now();
    let err = store
        .acquire(&pool, AcquireRequest::new("outage"), t(2))
        .await
        .expect_err("Redis is down");
    assert!(matches!(err, LeaseError::Unavailable { .. }), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "fails fast: {:?}",
        started.elapsed()
    );
    let _ = store.status(&pool, t(2)).await;
    server.restart().expect("restart");
    // The connection manager reconnects by itself; the data set is empty after a restart.
    let mut answered = None;
    for _ in 0..50 {
        match store.list_pools().await {
            Ok(p) => {
                answered = Some(p);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    assert_eq!(answered, Some(vec![]), "reconnected to the empty server");
    let err = store
        .status(&pool, t(3))
        .await
        .expect_err("pool is gone with the data");
    assert!(matches!(err, LeaseError::UnknownPool { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upstream_baseline_leases_and_releases_like_upstream() {
    use orchestrator_backends::redis::leases::baseline::UpstreamBaseline;
    let Some(server) =
        RedisServer::for_test("the_upstream_baseline_leases_and_releases_like_upstream")
    else {
        return;
    };
    let b = UpstreamBaseline::connect(&server.url(), prefix("baseline"))
        .await
        .expect("connect");
    b.setup("p", 2, t(0)).await.expect("setup");
    let lease = Duration::from_secs(10);
    let first = b
        .acquire("p", lease, t(0))
        .await
        .expect("acquire")
        .expect("one");
    let second = b
        .acquire("p", lease, t(0))
        .await
        .expect("acquire")
        .expect("two");
    assert_ne!(first.processor_id, second.processor_id);
    assert_eq!(b.acquire("p", lease, t(1)).await.expect("acquire"), None);
    assert!(
        b.release(first.lease_id, true, t(2))
            .await
            .expect("release")
    );
    assert!(!b.release(first.lease_id, true, t(2)).await.expect("404"));
    let again = b
        .acquire("p", lease, t(3))
        .await
        .expect("acquire")
        .expect("freed");
    assert_eq!(again.processor_id, first.processor_id);
    // Expired leases are reclaimed by the next acquire (13.6).
    let reclaimed = b.acquire("p", lease, t(60)).await.expect("acquire");
    assert!(reclaimed.is_some());
}

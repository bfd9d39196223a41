//! The Redis store against a real `redis-server` (skips without one unless
//! `BANNOU_TEST_REQUIRE=redis`): the shared conformance suite, data shapes OpenResty and
//! upstream read, corrupt data, and a kill-and-restart of the server.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use orchestrator_backends::redis::connection::{RedisConfig, RedisConnection};
use orchestrator_backends::redis::server::RedisServer;
use orchestrator_backends::redis::store::RedisStore;
use orchestrator_core::Timestamp;
use orchestrator_core::events::{InstanceHealthStatus, ServiceHealthStatus};
use orchestrator_core::ports::store::{OrchestratorStore, StoreError};
use orchestrator_core::records::{HeartbeatRecord, RoutingRecord};
use orchestrator_core::testkit::store::{TestTime, store_conformance};
use tokio::time::{Instant, timeout};

/// Real time: Redis judges TTLs by its own clock.
struct Sleep;

#[async_trait]
impl TestTime for Sleep {
    async fn advance(&self, d: Duration) {
        tokio::time::sleep(d).await;
    }
}

async fn connect(server: &RedisServer) -> RedisConnection {
    RedisConnection::connect(RedisConfig::new(server.url()))
        .await
        .expect("connect to the test server")
}

async fn raw(server: &RedisServer) -> redis::aio::MultiplexedConnection {
    redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

fn route(app_id: &str) -> RoutingRecord {
    RoutingRecord {
        app_id: app_id.to_owned(),
        host: app_id.to_owned(),
        port: 80,
        status: Some(ServiceHealthStatus::Healthy),
        last_updated: Timestamp::from_unix_millis(1_700_000_000_000),
        load_percent: 3,
    }
}

fn heartbeat(app_id: &str) -> HeartbeatRecord {
    HeartbeatRecord {
        instance_id: format!("{app_id}-1"),
        app_id: app_id.to_owned(),
        status: InstanceHealthStatus::Healthy,
        last_seen: Timestamp::from_unix_millis(1_700_000_000_000),
        services: vec!["auth".to_owned()],
        issues: None,
        max_connections: 0,
        current_connections: 0,
        cpu_usage: 0.0,
        memory_usage: 0.0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_passes_the_conformance_suite() {
    let Some(server) = RedisServer::for_test("redis_store_passes_the_conformance_suite") else {
        return;
    };
    let conn = connect(&server).await;
    let n = AtomicUsize::new(0);
    let started = Instant::now();
    store_conformance(
        || {
            let prefix = format!("conf{}", n.fetch_add(1, Ordering::Relaxed));
            let store = RedisStore::with_prefix(conn.clone(), prefix);
            async move { (store, Sleep) }
        },
        // 1 s rather than less: the expiry checks keep a full second of margin on a
        // loaded machine (about 12 s of sleeps in all).
        Duration::from_secs(1),
    )
    .await;
    println!(
        "checked: store_conformance on Redis ({} fresh prefixes, unit 1 s) in {:?}",
        n.load(Ordering::Relaxed),
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_are_pascal_case_json_under_the_spec_keys() {
    let Some(server) = RedisServer::for_test("records_are_pascal_case_json_under_the_spec_keys")
    else {
        return;
    };
    let store = RedisStore::new(connect(&server).await);
    store
        .put_route("auth", &route("node-a"), Duration::from_secs(300))
        .await
        .unwrap();
    store.next_mappings_version().await.unwrap();
    let mut con = raw(&server).await;
    let json: String = redis::cmd("GET")
        .arg("orch:rt:auth")
        .query_async(&mut con)
        .await
        .unwrap();
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        (&value["AppId"], &value["Host"], &value["Port"]),
        (&"node-a".into(), &"node-a".into(), &80.into())
    );
    let ttl: i64 = redis::cmd("PTTL")
        .arg("orch:rt:auth")
        .query_async(&mut con)
        .await
        .unwrap();
    assert!((299_000..=300_000).contains(&ttl), "PTTL {ttl}");
    let version: String = redis::cmd("GET")
        .arg("orch:cfg:mappings-version")
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(version, r#"{"Version":1}"#);
    // An upstream-written counter is continued.
    let _: () = redis::cmd("SET")
        .arg("orch:cfg:mappings-version")
        .arg(r#"{"Version": 41}"#)
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(store.next_mappings_version().await.unwrap(), 42);
    println!(
        "checked: orch:rt:auth holds AppId/Host/Port JSON with PX TTL; counters are {{\"Version\":n}}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_data_is_corrupt_not_a_crash() {
    let Some(server) = RedisServer::for_test("undecodable_data_is_corrupt_not_a_crash") else {
        return;
    };
    let store = RedisStore::with_prefix(connect(&server).await, "bad");
    let mut con = raw(&server).await;
    for (key, value) in [
        ("bad:rt:auth", "{not json"),
        ("bad:hb:node-a", "[1,2]"),
        ("bad:cfg:mappings-version", "{\"Nope\":1}"),
        ("bad:cfg:current", "{\"Version\":\"x\"}"),
    ] {
        let _: () = redis::cmd("SET")
            .arg(key)
            .arg(value)
            .query_async(&mut con)
            .await
            .unwrap();
    }
    let corrupt = |r: Result<_, StoreError>, key: &str| match r {
        Err(StoreError::Corrupt { key: k, .. }) => assert_eq!(k, key),
        other => panic!("expected Corrupt for {key}, got {other:?}"),
    };
    corrupt(store.get_route("auth").await.map(drop), "bad:rt:auth");
    corrupt(
        store
            .set_route_if(
                "auth",
                Some("node-a"),
                &route("node-a"),
                Duration::from_secs(5),
            )
            .await
            .map(drop),
        "bad:rt:auth",
    );
    corrupt(
        store.get_heartbeat("node-a").await.map(drop),
        "bad:hb:node-a",
    );
    corrupt(
        store.next_mappings_version().await.map(drop),
        "bad:cfg:mappings-version",
    );
    corrupt(store.current_config().await.map(drop), "bad:cfg:current");
    corrupt(
        store.mark_config_stable(1).await.map(drop),
        "bad:cfg:current",
    );
    // A corrupt record listed through the index is reported too.
    store
        .put_heartbeat(&heartbeat("node-b"), Duration::from_secs(5))
        .await
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg("bad:hb:node-b")
        .arg("oops")
        .query_async(&mut con)
        .await
        .unwrap();
    corrupt(store.list_heartbeats().await.map(drop), "bad:hb:node-b");
    println!(
        "checked: bad JSON in routes, heartbeats, counters and config is StoreError::Corrupt with its key"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_fails_fast_while_redis_is_down_and_recovers_after_restart() {
    let Some(mut server) =
        RedisServer::for_test("store_fails_fast_while_redis_is_down_and_recovers_after_restart")
    else {
        return;
    };
    let config = RedisConfig::new(server.url());
    let bound = config.call_timeout + Duration::from_millis(500);
    let store = RedisStore::with_prefix(RedisConnection::connect(config).await.unwrap(), "outage");
    let ttl = Duration::from_secs(60);
    store
        .put_heartbeat(&heartbeat("node-a"), ttl)
        .await
        .unwrap();

    server.kill();
    let mut slowest = Duration::ZERO;
    for i in 0..5 {
        let t0 = Instant::now();
        let result = timeout(Duration::from_secs(10), store.get_heartbeat("node-a"))
            .await
            .expect("a call during the outage must return");
        let took = t0.elapsed();
        slowest = slowest.max(took);
        assert!(
            matches!(result, Err(StoreError::Unavailable { .. })),
            "call {i} during the outage: {result:?}"
        );
        assert!(took <= bound, "call {i} took {took:?}, bound {bound:?}");
    }
    let t0 = Instant::now();
    let write = timeout(
        Duration::from_secs(10),
        store.put_heartbeat(&heartbeat("x"), ttl),
    )
    .await
    .expect("bounded");
    assert!(
        matches!(write, Err(StoreError::Unavailable { .. })),
        "{write:?}"
    );
    slowest = slowest.max(t0.elapsed());

    tokio::task::block_in_place(|| server.restart()).expect("restart");
    let t0 = Instant::now();
    let recovered = timeout(Duration::from_secs(10), async {
        loop {
            if store.ping().await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(recovered.is_ok(), "the store did not recover within 10 s");
    let recovery = t0.elapsed();
    store
        .put_heartbeat(&heartbeat("node-b"), ttl)
        .await
        .unwrap();
    assert_eq!(
        store.get_heartbeat("node-b").await.unwrap(),
        Some(heartbeat("node-b")),
        "the same store works after the restart"
    );
    assert_eq!(store.list_heartbeats().await.unwrap().len(), 1);
    println!(
        "checked: 6 calls during the outage failed Unavailable (slowest {slowest:?}, bound {bound:?}); \
         same store answered {recovery:?} after restart"
    );
}

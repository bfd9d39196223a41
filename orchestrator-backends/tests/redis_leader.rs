//! The Redis leader election against a real `redis-server` (skips without one unless
//! `BANNOU_TEST_REQUIRE=redis`): the shared conformance suite, the key layout and the
//! server-side expiry, scripts surviving `SCRIPT FLUSH`, a corrupt record, and an outage
//! answering `Unavailable` without changing the lease.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use orchestrator_backends::redis::connection::{RedisConfig, RedisConnection};
use orchestrator_backends::redis::leader::RedisLeaderElection;
use orchestrator_backends::redis::server::RedisServer;
use orchestrator_core::Timestamp;
use orchestrator_core::ports::leader::{LeaderElection, LeaderError};
use orchestrator_core::testkit::leader::{TestTime, leader_conformance};

/// Real time: Redis judges the lease by its own clock.
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

/// A fresh key prefix per election, so scenarios never see each other's lease or tokens.
fn prefix(test: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!("test-{test}-{}", N.fetch_add(1, Ordering::SeqCst))
}

fn now() -> Timestamp {
    Timestamp::from_unix_millis(1_780_000_000_000)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_leader_election_passes_the_conformance_suite() {
    let Some(server) = RedisServer::for_test("redis_leader_election_passes_the_conformance_suite")
    else {
        return;
    };
    let conn = connect(&server).await;
    let conn = &conn;
    leader_conformance(
        || async move {
            (
                RedisLeaderElection::with_prefix(conn.clone(), prefix("conformance")),
                Sleep,
            )
        },
        Duration::from_millis(300),
    )
    .await;
    println!("checked: the leader conformance suite passes on redis-server (unit 300 ms)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_live_under_the_prefix_and_expiry_is_the_servers() {
    let Some(server) =
        RedisServer::for_test("keys_live_under_the_prefix_and_expiry_is_the_servers")
    else {
        return;
    };
    let election = RedisLeaderElection::new(connect(&server).await);
    assert_eq!(election.lease_key(), "orch:{leader}:lease");
    let got = election
        .try_acquire_or_renew("replica-a", Duration::from_secs(5), now())
        .await
        .unwrap()
        .expect("acquired");
    let mut con = raw(&server).await;
    let value: String = redis::cmd("GET")
        .arg("orch:{leader}:lease")
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(value, format!("{} replica-a", got.fencing_token));
    let pttl: i64 = redis::cmd("PTTL")
        .arg("orch:{leader}:lease")
        .query_async(&mut con)
        .await
        .unwrap();
    assert!(
        pttl > 4_000 && pttl <= 5_000,
        "the server holds the TTL (PX): {pttl}"
    );
    let counter: u64 = redis::cmd("GET")
        .arg("orch:{leader}:token")
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(counter, got.fencing_token);
    let counter_ttl: i64 = redis::cmd("PTTL")
        .arg("orch:{leader}:token")
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(counter_ttl, -1, "the token counter never expires");

    // Whatever `now` a replica passes (its clock may be hours off), the lease it sees is
    // the server's: another candidate with a clock far ahead is still refused.
    let far_ahead = now() + Duration::from_secs(3_600);
    assert_eq!(
        election
            .try_acquire_or_renew("replica-b", Duration::from_secs(5), far_ahead)
            .await
            .unwrap(),
        None,
        "a replica whose clock is an hour ahead cannot take a live lease"
    );
    let seen = election.current(far_ahead).await.unwrap().expect("live");
    assert!(
        seen.expires_at > far_ahead && seen.expires_at <= far_ahead + Duration::from_secs(5),
        "expires_at is the server's remaining time in the caller's clock: {seen:?}"
    );
    println!(
        "checked: lease `orch:{{leader}}:lease` = \"{value}\" with PTTL {pttl} ms, token counter without TTL, \
         a replica with a clock 1 h ahead is refused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_survive_script_flush() {
    let Some(server) = RedisServer::for_test("scripts_survive_script_flush") else {
        return;
    };
    let election = RedisLeaderElection::with_prefix(connect(&server).await, prefix("flush"));
    let first = election
        .try_acquire_or_renew("a", Duration::from_secs(5), now())
        .await
        .unwrap()
        .expect("acquired");
    let mut con = raw(&server).await;
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut con)
        .await
        .unwrap();
    let renewed = election
        .try_acquire_or_renew("a", Duration::from_secs(5), now())
        .await
        .expect("EVALSHA falls back to EVAL after NOSCRIPT")
        .expect("still held");
    assert_eq!(renewed.fencing_token, first.fencing_token);
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut con)
        .await
        .unwrap();
    assert!(
        election
            .release("a", first.fencing_token, now())
            .await
            .unwrap()
    );
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(election.current(now()).await.unwrap(), None);
    println!("checked: acquire, release and current each work after SCRIPT FLUSH");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_lease_record_is_reported_and_left_alone() {
    let Some(server) = RedisServer::for_test("a_corrupt_lease_record_is_reported_and_left_alone")
    else {
        return;
    };
    let p = prefix("corrupt");
    let election = RedisLeaderElection::with_prefix(connect(&server).await, &p);
    let key = format!("{p}:{{leader}}:lease");
    let mut con = raw(&server).await;
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg("not-a-lease")
        .arg("PX")
        .arg(60_000)
        .query_async(&mut con)
        .await
        .unwrap();
    let got = election
        .try_acquire_or_renew("a", Duration::from_secs(5), now())
        .await;
    assert!(
        matches!(&got, Err(LeaderError::Corrupt { key: k, .. }) if *k == key),
        "{got:?}"
    );
    let current = election.current(now()).await;
    assert!(
        matches!(current, Err(LeaderError::Corrupt { .. })),
        "{current:?}"
    );
    let value: String = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(
        value, "not-a-lease",
        "nobody took over a record it cannot read"
    );
    println!(
        "checked: a lease record that is not \"token candidate\" is Corrupt for acquire and current, and untouched"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_answers_unavailable_and_the_lease_resumes_after_restart() {
    let Some(mut server) =
        RedisServer::for_test("an_outage_answers_unavailable_and_the_lease_resumes_after_restart")
    else {
        return;
    };
    let election = RedisLeaderElection::with_prefix(connect(&server).await, prefix("outage"));
    let held = election
        .try_acquire_or_renew("a", Duration::from_secs(30), now())
        .await
        .unwrap()
        .expect("acquired");
    server.kill();
    let started = tokio::time::Instant::now();
    let during = election
        .try_acquire_or_renew("a", Duration::from_secs(30), now())
        .await;
    let took = started.elapsed();
    assert!(
        matches!(during, Err(LeaderError::Unavailable { .. })),
        "{during:?}"
    );
    // The call timeout (2 s) bounds it; the elector's own timeout is shorter still.
    assert!(took < Duration::from_secs(5), "bounded: {took:?}");
    server.restart().expect("restart on the same port");
    // The throw-away server keeps nothing across a restart: the lease is gone, and the
    // token counter with it (documented: tokens survive orchestrator restarts, not a lost
    // Redis database).
    let mut after = None;
    for _ in 0..50 {
        match election
            .try_acquire_or_renew("b", Duration::from_secs(30), now())
            .await
        {
            Ok(got) => {
                after = got;
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let after = after.expect("a candidate is elected once Redis is back");
    assert_eq!(after.holder, "b");
    println!(
        "checked: during the outage acquire failed Unavailable in {took:?}; after the restart \
         candidate b was elected (token {} before, {} after: the counter lives in Redis)",
        held.fencing_token, after.fencing_token
    );
}

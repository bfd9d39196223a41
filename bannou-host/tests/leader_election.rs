//! Leader election of two control planes in one process on one real Redis (skips without
//! `redis-server` unless `BANNOU_TEST_REQUIRE=redis`): exactly one leads and only its
//! leader-only loops run (lease reaper, pool scaler pass, periodic mappings rebroadcast);
//! an expired lease is reclaimed exactly once, by the leader; when the leader is killed
//! (tasks aborted, lease neither renewed nor released) the other takes over within
//! lease + lease/3 with a higher fencing token; when the leader shuts down cleanly it
//! releases the lease and the other takes over at its next attempt.
//!
//! Every wait is a bounded number of polling attempts, never an assertion on elapsed time.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use bannou_host::clock::TokioClock;
use bannou_host::config::HostConfig;
use bannou_host::host::{ControlPlane, RunningControlPlane};
use bannou_host::orchestrator::leader::LeaderState;
use futures::StreamExt;
use orchestrator_backends::redis::connection::{RedisConfig, RedisConnection};
use orchestrator_backends::redis::leader::RedisLeaderElection;
use orchestrator_backends::redis::server::RedisServer;
use orchestrator_core::Timestamp;
use orchestrator_core::events::{FullServiceMappingsEvent, ProcessorReleasedEvent};
use orchestrator_core::memory::backend::FakeBackend;
use orchestrator_core::ports::backend::ContainerBackend;
use orchestrator_core::ports::bus::{EventBusExt, EventSubscription};
use orchestrator_core::ports::leader::LeaderElection;
use orchestrator_core::time::Clock;
use orchestrator_pools::{
    AcquireOutcome, AcquireRequest, Lease, PoolConfig, PoolSpec, PoolType, WorkerIdentity,
};
use serde_json::Value;
use tower::ServiceExt;

/// The leader lease of both replicas (the minimum accepted), renewed every 666 ms.
const LEASE: Duration = Duration::from_secs(2);

/// Pause between two polls.
const POLL: Duration = Duration::from_millis(100);

/// Polls `check` up to `attempts` times, `POLL` apart; true as soon as it holds.
async fn eventually(attempts: u32, mut check: impl FnMut() -> bool) -> bool {
    for _ in 0..attempts {
        if check() {
            return true;
        }
        tokio::time::sleep(POLL).await;
    }
    check()
}

/// Attempts that cover `d` of polling.
fn attempts(d: Duration) -> u32 {
    (d.as_millis() / POLL.as_millis()) as u32 + 1
}

fn config(url: &str, name: &str) -> HostConfig {
    let mut c = HostConfig {
        redis_url: Some(url.to_owned()),
        leader_lease: LEASE,
        leader_id_prefix: Some(name.to_owned()),
        lease_cleanup_interval: Duration::from_secs(1),
        full_mappings_interval: Duration::from_secs(1),
        ..HostConfig::default()
    };
    c.scaler.autoscale = false;
    c.scaler.interval = Duration::from_millis(500);
    c
}

async fn start(url: &str, name: &str) -> RunningControlPlane {
    let clock: Arc<dyn Clock> = Arc::new(TokioClock::system());
    let backends: Vec<Arc<dyn ContainerBackend>> = vec![Arc::new(FakeBackend::new(clock))];
    ControlPlane::start(&config(url, name), backends)
        .await
        .expect("control plane starts")
}

async fn health(cp: &RunningControlPlane) -> Value {
    let response = cp
        .router()
        .oneshot(Request::get("/health").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

fn now() -> Timestamp {
    TokioClock::system().now()
}

/// A pool with one ready worker, on the shared lease store.
async fn pool(cp: &RunningControlPlane) -> PoolType {
    let leases = &cp.adapters().leases;
    let config = PoolConfig::new(PoolSpec::named("leader-test")).unwrap();
    let pool = config.pool_type().clone();
    leases.configure_pool(config).await.unwrap();
    let worker = WorkerIdentity::generate(&pool);
    leases
        .register_worker(&pool, &worker.processor_id, &worker.app_id, now())
        .await
        .unwrap();
    leases
        .mark_ready(&pool, worker.app_id.as_str(), now())
        .await
        .unwrap();
    pool
}

/// Leases the pool's worker for one second through `cp`'s lease store.
async fn short_lease(cp: &RunningControlPlane, pool: &PoolType) -> Lease {
    let req = AcquireRequest::new("leader-test").lease_duration(Duration::from_secs(1));
    match cp
        .adapters()
        .leases
        .acquire(pool, req, now())
        .await
        .unwrap()
        .outcome
    {
        AcquireOutcome::Leased(lease) => lease,
        other => panic!("the worker was free: {other:?}"),
    }
}

/// Every event already delivered or arriving within `d`.
async fn drain<E>(events: &mut EventSubscription<E>, d: Duration) -> Vec<E>
where
    E: orchestrator_core::events::Event,
{
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + d;
    while let Ok(Some(e)) = tokio::time::timeout_at(deadline, events.next()).await {
        out.push(e.expect("event decodes"));
    }
    out
}

fn leader_token(cp: &RunningControlPlane) -> u64 {
    cp.leader()
        .state()
        .leader_token()
        .expect("this replica leads")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_runs_the_loops_and_a_killed_leader_is_replaced_within_the_bound() {
    let Some(server) = RedisServer::for_test(
        "one_leader_runs_the_loops_and_a_killed_leader_is_replaced_within_the_bound",
    ) else {
        return;
    };
    let url = server.url();
    let a = start(&url, "replica-a").await;
    let b = start(&url, "replica-b").await;
    let (id_a, id_b) = (
        a.leader().candidate_id().to_owned(),
        b.leader().candidate_id().to_owned(),
    );

    // Exactly one leader: the first to start; the other follows it and knows its token.
    let token_a = leader_token(&a);
    assert_eq!(
        b.leader().state(),
        LeaderState::Follower {
            holder: Some(id_a.clone()),
            token: Some(token_a)
        }
    );
    let (ha, hb) = (health(&a).await, health(&b).await);
    assert_eq!(
        (&ha["leader"], &hb["leader"]),
        (&Value::Bool(true), &Value::Bool(false))
    );
    for h in [&ha, &hb] {
        assert_eq!(h["leadership"]["holder"], id_a.as_str());
        assert_eq!(h["leadership"]["token"], token_a);
        assert_eq!(h["status"], "ok", "a follower is healthy");
    }
    assert_eq!(hb["leadership"]["candidate"], id_b.as_str());
    println!(
        "checked: exactly one leader ({id_a}, token {token_a}); {id_b} follows; /health says so on both"
    );

    // Lifecycle operations run on the leader only: the follower refuses a deploy with 503
    // naming the leader, before touching anything.
    let refused = b
        .service()
        .deploy(orchestrator_core::api::DeployRequest {
            preset: Some("minimal".to_owned()),
            ..Default::default()
        })
        .await
        .expect_err("a follower does not deploy");
    assert_eq!(refused.status(), 503, "{}", refused.body.error);
    assert!(
        refused.body.error.contains(&id_a) && refused.body.error.contains("does not lead"),
        "{}",
        refused.body.error
    );
    println!(
        "checked: the follower refuses a deploy with 503: {}",
        refused.body.error
    );

    // Only the leader's gated loops run.
    let mut mappings = b
        .bus()
        .subscribe_events::<FullServiceMappingsEvent>()
        .await
        .unwrap();
    let (deps_a, deps_b) = (a.service().deps(), b.service().deps());
    assert!(
        eventually(attempts(Duration::from_secs(10)), || {
            deps_a.reaper.stats().passes >= 2 && deps_a.scaler.periodic_passes() >= 2
        })
        .await,
        "the leader's reaper and scaler run"
    );
    let published = drain(&mut mappings, Duration::from_millis(2_500)).await;
    let from_a = a.service().deps().broadcaster.source_instance_id();
    assert!(
        !published.is_empty(),
        "the leader rebroadcasts every second"
    );
    assert!(
        published.iter().all(|e| e.source_instance_id == from_a),
        "every rebroadcast comes from the leader"
    );
    assert_eq!(
        deps_b.reaper.stats().passes,
        0,
        "the follower's reaper never ran"
    );
    assert_eq!(deps_b.scaler.periodic_passes(), 0, "nor its scaler");
    println!(
        "checked: leader ran {} reaper passes and {} scaler passes, published {} rebroadcasts; follower ran none",
        deps_a.reaper.stats().passes,
        deps_a.scaler.periodic_passes(),
        published.len()
    );

    // An expired lease is reclaimed exactly once, by the leader.
    let mut released = b
        .bus()
        .subscribe_events::<ProcessorReleasedEvent>()
        .await
        .unwrap();
    let pool = pool(&b).await;
    let lease = short_lease(&b, &pool).await;
    deps_a.reaper.wake();
    deps_b.reaper.wake();
    assert!(
        eventually(attempts(Duration::from_secs(10)), || deps_a
            .reaper
            .stats()
            .reclaimed
            >= 1)
        .await,
        "the leader's reaper reclaims the expired lease"
    );
    let events = drain(&mut released, Duration::from_millis(1_500)).await;
    let of_lease: Vec<_> = events
        .iter()
        .filter(|e| e.processor_id == lease.processor_id.as_str())
        .collect();
    assert_eq!(of_lease.len(), 1, "released once: {events:?}");
    assert!(!of_lease[0].success, "reclaimed, not completed");
    assert_eq!(deps_a.reaper.stats().reclaimed, 1);
    assert_eq!(
        deps_b.reaper.stats(),
        Default::default(),
        "the follower reclaimed nothing"
    );
    println!(
        "checked: the 1 s lease was reclaimed exactly once (one ProcessorReleasedEvent, success false), by the leader"
    );

    // Kill the leader: nothing renews or releases its lease.
    a.kill();
    let bound = LEASE + LEASE / 3;
    let killed = tokio::time::Instant::now();
    assert!(
        eventually(attempts(bound + Duration::from_secs(1)), || b
            .leader()
            .is_leader())
        .await,
        "the follower leads within lease + lease/3 (+1 s of polling slack)"
    );
    let took = killed.elapsed();
    let token_b = leader_token(&b);
    assert!(
        token_b > token_a,
        "new term, higher token: {token_a} -> {token_b}"
    );
    let hb = health(&b).await;
    assert_eq!(hb["leader"], true);
    assert_eq!(hb["leadership"]["holder"], id_b.as_str());
    assert_eq!(hb["leadership"]["token"], token_b);
    println!(
        "checked: leader killed; {id_b} took over after {took:?} (bound {bound:?} + polling), token {token_a} -> {token_b}"
    );

    // The new leader's reaper now does the work.
    let lease = short_lease(&b, &pool).await;
    deps_b.reaper.wake();
    assert!(
        eventually(attempts(Duration::from_secs(10)), || deps_b
            .reaper
            .stats()
            .reclaimed
            >= 1)
        .await,
        "the new leader's reaper reclaims"
    );
    let events = drain(&mut released, Duration::from_millis(500)).await;
    assert_eq!(
        events
            .iter()
            .filter(|e| e.processor_id == lease.processor_id.as_str())
            .count(),
        1
    );
    println!(
        "checked: after the takeover the new leader's reaper reclaimed the next expired lease once"
    );

    // A clean shutdown releases the lease.
    let report = b.shutdown().await;
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.stopped.last(), Some(&"leader-elector"));
    let conn = RedisConnection::connect(RedisConfig::new(url))
        .await
        .unwrap();
    assert_eq!(
        RedisLeaderElection::new(conn).current(now()).await.unwrap(),
        None,
        "released on shutdown"
    );
    println!("checked: the last replica released the lease on shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_shuts_down_hands_over_at_the_followers_next_attempt() {
    let Some(server) =
        RedisServer::for_test("a_leader_that_shuts_down_hands_over_at_the_followers_next_attempt")
    else {
        return;
    };
    let url = server.url();
    let a = start(&url, "replica-a").await;
    let b = start(&url, "replica-b").await;
    let token_a = leader_token(&a);
    assert!(!b.leader().is_leader());

    let report = a.shutdown().await;
    assert!(report.is_clean(), "{report:?}");
    let stopped = tokio::time::Instant::now();
    // Released: no need to wait for the expiry, one renew interval is enough.
    assert!(
        eventually(attempts(LEASE / 3 + Duration::from_secs(1)), || b
            .leader()
            .is_leader())
        .await,
        "the follower leads within one renew interval (+1 s of polling slack)"
    );
    let token_b = leader_token(&b);
    assert!(token_b > token_a);
    println!(
        "checked: leader shut down and released; follower led after {:?} (renew interval {:?}), token {token_a} -> {token_b}",
        stopped.elapsed(),
        LEASE / 3
    );
    b.shutdown().await;
}

//! Conformance suite for [`LeaseStore`] implementations (feature `testkit`): one async
//! function every store must pass, each scenario on a fresh store from the factory. It
//! panics with a message naming the scenario and the broken rule. [`lease_store_stress`]
//! is the concurrent stress run every store must survive.
//!
//! Kept as one file: a conformance suite (test-only, feature `testkit`), one scenario per
//! function, read top to bottom.

mod stress;

pub use stress::{StressConfig, StressReport, lease_store_stress};

use std::future::Future;
use std::time::Duration;

use orchestrator_core::Timestamp;

use crate::config::{PoolConfig, PoolSpec, PoolType};
use crate::model::{FencingToken, Lease, WorkerIdentity, WorkerState};
use crate::store::{AcquireOutcome, AcquireRequest, LeaseError, LeaseStore, WaitStatus};

/// A fixed starting instant; scenarios move time by passing later values.
pub fn t(secs: u64) -> Timestamp {
    Timestamp::from_unix_millis(1_767_225_600_000) + Duration::from_secs(secs)
}

/// Runs every scenario, each against a fresh store from `make`.
pub async fn lease_store_conformance<F, Fut, S>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: LeaseStore,
{
    register_ready_acquire_release_cycle(&make().await).await;
    max_instances_is_enforced(&make().await).await;
    waiters_are_served_by_priority_then_fifo(&make().await).await;
    release_hands_off_to_the_queue_head(&make().await).await;
    ready_worker_goes_to_a_waiter(&make().await).await;
    cancelled_waiters_leave_the_queue(&make().await).await;
    fencing_tokens_strictly_increase(&make().await).await;
    stale_tokens_are_refused_and_change_nothing(&make().await).await;
    double_release_is_refused_and_changes_nothing(&make().await).await;
    expiry_reclaims_exactly_the_expired_leases(&make().await).await;
    acquire_reclaims_expired_leases_first(&make().await).await;
    draining_worker_is_never_leased_again(&make().await).await;
    drain_deadline_ends_the_lease_then(&make().await).await;
    metrics_add_up(&make().await).await;
    pool_config_is_the_configured_one(&make().await).await;
    next_expiry_is_the_earliest_live_lease(&make().await).await;
    acquire_hands_out_the_most_recently_freed_worker(&make().await).await;
    app_ids_are_matched_without_case(&make().await).await;
}

/// Configures a pool `conformance` with `max` workers and registers `ready` of them,
/// marked ready at `t(0)`.
pub async fn pool_with_workers(
    store: &dyn LeaseStore,
    max: i64,
    ready: u128,
) -> (PoolType, Vec<WorkerIdentity>) {
    let mut spec = PoolSpec::named("conformance");
    spec.min_instances = 0;
    spec.max_instances = max;
    let config = PoolConfig::new(spec).expect("valid config");
    let pool = config.pool_type().clone();
    store.configure_pool(config).await.expect("configure_pool");
    let mut ids = Vec::new();
    for i in 1..=ready {
        let id = WorkerIdentity::from_value(&pool, i);
        store
            .register_worker(&pool, &id.processor_id, &id.app_id, t(0))
            .await
            .expect("register_worker");
        store
            .mark_ready(&pool, id.processor_id.as_str(), t(0))
            .await
            .expect("mark_ready");
        ids.push(id);
    }
    (pool, ids)
}

async fn lease(
    store: &dyn LeaseStore,
    pool: &PoolType,
    req: AcquireRequest,
    now: Timestamp,
    why: &str,
) -> Lease {
    match store.acquire(pool, req, now).await {
        Ok(a) => match a.outcome {
            AcquireOutcome::Leased(l) => l,
            other => panic!("{why}: expected a lease, got {other:?}"),
        },
        Err(e) => panic!("{why}: acquire failed: {e}"),
    }
}

async fn queue(
    store: &dyn LeaseStore,
    pool: &PoolType,
    holder: &str,
    priority: i32,
    now: Timestamp,
) -> crate::WaitTicket {
    let req = AcquireRequest::new(holder)
        .priority(priority)
        .wait(Duration::from_secs(600));
    match store
        .acquire(pool, req, now)
        .await
        .expect("acquire")
        .outcome
    {
        AcquireOutcome::Queued(ticket) => ticket,
        other => panic!("{holder} should have been queued, got {other:?}"),
    }
}

async fn state_of(
    store: &dyn LeaseStore,
    pool: &PoolType,
    id: &WorkerIdentity,
    now: Timestamp,
) -> Option<WorkerState> {
    let status = store.status(pool, now).await.expect("status");
    status
        .workers
        .iter()
        .find(|w| w.processor_id == id.processor_id)
        .map(|w| w.state)
}

async fn register_ready_acquire_release_cycle(store: &dyn LeaseStore) {
    let why = "cycle";
    let (pool, _) = pool_with_workers(store, 3, 0).await;
    let id = WorkerIdentity::from_value(&pool, 7);
    let w = store
        .register_worker(&pool, &id.processor_id, &id.app_id, t(1))
        .await
        .expect("register");
    assert_eq!(
        w.state,
        WorkerState::Pending,
        "{why}: registered workers start Pending"
    );
    let refused = store
        .acquire(&pool, AcquireRequest::new("early"), t(1))
        .await
        .expect("acquire");
    assert_eq!(
        refused.outcome,
        AcquireOutcome::Exhausted,
        "{why}: Pending workers are not leasable"
    );
    let w = store
        .mark_ready(&pool, id.app_id.as_str(), t(2))
        .await
        .expect("mark_ready by app-id");
    assert_eq!(
        w.state,
        WorkerState::Available,
        "{why}: heartbeat makes it Available"
    );
    let again = store
        .mark_ready(&pool, id.processor_id.as_str(), t(3))
        .await
        .expect("mark_ready again");
    assert_eq!(
        again.state,
        WorkerState::Available,
        "{why}: mark_ready is idempotent"
    );

    let req = AcquireRequest::new("npc-7")
        .priority(3)
        .metadata(serde_json::json!({"job": 1}));
    let acquired = store.acquire(&pool, req, t(10)).await.expect("acquire");
    assert_eq!(
        (acquired.load.leased, acquired.load.available),
        (1, 0),
        "{why}: load after the acquire"
    );
    let l = acquired.outcome.lease().cloned().expect("leased");
    assert_eq!(l.processor_id, id.processor_id, "{why}");
    assert_eq!(l.app_id, id.app_id, "{why}");
    assert_eq!((l.holder.as_str(), l.priority), ("npc-7", 3), "{why}");
    assert_eq!(l.acquired_at, t(10), "{why}");
    assert_eq!(
        l.expires_at,
        t(10 + 300),
        "{why}: default lease duration is 300 s"
    );
    assert_eq!(l.metadata, serde_json::json!({"job": 1}), "{why}");
    let status = store.status(&pool, t(11)).await.expect("status");
    assert_eq!((status.load.leased, status.load.available), (1, 0), "{why}");
    assert_eq!(status.leases.len(), 1, "{why}");
    assert_eq!(status.workers[0].lease_id, Some(l.lease_id), "{why}");
    assert_eq!(status.utilisation(), 1.0, "{why}");

    let r = store
        .release(&pool, l.lease_id, l.fencing_token, true, t(25))
        .await
        .expect("release");
    assert_eq!(r.lease_duration, Duration::from_secs(15), "{why}");
    assert_eq!(r.worker.state, WorkerState::Available, "{why}");
    assert!(r.handed_off.is_none(), "{why}");
    assert_eq!(
        state_of(store, &pool, &id, t(26)).await,
        Some(WorkerState::Available),
        "{why}"
    );
    assert_eq!(
        store.list_pools().await.expect("list"),
        vec![pool.clone()],
        "{why}"
    );
    let other = PoolType::new("nope").expect("name");
    assert!(
        matches!(
            store.status(&other, t(0)).await,
            Err(LeaseError::UnknownPool { .. })
        ),
        "{why}: unknown pools are refused"
    );
}

/// The pool order (docs/COMPATIBILITY.md#pool-worker-order): acquire takes the most
/// recently freed worker (LIFO; upstream is FIFO), so under light load one warm worker
/// stays busy and the others stay idle long enough for the autoscaler to reap them.
async fn acquire_hands_out_the_most_recently_freed_worker(store: &dyn LeaseStore) {
    let why = "LIFO order";
    let (pool, ids) = pool_with_workers(store, 3, 3).await;
    let holder_of = |l: &Lease| {
        ids.iter()
            .position(|id| id.processor_id == l.processor_id)
            .map(|i| i + 1)
    };
    // Ready in the order 1, 2, 3: the last one ready goes first.
    let a = lease(store, &pool, AcquireRequest::new("a"), t(1), why).await;
    let b = lease(store, &pool, AcquireRequest::new("b"), t(2), why).await;
    assert_eq!((holder_of(&a), holder_of(&b)), (Some(3), Some(2)), "{why}");
    // Freed 3 then 2: 2 (freed last) is handed out first, then 3, then 1 (idle longest).
    for (l, at) in [(&a, 3), (&b, 4)] {
        store
            .release(&pool, l.lease_id, l.fencing_token, true, t(at))
            .await
            .expect("release");
    }
    let mut order = Vec::new();
    for (n, holder) in ["c", "d", "e"].into_iter().enumerate() {
        let l = lease(
            store,
            &pool,
            AcquireRequest::new(holder),
            t(5 + n as u64),
            why,
        )
        .await;
        order.push(holder_of(&l));
    }
    assert_eq!(order, [Some(2), Some(3), Some(1)], "{why}");
}

/// App-ids compare without ASCII case (docs/COMPATIBILITY.md#heartbeat-consumption): a
/// worker is found by its app-id in any case, and a second worker cannot take another
/// spelling of an app-id in use.
async fn app_ids_are_matched_without_case(store: &dyn LeaseStore) {
    let why = "app-id case";
    let (pool, _) = pool_with_workers(store, 3, 0).await;
    let first = WorkerIdentity::from_value(&pool, 1);
    let second = WorkerIdentity::from_value(&pool, 2);
    let spelled = orchestrator_core::AppId::new("Case-Worker");
    store
        .register_worker(&pool, &first.processor_id, &spelled, t(0))
        .await
        .expect("register");
    let again = store
        .register_worker(
            &pool,
            &first.processor_id,
            &orchestrator_core::AppId::new("case-worker"),
            t(0),
        )
        .await
        .expect("registering the same worker again, app-id in another case");
    assert_eq!(
        again.app_id.as_str(),
        "Case-Worker",
        "{why}: the spelling is kept"
    );
    assert!(
        matches!(
            store
                .register_worker(
                    &pool,
                    &second.processor_id,
                    &orchestrator_core::AppId::new("CASE-WORKER"),
                    t(0),
                )
                .await,
            Err(LeaseError::WorkerConflict { .. })
        ),
        "{why}: another worker with the same app-id in another case"
    );
    let ready = store
        .mark_ready(&pool, "case-WORKER", t(1))
        .await
        .expect("mark_ready by the app-id in another case");
    assert_eq!(ready.processor_id, first.processor_id, "{why}");
    assert_eq!(ready.state, WorkerState::Available, "{why}");
    store
        .remove_worker(&pool, &first.processor_id, t(2))
        .await
        .expect("remove");
    store
        .register_worker(
            &pool,
            &second.processor_id,
            &orchestrator_core::AppId::new("case-worker"),
            t(3),
        )
        .await
        .expect("the app-id is free again once its worker is removed");
}

async fn pool_config_is_the_configured_one(store: &dyn LeaseStore) {
    let why = "pool_config";
    let missing = PoolType::new("nowhere").expect("valid name");
    assert_eq!(
        store.pool_config(&missing).await,
        Err(LeaseError::UnknownPool { pool: missing }),
        "{why}: an unconfigured pool"
    );
    let (pool, _) = pool_with_workers(store, 3, 1).await;
    let config = store.pool_config(&pool).await.expect("configured");
    assert_eq!(config.max_instances(), 3, "{why}");
    assert_eq!(
        config,
        store.status(&pool, t(1)).await.expect("status").config,
        "{why}: the same config as the full status"
    );
    let mut spec = PoolSpec::named(pool.as_str());
    spec.max_instances = 7;
    spec.scale_up_threshold = 0.6;
    let changed = PoolConfig::new(spec).expect("valid config");
    store
        .configure_pool(changed.clone())
        .await
        .expect("reconfigure");
    assert_eq!(
        store.pool_config(&pool).await,
        Ok(changed),
        "{why}: a new configuration is seen at once"
    );
}

async fn next_expiry_is_the_earliest_live_lease(store: &dyn LeaseStore) {
    let why = "next_expiry";
    let missing = PoolType::new("nowhere").expect("valid name");
    assert_eq!(
        store.next_expiry(&missing).await,
        Err(LeaseError::UnknownPool { pool: missing }),
        "{why}: an unconfigured pool"
    );
    let (pool, _) = pool_with_workers(store, 3, 3).await;
    assert_eq!(store.next_expiry(&pool).await, Ok(None), "{why}: no lease");
    let mut leases = Vec::new();
    for secs in [30, 10, 20] {
        let req = AcquireRequest::new("h").lease_duration(Duration::from_secs(secs));
        match store
            .acquire(&pool, req, t(0))
            .await
            .expect("acquire")
            .outcome
        {
            AcquireOutcome::Leased(l) => leases.push(l),
            other => panic!("{why}: expected a lease, got {other:?}"),
        }
    }
    assert_eq!(store.next_expiry(&pool).await, Ok(Some(t(10))), "{why}");
    let ten = &leases[1];
    store
        .release(&pool, ten.lease_id, ten.fencing_token, true, t(1))
        .await
        .expect("release");
    assert_eq!(
        store.next_expiry(&pool).await,
        Ok(Some(t(20))),
        "{why}: a released lease no longer counts"
    );
    for l in [&leases[0], &leases[2]] {
        store
            .release(&pool, l.lease_id, l.fencing_token, true, t(2))
            .await
            .expect("release");
    }
    assert_eq!(
        store.next_expiry(&pool).await,
        Ok(None),
        "{why}: all released"
    );
}

async fn max_instances_is_enforced(store: &dyn LeaseStore) {
    let why = "maxInstances";
    let (pool, ids) = pool_with_workers(store, 2, 2).await;
    let extra = WorkerIdentity::from_value(&pool, 99);
    let err = store
        .register_worker(&pool, &extra.processor_id, &extra.app_id, t(1))
        .await
        .expect_err("a third worker must be refused");
    assert_eq!(err, LeaseError::AtCapacity { max: 2 }, "{why}");
    store
        .drain_worker(&pool, &ids[0].processor_id, None, t(2))
        .await
        .expect("drain");
    assert!(
        store
            .register_worker(&pool, &extra.processor_id, &extra.app_id, t(2))
            .await
            .is_err(),
        "{why}: draining workers still count"
    );
    store
        .remove_worker(&pool, &ids[0].processor_id, t(3))
        .await
        .expect("remove");
    store
        .register_worker(&pool, &extra.processor_id, &extra.app_id, t(4))
        .await
        .expect("room again after a removal");
    assert_eq!(
        store
            .status(&pool, t(5))
            .await
            .expect("status")
            .workers
            .len(),
        2,
        "{why}"
    );
}

async fn waiters_are_served_by_priority_then_fifo(store: &dyn LeaseStore) {
    let why = "priority queue";
    let (pool, _) = pool_with_workers(store, 1, 1).await;
    let mut held = lease(store, &pool, AcquireRequest::new("first"), t(0), why).await;
    let no_wait = store
        .acquire(&pool, AcquireRequest::new("impatient"), t(1))
        .await
        .expect("acquire");
    assert_eq!(
        no_wait.outcome,
        AcquireOutcome::Exhausted,
        "{why}: no wait, nothing free -> Exhausted"
    );
    let tickets = [
        queue(store, &pool, "a-p1", 1, t(1)).await,
        queue(store, &pool, "b-p5", 5, t(2)).await,
        queue(store, &pool, "c-p5", 5, t(3)).await,
        queue(store, &pool, "d-p3", 3, t(4)).await,
    ];
    assert_eq!(
        store
            .status(&pool, t(5))
            .await
            .expect("status")
            .load
            .queue_depth,
        4,
        "{why}: queue depth is real"
    );
    assert_eq!(
        store.poll_wait(&tickets[0], t(5)).await.expect("poll"),
        WaitStatus::Waiting,
        "{why}"
    );
    let mut served = Vec::new();
    for step in 0..4u64 {
        let r = store
            .release(&pool, held.lease_id, held.fencing_token, true, t(10 + step))
            .await
            .expect("release");
        held = r.handed_off.expect("the queue head gets the worker");
        served.push(held.holder.clone());
    }
    assert_eq!(
        served,
        ["b-p5", "c-p5", "d-p3", "a-p1"],
        "{why}: higher first, FIFO among equals"
    );
    for (ticket, holder) in tickets.iter().zip(["a-p1", "b-p5", "c-p5", "d-p3"]) {
        match store.poll_wait(ticket, t(20)).await {
            Ok(WaitStatus::Leased(l)) => assert_eq!(l.holder, holder, "{why}"),
            // Leases already released by the loop above end their ticket too.
            Err(LeaseError::UnknownTicket { .. }) => {}
            other => panic!("{why}: {holder} poll gave {other:?}"),
        }
    }
    assert_eq!(
        store
            .status(&pool, t(20))
            .await
            .expect("status")
            .load
            .queue_depth,
        0,
        "{why}"
    );
}

async fn release_hands_off_to_the_queue_head(store: &dyn LeaseStore) {
    let why = "handoff";
    let (pool, ids) = pool_with_workers(store, 1, 1).await;
    let held = lease(store, &pool, AcquireRequest::new("a"), t(0), why).await;
    let ticket = queue(store, &pool, "waiter", 0, t(1)).await;
    let r = store
        .release(&pool, held.lease_id, held.fencing_token, true, t(5))
        .await
        .expect("release");
    let handed = r.handed_off.clone().expect("handed to the waiter");
    assert_eq!(
        r.worker.state,
        WorkerState::Leased,
        "{why}: the worker never became Available"
    );
    assert_eq!(handed.processor_id, ids[0].processor_id, "{why}");
    assert_eq!(handed.acquired_at, t(5), "{why}");
    let newcomer = store
        .acquire(&pool, AcquireRequest::new("newcomer"), t(5))
        .await
        .expect("acquire");
    assert_eq!(
        newcomer.outcome,
        AcquireOutcome::Exhausted,
        "{why}: newcomers cannot jump the queue"
    );
    assert_eq!(
        store.poll_wait(&ticket, t(6)).await.expect("poll"),
        WaitStatus::Leased(handed),
        "{why}"
    );
    assert!(
        matches!(
            store.poll_wait(&ticket, t(6)).await,
            Err(LeaseError::UnknownTicket { .. })
        ),
        "{why}: a ticket is used once"
    );
}

async fn ready_worker_goes_to_a_waiter(store: &dyn LeaseStore) {
    let why = "ready handoff";
    let (pool, _) = pool_with_workers(store, 2, 0).await;
    let ticket = queue(store, &pool, "waiter", 0, t(0)).await;
    let id = WorkerIdentity::from_value(&pool, 1);
    store
        .register_worker(&pool, &id.processor_id, &id.app_id, t(1))
        .await
        .expect("register");
    let w = store
        .mark_ready(&pool, id.app_id.as_str(), t(2))
        .await
        .expect("ready");
    assert_eq!(
        w.state,
        WorkerState::Leased,
        "{why}: a new worker serves the waiter at once"
    );
    match store.poll_wait(&ticket, t(3)).await.expect("poll") {
        WaitStatus::Leased(l) => assert_eq!(
            (l.processor_id, l.holder.as_str()),
            (id.processor_id, "waiter"),
            "{why}"
        ),
        other => panic!("{why}: {other:?}"),
    }
}

async fn cancelled_waiters_leave_the_queue(store: &dyn LeaseStore) {
    let why = "cancel";
    let (pool, _) = pool_with_workers(store, 1, 1).await;
    let held = lease(store, &pool, AcquireRequest::new("a"), t(0), why).await;
    let gone = queue(store, &pool, "gone", 9, t(1)).await;
    let stays = queue(store, &pool, "stays", 1, t(2)).await;
    assert_eq!(
        store.cancel_wait(&gone).await.expect("cancel"),
        None,
        "{why}"
    );
    assert_eq!(
        store.cancel_wait(&gone).await.expect("cancel twice"),
        None,
        "{why}"
    );
    assert_eq!(
        store
            .status(&pool, t(3))
            .await
            .expect("status")
            .load
            .queue_depth,
        1,
        "{why}"
    );
    let r = store
        .release(&pool, held.lease_id, held.fencing_token, true, t(4))
        .await
        .expect("release");
    assert_eq!(
        r.handed_off.map(|l| l.holder),
        Some("stays".to_owned()),
        "{why}"
    );
    assert!(
        matches!(
            store.poll_wait(&stays, t(5)).await,
            Ok(WaitStatus::Leased(_))
        ),
        "{why}"
    );
}

async fn fencing_tokens_strictly_increase(store: &dyn LeaseStore) {
    let why = "fencing";
    let (pool, _) = pool_with_workers(store, 2, 2).await;
    let mut last = FencingToken(0);
    let mut check = |l: &Lease| {
        assert!(
            l.fencing_token > last,
            "{why}: {} after {last}",
            l.fencing_token
        );
        last = l.fencing_token;
    };
    let a = lease(store, &pool, AcquireRequest::new("a"), t(0), why).await;
    check(&a);
    let b = lease(
        store,
        &pool,
        AcquireRequest::new("b").lease_duration(Duration::from_secs(5)),
        t(0),
        why,
    )
    .await;
    check(&b);
    let ticket = queue(store, &pool, "c", 0, t(1)).await;
    let r = store
        .release(&pool, a.lease_id, a.fencing_token, true, t(2))
        .await
        .expect("release");
    check(&r.handed_off.expect("handoff"));
    assert!(
        matches!(
            store.poll_wait(&ticket, t(2)).await,
            Ok(WaitStatus::Leased(_))
        ),
        "{why}"
    );
    let reclaimed = store.reclaim_expired(&pool, t(10)).await.expect("reclaim");
    assert_eq!(reclaimed.len(), 1, "{why}");
    let d = lease(store, &pool, AcquireRequest::new("d"), t(10), why).await;
    check(&d);
    assert_eq!(
        d.processor_id, b.processor_id,
        "{why}: the reclaimed worker is leased again"
    );
    assert!(
        d.fencing_token > b.fencing_token,
        "{why}: the new holder's token beats the old one"
    );
}

async fn stale_tokens_are_refused_and_change_nothing(store: &dyn LeaseStore) {
    let why = "stale token";
    let (pool, _) = pool_with_workers(store, 2, 1).await;
    lease(store, &pool, AcquireRequest::new("warm-up"), t(0), why).await;
    let before_release = store.status(&pool, t(1)).await.expect("status");
    let l = before_release.leases[0].clone();
    for given in [
        FencingToken(l.fencing_token.0 - 1),
        FencingToken(l.fencing_token.0 + 1),
    ] {
        let err = store
            .release(&pool, l.lease_id, given, true, t(2))
            .await
            .expect_err("stale release");
        assert_eq!(
            err,
            LeaseError::StaleFencingToken {
                given,
                current: l.fencing_token
            },
            "{why}"
        );
        let err = store
            .renew(&pool, l.lease_id, given, Duration::from_secs(60), t(2))
            .await
            .expect_err("stale renew");
        assert_eq!(
            err,
            LeaseError::StaleFencingToken {
                given,
                current: l.fencing_token
            },
            "{why}"
        );
    }
    assert_eq!(
        store.status(&pool, t(1)).await.expect("status"),
        before_release,
        "{why}: nothing changed"
    );
    let m = store.metrics(&pool, t(2)).await.expect("metrics");
    assert_eq!(m.total_completed + m.total_failed, 0, "{why}");
    let renewed = store
        .renew(
            &pool,
            l.lease_id,
            l.fencing_token,
            Duration::from_secs(60),
            t(2),
        )
        .await
        .expect("renew with the right token");
    assert_eq!(
        renewed.expires_at,
        l.expires_at + Duration::from_secs(60),
        "{why}"
    );
    assert_eq!(
        renewed.fencing_token, l.fencing_token,
        "{why}: renew keeps the token"
    );
}

async fn double_release_is_refused_and_changes_nothing(store: &dyn LeaseStore) {
    let why = "double release";
    let (pool, _) = pool_with_workers(store, 2, 2).await;
    let l = lease(store, &pool, AcquireRequest::new("a"), t(0), why).await;
    lease(store, &pool, AcquireRequest::new("b"), t(0), why).await;
    store
        .release(&pool, l.lease_id, l.fencing_token, true, t(1))
        .await
        .expect("first release");
    let status = store.status(&pool, t(2)).await.expect("status");
    let metrics = store.metrics(&pool, t(2)).await.expect("metrics");
    let err = store
        .release(&pool, l.lease_id, l.fencing_token, false, t(2))
        .await
        .expect_err("second release");
    assert!(
        matches!(err, LeaseError::UnknownLease { lease_id, .. } if lease_id == l.lease_id),
        "{why}: {err}"
    );
    assert!(
        matches!(
            store
                .renew(
                    &pool,
                    l.lease_id,
                    l.fencing_token,
                    Duration::from_secs(1),
                    t(2)
                )
                .await,
            Err(LeaseError::UnknownLease { .. })
        ),
        "{why}: renewing a released lease"
    );
    assert_eq!(
        store.status(&pool, t(2)).await.expect("status"),
        status,
        "{why}: nothing changed"
    );
    assert_eq!(
        store.metrics(&pool, t(2)).await.expect("metrics"),
        metrics,
        "{why}: not counted twice"
    );
}

async fn expiry_reclaims_exactly_the_expired_leases(store: &dyn LeaseStore) {
    let why = "expiry";
    let (pool, _) = pool_with_workers(store, 3, 3).await;
    let secs = |s| AcquireRequest::new("h").lease_duration(Duration::from_secs(s));
    let short = lease(store, &pool, secs(10), t(0), why).await;
    let mid = lease(store, &pool, secs(20), t(0), why).await;
    let long = lease(store, &pool, secs(30), t(0), why).await;
    assert!(
        store
            .reclaim_expired(&pool, t(10))
            .await
            .expect("reclaim")
            .is_empty(),
        "{why}: expired means expiresAt < now"
    );
    assert!(
        matches!(
            store
                .renew(
                    &pool,
                    short.lease_id,
                    short.fencing_token,
                    Duration::from_secs(5),
                    t(11)
                )
                .await,
            Err(LeaseError::LeaseExpired { .. })
        ),
        "{why}: an expired lease cannot be renewed"
    );
    let got = store.reclaim_expired(&pool, t(11)).await.expect("reclaim");
    assert_eq!(
        got.iter().map(|l| l.lease_id).collect::<Vec<_>>(),
        vec![short.lease_id],
        "{why}"
    );
    let status = store.status(&pool, t(11)).await.expect("status");
    let w = status
        .workers
        .iter()
        .find(|w| w.processor_id == short.processor_id)
        .expect("worker");
    assert_eq!(
        (w.state, w.lease_id),
        (WorkerState::Available, None),
        "{why}: the worker is Available again"
    );
    assert!(
        matches!(
            store
                .release(&pool, short.lease_id, short.fencing_token, true, t(12))
                .await,
            Err(LeaseError::UnknownLease { .. })
        ),
        "{why}: a reclaimed lease is unknown"
    );
    let renewed = store
        .renew(
            &pool,
            mid.lease_id,
            mid.fencing_token,
            Duration::from_secs(100),
            t(12),
        )
        .await
        .expect("renew");
    let got = store.reclaim_expired(&pool, t(31)).await.expect("reclaim");
    assert_eq!(
        got.iter().map(|l| l.lease_id).collect::<Vec<_>>(),
        vec![long.lease_id],
        "{why}: renewed lease survives"
    );
    let got = store
        .reclaim_expired(&pool, renewed.expires_at + Duration::from_millis(1))
        .await
        .expect("reclaim");
    assert_eq!(got.len(), 1, "{why}");
    let m = store.metrics(&pool, t(200)).await.expect("metrics");
    assert_eq!(
        (m.total_reclaimed, m.total_completed + m.total_failed),
        (3, 0),
        "{why}: reclaims are not jobs"
    );
    assert_eq!(m.load.available, 3, "{why}");
}

async fn acquire_reclaims_expired_leases_first(store: &dyn LeaseStore) {
    let why = "lazy reclaim";
    let (pool, ids) = pool_with_workers(store, 1, 1).await;
    lease(
        store,
        &pool,
        AcquireRequest::new("old").lease_duration(Duration::from_secs(5)),
        t(0),
        why,
    )
    .await;
    let l = lease(store, &pool, AcquireRequest::new("new"), t(6), why).await;
    assert_eq!(l.processor_id, ids[0].processor_id, "{why}");
}

async fn drain_deadline_ends_the_lease_then(store: &dyn LeaseStore) {
    let why = "drain deadline";
    let (pool, _) = pool_with_workers(store, 2, 2).await;
    let long = lease(
        store,
        &pool,
        AcquireRequest::new("long").lease_duration(Duration::from_secs(600)),
        t(0),
        why,
    )
    .await;
    let short = lease(
        store,
        &pool,
        AcquireRequest::new("short").lease_duration(Duration::from_secs(50)),
        t(0),
        why,
    )
    .await;
    let w = store
        .drain_worker(&pool, &long.processor_id, Some(t(100)), t(1))
        .await
        .expect("drain with a deadline");
    assert_eq!(
        (w.state, w.lease_id),
        (WorkerState::Draining, Some(long.lease_id)),
        "{why}"
    );
    store
        .drain_worker(&pool, &short.processor_id, Some(t(100)), t(1))
        .await
        .expect("drain the short one");
    let expiry = |status: &crate::model::PoolStatus, l: &Lease| {
        status
            .leases
            .iter()
            .find(|x| x.lease_id == l.lease_id)
            .map(|x| x.expires_at)
    };
    let status = store.status(&pool, t(1)).await.expect("status");
    assert_eq!(
        (expiry(&status, &long), expiry(&status, &short)),
        (Some(t(100)), Some(t(50))),
        "{why}: a lease outliving the deadline ends at it; a shorter one keeps its expiry"
    );
    store
        .drain_worker(&pool, &long.processor_id, Some(t(300)), t(2))
        .await
        .expect("drain again, later deadline");
    store
        .drain_worker(&pool, &long.processor_id, None, t(2))
        .await
        .expect("drain again, no deadline");
    let status = store.status(&pool, t(2)).await.expect("status");
    assert_eq!(
        expiry(&status, &long),
        Some(t(100)),
        "{why}: draining again never moves the deadline later"
    );
    assert_eq!(
        store.next_expiry(&pool).await.expect("next expiry"),
        Some(t(50)),
        "{why}"
    );
    let reclaimed = store.reclaim_expired(&pool, t(100)).await.expect("reclaim");
    assert_eq!(
        reclaimed.iter().map(|l| l.lease_id).collect::<Vec<_>>(),
        vec![short.lease_id],
        "{why}: at t(100) only the short lease has expired"
    );
    let reclaimed = store.reclaim_expired(&pool, t(101)).await.expect("reclaim");
    assert_eq!(
        reclaimed.iter().map(|l| l.lease_id).collect::<Vec<_>>(),
        vec![long.lease_id],
        "{why}: the long lease ends at the deadline"
    );
    let status = store.status(&pool, t(101)).await.expect("status");
    assert!(
        status
            .workers
            .iter()
            .all(|w| w.state == WorkerState::Draining && w.lease_id.is_none()),
        "{why}: both workers are draining and free to tear down: {:?}",
        status.workers
    );
}

async fn draining_worker_is_never_leased_again(store: &dyn LeaseStore) {
    let why = "draining";
    let (pool, ids) = pool_with_workers(store, 2, 2).await;
    let busy = lease(store, &pool, AcquireRequest::new("a"), t(0), why).await;
    let busy_id = ids
        .iter()
        .find(|i| i.processor_id == busy.processor_id)
        .expect("leased worker")
        .clone();
    let idle_id = ids
        .iter()
        .find(|i| i.processor_id != busy.processor_id)
        .expect("idle worker")
        .clone();
    let w = store
        .drain_worker(&pool, &busy_id.processor_id, None, t(1))
        .await
        .expect("drain leased");
    assert_eq!(
        (w.state, w.lease_id),
        (WorkerState::Draining, Some(busy.lease_id)),
        "{why}: finishes its lease"
    );
    let w = store
        .drain_worker(&pool, &idle_id.processor_id, None, t(1))
        .await
        .expect("drain idle");
    assert_eq!(w.state, WorkerState::Draining, "{why}");
    store
        .drain_worker(&pool, &idle_id.processor_id, None, t(1))
        .await
        .expect("drain is idempotent");
    let ticket = queue(store, &pool, "waiter", 0, t(2)).await;
    let renewed = store
        .renew(
            &pool,
            busy.lease_id,
            busy.fencing_token,
            Duration::from_secs(1),
            t(2),
        )
        .await;
    assert_eq!(
        renewed,
        Err(LeaseError::WorkerDraining {
            lease_id: busy.lease_id,
            expires_at: busy.expires_at,
        }),
        "{why}: a draining worker's lease is not extended"
    );
    let stale = store
        .renew(
            &pool,
            busy.lease_id,
            FencingToken(busy.fencing_token.0 + 100),
            Duration::from_secs(1),
            t(2),
        )
        .await;
    assert!(
        matches!(stale, Err(LeaseError::StaleFencingToken { .. })),
        "{why}: a stale token is refused as stale, draining or not: {stale:?}"
    );
    let r = store
        .release(&pool, busy.lease_id, busy.fencing_token, true, t(3))
        .await
        .expect("release");
    assert!(
        r.handed_off.is_none(),
        "{why}: a draining worker is not handed to waiters"
    );
    assert_eq!(
        (r.worker.state, r.worker.lease_id),
        (WorkerState::Draining, None),
        "{why}"
    );
    assert_eq!(
        store.poll_wait(&ticket, t(3)).await.expect("poll"),
        WaitStatus::Waiting,
        "{why}"
    );
    store.cancel_wait(&ticket).await.expect("cancel");
    let refused = store
        .acquire(&pool, AcquireRequest::new("b"), t(4))
        .await
        .expect("acquire");
    assert_eq!(refused.outcome, AcquireOutcome::Exhausted, "{why}");
    assert_eq!(
        store
            .mark_ready(&pool, idle_id.app_id.as_str(), t(4))
            .await
            .expect("ready")
            .state,
        WorkerState::Draining,
        "{why}: a heartbeat does not revive it"
    );
    for id in [&busy_id, &idle_id] {
        let removed = store
            .remove_worker(&pool, &id.processor_id, t(5))
            .await
            .expect("remove");
        assert!(removed.dropped_lease.is_none(), "{why}");
    }
    let status = store.status(&pool, t(6)).await.expect("status");
    assert!(
        status.workers.is_empty() && status.leases.is_empty(),
        "{why}: {status:?}"
    );
    assert!(
        matches!(
            store
                .remove_worker(&pool, &busy_id.processor_id, t(6))
                .await,
            Err(LeaseError::UnknownWorker { .. })
        ),
        "{why}"
    );
}

async fn metrics_add_up(store: &dyn LeaseStore) {
    let why = "metrics";
    let (pool, _) = pool_with_workers(store, 2, 2).await;
    let mut releases = 0;
    for (i, success) in [true, false, true, true, false].into_iter().enumerate() {
        let start = t(100 * i as u64);
        let l = lease(store, &pool, AcquireRequest::new("m"), start, why).await;
        store
            .release(
                &pool,
                l.lease_id,
                l.fencing_token,
                success,
                start + Duration::from_secs(2 * (i as u64 + 1)),
            )
            .await
            .expect("release");
        releases += 1;
    }
    let held = lease(store, &pool, AcquireRequest::new("held"), t(600), why).await;
    lease(store, &pool, AcquireRequest::new("held-2"), t(600), why).await;
    queue(store, &pool, "q1", 0, t(600)).await;
    queue(store, &pool, "q2", 0, t(600)).await;
    let m = store.metrics(&pool, t(601)).await.expect("metrics");
    assert_eq!((m.jobs_completed_1h, m.jobs_failed_1h), (3, 2), "{why}");
    assert_eq!(
        m.total_completed + m.total_failed,
        releases,
        "{why}: completed + failed = releases"
    );
    assert_eq!(
        m.avg_lease_time,
        Duration::from_secs(6),
        "{why}: (2+4+6+8+10)/5"
    );
    assert_eq!(m.load.queue_depth, 2, "{why}: queue depth is real");
    assert_eq!((m.load.leased, m.load.available), (2, 0), "{why}");
    assert_eq!(m.utilisation, 1.0, "{why}");
    assert_eq!(
        m.last_scale_event,
        Some(t(0)),
        "{why}: registration is a scale event"
    );
    let later = store.metrics(&pool, t(601 + 3600)).await.expect("metrics");
    assert_eq!(
        (later.jobs_completed_1h, later.jobs_failed_1h),
        (0, 0),
        "{why}: the window slides"
    );
    assert_eq!(later.total_completed, 3, "{why}");
    let _ = held;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryLeaseStore;

    #[tokio::test]
    async fn memory_store_passes_the_conformance_suite() {
        lease_store_conformance(|| async { MemoryLeaseStore::new() }).await;
    }
}

//! Unit tests of `memory`.

use super::*;
use crate::config::PoolSpec;
use crate::model::WorkerIdentity;
use futures::executor::block_on;

fn t(secs: u64) -> Timestamp {
    Timestamp::from_unix_millis(1_700_000_000_000) + Duration::from_secs(secs)
}

fn pool_with(max: i64, ready: u128) -> (MemoryLeaseStore, PoolType, Vec<WorkerIdentity>) {
    let store = MemoryLeaseStore::new();
    let mut spec = PoolSpec::named("brains");
    spec.max_instances = max;
    let config = PoolConfig::new(spec).unwrap();
    let pool = config.pool_type().clone();
    block_on(store.configure_pool(config)).unwrap();
    let ids: Vec<_> = (1..=ready)
        .map(|i| WorkerIdentity::from_value(&pool, i))
        .collect();
    for id in &ids {
        block_on(store.register_worker(&pool, &id.processor_id, &id.app_id, t(0))).unwrap();
        block_on(store.mark_ready(&pool, id.app_id.as_str(), t(0))).unwrap();
    }
    (store, pool, ids)
}

#[test]
fn most_recently_freed_worker_is_leased_first() {
    let (store, pool, ids) = pool_with(3, 3);
    let a = block_on(store.acquire(&pool, AcquireRequest::new("h"), t(1))).unwrap();
    let lease = a.outcome.lease().unwrap().clone();
    assert_eq!(lease.processor_id, ids[2].processor_id);
    block_on(store.release(&pool, lease.lease_id, lease.fencing_token, true, t(2))).unwrap();
    let again = block_on(store.acquire(&pool, AcquireRequest::new("h"), t(3))).unwrap();
    assert_eq!(
        again.outcome.lease().unwrap().processor_id,
        ids[2].processor_id
    );
    assert_eq!(again.load.available, 2);
    store.check_invariants().unwrap();
}

#[test]
fn uncollected_handoff_is_returned_by_cancel_and_cleaned_on_expiry() {
    let (store, pool, _) = pool_with(1, 1);
    let first = block_on(store.acquire(&pool, AcquireRequest::new("a"), t(0))).unwrap();
    let first = first.outcome.lease().unwrap().clone();
    let q = block_on(store.acquire(
        &pool,
        AcquireRequest::new("b").wait(Duration::from_secs(30)),
        t(1),
    ))
    .unwrap();
    let AcquireOutcome::Queued(ticket) = q.outcome else {
        panic!("expected queue")
    };
    block_on(store.release(&pool, first.lease_id, first.fencing_token, true, t(2))).unwrap();
    let got = block_on(store.cancel_wait(&ticket))
        .unwrap()
        .expect("handed-off lease");
    assert_eq!(got.holder, "b");
    assert!(matches!(
        block_on(store.poll_wait(&ticket, t(3))),
        Err(LeaseError::UnknownTicket { .. })
    ));
    store.check_invariants().unwrap();
}

#[test]
fn waiting_ticket_is_dropped_when_its_wait_ends() {
    let (store, pool, _) = pool_with(1, 1);
    block_on(store.acquire(&pool, AcquireRequest::new("a"), t(0))).unwrap();
    let q = block_on(store.acquire(
        &pool,
        AcquireRequest::new("b").wait(Duration::from_secs(5)),
        t(0),
    ))
    .unwrap();
    let AcquireOutcome::Queued(ticket) = q.outcome else {
        panic!("expected queue")
    };
    assert_eq!(
        block_on(store.status(&pool, t(4)))
            .unwrap()
            .load
            .queue_depth,
        1
    );
    assert_eq!(
        block_on(store.status(&pool, t(5)))
            .unwrap()
            .load
            .queue_depth,
        0
    );
    assert!(matches!(
        block_on(store.poll_wait(&ticket, t(5))),
        Err(LeaseError::UnknownTicket { .. })
    ));
    store.check_invariants().unwrap();
}

#[test]
fn remove_leased_worker_drops_its_lease_without_counting_a_job() {
    let (store, pool, ids) = pool_with(2, 1);
    let a = block_on(store.acquire(&pool, AcquireRequest::new("a"), t(0))).unwrap();
    let lease = a.outcome.lease().unwrap().clone();
    let removed = block_on(store.remove_worker(&pool, &ids[0].processor_id, t(1))).unwrap();
    assert_eq!(
        removed.dropped_lease.map(|l| l.lease_id),
        Some(lease.lease_id)
    );
    assert!(matches!(
        block_on(store.release(&pool, lease.lease_id, lease.fencing_token, true, t(2))),
        Err(LeaseError::UnknownLease { .. })
    ));
    let m = block_on(store.metrics(&pool, t(2))).unwrap();
    assert_eq!(m.total_completed + m.total_failed, 0);
    assert_eq!(m.last_scale_event, Some(t(1)));
    store.check_invariants().unwrap();
}

#[test]
fn ended_and_renewed_leases_leave_stale_expiries_that_are_skipped_and_bounded() {
    let (store, pool, _) = pool_with(2, 2);
    let req = || AcquireRequest::new("h").lease_duration(Duration::from_secs(10));
    for i in 0..500 {
        let a = block_on(store.acquire(&pool, req(), t(i))).unwrap();
        let l = a.outcome.lease().unwrap().clone();
        block_on(store.release(&pool, l.lease_id, l.fencing_token, true, t(i))).unwrap();
        if i % 50 == 0 {
            store.check_invariants().unwrap();
        }
    }
    let a = block_on(store.acquire(&pool, req(), t(1000))).unwrap();
    let l = a.outcome.lease().unwrap().clone();
    block_on(store.renew(&pool, l.lease_id, l.fencing_token, Duration::ZERO, t(1001))).unwrap();
    block_on(store.renew(
        &pool,
        l.lease_id,
        l.fencing_token,
        Duration::from_secs(20),
        t(1001),
    ))
    .unwrap();
    store.check_invariants().unwrap();
    // The old expiry (1010) has passed but the lease now runs to 1030.
    assert!(
        block_on(store.reclaim_expired(&pool, t(1011)))
            .unwrap()
            .is_empty()
    );
    let got = block_on(store.reclaim_expired(&pool, t(1031))).unwrap();
    assert_eq!(
        got.iter().map(|l| l.lease_id).collect::<Vec<_>>(),
        [l.lease_id]
    );
    assert!(
        block_on(store.reclaim_expired(&pool, t(1032)))
            .unwrap()
            .is_empty()
    );
    store.check_invariants().unwrap();
}

#[test]
fn releases_are_counted_in_their_own_minute_across_minute_boundaries() {
    let (store, pool, _) = pool_with(1, 1);
    let base = Timestamp::from_unix_millis(1_700_000_040_000); // a minute start
    let at = |ms: u64| base + Duration::from_millis(ms);
    let mut window = MetricsWindow::default();
    for (i, ms) in [
        0, 59_999, 60_000, 60_001, 119_999, 120_000, 3_600_000, 3_660_000,
    ]
    .into_iter()
    .enumerate()
    {
        let a = block_on(store.acquire(&pool, AcquireRequest::new("h"), at(ms))).unwrap();
        let l = a.outcome.lease().unwrap().clone();
        let ok = i % 3 != 0;
        block_on(store.release(&pool, l.lease_id, l.fencing_token, ok, at(ms))).unwrap();
        window.record_release(at(ms), ok, Duration::ZERO);
        for probe in [at(ms), at(ms + 59_000), at(ms + 3_600_000)] {
            let m = block_on(store.metrics(&pool, probe)).unwrap();
            assert_eq!(
                (m.jobs_completed_1h, m.jobs_failed_1h),
                {
                    let (c, f, _) = window.last_hour(probe);
                    (c, f)
                },
                "release {i} at +{ms} ms, probed at {probe}"
            );
        }
    }
}

#[test]
fn registering_twice_is_idempotent_but_conflicting_ids_are_refused() {
    let (store, pool, ids) = pool_with(2, 1);
    let again =
        block_on(store.register_worker(&pool, &ids[0].processor_id, &ids[0].app_id, t(5))).unwrap();
    assert_eq!(again.state, WorkerState::Available);
    let other = WorkerIdentity::from_value(&pool, 99);
    let err = block_on(store.register_worker(&pool, &ids[0].processor_id, &other.app_id, t(5)))
        .unwrap_err();
    assert!(matches!(err, LeaseError::WorkerConflict { .. }));
    let err = block_on(store.register_worker(&pool, &other.processor_id, &ids[0].app_id, t(5)))
        .unwrap_err();
    assert!(matches!(err, LeaseError::WorkerConflict { .. }));
    assert!(matches!(
        block_on(store.mark_ready(&pool, "nobody", t(5))),
        Err(LeaseError::UnknownWorker { .. })
    ));
}

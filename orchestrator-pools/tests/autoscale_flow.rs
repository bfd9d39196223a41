//! The autoscale policy driving the in-memory store through a pool's life, the way the
//! host's loop will: preset deployed, workers start and report in, demand rises and falls,
//! idle workers are drained and removed. Time is passed in; nothing sleeps.

use std::time::Duration;

use futures::executor::block_on;
use orchestrator_core::Timestamp;
use orchestrator_pools::{
    AcquireOutcome, AcquireRequest, Autoscaler, Lease, LeaseStore, MemoryLeaseStore, PoolConfig,
    PoolSpec, PoolType, ScaleDecision, ScaleReason, WorkerIdentity, WorkerState,
};

fn t(secs: u64) -> Timestamp {
    Timestamp::from_unix_millis(1_767_225_600_000) + Duration::from_secs(secs)
}

struct Harness {
    store: MemoryLeaseStore,
    pool: PoolType,
    config: PoolConfig,
    scaler: Autoscaler,
    next_id: u128,
}

impl Harness {
    fn new(f: impl FnOnce(&mut PoolSpec)) -> Self {
        let mut spec = PoolSpec::named("npc-brain");
        f(&mut spec);
        let config = PoolConfig::new(spec).unwrap();
        let store = MemoryLeaseStore::new();
        block_on(store.configure_pool(config.clone())).unwrap();
        Harness {
            pool: config.pool_type().clone(),
            store,
            config,
            scaler: Autoscaler::new(),
            next_id: 0,
        }
    }

    /// What the host's executor does: register first (reserving capacity), start the
    /// container (here: it reports in at once), drain and remove.
    fn apply(&mut self, d: &ScaleDecision, now: Timestamp) {
        for _ in 0..d.start {
            self.next_id += 1;
            let id = WorkerIdentity::from_value(&self.pool, self.next_id);
            block_on(
                self.store
                    .register_worker(&self.pool, &id.processor_id, &id.app_id, now),
            )
            .unwrap();
            block_on(self.store.mark_ready(&self.pool, id.app_id.as_str(), now)).unwrap();
        }
        for id in &d.drain {
            let w = block_on(self.store.drain_worker(&self.pool, id, None, now)).unwrap();
            assert!(w.lease_id.is_none(), "the policy drained a leased worker");
            block_on(self.store.remove_worker(&self.pool, id, now)).unwrap();
        }
    }

    fn tick(&mut self, now: Timestamp) -> ScaleDecision {
        let status = block_on(self.store.status(&self.pool, now)).unwrap();
        let d = self.scaler.evaluate(&status, now);
        self.apply(&d, now);
        d
    }

    fn acquire(&mut self, now: Timestamp) -> Option<Lease> {
        let a = block_on(
            self.store
                .acquire(&self.pool, AcquireRequest::new("npc"), now),
        )
        .unwrap();
        let d = self
            .scaler
            .on_acquire(&self.config, &a.outcome, &a.load, now);
        self.apply(&d, now);
        match a.outcome {
            AcquireOutcome::Leased(l) => Some(l),
            _ => None,
        }
    }

    fn count(&self, state: WorkerState, now: Timestamp) -> usize {
        block_on(self.store.status(&self.pool, now))
            .unwrap()
            .workers_in(state)
            .count()
    }
}

#[test]
fn a_pool_grows_with_demand_and_shrinks_after_it() {
    let mut h = Harness::new(|s| {
        s.min_instances = 2;
        s.max_instances = 8;
        s.idle_timeout_minutes = 60;
    });
    let initial = Autoscaler::initial(&h.config);
    h.apply(&initial, t(0));
    assert_eq!(
        h.count(WorkerState::Available, t(0)),
        2,
        "a fresh preset starts minInstances"
    );

    // Demand: each acquire that pushes utilisation over 0.8 or is refused scales up at once.
    let mut held = Vec::new();
    for i in 0..8 {
        if let Some(l) = h.acquire(t(10 + i)) {
            held.push(l);
        }
    }
    let status = block_on(h.store.status(&h.pool, t(20))).unwrap();
    assert_eq!(status.workers.len(), 8, "grew to max");
    assert_eq!(held.len(), 8, "scaling ahead of demand served every caller");
    assert!(h.tick(t(20)).is_noop(), "at max nothing more can start");

    // Demand drops: release everything; nothing shrinks before the stabilisation window.
    for l in held.drain(..) {
        block_on(
            h.store
                .release(&h.pool, l.lease_id, l.fencing_token, true, t(30)),
        )
        .unwrap();
    }
    assert!(h.tick(t(31)).is_noop());
    assert!(h.tick(t(31 + 299)).is_noop());
    let d = h.tick(t(31 + 300));
    assert_eq!(d.reason, ScaleReason::Underutilised);
    assert_eq!(
        block_on(h.store.status(&h.pool, t(400)))
            .unwrap()
            .workers
            .len(),
        2,
        "back to minInstances"
    );
    assert!(h.tick(t(10_000)).is_noop(), "never below minInstances");
}

#[test]
fn idle_workers_are_reaped_but_the_minimum_stays() {
    let mut h = Harness::new(|s| {
        s.min_instances = 1;
        s.max_instances = 4;
        s.scale_down_threshold = 0.0;
        s.idle_timeout_minutes = 1;
    });
    h.apply(
        &ScaleDecision {
            start: 4,
            drain: Vec::new(),
            reason: ScaleReason::Queued,
        },
        t(0),
    );
    let l = h.acquire(t(30)).expect("a worker");
    assert!(h.tick(t(59)).is_noop());
    let d = h.tick(t(60));
    // minInstances counts every worker: the leased one is enough.
    assert_eq!((d.reason, d.drain.len()), (ScaleReason::IdleTimeout, 3));
    assert_eq!(
        h.count(WorkerState::Leased, t(60)),
        1,
        "the leased worker stays"
    );
    block_on(
        h.store
            .release(&h.pool, l.lease_id, l.fencing_token, true, t(61)),
    )
    .unwrap();
    assert!(h.tick(t(100)).is_noop(), "min 1 remains");
}

//! Property tests of the in-memory lease store: for random operation sequences a worker is
//! never leased twice, worker counts are conserved, refused operations change nothing,
//! and the store's internal invariants hold after every step.

use std::collections::BTreeSet;
use std::time::Duration;

use futures::executor::block_on;
use orchestrator_core::Timestamp;
use orchestrator_pools::{
    AcquireOutcome, AcquireRequest, FencingToken, Lease, LeaseError, LeaseStore, MemoryLeaseStore,
    PoolConfig, PoolSpec, PoolType, WaitStatus, WaitTicket, WorkerIdentity,
};
use proptest::prelude::*;

const MAX: i64 = 4;

#[derive(Debug, Clone)]
enum Op {
    Register,
    Ready(usize),
    Acquire {
        priority: i32,
        wait: bool,
        secs: u64,
    },
    Release {
        lease: usize,
        success: bool,
        stale: bool,
    },
    Renew {
        lease: usize,
        secs: u64,
    },
    Advance(u64),
    Reclaim,
    Drain(usize),
    Remove(usize),
    Poll(usize),
    Cancel(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => Just(Op::Register),
        2 => (0..8usize).prop_map(Op::Ready),
        5 => (-2..3i32, any::<bool>(), 1..20u64).prop_map(|(priority, wait, secs)| Op::Acquire { priority, wait, secs }),
        4 => (0..8usize, any::<bool>(), prop::bool::weighted(0.2)).prop_map(|(lease, success, stale)| Op::Release { lease, success, stale }),
        2 => (0..8usize, 1..10u64).prop_map(|(lease, secs)| Op::Renew { lease, secs }),
        3 => (0..15u64).prop_map(Op::Advance),
        1 => Just(Op::Reclaim),
        1 => (0..8usize).prop_map(Op::Drain),
        1 => (0..8usize).prop_map(Op::Remove),
        2 => (0..8usize).prop_map(Op::Poll),
        1 => (0..8usize).prop_map(Op::Cancel),
    ]
}

struct World {
    store: MemoryLeaseStore,
    pool: PoolType,
    now: Timestamp,
    ids: Vec<WorkerIdentity>,
    registered: usize,
    removed: BTreeSet<usize>,
    leases: Vec<Lease>,
    tickets: Vec<WaitTicket>,
    last_token: FencingToken,
}

impl World {
    fn new() -> Self {
        let store = MemoryLeaseStore::new();
        let mut spec = PoolSpec::named("prop");
        spec.max_instances = MAX;
        let config = PoolConfig::new(spec).unwrap();
        let pool = config.pool_type().clone();
        block_on(store.configure_pool(config)).unwrap();
        World {
            store,
            pool,
            now: Timestamp::from_unix_millis(1_767_225_600_000),
            ids: Vec::new(),
            registered: 0,
            removed: BTreeSet::new(),
            leases: Vec::new(),
            tickets: Vec::new(),
            last_token: FencingToken(0),
        }
    }

    fn new_lease(&mut self, l: Lease) -> Result<(), TestCaseError> {
        prop_assert!(
            l.fencing_token > self.last_token,
            "token {} after {}",
            l.fencing_token,
            self.last_token
        );
        self.last_token = l.fencing_token;
        self.leases.push(l);
        Ok(())
    }

    fn apply(&mut self, op: Op) -> Result<(), TestCaseError> {
        let (store, pool, now) = (&self.store, &self.pool, self.now);
        match op {
            Op::Register => {
                let id = WorkerIdentity::from_value(pool, self.ids.len() as u128 + 1);
                let live = self.registered - self.removed.len();
                match block_on(store.register_worker(pool, &id.processor_id, &id.app_id, now)) {
                    Ok(_) => {
                        prop_assert!(live < MAX as usize, "registered beyond max");
                        self.registered += 1;
                        self.ids.push(id);
                    }
                    Err(LeaseError::AtCapacity { .. }) => prop_assert!(live >= MAX as usize),
                    Err(e) => return Err(TestCaseError::fail(e.to_string())),
                }
            }
            Op::Ready(i) => {
                if let Some(id) = self.ids.get(i) {
                    let r = block_on(store.mark_ready(pool, id.app_id.as_str(), now));
                    prop_assert_eq!(r.is_err(), self.removed.contains(&i));
                }
            }
            Op::Acquire {
                priority,
                wait,
                secs,
            } => {
                let mut req = AcquireRequest::new("p")
                    .priority(priority)
                    .lease_duration(Duration::from_secs(secs));
                if wait {
                    req = req.wait(Duration::from_secs(secs));
                }
                match block_on(store.acquire(pool, req, now)).unwrap().outcome {
                    AcquireOutcome::Leased(l) => self.new_lease(l)?,
                    AcquireOutcome::Queued(t) => self.tickets.push(t),
                    AcquireOutcome::Exhausted => {}
                }
            }
            Op::Release {
                lease,
                success,
                stale,
            } => {
                if let Some(l) = self.leases.get(lease).cloned() {
                    let before = block_on(store.status(pool, now)).unwrap();
                    let token = if stale {
                        FencingToken(l.fencing_token.0 + 1)
                    } else {
                        l.fencing_token
                    };
                    match block_on(store.release(pool, l.lease_id, token, success, now)) {
                        Ok(r) => {
                            prop_assert!(!stale, "a wrong token was accepted");
                            if let Some(h) = r.handed_off {
                                self.new_lease(h)?;
                            }
                        }
                        Err(_) => {
                            let after = block_on(store.status(pool, now)).unwrap();
                            prop_assert_eq!(before, after, "a refused release changed the pool");
                        }
                    }
                }
            }
            Op::Renew { lease, secs } => {
                if let Some(l) = self.leases.get(lease) {
                    let _ = block_on(store.renew(
                        pool,
                        l.lease_id,
                        l.fencing_token,
                        Duration::from_secs(secs),
                        now,
                    ));
                }
            }
            Op::Advance(secs) => self.now = now + Duration::from_secs(secs),
            Op::Reclaim => {
                for l in block_on(store.reclaim_expired(pool, now)).unwrap() {
                    prop_assert!(l.expires_at < now, "reclaimed a live lease");
                }
            }
            Op::Drain(i) => {
                if let Some(id) = self.ids.get(i) {
                    let r = block_on(store.drain_worker(pool, &id.processor_id, None, now));
                    prop_assert_eq!(r.is_err(), self.removed.contains(&i));
                }
            }
            Op::Remove(i) => {
                if let Some(id) = self.ids.get(i) {
                    let r = block_on(store.remove_worker(pool, &id.processor_id, now));
                    prop_assert_eq!(r.is_err(), self.removed.contains(&i));
                    self.removed.insert(i);
                }
            }
            Op::Poll(i) => {
                if let Some(t) = self.tickets.get(i).cloned()
                    && let Ok(WaitStatus::Leased(l)) = block_on(store.poll_wait(&t, now))
                {
                    let status = block_on(store.status(pool, now)).unwrap();
                    prop_assert!(
                        status.leases.contains(&l),
                        "poll returned a lease that is not live"
                    );
                    // Handed over by mark_ready or a reclaim, which do not report it.
                    if !self.leases.iter().any(|k| k.lease_id == l.lease_id) {
                        self.leases.push(l);
                    }
                }
            }
            Op::Cancel(i) => {
                if let Some(t) = self.tickets.get(i).cloned() {
                    block_on(store.cancel_wait(&t)).unwrap();
                }
            }
        }
        self.check()
    }

    fn check(&self) -> Result<(), TestCaseError> {
        self.store.check_invariants().map_err(TestCaseError::fail)?;
        let status = block_on(self.store.status(&self.pool, self.now)).unwrap();
        let mut leased = BTreeSet::new();
        for l in &status.leases {
            prop_assert!(
                leased.insert(l.processor_id.clone()),
                "{} leased twice",
                l.processor_id
            );
        }
        let live = self.registered - self.removed.len();
        prop_assert_eq!(status.workers.len(), live, "worker count not conserved");
        prop_assert_eq!(status.load.total() as usize, live);
        prop_assert!(live <= MAX as usize);
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_operation_sequences_keep_the_pool_sound(ops in prop::collection::vec(op(), 1..120)) {
        let mut world = World::new();
        for op in ops {
            world.apply(op)?;
        }
    }
}

//! Stress run for [`LeaseStore`] implementations (feature `testkit`): many concurrent tasks
//! doing mixed operations (acquire, wait, release, renew, expire), checked against the
//! run's own bookkeeping of who holds which worker. Time is a shared manual clock, never
//! the wall. Store-specific invariant checks are left to the caller.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use orchestrator_core::Timestamp;
use orchestrator_core::time::{Clock, ManualClock};

use crate::config::{PoolConfig, PoolSpec, PoolType};
use crate::model::{Lease, LeaseId, ProcessorId, WaitTicket, WorkerIdentity, WorkerState};
use crate::store::{AcquireOutcome, AcquireRequest, LeaseError, LeaseStore, WaitStatus};

/// Shape of a stress run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StressConfig {
    /// Concurrent tasks (64 by default).
    pub tasks: u64,
    /// Operations per task (2,000 by default).
    pub ops_per_task: u64,
    /// Workers in the pool.
    pub workers: u128,
}

impl Default for StressConfig {
    fn default() -> Self {
        StressConfig {
            tasks: 64,
            ops_per_task: 2_000,
            workers: 16,
        }
    }
}

/// What a stress run observed (already checked by [`lease_store_stress`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StressReport {
    /// The stressed pool, for the caller's own invariant checks.
    pub pool: PoolType,
    /// Releases the store accepted with success.
    pub completed: u64,
    /// Releases the store accepted as failures.
    pub failed: u64,
    /// Leases the store reclaimed after expiry.
    pub reclaimed: u64,
}

/// Small deterministic generator (xorshift64*), one per task.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

/// Who the test believes holds each worker: lease id and the expiry the holder knows.
#[derive(Default)]
struct Book {
    held: Mutex<HashMap<ProcessorId, (LeaseId, Timestamp)>>,
    double_leases: AtomicU64,
    completed: AtomicU64,
    failed: AtomicU64,
}

impl Book {
    /// Records that `lease` is held. Another live entry for the same worker is a double
    /// lease. An entry whose known expiry has passed is fine: the store may have reclaimed
    /// it (its real expiry is never earlier than what the holder knows, and the clock only
    /// moves forward).
    fn take(&self, lease: &Lease, clock: &ManualClock) {
        let mut held = self.held.lock().unwrap();
        let now = clock.now();
        if lease.expires_at < now {
            return; // Already expired when we learnt of it: we do not hold it.
        }
        if let Some((other, expires_at)) = held.get(&lease.processor_id)
            && *other != lease.lease_id
            && *expires_at >= now
        {
            self.double_leases.fetch_add(1, Ordering::SeqCst);
        }
        held.insert(
            lease.processor_id.clone(),
            (lease.lease_id, lease.expires_at),
        );
    }

    /// Forgets `lease` (before releasing it), unless the worker has moved on.
    fn give_back(&self, lease: &Lease) {
        let mut held = self.held.lock().unwrap();
        if held.get(&lease.processor_id).map(|e| e.0) == Some(lease.lease_id) {
            held.remove(&lease.processor_id);
        }
    }

    fn renewed(&self, lease: &Lease) {
        let mut held = self.held.lock().unwrap();
        if let Some(e) = held.get_mut(&lease.processor_id)
            && e.0 == lease.lease_id
        {
            e.1 = lease.expires_at;
        }
    }
}

async fn release(
    store: &dyn LeaseStore,
    pool: &PoolType,
    book: &Book,
    lease: Lease,
    success: bool,
    now: Timestamp,
) {
    book.give_back(&lease);
    match store
        .release(pool, lease.lease_id, lease.fencing_token, success, now)
        .await
    {
        Ok(_) => {
            let counter = if success {
                &book.completed
            } else {
                &book.failed
            };
            counter.fetch_add(1, Ordering::SeqCst);
        }
        // Expired and reclaimed (or handed on) before we gave it back.
        Err(LeaseError::UnknownLease { .. }) => {}
        Err(e) => panic!("release refused unexpectedly: {e}"),
    }
}

async fn run_task(
    store: Arc<dyn LeaseStore>,
    pool: PoolType,
    clock: ManualClock,
    book: Arc<Book>,
    seed: u64,
    ops: u64,
) {
    let store = &*store;
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut mine: Vec<Lease> = Vec::new();
    let mut tickets: Vec<WaitTicket> = Vec::new();
    for _ in 0..ops {
        let now = clock.now();
        match rng.below(100) {
            0..=34 => {
                let wait = if rng.below(4) == 0 {
                    Duration::from_secs(1 + rng.below(5))
                } else {
                    Duration::ZERO
                };
                let req = AcquireRequest::new(format!("task-{seed}"))
                    .priority(rng.below(5) as i32)
                    .lease_duration(Duration::from_secs(1 + rng.below(10)))
                    .wait(wait);
                match store
                    .acquire(&pool, req, now)
                    .await
                    .expect("acquire")
                    .outcome
                {
                    AcquireOutcome::Leased(l) => {
                        book.take(&l, &clock);
                        mine.push(l);
                    }
                    AcquireOutcome::Queued(t) => tickets.push(t),
                    AcquireOutcome::Exhausted => {}
                }
            }
            35..=64 => {
                if !mine.is_empty() {
                    let l = mine.swap_remove(rng.below(mine.len() as u64) as usize);
                    release(store, &pool, &book, l, rng.below(4) != 0, now).await;
                }
            }
            65..=79 => {
                if !mine.is_empty() {
                    let i = rng.below(mine.len() as u64) as usize;
                    let l = &mine[i];
                    match store
                        .renew(
                            &pool,
                            l.lease_id,
                            l.fencing_token,
                            Duration::from_secs(1 + rng.below(5)),
                            now,
                        )
                        .await
                    {
                        Ok(renewed) => {
                            book.renewed(&renewed);
                            mine[i] = renewed;
                        }
                        Err(LeaseError::LeaseExpired { .. } | LeaseError::UnknownLease { .. }) => {
                            let l = mine.swap_remove(i);
                            book.give_back(&l);
                        }
                        Err(e) => panic!("renew refused unexpectedly: {e}"),
                    }
                }
            }
            80..=89 => {
                clock.advance(Duration::from_millis(rng.below(3_000)));
                store
                    .reclaim_expired(&pool, clock.now())
                    .await
                    .expect("reclaim");
            }
            _ => {
                if !tickets.is_empty() {
                    let i = rng.below(tickets.len() as u64) as usize;
                    match store.poll_wait(&tickets[i], now).await {
                        Ok(WaitStatus::Waiting) => {}
                        Ok(WaitStatus::Leased(l)) => {
                            tickets.swap_remove(i);
                            book.take(&l, &clock);
                            mine.push(l);
                        }
                        Err(LeaseError::UnknownTicket { .. }) => {
                            tickets.swap_remove(i);
                        }
                        Err(e) => panic!("poll refused unexpectedly: {e}"),
                    }
                }
            }
        }
        tokio::task::yield_now().await;
    }
    for t in tickets {
        if let Some(l) = store.cancel_wait(&t).await.expect("cancel") {
            book.take(&l, &clock);
            mine.push(l);
        }
    }
    for l in mine {
        release(store, &pool, &book, l, true, clock.now()).await;
    }
}

/// Runs `config.tasks` concurrent tasks (each a `tokio::spawn`ed task, so a multi-thread
/// runtime runs them in parallel) against a fresh pool `stress` of `store`, then checks:
/// no worker was ever seen leased to two holders at once, every worker is registered once
/// and Available with no lease left, the queue is empty, and the store's metrics equal the
/// releases it accepted. Panics naming the broken rule.
pub async fn lease_store_stress(store: Arc<dyn LeaseStore>, config: StressConfig) -> StressReport {
    let mut spec = PoolSpec::named("stress");
    spec.max_instances = i64::try_from(config.workers).expect("workers fit in i64");
    let pool_config = PoolConfig::new(spec).expect("valid config");
    let pool = pool_config.pool_type().clone();
    store.configure_pool(pool_config).await.expect("configure");
    let clock = ManualClock::new(Timestamp::from_unix_millis(1_767_225_600_000));
    for i in 1..=config.workers {
        let id = WorkerIdentity::from_value(&pool, i);
        store
            .register_worker(&pool, &id.processor_id, &id.app_id, clock.now())
            .await
            .expect("register");
        store
            .mark_ready(&pool, id.app_id.as_str(), clock.now())
            .await
            .expect("ready");
    }
    let book = Arc::new(Book::default());
    let tasks: Vec<_> = (0..config.tasks)
        .map(|seed| {
            tokio::spawn(run_task(
                Arc::clone(&store),
                pool.clone(),
                clock.clone(),
                book.clone(),
                seed + 1,
                config.ops_per_task,
            ))
        })
        .collect();
    for t in tasks {
        t.await.expect("task panicked");
    }

    assert_eq!(
        book.double_leases.load(Ordering::SeqCst),
        0,
        "a worker was leased twice at once"
    );
    let status = store.status(&pool, clock.now()).await.expect("status");
    assert_eq!(
        status.workers.len() as u128,
        config.workers,
        "workers are conserved"
    );
    let mut ids: Vec<_> = status.workers.iter().map(|w| &w.processor_id).collect();
    ids.dedup();
    assert_eq!(
        ids.len() as u128,
        config.workers,
        "each worker appears once"
    );
    assert!(
        status.leases.is_empty(),
        "every lease was given back: {:?}",
        status.leases
    );
    assert!(
        status
            .workers
            .iter()
            .all(|w| w.state == WorkerState::Available && w.lease_id.is_none()),
        "all idle at the end"
    );
    assert_eq!(status.load.available as u128, config.workers);
    assert_eq!(
        (
            status.load.leased,
            status.load.pending,
            status.load.draining
        ),
        (0, 0, 0),
        "counts match the records"
    );
    assert_eq!(status.load.queue_depth, 0);

    let m = store.metrics(&pool, clock.now()).await.expect("metrics");
    let (completed, failed) = (
        book.completed.load(Ordering::SeqCst),
        book.failed.load(Ordering::SeqCst),
    );
    assert_eq!(
        (m.total_completed, m.total_failed),
        (completed, failed),
        "metrics add up"
    );
    // How many leases end by release and how many by expiry depends on how the tasks
    // interleave (the shared clock jumps while leases are held), so the sanity check counts
    // both: every lease granted ended one way or the other.
    let ended = completed + failed + m.total_reclaimed;
    assert!(
        ended > config.tasks * config.ops_per_task / 20 && completed + failed > 0,
        "the run did real work: {completed} + {failed} released, {} reclaimed",
        m.total_reclaimed
    );
    assert!(m.total_reclaimed > 0, "expiry was exercised");
    StressReport {
        pool,
        completed,
        failed,
        reclaimed: m.total_reclaimed,
    }
}

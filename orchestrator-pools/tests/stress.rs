//! Stress test of the in-memory lease store: 64 concurrent tasks, 2,000 mixed operations
//! each (acquire, wait, release, renew, expire), checked against the test's own
//! bookkeeping of who holds which worker. Time is a shared manual clock, never the wall.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use orchestrator_core::Timestamp;
use orchestrator_core::time::{Clock, ManualClock};
use orchestrator_pools::{
    AcquireOutcome, AcquireRequest, Lease, LeaseError, LeaseId, LeaseStore, MemoryLeaseStore,
    PoolConfig, PoolSpec, PoolType, ProcessorId, WaitStatus, WaitTicket, WorkerIdentity,
    WorkerState,
};

const TASKS: u64 = 64;
const OPS_PER_TASK: u64 = 2_000;
const WORKERS: u128 = 16;

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
    store: &MemoryLeaseStore,
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
    store: MemoryLeaseStore,
    pool: PoolType,
    clock: ManualClock,
    book: Arc<Book>,
    seed: u64,
) {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut mine: Vec<Lease> = Vec::new();
    let mut tickets: Vec<WaitTicket> = Vec::new();
    for _ in 0..OPS_PER_TASK {
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
                    release(&store, &pool, &book, l, rng.below(4) != 0, now).await;
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
        release(&store, &pool, &book, l, true, clock.now()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_tasks_never_double_lease_and_metrics_add_up() {
    let store = MemoryLeaseStore::new();
    let mut spec = PoolSpec::named("stress");
    spec.max_instances = WORKERS as i64;
    let config = PoolConfig::new(spec).unwrap();
    let pool = config.pool_type().clone();
    store.configure_pool(config).await.unwrap();
    let clock = ManualClock::new(Timestamp::from_unix_millis(1_767_225_600_000));
    for i in 1..=WORKERS {
        let id = WorkerIdentity::from_value(&pool, i);
        store
            .register_worker(&pool, &id.processor_id, &id.app_id, clock.now())
            .await
            .unwrap();
        store
            .mark_ready(&pool, id.app_id.as_str(), clock.now())
            .await
            .unwrap();
    }
    let book = Arc::new(Book::default());
    let tasks: Vec<_> = (0..TASKS)
        .map(|seed| {
            tokio::spawn(run_task(
                store.clone(),
                pool.clone(),
                clock.clone(),
                book.clone(),
                seed + 1,
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
    store.check_invariants().expect("store invariants");
    let status = store.status(&pool, clock.now()).await.unwrap();
    assert_eq!(
        status.workers.len() as u128,
        WORKERS,
        "workers are conserved"
    );
    let mut ids: Vec<_> = status.workers.iter().map(|w| &w.processor_id).collect();
    ids.dedup();
    assert_eq!(ids.len() as u128, WORKERS, "each worker appears once");
    assert!(
        status.leases.is_empty(),
        "every lease was given back: {:?}",
        status.leases
    );
    assert!(
        status
            .workers
            .iter()
            .all(|w| w.state == WorkerState::Available),
        "all idle at the end"
    );
    assert_eq!(status.load.available as u128, WORKERS);
    assert_eq!(status.load.queue_depth, 0);

    let m = store.metrics(&pool, clock.now()).await.unwrap();
    let (completed, failed) = (
        book.completed.load(Ordering::SeqCst),
        book.failed.load(Ordering::SeqCst),
    );
    assert_eq!(
        (m.total_completed, m.total_failed),
        (completed, failed),
        "metrics add up"
    );
    assert!(
        completed + failed > TASKS * 100,
        "the test did real work: {completed} + {failed}"
    );
    assert!(m.total_reclaimed > 0, "expiry was exercised");
}

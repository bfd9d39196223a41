//! In-memory [`LeaseStore`]: the embedded default and the reference the Redis store is
//! tested against. A cheap `Clone` handle; every pool has its own `std::sync::Mutex`, so
//! each operation is trivially atomic and pools never contend with each other.
//!
//! Kept as one file: one pool's state machine and the store handle around it, so each
//! operation's rules read in one place beside the Redis script they mirror.

use std::cmp::Reverse;
use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use futures::future::BoxFuture;
use orchestrator_core::{AppId, Timestamp};
use rustc_hash::FxHashMap;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::config::{PoolConfig, PoolType};
use crate::model::{
    FencingToken, Lease, LeaseId, MetricsWindow, PoolLoad, PoolMetrics, PoolStatus, ProcessorId,
    Released, WaitTicket, Worker, WorkerState,
};
use crate::store::{
    AcquireOutcome, AcquireRequest, Acquired, LeaseError, LeaseStore, RemovedWorker, WaitStatus,
};

/// The in-memory lease store.
///
/// Why a std `Mutex` and not tokio's: every operation is a short, synchronous critical
/// section (a few index updates, no I/O) and never holds the lock across an `.await`, so a
/// blocking lock is both correct and cheaper than an async one (this is the pattern of
/// tokio's mini-redis). Each pool has its own lock; the pool map itself is read lock-free
/// (an [`ArcSwap`] snapshot, replaced whole when a pool is created, which is rare).
/// Inside a pool, workers live in slots addressed by index, so the acquire/release hot path
/// does no string comparison and no allocation beyond the lease it hands out (ids are
/// shared `Arc<str>` text, so copying them into answers is a reference-count increment).
/// Waiters are woken through a per-ticket [`Notify`] (see [`LeaseStore::watch`]).
#[derive(Clone, Default)]
pub struct MemoryLeaseStore {
    inner: Arc<Shared>,
}

type PoolMap = FxHashMap<PoolType, Arc<Mutex<PoolState>>>;

#[derive(Default)]
struct Shared {
    /// Pool name -> its state. Read without locking; replaced (copy on write) under
    /// `configure` when a pool is created.
    pools: ArcSwap<PoolMap>,
    /// Serialises pool creation, so two concurrent `configure_pool` calls of a new pool
    /// cannot both insert.
    configure: Mutex<()>,
}

impl std::fmt::Debug for MemoryLeaseStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryLeaseStore").finish_non_exhaustive()
    }
}

/// Queue order: higher priority first, then arrival order.
type QueueKey = (Reverse<i32>, u64);

/// An entry of [`PoolState::expiries`]: when, and which lease (its fencing token first,
/// unique per pool, so that two entries rarely compare their uuids).
type ExpiryEntry = (Timestamp, FencingToken, LeaseId);

/// How many stale expiry entries beyond the number of live leases are tolerated before they
/// are dropped.
const EXPIRY_SLACK: usize = 64;

/// Index of a worker's slot in [`PoolState::slots`].
type Slot = usize;

struct LeaseEntry {
    lease: Lease,
    /// The leased worker's slot.
    slot: Slot,
    /// The wait ticket this lease was handed to and that has not collected it yet.
    ticket: Option<Uuid>,
}

/// A worker record without its names (which a lease on it repeats): what a release copies
/// while holding the lock.
#[derive(Clone, Copy)]
struct WorkerFields {
    state: WorkerState,
    lease_id: Option<LeaseId>,
    created_at: Timestamp,
    last_updated: Timestamp,
    idle_since: Option<Timestamp>,
}

impl WorkerFields {
    fn of(w: &Worker) -> Self {
        WorkerFields {
            state: w.state,
            lease_id: w.lease_id,
            created_at: w.created_at,
            last_updated: w.last_updated,
            idle_since: w.idle_since,
        }
    }

    /// The worker record, named as `lease` (a lease on this worker) names it.
    fn with_names(self, lease: &Lease) -> Worker {
        Worker {
            processor_id: lease.processor_id.clone(),
            app_id: lease.app_id.clone(),
            pool_type: lease.pool_type.clone(),
            state: self.state,
            lease_id: self.lease_id,
            created_at: self.created_at,
            last_updated: self.last_updated,
            idle_since: self.idle_since,
        }
    }
}

enum TicketState {
    Waiting,
    Granted(LeaseId),
}

struct TicketEntry {
    key: QueueKey,
    req: AcquireRequest,
    deadline: Timestamp,
    state: TicketState,
    notify: Arc<Notify>,
}

struct PoolState {
    config: PoolConfig,
    /// Workers by slot; `None` is a free slot (listed in `free_slots`).
    slots: Vec<Option<Worker>>,
    free_slots: Vec<Slot>,
    by_id: FxHashMap<ProcessorId, Slot>,
    app_ids: FxHashMap<AppId, Slot>,
    /// Available workers, idle longest first; acquire takes the most recently freed (the
    /// end), so under light load the others stay idle long enough to be reaped.
    available: Vec<Slot>,
    leases: FxHashMap<LeaseId, LeaseEntry>,
    /// Lease expiries, earliest on top, with lazy deletion: ending or renewing a lease
    /// leaves its entry behind (stale: the lease is gone or now expires at another time),
    /// and reclaiming skips stale entries as it meets them. A push is cheaper than a
    /// B-tree insert and a removal, and a lease usually ends long before it expires. Stale
    /// entries are dropped whenever they outnumber the live ones by more than
    /// [`EXPIRY_SLACK`], so the heap stays O(live leases).
    expiries: BinaryHeap<Reverse<ExpiryEntry>>,
    /// The last `now + duration` computed for a lease's expiry, kept because consecutive
    /// grants mostly share both (timestamps are in milliseconds) and the date arithmetic is
    /// a noticeable part of a grant.
    last_expiry: (Timestamp, Duration, Timestamp),
    /// The metrics minute last released in: its start (inclusive), end (exclusive) and
    /// index, so a release within it needs two comparisons, not a date conversion.
    metrics_minute: (Timestamp, Timestamp, i64),
    /// Waiting tickets in service order.
    queue: BTreeMap<QueueKey, Uuid>,
    tickets: FxHashMap<Uuid, TicketEntry>,
    /// Deadlines of waiting tickets, in order.
    ticket_deadlines: BTreeSet<(Timestamp, Uuid)>,
    /// Counts per state; `queue_depth` = waiting tickets.
    load: PoolLoad,
    last_token: u64,
    next_seq: u64,
    metrics: MetricsWindow,
    last_scale_event: Option<Timestamp>,
}

fn lock(m: &Mutex<PoolState>) -> MutexGuard<'_, PoolState> {
    // No code panics while holding the lock, so poisoning cannot carry a broken state.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether an expiry entry is the current one of a live lease (not stale).
fn is_live(
    leases: &FxHashMap<LeaseId, LeaseEntry>,
    (expires_at, token, lease_id): ExpiryEntry,
) -> bool {
    leases
        .get(&lease_id)
        .is_some_and(|e| e.lease.fencing_token == token && e.lease.expires_at == expires_at)
}

fn uncount(load: &mut PoolLoad, state: WorkerState) {
    let n = match state {
        WorkerState::Pending => &mut load.pending,
        WorkerState::Available => &mut load.available,
        WorkerState::Leased => &mut load.leased,
        WorkerState::Draining => &mut load.draining,
    };
    *n = n.saturating_sub(1);
}

// === impl PoolState ===

impl PoolState {
    fn new(config: PoolConfig) -> Self {
        PoolState {
            config,
            slots: Vec::new(),
            free_slots: Vec::new(),
            by_id: FxHashMap::default(),
            app_ids: FxHashMap::default(),
            available: Vec::new(),
            leases: FxHashMap::default(),
            expiries: BinaryHeap::new(),
            last_expiry: (Timestamp::UNIX_EPOCH, Duration::ZERO, Timestamp::UNIX_EPOCH),
            // An empty span: the first release computes its minute.
            metrics_minute: (Timestamp::UNIX_EPOCH, Timestamp::UNIX_EPOCH, 0),
            queue: BTreeMap::new(),
            tickets: FxHashMap::default(),
            ticket_deadlines: BTreeSet::new(),
            load: PoolLoad::default(),
            last_token: 0,
            next_seq: 0,
            metrics: MetricsWindow::default(),
            last_scale_event: None,
        }
    }

    fn pool_type(&self) -> &PoolType {
        self.config.pool_type()
    }

    fn worker(&self, slot: Slot) -> Option<&Worker> {
        self.slots.get(slot).and_then(Option::as_ref)
    }

    fn worker_mut(&mut self, slot: Slot) -> Option<&mut Worker> {
        self.slots.get_mut(slot).and_then(Option::as_mut)
    }

    /// Moves a worker to `state`, keeping the counts right. Every state change goes here.
    fn set_state(&mut self, slot: Slot, state: WorkerState, now: Timestamp) {
        if let Some(w) = self.slots.get_mut(slot).and_then(Option::as_mut) {
            uncount(&mut self.load, w.state);
            self.load.count(state);
            w.state = state;
            w.last_updated = now;
        }
    }

    /// The slot of the worker whose processor id or app-id is `key` (an app-id in any
    /// case: `AppId` compares without case; the lookup wraps `key` only when the
    /// processor id misses).
    fn find_worker(&self, key: &str) -> Option<Slot> {
        self.by_id
            .get(key)
            .or_else(|| self.app_ids.get(&AppId::from(key)))
            .copied()
    }

    fn unknown_worker(&self, key: &str) -> LeaseError {
        LeaseError::UnknownWorker {
            pool: self.pool_type().clone(),
            worker: key.to_owned(),
        }
    }

    /// Drops waiting tickets whose wait has ended (`deadline <= now`).
    fn purge_tickets(&mut self, now: Timestamp) {
        while let Some(&(deadline, id)) = self.ticket_deadlines.first() {
            if deadline > now {
                break;
            }
            self.ticket_deadlines.pop_first();
            if let Some(t) = self.tickets.remove(&id) {
                self.queue.remove(&t.key);
            }
        }
        self.load.queue_depth = u32::try_from(self.queue.len()).unwrap_or(u32::MAX);
    }

    /// Creates lease `lease_id` on the worker in `slot` (which must be unleased and not
    /// draining). The stored lease and the answer each need their own holder string:
    /// `holders` are (stored, answer). The caller makes them and the id outside the lock
    /// where it can.
    fn grant(
        &mut self,
        slot: Slot,
        req: &AcquireRequest,
        (lease_id, holders): (LeaseId, (String, String)),
        ticket: Option<Uuid>,
        now: Timestamp,
    ) -> Option<Lease> {
        let duration = req
            .lease_duration
            .filter(|d| !d.is_zero())
            .unwrap_or(self.config.default_lease_duration());
        let expires_at = self.expiry_after(now, duration);
        self.last_token += 1;
        let fencing_token = FencingToken(self.last_token);
        let pool_type = self.config.pool_type().clone();
        let w = self.slots.get_mut(slot).and_then(Option::as_mut)?;
        let lease = Lease {
            lease_id,
            pool_type,
            processor_id: w.processor_id.clone(),
            app_id: w.app_id.clone(),
            holder: holders.1,
            priority: req.priority,
            acquired_at: now,
            expires_at,
            metadata: req.metadata.clone(),
            fencing_token,
        };
        let stored = Lease {
            lease_id: lease.lease_id,
            pool_type: lease.pool_type.clone(),
            processor_id: lease.processor_id.clone(),
            app_id: lease.app_id.clone(),
            holder: holders.0,
            priority: lease.priority,
            acquired_at: lease.acquired_at,
            expires_at: lease.expires_at,
            metadata: lease.metadata.clone(),
            fencing_token: lease.fencing_token,
        };
        uncount(&mut self.load, w.state);
        self.load.count(WorkerState::Leased);
        w.state = WorkerState::Leased;
        w.last_updated = now;
        w.lease_id = Some(lease.lease_id);
        w.idle_since = None;
        self.push_expiry(lease.expires_at, lease.fencing_token, lease.lease_id);
        self.leases.insert(
            lease.lease_id,
            LeaseEntry {
                lease: stored,
                slot,
                ticket,
            },
        );
        Some(lease)
    }

    /// A worker just became free (released, reclaimed or ready): it goes to the queue head
    /// if anyone waits, else to the available list; a draining one just goes idle.
    fn free_worker(&mut self, slot: Slot, now: Timestamp) -> Option<Lease> {
        let draining = {
            let w = self.worker_mut(slot)?;
            w.lease_id = None;
            w.idle_since = Some(now);
            w.state == WorkerState::Draining
        };
        if draining {
            if let Some(w) = self.worker_mut(slot) {
                w.last_updated = now;
            }
            return None;
        }
        if let Some((_, ticket_id)) = self.queue.pop_first() {
            self.load.queue_depth = self.load.queue_depth.saturating_sub(1);
            let (req, deadline) = match self.tickets.get(&ticket_id) {
                Some(t) => (t.req.clone(), t.deadline),
                None => return self.make_available(slot, now),
            };
            self.ticket_deadlines.remove(&(deadline, ticket_id));
            let holders = (req.holder.clone(), req.holder.clone());
            let lease = self.grant(
                slot,
                &req,
                (LeaseId::generate(), holders),
                Some(ticket_id),
                now,
            )?;
            if let Some(t) = self.tickets.get_mut(&ticket_id) {
                t.state = TicketState::Granted(lease.lease_id);
                t.notify.notify_one();
            }
            return Some(lease);
        }
        self.make_available(slot, now)
    }

    fn make_available(&mut self, slot: Slot, now: Timestamp) -> Option<Lease> {
        self.set_state(slot, WorkerState::Available, now);
        self.available.push(slot);
        None
    }

    /// Removes a lease from every index (not from its worker). Returns it and its slot.
    fn end_lease(&mut self, lease_id: LeaseId) -> Option<(Lease, Slot)> {
        let entry = self.leases.remove(&lease_id)?;
        Some(self.unindex(entry))
    }

    /// Removes a lease already taken out of `leases` from the other indexes (its expiry
    /// entry goes stale and is dropped later).
    fn unindex(&mut self, entry: LeaseEntry) -> (Lease, Slot) {
        if let Some(t) = entry.ticket {
            // Handed to a waiter who never collected it.
            self.tickets.remove(&t);
        }
        self.compact_expiries();
        (entry.lease, entry.slot)
    }

    /// Takes lease `lease_id` out of `leases` if `token` is its fencing token (one hash
    /// lookup, where a check and then a removal were two); refused otherwise, changing
    /// nothing. The caller passes the entry to [`PoolState::unindex`].
    fn take_checked(
        &mut self,
        lease_id: LeaseId,
        token: FencingToken,
    ) -> Result<LeaseEntry, LeaseError> {
        match self.leases.entry(lease_id) {
            Entry::Occupied(e) if e.get().lease.fencing_token == token => Ok(e.remove()),
            Entry::Occupied(e) => Err(LeaseError::StaleFencingToken {
                given: token,
                current: e.get().lease.fencing_token,
            }),
            Entry::Vacant(_) => Err(LeaseError::UnknownLease {
                pool: self.config.pool_type().clone(),
                lease_id,
            }),
        }
    }

    /// The metrics minute of `now` (see [`MetricsWindow::record_release_in`]).
    fn metrics_minute(&mut self, now: Timestamp) -> i64 {
        let (start, end, minute) = self.metrics_minute;
        if start <= now && now < end {
            return minute;
        }
        let minute = now.unix_millis().div_euclid(60_000);
        let start_ms = minute.saturating_mul(60_000);
        self.metrics_minute = (
            Timestamp::from_unix_millis(start_ms),
            Timestamp::from_unix_millis(start_ms.saturating_add(60_000)),
            minute,
        );
        minute
    }

    /// `now + duration`, reusing the last answer when both are the same.
    fn expiry_after(&mut self, now: Timestamp, duration: Duration) -> Timestamp {
        let (last_now, last_duration, last) = self.last_expiry;
        if last_now == now && last_duration == duration {
            return last;
        }
        let expires_at = now + duration;
        self.last_expiry = (now, duration, expires_at);
        expires_at
    }

    /// Records a lease's (new) expiry.
    fn push_expiry(&mut self, expires_at: Timestamp, token: FencingToken, lease_id: LeaseId) {
        self.expiries.push(Reverse((expires_at, token, lease_id)));
        self.compact_expiries();
    }

    /// Drops the stale expiry entries once they outnumber the live leases by more than
    /// [`EXPIRY_SLACK`] (amortised O(1) per entry: at least half the heap goes each time).
    fn compact_expiries(&mut self) {
        if self.expiries.len() > 2 * self.leases.len() + EXPIRY_SLACK {
            let leases = &self.leases;
            self.expiries.retain(|e| is_live(leases, e.0));
        }
    }

    fn reclaim(&mut self, now: Timestamp) -> Vec<Lease> {
        let mut out = Vec::new();
        while let Some(&Reverse(entry)) = self.expiries.peek() {
            if entry.0 >= now {
                break;
            }
            self.expiries.pop();
            if !is_live(&self.leases, entry) {
                continue;
            }
            let Some((lease, slot)) = self.end_lease(entry.2) else {
                continue;
            };
            self.metrics.total_reclaimed += 1;
            self.free_worker(slot, now);
            out.push(lease);
        }
        out
    }

    fn checked_lease(&self, lease_id: LeaseId, token: FencingToken) -> Result<&Lease, LeaseError> {
        let entry = self
            .leases
            .get(&lease_id)
            .ok_or_else(|| LeaseError::UnknownLease {
                pool: self.pool_type().clone(),
                lease_id,
            })?;
        if entry.lease.fencing_token != token {
            return Err(LeaseError::StaleFencingToken {
                given: token,
                current: entry.lease.fencing_token,
            });
        }
        Ok(&entry.lease)
    }

    fn queue_depth_at(&self, now: Timestamp) -> u32 {
        let n = self
            .ticket_deadlines
            .iter()
            .filter(|(deadline, _)| *deadline > now)
            .count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    /// Every worker, sorted by processor id.
    fn sorted_workers(&self) -> Vec<&Worker> {
        let mut workers: Vec<&Worker> = self.slots.iter().flatten().collect();
        workers.sort_unstable_by(|a, b| a.processor_id.cmp(&b.processor_id));
        workers
    }

    fn check(&self) -> Result<(), String> {
        let pool = self.pool_type();
        let mut load = PoolLoad::default();
        let mut free = vec![false; self.slots.len()];
        for &s in &self.free_slots {
            match free.get_mut(s) {
                Some(f) if !*f && self.slots[s].is_none() => *f = true,
                _ => return Err(format!("{pool}: free slot {s} is listed twice or in use")),
            }
        }
        let mut workers = 0;
        for (slot, w) in self.slots.iter().enumerate() {
            let Some(w) = w else {
                if !free[slot] {
                    return Err(format!("{pool}: empty slot {slot} is not listed as free"));
                }
                continue;
            };
            workers += 1;
            let id = &w.processor_id;
            load.count(w.state);
            if self.by_id.get(id) != Some(&slot) {
                return Err(format!("{pool}: id index misses {id}"));
            }
            let in_available = self.available.iter().filter(|a| **a == slot).count();
            let want = usize::from(w.state == WorkerState::Available);
            if in_available != want {
                return Err(format!(
                    "{pool}: {id} is {} but listed {in_available}x as available",
                    w.state
                ));
            }
            match (w.state, w.lease_id) {
                (WorkerState::Leased, None) => {
                    return Err(format!("{pool}: {id} Leased without a lease"));
                }
                (WorkerState::Pending | WorkerState::Available, Some(_)) => {
                    return Err(format!("{pool}: {id} is {} with a lease", w.state));
                }
                (_, Some(l)) => match self.leases.get(&l) {
                    Some(e) if e.lease.processor_id == *id && e.slot == slot => {}
                    _ => return Err(format!("{pool}: {id} names lease {l} which is not its own")),
                },
                _ => {}
            }
            if self.app_ids.get(&w.app_id) != Some(&slot) {
                return Err(format!("{pool}: app-id index misses {id}"));
            }
        }
        if self.by_id.len() != workers || self.app_ids.len() != workers {
            return Err(format!("{pool}: indexes name workers that do not exist"));
        }
        load.queue_depth = u32::try_from(self.queue.len()).unwrap_or(u32::MAX);
        if load != self.load {
            return Err(format!("{pool}: counts {:?} != actual {load:?}", self.load));
        }
        if self.available.len()
            != self
                .slots
                .iter()
                .flatten()
                .filter(|w| w.state == WorkerState::Available)
                .count()
        {
            return Err(format!(
                "{pool}: available list has duplicates or strangers"
            ));
        }
        if self.expiries.len() > 2 * self.leases.len() + EXPIRY_SLACK {
            return Err(format!(
                "{pool}: {} leases but {} expiry entries",
                self.leases.len(),
                self.expiries.len()
            ));
        }
        let expiries: BTreeSet<ExpiryEntry> = self.expiries.iter().map(|e| e.0).collect();
        let mut held = BTreeSet::new();
        for (id, e) in &self.leases {
            if !held.insert(e.lease.processor_id.clone()) {
                return Err(format!("{pool}: {} is leased twice", e.lease.processor_id));
            }
            if !expiries.contains(&(e.lease.expires_at, e.lease.fencing_token, *id)) {
                return Err(format!("{pool}: lease {id} has no expiry entry"));
            }
            match self.worker(e.slot) {
                Some(w) if w.lease_id == Some(*id) && w.processor_id == e.lease.processor_id => {}
                _ => {
                    return Err(format!(
                        "{pool}: lease {id} points at a worker that does not hold it"
                    ));
                }
            }
            if e.lease.fencing_token.0 > self.last_token {
                return Err(format!("{pool}: lease {id} has a token from the future"));
            }
        }
        if !self.queue.is_empty() && !self.available.is_empty() {
            return Err(format!("{pool}: callers wait while workers are available"));
        }
        let waiting = self
            .tickets
            .values()
            .filter(|t| matches!(t.state, TicketState::Waiting))
            .count();
        if waiting != self.queue.len() || waiting != self.ticket_deadlines.len() {
            return Err(format!("{pool}: queue indexes disagree"));
        }
        Ok(())
    }
}

// === impl MemoryLeaseStore ===

impl MemoryLeaseStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Checks every internal invariant (counts, indexes, one lease per worker, no idle
    /// worker while callers wait); for tests. Describes the first violation found.
    pub fn check_invariants(&self) -> Result<(), String> {
        let pools = self.inner.pools.load();
        let mut names: Vec<&PoolType> = pools.keys().collect();
        names.sort_unstable();
        names
            .into_iter()
            .filter_map(|n| pools.get(n))
            .try_for_each(|p| lock(p).check())
    }

    /// Runs `f` on pool `pool` under its lock.
    fn with_pool<R>(
        &self,
        pool: &PoolType,
        f: impl FnOnce(&mut PoolState) -> Result<R, LeaseError>,
    ) -> Result<R, LeaseError> {
        let pools = self.inner.pools.load();
        let state = pools
            .get(pool)
            .ok_or_else(|| LeaseError::UnknownPool { pool: pool.clone() })?;
        let mut guard = lock(state);
        f(&mut guard)
    }
}

#[async_trait]
impl LeaseStore for MemoryLeaseStore {
    async fn configure_pool(&self, config: PoolConfig) -> Result<Option<PoolConfig>, LeaseError> {
        let _creating = self
            .inner
            .configure
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let pools = self.inner.pools.load_full();
        if let Some(p) = pools.get(config.pool_type()) {
            return Ok(Some(std::mem::replace(&mut lock(p).config, config)));
        }
        let mut next = PoolMap::clone(&pools);
        next.insert(
            config.pool_type().clone(),
            Arc::new(Mutex::new(PoolState::new(config))),
        );
        self.inner.pools.store(Arc::new(next));
        Ok(None)
    }

    async fn register_worker(
        &self,
        pool: &PoolType,
        processor_id: &ProcessorId,
        app_id: &AppId,
        now: Timestamp,
    ) -> Result<Worker, LeaseError> {
        self.with_pool(pool, |p| {
            if let Some(w) = p.by_id.get(processor_id).and_then(|&s| p.worker(s)) {
                return if w.app_id == *app_id {
                    Ok(w.clone())
                } else {
                    Err(LeaseError::WorkerConflict {
                        processor_id: processor_id.clone(),
                    })
                };
            }
            if p.app_ids.contains_key(app_id) {
                return Err(LeaseError::WorkerConflict {
                    processor_id: processor_id.clone(),
                });
            }
            let max = p.config.max_instances();
            if p.load.total() >= max {
                return Err(LeaseError::AtCapacity { max });
            }
            let worker = Worker {
                processor_id: processor_id.clone(),
                app_id: app_id.clone(),
                pool_type: pool.clone(),
                state: WorkerState::Pending,
                lease_id: None,
                created_at: now,
                last_updated: now,
                idle_since: Some(now),
            };
            let slot = match p.free_slots.pop() {
                Some(s) => {
                    p.slots[s] = Some(worker.clone());
                    s
                }
                None => {
                    p.slots.push(Some(worker.clone()));
                    p.slots.len() - 1
                }
            };
            p.by_id.insert(processor_id.clone(), slot);
            p.app_ids.insert(app_id.clone(), slot);
            p.load.count(WorkerState::Pending);
            p.last_scale_event = Some(now);
            Ok(worker)
        })
    }

    async fn mark_ready(
        &self,
        pool: &PoolType,
        worker: &str,
        now: Timestamp,
    ) -> Result<Worker, LeaseError> {
        self.with_pool(pool, |p| {
            let slot = p
                .find_worker(worker)
                .ok_or_else(|| p.unknown_worker(worker))?;
            if p.worker(slot).map(|w| w.state) == Some(WorkerState::Pending) {
                p.purge_tickets(now);
                p.free_worker(slot, now);
            }
            p.worker(slot)
                .cloned()
                .ok_or_else(|| p.unknown_worker(worker))
        })
    }

    async fn acquire(
        &self,
        pool: &PoolType,
        mut req: AcquireRequest,
        now: Timestamp,
    ) -> Result<Acquired, LeaseError> {
        // The new lease's id and the stored lease's copy of the holder, made before the
        // lock is taken (unused when nothing is free).
        let lease_id = LeaseId::generate();
        let holder = req.holder.clone();
        self.with_pool(pool, move |p| {
            p.purge_tickets(now);
            p.reclaim(now);
            let outcome = if let Some(slot) = p.available.pop() {
                let holders = (holder, std::mem::take(&mut req.holder));
                match p.grant(slot, &req, (lease_id, holders), None, now) {
                    Some(lease) => AcquireOutcome::Leased(lease),
                    None => AcquireOutcome::Exhausted,
                }
            } else if !req.wait.is_zero() {
                p.next_seq += 1;
                let id = Uuid::new_v4();
                let key = (Reverse(req.priority), p.next_seq);
                let deadline = now + req.wait;
                p.queue.insert(key, id);
                p.ticket_deadlines.insert((deadline, id));
                p.tickets.insert(
                    id,
                    TicketEntry {
                        key,
                        req,
                        deadline,
                        state: TicketState::Waiting,
                        notify: Arc::new(Notify::new()),
                    },
                );
                p.load.queue_depth += 1;
                AcquireOutcome::Queued(WaitTicket {
                    pool: pool.clone(),
                    id,
                })
            } else {
                AcquireOutcome::Exhausted
            };
            Ok(Acquired {
                outcome,
                load: p.load,
            })
        })
    }

    async fn poll_wait(
        &self,
        ticket: &WaitTicket,
        now: Timestamp,
    ) -> Result<WaitStatus, LeaseError> {
        let unknown = || LeaseError::UnknownTicket {
            ticket: ticket.clone(),
        };
        self.with_pool(&ticket.pool, |p| {
            p.purge_tickets(now);
            let lease_id = match p.tickets.get(&ticket.id).map(|t| &t.state) {
                None => return Err(unknown()),
                Some(TicketState::Waiting) => return Ok(WaitStatus::Waiting),
                Some(TicketState::Granted(l)) => *l,
            };
            p.tickets.remove(&ticket.id);
            let entry = p.leases.get_mut(&lease_id).ok_or_else(unknown)?;
            entry.ticket = None;
            Ok(WaitStatus::Leased(entry.lease.clone()))
        })
        .map_err(|e| match e {
            LeaseError::UnknownPool { .. } => unknown(),
            e => e,
        })
    }

    async fn cancel_wait(&self, ticket: &WaitTicket) -> Result<Option<Lease>, LeaseError> {
        let answer = self.with_pool(&ticket.pool, |p| {
            let Some(t) = p.tickets.remove(&ticket.id) else {
                return Ok(None);
            };
            match t.state {
                TicketState::Waiting => {
                    p.queue.remove(&t.key);
                    p.ticket_deadlines.remove(&(t.deadline, ticket.id));
                    p.load.queue_depth = p.load.queue_depth.saturating_sub(1);
                    Ok(None)
                }
                TicketState::Granted(lease_id) => Ok(p.leases.get_mut(&lease_id).map(|e| {
                    e.ticket = None;
                    e.lease.clone()
                })),
            }
        });
        match answer {
            Err(LeaseError::UnknownPool { .. }) => Ok(None),
            other => other,
        }
    }

    async fn release(
        &self,
        pool: &PoolType,
        lease_id: LeaseId,
        fencing_token: FencingToken,
        success: bool,
        now: Timestamp,
    ) -> Result<Released, LeaseError> {
        let (lease, held, after, handed_off) = self.with_pool(pool, |p| {
            let entry = p.take_checked(lease_id, fencing_token)?;
            p.purge_tickets(now);
            let (lease, slot) = p.unindex(entry);
            let held = now.saturating_since(lease.acquired_at);
            let minute = p.metrics_minute(now);
            p.metrics.record_release_in(minute, success, held);
            let handed_off = p.free_worker(slot, now);
            let after = p
                .worker(slot)
                .map(WorkerFields::of)
                .ok_or_else(|| p.unknown_worker(lease.processor_id.as_str()))?;
            Ok((lease, held, after, handed_off))
        })?;
        // The worker's names are the lease's: copied here, after the lock is released.
        let worker = after.with_names(&lease);
        Ok(Released {
            lease,
            success,
            lease_duration: held,
            worker,
            handed_off,
        })
    }

    async fn renew(
        &self,
        pool: &PoolType,
        lease_id: LeaseId,
        fencing_token: FencingToken,
        extend_by: Duration,
        now: Timestamp,
    ) -> Result<Lease, LeaseError> {
        self.with_pool(pool, |p| {
            let old = p.checked_lease(lease_id, fencing_token)?.expires_at;
            if old < now {
                return Err(LeaseError::LeaseExpired {
                    lease_id,
                    expired_at: old,
                });
            }
            let slot = p.leases.get(&lease_id).map(|e| e.slot);
            if slot.and_then(|s| p.worker(s)).map(|w| w.state) == Some(WorkerState::Draining) {
                return Err(LeaseError::WorkerDraining {
                    lease_id,
                    expires_at: old,
                });
            }
            let new = old + extend_by;
            let entry = p
                .leases
                .get_mut(&lease_id)
                .ok_or(LeaseError::UnknownLease {
                    pool: pool.clone(),
                    lease_id,
                })?;
            entry.lease.expires_at = new;
            let lease = entry.lease.clone();
            if new != old {
                // The entry of the old expiry is stale now.
                p.push_expiry(new, fencing_token, lease_id);
            }
            Ok(lease)
        })
    }

    async fn reclaim_expired(
        &self,
        pool: &PoolType,
        now: Timestamp,
    ) -> Result<Vec<Lease>, LeaseError> {
        self.with_pool(pool, |p| {
            p.purge_tickets(now);
            Ok(p.reclaim(now))
        })
    }

    async fn next_expiry(&self, pool: &PoolType) -> Result<Option<Timestamp>, LeaseError> {
        self.with_pool(pool, |p| {
            // Stale entries on top (ended or renewed leases) go now, as `reclaim` would
            // drop them.
            while let Some(&Reverse(top)) = p.expiries.peek() {
                if is_live(&p.leases, top) {
                    return Ok(Some(top.0));
                }
                p.expiries.pop();
            }
            Ok(None)
        })
    }

    async fn drain_worker(
        &self,
        pool: &PoolType,
        processor_id: &ProcessorId,
        deadline: Option<Timestamp>,
        now: Timestamp,
    ) -> Result<Worker, LeaseError> {
        self.with_pool(pool, |p| {
            let slot = p
                .by_id
                .get(processor_id)
                .copied()
                .ok_or_else(|| p.unknown_worker(processor_id.as_str()))?;
            let (state, lease_id) = p
                .worker(slot)
                .map(|w| (w.state, w.lease_id))
                .ok_or_else(|| p.unknown_worker(processor_id.as_str()))?;
            if state != WorkerState::Draining {
                if state == WorkerState::Available {
                    p.available.retain(|a| *a != slot);
                }
                p.set_state(slot, WorkerState::Draining, now);
                p.last_scale_event = Some(now);
            }
            if let (Some(deadline), Some(lease_id)) = (deadline, lease_id)
                && let Some(entry) = p.leases.get_mut(&lease_id)
                && entry.lease.expires_at > deadline
            {
                entry.lease.expires_at = deadline;
                let token = entry.lease.fencing_token;
                p.push_expiry(deadline, token, lease_id);
            }
            p.worker(slot)
                .cloned()
                .ok_or_else(|| p.unknown_worker(processor_id.as_str()))
        })
    }

    async fn remove_worker(
        &self,
        pool: &PoolType,
        processor_id: &ProcessorId,
        now: Timestamp,
    ) -> Result<RemovedWorker, LeaseError> {
        self.with_pool(pool, |p| {
            let slot = p
                .by_id
                .get(processor_id)
                .copied()
                .ok_or_else(|| p.unknown_worker(processor_id.as_str()))?;
            let worker = p
                .slots
                .get_mut(slot)
                .and_then(Option::take)
                .ok_or_else(|| p.unknown_worker(processor_id.as_str()))?;
            p.free_slots.push(slot);
            p.by_id.remove(processor_id);
            uncount(&mut p.load, worker.state);
            p.app_ids.remove(&worker.app_id);
            if worker.state == WorkerState::Available {
                p.available.retain(|a| *a != slot);
            }
            let dropped_lease = worker
                .lease_id
                .and_then(|l| p.end_lease(l))
                .map(|(lease, _)| lease);
            p.last_scale_event = Some(now);
            Ok(RemovedWorker {
                worker,
                dropped_lease,
            })
        })
    }

    async fn pool_config(&self, pool: &PoolType) -> Result<PoolConfig, LeaseError> {
        self.with_pool(pool, |p| Ok(p.config.clone()))
    }

    async fn status(&self, pool: &PoolType, now: Timestamp) -> Result<PoolStatus, LeaseError> {
        self.with_pool(pool, |p| {
            let mut leases: Vec<Lease> = p.leases.values().map(|e| e.lease.clone()).collect();
            leases.sort_by_key(|l| l.fencing_token);
            let mut load = p.load;
            load.queue_depth = p.queue_depth_at(now);
            Ok(PoolStatus {
                config: p.config.clone(),
                workers: p.sorted_workers().into_iter().cloned().collect(),
                leases,
                load,
            })
        })
    }

    async fn metrics(&self, pool: &PoolType, now: Timestamp) -> Result<PoolMetrics, LeaseError> {
        self.with_pool(pool, |p| {
            let mut load = p.load;
            load.queue_depth = p.queue_depth_at(now);
            Ok(PoolMetrics::from_window(
                &p.metrics,
                load,
                p.last_scale_event,
                now,
            ))
        })
    }

    async fn list_pools(&self) -> Result<Vec<PoolType>, LeaseError> {
        let mut pools: Vec<PoolType> = self.inner.pools.load().keys().cloned().collect();
        pools.sort_unstable();
        Ok(pools)
    }

    fn watch(&self, ticket: &WaitTicket) -> Option<BoxFuture<'static, ()>> {
        let notify = self
            .with_pool(&ticket.pool, |p| {
                Ok(p.tickets.get(&ticket.id).map(|t| Arc::clone(&t.notify)))
            })
            .ok()
            .flatten();
        Some(match notify {
            // `notify_one` stores a permit, so a grant made before this future is polled
            // still wakes it.
            Some(n) => Box::pin(async move { n.notified().await }),
            // Unknown ticket: wake at once so the waiter polls and learns why.
            None => Box::pin(futures::future::ready(())),
        })
    }
}

#[cfg(test)]
mod tests;

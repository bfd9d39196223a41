//! In-memory [`LeaseStore`]: the embedded default and the reference the Redis store is
//! tested against. A cheap `Clone` handle around one `std::sync::Mutex` that guards every
//! pool, so each operation is trivially atomic.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use futures::future::BoxFuture;
use orchestrator_core::{AppId, Timestamp};
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
/// section (a few map updates, no I/O) and never holds the lock across an `.await`, so a
/// blocking lock is both correct and cheaper than an async one (this is the pattern of
/// tokio's mini-redis). One lock for all pools keeps the code obviously atomic; pools are
/// few and operations take microseconds, so contention is not the bottleneck.
/// Waiters are woken through a per-ticket [`Notify`] (see [`LeaseStore::watch`]).
#[derive(Clone, Default)]
pub struct MemoryLeaseStore {
    inner: Arc<Mutex<BTreeMap<PoolType, PoolState>>>,
}

impl std::fmt::Debug for MemoryLeaseStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryLeaseStore").finish_non_exhaustive()
    }
}

/// Queue order: higher priority first, then arrival order.
type QueueKey = (Reverse<i32>, u64);

struct LeaseEntry {
    lease: Lease,
    /// The wait ticket this lease was handed to and that has not collected it yet.
    ticket: Option<Uuid>,
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
    workers: BTreeMap<ProcessorId, Worker>,
    app_ids: HashMap<AppId, ProcessorId>,
    /// Available workers, idle longest first; acquire takes the most recently freed (the
    /// end), so under light load the others stay idle long enough to be reaped.
    available: Vec<ProcessorId>,
    leases: HashMap<LeaseId, LeaseEntry>,
    /// Lease expiries in order: reclaiming is O(expired).
    expiries: BTreeSet<(Timestamp, LeaseId)>,
    /// Waiting tickets in service order.
    queue: BTreeMap<QueueKey, Uuid>,
    tickets: HashMap<Uuid, TicketEntry>,
    /// Deadlines of waiting tickets, in order.
    ticket_deadlines: BTreeSet<(Timestamp, Uuid)>,
    /// Counts per state; `queue_depth` = waiting tickets.
    load: PoolLoad,
    last_token: u64,
    next_seq: u64,
    metrics: MetricsWindow,
    last_scale_event: Option<Timestamp>,
}

fn lock(m: &Mutex<BTreeMap<PoolType, PoolState>>) -> MutexGuard<'_, BTreeMap<PoolType, PoolState>> {
    // No code panics while holding the lock, so poisoning cannot carry a broken state.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn pool_mut<'a>(
    pools: &'a mut BTreeMap<PoolType, PoolState>,
    pool: &PoolType,
) -> Result<&'a mut PoolState, LeaseError> {
    pools
        .get_mut(pool)
        .ok_or_else(|| LeaseError::UnknownPool { pool: pool.clone() })
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
            workers: BTreeMap::new(),
            app_ids: HashMap::new(),
            available: Vec::new(),
            leases: HashMap::new(),
            expiries: BTreeSet::new(),
            queue: BTreeMap::new(),
            tickets: HashMap::new(),
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

    /// Moves a worker to `state`, keeping the counts right. Every state change goes here.
    fn set_state(&mut self, id: &ProcessorId, state: WorkerState, now: Timestamp) {
        if let Some(w) = self.workers.get_mut(id) {
            uncount(&mut self.load, w.state);
            self.load.count(state);
            w.state = state;
            w.last_updated = now;
        }
    }

    fn find_worker(&self, key: &str) -> Option<ProcessorId> {
        let id = ProcessorId::new(key);
        if self.workers.contains_key(&id) {
            return Some(id);
        }
        self.app_ids.get(key).cloned()
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

    /// Creates a lease on `id` (which must be unleased and not draining).
    fn grant(
        &mut self,
        id: &ProcessorId,
        req: &AcquireRequest,
        ticket: Option<Uuid>,
        now: Timestamp,
    ) -> Option<Lease> {
        let duration = req
            .lease_duration
            .filter(|d| !d.is_zero())
            .unwrap_or(self.config.default_lease_duration());
        let app_id = self.workers.get(id)?.app_id.clone();
        self.last_token += 1;
        let lease = Lease {
            lease_id: LeaseId::generate(),
            pool_type: self.pool_type().clone(),
            processor_id: id.clone(),
            app_id,
            holder: req.holder.clone(),
            priority: req.priority,
            acquired_at: now,
            expires_at: now + duration,
            metadata: req.metadata.clone(),
            fencing_token: FencingToken(self.last_token),
        };
        self.set_state(id, WorkerState::Leased, now);
        if let Some(w) = self.workers.get_mut(id) {
            w.lease_id = Some(lease.lease_id);
            w.idle_since = None;
        }
        self.expiries.insert((lease.expires_at, lease.lease_id));
        self.leases.insert(
            lease.lease_id,
            LeaseEntry {
                lease: lease.clone(),
                ticket,
            },
        );
        Some(lease)
    }

    /// A worker just became free (released, reclaimed or ready): it goes to the queue head
    /// if anyone waits, else to the available list; a draining one just goes idle.
    fn free_worker(&mut self, id: &ProcessorId, now: Timestamp) -> Option<Lease> {
        let draining = {
            let w = self.workers.get_mut(id)?;
            w.lease_id = None;
            w.idle_since = Some(now);
            w.state == WorkerState::Draining
        };
        if draining {
            if let Some(w) = self.workers.get_mut(id) {
                w.last_updated = now;
            }
            return None;
        }
        if let Some((_, ticket_id)) = self.queue.pop_first() {
            self.load.queue_depth = self.load.queue_depth.saturating_sub(1);
            let (req, deadline) = match self.tickets.get(&ticket_id) {
                Some(t) => (t.req.clone(), t.deadline),
                None => return self.make_available(id, now),
            };
            self.ticket_deadlines.remove(&(deadline, ticket_id));
            let lease = self.grant(id, &req, Some(ticket_id), now)?;
            if let Some(t) = self.tickets.get_mut(&ticket_id) {
                t.state = TicketState::Granted(lease.lease_id);
                t.notify.notify_one();
            }
            return Some(lease);
        }
        self.make_available(id, now)
    }

    fn make_available(&mut self, id: &ProcessorId, now: Timestamp) -> Option<Lease> {
        self.set_state(id, WorkerState::Available, now);
        self.available.push(id.clone());
        None
    }

    /// Removes a lease from every index (not from its worker).
    fn end_lease(&mut self, lease_id: LeaseId) -> Option<Lease> {
        let entry = self.leases.remove(&lease_id)?;
        self.expiries.remove(&(entry.lease.expires_at, lease_id));
        if let Some(t) = entry.ticket {
            // Handed to a waiter who never collected it.
            self.tickets.remove(&t);
        }
        Some(entry.lease)
    }

    fn reclaim(&mut self, now: Timestamp) -> Vec<Lease> {
        let mut out = Vec::new();
        while let Some(&(expires_at, lease_id)) = self.expiries.first() {
            if expires_at >= now {
                break;
            }
            let Some(lease) = self.end_lease(lease_id) else {
                self.expiries.pop_first();
                continue;
            };
            self.metrics.total_reclaimed += 1;
            self.free_worker(&lease.processor_id, now);
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

    fn check(&self) -> Result<(), String> {
        let pool = self.pool_type();
        let mut load = PoolLoad::default();
        for (id, w) in &self.workers {
            load.count(w.state);
            let in_available = self.available.iter().filter(|a| *a == id).count();
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
                    Some(e) if e.lease.processor_id == *id => {}
                    _ => return Err(format!("{pool}: {id} names lease {l} which is not its own")),
                },
                _ => {}
            }
            if self.app_ids.get(&w.app_id) != Some(id) {
                return Err(format!("{pool}: app-id index misses {id}"));
            }
        }
        load.queue_depth = u32::try_from(self.queue.len()).unwrap_or(u32::MAX);
        if load != self.load {
            return Err(format!("{pool}: counts {:?} != actual {load:?}", self.load));
        }
        if self.available.len()
            != self
                .workers
                .values()
                .filter(|w| w.state == WorkerState::Available)
                .count()
        {
            return Err(format!(
                "{pool}: available list has duplicates or strangers"
            ));
        }
        if self.leases.len() != self.expiries.len() {
            return Err(format!(
                "{pool}: {} leases but {} expiries",
                self.leases.len(),
                self.expiries.len()
            ));
        }
        let mut held = BTreeSet::new();
        for (id, e) in &self.leases {
            if !held.insert(e.lease.processor_id.clone()) {
                return Err(format!("{pool}: {} is leased twice", e.lease.processor_id));
            }
            if !self.expiries.contains(&(e.lease.expires_at, *id)) {
                return Err(format!("{pool}: lease {id} has no expiry entry"));
            }
            match self.workers.get(&e.lease.processor_id) {
                Some(w) if w.lease_id == Some(*id) => {}
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
        let pools = lock(&self.inner);
        pools.values().try_for_each(PoolState::check)
    }
}

#[async_trait]
impl LeaseStore for MemoryLeaseStore {
    async fn configure_pool(&self, config: PoolConfig) -> Result<Option<PoolConfig>, LeaseError> {
        let mut pools = lock(&self.inner);
        match pools.get_mut(config.pool_type()) {
            Some(p) => Ok(Some(std::mem::replace(&mut p.config, config))),
            None => {
                pools.insert(config.pool_type().clone(), PoolState::new(config));
                Ok(None)
            }
        }
    }

    async fn register_worker(
        &self,
        pool: &PoolType,
        processor_id: &ProcessorId,
        app_id: &AppId,
        now: Timestamp,
    ) -> Result<Worker, LeaseError> {
        let mut pools = lock(&self.inner);
        let p = pool_mut(&mut pools, pool)?;
        if let Some(w) = p.workers.get(processor_id) {
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
        p.workers.insert(processor_id.clone(), worker.clone());
        p.app_ids.insert(app_id.clone(), processor_id.clone());
        p.load.count(WorkerState::Pending);
        p.last_scale_event = Some(now);
        Ok(worker)
    }

    async fn mark_ready(
        &self,
        pool: &PoolType,
        worker: &str,
        now: Timestamp,
    ) -> Result<Worker, LeaseError> {
        let mut pools = lock(&self.inner);
        let p = pool_mut(&mut pools, pool)?;
        let id = p
            .find_worker(worker)
            .ok_or_else(|| p.unknown_worker(worker))?;
        if p.workers.get(&id).map(|w| w.state) == Some(WorkerState::Pending) {
            p.purge_tickets(now);
            p.free_worker(&id, now);
        }
        p.workers
            .get(&id)
            .cloned()
            .ok_or_else(|| p.unknown_worker(worker))
    }

    async fn acquire(
        &self,
        pool: &PoolType,
        req: AcquireRequest,
        now: Timestamp,
    ) -> Result<Acquired, LeaseError> {
        let mut pools = lock(&self.inner);
        let p = pool_mut(&mut pools, pool)?;
        p.purge_tickets(now);
        p.reclaim(now);
        let outcome = if let Some(id) = p.available.pop() {
            match p.grant(&id, &req, None, now) {
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
    }

    async fn poll_wait(
        &self,
        ticket: &WaitTicket,
        now: Timestamp,
    ) -> Result<WaitStatus, LeaseError> {
        let unknown = || LeaseError::UnknownTicket {
            ticket: ticket.clone(),
        };
        let mut pools = lock(&self.inner);
        let p = pool_mut(&mut pools, &ticket.pool).map_err(|_| unknown())?;
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
    }

    async fn cancel_wait(&self, ticket: &WaitTicket) -> Result<Option<Lease>, LeaseError> {
        let mut pools = lock(&self.inner);
        let Ok(p) = pool_mut(&mut pools, &ticket.pool) else {
            return Ok(None);
        };
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
    }

    async fn release(
        &self,
        pool: &PoolType,
        lease_id: LeaseId,
        fencing_token: FencingToken,
        success: bool,
        now: Timestamp,
    ) -> Result<Released, LeaseError> {
        let mut pools = lock(&self.inner);
        let p = pool_mut(&mut pools, pool)?;
        p.checked_lease(lease_id, fencing_token)?;
        p.purge_tickets(now);
        let Some(lease) = p.end_lease(lease_id) else {
            return Err(LeaseError::UnknownLease {
                pool: pool.clone(),
                lease_id,
            });
        };
        let held = now.saturating_since(lease.acquired_at);
        p.metrics.record_release(now, success, held);
        let handed_off = p.free_worker(&lease.processor_id, now);
        let worker = p
            .workers
            .get(&lease.processor_id)
            .cloned()
            .ok_or_else(|| p.unknown_worker(lease.processor_id.as_str()))?;
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
        let mut pools = lock(&self.inner);
        let p = pool_mut(&mut pools, pool)?;
        let old = p.checked_lease(lease_id, fencing_token)?.expires_at;
        if old < now {
            return Err(LeaseError::LeaseExpired {
                lease_id,
                expired_at: old,
            });
        }
        let new = old + extend_by;
        p.expiries.remove(&(old, lease_id));
        p.expiries.insert((new, lease_id));
        let entry = p
            .leases
            .get_mut(&lease_id)
            .ok_or(LeaseError::UnknownLease {
                pool: pool.clone(),
                lease_id,
            })?;
        entry.lease.expires_at = new;
        Ok(entry.lease.clone())
    }

    async fn reclaim_expired(
        &self,
        pool: &PoolType,
        now: Timestamp,
    ) -> Result<Vec<Lease>, LeaseError> {
        let mut pools = lock(&self.inner);
        let p = pool_mut(&mut pools, pool)?;
        p.purge_tickets(now);
        Ok(p.reclaim(now))
    }

    async fn drain_worker(
        &self,
        pool: &PoolType,
        processor_id: &ProcessorId,
        now: Timestamp,
    ) -> Result<Worker, LeaseError> {
        let mut pools = lock(&self.inner);
        let p = pool_mut(&mut pools, pool)?;
        let state = p
            .workers
            .get(processor_id)
            .map(|w| w.state)
            .ok_or_else(|| p.unknown_worker(processor_id.as_str()))?;
        if state != WorkerState::Draining {
            if state == WorkerState::Available {
                p.available.retain(|a| a != processor_id);
            }
            p.set_state(processor_id, WorkerState::Draining, now);
            p.last_scale_event = Some(now);
        }
        p.workers
            .get(processor_id)
            .cloned()
            .ok_or_else(|| p.unknown_worker(processor_id.as_str()))
    }

    async fn remove_worker(
        &self,
        pool: &PoolType,
        processor_id: &ProcessorId,
        now: Timestamp,
    ) -> Result<RemovedWorker, LeaseError> {
        let mut pools = lock(&self.inner);
        let p = pool_mut(&mut pools, pool)?;
        let worker = p
            .workers
            .remove(processor_id)
            .ok_or_else(|| p.unknown_worker(processor_id.as_str()))?;
        uncount(&mut p.load, worker.state);
        p.app_ids.remove(&worker.app_id);
        if worker.state == WorkerState::Available {
            p.available.retain(|a| a != processor_id);
        }
        let dropped_lease = worker.lease_id.and_then(|l| p.end_lease(l));
        p.last_scale_event = Some(now);
        Ok(RemovedWorker {
            worker,
            dropped_lease,
        })
    }

    async fn status(&self, pool: &PoolType, now: Timestamp) -> Result<PoolStatus, LeaseError> {
        let mut pools = lock(&self.inner);
        let p = pool_mut(&mut pools, pool)?;
        let mut leases: Vec<Lease> = p.leases.values().map(|e| e.lease.clone()).collect();
        leases.sort_by_key(|l| l.fencing_token);
        let mut load = p.load;
        load.queue_depth = p.queue_depth_at(now);
        Ok(PoolStatus {
            config: p.config.clone(),
            workers: p.workers.values().cloned().collect(),
            leases,
            load,
        })
    }

    async fn metrics(&self, pool: &PoolType, now: Timestamp) -> Result<PoolMetrics, LeaseError> {
        let mut pools = lock(&self.inner);
        let p = pool_mut(&mut pools, pool)?;
        let mut load = p.load;
        load.queue_depth = p.queue_depth_at(now);
        Ok(PoolMetrics::from_window(
            &p.metrics,
            load,
            p.last_scale_event,
            now,
        ))
    }

    async fn list_pools(&self) -> Result<Vec<PoolType>, LeaseError> {
        Ok(lock(&self.inner).keys().cloned().collect())
    }

    fn watch(&self, ticket: &WaitTicket) -> Option<BoxFuture<'static, ()>> {
        let pools = lock(&self.inner);
        let notify = pools
            .get(&ticket.pool)
            .and_then(|p| p.tickets.get(&ticket.id))
            .map(|t| Arc::clone(&t.notify));
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
mod tests {
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
    fn registering_twice_is_idempotent_but_conflicting_ids_are_refused() {
        let (store, pool, ids) = pool_with(2, 1);
        let again =
            block_on(store.register_worker(&pool, &ids[0].processor_id, &ids[0].app_id, t(5)))
                .unwrap();
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
}

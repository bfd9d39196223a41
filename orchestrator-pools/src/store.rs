//! The `LeaseStore` port: every pool operation as one atomic step that takes `now`, so an
//! implementation can run each as a single round trip (one Lua script on Redis) with no
//! read-then-write across calls. Requests, outcomes and the error enum live here too.

use std::time::Duration;

use async_trait::async_trait;
use futures::future::BoxFuture;
use orchestrator_core::Timestamp;
use orchestrator_core::error_source::ErrorSource;

use crate::config::{ConfigError, PoolConfig, PoolType};
use crate::model::{
    FencingToken, Lease, LeaseId, PoolLoad, PoolMetrics, PoolStatus, ProcessorId, Released,
    WaitTicket, Worker,
};

/// Why a pool operation was refused. A refused operation changed nothing.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum LeaseError {
    /// No pool of that name has been configured.
    #[error("unknown pool `{pool}`")]
    UnknownPool {
        /// The pool asked for.
        pool: PoolType,
    },
    /// The lease does not exist: never granted, already released, or reclaimed after
    /// expiry (upstream answers 404 for all three).
    #[error("unknown lease {lease_id} in pool `{pool}`")]
    UnknownLease {
        /// The pool asked for.
        pool: PoolType,
        /// The lease asked for.
        lease_id: LeaseId,
    },
    /// The lease exists but the caller's fencing token is not its token: the caller is not
    /// the current holder (an older lease's token, or a forged one).
    #[error("fencing token {given} does not match the lease's token {current}")]
    StaleFencingToken {
        /// Token the caller gave.
        given: FencingToken,
        /// The lease's token.
        current: FencingToken,
    },
    /// The lease's expiry has passed (`expires_at < now`); it can no longer be renewed and
    /// will be reclaimed.
    #[error("lease {lease_id} expired at {expired_at}")]
    LeaseExpired {
        /// The lease.
        lease_id: LeaseId,
        /// When it expired.
        expired_at: Timestamp,
    },
    /// The lease's worker is Draining, so the lease is not extended: it stays live until
    /// `expires_at` (at the latest the drain's deadline), then the worker leaves.
    #[error(
        "lease {lease_id} is on a draining worker: it ends at {expires_at} and cannot be extended"
    )]
    WorkerDraining {
        /// The lease.
        lease_id: LeaseId,
        /// When it ends.
        expires_at: Timestamp,
    },
    /// Registering another worker would exceed the pool's `maxInstances`.
    #[error("pool is at capacity ({max} workers)")]
    AtCapacity {
        /// The pool's `maxInstances`.
        max: u32,
    },
    /// No worker with that processor id (or app-id) is registered in the pool.
    #[error("unknown worker `{worker}` in pool `{pool}`")]
    UnknownWorker {
        /// The pool asked for.
        pool: PoolType,
        /// The processor id or app-id asked for.
        worker: String,
    },
    /// The wait ticket is not (or no longer) in the queue: cancelled, collected, or its
    /// wait ended.
    #[error("unknown wait ticket {ticket}")]
    UnknownTicket {
        /// The ticket asked for.
        ticket: WaitTicket,
    },
    /// A worker id was registered again with a different app-id.
    #[error("worker `{processor_id}` is already registered with another app-id")]
    WorkerConflict {
        /// The processor id.
        processor_id: ProcessorId,
    },
    /// A pool configuration was refused (a stored configuration that no longer validates,
    /// or a pool name that is not one).
    #[error(transparent)]
    InvalidConfig(#[from] ConfigError),
    /// The backing store could not be reached or answered garbage; the operation may or
    /// may not have happened (callers retry idempotent ones).
    #[error("lease store unavailable: {message}")]
    Unavailable {
        /// What went wrong, with the client's text.
        message: String,
        /// The client's error, when one caused it.
        #[source]
        source: Option<ErrorSource>,
    },
}

impl LeaseError {
    /// [`LeaseError::Unavailable`] without a foreign cause.
    pub fn unavailable(message: impl Into<String>) -> Self {
        LeaseError::Unavailable {
            message: message.into(),
            source: None,
        }
    }

    /// [`LeaseError::Unavailable`] caused by the client error `source` (quoted as the
    /// message).
    pub fn unavailable_from(source: impl std::error::Error + Send + Sync + 'static) -> Self {
        LeaseError::Unavailable {
            message: source.to_string(),
            source: Some(ErrorSource::new(source)),
        }
    }
}

/// A request for a worker.
#[derive(Debug, Clone, PartialEq)]
pub struct AcquireRequest {
    /// Who asks (stored on the lease).
    pub holder: String,
    /// Higher is served first when callers wait.
    pub priority: i32,
    /// How long the lease lasts; `None` or zero = the pool's default
    /// (docs/COMPATIBILITY.md#processing-pools-lease-timing).
    pub lease_duration: Option<Duration>,
    /// How long the caller may wait in the queue; zero = answer at once (the `waitMs`
    /// request field, default 0).
    pub wait: Duration,
    /// Stored on the lease.
    pub metadata: serde_json::Value,
}

impl AcquireRequest {
    /// Priority 0, default duration, no waiting, no metadata.
    pub fn new(holder: impl Into<String>) -> Self {
        AcquireRequest {
            holder: holder.into(),
            priority: 0,
            lease_duration: None,
            wait: Duration::ZERO,
            metadata: serde_json::Value::Null,
        }
    }

    /// With this priority.
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    /// With this lease duration.
    pub fn lease_duration(mut self, d: Duration) -> Self {
        self.lease_duration = Some(d);
        self
    }

    /// Willing to wait this long.
    pub fn wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    /// With this metadata.
    pub fn metadata(mut self, metadata: serde_json::Value) -> Self {
        self.metadata = metadata;
        self
    }
}

/// What an acquire did.
#[derive(Debug, Clone, PartialEq)]
pub enum AcquireOutcome {
    /// A worker was leased.
    Leased(Lease),
    /// Nothing was free and the caller may wait: it is in the queue until its wait ends.
    Queued(WaitTicket),
    /// Nothing was free and the caller may not wait (D3 (docs/DECISIONS.md#d3)).
    Exhausted,
}

impl AcquireOutcome {
    /// The lease, if one was granted.
    pub fn lease(&self) -> Option<&Lease> {
        match self {
            AcquireOutcome::Leased(l) => Some(l),
            _ => None,
        }
    }
}

/// An acquire's outcome plus the pool's load right after it, so the caller can feed the
/// autoscaler ([`crate::autoscale::Autoscaler::on_acquire`]) without another round trip.
#[derive(Debug, Clone, PartialEq)]
pub struct Acquired {
    /// What happened.
    pub outcome: AcquireOutcome,
    /// Counts after the operation.
    pub load: PoolLoad,
}

/// Where a queued caller stands.
#[derive(Debug, Clone, PartialEq)]
pub enum WaitStatus {
    /// Still queued.
    Waiting,
    /// A worker was handed over; the ticket is used up.
    Leased(Lease),
}

/// What `remove_worker` took away.
#[derive(Debug, Clone, PartialEq)]
pub struct RemovedWorker {
    /// The worker as it was.
    pub worker: Worker,
    /// Its lease, dropped without counting a release (the container is gone).
    pub dropped_lease: Option<Lease>,
}

/// The lease-pool port. Every method is one atomic step: it sees and leaves the pool
/// consistent, and a refused call (an `Err`) changes nothing. Time is always an input.
///
/// Invariants every implementation keeps (checked by the `testkit` conformance suite):
/// a worker is in exactly one state; a worker is Leased (or Draining) with `lease_id` set
/// exactly when one live lease names it; no Available worker exists while a caller is
/// queued (freed workers go to the queue head first); fencing tokens strictly increase per
/// pool; the number of registered workers never exceeds `maxInstances` at registration.
///
/// # Redis mapping (one `EVALSHA` per method)
///
/// Keys of pool `P` share the hash tag `{P}` (one cluster slot), prefix `orch:pool:{P}:`
/// (`orch:` is configurable): `state` (hash: config JSON, max, default lease ms, counts per
/// state, last fencing token, queue sequence, 60 minute metrics buckets `b:{minute % 60}`,
/// totals and the last scale event; read with one `HMGET` and written with one `HSET` per
/// script), `workers` (hash id -> worker record), `appids` (hash app-id -> id), `avail`
/// (list, idle longest at the head: `RPUSH` on free, `RPOP` on acquire, `LREM` on
/// drain/remove), `leases` (hash lease-id -> lease record with its expiry and uncollected
/// ticket), `exp` (sorted set lease-id by expiry ms), `queue` (sorted set, score
/// `-priority`, member `{seq:020}:{ticket}` so equal scores sort FIFO), `tickets` (hash
/// ticket -> request, deadline, state), `tdl` (sorted set ticket by deadline ms), and
/// `grant:{ticket}` (list a waiter `BLPOP`s). The pool list is the set `orch:pools`,
/// touched only by `configure_pool`.
///
/// Each script starts by dropping tickets whose deadline passed (`ZRANGEBYSCORE tdl`) and,
/// in `acquire`, reclaiming leases with `expires < now` (`ZRANGEBYSCORE exp -inf now-1`), so
/// both are O(expired). Freeing a worker in `release`, `reclaim_expired` and `mark_ready`
/// runs the same Lua function: `ZPOPMIN queue` -> grant to that ticket (next token, `HSET
/// leases`, `ZADD exp`, `RPUSH grant:{ticket}`), else `RPUSH avail`. Lease and ticket ids are
/// generated by the caller and passed as `ARGV`; leases granted inside a script (handoffs)
/// get a name-based uuid from `redis.sha1hex(ticket .. token)`, unique because both are.
/// `status` and `metrics` are read-only scripts. No operation reads in one call and writes
/// in another, so no lock and no `WATCH` is needed. The implementation and its exact record
/// formats: `orchestrator_backends::redis::leases`.
#[async_trait]
pub trait LeaseStore: Send + Sync {
    /// Creates a pool or replaces its configuration (workers and leases are kept; a lower
    /// `maxInstances` only stops new registrations). Returns the previous configuration.
    async fn configure_pool(&self, config: PoolConfig) -> Result<Option<PoolConfig>, LeaseError>;

    /// Registers a worker as Pending (before its container is started, which reserves the
    /// capacity). Refused with `AtCapacity` when the pool already has `maxInstances`
    /// workers. Idempotent: registering the same id and app-id again returns the worker.
    async fn register_worker(
        &self,
        pool: &PoolType,
        processor_id: &ProcessorId,
        app_id: &orchestrator_core::AppId,
        now: Timestamp,
    ) -> Result<Worker, LeaseError>;

    /// Pending -> Available when the worker's first heartbeat arrives (D9 (docs/DECISIONS.md#d9));
    /// `worker` is its processor id or app-id. Hands it straight to the queue head if a
    /// caller waits. Idempotent: any other state is left as it is.
    async fn mark_ready(
        &self,
        pool: &PoolType,
        worker: &str,
        now: Timestamp,
    ) -> Result<Worker, LeaseError>;

    /// Leases an available worker. First reclaims expired leases and drops queue entries
    /// whose wait ended. With nothing free: queues the caller when `req.wait > 0`
    /// (priority order, FIFO within a priority), else answers `Exhausted`.
    async fn acquire(
        &self,
        pool: &PoolType,
        req: AcquireRequest,
        now: Timestamp,
    ) -> Result<Acquired, LeaseError>;

    /// Where a queued caller stands; `Leased` once (the ticket is then used up).
    /// `UnknownTicket` once the ticket was cancelled, collected, or its wait ended.
    async fn poll_wait(
        &self,
        ticket: &WaitTicket,
        now: Timestamp,
    ) -> Result<WaitStatus, LeaseError>;

    /// Leaves the queue. If a worker was handed over in the meantime, returns that lease
    /// (the caller now holds it) rather than losing it. Unknown tickets give `Ok(None)`.
    async fn cancel_wait(&self, ticket: &WaitTicket) -> Result<Option<Lease>, LeaseError>;

    /// Ends a lease and counts the job (completed or failed). The worker goes to the queue
    /// head if a caller waits, else becomes Available; a Draining worker stays Draining for
    /// the caller to tear down and `remove_worker`. Unknown or already released leases and
    /// mismatched fencing tokens are refused and change nothing. A lease past its expiry
    /// but not yet reclaimed can still be released.
    async fn release(
        &self,
        pool: &PoolType,
        lease_id: LeaseId,
        fencing_token: FencingToken,
        success: bool,
        now: Timestamp,
    ) -> Result<Released, LeaseError>;

    /// Pushes a live lease's expiry back by `extend_by` (from its current expiry). Refused
    /// for unknown, expired or mismatched-token leases, and with `WorkerDraining` for a
    /// lease on a Draining worker (checked last: a stale token is refused as stale).
    async fn renew(
        &self,
        pool: &PoolType,
        lease_id: LeaseId,
        fencing_token: FencingToken,
        extend_by: Duration,
        now: Timestamp,
    ) -> Result<Lease, LeaseError>;

    /// Ends every lease with `expires_at < now` (earliest first) and frees its worker as a
    /// release would (no job counted). O(expired). Returns the reclaimed leases.
    async fn reclaim_expired(
        &self,
        pool: &PoolType,
        now: Timestamp,
    ) -> Result<Vec<Lease>, LeaseError>;

    /// When the pool's earliest live lease expires (`None`: no lease), in one small read:
    /// what a reaper sleeps until, without reading every lease as
    /// [`LeaseStore::status`] does. `UnknownPool` when no pool of that name is configured.
    async fn next_expiry(&self, pool: &PoolType) -> Result<Option<Timestamp>, LeaseError>;

    /// Marks a worker Draining: never leased again; a leased one finishes its lease, and
    /// with a `deadline` a lease that would outlive it now expires at the deadline (the
    /// reaper then takes the worker back). Idempotent; draining again may bring the
    /// deadline closer, never later. Returns the worker (its `lease_id` says whether it is
    /// still busy).
    async fn drain_worker(
        &self,
        pool: &PoolType,
        processor_id: &ProcessorId,
        deadline: Option<Timestamp>,
        now: Timestamp,
    ) -> Result<Worker, LeaseError>;

    /// Forgets a worker (its container is gone). A lease on it is dropped and returned.
    async fn remove_worker(
        &self,
        pool: &PoolType,
        processor_id: &ProcessorId,
        now: Timestamp,
    ) -> Result<RemovedWorker, LeaseError>;

    /// The pool's configuration alone: one small read, where [`LeaseStore::status`]
    /// reads every worker and lease of the pool. For callers that only need the limits
    /// and thresholds (the autoscaler's reaction to each acquire). `UnknownPool` when no
    /// pool of that name is configured.
    async fn pool_config(&self, pool: &PoolType) -> Result<PoolConfig, LeaseError>;

    /// The whole pool: config, workers, leases, counts, queue depth.
    async fn status(&self, pool: &PoolType, now: Timestamp) -> Result<PoolStatus, LeaseError>;

    /// Sliding one-hour metrics, totals and counts.
    async fn metrics(&self, pool: &PoolType, now: Timestamp) -> Result<PoolMetrics, LeaseError>;

    /// Every configured pool, sorted.
    async fn list_pools(&self) -> Result<Vec<PoolType>, LeaseError>;

    /// A future that completes when `ticket` may have been served, so waiters need not
    /// poll. `None` (the default) means "no notification": poll instead.
    ///
    /// Redis plan: the release/reclaim/mark-ready scripts `RPUSH` the granted lease id onto
    /// a per-ticket key `grant:{ticket}` of the pool (with a TTL of the wait); the waiter
    /// `BLPOP`s that key on a dedicated connection for the rest of its wait, then calls
    /// `poll_wait` to collect the lease. Pub/sub on the same name would also do, but BLPOP
    /// cannot miss a grant that happened before it started listening.
    fn watch(&self, ticket: &WaitTicket) -> Option<BoxFuture<'static, ()>> {
        let _ = ticket;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryLeaseStore;
    use std::sync::Arc;

    #[test]
    fn the_port_is_object_safe_and_requests_build_fluently() {
        let store: Arc<dyn LeaseStore> = Arc::new(MemoryLeaseStore::new());
        assert!(
            store
                .watch(&WaitTicket {
                    pool: PoolType::new("p").unwrap(),
                    id: uuid::Uuid::nil(),
                })
                .is_some()
        );
        let req = AcquireRequest::new("npc-1")
            .priority(7)
            .lease_duration(Duration::from_secs(30))
            .wait(Duration::from_millis(250))
            .metadata(serde_json::json!({"k": 1}));
        assert_eq!(
            (req.priority, req.lease_duration, req.wait),
            (7, Some(Duration::from_secs(30)), Duration::from_millis(250))
        );
        assert_eq!(
            AcquireRequest::new("x").wait,
            Duration::ZERO,
            "default: answer at once"
        );
    }

    #[test]
    fn errors_say_what_and_where() {
        let pool = PoolType::new("actor-shared").unwrap();
        let e = LeaseError::StaleFencingToken {
            given: FencingToken(3),
            current: FencingToken(5),
        };
        assert_eq!(
            e.to_string(),
            "fencing token 3 does not match the lease's token 5"
        );
        let e = LeaseError::UnknownWorker {
            pool,
            worker: "bannou-pool-actor-shared-0000abcd".into(),
        };
        assert!(e.to_string().contains("actor-shared") && e.to_string().contains("0000abcd"));
        let e: LeaseError = crate::config::PoolConfig::new(crate::config::PoolSpec::named(""))
            .unwrap_err()
            .into();
        assert!(e.to_string().contains("poolType"), "{e}");
    }
}

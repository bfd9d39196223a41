//! Pool records: worker identities and states, leases with fencing tokens, wait tickets,
//! load counts and the sliding one-hour metrics window. Plain data plus the pure rules
//! (naming, utilisation, window arithmetic) that every store implementation shares.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use orchestrator_core::events::ProcessorReleasedEvent;
use orchestrator_core::lenient_enum;
use orchestrator_core::{AppId, Timestamp};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

use crate::config::{PoolConfig, PoolType};

// === identifiers ===

/// A worker's id, `{poolType}-{32 lowercase hex}` (docs/COMPATIBILITY.md#processing-pools-scale).
///
/// Shared text (`Arc<str>`): the id is copied into every lease and answer, so a clone is a
/// reference-count increment. A plain string on the wire.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProcessorId(Arc<str>);

impl ProcessorId {
    /// Wraps an existing id (as read from a store or request).
    pub fn new(s: impl Into<String>) -> Self {
        ProcessorId(Arc::from(s.into()))
    }

    /// `{pool}-{hex}` for a given 128-bit value; [`WorkerIdentity::generate`] uses a random one.
    pub fn from_parts(pool: &PoolType, value: u128) -> Self {
        ProcessorId::new(format!("{pool}-{value:032x}"))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The worker's app-id, `bannou-pool-{poolType}-{last 8 chars of the processor id}`.
    pub fn app_id(&self, pool: &PoolType) -> AppId {
        let start = self
            .0
            .char_indices()
            .rev()
            .nth(7)
            .map(|(i, _)| i)
            .unwrap_or(0);
        AppId::new(format!("bannou-pool-{pool}-{}", &self.0[start..]))
    }
}

impl fmt::Display for ProcessorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for ProcessorId {
    fn from(s: &str) -> Self {
        ProcessorId(Arc::from(s))
    }
}

impl std::borrow::Borrow<str> for ProcessorId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl Serialize for ProcessorId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ProcessorId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(ProcessorId::new)
    }
}

/// The two names of a worker: processor id and app-id (its container and heartbeat name).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct WorkerIdentity {
    /// `{poolType}-{hex32}`.
    pub processor_id: ProcessorId,
    /// `bannou-pool-{poolType}-{last 8 of processorId}`.
    pub app_id: AppId,
}

impl WorkerIdentity {
    /// A fresh identity with a random (v4 uuid) processor id.
    pub fn generate(pool: &PoolType) -> Self {
        Self::from_value(pool, Uuid::new_v4().as_u128())
    }

    /// A deterministic identity (tests, replays).
    pub fn from_value(pool: &PoolType, value: u128) -> Self {
        let processor_id = ProcessorId::from_parts(pool, value);
        let app_id = processor_id.app_id(pool);
        WorkerIdentity {
            processor_id,
            app_id,
        }
    }
}

/// Pool name of a worker app-id (`bannou-pool-{poolType}-{8 chars}`), so a heartbeat can be
/// routed to `mark_ready` (D9 (docs/DECISIONS.md#d9)). `None` for any other app-id.
pub fn pool_of_worker_app_id(app_id: &str) -> Option<PoolType> {
    let rest = app_id.strip_prefix("bannou-pool-")?;
    let (pool, suffix) = rest.rsplit_once('-')?;
    if suffix.len() != 8 {
        return None;
    }
    PoolType::new(pool).ok()
}

/// A lease's id (a v4 uuid on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LeaseId(pub Uuid);

impl LeaseId {
    /// A fresh random id.
    pub fn generate() -> Self {
        LeaseId(Uuid::new_v4())
    }
}

impl fmt::Display for LeaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A per-pool, strictly increasing number stamped on every lease. Holders pass it to the
/// worker with each job; a worker that has seen a higher token refuses older ones, so a
/// holder whose lease expired cannot corrupt its successor's work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FencingToken(pub u64);

impl fmt::Display for FencingToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A place in a pool's wait queue, returned by an acquire that may wait.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct WaitTicket {
    /// The pool whose queue it is in.
    pub pool: PoolType,
    /// Unique id.
    pub id: Uuid,
}

impl fmt::Display for WaitTicket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.pool, self.id)
    }
}

// === workers ===

lenient_enum! {
    /// Where a worker is in its life. Stored spelling: the member name
    /// (docs/COMPATIBILITY.md#record-encoding).
    pub enum WorkerState {
        /// Registered (container starting); becomes Available on its first heartbeat (D9).
        Pending => "Pending",
        /// Idle and leasable.
        Available => "Available",
        /// Held by exactly one lease.
        Leased => "Leased",
        /// Leaving: finishes its current lease, if any, and is never leased again.
        Draining => "Draining",
    }
}

/// One worker container as the store knows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Worker {
    /// `{poolType}-{hex32}`.
    pub processor_id: ProcessorId,
    /// Its app-id (container name, heartbeat sender).
    pub app_id: AppId,
    /// Pool it belongs to.
    pub pool_type: PoolType,
    /// Current state.
    pub state: WorkerState,
    /// The lease holding it: `Some` exactly when Leased, or Draining with a lease to finish.
    pub lease_id: Option<LeaseId>,
    /// When it was registered.
    pub created_at: Timestamp,
    /// Last state change.
    pub last_updated: Timestamp,
    /// When it last became unleased (Available, or Pending since registration); `None`
    /// while leased. Idle reaping and "idle longest first" use it.
    pub idle_since: Option<Timestamp>,
}

/// How many workers are in each state, plus the wait queue: the numbers the autoscaler
/// needs, returned by every acquire so scaling can react without another round trip.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolLoad {
    /// Workers starting.
    pub pending: u32,
    /// Idle, leasable workers.
    pub available: u32,
    /// Leased workers (not counting draining ones).
    pub leased: u32,
    /// Workers leaving (leased or not).
    pub draining: u32,
    /// Callers waiting in the queue.
    pub queue_depth: u32,
}

impl PoolLoad {
    /// Every registered worker, draining ones included (what `maxInstances` bounds).
    pub fn total(&self) -> u32 {
        self.pending + self.available + self.leased + self.draining
    }

    /// `leased / (available + leased)`, 0 when both are 0.
    pub fn utilisation(&self) -> f64 {
        let serving = self.available + self.leased;
        if serving == 0 {
            0.0
        } else {
            f64::from(self.leased) / f64::from(serving)
        }
    }

    /// Adds one worker in `state` to the counts.
    pub fn count(&mut self, state: WorkerState) {
        match state {
            WorkerState::Pending => self.pending += 1,
            WorkerState::Available => self.available += 1,
            WorkerState::Leased => self.leased += 1,
            WorkerState::Draining => self.draining += 1,
        }
    }
}

// === leases ===

/// A worker held by a caller until `expires_at` (docs/COMPATIBILITY.md#keys-and-records
/// `ProcessorLease`, plus holder and fencing token).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Lease {
    /// Unique id the holder releases or renews with.
    pub lease_id: LeaseId,
    /// Pool of the worker.
    pub pool_type: PoolType,
    /// The leased worker.
    pub processor_id: ProcessorId,
    /// Its app-id, where the holder sends work.
    pub app_id: AppId,
    /// Who holds it (free text for status and logs).
    pub holder: String,
    /// Priority it was requested with (higher is served first).
    pub priority: i32,
    /// When it was granted.
    pub acquired_at: Timestamp,
    /// When it lapses; expired when `expires_at < now`
    /// (docs/COMPATIBILITY.md#processing-pools-lease-timing).
    pub expires_at: Timestamp,
    /// Caller data stored with the lease.
    pub metadata: serde_json::Value,
    /// Strictly increasing per pool; see [`FencingToken`].
    pub fencing_token: FencingToken,
}

impl Lease {
    /// The `ProcessorReleasedEvent` for this lease ending at `now` after `held`
    /// (`success` false for a lease reclaimed at expiry).
    pub fn released_event(
        &self,
        success: bool,
        held: Duration,
        now: Timestamp,
    ) -> ProcessorReleasedEvent {
        ProcessorReleasedEvent {
            event_id: Uuid::new_v4(),
            timestamp: now,
            pool_type: self.pool_type.to_string(),
            processor_id: self.processor_id.to_string(),
            success,
            lease_duration_ms: i64::try_from(held.as_millis()).unwrap_or(i64::MAX),
        }
    }

    /// True once `now` is past the expiry.
    pub fn is_expired(&self, now: Timestamp) -> bool {
        self.expires_at < now
    }
}

/// What a successful release reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Released {
    /// The lease that ended.
    pub lease: Lease,
    /// Whether the job succeeded (as the holder said).
    pub success: bool,
    /// How long it was held (`now - acquired_at`).
    pub lease_duration: Duration,
    /// The worker afterwards: Available, Leased (handed to a waiter) or Draining (the
    /// caller tears it down and calls `remove_worker`).
    pub worker: Worker,
    /// The lease the worker was handed to, when a caller was waiting.
    pub handed_off: Option<Lease>,
}

impl Released {
    /// The `ProcessorReleasedEvent` to publish for this release.
    pub fn event(&self, now: Timestamp) -> ProcessorReleasedEvent {
        self.lease
            .released_event(self.success, self.lease_duration, now)
    }
}

// === metrics ===

/// Width of one metrics bucket; the last hour is 60 of them.
pub const METRICS_BUCKET: Duration = Duration::from_secs(60);
/// Buckets in the sliding window (one hour).
pub const METRICS_BUCKETS: usize = 60;

/// Releases counted in one minute.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricsBucket {
    /// Minute index since the Unix epoch this bucket holds.
    pub minute: i64,
    /// Successful releases.
    pub completed: u64,
    /// Failed releases.
    pub failed: u64,
    /// Sum of lease durations in milliseconds.
    pub lease_ms: u64,
}

/// A sliding one-hour window of releases in one-minute buckets (not reset at the hour, as
/// upstream did), plus lifetime totals. O(1) per release; the Redis version keeps the same
/// buckets as hash fields `m:{minute}:*`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricsWindow {
    buckets: Vec<MetricsBucket>,
    /// Successful releases ever.
    pub total_completed: u64,
    /// Failed releases ever.
    pub total_failed: u64,
    /// Leases reclaimed after expiry ever.
    pub total_reclaimed: u64,
}

fn minute_of(t: Timestamp) -> i64 {
    t.unix_millis().div_euclid(60_000)
}

impl MetricsWindow {
    /// Counts one release at `now`.
    pub fn record_release(&mut self, now: Timestamp, success: bool, held: Duration) {
        self.record_release_in(minute_of(now), success, held);
    }

    /// [`MetricsWindow::record_release`] for a caller that already knows the minute of
    /// `now` (milliseconds since the Unix epoch divided by 60,000, rounded down), so a store
    /// releasing many leases in one minute need not convert each timestamp.
    pub fn record_release_in(&mut self, minute: i64, success: bool, held: Duration) {
        if self.buckets.len() < METRICS_BUCKETS {
            self.buckets
                .resize(METRICS_BUCKETS, MetricsBucket::default());
        }
        let slot = usize::try_from(minute.rem_euclid(METRICS_BUCKETS as i64)).unwrap_or(0);
        if success {
            self.total_completed += 1;
        } else {
            self.total_failed += 1;
        }
        let Some(b) = self.buckets.get_mut(slot) else {
            return;
        };
        if b.minute > minute {
            // A late report more than an hour older than the slot's minute (callers'
            // clocks need not agree to the minute): counted in the totals only.
            return;
        }
        if b.minute < minute {
            *b = MetricsBucket {
                minute,
                ..MetricsBucket::default()
            };
        }
        let ms = u64::try_from(held.as_millis()).unwrap_or(u64::MAX);
        b.lease_ms = b.lease_ms.saturating_add(ms);
        if success {
            b.completed += 1;
        } else {
            b.failed += 1;
        }
    }

    /// Completed, failed and summed lease milliseconds over the hour ending at `now`.
    pub fn last_hour(&self, now: Timestamp) -> (u64, u64, u64) {
        let current = minute_of(now);
        self.buckets
            .iter()
            .filter(|b| b.minute > current - METRICS_BUCKETS as i64 && b.minute <= current)
            .fold((0, 0, 0), |(c, f, ms), b| {
                (c + b.completed, f + b.failed, ms.saturating_add(b.lease_ms))
            })
    }
}

/// Pool metrics at one instant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolMetrics {
    /// Successful releases in the last hour (sliding).
    pub jobs_completed_1h: u64,
    /// Failed releases in the last hour (sliding).
    pub jobs_failed_1h: u64,
    /// Mean lease duration of the last hour's releases; zero when there were none.
    pub avg_lease_time: Duration,
    /// Successful releases since the pool was configured.
    pub total_completed: u64,
    /// Failed releases since the pool was configured.
    pub total_failed: u64,
    /// Leases reclaimed after expiry since the pool was configured.
    pub total_reclaimed: u64,
    /// Last time a worker was registered, drained or removed; `None` if never.
    pub last_scale_event: Option<Timestamp>,
    /// Counts per state and queue depth.
    pub load: PoolLoad,
    /// `leased / (available + leased)`.
    pub utilisation: f64,
}

impl PoolMetrics {
    /// Builds metrics from a window, load and last scale event.
    pub fn from_window(
        window: &MetricsWindow,
        load: PoolLoad,
        last_scale_event: Option<Timestamp>,
        now: Timestamp,
    ) -> Self {
        let (completed, failed, ms) = window.last_hour(now);
        let n = completed + failed;
        PoolMetrics {
            jobs_completed_1h: completed,
            jobs_failed_1h: failed,
            avg_lease_time: Duration::from_millis(ms.checked_div(n).unwrap_or(0)),
            total_completed: window.total_completed,
            total_failed: window.total_failed,
            total_reclaimed: window.total_reclaimed,
            last_scale_event,
            load,
            utilisation: load.utilisation(),
        }
    }
}

/// A pool's whole state at one instant (docs/COMPATIBILITY.md#processing-pools-status and more).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolStatus {
    /// Its configuration.
    pub config: PoolConfig,
    /// Every worker, ordered by processor id.
    pub workers: Vec<Worker>,
    /// Every live lease (including expired ones not yet reclaimed), ordered by fencing token.
    pub leases: Vec<Lease>,
    /// Counts per state and queue depth (waiting tickets whose wait has not ended).
    pub load: PoolLoad,
}

impl PoolStatus {
    /// `leased / (available + leased)`.
    pub fn utilisation(&self) -> f64 {
        self.load.utilisation()
    }

    /// The workers in one state.
    pub fn workers_in(&self, state: WorkerState) -> impl Iterator<Item = &Worker> {
        self.workers.iter().filter(move |w| w.state == state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool() -> PoolType {
        PoolType::new("actor-shared").unwrap()
    }

    #[test]
    fn identity_follows_upstream_naming() {
        let id = WorkerIdentity::from_value(&pool(), 0x00ab_cdef_0123_4567_89ab_cdef_0011_2233);
        assert_eq!(
            id.processor_id.as_str(),
            "actor-shared-00abcdef0123456789abcdef00112233"
        );
        assert_eq!(id.app_id.as_str(), "bannou-pool-actor-shared-00112233");
        let random = WorkerIdentity::generate(&pool());
        let hex = random
            .processor_id
            .as_str()
            .strip_prefix("actor-shared-")
            .unwrap();
        assert_eq!(hex.len(), 32);
        assert!(
            hex.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_eq!(pool_of_worker_app_id(random.app_id.as_str()), Some(pool()));
        assert_eq!(pool_of_worker_app_id("bannou-auth"), None);
        assert_eq!(pool_of_worker_app_id("bannou-pool-x-short"), None);
    }

    #[test]
    fn utilisation_ignores_pending_and_draining() {
        let load = PoolLoad {
            pending: 3,
            available: 1,
            leased: 3,
            draining: 2,
            queue_depth: 0,
        };
        assert_eq!(load.utilisation(), 0.75);
        assert_eq!(load.total(), 9);
        assert_eq!(PoolLoad::default().utilisation(), 0.0);
    }

    #[test]
    fn metrics_window_slides_instead_of_resetting() {
        let t0 = Timestamp::from_unix_millis(1_000 * 3600 * 1000);
        let mut w = MetricsWindow::default();
        w.record_release(t0, true, Duration::from_secs(2));
        w.record_release(
            t0 + Duration::from_secs(30 * 60),
            false,
            Duration::from_secs(4),
        );
        let later = t0 + Duration::from_secs(45 * 60);
        assert_eq!(w.last_hour(later), (1, 1, 6_000));
        // 61 minutes after the first release only the second remains.
        let m = PoolMetrics::from_window(
            &w,
            PoolLoad::default(),
            None,
            t0 + Duration::from_secs(61 * 60),
        );
        assert_eq!((m.jobs_completed_1h, m.jobs_failed_1h), (0, 1));
        assert_eq!(m.avg_lease_time, Duration::from_secs(4));
        assert_eq!((m.total_completed, m.total_failed), (1, 1));
        // A bucket slot reused an hour later starts fresh.
        w.record_release(t0 + Duration::from_secs(3600), true, Duration::from_secs(1));
        assert_eq!(w.last_hour(t0 + Duration::from_secs(3600)), (1, 1, 5_000));
        // A report from before the slot's minute does not wipe the newer bucket.
        w.record_release(t0, true, Duration::from_secs(1));
        assert_eq!(w.last_hour(t0 + Duration::from_secs(3600)), (1, 1, 5_000));
        assert_eq!(w.total_completed, 3);
    }

    #[test]
    fn released_event_carries_duration() {
        let lease = Lease {
            lease_id: LeaseId::generate(),
            pool_type: pool(),
            processor_id: ProcessorId::from("p-1"),
            app_id: AppId::from("a"),
            holder: "h".into(),
            priority: 0,
            acquired_at: Timestamp::UNIX_EPOCH,
            expires_at: Timestamp::UNIX_EPOCH,
            metadata: serde_json::Value::Null,
            fencing_token: FencingToken(1),
        };
        let worker = Worker {
            processor_id: lease.processor_id.clone(),
            app_id: lease.app_id.clone(),
            pool_type: pool(),
            state: WorkerState::Available,
            lease_id: None,
            created_at: Timestamp::UNIX_EPOCH,
            last_updated: Timestamp::UNIX_EPOCH,
            idle_since: None,
        };
        let r = Released {
            lease,
            success: false,
            lease_duration: Duration::from_millis(1500),
            worker,
            handed_off: None,
        };
        let e = r.event(Timestamp::UNIX_EPOCH);
        assert_eq!(e.lease_duration_ms, 1500);
        assert!(!e.success);
        assert_eq!(e.pool_type, "actor-shared");
    }
}

//! Our pool events on the bus (not upstream topics), so every replica's event stream shows
//! them: a lease granted, a lease expired (reclaimed by the reaper), a scaling step
//! (D38 (docs/DECISIONS.md#d38)) and a busy worker draining, which tells its holder
//! (D60 (docs/DECISIONS.md#d60)); a release is upstream's `ProcessorReleasedEvent`.
//!
//! [`Outbox`] publishes them and the release event without making the caller wait: the
//! acquire and release answers never sit behind a bus round trip. Events leave in the
//! order they were handed over, from one task per outbox; a bus error is logged, as it is
//! where events are published inline. Carry no lease or instance identity into metrics:
//! these are events, and only the stream and bus consumers see them.

use std::sync::Arc;

use orchestrator_core::Timestamp;
use orchestrator_core::events::Event;
use orchestrator_core::ports::bus::{EventBus, Payload};
use orchestrator_pools::{Lease, LeaseId, Worker};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::pool_scaler::{DrainReason, ScaleReport};

/// Topic of [`LeaseGrantedEvent`].
pub const LEASE_GRANTED_TOPIC: &str = "bannou.orchestrator-lease-granted";
/// Topic of [`LeaseExpiredEvent`].
pub const LEASE_EXPIRED_TOPIC: &str = "bannou.orchestrator-lease-expired";
/// Topic of [`PoolScaledEvent`].
pub const POOL_SCALED_TOPIC: &str = "bannou.orchestrator-pool-scaled";
/// Topic of [`WorkerDrainingEvent`].
pub const WORKER_DRAINING_TOPIC: &str = "bannou.orchestrator-worker-draining";

/// A worker was leased to a caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeaseGrantedEvent {
    /// The pool type.
    pub pool_type: String,
    /// The leased worker.
    pub processor_id: String,
    /// The lease.
    pub lease_id: String,
    /// Who holds it (`metadata.holder`, else `api`).
    pub holder: String,
    /// The lease's fencing token.
    pub fencing_token: u64,
    /// When the lease ends unless released.
    pub expires_at: Timestamp,
    /// When it was granted.
    pub timestamp: Timestamp,
}

impl Event for LeaseGrantedEvent {
    const TOPIC: &'static str = LEASE_GRANTED_TOPIC;
}

/// The reaper took a worker back from a lease that ran out (its
/// `ProcessorReleasedEvent`, success false, is published too).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeaseExpiredEvent {
    /// The pool type.
    pub pool_type: String,
    /// The worker taken back.
    pub processor_id: String,
    /// The lease that expired.
    pub lease_id: String,
    /// Who held it.
    pub holder: String,
    /// When it was due to end.
    pub expired_at: Timestamp,
    /// When it was reclaimed.
    pub timestamp: Timestamp,
}

impl Event for LeaseExpiredEvent {
    const TOPIC: &'static str = LEASE_EXPIRED_TOPIC;
}

/// A scaling step that started or drained workers (the autoscaler's, or a manual scale or
/// cleanup).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolScaledEvent {
    /// The pool type.
    pub pool_type: String,
    /// Why: the policy's reason (`queued`, `over_threshold`, `idle_timeout`, ...), or
    /// `steady` for a manual scale or cleanup.
    pub reason: String,
    /// Workers started.
    pub started: Vec<String>,
    /// Workers removed or draining.
    pub drained: Vec<String>,
    /// Per-worker failures of the step.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    /// When the step ended.
    pub timestamp: Timestamp,
}

impl Event for PoolScaledEvent {
    const TOPIC: &'static str = POOL_SCALED_TOPIC;
}

/// A leased worker is draining: its holder should finish and release; the lease is not
/// extended and ends at `deadline` at the latest, then the worker stops.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkerDrainingEvent {
    /// The pool type.
    pub pool_type: String,
    /// The draining worker.
    pub processor_id: String,
    /// Its app-id.
    pub app_id: String,
    /// The lease on it (how its holder recognises the event).
    pub lease_id: String,
    /// When the lease ends at the latest (earlier if it expires first).
    pub deadline: Timestamp,
    /// Why: `drain` (the drain endpoint), `scale-down` or `image-update`.
    pub reason: String,
    /// When the worker was drained.
    pub timestamp: Timestamp,
}

impl Event for WorkerDrainingEvent {
    const TOPIC: &'static str = WORKER_DRAINING_TOPIC;
}

impl WorkerDrainingEvent {
    /// The event of `worker`, holding `lease_id`, drained at `now` for `why`.
    pub fn of(
        worker: &Worker,
        lease_id: LeaseId,
        deadline: Timestamp,
        why: DrainReason,
        now: Timestamp,
    ) -> Self {
        WorkerDrainingEvent {
            pool_type: worker.pool_type.to_string(),
            processor_id: worker.processor_id.to_string(),
            app_id: worker.app_id.to_string(),
            lease_id: lease_id.to_string(),
            deadline,
            reason: why.as_str().to_owned(),
            timestamp: now,
        }
    }
}

impl LeaseGrantedEvent {
    /// The event of `lease`, granted at `now`.
    pub fn of(lease: &Lease, now: Timestamp) -> Self {
        LeaseGrantedEvent {
            pool_type: lease.pool_type.to_string(),
            processor_id: lease.processor_id.to_string(),
            lease_id: lease.lease_id.to_string(),
            holder: lease.holder.clone(),
            fencing_token: lease.fencing_token.0,
            expires_at: lease.expires_at,
            timestamp: now,
        }
    }
}

impl LeaseExpiredEvent {
    /// The event of `lease`, reclaimed at `now`.
    pub fn of(lease: &Lease, now: Timestamp) -> Self {
        LeaseExpiredEvent {
            pool_type: lease.pool_type.to_string(),
            processor_id: lease.processor_id.to_string(),
            lease_id: lease.lease_id.to_string(),
            holder: lease.holder.clone(),
            expired_at: lease.expires_at,
            timestamp: now,
        }
    }
}

impl PoolScaledEvent {
    /// The event of a step on `pool` that started or drained workers as `report` says,
    /// ended at `now`; `None` when it did neither.
    pub fn of(pool: &str, report: &ScaleReport, now: Timestamp) -> Option<Self> {
        if report.started.is_empty() && report.removed.is_empty() && report.draining.is_empty() {
            return None;
        }
        let names = |apps: &[orchestrator_core::AppId]| {
            apps.iter().map(ToString::to_string).collect::<Vec<_>>()
        };
        let mut drained = names(&report.removed);
        drained.extend(names(&report.draining));
        Some(PoolScaledEvent {
            pool_type: pool.to_owned(),
            reason: crate::metrics::scale_reason_label(
                report
                    .reason
                    .unwrap_or(orchestrator_pools::ScaleReason::Steady),
            )
            .to_owned(),
            started: names(&report.started),
            drained,
            errors: report.errors.clone(),
            timestamp: now,
        })
    }
}

/// How many events may wait for the bus before [`Outbox::publish`] drops one (the bus is
/// then far behind or down, when an inline publish would have failed too).
pub const OUTBOX_CAPACITY: usize = 16_384;

/// At most this many events are handed to the bus at once.
const BATCH: usize = 256;

/// Publishes events on a bus from a task of its own (see the module docs). Cheap to clone.
#[derive(Clone)]
pub struct Outbox {
    tx: mpsc::Sender<(&'static str, Payload)>,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox").finish_non_exhaustive()
    }
}

impl Outbox {
    /// An outbox onto `bus`; its task runs until every handle is dropped. Call within a
    /// tokio runtime.
    pub fn new(bus: Arc<dyn EventBus>) -> Outbox {
        let (tx, mut rx) = mpsc::channel::<(&'static str, Payload)>(OUTBOX_CAPACITY);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(BATCH);
            let bus = &bus;
            while rx.recv_many(&mut batch, BATCH).await > 0 {
                // Handed over together: a bus that pipelines (Redis) sends them in this
                // order in one go; each result is awaited.
                let sent =
                    futures::future::join_all(batch.drain(..).map(|(topic, payload)| async move {
                        (topic, bus.publish(topic, payload).await)
                    }))
                    .await;
                for (topic, result) in sent {
                    if let Err(e) = result {
                        tracing::warn!(topic, error = %e, "could not publish an event");
                    }
                }
            }
        });
        Outbox { tx }
    }

    /// Hands `event` to the outbox's task; never waits.
    pub fn publish<E: Event>(&self, event: E) {
        if let Err(e) = self.tx.try_send((E::TOPIC, Payload::event(event))) {
            let topic = E::TOPIC;
            match e {
                mpsc::error::TrySendError::Full(_) => {
                    tracing::warn!(
                        topic,
                        "event dropped: {OUTBOX_CAPACITY} events are waiting for the bus"
                    );
                }
                mpsc::error::TrySendError::Closed(_) => {
                    tracing::warn!(topic, "event dropped: the outbox's task ended");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;
    use orchestrator_core::events::ProcessorReleasedEvent;
    use orchestrator_core::memory::bus::InMemoryBus;
    use orchestrator_core::ports::bus::EventBusExt;

    use super::*;

    fn granted(n: u64) -> LeaseGrantedEvent {
        LeaseGrantedEvent {
            pool_type: "p".to_owned(),
            processor_id: format!("w{n}"),
            lease_id: format!("l{n}"),
            holder: "api".to_owned(),
            fencing_token: n,
            expires_at: Timestamp::from_unix_millis(2),
            timestamp: Timestamp::from_unix_millis(1),
        }
    }

    #[tokio::test]
    async fn events_leave_in_the_order_they_were_handed_over() {
        let bus: Arc<dyn EventBus> = Arc::new(InMemoryBus::new());
        let mut sub = bus.subscribe_events::<LeaseGrantedEvent>().await.unwrap();
        let outbox = Outbox::new(bus.clone());
        for n in 0..1_000 {
            outbox.publish(granted(n));
        }
        for n in 0..1_000 {
            let got = sub.next().await.unwrap().unwrap();
            assert_eq!(got.fencing_token, n);
        }
    }

    #[tokio::test]
    async fn any_event_type_goes_out_on_its_own_topic() {
        let bus: Arc<dyn EventBus> = Arc::new(InMemoryBus::new());
        let mut released = bus
            .subscribe_events::<ProcessorReleasedEvent>()
            .await
            .unwrap();
        let outbox = Outbox::new(bus.clone());
        let event = ProcessorReleasedEvent {
            event_id: uuid::Uuid::nil(),
            timestamp: Timestamp::from_unix_millis(1),
            pool_type: "p".to_owned(),
            processor_id: "w".to_owned(),
            success: true,
            lease_duration_ms: 5,
        };
        outbox.publish(event.clone());
        assert_eq!(released.next().await.unwrap().unwrap(), event);
    }
}

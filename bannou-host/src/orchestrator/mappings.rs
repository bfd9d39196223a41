//! The mappings broadcaster: publishes `bannou.full-service-mappings` at once when the
//! routing table changes (D11 (docs/DECISIONS.md#d11)), coalescing bursts within a short
//! window, plus the periodic rebroadcast (`FullMappingsIntervalSeconds`).
//!
//! With several replicas ([`MappingsBroadcaster::with_leadership`]) only the leader
//! rebroadcasts periodically; every replica still publishes its own table changes (a
//! deploy served by a follower changes that follower's table), and a replica that becomes
//! leader rebroadcasts at once if its interval has run out.
//!
//! The timing decisions are the pure [`BroadcastPolicy`]'s; this loop only sleeps until
//! the policy's next deadline or until [`MappingsBroadcaster::table_changed`] wakes it.
//! Versions come from the store's monotonic counter, so they never go back, even across
//! orchestrator restarts. Publishing never waits on consumers: the bus is fan-out and
//! non-blocking (in-memory broadcast channel, Redis `XADD`).

use orchestrator_core::error_source::Chain;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use orchestrator_core::ports::bus::{EventBus, EventBusExt};
use orchestrator_core::ports::store::OrchestratorStore;
use orchestrator_core::time::Clock;
use orchestrator_routing::{BroadcastPolicy, MappingsSnapshot, PublishReason};
use tokio::sync::{Notify, watch};
use uuid::Uuid;

use super::heartbeats::SharedHealth;
use super::leader::LeaderState;

/// Publishes the routing table as versioned mappings.
pub struct MappingsBroadcaster {
    health: SharedHealth,
    store: Arc<dyn OrchestratorStore>,
    bus: Arc<dyn EventBus>,
    clock: Arc<dyn Clock>,
    policy: Mutex<BroadcastPolicy>,
    changed: Notify,
    source_instance_id: Uuid,
    /// `None`: always leader (a single replica).
    leader: Option<watch::Receiver<LeaderState>>,
    /// The `traceparent` of the last change not yet published (traces on only).
    change_trace: Mutex<Option<String>>,
    /// The `traceparent` of the deploy in progress, if it is traced: the changes its nodes'
    /// heartbeats make are published in its trace too.
    deploy_trace: Arc<Mutex<Option<String>>>,
}

/// While held, the broadcaster's changes are published in the trace of the span that took
/// it (see [`MappingsBroadcaster::trace_deploy`]).
#[derive(Debug)]
pub struct DeployTrace {
    slot: Arc<Mutex<Option<String>>>,
}

impl Drop for DeployTrace {
    fn drop(&mut self) {
        *self.slot.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }
}

impl MappingsBroadcaster {
    /// A broadcaster of the table in `health`, taking versions from `store`.
    pub fn new(
        health: SharedHealth,
        store: Arc<dyn OrchestratorStore>,
        bus: Arc<dyn EventBus>,
        clock: Arc<dyn Clock>,
        policy: BroadcastPolicy,
    ) -> Self {
        MappingsBroadcaster {
            health,
            store,
            bus,
            clock,
            policy: Mutex::new(policy),
            changed: Notify::new(),
            source_instance_id: Uuid::new_v4(),
            leader: None,
            change_trace: Mutex::new(None),
            deploy_trace: Arc::default(),
        }
    }

    /// Rebroadcast periodically only while `leader` says this replica leads.
    pub fn with_leadership(mut self, leader: watch::Receiver<LeaderState>) -> Self {
        self.leader = Some(leader);
        self
    }

    /// The `sourceInstanceId` of every mappings event this broadcaster publishes.
    pub fn source_instance_id(&self) -> Uuid {
        self.source_instance_id
    }

    fn is_leader(&self) -> bool {
        self.leader.as_ref().is_none_or(|l| l.borrow().is_leader())
    }

    /// Until the guard is dropped, every table published because of a change (not the
    /// periodic rebroadcast) carries the current span's `traceparent`, whoever made the
    /// change: a deploy's nodes create routes by their heartbeats, and the nodes applying
    /// those tables join the deploy's trace. No-op with traces off. Deploys run one at a
    /// time.
    pub fn trace_deploy(&self) -> DeployTrace {
        let slot = self.deploy_trace.clone();
        *slot.lock().unwrap_or_else(PoisonError::into_inner) = crate::traces::current_traceparent();
        DeployTrace { slot }
    }

    /// The routing table changed: publish within the coalescing window (the event
    /// carries the current span's `traceparent`, when traces are exported, else that of
    /// the deploy running now: taken here, so a publish after the deploy returned keeps
    /// it).
    pub fn table_changed(&self) {
        let traceparent = crate::traces::current_traceparent().or_else(|| {
            self.deploy_trace
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone()
        });
        if let Some(traceparent) = traceparent {
            *self
                .change_trace
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(traceparent);
        }
        self.lock().on_change(self.clock.now());
        self.changed.notify_one();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BroadcastPolicy> {
        self.policy.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Publishes now if the policy says so; returns the version published.
    pub async fn publish_due(&self) -> Option<(PublishReason, i64)> {
        let now = self.clock.now();
        let reason = self.lock().poll(now)?;
        if reason == PublishReason::Periodic && !self.is_leader() {
            return None;
        }
        self.publish(now, reason).await.map(|v| (reason, v))
    }

    /// Publishes the table at once, without waiting for the coalescing window (a change
    /// that stops nodes must know the version its routes went out in, D58
    /// (docs/DECISIONS.md#d58)); returns that version, `None` when it could not be
    /// published (logged).
    pub async fn publish_now(&self) -> Option<i64> {
        self.publish(self.clock.now(), PublishReason::Changed).await
    }

    /// The table as it is now, unless a change is waiting for its window: the version the
    /// last publication carried (`None`: nothing published yet, or a change is pending).
    pub fn published_version(&self) -> Option<i64> {
        let policy = self.lock();
        if policy.is_dirty() {
            return None;
        }
        policy.last_published().map(|(_, v)| v)
    }

    /// Takes a version from the store, snapshots the table and publishes it.
    async fn publish(
        &self,
        now: orchestrator_core::Timestamp,
        reason: PublishReason,
    ) -> Option<i64> {
        let version = match self.store.next_mappings_version().await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %Chain(&e), "mappings version unavailable; retrying on the next deadline");
                return None;
            }
        };
        // Snapshot and mark published together, so a change that lands after the snapshot
        // keeps the table dirty and goes out in the next window.
        let mut event = {
            let state = self.health.lock();
            let mut policy = self.lock();
            policy.published(now, version);
            MappingsSnapshot::from_table(&state.routing, version).to_event(
                Uuid::new_v4(),
                now,
                self.source_instance_id,
            )
        };
        let change_trace = self
            .change_trace
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        event.traceparent = change_trace.or_else(|| match reason {
            PublishReason::Changed => self
                .deploy_trace
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
            PublishReason::Periodic => None,
        });
        if let Err(e) = self.bus.publish_event(&event).await {
            tracing::warn!(error = %Chain(&e), version, "publishing mappings failed");
            return None;
        }
        Some(version)
    }

    /// Runs until `shutdown` turns true (or its sender is dropped).
    /// A follower sleeps only until its pending change is due (no periodic deadline) and
    /// wakes when the leadership changes.
    pub async fn run(&self, mut shutdown: watch::Receiver<bool>) {
        let mut leader = self.leader.clone();
        loop {
            self.publish_due().await;
            let deadline = if self.is_leader() {
                Some(self.lock().next_deadline())
            } else {
                self.lock().change_deadline()
            };
            let wait = deadline.map(|d| {
                d.saturating_since(self.clock.now())
                    .max(Duration::from_millis(1))
            });
            tokio::select! {
                _ = sleep_or_never(wait) => {}
                _ = self.changed.notified() => {}
                _ = leadership_changed(&mut leader) => {}
                _ = super::stopped(&mut shutdown) => return,
            }
        }
    }
}

async fn sleep_or_never(wait: Option<Duration>) {
    match wait {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

/// Resolves when the leadership changes; never when there is none to follow (or its
/// elector is gone).
async fn leadership_changed(leader: &mut Option<watch::Receiver<LeaderState>>) {
    let changed = match leader {
        Some(rx) => rx.changed().await.is_ok(),
        None => false,
    };
    if !changed {
        std::future::pending::<()>().await;
    }
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;
    use orchestrator_core::events::FullServiceMappingsEvent;
    use orchestrator_core::health::{HealthConfig, HeartbeatAggregator};
    use orchestrator_core::memory::bus::InMemoryBus;
    use orchestrator_core::memory::store::InMemoryStore;
    use orchestrator_core::{AppId, Timestamp};
    use orchestrator_routing::RoutingTable;

    use super::*;
    use crate::clock::TokioClock;
    use crate::orchestrator::heartbeats::HealthState;

    /// How many mappings events arrive within `d` (paused time).
    async fn count_within(
        events: &mut orchestrator_core::ports::bus::EventSubscription<FullServiceMappingsEvent>,
        d: Duration,
    ) -> usize {
        let mut n = 0;
        let deadline = tokio::time::Instant::now() + d;
        while let Ok(Some(e)) = tokio::time::timeout_at(deadline, events.next()).await {
            e.unwrap();
            n += 1;
        }
        n
    }

    #[tokio::test(start_paused = true)]
    async fn a_follower_publishes_changes_but_leaves_the_periodic_rebroadcast_to_the_leader() {
        let clock: Arc<dyn Clock> = Arc::new(TokioClock::starting_at(Timestamp::from_unix_millis(
            1_780_000_000_000,
        )));
        let health = SharedHealth::new(HealthState {
            aggregator: HeartbeatAggregator::new(HealthConfig::default()),
            routing: RoutingTable::new(AppId::control_plane()),
        });
        let bus = Arc::new(InMemoryBus::new());
        let (leader, rx) = watch::channel(LeaderState::UNKNOWN);
        let broadcaster = Arc::new(
            MappingsBroadcaster::new(
                health,
                Arc::new(InMemoryStore::new(clock.clone())),
                bus.clone(),
                clock,
                BroadcastPolicy::new(Duration::from_millis(100), Duration::from_secs(5)).unwrap(),
            )
            .with_leadership(rx),
        );
        let mut events = bus
            .subscribe_events::<FullServiceMappingsEvent>()
            .await
            .unwrap();
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn({
            let b = broadcaster.clone();
            async move { b.run(stop_rx).await }
        });

        assert_eq!(
            count_within(&mut events, Duration::from_secs(12)).await,
            0,
            "a follower never rebroadcasts"
        );
        broadcaster.table_changed();
        assert_eq!(
            count_within(&mut events, Duration::from_millis(150)).await,
            1,
            "but publishes its own change within the window"
        );
        assert_eq!(count_within(&mut events, Duration::from_secs(12)).await, 0);

        leader.send_replace(LeaderState::Leader { token: 2 });
        assert_eq!(
            count_within(&mut events, Duration::from_millis(10)).await,
            1,
            "a new leader whose interval ran out rebroadcasts at once"
        );
        assert_eq!(
            count_within(&mut events, Duration::from_millis(10_100)).await,
            2,
            "then every interval"
        );
        leader.send_replace(LeaderState::UNKNOWN);
        assert_eq!(
            count_within(&mut events, Duration::from_secs(12)).await,
            0,
            "and stops on stepping down"
        );
        stop.send(true).unwrap();
        task.await.unwrap();
    }
}

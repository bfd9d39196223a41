//! The mappings broadcaster: publishes `bannou.full-service-mappings` at once when the
//! routing table changes (decision D11), coalescing bursts within a short window, plus the
//! periodic rebroadcast (`FullMappingsIntervalSeconds`).
//!
//! The timing decisions are the pure [`BroadcastPolicy`]'s; this loop only sleeps until
//! the policy's next deadline or until [`MappingsBroadcaster::table_changed`] wakes it.
//! Versions come from the store's monotonic counter, so they never go back, even across
//! orchestrator restarts. Publishing never waits on consumers: the bus is fan-out and
//! non-blocking (in-memory broadcast channel, Redis `XADD`).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use orchestrator_core::ports::bus::{EventBus, EventBusExt};
use orchestrator_core::ports::store::OrchestratorStore;
use orchestrator_core::time::Clock;
use orchestrator_routing::{BroadcastPolicy, MappingsSnapshot, PublishReason};
use tokio::sync::{Notify, watch};
use uuid::Uuid;

use super::heartbeats::SharedHealth;

/// Publishes the routing table as versioned mappings.
pub struct MappingsBroadcaster {
    health: SharedHealth,
    store: Arc<dyn OrchestratorStore>,
    bus: Arc<dyn EventBus>,
    clock: Arc<dyn Clock>,
    policy: Mutex<BroadcastPolicy>,
    changed: Notify,
    source_instance_id: Uuid,
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
        }
    }

    /// The routing table changed: publish within the coalescing window.
    pub fn table_changed(&self) {
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
        let version = match self.store.next_mappings_version().await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "mappings version unavailable; retrying on the next deadline");
                return None;
            }
        };
        // Snapshot and mark published together, so a change that lands after the snapshot
        // keeps the table dirty and goes out in the next window.
        let event = {
            let state = self.health.lock();
            let mut policy = self.lock();
            policy.published(now, version);
            MappingsSnapshot::from_table(&state.routing, version).to_event(
                Uuid::new_v4(),
                now,
                self.source_instance_id,
            )
        };
        if let Err(e) = self.bus.publish_event(&event).await {
            tracing::warn!(error = %e, version, "publishing mappings failed");
            return None;
        }
        Some((reason, version))
    }

    /// Runs until `shutdown` turns true (or its sender is dropped).
    pub async fn run(&self, mut shutdown: watch::Receiver<bool>) {
        loop {
            self.publish_due().await;
            let deadline = self.lock().next_deadline();
            let wait = deadline
                .saturating_since(self.clock.now())
                .max(Duration::from_millis(1));
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.changed.notified() => {}
                _ = super::stopped(&mut shutdown) => return,
            }
        }
    }
}

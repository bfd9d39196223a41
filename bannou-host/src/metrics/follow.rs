//! The control plane's `metrics` task: leadership changes, the bus events that have no
//! hook of their own (mappings published, smart restarts), and the bus's reconnects.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use orchestrator_core::events::{FullServiceMappingsEvent, ServiceRestartEvent};
use orchestrator_core::ports::bus::{EventBus, EventBusExt, EventStreamError};
use tokio::sync::watch;

use super::Metrics;
use crate::orchestrator::leader::LeaderState;

/// How often the bus's own reconnect count is carried into `bus_reconnects_total`.
const BUS_RECONNECTS_EVERY: Duration = Duration::from_secs(2);

impl Metrics {
    /// Counts leadership changes seen on `leader` until `shutdown`.
    pub async fn follow_leadership(
        self,
        mut leader: watch::Receiver<LeaderState>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut leading = leader.borrow_and_update().is_leader();
        loop {
            tokio::select! {
                changed = leader.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let now = leader.borrow_and_update().is_leader();
                    if now != leading {
                        leading = now;
                        self.0.families.leadership_changes.inc();
                    }
                }
                _ = crate::orchestrator::stopped(&mut shutdown) => return,
            }
        }
    }

    /// Follows the bus events that have no hook of their own (mappings published, smart
    /// restarts) and carries the bus's reconnect count over, until `shutdown`.
    pub async fn follow_bus(self, bus: Arc<dyn EventBus>, mut shutdown: watch::Receiver<bool>) {
        let (mappings, restarts) = match (
            bus.subscribe_events::<FullServiceMappingsEvent>().await,
            bus.subscribe_events::<ServiceRestartEvent>().await,
        ) {
            (Ok(m), Ok(r)) => (m, r),
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(error = %e, "metrics cannot follow the bus");
                self.bus_error("subscribe", 1);
                return;
            }
        };
        let (mut mappings, mut restarts) = (mappings.into_shared(), restarts.into_shared());
        // The bus counts its own reconnects; they are carried over every few seconds.
        let mut reconnects_seen = bus.reconnects();
        let mut carry = tokio::time::interval(BUS_RECONNECTS_EVERY);
        loop {
            tokio::select! {
                _ = carry.tick() => {
                    let now = bus.reconnects();
                    self.0.families.bus_reconnects.inc_by(now.saturating_sub(reconnects_seen));
                    reconnects_seen = now;
                }
                Some(item) = mappings.next() => match item {
                    Ok(m) => self.mappings_published(m.version),
                    Err(e) => self.stream_error(&e),
                },
                Some(item) = restarts.next() => match item {
                    Ok(r) => self.service_restarted(&r.service_name),
                    Err(e) => self.stream_error(&e),
                },
                _ = crate::orchestrator::stopped(&mut shutdown) => return,
                else => return,
            }
        }
    }

    /// A subscription item that was not an event (malformed, or messages missed).
    pub fn stream_error(&self, e: &EventStreamError) {
        match e {
            EventStreamError::Malformed(_) => self.bus_error("malformed", 1),
            EventStreamError::Lagged { skipped, .. } => self.bus_error("lagged", *skipped),
        }
    }
}

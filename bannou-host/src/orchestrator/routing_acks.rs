//! Routing acknowledgements (D58 (docs/DECISIONS.md#d58)): what the control plane knows of
//! the mappings version each live node applied, and the wait of a change that stops nodes
//! until every live consumer follows the routes that no longer lead to them.
//!
//! Nodes report the version they applied in every heartbeat (`metadata.routingVersion`)
//! and, ours, right after applying it on `bannou.mappings-applied` ([`follow_acks`] feeds
//! those into the aggregator beside the heartbeats; the higher of both counts). Upstream's
//! nodes send neither: a node that never reported a version is no consumer anyone can
//! wait for, and is left out of every wait.
//!
//! Invariants: [`wait_for_consumers`] looks again after every heartbeat batch and every
//! acknowledgement (the change signal of [`SharedHealth`], D53), never past its timeout;
//! the consumers are the live nodes (a fresh heartbeat, not shutting down) other than the
//! control plane and the nodes the step is about to stop. The laggards of every wait
//! within [`collecting`] are handed back to the answer that ran it.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::StreamExt;
use orchestrator_core::AppId;
use orchestrator_core::api::NodeMappingsVersion;
use orchestrator_core::events::MappingsAppliedEvent;
use orchestrator_core::ports::bus::{BusError, EventBus, EventBusExt, EventStreamError};
use orchestrator_core::time::Clock;
use tokio::sync::watch;

use super::heartbeats::SharedHealth;

/// `ORCHESTRATOR_ROUTING_ACK_TIMEOUT_SECONDS`' default: how long a change waits for the
/// live consumers to apply its routes before it proceeds anyway (D58).
pub const DEFAULT_ACK_TIMEOUT: Duration = Duration::from_secs(10);

/// How a wait for the consumers ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckWait {
    /// The mappings version waited for.
    pub version: i64,
    /// The live consumers still behind `version` when the wait ended (empty: all caught up),
    /// sorted by app-id.
    pub laggards: Vec<NodeMappingsVersion>,
    /// How long the wait took.
    pub waited: Duration,
}

impl AckWait {
    /// True when every live consumer applied the version.
    pub fn acknowledged(&self) -> bool {
        self.laggards.is_empty()
    }
}

/// Applies every acknowledgement on `bus` to the aggregator in `health` (the same
/// per-instance state the heartbeats fill) and wakes the waiters when it raised a node's
/// version, until `shutdown` turns true. Returns an error only when the subscription
/// cannot be made.
pub async fn follow_acks(
    bus: &dyn EventBus,
    health: SharedHealth,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), BusError> {
    let mut acks = bus.subscribe_events::<MappingsAppliedEvent>().await?;
    loop {
        tokio::select! {
            item = acks.next() => match item {
                Some(Ok(ack)) => record_ack(&health, &ack),
                Some(Err(EventStreamError::Malformed(e))) => {
                    tracing::debug!(error = %e, "skipping a malformed mappings acknowledgement");
                }
                Some(Err(EventStreamError::Lagged { skipped, .. })) => {
                    tracing::debug!(skipped, "mappings acknowledgements missed; heartbeats report the versions too");
                }
                None => return Ok(()),
            },
            _ = super::stopped(&mut shutdown) => return Ok(()),
        }
    }
}

/// Records one acknowledgement (the control plane's own is ignored: it is no consumer).
pub fn record_ack(health: &SharedHealth, ack: &MappingsAppliedEvent) {
    if ack.app_id.is_control_plane() {
        return;
    }
    let raised =
        health
            .lock()
            .aggregator
            .acknowledge_mappings(&ack.app_id, ack.service_id, ack.version);
    if raised {
        health.notify_changed();
    }
}

/// The live consumers behind `version` now, leaving out `stopping` (any case) and nodes
/// that never reported a version.
pub fn consumers_behind(
    health: &SharedHealth,
    clock: &dyn Clock,
    version: i64,
    stopping: &[AppId],
) -> Vec<NodeMappingsVersion> {
    let now = clock.now();
    let applied = health.lock().aggregator.applied_mappings(now);
    applied
        .into_iter()
        .filter(|(app, _)| !app.is_control_plane())
        .filter(|(app, _)| {
            !stopping
                .iter()
                .any(|s| s.as_str().eq_ignore_ascii_case(app.as_str()))
        })
        .filter_map(|(app, v)| {
            let v = v?;
            (v < version).then(|| NodeMappingsVersion {
                app_id: app.to_string(),
                applied_version: v,
            })
        })
        .collect()
}

/// Waits until every live consumer except `stopping` applied mappings `version` (see
/// [`consumers_behind`]), or `timeout` passes; returns who was still behind then.
pub async fn wait_for_consumers(
    health: &SharedHealth,
    clock: &dyn Clock,
    version: i64,
    stopping: &[AppId],
    timeout: Duration,
) -> AckWait {
    let begun = tokio::time::Instant::now();
    let deadline = begun + timeout;
    let mut changes = health.changes();
    loop {
        // Subscribed before looking: a change between the look and the wait is not missed.
        changes.borrow_and_update();
        let laggards = consumers_behind(health, clock, version, stopping);
        let now = tokio::time::Instant::now();
        if laggards.is_empty() || now >= deadline {
            return AckWait {
                version,
                laggards,
                waited: now - begun,
            };
        }
        tokio::select! {
            changed = changes.changed() => {
                if changed.is_err() {
                    // No one can wake us any more: the deadline ends the wait.
                    tokio::time::sleep_until(deadline).await;
                }
            }
            _ = tokio::time::sleep_until(deadline) => {}
        }
    }
}

tokio::task_local! {
    static LAGGARDS: Arc<Mutex<Vec<NodeMappingsVersion>>>;
}

/// Runs `f` and returns, with its output, every node that did not acknowledge in time in
/// the waits it ran (each node once, with the lowest version seen), sorted by app-id.
pub async fn collecting<F: Future>(f: F) -> (F::Output, Vec<NodeMappingsVersion>) {
    let cell: Arc<Mutex<Vec<NodeMappingsVersion>>> = Arc::default();
    let out = LAGGARDS.scope(cell.clone(), f).await;
    let mut laggards = std::mem::take(&mut *cell.lock().unwrap_or_else(PoisonError::into_inner));
    laggards.sort_by(|a, b| (&a.app_id, a.applied_version).cmp(&(&b.app_id, b.applied_version)));
    laggards.dedup_by(|later, first| later.app_id == first.app_id);
    (out, laggards)
}

/// Adds `laggards` to the answer of the [`collecting`] scope around this task, if any.
pub fn note_laggards(laggards: &[NodeMappingsVersion]) {
    let _ = LAGGARDS.try_with(|cell| {
        cell.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(laggards);
    });
}

#[cfg(test)]
mod tests;

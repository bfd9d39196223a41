//! The node side of routing: every Bannou node follows `bannou.full-service-mappings` and
//! resolves services through the lock-free [`MeshReader`] (spec 6.5).
//!
//! [`follow_mappings`] applies each snapshot only if its version is newer than the one
//! applied (the writer enforces it), so late or duplicated broadcasts never roll a node
//! back. The applied version goes into the node's heartbeat `metadata.routingVersion`,
//! which lets the orchestrator list nodes that lag.

use futures::StreamExt;
use orchestrator_core::events::FullServiceMappingsEvent;
use orchestrator_core::ports::bus::{BusError, EventBus, EventBusExt, EventStreamError};
use orchestrator_routing::resolver::{ApplyOutcome, MappingsWriter};
use orchestrator_routing::{MappingsSnapshot, MeshReader};
use tokio::sync::watch;

pub use orchestrator_routing::resolver::MeshResolver;

/// Applies every mappings broadcast on `bus` to `writer` until `shutdown` turns true.
/// Malformed broadcasts are logged and skipped.
pub async fn follow_mappings(
    bus: &dyn EventBus,
    writer: MappingsWriter,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), BusError> {
    let mut events = bus.subscribe_events::<FullServiceMappingsEvent>().await?;
    loop {
        tokio::select! {
            item = events.next() => match item {
                Some(Ok(event)) => {
                    if let ApplyOutcome::Stale { current, offered } = writer.apply(&MappingsSnapshot::from_event(&event)) {
                        tracing::debug!(current, offered, "ignoring an older mappings version");
                    }
                }
                Some(Err(EventStreamError::Malformed(e))) => tracing::warn!(error = %e, "skipping malformed mappings"),
                Some(Err(EventStreamError::Lagged { skipped, .. })) => tracing::debug!(skipped, "mappings subscriber lagged; the next broadcast carries the whole table"),
                None => return Ok(()),
            },
            _ = crate::orchestrator::stopped(&mut shutdown) => return Ok(()),
        }
    }
}

/// The `metadata` a node puts in its heartbeat: the routing version it applied.
pub fn heartbeat_metadata(reader: &MeshReader) -> Option<serde_json::Value> {
    reader.applied_version().map(
        |v| serde_json::json!({ orchestrator_routing::resolver::ROUTING_VERSION_METADATA_KEY: v }),
    )
}

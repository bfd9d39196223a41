//! Heartbeat health: per-service, per-instance health from heartbeats (D4
//! (docs/DECISIONS.md#d4)) and the GetServicesHealth report
//! (docs/COMPATIBILITY.md#health-report).
//!
//! Pure state machine: [`HeartbeatAggregator::ingest`] applies one heartbeat at a given `now`,
//! queries derive status at the `now` they are given. No clock is read here.

mod aggregator;
mod config;
#[cfg(test)]
pub(crate) mod fixtures;
mod index;
mod instance;
mod report;
#[cfg(test)]
mod tests;

pub use aggregator::{HeartbeatAggregator, IngestChanges, IngestOutcome};
pub use config::{HealthConfig, HealthConfigError};
pub use instance::{LaggingInstance, ServiceInstance};
pub use report::{ServiceHealthEntry, ServiceHealthReport};

/// The request type lives with the other API models; re-exported here for callers of
/// [`HeartbeatAggregator::report`].
pub use crate::api::ServiceHealthRequest;

/// Services that are infrastructure, never routed and never tracked
/// (docs/COMPATIBILITY.md#infrastructure-services,
/// docs/COMPATIBILITY.md#heartbeat-consumption step d).
pub const INFRASTRUCTURE_SERVICES: [&str; 3] = ["state", "messaging", "mesh"];

/// True for `state`, `messaging` and `mesh` in any ASCII case.
pub fn is_infrastructure_service(name: &str) -> bool {
    INFRASTRUCTURE_SERVICES
        .iter()
        .any(|s| s.eq_ignore_ascii_case(name))
}

/// Key in a heartbeat's `metadata` where a node reports the routing-table version it applied.
pub const ROUTING_VERSION_KEY: &str = "routingVersion";
/// Heartbeat metadata key of the number of beats the instance could not publish since
/// it started (its bus was unreachable); shown with the instance's services.
pub const DROPPED_HEARTBEATS_KEY: &str = "droppedHeartbeats";

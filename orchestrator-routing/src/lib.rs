//! Service to app-id routing, pure: the orchestrator's routing table, versioned mappings
//! snapshots and diffs, the broadcast policy, the mesh-side resolver and the OpenResty
//! invalidation request (docs/COMPATIBILITY.md#routing,
//! docs/COMPATIBILITY.md#infrastructure-services and docs/COMPATIBILITY.md#events; D11 and
//! D19 in docs/DECISIONS.md).
//!
//! Layout, in the order data flows:
//! - [`table`]: [`RoutingTable`], the authoritative service -> [`Route`] table the
//!   orchestrator owns (set, restore, reset, heartbeats, TTL expiry, store records).
//!   Infrastructure (`state`, `messaging`, `mesh`) is never routed; unknown services go to
//!   the default app-id; `orchestrator` always to the control plane.
//! - [`mappings`]: [`MappingsSnapshot`] (one version of the table, only routes away from
//!   the default), its `FullServiceMappingsEvent` wire form and [`MappingsDiff`].
//! - [`broadcast`]: [`BroadcastPolicy`], when to publish: at once on change with a 100 ms
//!   coalescing window (D11 (docs/DECISIONS.md#d11)) plus the 30 s rebroadcast.
//! - [`resolver`]: what every node runs: [`MappingsWriter`] applies strictly newer
//!   snapshots, [`MeshReader`] resolves lock-free; [`lagging_instances`] lists nodes behind.
//! - [`weights`]: [`WeightedTargets`], the validated split of one service's calls between
//!   app-ids (canary deploys, D63 in docs/DECISIONS.md), which the table, the snapshots
//!   and the resolver carry beside the primary app-id.
//! - [`invalidation`]: the best-effort OpenResty cache invalidation request
//!   (docs/COMPATIBILITY.md#openresty-invalidation).
//!
//! Nothing here waits, talks to a socket or reads a clock: `now` is always an argument.
//! The Redis adapters and the loops that drive these types live in other crates.

pub mod broadcast;
pub mod invalidation;
pub mod mappings;
pub mod resolver;
pub mod table;
pub mod weights;

pub use broadcast::{BroadcastPolicy, PublishReason};
pub use invalidation::{InvalidationOutcome, InvalidationRequest, OpenRestyConfig};
pub use mappings::{MappingsDiff, MappingsSnapshot};
pub use resolver::{
    ApplyOutcome, MappingsWriter, MeshReader, MeshResolver, Resolution, lagging_instances,
};
pub use table::{HeartbeatRouting, Route, RouteChange, RoutingError, RoutingTable};
pub use weights::{WeightedTargets, WeightsError};

#[cfg(test)]
mod proptests;

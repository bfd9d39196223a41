//! Service to app-id routing, pure: the orchestrator's routing table, versioned mappings
//! snapshots with diffs, the broadcast policy and the mesh-side resolver (spec sections
//! 3.4, 6 and 9; DESIGN.md sections 2, 3 and 5).
//!
//! Layout:
//! - [`table`]: [`RoutingTable`], the authoritative service -> [`Route`] table the
//!   orchestrator owns (set, restore, reset, heartbeats, TTL expiry, store records).
//!   Infrastructure (`state`, `messaging`, `mesh`) is never routed; unknown services go to
//!   the default app-id; `orchestrator` always to the control plane.
//! - [`mappings`]: [`MappingsSnapshot`] (one version of the table, only routes away from
//!   the default), its `FullServiceMappingsEvent` wire form and [`MappingsDiff`].
//! - [`broadcast`]: [`BroadcastPolicy`], when to publish: at once on change with a 100 ms
//!   coalescing window (decision D11) plus the 30 s rebroadcast.
//! - [`resolver`]: what every node runs: [`MappingsWriter`] applies strictly newer
//!   snapshots, [`MeshReader`] resolves lock-free; [`lagging_instances`] lists nodes behind.
//!
//! Nothing here waits, talks to a socket or reads a clock: `now` is always an argument.

pub mod broadcast;
pub mod mappings;
pub mod resolver;
pub mod table;

pub use broadcast::{BroadcastPolicy, PublishReason};
pub use mappings::{MappingsDiff, MappingsSnapshot};
pub use resolver::{
    ApplyOutcome, MappingsWriter, MeshReader, MeshResolver, Resolution, lagging_instances,
};
pub use table::{HeartbeatRouting, Route, RouteChange, RoutingError, RoutingTable};

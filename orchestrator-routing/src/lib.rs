//! Service to app-id routing, pure: the orchestrator's routing table (spec sections 3.4
//! and 6; DESIGN.md sections 2, 3 and 5).
//!
//! Layout:
//! - [`table`]: [`RoutingTable`], the authoritative service -> [`Route`] table the
//!   orchestrator owns (set, restore, reset, heartbeats, TTL expiry, store records).
//!   Infrastructure (`state`, `messaging`, `mesh`) is never routed; unknown services go to
//!   the default app-id; `orchestrator` always to the control plane.
//!
//! Nothing here waits, talks to a socket or reads a clock: `now` is always an argument.

pub mod table;

pub use table::{HeartbeatRouting, Route, RouteChange, RoutingError, RoutingTable};

//! Service to app-id routing.
//!
//! Will hold the routing table (infrastructure never routed, unknown services to the
//! default app-id), versioned `FullServiceMappings` snapshots and diffs, the broadcast
//! coalescing policy and the lock-free mesh-side resolver. See spec sections 6 and 9.

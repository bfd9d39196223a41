//! Lease pools of worker containers (the NPC-brain and asset-processor pools).
//!
//! Will hold the pure pool domain (worker states, leases with fencing tokens, metrics),
//! the `LeaseStore` port with its in-memory implementation and conformance suite, and
//! the autoscale policy. See issue "Lease pools" and DESIGN.md sections 3 and 6.

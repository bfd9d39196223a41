//! Orchestrator use cases and background loops over the domain's ports, one module per
//! group (DESIGN.md section 1): [`heartbeats`] (ingestion pipeline), [`mappings`] (routing
//! broadcast), [`pools`] (worker scaling) and [`leases`] (expired-lease reclamation).

pub mod heartbeats;
pub mod leases;
pub mod mappings;
pub mod pools;

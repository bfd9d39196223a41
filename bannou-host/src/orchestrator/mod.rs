//! Orchestrator use cases and background loops over the domain's ports, one module per
//! group (DESIGN.md section 1): [`heartbeats`] (ingestion pipeline), [`mappings`] (routing
//! broadcast) and [`pools`] (worker scaling).

pub mod heartbeats;
pub mod mappings;
pub mod pools;

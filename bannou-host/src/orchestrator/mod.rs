//! Orchestrator use cases and background loops over the domain's ports, one module per
//! group (DESIGN.md section 1). Start with [`pools`].

pub mod pools;

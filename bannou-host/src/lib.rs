//! The Bannou host: one binary that runs any set of Bannou services, the orchestrator
//! among them.
//!
//! Today it holds the CLI ([`cli`]); the plugin host, orchestrator use cases, HTTP API and
//! configuration follow (DESIGN.md section 1).

pub mod cli;

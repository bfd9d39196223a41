//! The Bannou host: one binary that runs any set of Bannou services, the orchestrator
//! among them.
//!
//! - [`mesh`]: what every node runs to follow routing broadcasts.
//! - [`cli`]: the command line (`plan`, `bench`, ...).
//! - [`orchestrator`]: use cases and background loops over the domain's ports (today: pool
//!   scaling); [`clock`]: the wall clock the loops read, which follows tokio's pausable time.
//!
//! The plugin host, the remaining use cases, the HTTP API and configuration follow
//! (DESIGN.md section 1).

pub mod api;
pub mod cli;
pub mod clock;
pub mod config;
pub mod host;
pub mod mesh;
pub mod orchestrator;
pub mod plugins;

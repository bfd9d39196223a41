//! Pure orchestration domain for Bannou: what to deploy where, in which order, and how
//! healthy it is. No network, no runtime, no clock: time is passed in.
//!
//! Where to start:
//! - [`catalog`]: every service with its layer and dependencies ([`Catalog::builtin`]).
//! - [`preset`]: parse and validate preset YAML; [`preset::PresetLibrary`] lists a directory.
//! - [`resolver`]: preset or request topology -> [`ResolvedNode`]s with full environments.
//! - [`planner`]: current vs desired nodes -> a [`planner::Plan`] of ordered waves.
//! - [`health`]: heartbeat aggregator and health reports; [`restart`]: should-restart policy.
//! - [`config_history`]: versioned deployment configuration with rollback.
//! - [`events`] and [`api`]: wire types with upstream field names; [`lenient`] is the enum
//!   spelling rule (D1 (docs/DECISIONS.md#d1)) they share.
//! - [`ports`]: the traits adapters implement (`ContainerBackend`, `EventBus`,
//!   `OrchestratorStore`, `LeaderElection`); [`memory`] holds the in-memory implementations and the
//!   `testkit` feature exposes [`testkit`], the conformance suites every adapter must pass.

pub mod api;
pub mod catalog;
pub mod config_history;
pub mod error_source;
pub mod events;
pub mod health;
pub mod layer;
pub mod lenient;
pub mod memory;
pub mod names;
pub mod planner;
pub mod ports;
pub mod preset;
pub mod records;
pub mod resolver;
pub mod restart;
// Built for rustdoc too, so the docs show the suites adapters must pass.
#[cfg(any(test, doc, feature = "testkit"))]
pub mod testkit;
pub mod time;
pub mod topology;

pub use catalog::{Catalog, ServiceDef, UnknownService};
pub use layer::Layer;
pub use names::AppId;
pub use time::Timestamp;
pub use topology::ResolvedNode;

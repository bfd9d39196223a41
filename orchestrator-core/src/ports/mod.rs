//! Ports: the traits the domain defines and adapters implement (D30 (docs/DECISIONS.md#d30)).
//!
//! - [`backend::ContainerBackend`]: runs nodes (Docker, Swarm, Portainer, Kubernetes, in-process).
//! - [`bus::EventBus`]: fan-out publish/subscribe of events.
//! - [`store::OrchestratorStore`]: heartbeats, routing records, config versions.
//! - [`leader::LeaderElection`]: the one lease that makes a replica the leader.

pub mod backend;
pub mod bus;
pub mod leader;
pub mod store;

//! Container backends as the host registers them: [`in_process`], the embedded default
//! (D15 (docs/DECISIONS.md#d15)), where a deployed node is a set of tasks in this process running
//! the same plugin host as a container would, and [`docker`], the Docker adapter of
//! `orchestrator-backends` with the rule that containers need a bus they can reach
//! (Redis) (also the Portainer backend: the Docker backend through Portainer's proxy),
//! [`swarm`], the Swarm adapter under the same rule, and [`unoffered`], the place holder
//! of a backend detection found unusable, with the reason. The adapters to Docker, Swarm,
//! Portainer and Kubernetes live in `orchestrator-backends`.

pub mod docker;
pub mod in_process;
pub mod swarm;
pub mod unoffered;

pub use docker::DockerNodes;
pub use in_process::InProcessBackend;
pub use swarm::SwarmNodes;
pub use unoffered::Unoffered;

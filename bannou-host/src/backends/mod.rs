//! Container backends as the host registers them: [`in_process`], the embedded default
//! (DESIGN.md section 4), where a deployed node is a set of tasks in this process running
//! the same plugin host as a container would, and [`docker`], the Docker adapter of
//! `orchestrator-backends` with the rule that containers need a bus they can reach
//! (Redis), and [`swarm`], the Swarm adapter under the same rule. The adapters to Docker, Swarm, Portainer and Kubernetes live in
//! `orchestrator-backends`.

pub mod docker;
pub mod in_process;
pub mod swarm;

pub use docker::DockerNodes;
pub use in_process::InProcessBackend;
pub use swarm::SwarmNodes;

//! Container backends that live in the host itself. Today: [`in_process`], the embedded
//! default (DESIGN.md section 4), where a deployed node is a set of tasks in this process
//! running the same plugin host as a container would. The adapters to Docker, Swarm,
//! Portainer and Kubernetes live in `orchestrator-backends`.

pub mod in_process;

pub use in_process::InProcessBackend;

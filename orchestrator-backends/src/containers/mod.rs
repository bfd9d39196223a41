//! Container runtime adapters: Docker, Swarm (bollard) and Kubernetes (kube), and the
//! image every deployed node runs.
//!
//! - [`image`]: builds our `FROM scratch` image of a static `bannou-host` binary through the
//!   Docker API, with the build context (a tar) made in Rust, so nothing is ever pulled.
//! - [`docker`]: the standalone Docker backend (docs/COMPATIBILITY.md#docker-compose-backend,
//!   fixed): our own labelled network, named and labelled containers, replicas,
//!   structured logs, and prune/orphan cleanup limited to objects carrying our label.
//! - [`swarm`]: the Docker Swarm backend (docs/COMPATIBILITY.md#swarm-backend, fixed): one
//!   replicated service per node on an overlay network of ours, status from real tasks,
//!   scale, rolling restart, service logs, and prune limited to our label. It shares the
//!   standalone backend's naming, environment layering, log reader and label-limited engine
//!   prune.
//! - [`engine`]: the Docker Engine API pieces the Docker, Swarm and Portainer backends
//!   share (client, errors, environment, our network, finding, label-limited prune).
//! - [`mounts`]: the mounts of a node's container on both Docker-engine backends (logs
//!   volume, certificates, presets), built once for both.
//! - `testing` (feature `testkit`): the test image built once per process, unique names
//!   and cleanup for tests against the local engine.
//!
//! - [`kubernetes`]: the Kubernetes backend (kube, k8s-openapi;
//!   docs/COMPATIBILITY.md#kubernetes-backend fixed): a Deployment and a Service per node
//!   by server-side apply, status from the Deployment and its pods, the scale subresource,
//!   rollout restart, logs of the newest ready pod. Tested through kube's real client
//!   against a fake API server (no cluster here).
//!
//! - [`portainer`]: the Portainer backend (docs/COMPATIBILITY.md#portainer-backend fixed):
//!   the Docker backend itself, its bollard client sending every call through Portainer's
//!   Docker proxy with `X-API-Key`; only availability (`/api/status`) is Portainer's own.

pub mod docker;
pub mod engine;
pub mod image;
pub mod kubernetes;
pub mod mounts;
pub mod portainer;
pub mod swarm;
#[cfg(feature = "testkit")]
pub mod testing;

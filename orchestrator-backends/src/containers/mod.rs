//! Container runtime adapters of the `ContainerBackend` port, and the image every deployed
//! node runs. Every backend finds, changes and prunes only objects carrying our managed
//! label, and reports an unreachable runtime as `BackendError::Unavailable`.
//!
//! - [`docker`], [`swarm`] and [`portainer`] (the Docker backend through Portainer's
//!   proxy) drive the Docker Engine API through the pieces they share in [`engine`];
//!   [`mounts`] is what their nodes mount.
//! - [`kubernetes`]: Deployments and Services by server-side apply (kube).
//! - [`image`]: our `FROM scratch` image of a static `bannou-host`, built through the
//!   Docker API, so nothing is ever pulled.
//! - `testing` (feature `testkit`): the test image, unique names and cleanup for tests
//!   against the local engine.

/// The port nodes listen on inside their container or pod when nothing else is set
/// (`ORCHESTRATOR_DEFAULT_SERVICE_PORT`, docs/COMPATIBILITY.md#configuration-variables).
pub const DEFAULT_NODE_PORT: u16 = 80;

pub mod docker;
pub mod engine;
pub mod image;
pub mod kubernetes;
pub mod mounts;
pub mod portainer;
pub mod swarm;
#[cfg(feature = "testkit")]
pub mod testing;

//! Container runtime adapters: the Docker backend (bollard) and the image every deployed
//! node runs.
//!
//! - [`image`]: builds our `FROM scratch` image of a static `bannou-host` binary through the
//!   Docker API, with the build context (a tar) made in Rust, so nothing is ever pulled.
//! - [`docker`]: the standalone Docker backend (spec 18.3 with the fixes of DESIGN.md
//!   section 5): our own labelled network, named and labelled containers, replicas,
//!   structured logs, and prune/orphan cleanup limited to objects carrying our label.
//! - `testing` (feature `testkit`): the test image built once per process, unique names
//!   and cleanup for tests against the local engine.
//!
//! Swarm, Portainer and Kubernetes backends and backend detection follow.

pub mod docker;
pub mod image;
pub mod kubernetes;
#[cfg(feature = "testkit")]
pub mod testing;

//! Adapters that implement the domain's ports against real systems.
//!
//! - [`http`]: the shared HTTP client and the OpenResty cache invalidation call.
//! - [`redis`]: a `redis-server` process manager for tests and benches ([`redis::server`]),
//!   and the Redis implementations of the store, lease store and event bus.
//! - [`containers`]: the Docker backend (bollard) and our `FROM scratch` node image;
//!   Swarm, Portainer, Kubernetes and backend detection follow.
//!
//! - `require` and `sentinel_topology` (feature `testkit`): when a test may skip, and the
//!   Sentinel topology the failover tests share.
//!
//! Heavy dependencies live here and in `bannou-host` only, so the domain crates build in
//! seconds.

pub mod containers;
pub mod http;
pub mod redis;
#[cfg(feature = "testkit")]
pub mod require;
#[cfg(feature = "testkit")]
pub mod sentinel_topology;

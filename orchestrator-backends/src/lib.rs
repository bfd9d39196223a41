//! Adapters that implement the domain's ports against real systems.
//!
//! Will hold `containers/` (Docker via bollard, Swarm, Portainer, Kubernetes via kube,
//! in-process, and backend detection) and `redis/` (store, lease store, event bus over
//! Redis Streams). Heavy dependencies live here and in `bannou-host` only, so the domain
//! crates build in seconds.

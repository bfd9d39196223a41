//! The Swarm backend as the control plane registers it: [`SwarmNodes`] wraps
//! `orchestrator_backends`' [`SwarmBackend`] with the bus rule of the Docker backend
//! (`super::docker`): Swarm tasks heartbeat through Redis, so without a Redis address the
//! tasks can reach the backend is listed unavailable with the reason, never chosen to
//! wait for heartbeats that cannot come.
//!
//! The overlay network's gateway is not this host (tasks reach the host through
//! `docker_gwbridge`), so no address is derived: the nodes' Redis URL must be configured
//! (`ORCHESTRATOR_NODE_REDIS_URL`), or the orchestrator's own URL is used when its host is
//! not loopback. Detection (docs/COMPATIBILITY.md#backend-detection) lists Swarm whenever
//! the engine answers; it is available when the engine is an active Swarm manager.

use orchestrator_backends::containers::swarm::{SwarmBackend, SwarmConfig};
use orchestrator_core::ports::backend::{Availability, BackendError, DeployedNode, NodeDeployment};

use super::docker::{NO_REDIS_REASON, NODE_REDIS_VARIABLE, NodeBus, node_redis_url};
use crate::config::HostConfig;

/// Why Swarm is unavailable when Redis is only on loopback and no node URL is set.
pub const NO_NODE_REDIS_REASON: &str = "Swarm tasks cannot reach a loopback Redis: set \
     ORCHESTRATOR_NODE_REDIS_URL to an address the tasks can reach";

/// The Swarm backend with the bus rule of the module docs.
pub struct SwarmNodes {
    inner: SwarmBackend,
    /// The Redis URL tasks get, or why there is none.
    node_redis: Result<String, &'static str>,
}

impl std::fmt::Debug for SwarmNodes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SwarmNodes")
            .field("node_redis", &self.node_redis)
            .finish_non_exhaustive()
    }
}

impl SwarmNodes {
    /// A client of the engine `config` names, its tasks mounting what
    /// [`HostConfig::node_mounts`] says; fails only when no client can be made.
    pub async fn connect(config: &HostConfig) -> Result<Self, BackendError> {
        let inner = SwarmBackend::connect(SwarmConfig {
            docker_host: Some(config.docker_host.clone()).filter(|h| !h.trim().is_empty()),
            node_port: config.default_service_port,
            mounts: config.node_mounts(),
            ..SwarmConfig::default()
        })
        .await?;
        let node_redis = match NodeBus::from_config(config) {
            NodeBus::Memory => Err(NO_REDIS_REASON),
            NodeBus::Redis { url, node_url } => {
                node_redis_url(&url, node_url.as_deref(), None).ok_or(NO_NODE_REDIS_REASON)
            }
        };
        Ok(SwarmNodes { inner, node_redis })
    }
}

container_backend! {
    impl for SwarmNodes {
        async fn check_availability(&self) -> Availability {
            let engine = self.inner.check_availability().await;
            match (&self.node_redis, engine.available) {
                (Err(reason), true) => {
                    Availability::unavailable(format!("Swarm is active, but {reason}"))
                }
                _ => engine,
            }
        }

        async fn deploy_node(&self, node: &NodeDeployment) -> Result<DeployedNode, BackendError> {
            let url = self
                .node_redis
                .clone()
                .map_err(|reason| BackendError::unavailable(reason.to_owned()))?;
            let mut node = node.clone();
            node.environment
                .entry(NODE_REDIS_VARIABLE.to_owned())
                .or_insert(url);
            self.inner.deploy_node(&node).await
        }
    }
    (to inner)
    [backend_type, teardown, scale, restart, status, list, logs, list_infrastructure, prune]
}

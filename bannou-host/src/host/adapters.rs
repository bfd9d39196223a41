//! The store, bus, lease store and leader election the control plane runs on: in memory,
//! or Redis when a Redis URL is configured.

use std::sync::Arc;

use orchestrator_core::memory::bus::InMemoryBus;
use orchestrator_core::memory::store::InMemoryStore;
use orchestrator_core::ports::bus::EventBus;
use orchestrator_core::ports::leader::LeaderElection;
use orchestrator_core::ports::store::OrchestratorStore;
use orchestrator_core::time::Clock;
use orchestrator_pools::{LeaseStore, MemoryLeaseStore};

use super::HostError;
use crate::config::HostConfig;

/// Which implementation the adapters use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdapterKind {
    /// In-memory store, bus and lease store (the embedded default).
    Memory,
    /// Redis at this URL.
    Redis {
        /// The URL.
        url: String,
    },
}

/// The store, bus and lease store the control plane runs on.
#[derive(Clone)]
pub struct Adapters {
    /// Heartbeats, routing, configuration history.
    pub store: Arc<dyn OrchestratorStore>,
    /// Events. Nodes of the in-process backend must publish on this same bus.
    pub bus: Arc<dyn EventBus>,
    /// Processing pools.
    pub leases: Arc<dyn LeaseStore>,
    /// The leader lease shared by the replicas; `None`: this process is the only replica
    /// (in-memory adapters) and always leads.
    pub leader: Option<Arc<dyn LeaderElection>>,
    /// What they are.
    pub kind: AdapterKind,
}

impl std::fmt::Debug for Adapters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Adapters")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl Adapters {
    /// Fresh in-memory adapters.
    pub fn in_memory(clock: Arc<dyn Clock>) -> Self {
        Adapters {
            store: Arc::new(InMemoryStore::new(clock)),
            bus: Arc::new(InMemoryBus::new()),
            leases: Arc::new(MemoryLeaseStore::new()),
            leader: None,
            kind: AdapterKind::Memory,
        }
    }

    /// Redis adapters on `url` (one shared connection for the store, the bus and the
    /// leader election, one for the lease store's scripts), default key prefixes.
    pub async fn redis(url: &str, config: &HostConfig) -> Result<Self, HostError> {
        use orchestrator_backends::redis::bus::{RedisBus, RedisBusConfig};
        use orchestrator_backends::redis::connection::{RedisConfig, RedisConnection};
        use orchestrator_backends::redis::leader::RedisLeaderElection;
        use orchestrator_backends::redis::leases::{RedisLeaseStore, RedisLeaseStoreConfig};
        use orchestrator_backends::redis::store::RedisStore;

        use orchestrator_backends::redis::leases::Wait;
        use orchestrator_backends::redis::url::redact;

        let tls_files = &config.redis_tls;
        let failed = |message: String| HostError::Redis {
            url: redact(url),
            message,
        };
        let conn =
            RedisConnection::connect(RedisConfig::new(url).with_tls_files(tls_files.clone()))
                .await
                .map_err(|e| failed(e.to_string()))?;
        let lease_config = RedisLeaseStoreConfig {
            tls_files: tls_files.clone(),
            wait: (config.redis_wait_replicas > 0).then_some(Wait {
                replicas: config.redis_wait_replicas,
                timeout: config.redis_wait_timeout,
            }),
            ..RedisLeaseStoreConfig::default()
        };
        let leases = RedisLeaseStore::connect(url, lease_config)
            .await
            .map_err(|e| failed(e.to_string()))?;
        Ok(Adapters {
            store: Arc::new(RedisStore::new(conn.clone())),
            bus: Arc::new(RedisBus::new(conn.clone(), RedisBusConfig::default())),
            leases: Arc::new(leases),
            leader: Some(Arc::new(RedisLeaderElection::new(conn))),
            kind: AdapterKind::Redis { url: redact(url) },
        })
    }

    /// Redis when `config.redis_url` is set, else in memory.
    pub async fn from_config(
        config: &HostConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, HostError> {
        match &config.redis_url {
            Some(url) => Self::redis(url, config).await,
            None => Ok(Self::in_memory(clock)),
        }
    }
}

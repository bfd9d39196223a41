//! One `bannou-host` process: a node of the plugin host, with the orchestrator among its
//! plugins when this is the control plane. `bannou-host serve` and `bannou-host up` run
//! a [`Server`]; so does every deployed container (with another app-id, as a plain node).
//!
//! What [`Server::start`] builds, from a [`HostConfig`]:
//! - the adapters (in-memory store, bus and lease store by default; Redis when a Redis
//!   URL is configured), shared by the orchestrator and every node it starts in-process;
//! - on the control plane (app-id `bannou`, orchestrator enabled per spec 3.3): the
//!   candidate backends (spec 18.1, see [`candidate_backends`]) and the
//!   [`OrchestratorPlugin`], whose API the node serves on the listen address, next to
//!   every enabled service's ping;
//! - on any other app-id: a plain node whose mesh reaches other nodes by app-id as a host
//!   name (containers).
//!
//! [`Server::shutdown`] stops in the order that loses nothing: nodes the in-process
//! backend runs first (their final `shutting_down` beats still reach the orchestrator),
//! then this node (its plugins, the orchestrator's loops, the HTTP server).

use std::net::SocketAddr;
use std::sync::Arc;

use orchestrator_core::AppId;
use orchestrator_core::catalog::Catalog;
use orchestrator_core::events::BackendType;
use orchestrator_core::ports::backend::ContainerBackend;
use orchestrator_core::resolver::is_service_enabled;
use orchestrator_core::time::Clock;

use crate::backends::SwarmNodes;
use crate::backends::docker::{DockerNodes, NO_REDIS_REASON};
use crate::backends::in_process::InProcessBackend;
use crate::clock::TokioClock;
use crate::config::HostConfig;
use crate::host::{Adapters, HostError, OrchestratorPlugin};
use crate::mesh::{ContainerDirectory, EndpointDirectory, InProcessDirectory};
use crate::orchestrator::service::OrchestratorService;
use crate::plugins::node::{Node, NodeConfig, NodeError};
use orchestrator_backends::containers::kubernetes::{
    KubernetesBackend, KubernetesConfig, detect_credentials,
};

/// Why a server did not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The configured default backend cannot work with this configuration (Docker with
    /// in-memory state: containers could never heartbeat).
    #[error("ORCHESTRATOR_DEFAULT_BACKEND={backend}: {reason}")]
    Backend {
        /// The backend named.
        backend: BackendType,
        /// Why it cannot be used.
        reason: String,
    },
    /// The control plane refused (configuration, Redis, store).
    #[error(transparent)]
    Host(#[from] HostError),
    /// The node refused (bad node settings, a plugin that failed to start, bind).
    #[error(transparent)]
    Node(#[from] NodeError),
}

/// A running `bannou-host` process.
pub struct Server {
    node: Node,
    orchestrator: Option<Arc<OrchestratorPlugin>>,
    backend: Option<Arc<InProcessBackend>>,
    docker: Option<Arc<DockerNodes>>,
    adapters: Adapters,
}

impl Server {
    /// Starts a node as `config` says: the control plane when the app-id is `bannou` and
    /// the orchestrator service is enabled, otherwise a plain node.
    pub async fn start(config: HostConfig) -> Result<Server, ServerError> {
        let clock: Arc<dyn Clock> = Arc::new(TokioClock::system());
        let adapters = Adapters::from_config(&config, clock.clone()).await?;
        let mut environment = config.host_environment.clone();
        // The node's identity is the configuration's (flags may have overridden the
        // environment).
        environment.insert(
            orchestrator_core::resolver::APP_ID.to_owned(),
            config.app_id.as_str().to_owned(),
        );
        let node_config =
            NodeConfig::from_environment(environment.clone())?.with_listen(config.listen);

        let catalog = Catalog::builtin();
        let orchestrator_enabled = catalog
            .find(OrchestratorPlugin::NAME)
            .is_some_and(|def| is_service_enabled(def, &environment));
        let control_plane = config.app_id.is_control_plane() && orchestrator_enabled;
        if orchestrator_enabled && !control_plane {
            // Spec 2.1: the orchestrator lives on app-id `bannou` only.
            tracing::warn!(
                app_id = %config.app_id,
                "the orchestrator runs only on app-id `bannou`; this node does not host it"
            );
        }

        if !control_plane {
            let node = Node::builder(
                node_config,
                adapters.bus.clone(),
                Arc::new(ContainerDirectory::default()),
            )
            .clock(clock)
            .start()
            .await?;
            tracing::info!(app_id = %node.app_id(), addr = %node.addr(), services = node.hosted_services().len(), "node started");
            return Ok(Server {
                node,
                orchestrator: None,
                backend: None,
                docker: None,
                adapters,
            });
        }

        let directory = InProcessDirectory::new();
        let backend = Arc::new(
            InProcessBackend::new(adapters.bus.clone(), directory.clone())
                .with_clock(clock.clone()),
        );
        let (docker, backends) = candidate_backends(&config, backend.clone()).await?;
        let plugin = Arc::new(
            OrchestratorPlugin::new(config.clone(), backends).with_adapters(adapters.clone()),
        );
        let node = Node::builder(
            node_config,
            adapters.bus.clone(),
            Arc::new(directory.clone()) as Arc<dyn EndpointDirectory>,
        )
        .plugin(plugin.clone())
        .clock(clock)
        .start()
        .await?;
        // Deployed nodes reach the services the control plane hosts (everything not
        // routed elsewhere) through the directory.
        directory.register(node.app_id(), node.base_url());
        tracing::info!(addr = %node.addr(), adapters = ?adapters.kind, "control plane started");
        Ok(Server {
            node,
            orchestrator: Some(plugin),
            backend: Some(backend),
            docker,
            adapters,
        })
    }

    /// The address the node (and on the control plane, the API) listens on.
    pub fn addr(&self) -> SocketAddr {
        self.node.addr()
    }

    /// `http://{addr}`.
    pub fn base_url(&self) -> String {
        self.node.base_url()
    }

    /// This node's app-id.
    pub fn app_id(&self) -> &AppId {
        self.node.app_id()
    }

    /// The node.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// The adapters (store, bus, lease store).
    pub fn adapters(&self) -> &Adapters {
        &self.adapters
    }

    /// The in-process backend, on the control plane.
    pub fn in_process_backend(&self) -> Option<&Arc<InProcessBackend>> {
        self.backend.as_ref()
    }

    /// The Docker backend, on the control plane when a Docker client could be made
    /// (available or not: see its availability check).
    pub fn docker_backend(&self) -> Option<&Arc<DockerNodes>> {
        self.docker.as_ref()
    }

    /// The orchestrator service, on the control plane.
    pub async fn service(&self) -> Option<OrchestratorService> {
        match &self.orchestrator {
            Some(p) => p.service().await,
            None => None,
        }
    }

    /// Stops everything: in-process nodes first, then this node.
    pub async fn shutdown(self) {
        if let Some(backend) = &self.backend {
            backend.stop_all().await;
        }
        self.node.stop().await;
    }
}

/// The backends a control plane registers, best first (spec 18.1 with D6):
/// - Docker ([`DockerNodes`], type `Compose`) whenever a client for
///   `ORCHESTRATOR_DOCKER_HOST` can be made; its availability check says whether the
///   engine answers and, with in-memory state, that containers need Redis;
/// - the in-process backend, always (the embedded default).
///
/// Which one a deploy uses: the request's `backend`, else the backend of the last deploy,
/// else `ORCHESTRATOR_DEFAULT_BACKEND` (ours: `in-process`). A default of `compose`
/// without Redis is refused here, at start. Returns the Docker backend too, when made.
pub async fn candidate_backends(
    config: &HostConfig,
    in_process: Arc<InProcessBackend>,
) -> Result<(Option<Arc<DockerNodes>>, Vec<Arc<dyn ContainerBackend>>), ServerError> {
    if config.default_backend == BackendType::Compose && config.redis_url.is_none() {
        return Err(ServerError::Backend {
            backend: BackendType::Compose,
            reason: NO_REDIS_REASON.to_owned(),
        });
    }
    let mut backends: Vec<Arc<dyn ContainerBackend>> = Vec::new();
    let docker = match DockerNodes::connect(config).await {
        Ok(docker) => {
            let docker = Arc::new(docker);
            backends.push(docker.clone());
            Some(docker)
        }
        Err(e) => {
            tracing::debug!(error = %e, "no Docker client; the Docker backend is not offered");
            None
        }
    };
    // Spec 18.1 lists Swarm ahead of standalone Docker; it is available only on an
    // active Swarm manager with a Redis address the tasks can reach.
    if docker.is_some() {
        match SwarmNodes::connect(config).await {
            Ok(swarm) => backends.insert(0, Arc::new(swarm)),
            Err(e) => tracing::debug!(error = %e, "no Swarm client; Swarm is not offered"),
        }
    }
    // Kubernetes comes first (spec 18.1 priority 1) when credentials are present: in
    // cluster, or a kubeconfig (`ORCHESTRATOR_KUBECONFIG_PATH`, else `~/.kube/config`).
    let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
    match detect_credentials(config.kubeconfig_path.as_deref(), home.as_deref()) {
        Ok(source) => {
            let k8s = KubernetesConfig {
                namespace: config.kubernetes_namespace.clone(),
                kubeconfig_path: config.kubeconfig_path.clone(),
                node_port: config.default_service_port,
                // Pods heartbeat through Redis: the node URL when configured, else the
                // orchestrator's own when it is not loopback.
                extra_environment: config
                    .redis_url
                    .as_deref()
                    .and_then(|url| {
                        crate::backends::docker::node_redis_url(
                            url,
                            config.node_redis_url.as_deref(),
                            None,
                        )
                    })
                    .map(|url| {
                        [(crate::backends::docker::NODE_REDIS_VARIABLE.to_owned(), url)].into()
                    })
                    .unwrap_or_default(),
                ..KubernetesConfig::default()
            };
            match KubernetesBackend::connect(k8s).await {
                Ok(b) => backends.insert(0, Arc::new(b)),
                Err(e) => {
                    tracing::warn!(%source, error = %e, "Kubernetes credentials found but unusable")
                }
            }
        }
        Err(reason) => tracing::debug!(%reason, "Kubernetes is not offered"),
    }
    backends.push(in_process);
    Ok((docker, backends))
}

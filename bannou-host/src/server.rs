//! One `bannou-host` process: a node of the plugin host, with the orchestrator among its
//! plugins when this is the control plane. `bannou-host serve` and `bannou-host up` run
//! a [`Server`]; so does every deployed container (with another app-id, as a plain node).
//!
//! What [`Server::start`] builds, from a [`HostConfig`]:
//! - the adapters (in-memory store, bus and lease store by default; Redis when a Redis
//!   URL is configured), shared by the orchestrator and every node it starts in-process;
//! - on the control plane (app-id `bannou`, orchestrator enabled per
//!   docs/COMPATIBILITY.md#enablement-rule): the candidate backends
//!   (docs/COMPATIBILITY.md#backend-detection, see [`candidate_backends`]) and the
//!   [`OrchestratorPlugin`], whose API the node serves on the listen address, next to every
//!   enabled service's ping;
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

use crate::backends::docker::{DockerNodes, NO_REDIS_REASON};
use crate::backends::in_process::InProcessBackend;
use crate::backends::{SwarmNodes, Unoffered};
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
            // docs/COMPATIBILITY.md#placement-and-identity: the orchestrator lives on
            // app-id `bannou` only.
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

/// The backends a control plane registers, in the priority order of
/// docs/COMPATIBILITY.md#backend-detection (with D6):
/// 1. Kubernetes when credentials are present (in cluster, or a kubeconfig at
///    `ORCHESTRATOR_KUBECONFIG_PATH`, else `~/.kube/config`);
/// 2. Portainer when `ORCHESTRATOR_PORTAINER_URL` is set: the Docker backend through
///    Portainer's Docker proxy; its availability check asks `/api/status` and pings the
///    engine through the proxy;
/// 3. Swarm when a client of the engine can be made (available on an active manager);
/// 4. Docker ([`DockerNodes`], type `Compose`) likewise; its availability check says
///    whether the engine answers and, with in-memory state, that containers need Redis;
/// 5. the in-process backend, always (the embedded default).
///
/// A backend that cannot be offered is registered as [`Unoffered`] with detection's
/// reason (`No Kubernetes credentials found`, `ORCHESTRATOR_PORTAINER_URL not
/// configured`, ...), so the backends list shows why and a request naming it is refused
/// with that reason.
///
/// Which one a deploy uses: the request's `backend`, else the backend of the last deploy,
/// else `ORCHESTRATOR_DEFAULT_BACKEND` (ours: `in-process`). A default of `compose` or
/// `portainer` without Redis is refused here, at start. Returns the Docker backend too,
/// when made.
pub async fn candidate_backends(
    config: &HostConfig,
    in_process: Arc<InProcessBackend>,
) -> Result<(Option<Arc<DockerNodes>>, Vec<Arc<dyn ContainerBackend>>), ServerError> {
    if matches!(
        config.default_backend,
        BackendType::Compose | BackendType::Portainer
    ) && config.redis_url.is_none()
    {
        return Err(ServerError::Backend {
            backend: config.default_backend,
            reason: NO_REDIS_REASON.to_owned(),
        });
    }
    let unoffered = |kind: BackendType, reason: String| -> Arc<dyn ContainerBackend> {
        tracing::debug!(%kind, %reason, "backend not offered");
        Arc::new(Unoffered::new(kind, reason))
    };
    let kubernetes = match kubernetes_backend(config).await {
        Ok(b) => b,
        Err(reason) => unoffered(BackendType::Kubernetes, reason),
    };
    let portainer: Arc<dyn ContainerBackend> = match DockerNodes::connect_portainer(config).await {
        Some(Ok(b)) => Arc::new(b),
        Some(Err(e)) => unoffered(BackendType::Portainer, format!("Detection error: {e}")),
        None => unoffered(
            BackendType::Portainer,
            "ORCHESTRATOR_PORTAINER_URL not configured".to_owned(),
        ),
    };
    let (docker, swarm, compose): (_, Arc<dyn ContainerBackend>, Arc<dyn ContainerBackend>) =
        match DockerNodes::connect(config).await {
            Ok(d) => {
                let d = Arc::new(d);
                let swarm: Arc<dyn ContainerBackend> = match SwarmNodes::connect(config).await {
                    Ok(s) => Arc::new(s),
                    Err(e) => unoffered(BackendType::Swarm, format!("Detection error: {e}")),
                };
                (Some(d.clone()), swarm, d)
            }
            Err(e) => {
                let reason = format!("Docker socket not accessible: {e}");
                (
                    None,
                    unoffered(BackendType::Swarm, reason.clone()),
                    unoffered(BackendType::Compose, reason),
                )
            }
        };
    Ok((
        docker,
        vec![kubernetes, portainer, swarm, compose, in_process],
    ))
}

/// The Kubernetes backend when credentials are present and a client can be made from
/// them, else detection's reason.
async fn kubernetes_backend(config: &HostConfig) -> Result<Arc<dyn ContainerBackend>, String> {
    let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
    let source = detect_credentials(config.kubeconfig_path.as_deref(), home.as_deref())?;
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
                crate::backends::docker::node_redis_url(url, config.node_redis_url.as_deref(), None)
            })
            .map(|url| [(crate::backends::docker::NODE_REDIS_VARIABLE.to_owned(), url)].into())
            .unwrap_or_default(),
        ..KubernetesConfig::default()
    };
    match KubernetesBackend::connect(k8s).await {
        Ok(b) => Ok(Arc::new(b)),
        Err(e) => {
            tracing::warn!(%source, error = %e, "Kubernetes credentials found but unusable");
            Err(format!("Detection error: {source}: {e}"))
        }
    }
}

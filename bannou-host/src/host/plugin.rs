//! The orchestrator as a [`Plugin`] of a node, over the same assembly as the binary.

use std::sync::{Arc, Mutex, PoisonError, RwLock};

use axum::Router;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use orchestrator_core::api::ApiError;
use orchestrator_core::catalog::Catalog;
use orchestrator_core::layer::Layer;
use orchestrator_core::ports::backend::ContainerBackend;
use tower::ServiceExt;

use super::{Adapters, ControlPlane, RunningControlPlane, StoreStatus};
use crate::api;
use crate::config::{HostConfig, check_app_id};
use crate::orchestrator::service::OrchestratorService;
use crate::plugins::{Plugin, PluginContext, PluginError, PluginHealth};

/// The orchestrator as a [`Plugin`] of a node: starts a [`ControlPlane`] on the node's
/// bus when the node starts, serves the API routes and `/health`,
/// reports the store's health, and shuts everything down on stop.
///
/// Refuses to start unless the node's app-id is `bannou`
/// (docs/COMPATIBILITY.md#placement-and-identity).
pub struct OrchestratorPlugin {
    config: HostConfig,
    backends: Vec<Arc<dyn ContainerBackend>>,
    adapters: Option<Adapters>,
    router: Arc<RwLock<Option<Router>>>,
    status: Mutex<Option<Arc<StoreStatus>>>,
    running: tokio::sync::Mutex<Option<RunningControlPlane>>,
}

impl OrchestratorPlugin {
    /// The service name.
    pub const NAME: &'static str = "orchestrator";

    /// A plugin that will start a control plane with `config` over `backends`.
    pub fn new(config: HostConfig, backends: Vec<Arc<dyn ContainerBackend>>) -> Self {
        OrchestratorPlugin {
            config,
            backends,
            adapters: None,
            router: Arc::new(RwLock::new(None)),
            status: Mutex::new(None),
            running: tokio::sync::Mutex::new(None),
        }
    }

    /// Start on these adapters instead of connecting new ones from the configuration
    /// (the host built them already, e.g. to share the bus with in-process nodes).
    pub fn with_adapters(mut self, adapters: Adapters) -> Self {
        self.adapters = Some(adapters);
        self
    }

    /// The service of the running control plane, once started.
    pub async fn service(&self) -> Option<OrchestratorService> {
        self.running
            .lock()
            .await
            .as_ref()
            .map(|cp| cp.service().clone())
    }

    fn failed(&self, message: impl Into<String>) -> PluginError {
        PluginError {
            plugin: Self::NAME.to_owned(),
            message: message.into(),
        }
    }
}

#[async_trait::async_trait]
impl Plugin for OrchestratorPlugin {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn layer(&self) -> Layer {
        Catalog::builtin()
            .find(Self::NAME)
            .map_or(Layer::AppFeatures, |def| def.layer)
    }

    async fn start(&self, ctx: &PluginContext) -> Result<(), PluginError> {
        check_app_id(&ctx.app_id).map_err(|e| self.failed(e.to_string()))?;
        let mut running = self.running.lock().await;
        if running.is_some() {
            return Err(self.failed("already started"));
        }
        let mut config = self.config.clone();
        config.app_id = ctx.app_id.clone();
        if config.host_environment.is_empty() {
            config.host_environment = ctx.environment.clone();
        }
        let mut builder = ControlPlane::builder(&config)
            .backends(self.backends.clone())
            .metrics(ctx.metrics.clone());
        if let Some(adapters) = &self.adapters {
            builder = builder.adapters(adapters.clone());
        }
        let cp = builder
            .bus(ctx.bus.clone())
            .start()
            .await
            .map_err(|e| self.failed(e.to_string()))?;
        *self.router.write().unwrap_or_else(PoisonError::into_inner) = Some(cp.router());
        *self.status.lock().unwrap_or_else(PoisonError::into_inner) = Some(cp.store_status());
        *running = Some(cp);
        Ok(())
    }

    fn health(&self) -> PluginHealth {
        let status = self
            .status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        match status.map(|s| s.last_error()) {
            Some(None) => PluginHealth::healthy(),
            Some(Some(e)) => PluginHealth {
                status: orchestrator_core::events::ServiceHealthStatus::Unavailable,
                issues: vec![format!("state store: {e}")],
            },
            None => PluginHealth {
                status: orchestrator_core::events::ServiceHealthStatus::Unavailable,
                issues: vec!["not started".to_owned()],
            },
        }
    }

    fn routes(&self) -> Router {
        let cell = self.router.clone();
        let delegate = move |mut request: Request| {
            // The API's own router names the route (its metrics label), not the node's.
            request
                .extensions_mut()
                .remove::<axum::extract::MatchedPath>();
            let cell = cell.clone();
            async move {
                let router = cell.read().unwrap_or_else(PoisonError::into_inner).clone();
                match router {
                    Some(router) => match router.oneshot(request).await {
                        Ok(response) => response,
                        Err(never) => match never {},
                    },
                    None => not_started(),
                }
            }
        };
        let mut router = Router::new();
        // `/health` too: the node has no route of its own there, and a probe of the
        // control plane wants the store's answer.
        let paths = api::protected_paths()
            .into_iter()
            .chain([api::liveness::PATH])
            .chain(api::status_page::PATHS);
        for path in paths {
            router = router.route(path, axum::routing::any(delegate.clone()));
        }
        router
    }

    async fn stop(&self) {
        let running = self.running.lock().await.take();
        *self.router.write().unwrap_or_else(PoisonError::into_inner) = None;
        if let Some(cp) = running {
            let report = cp.shutdown().await;
            if !report.is_clean() {
                tracing::warn!(?report, "orchestrator plugin stopped uncleanly");
            }
        }
        *self.status.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }
}

fn not_started() -> Response {
    api::json_response(503, &ApiError::new("the orchestrator has not started yet")).into_response()
}

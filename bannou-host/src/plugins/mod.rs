//! The plugin host: what every Bannou node (a container, or a set of tasks in the
//! in-process backend) runs. A node enables a subset of the catalog's services, decided
//! from its environment exactly as docs/COMPATIBILITY.md#enablement-rule says, starts their
//! plugins in layer order, serves their routes, follows routing broadcasts (the mesh-side
//! resolver) and publishes heartbeats.
//!
//! Where to start: [`Plugin`] is what a service implements; [`node::Node`] hosts a set of
//! them.
//!
//! - [`node`]: the plugin host (enablement, start order, HTTP server, mesh follower,
//!   ping forwarding through the mesh, graceful stop).
//! - [`placeholder`]: the stand-in plugin of every service but the orchestrator (ping,
//!   health, the `BANNOU_FAULT_<SERVICE>` fault knob).
//! - [`emitter`]: the heartbeat emitter (`bannou.service-heartbeat`).
//! - [`log`]: a node's bounded, timestamped stdout/stderr log.

pub mod emitter;
pub mod log;
pub mod node;
pub mod placeholder;

use std::collections::BTreeMap;
use std::sync::Arc;

use orchestrator_core::AppId;
use orchestrator_core::events::ServiceHealthStatus;
use orchestrator_core::layer::Layer;
use orchestrator_core::ports::bus::EventBus;

/// What a plugin reports about itself in each heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginHealth {
    /// The service's status.
    pub status: ServiceHealthStatus,
    /// Problems to report (empty when none).
    pub issues: Vec<String>,
}

impl PluginHealth {
    /// Healthy, no issues.
    pub fn healthy() -> Self {
        PluginHealth {
            status: ServiceHealthStatus::Healthy,
            issues: Vec::new(),
        }
    }
}

/// Why a plugin could not start.
#[derive(Debug, thiserror::Error)]
#[error("plugin {plugin} failed to start: {message}")]
pub struct PluginError {
    /// The plugin's service name.
    pub plugin: String,
    /// What went wrong.
    pub message: String,
}

/// What a plugin gets when it starts.
#[derive(Clone)]
pub struct PluginContext {
    /// The node's app-id (`BANNOU_APP_ID`, default `bannou`).
    pub app_id: AppId,
    /// The node's environment (what docs/COMPATIBILITY.md#enablement-rule enablement was
    /// decided from).
    pub environment: BTreeMap<String, String>,
    /// The bus heartbeats and events go through.
    pub bus: Arc<dyn EventBus>,
    /// Notify it when [`Plugin::health`] changes: the node's heartbeat emitter then
    /// beats at once instead of at its next tick or status poll.
    pub health_changed: HealthSignal,
    /// The node's metrics registry (the orchestrator plugin counts into it too, so the
    /// control plane's `GET /metrics` also shows its node's own families).
    pub metrics: crate::metrics::Metrics,
}

impl PluginContext {
    /// A context with a fresh [`HealthSignal`] (nobody listens to it unless the caller
    /// hands it on).
    pub fn new(
        app_id: AppId,
        environment: BTreeMap<String, String>,
        bus: Arc<dyn EventBus>,
    ) -> Self {
        PluginContext {
            app_id,
            environment,
            bus,
            health_changed: HealthSignal::new(),
            metrics: crate::metrics::Metrics::node(),
        }
    }
}

/// "Some plugin's health may have changed": wakes the heartbeat emitter. Cheap to clone;
/// clones share one signal. A notification sent while nobody waits is kept (one permit),
/// so none is lost between two checks.
#[derive(Debug, Clone, Default)]
pub struct HealthSignal(Arc<tokio::sync::Notify>);

impl HealthSignal {
    /// A new signal.
    pub fn new() -> Self {
        Self::default()
    }

    /// Signals a (possible) change.
    pub fn notify(&self) {
        self.0.notify_one();
    }

    /// Resolves at the next signal (or at once if one is pending).
    pub async fn changed(&self) {
        self.0.notified().await;
    }
}

/// One Bannou service hosted by a node.
#[async_trait::async_trait]
pub trait Plugin: Send + Sync + 'static {
    /// The service name from the catalog (`auth`, `orchestrator`, ...).
    fn name(&self) -> &str;

    /// The service's layer; plugins start in layer order.
    fn layer(&self) -> Layer;

    /// Starts the plugin (background tasks, connections). A failure stops the node's start.
    async fn start(&self, ctx: &PluginContext) -> Result<(), PluginError>;

    /// The plugin's health now, reported in every heartbeat.
    fn health(&self) -> PluginHealth;

    /// The HTTP routes the plugin serves (merged into the node's router).
    fn routes(&self) -> axum::Router;

    /// Stops the plugin on graceful shutdown.
    async fn stop(&self) {}
}

//! The orchestrator service: one method per endpoint of docs/COMPATIBILITY.md#endpoints,
//! written as use cases over the ports (store, bus, lease store, container backends) and
//! the shared health state the heartbeat pipeline feeds. The HTTP layer (`crate::api`) only
//! decodes, calls one method, and turns the [`Answer`] or [`ServiceError`] into a response.
//!
//! Where to start: [`OrchestratorService::new`] takes [`ServiceDeps`]; each endpoint or
//! endpoint group lives in its own file (`deploy.rs`, `reset.rs`, `teardown.rs`,
//! `presets.rs`, `routing.rs`, `status.rs`, `topology.rs`; `config.rs`: rollback and
//! version; `health.rs`: infrastructure and services health, restart, should-restart;
//! `containers.rs`: backends, container status and restart, logs, clean; `pools.rs`: the
//! five processing-pool endpoints). The steps they share are named files too:
//! `lifecycle.rs`, `running.rs`, `config_record.rs`, `deployment_events.rs`, `errors.rs`,
//! `requests.rs`, `waves.rs`.
//! [`BackendRegistry`] picks the backend of a request and remembers the active one (D6).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::Duration;

use orchestrator_core::AppId;
use orchestrator_core::ports::bus::EventBus;
use orchestrator_core::ports::store::OrchestratorStore;
use orchestrator_core::time::Clock;
use orchestrator_pools::LeaseStore;

use super::heartbeats::SharedHealth;
use super::leader::LeaderHandle;
use super::leases::LeaseReaper;
use super::mappings::MappingsBroadcaster;
use super::pool_scaler::PoolScaler;

mod backends;
mod config;
mod config_record;
mod containers;
mod deploy;
mod deployment_events;
mod errors;
mod health;
mod lifecycle;
mod pools;
mod presets;
mod reconcile;
mod requests;
mod reset;
mod routing;
mod running;
mod status;
mod teardown;
#[cfg(test)]
pub(crate) mod testing;
mod topology;
mod wave_failure;
#[cfg(test)]
mod wave_interactions;
mod waves;

pub use backends::BackendRegistry;

pub use errors::{ErrorKind, ServiceError};
pub use reconcile::{ReconcileReport, ReconcileSweep};
pub use routing::{RouteWeightsSettled, WeightChange};

/// A body-carrying answer: how it went and the response object. Most answers are
/// [`Outcome::Ok`]; a few endpoints answer a failure or an absence *with* a body
/// (docs/COMPATIBILITY.md#infrastructure-health, docs/COMPATIBILITY.md#deploy,
/// docs/COMPATIBILITY.md#container-status). `crate::api` maps the outcome to a status.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer<T> {
    /// How it went.
    pub outcome: Outcome,
    /// The response object.
    pub body: T,
}

/// How an [`Answer`] went (D61 (docs/DECISIONS.md#d61): no HTTP status below `crate::api`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Done as asked.
    Ok,
    /// The operation failed; the body says how (a failed deploy, an unhealthy host).
    Failed,
    /// What was asked about does not exist; the body says so (an unknown container).
    NotFound,
}

impl<T> Answer<T> {
    /// [`Outcome::Ok`] with `body`.
    pub fn ok(body: T) -> Self {
        Answer {
            outcome: Outcome::Ok,
            body,
        }
    }

    /// `outcome` with `body`.
    pub fn with_outcome(outcome: Outcome, body: T) -> Self {
        Answer { outcome, body }
    }
}

/// What every endpoint method returns.
pub type ServiceResult<T> = Result<Answer<T>, ServiceError>;

/// The settings the use cases read (a subset of the host configuration, `crate::config`,
/// which builds this from `ORCHESTRATOR_*` variables and flags). Defaults are upstream's
/// (docs/COMPATIBILITY.md#configuration-variables) plus ours where noted.
#[derive(Debug, Clone)]
pub struct ServiceSettings {
    /// The control plane's app-id (`bannou`).
    pub control_plane_app_id: AppId,
    /// `DefaultBackend` (docs/COMPATIBILITY.md#configuration-variables): the backend a
    /// deploy uses when the request names none and no deploy has happened yet.
    pub default_backend: orchestrator_core::events::BackendType,
    /// `HeartbeatTimeoutSeconds` (90 s): health expiry.
    pub heartbeat_timeout: Duration,
    /// Ours: how long a deploy waits for one wave's heartbeats (`--wave-timeout`, 120 s).
    pub wave_timeout: Duration,
    /// Ours: how long a change that stops nodes waits for the live consumers to apply
    /// its routes before it proceeds (`ORCHESTRATOR_ROUTING_ACK_TIMEOUT_SECONDS`, 10 s,
    /// D58 (docs/DECISIONS.md#d58)).
    pub routing_ack_timeout: Duration,
    /// Ours: how many nodes of one wave are deployed at once.
    pub deploy_parallelism: usize,
    /// `DegradationThresholdMinutes` (5 min): should-restart.
    pub degradation_threshold: Duration,
    /// `RoutingTtlSeconds` (300 s).
    pub routing_ttl: Duration,
    /// `ConfigHistoryTtlDays` (30 days).
    pub config_history_ttl: Duration,
    /// `RestartTimeoutSeconds` (120 s).
    pub restart_timeout: Duration,
    /// `HealthCheckIntervalMs` (2 s): restart health polling.
    pub health_check_interval: Duration,
    /// `DefaultWaitBeforeKillSeconds` (30 s).
    pub default_wait_before_kill: Duration,
    /// `ContainerStatusPollIntervalSeconds` (2 s): while a deploy waits for a wave's
    /// heartbeats, how often it asks the backend whether a pending node's container is
    /// still there (a node that exits at start fails its wave at the next look).
    pub container_status_poll_interval: Duration,
    /// `DefaultServicePort` (80).
    pub default_service_port: u16,
    /// `DockerImageName` (`bannou:latest`): the image of every node.
    pub image: String,
    /// `OrphanContainerThresholdHours` (24 h), honoured (D12).
    pub orphan_threshold: Duration,
    /// `PresetsHostPath`: where presets are looked up by name.
    pub presets_dir: PathBuf,
    /// The orchestrator's own environment, filtered by the whitelist of
    /// docs/COMPATIBILITY.md#forwarding-whitelist when a node's environment is built.
    pub host_environment: BTreeMap<String, String>,
    /// OpenResty cache invalidation (docs/COMPATIBILITY.md#openresty-invalidation); `None`
    /// disables it.
    pub openresty: Option<orchestrator_routing::OpenRestyConfig>,
}

impl Default for ServiceSettings {
    /// The host's defaults: [`HostConfig::default`](crate::config::HostConfig)'s settings,
    /// so each default is declared once (`crate::config::vars`).
    fn default() -> Self {
        crate::config::HostConfig::default().service_settings()
    }
}

/// Everything the service uses, built once by the host (`crate::host`) or by a test.
#[derive(Clone)]
pub struct ServiceDeps {
    /// Heartbeats, routing records, mappings version, configuration history.
    pub store: Arc<dyn OrchestratorStore>,
    /// Events out (deployment, restart, released, health ping).
    pub bus: Arc<dyn EventBus>,
    /// Processing pools.
    pub leases: Arc<dyn LeaseStore>,
    /// The container backends and the active one.
    pub backends: Arc<BackendRegistry>,
    /// Wall clock (paused in tests).
    pub clock: Arc<dyn Clock>,
    /// Aggregated health and the routing table, fed by the heartbeat pipeline.
    pub health: SharedHealth,
    /// Publishes mappings when the routing table changes (D11).
    pub broadcaster: Arc<MappingsBroadcaster>,
    /// Starts and stops pool workers.
    pub scaler: Arc<PoolScaler>,
    /// Reclaims expired leases; woken when a lease with an early expiry is granted.
    pub reaper: Arc<LeaseReaper>,
    /// Whether this replica leads (reported by `/health`).
    pub leader: LeaderHandle,
    /// This process's own recent log lines: the logs of the control plane's app-id.
    pub logs: crate::log_buffer::LogBuffer,
    /// The settings.
    pub settings: ServiceSettings,
}

/// The orchestrator service. Cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct OrchestratorService {
    deps: Arc<ServiceDeps>,
    /// Serialises deploys, teardowns, rollbacks and topology updates (`lifecycle.rs`).
    lifecycle: Arc<tokio::sync::Mutex<()>>,
    /// True while a reconciliation sweep holds `lifecycle`: a deploy then waits for it
    /// rather than answering 409.
    sweeping: Arc<std::sync::atomic::AtomicBool>,
    /// Where deploys, waves, acquires and releases are counted (`crate::metrics`).
    metrics: crate::metrics::Metrics,
    /// The running canary, if any (`deploy/canary.rs`, D64 (docs/DECISIONS.md#d64)).
    canary: deploy::canary::CanarySlot,
}

impl OrchestratorService {
    /// A service over `deps`. Its pool scaler stops workers through this service's
    /// routing from now on (`routing::ScalerRoutes`, D58 (docs/DECISIONS.md#d58)).
    pub fn new(deps: ServiceDeps) -> Self {
        let service = OrchestratorService {
            deps: Arc::new(deps),
            lifecycle: Arc::default(),
            sweeping: Arc::default(),
            metrics: crate::metrics::Metrics::control_plane(),
            canary: Arc::default(),
        };
        service.bind_scaler();
        service
    }

    /// Counts into `metrics` (the host's registry) instead of a registry of its own.
    pub fn with_metrics(mut self, metrics: crate::metrics::Metrics) -> Self {
        self.metrics = metrics;
        // The scaler's binding counts its routing waits into the same registry.
        self.bind_scaler();
        self
    }

    /// This service without keeping it alive (what the scaler's binding holds: the
    /// service holds the scaler).
    fn downgrade(&self) -> WeakService {
        WeakService {
            deps: Arc::downgrade(&self.deps),
            lifecycle: Arc::downgrade(&self.lifecycle),
            sweeping: Arc::downgrade(&self.sweeping),
            canary: Arc::downgrade(&self.canary),
            metrics: self.metrics.clone(),
        }
    }

    /// The metrics this service counts into.
    pub fn metrics(&self) -> &crate::metrics::Metrics {
        &self.metrics
    }

    /// The dependencies (for the host's background loops and for tests).
    pub fn deps(&self) -> &ServiceDeps {
        &self.deps
    }
}

/// An [`OrchestratorService`] that does not keep it alive ([`OrchestratorService::downgrade`]).
struct WeakService {
    deps: Weak<ServiceDeps>,
    lifecycle: Weak<tokio::sync::Mutex<()>>,
    sweeping: Weak<std::sync::atomic::AtomicBool>,
    canary: Weak<deploy::canary::CanaryCell>,
    metrics: crate::metrics::Metrics,
}

impl WeakService {
    /// The service, while any handle of it lives.
    fn upgrade(&self) -> Option<OrchestratorService> {
        Some(OrchestratorService {
            deps: self.deps.upgrade()?,
            lifecycle: self.lifecycle.upgrade()?,
            sweeping: self.sweeping.upgrade()?,
            canary: self.canary.upgrade()?,
            metrics: self.metrics.clone(),
        })
    }
}

/// `Some(v)` unless `v` is empty (optional lists of the API answers).
fn non_empty<T>(v: Vec<T>) -> Option<Vec<T>> {
    (!v.is_empty()).then_some(v)
}

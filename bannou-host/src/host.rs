//! The control-plane assembly: everything the orchestrator needs, built from a
//! [`HostConfig`] and started with one shutdown switch.
//!
//! [`ControlPlane::start`] (or [`ControlPlane::builder`] to pass in a pre-built bus or
//! adapters) connects the [`Adapters`] (in memory by default, Redis when a Redis URL is
//! configured), builds the shared health state, the mappings broadcaster, the pool scaler
//! (over the default backend), the lease reaper, the heartbeat pipeline (with broadcast on
//! change and worker promotion) and the [`OrchestratorService`], and spawns the loops. The
//! [`RunningControlPlane`] it returns serves the API ([`RunningControlPlane::serve`]) and
//! stops every loop and the server, joining their tasks
//! ([`RunningControlPlane::shutdown`]).
//!
//! # Replicas
//!
//! Several control planes may share one Redis. All serve the API and run the heartbeat
//! pipeline and the store monitor; only the leader elected through
//! [`Adapters::leader`] (`leader-elector` task, [`crate::orchestrator::leader`]) runs the
//! periodic mappings rebroadcast, the lease reaper and the pool scaler's periodic pass.
//! The start makes one election attempt before spawning the loops, so a lone replica
//! leads from the start. With in-memory adapters the process is the only replica and is
//! always leader. On shutdown the loops and the server stop first, then the elector
//! releases the lease, so the next leader never overlaps with this one's last pass.
//!
//! Start refuses (before anything is connected) when the app-id is not `bannou`
//! (docs/COMPATIBILITY.md#placement-and-identity), when the API would listen beyond
//! loopback without a token (D31 (docs/DECISIONS.md#d31)), and when the store does not
//! answer (docs/COMPATIBILITY.md#startup-sequence step 2).
//!
//! [`OrchestratorPlugin`] (`host/plugin.rs`) wraps the same assembly as a
//! [`Plugin`](crate::plugins::Plugin), so a node can host the orchestrator like any other
//! service. The adapters, the store monitor and the reconciliation loop live in
//! `host/adapters.rs`, `host/store_monitor.rs` and `host/reconcile_loop.rs`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use orchestrator_core::health::HeartbeatAggregator;
use orchestrator_core::ports::backend::ContainerBackend;
use orchestrator_core::ports::bus::EventBus;
use orchestrator_core::ports::store::OrchestratorStore;
use orchestrator_core::time::Clock;
use orchestrator_routing::RoutingTable;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::api::{self, ApiAuth};
use crate::clock::TokioClock;
use crate::config::{ConfigError, HostConfig};
use crate::control_events;
use crate::event_stream::EventHub;
use crate::metrics::Metrics;
use crate::orchestrator::heartbeats::{
    HealthState, HeartbeatPipeline, PipelineStats, SharedHealth,
};
use crate::orchestrator::leader::{LeaderElector, LeaderHandle, while_leader};
use crate::orchestrator::leases::LeaseReaper;
use crate::orchestrator::mappings::MappingsBroadcaster;
use crate::orchestrator::pool_scaler::PoolScaler;
use crate::orchestrator::service::{BackendRegistry, OrchestratorService, ServiceDeps};
use crate::orchestrator::stopped;

mod adapters;
mod plugin;
mod reconcile_loop;
mod store_monitor;

pub use adapters::{AdapterKind, Adapters};
pub use plugin::OrchestratorPlugin;
pub use store_monitor::StoreStatus;

use reconcile_loop::reconcile_while;
use store_monitor::monitor_store;

/// How long [`RunningControlPlane::shutdown`] waits for the tasks (open HTTP requests
/// included) before aborting what is left.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Longest the start waits for the store's first answer.
pub const STORE_PING_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the control plane did not start.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The configuration forbids it (wrong app-id, exposed without a token, ...).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Redis could not be reached or its URL is invalid.
    #[error("cannot use Redis at `{url}`: {message}")]
    Redis {
        /// The URL tried.
        url: String,
        /// What failed.
        message: String,
    },
    /// The store did not answer its first ping (docs/COMPATIBILITY.md#startup-sequence step 2).
    #[error("the state store does not answer: {0}")]
    StoreUnavailable(String),
    /// No container backend was given.
    #[error("no container backend is configured; the control plane needs at least one")]
    NoBackend,
    /// Binding the listen address failed.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
}

// === ControlPlane ===

/// Entry point of the assembly; see the module docs.
pub struct ControlPlane;

impl ControlPlane {
    /// Starts a control plane over `backends` (best first) with adapters chosen by
    /// `config`.
    pub async fn start(
        config: &HostConfig,
        backends: Vec<Arc<dyn ContainerBackend>>,
    ) -> Result<RunningControlPlane, HostError> {
        Self::builder(config).backends(backends).start().await
    }

    /// A builder, to pass in a pre-built bus, adapters or clock.
    pub fn builder(config: &HostConfig) -> ControlPlaneBuilder {
        ControlPlaneBuilder {
            config: config.clone(),
            backends: Vec::new(),
            adapters: None,
            bus: None,
            clock: None,
            metrics: None,
        }
    }
}

/// Options of a control plane before it starts.
pub struct ControlPlaneBuilder {
    config: HostConfig,
    backends: Vec<Arc<dyn ContainerBackend>>,
    adapters: Option<Adapters>,
    bus: Option<Arc<dyn EventBus>>,
    clock: Option<Arc<dyn Clock>>,
    metrics: Option<Metrics>,
}

impl ControlPlaneBuilder {
    /// The container backends, best first. The pool scaler drives the one named by
    /// `DefaultBackend`, else the first.
    pub fn backends(mut self, backends: Vec<Arc<dyn ContainerBackend>>) -> Self {
        self.backends = backends;
        self
    }

    /// Use these adapters instead of building them from the configuration.
    pub fn adapters(mut self, adapters: Adapters) -> Self {
        self.adapters = Some(adapters);
        self
    }

    /// Use this bus (e.g. the one in-process nodes publish on), whatever the adapters say.
    pub fn bus(mut self, bus: Arc<dyn EventBus>) -> Self {
        self.bus = Some(bus);
        self
    }

    /// Use this clock (default: [`TokioClock::system`]).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Count into `metrics` (default: a registry of its own, served at `GET /metrics`).
    pub fn metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Checks the configuration, connects, builds and spawns everything.
    pub async fn start(self) -> Result<RunningControlPlane, HostError> {
        let config = self.config;
        config.check_app_id()?;
        config.check_exposure()?;
        config.log_no_effect();
        let clock = self.clock.unwrap_or_else(|| Arc::new(TokioClock::system()));
        let mut adapters = match self.adapters {
            Some(a) => a,
            None => Adapters::from_config(&config, clock.clone()).await?,
        };
        if let Some(bus) = self.bus {
            adapters.bus = bus;
        }
        match tokio::time::timeout(STORE_PING_TIMEOUT, adapters.store.ping()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(HostError::StoreUnavailable(e.to_string())),
            Err(_) => {
                return Err(HostError::StoreUnavailable(format!(
                    "no answer within {STORE_PING_TIMEOUT:?}"
                )));
            }
        }

        // Every backend call of this control plane is counted (`metrics::InstrumentedBackend`).
        let metrics = self.metrics.unwrap_or_else(Metrics::control_plane);
        let backends: Vec<_> = self
            .backends
            .iter()
            .map(|b| metrics.instrument(b.clone()))
            .collect();
        let registry = Arc::new(BackendRegistry::new(
            backends.clone(),
            config.default_backend,
        ));
        let pool_backend = registry
            .get(config.default_backend)
            .or_else(|| backends.first().cloned())
            .ok_or(HostError::NoBackend)?;

        // Leadership first: one attempt before the loops start, so a lone replica leads
        // from the start and the loops begin in a settled state.
        let elector_config = config.elector_config();
        let (elector, leader) = match &adapters.leader {
            Some(port) => {
                let mut elector =
                    LeaderElector::new(port.clone(), clock.clone(), elector_config.clone());
                elector.attempt().await;
                let handle = elector.handle();
                (Some(elector), handle)
            }
            None => (
                None,
                LeaderHandle::always_leader(elector_config.candidate_id.clone()),
            ),
        };
        let grace = elector_config.pause_grace();

        let health = SharedHealth::new(HealthState {
            aggregator: HeartbeatAggregator::new(config.health_config()),
            routing: RoutingTable::new(config.app_id.clone()),
        });
        let broadcaster = Arc::new(
            MappingsBroadcaster::new(
                health.clone(),
                adapters.store.clone(),
                adapters.bus.clone(),
                clock.clone(),
                config.broadcast_policy(),
            )
            .with_leadership(leader.subscribe()),
        );
        metrics.observe_health(health.clone(), clock.clone());
        metrics.observe_leadership(leader.subscribe());
        let scaler = Arc::new(
            PoolScaler::new(
                adapters.leases.clone(),
                pool_backend,
                clock.clone(),
                config.scaler_config(),
            )
            .with_metrics(metrics.clone())
            .with_outbox(crate::orchestrator::pool_events::Outbox::new(
                adapters.bus.clone(),
            )),
        );
        let reaper = Arc::new(
            LeaseReaper::new(
                adapters.leases.clone(),
                adapters.bus.clone(),
                clock.clone(),
                config.lease_cleanup_interval,
            )
            .with_scaler(scaler.clone())
            .with_metrics(metrics.clone()),
        );
        // What `GET /orchestrator/events` streams: the bus (below) and health changes.
        let events = EventHub::for_replica();
        let pipeline = Arc::new(
            HeartbeatPipeline::new(health.clone(), clock.clone(), config.default_service_port)
                .with_broadcaster(broadcaster.clone())
                .with_worker_promotion(adapters.leases.clone())
                .with_metrics(metrics.clone())
                .with_event_hub(events.clone()),
        );
        let service = OrchestratorService::new(ServiceDeps {
            store: adapters.store.clone(),
            bus: adapters.bus.clone(),
            leases: adapters.leases.clone(),
            backends: registry,
            clock: clock.clone(),
            health: health.clone(),
            broadcaster: broadcaster.clone(),
            scaler: scaler.clone(),
            reaper: reaper.clone(),
            leader: leader.clone(),
            logs: crate::log_buffer::LogBuffer::global().clone(),
            settings: config.service_settings(),
        })
        .with_metrics(metrics.clone());
        let router = api::router(service.clone(), ApiAuth::from_config(&config));

        let (shutdown, _) = watch::channel(false);
        let store_status = Arc::new(StoreStatus::default());
        let mut tasks: Vec<(&'static str, JoinHandle<Result<(), String>>)> = Vec::new();
        // `GET /orchestrator/events`: the hub subscribes now, so nothing published from
        // here on is missed; without it the route answers 503.
        let router = match events
            .follow(adapters.bus.clone(), shutdown.subscribe())
            .await
        {
            Ok(task) => {
                tasks.push(("event-stream", task));
                router.layer(axum::Extension(events))
            }
            Err(e) => {
                tracing::warn!(error = %e, "event stream unavailable: cannot subscribe to the bus");
                router
            }
        };
        tasks.push(("heartbeat-pipeline", {
            let (pipeline, bus, rx) =
                (pipeline.clone(), adapters.bus.clone(), shutdown.subscribe());
            tokio::spawn(async move {
                pipeline.run(bus.as_ref(), rx).await.map_err(|e| {
                    tracing::error!(error = %e, "heartbeat pipeline cannot subscribe");
                    e.to_string()
                })
            })
        }));
        tasks.push(("routing-acks", {
            let (health, bus, rx) = (health.clone(), adapters.bus.clone(), shutdown.subscribe());
            tokio::spawn(async move {
                crate::orchestrator::routing_acks::follow_acks(bus.as_ref(), health, rx)
                    .await
                    .map_err(|e| {
                        tracing::error!(error = %e, "routing acknowledgements cannot subscribe");
                        e.to_string()
                    })
            })
        }));
        tasks.push(("mappings-broadcaster", {
            let (broadcaster, rx) = (broadcaster.clone(), shutdown.subscribe());
            tokio::spawn(async move {
                broadcaster.run(rx).await;
                Ok(())
            })
        }));
        tasks.push(("pool-scaler", {
            let (scaler, leads, rx) = (scaler.clone(), leader.subscribe(), shutdown.subscribe());
            tokio::spawn(async move {
                while_leader("pool-scaler", leads, rx, grace, |pause| {
                    scaler.clone().run(pause)
                })
                .await;
                Ok(())
            })
        }));
        tasks.push(("lease-reaper", {
            let (reaper, leads, rx) = (reaper.clone(), leader.subscribe(), shutdown.subscribe());
            tokio::spawn(async move {
                while_leader("lease-reaper", leads, rx, grace, |pause| {
                    let reaper = reaper.clone();
                    async move { reaper.run(pause).await }
                })
                .await;
                Ok(())
            })
        }));
        tasks.push(("reconciler", {
            // While this replica leads (at once for a lone replica): a sweep as soon as it
            // leads, then one every `reconcile_interval` (`service/reconcile.rs`).
            let (service, leads, rx) = (service.clone(), leader.subscribe(), shutdown.subscribe());
            let (every, grace_of_new) = (config.reconcile_interval, config.reconcile_grace);
            let replica = leader.candidate_id().to_owned();
            tokio::spawn(async move {
                while_leader("reconciler", leads, rx, grace, |pause| {
                    reconcile_while(service.clone(), replica.clone(), every, grace_of_new, pause)
                })
                .await;
                Ok(())
            })
        }));
        tasks.push(("store-monitor", {
            let (store, status, rx) = (
                adapters.store.clone(),
                store_status.clone(),
                shutdown.subscribe(),
            );
            let (every, metrics) = (config.heartbeat_interval, metrics.clone());
            tokio::spawn(async move {
                monitor_store(store, status, every, metrics, rx).await;
                Ok(())
            })
        }));
        tasks.push(("metrics", {
            // What has no hook of its own: leadership changes, mappings published, restarts.
            let (bus, leads) = (adapters.bus.clone(), leader.subscribe());
            let (rx1, rx2) = (shutdown.subscribe(), shutdown.subscribe());
            let (m1, m2) = (metrics.clone(), metrics.clone());
            tokio::spawn(async move {
                tokio::join!(m1.follow_leadership(leads, rx1), m2.follow_bus(bus, rx2));
                Ok(())
            })
        }));
        tasks.push(("control-events", {
            // This replica's leadership changes, for every replica's event stream.
            let (bus, leads, rx) = (
                adapters.bus.clone(),
                leader.subscribe(),
                shutdown.subscribe(),
            );
            let replica = leader.candidate_id().to_owned();
            tokio::spawn(async move {
                control_events::follow_leadership(bus, replica, leads, rx).await;
                Ok(())
            })
        }));
        // The elector stops last (see `RunningControlPlane::shutdown`): its own switch.
        let (elector_stop, mut elector_rx) = watch::channel(false);
        let elector_task = match elector {
            Some(elector) => tokio::spawn(async move {
                elector.run(elector_rx).await;
                Ok(())
            }),
            None => tokio::spawn(async move {
                stopped(&mut elector_rx).await;
                Ok(())
            }),
        };
        tracing::info!(
            adapters = ?adapters.kind,
            backends = ?self.backends.iter().map(|b| b.backend_type()).collect::<Vec<_>>(),
            auth = config.api_token.is_some(),
            candidate = %leader.candidate_id(),
            leader = ?leader.state(),
            lease = ?adapters.leader.as_ref().map(|_| elector_config.lease),
            "control plane started"
        );
        // The copied process environment may hold secrets of other services: log its size.
        let env_vars = config.host_environment.len();
        tracing::debug!(config = ?config.for_log(), env_vars, "control plane configuration");
        Ok(RunningControlPlane {
            config,
            service,
            adapters,
            health,
            pipeline,
            router,
            store_status,
            shutdown,
            tasks,
            leader,
            elector_stop,
            elector_task,
        })
    }
}

// === RunningControlPlane ===

/// What [`RunningControlPlane::shutdown`] did with each task.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Tasks that ended cleanly.
    pub stopped: Vec<&'static str>,
    /// Tasks that ended with an error (or panicked), and why.
    pub failed: Vec<(&'static str, String)>,
    /// Tasks still running after [`SHUTDOWN_GRACE`], aborted.
    pub aborted: Vec<&'static str>,
}

impl ShutdownReport {
    /// Every task ended by itself without an error.
    pub fn is_clean(&self) -> bool {
        self.failed.is_empty() && self.aborted.is_empty()
    }
}

/// A started control plane: its service, adapters and router, and the tasks it runs.
pub struct RunningControlPlane {
    config: HostConfig,
    service: OrchestratorService,
    adapters: Adapters,
    health: SharedHealth,
    pipeline: Arc<HeartbeatPipeline>,
    router: Router,
    store_status: Arc<StoreStatus>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<(&'static str, JoinHandle<Result<(), String>>)>,
    leader: LeaderHandle,
    elector_stop: watch::Sender<bool>,
    elector_task: JoinHandle<Result<(), String>>,
}

/// Name of the elector's task in [`RunningControlPlane::task_names`] and the
/// [`ShutdownReport`] (always last).
pub const ELECTOR_TASK: &str = "leader-elector";

impl RunningControlPlane {
    /// The orchestrator service.
    pub fn service(&self) -> &OrchestratorService {
        &self.service
    }

    /// The adapters in use.
    pub fn adapters(&self) -> &Adapters {
        &self.adapters
    }

    /// The event bus (in-process nodes must publish their heartbeats here).
    pub fn bus(&self) -> Arc<dyn EventBus> {
        self.adapters.bus.clone()
    }

    /// The state store.
    pub fn store(&self) -> Arc<dyn OrchestratorStore> {
        self.adapters.store.clone()
    }

    /// Aggregated health and the routing table.
    pub fn health(&self) -> &SharedHealth {
        &self.health
    }

    /// Counters of the heartbeat pipeline.
    pub fn pipeline_stats(&self) -> &PipelineStats {
        self.pipeline.stats()
    }

    /// The configuration it started with.
    pub fn config(&self) -> &HostConfig {
        &self.config
    }

    /// The API router (auth from the configuration).
    pub fn router(&self) -> Router {
        self.router.clone()
    }

    /// What the store monitor saw last.
    pub fn store_status(&self) -> Arc<StoreStatus> {
        self.store_status.clone()
    }

    /// Names of the running tasks (the loops, plus `http` once serving, then
    /// [`ELECTOR_TASK`]).
    pub fn task_names(&self) -> Vec<&'static str> {
        let mut names: Vec<_> = self.tasks.iter().map(|(name, _)| *name).collect();
        names.push(ELECTOR_TASK);
        names
    }

    /// Whether this replica leads, and its candidate id.
    pub fn leader(&self) -> &LeaderHandle {
        &self.leader
    }

    /// A receiver that turns true when shutdown starts (for tasks the caller adds).
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Serves the API on `listener` until shutdown, with graceful close of open
    /// connections. Returns the bound address.
    pub fn serve(&mut self, listener: tokio::net::TcpListener) -> std::io::Result<SocketAddr> {
        let addr = listener.local_addr()?;
        let router = self.router.clone();
        let mut rx = self.shutdown.subscribe();
        let task = tokio::spawn(async move {
            axum::serve(crate::listener::no_delay(listener), router)
                .with_graceful_shutdown(async move { stopped(&mut rx).await })
                .await
                .map_err(|e| e.to_string())
        });
        self.tasks.push(("http", task));
        tracing::info!(%addr, "orchestrator API listening");
        Ok(addr)
    }

    /// Binds the configured listen address and serves on it.
    pub async fn bind_and_serve(&mut self) -> Result<SocketAddr, HostError> {
        let addr = self.config.listen;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| HostError::Bind { addr, source })?;
        self.serve(listener)
            .map_err(|source| HostError::Bind { addr, source })
    }

    /// Simulates a crash of this replica (for fault tests): aborts every task at once,
    /// the elector included, so the leader lease is neither renewed nor released and
    /// runs out by itself.
    pub fn kill(self) {
        for (_, task) in &self.tasks {
            task.abort();
        }
        self.elector_task.abort();
        tracing::warn!(candidate = %self.leader.candidate_id(), "control plane killed");
    }

    /// Stops every loop and the server and joins their tasks (aborting what has not
    /// ended after [`SHUTDOWN_GRACE`]); then stops the elector, which releases the leader
    /// lease, so another replica takes over only once this one's loops have stopped.
    pub async fn shutdown(self) -> ShutdownReport {
        let _ = self.shutdown.send(true);
        let mut report = ShutdownReport::default();
        let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
        let elector = (ELECTOR_TASK, self.elector_task);
        let elector_stop = self.elector_stop;
        let tasks = self.tasks.into_iter().chain(std::iter::once(elector));
        for (name, mut task) in tasks {
            if name == ELECTOR_TASK {
                let _ = elector_stop.send(true);
            }
            match tokio::time::timeout_at(deadline, &mut task).await {
                Ok(Ok(Ok(()))) => report.stopped.push(name),
                Ok(Ok(Err(e))) => report.failed.push((name, e)),
                Ok(Err(join)) => report.failed.push((name, join.to_string())),
                Err(_) => {
                    task.abort();
                    report.aborted.push(name);
                }
            }
        }
        if report.is_clean() {
            tracing::info!(tasks = report.stopped.len(), "control plane stopped");
        } else {
            tracing::warn!(?report, "control plane stopped uncleanly");
        }
        report
    }
}

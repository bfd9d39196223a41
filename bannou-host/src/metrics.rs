//! Prometheus metrics: every family the host exports, one registry per control plane or
//! node, served as `GET /metrics` in the Prometheus text exposition format (version
//! 0.0.4, written by `prometheus-client`; nothing here formats samples by hand).
//!
//! [`Metrics`] is a cheap clonable handle. The places where things happen call one method
//! each (a deploy ends, a wave starts, an acquire is answered, a heartbeat batch is
//! ingested, an HTTP request is answered, ...); gauges that describe state (instances and
//! services by status, seconds since each node's last beat, routing lag, leadership) are
//! computed at scrape time from in-memory state the control plane already holds, never by
//! reading the store. Names carry the `bannou_orchestrator_` prefix, base units, `_total`
//! on counters and `_seconds` on duration histograms. Label values are bounded by the
//! deployment: pool types, service names, node app-ids (pool workers excluded: their
//! app-ids churn), backends, routes as declared (never the raw path), outcomes from fixed
//! sets; never a lease id or an instance GUID.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use orchestrator_core::Timestamp;
use orchestrator_core::api::{DeployRequest, DeployResponse};
use orchestrator_core::events::{
    BackendType, FullServiceMappingsEvent, InstanceHealthStatus, ServiceHeartbeatEvent,
    ServiceRestartEvent,
};
use orchestrator_core::ports::bus::{EventBus, EventBusExt};
use orchestrator_core::time::Clock;
use orchestrator_pools::autoscale::ScaleReason;
use orchestrator_pools::model::{PoolLoad, pool_of_worker_app_id};
use orchestrator_routing::MeshReader;
use orchestrator_routing::resolver::ROUTING_VERSION_METADATA_KEY;
use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::orchestrator::heartbeats::SharedHealth;
use crate::orchestrator::leader::LeaderState;
use crate::orchestrator::service::{ServiceError, ServiceResult};

/// The path every node serves its metrics on.
pub const PATH: &str = "/metrics";

/// Prefix of every family name.
pub const PREFIX: &str = "bannou_orchestrator";

/// A node app-id whose last beat is older than this is dropped from the per-node gauges
/// (it was torn down).
pub const NODE_FORGET_AFTER: Duration = Duration::from_secs(15 * 60);

type L1 = [(&'static str, String); 1];
type L2 = [(&'static str, String); 2];
type L3 = [(&'static str, String); 3];
type Hist<L> = Family<L, Histogram, fn() -> Histogram>;
type FGauge = Gauge<f64, std::sync::atomic::AtomicU64>;

fn latency_histogram() -> Histogram {
    // 0.5 ms .. ~16 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

fn long_histogram() -> Histogram {
    // 50 ms .. ~27 min.
    Histogram::new(exponential_buckets(0.05, 2.0, 16))
}

fn lag_histogram() -> Histogram {
    // 1 ms .. ~16 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// Every family. Registered or not (see [`Metrics::control_plane`] and [`Metrics::node`]),
/// each can be updated; only registered ones are exported.
struct Families {
    // deploys
    deploys: Family<L1, Counter>,
    deploy_duration: Hist<L1>,
    wave_duration: Hist<L1>,
    wave_in_progress: Gauge,
    // pools
    pool_workers: Family<L2, Gauge>,
    pool_active_leases: Family<L1, Gauge>,
    pool_queue_depth: Family<L1, Gauge>,
    pool_acquire_duration: Hist<L2>,
    pool_releases: Family<L2, Counter>,
    pool_reclaimed: Family<L1, Counter>,
    pool_scale_decisions: Family<L3, Counter>,
    // health
    service_instances: Family<L2, Gauge>,
    services: Family<L1, Gauge>,
    heartbeats_received: Counter,
    heartbeat_lag: Histogram,
    node_last_heartbeat_age: Family<L1, FGauge>,
    service_restarts: Family<L1, Counter>,
    // routing
    mappings_version: Gauge,
    node_routing_version: Family<L1, Gauge>,
    nodes_lagging: Gauge,
    // control plane
    leader: Gauge,
    leadership_changes: Counter,
    reconcile_sweeps: Family<L1, Counter>,
    reconcile_repairs: Family<L1, Counter>,
    http_requests: Family<L3, Counter>,
    http_duration: Hist<L2>,
    store_errors: Counter,
    bus_errors: Family<L1, Counter>,
    // plain nodes
    node_heartbeats_sent: Counter,
    node_heartbeats_failed: Counter,
    node_mappings_version: Gauge,
    node_mesh_calls: Family<L1, Counter>,
}

impl Families {
    fn new() -> Self {
        Families {
            deploys: Family::default(),
            deploy_duration: Family::new_with_constructor(long_histogram),
            wave_duration: Family::new_with_constructor(long_histogram),
            wave_in_progress: Gauge::default(),
            pool_workers: Family::default(),
            pool_active_leases: Family::default(),
            pool_queue_depth: Family::default(),
            pool_acquire_duration: Family::new_with_constructor(latency_histogram),
            pool_releases: Family::default(),
            pool_reclaimed: Family::default(),
            pool_scale_decisions: Family::default(),
            service_instances: Family::default(),
            services: Family::default(),
            heartbeats_received: Counter::default(),
            heartbeat_lag: lag_histogram(),
            node_last_heartbeat_age: Family::default(),
            service_restarts: Family::default(),
            mappings_version: Gauge::default(),
            node_routing_version: Family::default(),
            nodes_lagging: Gauge::default(),
            leader: Gauge::default(),
            leadership_changes: Counter::default(),
            reconcile_sweeps: Family::default(),
            reconcile_repairs: Family::default(),
            http_requests: Family::default(),
            http_duration: Family::new_with_constructor(latency_histogram),
            store_errors: Counter::default(),
            bus_errors: Family::default(),
            node_heartbeats_sent: Counter::default(),
            node_heartbeats_failed: Counter::default(),
            node_mappings_version: Gauge::default(),
            node_mesh_calls: Family::default(),
        }
    }

    /// The control plane's families. Counter names get `_total` from the encoder.
    fn register_control_plane(&self, r: &mut Registry) {
        r.register(
            "deploys",
            "Deploys ended, by outcome (succeeded, failed, reverted, refused)",
            self.deploys.clone(),
        );
        r.register(
            "deploy_duration_seconds",
            "Duration of deploys that ran (not refused), by backend",
            self.deploy_duration.clone(),
        );
        r.register(
            "deploy_wave_duration_seconds",
            "Duration of each deploy or teardown wave, by backend",
            self.wave_duration.clone(),
        );
        r.register(
            "deploy_wave_in_progress",
            "Index of the wave running now (0: none)",
            self.wave_in_progress.clone(),
        );
        r.register(
            "pool_workers",
            "Pool workers by pool type and state, as of the pool's last acquire or scaler pass",
            self.pool_workers.clone(),
        );
        r.register(
            "pool_active_leases",
            "Leased workers per pool type, as of the pool's last acquire or scaler pass",
            self.pool_active_leases.clone(),
        );
        r.register("pool_queue_depth", "Callers waiting for a worker per pool type, as of the pool's last acquire or scaler pass", self.pool_queue_depth.clone());
        r.register("pool_acquire_duration_seconds", "Time to answer an acquire, by pool type and outcome (granted, exhausted, timeout, cancelled, error)", self.pool_acquire_duration.clone());
        r.register(
            "pool_releases",
            "Leases released, by pool type and job success",
            self.pool_releases.clone(),
        );
        r.register(
            "pool_expired_leases_reclaimed",
            "Expired leases the reaper reclaimed, by pool type",
            self.pool_reclaimed.clone(),
        );
        r.register(
            "pool_scale_decisions",
            "Scaling steps carried out, by pool type, direction (up, down) and reason",
            self.pool_scale_decisions.clone(),
        );
        r.register(
            "service_instances",
            "Live instances of each service, by derived status",
            self.service_instances.clone(),
        );
        r.register(
            "services",
            "Services by their worst derived status over their instances",
            self.services.clone(),
        );
        r.register(
            "heartbeats_received",
            "Heartbeats ingested from nodes (control-plane beats excluded)",
            self.heartbeats_received.clone(),
        );
        r.register(
            "heartbeat_lag_seconds",
            "Time from a heartbeat's timestamp to its ingestion",
            self.heartbeat_lag.clone(),
        );
        r.register(
            "node_last_heartbeat_age_seconds",
            "Seconds since each node's last heartbeat (pool workers excluded)",
            self.node_last_heartbeat_age.clone(),
        );
        r.register(
            "service_restarts",
            "Smart restarts finished, by service",
            self.service_restarts.clone(),
        );
        r.register(
            "routing_mappings_version",
            "Version of the last service mappings published",
            self.mappings_version.clone(),
        );
        r.register(
            "routing_node_applied_version",
            "Mappings version each node last reported applying (pool workers excluded)",
            self.node_routing_version.clone(),
        );
        r.register(
            "routing_nodes_lagging",
            "Nodes whose applied mappings version is behind the published one",
            self.nodes_lagging.clone(),
        );
        r.register(
            "leader",
            "1 while this replica leads the control plane, else 0",
            self.leader.clone(),
        );
        r.register(
            "leadership_changes",
            "Times this replica gained or lost the leadership",
            self.leadership_changes.clone(),
        );
        r.register(
            "reconcile_sweeps",
            "Reconciliation sweeps, by outcome (quiet, repaired, skipped, failed)",
            self.reconcile_sweeps.clone(),
        );
        r.register("reconcile_repairs", "What reconciliation repaired, by kind (interrupted_deploy, redeployed, worker_restarted, removed)", self.reconcile_repairs.clone());
        r.register(
            "http_requests",
            "API requests answered, by route, method and status",
            self.http_requests.clone(),
        );
        r.register(
            "http_request_duration_seconds",
            "API request latency, by route and method",
            self.http_duration.clone(),
        );
        r.register(
            "store_errors",
            "State store pings that failed",
            self.store_errors.clone(),
        );
        r.register(
            "bus_errors",
            "Event bus subscription problems, by kind (malformed, lagged, subscribe)",
            self.bus_errors.clone(),
        );
    }

    /// A plain node's families.
    fn register_node(&self, r: &mut Registry) {
        r.register(
            "node_heartbeats_sent",
            "Heartbeats this node published",
            self.node_heartbeats_sent.clone(),
        );
        r.register(
            "node_heartbeats_failed",
            "Heartbeats this node could not publish",
            self.node_heartbeats_failed.clone(),
        );
        r.register(
            "node_mappings_version",
            "Mappings version this node applied last (0: none yet)",
            self.node_mappings_version.clone(),
        );
        r.register(
            "node_mesh_calls",
            "Service calls through the mesh, by outcome (ok, unroutable, failed)",
            self.node_mesh_calls.clone(),
        );
    }
}

/// What a node reported last (for the per-node gauges).
struct NodeSeen {
    at: Instant,
    routing_version: Option<i64>,
}

/// Where scrape-time gauges come from.
struct HealthSource {
    health: SharedHealth,
    clock: Arc<dyn Clock>,
}

#[derive(Default)]
struct ScrapeState {
    health: Option<HealthSource>,
    leader: Option<watch::Receiver<LeaderState>>,
    mesh: Option<MeshReader>,
}

struct Inner {
    registry: Registry,
    families: Families,
    /// Per node app-id: last beat (bounded by the deployment; forgotten after
    /// [`NODE_FORGET_AFTER`]).
    nodes: Mutex<HashMap<String, NodeSeen>>,
    /// Pool types seen configured (acquire labels of unknown pools collapse to `unconfigured`).
    pools: Mutex<BTreeSet<String>>,
    /// Held for the whole scrape: refresh then encode.
    scrape: Mutex<ScrapeState>,
}

/// A cheap clonable handle to one registry and its families.
#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    /// [`Metrics::control_plane`].
    fn default() -> Self {
        Self::control_plane()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A label value from a fixed set or a bounded name.
fn l(v: impl Into<String>) -> String {
    v.into()
}

fn backend_label(b: BackendType) -> String {
    b.as_str().to_ascii_lowercase()
}

fn reason_label(r: ScaleReason) -> &'static str {
    match r {
        ScaleReason::Steady => "steady",
        ScaleReason::BelowMinimum => "below_minimum",
        ScaleReason::AboveMaximum => "above_maximum",
        ScaleReason::Queued => "queued",
        ScaleReason::OverThreshold => "over_threshold",
        ScaleReason::WarmBuffer => "warm_buffer",
        ScaleReason::Underutilised => "underutilised",
        ScaleReason::IdleTimeout => "idle_timeout",
    }
}

fn status_label(s: InstanceHealthStatus) -> &'static str {
    match s {
        InstanceHealthStatus::Healthy => "healthy",
        InstanceHealthStatus::Degraded => "degraded",
        InstanceHealthStatus::Overloaded => "overloaded",
        InstanceHealthStatus::ShuttingDown => "shutting_down",
        InstanceHealthStatus::Unavailable => "unavailable",
    }
}

/// How a deploy ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeployOutcome {
    /// Every wave succeeded.
    Succeeded,
    /// A wave failed and nothing was reverted (`autoRevert: false`).
    Failed,
    /// A wave failed and the previous version was restored.
    Reverted,
    /// Refused before anything was touched (invalid, conflicting, not leader, ...).
    Refused,
}

impl DeployOutcome {
    fn label(self) -> &'static str {
        match self {
            DeployOutcome::Succeeded => "succeeded",
            DeployOutcome::Failed => "failed",
            DeployOutcome::Reverted => "reverted",
            DeployOutcome::Refused => "refused",
        }
    }
}

/// How an acquire was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcquireOutcome {
    /// A lease was granted.
    Granted,
    /// Nothing free and the caller would not wait.
    Exhausted,
    /// The caller's wait ended empty.
    Timeout,
    /// The caller went away first.
    Cancelled,
    /// The store failed.
    Error,
}

impl AcquireOutcome {
    fn label(self) -> &'static str {
        match self {
            AcquireOutcome::Granted => "granted",
            AcquireOutcome::Exhausted => "exhausted",
            AcquireOutcome::Timeout => "timeout",
            AcquireOutcome::Cancelled => "cancelled",
            AcquireOutcome::Error => "error",
        }
    }
}

/// Ends a wave's measurement when dropped (see [`Metrics::wave_started`]).
#[must_use = "the wave is measured until this guard is dropped"]
pub struct WaveTimer {
    metrics: Metrics,
    backend: String,
    begun: Instant,
}

impl Drop for WaveTimer {
    fn drop(&mut self) {
        let f = &self.metrics.0.families;
        f.wave_duration
            .get_or_create(&[("backend", std::mem::take(&mut self.backend))])
            .observe(self.begun.elapsed().as_secs_f64());
        f.wave_in_progress.set(0);
    }
}

impl Metrics {
    fn build(register: impl FnOnce(&Families, &mut Registry)) -> Self {
        let families = Families::new();
        let mut registry = Registry::with_prefix(PREFIX);
        register(&families, &mut registry);
        Metrics(Arc::new(Inner {
            registry,
            families,
            nodes: Mutex::default(),
            pools: Mutex::default(),
            scrape: Mutex::default(),
        }))
    }

    /// The control plane's registry (every control-plane family).
    pub fn control_plane() -> Self {
        Self::build(Families::register_control_plane)
    }

    /// A plain node's registry (heartbeats sent, mappings applied, mesh calls).
    pub fn node() -> Self {
        Self::build(Families::register_node)
    }

    /// Scrape-time health gauges read `health` (instances and services by status).
    pub fn observe_health(&self, health: SharedHealth, clock: Arc<dyn Clock>) {
        lock(&self.0.scrape).health = Some(HealthSource { health, clock });
    }

    /// The `leader` gauge follows `leader`; [`Metrics::follow_leadership`] counts changes.
    pub fn observe_leadership(&self, leader: watch::Receiver<LeaderState>) {
        lock(&self.0.scrape).leader = Some(leader);
    }

    /// The `node_mappings_version` gauge follows what `reader` applied.
    pub fn observe_mesh(&self, reader: MeshReader) {
        lock(&self.0.scrape).mesh = Some(reader);
    }

    // === deploys ===

    /// A deploy that began at `begun` ended with `outcome` on `backend`.
    pub fn deploy_finished(&self, outcome: DeployOutcome, backend: BackendType, begun: Instant) {
        let f = &self.0.families;
        f.deploys
            .get_or_create(&[("outcome", l(outcome.label()))])
            .inc();
        if outcome != DeployOutcome::Refused {
            f.deploy_duration
                .get_or_create(&[("backend", backend_label(backend))])
                .observe(begun.elapsed().as_secs_f64());
        }
    }

    /// The deploy `request` begun at `begun` was answered with `result` (dry runs are
    /// not deploys and are not counted).
    pub fn deploy_answered(
        &self,
        request: &DeployRequest,
        result: &ServiceResult<DeployResponse>,
        announced: BackendType,
        begun: Instant,
    ) {
        if request.dry_run {
            return;
        }
        let (outcome, backend) = match result {
            Err(_) => (DeployOutcome::Refused, announced),
            Ok(answer) if answer.body.success => (DeployOutcome::Succeeded, answer.body.backend),
            Ok(answer) if request.auto_revert => (DeployOutcome::Reverted, answer.body.backend),
            Ok(answer) => (DeployOutcome::Failed, answer.body.backend),
        };
        self.deploy_finished(outcome, backend, begun);
    }

    /// Wave `index` (1-based) starts on `backend`; measured until the guard drops.
    pub fn wave_started(&self, backend: BackendType, index: usize) -> WaveTimer {
        self.0
            .families
            .wave_in_progress
            .set(i64::try_from(index).unwrap_or(i64::MAX));
        WaveTimer {
            metrics: self.clone(),
            backend: backend_label(backend),
            begun: Instant::now(),
        }
    }

    // === pools ===

    /// The load of `pool` right after an acquire or a scaler pass read it.
    pub fn pool_load(&self, pool: &str, load: &PoolLoad) {
        let f = &self.0.families;
        {
            let mut pools = lock(&self.0.pools);
            if !pools.contains(pool) {
                pools.insert(pool.to_owned());
            }
        }
        for (state, n) in [
            ("pending", load.pending),
            ("available", load.available),
            ("leased", load.leased),
            ("draining", load.draining),
        ] {
            f.pool_workers
                .get_or_create(&[("pool", l(pool)), ("state", l(state))])
                .set(i64::from(n));
        }
        f.pool_active_leases
            .get_or_create(&[("pool", l(pool))])
            .set(i64::from(load.leased));
        f.pool_queue_depth
            .get_or_create(&[("pool", l(pool))])
            .set(i64::from(load.queue_depth));
    }

    /// An acquire on `pool` begun at `begun` was answered with `outcome`. Pools never
    /// seen configured are labelled `unconfigured` (the name comes from the caller).
    pub fn acquire_finished(&self, pool: &str, outcome: AcquireOutcome, begun: Instant) {
        let pool = if lock(&self.0.pools).contains(pool) {
            l(pool)
        } else {
            l("unconfigured")
        };
        self.0
            .families
            .pool_acquire_duration
            .get_or_create(&[("pool", pool), ("outcome", l(outcome.label()))])
            .observe(begun.elapsed().as_secs_f64());
    }

    /// An acquire on `pool` begun at `begun` (waiting up to `wait`) ended with `got`;
    /// `gone`: its caller had gone away.
    pub fn acquire_answered<T>(
        &self,
        pool: &str,
        got: &Result<T, ServiceError>,
        wait: Duration,
        gone: bool,
        begun: Instant,
    ) {
        let outcome = match got {
            _ if gone => AcquireOutcome::Cancelled,
            Ok(_) => AcquireOutcome::Granted,
            Err(e) if e.status == 429 && wait.is_zero() => AcquireOutcome::Exhausted,
            Err(e) if e.status == 429 => AcquireOutcome::Timeout,
            Err(_) => AcquireOutcome::Error,
        };
        self.acquire_finished(pool, outcome, begun);
    }

    /// A lease of `pool` was released (job `success` or not).
    pub fn lease_released(&self, pool: &str, success: bool) {
        self.0
            .families
            .pool_releases
            .get_or_create(&[("pool", l(pool)), ("success", success.to_string())])
            .inc();
    }

    /// The reaper reclaimed `count` expired leases of `pool`.
    pub fn leases_reclaimed(&self, pool: &str, count: usize) {
        if count > 0 {
            self.0
                .families
                .pool_reclaimed
                .get_or_create(&[("pool", l(pool))])
                .inc_by(count as u64);
        }
    }

    /// The scaler started `started` and drained `drained` workers of `pool` for `reason`.
    pub fn pool_scaled(
        &self,
        pool: &str,
        reason: Option<ScaleReason>,
        started: usize,
        drained: usize,
    ) {
        let reason = reason_label(reason.unwrap_or(ScaleReason::Steady));
        for (direction, n) in [("up", started), ("down", drained)] {
            if n > 0 {
                self.0
                    .families
                    .pool_scale_decisions
                    .get_or_create(&[
                        ("pool", l(pool)),
                        ("direction", l(direction)),
                        ("reason", l(reason)),
                    ])
                    .inc();
            }
        }
    }

    // === health and routing ===

    /// A batch of heartbeats (control-plane ones already left out) ingested at `now`.
    pub fn heartbeats_ingested<'a>(
        &self,
        batch: impl IntoIterator<Item = &'a ServiceHeartbeatEvent>,
        now: Timestamp,
    ) {
        let f = &self.0.families;
        let at = Instant::now();
        let mut nodes = lock(&self.0.nodes);
        for hb in batch {
            f.heartbeats_received.inc();
            let lag = now.saturating_since(hb.timestamp);
            f.heartbeat_lag.observe(lag.as_secs_f64());
            let app = hb.app_id.as_str();
            if pool_of_worker_app_id(app).is_some() {
                continue;
            }
            let routing_version = hb
                .metadata
                .as_ref()
                .and_then(|m| m.get(ROUTING_VERSION_METADATA_KEY))
                .and_then(serde_json::Value::as_i64);
            match nodes.get_mut(app) {
                Some(seen) => {
                    seen.at = at;
                    seen.routing_version = routing_version.or(seen.routing_version);
                }
                None => {
                    nodes.insert(
                        app.to_owned(),
                        NodeSeen {
                            at,
                            routing_version,
                        },
                    );
                }
            }
        }
    }

    /// The mappings at `version` were published.
    pub fn mappings_published(&self, version: i64) {
        self.0.families.mappings_version.set(version);
    }

    /// A smart restart of `service` finished.
    pub fn service_restarted(&self, service: &str) {
        self.0
            .families
            .service_restarts
            .get_or_create(&[("service", l(service))])
            .inc();
    }

    // === control plane ===

    /// A reconciliation sweep ended; returns `result` unchanged.
    pub fn reconcile_swept<E>(
        &self,
        result: Result<crate::orchestrator::service::ReconcileSweep, E>,
        status_of: impl Fn(&E) -> u16,
    ) -> Result<crate::orchestrator::service::ReconcileSweep, E> {
        let f = &self.0.families;
        let outcome = match &result {
            Ok(sweep) if sweep.is_quiet() => "quiet",
            Ok(sweep) => {
                for (kind, n) in [
                    (
                        "interrupted_deploy",
                        usize::from(sweep.interrupted.is_some()),
                    ),
                    ("redeployed", sweep.redeployed.len()),
                    ("worker_restarted", sweep.workers_restarted.len()),
                    ("removed", sweep.removed.len()),
                ] {
                    if n > 0 {
                        f.reconcile_repairs
                            .get_or_create(&[("kind", l(kind))])
                            .inc_by(n as u64);
                    }
                }
                "repaired"
            }
            Err(e) if status_of(e) == 409 => "skipped",
            Err(_) => "failed",
        };
        f.reconcile_sweeps
            .get_or_create(&[("outcome", l(outcome))])
            .inc();
        result
    }

    /// A store ping failed.
    pub fn store_error(&self) {
        self.0.families.store_errors.inc();
    }

    /// A bus subscription problem of `kind` (`malformed`, `lagged`, `subscribe`).
    pub fn bus_error(&self, kind: &'static str, count: u64) {
        self.0
            .families
            .bus_errors
            .get_or_create(&[("kind", l(kind))])
            .inc_by(count);
    }

    /// Counts leadership changes seen on `leader` until `shutdown`.
    pub async fn follow_leadership(
        self,
        mut leader: watch::Receiver<LeaderState>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut leading = leader.borrow_and_update().is_leader();
        loop {
            tokio::select! {
                changed = leader.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let now = leader.borrow_and_update().is_leader();
                    if now != leading {
                        leading = now;
                        self.0.families.leadership_changes.inc();
                    }
                }
                _ = crate::orchestrator::stopped(&mut shutdown) => return,
            }
        }
    }

    /// Follows the bus events that have no hook of their own (mappings published, smart
    /// restarts) until `shutdown`.
    pub async fn follow_bus(self, bus: Arc<dyn EventBus>, mut shutdown: watch::Receiver<bool>) {
        let (mappings, restarts) = match (
            bus.subscribe_events::<FullServiceMappingsEvent>().await,
            bus.subscribe_events::<ServiceRestartEvent>().await,
        ) {
            (Ok(m), Ok(r)) => (m, r),
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(error = %e, "metrics cannot follow the bus");
                self.bus_error("subscribe", 1);
                return;
            }
        };
        let (mut mappings, mut restarts) = (mappings.into_shared(), restarts.into_shared());
        loop {
            tokio::select! {
                Some(item) = mappings.next() => match item {
                    Ok(m) => self.mappings_published(m.version),
                    Err(e) => self.stream_error(&e),
                },
                Some(item) = restarts.next() => match item {
                    Ok(r) => self.service_restarted(&r.service_name),
                    Err(e) => self.stream_error(&e),
                },
                _ = crate::orchestrator::stopped(&mut shutdown) => return,
                else => return,
            }
        }
    }

    /// A subscription item that was not an event (malformed, or messages missed).
    pub fn stream_error(&self, e: &orchestrator_core::ports::bus::EventStreamError) {
        use orchestrator_core::ports::bus::EventStreamError;
        match e {
            EventStreamError::Malformed(_) => self.bus_error("malformed", 1),
            EventStreamError::Lagged { skipped, .. } => self.bus_error("lagged", *skipped),
        }
    }

    /// An API request on `route` (as declared; `unmatched` when none matched) answered
    /// `status` after `elapsed`.
    pub fn http_request(&self, route: &str, method: &str, status: u16, elapsed: Duration) {
        let f = &self.0.families;
        f.http_requests
            .get_or_create(&[
                ("route", l(route)),
                ("method", l(method)),
                ("status", status.to_string()),
            ])
            .inc();
        f.http_duration
            .get_or_create(&[("route", l(route)), ("method", l(method))])
            .observe(elapsed.as_secs_f64());
    }

    // === plain nodes ===

    /// This node published a heartbeat (`ok`) or failed to.
    pub fn heartbeat_sent(&self, ok: bool) {
        let f = &self.0.families;
        if ok {
            f.node_heartbeats_sent.inc();
        } else {
            f.node_heartbeats_failed.inc();
        }
    }

    /// A mesh call ended with `outcome` (`ok`, `unroutable`, `failed`).
    pub fn mesh_call(&self, outcome: &'static str) {
        self.0
            .families
            .node_mesh_calls
            .get_or_create(&[("outcome", l(outcome))])
            .inc();
    }

    // === scrape ===

    /// The exposition: scrape-time gauges refreshed, then every registered family.
    pub fn encode(&self) -> String {
        let scrape = lock(&self.0.scrape);
        self.refresh(&scrape);
        let mut out = String::with_capacity(16 * 1024);
        if let Err(e) = prometheus_text::encode(&mut out, &self.0.registry) {
            // Writing to a String cannot fail; keep what was written and say so.
            let _ = writeln!(out, "# encoding failed: {e}");
        }
        out
    }

    fn refresh(&self, scrape: &ScrapeState) {
        let f = &self.0.families;
        if let Some(reader) = &scrape.mesh {
            f.node_mappings_version
                .set(reader.applied_version().unwrap_or(0));
        }
        if let Some(leader) = &scrape.leader {
            f.leader.set(i64::from(leader.borrow().is_leader()));
        }
        // Per node: age of the last beat, applied routing version, lag.
        let current = f.mappings_version.get();
        f.node_last_heartbeat_age.clear();
        f.node_routing_version.clear();
        let mut lagging = 0;
        {
            let mut nodes = lock(&self.0.nodes);
            nodes.retain(|_, seen| seen.at.elapsed() < NODE_FORGET_AFTER);
            for (app, seen) in nodes.iter() {
                f.node_last_heartbeat_age
                    .get_or_create(&[("node", app.clone())])
                    .set(seen.at.elapsed().as_secs_f64());
                if let Some(v) = seen.routing_version {
                    f.node_routing_version
                        .get_or_create(&[("node", app.clone())])
                        .set(v);
                    if v < current {
                        lagging += 1;
                    }
                }
            }
        }
        f.nodes_lagging.set(lagging);
        // Services and their instances by derived status.
        if let Some(src) = &scrape.health {
            f.service_instances.clear();
            f.services.clear();
            let now = src.clock.now();
            let state = src.health.lock();
            let agg = &state.aggregator;
            let timeout = agg.config().heartbeat_timeout;
            let mut by_status: HashMap<&'static str, i64> = HashMap::new();
            for name in agg.service_names() {
                for si in agg.instances_of(name) {
                    if agg.is_retired(si.instance_id, now) {
                        continue;
                    }
                    let status = status_label(si.status_at(now, timeout));
                    f.service_instances
                        .get_or_create(&[("service", l(name)), ("status", l(status))])
                        .inc();
                }
                if let Some(s) = agg.service_status(name, now) {
                    *by_status.entry(status_label(s)).or_default() += 1;
                }
            }
            for s in [
                "healthy",
                "degraded",
                "overloaded",
                "shutting_down",
                "unavailable",
            ] {
                f.services
                    .get_or_create(&[("status", l(s))])
                    .set(by_status.get(s).copied().unwrap_or(0));
            }
        }
    }
}

/// `GET /metrics`: the registry of the handler's state.
pub async fn serve(State(metrics): State<Metrics>) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, prometheus_text::CONTENT_TYPE)],
        metrics.encode(),
    )
        .into_response()
}

/// The standard methods by name; any other (an extension method a client made up) as
/// `other`, so the label stays bounded.
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::HEAD,
        Method::OPTIONS,
        Method::PATCH,
    ]
    .iter()
    .zip(["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"])
    .find_map(|(m, name)| (m == method).then_some(name))
    .unwrap_or("other")
}

/// Middleware counting every request by its declared route, method and status, with its
/// latency (`Router::layer`, so the matched route is known).
pub async fn track_http(State(metrics): State<Metrics>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = method_label(request.method()).to_owned();
    let begun = Instant::now();
    let response = next.run(request).await;
    metrics.http_request(&route, &method, response.status().as_u16(), begun.elapsed());
    response
}

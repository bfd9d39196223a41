//! Pool scaling: the loop that turns the pure autoscale policy
//! ([`orchestrator_pools::Autoscaler`]) into worker containers on a [`ContainerBackend`].
//!
//! [`PoolScaler`] is the one place that starts and stops pool workers:
//! - [`PoolScaler::deploy_pool`] stores a pool's configuration and starts `minInstances`
//!   workers (upstream starts none);
//! - [`PoolScaler::after_acquire`] is the event-driven path: an acquire that queued, was
//!   refused or pushed the pool over its threshold scales up at once, not on the next tick;
//! - [`PoolScaler::run`] is the periodic path (scale-down after the stabilisation window,
//!   idle reaping, finishing drained workers), woken early by [`PoolScaler::wake`];
//! - [`PoolScaler::drain`] drains chosen workers with a deadline (the drain endpoint).
//!
//! A worker is registered (Pending) before its container is deployed, which reserves
//! capacity so `maxInstances` holds under concurrency; it becomes Available only when its
//! heartbeat arrives (D9 (docs/DECISIONS.md#d9), `LeaseStore::mark_ready`). The policy only
//! ever drains unleased workers; a busy worker that is drained (a manual drain or scale,
//! an image update, or one leased in between) is never stopped under its holder: its
//! lease ends when released or at the drain deadline at the latest, its holder is told by
//! a `WorkerDrainingEvent`, and it is torn down after (D60 (docs/DECISIONS.md#d60)).
//! Workers are stopped only through `PoolScaler::remove_workers`: the routes they hold
//! leave them and the live consumers follow first ([`WorkerRoutes`], D58
//! (docs/DECISIONS.md#d58)). A drain that leaves busy workers wakes the lease reaper for
//! its deadline ([`ReaperWake`]).

use orchestrator_core::error_source::Chain;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use orchestrator_core::api::ContainerStatusType;
use orchestrator_core::ports::backend::{
    BackendError, ContainerBackend, ContainerInfo, NodeDeployment, TeardownOptions,
};
use orchestrator_core::time::Clock;
use orchestrator_core::{AppId, Timestamp};
use orchestrator_pools::{
    Acquired, Autoscaler, LeaseError, LeaseStore, PoolConfig, PoolStatus, PoolType, ProcessorId,
    ScaleDecision, ScaleReason, WorkerIdentity, WorkerState,
};
use tokio::sync::{Notify, watch};

use super::leases::ReaperWake;

/// Label carrying the pool of a worker container (besides the managed labels).
pub const POOL_LABEL: &str = "bannou.pool";

/// What one scaling step did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScaleReport {
    /// Workers registered and deployed.
    pub started: Vec<AppId>,
    /// Workers torn down and removed.
    pub removed: Vec<AppId>,
    /// Workers marked Draining that still hold a lease (removed once released, or once
    /// the drain deadline ends the lease).
    pub draining: Vec<AppId>,
    /// Why the policy acted (`None` when it did nothing).
    pub reason: Option<ScaleReason>,
    /// Per-worker failures; the rest of the step still ran.
    pub errors: Vec<String>,
}

/// The app-ids that reconciliation must leave alone: listed and not
/// stopped, or stopped less than `grace` ago (a restart in progress looks stopped for a
/// moment). A stopped container with no known stop time counts as down.
pub fn running_or_restarting(
    listed: &[ContainerInfo],
    now: Timestamp,
    grace: Duration,
) -> std::collections::BTreeSet<AppId> {
    listed
        .iter()
        .filter(|c| {
            c.status != ContainerStatusType::Stopped
                || c.stopped_at
                    .is_some_and(|at| now.saturating_since(at) < grace)
        })
        .map(|c| c.app_id.clone())
        .collect()
}

/// What [`PoolScaler::repair_workers`] found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerRepair {
    /// Every registered worker's app-id (any state, any pool).
    pub workers: std::collections::BTreeSet<AppId>,
    /// Every configured pool (the values of [`POOL_LABEL`] that are ours).
    pub pools: std::collections::BTreeSet<String>,
    /// Workers whose container was gone or stopped, started again.
    pub restarted: Vec<AppId>,
    /// Workers that could not be started again (tried again on the next pass).
    pub errors: Vec<String>,
}

/// Why [`PoolScaler::repair_workers`] could not look at all.
#[derive(Debug, thiserror::Error)]
pub enum WorkerRepairError {
    /// The lease store failed.
    #[error(transparent)]
    Store(#[from] LeaseError),
    /// The backend could not list what runs.
    #[error("backend cannot list containers: {0}")]
    Backend(BackendError),
}

/// Why a scaling step could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum ScaleError {
    /// The lease store failed (unknown pool, outage, ...).
    #[error(transparent)]
    Store(#[from] LeaseError),
}

/// Settings of the scaler.
#[derive(Debug, Clone)]
pub struct ScalerConfig {
    /// Image for workers whose pool names none (`ORCHESTRATOR_DOCKER_IMAGE_NAME`).
    pub default_image: String,
    /// Whether the periodic loop scales at all (`ORCHESTRATOR_POOL_AUTOSCALE`, default
    /// true). Deploying a pool still starts `minInstances` workers when it is off.
    pub autoscale: bool,
    /// How often the periodic path runs when nothing wakes it.
    pub interval: Duration,
    /// How long a drained worker's lease may last at most
    /// (`ORCHESTRATOR_POOL_DRAIN_TIMEOUT_SECONDS`, default 300 s).
    pub drain_timeout: Duration,
}

impl Default for ScalerConfig {
    /// The defaults of `crate::config::vars` (image, autoscale, interval).
    fn default() -> Self {
        use crate::config::vars;
        ScalerConfig {
            default_image: vars::DOCKER_IMAGE_NAME.default.to_owned(),
            autoscale: vars::POOL_AUTOSCALE.default,
            interval: vars::POOL_AUTOSCALE_INTERVAL.default,
            drain_timeout: vars::POOL_DRAIN_TIMEOUT.default,
        }
    }
}

/// How long the acquire path decides with a pool configuration it read before reading
/// it again. A pool's limits change only when it is deployed (this replica's copy is
/// replaced then) and the store enforces `maxInstances` when a worker registers, so a
/// copy up to this old (another replica redeployed the pool) can at most start a
/// scale-up the new limits would not have, never exceed them.
pub const CONFIG_MAX_AGE: Duration = Duration::from_secs(1);

/// The routing side of stopping pool workers (D58 (docs/DECISIONS.md#d58)). A worker
/// holds a route when its heartbeat claimed its plugin's service because no node routed
/// it (docs/COMPATIBILITY.md#heartbeat-consumption); that route must leave it, and the
/// live consumers apply that, before it stops. The orchestrator service implements it
/// over its routing table and binds itself to the scaler it is built with (the scaler
/// exists first), see [`PoolScaler::route_workers_through`].
#[async_trait::async_trait]
pub trait WorkerRoutes: Send + Sync {
    /// Called before `workers` stop: their heartbeats are ignored from now on, the routes
    /// they hold return to the default and, when there were any, the table is published
    /// and the live consumers are waited for (bounded; laggards are logged and counted,
    /// and the stop proceeds). Returns warnings.
    async fn release(&self, workers: &[AppId]) -> Vec<String>;

    /// Called after `worker`'s stop: `stopped` forgets its instances; otherwise (it still
    /// runs) its heartbeats count again.
    fn stopped(&self, worker: &AppId, stopped: bool);
}

/// Starts and stops pool workers on a backend, following the autoscale policy.
pub struct PoolScaler {
    store: Arc<dyn LeaseStore>,
    backend: Arc<dyn ContainerBackend>,
    clock: Arc<dyn Clock>,
    config: ScalerConfig,
    /// Per-pool policy memory (how long utilisation has been low). A std mutex: held only
    /// to compute a decision, never across an `.await`.
    policies: Mutex<HashMap<PoolType, Autoscaler>>,
    /// Per pool, its configuration and when it was read: what the acquire path decides
    /// with, so an acquire costs no store read (see [`CONFIG_MAX_AGE`]).
    configs: Mutex<HashMap<PoolType, (Arc<PoolConfig>, tokio::time::Instant)>>,
    wake: Notify,
    /// Periodic passes over every pool so far.
    periodic_passes: AtomicU64,
    metrics: Option<crate::metrics::Metrics>,
    outbox: Option<super::pool_events::Outbox>,
    /// How a drain's deadline reaches the lease reaper (the reaper built
    /// [`LeaseReaper::with_scaler`](super::leases::LeaseReaper::with_scaler) listens to it).
    reaper: ReaperWake,
    /// Bound after construction by the service that holds this scaler (the latest
    /// binding wins); `None`: workers stop without touching routes.
    routes: RwLock<Option<Arc<dyn WorkerRoutes>>>,
}

impl PoolScaler {
    /// A scaler over a lease store and a backend.
    pub fn new(
        store: Arc<dyn LeaseStore>,
        backend: Arc<dyn ContainerBackend>,
        clock: Arc<dyn Clock>,
        config: ScalerConfig,
    ) -> Self {
        PoolScaler {
            store,
            backend,
            clock,
            config,
            policies: Mutex::new(HashMap::new()),
            configs: Mutex::new(HashMap::new()),
            wake: Notify::new(),
            periodic_passes: AtomicU64::new(0),
            metrics: None,
            outbox: None,
            reaper: ReaperWake::default(),
            routes: RwLock::new(None),
        }
    }

    /// What wakes the lease reaper of this scaler's pools: every drain that leaves busy
    /// workers wakes it for its deadline, so a lease the drain shortened is reclaimed at
    /// the deadline, not at the reaper's next planned pass (D60 (docs/DECISIONS.md#d60)).
    pub fn reaper_wake(&self) -> &ReaperWake {
        &self.reaper
    }

    /// Stops workers through `routes` from now on (replacing an earlier binding): the
    /// service binds itself once it exists, since it is built with this scaler.
    pub fn route_workers_through(&self, routes: Arc<dyn WorkerRoutes>) {
        *self.routes.write().unwrap_or_else(PoisonError::into_inner) = Some(routes);
    }

    /// Records each pool's load (as its passes read it) and each scaling step in `metrics`.
    pub fn with_metrics(mut self, metrics: crate::metrics::Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Publishes a `PoolScaledEvent` for each step that started or drained workers, and
    /// lends `outbox` to the acquire, release and reclaim paths ([`PoolScaler::outbox`]).
    pub fn with_outbox(mut self, outbox: super::pool_events::Outbox) -> Self {
        self.outbox = Some(outbox);
        self
    }

    /// Where the pool paths publish their events without waiting (`None`: publish inline).
    pub fn outbox(&self) -> Option<&super::pool_events::Outbox> {
        self.outbox.as_ref()
    }

    /// Stores a pool's configuration and starts its `minInstances` workers. When the
    /// pool's image changed, its workers are replaced: as many new ones start as ran
    /// (at least `minInstances`, as capacity allows) and the old ones are drained (idle
    /// ones stop at once, busy ones when their lease ends, at the latest after the drain
    /// timeout).
    pub async fn deploy_pool(&self, config: PoolConfig) -> Result<ScaleReport, ScaleError> {
        let previous = self.store.configure_pool(config.clone()).await?;
        self.remember_config(&config);
        let decision = Autoscaler::initial(&config);
        let pool = config.pool_type().clone();
        // Count what already runs (a redeployed preset must not double the pool).
        let status = self.store.status(&pool, self.clock.now()).await?;
        let running: Vec<ProcessorId> = status
            .workers
            .iter()
            .filter(|w| w.state != WorkerState::Draining)
            .map(|w| w.processor_id.clone())
            .collect();
        let image_changed = previous.is_some_and(|p| p.image() != config.image());
        if image_changed && !running.is_empty() {
            // Old workers leave first, so the idle ones free capacity for the new ones.
            let drained = ScaleDecision {
                start: 0,
                drain: running.clone(),
                reason: ScaleReason::Steady,
            };
            let mut report = self
                .apply_draining(&config, &drained, DrainReason::ImageUpdate, None)
                .await;
            let replace = ScaleDecision {
                start: decision.start.max(running.len() as u32),
                drain: Vec::new(),
                ..decision
            };
            let started = self.apply(&config, &replace).await;
            report.started = started.started;
            report.errors.extend(started.errors);
            return Ok(report);
        }
        let decision = ScaleDecision {
            start: decision.start.saturating_sub(running.len() as u32),
            ..decision
        };
        Ok(self.apply(&config, &decision).await)
    }

    /// Drains `workers` of the pool of `config` (D60): idle and starting ones are torn
    /// down at once, busy ones are never leased again and keep their lease until it is
    /// released or `deadline` passes, their holders told by a `WorkerDrainingEvent`.
    /// Unknown workers are reported as errors.
    pub async fn drain(
        &self,
        config: &PoolConfig,
        workers: Vec<ProcessorId>,
        deadline: Timestamp,
    ) -> ScaleReport {
        let decision = ScaleDecision {
            start: 0,
            drain: workers,
            reason: ScaleReason::Steady,
        };
        self.apply_draining(config, &decision, DrainReason::Drain, Some(deadline))
            .await
    }

    /// The drain deadline of a drain starting now with no deadline of its own.
    pub fn default_drain_deadline(&self) -> Timestamp {
        self.clock.now() + self.config.drain_timeout
    }

    /// The event-driven path: call with what `LeaseStore::acquire` returned.
    pub async fn after_acquire(
        &self,
        pool: &PoolType,
        acquired: &Acquired,
    ) -> Result<ScaleReport, ScaleError> {
        if !self.config.autoscale {
            return Ok(ScaleReport::default());
        }
        // Only the limits and thresholds: the load came with the acquire, and a full
        // status reads every worker and lease of the pool (0.4 ms of Redis for 1,000
        // workers, on every acquire).
        let config = match self.recent_config(pool) {
            Some(c) => c,
            None => {
                let c = self.store.pool_config(pool).await?;
                self.remember_config(&c)
            }
        };
        let decision = self.decide_after_acquire(pool, &config, acquired);
        Ok(self.apply(&config, &decision).await)
    }

    /// [`PoolScaler::after_acquire`] without making the acquire wait: the decision is
    /// taken here from the pool's recent configuration, and a task is spawned only when
    /// there is something to start (or the configuration must be read first). Failures
    /// are logged.
    pub fn after_acquire_in_background(self: &Arc<Self>, pool: &PoolType, acquired: &Acquired) {
        if !self.config.autoscale {
            return;
        }
        let scaler = Arc::clone(self);
        let pool = pool.clone();
        let Some(config) = self.recent_config(&pool) else {
            let acquired = acquired.clone();
            tokio::spawn(async move {
                match scaler.after_acquire(&pool, &acquired).await {
                    Ok(report) => log_after_acquire(&pool, &report),
                    Err(e) => {
                        tracing::warn!(pool = %pool, error = %Chain(&e), "scale-up after acquire failed")
                    }
                }
            });
            return;
        };
        let decision = self.decide_after_acquire(&pool, &config, acquired);
        if decision.is_noop() {
            return;
        }
        tokio::spawn(async move {
            let report = scaler.apply(&config, &decision).await;
            log_after_acquire(&pool, &report);
        });
    }

    fn decide_after_acquire(
        &self,
        pool: &PoolType,
        config: &PoolConfig,
        acquired: &Acquired,
    ) -> ScaleDecision {
        self.policy(pool, |p| {
            p.on_acquire(config, &acquired.outcome, &acquired.load, self.clock.now())
        })
    }

    /// The pools this replica has read a configuration of (deployed, scaled or acquired
    /// from here), sorted: where a lease is most likely to be.
    pub fn known_pools(&self) -> Vec<PoolType> {
        let configs = self.configs.lock().unwrap_or_else(PoisonError::into_inner);
        let mut pools: Vec<PoolType> = configs.keys().cloned().collect();
        pools.sort();
        pools
    }

    /// The configuration of `pool` read less than [`CONFIG_MAX_AGE`] ago.
    fn recent_config(&self, pool: &PoolType) -> Option<Arc<PoolConfig>> {
        let configs = self.configs.lock().unwrap_or_else(PoisonError::into_inner);
        configs
            .get(pool)
            .filter(|(_, read)| read.elapsed() < CONFIG_MAX_AGE)
            .map(|(c, _)| Arc::clone(c))
    }

    /// Keeps `config` as its pool's recent configuration.
    fn remember_config(&self, config: &PoolConfig) -> Arc<PoolConfig> {
        let config = Arc::new(config.clone());
        self.configs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                config.pool_type().clone(),
                (Arc::clone(&config), tokio::time::Instant::now()),
            );
        config
    }

    /// The periodic path for one pool: the whole policy, then finishing drained workers
    /// whose lease has ended.
    pub async fn evaluate(&self, pool: &PoolType) -> Result<ScaleReport, ScaleError> {
        let now = self.clock.now();
        let status = self.store.status(pool, now).await?;
        self.remember_config(&status.config);
        if let Some(m) = &self.metrics {
            m.pool_load(pool.as_str(), &status.load);
        }
        let decision = if self.config.autoscale {
            self.policy(pool, |p| p.evaluate(&status, now))
        } else {
            ScaleDecision::steady()
        };
        let mut report = self.apply(&status.config, &decision).await;
        self.finish_drained(&status, &mut report).await;
        Ok(report)
    }

    /// Periodic passes [`PoolScaler::run`] has started so far (a follower's stays at zero).
    pub fn periodic_passes(&self) -> u64 {
        self.periodic_passes.load(Ordering::Relaxed)
    }

    /// Wakes the periodic loop now (after a release, a heartbeat, a manual change).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Runs the periodic path over every pool until `shutdown` turns true (or its sender is
    /// dropped). Errors of one pool are logged and never stop the loop.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(self.config.interval) => {}
                _ = super::stopped(&mut shutdown) => return,
            }
            self.periodic_passes.fetch_add(1, Ordering::Relaxed);
            let pools = match self.store.list_pools().await {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(error = %Chain(&e), "pool scaler: cannot list pools");
                    continue;
                }
            };
            for pool in pools {
                match self.evaluate(&pool).await {
                    Ok(r) if r != ScaleReport::default() => {
                        tracing::info!(pool = %pool, started = r.started.len(), removed = r.removed.len(), reason = ?r.reason, errors = ?r.errors, "pool scaled")
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(pool = %pool, error = %Chain(&e), "pool scaler: evaluation failed")
                    }
                }
            }
        }
    }

    fn policy(
        &self,
        pool: &PoolType,
        f: impl FnOnce(&mut Autoscaler) -> ScaleDecision,
    ) -> ScaleDecision {
        let mut policies = self.policies.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(p) = policies.get_mut(pool) {
            return f(p);
        }
        f(policies.entry(pool.clone()).or_default())
    }

    /// Carries out `decision` on the pool of `config`: starts `decision.start` workers
    /// (stopping at the first failure), then drains the listed ones (an unleased worker is
    /// torn down and removed at once, a leased one finishes its lease first). The policy
    /// paths use it, and so do manual scale and cleanup (`OrchestratorService`), which
    /// choose the decision themselves.
    pub async fn apply(&self, config: &PoolConfig, decision: &ScaleDecision) -> ScaleReport {
        self.apply_draining(config, decision, DrainReason::ScaleDown, None)
            .await
    }

    /// [`PoolScaler::apply`], drained busy workers keeping their lease until `deadline`
    /// at the latest (`None`: the drain timeout from now), their holders told why.
    async fn apply_draining(
        &self,
        config: &PoolConfig,
        decision: &ScaleDecision,
        why: DrainReason,
        deadline: Option<Timestamp>,
    ) -> ScaleReport {
        let deadline = deadline.unwrap_or_else(|| self.default_drain_deadline());
        let mut report = ScaleReport {
            reason: (!decision.is_noop()).then_some(decision.reason),
            ..ScaleReport::default()
        };
        for _ in 0..decision.start {
            match self.start_worker(config).await {
                Ok(app) => report.started.push(app),
                Err(e) => {
                    report.errors.push(e);
                    // At capacity or a failing backend: more attempts would fail the same way.
                    break;
                }
            }
        }
        let mut idle = Vec::new();
        for id in &decision.drain {
            idle.extend(
                self.drain_worker(config.pool_type(), id, (deadline, why), &mut report)
                    .await,
            );
        }
        self.remove_workers(config.pool_type(), &idle, &mut report)
            .await;
        if !report.draining.is_empty() {
            // The drain may have brought leases' expiries closer than the reaper's plan.
            self.reaper.wake_for(deadline);
        }
        if let Some(m) = &self.metrics {
            m.pool_scaled(
                config.pool_type().as_str(),
                report.reason,
                report.started.len(),
                report.removed.len() + report.draining.len(),
            );
        }
        if let Some(outbox) = &self.outbox
            && let Some(event) = super::pool_events::PoolScaledEvent::of(
                config.pool_type().as_str(),
                &report,
                self.clock.now(),
            )
        {
            outbox.publish(event);
        }
        report
    }

    async fn start_worker(&self, config: &PoolConfig) -> Result<AppId, String> {
        let pool = config.pool_type();
        let worker = WorkerIdentity::generate(pool);
        self.store
            .register_worker(pool, &worker.processor_id, &worker.app_id, self.clock.now())
            .await
            .map_err(|e| format!("register {}: {e}", worker.app_id))?;
        let node = self.worker_node(config, &worker);
        if let Err(e) = self.backend.deploy_node(&node).await {
            // Give the reserved capacity back: a worker that never started must not count.
            let _ = self
                .store
                .remove_worker(pool, &worker.processor_id, self.clock.now())
                .await;
            return Err(format!("deploy {}: {e}", worker.app_id));
        }
        Ok(worker.app_id)
    }

    /// What the backend runs for one worker: the pool's image (or the default), the
    /// pool's plugin as service name, the worker environment and the pool label.
    fn worker_node(&self, config: &PoolConfig, worker: &WorkerIdentity) -> NodeDeployment {
        let image = config.image().unwrap_or(&self.config.default_image);
        let mut node = NodeDeployment::new(
            worker.app_id.clone(),
            config.service_name().unwrap_or("bannou"),
            image,
        );
        node.environment = config.worker_environment(worker);
        node.labels
            .insert(POOL_LABEL.to_owned(), config.pool_type().to_string());
        node
    }

    /// Starts again, under the same identity, every registered worker whose container the
    /// backend no longer runs (killed, removed by hand, lost with its machine), so a lease
    /// on it stays valid and no second holder is ever given it. Left alone:
    /// Draining workers (`evaluate` finishes them), Pending workers registered less than
    /// `pending_grace` ago (a worker is registered before its container is started), and
    /// containers stopped less than `pending_grace` ago (a restart in progress).
    ///
    /// Returns every registered worker's app-id and every pool, so the caller can tell
    /// which of our containers nobody owns, and what was restarted.
    pub async fn repair_workers(
        &self,
        pending_grace: Duration,
    ) -> Result<WorkerRepair, WorkerRepairError> {
        let now = self.clock.now();
        let listed = self
            .backend
            .list()
            .await
            .map_err(WorkerRepairError::Backend)?;
        let running = running_or_restarting(&listed, now, pending_grace);
        let mut repair = WorkerRepair::default();
        for pool in self.store.list_pools().await? {
            let status = self.store.status(&pool, now).await?;
            repair.pools.insert(pool.to_string());
            for w in &status.workers {
                repair.workers.insert(w.app_id.clone());
                let young = w.state == WorkerState::Pending
                    && now.saturating_since(w.created_at) < pending_grace;
                if w.state == WorkerState::Draining || young || running.contains(&w.app_id) {
                    continue;
                }
                let identity = WorkerIdentity {
                    processor_id: w.processor_id.clone(),
                    app_id: w.app_id.clone(),
                };
                let node = self.worker_node(&status.config, &identity);
                match self.backend.deploy_node(&node).await {
                    Ok(_) => {
                        tracing::warn!(pool = %pool, app_id = %w.app_id, state = ?w.state,
                            lease = ?w.lease_id, "pool worker was not running: started it again");
                        repair.restarted.push(w.app_id.clone());
                    }
                    Err(e) => repair.errors.push(format!("restart {}: {e}", w.app_id)),
                }
            }
        }
        Ok(repair)
    }

    /// Marks worker `id` Draining; returns it when it holds no lease (to be removed now).
    async fn drain_worker(
        &self,
        pool: &PoolType,
        id: &ProcessorId,
        (deadline, why): (Timestamp, DrainReason),
        report: &mut ScaleReport,
    ) -> Option<(ProcessorId, AppId)> {
        let now = self.clock.now();
        let worker = match self.store.drain_worker(pool, id, Some(deadline), now).await {
            Ok(w) => w,
            Err(e) => {
                report.errors.push(format!("drain {id}: {e}"));
                return None;
            }
        };
        if let Some(lease_id) = worker.lease_id {
            if let Some(outbox) = &self.outbox {
                outbox.publish(super::pool_events::WorkerDrainingEvent::of(
                    &worker, lease_id, deadline, why, now,
                ));
            }
            report.draining.push(worker.app_id);
            None
        } else {
            Some((id.clone(), worker.app_id))
        }
    }

    /// Draining workers whose lease has ended: tear down and remove.
    async fn finish_drained(&self, status: &PoolStatus, report: &mut ScaleReport) {
        let done: Vec<(ProcessorId, AppId)> = status
            .workers_in(WorkerState::Draining)
            .filter(|w| w.lease_id.is_none() && !report.removed.contains(&w.app_id))
            .map(|w| (w.processor_id.clone(), w.app_id.clone()))
            .collect();
        self.remove_workers(status.config.pool_type(), &done, report)
            .await;
    }

    /// Stops `workers` of `pool` and forgets them: first the routes they hold leave them
    /// and the live consumers follow (once for all of them, [`WorkerRoutes::release`]),
    /// then each is torn down and removed from the store. A worker whose teardown fails
    /// stays registered (and heard again) and is reported.
    async fn remove_workers(
        &self,
        pool: &PoolType,
        workers: &[(ProcessorId, AppId)],
        report: &mut ScaleReport,
    ) {
        if workers.is_empty() {
            return;
        }
        let routes = self
            .routes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(routes) = &routes {
            let apps: Vec<AppId> = workers.iter().map(|(_, app)| app.clone()).collect();
            for w in routes.release(&apps).await {
                tracing::warn!(pool = %pool, "stopping pool workers: {w}");
            }
        }
        for (id, app) in workers {
            let stopped = match self
                .backend
                .teardown(app, &TeardownOptions::default())
                .await
            {
                // Already gone is fine: the goal is that it does not run.
                Ok(_) | Err(BackendError::NotFound { .. }) => true,
                Err(e) => {
                    report.errors.push(format!("teardown {app}: {e}"));
                    false
                }
            };
            if let Some(routes) = &routes {
                routes.stopped(app, stopped);
            }
            if !stopped {
                continue;
            }
            match self.store.remove_worker(pool, id, self.clock.now()).await {
                Ok(_) => report.removed.push(app.clone()),
                Err(e) => report.errors.push(format!("remove {app}: {e}")),
            }
        }
    }

    /// The current time as the scaler sees it.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }
}

/// Why a busy worker is drained, as its holder's `WorkerDrainingEvent` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrainReason {
    /// The drain endpoint.
    Drain,
    /// A scale-down (manual with `force`, or the policy's).
    ScaleDown,
    /// The pool's image changed; the worker is being replaced.
    ImageUpdate,
}

impl DrainReason {
    /// The event's `reason` text.
    pub fn as_str(self) -> &'static str {
        match self {
            DrainReason::Drain => "drain",
            DrainReason::ScaleDown => "scale-down",
            DrainReason::ImageUpdate => "image-update",
        }
    }
}

/// Logs the failures of a scale-up an acquire started.
fn log_after_acquire(pool: &PoolType, report: &ScaleReport) {
    if !report.errors.is_empty() {
        tracing::warn!(pool = %pool, errors = ?report.errors, "scale-up after acquire had failures");
    }
}

#[cfg(test)]
mod tests;

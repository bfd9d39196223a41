//! The one-call hooks: what the places where things happen tell [`Metrics`] (deploys,
//! waves, acquires, releases, scaling, heartbeats, reconciliation, HTTP requests, plain
//! nodes' beats and mesh calls, backend calls).

use std::sync::Arc;
use std::time::Duration;

use orchestrator_core::Timestamp;
use orchestrator_core::api::{DeployRequest, DeployResponse};
use orchestrator_core::events::{BackendType, InstanceHealthStatus, ServiceHeartbeatEvent};
use orchestrator_pools::autoscale::ScaleReason;
use orchestrator_pools::model::{PoolLoad, Released, WorkerState, pool_of_worker_app_id};
use orchestrator_routing::resolver::ROUTING_VERSION_METADATA_KEY;
use tokio::time::Instant;

use super::{Metrics, NodeSeen, lock};
use crate::orchestrator::service::{ErrorKind, ServiceError, ServiceResult};

/// A label value from a fixed set or a bounded name.
pub(super) fn l(v: impl Into<String>) -> String {
    v.into()
}

fn backend_label(b: BackendType) -> String {
    b.as_str().to_ascii_lowercase()
}

/// The label (and event) name of a scaling reason.
pub fn scale_reason_label(r: ScaleReason) -> &'static str {
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

pub(super) fn status_label(s: InstanceHealthStatus) -> &'static str {
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
    pub(super) fn label(self) -> &'static str {
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

/// The operations whose stale fencing tokens are counted, as their `operation` label.
pub const STALE_TOKEN_OPERATIONS: [&str; 2] = ["renew", "release"];

pub(super) const ALL_ACQUIRE_OUTCOMES: [AcquireOutcome; 5] = [
    AcquireOutcome::Granted,
    AcquireOutcome::Exhausted,
    AcquireOutcome::Timeout,
    AcquireOutcome::Cancelled,
    AcquireOutcome::Error,
];

impl Metrics {
    /// Zero series for every label set known in advance (outcomes and kinds from fixed
    /// sets), so a family shows from the first scrape and `rate()` starts from zero.
    pub(super) fn init_known_series(&self) {
        let f = &self.0.families;
        for o in ["succeeded", "failed", "reverted", "refused"] {
            f.deploys.get_or_create_owned(&[("outcome", l(o))]);
        }
        for o in ["quiet", "repaired", "skipped", "failed"] {
            f.reconcile_sweeps.get_or_create_owned(&[("outcome", l(o))]);
        }
        for k in [
            "interrupted_deploy",
            "redeployed",
            "worker_restarted",
            "removed",
        ] {
            f.reconcile_repairs.get_or_create_owned(&[("kind", l(k))]);
        }
        for k in ["malformed", "lagged", "subscribe"] {
            f.bus_errors.get_or_create_owned(&[("kind", l(k))]);
        }
        for o in ["ok", "unroutable", "failed"] {
            f.node_mesh_calls.get_or_create_owned(&[("outcome", l(o))]);
        }
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
        let series = self.configured_pool(pool);
        for (gauge, n) in
            series
                .workers
                .iter()
                .zip([load.pending, load.available, load.leased, load.draining])
        {
            gauge.set(i64::from(n));
        }
        series.active_leases.set(i64::from(load.leased));
        series.queue_depth.set(i64::from(load.queue_depth));
    }

    /// An acquire on `pool` begun at `begun` was answered with `outcome`. Pools never
    /// seen configured are labelled `unconfigured` (the name comes from the caller).
    pub fn acquire_finished(&self, pool: &str, outcome: AcquireOutcome, begun: Instant) {
        let elapsed = begun.elapsed().as_secs_f64();
        match self.pool_series(pool) {
            Some(series) => {
                if matches!(outcome, AcquireOutcome::Granted) {
                    Metrics::recent_acquire(&series, elapsed * 1000.0);
                }
                series.acquire(outcome).observe(elapsed);
            }
            None => self
                .0
                .families
                .pool_acquire_duration
                .get_or_create(&[("pool", l("unconfigured")), ("outcome", l(outcome.label()))])
                .observe(elapsed),
        }
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
            Err(e) if e.kind == ErrorKind::Busy && wait.is_zero() => AcquireOutcome::Exhausted,
            Err(e) if e.kind == ErrorKind::Busy => AcquireOutcome::Timeout,
            Err(_) => AcquireOutcome::Error,
        };
        self.acquire_finished(pool, outcome, begun);
    }

    /// A lease ended (`released`): counted by the job's success, and the pool's gauges
    /// follow the worker (leased -> available; or still leased, by the waiter it was
    /// handed to, who left the queue) until the next acquire or scaler pass sets them
    /// from the store again. A draining worker is counted as draining either way.
    pub fn lease_released(&self, released: &Released) {
        let (pool, success) = (released.lease.pool_type.as_str(), released.success);
        match self.pool_series(pool) {
            Some(series) => {
                series.releases[usize::from(success)].inc();
                if released.handed_off.is_some() {
                    decrement_to_zero(&series.queue_depth);
                } else if released.worker.state == WorkerState::Available {
                    let [_, available, leased, _] = &series.workers;
                    decrement_to_zero(leased);
                    decrement_to_zero(&series.active_leases);
                    available.inc();
                }
            }
            None => {
                self.0
                    .families
                    .pool_releases
                    .get_or_create(&[("pool", l(pool)), ("success", success.to_string())])
                    .inc();
            }
        }
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

    /// A renew or release (`operation`, one of [`STALE_TOKEN_OPERATIONS`]) on `pool` was
    /// refused for a stale fencing token.
    pub fn stale_fencing_token(&self, pool: &str, operation: &'static str) {
        self.0
            .families
            .pool_stale_tokens
            .get_or_create(&[("pool", l(pool)), ("operation", l(operation))])
            .inc();
    }

    /// The scaler started `started` and drained `drained` workers of `pool` for `reason`.
    pub fn pool_scaled(
        &self,
        pool: &str,
        reason: Option<ScaleReason>,
        started: usize,
        drained: usize,
    ) {
        let reason = scale_reason_label(reason.unwrap_or(ScaleReason::Steady));
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

    /// A change stopped waiting for the routing acknowledgements with consumers behind.
    pub fn routing_ack_timed_out(&self) {
        self.0.families.routing_ack_timeouts.inc();
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

    /// A reconciliation sweep ended (`skipped` tells an error that only means another
    /// lifecycle operation held the lock); returns `result` unchanged.
    pub fn reconcile_swept<E>(
        &self,
        result: Result<crate::orchestrator::service::ReconcileSweep, E>,
        skipped: impl Fn(&E) -> bool,
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
            Err(e) if skipped(e) => "skipped",
            Err(_) => "failed",
        };
        f.reconcile_sweeps
            .get_or_create(&[("outcome", l(outcome))])
            .inc();
        result
    }

    /// A call of `operation` on `backend` ended (`ok` or not) after `elapsed`.
    pub fn backend_call(
        &self,
        backend: BackendType,
        operation: &'static str,
        ok: bool,
        elapsed: Duration,
    ) {
        let f = &self.0.families;
        let (backend, operation) = (backend_label(backend), l(operation));
        let outcome = l(if ok { "ok" } else { "error" });
        f.backend_calls
            .get_or_create(&[
                ("backend", backend.clone()),
                ("operation", operation.clone()),
                ("outcome", outcome),
            ])
            .inc();
        f.backend_duration
            .get_or_create(&[("backend", backend), ("operation", operation)])
            .observe(elapsed.as_secs_f64());
    }

    /// `backend`, with every call counted here.
    pub fn instrument(
        &self,
        backend: Arc<dyn orchestrator_core::ports::backend::ContainerBackend>,
    ) -> Arc<dyn orchestrator_core::ports::backend::ContainerBackend> {
        Arc::new(super::backend::InstrumentedBackend::new(
            backend,
            self.clone(),
        ))
    }

    /// A store ping failed.
    pub fn store_error(&self) {
        self.0.families.store_errors.inc();
    }

    /// A store ping succeeded after one or more failed.
    pub fn store_reconnected(&self) {
        self.0.families.store_reconnects.inc();
    }

    /// A bus subscription problem of `kind` (`malformed`, `lagged`, `subscribe`).
    pub fn bus_error(&self, kind: &'static str, count: u64) {
        self.0
            .families
            .bus_errors
            .get_or_create(&[("kind", l(kind))])
            .inc_by(count);
    }

    /// An API request on `route` (as declared; `unmatched` when none matched) answered
    /// `status` after `elapsed`.
    pub fn http_request(&self, route: &str, method: &'static str, status: u16, elapsed: Duration) {
        self.route_request(route, method, status, elapsed.as_secs_f64());
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
}

/// `gauge` one lower, unless it is already 0 (it may lag the store by one pass).
fn decrement_to_zero(gauge: &prometheus_client::metrics::gauge::Gauge) {
    if gauge.get() > 0 {
        gauge.dec();
    }
}

//! Endpoint group `pools` (see the parent module for the conventions): the five
//! processing-pool endpoints (docs/COMPATIBILITY.md#processing-pools) over the atomic lease
//! store, with our extensions: priority and bounded waiting on acquire, fencing tokens, 429
//! for an empty pool (D3), scaling that starts and drains real workers within [min, max],
//! and our renew and drain endpoints (D60). Every stale fencing token refused is counted.

use std::sync::Arc;

use orchestrator_core::Timestamp;
use orchestrator_core::api::*;
use orchestrator_core::events::Event;
use orchestrator_core::ports::bus::EventBusExt;
use orchestrator_pools::waiting::{DEFAULT_POLL_INTERVAL, wait_for_ticket};
use orchestrator_pools::{
    AcquireOutcome, AcquireRequest, FencingToken, Lease, LeaseError, LeaseId, PoolStatus, PoolType,
    Released, ScaleDecision, ScaleReason, Worker, WorkerState,
};

use super::errors::lease_error;
use super::requests::{pool_type, validated};
use super::{Answer, OrchestratorService, ServiceError, ServiceResult};
use crate::orchestrator::pool_events::LeaseGrantedEvent;

/// Holder recorded on a lease when the request's metadata names none.
const DEFAULT_HOLDER: &str = "api";

/// Busy: no worker could be leased (429, D3 (docs/DECISIONS.md#d3); upstream answered 500).
fn no_processor(message: impl Into<String>) -> ServiceError {
    ServiceError::busy(message)
}

impl OrchestratorService {
    /// POST /orchestrator/processing-pool/acquire (docs/COMPATIBILITY.md#acquire-processor,
    /// docs/COMPATIBILITY.md#processing-pools-acquire).
    ///
    /// One atomic store step leases an available worker (expired leases are reclaimed
    /// first). With nothing free, the caller waits up to `waitMs` in the pool's queue
    /// (higher `priority` first, then arrival) and gets 429 when the wait ends empty; an
    /// unconfigured pool is 429 too (no processor available). Every acquire is handed to
    /// the scaler, which starts workers at once when the pool queued, refused or went over
    /// its threshold. The answer carries the lease's fencing token. `metadata.holder`
    /// (a string), when present, names the holder on the lease. A caller that goes away
    /// (its request dropped) while it waits leaves the queue at once, and a lease taken
    /// for it that can no longer reach it is released as a failed job instead of staying
    /// leased to nobody until it expires.
    pub async fn acquire(
        &self,
        request: AcquireProcessorRequest,
    ) -> ServiceResult<AcquireProcessorResponse> {
        validated(&request)?;
        let pool = pool_type(&request.pool_type)?;
        let now = self.deps.clock.now();
        let metadata = request.metadata.clone().unwrap_or_default();
        let holder = metadata
            .get("holder")
            .and_then(|h| h.as_str())
            .unwrap_or(DEFAULT_HOLDER)
            .to_owned();
        let req = AcquireRequest {
            holder,
            priority: i32::try_from(request.priority).unwrap_or(i32::MAX),
            lease_duration: Some(request.lease_duration()),
            wait: request.wait(),
            metadata: if metadata.is_empty() {
                serde_json::Value::Null
            } else {
                serde_json::Value::Object(metadata)
            },
        };
        // The store step and the wait run in a task of their own, so a dropped request
        // (a client that hung up or timed out) never cuts them off halfway; a lease that
        // then reaches nobody is released (see `Handed`).
        let (mut tx, rx) = tokio::sync::oneshot::channel();
        let service = self.clone();
        tokio::spawn(async move {
            let (begun, name, wait) = (tokio::time::Instant::now(), pool.to_string(), req.wait);
            let got = service.acquire_until(pool, req, now, tx.closed()).await;
            service
                .metrics
                .acquire_answered(&name, &got, wait, tx.is_closed(), begun);
            if let Ok(lease) = &got {
                service.publish(LeaseGrantedEvent::of(lease, service.deps.clock.now()));
            }
            let _ = tx.send(got.map(|lease| Handed::new(&service, lease)));
        });
        let lease = match rx.await {
            Ok(got) => got?.take(),
            Err(_) => {
                return Err(lease_error(LeaseError::unavailable(
                    "the acquiring task ended without an answer",
                )));
            }
        };
        // Wakes the reaper only if this lease expires before its next pass.
        self.deps.reaper.wake_for(lease.expires_at);
        Ok(Answer::ok(AcquireProcessorResponse {
            processor_id: lease.processor_id.to_string(),
            app_id: lease.app_id.to_string(),
            lease_id: lease.lease_id.0,
            expires_at: lease.expires_at,
            fencing_token: lease.fencing_token.0,
        }))
    }

    /// POST /orchestrator/processing-pool/release (docs/COMPATIBILITY.md#release-processor,
    /// docs/COMPATIBILITY.md#processing-pools-release).
    ///
    /// Ends the lease in whichever pool holds it (the request names none) and counts the
    /// job as completed or failed; the worker goes to the head of the wait queue or back
    /// to Available. Publishes a `ProcessorReleasedEvent`. Unknown leases (never granted,
    /// released, or reclaimed after expiry) are 404; with `fencingToken`, a token that is
    /// not the lease's is 409 (a stale holder), and nothing changes.
    pub async fn release(
        &self,
        request: ReleaseProcessorRequest,
    ) -> ServiceResult<ReleaseProcessorResponse> {
        validated(&request)?;
        let lease_id = LeaseId(request.lease_id);
        let now = self.deps.clock.now();
        // The pools this replica knows first (no store read); the others only when the
        // lease is in none of them.
        let given = request.fencing_token.map(FencingToken);
        let known = self.deps.scaler.known_pools();
        let mut released = self
            .release_in(&known, lease_id, given, request.success, now)
            .await?;
        if released.is_none() {
            let mut others = self.deps.leases.list_pools().await.map_err(lease_error)?;
            others.retain(|p| !known.contains(p));
            released = self
                .release_in(&others, lease_id, given, request.success, now)
                .await?;
        }
        let released = released.ok_or_else(|| {
            ServiceError::not_found(format!(
                "lease {lease_id} not found (never granted, already released, or reclaimed after expiry)"
            ))
        })?;
        self.after_release(&released, now).await;
        Ok(Answer::ok(ReleaseProcessorResponse {
            processor_id: released.lease.processor_id.to_string(),
        }))
    }

    /// POST /orchestrator/processing-pool/status (docs/COMPATIBILITY.md#pool-status,
    /// docs/COMPATIBILITY.md#processing-pools-status).
    ///
    /// Counts from one consistent snapshot: `totalInstances` every worker (starting and
    /// leaving ones included), `busyInstances` live leases, `queueDepth` callers waiting,
    /// `utilization` busy / max(total, 1); limits and threshold from the configuration.
    /// `recentMetrics` (sliding hour, mean lease time, last scale event) when asked. An
    /// unknown pool reports zeros (min 1, max 5 as upstream), not 404.
    pub async fn pool_status(
        &self,
        request: GetPoolStatusRequest,
    ) -> ServiceResult<PoolStatusResponse> {
        validated(&request)?;
        let pool = pool_type(&request.pool_type)?;
        let now = self.deps.clock.now();
        let status = match self.deps.leases.status(&pool, now).await {
            Ok(s) => s,
            Err(LeaseError::UnknownPool { .. }) => {
                return Ok(Answer::ok(PoolStatusResponse {
                    total_instances: 0,
                    available_instances: 0,
                    busy_instances: 0,
                    queue_depth: 0,
                    utilization: 0.0,
                    min_instances: 1,
                    max_instances: 5,
                    scale_up_threshold: 0.0,
                    recent_metrics: None,
                    recent_acquire_p50_ms: None,
                    recent_acquire_p99_ms: None,
                }));
            }
            Err(e) => return Err(lease_error(e)),
        };
        let recent_metrics = if request.include_metrics {
            let m = self
                .deps
                .leases
                .metrics(&pool, now)
                .await
                .map_err(lease_error)?;
            Some(PoolMetrics {
                jobs_completed_1h: saturating_i64(m.jobs_completed_1h),
                jobs_failed_1h: saturating_i64(m.jobs_failed_1h),
                avg_processing_time_ms: i64::try_from(m.avg_lease_time.as_millis())
                    .unwrap_or(i64::MAX),
                last_scale_event: m.last_scale_event,
            })
        } else {
            None
        };
        let total = status.workers.len() as i64;
        let busy = status.leases.len() as i64;
        // Ours only: recent acquire latency from the metrics' bounded window.
        let recent = self.metrics.recent_acquire_ms(pool.as_str());
        Ok(Answer::ok(PoolStatusResponse {
            total_instances: total,
            available_instances: i64::from(status.load.available),
            busy_instances: busy,
            queue_depth: i64::from(status.load.queue_depth),
            utilization: busy as f64 / total.max(1) as f64,
            min_instances: i64::from(status.config.min_instances()),
            max_instances: i64::from(status.config.max_instances()),
            scale_up_threshold: status.config.scale_up_threshold(),
            recent_metrics,
            recent_acquire_p50_ms: recent.map(|(p50, _)| p50),
            recent_acquire_p99_ms: recent.map(|(_, p99)| p99),
        }))
    }

    /// POST /orchestrator/processing-pool/scale (docs/COMPATIBILITY.md#scale-pool,
    /// docs/COMPATIBILITY.md#processing-pools-scale).
    ///
    /// Sets the number of workers (those not already leaving) to `targetInstances` at
    /// once: new workers are registered and deployed (Pending until their first
    /// heartbeat, D9); surplus ones are drained idle-longest first, then starting ones.
    /// Leased workers are only chosen with `force`, and even then finish their job first
    /// (drained: never leased again, their holders told by a `WorkerDrainingEvent`, torn
    /// down on release or at the drain deadline, D60) instead of being killed as upstream
    /// did; they count as scaled down. The target must lie within the pool's
    /// [min, max] (400 naming `targetInstances`; upstream did not enforce it). 404 when
    /// the pool has no configuration; 500 when nothing could be started or stopped.
    /// The autoscaler may later move the count by its policy.
    pub async fn scale_pool(&self, request: ScalePoolRequest) -> ServiceResult<ScalePoolResponse> {
        validated(&request)?;
        let pool = pool_type(&request.pool_type)?;
        let status = self.configured_pool(&pool).await?;
        let config = &status.config;
        let (min, max) = (config.min_instances(), config.max_instances());
        let target = u32::try_from(request.target_instances).unwrap_or(u32::MAX);
        if target < min || target > max {
            return Err(ServiceError::field(FieldError::new(
                "targetInstances",
                format!(
                    "{} is outside pool `{pool}`'s limits [{min}, {max}]",
                    request.target_instances
                ),
            )));
        }
        let active: Vec<&Worker> = status
            .workers
            .iter()
            .filter(|w| w.state != WorkerState::Draining)
            .collect();
        let previous = active.len() as u32;
        // The caller chose the numbers, so the decision carries no policy reason.
        let decision = if target > previous {
            ScaleDecision {
                start: target - previous,
                drain: Vec::new(),
                reason: ScaleReason::Steady,
            }
        } else {
            let mut victims = removal_order(&active);
            if !request.force {
                victims.retain(|w| w.lease_id.is_none());
            }
            ScaleDecision {
                start: 0,
                drain: victims
                    .into_iter()
                    .take((previous - target) as usize)
                    .map(|w| w.processor_id.clone())
                    .collect(),
                reason: ScaleReason::Steady,
            }
        };
        // Leased workers drained with `force` end at the drain deadline at the latest (the
        // scaler wakes the reaper for it).
        let report = self.deps.scaler.apply(config, &decision).await;
        let up = report.started.len() as u32;
        let down = (report.removed.len() + report.draining.len()) as u32;
        if !report.errors.is_empty() {
            tracing::warn!(pool = %pool, errors = ?report.errors, "manual scale had failures");
            if up == 0 && down == 0 {
                return Err(ServiceError::internal(format!(
                    "scaling pool `{pool}` failed: {}",
                    report.errors.join("; ")
                )));
            }
        }
        Ok(Answer::ok(ScalePoolResponse {
            previous_instances: i64::from(previous),
            current_instances: i64::from((previous + up).saturating_sub(down)),
            scaled_up: i64::from(up),
            scaled_down: i64::from(down),
        }))
    }

    /// POST /orchestrator/processing-pool/cleanup (docs/COMPATIBILITY.md#cleanup-pool,
    /// docs/COMPATIBILITY.md#processing-pools-cleanup).
    ///
    /// Tears down idle (Available) workers, idle longest first, keeping `minInstances`
    /// idle ones when `preserveMinimum` (none otherwise), as upstream counts. A worker
    /// leased meanwhile is drained instead (torn down after its job) and counted. An
    /// unknown pool removes nothing. `currentInstances` counts workers not leaving.
    pub async fn cleanup_pool(
        &self,
        request: CleanupPoolRequest,
    ) -> ServiceResult<CleanupPoolResponse> {
        validated(&request)?;
        let pool = pool_type(&request.pool_type)?;
        let status = match self.deps.leases.status(&pool, self.deps.clock.now()).await {
            Ok(s) => s,
            Err(LeaseError::UnknownPool { .. }) => {
                return Ok(Answer::ok(CleanupPoolResponse::default()));
            }
            Err(e) => return Err(lease_error(e)),
        };
        let keep = if request.preserve_minimum {
            status.config.min_instances() as usize
        } else {
            0
        };
        let active: Vec<&Worker> = status
            .workers
            .iter()
            .filter(|w| w.state != WorkerState::Draining)
            .collect();
        let idle: Vec<&Worker> = removal_order(&active)
            .into_iter()
            .filter(|w| w.state == WorkerState::Available)
            .collect();
        let decision = ScaleDecision {
            start: 0,
            drain: idle
                .iter()
                .take(idle.len().saturating_sub(keep))
                .map(|w| w.processor_id.clone())
                .collect(),
            reason: ScaleReason::Steady,
        };
        let report = self.deps.scaler.apply(&status.config, &decision).await;
        if !report.errors.is_empty() {
            tracing::warn!(pool = %pool, errors = ?report.errors, "pool cleanup had failures");
        }
        let removed = report.removed.len() + report.draining.len();
        Ok(Answer::ok(CleanupPoolResponse {
            instances_removed: removed as i64,
            current_instances: active.len().saturating_sub(removed) as i64,
        }))
    }

    // === helpers ===

    /// The pool's status, or 404 when it has no configuration.
    async fn configured_pool(&self, pool: &PoolType) -> Result<PoolStatus, ServiceError> {
        match self.deps.leases.status(pool, self.deps.clock.now()).await {
            Ok(s) => Ok(s),
            Err(LeaseError::UnknownPool { .. }) => Err(ServiceError::not_found(format!(
                "no pool configuration for `{pool}`"
            ))),
            Err(e) => Err(lease_error(e)),
        }
    }

    /// The acquire proper: one store step, the scaler told, and for a queued caller the
    /// wait, which ends early when `gone` completes (the caller went away): the ticket then
    /// leaves the queue at once instead of keeping its place until its deadline, and a
    /// worker handed over meanwhile comes back as the lease, for the caller to release.
    async fn acquire_until(
        &self,
        pool: PoolType,
        req: AcquireRequest,
        now: Timestamp,
        gone: impl Future<Output = ()>,
    ) -> Result<Lease, ServiceError> {
        let wait = req.wait;
        let acquired = match self.deps.leases.acquire(&pool, req, now).await {
            Ok(a) => a,
            Err(LeaseError::UnknownPool { .. }) => {
                return Err(no_processor(format!(
                    "no processor available: pool `{pool}` is not configured"
                )));
            }
            Err(e) => return Err(lease_error(e)),
        };
        self.metrics.pool_load(pool.as_str(), &acquired.load);
        // Starting workers takes a backend call per worker, which neither a granted
        // acquire nor a waiting one should sit behind (a waiter is served by the new
        // worker's first heartbeat).
        self.deps
            .scaler
            .after_acquire_in_background(&pool, &acquired);
        match acquired.outcome {
            AcquireOutcome::Leased(lease) => Ok(lease),
            AcquireOutcome::Exhausted => Err(no_processor(format!(
                "no processor available in pool `{pool}`"
            ))),
            AcquireOutcome::Queued(ticket) => {
                let clock = self.deps.clock.clone();
                wait_for_ticket(
                    self.deps.leases.as_ref(),
                    &ticket,
                    now + wait,
                    DEFAULT_POLL_INTERVAL,
                    move || clock.now(),
                    tokio::time::sleep,
                    gone,
                )
                .await
                .map_err(lease_error)?
                .ok_or_else(|| {
                    no_processor(format!(
                        "no processor available in pool `{pool}` within {} ms",
                        wait.as_millis()
                    ))
                })
            }
        }
    }

    /// Ends lease `lease_id` in whichever of `pools` holds it; `None` when none does.
    /// Each attempt is one atomic step that changes nothing when refused, so trying the
    /// pools in turn is safe and costs no read of a whole pool. An unfenced (upstream)
    /// request learns the lease's token from the refusal and retries with it once.
    async fn release_in(
        &self,
        pools: &[PoolType],
        lease_id: LeaseId,
        given: Option<FencingToken>,
        success: bool,
        now: Timestamp,
    ) -> Result<Option<Released>, ServiceError> {
        let store = &self.deps.leases;
        for pool in pools {
            let token = given.unwrap_or(FencingToken(0));
            let attempt = match store.release(pool, lease_id, token, success, now).await {
                Err(LeaseError::StaleFencingToken { current, .. }) if given.is_none() => {
                    store.release(pool, lease_id, current, success, now).await
                }
                other => other,
            };
            match attempt {
                Ok(r) => return Ok(Some(r)),
                Err(LeaseError::UnknownLease { .. } | LeaseError::UnknownPool { .. }) => {}
                Err(e) => {
                    if matches!(e, LeaseError::StaleFencingToken { .. }) {
                        self.metrics.stale_fencing_token(pool.as_str(), "release");
                    }
                    return Err(lease_error(e));
                }
            }
        }
        Ok(None)
    }

    /// Publishes `event` through the scaler's outbox, without waiting (see
    /// `crate::orchestrator::pool_events`); inline when there is none.
    fn publish<E: Event>(&self, event: E) {
        match self.deps.scaler.outbox() {
            Some(outbox) => outbox.publish(event),
            None => {
                let bus = Arc::clone(&self.deps.bus);
                tokio::spawn(async move {
                    if let Err(e) = bus.publish_owned(event).await {
                        tracing::warn!(topic = E::TOPIC, error = %e, "could not publish an event");
                    }
                });
            }
        }
    }

    /// Releases, as failed, a lease whose caller had gone.
    async fn release_abandoned(&self, lease: Lease) {
        let now = self.deps.clock.now();
        let pool = &lease.pool_type;
        match self
            .deps
            .leases
            .release(pool, lease.lease_id, lease.fencing_token, false, now)
            .await
        {
            Ok(released) => {
                tracing::warn!(pool = %pool, lease = %lease.lease_id, processor = %lease.processor_id, "the caller of an acquire went away before its lease reached it: released the lease as failed");
                self.after_release(&released, now).await;
            }
            Err(e) => {
                tracing::warn!(pool = %pool, lease = %lease.lease_id, error = %e, "could not release the lease of a caller that went away: it ends at its expiry");
            }
        }
    }

    /// What follows every release: the `ProcessorReleasedEvent` (handed to the outbox:
    /// the answer does not wait for the bus, and a lost notification must not undo or
    /// fail the release), and the scaler woken when the worker was draining (it can be
    /// torn down now). Lower utilisation alone waits for the scaler's timer: scale-down
    /// waits out a stabilisation window anyway, and a woken pass reads every worker of
    /// every pool, so waking it on each release kept the scaler running back to back
    /// under load.
    async fn after_release(&self, released: &Released, now: Timestamp) {
        self.metrics.lease_released(released);
        self.publish(released.event(now));
        if released.worker.state == WorkerState::Draining {
            self.deps.scaler.wake();
        }
    }
}

/// A lease on its way from the acquiring task to its request. Dropped before
/// [`Handed::take`] (the request was dropped first, so the lease would reach nobody), it
/// releases the lease as failed from a task of its own.
struct Handed {
    lease: Option<Lease>,
    service: OrchestratorService,
}

impl Handed {
    fn new(service: &OrchestratorService, lease: Lease) -> Self {
        Handed {
            lease: Some(lease),
            service: service.clone(),
        }
    }

    /// The lease, now the caller's.
    fn take(mut self) -> Lease {
        self.lease
            .take()
            .expect("taken once: take consumes the guard")
    }
}

impl Drop for Handed {
    fn drop(&mut self) {
        let Some(lease) = self.lease.take() else {
            return;
        };
        let service = self.service.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move { service.release_abandoned(lease).await });
            }
            Err(_) => {
                tracing::warn!(lease = %lease.lease_id, "a lease reached nobody and no runtime is left to release it: it ends at its expiry");
            }
        }
    }
}

/// Workers in the order a scale-down removes them: idle ones (idle longest first), then
/// starting ones (newest first, least likely to be about to serve), then leased ones
/// (oldest first).
fn removal_order<'a>(workers: &[&'a Worker]) -> Vec<&'a Worker> {
    let rank = |w: &Worker| match w.state {
        WorkerState::Available => 0,
        WorkerState::Pending => 1,
        WorkerState::Leased | WorkerState::Draining => 2,
    };
    let mut out: Vec<&Worker> = workers.to_vec();
    out.sort_by(|a, b| {
        rank(a)
            .cmp(&rank(b))
            .then_with(|| match a.state {
                WorkerState::Pending => b.created_at.cmp(&a.created_at),
                _ => a
                    .idle_since
                    .cmp(&b.idle_since)
                    .then(a.created_at.cmp(&b.created_at)),
            })
            .then_with(|| a.processor_id.cmp(&b.processor_id))
    });
    out
}

fn saturating_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

mod drain;
mod renew;
#[cfg(test)]
mod tests;

//! Endpoint group `pools` (see the parent module for the conventions): the five
//! processing-pool endpoints (spec 8.18-8.22, 13) over the atomic lease store, with our
//! extensions: priority and bounded waiting on acquire, fencing tokens, 429 for an empty
//! pool (D3), scaling that starts and drains real workers within [min, max].

use std::sync::Arc;
use std::time::Duration;

use orchestrator_core::api::*;
use orchestrator_core::ports::bus::EventBusExt;
use orchestrator_pools::waiting::{DEFAULT_POLL_INTERVAL, wait_for_ticket};
use orchestrator_pools::{
    AcquireOutcome, AcquireRequest, Acquired, FencingToken, Lease, LeaseError, LeaseId, PoolStatus,
    PoolType, ScaleDecision, ScaleReason, Worker, WorkerState,
};

use super::ops_support::{lease_error, pool_type, validated};
use super::{Answer, OrchestratorService, ServiceError, ServiceResult};

/// Holder recorded on a lease when the request's metadata names none.
const DEFAULT_HOLDER: &str = "api";

/// 429: no worker could be leased (decision D3; upstream answered 500).
fn no_processor(message: impl Into<String>) -> ServiceError {
    ServiceError::new(429, message)
}

impl OrchestratorService {
    /// POST /orchestrator/processing-pool/acquire (spec 8.18, 13.4).
    ///
    /// One atomic store step leases an available worker (expired leases are reclaimed
    /// first). With nothing free, the caller waits up to `waitMs` in the pool's queue
    /// (higher `priority` first, then arrival) and gets 429 when the wait ends empty; an
    /// unconfigured pool is 429 too (no processor available). Every acquire is handed to
    /// the scaler, which starts workers at once when the pool queued, refused or went over
    /// its threshold. The answer carries the lease's fencing token. `metadata.holder`
    /// (a string), when present, names the holder on the lease.
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
        let acquired = match self.deps.leases.acquire(&pool, req, now).await {
            Ok(a) => a,
            Err(LeaseError::UnknownPool { .. }) => {
                return Err(no_processor(format!(
                    "no processor available: pool `{pool}` is not configured"
                )));
            }
            Err(e) => return Err(lease_error(e)),
        };
        self.scale_after_acquire(&pool, &acquired);

        let lease = match acquired.outcome {
            AcquireOutcome::Leased(lease) => lease,
            AcquireOutcome::Exhausted => {
                return Err(no_processor(format!(
                    "no processor available in pool `{pool}`"
                )));
            }
            AcquireOutcome::Queued(ticket) => {
                let clock = self.deps.clock.clone();
                let waited = wait_for_ticket(
                    self.deps.leases.as_ref(),
                    &ticket,
                    now + request.wait(),
                    DEFAULT_POLL_INTERVAL,
                    move || clock.now(),
                    tokio::time::sleep,
                )
                .await
                .map_err(lease_error)?;
                waited.ok_or_else(|| {
                    no_processor(format!(
                        "no processor available in pool `{pool}` within {} ms",
                        request.wait().as_millis()
                    ))
                })?
            }
        };
        self.wake_reaper_for(&lease);
        Ok(Answer::ok(AcquireProcessorResponse {
            processor_id: lease.processor_id.to_string(),
            app_id: lease.app_id.to_string(),
            lease_id: lease.lease_id.0,
            expires_at: lease.expires_at,
            fencing_token: lease.fencing_token.0,
        }))
    }

    /// POST /orchestrator/processing-pool/release (spec 8.19, 13.5).
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
        let store = &self.deps.leases;
        let pools = store.list_pools().await.map_err(lease_error)?;
        // Each attempt is one atomic step that changes nothing when refused, so trying the
        // pools in turn is safe and costs no read of a whole pool. An unfenced (upstream)
        // request learns the lease's token from the refusal and retries with it once.
        let given = request.fencing_token.map(FencingToken);
        let mut released = None;
        for pool in &pools {
            let token = given.unwrap_or(FencingToken(0));
            let attempt = match store
                .release(pool, lease_id, token, request.success, now)
                .await
            {
                Err(LeaseError::StaleFencingToken { current, .. }) if given.is_none() => {
                    store
                        .release(pool, lease_id, current, request.success, now)
                        .await
                }
                other => other,
            };
            match attempt {
                Ok(r) => {
                    released = Some(r);
                    break;
                }
                Err(LeaseError::UnknownLease { .. } | LeaseError::UnknownPool { .. }) => {}
                Err(e) => return Err(lease_error(e)),
            }
        }
        let released = released.ok_or_else(|| {
            ServiceError::not_found(format!(
                "lease {lease_id} not found (never granted, already released, or reclaimed after expiry)"
            ))
        })?;
        if let Err(e) = self.deps.bus.publish_event(&released.event(now)).await {
            // The release is done; a lost notification must not undo or fail it.
            tracing::warn!(lease = %lease_id, error = %e, "could not publish the processor release");
        }
        // A draining worker may now be torn down, and utilisation changed.
        self.deps.scaler.wake();
        Ok(Answer::ok(ReleaseProcessorResponse {
            processor_id: released.lease.processor_id.to_string(),
        }))
    }

    /// POST /orchestrator/processing-pool/status (spec 8.20, 13.7).
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
        }))
    }

    /// POST /orchestrator/processing-pool/scale (spec 8.21, 13.8).
    ///
    /// Sets the number of workers (those not already leaving) to `targetInstances` at
    /// once: new workers are registered and deployed (Pending until their first
    /// heartbeat, D9); surplus ones are drained idle-longest first, then starting ones.
    /// Leased workers are only chosen with `force`, and even then finish their job first
    /// (drained: never leased again, torn down on release) instead of being killed as
    /// upstream did; they count as scaled down. The target must lie within the pool's
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
            current_instances: i64::from(previous + up - down),
            scaled_up: i64::from(up),
            scaled_down: i64::from(down),
        }))
    }

    /// POST /orchestrator/processing-pool/cleanup (spec 8.22, 13.9).
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

    /// Hands the acquire to the scaler in the background: starting workers takes a
    /// backend call per worker, which neither a granted acquire nor a waiting one should
    /// sit behind (a waiter is served by the new worker's first heartbeat).
    fn scale_after_acquire(&self, pool: &PoolType, acquired: &Acquired) {
        let (scaler, pool, acquired) = (
            Arc::clone(&self.deps.scaler),
            pool.clone(),
            acquired.clone(),
        );
        tokio::spawn(async move {
            match scaler.after_acquire(&pool, &acquired).await {
                Ok(report) if !report.errors.is_empty() => {
                    tracing::warn!(pool = %pool, errors = ?report.errors, "scale-up after acquire had failures");
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(pool = %pool, error = %e, "scale-up after acquire failed"),
            }
        });
    }

    /// Wakes the lease reaper when `lease` is shorter than the default lease: the reaper
    /// sleeps until the earliest expiry it knew of (at most `LeaseCleanupIntervalSeconds`,
    /// below the default lease), so only a shorter lease can expire before its next pass.
    fn wake_reaper_for(&self, lease: &Lease) {
        let held_for: Duration = lease.expires_at.saturating_since(lease.acquired_at);
        if held_for < self.deps.settings.default_lease_timeout {
            self.deps.reaper.wake();
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

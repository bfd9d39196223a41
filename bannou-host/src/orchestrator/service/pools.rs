//! Endpoint group `pools` (see the parent module for the conventions): the five
//! processing-pool endpoints (docs/COMPATIBILITY.md#processing-pools) over the atomic lease
//! store, with our extensions: priority and bounded waiting on acquire, fencing tokens, 429
//! for an empty pool (D3), scaling that starts and drains real workers within [min, max].

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

/// 429: no worker could be leased (D3 (docs/DECISIONS.md#d3); upstream answered 500).
fn no_processor(message: impl Into<String>) -> ServiceError {
    ServiceError::new(429, message)
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
                return Err(lease_error(LeaseError::Unavailable {
                    message: "the acquiring task ended without an answer".to_owned(),
                }));
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
                Err(e) => return Err(lease_error(e)),
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
        self.metrics
            .lease_released(released.lease.pool_type.as_str(), released.success);
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures::StreamExt;
    use orchestrator_core::api::*;
    use orchestrator_core::events::ProcessorReleasedEvent;
    use orchestrator_core::ports::bus::EventBusExt;
    use orchestrator_pools::WorkerState;

    use super::super::testing::World;
    use super::super::{OrchestratorService, ServiceError};

    fn acquire_req(pool: &str, priority: i64, wait_ms: i64) -> AcquireProcessorRequest {
        AcquireProcessorRequest {
            priority,
            wait_ms,
            ..AcquireProcessorRequest::new(pool)
        }
    }

    async fn acquire(world: &World, pool: &str) -> AcquireProcessorResponse {
        let answer = world
            .service
            .acquire(AcquireProcessorRequest::new(pool))
            .await
            .unwrap();
        assert_eq!(answer.status, 200);
        answer.body
    }

    async fn release(
        world: &World,
        lease: &AcquireProcessorResponse,
    ) -> Result<String, ServiceError> {
        let mut request = ReleaseProcessorRequest::new(lease.lease_id);
        request.fencing_token = Some(lease.fencing_token);
        world
            .service
            .release(request)
            .await
            .map(|a| a.body.processor_id)
    }

    async fn status(world: &World, pool: &str) -> PoolStatusResponse {
        world
            .service
            .pool_status(GetPoolStatusRequest {
                pool_type: pool.to_owned(),
                include_metrics: true,
            })
            .await
            .unwrap()
            .body
    }

    async fn scale(
        service: &OrchestratorService,
        pool: &str,
        target: i64,
        force: bool,
    ) -> Result<ScalePoolResponse, ServiceError> {
        service
            .scale_pool(ScalePoolRequest {
                pool_type: pool.to_owned(),
                target_instances: target,
                force,
            })
            .await
            .map(|a| a.body)
    }

    fn spawn_acquire(
        world: &World,
        request: AcquireProcessorRequest,
    ) -> tokio::task::JoinHandle<Result<AcquireProcessorResponse, ServiceError>> {
        let service = world.service.clone();
        tokio::spawn(async move { service.acquire(request).await.map(|a| a.body) })
    }

    #[tokio::test(start_paused = true)]
    async fn acquire_and_release_round_trip_with_the_released_event() {
        let world = World::new().await;
        let pool = world.pool("assets", 1, 3).await;
        world.promote_workers(&pool).await;
        let worker = world.workers(&pool, WorkerState::Available).await[0].clone();
        let mut released = world
            .bus
            .subscribe_events::<ProcessorReleasedEvent>()
            .await
            .unwrap();

        let acquired_at = world.clock.now();
        let lease = acquire(&world, "assets").await;
        assert_eq!(lease.processor_id, worker.processor_id.to_string());
        assert_eq!(lease.app_id, worker.app_id.to_string());
        assert_eq!(
            lease.expires_at,
            world.clock.now() + Duration::from_secs(300)
        );
        assert!(lease.fencing_token > 0);

        world.settle().await;
        let busy = status(&world, "assets").await;
        assert_eq!(busy.busy_instances, 1);
        assert_eq!(busy.available_instances, 0);
        assert_eq!(
            busy.total_instances, 2,
            "the scaler started one more at once: the pool went over its threshold"
        );
        assert_eq!(busy.utilization, 0.5);
        assert_eq!((busy.min_instances, busy.max_instances), (1, 3));
        assert_eq!(busy.scale_up_threshold, 0.8);

        tokio::time::sleep(Duration::from_secs(2)).await;
        let held = world.clock.now().saturating_since(acquired_at);
        assert_eq!(release(&world, &lease).await.unwrap(), lease.processor_id);
        let event = released.next().await.unwrap().unwrap();
        assert_eq!(event.pool_type, "assets");
        assert_eq!(event.processor_id, lease.processor_id);
        assert!(event.success);
        assert_eq!(event.lease_duration_ms as u128, held.as_millis());

        let after = status(&world, "assets").await;
        assert_eq!(after.busy_instances, 0);
        let metrics = after.recent_metrics.unwrap();
        assert_eq!((metrics.jobs_completed_1h, metrics.jobs_failed_1h), (1, 0));
        assert_eq!(metrics.avg_processing_time_ms as u128, held.as_millis());
        assert!(metrics.last_scale_event.is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn an_empty_pool_answers_429_and_scales_up_at_once() {
        let world = World::new().await;
        let pool = world.pool("empty", 0, 1).await;
        let err = world
            .service
            .acquire(AcquireProcessorRequest::new("empty"))
            .await
            .unwrap_err();
        assert_eq!(err.status, 429);
        assert!(err.body.error.contains("no processor available"));
        world.settle().await;
        assert_eq!(
            world.workers(&pool, WorkerState::Pending).await.len(),
            1,
            "the refusal started a worker"
        );

        let unknown = world
            .service
            .acquire(AcquireProcessorRequest::new("nowhere"))
            .await
            .unwrap_err();
        assert_eq!(unknown.status, 429);
        let invalid = world
            .service
            .acquire(AcquireProcessorRequest::new(""))
            .await
            .unwrap_err();
        assert_eq!(
            (invalid.status, invalid.body.field.as_deref()),
            (400, Some("poolType"))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_acquire_is_served_when_a_worker_frees_up_else_429() {
        let world = World::new().await;
        let pool = world.pool("one", 1, 1).await;
        world.promote_workers(&pool).await;
        let first = acquire(&world, "one").await;

        let waiter = spawn_acquire(&world, acquire_req("one", 0, 5_000));
        world.settle().await;
        assert_eq!(status(&world, "one").await.queue_depth, 1);
        tokio::time::sleep(Duration::from_secs(1)).await;
        release(&world, &first).await.unwrap();
        let second = waiter.await.unwrap().unwrap();
        assert_eq!(second.processor_id, first.processor_id);
        assert!(second.fencing_token > first.fencing_token);

        let err = world
            .service
            .acquire(acquire_req("one", 0, 500))
            .await
            .unwrap_err();
        assert_eq!(err.status, 429);
        assert!(
            err.body.error.contains("within 500 ms"),
            "{}",
            err.body.error
        );
        assert_eq!(
            status(&world, "one").await.queue_depth,
            0,
            "no ticket left behind"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_whose_caller_went_away_leaves_the_queue_and_keeps_no_worker() {
        let world = World::new().await;
        let pool = world.pool("gone", 1, 1).await;
        world.promote_workers(&pool).await;
        let first = acquire(&world, "gone").await;

        // The caller goes away while it waits: the ticket leaves the queue at once,
        // not at its deadline a minute later.
        let waiter = spawn_acquire(&world, acquire_req("gone", 0, 60_000));
        world.settle().await;
        assert_eq!(status(&world, "gone").await.queue_depth, 1);
        waiter.abort();
        world.settle().await;
        assert_eq!(status(&world, "gone").await.queue_depth, 0);

        // The worker is handed to a waiter, whose caller goes away before hearing of
        // it: the worker is released (as failed), not kept leased to nobody.
        let waiter = spawn_acquire(&world, acquire_req("gone", 0, 60_000));
        world.settle().await;
        release(&world, &first).await.unwrap();
        waiter.abort();
        world.settle().await;
        let after = status(&world, "gone").await;
        assert_eq!(
            (
                after.busy_instances,
                after.available_instances,
                after.queue_depth
            ),
            (0, 1, 0),
            "the worker handed to the departed caller is free again"
        );
        let metrics = after.recent_metrics.unwrap();
        assert_eq!((metrics.jobs_completed_1h, metrics.jobs_failed_1h), (1, 1));
        // and a new caller gets it
        let again = acquire(&world, "gone").await;
        assert_eq!(again.processor_id, first.processor_id);
    }

    #[tokio::test(start_paused = true)]
    async fn a_release_wakes_the_scaler_only_to_tear_down_a_draining_worker() {
        let world = World::new().await;
        let pool = world.pool("wake", 1, 2).await;
        scale(&world.service, "wake", 2, false).await.unwrap();
        world.promote_workers(&pool).await;
        let scaler = world.service.deps().scaler.clone();
        let (stop, rx) = tokio::sync::watch::channel(false);
        let passes_loop = tokio::spawn(scaler.clone().run(rx));
        let a = acquire(&world, "wake").await;
        let b = acquire(&world, "wake").await;
        scale(&world.service, "wake", 1, true).await.unwrap();
        let draining = world.workers(&pool, WorkerState::Draining).await;
        assert_eq!(draining.len(), 1);
        let (leaving, staying) = if draining[0].processor_id.to_string() == a.processor_id {
            (&a, &b)
        } else {
            (&b, &a)
        };
        world.settle().await;

        let passes = scaler.periodic_passes();
        release(&world, staying).await.unwrap();
        world.settle().await;
        assert_eq!(
            scaler.periodic_passes(),
            passes,
            "an ordinary release leaves the scaler to its timer"
        );
        release(&world, leaving).await.unwrap();
        world.settle().await;
        assert_eq!(scaler.periodic_passes(), passes + 1);
        assert!(world.workers(&pool, WorkerState::Draining).await.is_empty());
        assert_eq!(world.backend.app_ids().len(), 1, "torn down at once");
        stop.send(true).unwrap();
        passes_loop.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_acquires_are_served_by_priority() {
        let world = World::new().await;
        let pool = world.pool("prio", 1, 1).await;
        world.promote_workers(&pool).await;
        let held = acquire(&world, "prio").await;

        let low = spawn_acquire(&world, acquire_req("prio", 0, 10_000));
        world.settle().await;
        let high = spawn_acquire(&world, acquire_req("prio", 5, 10_000));
        world.settle().await;

        release(&world, &held).await.unwrap();
        let high_lease = high.await.unwrap().unwrap();
        world.settle().await;
        assert!(!low.is_finished(), "the low-priority caller still waits");

        release(&world, &high_lease).await.unwrap();
        let low_lease = low.await.unwrap().unwrap();
        assert!(low_lease.fencing_token > high_lease.fencing_token);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stale_fencing_token_is_refused_and_changes_nothing() {
        let world = World::new().await;
        let pool = world.pool("fenced", 1, 1).await;
        world.promote_workers(&pool).await;
        let lease = acquire(&world, "fenced").await;

        let mut stale = ReleaseProcessorRequest::new(lease.lease_id);
        stale.fencing_token = Some(lease.fencing_token + 1);
        let err = world.service.release(stale).await.unwrap_err();
        assert_eq!(err.status, 409);
        assert_eq!(status(&world, "fenced").await.busy_instances, 1);

        release(&world, &lease).await.unwrap();
        let again = release(&world, &lease).await.unwrap_err();
        assert_eq!(again.status, 404);

        // Upstream clients send no token: the release is not fenced.
        let next = acquire(&world, "fenced").await;
        let mut failed = ReleaseProcessorRequest::new(next.lease_id);
        failed.success = false;
        world.service.release(failed).await.unwrap();
        let metrics = status(&world, "fenced").await.recent_metrics.unwrap();
        assert_eq!((metrics.jobs_completed_1h, metrics.jobs_failed_1h), (1, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn an_unknown_pool_reports_zeros() {
        let world = World::new().await;
        let s = status(&world, "nothing").await;
        assert_eq!(
            (
                s.total_instances,
                s.busy_instances,
                s.min_instances,
                s.max_instances
            ),
            (0, 0, 1, 5)
        );
        assert!(s.recent_metrics.is_none());
        let pool = world.pool("quiet", 1, 2).await;
        let without = world
            .service
            .pool_status(GetPoolStatusRequest {
                pool_type: pool.to_string(),
                include_metrics: false,
            })
            .await
            .unwrap()
            .body;
        assert_eq!(without.total_instances, 1);
        assert!(without.recent_metrics.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn scale_starts_and_drains_workers_within_limits() {
        let world = World::new().await;
        let pool = world.pool("scaled", 1, 4).await;
        let up = scale(&world.service, "scaled", 3, false).await.unwrap();
        assert_eq!(
            up,
            ScalePoolResponse {
                previous_instances: 1,
                current_instances: 3,
                scaled_up: 2,
                scaled_down: 0
            }
        );
        assert_eq!(world.workers(&pool, WorkerState::Pending).await.len(), 3);
        assert_eq!(world.backend.app_ids().len(), 3, "three worker containers");
        world.promote_workers(&pool).await;

        let down = scale(&world.service, "scaled", 1, false).await.unwrap();
        assert_eq!((down.scaled_down, down.current_instances), (2, 1));
        assert_eq!(world.backend.app_ids().len(), 1);

        let over = scale(&world.service, "scaled", 5, false).await.unwrap_err();
        assert_eq!(
            (over.status, over.body.field.as_deref()),
            (400, Some("targetInstances"))
        );
        let under = scale(&world.service, "scaled", 0, false).await.unwrap_err();
        assert_eq!(under.status, 400);
        let unknown = scale(&world.service, "ghost", 1, false).await.unwrap_err();
        assert_eq!(unknown.status, 404);
    }

    #[tokio::test(start_paused = true)]
    async fn busy_workers_are_only_drained_with_force_and_finish_their_job() {
        let world = World::new().await;
        let pool = world.pool("busy", 1, 2).await;
        scale(&world.service, "busy", 2, false).await.unwrap();
        world.promote_workers(&pool).await;
        let a = acquire(&world, "busy").await;
        let b = acquire(&world, "busy").await;

        let polite = scale(&world.service, "busy", 1, false).await.unwrap();
        assert_eq!((polite.scaled_down, polite.current_instances), (0, 2));

        let forced = scale(&world.service, "busy", 1, true).await.unwrap();
        assert_eq!((forced.scaled_down, forced.current_instances), (1, 1));
        let draining = world.workers(&pool, WorkerState::Draining).await;
        assert_eq!(draining.len(), 1);
        assert_eq!(world.backend.app_ids().len(), 2, "not killed mid-job");

        // Its holder hands it back; the scaler's next pass then tears it down.
        let holder = if draining[0].processor_id.to_string() == a.processor_id {
            &a
        } else {
            &b
        };
        release(&world, holder).await.unwrap();
        world.service.deps().scaler.evaluate(&pool).await.unwrap();
        assert!(world.workers(&pool, WorkerState::Draining).await.is_empty());
        assert_eq!(world.backend.app_ids().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn cleanup_removes_idle_workers_keeping_the_minimum_when_asked() {
        let world = World::new().await;
        let pool = world.pool("idle", 1, 4).await;
        scale(&world.service, "idle", 3, false).await.unwrap();
        world.promote_workers(&pool).await;

        let cleanup = |preserve_minimum| CleanupPoolRequest {
            pool_type: "idle".into(),
            preserve_minimum,
        };
        let kept = world
            .service
            .cleanup_pool(cleanup(true))
            .await
            .unwrap()
            .body;
        assert_eq!((kept.instances_removed, kept.current_instances), (2, 1));
        let none = world
            .service
            .cleanup_pool(cleanup(false))
            .await
            .unwrap()
            .body;
        assert_eq!((none.instances_removed, none.current_instances), (1, 0));
        assert!(world.backend.app_ids().is_empty());

        let unknown = world
            .service
            .cleanup_pool(CleanupPoolRequest {
                pool_type: "ghost".into(),
                preserve_minimum: true,
            })
            .await
            .unwrap()
            .body;
        assert_eq!(unknown, CleanupPoolResponse::default());
        let err = world
            .service
            .cleanup_pool(CleanupPoolRequest {
                pool_type: String::new(),
                preserve_minimum: true,
            })
            .await
            .unwrap_err();
        assert_eq!(err.status, 400);
    }
}

//! Unit tests of `orchestrator::service::pools`.

use crate::orchestrator::service::Outcome;
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

pub(super) async fn acquire(world: &World, pool: &str) -> AcquireProcessorResponse {
    let answer = world
        .service
        .acquire(AcquireProcessorRequest::new(pool))
        .await
        .unwrap();
    assert_eq!(answer.outcome, Outcome::Ok);
    answer.body
}

pub(super) async fn release(
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

pub(super) async fn status(world: &World, pool: &str) -> PoolStatusResponse {
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

pub(super) async fn scale(
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
    assert_eq!(err.status(), 429);
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
    assert_eq!(unknown.status(), 429);
    let invalid = world
        .service
        .acquire(AcquireProcessorRequest::new(""))
        .await
        .unwrap_err();
    assert_eq!(
        (invalid.status(), invalid.body.field.as_deref()),
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
    assert_eq!(err.status(), 429);
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
    assert_eq!(err.status(), 409);
    assert_eq!(status(&world, "fenced").await.busy_instances, 1);

    release(&world, &lease).await.unwrap();
    let again = release(&world, &lease).await.unwrap_err();
    assert_eq!(again.status(), 404);

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
        (over.status(), over.body.field.as_deref()),
        (400, Some("targetInstances"))
    );
    let under = scale(&world.service, "scaled", 0, false).await.unwrap_err();
    assert_eq!(under.status(), 400);
    let unknown = scale(&world.service, "ghost", 1, false).await.unwrap_err();
    assert_eq!(unknown.status(), 404);
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
    assert_eq!(err.status(), 400);
}

/// The value of one series in `world`'s metrics scrape.
pub(super) fn gauge(world: &World, series: &str) -> Option<f64> {
    orchestrator_core::testkit::scrape::value(&world.service.metrics().encode(), series)
}

#[tokio::test(start_paused = true)]
async fn a_release_moves_the_pool_gauges_without_waiting_for_the_next_acquire() {
    let world = World::new().await;
    let pool = world.pool("assets", 2, 2).await;
    world.promote_workers(&pool).await;
    let leased = r#"bannou_orchestrator_pool_workers{pool="assets",state="leased"}"#;
    let available = r#"bannou_orchestrator_pool_workers{pool="assets",state="available"}"#;
    let leases = r#"bannou_orchestrator_pool_active_leases{pool="assets"}"#;
    let lease = acquire(&world, "assets").await;
    world.settle().await;
    assert_eq!(
        (
            gauge(&world, leased),
            gauge(&world, available),
            gauge(&world, leases)
        ),
        (Some(1.0), Some(1.0), Some(1.0)),
        "set from the store's answer to the acquire"
    );
    release(&world, &lease).await.unwrap();
    assert_eq!(
        (
            gauge(&world, leased),
            gauge(&world, available),
            gauge(&world, leases)
        ),
        (Some(0.0), Some(2.0), Some(0.0)),
        "the released worker is counted available at once"
    );
}

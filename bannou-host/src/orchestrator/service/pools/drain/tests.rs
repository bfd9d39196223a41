//! Unit tests of `orchestrator::service::pools::drain`, and of drains by scale-down and
//! image updates (the scaler's `drain` path the endpoint shares).

use std::time::Duration;

use futures::StreamExt;
use orchestrator_core::api::*;
use orchestrator_core::ports::bus::EventBusExt;
use orchestrator_pools::{LeaseStore, PoolConfig, PoolSpec, WorkerState};

use super::super::super::testing::World;
use super::super::tests::{acquire, release, scale};
use crate::orchestrator::pool_events::{LeaseExpiredEvent, WorkerDrainingEvent};

fn drain_req(pool: &str, worker: Option<&str>, deadline_seconds: Option<i64>) -> DrainPoolRequest {
    DrainPoolRequest {
        processor_id: worker.map(str::to_owned),
        deadline_seconds,
        ..DrainPoolRequest::new(pool)
    }
}

/// The expiry of `lease` as the store holds it.
async fn expiry(world: &World, pool: &str, lease: &AcquireProcessorResponse) -> Option<String> {
    let pool = orchestrator_pools::PoolType::new(pool).unwrap();
    let status = world.leases.status(&pool, world.clock.now()).await.unwrap();
    status
        .leases
        .iter()
        .find(|l| l.lease_id.0 == lease.lease_id)
        .map(|l| l.expires_at.to_string())
}

#[tokio::test(start_paused = true)]
async fn a_drained_busy_worker_gets_no_new_lease_its_holder_is_told_and_it_stops_on_release() {
    let world = World::new().await;
    let pool = world.pool("brains", 2, 2).await;
    world.promote_workers(&pool).await;
    let mut told = world
        .bus
        .subscribe_events::<WorkerDrainingEvent>()
        .await
        .unwrap();
    let busy = acquire(&world, "brains").await;

    let drained = world
        .service
        .drain_pool(drain_req("brains", Some(&busy.app_id), Some(30)))
        .await
        .unwrap()
        .body;
    let deadline = world.clock.now() + Duration::from_secs(30);
    assert_eq!(drained.draining, vec![busy.app_id.clone()]);
    assert!(drained.removed.is_empty());
    assert_eq!(drained.deadline, Some(deadline));
    let event = told.next().await.unwrap().unwrap();
    assert_eq!(
        (
            event.pool_type.as_str(),
            event.processor_id.as_str(),
            event.lease_id.clone(),
            event.deadline,
            event.reason.as_str()
        ),
        (
            "brains",
            busy.processor_id.as_str(),
            busy.lease_id.to_string(),
            deadline,
            "drain"
        )
    );
    assert_eq!(
        expiry(&world, "brains", &busy).await,
        Some(deadline.to_string()),
        "the 300 s lease now ends at the 30 s deadline"
    );

    // No new lease goes to it: the other worker serves, then the pool is empty.
    let other = acquire(&world, "brains").await;
    assert_ne!(other.processor_id, busy.processor_id);
    release(&world, &other).await.unwrap();
    let again = acquire(&world, "brains").await;
    assert_eq!(again.processor_id, other.processor_id);

    // Released, the drained worker stops at the scaler's next pass.
    release(&world, &busy).await.unwrap();
    world.service.deps().scaler.evaluate(&pool).await.unwrap();
    let running: Vec<String> = world.running();
    assert!(!running.contains(&busy.app_id), "{running:?}");
    assert!(running.contains(&other.app_id), "{running:?}");
    assert!(world.workers(&pool, WorkerState::Draining).await.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_drained_worker_never_released_stops_at_the_deadline() {
    let world = World::new().await;
    let pool = world.pool("stuck", 1, 1).await;
    world.promote_workers(&pool).await;
    let mut expired = world
        .bus
        .subscribe_events::<LeaseExpiredEvent>()
        .await
        .unwrap();
    let busy = acquire(&world, "stuck").await;
    world
        .service
        .drain_pool(drain_req("stuck", Some(&busy.processor_id), Some(10)))
        .await
        .unwrap();

    let reaper = &world.service.deps().reaper;
    tokio::time::sleep(Duration::from_secs(9)).await;
    let (early, _) = reaper.reap().await.unwrap();
    assert!(early.is_empty(), "still within the deadline");
    assert!(world.running().contains(&busy.app_id));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (reclaimed, _) = reaper.reap().await.unwrap();
    assert_eq!(
        reclaimed.iter().map(|l| l.lease_id.0).collect::<Vec<_>>(),
        vec![busy.lease_id]
    );
    assert_eq!(
        expired.next().await.unwrap().unwrap().lease_id,
        busy.lease_id.to_string()
    );
    world.service.deps().scaler.evaluate(&pool).await.unwrap();
    assert!(
        !world.running().contains(&busy.app_id),
        "stopped after the deadline"
    );
    let late = release(&world, &busy).await.unwrap_err();
    assert_eq!(late.status(), 404, "the holder's lease is gone: {late}");
}

#[tokio::test(start_paused = true)]
async fn draining_a_whole_pool_stops_idle_workers_at_once_and_leaves_busy_ones_to_finish() {
    let world = World::new().await;
    let pool = world.pool("whole", 3, 3).await;
    world.promote_workers(&pool).await;
    let mut told = world
        .bus
        .subscribe_events::<WorkerDrainingEvent>()
        .await
        .unwrap();
    let busy = acquire(&world, "whole").await;
    world.settle().await;
    let running = world.running().len();

    let drained = world
        .service
        .drain_pool(drain_req("whole", None, None))
        .await
        .unwrap()
        .body;
    assert_eq!(drained.draining, vec![busy.app_id.clone()]);
    assert_eq!(drained.removed.len(), 2, "{drained:?}");
    assert_eq!(
        drained.deadline,
        Some(world.clock.now() + Duration::from_secs(300)),
        "ORCHESTRATOR_POOL_DRAIN_TIMEOUT_SECONDS by default"
    );
    assert_eq!(world.running().len(), running - 2);
    assert_eq!(
        told.next().await.unwrap().unwrap().lease_id,
        busy.lease_id.to_string()
    );

    let none = world
        .service
        .acquire(AcquireProcessorRequest::new("whole"))
        .await
        .unwrap_err();
    assert_eq!(
        none.status(),
        429,
        "no worker of the pool takes a new lease"
    );
    release(&world, &busy).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn drain_refuses_unknown_pools_and_workers() {
    let world = World::new().await;
    let pool = world.pool("known", 1, 1).await;
    world.promote_workers(&pool).await;
    let err = world
        .service
        .drain_pool(drain_req("unknown", None, None))
        .await
        .unwrap_err();
    assert_eq!(err.status(), 404, "{err}");
    let err = world
        .service
        .drain_pool(drain_req("known", Some("known-nobody"), None))
        .await
        .unwrap_err();
    assert_eq!(err.status(), 404, "{err}");
    assert!(err.to_string().contains("known-nobody"), "{err}");
    let err = world
        .service
        .drain_pool(drain_req("known", None, Some(0)))
        .await
        .unwrap_err();
    assert_eq!(err.status(), 400, "{err}");
    assert_eq!(world.workers(&pool, WorkerState::Available).await.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn scale_down_removes_idle_workers_first_and_drains_busy_ones_instead_of_stopping_them() {
    let world = World::new().await;
    let pool = world.pool("shrink", 3, 3).await;
    world.promote_workers(&pool).await;
    let mut told = world
        .bus
        .subscribe_events::<WorkerDrainingEvent>()
        .await
        .unwrap();
    let a = acquire(&world, "shrink").await;
    let b = acquire(&world, "shrink").await;
    let idle = world.workers(&pool, WorkerState::Available).await;
    assert_eq!(idle.len(), 1);

    // Limits [1, 3] need a lower minimum to go to 1.
    let mut spec = PoolSpec::named("shrink");
    spec.plugin = Some("asset".to_owned());
    spec.min_instances = 1;
    spec.max_instances = 3;
    world
        .leases
        .configure_pool(PoolConfig::new(spec).unwrap())
        .await
        .unwrap();
    let down = scale(&world.service, "shrink", 1, true).await.unwrap();
    assert_eq!((down.scaled_down, down.current_instances), (2, 1));
    let running = world.running();
    assert!(
        !running.contains(&idle[0].app_id.to_string()),
        "the idle worker goes first: {running:?}"
    );
    assert!(
        running.contains(&a.app_id) && running.contains(&b.app_id),
        "busy workers are not stopped mid-job: {running:?}"
    );
    let draining = world.workers(&pool, WorkerState::Draining).await;
    assert_eq!(draining.len(), 1);
    let event = told.next().await.unwrap().unwrap();
    assert_eq!(event.reason, "scale-down");
    assert_eq!(event.processor_id, draining[0].processor_id.to_string());
    assert_eq!(world.workers(&pool, WorkerState::Leased).await.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn an_image_update_replaces_workers_draining_the_busy_ones() {
    let world = World::new().await;
    let pool = world.pool("imaged", 2, 3).await;
    world.promote_workers(&pool).await;
    let mut told = world
        .bus
        .subscribe_events::<WorkerDrainingEvent>()
        .await
        .unwrap();
    let busy = acquire(&world, "imaged").await;
    world.settle().await;
    let old: Vec<String> = world.running();

    let mut spec = PoolSpec::named("imaged");
    spec.plugin = Some("asset".to_owned());
    spec.min_instances = 2;
    spec.max_instances = 3;
    spec.image = Some("reg/bannou:2".to_owned());
    let report = world
        .service
        .deps()
        .scaler
        .deploy_pool(PoolConfig::new(spec).unwrap())
        .await
        .unwrap();
    assert_eq!(report.draining.len(), 1, "{report:?}");
    assert_eq!(report.draining[0].to_string(), busy.app_id);
    assert!(!report.started.is_empty(), "{report:?}");
    for app in &report.started {
        let node = world.backend.node(app).expect("started");
        assert_eq!(node.deployment.image, "reg/bannou:2");
    }
    let running = world.running();
    assert!(
        running.contains(&busy.app_id),
        "the busy worker finishes its job"
    );
    assert!(
        old.iter()
            .filter(|a| **a != busy.app_id)
            .all(|a| !running.contains(a)),
        "idle old workers are gone: {old:?} -> {running:?}"
    );
    let event = told.next().await.unwrap().unwrap();
    assert_eq!(
        (event.reason.as_str(), event.lease_id),
        ("image-update", busy.lease_id.to_string())
    );
    let unchanged = world
        .service
        .deps()
        .scaler
        .deploy_pool(world.leases.pool_config(&pool).await.unwrap())
        .await
        .unwrap();
    assert!(
        unchanged.draining.is_empty() && unchanged.removed.is_empty(),
        "the same image again replaces nothing: {unchanged:?}"
    );
}

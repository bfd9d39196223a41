//! The heartbeat pipeline over Redis Streams survives a Redis restart: kill -9 the server
//! while heartbeats flow, start it again on the same port, and the pipeline resumes by
//! itself until the aggregator's view is current again. Real Redis, real time, bounded.

use std::sync::Arc;
use std::time::Duration;

use bannou_host::clock::TokioClock;
use bannou_host::orchestrator::heartbeats::{HealthState, HeartbeatPipeline, SharedHealth};
use orchestrator_backends::redis::bus::{RedisBus, RedisBusConfig};
use orchestrator_backends::redis::connection::{RedisConfig, RedisConnection};
use orchestrator_backends::redis::server::RedisServer;
use orchestrator_core::events::{ServiceHealthStatus, ServiceHeartbeatEvent};
use orchestrator_core::health::{HealthConfig, HeartbeatAggregator};
use orchestrator_core::ports::bus::{EventBus, EventBusExt};
use orchestrator_core::time::Clock;
use orchestrator_core::{AppId, Timestamp};
use orchestrator_routing::RoutingTable;
use tokio::sync::watch;
use tokio::time::{Instant, sleep, timeout};
use uuid::Uuid;

const INSTANCES: usize = 20;

fn heartbeat(i: usize, instance: Uuid) -> ServiceHeartbeatEvent {
    let services = (0..10).map(|k| (format!("svc-{i}-{k}"), ServiceHealthStatus::Healthy));
    ServiceHeartbeatEvent::new(
        instance,
        AppId::from(format!("node-{i}")),
        Timestamp::from_unix_millis(0),
        services,
    )
}

/// Newest `last_seen` over every tracked instance of `svc-{i}-0`, and how many instances report.
fn view(health: &SharedHealth) -> (usize, Option<Timestamp>) {
    let state = health.lock();
    let mut reporting = 0;
    let mut oldest: Option<Timestamp> = None;
    for i in 0..INSTANCES {
        if let Some(inst) = state.aggregator.instances_of(&format!("svc-{i}-0")).first() {
            reporting += 1;
            oldest = Some(oldest.map_or(inst.last_seen, |o| o.min(inst.last_seen)));
        }
    }
    (reporting, oldest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_resumes_after_redis_is_killed_and_restarted() {
    let Some(mut server) =
        RedisServer::for_test("pipeline_resumes_after_redis_is_killed_and_restarted")
    else {
        return;
    };
    let conn = RedisConnection::connect(RedisConfig::new(server.url()))
        .await
        .unwrap();
    let bus: Arc<dyn EventBus> = Arc::new(RedisBus::new(
        conn,
        RedisBusConfig::with_prefix("pipeline-test"),
    ));
    let clock: Arc<dyn Clock> = Arc::new(TokioClock::system());
    let health = SharedHealth::new(HealthState {
        aggregator: HeartbeatAggregator::new(HealthConfig::default()),
        routing: RoutingTable::default(),
    });
    let pipeline = Arc::new(HeartbeatPipeline::new(health.clone(), clock.clone(), 80));
    let (stop, rx) = watch::channel(false);
    let consumer = tokio::spawn({
        let (p, bus) = (pipeline.clone(), bus.clone());
        async move { p.run(bus.as_ref(), rx).await }
    });
    sleep(Duration::from_millis(100)).await;

    // Twenty instances heartbeat every 50 ms; failed publishes during the outage are counted.
    let publisher = tokio::spawn({
        let (bus, mut stop) = (bus.clone(), stop.subscribe());
        async move {
            let ids: Vec<Uuid> = (0..INSTANCES).map(|_| Uuid::new_v4()).collect();
            let (mut ok, mut failed) = (0u64, 0u64);
            while !*stop.borrow() {
                for (i, id) in ids.iter().enumerate() {
                    match bus.publish_event(&heartbeat(i, *id)).await {
                        Ok(()) => ok += 1,
                        Err(_) => failed += 1,
                    }
                }
                tokio::select! { _ = sleep(Duration::from_millis(50)) => {}, _ = stop.changed() => {} }
            }
            (ok, failed)
        }
    });

    let wait_until = |cond: Box<dyn Fn() -> bool + Send>, what: &'static str| async move {
        let deadline = Instant::now() + Duration::from_secs(15);
        while !cond() {
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            sleep(Duration::from_millis(20)).await;
        }
    };
    let h = health.clone();
    wait_until(
        Box::new(move || view(&h).0 == INSTANCES),
        "every instance reported",
    )
    .await;
    println!("before the outage: {:?}", pipeline.stats().snapshot());

    server.kill();
    let killed_at = clock.now();
    sleep(Duration::from_millis(700)).await;
    server.restart().unwrap();
    let restarted_at = clock.now();

    // Converged: every instance has been seen again after the restart.
    let h = health.clone();
    wait_until(
        Box::new(move || view(&h).1.is_some_and(|oldest| oldest > restarted_at)),
        "every instance was heard from after the restart",
    )
    .await;
    let caught_up = clock.now().saturating_since(restarted_at);
    let counts = pipeline.stats().snapshot();
    stop.send(true).unwrap();
    let (ok, failed) = timeout(Duration::from_secs(5), publisher)
        .await
        .unwrap()
        .unwrap();
    timeout(Duration::from_secs(5), consumer)
        .await
        .expect("the pipeline stops on shutdown")
        .unwrap()
        .unwrap();

    println!(
        "outage {:?}; caught up {caught_up:?} after the restart; published {ok}, failed during the outage {failed}; pipeline {counts:?}",
        restarted_at.saturating_since(killed_at)
    );
    assert!(
        failed > 0,
        "publishing during the outage fails (fast) instead of hanging"
    );
    assert_eq!(counts.malformed, 0);
    let (reporting, _) = view(&health);
    assert_eq!(reporting, INSTANCES, "no instance lost from the view");
}

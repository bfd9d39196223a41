use std::sync::Arc;
use std::time::Duration;

use orchestrator_core::events::{ServiceHealthStatus, ServiceHeartbeatEvent};
use orchestrator_core::health::{HealthConfig, HeartbeatAggregator};
use orchestrator_core::memory::bus::InMemoryBus;
use orchestrator_core::{AppId, Timestamp};
use orchestrator_routing::RoutingTable;
use uuid::Uuid;

use super::*;
use crate::clock::TokioClock;
use crate::orchestrator::heartbeats::HealthState;

fn health() -> SharedHealth {
    SharedHealth::new(HealthState {
        aggregator: HeartbeatAggregator::new(HealthConfig::default()),
        routing: RoutingTable::new(AppId::control_plane()),
    })
}

fn clock() -> Arc<dyn Clock> {
    Arc::new(TokioClock::starting_at(Timestamp::from_unix_millis(
        1_780_000_000_000,
    )))
}

/// A heartbeat of instance `id` of `app` reporting mappings `version` (if any).
fn beat(id: Uuid, app: &str, version: Option<i64>, clock: &dyn Clock) -> ServiceHeartbeatEvent {
    let mut hb = ServiceHeartbeatEvent::new(
        id,
        AppId::new(app),
        clock.now(),
        [("auth", ServiceHealthStatus::Healthy)],
    );
    hb.metadata = version.map(
        |v| serde_json::json!({ orchestrator_routing::resolver::ROUTING_VERSION_METADATA_KEY: v }),
    );
    hb
}

fn ingest(health: &SharedHealth, hb: &ServiceHeartbeatEvent, clock: &dyn Clock) {
    health.lock().aggregator.ingest(hb, clock.now());
    health.notify_changed();
}

fn ack(id: Uuid, app: &str, version: i64) -> MappingsAppliedEvent {
    MappingsAppliedEvent {
        app_id: AppId::new(app),
        service_id: id,
        version,
        timestamp: Timestamp::from_unix_millis(1_780_000_000_000),
    }
}

#[tokio::test(start_paused = true)]
async fn an_acknowledgement_raises_a_nodes_version_and_a_heartbeat_never_lowers_it() {
    let (health, clock) = (health(), clock());
    let id = Uuid::new_v4();
    ingest(
        &health,
        &beat(id, "node-a", Some(3), clock.as_ref()),
        clock.as_ref(),
    );
    record_ack(&health, &ack(id, "node-a", 5));
    let applied = |h: &SharedHealth| h.lock().aggregator.applied_mappings(clock.now());
    assert_eq!(applied(&health), vec![(AppId::new("node-a"), Some(5))]);
    // A beat sent before the node applied 5, arriving after its acknowledgement.
    ingest(
        &health,
        &beat(id, "node-a", Some(4), clock.as_ref()),
        clock.as_ref(),
    );
    assert_eq!(applied(&health), vec![(AppId::new("node-a"), Some(5))]);
    // An acknowledgement of an instance no heartbeat announced, or under another app-id,
    // makes no consumer.
    record_ack(&health, &ack(Uuid::new_v4(), "node-b", 9));
    record_ack(&health, &ack(id, "node-c", 9));
    assert_eq!(applied(&health), vec![(AppId::new("node-a"), Some(5))]);
    // A node that falls silent past the heartbeat timeout is no longer listed.
    tokio::time::advance(HealthConfig::default().heartbeat_timeout + Duration::from_secs(1)).await;
    assert_eq!(applied(&health), vec![]);
}

#[tokio::test(start_paused = true)]
async fn the_wait_ends_on_the_acknowledgement_and_leaves_out_stopping_and_silent_nodes() {
    let (health, clock) = (health(), clock());
    let bus = Arc::new(InMemoryBus::new());
    let (stop, rx) = watch::channel(false);
    let follower = tokio::spawn({
        let (bus, health) = (bus.clone(), health.clone());
        async move { follow_acks(bus.as_ref(), health, rx).await }
    });
    tokio::task::yield_now().await;
    let (a, old, upstream) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    ingest(
        &health,
        &beat(a, "node-a", Some(1), clock.as_ref()),
        clock.as_ref(),
    );
    ingest(
        &health,
        &beat(old, "node-old", Some(1), clock.as_ref()),
        clock.as_ref(),
    );
    // Upstream's nodes report no version: no one can wait for them.
    ingest(
        &health,
        &beat(upstream, "upstream", None, clock.as_ref()),
        clock.as_ref(),
    );

    let stopping = [AppId::new("NODE-OLD")];
    let wait = tokio::spawn({
        let (health, clock) = (health.clone(), clock.clone());
        async move {
            wait_for_consumers(
                &health,
                clock.as_ref(),
                2,
                &stopping,
                Duration::from_secs(10),
            )
            .await
        }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!wait.is_finished(), "node-a has not applied version 2 yet");
    bus.publish_event(&ack(a, "node-a", 2)).await.unwrap();
    let done = wait.await.unwrap();
    assert!(done.acknowledged(), "{done:?}");

    // Nobody acknowledges 3: the timeout ends the wait, naming the laggard.
    let timed_out =
        wait_for_consumers(&health, clock.as_ref(), 3, &[], Duration::from_secs(2)).await;
    assert_eq!(
        timed_out.laggards,
        vec![
            NodeMappingsVersion {
                app_id: "node-a".into(),
                applied_version: 2
            },
            NodeMappingsVersion {
                app_id: "node-old".into(),
                applied_version: 1
            },
        ]
    );
    assert!(timed_out.waited >= Duration::from_secs(2), "{timed_out:?}");
    stop.send(true).unwrap();
    follower.await.unwrap().unwrap();
}

#[tokio::test]
async fn laggards_are_collected_once_per_node_in_the_scope_only() {
    let lag = |app: &str, v| NodeMappingsVersion {
        app_id: app.into(),
        applied_version: v,
    };
    note_laggards(&[lag("outside", 1)]);
    let ((), laggards) = collecting(async {
        note_laggards(&[lag("b", 4), lag("a", 2)]);
        note_laggards(&[lag("b", 3)]);
    })
    .await;
    assert_eq!(laggards, vec![lag("a", 2), lag("b", 3)]);
}

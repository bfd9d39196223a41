//! Routing acknowledgements at the use-case level (D58): a change that moves routes away
//! from nodes and then stops them waits for the live consumers, over the in-memory world
//! (paused time). The consumer is played by hand (its heartbeats and acknowledgements are
//! sent, delayed or withheld by the test) or is a real in-process node following the
//! mappings.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::StreamExt;
use orchestrator_core::AppId;
use orchestrator_core::api::*;
use orchestrator_core::events::{
    FullServiceMappingsEvent, MappingsAppliedEvent, ServiceHealthStatus, ServiceHeartbeatEvent,
};
use orchestrator_core::ports::bus::{EventBusExt, EventSubscription};
use orchestrator_core::ports::store::OrchestratorStore;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::control_events::ControlEvent;
use crate::orchestrator::service::ServiceResult;
use crate::orchestrator::service::testing::{World, topology};

/// A world whose deployed nodes heartbeat every 100 ms (they report no mappings version,
/// so they are no consumers anyone waits for), with `ack_timeout`.
async fn world(ack_timeout: Duration) -> World {
    let world = World::with_settings(|s| s.routing_ack_timeout = ack_timeout).await;
    world.auto_heartbeats(Duration::from_millis(100));
    world
}

async fn deploy(world: &World, nodes: &[(&str, &[&str])]) {
    let answer = world.service.deploy(topology(nodes)).await.unwrap();
    assert!(answer.body.success, "{:?}", answer.body.warnings);
}

/// A node that follows the mappings, played by the test: it reports what it applied only
/// when told to.
struct Consumer {
    id: Uuid,
    app: AppId,
}

impl Consumer {
    fn new(app: &str) -> Consumer {
        Consumer {
            id: Uuid::new_v4(),
            app: AppId::new(app),
        }
    }

    /// A heartbeat reporting `version` applied.
    async fn beat(&self, world: &World, version: i64) {
        let mut hb = ServiceHeartbeatEvent::new(
            self.id,
            self.app.clone(),
            world.clock.now(),
            [("account", ServiceHealthStatus::Healthy)],
        );
        hb.metadata = Some(serde_json::json!({
            orchestrator_routing::resolver::ROUTING_VERSION_METADATA_KEY: version
        }));
        world.bus.publish_event(&hb).await.unwrap();
        world.settle().await;
    }

    /// The acknowledgement a node sends on the bus right after applying `version`.
    async fn ack(&self, world: &World, version: i64) {
        let ack = MappingsAppliedEvent {
            app_id: self.app.clone(),
            service_id: self.id,
            version,
            timestamp: world.clock.now(),
        };
        world.bus.publish_event(&ack).await.unwrap();
    }
}

/// A topology update of one change.
fn change(change: serde_json::Value) -> TopologyUpdateRequest {
    serde_json::from_value(serde_json::json!({ "changes": [change] })).unwrap()
}

/// Runs a use case in a task of its own, so the test can look while it waits.
fn spawn<T: Send + 'static>(
    f: impl std::future::Future<Output = ServiceResult<T>> + Send + 'static,
) -> JoinHandle<ServiceResult<T>> {
    tokio::spawn(f)
}

/// Waits (in steps of 10 ms of paused time, at most 3 s) until the last mappings published
/// send `service` to `app` (`None`: to the default), and returns their version.
async fn routes_published(
    events: &mut EventSubscription<FullServiceMappingsEvent>,
    service: &str,
    app: Option<&str>,
) -> i64 {
    let mut seen = Vec::new();
    for _ in 0..300 {
        seen.extend(World::drain(events));
        if let Some(last) = seen.iter().max_by_key(|e| e.version)
            && last.mappings.get(service).map(String::as_str) == app
        {
            return last.version;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{service} never published as routed to {app:?}: {seen:?}");
}

#[tokio::test(start_paused = true)]
async fn a_teardown_stops_the_old_node_only_once_the_consumer_acknowledged_the_new_routes() {
    let world = world(Duration::from_secs(10)).await;
    deploy(&world, &[("n1", &["auth"])]).await;
    assert_eq!(world.route("auth"), "n1");
    let consumer = Consumer::new("consumer");
    consumer
        .beat(&world, world.store.mappings_version().await.unwrap())
        .await;
    let mut mappings = world.bus.subscribe_events().await.unwrap();

    let service = world.service.clone();
    let teardown = spawn(async move { service.teardown(TeardownRequest::default()).await });
    let version = routes_published(&mut mappings, "auth", None).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        world.running().contains(&"n1".to_owned()),
        "n1 stopped before the consumer applied version {version}"
    );
    assert!(!teardown.is_finished());

    // The acknowledgement alone (no heartbeat reports the version) ends the wait.
    consumer.ack(&world, version).await;
    let answer = teardown.await.unwrap().unwrap();
    assert!(!world.running().contains(&"n1".to_owned()));
    assert_eq!(answer.body.routing_laggards, None, "{:?}", answer.body);
    assert_eq!(answer.body.errors, None);
}

#[tokio::test(start_paused = true)]
async fn a_replacing_deploy_stops_the_old_node_after_the_acknowledgement_of_the_switch() {
    let world = world(Duration::from_secs(10)).await;
    deploy(&world, &[("n1", &["auth"])]).await;
    let consumer = Consumer::new("consumer");
    consumer
        .beat(&world, world.store.mappings_version().await.unwrap())
        .await;
    let mut mappings = world.bus.subscribe_events().await.unwrap();

    let service = world.service.clone();
    let replacing = spawn(async move { service.deploy(topology(&[("n2", &["auth"])])).await });
    let version = routes_published(&mut mappings, "auth", Some("n2")).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        world.running(),
        ["n1", "n2"],
        "n1 must outlive the switch's acknowledgement"
    );
    assert!(!replacing.is_finished());

    // A heartbeat reporting the version counts as much as an acknowledgement (upstream's
    // nodes send only heartbeats; ours send both).
    consumer.beat(&world, version).await;
    let answer = replacing.await.unwrap().unwrap();
    assert!(answer.body.success, "{:?}", answer.body.warnings);
    assert_eq!(answer.body.routing_laggards, None);
    assert_eq!(world.running(), ["n2"]);
    assert_eq!(world.route("auth"), "n2");
}

#[tokio::test(start_paused = true)]
async fn a_consumer_that_never_acknowledges_is_named_and_the_teardown_proceeds_after_the_timeout() {
    let world = world(Duration::from_secs(2)).await;
    deploy(&world, &[("n1", &["auth"])]).await;
    let before = world.store.mappings_version().await.unwrap();
    let silent = Consumer::new("silent");
    silent.beat(&world, before).await;
    // A fresh heartbeat keeps the consumer live throughout; it never reports the new
    // version.
    let mut control = world.bus.subscribe_events::<ControlEvent>().await.unwrap();

    let answer = world
        .service
        .teardown(TeardownRequest::default())
        .await
        .unwrap();

    assert!(!world.running().contains(&"n1".to_owned()), "it proceeds");
    assert_eq!(
        answer.body.routing_laggards,
        Some(vec![NodeMappingsVersion {
            app_id: "silent".into(),
            applied_version: before,
        }])
    );
    let json = serde_json::to_value(&answer.body).unwrap();
    assert_eq!(json["routingLaggards"][0]["appId"], "silent", "{json}");
    world.settle().await;
    let timeouts: Vec<ControlEvent> = World::drain(&mut control)
        .into_iter()
        .filter(|e| matches!(e, ControlEvent::RoutingAckTimeout { .. }))
        .collect();
    let [
        ControlEvent::RoutingAckTimeout {
            laggards,
            stopping,
            waited_ms,
            version,
            ..
        },
    ] = timeouts.as_slice()
    else {
        panic!("one ack-timeout event expected: {timeouts:?}");
    };
    assert_eq!(laggards[0].app_id, "silent");
    assert!(*version > before);
    assert_eq!(stopping, &["n1".to_owned()]);
    assert!(*waited_ms >= 2000, "{waited_ms}");
    let metrics = world.service.metrics().encode();
    assert!(
        metrics.contains("bannou_orchestrator_routing_ack_timeouts_total 1"),
        "{metrics}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_node_about_to_stop_and_a_node_that_went_silent_are_not_waited_for() {
    let world = world(Duration::from_secs(30)).await;
    deploy(&world, &[("n1", &["auth"])]).await;
    let version = world.store.mappings_version().await.unwrap();
    // n1 itself follows the mappings: it is stopping, so nobody waits for it.
    let n1 = Consumer {
        id: Uuid::new_v4(),
        app: AppId::new("N1"),
    };
    n1.beat(&world, version - 1).await;
    // A consumer last heard from longer ago than the heartbeat timeout is not live.
    let gone = Consumer::new("gone");
    gone.beat(&world, version - 1).await;
    tokio::time::sleep(world.service.deps().settings.heartbeat_timeout + Duration::from_secs(1))
        .await;
    n1.beat(&world, version - 1).await;

    // Were either waited for, the timeout would end the wait and name it.
    let answer = world
        .service
        .teardown(TeardownRequest::default())
        .await
        .unwrap();
    assert_eq!(answer.body.routing_laggards, None);
    assert!(!world.running().contains(&"n1".to_owned()));
}

#[tokio::test(start_paused = true)]
async fn a_remove_node_and_a_move_service_wait_for_the_consumers_too() {
    let world = world(Duration::from_secs(10)).await;
    let consumer = Consumer::new("consumer");
    consumer
        .beat(&world, world.store.mappings_version().await.unwrap())
        .await;
    let add = change(serde_json::json!(
        {"action": "add-node", "nodeName": "a", "services": ["auth"], "nodeConfig": {"name": "a"}}
    ));
    world.service.update_topology(add).await.unwrap();
    world.settle().await;
    assert_eq!(world.route("auth"), "bannou-auth-a");
    consumer
        .ack(&world, world.store.mappings_version().await.unwrap())
        .await;
    let mut mappings = world.bus.subscribe_events().await.unwrap();

    let remove = change(serde_json::json!(
        {"action": "remove-node", "nodeName": "a", "services": ["auth"]}
    ));
    let service = world.service.clone();
    let removing = spawn(async move { service.update_topology(remove).await });
    let version = routes_published(&mut mappings, "auth", None).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(world.running().contains(&"bannou-auth-a".to_owned()));
    consumer.ack(&world, version).await;
    let answer = removing.await.unwrap().unwrap();
    assert!(answer.body.applied_changes[0].success, "{:?}", answer.body);
    assert!(!world.running().contains(&"bannou-auth-a".to_owned()));
    assert_eq!(answer.body.routing_laggards, None);

    // move-service answers once the consumers follow the move.
    let moved = change(serde_json::json!(
        {"action": "move-service", "nodeName": "b", "services": ["auth"]}
    ));
    let service = world.service.clone();
    let moving = spawn(async move { service.update_topology(moved).await });
    let version = routes_published(&mut mappings, "auth", Some("bannou-auth-b")).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !moving.is_finished(),
        "move-service answered before the consumer followed"
    );
    consumer.ack(&world, version).await;
    let answer = moving.await.unwrap().unwrap();
    assert!(answer.body.applied_changes[0].success, "{:?}", answer.body);
}

/// A real in-process node follows the mappings and acknowledges on the bus; its
/// heartbeats come every 30 s. The teardown ends on the acknowledgement: before any of
/// its heartbeats reported the version the teardown published.
#[tokio::test(start_paused = true)]
async fn a_real_nodes_bus_acknowledgement_ends_the_wait_before_its_next_heartbeat() {
    use crate::plugins::node::{Node, NodeConfig};
    let world = world(Duration::from_secs(60)).await;
    let environment: std::collections::BTreeMap<String, String> = [
        ("BANNOU_APP_ID", "consumer"),
        ("BANNOU_SERVICES_ENABLED", "false"),
        ("ACCOUNT_SERVICE_ENABLED", "true"),
        ("BANNOU_HEARTBEAT_INTERVAL_SECONDS", "30"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let node = Node::builder(
        NodeConfig::from_environment(environment).unwrap(),
        world.bus.clone(),
        Arc::new(crate::mesh::InProcessDirectory::new()),
    )
    .clock(world.clock.clone())
    .start()
    .await
    .unwrap();
    // Every heartbeat of the node, with the version it reported.
    let reported: Arc<Mutex<Vec<Option<i64>>>> = Arc::default();
    let mut beats = world
        .bus
        .subscribe_events::<ServiceHeartbeatEvent>()
        .await
        .unwrap();
    let recorder = tokio::spawn({
        let reported = reported.clone();
        async move {
            while let Some(Ok(hb)) = beats.next().await {
                if hb.app_id.as_str() == "consumer" {
                    reported
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(orchestrator_routing::resolver::reported_routing_version(
                            &hb,
                        ));
                }
            }
        }
    });
    world.settle().await;
    deploy(&world, &[("n1", &["auth"])]).await;
    // The node applied the deploy's table and said so on the bus: a consumer now.
    let mut deployed = 0;
    for _ in 0..100 {
        deployed = world.store.mappings_version().await.unwrap();
        if node.routing_version() == Some(deployed) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(node.routing_version(), Some(deployed));
    let live = world
        .service
        .service_routing(GetServiceRoutingRequest::default())
        .await
        .unwrap()
        .body;
    assert_eq!(
        live.node_versions,
        Some(vec![NodeMappingsVersion {
            app_id: "consumer".into(),
            applied_version: deployed,
        }]),
        "the acknowledgement made the node a consumer before any heartbeat reported a version"
    );

    let answer = world
        .service
        .teardown(TeardownRequest::default())
        .await
        .unwrap();
    let torn_down = world.store.mappings_version().await.unwrap();
    assert_eq!(answer.body.routing_laggards, None);
    assert!(!world.running().contains(&"n1".to_owned()));
    assert_eq!(node.routing_version(), Some(torn_down));
    let seen = reported
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    assert!(
        seen.iter().all(|v| v.is_none_or(|v| v < torn_down)),
        "the wait ended before any heartbeat reported version {torn_down}: {seen:?}"
    );
    node.stop().await;
    recorder.abort();
}

fn split(targets: &[(&str, u32)]) -> orchestrator_routing::WeightedTargets {
    orchestrator_routing::WeightedTargets::new(targets.iter().map(|(a, w)| (AppId::from(*a), *w)))
        .unwrap()
}

/// Waits (paused time, at most 3 s) until the last mappings published carry `weights` for
/// `service` (`None`: no split), and returns that event.
async fn weights_published(
    events: &mut EventSubscription<FullServiceMappingsEvent>,
    service: &str,
    weights: Option<serde_json::Value>,
) -> FullServiceMappingsEvent {
    let mut seen = Vec::new();
    for _ in 0..300 {
        seen.extend(World::drain(events));
        if let Some(last) = seen.iter().max_by_key(|e| e.version)
            && last
                .weighted_mappings
                .get(service)
                .map(|w| serde_json::to_value(w).unwrap())
                == weights
        {
            return last.clone();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{service} never published with weights {weights:?}: {seen:?}");
}

#[tokio::test(start_paused = true)]
async fn weights_of_several_services_change_in_one_version_and_wait_for_the_consumer() {
    let world = world(Duration::from_secs(10)).await;
    deploy(&world, &[("n1", &["auth", "chat"]), ("n2", &["account"])]).await;
    let consumer = Consumer::new("consumer");
    consumer
        .beat(&world, world.store.mappings_version().await.unwrap())
        .await;
    let mut mappings = world.bus.subscribe_events().await.unwrap();

    let service = world.service.clone();
    let set = spawn(async move {
        service
            .set_route_weights(&[
                ("auth".to_owned(), Some(split(&[("n1", 90), ("n2", 10)]))),
                ("Chat".to_owned(), Some(split(&[("n1", 50), ("n2", 50)]))),
            ])
            .await
    });
    let event = weights_published(
        &mut mappings,
        "auth",
        Some(serde_json::json!([{"appId": "n1", "weight": 90}, {"appId": "n2", "weight": 10}])),
    )
    .await;
    assert_eq!(
        event.weighted_mappings.len(),
        2,
        "both in one version: {event:?}"
    );
    assert_eq!(event.mappings["auth"], "n1", "the primary stays");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !set.is_finished(),
        "answered before the consumer applied the weights"
    );

    consumer.ack(&world, event.version).await;
    let settled = set.await.unwrap().unwrap().body;
    assert_eq!(settled.mappings_version, Some(event.version));
    assert!(
        settled.laggards.is_empty() && settled.warnings.is_empty(),
        "{settled:?}"
    );

    let routing = world
        .service
        .service_routing(GetServiceRoutingRequest {
            service_filter: Some("AU".into()),
        })
        .await
        .unwrap()
        .body;
    let json = serde_json::to_value(&routing).unwrap();
    assert_eq!(
        json["weightedMappings"],
        serde_json::json!({"auth": [{"appId": "n1", "weight": 90}, {"appId": "n2", "weight": 10}]}),
        "{json}"
    );
    assert_eq!(json["mappings"]["auth"], "n1");

    // Clearing both is one more version; the answer waits for it too.
    let service = world.service.clone();
    let clear = spawn(async move {
        service
            .clear_route_weights(&["auth".to_owned(), "chat".to_owned()])
            .await
    });
    let event = weights_published(&mut mappings, "auth", None).await;
    assert!(event.weighted_mappings.is_empty(), "{event:?}");
    assert!(!clear.is_finished());
    consumer.ack(&world, event.version).await;
    let settled = clear.await.unwrap().unwrap().body;
    assert_eq!(settled.mappings_version, Some(event.version));
    let routing = world
        .service
        .service_routing(GetServiceRoutingRequest::default())
        .await
        .unwrap()
        .body;
    assert_eq!(routing.weighted_mappings, None);
    assert_eq!(routing.mappings["auth"], "n1");
}

#[tokio::test(start_paused = true)]
async fn a_weight_change_names_a_consumer_that_never_applies_it_and_refuses_unroutable_services() {
    let world = world(Duration::from_secs(2)).await;
    deploy(&world, &[("n1", &["auth"])]).await;
    let before = world.store.mappings_version().await.unwrap();
    Consumer::new("silent").beat(&world, before).await;

    let settled = world
        .service
        .set_route_weights(&[("auth".to_owned(), Some(split(&[("n1", 1), ("n2", 1)])))])
        .await
        .unwrap()
        .body;
    assert_eq!(
        settled.laggards,
        vec![NodeMappingsVersion {
            app_id: "silent".into(),
            applied_version: before,
        }]
    );
    assert!(settled.mappings_version > Some(before));

    let version = world.store.mappings_version().await.unwrap();
    for service in ["state", "orchestrator", " "] {
        let refused = world
            .service
            .set_route_weights(&[
                ("auth".to_owned(), None),
                (service.to_owned(), Some(split(&[("n1", 1)]))),
            ])
            .await
            .unwrap_err();
        assert_eq!(
            refused.kind,
            crate::orchestrator::service::ErrorKind::Invalid
        );
    }
    assert_eq!(
        world.store.mappings_version().await.unwrap(),
        version,
        "nothing published"
    );
    let routing = world
        .service
        .service_routing(GetServiceRoutingRequest::default())
        .await
        .unwrap()
        .body;
    assert!(
        routing.weighted_mappings.unwrap().contains_key("auth"),
        "nothing changed"
    );
}

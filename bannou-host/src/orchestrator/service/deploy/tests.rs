//! Scenarios of the deploy group over the in-memory world: the fake backend records every
//! call, nodes are played by auto-heartbeats, time is paused.

use crate::orchestrator::service::Outcome;
use std::time::Duration;

use orchestrator_core::api::*;
use orchestrator_core::events::{
    BackendType, DeploymentAction, InstanceHealthStatus, ServiceHealthStatus,
};
use orchestrator_core::memory::backend::BackendCall;
use orchestrator_core::ports::backend::{
    BackendError, BackendOperation, ContainerBackend, NodeDeployment,
};
use orchestrator_core::ports::store::OrchestratorStore;
use orchestrator_core::{AppId, Catalog};

use crate::orchestrator::service::testing::{World, torn_down_apps};

/// A world whose nodes heartbeat every 100 ms.
async fn world() -> World {
    World::with_live_nodes().await
}

fn deployed_apps(calls: &[BackendCall]) -> Vec<String> {
    calls
        .iter()
        .filter_map(|c| match c {
            BackendCall::Deploy(n) => Some(n.app_id.to_string()),
            _ => None,
        })
        .collect()
}

fn topology(nodes: Vec<TopologyNode>) -> DeployRequest {
    DeployRequest {
        topology: Some(ServiceTopology {
            nodes,
            infrastructure: None,
        }),
        ..DeployRequest::default()
    }
}

fn node(name: &str, services: &[&str]) -> TopologyNode {
    TopologyNode {
        services: Some(services.iter().map(|s| (*s).to_owned()).collect()),
        ..TopologyNode::new(name)
    }
}

#[tokio::test(start_paused = true)]
async fn a_three_wave_preset_comes_up_healthy_routed_and_recorded() {
    let world = world().await;
    let mut events = world.deployment_events().await;
    let version_before = world.store.mappings_version().await.unwrap();

    let answer = world.deploy_preset("game-stack").await;

    assert_eq!(answer.outcome, Outcome::Ok, "{:?}", answer.body.warnings);
    assert!(answer.body.success);
    assert_eq!(answer.body.backend, BackendType::InProcess);
    assert_eq!(answer.body.preset.as_deref(), Some("game-stack"));
    // Waves in layer order: auth (L1), world (L2), features (L4).
    assert_eq!(
        deployed_apps(&world.backend.calls()),
        ["stack-auth", "stack-world", "stack-features"]
    );
    // Every service each node runs reports healthy from that node.
    let plan_nodes = world
        .store
        .current_config()
        .await
        .unwrap()
        .expect("a configuration version")
        .nodes;
    assert_eq!(plan_nodes.len(), 3);
    {
        let health = world.service.deps().health.lock();
        let now = world.clock.now();
        for n in &plan_nodes {
            for s in n
                .services
                .iter()
                .filter(|s| !orchestrator_core::health::is_infrastructure_service(s))
            {
                assert_eq!(
                    health.aggregator.status_on(s, n.app_id.as_str(), now),
                    Some(InstanceHealthStatus::Healthy),
                    "{s} on {}",
                    n.app_id
                );
            }
        }
    }
    for (service, app) in [
        ("auth", "stack-auth"),
        ("permission", "stack-auth"),
        ("realm", "stack-world"),
        ("game-session", "stack-world"),
        ("matchmaking", "stack-features"),
    ] {
        assert_eq!(world.route(service), app, "{service}");
    }
    assert_eq!(world.route("orchestrator"), "bannou");
    // Routes are in the store and the mappings went out.
    let stored = world
        .store
        .get_route("auth")
        .await
        .unwrap()
        .expect("stored route");
    assert_eq!(stored.app_id, "stack-auth");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(world.store.mappings_version().await.unwrap() > version_before);
    // One configuration version, stable, with the docs/COMPATIBILITY.md#saving-a-version fields.
    let cfg = world.store.current_config().await.unwrap().unwrap();
    assert_eq!((cfg.version, cfg.stable), (1, true));
    assert_eq!(cfg.preset_name.as_deref(), Some("game-stack"));
    assert_eq!(
        cfg.deployment_id.as_deref(),
        Some(answer.body.deployment_id.as_str())
    );
    assert_eq!(
        cfg.services["matchmaking"].app_id.as_deref(),
        Some("stack-features")
    );
    assert_eq!(
        world
            .store
            .last_stable_config()
            .await
            .unwrap()
            .map(|c| c.version),
        Some(1)
    );
    assert_eq!(
        world.service.deps().backends.active_type(),
        Some(BackendType::InProcess)
    );
    let actions: Vec<DeploymentAction> = World::drain(&mut events)
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert_eq!(
        actions,
        [DeploymentAction::Started, DeploymentAction::Completed]
    );
}

#[tokio::test(start_paused = true)]
async fn a_ten_node_deploy_is_healthy_within_a_few_heartbeats() {
    let world = World::new().await;
    world.auto_heartbeats(Duration::from_millis(10));
    let begun = tokio::time::Instant::now();
    let answer = world.deploy_preset("local-ten").await;
    assert!(answer.body.success, "{:?}", answer.body.warnings);
    assert_eq!(world.running().len(), 10);
    // Virtual time: two waves, each a heartbeat plus a poll.
    assert!(
        begun.elapsed() < Duration::from_millis(200),
        "{:?}",
        begun.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn a_missing_preset_is_404_and_the_running_deployment_stays() {
    let world = world().await;
    assert!(world.deploy_preset("split-auth").await.body.success);
    world.backend.take_calls();

    let refused = world
        .service
        .deploy(DeployRequest {
            preset: Some("no-such-preset".into()),
            ..DeployRequest::default()
        })
        .await
        .unwrap_err();

    assert_eq!(refused.status(), 404);
    assert!(
        refused.body.error.contains("no-such-preset"),
        "{}",
        refused.body.error
    );
    assert!(torn_down_apps(&world.backend.calls()).is_empty());
    assert!(deployed_apps(&world.backend.calls()).is_empty());
    assert_eq!(world.running(), ["bannou-auth"]);
    assert_eq!(world.route("auth"), "bannou-auth");
    assert_eq!(world.store.latest_config_version().await.unwrap(), 1);
}

#[tokio::test(start_paused = true)]
async fn an_unavailable_node_fails_its_wave_and_the_last_stable_version_comes_back() {
    let world = world().await;
    assert!(world.deploy_preset("split-auth").await.body.success);
    world.set_status("stack-world", ServiceHealthStatus::Unavailable);
    let mut events = world.deployment_events().await;
    let begun = tokio::time::Instant::now();

    let answer = world.deploy_preset("game-stack").await;

    assert_eq!(answer.outcome, Outcome::Failed);
    assert!(!answer.body.success);
    // The wave gave up at its deadline (5 s in the test world), not later.
    let waited = begun.elapsed();
    assert!(
        waited >= Duration::from_secs(5) && waited < Duration::from_secs(6),
        "{waited:?}"
    );
    let warnings = answer.body.warnings.clone().unwrap();
    assert!(
        warnings
            .iter()
            .any(|w| w.starts_with("stack-world: not healthy") && w.contains("Unavailable")),
        "{warnings:?}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("reverted to last stable configuration version 1")),
        "{warnings:?}"
    );
    // Wave 3 never started; what wave 1 and 2 started is gone again.
    assert!(!deployed_apps(&world.backend.calls()).contains(&"stack-features".to_owned()));
    assert_eq!(world.running(), ["bannou-auth"]);
    assert_eq!(world.route("auth"), "bannou-auth");
    assert_eq!(world.route("account"), "bannou-auth");
    assert_ne!(world.route("realm"), "stack-world");
    // No version for the failed deploy; version 1 is still current and stable.
    let cfg = world.store.current_config().await.unwrap().unwrap();
    assert_eq!((cfg.version, cfg.stable), (1, true));
    let last = World::drain(&mut events).pop().unwrap();
    assert_eq!(last.action, DeploymentAction::Failed);
    assert!(last.error.unwrap().contains("stack-world"));
}

#[tokio::test(start_paused = true)]
async fn without_a_stable_version_a_failed_deploy_removes_what_it_started() {
    let world = world().await;
    world.backend.fail_next(
        BackendOperation::Deploy,
        &AppId::new("stack-features"),
        BackendError::runtime("image pull failed"),
    );

    let answer = world.deploy_preset("game-stack").await;

    assert_eq!(answer.outcome, Outcome::Failed);
    let warnings = answer.body.warnings.unwrap();
    assert!(
        warnings.contains(&"stack-features: runtime error: image pull failed".to_owned()),
        "{warnings:?}"
    );
    assert!(world.running().is_empty());
    assert_eq!(world.route("auth"), "bannou");
    assert_eq!(world.store.latest_config_version().await.unwrap(), 0);
}

#[tokio::test(start_paused = true)]
async fn auto_revert_false_leaves_the_failed_deployment_in_place() {
    let world = world().await;
    world.set_status("stack-world", ServiceHealthStatus::Unavailable);
    let answer = world
        .service
        .deploy(DeployRequest {
            preset: Some("game-stack".into()),
            auto_revert: false,
            ..DeployRequest::default()
        })
        .await
        .unwrap();
    assert_eq!(answer.outcome, Outcome::Failed);
    assert_eq!(world.running(), ["stack-auth", "stack-world"]);
    assert!(torn_down_apps(&world.backend.calls()).is_empty());
}

#[tokio::test(start_paused = true)]
async fn refused_requests_change_nothing() {
    let world = world().await;
    assert!(world.deploy_preset("split-auth").await.body.success);
    world.backend.take_calls();
    let mut events = world.deployment_events().await;

    let cases = [
        topology(vec![
            node("n1", &["auth"]),
            node("n2", &["no-such-service"]),
        ]),
        topology(vec![node("n1", &["orchestrator"])]),
        topology(vec![node("n1", &["auth"]), node("n2", &["auth"])]),
        topology(vec![node("bannou", &["auth"])]),
        DeployRequest {
            preset: Some("../etc/passwd".into()),
            ..DeployRequest::default()
        },
        DeployRequest {
            preset: Some("game-stack".into()),
            backend: Some(BackendType::Kubernetes),
            ..DeployRequest::default()
        },
    ];
    for request in cases {
        let refused = world.service.deploy(request.clone()).await.unwrap_err();
        assert_eq!(refused.status(), 400, "{request:?}: {}", refused.body.error);
    }

    let ops: Vec<BackendOperation> = world
        .backend
        .calls()
        .iter()
        .map(BackendCall::operation)
        .filter(|o| matches!(o, BackendOperation::Deploy | BackendOperation::Teardown))
        .collect();
    assert!(ops.is_empty(), "{ops:?}");
    assert_eq!(world.running(), ["bannou-auth"]);
    assert_eq!(world.store.latest_config_version().await.unwrap(), 1);
    // Each refusal ends its `started` event with a `failed` one.
    let actions: Vec<DeploymentAction> = World::drain(&mut events)
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert_eq!(actions.len(), 12);
    assert!(
        actions
            .chunks(2)
            .all(|p| p == [DeploymentAction::Started, DeploymentAction::Failed])
    );
}

#[tokio::test(start_paused = true)]
async fn the_orchestrator_error_names_the_node() {
    let world = world().await;
    let refused = world
        .service
        .deploy(topology(vec![node("ops", &["orchestrator"])]))
        .await
        .unwrap_err();
    assert_eq!(
        refused.body.error,
        "ops: Cannot deploy orchestrator service - route cannot be overridden"
    );
}

#[tokio::test(start_paused = true)]
async fn a_node_running_the_orchestrator_through_its_layers_is_refused_too() {
    let world = world().await;
    let mut layered = node("features", &["matchmaking"]);
    layered.environment =
        Some([("BANNOU_ENABLE_GAME_FEATURES".to_owned(), "true".to_owned())].into());
    let refused = world
        .service
        .deploy(topology(vec![layered]))
        .await
        .unwrap_err();
    assert_eq!(refused.status(), 400);
    assert!(
        refused
            .body
            .error
            .contains("ORCHESTRATOR_SERVICE_ENABLED=false"),
        "{}",
        refused.body.error
    );
}

#[tokio::test(start_paused = true)]
async fn a_changed_node_is_redeployed_and_waited_for_again() {
    let world = world().await;
    assert!(world.deploy_preset("split-auth").await.body.success);
    world.backend.take_calls();
    // From now on the node's new container reports unavailable.
    world.set_status("bannou-auth", ServiceHealthStatus::Unavailable);

    let answer = world
        .service
        .deploy(DeployRequest {
            preset: Some("split-auth".into()),
            environment: Some([("LOG_LEVEL".to_owned(), "debug".to_owned())].into()),
            ..DeployRequest::default()
        })
        .await
        .unwrap();

    // The old container's healthy heartbeats do not count for the new one.
    assert_eq!(
        answer.outcome,
        Outcome::Failed,
        "{:?}",
        answer.body.warnings
    );
    assert_eq!(deployed_apps(&world.backend.calls())[0], "bannou-auth");
    // Reverted: version 1's environment is back (that the node still reports
    // unavailable makes the revert report a failure too, which is what it is).
    let env = world
        .backend
        .node(&AppId::new("bannou-auth"))
        .unwrap()
        .deployment
        .environment;
    assert!(!env.contains_key("LOG_LEVEL"));

    world.set_status("bannou-auth", ServiceHealthStatus::Healthy);
    let answer = world
        .service
        .deploy(DeployRequest {
            preset: Some("split-auth".into()),
            environment: Some([("LOG_LEVEL".to_owned(), "debug".to_owned())].into()),
            ..DeployRequest::default()
        })
        .await
        .unwrap();
    assert!(answer.body.success, "{:?}", answer.body.warnings);
    assert_eq!(world.route("auth"), "bannou-auth");
}

#[tokio::test(start_paused = true)]
async fn a_dry_run_only_publishes_events() {
    let world = world().await;
    let mut events = world.deployment_events().await;
    let answer = world
        .service
        .deploy(DeployRequest {
            preset: Some("game-stack".into()),
            dry_run: true,
            ..DeployRequest::default()
        })
        .await
        .unwrap();

    assert_eq!(answer.outcome, Outcome::Ok);
    let services = answer.body.services.unwrap();
    assert_eq!(services.len(), 3);
    assert!(
        services
            .iter()
            .all(|s| s.status == DeployedServiceStatus::Starting)
    );
    assert!(deployed_apps(&world.backend.calls()).is_empty());
    assert!(world.running().is_empty());
    assert!(world.service.deps().health.lock().routing.is_empty());
    assert_eq!(world.store.latest_config_version().await.unwrap(), 0);
    assert_eq!(world.service.deps().backends.active_type(), None);
    let events = World::drain(&mut events);
    assert_eq!(events.len(), 2);
    assert_eq!(events[1].action, DeploymentAction::Completed);
    assert_eq!(
        events[1].changes.as_deref(),
        Some(
            &[
                "stack-auth".to_owned(),
                "stack-features".into(),
                "stack-world".into()
            ][..]
        )
    );
}

#[tokio::test(start_paused = true)]
async fn a_new_preset_replaces_the_old_nodes_and_the_same_preset_changes_nothing() {
    let world = world().await;
    assert!(world.deploy_preset("split-auth").await.body.success);
    assert!(world.deploy_preset("game-stack").await.body.success);
    assert_eq!(
        world.running(),
        ["stack-auth", "stack-features", "stack-world"]
    );
    assert_eq!(torn_down_apps(&world.backend.calls()), ["bannou-auth"]);
    assert_eq!(world.route("auth"), "stack-auth");
    world.backend.take_calls();

    assert!(world.deploy_preset("game-stack").await.body.success);
    assert!(deployed_apps(&world.backend.calls()).is_empty());
    assert_eq!(world.store.latest_config_version().await.unwrap(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_node_that_vanished_is_deployed_again() {
    let world = world().await;
    assert!(world.deploy_preset("split-auth").await.body.success);
    world
        .backend
        .teardown(&AppId::new("bannou-auth"), &Default::default())
        .await
        .unwrap();
    world.backend.take_calls();
    assert!(world.deploy_preset("split-auth").await.body.success);
    assert_eq!(deployed_apps(&world.backend.calls()), ["bannou-auth"]);
}

#[tokio::test(start_paused = true)]
async fn a_pool_preset_stores_its_pools_and_starts_min_workers() {
    let world = world().await;
    let answer = world.deploy_preset("npc-brains").await;
    assert!(answer.body.success, "{:?}", answer.body.warnings);
    let workers: Vec<String> = world
        .running()
        .into_iter()
        .filter(|a| a.starts_with("bannou-pool-"))
        .collect();
    // npc-brain min 2, npc-event-coordinator min 1.
    assert_eq!(workers.len(), 3, "{workers:?}");
    assert_eq!(world.route("actor"), "npc-coordinator");
}

#[tokio::test(start_paused = true)]
async fn a_reset_tears_down_what_the_configuration_deployed() {
    let world = world().await;
    assert!(world.deploy_preset("split-auth").await.body.success);

    let answer = world
        .service
        .deploy(DeployRequest::default())
        .await
        .unwrap();

    assert_eq!(answer.outcome, Outcome::Ok);
    assert!(answer.body.success);
    assert_eq!(answer.body.preset.as_deref(), Some("default"));
    assert_eq!(answer.body.topology, Some(ServiceTopology::empty()));
    let services = answer.body.services.unwrap();
    assert_eq!(services.len(), 1);
    assert_eq!(
        (
            services[0].name.as_str(),
            services[0].status,
            services[0].node.as_str()
        ),
        ("bannou-auth", DeployedServiceStatus::Stopped, "bannou")
    );
    assert!(world.running().is_empty());
    assert!(world.service.deps().health.lock().routing.is_empty());
    assert!(world.store.get_route("auth").await.unwrap().is_none());
    let cfg = world.store.current_config().await.unwrap().unwrap();
    assert_eq!(
        (cfg.version, cfg.preset_name.as_deref(), cfg.stable),
        (2, Some("default"), true)
    );
}

#[tokio::test(start_paused = true)]
async fn teardown_stops_every_node_but_the_control_plane() {
    let world = world().await;
    assert!(world.deploy_preset("split-auth").await.body.success);
    // The control plane's own container, as a Compose backend would list it.
    world
        .backend
        .deploy_node(&NodeDeployment::new(
            AppId::control_plane(),
            "bannou",
            "bannou:latest",
        ))
        .await
        .unwrap();
    world.backend.take_calls();

    let preview = world
        .service
        .teardown(TeardownRequest {
            dry_run: true,
            ..TeardownRequest::default()
        })
        .await
        .unwrap();
    assert_eq!(preview.body.stopped_containers.unwrap(), ["bannou-auth"]);
    assert!(torn_down_apps(&world.backend.calls()).is_empty());

    let answer = world
        .service
        .teardown(TeardownRequest::default())
        .await
        .unwrap();

    assert_eq!(answer.outcome, Outcome::Ok);
    assert_eq!(answer.body.stopped_containers.unwrap().len(), 1);
    assert_eq!(answer.body.errors, None);
    assert_eq!(torn_down_apps(&world.backend.calls()), ["bannou-auth"]);
    assert_eq!(world.running(), ["bannou"]);
    assert_eq!(world.route("auth"), "bannou");
    let cfg = world.store.current_config().await.unwrap().unwrap();
    assert_eq!(cfg.preset_name.as_deref(), Some("default"));

    // Nothing left: the short answer.
    let empty = world
        .service
        .teardown(TeardownRequest::default())
        .await
        .unwrap();
    assert_eq!(empty.body.duration, "0s");
    assert_eq!(empty.body.stopped_containers, Some(Vec::new()));
}

#[tokio::test(start_paused = true)]
async fn presets_are_listed_with_their_files_and_the_active_one() {
    let world = world().await;
    let listed = world
        .service
        .presets(ListPresetsRequest::default())
        .await
        .unwrap();
    let names: Vec<&str> = listed
        .body
        .presets
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    assert_eq!(
        names,
        ["game-stack", "local-ten", "npc-brains", "split-auth"]
    );
    assert_eq!(listed.body.active_preset.as_deref(), Some("bannou"));
    let ten = &listed.body.presets[1];
    assert_eq!(ten.category, Some(PresetCategory::Testing));
    assert!(
        ten.file_path
            .as_deref()
            .unwrap()
            .ends_with("local-ten.yaml")
    );
    assert_eq!(ten.topology.nodes.len(), 10);
    assert_eq!(
        ten.environment.as_ref().unwrap()["BANNOU_APP_LOGGING_LEVEL"],
        "Warning"
    );
    let split = &listed.body.presets[3];
    assert_eq!(split.category, None, "`example` is not a schema category");
    let env = split.topology.nodes[0].environment.as_ref().unwrap();
    assert_eq!(env["BANNOU_ENABLE_APP_FOUNDATION"], "true");
    assert_eq!(env["AUTH_SERVICE_ENABLED"], "true");

    assert!(world.deploy_preset("split-auth").await.body.success);
    let listed = world
        .service
        .presets(ListPresetsRequest::default())
        .await
        .unwrap();
    assert_eq!(listed.body.active_preset.as_deref(), Some("split-auth"));
}

/// The routing answer's lag fields (ours only) come from what the routing metrics read:
/// absent until a version is published and a node reports one, then every reporting node's
/// applied version and the nodes behind the current one.
#[tokio::test(start_paused = true)]
async fn service_routing_reports_the_nodes_behind_the_current_mappings_version() {
    let world = world().await;
    let routing = || async {
        world
            .service
            .service_routing(GetServiceRoutingRequest::default())
            .await
            .unwrap()
            .body
    };
    // What the store published when the world started (nothing runs yet).
    let stored = world.store.mappings_version().await.unwrap();
    let stored = (stored > 0).then_some(stored);
    assert!(stored.is_none_or(|v| v < 5), "{stored:?}");
    let none = routing().await;
    assert_eq!(
        (none.mappings_version, none.node_versions, none.nodes_behind),
        (stored, None, stored.map(|_| vec![]))
    );
    let beat = |app: &str, version: Option<i64>| {
        let mut hb = orchestrator_core::events::ServiceHeartbeatEvent::new(
            uuid::Uuid::new_v4(),
            AppId::new(app),
            world.clock.now(),
            [("auth", ServiceHealthStatus::Healthy)],
        );
        hb.metadata = version.map(|v| {
            serde_json::json!({ orchestrator_routing::resolver::ROUTING_VERSION_METADATA_KEY: v })
        });
        hb
    };
    let beats = [
        beat("node-b", Some(5)),
        beat("node-a", Some(7)),
        beat("node-c", None),
    ];
    // The same state the routing acknowledgement waits read (D58).
    world.pipeline.ingest_batch(&beats, world.clock.now());
    let metrics = world.service.metrics();
    let unknown = routing().await;
    assert_eq!(unknown.mappings_version, stored);
    if stored.is_none() {
        assert_eq!(unknown.nodes_behind, None, "behind what is not known");
    }
    assert_eq!(unknown.node_versions.map(|n| n.len()), Some(2));

    metrics.mappings_published(7);
    let lag = routing().await;
    let node = |app: &str, v| NodeMappingsVersion {
        app_id: app.into(),
        applied_version: v,
    };
    assert_eq!(lag.mappings_version, Some(7));
    assert_eq!(
        lag.node_versions,
        Some(vec![node("node-a", 7), node("node-b", 5)])
    );
    assert_eq!(lag.nodes_behind, Some(vec![node("node-b", 5)]));
    let json = serde_json::to_value(&lag).unwrap();
    assert_eq!(json["nodesBehind"][0]["appliedVersion"], 5, "{json}");
}

/// The current mappings version `service-routing` reports is the store's, even before
/// the bus has carried the publication to whoever reads it.
#[tokio::test(start_paused = true)]
async fn service_routing_reports_the_version_the_store_published() {
    let world = world().await;
    world.service.metrics().mappings_published(1);
    let reply = world.deploy_preset("game-stack").await;
    assert!(reply.body.success, "{:?}", reply.body.warnings);
    let stored = world.store.mappings_version().await.unwrap();
    assert!(stored > 1, "the deploy published mappings");
    let routing = world
        .service
        .service_routing(GetServiceRoutingRequest::default())
        .await
        .unwrap()
        .body;
    assert_eq!(routing.mappings_version, Some(stored));
}

#[tokio::test(start_paused = true)]
async fn service_routing_accepts_an_empty_request_and_filters_by_prefix() {
    let world = world().await;
    let empty = world
        .service
        .service_routing(serde_json::from_str("{}").unwrap())
        .await
        .unwrap();
    assert!(empty.body.mappings.is_empty());
    assert_eq!(empty.body.default_app_id, "bannou");
    assert_eq!(empty.body.deployment_id, None);

    let deployed = world.deploy_preset("split-auth").await;
    let all = world
        .service
        .service_routing(GetServiceRoutingRequest::default())
        .await
        .unwrap()
        .body;
    assert_eq!(all.mappings["auth"], "bannou-auth");
    assert_eq!(all.mappings["account"], "bannou-auth");
    assert_eq!(all.total_services, all.mappings.len() as i64);
    assert_eq!(all.deployment_id, Some(deployed.body.deployment_id));

    let filtered = world
        .service
        .service_routing(GetServiceRoutingRequest {
            service_filter: Some("AU".into()),
        })
        .await
        .unwrap()
        .body;
    assert!(filtered.mappings.contains_key("auth"));
    assert!(!filtered.mappings.contains_key("account"));
    assert!(filtered.mappings.keys().all(|k| k.starts_with("au")));
}

#[tokio::test(start_paused = true)]
async fn status_lists_the_active_backends_nodes() {
    let world = world().await;
    let before = world
        .service
        .status(GetStatusRequest::default())
        .await
        .unwrap()
        .body;
    assert!(!before.deployed);
    assert_eq!(before.topology, Some(ServiceTopology::empty()));

    assert!(world.deploy_preset("split-auth").await.body.success);
    let after = world
        .service
        .status(GetStatusRequest::default())
        .await
        .unwrap()
        .body;
    assert!(after.deployed);
    assert_eq!(after.backend, Some(BackendType::InProcess));
    assert_eq!(after.preset.as_deref(), Some("split-auth"));
    let nodes = after.topology.unwrap().nodes;
    assert_eq!(nodes.len(), 1);
    assert_eq!(
        nodes[0].services.as_deref(),
        Some(&["account".to_owned(), "auth".to_owned()][..])
    );
    let services = after.services.unwrap();
    assert_eq!(services[0].name, "bannou-auth");
    assert_eq!(services[0].status, DeployedServiceStatus::Running);
}

#[tokio::test(start_paused = true)]
async fn request_topologies_deploy_like_presets() {
    let world = world().await;
    let answer = world
        .service
        .deploy(DeployRequest {
            environment: Some(
                [
                    ("AUTH_JWT_SECRET".to_owned(), "s3cret".to_owned()),
                    ("LOG_LEVEL".to_owned(), "debug".to_owned()),
                ]
                .into(),
            ),
            ..topology(vec![node("auth-node", &["auth", "account"])])
        })
        .await
        .unwrap();
    assert!(answer.body.success, "{:?}", answer.body.warnings);
    assert_eq!(world.route("auth"), "auth-node");
    let deployed = world
        .backend
        .node(&AppId::new("auth-node"))
        .unwrap()
        .deployment;
    assert_eq!(deployed.environment["BANNOU_SERVICES_ENABLED"], "false");
    assert_eq!(deployed.environment["AUTH_JWT_SECRET"], "s3cret");
    assert_eq!(deployed.image, "bannou:latest");
    // The configuration keeps the request environment minus secrets.
    let cfg = world.store.current_config().await.unwrap().unwrap();
    assert_eq!(cfg.preset_name, None);
    assert_eq!(
        cfg.environment_variables.keys().collect::<Vec<_>>(),
        ["LOG_LEVEL"]
    );
    // Catalog sanity for the scenario: both services are L1.
    assert!(Catalog::builtin().find("auth").is_some());
}

#[tokio::test(start_paused = true)]
async fn a_second_lifecycle_operation_waits_its_turn_with_409() {
    let world = world().await;
    world.set_status("*", ServiceHealthStatus::Unavailable);
    let service = world.service.clone();
    let slow = tokio::spawn(async move { service.deploy_preset_for_test("split-auth").await });
    // Let the first deploy reach its health wait.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let busy = world
        .service
        .teardown(TeardownRequest::default())
        .await
        .unwrap_err();
    assert_eq!(busy.status(), 409);
    assert_eq!(slow.await.unwrap(), 500);
}

impl super::OrchestratorService {
    /// Deploys a preset and returns the status code (for spawned tasks).
    async fn deploy_preset_for_test(&self, name: &str) -> u16 {
        match self
            .deploy(DeployRequest {
                preset: Some(name.to_owned()),
                ..DeployRequest::default()
            })
            .await
        {
            Ok(a) => crate::api::error_status::outcome_status(a.outcome),
            Err(e) => e.status(),
        }
    }
}

#[test]
fn deploy_backend_names_of_shipped_presets_map_to_backend_types() {
    use crate::orchestrator::service::presets::backend_from_preset;
    assert_eq!(
        backend_from_preset("docker-compose"),
        Some(BackendType::Compose)
    );
    assert_eq!(
        backend_from_preset("docker-swarm"),
        Some(BackendType::Swarm)
    );
    assert_eq!(
        backend_from_preset("kubernetes"),
        Some(BackendType::Kubernetes)
    );
    assert_eq!(backend_from_preset("nomad"), None);
}

/// The HTTP layer runs these futures on a multi-threaded runtime: they must be `Send`
/// (a borrowing closure inside a stream combinator silently breaks that).
#[allow(dead_code)]
fn use_case_futures_are_send(service: &super::OrchestratorService) {
    fn send<T: Send>(_: T) {}
    send(service.deploy(DeployRequest::default()));
    send(service.teardown(TeardownRequest::default()));
    send(service.presets(ListPresetsRequest::default()));
    send(service.service_routing(GetServiceRoutingRequest::default()));
    send(service.status(GetStatusRequest::default()));
    send(service.update_topology(serde_json::from_str("{\"changes\": []}").unwrap()));
    send(service.rollback(serde_json::from_str("{\"reason\": \"x\"}").unwrap()));
    send(service.config_version(GetConfigVersionRequest::default()));
}

#[tokio::test(start_paused = true)]
async fn a_deploy_cut_off_mid_wave_is_reverted_by_reconciliation() {
    let world = world().await;
    let stable = world
        .service
        .deploy(topology(vec![node("base-auth", &["auth"])]))
        .await
        .unwrap();
    assert_eq!(stable.outcome, Outcome::Ok, "{:?}", stable.body.warnings);
    let before = world.running();
    assert_eq!(
        world.service.reconcile_interrupted_deploy().await.unwrap(),
        None
    );

    // A second deploy whose wave-2 node never heartbeats; the process "dies" (the task is
    // dropped) while that wave waits: its record is left behind, its wave-1 node runs.
    world
        .silenced
        .lock()
        .unwrap()
        .insert("cut-realm".to_owned());
    let request = topology(vec![
        node("cut-account", &["account"]),
        node("cut-realm", &["realm"]),
    ]);
    let service = world.service.clone();
    let cut = tokio::spawn(async move { service.deploy(request).await });
    for _ in 0..200 {
        if world.running().contains(&"cut-realm".to_owned()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(world.running().contains(&"cut-account".to_owned()));
    assert!(
        world.running().contains(&"cut-realm".to_owned()),
        "wave 2 started"
    );
    if cut.is_finished() {
        panic!(
            "finished early: {:?}; running {:?}",
            cut.await,
            world.running()
        );
    }
    cut.abort();
    let _ = cut.await;
    let record = world
        .store
        .deploy_in_progress()
        .await
        .unwrap()
        .expect("the cut-off deploy is on record");
    assert_eq!(
        record
            .nodes
            .iter()
            .map(|n| n.app_id.to_string())
            .collect::<Vec<_>>(),
        ["cut-account", "cut-realm"]
    );

    // Reconciliation (what a restarted control plane runs first) reverts it.
    let mut events = world.deployment_events().await;
    let report = world
        .service
        .reconcile_interrupted_deploy()
        .await
        .unwrap()
        .expect("a cut-off deploy to reconcile");
    assert_eq!(report.deployment_id, record.deployment_id.clone().unwrap());
    assert!(
        report.found_running.contains(&"cut-account".to_owned()),
        "{report:?}"
    );
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.contains("reverted to last stable")),
        "{report:?}"
    );
    assert_eq!(
        world.running(),
        before,
        "exactly the stable nodes run again"
    );
    assert_eq!(world.store.deploy_in_progress().await.unwrap(), None);
    let cfg = world.store.current_config().await.unwrap().unwrap();
    assert_eq!(cfg.nodes.len(), 1);
    assert_eq!(cfg.nodes[0].app_id.as_str(), "base-auth");
    assert!(cfg.stable);
    let failed = World::drain(&mut events);
    assert!(
        failed.iter().any(
            |e| e.action == DeploymentAction::Failed && e.deployment_id == report.deployment_id
        ),
        "{failed:?}"
    );
    // Nothing left to do.
    assert_eq!(
        world.service.reconcile_interrupted_deploy().await.unwrap(),
        None
    );
}

/// `ORCHESTRATOR_CONTAINER_STATUS_POLL_INTERVAL_SECONDS` paces the wave wait's look at the
/// backend: a node that never heartbeats is asked about every interval until the timeout.
#[tokio::test(start_paused = true)]
async fn the_wave_wait_asks_the_backend_once_per_container_status_poll_interval() {
    let mut counts = Vec::new();
    for every in [Duration::from_secs(1), Duration::from_secs(3)] {
        let world = World::with_settings(|s| {
            s.wave_timeout = Duration::from_secs(12);
            s.container_status_poll_interval = every;
        })
        .await;
        world.auto_heartbeats(Duration::from_millis(100));
        world.silenced.lock().unwrap().insert("quiet".to_owned());
        let reply = world
            .service
            .deploy(topology(vec![node("quiet", &["auth"])]))
            .await
            .unwrap();
        assert_ne!(reply.outcome, Outcome::Ok, "the silent node fails its wave");
        let asked = world
            .backend
            .calls_of(BackendOperation::Status)
            .iter()
            .filter(|c| c.app_id().is_some_and(|a| a.as_str() == "quiet"))
            .count();
        counts.push(asked);
    }
    assert!((10..=13).contains(&counts[0]), "every second: {counts:?}");
    assert!((3..=5).contains(&counts[1]), "every 3 s: {counts:?}");
}

/// App-ids compare without case (docs/COMPATIBILITY.md#heartbeat-consumption): a node
/// deployed as `Auth-Main` is `auth-main` for status, routing and a later deploy, which
/// updates it in place instead of starting a second node and tearing the first down.
#[tokio::test(start_paused = true)]
async fn an_app_id_in_another_case_names_the_same_node() {
    let world = world().await;
    let mut auth = node("auth", &["auth", "account"]);
    auth.app_id = Some("Auth-Main".into());
    let first = world
        .service
        .deploy(topology(vec![auth.clone()]))
        .await
        .unwrap();
    assert!(first.body.success, "{:?}", first.body.warnings);
    assert_eq!(world.route("auth"), "Auth-Main");

    let status = world
        .service
        .container_status(GetContainerStatusRequest {
            app_name: "auth-main".into(),
        })
        .await
        .unwrap();
    assert_eq!(status.outcome, Outcome::Ok, "{:?}", status.body);
    assert_eq!(status.body.instances, 1);

    // The same topology, the app-id spelled in lower case: the same node.
    world.backend.take_calls();
    auth.app_id = Some("auth-main".into());
    let again = world.service.deploy(topology(vec![auth])).await.unwrap();
    assert!(again.body.success, "{:?}", again.body.warnings);
    let calls = world.backend.calls();
    assert!(torn_down_apps(&calls).is_empty(), "{calls:?}");
    assert!(
        deployed_apps(&calls)
            .iter()
            .all(|a| a.eq_ignore_ascii_case("auth-main")),
        "{calls:?}"
    );
    assert_eq!(world.running().len(), 1, "{:?}", world.running());
    assert!(world.route("auth").eq_ignore_ascii_case("auth-main"));

    let routing = world
        .service
        .service_routing(GetServiceRoutingRequest::default())
        .await
        .unwrap()
        .body;
    assert!(routing.mappings["account"].eq_ignore_ascii_case("auth-main"));

    tokio::time::sleep(Duration::from_secs(1)).await;
    let advice = world
        .service
        .should_restart(ShouldRestartServiceRequest {
            service_name: "account".into(),
        })
        .await
        .unwrap()
        .body;
    assert!(!advice.should_restart, "{advice:?}");
    assert_eq!(advice.current_status, Some(InstanceHealthStatus::Healthy));

    let env = world
        .service
        .status(GetStatusRequest::default())
        .await
        .unwrap()
        .body;
    let nodes = env.topology.unwrap().nodes;
    assert_eq!(nodes.len(), 1, "{nodes:?}");
    assert_eq!(
        nodes[0].services.as_deref(),
        Some(&["account".to_owned(), "auth".to_owned()][..])
    );
}

/// The wave runner matches a redeployed node with the one running by app-id in any case:
/// respelled and routing less, the node keeps the routes it still routes (a teardown of
/// the "old" spelling would release them) and gives up only the others.
#[tokio::test(start_paused = true)]
async fn a_respelled_node_routing_less_keeps_its_routes_and_drops_the_rest() {
    let world = world().await;
    let mut auth = node("auth", &["auth", "account"]);
    auth.app_id = Some("Auth-Main".into());
    let first = world
        .service
        .deploy(topology(vec![auth.clone()]))
        .await
        .unwrap();
    assert!(first.body.success, "{:?}", first.body.warnings);
    assert_eq!(world.route("account"), "Auth-Main");

    world.backend.take_calls();
    let mut respelled = node("auth", &["auth"]);
    respelled.app_id = Some("AUTH-MAIN".into());
    let second = world
        .service
        .deploy(topology(vec![respelled]))
        .await
        .unwrap();
    assert!(second.body.success, "{:?}", second.body.warnings);
    let calls = world.backend.calls();
    assert!(torn_down_apps(&calls).is_empty(), "{calls:?}");
    assert_eq!(deployed_apps(&calls).len(), 1, "{calls:?}");
    assert!(world.route("auth").eq_ignore_ascii_case("auth-main"));
    assert_eq!(world.route("account"), "bannou");
    assert_eq!(world.running().len(), 1, "{:?}", world.running());
}

/// What a control plane that has just started knows of the nodes running before it: no
/// heartbeat at all (the aggregator lives in its process).
fn forget_every_heartbeat(world: &World) {
    let mut health = world.service.deps().health.lock();
    let config = *health.aggregator.config();
    health.aggregator = orchestrator_core::health::HeartbeatAggregator::new(config);
}

fn seconds(duration: &str) -> f64 {
    duration
        .strip_suffix('s')
        .and_then(|d| d.parse().ok())
        .unwrap_or_else(|| panic!("duration {duration:?} is not N.Ns"))
}

/// Issue 17, bug 4: a deploy that adopts running nodes (a new control plane over what a
/// previous one left, as `up` after a crash) answered at once, every node "Healthy" in
/// "0.0s", before hearing from any of them. It now waits for their heartbeats as a wave
/// would, and its duration is that wait.
#[tokio::test(start_paused = true)]
async fn an_adopting_deploy_waits_for_the_adopted_nodes_and_its_duration_says_so() {
    let world = world().await;
    assert!(world.deploy_preset("split-auth").await.body.success);
    world.backend.take_calls();

    // A new process: nothing heard yet, and the node's next beat comes in 3 s.
    forget_every_heartbeat(&world);
    world.silenced.lock().unwrap().insert("bannou-auth".into());
    let silenced = world.silenced.clone();
    let quiet = Duration::from_secs(3);
    tokio::spawn(async move {
        tokio::time::sleep(quiet).await;
        silenced.lock().unwrap().clear();
    });

    let begun = world.clock.now();
    let answer = world.deploy_preset("split-auth").await;
    let took = world.clock.now().saturating_since(begun);
    assert_eq!(answer.outcome, Outcome::Ok, "{:?}", answer.body.warnings);
    assert!(
        deployed_apps(&world.backend.calls()).is_empty(),
        "adopted, not started"
    );
    assert!(
        took >= quiet,
        "answered before the node was heard: {took:?}"
    );
    let reported = seconds(&answer.body.duration);
    assert!(
        reported >= quiet.as_secs_f64() && reported <= took.as_secs_f64() + 0.05,
        "duration {} for a deploy that took {took:?}",
        answer.body.duration
    );
}

/// An adopted node that stays silent fails the deploy after the wave timeout, naming it,
/// and nothing is started or torn down.
#[tokio::test(start_paused = true)]
async fn an_adopted_node_that_stays_silent_fails_the_deploy_untouched() {
    let world = world().await;
    assert!(world.deploy_preset("split-auth").await.body.success);
    world.backend.take_calls();
    forget_every_heartbeat(&world);
    world.silenced.lock().unwrap().insert("bannou-auth".into());

    let answer = world.deploy_preset("split-auth").await;
    assert_eq!(answer.outcome, Outcome::Failed);
    assert!(!answer.body.success);
    let notes = answer.body.warnings.clone().unwrap_or_default().join("\n");
    assert!(
        notes.contains("bannou-auth: runs (adopted) but not healthy within 5s"),
        "{notes}"
    );
    assert!(
        seconds(&answer.body.duration) >= 5.0,
        "{}",
        answer.body.duration
    );
    let calls = world.backend.calls();
    assert!(deployed_apps(&calls).is_empty(), "{calls:?}");
    assert!(torn_down_apps(&calls).is_empty(), "{calls:?}");
    assert_eq!(world.running(), ["bannou-auth"]);
}

/// The nodes a replacing deploy tears down leave the health report, and their final
/// "shutting down" beats, arriving after the teardown, do not bring them back as
/// Unavailable (they made `actor`'s forced restart target a node that is gone).
#[tokio::test(start_paused = true)]
async fn torn_down_nodes_leave_the_health_report_despite_late_goodbyes() {
    use orchestrator_core::ports::bus::EventBusExt;

    let world = world().await;
    assert!(world.deploy_preset("game-stack").await.body.success);
    assert!(world.deploy_preset("npc-brains").await.body.success);
    let torn_down = ["stack-auth", "stack-world", "stack-features"];
    for app in torn_down {
        let mut goodbye = orchestrator_core::events::ServiceHeartbeatEvent::new(
            uuid::Uuid::new_v4(),
            AppId::new(app),
            world.clock.now(),
            [("actor", ServiceHealthStatus::Healthy)],
        );
        goodbye.status = InstanceHealthStatus::ShuttingDown;
        world.bus.publish_event(&goodbye).await.unwrap();
    }
    world.settle().await;
    let report = world
        .service
        .services_health(ServiceHealthRequest::default())
        .await
        .unwrap()
        .body;
    let ghosts: Vec<_> = report
        .healthy_services
        .iter()
        .chain(&report.unhealthy_services)
        .filter(|e| torn_down.iter().any(|n| e.app_id.eq_ignore_ascii_case(n)))
        .collect();
    assert!(ghosts.is_empty(), "torn-down nodes reported: {ghosts:?}");
}

/// A hung engine call cannot hold a wave: with every `status` and `logs` call of the
/// backend hanging, a node that never heartbeats still fails its wave at `wave_timeout`.
/// Each status question is cut off by its timeout and asked again (the wait goes on
/// beside it), and the failed node's log read is bounded the same way.
#[tokio::test(start_paused = true)]
async fn a_hung_backend_status_call_does_not_push_the_wave_past_its_deadline() {
    let (wave_timeout, poll) = (Duration::from_secs(5), Duration::from_secs(1));
    let world = World::with_settings(|s| {
        s.wave_timeout = wave_timeout;
        s.container_status_poll_interval = poll;
    })
    .await;
    world.auto_heartbeats(Duration::from_millis(100));
    world.silenced.lock().unwrap().insert("quiet".to_owned());
    world.backend.hang(BackendOperation::Status);
    world.backend.hang(BackendOperation::Logs);
    let begun = tokio::time::Instant::now();
    let reply = tokio::time::timeout(
        Duration::from_secs(600),
        world
            .service
            .deploy(topology(vec![node("quiet", &["auth"])])),
    )
    .await
    .expect("the deploy answers although the engine never does")
    .unwrap();
    let took = begun.elapsed();
    assert_ne!(reply.outcome, Outcome::Ok, "the silent node fails its wave");
    let warnings = reply.body.warnings.clone().unwrap_or_default().join("\n");
    assert!(
        warnings.contains("quiet: not healthy within 5s"),
        "{warnings}"
    );
    // Time here is tokio's paused clock: the wave ended at its deadline, plus at most the
    // bounded log read of the failed node.
    assert!(took <= wave_timeout + poll, "{took:?}");
    let asked = world.backend.calls_of(BackendOperation::Status).len();
    assert!(
        asked >= 3,
        "a hung question is cut off and asked again: {asked}"
    );
}

/// The wave wait is woken by the heartbeat pipeline, not by a timer: the deploy answers
/// at the very instant (of tokio's paused clock) the node's healthy heartbeat is
/// published, at an offset no polling period divides.
#[tokio::test(start_paused = true)]
async fn a_healthy_heartbeat_ends_the_wave_wait_at_once() {
    let world = World::new().await;
    let begun = tokio::time::Instant::now();
    let deploy = {
        let service = world.service.clone();
        tokio::spawn(async move {
            service
                .deploy(topology(vec![node("solo", &["auth"])]))
                .await
        })
    };
    let beat_at = begun + Duration::from_millis(333);
    tokio::time::sleep_until(beat_at).await;
    assert_eq!(world.running(), ["solo"]);
    assert!(
        !deploy.is_finished(),
        "the wave waits for the node's heartbeat"
    );

    world
        .heartbeat("solo", &["auth"], ServiceHealthStatus::Healthy)
        .await;
    let reply = deploy.await.unwrap().unwrap();
    assert_eq!(reply.outcome, Outcome::Ok, "{:?}", reply.body.warnings);
    assert_eq!(
        tokio::time::Instant::now(),
        beat_at,
        "the wave ended with the heartbeat, without a polling delay"
    );
}

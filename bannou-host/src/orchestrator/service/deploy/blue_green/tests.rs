//! Blue-green deploys over the in-memory world (fake backend, auto-heartbeats, paused
//! time): new app-ids beside the old ones, one mappings version for the switch, the old
//! nodes stopped after it, and a failure before the switch that leaves everything as it
//! was. The order of the backend calls against the switch is asserted with mockall in
//! `service/wave_interactions.rs`.

use std::collections::BTreeMap;
use std::time::Duration;

use orchestrator_core::api::*;
use orchestrator_core::events::{FullServiceMappingsEvent, ServiceHealthStatus};
use orchestrator_core::memory::backend::BackendCall;
use orchestrator_core::ports::bus::EventBusExt;
use orchestrator_core::ports::store::OrchestratorStore;

use crate::orchestrator::service::Outcome;
use crate::orchestrator::service::testing::{World, tagged_trio, torn_down_apps};

/// `bg-auth`, `bg-acct` and `bg-realm`: [`tagged_trio`].
fn request(tag: &str, strategy: DeployStrategy) -> DeployRequest {
    tagged_trio("bg", tag, strategy)
}

fn calls(world: &World, deploys: bool) -> Vec<String> {
    world
        .backend
        .take_calls()
        .into_iter()
        .filter_map(|c| match c {
            BackendCall::Deploy(n) if deploys => Some(n.app_id.to_string()),
            BackendCall::Teardown { app_id, .. } if !deploys => Some(app_id.to_string()),
            _ => None,
        })
        .collect()
}

async fn deploy(
    world: &World,
    request: DeployRequest,
) -> crate::orchestrator::service::Answer<DeployResponse> {
    world
        .service
        .deploy(request)
        .await
        .expect("deploy answered")
}

#[tokio::test(start_paused = true)]
async fn changed_nodes_come_up_under_new_app_ids_and_all_routes_switch_in_one_version() {
    let world = World::with_live_nodes().await;
    let first = deploy(&world, request("1", DeployStrategy::Replace)).await;
    assert!(first.body.success, "{:?}", first.body.warnings);
    world.backend.take_calls();
    let mut mappings = world
        .bus
        .subscribe_events::<FullServiceMappingsEvent>()
        .await
        .unwrap();

    let answer = deploy(&world, request("2", DeployStrategy::BlueGreen)).await;

    assert_eq!(answer.outcome, Outcome::Ok, "{:?}", answer.body.warnings);
    let switch = answer
        .body
        .switched_routes
        .clone()
        .expect("the switch is named");
    assert_eq!(
        switch.replaced,
        BTreeMap::from([
            ("bg-acct".to_owned(), "bg-acct-green".to_owned()),
            ("bg-auth".to_owned(), "bg-auth-green".to_owned()),
        ])
    );
    assert_eq!(switch.routes["auth"], "bg-auth-green");
    // Only the changed nodes start (beside the old ones); the unchanged one is untouched.
    let mut started = calls(&world, true);
    started.sort();
    assert_eq!(started, ["bg-acct-green", "bg-auth-green"]);
    assert_eq!(
        world.running(),
        ["bg-acct-green", "bg-auth-green", "bg-realm"]
    );
    assert_eq!(world.route("auth"), "bg-auth-green");
    assert_eq!(world.route("account"), "bg-acct-green");
    assert_eq!(world.route("realm"), "bg-realm");
    // Every published table routes both services to the old nodes or both to the new
    // ones: the switch is one version, the one the answer names.
    tokio::time::sleep(Duration::from_millis(10)).await;
    let published = World::drain(&mut mappings);
    let mut switched_in = None;
    for event in &published {
        let pair = (
            event.mappings.get("auth").map(String::as_str),
            event.mappings.get("account").map(String::as_str),
        );
        match pair {
            (Some("bg-auth"), Some("bg-acct")) => assert!(switched_in.is_none(), "went back"),
            (Some("bg-auth-green"), Some("bg-acct-green")) => {
                switched_in.get_or_insert(event.version);
            }
            other => panic!("version {} routes {other:?}", event.version),
        }
        assert_eq!(
            event.mappings.get("realm").map(String::as_str),
            Some("bg-realm")
        );
    }
    assert_eq!(switched_in, switch.mappings_version, "{published:?}");
    // The configuration records the new app-ids.
    let cfg = world.store.current_config().await.unwrap().unwrap();
    let mut recorded: Vec<String> = cfg.nodes.iter().map(|n| n.app_id.to_string()).collect();
    recorded.sort();
    assert_eq!(recorded, ["bg-acct-green", "bg-auth-green", "bg-realm"]);
    assert_eq!(
        cfg.services["auth"].app_id.as_deref(),
        Some("bg-auth-green")
    );
    assert!(cfg.stable);
}

#[tokio::test(start_paused = true)]
async fn later_deploys_find_the_green_slot_and_a_second_blue_green_goes_back() {
    let world = World::with_live_nodes().await;
    assert!(
        deploy(&world, request("1", DeployStrategy::Replace))
            .await
            .body
            .success
    );
    assert!(
        deploy(&world, request("2", DeployStrategy::BlueGreen))
            .await
            .body
            .success
    );
    world.backend.take_calls();

    // The same topology again (replace): nothing to do, the green nodes are adopted.
    let same = deploy(&world, request("2", DeployStrategy::Replace)).await;
    assert!(same.body.success, "{:?}", same.body.warnings);
    assert!(
        world
            .backend
            .take_calls()
            .iter()
            .all(|c| !matches!(c, BackendCall::Deploy(_) | BackendCall::Teardown { .. }))
    );
    // A replacing change redeploys the green nodes where they run.
    assert!(
        deploy(&world, request("3", DeployStrategy::Replace))
            .await
            .body
            .success
    );
    let mut redeployed = calls(&world, true);
    redeployed.sort();
    assert_eq!(redeployed, ["bg-acct-green", "bg-auth-green"]);
    // Blue-green again: back to the first slot.
    let back = deploy(&world, request("4", DeployStrategy::BlueGreen)).await;
    assert!(back.body.success, "{:?}", back.body.warnings);
    assert_eq!(world.running(), ["bg-acct", "bg-auth", "bg-realm"]);
    assert_eq!(world.route("auth"), "bg-auth");
    // Teardown stops what the configuration records.
    let down = world
        .service
        .teardown(TeardownRequest::default())
        .await
        .unwrap();
    assert!(down.body.errors.is_none(), "{:?}", down.body.errors);
    assert!(world.running().is_empty(), "{:?}", world.running());
}

#[tokio::test(start_paused = true)]
async fn a_failure_before_the_switch_stops_the_new_nodes_and_touches_no_route() {
    let world = World::with_live_nodes().await;
    assert!(
        deploy(&world, request("1", DeployStrategy::Replace))
            .await
            .body
            .success
    );
    let version = world.store.latest_config_version().await.unwrap();
    world.set_status("bg-acct-green", ServiceHealthStatus::Unavailable);
    world.backend.take_calls();
    tokio::time::sleep(Duration::from_millis(10)).await;
    let mut mappings = world
        .bus
        .subscribe_events::<FullServiceMappingsEvent>()
        .await
        .unwrap();

    let answer = deploy(&world, request("2", DeployStrategy::BlueGreen)).await;

    assert_eq!(answer.outcome, Outcome::Failed);
    assert!(answer.body.switched_routes.is_none());
    let warnings = answer.body.warnings.clone().unwrap();
    assert!(
        warnings
            .iter()
            .any(|w| w.starts_with("bg-acct: not healthy")),
        "{warnings:?}"
    );
    assert!(
        warnings.iter().any(|w| w.contains("no route moved")),
        "{warnings:?}"
    );
    let mut stopped = torn_down_apps(&world.backend.take_calls());
    stopped.sort();
    assert_eq!(
        stopped,
        ["bg-acct-green", "bg-auth-green"],
        "only the new nodes stop"
    );
    assert_eq!(world.running(), ["bg-acct", "bg-auth", "bg-realm"]);
    assert_eq!(world.route("auth"), "bg-auth");
    assert_eq!(world.route("account"), "bg-acct");
    tokio::time::sleep(Duration::from_millis(10)).await;
    for event in World::drain(&mut mappings) {
        assert_eq!(
            event.mappings.get("auth").map(String::as_str),
            Some("bg-auth")
        );
        assert_eq!(
            event.mappings.get("account").map(String::as_str),
            Some("bg-acct")
        );
    }
    assert_eq!(world.store.latest_config_version().await.unwrap(), version);
}

//! Canary deploys over the in-memory world (fake backend, auto-heartbeats, paused time):
//! the split set in one version with the old app-ids primary, promote (the switch, the
//! old nodes stopped, the configuration recorded), abort (the split cleared, the new
//! nodes stopped), refusals, and the watcher's automatic abort and promotion.

use std::collections::BTreeMap;
use std::time::Duration;

use orchestrator_core::api::*;
use orchestrator_core::events::{
    DeploymentAction, FullServiceMappingsEvent, ServiceHealthStatus, WeightedTarget,
};
use orchestrator_core::memory::backend::BackendCall;
use orchestrator_core::ports::bus::EventBusExt;
use orchestrator_core::ports::store::OrchestratorStore;

use crate::orchestrator::service::testing::{World, tagged_trio, torn_down_apps};
use crate::orchestrator::service::{Answer, ErrorKind, Outcome};

/// `cn-auth`, `cn-acct` and `cn-realm`: [`tagged_trio`].
fn request(tag: &str, strategy: DeployStrategy) -> DeployRequest {
    tagged_trio("cn", tag, strategy)
}

fn canary(tag: &str, weight: i64, promote_after: Option<i64>) -> DeployRequest {
    DeployRequest {
        canary_weight: Some(weight),
        canary_promote_after_seconds: promote_after,
        ..request(tag, DeployStrategy::Canary)
    }
}

fn split(old: &str, new: &str, weight: u32) -> Vec<WeightedTarget> {
    vec![
        WeightedTarget {
            app_id: old.to_owned(),
            weight: 100 - weight,
        },
        WeightedTarget {
            app_id: new.to_owned(),
            weight,
        },
    ]
}

fn stopped(world: &World) -> Vec<String> {
    let mut apps = torn_down_apps(&world.backend.take_calls());
    apps.sort();
    apps
}

fn weighted(world: &World) -> BTreeMap<String, Vec<WeightedTarget>> {
    let state = world.service.deps().health.lock();
    state
        .routing
        .weighted()
        .into_iter()
        .map(|(s, w)| (s, w.to_wire()))
        .collect()
}

/// A world with the first version (tag 1) deployed (replace), its backend calls taken.
async fn world_with_first_version() -> World {
    let world = World::with_live_nodes().await;
    let first = world
        .service
        .deploy(request("1", DeployStrategy::Replace))
        .await
        .unwrap();
    assert!(first.body.success, "{:?}", first.body.warnings);
    world.backend.take_calls();
    world
}

/// A world with the first version deployed (replace) and the canary of tag 2 running.
async fn world_with_canary(
    weight: i64,
    promote_after: Option<i64>,
) -> (World, Answer<DeployResponse>) {
    let world = world_with_first_version().await;
    let answer = world
        .service
        .deploy(canary("2", weight, promote_after))
        .await
        .expect("canary deploy answered");
    assert_eq!(answer.outcome, Outcome::Ok, "{:?}", answer.body.warnings);
    (world, answer)
}

#[tokio::test(start_paused = true)]
async fn the_split_is_set_in_one_version_with_the_old_app_ids_primary() {
    let world = world_with_first_version().await;
    let version = world.store.latest_config_version().await.unwrap();
    let mut mappings = world
        .bus
        .subscribe_events::<FullServiceMappingsEvent>()
        .await
        .unwrap();

    let answer = world.service.deploy(canary("2", 10, None)).await.unwrap();

    assert_eq!(answer.outcome, Outcome::Ok, "{:?}", answer.body.warnings);
    let status = answer.body.canary.clone().expect("the canary is named");
    assert_eq!(status.weight, 10);
    assert_eq!(status.services, ["account", "auth"]);
    assert_eq!(status.new_nodes, ["cn-acct-green", "cn-auth-green"]);
    assert_eq!(status.old_nodes, ["cn-acct", "cn-auth"]);
    assert!(answer.body.switched_routes.is_none());
    // Both sides run; the routes (primaries) stay on the old nodes.
    assert_eq!(
        world.running(),
        [
            "cn-acct",
            "cn-acct-green",
            "cn-auth",
            "cn-auth-green",
            "cn-realm"
        ]
    );
    assert_eq!(world.route("auth"), "cn-auth");
    assert_eq!(world.route("account"), "cn-acct");
    assert_eq!(
        weighted(&world),
        BTreeMap::from([
            ("account".to_owned(), split("cn-acct", "cn-acct-green", 10)),
            ("auth".to_owned(), split("cn-auth", "cn-auth-green", 10)),
        ])
    );
    // Every published table keeps the old primaries; the split of both services arrives
    // in one version, the one the answer names.
    tokio::time::sleep(Duration::from_millis(10)).await;
    let published = World::drain(&mut mappings);
    let mut split_in = None;
    for event in &published {
        assert_eq!(
            event.mappings.get("auth").map(String::as_str),
            Some("cn-auth")
        );
        assert_eq!(
            event.mappings.get("account").map(String::as_str),
            Some("cn-acct")
        );
        match event.weighted_mappings.len() {
            0 => assert!(split_in.is_none(), "the split went away"),
            2 => {
                split_in.get_or_insert(event.version);
            }
            n => panic!("version {} splits {n} services", event.version),
        }
    }
    assert_eq!(split_in, status.mappings_version, "{published:?}");
    // The configuration is still the old one.
    assert_eq!(world.store.latest_config_version().await.unwrap(), version);
}

#[tokio::test(start_paused = true)]
async fn promote_switches_every_route_and_the_split_in_one_version_then_retires_the_old_nodes() {
    let (world, answer) = world_with_canary(10, None).await;
    let id = answer.body.deployment_id.clone();
    let mut mappings = world
        .bus
        .subscribe_events::<FullServiceMappingsEvent>()
        .await
        .unwrap();
    let mut events = world.deployment_events().await;

    let promoted = world
        .service
        .promote(CanaryActionRequest {
            deployment_id: Some(id.clone()),
        })
        .await
        .expect("promoted");

    let body = promoted.body;
    assert_eq!(body.outcome, CanaryOutcome::Promoted);
    assert_eq!(body.stopped_nodes, ["cn-acct", "cn-auth"]);
    assert_eq!(stopped(&world), ["cn-acct", "cn-auth"]);
    assert_eq!(
        world.running(),
        ["cn-acct-green", "cn-auth-green", "cn-realm"]
    );
    assert_eq!(world.route("auth"), "cn-auth-green");
    assert_eq!(world.route("account"), "cn-acct-green");
    assert!(weighted(&world).is_empty());
    tokio::time::sleep(Duration::from_millis(10)).await;
    // No published table routes a service to the new nodes while still splitting it.
    let published = World::drain(&mut mappings);
    let switched: Vec<i64> = published
        .iter()
        .filter(|e| e.mappings.get("auth").map(String::as_str) == Some("cn-auth-green"))
        .map(|e| {
            assert!(e.weighted_mappings.is_empty(), "{e:?}");
            e.version
        })
        .collect();
    assert_eq!(switched.first().copied(), body.mappings_version);
    // Recorded as a successful deploy's configuration, ended `completed`.
    let cfg = world.store.current_config().await.unwrap().unwrap();
    let mut recorded: Vec<String> = cfg.nodes.iter().map(|n| n.app_id.to_string()).collect();
    recorded.sort();
    assert_eq!(recorded, ["cn-acct-green", "cn-auth-green", "cn-realm"]);
    assert!(cfg.stable);
    let ended: Vec<_> = World::drain(&mut events)
        .into_iter()
        .filter(|e| e.deployment_id == id)
        .map(|e| e.action)
        .collect();
    assert_eq!(ended, [DeploymentAction::Completed]);
    // The lock is free again: a later deploy runs.
    let again = world
        .service
        .deploy(request("2", DeployStrategy::Replace))
        .await
        .unwrap();
    assert!(again.body.success, "{:?}", again.body.warnings);
}

#[tokio::test(start_paused = true)]
async fn abort_clears_the_split_then_stops_only_the_new_nodes() {
    let (world, answer) = world_with_canary(25, None).await;
    let version = world.store.latest_config_version().await.unwrap();
    let mut events = world.deployment_events().await;

    let aborted = world
        .service
        .abort(CanaryActionRequest::default())
        .await
        .expect("aborted");

    let body = aborted.body;
    assert_eq!(body.outcome, CanaryOutcome::Aborted);
    assert_eq!(body.reason, "requested");
    assert_eq!(body.stopped_nodes, ["cn-acct-green", "cn-auth-green"]);
    assert_eq!(stopped(&world), ["cn-acct-green", "cn-auth-green"]);
    assert_eq!(world.running(), ["cn-acct", "cn-auth", "cn-realm"]);
    assert!(weighted(&world).is_empty());
    assert_eq!(world.route("auth"), "cn-auth");
    assert!(body.mappings_version > answer.body.canary.unwrap().mappings_version);
    assert_eq!(world.store.latest_config_version().await.unwrap(), version);
    let ended: Vec<_> = World::drain(&mut events)
        .into_iter()
        .filter(|e| e.deployment_id == answer.body.deployment_id)
        .collect();
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0].action, DeploymentAction::Failed);
    assert!(
        ended[0]
            .error
            .as_deref()
            .unwrap()
            .contains("canary aborted")
    );
    // Nothing runs any more: a second abort is refused.
    let again = world.service.abort(CanaryActionRequest::default()).await;
    assert_eq!(again.unwrap_err().kind, ErrorKind::NotFound);
}

#[tokio::test(start_paused = true)]
async fn without_a_canary_promote_and_abort_are_refused_and_while_one_runs_other_changes_are() {
    let world = World::with_live_nodes().await;
    for result in [
        world.service.promote(CanaryActionRequest::default()).await,
        world.service.abort(CanaryActionRequest::default()).await,
    ] {
        let err = result.unwrap_err();
        assert_eq!(err.kind, ErrorKind::NotFound);
        assert!(err.body.error.contains("no canary"), "{}", err.body.error);
    }
    drop(world);

    let (world, answer) = world_with_canary(10, None).await;
    let id = answer.body.deployment_id;
    // Another deploy, a teardown: a conflict that names the canary.
    let deploy = world
        .service
        .deploy(request("3", DeployStrategy::Replace))
        .await
        .unwrap_err();
    assert_eq!(deploy.kind, ErrorKind::Conflict);
    assert!(deploy.body.error.contains(&id), "{}", deploy.body.error);
    assert!(
        deploy.body.error.contains("canary"),
        "{}",
        deploy.body.error
    );
    let teardown = world
        .service
        .teardown(TeardownRequest::default())
        .await
        .unwrap_err();
    assert_eq!(teardown.kind, ErrorKind::Conflict);
    // A promote naming another deploy ends nothing.
    let wrong = world
        .service
        .promote(CanaryActionRequest {
            deployment_id: Some("someone-else".into()),
        })
        .await
        .unwrap_err();
    assert_eq!(wrong.kind, ErrorKind::Conflict);
    assert_eq!(world.route("auth"), "cn-auth");
    assert_eq!(weighted(&world).len(), 2);
    assert!(stopped(&world).is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_new_node_turning_unhealthy_aborts_the_canary_by_itself() {
    let (world, answer) = world_with_canary(10, Some(3600)).await;
    let mut events = world.deployment_events().await;

    world.set_status("cn-auth-green", ServiceHealthStatus::Unavailable);
    // A beat (100 ms) reports it; the watcher wakes on it.
    tokio::time::sleep(Duration::from_secs(2)).await;

    assert!(world.service.running_canary().is_none());
    assert_eq!(stopped(&world), ["cn-acct-green", "cn-auth-green"]);
    assert_eq!(world.running(), ["cn-acct", "cn-auth", "cn-realm"]);
    assert!(weighted(&world).is_empty());
    assert_eq!(world.route("auth"), "cn-auth");
    let failed: Vec<_> = World::drain(&mut events)
        .into_iter()
        .filter(|e| e.deployment_id == answer.body.deployment_id)
        .collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    let error = failed[0].error.clone().unwrap();
    assert!(
        error.contains("cn-auth-green: auth (Unavailable)"),
        "{error}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_canary_healthy_for_its_period_is_promoted_by_itself() {
    let (world, _) = world_with_canary(10, Some(30)).await;

    tokio::time::sleep(Duration::from_secs(20)).await;
    assert!(
        world.service.running_canary().is_some(),
        "not before its period"
    );
    assert!(stopped(&world).is_empty());

    tokio::time::sleep(Duration::from_secs(11)).await;
    assert!(world.service.running_canary().is_none());
    assert_eq!(stopped(&world), ["cn-acct", "cn-auth"]);
    assert_eq!(world.route("auth"), "cn-auth-green");
    assert!(weighted(&world).is_empty());
    let cfg = world.store.current_config().await.unwrap().unwrap();
    assert!(
        cfg.nodes
            .iter()
            .any(|n| n.app_id.as_str() == "cn-auth-green")
    );
}

#[tokio::test(start_paused = true)]
async fn a_canary_with_no_changed_node_is_refused_before_anything_moves() {
    let world = world_with_first_version().await;
    let err = world
        .service
        .deploy(canary("1", 10, None))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Invalid);
    assert!(err.body.error.contains("canary"), "{}", err.body.error);
    assert!(
        world
            .backend
            .take_calls()
            .iter()
            .all(|c| !matches!(c, BackendCall::Deploy(_) | BackendCall::Teardown { .. }))
    );
}

#[tokio::test(start_paused = true)]
async fn a_replica_that_stops_leading_lets_go_of_its_canary_and_the_next_leader_reverts_it() {
    use crate::orchestrator::leader::LeaderState;
    let (world, answer) = world_with_canary(10, Some(5)).await;
    let id = answer.body.deployment_id.clone();

    world.leadership.send_replace(LeaderState::Follower {
        holder: Some("other".into()),
        token: Some(9),
    });
    // Past the watcher's tick and the promotion period: nothing is promoted here.
    tokio::time::sleep(Duration::from_secs(10)).await;

    assert!(world.service.running_canary().is_none());
    assert!(stopped(&world).is_empty(), "no node stopped");
    assert_eq!(world.route("auth"), "cn-auth");
    // The deploy record stays for the next leader's reconciliation to revert.
    let record = world.store.deploy_in_progress().await.unwrap();
    assert_eq!(record.and_then(|r| r.deployment_id), Some(id));
    let err = world
        .service
        .promote(CanaryActionRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unavailable);

    // Leading again (as the next leader would), the sweep reverts the cut-off canary to
    // the last stable version: the new nodes stop, the old ones serve.
    world
        .leadership
        .send_replace(LeaderState::Leader { token: 10 });
    let sweep = world
        .service
        .reconcile(false, Duration::ZERO)
        .await
        .unwrap();
    assert!(sweep.interrupted.is_some(), "{sweep:?}");
    assert_eq!(world.running(), ["cn-acct", "cn-auth", "cn-realm"]);
    assert_eq!(world.route("auth"), "cn-auth");
    assert_eq!(world.store.deploy_in_progress().await.unwrap(), None);
}

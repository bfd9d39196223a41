//! The reconciliation sweep against the fake backend: adoption and redeploy of the current
//! configuration's nodes, restart of a pool worker whose container was killed (its lease
//! kept), removal of containers nobody owns once older than the grace.

use crate::orchestrator::service::Outcome;
use std::time::Duration;

use orchestrator_core::AppId;
use orchestrator_core::api::*;
use orchestrator_core::events::ServiceHealthStatus;
use orchestrator_core::ports::backend::{
    BackendError, BackendOperation, ContainerBackend, TeardownOptions,
};
use orchestrator_core::ports::store::OrchestratorStore;
use orchestrator_pools::{AcquireRequest, LeaseStore, WorkerState};

use super::Sweeping;
use crate::orchestrator::service::testing::{World, topology};

/// Saves, as a previous process would have, a configuration of one node `name` hosting
/// `auth`, on `backend` when given.
async fn save_auth_node(
    world: &World,
    name: &str,
    backend: Option<orchestrator_core::events::BackendType>,
) {
    let mut cfg = orchestrator_core::records::DeploymentConfiguration::empty(world.clock.now());
    cfg.backend = backend;
    cfg.nodes = vec![orchestrator_core::ResolvedNode {
        name: name.into(),
        app_id: AppId::new(name),
        services: vec!["auth".into()],
        routed_services: vec!["auth".into()],
        environment: Default::default(),
        replicas: 1,
        mesh_enabled: true,
    }];
    world
        .store
        .save_config(&cfg, Duration::from_secs(3600))
        .await
        .unwrap();
}

/// A container vanishing behind the control plane's back (a crash, `docker rm -f`).
async fn kill(world: &World, app: &str) {
    world
        .backend
        .teardown(&AppId::new(app), &TeardownOptions::default())
        .await
        .expect("the fake backend tears down");
}

#[tokio::test(start_paused = true)]
async fn a_sweep_adopts_running_nodes_and_deploys_the_missing_ones_again() {
    let world = World::with_live_nodes().await;
    let answer = world
        .service
        .deploy(topology(&[
            ("rec-auth", &["auth"]),
            ("rec-account", &["account"]),
        ]))
        .await
        .unwrap();
    assert_eq!(answer.outcome, Outcome::Ok, "{:?}", answer.body.warnings);
    kill(&world, "rec-account").await;
    assert_eq!(world.running(), ["rec-auth"]);

    let sweep = world.service.reconcile(true, Duration::ZERO).await.unwrap();
    assert_eq!(sweep.interrupted, None);
    assert_eq!(sweep.adopted, [AppId::new("rec-auth")]);
    assert_eq!(sweep.redeployed, [AppId::new("rec-account")]);
    assert!(
        sweep.removed.is_empty() && sweep.errors.is_empty(),
        "{sweep:?}"
    );
    assert!(sweep.republished);
    assert_eq!(world.running(), ["rec-account", "rec-auth"]);
    // The redeployed node is started exactly as the deploy started it.
    let node = world.backend.node(&AppId::new("rec-account")).unwrap();
    assert_eq!(
        node.deployment
            .environment
            .get("ACCOUNT_SERVICE_ENABLED")
            .map(String::as_str),
        Some("true")
    );
    assert_eq!(world.route("account"), "rec-account");

    // Converged: the next sweep only adopts.
    let again = world
        .service
        .reconcile(false, Duration::ZERO)
        .await
        .unwrap();
    assert!(again.is_quiet(), "{again:?}");
    assert_eq!(again.adopted.len(), 2);
    assert!(!again.republished);
}

#[tokio::test(start_paused = true)]
async fn after_a_restart_with_an_empty_routing_table_the_sweep_routes_the_adopted_nodes() {
    let world = World::new().await; // no heartbeats: only the sweep can route
    world.run_node("rt-auth", &["auth"]).await;
    save_auth_node(&world, "rt-auth", None).await;
    assert_eq!(world.route("auth"), "bannou");

    let sweep = world.service.reconcile(true, Duration::ZERO).await.unwrap();
    assert_eq!(sweep.adopted, [AppId::new("rt-auth")]);
    assert!(sweep.redeployed.is_empty(), "{sweep:?}");
    assert_eq!(world.route("auth"), "rt-auth");
}

#[tokio::test(start_paused = true)]
async fn containers_nobody_owns_are_removed_once_older_than_the_grace() {
    let world = World::with_live_nodes().await;
    let answer = world
        .service
        .deploy(topology(&[
            ("own-auth", &["auth"]),
            ("old-chat", &["chat"]),
        ]))
        .await
        .unwrap();
    assert_eq!(answer.outcome, Outcome::Ok, "{:?}", answer.body.warnings);
    // The next version drops old-chat, but tearing it down fails: it is left running,
    // named by no configuration any more.
    world.backend.fail_next(
        BackendOperation::Teardown,
        &AppId::new("old-chat"),
        BackendError::runtime("engine hiccup"),
    );
    let answer = world
        .service
        .deploy(topology(&[("own-auth", &["auth"])]))
        .await
        .unwrap();
    assert!(
        world.running().contains(&"old-chat".to_owned()),
        "{:?}",
        answer.body
    );
    // And a container with our labels this control plane never started (another control
    // plane sharing the engine).
    world.run_node("foreign-realm", &["realm"]).await;

    let grace = Duration::from_secs(60);
    let young = world.service.reconcile(false, grace).await.unwrap();
    assert!(
        young.removed.is_empty(),
        "younger than the grace: {young:?}"
    );
    assert_eq!(world.running(), ["foreign-realm", "old-chat", "own-auth"]);

    tokio::time::sleep(grace).await;
    let sweep = world.service.reconcile(false, grace).await.unwrap();
    assert_eq!(sweep.removed, [AppId::new("old-chat")], "{sweep:?}");
    assert_eq!(
        world.running(),
        ["foreign-realm", "own-auth"],
        "only what this control plane started is removed"
    );
    assert_ne!(world.route("chat"), "old-chat", "its routes went back");
}

#[tokio::test(start_paused = true)]
async fn a_killed_pool_worker_is_started_again_and_keeps_its_lease() {
    let world = World::with_live_nodes().await;
    let pool = world.pool("rec-pool", 2, 4).await;
    tokio::time::sleep(Duration::from_millis(300)).await; // first heartbeats: Available
    assert_eq!(world.workers(&pool, WorkerState::Available).await.len(), 2);
    let now = world.clock.now();
    let acquired = world
        .leases
        .acquire(&pool, AcquireRequest::new("npc-1"), now)
        .await
        .unwrap();
    let lease = acquired.outcome.lease().cloned().expect("a lease");
    kill(&world, lease.app_id.as_str()).await;
    assert_eq!(world.running().len(), 1);

    let sweep = world
        .service
        .reconcile(false, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(
        sweep.workers_restarted,
        std::slice::from_ref(&lease.app_id),
        "{sweep:?}"
    );
    assert!(
        sweep.removed.is_empty(),
        "workers are never orphans: {sweep:?}"
    );
    assert_eq!(world.running().len(), 2);
    let node = world.backend.node(&lease.app_id).unwrap();
    assert_eq!(
        node.deployment
            .labels
            .get(crate::orchestrator::pool_scaler::POOL_LABEL)
            .map(String::as_str),
        Some("rec-pool")
    );

    // The lease is untouched: same worker, still Leased, and it renews with its token.
    let leased = world.workers(&pool, WorkerState::Leased).await;
    assert_eq!(leased.len(), 1);
    assert_eq!(leased[0].lease_id, Some(lease.lease_id));
    let renewed = world
        .leases
        .renew(
            &pool,
            lease.lease_id,
            lease.fencing_token,
            Duration::from_secs(30),
            world.clock.now(),
        )
        .await
        .unwrap();
    assert_eq!(renewed.app_id, lease.app_id);
    // And nobody else gets it: the other worker is the only one left to lease.
    let second = world
        .leases
        .acquire(&pool, AcquireRequest::new("npc-2"), world.clock.now())
        .await
        .unwrap();
    assert_ne!(second.outcome.lease().unwrap().app_id, lease.app_id);
}

#[tokio::test(start_paused = true)]
async fn a_young_pending_worker_is_left_to_start() {
    let world = World::new().await; // no heartbeats: workers stay Pending
    let pool = world.pool("young-pool", 1, 2).await;
    let pending = world.workers(&pool, WorkerState::Pending).await;
    assert_eq!(pending.len(), 1);
    kill(&world, pending[0].app_id.as_str()).await;

    let grace = Duration::from_secs(60);
    let sweep = world.service.reconcile(false, grace).await.unwrap();
    assert!(sweep.workers_restarted.is_empty(), "{sweep:?}");
    tokio::time::sleep(grace).await;
    let sweep = world.service.reconcile(false, grace).await.unwrap();
    assert_eq!(sweep.workers_restarted, [pending[0].app_id.clone()]);
    world
        .heartbeat(
            pending[0].app_id.as_str(),
            &["asset"],
            ServiceHealthStatus::Healthy,
        )
        .await;
    world.settle().await;
    assert_eq!(world.workers(&pool, WorkerState::Available).await.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_sweep_waits_for_a_running_deploy() {
    let world = World::with_live_nodes().await;
    world
        .silenced
        .lock()
        .unwrap()
        .insert("slow-auth".to_owned());
    let service = world.service.clone();
    let deploy =
        tokio::spawn(async move { service.deploy(topology(&[("slow-auth", &["auth"])])).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let refused = world
        .service
        .reconcile(false, Duration::ZERO)
        .await
        .unwrap_err();
    assert_eq!(refused.status(), 409, "{}", refused.body.error);
    assert_eq!(
        world
            .store
            .deploy_in_progress()
            .await
            .unwrap()
            .map(|c| c.nodes.len()),
        Some(1),
        "the running deploy's record is not taken for a cut-off one"
    );
    deploy.abort();
}

#[tokio::test(start_paused = true)]
async fn a_node_stopped_moments_ago_is_taken_for_a_restart_then_deployed_again() {
    let world = World::with_live_nodes().await;
    let answer = world
        .service
        .deploy(topology(&[("rs-auth", &["auth"])]))
        .await
        .unwrap();
    assert_eq!(answer.outcome, Outcome::Ok, "{:?}", answer.body.warnings);
    let app = AppId::new("rs-auth");
    world.backend.set_status(&app, ContainerStatusType::Stopped);
    world.backend.set_stopped_at(&app, world.clock.now());

    let grace = Duration::from_secs(10);
    let sweep = world.service.reconcile(false, grace).await.unwrap();
    assert!(
        sweep.redeployed.is_empty(),
        "a restart in progress: {sweep:?}"
    );
    assert_eq!(
        world.backend.node(&app).unwrap().status,
        ContainerStatusType::Stopped
    );
    tokio::time::sleep(grace).await;
    let sweep = world.service.reconcile(false, grace).await.unwrap();
    assert_eq!(sweep.redeployed, std::slice::from_ref(&app), "{sweep:?}");
    assert_eq!(
        world.backend.node(&app).unwrap().status,
        ContainerStatusType::Running
    );
}

#[tokio::test(start_paused = true)]
async fn a_deploy_arriving_during_a_sweep_waits_for_it_instead_of_409() {
    let world = World::with_live_nodes().await;
    // A sweep holding the lifecycle lock, as `reconcile` does while it works.
    let guard = world.service.lifecycle.clone().lock_owned().await;
    let flag = Sweeping::mark(&world.service.sweeping);
    let service = world.service.clone();
    let deploy =
        tokio::spawn(async move { service.deploy(topology(&[("after-auth", &["auth"])])).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!deploy.is_finished(), "the deploy waits for the sweep");
    drop((flag, guard));
    let answer = deploy
        .await
        .unwrap()
        .expect("deployed once the sweep ended");
    assert_eq!(answer.outcome, Outcome::Ok, "{:?}", answer.body.warnings);

    // Without a sweep, a second lifecycle operation still answers 409 at once.
    let _deploy_in_progress = world.service.lifecycle.clone().lock_owned().await;
    let refused = world
        .service
        .deploy(topology(&[("other-auth", &["auth"])]))
        .await
        .unwrap_err();
    assert_eq!(refused.status(), 409, "{}", refused.body.error);
}

#[tokio::test(start_paused = true)]
async fn a_deploy_that_loses_the_leadership_stops_before_its_next_wave_for_the_leader_to_reconcile()
{
    use crate::orchestrator::leader::LeaderState;
    let world = World::with_live_nodes().await;
    world
        .silenced
        .lock()
        .unwrap()
        .insert("lose-auth".to_owned());
    let service = world.service.clone();
    let deploy = tokio::spawn(async move {
        service
            .deploy(topology(&[
                ("lose-auth", &["auth"]),
                ("lose-realm", &["realm"]),
            ]))
            .await
    });
    for _ in 0..100 {
        if world.running().contains(&"lose-auth".to_owned()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(world.running(), ["lose-auth"], "wave 1 started");
    // Another replica takes over while wave 1 waits; then wave 1's node reports healthy.
    world.leadership.send_replace(LeaderState::Follower {
        holder: Some("replica-b".to_owned()),
        token: Some(2),
    });
    world.silenced.lock().unwrap().clear();
    let answer = deploy.await.unwrap().unwrap();
    assert_eq!(answer.outcome, Outcome::Failed);
    let notes = answer.body.warnings.clone().unwrap_or_default().join("\n");
    assert!(notes.contains("stopped leading"), "{notes}");
    assert!(notes.contains("Not reverted"), "{notes}");
    assert_eq!(
        world.running(),
        ["lose-auth"],
        "wave 2 never started, nothing reverted"
    );
    assert!(
        world.store.deploy_in_progress().await.unwrap().is_some(),
        "the record is left for the leader"
    );

    // Leading again (a new term), the sweep treats it as cut off: with no stable version,
    // what it started is removed.
    world
        .leadership
        .send_replace(LeaderState::Leader { token: 3 });
    let sweep = world
        .service
        .reconcile(false, Duration::ZERO)
        .await
        .unwrap();
    assert!(sweep.interrupted.is_some(), "{sweep:?}");
    assert!(world.running().is_empty(), "{:?}", world.running());
    assert_eq!(world.store.deploy_in_progress().await.unwrap(), None);
}

#[tokio::test(start_paused = true)]
async fn after_a_restart_the_sweep_reconciles_on_the_backend_the_configuration_records() {
    use orchestrator_core::events::BackendType;
    use orchestrator_core::memory::backend::FakeBackend;
    let clock: std::sync::Arc<dyn orchestrator_core::time::Clock> =
        std::sync::Arc::new(crate::clock::TokioClock::system());
    let compose = FakeBackend::new(clock).with_backend_type(BackendType::Compose);
    let world = World::with_backends(|_| {}, vec![std::sync::Arc::new(compose.clone())]).await;
    // What a previous process recorded: one node, on Compose; this process has not
    // deployed yet, so nothing is active and the default is in-process.
    save_auth_node(&world, "cmp-auth", Some(BackendType::Compose)).await;
    assert_eq!(world.service.deps().backends.active_type(), None);

    let sweep = world.service.reconcile(true, Duration::ZERO).await.unwrap();
    assert_eq!(sweep.redeployed, [AppId::new("cmp-auth")], "{sweep:?}");
    assert!(
        compose.node(&AppId::new("cmp-auth")).is_some(),
        "on Compose"
    );
    assert!(world.running().is_empty(), "nothing on the default backend");
    assert_eq!(
        world.service.deps().backends.active_type(),
        Some(BackendType::Compose)
    );
}

#[tokio::test(start_paused = true)]
async fn a_configuration_without_node_records_is_adopted_never_guessed() {
    let world = World::new().await;
    // As upstream writes it: services with their app-ids, no node records.
    let mut cfg = orchestrator_core::records::DeploymentConfiguration::empty(world.clock.now());
    for (service, app) in [("auth", "up-auth"), ("account", "up-account")] {
        cfg.services.insert(
            service.to_owned(),
            orchestrator_core::records::ServiceDeploymentConfig {
                enabled: true,
                app_id: Some(app.to_owned()),
                replicas: 1,
                settings: Default::default(),
            },
        );
    }
    world
        .store
        .save_config(&cfg, Duration::from_secs(3600))
        .await
        .unwrap();
    world.run_node("up-auth", &["auth"]).await;

    let sweep = world.service.reconcile(true, Duration::ZERO).await.unwrap();
    assert_eq!(sweep.adopted, [AppId::new("up-auth")]);
    assert!(sweep.redeployed.is_empty(), "{sweep:?}");
    assert!(
        sweep
            .errors
            .iter()
            .any(|e| e.contains("up-account") && e.contains("deploy again")),
        "{sweep:?}"
    );
    assert_eq!(world.running(), ["up-auth"]);
}

//! The backend calls a deploy's waves promise, asserted as interactions with mockall: the
//! order of the calls and how often each happens, which a fake's end state cannot say.
//! The mock hands each expected call to the scriptable [`FakeBackend`], which keeps the
//! nodes the waves wait on; an operation with no expectation panics when called.

use std::sync::Arc;
use std::time::Duration;

use futures::executor::block_on;
use mockall::Sequence;
use orchestrator_core::AppId;
use orchestrator_core::api::{DeployRequest, DeployResponse};
use orchestrator_core::memory::backend::FakeBackend;
use orchestrator_core::ports::backend::{BackendError, ContainerBackend, MockContainerBackend};

use super::testing::World;

/// A mock whose reads (type, availability, status, list, logs) go to `fake` as often as
/// asked; every change (deploy, teardown, scale, restart, prune) must be expected by the
/// test.
fn reading(fake: &FakeBackend) -> MockContainerBackend {
    let mut mock = MockContainerBackend::new();
    let f = fake.clone();
    mock.expect_backend_type()
        .returning(move || f.backend_type());
    let f = fake.clone();
    mock.expect_check_availability()
        .returning(move || block_on(f.check_availability()));
    let f = fake.clone();
    mock.expect_status()
        .returning(move |app| block_on(f.status(app)));
    let f = fake.clone();
    mock.expect_list().returning(move || block_on(f.list()));
    let f = fake.clone();
    mock.expect_logs()
        .returning(move |app, query| block_on(f.logs(app, query)));
    let f = fake.clone();
    mock.expect_list_infrastructure()
        .returning(move || block_on(f.list_infrastructure()));
    mock
}

/// Expects exactly one deploy of `app`, next in `order`, handed to `fake`.
fn deploys_once(
    mock: &mut MockContainerBackend,
    order: &mut Sequence,
    fake: &FakeBackend,
    app: &str,
) {
    let (f, app) = (fake.clone(), AppId::new(app));
    mock.expect_deploy_node()
        .withf(move |node| node.app_id == app)
        .times(1)
        .in_sequence(order)
        .returning(move |node| block_on(f.deploy_node(node)));
}

/// Expects exactly one teardown of `app`, next in `order`, handed to `fake`.
fn tears_down_once(
    mock: &mut MockContainerBackend,
    order: &mut Sequence,
    fake: &FakeBackend,
    app: &str,
) {
    let (f, app) = (fake.clone(), AppId::new(app));
    mock.expect_teardown()
        .withf(move |a, _| *a == app)
        .times(1)
        .in_sequence(order)
        .returning(move |a, options| block_on(f.teardown(a, options)));
}

/// Expects exactly one deploy of `app`, next in `order`, failing as an image pull would.
fn fails_to_deploy_once(mock: &mut MockContainerBackend, order: &mut Sequence, app: &str) {
    let app = AppId::new(app);
    mock.expect_deploy_node()
        .withf(move |node| node.app_id == app)
        .times(1)
        .in_sequence(order)
        .returning(|_| Err(BackendError::runtime("image pull failed")));
}

/// A world whose in-process backend is the mock `script` sets up over the world's fake,
/// with nodes that heartbeat.
async fn world(script: impl FnOnce(&FakeBackend) -> MockContainerBackend) -> World {
    let world = World::wrapping_backend(|fake| Arc::new(script(&fake))).await;
    world.auto_heartbeats(Duration::from_millis(100));
    world
}

async fn deploy(world: &World, preset: &str, auto_revert: bool) -> DeployResponse {
    world
        .service
        .deploy(DeployRequest {
            preset: Some(preset.to_owned()),
            auto_revert,
            ..DeployRequest::default()
        })
        .await
        .expect("deploy answered")
        .body
}

#[tokio::test(start_paused = true)]
async fn a_replacing_deploy_starts_the_new_node_then_stops_the_old_ones_highest_layer_first_once() {
    let world = world(|fake| {
        let mut mock = reading(fake);
        let mut order = Sequence::new();
        for app in ["stack-auth", "stack-world", "stack-features", "bannou-auth"] {
            deploys_once(&mut mock, &mut order, fake, app);
        }
        // game-stack's waves were L1, L2, L4: they stop L4 first, L1 last.
        for app in ["stack-features", "stack-world", "stack-auth"] {
            tears_down_once(&mut mock, &mut order, fake, app);
        }
        mock
    })
    .await;

    assert!(deploy(&world, "game-stack", true).await.success);
    let replaced = deploy(&world, "split-auth", true).await;

    assert!(replaced.success, "{:?}", replaced.warnings);
    assert_eq!(world.running(), ["bannou-auth"]);
    // Dropping the world drops the mock, which checks every `times(1)`.
}

#[tokio::test(start_paused = true)]
async fn a_failed_wave_calls_no_later_backend_operation() {
    let world = world(|fake| {
        let mut mock = reading(fake);
        let mut order = Sequence::new();
        deploys_once(&mut mock, &mut order, fake, "stack-auth");
        fails_to_deploy_once(&mut mock, &mut order, "stack-world");
        // No expectation for stack-features' deploy, nor for any teardown, scale,
        // restart or prune: such a call would panic.
        mock
    })
    .await;

    let answer = deploy(&world, "game-stack", false).await;

    assert!(!answer.success);
    assert!(
        answer
            .warnings
            .unwrap_or_default()
            .contains(&"stack-world: runtime error: image pull failed".to_owned())
    );
    assert_eq!(
        world.running(),
        ["stack-auth"],
        "left in place, nothing more"
    );
}

#[tokio::test(start_paused = true)]
async fn a_failed_wave_is_reverted_by_stopping_what_started_once_and_deploying_nothing_more() {
    let world = world(|fake| {
        let mut mock = reading(fake);
        let mut order = Sequence::new();
        deploys_once(&mut mock, &mut order, fake, "stack-auth");
        deploys_once(&mut mock, &mut order, fake, "stack-world");
        fails_to_deploy_once(&mut mock, &mut order, "stack-features");
        // No stable version: the revert removes what the deploy started, highest first.
        tears_down_once(&mut mock, &mut order, fake, "stack-world");
        tears_down_once(&mut mock, &mut order, fake, "stack-auth");
        mock
    })
    .await;

    let answer = deploy(&world, "game-stack", true).await;

    assert!(!answer.success);
    assert!(world.running().is_empty());
}

/// Blue-green (D62): the new nodes start once each, wave by wave, beside the old ones; an
/// old node is stopped once, and only when no route leads to an old node any more (the
/// switch happened) and every new node runs.
#[tokio::test(start_paused = true)]
async fn a_blue_green_deploy_stops_each_old_node_once_and_only_after_the_switch() {
    use std::sync::{Arc, Mutex, OnceLock};

    use crate::orchestrator::heartbeats::SharedHealth;

    const OLD: [&str; 3] = ["stack-auth", "stack-world", "stack-features"];
    let health: Arc<OnceLock<SharedHealth>> = Arc::default();
    let seen_at_stop: Arc<Mutex<Vec<(String, Vec<String>)>>> = Arc::default();
    let world = world(|fake| {
        let mut mock = reading(fake);
        let mut order = Sequence::new();
        for app in OLD {
            deploys_once(&mut mock, &mut order, fake, app);
        }
        for app in OLD.map(|a| format!("{a}-green")) {
            deploys_once(&mut mock, &mut order, fake, &app);
        }
        for app in OLD {
            let (f, app) = (fake.clone(), AppId::new(app));
            let (health, seen) = (health.clone(), seen_at_stop.clone());
            mock.expect_teardown()
                .withf(move |a, _| *a == app)
                .times(1)
                .returning(move |a, options| {
                    let routed: Vec<String> = {
                        let state = health.get().expect("set after the build").lock();
                        state
                            .routing
                            .mappings()
                            .values()
                            .map(ToString::to_string)
                            .collect()
                    };
                    seen.lock().unwrap().push((a.to_string(), routed));
                    block_on(f.teardown(a, options))
                });
        }
        mock
    })
    .await;
    health
        .set(world.service.deps().health.clone())
        .unwrap_or_else(|_| unreachable!());
    assert!(deploy(&world, "game-stack", true).await.success);

    let answer = world
        .service
        .deploy(DeployRequest {
            preset: Some("game-stack".to_owned()),
            environment: Some([("TAG".to_owned(), "2".to_owned())].into()),
            strategy: orchestrator_core::api::DeployStrategy::BlueGreen,
            ..DeployRequest::default()
        })
        .await
        .expect("deploy answered")
        .body;

    assert!(answer.success, "{:?}", answer.warnings);
    let seen = seen_at_stop.lock().unwrap().clone();
    assert_eq!(seen.len(), 3, "{seen:?}");
    for (stopped, routed) in &seen {
        assert!(!routed.is_empty());
        assert!(
            routed.iter().all(|a| a.ends_with("-green")),
            "{stopped} stopped while routes led to {routed:?}"
        );
    }
    assert_eq!(
        world.running(),
        [
            "stack-auth-green",
            "stack-features-green",
            "stack-world-green"
        ]
    );
    // Dropping the world drops the mock, which checks every `times(1)`.
}

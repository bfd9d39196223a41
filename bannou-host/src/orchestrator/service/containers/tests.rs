//! Unit tests of `orchestrator::service::containers`.

use crate::orchestrator::service::Outcome;
use std::time::Duration;

use orchestrator_core::api::*;
use orchestrator_core::events::{BackendType, ServiceHealthStatus};
use orchestrator_core::memory::backend::BackendCall;
use orchestrator_core::ports::backend::{Availability, BackendOperation};
use orchestrator_core::{AppId, Timestamp};

use super::super::testing::World;
use super::NOT_CONFIGURED;

fn status_of(app: &str) -> GetContainerStatusRequest {
    GetContainerStatusRequest {
        app_name: app.to_owned(),
    }
}

fn clean(targets: &[CleanTarget], force: bool) -> CleanRequest {
    CleanRequest {
        targets: targets.to_vec(),
        force,
        older_than: None,
        label_filter: None,
    }
}

fn ago(world: &World, d: Duration) -> Timestamp {
    world.clock.now() - d
}

#[tokio::test(start_paused = true)]
async fn backends_list_the_registered_one_as_active_and_the_upstream_four() {
    let world = World::new().await;
    world
        .service
        .deps()
        .backends
        .set_active(BackendType::InProcess);
    let answer = world
        .service
        .backends(ListBackendsRequest::default())
        .await
        .unwrap();
    assert_eq!(answer.outcome, Outcome::Ok);
    let b = &answer.body;
    assert_eq!(b.recommended, BackendType::InProcess);
    assert_eq!(b.active_backend, Some(BackendType::InProcess));
    let kinds: Vec<(BackendType, bool, i64)> = b
        .backends
        .iter()
        .map(|i| (i.kind, i.available, i.priority))
        .collect();
    assert_eq!(
        kinds,
        [
            (BackendType::InProcess, true, 1),
            (BackendType::Kubernetes, false, 2),
            (BackendType::Portainer, false, 3),
            (BackendType::Swarm, false, 4),
            (BackendType::Compose, false, 5),
        ]
    );
    assert_eq!(b.backends[0].version.as_deref(), Some("fake"));
    assert!(
        b.backends[1..]
            .iter()
            .all(|i| i.error.as_deref() == Some(NOT_CONFIGURED))
    );
}

#[tokio::test(start_paused = true)]
async fn an_unavailable_backend_says_why_and_compose_is_recommended() {
    let world = World::new().await;
    world
        .backend
        .set_availability(Availability::unavailable("socket missing"));
    let b = world
        .service
        .backends(ListBackendsRequest::default())
        .await
        .unwrap()
        .body;
    assert!(!b.backends[0].available);
    assert_eq!(b.backends[0].error.as_deref(), Some("socket missing"));
    assert_eq!(b.recommended, BackendType::Compose);
    // Nothing deployed yet: the default backend is the one in use.
    assert_eq!(b.active_backend, Some(BackendType::InProcess));
}

#[tokio::test(start_paused = true)]
async fn container_status_is_200_when_running_and_404_with_body_otherwise() {
    let world = World::new().await;
    let app = world.run_node("bannou-auth", &["auth"]).await;
    world
        .heartbeat("bannou-auth", &["auth"], ServiceHealthStatus::Healthy)
        .await;
    world.settle().await;

    let running = world
        .service
        .container_status(status_of("bannou-auth"))
        .await
        .unwrap();
    assert_eq!(running.outcome, Outcome::Ok);
    assert_eq!(running.body.status, ContainerStatusType::Running);
    assert_eq!(running.body.instances, 1);
    assert_eq!(running.body.plugins, Some(vec!["auth".to_owned()]));
    let checks = running.body.health_checks.unwrap();
    assert_eq!(checks.status, Some(ServiceHealthStatus::Healthy));
    let labels = running.body.labels.unwrap();
    assert_eq!(labels["bannou.orchestrator-managed"], "true");

    let unknown = world
        .service
        .container_status(status_of("bannou-nope"))
        .await
        .unwrap();
    assert_eq!(unknown.outcome, Outcome::NotFound);
    assert_eq!(unknown.body.app_name, "bannou-nope");
    assert_eq!(unknown.body.status, ContainerStatusType::Stopped);
    assert_eq!(unknown.body.instances, 0);

    world.backend.set_status(&app, ContainerStatusType::Stopped);
    let stopped = world
        .service
        .container_status(status_of("bannou-auth"))
        .await
        .unwrap();
    assert_eq!(stopped.outcome, Outcome::NotFound);
    assert!(
        stopped.body.labels.is_some(),
        "the body carries what is known"
    );

    let err = world
        .service
        .container_status(status_of(""))
        .await
        .unwrap_err();
    assert_eq!(
        (err.status(), err.body.field.as_deref()),
        (400, Some("appName"))
    );
}

#[tokio::test(start_paused = true)]
async fn container_restart_really_restarts_with_the_requested_priority() {
    let world = World::new().await;
    let app = world.run_node("bannou-auth", &["auth"]).await;
    let answer = world
        .service
        .request_container_restart(ContainerRestartRequestBody {
            app_name: "bannou-auth".into(),
            reason: "config change".into(),
            priority: Some(RestartPriority::Immediate),
            shutdown_grace_period: 5,
        })
        .await
        .unwrap();
    assert_eq!(answer.outcome, Outcome::Ok);
    assert!(answer.body.accepted);
    assert_eq!(answer.body.current_instances, 1);
    assert_eq!(
        answer.body.restart_strategy,
        Some(RestartStrategy::Simultaneous)
    );
    let calls = world.backend.calls_of(BackendOperation::Restart);
    let BackendCall::Restart { options, .. } = &calls[0] else {
        unreachable!()
    };
    assert_eq!(options.priority, RestartPriority::Immediate);
    assert_eq!(options.grace, Duration::from_secs(5));
    assert_eq!(options.reason, "config change");
    assert_eq!(world.backend.node(&app).unwrap().restart_count, 1);

    let missing = world
        .service
        .request_container_restart(ContainerRestartRequestBody {
            app_name: "bannou-nope".into(),
            reason: "x".into(),
            priority: None,
            shutdown_grace_period: 30,
        })
        .await
        .unwrap_err();
    assert_eq!(missing.status(), 404);
}

#[tokio::test(start_paused = true)]
async fn logs_carry_streams_and_timestamps_and_say_when_cut() {
    let world = World::new().await;
    let app = world.run_node("bannou-auth", &["auth"]).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    world
        .backend
        .push_log(&app, LogStreamType::Stdout, "serving");
    tokio::time::sleep(Duration::from_secs(1)).await;
    world
        .backend
        .push_log(&app, LogStreamType::Stderr, "warning: slow");

    let all = world
        .service
        .logs(GetLogsRequest {
            service: Some("bannou-auth".into()),
            ..GetLogsRequest::default()
        })
        .await
        .unwrap()
        .body;
    assert_eq!(all.logs.len(), 3, "start line and two more");
    assert!(!all.truncated);
    assert_eq!(all.service.as_deref(), Some("bannou-auth"));
    assert_eq!(all.container.as_deref(), Some("bannou-auth"));

    let last_two = world
        .service
        .logs(GetLogsRequest {
            container: Some("bannou-auth".into()),
            tail: 2,
            ..GetLogsRequest::default()
        })
        .await
        .unwrap()
        .body;
    assert!(last_two.truncated);
    let lines: Vec<(Option<LogStreamType>, &str)> = last_two
        .logs
        .iter()
        .map(|l| (l.stream, l.message.as_str()))
        .collect();
    assert_eq!(
        lines,
        [
            (Some(LogStreamType::Stdout), "serving"),
            (Some(LogStreamType::Stderr), "warning: slow"),
        ]
    );
    assert!(last_two.logs[0].timestamp < last_two.logs[1].timestamp);

    let since = world.clock.now() - Duration::from_millis(500);
    let recent = world
        .service
        .logs(GetLogsRequest {
            service: Some("bannou-auth".into()),
            since: Some(since.to_string()),
            ..GetLogsRequest::default()
        })
        .await
        .unwrap()
        .body;
    assert_eq!(recent.logs.len(), 1);

    let missing = world
        .service
        .logs(GetLogsRequest {
            service: Some("bannou-nope".into()),
            ..GetLogsRequest::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        missing.status(),
        404,
        "no node `bannou-nope` on the backend"
    );
}

#[tokio::test(start_paused = true)]
async fn the_control_plane_answers_its_own_lines_not_the_backend() {
    let world = World::new().await;
    // No node `bannou` runs on the backend and no subscriber feeds the buffer yet.
    let empty = world.service.logs(GetLogsRequest::default()).await.unwrap();
    assert_eq!(empty.outcome, Outcome::Ok);
    assert!(empty.body.logs.is_empty() && !empty.body.truncated);

    let buffer = &world.service.deps().logs;
    let start = world.clock.now();
    for i in 0..4u64 {
        let at = start + Duration::from_secs(i);
        buffer.push(at, LogStreamType::Stderr, format!("INFO x: line {i}"));
    }
    let all = world
        .service
        .logs(GetLogsRequest::default())
        .await
        .unwrap()
        .body;
    assert_eq!(all.service.as_deref(), Some("bannou"));
    assert_eq!(all.container.as_deref(), Some("bannou"));
    assert_eq!(all.logs.len(), 4);
    assert!(!all.truncated);
    assert_eq!(all.logs[0].stream, Some(LogStreamType::Stderr));

    let last = |body: &LogsResponse| -> Vec<String> {
        body.logs.iter().map(|l| l.message.clone()).collect()
    };
    let tail = world
        .service
        .logs(GetLogsRequest {
            tail: 2,
            ..GetLogsRequest::default()
        })
        .await
        .unwrap()
        .body;
    assert_eq!(last(&tail), ["INFO x: line 2", "INFO x: line 3"]);
    assert!(tail.truncated);

    let since = world
        .service
        .logs(GetLogsRequest {
            service: Some("bannou".into()),
            since: Some((start + Duration::from_secs(1)).to_string()),
            ..GetLogsRequest::default()
        })
        .await
        .unwrap()
        .body;
    assert_eq!(
        last(&since),
        ["INFO x: line 1", "INFO x: line 2", "INFO x: line 3"]
    );
}

#[tokio::test(start_paused = true)]
async fn clean_removes_only_old_stopped_managed_containers() {
    let world = World::new().await;
    let old = world.run_node("bannou-old", &["auth"]).await;
    let recent = world.run_node("bannou-recent", &["account"]).await;
    let running = world.run_node("bannou-running", &["mesh"]).await;
    world
        .backend
        .set_stopped_at(&old, ago(&world, Duration::from_secs(25 * 3600)));
    world
        .backend
        .set_stopped_at(&recent, ago(&world, Duration::from_secs(3600)));
    world
        .backend
        .add_prunable(CleanTarget::Volumes, "bannou-data", 3 * 1_048_576);
    world
        .backend
        .add_prunable(CleanTarget::Networks, "bannou-net", 0);

    let answer = world
        .service
        .clean(clean(&[CleanTarget::Containers], false))
        .await
        .unwrap();
    assert_eq!(answer.outcome, Outcome::Ok);
    assert_eq!(answer.body.removed_containers, 1);
    assert!(world.backend.node(&old).is_none());
    assert!(world.backend.node(&recent).is_some());
    assert_eq!(
        world.backend.calls_of(BackendOperation::Prune).len(),
        0,
        "containers only"
    );

    let all = world
        .service
        .clean(clean(&[CleanTarget::All], true))
        .await
        .unwrap()
        .body;
    assert_eq!(
        all.removed_containers, 1,
        "force takes the recent stopped one"
    );
    assert!(world.backend.node(&recent).is_none());
    assert!(world.backend.node(&running).is_some(), "running nodes stay");
    assert_eq!((all.removed_volumes, all.removed_networks), (1, 1));
    assert_eq!(all.reclaimed_space_mb, 3);
    assert_eq!(all.errors, None);
}

#[tokio::test(start_paused = true)]
async fn clean_honours_older_than_and_reports_failures_without_failing() {
    let world = World::new().await;
    let app = world.run_node("bannou-old", &["auth"]).await;
    world
        .backend
        .set_stopped_at(&app, ago(&world, Duration::from_secs(2 * 3600)));
    world.backend.fail_next(
        BackendOperation::Teardown,
        &AppId::new("bannou-old"),
        orchestrator_core::ports::backend::BackendError::runtime("device busy"),
    );
    let mut request = clean(&[CleanTarget::Containers], false);
    request.older_than = Some("1h".into());
    let answer = world.service.clean(request.clone()).await.unwrap();
    assert_eq!(answer.outcome, Outcome::Ok);
    assert_eq!(answer.body.removed_containers, 0);
    let errors = answer.body.errors.unwrap();
    assert!(errors[0].contains("device busy"), "{errors:?}");

    let again = world.service.clean(request).await.unwrap().body;
    assert_eq!(again.removed_containers, 1);

    let err = world.service.clean(clean(&[], false)).await.unwrap_err();
    assert_eq!(
        (err.status(), err.body.field.as_deref()),
        (400, Some("targets"))
    );
}

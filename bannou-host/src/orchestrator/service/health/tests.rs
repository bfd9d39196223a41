//! Unit tests of `orchestrator::service::health`.

use crate::orchestrator::service::Outcome;
use std::time::Duration;

use futures::StreamExt;
use orchestrator_core::api::*;
use orchestrator_core::events::{InstanceHealthStatus, ServiceHealthStatus, ServiceRestartEvent};
use orchestrator_core::memory::backend::BackendCall;
use orchestrator_core::ports::backend::BackendOperation;
use orchestrator_core::ports::bus::EventBusExt;

use super::super::testing::World;

fn restart_request(service: &str, force: bool) -> ServiceRestartRequest {
    ServiceRestartRequest {
        service_name: service.to_owned(),
        environment: None,
        force,
        timeout: 10,
    }
}

fn should(service: &str) -> ShouldRestartServiceRequest {
    ShouldRestartServiceRequest {
        service_name: service.to_owned(),
    }
}

#[tokio::test(start_paused = true)]
async fn infrastructure_is_healthy_over_the_in_memory_adapters() {
    let world = World::new().await;
    let answer = world
        .service
        .infrastructure_health(InfrastructureHealthRequest::default())
        .await
        .unwrap();
    assert_eq!(answer.outcome, Outcome::Ok);
    assert!(answer.body.healthy);
    let names: Vec<&str> = answer
        .body
        .components
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(names, ["statestore", "pubsub", "messaging"]);
    assert!(
        answer
            .body
            .components
            .iter()
            .all(|c| c.status == ComponentHealthStatus::Healthy)
    );
    let metrics = answer.body.components[0].metrics.as_ref().unwrap();
    assert!(metrics["operationTimeMs"].is_f64());
    assert!(
        answer.body.components[0]
            .message
            .as_deref()
            .unwrap()
            .starts_with("State stores healthy (operation: ")
    );
}

#[tokio::test(start_paused = true)]
async fn infrastructure_is_500_with_the_body_when_the_bus_is_down() {
    let world = World::new().await;
    world.bus.close();
    let answer = world
        .service
        .infrastructure_health(InfrastructureHealthRequest::default())
        .await
        .unwrap();
    assert_eq!(answer.outcome, Outcome::Failed);
    assert!(!answer.body.healthy);
    let c = &answer.body.components;
    assert_eq!(c[0].status, ComponentHealthStatus::Healthy);
    assert_eq!(c[1].status, ComponentHealthStatus::Unavailable);
    assert!(
        c[1].message
            .as_deref()
            .unwrap()
            .starts_with("Pub/sub check failed: ")
    );
    assert_eq!(c[2].status, ComponentHealthStatus::Unavailable);
}

#[tokio::test(start_paused = true)]
async fn services_health_is_per_service_with_source_and_filter() {
    let world = World::with_settings(|s| {
        s.host_environment
            .insert("BANNOU_SERVICES_ENABLED".into(), "false".into());
        s.host_environment
            .insert("ORCHESTRATOR_SERVICE_ENABLED".into(), "true".into());
    })
    .await;
    world
        .heartbeat(
            "bannou-auth",
            &["auth", "account"],
            ServiceHealthStatus::Healthy,
        )
        .await;
    world.settle().await;

    let all = world
        .service
        .services_health(ServiceHealthRequest::default())
        .await
        .unwrap();
    assert_eq!(all.outcome, Outcome::Ok);
    let ids: Vec<(&str, &str)> = all
        .body
        .healthy_services
        .iter()
        .map(|e| (e.service_id.as_str(), e.app_id.as_str()))
        .collect();
    // Control-plane entries: the infrastructure plugins (always on, L0) and the
    // orchestrator, which is all this host's environment enables.
    assert_eq!(
        ids,
        [
            ("account", "bannou-auth"),
            ("auth", "bannou-auth"),
            ("mesh", "bannou"),
            ("messaging", "bannou"),
            ("orchestrator", "bannou"),
            ("state", "bannou"),
        ]
    );
    assert_eq!(all.body.health_percentage, 100.0);
    assert_eq!(all.body.control_plane_app_id, "bannou");

    let deployed_auth = world
        .service
        .services_health(ServiceHealthRequest {
            source: ServiceHealthSource::DeployedOnly,
            service_filter: Some("AUTH".into()),
        })
        .await
        .unwrap()
        .body;
    assert_eq!(deployed_auth.total_services, 1);
    assert_eq!(deployed_auth.healthy_services[0].service_id, "auth");

    let control = world
        .service
        .services_health(ServiceHealthRequest {
            source: ServiceHealthSource::ControlPlaneOnly,
            service_filter: None,
        })
        .await
        .unwrap()
        .body;
    assert_eq!(control.total_services, 4);
    assert!(
        control
            .healthy_services
            .iter()
            .all(|e| e.app_id == "bannou")
    );

    // Silent past the heartbeat timeout: unhealthy, per service.
    tokio::time::sleep(Duration::from_secs(91)).await;
    let later = world
        .service
        .services_health(ServiceHealthRequest {
            source: ServiceHealthSource::DeployedOnly,
            service_filter: None,
        })
        .await
        .unwrap()
        .body;
    assert_eq!(later.unhealthy_services.len(), 2);
    assert_eq!(later.health_percentage, 0.0);
}

#[tokio::test(start_paused = true)]
async fn should_restart_follows_real_degradation_time() {
    let world = World::new().await;
    let none = world.service.should_restart(should("auth")).await.unwrap();
    assert_eq!(none.outcome, Outcome::Ok);
    assert!(none.body.should_restart);
    assert!(none.body.reason.contains("No heartbeat data found"));

    world.run_node("bannou-auth", &["auth"]).await;
    world.set_status("bannou-auth", ServiceHealthStatus::Degraded);
    world.auto_heartbeats(Duration::from_secs(30));
    tokio::time::sleep(Duration::from_secs(120)).await;
    let within = world
        .service
        .should_restart(should("auth"))
        .await
        .unwrap()
        .body;
    assert!(!within.should_restart, "{within:?}");
    assert_eq!(within.current_status, Some(InstanceHealthStatus::Degraded));
    assert!(
        within.reason.contains("within threshold"),
        "{}",
        within.reason
    );

    tokio::time::sleep(Duration::from_secs(200)).await;
    let beyond = world
        .service
        .should_restart(should("auth"))
        .await
        .unwrap()
        .body;
    assert!(beyond.should_restart, "{beyond:?}");
    assert!(
        beyond.reason.starts_with("Service has been Degraded for"),
        "{}",
        beyond.reason
    );
    assert!(beyond.degraded_duration.is_some());

    let healthy_other = world
        .service
        .should_restart(should("account"))
        .await
        .unwrap();
    assert!(
        healthy_other.body.should_restart,
        "no heartbeat for account"
    );
}

#[tokio::test(start_paused = true)]
async fn a_healthy_service_is_not_restarted_unless_forced() {
    let world = World::new().await;
    world.run_node("bannou-auth", &["auth"]).await;
    world.auto_heartbeats(Duration::from_secs(1));
    world.settle().await;

    let declined = world
        .service
        .restart_service(restart_request("auth", false))
        .await
        .unwrap_err();
    assert_eq!(declined.status(), 409);
    assert_eq!(
        declined.body.error,
        "Restart not needed: Service is Healthy - no restart needed"
    );
    assert!(world.backend.calls_of(BackendOperation::Restart).is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_forced_restart_goes_through_the_backend_and_publishes_the_event() {
    let world = World::new().await;
    world.run_node("bannou-auth", &["auth"]).await;
    world.auto_heartbeats(Duration::from_secs(1));
    world.settle().await;
    let mut events = world
        .bus
        .subscribe_events::<ServiceRestartEvent>()
        .await
        .unwrap();
    let before = world.clock.now();

    let answer = world
        .service
        .restart_service(restart_request("auth", true))
        .await
        .unwrap();
    assert_eq!(answer.outcome, Outcome::Ok);
    assert_eq!(
        answer.body.previous_status,
        Some(InstanceHealthStatus::Healthy)
    );
    assert_eq!(
        answer.body.current_status,
        Some(InstanceHealthStatus::Healthy)
    );
    let restarts = world.backend.calls_of(BackendOperation::Restart);
    assert_eq!(restarts.len(), 1);
    let BackendCall::Restart { app_id, options } = &restarts[0] else {
        unreachable!()
    };
    assert_eq!(app_id.as_str(), "bannou-auth");
    assert_eq!(options.grace, Duration::from_secs(30));
    assert_eq!(world.backend.node(app_id).unwrap().restart_count, 1);

    let event = events.next().await.unwrap().unwrap();
    assert_eq!(event.service_name, "auth");
    assert!(event.forced);
    assert_eq!(event.reason, "Smart restart - previous status: Healthy");
    assert!(event.timestamp >= before, "a real timestamp (D14)");
}

#[tokio::test(start_paused = true)]
async fn a_degraded_service_is_restarted_and_500_when_it_stays_unhealthy() {
    let world = World::with_settings(|s| {
        s.degradation_threshold = Duration::from_secs(60);
    })
    .await;
    world.run_node("bannou-auth", &["auth"]).await;
    world.set_status("bannou-auth", ServiceHealthStatus::Degraded);
    world.auto_heartbeats(Duration::from_secs(1));
    tokio::time::sleep(Duration::from_secs(61)).await;
    let mut events = world
        .bus
        .subscribe_events::<ServiceRestartEvent>()
        .await
        .unwrap();

    let failed = world
        .service
        .restart_service(restart_request("auth", false))
        .await
        .unwrap_err();
    assert_eq!(failed.status(), 500);
    assert_eq!(
        failed.body.error,
        "Service restarted but failed to become healthy within 10 seconds"
    );
    assert_eq!(world.backend.calls_of(BackendOperation::Restart).len(), 1);
    let event = events.next().await.unwrap().unwrap();
    assert!(!event.forced);
    assert_eq!(event.reason, "Smart restart - previous status: Degraded");
}

#[tokio::test(start_paused = true)]
async fn restarting_a_service_no_node_runs_fails_with_not_found() {
    let world = World::new().await;
    let err = world
        .service
        .restart_service(restart_request("auth", true))
        .await
        .unwrap_err();
    assert_eq!(err.status(), 500);
    assert_eq!(
        err.body.error,
        "Restart failed: Container for service 'auth' not found"
    );
}

#[tokio::test(start_paused = true)]
async fn a_node_found_only_by_the_backend_is_restarted() {
    // No heartbeat at all (the node is down): the backend's label finds it.
    let world = World::new().await;
    world.run_node("bannou-auth", &["auth"]).await;
    let err = world
        .service
        .restart_service(restart_request("auth", false))
        .await
        .unwrap_err();
    assert_eq!(err.status(), 500, "it never reports healthy");
    assert_eq!(world.backend.calls_of(BackendOperation::Restart).len(), 1);
}

#[tokio::test(start_paused = true)]
async fn requests_are_validated() {
    let world = World::new().await;
    let err = world.service.should_restart(should(" ")).await.unwrap_err();
    assert_eq!(err.status(), 400);
    assert_eq!(err.body.field.as_deref(), Some("serviceName"));
}

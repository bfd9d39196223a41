//! The in-process backend: the shared conformance suite, then scenarios with real nodes
//! (HTTP on loopback, the in-memory bus): deploy two nodes and ping across them, scale,
//! restart (a new instance), logs, the injected environment, and a teardown that leaves
//! no task, listener or directory entry behind.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bannou_host::backends::InProcessBackend;
use bannou_host::backends::in_process::in_process_environment;
use bannou_host::mesh::InProcessDirectory;
use futures::StreamExt;
use orchestrator_core::api::enums::{ContainerStatusType, LogStreamType, TeardownMode};
use orchestrator_core::events::{
    BackendType, FullServiceMappingsEvent, InstanceHealthStatus, ServiceHeartbeatEvent,
};
use orchestrator_core::memory::bus::InMemoryBus;
use orchestrator_core::ports::backend::{
    BackendError, ContainerBackend, LogQuery, NodeDeployment, RestartOptions, TeardownOptions,
    labels,
};
use orchestrator_core::ports::bus::{EventBus, EventBusExt, EventSubscription};
use orchestrator_core::testkit::backend::{BackendSuite, backend_conformance};
use orchestrator_core::{AppId, Timestamp};
use orchestrator_routing::MappingsSnapshot;
use uuid::Uuid;

fn app(s: &str) -> AppId {
    AppId::from(s)
}

fn backend(bus: &Arc<dyn EventBus>) -> Arc<InProcessBackend> {
    Arc::new(InProcessBackend::new(
        bus.clone(),
        InProcessDirectory::new(),
    ))
}

/// A node running only `service` (plus L0's required three).
fn node(app_id: &str, service: &str) -> NodeDeployment {
    let mut n = NodeDeployment::new(app(app_id), service, "bannou:latest");
    n.environment = BTreeMap::from([
        ("BANNOU_SERVICES_ENABLED".to_owned(), "false".to_owned()),
        (
            orchestrator_core::names::service_enable_flag(service),
            "true".to_owned(),
        ),
    ]);
    n
}

async fn get_json(url: &str) -> serde_json::Value {
    orchestrator_backends::http::install_crypto_provider();
    let resp = reqwest::get(url).await.expect("reachable");
    assert!(resp.status().is_success(), "{url}: {}", resp.status());
    resp.json().await.expect("json")
}

async fn next_beat(events: &mut EventSubscription<ServiceHeartbeatEvent>) -> ServiceHeartbeatEvent {
    tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .expect("a heartbeat in time")
        .expect("bus open")
        .expect("decodes")
}

#[tokio::test]
async fn passes_the_conformance_suite() {
    let bus: Arc<dyn EventBus> = Arc::new(InMemoryBus::new());
    backend_conformance(&BackendSuite::default(), || {
        let bus = bus.clone();
        async move { backend(&bus) as Arc<dyn ContainerBackend> }
    })
    .await;
}

#[tokio::test]
async fn the_node_environment_wins_over_what_the_backend_injects() {
    let mut n = node("n1", "auth");
    assert_eq!(in_process_environment(&n)["BANNOU_APP_ID"], "n1");
    assert_eq!(
        in_process_environment(&n)["BANNOU_HEARTBEAT_ENABLED"],
        "true"
    );
    assert!(!in_process_environment(&n).contains_key("BANNOU_MAPPING_SOURCE_APP_ID"));
    n.environment
        .insert("BANNOU_HEARTBEAT_ENABLED".to_owned(), "false".to_owned());
    assert_eq!(
        in_process_environment(&n)["BANNOU_HEARTBEAT_ENABLED"],
        "false"
    );
}

#[tokio::test]
async fn two_nodes_ping_each_other_and_teardown_leaves_nothing() {
    let bus: Arc<dyn EventBus> = Arc::new(InMemoryBus::new());
    let mut beats = bus
        .subscribe_events::<ServiceHeartbeatEvent>()
        .await
        .unwrap();
    let backend = backend(&bus);
    assert_eq!(backend.backend_type(), BackendType::InProcess);
    assert!(backend.check_availability().await.available);

    backend.deploy_node(&node("n1", "auth")).await.unwrap();
    backend.deploy_node(&node("n2", "account")).await.unwrap();

    // Each node announces itself with its app-id and services.
    let mut seen = BTreeMap::new();
    while seen.len() < 2 {
        let beat = next_beat(&mut beats).await;
        seen.insert(beat.app_id.to_string(), beat.services.len());
    }
    assert_eq!(
        seen,
        BTreeMap::from([("n1".to_owned(), 4), ("n2".to_owned(), 4)])
    );

    let n1 = backend.endpoints(&app("n1"));
    let n2 = backend.endpoints(&app("n2"));
    assert_eq!((n1.len(), n2.len()), (1, 1));
    assert_eq!(
        get_json(&format!("{}/auth/ping", n1[0])).await["appId"],
        "n1"
    );

    // Route account to n2; n1 forwards its account pings there.
    let event: FullServiceMappingsEvent =
        MappingsSnapshot::from_entries(1, None, [("auth", Some("n1")), ("account", Some("n2"))])
            .to_event(
                Uuid::new_v4(),
                Timestamp::from_unix_millis(0),
                Uuid::new_v4(),
            );
    bus.publish_event(&event).await.unwrap();
    let url = format!("{}/account/ping", n1[0]);
    let mut answer = serde_json::Value::Null;
    for _ in 0..1000 {
        orchestrator_backends::http::install_crypto_provider();
        let resp = reqwest::get(&url).await.unwrap();
        if resp.status().is_success() {
            answer = resp.json().await.unwrap();
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(answer["appId"], "n2", "forwarded: {answer}");
    assert_eq!(answer["via"], "n1");

    let listed = backend.list().await.unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].labels[labels::SERVICE], "auth");
    assert_eq!(listed[0].labels[labels::MANAGED], "true");

    // Graceful teardown: a final shutting_down beat, then nothing left.
    let torn = backend
        .teardown(&app("n1"), &TeardownOptions::default())
        .await
        .unwrap();
    assert_eq!(torn.stopped.len(), 1);
    loop {
        let beat = next_beat(&mut beats).await;
        if beat.app_id == app("n1") && beat.status == InstanceHealthStatus::ShuttingDown {
            break;
        }
    }
    let force = TeardownOptions {
        mode: TeardownMode::Force,
        ..TeardownOptions::default()
    };
    backend.teardown(&app("n2"), &force).await.unwrap();

    assert!(backend.list().await.unwrap().is_empty());
    assert_eq!(backend.running_tasks(), 0, "no task left");
    assert!(
        backend.directory().snapshot().is_empty(),
        "no endpoint left"
    );
    for url in n1.iter().chain(&n2) {
        let addr = url.trim_start_matches("http://");
        assert!(
            tokio::net::TcpStream::connect(addr).await.is_err(),
            "listener {addr} closed"
        );
    }
    assert!(matches!(
        backend.status(&app("n1")).await,
        Err(BackendError::NotFound { .. })
    ));
}

#[tokio::test]
async fn scale_and_restart_start_and_stop_real_replicas() {
    let bus: Arc<dyn EventBus> = Arc::new(InMemoryBus::new());
    let backend = backend(&bus);
    backend.deploy_node(&node("n1", "auth")).await.unwrap();
    let before = get_json(&format!("{}/auth/ping", backend.endpoints(&app("n1"))[0])).await;

    let scaled = backend.scale(&app("n1"), 3).await.unwrap();
    assert_eq!((scaled.previous_replicas, scaled.current_replicas), (1, 3));
    assert_eq!(backend.endpoints(&app("n1")).len(), 3);
    assert_eq!(backend.status(&app("n1")).await.unwrap().instances, 3);
    assert_eq!(backend.running_tasks(), 9, "three tasks per replica");

    backend.scale(&app("n1"), 0).await.unwrap();
    let stopped = backend.status(&app("n1")).await.unwrap();
    assert_eq!(
        (stopped.status, stopped.instances),
        (ContainerStatusType::Stopped, 0)
    );
    assert!(stopped.stopped_at.is_some());
    assert_eq!(backend.running_tasks(), 0);
    backend.scale(&app("n1"), 1).await.unwrap();

    let out = backend
        .restart(&app("n1"), &RestartOptions::default())
        .await
        .unwrap();
    assert_eq!(out.current_instances, 1);
    let after_status = backend.status(&app("n1")).await.unwrap();
    assert_eq!(after_status.restart_count, 1);
    assert_eq!(after_status.status, ContainerStatusType::Running);
    let after = get_json(&format!("{}/auth/ping", backend.endpoints(&app("n1"))[0])).await;
    assert_ne!(
        before["instanceId"], after["instanceId"],
        "a restart is a new instance"
    );
    assert_eq!(backend.running_tasks(), 3);

    backend.stop_all().await;
    assert_eq!(backend.running_tasks(), 0);
}

#[tokio::test]
async fn logs_record_the_node_life_and_honour_tail_and_since() {
    let bus: Arc<dyn EventBus> = Arc::new(InMemoryBus::new());
    let backend = backend(&bus);
    backend.deploy_node(&node("n1", "auth")).await.unwrap();
    let url = backend.endpoints(&app("n1"))[0].clone();
    get_json(&format!("{url}/auth/ping")).await;

    let all = backend
        .logs(&app("n1"), &LogQuery::default())
        .await
        .unwrap();
    let text: Vec<&str> = all.iter().map(|l| l.message.as_str()).collect();
    assert!(
        text.iter()
            .any(|l| l.contains("started plugins state, messaging, mesh, auth")),
        "{text:?}"
    );
    assert!(
        text.iter().any(|l| l.starts_with("listening on http://")),
        "{text:?}"
    );
    assert!(text.contains(&"ping served for auth"), "{text:?}");
    assert!(all.iter().all(|l| l.stream == LogStreamType::Stdout));
    assert!(all.windows(2).all(|w| w[0].timestamp <= w[1].timestamp));

    let tail = LogQuery {
        tail: Some(1),
        ..LogQuery::default()
    };
    let last = backend.logs(&app("n1"), &tail).await.unwrap();
    assert_eq!(last.len(), 1);
    assert_eq!(last[0].message, "ping served for auth");
    let since = LogQuery {
        since: Some(last[0].timestamp),
        ..LogQuery::default()
    };
    assert!(
        backend
            .logs(&app("n1"), &since)
            .await
            .unwrap()
            .iter()
            .all(|l| l.timestamp >= last[0].timestamp)
    );

    assert!(backend.list_infrastructure().await.unwrap().is_empty());
    let pruned = backend
        .prune(
            &[orchestrator_core::api::enums::CleanTarget::All].into(),
            None,
        )
        .await
        .unwrap();
    assert!(pruned.removed.is_empty());
    backend.stop_all().await;
}

#[tokio::test]
async fn a_node_that_cannot_start_is_a_runtime_error_and_is_not_listed() {
    let bus: Arc<dyn EventBus> = Arc::new(InMemoryBus::new());
    let backend = backend(&bus);
    let mut bad = node("n1", "auth");
    bad.environment
        .insert("BANNOU_FAULT_AUTH".to_owned(), "sometimes".to_owned());
    match backend.deploy_node(&bad).await {
        Err(BackendError::Runtime { message, .. }) => {
            assert!(message.contains("BANNOU_FAULT_AUTH"), "{message}")
        }
        other => panic!("want a runtime error, got {other:?}"),
    }
    assert!(backend.list().await.unwrap().is_empty());
    assert_eq!(backend.running_tasks(), 0);
}

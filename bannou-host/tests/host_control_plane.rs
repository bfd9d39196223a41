//! The control-plane assembly: it starts over in-memory adapters and over Redis, serves
//! the API on a real socket (HTTP/1.1 and h2c), wires heartbeats through the pipeline to the routing table
//! and the mappings broadcast, and shuts down with every task joined. It refuses to start
//! on a non-loopback address without a token, on a foreign app-id, without a backend, and
//! when Redis cannot be reached. The orchestrator plugin serves the same API inside a node.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use bannou_host::clock::TokioClock;
use bannou_host::config::{ConfigError, HostConfig, Secret};
use bannou_host::host::{
    AdapterKind, ControlPlane, HostError, OrchestratorPlugin, RunningControlPlane,
};
use bannou_host::plugins::{Plugin, PluginContext};
use futures::StreamExt;
use orchestrator_backends::redis::server::RedisServer;
use orchestrator_core::AppId;
use orchestrator_core::events::{
    FullServiceMappingsEvent, ServiceHealthStatus, ServiceHeartbeatEvent,
};
use orchestrator_core::layer::Layer;
use orchestrator_core::memory::backend::FakeBackend;
use orchestrator_core::memory::bus::InMemoryBus;
use orchestrator_core::ports::backend::ContainerBackend;
use orchestrator_core::ports::bus::{EventBus, EventBusExt};
use orchestrator_core::time::Clock;
use tower::ServiceExt;
use uuid::Uuid;

/// Upper bound of every wait in this file (never an assertion about speed).
const PATIENCE: Duration = Duration::from_secs(20);

/// Every task a serving control plane runs.
const ALL_TASKS: [&str; 12] = [
    "event-stream",
    "heartbeat-pipeline",
    "routing-acks",
    "mappings-broadcaster",
    "pool-scaler",
    "lease-reaper",
    "reconciler",
    "store-monitor",
    "metrics",
    "control-events",
    "http",
    "leader-elector",
];

fn backends() -> Vec<Arc<dyn ContainerBackend>> {
    let clock: Arc<dyn Clock> = Arc::new(TokioClock::system());
    vec![Arc::new(FakeBackend::new(clock))]
}

async fn get(router: &axum::Router, path: &str) -> StatusCode {
    router
        .clone()
        .oneshot(Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap()
        .status()
}

/// Publishes a heartbeat of `app_id` hosting `account` until the routing table routes
/// `account` there (a subscription made after a publish misses it, so keep publishing),
/// and returns the first mappings broadcast that carries the route.
async fn heartbeat_reaches_routing_and_mappings(cp: &RunningControlPlane, app_id: &str) {
    let bus = cp.bus();
    let mut mappings = bus
        .subscribe_events::<FullServiceMappingsEvent>()
        .await
        .unwrap();
    let heartbeat = ServiceHeartbeatEvent::new(
        Uuid::new_v4(),
        AppId::from(app_id),
        TokioClock::system().now(),
        [("account", ServiceHealthStatus::Healthy)],
    );
    let routed = async {
        loop {
            bus.publish_event(&heartbeat).await.unwrap();
            let routed_to = cp
                .health()
                .lock()
                .routing
                .mappings()
                .get("account")
                .cloned();
            if routed_to.as_ref().map(AppId::as_str) == Some(app_id) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(PATIENCE, routed)
        .await
        .expect("the heartbeat reaches the routing table");
    let broadcast = async {
        while let Some(event) = mappings.next().await {
            let event = event.unwrap();
            if event.mappings.get("account").map(String::as_str) == Some(app_id) {
                return event;
            }
        }
        panic!("mappings stream ended");
    };
    let event = tokio::time::timeout(PATIENCE, broadcast)
        .await
        .expect("the new route is broadcast");
    assert!(event.version >= 1);
    assert!(cp.pipeline_stats().snapshot().ingested >= 1);
}

/// `GET /health` over HTTP/1.1 and over HTTP/2 with prior knowledge (h2c): the server
/// answers both on one port, the same body.
async fn health_over_http(addr: std::net::SocketAddr) -> serde_json::Value {
    orchestrator_backends::http::install_crypto_provider();
    let mut bodies = Vec::new();
    for (client, version) in [
        (
            reqwest::Client::builder().http1_only().build().unwrap(),
            reqwest::Version::HTTP_11,
        ),
        (
            reqwest::Client::builder()
                .http2_prior_knowledge()
                .build()
                .unwrap(),
            reqwest::Version::HTTP_2,
        ),
    ] {
        let response = client
            .get(format!("http://{addr}/health"))
            .timeout(PATIENCE)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
        assert_eq!(response.version(), version);
        bodies.push(response.json::<serde_json::Value>().await.unwrap());
    }
    assert_eq!(bodies[0]["store"], bodies[1]["store"]);
    bodies.swap_remove(1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_memory_control_plane_serves_wires_heartbeats_and_stops_cleanly() {
    let config = HostConfig::default();
    let mut cp = ControlPlane::start(&config, backends()).await.unwrap();
    assert_eq!(cp.adapters().kind, AdapterKind::Memory);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = cp.serve(listener).unwrap();
    assert_eq!(cp.task_names(), ALL_TASKS);

    let health = health_over_http(addr).await;
    assert_eq!(health["store"], "ok");
    heartbeat_reaches_routing_and_mappings(&cp, "node-a").await;
    assert_eq!(cp.store_status().last_error(), None);

    let report = tokio::time::timeout(PATIENCE, cp.shutdown())
        .await
        .expect("shutdown ends");
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.stopped, ALL_TASKS);
    // The server is gone with it.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_control_plane_serves_wires_heartbeats_and_stops_cleanly() {
    let Some(server) =
        RedisServer::for_test("redis_control_plane_serves_wires_heartbeats_and_stops_cleanly")
    else {
        return;
    };
    let config = HostConfig {
        redis_url: Some(server.url()),
        ..HostConfig::default()
    };
    let mut cp = ControlPlane::start(&config, backends()).await.unwrap();
    assert_eq!(cp.adapters().kind, AdapterKind::Redis { url: server.url() });
    assert_eq!(get(&cp.router(), "/health").await, StatusCode::OK);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = cp.serve(listener).unwrap();
    let health = health_over_http(addr).await;
    assert_eq!(health["store"], "ok");
    assert_eq!(
        health["leader"], true,
        "a lone replica leads from the start"
    );
    assert_eq!(health["leadership"]["holder"], cp.leader().candidate_id());
    heartbeat_reaches_routing_and_mappings(&cp, "node-r").await;

    let report = tokio::time::timeout(PATIENCE, cp.shutdown())
        .await
        .expect("shutdown ends");
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.stopped, ALL_TASKS);
}

#[tokio::test]
async fn refuses_a_public_address_without_a_token() {
    let mut config = HostConfig {
        listen: "0.0.0.0:8080".parse().unwrap(),
        ..HostConfig::default()
    };
    let Err(e) = ControlPlane::start(&config, backends()).await else {
        panic!("must refuse");
    };
    assert!(
        matches!(
            e,
            HostError::Config(ConfigError::ExposedWithoutToken { .. })
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("ORCHESTRATOR_API_TOKEN"), "{e}");

    // With a token it starts (nothing is bound until `serve`).
    config.api_token = Some(Secret::new("t"));
    let cp = ControlPlane::start(&config, backends()).await.unwrap();
    assert!(cp.shutdown().await.is_clean());
}

#[tokio::test]
async fn refuses_a_foreign_app_id_no_backend_and_unreachable_redis() {
    let mut config = HostConfig {
        app_id: AppId::from("orchestrator"),
        ..HostConfig::default()
    };
    let e = ControlPlane::start(&config, backends())
        .await
        .err()
        .unwrap();
    assert!(
        matches!(e, HostError::Config(ConfigError::WrongAppId { .. })),
        "{e:?}"
    );
    assert!(e.to_string().contains("`orchestrator`"), "{e}");

    config.app_id = AppId::from("Bannou");
    let e = ControlPlane::start(&config, Vec::new())
        .await
        .err()
        .unwrap();
    assert!(matches!(e, HostError::NoBackend), "{e:?}");

    // A port nothing listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    config.redis_url = Some(format!("redis://127.0.0.1:{port}/"));
    let e = ControlPlane::start(&config, backends())
        .await
        .err()
        .unwrap();
    assert!(matches!(e, HostError::Redis { .. }), "{e:?}");
}

#[tokio::test]
async fn the_plugin_serves_the_api_on_bannou_only_and_stops() {
    let plugin = OrchestratorPlugin::new(HostConfig::default(), backends());
    assert_eq!(plugin.name(), "orchestrator");
    assert_eq!(plugin.layer(), Layer::AppFeatures);
    let routes = plugin.routes();
    assert_eq!(
        get(&routes, "/openapi.json").await,
        StatusCode::SERVICE_UNAVAILABLE,
        "not started yet"
    );

    let bus: Arc<dyn EventBus> = Arc::new(InMemoryBus::new());
    let ctx = |app_id: &str| PluginContext::new(AppId::from(app_id), BTreeMap::new(), bus.clone());
    let e = plugin.start(&ctx("orchestrator")).await.unwrap_err();
    assert!(e.to_string().contains("bannou"), "{e}");
    assert_eq!(plugin.health().status, ServiceHealthStatus::Unavailable);

    plugin.start(&ctx("bannou")).await.unwrap();
    assert!(plugin.start(&ctx("bannou")).await.is_err(), "only once");
    assert_eq!(get(&routes, "/openapi.json").await, StatusCode::OK);
    let decoded = routes
        .clone()
        .oneshot(
            Request::post("/orchestrator/processing-pool/acquire")
                .body(Body::from("{}"))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(decoded.status(), StatusCode::BAD_REQUEST);
    assert_eq!(plugin.health().status, ServiceHealthStatus::Healthy);
    assert!(plugin.service().await.is_some());

    tokio::time::timeout(PATIENCE, plugin.stop())
        .await
        .expect("stop ends");
    assert_eq!(
        get(&routes, "/openapi.json").await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(plugin.health().status, ServiceHealthStatus::Unavailable);
}

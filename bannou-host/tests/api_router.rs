//! The HTTP API as a client sees it, through the router of a control plane over in-memory
//! adapters and a fake backend: every documented path is routed, bad bodies get a 400
//! naming the field without reaching the service, answers keep their status with a JSON
//! body, the bearer token guards everything but `/health`, and the OpenAPI document is
//! served.
//!
//! These tests hold whatever the endpoints do behind decoding: they assert the contract of
//! the HTTP layer, not the use cases.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use bannou_host::api;
use bannou_host::clock::TokioClock;
use bannou_host::config::{HostConfig, Secret};
use bannou_host::host::{Adapters, ControlPlane, RunningControlPlane};
use orchestrator_core::api::ApiError;
use orchestrator_core::memory::backend::FakeBackend;
use orchestrator_core::time::Clock;
use serde_json::Value;
use tower::ServiceExt;

struct World {
    cp: RunningControlPlane,
    backend: Arc<FakeBackend>,
    adapters: Adapters,
}

async fn world(token: Option<&str>) -> World {
    let clock: Arc<dyn Clock> = Arc::new(TokioClock::system());
    let backend = Arc::new(FakeBackend::new(clock.clone()));
    let adapters = Adapters::in_memory(clock.clone());
    let config = HostConfig {
        api_token: token.map(Secret::new),
        ..HostConfig::default()
    };
    let cp = ControlPlane::builder(&config)
        .backends(vec![backend.clone()])
        .adapters(adapters.clone())
        .clock(clock)
        .start()
        .await
        .expect("control plane starts");
    World {
        cp,
        backend,
        adapters,
    }
}

struct Reply {
    status: StatusCode,
    content_type: Option<String>,
    www_authenticate: Option<String>,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    fn error(&self) -> ApiError {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not an ApiError ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

async fn send(router: &Router, method: &str, path: &str, body: &str, token: Option<&str>) -> Reply {
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header(header::CONTENT_TYPE, "application/json");
    if let Some(t) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let response = router
        .clone()
        .oneshot(request.body(Body::from(body.to_owned())).unwrap())
        .await
        .unwrap();
    let header_of = |name: header::HeaderName| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let content_type = header_of(header::CONTENT_TYPE);
    let www_authenticate = header_of(header::WWW_AUTHENTICATE);
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap()
        .to_vec();
    Reply {
        status,
        content_type,
        www_authenticate,
        body,
    }
}

async fn post(router: &Router, path: &str, body: &str) -> Reply {
    send(router, "POST", path, body, None).await
}

#[tokio::test]
async fn every_documented_path_is_routed_and_undocumented_ones_are_not() {
    let w = world(None).await;
    let router = w.cp.router();
    let documented = api::openapi::document_paths();
    // Upstream's 22 endpoints, our renew, drain, promote and abort, /health, the two
    // OpenAPI documents, /metrics and the event stream.
    assert_eq!(documented.len(), 22 + 4 + 5, "{documented:?}");
    for path in &documented {
        let reply = if *path == api::events::PATH {
            // A GET; an unknown type gets a 400 at once (a stream would never end).
            let path = format!("{path}?types=nonsense");
            send(&router, "GET", &path, "", None).await
        } else if path.starts_with("/orchestrator/") {
            post(&router, path, "{}").await
        } else {
            send(&router, "GET", path, "", None).await
        };
        // A routed endpoint may answer 404 itself (logs of an unknown container), but
        // then with an error body; axum's own 404 for an unrouted path has none.
        assert!(
            reply.status != StatusCode::NOT_FOUND || !reply.body.is_empty(),
            "{path} is not routed"
        );
        assert_ne!(
            reply.status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{path}: wrong method"
        );
    }
    assert_eq!(
        post(&router, "/orchestrator/nope", "{}").await.status,
        StatusCode::NOT_FOUND
    );
    // Endpoints are POST only (docs/COMPATIBILITY.md#api-conventions).
    assert_eq!(
        send(&router, "GET", "/orchestrator/status", "", None)
            .await
            .status,
        StatusCode::METHOD_NOT_ALLOWED
    );
    w.cp.shutdown().await;
}

#[tokio::test]
async fn malformed_bodies_get_400_naming_the_field_and_never_reach_the_service() {
    let w = world(None).await;
    let router = w.cp.router();
    let cases: &[(&str, &str, Option<&str>)] = &[
        (
            "/orchestrator/deploy",
            r#"{"topology": {"nodes": [{"name": "a", "services": [7]}]}}"#,
            Some("topology.nodes[0].services[0]"),
        ),
        (
            "/orchestrator/deploy",
            r#"{"topology": {"nodes": [{"services": ["auth"]}]}}"#,
            Some("topology.nodes[0].name"),
        ),
        (
            "/orchestrator/deploy",
            r#"{"backend": "nomad"}"#,
            Some("backend"),
        ),
        (
            "/orchestrator/teardown",
            r#"{"mode": "sideways"}"#,
            Some("mode"),
        ),
        (
            "/orchestrator/processing-pool/acquire",
            "{}",
            Some("poolType"),
        ),
        (
            "/orchestrator/processing-pool/acquire",
            r#"{"poolType": "p", "waitMs": 600000}"#,
            Some("waitMs"),
        ),
        (
            "/orchestrator/processing-pool/scale",
            r#"{"poolType": "p", "targetInstances": -1}"#,
            Some("targetInstances"),
        ),
        (
            "/orchestrator/processing-pool/release",
            r#"{"leaseId": "not-a-uuid"}"#,
            Some("leaseId"),
        ),
        (
            "/orchestrator/processing-pool/renew",
            r#"{"leaseId": "5a0e2c4e-4f4c-4a77-9d38-6d0f5c1e9b11"}"#,
            Some("fencingToken"),
        ),
        (
            "/orchestrator/processing-pool/renew",
            r#"{"leaseId": "5a0e2c4e-4f4c-4a77-9d38-6d0f5c1e9b11", "fencingToken": 1, "extendSeconds": 0}"#,
            Some("extendSeconds"),
        ),
        (
            "/orchestrator/processing-pool/drain",
            "{}",
            Some("poolType"),
        ),
        (
            "/orchestrator/processing-pool/drain",
            r#"{"poolType": "p", "deadlineSeconds": 0}"#,
            Some("deadlineSeconds"),
        ),
        (
            "/orchestrator/deploy",
            r#"{"preset": "p", "strategy": "canary"}"#,
            Some("canaryWeight"),
        ),
        (
            "/orchestrator/deploy",
            r#"{"preset": "p", "strategy": "canary", "canaryWeight": 100}"#,
            Some("canaryWeight"),
        ),
        (
            "/orchestrator/deploy",
            r#"{"preset": "p", "canaryWeight": 10}"#,
            Some("canaryWeight"),
        ),
        (
            "/orchestrator/promote",
            r#"{"deploymentId": " "}"#,
            Some("deploymentId"),
        ),
        ("/orchestrator/config/rollback", "{}", Some("reason")),
        ("/orchestrator/containers/status", "{}", Some("appName")),
        (
            "/orchestrator/containers/status",
            r#"{"appName": "  "}"#,
            Some("appName"),
        ),
        ("/orchestrator/teardown", "{not json", None),
        ("/orchestrator/teardown", "{} {}", None),
        ("/orchestrator/deploy", "[]", None),
    ];
    for (path, body, field) in cases {
        let reply = post(&router, path, body).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{path} {body}");
        assert_eq!(
            reply.content_type.as_deref(),
            Some("application/json"),
            "{path}"
        );
        let error = reply.error();
        assert_eq!(error.field.as_deref(), *field, "{path} {body}: {error:?}");
        assert!(
            error.error.contains(field.unwrap_or("")),
            "{path}: the message names the field: {error:?}"
        );
    }
    // Nothing was done: no backend call, no configuration, no pool.
    assert!(w.backend.calls().is_empty(), "{:?}", w.backend.calls());
    assert_eq!(w.adapters.store.latest_config_version().await.unwrap(), 0);
    assert!(w.adapters.leases.list_pools().await.unwrap().is_empty());
    w.cp.shutdown().await;
}

#[tokio::test]
async fn every_answer_has_a_json_body_of_the_documented_type_for_its_status() {
    let w = world(None).await;
    let router = w.cp.router();
    // Valid requests: whatever the service answers, a 2xx carries the response type and
    // anything else an ApiError (or, where docs/COMPATIBILITY.md#endpoints says so, the
    // response type).
    let cases: &[(&str, &str)] = &[
        ("/orchestrator/config/version", "{}"),
        ("/orchestrator/service-routing", ""),
        ("/orchestrator/service-routing", "{}"),
        ("/orchestrator/backends/list", "{}"),
        ("/orchestrator/presets/list", "{}"),
        ("/orchestrator/health/services", "{}"),
        ("/orchestrator/status", "{}"),
    ];
    for (path, body) in cases {
        let reply = post(&router, path, body).await;
        assert_eq!(
            reply.content_type.as_deref(),
            Some("application/json"),
            "{path}"
        );
        let json = reply.json();
        if reply.status.is_success() {
            assert!(json.is_object(), "{path}: {json}");
            assert!(json.get("error").is_none(), "{path}: {json}");
        } else {
            assert!(reply.status.as_u16() >= 400, "{path}: {}", reply.status);
            assert!(!reply.error().error.is_empty(), "{path}");
        }
    }
    // Requests that fail with any implementation: unknown lease, unconfigured pool,
    // missing configuration version.
    let failing: &[(&str, &str)] = &[
        (
            "/orchestrator/processing-pool/release",
            r#"{"leaseId": "6f1c0a52-3f0e-4c55-9b3e-2f5a2f7c1d10"}"#,
        ),
        (
            "/orchestrator/processing-pool/scale",
            r#"{"poolType": "never-configured", "targetInstances": 2}"#,
        ),
        (
            "/orchestrator/config/rollback",
            r#"{"reason": "test", "targetVersion": 99}"#,
        ),
    ];
    for (path, body) in failing {
        let reply = post(&router, path, body).await;
        assert!(
            reply.status.is_client_error() || reply.status.is_server_error(),
            "{path}: {}",
            reply.status
        );
        let error = reply.error();
        assert!(
            !error.error.is_empty() && !error.error.starts_with("invalid request body"),
            "{path}: the body is valid, the failure is the service's: {error:?}"
        );
    }
    w.cp.shutdown().await;
}

#[tokio::test]
async fn the_bearer_token_guards_every_route_but_health() {
    let w = world(Some("s3cret")).await;
    let router = w.cp.router();
    for path in api::endpoint_paths() {
        let reply = post(&router, path, "{}").await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(reply.www_authenticate.as_deref(), Some("Bearer"), "{path}");
        assert!(!reply.error().error.is_empty());
    }
    for (path, token) in [
        ("/openapi.json", None),
        ("/openapi.yaml", Some("wrong")),
        ("/openapi.json", Some("s3cre")),
        ("/metrics", None),
        ("/metrics", Some("wrong")),
        ("/orchestrator/events", None),
        ("/orchestrator/events", Some("wrong")),
    ] {
        let reply = send(&router, "GET", path, "", token).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{path} {token:?}");
    }
    let reply = send(&router, "GET", "/openapi.json", "", Some("s3cret")).await;
    assert_eq!(reply.status, StatusCode::OK);
    let reply = send(
        &router,
        "POST",
        "/orchestrator/status",
        "{}",
        Some("s3cret"),
    )
    .await;
    assert_ne!(reply.status, StatusCode::UNAUTHORIZED);
    // Decoding happens after authentication: a bad body with the right token is a 400.
    let reply = send(
        &router,
        "POST",
        "/orchestrator/processing-pool/acquire",
        "{}",
        Some("s3cret"),
    )
    .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    let reply = send(&router, "GET", "/health", "", None).await;
    assert_eq!(reply.status, StatusCode::OK);
    w.cp.shutdown().await;
}

#[tokio::test]
async fn health_reports_the_store_and_needs_no_token() {
    let w = world(Some("t")).await;
    let reply = send(&w.cp.router(), "GET", "/health", "", None).await;
    assert_eq!(reply.status, StatusCode::OK);
    let json = reply.json();
    assert_eq!(json["status"], "ok");
    assert_eq!(json["store"], "ok");
    assert!(json["version"].is_string());
    // In memory the process is the only replica: always leader, token 1.
    assert_eq!(json["leader"], true);
    let candidate = w.cp.leader().candidate_id().to_owned();
    assert!(candidate.starts_with("bannou-"), "{candidate}");
    assert_eq!(
        json["leadership"],
        serde_json::json!({"candidate": candidate, "holder": candidate, "token": 1})
    );
    w.cp.shutdown().await;
}

#[tokio::test]
async fn the_openapi_document_is_served_as_yaml_and_json() {
    let w = world(None).await;
    let router = w.cp.router();
    let reply = send(&router, "GET", "/openapi.json", "", None).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json(), *api::openapi::document());
    let reply = send(&router, "GET", "/openapi.yaml", "", None).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.content_type.unwrap().starts_with("application/yaml"));
    assert_eq!(reply.body, api::openapi::OPENAPI_YAML.as_bytes());
    w.cp.shutdown().await;
}

//! `ApiClient` (and the CLI commands over it) against a tiny axum server on 127.0.0.1:0
//! that records every request and answers canned JSON: paths, upstream field names,
//! bearer header, error decoding, body-carrying error statuses, connection refused.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use bannou_host::client::{ApiClient, ClientError, paths};
use orchestrator_core::api::*;
use serde_json::{Value, json};
use uuid::Uuid;

const TS: &str = "2026-03-02T14:05:31.512+00:00";
const LEASE: &str = "5a0e2c4e-4f4c-4a77-9d38-6d0f5c1e9b11";

// === the fake server ===

/// One request as the server saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: Method,
    path: String,
    authorization: Option<String>,
    body: Value,
}

#[derive(Default)]
struct Shared {
    seen: Mutex<Vec<Seen>>,
    /// path -> (status, raw body)
    answers: Mutex<HashMap<String, (u16, String)>>,
}

struct FakeHost {
    base: String,
    shared: Arc<Shared>,
}

impl FakeHost {
    async fn start() -> FakeHost {
        let shared = Arc::new(Shared::default());
        let app = Router::new().fallback(record).with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FakeHost {
            base: format!("http://{addr}"),
            shared,
        }
    }

    fn answer(&self, path: &str, status: u16, body: impl Into<String>) -> &Self {
        self.shared
            .answers
            .lock()
            .unwrap()
            .insert(path.to_owned(), (status, body.into()));
        self
    }

    fn answer_json(&self, path: &str, body: Value) -> &Self {
        self.answer(path, 200, body.to_string())
    }

    fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().unwrap().clone()
    }

    fn last(&self) -> Seen {
        self.seen().pop().expect("a request was recorded")
    }

    fn client(&self) -> ApiClient {
        ApiClient::new(&self.base).unwrap()
    }
}

async fn record(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    shared.seen.lock().unwrap().push(Seen {
        method,
        path: path.clone(),
        authorization: headers
            .get("authorization")
            .map(|v| v.to_str().unwrap().to_owned()),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    });
    let answer = shared.answers.lock().unwrap().get(&path).cloned();
    match answer {
        Some((status, body)) => (
            StatusCode::from_u16(status).unwrap(),
            [("content-type", "application/json")],
            body,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "").into_response(),
    }
}

fn deploy_body(success: bool) -> Value {
    let mut body = json!({"success": success, "deploymentId": "d-1", "backend": "Compose",
                          "duration": "1.2s"});
    if !success {
        body["warnings"] = json!([
            "auth-node: image not found",
            "Deployment rolled back due to partial failure"
        ]);
    }
    body
}

/// A valid canned answer for every endpoint.
fn canned(host: &FakeHost) {
    host.answer_json(
        paths::INFRASTRUCTURE_HEALTH,
        json!({"healthy": true, "timestamp": TS, "components": [
            {"name": "statestore", "status": "Healthy", "lastSeen": TS}]}),
    )
    .answer_json(
        paths::SERVICES_HEALTH,
        json!({"timestamp": TS, "source": "All", "controlPlaneAppId": "bannou",
               "totalServices": 0, "healthPercentage": 0.0,
               "healthyServices": [], "unhealthyServices": []}),
    )
    .answer_json(
        paths::RESTART_SERVICE,
        json!({"duration": "00:00:05", "currentStatus": "Healthy"}),
    )
    .answer_json(
        paths::SHOULD_RESTART_SERVICE,
        json!({"shouldRestart": false, "reason": "healthy"}),
    )
    .answer_json(
        paths::BACKENDS,
        json!({"timestamp": TS, "backends": [], "recommended": "InProcess"}),
    )
    .answer_json(
        paths::PRESETS,
        json!({"presets": [], "activePreset": "bannou"}),
    )
    .answer_json(paths::DEPLOY, deploy_body(true))
    .answer_json(
        paths::SERVICE_ROUTING,
        json!({"mappings": {"auth": "bannou-auth"}, "defaultAppId": "bannou",
               "generatedAt": TS, "totalServices": 1}),
    )
    .answer_json(paths::STATUS, json!({"deployed": false, "timestamp": TS}))
    .answer_json(paths::TEARDOWN, json!({"duration": "0s"}))
    .answer_json(paths::CLEAN, json!({"removedContainers": 1}))
    .answer_json(paths::LOGS, json!({"logs": []}))
    .answer_json(paths::TOPOLOGY, json!({"appliedChanges": []}))
    .answer_json(
        paths::CONTAINER_RESTART,
        json!({"accepted": true, "currentInstances": 1}),
    )
    .answer_json(
        paths::CONTAINER_STATUS,
        json!({"appName": "bannou-auth", "status": "Running", "timestamp": TS, "instances": 1}),
    )
    .answer_json(
        paths::CONFIG_ROLLBACK,
        json!({"previousVersion": 2, "currentVersion": 3}),
    )
    .answer_json(
        paths::CONFIG_VERSION,
        json!({"version": 3, "timestamp": TS}),
    )
    .answer_json(
        paths::POOL_ACQUIRE,
        json!({"processorId": "p-1", "appId": "bannou-pool-asset-1", "leaseId": LEASE,
               "expiresAt": TS, "fencingToken": 7}),
    )
    .answer_json(paths::POOL_RELEASE, json!({"processorId": "p-1"}))
    .answer_json(
        paths::POOL_STATUS,
        json!({"totalInstances": 2, "availableInstances": 1, "busyInstances": 1,
               "utilization": 0.5}),
    )
    .answer_json(
        paths::POOL_SCALE,
        json!({"previousInstances": 1, "currentInstances": 3, "scaledUp": 2}),
    )
    .answer_json(paths::POOL_CLEANUP, json!({"instancesRemoved": 1}))
    .answer_json(
        paths::POOL_RENEW,
        json!({"processorId": "p-1", "appId": "bannou-pool-p-1", "leaseId": LEASE,
               "expiresAt": TS, "fencingToken": 7}),
    )
    .answer_json(
        paths::POOL_DRAIN,
        json!({"removed": ["bannou-pool-p-2"], "draining": ["bannou-pool-p-1"], "deadline": TS}),
    )
    .answer_json(paths::HEALTH, json!({"status": "ok"}));
}

// === tests ===

#[tokio::test]
async fn every_endpoint_posts_upstream_json_to_its_path_with_the_token() {
    let host = FakeHost::start().await;
    canned(&host);
    let c = host.client().with_token(Some("s3cret".into()));

    let reply = c
        .infrastructure_health(&InfrastructureHealthRequest::default())
        .await
        .unwrap();
    assert!(reply.is_success() && reply.body.healthy);
    c.services_health(&ServiceHealthRequest {
        source: ServiceHealthSource::DeployedOnly,
        service_filter: Some("auth".into()),
    })
    .await
    .unwrap();
    let restarted = c
        .restart_service(&ServiceRestartRequest {
            service_name: "auth".into(),
            environment: None,
            force: true,
            timeout: 30,
        })
        .await
        .unwrap();
    assert_eq!(restarted.duration, "00:00:05");
    c.should_restart_service(&ShouldRestartServiceRequest {
        service_name: "auth".into(),
    })
    .await
    .unwrap();
    c.backends(&ListBackendsRequest::default()).await.unwrap();
    c.presets(&ListPresetsRequest::default()).await.unwrap();
    let deployed = c
        .deploy(&DeployRequest {
            preset: Some("game-stack".into()),
            dry_run: true,
            auto_revert: false,
            ..DeployRequest::default()
        })
        .await
        .unwrap();
    assert_eq!((deployed.status, deployed.body.success), (200, true));
    let routing = c
        .service_routing(&GetServiceRoutingRequest {
            service_filter: Some("au".into()),
        })
        .await
        .unwrap();
    assert_eq!(routing.mappings["auth"], "bannou-auth");
    c.status(&GetStatusRequest::default()).await.unwrap();
    c.teardown(&TeardownRequest {
        include_infrastructure: true,
        ..TeardownRequest::default()
    })
    .await
    .unwrap();
    c.clean(&CleanRequest {
        targets: vec![CleanTarget::Volumes],
        force: false,
        older_than: None,
        label_filter: None,
    })
    .await
    .unwrap();
    c.logs(&GetLogsRequest {
        service: Some("bannou-auth".into()),
        tail: 5,
        ..GetLogsRequest::default()
    })
    .await
    .unwrap();
    c.update_topology(&TopologyUpdateRequest {
        changes: vec![TopologyChange {
            action: TopologyChangeAction::Scale,
            node_name: None,
            services: Some(vec!["auth".into()]),
            replicas: Some(2),
            environment: None,
            node_config: None,
        }],
        mode: DeploymentMode::Graceful,
        timeout: 120,
    })
    .await
    .unwrap();
    c.request_container_restart(&ContainerRestartRequestBody {
        app_name: "bannou-auth".into(),
        reason: "config".into(),
        priority: Some(RestartPriority::Immediate),
        shutdown_grace_period: 30,
    })
    .await
    .unwrap();
    let status = c
        .container_status(&GetContainerStatusRequest {
            app_name: "bannou-auth".into(),
        })
        .await
        .unwrap();
    assert_eq!(status.body.status, ContainerStatusType::Running);
    c.rollback_config(&ConfigRollbackRequest {
        reason: "bad".into(),
        target_version: Some(2),
    })
    .await
    .unwrap();
    c.config_version(&GetConfigVersionRequest::default())
        .await
        .unwrap();
    let lease = c
        .acquire_processor(&AcquireProcessorRequest {
            wait_ms: 500,
            ..AcquireProcessorRequest::new("asset-processor")
        })
        .await
        .unwrap();
    assert_eq!(
        (lease.lease_id.to_string().as_str(), lease.fencing_token),
        (LEASE, 7)
    );
    c.release_processor(&ReleaseProcessorRequest {
        success: false,
        fencing_token: Some(lease.fencing_token),
        ..ReleaseProcessorRequest::new(lease.lease_id)
    })
    .await
    .unwrap();
    c.pool_status(&GetPoolStatusRequest {
        pool_type: "asset-processor".into(),
        include_metrics: true,
    })
    .await
    .unwrap();
    let scaled = c
        .scale_pool(&ScalePoolRequest {
            pool_type: "asset-processor".into(),
            target_instances: 3,
            force: false,
        })
        .await
        .unwrap();
    assert_eq!(scaled.scaled_up, 2);
    c.cleanup_pool(&CleanupPoolRequest {
        pool_type: "asset-processor".into(),
        preserve_minimum: false,
    })
    .await
    .unwrap();
    assert_eq!(c.health().await.unwrap(), json!({"status": "ok"}));

    let seen = host.seen();
    let posts: Vec<&Seen> = seen.iter().filter(|s| s.method == Method::POST).collect();
    assert_eq!(posts.len(), 22, "one POST per endpoint");
    let paths: Vec<&str> = posts.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/orchestrator/health/infrastructure",
            "/orchestrator/health/services",
            "/orchestrator/services/restart",
            "/orchestrator/services/should-restart",
            "/orchestrator/backends/list",
            "/orchestrator/presets/list",
            "/orchestrator/deploy",
            "/orchestrator/service-routing",
            "/orchestrator/status",
            "/orchestrator/teardown",
            "/orchestrator/clean",
            "/orchestrator/logs",
            "/orchestrator/topology",
            "/orchestrator/containers/request-restart",
            "/orchestrator/containers/status",
            "/orchestrator/config/rollback",
            "/orchestrator/config/version",
            "/orchestrator/processing-pool/acquire",
            "/orchestrator/processing-pool/release",
            "/orchestrator/processing-pool/status",
            "/orchestrator/processing-pool/scale",
            "/orchestrator/processing-pool/cleanup",
        ]
    );
    assert!(
        seen.iter()
            .all(|s| s.authorization.as_deref() == Some("Bearer s3cret")),
        "every request carries the bearer token"
    );
    let health = seen.last().unwrap();
    assert_eq!(
        (&health.method, health.path.as_str()),
        (&Method::GET, "/health")
    );

    // Bodies use upstream camelCase names.
    let body = |path: &str| {
        posts
            .iter()
            .find(|s| s.path == path)
            .map(|s| s.body.clone())
            .unwrap()
    };
    assert_eq!(
        body(paths::SERVICES_HEALTH),
        json!({"source": "DeployedOnly", "serviceFilter": "auth"})
    );
    let deploy = body(paths::DEPLOY);
    assert_eq!(deploy["preset"], "game-stack");
    assert_eq!(deploy["dryRun"], true);
    assert_eq!(deploy["autoRevert"], false);
    assert_eq!(deploy["waitForHealthy"], true);
    assert_eq!(body(paths::SERVICE_ROUTING), json!({"serviceFilter": "au"}));
    assert_eq!(body(paths::TEARDOWN)["includeInfrastructure"], true);
    assert_eq!(body(paths::CLEAN)["targets"], json!(["Volumes"]));
    assert_eq!(body(paths::LOGS)["service"], "bannou-auth");
    assert_eq!(body(paths::TOPOLOGY)["changes"][0]["action"], "Scale");
    assert_eq!(body(paths::CONTAINER_RESTART)["appName"], "bannou-auth");
    assert_eq!(body(paths::CONTAINER_RESTART)["priority"], "Immediate");
    assert_eq!(
        body(paths::CONFIG_ROLLBACK),
        json!({"reason": "bad", "targetVersion": 2})
    );
    let acquire = body(paths::POOL_ACQUIRE);
    assert_eq!(acquire["poolType"], "asset-processor");
    assert_eq!(acquire["waitMs"], 500);
    assert_eq!(acquire["timeoutSeconds"], 300);
    assert_eq!(
        body(paths::POOL_RELEASE),
        json!({"leaseId": LEASE, "success": false, "fencingToken": 7})
    );
    assert_eq!(body(paths::POOL_SCALE)["targetInstances"], 3);
    assert_eq!(body(paths::POOL_CLEANUP)["preserveMinimum"], false);
    assert_eq!(body(paths::RESTART_SERVICE)["serviceName"], "auth");
}

#[tokio::test]
async fn no_token_sends_no_authorization_header() {
    let host = FakeHost::start().await;
    canned(&host);
    host.client()
        .with_token(Some("  ".into()))
        .status(&GetStatusRequest::default())
        .await
        .unwrap();
    assert_eq!(host.last().authorization, None);
}

#[tokio::test]
async fn a_400_names_the_field_at_fault() {
    let host = FakeHost::start().await;
    host.answer(
        paths::POOL_ACQUIRE,
        400,
        json!({"error": "poolType: must not be empty", "field": "poolType"}).to_string(),
    );
    let err = host
        .client()
        .acquire_processor(&AcquireProcessorRequest::new(""))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(400));
    let api = err.api_error().expect("the ApiError body is decoded");
    assert_eq!(api.field.as_deref(), Some("poolType"));
    let text = err.to_string();
    assert!(
        text.contains("HTTP 400 Bad Request: poolType: must not be empty"),
        "{text}"
    );
    assert!(
        text.contains("/orchestrator/processing-pool/acquire"),
        "{text}"
    );
}

#[tokio::test]
async fn a_failed_deploy_returns_its_body_with_the_500() {
    let host = FakeHost::start().await;
    host.answer(paths::DEPLOY, 500, deploy_body(false).to_string());
    let reply = host
        .client()
        .deploy(&DeployRequest {
            preset: Some("game-stack".into()),
            ..DeployRequest::default()
        })
        .await
        .expect("a 500 with a DeployResponse is a reply, not an error");
    assert_eq!(reply.status, 500);
    assert!(!reply.is_success() && !reply.body.success);
    assert_eq!(
        reply.body.warnings.as_deref().unwrap()[0],
        "auth-node: image not found"
    );
    // Callers that only want success get an error that still carries the body.
    let err = reply.into_ok("u").unwrap_err();
    match err {
        ClientError::Status { status, body, .. } => {
            assert_eq!(status, 500);
            assert_eq!(body.unwrap()["success"], false);
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn body_carrying_statuses_of_health_and_container_status() {
    let host = FakeHost::start().await;
    host.answer(
        paths::INFRASTRUCTURE_HEALTH,
        500,
        json!({"healthy": false, "timestamp": TS, "components": [
            {"name": "statestore", "status": "Unavailable", "lastSeen": TS,
             "message": "State stores not initialized"}]})
        .to_string(),
    )
    .answer(
        paths::CONTAINER_STATUS,
        404,
        json!({"appName": "ghost", "status": "Stopped", "timestamp": TS, "instances": 0})
            .to_string(),
    );
    let c = host.client();
    let infra = c
        .infrastructure_health(&InfrastructureHealthRequest::default())
        .await
        .unwrap();
    assert_eq!(infra.status, 500);
    assert!(!infra.body.healthy);
    let status = c
        .container_status(&GetContainerStatusRequest {
            app_name: "ghost".into(),
        })
        .await
        .unwrap();
    assert_eq!(status.status, 404);
    assert!(status.body.is_not_found());
}

#[tokio::test]
async fn empty_error_bodies_and_undecodable_bodies() {
    let host = FakeHost::start().await;
    host.answer(paths::DEPLOY, 500, "")
        .answer(paths::STATUS, 503, "")
        .answer(paths::CONFIG_VERSION, 200, "{\"nope\": 1}")
        .answer(
            paths::RESTART_SERVICE,
            409,
            json!({"error": "restart not needed"}).to_string(),
        );
    let c = host.client();
    // A 500 with no body: no DeployResponse to return, so an error.
    let err = c.deploy(&DeployRequest::default()).await.unwrap_err();
    assert!(
        matches!(
            &err,
            ClientError::Status {
                status: 500,
                error: None,
                body: None,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .ends_with("HTTP 500 Internal Server Error (no body)")
    );
    let err = c.status(&GetStatusRequest::default()).await.unwrap_err();
    assert_eq!(err.status(), Some(503));
    let err = c
        .config_version(&GetConfigVersionRequest::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, ClientError::Decode { status: 200, .. }),
        "{err:?}"
    );
    let err = c
        .restart_service(&ServiceRestartRequest {
            service_name: "auth".into(),
            environment: None,
            force: false,
            timeout: 120,
        })
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(409));
    assert_eq!(err.api_error().unwrap().error, "restart not needed");
}

#[tokio::test]
async fn connection_refused_names_the_url_and_suggests_serve() {
    // A port that was just free: bind, read it, close.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let base = format!("http://{addr}");
    let err = ApiClient::new(&base)
        .unwrap()
        .status(&GetStatusRequest::default())
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Connect { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains(&format!("{base}/orchestrator/status")),
        "{text}"
    );
    assert!(text.contains("bannou-host serve"), "{text}");
    assert!(text.to_lowercase().contains("refused"), "{text}");
}

#[tokio::test]
async fn cli_deploy_prints_a_failed_deploys_warnings_and_fails() {
    use bannou_host::cli::{Cli, Command, deploy};
    use clap::Parser;

    let host = FakeHost::start().await;
    host.answer(paths::DEPLOY, 500, deploy_body(false).to_string());
    let cli =
        Cli::try_parse_from(["bannou-host", "deploy", "game-stack", "--api", &host.base]).unwrap();
    let Command::Deploy(args) = cli.command else {
        panic!()
    };
    let mut out = Vec::new();
    let err = deploy::run_deploy(args, &mut out).await.unwrap_err();
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.contains("FAILED to deploy preset `game-stack`"),
        "{text}"
    );
    assert!(text.contains("  - auth-node: image not found"), "{text}");
    assert!(
        err.to_string().contains("deploy failed (HTTP 500)"),
        "{err}"
    );

    // --json prints the response body as sent.
    let cli = Cli::try_parse_from([
        "bannou-host",
        "deploy",
        "game-stack",
        "--json",
        "--api",
        &host.base,
    ])
    .unwrap();
    let Command::Deploy(args) = cli.command else {
        panic!()
    };
    let mut out = Vec::new();
    assert!(deploy::run_deploy(args, &mut out).await.is_err());
    let printed: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(printed, deploy_body(false));
}

#[tokio::test]
async fn cli_pool_acquire_prints_the_lease() {
    use bannou_host::cli::{Cli, Command, pool};
    use clap::Parser;

    let host = FakeHost::start().await;
    canned(&host);
    let cli = Cli::try_parse_from([
        "bannou-host",
        "pool",
        "acquire",
        "asset-processor",
        "--wait-ms",
        "100",
        "--api",
        &host.base,
        "--token",
        "t",
    ])
    .unwrap();
    let Command::Pool(args) = cli.command else {
        panic!()
    };
    let mut out = Vec::new();
    pool::run(args, &mut out).await.unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains(&format!("lease:         {LEASE}")), "{text}");
    assert_eq!(host.last().authorization.as_deref(), Some("Bearer t"));
    assert_eq!(host.last().body["waitMs"], 100);
    let _ = Uuid::parse_str(LEASE).unwrap();
}

#[tokio::test]
async fn cli_pool_renew_and_drain_send_their_fields_and_print_the_answer() {
    use bannou_host::cli::{Cli, Command, pool};
    use clap::Parser;

    let host = FakeHost::start().await;
    canned(&host);
    let run = |args: Vec<&str>| {
        let cli = Cli::try_parse_from(
            ["bannou-host", "pool"]
                .into_iter()
                .chain(args)
                .chain(["--api", host.base.as_str()]),
        )
        .unwrap();
        let Command::Pool(args) = cli.command else {
            panic!()
        };
        async move {
            let mut out = Vec::new();
            pool::run(args, &mut out).await.unwrap();
            String::from_utf8(out).unwrap()
        }
    };
    let text = run(vec![
        "renew",
        LEASE,
        "--fencing-token",
        "7",
        "--extend-seconds",
        "60",
    ])
    .await;
    let seen = host.last();
    assert_eq!(seen.path, paths::POOL_RENEW);
    assert_eq!(
        seen.body,
        json!({"leaseId": LEASE, "fencingToken": 7, "extendSeconds": 60})
    );
    assert!(text.contains(&format!("lease:         {LEASE}")), "{text}");
    assert!(text.contains("fencing token: 7"), "{text}");

    let text = run(vec![
        "drain",
        "p",
        "--worker",
        "bannou-pool-p-1",
        "--deadline-seconds",
        "30",
    ])
    .await;
    let seen = host.last();
    assert_eq!(seen.path, paths::POOL_DRAIN);
    assert_eq!(
        seen.body,
        json!({"poolType": "p", "processorId": "bannou-pool-p-1", "deadlineSeconds": 30})
    );
    assert!(
        text.contains("Pool `p`: 1 worker(s) stopped, 1 draining"),
        "{text}"
    );
    run(vec!["drain", "p"]).await;
    assert_eq!(host.last().body, json!({"poolType": "p"}));
}

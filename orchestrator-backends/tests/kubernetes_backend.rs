//! The Kubernetes backend through `kube`'s real client against a fake API server started
//! by each test (axum on 127.0.0.1, plain HTTP): deploy, status in every replica state,
//! scale, restart, logs, teardown, idempotent redeploy, readiness and deletion waits
//! through watches, prune, API errors, and the shared conformance suite. No real cluster
//! is involved.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use orchestrator_backends::containers::kubernetes::manifest::{
    MANAGED_BY_LABEL, MANAGED_BY_VALUE, RESTART_COUNT_ANNOTATION, RESTARTED_AT_ANNOTATION,
};
use orchestrator_backends::containers::kubernetes::{KubernetesBackend, KubernetesConfig};
use orchestrator_backends::http::install_crypto_provider;
use orchestrator_core::Timestamp;
use orchestrator_core::api::enums::{CleanTarget, ContainerStatusType, LogStreamType};
use orchestrator_core::names::AppId;
use orchestrator_core::ports::backend::{
    BackendError, ContainerBackend, LogQuery, NodeDeployment, RestartOptions, TeardownOptions,
    labels,
};
use orchestrator_core::testkit::backend::{BackendSuite, backend_conformance};
use orchestrator_core::time::ManualClock;
use serde_json::{Value, json};

use fake::{Fake, pod_json, time};

const NS: &str = "kube-test";

fn config() -> KubernetesConfig {
    KubernetesConfig {
        namespace: NS.to_owned(),
        ..KubernetesConfig::default()
    }
}

fn backend_at(url: &str, config: KubernetesConfig) -> KubernetesBackend {
    install_crypto_provider();
    let kube_config = kube::Config::new(url.parse().unwrap());
    KubernetesBackend::from_kube_config(kube_config, config).unwrap()
}

async fn setup(simulate: bool) -> (Arc<Fake>, KubernetesBackend) {
    let (fake, url) = Fake::start(NS, simulate).await;
    (fake, backend_at(&url, config()))
}

fn app(s: &str) -> AppId {
    AppId::from(s)
}

fn node(app_id: &str) -> NodeDeployment {
    let mut n = NodeDeployment::new(app(app_id), "node", "bannou:test");
    n.environment = BTreeMap::from([
        ("BANNOU_SERVICES_ENABLED".to_owned(), "false".to_owned()),
        ("AUTH_SERVICE_ENABLED".to_owned(), "true".to_owned()),
    ]);
    n.labels.insert("team".to_owned(), "core".to_owned());
    n
}

fn deployment_name(app_id: &str) -> String {
    format!("bannou-node-{app_id}")
}

/// Labels of a pod of our node `app_id`.
fn pod_labels(app_id: &str) -> Value {
    json!({ labels::APP_ID: app_id, MANAGED_BY_LABEL: MANAGED_BY_VALUE })
}

fn rolled_out(replicas: i64) -> Value {
    json!({ "status": {
        "observedGeneration": 1, "replicas": replicas, "readyReplicas": replicas,
        "availableReplicas": replicas, "updatedReplicas": replicas,
    }})
}

#[tokio::test]
async fn deploy_applies_a_deployment_and_a_service_with_our_field_manager_and_labels() {
    let (fake, backend) = setup(true).await;
    let deployed = backend.deploy_node(&node("bannou-auth")).await.unwrap();
    let name = deployment_name("bannou-auth");
    assert_eq!(deployed.name, name);
    assert!(!deployed.replaced);
    let stored = fake.deployment(&name).unwrap();
    assert_eq!(
        deployed.backend_id,
        stored["metadata"]["uid"].as_str().unwrap(),
        "the Deployment UID"
    );

    let applies = fake.requests_to("PATCH", &format!("/deployments/{name}"));
    assert_eq!(applies.len(), 1);
    let apply = &applies[0];
    assert!(
        apply
            .path
            .starts_with(&format!("/apis/apps/v1/namespaces/{NS}/"))
    );
    assert_eq!(
        apply.content_type.as_deref(),
        Some("application/apply-patch+yaml"),
        "server-side apply"
    );
    assert_eq!(apply.query["fieldManager"], "bannou-orchestrator");
    assert_eq!(apply.query["force"], "true");
    let body = apply.body.as_ref().unwrap();
    assert_eq!(body["kind"], "Deployment");
    assert_eq!(body["apiVersion"], "apps/v1");
    let l = &body["metadata"]["labels"];
    assert_eq!(l[MANAGED_BY_LABEL], MANAGED_BY_VALUE);
    assert_eq!(l[labels::APP_ID], "bannou-auth");
    assert_eq!(l[labels::SERVICE], "node");
    assert_eq!(l[labels::MANAGED], "true");
    assert_eq!(l["team"], "core");
    let container = &body["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["name"], "bannou");
    assert_eq!(container["image"], "bannou:test");
    assert_eq!(
        container["readinessProbe"]["httpGet"]["path"], "/auth/ping",
        "the node's first service's ping"
    );
    let env: BTreeMap<String, String> = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_owned(),
                e["value"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(env["BANNOU_APP_ID"], "bannou-auth");
    assert_eq!(env["DAEMON_MODE"], "true");
    assert_eq!(env["BANNOU_HEARTBEAT_ENABLED"], "true");
    assert_eq!(
        env["NODE_SERVICE_ENABLED"], "true",
        "docs/COMPATIBILITY.md#backend-injected-variables"
    );
    assert_eq!(env["AUTH_SERVICE_ENABLED"], "true");

    let service_applies = fake.requests_to("PATCH", "/services/bannou-auth");
    assert_eq!(service_applies.len(), 1, "a Service named by the app-id");
    let svc = &service_applies[0];
    assert_eq!(
        svc.content_type.as_deref(),
        Some("application/apply-patch+yaml")
    );
    assert_eq!(svc.query["fieldManager"], "bannou-orchestrator");
    let svc_body = svc.body.as_ref().unwrap();
    assert_eq!(svc_body["spec"]["selector"][labels::APP_ID], "bannou-auth");
    assert_eq!(
        svc_body["spec"]["selector"][MANAGED_BY_LABEL],
        MANAGED_BY_VALUE
    );
    assert_eq!(svc_body["spec"]["ports"][0]["port"], 80);
    assert_eq!(svc_body["metadata"]["labels"][labels::MANAGED], "true");
    assert_eq!(fake.service_names(), vec!["bannou-auth".to_owned()]);

    let status = backend.status(&app("bannou-auth")).await.unwrap();
    assert_eq!(status.status, ContainerStatusType::Running);
    assert_eq!(status.instances, 1);
}

#[tokio::test]
async fn redeploy_sends_the_same_patch_and_keeps_the_object() {
    let (fake, backend) = setup(true).await;
    let first = backend.deploy_node(&node("bannou-auth")).await.unwrap();
    let second = backend.deploy_node(&node("bannou-auth")).await.unwrap();
    assert!(second.replaced, "the node existed");
    assert_eq!(
        first.backend_id, second.backend_id,
        "same Deployment, not recreated"
    );
    let name = deployment_name("bannou-auth");
    let applies = fake.requests_to("PATCH", &format!("/deployments/{name}"));
    assert_eq!(applies.len(), 2);
    assert_eq!(applies[0].body, applies[1].body, "the same patch twice");
    assert_eq!(applies[0].query, applies[1].query);
    let services = fake.requests_to("PATCH", "/services/bannou-auth");
    assert_eq!(services[0].body, services[1].body);
    assert!(
        fake.requests_to("DELETE", "").is_empty(),
        "a redeploy deletes nothing"
    );
    assert_eq!(
        fake.deployment(&name).unwrap()["metadata"]["generation"],
        1,
        "an unchanged spec is not a new generation"
    );
    assert_eq!(backend.list().await.unwrap().len(), 1);

    // The same app-id for another service name replaces the node (one per app-id).
    let mut moved = node("bannou-auth");
    moved.service_name = "other".to_owned();
    let third = backend.deploy_node(&moved).await.unwrap();
    assert!(third.replaced);
    assert_eq!(
        fake.deployment_names(),
        vec!["bannou-other-bannou-auth".to_owned()]
    );
}

#[tokio::test]
async fn status_tells_every_replica_state() {
    let (fake, backend) = setup(false).await;
    for a in [
        "s-available",
        "s-progressing",
        "s-deadline",
        "s-crash",
        "s-zero",
    ] {
        backend.deploy_node(&node(a)).await.unwrap();
    }

    // Applied, nothing ready yet: progressing.
    let s = backend.status(&app("s-progressing")).await.unwrap();
    assert_eq!(s.status, ContainerStatusType::Starting);
    assert_eq!((s.instances, s.desired_replicas), (0, 1));
    assert_eq!(s.labels[labels::APP_ID], "s-progressing");

    // Every replica ready and available.
    fake.patch_deployment(&deployment_name("s-available"), rolled_out(1));
    fake.put_pod(
        pod_json(
            "s-available-1",
            pod_labels("s-available"),
            true,
            &time(50),
            None,
            1,
        ),
        "",
    );
    let s = backend.status(&app("s-available")).await.unwrap();
    assert_eq!(s.status, ContainerStatusType::Running);
    assert_eq!(s.instances, 1);
    assert_eq!(s.restart_count, 1, "the kubelet's container restarts");
    assert_eq!(s.started_at, Some(Timestamp::parse(&time(50)).unwrap()));

    // Scaled up, one of three ready: still progressing.
    fake.patch_deployment(
        &deployment_name("s-progressing"),
        json!({ "spec": { "replicas": 3 }, "status": {
            "observedGeneration": 1, "replicas": 3, "readyReplicas": 1,
            "availableReplicas": 1, "updatedReplicas": 3, "unavailableReplicas": 2,
        }}),
    );
    let s = backend.status(&app("s-progressing")).await.unwrap();
    assert_eq!(s.status, ContainerStatusType::Starting);
    assert_eq!((s.instances, s.desired_replicas), (1, 3));

    // Unavailable: the progress deadline passed.
    fake.patch_deployment(
        &deployment_name("s-deadline"),
        json!({ "status": { "observedGeneration": 1, "replicas": 1, "unavailableReplicas": 1,
        "conditions": [
            { "type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable" },
            { "type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded" },
        ]}}),
    );
    let s = backend.status(&app("s-deadline")).await.unwrap();
    assert_eq!(s.status, ContainerStatusType::Unhealthy);

    // Unavailable: its pod crash-loops.
    fake.put_pod(
        pod_json(
            "s-crash-1",
            pod_labels("s-crash"),
            false,
            &time(60),
            Some("CrashLoopBackOff"),
            7,
        ),
        "",
    );
    let s = backend.status(&app("s-crash")).await.unwrap();
    assert_eq!(s.status, ContainerStatusType::Unhealthy);
    assert_eq!(s.restart_count, 7);

    // Zero replicas.
    fake.patch_deployment(
        &deployment_name("s-zero"),
        json!({ "spec": { "replicas": 0 }, "status": { "observedGeneration": 1 } }),
    );
    let s = backend.status(&app("s-zero")).await.unwrap();
    assert_eq!(s.status, ContainerStatusType::Stopped);
    assert_eq!((s.instances, s.desired_replicas), (0, 0));

    // Not found.
    assert_eq!(
        backend.status(&app("s-missing")).await.unwrap_err(),
        BackendError::NotFound {
            app_id: app("s-missing")
        }
    );
    // Status asked the API by our labels only.
    let lists = fake.requests_to("GET", &format!("/namespaces/{NS}/deployments"));
    assert!(
        lists
            .iter()
            .all(|r| r.query["labelSelector"].contains(labels::MANAGED))
    );
}

#[tokio::test]
async fn scale_goes_through_the_scale_subresource() {
    let (fake, backend) = setup(true).await;
    backend.deploy_node(&node("bannou-auth")).await.unwrap();
    fake.clear_requests();
    let r = backend.scale(&app("bannou-auth"), 3).await.unwrap();
    assert_eq!((r.previous_replicas, r.current_replicas), (1, 3));
    let name = deployment_name("bannou-auth");
    assert_eq!(
        fake.requests_to("GET", &format!("/deployments/{name}/scale"))
            .len(),
        1
    );
    let patches = fake.requests_to("PATCH", &format!("/deployments/{name}/scale"));
    assert_eq!(patches.len(), 1);
    assert_eq!(
        patches[0].content_type.as_deref(),
        Some("application/merge-patch+json")
    );
    assert_eq!(patches[0].body, Some(json!({ "spec": { "replicas": 3 } })));
    assert!(
        fake.requests_to("PATCH", &format!("/deployments/{name}"))
            .is_empty(),
        "the Deployment itself is not patched"
    );
    let s = backend.status(&app("bannou-auth")).await.unwrap();
    assert_eq!(
        (s.status, s.instances, s.desired_replicas),
        (ContainerStatusType::Running, 3, 3)
    );

    let r = backend.scale(&app("bannou-auth"), 0).await.unwrap();
    assert_eq!(r.previous_replicas, 3);
    let s = backend.status(&app("bannou-auth")).await.unwrap();
    assert_eq!(s.status, ContainerStatusType::Stopped);

    assert!(matches!(
        backend.scale(&app("bannou-auth"), 1000).await,
        Err(BackendError::Unsupported { .. })
    ));
    assert!(matches!(
        backend.scale(&app("nobody"), 2).await,
        Err(BackendError::NotFound { .. })
    ));
}

#[tokio::test]
async fn restart_patches_the_restarted_at_annotation_like_kubectl() {
    let (fake, url) = Fake::start(NS, true).await;
    let clock = ManualClock::new(Timestamp::parse("2025-03-04T05:06:07Z").unwrap());
    let backend = backend_at(&url, config()).with_clock(Arc::new(clock));
    backend.deploy_node(&node("bannou-auth")).await.unwrap();
    let before = backend.status(&app("bannou-auth")).await.unwrap();
    let outcome = backend
        .restart(&app("bannou-auth"), &RestartOptions::default())
        .await
        .unwrap();
    assert_eq!(outcome.current_instances, 1);
    assert_eq!(
        outcome.strategy,
        orchestrator_core::api::enums::RestartStrategy::Rolling
    );
    let name = deployment_name("bannou-auth");
    let patches: Vec<_> = fake
        .requests_to("PATCH", &format!("/deployments/{name}"))
        .into_iter()
        .filter(|r| r.content_type.as_deref() != Some("application/apply-patch+yaml"))
        .collect();
    assert_eq!(patches.len(), 1);
    let p = &patches[0];
    assert_eq!(
        p.content_type.as_deref(),
        Some("application/strategic-merge-patch+json")
    );
    let body = p.body.as_ref().unwrap();
    assert_eq!(
        body["spec"]["template"]["metadata"]["annotations"][RESTARTED_AT_ANNOTATION],
        "2025-03-04T05:06:07Z"
    );
    assert_eq!(
        body["metadata"]["annotations"][RESTART_COUNT_ANNOTATION],
        "1"
    );

    let after = backend.status(&app("bannou-auth")).await.unwrap();
    assert_eq!(after.restart_count, before.restart_count + 1);
    assert!(after.started_at > before.started_at, "new pods rolled out");

    // A redeploy keeps the restart (our apply never sets the annotation).
    backend.deploy_node(&node("bannou-auth")).await.unwrap();
    let d = fake.deployment(&name).unwrap();
    assert_eq!(
        d["spec"]["template"]["metadata"]["annotations"][RESTARTED_AT_ANNOTATION],
        "2025-03-04T05:06:07Z"
    );
    assert!(matches!(
        backend
            .restart(&app("nobody"), &RestartOptions::default())
            .await,
        Err(BackendError::NotFound { .. })
    ));
}

#[tokio::test]
async fn logs_come_from_the_newest_ready_pod_with_timestamps() {
    let (fake, backend) = setup(false).await;
    backend.deploy_node(&node("bannou-auth")).await.unwrap();
    let labels = pod_labels("bannou-auth");
    fake.put_pod(
        pod_json("pod-old", labels.clone(), true, &time(10), None, 0),
        "2025-01-01T00:00:11Z old pod\n",
    );
    fake.put_pod(
        pod_json("pod-new", labels.clone(), true, &time(20), None, 0),
        "2025-01-01T00:01:00.000000001Z first line\n\
         2025-01-01T00:01:01Z second line\n\
         2025-01-01T00:01:02Z third line\n",
    );
    fake.put_pod(
        pod_json("pod-newest-unready", labels, false, &time(30), None, 0),
        "2025-01-01T00:02:00Z not ready yet\n",
    );
    let query = LogQuery {
        tail: Some(2),
        ..LogQuery::default()
    };
    let lines = backend.logs(&app("bannou-auth"), &query).await.unwrap();
    let reads = fake.requests_to("GET", "/log");
    assert_eq!(reads.len(), 1);
    assert!(
        reads[0].path.ends_with("/pods/pod-new/log"),
        "{}",
        reads[0].path
    );
    assert_eq!(reads[0].query["timestamps"], "true");
    assert_eq!(reads[0].query["container"], "bannou");
    assert_eq!(reads[0].query["tailLines"], "2");
    let got: Vec<(&str, LogStreamType)> = lines
        .iter()
        .map(|l| (l.message.as_str(), l.stream))
        .collect();
    assert_eq!(
        got,
        vec![
            ("second line", LogStreamType::Stdout),
            ("third line", LogStreamType::Stdout)
        ]
    );
    assert_eq!(
        lines[0].timestamp,
        Timestamp::parse("2025-01-01T00:01:01Z").unwrap()
    );

    // A time window goes as sinceTime; tail then applies after exact filtering.
    fake.clear_requests();
    let query = LogQuery {
        tail: Some(5),
        since: Some(Timestamp::parse("2025-01-01T00:01:00.5Z").unwrap()),
        until: Some(Timestamp::parse("2025-01-01T00:01:02Z").unwrap()),
    };
    let lines = backend.logs(&app("bannou-auth"), &query).await.unwrap();
    let reads = fake.requests_to("GET", "/log");
    assert!(reads[0].query.contains_key("sinceTime"));
    assert!(!reads[0].query.contains_key("tailLines"));
    let msgs: Vec<&str> = lines.iter().map(|l| l.message.as_str()).collect();
    assert_eq!(msgs, vec!["second line"]);

    assert!(matches!(
        backend.logs(&app("nobody"), &LogQuery::default()).await,
        Err(BackendError::NotFound { .. })
    ));
}

#[tokio::test]
async fn teardown_deletes_only_what_we_created() {
    let (fake, backend) = setup(false).await;
    backend.deploy_node(&node("bannou-a")).await.unwrap();
    backend.deploy_node(&node("bannou-b")).await.unwrap();
    // Not ours: no labels at all, and one that claims the app-id without our marker.
    fake.put_deployment(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": { "name": "redis", "labels": { "app": "redis" } },
        "spec": { "replicas": 1, "selector": {}, "template": {} },
    }));
    fake.put_deployment(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": { "name": "impostor", "labels": { labels::APP_ID: "bannou-a" } },
        "spec": { "replicas": 1, "selector": {}, "template": {} },
    }));
    fake.put_service(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": { "name": "bannou-a-extra", "labels": { labels::APP_ID: "bannou-a" } },
    }));
    fake.clear_requests();

    let torn = backend
        .teardown(&app("bannou-a"), &TeardownOptions::default())
        .await
        .unwrap();
    assert_eq!(torn.stopped, vec![deployment_name("bannou-a")]);
    assert!(torn.removed_volumes.is_empty());
    let deletes: Vec<String> = fake
        .requests()
        .into_iter()
        .filter(|r| r.method == "DELETE")
        .map(|r| r.path)
        .collect();
    assert_eq!(
        deletes,
        vec![
            format!(
                "/apis/apps/v1/namespaces/{NS}/deployments/{}",
                deployment_name("bannou-a")
            ),
            format!("/api/v1/namespaces/{NS}/services/bannou-a"),
        ]
    );
    assert_eq!(
        fake.deployment_names(),
        vec![
            deployment_name("bannou-b"),
            "impostor".to_owned(),
            "redis".to_owned()
        ]
    );
    assert_eq!(
        fake.service_names(),
        vec!["bannou-a-extra".to_owned(), "bannou-b".to_owned()]
    );
    assert!(matches!(
        backend.status(&app("bannou-a")).await,
        Err(BackendError::NotFound { .. })
    ));
    assert!(matches!(
        backend
            .teardown(&app("bannou-a"), &TeardownOptions::default())
            .await,
        Err(BackendError::NotFound { .. })
    ));
}

#[tokio::test]
async fn teardown_waits_for_the_deployment_to_be_gone_through_a_watch() {
    let (fake, backend) = setup(false).await;
    backend.deploy_node(&node("bannou-a")).await.unwrap();
    fake.hold_deletions();
    let backend = Arc::new(backend);
    let task = {
        let backend = backend.clone();
        tokio::spawn(async move {
            backend
                .teardown(&app("bannou-a"), &TeardownOptions::default())
                .await
        })
    };
    let name = deployment_name("bannou-a");
    let field = format!("metadata.name={name}");
    fake.wait_for_request(|r| r.is_watch() && r.query.get("fieldSelector") == Some(&field))
        .await;
    assert!(
        !task.is_finished(),
        "the Deployment still exists (being deleted), so teardown still waits"
    );
    fake.finish_deletion(&name);
    let torn = task.await.unwrap().unwrap();
    assert_eq!(torn.stopped, vec![name]);
}

#[tokio::test]
async fn deploy_can_wait_for_the_rollout_through_a_watch() {
    let (fake, url) = Fake::start(NS, false).await;
    let backend = Arc::new(backend_at(
        &url,
        KubernetesConfig {
            deploy_wait: Some(Duration::from_secs(120)),
            ..config()
        },
    ));
    let task = {
        let backend = backend.clone();
        tokio::spawn(async move { backend.deploy_node(&node("bannou-a")).await })
    };
    let name = deployment_name("bannou-a");
    let field = format!("metadata.name={name}");
    fake.wait_for_request(|r| r.is_watch() && r.query.get("fieldSelector") == Some(&field))
        .await;
    assert!(!task.is_finished(), "nothing is ready yet");
    fake.patch_deployment(&name, rolled_out(1));
    let deployed = task.await.unwrap().unwrap();
    assert_eq!(deployed.name, name);
}

#[tokio::test]
async fn a_rollout_that_cannot_finish_fails_the_wait_with_the_reason() {
    let (fake, url) = Fake::start(NS, false).await;
    let backend = backend_at(&url, config());
    backend.deploy_node(&node("bannou-a")).await.unwrap();
    fake.put_pod(
        pod_json(
            "bannou-a-1",
            pod_labels("bannou-a"),
            false,
            &time(5),
            Some("ImagePullBackOff"),
            0,
        ),
        "",
    );
    let err = backend
        .wait_until_available(&app("bannou-a"), Duration::from_millis(300))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains(&deployment_name("bannou-a")), "{err}");
    assert!(err.contains("ImagePullBackOff"), "{err}");
}

#[tokio::test]
async fn an_object_that_is_not_ours_is_never_taken_over() {
    let (fake, backend) = setup(true).await;
    let name = deployment_name("bannou-a");
    fake.put_deployment(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": { "name": name, "labels": { "app": "someone-else" } },
        "spec": { "replicas": 1, "selector": {}, "template": {} },
    }));
    let err = backend.deploy_node(&node("bannou-a")).await.unwrap_err();
    match &err {
        BackendError::Conflict { app_id, reason } => {
            assert_eq!(app_id, &app("bannou-a"));
            assert!(reason.contains(&format!("Deployment {name}")), "{reason}");
        }
        other => panic!("want a conflict, got {other:?}"),
    }
    fake.put_service(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": { "name": "bannou-b" },
    }));
    let err = backend.deploy_node(&node("bannou-b")).await.unwrap_err();
    assert!(
        matches!(&err, BackendError::Conflict { reason, .. } if reason.contains("Service bannou-b")),
        "{err:?}"
    );
    assert!(
        fake.requests().iter().all(|r| r.method != "PATCH"),
        "nothing was applied"
    );
}

#[tokio::test]
async fn api_errors_name_the_object_and_the_status() {
    let (fake, backend) = setup(true).await;
    let name = deployment_name("bannou-a");
    fake.fail(
        "PATCH",
        &format!("/deployments/{name}"),
        500,
        "InternalError",
        "etcd is down",
    );
    let err = backend.deploy_node(&node("bannou-a")).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        BackendError::runtime(format!(
            "Kubernetes API refused to apply Deployment {NS}/{name}: HTTP 500 \
                 InternalError: etcd is down"
        ))
        .to_string()
    );
    assert!(matches!(err, BackendError::Runtime { .. }), "{err:?}");
    // The API's own error stays reachable as the cause (D61).
    let cause = std::error::Error::source(&err).expect("the kube error as source");
    assert!(cause.downcast_ref::<kube::Error>().is_some(), "{cause:?}");

    fake.fail(
        "PATCH",
        "/services/bannou-a",
        409,
        "Conflict",
        "Apply failed with 1 conflict: conflict with \"helm\": .spec.ports",
    );
    let err = backend.deploy_node(&node("bannou-a")).await.unwrap_err();
    match err {
        BackendError::Conflict { app_id, reason } => {
            assert_eq!(app_id, app("bannou-a"));
            assert!(
                reason.contains(&format!("apply Service {NS}/bannou-a: HTTP 409 Conflict")),
                "{reason}"
            );
            assert!(reason.contains("helm"), "{reason}");
        }
        other => panic!("want a conflict, got {other:?}"),
    }

    // A missing namespace answers an apply with 404: a runtime error, not "no such node".
    fake.fail(
        "PATCH",
        &format!("/deployments/{name}"),
        404,
        "NotFound",
        &format!("namespaces \"{NS}\" not found"),
    );
    let err = backend.deploy_node(&node("bannou-a")).await.unwrap_err();
    assert!(
        matches!(&err, BackendError::Runtime { message, .. } if message.contains("HTTP 404 NotFound: namespaces")),
        "{err:?}"
    );

    // Deleted between find and scale: not found.
    backend.deploy_node(&node("bannou-a")).await.unwrap();
    fake.fail(
        "GET",
        &format!("/deployments/{name}/scale"),
        404,
        "NotFound",
        "gone",
    );
    assert_eq!(
        backend.scale(&app("bannou-a"), 2).await.unwrap_err(),
        BackendError::NotFound {
            app_id: app("bannou-a")
        }
    );

    fake.fail(
        "GET",
        &format!("/namespaces/{NS}/deployments"),
        403,
        "Forbidden",
        "RBAC says no",
    );
    let err = backend.list().await.unwrap_err().to_string();
    assert!(
        err.contains(&format!(
            "list Deployments in namespace {NS}: HTTP 403 Forbidden: RBAC says no"
        )),
        "{err}"
    );
}

#[tokio::test]
async fn availability_reports_the_version_or_why_not() {
    let (_fake, backend) = setup(true).await;
    let a = backend.check_availability().await;
    assert!(a.available, "{a:?}");
    assert_eq!(a.version.as_deref(), Some("v1.33.0-fake"));
    let endpoint = a.reason.unwrap();
    assert!(
        endpoint.starts_with("http://127.0.0.1:")
            && endpoint.ends_with(&format!("(namespace {NS})")),
        "the endpoint names the cluster and namespace: {endpoint}"
    );

    // Nothing listens on a port we just released.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let gone = backend_at(&format!("http://127.0.0.1:{port}"), config());
    let a = gone.check_availability().await;
    assert!(!a.available);
    assert!(a.reason.unwrap().contains("not reachable"));
    assert!(matches!(
        gone.status(&app("x")).await,
        Err(BackendError::Unavailable { .. })
    ));
    assert!(matches!(
        gone.prune(&BTreeSet::from([CleanTarget::All]), None).await,
        Err(BackendError::Unavailable { .. })
    ));
}

#[tokio::test]
async fn list_and_infrastructure() {
    let (fake, backend) = setup(true).await;
    backend.deploy_node(&node("bannou-a")).await.unwrap();
    backend.deploy_node(&node("bannou-b")).await.unwrap();
    fake.put_deployment(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": { "name": "bannou-redis", "uid": "redis-uid" },
        "spec": { "replicas": 1, "selector": {}, "template": { "spec": { "containers": [
            { "name": "redis", "image": "redis:7" }
        ]}}},
        "status": { "replicas": 1, "readyReplicas": 1, "availableReplicas": 1 },
    }));
    let listed = backend.list().await.unwrap();
    let apps: Vec<&str> = listed.iter().map(|c| c.app_id.as_str()).collect();
    assert_eq!(apps, vec!["bannou-a", "bannou-b"], "only ours");
    let a = &listed[0];
    assert_eq!(a.service_name, "node");
    assert_eq!(a.name, deployment_name("bannou-a"));
    assert_eq!(a.image, "bannou:test");
    assert_eq!(a.status, ContainerStatusType::Running);
    assert_eq!(a.instances, 1);
    assert!(a.created_at.is_some());

    let infra = backend.list_infrastructure().await.unwrap();
    assert_eq!(infra.len(), 1);
    assert_eq!(infra[0].name, "bannou-redis");
    assert_eq!(infra[0].image, "redis:7");
    assert_eq!(infra[0].status, ContainerStatusType::Running);
}

#[tokio::test]
async fn prune_answers_as_spec_18_5() {
    let (fake, backend) = setup(true).await;
    backend.deploy_node(&node("bannou-a")).await.unwrap();
    backend.deploy_node(&node("bannou-b")).await.unwrap();
    backend.scale(&app("bannou-a"), 0).await.unwrap();

    // With an age threshold nothing is old enough: Kubernetes keeps no stop time.
    let r = backend
        .prune(
            &BTreeSet::from([CleanTarget::Containers]),
            Some(Duration::from_secs(1)),
        )
        .await
        .unwrap();
    assert!(r.removed.is_empty() && r.errors.is_empty(), "{r:?}");

    let r = backend
        .prune(&BTreeSet::from([CleanTarget::All]), None)
        .await
        .unwrap();
    assert_eq!(r.count(CleanTarget::Containers), 1);
    assert_eq!(r.removed[0].id, deployment_name("bannou-a"));
    assert_eq!(r.count(CleanTarget::Networks), 0);
    assert_eq!(r.count(CleanTarget::Images), 0);
    assert_eq!(r.errors.len(), 1);
    assert_eq!(r.errors[0].target, CleanTarget::Volumes);
    assert!(r.errors[0].message.contains("PersistentVolumeClaims"));
    assert_eq!(fake.deployment_names(), vec![deployment_name("bannou-b")]);
    assert_eq!(fake.service_names(), vec!["bannou-b".to_owned()]);
}

#[tokio::test]
async fn credentials_come_from_the_given_kubeconfig() {
    let (fake, url) = Fake::start(NS, true).await;
    let dir = std::env::temp_dir().join(format!("bannou-kubeconfig-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("config");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: fake\n\
             clusters:\n- name: fake\n  cluster:\n    server: {url}\n\
             contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: tester\n\
             users:\n- name: tester\n  user:\n    token: secret-token\n"
        ),
    )
    .unwrap();
    install_crypto_provider();
    let backend = KubernetesBackend::connect(KubernetesConfig {
        kubeconfig_path: Some(path.clone()),
        ..config()
    })
    .await
    .unwrap();
    let a = backend.check_availability().await;
    assert!(a.available, "{a:?}");
    let version = fake.requests_to("GET", "/version");
    assert_eq!(
        version[0].authorization.as_deref(),
        Some("Bearer secret-token"),
        "the kubeconfig's user"
    );

    let missing = KubernetesBackend::connect(KubernetesConfig {
        kubeconfig_path: Some(dir.join("absent")),
        ..config()
    })
    .await
    .unwrap_err()
    .to_string();
    assert!(
        missing.contains("No Kubernetes credentials found"),
        "{missing}"
    );
    assert!(missing.contains("absent"), "{missing}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn the_conformance_suite_passes_against_the_fake() {
    let (_fake, url) = Fake::start(NS, true).await;
    let suite = BackendSuite {
        image: "bannou:test".to_owned(),
        app_id_prefix: "conformance".to_owned(),
    };
    backend_conformance(&suite, || {
        let b: Arc<dyn ContainerBackend> = Arc::new(backend_at(&url, config()));
        async move { b }
    })
    .await;
}

mod fake {
    //! A fake Kubernetes API server for the Kubernetes backend's tests: an axum router on
    //! 127.0.0.1 (plain HTTP) that `kube`'s real client talks to. It serves the few REST paths
    //! the backend calls (version; Deployments with apply, strategic/merge patches, the scale
    //! subresource, delete, list and watch; Services; Pods and pod logs), keeps the objects in
    //! memory, records every request, and can inject API errors.
    //!
    //! With `simulate` on it also plays the Deployment controller and kubelet at once: every
    //! Deployment change immediately yields `spec.replicas` ready pods of the current template
    //! (new pods, later start times, when the template changed) and a fully available status.
    //! With it off, tests set statuses and pods themselves.

    use std::collections::BTreeMap;
    use std::convert::Infallible;
    use std::sync::{Arc, Mutex};

    use axum::Router;
    use axum::body::{Body, Bytes};
    use axum::extract::{Request, State};
    use axum::http::{Method, StatusCode, header};
    use axum::response::{IntoResponse, Response};
    use futures::StreamExt;
    use serde_json::{Value, json};
    use tokio::sync::{Notify, broadcast};

    /// One request as the fake received it.
    #[derive(Debug, Clone)]
    pub struct Recorded {
        pub method: String,
        pub path: String,
        pub query: BTreeMap<String, String>,
        pub content_type: Option<String>,
        pub authorization: Option<String>,
        pub body: Option<Value>,
    }

    impl Recorded {
        pub fn is(&self, method: &str, path_suffix: &str) -> bool {
            self.method == method && self.path.ends_with(path_suffix)
        }

        pub fn is_watch(&self) -> bool {
            self.query
                .get("watch")
                .is_some_and(|v| v == "true" || v == "1")
        }
    }

    /// An error the fake answers instead of serving a request.
    #[derive(Debug, Clone)]
    struct Fault {
        method: String,
        path_suffix: String,
        status: u16,
        reason: String,
        message: String,
        remaining: usize,
    }

    #[derive(Default)]
    struct Store {
        deployments: BTreeMap<String, Value>,
        services: BTreeMap<String, Value>,
        pods: BTreeMap<String, Value>,
        logs: BTreeMap<String, String>,
        /// Every Deployment watch event with its resource version.
        events: Vec<(u64, Value)>,
        rv: u64,
        tick: i64,
        uid: u64,
        requests: Vec<Recorded>,
        faults: Vec<Fault>,
        simulate: bool,
        /// When false, deleting a Deployment only marks it (`deletionTimestamp`), as a
        /// finalizer would; [`Fake::finish_deletion`] removes it.
        finalize_deletes: bool,
    }

    pub struct Fake {
        store: Mutex<Store>,
        live: broadcast::Sender<(u64, Value)>,
        requested: Notify,
        pub namespace: String,
    }

    pub const BASE_TIME: i64 = 1_735_689_600; // 2025-01-01T00:00:00Z

    /// RFC 3339 time `secs` after [`BASE_TIME`].
    pub fn time(secs: i64) -> String {
        chrono::DateTime::from_timestamp(BASE_TIME + secs, 0)
            .unwrap()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    }

    /// `k=v,k,k!=v` label selector matching (what the backend sends).
    fn matches_selector(labels: &Value, selector: &str) -> bool {
        selector.split(',').filter(|t| !t.is_empty()).all(|term| {
            if let Some((k, v)) = term.split_once("!=") {
                labels.get(k).and_then(Value::as_str) != Some(v)
            } else if let Some((k, v)) = term.split_once('=') {
                labels.get(k).and_then(Value::as_str) == Some(v.trim_start_matches('='))
            } else {
                labels.get(term).is_some()
            }
        })
    }

    fn matches_fields(obj: &Value, fields: Option<&String>) -> bool {
        match fields.and_then(|f| f.strip_prefix("metadata.name=")) {
            Some(name) => obj["metadata"]["name"].as_str() == Some(name),
            None => true,
        }
    }

    /// RFC 7386 JSON merge patch (what strategic merge does for plain maps too).
    pub fn merge(target: &mut Value, patch: &Value) {
        match patch {
            Value::Object(p) => {
                if !target.is_object() {
                    *target = json!({});
                }
                let t = target.as_object_mut().unwrap();
                for (k, v) in p {
                    if v.is_null() {
                        t.remove(k);
                    } else {
                        merge(t.entry(k.clone()).or_insert(Value::Null), v);
                    }
                }
            }
            other => *target = other.clone(),
        }
    }

    fn status_body(code: u16, reason: &str, message: &str) -> Response {
        let body = json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": message, "reason": reason, "code": code,
        });
        (
            StatusCode::from_u16(code).unwrap(),
            [(header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response()
    }

    fn json_response(code: StatusCode, v: &Value) -> Response {
        (
            code,
            [(header::CONTENT_TYPE, "application/json")],
            v.to_string(),
        )
            .into_response()
    }

    fn not_found(kind: &str, name: &str) -> Response {
        status_body(404, "NotFound", &format!("{kind} \"{name}\" not found"))
    }

    impl Store {
        fn next_rv(&mut self) -> u64 {
            self.rv += 1;
            self.rv
        }

        fn now(&mut self) -> String {
            self.tick += 1;
            time(self.tick)
        }

        fn stamp(&mut self, obj: &mut Value) {
            let rv = self.next_rv();
            obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        }

        fn emit(&mut self, kind: &str, obj: &Value, live: &broadcast::Sender<(u64, Value)>) {
            let rv: u64 = obj["metadata"]["resourceVersion"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .unwrap_or(self.rv);
            let event = json!({ "type": kind, "object": obj });
            self.events.push((rv, event.clone()));
            let _ = live.send((rv, event));
        }

        fn new_uid(&mut self, name: &str) -> String {
            self.uid += 1;
            format!("uid-{name}-{}", self.uid)
        }

        /// Plays the controller and kubelet for Deployment `name`.
        fn reconcile(&mut self, name: &str) {
            let Some(d) = self.deployments.get(name).cloned() else {
                // Deleted: its pods go (garbage collection).
                self.pods.retain(|_, p| {
                    p["metadata"]["annotations"]["fake/owner"].as_str() != Some(name)
                });
                return;
            };
            let desired = d["spec"]["replicas"].as_i64().unwrap_or(1).max(0) as usize;
            let template = d["spec"]["template"].clone();
            let hash = format!("{:08x}", fxhash(&template.to_string()));
            self.pods.retain(|_, p| {
                p["metadata"]["annotations"]["fake/owner"].as_str() != Some(name)
                    || p["metadata"]["labels"]["pod-template-hash"].as_str() == Some(hash.as_str())
            });
            let mut current: Vec<String> = self
                .pods
                .iter()
                .filter(|(_, p)| p["metadata"]["annotations"]["fake/owner"].as_str() == Some(name))
                .map(|(n, _)| n.clone())
                .collect();
            while current.len() > desired {
                let gone = current.pop().unwrap();
                self.pods.remove(&gone);
            }
            let mut n = 0;
            while current.len() < desired {
                n += 1;
                let pod_name = format!("{name}-{hash}-{}{n}", self.tick);
                let started = self.now();
                let mut labels = template["metadata"]["labels"].clone();
                labels["pod-template-hash"] = json!(hash);
                let pod = pod_json(&pod_name, labels, true, &started, None, 0);
                let mut pod = pod;
                pod["metadata"]["annotations"] = json!({ "fake/owner": name });
                self.logs.insert(
                    pod_name.clone(),
                    format!("{started} {pod_name} started\n{started} listening\n"),
                );
                self.pods.insert(pod_name.clone(), pod);
                current.push(pod_name);
            }
            let d = self.deployments.get_mut(name).unwrap();
            let generation = d["metadata"]["generation"].clone();
            d["status"] = json!({
                "observedGeneration": generation,
                "replicas": desired, "readyReplicas": desired, "availableReplicas": desired,
                "updatedReplicas": desired,
                "conditions": [
                    {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
                    {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"},
                ],
            });
        }
    }

    /// A small stable string hash (FNV-1a).
    fn fxhash(s: &str) -> u32 {
        let mut h: u32 = 0x811c_9dc5;
        for b in s.bytes() {
            h ^= u32::from(b);
            h = h.wrapping_mul(0x0100_0193);
        }
        h
    }

    /// A pod object: `ready` sets the Ready condition; `waiting` puts the container in that
    /// waiting reason instead of running.
    pub fn pod_json(
        name: &str,
        labels: Value,
        ready: bool,
        started: &str,
        waiting: Option<&str>,
        restarts: i32,
    ) -> Value {
        let state = match waiting {
            Some(reason) => json!({ "waiting": { "reason": reason } }),
            None => json!({ "running": { "startedAt": started } }),
        };
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": { "name": name, "labels": labels, "creationTimestamp": started },
            "status": {
                "phase": "Running",
                "startTime": started,
                "conditions": [{ "type": "Ready", "status": if ready { "True" } else { "False" } }],
                "containerStatuses": [{
                    "name": "bannou", "image": "bannou:test", "imageID": "sha256:0",
                    "ready": ready, "restartCount": restarts, "state": state,
                }],
            },
        })
    }

    impl Fake {
        /// Starts the fake on 127.0.0.1:0; returns it and its URL.
        pub async fn start(namespace: &str, simulate: bool) -> (Arc<Fake>, String) {
            let (live, _) = broadcast::channel(1024);
            let fake = Arc::new(Fake {
                store: Mutex::new(Store {
                    simulate,
                    finalize_deletes: true,
                    ..Store::default()
                }),
                live,
                requested: Notify::new(),
                namespace: namespace.to_owned(),
            });
            let app = Router::new().fallback(handle).with_state(fake.clone());
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(async move {
                axum::serve(listener, app).await.unwrap();
            });
            (fake, format!("http://{addr}"))
        }

        fn store(&self) -> std::sync::MutexGuard<'_, Store> {
            self.store.lock().unwrap()
        }

        /// Every request so far.
        pub fn requests(&self) -> Vec<Recorded> {
            self.store().requests.clone()
        }

        /// Requests with `method` whose path ends with `suffix`.
        pub fn requests_to(&self, method: &str, suffix: &str) -> Vec<Recorded> {
            self.requests()
                .into_iter()
                .filter(|r| r.is(method, suffix))
                .collect()
        }

        /// Forgets the recorded requests.
        pub fn clear_requests(&self) {
            self.store().requests.clear();
        }

        /// Waits until a request matching `pred` has been received.
        pub async fn wait_for_request(&self, pred: impl Fn(&Recorded) -> bool) {
            loop {
                let notified = self.requested.notified();
                if self.requests().iter().any(&pred) {
                    return;
                }
                notified.await;
            }
        }

        /// Answers the next `times` requests with `method` and a path ending with `suffix`
        /// with an API error.
        pub fn fail(&self, method: &str, suffix: &str, status: u16, reason: &str, message: &str) {
            self.store().faults.push(Fault {
                method: method.to_owned(),
                path_suffix: suffix.to_owned(),
                status,
                reason: reason.to_owned(),
                message: message.to_owned(),
                remaining: 1,
            });
        }

        /// Makes Deployment deletions wait for [`Fake::finish_deletion`].
        pub fn hold_deletions(&self) {
            self.store().finalize_deletes = false;
        }

        /// Completes a held deletion: the Deployment goes, with a DELETED watch event.
        pub fn finish_deletion(&self, name: &str) {
            let mut s = self.store();
            if let Some(mut d) = s.deployments.remove(name) {
                s.stamp(&mut d);
                s.emit("DELETED", &d, &self.live);
                if s.simulate {
                    s.reconcile(name);
                }
            }
        }

        pub fn deployment(&self, name: &str) -> Option<Value> {
            self.store().deployments.get(name).cloned()
        }

        pub fn deployment_names(&self) -> Vec<String> {
            self.store().deployments.keys().cloned().collect()
        }

        pub fn service_names(&self) -> Vec<String> {
            self.store().services.keys().cloned().collect()
        }

        /// Stores an object directly (as another tool would have created it).
        pub fn put_deployment(&self, mut obj: Value) {
            let mut s = self.store();
            let name = obj["metadata"]["name"].as_str().unwrap().to_owned();
            if obj["metadata"]["uid"].is_null() {
                obj["metadata"]["uid"] = json!(s.new_uid(&name));
            }
            s.stamp(&mut obj);
            s.emit("ADDED", &obj, &self.live);
            s.deployments.insert(name, obj);
        }

        pub fn put_service(&self, obj: Value) {
            let name = obj["metadata"]["name"].as_str().unwrap().to_owned();
            self.store().services.insert(name, obj);
        }

        pub fn put_pod(&self, obj: Value, log: &str) {
            let name = obj["metadata"]["name"].as_str().unwrap().to_owned();
            let mut s = self.store();
            s.logs.insert(name.clone(), log.to_owned());
            s.pods.insert(name, obj);
        }

        /// Merges `patch` into Deployment `name` (e.g. a status), with a MODIFIED event.
        pub fn patch_deployment(&self, name: &str, patch: Value) {
            let mut s = self.store();
            let mut d = s.deployments.get(name).cloned().expect("deployment");
            merge(&mut d, &patch);
            s.stamp(&mut d);
            s.emit("MODIFIED", &d, &self.live);
            s.deployments.insert(name.to_owned(), d);
        }
    }

    fn query_map(q: Option<&str>) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for pair in q.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            out.insert(decode(k), decode(v));
        }
        out
    }

    fn decode(s: &str) -> String {
        let mut out = Vec::new();
        let b = s.as_bytes();
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'%' if i + 2 < b.len() => {
                    let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap();
                    out.push(u8::from_str_radix(hex, 16).unwrap());
                    i += 3;
                }
                b'+' => {
                    out.push(b' ');
                    i += 1;
                }
                c => {
                    out.push(c);
                    i += 1;
                }
            }
        }
        String::from_utf8(out).unwrap()
    }

    /// Which collection a path addresses.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Kind {
        Deployment,
        Service,
        Pod,
    }

    async fn handle(State(fake): State<Arc<Fake>>, req: Request) -> Response {
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let query = query_map(req.uri().query());
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let authorization = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = axum::body::to_bytes(req.into_body(), usize::MAX)
            .await
            .unwrap();
        let body: Option<Value> = if bytes.is_empty() {
            None
        } else {
            Some(serde_json::from_slice(&bytes).expect("JSON body"))
        };
        let recorded = Recorded {
            method: method.to_string(),
            path: path.clone(),
            query: query.clone(),
            content_type,
            authorization,
            body: body.clone(),
        };
        {
            let mut s = fake.store();
            s.requests.push(recorded.clone());
            let hit = s.faults.iter_mut().find(|f| {
                f.remaining > 0 && recorded.is(&f.method, &f.path_suffix) && !recorded.is_watch()
            });
            if let Some(f) = hit {
                f.remaining -= 1;
                let (status, reason, message) = (f.status, f.reason.clone(), f.message.clone());
                drop(s);
                fake.requested.notify_waiters();
                return status_body(status, &reason, &message);
            }
        }
        fake.requested.notify_waiters();

        if path == "/version" {
            return json_response(
                StatusCode::OK,
                &json!({
                    "major": "1", "minor": "33", "gitVersion": "v1.33.0-fake",
                    "gitCommit": "", "gitTreeState": "clean", "buildDate": "2025-01-01T00:00:00Z",
                    "goVersion": "go1.24", "compiler": "gc", "platform": "linux/amd64",
                }),
            );
        }
        let ns = fake.namespace.clone();
        let deployments = format!("/apis/apps/v1/namespaces/{ns}/deployments");
        let services = format!("/api/v1/namespaces/{ns}/services");
        let pods = format!("/api/v1/namespaces/{ns}/pods");
        let (kind, rest) = if let Some(r) = path.strip_prefix(&deployments) {
            (Kind::Deployment, r)
        } else if let Some(r) = path.strip_prefix(&services) {
            (Kind::Service, r)
        } else if let Some(r) = path.strip_prefix(&pods) {
            (Kind::Pod, r)
        } else if path == "/apis/apps/v1/deployments" && method == Method::GET {
            return status_body(403, "Forbidden", "cluster-wide list is not allowed");
        } else {
            return status_body(404, "NotFound", &format!("the fake serves no {path}"));
        };
        let parts: Vec<&str> = rest.trim_start_matches('/').split('/').collect();
        match (parts.as_slice(), &method) {
            ([""], &Method::GET) if recorded.is_watch() => watch(&fake, kind, &query),
            ([""], &Method::GET) => list(&fake, kind, &query),
            ([name], &Method::GET) => get(&fake, kind, name),
            ([name], &Method::PATCH) => patch(&fake, kind, name, &recorded),
            ([name], &Method::DELETE) => delete(&fake, kind, name),
            ([name, "scale"], &Method::GET) if kind == Kind::Deployment => scale(&fake, name, None),
            ([name, "scale"], &Method::PATCH) if kind == Kind::Deployment => {
                scale(&fake, name, body.as_ref())
            }
            ([name, "log"], &Method::GET) if kind == Kind::Pod => logs(&fake, name, &query),
            _ => status_body(405, "MethodNotAllowed", &format!("{method} {path}")),
        }
    }

    fn map_of(s: &Store, kind: Kind) -> &BTreeMap<String, Value> {
        match kind {
            Kind::Deployment => &s.deployments,
            Kind::Service => &s.services,
            Kind::Pod => &s.pods,
        }
    }

    fn map_of_mut(s: &mut Store, kind: Kind) -> &mut BTreeMap<String, Value> {
        match kind {
            Kind::Deployment => &mut s.deployments,
            Kind::Service => &mut s.services,
            Kind::Pod => &mut s.pods,
        }
    }

    fn kind_names(kind: Kind) -> (&'static str, &'static str, &'static str) {
        match kind {
            Kind::Deployment => ("apps/v1", "DeploymentList", "deployments.apps"),
            Kind::Service => ("v1", "ServiceList", "services"),
            Kind::Pod => ("v1", "PodList", "pods"),
        }
    }

    fn list(fake: &Fake, kind: Kind, query: &BTreeMap<String, String>) -> Response {
        let s = fake.store();
        let selector = query.get("labelSelector").cloned().unwrap_or_default();
        let items: Vec<Value> = map_of(&s, kind)
            .values()
            .filter(|o| matches_selector(&o["metadata"]["labels"], &selector))
            .filter(|o| matches_fields(o, query.get("fieldSelector")))
            .cloned()
            .collect();
        let (api_version, list_kind, _) = kind_names(kind);
        json_response(
            StatusCode::OK,
            &json!({
                "apiVersion": api_version, "kind": list_kind,
                "metadata": { "resourceVersion": s.rv.to_string() },
                "items": items,
            }),
        )
    }

    fn watch(fake: &Arc<Fake>, kind: Kind, query: &BTreeMap<String, String>) -> Response {
        assert_eq!(
            kind,
            Kind::Deployment,
            "the backend only watches Deployments"
        );
        let from: u64 = query
            .get("resourceVersion")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let fields = query.get("fieldSelector").cloned();
        let rx = fake.live.subscribe();
        let replay: Vec<(u64, Value)> = fake
            .store()
            .events
            .iter()
            .filter(|(rv, _)| *rv > from)
            .cloned()
            .collect();
        let last = replay.last().map_or(from, |(rv, _)| *rv);
        let keep = move |e: &Value| matches_fields(&e["object"], fields.as_ref());
        let keep2 = keep.clone();
        let replayed = futures::stream::iter(
            replay
                .into_iter()
                .filter(move |(_, e)| keep(e))
                .map(|(_, e)| e),
        );
        let live = futures::stream::unfold(rx, |mut rx| async move {
            loop {
                match rx.recv().await {
                    Ok(item) => return Some((item, rx)),
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        })
        .filter(move |(rv, e)| futures::future::ready(*rv > last && keep2(e)))
        .map(|(_, e)| e);
        let lines = replayed
            .chain(live)
            .map(|e| Ok::<_, Infallible>(Bytes::from(format!("{e}\n"))));
        Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from_stream(lines))
            .unwrap()
    }

    fn kind_label(kind: Kind) -> &'static str {
        kind_names(kind).2
    }

    fn get(fake: &Fake, kind: Kind, name: &str) -> Response {
        match map_of(&fake.store(), kind).get(name) {
            Some(o) => json_response(StatusCode::OK, o),
            None => not_found(kind_label(kind), name),
        }
    }

    fn patch(fake: &Fake, kind: Kind, name: &str, req: &Recorded) -> Response {
        let body = req.body.clone().unwrap_or(json!({}));
        let content_type = req.content_type.clone().unwrap_or_default();
        let mut s = fake.store();
        let existing = map_of(&s, kind).get(name).cloned();
        let (status, mut obj) = if content_type.starts_with("application/apply-patch") {
            assert!(
                req.query.contains_key("fieldManager"),
                "server-side apply needs a field manager"
            );
            let mut obj = body.clone();
            match &existing {
                Some(old) => {
                    // Fields other managers own stay: annotations we did not apply.
                    for path in [&["metadata"][..], &["spec", "template", "metadata"][..]] {
                        let old_ann = pointer(old, path).get("annotations").cloned();
                        if let Some(Value::Object(old_ann)) = old_ann {
                            let target = pointer_mut(&mut obj, path);
                            let ann = target
                                .as_object_mut()
                                .unwrap()
                                .entry("annotations")
                                .or_insert(json!({}));
                            for (k, v) in old_ann {
                                ann.as_object_mut().unwrap().entry(k).or_insert(v);
                            }
                        }
                    }
                    for k in [
                        "uid",
                        "creationTimestamp",
                        "generation",
                        "deletionTimestamp",
                    ] {
                        if !old["metadata"][k].is_null() {
                            obj["metadata"][k] = old["metadata"][k].clone();
                        }
                    }
                    if !old["status"].is_null() {
                        obj["status"] = old["status"].clone();
                    }
                    if old["spec"] != obj["spec"] {
                        bump_generation(&mut obj);
                    }
                    (StatusCode::OK, obj)
                }
                None => {
                    obj["metadata"]["uid"] = json!(s.new_uid(name));
                    obj["metadata"]["creationTimestamp"] = json!(s.now());
                    obj["metadata"]["generation"] = json!(1);
                    if kind == Kind::Deployment {
                        obj["status"] = json!({});
                    }
                    (StatusCode::CREATED, obj)
                }
            }
        } else {
            let Some(mut obj) = existing.clone() else {
                return not_found(kind_label(kind), name);
            };
            merge(&mut obj, &body);
            if existing.as_ref().map(|o| &o["spec"]) != Some(&obj["spec"]) {
                bump_generation(&mut obj);
            }
            (StatusCode::OK, obj)
        };
        s.stamp(&mut obj);
        map_of_mut(&mut s, kind).insert(name.to_owned(), obj.clone());
        if kind == Kind::Deployment {
            if s.simulate {
                s.reconcile(name);
                let mut d = s.deployments[name].clone();
                s.stamp(&mut d);
                s.deployments.insert(name.to_owned(), d.clone());
                obj = d;
            }
            let event = if existing.is_some() {
                "MODIFIED"
            } else {
                "ADDED"
            };
            s.emit(event, &obj, &fake.live);
        }
        json_response(status, &obj)
    }

    fn pointer<'a>(v: &'a Value, path: &[&str]) -> &'a Value {
        path.iter().fold(v, |v, k| &v[*k])
    }

    fn pointer_mut<'a>(v: &'a mut Value, path: &[&str]) -> &'a mut Value {
        let mut cur = v;
        for k in path {
            if cur[*k].is_null() {
                cur[*k] = json!({});
            }
            cur = &mut cur[*k];
        }
        cur
    }

    fn bump_generation(obj: &mut Value) {
        let g = obj["metadata"]["generation"].as_i64().unwrap_or(0);
        obj["metadata"]["generation"] = json!(g + 1);
    }

    fn delete(fake: &Fake, kind: Kind, name: &str) -> Response {
        let mut s = fake.store();
        let Some(mut obj) = map_of(&s, kind).get(name).cloned() else {
            return not_found(kind_label(kind), name);
        };
        if kind == Kind::Deployment && !s.finalize_deletes {
            obj["metadata"]["deletionTimestamp"] = json!(s.now());
            s.stamp(&mut obj);
            s.deployments.insert(name.to_owned(), obj.clone());
            s.emit("MODIFIED", &obj, &fake.live);
            return json_response(StatusCode::OK, &obj);
        }
        map_of_mut(&mut s, kind).remove(name);
        if kind == Kind::Deployment {
            s.stamp(&mut obj);
            s.emit("DELETED", &obj, &fake.live);
            if s.simulate {
                s.reconcile(name);
            }
        }
        json_response(StatusCode::OK, &obj)
    }

    fn scale(fake: &Fake, name: &str, patch: Option<&Value>) -> Response {
        let mut s = fake.store();
        let Some(mut d) = s.deployments.get(name).cloned() else {
            return not_found("deployments.apps", name);
        };
        if let Some(p) = patch {
            let replicas = p["spec"]["replicas"].clone();
            assert!(replicas.is_i64(), "scale patches set spec.replicas: {p}");
            d["spec"]["replicas"] = replicas;
            bump_generation(&mut d);
            s.stamp(&mut d);
            s.deployments.insert(name.to_owned(), d.clone());
            if s.simulate {
                s.reconcile(name);
                d = s.deployments[name].clone();
                s.stamp(&mut d);
                s.deployments.insert(name.to_owned(), d.clone());
            }
            s.emit("MODIFIED", &d, &fake.live);
        }
        let replicas = d["spec"]["replicas"].as_i64().unwrap_or(1);
        json_response(
            StatusCode::OK,
            &json!({
                "apiVersion": "autoscaling/v1", "kind": "Scale",
                "metadata": { "name": name, "namespace": fake.namespace },
                "spec": { "replicas": replicas },
                "status": { "replicas": d["status"]["replicas"].as_i64().unwrap_or(0) },
            }),
        )
    }

    fn logs(fake: &Fake, name: &str, query: &BTreeMap<String, String>) -> Response {
        let s = fake.store();
        let Some(text) = s.logs.get(name) else {
            return not_found("pods", name);
        };
        assert_eq!(query.get("timestamps").map(String::as_str), Some("true"));
        // The kubelet applies sinceTime and tailLines; so does the fake.
        let since = query.get("sinceTime").cloned();
        let mut lines: Vec<&str> = text
            .lines()
            .filter(|l| match &since {
                Some(t) => l.split(' ').next().is_some_and(|ts| ts >= t.as_str()),
                None => true,
            })
            .collect();
        if let Some(n) = query.get("tailLines").and_then(|n| n.parse::<usize>().ok()) {
            let skip = lines.len().saturating_sub(n);
            lines.drain(..skip);
        }
        let mut body = lines.join("\n");
        if !body.is_empty() {
            body.push('\n');
        }
        (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain")], body).into_response()
    }
}

/// App-ids compare without case (docs/COMPATIBILITY.md#heartbeat-consumption): a node
/// deployed as `auth-main` (this backend admits lower-case app-ids only) is found, and
/// torn down, under any spelling.
#[tokio::test]
async fn a_node_is_found_by_its_app_id_in_any_case() {
    let (_fake, backend) = setup(false).await;
    backend.deploy_node(&node("auth-main")).await.unwrap();
    let s = backend.status(&app("Auth-Main")).await.unwrap();
    assert_eq!(s.labels[labels::APP_ID], "auth-main");
    let torn = backend
        .teardown(&app("AUTH-MAIN"), &TeardownOptions::default())
        .await
        .unwrap();
    assert_eq!(torn.stopped, vec![deployment_name("auth-main")]);
}

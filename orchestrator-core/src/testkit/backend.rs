//! Conformance suite for `ContainerBackend` implementations: a node's whole life (deploy,
//! list, status, scale, restart, logs, teardown), replacement on redeploy, and `NotFound`
//! for unknown app-ids. Every backend runs it: the fake and the real adapters.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use crate::api::enums::{ContainerStatusType, RestartPriority};
use crate::names::AppId;
use crate::ports::backend::{
    BackendError, ContainerBackend, ContainerInfo, LogQuery, NodeDeployment, RestartOptions,
    TeardownOptions, is_managed, labels,
};

/// What the suite deploys; adapters pick an image their runtime has locally and a prefix
/// unique to the test run so parallel runs never touch each other's nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendSuite {
    /// Image of every node the suite deploys.
    pub image: String,
    /// Prefix of every app-id the suite uses.
    pub app_id_prefix: String,
}

impl Default for BackendSuite {
    /// `bannou:latest`, prefix `conformance`.
    fn default() -> Self {
        BackendSuite {
            image: "bannou:latest".to_owned(),
            app_id_prefix: "conformance".to_owned(),
        }
    }
}

impl BackendSuite {
    fn app_id(&self, name: &str) -> AppId {
        AppId::new(format!("{}-{name}", self.app_id_prefix))
    }

    fn node(&self, name: &str) -> NodeDeployment {
        let mut node = NodeDeployment::new(self.app_id(name), "conformance", self.image.clone());
        node.environment = BTreeMap::from([("BANNOU_CONFORMANCE".to_owned(), "1".to_owned())]);
        node.labels = BTreeMap::from([("bannou.test".to_owned(), "conformance".to_owned())]);
        node
    }
}

/// Runs every backend scenario, each against a fresh backend from `make`.
///
/// The backend must be available. Tolerated differences between runtimes: a node may
/// still be `Starting` right after deploy; `scale` may be [`BackendError::Unsupported`];
/// a restart must show in `status` as a higher `restart_count` or a later `started_at`.
/// Panics with a message naming the step on the first violation.
pub async fn backend_conformance<F, Fut>(suite: &BackendSuite, mut make: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Arc<dyn ContainerBackend>>,
{
    node_lifecycle(suite, make().await).await;
    redeploy_replaces_the_node(suite, make().await).await;
    unknown_app_id_is_not_found(suite, make().await).await;
    app_ids_match_in_any_case(suite, make().await).await;
}

fn fail(step: &str, detail: impl std::fmt::Display) -> ! {
    panic!("backend conformance: {step}: {detail}")
}

fn ours<'a>(listed: &'a [ContainerInfo], app_id: &AppId) -> Vec<&'a ContainerInfo> {
    listed.iter().filter(|c| &c.app_id == app_id).collect()
}

async fn node_lifecycle(suite: &BackendSuite, backend: Arc<dyn ContainerBackend>) {
    let availability = backend.check_availability().await;
    if !availability.available {
        fail("check_availability", format!("{availability:?}"));
    }

    // Deploy.
    let node = suite.node("life");
    let app = node.app_id.clone();
    let deployed = backend
        .deploy_node(&node)
        .await
        .unwrap_or_else(|e| fail("deploy_node", e));
    assert_eq!(deployed.app_id, app, "deploy returns the node's app-id");
    assert!(
        !deployed.backend_id.is_empty(),
        "deploy returns a runtime id"
    );

    // List shows it, with our labels; nothing unlabelled is listed.
    let listed = backend.list().await.unwrap_or_else(|e| fail("list", e));
    for c in &listed {
        assert!(
            is_managed(&c.labels),
            "list must only return our objects, got {c:?}"
        );
    }
    let mine = ours(&listed, &app);
    assert_eq!(mine.len(), 1, "list shows the deployed node once");
    let info = mine[0];
    assert_eq!(info.service_name, node.service_name);
    assert_eq!(info.image, node.image);
    assert_eq!(info.labels.get(labels::APP_ID), Some(&app.to_string()));
    assert_eq!(
        info.labels.get(labels::SERVICE),
        Some(&node.service_name),
        "bannou.service label"
    );
    assert_eq!(
        info.labels.get("bannou.test").map(String::as_str),
        Some("conformance"),
        "extra labels are kept"
    );

    // Status.
    let status = backend
        .status(&app)
        .await
        .unwrap_or_else(|e| fail("status after deploy", e));
    assert_eq!(status.app_id, app);
    assert!(
        matches!(
            status.status,
            ContainerStatusType::Running | ContainerStatusType::Starting
        ),
        "a fresh node is running or starting, got {:?}",
        status.status
    );
    assert_eq!(status.desired_replicas, 1);
    assert!(status.instances <= status.desired_replicas);
    assert!(is_managed(&status.labels), "status shows our labels");

    // Scale (where supported).
    match backend.scale(&app, 2).await {
        Ok(scaled) => {
            assert_eq!(scaled.previous_replicas, 1);
            assert_eq!(scaled.current_replicas, 2);
            let after = backend
                .status(&app)
                .await
                .unwrap_or_else(|e| fail("status after scale", e));
            assert_eq!(after.desired_replicas, 2, "scale sets the desired replicas");
            backend
                .scale(&app, 1)
                .await
                .unwrap_or_else(|e| fail("scale back to 1", e));
        }
        Err(BackendError::Unsupported { .. }) => {}
        Err(e) => fail("scale", e),
    }

    // Restart really restarts.
    let before = backend
        .status(&app)
        .await
        .unwrap_or_else(|e| fail("status before restart", e));
    let options = RestartOptions {
        priority: RestartPriority::Immediate,
        reason: "conformance".to_owned(),
        ..RestartOptions::default()
    };
    let outcome = backend
        .restart(&app, &options)
        .await
        .unwrap_or_else(|e| fail("restart", e));
    assert!(outcome.current_instances >= 1, "restart reports instances");
    let after = backend
        .status(&app)
        .await
        .unwrap_or_else(|e| fail("status after restart", e));
    assert!(
        after.restart_count > before.restart_count || after.started_at > before.started_at,
        "a restart must show in status: count {} -> {}, started {:?} -> {:?}",
        before.restart_count,
        after.restart_count,
        before.started_at,
        after.started_at
    );

    // Logs: bounded by tail, in time order.
    let query = LogQuery {
        tail: Some(5),
        ..LogQuery::default()
    };
    let lines = backend
        .logs(&app, &query)
        .await
        .unwrap_or_else(|e| fail("logs", e));
    assert!(lines.len() <= 5, "tail 5 returned {} lines", lines.len());
    assert!(
        lines.windows(2).all(|w| w[0].timestamp <= w[1].timestamp),
        "log lines are in time order"
    );

    // Teardown.
    let torn = backend
        .teardown(&app, &TeardownOptions::default())
        .await
        .unwrap_or_else(|e| fail("teardown", e));
    assert_eq!(torn.app_id, app);
    assert!(!torn.stopped.is_empty(), "teardown names what it stopped");
    let listed = backend
        .list()
        .await
        .unwrap_or_else(|e| fail("list after teardown", e));
    assert!(
        ours(&listed, &app).is_empty(),
        "a torn-down node is no longer listed"
    );
    match backend.status(&app).await {
        Err(BackendError::NotFound { app_id }) => assert_eq!(app_id, app),
        other => fail(
            "status after teardown",
            format!("want NotFound, got {other:?}"),
        ),
    }
}

async fn redeploy_replaces_the_node(suite: &BackendSuite, backend: Arc<dyn ContainerBackend>) {
    let mut node = suite.node("redeploy");
    let app = node.app_id.clone();
    let first = backend
        .deploy_node(&node)
        .await
        .unwrap_or_else(|e| fail("first deploy", e));
    assert!(!first.replaced, "first deploy replaces nothing");
    node.environment
        .insert("BANNOU_CONFORMANCE".to_owned(), "2".to_owned());
    let second = backend
        .deploy_node(&node)
        .await
        .unwrap_or_else(|e| fail("second deploy", e));
    assert!(second.replaced, "redeploying an app-id replaces its node");
    let listed = backend
        .list()
        .await
        .unwrap_or_else(|e| fail("list after redeploy", e));
    assert_eq!(
        ours(&listed, &app).len(),
        1,
        "one node per app-id after a redeploy"
    );
    backend
        .teardown(&app, &TeardownOptions::default())
        .await
        .unwrap_or_else(|e| fail("teardown after redeploy", e));
}

/// App-ids compare without ASCII case (docs/COMPATIBILITY.md#heartbeat-consumption): a
/// node deployed under a (lower-case) app-id is found and torn down under any spelling.
async fn app_ids_match_in_any_case(suite: &BackendSuite, backend: Arc<dyn ContainerBackend>) {
    let node = suite.node("case");
    let app = node.app_id.clone();
    let shouted = AppId::new(app.as_str().to_ascii_uppercase());
    backend
        .deploy_node(&node)
        .await
        .unwrap_or_else(|e| fail("deploy", e));
    let status = backend
        .status(&shouted)
        .await
        .unwrap_or_else(|e| fail("status under the app-id in upper case", e));
    assert_eq!(
        status.labels.get(labels::APP_ID).map(String::as_str),
        Some(app.as_str()),
        "the node keeps the spelling it was deployed with"
    );
    backend
        .teardown(&shouted, &TeardownOptions::default())
        .await
        .unwrap_or_else(|e| fail("teardown under the app-id in upper case", e));
    match backend.status(&app).await {
        Err(BackendError::NotFound { .. }) => {}
        other => fail(
            "status after an upper-case teardown",
            format!("want NotFound, got {other:?}"),
        ),
    }
}

async fn unknown_app_id_is_not_found(suite: &BackendSuite, backend: Arc<dyn ContainerBackend>) {
    let app = suite.app_id("never-deployed");
    let expect = |step: &str, result: Result<(), BackendError>| match result {
        Err(BackendError::NotFound { app_id }) if app_id == app => {}
        other => fail(step, format!("want NotFound for {app}, got {other:?}")),
    };
    expect("status", backend.status(&app).await.map(drop));
    expect(
        "teardown",
        backend
            .teardown(&app, &TeardownOptions::default())
            .await
            .map(drop),
    );
    expect(
        "restart",
        backend
            .restart(&app, &RestartOptions::default())
            .await
            .map(drop),
    );
    expect(
        "logs",
        backend.logs(&app, &LogQuery::default()).await.map(drop),
    );
    match backend.scale(&app, 2).await {
        Err(BackendError::NotFound { .. } | BackendError::Unsupported { .. }) => {}
        other => fail(
            "scale",
            format!("want NotFound or Unsupported, got {other:?}"),
        ),
    }
}

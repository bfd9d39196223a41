//! The control plane in this process deploying real containers on the local Docker engine:
//! Redis started here on loopback plus our network's gateway is
//! the state and the bus; a 3-node two-wave preset comes up with every node heartbeating
//! healthy; the mappings reach every node (each reports the routing version it applied in
//! its heartbeat metadata); a ping sent to one container for a service another container
//! hosts goes through the mesh resolver; a node scales to 2 replicas and back, restarts,
//! and its logs are read; a node that exits at start fails its wave with its last log
//! lines in the deploy error; teardown leaves no container, network or volume of ours.
//!
//! Needs Docker and redis-server: skipped without them unless `BANNOU_TEST_REQUIRE` names
//! them. The image comes from `containers::testing` (`BANNOU_TEST_IMAGE`,
//! `BANNOU_STATIC_BINARY`, else `scripts/build-image.sh --binary-only`).

mod common;

use std::collections::{BTreeMap, HashMap};

use bollard::Docker;
use bollard::query_parameters::{ListContainersOptions, ListNetworksOptions, ListVolumesOptions};
use common::{Host, PATIENCE, config, eventually, get_json};
use futures::StreamExt;
use orchestrator_core::AppId;
use orchestrator_core::api::{
    ContainerRestartRequestBody, DeployRequest, GetLogsRequest, ListBackendsRequest,
    ServiceHealthRequest, TeardownRequest,
};
use orchestrator_core::events::{BackendType, ServiceHeartbeatEvent};
use orchestrator_core::ports::backend::{ContainerBackend, labels};
use orchestrator_core::ports::bus::EventBusExt;

/// Node -> the services it hosts. `auth` and `account` are L1 (wave 1), `realm` L2
/// (wave 2).
fn preset(prefix: &str) -> String {
    format!(
        "name: e2e\ndescription: three nodes in two waves\ntopology:\n  nodes:\n    \
         - name: {prefix}-auth\n      services: [auth]\n    \
         - name: {prefix}-account\n      services: [account]\n    \
         - name: {prefix}-realm\n      services: [realm]\n"
    )
}

/// The same nodes plus one whose process exits at start (a bad heartbeat setting).
fn preset_with_bad_node(prefix: &str) -> String {
    format!(
        "{}    - name: {prefix}-bad\n      services: [chat]\n      environment:\n        \
         BANNOU_HEARTBEAT_ENABLED: not-a-boolean\n",
        preset(prefix).replace("name: e2e\n", "name: e2e-bad\n")
    )
}

fn deploy(preset: &str) -> DeployRequest {
    DeployRequest {
        preset: Some(preset.to_owned()),
        // Beat every second, so a routing change shows in the metadata quickly.
        environment: Some(BTreeMap::from([(
            "BANNOU_HEARTBEAT_INTERVAL_SECONDS".to_owned(),
            "1".to_owned(),
        )])),
        ..DeployRequest::default()
    }
}

/// Our containers (by label) whose app-id starts with `prefix`: name -> app-id.
async fn our_containers(docker: &Docker, prefix: &str) -> Vec<(String, String)> {
    let options = ListContainersOptions {
        all: true,
        filters: Some(HashMap::from([(
            "label".to_owned(),
            vec![format!("{}={}", labels::MANAGED, labels::MANAGED_VALUE)],
        )])),
        ..Default::default()
    };
    let mut out: Vec<(String, String)> = docker
        .list_containers(Some(options))
        .await
        .unwrap()
        .into_iter()
        .filter_map(|c| {
            let app = c.labels.as_ref()?.get(labels::APP_ID)?.clone();
            let name = c.names?.first()?.trim_start_matches('/').to_owned();
            app.starts_with(prefix).then_some((name, app))
        })
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_deploy_end_to_end() {
    let test = "docker_deploy_end_to_end";
    common::on_docker(test, "e2e", |scene| async move {
        let (docker, network, prefix) = (&scene.docker, &scene.network, &scene.prefix);
        let presets = &scene.presets;
        std::fs::write(presets.path().join("e2e.yaml"), preset(prefix)).unwrap();
        std::fs::write(
            presets.path().join("e2e-bad.yaml"),
            preset_with_bad_node(prefix),
        )
        .unwrap();
        let cfg = scene.config();
        let host = Host::start(cfg).await;

        // Backends: Docker available (Redis is configured), the default still in-process.
        let backends = host
            .api
            .backends(&ListBackendsRequest::default())
            .await
            .unwrap();
        let compose = backends
            .backends
            .iter()
            .find(|b| b.kind == BackendType::Compose)
            .unwrap();
        assert!(compose.available, "{:?}", compose.error);
        assert_eq!(backends.active_backend, Some(BackendType::InProcess));

        // 1. Deploy on Docker: 200 only once every node heartbeats healthy.
        let mut beats = host
            .server
            .adapters()
            .bus
            .subscribe_events::<ServiceHeartbeatEvent>()
            .await
            .unwrap();
        let mut request = deploy("e2e");
        request.backend = Some(BackendType::Compose);
        let reply = host.api.deploy(&request).await.unwrap();
        assert_eq!(reply.status, 200, "{:?}", reply.body.warnings);
        let apps = [
            format!("{prefix}-auth"),
            format!("{prefix}-account"),
            format!("{prefix}-realm"),
        ];
        let running = our_containers(docker, prefix).await;
        assert_eq!(running.len(), 3, "{running:?}");
        let backends = host
            .api
            .backends(&ListBackendsRequest::default())
            .await
            .unwrap();
        assert_eq!(backends.active_backend, Some(BackendType::Compose), "D6");

        // 2. Every node's services healthy in the aggregator.
        let health = host
            .api
            .services_health(&ServiceHealthRequest::default())
            .await
            .unwrap();
        for (app, service) in apps.iter().zip(["auth", "account", "realm"]) {
            let entry = health
                .healthy_services
                .iter()
                .find(|s| s.service_id == service && s.app_id == *app)
                .unwrap_or_else(|| panic!("{service} on {app} healthy: {health:?}"));
            assert_eq!(entry.app_id, *app);
        }

        // 3. Mappings reach every node: each reports the current routing version.
        let version = host
            .server
            .adapters()
            .store
            .mappings_version()
            .await
            .unwrap();
        assert!(version > 0);
        let mut applied: BTreeMap<String, i64> = BTreeMap::new();
        tokio::time::timeout(PATIENCE, async {
            while apps
                .iter()
                .any(|a| applied.get(a).is_none_or(|v| *v < version))
            {
                let beat = beats.next().await.expect("bus open").expect("a heartbeat");
                if let Some(v) = beat
                    .metadata
                    .as_ref()
                    .and_then(|m| m.get("routingVersion"))
                    .and_then(serde_json::Value::as_i64)
                {
                    applied.insert(beat.app_id.to_string(), v);
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("routing version {version} applied by every node: {applied:?}"));

        // 4. The mesh: the auth node forwards a realm ping to the realm node.
        let auth_ip = scene.container_ip(&format!("bannou-{}", apps[0])).await;
        let url = format!("http://{auth_ip}:80/realm/ping");
        let body = eventually(&format!("{url} answered by {}", apps[2]), || {
            let url = url.clone();
            let owner = apps[2].clone();
            async move {
                let (status, body) = get_json(&url).await;
                (status == 200 && body["appId"] == owner).then_some(body)
            }
        })
        .await;
        assert_eq!(body["service"], "realm", "{body}");
        assert!(
            body.get("via").is_some(),
            "forwarded through the mesh: {body}"
        );

        // 5. Scale the account node to 2 replicas and back.
        let docker_backend = host
            .server
            .docker_backend()
            .expect("Docker backend")
            .clone();
        let account = AppId::from(apps[1].as_str());
        let scaled = docker_backend.scale(&account, 2).await.unwrap();
        assert_eq!(scaled.current_replicas, 2);
        let replicas =
            |list: Vec<(String, String)>| list.into_iter().filter(|(_, a)| *a == apps[1]).count();
        assert_eq!(replicas(our_containers(docker, prefix).await), 2);
        docker_backend.scale(&account, 1).await.unwrap();
        assert_eq!(replicas(our_containers(docker, prefix).await), 1);

        // 6. Restart the realm node through the API: its container restarts and it
        // heartbeats healthy again.
        let before = docker_backend
            .status(&AppId::from(apps[2].as_str()))
            .await
            .unwrap();
        let restarted = host
            .api
            .request_container_restart(&ContainerRestartRequestBody {
                app_name: apps[2].clone(),
                reason: "e2e".to_owned(),
                priority: None,
                shutdown_grace_period: 5,
            })
            .await
            .unwrap();
        assert!(restarted.accepted, "{restarted:?}");
        eventually("the realm node restarted and running", || {
            let backend = docker_backend.clone();
            let app = AppId::from(apps[2].as_str());
            let before = before.clone();
            async move {
                let now = backend.status(&app).await.ok()?;
                (now.restart_count > before.restart_count
                    && now.status == orchestrator_core::api::enums::ContainerStatusType::Running)
                    .then_some(())
            }
        })
        .await;

        // 7. Its logs, with streams.
        let logs = host
            .api
            .logs(&GetLogsRequest {
                container: Some(apps[2].clone()),
                ..GetLogsRequest::default()
            })
            .await
            .unwrap();
        assert!(!logs.logs.is_empty(), "the realm node logged something");
        assert!(logs.logs.iter().all(|l| l.stream.is_some()));

        // 8. A node that exits at start fails its wave, with its last log lines.
        let mut bad = deploy("e2e-bad");
        bad.backend = Some(BackendType::Compose);
        let reply = host.api.deploy(&bad).await.unwrap();
        assert_eq!(reply.status, 500, "{:?}", reply.body);
        let warnings = reply.body.warnings.clone().unwrap_or_default().join("\n");
        assert!(warnings.contains(&format!("{prefix}-bad")), "{warnings}");
        assert!(
            warnings.contains("BANNOU_HEARTBEAT_ENABLED"),
            "the node's last log lines name its bad setting: {warnings}"
        );

        // 9. Teardown: nothing of ours left, network included.
        let done = host
            .api
            .teardown(&TeardownRequest::default())
            .await
            .unwrap();
        assert!(done.errors.is_none(), "{:?}", done.errors);
        assert!(our_containers(docker, prefix).await.is_empty());
        let networks = docker
            .list_networks(Some(ListNetworksOptions {
                filters: Some(HashMap::from([("name".to_owned(), vec![network.clone()])])),
            }))
            .await
            .unwrap();
        assert!(
            networks
                .iter()
                .all(|n| n.name.as_deref() != Some(network.as_str())),
            "our network is removed with the last container"
        );
        let volumes = docker
            .list_volumes(Some(ListVolumesOptions {
                filters: Some(HashMap::from([(
                    "label".to_owned(),
                    vec![format!("{}={}", labels::APP_ID, apps[0])],
                )])),
            }))
            .await
            .unwrap();
        assert!(volumes.volumes.unwrap_or_default().is_empty());
        host.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn docker_without_redis_is_unavailable_with_the_reason() {
    let test = "docker_without_redis_is_unavailable_with_the_reason";
    let Some(_docker) = orchestrator_backends::require::docker(test).await else {
        return;
    };
    let presets = tempfile::tempdir().unwrap();
    let host = Host::start(config(presets.path())).await;
    let backends = host
        .api
        .backends(&ListBackendsRequest::default())
        .await
        .unwrap();
    let compose = backends
        .backends
        .iter()
        .find(|b| b.kind == BackendType::Compose)
        .unwrap();
    assert!(!compose.available);
    assert!(
        compose
            .error
            .as_deref()
            .is_some_and(|e| e.contains("start with --redis")),
        "{compose:?}"
    );
    let mut request = deploy("anything");
    request.backend = Some(BackendType::Compose);
    let err = host.api.deploy(&request).await.unwrap_err().to_string();
    assert!(err.contains("start with --redis"), "{err}");
    host.shutdown().await;

    // A default of compose without Redis refuses to start.
    let mut cfg = config(presets.path());
    cfg.default_backend = BackendType::Compose;
    let err = bannou_host::server::Server::start(cfg)
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("start with --redis"), "{err}");
}

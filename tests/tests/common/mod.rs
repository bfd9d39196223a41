//! Helpers shared by the whole-host integration tests: a control plane on an ephemeral
//! port with its `ApiClient`, bounded waits, raw HTTP.
#![allow(dead_code)]

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bannou_host::client::ApiClient;
use bannou_host::config::HostConfig;
use bannou_host::server::Server;
use orchestrator_core::AppId;
use orchestrator_core::api::{DeployRequest, GetConfigVersionRequest, GetServiceRoutingRequest};
use orchestrator_core::ports::backend::ContainerBackend;

/// A preset of two waves whose second never turns healthy (`tests/fixtures/faults/`).
pub const FAULTY: &str = include_str!("../../fixtures/faults/faulty.yaml");

/// A deploy request for `preset`, everything else defaulted.
pub fn deploy(preset: &str) -> DeployRequest {
    DeployRequest {
        preset: Some(preset.to_owned()),
        ..DeployRequest::default()
    }
}

/// Upper bound of every wait (never an assertion about speed).
pub const PATIENCE: Duration = Duration::from_secs(30);

/// This repository's presets (`presets/`).
pub fn our_presets() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../presets")
}

/// Defaults as with no environment at all, a free loopback port, presets from `presets`.
pub fn config(presets: &Path) -> HostConfig {
    let mut config = HostConfig::from_env(|_| None).expect("defaults are valid");
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.presets_host_path = presets.to_path_buf();
    config
}

/// A control plane and a client of its API.
pub struct Host {
    pub server: Server,
    pub api: ApiClient,
}

impl Host {
    pub async fn start(config: HostConfig) -> Host {
        let server = Server::start(config)
            .await
            .expect("the control plane starts");
        let api = ApiClient::new(&server.base_url())
            .unwrap()
            .with_timeout(Duration::from_secs(120));
        Host { server, api }
    }

    /// Base URLs of the running replicas of `app` in the in-process backend.
    pub fn endpoints(&self, app: &str) -> Vec<String> {
        self.server
            .in_process_backend()
            .expect("control plane")
            .endpoints(&AppId::from(app))
    }

    /// App-ids the in-process backend lists (any state).
    pub async fn listed(&self) -> Vec<String> {
        let backend = self.server.in_process_backend().expect("control plane");
        let mut apps: Vec<String> = backend
            .list()
            .await
            .unwrap()
            .into_iter()
            .map(|c| c.app_id.to_string())
            .collect();
        apps.sort();
        apps
    }

    pub async fn config_version(&self) -> i64 {
        self.api
            .config_version(&GetConfigVersionRequest::default())
            .await
            .unwrap()
            .version
    }

    /// Where `service` is routed (`None`: default, the control plane).
    pub async fn route(&self, service: &str) -> Option<String> {
        self.api
            .service_routing(&GetServiceRoutingRequest::default())
            .await
            .unwrap()
            .mappings
            .get(service)
            .cloned()
    }

    pub async fn shutdown(self) {
        tokio::time::timeout(PATIENCE, self.server.shutdown())
            .await
            .expect("shutdown ends");
    }
}

/// Polls `check` (every 50 ms) until it yields a value; panics naming `what` after
/// [`PATIENCE`].
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "gave up waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `GET url`: status and JSON body (`null` when the body is not JSON).
pub async fn get_json(url: &str) -> (u16, serde_json::Value) {
    let resp = http().get(url).send().await.unwrap();
    let status = resp.status().as_u16();
    let body = resp.json().await.unwrap_or(serde_json::Value::Null);
    (status, body)
}

pub fn http() -> reqwest::Client {
    orchestrator_backends::http::install_crypto_provider();
    reqwest::Client::builder()
        .timeout(PATIENCE)
        .build()
        .unwrap()
}

/// Our Docker network `network` (created when missing) and a `redis-server` listening on
/// its gateway, so the containers on it reach Redis. `None` (after `skip_or_fail`, which
/// panics under `BANNOU_TEST_REQUIRE=redis`) when redis-server cannot start.
pub async fn redis_on_network(
    docker: &bollard::Docker,
    network: &str,
    test: &str,
) -> Option<orchestrator_backends::redis::server::RedisServer> {
    use orchestrator_backends::containers::docker::{DockerBackend, DockerConfig};
    let probe = DockerBackend::new(
        docker.clone(),
        DockerConfig {
            network: network.to_owned(),
            ..DockerConfig::default()
        },
    );
    let gateway = probe
        .ensure_network()
        .await
        .unwrap()
        .gateway
        .expect("a bridge network has a gateway");
    match orchestrator_backends::redis::server::RedisServer::start_bound(&[gateway]) {
        Ok(r) => Some(r),
        Err(e) => {
            orchestrator_backends::require::skip_or_fail("redis", test, &e.to_string());
            None
        }
    }
}

/// What a whole-host test on Docker starts from: the engine, our image, a fresh network
/// of ours with a Redis on its gateway (so the containers reach it), an app-id prefix and
/// a presets folder. Made by [`on_docker`].
pub struct DockerScene {
    pub docker: bollard::Docker,
    pub image: String,
    pub network: String,
    /// Every node of the test is named with it (cleanup removes what carries it).
    pub prefix: String,
    pub redis: orchestrator_backends::redis::server::RedisServer,
    pub presets: tempfile::TempDir,
}

impl DockerScene {
    /// A host configuration on the scene: presets from its folder, state on its Redis,
    /// nodes from our image on its network, waves given 60 s (containers start slowly).
    pub fn config(&self) -> HostConfig {
        let mut cfg = config(self.presets.path());
        cfg.redis_url = Some(self.redis.url());
        cfg.docker_network = self.network.clone();
        cfg.docker_image_name = self.image.clone();
        cfg.wave_timeout = Duration::from_secs(60);
        cfg
    }

    /// The address of container `name` on the scene's network.
    pub async fn container_ip(&self, name: &str) -> String {
        let inspected = self.docker.inspect_container(name, None).await.unwrap();
        inspected
            .network_settings
            .and_then(|n| n.networks)
            .and_then(|mut n| n.remove(&self.network))
            .and_then(|e| e.ip_address)
            .filter(|ip| !ip.is_empty())
            .unwrap_or_else(|| panic!("{name} has no address on {}", self.network))
    }
}

/// Runs `body` in a fresh [`DockerScene`] (network `bannou-{tag}-net-…`, prefix `{tag}-…`),
/// then removes the scene's containers and network whether `body` passed or panicked.
/// Returns without running `body` when Docker, our image or `redis-server` is missing
/// (skipped with the reason, or failed when `BANNOU_TEST_REQUIRE` names it).
pub async fn on_docker<F, Fut>(test: &str, tag: &str, body: F)
where
    F: FnOnce(DockerScene) -> Fut,
    Fut: Future<Output = ()>,
{
    use orchestrator_backends::containers::testing::{docker_and_image, unique, with_cleanup};
    let Some((docker, image)) = docker_and_image(test).await else {
        return;
    };
    let network = unique(&format!("bannou-{tag}-net"));
    let prefix = unique(tag);
    let scene = async {
        let Some(redis) = redis_on_network(&docker, &network, test).await else {
            return;
        };
        let presets = tempfile::tempdir().unwrap();
        body(DockerScene {
            docker: docker.clone(),
            image,
            network: network.clone(),
            prefix: prefix.clone(),
            redis,
            presets,
        })
        .await;
    };
    with_cleanup(&docker, &prefix, Some(&network), scene).await;
}

/// Two nodes calling through a real mesh: `{prefix}-gw` (auth: the gateway a client
/// calls, `GET /account/ping`) and `{prefix}-acct` (account) whose environment carries
/// `TAG=tag`, so a changed tag changes the node; nodes beat every second.
pub fn gateway_and_account(prefix: &str, tag: &str) -> DeployRequest {
    use orchestrator_core::api::{ServiceTopology, TopologyNode};
    use std::collections::BTreeMap;
    let node = |name: String, service: &str, env: Option<BTreeMap<String, String>>| TopologyNode {
        services: Some(vec![service.to_owned()]),
        environment: env,
        ..TopologyNode::new(name)
    };
    DeployRequest {
        topology: Some(ServiceTopology {
            nodes: vec![
                node(format!("{prefix}-gw"), "auth", None),
                node(
                    format!("{prefix}-acct"),
                    "account",
                    Some(BTreeMap::from([("TAG".to_owned(), tag.to_owned())])),
                ),
            ],
            infrastructure: None,
        }),
        environment: Some(BTreeMap::from([(
            "BANNOU_HEARTBEAT_INTERVAL_SECONDS".to_owned(),
            "1".to_owned(),
        )])),
        ..DeployRequest::default()
    }
}

/// One call of a node's ping through the mesh: the app-id that answered, or why it failed.
pub async fn mesh_ping(client: &reqwest::Client, url: &str) -> Result<String, String> {
    match client.get(url).send().await {
        Ok(resp) if resp.status().is_success() => match resp.json::<serde_json::Value>().await {
            Ok(body) => body["appId"]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| format!("no appId in {body}")),
            Err(e) => Err(format!("unreadable answer: {e}")),
        },
        Ok(resp) => Err(format!(
            "HTTP {}: {}",
            resp.status(),
            resp.text().await.unwrap_or_default()
        )),
        Err(e) => Err(format!("transport: {e}")),
    }
}

/// Waits until a ping of `url` (a gateway's `/account/ping`) is answered by `app`.
pub async fn until_answered_by(url: &str, app: &str) {
    eventually(&format!("{url} answered by {app}"), || async move {
        let (status, body) = get_json(url).await;
        (status == 200 && body["appId"] == app).then_some(())
    })
    .await;
}

//! `bannou-host bench deploy --backend docker`: deploy-to-all-healthy of an N-node
//! topology with our orchestrator on the Docker backend, against `docker-compose up -d`
//! of an equivalent compose file on the same engine and image, alternating.
//!
//! - **Topology**: generated, N single-service nodes; the first half host
//!   `AppFoundation` services, the rest `GameFoundation` ones, so the deploy runs two
//!   layer-ordered waves.
//! - **Bus**: `--redis URL`, else a `redis-server` this command starts on 127.0.0.1 and
//!   our network's gateway (stopped at the end).
//! - **Network**: both sides run on one bridge network the bench creates
//!   (`bannou-bench`, labelled `bannou.bench=true`, removed at the end), so neither pays
//!   for network creation and the Redis address stays the same.
//! - **Ours**: a control plane in this process; timed from the deploy request until its
//!   answer, which comes once every node's heartbeat is healthy, wave by wave. Then
//!   teardown (not timed).
//! - **Compose**: the same nodes, image and environment as services of project
//!   `bannou-bench` (compose file format 2.4, which Debian's docker-compose v1 reads), a
//!   healthcheck `["CMD", "/bannou-host", "probe", "http://127.0.0.1:80/{service}/ping"]`
//!   and `depends_on: {condition: service_healthy}` on every node of the previous layer;
//!   timed from `docker-compose up -d` until every container's healthcheck reports
//!   healthy (v1 has no `--wait`: `docker inspect` is polled). Then `down -v` (not timed).
//! - **Limit**: the engine's own limit for the same deploy: the same containers (image,
//!   environment, network) created and started straight through the Docker API, as
//!   `docker run -d` would, in parallel within a wave and the waves in sequence, each
//!   wave done when all its containers answer `GET /{service}/ping` on their bridge
//!   address (asked every `LIMIT_POLL`). Timed from the first create until the last
//!   wave answers; then the containers are removed (not timed). No orchestration at all,
//!   so `ratio_to_limit` is what our deploy costs above the engine.
//!
//! Only objects with our labels or compose's `com.docker.compose.project=bannou-bench`
//! are removed.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use bollard::Docker;
use bollard::models::{ContainerCreateBody, NetworkCreateRequest};
use bollard::query_parameters::{
    CreateContainerOptions, InspectContainerOptions, ListContainersOptions, RemoveContainerOptions,
    StartContainerOptions,
};
use orchestrator_backends::containers::docker::{DockerBackend, DockerConfig};
use orchestrator_backends::redis::server::RedisServer;
use orchestrator_core::api::TeardownRequest;
use orchestrator_core::events::BackendType;
use orchestrator_core::layer::Layer;
use orchestrator_core::planner::{self, PlanOptions};
use orchestrator_core::ports::backend::NodeDeployment;
use orchestrator_core::resolver::Resolved;
use orchestrator_core::{Catalog, ResolvedNode};
use serde::Serialize;

use crate::backends::docker::NODE_REDIS_VARIABLE;
use crate::config::HostConfig;
use crate::server::Server;

use super::deploy::{deploy_timed, teardown};

/// The compose project (and the bench network's name).
pub const PROJECT: &str = "bannou-bench";
/// Label of the network the bench creates.
pub const BENCH_LABEL: &str = "bannou.bench";
/// How often compose containers' health is polled.
const COMPOSE_POLL: Duration = Duration::from_millis(50);
/// Healthcheck interval given to compose (and probe timeout).
const HEALTH_INTERVAL: &str = "250ms";
/// Longest either side may take to become healthy.
const PATIENCE: Duration = Duration::from_secs(180);
/// How often the limit run asks a started container's ping.
const LIMIT_POLL: Duration = Duration::from_millis(10);
/// Name prefix of the limit run's containers.
const LIMIT_PREFIX: &str = "bannou-bench-limit-";

/// What the Docker bench is asked to do.
#[derive(Debug, Clone)]
pub struct DockerBench {
    /// Nodes in the generated topology.
    pub nodes: usize,
    /// Rounds of ours then compose.
    pub rounds: usize,
    /// Redis URL (none: start one).
    pub redis: Option<String>,
    /// Node image.
    pub image: String,
}

/// The numbers.
#[derive(Debug, Serialize)]
pub struct DockerReport {
    /// Nodes deployed by each side.
    pub nodes: usize,
    /// Layer-ordered waves (ours) and dependency levels (compose).
    pub waves: usize,
    /// Rounds run.
    pub rounds: usize,
    /// Image used by both.
    pub image: String,
    /// Each round of ours, seconds.
    pub ours_s: Vec<f64>,
    /// Each round of compose, seconds.
    pub compose_s: Vec<f64>,
    /// Each round of the engine's limit (plain create+start, ping), seconds.
    pub limit_s: Vec<f64>,
    /// Median of ours.
    pub ours_median_s: f64,
    /// Median of compose.
    pub compose_median_s: f64,
    /// Median of the limit.
    pub limit_median_s: f64,
    /// `ours_median_s / compose_median_s`.
    pub ratio: f64,
    /// `ours_median_s / limit_median_s`.
    pub ratio_to_limit: f64,
}

/// The generated topology: nodes in layer order, `(name, service, layer)`.
pub fn generated_nodes(n: usize) -> anyhow::Result<Vec<(String, String, Layer)>> {
    if n < 2 {
        bail!("--nodes must be at least 2 (two layers)");
    }
    let catalog = Catalog::builtin();
    let pick = |layer: Layer| -> Vec<String> {
        catalog
            .services()
            .iter()
            .filter(|d| d.layer == layer && d.routable && !d.required)
            .map(|d| d.name.clone())
            .collect()
    };
    let (l1, l2) = (pick(Layer::AppFoundation), pick(Layer::GameFoundation));
    let first = n.div_ceil(2).min(l1.len());
    let second = n - first;
    if second > l2.len() || first == 0 {
        bail!(
            "--nodes {n}: the catalog has {} AppFoundation and {} GameFoundation services to \
             give one to each node",
            l1.len(),
            l2.len()
        );
    }
    Ok(l1
        .into_iter()
        .take(first)
        .map(|s| (s, Layer::AppFoundation))
        .chain(
            l2.into_iter()
                .take(second)
                .map(|s| (s, Layer::GameFoundation)),
        )
        .enumerate()
        .map(|(i, (s, layer))| (format!("bench-{:02}", i + 1), s, layer))
        .collect())
}

/// The preset text of the generated topology.
fn preset_text(nodes: &[(String, String, Layer)]) -> String {
    let mut text = String::from(
        "name: bench-docker\ndescription: generated by bench deploy --backend docker\n\
         topology:\n  nodes:\n",
    );
    for (name, service, _) in nodes {
        text.push_str(&format!(
            "    - name: {name}\n      services: [{service}]\n"
        ));
    }
    text
}

/// The compose file: one service per node, same image and environment as ours.
fn compose_file(
    nodes: &[ResolvedNode],
    layers: &[(String, String, Layer)],
    backend: &DockerBackend,
    image: &str,
    redis_for_nodes: &str,
) -> String {
    let mut out = format!(
        "# Generated by `bannou-host bench deploy --backend docker`.\nversion: \"2.4\"\n\
         networks:\n  default:\n    external:\n      name: {PROJECT}\nservices:\n"
    );
    for node in nodes {
        let Some((_, service, layer)) = layers.iter().find(|(n, _, _)| *n == node.name) else {
            continue;
        };
        let mut deployment = NodeDeployment::new(node.app_id.clone(), &node.name, image);
        deployment.environment = node.environment.clone();
        deployment
            .environment
            .insert(NODE_REDIS_VARIABLE.to_owned(), redis_for_nodes.to_owned());
        let env = backend.node_environment(&deployment);
        out.push_str(&format!("  {}:\n    image: {image}\n", node.app_id));
        out.push_str("    environment:\n");
        for (k, v) in env {
            out.push_str(&format!("      {k}: {}\n", serde_json::Value::String(v)));
        }
        out.push_str(&format!(
            "    healthcheck:\n      test: [\"CMD\", \"/bannou-host\", \"probe\", \"http://127.0.0.1:{}/{service}/ping\"]\n      \
             interval: {HEALTH_INTERVAL}\n      timeout: 2s\n      retries: 240\n",
            backend.config().node_port
        ));
        let below: Vec<&String> = layers
            .iter()
            .filter(|(_, _, l)| *l < *layer)
            .filter(|(_, _, l)| !layers.iter().any(|(_, _, m)| *m > *l && *m < *layer))
            .map(|(n, _, _)| n)
            .collect();
        if !below.is_empty() {
            out.push_str("    depends_on:\n");
            for dep in below {
                out.push_str(&format!(
                    "      {dep}:\n        condition: service_healthy\n"
                ));
            }
        }
    }
    out
}

fn docker_compose(file: &Path, args: &[&str]) -> anyhow::Result<()> {
    let output = Command::new("docker-compose")
        .arg("-p")
        .arg(PROJECT)
        .arg("-f")
        .arg(file)
        .args(args)
        .output()
        .context("cannot run docker-compose (Debian package docker-compose)")?;
    if !output.status.success() {
        bail!(
            "docker-compose {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// Waits until `expected` containers of the compose project report healthy.
async fn compose_healthy(docker: &Docker, expected: usize) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let options = ListContainersOptions {
        all: true,
        filters: Some(HashMap::from([(
            "label".to_owned(),
            vec![format!("com.docker.compose.project={PROJECT}")],
        )])),
        ..Default::default()
    };
    loop {
        let list = docker.list_containers(Some(options.clone())).await?;
        // The list's status text carries the health: `Up 2 seconds (healthy)`.
        let healthy = list
            .iter()
            .filter(|c| c.status.as_deref().is_some_and(|s| s.contains("(healthy)")))
            .count();
        if healthy >= expected {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("compose: {healthy} of {expected} containers healthy after {PATIENCE:?}");
        }
        tokio::time::sleep(COMPOSE_POLL).await;
    }
}

/// One container of the limit run: what to start and what to ping.
struct LimitNode {
    name: String,
    service: String,
    body: ContainerCreateBody,
}

/// The limit run's containers, wave by wave: each node as [`compose_file`] describes it
/// (image, environment, network), labelled [`BENCH_LABEL`] so a failed run's leftovers are
/// recognisable.
fn limit_waves(
    plan: &planner::Plan,
    nodes: &[ResolvedNode],
    layers: &[(String, String, Layer)],
    backend: &DockerBackend,
    image: &str,
    redis_for_nodes: &str,
) -> Vec<Vec<LimitNode>> {
    plan.waves
        .iter()
        .map(|wave| {
            wave.actions
                .iter()
                .filter_map(|a| nodes.iter().find(|n| n.app_id == a.app_id))
                .filter_map(|node| {
                    let (_, service, _) = layers.iter().find(|(n, _, _)| *n == node.name)?;
                    let mut deployment =
                        NodeDeployment::new(node.app_id.clone(), &node.name, image);
                    deployment.environment = node.environment.clone();
                    deployment
                        .environment
                        .insert(NODE_REDIS_VARIABLE.to_owned(), redis_for_nodes.to_owned());
                    let env = backend.node_environment(&deployment);
                    let body = ContainerCreateBody {
                        image: Some(image.to_owned()),
                        env: Some(env.into_iter().map(|(k, v)| format!("{k}={v}")).collect()),
                        labels: Some(HashMap::from([(BENCH_LABEL.to_owned(), "true".to_owned())])),
                        host_config: Some(bollard::models::HostConfig {
                            network_mode: Some(PROJECT.to_owned()),
                            ..Default::default()
                        }),
                        ..Default::default()
                    };
                    Some(LimitNode {
                        name: format!("{LIMIT_PREFIX}{}", node.app_id),
                        service: service.clone(),
                        body,
                    })
                })
                .collect::<Vec<_>>()
        })
        .filter(|w| !w.is_empty())
        .collect()
}

/// Creates and starts one container (`docker run -d`), then asks its ping on its bridge
/// address until it answers 2xx.
async fn run_and_ping(
    docker: &Docker,
    http: &reqwest::Client,
    node: &LimitNode,
    port: u16,
) -> anyhow::Result<()> {
    let options = CreateContainerOptions {
        name: Some(node.name.clone()),
        ..Default::default()
    };
    let created = docker
        .create_container(Some(options), node.body.clone())
        .await
        .with_context(|| format!("limit: creating {}", node.name))?;
    docker
        .start_container(&created.id, None::<StartContainerOptions>)
        .await
        .with_context(|| format!("limit: starting {}", node.name))?;
    let inspected = docker
        .inspect_container(&created.id, None::<InspectContainerOptions>)
        .await?;
    let ip = inspected
        .network_settings
        .and_then(|n| n.networks)
        .and_then(|n| n.get(PROJECT).and_then(|e| e.ip_address.clone()))
        .filter(|ip| !ip.is_empty())
        .with_context(|| format!("limit: {} has no address on {PROJECT}", node.name))?;
    let url = format!("http://{ip}:{port}/{}/ping", node.service);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Ok(r) = http.get(&url).send().await
            && r.status().is_success()
        {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            bail!(
                "limit: {} did not answer {url} within {PATIENCE:?}",
                node.name
            );
        }
        tokio::time::sleep(LIMIT_POLL).await;
    }
}

/// Removes every container of the limit run (by name prefix and bench label).
async fn remove_limit_containers(docker: &Docker) -> anyhow::Result<()> {
    let options = ListContainersOptions {
        all: true,
        filters: Some(HashMap::from([
            ("label".to_owned(), vec![format!("{BENCH_LABEL}=true")]),
            ("name".to_owned(), vec![LIMIT_PREFIX.to_owned()]),
        ])),
        ..Default::default()
    };
    let remove = RemoveContainerOptions {
        force: true,
        v: true,
        link: false,
    };
    let listed = docker.list_containers(Some(options)).await?;
    let removals = listed.iter().filter_map(|c| c.id.as_deref()).map(|id| {
        let remove = remove.clone();
        async move { docker.remove_container(id, Some(remove)).await }
    });
    for r in futures::future::join_all(removals).await {
        r?;
    }
    Ok(())
}

/// One timed limit round: the waves in sequence, each wave's containers in parallel.
async fn limit_round(
    docker: &Docker,
    http: &reqwest::Client,
    waves: &[Vec<LimitNode>],
    port: u16,
) -> anyhow::Result<f64> {
    let start = tokio::time::Instant::now();
    for wave in waves {
        let runs = wave.iter().map(|n| run_and_ping(docker, http, n, port));
        for r in futures::future::join_all(runs).await {
            r?;
        }
    }
    Ok(start.elapsed().as_secs_f64())
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

/// The preset name of the generated topology.
pub const PRESET: &str = "bench-docker";

/// Everything a Docker bench deploys with: the bench network, a Redis for the bus, the
/// generated topology as preset [`PRESET`] and a control plane configuration for it.
/// [`DockerStage::finish`] removes the network if the stage created it; dropping the
/// stage stops the Redis it started and removes the preset directory.
pub struct DockerStage {
    /// The engine.
    pub docker: Docker,
    /// A Docker backend on the bench network (for node environments and the node port).
    pub probe: DockerBackend,
    /// The generated nodes, `(name, service, layer)`, in layer order.
    pub layers: Vec<(String, String, Layer)>,
    /// The directory holding the preset.
    pub presets: tempfile::TempDir,
    /// The Redis URL as nodes on the bench network reach it.
    pub node_redis: String,
    /// A host configuration whose Docker deploys of [`PRESET`] use all of the above.
    pub config: HostConfig,
    created_network: Option<String>,
    _redis: Option<RedisServer>,
}

impl DockerStage {
    /// Checks `image`, creates the bench network if it is missing, starts a Redis unless
    /// `redis` names one, and writes the `nodes`-node preset.
    pub async fn prepare(
        nodes: usize,
        redis: Option<String>,
        image: &str,
    ) -> anyhow::Result<DockerStage> {
        let docker = orchestrator_backends::containers::docker::connect_negotiated(None).await?;
        docker
            .inspect_image(image)
            .await
            .with_context(|| format!("image {image} (build it: scripts/build-image.sh)"))?;
        let created_network = match docker.inspect_network(PROJECT, None).await {
            Ok(_) => None,
            Err(_) => {
                let r = docker
                    .create_network(NetworkCreateRequest {
                        name: PROJECT.to_owned(),
                        driver: Some("bridge".to_owned()),
                        labels: Some(HashMap::from([(BENCH_LABEL.to_owned(), "true".to_owned())])),
                        ..Default::default()
                    })
                    .await?;
                Some(r.id)
            }
        };
        let staged =
            DockerStage::on_network(docker.clone(), created_network.clone(), nodes, redis, image)
                .await;
        if staged.is_err()
            && let Some(id) = &created_network
        {
            let _ = docker.remove_network(id).await;
        }
        staged
    }

    async fn on_network(
        docker: Docker,
        created_network: Option<String>,
        nodes: usize,
        redis: Option<String>,
        image: &str,
    ) -> anyhow::Result<DockerStage> {
        let probe = DockerBackend::new(
            docker.clone(),
            DockerConfig {
                network: PROJECT.to_owned(),
                ..DockerConfig::default()
            },
        );
        let gateway = probe.ensure_network().await?.gateway;
        let (redis_server, redis_url) = match redis {
            Some(url) => (None, url),
            None => {
                let gw = gateway.context("the bench network has no gateway")?;
                let server = RedisServer::start_bound(&[gw])?;
                let url = server.url();
                (Some(server), url)
            }
        };
        let node_redis = crate::backends::docker::node_redis_url(&redis_url, None, gateway)
            .context("no address for the nodes to reach Redis")?;

        let layers = generated_nodes(nodes)?;
        let presets = tempfile::tempdir()?;
        std::fs::write(
            presets.path().join(format!("{PRESET}.yaml")),
            preset_text(&layers),
        )?;
        let mut config = HostConfig::from_env(|_| None)?;
        config.presets_host_path = presets.path().to_path_buf();
        config.listen = "127.0.0.1:0".parse()?;
        config.redis_url = Some(redis_url);
        config.docker_network = PROJECT.to_owned();
        config.docker_image_name = image.to_owned();
        config.deploy_parallelism = config.deploy_parallelism.max(nodes);
        Ok(DockerStage {
            docker,
            probe,
            layers,
            presets,
            node_redis,
            config,
            created_network,
            _redis: redis_server,
        })
    }

    /// Removes the bench network if [`DockerStage::prepare`] created it.
    pub async fn finish(self) {
        if let Some(id) = &self.created_network {
            let _ = self.docker.remove_network(id).await;
        }
    }
}

/// Runs the Docker bench; see the module docs.
pub async fn run(bench: DockerBench, out: &mut dyn Write) -> anyhow::Result<DockerReport> {
    if bench.rounds == 0 {
        bail!("--rounds must be at least 1");
    }
    let stage = DockerStage::prepare(bench.nodes, bench.redis.clone(), &bench.image).await?;
    let result = run_on_stage(&bench, &stage, out).await;
    stage.finish().await;
    result
}

async fn run_on_stage(
    bench: &DockerBench,
    stage: &DockerStage,
    out: &mut dyn Write,
) -> anyhow::Result<DockerReport> {
    let DockerStage {
        docker,
        probe,
        layers,
        presets,
        node_redis,
        config,
        ..
    } = stage;
    let catalog = Catalog::builtin();
    let parsed = orchestrator_core::preset::PresetLibrary::new(presets.path()).load(PRESET)?;
    let resolved = Resolved::from_preset(&parsed, &BTreeMap::new(), &BTreeMap::new(), catalog)?;
    let plan = planner::plan(&[], &resolved.nodes, catalog, &PlanOptions::default())
        .map_err(|r| anyhow::anyhow!("{r}"))?;
    let waves = plan.waves.iter().filter(|w| !w.actions.is_empty()).count();
    let compose_path = presets.path().join("docker-compose.yml");
    std::fs::write(
        &compose_path,
        compose_file(&resolved.nodes, layers, probe, &bench.image, node_redis),
    )?;

    let limit = limit_waves(
        &plan,
        &resolved.nodes,
        layers,
        probe,
        &bench.image,
        node_redis,
    );
    let port = probe.config().node_port;
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(1))
        .build()?;
    remove_limit_containers(docker).await?;

    let server = Server::start(config.clone()).await?;
    let service = server.service().await.context("no control plane")?;
    let mut ours = Vec::new();
    let mut compose = Vec::new();
    let mut limits = Vec::new();
    let result: anyhow::Result<()> = async {
        for round in 1..=bench.rounds {
            let took = deploy_timed(&service, PRESET, Some(BackendType::Compose), round).await?;
            teardown(&service, round).await?;
            ours.push(took / 1000.0);

            let took = limit_round(docker, &http, &limit, port).await;
            remove_limit_containers(docker).await?;
            limits.push(took?);

            let start = tokio::time::Instant::now();
            docker_compose(&compose_path, &["up", "-d"])?;
            compose_healthy(docker, bench.nodes).await?;
            let took = start.elapsed().as_secs_f64();
            docker_compose(&compose_path, &["down", "-v", "--timeout", "10"])?;
            compose.push(took);
            writeln!(
                out,
                "round {round}: ours {:.2} s, limit {:.2} s, compose {took:.2} s",
                ours[ours.len() - 1],
                limits[limits.len() - 1]
            )?;
        }
        Ok(())
    }
    .await;
    if result.is_err() {
        let _ = service.teardown(TeardownRequest::default()).await;
        let _ = remove_limit_containers(docker).await;
        let _ = docker_compose(&compose_path, &["down", "-v", "--timeout", "5"]);
    }
    server.shutdown().await;
    result?;
    let (om, cm, lm) = (median(&ours), median(&compose), median(&limits));
    Ok(DockerReport {
        nodes: bench.nodes,
        waves,
        rounds: bench.rounds,
        image: bench.image.clone(),
        ours_s: ours,
        compose_s: compose,
        limit_s: limits,
        ours_median_s: om,
        compose_median_s: cm,
        limit_median_s: lm,
        ratio: om / cm,
        ratio_to_limit: om / lm,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ten_nodes_in_two_layers() {
        let nodes = generated_nodes(10).unwrap();
        assert_eq!(nodes.len(), 10);
        assert_eq!(
            nodes.iter().filter(|n| n.2 == Layer::AppFoundation).count(),
            5
        );
        assert!(nodes.iter().any(|n| n.2 == Layer::GameFoundation));
        assert!(generated_nodes(1).is_err());
        assert!(generated_nodes(10_000).is_err());
    }

    #[test]
    fn medians() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0]), 2.5);
    }
}

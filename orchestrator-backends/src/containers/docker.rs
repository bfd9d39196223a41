//! The standalone Docker backend (docs/COMPATIBILITY.md#docker-compose-backend, with the
//! fixes listed below), over the Docker Engine API with bollard.
//!
//! What it does differently from upstream:
//! - **Network**: nodes join one network named by [`DockerConfig::network`]
//!   (`bannou_default`). When it is missing we create it, labelled as ours; we never guess
//!   among other networks. Every container gets the network aliases `{appId}` and
//!   `bannou-{appId}`, so nodes reach each other at `http://{appId}:{node_port}`.
//! - **Names and labels** (docs/COMPATIBILITY.md#names-and-app-ids): the primary container
//!   is `bannou-{appId}`, replica `n >= 2` is `bannou-{appId}_{n}`; all carry
//!   [`managed_labels`], the node's extra labels, `bannou.replica`, and the Compose labels
//!   (`com.docker.compose.project`, `.service` = app-id, `.container-number`, `.oneoff`).
//! - **Environment** (docs/COMPATIBILITY.md#backend-injected-variables):
//!   [`docker_injected_environment`](orchestrator_core::ports::backend::docker_injected_environment)
//!   underneath `ORCHESTRATOR_LISTEN=0.0.0.0:{node_port}`,
//!   [`DockerConfig::extra_environment`] and the node's own environment (later wins).
//! - **Scale** runs N replica containers of a node (upstream refuses).
//! - **Restart** really restarts with the requested grace (D5): one replica after another
//!   for a graceful restart of several replicas, all at once otherwise.
//! - **Logs** are structured stdout/stderr lines with Docker's timestamps (D13).
//! - **Prune** and orphan detection use the real stop time `State.FinishedAt` (D12), and
//!   only ever touch containers, networks, volumes and images labelled
//!   `bannou.orchestrator-managed=true`.
//!
//! Failures to reach the engine are [`BackendError::Unavailable`]; engine errors on a valid
//! request are [`BackendError::Runtime`] with the engine's message.
//!
//! [`managed_labels`]: orchestrator_core::ports::backend::managed_labels
//!
//! Kept as one file: one adapter of the `ContainerBackend` port whose operations share the
//! engine client, names and labels; what it shares with Swarm is `engine.rs`.

pub mod logs;
pub mod model;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bollard::Docker;
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerSummary, EndpointSettings, HostConfig,
    NetworkingConfig, VolumeCreateRequest,
};
use bollard::query_parameters::{
    CreateContainerOptions, InspectContainerOptions, ListContainersOptions, RemoveContainerOptions,
    RestartContainerOptions, StartContainerOptions, StopContainerOptions,
};
use orchestrator_core::Timestamp;
use orchestrator_core::api::enums::{CleanTarget, ContainerStatusType};
use orchestrator_core::events::BackendType;
use orchestrator_core::names::AppId;
use orchestrator_core::ports::backend::{
    Availability, BackendError, BackendOperation, ContainerBackend, ContainerInfo,
    ContainerStatusReport, DeployedNode, InfrastructureInfo, LogLine, LogQuery, NodeDeployment,
    PruneReport, RestartOptions, RestartOutcome, ScaleResult, TeardownOptions, TeardownResult,
    is_infrastructure, labels,
};
use orchestrator_core::time::Clock;

pub use super::engine::{
    EnvironmentInputs, LISTEN_VARIABLE, NetworkInfo, SystemClock, connect, connect_negotiated,
    layered_environment, shared_labels,
};

use self::logs::{logs_options, read_lines, select};
use self::model::{
    aggregate_state, app_name, docker_restart_policy, env_list, exact_name_filter, map_state,
    parse_docker_time, replica_labels, replica_name, replica_of, short_id, valid_app_id,
};
use super::engine::{
    self, OurNetwork, check_max_replicas, is_status, map_err, of_app, seconds, some_or_not_found,
    workload_filters,
};
use super::mounts::NodeMounts;
use super::portainer::PortainerApi;

/// The network nodes join when nothing else is set (`ORCHESTRATOR_DOCKER_NETWORK`,
/// docs/COMPATIBILITY.md#configuration-variables).
pub const DEFAULT_NETWORK: &str = "bannou_default";

/// Settings of the Docker backend. `Default` gives upstream's defaults where
/// docs/COMPATIBILITY.md#configuration-variables has one (`bannou_default`, project
/// `bannou`, port 80) and mounts nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerConfig {
    /// Engine address (`unix:///var/run/docker.sock`, `tcp://…`); `None` uses bollard's
    /// local defaults, which honour `DOCKER_HOST`.
    pub docker_host: Option<String>,
    /// Network every node joins; created (labelled as ours) when missing
    /// (`ORCHESTRATOR_DOCKER_NETWORK`, default `bannou_default`).
    pub network: String,
    /// Value of the `com.docker.compose.project` label (`bannou`).
    pub compose_project: String,
    /// The control plane's app-id, for `BANNOU_MAPPING_SOURCE_APP_ID` and
    /// `BANNOU_HTTP_ENDPOINT` (docs/COMPATIBILITY.md#backend-injected-variables).
    pub orchestrator_app_id: AppId,
    /// Port nodes listen on inside their container (`ORCHESTRATOR_LISTEN=0.0.0.0:{port}`;
    /// `ORCHESTRATOR_DEFAULT_SERVICE_PORT`, default 80).
    pub node_port: u16,
    /// What every node's container mounts (logs volume, certificates, presets; see
    /// [`NodeMounts`]). A logs volume is created with our label when missing.
    pub mounts: NodeMounts,
    /// Extra `/etc/hosts` entries, Docker syntax `name:ip` (e.g. `bannou:172.18.0.1` when
    /// the control plane runs on the host, reachable at our network's gateway).
    pub extra_hosts: Vec<String>,
    /// Variables every node gets above the injected ones and below its own (e.g. the Redis
    /// address nodes can reach).
    pub extra_environment: BTreeMap<String, String>,
    /// Stop timeout when a redeploy replaces a node or a scale-down removes replicas
    /// (upstream: 10 s).
    pub replace_grace: Duration,
    /// Largest replica count `scale` and `deploy_node` accept.
    pub max_replicas: u32,
}

impl Default for DockerConfig {
    fn default() -> Self {
        DockerConfig {
            docker_host: None,
            network: DEFAULT_NETWORK.to_owned(),
            compose_project: "bannou".to_owned(),
            orchestrator_app_id: AppId::control_plane(),
            node_port: super::DEFAULT_NODE_PORT,
            mounts: NodeMounts::default(),
            extra_hosts: Vec::new(),
            extra_environment: BTreeMap::new(),
            replace_grace: Duration::from_secs(10),
            max_replicas: 64,
        }
    }
}

/// One container of a node, as listed.
#[derive(Debug, Clone)]
struct Replica {
    id: String,
    name: String,
    replica: u32,
    state: String,
    labels: HashMap<String, String>,
    image: String,
    created: Option<i64>,
}

impl Replica {
    fn from_summary(s: ContainerSummary) -> Self {
        let labels = s.labels.unwrap_or_default();
        Replica {
            id: s.id.unwrap_or_default(),
            name: s
                .names
                .and_then(|n| n.into_iter().next())
                .map(|n| n.trim_start_matches('/').to_owned())
                .unwrap_or_default(),
            replica: replica_of(&labels),
            state: s.state.map(|st| st.to_string()).unwrap_or_default(),
            labels,
            image: s.image.unwrap_or_default(),
            created: s.created,
        }
    }

    fn status(&self) -> ContainerStatusType {
        map_state(&self.state)
    }
}

/// The Docker backend. Cheap to share behind an `Arc`.
pub struct DockerBackend {
    docker: Docker,
    config: DockerConfig,
    clock: Arc<dyn Clock>,
    network: OurNetwork,
    /// Our restarts per container id (Docker counts only its restart policy's restarts).
    restarts: Mutex<HashMap<String, u32>>,
    /// Set when `docker` talks to Portainer's Docker proxy: the backend is then the
    /// Portainer backend (type and availability check), the same in every other respect.
    portainer: Option<PortainerApi>,
}

impl std::fmt::Debug for DockerBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerBackend")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl DockerBackend {
    /// A backend on an existing client.
    pub fn new(docker: Docker, config: DockerConfig) -> Self {
        DockerBackend {
            docker,
            network: OurNetwork::bridge(config.network.clone()),
            config,
            clock: Arc::new(SystemClock),
            restarts: Mutex::new(HashMap::new()),
            portainer: None,
        }
    }

    /// Makes this the Portainer backend: `docker` must be a [`super::portainer`] proxy
    /// client; `api` answers the availability check.
    pub(crate) fn through_portainer(mut self, api: PortainerApi) -> Self {
        self.portainer = Some(api);
        self
    }

    /// Connects to [`DockerConfig::docker_host`] and negotiates the API version. When the
    /// engine does not answer, the backend is still built (its
    /// [`ContainerBackend::check_availability`] says why it is unusable).
    pub async fn connect(config: DockerConfig) -> Result<Self, BackendError> {
        let docker = engine::connect_lenient(config.docker_host.as_deref()).await?;
        Ok(DockerBackend::new(docker, config))
    }

    /// Uses `clock` for "now" (orphan detection).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The bollard client.
    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    /// The settings.
    pub fn config(&self) -> &DockerConfig {
        &self.config
    }

    /// The environment a node's containers get:
    /// [`docker_injected_environment`](orchestrator_core::ports::backend::docker_injected_environment) under
    /// `ORCHESTRATOR_LISTEN=0.0.0.0:{node_port}`, [`DockerConfig::extra_environment`] and the
    /// node's environment (later wins).
    pub fn node_environment(&self, node: &NodeDeployment) -> BTreeMap<String, String> {
        layered_environment(node, engine::environment_inputs!(self.config))
    }

    /// Our network, if it exists.
    pub async fn network_info(&self) -> Result<Option<NetworkInfo>, BackendError> {
        self.network.info(&self.docker).await
    }

    /// Our network, created (a bridge labelled `bannou.orchestrator-managed=true` and
    /// `bannou.network={name}`) when missing. An existing network of that name is used as
    /// it is, whoever created it, and is then never pruned by us.
    pub async fn ensure_network(&self) -> Result<NetworkInfo, BackendError> {
        self.network.ensure(&self.docker).await
    }

    async fn ensure_logs_volume(&self) -> Result<(), BackendError> {
        let Some(name) = &self.config.mounts.logs_volume else {
            return Ok(());
        };
        match self.docker.inspect_volume(name).await {
            Ok(_) => Ok(()),
            Err(e) if is_status(&e, 404) => {
                let request = VolumeCreateRequest {
                    name: Some(name.clone()),
                    labels: Some(engine::shared_labels()),
                    ..Default::default()
                };
                self.docker
                    .create_volume(request)
                    .await
                    .map(drop)
                    .map_err(map_err)
            }
            Err(e) => Err(map_err(e)),
        }
    }

    /// Containers matching `filters` (none: every container), in any state.
    async fn list_filtered(
        &self,
        filters: Option<HashMap<String, Vec<String>>>,
    ) -> Result<Vec<Replica>, BackendError> {
        let options = ListContainersOptions {
            all: true,
            filters,
            ..Default::default()
        };
        let listed = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(map_err)?;
        Ok(listed.into_iter().map(Replica::from_summary).collect())
    }

    /// Containers matching every `label=…` filter, in any state.
    async fn list_labelled(&self, filters: Vec<String>) -> Result<Vec<Replica>, BackendError> {
        self.list_filtered(Some(HashMap::from([("label".to_owned(), filters)])))
            .await
    }

    /// Our containers of `app_id`, primary first.
    async fn find(&self, app_id: &AppId) -> Result<Vec<Replica>, BackendError> {
        let all = self
            .list_labelled(vec![engine::managed_filter_value()])
            .await?;
        let mut found = of_app(all, app_id, |r| {
            r.labels.get(labels::APP_ID).map(String::as_str)
        });
        found.sort_by_key(|r| (r.replica, r.name.clone()));
        Ok(found)
    }

    /// Our containers of `app_id`, or `NotFound`.
    async fn find_some(&self, app_id: &AppId) -> Result<Vec<Replica>, BackendError> {
        some_or_not_found(self.find(app_id).await?, app_id)
    }

    /// The container named exactly `name`, if any (ours or not).
    async fn by_name(&self, name: &str) -> Result<Option<Replica>, BackendError> {
        let filter = HashMap::from([("name".to_owned(), vec![exact_name_filter(name)])]);
        let listed = self.list_filtered(Some(filter)).await?;
        Ok(listed.into_iter().find(|r| r.name == name))
    }

    async fn inspect(&self, id: &str) -> Result<ContainerInspectResponse, BackendError> {
        self.docker
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
            .map_err(map_err)
    }

    /// Stops (when running) and removes a container; a container already gone is fine.
    async fn stop_and_remove(
        &self,
        id: &str,
        grace: Duration,
        volumes: bool,
    ) -> Result<(), BackendError> {
        let stop = StopContainerOptions {
            t: Some(seconds(grace)),
            signal: None,
        };
        match self.docker.stop_container(id, Some(stop)).await {
            Ok(()) => {}
            Err(e) if is_status(&e, 304) || is_status(&e, 404) => {}
            Err(e) => return Err(map_err(e)),
        }
        let remove = RemoveContainerOptions {
            force: true,
            v: volumes,
            link: false,
        };
        match self.docker.remove_container(id, Some(remove)).await {
            Ok(()) => Ok(()),
            Err(e) if is_status(&e, 404) => Ok(()),
            // Already being removed by the engine (e.g. an `AutoRemove` container).
            Err(e) if is_status(&e, 409) => Ok(()),
            Err(e) => Err(map_err(e)),
        }
    }

    /// The create body of replica `replica` of `node`.
    fn create_body(&self, node: &NodeDeployment, replica: u32) -> ContainerCreateBody {
        let mounts = self.config.mounts.mounts();
        let limits = node.resources.unwrap_or_default();
        let host_config = HostConfig {
            restart_policy: Some(docker_restart_policy(node.restart_policy)),
            network_mode: Some(self.config.network.clone()),
            mounts: (!mounts.is_empty()).then_some(mounts),
            extra_hosts: (!self.config.extra_hosts.is_empty())
                .then(|| self.config.extra_hosts.clone()),
            nano_cpus: limits.cpu_millis.map(|m| i64::from(m) * 1_000_000),
            memory: limits
                .memory_bytes
                .map(|b| i64::try_from(b).unwrap_or(i64::MAX)),
            ..Default::default()
        };
        let aliases = vec![
            node.app_id.to_string(),
            orchestrator_core::ports::backend::container_name(&node.app_id),
        ];
        let endpoint = EndpointSettings {
            aliases: Some(aliases),
            ..Default::default()
        };
        ContainerCreateBody {
            image: Some(node.image.clone()),
            env: Some(env_list(&self.node_environment(node))),
            labels: Some(replica_labels(
                &node.effective_labels(),
                &node.app_id,
                &self.config.compose_project,
                replica,
            )),
            host_config: Some(host_config),
            networking_config: Some(NetworkingConfig {
                endpoints_config: Some(HashMap::from([(self.config.network.clone(), endpoint)])),
            }),
            ..Default::default()
        }
    }

    /// Creates and starts one container; returns its id.
    async fn create_and_start(
        &self,
        name: &str,
        body: ContainerCreateBody,
    ) -> Result<String, BackendError> {
        let options = CreateContainerOptions {
            name: Some(name.to_owned()),
            ..Default::default()
        };
        let created = self
            .docker
            .create_container(Some(options), body)
            .await
            .map_err(map_err)?;
        self.docker
            .start_container(&created.id, None::<StartContainerOptions>)
            .await
            .map_err(map_err)?;
        Ok(created.id)
    }

    /// Fails with `Conflict` when `name` is held by a container that is not ours for
    /// `app_id`.
    async fn check_name_free(&self, app_id: &AppId, name: &str) -> Result<(), BackendError> {
        if let Some(other) = self.by_name(name).await? {
            let ours = other.labels.get(labels::MANAGED).map(String::as_str)
                == Some(labels::MANAGED_VALUE)
                && other
                    .labels
                    .get(labels::APP_ID)
                    .is_some_and(|a| app_id.matches(a));
            if !ours {
                return Err(BackendError::Conflict {
                    app_id: app_id.clone(),
                    reason: format!(
                        "container name {name} is taken by {} which the orchestrator did not \
                         create for this app-id; it is left alone",
                        short_id(&other.id)
                    ),
                });
            }
        }
        Ok(())
    }

    /// A node's spec rebuilt from its primary container, for new replicas.
    async fn template(&self, primary: &Replica) -> Result<ContainerCreateBody, BackendError> {
        let inspected = self.inspect(&primary.id).await?;
        let config = inspected.config.unwrap_or_default();
        let host = inspected.host_config.unwrap_or_default();
        let network = host
            .network_mode
            .clone()
            .unwrap_or_else(|| self.config.network.clone());
        let app_id = AppId::new(
            primary
                .labels
                .get(labels::APP_ID)
                .cloned()
                .unwrap_or_default(),
        );
        let endpoint = EndpointSettings {
            aliases: Some(vec![
                app_id.to_string(),
                orchestrator_core::ports::backend::container_name(&app_id),
            ]),
            ..Default::default()
        };
        Ok(ContainerCreateBody {
            image: config.image,
            env: config.env,
            cmd: config.cmd,
            entrypoint: config.entrypoint,
            labels: config.labels,
            host_config: Some(HostConfig {
                restart_policy: host.restart_policy,
                network_mode: Some(network.clone()),
                binds: host.binds,
                extra_hosts: host.extra_hosts,
                nano_cpus: host.nano_cpus,
                memory: host.memory,
                ..Default::default()
            }),
            networking_config: Some(NetworkingConfig {
                endpoints_config: Some(HashMap::from([(network, endpoint)])),
            }),
            ..Default::default()
        })
    }

    /// Adds replicas numbered `from..=to` cloned from `template`.
    async fn add_replicas(
        &self,
        app_id: &AppId,
        template: &ContainerCreateBody,
        numbers: impl IntoIterator<Item = u32>,
    ) -> Result<(), BackendError> {
        for n in numbers {
            let name = replica_name(app_id, n);
            self.check_name_free(app_id, &name).await?;
            let mut body = template.clone();
            let mut l = body.labels.take().unwrap_or_default();
            l.insert(model::REPLICA_LABEL.to_owned(), n.to_string());
            l.insert(model::COMPOSE_NUMBER.to_owned(), n.to_string());
            body.labels = Some(l);
            self.create_and_start(&name, body).await?;
        }
        Ok(())
    }

    fn check_replicas(&self, replicas: u32) -> Result<(), BackendError> {
        if replicas == 0 {
            return Err(BackendError::Unsupported {
                operation: BackendOperation::Scale,
                reason: "a node runs at least one replica on Docker; tear it down instead"
                    .to_owned(),
            });
        }
        check_max_replicas(replicas, self.config.max_replicas)
    }

    fn our_restarts(&self, id: &str) -> u32 {
        self.restarts
            .lock()
            .map(|m| m.get(id).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    fn count_restart(&self, id: &str) {
        if let Ok(mut m) = self.restarts.lock() {
            *m.entry(id.to_owned()).or_insert(0) += 1;
        }
    }

    /// The logs of one container as lines.
    async fn container_logs(
        &self,
        id: &str,
        query: &LogQuery,
    ) -> Result<Vec<LogLine>, BackendError> {
        let stream = self.docker.logs(id, Some(logs_options(query)));
        read_lines(stream, self.clock.now()).await
    }

    async fn prune_containers(&self, older_than: Option<Duration>, report: &mut PruneReport) {
        let listed = self.list_labelled(workload_filters()).await;
        let Some(all) = engine::listed_or_recorded(report, listed) else {
            return;
        };
        let now = self.clock.now();
        for r in all
            .into_iter()
            .filter(|r| r.status() == ContainerStatusType::Stopped)
        {
            // docs/COMPATIBILITY.md#clean-and-orphans with D12: the real stop time.
            let finished = match older_than {
                Some(_) => self.inspect(&r.id).await.ok().and_then(|i| {
                    i.state
                        .and_then(|s| s.finished_at)
                        .and_then(|f| parse_docker_time(&f))
                }),
                None => None,
            };
            if !engine::old_enough(finished, now, older_than) {
                continue;
            }
            let removed = self.stop_and_remove(&r.id, Duration::ZERO, true).await;
            engine::record_removal(report, short_id(&r.id).to_owned(), removed);
        }
    }

    fn unexpected_empty(app_id: &AppId) -> BackendError {
        BackendError::NotFound {
            app_id: app_id.clone(),
        }
    }
}

#[async_trait]
impl ContainerBackend for DockerBackend {
    fn backend_type(&self) -> BackendType {
        match self.portainer {
            Some(_) => BackendType::Portainer,
            None => BackendType::Compose,
        }
    }

    async fn check_availability(&self) -> Availability {
        if let Some(api) = &self.portainer {
            return api.availability(&self.docker).await;
        }
        if let Err(e) = self.docker.ping().await {
            return engine::unreachable(e);
        }
        match self.docker.version().await {
            Ok(v) => Availability::available(v.version),
            Err(e) => Availability::unavailable(format!("Docker API error: {e}")),
        }
    }

    async fn deploy_node(&self, node: &NodeDeployment) -> Result<DeployedNode, BackendError> {
        if !valid_app_id(&node.app_id) {
            return Err(BackendError::runtime(format!(
                "app-id '{}' cannot name a Docker container ([A-Za-z0-9][A-Za-z0-9_.-]*)",
                node.app_id
            )));
        }
        let replicas = node.replicas.max(1);
        self.check_replicas(replicas)?;
        engine::local_image(&self.docker, &node.image, "").await?;
        let primary_name = replica_name(&node.app_id, 1);
        self.check_name_free(&node.app_id, &primary_name).await?;
        self.ensure_network().await?;
        self.ensure_logs_volume().await?;

        // Replace: remove every container of ours with this app-id.
        let existing = self.find(&node.app_id).await?;
        let replaced = !existing.is_empty();
        for r in existing.iter().rev() {
            self.stop_and_remove(&r.id, self.config.replace_grace, false)
                .await?;
        }

        let id = self
            .create_and_start(&primary_name, self.create_body(node, 1))
            .await?;
        for n in 2..=replicas {
            let name = replica_name(&node.app_id, n);
            self.check_name_free(&node.app_id, &name).await?;
            self.create_and_start(&name, self.create_body(node, n))
                .await?;
        }
        Ok(DeployedNode {
            app_id: node.app_id.clone(),
            name: primary_name,
            message: format!(
                "Service {} deployed with container {}",
                node.service_name,
                short_id(&id)
            ),
            backend_id: id,
            replaced,
        })
    }

    async fn teardown(
        &self,
        app_id: &AppId,
        options: &TeardownOptions,
    ) -> Result<TeardownResult, BackendError> {
        let found = self.find_some(app_id).await?;
        let volumes = options.removes_volumes();
        let mut stopped = Vec::new();
        let mut removed_volumes = Vec::new();
        for r in found.iter().rev() {
            if volumes {
                // `v=true` removes anonymous volumes only (named ones are shared).
                if let Ok(i) = self.inspect(&r.id).await {
                    removed_volumes.extend(
                        i.mounts
                            .unwrap_or_default()
                            .into_iter()
                            .filter(|m| m.typ.as_deref() == Some("volume"))
                            .filter_map(|m| m.name)
                            .filter(|n| n.len() == 64 && n.chars().all(|c| c.is_ascii_hexdigit())),
                    );
                }
            }
            self.stop_and_remove(&r.id, options.effective_grace(), volumes)
                .await?;
            stopped.push(short_id(&r.id).to_owned());
        }
        if let Ok(mut m) = self.restarts.lock() {
            for r in &found {
                m.remove(&r.id);
            }
        }
        Ok(TeardownResult {
            app_id: app_id.clone(),
            stopped,
            removed_volumes,
        })
    }

    async fn scale(&self, app_id: &AppId, replicas: u32) -> Result<ScaleResult, BackendError> {
        let found = self.find_some(app_id).await?;
        self.check_replicas(replicas)?;
        let previous = u32::try_from(found.len()).unwrap_or(u32::MAX);
        if replicas > previous {
            let template = self.template(&found[0]).await?;
            let used: BTreeSet<u32> = found.iter().map(|r| r.replica).collect();
            let free: Vec<u32> = (1..)
                .filter(|n| !used.contains(n))
                .take(usize::try_from(replicas - previous).unwrap_or(0))
                .collect();
            self.add_replicas(app_id, &template, free).await?;
        } else {
            // Keep the lowest-numbered replicas (the primary first).
            let keep = usize::try_from(replicas).unwrap_or(usize::MAX);
            for r in found.iter().skip(keep).rev() {
                self.stop_and_remove(&r.id, self.config.replace_grace, false)
                    .await?;
            }
        }
        Ok(ScaleResult {
            previous_replicas: previous,
            current_replicas: replicas,
        })
    }

    async fn restart(
        &self,
        app_id: &AppId,
        options: &RestartOptions,
    ) -> Result<RestartOutcome, BackendError> {
        let found = self.find_some(app_id).await?;
        let t = seconds(options.effective_grace());
        let rolling = found.len() > 1
            && options.priority == orchestrator_core::api::enums::RestartPriority::Graceful;
        let restart_one = |id: String| async move {
            let opts = RestartContainerOptions {
                t: Some(t),
                signal: None,
            };
            self.docker
                .restart_container(&id, Some(opts))
                .await
                .map_err(map_err)?;
            self.count_restart(&id);
            Ok::<(), BackendError>(())
        };
        if rolling {
            for r in &found {
                restart_one(r.id.clone()).await?;
            }
        } else {
            let results =
                futures::future::join_all(found.iter().map(|r| restart_one(r.id.clone()))).await;
            results.into_iter().collect::<Result<Vec<()>, _>>()?;
        }
        Ok(RestartOutcome {
            current_instances: u32::try_from(found.len()).unwrap_or(u32::MAX),
            strategy: engine::restart_strategy(rolling),
        })
    }

    async fn status(&self, app_id: &AppId) -> Result<ContainerStatusReport, BackendError> {
        let found = self.find_some(app_id).await?;
        let mut states = Vec::new();
        let mut started_at = None;
        let mut stopped_at = None;
        let mut restart_count = 0u32;
        let mut labels = BTreeMap::new();
        for (i, r) in found.iter().enumerate() {
            let inspected = match self.inspect(&r.id).await {
                Ok(x) => x,
                // Removed between list and inspect: not part of the node any more.
                Err(BackendError::Runtime { message, .. }) if message.contains("(404)") => continue,
                Err(e) => return Err(e),
            };
            let state = inspected.state.unwrap_or_default();
            let mapped = state
                .status
                .map(|s| map_state(s.as_ref()))
                .unwrap_or(ContainerStatusType::Unhealthy);
            states.push(mapped);
            let started = state.started_at.as_deref().and_then(parse_docker_time);
            started_at = started_at.max(started);
            if mapped == ContainerStatusType::Stopped {
                let finished = state.finished_at.as_deref().and_then(parse_docker_time);
                stopped_at = stopped_at.max(finished);
            }
            let docker_restarts = inspected
                .restart_count
                .and_then(|c| u32::try_from(c).ok())
                .unwrap_or(0);
            restart_count = restart_count
                .saturating_add(docker_restarts)
                .saturating_add(self.our_restarts(&r.id));
            if i == 0 {
                labels = r.labels.clone().into_iter().collect();
            }
        }
        if states.is_empty() {
            return Err(Self::unexpected_empty(app_id));
        }
        let status = aggregate_state(&states);
        let running = states
            .iter()
            .filter(|s| **s == ContainerStatusType::Running)
            .count();
        Ok(ContainerStatusReport {
            app_id: app_id.clone(),
            status,
            instances: u32::try_from(running).unwrap_or(u32::MAX),
            desired_replicas: u32::try_from(states.len()).unwrap_or(u32::MAX),
            started_at,
            stopped_at: (status == ContainerStatusType::Stopped)
                .then_some(stopped_at)
                .flatten(),
            restart_count,
            labels,
        })
    }

    async fn list(&self) -> Result<Vec<ContainerInfo>, BackendError> {
        let all = self
            .list_labelled(vec![engine::managed_filter_value()])
            .await?;
        let mut groups: BTreeMap<String, Vec<Replica>> = BTreeMap::new();
        for r in all {
            let app = app_name(&r.labels, std::slice::from_ref(&r.name), &r.id);
            groups.entry(app).or_default().push(r);
        }
        let mut out = Vec::with_capacity(groups.len());
        for (app, mut replicas) in groups {
            replicas.sort_by_key(|r| (r.replica, r.name.clone()));
            let states: Vec<ContainerStatusType> = replicas.iter().map(Replica::status).collect();
            let status = aggregate_state(&states);
            let mut stopped_at = None;
            if status == ContainerStatusType::Stopped {
                for r in &replicas {
                    if let Ok(i) = self.inspect(&r.id).await {
                        let f = i
                            .state
                            .and_then(|s| s.finished_at)
                            .and_then(|f| parse_docker_time(&f));
                        stopped_at = stopped_at.max(f);
                    }
                }
            }
            let primary = &replicas[0];
            out.push(ContainerInfo {
                app_id: AppId::new(app),
                service_name: primary
                    .labels
                    .get(labels::SERVICE)
                    .cloned()
                    .unwrap_or_default(),
                name: primary.name.clone(),
                backend_id: primary.id.clone(),
                image: primary.image.clone(),
                status,
                instances: u32::try_from(
                    states
                        .iter()
                        .filter(|s| **s == ContainerStatusType::Running)
                        .count(),
                )
                .unwrap_or(u32::MAX),
                created_at: primary
                    .created
                    .map(|s| Timestamp::from_unix_millis(s.saturating_mul(1000))),
                stopped_at,
                labels: primary.labels.clone().into_iter().collect(),
            });
        }
        Ok(out)
    }

    async fn logs(&self, app_id: &AppId, query: &LogQuery) -> Result<Vec<LogLine>, BackendError> {
        let found = self.find_some(app_id).await?;
        let mut lines = Vec::new();
        for r in &found {
            lines.extend(self.container_logs(&r.id, query).await?);
        }
        Ok(select(lines, query))
    }

    async fn list_infrastructure(&self) -> Result<Vec<InfrastructureInfo>, BackendError> {
        Ok(self
            .list_filtered(None)
            .await?
            .into_iter()
            .filter(|r| is_infrastructure(&r.name) || is_infrastructure(&r.image))
            .map(|r| InfrastructureInfo {
                name: app_name(&r.labels, std::slice::from_ref(&r.name), &r.id),
                image: r.image.clone(),
                status: r.status(),
                backend_id: r.id.clone(),
            })
            .collect())
    }

    async fn prune(
        &self,
        targets: &BTreeSet<CleanTarget>,
        older_than: Option<Duration>,
    ) -> Result<PruneReport, BackendError> {
        let containers =
            async |report: &mut PruneReport| self.prune_containers(older_than, report).await;
        engine::prune(&self.docker, targets, containers).await
    }
}

#[cfg(test)]
mod tests;

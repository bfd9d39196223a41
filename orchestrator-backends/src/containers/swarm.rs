//! The Docker Swarm backend (docs/COMPATIBILITY.md#swarm-backend, with the fixes listed
//! below), over the Docker Engine services API with bollard. Each node is one replicated
//! Swarm service.
//!
//! What it does differently from upstream:
//! - **Status from real tasks**: upstream's task listing is a stub, so every service
//!   reports stopped. We list the service's tasks, take the newest task of each slot as
//!   current (older ones are Swarm's history), and map their states
//!   ([`model::task_status`]); `started_at` is when the newest running task started.
//! - **Network**: services attach to an overlay network of ours,
//!   [`SwarmConfig::network`] (`bannou_swarm`), created attachable and labelled
//!   `bannou.orchestrator-managed=true` when missing, with the aliases `{appId}` and
//!   `bannou-{appId}` (nodes reach each other at `http://{appId}:{node_port}`, as on
//!   standalone Docker). An existing network of that name must be an overlay network.
//!   Unlike our standalone bridge, the overlay's gateway is not this host: tasks reach
//!   the host (a Redis or control plane running there) through `docker_gwbridge`, at
//!   that bridge's gateway address.
//! - **Names and labels** (docs/COMPATIBILITY.md#names-and-app-ids): service
//!   `bannou-{serviceName}-{appId}` labelled with the node's labels and [`labels`]
//!   (`bannou.app-id`, `bannou.service`, `bannou.orchestrator-managed=true`); only services
//!   with the managed label are ever found, listed, changed or pruned.
//! - **Environment**: the same layering as the standalone backend
//!   ([`layered_environment`]: the Docker variables of
//!   docs/COMPATIBILITY.md#backend-injected-variables, so nodes on Swarm also import the
//!   control plane's mappings; upstream's junk `{SERVICENAME}_SERVICE_ENABLED` is not
//!   added).
//! - **Mounts**: the standalone backend's ([`NodeMounts`]: logs volume, certificates
//!   read-only); upstream's Swarm backend mounts nothing.
//! - **Local images**: with [`SwarmConfig::pin_local_image`] (the default) the image must
//!   exist on this engine and the service runs it by id (`sha256:…`): Swarm then neither
//!   asks a registry nor tries to pull (our engines cannot). The name the caller gave is kept
//!   in the `bannou.image` label and shown by `list`. Off, the name is passed on and every
//!   Swarm node pulls it.
//! - **Redeploy** updates our service in place (a rolling update with fresh tasks) or, when
//!   the service name changes, replaces it; a name held by a service that is not ours for
//!   this app-id is a conflict.
//! - **Scale** updates the replica count (0 is allowed: Swarm keeps the service).
//! - **Restart** (D5) forces an update: every task is replaced, one at a time for a
//!   graceful restart (rolling), all at once for an immediate or forced one, with the
//!   requested stop grace. The restart count is the spec's `ForceUpdate` counter above its
//!   value at deploy, plus the tasks Swarm restarted after they ended on their own.
//! - **Logs** are the service's logs (every task), demultiplexed into stdout/stderr lines
//!   with the engine's timestamps (D13), by the standalone backend's log reader.
//! - **Teardown** removes the service and waits (bounded) until this engine has no
//!   container of it left, so our network can be pruned right after.
//! - **Prune** removes our services whose tasks have all stopped (for longer than the
//!   threshold), and prunes networks, volumes and images limited to our labels.
//!
//! The service's own stop grace period ([`SwarmConfig::stop_grace`] at deploy, or the last
//! restart's) applies on teardown: changing it would replace every task first.
//!
//! Kept as one file: one adapter of the `ContainerBackend` port whose operations share the
//! engine client and names; the pure parts are `model`.

pub mod model;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bollard::Docker;
use bollard::errors::Error as DockerError;
use bollard::models::{LocalNodeState, Service, ServiceSpec, SwarmInfo, Task};
use bollard::query_parameters::{
    InspectServiceOptions, ListContainersOptions, ListServicesOptions, ListTasksOptions,
    UpdateServiceOptions,
};
use orchestrator_core::Timestamp;
use orchestrator_core::api::enums::{CleanTarget, RestartPriority};
use orchestrator_core::events::BackendType;
use orchestrator_core::names::AppId;
use orchestrator_core::ports::backend::{
    Availability, BackendError, BackendOperation, ContainerBackend, ContainerInfo,
    ContainerStatusReport, DeployedNode, InfrastructureInfo, LogLine, LogQuery, NodeDeployment,
    PruneReport, RestartOptions, RestartOutcome, ScaleResult, TeardownOptions, TeardownResult,
    is_infrastructure, labels, workload_name,
};
use orchestrator_core::time::Clock;

use self::model::{
    MAX_SERVICE_NAME, SWARM_SERVICE_ID_LABEL, SpecInputs, TaskSummary, forced_restarts, nanos,
    replicated, service_spec, shown_image, spec_replicas, summarise, swarm_hosts, update_config,
};
use super::docker::logs::{logs_options, read_lines, select};
use super::docker::model::{parse_docker_time, short_id, valid_app_id};
use super::engine::{
    self, NetworkInfo, OurNetwork, SystemClock, check_max_replicas, is_status, layered_environment,
    map_err, of_app, some_or_not_found, workload_filters,
};
use super::mounts::NodeMounts;

/// Settings of the Swarm backend. `Default` gives network `bannou_swarm`, port 80, a 10 s
/// stop grace (upstream's stop timeout) and pinned local images.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwarmConfig {
    /// Engine address of a Swarm manager (`unix:///var/run/docker.sock`, `tcp://…`);
    /// `None` uses bollard's local defaults, which honour `DOCKER_HOST`.
    pub docker_host: Option<String>,
    /// Overlay network every node joins; created (attachable, labelled as ours) when
    /// missing.
    pub network: String,
    /// The control plane's app-id, for `BANNOU_MAPPING_SOURCE_APP_ID` and
    /// `BANNOU_HTTP_ENDPOINT` (docs/COMPATIBILITY.md#backend-injected-variables).
    pub orchestrator_app_id: AppId,
    /// Port nodes listen on inside their container (`ORCHESTRATOR_LISTEN=0.0.0.0:{port}`).
    pub node_port: u16,
    /// What every task's container mounts, as on standalone Docker ([`NodeMounts`]): bind
    /// sources must exist on every Swarm node; a logs volume is created on each node, with
    /// our label, when missing.
    pub mounts: NodeMounts,
    /// Extra `/etc/hosts` entries, Docker syntax `name:ip` (written in Swarm's `ip name`).
    pub extra_hosts: Vec<String>,
    /// Variables every node gets above the injected ones and below its own (e.g. the Redis
    /// address nodes can reach).
    pub extra_environment: BTreeMap<String, String>,
    /// Stop grace period of deployed tasks (until a restart sets another).
    pub stop_grace: Duration,
    /// Largest replica count `scale` and `deploy_node` accept.
    pub max_replicas: u32,
    /// Run images by their local id (they must exist on this engine; nothing is pulled);
    /// when false the image name is passed to Swarm as given.
    pub pin_local_image: bool,
    /// Longest a teardown waits for this engine's containers of the service to go.
    pub teardown_wait: Duration,
}

impl Default for SwarmConfig {
    fn default() -> Self {
        SwarmConfig {
            docker_host: None,
            network: "bannou_swarm".to_owned(),
            orchestrator_app_id: AppId::control_plane(),
            node_port: super::DEFAULT_NODE_PORT,
            mounts: NodeMounts::default(),
            extra_hosts: Vec::new(),
            extra_environment: BTreeMap::new(),
            stop_grace: Duration::from_secs(10),
            max_replicas: 64,
            pin_local_image: true,
            teardown_wait: Duration::from_secs(30),
        }
    }
}

/// The Swarm backend. Cheap to share behind an `Arc`.
pub struct SwarmBackend {
    docker: Docker,
    config: SwarmConfig,
    clock: Arc<dyn Clock>,
    network: OurNetwork,
}

impl std::fmt::Debug for SwarmBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SwarmBackend")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Polling interval while waiting for the engine.
const POLL: Duration = Duration::from_millis(200);
/// Swarm's answer to an update at a stale version.
const OUT_OF_SEQUENCE: &str = "update out of sequence";
/// Tries of an update that keeps meeting a newer version.
const UPDATE_ATTEMPTS: u32 = 10;

impl SwarmBackend {
    /// A backend on an existing client.
    pub fn new(docker: Docker, config: SwarmConfig) -> Self {
        SwarmBackend {
            docker,
            network: OurNetwork::overlay(config.network.clone()),
            config,
            clock: Arc::new(SystemClock),
        }
    }

    /// Connects to [`SwarmConfig::docker_host`] and negotiates the API version. When the
    /// engine does not answer, the backend is still built (its
    /// [`ContainerBackend::check_availability`] says why it is unusable).
    pub async fn connect(config: SwarmConfig) -> Result<Self, BackendError> {
        let docker = engine::connect_lenient(config.docker_host.as_deref()).await?;
        Ok(SwarmBackend::new(docker, config))
    }

    /// Uses `clock` for "now" (prune thresholds, undated log lines).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The bollard client.
    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    /// The settings.
    pub fn config(&self) -> &SwarmConfig {
        &self.config
    }

    /// The environment a node's tasks get (see [`layered_environment`]).
    pub fn node_environment(&self, node: &NodeDeployment) -> BTreeMap<String, String> {
        layered_environment(node, engine::environment_inputs!(self.config))
    }

    /// The engine's Swarm state (`docker info`).
    pub async fn swarm_info(&self) -> Result<SwarmInfo, BackendError> {
        let info = self.docker.info().await.map_err(map_err)?;
        Ok(info.swarm.unwrap_or_default())
    }

    /// Our network, if it exists.
    pub async fn network_info(&self) -> Result<Option<NetworkInfo>, BackendError> {
        self.network.info(&self.docker).await
    }

    /// Our overlay network, created (attachable, labelled `bannou.orchestrator-managed=true`
    /// and `bannou.network={name}`) when missing. An existing overlay network of that name
    /// is used as it is, whoever created it (and is then never pruned by us); a network of
    /// another driver is an error.
    pub async fn ensure_network(&self) -> Result<NetworkInfo, BackendError> {
        self.network.ensure(&self.docker).await
    }

    /// Services matching every `label=…` filter (checked again here: only services that
    /// really carry our managed label are returned).
    async fn list_labelled(&self, filters: Vec<String>) -> Result<Vec<Service>, BackendError> {
        let options = ListServicesOptions {
            filters: Some(HashMap::from([("label".to_owned(), filters)])),
            ..Default::default()
        };
        let listed = self
            .docker
            .list_services(Some(options))
            .await
            .map_err(map_err)?;
        Ok(listed.into_iter().filter(is_ours).collect())
    }

    /// Our services of `app_id`, by name.
    async fn find(&self, app_id: &AppId) -> Result<Vec<Service>, BackendError> {
        let all = self
            .list_labelled(vec![engine::managed_filter_value()])
            .await?;
        let mut found = of_app(all, app_id, |s| label(s, labels::APP_ID));
        found.sort_by_key(|s| service_name(s).to_owned());
        Ok(found)
    }

    /// Our services of `app_id`, or `NotFound`.
    async fn find_some(&self, app_id: &AppId) -> Result<Vec<Service>, BackendError> {
        some_or_not_found(self.find(app_id).await?, app_id)
    }

    /// The service named exactly `name`, if any (ours or not).
    async fn by_name(&self, name: &str) -> Result<Option<Service>, BackendError> {
        match self
            .docker
            .inspect_service(name, None::<InspectServiceOptions>)
            .await
        {
            // Inspect also matches id prefixes: insist on the name.
            Ok(s) if service_name(&s) == name => Ok(Some(s)),
            Ok(_) => Ok(None),
            Err(e) if is_status(&e, 404) => Ok(None),
            Err(e) => Err(map_err(e)),
        }
    }

    /// The tasks of `services` (by id), all in one request.
    async fn tasks_of(&self, services: &[&Service]) -> Result<Vec<Task>, BackendError> {
        let ids: Vec<String> = services.iter().filter_map(|s| s.id.clone()).collect();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let options = ListTasksOptions {
            filters: Some(HashMap::from([("service".to_owned(), ids)])),
        };
        self.docker.list_tasks(Some(options)).await.map_err(map_err)
    }

    /// The tasks of one service, with their state summarised.
    async fn summary(&self, service: &Service) -> Result<(Vec<Task>, TaskSummary), BackendError> {
        let tasks = self.tasks_of(&[service]).await?;
        let summary = summarise_service(service, &tasks);
        Ok((tasks, summary))
    }

    /// The ids of the running current tasks of `app_id`'s service (for tests and
    /// diagnostics: a restart replaces them).
    pub async fn running_task_ids(&self, app_id: &AppId) -> Result<Vec<String>, BackendError> {
        let found = self.find_some(app_id).await?;
        let tasks = self.tasks_of(&[&found[0]]).await?;
        let mut ids = model::running_task_ids(&tasks);
        ids.sort();
        Ok(ids)
    }

    /// The image reference a service runs for `image`: the local image id when pinning
    /// (the image must exist here), else `image` itself.
    async fn resolve_image(&self, image: &str) -> Result<String, BackendError> {
        if !self.config.pin_local_image {
            return Ok(image.to_owned());
        }
        let hint = ", or turn off local image pinning to let Swarm pull it";
        let found = engine::local_image(&self.docker, image, hint).await?;
        found
            .id
            .ok_or_else(|| BackendError::runtime(format!("Docker image '{image}' has no id")))
    }

    fn check_replicas(&self, replicas: u32) -> Result<(), BackendError> {
        check_max_replicas(replicas, self.config.max_replicas)
    }

    /// Replaces the spec of service `id` with `change(current spec)`, at the version just
    /// read; Swarm bumps a service's version on its own (e.g. while allocating a new one),
    /// so an "update out of sequence" is retried on a fresh read. Returns the spec it
    /// changed.
    async fn update_with<F>(&self, id: &str, change: F) -> Result<ServiceSpec, BackendError>
    where
        F: Fn(&ServiceSpec) -> ServiceSpec,
    {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let current = self
                .docker
                .inspect_service(id, None::<InspectServiceOptions>)
                .await
                .map_err(map_err)?;
            let base = current.spec.clone().unwrap_or_default();
            let version = current
                .version
                .as_ref()
                .and_then(|v| v.index)
                .and_then(|v| i32::try_from(v).ok())
                .unwrap_or(0);
            let options = UpdateServiceOptions {
                version,
                ..Default::default()
            };
            match self
                .docker
                .update_service(id, change(&base), options, None)
                .await
            {
                Ok(response) => {
                    for w in response.warnings.unwrap_or_default() {
                        tracing::warn!(service = %service_name(&current), "swarm: {w}");
                    }
                    return Ok(base);
                }
                Err(DockerError::DockerResponseServerError { message, .. })
                    if message.contains(OUT_OF_SEQUENCE) && attempt < UPDATE_ATTEMPTS =>
                {
                    tokio::time::sleep(POLL).await;
                }
                Err(e) => return Err(map_err(e)),
            }
        }
    }

    /// Removes a service (gone already is fine) and waits, bounded by
    /// [`SwarmConfig::teardown_wait`], until this engine has no container of it.
    async fn remove(&self, service: &Service) -> Result<(), BackendError> {
        let id = service.id.clone().unwrap_or_default();
        match self.docker.delete_service(&id).await {
            Ok(()) => {}
            Err(e) if is_status(&e, 404) => return Ok(()),
            Err(e) => return Err(map_err(e)),
        }
        let attempts = self.config.teardown_wait.as_millis() / POLL.as_millis();
        for _ in 0..attempts {
            let options = ListContainersOptions {
                all: true,
                filters: Some(HashMap::from([(
                    "label".to_owned(),
                    vec![format!("{SWARM_SERVICE_ID_LABEL}={id}")],
                )])),
                ..Default::default()
            };
            match self.docker.list_containers(Some(options)).await {
                Ok(left) if left.is_empty() => return Ok(()),
                Ok(_) => tokio::time::sleep(POLL).await,
                Err(e) => return Err(map_err(e)),
            }
        }
        tracing::warn!(
            service = %service_name(service),
            "swarm: containers of the removed service are still shutting down"
        );
        Ok(())
    }

    async fn prune_services(&self, older_than: Option<Duration>, report: &mut PruneReport) {
        let listed = self.list_labelled(workload_filters()).await;
        let Some(all) = engine::listed_or_recorded(report, listed) else {
            return;
        };
        let refs: Vec<&Service> = all.iter().collect();
        let listed = self.tasks_of(&refs).await;
        let Some(tasks) = engine::listed_or_recorded(report, listed) else {
            return;
        };
        let now = self.clock.now();
        for service in &all {
            let summary = summarise_service(service, &tasks_for(service, &tasks));
            // Ended for good (or scaled to zero): nothing runs or will run.
            if !(summary.ended || summary.running == 0 && summary.desired == 0) {
                continue;
            }
            let stopped = summary.stopped_at.or_else(|| updated_at(service));
            if !engine::old_enough(stopped, now, older_than) {
                continue;
            }
            let id = short_id(service.id.as_deref().unwrap_or_default()).to_owned();
            engine::record_removal(report, id, self.remove(service).await);
        }
    }
}

/// True when a service carries our managed label.
fn is_ours(service: &Service) -> bool {
    label(service, labels::MANAGED).is_some_and(|v| v.eq_ignore_ascii_case(labels::MANAGED_VALUE))
}

fn label<'a>(service: &'a Service, key: &str) -> Option<&'a str> {
    service
        .spec
        .as_ref()
        .and_then(|s| s.labels.as_ref())
        .and_then(|l| l.get(key))
        .map(String::as_str)
}

fn service_name(service: &Service) -> &str {
    service
        .spec
        .as_ref()
        .and_then(|s| s.name.as_deref())
        .unwrap_or_default()
}

fn service_labels(service: &Service) -> BTreeMap<String, String> {
    service
        .spec
        .as_ref()
        .and_then(|s| s.labels.clone())
        .unwrap_or_default()
        .into_iter()
        .collect()
}

fn updated_at(service: &Service) -> Option<Timestamp> {
    service.updated_at.as_deref().and_then(parse_docker_time)
}

fn tasks_for(service: &Service, tasks: &[Task]) -> Vec<Task> {
    tasks
        .iter()
        .filter(|t| t.service_id.is_some() && t.service_id == service.id)
        .cloned()
        .collect()
}

fn summarise_service(service: &Service, tasks: &[Task]) -> TaskSummary {
    let replicas = service.spec.as_ref().map_or(Some(1), spec_replicas);
    summarise(tasks, replicas)
}

#[async_trait]
impl ContainerBackend for SwarmBackend {
    fn backend_type(&self) -> BackendType {
        BackendType::Swarm
    }

    async fn check_availability(&self) -> Availability {
        let info = match self.docker.info().await {
            Ok(i) => i,
            Err(e) => return engine::unreachable(e),
        };
        let swarm = info.swarm.unwrap_or_default();
        let state = swarm.local_node_state.unwrap_or(LocalNodeState::INACTIVE);
        if state != LocalNodeState::ACTIVE {
            let mut reason = format!("Swarm mode is not active on this engine ({state})");
            if let Some(e) = swarm.error.filter(|e| !e.is_empty()) {
                reason.push_str(&format!(": {e}"));
            }
            return Availability::unavailable(reason);
        }
        let mut availability = Availability::available(info.server_version);
        if swarm.control_available != Some(true) {
            availability.reason = Some("Swarm worker node (limited functionality)".to_owned());
        }
        availability
    }

    async fn deploy_node(&self, node: &NodeDeployment) -> Result<DeployedNode, BackendError> {
        let name = workload_name(&node.service_name, &node.app_id);
        if !valid_app_id(&node.app_id)
            || !valid_app_id(&AppId::new(name.clone()))
            || name.len() > MAX_SERVICE_NAME
        {
            return Err(BackendError::runtime(format!(
                "service name '{name}' (bannou-{{serviceName}}-{{appId}}) is not a valid \
                     Swarm service name ([A-Za-z0-9][A-Za-z0-9_.-]*, at most \
                     {MAX_SERVICE_NAME} characters)"
            )));
        }
        let replicas = node.replicas.max(1);
        self.check_replicas(replicas)?;
        let image = self.resolve_image(&node.image).await?;

        // A name held by anything but our service for this app-id is left alone.
        let same_name = self.by_name(&name).await?;
        if let Some(other) = &same_name
            && !(is_ours(other)
                && label(other, labels::APP_ID).is_some_and(|a| node.app_id.matches(a)))
        {
            return Err(BackendError::Conflict {
                app_id: node.app_id.clone(),
                reason: format!(
                    "service name {name} is taken by service {} which the orchestrator did not \
                     create for this app-id; it is left alone",
                    short_id(other.id.as_deref().unwrap_or_default())
                ),
            });
        }
        let network = self.ensure_network().await?;
        let existing = self.find(&node.app_id).await?;
        let replaced = !existing.is_empty();
        // Our services of this app-id under another name (another serviceName) go.
        for s in existing.iter().filter(|s| service_name(s) != name) {
            self.remove(s).await?;
        }

        let environment = self.node_environment(node);
        let hosts = swarm_hosts(&self.config.extra_hosts);
        let mounts = self.config.mounts.mounts();
        let spec_with = |force_update: u64| {
            service_spec(
                node,
                &SpecInputs {
                    name: &name,
                    image: &image,
                    environment: &environment,
                    network: &network.id,
                    hosts: &hosts,
                    mounts: &mounts,
                    stop_grace: self.config.stop_grace,
                    replicas,
                    force_update,
                },
            )
        };
        let id = match &same_name {
            // In place: a rolling update to fresh tasks (ForceUpdate moved on).
            Some(current) => {
                let id = current.id.clone().unwrap_or_default();
                self.update_with(&id, |base| {
                    let forced = base
                        .task_template
                        .as_ref()
                        .and_then(|t| t.force_update)
                        .unwrap_or(0);
                    spec_with(forced + 1)
                })
                .await?;
                id
            }
            None => {
                let created = self
                    .docker
                    .create_service(spec_with(0), None)
                    .await
                    .map_err(map_err)?;
                for w in created.warnings.unwrap_or_default() {
                    tracing::warn!(service = %name, "swarm: {w}");
                }
                created.id.unwrap_or_default()
            }
        };
        Ok(DeployedNode {
            app_id: node.app_id.clone(),
            message: format!(
                "Service {} deployed as Swarm service {} ({})",
                node.service_name,
                name,
                short_id(&id)
            ),
            name,
            backend_id: id,
            replaced,
        })
    }

    async fn teardown(
        &self,
        app_id: &AppId,
        _options: &TeardownOptions,
    ) -> Result<TeardownResult, BackendError> {
        let found = self.find_some(app_id).await?;
        let mut stopped = Vec::new();
        for s in &found {
            self.remove(s).await?;
            stopped.push(short_id(s.id.as_deref().unwrap_or_default()).to_owned());
        }
        Ok(TeardownResult {
            app_id: app_id.clone(),
            stopped,
            removed_volumes: Vec::new(),
        })
    }

    async fn restart(
        &self,
        app_id: &AppId,
        options: &RestartOptions,
    ) -> Result<RestartOutcome, BackendError> {
        let id = self.find_some(app_id).await?[0]
            .id
            .clone()
            .unwrap_or_default();
        let rolling = options.priority == RestartPriority::Graceful;
        let grace = nanos(options.effective_grace());
        let base = self
            .update_with(&id, |base| {
                let mut spec = base.clone();
                let template = spec.task_template.get_or_insert_with(Default::default);
                template.force_update = Some(template.force_update.unwrap_or(0) + 1);
                template
                    .container_spec
                    .get_or_insert_with(Default::default)
                    .stop_grace_period = Some(grace);
                spec.update_config = Some(update_config(if rolling { 1 } else { 0 }));
                spec
            })
            .await?;
        let replicas = spec_replicas(&base).unwrap_or(1);
        Ok(RestartOutcome {
            current_instances: replicas,
            strategy: engine::restart_strategy(rolling),
        })
    }

    async fn scale(&self, app_id: &AppId, replicas: u32) -> Result<ScaleResult, BackendError> {
        let found = self.find_some(app_id).await?;
        self.check_replicas(replicas)?;
        let service = &found[0];
        let id = service.id.clone().unwrap_or_default();
        if service.spec.as_ref().and_then(spec_replicas).is_none() {
            return Err(BackendError::Unsupported {
                operation: BackendOperation::Scale,
                reason: format!(
                    "service {} is not a replicated service",
                    service_name(service)
                ),
            });
        }
        let base = self
            .update_with(&id, |base| {
                let mut spec = base.clone();
                spec.mode = Some(replicated(replicas));
                spec
            })
            .await?;
        Ok(ScaleResult {
            previous_replicas: spec_replicas(&base).unwrap_or(1),
            current_replicas: replicas,
        })
    }

    async fn status(&self, app_id: &AppId) -> Result<ContainerStatusReport, BackendError> {
        let found = self.find_some(app_id).await?;
        let service = &found[0];
        let (_, summary) = self.summary(service).await?;
        let spec = service.spec.clone().unwrap_or_default();
        if let Some(e) = &summary.error {
            tracing::debug!(app_id = %app_id, "swarm task error: {e}");
        }
        Ok(ContainerStatusReport {
            app_id: app_id.clone(),
            status: summary.status,
            instances: summary.running,
            desired_replicas: summary.desired,
            started_at: summary.started_at,
            stopped_at: summary.stopped_at,
            restart_count: forced_restarts(&spec).saturating_add(summary.crashes),
            labels: service_labels(service),
        })
    }

    async fn list(&self) -> Result<Vec<ContainerInfo>, BackendError> {
        let all = self
            .list_labelled(vec![engine::managed_filter_value()])
            .await?;
        let refs: Vec<&Service> = all.iter().collect();
        let tasks = self.tasks_of(&refs).await?;
        let mut out: Vec<ContainerInfo> = all
            .iter()
            .map(|s| {
                let summary = summarise_service(s, &tasks_for(s, &tasks));
                let name = service_name(s).to_owned();
                let id = s.id.clone().unwrap_or_default();
                ContainerInfo {
                    app_id: AppId::new(
                        label(s, labels::APP_ID)
                            .map(str::to_owned)
                            .unwrap_or_else(|| name.clone()),
                    ),
                    service_name: label(s, labels::SERVICE).unwrap_or_default().to_owned(),
                    name,
                    backend_id: id,
                    image: s.spec.as_ref().map(shown_image).unwrap_or_default(),
                    status: summary.status,
                    instances: summary.running,
                    created_at: s.created_at.as_deref().and_then(parse_docker_time),
                    stopped_at: summary.stopped_at,
                    labels: service_labels(s),
                }
            })
            .collect();
        out.sort_by(|a, b| a.app_id.cmp(&b.app_id).then(a.name.cmp(&b.name)));
        Ok(out)
    }

    async fn logs(&self, app_id: &AppId, query: &LogQuery) -> Result<Vec<LogLine>, BackendError> {
        let found = self.find_some(app_id).await?;
        let mut lines = Vec::new();
        for s in &found {
            let id = s.id.clone().unwrap_or_default();
            let stream = self.docker.service_logs(&id, Some(logs_options(query)));
            lines.extend(read_lines(stream, self.clock.now()).await?);
        }
        Ok(select(lines, query))
    }

    async fn prune(
        &self,
        targets: &BTreeSet<CleanTarget>,
        older_than: Option<Duration>,
    ) -> Result<PruneReport, BackendError> {
        let services =
            async |report: &mut PruneReport| self.prune_services(older_than, report).await;
        engine::prune(&self.docker, targets, services).await
    }

    async fn list_infrastructure(&self) -> Result<Vec<InfrastructureInfo>, BackendError> {
        let all = self
            .docker
            .list_services(None::<ListServicesOptions>)
            .await
            .map_err(map_err)?;
        let infra: Vec<&Service> = all
            .iter()
            .filter(|s| {
                is_infrastructure(service_name(s))
                    || s.spec
                        .as_ref()
                        .is_some_and(|spec| is_infrastructure(&shown_image(spec)))
            })
            .collect();
        let tasks = self.tasks_of(&infra).await?;
        Ok(infra
            .into_iter()
            .map(|s| InfrastructureInfo {
                name: label(s, labels::APP_ID)
                    .unwrap_or_else(|| service_name(s))
                    .to_owned(),
                image: s.spec.as_ref().map(shown_image).unwrap_or_default(),
                status: summarise_service(s, &tasks_for(s, &tasks)).status,
                backend_id: s.id.clone().unwrap_or_default(),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests;

//! The in-process backend (`InProcess`, the embedded default): a deployed node is a
//! [`Node`] (plugin host, HTTP server on loopback, mesh follower, heartbeat emitter) run
//! as tasks in this process, one per replica, sharing the host's event bus and
//! registering its address in the host's [`InProcessDirectory`].
//!
//! Environment (docs/COMPATIBILITY.md#backend-injected-variables, what applies in-process):
//! `BANNOU_APP_ID={appId}` and `BANNOU_HEARTBEAT_ENABLED=true` come first, the node's own
//! environment on top (it wins). `DAEMON_MODE` and `SSL_CERT_DIR` mean nothing here, and
//! the mapping-source variables are left out (as on Swarm and Kubernetes): in-process nodes
//! get their routing from the shared bus, the table being rebroadcast on every change.
//!
//! The image is recorded but not used (every node runs this binary's plugin host).
//! Nothing outlives a node, so `prune` has nothing to remove and there is no
//! infrastructure to list.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use orchestrator_core::AppId;
use orchestrator_core::api::enums::{CleanTarget, ContainerStatusType, RestartStrategy};
use orchestrator_core::events::BackendType;
use orchestrator_core::ports::backend::{
    Availability, BackendError, ContainerBackend, ContainerInfo, ContainerStatusReport,
    DeployedNode, InfrastructureInfo, LogLine, LogQuery, NodeDeployment, PruneReport,
    RestartOptions, RestartOutcome, ScaleResult, TeardownOptions, TeardownResult, container_name,
};
use orchestrator_core::ports::bus::EventBus;
use orchestrator_core::time::{Clock, Timestamp};

use crate::mesh::InProcessDirectory;
use crate::plugins::log::NodeLog;
use crate::plugins::node::{
    DEFAULT_STOP_GRACE, HEARTBEAT_ENABLED_VAR, Node, NodeConfig, TaskCounter,
};

/// The environment an in-process node starts with: `BANNOU_APP_ID` and
/// `BANNOU_HEARTBEAT_ENABLED=true`, then `node.environment` on top (see the module docs).
pub fn in_process_environment(node: &NodeDeployment) -> BTreeMap<String, String> {
    let mut env = BTreeMap::from([
        (
            orchestrator_core::resolver::APP_ID.to_owned(),
            node.app_id.to_string(),
        ),
        (HEARTBEAT_ENABLED_VAR.to_owned(), "true".to_owned()),
    ]);
    env.extend(node.environment.iter().map(|(k, v)| (k.clone(), v.clone())));
    env
}

/// One deployed app-id: its replicas and bookkeeping.
struct Deployed {
    deployment: NodeDeployment,
    environment: BTreeMap<String, String>,
    backend_id: String,
    replicas: Vec<Node>,
    desired: u32,
    created_at: Timestamp,
    started_at: Option<Timestamp>,
    stopped_at: Option<Timestamp>,
    restart_count: u32,
    log: NodeLog,
}

impl Deployed {
    fn running(&self) -> u32 {
        u32::try_from(self.replicas.len()).unwrap_or(u32::MAX)
    }

    fn status(&self) -> ContainerStatusType {
        if self.replicas.is_empty() {
            ContainerStatusType::Stopped
        } else {
            ContainerStatusType::Running
        }
    }
}

/// The in-process [`ContainerBackend`] (see the module docs). The host holds it as
/// `Arc<dyn ContainerBackend>`; dropping it aborts every node it runs.
pub struct InProcessBackend {
    bus: Arc<dyn EventBus>,
    directory: InProcessDirectory,
    clock: Arc<dyn Clock>,
    tasks: TaskCounter,
    log_capacity: usize,
    // A tokio mutex: operations hold it across node starts and stops, which serialises
    // them per backend (a deploy and a teardown of one app-id never interleave).
    nodes: tokio::sync::Mutex<BTreeMap<AppId, Deployed>>,
    next_id: AtomicU64,
}

impl std::fmt::Debug for InProcessBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InProcessBackend")
            .field("directory", &self.directory)
            .field("running_tasks", &self.tasks.running())
            .finish_non_exhaustive()
    }
}

fn not_found(app_id: &AppId) -> BackendError {
    BackendError::NotFound {
        app_id: app_id.clone(),
    }
}

fn short(id: &str) -> String {
    id.chars().take(12).collect()
}

impl InProcessBackend {
    /// A backend whose nodes share `bus` and register in `directory` (the host's own:
    /// the control plane registers itself there too), stamping times from the system
    /// clock following tokio time.
    pub fn new(bus: Arc<dyn EventBus>, directory: InProcessDirectory) -> Self {
        InProcessBackend {
            bus,
            directory,
            clock: Arc::new(crate::clock::TokioClock::system()),
            tasks: TaskCounter::new(),
            log_capacity: NodeLog::DEFAULT_CAPACITY,
            nodes: tokio::sync::Mutex::new(BTreeMap::new()),
            next_id: AtomicU64::new(0),
        }
    }

    /// Stamps times (status, logs, heartbeats) from `clock`.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Keeps at most `lines` log lines per app-id.
    pub fn with_log_capacity(mut self, lines: usize) -> Self {
        self.log_capacity = lines;
        self
    }

    /// The directory nodes register in.
    pub fn directory(&self) -> &InProcessDirectory {
        &self.directory
    }

    /// Background tasks of every node still running (0 once everything is torn down).
    pub fn running_tasks(&self) -> usize {
        self.tasks.running()
    }

    /// Base URLs of the running replicas of `app_id`.
    pub fn endpoints(&self, app_id: &AppId) -> Vec<String> {
        self.directory.endpoints(app_id)
    }

    /// Stops every node gracefully (host shutdown).
    pub async fn stop_all(&self) {
        let all = std::mem::take(&mut *self.nodes.lock().await);
        for (_, deployed) in all {
            self.stop_replicas(deployed.replicas, DEFAULT_STOP_GRACE)
                .await;
        }
    }

    async fn start_replica(&self, d: &Deployed) -> Result<Node, BackendError> {
        let runtime = |message: String| BackendError::runtime(message);
        let config = NodeConfig::from_environment(d.environment.clone())
            .map_err(|e| runtime(format!("node {}: {e}", d.deployment.app_id)))?;
        let node = Node::builder(config, self.bus.clone(), Arc::new(self.directory.clone()))
            .clock(self.clock.clone())
            .log(d.log.clone())
            .tasks(self.tasks.clone())
            .start()
            .await
            .map_err(|e| {
                d.log.stderr(format!("node failed to start: {e}"));
                runtime(format!("node {} failed to start: {e}", d.deployment.app_id))
            })?;
        self.directory.register(node.app_id(), node.base_url());
        Ok(node)
    }

    /// Starts replicas until `d` runs `d.desired`; on a failure the ones started by this
    /// call are stopped again.
    async fn start_missing(&self, d: &mut Deployed) -> Result<(), BackendError> {
        let before = d.replicas.len();
        while d.running() < d.desired {
            match self.start_replica(d).await {
                Ok(node) => d.replicas.push(node),
                Err(e) => {
                    let started = d.replicas.split_off(before);
                    self.stop_replicas(started, Duration::ZERO).await;
                    return Err(e);
                }
            }
        }
        if before == 0 && !d.replicas.is_empty() {
            d.started_at = Some(self.clock.now());
            d.stopped_at = None;
        }
        Ok(())
    }

    /// Unregisters and stops `nodes` (concurrently), returning their short instance ids.
    async fn stop_replicas(&self, nodes: Vec<Node>, grace: Duration) -> Vec<String> {
        let ids: Vec<String> = nodes
            .iter()
            .map(|n| short(&n.instance_id().simple().to_string()))
            .collect();
        for node in &nodes {
            self.directory.unregister(node.app_id(), &node.base_url());
        }
        futures::future::join_all(nodes.into_iter().map(|n| n.stop_within(grace))).await;
        ids
    }
}

#[async_trait]
impl ContainerBackend for InProcessBackend {
    fn backend_type(&self) -> BackendType {
        BackendType::InProcess
    }

    async fn check_availability(&self) -> Availability {
        Availability::available(Some(env!("CARGO_PKG_VERSION").to_owned()))
    }

    async fn deploy_node(&self, node: &NodeDeployment) -> Result<DeployedNode, BackendError> {
        // The map is locked only to take the old node out and to put the new one in:
        // starting replicas (bind, plugins, first heartbeat) must not serialise a wave's
        // parallel deploys.
        let old = self.nodes.lock().await.remove(&node.app_id);
        let replaced = match old {
            Some(old) => {
                old.log.stdout(format!("replacing node {}", node.app_id));
                self.stop_replicas(old.replicas, DEFAULT_STOP_GRACE).await;
                true
            }
            None => false,
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let backend_id = format!("inproc-{id:012}");
        let now = self.clock.now();
        let log = NodeLog::with_capacity(self.clock.clone(), self.log_capacity);
        log.stdout(format!(
            "deploying node {} for {} ({} replica(s), image {} not used in process)",
            node.app_id, node.service_name, node.replicas, node.image
        ));
        let mut deployed = Deployed {
            deployment: node.clone(),
            environment: in_process_environment(node),
            backend_id: backend_id.clone(),
            replicas: Vec::new(),
            desired: node.replicas,
            created_at: now,
            started_at: None,
            stopped_at: (node.replicas == 0).then_some(now),
            restart_count: 0,
            log,
        };
        self.start_missing(&mut deployed).await?;
        let displaced = self
            .nodes
            .lock()
            .await
            .insert(node.app_id.clone(), deployed);
        if let Some(other) = displaced {
            // A concurrent deploy of the same app-id finished first; the last one wins,
            // as a container name would, and the other's replicas must not leak.
            self.stop_replicas(other.replicas, DEFAULT_STOP_GRACE).await;
        }
        Ok(DeployedNode {
            app_id: node.app_id.clone(),
            name: container_name(&node.app_id),
            message: format!(
                "Service {} deployed in process as {}",
                node.service_name,
                short(&backend_id)
            ),
            backend_id,
            replaced,
        })
    }

    async fn teardown(
        &self,
        app_id: &AppId,
        options: &TeardownOptions,
    ) -> Result<TeardownResult, BackendError> {
        let mut nodes = self.nodes.lock().await;
        let deployed = nodes.remove(app_id).ok_or_else(|| not_found(app_id))?;
        deployed.log.stdout(format!(
            "tearing down node {app_id} ({}, grace {:?})",
            options.mode,
            options.effective_grace()
        ));
        let mut stopped = self
            .stop_replicas(deployed.replicas, options.effective_grace())
            .await;
        if stopped.is_empty() {
            stopped.push(short(&deployed.backend_id));
        }
        Ok(TeardownResult {
            app_id: app_id.clone(),
            stopped,
            removed_volumes: Vec::new(),
        })
    }

    async fn scale(&self, app_id: &AppId, replicas: u32) -> Result<ScaleResult, BackendError> {
        let mut nodes = self.nodes.lock().await;
        let d = nodes.get_mut(app_id).ok_or_else(|| not_found(app_id))?;
        let previous = d.desired;
        d.log.stdout(format!(
            "scaling node {app_id} from {previous} to {replicas}"
        ));
        d.desired = replicas;
        if d.running() > replicas {
            let keep = usize::try_from(replicas).unwrap_or(usize::MAX);
            let surplus = d.replicas.split_off(keep);
            self.stop_replicas(surplus, DEFAULT_STOP_GRACE).await;
            if d.replicas.is_empty() {
                d.stopped_at = Some(self.clock.now());
            }
        }
        if let Err(e) = self.start_missing(d).await {
            d.desired = d.running();
            return Err(e);
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
        let mut nodes = self.nodes.lock().await;
        let d = nodes.get_mut(app_id).ok_or_else(|| not_found(app_id))?;
        d.log.stdout(format!(
            "restarting node {app_id} ({}): {}",
            options.priority, options.reason
        ));
        let old = std::mem::take(&mut d.replicas);
        self.stop_replicas(old, options.effective_grace()).await;
        d.restart_count = d.restart_count.saturating_add(1);
        d.stopped_at = Some(self.clock.now());
        self.start_missing(d).await?;
        Ok(RestartOutcome {
            current_instances: d.running(),
            strategy: RestartStrategy::Simultaneous,
        })
    }

    async fn status(&self, app_id: &AppId) -> Result<ContainerStatusReport, BackendError> {
        let nodes = self.nodes.lock().await;
        let d = nodes.get(app_id).ok_or_else(|| not_found(app_id))?;
        Ok(ContainerStatusReport {
            app_id: app_id.clone(),
            status: d.status(),
            instances: d.running(),
            desired_replicas: d.desired,
            started_at: d.started_at,
            stopped_at: d.stopped_at,
            restart_count: d.restart_count,
            labels: d.deployment.effective_labels(),
        })
    }

    async fn list(&self) -> Result<Vec<ContainerInfo>, BackendError> {
        let nodes = self.nodes.lock().await;
        Ok(nodes
            .values()
            .map(|d| ContainerInfo {
                app_id: d.deployment.app_id.clone(),
                service_name: d.deployment.service_name.clone(),
                name: container_name(&d.deployment.app_id),
                backend_id: d.backend_id.clone(),
                image: d.deployment.image.clone(),
                status: d.status(),
                instances: d.running(),
                created_at: Some(d.created_at),
                stopped_at: d.stopped_at,
                labels: d.deployment.effective_labels(),
            })
            .collect())
    }

    async fn logs(&self, app_id: &AppId, query: &LogQuery) -> Result<Vec<LogLine>, BackendError> {
        let nodes = self.nodes.lock().await;
        let d = nodes.get(app_id).ok_or_else(|| not_found(app_id))?;
        Ok(d.log.query(query))
    }

    async fn list_infrastructure(&self) -> Result<Vec<InfrastructureInfo>, BackendError> {
        Ok(Vec::new())
    }

    async fn prune(
        &self,
        _targets: &BTreeSet<CleanTarget>,
        _older_than: Option<Duration>,
    ) -> Result<PruneReport, BackendError> {
        Ok(PruneReport::default())
    }
}

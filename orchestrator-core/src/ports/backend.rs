//! The `ContainerBackend` port (docs/COMPATIBILITY.md#backend-contract, shaped by decisions
//! D5, D6, D12 and D13 (docs/DECISIONS.md)): what every container runtime adapter offers,
//! with the label keys, resource names (docs/COMPATIBILITY.md#names-and-app-ids) and
//! backend-injected environment (docs/COMPATIBILITY.md#backend-injected-variables) that all
//! adapters share.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;

use crate::api::enums::{
    CleanTarget, ContainerStatusType, LogStreamType, RestartPriority, RestartStrategy, TeardownMode,
};
use crate::error_source::ErrorSource;
use crate::events::BackendType;
use crate::names::AppId;
use crate::time::Timestamp;

// === labels and names ===

/// Label keys the orchestrator puts on every object it creates
/// (docs/COMPATIBILITY.md#names-and-app-ids).
pub mod labels {
    /// The node's app-id.
    pub const APP_ID: &str = "bannou.app-id";
    /// The service name the node was deployed for.
    pub const SERVICE: &str = "bannou.service";
    /// Marks objects this orchestrator created; only those are listed, cleaned or pruned.
    pub const MANAGED: &str = "bannou.orchestrator-managed";
    /// Value of [`MANAGED`] on our objects.
    pub const MANAGED_VALUE: &str = "true";
}

/// The three labels every object we create carries.
pub fn managed_labels(app_id: &AppId, service_name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (labels::APP_ID.to_owned(), app_id.as_str().to_owned()),
        (labels::SERVICE.to_owned(), service_name.to_owned()),
        (labels::MANAGED.to_owned(), labels::MANAGED_VALUE.to_owned()),
    ])
}

/// True when `labels` mark an object as ours (`bannou.orchestrator-managed=true`,
/// value compared case-insensitively).
pub fn is_managed(labels: &BTreeMap<String, String>) -> bool {
    labels
        .get(labels::MANAGED)
        .is_some_and(|v| v.eq_ignore_ascii_case(labels::MANAGED_VALUE))
}

/// Standalone Docker container name: `bannou-{appId}` (so `bannou-auth` becomes
/// `bannou-bannou-auth`, as upstream names it).
pub fn container_name(app_id: &AppId) -> String {
    format!("bannou-{app_id}")
}

/// Swarm service, Kubernetes Deployment and Portainer container name:
/// `bannou-{serviceName}-{appId}`.
pub fn workload_name(service_name: &str, app_id: &AppId) -> String {
    format!("bannou-{service_name}-{app_id}")
}

/// A pool worker's processor id: `{poolType}-{32 lowercase hex digits of id}`.
pub fn processor_id(pool_type: &str, id: uuid::Uuid) -> String {
    format!("{pool_type}-{}", id.simple())
}

/// A pool worker's app-id: `bannou-pool-{poolType}-{last 8 characters of processorId}`
/// (the whole id when it is shorter).
pub fn pool_worker_app_id(pool_type: &str, processor_id: &str) -> AppId {
    let skip = processor_id.chars().count().saturating_sub(8);
    let tail: String = processor_id.chars().skip(skip).collect();
    AppId::new(format!("bannou-pool-{pool_type}-{tail}"))
}

/// Name fragments that mark infrastructure containers
/// (docs/COMPATIBILITY.md#backend-contract), matched as case-insensitive substrings of the
/// container name or image.
pub const INFRASTRUCTURE_PATTERNS: &[&str] = &[
    "redis", "rabbitmq", "mysql", "mariadb", "postgres", "mongodb",
];

/// True when a container name or image matches [`INFRASTRUCTURE_PATTERNS`].
pub fn is_infrastructure(name_or_image: &str) -> bool {
    let lower = name_or_image.to_ascii_lowercase();
    INFRASTRUCTURE_PATTERNS.iter().any(|p| lower.contains(p))
}

/// Where the standalone Docker backend mounts certificates (`SSL_CERT_DIR`).
pub const CERTIFICATES_MOUNT: &str = "/certificates";

/// The environment the standalone Docker backend gives a node
/// (docs/COMPATIBILITY.md#backend-injected-variables): its fixed variables first, then
/// `caller` on top (the caller wins on equal keys).
///
/// Fixed: `BANNOU_APP_ID={app_id}`, `BANNOU_MAPPING_SOURCE_APP_ID={orchestrator}`,
/// `BANNOU_HTTP_ENDPOINT=http://{orchestrator}`, `DAEMON_MODE=true`,
/// `BANNOU_HEARTBEAT_ENABLED=true`, and `SSL_CERT_DIR=/certificates` when certificates
/// are mounted.
pub fn docker_injected_environment(
    app_id: &AppId,
    orchestrator_app_id: &AppId,
    certificates_mounted: bool,
    caller: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut env = BTreeMap::from([
        ("BANNOU_APP_ID".to_owned(), app_id.to_string()),
        (
            "BANNOU_MAPPING_SOURCE_APP_ID".to_owned(),
            orchestrator_app_id.to_string(),
        ),
        (
            "BANNOU_HTTP_ENDPOINT".to_owned(),
            format!("http://{orchestrator_app_id}"),
        ),
        ("DAEMON_MODE".to_owned(), "true".to_owned()),
        ("BANNOU_HEARTBEAT_ENABLED".to_owned(), "true".to_owned()),
    ]);
    if certificates_mounted {
        env.insert("SSL_CERT_DIR".to_owned(), CERTIFICATES_MOUNT.to_owned());
    }
    env.extend(caller.iter().map(|(k, v)| (k.clone(), v.clone())));
    env
}

// === operations and errors ===

/// One operation of [`ContainerBackend`], for errors and call records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BackendOperation {
    /// `check-availability`.
    CheckAvailability,
    /// `deploy`.
    Deploy,
    /// `teardown`.
    Teardown,
    /// `scale`.
    Scale,
    /// `restart`.
    Restart,
    /// `status`.
    Status,
    /// `list`.
    List,
    /// `logs`.
    Logs,
    /// `list-infrastructure`.
    ListInfrastructure,
    /// `prune`.
    Prune,
}

impl BackendOperation {
    /// Lower-case name, e.g. `deploy`.
    pub const fn as_str(self) -> &'static str {
        match self {
            BackendOperation::CheckAvailability => "check-availability",
            BackendOperation::Deploy => "deploy",
            BackendOperation::Teardown => "teardown",
            BackendOperation::Scale => "scale",
            BackendOperation::Restart => "restart",
            BackendOperation::Status => "status",
            BackendOperation::List => "list",
            BackendOperation::Logs => "logs",
            BackendOperation::ListInfrastructure => "list-infrastructure",
            BackendOperation::Prune => "prune",
        }
    }
}

impl fmt::Display for BackendOperation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Errors of [`ContainerBackend`] operations. Cheap to clone (tests script them).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    /// No object of ours carries this app-id (never deployed, or already torn down).
    #[error("no container found with app-id '{app_id}'")]
    NotFound {
        /// The app-id looked up.
        app_id: AppId,
    },
    /// The runtime cannot be reached (socket missing, API down, credentials rejected).
    #[error("backend unavailable: {reason}")]
    Unavailable {
        /// What failed, with the client's text.
        reason: String,
        /// The client's error, when one caused it.
        #[source]
        source: Option<ErrorSource>,
    },
    /// The operation clashes with existing state, e.g. an object with the target name
    /// exists but was not created by the orchestrator, so it is left alone.
    #[error("conflict for '{app_id}': {reason}")]
    Conflict {
        /// The app-id the operation was for.
        app_id: AppId,
        /// What clashed.
        reason: String,
    },
    /// This backend cannot do the operation (scaling on standalone Docker, volume pruning
    /// on Kubernetes).
    #[error("{operation} is not supported by this backend: {reason}")]
    Unsupported {
        /// The operation refused.
        operation: BackendOperation,
        /// Why, and what to use instead.
        reason: String,
    },
    /// The runtime reported an error for an otherwise valid request (image missing,
    /// API error); `message` is the runtime's text.
    #[error("runtime error: {message}")]
    Runtime {
        /// The runtime's message.
        message: String,
        /// The client's error, when one caused it.
        #[source]
        source: Option<ErrorSource>,
    },
}

impl BackendError {
    /// [`BackendError::Unavailable`] without a foreign cause.
    pub fn unavailable(reason: impl Into<String>) -> Self {
        BackendError::Unavailable {
            reason: reason.into(),
            source: None,
        }
    }

    /// [`BackendError::Unavailable`] caused by the client error `source`; `reason` should
    /// quote it (answers show only the reason).
    pub fn unavailable_from(
        reason: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        BackendError::Unavailable {
            reason: reason.into(),
            source: Some(ErrorSource::new(source)),
        }
    }

    /// [`BackendError::Runtime`] without a foreign cause.
    pub fn runtime(message: impl Into<String>) -> Self {
        BackendError::Runtime {
            message: message.into(),
            source: None,
        }
    }

    /// [`BackendError::Runtime`] caused by the client error `source`; `message` should
    /// quote it (answers show only the message).
    pub fn runtime_from(
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        BackendError::Runtime {
            message: message.into(),
            source: Some(ErrorSource::new(source)),
        }
    }
}

// === request and result types ===

/// Whether a backend can be used now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Availability {
    /// True when operations can be expected to work.
    pub available: bool,
    /// Why it is unavailable (or a note such as `Swarm worker node (limited functionality)`).
    pub reason: Option<String>,
    /// Runtime version when known (Docker server version, Kubernetes git version).
    pub version: Option<String>,
}

impl Availability {
    /// Available, with an optional version.
    pub fn available(version: Option<String>) -> Self {
        Availability {
            available: true,
            reason: None,
            version,
        }
    }

    /// Unavailable because of `reason`.
    pub fn unavailable(reason: impl Into<String>) -> Self {
        Availability {
            available: false,
            reason: Some(reason.into()),
            version: None,
        }
    }
}

/// What the runtime does when a node's process exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RestartPolicy {
    /// Never restart.
    Never,
    /// Restart on non-zero exit, at most `max_retries` times (unlimited when `None`).
    OnFailure {
        /// Retry limit.
        max_retries: Option<u32>,
    },
    /// Always restart, including after a daemon restart.
    Always,
    /// Restart unless stopped on purpose (upstream's choice; the default).
    #[default]
    UnlessStopped,
}

/// Resource limits of one replica; `None` means unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ResourceLimits {
    /// CPU in thousandths of a core (`500` = half a core).
    pub cpu_millis: Option<u32>,
    /// Memory in bytes.
    pub memory_bytes: Option<u64>,
}

/// One node to deploy: a `bannou-host` process (per replica) with a set of services
/// enabled through `environment`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeDeployment {
    /// Identity of the node; the `bannou.app-id` label.
    pub app_id: AppId,
    /// The `bannou.service` label and the `{serviceName}` of [`workload_name`]: the node
    /// name (preset deploy), the service name (add-node) or the pool plugin.
    pub service_name: String,
    /// Container image, e.g. `bannou:latest`.
    pub image: String,
    /// The node's resolved environment (docs/COMPATIBILITY.md#environment-layering). The
    /// backend adds its own variables (docs/COMPATIBILITY.md#backend-injected-variables,
    /// [`docker_injected_environment`]) underneath; these win.
    pub environment: BTreeMap<String, String>,
    /// Replica count; backends that run one container per node accept only 1.
    pub replicas: u32,
    /// Extra labels. The backend always adds [`managed_labels`], which win on equal keys.
    pub labels: BTreeMap<String, String>,
    /// Restart policy.
    pub restart_policy: RestartPolicy,
    /// Optional per-replica limits.
    pub resources: Option<ResourceLimits>,
}

impl NodeDeployment {
    /// A one-replica node with no extra labels, the default restart policy and no limits.
    pub fn new(app_id: AppId, service_name: impl Into<String>, image: impl Into<String>) -> Self {
        NodeDeployment {
            app_id,
            service_name: service_name.into(),
            image: image.into(),
            environment: BTreeMap::new(),
            replicas: 1,
            labels: BTreeMap::new(),
            restart_policy: RestartPolicy::default(),
            resources: None,
        }
    }

    /// `labels` plus [`managed_labels`] (ours win): what the created object carries.
    pub fn effective_labels(&self) -> BTreeMap<String, String> {
        let mut all = self.labels.clone();
        all.extend(managed_labels(&self.app_id, &self.service_name));
        all
    }
}

/// Result of a successful deploy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployedNode {
    /// The node's app-id.
    pub app_id: AppId,
    /// Runtime object name (container, service or Deployment name).
    pub name: String,
    /// Runtime id (full container id, service id, Deployment UID).
    pub backend_id: String,
    /// True when an existing node with this app-id was replaced.
    pub replaced: bool,
    /// Human summary, e.g. `Service auth deployed with container 3f2a9c1b7d4e`.
    pub message: String,
}

/// How to tear a node down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TeardownOptions {
    /// Graceful stop, kill, or keep data.
    pub mode: TeardownMode,
    /// Also remove the node's volumes (ignored in [`TeardownMode::PreserveData`]).
    pub remove_volumes: bool,
    /// How long a graceful stop may take before the runtime kills the process.
    pub grace: Duration,
}

impl Default for TeardownOptions {
    /// Graceful, volumes kept, 10 s grace (upstream's stop timeout).
    fn default() -> Self {
        TeardownOptions {
            mode: TeardownMode::Graceful,
            remove_volumes: false,
            grace: Duration::from_secs(10),
        }
    }
}

impl TeardownOptions {
    /// Whether volumes are removed: requested and not `PreserveData`.
    pub fn removes_volumes(&self) -> bool {
        self.remove_volumes && self.mode != TeardownMode::PreserveData
    }

    /// The stop timeout to use: zero for `Force`, else `grace`.
    pub fn effective_grace(&self) -> Duration {
        match self.mode {
            TeardownMode::Force => Duration::ZERO,
            TeardownMode::Graceful | TeardownMode::PreserveData => self.grace,
        }
    }
}

/// Result of a successful teardown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TeardownResult {
    /// The node's app-id.
    pub app_id: AppId,
    /// Stopped/removed objects (12-character container ids, service ids or Deployment
    /// names, as the backend identifies them).
    pub stopped: Vec<String>,
    /// Removed volume names.
    pub removed_volumes: Vec<String>,
}

/// Result of a successful scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScaleResult {
    /// Desired replicas before.
    pub previous_replicas: u32,
    /// Desired replicas now.
    pub current_replicas: u32,
}

/// How to restart a node (D5 (docs/DECISIONS.md#d5): restarts really restart).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestartOptions {
    /// Urgency.
    pub priority: RestartPriority,
    /// Graceful stop timeout (used for `Graceful` only).
    pub grace: Duration,
    /// Why (audit and logs).
    pub reason: String,
}

impl Default for RestartOptions {
    /// Graceful, 30 s grace, no reason.
    fn default() -> Self {
        RestartOptions {
            priority: RestartPriority::Graceful,
            grace: Duration::from_secs(30),
            reason: String::new(),
        }
    }
}

impl RestartOptions {
    /// The stop timeout to use: zero for `Immediate` and `Force`, else `grace`.
    pub fn effective_grace(&self) -> Duration {
        match self.priority {
            RestartPriority::Graceful => self.grace,
            RestartPriority::Immediate | RestartPriority::Force => Duration::ZERO,
        }
    }
}

/// Result of an accepted restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartOutcome {
    /// Replicas the node has (desired).
    pub current_instances: u32,
    /// Whether replicas restart one by one or together.
    pub strategy: RestartStrategy,
}

/// State of one node (docs/COMPATIBILITY.md#container-status). A missing node is
/// [`BackendError::NotFound`], never a stopped report, so an exited node and an absent one
/// are told apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerStatusReport {
    /// The node's app-id.
    pub app_id: AppId,
    /// Overall state.
    pub status: ContainerStatusType,
    /// Running replicas.
    pub instances: u32,
    /// Desired replicas.
    pub desired_replicas: u32,
    /// When the current process (latest replica) started.
    pub started_at: Option<Timestamp>,
    /// When it last stopped, if stopped (Docker `State.FinishedAt`; D12 (docs/DECISIONS.md#d12)).
    pub stopped_at: Option<Timestamp>,
    /// Restarts since deployment, ours (D5) and the runtime's restart policy's.
    pub restart_count: u32,
    /// Labels on the object.
    pub labels: BTreeMap<String, String>,
}

/// One of our nodes as listed (only objects with [`labels::MANAGED`] are listed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerInfo {
    /// The node's app-id (label [`labels::APP_ID`]).
    pub app_id: AppId,
    /// The `bannou.service` label.
    pub service_name: String,
    /// Runtime object name.
    pub name: String,
    /// Runtime id.
    pub backend_id: String,
    /// Image.
    pub image: String,
    /// Overall state.
    pub status: ContainerStatusType,
    /// Running replicas.
    pub instances: u32,
    /// When it was created, if known.
    pub created_at: Option<Timestamp>,
    /// When it last stopped, if stopped (D12).
    pub stopped_at: Option<Timestamp>,
    /// Labels on the object.
    pub labels: BTreeMap<String, String>,
}

impl ContainerInfo {
    /// Orphan rule of docs/COMPATIBILITY.md#clean-and-orphans with D12: stopped, ours, and
    /// stopped for longer than `threshold` before `now` (an unknown stop time is never
    /// orphaned).
    pub fn is_orphaned(&self, now: Timestamp, threshold: Duration) -> bool {
        self.status == ContainerStatusType::Stopped
            && is_managed(&self.labels)
            && self
                .stopped_at
                .is_some_and(|at| now.saturating_since(at) > threshold)
    }
}

/// An infrastructure container or service (matched by [`is_infrastructure`]); not ours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InfrastructureInfo {
    /// App name (Compose service label or object name).
    pub name: String,
    /// Image.
    pub image: String,
    /// State.
    pub status: ContainerStatusType,
    /// Runtime id.
    pub backend_id: String,
}

/// Which log lines to return. All bounds are optional.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LogQuery {
    /// At most this many of the newest lines (over both streams).
    pub tail: Option<u32>,
    /// Only lines at or after this instant.
    pub since: Option<Timestamp>,
    /// Only lines before this instant.
    pub until: Option<Timestamp>,
}

/// One structured log line (D13 (docs/DECISIONS.md#d13): the stream comes from the runtime,
/// not from text markers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// When the runtime recorded it.
    pub timestamp: Timestamp,
    /// Stdout or stderr.
    pub stream: LogStreamType,
    /// The text, without the trailing newline.
    pub message: String,
}

/// Expands `All` into the four concrete clean targets.
pub fn expand_clean_targets(targets: &[CleanTarget]) -> BTreeSet<CleanTarget> {
    let mut set = BTreeSet::new();
    for t in targets {
        match t {
            CleanTarget::All => set.extend([
                CleanTarget::Containers,
                CleanTarget::Networks,
                CleanTarget::Volumes,
                CleanTarget::Images,
            ]),
            other => {
                set.insert(*other);
            }
        }
    }
    set
}

/// One removed item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrunedItem {
    /// Kind of item.
    pub target: CleanTarget,
    /// Its id or name.
    pub id: String,
}

/// One item (or a whole target) that could not be removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PruneFailure {
    /// Kind of item.
    pub target: CleanTarget,
    /// The item, or `None` when the whole target failed (e.g. unsupported).
    pub id: Option<String>,
    /// Why.
    pub message: String,
}

/// What a prune removed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PruneReport {
    /// Removed items.
    pub removed: Vec<PrunedItem>,
    /// Bytes reclaimed.
    pub reclaimed_bytes: u64,
    /// Per-item or per-target failures (a prune reports them instead of failing).
    pub errors: Vec<PruneFailure>,
}

impl PruneReport {
    /// How many items of `target` were removed.
    pub fn count(&self, target: CleanTarget) -> usize {
        self.removed.iter().filter(|i| i.target == target).count()
    }

    /// Reclaimed space in whole MiB (`reclaimedSpaceMb`, integer division).
    pub fn reclaimed_mb(&self) -> u64 {
        self.reclaimed_bytes / 1_048_576
    }
}

// === the port ===

/// A container runtime: Docker, Swarm, Portainer, Kubernetes or in-process. Object safe;
/// the host holds the active backend (D6 (docs/DECISIONS.md#d6)) as `Arc<dyn ContainerBackend>`.
///
/// Every operation addressing an app-id returns [`BackendError::NotFound`] when no object
/// of ours carries it. Only objects with [`labels::MANAGED`] are ever listed, changed or
/// pruned.
///
/// With the `testkit` feature, `MockContainerBackend` (mockall) implements it, for tests
/// that assert which calls happen, in which order and how often.
#[cfg_attr(feature = "testkit", mockall::automock)]
#[async_trait]
pub trait ContainerBackend: Send + Sync {
    /// Which backend this is.
    fn backend_type(&self) -> BackendType;

    /// Probes the runtime; never fails, reports why it is unusable instead.
    async fn check_availability(&self) -> Availability;

    /// Creates and starts a node, replacing an existing node of ours with the same app-id.
    /// [`BackendError::Conflict`] when the name is taken by an object that is not ours.
    async fn deploy_node(&self, node: &NodeDeployment) -> Result<DeployedNode, BackendError>;

    /// Stops and removes a node.
    async fn teardown(
        &self,
        app_id: &AppId,
        options: &TeardownOptions,
    ) -> Result<TeardownResult, BackendError>;

    /// Sets the desired replica count. [`BackendError::Unsupported`] where the runtime
    /// runs exactly one container per node.
    async fn scale(&self, app_id: &AppId, replicas: u32) -> Result<ScaleResult, BackendError>;

    /// Really restarts a node's processes (D5); the restart count goes up.
    async fn restart(
        &self,
        app_id: &AppId,
        options: &RestartOptions,
    ) -> Result<RestartOutcome, BackendError>;

    /// The node's current state.
    async fn status(&self, app_id: &AppId) -> Result<ContainerStatusReport, BackendError>;

    /// Every node of ours, in any state.
    async fn list(&self) -> Result<Vec<ContainerInfo>, BackendError>;

    /// The node's log lines in time order, with their stream (D13).
    async fn logs(&self, app_id: &AppId, query: &LogQuery) -> Result<Vec<LogLine>, BackendError>;

    /// Infrastructure containers/services (Redis, RabbitMQ, databases) the runtime runs.
    async fn list_infrastructure(&self) -> Result<Vec<InfrastructureInfo>, BackendError>;

    /// Removes unused objects of ours for each target (implementations expand `All` with
    /// [`expand_clean_targets`]): `Containers` removes our stopped nodes whose stop time is
    /// more than `older_than` before now (every stopped one when `None`; D12);
    /// networks, volumes and images are pruned by the runtime, limited to our label where
    /// it allows. Per-item and unsupported-target failures go into the report; `Err` only
    /// when the runtime cannot be reached.
    async fn prune(
        &self,
        targets: &BTreeSet<CleanTarget>,
        older_than: Option<Duration>,
    ) -> Result<PruneReport, BackendError>;
}

#[cfg(test)]
mod tests;

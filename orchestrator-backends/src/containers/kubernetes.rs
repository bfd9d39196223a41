//! The Kubernetes backend (docs/COMPATIBILITY.md#kubernetes-backend, completed), over the
//! API server with `kube` and `k8s-openapi`.
//!
//! - **Client**: in-cluster configuration first (service-account token), then a kubeconfig:
//!   [`KubernetesConfig::kubeconfig_path`] (`ORCHESTRATOR_KUBECONFIG_PATH`) when given, else
//!   kube's default (`$KUBECONFIG`, `~/.kube/config`). Every object lives in
//!   [`KubernetesConfig::namespace`].
//! - **Objects** ([`manifest`]): per node an `apps/v1` Deployment
//!   `bannou-{serviceName}-{appId}` and a `v1` Service named by the app-id (so nodes reach
//!   each other by app-id, which upstream lacks), built by the pure [`manifest::node_objects`]
//!   that `bannou-host k8s manifests` prints too. Both are written with **server-side apply**
//!   under the field manager [`KubernetesConfig::field_manager`], so a redeploy sends the
//!   same patch and changes nothing that did not change. An object of that name that is
//!   not ours is never taken over ([`BackendError::Conflict`]).
//! - **State** ([`state`]): from the Deployment's status and its pods: `Running` (every
//!   replica ready and available), `Starting` (progressing), `Unhealthy` (progress deadline
//!   exceeded, replica failure, crash loop, image pull failure), `Stopped` (0 replicas),
//!   `Stopping` (being deleted, or scaled to 0 with pods still terminating).
//! - **Scale** through the Deployment's `scale` subresource; **restart** as
//!   `kubectl rollout restart` does (the pod template annotation
//!   `kubectl.kubernetes.io/restartedAt`), counted in the Deployment annotation
//!   `bannou.restart-count`.
//! - **Logs** of the newest ready pod with the kubelet's timestamps. The pod log API merges
//!   stdout and stderr into one text and does not say which line came from which, so every
//!   line is reported as `Stdout`.
//! - **Teardown** deletes the node's Deployments and Services carrying our labels (nothing
//!   else) and waits for the Deployment to be gone with `kube`'s `await_condition` (a
//!   watch, not a polling loop); [`KubernetesBackend::wait_until_available`] waits the same
//!   way for a rollout (used by deploy when [`KubernetesConfig::deploy_wait`] is set).
//! - **Prune** (docs/COMPATIBILITY.md#kubernetes-backend): networks and images succeed with
//!   nothing to do (CNI and the kubelet manage them), volumes are refused (manage PVCs
//!   directly); stopped nodes (Deployments scaled to 0) are deleted only when no age
//!   threshold is given, because Kubernetes records no stop time (an unknown stop time is
//!   never orphaned, D12).
//!
//! API errors become [`BackendError::Runtime`] naming the action, the object and the
//! HTTP status (409 becomes [`BackendError::Conflict`], 404 [`BackendError::NotFound`]);
//! an unreachable API server is [`BackendError::Unavailable`].
//!
//! Kept as one file: one adapter of the `ContainerBackend` port whose operations share the
//! client, the names and the error mapping; the pure parts are `manifest` and `state`.

pub mod manifest;
pub mod state;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Api, DeleteParams, ListParams, LogParams, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Client, ResourceExt};
use orchestrator_core::api::enums::RestartStrategy;
use orchestrator_core::api::enums::{CleanTarget, ContainerStatusType, LogStreamType};
use orchestrator_core::events::BackendType;
use orchestrator_core::names::AppId;
use orchestrator_core::ports::backend::{
    Availability, BackendError, BackendOperation, ContainerBackend, ContainerInfo,
    ContainerStatusReport, DeployedNode, InfrastructureInfo, LogLine, LogQuery, NodeDeployment,
    PruneFailure, PruneReport, PrunedItem, RestartOptions, RestartOutcome, ScaleResult,
    TeardownOptions, TeardownResult, expand_clean_targets, is_infrastructure, is_managed, labels,
};
use orchestrator_core::time::Clock;

use self::manifest::{
    MANAGED_BY_LABEL, MANAGED_BY_VALUE, NodeObjects, RESTART_COUNT_ANNOTATION,
    RESTARTED_AT_ANNOTATION, app_selector, managed_selector, node_objects,
};
use self::state::{
    desired_replicas, is_rolled_out, log_pod, node_status, pod_started_at, ready_replicas,
    restart_count, timestamp,
};
use super::docker::logs::{LogAssembler, select};
use super::engine::SystemClock;

/// The namespace of every object when nothing else is set
/// (`ORCHESTRATOR_KUBERNETES_NAMESPACE`, docs/COMPATIBILITY.md#configuration-variables).
pub const DEFAULT_NAMESPACE: &str = "default";

/// Settings of the Kubernetes backend. `Default` gives the defaults of
/// docs/COMPATIBILITY.md#configuration-variables (namespace `default`, port 80, the default
/// kubeconfig).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubernetesConfig {
    /// Namespace of every object (`ORCHESTRATOR_KUBERNETES_NAMESPACE`, `default`).
    pub namespace: String,
    /// Kubeconfig file used when not running in a cluster
    /// (`ORCHESTRATOR_KUBECONFIG_PATH`); `None` uses kube's default (`$KUBECONFIG`, else
    /// `~/.kube/config`).
    pub kubeconfig_path: Option<PathBuf>,
    /// Kubeconfig context; `None` uses the file's current context.
    pub context: Option<String>,
    /// Field manager of our server-side applies (`bannou-orchestrator`).
    pub field_manager: String,
    /// Port nodes listen on (`ORCHESTRATOR_DEFAULT_SERVICE_PORT`, 80): the container port,
    /// the Service port and `ORCHESTRATOR_LISTEN=0.0.0.0:{port}`.
    pub node_port: u16,
    /// Variables every node gets above the injected ones and below its own (e.g. the Redis
    /// address nodes reach).
    pub extra_environment: BTreeMap<String, String>,
    /// `imagePullPolicy` of the node container; `None` leaves Kubernetes' default
    /// (`IfNotPresent`, or `Always` for `:latest`).
    pub image_pull_policy: Option<String>,
    /// Service account of the node pods; `None` uses the namespace's default.
    pub service_account: Option<String>,
    /// When set, deploy waits (a watch) until the Deployment is rolled out and available,
    /// and fails after this long with the reason. `None` (the default) returns once the
    /// objects are applied; the orchestrator then waits for the nodes' heartbeats.
    pub deploy_wait: Option<Duration>,
    /// How long teardown waits (a watch) for a deleted Deployment to be gone before it
    /// reports success anyway (the API server has accepted the deletion).
    pub delete_wait: Duration,
    /// Largest replica count `deploy_node` and `scale` accept.
    pub max_replicas: u32,
}

impl Default for KubernetesConfig {
    fn default() -> Self {
        KubernetesConfig {
            namespace: DEFAULT_NAMESPACE.to_owned(),
            kubeconfig_path: None,
            context: None,
            field_manager: MANAGED_BY_VALUE.to_owned(),
            node_port: super::DEFAULT_NODE_PORT,
            extra_environment: BTreeMap::new(),
            image_pull_policy: None,
            service_account: None,
            deploy_wait: None,
            delete_wait: Duration::from_secs(30),
            max_replicas: 64,
        }
    }
}

/// The client configuration: in-cluster first, then the kubeconfig of `config` (or kube's
/// default one). [`BackendError::Unavailable`] naming both failures when neither works.
pub async fn client_config(config: &KubernetesConfig) -> Result<kube::Config, BackendError> {
    let in_cluster = match kube::Config::incluster() {
        Ok(c) => return Ok(c),
        Err(e) => e,
    };
    let options = KubeConfigOptions {
        context: config.context.clone(),
        ..KubeConfigOptions::default()
    };
    let from_file = match &config.kubeconfig_path {
        Some(path) => match Kubeconfig::read_from(path) {
            Ok(kc) => kube::Config::from_custom_kubeconfig(kc, &options).await,
            Err(e) => Err(e),
        },
        None => kube::Config::from_kubeconfig(&options).await,
    };
    from_file.map_err(|e| {
        let which = config.kubeconfig_path.as_ref().map_or_else(
            || "the default kubeconfig".to_owned(),
            |p| format!("kubeconfig {}", p.display()),
        );
        BackendError::unavailable(format!(
            "No Kubernetes credentials found: not in a cluster ({in_cluster}); {which}: {e}"
        ))
    })
}

/// Where a pod's service-account credentials are mounted.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// Detection of docs/COMPATIBILITY.md#backend-detection, presence only (no API call):
/// `Ok("in-cluster")` when the service-account `token` and `ca.crt` exist, else `Ok(path)`
/// of the kubeconfig at `kubeconfig_path` or `{home}/.kube/config` that exists, else
/// `Err("No Kubernetes credentials found")`.
pub fn detect_credentials(
    kubeconfig_path: Option<&Path>,
    home: Option<&Path>,
) -> Result<String, String> {
    detect_credentials_in(Path::new(SERVICE_ACCOUNT_DIR), kubeconfig_path, home)
}

/// [`detect_credentials`] with the service-account directory given (for tests).
pub fn detect_credentials_in(
    service_account_dir: &Path,
    kubeconfig_path: Option<&Path>,
    home: Option<&Path>,
) -> Result<String, String> {
    if service_account_dir.join("token").is_file() && service_account_dir.join("ca.crt").is_file() {
        return Ok("in-cluster".to_owned());
    }
    let kubeconfig = match kubeconfig_path {
        Some(p) => Some(p.to_path_buf()),
        None => home.map(|h| h.join(".kube").join("config")),
    };
    match kubeconfig {
        Some(p) if p.is_file() => Ok(p.display().to_string()),
        _ => Err("No Kubernetes credentials found".to_owned()),
    }
}

/// What an API call was about, for error messages: `apply Deployment default/x`.
struct What<'a> {
    action: &'a str,
    kind: &'a str,
    namespace: &'a str,
    name: &'a str,
}

impl fmt::Display for What<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.name.is_empty() {
            write!(
                f,
                "{} {} in namespace {}",
                self.action, self.kind, self.namespace
            )
        } else {
            write!(
                f,
                "{} {} {}/{}",
                self.action, self.kind, self.namespace, self.name
            )
        }
    }
}

/// Maps a kube error on `what`: API answers name the action, object and HTTP status (409
/// is a conflict and 404 not found when the call was for `app_id`); transport failures are
/// `Unavailable`.
fn map_kube(e: kube::Error, what: &What<'_>, app_id: Option<&AppId>) -> BackendError {
    match e {
        kube::Error::Api(ref status) => {
            let detail = format!(
                "HTTP {} {}: {}",
                status.code,
                if status.reason.is_empty() {
                    "(no reason)"
                } else {
                    &status.reason
                },
                status.message
            );
            match (status.code, app_id) {
                (409, Some(app)) => BackendError::Conflict {
                    app_id: app.clone(),
                    reason: format!("Kubernetes API refused to {what}: {detail}"),
                },
                (404, Some(app)) => BackendError::NotFound {
                    app_id: app.clone(),
                },
                _ => BackendError::runtime_from(
                    format!("Kubernetes API refused to {what}: {detail}"),
                    e,
                ),
            }
        }
        kube::Error::SerdeError(_)
        | kube::Error::BuildRequest(_)
        | kube::Error::FromUtf8(_)
        | kube::Error::LinesCodecMaxLineLengthExceeded
        | kube::Error::HttpError(_) => {
            BackendError::runtime_from(format!("Kubernetes API call failed ({what}): {e}"), e)
        }
        other => BackendError::unavailable_from(
            format!("Kubernetes API server not reachable ({what}): {other}"),
            other,
        ),
    }
}

/// Maps an error of a server-side apply for `app_id`: like [`map_kube`], except that a 404
/// (the namespace does not exist) is a runtime error with the API's words, not "no such
/// node".
fn map_apply(e: kube::Error, what: &What<'_>, app_id: &AppId) -> BackendError {
    match e {
        kube::Error::Api(s) if s.code == 404 => map_kube(kube::Error::Api(s), what, None),
        other => map_kube(other, what, Some(app_id)),
    }
}

/// Whole seconds (rounded up) for display.
fn secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// The Kubernetes backend. Cheap to share behind an `Arc`.
pub struct KubernetesBackend {
    client: Client,
    config: KubernetesConfig,
    clock: Arc<dyn Clock>,
    /// The API server's URL, shown as the endpoint when available
    /// (docs/COMPATIBILITY.md#backend-detection).
    cluster_url: Option<String>,
}

impl fmt::Debug for KubernetesBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KubernetesBackend")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl KubernetesBackend {
    /// A backend on an existing client (tests build one for a fake API server).
    pub fn new(client: Client, config: KubernetesConfig) -> Self {
        KubernetesBackend {
            client,
            config,
            clock: Arc::new(SystemClock),
            cluster_url: None,
        }
    }

    /// A backend for the cluster of `kube_config` (no request is made yet).
    pub fn from_kube_config(
        kube_config: kube::Config,
        config: KubernetesConfig,
    ) -> Result<Self, BackendError> {
        crate::http::install_crypto_provider();
        let url = kube_config.cluster_url.to_string();
        let client = Client::try_from(kube_config).map_err(|e| {
            BackendError::unavailable_from(
                format!("cannot create a Kubernetes client for {url}: {e}"),
                e,
            )
        })?;
        let mut backend = KubernetesBackend::new(client, config);
        backend.cluster_url = Some(url);
        Ok(backend)
    }

    /// Finds credentials ([`client_config`]) and builds the backend; no request is made,
    /// so an unreachable API server shows in [`ContainerBackend::check_availability`].
    pub async fn connect(config: KubernetesConfig) -> Result<Self, BackendError> {
        let kube_config = client_config(&config).await?;
        KubernetesBackend::from_kube_config(kube_config, config)
    }

    /// Uses `clock` for "now" (the restart annotation).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The settings.
    pub fn config(&self) -> &KubernetesConfig {
        &self.config
    }

    /// The kube client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The objects a deploy of `node` applies (the same [`node_objects`] the manifests
    /// command prints).
    pub fn objects(&self, node: &NodeDeployment) -> Result<NodeObjects, BackendError> {
        node_objects(node, &self.config).map_err(|e| BackendError::runtime(e.to_string()))
    }

    fn deployments(&self) -> Api<Deployment> {
        Api::namespaced(self.client.clone(), &self.config.namespace)
    }

    fn services(&self) -> Api<Service> {
        Api::namespaced(self.client.clone(), &self.config.namespace)
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &self.config.namespace)
    }

    fn what<'a>(&'a self, action: &'a str, kind: &'a str, name: &'a str) -> What<'a> {
        What {
            action,
            kind,
            namespace: &self.config.namespace,
            name,
        }
    }

    fn apply_params(&self) -> PatchParams {
        // Force: after our own check that the object is ours, take back fields another
        // manager changed (e.g. `kubectl scale`), so a redeploy restores the node's spec.
        PatchParams::apply(&self.config.field_manager).force()
    }

    fn update_params(&self) -> PatchParams {
        PatchParams {
            field_manager: Some(self.config.field_manager.clone()),
            ..PatchParams::default()
        }
    }

    async fn list_deployments(&self, selector: &str) -> Result<Vec<Deployment>, BackendError> {
        let params = ListParams::default().labels(selector);
        let mut items = self
            .deployments()
            .list(&params)
            .await
            .map_err(|e| map_kube(e, &self.what("list", "Deployments", ""), None))?
            .items;
        items.sort_by_key(ResourceExt::name_any);
        Ok(items)
    }

    async fn list_pods(&self, selector: &str) -> Result<Vec<Pod>, BackendError> {
        let params = ListParams::default().labels(selector);
        Ok(self
            .pods()
            .list(&params)
            .await
            .map_err(|e| map_kube(e, &self.what("list", "Pods", ""), None))?
            .items)
    }

    /// Our Deployments of `app_id`, by name.
    async fn find(&self, app_id: &AppId) -> Result<Vec<Deployment>, BackendError> {
        self.list_deployments(&app_selector(app_id)).await
    }

    /// Our first Deployment of `app_id`, or `NotFound`.
    async fn find_one(&self, app_id: &AppId) -> Result<Deployment, BackendError> {
        self.find(app_id)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| BackendError::NotFound {
                app_id: app_id.clone(),
            })
    }

    /// The pods of `app_id`'s node, in any case (app-id labels are lower case here, see
    /// [`app_selector`]).
    async fn node_pods(&self, app_id: &AppId) -> Result<Vec<Pod>, BackendError> {
        self.list_pods(&format!(
            "{}={},{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}",
            labels::APP_ID,
            app_id.as_str().to_ascii_lowercase()
        ))
        .await
    }

    /// Fails with `Conflict` when `labels` do not mark the object as ours for `app_id`.
    fn check_ours(
        app_id: &AppId,
        kind: &str,
        name: &str,
        object_labels: &BTreeMap<String, String>,
    ) -> Result<(), BackendError> {
        let ours = is_managed(object_labels)
            && object_labels
                .get(labels::APP_ID)
                .is_some_and(|a| app_id.matches(a));
        if ours {
            Ok(())
        } else {
            Err(BackendError::Conflict {
                app_id: app_id.clone(),
                reason: format!(
                    "{kind} {name} exists but was not created by the orchestrator for this \
                     app-id; it is left alone"
                ),
            })
        }
    }

    /// Deletes a Deployment and waits (a watch) until it is gone, at most
    /// [`KubernetesConfig::delete_wait`].
    async fn delete_deployment(&self, app_id: &AppId, d: &Deployment) -> Result<(), BackendError> {
        let name = d.name_any();
        match self
            .deployments()
            .delete(&name, &DeleteParams::background())
            .await
        {
            Ok(_) => {}
            // Gone already.
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
            Err(e) => {
                return Err(map_kube(
                    e,
                    &self.what("delete", "Deployment", &name),
                    Some(app_id),
                ));
            }
        }
        let uid = d.uid().unwrap_or_default();
        let gone = await_condition(self.deployments(), &name, conditions::is_deleted(&uid));
        match tokio::time::timeout(self.config.delete_wait, gone).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::warn!(deployment = %name, error = %e, "could not watch the deletion")
            }
            Err(_) => tracing::warn!(
                deployment = %name,
                "still being deleted after {}s",
                secs(self.config.delete_wait)
            ),
        }
        Ok(())
    }

    /// Deletes our Services of `app_id`; returns their names.
    async fn delete_services(&self, app_id: &AppId) -> Result<Vec<String>, BackendError> {
        let params = ListParams::default().labels(&app_selector(app_id));
        let listed = self
            .services()
            .list(&params)
            .await
            .map_err(|e| map_kube(e, &self.what("list", "Services", ""), None))?
            .items;
        let mut deleted = Vec::new();
        for s in listed {
            let name = s.name_any();
            match self
                .services()
                .delete(&name, &DeleteParams::background())
                .await
            {
                Ok(_) => deleted.push(name),
                Err(kube::Error::Api(st)) if st.code == 404 => {}
                Err(e) => {
                    return Err(map_kube(
                        e,
                        &self.what("delete", "Service", &name),
                        Some(app_id),
                    ));
                }
            }
        }
        Ok(deleted)
    }

    /// Waits (a watch through `kube`'s `await_condition`, no polling) until `app_id`'s
    /// Deployment has rolled out its latest spec with every replica ready and available.
    /// Fails after `timeout` with what keeps it from being ready.
    pub async fn wait_until_available(
        &self,
        app_id: &AppId,
        timeout: Duration,
    ) -> Result<(), BackendError> {
        let d = self.find_one(app_id).await?;
        let name = d.name_any();
        let rolled_out = |obj: Option<&Deployment>| obj.is_some_and(is_rolled_out);
        let wait = await_condition(self.deployments(), &name, rolled_out);
        match tokio::time::timeout(timeout, wait).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(BackendError::unavailable(format!(
                "watching Deployment {}/{name} failed: {e}",
                self.config.namespace
            ))),
            Err(_) => {
                let why = match (self.find_one(app_id).await, self.node_pods(app_id).await) {
                    (Ok(d), Ok(pods)) => state::failure(&d, &pods).unwrap_or_else(|| {
                        format!(
                            "{} of {} replicas ready",
                            ready_replicas(&d),
                            desired_replicas(&d)
                        )
                    }),
                    (Err(e), _) | (_, Err(e)) => e.to_string(),
                };
                Err(BackendError::runtime(format!(
                    "Deployment {}/{name} not available after {}s: {why}",
                    self.config.namespace,
                    secs(timeout)
                )))
            }
        }
    }

    fn check_replicas(&self, operation: BackendOperation, n: u32) -> Result<(), BackendError> {
        if n > self.config.max_replicas {
            return Err(BackendError::Unsupported {
                operation,
                reason: format!(
                    "{n} replicas exceed the limit of {}",
                    self.config.max_replicas
                ),
            });
        }
        Ok(())
    }

    fn info(d: &Deployment, pods: &[Pod]) -> ContainerInfo {
        let object_labels = d.labels().clone();
        let app = object_labels
            .get(labels::APP_ID)
            .cloned()
            .unwrap_or_else(|| d.name_any());
        ContainerInfo {
            app_id: AppId::new(app),
            service_name: object_labels
                .get(labels::SERVICE)
                .cloned()
                .unwrap_or_default(),
            name: d.name_any(),
            backend_id: d.uid().unwrap_or_default(),
            image: template_image(d),
            status: node_status(d, pods),
            instances: ready_replicas(d),
            created_at: d.metadata.creation_timestamp.as_ref().map(timestamp),
            // Kubernetes records no stop time for a Deployment scaled to 0.
            stopped_at: None,
            labels: object_labels,
        }
    }
}

/// The image of a Deployment's first container.
fn template_image(d: &Deployment) -> String {
    d.spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|p| p.containers.first())
        .and_then(|c| c.image.clone())
        .unwrap_or_default()
}

#[async_trait]
impl ContainerBackend for KubernetesBackend {
    fn backend_type(&self) -> BackendType {
        BackendType::Kubernetes
    }

    async fn check_availability(&self) -> Availability {
        match self.client.apiserver_version().await {
            Ok(info) => Availability {
                available: true,
                // The endpoint: which cluster and namespace the nodes would go to.
                reason: Some(match &self.cluster_url {
                    Some(url) => format!("{url} (namespace {})", self.config.namespace),
                    None => format!("namespace {}", self.config.namespace),
                }),
                version: Some(info.git_version),
            },
            Err(e) => {
                let reason = match map_kube(e, &self.what("read", "version", ""), None) {
                    BackendError::Unavailable { reason, .. } => reason,
                    other => other.to_string(),
                };
                Availability::unavailable(reason)
            }
        }
    }

    async fn deploy_node(&self, node: &NodeDeployment) -> Result<DeployedNode, BackendError> {
        let objects = self.objects(node)?;
        self.check_replicas(BackendOperation::Deploy, node.replicas)?;
        let app = &node.app_id;
        let name = objects.deployment_name().to_owned();
        let service_name = objects.service_name().to_owned();

        // Never take over an object of that name that is not ours.
        let existing = self
            .deployments()
            .get_opt(&name)
            .await
            .map_err(|e| map_kube(e, &self.what("read", "Deployment", &name), Some(app)))?;
        if let Some(d) = &existing {
            Self::check_ours(app, "Deployment", &name, d.labels())?;
        }
        let existing_service =
            self.services().get_opt(&service_name).await.map_err(|e| {
                map_kube(e, &self.what("read", "Service", &service_name), Some(app))
            })?;
        if let Some(s) = &existing_service {
            Self::check_ours(app, "Service", &service_name, s.labels())?;
        }

        // One node per app-id: our Deployments of this app-id under another name (deployed
        // for another service name) select the same pods, so they go first.
        let mut replaced = existing.is_some();
        for other in self.find(app).await? {
            if other.name_any() != name {
                self.delete_deployment(app, &other).await?;
                replaced = true;
            }
        }

        let applied = self
            .deployments()
            .patch(
                &name,
                &self.apply_params(),
                &Patch::Apply(&objects.deployment),
            )
            .await
            .map_err(|e| map_apply(e, &self.what("apply", "Deployment", &name), app))?;
        self.services()
            .patch(
                &service_name,
                &self.apply_params(),
                &Patch::Apply(&objects.service),
            )
            .await
            .map_err(|e| map_apply(e, &self.what("apply", "Service", &service_name), app))?;

        if let Some(timeout) = self.config.deploy_wait {
            self.wait_until_available(app, timeout).await?;
        }
        Ok(DeployedNode {
            app_id: app.clone(),
            message: format!(
                "Service {} deployed as Deployment {}/{name} with Service {service_name}",
                node.service_name, self.config.namespace
            ),
            name,
            backend_id: applied.uid().unwrap_or_default(),
            replaced,
        })
    }

    async fn teardown(
        &self,
        app_id: &AppId,
        _options: &TeardownOptions,
    ) -> Result<TeardownResult, BackendError> {
        // Pods stop with their own terminationGracePeriodSeconds when their Deployment goes;
        // the API has no per-deletion grace for a Deployment's pods. We create no volumes.
        let found = self.find(app_id).await?;
        if found.is_empty() {
            return Err(BackendError::NotFound {
                app_id: app_id.clone(),
            });
        }
        let mut stopped = Vec::new();
        for d in &found {
            self.delete_deployment(app_id, d).await?;
            stopped.push(d.name_any());
        }
        let services = self.delete_services(app_id).await?;
        tracing::debug!(app_id = %app_id, ?services, "deleted the node's Services");
        Ok(TeardownResult {
            app_id: app_id.clone(),
            stopped,
            removed_volumes: Vec::new(),
        })
    }

    async fn scale(&self, app_id: &AppId, replicas: u32) -> Result<ScaleResult, BackendError> {
        let d = self.find_one(app_id).await?;
        self.check_replicas(BackendOperation::Scale, replicas)?;
        let name = d.name_any();
        let scale = self.deployments().get_scale(&name).await.map_err(|e| {
            map_kube(
                e,
                &self.what("read the scale of", "Deployment", &name),
                Some(app_id),
            )
        })?;
        let previous = scale
            .spec
            .and_then(|s| s.replicas)
            .map_or(1, |n| u32::try_from(n).unwrap_or(0));
        let patch = serde_json::json!({ "spec": { "replicas": replicas } });
        self.deployments()
            .patch_scale(&name, &self.update_params(), &Patch::Merge(&patch))
            .await
            .map_err(|e| map_kube(e, &self.what("scale", "Deployment", &name), Some(app_id)))?;
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
        // `kubectl rollout restart`: a new pod template annotation rolls every pod, keeping
        // the node available (whatever the priority; pods stop with their own grace).
        let d = self.find_one(app_id).await?;
        let name = d.name_any();
        let now = self
            .clock
            .now()
            .as_datetime()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let count = state::ours(&d).saturating_add(1);
        let patch = serde_json::json!({
            "metadata": { "annotations": { RESTART_COUNT_ANNOTATION: count.to_string() } },
            "spec": { "template": { "metadata": { "annotations": {
                RESTARTED_AT_ANNOTATION: now,
            } } } }
        });
        self.deployments()
            .patch(&name, &self.update_params(), &Patch::Strategic(&patch))
            .await
            .map_err(|e| map_kube(e, &self.what("restart", "Deployment", &name), Some(app_id)))?;
        tracing::info!(app_id = %app_id, deployment = %name, reason = %options.reason, "rollout restart");
        Ok(RestartOutcome {
            current_instances: desired_replicas(&d),
            strategy: RestartStrategy::Rolling,
        })
    }

    async fn status(&self, app_id: &AppId) -> Result<ContainerStatusReport, BackendError> {
        let d = self.find_one(app_id).await?;
        let pods = self.node_pods(app_id).await?;
        let status = node_status(&d, &pods);
        Ok(ContainerStatusReport {
            app_id: app_id.clone(),
            status,
            instances: ready_replicas(&d),
            desired_replicas: desired_replicas(&d),
            started_at: pods.iter().filter_map(pod_started_at).max(),
            stopped_at: None,
            restart_count: restart_count(&d, &pods),
            labels: d.labels().clone(),
        })
    }

    async fn list(&self) -> Result<Vec<ContainerInfo>, BackendError> {
        let deployments = self.list_deployments(&managed_selector()).await?;
        let pods = self
            .list_pods(&format!("{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}"))
            .await?;
        let mut by_app: BTreeMap<String, Vec<Pod>> = BTreeMap::new();
        for p in pods {
            if let Some(app) = p.labels().get(labels::APP_ID).cloned() {
                by_app.entry(app).or_default().push(p);
            }
        }
        Ok(deployments
            .iter()
            .map(|d| {
                let app = d.labels().get(labels::APP_ID).cloned().unwrap_or_default();
                let pods = by_app.get(&app).map(Vec::as_slice).unwrap_or_default();
                Self::info(d, pods)
            })
            .collect())
    }

    async fn logs(&self, app_id: &AppId, query: &LogQuery) -> Result<Vec<LogLine>, BackendError> {
        self.find_one(app_id).await?;
        let pods = self.node_pods(app_id).await?;
        let Some(pod) = log_pod(&pods) else {
            return Ok(Vec::new());
        };
        let name = pod.name_any();
        // `tail` is the API's when no time window is asked; with one it applies after the
        // exact filtering below. `since` is sent as `sinceTime`; `until` is filtered here.
        let windowed = query.since.is_some() || query.until.is_some();
        let params = LogParams {
            container: Some(manifest::CONTAINER_NAME.to_owned()),
            timestamps: true,
            tail_lines: query.tail.filter(|_| !windowed).map(i64::from),
            // Whole seconds, rounded down (widened; the exact bound is applied below).
            since_time: query.since.and_then(|t| {
                k8s_openapi::jiff::Timestamp::from_second(t.unix_millis().div_euclid(1000)).ok()
            }),
            ..LogParams::default()
        };
        let text = self.pods().logs(&name, &params).await.map_err(|e| {
            map_kube(
                e,
                &self.what("read the logs of", "Pod", &name),
                Some(app_id),
            )
        })?;
        let mut assembler = LogAssembler::new(self.clock.now());
        assembler.push(LogStreamType::Stdout, text.as_bytes());
        Ok(select(assembler.finish(), query))
    }

    async fn list_infrastructure(&self) -> Result<Vec<InfrastructureInfo>, BackendError> {
        let all = self
            .deployments()
            .list(&ListParams::default())
            .await
            .map_err(|e| map_kube(e, &self.what("list", "Deployments", ""), None))?
            .items;
        Ok(all
            .iter()
            .filter(|d| is_infrastructure(&d.name_any()) || is_infrastructure(&template_image(d)))
            .map(|d| InfrastructureInfo {
                name: d.name_any(),
                image: template_image(d),
                status: node_status(d, &[]),
                backend_id: d.uid().unwrap_or_default(),
            })
            .collect())
    }

    async fn prune(
        &self,
        targets: &BTreeSet<CleanTarget>,
        older_than: Option<Duration>,
    ) -> Result<PruneReport, BackendError> {
        self.client
            .apiserver_version()
            .await
            .map_err(|e| map_kube(e, &self.what("read", "version", ""), None))?;
        let targets = expand_clean_targets(&targets.iter().copied().collect::<Vec<_>>());
        let mut report = PruneReport::default();
        if targets.contains(&CleanTarget::Containers) {
            if older_than.is_some() {
                // No stop time on Kubernetes: nothing is known to be old enough (D12).
            } else {
                match self.list_deployments(&managed_selector()).await {
                    Ok(all) => {
                        for d in all {
                            let app = AppId::new(
                                d.labels().get(labels::APP_ID).cloned().unwrap_or_default(),
                            );
                            if node_status(&d, &[]) != ContainerStatusType::Stopped {
                                continue;
                            }
                            let result = match self.delete_deployment(&app, &d).await {
                                Ok(()) => self.delete_services(&app).await.map(drop),
                                Err(e) => Err(e),
                            };
                            match result {
                                Ok(()) => report.removed.push(PrunedItem {
                                    target: CleanTarget::Containers,
                                    id: d.name_any(),
                                }),
                                Err(e) => report.errors.push(PruneFailure {
                                    target: CleanTarget::Containers,
                                    id: Some(d.name_any()),
                                    message: e.to_string(),
                                }),
                            }
                        }
                    }
                    Err(e) => report.errors.push(PruneFailure {
                        target: CleanTarget::Containers,
                        id: None,
                        message: e.to_string(),
                    }),
                }
            }
        }
        if targets.contains(&CleanTarget::Volumes) {
            report.errors.push(PruneFailure {
                target: CleanTarget::Volumes,
                id: None,
                message: "volume pruning is not supported on Kubernetes; manage \
                          PersistentVolumeClaims directly"
                    .to_owned(),
            });
        }
        // Networks (CNI) and images (kubelet garbage collection): nothing to do.
        Ok(report)
    }
}

#[cfg(test)]
mod tests;

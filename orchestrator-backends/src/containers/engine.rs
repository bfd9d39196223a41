//! The Docker Engine API as the Docker, Swarm and Portainer backends share it (bollard):
//! the client, error mapping, a node's environment, our network, finding our objects of an
//! app-id, the availability message and the label-limited prune.
//!
//! Invariants: only objects carrying `bannou.orchestrator-managed=true` are ever found,
//! changed or pruned; transport failures are [`BackendError::Unavailable`], engine answers
//! to a valid request [`BackendError::Runtime`]; a prune reports per-item failures and
//! fails only when the engine cannot be reached.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::time::Duration;

use bollard::Docker;
use bollard::errors::Error as DockerError;
use bollard::models::{ImageInspect, NetworkCreateRequest};
use bollard::query_parameters::{
    InspectNetworkOptions, PruneImagesOptions, PruneNetworksOptions, PruneVolumesOptions,
};
use orchestrator_core::Timestamp;
use orchestrator_core::api::enums::{CleanTarget, RestartStrategy};
use orchestrator_core::names::AppId;
use orchestrator_core::ports::backend::{
    Availability, BackendError, BackendOperation, NodeDeployment, PruneFailure, PruneReport,
    PrunedItem, docker_injected_environment, expand_clean_targets, labels,
};
use orchestrator_core::time::Clock;

use super::docker::model::NETWORK_LABEL;
use super::image::IMAGE_MANAGED_LABEL;
use super::mounts::NodeMounts;

/// The variable that sets a node's listen address (`bannou-host serve` reads it; a plain
/// node needs no API token to listen beyond loopback); we set `0.0.0.0:{node_port}`.
pub const LISTEN_VARIABLE: &str = "ORCHESTRATOR_LISTEN";

/// A client for `host` (`None`: bollard's local defaults, which honour `DOCKER_HOST`); no
/// request is made yet.
pub fn connect(host: Option<&str>) -> Result<Docker, BackendError> {
    let result = match host {
        None => Docker::connect_with_local_defaults(),
        Some(h) => Docker::connect_with_host(h),
    };
    result.map_err(|e| {
        BackendError::unavailable_from(format!("cannot create a Docker client: {e}"), e)
    })
}

/// Like [`connect`], then agrees on the API version with the engine (older engines, such as
/// Debian's 20.10 with API 1.41, reject newer paths). Fails when the engine does not answer.
pub async fn connect_negotiated(host: Option<&str>) -> Result<Docker, BackendError> {
    connect(host)?.negotiate_version().await.map_err(map_err)
}

/// Like [`connect_negotiated`], but an engine that does not answer still gives a client
/// (a backend built on it reports itself unavailable instead of failing to build).
pub(crate) async fn connect_lenient(host: Option<&str>) -> Result<Docker, BackendError> {
    let docker = connect(host)?;
    Ok(match docker.clone().negotiate_version().await {
        Ok(d) => d,
        Err(_) => docker,
    })
}

/// Maps a bollard error: transport failures are `Unavailable`, engine answers `Runtime`.
pub(crate) fn map_err(e: DockerError) -> BackendError {
    match e {
        DockerError::DockerResponseServerError {
            status_code,
            ref message,
        } => {
            let text = format!("Docker API error ({status_code}): {message}");
            BackendError::runtime_from(text, e)
        }
        DockerError::JsonDataError { .. }
        | DockerError::JsonSerdeError { .. }
        | DockerError::APIVersionParseError {}
        | DockerError::DockerStreamError { .. }
        | DockerError::DockerContainerWaitError { .. } => {
            BackendError::runtime_from(e.to_string(), e)
        }
        other => BackendError::unavailable_from(other.to_string(), other),
    }
}

/// True for an engine answer with `status`.
pub(crate) fn is_status(e: &DockerError, status: u16) -> bool {
    matches!(e, DockerError::DockerResponseServerError { status_code, .. } if *status_code == status)
}

/// Whole seconds for Docker's stop timeouts (rounded up, at most `i32::MAX`).
pub(crate) fn seconds(d: Duration) -> i32 {
    let s = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    i32::try_from(s).unwrap_or(i32::MAX)
}

/// Why the engine is unusable, from the error of its first request.
pub(crate) fn unreachable(e: DockerError) -> Availability {
    let reason = match map_err(e) {
        BackendError::Unavailable { reason, .. } => {
            format!("Docker socket not accessible: {reason}")
        }
        other => format!("Docker API error: {other}"),
    };
    Availability::unavailable(reason)
}

/// The wall clock, for orphan detection and prune thresholds.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_datetime(chrono::Utc::now())
    }
}

/// What a node's environment is layered from on our Docker-engine backends.
#[derive(Debug, Clone, Copy)]
pub struct EnvironmentInputs<'a> {
    /// The control plane's app-id.
    pub orchestrator_app_id: &'a AppId,
    /// Port nodes listen on inside their container.
    pub node_port: u16,
    /// What every node mounts (certificates change the injected variables).
    pub mounts: &'a NodeMounts,
    /// Variables above the injected ones and below the node's own.
    pub extra: &'a BTreeMap<String, String>,
}

/// The [`EnvironmentInputs`] of a backend's settings (`DockerConfig` and `SwarmConfig`
/// name these fields alike).
macro_rules! environment_inputs {
    ($config:expr) => {
        $crate::containers::engine::EnvironmentInputs {
            orchestrator_app_id: &$config.orchestrator_app_id,
            node_port: $config.node_port,
            mounts: &$config.mounts,
            extra: &$config.extra_environment,
        }
    };
}
pub(crate) use environment_inputs;

/// The environment of a node on our Docker-engine backends (standalone and Swarm):
/// [`docker_injected_environment`] under `ORCHESTRATOR_LISTEN=0.0.0.0:{node_port}`, then
/// `extra` and the node's own environment on top (later wins).
pub fn layered_environment(
    node: &NodeDeployment,
    inputs: EnvironmentInputs<'_>,
) -> BTreeMap<String, String> {
    let mut caller = BTreeMap::from([(
        LISTEN_VARIABLE.to_owned(),
        format!("0.0.0.0:{}", inputs.node_port),
    )]);
    caller.extend(inputs.extra.clone());
    caller.extend(node.environment.clone());
    docker_injected_environment(
        &node.app_id,
        inputs.orchestrator_app_id,
        inputs.mounts.certificates_mounted(),
        &caller,
    )
}

/// The label filter value that marks our objects.
pub(crate) fn managed_filter_value() -> String {
    format!("{}={}", labels::MANAGED, labels::MANAGED_VALUE)
}

/// Label filters of our nodes' workloads: managed and carrying an app-id (both are on
/// everything a deploy creates).
pub(crate) fn workload_filters() -> Vec<String> {
    vec![managed_filter_value(), labels::APP_ID.to_owned()]
}

/// The labels of objects we create that belong to no node (the network, the logs
/// volume): just `bannou.orchestrator-managed=true`.
pub fn shared_labels() -> HashMap<String, String> {
    HashMap::from([(labels::MANAGED.to_owned(), labels::MANAGED_VALUE.to_owned())])
}

/// Those of `all` whose app-id label (read by `app_label`) is `app_id`. App-ids compare
/// without case and the label keeps the spelling a node was deployed with, so this filter
/// is ours, not the engine's (an exact match).
pub(crate) fn of_app<T>(
    all: Vec<T>,
    app_id: &AppId,
    app_label: impl Fn(&T) -> Option<&str>,
) -> Vec<T> {
    all.into_iter()
        .filter(|x| app_label(x).is_some_and(|a| app_id.matches(a)))
        .collect()
}

/// `found`, or `NotFound` when empty.
pub(crate) fn some_or_not_found<T>(found: Vec<T>, app_id: &AppId) -> Result<Vec<T>, BackendError> {
    if found.is_empty() {
        return Err(BackendError::NotFound {
            app_id: app_id.clone(),
        });
    }
    Ok(found)
}

/// How a restart replaced a node's processes: one after another, or all at once.
pub(crate) fn restart_strategy(rolling: bool) -> RestartStrategy {
    if rolling {
        RestartStrategy::Rolling
    } else {
        RestartStrategy::Simultaneous
    }
}

/// `Unsupported` when `replicas` exceeds `max`.
pub(crate) fn check_max_replicas(replicas: u32, max: u32) -> Result<(), BackendError> {
    if replicas > max {
        return Err(BackendError::Unsupported {
            operation: BackendOperation::Scale,
            reason: format!("{replicas} replicas exceed the limit of {max}"),
        });
    }
    Ok(())
}

/// The local image `image`; a missing one is a `Runtime` error saying how to build it,
/// followed by `hint`.
pub(crate) async fn local_image(
    docker: &Docker,
    image: &str,
    hint: &str,
) -> Result<ImageInspect, BackendError> {
    match docker.inspect_image(image).await {
        Ok(i) => Ok(i),
        Err(e) if is_status(&e, 404) => Err(BackendError::runtime(format!(
            "Docker image '{image}' not found locally. Build it with \
                 scripts/build-image.sh (bannou-host image build) before deploying{hint}."
        ))),
        Err(e) => Err(map_err(e)),
    }
}

/// What we know about our network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkInfo {
    /// Its name.
    pub name: String,
    /// Its id.
    pub id: String,
    /// Gateway address: the host as seen from the containers (where a Redis or control
    /// plane on the host is reached).
    pub gateway: Option<IpAddr>,
    /// Its subnet, e.g. `172.18.0.0/16`.
    pub subnet: Option<String>,
    /// True when it carries our managed label (we created it).
    pub managed: bool,
    /// True when this call created it.
    pub created: bool,
}

/// The network every node of a backend joins: found by name, created labelled as ours
/// (`bannou.orchestrator-managed=true`, `bannou.network={name}`) when missing, one creation
/// at a time.
#[derive(Debug)]
pub(crate) struct OurNetwork {
    name: String,
    /// Driver of a network we create; with `driver_required`, an existing one must have it.
    driver: &'static str,
    driver_required: bool,
    attachable: bool,
    lock: tokio::sync::Mutex<()>,
}

impl OurNetwork {
    /// A bridge network: an existing network of that name is used whatever its driver.
    pub(crate) fn bridge(name: String) -> Self {
        OurNetwork {
            name,
            driver: "bridge",
            driver_required: false,
            attachable: false,
            lock: tokio::sync::Mutex::new(()),
        }
    }

    /// An attachable overlay network: an existing network of that name must be overlay.
    pub(crate) fn overlay(name: String) -> Self {
        OurNetwork {
            name,
            driver: "overlay",
            driver_required: true,
            attachable: true,
            lock: tokio::sync::Mutex::new(()),
        }
    }

    /// The network and its driver, if it exists.
    async fn inspect(
        &self,
        docker: &Docker,
    ) -> Result<Option<(NetworkInfo, String)>, BackendError> {
        match docker
            .inspect_network(&self.name, None::<InspectNetworkOptions>)
            .await
        {
            Ok(n) => {
                let ipam = n
                    .ipam
                    .and_then(|i| i.config)
                    .and_then(|c| c.into_iter().next());
                let info = NetworkInfo {
                    name: n.name.unwrap_or_else(|| self.name.clone()),
                    id: n.id.unwrap_or_default(),
                    gateway: ipam
                        .as_ref()
                        .and_then(|c| c.gateway.as_deref())
                        .and_then(|g| g.parse().ok()),
                    subnet: ipam.and_then(|c| c.subnet),
                    managed: n
                        .labels
                        .as_ref()
                        .and_then(|l| l.get(labels::MANAGED))
                        .is_some_and(|v| v.eq_ignore_ascii_case(labels::MANAGED_VALUE)),
                    created: false,
                };
                Ok(Some((info, n.driver.unwrap_or_default())))
            }
            Err(e) if is_status(&e, 404) => Ok(None),
            Err(e) => Err(map_err(e)),
        }
    }

    /// The network, if it exists.
    pub(crate) async fn info(&self, docker: &Docker) -> Result<Option<NetworkInfo>, BackendError> {
        Ok(self.inspect(docker).await?.map(|(info, _)| info))
    }

    /// The network, created when missing. An existing network of that name is used as it
    /// is, whoever created it (and is then never pruned by us).
    pub(crate) async fn ensure(&self, docker: &Docker) -> Result<NetworkInfo, BackendError> {
        let _guard = self.lock.lock().await;
        if let Some((info, driver)) = self.inspect(docker).await? {
            if self.driver_required && driver != self.driver {
                return Err(BackendError::runtime(format!(
                    "network {} exists as a {driver} network; Swarm services need an \
                         {} network (set another network name)",
                    info.name, self.driver
                )));
            }
            return Ok(info);
        }
        let request = NetworkCreateRequest {
            name: self.name.clone(),
            driver: Some(self.driver.to_owned()),
            attachable: self.attachable.then_some(true),
            labels: Some({
                let mut l = shared_labels();
                l.insert(NETWORK_LABEL.to_owned(), self.name.clone());
                l
            }),
            ..Default::default()
        };
        docker.create_network(request).await.map_err(map_err)?;
        let (mut info, _) = self.inspect(docker).await?.ok_or_else(|| {
            BackendError::runtime(format!("network {} vanished after creation", self.name))
        })?;
        info.created = true;
        Ok(info)
    }
}

/// Records the outcome of removing workload `id` (our containers or services).
pub(crate) fn record_removal(
    report: &mut PruneReport,
    id: String,
    result: Result<(), BackendError>,
) {
    match result {
        Ok(()) => report.removed.push(PrunedItem {
            target: CleanTarget::Containers,
            id,
        }),
        Err(e) => report.errors.push(PruneFailure {
            target: CleanTarget::Containers,
            id: Some(id),
            message: e.to_string(),
        }),
    }
}

/// The workloads listed for a prune, or the failure recorded in `report`.
pub(crate) fn listed_or_recorded<T>(
    report: &mut PruneReport,
    listed: Result<T, BackendError>,
) -> Option<T> {
    match listed {
        Ok(x) => Some(x),
        Err(e) => {
            report.errors.push(PruneFailure {
                target: CleanTarget::Containers,
                id: None,
                message: e.to_string(),
            });
            None
        }
    }
}

/// True when a workload stopped at `stopped` may be pruned at `now` with `older_than`
/// (D12: only a real stop time older than the threshold; every one without a threshold).
pub(crate) fn old_enough(
    stopped: Option<Timestamp>,
    now: Timestamp,
    older_than: Option<Duration>,
) -> bool {
    match older_than {
        None => true,
        Some(threshold) => stopped.is_some_and(|at| now.saturating_since(at) > threshold),
    }
}

/// A backend's prune (see `ContainerBackend::prune`): fails only when the engine does not
/// answer; `workloads` removes the backend's own stopped workloads first (for
/// `Containers`), so networks and volumes they held can go in the same call; then
/// networks, volumes and images, limited to our labels.
pub(crate) async fn prune(
    docker: &Docker,
    targets: &BTreeSet<CleanTarget>,
    workloads: impl AsyncFnOnce(&mut PruneReport),
) -> Result<PruneReport, BackendError> {
    docker.ping().await.map_err(map_err)?;
    let targets = expand_clean_targets(&targets.iter().copied().collect::<Vec<_>>());
    let mut report = PruneReport::default();
    if targets.contains(&CleanTarget::Containers) {
        workloads(&mut report).await;
    }
    for target in [
        CleanTarget::Networks,
        CleanTarget::Volumes,
        CleanTarget::Images,
    ] {
        if targets.contains(&target) {
            prune_engine_target(docker, target, &mut report).await;
        }
    }
    Ok(report)
}

/// Filter on our managed label.
fn managed_filter() -> HashMap<String, Vec<String>> {
    HashMap::from([("label".to_owned(), vec![managed_filter_value()])])
}

/// Prunes one of `Networks`, `Volumes`, `Images` on the engine, limited to our labels
/// (images: `bannou.orchestrator-image=true` and dangling); failures go into `report`.
async fn prune_engine_target(docker: &Docker, target: CleanTarget, report: &mut PruneReport) {
    let fail = |report: &mut PruneReport, e: DockerError| {
        report.errors.push(PruneFailure {
            target,
            id: None,
            message: map_err(e).to_string(),
        })
    };
    let reclaimed = |bytes: Option<i64>| bytes.and_then(|b| u64::try_from(b).ok()).unwrap_or(0);
    let ids = |ids: Vec<String>| ids.into_iter().map(move |id| PrunedItem { target, id });
    match target {
        CleanTarget::Networks => {
            let options = PruneNetworksOptions {
                filters: Some(managed_filter()),
            };
            match docker.prune_networks(Some(options)).await {
                Ok(r) => report
                    .removed
                    .extend(ids(r.networks_deleted.unwrap_or_default())),
                Err(e) => fail(report, e),
            }
        }
        CleanTarget::Volumes => {
            let mut filters = managed_filter();
            // API 1.42+ prunes only anonymous volumes unless `all=true`.
            let v = docker.client_version();
            if (v.major_version, v.minor_version) >= (1, 42) {
                filters.insert("all".to_owned(), vec!["true".to_owned()]);
            }
            let options = PruneVolumesOptions {
                filters: Some(filters),
            };
            match docker.prune_volumes(Some(options)).await {
                Ok(r) => {
                    report.reclaimed_bytes += reclaimed(r.space_reclaimed);
                    report
                        .removed
                        .extend(ids(r.volumes_deleted.unwrap_or_default()));
                }
                Err(e) => fail(report, e),
            }
        }
        CleanTarget::Images => {
            // Images carry their own marker (containers inherit image labels).
            let filters = HashMap::from([
                (
                    "label".to_owned(),
                    vec![format!("{IMAGE_MANAGED_LABEL}=true")],
                ),
                ("dangling".to_owned(), vec!["true".to_owned()]),
            ]);
            let options = PruneImagesOptions {
                filters: Some(filters),
            };
            match docker.prune_images(Some(options)).await {
                Ok(r) => {
                    report.reclaimed_bytes += reclaimed(r.space_reclaimed);
                    let deleted = r.images_deleted.unwrap_or_default();
                    report
                        .removed
                        .extend(ids(deleted.into_iter().filter_map(|i| i.deleted).collect()));
                }
                Err(e) => fail(report, e),
            }
        }
        CleanTarget::Containers | CleanTarget::All => {}
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A client of an address nothing answers on (no request succeeds).
    pub(crate) fn unanswered_client() -> Docker {
        connect(Some("tcp://127.0.0.1:9")).unwrap()
    }

    #[test]
    fn environment_layers_injected_listen_extra_then_node() {
        let extra = BTreeMap::from([
            (
                "ORCHESTRATOR_REDIS_CONNECTION_STRING".to_owned(),
                "r:1".to_owned(),
            ),
            ("DAEMON_MODE".to_owned(), "extra".to_owned()),
        ]);
        let (app, mounts) = (AppId::control_plane(), NodeMounts::default());
        let inputs = EnvironmentInputs {
            orchestrator_app_id: &app,
            node_port: 8081,
            mounts: &mounts,
            extra: &extra,
        };
        let mut node = NodeDeployment::new(AppId::from("n1"), "auth", "bannou:test");
        node.environment
            .insert("AUTH_SERVICE_ENABLED".into(), "true".into());
        let env = layered_environment(&node, inputs);
        assert_eq!(env["BANNOU_APP_ID"], "n1");
        assert_eq!(env["BANNOU_HTTP_ENDPOINT"], "http://bannou");
        assert_eq!(env["BANNOU_MAPPING_SOURCE_APP_ID"], "bannou");
        assert_eq!(env[LISTEN_VARIABLE], "0.0.0.0:8081");
        assert_eq!(env["ORCHESTRATOR_REDIS_CONNECTION_STRING"], "r:1");
        assert_eq!(env["DAEMON_MODE"], "extra", "extra environment wins");
        assert_eq!(env["AUTH_SERVICE_ENABLED"], "true");
        assert!(
            !env.keys().any(|k| k.contains('-')),
            "no upstream junk keys"
        );
        assert!(!env.contains_key("SSL_CERT_DIR"), "no certificates mounted");
        node.environment
            .insert(LISTEN_VARIABLE.into(), "0.0.0.0:9".into());
        assert_eq!(
            layered_environment(&node, inputs)[LISTEN_VARIABLE],
            "0.0.0.0:9",
            "the node's own environment wins"
        );
    }

    #[test]
    fn grace_rounds_up_to_whole_seconds() {
        assert_eq!(seconds(Duration::ZERO), 0);
        assert_eq!(seconds(Duration::from_millis(1)), 1);
        assert_eq!(seconds(Duration::from_secs(10)), 10);
        assert_eq!(seconds(Duration::from_secs(u64::MAX)), i32::MAX);
    }

    #[test]
    fn errors_map_to_unavailable_or_runtime() {
        let e = map_err(DockerError::DockerResponseServerError {
            status_code: 500,
            message: "boom".into(),
        });
        assert!(matches!(&e, BackendError::Runtime { message, .. } if message.contains("boom")));
        let cause = std::error::Error::source(&e).expect("the engine's error is kept");
        assert!(cause.downcast_ref::<DockerError>().is_some(), "{cause:?}");
        let e = map_err(DockerError::SocketNotFoundError("/x".into()));
        assert!(matches!(e, BackendError::Unavailable { .. }));
        let cause = std::error::Error::source(&e).expect("the engine's error is kept");
        assert!(
            matches!(
                cause.downcast_ref::<DockerError>(),
                Some(DockerError::SocketNotFoundError(_))
            ),
            "{cause:?}"
        );
    }

    #[test]
    fn shared_objects_carry_only_the_managed_label() {
        let l = shared_labels();
        assert_eq!(l.len(), 1);
        assert_eq!(l[labels::MANAGED], "true");
    }

    #[test]
    fn only_a_real_stop_time_past_the_threshold_is_old_enough() {
        let now = Timestamp::from_unix_millis(100_000);
        let at = Timestamp::from_unix_millis(40_000);
        let minute = Some(Duration::from_secs(60));
        assert!(
            old_enough(None, now, None),
            "no threshold: every stopped one"
        );
        assert!(!old_enough(None, now, minute), "no stop time: kept");
        assert!(!old_enough(Some(at), now, minute), "exactly 60 s: kept");
        assert!(old_enough(Some(at), now, Some(Duration::from_secs(59))));
    }

    #[test]
    fn replica_limit_names_both_numbers() {
        assert!(check_max_replicas(4, 4).is_ok());
        let err = check_max_replicas(5, 4).unwrap_err();
        assert!(
            matches!(&err, BackendError::Unsupported { reason, .. } if reason == "5 replicas exceed the limit of 4"),
            "{err:?}"
        );
    }
}

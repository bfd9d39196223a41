//! The host's configuration in one typed place: every `ORCHESTRATOR_*` property of
//! docs/COMPATIBILITY.md#configuration-variables (upstream names, defaults and ranges), the
//! `BANNOU_*` host settings the control plane reads, and our own settings (listen address,
//! API token, deploy wave timeout and parallelism, pool autoscaling, leader election).
//!
//! Names and defaults are declared once, in [`vars`]; [`HostConfig::from_env`] (in
//! `reader`) is their one reader (D59 (docs/DECISIONS.md#d59)). Fields are public so the
//! CLI can apply flag overrides after reading the environment. Errors are [`ConfigError`],
//! the variables with no effect here are [`NO_EFFECT`].
//!
//! Two opt-ins differ from upstream, where the defaults name hosts that only exist in
//! upstream's compose network:
//! - **Redis** is used only when `ORCHESTRATOR_REDIS_CONNECTION_STRING` (or `--redis`) is
//!   given; otherwise state, leases and the bus are in memory (D15 (docs/DECISIONS.md#d15)).
//!   Upstream's default `bannou-redis:6379` is never used (upstream ignores the property
//!   too; docs/COMPATIBILITY.md#configuration-variables).
//! - **OpenResty cache invalidation** runs only when `ORCHESTRATOR_OPENRESTY_HOST` is set.
//! - `ORCHESTRATOR_PRESETS_HOST_PATH` defaults to `presets` in the working directory, as
//!   the CLI's `plan` does, instead of upstream's container path.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use orchestrator_backends::containers::mounts::NodeMounts;
use orchestrator_core::AppId;
use orchestrator_core::events::BackendType;
use orchestrator_core::health::HealthConfig;
use orchestrator_routing::broadcast::DEFAULT_COALESCE_WINDOW;
use orchestrator_routing::invalidation::InvalidationConfigError;
use orchestrator_routing::{BroadcastPolicy, OpenRestyConfig};

use crate::orchestrator::leader::ElectorConfig;
use crate::orchestrator::pool_scaler::ScalerConfig;
use crate::orchestrator::service::ServiceSettings;

mod error;
mod no_effect;
mod reader;
mod secret;
pub mod vars;

pub use error::ConfigError;
pub use no_effect::{NO_EFFECT, NoEffect, no_effect_line};
pub use reader::{normalize_redis_url, parse_bool};
pub use secret::Secret;

/// Default listen address: loopback only (D31 (docs/DECISIONS.md#d31)).
pub const DEFAULT_LISTEN: &str = vars::LISTEN.default;

/// Upstream's certificates directory, mounted into nodes when it exists here and
/// `ORCHESTRATOR_CERTIFICATES_HOST_PATH` is unset.
pub const DEFAULT_CERTIFICATES_HOST_PATH: &str = "/app/provisioning/certificates";

/// Everything the host and its orchestrator read at start. See the module docs for the
/// sources; each field's doc names its variable, default and constraint.
#[derive(Debug, Clone)]
pub struct HostConfig {
    // === upstream properties (docs/COMPATIBILITY.md#configuration-variables) ===
    /// `ORCHESTRATOR_SECURE_WEBSOCKET` (true): no effect ([`NO_EFFECT`] says why).
    pub secure_websocket: bool,
    /// `ORCHESTRATOR_DEFAULT_BACKEND` (ours: `in-process`, the embedded default; upstream
    /// `compose`): the backend of a deploy that names none before any deploy happened.
    /// Any spelling of `kubernetes|portainer|swarm|compose` (and our `in-process`).
    /// `compose` (Docker) needs Redis: containers heartbeat through it, so the host
    /// refuses to start with `compose` and in-memory state.
    pub default_backend: BackendType,
    /// `ORCHESTRATOR_HEARTBEAT_TIMEOUT_SECONDS` (90, >= 1): health expiry.
    pub heartbeat_timeout: Duration,
    /// `ORCHESTRATOR_DEGRADATION_THRESHOLD_MINUTES` (5, >= 1): should-restart.
    pub degradation_threshold: Duration,
    /// `ORCHESTRATOR_PORTAINER_URL` (none).
    pub portainer_url: Option<String>,
    /// `ORCHESTRATOR_PORTAINER_API_KEY` (none): Portainer `X-API-Key`.
    pub portainer_api_key: Option<Secret>,
    /// `ORCHESTRATOR_PORTAINER_ENDPOINT_ID` (1, >= 1).
    pub portainer_endpoint_id: u32,
    /// `ORCHESTRATOR_PORTAINER_REQUEST_TIMEOUT_SECONDS` (30, >= 1).
    pub portainer_request_timeout: Duration,
    /// `ORCHESTRATOR_DOCKER_IMAGE_NAME` (`bannou:latest`): the image of every node.
    pub docker_image_name: String,
    /// `ORCHESTRATOR_DOCKER_HOST` (`unix:///var/run/docker.sock`).
    pub docker_host: String,
    /// `ORCHESTRATOR_DOCKER_NETWORK` (`bannou_default`): the Compose network.
    pub docker_network: String,
    /// `ORCHESTRATOR_CERTIFICATES_HOST_PATH` (none: upstream's
    /// `/app/provisioning/certificates` when that directory exists here): the host
    /// directory every Docker and Swarm node mounts read-only at `/certificates`, with
    /// `SSL_CERT_DIR=/certificates` in its environment. A relative path is taken from the
    /// working directory. See [`HostConfig::node_mounts`].
    pub certificates_host_path: Option<PathBuf>,
    /// `ORCHESTRATOR_PRESETS_HOST_PATH` (ours: `presets`; upstream
    /// `/app/provisioning/orchestrator/presets`): where presets are looked up by name.
    pub presets_host_path: PathBuf,
    /// `ORCHESTRATOR_LOGS_VOLUME` (`logs-data`): the named volume every Docker and Swarm
    /// node mounts writable at `/app/logs` (created with our label when missing).
    pub logs_volume_name: String,
    /// `ORCHESTRATOR_OPENRESTY_HOST` (`openresty`); invalidation runs only when set, and
    /// a value that is not a host name is a start-up error.
    pub openresty_host: String,
    /// Whether `ORCHESTRATOR_OPENRESTY_HOST` was given (cache invalidation on).
    pub openresty_enabled: bool,
    /// `ORCHESTRATOR_OPENRESTY_PORT` (80, 1-65535).
    pub openresty_port: u16,
    /// `ORCHESTRATOR_OPENRESTY_REQUEST_TIMEOUT_SECONDS` (5, >= 1).
    pub openresty_request_timeout: Duration,
    /// `ORCHESTRATOR_KUBERNETES_NAMESPACE` (`default`).
    pub kubernetes_namespace: String,
    /// `ORCHESTRATOR_KUBECONFIG_PATH` (none: `~/.kube/config`).
    pub kubeconfig_path: Option<PathBuf>,
    /// `ORCHESTRATOR_HEARTBEAT_TTL_SECONDS` (90, >= 1): no effect ([`NO_EFFECT`]).
    pub heartbeat_ttl: Duration,
    /// `ORCHESTRATOR_ROUTING_TTL_SECONDS` (300, >= 1).
    pub routing_ttl: Duration,
    /// `ORCHESTRATOR_CONFIG_HISTORY_TTL_DAYS` (30, >= 1).
    pub config_history_ttl: Duration,
    /// `ORCHESTRATOR_RESTART_TIMEOUT_SECONDS` (120, >= 1).
    pub restart_timeout: Duration,
    /// `ORCHESTRATOR_HEALTH_CHECK_INTERVAL_MS` (2000, >= 100).
    pub health_check_interval: Duration,
    /// `ORCHESTRATOR_DEFAULT_WAIT_BEFORE_KILL_SECONDS` (30, >= 1).
    pub default_wait_before_kill: Duration,
    /// `ORCHESTRATOR_CONTAINER_STATUS_POLL_INTERVAL_SECONDS` (2, >= 1): while a deploy
    /// waits for a wave's heartbeats, how often it asks the backend whether a pending
    /// node's container still runs.
    pub container_status_poll_interval: Duration,
    /// `ORCHESTRATOR_FULL_MAPPINGS_INTERVAL_SECONDS` (30, >= 1): periodic rebroadcast.
    pub full_mappings_interval: Duration,
    /// `ORCHESTRATOR_ORPHAN_CONTAINER_THRESHOLD_HOURS` (24, >= 1), honoured (D12).
    pub orphan_container_threshold: Duration,
    /// `ORCHESTRATOR_INDEX_UPDATE_MAX_RETRIES` (3, >= 1): no effect ([`NO_EFFECT`]).
    pub index_update_max_retries: u32,
    /// `ORCHESTRATOR_DEFAULT_POOL_LEASE_TIMEOUT_SECONDS` (300, >= 1): no effect
    /// ([`NO_EFFECT`]), as upstream for every valid request.
    pub default_pool_lease_timeout: Duration,
    /// `ORCHESTRATOR_POOL_LOCK_TIMEOUT_SECONDS` (15, >= 1): no effect ([`NO_EFFECT`]).
    pub pool_lock_timeout: Duration,
    /// `ORCHESTRATOR_LEASE_CLEANUP_INTERVAL_SECONDS` (60, >= 10): longest sleep of the
    /// lease reaper.
    pub lease_cleanup_interval: Duration,
    /// `ORCHESTRATOR_DEFAULT_SERVICE_PORT` (80, 1-65535).
    pub default_service_port: u16,
    /// `ORCHESTRATOR_REDIS_CONNECTION_STRING` (none: in-memory adapters). A bare
    /// `host:port` gets `redis://` prepended.
    pub redis_url: Option<String>,
    /// `ORCHESTRATOR_NODE_REDIS_URL` (ours; none): the Redis URL handed to the containers
    /// the Docker backend starts, which cannot reach the host's loopback. Unset: the
    /// orchestrator's own URL with a loopback host (`127.0.0.1`, `localhost`, `::1`)
    /// replaced by our Docker network's gateway, where the Redis server must listen too.
    pub node_redis_url: Option<String>,
    /// `ORCHESTRATOR_REDIS_TLS_CA_FILE`, `_CERT_FILE`, `_KEY_FILE` (ours; none): the CA
    /// and client certificate of a `rediss://` (or `?tls=true`) Redis URL, PEM files.
    pub redis_tls: orchestrator_backends::redis::url::TlsFiles,
    /// `ORCHESTRATOR_REDIS_WAIT_REPLICAS` (ours; 0, at most 16): every lease operation
    /// waits (`WAIT`) until this many replicas have its writes, so a Sentinel failover
    /// loses no acknowledged grant (docs/DECISIONS.md#d44).
    pub redis_wait_replicas: u32,
    /// `ORCHESTRATOR_REDIS_WAIT_TIMEOUT_MS` (ours; 500, 1-60000): how long such a wait
    /// lasts before the operation answers unavailable.
    pub redis_wait_timeout: Duration,

    // === host settings ===
    /// `BANNOU_APP_ID` (`bannou`): the effective app-id.
    pub app_id: AppId,
    /// `BANNOU_HEARTBEAT_ENABLED` (true).
    pub heartbeat_enabled: bool,
    /// `BANNOU_HEARTBEAT_INTERVAL_SECONDS` (30, >= 1).
    pub heartbeat_interval: Duration,

    // === ours ===
    /// `ORCHESTRATOR_LISTEN` / `--listen` (`127.0.0.1:8080`).
    pub listen: SocketAddr,
    /// `ORCHESTRATOR_API_TOKEN` / `--api-token` (none): bearer token every API route but
    /// `/health` requires. Mandatory when `listen` is not loopback.
    pub api_token: Option<Secret>,
    /// `ORCHESTRATOR_WAVE_TIMEOUT_SECONDS` / `--wave-timeout` (120, >= 1): how long a
    /// deploy waits for one wave's heartbeats.
    pub wave_timeout: Duration,
    /// `ORCHESTRATOR_ROUTING_ACK_TIMEOUT_SECONDS` (10, 0..=600): how long a change that
    /// stops nodes waits for the live consumers to apply its routes (D58).
    pub routing_ack_timeout: Duration,
    /// `ORCHESTRATOR_DEPLOY_PARALLELISM` (8, >= 1): nodes of one wave deployed at once.
    pub deploy_parallelism: usize,
    /// `ORCHESTRATOR_POOL_AUTOSCALE` (true), `ORCHESTRATOR_POOL_AUTOSCALE_INTERVAL_SECONDS`
    /// (5), `ORCHESTRATOR_POOL_DRAIN_TIMEOUT_SECONDS` (300) and the worker image
    /// (`ORCHESTRATOR_DOCKER_IMAGE_NAME`).
    pub scaler: ScalerConfig,
    /// `ORCHESTRATOR_LEADER_LEASE_SECONDS` (10, >= 2): the leader lease of the replicas
    /// sharing one Redis; renewed every third of it. Unused with in-memory adapters (one
    /// process, always leader).
    pub leader_lease: Duration,
    /// `ORCHESTRATOR_LEADER_ID_PREFIX` (none: the app-id): names this replica in the
    /// leader election's logs and `/health` (`{prefix}-{uuid}`), e.g. the pod name.
    pub leader_id_prefix: Option<String>,
    /// `ORCHESTRATOR_RECONCILE_INTERVAL_SECONDS` (30; 0 = only once, when the replica
    /// starts leading): how often the leader reconciles what runs with what the store
    /// records (`orchestrator::service` reconcile).
    pub reconcile_interval: Duration,
    /// `ORCHESTRATOR_RECONCILE_GRACE_SECONDS` (60): reconciliation never removes a
    /// container created, nor restarts a Pending pool worker registered, less than this ago.
    pub reconcile_grace: Duration,
    /// The process environment, filtered by the whitelist of
    /// docs/COMPATIBILITY.md#forwarding-whitelist when a node's environment is built.
    /// Filled by [`HostConfig::from_process_env`]; empty otherwise. Not masked by `Debug`:
    /// clear it before logging a configuration.
    pub host_environment: BTreeMap<String, String>,
    /// The variables of [`NO_EFFECT`] the environment sets (filled by
    /// [`HostConfig::from_env`]).
    pub no_effect: Vec<NoEffect>,
}

impl Default for HostConfig {
    /// Every default of docs/COMPATIBILITY.md#configuration-variables plus ours, from
    /// [`vars`] (the one table of names and defaults).
    fn default() -> Self {
        HostConfig {
            secure_websocket: vars::SECURE_WEBSOCKET.default,
            default_backend: vars::DEFAULT_BACKEND.default,
            heartbeat_timeout: vars::HEARTBEAT_TIMEOUT.default,
            degradation_threshold: vars::DEGRADATION_THRESHOLD.default,
            portainer_url: None,
            portainer_api_key: None,
            portainer_endpoint_id: vars::PORTAINER_ENDPOINT_ID.default,
            portainer_request_timeout: vars::PORTAINER_REQUEST_TIMEOUT.default,
            docker_image_name: vars::DOCKER_IMAGE_NAME.default.to_owned(),
            docker_host: vars::DOCKER_HOST.default.to_owned(),
            docker_network: vars::DOCKER_NETWORK.default.to_owned(),
            certificates_host_path: None,
            presets_host_path: PathBuf::from(vars::PRESETS_HOST_PATH.default),
            logs_volume_name: vars::LOGS_VOLUME.default.to_owned(),
            openresty_host: vars::OPENRESTY_HOST.default.to_owned(),
            openresty_enabled: false,
            openresty_port: vars::OPENRESTY_PORT.default,
            openresty_request_timeout: vars::OPENRESTY_REQUEST_TIMEOUT.default,
            kubernetes_namespace: vars::KUBERNETES_NAMESPACE.default.to_owned(),
            kubeconfig_path: None,
            heartbeat_ttl: vars::HEARTBEAT_TTL.default,
            routing_ttl: vars::ROUTING_TTL.default,
            config_history_ttl: vars::CONFIG_HISTORY_TTL.default,
            restart_timeout: vars::RESTART_TIMEOUT.default,
            health_check_interval: vars::HEALTH_CHECK_INTERVAL.default,
            default_wait_before_kill: vars::DEFAULT_WAIT_BEFORE_KILL.default,
            container_status_poll_interval: vars::CONTAINER_STATUS_POLL_INTERVAL.default,
            full_mappings_interval: vars::FULL_MAPPINGS_INTERVAL.default,
            orphan_container_threshold: vars::ORPHAN_CONTAINER_THRESHOLD.default,
            index_update_max_retries: vars::INDEX_UPDATE_MAX_RETRIES.default,
            default_pool_lease_timeout: vars::DEFAULT_POOL_LEASE_TIMEOUT.default,
            pool_lock_timeout: vars::POOL_LOCK_TIMEOUT.default,
            lease_cleanup_interval: vars::LEASE_CLEANUP_INTERVAL.default,
            default_service_port: vars::DEFAULT_SERVICE_PORT.default,
            redis_url: None,
            node_redis_url: None,
            redis_tls: Default::default(),
            redis_wait_replicas: vars::REDIS_WAIT_REPLICAS.default,
            redis_wait_timeout: vars::REDIS_WAIT_TIMEOUT.default,
            app_id: AppId::control_plane(),
            heartbeat_enabled: vars::HEARTBEAT_ENABLED.default,
            heartbeat_interval: vars::HEARTBEAT_INTERVAL.default,
            listen: DEFAULT_LISTEN
                .parse()
                .expect("valid default listen address"),
            api_token: None,
            wave_timeout: vars::WAVE_TIMEOUT.default,
            routing_ack_timeout: vars::ROUTING_ACK_TIMEOUT.default,
            deploy_parallelism: vars::DEPLOY_PARALLELISM.default,
            scaler: ScalerConfig::default(),
            leader_lease: vars::LEADER_LEASE.default,
            leader_id_prefix: None,
            reconcile_interval: vars::RECONCILE_INTERVAL.default,
            reconcile_grace: vars::RECONCILE_GRACE.default,
            host_environment: BTreeMap::new(),
            no_effect: Vec::new(),
        }
    }
}

impl HostConfig {
    /// A copy fit for a log line: Redis URLs with their password as `***` and the copied
    /// process environment (which may hold other services' secrets) left out. The API
    /// token and other [`Secret`]s mask themselves.
    pub fn for_log(&self) -> HostConfig {
        let redact = |url: &Option<String>| {
            url.as_deref()
                .map(orchestrator_backends::redis::url::redact)
        };
        HostConfig {
            redis_url: redact(&self.redis_url),
            node_redis_url: redact(&self.node_redis_url),
            host_environment: BTreeMap::new(),
            ..self.clone()
        }
    }

    /// Whether the API may listen on `listen`: loopback always, anything else only with an
    /// API token (D31 (docs/DECISIONS.md#d31)).
    pub fn check_exposure(&self) -> Result<(), ConfigError> {
        if self.listen.ip().is_loopback() || self.api_token.is_some() {
            Ok(())
        } else {
            Err(ConfigError::ExposedWithoutToken {
                listen: self.listen,
            })
        }
    }

    /// Whether the orchestrator may run here: the effective app-id must be `bannou` in
    /// any case (docs/COMPATIBILITY.md#placement-and-identity).
    pub fn check_app_id(&self) -> Result<(), ConfigError> {
        check_app_id(&self.app_id)
    }

    /// The settings the use cases read.
    pub fn service_settings(&self) -> ServiceSettings {
        ServiceSettings {
            control_plane_app_id: AppId::control_plane(),
            default_backend: self.default_backend,
            heartbeat_timeout: self.heartbeat_timeout,
            wave_timeout: self.wave_timeout,
            routing_ack_timeout: self.routing_ack_timeout,
            deploy_parallelism: self.deploy_parallelism,
            degradation_threshold: self.degradation_threshold,
            routing_ttl: self.routing_ttl,
            config_history_ttl: self.config_history_ttl,
            restart_timeout: self.restart_timeout,
            health_check_interval: self.health_check_interval,
            default_wait_before_kill: self.default_wait_before_kill,
            container_status_poll_interval: self.container_status_poll_interval,
            default_service_port: self.default_service_port,
            image: self.docker_image_name.clone(),
            orphan_threshold: self.orphan_container_threshold,
            presets_dir: self.presets_host_path.clone(),
            host_environment: self.host_environment.clone(),
            openresty: self.openresty(),
        }
    }

    /// OpenResty cache invalidation settings when enabled, or the error naming the variable
    /// and value the invalidation client refuses ([`HostConfig::from_env`] fails with it).
    pub fn checked_openresty(&self) -> Result<Option<OpenRestyConfig>, ConfigError> {
        if !self.openresty_enabled {
            return Ok(None);
        }
        OpenRestyConfig::new(
            self.openresty_host.clone(),
            self.openresty_port,
            self.openresty_request_timeout,
        )
        .map(Some)
        .map_err(|e| {
            let (name, value) = match &e {
                InvalidationConfigError::BadHost(h) => (vars::OPENRESTY_HOST.name, h.clone()),
                InvalidationConfigError::ZeroPort => {
                    (vars::OPENRESTY_PORT.name, self.openresty_port.to_string())
                }
                InvalidationConfigError::TimeoutTooShort(t) => (
                    vars::OPENRESTY_REQUEST_TIMEOUT.name,
                    t.as_secs().to_string(),
                ),
            };
            ConfigError::invalid(name, &value, e.to_string())
        })
    }

    /// OpenResty cache invalidation settings, when enabled. A configuration read by
    /// [`HostConfig::from_env`] is valid; one whose OpenResty fields were changed afterwards
    /// to invalid values gets `None` and a logged error.
    pub fn openresty(&self) -> Option<OpenRestyConfig> {
        self.checked_openresty()
            .inspect_err(|e| tracing::error!("OpenResty cache invalidation is off: {e}"))
            .ok()
            .flatten()
    }

    /// What every Docker and Swarm node mounts: the logs volume, and the certificates
    /// directory when one is configured or, unset, when upstream's default directory
    /// exists on this machine (otherwise none, and no `SSL_CERT_DIR`). Presets are not
    /// mounted: only the control plane reads them.
    pub fn node_mounts(&self) -> NodeMounts {
        self.node_mounts_with(|p| p.is_dir())
    }

    /// [`HostConfig::node_mounts`] with `is_dir` telling whether a directory exists here.
    fn node_mounts_with(&self, is_dir: impl Fn(&Path) -> bool) -> NodeMounts {
        let certificates = match &self.certificates_host_path {
            Some(p) => Some(std::path::absolute(p).unwrap_or_else(|_| p.clone())),
            None => {
                let default = Path::new(DEFAULT_CERTIFICATES_HOST_PATH);
                is_dir(default).then(|| default.to_path_buf())
            }
        };
        NodeMounts {
            logs_volume: Some(self.logs_volume_name.clone()),
            certificates_host_path: certificates,
            presets_host_path: None,
        }
    }

    /// Logs once, as a warning, the variables of [`NO_EFFECT`] that were set (see
    /// [`HostConfig::no_effect`]); nothing when none was.
    pub fn log_no_effect(&self) {
        if let Some(line) = no_effect_line(&self.no_effect) {
            tracing::warn!("{line}");
        }
    }

    /// The health aggregator's timing rules.
    pub fn health_config(&self) -> HealthConfig {
        HealthConfig::new(self.heartbeat_timeout, self.degradation_threshold).unwrap_or_default()
    }

    /// The mappings broadcast policy: the default coalescing window and
    /// `FullMappingsIntervalSeconds` between rebroadcasts.
    pub fn broadcast_policy(&self) -> BroadcastPolicy {
        BroadcastPolicy::new(DEFAULT_COALESCE_WINDOW, self.full_mappings_interval)
            .unwrap_or_default()
    }

    /// The leader elector's settings: a fresh candidate id `{prefix}-{uuid}` (prefix
    /// `leader_id_prefix`, else the app-id) and the lease.
    pub fn elector_config(&self) -> ElectorConfig {
        let prefix = self
            .leader_id_prefix
            .clone()
            .unwrap_or_else(|| self.app_id.as_str().to_owned());
        ElectorConfig::new(&prefix, self.leader_lease)
    }

    /// The pool scaler's settings, with the worker image following
    /// `docker_image_name` (which a flag may have overridden).
    pub fn scaler_config(&self) -> ScalerConfig {
        ScalerConfig {
            default_image: self.docker_image_name.clone(),
            ..self.scaler.clone()
        }
    }
}

/// docs/COMPATIBILITY.md#placement-and-identity: the orchestrator runs only on app-id
/// `bannou` (case-insensitive).
pub fn check_app_id(app_id: &AppId) -> Result<(), ConfigError> {
    if app_id.is_control_plane() {
        Ok(())
    } else {
        Err(ConfigError::WrongAppId {
            app_id: app_id.as_str().to_owned(),
        })
    }
}

#[cfg(test)]
mod tests;

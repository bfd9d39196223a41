//! The one reader of the host's environment variables (D59 (docs/DECISIONS.md#d59)):
//! [`HostConfig::from_env`] reads every setting of [`vars`] through a lookup function, so
//! tests pass a map; [`HostConfig::from_process_env`] is the one call that reads the real
//! environment. A value that does not parse or is out of range is an error naming the
//! variable and the value, never silently the default.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use orchestrator_backends::containers::portainer::check_base_url;
use orchestrator_core::AppId;

use super::{ConfigError, HostConfig, NO_EFFECT, Secret, vars};

/// Reads variables through `get`, trimming values; a blank value counts as set (and is
/// rejected where a value is required).
struct Env<F> {
    get: F,
}

impl<F: Fn(&str) -> Option<String>> Env<F> {
    fn raw(&self, name: &str) -> Option<String> {
        (self.get)(name)
    }

    /// A non-nullable string: absent keeps the default; blank is an error
    /// (docs/COMPATIBILITY.md#configuration-variables).
    fn string(&self, name: &str, into: &mut String) -> Result<(), ConfigError> {
        if let Some(v) = self.raw(name) {
            let t = v.trim();
            if t.is_empty() {
                return Err(ConfigError::invalid(name, &v, "must not be empty"));
            }
            *into = t.to_owned();
        }
        Ok(())
    }

    /// A nullable string: absent or blank is `None`.
    fn optional(&self, name: &str) -> Option<String> {
        self.raw(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    fn boolean(&self, name: &str, into: &mut bool) -> Result<(), ConfigError> {
        if let Some(v) = self.raw(name) {
            *into = parse_bool(&v)
                .ok_or_else(|| ConfigError::invalid(name, &v, "expected true or false"))?;
        }
        Ok(())
    }

    /// A whole number in `min..=max`.
    fn number(&self, name: &str, min: u64, max: u64) -> Result<Option<u64>, ConfigError> {
        let Some(v) = self.raw(name) else {
            return Ok(None);
        };
        let n: u64 = v.trim().parse().map_err(|_| {
            ConfigError::invalid(name, &v, format!("expected a whole number >= {min}"))
        })?;
        if n < min {
            return Err(ConfigError::invalid(
                name,
                &v,
                format!("must be at least {min}"),
            ));
        }
        if n > max {
            return Err(ConfigError::invalid(
                name,
                &v,
                format!("must be at most {max}"),
            ));
        }
        Ok(Some(n))
    }

    /// A duration setting: a number of its unit or a `humantime` duration
    /// ([`vars::DurationSetting::parse`]).
    fn duration(
        &self,
        setting: &vars::DurationSetting,
        into: &mut Duration,
    ) -> Result<(), ConfigError> {
        if let Some(v) = self.raw(setting.name) {
            *into = setting.parse(&v)?;
        }
        Ok(())
    }

    fn port(&self, name: &str, into: &mut u16) -> Result<(), ConfigError> {
        if let Some(n) = self.number(name, 1, 65_535)? {
            *into = n as u16;
        }
        Ok(())
    }
}

/// `true|false|1|0|yes|no|on|off`, any case.
pub fn parse_bool(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// `redis://` is prepended to a bare `host:port` (upstream's spelling of the property).
pub fn normalize_redis_url(value: &str) -> String {
    let v = value.trim();
    if v.contains("://") {
        v.to_owned()
    } else {
        format!("redis://{v}")
    }
}

impl HostConfig {
    /// Reads the configuration through `get` (a variable name to its value). Absent
    /// variables keep their defaults; the first bad value is an error naming it.
    /// `host_environment` stays empty (see [`HostConfig::from_process_env`]).
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env { get };
        let mut c = HostConfig::default();

        env.boolean(vars::SECURE_WEBSOCKET.name, &mut c.secure_websocket)?;
        if let Some(v) = env.raw(vars::DEFAULT_BACKEND.name) {
            c.default_backend = v.trim().parse().map_err(|_| {
                ConfigError::invalid(
                    vars::DEFAULT_BACKEND.name,
                    &v,
                    "expected one of kubernetes, portainer, swarm, compose, in-process",
                )
            })?;
        }
        env.duration(&vars::HEARTBEAT_TIMEOUT, &mut c.heartbeat_timeout)?;
        env.duration(&vars::DEGRADATION_THRESHOLD, &mut c.degradation_threshold)?;
        c.portainer_url = env.optional(vars::PORTAINER_URL);
        if let Some(url) = &c.portainer_url {
            check_base_url(url)
                .map_err(|why| ConfigError::invalid(vars::PORTAINER_URL, url, why))?;
        }
        c.portainer_api_key = env.optional(vars::PORTAINER_API_KEY).map(Secret::new);
        if let Some(n) = env.number(vars::PORTAINER_ENDPOINT_ID.name, 1, u64::from(u32::MAX))? {
            c.portainer_endpoint_id = n as u32;
        }
        env.duration(
            &vars::PORTAINER_REQUEST_TIMEOUT,
            &mut c.portainer_request_timeout,
        )?;
        env.string(vars::DOCKER_IMAGE_NAME.name, &mut c.docker_image_name)?;
        env.string(vars::DOCKER_HOST.name, &mut c.docker_host)?;
        env.string(vars::DOCKER_NETWORK.name, &mut c.docker_network)?;
        let mut path = String::new();
        env.string(vars::CERTIFICATES_HOST_PATH, &mut path)?;
        if !path.is_empty() {
            c.certificates_host_path = Some(PathBuf::from(std::mem::take(&mut path)));
        }
        env.string(vars::PRESETS_HOST_PATH.name, &mut path)?;
        if !path.is_empty() {
            c.presets_host_path = PathBuf::from(std::mem::take(&mut path));
        }
        env.string(vars::LOGS_VOLUME.name, &mut c.logs_volume_name)?;
        if env.raw(vars::OPENRESTY_HOST.name).is_some() {
            env.string(vars::OPENRESTY_HOST.name, &mut c.openresty_host)?;
            c.openresty_enabled = true;
        }
        env.port(vars::OPENRESTY_PORT.name, &mut c.openresty_port)?;
        env.duration(
            &vars::OPENRESTY_REQUEST_TIMEOUT,
            &mut c.openresty_request_timeout,
        )?;
        env.string(vars::KUBERNETES_NAMESPACE.name, &mut c.kubernetes_namespace)?;
        c.kubeconfig_path = env.optional(vars::KUBECONFIG_PATH).map(PathBuf::from);
        env.duration(&vars::HEARTBEAT_TTL, &mut c.heartbeat_ttl)?;
        env.duration(&vars::ROUTING_TTL, &mut c.routing_ttl)?;
        env.duration(&vars::CONFIG_HISTORY_TTL, &mut c.config_history_ttl)?;
        env.duration(&vars::RESTART_TIMEOUT, &mut c.restart_timeout)?;
        env.duration(&vars::HEALTH_CHECK_INTERVAL, &mut c.health_check_interval)?;
        env.duration(
            &vars::DEFAULT_WAIT_BEFORE_KILL,
            &mut c.default_wait_before_kill,
        )?;
        env.duration(
            &vars::CONTAINER_STATUS_POLL_INTERVAL,
            &mut c.container_status_poll_interval,
        )?;
        env.duration(&vars::FULL_MAPPINGS_INTERVAL, &mut c.full_mappings_interval)?;
        env.duration(
            &vars::ORPHAN_CONTAINER_THRESHOLD,
            &mut c.orphan_container_threshold,
        )?;
        if let Some(n) = env.number(vars::INDEX_UPDATE_MAX_RETRIES.name, 1, u64::from(u32::MAX))? {
            c.index_update_max_retries = n as u32;
        }
        env.duration(
            &vars::DEFAULT_POOL_LEASE_TIMEOUT,
            &mut c.default_pool_lease_timeout,
        )?;
        env.duration(&vars::POOL_LOCK_TIMEOUT, &mut c.pool_lock_timeout)?;
        env.duration(&vars::LEASE_CLEANUP_INTERVAL, &mut c.lease_cleanup_interval)?;
        env.port(vars::DEFAULT_SERVICE_PORT.name, &mut c.default_service_port)?;
        c.redis_url = env
            .optional(vars::REDIS_CONNECTION_STRING)
            .map(|v| normalize_redis_url(&v));
        c.node_redis_url = env
            .optional(vars::NODE_REDIS_URL)
            .map(|v| normalize_redis_url(&v));
        c.redis_tls =
            orchestrator_backends::redis::url::TlsFiles::from_env(|name| env.optional(name));
        if let Some(n) = env.number(vars::REDIS_WAIT_REPLICAS.name, 0, 16)? {
            c.redis_wait_replicas = n as u32;
        }
        env.duration(&vars::REDIS_WAIT_TIMEOUT, &mut c.redis_wait_timeout)?;
        if let Some(url) = &c.redis_url {
            orchestrator_backends::redis::url::RedisUrl::parse(url).map_err(|e| {
                let shown = orchestrator_backends::redis::url::redact(url);
                ConfigError::invalid(vars::REDIS_CONNECTION_STRING, &shown, e.to_string())
            })?;
        }

        // Host settings.
        if let Some(v) = env.optional(vars::APP_ID) {
            c.app_id = AppId::from(v);
        }
        env.boolean(vars::HEARTBEAT_ENABLED.name, &mut c.heartbeat_enabled)?;
        env.duration(&vars::HEARTBEAT_INTERVAL, &mut c.heartbeat_interval)?;

        // Ours.
        if let Some(v) = env.raw(vars::LISTEN.name) {
            c.listen = v.trim().parse().map_err(|_| {
                ConfigError::invalid(
                    vars::LISTEN.name,
                    &v,
                    "expected an address and port, e.g. 127.0.0.1:8080",
                )
            })?;
        }
        c.api_token = env.optional(vars::API_TOKEN).map(Secret::new);
        env.duration(&vars::WAVE_TIMEOUT, &mut c.wave_timeout)?;
        env.duration(&vars::ROUTING_ACK_TIMEOUT, &mut c.routing_ack_timeout)?;
        if let Some(n) = env.number(vars::DEPLOY_PARALLELISM.name, 1, 1024)? {
            c.deploy_parallelism = n as usize;
        }
        env.boolean(vars::POOL_AUTOSCALE.name, &mut c.scaler.autoscale)?;
        env.duration(&vars::POOL_AUTOSCALE_INTERVAL, &mut c.scaler.interval)?;
        env.duration(&vars::POOL_DRAIN_TIMEOUT, &mut c.scaler.drain_timeout)?;
        c.scaler.default_image = c.docker_image_name.clone();
        env.duration(&vars::LEADER_LEASE, &mut c.leader_lease)?;
        c.leader_id_prefix = env.optional(vars::LEADER_ID_PREFIX);
        env.duration(&vars::RECONCILE_INTERVAL, &mut c.reconcile_interval)?;
        env.duration(&vars::RECONCILE_GRACE, &mut c.reconcile_grace)?;
        c.checked_openresty()?;
        c.no_effect = NO_EFFECT
            .iter()
            .filter(|v| env.raw(v.name).is_some())
            .copied()
            .collect();
        Ok(c)
    }

    /// Reads the process environment (the one place that does) and keeps a copy of it in
    /// `host_environment` for the forwarding whitelist
    /// (docs/COMPATIBILITY.md#forwarding-whitelist).
    pub fn from_process_env() -> Result<Self, ConfigError> {
        let vars: BTreeMap<String, String> = std::env::vars().collect();
        let mut c = Self::from_env(|name| vars.get(name).cloned())?;
        c.host_environment = vars;
        Ok(c)
    }
}

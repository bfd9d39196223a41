//! Every setting's environment variable name and default, declared once: the reader
//! ([`super::HostConfig::from_env`]), [`super::HostConfig::default`], the pool scaler's
//! defaults and the CLI flags all take them from here (D59 (docs/DECISIONS.md#d59)).
//! A default the backends or the routing crate also need (network, namespace, ports,
//! Portainer and OpenResty timeouts, image) is their constant, taken here, not a copy.
//! A setting without a default (unset means off or none) is a bare name constant.

use std::time::Duration;

use orchestrator_backends::containers::{DEFAULT_NODE_PORT, docker, image, kubernetes, portainer};
use orchestrator_core::events::BackendType;
use orchestrator_routing::invalidation::{
    DEFAULT_OPENRESTY_HOST, DEFAULT_OPENRESTY_PORT, DEFAULT_OPENRESTY_TIMEOUT,
};

use crate::orchestrator::leader::{DEFAULT_LEADER_LEASE, MIN_LEADER_LEASE};

/// A setting: its variable and the value when the variable is unset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting<T> {
    /// The environment variable.
    pub name: &'static str,
    /// The value when it is unset.
    pub default: T,
}

/// A duration setting. Its variable takes a whole number of `unit` (the upstream form,
/// e.g. `_SECONDS` variables take seconds) or a `humantime` duration (`90s`, `2m 30s`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurationSetting {
    /// The environment variable.
    pub name: &'static str,
    /// The value when it is unset.
    pub default: Duration,
    /// What a plain number counts.
    pub unit: Duration,
    /// The smallest value accepted.
    pub min: Duration,
    /// The largest value accepted (`None`: `u32::MAX` units).
    pub max: Option<Duration>,
}

const SECOND: Duration = Duration::from_secs(1);
const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);
const MILLISECOND: Duration = Duration::from_millis(1);

const fn seconds(name: &'static str, default: u64, min: u64) -> DurationSetting {
    DurationSetting {
        name,
        default: Duration::from_secs(default),
        unit: SECOND,
        min: Duration::from_secs(min),
        max: None,
    }
}

impl DurationSetting {
    /// Parses `value` (trimmed) as a number of `unit` or a `humantime` duration within
    /// `min..=max`; an error names `shown` (the variable, or the flag that sets it) and
    /// the value.
    pub fn parse_as(&self, shown: &str, value: &str) -> Result<Duration, super::ConfigError> {
        let invalid = |reason: String| super::ConfigError::invalid(shown, value, reason);
        let t = value.trim();
        let parsed = if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
            let n: u32 = t
                .parse()
                .map_err(|_| invalid(format!("at most {} {}", u32::MAX, self.unit_name())))?;
            self.unit.saturating_mul(n)
        } else {
            humantime::parse_duration(t).map_err(|e| {
                invalid(format!(
                    "expected a whole number of {} or a duration such as `90s` or `2m` ({e})",
                    self.unit_name()
                ))
            })?
        };
        if parsed < self.min {
            return Err(invalid(format!(
                "must be at least {}",
                humantime::format_duration(self.min)
            )));
        }
        let max = self.max.unwrap_or(self.unit.saturating_mul(u32::MAX));
        if parsed > max {
            return Err(invalid(format!(
                "must be at most {}",
                humantime::format_duration(max)
            )));
        }
        Ok(parsed)
    }

    /// [`DurationSetting::parse_as`] naming the variable.
    pub fn parse(&self, value: &str) -> Result<Duration, super::ConfigError> {
        self.parse_as(self.name, value)
    }

    fn unit_name(&self) -> &'static str {
        match self.unit {
            MILLISECOND => "milliseconds",
            SECOND => "seconds",
            MINUTE => "minutes",
            HOUR => "hours",
            DAY => "days",
            _ => "units",
        }
    }
}

// === upstream properties (docs/COMPATIBILITY.md#configuration-variables) ===

/// No effect here (`super::NO_EFFECT`).
pub const SECURE_WEBSOCKET: Setting<bool> = Setting {
    name: "ORCHESTRATOR_SECURE_WEBSOCKET",
    default: true,
};
/// Ours `in-process` (upstream `compose`).
pub const DEFAULT_BACKEND: Setting<BackendType> = Setting {
    name: "ORCHESTRATOR_DEFAULT_BACKEND",
    default: BackendType::InProcess,
};
/// Health expiry.
pub const HEARTBEAT_TIMEOUT: DurationSetting =
    seconds("ORCHESTRATOR_HEARTBEAT_TIMEOUT_SECONDS", 90, 1);
/// Should-restart threshold.
pub const DEGRADATION_THRESHOLD: DurationSetting = DurationSetting {
    name: "ORCHESTRATOR_DEGRADATION_THRESHOLD_MINUTES",
    default: Duration::from_secs(5 * 60),
    unit: MINUTE,
    min: MINUTE,
    max: None,
};
/// Portainer's base URL (none).
pub const PORTAINER_URL: &str = "ORCHESTRATOR_PORTAINER_URL";
/// Portainer's `X-API-Key` (none).
pub const PORTAINER_API_KEY: &str = "ORCHESTRATOR_PORTAINER_API_KEY";
/// Portainer endpoint (>= 1).
pub const PORTAINER_ENDPOINT_ID: Setting<u32> = Setting {
    name: "ORCHESTRATOR_PORTAINER_ENDPOINT_ID",
    default: portainer::DEFAULT_ENDPOINT_ID,
};
/// Portainer request timeout.
pub const PORTAINER_REQUEST_TIMEOUT: DurationSetting = DurationSetting {
    default: portainer::DEFAULT_REQUEST_TIMEOUT,
    ..seconds("ORCHESTRATOR_PORTAINER_REQUEST_TIMEOUT_SECONDS", 0, 1)
};
/// The image of every node and pool worker.
pub const DOCKER_IMAGE_NAME: Setting<&str> = Setting {
    name: "ORCHESTRATOR_DOCKER_IMAGE_NAME",
    default: image::DEFAULT_TAG,
};
/// The Docker engine.
pub const DOCKER_HOST: Setting<&str> = Setting {
    name: "ORCHESTRATOR_DOCKER_HOST",
    default: "unix:///var/run/docker.sock",
};
/// The Compose network.
pub const DOCKER_NETWORK: Setting<&str> = Setting {
    name: "ORCHESTRATOR_DOCKER_NETWORK",
    default: docker::DEFAULT_NETWORK,
};
/// The certificates directory nodes mount (none: `super::DEFAULT_CERTIFICATES_HOST_PATH`
/// when it exists).
pub const CERTIFICATES_HOST_PATH: &str = "ORCHESTRATOR_CERTIFICATES_HOST_PATH";
/// Where presets are looked up by name (ours `presets`).
pub const PRESETS_HOST_PATH: Setting<&str> = Setting {
    name: "ORCHESTRATOR_PRESETS_HOST_PATH",
    default: "presets",
};
/// The logs volume nodes mount.
pub const LOGS_VOLUME: Setting<&str> = Setting {
    name: "ORCHESTRATOR_LOGS_VOLUME",
    default: "logs-data",
};
/// OpenResty's host; invalidation runs only when the variable is set.
pub const OPENRESTY_HOST: Setting<&str> = Setting {
    name: "ORCHESTRATOR_OPENRESTY_HOST",
    default: DEFAULT_OPENRESTY_HOST,
};
/// OpenResty's port.
pub const OPENRESTY_PORT: Setting<u16> = Setting {
    name: "ORCHESTRATOR_OPENRESTY_PORT",
    default: DEFAULT_OPENRESTY_PORT,
};
/// OpenResty request timeout.
pub const OPENRESTY_REQUEST_TIMEOUT: DurationSetting = DurationSetting {
    default: DEFAULT_OPENRESTY_TIMEOUT,
    ..seconds("ORCHESTRATOR_OPENRESTY_REQUEST_TIMEOUT_SECONDS", 0, 1)
};
/// The Kubernetes namespace.
pub const KUBERNETES_NAMESPACE: Setting<&str> = Setting {
    name: "ORCHESTRATOR_KUBERNETES_NAMESPACE",
    default: kubernetes::DEFAULT_NAMESPACE,
};
/// The kubeconfig (none: `~/.kube/config`).
pub const KUBECONFIG_PATH: &str = "ORCHESTRATOR_KUBECONFIG_PATH";
/// No effect here (`super::NO_EFFECT`).
pub const HEARTBEAT_TTL: DurationSetting = seconds("ORCHESTRATOR_HEARTBEAT_TTL_SECONDS", 90, 1);
/// Routing record lifetime.
pub const ROUTING_TTL: DurationSetting = seconds("ORCHESTRATOR_ROUTING_TTL_SECONDS", 300, 1);
/// Configuration history lifetime.
pub const CONFIG_HISTORY_TTL: DurationSetting = DurationSetting {
    name: "ORCHESTRATOR_CONFIG_HISTORY_TTL_DAYS",
    default: Duration::from_secs(30 * 86_400),
    unit: DAY,
    min: DAY,
    max: None,
};
/// Restart timeout.
pub const RESTART_TIMEOUT: DurationSetting =
    seconds("ORCHESTRATOR_RESTART_TIMEOUT_SECONDS", 120, 1);
/// Restart health polling.
pub const HEALTH_CHECK_INTERVAL: DurationSetting = DurationSetting {
    name: "ORCHESTRATOR_HEALTH_CHECK_INTERVAL_MS",
    default: Duration::from_millis(2000),
    unit: MILLISECOND,
    min: Duration::from_millis(100),
    max: None,
};
/// Wait before kill.
pub const DEFAULT_WAIT_BEFORE_KILL: DurationSetting =
    seconds("ORCHESTRATOR_DEFAULT_WAIT_BEFORE_KILL_SECONDS", 30, 1);
/// Container status polling during a wave.
pub const CONTAINER_STATUS_POLL_INTERVAL: DurationSetting =
    seconds("ORCHESTRATOR_CONTAINER_STATUS_POLL_INTERVAL_SECONDS", 2, 1);
/// Periodic mappings rebroadcast.
pub const FULL_MAPPINGS_INTERVAL: DurationSetting =
    seconds("ORCHESTRATOR_FULL_MAPPINGS_INTERVAL_SECONDS", 30, 1);
/// Orphan container threshold (D12).
pub const ORPHAN_CONTAINER_THRESHOLD: DurationSetting = DurationSetting {
    name: "ORCHESTRATOR_ORPHAN_CONTAINER_THRESHOLD_HOURS",
    default: Duration::from_secs(24 * 3600),
    unit: HOUR,
    min: HOUR,
    max: None,
};
/// No effect here (`super::NO_EFFECT`).
pub const INDEX_UPDATE_MAX_RETRIES: Setting<u32> = Setting {
    name: "ORCHESTRATOR_INDEX_UPDATE_MAX_RETRIES",
    default: 3,
};
/// No effect here (`super::NO_EFFECT`).
pub const DEFAULT_POOL_LEASE_TIMEOUT: DurationSetting =
    seconds("ORCHESTRATOR_DEFAULT_POOL_LEASE_TIMEOUT_SECONDS", 300, 1);
/// No effect here (`super::NO_EFFECT`).
pub const POOL_LOCK_TIMEOUT: DurationSetting =
    seconds("ORCHESTRATOR_POOL_LOCK_TIMEOUT_SECONDS", 15, 1);
/// Longest sleep of the lease reaper.
pub const LEASE_CLEANUP_INTERVAL: DurationSetting =
    seconds("ORCHESTRATOR_LEASE_CLEANUP_INTERVAL_SECONDS", 60, 10);
/// The port nodes listen on.
pub const DEFAULT_SERVICE_PORT: Setting<u16> = Setting {
    name: "ORCHESTRATOR_DEFAULT_SERVICE_PORT",
    default: DEFAULT_NODE_PORT,
};
/// Redis (none: in-memory adapters); also what nodes are given.
pub const REDIS_CONNECTION_STRING: &str = "ORCHESTRATOR_REDIS_CONNECTION_STRING";
/// Ours: the Redis URL handed to Docker nodes (none).
pub const NODE_REDIS_URL: &str = "ORCHESTRATOR_NODE_REDIS_URL";
/// Ours: replicas every lease operation waits for (0..=16).
pub const REDIS_WAIT_REPLICAS: Setting<u32> = Setting {
    name: "ORCHESTRATOR_REDIS_WAIT_REPLICAS",
    default: 0,
};
/// Ours: how long such a wait lasts.
pub const REDIS_WAIT_TIMEOUT: DurationSetting = DurationSetting {
    name: "ORCHESTRATOR_REDIS_WAIT_TIMEOUT_MS",
    default: Duration::from_millis(500),
    unit: MILLISECOND,
    min: MILLISECOND,
    max: Some(Duration::from_secs(60)),
};

// === host settings ===

/// The effective app-id (none: `bannou`).
pub const APP_ID: &str = "BANNOU_APP_ID";
/// Whether this process heartbeats.
pub const HEARTBEAT_ENABLED: Setting<bool> = Setting {
    name: "BANNOU_HEARTBEAT_ENABLED",
    default: true,
};
/// Heartbeat interval.
pub const HEARTBEAT_INTERVAL: DurationSetting = seconds("BANNOU_HEARTBEAT_INTERVAL_SECONDS", 30, 1);

// === ours ===

/// Listen address (D31: loopback).
pub const LISTEN: Setting<&str> = Setting {
    name: orchestrator_backends::containers::engine::LISTEN_VARIABLE,
    default: "127.0.0.1:8080",
};
/// Bearer token of the API (none); client commands send it too.
pub const API_TOKEN: &str = "ORCHESTRATOR_API_TOKEN";
/// How long a deploy waits for one wave's heartbeats.
pub const WAVE_TIMEOUT: DurationSetting = seconds("ORCHESTRATOR_WAVE_TIMEOUT_SECONDS", 120, 1);
/// How long a change that stops nodes waits for the live consumers to apply its routes
/// before it proceeds (D58); 0 does not wait.
pub const ROUTING_ACK_TIMEOUT: DurationSetting = DurationSetting {
    name: "ORCHESTRATOR_ROUTING_ACK_TIMEOUT_SECONDS",
    default: crate::orchestrator::routing_acks::DEFAULT_ACK_TIMEOUT,
    unit: SECOND,
    min: Duration::ZERO,
    max: Some(Duration::from_secs(600)),
};
/// Nodes of one wave deployed at once (1..=1024).
pub const DEPLOY_PARALLELISM: Setting<usize> = Setting {
    name: "ORCHESTRATOR_DEPLOY_PARALLELISM",
    default: 8,
};
/// Whether the pool scaler's periodic loop scales.
pub const POOL_AUTOSCALE: Setting<bool> = Setting {
    name: "ORCHESTRATOR_POOL_AUTOSCALE",
    default: true,
};
/// The pool scaler's period.
pub const POOL_AUTOSCALE_INTERVAL: DurationSetting =
    seconds("ORCHESTRATOR_POOL_AUTOSCALE_INTERVAL_SECONDS", 5, 1);
/// Ours: how long a drained pool worker may keep its lease before it is taken back
/// (D60 (docs/DECISIONS.md#d60)).
pub const POOL_DRAIN_TIMEOUT: DurationSetting =
    seconds("ORCHESTRATOR_POOL_DRAIN_TIMEOUT_SECONDS", 300, 1);
/// The leader lease.
pub const LEADER_LEASE: DurationSetting = DurationSetting {
    name: "ORCHESTRATOR_LEADER_LEASE_SECONDS",
    default: DEFAULT_LEADER_LEASE,
    unit: SECOND,
    min: MIN_LEADER_LEASE,
    max: None,
};
/// Prefix of this replica's candidate id (none: the app-id).
pub const LEADER_ID_PREFIX: &str = "ORCHESTRATOR_LEADER_ID_PREFIX";
/// Reconciliation period (0: once, on taking the lead).
pub const RECONCILE_INTERVAL: DurationSetting =
    seconds("ORCHESTRATOR_RECONCILE_INTERVAL_SECONDS", 30, 0);
/// What reconciliation leaves alone because it is younger.
pub const RECONCILE_GRACE: DurationSetting = seconds("ORCHESTRATOR_RECONCILE_GRACE_SECONDS", 60, 0);

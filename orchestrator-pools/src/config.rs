//! Pool configuration: the [`PoolType`] name and a validated [`PoolConfig`] built from a
//! preset's `processingPools` entry ([`PoolSpec`], both key spellings,
//! docs/COMPATIBILITY.md#processing-pools-configuration) plus our autoscaling knobs.
//! Invalid values are refused by the constructor, never clamped.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use orchestrator_core::resolver::ResolvedPool;
use serde::{Deserialize, Serialize};

use crate::model::WorkerIdentity;

/// Lease duration when a request gives none (docs/COMPATIBILITY.md#configuration-variables,
/// `DefaultPoolLeaseTimeoutSeconds`).
pub const DEFAULT_LEASE_DURATION: Duration = Duration::from_secs(300);

/// How often upstream's background reclaimer runs
/// (docs/COMPATIBILITY.md#configuration-variables, `LeaseCleanupIntervalSeconds`); our loop
/// sleeps until the next expiry instead, this is only its upper bound.
pub const LEASE_CLEANUP_INTERVAL: Duration = Duration::from_secs(60);

/// A pool configuration value that was refused; names the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid pool configuration field `{field}`: {reason}")]
pub struct ConfigError {
    /// The offending field, spelled as in presets (`maxInstances`).
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

impl ConfigError {
    fn new(field: &'static str, reason: impl Into<String>) -> Self {
        ConfigError {
            field,
            reason: reason.into(),
        }
    }
}

// === impl PoolType ===

/// The name of a pool (`actor-shared`, `asset-processor`).
///
/// Invariant: 1 to 64 characters, ASCII letters, digits, `-`, `_` or `.`, so it can be used
/// in processor ids, container names and Redis keys without escaping.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PoolType(std::sync::Arc<str>);

impl PoolType {
    /// Validates and wraps a pool name.
    pub fn new(s: impl Into<String>) -> Result<Self, ConfigError> {
        let s = s.into();
        if s.is_empty() {
            return Err(ConfigError::new("poolType", "must not be empty"));
        }
        if s.len() > 64 {
            return Err(ConfigError::new(
                "poolType",
                format!("`{s}` is longer than 64 characters"),
            ));
        }
        if let Some(c) = s
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
        {
            return Err(ConfigError::new(
                "poolType",
                format!("`{s}` contains `{c}`; use letters, digits, `-`, `_` or `.`"),
            ));
        }
        Ok(PoolType(std::sync::Arc::from(s)))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PoolType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for PoolType {
    type Error = ConfigError;
    fn try_from(s: String) -> Result<Self, ConfigError> {
        PoolType::new(s)
    }
}

impl From<PoolType> for String {
    fn from(p: PoolType) -> String {
        String::from(&*p.0)
    }
}

impl std::str::FromStr for PoolType {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        PoolType::new(s)
    }
}

// === impl PoolSpec ===

/// A pool as written in a preset (`processingPools[]`, docs/COMPATIBILITY.md#preset-yaml
/// and docs/COMPATIBILITY.md#processing-pools-configuration) or stored: raw, unvalidated
/// values. camelCase keys, with the snake_case spellings accepted as aliases (D2
/// (docs/DECISIONS.md#d2)). Turn it into a [`PoolConfig`] with [`PoolConfig::new`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PoolSpec {
    /// Pool name; empty means "skip this pool" in a preset.
    #[serde(alias = "pool_type")]
    pub pool_type: String,
    /// Plugin (service) the workers run; empty or absent means the default `bannou` set.
    #[serde(alias = "serviceName", alias = "service_name")]
    pub plugin: Option<String>,
    /// Worker image; absent means the orchestrator's default image.
    pub image: Option<String>,
    /// Extra worker environment, overlaid on the plugin flags. Scalar values (numbers,
    /// booleans) are taken as their text and `null` as empty, as upstream does
    /// (docs/COMPATIBILITY.md#preset-yaml).
    #[serde(deserialize_with = "env_map")]
    pub environment: BTreeMap<String, String>,
    /// Fewest workers (default 1).
    #[serde(alias = "min_instances")]
    pub min_instances: i64,
    /// Most workers, enforced (default 5).
    #[serde(alias = "max_instances")]
    pub max_instances: i64,
    /// Utilisation above which the pool grows (default 0.8).
    #[serde(alias = "scale_up_threshold")]
    pub scale_up_threshold: f64,
    /// Utilisation below which the pool shrinks (default 0.2).
    #[serde(alias = "scale_down_threshold")]
    pub scale_down_threshold: f64,
    /// Minutes an available worker may sit idle before it is reaped (default 5).
    #[serde(alias = "idle_timeout_minutes")]
    pub idle_timeout_minutes: i64,
    /// Ours: available workers to keep ready beyond demand (default 0).
    #[serde(alias = "warm_buffer")]
    pub warm_buffer: i64,
    /// Ours: seconds utilisation must stay low before scaling down (default 300).
    #[serde(alias = "scale_down_stabilisation_seconds")]
    pub scale_down_stabilisation_seconds: i64,
    /// Ours: lease duration in seconds when a request gives none (default 300).
    #[serde(alias = "default_lease_duration_seconds")]
    pub default_lease_duration_seconds: i64,
}

/// One environment value as written in a preset: any scalar, taken as its text.
#[derive(Deserialize)]
#[serde(untagged)]
enum EnvScalar {
    Text(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

fn env_map<'de, D: serde::Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    let raw: Option<BTreeMap<String, Option<EnvScalar>>> = Option::deserialize(d)?;
    Ok(raw
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| {
            let text = match v {
                None => String::new(),
                Some(EnvScalar::Text(s)) => s,
                Some(EnvScalar::Int(i)) => i.to_string(),
                Some(EnvScalar::Float(f)) => f.to_string(),
                Some(EnvScalar::Bool(b)) => b.to_string(),
            };
            (k, text)
        })
        .collect())
}

impl Default for PoolSpec {
    fn default() -> Self {
        PoolSpec {
            pool_type: String::new(),
            plugin: None,
            image: None,
            environment: BTreeMap::new(),
            min_instances: 1,
            max_instances: 5,
            scale_up_threshold: 0.8,
            scale_down_threshold: 0.2,
            idle_timeout_minutes: 5,
            warm_buffer: 0,
            scale_down_stabilisation_seconds: 300,
            default_lease_duration_seconds: 300,
        }
    }
}

impl From<&ResolvedPool> for PoolSpec {
    /// A pool from a parsed and resolved preset: the preset parser has already accepted
    /// both key spellings and validated the bounds; our extensions keep their defaults.
    fn from(p: &ResolvedPool) -> Self {
        PoolSpec {
            pool_type: p.pool_type.clone(),
            plugin: Some(p.plugin.trim().to_owned()).filter(|s| !s.is_empty()),
            image: p.image.clone(),
            environment: p.environment.clone(),
            min_instances: i64::from(p.min_instances),
            max_instances: i64::from(p.max_instances),
            scale_up_threshold: p.scale_up_threshold,
            scale_down_threshold: p.scale_down_threshold,
            idle_timeout_minutes: i64::from(p.idle_timeout_minutes),
            ..PoolSpec::default()
        }
    }
}

impl PoolSpec {
    /// The defaults for a pool called `pool_type`.
    pub fn named(pool_type: impl Into<String>) -> Self {
        PoolSpec {
            pool_type: pool_type.into(),
            ..PoolSpec::default()
        }
    }
}

// === impl PoolConfig ===

/// A validated pool configuration.
///
/// Invariants: `1 <= max_instances`, `min_instances <= max_instances`,
/// `0 <= scale_down_threshold < scale_up_threshold <= 1`, positive idle timeout and lease
/// duration. Serialises as a [`PoolSpec`] and re-validates when read back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "PoolSpec", into = "PoolSpec")]
pub struct PoolConfig {
    pool_type: PoolType,
    service_name: Option<String>,
    image: Option<String>,
    environment: BTreeMap<String, String>,
    min_instances: u32,
    max_instances: u32,
    scale_up_threshold: f64,
    scale_down_threshold: f64,
    idle_timeout: Duration,
    warm_buffer: u32,
    scale_down_stabilisation: Duration,
    default_lease_duration: Duration,
}

fn non_negative(field: &'static str, v: i64) -> Result<u32, ConfigError> {
    u32::try_from(v).map_err(|_| ConfigError::new(field, format!("{v} is not in 0..={}", u32::MAX)))
}

fn positive_secs(field: &'static str, v: i64, unit: u64) -> Result<Duration, ConfigError> {
    match u64::try_from(v) {
        Ok(n) if n > 0 => Ok(Duration::from_secs(n.saturating_mul(unit))),
        _ => Err(ConfigError::new(field, format!("{v} must be positive"))),
    }
}

impl PoolConfig {
    /// Validates a spec: names the first field at fault.
    pub fn new(spec: PoolSpec) -> Result<Self, ConfigError> {
        let pool_type = PoolType::new(spec.pool_type)?;
        let min_instances = non_negative("minInstances", spec.min_instances)?;
        let max_instances = non_negative("maxInstances", spec.max_instances)?;
        if max_instances == 0 {
            return Err(ConfigError::new("maxInstances", "must be at least 1"));
        }
        if min_instances > max_instances {
            return Err(ConfigError::new(
                "minInstances",
                format!("{min_instances} is above maxInstances {max_instances}"),
            ));
        }
        let (up, down) = (spec.scale_up_threshold, spec.scale_down_threshold);
        if !(up.is_finite() && up > 0.0 && up <= 1.0) {
            return Err(ConfigError::new(
                "scaleUpThreshold",
                format!("{up} is not in (0, 1]"),
            ));
        }
        if !(down.is_finite() && (0.0..up).contains(&down)) {
            return Err(ConfigError::new(
                "scaleDownThreshold",
                format!("{down} is not in [0, scaleUpThreshold {up})"),
            ));
        }
        let idle_timeout = positive_secs("idleTimeoutMinutes", spec.idle_timeout_minutes, 60)?;
        let warm_buffer = non_negative("warmBuffer", spec.warm_buffer)?;
        if warm_buffer > max_instances {
            return Err(ConfigError::new(
                "warmBuffer",
                format!("{warm_buffer} is above maxInstances {max_instances}"),
            ));
        }
        let scale_down_stabilisation = u64::try_from(spec.scale_down_stabilisation_seconds)
            .map(Duration::from_secs)
            .map_err(|_| {
                ConfigError::new(
                    "scaleDownStabilisationSeconds",
                    format!("{} is negative", spec.scale_down_stabilisation_seconds),
                )
            })?;
        let default_lease_duration = positive_secs(
            "defaultLeaseDurationSeconds",
            spec.default_lease_duration_seconds,
            1,
        )?;
        let service_name = spec.plugin.filter(|p| !p.trim().is_empty());
        let image = spec.image.filter(|i| !i.trim().is_empty());
        Ok(PoolConfig {
            pool_type,
            service_name,
            image,
            environment: spec.environment,
            min_instances,
            max_instances,
            scale_up_threshold: up,
            scale_down_threshold: down,
            idle_timeout,
            warm_buffer,
            scale_down_stabilisation,
            default_lease_duration,
        })
    }

    /// Upstream defaults (min 1, max 5, 0.8 / 0.2, 5 min idle) for a pool name.
    pub fn with_defaults(pool_type: PoolType) -> Self {
        PoolConfig {
            pool_type,
            service_name: None,
            image: None,
            environment: BTreeMap::new(),
            min_instances: 1,
            max_instances: 5,
            scale_up_threshold: 0.8,
            scale_down_threshold: 0.2,
            idle_timeout: Duration::from_secs(5 * 60),
            warm_buffer: 0,
            scale_down_stabilisation: Duration::from_secs(5 * 60),
            default_lease_duration: DEFAULT_LEASE_DURATION,
        }
    }

    /// The spec this config was built from (what is stored and listed).
    pub fn to_spec(&self) -> PoolSpec {
        PoolSpec {
            pool_type: self.pool_type.to_string(),
            plugin: self.service_name.clone(),
            image: self.image.clone(),
            environment: self.environment.clone(),
            min_instances: i64::from(self.min_instances),
            max_instances: i64::from(self.max_instances),
            scale_up_threshold: self.scale_up_threshold,
            scale_down_threshold: self.scale_down_threshold,
            idle_timeout_minutes: i64::try_from(self.idle_timeout.as_secs() / 60)
                .unwrap_or(i64::MAX),
            warm_buffer: i64::from(self.warm_buffer),
            scale_down_stabilisation_seconds: i64::try_from(
                self.scale_down_stabilisation.as_secs(),
            )
            .unwrap_or(i64::MAX),
            default_lease_duration_seconds: i64::try_from(self.default_lease_duration.as_secs())
                .unwrap_or(i64::MAX),
        }
    }

    /// The pool name.
    pub fn pool_type(&self) -> &PoolType {
        &self.pool_type
    }
    /// Plugin the workers run (`ServiceName` upstream); `None` = the default `bannou` set.
    pub fn service_name(&self) -> Option<&str> {
        self.service_name.as_deref()
    }
    /// Worker image; `None` = the orchestrator's default image (upstream ignored this).
    pub fn image(&self) -> Option<&str> {
        self.image.as_deref()
    }
    /// The pool's own environment overlay.
    pub fn environment(&self) -> &BTreeMap<String, String> {
        &self.environment
    }
    /// Fewest workers the autoscaler keeps.
    pub fn min_instances(&self) -> u32 {
        self.min_instances
    }
    /// Most workers the store will register (enforced by `register_worker`).
    pub fn max_instances(&self) -> u32 {
        self.max_instances
    }
    /// Utilisation (0..=1) above which the pool grows.
    pub fn scale_up_threshold(&self) -> f64 {
        self.scale_up_threshold
    }
    /// Utilisation (0..1) below which the pool shrinks after the stabilisation window.
    pub fn scale_down_threshold(&self) -> f64 {
        self.scale_down_threshold
    }
    /// How long an available worker may stay idle before it is reaped.
    pub fn idle_timeout(&self) -> Duration {
        self.idle_timeout
    }
    /// Available workers to keep ready beyond current demand.
    pub fn warm_buffer(&self) -> u32 {
        self.warm_buffer
    }
    /// How long utilisation must stay below the down threshold before scaling down.
    pub fn scale_down_stabilisation(&self) -> Duration {
        self.scale_down_stabilisation
    }
    /// Lease duration when an acquire gives none.
    pub fn default_lease_duration(&self) -> Duration {
        self.default_lease_duration
    }

    /// The environment of one worker container
    /// (docs/COMPATIBILITY.md#processing-pools-configuration and
    /// docs/COMPATIBILITY.md#processing-pools-scale): `BANNOU_SERVICES_ENABLED=false` and
    /// `{PLUGIN}_SERVICE_ENABLED=true` when a plugin is set, then the pool's environment,
    /// then the worker's identity (`BANNOU_APP_ID`, `ACTOR_POOL_NODE_ID` and the
    /// `ACTOR_POOL_NODE_APP_ID` upstream forgot, which pool nodes need for their
    /// heartbeat).
    pub fn worker_environment(&self, worker: &WorkerIdentity) -> BTreeMap<String, String> {
        let plugin = self.service_name.as_deref().unwrap_or_default();
        let mut env =
            orchestrator_core::resolver::pool_worker_environment(plugin, &self.environment);
        env.insert("BANNOU_APP_ID".to_owned(), worker.app_id.to_string());
        env.insert(
            "ACTOR_POOL_NODE_ID".to_owned(),
            worker.processor_id.to_string(),
        );
        env.insert(
            "ACTOR_POOL_NODE_APP_ID".to_owned(),
            worker.app_id.to_string(),
        );
        env
    }
}

impl TryFrom<PoolSpec> for PoolConfig {
    type Error = ConfigError;
    fn try_from(spec: PoolSpec) -> Result<Self, ConfigError> {
        PoolConfig::new(spec)
    }
}

impl From<PoolConfig> for PoolSpec {
    fn from(c: PoolConfig) -> PoolSpec {
        c.to_spec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(f: impl FnOnce(&mut PoolSpec)) -> PoolSpec {
        let mut s = PoolSpec::named("actor-shared");
        f(&mut s);
        s
    }

    #[test]
    fn defaults_match_upstream() {
        let c = PoolConfig::new(PoolSpec::named("p")).unwrap();
        assert_eq!((c.min_instances(), c.max_instances()), (1, 5));
        assert_eq!(c.scale_up_threshold(), 0.8);
        assert_eq!(c.scale_down_threshold(), 0.2);
        assert_eq!(c.idle_timeout(), Duration::from_secs(300));
        assert_eq!(c.default_lease_duration(), DEFAULT_LEASE_DURATION);
        assert_eq!(c, PoolConfig::with_defaults(PoolType::new("p").unwrap()));
    }

    #[test]
    fn both_key_spellings_parse() {
        let camel: PoolSpec = serde_json::from_str(
            r#"{"poolType":"a","plugin":"actor","minInstances":2,"maxInstances":9,"image":"img:1","warmBuffer":1}"#,
        )
        .unwrap();
        let snake: PoolSpec = serde_json::from_str(
            r#"{"pool_type":"a","plugin":"actor","min_instances":2,"max_instances":9,"image":"img:1","warm_buffer":1}"#,
        )
        .unwrap();
        assert_eq!(camel, snake);
        let c = PoolConfig::new(camel).unwrap();
        assert_eq!(c.image(), Some("img:1"));
        assert_eq!(c.service_name(), Some("actor"));
        assert_eq!(
            (c.min_instances(), c.max_instances(), c.warm_buffer()),
            (2, 9, 1)
        );
    }

    #[test]
    fn environment_scalars_are_taken_as_text() {
        let s: PoolSpec = serde_json::from_str(
            r#"{"poolType":"a","environment":{"N":50,"B":true,"F":1.5,"S":"x","Z":null}}"#,
        )
        .unwrap();
        let got: Vec<_> = s
            .environment
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        assert_eq!(got, ["B=true", "F=1.5", "N=50", "S=x", "Z="]);
        let none: PoolSpec =
            serde_json::from_str(r#"{"poolType":"a","environment":null}"#).unwrap();
        assert!(none.environment.is_empty());
        assert!(serde_json::from_str::<PoolSpec>(r#"{"environment":{"A":[1]}}"#).is_err());
    }

    #[test]
    fn invalid_values_name_the_field() {
        let cases: Vec<(PoolSpec, &str)> = vec![
            (spec(|s| s.pool_type = String::new()), "poolType"),
            (spec(|s| s.pool_type = "a/b".into()), "poolType"),
            (spec(|s| s.min_instances = 6), "minInstances"),
            (spec(|s| s.min_instances = -1), "minInstances"),
            (spec(|s| s.max_instances = 0), "maxInstances"),
            (spec(|s| s.scale_up_threshold = 1.5), "scaleUpThreshold"),
            (
                spec(|s| s.scale_up_threshold = f64::NAN),
                "scaleUpThreshold",
            ),
            (spec(|s| s.scale_down_threshold = 0.8), "scaleDownThreshold"),
            (
                spec(|s| s.scale_down_threshold = -0.1),
                "scaleDownThreshold",
            ),
            (spec(|s| s.idle_timeout_minutes = 0), "idleTimeoutMinutes"),
            (spec(|s| s.warm_buffer = 6), "warmBuffer"),
            (
                spec(|s| s.default_lease_duration_seconds = 0),
                "defaultLeaseDurationSeconds",
            ),
        ];
        for (s, field) in cases {
            let err = PoolConfig::new(s.clone()).unwrap_err();
            assert_eq!(err.field, field, "{s:?} -> {err}");
        }
    }

    #[test]
    fn stored_form_round_trips_and_revalidates() {
        let c = PoolConfig::new(spec(|s| {
            s.image = Some("worker:2".into());
            s.environment.insert("A".into(), "1".into());
        }))
        .unwrap();
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<PoolConfig>(&json).unwrap(), c);
        assert!(
            serde_json::from_str::<PoolConfig>(r#"{"poolType":"x","maxInstances":0}"#).is_err()
        );
    }

    #[test]
    fn worker_environment_layers_plugin_pool_env_and_identity() {
        let c = PoolConfig::new(spec(|s| {
            s.plugin = Some("actor".into());
            s.environment
                .insert("BANNOU_SERVICES_ENABLED".into(), "true".into());
        }))
        .unwrap();
        let id = WorkerIdentity::generate(c.pool_type());
        let env = c.worker_environment(&id);
        assert_eq!(env["ACTOR_SERVICE_ENABLED"], "true");
        assert_eq!(env["BANNOU_SERVICES_ENABLED"], "true", "pool env overlays");
        assert_eq!(env["BANNOU_APP_ID"], id.app_id.as_str());
        assert_eq!(env["ACTOR_POOL_NODE_ID"], id.processor_id.as_str());
        assert_eq!(env["ACTOR_POOL_NODE_APP_ID"], id.app_id.as_str());
    }
}

#[cfg(test)]
mod preset_tests {
    use std::collections::BTreeMap;

    use orchestrator_core::Catalog;
    use orchestrator_core::preset::Preset;
    use orchestrator_core::resolver::Resolved;

    use super::*;
    use crate::model::WorkerIdentity;

    #[test]
    fn pools_of_a_resolved_preset_become_valid_configs_with_one_worker_environment_rule() {
        let yaml = "name: p\nprocessing_pools:\n  - pool_type: brains\n    plugin: actor\n    image: reg/brain:2\n    min_instances: 2\n    max_instances: 9\n    environment:\n      ACTOR_POOL_NODE_CAPACITY: 50\n";
        let parsed = Preset::parse("p.yaml", yaml).unwrap();
        let resolved = Resolved::from_preset(
            &parsed,
            &BTreeMap::new(),
            &BTreeMap::new(),
            Catalog::builtin(),
        )
        .unwrap();
        let config = PoolConfig::new(PoolSpec::from(&resolved.pools[0])).unwrap();
        let spec = config.to_spec();
        assert_eq!(
            (
                spec.min_instances,
                spec.max_instances,
                spec.image.as_deref()
            ),
            (2, 9, Some("reg/brain:2"))
        );

        let worker = WorkerIdentity::generate(&config.pool_type);
        let env = config.worker_environment(&worker);
        // Everything the plan showed for the pool, plus the per-worker identity.
        for (k, v) in &resolved.pools[0].environment {
            assert_eq!(env.get(k), Some(v), "{k}");
        }
        assert_eq!(env["ACTOR_SERVICE_ENABLED"], "true");
        assert_eq!(env["BANNOU_APP_ID"], worker.app_id.to_string());
    }
}

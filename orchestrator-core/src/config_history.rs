//! Versioned deployment configuration: history with retention, rollback, changed keys and
//! stable marks (docs/COMPATIBILITY.md#configuration-versions). Pure: time is passed in.
//! The rollback rules live in [`RollbackPlan`] and the free functions, shared by
//! [`ConfigHistory`] and the store port.

use std::collections::{BTreeMap, BTreeSet};
use std::num::NonZeroUsize;
use std::time::Duration;

use thiserror::Error;

use crate::records::DeploymentConfiguration;
use crate::time::Timestamp;

/// Preset name of the configuration written by [`ConfigHistory::clear`]
/// (docs/COMPATIBILITY.md#saving-a-version).
pub const CLEARED_PRESET_NAME: &str = "default";

/// Description of the configuration written by [`ConfigHistory::clear`]
/// (docs/COMPATIBILITY.md#saving-a-version).
pub const CLEARED_DESCRIPTION: &str = "Reset to default topology - all services route to 'bannou'";

/// Most entries in [`ConfigVersionInfo::key_prefixes`] (docs/COMPATIBILITY.md#version-info).
pub const MAX_KEY_PREFIXES: usize = 10;

// === errors ===

/// Why a rollback was refused (docs/COMPATIBILITY.md#rollback): an invalid request
/// (nothing to roll back, a bad target) or a missing version.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RollbackError {
    /// There is no earlier version: the current version is 0 or 1.
    #[error("nothing to roll back: current configuration version is {current}")]
    NothingToRollBack {
        /// The current version (0 when none was ever saved).
        current: u64,
    },
    /// The target is 0 or not older than the current version.
    #[error("invalid rollback target {target}: must be between 1 and {}", current.saturating_sub(1))]
    InvalidTarget {
        /// The requested (or defaulted) target.
        target: u64,
        /// The current version.
        current: u64,
    },
    /// The target version is not in the history (expired or pruned).
    #[error("configuration version {version} not found (expired or pruned)")]
    NotFound {
        /// The missing version.
        version: u64,
    },
}

/// A configuration version that does not exist (never saved, expired or pruned).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("configuration version {version} not found")]
pub struct VersionNotFound {
    /// The missing version.
    pub version: u64,
}

// === rollback rules (docs/COMPATIBILITY.md#rollback), shared with the store port ===

/// A validated rollback request: steps 1 and 2 of docs/COMPATIBILITY.md#rollback passed.
///
/// Use: [`RollbackPlan::new`] with the stored version, load version `target`, then
/// [`RollbackPlan::restore`] to build the record to save (it must become version
/// `current + 1`) and [`RollbackPlan::outcome`] for the response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RollbackPlan {
    /// The stored (pre-rollback) version, `cur`.
    pub current: u64,
    /// The version to copy, `target` (1 <= target < current).
    pub target: u64,
}

impl RollbackPlan {
    /// Steps 1-2: `current <= 1` => [`RollbackError::NothingToRollBack`]; target defaults to
    /// `current - 1`; `target < 1` or `target >= current` => [`RollbackError::InvalidTarget`].
    pub fn new(current: u64, requested: Option<u64>) -> Result<Self, RollbackError> {
        if current <= 1 {
            return Err(RollbackError::NothingToRollBack { current });
        }
        let target = requested.unwrap_or(current - 1);
        if target < 1 || target >= current {
            return Err(RollbackError::InvalidTarget { target, current });
        }
        Ok(RollbackPlan { current, target })
    }

    /// The version the rollback creates (`current + 1`).
    pub fn new_version(&self) -> u64 {
        self.current + 1
    }

    /// Steps 3-4: the loaded target (`None` when missing => [`RollbackError::NotFound`])
    /// becomes a copy with version `current + 1`, timestamp `now`, the rollback description
    /// and `stable = false` (it has not been proven healthy yet).
    pub fn restore(
        &self,
        loaded_target: Option<DeploymentConfiguration>,
        now: Timestamp,
    ) -> Result<DeploymentConfiguration, RollbackError> {
        let mut cfg = loaded_target.ok_or(RollbackError::NotFound {
            version: self.target,
        })?;
        cfg.version = self.new_version();
        cfg.timestamp = now;
        cfg.description = Some(format!(
            "Rolled back from version {} to version {}",
            self.current, self.target
        ));
        cfg.stable = false;
        Ok(cfg)
    }

    /// Steps 5-6: the response, with `changedKeys` computed one way against the
    /// pre-rollback current configuration (empty when there was none).
    pub fn outcome(
        &self,
        restored: DeploymentConfiguration,
        previous_current: Option<&DeploymentConfiguration>,
    ) -> RollbackOutcome {
        let changed_keys = previous_current
            .map(|prev| rollback_changed_keys(&restored, prev))
            .unwrap_or_default();
        RollbackOutcome {
            previous_version: self.current,
            current_version: restored.version,
            changed_keys,
            restored,
        }
    }
}

/// Result of a successful rollback (`ConfigRollbackResponse` plus the restored record).
#[derive(Debug, Clone, PartialEq)]
pub struct RollbackOutcome {
    /// The version current before the rollback (`previousVersion`).
    pub previous_version: u64,
    /// The new version, a copy of the target (`currentVersion` = previous + 1).
    pub current_version: u64,
    /// `services.{name}.enabled` and `env.{KEY}` entries that the rollback changed.
    pub changed_keys: Vec<String>,
    /// The new current configuration, so the caller can redeploy it.
    pub restored: DeploymentConfiguration,
}

/// docs/COMPATIBILITY.md#rollback step 5, one direction only: keys of `restored` that are
/// missing from or different in `previous`. Services compare only `Enabled`. Services
/// first, then env, each in name order.
pub fn rollback_changed_keys(
    restored: &DeploymentConfiguration,
    previous: &DeploymentConfiguration,
) -> Vec<String> {
    let mut keys = Vec::new();
    for (name, svc) in &restored.services {
        if previous.services.get(name).map(|p| p.enabled) != Some(svc.enabled) {
            keys.push(format!("services.{name}.enabled"));
        }
    }
    for (key, value) in &restored.environment_variables {
        if previous.environment_variables.get(key) != Some(value) {
            keys.push(format!("env.{key}"));
        }
    }
    keys
}

/// Every key that differs between `a` and `b` in either direction (added, removed or
/// changed), for plans and events of our own. A service present on one side only is
/// `services.{name}.enabled`; a service on both sides adds `.enabled`, `.appId`,
/// `.replicas` and `.settings.{key}` where those differ; env vars are `env.{KEY}`.
/// Sorted and without duplicates; symmetric: `changed_keys(a, b) == changed_keys(b, a)`.
pub fn changed_keys(a: &DeploymentConfiguration, b: &DeploymentConfiguration) -> Vec<String> {
    let mut keys = BTreeSet::new();
    let names: BTreeSet<&String> = a.services.keys().chain(b.services.keys()).collect();
    for name in names {
        match (a.services.get(name), b.services.get(name)) {
            (Some(x), Some(y)) => {
                if x.enabled != y.enabled {
                    keys.insert(format!("services.{name}.enabled"));
                }
                if x.app_id != y.app_id {
                    keys.insert(format!("services.{name}.appId"));
                }
                if x.replicas != y.replicas {
                    keys.insert(format!("services.{name}.replicas"));
                }
                for k in x.settings.keys().chain(y.settings.keys()) {
                    if x.settings.get(k) != y.settings.get(k) {
                        keys.insert(format!("services.{name}.settings.{k}"));
                    }
                }
            }
            _ => {
                keys.insert(format!("services.{name}.enabled"));
            }
        }
    }
    let env = &a.environment_variables;
    let other = &b.environment_variables;
    for k in env.keys().chain(other.keys()) {
        if env.get(k) != other.get(k) {
            keys.insert(format!("env.{k}"));
        }
    }
    keys.into_iter().collect()
}

/// The configuration `ClearCurrentConfiguration` saves
/// (docs/COMPATIBILITY.md#saving-a-version): preset `default`, no services, no environment,
/// the reset description. Version is assigned on save.
pub fn cleared_configuration(now: Timestamp) -> DeploymentConfiguration {
    DeploymentConfiguration {
        preset_name: Some(CLEARED_PRESET_NAME.to_owned()),
        description: Some(CLEARED_DESCRIPTION.to_owned()),
        ..DeploymentConfiguration::empty(now)
    }
}

// === version info (docs/COMPATIBILITY.md#version-info) ===

/// What `GetConfigVersion` answers (docs/COMPATIBILITY.md#config-version and
/// docs/COMPATIBILITY.md#version-info).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigVersionInfo {
    /// Current version, 0 when none.
    pub version: u64,
    /// Timestamp of the current configuration, or `now` when none.
    pub timestamp: Timestamp,
    /// `version > 1` and version `version - 1` is still in the history.
    pub has_previous_config: bool,
    /// Number of services plus number of environment variables.
    pub key_count: usize,
    /// `services` when there are services, then `env.{P}` per distinct first `_`-separated
    /// segment of the env var names, in name order; at most [`MAX_KEY_PREFIXES`] in total.
    pub key_prefixes: Vec<String>,
}

/// docs/COMPATIBILITY.md#version-info from the current configuration and whether version
/// `current - 1` exists.
pub fn version_info(
    current: Option<&DeploymentConfiguration>,
    previous_exists: bool,
    now: Timestamp,
) -> ConfigVersionInfo {
    let Some(cfg) = current else {
        return ConfigVersionInfo {
            version: 0,
            timestamp: now,
            has_previous_config: false,
            key_count: 0,
            key_prefixes: Vec::new(),
        };
    };
    let mut key_prefixes: Vec<String> = Vec::new();
    if !cfg.services.is_empty() {
        key_prefixes.push("services".to_owned());
    }
    for key in cfg.environment_variables.keys() {
        let first = key.split('_').next().unwrap_or_default();
        let prefix = format!("env.{first}");
        if !key_prefixes.contains(&prefix) {
            key_prefixes.push(prefix);
        }
    }
    key_prefixes.truncate(MAX_KEY_PREFIXES);
    ConfigVersionInfo {
        version: cfg.version,
        timestamp: cfg.timestamp,
        has_previous_config: cfg.version > 1 && previous_exists,
        key_count: cfg.services.len() + cfg.environment_variables.len(),
        key_prefixes,
    }
}

// === ConfigHistory ===

/// Versions `1..=n` of the deployment configuration, in memory.
///
/// Invariants: versions are assigned consecutively and never reused; an existing version
/// is never modified except for its `stable` flag; the current version is never pruned.
/// The last stable configuration is kept as its own copy, so pruning never loses it.
#[derive(Debug, Clone, Default)]
pub struct ConfigHistory {
    /// Highest version ever assigned (0 when none).
    latest: u64,
    /// History entries by version (the current one included until pruned by count).
    entries: BTreeMap<u64, DeploymentConfiguration>,
    /// The current configuration (version `latest`), kept even when its entry is pruned.
    current: Option<DeploymentConfiguration>,
    /// Copy of the highest version marked stable.
    last_stable: Option<DeploymentConfiguration>,
    /// Keep at most this many history entries (older ones dropped on save and prune).
    max_versions: Option<NonZeroUsize>,
}

impl ConfigHistory {
    /// An empty history (version 0) with age-based retention only.
    pub fn new() -> Self {
        ConfigHistory::default()
    }

    /// An empty history that also keeps at most `max` entries (the current one always stays).
    pub fn with_max_versions(max: NonZeroUsize) -> Self {
        ConfigHistory {
            max_versions: Some(max),
            ..ConfigHistory::default()
        }
    }

    /// Saves `cfg` as version `latest + 1` with timestamp `now` and `stable = false`;
    /// it becomes current. Returns the new version (docs/COMPATIBILITY.md#saving-a-version
    /// SaveConfigurationVersion).
    pub fn save(&mut self, mut cfg: DeploymentConfiguration, now: Timestamp) -> u64 {
        self.latest += 1;
        cfg.version = self.latest;
        cfg.timestamp = now;
        cfg.stable = false;
        self.insert_current(cfg);
        self.latest
    }

    fn insert_current(&mut self, cfg: DeploymentConfiguration) {
        self.entries.insert(cfg.version, cfg.clone());
        self.current = Some(cfg);
        self.enforce_max_versions();
    }

    fn enforce_max_versions(&mut self) -> Vec<u64> {
        let mut removed = Vec::new();
        if let Some(max) = self.max_versions {
            while self.entries.len() > max.get() {
                match self.entries.pop_first() {
                    Some((v, _)) => removed.push(v),
                    None => break,
                }
            }
        }
        removed
    }

    /// The highest version assigned so far (0 when none).
    pub fn latest_version(&self) -> u64 {
        self.latest
    }

    /// The current configuration.
    pub fn current(&self) -> Option<&DeploymentConfiguration> {
        self.current.as_ref()
    }

    /// Version `version`, if it is current or still in the history.
    pub fn get(&self, version: u64) -> Option<&DeploymentConfiguration> {
        match &self.current {
            Some(c) if c.version == version => Some(c),
            _ => self.entries.get(&version),
        }
    }

    /// Up to `limit` versions, newest first (the current one included).
    pub fn history(&self, limit: usize) -> Vec<&DeploymentConfiguration> {
        let mut out: Vec<&DeploymentConfiguration> = Vec::new();
        if let Some(c) = &self.current {
            out.push(c);
        }
        out.extend(
            self.entries
                .values()
                .rev()
                .filter(|e| Some(e.version) != self.current.as_ref().map(|c| c.version)),
        );
        out.truncate(limit);
        out
    }

    /// Drops history entries saved `ttl` or longer before `now` (as a store's TTL would),
    /// and entries beyond `max_versions`; the current version always stays. Returns the
    /// dropped versions in ascending order.
    pub fn prune(&mut self, now: Timestamp, ttl: Duration) -> Vec<u64> {
        let current = self.current.as_ref().map(|c| c.version);
        let expired: Vec<u64> = self
            .entries
            .values()
            .filter(|e| Some(e.version) != current && e.timestamp + ttl <= now)
            .map(|e| e.version)
            .collect();
        for v in &expired {
            self.entries.remove(v);
        }
        let mut removed = expired;
        removed.extend(self.enforce_max_versions());
        removed.sort_unstable();
        removed
    }

    /// docs/COMPATIBILITY.md#rollback: creates exactly one new version, a copy of `target`
    /// (default: the one before current). On error nothing changes.
    pub fn rollback(
        &mut self,
        target: Option<u64>,
        now: Timestamp,
    ) -> Result<RollbackOutcome, RollbackError> {
        let plan = RollbackPlan::new(self.latest, target)?;
        let restored = plan.restore(self.get(plan.target).cloned(), now)?;
        let previous = self.current.take();
        self.latest = restored.version;
        self.insert_current(restored.clone());
        Ok(plan.outcome(restored, previous.as_ref()))
    }

    /// docs/COMPATIBILITY.md#saving-a-version ClearCurrentConfiguration: saves
    /// [`cleared_configuration`] as a new version and returns it. The history is kept.
    pub fn clear(&mut self, now: Timestamp) -> u64 {
        self.save(cleared_configuration(now), now)
    }

    /// Records that `version` became fully healthy: sets its `stable` flag and makes it the
    /// last stable version unless a higher version already is.
    pub fn mark_stable(&mut self, version: u64) -> Result<(), VersionNotFound> {
        let mut cfg = self
            .get(version)
            .cloned()
            .ok_or(VersionNotFound { version })?;
        cfg.stable = true;
        if let Some(e) = self.entries.get_mut(&version) {
            e.stable = true;
        }
        if let Some(c) = self.current.as_mut().filter(|c| c.version == version) {
            c.stable = true;
        }
        if self
            .last_stable
            .as_ref()
            .is_none_or(|s| s.version <= version)
        {
            self.last_stable = Some(cfg);
        }
        Ok(())
    }

    /// The highest version marked stable (kept even after its history entry is pruned).
    pub fn last_stable(&self) -> Option<&DeploymentConfiguration> {
        self.last_stable.as_ref()
    }

    /// docs/COMPATIBILITY.md#version-info for the current state.
    pub fn version_info(&self, now: Timestamp) -> ConfigVersionInfo {
        let previous_exists = self.latest > 1 && self.get(self.latest - 1).is_some();
        version_info(self.current(), previous_exists, now)
    }
}

#[cfg(test)]
mod tests;

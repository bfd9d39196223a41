//! The `OrchestratorStore` port: heartbeats, routing records, the mappings version counter
//! and configuration versions (docs/COMPATIBILITY.md#state-store-layout), with TTLs and
//! compare-and-set. Implemented by the in-memory store and the Redis adapter; both pass
//! `testkit::store::store_conformance`.
//!
//! # Conventions
//!
//! - Records carry their own timestamps (`LastSeen`, `LastUpdated`, config `Timestamp`),
//!   set by the caller from its clock; the store only judges TTL expiry, by its own time
//!   (the injected clock in memory, the server's clock in Redis).
//! - A TTL must be at least 1 ms, else [`StoreError::InvalidInput`]. A record whose TTL
//!   has run out is gone for every read, exactly as an expired Redis key.
//! - Listing never scans the keyspace: adapters keep an index
//!   (docs/COMPATIBILITY.md#indexes-and-locks).
//!
//! # Configuration versions and where the rules live
//!
//! The store offers primitives: an atomic save that assigns the next version (optionally
//! only if the latest version is still the expected one), reads of current and history,
//! stable marks and pruning. The rules of docs/COMPATIBILITY.md#configuration-versions
//! (rollback targets, the rollback copy, changed keys, the cleared configuration, version
//! info) live once in [`crate::config_history`]; the provided methods
//! [`OrchestratorStore::rollback_config`], [`OrchestratorStore::clear_config`] and
//! [`OrchestratorStore::config_version_info`] compose them with the primitives, so adapters
//! do not re-implement them and the service layer calls one method.
//! [`crate::config_history::ConfigHistory`] composes the same rules synchronously for pure,
//! in-process use and property tests.
//!
//! # Suggested Redis layout (docs/COMPATIBILITY.md#keys-and-records plus ours)
//!
//! `orch:hb:{appId}` and `orch:rt:{service}` with their `_index` records; `orch:cfg:version`
//! `{Version: n}`, `orch:cfg:current`, `orch:cfg:history:{n}` (history TTL),
//! `orch:cfg:mappings-version` `{Version: n}`, and ours: `orch:cfg:last-stable` (a full
//! configuration, no TTL). The mappings increment, the checked config save, `set_route_if`
//! and `mark_config_stable` (KEEPTTL on the history entry) each need one atomic step
//! (a Lua script or WATCH/MULTI).

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use thiserror::Error;

use crate::config_history::{
    ConfigVersionInfo, RollbackError, RollbackOutcome, RollbackPlan, cleared_configuration,
    version_info,
};
use crate::error_source::ErrorSource;
use crate::names::same_app_id;
use crate::records::{DeploymentConfiguration, HeartbeatRecord, RoutingRecord};
use crate::time::Timestamp;

/// Default heartbeat record TTL, `HeartbeatTtlSeconds`
/// (docs/COMPATIBILITY.md#configuration-variables).
pub const DEFAULT_HEARTBEAT_TTL: Duration = Duration::from_secs(90);

/// Default routing record TTL, `RoutingTtlSeconds` (docs/COMPATIBILITY.md#configuration-variables).
pub const DEFAULT_ROUTING_TTL: Duration = Duration::from_secs(300);

/// Default config history entry TTL, `ConfigHistoryTtlDays` = 30
/// (docs/COMPATIBILITY.md#configuration-variables).
pub const DEFAULT_CONFIG_HISTORY_TTL: Duration = Duration::from_secs(30 * 86_400);

/// How many times [`OrchestratorStore::claim_route`] retries a lost compare-and-set
/// (upstream's hard-coded 3, docs/COMPATIBILITY.md#indexes-and-locks).
pub const CLAIM_ROUTE_ATTEMPTS: usize = 3;

// === errors ===

/// A store operation failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store cannot be reached or refused the command (connection lost, timeout,
    /// server error). Transient: the caller may retry.
    #[error("state store unavailable: {message}")]
    Unavailable {
        /// What failed, as the client reported it.
        message: String,
        /// The client's error, when one caused it.
        #[source]
        source: Option<ErrorSource>,
    },
    /// Data under `key` exists but cannot be decoded (bad JSON, wrong shape); the record
    /// needs repair or removal.
    #[error("corrupt data under `{key}`: {message}")]
    Corrupt {
        /// Full store key (`orch:cfg:current`).
        key: String,
        /// Decoder message.
        message: String,
        /// The decoder's or client's error, when one caused it.
        #[source]
        source: Option<ErrorSource>,
    },
    /// A compare-and-set lost: the value under `key` was not what the caller expected
    /// (e.g. a config save with a stale expected version, or a route claim that kept
    /// racing). Nothing was written; the caller may re-read and retry.
    #[error("conflicting update of `{key}`: {message}")]
    Conflict {
        /// Full store key.
        key: String,
        /// What was expected versus found.
        message: String,
    },
    /// The caller passed an unusable argument (a TTL below 1 ms): a bug of the caller's
    /// code, never of a request.
    #[error("invalid store request: {message}")]
    InvalidInput {
        /// What was wrong.
        message: String,
    },
}

impl StoreError {
    /// [`StoreError::Unavailable`] without a foreign cause.
    pub fn unavailable(message: impl Into<String>) -> Self {
        StoreError::Unavailable {
            message: message.into(),
            source: None,
        }
    }

    /// [`StoreError::Corrupt`] without a foreign cause.
    pub fn corrupt(key: impl Into<String>, message: impl Into<String>) -> Self {
        StoreError::Corrupt {
            key: key.into(),
            message: message.into(),
            source: None,
        }
    }

    /// [`StoreError::Corrupt`] caused by the decoder's error `source` (quoted in the
    /// message).
    pub fn corrupt_from(
        key: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        StoreError::Corrupt {
            key: key.into(),
            message: source.to_string(),
            source: Some(ErrorSource::new(source)),
        }
    }
}

/// Checks a TTL is at least 1 ms (shared by adapters so they reject the same inputs).
pub fn check_ttl(ttl: Duration) -> Result<(), StoreError> {
    if ttl < Duration::from_millis(1) {
        return Err(StoreError::InvalidInput {
            message: format!("TTL must be at least 1 ms, got {ttl:?}"),
        });
    }
    Ok(())
}

/// Why [`OrchestratorStore::rollback_config`] failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConfigRollbackError {
    /// docs/COMPATIBILITY.md#rollback refused the request (an invalid or missing
    /// target).
    #[error(transparent)]
    Rejected(#[from] RollbackError),
    /// The store failed (docs/COMPATIBILITY.md#rollback step 4: 500 with a `restore_failed`
    /// error event; 503 when the store is unavailable).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What [`OrchestratorStore::claim_route`] did (docs/COMPATIBILITY.md#heartbeat-consumption
/// step d).
#[derive(Debug, Clone, PartialEq)]
pub enum RouteClaim {
    /// No live route existed; the record was written. Publish mappings now.
    Created,
    /// The route already pointed at the record's app-id; it was rewritten (status, load,
    /// `LastUpdated`, TTL).
    Refreshed,
    /// Another app-id owns the route; nothing was written.
    OwnedByOther(RoutingRecord),
}

// === the port ===

/// State the orchestrator keeps outside its process
/// (docs/COMPATIBILITY.md#state-store-layout). Object safe: used as `Arc<dyn
/// OrchestratorStore>`.
#[async_trait]
pub trait OrchestratorStore: Send + Sync + 'static {
    /// Checks the store answers (health). `Unavailable` when it does not.
    async fn ping(&self) -> Result<(), StoreError>;

    // --- heartbeats (`orch:hb:{appId}`) ---

    /// Writes the instance record under `record.app_id` with `ttl`
    /// (docs/COMPATIBILITY.md#heartbeat-consumption step a); replaces any previous record
    /// and restarts its TTL.
    async fn put_heartbeat(
        &self,
        record: &HeartbeatRecord,
        ttl: Duration,
    ) -> Result<(), StoreError>;

    /// The live record of `app_id` (exact match: records are keyed by the spelling a node
    /// beats with, so that keys written before app-ids compared without case stay
    /// readable; compare listed app-ids with [`crate::AppId`]), if any.
    async fn get_heartbeat(&self, app_id: &str) -> Result<Option<HeartbeatRecord>, StoreError>;

    /// Every live record, ordered by app-id.
    async fn list_heartbeats(&self) -> Result<Vec<HeartbeatRecord>, StoreError>;

    /// Deletes the record of `app_id`; true if a live one existed.
    async fn remove_heartbeat(&self, app_id: &str) -> Result<bool, StoreError>;

    // --- routing (`orch:rt:{service}`) ---

    /// Writes the route of `service` unconditionally with `ttl` (authoritative orchestrator
    /// writes, docs/COMPATIBILITY.md#routing-operations).
    async fn put_route(
        &self,
        service: &str,
        record: &RoutingRecord,
        ttl: Duration,
    ) -> Result<(), StoreError>;

    /// The live route of `service`, if any.
    async fn get_route(&self, service: &str) -> Result<Option<RoutingRecord>, StoreError>;

    /// Every live route by service name.
    async fn list_routes(&self) -> Result<BTreeMap<String, RoutingRecord>, StoreError>;

    /// Compare-and-set of one route, atomically: with `expected_app_id = None` the write
    /// happens only if `service` has no live route (create); with `Some(a)` only if the
    /// live route's app-id equals `a`, ASCII case-insensitively as
    /// docs/COMPATIBILITY.md#heartbeat-consumption compares (refresh). Returns whether it
    /// wrote. A heartbeat passes its own app-id both as `expected_app_id` and in `record`,
    /// so it can create or refresh but never move a route.
    async fn set_route_if(
        &self,
        service: &str,
        expected_app_id: Option<&str>,
        record: &RoutingRecord,
        ttl: Duration,
    ) -> Result<bool, StoreError>;

    /// Deletes the route of `service`; true if a live one existed.
    async fn remove_route(&self, service: &str) -> Result<bool, StoreError>;

    /// docs/COMPATIBILITY.md#heartbeat-consumption step d for one service: create the route
    /// if nobody owns it, refresh it if `record.app_id` owns it, otherwise leave it. Built
    /// on [`Self::set_route_if`]; retries a lost race up to [`CLAIM_ROUTE_ATTEMPTS`] times,
    /// then `Conflict`.
    async fn claim_route(
        &self,
        service: &str,
        record: &RoutingRecord,
        ttl: Duration,
    ) -> Result<RouteClaim, StoreError> {
        for _ in 0..CLAIM_ROUTE_ATTEMPTS {
            match self.get_route(service).await? {
                None => {
                    if self.set_route_if(service, None, record, ttl).await? {
                        return Ok(RouteClaim::Created);
                    }
                }
                Some(existing) if same_app_id(&existing.app_id, &record.app_id) => {
                    if self
                        .set_route_if(service, Some(&existing.app_id), record, ttl)
                        .await?
                    {
                        return Ok(RouteClaim::Refreshed);
                    }
                }
                Some(existing) => return Ok(RouteClaim::OwnedByOther(existing)),
            }
        }
        Err(StoreError::Conflict {
            key: format!("orch:rt:{service}"),
            message: format!("route kept changing during {CLAIM_ROUTE_ATTEMPTS} attempts"),
        })
    }

    // --- mappings version (`orch:cfg:mappings-version`) ---

    /// Atomically increments and returns the mappings version (1 on the first call).
    /// Strictly monotonic across calls, processes and restarts; never reset
    /// (docs/COMPATIBILITY.md#mappings-consumers).
    async fn next_mappings_version(&self) -> Result<i64, StoreError>;

    /// The last version handed out by [`Self::next_mappings_version`] (0 when none).
    async fn mappings_version(&self) -> Result<i64, StoreError>;

    // --- configuration (`orch:cfg:*`) ---

    /// Atomically assigns `latest + 1` to `cfg.version`, writes it as history entry (expiring
    /// after `history_ttl`) and as current (no TTL), and bumps the latest version; returns
    /// the new version. With `expected_latest = Some(n)` it writes only if the latest
    /// version is still `n`, else [`StoreError::Conflict`] and nothing is written.
    /// `cfg.timestamp` is kept as given; `cfg.stable` is stored as `false`.
    async fn save_config_checked(
        &self,
        cfg: &DeploymentConfiguration,
        expected_latest: Option<u64>,
        history_ttl: Duration,
    ) -> Result<u64, StoreError>;

    /// [`Self::save_config_checked`] without the expectation
    /// (docs/COMPATIBILITY.md#saving-a-version).
    async fn save_config(
        &self,
        cfg: &DeploymentConfiguration,
        history_ttl: Duration,
    ) -> Result<u64, StoreError> {
        self.save_config_checked(cfg, None, history_ttl).await
    }

    /// The current configuration (never expires), if any version was saved.
    async fn current_config(&self) -> Result<Option<DeploymentConfiguration>, StoreError>;

    /// Version `version`: the current one, or a history entry that has not expired or been
    /// pruned.
    async fn config_version(
        &self,
        version: u64,
    ) -> Result<Option<DeploymentConfiguration>, StoreError>;

    /// Up to `limit` live versions, newest first; the current one is always included (first)
    /// even when its history entry expired.
    async fn config_history(
        &self,
        limit: usize,
    ) -> Result<Vec<DeploymentConfiguration>, StoreError>;

    /// The highest version assigned (0 when none). Survives pruning; never decreases.
    async fn latest_config_version(&self) -> Result<u64, StoreError>;

    /// Records that `version` became fully healthy: sets `stable` on its history entry
    /// (keeping that entry's TTL) and on current if it is that version, and keeps a copy as
    /// last stable unless a higher version already is. False when the version is unknown.
    async fn mark_config_stable(&self, version: u64) -> Result<bool, StoreError>;

    /// The highest version marked stable (a separate copy without TTL, so it outlives its
    /// history entry).
    async fn last_stable_config(&self) -> Result<Option<DeploymentConfiguration>, StoreError>;

    /// Records that a deploy towards `target` has begun, before its first wave (crash
    /// safety: reconciliation after a crash finds here what the cut-off deploy was
    /// starting). `target.deployment_id` identifies it; an earlier record is replaced.
    async fn begin_deploy(&self, target: &DeploymentConfiguration) -> Result<(), StoreError>;

    /// Forgets the record of deploy `deployment_id` once it ended (succeeded, failed or
    /// reverted). False, keeping the record, when it is another deploy's or there is none.
    async fn end_deploy(&self, deployment_id: &str) -> Result<bool, StoreError>;

    /// The deploy that began and never ended, if any.
    async fn deploy_in_progress(&self) -> Result<Option<DeploymentConfiguration>, StoreError>;

    /// Housekeeping: drops expired history entries still held (a no-op where the store
    /// expires keys itself) and, with `keep_latest = Some(k)`, every history entry older
    /// than the newest `k` versions. Never touches current, last stable or the version
    /// counter. Returns how many entries it removed.
    async fn prune_config_history(&self, keep_latest: Option<usize>) -> Result<usize, StoreError>;

    /// docs/COMPATIBILITY.md#rollback RollbackConfiguration: validates with
    /// [`RollbackPlan`], loads the target, saves one new version `cur + 1` (a copy of the
    /// target) only if `cur` is still the latest (a concurrent save makes it `Conflict`),
    /// and computes `changedKeys`.
    async fn rollback_config(
        &self,
        target: Option<u64>,
        now: Timestamp,
        history_ttl: Duration,
    ) -> Result<RollbackOutcome, ConfigRollbackError> {
        // Latest first: current is written together with the version bump, and the
        // checked save below fails if anything was saved after this read.
        let latest = self.latest_config_version().await?;
        let plan = RollbackPlan::new(latest, target)?;
        let current = self.current_config().await?;
        let loaded = self.config_version(plan.target).await?;
        let mut restored = plan.restore(loaded, now)?;
        restored.version = self
            .save_config_checked(&restored, Some(plan.current), history_ttl)
            .await?;
        Ok(plan.outcome(restored, current.as_ref()))
    }

    /// docs/COMPATIBILITY.md#saving-a-version ClearCurrentConfiguration: saves the cleared
    /// configuration (preset `default`, nothing enabled) as a new version and returns it.
    async fn clear_config(&self, now: Timestamp, history_ttl: Duration) -> Result<u64, StoreError> {
        self.save_config(&cleared_configuration(now), history_ttl)
            .await
    }

    /// docs/COMPATIBILITY.md#version-info GetConfigVersion for the current state.
    async fn config_version_info(&self, now: Timestamp) -> Result<ConfigVersionInfo, StoreError> {
        let current = self.current_config().await?;
        let previous_exists = match current.as_ref().map(|c| c.version) {
            Some(v) if v > 1 => self.config_version(v - 1).await?.is_some(),
            _ => false,
        };
        Ok(version_info(current.as_ref(), previous_exists, now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rollback_errors_keep_their_meaning() {
        let invalid: ConfigRollbackError = RollbackError::InvalidTarget {
            target: 0,
            current: 2,
        }
        .into();
        assert_eq!(
            invalid.to_string(),
            "invalid rollback target 0: must be between 1 and 1"
        );
        let store: ConfigRollbackError = StoreError::unavailable("x").into();
        assert!(matches!(
            store,
            ConfigRollbackError::Store(StoreError::Unavailable { source: None, .. })
        ));
    }

    #[test]
    fn ttl_must_be_at_least_a_millisecond() {
        assert!(check_ttl(Duration::from_millis(1)).is_ok());
        assert!(check_ttl(DEFAULT_HEARTBEAT_TTL).is_ok());
        assert!(matches!(
            check_ttl(Duration::from_micros(999)),
            Err(StoreError::InvalidInput { .. })
        ));
    }
}

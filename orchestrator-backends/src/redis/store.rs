//! The Redis [`OrchestratorStore`]: heartbeats, routes, the mappings version and
//! configuration versions as PascalCase JSON strings
//! (docs/COMPATIBILITY.md#record-encoding), with server-side TTLs.
//!
//! # Key layout (prefix `orch` by default, see [`RedisStore::with_prefix`])
//!
//! | Key | Type | Content | TTL |
//! |---|---|---|---|
//! | `orch:hb:{appId}` | string | `HeartbeatRecord` JSON | heartbeat TTL (`PX`) |
//! | `orch:rt:{service}` | string | `RoutingRecord` JSON (`AppId`, `Host`, `Port`, ... as OpenResty reads) | routing TTL (`PX`) |
//! | `orch:idx:hb`, `orch:idx:rt` | sorted set | app-id / service name, scored by expiry (server ms) | none |
//! | `orch:cfg:version` | string | `{"Version":n}`, the latest config version | none |
//! | `orch:cfg:current` | string | current `DeploymentConfiguration` | none |
//! | `orch:cfg:history:{n}` | string | version `n` | history TTL (`PX`) |
//! | `orch:idx:cfg-history` | sorted set | history versions, scored by version | none |
//! | `orch:cfg:last-stable` | string | highest version marked stable | none |
//! | `orch:cfg:mappings-version` | string | `{"Version":n}` | none |
//! | `orch:cfg:deploy-in-progress` | hash | `id`, `config`: the deploy begun and not ended | none |
//!
//! The indexes replace the `_index` JSON records of docs/COMPATIBILITY.md#keys-and-records
//! (no `KEYS`/`SCAN`, no ETag retries) and live under `idx:` so no app-id or service name
//! can collide with them. Version counters keep the spec's `{"Version":n}` record shape (an
//! upstream-written database stays readable; a plain integer is accepted too) and are
//! incremented inside a script, which is as atomic as `INCR`.
//!
//! # One script per multi-key operation
//!
//! Every operation that touches more than one key, or reads before it writes, is a single
//! Lua script (`redis::Script`: `EVALSHA`, reloaded after `NOSCRIPT`, e.g. after a server
//! restart). Redis runs a script atomically, so no other client sees a half-done write
//! and no compare-and-set can lose an update between its read and its write:
//!
//! - put heartbeat / route: record with `PX` plus its index entry (score = server time +
//!   TTL), dropping expired index members on the way, so the index never grows unbounded;
//! - list: drops index members whose score has passed and fetches the rest in the same
//!   round trip (expired records are never returned, as `GET` would not return them);
//! - remove: record and index entry together;
//! - `set_route_if`: reads the live route, compares its `AppId` ASCII case-insensitively
//!   and writes only on a match: a check-then-write from the client could move a route;
//! - `next_mappings_version`: read, increment, write of `{"Version":n}`;
//! - save config: checks the expected latest version, assigns `latest + 1` and writes
//!   history entry, current and the counter together (the record's JSON is built by the
//!   client without its version; the script prepends `{"Version":n`);
//! - mark stable: sets the flag on the history entry (`KEEPTTL`) and current, and on the
//!   last-stable copy only if no higher version is there;
//! - history listing and pruning: read the version index and the entries, dropping index
//!   members whose entry has expired.
//!
//! Scripts build the history entry keys from a prefix argument (`{n}` is only known
//! inside the script); on a Redis Cluster the prefix is a hash tag (`{orch}:...`, see
//! [`RedisStore::with_prefix`]), so those keys are in the script's slot too. The scripts
//! themselves are in `store/scripts.rs`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use orchestrator_core::ports::store::{OrchestratorStore, StoreError, check_ttl};
use orchestrator_core::records::{DeploymentConfiguration, HeartbeatRecord, RoutingRecord};
use redis::{FromRedisValue, ScriptInvocation};
use serde::de::DeserializeOwned;

use self::scripts::SCRIPTS;
use super::connection::{
    CallError, CallFailure, ConnectError, RedisConfig, RedisConn, RedisConnection, ttl_millis,
};

/// Key prefix of docs/COMPATIBILITY.md#stores (`orch:hb:...`, `orch:rt:...`, `orch:cfg:...`).
pub const DEFAULT_KEY_PREFIX: &str = "orch";

mod scripts;

// === keys ===

/// Full key names under one prefix.
#[derive(Debug)]
struct Keys {
    prefix: String,
    hb: String,
    rt: String,
    hb_index: String,
    rt_index: String,
    cfg_version: String,
    cfg_current: String,
    cfg_history: String,
    cfg_history_index: String,
    cfg_last_stable: String,
    cfg_in_progress: String,
    mappings_version: String,
}

impl Keys {
    fn new(prefix: &str) -> Self {
        Keys {
            prefix: prefix.to_owned(),
            hb: format!("{prefix}:hb:"),
            rt: format!("{prefix}:rt:"),
            hb_index: format!("{prefix}:idx:hb"),
            rt_index: format!("{prefix}:idx:rt"),
            cfg_version: format!("{prefix}:cfg:version"),
            cfg_current: format!("{prefix}:cfg:current"),
            cfg_history: format!("{prefix}:cfg:history:"),
            cfg_history_index: format!("{prefix}:idx:cfg-history"),
            cfg_last_stable: format!("{prefix}:cfg:last-stable"),
            cfg_in_progress: format!("{prefix}:cfg:deploy-in-progress"),
            mappings_version: format!("{prefix}:cfg:mappings-version"),
        }
    }

    /// `{prefix}:hb:{appId}` in the app-id's spelling, not a folded form, although app-ids
    /// compare without case: upstream and earlier versions of ours wrote these keys from
    /// the spelling, a node always beats with its own spelling, and every reader lists
    /// them through the index (compare the app-ids it returns with `AppId`), so folding
    /// would only rename the keys existing state lives under.
    fn heartbeat(&self, app_id: &str) -> String {
        format!("{}{app_id}", self.hb)
    }

    fn route(&self, service: &str) -> String {
        format!("{}{service}", self.rt)
    }

    fn history(&self, version: u64) -> String {
        format!("{}{version}", self.cfg_history)
    }
}

// === the store ===

/// An [`OrchestratorStore`] on Redis. A cheap `Clone` handle over the process's shared
/// [`RedisConnection`]; every call is bounded by [`RedisConfig::call_timeout`] and fails
/// with [`StoreError::Unavailable`] while the server is down, then works again once the
/// connection manager has reconnected (no new store needed).
#[derive(Clone)]
pub struct RedisStore {
    conn: RedisConnection,
    keys: Arc<Keys>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.keys.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// A store on `conn` with keys under [`DEFAULT_KEY_PREFIX`].
    pub fn new(conn: RedisConnection) -> Self {
        Self::with_prefix(conn, DEFAULT_KEY_PREFIX)
    }

    /// A store on `conn` with keys under `prefix` (`{prefix}:hb:{appId}`, ...). Stores on
    /// different prefixes share nothing, so tests can share one server. On a Redis
    /// Cluster a prefix without a hash tag becomes one (`orch` -> `{orch}`), so every key
    /// of the store, and so every script, is in one slot (docs/DECISIONS.md#d45).
    pub fn with_prefix(conn: RedisConnection, prefix: impl Into<String>) -> Self {
        let mut prefix = prefix.into();
        if conn.url().topology == super::url::Topology::Cluster
            && !super::url::has_hash_tag(&prefix)
        {
            prefix = format!("{{{prefix}}}");
        }
        RedisStore {
            conn,
            keys: Arc::new(Keys::new(&prefix)),
        }
    }

    /// Connects to `config.url` and returns a store under [`DEFAULT_KEY_PREFIX`].
    pub async fn connect(config: RedisConfig) -> Result<Self, ConnectError> {
        Ok(Self::new(RedisConnection::connect(config).await?))
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.keys.prefix
    }

    /// The shared connection.
    pub fn connection(&self) -> &RedisConnection {
        &self.conn
    }

    async fn run<T: FromRedisValue + Send>(
        &self,
        key: &str,
        invocation: ScriptInvocation<'static>,
    ) -> Result<T, StoreError> {
        self.conn
            .bounded(|mut con: RedisConn| async move { invocation.invoke_async(&mut con).await })
            .await
            .map_err(|e| store_error(key, e))
    }

    async fn get_raw(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let cmd = redis::cmd("GET").arg(key).to_owned();
        self.conn
            .bounded(|mut con: RedisConn| async move { cmd.query_async(&mut con).await })
            .await
            .map_err(|e| store_error(key, e))
    }

    async fn get_json<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StoreError> {
        match self.get_raw(key).await? {
            Some(raw) => decode(key, &raw).map(Some),
            None => Ok(None),
        }
    }

    async fn put_indexed(
        &self,
        key: String,
        index: &str,
        member: &str,
        json: Vec<u8>,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let mut inv = SCRIPTS.put_indexed.prepare_invoke();
        inv.key(&key)
            .key(index)
            .arg(json)
            .arg(ttl_millis(ttl))
            .arg(member);
        self.run::<i64>(&key, inv).await.map(drop)
    }

    async fn list_indexed<T: DeserializeOwned>(
        &self,
        index: &str,
        record_prefix: &str,
    ) -> Result<BTreeMap<String, T>, StoreError> {
        let mut inv = SCRIPTS.list_indexed.prepare_invoke();
        inv.key(index).arg(record_prefix);
        let flat: Vec<Vec<u8>> = self.run(index, inv).await?;
        let mut out = BTreeMap::new();
        for pair in flat.chunks(2) {
            let [member, raw] = pair else {
                return Err(StoreError::corrupt(
                    index,
                    "listing returned an odd number of items",
                ));
            };
            let member = String::from_utf8_lossy(member).into_owned();
            let key = format!("{record_prefix}{member}");
            out.insert(member, decode(&key, raw)?);
        }
        Ok(out)
    }

    async fn remove_indexed(
        &self,
        key: String,
        index: &str,
        member: &str,
    ) -> Result<bool, StoreError> {
        let mut inv = SCRIPTS.remove_indexed.prepare_invoke();
        inv.key(&key).key(index).arg(member);
        Ok(self.run::<i64>(&key, inv).await? > 0)
    }

    async fn read_counter(&self, key: &str) -> Result<i64, StoreError> {
        match self.get_raw(key).await? {
            Some(raw) => parse_version(key, &raw),
            None => Ok(0),
        }
    }
}

#[async_trait]
impl OrchestratorStore for RedisStore {
    async fn ping(&self) -> Result<(), StoreError> {
        let cmd = redis::cmd("PING");
        self.conn
            .bounded(|mut con: RedisConn| async move { cmd.query_async::<String>(&mut con).await })
            .await
            .map(drop)
            .map_err(|e| store_error("PING", e))
    }

    // === heartbeats ===

    async fn put_heartbeat(
        &self,
        record: &HeartbeatRecord,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        check_ttl(ttl)?;
        let key = self.keys.heartbeat(&record.app_id);
        let json = encode(&key, record)?;
        self.put_indexed(key, &self.keys.hb_index, &record.app_id, json, ttl)
            .await
    }

    async fn get_heartbeat(&self, app_id: &str) -> Result<Option<HeartbeatRecord>, StoreError> {
        self.get_json(&self.keys.heartbeat(app_id)).await
    }

    async fn list_heartbeats(&self) -> Result<Vec<HeartbeatRecord>, StoreError> {
        let all = self
            .list_indexed::<HeartbeatRecord>(&self.keys.hb_index, &self.keys.hb)
            .await?;
        Ok(all.into_values().collect())
    }

    async fn remove_heartbeat(&self, app_id: &str) -> Result<bool, StoreError> {
        self.remove_indexed(self.keys.heartbeat(app_id), &self.keys.hb_index, app_id)
            .await
    }

    // === routing ===

    async fn put_route(
        &self,
        service: &str,
        record: &RoutingRecord,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        check_ttl(ttl)?;
        let key = self.keys.route(service);
        let json = encode(&key, record)?;
        self.put_indexed(key, &self.keys.rt_index, service, json, ttl)
            .await
    }

    async fn get_route(&self, service: &str) -> Result<Option<RoutingRecord>, StoreError> {
        self.get_json(&self.keys.route(service)).await
    }

    async fn list_routes(&self) -> Result<BTreeMap<String, RoutingRecord>, StoreError> {
        self.list_indexed(&self.keys.rt_index, &self.keys.rt).await
    }

    async fn set_route_if(
        &self,
        service: &str,
        expected_app_id: Option<&str>,
        record: &RoutingRecord,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        check_ttl(ttl)?;
        let key = self.keys.route(service);
        let json = encode(&key, record)?;
        let (mode, expected) = match expected_app_id {
            None => ("create", String::new()),
            Some(a) => ("refresh", a.to_ascii_lowercase()),
        };
        let mut inv = SCRIPTS.set_route_if.prepare_invoke();
        inv.key(&key)
            .key(&self.keys.rt_index)
            .arg(json)
            .arg(ttl_millis(ttl))
            .arg(service)
            .arg(mode)
            .arg(expected);
        Ok(self.run::<i64>(&key, inv).await? == 1)
    }

    async fn remove_route(&self, service: &str) -> Result<bool, StoreError> {
        self.remove_indexed(self.keys.route(service), &self.keys.rt_index, service)
            .await
    }

    // === mappings version ===

    async fn next_mappings_version(&self) -> Result<i64, StoreError> {
        let key = &self.keys.mappings_version;
        let mut inv = SCRIPTS.next_version.prepare_invoke();
        inv.key(key);
        self.run(key, inv).await
    }

    async fn mappings_version(&self) -> Result<i64, StoreError> {
        self.read_counter(&self.keys.mappings_version).await
    }

    // === configuration ===

    async fn save_config_checked(
        &self,
        cfg: &DeploymentConfiguration,
        expected_latest: Option<u64>,
        history_ttl: Duration,
    ) -> Result<u64, StoreError> {
        check_ttl(history_ttl)?;
        let k = &self.keys;
        let mut unsaved = cfg.clone();
        unsaved.version = 0;
        unsaved.stable = false;
        let json = encode(&k.cfg_current, &unsaved)?;
        // `Version` is the first field of the record; the script writes the real one.
        let rest =
            json.strip_prefix(b"{\"Version\":0")
                .ok_or_else(|| StoreError::InvalidInput {
                    message: "a DeploymentConfiguration must serialise with `Version` first"
                        .to_owned(),
                })?;
        let mut inv = SCRIPTS.save_config.prepare_invoke();
        inv.key(&k.cfg_version)
            .key(&k.cfg_current)
            .key(&k.cfg_history_index)
            .arg(&k.cfg_history)
            .arg(expected_latest.map(|v| v.to_string()).unwrap_or_default())
            .arg(ttl_millis(history_ttl))
            .arg(rest);
        let (saved, version): (i64, i64) = self.run(&k.cfg_version, inv).await?;
        let version = u64::try_from(version).map_err(|_| {
            StoreError::corrupt(k.cfg_version.clone(), format!("negative version {version}"))
        })?;
        if saved == 1 {
            Ok(version)
        } else {
            Err(StoreError::Conflict {
                key: k.cfg_version.clone(),
                message: format!(
                    "expected version {}, found {version}",
                    expected_latest.unwrap_or_default()
                ),
            })
        }
    }

    async fn current_config(&self) -> Result<Option<DeploymentConfiguration>, StoreError> {
        self.get_json(&self.keys.cfg_current).await
    }

    async fn config_version(
        &self,
        version: u64,
    ) -> Result<Option<DeploymentConfiguration>, StoreError> {
        let k = &self.keys;
        let history_key = k.history(version);
        let mut pipe = redis::pipe();
        pipe.atomic().get(&k.cfg_current).get(&history_key);
        let (current, entry): (Option<Vec<u8>>, Option<Vec<u8>>) = self
            .conn
            .bounded(|mut con: RedisConn| async move { pipe.query_async(&mut con).await })
            .await
            .map_err(|e| store_error(&history_key, e))?;
        if let Some(raw) = current {
            let cur: DeploymentConfiguration = decode(&k.cfg_current, &raw)?;
            if cur.version == version {
                return Ok(Some(cur));
            }
        }
        entry.map(|raw| decode(&history_key, &raw)).transpose()
    }

    async fn config_history(
        &self,
        limit: usize,
    ) -> Result<Vec<DeploymentConfiguration>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let k = &self.keys;
        let mut inv = SCRIPTS.config_history.prepare_invoke();
        inv.key(&k.cfg_current)
            .key(&k.cfg_history_index)
            .arg(&k.cfg_history)
            .arg(limit.saturating_add(1));
        let raw: Vec<Option<Vec<u8>>> = self.run(&k.cfg_history_index, inv).await?;
        let mut items = raw.into_iter();
        let current: Option<DeploymentConfiguration> = items
            .next()
            .flatten()
            .map(|r| decode(&k.cfg_current, &r))
            .transpose()?;
        let current_version = current.as_ref().map(|c| c.version);
        let mut out: Vec<DeploymentConfiguration> = current.into_iter().collect();
        for entry in items.flatten() {
            let cfg: DeploymentConfiguration = decode(&k.cfg_history, &entry)?;
            if Some(cfg.version) != current_version {
                out.push(cfg);
            }
        }
        out.truncate(limit);
        Ok(out)
    }

    async fn latest_config_version(&self) -> Result<u64, StoreError> {
        let key = &self.keys.cfg_version;
        let v = self.read_counter(key).await?;
        u64::try_from(v)
            .map_err(|_| StoreError::corrupt(key.clone(), format!("negative version {v}")))
    }

    async fn mark_config_stable(&self, version: u64) -> Result<bool, StoreError> {
        let Some(mut cfg) = self.config_version(version).await? else {
            return Ok(false);
        };
        // A version's content never changes after its save, only the flag; so writing
        // this copy (read just now) cannot undo another writer's change.
        cfg.stable = true;
        let k = &self.keys;
        let history_key = k.history(version);
        let json = encode(&history_key, &cfg)?;
        let mut inv = SCRIPTS.mark_stable.prepare_invoke();
        inv.key(&history_key)
            .key(&k.cfg_current)
            .key(&k.cfg_last_stable)
            .arg(version)
            .arg(json);
        Ok(self.run::<i64>(&history_key, inv).await? == 1)
    }

    async fn last_stable_config(&self) -> Result<Option<DeploymentConfiguration>, StoreError> {
        self.get_json(&self.keys.cfg_last_stable).await
    }

    async fn begin_deploy(&self, target: &DeploymentConfiguration) -> Result<(), StoreError> {
        let key = &self.keys.cfg_in_progress;
        let json = encode(key, target)?;
        let mut inv = SCRIPTS.begin_deploy.prepare_invoke();
        inv.key(key)
            .arg(target.deployment_id.as_deref().unwrap_or_default())
            .arg(json);
        self.run::<i64>(key, inv).await.map(|_| ())
    }

    async fn end_deploy(&self, deployment_id: &str) -> Result<bool, StoreError> {
        let key = &self.keys.cfg_in_progress;
        let mut inv = SCRIPTS.end_deploy.prepare_invoke();
        inv.key(key).arg(deployment_id);
        Ok(self.run::<i64>(key, inv).await? == 1)
    }

    async fn deploy_in_progress(&self) -> Result<Option<DeploymentConfiguration>, StoreError> {
        let key = self.keys.cfg_in_progress.clone();
        let cmd = redis::cmd("HGET").arg(&key).arg("config").to_owned();
        let raw: Option<Vec<u8>> = self
            .conn
            .bounded(|mut con: RedisConn| async move { cmd.query_async(&mut con).await })
            .await
            .map_err(|e| store_error(&key, e))?;
        raw.map(|r| decode(&key, &r)).transpose()
    }

    async fn prune_config_history(&self, keep_latest: Option<usize>) -> Result<usize, StoreError> {
        let k = &self.keys;
        let mut inv = SCRIPTS.prune_history.prepare_invoke();
        inv.key(&k.cfg_version)
            .key(&k.cfg_history_index)
            .arg(&k.cfg_history)
            .arg(keep_latest.map(|n| n.to_string()).unwrap_or_default());
        let removed: i64 = self.run(&k.cfg_history_index, inv).await?;
        Ok(usize::try_from(removed).unwrap_or(0))
    }
}

// === encoding and errors ===

fn encode<T: serde::Serialize>(key: &str, value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|e| StoreError::InvalidInput {
        message: format!("cannot encode the record for `{key}`: {e}"),
    })
}

fn decode<T: DeserializeOwned>(key: &str, raw: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(raw).map_err(|e| StoreError::corrupt_from(key, e))
}

/// A version counter: `{"Version":n}` (docs/COMPATIBILITY.md#keys-and-records) or a plain integer.
fn parse_version(key: &str, raw: &[u8]) -> Result<i64, StoreError> {
    #[derive(serde::Deserialize)]
    struct Counter {
        #[serde(rename = "Version")]
        version: i64,
    }
    if let Some(n) = std::str::from_utf8(raw)
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
    {
        return Ok(n);
    }
    decode::<Counter>(key, raw).map(|c| c.version)
}

/// Maps a failed call: undecodable data (a script's `CORRUPT key ...` reply, a wrong
/// type or shape) is `Corrupt`, everything else (connection, timeout, server refusal)
/// `Unavailable`.
fn store_error(key: &str, e: CallError) -> StoreError {
    match e.classify(key) {
        CallFailure::Corrupt {
            key,
            message,
            source,
        } => StoreError::Corrupt {
            key,
            message,
            source,
        },
        CallFailure::Unavailable { message, source } => StoreError::Unavailable { message, source },
    }
}

#[cfg(test)]
mod tests;

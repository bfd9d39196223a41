//! Upstream's lease algorithm (docs/COMPATIBILITY.md#keys-and-records,
//! docs/COMPATIBILITY.md#indexes-and-locks, docs/COMPATIBILITY.md#processing-pools-acquire,
//! docs/COMPATIBILITY.md#processing-pools-release), kept only as the baseline `bannou-host
//! bench pools` measures [`super::RedisLeaseStore`] against. Not a
//! [`orchestrator_pools::LeaseStore`]: it has no queue, no fencing and no metrics window.
//!
//! Per pool: a `SET NX EX 15` lock `{prefix}lock:{pool}` with value `{owner}:{unixSeconds}`
//! (busy = [`BaselineError::Busy`], the caller retries), and whole JSON values
//! `available` (array of instances, FIFO) and `leases` (map lease id -> lease), read,
//! edited here and written back; release also finds the pool through the `known` list
//! without the lock, then rewrites `metrics`. The lock is released by compare-and-delete
//! (one small script, the cheapest faithful form). Every step is its own round trip, as
//! upstream's state-store calls are.

use std::collections::BTreeMap;
use std::time::Duration;

use orchestrator_core::Timestamp;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, Script};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Lock expiry (`PoolLockTimeoutSeconds`).
const LOCK_SECONDS: u64 = 15;

/// Why a baseline call failed.
#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    /// The pool lock is held by someone else (upstream answers 409; callers retry).
    #[error("pool lock busy")]
    Busy,
    /// Redis failed or answered garbage.
    #[error("redis: {0}")]
    Redis(String),
}

impl From<redis::RedisError> for BaselineError {
    fn from(e: redis::RedisError) -> Self {
        BaselineError::Redis(e.to_string())
    }
}

impl From<serde_json::Error> for BaselineError {
    fn from(e: serde_json::Error) -> Self {
        BaselineError::Redis(format!("bad JSON: {e}"))
    }
}

/// `ProcessorInstance` (docs/COMPATIBILITY.md#keys-and-records).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Instance {
    processor_id: String,
    app_id: String,
    pool_type: String,
    status: String,
    created_at: Timestamp,
    last_updated: Timestamp,
}

/// `ProcessorLease` (docs/COMPATIBILITY.md#keys-and-records).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StoredLease {
    lease_id: Uuid,
    processor_id: String,
    app_id: String,
    pool_type: String,
    acquired_at: Timestamp,
    expires_at: Timestamp,
    priority: i32,
    metadata: serde_json::Value,
}

/// `PoolMetricsData` (docs/COMPATIBILITY.md#keys-and-records).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct MetricsData {
    jobs_completed1h: u64,
    jobs_failed1h: u64,
    avg_processing_time_ms: u64,
    last_scale_event: Option<Timestamp>,
    window_start: Option<Timestamp>,
}

/// A granted baseline lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaselineLease {
    /// The lease id.
    pub lease_id: Uuid,
    /// The leased processor.
    pub processor_id: String,
}

/// Upstream's lock + read-modify-write pools on one Redis.
#[derive(Clone)]
pub struct UpstreamBaseline {
    conn: ConnectionManager,
    prefix: String,
    owner: Uuid,
    unlock: Script,
}

impl std::fmt::Debug for UpstreamBaseline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamBaseline")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl UpstreamBaseline {
    /// Connects to `url`; keys start with `prefix`.
    pub async fn connect(url: &str, prefix: impl Into<String>) -> Result<Self, BaselineError> {
        let client = redis::Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(2)));
        let conn = ConnectionManager::new_with_config(client, config).await?;
        Ok(UpstreamBaseline {
            conn,
            prefix: prefix.into(),
            owner: Uuid::new_v4(),
            unlock: Script::new(
                "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0",
            ),
        })
    }

    fn key(&self, pool: &str, what: &str) -> String {
        format!("{}processing-pool:{pool}:{what}", self.prefix)
    }

    fn lock_key(&self, pool: &str) -> String {
        format!("{}lock:{pool}", self.prefix)
    }

    /// Creates pool `pool` with `workers` available instances (deploy,
    /// docs/COMPATIBILITY.md#processing-pools-configuration, plus workers that upstream
    /// would never make available by itself: see
    /// docs/COMPATIBILITY.md#processing-pools-concepts).
    pub async fn setup(
        &self,
        pool: &str,
        workers: u32,
        now: Timestamp,
    ) -> Result<(), BaselineError> {
        let available: Vec<Instance> = (0..workers)
            .map(|i| {
                let processor_id = format!("{pool}-{:032x}", u128::from(i) + 1);
                Instance {
                    app_id: format!(
                        "bannou-pool-{pool}-{}",
                        &processor_id[processor_id.len() - 8..]
                    ),
                    processor_id,
                    pool_type: pool.to_owned(),
                    status: "Available".to_owned(),
                    created_at: now,
                    last_updated: now,
                }
            })
            .collect();
        let mut conn = self.conn.clone();
        let _: () = conn
            .set(
                self.key(pool, "available"),
                serde_json::to_string(&available)?,
            )
            .await?;
        let _: () = conn
            .set(
                self.key(pool, "instances"),
                serde_json::to_string(&available)?,
            )
            .await?;
        let _: () = conn.set(self.key(pool, "leases"), "{}").await?;
        let _: () = conn
            .set(
                format!("{}processing-pool:known", self.prefix),
                serde_json::to_string(&[pool])?,
            )
            .await?;
        Ok(())
    }

    async fn lock(&self, pool: &str, now: Timestamp) -> Result<String, BaselineError> {
        let value = format!("{}:{}", self.owner, now.unix_millis() / 1000);
        let mut conn = self.conn.clone();
        let got: Option<String> = redis::cmd("SET")
            .arg(self.lock_key(pool))
            .arg(&value)
            .arg("NX")
            .arg("EX")
            .arg(LOCK_SECONDS)
            .query_async(&mut conn)
            .await?;
        match got {
            Some(_) => Ok(value),
            None => Err(BaselineError::Busy),
        }
    }

    async fn unlock(&self, pool: &str, value: &str) -> Result<(), BaselineError> {
        let mut conn = self.conn.clone();
        let _: i64 = self
            .unlock
            .key(self.lock_key(pool))
            .arg(value)
            .invoke_async(&mut conn)
            .await?;
        Ok(())
    }

    async fn get_json<T: serde::de::DeserializeOwned + Default>(
        &self,
        key: String,
    ) -> Result<T, BaselineError> {
        let mut conn = self.conn.clone();
        let raw: Option<String> = conn.get(key).await?;
        Ok(match raw {
            Some(s) => serde_json::from_str(&s)?,
            None => T::default(),
        })
    }

    async fn set_json<T: Serialize>(&self, key: String, value: &T) -> Result<(), BaselineError> {
        let mut conn = self.conn.clone();
        let _: () = conn.set(key, serde_json::to_string(value)?).await?;
        Ok(())
    }

    /// Acquire (docs/COMPATIBILITY.md#processing-pools-acquire): lock, reclaim expired
    /// leases, pop the first available instance, add the lease, unlock. `Ok(None)` = no
    /// processor available.
    pub async fn acquire(
        &self,
        pool: &str,
        lease_for: Duration,
        now: Timestamp,
    ) -> Result<Option<BaselineLease>, BaselineError> {
        let lock = self.lock(pool, now).await?;
        let result = self.acquire_locked(pool, lease_for, now).await;
        let unlocked = self.unlock(pool, &lock).await;
        let result = result?;
        unlocked?;
        Ok(result)
    }

    async fn acquire_locked(
        &self,
        pool: &str,
        lease_for: Duration,
        now: Timestamp,
    ) -> Result<Option<BaselineLease>, BaselineError> {
        // Reclamation (docs/COMPATIBILITY.md#processing-pools-reclamation) under the lock:
        // expired leases go back to `available`.
        let mut leases: BTreeMap<String, StoredLease> =
            self.get_json(self.key(pool, "leases")).await?;
        let mut available: Vec<Instance> = self.get_json(self.key(pool, "available")).await?;
        let expired: Vec<String> = leases
            .iter()
            .filter(|(_, l)| l.expires_at < now)
            .map(|(k, _)| k.clone())
            .collect();
        if !expired.is_empty() {
            for k in &expired {
                if let Some(l) = leases.remove(k) {
                    available.push(Instance {
                        processor_id: l.processor_id,
                        app_id: l.app_id,
                        pool_type: l.pool_type,
                        status: "Available".to_owned(),
                        created_at: Timestamp::UNIX_EPOCH,
                        last_updated: now,
                    });
                }
            }
            self.set_json(self.key(pool, "available"), &available)
                .await?;
            self.set_json(self.key(pool, "leases"), &leases).await?;
        }
        if available.is_empty() {
            return Ok(None);
        }
        let instance = available.remove(0);
        self.set_json(self.key(pool, "available"), &available)
            .await?;
        let lease = StoredLease {
            lease_id: Uuid::new_v4(),
            processor_id: instance.processor_id.clone(),
            app_id: instance.app_id,
            pool_type: pool.to_owned(),
            acquired_at: now,
            expires_at: now + lease_for,
            priority: 0,
            metadata: serde_json::Value::Null,
        };
        let granted = BaselineLease {
            lease_id: lease.lease_id,
            processor_id: instance.processor_id,
        };
        leases.insert(lease.lease_id.to_string(), lease);
        self.set_json(self.key(pool, "leases"), &leases).await?;
        Ok(Some(granted))
    }

    /// Release (docs/COMPATIBILITY.md#processing-pools-release): find the lease's pool
    /// through `known` (unlocked), lock it, remove the lease, append the instance to
    /// `available`, count the job, unlock. `Ok(false)` = unknown lease (404).
    pub async fn release(
        &self,
        lease_id: Uuid,
        success: bool,
        now: Timestamp,
    ) -> Result<bool, BaselineError> {
        let known: Vec<String> = self
            .get_json(format!("{}processing-pool:known", self.prefix))
            .await?;
        let id = lease_id.to_string();
        let mut found = None;
        for pool in known {
            let leases: BTreeMap<String, StoredLease> =
                self.get_json(self.key(&pool, "leases")).await?;
            if leases.contains_key(&id) {
                found = Some(pool);
                break;
            }
        }
        let Some(pool) = found else {
            return Ok(false);
        };
        let lock = self.lock(&pool, now).await?;
        let result = self.release_locked(&pool, &id, success, now).await;
        let unlocked = self.unlock(&pool, &lock).await;
        let result = result?;
        unlocked?;
        Ok(result)
    }

    async fn release_locked(
        &self,
        pool: &str,
        id: &str,
        success: bool,
        now: Timestamp,
    ) -> Result<bool, BaselineError> {
        let mut leases: BTreeMap<String, StoredLease> =
            self.get_json(self.key(pool, "leases")).await?;
        let Some(lease) = leases.remove(id) else {
            return Ok(false);
        };
        self.set_json(self.key(pool, "leases"), &leases).await?;
        let mut available: Vec<Instance> = self.get_json(self.key(pool, "available")).await?;
        available.push(Instance {
            processor_id: lease.processor_id,
            app_id: lease.app_id,
            pool_type: pool.to_owned(),
            status: "Available".to_owned(),
            created_at: Timestamp::UNIX_EPOCH,
            last_updated: now,
        });
        self.set_json(self.key(pool, "available"), &available)
            .await?;
        let mut m: MetricsData = self.get_json(self.key(pool, "metrics")).await?;
        if m.window_start
            .is_none_or(|w| now.saturating_since(w) >= Duration::from_secs(3600))
        {
            m.jobs_completed1h = 0;
            m.jobs_failed1h = 0;
            m.window_start = Some(now);
        }
        if success {
            m.jobs_completed1h += 1;
        } else {
            m.jobs_failed1h += 1;
        }
        self.set_json(self.key(pool, "metrics"), &m).await?;
        Ok(true)
    }
}

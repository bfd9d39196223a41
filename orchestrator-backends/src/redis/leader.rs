//! [`RedisLeaderElection`]: the [`LeaderElection`] port on Redis, every operation one
//! round trip (one `EVALSHA` of a Lua script, reloaded by `redis::Script` on `NOSCRIPT`).
//!
//! # Keys (prefix `orch` by default, as the store's)
//!
//! | key | type | content | TTL |
//! |---|---|---|---|
//! | `orch:{leader}:lease` | string | `"{token} {candidate}"` | the lease TTL (`PX`) |
//! | `orch:{leader}:token` | string | the last fencing token handed out (`INCR`) | none |
//!
//! Both keys share the hash tag `{leader}`, so the scripts stay single-slot on a cluster.
//!
//! # Time
//!
//! Expiry is Redis's own: the lease key is written with `PX ttl`, so a lease is live
//! exactly as long as the key exists, by the server's clock, whatever the replicas'
//! clocks say. The `now` each call receives is only used to express what the server
//! reports as remaining (`PTTL`) as [`Leadership::expires_at`] in the caller's clock.
//! Since the caller reads `now` before sending, that estimate is never later than the real
//! expiry (apart from clock-rate drift over one TTL).
//!
//! # Scripts
//!
//! - acquire or renew: `GET` the lease; the caller's own live lease gets `PEXPIRE ttl` (same
//!   token); another holder's is reported with its `PTTL` and nothing changes; no lease
//!   means `INCR` the token counter and `SET ... PX ttl`, in the same script, so two
//!   candidates can never both see "no lease" and no token is ever handed out twice;
//! - release: `DEL` only if the value is exactly `"{token} {candidate}"`;
//! - current: `GET` and `PTTL`, read only.
//!
//! The token counter has no TTL and is never deleted, so tokens keep increasing across
//! terms and orchestrator restarts (not across a flushed or lost Redis database).

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use async_trait::async_trait;
use orchestrator_core::Timestamp;
use orchestrator_core::ports::leader::{
    LeaderElection, LeaderError, Leadership, check_candidate, check_request,
};
use redis::{Script, ScriptInvocation};

use super::connection::{CallError, CallFailure, RedisConn, RedisConnection, ttl_millis};
use super::store::DEFAULT_KEY_PREFIX;

/// Reads `KEYS[1]` as `"{token} {holder}"`: `tok, holder` (both nil when absent) or
/// `nil, nil, err`.
const READ_LEASE: &str = r#"
local function read_lease(key)
  local raw = redis.call('GET', key)
  if not raw then return nil, nil, nil end
  local sp = string.find(raw, ' ', 1, true)
  local tok = sp and tonumber(string.sub(raw, 1, sp - 1))
  if not tok then return nil, nil, 'CORRUPT ' .. key .. ' is not "{token} {candidate}"' end
  return tok, string.sub(raw, sp + 1), nil
end
"#;

struct Scripts {
    acquire: Script,
    release: Script,
    current: Script,
}

/// Every script answers `{held, token, holder, pttl}`: `held` 1 when `ARGV[1]` holds the
/// lease after the call (acquire) or a lease exists (current), else 0.
static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    // KEYS[1] lease, KEYS[2] token counter; ARGV[1] candidate, ARGV[2] TTL ms.
    acquire: Script::new(&format!(
        r#"{READ_LEASE}
local tok, holder, err = read_lease(KEYS[1])
if err then return redis.error_reply(err) end
if tok then
  if holder ~= ARGV[1] then
    return {{0, tok, holder, redis.call('PTTL', KEYS[1])}}
  end
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {{1, tok, holder, tonumber(ARGV[2])}}
end
local new = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], string.format('%d', new) .. ' ' .. ARGV[1], 'PX', ARGV[2])
return {{1, new, ARGV[1], tonumber(ARGV[2])}}"#
    )),
    // KEYS[1] lease; ARGV[1] candidate, ARGV[2] token (decimal). Returns 1 if deleted.
    release: Script::new(
        r#"
if redis.call('GET', KEYS[1]) == ARGV[2] .. ' ' .. ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0"#,
    ),
    // KEYS[1] lease.
    current: Script::new(&format!(
        r#"{READ_LEASE}
local tok, holder, err = read_lease(KEYS[1])
if err then return redis.error_reply(err) end
if not tok then return {{0, 0, '', 0}} end
return {{1, tok, holder, redis.call('PTTL', KEYS[1])}}"#
    )),
});

/// The leader lease on Redis. A cheap `Clone` handle over the process's shared
/// [`RedisConnection`]; every call is bounded by its call timeout and fails with
/// [`LeaderError::Unavailable`] while the server is down.
#[derive(Clone)]
pub struct RedisLeaderElection {
    conn: RedisConnection,
    keys: Arc<Keys>,
}

#[derive(Debug)]
struct Keys {
    lease: String,
    token: String,
}

impl std::fmt::Debug for RedisLeaderElection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLeaderElection")
            .field("lease", &self.keys.lease)
            .finish_non_exhaustive()
    }
}

type Reply = (i64, u64, String, i64);

impl RedisLeaderElection {
    /// An election on `conn` with keys under [`DEFAULT_KEY_PREFIX`] (`orch:{leader}:...`).
    pub fn new(conn: RedisConnection) -> Self {
        Self::with_prefix(conn, DEFAULT_KEY_PREFIX)
    }

    /// An election with keys under `prefix` (`{prefix}:{leader}:lease`, `...:token`);
    /// elections on different prefixes share nothing.
    pub fn with_prefix(conn: RedisConnection, prefix: impl AsRef<str>) -> Self {
        let prefix = prefix.as_ref();
        RedisLeaderElection {
            conn,
            keys: Arc::new(Keys {
                lease: format!("{prefix}:{{leader}}:lease"),
                token: format!("{prefix}:{{leader}}:token"),
            }),
        }
    }

    /// The key holding the lease.
    pub fn lease_key(&self) -> &str {
        &self.keys.lease
    }

    async fn run(&self, invocation: ScriptInvocation<'static>) -> Result<Reply, LeaderError> {
        self.conn
            .bounded(|mut con: RedisConn| async move { invocation.invoke_async(&mut con).await })
            .await
            .map_err(|e| leader_error(&self.keys.lease, e))
    }

    fn leadership(&self, reply: Reply, now: Timestamp) -> Result<Leadership, LeaderError> {
        let (_, token, holder, pttl) = reply;
        let remaining = u64::try_from(pttl).map_err(|_| LeaderError::Corrupt {
            key: self.keys.lease.clone(),
            message: format!("the lease has no expiry (PTTL {pttl})"),
            source: None,
        })?;
        Ok(Leadership {
            holder,
            fencing_token: token,
            expires_at: now + Duration::from_millis(remaining),
        })
    }
}

#[async_trait]
impl LeaderElection for RedisLeaderElection {
    async fn try_acquire_or_renew(
        &self,
        candidate: &str,
        ttl: Duration,
        now: Timestamp,
    ) -> Result<Option<Leadership>, LeaderError> {
        check_request(candidate, ttl)?;
        let mut inv = SCRIPTS.acquire.prepare_invoke();
        inv.key(&self.keys.lease)
            .key(&self.keys.token)
            .arg(candidate)
            .arg(ttl_millis(ttl));
        let reply = self.run(inv).await?;
        if reply.0 == 1 {
            self.leadership(reply, now).map(Some)
        } else {
            Ok(None)
        }
    }

    async fn release(
        &self,
        candidate: &str,
        fencing_token: u64,
        _now: Timestamp,
    ) -> Result<bool, LeaderError> {
        check_candidate(candidate)?;
        let mut inv = SCRIPTS.release.prepare_invoke();
        inv.key(&self.keys.lease)
            .arg(candidate)
            .arg(fencing_token.to_string());
        let deleted: i64 = self
            .conn
            .bounded(|mut con: RedisConn| async move { inv.invoke_async(&mut con).await })
            .await
            .map_err(|e| leader_error(&self.keys.lease, e))?;
        Ok(deleted > 0)
    }

    async fn current(&self, now: Timestamp) -> Result<Option<Leadership>, LeaderError> {
        let mut inv = SCRIPTS.current.prepare_invoke();
        inv.key(&self.keys.lease);
        let reply = self.run(inv).await?;
        if reply.0 == 1 {
            self.leadership(reply, now).map(Some)
        } else {
            Ok(None)
        }
    }
}

fn leader_error(key: &str, e: CallError) -> LeaderError {
    match e.classify(key) {
        CallFailure::Corrupt {
            key,
            message,
            source,
        } => LeaderError::Corrupt {
            key,
            message,
            source,
        },
        CallFailure::Unavailable { message, source } => {
            LeaderError::Unavailable { message, source }
        }
    }
}

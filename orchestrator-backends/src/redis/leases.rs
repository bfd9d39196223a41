//! [`RedisLeaseStore`]: the [`LeaseStore`] port on Redis, every operation **one round
//! trip**: one call of a Lua script, `FCALL` of a Redis Functions library where the server
//! has Functions (Redis 7+), else `EVALSHA` (reloaded by `redis::Script` on `NOSCRIPT`).
//!
//! Invariants: each operation is atomic and one round trip (a refused operation changed
//! nothing); time is the caller's `now`, never Redis' clock; every key of a pool shares its
//! hash tag; no script scans the keyspace. The scripts, batching, key layout and waiting are
//! described in docs/REDIS-LEASE-STORE.md.
//!
//! # Why this file is long
//!
//! It holds the one `LeaseStore` implementation: each operation is its script call plus
//! the decoding of that script's reply, kept side by side so a change of a script's
//! reply shape and its decoder are read together; the batcher (`leases/batch.rs`) and
//! the baseline scripts (`leases/baseline.rs`) are already apart.

pub mod baseline;
mod batch;

pub use batch::BatchStats;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::future::BoxFuture;
use orchestrator_core::{AppId, Timestamp};
use orchestrator_pools::model::{METRICS_BUCKET, METRICS_BUCKETS};
use orchestrator_pools::{
    AcquireOutcome, AcquireRequest, Acquired, FencingToken, Lease, LeaseError, LeaseId, LeaseStore,
    PoolConfig, PoolLoad, PoolMetrics, PoolStatus, PoolType, ProcessorId, Released, RemovedWorker,
    WaitStatus, WaitTicket, Worker, WorkerState,
};
use redis::{Script, ScriptInvocation, Value};

use super::connection::{RedisConfig, RedisConn, RedisConnection, TlsFiles};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// How long one `watch` future blocks in `BLPOP` before it completes anyway (the waiter
/// then polls once and watches again).
pub const WATCH_BLOCK: Duration = Duration::from_secs(5);

/// Dedicated `BLPOP` connections kept for reuse.
const IDLE_WATCH_CONNECTIONS: usize = 64;

/// Prepares one script call with `KEYS[1]` = the pool's key base and the given `ARGV`,
/// and returns the future of its reply.
macro_rules! eval {
    ($store:expr, $script:ident, $pool:expr $(, $arg:expr)* $(,)?) => {{
        let mut call = $store.prepare(
            stringify!($script),
            $store.inner.scripts.get(stringify!($script)),
            &[$store.pool_key_base($pool)],
        );
        $( call.arg($arg); )*
        $store.run(call)
    }};
}

/// Like [`eval!`], awaited, for the operations `lua/batch.lua` takes: through the batcher
/// when the store has one.
macro_rules! hot {
    ($store:expr, $script:ident, $pool:expr $(, $arg:expr)* $(,)?) => {{
        match &$store.inner.batcher {
            Some(batcher) => {
                let mut args: Vec<Vec<u8>> = Vec::new();
                $( args.extend(redis::ToRedisArgs::to_redis_args($arg)); )*
                batcher
                    .run($store.pool_key_base($pool), stringify!($script), args)
                    .await
            }
            None => eval!($store, $script, $pool $(, $arg)*).await,
        }
    }};
}

/// Every operation: its name (the function's, under Redis Functions) and its body.
const OPERATIONS: [(&str, &str); 12] = [
    ("configure", include_str!("lua/configure.lua")),
    ("register", include_str!("lua/register.lua")),
    ("ready", include_str!("lua/ready.lua")),
    ("acquire", include_str!("lua/acquire.lua")),
    ("poll", include_str!("lua/poll.lua")),
    ("cancel", include_str!("lua/cancel.lua")),
    ("release", include_str!("lua/release.lua")),
    ("renew", include_str!("lua/renew.lua")),
    ("reclaim", include_str!("lua/reclaim.lua")),
    ("drain", include_str!("lua/drain.lua")),
    ("remove", include_str!("lua/remove.lua")),
    ("status", include_str!("lua/status.lua")),
];

/// The definitions every operation shares (see its header).
const COMMON: &str = include_str!("lua/common.lua");

/// The library's `batch` function: several operations of one pool in one call.
const BATCH: &str = include_str!("lua/batch.lua");

/// How the store runs its scripts on the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scripting {
    /// Redis Functions (`FCALL`) where the server has them (Redis 7 and later, and the
    /// `FUNCTION` command allowed), otherwise `EVALSHA`. The default: the same Lua, but
    /// its shared helpers are defined once when the library loads instead of on every
    /// call, which made an acquire+release pair about a quarter cheaper on the server
    /// (BENCHMARKS.md).
    #[default]
    Auto,
    /// `EVALSHA` of one script per operation, loaded again on `NOSCRIPT`.
    Eval,
}

/// The Functions library: its versioned name (so two builds with different scripts
/// sharing one Redis never replace each other's functions) and its code.
#[derive(Debug)]
struct Library {
    code: String,
    /// Replicas every write waits for ([`RedisLeaseStoreConfig::wait`]).
    wait: Option<Wait>,
    /// `(operation, function name)`, made once rather than on every call.
    functions: Vec<(&'static str, String)>,
}

impl Library {
    fn new() -> Self {
        let mut body = COMMON.to_owned();
        // Each body is a function kept in `OPS` (for batches) and registered behind `init`.
        body.push_str("local OPS = {}\n");
        for (op, code) in OPERATIONS {
            body.push_str(&format!(
                "do\nlocal f = function(KEYS, ARGV)\n{code}\nend\nOPS['{op}'] = f\n\
                 redis.register_function('{{lib}}_{op}', function(KEYS, ARGV) init(KEYS) return f(KEYS, ARGV) end)\nend\n"
            ));
        }
        body.push_str(BATCH);
        body.push_str("redis.register_function('{lib}_noop', function() return 1 end)\n");
        let hash = Script::new(&body).get_hash().to_owned();
        let name = format!("bannou_leases_{}", &hash[..12]);
        let code = format!("#!lua name={name}\n{}", body.replace("{lib}", &name));
        let functions = OPERATIONS
            .iter()
            .map(|(op, _)| *op)
            .chain(["batch", "noop"])
            .map(|op| (op, format!("{name}_{op}")))
            .collect();
        Library {
            code,
            wait: None,
            functions,
        }
    }

    /// The function of operation `op` (one of [`OPERATIONS`] or `noop`).
    fn function(&self, op: &str) -> &str {
        self.functions
            .iter()
            .find(|(o, _)| *o == op)
            .map_or("", |(_, f)| f.as_str())
    }
}

/// One prepared call, either way.
enum Call<'a> {
    Eval(ScriptInvocation<'a>),
    Function(redis::Cmd, &'a Library),
}

impl Call<'_> {
    fn arg<T: redis::ToRedisArgs>(&mut self, arg: T) -> &mut Self {
        match self {
            Call::Eval(inv) => {
                inv.arg(arg);
            }
            Call::Function(cmd, _) => {
                cmd.arg(arg);
            }
        }
        self
    }
}

/// Loads (or replaces with the same code) the library.
async fn load_library(lib: &Library, conn: &mut RedisConn) -> redis::RedisResult<()> {
    redis::cmd("FUNCTION")
        .arg("LOAD")
        .arg("REPLACE")
        .arg(&lib.code)
        .query_async::<Value>(conn)
        .await
        .map(|_| ())
}

/// Runs an `FCALL` of `lib`; a function Redis no longer has (restarted without
/// persistence, flushed) is loaded again and the call repeated once, as `redis::Script`
/// does for `NOSCRIPT`.
async fn query_function(
    conn: &mut RedisConn,
    lib: &Library,
    cmd: &redis::Cmd,
) -> Result<Value, LeaseError> {
    let reply = match cmd.query_async::<Value>(conn).await {
        Err(e) if function_missing(&e) => {
            load_library(lib, conn).await.map_err(redis_err)?;
            cmd.query_async::<Value>(conn).await
        }
        other => other,
    }
    .map_err(redis_err)?;
    replicated(conn, lib.wait).await?;
    Ok(reply)
}

/// `WAIT` for replicas of the writes made so far: how a grant survives a failover to a
/// replica (docs/DECISIONS.md#d44).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wait {
    /// Replicas that must have the write.
    pub replicas: u32,
    /// How long to wait for them.
    pub timeout: Duration,
}

/// Waits for `wait`'s replicas (nothing when `None`); fewer within its timeout is
/// `Unavailable`: the operation happened on the master but is not known to survive a
/// failover, so its caller must not rely on it (a grant it did not receive expires).
async fn replicated(conn: &mut RedisConn, wait: Option<Wait>) -> Result<(), LeaseError> {
    let Some(w) = wait else { return Ok(()) };
    let timeout_ms = u64::try_from(w.timeout.as_millis())
        .unwrap_or(u64::MAX)
        .max(1);
    let acked: i64 = redis::cmd("WAIT")
        .arg(w.replicas)
        .arg(timeout_ms)
        .query_async(conn)
        .await
        .map_err(redis_err)?;
    if acked < i64::from(w.replicas) {
        return Err(unavailable(format!(
            "the write reached {acked} of {} replicas within {timeout_ms} ms; not relied on (docs/DECISIONS.md#d44)",
            w.replicas
        )));
    }
    Ok(())
}

/// Whether the server does not know a command (`FUNCTION` before Redis 7).
fn unknown_command(e: &redis::RedisError) -> bool {
    e.to_string()
        .to_ascii_lowercase()
        .contains("unknown command")
}

/// Whether Redis answered that the function does not exist (a restart without
/// persistence, `FUNCTION FLUSH`): the counterpart of `NOSCRIPT`.
fn function_missing(e: &redis::RedisError) -> bool {
    e.to_string().contains("Function not found")
}

/// How to reach Redis and name the keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisLeaseStoreConfig {
    /// Prepended to every key (`{prefix}pool:{P}:...`, `{prefix}pools`); tests use a
    /// unique one each. Default `orch:`.
    pub prefix: String,
    /// Giving up on connecting (then [`LeaseError::Unavailable`]). Default 1 s.
    pub connection_timeout: Duration,
    /// Giving up on an answer (then [`LeaseError::Unavailable`]). Default 2 s.
    pub response_timeout: Duration,
    /// `FCALL` or `EVALSHA`. Default [`Scripting::Auto`].
    pub scripting: Scripting,
    /// Under Redis Functions, at most this many acquire, release and renew operations of
    /// one pool that are waiting at the same time go out as one call (`batch`). Default
    /// 64; 0 or 1 sends every operation alone.
    pub max_batch: usize,
    /// At most this many such calls on the wire at a time. Default 2: one runs while
    /// the next fills.
    pub batches_in_flight: usize,
    /// CA and client certificate of a TLS URL.
    pub tls_files: TlsFiles,
    /// Every operation waits (`WAIT`) until this many replicas have its writes before it
    /// answers, so a failover to a replica loses no acknowledged grant
    /// (docs/DECISIONS.md#d44). Default `None`: answer on the master's word.
    pub wait: Option<Wait>,
}

impl Default for RedisLeaseStoreConfig {
    fn default() -> Self {
        RedisLeaseStoreConfig {
            prefix: "orch:".to_owned(),
            connection_timeout: Duration::from_secs(1),
            response_timeout: Duration::from_secs(2),
            scripting: Scripting::Auto,
            max_batch: 64,
            batches_in_flight: 2,
            tls_files: TlsFiles::default(),
            wait: None,
        }
    }
}

impl RedisLeaseStoreConfig {
    /// The defaults with this key prefix.
    pub fn with_prefix(prefix: impl Into<String>) -> Self {
        RedisLeaseStoreConfig {
            prefix: prefix.into(),
            ..Self::default()
        }
    }
}

/// The `EVALSHA` scripts: each operation's body after the shared definitions.
struct Scripts {
    ops: Vec<(&'static str, Script)>,
    noop: Script,
}

impl Scripts {
    fn new() -> Self {
        Scripts {
            ops: OPERATIONS
                .iter()
                .map(|(op, body)| (*op, Script::new(&format!("{COMMON}init(KEYS)\n{body}"))))
                .collect(),
            noop: Script::new("return 1"),
        }
    }

    /// The script of operation `op` (`noop` for a name that is none, which then answers
    /// what no operation does: an error).
    fn get(&self, op: &str) -> &Script {
        self.ops
            .iter()
            .find(|(o, _)| *o == op)
            .map_or(&self.noop, |(_, script)| script)
    }
}

struct Inner {
    redis: RedisConnection,
    conn: RedisConn,
    config: RedisLeaseStoreConfig,
    scripts: Scripts,
    /// Set when the operations run as Redis Functions.
    library: Option<Arc<Library>>,
    /// Set when hot operations are batched (Functions, `max_batch` > 1).
    batcher: Option<batch::Batcher>,
    /// Dedicated connections for `BLPOP`, reused once their wait finished.
    watchers: Mutex<Vec<RedisConn>>,
}

/// The Redis lease store. A cheap `Clone` handle: one [`RedisConn`] (which
/// reconnects by itself and pipelines concurrent calls from many tasks) shared by all
/// clones.
#[derive(Clone)]
pub struct RedisLeaseStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RedisLeaseStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLeaseStore")
            .field("prefix", &self.inner.config.prefix)
            .finish_non_exhaustive()
    }
}

fn unavailable(message: impl Into<String>) -> LeaseError {
    LeaseError::unavailable(message)
}

fn redis_err(e: redis::RedisError) -> LeaseError {
    LeaseError::unavailable_from(e)
}

/// Milliseconds since the epoch, as the scripts store them.
fn ms(t: Timestamp) -> i64 {
    t.unix_millis()
}

/// A duration in whole milliseconds, at least 1 when not zero (0 means "default" or
/// "no wait" to the scripts).
fn dur_ms(d: Duration) -> u64 {
    if d.is_zero() {
        0
    } else {
        u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
    }
}

// === reply decoding (never panics on bad data: garbage becomes `Unavailable`) ===

fn text(v: &Value) -> Option<&str> {
    match v {
        Value::BulkString(b) => std::str::from_utf8(b).ok(),
        Value::SimpleString(s) => Some(s),
        _ => None,
    }
}

fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        other => text(other)?.parse().ok(),
    }
}

fn field<'a>(reply: &'a [Value], i: usize, what: &str) -> Result<&'a str, LeaseError> {
    reply
        .get(i)
        .and_then(text)
        .ok_or_else(|| unavailable(format!("malformed reply: {what} missing")))
}

fn number(reply: &[Value], i: usize, what: &str) -> Result<i64, LeaseError> {
    reply
        .get(i)
        .and_then(int)
        .ok_or_else(|| unavailable(format!("malformed reply: {what} missing")))
}

fn is_nil(v: Option<&Value>) -> bool {
    matches!(v, None | Some(Value::Nil))
}

fn corrupt(what: &str) -> LeaseError {
    unavailable(format!("corrupt record in Redis: {what}"))
}

fn ts(s: &str, what: &str) -> Result<Timestamp, LeaseError> {
    s.parse::<i64>()
        .map(Timestamp::from_unix_millis)
        .map_err(|_| corrupt(what))
}

/// The request part of a lease, stored opaquely by the scripts.
#[derive(Serialize)]
struct ReqOut<'a> {
    h: &'a str,
    r: i32,
    m: &'a serde_json::Value,
}

#[derive(Deserialize)]
struct ReqIn {
    h: String,
    r: i32,
    #[serde(default)]
    m: serde_json::Value,
}

/// `S LEASE UPDATED IDLE CREATED APPID`.
fn parse_worker(pool: &PoolType, pid: &str, rec: &str) -> Result<Worker, LeaseError> {
    let bad = || corrupt(&format!("worker {pid}"));
    let mut it = rec.splitn(6, ' ');
    let mut next = || it.next().ok_or_else(bad);
    let (st, lid, upd, idle, created, app) = (next()?, next()?, next()?, next()?, next()?, next()?);
    let state = match st {
        "P" => WorkerState::Pending,
        "A" => WorkerState::Available,
        "L" => WorkerState::Leased,
        "D" => WorkerState::Draining,
        _ => return Err(bad()),
    };
    let lease_id = match lid {
        "-" => None,
        l => Some(LeaseId(Uuid::parse_str(l).map_err(|_| bad())?)),
    };
    let idle_since = match idle {
        "-" => None,
        t => Some(ts(t, pid)?),
    };
    Ok(Worker {
        processor_id: ProcessorId::new(pid),
        app_id: AppId::new(app),
        pool_type: pool.clone(),
        state,
        lease_id,
        created_at: ts(created, pid)?,
        last_updated: ts(upd, pid)?,
        idle_since,
    })
}

/// Splits `"{n} {n bytes}"` off the front of `s`: (the bytes, the rest after one space).
fn counted(s: &str) -> Option<(&str, &str)> {
    let (n, rest) = s.split_once(' ')?;
    let n: usize = n.parse().ok()?;
    let value = rest.get(..n)?;
    let after = rest.get(n..)?;
    Some((value, after.strip_prefix(' ').unwrap_or(after)))
}

/// `TOKEN ACQ EXP TICKET #PID PID #APP APP REQ`.
fn parse_lease(pool: &PoolType, lid: &str, rec: &str) -> Result<Lease, LeaseError> {
    let bad = || corrupt(&format!("lease {lid}"));
    let lease_id = LeaseId(Uuid::parse_str(lid).map_err(|_| bad())?);
    let mut it = rec.splitn(5, ' ');
    let mut next = || it.next().ok_or_else(bad);
    let (tok, acq, exp, _ticket, rest) = (next()?, next()?, next()?, next()?, next()?);
    let (pid, rest) = counted(rest).ok_or_else(bad)?;
    let (app, req) = counted(rest).ok_or_else(bad)?;
    let req: ReqIn = serde_json::from_str(req).map_err(|_| bad())?;
    Ok(Lease {
        lease_id,
        pool_type: pool.clone(),
        processor_id: ProcessorId::new(pid),
        app_id: AppId::new(app),
        holder: req.h,
        priority: req.r,
        acquired_at: ts(acq, lid)?,
        expires_at: ts(exp, lid)?,
        metadata: req.m,
        fencing_token: FencingToken(tok.parse().map_err(|_| bad())?),
    })
}

fn load_of(reply: &[Value], from: usize) -> Result<PoolLoad, LeaseError> {
    let n = |i: usize| -> Result<u32, LeaseError> {
        let v = number(reply, from + i, "counts")?;
        Ok(u32::try_from(v.max(0)).unwrap_or(u32::MAX))
    };
    Ok(PoolLoad {
        pending: n(0)?,
        available: n(1)?,
        leased: n(2)?,
        draining: n(3)?,
        queue_depth: n(4)?,
    })
}

/// The pool's stored configuration (`state` field `json`).
fn parse_config(pool: &PoolType, json: &str) -> Result<PoolConfig, LeaseError> {
    serde_json::from_str(json).map_err(|e| corrupt(&format!("config of {pool}: {e}")))
}

fn pairs(v: Option<&Value>) -> Vec<(&str, &str)> {
    match v {
        Some(Value::Array(items)) => items
            .chunks_exact(2)
            .filter_map(|c| Some((text(&c[0])?, text(&c[1])?)))
            .collect(),
        Some(Value::Map(items)) => items
            .iter()
            .filter_map(|(k, v)| Some((text(k)?, text(v)?)))
            .collect(),
        _ => Vec::new(),
    }
}

// === impl RedisLeaseStore ===

impl RedisLeaseStore {
    /// Connects to `url` (any form of [`super::url::RedisUrl`]). Fails with
    /// `Unavailable` when Redis cannot be reached within the connection timeout.
    pub async fn connect(url: &str, config: RedisLeaseStoreConfig) -> Result<Self, LeaseError> {
        let redis = RedisConnection::connect(RedisConfig {
            tls_files: config.tls_files.clone(),
            connection_timeout: config.connection_timeout,
            response_timeout: config.response_timeout,
            reconnect_attempts: 1,
            reconnect_max_delay: Duration::from_millis(500),
            call_timeout: config.connection_timeout + config.response_timeout,
            ..RedisConfig::new(url)
        })
        .await
        .map_err(LeaseError::unavailable_from)?;
        let mut conn = redis.manager();
        let library = match config.scripting {
            Scripting::Eval => None,
            Scripting::Auto => {
                let mut library = Library::new();
                library.wait = config.wait;
                match load_library(&library, &mut conn).await {
                    Ok(()) => Some(Arc::new(library)),
                    // Redis before 7 (no FUNCTION), or an ACL that forbids it
                    Err(e) if e.code() == Some("NOPERM") || unknown_command(&e) => {
                        tracing::info!(error = %e, "Redis Functions unavailable: lease scripts run with EVALSHA");
                        None
                    }
                    Err(e) => return Err(redis_err(e)),
                }
            }
        };
        let batcher = match &library {
            Some(lib) if config.max_batch > 1 => batch::Batcher::start(
                conn.clone(),
                lib.clone(),
                config.max_batch,
                config.batches_in_flight,
            ),
            _ => None,
        };
        Ok(RedisLeaseStore {
            inner: Arc::new(Inner {
                redis,
                conn,
                config,
                scripts: Scripts::new(),
                library,
                batcher,
                watchers: Mutex::new(Vec::new()),
            }),
        })
    }

    /// How the operations run on this connection: `"functions"` or `"eval"`.
    pub fn scripting(&self) -> &'static str {
        if self.inner.library.is_some() {
            "functions"
        } else {
            "eval"
        }
    }

    /// Prepares operation `op` with `keys`: an `FCALL` of its function, or an `EVALSHA`
    /// of `script`.
    fn prepare<'a>(&'a self, op: &str, script: &'a Script, keys: &[String]) -> Call<'a> {
        match &self.inner.library {
            Some(lib) => {
                let mut cmd = redis::cmd("FCALL");
                cmd.arg(lib.function(op)).arg(keys.len()).arg(keys);
                Call::Function(cmd, lib)
            }
            None => {
                let mut inv = script.prepare_invoke();
                for key in keys {
                    inv.key(key);
                }
                Call::Eval(inv)
            }
        }
    }

    /// The key prefix in use.
    pub fn prefix(&self) -> &str {
        &self.inner.config.prefix
    }

    /// `{prefix}pool:{P}:`, the base every key of pool `P` starts with.
    pub fn pool_key_base(&self, pool: &PoolType) -> String {
        format!("{}pool:{{{pool}}}:", self.inner.config.prefix)
    }

    fn pools_key(&self) -> String {
        format!("{}pools", self.inner.config.prefix)
    }

    /// Runs one prepared script call; the reply is an array whose first element is `ok`
    /// or an error code.
    async fn run(&self, call: Call<'_>) -> Result<Vec<Value>, LeaseError> {
        match self.run_raw(call).await? {
            Value::Array(items) => Ok(items),
            other => Err(unavailable(format!("unexpected script reply {other:?}"))),
        }
    }

    /// Runs one prepared call; a function Redis no longer has (restarted without
    /// persistence, flushed) is loaded again and the call repeated once, as `redis::Script`
    /// does for `NOSCRIPT`.
    async fn run_raw(&self, call: Call<'_>) -> Result<Value, LeaseError> {
        let mut conn = self.inner.conn.clone();
        match call {
            Call::Eval(inv) => {
                let reply = inv
                    .invoke_async::<Value>(&mut conn)
                    .await
                    .map_err(redis_err)?;
                replicated(&mut conn, self.inner.config.wait).await?;
                Ok(reply)
            }
            Call::Function(cmd, lib) => query_function(&mut conn, lib, &cmd).await,
        }
    }

    /// Maps an error code (first element of a script reply) to the port's error.
    fn refused(&self, reply: &[Value], pool: &PoolType, ctx: Refusal<'_>) -> LeaseError {
        let code = reply.first().and_then(text).unwrap_or("");
        match (code, ctx) {
            ("nopool", _) => LeaseError::UnknownPool { pool: pool.clone() },
            ("nolease", Refusal::Lease(lease_id, _)) => LeaseError::UnknownLease {
                pool: pool.clone(),
                lease_id,
            },
            ("stale", Refusal::Lease(_, given)) => match number(reply, 1, "token") {
                Ok(current) => LeaseError::StaleFencingToken {
                    given,
                    current: FencingToken(u64::try_from(current).unwrap_or(0)),
                },
                Err(e) => e,
            },
            ("expired", Refusal::Lease(lease_id, _)) => match number(reply, 1, "expiry") {
                Ok(at) => LeaseError::LeaseExpired {
                    lease_id,
                    expired_at: Timestamp::from_unix_millis(at),
                },
                Err(e) => e,
            },
            ("draining", Refusal::Lease(lease_id, _)) => match number(reply, 1, "expiry") {
                Ok(at) => LeaseError::WorkerDraining {
                    lease_id,
                    expires_at: Timestamp::from_unix_millis(at),
                },
                Err(e) => e,
            },
            ("capacity", _) => LeaseError::AtCapacity {
                max: number(reply, 1, "max")
                    .ok()
                    .and_then(|m| u32::try_from(m).ok())
                    .unwrap_or(0),
            },
            ("noworker", Refusal::Worker(worker)) => LeaseError::UnknownWorker {
                pool: pool.clone(),
                worker: worker.to_owned(),
            },
            ("conflict", Refusal::Worker(worker)) => LeaseError::WorkerConflict {
                processor_id: ProcessorId::new(worker),
            },
            ("corrupt", _) => corrupt(field(reply, 1, "what").unwrap_or("?")),
            (other, _) => unavailable(format!("unexpected script answer `{other}`")),
        }
    }

    /// How many calls the batcher sent and how many operations they carried (`None` when
    /// operations are not batched: `EVALSHA`, or `max_batch` <= 1). Operations divided by
    /// calls is the mean batch size.
    pub fn batch_stats(&self) -> Option<BatchStats> {
        self.inner.batcher.as_ref().map(batch::Batcher::stats)
    }

    /// Runs `ops` (each `acquire`, `release` or `renew` with its script arguments, as
    /// `lua/batch.lua` takes them) on `pool` as one call of the library's `batch`
    /// function, in the order given, and returns each operation's raw reply. For tests
    /// that hold a batch against the same operations run one by one
    /// ([`RedisLeaseStore::single_raw`]); `None` without Redis Functions.
    #[doc(hidden)]
    pub async fn batch_raw(
        &self,
        pool: &PoolType,
        ops: &[(&str, Vec<String>)],
    ) -> Option<Result<Vec<Result<Vec<Value>, LeaseError>>, LeaseError>> {
        let lib = self.inner.library.as_ref()?;
        let mut conn = self.inner.conn.clone();
        let ops: Vec<(&str, &[String])> = ops.iter().map(|(op, a)| (*op, a.as_slice())).collect();
        Some(
            batch::call_batch(&mut conn, lib, &self.pool_key_base(pool), &ops)
                .await
                .map(|replies| replies.into_iter().map(batch::reply_of).collect()),
        )
    }

    /// Runs operation `op` (one of the script names) alone on `pool` with `args`, as the
    /// store does, and returns its raw reply; see [`RedisLeaseStore::batch_raw`].
    #[doc(hidden)]
    pub async fn single_raw(
        &self,
        pool: &PoolType,
        op: &str,
        args: &[String],
    ) -> Result<Vec<Value>, LeaseError> {
        let mut call = self.prepare(op, self.inner.scripts.get(op), &[self.pool_key_base(pool)]);
        for a in args {
            call.arg(a);
        }
        self.run(call).await
    }

    /// One call of an empty script (`FCALL` or `EVALSHA`, as the operations run): the least
    /// any operation costs on this Redis right now (round trip plus script call), which
    /// benchmarks report as the ceiling.
    pub async fn noop(&self) -> Result<(), LeaseError> {
        let call = self.prepare("noop", &self.inner.scripts.noop, &[]);
        self.run_raw(call).await.map(|_| ())
    }

    /// Checks the pool's records against each other (counts, indexes, one lease per
    /// worker, no idle worker while callers wait), like
    /// [`orchestrator_pools::MemoryLeaseStore::check_invariants`]; for tests. Reads with
    /// one `MULTI` so the snapshot is consistent. Describes the first violation found.
    pub async fn check_invariants(&self, pool: &PoolType) -> Result<(), String> {
        let base = self.pool_key_base(pool);
        let k = |s: &str| format!("{base}{s}");
        let mut conn = self.inner.conn.clone();
        type Snapshot = (
            Vec<(String, String)>,
            Vec<String>,
            Vec<(String, String)>,
            Vec<(String, f64)>,
            Option<Vec<u8>>,
            usize,
            Vec<(String, f64)>,
            Vec<(String, String)>,
        );
        let (workers, avail, leases, exp, counts, queue, tdl_scores, appids): Snapshot =
            redis::pipe()
                .atomic()
                .hgetall(k("workers"))
                .lrange(k("avail"), 0, -1)
                .hgetall(k("leases"))
                .zrange_withscores(k("exp"), 0, -1)
                .hget(k("state"), "ctr")
                .zcard(k("queue"))
                .zrange_withscores(k("tdl"), 0, -1)
                .hgetall(k("appids"))
                .query_async(&mut conn)
                .await
                .map_err(|e| e.to_string())?;
        let mut load = PoolLoad::default();
        let mut by_pid = std::collections::HashMap::new();
        for (pid, rec) in &workers {
            let w = parse_worker(pool, pid, rec).map_err(|e| e.to_string())?;
            load.count(w.state);
            let listed = avail.iter().filter(|a| *a == pid).count();
            if listed != usize::from(w.state == WorkerState::Available) {
                return Err(format!(
                    "{pid} is {} but listed {listed}x as available",
                    w.state
                ));
            }
            match (w.state, w.lease_id) {
                (WorkerState::Leased, None) => return Err(format!("{pid} Leased without a lease")),
                (WorkerState::Pending | WorkerState::Available, Some(_)) => {
                    return Err(format!("{pid} is {} with a lease", w.state));
                }
                _ => {}
            }
            if !appids.iter().any(|(a, p)| w.app_id.matches(a) && p == pid) {
                return Err(format!("app-id index misses {pid}"));
            }
            by_pid.insert(pid.clone(), w);
        }
        if avail.len() != load.available as usize {
            return Err("available list has duplicates or strangers".into());
        }
        // `ctr` = P A L D TOK SEQ COMPLETED FAILED RECLAIMED XH QH, little-endian f64
        let raw: Vec<f64> = counts
            .unwrap_or_default()
            .chunks_exact(8)
            .map(|c| {
                let mut b = [0u8; 8];
                b.copy_from_slice(c);
                f64::from_le_bytes(b)
            })
            .collect();
        let ctr: Vec<i64> = raw.iter().map(|v| *v as i64).collect();
        let c = |i: usize| u32::try_from(ctr.get(i).copied().unwrap_or(0)).unwrap_or(u32::MAX);
        let stored = (c(0), c(1), c(2), c(3));
        let token = ctr.get(4).copied();
        // The scan hints must stay lower bounds, or a lease would outlive its expiry or
        // a waiter its deadline unnoticed.
        let (xh, qh) = (
            raw.get(9).copied().unwrap_or(0.0),
            raw.get(10).copied().unwrap_or(0.0),
        );
        if let Some((lid, first)) = exp.iter().min_by(|a, b| a.1.total_cmp(&b.1))
            && xh > *first
        {
            return Err(format!(
                "expiry hint {xh} is after lease {lid}'s expiry {first}"
            ));
        }
        if let Some((tk, first)) = tdl_scores.iter().min_by(|a, b| a.1.total_cmp(&b.1))
            && qh > *first
        {
            return Err(format!(
                "queue hint {qh} is after ticket {tk}'s deadline {first}"
            ));
        }
        if qh == f64::INFINITY && queue > 0 {
            return Err(format!("queue hint says nobody waits, but {queue} wait"));
        }
        if stored != (load.pending, load.available, load.leased, load.draining) {
            return Err(format!("counts {stored:?} != actual {load:?}"));
        }
        if leases.len() != exp.len() {
            return Err(format!(
                "{} leases but {} expiries",
                leases.len(),
                exp.len()
            ));
        }
        let mut held = std::collections::HashSet::new();
        for (lid, rec) in &leases {
            let l = parse_lease(pool, lid, rec).map_err(|e| e.to_string())?;
            if !held.insert(l.processor_id.clone()) {
                return Err(format!("{} is leased twice", l.processor_id));
            }
            if !exp
                .iter()
                .any(|(e, at)| e == lid && *at as i64 == l.expires_at.unix_millis())
            {
                return Err(format!("lease {lid} has no matching expiry entry"));
            }
            match by_pid.get(l.processor_id.as_str()) {
                Some(w) if w.lease_id == Some(l.lease_id) => {}
                _ => {
                    return Err(format!(
                        "lease {lid} points at a worker that does not hold it"
                    ));
                }
            }
            if i64::try_from(l.fencing_token.0).unwrap_or(i64::MAX) > token.unwrap_or(0) {
                return Err(format!("lease {lid} has a token from the future"));
            }
        }
        for w in by_pid.values() {
            if let Some(l) = w.lease_id
                && !leases.iter().any(|(lid, _)| *lid == l.to_string())
            {
                return Err(format!(
                    "{} names lease {l} which does not exist",
                    w.processor_id
                ));
            }
        }
        if queue > 0 && !avail.is_empty() {
            return Err("callers wait while workers are available".into());
        }
        if queue != tdl_scores.len() {
            let tdl = tdl_scores.len();
            return Err(format!("queue has {queue} entries but deadlines {tdl}"));
        }
        Ok(())
    }

    /// Waits (at most [`WATCH_BLOCK`]) for a grant on `key`, on a dedicated connection.
    async fn wait_grant(inner: Arc<Inner>, key: String) {
        let pooled = inner
            .watchers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop();
        let conn = match pooled {
            Some(c) => Ok(c),
            None => inner.redis.dedicated(WATCH_BLOCK).await,
        };
        let Ok(mut conn) = conn else {
            // Redis is unreachable: wake after a poll interval; the waiter's poll reports it.
            tokio::time::sleep(orchestrator_pools::waiting::DEFAULT_POLL_INTERVAL).await;
            return;
        };
        let res: redis::RedisResult<Value> = redis::cmd("BLPOP")
            .arg(&key)
            .arg(WATCH_BLOCK.as_secs_f64())
            .query_async(&mut conn)
            .await;
        match res {
            Ok(_) => {
                let mut idle = inner.watchers.lock().unwrap_or_else(|e| e.into_inner());
                if idle.len() < IDLE_WATCH_CONNECTIONS {
                    idle.push(conn);
                }
            }
            Err(_) => {
                tokio::time::sleep(orchestrator_pools::waiting::DEFAULT_POLL_INTERVAL).await;
            }
        }
    }
}

/// What a refused call was about, for error mapping.
#[derive(Clone, Copy)]
enum Refusal<'a> {
    None,
    Lease(LeaseId, FencingToken),
    Worker(&'a str),
}

fn ok(reply: &[Value]) -> bool {
    reply.first().and_then(text) == Some("ok")
}

#[async_trait]
impl LeaseStore for RedisLeaseStore {
    async fn configure_pool(&self, config: PoolConfig) -> Result<Option<PoolConfig>, LeaseError> {
        let pool = config.pool_type().clone();
        let json = serde_json::to_string(&config)
            .map_err(|e| unavailable(format!("config does not serialise: {e}")))?;
        let dur = dur_ms(config.default_lease_duration());
        let mut call = self.prepare(
            "configure",
            self.inner.scripts.get("configure"),
            &[self.pool_key_base(&pool)],
        );
        call.arg(pool.as_str())
            .arg(json)
            .arg(config.max_instances())
            .arg(dur);
        let reply = self.run(call).await?;
        if !ok(&reply) {
            return Err(self.refused(&reply, &pool, Refusal::None));
        }
        // Listed after its state exists: a failure here fails the call, and configuring
        // again (idempotent) lists it.
        let mut conn = self.inner.conn.clone();
        redis::cmd("SADD")
            .arg(self.pools_key())
            .arg(pool.as_str())
            .query_async::<Value>(&mut conn)
            .await
            .map_err(redis_err)?;
        if is_nil(reply.get(1)) {
            return Ok(None);
        }
        let prev = field(&reply, 1, "config")?;
        Ok(Some(serde_json::from_str(prev).map_err(|e| {
            corrupt(&format!("stored configuration of {pool}: {e}"))
        })?))
    }

    async fn register_worker(
        &self,
        pool: &PoolType,
        processor_id: &ProcessorId,
        app_id: &AppId,
        now: Timestamp,
    ) -> Result<Worker, LeaseError> {
        let reply = eval!(
            self,
            register,
            pool,
            &processor_id.as_str(),
            &app_id.as_str(),
            &ms(now)
        )
        .await?;
        if !ok(&reply) {
            return Err(self.refused(&reply, pool, Refusal::Worker(processor_id.as_str())));
        }
        parse_worker(pool, processor_id.as_str(), field(&reply, 1, "worker")?)
    }

    async fn mark_ready(
        &self,
        pool: &PoolType,
        worker: &str,
        now: Timestamp,
    ) -> Result<Worker, LeaseError> {
        let reply = eval!(self, ready, pool, &worker, &ms(now)).await?;
        if !ok(&reply) {
            return Err(self.refused(&reply, pool, Refusal::Worker(worker)));
        }
        parse_worker(
            pool,
            field(&reply, 1, "processor id")?,
            field(&reply, 2, "worker")?,
        )
    }

    async fn acquire(
        &self,
        pool: &PoolType,
        req: AcquireRequest,
        now: Timestamp,
    ) -> Result<Acquired, LeaseError> {
        let id = Uuid::new_v4();
        let lid = id.hyphenated().to_string();
        let body = serde_json::to_string(&ReqOut {
            h: &req.holder,
            r: req.priority,
            m: &req.metadata,
        })
        .map_err(|e| unavailable(format!("metadata does not serialise: {e}")))?;
        let reply = hot!(
            self,
            acquire,
            pool,
            &ms(now),
            &lid,
            &dur_ms(req.lease_duration.unwrap_or_default()),
            &dur_ms(req.wait),
            &req.priority,
            &body
        )?;
        let outcome = match reply.first().and_then(text) {
            Some("leased") => {
                AcquireOutcome::Leased(parse_lease(pool, &lid, field(&reply, 6, "lease")?)?)
            }
            Some("queued") => AcquireOutcome::Queued(WaitTicket {
                pool: pool.clone(),
                id,
            }),
            Some("exhausted") => AcquireOutcome::Exhausted,
            _ => return Err(self.refused(&reply, pool, Refusal::None)),
        };
        Ok(Acquired {
            outcome,
            load: load_of(&reply, 1)?,
        })
    }

    async fn poll_wait(
        &self,
        ticket: &WaitTicket,
        now: Timestamp,
    ) -> Result<WaitStatus, LeaseError> {
        let id = ticket.id.hyphenated().to_string();
        let reply = eval!(self, poll, &ticket.pool, &id, &ms(now)).await?;
        match reply.first().and_then(text) {
            Some("waiting") => Ok(WaitStatus::Waiting),
            Some("leased") => Ok(WaitStatus::Leased(parse_lease(
                &ticket.pool,
                field(&reply, 1, "lease id")?,
                field(&reply, 2, "lease")?,
            )?)),
            Some("noticket") => Err(LeaseError::UnknownTicket {
                ticket: ticket.clone(),
            }),
            _ => Err(self.refused(&reply, &ticket.pool, Refusal::None)),
        }
    }

    async fn cancel_wait(&self, ticket: &WaitTicket) -> Result<Option<Lease>, LeaseError> {
        let id = ticket.id.hyphenated().to_string();
        let reply = eval!(self, cancel, &ticket.pool, &id).await?;
        match reply.first().and_then(text) {
            Some("none") => Ok(None),
            Some("leased") => Ok(Some(parse_lease(
                &ticket.pool,
                field(&reply, 1, "lease id")?,
                field(&reply, 2, "lease")?,
            )?)),
            _ => Err(self.refused(&reply, &ticket.pool, Refusal::None)),
        }
    }

    async fn release(
        &self,
        pool: &PoolType,
        lease_id: LeaseId,
        fencing_token: FencingToken,
        success: bool,
        now: Timestamp,
    ) -> Result<Released, LeaseError> {
        let lid = lease_id.0.hyphenated().to_string();
        let reply = hot!(
            self,
            release,
            pool,
            &ms(now),
            &lid,
            &fencing_token.0,
            &u8::from(success)
        )?;
        if !ok(&reply) {
            return Err(self.refused(&reply, pool, Refusal::Lease(lease_id, fencing_token)));
        }
        let lease = parse_lease(pool, &lid, field(&reply, 1, "lease")?)?;
        let held = u64::try_from(number(&reply, 2, "held")?).unwrap_or(0);
        let worker = parse_worker(
            pool,
            lease.processor_id.as_str(),
            field(&reply, 3, "worker")?,
        )?;
        let handed_off = if is_nil(reply.get(4)) {
            None
        } else {
            Some(parse_lease(
                pool,
                field(&reply, 4, "handoff id")?,
                field(&reply, 5, "handoff")?,
            )?)
        };
        Ok(Released {
            lease,
            success,
            lease_duration: Duration::from_millis(held),
            worker,
            handed_off,
        })
    }

    async fn renew(
        &self,
        pool: &PoolType,
        lease_id: LeaseId,
        fencing_token: FencingToken,
        extend_by: Duration,
        now: Timestamp,
    ) -> Result<Lease, LeaseError> {
        let lid = lease_id.0.hyphenated().to_string();
        let extend = u64::try_from(extend_by.as_millis()).unwrap_or(u64::MAX);
        let reply = hot!(self, renew, pool, &ms(now), &lid, &fencing_token.0, &extend)?;
        if !ok(&reply) {
            return Err(self.refused(&reply, pool, Refusal::Lease(lease_id, fencing_token)));
        }
        parse_lease(pool, &lid, field(&reply, 1, "lease")?)
    }

    async fn reclaim_expired(
        &self,
        pool: &PoolType,
        now: Timestamp,
    ) -> Result<Vec<Lease>, LeaseError> {
        let reply = eval!(self, reclaim, pool, &ms(now)).await?;
        if !ok(&reply) {
            return Err(self.refused(&reply, pool, Refusal::None));
        }
        reply
            .get(1..)
            .unwrap_or_default()
            .chunks(2)
            .map(|c| match c {
                [lid, rec] => parse_lease(
                    pool,
                    text(lid).ok_or_else(|| corrupt("reclaimed lease id"))?,
                    text(rec).ok_or_else(|| corrupt("reclaimed lease"))?,
                ),
                _ => Err(unavailable("malformed reclaim reply")),
            })
            .collect()
    }

    async fn drain_worker(
        &self,
        pool: &PoolType,
        processor_id: &ProcessorId,
        deadline: Option<Timestamp>,
        now: Timestamp,
    ) -> Result<Worker, LeaseError> {
        let deadline = deadline.map(|d| ms(d).to_string()).unwrap_or_default();
        let reply = eval!(
            self,
            drain,
            pool,
            &processor_id.as_str(),
            &ms(now),
            &deadline
        )
        .await?;
        if !ok(&reply) {
            return Err(self.refused(&reply, pool, Refusal::Worker(processor_id.as_str())));
        }
        parse_worker(pool, processor_id.as_str(), field(&reply, 1, "worker")?)
    }

    async fn remove_worker(
        &self,
        pool: &PoolType,
        processor_id: &ProcessorId,
        now: Timestamp,
    ) -> Result<RemovedWorker, LeaseError> {
        let reply = eval!(self, remove, pool, &processor_id.as_str(), &ms(now)).await?;
        if !ok(&reply) {
            return Err(self.refused(&reply, pool, Refusal::Worker(processor_id.as_str())));
        }
        let worker = parse_worker(pool, processor_id.as_str(), field(&reply, 1, "worker")?)?;
        let dropped_lease = if is_nil(reply.get(3)) {
            None
        } else {
            Some(parse_lease(
                pool,
                field(&reply, 2, "lease id")?,
                field(&reply, 3, "lease")?,
            )?)
        };
        Ok(RemovedWorker {
            worker,
            dropped_lease,
        })
    }

    async fn next_expiry(&self, pool: &PoolType) -> Result<Option<Timestamp>, LeaseError> {
        // Plain reads in one round trip: the pool must exist (as for every other
        // operation), then the head of `exp`, scored by expiry in ms.
        let base = self.pool_key_base(pool);
        let mut conn = self.inner.conn.clone();
        let (exists, head): (bool, Vec<(String, f64)>) = redis::pipe()
            .hexists(format!("{base}state"), "json")
            .zrange_withscores(format!("{base}exp"), 0, 0)
            .query_async(&mut conn)
            .await
            .map_err(redis_err)?;
        if !exists {
            return Err(LeaseError::UnknownPool { pool: pool.clone() });
        }
        // Scores are whole milliseconds, exact in a double.
        Ok(head
            .first()
            .map(|(_, ms)| Timestamp::from_unix_millis(*ms as i64)))
    }

    async fn pool_config(&self, pool: &PoolType) -> Result<PoolConfig, LeaseError> {
        // A plain read: nothing to keep atomic with it.
        let mut conn = self.inner.conn.clone();
        let json: Option<String> = redis::cmd("HGET")
            .arg(format!("{}state", self.pool_key_base(pool)))
            .arg("json")
            .query_async(&mut conn)
            .await
            .map_err(redis_err)?;
        let json = json.ok_or_else(|| LeaseError::UnknownPool { pool: pool.clone() })?;
        parse_config(pool, &json)
    }

    async fn status(&self, pool: &PoolType, now: Timestamp) -> Result<PoolStatus, LeaseError> {
        let reply = eval!(self, status, pool, &ms(now), &"status").await?;
        if !ok(&reply) {
            return Err(self.refused(&reply, pool, Refusal::None));
        }
        let load = match reply.get(1) {
            Some(Value::Array(c)) => load_of(c, 0)?,
            _ => return Err(unavailable("malformed status reply")),
        };
        let config = parse_config(pool, field(&reply, 2, "config")?)?;
        let mut workers = pairs(reply.get(3))
            .into_iter()
            .map(|(pid, rec)| parse_worker(pool, pid, rec))
            .collect::<Result<Vec<_>, _>>()?;
        workers.sort_by(|a, b| a.processor_id.cmp(&b.processor_id));
        let mut leases = pairs(reply.get(4))
            .into_iter()
            .map(|(lid, rec)| parse_lease(pool, lid, rec))
            .collect::<Result<Vec<_>, _>>()?;
        leases.sort_by_key(|l| l.fencing_token);
        Ok(PoolStatus {
            config,
            workers,
            leases,
            load,
        })
    }

    async fn metrics(&self, pool: &PoolType, now: Timestamp) -> Result<PoolMetrics, LeaseError> {
        let reply = eval!(self, status, pool, &ms(now), &"metrics").await?;
        if !ok(&reply) {
            return Err(self.refused(&reply, pool, Refusal::None));
        }
        let load = match reply.get(1) {
            Some(Value::Array(c)) => load_of(c, 0)?,
            _ => return Err(unavailable("malformed metrics reply")),
        };
        let bucket_ms = i64::try_from(METRICS_BUCKET.as_millis()).unwrap_or(60_000);
        let current = ms(now).div_euclid(bucket_ms);
        let oldest = current - METRICS_BUCKETS as i64;
        let (mut completed, mut failed, mut lease_ms) = (0u64, 0u64, 0u64);
        let (mut total_completed, mut total_failed, mut total_reclaimed) = (0, 0, 0);
        let mut last_scale_event = None;
        let bad = || corrupt(&format!("metrics of {pool}"));
        for (k, v) in pairs(reply.get(2)) {
            if !(k == "tot" || k == "ls" || k.starts_with("b:")) {
                continue; // config and counters share the hash
            }
            let nums: Vec<i64> = v
                .split(' ')
                .map(str::parse)
                .collect::<Result<_, _>>()
                .map_err(|_| bad())?;
            let u = |i: usize| nums.get(i).map(|n| u64::try_from(*n).unwrap_or(0));
            if k == "tot" {
                (total_completed, total_failed, total_reclaimed) = (
                    u(0).ok_or_else(bad)?,
                    u(1).ok_or_else(bad)?,
                    u(2).ok_or_else(bad)?,
                );
            } else if k == "ls" {
                last_scale_event =
                    Some(Timestamp::from_unix_millis(*nums.first().ok_or_else(bad)?));
            } else if k.starts_with("b:") {
                let minute = *nums.first().ok_or_else(bad)?;
                if minute > oldest && minute <= current {
                    completed += u(1).ok_or_else(bad)?;
                    failed += u(2).ok_or_else(bad)?;
                    lease_ms = lease_ms.saturating_add(u(3).ok_or_else(bad)?);
                }
            }
        }
        let n = completed + failed;
        Ok(PoolMetrics {
            jobs_completed_1h: completed,
            jobs_failed_1h: failed,
            avg_lease_time: Duration::from_millis(lease_ms.checked_div(n).unwrap_or(0)),
            total_completed,
            total_failed,
            total_reclaimed,
            last_scale_event,
            load,
            utilisation: load.utilisation(),
        })
    }

    async fn list_pools(&self) -> Result<Vec<PoolType>, LeaseError> {
        let mut conn = self.inner.conn.clone();
        let names: Vec<String> = redis::cmd("SMEMBERS")
            .arg(self.pools_key())
            .query_async(&mut conn)
            .await
            .map_err(redis_err)?;
        let mut pools = names
            .into_iter()
            .map(PoolType::new)
            .collect::<Result<Vec<_>, _>>()?;
        pools.sort();
        Ok(pools)
    }

    fn watch(&self, ticket: &WaitTicket) -> Option<BoxFuture<'static, ()>> {
        let key = format!("{}grant:{}", self.pool_key_base(&ticket.pool), ticket.id);
        Some(Box::pin(Self::wait_grant(Arc::clone(&self.inner), key)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool() -> PoolType {
        PoolType::new("p").unwrap()
    }

    #[test]
    fn records_parse_and_garbage_is_an_error_not_a_panic() {
        let w = parse_worker(
            &pool(),
            "p-1",
            "L 00000000-0000-0000-0000-000000000001 5 - 1 app with space",
        )
        .unwrap();
        assert_eq!(w.state, WorkerState::Leased);
        assert_eq!(w.app_id.as_str(), "app with space");
        assert_eq!(w.idle_since, None);
        let rec = r#"7 1000 2000 - 3 p 1 3 a b {"h":"x y","r":-2,"m":{"k":[1]}}"#;
        let l = parse_lease(&pool(), "00000000-0000-0000-0000-000000000002", rec).unwrap();
        assert_eq!(l.processor_id.as_str(), "p 1");
        assert_eq!(l.app_id.as_str(), "a b");
        assert_eq!((l.holder.as_str(), l.priority), ("x y", -2));
        assert_eq!(l.fencing_token, FencingToken(7));
        assert_eq!(l.expires_at, Timestamp::from_unix_millis(2000));
        for bad in [
            "",
            "7",
            "7 1 2 - 99 p",
            "x 1 2 - 1 p 1 a {}",
            "7 1 2 - 1 p 1 a nojson",
        ] {
            assert!(parse_lease(&pool(), "00000000-0000-0000-0000-000000000002", bad).is_err());
        }
        for bad in ["", "X - 1 - 1 a", "L notauuid 1 - 1 a", "A - x - 1 a"] {
            assert!(parse_worker(&pool(), "p", bad).is_err());
        }
        // A multi-byte char cut by a wrong length must not panic.
        assert!(
            parse_lease(
                &pool(),
                "00000000-0000-0000-0000-000000000002",
                "1 1 1 - 1 é 1 a {}"
            )
            .is_err()
        );
    }

    #[test]
    fn durations_round_up_to_a_millisecond() {
        assert_eq!(dur_ms(Duration::ZERO), 0);
        assert_eq!(dur_ms(Duration::from_micros(10)), 1);
        assert_eq!(dur_ms(Duration::from_secs(2)), 2000);
    }
}

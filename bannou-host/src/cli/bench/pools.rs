//! `bannou-host bench pools`: C concurrent clients each run acquire+release pairs for a
//! fixed time against (a) the in-memory store, (b) the Redis store and (c) upstream's lock
//! + read-modify-write algorithm on the same Redis (the baseline), one after the other.
//!
//! Per run it reports pairs/s, p50/p99 latency of a pair (sorted samples, nearest rank),
//! pairs that found no worker, errors, and a double-lease check: an in-process map from
//! processor id to the client holding it, behind a mutex, updated on every acquire (a
//! processor already held by another client counts as a double lease) and before every
//! release. `--ceiling` adds (d): pairs of two empty script calls (`FCALL` or `EVALSHA`,
//! as the store runs them) on the same connection, what any one-script-per-operation store
//! could reach on this machine at this moment. `--http` adds (e): the whole path a caller
//! takes, through the HTTP API of a control plane started in this process, with its
//! workers on the in-process backend (state on `--redis` when given), reported beside
//! (a) and (b) as `http_ratio_vs_memory` and `http_ratio_vs_redis`; with `--ceiling`
//! too, the HTTP ceiling: pairs of two requests that server answers without work (404).
//! Without `--redis`
//! only (a), and (e) if asked, run. The clients run on `--threads` runtime threads
//! (default 1: a current-thread runtime), and the store uses Redis Functions where it can
//! (`--eval` forces `EVALSHA`), batching operations that wait at the same time
//! (`--max-batch`, `--batches-in-flight`; the report gives the mean operations per call).
//! Keys go under a fresh `bench:{uuid}:` prefix and are left behind: point it at a
//! throw-away server.
//!
//! Kept as one file: one benchmark command, its runs and its report read top to bottom.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use orchestrator_backends::redis::leases::baseline::{BaselineError, UpstreamBaseline};
use orchestrator_backends::redis::leases::{RedisLeaseStore, RedisLeaseStoreConfig, Scripting};
use orchestrator_backends::redis::url::{RedisUrl, TlsFiles, Topology, redact};
use orchestrator_core::Timestamp;
use orchestrator_core::api::{
    AcquireProcessorRequest, DeployRequest, GetPoolStatusRequest, ReleaseProcessorRequest,
};
use orchestrator_pools::{
    AcquireOutcome, AcquireRequest, LeaseStore, MemoryLeaseStore, PoolConfig, PoolSpec, PoolType,
    WorkerIdentity,
};
use rustc_hash::FxHashMap;
use serde::Serialize;
use tokio::time::Instant;

use crate::client::{ApiClient, ClientError};
use crate::config::HostConfig;
use crate::server::Server;

/// Arguments of `bench pools`.
#[derive(Debug, Args)]
pub struct PoolsArgs {
    /// Redis to run the Redis store and the baseline against (`redis://127.0.0.1:6379/`,
    /// or any form of the README's Redis URL table; TLS files from
    /// `ORCHESTRATOR_REDIS_TLS_*_FILE`); without it only the in-memory store runs and no
    /// server is started. The upstream baseline runs on plain `redis://` only.
    #[arg(long, value_name = "URL")]
    pub redis: Option<String>,
    /// Pools the workers are split over (client `i` uses pool `i % pools`); on a Redis
    /// Cluster each pool lives on the master owning its name's slot.
    #[arg(long, default_value_t = 1)]
    pub pools: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 50)]
    pub clients: usize,
    /// Seconds per store.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Workers per pool (default: one per client, so a client always finds one).
    #[arg(long)]
    pub workers: Option<u32>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Also measure the ceiling: pairs of two empty script calls (no work) on the same
    /// Redis, so the store's numbers can be read against this machine's state.
    #[arg(long)]
    pub ceiling: bool,
    /// Worker threads of the clients' runtime. Default 1 (a current-thread runtime), so
    /// the clients leave a local Redis its core; the in-memory store on two threads read
    /// 0.5 M or 1.55 M pairs/s from run to run, on one thread 1.64-1.82 M every run, and
    /// the Redis p99 moved within its noise (BENCHMARKS.md).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Run the Redis store's operations with `EVALSHA` even where Redis Functions exist.
    #[arg(long)]
    pub eval: bool,
    /// The Redis store's `max_batch`: at most this many waiting operations of a pool per
    /// call (1 = every operation alone).
    #[arg(long, default_value_t = RedisLeaseStoreConfig::default().max_batch)]
    pub max_batch: usize,
    /// The Redis store's `batches_in_flight`.
    #[arg(long, default_value_t = RedisLeaseStoreConfig::default().batches_in_flight)]
    pub batches_in_flight: usize,
    /// Also run (e): the whole path a caller takes. A control plane starts in this process
    /// on a loopback port (state on `--redis` when given, else in memory), deploys a
    /// pool-only preset whose workers run on the in-process backend, waits until every
    /// worker is Available (its first heartbeat), and the clients acquire and release
    /// over HTTP (`POST /orchestrator/processing-pool/acquire` and `.../release`).
    #[arg(long)]
    pub http: bool,
    /// With `--http`: the clients speak HTTP/2 (h2c, prior knowledge), the requests in
    /// flight multiplexed on `--connections` connections, instead of HTTP/1.1 with a
    /// connection per client.
    #[arg(long, requires = "http")]
    pub http2: bool,
    /// With `--http2`: how many h2c connections the clients share (client `i` uses
    /// connection `i % connections`).
    #[arg(long, default_value_t = 1, requires = "http2")]
    pub connections: usize,
    /// With `--http`: drive the control plane at this URL (another process, e.g. `serve`)
    /// instead of starting one in this process; its pool `--http-pool` must be deployed
    /// and is not changed. The bench is then a load generator of its own, apart from the
    /// server's threads (`scripts/wrk-lease-bench.sh` with `LOAD=bench` sets one up).
    #[arg(long, value_name = "URL", requires = "http")]
    pub api: Option<String>,
    /// With `--api`: the bearer token it asks for.
    #[arg(
        long,
        value_name = "TOKEN",
        env = crate::config::vars::API_TOKEN,
        hide_env_values = true,
        requires = "api"
    )]
    pub token: Option<String>,
    /// With `--api`: the pool the clients lease from.
    #[arg(long, value_name = "POOL", default_value = HTTP_POOL, requires = "api")]
    pub http_pool: String,
}

/// One store's numbers.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// Completed acquire+release pairs.
    pub pairs: u64,
    /// Pairs per second of wall time.
    pub pairs_per_sec: f64,
    /// Median latency of a pair, ms.
    pub p50_ms: f64,
    /// 99th percentile latency of a pair, ms.
    pub p99_ms: f64,
    /// Slowest pair, ms.
    pub max_ms: f64,
    /// Acquires that found no worker.
    pub exhausted: u64,
    /// Failed calls.
    pub errors: u64,
    /// Baseline only: lock attempts that found the pool lock busy.
    pub busy_retries: u64,
    /// Processors seen leased to two clients at once.
    pub double_leases: u64,
    /// Wall time of the run, seconds.
    pub elapsed_s: f64,
}

/// The whole report (`--json` prints it as is).
#[derive(Debug, Clone, Serialize)]
pub struct PoolsReport {
    /// Concurrent clients.
    pub clients: usize,
    /// Seconds per store.
    pub seconds: f64,
    /// Workers per pool.
    pub workers: u32,
    /// (a) pairs/s.
    pub memory_pairs_per_sec: f64,
    /// (a) p99, ms.
    pub memory_p99_ms: f64,
    /// (b) pairs/s (`null` without `--redis`).
    pub redis_pairs_per_sec: Option<f64>,
    /// (b) p50, ms.
    pub redis_p50_ms: Option<f64>,
    /// (b) p99, ms.
    pub redis_p99_ms: Option<f64>,
    /// (c) pairs/s.
    pub baseline_pairs_per_sec: Option<f64>,
    /// (c) p99, ms.
    pub baseline_p99_ms: Option<f64>,
    /// (b) / (c).
    pub ratio_redis_vs_baseline: Option<f64>,
    /// Double leases seen in all runs (must be 0).
    pub double_leases: u64,
    /// `--ceiling`: pairs/s of two empty script calls.
    pub ceiling_pairs_per_sec: Option<f64>,
    /// Client runtime worker threads (`--threads`).
    pub threads: usize,
    /// How the Redis store ran its scripts: `functions` (`FCALL`) or `eval` (`EVALSHA`).
    pub redis_scripting: Option<&'static str>,
    /// The Redis store's mean operations per call over its run (`null` when it did not
    /// batch: `--eval` or `--max-batch 1`).
    pub redis_ops_per_call: Option<f64>,
    /// Whether the Redis store's records agreed with each other after its run.
    pub redis_invariants: Option<String>,
    /// (e) `--http`: pairs/s over the HTTP API.
    pub http_pairs_per_sec: Option<f64>,
    /// (e) p99, ms.
    pub http_p99_ms: Option<f64>,
    /// (e) the state store behind the control plane: `redis` or `memory`; `remote` for
    /// the control plane at `--api` (its store is not known here).
    pub http_state: Option<&'static str>,
    /// (e) the clients' protocol: `http/1.1` (a connection per client) or `h2c`
    /// (`--http2`: every request in flight multiplexed on `http_connections`).
    pub http_protocol: Option<&'static str>,
    /// (e) h2c connections the clients shared (`null` for HTTP/1.1).
    pub http_connections: Option<usize>,
    /// (e) / (b): the HTTP path's pairs/s over the Redis store's, same run (`null`
    /// without `--http` and `--redis`).
    pub http_ratio_vs_redis: Option<f64>,
    /// (e) / (a): the HTTP path's pairs/s over the in-memory store's, same run.
    pub http_ratio_vs_memory: Option<f64>,
    /// `--http --ceiling`: pairs/s of two requests the same server answers without
    /// work (404 for an unknown path) on the same client: what any two-request pair
    /// costs over this HTTP stack at this moment.
    pub http_ceiling_pairs_per_sec: Option<f64>,
    /// (e) / the HTTP ceiling.
    pub http_ratio_vs_http_ceiling: Option<f64>,
    /// Every run in full.
    pub memory: RunReport,
    /// (b) in full.
    pub redis: Option<RunReport>,
    /// (c) in full.
    pub baseline: Option<RunReport>,
    /// `--ceiling` in full.
    pub ceiling: Option<RunReport>,
    /// (e) in full.
    pub http: Option<RunReport>,
    /// The HTTP ceiling in full.
    pub http_ceiling: Option<RunReport>,
}

/// Runs the benchmark on a multi-thread runtime built here and prints the report.
pub fn run(args: PoolsArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    anyhow::ensure!(args.clients > 0, "--clients must be at least 1");
    anyhow::ensure!(
        args.seconds.is_finite() && args.seconds > 0.0,
        "--seconds must be positive"
    );
    anyhow::ensure!(args.threads > 0, "--threads must be at least 1");
    let mut builder = if args.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(args.threads);
        b
    };
    let runtime = builder
        .enable_all()
        .build()
        .context("building the tokio runtime")?;
    let report = runtime.block_on(bench(&args))?;
    if args.json {
        serde_json::to_writer(&mut *out, &report)?;
        writeln!(out)?;
    } else {
        print_table(&report, out)?;
    }
    Ok(())
}

fn now() -> Timestamp {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    Timestamp::from_unix_millis(ms)
}

/// The in-memory clients' clock: wall-clock milliseconds derived from the monotonic
/// `Instant` the client reads anyway for the latency, converted to a [`Timestamp`] only
/// when the millisecond changes. Reading `SystemTime` and building a `Timestamp` (chrono
/// date arithmetic) for each of the two calls of a pair cost about a tenth of the pair.
struct Clock {
    base: Instant,
    base_ms: i64,
    last_ms: i64,
    last: Timestamp,
}

impl Clock {
    fn new() -> Self {
        let last = now();
        let ms = last.unix_millis();
        Clock {
            base: Instant::now(),
            base_ms: ms,
            last_ms: ms,
            last,
        }
    }

    /// The wall-clock time at `t` (an `Instant` not before the clock was made), to the
    /// millisecond.
    fn at(&mut self, t: Instant) -> Timestamp {
        let since = i64::try_from(t.duration_since(self.base).as_millis()).unwrap_or(i64::MAX);
        let ms = self.base_ms.saturating_add(since);
        if ms != self.last_ms {
            self.last_ms = ms;
            self.last = Timestamp::from_unix_millis(ms);
        }
        self.last
    }
}

async fn bench(args: &PoolsArgs) -> anyhow::Result<PoolsReport> {
    let workers = args
        .workers
        .unwrap_or_else(|| u32::try_from(args.clients).unwrap_or(u32::MAX));
    anyhow::ensure!(workers > 0, "--workers must be at least 1");
    let duration = Duration::from_secs_f64(args.seconds);
    let tag = uuid::Uuid::new_v4().simple().to_string();

    anyhow::ensure!(args.pools > 0, "--pools must be at least 1");
    let memory = MemoryLeaseStore::new();
    let pool = setup_store(&memory, workers, args.pools).await?;
    let memory_run = drive(
        Arc::new(Target::Store(Arc::new(memory), pool)),
        args.clients,
        duration,
    )
    .await;

    let (mut redis_run, mut baseline_run, mut invariants, mut ceiling_run) =
        (None, None, None, None);
    let mut scripting = None;
    let mut ops_per_call = None;
    if let Some(url) = &args.redis {
        let config = RedisLeaseStoreConfig {
            scripting: if args.eval {
                Scripting::Eval
            } else {
                Scripting::Auto
            },
            max_batch: args.max_batch,
            batches_in_flight: args.batches_in_flight,
            tls_files: TlsFiles::from_env(|name| std::env::var(name).ok()),
            ..RedisLeaseStoreConfig::with_prefix(format!("bench:{tag}:"))
        };
        let shown = redact(url);
        let store = RedisLeaseStore::connect(url, config)
            .await
            .with_context(|| format!("connecting to {shown}"))?;
        scripting = Some(store.scripting());
        let pool = setup_store(&store, workers, args.pools).await?;
        let before = store.batch_stats();
        redis_run = Some(
            drive(
                Arc::new(Target::Store(Arc::new(store.clone()), pool.clone())),
                args.clients,
                duration,
            )
            .await,
        );
        ops_per_call = before
            .zip(store.batch_stats())
            .map(|(a, b)| (b.operations - a.operations) as f64 / (b.calls - a.calls).max(1) as f64);
        let mut checked = Ok(());
        for p in pool.iter() {
            checked = checked.and(store.check_invariants(p).await);
        }
        invariants = Some(match checked {
            Ok(()) => "ok".to_owned(),
            Err(e) => e,
        });
        if args.ceiling {
            ceiling_run =
                Some(drive(Arc::new(Target::Ceiling(store)), args.clients, duration).await);
        }

        if RedisUrl::parse(url).is_ok_and(|u| u.topology == Topology::Single && !u.tls) {
            let baseline = UpstreamBaseline::connect(url, format!("bench:{tag}:upstream:"))
                .await
                .with_context(|| format!("connecting to {shown}"))?;
            baseline
                .setup("bench", workers, now())
                .await
                .context("setting up the baseline pool")?;
            baseline_run = Some(
                drive(
                    Arc::new(Target::Baseline(baseline, "bench".to_owned())),
                    args.clients,
                    duration,
                )
                .await,
            );
        }
    }

    let (http_run, http_ceiling_run) = if args.http {
        let (run, ceiling) = http_bench(args, workers, duration).await?;
        (Some(run), ceiling)
    } else {
        (None, None)
    };
    let over = |a: Option<&RunReport>, b: Option<&RunReport>| match (a, b) {
        (Some(a), Some(b)) if b.pairs_per_sec > 0.0 => Some(a.pairs_per_sec / b.pairs_per_sec),
        _ => None,
    };

    let double_leases = memory_run.double_leases
        + redis_run.as_ref().map_or(0, |r| r.double_leases)
        + baseline_run.as_ref().map_or(0, |r| r.double_leases)
        + http_run.as_ref().map_or(0, |r| r.double_leases);
    let ratio = match (&redis_run, &baseline_run) {
        (Some(r), Some(b)) if b.pairs_per_sec > 0.0 => Some(r.pairs_per_sec / b.pairs_per_sec),
        _ => None,
    };
    Ok(PoolsReport {
        clients: args.clients,
        seconds: args.seconds,
        workers,
        memory_pairs_per_sec: memory_run.pairs_per_sec,
        memory_p99_ms: memory_run.p99_ms,
        redis_pairs_per_sec: redis_run.as_ref().map(|r| r.pairs_per_sec),
        redis_p50_ms: redis_run.as_ref().map(|r| r.p50_ms),
        redis_p99_ms: redis_run.as_ref().map(|r| r.p99_ms),
        baseline_pairs_per_sec: baseline_run.as_ref().map(|r| r.pairs_per_sec),
        baseline_p99_ms: baseline_run.as_ref().map(|r| r.p99_ms),
        ratio_redis_vs_baseline: ratio,
        double_leases,
        ceiling_pairs_per_sec: ceiling_run.as_ref().map(|r| r.pairs_per_sec),
        threads: args.threads,
        redis_scripting: scripting,
        redis_ops_per_call: ops_per_call,
        redis_invariants: invariants,
        http_pairs_per_sec: http_run.as_ref().map(|r| r.pairs_per_sec),
        http_p99_ms: http_run.as_ref().map(|r| r.p99_ms),
        http_state: args.http.then_some(match (&args.api, &args.redis) {
            (Some(_), _) => "remote",
            (None, Some(_)) => "redis",
            (None, None) => "memory",
        }),
        http_protocol: args
            .http
            .then_some(if args.http2 { "h2c" } else { "http/1.1" }),
        http_connections: args.http2.then_some(args.connections),
        http_ratio_vs_redis: over(http_run.as_ref(), redis_run.as_ref()),
        http_ratio_vs_memory: over(http_run.as_ref(), Some(&memory_run)),
        http_ceiling_pairs_per_sec: http_ceiling_run.as_ref().map(|r| r.pairs_per_sec),
        http_ratio_vs_http_ceiling: over(http_run.as_ref(), http_ceiling_run.as_ref()),
        http: http_run,
        http_ceiling: http_ceiling_run,
        memory: memory_run,
        redis: redis_run,
        baseline: baseline_run,
        ceiling: ceiling_run,
    })
}

/// Configures pool `bench` with `workers` ready workers.
/// `pools` pools (`bench`, or `bench-0`, `bench-1`, ...) sharing `workers` workers (each
/// at least one).
async fn setup_store(
    store: &dyn LeaseStore,
    workers: u32,
    pools: usize,
) -> anyhow::Result<Vec<PoolType>> {
    let count = u32::try_from(pools).unwrap_or(u32::MAX);
    let mut made = Vec::new();
    for n in 0..count {
        let name = if count == 1 {
            "bench".to_owned()
        } else {
            format!("bench-{n}")
        };
        let mine = (workers / count + u32::from(n < workers % count)).max(1);
        let mut spec = PoolSpec::named(name);
        spec.min_instances = 0;
        spec.max_instances = i64::from(mine);
        let config = PoolConfig::new(spec)?;
        let pool = config.pool_type().clone();
        store.configure_pool(config).await?;
        for i in 0..mine {
            let id = WorkerIdentity::from_value(&pool, u128::from(i) + 1);
            store
                .register_worker(&pool, &id.processor_id, &id.app_id, now())
                .await?;
            store.mark_ready(&pool, id.app_id.as_str(), now()).await?;
        }
        made.push(pool);
    }
    Ok(made)
}

/// The pool (e) leases from.
const HTTP_POOL: &str = "bench-http";

/// (e): a control plane in this process with a pool of `workers` in-process workers,
/// driven over HTTP, or (`--api`) the control plane at that URL; with `--ceiling`, then
/// the HTTP ceiling on the same server.
async fn http_bench(
    args: &PoolsArgs,
    workers: u32,
    duration: Duration,
) -> anyhow::Result<(RunReport, Option<RunReport>)> {
    orchestrator_backends::http::install_crypto_provider();
    if let Some(url) = &args.api {
        let api = ApiClient::new(url)?
            .with_token(args.token.clone())
            .with_timeout(Duration::from_secs(30));
        // Someone else's pool: wait for a worker, whatever its size.
        return drive_http(args, &api, &args.http_pool, 1, duration).await;
    }
    let presets = tempfile::tempdir().context("a directory for the bench preset")?;
    std::fs::write(
        presets.path().join("bench-http.yaml"),
        format!(
            "name: bench-http\n\
             description: bannou-host bench pools --http\n\
             processingPools:\n  \
             - poolType: {HTTP_POOL}\n    \
               plugin: actor\n    \
               minInstances: {workers}\n    \
               maxInstances: {workers}\n"
        ),
    )
    .context("writing the bench preset")?;
    let mut config = HostConfig::from_env(|_| None)?;
    config.presets_host_path = presets.path().to_path_buf();
    config.listen = "127.0.0.1:0".parse()?;
    config.redis_url = args.redis.clone();
    let server = Server::start(config)
        .await
        .context("starting the control plane")?;
    let api = ApiClient::new(&server.base_url())?.with_timeout(Duration::from_secs(30));
    let run = async {
        let deployed = api
            .deploy(&DeployRequest {
                preset: Some("bench-http".to_owned()),
                ..DeployRequest::default()
            })
            .await?;
        anyhow::ensure!(
            deployed.body.success,
            "deploying the bench pool failed: {:?}",
            deployed.body.warnings
        );
        drive_http(args, &api, HTTP_POOL, workers, duration).await
    }
    .await;
    server.shutdown().await;
    run
}

/// Waits until `pool` has `available` workers (they become Available with their first
/// heartbeat), then runs the clients over `api` (h2c on `--connections` connections with
/// `--http2`), and the HTTP ceiling after them with `--ceiling`.
async fn drive_http(
    args: &PoolsArgs,
    api: &ApiClient,
    pool: &str,
    available: u32,
    duration: Duration,
) -> anyhow::Result<(RunReport, Option<RunReport>)> {
    let ready_by = Instant::now() + Duration::from_secs(60);
    loop {
        let status = api
            .pool_status(&GetPoolStatusRequest {
                pool_type: pool.to_owned(),
                include_metrics: false,
            })
            .await
            .with_context(|| format!("reading pool {pool} at {}", api.base_url()))?;
        if status.available_instances >= i64::from(available) {
            break;
        }
        anyhow::ensure!(
            Instant::now() < ready_by,
            "pool {pool}: {} of {available} workers available after 60 s",
            status.available_instances
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Each h2c client is a connection of its own; HTTP/1.1 opens one per client anyway.
    let apis = if args.http2 {
        anyhow::ensure!(args.connections > 0, "--connections must be at least 1");
        (0..args.connections)
            .map(|_| api.clone().with_http2())
            .collect::<Result<Vec<_>, _>>()?
    } else {
        vec![api.clone()]
    };
    let target = Target::Http(apis.clone(), pool.to_owned());
    let run = drive(Arc::new(target), args.clients, duration).await;
    let ceiling = if args.ceiling {
        Some(drive(Arc::new(Target::HttpCeiling(apis)), args.clients, duration).await)
    } else {
        None
    };
    Ok((run, ceiling))
}

enum Target {
    /// A lease store and its pools (client `i` uses pool `i % len`).
    Store(Arc<dyn LeaseStore>, Vec<PoolType>),
    /// The HTTP API of a control plane (client `i` uses connection `i % len`) and the
    /// pool to lease from.
    Http(Vec<ApiClient>, String),
    Baseline(UpstreamBaseline, String),
    /// Two empty script calls: what a pair costs at least on this Redis now.
    Ceiling(RedisLeaseStore),
    /// Two requests the server answers without work: what a pair costs at least over
    /// this HTTP stack now.
    HttpCeiling(Vec<ApiClient>),
}

/// A path no route serves: the server answers 404 through its whole middleware stack.
const NO_ROUTE: &str = "/orchestrator/bench-no-such-route";

/// Who holds which processor, as the clients saw it. Sharded by processor id: one map
/// behind one mutex became the bottleneck of the in-memory run (two threads parking on it).
struct Check {
    held: Vec<Mutex<FxHashMap<String, usize>>>,
    doubles: AtomicU64,
}

const CHECK_SHARDS: usize = 64;

impl Default for Check {
    fn default() -> Self {
        Check {
            held: (0..CHECK_SHARDS).map(|_| Mutex::default()).collect(),
            doubles: AtomicU64::new(0),
        }
    }
}

/// Marks a processor nobody holds (entries are kept, so the hot path does not allocate).
const FREE: usize = usize::MAX;

impl Check {
    /// The shard of one processor: every update of a processor goes through one mutex.
    fn shard(&self, processor: &str) -> &Mutex<FxHashMap<String, usize>> {
        use std::hash::BuildHasher;
        let h = rustc_hash::FxBuildHasher.hash_one(processor);
        &self.held[(h as usize) % CHECK_SHARDS]
    }

    fn acquired(&self, processor: &str, client: usize) {
        self.claim(processor, client, client);
    }

    /// [`Check::acquired`] then [`Check::releasing`] under one lock of the shard: what a
    /// client that releases at once calls (the same check, half the locking and hashing).
    fn acquired_and_releasing(&self, processor: &str, client: usize) {
        self.claim(processor, client, FREE);
    }

    /// Counts a double lease when someone other than `client` holds `processor`, then
    /// records `after` as its holder.
    fn claim(&self, processor: &str, client: usize, after: usize) {
        let mut held = self
            .shard(processor)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        match held.get_mut(processor) {
            Some(holder) => {
                if *holder != FREE && *holder != client {
                    self.doubles.fetch_add(1, Ordering::Relaxed);
                }
                *holder = after;
            }
            None => {
                held.insert(processor.to_owned(), after);
            }
        }
    }

    /// Called before the release is sent, so the next holder never meets a stale entry.
    fn releasing(&self, processor: &str, client: usize) {
        let mut held = self
            .shard(processor)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(holder) = held.get_mut(processor)
            && *holder == client
        {
            *holder = FREE;
        }
    }
}

#[derive(Default)]
struct ClientStats {
    latencies_ns: Vec<u32>,
    exhausted: u64,
    errors: u64,
    busy: u64,
}

/// What one pair did.
enum Pair {
    Done,
    Exhausted,
    Failed,
}

const BUSY_BACKOFF: Duration = Duration::from_millis(1);

impl Target {
    async fn pair(
        &self,
        client: usize,
        holder: &str,
        check: &Check,
        (clock, start): (&mut Clock, Instant),
        stats: &mut ClientStats,
    ) -> Pair {
        match self {
            Target::Store(store, pools) => {
                let pool = &pools[client % pools.len()];
                let lease = match store
                    .acquire(pool, AcquireRequest::new(holder), clock.at(start))
                    .await
                {
                    Ok(a) => match a.outcome {
                        AcquireOutcome::Leased(l) => l,
                        _ => return Pair::Exhausted,
                    },
                    Err(_) => return Pair::Failed,
                };
                check.acquired_and_releasing(lease.processor_id.as_str(), client);
                let now = clock.at(Instant::now());
                match store
                    .release(pool, lease.lease_id, lease.fencing_token, true, now)
                    .await
                {
                    Ok(_) => Pair::Done,
                    Err(_) => Pair::Failed,
                }
            }
            Target::Http(apis, pool) => {
                let api = &apis[client % apis.len()];
                let lease = match api
                    .acquire_processor(&AcquireProcessorRequest::new(pool.as_str()))
                    .await
                {
                    Ok(l) => l,
                    Err(ClientError::Status { status: 429, .. }) => return Pair::Exhausted,
                    Err(_) => return Pair::Failed,
                };
                check.acquired_and_releasing(&lease.processor_id, client);
                let release = ReleaseProcessorRequest {
                    fencing_token: Some(lease.fencing_token),
                    ..ReleaseProcessorRequest::new(lease.lease_id)
                };
                match api.release_processor(&release).await {
                    Ok(_) => Pair::Done,
                    Err(_) => Pair::Failed,
                }
            }
            Target::HttpCeiling(apis) => {
                let api = &apis[client % apis.len()];
                let nothing =
                    || api.post::<_, serde_json::Value>(NO_ROUTE, &serde_json::Value::Null);
                match (nothing().await, nothing().await) {
                    (
                        Err(ClientError::Status { status: 404, .. }),
                        Err(ClientError::Status { status: 404, .. }),
                    ) => Pair::Done,
                    _ => Pair::Failed,
                }
            }
            Target::Ceiling(store) => match (store.noop().await, store.noop().await) {
                (Ok(()), Ok(())) => Pair::Done,
                _ => Pair::Failed,
            },
            Target::Baseline(b, pool) => {
                let lease = loop {
                    match b.acquire(pool, Duration::from_secs(300), now()).await {
                        Ok(Some(l)) => break l,
                        Ok(None) => return Pair::Exhausted,
                        Err(BaselineError::Busy) => {
                            stats.busy += 1;
                            tokio::time::sleep(BUSY_BACKOFF).await;
                        }
                        Err(BaselineError::Redis(_)) => return Pair::Failed,
                    }
                };
                check.acquired(&lease.processor_id, client);
                check.releasing(&lease.processor_id, client);
                loop {
                    match b.release(lease.lease_id, true, now()).await {
                        Ok(true) => return Pair::Done,
                        Ok(false) | Err(BaselineError::Redis(_)) => return Pair::Failed,
                        Err(BaselineError::Busy) => {
                            stats.busy += 1;
                            tokio::time::sleep(BUSY_BACKOFF).await;
                        }
                    }
                }
            }
        }
    }
}

async fn client(
    target: Arc<Target>,
    check: Arc<Check>,
    id: usize,
    deadline: Instant,
) -> ClientStats {
    let holder = format!("bench-client-{id}");
    let mut clock = Clock::new();
    let mut stats = ClientStats {
        latencies_ns: Vec::with_capacity(1 << 16),
        ..ClientStats::default()
    };
    loop {
        let start = Instant::now();
        if start >= deadline {
            break;
        }
        match target
            .pair(id, &holder, &check, (&mut clock, start), &mut stats)
            .await
        {
            Pair::Done => {
                let ns = start.elapsed().as_nanos();
                stats
                    .latencies_ns
                    .push(u32::try_from(ns).unwrap_or(u32::MAX));
            }
            Pair::Exhausted => stats.exhausted += 1,
            Pair::Failed => {
                stats.errors += 1;
                tokio::time::sleep(BUSY_BACKOFF).await;
            }
        }
        // The in-memory store never suspends: let the other clients on this thread run.
        tokio::task::yield_now().await;
    }
    stats
}

/// Runs `clients` tasks for `duration` and summarises them.
async fn drive(target: Arc<Target>, clients: usize, duration: Duration) -> RunReport {
    let check = Arc::new(Check::default());
    let started = Instant::now();
    let deadline = started + duration;
    let tasks: Vec<_> = (0..clients)
        .map(|id| {
            tokio::spawn(client(
                Arc::clone(&target),
                Arc::clone(&check),
                id,
                deadline,
            ))
        })
        .collect();
    let mut all = Vec::new();
    let (mut exhausted, mut errors, mut busy) = (0, 0, 0);
    for t in tasks {
        match t.await {
            Ok(s) => {
                all.extend_from_slice(&s.latencies_ns);
                exhausted += s.exhausted;
                errors += s.errors;
                busy += s.busy;
            }
            Err(_) => errors += 1,
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_unstable();
    let pairs = all.len() as u64;
    RunReport {
        pairs,
        pairs_per_sec: if elapsed > 0.0 {
            pairs as f64 / elapsed
        } else {
            0.0
        },
        p50_ms: percentile_ms(&all, 0.50),
        p99_ms: percentile_ms(&all, 0.99),
        max_ms: all.last().map_or(0.0, |n| f64::from(*n) / 1e6),
        exhausted,
        errors,
        busy_retries: busy,
        double_leases: check.doubles.load(Ordering::Relaxed),
        elapsed_s: elapsed,
    }
}

/// Nearest-rank percentile of sorted nanosecond samples, in ms (0 without samples).
fn percentile_ms(sorted_ns: &[u32], q: f64) -> f64 {
    super::nearest_rank(sorted_ns, q).map_or(0.0, |ns| f64::from(ns) / 1e6)
}

fn print_table(r: &PoolsReport, out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(
        out,
        "bench pools: {} clients x {} s per store, {} workers per pool, {} client thread(s){}",
        r.clients,
        r.seconds,
        r.workers,
        r.threads,
        r.redis_scripting
            .map(|s| format!(", Redis scripts via {s}"))
            .unwrap_or_default()
            + &r.redis_ops_per_call
                .map(|n| format!(", {n:.1} operations per call"))
                .unwrap_or_default()
    )?;
    writeln!(
        out,
        "{:<10} {:>12} {:>9} {:>9} {:>9} {:>11} {:>9} {:>7} {:>9}",
        "store",
        "pairs/s",
        "p50 ms",
        "p99 ms",
        "max ms",
        "pairs",
        "no worker",
        "errors",
        "lock busy"
    )?;
    let runs = [
        ("memory", Some(&r.memory)),
        ("redis", r.redis.as_ref()),
        ("baseline", r.baseline.as_ref()),
        ("ceiling", r.ceiling.as_ref()),
        ("http", r.http.as_ref()),
        ("http ceil", r.http_ceiling.as_ref()),
    ];
    for (name, run) in runs {
        match run {
            Some(x) => writeln!(
                out,
                "{:<10} {:>12.0} {:>9.3} {:>9.3} {:>9.3} {:>11} {:>9} {:>7} {:>9}",
                name,
                x.pairs_per_sec,
                x.p50_ms,
                x.p99_ms,
                x.max_ms,
                x.pairs,
                x.exhausted,
                x.errors,
                x.busy_retries
            )?,
            None if matches!(name, "ceiling" | "http" | "http ceil") => {}
            None => writeln!(out, "{name:<10} (skipped: no --redis)")?,
        }
    }
    if let Some(ratio) = r.ratio_redis_vs_baseline {
        writeln!(out, "redis / baseline: {ratio:.1}x")?;
    }
    if let Some(inv) = &r.redis_invariants {
        writeln!(out, "redis records after the run: {inv}")?;
    }
    if let Some(state) = r.http_state {
        let protocol = match r.http_connections {
            Some(n) => format!("{} on {n} connection(s)", r.http_protocol.unwrap_or("h2c")),
            None => r.http_protocol.unwrap_or("HTTP").to_owned(),
        };
        if state == "remote" {
            writeln!(out, "http: the control plane at --api, over {protocol}")?;
        } else {
            writeln!(
                out,
                "http: a control plane in this process, state in {state}, over loopback {protocol}"
            )?;
        }
    }
    for (name, ratio) in [
        ("http / redis", r.http_ratio_vs_redis),
        ("http / memory", r.http_ratio_vs_memory),
        ("http / http ceiling", r.http_ratio_vs_http_ceiling),
    ] {
        if let Some(ratio) = ratio {
            writeln!(out, "{name}: {ratio:.3}")?;
        }
    }
    writeln!(out, "double leases: {}", r.double_leases)
}

#[cfg(test)]
mod tests;

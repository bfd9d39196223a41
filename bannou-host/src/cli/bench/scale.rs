//! `bannou-host bench scale`: the project's target load on one control plane: 100,000 NPC
//! brains on 1,000 pool workers (100 each).
//!
//! - **Control plane**: started in this process with its state and bus on `--redis`, on a
//!   runtime of its own whose threads are named [`CP_THREAD`]: its CPU time is the sum
//!   over those threads (`/proc/self/task/*/stat`), apart from the load's runtime. Its
//!   pool workers are in-process nodes (the embedded default), so their CPU counts too.
//! - **Nodes**: `--nodes` simulated nodes heartbeat every `--heartbeat-interval` through
//!   Redis (XADD on the control plane's stream, spread evenly over the interval). Lag is
//!   from a beat's publish to the aggregator's `last_seen` of that instance (the ingest
//!   time), both on the system clock.
//! - **Pools**: `--workers` in-process workers over `--pools` pools, deployed by a preset
//!   and waited for until every worker is Available.
//! - **Callers**: `--callers` tasks acquire over HTTP from a random pool, hold the lease
//!   a random 1-60 s (`--lease-min`/`--lease-max`), and release it with its fencing token.
//!   A processor seen held by two callers at once is a double lease (must be 0).
//! - **Mid-run**: at half time one topology change (an `add-node`) and one pool scale-up
//!   (the first pool by a tenth) go through the HTTP API.
//! - **Headroom** (`--step N`): after the run, heartbeat-only steps of N, 2N, ... nodes up
//!   to `--max-nodes`, `--step-seconds` each; the answer is the largest step whose lag
//!   p99 stayed within 1 s with every beat ingested. A step whose beats the bench itself
//!   could not publish (under [`OFFERED_SHARE`] of those due) ends the search with the
//!   answer marked a lower bound.
//!
//! Resident memory is the whole process's (`VmRSS`: the load is small beside the control
//! plane); Redis CPU and memory come from `INFO`. Keys are the control plane's own: point
//! it at a throw-away server.
//!
//! Kept as one file: one benchmark command, its load, measurements and report read top to
//! bottom.

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use orchestrator_core::api::{
    AcquireProcessorRequest, DeployRequest, GetPoolStatusRequest, ReleaseProcessorRequest,
    ScalePoolRequest, TopologyChange, TopologyChangeAction, TopologyNode, TopologyUpdateRequest,
};
use orchestrator_core::events::{ServiceHealthStatus, ServiceHeartbeatEvent};
use orchestrator_core::ports::bus::{EventBus, EventBusExt};
use orchestrator_core::time::Clock;
use orchestrator_core::{AppId, Timestamp};
use serde::Serialize;
use tokio::time::Instant;
use uuid::Uuid;

use super::nearest_rank;
use crate::client::{ApiClient, ClientError};
use crate::clock::TokioClock;
use crate::config::HostConfig;
use crate::orchestrator::heartbeats::SharedHealth;
use crate::server::Server;

/// Name of the control plane's runtime threads (what its CPU time is summed over).
pub const CP_THREAD: &str = "bannou-cp";
/// Services each simulated node reports.
const SERVICES_PER_NODE: usize = 10;
/// Heartbeat lag the headroom search accepts at p99.
const HEADROOM_LAG: Duration = Duration::from_secs(1);
/// How often the lag sampler looks at the aggregator.
const SAMPLE_EVERY: Duration = Duration::from_millis(20);
/// A beat not ingested within this is counted as unseen (its lag so far is recorded).
const UNSEEN_AFTER: Duration = Duration::from_secs(30);
/// Share of a step's due beats the bench must publish for the step to judge the control
/// plane (see [`HeadroomStep::offered_share`]).
pub const OFFERED_SHARE: f64 = 0.9;
/// Simulated nodes per publisher task (each publishes its nodes' beats one at a time).
const NODES_PER_PUBLISHER: usize = 250;
/// Longest the pools may take to have every worker Available.
const READY_PATIENCE: Duration = Duration::from_secs(300);

/// Arguments of `bench scale`.
#[derive(Debug, Args)]
pub struct ScaleArgs {
    /// Redis for the control plane's state and bus (required): a throw-away server.
    #[arg(long, value_name = "URL")]
    pub redis: String,
    /// Simulated nodes heartbeating.
    #[arg(long, default_value_t = 1_000)]
    pub nodes: usize,
    /// Seconds between one node's heartbeats.
    #[arg(long, default_value_t = 10.0)]
    pub heartbeat_interval: f64,
    /// Pool workers in all (split evenly over `--pools`).
    #[arg(long, default_value_t = 1_000)]
    pub workers: usize,
    /// Pools.
    #[arg(long, default_value_t = 4)]
    pub pools: usize,
    /// Simulated callers leasing workers over HTTP.
    #[arg(long, default_value_t = 200)]
    pub callers: usize,
    /// Shortest lease held, seconds.
    #[arg(long, default_value_t = 1.0)]
    pub lease_min: f64,
    /// Longest lease held, seconds.
    #[arg(long, default_value_t = 60.0)]
    pub lease_max: f64,
    /// Seconds of the measured run.
    #[arg(long, default_value_t = 120.0)]
    pub seconds: f64,
    /// Headroom search: nodes added per step (0: no search).
    #[arg(long, default_value_t = 0)]
    pub step: usize,
    /// Headroom search: most nodes tried.
    #[arg(long, default_value_t = 20_000)]
    pub max_nodes: usize,
    /// Headroom search: seconds per step.
    #[arg(long, default_value_t = 30.0)]
    pub step_seconds: f64,
    /// Threads of the control plane's runtime.
    #[arg(long, default_value_t = 2)]
    pub cp_threads: usize,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Heartbeat lag over a phase.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LagReport {
    /// Beats published.
    pub published: u64,
    /// Median lag, ms.
    pub p50_ms: f64,
    /// 99th percentile lag, ms.
    pub p99_ms: f64,
    /// Largest lag, ms.
    pub max_ms: f64,
    /// Beats not ingested within 30 s (or by the end of the phase).
    pub unseen: u64,
    /// Publishes that failed.
    pub publish_errors: u64,
}

/// One headroom step.
#[derive(Debug, Clone, Serialize)]
pub struct HeadroomStep {
    /// Simulated nodes.
    pub nodes: usize,
    /// Lag of the step.
    pub lag: LagReport,
    /// Control-plane CPU seconds per wall second.
    pub cp_cpu_per_s: f64,
    /// Beats published per second of the step.
    pub published_per_s: f64,
    /// Published / due (nodes x step / interval): below [`OFFERED_SHARE`] the bench could
    /// not offer the step's load and the search stops without judging the control plane.
    pub offered_share: f64,
}

/// The whole report (`--json` prints it as is).
#[derive(Debug, Clone, Serialize)]
pub struct ScaleReport {
    /// Simulated nodes of the main run.
    pub nodes: usize,
    /// Pool workers at the start (in-process).
    pub workers: usize,
    /// Pools.
    pub pools: usize,
    /// Callers.
    pub callers: usize,
    /// Wall seconds of the main run.
    pub seconds: f64,
    /// Heartbeat lag of the main run.
    pub heartbeat_lag: LagReport,
    /// Acquires granted.
    pub acquires: u64,
    /// Median acquire latency, ms.
    pub acquire_p50_ms: f64,
    /// 99th percentile acquire latency, ms.
    pub acquire_p99_ms: f64,
    /// Acquires answered 429 (no worker free).
    pub exhausted: u64,
    /// Failed acquire or release calls.
    pub errors: u64,
    /// Processors seen leased to two callers at once (must be 0).
    pub double_leases: u64,
    /// The mid-run `add-node` succeeded.
    pub topology_change_ok: bool,
    /// Workers of the first pool after the mid-run scale-up.
    pub scaled_pool_workers: i64,
    /// Control-plane CPU seconds per wall second over the run.
    pub cp_cpu_per_s: f64,
    /// Resident memory of this process at the end, MiB.
    pub rss_mib: f64,
    /// Redis CPU seconds (user + system) per wall second over the run.
    pub redis_cpu_per_s: f64,
    /// Redis `used_memory` at the end, MiB.
    pub redis_used_mib: f64,
    /// Headroom steps (empty without `--step`).
    pub headroom: Vec<HeadroomStep>,
    /// Largest step whose heartbeat lag p99 stayed within 1 s (`None` without `--step`,
    /// 0 when even the first step did not).
    pub headroom_nodes: Option<usize>,
    /// The search stopped because the bench could not publish a step's beats, not because
    /// the lag grew: `headroom_nodes` is then a lower bound.
    pub headroom_bench_limited: bool,
}

/// Runs the benchmark and prints its report.
pub fn run(args: ScaleArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.nodes > 0 && args.pools > 0 && args.workers >= args.pools && args.callers > 0,
        "--nodes, --pools and --callers must be at least 1, --workers at least --pools"
    );
    anyhow::ensure!(
        args.seconds > 0.0 && args.heartbeat_interval > 0.0 && args.step_seconds > 0.0,
        "--seconds, --heartbeat-interval and --step-seconds must be positive"
    );
    anyhow::ensure!(
        args.lease_min >= 0.0 && args.lease_max >= args.lease_min,
        "--lease-min must be at least 0 and at most --lease-max"
    );
    let cp = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.cp_threads.max(1))
        .thread_name(CP_THREAD)
        .enable_all()
        .build()?;
    let load = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("bench-load")
        .enable_all()
        .build()?;
    let report = load.block_on(bench(&args, cp.handle()))?;
    if args.json {
        serde_json::to_writer(&mut *out, &report)?;
        writeln!(out)?;
    } else {
        write_table(out, &report)?;
    }
    Ok(())
}

fn pool_name(i: usize) -> String {
    format!("scale-pool-{i}")
}

fn preset_text(pools: usize, per_pool: usize) -> String {
    let mut text =
        String::from("name: scale\ndescription: bannou-host bench scale\nprocessingPools:\n");
    for i in 0..pools {
        text.push_str(&format!(
            "  - poolType: {}\n    plugin: actor\n    minInstances: {per_pool}\n    \
             maxInstances: {}\n",
            pool_name(i),
            per_pool * 2
        ));
    }
    text
}

async fn bench(args: &ScaleArgs, cp: &tokio::runtime::Handle) -> anyhow::Result<ScaleReport> {
    orchestrator_backends::http::install_crypto_provider();
    let presets = tempfile::tempdir().context("a directory for the bench preset")?;
    let per_pool = args.workers / args.pools;
    std::fs::write(
        presets.path().join("scale.yaml"),
        preset_text(args.pools, per_pool),
    )?;
    let mut config = HostConfig::from_env(|_| None)?;
    config.presets_host_path = presets.path().to_path_buf();
    config.listen = "127.0.0.1:0".parse()?;
    config.redis_url = Some(args.redis.clone());
    config.deploy_parallelism = config.deploy_parallelism.max(64);
    let server = cp
        .spawn(Server::start(config))
        .await?
        .context("starting the control plane")?;
    let result = drive(args, &server).await;
    cp.spawn(server.shutdown()).await?;
    result
}

async fn drive(args: &ScaleArgs, server: &Server) -> anyhow::Result<ScaleReport> {
    let service = server.service().await.context("no control plane")?;
    let health = service.deps().health.clone();
    let bus = server.adapters().bus.clone();
    let api = ApiClient::new(&server.base_url())?.with_timeout(Duration::from_secs(30));
    let pools: Vec<String> = (0..args.pools).map(pool_name).collect();
    let per_pool = args.workers / args.pools;

    // Starting a thousand workers can take longer than one call's usual timeout.
    let deployed = api
        .clone()
        .with_timeout(READY_PATIENCE)
        .deploy(&DeployRequest {
            preset: Some("scale".to_owned()),
            ..DeployRequest::default()
        })
        .await?;
    anyhow::ensure!(
        deployed.body.success,
        "deploying the pools failed: {:?}",
        deployed.body.warnings
    );
    wait_available(&api, &pools, per_pool).await?;

    let mut redis = redis::Client::open(args.redis.as_str())?
        .get_multiplexed_async_connection()
        .await
        .context("a Redis connection for INFO")?;
    let interval = Duration::from_secs_f64(args.heartbeat_interval);
    let wall = Duration::from_secs_f64(args.seconds);

    // The main run.
    let cpu0 = cp_cpu_seconds()?;
    let redis0 = redis_info(&mut redis).await?;
    let started = Instant::now();
    let beats = Heartbeats::start(bus.clone(), health.clone(), args.nodes, interval);
    let stop = Arc::new(AtomicBool::new(false));
    let callers = Callers::default();
    let mut tasks = Vec::new();
    for id in 0..args.callers {
        tasks.push(tokio::spawn(callers.clone().run(
            api.clone(),
            pools.clone(),
            id,
            (args.lease_min, args.lease_max),
            started + wall,
            stop.clone(),
        )));
    }
    tokio::time::sleep_until(started + wall / 2).await;
    let topology_change_ok = add_node(&api).await;
    let scaled_pool_workers = api
        .scale_pool(&ScalePoolRequest {
            pool_type: pools[0].clone(),
            target_instances: i64::try_from(per_pool + per_pool.div_ceil(10))?,
            force: false,
        })
        .await
        .map(|r| r.current_instances)
        .unwrap_or(-1);
    tokio::time::sleep_until(started + wall).await;
    stop.store(true, Ordering::Release);
    let heartbeat_lag = beats.finish().await;
    for t in tasks {
        t.await?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cp_cpu_seconds()? - cpu0;
    let redis1 = redis_info(&mut redis).await?;
    let calls = callers.summary();

    // Headroom.
    let mut headroom = Vec::new();
    let mut headroom_nodes = None;
    let mut headroom_bench_limited = false;
    if args.step > 0 {
        let mut best = 0;
        let mut nodes = args.step;
        while nodes <= args.max_nodes {
            let cpu0 = cp_cpu_seconds()?;
            let t0 = Instant::now();
            let beats = Heartbeats::start(bus.clone(), health.clone(), nodes, interval);
            tokio::time::sleep(Duration::from_secs_f64(args.step_seconds)).await;
            let lag = beats.finish().await;
            let took = t0.elapsed().as_secs_f64();
            let cp_cpu_per_s = (cp_cpu_seconds()? - cpu0) / took;
            let due = nodes as f64 * args.step_seconds / args.heartbeat_interval;
            let offered_share = lag.published as f64 / due;
            let ok = lag.p99_ms <= HEADROOM_LAG.as_secs_f64() * 1e3 && lag.unseen == 0;
            let published_per_s = lag.published as f64 / args.step_seconds;
            headroom.push(HeadroomStep {
                nodes,
                lag,
                cp_cpu_per_s,
                published_per_s,
                offered_share,
            });
            if offered_share < OFFERED_SHARE {
                headroom_bench_limited = true;
                break;
            }
            if !ok {
                break;
            }
            best = nodes;
            nodes += args.step;
        }
        headroom_nodes = Some(best);
    }

    Ok(ScaleReport {
        nodes: args.nodes,
        workers: per_pool * args.pools,
        pools: args.pools,
        callers: args.callers,
        seconds: elapsed,
        heartbeat_lag,
        acquires: calls.acquires,
        acquire_p50_ms: calls.p50_ms,
        acquire_p99_ms: calls.p99_ms,
        exhausted: calls.exhausted,
        errors: calls.errors,
        double_leases: calls.doubles,
        topology_change_ok,
        scaled_pool_workers,
        cp_cpu_per_s: cpu / elapsed,
        rss_mib: rss_mib()?,
        redis_cpu_per_s: (redis1.cpu_s - redis0.cpu_s) / elapsed,
        redis_used_mib: redis1.used_memory as f64 / (1024.0 * 1024.0),
        headroom,
        headroom_nodes,
        headroom_bench_limited,
    })
}

/// Waits until every pool has `per_pool` Available workers.
async fn wait_available(api: &ApiClient, pools: &[String], per_pool: usize) -> anyhow::Result<()> {
    let until = Instant::now() + READY_PATIENCE;
    for pool in pools {
        loop {
            let status = api
                .pool_status(&GetPoolStatusRequest {
                    pool_type: pool.clone(),
                    include_metrics: false,
                })
                .await?;
            if usize::try_from(status.available_instances).unwrap_or(0) >= per_pool {
                break;
            }
            if Instant::now() >= until {
                bail!(
                    "{pool}: only {} of {per_pool} workers available after {READY_PATIENCE:?}",
                    status.available_instances
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(())
}

/// The mid-run topology change: one node added (in-process, one service).
async fn add_node(api: &ApiClient) -> bool {
    let change = TopologyChange {
        action: TopologyChangeAction::AddNode,
        node_name: Some("scale-extra".to_owned()),
        services: Some(vec!["realm".to_owned()]),
        replicas: None,
        environment: None,
        node_config: Some(TopologyNode {
            services: Some(vec!["realm".to_owned()]),
            ..TopologyNode::new("scale-extra")
        }),
    };
    let request = TopologyUpdateRequest {
        changes: vec![change],
        mode: orchestrator_core::api::DeploymentMode::Graceful,
        timeout: 60,
    };
    match api.update_topology(&request).await {
        Ok(r) => r.applied_changes.iter().all(|c| c.success),
        Err(e) => {
            tracing::warn!(error = %e, "bench scale: the topology change failed");
            false
        }
    }
}

/// Simulated nodes heartbeating, and the lag of their beats.
struct Heartbeats {
    stop: Arc<AtomicBool>,
    publishers: Vec<tokio::task::JoinHandle<()>>,
    sampler: tokio::task::JoinHandle<Vec<u32>>,
    published: Arc<AtomicU64>,
    errors: Arc<AtomicU64>,
    unseen: Arc<AtomicU64>,
}

/// Beats published and not yet seen ingested: instance, publish time.
type Pending = Arc<Mutex<Vec<(Uuid, Timestamp)>>>;

impl Heartbeats {
    /// `nodes` nodes (app-ids `scale-node-{i}`, fresh instance ids) beating every
    /// `interval`, evenly spread.
    fn start(
        bus: Arc<dyn EventBus>,
        health: SharedHealth,
        nodes: usize,
        interval: Duration,
    ) -> Heartbeats {
        let stop = Arc::new(AtomicBool::new(false));
        let pending: Pending = Arc::default();
        let (published, errors, unseen) = (
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicU64::new(0)),
        );
        let start = Instant::now();
        let tasks = nodes.div_ceil(NODES_PER_PUBLISHER).max(1);
        let publishers = (0..tasks)
            .map(|p| {
                let (bus, stop, pending, published, errors) = (
                    bus.clone(),
                    stop.clone(),
                    pending.clone(),
                    published.clone(),
                    errors.clone(),
                );
                tokio::spawn(async move {
                    let clock = TokioClock::system();
                    let mine: Vec<ServiceHeartbeatEvent> = (p..nodes)
                        .step_by(tasks)
                        .map(|i| node_beat(i, &clock))
                        .collect();
                    if mine.is_empty() {
                        return;
                    }
                    // Beat k of node j of this publisher is due at
                    // start + k * interval + j * interval / len.
                    let slot = interval.div_f64(mine.len() as f64);
                    let mut due = 0u64;
                    while !stop.load(Ordering::Acquire) {
                        let j = (due % mine.len() as u64) as usize;
                        let at = start + slot.mul_f64(due as f64);
                        tokio::time::sleep_until(at).await;
                        if stop.load(Ordering::Acquire) {
                            break;
                        }
                        let mut hb = mine[j].clone();
                        hb.event_id = Uuid::new_v4();
                        let now = clock.now();
                        hb.timestamp = now;
                        let id = hb.service_id;
                        match bus.publish_owned(hb).await {
                            Ok(()) => {
                                published.fetch_add(1, Ordering::Relaxed);
                                lock(&pending).push((id, now));
                            }
                            Err(_) => {
                                errors.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        due += 1;
                    }
                })
            })
            .collect();
        let sampler = tokio::spawn(sample_lag(health, pending, stop.clone(), unseen.clone()));
        Heartbeats {
            stop,
            publishers,
            sampler,
            published,
            errors,
            unseen,
        }
    }

    /// Stops the nodes, waits for their last beats (bounded) and summarises the lag.
    async fn finish(self) -> LagReport {
        self.stop.store(true, Ordering::Release);
        for p in self.publishers {
            let _ = p.await;
        }
        let mut lags = self.sampler.await.unwrap_or_default();
        lags.sort_unstable();
        let ms = |v: Option<u32>| v.map_or(0.0, f64::from);
        LagReport {
            published: self.published.load(Ordering::Relaxed),
            p50_ms: ms(nearest_rank(&lags, 0.5)),
            p99_ms: ms(nearest_rank(&lags, 0.99)),
            max_ms: ms(lags.last().copied()),
            unseen: self.unseen.load(Ordering::Relaxed),
            publish_errors: self.errors.load(Ordering::Relaxed),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Node `i`'s heartbeat template: a fresh instance id, ten services.
fn node_beat(i: usize, clock: &TokioClock) -> ServiceHeartbeatEvent {
    let services =
        (0..SERVICES_PER_NODE).map(|k| (format!("scale-svc-{k}"), ServiceHealthStatus::Healthy));
    ServiceHeartbeatEvent::new(
        Uuid::new_v4(),
        AppId::from(format!("scale-node-{i}")),
        clock.now(),
        services,
    )
}

/// Every [`SAMPLE_EVERY`], the pending beats the aggregator has seen since they were sent
/// give their lag (ingest time - publish time, ms); once `stop` is set, what is still
/// pending gets a last chance of [`UNSEEN_AFTER`] at most.
async fn sample_lag(
    health: SharedHealth,
    pending: Pending,
    stop: Arc<AtomicBool>,
    unseen: Arc<AtomicU64>,
) -> Vec<u32> {
    let clock = TokioClock::system();
    let mut lags = Vec::new();
    let mut stopped_at: Option<Instant> = None;
    loop {
        tokio::time::sleep(SAMPLE_EVERY).await;
        let taken = std::mem::take(&mut *lock(&pending));
        let now = clock.now();
        let mut waiting = Vec::with_capacity(taken.len());
        {
            let state = health.lock();
            for (id, sent) in taken {
                match state.aggregator.last_seen_of(id) {
                    Some(seen) if seen >= sent => {
                        lags.push(
                            u32::try_from(seen.saturating_since(sent).as_millis())
                                .unwrap_or(u32::MAX),
                        );
                    }
                    _ if now.saturating_since(sent) >= UNSEEN_AFTER => {
                        unseen.fetch_add(1, Ordering::Relaxed);
                        lags.push(u32::try_from(UNSEEN_AFTER.as_millis()).unwrap_or(u32::MAX));
                    }
                    _ => waiting.push((id, sent)),
                }
            }
        }
        let done = waiting.is_empty();
        lock(&pending).extend(waiting);
        if stop.load(Ordering::Acquire) {
            let since = *stopped_at.get_or_insert_with(Instant::now);
            if done || since.elapsed() >= UNSEEN_AFTER {
                let left = lock(&pending).len() as u64;
                unseen.fetch_add(left, Ordering::Relaxed);
                return lags;
            }
        }
    }
}

/// The callers' shared tallies.
#[derive(Clone, Default)]
struct Callers(Arc<Mutex<CallerTally>>);

#[derive(Default)]
struct CallerTally {
    latencies_us: Vec<u32>,
    exhausted: u64,
    errors: u64,
    doubles: u64,
    /// Processor id -> caller holding it.
    held: HashMap<String, usize>,
}

struct CallerSummary {
    acquires: u64,
    p50_ms: f64,
    p99_ms: f64,
    exhausted: u64,
    errors: u64,
    doubles: u64,
}

impl Callers {
    /// One caller: acquire from a random pool, hold a random while, release; until
    /// `deadline` (a lease held then is released at once).
    async fn run(
        self,
        api: ApiClient,
        pools: Vec<String>,
        id: usize,
        (hold_min, hold_max): (f64, f64),
        deadline: Instant,
        stop: Arc<AtomicBool>,
    ) {
        let mut rng = fastrand::Rng::new();
        while !stop.load(Ordering::Acquire) && Instant::now() < deadline {
            let pool = &pools[rng.usize(..pools.len())];
            let mut request = AcquireProcessorRequest::new(pool.as_str());
            // The lease outlives the longest hold, so expiry never hands it to another.
            request.timeout_seconds = hold_max.ceil() as i64 + 60;
            let t0 = Instant::now();
            let lease = match api.acquire_processor(&request).await {
                Ok(l) => l,
                Err(ClientError::Status { status: 429, .. }) => {
                    lock(&self.0).exhausted += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
                Err(_) => {
                    lock(&self.0).errors += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let took = u32::try_from(t0.elapsed().as_micros()).unwrap_or(u32::MAX);
            {
                let mut tally = lock(&self.0);
                tally.latencies_us.push(took);
                if tally.held.insert(lease.processor_id.clone(), id).is_some() {
                    tally.doubles += 1;
                }
            }
            let hold = Duration::from_secs_f64(hold_min + rng.f64() * (hold_max - hold_min));
            tokio::time::sleep_until((Instant::now() + hold).min(deadline)).await;
            {
                let mut tally = lock(&self.0);
                if tally.held.get(&lease.processor_id) == Some(&id) {
                    tally.held.remove(&lease.processor_id);
                }
            }
            let release = ReleaseProcessorRequest {
                fencing_token: Some(lease.fencing_token),
                ..ReleaseProcessorRequest::new(lease.lease_id)
            };
            if api.release_processor(&release).await.is_err() {
                lock(&self.0).errors += 1;
            }
        }
    }

    fn summary(&self) -> CallerSummary {
        let mut tally = lock(&self.0);
        tally.latencies_us.sort_unstable();
        let ms = |q| nearest_rank(&tally.latencies_us, q).map_or(0.0, |us| f64::from(us) / 1e3);
        CallerSummary {
            acquires: tally.latencies_us.len() as u64,
            p50_ms: ms(0.5),
            p99_ms: ms(0.99),
            exhausted: tally.exhausted,
            errors: tally.errors,
            doubles: tally.doubles,
        }
    }
}

/// CPU seconds (user + system) of this process's control-plane threads so far.
fn cp_cpu_seconds() -> anyhow::Result<f64> {
    // USER_HZ, the unit of /proc's utime and stime: 100 on every Linux this runs on.
    const TICKS: f64 = 100.0;
    let mut ticks = 0u64;
    for task in std::fs::read_dir("/proc/self/task").context("/proc/self/task")? {
        let Ok(stat) = std::fs::read_to_string(task?.path().join("stat")) else {
            continue; // the thread ended meanwhile
        };
        // `pid (comm) state ...`: comm may hold spaces, so split after its `)`.
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        if !head
            .split_once('(')
            .is_some_and(|(_, comm)| comm.starts_with(CP_THREAD))
        {
            continue;
        }
        // Fields after comm: state(3) ... utime(14) stime(15) => indexes 11 and 12 here.
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let get = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<u64>().ok())
                .unwrap_or(0)
        };
        ticks += get(11) + get(12);
    }
    Ok(ticks as f64 / TICKS)
}

/// This process's resident memory, MiB (`VmRSS`).
fn rss_mib() -> anyhow::Result<f64> {
    let status = std::fs::read_to_string("/proc/self/status").context("/proc/self/status")?;
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .context("no VmRSS in /proc/self/status")?;
    Ok(kib / 1024.0)
}

/// What the bench reads from Redis `INFO`.
struct RedisInfo {
    cpu_s: f64,
    used_memory: u64,
}

async fn redis_info(conn: &mut redis::aio::MultiplexedConnection) -> anyhow::Result<RedisInfo> {
    let text: String = redis::cmd("INFO")
        .query_async(conn)
        .await
        .context("Redis INFO")?;
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .map(str::trim)
    };
    let num = |name: &str| {
        field(name)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    Ok(RedisInfo {
        cpu_s: num("used_cpu_user") + num("used_cpu_sys"),
        used_memory: field("used_memory")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
    })
}

fn write_table(out: &mut dyn Write, r: &ScaleReport) -> anyhow::Result<()> {
    writeln!(
        out,
        "{} nodes heartbeating, {} workers in {} pools, {} callers, {:.0} s",
        r.nodes, r.workers, r.pools, r.callers, r.seconds
    )?;
    let lag = &r.heartbeat_lag;
    writeln!(
        out,
        "  heartbeat lag       p50 {:.0} ms  p99 {:.0} ms  max {:.0} ms  ({} beats, {} unseen, {} publish errors)",
        lag.p50_ms, lag.p99_ms, lag.max_ms, lag.published, lag.unseen, lag.publish_errors
    )?;
    writeln!(
        out,
        "  acquire over HTTP   p50 {:.2} ms  p99 {:.2} ms  ({} acquires, {} exhausted, {} errors)",
        r.acquire_p50_ms, r.acquire_p99_ms, r.acquires, r.exhausted, r.errors
    )?;
    writeln!(out, "  double leases       {}", r.double_leases)?;
    writeln!(
        out,
        "  mid-run             add-node {}, pool scaled up to {} workers",
        if r.topology_change_ok { "ok" } else { "FAILED" },
        r.scaled_pool_workers
    )?;
    writeln!(
        out,
        "  control plane       {:.3} CPU s per s   process RSS {:.0} MiB",
        r.cp_cpu_per_s, r.rss_mib
    )?;
    writeln!(
        out,
        "  redis               {:.3} CPU s per s   used_memory {:.1} MiB",
        r.redis_cpu_per_s, r.redis_used_mib
    )?;
    for s in &r.headroom {
        writeln!(
            out,
            "  headroom step {:>7} nodes: lag p99 {:.0} ms (max {:.0} ms, {:.0} beats/s = {:.0}% of due, {} unseen), control plane {:.3} CPU s per s",
            s.nodes,
            s.lag.p99_ms,
            s.lag.max_ms,
            s.published_per_s,
            s.offered_share * 100.0,
            s.lag.unseen,
            s.cp_cpu_per_s
        )?;
    }
    if let Some(n) = r.headroom_nodes {
        let bound = if r.headroom_bench_limited {
            " (at least: the bench could not publish the next step's beats)"
        } else {
            ""
        };
        writeln!(
            out,
            "  headroom: {n} nodes with heartbeat lag p99 <= 1 s{bound}"
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;

//! `bannou-host bench heartbeats`: N simulated instances, 10 services each, publish
//! heartbeats for a fixed time through (a) the in-memory bus and (b) Redis Streams into the
//! real ingestion pipeline ([`HeartbeatPipeline::ingest`], aggregator and routing), then a
//! silence check measures how long a silenced instance takes to be reported unavailable.
//!
//! Publishers keep at most `--window` heartbeats in flight (published, not yet ingested),
//! so the number is what the pipeline sustains rather than how fast a queue fills. Lag is
//! end to end, publish call to ingested, from a monotonic clock shared in-process (every
//! 16th heartbeat carries a send stamp and is sampled). Redis keys go under a fresh `bench:{uuid}` prefix; point it
//! at a throw-away server.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use futures::{FutureExt, StreamExt};
use orchestrator_backends::redis::bus::{RedisBus, RedisBusConfig};
use orchestrator_backends::redis::connection::{RedisConfig, RedisConnection};
use orchestrator_core::AppId;
use orchestrator_core::events::{InstanceHealthStatus, ServiceHealthStatus, ServiceHeartbeatEvent};
use orchestrator_core::health::{HealthConfig, HeartbeatAggregator};
use orchestrator_core::memory::bus::InMemoryBus;
use orchestrator_core::ports::bus::{EventBus, EventBusExt};
use orchestrator_core::time::Clock;
use orchestrator_routing::RoutingTable;
use serde::Serialize;
use tokio::sync::Notify;
use tokio::time::Instant;
use uuid::Uuid;

use super::nearest_rank;
use crate::clock::TokioClock;
use crate::orchestrator::heartbeats::{BATCH_MAX, HealthState, HeartbeatPipeline, SharedHealth};

/// Services per simulated instance.
pub const SERVICES_PER_INSTANCE: usize = 10;
const SENT_KEY: &str = "benchSentUs";
const SAMPLE_EVERY: u64 = 16;

/// Arguments of `bench heartbeats`.
#[derive(Debug, Args)]
pub struct HeartbeatsArgs {
    /// Redis for the Redis Streams run (`redis://127.0.0.1:6379/`); without it only the
    /// in-memory bus runs and no server is started.
    #[arg(long, value_name = "URL")]
    pub redis: Option<String>,
    /// Simulated instances (each reports 10 services).
    #[arg(long, default_value_t = 1000)]
    pub instances: usize,
    /// Seconds per bus.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Concurrent publisher tasks (the instances are split among them).
    #[arg(long, default_value_t = 8)]
    pub publishers: usize,
    /// Most heartbeats in flight (published, not yet ingested). Queueing lag at full speed
    /// is about window / rate, so a small window measures the pipeline, not a queue.
    #[arg(long, default_value_t = 2_048)]
    pub window: u64,
    /// Heartbeat timeout of the silence check, seconds (`HeartbeatTimeoutSeconds`).
    #[arg(long, default_value_t = 2.0)]
    pub timeout: f64,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// One bus's numbers.
#[derive(Debug, Clone, Serialize)]
pub struct BusReport {
    /// Heartbeats ingested.
    pub ingested: u64,
    /// Heartbeats ingested per second of wall time.
    pub per_sec: f64,
    /// Median publish-to-ingest lag, ms.
    pub lag_p50_ms: f64,
    /// 99th percentile lag, ms.
    pub lag_p99_ms: f64,
    /// Largest sampled lag, ms.
    pub lag_max_ms: f64,
    /// Publishes that failed.
    pub publish_errors: u64,
    /// Messages the pipeline could not decode (must be 0).
    pub malformed: u64,
    /// Wall time, seconds.
    pub elapsed_s: f64,
}

/// The whole report (`--json` prints it as is).
#[derive(Debug, Clone, Serialize)]
pub struct HeartbeatsReport {
    /// Simulated instances.
    pub instances: usize,
    /// Services per instance.
    pub services_per_instance: usize,
    /// In-memory bus run.
    pub memory: BusReport,
    /// Redis Streams run (`None` without `--redis`).
    pub redis: Option<BusReport>,
    /// `memory.per_sec`.
    pub memory_per_sec: f64,
    /// `redis.per_sec`.
    pub redis_per_sec: Option<f64>,
    /// `redis.lag_p99_ms`.
    pub redis_lag_p99_ms: Option<f64>,
    /// Configured heartbeat timeout of the silence check, ms.
    pub heartbeat_timeout_ms: u64,
    /// From an instance's last heartbeat to the aggregator reporting it unavailable, ms.
    pub unavailable_detect_ms: f64,
    /// Which bus the silence check ran on.
    pub unavailable_detect_bus: &'static str,
}

/// Runs the benchmark on a runtime of its own and prints the report.
pub fn run(args: HeartbeatsArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.instances > 0 && args.publishers > 0,
        "--instances and --publishers must be at least 1"
    );
    anyhow::ensure!(
        args.seconds > 0.0 && args.timeout > 0.0,
        "--seconds and --timeout must be positive"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let report = runtime.block_on(run_async(&args))?;
    if args.json {
        serde_json::to_writer(&mut *out, &report)?;
        writeln!(out)?;
    } else {
        write_table(out, &report)?;
    }
    Ok(())
}

async fn run_async(args: &HeartbeatsArgs) -> anyhow::Result<HeartbeatsReport> {
    let memory_bus: Arc<dyn EventBus> = Arc::new(InMemoryBus::new());
    let memory = measure(memory_bus.clone(), args).await?;
    let (redis, silence_bus, silence_name) = match &args.redis {
        Some(url) => {
            let tls = orchestrator_backends::redis::url::TlsFiles::from_env(|name| {
                std::env::var(name).ok()
            });
            let conn = RedisConnection::connect(RedisConfig::new(url.clone()).with_tls_files(tls))
                .await
                .with_context(|| {
                    format!(
                        "connecting to {}",
                        orchestrator_backends::redis::url::redact(url)
                    )
                })?;
            let prefix = format!("bench:{}", Uuid::new_v4().simple());
            let bus: Arc<dyn EventBus> =
                Arc::new(RedisBus::new(conn, RedisBusConfig::with_prefix(prefix)));
            (Some(measure(bus.clone(), args).await?), bus, "redis")
        }
        None => (None, memory_bus, "memory"),
    };
    let timeout = Duration::from_secs_f64(args.timeout);
    let detect = silence_check(silence_bus, timeout).await?;
    Ok(HeartbeatsReport {
        instances: args.instances,
        services_per_instance: SERVICES_PER_INSTANCE,
        memory_per_sec: memory.per_sec,
        redis_per_sec: redis.as_ref().map(|r| r.per_sec),
        redis_lag_p99_ms: redis.as_ref().map(|r| r.lag_p99_ms),
        memory,
        redis,
        heartbeat_timeout_ms: timeout.as_millis() as u64,
        unavailable_detect_ms: detect.as_secs_f64() * 1e3,
        unavailable_detect_bus: silence_name,
    })
}

fn template(i: usize) -> ServiceHeartbeatEvent {
    let services =
        (0..SERVICES_PER_INSTANCE).map(|k| (format!("svc-{k}"), ServiceHealthStatus::Healthy));
    let clock = TokioClock::system();
    ServiceHeartbeatEvent::new(
        Uuid::new_v4(),
        AppId::from(format!("bench-node-{i}")),
        clock.now(),
        services,
    )
}

/// The real ingestion pipeline over fresh state, as the orchestrator builds it (counting
/// into a metrics registry, as the control plane's does).
fn pipeline(config: HealthConfig) -> (SharedHealth, Arc<HeartbeatPipeline>, Arc<dyn Clock>) {
    let clock: Arc<dyn Clock> = Arc::new(TokioClock::system());
    let health = SharedHealth::new(HealthState {
        aggregator: HeartbeatAggregator::new(config),
        routing: RoutingTable::default(),
    });
    (
        health.clone(),
        Arc::new(
            HeartbeatPipeline::new(health, clock.clone(), 80)
                .with_metrics(crate::metrics::Metrics::control_plane()),
        ),
        clock,
    )
}

async fn measure(bus: Arc<dyn EventBus>, args: &HeartbeatsArgs) -> anyhow::Result<BusReport> {
    let (_health, pipeline, clock) = pipeline(HealthConfig::default());
    let base = Instant::now();
    let published = Arc::new(AtomicU64::new(0));
    let ingested = Arc::new(AtomicU64::new(0));
    let publish_errors = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let progress = Arc::new(Notify::new());

    let mut events = bus
        .subscribe_events::<ServiceHeartbeatEvent>()
        .await?
        .into_shared();
    let consumer = tokio::spawn({
        let (pipeline, ingested, progress, stop, published) = (
            pipeline.clone(),
            ingested.clone(),
            progress.clone(),
            stop.clone(),
            published.clone(),
        );
        async move {
            let mut lags_us: Vec<u64> = Vec::with_capacity(1 << 20);
            let mut n = 0u64;
            let mut batch = Vec::with_capacity(BATCH_MAX);
            let mut ended = false;
            while !ended {
                let item = if stop.load(Ordering::Acquire) {
                    // Draining: stop once everything published has arrived (bounded).
                    if n >= published.load(Ordering::Acquire) {
                        break;
                    }
                    match tokio::time::timeout(Duration::from_secs(10), events.next()).await {
                        Ok(item) => item,
                        Err(_) => break,
                    }
                } else if let Some(item) = events.next().now_or_never() {
                    // A heartbeat is already waiting (the usual case at full speed): no
                    // timer for it. The bench's own overhead, not the pipeline's.
                    item
                } else {
                    match tokio::time::timeout(Duration::from_millis(50), events.next()).await {
                        Ok(item) => item,
                        Err(_) => continue,
                    }
                };
                // As `HeartbeatPipeline::run` does: the first item waited, take whatever
                // else is already there and ingest it as one batch.
                let mut next = Some(item);
                while let Some(item) = next.take() {
                    match item {
                        Some(Ok(hb)) => batch.push(hb),
                        Some(Err(e)) => pipeline.note_stream_error(e),
                        None => ended = true,
                    }
                    if !ended && batch.len() < BATCH_MAX {
                        next = events.next().now_or_never();
                    }
                }
                if batch.is_empty() {
                    continue;
                }
                pipeline.ingest_batch(&batch, clock.now());
                let before = n;
                n += batch.len() as u64;
                for hb in batch.drain(..) {
                    if let Some(sent) = hb
                        .metadata
                        .as_ref()
                        .and_then(|m| m.get(SENT_KEY))
                        .and_then(|v| v.as_u64())
                    {
                        lags_us.push((base.elapsed().as_micros() as u64).saturating_sub(sent));
                    }
                }
                if n / 1024 != before / 1024 {
                    ingested.store(n, Ordering::Release);
                    progress.notify_waiters();
                }
            }
            ingested.store(n, Ordering::Release);
            (lags_us, Instant::now())
        }
    });

    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(args.seconds);
    let per = args.instances.div_ceil(args.publishers);
    let mut publishers = Vec::new();
    for p in 0..args.publishers {
        let range = (p * per)..((p + 1) * per).min(args.instances);
        if range.is_empty() {
            continue;
        }
        let (bus, published, ingested, errors, progress) = (
            bus.clone(),
            published.clone(),
            ingested.clone(),
            publish_errors.clone(),
            progress.clone(),
        );
        let window = args.window;
        publishers.push(tokio::spawn(async move {
            // Each simulated node's fixed part: its ids and service names (shared, as a
            // real node's plugin list is); every beat is a new heartbeat built from it.
            let nodes: Vec<ServiceHeartbeatEvent> = range.map(template).collect();
            let clock = TokioClock::system();
            let mut stamp = 0u64;
            'outer: loop {
                for node in &nodes {
                    // The bench's own clock check, every 32 beats.
                    if stamp.is_multiple_of(32) && Instant::now() >= deadline {
                        break 'outer;
                    }
                    while published
                        .load(Ordering::Acquire)
                        .saturating_sub(ingested.load(Ordering::Acquire))
                        > window
                    {
                        let _ = tokio::time::timeout(Duration::from_millis(1), progress.notified())
                            .await;
                        if Instant::now() >= deadline {
                            break 'outer;
                        }
                    }
                    let mut hb = node.clone();
                    hb.event_id = Uuid::new_v4();
                    hb.timestamp = clock.now();
                    // Only every 16th beat carries a send stamp, and only stamped beats are
                    // sampled: a JSON map built per heartbeat would measure the bench, not
                    // the pipeline.
                    stamp = stamp.wrapping_add(1);
                    hb.metadata = stamp.is_multiple_of(SAMPLE_EVERY).then(
                        || serde_json::json!({ SENT_KEY: base.elapsed().as_micros() as u64 }),
                    );
                    match bus.publish_owned(hb).await {
                        Ok(()) => {
                            published.fetch_add(1, Ordering::AcqRel);
                        }
                        Err(_) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
        }));
    }
    for p in publishers {
        p.await?;
    }
    stop.store(true, Ordering::Release);
    let (mut lags, finished) = consumer.await?;
    let total = ingested.load(Ordering::Acquire);
    let elapsed = finished.saturating_duration_since(started).as_secs_f64();
    lags.sort_unstable();
    Ok(BusReport {
        ingested: total,
        per_sec: total as f64 / elapsed,
        lag_p50_ms: nearest_rank(&lags, 0.50).map_or(0.0, |us| us as f64 / 1e3),
        lag_p99_ms: nearest_rank(&lags, 0.99).map_or(0.0, |us| us as f64 / 1e3),
        lag_max_ms: lags.last().map_or(0.0, |us| *us as f64 / 1e3),
        publish_errors: publish_errors.load(Ordering::Relaxed),
        malformed: pipeline.stats().snapshot().malformed,
        elapsed_s: elapsed,
    })
}

/// Five instances heartbeat every 100 ms through the real pipeline; one falls silent; the
/// time from its last heartbeat to the aggregator reporting its service unavailable.
async fn silence_check(bus: Arc<dyn EventBus>, timeout: Duration) -> anyhow::Result<Duration> {
    let config =
        HealthConfig::new(timeout, Duration::from_secs(300)).map_err(|e| anyhow::anyhow!("{e}"))?;
    let (health, pipeline, clock) = pipeline(config);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let consumer = tokio::spawn({
        let (p, bus) = (pipeline.clone(), bus.clone());
        async move { p.run(bus.as_ref(), stop_rx).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;

    let silenced = Arc::new(AtomicBool::new(false));
    let last_sent = Arc::new(std::sync::Mutex::new(None::<Instant>));
    let publisher = tokio::spawn({
        let (bus, silenced, last_sent, mut stop) = (
            bus.clone(),
            silenced.clone(),
            last_sent.clone(),
            stop_tx.subscribe(),
        );
        async move {
            let clock = TokioClock::system();
            let mut beats: Vec<ServiceHeartbeatEvent> = (0..5)
                .map(|i| {
                    let services = [(format!("silence-{i}"), ServiceHealthStatus::Healthy)];
                    ServiceHeartbeatEvent::new(
                        Uuid::new_v4(),
                        AppId::from(format!("silence-node-{i}")),
                        clock.now(),
                        services,
                    )
                })
                .collect();
            while !*stop.borrow() {
                for (i, hb) in beats.iter_mut().enumerate() {
                    if i == 0 && silenced.load(Ordering::Acquire) {
                        continue;
                    }
                    hb.timestamp = clock.now();
                    if bus.publish_event(hb).await.is_ok() && i == 0 {
                        *last_sent
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner) =
                            Some(Instant::now());
                    }
                }
                tokio::select! { _ = tokio::time::sleep(Duration::from_millis(100)) => {}, _ = stop.changed() => {} }
            }
        }
    });

    tokio::time::sleep(Duration::from_millis(600)).await;
    silenced.store(true, Ordering::Release);
    let limit = Instant::now() + timeout + Duration::from_secs(10);
    let detected = loop {
        let status = health
            .lock()
            .aggregator
            .service_status("silence-0", clock.now());
        if status == Some(InstanceHealthStatus::Unavailable) {
            break Instant::now();
        }
        anyhow::ensure!(
            Instant::now() < limit,
            "the silenced instance was never reported unavailable"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    stop_tx.send(true).ok();
    publisher.await?;
    consumer.await?.context("heartbeat subscription")?;
    let last = last_sent
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .context("the silenced instance never published")?;
    Ok(detected.saturating_duration_since(last))
}

fn write_table(out: &mut dyn Write, r: &HeartbeatsReport) -> anyhow::Result<()> {
    writeln!(
        out,
        "{} instances x {} services",
        r.instances, r.services_per_instance
    )?;
    writeln!(
        out,
        "{:<8} {:>12} {:>14} {:>10} {:>10} {:>10} {:>8}",
        "bus", "ingested", "heartbeats/s", "lag p50", "lag p99", "lag max", "errors"
    )?;
    let row = |out: &mut dyn Write, name: &str, b: &BusReport| -> std::io::Result<()> {
        writeln!(
            out,
            "{name:<8} {:>12} {:>14.0} {:>8.2}ms {:>8.2}ms {:>8.2}ms {:>8}",
            b.ingested,
            b.per_sec,
            b.lag_p50_ms,
            b.lag_p99_ms,
            b.lag_max_ms,
            b.publish_errors + b.malformed
        )
    };
    row(out, "memory", &r.memory)?;
    if let Some(redis) = &r.redis {
        row(out, "redis", redis)?;
    }
    writeln!(
        out,
        "silenced instance reported unavailable after {:.0} ms (timeout {} ms, {} bus)",
        r.unavailable_detect_ms, r.heartbeat_timeout_ms, r.unavailable_detect_bus
    )?;
    Ok(())
}

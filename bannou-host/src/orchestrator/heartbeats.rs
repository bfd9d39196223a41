//! Heartbeat ingestion: `bannou.service-heartbeat` -> aggregator -> routing refresh ->
//! pool worker promotion (D4 and D9 (docs/DECISIONS.md#d9)).
//!
//! [`HeartbeatPipeline::run`] consumes the bus; [`HeartbeatPipeline::ingest`] is the
//! synchronous step per heartbeat (short critical sections, no `.await` inside), so one
//! slow consumer can never stall the stream: everything that waits on I/O (promoting a
//! pool worker in the lease store) goes through a bounded queue to its own task, and what
//! does not fit is counted as dropped in [`PipelineStats`], never lost silently. Malformed
//! messages and lag are counted and logged, and never end the stream.

use std::borrow::Borrow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use orchestrator_core::events::{InstanceHealthStatus, ServiceHeartbeatEvent};
use orchestrator_core::health::{HeartbeatAggregator, IngestChanges, IngestOutcome};
use orchestrator_core::ports::bus::{BusError, EventBus, EventBusExt, EventStreamError};
use orchestrator_core::time::Clock;
use orchestrator_core::{AppId, Timestamp};
use orchestrator_pools::model::pool_of_worker_app_id;
use orchestrator_pools::{LeaseStore, PoolType};
use orchestrator_routing::RoutingTable;
use serde::Serialize;
use tokio::sync::{mpsc, watch};

use super::mappings::MappingsBroadcaster;

/// The state heartbeats feed: the aggregator and the routing table, shared with the
/// mappings broadcaster and the API.
pub struct HealthState {
    /// Per-service, per-instance health.
    pub aggregator: HeartbeatAggregator,
    /// The service -> app-id table.
    pub routing: RoutingTable,
}

/// A cheap clonable handle to [`HealthState`] behind a std mutex: every use is a short,
/// synchronous critical section (no `.await` while locked), so a std mutex is cheaper
/// than an async one and cannot be held across a suspension point by accident.
///
/// It also carries a change signal: [`HeartbeatPipeline`] bumps it after every batch it
/// applies, so a waiter (a deploy wave's health wait) wakes the moment a node's
/// heartbeat lands instead of polling. A waiter subscribes with
/// [`changes`](Self::changes) *before* it looks at the state, so no change between its
/// look and its wait is missed.
#[derive(Clone)]
pub struct SharedHealth {
    state: Arc<Mutex<HealthState>>,
    changed: Arc<watch::Sender<u64>>,
}

impl SharedHealth {
    /// Wraps the initial state.
    pub fn new(state: HealthState) -> Self {
        SharedHealth {
            state: Arc::new(Mutex::new(state)),
            changed: Arc::new(watch::channel(0).0),
        }
    }

    /// Locks the state (a poisoned lock is recovered: the state stays usable).
    pub fn lock(&self) -> MutexGuard<'_, HealthState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A receiver that sees every [`notify_changed`](Self::notify_changed) from now on
    /// (`changed().await` returns once one happened since the last look).
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Wakes every waiter of [`changes`](Self::changes): heartbeats were applied.
    pub fn notify_changed(&self) {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// Counters of the pipeline, for health reports and benchmarks.
#[derive(Debug, Default)]
pub struct PipelineStats {
    ingested: AtomicU64,
    ignored: AtomicU64,
    malformed: AtomicU64,
    lagged: AtomicU64,
    routes_created: AtomicU64,
    promotions_dropped: AtomicU64,
}

/// A copy of [`PipelineStats`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PipelineCounts {
    /// Heartbeats applied to the aggregator.
    pub ingested: u64,
    /// Heartbeats ignored: the control plane's (docs/COMPATIBILITY.md#heartbeat-consumption)
    /// and late beats of nodes the control plane tore down.
    pub ignored: u64,
    /// Messages that were not valid heartbeats.
    pub malformed: u64,
    /// Messages missed because the subscriber fell behind.
    pub lagged: u64,
    /// Routes created by heartbeats (each triggers a mappings broadcast).
    pub routes_created: u64,
    /// Worker promotions dropped because the promotion queue was full.
    pub promotions_dropped: u64,
}

impl PipelineStats {
    /// Reads every counter.
    pub fn snapshot(&self) -> PipelineCounts {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        PipelineCounts {
            ingested: get(&self.ingested),
            ignored: get(&self.ignored),
            malformed: get(&self.malformed),
            lagged: get(&self.lagged),
            routes_created: get(&self.routes_created),
            promotions_dropped: get(&self.promotions_dropped),
        }
    }
}

/// Most heartbeats ingested under one lock (see [`HeartbeatPipeline::ingest_batch`]).
pub const BATCH_MAX: usize = 128;

/// Bound of the worker-promotion queue.
pub const PROMOTION_QUEUE: usize = 4096;

/// How often [`HeartbeatPipeline::run`] lets the aggregator forget instances that are
/// gone (`HeartbeatAggregator::evict_stale`: silent past the retention, or retired by a
/// live instance of their node). Status queries leave retired instances out at once;
/// this sweep only bounds the memory they hold.
pub const EVICT_EVERY: Duration = Duration::from_secs(10);

/// Consumes heartbeats and keeps health, routing and pool workers up to date.
pub struct HeartbeatPipeline {
    health: SharedHealth,
    clock: Arc<dyn Clock>,
    service_port: u16,
    broadcaster: Option<Arc<MappingsBroadcaster>>,
    promotions: Option<mpsc::Sender<(PoolType, AppId)>>,
    stats: PipelineStats,
    metrics: Option<crate::metrics::Metrics>,
    events: Option<crate::event_stream::EventHub>,
}

impl HeartbeatPipeline {
    /// A pipeline over shared state. `service_port` is `DefaultServicePort` for routes
    /// that heartbeats create.
    pub fn new(health: SharedHealth, clock: Arc<dyn Clock>, service_port: u16) -> Self {
        HeartbeatPipeline {
            health,
            clock,
            service_port,
            broadcaster: None,
            promotions: None,
            stats: PipelineStats::default(),
            metrics: None,
            events: None,
        }
    }

    /// Reports each health change a heartbeat causes (new instance, status, service set)
    /// to `hub` as a `health.changed` event.
    pub fn with_event_hub(mut self, hub: crate::event_stream::EventHub) -> Self {
        self.events = Some(hub);
        self
    }

    /// Counts ingested heartbeats (and their lag, and each node's last beat) in `metrics`.
    pub fn with_metrics(mut self, metrics: crate::metrics::Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Routes created by heartbeats are broadcast at once through `broadcaster` (D11).
    pub fn with_broadcaster(mut self, broadcaster: Arc<MappingsBroadcaster>) -> Self {
        self.broadcaster = Some(broadcaster);
        self
    }

    /// Pool workers are promoted (Pending -> Available, D9 (docs/DECISIONS.md#d9)) in
    /// `leases` by a task this spawns; it ends when the pipeline is dropped. Needs a tokio
    /// runtime.
    pub fn with_worker_promotion(mut self, leases: Arc<dyn LeaseStore>) -> Self {
        let (tx, mut rx) = mpsc::channel::<(PoolType, AppId)>(PROMOTION_QUEUE);
        let clock = self.clock.clone();
        tokio::spawn(async move {
            while let Some((pool, app)) = rx.recv().await {
                if let Err(e) = leases.mark_ready(&pool, app.as_str(), clock.now()).await {
                    tracing::debug!(pool = %pool, app_id = %app, error = %e, "worker promotion skipped");
                }
            }
        });
        self.promotions = Some(tx);
        self
    }

    /// The counters.
    pub fn stats(&self) -> &PipelineStats {
        &self.stats
    }

    /// The shared state this pipeline feeds.
    pub fn health(&self) -> &SharedHealth {
        &self.health
    }

    /// Applies one heartbeat received at `now`.
    pub fn ingest(&self, hb: &ServiceHeartbeatEvent, now: Timestamp) {
        self.ingest_batch(std::slice::from_ref(hb), now);
    }

    /// Applies heartbeats received together at `now`, in order, under one lock of the
    /// shared state (the consumer takes whatever is already waiting, up to [`BATCH_MAX`]:
    /// one lock, one clock read and one mappings notification per batch instead of per
    /// heartbeat). Same effect as [`ingest`](Self::ingest) on each.
    pub fn ingest_batch<H: Borrow<ServiceHeartbeatEvent>>(&self, batch: &[H], now: Timestamp) {
        let (mut ingested, mut ignored, mut created) = (0u64, 0u64, 0u64);
        // Heartbeats that changed health or the applied mappings version (index, changes),
        // reported after the lock.
        let mut changes: Vec<(usize, IngestChanges)> = Vec::new();
        {
            let mut state = self.health.lock();
            let state = &mut *state;
            for (i, hb) in batch.iter().enumerate() {
                let hb = hb.borrow();
                match state.aggregator.ingest(hb, now) {
                    IngestOutcome::IgnoredControlPlane | IngestOutcome::IgnoredTornDown => {
                        ignored += 1;
                        continue;
                    }
                    IngestOutcome::Recorded(c)
                        if self.events.is_some()
                            && (c.health_changed || c.routing_applied.is_some()) =>
                    {
                        changes.push((i, c));
                    }
                    IngestOutcome::Recorded(_) => {}
                }
                ingested += 1;
                created += state
                    .routing
                    .apply_heartbeat(hb, now, self.service_port)
                    .created
                    .len() as u64;
            }
        }
        if let Some(hub) = &self.events {
            for (i, c) in changes {
                if c.health_changed {
                    hub.health_changed(batch[i].borrow(), c.new_instance);
                }
                if let Some(version) = c.routing_applied {
                    hub.routing_applied(batch[i].borrow(), version);
                }
            }
        }
        if let Some(m) = &self.metrics {
            let nodes = batch.iter().map(Borrow::borrow);
            m.heartbeats_ingested(nodes.filter(|hb| !hb.app_id.is_control_plane()), now);
        }
        if ignored > 0 {
            self.stats.ignored.fetch_add(ignored, Ordering::Relaxed);
        }
        if ingested > 0 {
            self.stats.ingested.fetch_add(ingested, Ordering::Relaxed);
            self.health.notify_changed();
        }
        if created > 0 {
            self.stats
                .routes_created
                .fetch_add(created, Ordering::Relaxed);
            if let Some(b) = &self.broadcaster {
                b.table_changed();
            }
        }
        if let Some(tx) = &self.promotions {
            for hb in batch {
                let hb = hb.borrow();
                if hb.status == InstanceHealthStatus::Healthy
                    && !hb.app_id.is_control_plane()
                    && let Some(pool) = pool_of_worker_app_id(hb.app_id.as_str())
                    && tx.try_send((pool, hb.app_id.clone())).is_err()
                {
                    self.stats
                        .promotions_dropped
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// Subscribes to heartbeats on `bus` and ingests them until `shutdown` turns true (or
    /// its sender is dropped), evicting gone instances every [`EVICT_EVERY`]. Returns an
    /// error only when the subscription cannot be made.
    pub async fn run(
        &self,
        bus: &dyn EventBus,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(), BusError> {
        let mut events = bus
            .subscribe_events::<ServiceHeartbeatEvent>()
            .await?
            .into_shared();
        let mut batch = Vec::with_capacity(BATCH_MAX);
        let mut sweep = tokio::time::interval(EVICT_EVERY);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        sweep.tick().await;
        loop {
            tokio::select! {
                _ = sweep.tick() => {
                    self.evict_stale();
                }
                item = events.next() => {
                    let mut next = Some(item);
                    // The first item waited; take whatever else is already there.
                    while let Some(item) = next.take() {
                        match item {
                            Some(Ok(hb)) => batch.push(hb),
                            Some(Err(e)) => self.note_stream_error(e),
                            None => {
                                self.ingest_batch(&batch, self.clock.now());
                                return Ok(());
                            }
                        }
                        if batch.len() < BATCH_MAX {
                            next = events.next().now_or_never();
                        }
                    }
                    if !batch.is_empty() {
                        self.ingest_batch(&batch, self.clock.now());
                        batch.clear();
                    }
                }
                _ = super::stopped(&mut shutdown) => return Ok(()),
            }
        }
    }

    /// Forgets the instances that are gone now (see [`EVICT_EVERY`]); returns how many.
    pub fn evict_stale(&self) -> usize {
        let now = self.clock.now();
        let gone = self.health.lock().aggregator.evict_stale(now);
        if gone > 0 {
            tracing::debug!(gone, "forgot instances that are gone");
        }
        gone
    }

    /// Counts and logs a non-heartbeat item of the subscription (neither ends it).
    pub fn note_stream_error(&self, error: EventStreamError) {
        if let Some(m) = &self.metrics {
            m.stream_error(&error);
        }
        match error {
            EventStreamError::Malformed(e) => {
                self.stats.malformed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "skipping a malformed heartbeat");
            }
            EventStreamError::Lagged { skipped, .. } => {
                self.stats.lagged.fetch_add(skipped, Ordering::Relaxed);
                tracing::warn!(skipped, "heartbeat subscriber fell behind");
            }
        }
    }
}

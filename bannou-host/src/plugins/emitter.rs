//! The heartbeat emitter: publishes a node's `ServiceHeartbeatEvent`
//! (docs/COMPATIBILITY.md#deployed-node-startup, docs/COMPATIBILITY.md#consumed-events) on
//! `bannou.service-heartbeat`: once when its plugins have started, then every interval
//! (`BANNOU_HEARTBEAT_INTERVAL_SECONDS`, default 30), at once when a plugin's health
//! changes, and a final `shutting_down` beat on stop.
//!
//! A change is noticed through the node's [`HealthSignal`] (placeholders' handles and
//! plugins that notify it) and, for plugins that never notify, by comparing health every
//! [`STATUS_POLL`]. Any beat restarts the interval. Following
//! docs/COMPATIBILITY.md#mappings-consumers, a service the mappings route to another app-id
//! is left out of the beat until routed back.
//!
//! A beat that cannot be published (the bus, i.e. Redis, is unreachable) is not queued: a
//! heartbeat is a snapshot that the next one supersedes. It is counted instead: every beat
//! after one failed reports the running count as `metadata.droppedHeartbeats`, so the
//! orchestrator sees that the node was cut off and for how many beats; and while publishing
//! fails the emitter retries every [`RETRY_AFTER_FAILURE`] instead of waiting a whole
//! interval, so the node is heard from again as soon as the bus is back. The node log gets
//! one line when publishing starts failing and one when it resumes, not one per beat.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use orchestrator_core::AppId;
use orchestrator_core::events::{
    InstanceCapacity, InstanceHealthStatus, ServiceHealthStatus, ServiceHeartbeatEvent,
};
use orchestrator_core::names::{CONTROL_PLANE_APP_ID, same_app_id};
use orchestrator_core::ports::bus::{EventBus, EventBusExt};
use orchestrator_core::time::Clock;
use orchestrator_routing::MeshReader;
use orchestrator_routing::resolver::Resolution;
use tokio::sync::watch;
use uuid::Uuid;

use super::log::NodeLog;
use super::{HealthSignal, Plugin};
use crate::mesh::heartbeat_metadata;

/// How often health is compared for plugins that do not signal changes.
pub const STATUS_POLL: Duration = Duration::from_secs(1);

/// How soon a beat is retried after one could not be published (when the interval is
/// longer).
pub const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(1);

/// The heartbeat metadata key of the count of beats a node could not publish.
pub const DROPPED_HEARTBEATS_KEY: &str = orchestrator_core::health::DROPPED_HEARTBEATS_KEY;

/// In-flight request count and connection limit of a node, reported as heartbeat
/// capacity. Cheap to clone; clones share the count.
#[derive(Debug, Clone, Default)]
pub struct CapacityGauge {
    in_flight: Arc<AtomicI64>,
    max_connections: Option<i64>,
}

impl CapacityGauge {
    /// A gauge at zero with an optional limit (`BANNOU_MAX_CONNECTIONS`).
    pub fn new(max_connections: Option<i64>) -> Self {
        CapacityGauge {
            in_flight: Arc::new(AtomicI64::new(0)),
            max_connections,
        }
    }

    /// Counts one request in until the guard is dropped.
    pub fn enter(&self) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.in_flight.clone())
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> i64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// The heartbeat `capacity` object.
    pub fn capacity(&self) -> InstanceCapacity {
        InstanceCapacity {
            max_connections: self.max_connections,
            current_connections: Some(self.in_flight()),
            cpu_usage: None,
            memory_usage: None,
        }
    }
}

/// One request counted by a [`CapacityGauge`]; dropping it counts the request out.
#[derive(Debug)]
pub struct InFlight(Arc<AtomicI64>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What a beat reports per service: name, status, issues. Two equal snapshots mean no
/// status change.
pub type HealthSnapshot = Vec<(String, ServiceHealthStatus, Vec<String>)>;

/// Publishes one node's heartbeats (see the module docs).
pub struct HeartbeatEmitter {
    app_id: AppId,
    instance_id: Uuid,
    plugins: Vec<(Arc<dyn Plugin>, Uuid)>,
    bus: Arc<dyn EventBus>,
    reader: MeshReader,
    clock: Arc<dyn Clock>,
    interval: Duration,
    signal: HealthSignal,
    capacity: CapacityGauge,
    log: Option<NodeLog>,
    /// Beats that could not be published, since the start.
    dropped: AtomicU64,
    /// Whether the last beat could not be published.
    failing: AtomicBool,
    metrics: Option<crate::metrics::Metrics>,
}

impl std::fmt::Debug for HeartbeatEmitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeartbeatEmitter")
            .field("app_id", &self.app_id)
            .field("instance_id", &self.instance_id)
            .field("plugins", &self.plugins.len())
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

impl HeartbeatEmitter {
    /// Default interval (`BANNOU_HEARTBEAT_INTERVAL_SECONDS` unset).
    pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);

    /// An emitter for instance `instance_id` of node `app_id`, reporting `plugins` (each
    /// with a stable per-plugin id) and the routing version of `reader`. Defaults: the
    /// system clock following tokio time, [`Self::DEFAULT_INTERVAL`], a fresh signal, a
    /// gauge without limit, no node log.
    pub fn new(
        app_id: AppId,
        instance_id: Uuid,
        plugins: Vec<Arc<dyn Plugin>>,
        bus: Arc<dyn EventBus>,
        reader: MeshReader,
    ) -> Self {
        HeartbeatEmitter {
            app_id,
            instance_id,
            plugins: plugins.into_iter().map(|p| (p, Uuid::new_v4())).collect(),
            bus,
            reader,
            clock: Arc::new(crate::clock::TokioClock::system()),
            interval: Self::DEFAULT_INTERVAL,
            signal: HealthSignal::new(),
            capacity: CapacityGauge::default(),
            log: None,
            dropped: AtomicU64::new(0),
            failing: AtomicBool::new(false),
            metrics: None,
        }
    }

    /// Stamps beats with `clock`.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Beats every `interval` (at least 1 ms).
    pub fn with_interval(mut self, interval: Duration) -> Self {
        self.interval = interval.max(Duration::from_millis(1));
        self
    }

    /// Beats at once when `signal` fires and the health changed.
    pub fn with_signal(mut self, signal: HealthSignal) -> Self {
        self.signal = signal;
        self
    }

    /// Reports `capacity` in every beat.
    pub fn with_capacity(mut self, capacity: CapacityGauge) -> Self {
        self.capacity = capacity;
        self
    }

    /// Writes publish failures to `log`.
    pub fn with_log(mut self, log: NodeLog) -> Self {
        self.log = Some(log);
        self
    }

    /// Counts published and failed beats in `metrics`.
    pub fn with_metrics(mut self, metrics: crate::metrics::Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Whether a beat reports `service` now: unless the mappings route it to another
    /// node (docs/COMPATIBILITY.md#mappings-consumers: reported when local, routed here or
    /// to the control plane). A weighted split routes it here when this node is one of
    /// its receiving targets (a canary's new node reports the service it serves, D64
    /// (docs/DECISIONS.md#d64)); no draw, so the beat does not change at random.
    fn reports(&self, service: &str) -> bool {
        self.reader
            .candidates(service)
            .into_iter()
            .any(|target| match target {
                Resolution::Local => true,
                Resolution::App(a) => {
                    self.app_id.matches(&a) || same_app_id(&a, CONTROL_PLANE_APP_ID)
                }
            })
    }

    /// The health of every reported plugin now.
    pub fn snapshot(&self) -> HealthSnapshot {
        self.plugins
            .iter()
            .filter(|(p, _)| self.reports(p.name()))
            .map(|(p, _)| {
                let h = p.health();
                (p.name().to_owned(), h.status, h.issues)
            })
            .collect()
    }

    /// The heartbeat for `snapshot`: instance status = worst service status, degraded
    /// when any service reports issues, `shutting_down` for the final beat; issues as
    /// `service: issue`; capacity; `metadata.routingVersion` once mappings were applied.
    pub fn compose(&self, snapshot: &HealthSnapshot, shutting_down: bool) -> ServiceHeartbeatEvent {
        let mut event = ServiceHeartbeatEvent::new(
            self.instance_id,
            self.app_id.clone(),
            self.clock.now(),
            snapshot
                .iter()
                .map(|(name, status, _)| (name.clone(), *status)),
        );
        for service in &mut event.services {
            if let Some((_, id)) = self
                .plugins
                .iter()
                .find(|(p, _)| p.name() == service.service_name)
            {
                service.service_id = *id;
            }
            service.version = Some(env!("CARGO_PKG_VERSION").to_owned());
        }
        let issues: Vec<String> = snapshot
            .iter()
            .flat_map(|(name, _, issues)| issues.iter().map(move |i| format!("{name}: {i}")))
            .collect();
        if !issues.is_empty() && event.status == InstanceHealthStatus::Healthy {
            event.status = InstanceHealthStatus::Degraded;
        }
        if shutting_down {
            event.status = InstanceHealthStatus::ShuttingDown;
        }
        event.issues = (!issues.is_empty()).then_some(issues);
        event.capacity = Some(self.capacity.capacity());
        event.metadata = heartbeat_metadata(&self.reader);
        let dropped = self.dropped();
        if dropped > 0 {
            let meta = event
                .metadata
                .get_or_insert_with(|| serde_json::Value::Object(Default::default()));
            if let Some(map) = meta.as_object_mut() {
                map.insert(DROPPED_HEARTBEATS_KEY.to_owned(), dropped.into());
            }
        }
        event
    }

    /// How long until the next periodic beat: the interval, shorter while publishing fails.
    fn next_wait(&self) -> Duration {
        match self.failing.load(Ordering::Relaxed) {
            true => self.interval.min(RETRY_AFTER_FAILURE),
            false => self.interval,
        }
    }

    /// Beats that could not be published since the start.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    fn note(&self, message: String) {
        match &self.log {
            Some(log) => log.stderr(message),
            None => tracing::warn!("{message}"),
        }
    }

    /// Publishes one beat now and returns the snapshot it reported. A publish failure is
    /// counted ([`HeartbeatEmitter::dropped`]) and logged when publishing starts failing,
    /// never returned: the next beat retries (see the module docs).
    pub async fn beat(&self, shutting_down: bool) -> HealthSnapshot {
        let snapshot = self.snapshot();
        let event = self.compose(&snapshot, shutting_down);
        let published = self.bus.publish_event(&event).await;
        if let Some(m) = &self.metrics {
            m.heartbeat_sent(published.is_ok());
        }
        match published {
            Err(e) => {
                let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if !self.failing.swap(true, Ordering::Relaxed) {
                    self.note(format!(
                        "heartbeat publish failed: {e}; retrying every {RETRY_AFTER_FAILURE:?}, {dropped} beat(s) dropped so far"
                    ));
                }
            }
            Ok(()) => {
                if self.failing.swap(false, Ordering::Relaxed) {
                    self.note(format!(
                        "heartbeat publishing resumed; {} beat(s) were dropped",
                        self.dropped()
                    ));
                }
            }
        }
        snapshot
    }

    /// Beats every interval and on changes until `shutdown` turns true, then publishes
    /// the final `shutting_down` beat. `last` is what the previous beat reported (the
    /// first beat is sent by the caller with [`HeartbeatEmitter::beat`], so it is out
    /// before the node's start returns).
    pub async fn run(self, mut last: HealthSnapshot, mut shutdown: watch::Receiver<bool>) {
        let mut next = tokio::time::Instant::now() + self.next_wait();
        let mut poll = tokio::time::interval(STATUS_POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        poll.tick().await;
        loop {
            let periodic = tokio::select! {
                _ = tokio::time::sleep_until(next) => true,
                _ = self.signal.changed() => false,
                _ = poll.tick() => false,
                _ = crate::orchestrator::stopped(&mut shutdown) => break,
            };
            if !periodic && self.snapshot() == last {
                continue;
            }
            last = self.beat(false).await;
            next = tokio::time::Instant::now() + self.next_wait();
        }
        self.beat(true).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use futures::StreamExt;
    use orchestrator_core::memory::bus::InMemoryBus;
    use orchestrator_core::ports::bus::{BusError, Payload, Subscription};
    use orchestrator_routing::resolver::MeshResolver;

    /// The in-memory bus, with publishing switched off while `down`.
    struct Flaky {
        inner: InMemoryBus,
        down: AtomicBool,
    }

    #[async_trait]
    impl EventBus for Flaky {
        async fn publish(&self, topic: &str, payload: Payload) -> Result<(), BusError> {
            if self.down.load(Ordering::Relaxed) {
                return Err(BusError::Unavailable {
                    reason: "connection refused".to_owned(),
                    source: None,
                });
            }
            self.inner.publish(topic, payload).await
        }

        async fn subscribe(&self, topic: &str) -> Result<Subscription, BusError> {
            self.inner.subscribe(topic).await
        }
    }

    fn dropped_of(hb: &ServiceHeartbeatEvent) -> Option<u64> {
        hb.metadata.as_ref()?.get(DROPPED_HEARTBEATS_KEY)?.as_u64()
    }

    #[tokio::test(start_paused = true)]
    async fn dropped_beats_are_counted_retried_every_second_and_reported() {
        let bus = Arc::new(Flaky {
            inner: InMemoryBus::new(),
            down: AtomicBool::new(true),
        });
        let mut beats = bus
            .inner
            .subscribe_events::<ServiceHeartbeatEvent>()
            .await
            .unwrap();
        let (_writer, reader) = MeshResolver::new();
        let emitter = HeartbeatEmitter::new(
            AppId::from("cut-off"),
            Uuid::new_v4(),
            Vec::new(),
            bus.clone(),
            reader,
        )
        .with_interval(Duration::from_secs(30));
        let last = emitter.beat(false).await;
        assert_eq!(emitter.dropped(), 1);
        let (stop, rx) = watch::channel(false);
        let task = tokio::spawn(emitter.run(last, rx));

        // Down for 3.5 s: retried every second, not every 30 s.
        tokio::time::sleep(Duration::from_millis(3_500)).await;
        bus.down.store(false, Ordering::Relaxed);
        let first = tokio::time::timeout(Duration::from_secs(2), beats.next())
            .await
            .expect("a beat within a second of the bus coming back")
            .unwrap()
            .unwrap();
        assert_eq!(dropped_of(&first), Some(4), "1 + 3 retries dropped");

        // Back to the interval: nothing for 29 s, then a beat still reporting the count.
        assert!(
            tokio::time::timeout(Duration::from_secs(29), beats.next())
                .await
                .is_err()
        );
        let next = tokio::time::timeout(Duration::from_secs(2), beats.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(dropped_of(&next), Some(4));
        stop.send(true).unwrap();
        task.await.unwrap();
    }

    #[test]
    fn a_node_reports_a_split_service_when_it_receives_a_share_of_it() {
        let (writer, reader) = MeshResolver::new();
        let split = orchestrator_routing::WeightedTargets::new([
            (AppId::from("old"), 90),
            (AppId::from("new"), 10),
        ])
        .unwrap();
        writer.apply(
            &orchestrator_routing::MappingsSnapshot::from_entries(1, None, [("auth", Some("old"))])
                .with_weights([("auth".to_owned(), split)]),
        );
        let bus = Arc::new(InMemoryBus::new());
        let on = |app: &str| {
            HeartbeatEmitter::new(
                AppId::from(app),
                Uuid::new_v4(),
                Vec::new(),
                bus.clone(),
                reader.clone(),
            )
        };
        // Every time, not one beat in ten: the answer is not drawn.
        for _ in 0..50 {
            assert!(on("new").reports("auth"));
            assert!(on("old").reports("auth"));
        }
        assert!(!on("elsewhere").reports("auth"));
        assert!(on("elsewhere").reports("state"));
    }

    #[tokio::test]
    async fn a_node_that_never_failed_reports_no_count() {
        let bus = Arc::new(InMemoryBus::new());
        let mut beats = bus
            .subscribe_events::<ServiceHeartbeatEvent>()
            .await
            .unwrap();
        let (_writer, reader) = MeshResolver::new();
        let emitter =
            HeartbeatEmitter::new(AppId::from("fine"), Uuid::new_v4(), Vec::new(), bus, reader);
        emitter.beat(false).await;
        let hb = beats.next().await.unwrap().unwrap();
        assert_eq!(dropped_of(&hb), None);
        assert_eq!(emitter.dropped(), 0);
    }
}

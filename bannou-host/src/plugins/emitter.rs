//! The heartbeat emitter: publishes a node's `ServiceHeartbeatEvent` (spec 2.4, 9.2) on
//! `bannou.service-heartbeat`: once when its plugins have started, then every interval
//! (`BANNOU_HEARTBEAT_INTERVAL_SECONDS`, default 30), at once when a plugin's health
//! changes, and a final `shutting_down` beat on stop.
//!
//! A change is noticed through the node's [`HealthSignal`] (placeholders' handles and
//! plugins that notify it) and, for plugins that never notify, by comparing health every
//! [`STATUS_POLL`]. Any beat restarts the interval. Following spec 6.5, a service the
//! mappings route to another app-id is left out of the beat until routed back.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use orchestrator_core::AppId;
use orchestrator_core::events::{
    InstanceCapacity, InstanceHealthStatus, ServiceHealthStatus, ServiceHeartbeatEvent,
};
use orchestrator_core::names::CONTROL_PLANE_APP_ID;
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

    /// Whether a beat reports `service` now: unless the mappings route it to another
    /// node (spec 6.5: reported when local, routed here or to the control plane).
    fn reports(&self, service: &str) -> bool {
        match self.reader.resolve(service) {
            Resolution::Local => true,
            Resolution::App(a) => {
                *a == *self.app_id.as_str() || a.eq_ignore_ascii_case(CONTROL_PLANE_APP_ID)
            }
        }
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
        event
    }

    /// Publishes one beat now and returns the snapshot it reported. A publish failure is
    /// logged (node log stderr and `tracing`), never returned: the next beat retries.
    pub async fn beat(&self, shutting_down: bool) -> HealthSnapshot {
        let snapshot = self.snapshot();
        let event = self.compose(&snapshot, shutting_down);
        if let Err(e) = self.bus.publish_event(&event).await {
            let message = format!("heartbeat publish failed: {e}");
            match &self.log {
                Some(log) => log.stderr(message),
                None => tracing::warn!("{message}"),
            }
        }
        snapshot
    }

    /// Beats every interval and on changes until `shutdown` turns true, then publishes
    /// the final `shutting_down` beat. `last` is what the previous beat reported (the
    /// first beat is sent by the caller with [`HeartbeatEmitter::beat`], so it is out
    /// before the node's start returns).
    pub async fn run(self, mut last: HealthSnapshot, mut shutdown: watch::Receiver<bool>) {
        let mut next = tokio::time::Instant::now() + self.interval;
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
            next = tokio::time::Instant::now() + self.interval;
        }
        self.beat(true).await;
    }
}

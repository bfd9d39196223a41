//! Every family: its type, name, help text and buckets, and which registry (control
//! plane or plain node) exports it. Counter names get `_total` from the encoder.

use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Metric, Registry};

use super::PREFIX;

/// Registers families and remembers the sample names each one exports.
pub(super) struct Registrar<'a> {
    registry: &'a mut Registry,
    /// Every sample name registered so far (`_total` on counters; histograms with their
    /// `_bucket`, `_sum` and `_count`).
    pub(super) names: Vec<String>,
}

impl<'a> Registrar<'a> {
    pub(super) fn new(registry: &'a mut Registry) -> Self {
        Registrar {
            registry,
            names: Vec::new(),
        }
    }

    fn add(&mut self, name: &str, help: &str, metric: impl Metric) {
        let full = format!("{PREFIX}_{name}");
        match metric.metric_type() {
            MetricType::Counter => self.names.push(format!("{full}_total")),
            MetricType::Histogram => self.names.extend(
                ["_bucket", "_sum", "_count"]
                    .into_iter()
                    .map(|suffix| format!("{full}{suffix}")),
            ),
            _ => self.names.push(full),
        }
        self.registry.register(name, help, metric);
    }
}

pub(super) type L1 = [(&'static str, String); 1];
pub(super) type L2 = [(&'static str, String); 2];
pub(super) type L3 = [(&'static str, String); 3];
pub(super) type Hist<L> = Family<L, Histogram, fn() -> Histogram>;
pub(super) type FGauge = Gauge<f64, std::sync::atomic::AtomicU64>;

fn latency_histogram() -> Histogram {
    // 0.5 ms .. ~16 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

fn long_histogram() -> Histogram {
    // 50 ms .. ~27 min.
    Histogram::new(exponential_buckets(0.05, 2.0, 16))
}

fn lag_histogram() -> Histogram {
    // 1 ms .. ~16 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// Every family. Registered or not (see [`Metrics::control_plane`](super::Metrics::control_plane) and
/// [`Metrics::node`](super::Metrics::node)),
/// each can be updated; only registered ones are exported.
pub(super) struct Families {
    // deploys
    pub(super) deploys: Family<L1, Counter>,
    pub(super) deploy_duration: Hist<L1>,
    pub(super) wave_duration: Hist<L1>,
    pub(super) wave_in_progress: Gauge,
    // pools
    pub(super) pool_workers: Family<L2, Gauge>,
    pub(super) pool_active_leases: Family<L1, Gauge>,
    pub(super) pool_queue_depth: Family<L1, Gauge>,
    pub(super) pool_acquire_duration: Hist<L2>,
    pub(super) pool_releases: Family<L2, Counter>,
    pub(super) pool_reclaimed: Family<L1, Counter>,
    pub(super) pool_stale_tokens: Family<L2, Counter>,
    pub(super) pool_scale_decisions: Family<L3, Counter>,
    // health
    pub(super) service_instances: Family<L2, Gauge>,
    pub(super) services: Family<L1, Gauge>,
    pub(super) heartbeats_received: Counter,
    pub(super) heartbeat_lag: Histogram,
    pub(super) node_last_heartbeat_age: Family<L1, FGauge>,
    pub(super) service_restarts: Family<L1, Counter>,
    // routing
    pub(super) mappings_version: Gauge,
    pub(super) node_routing_version: Family<L1, Gauge>,
    pub(super) nodes_lagging: Gauge,
    pub(super) routing_ack_timeouts: Counter,
    // control plane
    pub(super) leader: Gauge,
    pub(super) leadership_changes: Counter,
    pub(super) reconcile_sweeps: Family<L1, Counter>,
    pub(super) reconcile_repairs: Family<L1, Counter>,
    pub(super) http_requests: Family<L3, Counter>,
    pub(super) http_duration: Hist<L2>,
    pub(super) store_errors: Counter,
    pub(super) store_reconnects: Counter,
    pub(super) backend_calls: Family<L3, Counter>,
    pub(super) backend_duration: Hist<L2>,
    pub(super) bus_errors: Family<L1, Counter>,
    pub(super) bus_reconnects: Counter,
    // plain nodes
    pub(super) node_heartbeats_sent: Counter,
    pub(super) node_heartbeats_failed: Counter,
    pub(super) node_mappings_version: Gauge,
    pub(super) node_mesh_calls: Family<L1, Counter>,
    // every registry
    pub(super) trace_spans_dropped: Counter,
}

impl Families {
    pub(super) fn new() -> Self {
        Families {
            deploys: Family::default(),
            deploy_duration: Family::new_with_constructor(long_histogram),
            wave_duration: Family::new_with_constructor(long_histogram),
            wave_in_progress: Gauge::default(),
            pool_workers: Family::default(),
            pool_active_leases: Family::default(),
            pool_queue_depth: Family::default(),
            pool_acquire_duration: Family::new_with_constructor(latency_histogram),
            pool_releases: Family::default(),
            pool_reclaimed: Family::default(),
            pool_stale_tokens: Family::default(),
            pool_scale_decisions: Family::default(),
            service_instances: Family::default(),
            services: Family::default(),
            heartbeats_received: Counter::default(),
            heartbeat_lag: lag_histogram(),
            node_last_heartbeat_age: Family::default(),
            service_restarts: Family::default(),
            mappings_version: Gauge::default(),
            node_routing_version: Family::default(),
            nodes_lagging: Gauge::default(),
            routing_ack_timeouts: Counter::default(),
            leader: Gauge::default(),
            leadership_changes: Counter::default(),
            reconcile_sweeps: Family::default(),
            reconcile_repairs: Family::default(),
            http_requests: Family::default(),
            http_duration: Family::new_with_constructor(latency_histogram),
            store_errors: Counter::default(),
            store_reconnects: Counter::default(),
            backend_calls: Family::default(),
            backend_duration: Family::new_with_constructor(latency_histogram),
            bus_errors: Family::default(),
            bus_reconnects: Counter::default(),
            node_heartbeats_sent: Counter::default(),
            node_heartbeats_failed: Counter::default(),
            node_mappings_version: Gauge::default(),
            node_mesh_calls: Family::default(),
            trace_spans_dropped: crate::traces::spans_dropped(),
        }
    }

    /// The control plane's families. Counter names get `_total` from the encoder.
    pub(super) fn register_control_plane(&self, r: &mut Registrar<'_>) {
        r.add(
            "deploys",
            "Deploys ended, by outcome (succeeded, failed, reverted, refused)",
            self.deploys.clone(),
        );
        r.add(
            "deploy_duration_seconds",
            "Duration of deploys that ran (not refused), by backend",
            self.deploy_duration.clone(),
        );
        r.add(
            "deploy_wave_duration_seconds",
            "Duration of each deploy or teardown wave, by backend",
            self.wave_duration.clone(),
        );
        r.add(
            "deploy_wave_in_progress",
            "Index of the wave running now (0: none)",
            self.wave_in_progress.clone(),
        );
        r.add(
            "pool_workers",
            "Pool workers by pool type and state, as of the pool's last acquire or scaler pass",
            self.pool_workers.clone(),
        );
        r.add(
            "pool_active_leases",
            "Leased workers per pool type, as of the pool's last acquire or scaler pass",
            self.pool_active_leases.clone(),
        );
        r.add("pool_queue_depth", "Callers waiting for a worker per pool type, as of the pool's last acquire or scaler pass", self.pool_queue_depth.clone());
        r.add("pool_acquire_duration_seconds", "Time to answer an acquire, by pool type and outcome (granted, exhausted, timeout, cancelled, error)", self.pool_acquire_duration.clone());
        r.add(
            "pool_releases",
            "Leases released, by pool type and job success",
            self.pool_releases.clone(),
        );
        r.add(
            "pool_expired_leases_reclaimed",
            "Expired leases the reaper reclaimed, by pool type",
            self.pool_reclaimed.clone(),
        );
        r.add(
            "pool_stale_fencing_tokens",
            "Renews and releases refused for a stale fencing token, by pool type and operation (renew, release)",
            self.pool_stale_tokens.clone(),
        );
        r.add(
            "pool_scale_decisions",
            "Scaling steps carried out, by pool type, direction (up, down) and reason",
            self.pool_scale_decisions.clone(),
        );
        r.add(
            "service_instances",
            "Live instances of each service, by derived status",
            self.service_instances.clone(),
        );
        r.add(
            "services",
            "Services by their worst derived status over their instances",
            self.services.clone(),
        );
        r.add(
            "heartbeats_received",
            "Heartbeats ingested from nodes (control-plane beats excluded)",
            self.heartbeats_received.clone(),
        );
        r.add(
            "heartbeat_lag_seconds",
            "Time from a heartbeat's timestamp to its ingestion",
            self.heartbeat_lag.clone(),
        );
        r.add(
            "node_last_heartbeat_age_seconds",
            "Seconds since each node's last heartbeat (pool workers excluded)",
            self.node_last_heartbeat_age.clone(),
        );
        r.add(
            "service_restarts",
            "Smart restarts finished, by service",
            self.service_restarts.clone(),
        );
        r.add(
            "routing_mappings_version",
            "Version of the last service mappings published",
            self.mappings_version.clone(),
        );
        r.add(
            "routing_node_applied_version",
            "Mappings version each node last reported applying (pool workers excluded)",
            self.node_routing_version.clone(),
        );
        r.add(
            "routing_nodes_lagging",
            "Nodes whose applied mappings version is behind the published one",
            self.nodes_lagging.clone(),
        );
        r.add(
            "routing_ack_timeouts",
            "Changes that stopped nodes after the routing acknowledgement timeout, with \
             live consumers still behind (D58)",
            self.routing_ack_timeouts.clone(),
        );
        r.add(
            "leader",
            "1 while this replica leads the control plane, else 0",
            self.leader.clone(),
        );
        r.add(
            "leadership_changes",
            "Times this replica gained or lost the leadership",
            self.leadership_changes.clone(),
        );
        r.add(
            "reconcile_sweeps",
            "Reconciliation sweeps, by outcome (quiet, repaired, skipped, failed)",
            self.reconcile_sweeps.clone(),
        );
        r.add("reconcile_repairs", "What reconciliation repaired, by kind (interrupted_deploy, redeployed, worker_restarted, removed)", self.reconcile_repairs.clone());
        r.add(
            "http_requests",
            "API requests answered, by route, method and status",
            self.http_requests.clone(),
        );
        r.add(
            "http_request_duration_seconds",
            "API request latency, by route and method",
            self.http_duration.clone(),
        );
        r.add(
            "store_errors",
            "State store pings that failed",
            self.store_errors.clone(),
        );
        r.add(
            "store_reconnects",
            "State store pings that succeeded after one or more failed (the store came back)",
            self.store_reconnects.clone(),
        );
        r.add(
            "backend_calls",
            "Container backend calls, by backend, operation and outcome (ok, error)",
            self.backend_calls.clone(),
        );
        r.add(
            "backend_call_duration_seconds",
            "Container backend call latency, by backend and operation",
            self.backend_duration.clone(),
        );
        r.add(
            "bus_errors",
            "Event bus subscription problems, by kind (malformed, lagged, subscribe)",
            self.bus_errors.clone(),
        );
        r.add(
            "bus_reconnects",
            "Bus subscriptions that got their connection back after losing it",
            self.bus_reconnects.clone(),
        );
    }

    /// The families of every registry: the process's own (one value per process).
    pub(super) fn register_process(&self, r: &mut Registrar<'_>) {
        r.add(
            "trace_spans_dropped",
            "Trace spans dropped because their OTLP export failed or the batch queue was full (0 with traces off)",
            self.trace_spans_dropped.clone(),
        );
    }

    /// A plain node's families.
    pub(super) fn register_node(&self, r: &mut Registrar<'_>) {
        r.add(
            "node_heartbeats_sent",
            "Heartbeats this node published",
            self.node_heartbeats_sent.clone(),
        );
        r.add(
            "node_heartbeats_failed",
            "Heartbeats this node could not publish",
            self.node_heartbeats_failed.clone(),
        );
        r.add(
            "node_mappings_version",
            "Mappings version this node applied last (0: none yet)",
            self.node_mappings_version.clone(),
        );
        r.add(
            "node_mesh_calls",
            "Service calls through the mesh, by outcome (ok, unroutable, failed)",
            self.node_mesh_calls.clone(),
        );
    }
}

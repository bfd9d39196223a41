//! Prometheus metrics: every family the host exports, one registry per control plane or
//! node, served as `GET /metrics` in the Prometheus text exposition format (version
//! 0.0.4, written by `prometheus-client`; nothing here formats samples by hand).
//!
//! [`Metrics`] is a cheap clonable handle. The places where things happen call one method
//! each (a deploy ends, a wave starts, an acquire is answered, a heartbeat batch is
//! ingested, an HTTP request is answered, ...); gauges that describe state (instances and
//! services by status, seconds since each node's last beat, routing lag, leadership) are
//! computed at scrape time from in-memory state the control plane already holds, never by
//! reading the store. Names carry the `bannou_orchestrator_` prefix, base units, `_total`
//! on counters and `_seconds` on duration histograms. Label values are bounded by the
//! deployment: pool types, service names, node app-ids (pool workers excluded: their
//! app-ids churn), backends, routes as declared (never the raw path), outcomes from fixed
//! sets; never a lease id or an instance GUID.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Duration;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use orchestrator_core::time::Clock;
use orchestrator_routing::MeshReader;
use prometheus_client::encoding::prometheus_text;
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::orchestrator::heartbeats::SharedHealth;
use crate::orchestrator::leader::LeaderState;

mod backend;
mod families;
mod follow;
mod hooks;
mod series;
#[cfg(test)]
mod tests;

pub use backend::InstrumentedBackend;
use families::{Families, Registrar};
pub use hooks::{
    AcquireOutcome, DeployOutcome, STALE_TOKEN_OPERATIONS, WaveTimer, scale_reason_label,
};
use hooks::{l, status_label};

/// The path every node serves its metrics on.
pub const PATH: &str = "/metrics";

/// Prefix of every family name.
pub const PREFIX: &str = "bannou_orchestrator";

/// A node app-id whose last beat is older than this is dropped from the per-node gauges
/// (it was torn down).
pub const NODE_FORGET_AFTER: Duration = Duration::from_secs(15 * 60);

/// How many granted acquires per pool [`Metrics::recent_acquire_ms`] looks back over.
pub const RECENT_ACQUIRES: usize = 256;

/// What a node reported last (for the per-node gauges).
struct NodeSeen {
    pub(super) at: Instant,
    pub(super) routing_version: Option<i64>,
}

/// Where scrape-time gauges come from.
struct HealthSource {
    health: SharedHealth,
    clock: Arc<dyn Clock>,
}

#[derive(Default)]
struct ScrapeState {
    health: Option<HealthSource>,
    leader: Option<watch::Receiver<LeaderState>>,
    mesh: Option<MeshReader>,
}

struct Inner {
    registry: Registry,
    families: Families,
    /// What [`Metrics::sample_names`] answers.
    sample_names: Vec<String>,
    /// Per node app-id: last beat (bounded by the deployment; forgotten after
    /// [`NODE_FORGET_AFTER`]).
    nodes: Mutex<HashMap<String, NodeSeen>>,
    /// Per pool type seen configured, its series (acquire labels of unknown pools
    /// collapse to `unconfigured`).
    pools: RwLock<HashMap<String, Arc<series::PoolSeries>>>,
    /// Per declared route, its request series.
    routes: RwLock<HashMap<String, Arc<series::RouteSeries>>>,
    /// Held for the whole scrape: refresh then encode.
    scrape: Mutex<ScrapeState>,
}

/// A cheap clonable handle to one registry and its families.
#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    /// [`Metrics::control_plane`].
    fn default() -> Self {
        Self::control_plane()
    }
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Metrics {
    fn build(register: impl FnOnce(&Families, &mut Registrar<'_>)) -> Self {
        let families = Families::new();
        let mut registry = Registry::with_prefix(PREFIX);
        let mut registrar = Registrar::new(&mut registry);
        register(&families, &mut registrar);
        families.register_process(&mut registrar);
        let mut sample_names = registrar.names;
        sample_names.sort();
        Metrics(Arc::new(Inner {
            registry,
            families,
            sample_names,
            nodes: Mutex::default(),
            pools: RwLock::default(),
            routes: RwLock::default(),
            scrape: Mutex::default(),
        }))
    }

    /// The control plane's registry (every control-plane family).
    pub fn control_plane() -> Self {
        let m = Self::build(Families::register_control_plane);
        m.init_known_series();
        m
    }

    /// The registry of a node hosting the control plane: the control plane's families
    /// and the node's own.
    pub fn control_plane_node() -> Self {
        let m = Self::build(|f, r| {
            f.register_control_plane(r);
            f.register_node(r);
        });
        m.init_known_series();
        m
    }

    /// A plain node's registry (heartbeats sent, mappings applied, mesh calls).
    pub fn node() -> Self {
        let m = Self::build(Families::register_node);
        m.init_known_series();
        m
    }

    /// Every sample name this registry can export, sorted (a family with labels shows in
    /// a scrape only once it has a series; this lists it anyway).
    pub fn sample_names(&self) -> &[String] {
        &self.0.sample_names
    }

    /// Scrape-time health gauges read `health` (instances and services by status).
    pub fn observe_health(&self, health: SharedHealth, clock: Arc<dyn Clock>) {
        lock(&self.0.scrape).health = Some(HealthSource { health, clock });
    }

    /// The `leader` gauge follows `leader`; [`Metrics::follow_leadership`] counts changes.
    pub fn observe_leadership(&self, leader: watch::Receiver<LeaderState>) {
        lock(&self.0.scrape).leader = Some(leader);
    }

    /// The `node_mappings_version` gauge follows what `reader` applied.
    pub fn observe_mesh(&self, reader: MeshReader) {
        lock(&self.0.scrape).mesh = Some(reader);
    }
}

impl Metrics {
    /// Routing lag from the state the `routing_*` gauges are computed from at scrape time:
    /// the current mappings version (`None` until this replica saw one published) and, per
    /// node that reported one in its heartbeats, the version it applied, by app-id.
    pub fn routing_lag(&self) -> (Option<i64>, Vec<(String, i64)>) {
        let current = self.0.families.mappings_version.get();
        let nodes = lock(&self.0.nodes);
        let mut applied: Vec<(String, i64)> = nodes
            .iter()
            .filter(|(_, seen)| seen.at.elapsed() < NODE_FORGET_AFTER)
            .filter_map(|(app, seen)| Some((app.clone(), seen.routing_version?)))
            .collect();
        applied.sort();
        ((current > 0).then_some(current), applied)
    }

    /// The median and 99th percentile (nearest rank, ms) of the last [`RECENT_ACQUIRES`]
    /// acquires of `pool` this replica granted; `None` before the first.
    pub fn recent_acquire_ms(&self, pool: &str) -> Option<(f64, f64)> {
        let series = self.pool_series(pool)?;
        let mut ms: Vec<f64> = lock(&series.recent).iter().copied().collect();
        if ms.is_empty() {
            return None;
        }
        ms.sort_by(f64::total_cmp);
        let rank = |q: f64| {
            let i = (q * ms.len() as f64).ceil() as usize;
            ms[i.clamp(1, ms.len()) - 1]
        };
        Some((rank(0.5), rank(0.99)))
    }

    // === scrape ===

    /// The exposition: scrape-time gauges refreshed, then every registered family.
    pub fn encode(&self) -> String {
        let scrape = lock(&self.0.scrape);
        self.refresh(&scrape);
        let mut out = String::with_capacity(16 * 1024);
        if let Err(e) = prometheus_text::encode(&mut out, &self.0.registry) {
            // Writing to a String cannot fail; keep what was written and say so.
            let _ = writeln!(out, "# encoding failed: {e}");
        }
        out
    }

    fn refresh(&self, scrape: &ScrapeState) {
        let f = &self.0.families;
        if let Some(reader) = &scrape.mesh {
            f.node_mappings_version
                .set(reader.applied_version().unwrap_or(0));
        }
        if let Some(leader) = &scrape.leader {
            f.leader.set(i64::from(leader.borrow().is_leader()));
        }
        // Per node: age of the last beat, applied routing version, lag.
        let current = f.mappings_version.get();
        f.node_last_heartbeat_age.clear();
        f.node_routing_version.clear();
        let mut lagging = 0;
        {
            let mut nodes = lock(&self.0.nodes);
            nodes.retain(|_, seen| seen.at.elapsed() < NODE_FORGET_AFTER);
            for (app, seen) in nodes.iter() {
                f.node_last_heartbeat_age
                    .get_or_create(&[("node", app.clone())])
                    .set(seen.at.elapsed().as_secs_f64());
                if let Some(v) = seen.routing_version {
                    f.node_routing_version
                        .get_or_create(&[("node", app.clone())])
                        .set(v);
                    if v < current {
                        lagging += 1;
                    }
                }
            }
        }
        f.nodes_lagging.set(lagging);
        // Services and their instances by derived status.
        if let Some(src) = &scrape.health {
            f.service_instances.clear();
            f.services.clear();
            let now = src.clock.now();
            let state = src.health.lock();
            let agg = &state.aggregator;
            let timeout = agg.config().heartbeat_timeout;
            let mut by_status: HashMap<&'static str, i64> = HashMap::new();
            for name in agg.service_names() {
                for si in agg.instances_of(name) {
                    if agg.is_retired(si.instance_id, now) {
                        continue;
                    }
                    let status = status_label(si.status_at(now, timeout));
                    f.service_instances
                        .get_or_create(&[("service", l(name)), ("status", l(status))])
                        .inc();
                }
                if let Some(s) = agg.service_status(name, now) {
                    *by_status.entry(status_label(s)).or_default() += 1;
                }
            }
            for s in [
                "healthy",
                "degraded",
                "overloaded",
                "shutting_down",
                "unavailable",
            ] {
                f.services
                    .get_or_create(&[("status", l(s))])
                    .set(by_status.get(s).copied().unwrap_or(0));
            }
        }
    }
}

/// `GET /metrics`: the registry of the handler's state.
pub async fn serve(State(metrics): State<Metrics>) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, prometheus_text::CONTENT_TYPE)],
        metrics.encode(),
    )
        .into_response()
}

/// The standard methods by name; any other (an extension method a client made up) as
/// `other`, so the label stays bounded.
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::HEAD,
        Method::OPTIONS,
        Method::PATCH,
    ]
    .iter()
    .zip(["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"])
    .find_map(|(m, name)| (m == method).then_some(name))
    .unwrap_or("other")
}

/// Middleware counting every request by its declared route, method and status, with its
/// latency (`Router::layer`, so the matched route is known).
pub async fn track_http(State(metrics): State<Metrics>, request: Request, next: Next) -> Response {
    // The matched path is shared (an `Arc`), not copied.
    let route = request.extensions().get::<MatchedPath>().cloned();
    let method = method_label(request.method());
    let begun = Instant::now();
    let response = next.run(request).await;
    metrics.http_request(
        route.as_ref().map_or("unmatched", MatchedPath::as_str),
        method,
        response.status().as_u16(),
        begun.elapsed(),
    );
    response
}

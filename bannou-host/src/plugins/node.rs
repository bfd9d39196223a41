//! The plugin host: one Bannou node. From its environment it decides which catalog
//! services it runs (docs/COMPATIBILITY.md#enablement-rule), creates a placeholder for each
//! (the orchestrator comes from the caller as an extra plugin), starts them in layer order
//! (docs/COMPATIBILITY.md#layer-rules), serves their routes over HTTP, follows the routing
//! broadcasts and publishes heartbeats.
//!
//! `GET /{service}/ping` for a service the node does not host is forwarded through the
//! mesh ([`MeshClient`]) once; the hop header stops a second forward. [`Node::stop`] is
//! graceful: final `shutting_down` heartbeat, plugins stopped in reverse order, server
//! shut down, every task joined.
//!
//! Kept as one file: the node's start, serving and stop share its task accounting and its
//! shutdown switch.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Request};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use orchestrator_core::events::FullServiceMappingsEvent;
use orchestrator_core::layer::Layer;
use orchestrator_core::names::CONTROL_PLANE_APP_ID;
use orchestrator_core::ports::bus::{BusError, EventBus, EventBusExt};
use orchestrator_core::resolver::enabled_services;
use orchestrator_core::time::Clock;
use orchestrator_core::{AppId, Catalog};
use orchestrator_routing::MeshReader;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::emitter::{CapacityGauge, HeartbeatEmitter};
use super::log::NodeLog;
use super::placeholder::{FaultError, HealthHandle, PlaceholderPlugin, fault_from_environment};
use super::{HealthSignal, Plugin, PluginContext, PluginError};
use crate::mesh::{
    EndpointDirectory, HOP_HEADER, MappingsAck, MeshClient, MeshError, MeshResolver,
    follow_subscription,
};

// === configuration ===

/// `BANNOU_HEARTBEAT_INTERVAL_SECONDS`: seconds between heartbeats (default 30).
pub const HEARTBEAT_INTERVAL_VAR: &str = "BANNOU_HEARTBEAT_INTERVAL_SECONDS";
/// `BANNOU_HEARTBEAT_ENABLED`: `false` turns heartbeats off (default true).
pub const HEARTBEAT_ENABLED_VAR: &str = "BANNOU_HEARTBEAT_ENABLED";
/// `BANNOU_MAX_CONNECTIONS`: the connection limit reported as heartbeat capacity (unset:
/// none reported).
pub const MAX_CONNECTIONS_VAR: &str = "BANNOU_MAX_CONNECTIONS";
/// How long [`Node::stop`] waits for a graceful stop before aborting what is left.
pub const DEFAULT_STOP_GRACE: Duration = Duration::from_secs(10);

/// What a node is told at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeConfig {
    /// The node's app-id (`BANNOU_APP_ID`, default `bannou`).
    pub app_id: AppId,
    /// The node's whole environment: enablement (docs/COMPATIBILITY.md#enablement-rule),
    /// fault knobs, heartbeat settings. Passed explicitly, never read from the process.
    pub environment: BTreeMap<String, String>,
    /// Time between heartbeats; `None` turns heartbeats off.
    pub heartbeat_interval: Option<Duration>,
    /// Connection limit reported in heartbeats.
    pub max_connections: Option<i64>,
    /// Where to listen (default `127.0.0.1:0`: loopback, a free port).
    pub listen: SocketAddr,
}

impl NodeConfig {
    /// The configuration `environment` describes: app-id from `BANNOU_APP_ID`, heartbeat
    /// from `BANNOU_HEARTBEAT_ENABLED` / `BANNOU_HEARTBEAT_INTERVAL_SECONDS`, limit from
    /// `BANNOU_MAX_CONNECTIONS`; listening on `127.0.0.1:0`.
    pub fn from_environment(environment: BTreeMap<String, String>) -> Result<Self, NodeError> {
        let get = |k: &str| {
            environment
                .get(k)
                .map(|v| v.trim())
                .filter(|v| !v.is_empty())
        };
        let invalid = |variable: &str, value: &str, reason: &str| NodeError::Config {
            variable: variable.to_owned(),
            value: value.to_owned(),
            reason: reason.to_owned(),
        };
        let app_id =
            AppId::new(get(orchestrator_core::resolver::APP_ID).unwrap_or(CONTROL_PLANE_APP_ID));
        let enabled = match get(HEARTBEAT_ENABLED_VAR) {
            None => true,
            Some(v) if v.eq_ignore_ascii_case("true") => true,
            Some(v) if v.eq_ignore_ascii_case("false") => false,
            Some(v) => return Err(invalid(HEARTBEAT_ENABLED_VAR, v, "want true or false")),
        };
        let interval = match get(HEARTBEAT_INTERVAL_VAR) {
            None => HeartbeatEmitter::DEFAULT_INTERVAL,
            Some(v) => match v.parse::<u64>() {
                Ok(s) if s > 0 => Duration::from_secs(s),
                _ => {
                    return Err(invalid(
                        HEARTBEAT_INTERVAL_VAR,
                        v,
                        "want a whole number of seconds above 0",
                    ));
                }
            },
        };
        let max_connections = match get(MAX_CONNECTIONS_VAR) {
            None => None,
            Some(v) => Some(v.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
                invalid(MAX_CONNECTIONS_VAR, v, "want a non-negative whole number")
            })?),
        };
        Ok(NodeConfig {
            app_id,
            heartbeat_interval: enabled.then_some(interval),
            max_connections,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            environment,
        })
    }

    /// Listens on `listen` instead.
    pub fn with_listen(mut self, listen: SocketAddr) -> Self {
        self.listen = listen;
        self
    }
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// A variable of the node's environment has a value the node cannot use.
    #[error("{variable}={value:?}: {reason}")]
    Config {
        /// The variable.
        variable: String,
        /// Its value.
        value: String,
        /// What is expected.
        reason: String,
    },
    /// A fault variable is malformed.
    #[error(transparent)]
    Fault(#[from] FaultError),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A plugin failed to start (the plugins started before it were stopped again).
    #[error(transparent)]
    Plugin(#[from] PluginError),
    /// The mappings subscription could not be made.
    #[error("cannot follow routing broadcasts: {0}")]
    Bus(#[from] BusError),
    /// The mesh client could not be built.
    #[error(transparent)]
    Mesh(#[from] MeshError),
}

// === task accounting ===

/// Counts the background tasks of nodes that share it (server, mesh follower, heartbeat
/// emitter), so a test or the in-process backend can check that a stopped node left
/// none behind. A task is counted out when it ends or is aborted. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct TaskCounter(Arc<AtomicUsize>);

struct CountedOut(Arc<AtomicUsize>);

impl Drop for CountedOut {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl TaskCounter {
    /// A counter at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Tasks running now.
    pub fn running(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }

    fn spawn<F>(&self, fut: F) -> JoinHandle<()>
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.0.fetch_add(1, Ordering::SeqCst);
        let guard = CountedOut(self.0.clone());
        tokio::spawn(async move {
            let _guard = guard;
            fut.await;
        })
    }
}

// === start order ===

/// Start order inside L0 (docs/COMPATIBILITY.md#layer-rules); other layers start alphabetically.
const INFRASTRUCTURE_ORDER: [&str; 4] = ["telemetry", "state", "messaging", "mesh"];

/// The key plugins start by: layer, then (L0) telemetry, state, messaging, mesh, then name.
pub fn start_order_key(name: &str, layer: Layer) -> (Layer, usize, String) {
    let rank = if layer == Layer::Infrastructure {
        INFRASTRUCTURE_ORDER
            .iter()
            .position(|n| *n == name)
            .unwrap_or(INFRASTRUCTURE_ORDER.len())
    } else {
        0
    };
    (layer, rank, name.to_owned())
}

// === builder ===

/// Starts a [`Node`]: the configuration, the bus and endpoint directory it shares with
/// the host, plus optional extras.
pub struct NodeBuilder {
    config: NodeConfig,
    bus: Arc<dyn EventBus>,
    directory: Arc<dyn EndpointDirectory>,
    clock: Arc<dyn Clock>,
    extra_plugins: Vec<Arc<dyn Plugin>>,
    extra_routes: Option<axum::Router>,
    log: Option<NodeLog>,
    tasks: TaskCounter,
    catalog: &'static Catalog,
}

impl NodeBuilder {
    /// Uses `clock` for heartbeats and log lines (default: system time following tokio's
    /// clock).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Hosts `plugin` too, whatever the environment says; it replaces the placeholder of
    /// the same name (the control plane passes its orchestrator plugin this way).
    pub fn plugin(mut self, plugin: Arc<dyn Plugin>) -> Self {
        self.extra_plugins.retain(|p| p.name() != plugin.name());
        self.extra_plugins.push(plugin);
        self
    }

    /// Serves `routes` as well (merged with the plugins' routes; paths must not clash).
    pub fn routes(mut self, routes: axum::Router) -> Self {
        self.extra_routes = Some(match self.extra_routes.take() {
            Some(r) => r.merge(routes),
            None => routes,
        });
        self
    }

    /// Writes the node's log lines to `log` (e.g. one shared by every replica of an
    /// app-id) instead of a fresh one.
    pub fn log(mut self, log: NodeLog) -> Self {
        self.log = Some(log);
        self
    }

    /// Counts the node's tasks in `tasks`.
    pub fn tasks(mut self, tasks: TaskCounter) -> Self {
        self.tasks = tasks;
        self
    }

    /// Uses `catalog` instead of the built-in one.
    pub fn catalog(mut self, catalog: &'static Catalog) -> Self {
        self.catalog = catalog;
        self
    }

    /// Starts the node; see [`Node`].
    pub async fn start(self) -> Result<Node, NodeError> {
        Node::start_from(self).await
    }
}

// === the node ===

/// A running Bannou node (see the module docs). Dropping it without [`Node::stop`] aborts
/// its tasks (no final heartbeat).
pub struct Node {
    app_id: AppId,
    instance_id: Uuid,
    addr: SocketAddr,
    enabled: Vec<String>,
    plugins: Vec<Arc<dyn Plugin>>,
    placeholders: BTreeMap<String, HealthHandle>,
    reader: MeshReader,
    mesh: MeshClient,
    log: NodeLog,
    signal: HealthSignal,
    capacity: CapacityGauge,
    tasks: TaskCounter,
    stop_emitter: watch::Sender<bool>,
    stop_server: watch::Sender<bool>,
    emitter: Option<JoinHandle<()>>,
    server: Option<JoinHandle<()>>,
    follower: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("app_id", &self.app_id)
            .field("instance_id", &self.instance_id)
            .field("addr", &self.addr)
            .field("plugins", &self.hosted_services())
            .finish_non_exhaustive()
    }
}

impl Node {
    /// A builder for a node with `config`, sharing `bus` and `directory` with the host.
    pub fn builder(
        config: NodeConfig,
        bus: Arc<dyn EventBus>,
        directory: Arc<dyn EndpointDirectory>,
    ) -> NodeBuilder {
        NodeBuilder {
            config,
            bus,
            directory,
            clock: Arc::new(crate::clock::TokioClock::system()),
            extra_plugins: Vec::new(),
            extra_routes: None,
            log: None,
            tasks: TaskCounter::new(),
            catalog: Catalog::builtin(),
        }
    }

    async fn start_from(b: NodeBuilder) -> Result<Node, NodeError> {
        let NodeBuilder {
            config,
            bus,
            directory,
            clock,
            extra_plugins,
            extra_routes,
            log,
            tasks,
            catalog,
        } = b;
        let app_id = config.app_id.clone();
        let instance_id = Uuid::new_v4();
        let log = log.unwrap_or_else(|| NodeLog::new(clock.clone()));
        let signal = HealthSignal::new();

        // Enablement (docs/COMPATIBILITY.md#enablement-rule) and the plugins: placeholders
        // for every enabled service but the orchestrator, extras replacing placeholders of
        // the same name.
        let enabled = enabled_services(&config.environment, catalog);
        let mut placeholders = BTreeMap::new();
        let mut plugins: Vec<Arc<dyn Plugin>> = Vec::new();
        for name in &enabled {
            if name == "orchestrator" || extra_plugins.iter().any(|p| p.name() == name) {
                continue;
            }
            let Some(def) = catalog.find(name) else {
                continue;
            };
            let health = HealthHandle::new(
                fault_from_environment(name, &config.environment)?,
                signal.clone(),
            );
            placeholders.insert(name.clone(), health.clone());
            plugins.push(Arc::new(PlaceholderPlugin::new(
                def,
                app_id.clone(),
                instance_id,
                health,
                log.clone(),
            )));
        }
        plugins.extend(extra_plugins);
        plugins.sort_by_key(|p| start_order_key(p.name(), p.layer()));

        // Routing: subscribe before anything else so no broadcast is missed.
        let (writer, reader) = MeshResolver::new();
        let mappings = bus.subscribe_events::<FullServiceMappingsEvent>().await?;
        // A node hosting the orchestrator serves one registry with both sets of families.
        let hosts_orchestrator = plugins
            .iter()
            .any(|p| p.name() == crate::host::OrchestratorPlugin::NAME);
        let metrics = if hosts_orchestrator {
            crate::metrics::Metrics::control_plane_node()
        } else {
            crate::metrics::Metrics::node()
        };
        metrics.observe_mesh(reader.clone());
        let mesh = MeshClient::new(app_id.clone(), reader.clone(), directory)?
            .with_metrics(metrics.clone());
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| NodeError::Bind {
                addr: config.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| NodeError::Bind {
            addr: config.listen,
            source,
        })?;

        // Plugins, in layer order; on a failure, stop those already started.
        let ctx = PluginContext {
            app_id: app_id.clone(),
            environment: config.environment.clone(),
            bus: bus.clone(),
            health_changed: signal.clone(),
            metrics: metrics.clone(),
        };
        for (i, plugin) in plugins.iter().enumerate() {
            if let Err(e) = plugin.start(&ctx).await {
                log.stderr(format!("{e}"));
                for started in plugins[..i].iter().rev() {
                    started.stop().await;
                }
                return Err(e.into());
            }
        }
        let names: Vec<&str> = plugins.iter().map(|p| p.name()).collect();
        log.stdout(format!(
            "node {app_id} (instance {instance_id}) started plugins {}",
            names.join(", ")
        ));

        // Tasks: mesh follower, HTTP server.
        let (stop_emitter, emitter_rx) = watch::channel(false);
        let (stop_server, server_rx) = watch::channel(false);
        let ack = MappingsAck::new(bus.clone(), app_id.clone(), instance_id, clock.clone());
        let follower = tasks.spawn(follow_subscription(
            mappings,
            writer,
            Some(ack),
            server_rx.clone(),
        ));
        let capacity = CapacityGauge::new(config.max_connections);
        let router = build_router(&plugins, extra_routes, &mesh, &log, &capacity, &metrics);
        let server = {
            let mut rx = server_rx;
            let log = log.clone();
            tasks.spawn(async move {
                let shutdown = async move { crate::orchestrator::stopped(&mut rx).await };
                if let Err(e) = axum::serve(crate::listener::no_delay(listener), router)
                    .with_graceful_shutdown(shutdown)
                    .await
                {
                    log.stderr(format!("http server failed: {e}"));
                }
            })
        };
        log.stdout(format!("listening on http://{addr}"));

        // Heartbeats: the first one now, then the loop.
        let emitter = match config.heartbeat_interval {
            Some(interval) => {
                let emitter = HeartbeatEmitter::new(
                    app_id.clone(),
                    instance_id,
                    plugins.clone(),
                    bus,
                    reader.clone(),
                )
                .with_clock(clock)
                .with_interval(interval)
                .with_signal(signal.clone())
                .with_capacity(capacity.clone())
                .with_log(log.clone())
                .with_metrics(metrics.clone());
                let first = emitter.beat(false).await;
                Some(tasks.spawn(emitter.run(first, emitter_rx)))
            }
            None => {
                log.stdout(format!(
                    "heartbeats disabled ({HEARTBEAT_ENABLED_VAR}=false)"
                ));
                None
            }
        };

        Ok(Node {
            app_id,
            instance_id,
            addr,
            enabled,
            plugins,
            placeholders,
            reader,
            mesh,
            log,
            signal,
            capacity,
            tasks,
            stop_emitter,
            stop_server,
            emitter,
            server: Some(server),
            follower: Some(follower),
        })
    }

    /// The node's app-id.
    pub fn app_id(&self) -> &AppId {
        &self.app_id
    }

    /// This run's instance GUID (the heartbeat `serviceId`); new on every start.
    pub fn instance_id(&self) -> Uuid {
        self.instance_id
    }

    /// The address the HTTP server is bound to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://{addr}`: what to register in an endpoint directory.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The catalog services the environment enables
    /// (docs/COMPATIBILITY.md#enablement-rule), sorted.
    pub fn enabled_services(&self) -> &[String] {
        &self.enabled
    }

    /// The services this node hosts, in start order (enabled placeholders and extras).
    pub fn hosted_services(&self) -> Vec<String> {
        self.plugins.iter().map(|p| p.name().to_owned()).collect()
    }

    /// The mappings version the node applied, `None` before the first broadcast.
    pub fn routing_version(&self) -> Option<i64> {
        self.reader.applied_version()
    }

    /// The node's resolver (read side).
    pub fn mesh_reader(&self) -> &MeshReader {
        &self.reader
    }

    /// The node's mesh client (calls services wherever they are routed).
    pub fn mesh(&self) -> &MeshClient {
        &self.mesh
    }

    /// The node's log.
    pub fn log(&self) -> &NodeLog {
        &self.log
    }

    /// The signal that makes the heartbeat emitter check health at once.
    pub fn health_signal(&self) -> &HealthSignal {
        &self.signal
    }

    /// The health handle of a placeholder plugin, `None` for other plugins.
    pub fn health_handle(&self, service: &str) -> Option<HealthHandle> {
        self.placeholders.get(service).cloned()
    }

    /// Requests being served now.
    pub fn in_flight(&self) -> i64 {
        self.capacity.in_flight()
    }

    /// Background tasks of this node (and of nodes sharing its counter) still running.
    pub fn running_tasks(&self) -> usize {
        self.tasks.running()
    }

    /// Stops gracefully within [`DEFAULT_STOP_GRACE`]; see [`Node::stop_within`].
    pub async fn stop(self) {
        self.stop_within(DEFAULT_STOP_GRACE).await;
    }

    /// Stops the node: final `shutting_down` heartbeat, plugins stopped in reverse start
    /// order, HTTP server shut down (in-flight requests finish), mesh follower ended,
    /// every task joined. Whatever is still running after `grace` is aborted; a zero
    /// grace kills at once (no final heartbeat, plugins not stopped).
    pub async fn stop_within(mut self, grace: Duration) {
        let log = self.log.clone();
        if grace.is_zero() {
            self.abort_and_join().await;
            log.stdout(format!("node {} killed", self.app_id));
            return;
        }
        let graceful = async {
            let _ = self.stop_emitter.send(true);
            if let Some(h) = self.emitter.as_mut() {
                let _ = h.await;
            }
            self.emitter = None;
            for plugin in self.plugins.iter().rev() {
                plugin.stop().await;
            }
            let _ = self.stop_server.send(true);
            if let Some(h) = self.server.as_mut() {
                let _ = h.await;
            }
            self.server = None;
            if let Some(h) = self.follower.as_mut() {
                let _ = h.await;
            }
            self.follower = None;
        };
        if tokio::time::timeout(grace, graceful).await.is_err() {
            log.stderr(format!(
                "node {} did not stop within {grace:?}; aborting what is left",
                self.app_id
            ));
        }
        self.abort_and_join().await;
        log.stdout(format!("node {} stopped", self.app_id));
    }

    /// Aborts every task still running and waits until each has ended (an aborted task
    /// ends at its next poll, so this is quick).
    async fn abort_and_join(&mut self) {
        let handles = self.abort_all();
        for h in handles {
            let _ = h.await;
        }
    }

    fn abort_all(&mut self) -> Vec<JoinHandle<()>> {
        let handles: Vec<JoinHandle<()>> = [
            self.emitter.take(),
            self.server.take(),
            self.follower.take(),
        ]
        .into_iter()
        .flatten()
        .collect();
        for h in &handles {
            h.abort();
        }
        handles
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.abort_all();
    }
}

// === HTTP ===

fn build_router(
    plugins: &[Arc<dyn Plugin>],
    extra_routes: Option<axum::Router>,
    mesh: &MeshClient,
    log: &NodeLog,
    capacity: &CapacityGauge,
    metrics: &crate::metrics::Metrics,
) -> axum::Router {
    let mut router = axum::Router::new();
    for plugin in plugins {
        router = router.merge(plugin.routes());
    }
    // The control plane serves its own registry (behind the API token) at the same path.
    if !plugins
        .iter()
        .any(|p| p.name() == crate::host::OrchestratorPlugin::NAME)
    {
        router = router.route(
            crate::metrics::PATH,
            get(crate::metrics::serve).with_state(metrics.clone()),
        );
    }
    if let Some(extra) = extra_routes {
        router = router.merge(extra);
    }
    let forward = Arc::new(Forwarder {
        hosted: plugins.iter().map(|p| p.name().to_owned()).collect(),
        mesh: mesh.clone(),
        log: log.clone(),
    });
    let gauge = capacity.clone();
    router
        .route(
            "/{service}/ping",
            get(
                move |Path(service): Path<String>, headers: HeaderMap, req: Request| {
                    let forward = forward.clone();
                    async move { forward.ping(service, headers, req).await }
                },
            ),
        )
        .layer(axum::middleware::from_fn(
            move |req: Request, next: Next| {
                let _in_flight = gauge.enter();
                async move {
                    let _in_flight = _in_flight;
                    next.run(req).await
                }
            },
        ))
        .layer(crate::traces::http_layer())
}

/// Answers `GET /{service}/ping` for services the node does not host.
struct Forwarder {
    hosted: HashSet<String>,
    mesh: MeshClient,
    log: NodeLog,
}

fn json_error(status: StatusCode, message: String) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

impl Forwarder {
    async fn ping(&self, service: String, headers: HeaderMap, req: Request) -> Response {
        let own = self.mesh.app_id();
        if self.hosted.contains(&service) {
            // A hosted service's own route wins; this is only reached for odd spellings.
            return json_error(
                StatusCode::NOT_FOUND,
                format!("service '{service}' has no ping route on {own}"),
            );
        }
        if let Some(from) = headers.get(HOP_HEADER).and_then(|v| v.to_str().ok()) {
            return json_error(
                StatusCode::NOT_FOUND,
                format!(
                    "service '{service}' is not hosted on {own}; forwarded by {from}, not forwarding again"
                ),
            );
        }
        if Catalog::builtin().find(&service).is_none() {
            return json_error(
                StatusCode::NOT_FOUND,
                format!("unknown service '{service}'"),
            );
        }
        let path = req
            .uri()
            .path_and_query()
            .map_or_else(|| format!("/{service}/ping"), |p| p.as_str().to_owned());
        match self.mesh.get(&service, &path).await {
            Ok(answer) => {
                self.log.stdout(format!(
                    "forwarded ping for {service} to {} ({})",
                    answer.app_id, answer.status
                ));
                let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::BAD_GATEWAY);
                let mut response = (status, answer.body).into_response();
                if let Some(ct) = answer
                    .content_type
                    .and_then(|c| header::HeaderValue::from_str(&c).ok())
                {
                    response.headers_mut().insert(header::CONTENT_TYPE, ct);
                }
                response
            }
            Err(e) => {
                self.log
                    .stderr(format!("cannot forward ping for {service}: {e}"));
                let status = match e {
                    MeshError::SelfRoute { .. } => StatusCode::NOT_FOUND,
                    MeshError::NoEndpoint { .. } => StatusCode::SERVICE_UNAVAILABLE,
                    MeshError::Client(_) | MeshError::Http { .. } => StatusCode::BAD_GATEWAY,
                };
                json_error(status, e.to_string())
            }
        }
    }
}

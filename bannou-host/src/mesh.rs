//! The node side of routing: every Bannou node follows `bannou.full-service-mappings`,
//! resolves services through the lock-free [`MeshReader`]
//! (docs/COMPATIBILITY.md#mappings-consumers), finds the node behind an app-id in an
//! [`EndpointDirectory`] and calls it with a [`MeshClient`].
//!
//! [`follow_mappings`] applies each snapshot only if its version is newer than the one
//! applied (the writer enforces it), so late or duplicated broadcasts never roll a node
//! back. The applied version goes into the node's heartbeat `metadata.routingVersion`,
//! which lets the orchestrator list nodes that lag; with a [`MappingsAck`], the node also
//! acknowledges each version on the bus right after applying it (D58
//! (docs/DECISIONS.md#d58)), so a change waiting for its consumers does not wait for the
//! next heartbeat.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use futures::StreamExt;
use orchestrator_core::AppId;
use orchestrator_core::events::{FullServiceMappingsEvent, MappingsAppliedEvent};
use orchestrator_core::ports::bus::{
    BusError, EventBus, EventBusExt, EventStreamError, EventSubscription,
};
use orchestrator_core::time::Clock;
use orchestrator_routing::resolver::{ApplyOutcome, MappingsWriter, Resolution};
use orchestrator_routing::{MappingsSnapshot, MeshReader};
use tokio::sync::watch;
use uuid::Uuid;

pub use orchestrator_routing::resolver::MeshResolver;

/// Applies every mappings broadcast on `bus` to `writer` until `shutdown` turns true.
/// Malformed broadcasts are logged and skipped.
pub async fn follow_mappings(
    bus: &dyn EventBus,
    writer: MappingsWriter,
    shutdown: watch::Receiver<bool>,
) -> Result<(), BusError> {
    let events = bus.subscribe_events::<FullServiceMappingsEvent>().await?;
    follow_subscription(events, writer, None, shutdown).await;
    Ok(())
}

/// Who acknowledges applied mappings versions, and where: a node instance publishing
/// [`MappingsAppliedEvent`]s on its bus.
#[derive(Clone)]
pub struct MappingsAck {
    bus: Arc<dyn EventBus>,
    app_id: AppId,
    instance_id: Uuid,
    clock: Arc<dyn Clock>,
}

impl MappingsAck {
    /// Acknowledgements of instance `instance_id` (its heartbeats' `serviceId`) of node
    /// `app_id`, published on `bus`, stamped by `clock`.
    pub fn new(
        bus: Arc<dyn EventBus>,
        app_id: AppId,
        instance_id: Uuid,
        clock: Arc<dyn Clock>,
    ) -> Self {
        MappingsAck {
            bus,
            app_id,
            instance_id,
            clock,
        }
    }

    /// Publishes that `version` was applied; a bus failure is logged (the next heartbeat
    /// reports the version anyway).
    pub async fn applied(&self, version: i64) {
        let event = MappingsAppliedEvent {
            app_id: self.app_id.clone(),
            service_id: self.instance_id,
            version,
            timestamp: self.clock.now(),
        };
        if let Err(e) = self.bus.publish_event(&event).await {
            tracing::debug!(error = %e, version, "mappings acknowledgement not published");
        }
    }
}

/// As [`follow_mappings`], over a subscription the caller already holds (so that nothing
/// published after the caller subscribed is missed, whenever this task gets to run); with
/// `ack`, each version applied is acknowledged on the bus at once.
pub async fn follow_subscription(
    mut events: EventSubscription<FullServiceMappingsEvent>,
    writer: MappingsWriter,
    ack: Option<MappingsAck>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            item = events.next() => match item {
                Some(Ok(event)) => {
                    // A table that a traced change made is applied in that trace.
                    let span = event.traceparent.as_deref().map(|traceparent| {
                        let span = tracing::info_span!("mappings.apply", version = event.version);
                        crate::traces::set_parent(&span, Some(traceparent));
                        span
                    });
                    let outcome = {
                        let _entered = span.as_ref().map(tracing::Span::enter);
                        writer.apply(&MappingsSnapshot::from_event(&event))
                    };
                    match outcome {
                        ApplyOutcome::Applied { version, .. } => {
                            if let Some(ack) = &ack {
                                ack.applied(version).await;
                            }
                        }
                        ApplyOutcome::Stale { current, offered } => {
                            tracing::debug!(current, offered, "ignoring an older mappings version");
                        }
                    }
                }
                Some(Err(EventStreamError::Malformed(e))) => tracing::warn!(error = %e, "skipping malformed mappings"),
                Some(Err(EventStreamError::Lagged { skipped, .. })) => tracing::debug!(skipped, "mappings subscriber lagged; the next broadcast carries the whole table"),
                None => return,
            },
            _ = crate::orchestrator::stopped(&mut shutdown) => return,
        }
    }
}

/// The `metadata` a node puts in its heartbeat: the routing version it applied.
pub fn heartbeat_metadata(reader: &MeshReader) -> Option<serde_json::Value> {
    reader.applied_version().map(
        |v| serde_json::json!({ orchestrator_routing::resolver::ROUTING_VERSION_METADATA_KEY: v }),
    )
}

// === endpoint directory ===

/// Where the node behind an app-id listens: app-id -> base URL (`http://host:port`, no
/// trailing slash). The second half of a mesh call, after the resolver's service -> app-id.
pub trait EndpointDirectory: Send + Sync + 'static {
    /// The base URL of a node serving `app_id`, `None` when none is known.
    fn endpoint(&self, app_id: &AppId) -> Option<String>;
}

/// The directory of the in-process backend: a shared map that the backend fills as it
/// starts and stops nodes, and in which the control plane registers itself. Several
/// endpoints per app-id (replicas) are served round-robin. Cheap to clone; clones share
/// the map.
///
/// A std `RwLock` is right here: every critical section is a short map operation with
/// no `.await` inside.
#[derive(Debug, Clone, Default)]
pub struct InProcessDirectory {
    shared: Arc<DirectoryShared>,
}

#[derive(Debug, Default)]
struct DirectoryShared {
    endpoints: RwLock<BTreeMap<AppId, Vec<String>>>,
    next: AtomicUsize,
}

impl InProcessDirectory {
    /// An empty directory.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `base_url` as an endpoint of `app_id` (no-op when already present).
    pub fn register(&self, app_id: &AppId, base_url: impl Into<String>) {
        let url = base_url.into();
        let mut map = self
            .shared
            .endpoints
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let list = map.entry(app_id.clone()).or_default();
        if !list.contains(&url) {
            list.push(url);
        }
    }

    /// Removes `base_url` from `app_id`'s endpoints; true when it was there.
    pub fn unregister(&self, app_id: &AppId, base_url: &str) -> bool {
        let mut map = self
            .shared
            .endpoints
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(list) = map.get_mut(app_id) else {
            return false;
        };
        let before = list.len();
        list.retain(|u| u != base_url);
        let removed = list.len() != before;
        if list.is_empty() {
            map.remove(app_id);
        }
        removed
    }

    /// Every endpoint of `app_id`, in registration order.
    pub fn endpoints(&self, app_id: &AppId) -> Vec<String> {
        self.shared
            .endpoints
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(app_id)
            .cloned()
            .unwrap_or_default()
    }

    /// Every registered app-id with its endpoints.
    pub fn snapshot(&self) -> BTreeMap<AppId, Vec<String>> {
        self.shared
            .endpoints
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl EndpointDirectory for InProcessDirectory {
    fn endpoint(&self, app_id: &AppId) -> Option<String> {
        let map = self
            .shared
            .endpoints
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let list = map.get(app_id).filter(|l| !l.is_empty())?;
        let i = self.shared.next.fetch_add(1, Ordering::Relaxed) % list.len();
        Some(list[i].clone())
    }
}

/// The directory of container backends: every node is reachable by its app-id as a host
/// name (Docker network alias, Kubernetes Service), `http://{app_id}:{port}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContainerDirectory {
    /// The port every node listens on.
    pub port: u16,
}

impl ContainerDirectory {
    /// Upstream's service port (`DefaultServicePort`).
    pub const DEFAULT_PORT: u16 = 80;
}

impl Default for ContainerDirectory {
    /// Port [`ContainerDirectory::DEFAULT_PORT`].
    fn default() -> Self {
        ContainerDirectory {
            port: Self::DEFAULT_PORT,
        }
    }
}

impl EndpointDirectory for ContainerDirectory {
    fn endpoint(&self, app_id: &AppId) -> Option<String> {
        Some(format!("http://{app_id}:{}", self.port))
    }
}

// === mesh client ===

/// Request header a node sets on a call it forwards: the forwarding node's app-id. A node
/// never forwards a request that carries it, so a routing disagreement cannot loop.
pub const HOP_HEADER: &str = "x-bannou-forwarded-by";

/// Why a mesh call failed.
#[derive(Debug, thiserror::Error)]
pub enum MeshError {
    /// The HTTP client could not be built (TLS backend).
    #[error("cannot build the mesh HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    /// The service resolves to this node itself, so there is nowhere to send the call.
    #[error("service '{service}' resolves to this node ({app_id}) but it is not hosted here")]
    SelfRoute {
        /// The service called.
        service: String,
        /// This node's app-id.
        app_id: AppId,
    },
    /// The directory knows no endpoint for the app-id the service resolves to.
    #[error("service '{service}' routes to app-id '{app_id}', which has no known endpoint")]
    NoEndpoint {
        /// The service called.
        service: String,
        /// Where the mesh routes it.
        app_id: AppId,
    },
    /// The remote node could not be reached or did not answer in time.
    #[error("call to '{service}' at {url} failed: {source}")]
    Http {
        /// The service called.
        service: String,
        /// The URL called.
        url: String,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },
}

/// A remote node's answer, passed back as it came.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeshResponse {
    /// The app-id the call went to.
    pub app_id: AppId,
    /// The URL called.
    pub url: String,
    /// HTTP status.
    pub status: u16,
    /// `content-type`, if any.
    pub content_type: Option<String>,
    /// The body.
    pub body: Vec<u8>,
}

/// Calls a service wherever the mesh routes it: service -> app-id (the [`MeshReader`]),
/// app-id -> base URL (the [`EndpointDirectory`]), then HTTP. Cheap to clone.
#[derive(Clone)]
pub struct MeshClient {
    app_id: AppId,
    reader: MeshReader,
    directory: Arc<dyn EndpointDirectory>,
    http: reqwest::Client,
    timeout: Duration,
    metrics: Option<crate::metrics::Metrics>,
}

impl std::fmt::Debug for MeshClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeshClient")
            .field("app_id", &self.app_id)
            .field("routing_version", &self.reader.applied_version())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl MeshClient {
    /// Per-call timeout unless changed with [`MeshClient::with_timeout`] (upstream's mesh
    /// call timeout).
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

    /// A client for the node `app_id`, resolving through `reader` and `directory`.
    pub fn new(
        app_id: AppId,
        reader: MeshReader,
        directory: Arc<dyn EndpointDirectory>,
    ) -> Result<Self, MeshError> {
        orchestrator_backends::http::install_crypto_provider();
        let http = reqwest::Client::builder()
            .build()
            .map_err(MeshError::Client)?;
        Ok(MeshClient {
            app_id,
            reader,
            directory,
            http,
            timeout: Self::DEFAULT_TIMEOUT,
            metrics: None,
        })
    }

    /// Counts every call by outcome in `metrics`.
    pub fn with_metrics(mut self, metrics: crate::metrics::Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Sets the per-call timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The app-id of the node this client belongs to.
    pub fn app_id(&self) -> &AppId {
        &self.app_id
    }

    /// The resolver this client reads.
    pub fn reader(&self) -> &MeshReader {
        &self.reader
    }

    /// The app-id `service` is routed to now (this node's own for infrastructure).
    pub fn route(&self, service: &str) -> AppId {
        match self.reader.resolve(service) {
            Resolution::Local => self.app_id.clone(),
            Resolution::App(a) => AppId::new(&*a),
        }
    }

    /// The app-id and base URL of the node serving `service`, refusing this node itself.
    pub fn endpoint(&self, service: &str) -> Result<(AppId, String), MeshError> {
        let app_id = self.route(service);
        if app_id == self.app_id {
            return Err(MeshError::SelfRoute {
                service: service.to_owned(),
                app_id,
            });
        }
        match self.directory.endpoint(&app_id) {
            Some(url) => Ok((app_id, url)),
            None => Err(MeshError::NoEndpoint {
                service: service.to_owned(),
                app_id,
            }),
        }
    }

    /// `GET {endpoint}{path}` on the node serving `service`, with the hop header set (and
    /// `traceparent`, when traces are exported). `path` starts with `/` and may carry a
    /// query. Any HTTP status is an answer; only transport failures are errors.
    #[tracing::instrument(name = "mesh.call", skip(self), fields(node = %self.app_id))]
    pub async fn get(&self, service: &str, path: &str) -> Result<MeshResponse, MeshError> {
        let answer = self.get_uncounted(service, path).await;
        if let Some(m) = &self.metrics {
            m.mesh_call(match &answer {
                Ok(_) => "ok",
                Err(MeshError::SelfRoute { .. } | MeshError::NoEndpoint { .. }) => "unroutable",
                Err(_) => "failed",
            });
        }
        answer
    }

    async fn get_uncounted(&self, service: &str, path: &str) -> Result<MeshResponse, MeshError> {
        let (app_id, base) = self.endpoint(service)?;
        let url = format!("{base}{path}");
        let http_error = |source| MeshError::Http {
            service: service.to_owned(),
            url: url.clone(),
            source,
        };
        let mut request = self
            .http
            .get(&url)
            .header(HOP_HEADER, self.app_id.as_str())
            .timeout(self.timeout);
        // The callee's work joins this call's trace.
        if let Some(traceparent) = crate::traces::current_traceparent() {
            request = request.header(crate::traces::TRACEPARENT, traceparent);
        }
        let response = request.send().await.map_err(http_error)?;
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = response.bytes().await.map_err(http_error)?.to_vec();
        Ok(MeshResponse {
            app_id,
            url,
            status,
            content_type,
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(s: &str) -> AppId {
        AppId::from(s)
    }

    #[tokio::test(start_paused = true)]
    async fn each_applied_version_is_acknowledged_once_and_a_stale_one_never() {
        use orchestrator_core::memory::bus::InMemoryBus;
        use orchestrator_core::time::Timestamp;
        let bus = Arc::new(InMemoryBus::new());
        let clock: Arc<dyn Clock> = Arc::new(crate::clock::TokioClock::starting_at(
            Timestamp::from_unix_millis(1_780_000_000_000),
        ));
        let mut acks = bus
            .subscribe_events::<MappingsAppliedEvent>()
            .await
            .unwrap();
        let events = bus
            .subscribe_events::<FullServiceMappingsEvent>()
            .await
            .unwrap();
        let (writer, reader) = MeshResolver::new();
        let instance = Uuid::new_v4();
        let ack = MappingsAck::new(bus.clone(), app("n1"), instance, clock.clone());
        let (stop, rx) = watch::channel(false);
        let follower = tokio::spawn(follow_subscription(events, writer, Some(ack), rx));
        for version in [3, 2, 3, 5] {
            let snapshot = MappingsSnapshot::from_entries(version, None, [("auth", Some("n2"))]);
            let event = snapshot.to_event(Uuid::new_v4(), clock.now(), Uuid::new_v4());
            bus.publish_event(&event).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        let mut got = Vec::new();
        while let Ok(Some(Ok(a))) =
            tokio::time::timeout(Duration::from_millis(10), acks.next()).await
        {
            assert_eq!((a.app_id.as_str(), a.service_id), ("n1", instance));
            got.push(a.version);
        }
        assert_eq!(
            got,
            [3, 5],
            "acknowledged right after applying, stale ones never"
        );
        assert_eq!(reader.applied_version(), Some(5));
        stop.send(true).unwrap();
        follower.await.unwrap();
    }

    #[test]
    fn in_process_directory_registers_round_robins_and_forgets() {
        let dir = InProcessDirectory::new();
        assert_eq!(dir.endpoint(&app("n1")), None);
        dir.register(&app("n1"), "http://127.0.0.1:1");
        dir.register(&app("n1"), "http://127.0.0.1:2");
        dir.register(&app("n1"), "http://127.0.0.1:2");
        assert_eq!(dir.endpoints(&app("n1")).len(), 2, "no duplicates");
        let a = dir.endpoint(&app("n1")).unwrap();
        let b = dir.endpoint(&app("n1")).unwrap();
        assert_ne!(a, b, "replicas take turns");
        assert!(dir.unregister(&app("n1"), "http://127.0.0.1:1"));
        assert!(!dir.unregister(&app("n1"), "http://127.0.0.1:1"));
        assert_eq!(
            dir.endpoint(&app("n1")).as_deref(),
            Some("http://127.0.0.1:2")
        );
        dir.unregister(&app("n1"), "http://127.0.0.1:2");
        assert!(dir.snapshot().is_empty());
    }

    #[test]
    fn container_directory_uses_the_app_id_as_host() {
        let dir = ContainerDirectory { port: 5012 };
        assert_eq!(
            dir.endpoint(&app("bannou-auth")).as_deref(),
            Some("http://bannou-auth:5012")
        );
        assert_eq!(ContainerDirectory::default().port, 80);
    }

    #[test]
    fn client_routes_by_mappings_and_refuses_itself() {
        let (writer, reader) = MeshResolver::new();
        let dir = InProcessDirectory::new();
        dir.register(&app("n2"), "http://127.0.0.1:9");
        let client = MeshClient::new(app("n1"), reader, Arc::new(dir)).unwrap();
        assert_eq!(client.route("auth"), app("bannou"));
        assert_eq!(client.route("state"), app("n1"), "infrastructure is local");
        assert!(matches!(
            client.endpoint("auth"),
            Err(MeshError::NoEndpoint { app_id, .. }) if app_id == app("bannou")
        ));
        writer.apply(&MappingsSnapshot::from_entries(
            1,
            None,
            [("auth", Some("n2")), ("account", Some("n1"))],
        ));
        assert_eq!(
            client.endpoint("auth").unwrap(),
            (app("n2"), "http://127.0.0.1:9".to_owned())
        );
        assert!(matches!(
            client.endpoint("account"),
            Err(MeshError::SelfRoute { .. })
        ));
    }
}

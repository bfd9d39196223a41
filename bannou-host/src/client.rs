//! A typed HTTP client of the orchestrator API (docs/COMPATIBILITY.md#api-conventions and
//! docs/COMPATIBILITY.md#endpoints): [`ApiClient`] has one async method per `POST
//! /orchestrator/...` endpoint plus [`ApiClient::health`]. The CLI's client commands and
//! the `http_client` example drive a running host through it.
//!
//! Most endpoints answer 200 with their response or an error status with, at most, an
//! [`ApiError`] body; those methods return the response or a [`ClientError`]. Three
//! endpoints also answer an error status *with* their response body
//! (docs/COMPATIBILITY.md#infrastructure-health, docs/COMPATIBILITY.md#deploy,
//! docs/COMPATIBILITY.md#container-status): deploy (500 + `DeployResponse`), infrastructure
//! health (500 + body) and container status (404 + body). Those return a [`Reply`] holding
//! the status and the body, so a caller can show a failed deploy's warnings;
//! [`Reply::into_ok`] turns it into an error when only success matters.

use std::fmt;
use std::time::Duration;

use orchestrator_core::api::{
    AcquireProcessorRequest, AcquireProcessorResponse, ApiError, BackendsResponse,
    CanaryActionRequest, CanaryActionResponse, CleanRequest, CleanResponse, CleanupPoolRequest,
    CleanupPoolResponse, ConfigRollbackRequest, ConfigRollbackResponse, ConfigVersionResponse,
    ContainerRestartRequestBody, ContainerRestartResponse, ContainerStatus, DeployRequest,
    DeployResponse, DrainPoolRequest, DrainPoolResponse, EnvironmentStatus,
    GetConfigVersionRequest, GetContainerStatusRequest, GetLogsRequest, GetPoolStatusRequest,
    GetServiceRoutingRequest, GetStatusRequest, InfrastructureHealthRequest,
    InfrastructureHealthResponse, ListBackendsRequest, ListPresetsRequest, LogsResponse,
    PoolStatusResponse, PresetsResponse, ReleaseProcessorRequest, ReleaseProcessorResponse,
    RenewProcessorRequest, RenewProcessorResponse, ScalePoolRequest, ScalePoolResponse,
    ServiceHealthRequest, ServiceRestartRequest, ServiceRestartResult, ServiceRoutingResponse,
    ShouldRestartServiceRequest, TeardownRequest, TeardownResponse, TopologyUpdateRequest,
    TopologyUpdateResponse,
};
use orchestrator_core::health::ServiceHealthReport;
use orchestrator_core::restart::RestartRecommendation;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Where a host listens when nothing else is said (`bannou-host serve` default).
pub const DEFAULT_API_URL: &str = "http://127.0.0.1:8080";

/// Default per-request timeout: longer than a deploy's heartbeat wait
/// (docs/COMPATIBILITY.md#deploy, 90 s).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// The paths of the API (docs/COMPATIBILITY.md#endpoints), relative to the base URL.
pub mod paths {
    /// `GET`: liveness of the host (not part of the upstream API).
    pub const HEALTH: &str = "/health";
    /// GetInfrastructureHealth (docs/COMPATIBILITY.md#infrastructure-health).
    pub const INFRASTRUCTURE_HEALTH: &str = "/orchestrator/health/infrastructure";
    /// GetServicesHealth (docs/COMPATIBILITY.md#services-health).
    pub const SERVICES_HEALTH: &str = "/orchestrator/health/services";
    /// RestartService (docs/COMPATIBILITY.md#restart-service).
    pub const RESTART_SERVICE: &str = "/orchestrator/services/restart";
    /// ShouldRestartService (docs/COMPATIBILITY.md#should-restart).
    pub const SHOULD_RESTART_SERVICE: &str = "/orchestrator/services/should-restart";
    /// GetBackends (docs/COMPATIBILITY.md#backends-list).
    pub const BACKENDS: &str = "/orchestrator/backends/list";
    /// GetPresets (docs/COMPATIBILITY.md#presets-list).
    pub const PRESETS: &str = "/orchestrator/presets/list";
    /// Deploy (docs/COMPATIBILITY.md#deploy).
    pub const DEPLOY: &str = "/orchestrator/deploy";
    /// GetServiceRouting (docs/COMPATIBILITY.md#service-routing).
    pub const SERVICE_ROUTING: &str = "/orchestrator/service-routing";
    /// GetStatus (docs/COMPATIBILITY.md#status).
    pub const STATUS: &str = "/orchestrator/status";
    /// Teardown (docs/COMPATIBILITY.md#teardown).
    pub const TEARDOWN: &str = "/orchestrator/teardown";
    /// Clean (docs/COMPATIBILITY.md#clean).
    pub const CLEAN: &str = "/orchestrator/clean";
    /// GetLogs (docs/COMPATIBILITY.md#logs).
    pub const LOGS: &str = "/orchestrator/logs";
    /// UpdateTopology (docs/COMPATIBILITY.md#topology).
    pub const TOPOLOGY: &str = "/orchestrator/topology";
    /// RequestContainerRestart (docs/COMPATIBILITY.md#request-container-restart).
    pub const CONTAINER_RESTART: &str = "/orchestrator/containers/request-restart";
    /// GetContainerStatus (docs/COMPATIBILITY.md#container-status).
    pub const CONTAINER_STATUS: &str = "/orchestrator/containers/status";
    /// RollbackConfiguration (docs/COMPATIBILITY.md#config-rollback).
    pub const CONFIG_ROLLBACK: &str = "/orchestrator/config/rollback";
    /// GetConfigVersion (docs/COMPATIBILITY.md#config-version).
    pub const CONFIG_VERSION: &str = "/orchestrator/config/version";
    /// AcquireProcessor (docs/COMPATIBILITY.md#acquire-processor).
    pub const POOL_ACQUIRE: &str = "/orchestrator/processing-pool/acquire";
    /// ReleaseProcessor (docs/COMPATIBILITY.md#release-processor).
    pub const POOL_RELEASE: &str = "/orchestrator/processing-pool/release";
    /// GetPoolStatus (docs/COMPATIBILITY.md#pool-status).
    pub const POOL_STATUS: &str = "/orchestrator/processing-pool/status";
    /// ScalePool (docs/COMPATIBILITY.md#scale-pool).
    pub const POOL_SCALE: &str = "/orchestrator/processing-pool/scale";
    /// CleanupPool (docs/COMPATIBILITY.md#cleanup-pool).
    pub const POOL_CLEANUP: &str = "/orchestrator/processing-pool/cleanup";
    /// Ours: RenewProcessor (docs/COMPATIBILITY.md#renew-processor).
    pub const POOL_RENEW: &str = "/orchestrator/processing-pool/renew";
    /// Ours: DrainPool (docs/COMPATIBILITY.md#drain-pool).
    pub const POOL_DRAIN: &str = "/orchestrator/processing-pool/drain";
    /// Ours: promote the running canary (docs/COMPATIBILITY.md#promote-and-abort-a-canary).
    pub const PROMOTE: &str = "/orchestrator/promote";
    /// Ours: abort the running canary (docs/COMPATIBILITY.md#promote-and-abort-a-canary).
    pub const ABORT: &str = "/orchestrator/abort";
}

// === errors ===

/// The events of [`ApiClient::events`], as parsed Server-Sent Events.
pub type EventStream = std::pin::Pin<
    Box<dyn futures::Stream<Item = Result<eventsource_stream::Event, ClientError>> + Send>,
>;

/// Why a call failed. Every variant names the URL it was sent to.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The base URL given to [`ApiClient::new`] is not an `http(s)://` URL.
    #[error("invalid API URL `{url}`: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The HTTP client could not be built (TLS backend initialisation).
    #[error("cannot build the HTTP client: {0}")]
    Build(#[source] reqwest::Error),
    /// Nothing answered at the URL (refused, unreachable, DNS).
    #[error(
        "cannot reach the orchestrator at {url}: {reason} \
         (is `bannou-host serve` running there? set --api or BANNOU_API_URL)"
    )]
    Connect {
        /// Full request URL.
        url: String,
        /// The innermost cause (`Connection refused (os error 111)`).
        reason: String,
    },
    /// No answer within the timeout.
    #[error("no answer from {url} within {timeout:?}")]
    Timeout {
        /// Full request URL.
        url: String,
        /// The timeout that elapsed.
        timeout: Duration,
    },
    /// Any other transport failure (connection reset mid-answer, ...).
    #[error("request to {url} failed: {reason}")]
    Transport {
        /// Full request URL.
        url: String,
        /// The innermost cause.
        reason: String,
    },
    /// The server answered with a non-success status.
    #[error("{url}: {}", describe_status(*.status, .error.as_ref(), .body.as_deref()))]
    Status {
        /// Full request URL.
        url: String,
        /// The HTTP status code (400, 404, 409, 500, 503, ...).
        status: u16,
        /// The `{"error", "field"}` body, when the server sent one.
        error: Option<ApiError>,
        /// Any other JSON body (for example a response object the caller chose not to
        /// accept, see [`Reply::into_ok`]); `None` for an empty or non-JSON body.
        body: Option<Box<serde_json::Value>>,
    },
    /// A success (or body-carrying) answer whose body did not match the expected type.
    #[error("{url}: HTTP {status} with an unexpected body: {reason}")]
    Decode {
        /// Full request URL.
        url: String,
        /// The HTTP status code.
        status: u16,
        /// The serde error.
        reason: String,
    },
}

impl ClientError {
    /// The HTTP status, when the server answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Status { status, .. } | ClientError::Decode { status, .. } => {
                Some(*status)
            }
            _ => None,
        }
    }

    /// The server's `{"error", "field"}` body, when it sent one.
    pub fn api_error(&self) -> Option<&ApiError> {
        match self {
            ClientError::Status { error, .. } => error.as_ref(),
            _ => None,
        }
    }
}

fn describe_status(
    status: u16,
    error: Option<&ApiError>,
    body: Option<&serde_json::Value>,
) -> String {
    let reason = reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    let head = format!("HTTP {status} {reason}").trim_end().to_owned();
    match (error, body) {
        (Some(e), _) => match &e.field {
            // The error text of a field error already starts with the field.
            Some(f) if !e.error.starts_with(f.as_str()) => {
                format!("{head}: {} (field `{f}`)", e.error)
            }
            _ => format!("{head}: {}", e.error),
        },
        (None, Some(b)) => format!("{head}: {b}"),
        (None, None) => format!("{head} (no body)"),
    }
}

/// The innermost message of an error chain (`Connection refused (os error 111)`), which
/// says more than reqwest's outer "error sending request".
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

// === Reply ===

/// An answer of an endpoint that may carry its response body with an error status:
/// deploy (500 when `success` is false), infrastructure health (500 when unhealthy) and
/// container status (404 when not found).
#[derive(Debug, Clone, PartialEq)]
pub struct Reply<T> {
    /// The HTTP status code.
    pub status: u16,
    /// The decoded response body.
    pub body: T,
}

impl<T> Reply<T> {
    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

impl<T: Serialize> Reply<T> {
    /// The body when the status is 2xx; otherwise a [`ClientError::Status`] carrying the
    /// body as JSON.
    pub fn into_ok(self, url: impl Into<String>) -> Result<T, ClientError> {
        if self.is_success() {
            Ok(self.body)
        } else {
            Err(ClientError::Status {
                url: url.into(),
                status: self.status,
                error: None,
                body: serde_json::to_value(&self.body).ok().map(Box::new),
            })
        }
    }
}

// === client ===

/// A client of one orchestrator's HTTP API. Cheap to clone (the connection pool is
/// shared).
#[derive(Debug, Clone)]
pub struct ApiClient {
    http: reqwest::Client,
    /// Base URL without a trailing slash (`http://127.0.0.1:8080`).
    base: String,
    token: Option<String>,
    timeout: Duration,
}

impl ApiClient {
    /// A client of the API at `base_url` (`http://host:port`, optionally with a path
    /// prefix), with no token and [`DEFAULT_TIMEOUT`]. Installs the process's rustls
    /// provider if none is installed yet.
    pub fn new(base_url: &str) -> Result<Self, ClientError> {
        let trimmed = base_url.trim().trim_end_matches('/');
        let parsed = reqwest::Url::parse(trimmed).map_err(|e| ClientError::InvalidUrl {
            url: base_url.to_owned(),
            reason: e.to_string(),
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(ClientError::InvalidUrl {
                url: base_url.to_owned(),
                reason: format!("scheme must be http or https, not `{}`", parsed.scheme()),
            });
        }
        orchestrator_backends::http::install_crypto_provider();
        let http = reqwest::Client::builder()
            .build()
            .map_err(ClientError::Build)?;
        Ok(ApiClient {
            http,
            base: trimmed.to_owned(),
            token: None,
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// Sends `Authorization: Bearer {token}` with every request (`None` or blank: no
    /// header).
    #[must_use]
    pub fn with_token(mut self, token: Option<String>) -> Self {
        self.token = token.filter(|t| !t.trim().is_empty());
        self
    }

    /// Gives up on a request after `timeout` (default [`DEFAULT_TIMEOUT`]).
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Speaks HTTP/2 with prior knowledge (h2c on `http://`): every request of this client
    /// and its clones shares one connection instead of one connection per request in flight.
    pub fn with_http2(mut self) -> Result<Self, ClientError> {
        self.http = reqwest::Client::builder()
            .http2_prior_knowledge()
            .build()
            .map_err(ClientError::Build)?;
        Ok(self)
    }

    /// The base URL, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The full URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    // === transport ===

    fn authorize(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        let req = req.timeout(self.timeout);
        match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    fn transport_error(&self, url: String, e: reqwest::Error) -> ClientError {
        if e.is_timeout() {
            ClientError::Timeout {
                url,
                timeout: self.timeout,
            }
        } else if e.is_connect() {
            ClientError::Connect {
                url,
                reason: root_cause(&e),
            }
        } else {
            ClientError::Transport {
                url,
                reason: root_cause(&e),
            }
        }
    }

    /// Sends `request`; returns the status and the raw body.
    async fn send(
        &self,
        url: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<(u16, Vec<u8>), ClientError> {
        let resp = self
            .authorize(request)
            .send()
            .await
            .map_err(|e| self.transport_error(url.to_owned(), e))?;
        let status = resp.status().as_u16();
        let body = resp
            .bytes()
            .await
            .map_err(|e| self.transport_error(url.to_owned(), e))?;
        Ok((status, body.to_vec()))
    }

    /// Posts `request` as JSON to `path` and returns the status and raw body.
    async fn post_raw<Req: Serialize + ?Sized>(
        &self,
        path: &str,
        request: &Req,
    ) -> Result<(String, u16, Vec<u8>), ClientError> {
        let url = self.url(path);
        let (status, body) = self.send(&url, self.http.post(&url).json(request)).await?;
        Ok((url, status, body))
    }

    /// Posts `request` to `path`; a 2xx answer is decoded as `Resp`, anything else is a
    /// [`ClientError::Status`].
    pub async fn post<Req, Resp>(&self, path: &str, request: &Req) -> Result<Resp, ClientError>
    where
        Req: Serialize + ?Sized,
        Resp: DeserializeOwned,
    {
        let (url, status, body) = self.post_raw(path, request).await?;
        if (200..300).contains(&status) {
            decode(&url, status, &body)
        } else {
            Err(status_error(url, status, &body))
        }
    }

    /// Posts `request` to `path`; a 2xx answer, or an error answer whose body decodes as
    /// `Resp`, is a [`Reply`]. An error answer without such a body is a
    /// [`ClientError::Status`].
    pub async fn post_reply<Req, Resp>(
        &self,
        path: &str,
        request: &Req,
    ) -> Result<Reply<Resp>, ClientError>
    where
        Req: Serialize + ?Sized,
        Resp: DeserializeOwned,
    {
        let (url, status, body) = self.post_raw(path, request).await?;
        if (200..300).contains(&status) {
            return Ok(Reply {
                status,
                body: decode(&url, status, &body)?,
            });
        }
        match serde_json::from_slice::<Resp>(&body) {
            Ok(resp) => Ok(Reply { status, body: resp }),
            Err(_) => Err(status_error(url, status, &body)),
        }
    }

    /// `GET /orchestrator/events`: the live event stream, filtered by `types` (comma-separated
    /// names or prefixes) and `deployment`, resuming after `last_event_id`. Returns once the
    /// server answered (so the subscription is in place); the stream has no overall timeout
    /// and ends when the server closes it. A non-2xx answer is a [`ClientError::Status`].
    pub async fn events(
        &self,
        types: Option<&str>,
        deployment: Option<&str>,
        last_event_id: Option<&str>,
    ) -> Result<EventStream, ClientError> {
        use eventsource_stream::Eventsource;
        use futures::StreamExt;

        let url = self.url("/orchestrator/events");
        let mut target = reqwest::Url::parse(&url).map_err(|e| ClientError::InvalidUrl {
            url: url.clone(),
            reason: e.to_string(),
        })?;
        {
            let mut query = target.query_pairs_mut();
            query.extend_pairs(types.map(|t| ("types", t)));
            query.extend_pairs(deployment.map(|d| ("deployment", d)));
        }
        if target.query() == Some("") {
            target.set_query(None);
        }
        let mut request = self
            .http
            .get(target)
            .header(reqwest::header::ACCEPT, "text/event-stream");
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id);
        }
        if let Some(t) = &self.token {
            request = request.bearer_auth(t);
        }
        // No `timeout` here: it would bound the whole stream, not the answer.
        let answer = tokio::time::timeout(self.timeout, request.send())
            .await
            .map_err(|_| ClientError::Timeout {
                url: url.clone(),
                timeout: self.timeout,
            })?
            .map_err(|e| self.transport_error(url.clone(), e))?;
        let status = answer.status().as_u16();
        if !(200..300).contains(&status) {
            let body = answer.bytes().await.unwrap_or_default();
            return Err(status_error(url, status, &body));
        }
        let stream = answer.bytes_stream().eventsource().map(move |item| {
            item.map_err(|e| ClientError::Transport {
                url: url.clone(),
                reason: e.to_string(),
            })
        });
        Ok(Box::pin(stream))
    }

    // === endpoints (docs/COMPATIBILITY.md#endpoints) ===

    /// `GET /health`: the host's liveness document, as JSON.
    pub async fn health(&self) -> Result<serde_json::Value, ClientError> {
        let url = self.url(paths::HEALTH);
        let (status, body) = self.send(&url, self.http.get(&url)).await?;
        if !(200..300).contains(&status) {
            return Err(status_error(url, status, &body));
        }
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(serde_json::Value::Null);
        }
        decode(&url, status, &body)
    }

    /// GetInfrastructureHealth (docs/COMPATIBILITY.md#infrastructure-health): 200 when
    /// healthy, 500 with the body otherwise.
    pub async fn infrastructure_health(
        &self,
        req: &InfrastructureHealthRequest,
    ) -> Result<Reply<InfrastructureHealthResponse>, ClientError> {
        self.post_reply(paths::INFRASTRUCTURE_HEALTH, req).await
    }

    /// GetServicesHealth (docs/COMPATIBILITY.md#services-health).
    pub async fn services_health(
        &self,
        req: &ServiceHealthRequest,
    ) -> Result<ServiceHealthReport, ClientError> {
        self.post(paths::SERVICES_HEALTH, req).await
    }

    /// RestartService (docs/COMPATIBILITY.md#restart-service): 409 when a restart is not needed.
    pub async fn restart_service(
        &self,
        req: &ServiceRestartRequest,
    ) -> Result<ServiceRestartResult, ClientError> {
        self.post(paths::RESTART_SERVICE, req).await
    }

    /// ShouldRestartService (docs/COMPATIBILITY.md#should-restart).
    pub async fn should_restart_service(
        &self,
        req: &ShouldRestartServiceRequest,
    ) -> Result<RestartRecommendation, ClientError> {
        self.post(paths::SHOULD_RESTART_SERVICE, req).await
    }

    /// GetBackends (docs/COMPATIBILITY.md#backends-list).
    pub async fn backends(
        &self,
        req: &ListBackendsRequest,
    ) -> Result<BackendsResponse, ClientError> {
        self.post(paths::BACKENDS, req).await
    }

    /// GetPresets (docs/COMPATIBILITY.md#presets-list).
    pub async fn presets(&self, req: &ListPresetsRequest) -> Result<PresetsResponse, ClientError> {
        self.post(paths::PRESETS, req).await
    }

    /// Deploy (docs/COMPATIBILITY.md#deploy): 200 on success, 500 with the response (its
    /// `warnings` name the failures) otherwise; 400/404 carry no response.
    pub async fn deploy(&self, req: &DeployRequest) -> Result<Reply<DeployResponse>, ClientError> {
        self.post_reply(paths::DEPLOY, req).await
    }

    /// GetServiceRouting (docs/COMPATIBILITY.md#service-routing).
    pub async fn service_routing(
        &self,
        req: &GetServiceRoutingRequest,
    ) -> Result<ServiceRoutingResponse, ClientError> {
        self.post(paths::SERVICE_ROUTING, req).await
    }

    /// GetStatus (docs/COMPATIBILITY.md#status).
    pub async fn status(&self, req: &GetStatusRequest) -> Result<EnvironmentStatus, ClientError> {
        self.post(paths::STATUS, req).await
    }

    /// Teardown (docs/COMPATIBILITY.md#teardown).
    pub async fn teardown(&self, req: &TeardownRequest) -> Result<TeardownResponse, ClientError> {
        self.post(paths::TEARDOWN, req).await
    }

    /// Clean (docs/COMPATIBILITY.md#clean).
    pub async fn clean(&self, req: &CleanRequest) -> Result<CleanResponse, ClientError> {
        self.post(paths::CLEAN, req).await
    }

    /// GetLogs (docs/COMPATIBILITY.md#logs).
    pub async fn logs(&self, req: &GetLogsRequest) -> Result<LogsResponse, ClientError> {
        self.post(paths::LOGS, req).await
    }

    /// UpdateTopology (docs/COMPATIBILITY.md#topology).
    pub async fn update_topology(
        &self,
        req: &TopologyUpdateRequest,
    ) -> Result<TopologyUpdateResponse, ClientError> {
        self.post(paths::TOPOLOGY, req).await
    }

    /// RequestContainerRestart (docs/COMPATIBILITY.md#request-container-restart): 500 (no
    /// body) when not accepted.
    pub async fn request_container_restart(
        &self,
        req: &ContainerRestartRequestBody,
    ) -> Result<ContainerRestartResponse, ClientError> {
        self.post(paths::CONTAINER_RESTART, req).await
    }

    /// GetContainerStatus (docs/COMPATIBILITY.md#container-status): 404 with the status
    /// body when the container is stopped with no instances ("not found").
    pub async fn container_status(
        &self,
        req: &GetContainerStatusRequest,
    ) -> Result<Reply<ContainerStatus>, ClientError> {
        self.post_reply(paths::CONTAINER_STATUS, req).await
    }

    /// RollbackConfiguration (docs/COMPATIBILITY.md#config-rollback).
    pub async fn rollback_config(
        &self,
        req: &ConfigRollbackRequest,
    ) -> Result<ConfigRollbackResponse, ClientError> {
        self.post(paths::CONFIG_ROLLBACK, req).await
    }

    /// GetConfigVersion (docs/COMPATIBILITY.md#config-version).
    pub async fn config_version(
        &self,
        req: &GetConfigVersionRequest,
    ) -> Result<ConfigVersionResponse, ClientError> {
        self.post(paths::CONFIG_VERSION, req).await
    }

    /// AcquireProcessor (docs/COMPATIBILITY.md#acquire-processor): 500 (no body upstream)
    /// when no worker is free.
    pub async fn acquire_processor(
        &self,
        req: &AcquireProcessorRequest,
    ) -> Result<AcquireProcessorResponse, ClientError> {
        self.post(paths::POOL_ACQUIRE, req).await
    }

    /// ReleaseProcessor (docs/COMPATIBILITY.md#release-processor): 404 for an unknown lease.
    pub async fn release_processor(
        &self,
        req: &ReleaseProcessorRequest,
    ) -> Result<ReleaseProcessorResponse, ClientError> {
        self.post(paths::POOL_RELEASE, req).await
    }

    /// GetPoolStatus (docs/COMPATIBILITY.md#pool-status).
    pub async fn pool_status(
        &self,
        req: &GetPoolStatusRequest,
    ) -> Result<PoolStatusResponse, ClientError> {
        self.post(paths::POOL_STATUS, req).await
    }

    /// ScalePool (docs/COMPATIBILITY.md#scale-pool): 404 when the pool has no configuration.
    pub async fn scale_pool(
        &self,
        req: &ScalePoolRequest,
    ) -> Result<ScalePoolResponse, ClientError> {
        self.post(paths::POOL_SCALE, req).await
    }

    /// CleanupPool (docs/COMPATIBILITY.md#cleanup-pool).
    pub async fn cleanup_pool(
        &self,
        req: &CleanupPoolRequest,
    ) -> Result<CleanupPoolResponse, ClientError> {
        self.post(paths::POOL_CLEANUP, req).await
    }

    /// Ours: RenewProcessor (docs/COMPATIBILITY.md#renew-processor): 404 for an unknown
    /// lease, 409 for a stale fencing token, an expired lease or a draining worker.
    pub async fn renew_processor(
        &self,
        req: &RenewProcessorRequest,
    ) -> Result<RenewProcessorResponse, ClientError> {
        self.post(paths::POOL_RENEW, req).await
    }

    /// Ours: DrainPool (docs/COMPATIBILITY.md#drain-pool): 404 for an unconfigured pool or
    /// an unknown worker.
    pub async fn drain_pool(
        &self,
        req: &DrainPoolRequest,
    ) -> Result<DrainPoolResponse, ClientError> {
        self.post(paths::POOL_DRAIN, req).await
    }

    /// Ours: promote the running canary
    /// (docs/COMPATIBILITY.md#promote-and-abort-a-canary): 404 when none runs, 409 when
    /// `deploymentId` names another.
    pub async fn promote(
        &self,
        req: &CanaryActionRequest,
    ) -> Result<CanaryActionResponse, ClientError> {
        self.post(paths::PROMOTE, req).await
    }

    /// Ours: abort the running canary (docs/COMPATIBILITY.md#promote-and-abort-a-canary);
    /// errors as [`ApiClient::promote`].
    pub async fn abort(
        &self,
        req: &CanaryActionRequest,
    ) -> Result<CanaryActionResponse, ClientError> {
        self.post(paths::ABORT, req).await
    }
}

impl fmt::Display for ApiClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.base)
    }
}

fn decode<T: DeserializeOwned>(url: &str, status: u16, body: &[u8]) -> Result<T, ClientError> {
    serde_json::from_slice(body).map_err(|e| ClientError::Decode {
        url: url.to_owned(),
        status,
        reason: e.to_string(),
    })
}

/// The error for a non-success answer: an [`ApiError`] body when there is one, any other
/// JSON body as is, and nothing for an empty body.
fn status_error(url: String, status: u16, body: &[u8]) -> ClientError {
    let (error, body) = if body.iter().all(u8::is_ascii_whitespace) {
        (None, None)
    } else if let Ok(e) = serde_json::from_slice::<ApiError>(body) {
        (Some(e), None)
    } else {
        let value = serde_json::from_slice::<serde_json::Value>(body)
            .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(body).into()));
        (None, Some(Box::new(value)))
    };
    ClientError::Status {
        url,
        status,
        error,
        body,
    }
}

#[cfg(test)]
mod tests;

//! The Portainer backend (docs/COMPATIBILITY.md#portainer-backend, fixed): the
//! [`DockerBackend`] driven through Portainer's Docker proxy,
//! `{PortainerUrl}/api/endpoints/{id}/docker/{docker-api-path}`.
//!
//! Every container operation is the same Docker Engine API call the standalone backend
//! makes, so there is one implementation of it: [`proxy_client`] gives bollard a transport
//! that prefixes each request path with the proxy path and adds `X-API-Key`, and
//! [`DockerBackend::connect_portainer`] builds the ordinary Docker backend on that client.
//! Naming, labels, networks, replicas, state mapping, log parsing, restart and the
//! label-limited prune are therefore exactly the Docker backend's (upstream's Portainer
//! backend deploys unnamed, unnetworked containers and cannot scale;
//! docs/COMPATIBILITY.md#portainer-backend).
//!
//! What is Portainer's own: availability is `GET {url}/api/status` with the key
//! (docs/COMPATIBILITY.md#backend-detection: `Portainer returned {code}`, `Connection
//! failed: …`, `Connection timeout`), made with reqwest, followed by a ping through the
//! proxy so that a wrong endpoint id or an engine Portainer cannot reach is reported before
//! a deploy, not during it. The request timeout is
//! `ORCHESTRATOR_PORTAINER_REQUEST_TIMEOUT_SECONDS`; the status check uses at most
//! [`DETECTION_TIMEOUT`]. The API key is never logged or shown (`Debug` masks it).
//!
//! Start at [`PortainerConfig`] and [`DockerBackend::connect_portainer`].

use std::time::Duration;

use bollard::{API_DEFAULT_VERSION, BollardRequest, Docker};
use http::HeaderValue;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use orchestrator_core::ports::backend::{Availability, BackendError};

use super::docker::{DockerBackend, DockerConfig};
use crate::http::install_crypto_provider;

/// The header Portainer reads API keys from.
pub const API_KEY_HEADER: &str = "X-API-Key";

/// The longest the availability check waits for `/api/status`
/// (docs/COMPATIBILITY.md#backend-detection: 5 s).
pub const DETECTION_TIMEOUT: Duration = Duration::from_secs(5);

/// The Portainer endpoint (environment) when nothing else is set
/// (`ORCHESTRATOR_PORTAINER_ENDPOINT_ID`, docs/COMPATIBILITY.md#configuration-variables).
pub const DEFAULT_ENDPOINT_ID: u32 = 1;

/// How long one Portainer request may take when nothing else is set
/// (`ORCHESTRATOR_PORTAINER_REQUEST_TIMEOUT_SECONDS`,
/// docs/COMPATIBILITY.md#configuration-variables).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Settings of the Portainer backend.
#[derive(Clone, PartialEq, Eq)]
pub struct PortainerConfig {
    /// Portainer's base URL (`ORCHESTRATOR_PORTAINER_URL`), `http` or `https`, possibly
    /// with a path prefix (`https://ops.example/portainer`).
    pub url: String,
    /// `ORCHESTRATOR_PORTAINER_API_KEY`, sent as `X-API-Key` when set.
    pub api_key: Option<String>,
    /// `ORCHESTRATOR_PORTAINER_ENDPOINT_ID` (>= 1): the environment whose Docker engine
    /// runs the nodes.
    pub endpoint_id: u32,
    /// `ORCHESTRATOR_PORTAINER_REQUEST_TIMEOUT_SECONDS`: the limit of every proxied call
    /// (whole seconds; at least one).
    pub request_timeout: Duration,
    /// The Docker backend's settings (network, port, environment, grace...).
    pub docker: DockerConfig,
}

impl std::fmt::Debug for PortainerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PortainerConfig")
            .field("url", &self.url)
            .field("api_key", &self.api_key.as_ref().map(|_| "***"))
            .field("endpoint_id", &self.endpoint_id)
            .field("request_timeout", &self.request_timeout)
            .field("docker", &self.docker)
            .finish()
    }
}

impl PortainerConfig {
    /// A configuration for `url` with upstream's defaults: no key, endpoint 1, 30 s.
    pub fn new(url: impl Into<String>) -> Self {
        PortainerConfig {
            url: url.into(),
            api_key: None,
            endpoint_id: DEFAULT_ENDPOINT_ID,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            docker: DockerConfig::default(),
        }
    }

    /// The base URL without a trailing slash, checked by [`check_base_url`].
    fn base(&self) -> Result<&str, BackendError> {
        let base = check_base_url(&self.url).map_err(|why| {
            BackendError::unavailable(format!("ORCHESTRATOR_PORTAINER_URL {:?}: {why}", self.url))
        })?;
        if self.endpoint_id == 0 {
            return Err(BackendError::unavailable(
                "ORCHESTRATOR_PORTAINER_ENDPOINT_ID must be at least 1",
            ));
        }
        Ok(base)
    }

    /// Where the proxied Docker API of [`PortainerConfig::endpoint_id`] lives.
    pub fn proxy_prefix(&self) -> Result<String, BackendError> {
        Ok(format!(
            "{}/api/endpoints/{}/docker",
            self.base()?,
            self.endpoint_id
        ))
    }

    /// `GET` here tells whether Portainer answers (docs/COMPATIBILITY.md#backend-detection).
    pub fn status_url(&self) -> Result<String, BackendError> {
        Ok(format!("{}/api/status", self.base()?))
    }

    fn key_header(&self) -> Result<Option<HeaderValue>, BackendError> {
        self.api_key
            .as_deref()
            .filter(|k| !k.is_empty())
            .map(|k| {
                let mut v = HeaderValue::from_str(k).map_err(|_| {
                    BackendError::unavailable(
                        "ORCHESTRATOR_PORTAINER_API_KEY holds characters a header cannot \
                              carry"
                            .to_owned(),
                    )
                })?;
                v.set_sensitive(true);
                Ok(v)
            })
            .transpose()
    }
}

/// `url` without surrounding blanks and trailing slashes when it is `http(s)://host...`,
/// else why not (configuration checks it at start with this).
pub fn check_base_url(url: &str) -> Result<&str, &'static str> {
    let base = url.trim().trim_end_matches('/');
    let rest = base
        .strip_prefix("http://")
        .or_else(|| base.strip_prefix("https://"))
        .ok_or("expected an http:// or https:// URL")?;
    if rest.is_empty() || rest.starts_with('/') {
        return Err("no host");
    }
    Ok(base)
}

/// A bollard client whose every request goes to Portainer's Docker proxy of `config`:
/// the request's path and query are appended to [`PortainerConfig::proxy_prefix`] and the
/// API key is added. Plain HTTP and HTTPS (rustls on ring, the system's roots). No request
/// is made yet.
pub fn proxy_client(config: &PortainerConfig) -> Result<Docker, BackendError> {
    install_crypto_provider();
    let prefix = config.proxy_prefix()?;
    let key = config.key_header()?;
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_native_roots()
        .map_err(|e| {
            BackendError::unavailable_from(
                format!("no TLS root certificates for Portainer: {e}"),
                e,
            )
        })?
        .https_or_http()
        .enable_http1()
        .build();
    let client = Client::builder(TokioExecutor::new()).build(connector);
    let transport = move |request: BollardRequest| {
        let client = client.clone();
        let prefix = prefix.clone();
        let key = key.clone();
        async move {
            let (mut parts, body) = request.into_parts();
            let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
            parts.uri = format!("{prefix}{path}").parse()?;
            if let Some(k) = key {
                parts.headers.insert(API_KEY_HEADER, k);
            }
            // A proxied request carries Portainer's host, not the engine's.
            parts.headers.remove(http::header::HOST);
            client
                .request(BollardRequest::from_parts(parts, body))
                .await
                .map_err(bollard::errors::Error::from)
        }
    };
    let seconds = config.request_timeout.as_secs().max(1);
    Docker::connect_with_custom_transport(
        transport,
        Some(config.base()?.to_owned()),
        seconds,
        API_DEFAULT_VERSION,
    )
    .map_err(|e| {
        BackendError::unavailable(format!(
            "cannot create a client for Portainer at {}: {e}",
            config.url
        ))
    })
}

/// Portainer's own API, for the availability check.
#[derive(Clone)]
pub struct PortainerApi {
    http: reqwest::Client,
    status_url: String,
    key: Option<HeaderValue>,
    url: String,
    endpoint_id: u32,
    timeout: Duration,
}

impl std::fmt::Debug for PortainerApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PortainerApi")
            .field("url", &self.url)
            .field("endpoint_id", &self.endpoint_id)
            .field("api_key", &self.key.as_ref().map(|_| "***"))
            .finish_non_exhaustive()
    }
}

#[derive(serde::Deserialize)]
struct Status {
    #[serde(rename = "Version")]
    version: Option<String>,
}

impl PortainerApi {
    /// The API of `config`.
    pub fn new(config: &PortainerConfig) -> Result<Self, BackendError> {
        install_crypto_provider();
        let http = reqwest::Client::builder().build().map_err(|e| {
            BackendError::unavailable_from(format!("cannot create an HTTP client: {e}"), e)
        })?;
        Ok(PortainerApi {
            http,
            status_url: config.status_url()?,
            key: config.key_header()?,
            url: config.base()?.to_owned(),
            endpoint_id: config.endpoint_id,
            timeout: config.request_timeout.min(DETECTION_TIMEOUT),
        })
    }

    /// Portainer's version from `GET /api/status`, or why it did not answer (the reasons
    /// of docs/COMPATIBILITY.md#backend-detection).
    pub async fn status(&self) -> Result<Option<String>, String> {
        let mut request = self.http.get(&self.status_url).timeout(self.timeout);
        if let Some(k) = &self.key {
            request = request.header(API_KEY_HEADER, k.clone());
        }
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) if e.is_timeout() => return Err("Connection timeout".to_owned()),
            Err(e) => return Err(format!("Connection failed: {}", error_chain(&e))),
        };
        let code = response.status();
        if !code.is_success() {
            return Err(format!("Portainer returned {}", code.as_u16()));
        }
        // An answer without a version is still Portainer answering.
        Ok(response.json::<Status>().await.ok().and_then(|s| s.version))
    }

    /// Available when `/api/status` answers and the engine of our endpoint answers a ping
    /// through `docker` (the proxy client); the endpoint is shown as the reason.
    pub async fn availability(&self, docker: &Docker) -> Availability {
        let version = match self.status().await {
            Ok(v) => v,
            Err(reason) => return Availability::unavailable(reason),
        };
        let shown = version.as_deref().unwrap_or("(version unknown)");
        if let Err(e) = docker.ping().await {
            return Availability::unavailable(format!(
                "Portainer {shown} answers at {}, but the Docker engine of endpoint {} does \
                 not: {}",
                self.url,
                self.endpoint_id,
                super::engine::map_err(e)
            ));
        }
        Availability {
            available: true,
            reason: Some(format!("{} (endpoint {})", self.url, self.endpoint_id)),
            version,
        }
    }
}

/// `e` and its sources, `: `-joined (reqwest's own message hides the cause).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

impl DockerBackend {
    /// The Docker backend through Portainer (module docs): a client of the proxy, the API
    /// version agreed with the engine when it answers (else bollard's default; the
    /// availability check says why), and Portainer's availability check.
    pub async fn connect_portainer(config: PortainerConfig) -> Result<Self, BackendError> {
        let docker = proxy_client(&config)?;
        let api = PortainerApi::new(&config)?;
        let docker = match docker.clone().negotiate_version().await {
            Ok(d) => d,
            Err(e) => {
                tracing::debug!(error = %e, "no API version agreed through Portainer yet");
                docker
            }
        };
        Ok(DockerBackend::new(docker, config.docker).through_portainer(api))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_and_built() {
        let mut c = PortainerConfig::new("https://ops.example/portainer/");
        c.endpoint_id = 3;
        assert_eq!(
            c.proxy_prefix().unwrap(),
            "https://ops.example/portainer/api/endpoints/3/docker"
        );
        assert_eq!(
            c.status_url().unwrap(),
            "https://ops.example/portainer/api/status"
        );
        for bad in ["", "portainer:9000", "ftp://x", "http://", "http:///x"] {
            let e = PortainerConfig::new(bad).proxy_prefix().unwrap_err();
            assert!(
                matches!(&e, BackendError::Unavailable { reason, .. } if reason.contains("ORCHESTRATOR_PORTAINER_URL")),
                "{bad}: {e}"
            );
        }
        c.endpoint_id = 0;
        assert!(c.status_url().is_err());
    }

    #[test]
    fn the_key_is_never_shown() {
        let mut c = PortainerConfig::new("http://p:9000");
        c.api_key = Some("ptr_secret".to_owned());
        assert!(!format!("{c:?}").contains("ptr_secret"));
        let api = PortainerApi::new(&c).unwrap();
        assert!(!format!("{api:?}").contains("ptr_secret"));
        c.api_key = Some("bad\nkey".to_owned());
        assert!(matches!(
            PortainerApi::new(&c),
            Err(BackendError::Unavailable { .. })
        ));
    }

    #[tokio::test]
    async fn an_unreachable_portainer_is_unavailable_with_the_reason() {
        // A port nothing listens on: bind one, note it, close it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let c = PortainerConfig::new(format!("http://127.0.0.1:{port}"));
        let api = PortainerApi::new(&c).unwrap();
        let docker = proxy_client(&c).unwrap();
        let a = api.availability(&docker).await;
        assert!(!a.available);
        let reason = a.reason.unwrap();
        assert!(reason.starts_with("Connection failed: "), "{reason}");
    }
}

//! The OpenResty route-cache invalidation request of
//! docs/COMPATIBILITY.md#openresty-invalidation, described as data.
//!
//! Policy: best effort, bounded timeout, never fails a deploy. The adapter that sends it
//! (`orchestrator_backends::http`) logs any failure and maps it to [`InvalidationOutcome`]; nothing propagates.

use std::fmt;
use std::time::Duration;

/// `OpenRestyHost` default (docs/COMPATIBILITY.md#configuration-variables).
pub const DEFAULT_OPENRESTY_HOST: &str = "openresty";
/// `OpenRestyPort` default (docs/COMPATIBILITY.md#configuration-variables).
pub const DEFAULT_OPENRESTY_PORT: u16 = 80;
/// `OpenRestyRequestTimeoutSeconds` default (docs/COMPATIBILITY.md#configuration-variables).
pub const DEFAULT_OPENRESTY_TIMEOUT: Duration = Duration::from_secs(5);
/// Path of the invalidation endpoint; OpenResty clears entries prefixed `route_cache:`.
pub const INVALIDATE_PATH: &str = "/internal/cache/invalidate";

/// A configuration value docs/COMPATIBILITY.md#configuration-variables rejects.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidationConfigError {
    /// `OpenRestyHost` empty or containing whitespace or `/`.
    #[error("OpenResty host `{0}` is not a host name")]
    BadHost(String),
    /// `OpenRestyPort` 0 (must be 1..=65535).
    #[error("OpenResty port must be in 1..=65535")]
    ZeroPort,
    /// `OpenRestyRequestTimeoutSeconds` below one second.
    #[error("OpenResty request timeout {0:?} is below one second")]
    TimeoutTooShort(Duration),
}

/// Where OpenResty listens and how long to wait for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenRestyConfig {
    host: String,
    port: u16,
    timeout: Duration,
}

impl Default for OpenRestyConfig {
    /// `openresty:80`, 5 s.
    fn default() -> Self {
        OpenRestyConfig {
            host: DEFAULT_OPENRESTY_HOST.to_owned(),
            port: DEFAULT_OPENRESTY_PORT,
            timeout: DEFAULT_OPENRESTY_TIMEOUT,
        }
    }
}

impl OpenRestyConfig {
    /// Validated configuration: non-blank host without `/` or whitespace, port >= 1,
    /// timeout >= 1 s (docs/COMPATIBILITY.md#configuration-variables constraints).
    pub fn new(
        host: impl Into<String>,
        port: u16,
        timeout: Duration,
    ) -> Result<Self, InvalidationConfigError> {
        let host = host.into();
        let trimmed = host.trim();
        if trimmed.is_empty() || trimmed.contains(|c: char| c.is_whitespace() || c == '/') {
            return Err(InvalidationConfigError::BadHost(host));
        }
        if port == 0 {
            return Err(InvalidationConfigError::ZeroPort);
        }
        if timeout < Duration::from_secs(1) {
            return Err(InvalidationConfigError::TimeoutTooShort(timeout));
        }
        Ok(OpenRestyConfig {
            host: trimmed.to_owned(),
            port,
            timeout,
        })
    }

    /// The host.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The request timeout (covers connect and response).
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The request to send: `POST http://{host}:{port}/internal/cache/invalidate`, empty
    /// body, this timeout. IPv6 literals are bracketed.
    pub fn invalidation_request(&self) -> InvalidationRequest {
        let host = if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        InvalidationRequest {
            method: HttpMethod::Post,
            url: format!("http://{host}:{}{INVALIDATE_PATH}", self.port),
            body: Vec::new(),
            timeout: self.timeout,
        }
    }
}

/// HTTP method of a described request (only POST is needed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpMethod {
    /// `POST`.
    Post,
}

impl fmt::Display for HttpMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HttpMethod::Post => "POST",
        })
    }
}

/// A fully described HTTP request; the adapter sends it as is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidationRequest {
    /// Always POST.
    pub method: HttpMethod,
    /// Absolute URL.
    pub url: String,
    /// Request body: empty.
    pub body: Vec<u8>,
    /// Bound on the whole call; past it the call counts as failed.
    pub timeout: Duration,
}

/// When upstream invalidates (docs/COMPATIBILITY.md#openresty-invalidation); not after a
/// normal deploy or a topology change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidationTrigger {
    /// Deploy auto-cleanup of previously tracked nodes (docs/COMPATIBILITY.md#deploy).
    DeployAutoCleanup,
    /// Reset to the default topology when something was tracked (docs/COMPATIBILITY.md#deploy).
    ResetToDefault,
}

/// How a best-effort invalidation ended. Never an error for the caller: a deploy goes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvalidationOutcome {
    /// OpenResty accepted the request (the HTTP adapter judges its answer).
    Invalidated,
    /// Connection refused, timeout or a refusal; logged and ignored (routes then
    /// refresh within OpenResty's 10 s cache lifetime).
    Ignored {
        /// What went wrong, for the log.
        reason: String,
    },
}

impl InvalidationOutcome {
    /// The outcome of a failure (refused, timed out, refused by OpenResty, ...).
    pub fn from_failure(reason: impl fmt::Display) -> Self {
        InvalidationOutcome::Ignored {
            reason: reason.to_string(),
        }
    }

    /// True when the cache was cleared.
    pub fn is_invalidated(&self) -> bool {
        matches!(self, InvalidationOutcome::Invalidated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_request_matches_spec_6_6() {
        let req = OpenRestyConfig::default().invalidation_request();
        assert_eq!(req.method.to_string(), "POST");
        assert_eq!(req.url, "http://openresty:80/internal/cache/invalidate");
        assert!(req.body.is_empty());
        assert_eq!(req.timeout, Duration::from_secs(5));
    }

    #[test]
    fn configured_host_port_and_timeout_are_used_and_validated() {
        let cfg = OpenRestyConfig::new(" edge ", 8080, Duration::from_secs(2)).unwrap();
        assert_eq!(
            cfg.invalidation_request().url,
            "http://edge:8080/internal/cache/invalidate"
        );
        let v6 = OpenRestyConfig::new("::1", 81, Duration::from_secs(1)).unwrap();
        assert_eq!(
            v6.invalidation_request().url,
            "http://[::1]:81/internal/cache/invalidate"
        );
        assert!(matches!(
            OpenRestyConfig::new("", 80, Duration::from_secs(5)),
            Err(InvalidationConfigError::BadHost(_))
        ));
        assert!(OpenRestyConfig::new("a/b", 80, Duration::from_secs(5)).is_err());
        assert_eq!(
            OpenRestyConfig::new("x", 0, Duration::from_secs(5)),
            Err(InvalidationConfigError::ZeroPort)
        );
        assert!(OpenRestyConfig::new("x", 80, Duration::from_millis(500)).is_err());
    }

    #[test]
    fn outcomes_never_fail_the_caller() {
        assert!(InvalidationOutcome::Invalidated.is_invalidated());
        let refused = InvalidationOutcome::from_failure("connection refused");
        assert_eq!(
            refused,
            InvalidationOutcome::Ignored {
                reason: "connection refused".into()
            }
        );
    }
}

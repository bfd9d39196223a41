//! Bearer-token authentication of the API (D31 (docs/DECISIONS.md#d31)): when a token is
//! configured, every route except `GET /health` requires `Authorization: Bearer <token>`
//! and answers 401 (with `WWW-Authenticate: Bearer` and an `ApiError` body) otherwise.
//! The token is compared in constant time.

use std::fmt;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use orchestrator_core::api::ApiError;

use crate::config::HostConfig;

/// Who may call the API: anyone (no token) or holders of one bearer token. Cheap to
/// clone; `Debug` never prints the token.
#[derive(Clone, Default)]
pub struct ApiAuth {
    token: Option<Arc<str>>,
}

impl fmt::Debug for ApiAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiAuth")
            .field("token", &self.token.as_ref().map(|_| "***"))
            .finish()
    }
}

impl ApiAuth {
    /// No authentication (loopback-only deployments and tests).
    pub fn none() -> Self {
        ApiAuth { token: None }
    }

    /// Requests must carry `Authorization: Bearer <token>`.
    pub fn bearer(token: impl AsRef<str>) -> Self {
        ApiAuth {
            token: Some(Arc::from(token.as_ref())),
        }
    }

    /// The token of `config` (`ORCHESTRATOR_API_TOKEN`), if any.
    pub fn from_config(config: &HostConfig) -> Self {
        match &config.api_token {
            Some(t) => Self::bearer(t.expose()),
            None => Self::none(),
        }
    }

    /// Whether a token is required.
    pub fn is_enabled(&self) -> bool {
        self.token.is_some()
    }

    /// Whether `headers` carry the right credentials (always, when no token is set).
    /// The scheme is case-insensitive (RFC 7235); the token is compared in constant time.
    pub fn authorizes(&self, headers: &HeaderMap) -> bool {
        let Some(expected) = &self.token else {
            return true;
        };
        let Some(value) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        else {
            return false;
        };
        let Some((scheme, presented)) = value.trim().split_once(' ') else {
            return false;
        };
        scheme.eq_ignore_ascii_case("bearer")
            && constant_time_eq(presented.trim().as_bytes(), expected.as_bytes())
    }
}

/// Equality whose running time depends only on the lengths, not on where the inputs
/// differ (the length of the token is not a secret worth hiding).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// The middleware: passes authorised requests on, answers 401 otherwise.
pub async fn require_bearer(State(auth): State<ApiAuth>, request: Request, next: Next) -> Response {
    if auth.authorizes(request.headers()) {
        return next.run(request).await;
    }
    let mut response = super::json_response(
        401,
        &ApiError::new("missing or invalid bearer token (Authorization: Bearer <token>)"),
    );
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer"),
    );
    response.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, value.parse().unwrap());
        h
    }

    #[test]
    fn only_the_exact_token_with_the_bearer_scheme_passes() {
        let auth = ApiAuth::bearer("s3cret");
        assert!(auth.authorizes(&headers("Bearer s3cret")));
        assert!(auth.authorizes(&headers("bearer s3cret")));
        assert!(!auth.authorizes(&headers("Bearer s3cre")));
        assert!(!auth.authorizes(&headers("Bearer s3cretx")));
        assert!(!auth.authorizes(&headers("Basic s3cret")));
        assert!(!auth.authorizes(&headers("s3cret")));
        assert!(!auth.authorizes(&HeaderMap::new()));
        assert!(ApiAuth::none().authorizes(&HeaderMap::new()));
        assert!(!format!("{auth:?}").contains("s3cret"));
    }
}

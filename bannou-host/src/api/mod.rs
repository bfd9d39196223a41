//! The orchestrator's HTTP API (axum): the 22 `POST /orchestrator/...` endpoints of
//! docs/COMPATIBILITY.md#endpoints and ours (renew, drain, promote, abort), `GET /health`, and the OpenAPI document (`GET /openapi.json`,
//! `GET /openapi.yaml`).
//!
//! Where to start: [`router`] builds everything. Each endpoint group has its own file,
//! mirroring `crate::orchestrator::service` (`deploy`, `topology`, `config`, `health`,
//! `containers`, `pools`); every handler does the same three things through [`call`]:
//! decode the body ([`decode`]: 400 with an [`ApiError`] naming the field, and the service
//! is not called), call the one service method, and turn its [`Answer`] or
//! [`ServiceError`](crate::orchestrator::service::ServiceError) into a response with the
//! status `error_status` gives and a JSON body.
//!
//! Every route except `/health` and the status page (`GET /` and its static assets,
//! [`status_page`]) requires `Authorization: Bearer <token>` when an
//! [`ApiAuth`] token is configured ([`auth`]). Requests are logged by `tower-http`'s
//! `TraceLayer` (target `tower_http::trace`, debug level), each in the span of
//! [`crate::traces::http_span`] (the root of its trace, or the caller's `traceparent`).

use std::future::Future;

use axum::Router;
use axum::body::Bytes;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get};
use orchestrator_core::api::{ApiError, FieldError, Validate};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::orchestrator::service::{Answer, OrchestratorService, ServiceResult};

pub mod auth;
mod config;
mod containers;
mod deploy;
pub mod error_status;
pub mod events;
mod health;
pub mod liveness;
pub mod openapi;
mod pools;
pub mod status_page;
mod topology;

pub use auth::ApiAuth;

/// One endpoint: its path and its `POST` handler.
type Endpoint = (&'static str, MethodRouter<OrchestratorService>);

/// `(path, POST handler)` for an endpoint whose handler calls `OrchestratorService::$method`.
macro_rules! endpoint {
    ($path:literal => $method:ident) => {
        (
            $path,
            ::axum::routing::post(
                |::axum::extract::State(service): ::axum::extract::State<
                    $crate::orchestrator::service::OrchestratorService,
                >,
                 body: ::axum::body::Bytes| async move {
                    $crate::api::call(body, move |request| async move {
                        service.$method(request).await
                    })
                    .await
                },
            ),
        )
    };
}
pub(crate) use endpoint;

/// Every endpoint of every group, in spec order within each group.
fn endpoints() -> Vec<Endpoint> {
    let mut all = Vec::with_capacity(26);
    all.extend(health::endpoints());
    all.extend(containers::endpoints());
    all.extend(deploy::endpoints());
    all.extend(topology::endpoints());
    all.extend(config::endpoints());
    all.extend(pools::endpoints());
    all
}

/// The paths of the orchestrator endpoints, upstream's 22 and ours (all `POST`).
pub fn endpoint_paths() -> Vec<&'static str> {
    endpoints().into_iter().map(|(path, _)| path).collect()
}

/// Every path the bearer token protects: the endpoints, the OpenAPI document, the event stream and the
/// metrics.
pub fn protected_paths() -> Vec<&'static str> {
    let mut paths = endpoint_paths();
    paths.extend([openapi::JSON_PATH, openapi::YAML_PATH, crate::metrics::PATH]);
    paths.push(events::PATH);
    paths
}

/// The API over `service`: the endpoints, the OpenAPI document and `GET /metrics`
/// (the service's registry) behind `auth`, plus the unauthenticated `GET /health`, with
/// request tracing and every request counted in the metrics.
pub fn router(service: OrchestratorService, auth: ApiAuth) -> Router {
    let metrics = service.metrics().clone();
    let mut protected = Router::new();
    for (path, handler) in endpoints() {
        protected = protected.route(path, handler);
    }
    let protected = protected
        .route(openapi::JSON_PATH, get(openapi::serve_json))
        .route(openapi::YAML_PATH, get(openapi::serve_yaml))
        // The host adds its `EventHub` as an extension; without one the route answers 503.
        .route(events::PATH, get(events::stream))
        .route(
            crate::metrics::PATH,
            get(crate::metrics::serve).with_state(metrics.clone()),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            auth,
            auth::require_bearer,
        ));
    Router::new()
        .merge(protected)
        .route(liveness::PATH, get(liveness::health))
        .merge(status_page::routes())
        .with_state(service)
        .layer(axum::middleware::from_fn_with_state(
            metrics,
            crate::metrics::track_http,
        ))
        .layer(crate::traces::http_layer())
}

/// What every endpoint handler does: decode `body` as `Req` (400 naming the field, `f`
/// not called), call `f`, and answer with its status and JSON body.
pub async fn call<Req, Resp, Fut>(body: Bytes, f: impl FnOnce(Req) -> Fut) -> Response
where
    Req: DeserializeOwned + Validate,
    Resp: Serialize,
    Fut: Future<Output = ServiceResult<Resp>>,
{
    match decode::<Req>(&body) {
        Ok(request) => respond(f(request).await),
        Err(error) => json_response(400, &error),
    }
}

/// Parses and validates a request body, which must be a JSON object. An empty (or
/// all-whitespace) body counts as `{}`. A body that does not parse names the JSON path at fault (`topology.nodes[0].name`,
/// including the name of a missing field); a body that breaks a rule names the field
/// [`Validate`] reports.
pub fn decode<T: DeserializeOwned + Validate>(body: &[u8]) -> Result<T, ApiError> {
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    // Serde would take a JSON array as a struct's fields in order; requests are objects.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::new(
            "invalid request body: expected a JSON object",
        ));
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let request: T = match serde_path_to_error::deserialize(&mut de) {
        Ok(r) => r,
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner();
            return Err(body_error(field_at(&path, &inner.to_string()), &inner));
        }
    };
    de.end().map_err(|e| body_error(None, &e))?;
    request.validate().map_err(ApiError::from)?;
    Ok(request)
}

/// The JSON path at fault: `path` (serde_path_to_error's), extended by
/// the field name of a "missing field" message.
fn field_at(path: &str, message: &str) -> Option<String> {
    // `.` is the root; `?` a position serde could not name (a syntax error).
    let path = if matches!(path, "." | "?") { "" } else { path };
    let missing = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split_once('`'))
        .map(|(name, _)| name);
    match (path, missing) {
        ("", None) => None,
        ("", Some(name)) => Some(name.to_owned()),
        (p, None) => Some(p.to_owned()),
        (p, Some(name)) => Some(FieldError::new(name, "").under(p).field),
    }
}

fn body_error(field: Option<String>, e: &serde_json::Error) -> ApiError {
    let error = match &field {
        Some(f) => format!("invalid request body: {f}: {e}"),
        None => format!("invalid request body: {e}"),
    };
    ApiError { error, field }
}

/// An [`Answer`] as its outcome's status and its JSON body; a
/// [`ServiceError`](crate::orchestrator::service::ServiceError) as its kind's status and its
/// [`ApiError`] body (both from [`error_status`]).
pub fn respond<T: Serialize>(result: ServiceResult<T>) -> Response {
    match result {
        Ok(Answer { outcome, body }) => json_response(error_status::outcome_status(outcome), &body),
        Err(e) => json_response(e.status(), &e.body),
    }
}

/// `status` (500 when it is not a valid HTTP status) with `body` as JSON.
pub fn json_response<T: Serialize + ?Sized>(status: u16, body: &T) -> Response {
    let status = StatusCode::from_u16(status)
        .ok()
        .filter(|s| !s.is_informational())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    match serde_json::to_vec(body) {
        Ok(bytes) => (status, [(header::CONTENT_TYPE, "application/json")], bytes).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "response body does not serialise");
            let body = serde_json::to_vec(&ApiError::new(format!(
                "response body does not serialise: {e}"
            )))
            .unwrap_or_default();
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                [(header::CONTENT_TYPE, "application/json")],
                body,
            )
                .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use orchestrator_core::api::{AcquireProcessorRequest, DeployRequest, TeardownRequest};

    use crate::orchestrator::service::{ErrorKind, Outcome, ServiceError};

    use super::*;

    async fn body_json(r: Response) -> (u16, serde_json::Value) {
        let status = r.status().as_u16();
        let bytes = axum::body::to_bytes(r.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn answers_and_errors_keep_their_status_and_json_body() {
        let (s, b) = body_json(respond(Ok(Answer::ok(serde_json::json!({"a": 1}))))).await;
        assert_eq!((s, b), (200, serde_json::json!({"a": 1})));
        let (s, b) = body_json(respond(Ok(Answer::with_outcome(
            Outcome::Failed,
            serde_json::json!({"success": false}),
        ))))
        .await;
        assert_eq!((s, b), (500, serde_json::json!({"success": false})));
        for (kind, status) in [
            (ErrorKind::Invalid, 400),
            (ErrorKind::NotFound, 404),
            (ErrorKind::Conflict, 409),
            (ErrorKind::Busy, 429),
            (ErrorKind::Internal, 500),
            (ErrorKind::Unavailable, 503),
        ] {
            let r = respond::<()>(Err(ServiceError::of(kind, "nope")));
            assert_eq!(
                r.headers()[header::CONTENT_TYPE],
                "application/json",
                "{status}"
            );
            let (s, b) = body_json(r).await;
            assert_eq!((s, b), (status, serde_json::json!({"error": "nope"})));
        }
        let (s, _) = body_json(json_response(42, &ApiError::new("bad status"))).await;
        assert_eq!(s, 500, "an invalid status becomes 500");
    }

    #[test]
    fn decode_names_nested_and_missing_fields() {
        let e = decode::<DeployRequest>(
            br#"{"topology": {"nodes": [{"name": "a"}, {"name": "b", "services": [1]}]}}"#,
        )
        .unwrap_err();
        assert_eq!(
            e.field.as_deref(),
            Some("topology.nodes[1].services[0]"),
            "{e:?}"
        );
        assert!(
            e.error
                .starts_with("invalid request body: topology.nodes[1].services[0]: ")
        );
        let e = decode::<DeployRequest>(br#"{"topology": {"nodes": [{}]}}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("topology.nodes[0].name"), "{e:?}");
        let e = decode::<AcquireProcessorRequest>(b"{}").unwrap_err();
        assert_eq!(e.field.as_deref(), Some("poolType"));
        let e = decode::<AcquireProcessorRequest>(br#"{"poolType": " "}"#).unwrap_err();
        assert_eq!(
            e.field.as_deref(),
            Some("poolType"),
            "validation names it too"
        );
        let e = decode::<TeardownRequest>(br#"{"mode": "sideways"}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("mode"));
        let e = decode::<TeardownRequest>(b"{not json").unwrap_err();
        assert_eq!(e.field, None);
        let e = decode::<DeployRequest>(b"[]").unwrap_err();
        assert_eq!(e.field, None, "an array is not a request");
        let e = decode::<TeardownRequest>(b"{} {}").unwrap_err();
        assert_eq!(e.field, None, "trailing content is rejected");
        decode::<TeardownRequest>(b"").unwrap();
        decode::<TeardownRequest>(b" \n ").unwrap();
    }
}

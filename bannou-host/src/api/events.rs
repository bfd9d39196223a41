//! `GET /orchestrator/events`: the control plane's events as Server-Sent Events (axum's
//! SSE support), fed by the host's [`EventHub`] (`crate::event_stream`).
//!
//! Each event has an `id` (this replica's number), an `event:` type name and the bus
//! event's JSON as `data`. `Last-Event-ID` resumes after that id from the hub's buffer, or
//! sends a `reset` event (re-read the state) and goes on live. `?types=a,b` (names or
//! prefixes such as `wave`) and `?deployment=<id>` filter. A client that falls behind gets
//! a `lagged` event and is disconnected. Behind the bearer token like the rest of the API.

use std::convert::Infallible;
use std::time::Duration;

use axum::Extension;
use axum::extract::Query;
use axum::extract::rejection::QueryRejection;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use orchestrator_core::api::ApiError;
use serde::Deserialize;

use crate::event_stream::{EventHub, Filter, StreamItem};

/// The path.
pub const PATH: &str = "/orchestrator/events";

/// How often an idle stream sends a keep-alive comment (proxies close silent streams).
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The query string.
#[derive(Debug, Default, Deserialize)]
pub struct EventsQuery {
    /// Comma-separated event types or prefixes.
    pub types: Option<String>,
    /// Only this deployment's events.
    pub deployment: Option<String>,
}

/// The handler: 400 naming `types` for an unknown type, 503 when the host runs no hub
/// (or is stopping), else the stream.
pub async fn stream(
    hub: Option<Extension<EventHub>>,
    query: Result<Query<EventsQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let Query(query) = match query {
        Ok(q) => q,
        Err(e) => return super::json_response(400, &ApiError::new(e.body_text())),
    };
    let types = match Filter::parse_types(query.types.as_deref().unwrap_or("")) {
        Ok(t) => t,
        Err(message) => {
            let mut error = ApiError::new(message);
            error.field = Some("types".to_owned());
            return super::json_response(400, &error);
        }
    };
    let filter = Filter {
        types,
        deployment: query.deployment.filter(|d| !d.is_empty()),
    };
    // A `Last-Event-ID` that is not a number cannot be ours: treat it as too old.
    let last = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().parse::<u64>().unwrap_or(0));
    let Some(Extension(hub)) = hub else {
        return unavailable();
    };
    let Some(items) = hub.subscribe(filter, last) else {
        return unavailable();
    };
    // A comment first: the response (and so the subscription) is visibly open at once.
    let open = futures::stream::once(async { Ok(Event::default().comment("stream open")) });
    let events = items.map(|item| Ok::<_, Infallible>(sse_event(&item)));
    Sse::new(open.chain(events))
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response()
}

fn unavailable() -> Response {
    super::json_response(503, &ApiError::new("the event stream is not running"))
}

/// One item as an SSE event.
fn sse_event(item: &StreamItem) -> Event {
    match item {
        StreamItem::Event(e) => {
            let event = Event::default().event(e.kind).data(e.data.as_ref());
            match e.id {
                Some(id) => event.id(id.to_string()),
                None => event,
            }
        }
        StreamItem::Reset { requested, oldest } => Event::default().event("reset").data(
            serde_json::json!({
                "requested": requested,
                "oldest": oldest,
                "reason": "events after the requested id are no longer buffered: re-read the state",
            })
            .to_string(),
        ),
        StreamItem::Lagged { skipped } => Event::default().event("lagged").data(
            serde_json::json!({
                "skipped": skipped,
                "reason": "this client fell behind and is disconnected: reconnect with Last-Event-ID",
            })
            .to_string(),
        ),
    }
}

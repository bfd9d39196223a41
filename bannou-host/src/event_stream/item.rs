//! What a client's stream carries: [`StreamEvent`] (one numbered event, its text and SSE
//! frame made at most once and shared) and [`StreamItem`] (an event, a `reset` or a
//! `lagged` notice), framed by axum's own SSE writer ([`sse_frame`]).

use std::convert::Infallible;
use std::sync::{Arc, OnceLock};

use axum::body::Bytes;
use axum::response::IntoResponse;
use axum::response::sse::{Event as SseEvent, Sse};
use futures::FutureExt;
use futures::stream::{self, StreamExt};
use orchestrator_core::ports::bus::Payload;

/// One event as clients receive it. Its text and SSE frame are made on first use, once,
/// and shared by every client that gets it: an event nobody reads costs no encoding.
#[derive(Debug, Clone)]
pub struct StreamEvent {
    /// Its number on this replica (`None` for raw heartbeats, which are not buffered).
    pub id: Option<u64>,
    /// The event type (one of [`EVENT_TYPES`](super::EVENT_TYPES)).
    pub kind: &'static str,
    /// The deployment it belongs to, when it names one.
    pub deployment: Option<String>,
    /// The event as published on the bus (JSON, encoded on first use when typed).
    body: Payload,
    /// [`Self::data`], made once.
    data: OnceLock<Arc<str>>,
    /// [`Self::frame`], made once.
    frame: OnceLock<Bytes>,
}

impl StreamEvent {
    pub(super) fn new(
        id: Option<u64>,
        kind: &'static str,
        deployment: Option<String>,
        body: Payload,
    ) -> Self {
        StreamEvent {
            id,
            kind,
            deployment,
            body,
            data: OnceLock::new(),
            frame: OnceLock::new(),
        }
    }

    /// The event's JSON as published on the bus.
    pub fn data(&self) -> &str {
        self.data
            .get_or_init(|| String::from_utf8_lossy(self.body.as_bytes()).into())
    }

    /// The event as an SSE frame (`event:`, `data:`, `id:` lines and the blank line that
    /// ends it), formatted by [`sse_frame`] the first time a client needs it.
    pub fn frame(&self) -> Bytes {
        self.frame
            .get_or_init(|| {
                let event = SseEvent::default().event(self.kind).data(self.data());
                sse_frame(match self.id {
                    Some(id) => event.id(id.to_string()),
                    None => event,
                })
            })
            .clone()
    }
}

impl PartialEq for StreamEvent {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
            && self.kind == other.kind
            && self.deployment == other.deployment
            && self.body == other.body
    }
}

impl Eq for StreamEvent {}

/// What a client's stream yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamItem {
    /// An event.
    Event(Arc<StreamEvent>),
    /// The requested `Last-Event-ID` is no longer (or never was) in the buffer: the client
    /// must re-read the state; live events follow.
    Reset {
        /// The id the client asked to resume after.
        requested: u64,
        /// The oldest id still buffered, if any.
        oldest: Option<u64>,
    },
    /// The client fell behind by `skipped` events; its stream ends after this.
    Lagged {
        /// How many events it missed.
        skipped: u64,
    },
}

impl StreamItem {
    /// The item as an SSE frame: an event's shared frame, or a `reset` / `lagged` event
    /// whose data says what happened and what to do.
    pub fn frame(&self) -> Bytes {
        match self {
            StreamItem::Event(e) => e.frame(),
            StreamItem::Reset { requested, oldest } => sse_frame(
                SseEvent::default().event("reset").data(
                    serde_json::json!({
                        "requested": requested,
                        "oldest": oldest,
                        "reason": "events after the requested id are no longer buffered: re-read the state",
                    })
                    .to_string(),
                ),
            ),
            StreamItem::Lagged { skipped } => sse_frame(
                SseEvent::default().event("lagged").data(
                    serde_json::json!({
                        "skipped": skipped,
                        "reason": "this client fell behind and is disconnected: reconnect with Last-Event-ID",
                    })
                    .to_string(),
                ),
            ),
        }
    }
}

/// `event` as axum's SSE response writes it: the bytes of a one-event [`Sse`] body, so
/// the framing is axum's own. That body is ready at once and cannot fail; were it ever
/// not, the frame would be empty (the tests compare frames with axum's output).
pub fn sse_frame(event: SseEvent) -> Bytes {
    let body = Sse::new(stream::iter([Ok::<_, Infallible>(event)]))
        .into_response()
        .into_body();
    match body.into_data_stream().next().now_or_never() {
        Some(Some(Ok(frame))) => frame,
        _ => Bytes::new(),
    }
}

//! `GET /orchestrator/events`: the control plane's events as Server-Sent Events (axum's
//! SSE support), fed by the host's [`EventHub`] (`crate::event_stream`).
//!
//! Each event has an `id` (this replica's number), an `event:` type name and the bus
//! event's JSON as `data`. `Last-Event-ID` resumes after that id from the hub's buffer, or
//! sends a `reset` event (re-read the state) and goes on live. `?types=a,b` (names or
//! prefixes such as `wave`) and `?deployment=<id>` filter. A client that falls behind gets
//! a `lagged` event and is disconnected. Behind the bearer token like the rest of the API.
//!
//! The frames come formatted from the hub (axum's SSE format, shared by every client);
//! the first after a quiet spell waits [`GATHER`] for those that follow, the ones waiting
//! then go out as one chunk, and a keep-alive comment follows [`KEEP_ALIVE`] of silence.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::LazyLock;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Extension;
use axum::body::{Body, Bytes};
use axum::extract::Query;
use axum::extract::rejection::QueryRejection;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::sse::Event;
use axum::response::{IntoResponse, Response};
use futures::stream::{self, BoxStream, Stream, StreamExt};
use orchestrator_core::api::ApiError;
use serde::Deserialize;
use tokio::time::{Instant, Sleep};

use crate::event_stream::{EventHub, Filter, sse_frame};

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
    let frames = stream::once(async { STREAM_OPEN.clone() })
        .chain(items.map(|item| item.frame()))
        .boxed();
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        Body::from_stream(ClientBody::new(frames, KEEP_ALIVE, GATHER)),
    )
        .into_response()
}

fn unavailable() -> Response {
    super::json_response(503, &ApiError::new("the event stream is not running"))
}

/// The comment that opens every stream.
static STREAM_OPEN: LazyLock<Bytes> =
    LazyLock::new(|| sse_frame(Event::default().comment("stream open")));

/// The keep-alive comment, as axum's `KeepAlive` sends it.
static KEEP_ALIVE_FRAME: LazyLock<Bytes> = LazyLock::new(|| sse_frame(Event::DEFAULT_KEEP_ALIVE));

/// At most this many bytes of ready frames are joined into one chunk.
const MAX_CHUNK: usize = 64 * 1024;

/// How long a client's first frame after a quiet spell waits for the ones that follow it,
/// so that a burst (a deploy's waves, a pool's leases) goes out in a few writes instead of
/// one per event (D57 (docs/DECISIONS.md#d57)).
pub const GATHER: Duration = Duration::from_millis(50);

/// One client's response body: its frames, those already waiting joined into one chunk
/// (one write for what piled up while the connection's task was not running), and a
/// keep-alive comment after `keep_alive` without a frame. With a non-zero `gather`, the
/// first frame after a quiet spell is held that long and goes out with those that
/// arrived meanwhile; the frames are not polled while it is held, so a burst wakes the
/// connection's task a few times instead of once per frame.
struct ClientBody {
    frames: BoxStream<'static, Bytes>,
    gather: Duration,
    /// Frames held until `gathering` fires.
    held: Vec<u8>,
    /// Running while frames are held.
    gathering: Option<Pin<Box<Sleep>>>,
    /// The frames ended: the body ends once what was gathered is sent.
    ended: bool,
    keep_alive: Duration,
    /// When the last chunk went out; the timer is moved on from it only when it fires,
    /// so a frame costs no timer update.
    last_sent: Instant,
    timer: Pin<Box<Sleep>>,
}

impl ClientBody {
    fn new(
        frames: BoxStream<'static, Bytes>,
        keep_alive: Duration,
        gather: Duration,
    ) -> ClientBody {
        let now = Instant::now();
        ClientBody {
            frames,
            gather,
            held: Vec::new(),
            gathering: None,
            ended: false,
            keep_alive,
            last_sent: now,
            timer: Box::pin(tokio::time::sleep_until(now + keep_alive)),
        }
    }

    /// Every frame ready now (up to [`MAX_CHUNK`] bytes) as one chunk; `None` when none is.
    fn ready_chunk(&mut self, cx: &mut Context<'_>) -> Option<Bytes> {
        let mut first: Option<Bytes> = None;
        let mut joined: Vec<u8> = Vec::new();
        let size = |first: &Option<Bytes>, joined: &Vec<u8>| {
            if joined.is_empty() {
                first.as_ref().map_or(0, Bytes::len)
            } else {
                joined.len()
            }
        };
        while !self.ended && size(&first, &joined) < MAX_CHUNK {
            match self.frames.poll_next_unpin(cx) {
                Poll::Ready(Some(frame)) => match &first {
                    None => first = Some(frame),
                    Some(f) => {
                        if joined.is_empty() {
                            joined.extend_from_slice(f);
                        }
                        joined.extend_from_slice(&frame);
                    }
                },
                Poll::Ready(None) => self.ended = true,
                Poll::Pending => break,
            }
        }
        if joined.is_empty() {
            first
        } else {
            Some(Bytes::from(joined))
        }
    }
}

impl Stream for ClientBody {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if let Some(gathering) = this.gathering.as_mut() {
                if gathering.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                this.gathering = None;
                let mut chunk = std::mem::take(&mut this.held);
                if let Some(more) = this.ready_chunk(cx) {
                    chunk.extend_from_slice(&more);
                }
                this.last_sent = Instant::now();
                return Poll::Ready(Some(Ok(Bytes::from(chunk))));
            }
            let Some(chunk) = this.ready_chunk(cx) else {
                break;
            };
            if this.gather.is_zero() || this.ended {
                this.last_sent = Instant::now();
                return Poll::Ready(Some(Ok(chunk)));
            }
            // Held; polling the timer next registers the wake-up for when it ends.
            this.held.extend_from_slice(&chunk);
            this.gathering = Some(Box::pin(tokio::time::sleep(this.gather)));
        }
        if this.ended {
            return Poll::Ready(None);
        }
        loop {
            if this.timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            let due = this.last_sent + this.keep_alive;
            let now = Instant::now();
            if due <= now {
                this.last_sent = now;
                this.timer.as_mut().reset(now + this.keep_alive);
                return Poll::Ready(Some(Ok(KEEP_ALIVE_FRAME.clone())));
            }
            this.timer.as_mut().reset(due);
        }
    }
}

#[cfg(test)]
mod tests {
    use futures::FutureExt;
    use futures::channel::mpsc;

    use super::*;

    fn text(item: Option<Result<Bytes, Infallible>>) -> String {
        match item {
            Some(Ok(chunk)) => String::from_utf8_lossy(&chunk).into_owned(),
            None => "<end>".to_owned(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_frames_go_out_as_one_chunk_and_only_silence_gets_a_keep_alive() {
        let (tx, rx) = mpsc::unbounded::<Bytes>();
        let mut body = ClientBody::new(rx.boxed(), KEEP_ALIVE, Duration::ZERO);
        for frame in ["a\n\n", "b\n\n", "c\n\n"] {
            tx.unbounded_send(Bytes::from_static(frame.as_bytes()))
                .unwrap();
        }
        assert_eq!(text(body.next().await), "a\n\nb\n\nc\n\n");
        assert!(
            body.next().now_or_never().is_none(),
            "nothing more is ready"
        );

        tokio::time::advance(KEEP_ALIVE - Duration::from_secs(5)).await;
        tx.unbounded_send(Bytes::from_static(b"d\n\n")).unwrap();
        assert_eq!(text(body.next().await), "d\n\n");
        // The first deadline passes, but a frame went out 10 s ago: no keep-alive yet.
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(
            body.next().now_or_never().is_none(),
            "no keep-alive 10 s after d"
        );
        let before = Instant::now();
        assert_eq!(text(body.next().await), ":\n\n");
        assert_eq!(
            Instant::now() - before,
            Duration::from_secs(5),
            "the keep-alive comes KEEP_ALIVE after d"
        );

        tx.unbounded_send(Bytes::from_static(b"e\n\n")).unwrap();
        drop(tx);
        assert_eq!(text(body.next().await), "e\n\n");
        assert_eq!(text(body.next().await), "<end>");
        assert_eq!(text(body.next().await), "<end>", "ended stays ended");
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_goes_out_together_once_its_first_frame_has_waited() {
        let (tx, rx) = mpsc::unbounded::<Bytes>();
        let mut body = ClientBody::new(rx.boxed(), KEEP_ALIVE, GATHER);
        let begun = Instant::now();
        tx.unbounded_send(Bytes::from_static(b"a\n\n")).unwrap();
        assert!(
            body.next().now_or_never().is_none(),
            "the first frame waits"
        );
        tokio::time::advance(GATHER / 2).await;
        tx.unbounded_send(Bytes::from_static(b"b\n\n")).unwrap();
        assert!(body.next().now_or_never().is_none(), "still gathering");
        assert_eq!(text(body.next().await), "a\n\nb\n\n");
        assert_eq!(Instant::now() - begun, GATHER, "held exactly GATHER");
        // After a quiet spell the next frame waits again; the end sends what is held.
        tokio::time::advance(Duration::from_secs(1)).await;
        let quiet = Instant::now();
        tx.unbounded_send(Bytes::from_static(b"c\n\n")).unwrap();
        assert_eq!(text(body.next().await), "c\n\n");
        assert_eq!(Instant::now() - quiet, GATHER);
        tx.unbounded_send(Bytes::from_static(b"d\n\n")).unwrap();
        drop(tx);
        assert_eq!(text(body.next().await), "d\n\n", "the end is not held");
        assert_eq!(Instant::now() - quiet, GATHER);
        assert_eq!(text(body.next().await), "<end>");
    }

    #[tokio::test]
    async fn a_chunk_stops_growing_at_its_limit() {
        let (tx, rx) = mpsc::unbounded::<Bytes>();
        let mut body = ClientBody::new(rx.boxed(), KEEP_ALIVE, Duration::ZERO);
        let frame = Bytes::from(vec![b'x'; 1000]);
        for _ in 0..100 {
            tx.unbounded_send(frame.clone()).unwrap();
        }
        let first = body.next().await.unwrap().unwrap();
        assert!(first.len() >= MAX_CHUNK && first.len() < MAX_CHUNK + 1000);
        let rest = body.next().await.unwrap().unwrap();
        assert_eq!(first.len() + rest.len(), 100_000);
    }

    #[test]
    fn the_fixed_frames_are_axums() {
        assert_eq!(&KEEP_ALIVE_FRAME[..], b":\n\n");
        assert_eq!(&STREAM_OPEN[..], b": stream open\n\n");
    }
}

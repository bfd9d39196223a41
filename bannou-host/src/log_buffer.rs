//! The control plane's own recent log lines, kept in memory so that `POST
//! /orchestrator/logs` for the control plane's app-id (the request's default target)
//! answers them like any node's logs (D13: structured lines, each with its stream and
//! timestamp).
//!
//! [`LogBuffer`] is a bounded ring: at most [`LogBuffer::MAX_LINES`] lines and about
//! [`LogBuffer::MAX_BYTES`] of text, the oldest dropped first; one line's text is cut at
//! [`LogBuffer::MAX_LINE_BYTES`]. [`LogBufferLayer`] is the `tracing_subscriber` layer
//! that feeds it: every event becomes one line `LEVEL target: message key=value ...`
//! stamped with the wall clock (milliseconds, as on the wire) and the stream `Stderr`,
//! where the console output of the host goes. The process-wide buffer is
//! [`LogBuffer::global`]: the CLI's subscriber feeds it and the host's service reads it;
//! without a subscriber (a host built in a test) it simply stays empty.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, PoisonError};

use orchestrator_core::Timestamp;
use orchestrator_core::api::LogStreamType;
use orchestrator_core::ports::backend::{LogLine, LogQuery};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::Context;

/// A bounded, shared ring of recent log lines. Cheap to clone (one `Arc`); clones share
/// the lines.
#[derive(Debug, Clone)]
pub struct LogBuffer {
    ring: Arc<Mutex<Ring>>,
}

#[derive(Debug)]
struct Ring {
    lines: VecDeque<LogLine>,
    /// Sum of the kept lines' message lengths.
    bytes: usize,
    max_lines: usize,
    max_bytes: usize,
}

static GLOBAL: LazyLock<LogBuffer> = LazyLock::new(LogBuffer::new);

impl Default for LogBuffer {
    fn default() -> Self {
        Self::new()
    }
}

impl LogBuffer {
    /// Most lines kept.
    pub const MAX_LINES: usize = 2_000;
    /// Most text kept, over all lines (bytes of the messages).
    pub const MAX_BYTES: usize = 512 * 1024;
    /// Longest text of one line; longer ones are cut (at a character boundary) and end
    /// with `...`.
    pub const MAX_LINE_BYTES: usize = 8 * 1024;

    /// An empty buffer with the default bounds.
    pub fn new() -> Self {
        Self::with_limits(Self::MAX_LINES, Self::MAX_BYTES)
    }

    /// An empty buffer keeping at most `max_lines` lines and `max_bytes` of text (the
    /// newest line is always kept, cut to [`LogBuffer::MAX_LINE_BYTES`]).
    pub fn with_limits(max_lines: usize, max_bytes: usize) -> Self {
        LogBuffer {
            ring: Arc::new(Mutex::new(Ring {
                lines: VecDeque::new(),
                bytes: 0,
                max_lines: max_lines.max(1),
                max_bytes,
            })),
        }
    }

    /// The process-wide buffer: fed by the subscriber the CLI installs
    /// ([`crate::cli::serve::init_logging`]), read by the control plane's logs endpoint.
    pub fn global() -> &'static LogBuffer {
        &GLOBAL
    }

    /// A `tracing_subscriber` layer that appends every event to this buffer.
    pub fn layer(&self) -> LogBufferLayer {
        LogBufferLayer {
            buffer: self.clone(),
        }
    }

    fn ring(&self) -> MutexGuard<'_, Ring> {
        // A panic while holding the lock leaves the ring consistent (every change is one
        // push or pop): keep using it.
        self.ring.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends a line, dropping the oldest ones beyond the bounds.
    pub fn push(&self, timestamp: Timestamp, stream: LogStreamType, message: impl Into<String>) {
        let mut message = message.into();
        truncate_text(&mut message, Self::MAX_LINE_BYTES);
        let mut ring = self.ring();
        ring.bytes += message.len();
        ring.lines.push_back(LogLine {
            timestamp,
            stream,
            message,
        });
        while ring.lines.len() > ring.max_lines
            || (ring.bytes > ring.max_bytes && ring.lines.len() > 1)
        {
            if let Some(old) = ring.lines.pop_front() {
                ring.bytes -= old.message.len();
            }
        }
    }

    /// The lines `query` selects, oldest first: those at or after `since` and before
    /// `until`, then the newest `tail` of them (the backends' contract, `LogQuery`).
    pub fn read(&self, query: &LogQuery) -> Vec<LogLine> {
        let ring = self.ring();
        let selected = ring.lines.iter().filter(|l| {
            query.since.is_none_or(|s| l.timestamp >= s)
                && query.until.is_none_or(|u| l.timestamp < u)
        });
        match query.tail {
            Some(tail) => {
                let tail = usize::try_from(tail).unwrap_or(usize::MAX);
                let mut newest: Vec<LogLine> = selected.rev().take(tail).cloned().collect();
                newest.reverse();
                newest
            }
            None => selected.cloned().collect(),
        }
    }

    /// How many lines are kept.
    pub fn len(&self) -> usize {
        self.ring().lines.len()
    }

    /// True when no line is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Cuts `text` to at most `max` bytes at a character boundary, marking the cut with
/// `...`.
fn truncate_text(text: &mut String, max: usize) {
    if text.len() <= max {
        return;
    }
    let mut end = max.saturating_sub(3);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push_str("...");
}

// === the layer ===

/// The `tracing_subscriber` layer of a [`LogBuffer`] (see [`LogBuffer::layer`]): one line
/// per event, `LEVEL target: message key=value ...`, on the `Stderr` stream.
#[derive(Debug, Clone)]
pub struct LogBufferLayer {
    buffer: LogBuffer,
}

impl<S: Subscriber> tracing_subscriber::Layer<S> for LogBufferLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        let mut fields = Fields::default();
        event.record(&mut fields);
        let mut text = format!("{} {}: {}", meta.level(), meta.target(), fields.message);
        text.push_str(&fields.rest);
        // Milliseconds, as the wire carries them: a `since` copied from an answer then
        // includes the line it was copied from.
        let now = Timestamp::from_unix_millis(chrono::Utc::now().timestamp_millis());
        self.buffer.push(now, LogStreamType::Stderr, text);
    }
}

/// An event's fields: the `message` apart, the others as ` key=value`.
#[derive(Default)]
struct Fields {
    message: String,
    rest: String,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.rest, " {}={value:?}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.rest, " {}={value:?}", field.name());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    fn at(ms: i64) -> Timestamp {
        Timestamp::from_unix_millis(1_780_000_000_000 + ms)
    }

    fn messages(lines: &[LogLine]) -> Vec<&str> {
        lines.iter().map(|l| l.message.as_str()).collect()
    }

    #[test]
    fn keeps_the_newest_lines_within_the_line_and_byte_bounds() {
        let buffer = LogBuffer::with_limits(3, 1_000);
        for i in 0..5 {
            buffer.push(at(i), LogStreamType::Stderr, format!("line {i}"));
        }
        let all = buffer.read(&LogQuery::default());
        assert_eq!(messages(&all), ["line 2", "line 3", "line 4"]);

        let buffer = LogBuffer::with_limits(100, 10);
        buffer.push(at(0), LogStreamType::Stderr, "aaaa");
        buffer.push(at(1), LogStreamType::Stderr, "bbbb");
        buffer.push(at(2), LogStreamType::Stderr, "cccc");
        assert_eq!(
            messages(&buffer.read(&LogQuery::default())),
            ["bbbb", "cccc"]
        );
        // A line larger than the whole budget is still kept, alone.
        buffer.push(at(3), LogStreamType::Stderr, "x".repeat(50));
        assert_eq!(buffer.len(), 1);

        let buffer = LogBuffer::new();
        buffer.push(
            at(0),
            LogStreamType::Stderr,
            "é".repeat(LogBuffer::MAX_LINE_BYTES),
        );
        let kept = &buffer.read(&LogQuery::default())[0].message;
        assert!(kept.len() <= LogBuffer::MAX_LINE_BYTES && kept.ends_with("..."));
    }

    #[test]
    fn reads_honour_since_until_and_tail() {
        let buffer = LogBuffer::new();
        for i in 0..6 {
            buffer.push(at(i * 1000), LogStreamType::Stderr, format!("line {i}"));
        }
        let read = |since: Option<i64>, until: Option<i64>, tail: Option<u32>| {
            let lines = buffer.read(&LogQuery {
                tail,
                since: since.map(at),
                until: until.map(at),
            });
            messages(&lines)
                .into_iter()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        assert_eq!(read(None, None, Some(2)), ["line 4", "line 5"]);
        assert_eq!(read(Some(3000), None, None), ["line 3", "line 4", "line 5"]);
        assert_eq!(read(Some(1000), Some(4000), Some(2)), ["line 2", "line 3"]);
        assert!(read(Some(9000), None, None).is_empty());
    }

    #[test]
    fn the_layer_writes_level_target_message_and_fields() {
        let buffer = LogBuffer::new();
        let subscriber = tracing_subscriber::registry().with(buffer.layer());
        let before = Timestamp::from(chrono::Utc::now()) - Duration::from_millis(1);
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(app_id = "bannou-auth", waves = 2, "deploy started");
            tracing::warn!(target: "custom", "plain");
        });
        let lines = buffer.read(&LogQuery::default());
        assert_eq!(
            messages(&lines),
            [
                "INFO bannou_host::log_buffer::tests: deploy started app_id=\"bannou-auth\" waves=2",
                "WARN custom: plain",
            ]
        );
        assert!(lines.iter().all(|l| l.stream == LogStreamType::Stderr));
        assert!(lines.iter().all(|l| l.timestamp >= before));
    }
}

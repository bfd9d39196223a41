//! A node's log: a bounded ring buffer of timestamped stdout/stderr lines (what `docker
//! logs` shows for a container), read by the in-process backend's `logs` operation.
//! Every line is also passed to `tracing`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use orchestrator_core::api::enums::LogStreamType;
use orchestrator_core::ports::backend::{LogLine, LogQuery};
use orchestrator_core::time::Clock;

/// The log of one node (or of every replica of one app-id, when they share it). Cheap to
/// clone; clones share the buffer. When full, the oldest line is dropped.
///
/// A std `Mutex` is right here: each critical section is a push or a copy, never held
/// across an `.await`. The timestamp is read under the lock, so lines are in time order.
#[derive(Clone)]
pub struct NodeLog {
    lines: Arc<Mutex<VecDeque<LogLine>>>,
    capacity: usize,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for NodeLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeLog")
            .field("lines", &self.len())
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl NodeLog {
    /// Lines kept unless told otherwise.
    pub const DEFAULT_CAPACITY: usize = 2_000;

    /// An empty log of [`NodeLog::DEFAULT_CAPACITY`] lines stamped by `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self::with_capacity(clock, Self::DEFAULT_CAPACITY)
    }

    /// An empty log keeping at most `capacity` lines (at least one).
    pub fn with_capacity(clock: Arc<dyn Clock>, capacity: usize) -> Self {
        let capacity = capacity.max(1);
        NodeLog {
            lines: Arc::new(Mutex::new(VecDeque::with_capacity(capacity.min(256)))),
            capacity,
            clock,
        }
    }

    /// Appends a stdout line.
    pub fn stdout(&self, message: impl Into<String>) {
        let message = message.into();
        tracing::debug!(target: "bannou_host::node", "{message}");
        self.push(LogStreamType::Stdout, message);
    }

    /// Appends a stderr line.
    pub fn stderr(&self, message: impl Into<String>) {
        let message = message.into();
        tracing::warn!(target: "bannou_host::node", "{message}");
        self.push(LogStreamType::Stderr, message);
    }

    fn push(&self, stream: LogStreamType, message: String) {
        let mut lines = self.lines.lock().unwrap_or_else(PoisonError::into_inner);
        if lines.len() == self.capacity {
            lines.pop_front();
        }
        lines.push_back(LogLine {
            timestamp: self.clock.now(),
            stream,
            message,
        });
    }

    /// The lines `query` selects (`since` inclusive, `until` exclusive, then the newest
    /// `tail`), oldest first.
    pub fn query(&self, query: &LogQuery) -> Vec<LogLine> {
        let lines = self.lines.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out: Vec<LogLine> = lines
            .iter()
            .filter(|l| query.since.is_none_or(|s| l.timestamp >= s))
            .filter(|l| query.until.is_none_or(|u| l.timestamp < u))
            .cloned()
            .collect();
        if let Some(tail) = query.tail {
            let keep = usize::try_from(tail).unwrap_or(usize::MAX);
            out.drain(..out.len().saturating_sub(keep));
        }
        out
    }

    /// Lines held now.
    pub fn len(&self) -> usize {
        self.lines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// True when no line is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use orchestrator_core::Timestamp;
    use orchestrator_core::time::ManualClock;

    use super::*;

    #[test]
    fn keeps_the_newest_lines_and_filters_by_time_and_tail() {
        let clock = ManualClock::new(Timestamp::from_unix_millis(1_000));
        let log = NodeLog::with_capacity(Arc::new(clock.clone()), 3);
        for i in 0..5 {
            clock.advance(Duration::from_secs(1));
            if i % 2 == 0 {
                log.stdout(format!("line {i}"));
            } else {
                log.stderr(format!("line {i}"));
            }
        }
        let all: Vec<_> = log
            .query(&LogQuery::default())
            .into_iter()
            .map(|l| l.message)
            .collect();
        assert_eq!(all, ["line 2", "line 3", "line 4"], "ring buffer of 3");
        let since = LogQuery {
            since: Some(Timestamp::from_unix_millis(5_000)),
            ..LogQuery::default()
        };
        assert_eq!(log.query(&since).len(), 2);
        let tail = LogQuery {
            tail: Some(1),
            ..LogQuery::default()
        };
        let last = log.query(&tail);
        assert_eq!(last[0].message, "line 4");
        assert_eq!(last[0].stream, LogStreamType::Stdout);
        let until = LogQuery {
            until: Some(Timestamp::from_unix_millis(5_000)),
            ..LogQuery::default()
        };
        let before: Vec<_> = log
            .query(&until)
            .into_iter()
            .map(|l| (l.stream, l.message))
            .collect();
        assert_eq!(before, [(LogStreamType::Stdout, "line 2".to_owned())]);
        assert_eq!(
            log.query(&since)[0].stream,
            LogStreamType::Stderr,
            "line 3 went to stderr"
        );
    }
}

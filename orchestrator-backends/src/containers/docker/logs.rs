//! Structured log lines from Docker's log stream (decision D13): bollard demultiplexes
//! the 8-byte-framed stream into stdout and stderr chunks; [`LogAssembler`] splits each
//! stream into lines and reads the RFC 3339 timestamp Docker puts in front of each line
//! (`timestamps=true`); [`select`] merges replicas and applies a [`LogQuery`].

use orchestrator_core::Timestamp;
use orchestrator_core::api::enums::LogStreamType;
use orchestrator_core::ports::backend::{LogLine, LogQuery};

/// Collects the chunks of one container's log stream into [`LogLine`]s.
#[derive(Debug)]
pub struct LogAssembler {
    lines: Vec<LogLine>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    last: Timestamp,
}

impl LogAssembler {
    /// An empty assembler; a line without a timestamp before any line with one gets
    /// `fallback` (then it inherits the previous line's time, as spec 16 does).
    pub fn new(fallback: Timestamp) -> Self {
        LogAssembler {
            lines: Vec::new(),
            stdout: Vec::new(),
            stderr: Vec::new(),
            last: fallback,
        }
    }

    /// Adds a chunk of `stream`; complete lines become [`LogLine`]s.
    pub fn push(&mut self, stream: LogStreamType, chunk: &[u8]) {
        let buf = match stream {
            LogStreamType::Stdout => &mut self.stdout,
            LogStreamType::Stderr => &mut self.stderr,
        };
        buf.extend_from_slice(chunk);
        let Some(end) = buf.iter().rposition(|b| *b == b'\n') else {
            return;
        };
        let complete: Vec<u8> = buf.drain(..=end).collect();
        // Without the final newline, so it yields no trailing empty line.
        for raw in complete[..end].split(|b| *b == b'\n') {
            self.line(stream, raw);
        }
    }

    fn line(&mut self, stream: LogStreamType, raw: &[u8]) {
        let text = String::from_utf8_lossy(raw);
        let text = text.strip_suffix('\r').unwrap_or(&text);
        let (timestamp, message) = split_timestamp(text);
        let timestamp = match timestamp {
            Some(t) => {
                self.last = t;
                t
            }
            None => self.last,
        };
        self.lines.push(LogLine {
            timestamp,
            stream,
            message: message.to_owned(),
        });
    }

    /// Flushes unterminated lines and returns every line, in arrival order.
    pub fn finish(mut self) -> Vec<LogLine> {
        for stream in [LogStreamType::Stdout, LogStreamType::Stderr] {
            let rest = std::mem::take(match stream {
                LogStreamType::Stdout => &mut self.stdout,
                LogStreamType::Stderr => &mut self.stderr,
            });
            if !rest.is_empty() {
                self.line(stream, &rest);
            }
        }
        self.lines
    }
}

/// Splits `2024-01-01T12:00:00.123456789Z message` into its timestamp and message; text
/// without a leading timestamp is all message.
pub fn split_timestamp(line: &str) -> (Option<Timestamp>, &str) {
    if let Some((head, rest)) = line.split_once(' ')
        && !head.is_empty()
        && let Ok(t) = Timestamp::parse(head)
    {
        return (Some(t), rest);
    }
    (None, line)
}

/// Merges lines of several replicas into time order (stable: equal times keep arrival
/// order), keeps those within `since..until` (`until` exclusive), then the newest `tail`.
pub fn select(mut lines: Vec<LogLine>, query: &LogQuery) -> Vec<LogLine> {
    lines.sort_by_key(|l| l.timestamp);
    lines.retain(|l| {
        query.since.is_none_or(|s| l.timestamp >= s) && query.until.is_none_or(|u| l.timestamp < u)
    });
    if let Some(tail) = query.tail {
        let keep = usize::try_from(tail).unwrap_or(usize::MAX);
        let skip = lines.len().saturating_sub(keep);
        lines.drain(..skip);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        Timestamp::parse(s).unwrap()
    }

    #[test]
    fn lines_are_split_per_stream_with_their_timestamps() {
        let mut a = LogAssembler::new(Timestamp::UNIX_EPOCH);
        a.push(
            LogStreamType::Stdout,
            b"2024-01-01T12:00:00.000000001Z hello\n2024-01-01T12:00:01Z wor",
        );
        a.push(
            LogStreamType::Stderr,
            b"2024-01-01T12:00:00.5Z oops\ncontinued\n",
        );
        a.push(LogStreamType::Stdout, b"ld\n");
        a.push(
            LogStreamType::Stdout,
            b"2024-01-01T12:00:02+02:00 no newline",
        );
        let lines = a.finish();
        let got: Vec<(LogStreamType, &str)> = lines
            .iter()
            .map(|l| (l.stream, l.message.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                (LogStreamType::Stdout, "hello"),
                (LogStreamType::Stderr, "oops"),
                (LogStreamType::Stderr, "continued"),
                (LogStreamType::Stdout, "world"),
                (LogStreamType::Stdout, "no newline"),
            ]
        );
        assert_eq!(lines[2].timestamp, t("2024-01-01T12:00:00.5Z"), "inherits");
        assert_eq!(lines[4].timestamp, t("2024-01-01T10:00:02Z"));
    }

    #[test]
    fn untimed_lines_get_the_fallback_and_crlf_is_trimmed() {
        let start = t("2025-05-05T00:00:00Z");
        let mut a = LogAssembler::new(start);
        a.push(LogStreamType::Stdout, b"plain\r\n\n");
        let lines = a.finish();
        assert_eq!(lines.len(), 2, "an empty line is still a line");
        assert_eq!(lines[0].message, "plain");
        assert_eq!(lines[0].timestamp, start);
        assert_eq!(
            split_timestamp("not-a-time x"),
            (None, "not-a-time x"),
            "only a real timestamp is split off"
        );
        assert_eq!(split_timestamp(" lead"), (None, " lead"));
    }

    #[test]
    fn select_merges_filters_and_tails() {
        let line = |s: &str, m: &str| LogLine {
            timestamp: t(s),
            stream: LogStreamType::Stdout,
            message: m.to_owned(),
        };
        let lines = vec![
            line("2024-01-01T00:00:03Z", "c"),
            line("2024-01-01T00:00:01Z", "a"),
            line("2024-01-01T00:00:02Z", "b1"),
            line("2024-01-01T00:00:02Z", "b2"),
            line("2024-01-01T00:00:04Z", "d"),
        ];
        let msgs = |v: Vec<LogLine>| v.into_iter().map(|l| l.message).collect::<Vec<_>>();
        assert_eq!(
            msgs(select(lines.clone(), &LogQuery::default())),
            vec!["a", "b1", "b2", "c", "d"]
        );
        let q = LogQuery {
            tail: Some(2),
            since: Some(t("2024-01-01T00:00:02Z")),
            until: Some(t("2024-01-01T00:00:04Z")),
        };
        assert_eq!(msgs(select(lines.clone(), &q)), vec!["b2", "c"]);
        let q = LogQuery {
            tail: Some(0),
            ..LogQuery::default()
        };
        assert!(select(lines, &q).is_empty());
    }
}

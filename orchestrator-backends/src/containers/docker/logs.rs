//! Structured log lines from Docker's log stream (D13 (docs/DECISIONS.md#d13)): bollard
//! demultiplexes the 8-byte-framed stream into stdout and stderr chunks; [`LogAssembler`]
//! splits each stream into lines and reads the RFC 3339 timestamp Docker puts in front of
//! each line (`timestamps=true`); [`select`] merges replicas and applies a [`LogQuery`].
//!
//! [`logs_options`] and [`read_lines`] are shared by every log source of the engine:
//! container logs (standalone backend) and service logs (Swarm backend).

use bollard::container::LogOutput;
use bollard::errors::Error as DockerError;
use bollard::query_parameters::LogsOptions;
use futures::{Stream, StreamExt};
use orchestrator_core::Timestamp;
use orchestrator_core::api::enums::LogStreamType;
use orchestrator_core::ports::backend::{BackendError, LogLine, LogQuery};

/// The engine's log request for `query`: both streams, timestamps on. Docker's
/// `since`/`until` are whole seconds, so they are widened (and [`select`] filters exactly
/// later); with a time window `tail` is left to [`select`] too, since the engine applies it
/// before its own time filter.
pub fn logs_options(query: &LogQuery) -> LogsOptions {
    let windowed = query.since.is_some() || query.until.is_some();
    LogsOptions {
        follow: false,
        stdout: true,
        stderr: true,
        since: query
            .since
            .map(|t| i32::try_from(t.unix_millis().div_euclid(1000)).unwrap_or(0))
            .unwrap_or(0),
        until: query
            .until
            .map(|t| i32::try_from(t.unix_millis().div_euclid(1000) + 1).unwrap_or(i32::MAX))
            .unwrap_or(0),
        timestamps: true,
        tail: match query.tail {
            Some(n) if !windowed => n.to_string(),
            _ => "all".to_owned(),
        },
    }
}

/// Reads a demultiplexed log stream (container or service logs) into lines; a line
/// without a timestamp before any timed one gets `fallback`.
pub async fn read_lines<S>(stream: S, fallback: Timestamp) -> Result<Vec<LogLine>, BackendError>
where
    S: Stream<Item = Result<LogOutput, DockerError>>,
{
    let mut stream = std::pin::pin!(stream);
    let mut assembler = LogAssembler::new(fallback);
    while let Some(item) = stream.next().await {
        match item.map_err(super::map_err)? {
            LogOutput::StdOut { message } | LogOutput::Console { message } => {
                assembler.push(LogStreamType::Stdout, &message)
            }
            LogOutput::StdErr { message } => assembler.push(LogStreamType::Stderr, &message),
            LogOutput::StdIn { .. } => {}
        }
    }
    Ok(assembler.finish())
}

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
    /// `fallback` (then it inherits the previous line's time, as
    /// docs/COMPATIBILITY.md#log-parsing does).
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
    fn log_requests_widen_windows_and_leave_tail_to_select() {
        let q = LogQuery {
            tail: Some(3),
            ..LogQuery::default()
        };
        let o = logs_options(&q);
        assert!(o.stdout && o.stderr && o.timestamps && !o.follow);
        assert_eq!((o.tail.as_str(), o.since, o.until), ("3", 0, 0));
        let q = LogQuery {
            tail: Some(3),
            since: Some(t("2024-01-01T00:00:01.5Z")),
            until: Some(t("2024-01-01T00:00:02.5Z")),
        };
        let o = logs_options(&q);
        assert_eq!(o.tail, "all");
        assert_eq!(o.since, 1_704_067_201);
        assert_eq!(o.until, 1_704_067_203);
    }

    #[tokio::test]
    async fn streams_become_lines() {
        let chunks = vec![
            Ok(LogOutput::StdOut {
                message: "2024-01-01T00:00:01Z out\n".into(),
            }),
            Ok(LogOutput::StdErr {
                message: "2024-01-01T00:00:02Z err\n".into(),
            }),
        ];
        let lines = read_lines(futures::stream::iter(chunks), Timestamp::UNIX_EPOCH)
            .await
            .unwrap();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1].stream, LogStreamType::Stderr);
        let failing = futures::stream::iter(vec![Err(DockerError::DockerResponseServerError {
            status_code: 500,
            message: "gone".into(),
        })]);
        assert!(matches!(
            read_lines(failing, Timestamp::UNIX_EPOCH).await,
            Err(BackendError::Runtime { .. })
        ));
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

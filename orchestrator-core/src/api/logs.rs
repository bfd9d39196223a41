//! Log retrieval (docs/COMPATIBILITY.md#logs and docs/COMPATIBILITY.md#log-parsing):
//! `GetLogsRequest`, `LogsResponse`, `LogEntry`.

use serde::{Deserialize, Serialize};

use super::LogStreamType;
use super::error::{FieldError, Validate, at_least, opt_non_empty};
use crate::names::CONTROL_PLANE_APP_ID;
use crate::time::Timestamp;

/// `POST /orchestrator/logs` request (`GetLogsRequest`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetLogsRequest {
    /// App name to read logs of (wins over `container`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Container id or name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// Absolute RFC 3339 start time; other forms (`5m`) are ignored as upstream does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// Ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    /// Lines from the end, at least 1 (default 100).
    #[serde(default = "default_tail")]
    pub tail: i64,
    /// Ignored: no streaming (default false).
    #[serde(default)]
    pub follow: bool,
}

const fn default_tail() -> i64 {
    100
}

impl Default for GetLogsRequest {
    fn default() -> Self {
        GetLogsRequest {
            service: None,
            container: None,
            since: None,
            until: None,
            tail: 100,
            follow: false,
        }
    }
}

impl GetLogsRequest {
    /// The container to read: `service` ?? `container` ?? `bannou` (docs/COMPATIBILITY.md#logs).
    pub fn target(&self) -> &str {
        self.service
            .as_deref()
            .or(self.container.as_deref())
            .unwrap_or(CONTROL_PLANE_APP_ID)
    }

    /// `since` when it is an absolute timestamp; `None` for absent or relative values.
    pub fn since_timestamp(&self) -> Option<Timestamp> {
        self.since.as_deref().and_then(|s| Timestamp::parse(s).ok())
    }
}

impl Validate for GetLogsRequest {
    fn validate(&self) -> Result<(), FieldError> {
        opt_non_empty("service", self.service.as_deref())?;
        opt_non_empty("container", self.container.as_deref())?;
        at_least("tail", self.tail, 1)
    }
}

/// `POST /orchestrator/logs` response (`LogsResponse`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogsResponse {
    /// The target (upstream echoes it here and in `container`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// The target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// Entries, oldest first.
    pub logs: Vec<LogEntry>,
    /// Whether output was cut (always false upstream).
    #[serde(default)]
    pub truncated: bool,
}

/// One log line (`LogEntry`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogEntry {
    /// When it was written.
    pub timestamp: Timestamp,
    /// Which stream (D13 (docs/DECISIONS.md#d13): from the backend's structured streams).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<LogStreamType>,
    /// The text.
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::super::wire_checks::{invalid_field, round_trip};
    use super::*;
    use serde_json::json;

    #[test]
    fn logs_request_defaults_and_target() {
        let req: GetLogsRequest = round_trip(json!({}), json!({"tail": 100, "follow": false}));
        assert_eq!(req, GetLogsRequest::default());
        assert_eq!(req.target(), "bannou");
        let req: GetLogsRequest = round_trip(
            json!({"container": "abc123", "since": "2026-03-02T14:00:00Z", "until": "x",
                   "tail": 5, "follow": true}),
            json!({"container": "abc123", "since": "2026-03-02T14:00:00Z", "until": "x",
                   "tail": 5, "follow": true}),
        );
        assert_eq!(req.target(), "abc123");
        assert_eq!(
            req.since_timestamp(),
            Some(Timestamp::parse("2026-03-02T14:00:00Z").unwrap())
        );
        let req: GetLogsRequest = serde_json::from_value(
            json!({"service": "bannou-auth", "container": "c", "since": "5m"}),
        )
        .unwrap();
        assert_eq!(req.target(), "bannou-auth");
        assert_eq!(req.since_timestamp(), None);
        assert!(req.validate().is_ok());
    }

    #[test]
    fn logs_request_validation_names_fields() {
        assert_eq!(invalid_field::<GetLogsRequest>(json!({"tail": 0})), "tail");
        assert_eq!(
            invalid_field::<GetLogsRequest>(json!({"service": ""})),
            "service"
        );
    }

    #[test]
    fn logs_response_round_trips_with_stream_spellings() {
        let resp: LogsResponse = round_trip(
            json!({"service": "bannou", "container": "bannou", "logs": [
                {"timestamp": "2026-03-02T14:00:00.5+00:00", "stream": "stderr", "message": "boom"},
                {"timestamp": "2026-03-02T14:00:01Z", "message": "no stream"}
            ]}),
            json!({"service": "bannou", "container": "bannou", "logs": [
                {"timestamp": "2026-03-02T14:00:00.500+00:00", "stream": "Stderr", "message": "boom"},
                {"timestamp": "2026-03-02T14:00:01.000+00:00", "message": "no stream"}
            ], "truncated": false}),
        );
        assert_eq!(resp.logs[0].stream, Some(LogStreamType::Stderr));
    }
}

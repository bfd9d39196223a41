//! Container endpoints: RequestContainerRestart
//! (docs/COMPATIBILITY.md#request-container-restart) and GetContainerStatus
//! (docs/COMPATIBILITY.md#container-status), with the `ContainerStatus` model of
//! docs/COMPATIBILITY.md#request-and-response-models.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::error::{FieldError, Validate, at_least, non_empty};
use super::{ContainerStatusType, RestartPriority, RestartStrategy};
use crate::events::ServiceHealthStatus;
use crate::time::Timestamp;

// === RequestContainerRestart (docs/COMPATIBILITY.md#request-container-restart) ===

/// `POST /orchestrator/containers/request-restart` request (`ContainerRestartRequestBody`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerRestartRequestBody {
    /// App-id of the container (required, non-empty).
    pub app_name: String,
    /// Why (audit; required, non-empty).
    pub reason: String,
    /// Urgency; `None` means `Graceful`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<RestartPriority>,
    /// Seconds before force-kill, at least 1 (default 30; upstream always passes 30).
    #[serde(default = "default_grace")]
    pub shutdown_grace_period: i64,
}

const fn default_grace() -> i64 {
    30
}

impl ContainerRestartRequestBody {
    /// The priority to apply: the requested one, or `Graceful`.
    pub fn effective_priority(&self) -> RestartPriority {
        self.priority.unwrap_or(RestartPriority::Graceful)
    }
}

impl Validate for ContainerRestartRequestBody {
    fn validate(&self) -> Result<(), FieldError> {
        non_empty("appName", &self.app_name)?;
        non_empty("reason", &self.reason)?;
        at_least("shutdownGracePeriod", self.shutdown_grace_period, 1)
    }
}

/// `POST /orchestrator/containers/request-restart` response (`ContainerRestartResponse`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerRestartResponse {
    /// Whether the restart was accepted.
    pub accepted: bool,
    /// When it will happen (`None` = now).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_for: Option<Timestamp>,
    /// Running instances.
    #[serde(default)]
    pub current_instances: i64,
    /// How instances are cycled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_strategy: Option<RestartStrategy>,
}

// === GetContainerStatus (docs/COMPATIBILITY.md#container-status) ===

/// `POST /orchestrator/containers/status` request (`GetContainerStatusRequest`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetContainerStatusRequest {
    /// App-id of the container (required, non-empty).
    pub app_name: String,
}

impl Validate for GetContainerStatusRequest {
    fn validate(&self) -> Result<(), FieldError> {
        non_empty("appName", &self.app_name)
    }
}

/// A container's state (`ContainerStatus`); the 200 body and, for "not found", the 404 body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStatus {
    /// App-id.
    pub app_name: String,
    /// State.
    pub status: ContainerStatusType,
    /// When captured.
    pub timestamp: Timestamp,
    /// Running instances.
    #[serde(default)]
    pub instances: i64,
    /// Plugins enabled in the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugins: Option<Vec<String>>,
    /// Last restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_restart: Option<Timestamp>,
    /// Restarts in the last 24 hours.
    #[serde(default)]
    pub restart_count: i64,
    /// Recent restarts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_history: Option<Vec<RestartHistoryEntry>>,
    /// Health check results.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_checks: Option<HealthChecks>,
    /// Container labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
}

impl ContainerStatus {
    /// Upstream's "not found" signal: stopped with no instances (answered with 404).
    pub fn is_not_found(&self) -> bool {
        self.status == ContainerStatusType::Stopped && self.instances == 0
    }
}

/// One past restart (`RestartHistoryEntry`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RestartHistoryEntry {
    /// When.
    pub timestamp: Timestamp,
    /// Why.
    pub reason: String,
    /// Priority used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<RestartPriority>,
    /// How long it took.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    /// Whether it completed.
    #[serde(default)]
    pub success: bool,
    /// Failure message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Health check state of a container (`HealthChecks`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthChecks {
    /// Last check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_check: Option<Timestamp>,
    /// Last result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ServiceHealthStatus>,
    /// Failures in a row.
    #[serde(default)]
    pub consecutive_failures: i64,
}

#[cfg(test)]
mod tests {
    use super::super::wire_checks::{invalid_field, round_trip};
    use super::*;
    use serde_json::json;

    #[test]
    fn restart_request_defaults_and_priority_fallback() {
        let req: ContainerRestartRequestBody = round_trip(
            json!({"appName": "bannou-auth", "reason": "configuration_change"}),
            json!({"appName": "bannou-auth", "reason": "configuration_change",
                   "shutdownGracePeriod": 30}),
        );
        assert_eq!(req.effective_priority(), RestartPriority::Graceful);
        assert!(req.validate().is_ok());
        let req: ContainerRestartRequestBody = round_trip(
            json!({"appName": "a", "reason": "r", "priority": "immediate",
                   "shutdownGracePeriod": 5}),
            json!({"appName": "a", "reason": "r", "priority": "Immediate",
                   "shutdownGracePeriod": 5}),
        );
        assert_eq!(req.effective_priority(), RestartPriority::Immediate);
        let req: ContainerRestartRequestBody =
            serde_json::from_value(json!({"appName": "a", "reason": "r", "priority": "Force"}))
                .unwrap();
        assert_eq!(req.effective_priority(), RestartPriority::Force);
    }

    #[test]
    fn restart_request_validation_names_fields() {
        assert_eq!(
            invalid_field::<ContainerRestartRequestBody>(json!({"appName": "", "reason": "r"})),
            "appName"
        );
        assert_eq!(
            invalid_field::<ContainerRestartRequestBody>(json!({"appName": "a", "reason": " "})),
            "reason"
        );
        assert_eq!(
            invalid_field::<ContainerRestartRequestBody>(
                json!({"appName": "a", "reason": "r", "shutdownGracePeriod": 0})
            ),
            "shutdownGracePeriod"
        );
        assert!(
            serde_json::from_value::<ContainerRestartRequestBody>(json!({"appName": "a"})).is_err()
        );
    }

    #[test]
    fn restart_response_round_trips() {
        round_trip::<ContainerRestartResponse>(
            json!({"accepted": true, "currentInstances": 1, "restartStrategy": "rolling"}),
            json!({"accepted": true, "currentInstances": 1, "restartStrategy": "Rolling"}),
        );
    }

    #[test]
    fn status_request_requires_app_name() {
        let req: GetContainerStatusRequest =
            round_trip(json!({"appName": "bannou"}), json!({"appName": "bannou"}));
        assert!(req.validate().is_ok());
        assert_eq!(
            invalid_field::<GetContainerStatusRequest>(json!({"appName": ""})),
            "appName"
        );
    }

    #[test]
    fn container_status_round_trips_and_detects_not_found() {
        let status: ContainerStatus = round_trip(
            json!({"appName": "bannou-auth", "status": "running",
                   "timestamp": "2026-03-02T14:05:31.512+00:00", "instances": 1,
                   "plugins": ["auth"], "restartCount": 1,
                   "lastRestart": "2026-03-02T13:00:00Z",
                   "restartHistory": [{"timestamp": "2026-03-02T13:00:00Z",
                                       "reason": "config", "priority": "force",
                                       "duration": "00:00:04", "success": true}],
                   "healthChecks": {"status": "degraded", "consecutiveFailures": 2},
                   "labels": {"bannou.app-id": "bannou-auth"}}),
            json!({"appName": "bannou-auth", "status": "Running",
                   "timestamp": "2026-03-02T14:05:31.512+00:00", "instances": 1,
                   "plugins": ["auth"], "restartCount": 1,
                   "lastRestart": "2026-03-02T13:00:00.000+00:00",
                   "restartHistory": [{"timestamp": "2026-03-02T13:00:00.000+00:00",
                                       "reason": "config", "priority": "Force",
                                       "duration": "00:00:04", "success": true}],
                   "healthChecks": {"status": "Degraded", "consecutiveFailures": 2},
                   "labels": {"bannou.app-id": "bannou-auth"}}),
        );
        assert!(!status.is_not_found());
        let missing: ContainerStatus = round_trip(
            json!({"appName": "x", "status": "Stopped",
                   "timestamp": "2026-03-02T14:05:31.512+00:00"}),
            json!({"appName": "x", "status": "Stopped",
                   "timestamp": "2026-03-02T14:05:31.512+00:00",
                   "instances": 0, "restartCount": 0}),
        );
        assert!(missing.is_not_found());
    }
}

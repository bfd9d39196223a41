//! Service restart endpoints: RestartService (docs/COMPATIBILITY.md#restart-service) and
//! the ShouldRestartService request (docs/COMPATIBILITY.md#should-restart). The
//! `RestartRecommendation` response lives with the restart policy in [`crate::restart`],
//! not here.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::error::{FieldError, Validate, at_least, non_empty};
use super::topology::env_keys_non_empty;
use crate::events::InstanceHealthStatus;

// === RestartService (docs/COMPATIBILITY.md#restart-service) ===

/// `POST /orchestrator/services/restart` request (`ServiceRestartRequest`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceRestartRequest {
    /// Service to restart (required, non-empty).
    pub service_name: String,
    /// Environment updates for the restarted service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<BTreeMap<String, String>>,
    /// Restart even when healthy (default false).
    #[serde(default)]
    pub force: bool,
    /// Seconds to wait for health after the restart, at least 1 (default 120).
    #[serde(default = "default_restart_timeout")]
    pub timeout: i64,
}

const fn default_restart_timeout() -> i64 {
    120
}

impl ServiceRestartRequest {
    /// The health wait as a duration (only meaningful after [`Validate::validate`]).
    pub fn timeout_duration(&self) -> Duration {
        Duration::from_secs(u64::try_from(self.timeout).unwrap_or(0))
    }
}

impl Validate for ServiceRestartRequest {
    fn validate(&self) -> Result<(), FieldError> {
        non_empty("serviceName", &self.service_name)?;
        if let Some(env) = &self.environment {
            env_keys_non_empty("environment", env)?;
        }
        at_least("timeout", self.timeout, 1)
    }
}

/// `POST /orchestrator/services/restart` response (`ServiceRestartResult`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceRestartResult {
    /// `hh:mm:ss` (see [`crate::time::format_hms`]).
    pub duration: String,
    /// Status before the restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_status: Option<InstanceHealthStatus>,
    /// Status after the health wait.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_status: Option<InstanceHealthStatus>,
}

// === ShouldRestartService request (docs/COMPATIBILITY.md#should-restart) ===

/// `POST /orchestrator/services/should-restart` request (`ShouldRestartServiceRequest`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShouldRestartServiceRequest {
    /// Service to evaluate (required, non-empty).
    pub service_name: String,
}

impl Validate for ShouldRestartServiceRequest {
    fn validate(&self) -> Result<(), FieldError> {
        non_empty("serviceName", &self.service_name)
    }
}

#[cfg(test)]
mod tests {
    use super::super::wire_checks::{invalid_field, round_trip};
    use super::*;
    use serde_json::json;

    #[test]
    fn restart_request_defaults_and_round_trip() {
        let req: ServiceRestartRequest = round_trip(
            json!({"serviceName": "auth"}),
            json!({"serviceName": "auth", "force": false, "timeout": 120}),
        );
        assert_eq!(req.timeout_duration(), Duration::from_secs(120));
        assert!(req.validate().is_ok());
        round_trip::<ServiceRestartRequest>(
            json!({"serviceName": "auth", "environment": {"AUTH_JWT_ISSUER": "x"},
                   "force": true, "timeout": 5}),
            json!({"serviceName": "auth", "environment": {"AUTH_JWT_ISSUER": "x"},
                   "force": true, "timeout": 5}),
        );
    }

    #[test]
    fn restart_request_validation_names_fields() {
        assert_eq!(
            invalid_field::<ServiceRestartRequest>(json!({"serviceName": ""})),
            "serviceName"
        );
        assert_eq!(
            invalid_field::<ServiceRestartRequest>(json!({"serviceName": "auth", "timeout": 0})),
            "timeout"
        );
        assert!(serde_json::from_value::<ServiceRestartRequest>(json!({})).is_err());
    }

    #[test]
    fn restart_result_writes_runtime_status_spelling() {
        let res: ServiceRestartResult = round_trip(
            json!({"duration": "00:00:05", "previousStatus": "shutting_down",
                   "currentStatus": "healthy"}),
            json!({"duration": "00:00:05", "previousStatus": "Shutting_down",
                   "currentStatus": "Healthy"}),
        );
        assert_eq!(
            res.previous_status,
            Some(InstanceHealthStatus::ShuttingDown)
        );
        round_trip::<ServiceRestartResult>(
            json!({"duration": "00:01:00"}),
            json!({"duration": "00:01:00"}),
        );
    }

    #[test]
    fn should_restart_request_requires_a_name() {
        let req: ShouldRestartServiceRequest = round_trip(
            json!({"serviceName": "behavior"}),
            json!({"serviceName": "behavior"}),
        );
        assert!(req.validate().is_ok());
        assert_eq!(
            invalid_field::<ShouldRestartServiceRequest>(json!({"serviceName": "  "})),
            "serviceName"
        );
    }
}

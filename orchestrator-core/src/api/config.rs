//! Configuration versioning endpoints: RollbackConfiguration
//! (docs/COMPATIBILITY.md#config-rollback and docs/COMPATIBILITY.md#rollback) and
//! GetConfigVersion (docs/COMPATIBILITY.md#config-version and
//! docs/COMPATIBILITY.md#version-info).

use serde::{Deserialize, Serialize};

use super::defaults::yes;
use super::error::{FieldError, Validate, at_least, non_empty};
use crate::time::Timestamp;

/// `POST /orchestrator/config/rollback` request (`ConfigRollbackRequest`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigRollbackRequest {
    /// Why (audit only; required, non-empty).
    pub reason: String,
    /// Version to return to, at least 1; `None` means current − 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_version: Option<i64>,
}

impl Validate for ConfigRollbackRequest {
    fn validate(&self) -> Result<(), FieldError> {
        non_empty("reason", &self.reason)?;
        if let Some(v) = self.target_version {
            at_least("targetVersion", v, 1)?;
        }
        Ok(())
    }
}

/// `POST /orchestrator/config/rollback` response (`ConfigRollbackResponse`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigRollbackResponse {
    /// Version before the rollback.
    pub previous_version: i64,
    /// Version now current (the new copy of the target).
    pub current_version: i64,
    /// Keys that changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed_keys: Option<Vec<String>>,
    /// Ours only (D58): the live nodes that had not applied the new routes when this
    /// change stopped waiting for them and stopped the old nodes anyway; absent when every
    /// consumer acknowledged in time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing_laggards: Option<Vec<crate::api::NodeMappingsVersion>>,
}

/// `POST /orchestrator/config/version` request (`GetConfigVersionRequest`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetConfigVersionRequest {
    /// Ignored: prefixes are always computed (default true).
    #[serde(default = "yes")]
    pub include_key_prefixes: bool,
}

impl Default for GetConfigVersionRequest {
    fn default() -> Self {
        GetConfigVersionRequest {
            include_key_prefixes: true,
        }
    }
}

impl Validate for GetConfigVersionRequest {
    fn validate(&self) -> Result<(), FieldError> {
        Ok(())
    }
}

/// `POST /orchestrator/config/version` response (`ConfigVersionResponse`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigVersionResponse {
    /// Current version (0 if none).
    pub version: i64,
    /// When the current configuration was saved (now if none).
    pub timestamp: Timestamp,
    /// A previous version exists to roll back to.
    #[serde(default)]
    pub has_previous_config: bool,
    /// Number of configuration keys.
    #[serde(default)]
    pub key_count: i64,
    /// Key prefixes present (`services`, `env`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_prefixes: Option<Vec<String>>,
}

#[cfg(test)]
mod tests {
    use super::super::wire_checks::{invalid_field, round_trip};
    use super::*;
    use serde_json::json;

    #[test]
    fn rollback_request_round_trip_and_validation() {
        let req: ConfigRollbackRequest = round_trip(
            json!({"reason": "auth.jwt_secret broke authentication", "targetVersion": 3}),
            json!({"reason": "auth.jwt_secret broke authentication", "targetVersion": 3}),
        );
        assert!(req.validate().is_ok());
        let req: ConfigRollbackRequest = round_trip(json!({"reason": "r"}), json!({"reason": "r"}));
        assert_eq!(req.target_version, None);
        assert_eq!(
            invalid_field::<ConfigRollbackRequest>(json!({"reason": ""})),
            "reason"
        );
        assert_eq!(
            invalid_field::<ConfigRollbackRequest>(json!({"reason": "r", "targetVersion": 0})),
            "targetVersion"
        );
        assert!(serde_json::from_value::<ConfigRollbackRequest>(json!({})).is_err());
    }

    #[test]
    fn rollback_response_round_trips() {
        round_trip::<ConfigRollbackResponse>(
            json!({"previousVersion": 4, "currentVersion": 5, "changedKeys": ["services.auth"]}),
            json!({"previousVersion": 4, "currentVersion": 5, "changedKeys": ["services.auth"]}),
        );
    }

    #[test]
    fn version_request_defaults() {
        let req: GetConfigVersionRequest =
            round_trip(json!({}), json!({"includeKeyPrefixes": true}));
        assert_eq!(req, GetConfigVersionRequest::default());
        assert!(req.validate().is_ok());
    }

    #[test]
    fn version_response_round_trips() {
        let resp: ConfigVersionResponse = round_trip(
            json!({"version": 0, "timestamp": "2026-03-02T14:05:31.512+00:00"}),
            json!({"version": 0, "timestamp": "2026-03-02T14:05:31.512+00:00",
                   "hasPreviousConfig": false, "keyCount": 0}),
        );
        assert_eq!(resp.key_prefixes, None);
    }
}

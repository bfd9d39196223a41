//! Backend listing (docs/COMPATIBILITY.md#backends-list and
//! docs/COMPATIBILITY.md#backend-detection): `ListBackendsRequest`, `BackendsResponse`,
//! `BackendInfo`.

use serde::{Deserialize, Serialize};

use super::error::{FieldError, Validate};
use crate::events::BackendType;
use crate::time::Timestamp;

/// `POST /orchestrator/backends/list` request (`ListBackendsRequest`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListBackendsRequest {
    /// Ignored: detection always runs (default false).
    #[serde(default)]
    pub refresh: bool,
}

impl Validate for ListBackendsRequest {
    fn validate(&self) -> Result<(), FieldError> {
        Ok(())
    }
}

/// `POST /orchestrator/backends/list` response (`BackendsResponse`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackendsResponse {
    /// When detection ran.
    pub timestamp: Timestamp,
    /// Every backend with its availability (ours always lists the four upstream ones).
    pub backends: Vec<BackendInfo>,
    /// Best available backend.
    pub recommended: BackendType,
    /// Backend of the current deployment (D6 (docs/DECISIONS.md#d6); never set upstream).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_backend: Option<BackendType>,
}

/// One detected backend (`BackendInfo`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackendInfo {
    /// Which backend.
    #[serde(rename = "type")]
    pub kind: BackendType,
    /// Usable now.
    pub available: bool,
    /// Selection priority, 1 = best.
    pub priority: i64,
    /// Engine/cluster version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// API endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Capabilities (`scaling`, `live-topology`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Vec<String>>,
    /// Why it is unavailable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::super::wire_checks::round_trip;
    use super::*;
    use serde_json::json;

    #[test]
    fn list_request_defaults() {
        let req: ListBackendsRequest = round_trip(json!({}), json!({"refresh": false}));
        assert!(!req.refresh);
        assert!(req.validate().is_ok());
        round_trip::<ListBackendsRequest>(json!({"refresh": true}), json!({"refresh": true}));
    }

    #[test]
    fn backends_response_round_trips() {
        let resp: BackendsResponse = round_trip(
            json!({"timestamp": "2026-03-02T14:05:31.512+00:00", "recommended": "in-process",
            "activeBackend": "compose",
            "backends": [
                {"type": "kubernetes", "available": false, "priority": 1,
                 "error": "no kubeconfig"},
                {"type": "InProcess", "available": true, "priority": 5,
                 "capabilities": ["scaling"]}
            ]}),
            json!({"timestamp": "2026-03-02T14:05:31.512+00:00", "recommended": "InProcess",
            "activeBackend": "Compose",
            "backends": [
                {"type": "Kubernetes", "available": false, "priority": 1,
                 "error": "no kubeconfig"},
                {"type": "InProcess", "available": true, "priority": 5,
                 "capabilities": ["scaling"]}
            ]}),
        );
        assert_eq!(resp.backends[0].kind, BackendType::Kubernetes);
        assert_eq!(resp.recommended, BackendType::InProcess);
    }
}

//! Service routing lookup (docs/COMPATIBILITY.md#service-routing):
//! `GetServiceRoutingRequest`, `ServiceRoutingResponse`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::error::{FieldError, Validate};
use crate::time::Timestamp;

/// `POST /orchestrator/service-routing` request (`GetServiceRoutingRequest`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetServiceRoutingRequest {
    /// Case-insensitive prefix filter on service names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_filter: Option<String>,
}

impl GetServiceRoutingRequest {
    /// Whether `service` passes the filter (case-insensitive prefix; no filter passes all).
    pub fn matches(&self, service: &str) -> bool {
        self.service_filter.as_deref().is_none_or(|prefix| {
            service
                .get(..prefix.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
        })
    }
}

impl Validate for GetServiceRoutingRequest {
    fn validate(&self) -> Result<(), FieldError> {
        Ok(())
    }
}

/// `POST /orchestrator/service-routing` response (`ServiceRoutingResponse`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceRoutingResponse {
    /// Service name -> app-id, infrastructure services excluded.
    pub mappings: BTreeMap<String, String>,
    /// App-id for unmapped services (`bannou`).
    pub default_app_id: String,
    /// When the table was read.
    pub generated_at: Timestamp,
    /// `mappings.len()`.
    #[serde(default)]
    pub total_services: i64,
    /// Current deployment id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::super::test_support::round_trip;
    use super::*;
    use serde_json::json;

    #[test]
    fn routing_request_filter_is_case_insensitive_prefix() {
        let req: GetServiceRoutingRequest = round_trip(
            json!({"serviceFilter": "Acc"}),
            json!({"serviceFilter": "Acc"}),
        );
        assert!(req.matches("account"));
        assert!(!req.matches("auth"));
        assert!(!req.matches("ac"));
        let all: GetServiceRoutingRequest = round_trip(json!({}), json!({}));
        assert!(all.matches("anything"));
        assert!(all.validate().is_ok());
        let multibyte = GetServiceRoutingRequest {
            service_filter: Some("é".into()),
        };
        assert!(!multibyte.matches("eé"));
    }

    #[test]
    fn routing_response_round_trips() {
        let resp: ServiceRoutingResponse = round_trip(
            json!({"mappings": {"behavior": "npc-processing-01"}, "defaultAppId": "bannou",
                   "generatedAt": "2026-03-02T14:05:31.512Z", "totalServices": 1,
                   "deploymentId": "d-1"}),
            json!({"mappings": {"behavior": "npc-processing-01"}, "defaultAppId": "bannou",
                   "generatedAt": "2026-03-02T14:05:31.512+00:00", "totalServices": 1,
                   "deploymentId": "d-1"}),
        );
        assert_eq!(resp.mappings["behavior"], "npc-processing-01");
    }
}

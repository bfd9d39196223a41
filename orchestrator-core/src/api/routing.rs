//! Service routing lookup (docs/COMPATIBILITY.md#service-routing):
//! `GetServiceRoutingRequest`, `ServiceRoutingResponse`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::error::{FieldError, Validate};
use crate::events::WeightedTarget;
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
    /// Ours only: the current mappings version, as this replica last saw it published
    /// (absent until it saw one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mappings_version: Option<i64>,
    /// Ours only: per node that reports it in its heartbeats, the mappings version it
    /// applied, by app-id (absent when nothing is known).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_versions: Option<Vec<NodeMappingsVersion>>,
    /// Ours only: the nodes of `nodeVersions` behind `mappingsVersion` (absent when the
    /// current version is unknown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes_behind: Option<Vec<NodeMappingsVersion>>,
    /// Ours only: services whose calls are split between app-ids by weight, each with its
    /// whole split (D63 (docs/DECISIONS.md#d63)); `mappings` keeps their primary. Absent
    /// when no service is split.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weighted_mappings: Option<BTreeMap<String, Vec<WeightedTarget>>>,
}

/// A node's applied mappings version, as its heartbeats (and, ours, its bus
/// acknowledgements, D58) reported it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeMappingsVersion {
    /// The node's app-id.
    pub app_id: String,
    /// The mappings version it applied.
    pub applied_version: i64,
}

#[cfg(test)]
mod tests {
    use super::super::wire_checks::round_trip;
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
        assert_eq!(resp.mappings_version, None);
        assert_eq!(resp.nodes_behind, None);
    }

    #[test]
    fn routing_lag_fields_are_camel_case_and_additive() {
        let lag = json!({"mappings": {}, "defaultAppId": "bannou",
               "generatedAt": "2026-03-02T14:05:31.512+00:00", "totalServices": 0,
               "mappingsVersion": 7,
               "nodeVersions": [{"appId": "a", "appliedVersion": 7},
                                {"appId": "b", "appliedVersion": 5}],
               "nodesBehind": [{"appId": "b", "appliedVersion": 5}]});
        let resp: ServiceRoutingResponse = round_trip(lag.clone(), lag);
        assert_eq!(resp.mappings_version, Some(7));
        assert_eq!(
            resp.nodes_behind,
            Some(vec![NodeMappingsVersion {
                app_id: "b".into(),
                applied_version: 5
            }])
        );
    }
}

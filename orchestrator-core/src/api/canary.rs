//! Canary deploys (ours, D64 (docs/DECISIONS.md#d64)): the answer field of a deploy that
//! left a canary running, and the two endpoints that end one, `POST /orchestrator/promote`
//! and `POST /orchestrator/abort`. A canary's request fields (`canaryWeight`,
//! `canaryPromoteAfterSeconds`) are on `DeployRequest`.

use serde::{Deserialize, Serialize};

use super::error::{FieldError, Validate};
use super::routing::NodeMappingsVersion;

/// Smallest and largest `DeployRequest.canaryWeight` (percent of the calls to the new
/// nodes; 0 and 100 are abort and promote).
pub const CANARY_WEIGHT_RANGE: std::ops::RangeInclusive<i64> = 1..=99;

/// `DeployResponse.canary` (**Ours**, additive): the canary a deploy left running.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CanaryStatus {
    /// The deploy that started it (promote and abort end it under the same id).
    pub deployment_id: String,
    /// Percent of the split services' calls that go to the new nodes.
    pub weight: i64,
    /// The services whose calls are split (their routes stay on the old nodes until
    /// promotion).
    pub services: Vec<String>,
    /// App-ids of the nodes that came up beside the old ones.
    pub new_nodes: Vec<String>,
    /// App-ids of the nodes a promotion stops.
    pub old_nodes: Vec<String>,
    /// The mappings version that carries the split (absent when it could not be
    /// published).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mappings_version: Option<i64>,
    /// Seconds of health after which it is promoted by itself (absent: only by a call).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promote_after_seconds: Option<i64>,
}

impl CanaryStatus {
    /// Its services for a message: comma-separated, or `no service`.
    pub fn services_text(&self) -> String {
        if self.services.is_empty() {
            "no service".to_owned()
        } else {
            self.services.join(", ")
        }
    }
}

/// `POST /orchestrator/promote` and `POST /orchestrator/abort` request (**Ours**).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CanaryActionRequest {
    /// When given, the canary must be this deploy's (a stale promote does not end a later
    /// canary); absent: the canary that runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_id: Option<String>,
}

impl Validate for CanaryActionRequest {
    fn validate(&self) -> Result<(), FieldError> {
        match &self.deployment_id {
            Some(id) if id.trim().is_empty() => Err(FieldError::new(
                "deploymentId",
                "must not be blank when given",
            )),
            _ => Ok(()),
        }
    }
}

/// How a canary ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CanaryOutcome {
    /// Every route moved to the new nodes; the old ones stopped.
    Promoted,
    /// Every call went back to the old nodes; the new ones stopped.
    Aborted,
}

/// `POST /orchestrator/promote` and `POST /orchestrator/abort` response (**Ours**).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CanaryActionResponse {
    /// The canary's deploy.
    pub deployment_id: String,
    /// What was done.
    pub outcome: CanaryOutcome,
    /// Why (`requested`, or what the automatic promotion or abort saw).
    pub reason: String,
    /// `"N.Ns"` the step took.
    pub duration: String,
    /// App-ids stopped (the old nodes on promotion, the new ones on abort).
    pub stopped_nodes: Vec<String>,
    /// The mappings version that moved the calls (absent when it could not be
    /// published).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mappings_version: Option<i64>,
    /// The live nodes that had not applied that version when the step stopped waiting
    /// (D58 (docs/DECISIONS.md#d58)); absent when every consumer acknowledged in time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing_laggards: Option<Vec<NodeMappingsVersion>>,
    /// What went wrong without stopping the step (a node that did not stop, a store
    /// write).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warnings: Option<Vec<String>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_action_request_may_name_the_deploy_and_refuses_a_blank_one() {
        let empty: CanaryActionRequest = serde_json::from_value(json!({})).unwrap();
        assert!(empty.validate().is_ok());
        let named: CanaryActionRequest =
            serde_json::from_value(json!({"deploymentId": "d1"})).unwrap();
        assert_eq!(named.deployment_id.as_deref(), Some("d1"));
        let blank: CanaryActionRequest =
            serde_json::from_value(json!({"deploymentId": " "})).unwrap();
        assert_eq!(blank.validate().unwrap_err().field, "deploymentId");
    }

    #[test]
    fn the_answer_uses_camel_case_and_a_kebab_outcome() {
        let answer = CanaryActionResponse {
            deployment_id: "d1".into(),
            outcome: CanaryOutcome::Aborted,
            reason: "requested".into(),
            duration: "0.1s".into(),
            stopped_nodes: vec!["auth-green".into()],
            mappings_version: Some(7),
            routing_laggards: None,
            warnings: None,
        };
        assert_eq!(
            serde_json::to_value(&answer).unwrap(),
            json!({"deploymentId": "d1", "outcome": "aborted", "reason": "requested",
                   "duration": "0.1s", "stoppedNodes": ["auth-green"], "mappingsVersion": 7})
        );
    }
}

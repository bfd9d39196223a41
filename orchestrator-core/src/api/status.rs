//! Environment status (docs/COMPATIBILITY.md#status): `GetStatusRequest`,
//! `EnvironmentStatus` and the never-produced `ResourceUsage`.

use serde::{Deserialize, Serialize};

use super::defaults::yes;
use super::error::{FieldError, Validate};
use super::infrastructure::InfrastructureHealthResponse;
use super::topology::{DeployedService, ServiceTopology};
use crate::events::BackendType;
use crate::time::Timestamp;

/// `POST /orchestrator/status` request (`GetStatusRequest`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetStatusRequest {
    /// Ignored (default true).
    #[serde(default = "yes")]
    pub include_resources: bool,
}

impl Default for GetStatusRequest {
    fn default() -> Self {
        GetStatusRequest {
            include_resources: true,
        }
    }
}

impl Validate for GetStatusRequest {
    fn validate(&self) -> Result<(), FieldError> {
        Ok(())
    }
}

/// `POST /orchestrator/status` response (`EnvironmentStatus`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentStatus {
    /// The backend lists at least one container.
    pub deployed: bool,
    /// When the status was taken.
    pub timestamp: Timestamp,
    /// Current deployment id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_id: Option<String>,
    /// Backend in use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<BackendType>,
    /// Active preset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<String>,
    /// One node per distinct app name (`{"nodes": []}` when none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topology: Option<ServiceTopology>,
    /// One entry per container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub services: Option<Vec<DeployedService>>,
    /// Infrastructure health, when checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub infrastructure: Option<InfrastructureHealthResponse>,
    /// Resource usage (never collected upstream).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceUsage>,
    /// Time since deployment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uptime: Option<String>,
}

/// Whole-environment resource usage (`ResourceUsage`); never produced upstream.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceUsage {
    /// CPU usage, percent.
    #[serde(default)]
    pub cpu_percent: f64,
    /// Memory used, MB.
    #[serde(default)]
    pub memory_used_mb: i64,
    /// Memory available, MB.
    #[serde(default)]
    pub memory_total_mb: i64,
    /// Disk used, GB.
    #[serde(default)]
    pub disk_used_gb: f64,
    /// Network received, MB.
    #[serde(default)]
    pub network_in_mb: f64,
    /// Network sent, MB.
    #[serde(default)]
    pub network_out_mb: f64,
}

#[cfg(test)]
mod tests {
    use super::super::wire_checks::round_trip;
    use super::*;
    use crate::api::{DeployedServiceStatus, TopologyNode};
    use serde_json::json;

    #[test]
    fn status_request_defaults() {
        let req: GetStatusRequest = round_trip(json!({}), json!({"includeResources": true}));
        assert_eq!(req, GetStatusRequest::default());
        assert!(req.validate().is_ok());
        round_trip::<GetStatusRequest>(
            json!({"includeResources": false}),
            json!({"includeResources": false}),
        );
    }

    #[test]
    fn environment_status_round_trips_upstream_shape() {
        let input = json!({
            "deployed": true, "timestamp": "2026-03-02T14:05:31Z", "backend": "compose",
            "topology": {"nodes": [{"name": "bannou-auth", "services": ["bannou-auth"],
                                    "replicas": 2, "meshEnabled": true, "appId": "bannou-auth"}]},
            "services": [{"name": "bannou-auth", "status": "running", "node": "host-1"}],
            "resources": {"cpuPercent": 12.5}
        });
        let expected = json!({
            "deployed": true, "timestamp": "2026-03-02T14:05:31.000+00:00", "backend": "Compose",
            "topology": {"nodes": [{"name": "bannou-auth", "services": ["bannou-auth"],
                                    "replicas": 2, "meshEnabled": true, "appId": "bannou-auth"}]},
            "services": [{"name": "bannou-auth", "status": "Running", "node": "host-1"}],
            "resources": {"cpuPercent": 12.5, "memoryUsedMb": 0, "memoryTotalMb": 0,
                          "diskUsedGb": 0.0, "networkInMb": 0.0, "networkOutMb": 0.0}
        });
        let status: EnvironmentStatus = round_trip(input, expected);
        let node: &TopologyNode = &status.topology.as_ref().unwrap().nodes[0];
        assert_eq!(node.replicas, 2);
        assert_eq!(
            status.services.as_ref().unwrap()[0].status,
            DeployedServiceStatus::Running
        );
    }

    #[test]
    fn empty_environment_omits_nulls() {
        round_trip::<EnvironmentStatus>(
            json!({"deployed": false, "timestamp": "2026-03-02T14:05:31.000+00:00",
                   "topology": {"nodes": []}, "services": []}),
            json!({"deployed": false, "timestamp": "2026-03-02T14:05:31.000+00:00",
                   "topology": {"nodes": []}, "services": []}),
        );
    }
}

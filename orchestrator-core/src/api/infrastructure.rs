//! Health endpoints: GetInfrastructureHealth (docs/COMPATIBILITY.md#infrastructure-health)
//! and the GetServicesHealth request (docs/COMPATIBILITY.md#services-health). The
//! services-health report and its entries (with `Capacity`) are defined with the heartbeat
//! aggregator in [`crate::health`], not here.

use serde::{Deserialize, Serialize};

use super::error::{FieldError, Validate};
use super::{ComponentHealthStatus, ServiceHealthSource};
use crate::time::Timestamp;

// === GetInfrastructureHealth (docs/COMPATIBILITY.md#infrastructure-health) ===

/// `POST /orchestrator/health/infrastructure` request (`InfrastructureHealthRequest`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InfrastructureHealthRequest {
    /// Component filter; ignored (all three components are always checked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub components: Option<Vec<String>>,
}

impl Validate for InfrastructureHealthRequest {
    fn validate(&self) -> Result<(), FieldError> {
        Ok(())
    }
}

/// `POST /orchestrator/health/infrastructure` response (`InfrastructureHealthResponse`);
/// 200 when `healthy`, otherwise 500 with this body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InfrastructureHealthResponse {
    /// All components healthy.
    pub healthy: bool,
    /// When the check ran.
    pub timestamp: Timestamp,
    /// `statestore`, `pubsub`, `messaging`, in that order.
    pub components: Vec<ComponentHealth>,
}

/// Health of one infrastructure component (`ComponentHealth`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ComponentHealth {
    /// Component name (`statestore`).
    pub name: String,
    /// Its status.
    pub status: ComponentHealthStatus,
    /// Last successful check.
    pub last_seen: Timestamp,
    /// Detail (`State stores healthy (operation: 1ms)`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Component metrics (`{"operationTimeMs": 1.2}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<serde_json::Map<String, serde_json::Value>>,
}

// === GetServicesHealth request (docs/COMPATIBILITY.md#services-health) ===

/// `POST /orchestrator/health/services` request (`ServiceHealthRequest`). The response,
/// `ServiceHealthReport`, lives in [`crate::health`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceHealthRequest {
    /// Which instances to include (default `All`; `control_plane_only` parses).
    #[serde(default = "default_source")]
    pub source: ServiceHealthSource,
    /// Service name filter, applied after `source`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_filter: Option<String>,
}

const fn default_source() -> ServiceHealthSource {
    ServiceHealthSource::All
}

impl Default for ServiceHealthRequest {
    fn default() -> Self {
        ServiceHealthRequest {
            source: ServiceHealthSource::All,
            service_filter: None,
        }
    }
}

impl Validate for ServiceHealthRequest {
    fn validate(&self) -> Result<(), FieldError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::wire_checks::round_trip;
    use super::*;
    use serde_json::json;

    #[test]
    fn infrastructure_request_accepts_empty_and_ignored_filter() {
        let req: InfrastructureHealthRequest = round_trip(json!({}), json!({}));
        assert_eq!(req, InfrastructureHealthRequest::default());
        let req: InfrastructureHealthRequest = round_trip(
            json!({"components": ["redis"]}),
            json!({"components": ["redis"]}),
        );
        assert!(req.validate().is_ok());
    }

    #[test]
    fn infrastructure_response_round_trips() {
        let input = json!({
            "healthy": false, "timestamp": "2026-03-02T14:05:31.512Z",
            "components": [
                {"name": "statestore", "status": "unavailable",
                 "lastSeen": "2026-03-02T14:05:31.512Z",
                 "message": "State stores not initialized", "metrics": {}},
                {"name": "pubsub", "status": "Healthy", "lastSeen": "2026-03-02T14:05:31.512Z",
                 "message": "Message bus pub/sub path active"}
            ]
        });
        let expected = json!({
            "healthy": false, "timestamp": "2026-03-02T14:05:31.512+00:00",
            "components": [
                {"name": "statestore", "status": "Unavailable",
                 "lastSeen": "2026-03-02T14:05:31.512+00:00",
                 "message": "State stores not initialized", "metrics": {}},
                {"name": "pubsub", "status": "Healthy",
                 "lastSeen": "2026-03-02T14:05:31.512+00:00",
                 "message": "Message bus pub/sub path active"}
            ]
        });
        let resp: InfrastructureHealthResponse = round_trip(input, expected);
        assert_eq!(
            resp.components[0].status,
            ComponentHealthStatus::Unavailable
        );
    }

    #[test]
    fn services_health_request_defaults_and_spellings() {
        let req: ServiceHealthRequest = round_trip(json!({}), json!({"source": "All"}));
        assert_eq!(req, ServiceHealthRequest::default());
        let req: ServiceHealthRequest = round_trip(
            json!({"source": "control_plane_only", "serviceFilter": "auth"}),
            json!({"source": "ControlPlaneOnly", "serviceFilter": "auth"}),
        );
        assert_eq!(req.source, ServiceHealthSource::ControlPlaneOnly);
        let req: ServiceHealthRequest =
            serde_json::from_value(json!({"source": "DeployedOnly"})).unwrap();
        assert_eq!(req.source, ServiceHealthSource::DeployedOnly);
        assert!(req.validate().is_ok());
        assert!(serde_json::from_value::<ServiceHealthRequest>(json!({"source": "some"})).is_err());
    }
}

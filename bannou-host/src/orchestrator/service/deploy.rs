//! Endpoint group `deploy` (see the parent module for the conventions).

use orchestrator_core::api::*;

use super::{OrchestratorService, ServiceError, ServiceResult};

impl OrchestratorService {
    /// POST /orchestrator/deploy (spec 8.7, DESIGN.md 3).
    pub async fn deploy(&self, request: DeployRequest) -> ServiceResult<DeployResponse> {
        let _ = (&self.deps, request);
        Err(ServiceError::new(501, "deploy: not implemented yet"))
    }

    /// POST /orchestrator/teardown (spec 8.10).
    pub async fn teardown(&self, request: TeardownRequest) -> ServiceResult<TeardownResponse> {
        let _ = (&self.deps, request);
        Err(ServiceError::new(501, "teardown: not implemented yet"))
    }

    /// POST /orchestrator/presets/list (spec 8.6).
    pub async fn presets(&self, request: ListPresetsRequest) -> ServiceResult<PresetsResponse> {
        let _ = (&self.deps, request);
        Err(ServiceError::new(501, "presets: not implemented yet"))
    }

    /// POST /orchestrator/service-routing (spec 8.8).
    pub async fn service_routing(
        &self,
        request: GetServiceRoutingRequest,
    ) -> ServiceResult<ServiceRoutingResponse> {
        let _ = (&self.deps, request);
        Err(ServiceError::new(
            501,
            "service_routing: not implemented yet",
        ))
    }

    /// POST /orchestrator/status (spec 8.9).
    pub async fn status(&self, request: GetStatusRequest) -> ServiceResult<EnvironmentStatus> {
        let _ = (&self.deps, request);
        Err(ServiceError::new(501, "status: not implemented yet"))
    }
}

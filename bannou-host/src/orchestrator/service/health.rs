//! Endpoint group `health` (see the parent module for the conventions).

use orchestrator_core::api::*;

use super::{OrchestratorService, ServiceError, ServiceResult};

impl OrchestratorService {
    /// POST /orchestrator/health/infrastructure (spec 8.1).
    pub async fn infrastructure_health(
        &self,
        request: InfrastructureHealthRequest,
    ) -> ServiceResult<InfrastructureHealthResponse> {
        let _ = (&self.deps, request);
        Err(ServiceError::new(
            501,
            "infrastructure_health: not implemented yet",
        ))
    }

    /// POST /orchestrator/health/services (spec 8.2, 12).
    pub async fn services_health(
        &self,
        request: ServiceHealthRequest,
    ) -> ServiceResult<orchestrator_core::health::ServiceHealthReport> {
        let _ = (&self.deps, request);
        Err(ServiceError::new(
            501,
            "services_health: not implemented yet",
        ))
    }

    /// POST /orchestrator/services/restart (spec 8.3, 15).
    pub async fn restart_service(
        &self,
        request: ServiceRestartRequest,
    ) -> ServiceResult<ServiceRestartResult> {
        let _ = (&self.deps, request);
        Err(ServiceError::new(
            501,
            "restart_service: not implemented yet",
        ))
    }

    /// POST /orchestrator/services/should-restart (spec 8.4, 12.3).
    pub async fn should_restart(
        &self,
        request: ShouldRestartServiceRequest,
    ) -> ServiceResult<orchestrator_core::restart::RestartRecommendation> {
        let _ = (&self.deps, request);
        Err(ServiceError::new(
            501,
            "should_restart: not implemented yet",
        ))
    }
}

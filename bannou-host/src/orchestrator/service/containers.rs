//! Endpoint group `containers` (see the parent module for the conventions).

use orchestrator_core::api::*;

use super::{OrchestratorService, ServiceError, ServiceResult};

impl OrchestratorService {
    /// POST /orchestrator/backends/list (spec 8.5, 18.1, D6).
    pub async fn backends(&self, request: ListBackendsRequest) -> ServiceResult<BackendsResponse> {
        let _ = (&self.deps, request);
        Err(ServiceError::new(501, "backends: not implemented yet"))
    }

    /// POST /orchestrator/containers/status (spec 8.15).
    pub async fn container_status(
        &self,
        request: GetContainerStatusRequest,
    ) -> ServiceResult<ContainerStatus> {
        let _ = (&self.deps, request);
        Err(ServiceError::new(
            501,
            "container_status: not implemented yet",
        ))
    }

    /// POST /orchestrator/containers/request-restart (spec 8.14, D5).
    pub async fn request_container_restart(
        &self,
        request: ContainerRestartRequestBody,
    ) -> ServiceResult<ContainerRestartResponse> {
        let _ = (&self.deps, request);
        Err(ServiceError::new(
            501,
            "request_container_restart: not implemented yet",
        ))
    }

    /// POST /orchestrator/logs (spec 8.12, D13).
    pub async fn logs(&self, request: GetLogsRequest) -> ServiceResult<LogsResponse> {
        let _ = (&self.deps, request);
        Err(ServiceError::new(501, "logs: not implemented yet"))
    }

    /// POST /orchestrator/clean (spec 8.11, 17, D12).
    pub async fn clean(&self, request: CleanRequest) -> ServiceResult<CleanResponse> {
        let _ = (&self.deps, request);
        Err(ServiceError::new(501, "clean: not implemented yet"))
    }
}

//! Endpoint group `topology` (see the parent module for the conventions).

use orchestrator_core::api::*;

use super::{OrchestratorService, ServiceError, ServiceResult};

impl OrchestratorService {
    /// POST /orchestrator/topology (spec 8.13, 14).
    pub async fn update_topology(
        &self,
        request: TopologyUpdateRequest,
    ) -> ServiceResult<TopologyUpdateResponse> {
        let _ = (&self.deps, request);
        Err(ServiceError::new(
            501,
            "update_topology: not implemented yet",
        ))
    }
}

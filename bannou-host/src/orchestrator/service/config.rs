//! Endpoint group `config` (see the parent module for the conventions).

use orchestrator_core::api::*;

use super::{OrchestratorService, ServiceError, ServiceResult};

impl OrchestratorService {
    /// POST /orchestrator/config/rollback (spec 8.16, 11.2); redeploys the restored version.
    pub async fn rollback(
        &self,
        request: ConfigRollbackRequest,
    ) -> ServiceResult<ConfigRollbackResponse> {
        let _ = (&self.deps, request);
        Err(ServiceError::new(501, "rollback: not implemented yet"))
    }

    /// POST /orchestrator/config/version (spec 8.17).
    pub async fn config_version(
        &self,
        request: GetConfigVersionRequest,
    ) -> ServiceResult<ConfigVersionResponse> {
        let _ = (&self.deps, request);
        Err(ServiceError::new(
            501,
            "config_version: not implemented yet",
        ))
    }
}

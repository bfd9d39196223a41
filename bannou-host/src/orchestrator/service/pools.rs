//! Endpoint group `pools` (see the parent module for the conventions).

use orchestrator_core::api::*;

use super::{OrchestratorService, ServiceError, ServiceResult};

impl OrchestratorService {
    /// POST /orchestrator/processing-pool/acquire (spec 8.18, 13.4).
    pub async fn acquire(
        &self,
        request: AcquireProcessorRequest,
    ) -> ServiceResult<AcquireProcessorResponse> {
        let _ = (&self.deps, request);
        Err(ServiceError::new(501, "acquire: not implemented yet"))
    }

    /// POST /orchestrator/processing-pool/release (spec 8.19, 13.5).
    pub async fn release(
        &self,
        request: ReleaseProcessorRequest,
    ) -> ServiceResult<ReleaseProcessorResponse> {
        let _ = (&self.deps, request);
        Err(ServiceError::new(501, "release: not implemented yet"))
    }

    /// POST /orchestrator/processing-pool/status (spec 8.20, 13.7).
    pub async fn pool_status(
        &self,
        request: GetPoolStatusRequest,
    ) -> ServiceResult<PoolStatusResponse> {
        let _ = (&self.deps, request);
        Err(ServiceError::new(501, "pool_status: not implemented yet"))
    }

    /// POST /orchestrator/processing-pool/scale (spec 8.21, 13.8).
    pub async fn scale_pool(&self, request: ScalePoolRequest) -> ServiceResult<ScalePoolResponse> {
        let _ = (&self.deps, request);
        Err(ServiceError::new(501, "scale_pool: not implemented yet"))
    }

    /// POST /orchestrator/processing-pool/cleanup (spec 8.22, 13.9).
    pub async fn cleanup_pool(
        &self,
        request: CleanupPoolRequest,
    ) -> ServiceResult<CleanupPoolResponse> {
        let _ = (&self.deps, request);
        Err(ServiceError::new(501, "cleanup_pool: not implemented yet"))
    }
}

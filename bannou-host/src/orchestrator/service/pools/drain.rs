//! Draining pool workers on request (ours, D60 (docs/DECISIONS.md#d60)): the service
//! picks the workers and the deadline; the scaler drains them
//! (`crate::orchestrator::pool_scaler::PoolScaler::drain`).

use orchestrator_core::api::*;
use orchestrator_pools::{LeaseError, ProcessorId};

use super::super::errors::lease_error;
use super::super::requests::{pool_type, validated};
use super::super::{Answer, OrchestratorService, ServiceError, ServiceResult};

impl OrchestratorService {
    /// POST /orchestrator/processing-pool/drain (ours, docs/COMPATIBILITY.md#drain-pool,
    /// D60 (docs/DECISIONS.md#d60)).
    ///
    /// Drains one worker (`processorId`, a processor id or app-id) or every worker of the
    /// pool: none is leased again; idle and starting ones stop at once; a busy one keeps
    /// its lease until it is released or the deadline passes (`deadlineSeconds`, default
    /// `ORCHESTRATOR_POOL_DRAIN_TIMEOUT_SECONDS`), its holder told by a
    /// `WorkerDrainingEvent`, and stops after. The autoscaler may start new workers for
    /// the pool meanwhile. 404 for an unconfigured pool or an unknown worker; 500 when no
    /// worker could be drained.
    pub async fn drain_pool(&self, request: DrainPoolRequest) -> ServiceResult<DrainPoolResponse> {
        validated(&request)?;
        let pool = pool_type(&request.pool_type)?;
        let status = self.configured_pool(&pool).await?;
        let workers: Vec<ProcessorId> = match &request.processor_id {
            Some(key) => {
                let worker = status
                    .workers
                    .iter()
                    .find(|w| {
                        w.processor_id.as_str() == key
                            || w.app_id.as_str().eq_ignore_ascii_case(key)
                    })
                    .ok_or_else(|| {
                        lease_error(LeaseError::UnknownWorker {
                            pool: pool.clone(),
                            worker: key.clone(),
                        })
                    })?;
                vec![worker.processor_id.clone()]
            }
            None => status
                .workers
                .iter()
                .map(|w| w.processor_id.clone())
                .collect(),
        };
        let deadline = match request.deadline() {
            Some(d) => self.deps.clock.now() + d,
            None => self.deps.scaler.default_drain_deadline(),
        };
        let asked = workers.len();
        let report = self
            .deps
            .scaler
            .drain(&status.config, workers, deadline)
            .await;
        if !report.errors.is_empty() {
            tracing::warn!(pool = %pool, errors = ?report.errors, "pool drain had failures");
            if asked > 0 && report.removed.is_empty() && report.draining.is_empty() {
                return Err(ServiceError::internal(format!(
                    "draining pool `{pool}` failed: {}",
                    report.errors.join("; ")
                )));
            }
        }
        let names = |apps: &[orchestrator_core::AppId]| {
            apps.iter().map(ToString::to_string).collect::<Vec<_>>()
        };
        Ok(Answer::ok(DrainPoolResponse {
            removed: names(&report.removed),
            draining: names(&report.draining),
            deadline: (!report.draining.is_empty()).then_some(deadline),
        }))
    }
}

#[cfg(test)]
mod tests;

//! Renewing a lease (ours, D60 (docs/DECISIONS.md#d60)): the expiry moves back only for
//! the holder of the lease's current fencing token and never on a draining worker; every
//! stale token refused is counted.

use orchestrator_core::Timestamp;
use orchestrator_core::api::*;
use orchestrator_pools::{FencingToken, Lease, LeaseError, LeaseId, PoolType};

use super::super::errors::lease_error;
use super::super::requests::{pool_type, validated};
use super::super::{Answer, OrchestratorService, ServiceError, ServiceResult};

impl OrchestratorService {
    /// POST /orchestrator/processing-pool/renew (ours, docs/COMPATIBILITY.md#renew-processor,
    /// D60 (docs/DECISIONS.md#d60)).
    ///
    /// Pushes the lease's expiry back by `extendSeconds` from its current expiry, in the
    /// pool named or, as a release does, in whichever pool holds it. 404 for an unknown
    /// lease (never granted, released, or reclaimed); 409 for a fencing token that is not
    /// the lease's (refused, changes nothing, counted in
    /// `pool_stale_fencing_tokens_total{operation="renew"}`), for a lease past its expiry,
    /// and for a lease on a draining worker (it is not extended: it ends at its expiry,
    /// which the drain brought to the deadline at the latest).
    pub async fn renew(
        &self,
        request: RenewProcessorRequest,
    ) -> ServiceResult<RenewProcessorResponse> {
        validated(&request)?;
        let lease_id = LeaseId(request.lease_id);
        let op = Renew {
            lease_id,
            token: FencingToken(request.fencing_token),
            extend_by: request.extend_by(),
            now: self.deps.clock.now(),
        };
        let mut renewed = None;
        if let Some(name) = &request.pool_type {
            renewed = self.renew_in(&[pool_type(name)?], &op).await?;
        } else {
            let known = self.deps.scaler.known_pools();
            renewed = renewed.or(self.renew_in(&known, &op).await?);
            if renewed.is_none() {
                let mut others = self.deps.leases.list_pools().await.map_err(lease_error)?;
                others.retain(|p| !known.contains(p));
                renewed = self.renew_in(&others, &op).await?;
            }
        }
        let lease = renewed.ok_or_else(|| {
            ServiceError::not_found(format!(
                "lease {lease_id} not found (never granted, already released, or reclaimed after expiry)"
            ))
        })?;
        Ok(Answer::ok(RenewProcessorResponse {
            processor_id: lease.processor_id.to_string(),
            app_id: lease.app_id.to_string(),
            lease_id: lease.lease_id.0,
            expires_at: lease.expires_at,
            fencing_token: lease.fencing_token.0,
        }))
    }

    /// Renews the lease of `op` in whichever of `pools` holds it; `None` when none does.
    /// A refusal changes nothing, so trying the pools in turn is safe.
    async fn renew_in(
        &self,
        pools: &[PoolType],
        op: &Renew,
    ) -> Result<Option<Lease>, ServiceError> {
        for pool in pools {
            let renewed = self
                .deps
                .leases
                .renew(pool, op.lease_id, op.token, op.extend_by, op.now)
                .await;
            match renewed {
                Ok(lease) => return Ok(Some(lease)),
                Err(LeaseError::UnknownLease { .. } | LeaseError::UnknownPool { .. }) => {}
                Err(e) => {
                    if matches!(e, LeaseError::StaleFencingToken { .. }) {
                        self.metrics.stale_fencing_token(pool.as_str(), "renew");
                    }
                    return Err(lease_error(e));
                }
            }
        }
        Ok(None)
    }
}

/// What a renew asks of the store.
struct Renew {
    lease_id: LeaseId,
    token: FencingToken,
    extend_by: std::time::Duration,
    now: Timestamp,
}

#[cfg(test)]
mod tests;

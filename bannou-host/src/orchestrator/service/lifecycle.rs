//! The lifecycle lock: one deploy, teardown, rollback or topology update at a time, on
//! the leader only. A running canary holds it from its deploy to its end (D64
//! (docs/DECISIONS.md#d64)).

use super::{OrchestratorService, ServiceError};
use crate::orchestrator::leader::LeaderState;

impl OrchestratorService {
    /// Takes the lifecycle lock, or answers 409 when another deploy, teardown, rollback or
    /// topology update is running: each reads the current configuration, changes
    /// containers and routes, and may write a new version, so a second one at the same
    /// time would plan against a state the first is changing.
    ///
    /// Answers 503 on a replica that does not lead: the lock is per process, so lifecycle
    /// operations run on the leader only, which makes the lock hold across replicas and
    /// lets the leader's reconciliation treat any recorded deploy it is not running itself
    /// as cut off (`reconcile.rs`).
    pub(super) async fn begin_lifecycle(
        &self,
        what: &str,
    ) -> Result<tokio::sync::OwnedMutexGuard<()>, ServiceError> {
        if let LeaderState::Follower { holder, .. } = self.deps.leader.state() {
            return Err(ServiceError::unavailable(format!(
                "cannot {what}: this replica ({}) does not lead the control plane (leader: {}); \
                     deployments, teardowns, rollbacks and topology updates run on the leader: \
                     send the request there, or retry once a leader is elected",
                self.deps.leader.candidate_id(),
                holder.as_deref().unwrap_or("unknown"),
            )));
        }
        let busy = || match self.running_canary() {
            // A running canary holds the lock until it is promoted or aborted (D64).
            Some(canary) => ServiceError::conflict(format!(
                "cannot {what}: canary deployment {} is running ({}% of the calls of {} on {}); \
                 promote it (POST /orchestrator/promote) or abort it (POST /orchestrator/abort) first",
                canary.deployment_id,
                canary.weight,
                canary.services_text(),
                canary.new_nodes.join(", "),
            )),
            None => ServiceError::conflict(format!(
                "cannot {what}: another deployment, teardown, rollback or topology update is in progress"
            )),
        };
        if let Ok(guard) = self.lifecycle.clone().try_lock_owned() {
            return Ok(guard);
        }
        // A reconciliation sweep is short and not the caller's business: wait for it
        // (bounded by one wave's timeout) instead of answering 409.
        if !self.sweeping.load(std::sync::atomic::Ordering::Acquire) {
            return self.lifecycle.clone().try_lock_owned().map_err(|_| busy());
        }
        tokio::time::timeout(
            self.deps.settings.wave_timeout,
            self.lifecycle.clone().lock_owned(),
        )
        .await
        .map_err(|_| busy())
    }
}

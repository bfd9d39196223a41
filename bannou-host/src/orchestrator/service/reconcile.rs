//! Reconciliation of a deploy that was cut off (issue 8): a deploy records what it is
//! about to start before its first wave (`OrchestratorStore::begin_deploy`) and forgets it
//! when it ends. A control plane killed in between finds the record on its next start;
//! [`OrchestratorService::reconcile_interrupted_deploy`] then does what the cut-off deploy
//! would have done on a failed wave: it reverts to the last stable configuration version
//! (or, with none, removes what the cut-off deploy started), planning against every node
//! of the current configuration *and* of the cut-off target that the backend still runs,
//! so nothing the cut-off deploy started is left behind. Then the record is cleared.
//!
//! What it does not do yet: adopt or redeploy the nodes of a configuration that was not
//! being changed when the process died (after a clean restart on the in-process backend
//! those nodes are gone; on Docker they keep running and are planned against as usual).

use std::collections::BTreeSet;

use orchestrator_core::events::DeploymentAction;
use orchestrator_core::{ResolvedNode, Timestamp};

use super::deploy_support::{config_nodes, store_error};
use super::{OrchestratorService, ServiceError};

/// What [`OrchestratorService::reconcile_interrupted_deploy`] found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconcileReport {
    /// The deploy that was cut off.
    pub deployment_id: String,
    /// Its preset, when it had one.
    pub preset: Option<String>,
    /// When it began.
    pub began: Timestamp,
    /// App-ids the backend still ran when reconciliation planned (sorted).
    pub found_running: Vec<String>,
    /// What the revert did (the same notes a failed deploy's answer carries).
    pub notes: Vec<String>,
}

impl OrchestratorService {
    /// Finishes the deploy a crash cut off, if the store records one (see the module
    /// docs); `None` when there is none. Takes the deploy lock like any deploy.
    pub async fn reconcile_interrupted_deploy(
        &self,
    ) -> Result<Option<ReconcileReport>, ServiceError> {
        let deps = &self.deps;
        let Some(cut) = deps.store.deploy_in_progress().await.map_err(store_error)? else {
            return Ok(None);
        };
        let _lifecycle = self.begin_lifecycle("reconcile")?;
        let deployment_id = cut.deployment_id.clone().unwrap_or_default();
        tracing::warn!(
            %deployment_id,
            preset = cut.preset_name.as_deref().unwrap_or("(topology)"),
            "a deploy was cut off (the previous process stopped mid-deploy): reverting it"
        );
        let backend = deps.backends.select(None).await?;
        let current = self.current_config().await?;

        // Everything either side may have started, then what of it still runs.
        let mut candidates: Vec<ResolvedNode> = cut.nodes.clone();
        let mut seen: BTreeSet<String> = candidates
            .iter()
            .map(|n| n.app_id.as_str().to_ascii_lowercase())
            .collect();
        for n in current.as_ref().map(config_nodes).unwrap_or_default() {
            if seen.insert(n.app_id.as_str().to_ascii_lowercase()) {
                candidates.push(n);
            }
        }
        let running = self.live_nodes(candidates, backend.as_ref()).await;
        let found_running: Vec<String> = {
            let mut v: Vec<String> = running.iter().map(|n| n.app_id.to_string()).collect();
            v.sort();
            v
        };

        let notes = self
            .revert_after_failure(&backend, &running, &[], current.as_ref(), &deployment_id)
            .await;
        let mut event = self.deployment_event(DeploymentAction::Failed, &deployment_id);
        event.preset = cut.preset_name.clone();
        event.backend = Some(backend.backend_type());
        event.error = Some(format!(
            "cut off by a control-plane restart; reconciled: {}",
            notes.join("; ")
        ));
        self.publish_deployment(event).await;
        deps.store
            .end_deploy(&deployment_id)
            .await
            .map_err(store_error)?;
        tracing::info!(%deployment_id, ?notes, "cut-off deploy reconciled");
        Ok(Some(ReconcileReport {
            deployment_id,
            preset: cut.preset_name.clone(),
            began: cut.timestamp,
            found_running,
            notes,
        }))
    }
}

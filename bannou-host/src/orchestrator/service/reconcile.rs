//! Reconciliation: the leader's periodic sweep that makes what runs agree with
//! what the store records. Start at [`OrchestratorService::reconcile`]; the host runs it
//! once the replica leads and then every `ORCHESTRATOR_RECONCILE_INTERVAL_SECONDS`.
//!
//! One sweep, under the lifecycle lock (so never beside a deploy of this replica; and
//! lifecycle operations run on the leader only, so never beside another replica's):
//! 1. **A cut-off deploy.** A deploy records what it is about to start before its first
//!    wave (`OrchestratorStore::begin_deploy`) and forgets it when it ends. A record found
//!    while the lock is free belongs to a process that died (or lost its leadership)
//!    mid-deploy: [`OrchestratorService::reconcile_interrupted_deploy`] does what that
//!    deploy would have done on a failed wave, reverting to the last stable version (or,
//!    with none, removing what it started), planning against every node of the current
//!    configuration *and* of the cut-off target that the backend still runs.
//! 2. **Adopt or restart the current configuration's nodes.** Nodes the backend runs are
//!    adopted as they are; nodes it does not run (a crash took them, or the in-process
//!    backend died with the previous process) are deployed again; a container stopped
//!    less than the grace ago is taken for a restart in progress and left alone. Services of these nodes
//!    with no route get one to their node; a route set otherwise is left alone.
//! 3. **Pool workers** whose container is gone are started again under the same identity
//!    (`PoolScaler::repair_workers`): a lease on one stays valid, and nobody else is given it.
//! 4. **Containers nobody owns** are torn down: ones this control plane started (their
//!    app-id is named by a configuration version it still records, or they carry the
//!    label of one of its pools) that neither the current configuration nor a registered
//!    pool worker names, older than the grace. Containers with our labels that this
//!    control plane cannot prove it started (another control plane sharing the engine)
//!    are left alone.
//! 5. The first sweep of a process **re-publishes the mappings**, so every node hears
//!    from the new process at once.

use std::collections::BTreeSet;
use std::time::Duration;

use orchestrator_core::events::DeploymentAction;
use orchestrator_core::ports::backend::{TeardownOptions, is_managed};
use orchestrator_core::{AppId, ResolvedNode, Timestamp};

use super::errors::store_error;
use super::routing::route_to;
use super::running::config_nodes;
use super::{OrchestratorService, ServiceError};
use crate::orchestrator::pool_scaler::{POOL_LABEL, running_or_restarting};

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
        let _lifecycle = self.begin_lifecycle("reconcile").await?;
        let cut = self
            .deps
            .store
            .deploy_in_progress()
            .await
            .map_err(store_error)?;
        self.revert_cut_off_deploy(cut).await
    }

    /// Step 1 of the sweep; the caller holds the lifecycle lock.
    async fn revert_cut_off_deploy(
        &self,
        cut: Option<orchestrator_core::records::DeploymentConfiguration>,
    ) -> Result<Option<ReconcileReport>, ServiceError> {
        let deps = &self.deps;
        let Some(cut) = cut else {
            return Ok(None);
        };
        let deployment_id = cut.deployment_id.clone().unwrap_or_default();
        tracing::warn!(
            %deployment_id,
            preset = cut.preset_name.as_deref().unwrap_or("(topology)"),
            "a deploy was cut off (the previous process stopped mid-deploy): reverting it"
        );
        let backend = self.recorded_backend(cut.backend).await?;
        let current = self.current_config().await?;

        // Everything either side may have started, then what of it still runs.
        let mut candidates: Vec<ResolvedNode> = cut.nodes.clone();
        let mut seen: BTreeSet<AppId> = candidates.iter().map(|n| n.app_id.clone()).collect();
        for n in current.as_ref().map(config_nodes).unwrap_or_default() {
            if seen.insert(n.app_id.clone()) {
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

/// Sets the "a sweep holds the lifecycle lock" flag for as long as it lives, cleared
/// however the sweep ends (an error, a dropped future).
struct Sweeping<'a>(&'a std::sync::atomic::AtomicBool);

impl<'a> Sweeping<'a> {
    fn mark(flag: &'a std::sync::atomic::AtomicBool) -> Self {
        flag.store(true, std::sync::atomic::Ordering::Release);
        Sweeping(flag)
    }
}

impl Drop for Sweeping<'_> {
    fn drop(&mut self) {
        self.0.store(false, std::sync::atomic::Ordering::Release);
    }
}

impl OrchestratorService {
    /// The backend a record names, made the active one when none is yet (after a restart
    /// the registry starts with none; D6 (docs/DECISIONS.md#d6) says the nodes' backend is
    /// used). Falls back to the usual choice when the record names none or it cannot be
    /// used.
    async fn recorded_backend(
        &self,
        recorded: Option<orchestrator_core::events::BackendType>,
    ) -> Result<std::sync::Arc<dyn orchestrator_core::ports::backend::ContainerBackend>, ServiceError>
    {
        let registry = &self.deps.backends;
        if let Some(kind) = recorded.filter(|_| registry.active_type().is_none()) {
            match registry.select(Some(kind)).await {
                Ok(backend) => {
                    registry.set_active(kind);
                    return Ok(backend);
                }
                Err(e) => tracing::warn!(backend = %kind, error = %e.body.error,
                    "the recorded backend cannot be used; reconciling on the default one"),
            }
        }
        registry.select(None).await
    }
}

/// How many configuration versions [`OrchestratorService::ever_named`] reads (retention
/// normally keeps far fewer).
const HISTORY_SCANNED: usize = 10_000;

impl OrchestratorService {
    /// App-ids this control plane can prove it started: named by any
    /// configuration version it still records or by the cut-off deploy `cut`. With its
    /// pools (`PoolScaler::repair_workers`) that is what it may remove. An engine may be
    /// shared with another control plane (a second environment, a test
    /// run), whose containers carry the same labels: those are never touched.
    async fn ever_named(&self, cut: &[ResolvedNode]) -> Result<BTreeSet<AppId>, ServiceError> {
        let history = self
            .deps
            .store
            .config_history(HISTORY_SCANNED)
            .await
            .map_err(store_error)?;
        Ok(history
            .iter()
            .flat_map(config_nodes)
            .chain(cut.iter().cloned())
            .map(|n| n.app_id)
            .collect())
    }
}

/// What one [`OrchestratorService::reconcile`] sweep found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReconcileSweep {
    /// The cut-off deploy it reverted, if one was recorded.
    pub interrupted: Option<ReconcileReport>,
    /// Nodes of the current configuration found running and kept as they are.
    pub adopted: Vec<AppId>,
    /// Nodes of the current configuration that did not run and were deployed again.
    pub redeployed: Vec<AppId>,
    /// Pool workers whose container was gone, started again under the same identity.
    pub workers_restarted: Vec<AppId>,
    /// Containers of ours that nobody owns, torn down.
    pub removed: Vec<AppId>,
    /// Whether the mappings were re-published (the first sweep of a process).
    pub republished: bool,
    /// What failed; the rest of the sweep still ran, and the next sweep tries again.
    pub errors: Vec<String>,
}

impl ReconcileSweep {
    /// True when the sweep changed nothing and nothing failed.
    pub fn is_quiet(&self) -> bool {
        self.interrupted.is_none()
            && self.redeployed.is_empty()
            && self.workers_restarted.is_empty()
            && self.removed.is_empty()
            && self.errors.is_empty()
    }
}

impl OrchestratorService {
    /// One reconciliation sweep (see the module docs). `first` re-publishes the mappings.
    /// `grace` protects what changed moments ago: younger containers are never removed,
    /// younger Pending workers never restarted, and a container stopped less than `grace`
    /// ago (a restart in progress) is not deployed again. Answers 409 when a
    /// deploy, teardown, rollback or topology update of this replica is running (the next
    /// sweep comes soon enough), 503 on a follower. A deploy that arrives during a sweep
    /// waits for it.
    pub async fn reconcile(
        &self,
        first: bool,
        grace: Duration,
    ) -> Result<ReconcileSweep, ServiceError> {
        let _lifecycle = self.begin_lifecycle("reconcile").await?;
        let _sweeping = Sweeping::mark(&self.sweeping);
        let deps = &self.deps;
        // Read once: step 1 reverts it, step 4 counts its nodes as ours.
        let cut = deps.store.deploy_in_progress().await.map_err(store_error)?;
        let cut_nodes = cut.as_ref().map(config_nodes).unwrap_or_default();
        let mut sweep = ReconcileSweep {
            interrupted: self.revert_cut_off_deploy(cut).await?,
            ..ReconcileSweep::default()
        };

        let current = self.current_config().await?;
        let backend = self
            .recorded_backend(current.as_ref().and_then(|c| c.backend))
            .await?;
        let listed = backend.list().await.map_err(|e| {
            ServiceError::unavailable(format!("backend cannot list containers: {e}")).caused_by(e)
        })?;
        let running = running_or_restarting(&listed, deps.clock.now(), grace);

        // 2. The current configuration's nodes: adopt what runs, deploy what does not.
        let nodes = current.as_ref().map(config_nodes).unwrap_or_default();
        // A record without node records (upstream's, or ours from before they were kept)
        // names app-ids but not how to start them: adopt only, never guess a node.
        let startable = current.as_ref().is_some_and(|c| !c.nodes.is_empty());
        let mut routed: Vec<&ResolvedNode> = Vec::new();
        for node in nodes.iter().filter(|n| !self.is_control_plane(&n.app_id)) {
            if running.contains(&node.app_id) {
                sweep.adopted.push(node.app_id.clone());
                routed.push(node);
                continue;
            }
            if !startable {
                sweep.errors.push(format!(
                    "{} is not running and the configuration does not record how to start it: deploy again",
                    node.app_id
                ));
                continue;
            }
            self.expect_node(&node.app_id);
            match backend.deploy_node(&self.node_deployment(node)).await {
                Ok(_) => {
                    tracing::warn!(app_id = %node.app_id, "a node of the current configuration was not running: deployed it again");
                    sweep.redeployed.push(node.app_id.clone());
                    routed.push(node);
                }
                Err(e) => sweep.errors.push(format!("redeploy {}: {e}", node.app_id)),
            }
        }
        let warnings = self
            .change_routes(|table, now, port| {
                let mut written = Vec::new();
                for node in &routed {
                    let unrouted: Vec<String> = node
                        .routed_services
                        .iter()
                        .filter(|s| table.route(s).is_none())
                        .cloned()
                        .collect();
                    written.extend(route_to(table, &unrouted, &node.app_id, now, port));
                }
                written
            })
            .await;
        sweep.errors.extend(warnings);

        // 3. Pool workers whose container is gone.
        let workers = match deps.scaler.repair_workers(grace).await {
            Ok(repair) => {
                sweep.workers_restarted = repair.restarted;
                sweep.errors.extend(repair.errors);
                Some((repair.workers, repair.pools))
            }
            Err(e) => {
                sweep.errors.push(format!("pool workers not checked: {e}"));
                None
            }
        };

        // 4. Containers nobody owns. Without the worker list or the history nothing is
        // removed: a container of ours must never be taken for an orphan by mistake.
        let ours = self.ever_named(&cut_nodes).await;
        if let Some(err) = ours.as_ref().err() {
            sweep.errors.push(format!("orphans not checked: {err}"));
        }
        if let (Some((workers, pools)), Ok(ever_named)) = (workers, ours) {
            let named: BTreeSet<&AppId> = nodes.iter().map(|n| &n.app_id).collect();
            let now = deps.clock.now();
            let mut orphans: Vec<AppId> = listed
                .iter()
                .filter(|c| is_managed(&c.labels) && !self.is_control_plane(&c.app_id))
                .filter(|c| {
                    let app = &c.app_id;
                    let ours = ever_named.contains(app)
                        || c.labels.get(POOL_LABEL).is_some_and(|p| pools.contains(p));
                    ours && !named.contains(app) && !workers.contains(app)
                })
                .filter(|c| {
                    c.created_at
                        .is_none_or(|at| now.saturating_since(at) >= grace)
                })
                .map(|c| c.app_id.clone())
                .collect();
            orphans.sort();
            orphans.dedup();
            for app in orphans {
                let (result, warnings) = self
                    .teardown_node(backend.as_ref(), &app, &TeardownOptions::default())
                    .await;
                sweep.errors.extend(warnings);
                match result {
                    Ok(_) => {
                        tracing::warn!(app_id = %app, "a container of ours that nobody owns: removed it");
                        sweep.removed.push(app);
                    }
                    Err(e) => sweep.errors.push(format!("remove orphan {app}: {e}")),
                }
            }
        }

        // 5. Tell every node the table of this process.
        if first {
            deps.broadcaster.table_changed();
            sweep.republished = true;
        }
        Ok(sweep)
    }
}

#[cfg(test)]
mod tests;

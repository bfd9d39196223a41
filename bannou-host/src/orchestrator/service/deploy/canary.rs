//! Canary deploys (D64 (docs/DECISIONS.md#d64)): the changed nodes come up beside the old
//! ones exactly as for blue-green ([`bring_up_side_by_side`], [`discard`] on a failure);
//! once healthy, every route the switch would move from an old app-id to its new one gets
//! a weighted split in one mappings version (D63 (docs/DECISIONS.md#d63)): the old app-id
//! stays the primary, so consumers that ignore `weightedMappings` keep calling the old
//! nodes. The canary then runs until `POST /orchestrator/promote` ([`switch_routes`], which
//! drops the splits in the same version because they name the old app-ids, then
//! [`retire`]) or `POST /orchestrator/abort` (the splits cleared, then [`discard`]), or
//! until its watcher does either by itself.
//!
//! Invariants: at most one canary runs, on the leader, in memory ([`CanarySlot`]); it holds
//! the lifecycle lock and the deploy record from its deploy to its end, so every other
//! deploy, teardown, rollback or topology update is refused with a conflict that names it,
//! and a leader that dies or stops leading leaves the record to the next leader's
//! reconciliation, which reverts it (the splits are not stored, D63). The deployed
//! configuration stays the old one until promotion. Whoever takes the canary out of the
//! slot (a call or the watcher) is the only one that ends it.
//!
//! [`bring_up_side_by_side`]: OrchestratorService::bring_up_side_by_side
//! [`discard`]: OrchestratorService::discard
//! [`switch_routes`]: OrchestratorService::switch_routes
//! [`retire`]: OrchestratorService::retire

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use orchestrator_core::api::*;
use orchestrator_core::events::InstanceHealthStatus;
use orchestrator_core::health::is_infrastructure_service;
use orchestrator_core::ports::backend::ContainerBackend;
use orchestrator_core::{AppId, Timestamp};
use orchestrator_pools::PoolConfig;
use orchestrator_routing::WeightedTargets;
use orchestrator_routing::table::canonical_service;
use tokio::sync::OwnedMutexGuard;

use super::super::config_record::ConfigRecord;
use super::super::routing::WeightChange;
use super::super::wave_failure::texts;
use super::super::{Answer, OrchestratorService, ServiceError, ServiceResult, non_empty};
use super::blue_green::stopped_by;
use super::{Failed, Prepared, healthy_services, topology_of};
use crate::orchestrator::leader::LeaderState;
use crate::orchestrator::routing_acks;

/// How often the watcher looks again when no heartbeat wakes it (a node that falls
/// silent changes nothing the heartbeat pipeline would signal).
pub(in crate::orchestrator::service) const CANARY_TICK: Duration = Duration::from_secs(1);

/// Where the running canary lives: on the leader, in memory (D64).
pub(in crate::orchestrator::service) type CanarySlot = Arc<CanaryCell>;

/// What a [`CanarySlot`] shares.
pub(in crate::orchestrator::service) type CanaryCell = Mutex<Option<ActiveCanary>>;

/// A running canary: what promote and abort need.
pub(in crate::orchestrator::service) struct ActiveCanary {
    /// What the deploy answered (and a conflict names).
    status: CanaryStatus,
    preset: Option<String>,
    backend: Arc<dyn ContainerBackend>,
    request_environment: BTreeMap<String, String>,
    /// The side-by-side plan: its routes are the switch, its nodes the new configuration.
    plan: orchestrator_core::planner::Plan,
    pools: Vec<PoolConfig>,
    new_nodes: Vec<AppId>,
    old_nodes: Vec<AppId>,
    /// Node names started (the `changes` of the deployment's end event).
    started: Vec<String>,
    /// Each new node and the services whose health decides an automatic abort.
    watched: Vec<(AppId, Vec<String>)>,
    /// When the watcher promotes it by itself.
    promote_at: Option<tokio::time::Instant>,
    /// The lifecycle lock, held until the canary ends (set once the deploy answered).
    lifecycle: Option<OwnedMutexGuard<()>>,
}

impl OrchestratorService {
    /// Runs a canary deploy's `prepared` side-by-side plan: bring-up (a failure discards
    /// the new nodes and answers as a failed blue-green deploy), then the weighted split in
    /// one version; leaves the canary in the slot and answers with it. The caller hands
    /// over the lifecycle lock ([`Self::watch_canary`]).
    pub(super) async fn run_canary(
        &self,
        request: &DeployRequest,
        deployment_id: &str,
        backend: &Arc<dyn ContainerBackend>,
        prepared: Prepared,
        begun: Timestamp,
    ) -> Answer<DeployResponse> {
        let Prepared {
            preset,
            running,
            plan,
            pools,
            mut warnings,
            slots,
            ..
        } = prepared;
        let backend_type = backend.backend_type();
        let exec = self.bring_up_side_by_side(backend, &running, &plan).await;
        self.deps.backends.set_active(backend_type);
        warnings.extend(exec.warnings.iter().cloned());
        if !exec.failures.is_empty() {
            let failures = texts(&exec.failures);
            let mut notes = failures.clone();
            if exec.lost_leadership {
                notes.push(
                    "Canary: stopped before any call went to the new nodes; the leader's \
                     reconciliation finishes it"
                        .to_owned(),
                );
            } else {
                let started: Vec<AppId> =
                    exec.started.iter().map(|s| s.node.app_id.clone()).collect();
                let (_, more) = self.discard(backend, &started).await;
                notes.push(
                    "Canary: the new nodes were stopped before any call went to them; the \
                     old nodes still serve and no route moved"
                        .to_owned(),
                );
                notes.extend(more);
            }
            notes.extend(warnings);
            let failed = Failed {
                deployment_id,
                backend: backend_type,
                preset,
                begun,
            };
            return self
                .failed(failed, exec.started_names(), &failures, notes)
                .await;
        }

        let weight = request.canary_weight.unwrap_or(1).clamp(1, 99);
        let old_nodes = stopped_by(&plan);
        let new_nodes: Vec<AppId> = slots.iter().map(|s| s.new.clone()).collect();
        let changes = self.canary_splits(&plan.routing, &slots, weight);
        let services: Vec<String> = changes.iter().map(|(s, _)| s.clone()).collect();
        let mappings_version = match self.set_route_weights(&changes).await {
            Ok(settled) => {
                // Named in the deploy's answer like the waits of its own steps.
                routing_acks::note_laggards(&settled.body.laggards);
                warnings.extend(settled.body.warnings);
                settled.body.mappings_version
            }
            Err(e) => {
                warnings.push(format!("canary split not set: {}", e.body.error));
                None
            }
        };
        let watched = plan
            .nodes
            .iter()
            .filter(|n| new_nodes.contains(&n.app_id))
            .map(|n| {
                let services = n
                    .services
                    .iter()
                    .filter(|s| !is_infrastructure_service(s))
                    .cloned()
                    .collect();
                (n.app_id.clone(), services)
            })
            .collect();
        let promote_after = request.canary_promote_after_seconds;
        let status = CanaryStatus {
            deployment_id: deployment_id.to_owned(),
            weight,
            services,
            new_nodes: new_nodes.iter().map(ToString::to_string).collect(),
            old_nodes: old_nodes.iter().map(ToString::to_string).collect(),
            mappings_version,
            promote_after_seconds: promote_after,
        };
        tracing::info!(
            deployment_id,
            weight,
            services = ?status.services,
            version = ?mappings_version,
            "canary: running"
        );
        let answer_services = healthy_services(&plan.nodes, &exec);
        let answer = DeployResponse {
            success: true,
            deployment_id: deployment_id.to_owned(),
            backend: backend_type,
            preset: preset.clone(),
            duration: self.elapsed(begun),
            topology: Some(topology_of(&plan.nodes)),
            services: Some(answer_services),
            warnings: non_empty(warnings),
            routing_laggards: None,
            switched_routes: None,
            canary: Some(status.clone()),
        };
        let canary = ActiveCanary {
            status,
            preset,
            backend: backend.clone(),
            request_environment: request.environment.clone().unwrap_or_default(),
            started: exec.started_names(),
            plan,
            pools,
            new_nodes,
            old_nodes,
            watched,
            promote_at: promote_after.map(|s| {
                tokio::time::Instant::now() + Duration::from_secs(u64::try_from(s).unwrap_or(1))
            }),
            lifecycle: None,
        };
        *self.canary_slot() = Some(canary);
        Answer::ok(answer)
    }

    /// The splits of a canary at `weight` percent: every route of `routing` (the switch)
    /// that moves a service from a slot's old app-id, where it is routed now, to the
    /// slot's new one; the old app-id keeps `100 - weight`.
    fn canary_splits(
        &self,
        routing: &BTreeMap<String, AppId>,
        slots: &[orchestrator_core::planner::side_by_side::SlotChange],
        weight: i64,
    ) -> Vec<WeightChange> {
        let new_share = u32::try_from(weight).unwrap_or(1);
        let current = self.deps.health.lock().routing.mappings();
        routing
            .iter()
            .filter_map(|(service, new)| {
                let slot = slots.iter().find(|s| s.new == *new)?;
                let service = canonical_service(service);
                if current.get(&service) != Some(&slot.old) {
                    return None;
                }
                let split = WeightedTargets::new([
                    (slot.old.clone(), 100 - new_share),
                    (new.clone(), new_share),
                ])
                .ok()?;
                Some((service, Some(split)))
            })
            .collect()
    }

    /// Gives the running canary the lifecycle lock (held until it ends) and starts its
    /// watcher: automatic abort when a new node turns unhealthy, automatic promotion once
    /// `canaryPromoteAfterSeconds` passed, and letting go when this replica stops leading.
    pub(super) fn watch_canary(&self, lifecycle: OwnedMutexGuard<()>) {
        let id = {
            let mut slot = self.canary_slot();
            let Some(canary) = slot.as_mut() else {
                return;
            };
            canary.lifecycle = Some(lifecycle);
            canary.status.deployment_id.clone()
        };
        let service = self.clone();
        tokio::spawn(async move { service.canary_watcher(id).await });
    }

    /// The watcher of canary `id` (see [`Self::watch_canary`]): woken by every heartbeat
    /// batch (the D53 change signal) and at least every [`CANARY_TICK`]; ends when the
    /// canary does, whoever ends it.
    async fn canary_watcher(self, id: String) {
        let mut changes = self.deps.health.changes();
        loop {
            changes.borrow_and_update();
            let (watched, promote_at) = {
                let slot = self.canary_slot();
                match slot.as_ref() {
                    Some(c) if c.status.deployment_id == id => (c.watched.clone(), c.promote_at),
                    _ => return,
                }
            };
            if !self.deps.leader.is_leader() {
                // Nothing is touched: the next leader's reconciliation reverts the
                // recorded deploy (D64).
                if let Ok(canary) = self.take_canary(Some(&id)) {
                    tracing::warn!(deployment_id = %id, "canary: this replica stopped leading; left to the leader's reconciliation");
                    drop(canary);
                }
                return;
            }
            let now = tokio::time::Instant::now();
            let verdict = match self.canary_unhealthy(&watched) {
                Some(why) => Some((CanaryOutcome::Aborted, format!("unhealthy: {why}"))),
                None => promote_at.filter(|at| now >= *at).map(|_| {
                    (
                        CanaryOutcome::Promoted,
                        "healthy for canaryPromoteAfterSeconds".to_owned(),
                    )
                }),
            };
            if let Some((outcome, reason)) = verdict {
                if let Ok(canary) = self.take_canary(Some(&id)) {
                    let answer = self.end_canary(canary, outcome, reason).await;
                    tracing::warn!(
                        deployment_id = %id,
                        outcome = ?answer.outcome,
                        reason = %answer.reason,
                        stopped = ?answer.stopped_nodes,
                        "canary ended by itself"
                    );
                }
                return;
            }
            let wake = promote_at.map_or(now + CANARY_TICK, |at| at.min(now + CANARY_TICK));
            tokio::select! {
                changed = changes.changed() => {
                    if changed.is_err() {
                        tokio::time::sleep_until(wake).await;
                    }
                }
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
    }

    /// Why the canary's new nodes are not healthy now, if they are not: a node with no
    /// live instance heard within the heartbeat timeout, or a service it reports in any
    /// state but healthy. A service it no longer reports is no failure (a node stops
    /// reporting services routed to another node, docs/COMPATIBILITY.md#mappings-consumers).
    fn canary_unhealthy(&self, watched: &[(AppId, Vec<String>)]) -> Option<String> {
        let state = self.deps.health.lock();
        let now = self.deps.clock.now();
        let timeout = self.deps.settings.heartbeat_timeout;
        let mut bad = Vec::new();
        for (app, services) in watched {
            let live = state.aggregator.instances_on(app).into_iter().any(|id| {
                !state.aggregator.is_retired(id, now)
                    && state
                        .aggregator
                        .last_seen_of(id)
                        .is_some_and(|seen| now.saturating_since(seen) <= timeout)
            });
            if !live {
                bad.push(format!("{app} (no heartbeat)"));
                continue;
            }
            for service in services {
                match state.aggregator.status_on(service, app.as_str(), now) {
                    None | Some(InstanceHealthStatus::Healthy) => {}
                    Some(status) => bad.push(format!("{app}: {service} ({status})")),
                }
            }
        }
        (!bad.is_empty()).then(|| bad.join(", "))
    }

    /// POST /orchestrator/promote (ours, D64 (docs/DECISIONS.md#d64)): every route of the
    /// running canary moves to the new nodes in one version (the splits go in the same
    /// version), the consumers are waited for, the old nodes stop, and the new
    /// configuration is recorded as a successful deploy's. 404 when no canary runs (409
    /// when it is another deploy's than the one named); 503 on a replica that does not
    /// lead.
    #[tracing::instrument(name = "canary.promote", skip_all)]
    pub async fn promote(
        &self,
        request: CanaryActionRequest,
    ) -> ServiceResult<CanaryActionResponse> {
        self.end_requested(request, CanaryOutcome::Promoted).await
    }

    /// POST /orchestrator/abort (ours, D64 (docs/DECISIONS.md#d64)): the splits of the
    /// running canary are cleared in one version (every call back to the old nodes), the
    /// consumers are waited for, then the new nodes stop; the configuration is unchanged.
    /// Errors as [`Self::promote`].
    #[tracing::instrument(name = "canary.abort", skip_all)]
    pub async fn abort(&self, request: CanaryActionRequest) -> ServiceResult<CanaryActionResponse> {
        self.end_requested(request, CanaryOutcome::Aborted).await
    }

    async fn end_requested(
        &self,
        request: CanaryActionRequest,
        outcome: CanaryOutcome,
    ) -> ServiceResult<CanaryActionResponse> {
        if let LeaderState::Follower { holder, .. } = self.deps.leader.state() {
            return Err(ServiceError::unavailable(format!(
                "cannot end a canary: this replica ({}) does not lead the control plane \
                 (leader: {}); a canary runs on the leader",
                self.deps.leader.candidate_id(),
                holder.as_deref().unwrap_or("unknown"),
            )));
        }
        let canary = self.take_canary(request.deployment_id.as_deref().map(str::trim))?;
        Ok(Answer::ok(
            self.end_canary(canary, outcome, "requested".to_owned())
                .await,
        ))
    }

    /// Takes the running canary out of the slot (then only the taker ends it); with
    /// `id`, only that deploy's.
    fn take_canary(&self, id: Option<&str>) -> Result<ActiveCanary, ServiceError> {
        let mut slot = self.canary_slot();
        match (slot.as_ref(), id) {
            (None, _) => Err(ServiceError::not_found("no canary deploy is running")),
            (Some(c), Some(id)) if c.status.deployment_id != id => {
                Err(ServiceError::conflict(format!(
                    "canary {id} is not running (the running canary is deployment {})",
                    c.status.deployment_id
                )))
            }
            _ => slot
                .take()
                .ok_or_else(|| ServiceError::not_found("no canary deploy is running")),
        }
    }

    /// Promotes or aborts `canary`, ends its deploy record and its deployment (the usual
    /// events, under its id), then lets go of the lifecycle lock.
    async fn end_canary(
        &self,
        canary: ActiveCanary,
        outcome: CanaryOutcome,
        reason: String,
    ) -> CanaryActionResponse {
        let id = canary.status.deployment_id.clone();
        let (mut answer, laggards) =
            routing_acks::collecting(crate::event_stream::within_deployment(&id, async {
                match outcome {
                    CanaryOutcome::Promoted => self.promote_canary(&canary, reason).await,
                    CanaryOutcome::Aborted => self.abort_canary(&canary, reason).await,
                }
            }))
            .await;
        answer.routing_laggards = non_empty(laggards);
        if self.deps.leader.is_leader()
            && let Err(e) = self.deps.store.end_deploy(&id).await
        {
            tracing::warn!(deployment_id = %id, error = %orchestrator_core::error_source::Chain(&e), "deploy record not cleared");
        }
        drop(canary);
        answer
    }

    /// The blue-green switch and retirement of the canary's plan, then what a successful
    /// deploy records (pools, configuration, `completed`).
    async fn promote_canary(&self, canary: &ActiveCanary, reason: String) -> CanaryActionResponse {
        let begun = self.deps.clock.now();
        let id = &canary.status.deployment_id;
        let backend_type = canary.backend.backend_type();
        // The splits name the old app-ids: the switch releases those, which drops every
        // split in the same version that moves the routes (D63).
        let (switch, mut warnings) = self.switch_routes(&canary.plan, &canary.old_nodes).await;
        let (retired, more) = self.retire(&canary.backend, &canary.old_nodes).await;
        warnings.extend(more);
        self.invalidate_openresty().await;
        for pool in canary.pools.iter().cloned() {
            let pool_type = pool.pool_type().clone();
            if let Err(e) = self.deps.scaler.deploy_pool(pool).await {
                warnings.push(format!("processing pool {pool_type}: {e}"));
            }
        }
        let record = ConfigRecord {
            deployment_id: id,
            preset: canary.preset.as_deref(),
            backend: backend_type,
            request_environment: &canary.request_environment,
            nodes: &canary.plan.nodes,
        };
        warnings.extend(self.save_stable_config(record).await);
        self.publish_outcome(
            id,
            canary.preset.clone(),
            Some(backend_type),
            canary.started.clone(),
            &[],
        )
        .await;
        CanaryActionResponse {
            deployment_id: id.clone(),
            outcome: CanaryOutcome::Promoted,
            reason,
            duration: self.elapsed(begun),
            stopped_nodes: retired.iter().map(ToString::to_string).collect(),
            mappings_version: switch.mappings_version,
            routing_laggards: None,
            warnings: non_empty(warnings),
        }
    }

    /// Every call back to the old nodes (the splits cleared in one version, the consumers
    /// waited for), then the new nodes stop; the deployment ends `failed`.
    async fn abort_canary(&self, canary: &ActiveCanary, reason: String) -> CanaryActionResponse {
        let begun = self.deps.clock.now();
        let id = &canary.status.deployment_id;
        let mut warnings = Vec::new();
        let mappings_version = match self.clear_route_weights(&canary.status.services).await {
            Ok(settled) => {
                routing_acks::note_laggards(&settled.body.laggards);
                warnings.extend(settled.body.warnings);
                settled.body.mappings_version
            }
            Err(e) => {
                warnings.push(format!("canary split not cleared: {}", e.body.error));
                None
            }
        };
        let (stopped, more) = self.discard(&canary.backend, &canary.new_nodes).await;
        warnings.extend(more);
        self.publish_outcome(
            id,
            canary.preset.clone(),
            Some(canary.backend.backend_type()),
            canary.started.clone(),
            &[format!("canary aborted ({reason})")],
        )
        .await;
        CanaryActionResponse {
            deployment_id: id.clone(),
            outcome: CanaryOutcome::Aborted,
            reason,
            duration: self.elapsed(begun),
            stopped_nodes: stopped.iter().map(ToString::to_string).collect(),
            mappings_version,
            routing_laggards: None,
            warnings: non_empty(warnings),
        }
    }

    /// The running canary's status, if one runs (a refused lifecycle operation names it).
    pub(in crate::orchestrator::service) fn running_canary(&self) -> Option<CanaryStatus> {
        self.canary_slot().as_ref().map(|c| c.status.clone())
    }

    fn canary_slot(&self) -> std::sync::MutexGuard<'_, Option<ActiveCanary>> {
        self.canary.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests;

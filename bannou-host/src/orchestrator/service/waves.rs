//! The wave executor (D27 (docs/DECISIONS.md#d27)): runs a [`Plan`]'s waves in order. A deploy
//! wave starts its nodes in parallel (bounded by `deploy_parallelism`), waits until the
//! heartbeats show every service of those nodes healthy or `wave_timeout` passes, then
//! routes the wave's services (published at once, D11). Teardown waves move routes back
//! to the default first and wait until the live consumers applied them (D58), then stop
//! the nodes. A failed wave stops the run; the caller
//! decides whether to revert ([`OrchestratorService::revert_after_failure`]).
//!
//! Kept as one file: one executor whose steps all read and update the same `Execution`.

use orchestrator_core::error_source::Chain;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use orchestrator_core::events::InstanceHealthStatus;
use orchestrator_core::health::is_infrastructure_service;
use orchestrator_core::planner::{self, ActionKind, Plan, PlanOptions, Wave, WavePhase};
use orchestrator_core::ports::backend::{
    BackendError, ContainerBackend, DeployedNode, NodeDeployment, TeardownOptions,
};
use orchestrator_core::records::DeploymentConfiguration;
use orchestrator_core::{AppId, Catalog, ResolvedNode, Timestamp};
use tokio::sync::watch;
use uuid::Uuid;

use super::OrchestratorService;
use super::routing::route_to;
use super::running::config_nodes;
use super::wave_failure::{WaveFailure, WaveFailureKind, texts};

/// How many of a failed node's last log lines its failure message carries.
pub(super) const FAILURE_LOG_LINES: u32 = 20;

/// A node the executor started, with what the backend said.
#[derive(Debug, Clone)]
pub(super) struct StartedNode {
    /// The node as deployed.
    pub node: ResolvedNode,
    /// The backend's answer.
    pub deployed: DeployedNode,
}

/// What running a plan did.
#[derive(Debug, Default)]
pub(super) struct Execution {
    /// Nodes deployed or redeployed, in wave order.
    pub started: Vec<StartedNode>,
    /// Nodes torn down.
    pub torn_down: Vec<AppId>,
    /// Per-node failures; empty when every wave succeeded.
    pub failures: Vec<WaveFailure>,
    /// Things that went wrong without failing the run (a teardown or a route write).
    pub warnings: Vec<String>,
    /// What runs now: the starting nodes with every successful action applied (nodes
    /// started in a failed wave included, since their containers exist).
    pub running: Vec<ResolvedNode>,
    /// The run stopped because this replica stopped leading (nothing may be reverted
    /// here: the leader reconciles).
    pub lost_leadership: bool,
}

impl Execution {
    /// Names of the nodes started (the `changes` of a deployment event).
    pub fn started_names(&self) -> Vec<String> {
        self.started.iter().map(|s| s.node.name.clone()).collect()
    }
}

/// When a deploy wave's routes change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum WaveRouting {
    /// Each deploy wave routes its nodes once they are healthy; teardown waves release
    /// routes and stop nodes (a replacing deploy).
    PerWave,
    /// No wave touches a route and teardown waves are skipped: the caller switches the
    /// routes once every wave is up (a side-by-side bring-up).
    Deferred,
}

/// One node's deploy: the backend's answer and what the health wait needs.
struct Attempt {
    node: ResolvedNode,
    /// Instances of the app-id known before the deploy.
    known: BTreeSet<Uuid>,
    result: Result<DeployedNode, BackendError>,
    /// When the backend answered.
    deployed_at: Timestamp,
}

/// A node a wave waits on.
struct WaitTarget {
    name: String,
    app_id: AppId,
    /// Services whose heartbeats count (infrastructure is never tracked).
    services: Vec<String>,
    /// Instances of this app-id known before the deploy (an old container's).
    known: BTreeSet<Uuid>,
    /// When the backend reported the node deployed.
    deployed_at: Timestamp,
    /// The last status the node reported for each service during the wait: a service
    /// it reported unhealthy and then left out of its beats is still not healthy.
    last_word: Mutex<BTreeMap<String, InstanceHealthStatus>>,
}

impl OrchestratorService {
    /// Runs `plan` from `current` (what runs now) on `backend`, stopping at the first
    /// failed wave. After the last wave every route of the plan is (re)written, so the
    /// table matches the plan even where it had drifted.
    pub(super) async fn execute_plan(
        &self,
        backend: &Arc<dyn ContainerBackend>,
        current: &[ResolvedNode],
        plan: &Plan,
    ) -> Execution {
        self.execute_waves(backend, current, plan, WaveRouting::PerWave)
            .await
    }

    /// Runs `plan`'s waves as [`execute_plan`](Self::execute_plan) does; under
    /// [`WaveRouting::Deferred`] the deploy waves start and wait for their nodes without
    /// touching any route, and the teardown waves and the final route rewrite are left to
    /// the caller (a side-by-side bring-up, D62 (docs/DECISIONS.md#d62)).
    pub(super) async fn execute_waves(
        &self,
        backend: &Arc<dyn ContainerBackend>,
        current: &[ResolvedNode],
        plan: &Plan,
        routing: WaveRouting,
    ) -> Execution {
        let mut exec = Execution::default();
        let mut running: BTreeMap<AppId, ResolvedNode> = current
            .iter()
            .map(|n| (n.app_id.clone(), n.clone()))
            .collect();
        let desired: BTreeMap<&AppId, &ResolvedNode> =
            plan.nodes.iter().map(|n| (&n.app_id, n)).collect();

        let deferred = routing == WaveRouting::Deferred;
        let waves = plan
            .waves
            .iter()
            .filter(|w| !(deferred && w.phase == WavePhase::Teardown));
        let total = waves.clone().count();
        for wave in waves {
            // A replica that stopped leading (a stall, a partition) must not go on: the
            // new leader may already be reconciling. Its record stays for that leader.
            if !self.deps.leader.is_leader() {
                exec.lost_leadership = true;
                exec.failures.push(WaveFailure::lost_leadership(wave.index));
                tracing::warn!(
                    wave = wave.index,
                    "lost the leadership mid-deploy: stopping"
                );
                break;
            }
            let _wave = self
                .metrics
                .wave_started(backend.backend_type(), wave.index);
            let progress =
                crate::event_stream::WaveProgress::start(self.deps.bus.as_ref(), wave, total).await;
            match wave.phase {
                WavePhase::Deploy => {
                    self.deploy_wave(backend, wave, &desired, &mut running, &mut exec, routing)
                        .await;
                }
                WavePhase::Teardown => {
                    self.teardown_wave(backend, wave, &mut running, &mut exec)
                        .await;
                }
            }
            progress
                .finish(self.deps.bus.as_ref(), &texts(&exec.failures))
                .await;
            if !exec.failures.is_empty() {
                tracing::warn!(wave = wave.index, failures = ?texts(&exec.failures), "deployment wave failed");
                break;
            }
        }
        if exec.failures.is_empty() && !deferred {
            let warnings = self
                .change_routes(|table, now, port| {
                    let mut changed = Vec::new();
                    for (service, app) in &plan.routing {
                        changed.extend(route_to(
                            table,
                            std::slice::from_ref(service),
                            app,
                            now,
                            port,
                        ));
                    }
                    changed
                })
                .await;
            exec.warnings.extend(warnings);
        }
        exec.running = running.into_values().collect();
        exec
    }

    /// One deploy wave: start, wait, route. Failures land in `exec.failures`.
    #[tracing::instrument(name = "wave", skip_all, fields(wave = wave.index, phase = "deploy", backend = backend.backend_type().as_str()))]
    async fn deploy_wave(
        &self,
        backend: &Arc<dyn ContainerBackend>,
        wave: &Wave,
        desired: &BTreeMap<&AppId, &ResolvedNode>,
        running: &mut BTreeMap<AppId, ResolvedNode>,
        exec: &mut Execution,
        routing: WaveRouting,
    ) {
        let starts: Vec<ResolvedNode> = wave
            .actions
            .iter()
            .filter(|a| matches!(a.kind, ActionKind::Deploy | ActionKind::Redeploy))
            .filter_map(|a| desired.get(&a.app_id).map(|n| (*n).clone()))
            .collect();
        let limit = self.deps.settings.deploy_parallelism.max(1);
        let clock = self.deps.clock.clone();
        // Futures are built first and own everything they use: a stream mapping with a
        // borrowing closure would make the whole deploy future lose `Send`.
        let deploys: Vec<_> = starts
            .into_iter()
            .map(|node| {
                let backend = backend.clone();
                let clock = clock.clone();
                let deployment = self.node_deployment(&node);
                self.expect_node(&node.app_id);
                let known = self.known_instances(&node.app_id);
                async move {
                    let result = backend.deploy_node(&deployment).await;
                    Attempt {
                        node,
                        known,
                        result,
                        deployed_at: clock.now(),
                    }
                }
            })
            .collect();
        let mut results: Vec<Attempt> = futures::stream::iter(deploys)
            .buffer_unordered(limit)
            .collect()
            .await;
        results.sort_by(|a, b| a.node.app_id.cmp(&b.node.app_id));

        let mut targets = Vec::new();
        let mut previous_routes: BTreeMap<AppId, Vec<String>> = BTreeMap::new();
        for Attempt {
            node,
            known,
            result,
            deployed_at,
        } in results
        {
            match result {
                Ok(deployed) => {
                    targets.push(WaitTarget {
                        name: node.name.clone(),
                        app_id: node.app_id.clone(),
                        services: node
                            .services
                            .iter()
                            .filter(|s| !is_infrastructure_service(s))
                            .cloned()
                            .collect(),
                        known,
                        deployed_at,
                        last_word: Mutex::default(),
                    });
                    exec.started.push(StartedNode {
                        node: node.clone(),
                        deployed,
                    });
                    if let Some(old) = running.insert(node.app_id.clone(), node) {
                        previous_routes.insert(old.app_id, old.routed_services);
                    }
                }
                Err(e) => exec.failures.push(WaveFailure::new(
                    node.name,
                    wave.index,
                    WaveFailureKind::Deploy(e),
                )),
            }
        }
        if !exec.failures.is_empty() {
            return;
        }
        if let Err(unhealthy) = self
            .wait_healthy(backend.as_ref(), wave.index, &targets)
            .await
        {
            // Every failed node's logs at once, each read bounded like a status question.
            let limit = self.deps.settings.container_status_poll_interval;
            let reads = unhealthy.into_iter().map(|(target, kind)| async move {
                WaveFailure {
                    node: Some(target.name.clone()),
                    wave: wave.index,
                    kind,
                    last_log_lines: last_log_lines(backend.as_ref(), &target.app_id, limit).await,
                }
            });
            exec.failures.extend(futures::future::join_all(reads).await);
            return;
        }
        if routing == WaveRouting::Deferred {
            return;
        }

        // Healthy: route the wave. A redeployed node stops routing what its previous
        // version routed and this one does not; routes that heartbeats created for
        // services a node merely hosts are left to the heartbeat rules
        // (docs/COMPATIBILITY.md#heartbeat-consumption).
        let warnings = self
            .change_routes(|table, now, port| {
                let mut changed = Vec::new();
                for action in &wave.actions {
                    match action.kind {
                        ActionKind::Deploy | ActionKind::Redeploy => {
                            let dropped = previous_routes
                                .get(&action.app_id)
                                .into_iter()
                                .flatten()
                                .filter(|s| !action.services.contains(s));
                            for s in dropped {
                                let owned =
                                    table.route(s).is_some_and(|r| r.app_id == action.app_id);
                                if owned {
                                    table.restore_default(s);
                                    changed.push(s.clone());
                                }
                            }
                            changed.extend(route_to(
                                table,
                                &action.services,
                                &action.app_id,
                                now,
                                port,
                            ));
                        }
                        ActionKind::MoveRouting if self.is_control_plane(&action.app_id) => {
                            for s in &action.services {
                                if table.restore_default(s).is_some() {
                                    changed.push(s.clone());
                                }
                            }
                        }
                        ActionKind::MoveRouting => changed.extend(route_to(
                            table,
                            &action.services,
                            &action.app_id,
                            now,
                            port,
                        )),
                        ActionKind::Teardown => {}
                    }
                }
                changed
            })
            .await;
        exec.warnings.extend(warnings);
    }

    /// One teardown wave: routes back to the default, then the nodes stop (in parallel,
    /// bounded). A node that is already gone counts as torn down; any other failure is a
    /// warning: the new deployment is up and healthy, an orphan is cleaned later.
    #[tracing::instrument(name = "wave", skip_all, fields(wave = wave.index, phase = "teardown", backend = backend.backend_type().as_str()))]
    async fn teardown_wave(
        &self,
        backend: &Arc<dyn ContainerBackend>,
        wave: &Wave,
        running: &mut BTreeMap<AppId, ResolvedNode>,
        exec: &mut Execution,
    ) {
        let limit = self.deps.settings.deploy_parallelism.max(1);
        let options = TeardownOptions::default();
        // The routes leave every node of the wave at once, and the consumers follow them
        // (the earlier waves' moves included) before any of those nodes stops (D58).
        let stopping: Vec<AppId> = wave
            .actions
            .iter()
            .filter(|a| a.kind == ActionKind::Teardown)
            .map(|a| a.app_id.clone())
            .collect();
        exec.warnings.extend(self.release_routes(&stopping).await);
        // As for deploys: owned futures first, then the stream.
        let teardowns: Vec<_> = wave
            .actions
            .iter()
            .filter(|a| a.kind == ActionKind::Teardown)
            .map(|a| {
                let service = self.clone();
                let backend = backend.clone();
                let app_id = a.app_id.clone();
                async move {
                    let (result, warnings) = service
                        .teardown_node(backend.as_ref(), &app_id, &options)
                        .await;
                    (app_id, result, warnings)
                }
            })
            .collect();
        let results: Vec<_> = futures::stream::iter(teardowns)
            .buffer_unordered(limit)
            .collect()
            .await;
        for (app_id, result, warnings) in results {
            exec.warnings.extend(warnings);
            match result {
                Ok(_) | Err(BackendError::NotFound { .. }) => {
                    running.remove(&app_id);
                    exec.torn_down.push(app_id);
                }
                Err(e) => exec
                    .warnings
                    .push(format!("{app_id}: teardown failed: {e}")),
            }
        }
        exec.torn_down.sort();
    }

    /// Waits until every target reports every service healthy from its new container, or
    /// `wave_timeout` passes, or the backend reports a target's process gone (stopped, or
    /// restarted by the runtime since the deploy: it exited); then each failed node is
    /// returned with a message saying what is missing.
    ///
    /// Event-driven: the wait looks at the aggregator again the moment the heartbeat
    /// pipeline applies a batch ([`SharedHealth::changes`]), not on a timer. Every
    /// `container_status_poll_interval` the pending nodes' status is asked of the backend,
    /// all at once and each question under that interval as its timeout; the questions run
    /// beside the wait, so neither a slow nor a hung engine call delays a healthy wave or
    /// pushes a wave past its deadline (an unanswered question means "cannot tell").
    ///
    /// [`SharedHealth::changes`]: crate::orchestrator::heartbeats::SharedHealth::changes
    #[tracing::instrument(name = "health.wait", skip_all, fields(wave = wave, node = ?targets.iter().map(|t| t.app_id.as_str()).collect::<Vec<_>>()))]
    async fn wait_healthy<'t>(
        &self,
        backend: &'t dyn ContainerBackend,
        wave: usize,
        targets: &'t [WaitTarget],
    ) -> Result<(), Vec<(&'t WaitTarget, WaveFailureKind)>> {
        let timeout = self.deps.settings.wave_timeout;
        let started = tokio::time::Instant::now();
        let deadline = started + timeout;
        // How often the backend is asked whether a pending node's process is still there:
        // a node that exits at start fails its wave then instead of at the timeout.
        let exit_every = self.deps.settings.container_status_poll_interval;
        let mut next_exit_check = started + exit_every;
        let mut exit_check: Option<BoxFuture<'t, Vec<(&'t WaitTarget, WaveFailureKind)>>> = None;
        let mut changes = self.deps.health.changes();
        let by_name = |name: &str| targets.iter().find(|t| t.name == name);
        loop {
            // Marked seen before the look: a beat applied after it wakes the next wait.
            changes.borrow_and_update();
            let pending = self.unhealthy(targets);
            if pending.is_empty() {
                return Ok(());
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Err(pending
                    .into_iter()
                    .filter_map(|(name, missing)| {
                        let target = by_name(&name)?;
                        Some((target, WaveFailureKind::Unhealthy { timeout, missing }))
                    })
                    .collect());
            }
            if exit_check.is_none() && now >= next_exit_check {
                next_exit_check = now + exit_every;
                let asked: Vec<&'t WaitTarget> = pending
                    .iter()
                    .filter_map(|(name, _)| by_name(name))
                    .collect();
                exit_check = Some(Box::pin(exited_targets(backend, asked, exit_every)));
            }
            // The next timer: the deadline, or the next exit check when none is running.
            let wake_at = if exit_check.is_some() {
                deadline
            } else {
                deadline.min(next_exit_check)
            };
            tokio::select! {
                _ = health_changed(&mut changes) => {}
                _ = tokio::time::sleep_until(wake_at) => {}
                exited = async { exit_check.as_mut().expect("guarded by the select").await },
                    if exit_check.is_some() =>
                {
                    exit_check = None;
                    if !exited.is_empty() {
                        return Err(exited);
                    }
                }
            }
        }
    }

    /// Waits until every node of `plan` that already runs and that no wave starts (an
    /// adopted node, `current` per the backend) reports every service healthy, or
    /// `wave_timeout` passes; returns one failure per node still unhealthy then.
    ///
    /// A deploy that adopts what runs must not call it healthy unheard: a control plane
    /// that has just started (after a crash, or `up` again over running containers) has
    /// no heartbeat of these nodes yet, and its answer (and its `duration`) must cover
    /// the wait for them as a wave would. Nodes heard from within the heartbeat timeout
    /// pass at once. Any instance of the node counts, and a container restarted earlier
    /// by its runtime is not a failure here (it was not started by this deploy).
    #[tracing::instrument(name = "health.confirm_adopted", skip_all)]
    pub(super) async fn confirm_adopted(
        &self,
        current: &[ResolvedNode],
        plan: &Plan,
    ) -> Vec<String> {
        let started: BTreeSet<&AppId> = plan
            .waves
            .iter()
            .flat_map(|w| &w.actions)
            .filter(|a| matches!(a.kind, ActionKind::Deploy | ActionKind::Redeploy))
            .map(|a| &a.app_id)
            .collect();
        let now = self.deps.clock.now();
        let targets: Vec<WaitTarget> = plan
            .nodes
            .iter()
            .filter(|n| !started.contains(&n.app_id))
            .filter(|n| current.iter().any(|c| c.app_id == n.app_id))
            .map(|n| WaitTarget {
                name: n.name.clone(),
                app_id: n.app_id.clone(),
                services: n
                    .services
                    .iter()
                    .filter(|s| !is_infrastructure_service(s))
                    .cloned()
                    .collect(),
                known: BTreeSet::new(),
                deployed_at: now,
                last_word: Mutex::default(),
            })
            .collect();
        let timeout = self.deps.settings.wave_timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        let mut changes = self.deps.health.changes();
        loop {
            changes.borrow_and_update();
            let pending = self.unhealthy(&targets);
            if pending.is_empty() {
                return Vec::new();
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return pending
                    .into_iter()
                    .map(|(name, missing)| {
                        format!(
                            "{name}: runs (adopted) but not healthy within {}s: {}",
                            timeout.as_secs_f64(),
                            missing.join(", ")
                        )
                    })
                    .collect();
            }
            tokio::select! {
                _ = health_changed(&mut changes) => {}
                _ = tokio::time::sleep(left) => {}
            }
        }
    }

    /// Per target not yet healthy: `service (status)` for each service that is not.
    /// Each service a target hosts is judged by that node's own reports, wherever it is
    /// routed now. Only heartbeats from the new container count: an instance unknown
    /// before the deploy, or a known one heard from since (a node that keeps its instance
    /// id); retired instances (the aggregator's rule) never count.
    fn unhealthy(&self, targets: &[WaitTarget]) -> Vec<(String, Vec<String>)> {
        let state = self.deps.health.lock();
        let now = self.deps.clock.now();
        let timeout = self.deps.settings.heartbeat_timeout;
        let mut out = Vec::new();
        for t in targets {
            let mut missing = Vec::new();
            // A known instance counts once heard from after the deploy answered; a beat
            // applied in that very millisecond may still be the old container's, so it
            // does not (the wait now looks the moment a beat lands, not a poll later).
            let counts = |id: Uuid, last_seen: Timestamp| {
                !state.aggregator.is_retired(id, now)
                    && (!t.known.contains(&id) || last_seen > t.deployed_at)
            };
            // Heard from since the deploy (whatever services the beat listed).
            let heard = state
                .aggregator
                .instances_on(&t.app_id)
                .into_iter()
                .any(|id| {
                    state
                        .aggregator
                        .last_seen_of(id)
                        .is_some_and(|seen| counts(id, seen))
                });
            let mut last_word = t.last_word.lock().unwrap_or_else(PoisonError::into_inner);
            for service in &t.services {
                // A fresh node (the usual case) has no old instances to tell apart: the
                // aggregator's unsorted per-node lookup answers directly (retired
                // instances left out).
                let worst = if t.known.is_empty() {
                    state.aggregator.status_on(service, t.app_id.as_str(), now)
                } else {
                    state
                        .aggregator
                        .instances_of(service)
                        .iter()
                        .filter(|i| *i.app_id == t.app_id)
                        .filter(|i| counts(i.instance_id, i.last_seen))
                        .map(|i| i.status_at(now, timeout))
                        .max()
                };
                if let Some(status) = worst {
                    last_word.insert(service.clone(), status);
                }
                match (worst, last_word.get(service)) {
                    (Some(InstanceHealthStatus::Healthy), _) => {}
                    (Some(status), _) => missing.push(format!("{service} ({status})")),
                    // A node stops heartbeating a service the mappings route to another
                    // node (docs/COMPATIBILITY.md#mappings-consumers), so once the node is
                    // heard from, silence about a service routed elsewhere is no failure,
                    // unless the last thing the node said about it was not healthy.
                    (None, Some(status)) if *status != InstanceHealthStatus::Healthy => {
                        missing.push(format!("{service} ({status}, then no longer reported)"));
                    }
                    (None, _)
                        if heard
                            && state
                                .routing
                                .route(service)
                                .is_some_and(|r| r.app_id != t.app_id) => {}
                    (None, _) => missing.push(format!("{service} (no heartbeat)")),
                }
            }
            if !missing.is_empty() {
                out.push((t.name.clone(), missing));
            }
        }
        out
    }

    /// Instance ids the aggregator holds for `app_id` (any service).
    fn known_instances(&self, app_id: &AppId) -> BTreeSet<Uuid> {
        let state = self.deps.health.lock();
        state.aggregator.instances_on(app_id).into_iter().collect()
    }

    /// What the backend is asked to start for `node`: one container (replicas are carried
    /// in the topology but not applied, as upstream), the node name as service label.
    pub(super) fn node_deployment(&self, node: &ResolvedNode) -> NodeDeployment {
        let mut d = NodeDeployment::new(
            node.app_id.clone(),
            node.name.clone(),
            self.deps.settings.image.clone(),
        );
        d.environment = node.environment.clone();
        d
    }

    /// After a failed run: redeploys the last stable configuration version, or, when there
    /// is none, `fallback` (what ran before the failed run). Returns notes for the
    /// response. When the restored version is not the current one, it is saved again as a
    /// new version (a copy) and marked stable, so the history says what runs.
    pub(super) async fn revert_after_failure(
        &self,
        backend: &Arc<dyn ContainerBackend>,
        running: &[ResolvedNode],
        fallback: &[ResolvedNode],
        current: Option<&DeploymentConfiguration>,
        deployment_id: &str,
    ) -> Vec<String> {
        if !self.deps.leader.is_leader() {
            return vec![
                "Not reverted: this replica no longer leads the control plane; the leader's \
                 reconciliation reverts the cut-off deployment"
                    .to_owned(),
            ];
        }
        let stable = match self.deps.store.last_stable_config().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %Chain(&e), "last stable configuration unavailable; reverting to the previous deployment");
                None
            }
        };
        let (target, label) = match &stable {
            Some(s) => (
                config_nodes(s),
                format!("last stable configuration version {}", s.version),
            ),
            None => (
                fallback.to_vec(),
                "the deployment before it (no stable version)".to_owned(),
            ),
        };
        let plan = match planner::plan(
            running,
            &target,
            Catalog::builtin(),
            &PlanOptions::default(),
        ) {
            Ok(p) => p,
            Err(rejected) => return vec![format!("Revert to {label} impossible: {rejected}")],
        };
        let exec = self.execute_plan(backend, running, &plan).await;
        let mut notes = exec.warnings.clone();
        if !exec.failures.is_empty() {
            notes.push(format!(
                "Revert to {label} failed: {}",
                texts(&exec.failures).join("; ")
            ));
            return notes;
        }
        notes.push(format!("Deployment reverted to {label}"));
        if let Some(s) = stable
            && current.is_none_or(|c| c.version != s.version)
        {
            let mut copy = s.clone();
            copy.timestamp = self.deps.clock.now();
            copy.description = Some(format!(
                "Reverted to version {} after failed deployment {deployment_id}",
                s.version
            ));
            match self
                .deps
                .store
                .save_config(&copy, self.deps.settings.config_history_ttl)
                .await
            {
                Ok(v) => {
                    if let Err(e) = self.deps.store.mark_config_stable(v).await {
                        notes.push(format!("configuration version {v} not marked stable: {e}"));
                    }
                }
                Err(e) => notes.push(format!("reverted configuration not saved: {e}")),
            }
        }
        notes
    }
}

/// Resolves once the heartbeat pipeline applied a batch since `changes` last looked (never,
/// when the signal is gone: the deadline ends the wait then).
async fn health_changed(changes: &mut watch::Receiver<u64>) {
    if changes.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Asks the backend about every target at once, each question bounded by `limit` (an
/// unanswered one counts as "cannot tell"); returns the targets whose process is gone,
/// with why.
async fn exited_targets<'t>(
    backend: &dyn ContainerBackend,
    targets: Vec<&'t WaitTarget>,
    limit: Duration,
) -> Vec<(&'t WaitTarget, WaveFailureKind)> {
    let questions = targets.into_iter().map(|target| async move {
        let why = tokio::time::timeout(limit, exited_at_start(backend, &target.app_id))
            .await
            .ok()
            .flatten()?;
        Some((target, WaveFailureKind::Exited { why }))
    });
    futures::future::join_all(questions)
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// Why a node that was just deployed is no longer running, if it is not: its containers
/// stopped, or the runtime restarted them (a fresh container that restarts has exited).
/// `None` while it runs or when the backend cannot tell.
async fn exited_at_start(backend: &dyn ContainerBackend, app_id: &AppId) -> Option<String> {
    use orchestrator_core::api::enums::ContainerStatusType;
    let report = backend.status(app_id).await.ok()?;
    match report.status {
        ContainerStatusType::Stopped => Some("its container stopped".to_owned()),
        _ if report.restart_count > 0 => Some(format!(
            "its container was restarted {} time(s) by the runtime",
            report.restart_count
        )),
        _ => None,
    }
}

/// The node's last [`FAILURE_LOG_LINES`] log lines, or none when there are none or the
/// backend cannot read them within `limit`.
async fn last_log_lines(
    backend: &dyn ContainerBackend,
    app_id: &AppId,
    limit: Duration,
) -> Vec<String> {
    let query = orchestrator_core::ports::backend::LogQuery {
        tail: Some(FAILURE_LOG_LINES),
        ..Default::default()
    };
    match tokio::time::timeout(limit, backend.logs(app_id, &query)).await {
        Ok(Ok(lines)) => lines
            .into_iter()
            .map(|line| line.message.trim_end().to_owned())
            .collect(),
        _ => Vec::new(),
    }
}

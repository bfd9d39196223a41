//! Blue-green deploys (D62 (docs/DECISIONS.md#d62)): the nodes a deploy changes come up
//! under new app-ids beside the old ones (their other slot,
//! `orchestrator_core::planner::side_by_side`), wave by wave and without touching a route;
//! once every wave is healthy, every affected route switches in one mappings version; the
//! live consumers are waited for (D58 (docs/DECISIONS.md#d58)); then the old nodes stop.
//!
//! Four steps, each usable on its own (a canary reuses them):
//! - [`bring_up_side_by_side`]: the plan's deploy waves, routes untouched;
//! - [`switch_routes`]: the plan's routes in one version, then the acknowledgement wait;
//! - [`retire`]: stops the old nodes (after the switch);
//! - [`discard`]: stops the new nodes (any failure before the switch).
//!
//! Invariant: before the switch no route changes (a route a new node's heartbeat claimed
//! for an unrouted service excepted, and released again by [`discard`]); the old nodes
//! keep serving until the consumers follow the switch. Unchanged nodes are never touched.
//!
//! [`bring_up_side_by_side`]: OrchestratorService::bring_up_side_by_side
//! [`switch_routes`]: OrchestratorService::switch_routes
//! [`retire`]: OrchestratorService::retire
//! [`discard`]: OrchestratorService::discard

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;
use orchestrator_core::api::RouteSwitch;
use orchestrator_core::planner::side_by_side::SlotChange;
use orchestrator_core::planner::{ActionKind, Plan};
use orchestrator_core::ports::backend::{BackendError, ContainerBackend, TeardownOptions};
use orchestrator_core::{AppId, ResolvedNode};

use super::super::OrchestratorService;
use super::super::routing::route_to;
use super::super::waves::{Execution, WaveRouting};

/// What a blue-green run did.
pub(super) struct BlueGreen {
    /// The bring-up (its failures, started nodes and warnings; retire's warnings added).
    pub exec: Execution,
    /// The switch, when the run got that far.
    pub switch: Option<RouteSwitch>,
}

impl OrchestratorService {
    /// Runs a side-by-side `plan` (made from the slot-changed nodes, so it has no
    /// redeploy): bring-up, then on success switch and retire; on a failure before the
    /// switch, discard. `slots` are the nodes that came up beside their old version.
    pub(super) async fn run_blue_green(
        &self,
        backend: &Arc<dyn ContainerBackend>,
        current: &[ResolvedNode],
        plan: &Plan,
        slots: &[SlotChange],
    ) -> BlueGreen {
        let mut exec = self.bring_up_side_by_side(backend, current, plan).await;
        let started: Vec<AppId> = exec.started.iter().map(|s| s.node.app_id.clone()).collect();
        if !exec.failures.is_empty() {
            if exec.lost_leadership {
                // The leader's reconciliation owns what is left (as for a replace).
                return BlueGreen { exec, switch: None };
            }
            let (_, warnings) = self.discard(backend, &started).await;
            exec.warnings.extend(warnings);
            exec.running = current.to_vec();
            return BlueGreen { exec, switch: None };
        }
        let old = stopped_by(plan);
        let (mut switch, warnings) = self.switch_routes(plan, &old).await;
        exec.warnings.extend(warnings);
        switch.replaced = slots
            .iter()
            .map(|s| (s.old.to_string(), s.new.to_string()))
            .collect();
        let (retired, warnings) = self.retire(backend, &old).await;
        exec.warnings.extend(warnings);
        exec.running.retain(|n| !retired.contains(&n.app_id));
        exec.torn_down = retired;
        BlueGreen {
            exec,
            switch: Some(switch),
        }
    }

    /// Bring-up: starts the nodes of `plan`'s deploy waves in wave order and waits for
    /// each wave's health, exactly as a replacing deploy does, but moves no route and
    /// stops nothing ([`WaveRouting::Deferred`]). A failed wave stops the bring-up; the
    /// nodes it started are in the answer's `started` (for [`Self::discard`]).
    pub(super) async fn bring_up_side_by_side(
        &self,
        backend: &Arc<dyn ContainerBackend>,
        current: &[ResolvedNode],
        plan: &Plan,
    ) -> Execution {
        self.execute_waves(backend, current, plan, WaveRouting::Deferred)
            .await
    }

    /// Switch: writes `plan`'s routes in one table change, so one mappings version moves
    /// every affected route (routes of `old` nodes that the plan does not keep, and routing
    /// moves back to the control plane, go back to the default in that same version);
    /// then waits until every live consumer other than `old` applied it (D58). Returns
    /// the switch (its `replaced` left empty for the caller) and warnings.
    pub(super) async fn switch_routes(
        &self,
        plan: &Plan,
        old: &[AppId],
    ) -> (RouteSwitch, Vec<String>) {
        let begun = tokio::time::Instant::now();
        let mut warnings = self
            .change_routes(|table, now, port| {
                let mut changed = Vec::new();
                for app in old {
                    changed.extend(table.release_app(app));
                }
                for action in plan.waves.iter().flat_map(|w| &w.actions) {
                    if action.kind == ActionKind::MoveRouting
                        && self.is_control_plane(&action.app_id)
                    {
                        for s in &action.services {
                            if table.restore_default(s).is_some() {
                                changed.push(s.clone());
                            }
                        }
                    }
                }
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
        let switched_in = begun.elapsed();
        let settled = self.settle_routes_measured(old).await;
        warnings.extend(settled.warning);
        let routes: BTreeMap<String, String> = {
            let state = self.deps.health.lock();
            state
                .routing
                .mappings()
                .into_iter()
                .map(|(s, a)| (s, a.to_string()))
                .collect()
        };
        tracing::info!(
            version = ?settled.version,
            switch_ms = switched_in.as_millis() as u64,
            ack_wait_ms = settled.waited.as_millis() as u64,
            "blue-green: routes switched"
        );
        let switch = RouteSwitch {
            mappings_version: settled.version,
            replaced: BTreeMap::new(),
            routes,
            ack_wait_ms: u64::try_from(settled.waited.as_millis()).unwrap_or(u64::MAX),
        };
        (switch, warnings)
    }

    /// Retire: stops the old nodes once the switch moved the routes away from them and
    /// the consumers followed. Returns the nodes stopped (gone already counts) and
    /// warnings: a node that fails to stop is left for the orphan cleanup, the new nodes
    /// serve.
    pub(super) async fn retire(
        &self,
        backend: &Arc<dyn ContainerBackend>,
        old: &[AppId],
    ) -> (Vec<AppId>, Vec<String>) {
        self.stop_side(backend, old).await
    }

    /// Discard: stops the new nodes after a failure before the switch. Their routes (none,
    /// unless a heartbeat claimed an unrouted service for one) go back to the default
    /// first, and the consumers are waited for (D58); the old nodes and their routes are
    /// not touched. Returns the nodes stopped (gone already counts) and warnings.
    pub(super) async fn discard(
        &self,
        backend: &Arc<dyn ContainerBackend>,
        new: &[AppId],
    ) -> (Vec<AppId>, Vec<String>) {
        self.stop_side(backend, new).await
    }

    /// Releases whatever routes `apps` hold (one version, one wait), then stops them in
    /// parallel, bounded by `deploy_parallelism`.
    async fn stop_side(
        &self,
        backend: &Arc<dyn ContainerBackend>,
        apps: &[AppId],
    ) -> (Vec<AppId>, Vec<String>) {
        if apps.is_empty() {
            return (Vec::new(), Vec::new());
        }
        let mut warnings = self.release_routes(apps).await;
        let limit = self.deps.settings.deploy_parallelism.max(1);
        // Owned futures first, then the stream (the deploy future stays `Send`).
        let stops: Vec<_> = apps
            .iter()
            .map(|app| {
                let service = self.clone();
                let backend = backend.clone();
                let app = app.clone();
                async move {
                    let (result, warnings) = service
                        .teardown_node(backend.as_ref(), &app, &TeardownOptions::default())
                        .await;
                    (app, result, warnings)
                }
            })
            .collect();
        let results: Vec<_> = futures::stream::iter(stops)
            .buffer_unordered(limit)
            .collect()
            .await;
        let mut stopped = Vec::new();
        for (app, result, more) in results {
            warnings.extend(more);
            match result {
                Ok(_) | Err(BackendError::NotFound { .. }) => stopped.push(app),
                Err(e) => warnings.push(format!("{app}: teardown failed: {e}")),
            }
        }
        stopped.sort();
        (stopped, warnings)
    }
}

/// The nodes a side-by-side `plan` stops once the routes left them: everything a teardown
/// wave would stop (the old slots and the nodes removed).
pub(super) fn stopped_by(plan: &Plan) -> Vec<AppId> {
    plan.waves
        .iter()
        .flat_map(|w| &w.actions)
        .filter(|a| a.kind == ActionKind::Teardown)
        .map(|a| a.app_id.clone())
        .collect()
}

#[cfg(test)]
mod tests;

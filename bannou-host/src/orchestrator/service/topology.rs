//! Endpoint group `topology`: live topology changes (docs/COMPATIBILITY.md#topology,
//! docs/COMPATIBILITY.md#topology-updates), each applied on its own in request order and
//! reported in `appliedChanges`; nothing already applied is undone. Routes changed here are
//! published at once (D11) rather than on the next periodic broadcast, as upstream does.

use std::collections::BTreeMap;
use std::sync::Arc;

use orchestrator_core::api::*;
use orchestrator_core::events::DeploymentAction;
use orchestrator_core::names::service_enable_flag;
use orchestrator_core::ports::backend::{ContainerBackend, NodeDeployment, TeardownOptions};
use orchestrator_core::resolver::{APP_ID, LAYER_FLAG_PREFIX, SERVICES_ENABLED};
use orchestrator_core::{AppId, Catalog};
use orchestrator_routing::table::is_orchestrator;

use uuid::Uuid;

use super::routing::route_to;
use super::{Answer, OrchestratorService, ServiceError, ServiceResult};
use crate::event_stream::{TOPOLOGY_PHASE, WaveEvent, WaveState, publish_wave};
use crate::orchestrator::routing_acks;

/// Successes and failures of one change's per-service steps.
#[derive(Default)]
struct Tally {
    succeeded: usize,
    failed: usize,
}

impl Tally {
    /// The partial-result rule of docs/COMPATIBILITY.md#topology-updates: success only when
    /// something succeeded and nothing failed; the error names the counts (`verb` is
    /// `deployed`, `removed`, ...).
    fn result(&self, verb: &str, all_failed: &str) -> (bool, Option<String>) {
        match (self.succeeded, self.failed) {
            (s, 0) => (s > 0, None),
            (0, f) => (false, Some(format!("All {f} {all_failed} failed"))),
            (s, f) => (
                false,
                Some(format!("Partial failure: {s} {verb}, {f} failed")),
            ),
        }
    }
}

impl OrchestratorService {
    /// POST /orchestrator/topology (docs/COMPATIBILITY.md#topology,
    /// docs/COMPATIBILITY.md#topology-updates).
    pub async fn update_topology(
        &self,
        request: TopologyUpdateRequest,
    ) -> ServiceResult<TopologyUpdateResponse> {
        let (result, laggards) = routing_acks::collecting(self.apply_topology(request)).await;
        result.map(|mut answer| {
            answer.body.routing_laggards = super::non_empty(laggards);
            answer
        })
    }

    async fn apply_topology(
        &self,
        request: TopologyUpdateRequest,
    ) -> ServiceResult<TopologyUpdateResponse> {
        request.validate().map_err(ServiceError::field)?;
        let begun = self.deps.clock.now();
        let _lifecycle = self.begin_lifecycle("update the topology").await?;
        let backend = self.deps.backends.select(None).await?;
        // Progress on the event stream (docs/COMPATIBILITY.md, "Event stream"): the update
        // is a deployment of its own (started, then completed or failed), each change one
        // `topology`-phase wave, so `topology --follow` shows it as it happens.
        let deployment_id = Uuid::new_v4().to_string();
        let mut started = self.deployment_event(DeploymentAction::Started, &deployment_id);
        started.backend = Some(backend.backend_type());
        started.changes = Some(request.changes.iter().map(describe_change).collect());
        self.publish_deployment(started).await;
        let mut applied = Vec::with_capacity(request.changes.len());
        let mut warnings = Vec::new();
        let mut failures = Vec::new();
        for (i, change) in request.changes.iter().enumerate() {
            let mut entry = AppliedChange {
                success: false,
                action: change.action,
                target: change.target(),
                error: None,
            };
            let wave = ChangeWave::start(self, &deployment_id, i, &request.changes).await;
            if let Some(missing) = change.missing_requirement() {
                entry.error = Some(missing.to_owned());
            } else {
                let (success, error) = self.apply_change(&backend, change, &mut warnings).await;
                entry.success = success;
                entry.error = error;
            }
            let failure = (!entry.success).then(|| {
                format!(
                    "{}: {}",
                    describe_change(change),
                    entry.error.as_deref().unwrap_or("nothing applied")
                )
            });
            wave.finish(self, failure.as_deref()).await;
            failures.extend(failure);
            applied.push(entry);
        }
        self.publish_outcome(
            &deployment_id,
            None,
            Some(backend.backend_type()),
            request.changes.iter().map(describe_change).collect(),
            &failures,
        )
        .await;
        Ok(Answer::ok(TopologyUpdateResponse {
            applied_changes: applied,
            topology: None,
            duration: Some(self.elapsed(begun)),
            warnings: Some(warnings),
            routing_laggards: None,
        }))
    }

    async fn apply_change(
        &self,
        backend: &Arc<dyn ContainerBackend>,
        change: &TopologyChange,
        warnings: &mut Vec<String>,
    ) -> (bool, Option<String>) {
        let services = change.services.clone().unwrap_or_default();
        let node = change.node_name.clone().unwrap_or_default();
        let mut tally = Tally::default();
        match change.action {
            TopologyChangeAction::AddNode => {
                let env = node_environment(change.environment.as_ref(), &services);
                for svc in &services {
                    let app = AppId::new(format!("bannou-{svc}-{node}"));
                    match self.add_one(backend, svc, &app, &env).await {
                        Ok(w) => {
                            warnings.extend(w);
                            tally.succeeded += 1;
                        }
                        Err(e) => {
                            warnings.push(format!("Failed to deploy {svc} on {node}: {e}"));
                            tally.failed += 1;
                        }
                    }
                }
                tally.result("deployed", "deployments")
            }
            TopologyChangeAction::RemoveNode => {
                // Every route of the node away and one wait for the consumers (D58).
                let apps: Vec<AppId> = services
                    .iter()
                    .map(|svc| AppId::new(format!("bannou-{svc}-{node}")))
                    .collect();
                warnings.extend(self.release_routes(&apps).await);
                for svc in &services {
                    let app = AppId::new(format!("bannou-{svc}-{node}"));
                    let (result, w) = self
                        .teardown_node(backend.as_ref(), &app, &TeardownOptions::default())
                        .await;
                    warnings.extend(w);
                    match result {
                        Ok(_) => tally.succeeded += 1,
                        Err(e) => {
                            warnings.push(format!("Failed to teardown {svc} on {node}: {e}"));
                            tally.failed += 1;
                        }
                    }
                }
                tally.result("removed", "teardowns")
            }
            TopologyChangeAction::MoveService => {
                for svc in &services {
                    let app = AppId::new(format!("bannou-{svc}-{node}"));
                    let mut refused = None;
                    let w = self
                        .change_routes(|table, now, port| {
                            match table.set_route(svc, app.clone(), now, port) {
                                Ok(_) => vec![svc.trim().to_ascii_lowercase()],
                                Err(e) => {
                                    refused = Some(e.to_string());
                                    Vec::new()
                                }
                            }
                        })
                        .await;
                    warnings.extend(w);
                    match refused {
                        None => tally.succeeded += 1,
                        Some(e) => {
                            warnings.push(format!("Failed to move {svc} to {node}: {e}"));
                            tally.failed += 1;
                        }
                    }
                }
                // The move is done once the consumers follow it: the node it left may be
                // removed next (D58).
                if tally.succeeded > 0 {
                    warnings.extend(self.settle_routes(&[]).await);
                }
                tally.result("moved", "service moves")
            }
            TopologyChangeAction::Scale => {
                let replicas = change
                    .replicas
                    .and_then(|r| u32::try_from(r).ok())
                    .unwrap_or(0);
                for svc in &services {
                    let app = scaled_app_id(svc, &node);
                    match backend.scale(&app, replicas).await {
                        Ok(_) => tally.succeeded += 1,
                        Err(e) => {
                            warnings.push(format!("Failed to scale {svc}: {e}"));
                            tally.failed += 1;
                        }
                    }
                }
                tally.result("scaled", "scale operations")
            }
            TopologyChangeAction::UpdateEnv => {
                // Unlike upstream, the new container keeps serving only its service (the
                // enable flags are added as for add-node); upstream's env-only redeploy
                // would enable every service on the node.
                for svc in &services {
                    let app = scaled_app_id(svc, &node);
                    let env =
                        node_environment(change.environment.as_ref(), std::slice::from_ref(svc));
                    match self.add_one(backend, svc, &app, &env).await {
                        Ok(w) => {
                            warnings.extend(w);
                            tally.succeeded += 1;
                        }
                        Err(e) => {
                            warnings.push(format!("Failed to update environment for {svc}: {e}"));
                            tally.failed += 1;
                        }
                    }
                }
                if tally.failed == 0 {
                    (true, None)
                } else {
                    (
                        false,
                        Some(
                            "Some services failed to update environment - check warnings for details"
                                .to_owned(),
                        ),
                    )
                }
            }
        }
    }

    /// Deploys one container `app` for `service` with `env` and routes the service to it.
    /// The orchestrator service and unknown services are refused before anything starts.
    async fn add_one(
        &self,
        backend: &Arc<dyn ContainerBackend>,
        service: &str,
        app: &AppId,
        env: &BTreeMap<String, String>,
    ) -> Result<Vec<String>, String> {
        if is_orchestrator(service) {
            return Err(
                "Cannot deploy orchestrator service - route cannot be overridden".to_owned(),
            );
        }
        let def = Catalog::builtin().get(service).map_err(|e| e.to_string())?;
        let mut deployment = NodeDeployment::new(
            app.clone(),
            def.name.clone(),
            self.deps.settings.image.clone(),
        );
        deployment.environment = env.clone();
        deployment
            .environment
            .insert(APP_ID.to_owned(), app.as_str().to_owned());
        backend
            .deploy_node(&deployment)
            .await
            .map_err(|e| e.to_string())?;
        let name = def.name.clone();
        Ok(self
            .change_routes(|table, now, port| {
                route_to(table, std::slice::from_ref(&name), app, now, port)
            })
            .await)
    }
}

/// `action target` of a change, as progress events and failures name it.
fn describe_change(change: &TopologyChange) -> String {
    match change.target() {
        Some(target) => format!("{} {target}", change.action),
        None => change.action.to_string(),
    }
}

/// The app-ids a change acts on (the names `apply_change` gives them).
fn change_nodes(change: &TopologyChange) -> Vec<String> {
    let node = change.node_name.clone().unwrap_or_default();
    let mut nodes: Vec<String> = change
        .services
        .iter()
        .flatten()
        .map(|svc| match change.action {
            TopologyChangeAction::Scale | TopologyChangeAction::UpdateEnv => {
                scaled_app_id(svc, &node).to_string()
            }
            _ => format!("bannou-{svc}-{node}"),
        })
        .collect();
    nodes.sort();
    nodes.dedup();
    nodes
}

/// One change of a topology update reported as a wave of phase `topology`: `Started`,
/// then `Failed` with the change's error, `TornDown` (remove-node) or `Healthy`.
struct ChangeWave {
    event: WaveEvent,
    begun: tokio::time::Instant,
    /// A remove-node change: its success is `TornDown`.
    removes: bool,
}

impl ChangeWave {
    /// Publishes `Started` for change `index` of `changes`.
    async fn start(
        service: &OrchestratorService,
        deployment_id: &str,
        index: usize,
        changes: &[TopologyChange],
    ) -> ChangeWave {
        let event = WaveEvent {
            deployment_id: Some(deployment_id.to_owned()),
            wave: index + 1,
            waves: changes.len(),
            phase: TOPOLOGY_PHASE.to_owned(),
            state: WaveState::Started,
            nodes: change_nodes(&changes[index]),
            failures: Vec::new(),
            elapsed_ms: 0,
        };
        publish_wave(service.deps.bus.as_ref(), event.clone()).await;
        ChangeWave {
            event,
            begun: tokio::time::Instant::now(),
            removes: changes[index].action == TopologyChangeAction::RemoveNode,
        }
    }

    /// Publishes the change's outcome.
    async fn finish(self, service: &OrchestratorService, failure: Option<&str>) {
        let ChangeWave {
            mut event,
            begun,
            removes,
        } = self;
        event.state = match failure {
            Some(f) => {
                event.failures = vec![f.to_owned()];
                WaveState::Failed
            }
            None if removes => WaveState::TornDown,
            None => WaveState::Healthy,
        };
        event.elapsed_ms = u64::try_from(begun.elapsed().as_millis()).unwrap_or(u64::MAX);
        publish_wave(service.deps.bus.as_ref(), event).await;
    }
}

/// docs/COMPATIBILITY.md#topology-updates add-node environment: the change's environment;
/// services mode unless it sets a layer flag or the master switch; every listed service
/// enabled unless set.
fn node_environment(
    environment: Option<&BTreeMap<String, String>>,
    services: &[String],
) -> BTreeMap<String, String> {
    let mut env = environment.cloned().unwrap_or_default();
    let has_mode = env.keys().any(|k| {
        let k = k.to_ascii_uppercase();
        k.starts_with(LAYER_FLAG_PREFIX) || k == SERVICES_ENABLED
    });
    if !has_mode {
        env.insert(SERVICES_ENABLED.to_owned(), "false".to_owned());
    }
    for svc in services {
        env.entry(service_enable_flag(svc))
            .or_insert_with(|| "true".to_owned());
    }
    env
}

/// docs/COMPATIBILITY.md#names-and-app-ids for scale and update-env:
/// `bannou-{service}-{node}`, or `bannou-{service}` without a node name.
fn scaled_app_id(service: &str, node: &str) -> AppId {
    if node.is_empty() {
        AppId::new(format!("bannou-{service}"))
    } else {
        AppId::new(format!("bannou-{service}-{node}"))
    }
}

#[cfg(test)]
mod tests {
    use crate::orchestrator::service::Outcome;

    use orchestrator_core::api::*;
    use orchestrator_core::memory::backend::BackendCall;
    use orchestrator_core::ports::store::OrchestratorStore;
    use serde_json::json;

    use super::super::testing::World;

    async fn world() -> World {
        World::with_live_nodes().await
    }

    fn request(changes: serde_json::Value) -> TopologyUpdateRequest {
        serde_json::from_value(json!({ "changes": changes })).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn add_move_scale_update_and_remove_each_report_their_outcome() {
        let world = world().await;
        let answer = world
            .service
            .update_topology(request(json!([
                {"action": "add-node", "nodeName": "n1", "services": ["auth", "account"],
                 "nodeConfig": {"name": "n1"}, "environment": {"LOG_LEVEL": "debug"}},
                {"action": "move-service", "nodeName": "n1", "services": ["connect"]},
                {"action": "update-env", "nodeName": "n1", "services": ["auth"],
                 "environment": {"LOG_LEVEL": "trace"}},
                {"action": "scale", "nodeName": "n1", "services": ["auth"], "replicas": 2},
                {"action": "remove-node", "nodeName": "n1", "services": ["account"]},
                {"action": "add-node", "nodeName": "n2", "services": ["auth"]}
            ])))
            .await
            .unwrap();

        assert_eq!(answer.outcome, Outcome::Ok);
        let applied = &answer.body.applied_changes;
        let outcome: Vec<(TopologyChangeAction, bool)> =
            applied.iter().map(|c| (c.action, c.success)).collect();
        assert_eq!(
            outcome,
            [
                (TopologyChangeAction::AddNode, true),
                (TopologyChangeAction::MoveService, true),
                (TopologyChangeAction::UpdateEnv, true),
                (TopologyChangeAction::Scale, true),
                (TopologyChangeAction::RemoveNode, true),
                (TopologyChangeAction::AddNode, false),
            ]
        );
        assert_eq!(applied[0].target.as_deref(), Some("n1"));
        assert_eq!(
            applied[5].error.as_deref(),
            Some("NodeConfig and Services are required for add-node action")
        );
        assert_eq!(answer.body.warnings, Some(Vec::new()));

        // add-node: one container per service, each enabling every listed service.
        let auth = world.backend.node(&"bannou-auth-n1".into()).unwrap();
        assert_eq!(auth.replicas, 2, "scaled");
        // update-env replaced the environment but kept the node serving auth only.
        let env = &auth.deployment.environment;
        assert_eq!(env["LOG_LEVEL"], "trace");
        assert_eq!(env["BANNOU_SERVICES_ENABLED"], "false");
        assert_eq!(env["AUTH_SERVICE_ENABLED"], "true");
        assert_eq!(world.running(), ["bannou-auth-n1"]);
        assert_eq!(world.route("auth"), "bannou-auth-n1");
        assert_eq!(world.route("connect"), "bannou-connect-n1");
        assert_eq!(world.route("account"), "bannou", "removed with its node");
        let stored = world.store.get_route("connect").await.unwrap().unwrap();
        assert_eq!(stored.app_id, "bannou-connect-n1");
    }

    #[tokio::test(start_paused = true)]
    async fn per_service_failures_follow_the_partial_result_rule() {
        let world = world().await;
        let answer = world
            .service
            .update_topology(request(json!([
                {"action": "add-node", "nodeName": "n1", "services": ["auth", "orchestrator"],
                 "nodeConfig": {"name": "n1"}},
                {"action": "remove-node", "nodeName": "gone", "services": ["auth"]},
                {"action": "scale", "services": ["auth"]},
                {"action": "move-service", "nodeName": "n1", "services": []}
            ])))
            .await
            .unwrap();
        let applied = &answer.body.applied_changes;
        assert_eq!(
            applied[0].error.as_deref(),
            Some("Partial failure: 1 deployed, 1 failed")
        );
        assert_eq!(applied[1].error.as_deref(), Some("All 1 teardowns failed"));
        assert_eq!(
            applied[2].error.as_deref(),
            Some("Scale action requires replicas to be specified")
        );
        assert!(!applied[3].success && applied[3].error.is_none());
        let warnings = answer.body.warnings.unwrap();
        assert!(
            warnings
                .iter()
                .any(|w| w.starts_with("Failed to deploy orchestrator on n1")),
            "{warnings:?}"
        );
        assert!(
            warnings
                .iter()
                .any(|w| w.starts_with("Failed to teardown auth on gone")),
            "{warnings:?}"
        );
        // Only the auth container started.
        let deploys = world
            .backend
            .calls()
            .into_iter()
            .filter(|c| matches!(c, BackendCall::Deploy(_)))
            .count();
        assert_eq!(deploys, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn an_empty_change_list_is_400() {
        let world = world().await;
        let refused = world
            .service
            .update_topology(request(json!([])))
            .await
            .unwrap_err();
        assert_eq!(refused.status(), 400);
        assert_eq!(refused.body.field.as_deref(), Some("changes"));
    }
}

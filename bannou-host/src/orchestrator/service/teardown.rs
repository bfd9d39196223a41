//! Endpoint `teardown` (docs/COMPATIBILITY.md#teardown), and tearing one node down for
//! every use case that does (deploy waves, reset, topology, reconciliation).
//!
//! Invariant: the control plane is never torn down (D8); a node's routes return to the
//! default before its container goes.

use orchestrator_core::AppId;
use orchestrator_core::api::*;
use orchestrator_core::events::DeploymentAction;
use orchestrator_core::ports::backend::{
    BackendError, ContainerBackend, TeardownOptions, TeardownResult,
};
use uuid::Uuid;

use super::running::tracked_app_ids;
use super::{Answer, OrchestratorService, ServiceError, ServiceResult, non_empty};
use crate::orchestrator::routing_acks;

impl OrchestratorService {
    /// POST /orchestrator/teardown (docs/COMPATIBILITY.md#teardown): every node of ours on
    /// the active backend except the control plane (D8), optionally infrastructure too;
    /// routes of torn-down nodes return to the default. Afterwards the current
    /// configuration is cleared, as nothing it describes runs any more.
    #[tracing::instrument(name = "teardown", skip_all)]
    pub async fn teardown(&self, request: TeardownRequest) -> ServiceResult<TeardownResponse> {
        let (result, laggards) = routing_acks::collecting(self.teardown_nodes(request)).await;
        result.map(|mut answer| {
            answer.body.routing_laggards = non_empty(laggards);
            answer
        })
    }

    async fn teardown_nodes(&self, request: TeardownRequest) -> ServiceResult<TeardownResponse> {
        let deps = &self.deps;
        let begun = deps.clock.now();
        request.validate().map_err(ServiceError::field)?;
        let _lifecycle = self.begin_lifecycle("tear down").await?;
        let backend = deps.backends.select(None).await?;
        let deployment_id = Uuid::new_v4().to_string();
        if !request.dry_run {
            self.publish_deployment(
                self.deployment_event(DeploymentAction::TopologyChanged, &deployment_id),
            )
            .await;
        }
        let unavailable = |e: BackendError| ServiceError::unavailable(e.to_string());
        let containers = backend.list().await.map_err(unavailable)?;
        let infrastructure: Vec<String> = backend
            .list_infrastructure()
            .await
            .map_err(unavailable)?
            .into_iter()
            .map(|i| i.name)
            .filter(|n| !n.trim().is_empty())
            .collect();
        let is_infra = |name: &str| infrastructure.iter().any(|i| i.eq_ignore_ascii_case(name));
        let mut targets: Vec<AppId> = Vec::new();
        for c in containers {
            let app = c.app_id;
            if app.as_str().trim().is_empty()
                || self.is_control_plane(&app)
                || is_infra(app.as_str())
                || targets.contains(&app)
            {
                continue;
            }
            targets.push(app);
        }
        if targets.is_empty() {
            return Ok(Answer::ok(TeardownResponse {
                duration: "0s".to_owned(),
                stopped_containers: Some(Vec::new()),
                removed_volumes: Some(Vec::new()),
                ..TeardownResponse::default()
            }));
        }
        if request.dry_run {
            return Ok(Answer::ok(TeardownResponse {
                duration: self.elapsed(begun),
                stopped_containers: Some(targets.iter().map(ToString::to_string).collect()),
                removed_volumes: Some(Vec::new()),
                removed_infrastructure: Some(if request.include_infrastructure {
                    infrastructure.clone()
                } else {
                    Vec::new()
                }),
                ..TeardownResponse::default()
            }));
        }

        let options = TeardownOptions {
            remove_volumes: request.remove_volumes,
            ..TeardownOptions::default()
        };
        let mut stopped = Vec::new();
        let mut volumes = Vec::new();
        let mut removed_infrastructure = Vec::new();
        let mut errors = Vec::new();
        // Every route away first and one wait for the consumers, not one per node (D58).
        for w in self.release_routes(&targets).await {
            tracing::warn!("{w}");
        }
        for app in &targets {
            let (result, warnings) = self.teardown_node(backend.as_ref(), app, &options).await;
            for w in warnings {
                tracing::warn!(app_id = %app, "{w}");
            }
            match result {
                Ok(done) => {
                    stopped.extend(done.stopped);
                    volumes.extend(done.removed_volumes);
                }
                Err(e) => errors.push(format!("{app}: {e}")),
            }
        }
        if request.include_infrastructure {
            for name in &infrastructure {
                match backend.teardown(&AppId::new(name.clone()), &options).await {
                    Ok(done) => {
                        stopped.extend(done.stopped);
                        volumes.extend(done.removed_volumes);
                        removed_infrastructure.push(name.clone());
                    }
                    Err(e) => errors.push(format!("[infra] {name}: {e}")),
                }
            }
        }
        if let Some(config) = self.current_config().await.ok().flatten()
            && !tracked_app_ids(&config).is_empty()
        {
            match deps
                .store
                .clear_config(deps.clock.now(), deps.settings.config_history_ttl)
                .await
            {
                Ok(version) => {
                    let _ = deps.store.mark_config_stable(version).await;
                }
                Err(e) => errors.push(format!("configuration not cleared: {e}")),
            }
        }
        self.publish_outcome(
            &deployment_id,
            None,
            Some(backend.backend_type()),
            stopped.clone(),
            &errors,
        )
        .await;
        Ok(Answer::ok(TeardownResponse {
            duration: self.elapsed(begun),
            stopped_containers: Some(stopped),
            removed_volumes: Some(volumes),
            removed_networks: None,
            removed_infrastructure: Some(removed_infrastructure),
            errors: non_empty(errors),
            routing_laggards: None,
        }))
    }

    /// Tears one node down, returns its routes to the default (and waits for the live
    /// consumers to apply that, D58) and forgets its instances in the aggregator (so
    /// health reports do not show a ghost for the retention period). Never touches the
    /// control plane (D8).
    pub(super) async fn teardown_node(
        &self,
        backend: &dyn ContainerBackend,
        app_id: &AppId,
        options: &TeardownOptions,
    ) -> (Result<TeardownResult, BackendError>, Vec<String>) {
        if self.is_control_plane(app_id) {
            let refused = BackendError::Conflict {
                app_id: app_id.clone(),
                reason: "the control plane is never torn down".to_owned(),
            };
            return (Err(refused), Vec::new());
        }
        // Routes first, and the consumers follow them before the container vanishes
        // (D58); a caller stopping several nodes released theirs already, and waited once.
        let warnings = if self.routes_to(std::slice::from_ref(app_id)) {
            self.release_routes(std::slice::from_ref(app_id)).await
        } else {
            Vec::new()
        };
        let result = backend.teardown(app_id, options).await;
        if matches!(result, Ok(_) | Err(BackendError::NotFound { .. })) {
            self.forget_instances(app_id);
        } else {
            // Still running: its heartbeats count again (the routes wait stopped them).
            self.expect_node(app_id);
        }
        (result, warnings)
    }

    /// Removes every aggregator instance reporting as `app_id` and keeps the node's late
    /// beats (its final "shutting down" one) from bringing it back
    /// (`HeartbeatAggregator::forget_node`). Only this replica's aggregator forgets: the
    /// other replicas drop the node's last report after the retention period.
    pub(super) fn forget_instances(&self, app_id: &AppId) {
        let now = self.deps.clock.now();
        self.deps.health.lock().aggregator.forget_node(app_id, now);
    }

    /// Called before node `app_id` is stopped: its instances are forgotten and every beat
    /// of it ignored (`HeartbeatAggregator::node_stopping`), so it claims no route back
    /// while its routes move away; [`Self::forget_instances`] (stopped) or
    /// [`Self::expect_node`] (not stopped) ends that.
    pub(super) fn stopping_instances(&self, app_id: &AppId) {
        let now = self.deps.clock.now();
        self.deps
            .health
            .lock()
            .aggregator
            .node_stopping(app_id, now);
    }

    /// Called before the backend starts node `app_id`: its heartbeats count again even if
    /// the node was torn down moments ago (`HeartbeatAggregator::node_deployed`).
    pub(super) fn expect_node(&self, app_id: &AppId) {
        self.deps.health.lock().aggregator.node_deployed(app_id);
    }
}

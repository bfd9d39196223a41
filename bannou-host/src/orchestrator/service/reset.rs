//! ResetToDefault (docs/COMPATIBILITY.md#reset-to-default): the deploy of the cleared
//! preset, which returns every route to the control plane and tears down what the
//! current configuration deployed.

use orchestrator_core::error_source::Chain;
use std::sync::Arc;

use orchestrator_core::api::*;
use orchestrator_core::ports::backend::{BackendError, ContainerBackend, TeardownOptions};
use orchestrator_core::{AppId, Timestamp};

use super::running::tracked_app_ids;
use super::{Answer, OrchestratorService, ServiceResult, non_empty};

impl OrchestratorService {
    /// ResetToDefault (docs/COMPATIBILITY.md#reset-to-default,
    /// docs/COMPATIBILITY.md#deploy): every route back to the control plane, every node the
    /// current configuration deployed torn down, an empty configuration recorded (marked
    /// stable: "nothing but the control plane" is healthy by definition, and a later failed
    /// deploy must revert to it, not to what was reset away).
    pub(super) async fn reset_to_default(
        &self,
        request: &DeployRequest,
        deployment_id: &str,
        backend: &Arc<dyn ContainerBackend>,
        begun: Timestamp,
    ) -> ServiceResult<DeployResponse> {
        let deps = &self.deps;
        let backend_type = backend.backend_type();
        let config = self.current_config().await?;
        let tracked = config.as_ref().map(tracked_app_ids).unwrap_or_default();
        let deployed_something = config
            .as_ref()
            .is_some_and(|c| !c.services.is_empty() || !c.nodes.is_empty());
        let answer = |success, torn: &[AppId], warnings: Vec<String>| DeployResponse {
            success,
            deployment_id: deployment_id.to_owned(),
            backend: backend_type,
            preset: Some(orchestrator_core::config_history::CLEARED_PRESET_NAME.to_owned()),
            duration: self.elapsed(begun),
            topology: Some(ServiceTopology::empty()),
            services: Some(
                torn.iter()
                    .map(|a| DeployedService {
                        name: a.to_string(),
                        status: DeployedServiceStatus::Stopped,
                        node: deps.settings.control_plane_app_id.to_string(),
                        container_id: None,
                        pod_name: None,
                        endpoints: None,
                    })
                    .collect(),
            ),
            warnings: non_empty(warnings),
            routing_laggards: None,
            switched_routes: None,
            canary: None,
        };
        if request.dry_run {
            let changes = tracked.iter().map(ToString::to_string).collect();
            self.publish_outcome(
                deployment_id,
                request.preset.clone(),
                Some(backend_type),
                changes,
                &[],
            )
            .await;
            return Ok(Answer::ok(answer(true, &tracked, Vec::new())));
        }

        let mut warnings = self.change_routes(|table, _, _| table.reset_all()).await;
        // Routes the table does not hold (written before a restart) go too: the store
        // must agree that everything resolves to the control plane.
        match deps.store.list_routes().await {
            Ok(stale) => {
                for service in stale.keys() {
                    if let Err(e) = deps.store.remove_route(service).await {
                        warnings.push(format!("route of {service} not removed: {e}"));
                    }
                }
            }
            Err(e) => warnings.push(format!("stored routes not listed: {e}")),
        }
        let mut torn = Vec::new();
        let mut success = true;
        if deployed_something {
            // The consumers follow the reset before the nodes stop (D58).
            warnings.extend(self.settle_routes(&tracked).await);
            self.invalidate_openresty().await;
            for app in &tracked {
                let (result, w) = self
                    .teardown_node(backend.as_ref(), app, &TeardownOptions::default())
                    .await;
                warnings.extend(w);
                match result {
                    Ok(_) => torn.push(app.clone()),
                    Err(BackendError::NotFound { .. }) => {}
                    Err(e) => {
                        tracing::warn!(app_id = %app, error = %Chain(&e), "reset: teardown failed");
                        warnings.push(format!("{app}: {e}"));
                    }
                }
            }
            match deps
                .store
                .clear_config(deps.clock.now(), deps.settings.config_history_ttl)
                .await
            {
                Ok(version) => {
                    if let Err(e) = deps.store.mark_config_stable(version).await {
                        warnings.push(format!(
                            "configuration version {version} not marked stable: {e}"
                        ));
                    }
                }
                Err(e) => {
                    // docs/COMPATIBILITY.md#reset-to-default step 5: a failure answers
                    // success=false, still 200.
                    success = false;
                    warnings.push(format!("configuration not cleared: {e}"));
                }
            }
        }
        deps.backends.set_active(backend_type);
        let failures: Vec<String> = if success {
            Vec::new()
        } else {
            warnings.clone()
        };
        self.publish_outcome(
            deployment_id,
            request.preset.clone(),
            Some(backend_type),
            torn.iter().map(ToString::to_string).collect(),
            &failures,
        )
        .await;
        Ok(Answer::ok(answer(success, &torn, warnings)))
    }
}

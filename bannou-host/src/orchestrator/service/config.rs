//! Endpoint group `config`: rollback (docs/COMPATIBILITY.md#rollback; unlike upstream it
//! redeploys the restored version, D20 (docs/DECISIONS.md#d20)) and version info
//! (docs/COMPATIBILITY.md#version-info).

use orchestrator_core::Catalog;
use orchestrator_core::api::*;
use orchestrator_core::error_source::Chain;
use orchestrator_core::events::DeploymentAction;
use orchestrator_core::planner::{self, PlanOptions};
use uuid::Uuid;

use super::errors::{rollback_error, store_error};
use super::running::config_nodes;
use super::wave_failure::texts;
use super::{Answer, OrchestratorService, ServiceError, ServiceResult};
use crate::orchestrator::routing_acks;

impl OrchestratorService {
    /// POST /orchestrator/config/rollback (docs/COMPATIBILITY.md#config-rollback,
    /// docs/COMPATIBILITY.md#rollback); redeploys the restored version.
    ///
    /// Creates exactly one new version (a copy of the target), then plans from what runs
    /// to that version's nodes and runs the waves; routes and mappings follow. The new
    /// version is marked stable once healthy. If a wave fails the deployment reverts to
    /// the last stable version and the answer is 500 naming the failures (the version
    /// was created all the same: the history records what was asked).
    pub async fn rollback(
        &self,
        request: ConfigRollbackRequest,
    ) -> ServiceResult<ConfigRollbackResponse> {
        let (result, laggards) = routing_acks::collecting(self.roll_back(request)).await;
        result.map(|mut answer| {
            answer.body.routing_laggards = super::non_empty(laggards);
            answer
        })
    }

    async fn roll_back(
        &self,
        request: ConfigRollbackRequest,
    ) -> ServiceResult<ConfigRollbackResponse> {
        request.validate().map_err(ServiceError::field)?;
        let _lifecycle = self.begin_lifecycle("roll back").await?;
        let deps = &self.deps;
        let backend = deps.backends.select(None).await?;
        let before = self.current_config().await?;
        let target = request
            .target_version
            .map(|v| u64::try_from(v).unwrap_or(0));
        let outcome = deps
            .store
            .rollback_config(target, deps.clock.now(), deps.settings.config_history_ttl)
            .await
            .map_err(rollback_error)?;
        tracing::info!(
            from = outcome.previous_version,
            to = outcome.current_version,
            reason = %request.reason,
            "configuration rolled back; redeploying"
        );
        let answer = ConfigRollbackResponse {
            previous_version: i64::try_from(outcome.previous_version).unwrap_or(i64::MAX),
            current_version: i64::try_from(outcome.current_version).unwrap_or(i64::MAX),
            changed_keys: Some(outcome.changed_keys.clone()),
            routing_laggards: None,
        };

        let deployment_id = Uuid::new_v4().to_string();
        let preset = outcome.restored.preset_name.clone();
        let mut started = self.deployment_event(DeploymentAction::Started, &deployment_id);
        started.preset = preset.clone();
        started.backend = Some(backend.backend_type());
        self.publish_deployment(started).await;

        let running = self.running_nodes(before.as_ref(), backend.as_ref()).await;
        let desired = config_nodes(&outcome.restored);
        let plan = match planner::plan(
            &running,
            &desired,
            Catalog::builtin(),
            &PlanOptions::default(),
        ) {
            Ok(p) => p,
            Err(rejected) => {
                let message = format!(
                    "configuration version {} restored, but it cannot be deployed: {rejected}",
                    outcome.current_version
                );
                self.publish_outcome(
                    &deployment_id,
                    preset,
                    Some(backend.backend_type()),
                    Vec::new(),
                    std::slice::from_ref(&message),
                )
                .await;
                return Err(ServiceError::internal(message));
            }
        };
        // Its waves' progress events carry the rollback's id (`crate::event_stream`).
        let exec = crate::event_stream::within_deployment(
            &deployment_id,
            self.execute_plan(&backend, &running, &plan),
        )
        .await;
        deps.backends.set_active(backend.backend_type());
        if !plan.is_empty() {
            self.invalidate_openresty().await;
        }
        self.publish_outcome(
            &deployment_id,
            preset,
            Some(backend.backend_type()),
            exec.started_names(),
            &texts(&exec.failures),
        )
        .await;
        if !exec.failures.is_empty() {
            let notes = self
                .revert_after_failure(
                    &backend,
                    &exec.running,
                    &running,
                    Some(&outcome.restored),
                    &deployment_id,
                )
                .await;
            return Err(ServiceError::internal(format!(
                "configuration version {} restored, but redeploying it failed: {}; {}",
                outcome.current_version,
                texts(&exec.failures).join("; "),
                notes.join("; ")
            )));
        }
        if let Err(e) = deps.store.mark_config_stable(outcome.current_version).await {
            tracing::warn!(version = outcome.current_version, error = %Chain(&e), "rolled-back version not marked stable");
        }
        Ok(Answer::ok(answer))
    }

    /// POST /orchestrator/config/version (docs/COMPATIBILITY.md#config-version,
    /// docs/COMPATIBILITY.md#version-info).
    pub async fn config_version(
        &self,
        request: GetConfigVersionRequest,
    ) -> ServiceResult<ConfigVersionResponse> {
        // `includeKeyPrefixes` is ignored: prefixes are always computed
        // (docs/COMPATIBILITY.md#config-version).
        let _ = request;
        let info = self
            .deps
            .store
            .config_version_info(self.deps.clock.now())
            .await
            .map_err(store_error)?;
        Ok(Answer::ok(ConfigVersionResponse {
            version: i64::try_from(info.version).unwrap_or(i64::MAX),
            timestamp: info.timestamp,
            has_previous_config: info.has_previous_config,
            key_count: i64::try_from(info.key_count).unwrap_or(i64::MAX),
            key_prefixes: Some(info.key_prefixes),
        }))
    }
}

#[cfg(test)]
mod tests {
    use crate::orchestrator::service::Outcome;

    use orchestrator_core::api::*;
    use orchestrator_core::events::DeploymentAction;
    use orchestrator_core::ports::store::OrchestratorStore;

    use super::super::testing::World;

    async fn world() -> World {
        World::with_live_nodes().await
    }

    fn rollback(target: Option<i64>) -> ConfigRollbackRequest {
        ConfigRollbackRequest {
            reason: "test".into(),
            target_version: target,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn rollback_creates_one_version_and_redeploys_it() {
        let world = world().await;
        assert!(world.deploy_preset("split-auth").await.body.success);
        assert!(world.deploy_preset("game-stack").await.body.success);
        assert_eq!(world.route("auth"), "stack-auth");
        let mut events = world.deployment_events().await;

        let answer = world.service.rollback(rollback(None)).await.unwrap();

        assert_eq!(answer.outcome, Outcome::Ok);
        assert_eq!(
            (answer.body.previous_version, answer.body.current_version),
            (2, 3)
        );
        // One direction only (docs/COMPATIBILITY.md#rollback): account and auth are enabled
        // in both versions.
        assert_eq!(answer.body.changed_keys, Some(Vec::new()));
        assert_eq!(world.store.latest_config_version().await.unwrap(), 3);
        let cfg = world.store.current_config().await.unwrap().unwrap();
        assert_eq!(cfg.preset_name.as_deref(), Some("split-auth"));
        assert!(cfg.stable, "marked stable once healthy");
        // Redeployed: the split-auth node is back, the game stack is gone, routes follow.
        assert_eq!(world.running(), ["bannou-auth"]);
        assert_eq!(world.route("auth"), "bannou-auth");
        assert_eq!(world.route("matchmaking"), "bannou");
        let actions: Vec<DeploymentAction> = World::drain(&mut events)
            .into_iter()
            .map(|e| e.action)
            .collect();
        assert_eq!(
            actions,
            [DeploymentAction::Started, DeploymentAction::Completed]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn rollback_refusals_follow_spec_11_2() {
        let world = world().await;
        let refused = world.service.rollback(rollback(None)).await.unwrap_err();
        assert_eq!(refused.status(), 400);
        assert!(world.deploy_preset("split-auth").await.body.success);
        assert!(world.deploy_preset("game-stack").await.body.success);
        let refused = world.service.rollback(rollback(Some(2))).await.unwrap_err();
        assert_eq!(refused.status(), 400);
        assert_eq!(world.store.latest_config_version().await.unwrap(), 2);
        assert_eq!(world.route("auth"), "stack-auth");
    }

    #[tokio::test(start_paused = true)]
    async fn config_version_reports_the_current_version() {
        let world = world().await;
        let none = world
            .service
            .config_version(GetConfigVersionRequest::default())
            .await
            .unwrap()
            .body;
        assert_eq!((none.version, none.has_previous_config), (0, false));
        assert_eq!(none.key_prefixes, Some(Vec::new()));

        assert!(world.deploy_preset("split-auth").await.body.success);
        assert!(world.deploy_preset("game-stack").await.body.success);
        let info = world
            .service
            .config_version(GetConfigVersionRequest::default())
            .await
            .unwrap()
            .body;
        assert_eq!(info.version, 2);
        assert!(info.has_previous_config);
        // 11 routed services, no request environment.
        assert_eq!(info.key_count, 11);
        assert_eq!(info.key_prefixes, Some(vec!["services".to_owned()]));
    }
}

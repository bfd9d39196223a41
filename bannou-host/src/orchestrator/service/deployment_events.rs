//! Deployment events on the bus (started, completed, failed, topology changed); a bus
//! failure is logged and never fails the request.

use orchestrator_core::events::{BackendType, DeploymentAction, DeploymentEvent};
use orchestrator_core::ports::bus::EventBusExt;
use uuid::Uuid;

use super::OrchestratorService;

impl OrchestratorService {
    /// Publishes a `DeploymentEvent`; a bus failure is logged, never fails the request
    /// (the deployment itself happened or not regardless of who hears about it).
    pub(super) async fn publish_deployment(&self, event: DeploymentEvent) {
        if let Err(e) = self.deps.bus.publish_event(&event).await {
            tracing::warn!(error = %e, action = %event.action, deployment_id = %event.deployment_id,
                "publishing a deployment event failed");
        }
    }

    /// A `DeploymentEvent` stamped now, with no optional field set.
    pub(super) fn deployment_event(
        &self,
        action: DeploymentAction,
        deployment_id: &str,
    ) -> DeploymentEvent {
        DeploymentEvent {
            event_id: Uuid::new_v4(),
            timestamp: self.deps.clock.now(),
            action,
            deployment_id: deployment_id.to_owned(),
            preset: None,
            backend: None,
            changes: None,
            error: None,
        }
    }

    /// Publishes `Completed` or `Failed` (when `failures` is not empty) for a deployment.
    pub(super) async fn publish_outcome(
        &self,
        deployment_id: &str,
        preset: Option<String>,
        backend: Option<BackendType>,
        changes: Vec<String>,
        failures: &[String],
    ) {
        let action = if failures.is_empty() {
            DeploymentAction::Completed
        } else {
            DeploymentAction::Failed
        };
        let mut event = self.deployment_event(action, deployment_id);
        event.preset = preset;
        event.backend = backend;
        event.changes = Some(changes);
        event.error = (!failures.is_empty()).then(|| failures.join("; "));
        self.publish_deployment(event).await;
    }
}

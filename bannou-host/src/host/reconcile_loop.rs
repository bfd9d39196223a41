//! The leader's reconciliation loop around [`OrchestratorService::reconcile`].
//!
//! Invariant: the first sweep is retried until it runs, even with no interval.

use std::time::Duration;

use tokio::sync::watch;

use crate::control_events::{self, ControlEvent};
use orchestrator_core::error_source::Chain;

use crate::orchestrator::service::{ErrorKind, OrchestratorService};
use crate::orchestrator::stopped;

/// How soon a reconciliation sweep that could not run is tried again.
const RECONCILE_RETRY: Duration = Duration::from_secs(5);

/// The leader's reconciliation loop: a sweep at once (the first re-publishes the
/// mappings), then one every `every` (never again when zero) until `pause` turns true.
/// A sweep that repaired something is published as a [`ControlEvent`] of `replica`.
/// A sweep that could not run (a deploy of this replica held the lock, the store or the
/// backend failed) is tried again after [`RECONCILE_RETRY`] at most.
pub(super) async fn reconcile_while(
    service: OrchestratorService,
    replica: String,
    every: Duration,
    grace: Duration,
    mut pause: watch::Receiver<bool>,
) {
    let mut first = true;
    loop {
        let swept = tokio::select! {
            _ = stopped(&mut pause) => return,
            outcome = service.reconcile(first, grace) => match service.metrics().reconcile_swept(outcome, |e| e.kind == ErrorKind::Conflict) {
                Ok(sweep) if sweep.is_quiet() => {
                    tracing::debug!(adopted = sweep.adopted.len(), "reconciled: nothing to do");
                    true
                }
                Ok(sweep) => {
                    if let Some(event) = ControlEvent::reconciled(&replica, &sweep) {
                        control_events::publish(service.deps().bus.as_ref(), event).await;
                    }
                    tracing::warn!(
                        interrupted = ?sweep.interrupted.as_ref().map(|r| &r.deployment_id),
                        redeployed = ?sweep.redeployed,
                        workers_restarted = ?sweep.workers_restarted,
                        removed = ?sweep.removed,
                        errors = ?sweep.errors,
                        "reconciled"
                    );
                    true
                }
                Err(e) if e.kind == ErrorKind::Conflict => {
                    tracing::debug!(error = %e.body.error, "reconciliation skipped");
                    false
                }
                Err(e) => {
                    tracing::error!(error = %Chain(&e), "reconciliation failed");
                    false
                }
            },
        };
        // A sweep that did not run (a deploy held the lock, the store or the backend
        // failed) is tried again soon, even with no interval: the first one must happen.
        let wait = match (swept, every.is_zero()) {
            (false, true) => RECONCILE_RETRY,
            (false, false) => every.min(RECONCILE_RETRY),
            (true, true) => {
                stopped(&mut pause).await;
                return;
            }
            (true, false) => every,
        };
        first &= !swept;
        tokio::select! {
            _ = stopped(&mut pause) => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orchestrator::service::Outcome;
    use crate::orchestrator::service::testing::World;
    use orchestrator_core::AppId;
    use orchestrator_core::api::{DeployRequest, ServiceTopology, TopologyNode};
    use orchestrator_core::ports::backend::{
        BackendError, BackendOperation, ContainerBackend, TeardownOptions,
    };

    #[tokio::test(start_paused = true)]
    async fn a_sweep_that_could_not_run_is_tried_again_even_with_no_interval() {
        let world = World::with_live_nodes().await;
        let answer = world
            .service
            .deploy(DeployRequest {
                topology: Some(ServiceTopology {
                    nodes: vec![TopologyNode {
                        services: Some(vec!["auth".to_owned()]),
                        ..TopologyNode::new("loop-auth")
                    }],
                    infrastructure: None,
                }),
                ..DeployRequest::default()
            })
            .await
            .unwrap();
        assert_eq!(answer.outcome, Outcome::Ok, "{:?}", answer.body.warnings);
        world
            .backend
            .teardown(&AppId::new("loop-auth"), &TeardownOptions::default())
            .await
            .unwrap();
        // The first sweep's listing fails; with no interval the loop still tries again.
        world
            .backend
            .fail_next_call(BackendOperation::List, BackendError::runtime("engine away"));
        let (pause, paused) = watch::channel(false);
        let task = tokio::spawn(reconcile_while(
            world.service.clone(),
            "replica-test".to_owned(),
            Duration::ZERO,
            Duration::ZERO,
            paused,
        ));
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(
            world.running().is_empty(),
            "the failed sweep changed nothing"
        );
        tokio::time::sleep(RECONCILE_RETRY).await;
        assert_eq!(world.running(), ["loop-auth"], "the retry redeployed it");
        // Done once: with no interval it waits for the pause, and ends on it.
        assert!(!task.is_finished());
        pause.send(true).unwrap();
        task.await.unwrap();
    }
}

//! What the control plane itself does, as events on our bus topic [`CONTROL_TOPIC`] (not an
//! upstream topic): a replica gaining or losing the leadership, what a reconciliation
//! sweep repaired, and a change that stopped nodes before every live consumer had applied
//! its routes (D58 (docs/DECISIONS.md#d58)). They travel on the bus so that every replica's event stream
//! (`GET /orchestrator/events`) shows every replica's changes.
//!
//! Invariants: a replica publishes a leadership change only when its own state flips
//! between leader and follower (never per renewal); a sweep that repaired nothing and
//! failed nowhere publishes nothing. Publishing is best effort: a bus error is logged and
//! never stops the loop that reports.

use orchestrator_core::events::Event;
use orchestrator_core::ports::bus::{EventBus, EventBusExt};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

use tokio::sync::watch;

use crate::orchestrator::leader::LeaderState;
use crate::orchestrator::service::ReconcileSweep;
use crate::orchestrator::stopped;

/// Our bus topic for the control plane's own changes.
pub const CONTROL_TOPIC: &str = "bannou.orchestrator-control";

/// The stream's name for a [`ControlEvent::LeaderChanged`].
pub const LEADER_CHANGED_TYPE: &str = "leader.changed";

/// The stream's name for a [`ControlEvent::ReconcileRepaired`].
pub const RECONCILE_REPAIRED_TYPE: &str = "reconcile.repaired";

/// The stream's name for a [`ControlEvent::RoutingAckTimeout`].
pub const ROUTING_ACK_TIMEOUT_TYPE: &str = "routing.ack-timeout";

/// One change of the control plane, published on [`CONTROL_TOPIC`]; `kind` names it in
/// the stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind")]
pub enum ControlEvent {
    /// A replica became the leader or stopped being it.
    #[serde(rename = "leader.changed", rename_all = "camelCase")]
    LeaderChanged {
        /// The replica's candidate id.
        replica: String,
        /// True when it now leads.
        leader: bool,
        /// The fencing token of its term (leader), or of the leader it knows (follower).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<u64>,
        /// The leader's candidate id as the replica knows it (follower only).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        holder: Option<String>,
    },
    /// A reconciliation sweep of the leader changed something or met errors.
    #[serde(rename = "reconcile.repaired", rename_all = "camelCase")]
    ReconcileRepaired {
        /// The replica that swept.
        replica: String,
        /// The cut-off deploy it reverted, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        interrupted: Option<String>,
        /// Nodes of the current configuration deployed again.
        redeployed: Vec<String>,
        /// Pool workers started again under their identity.
        workers_restarted: Vec<String>,
        /// Containers nobody owns, torn down.
        removed: Vec<String>,
        /// Whether the sweep re-published the mappings.
        republished: bool,
        /// What failed (the next sweep tries again).
        errors: Vec<String>,
    },
    /// A change that moves routes away from nodes and then stops them waited for the live
    /// consumers to apply the new routes until the timeout, then went on (D58).
    #[serde(rename = "routing.ack-timeout", rename_all = "camelCase")]
    RoutingAckTimeout {
        /// The replica that waited.
        replica: String,
        /// The mappings version waited for.
        version: i64,
        /// The live consumers still behind it, with the version each had applied.
        laggards: Vec<orchestrator_core::api::NodeMappingsVersion>,
        /// The nodes the change then stopped.
        stopping: Vec<String>,
        /// How long it waited, in milliseconds.
        waited_ms: u64,
    },
}

impl Event for ControlEvent {
    const TOPIC: &'static str = CONTROL_TOPIC;
}

impl ControlEvent {
    /// The stream's type name of this event.
    pub fn type_name(&self) -> &'static str {
        match self {
            ControlEvent::LeaderChanged { .. } => LEADER_CHANGED_TYPE,
            ControlEvent::ReconcileRepaired { .. } => RECONCILE_REPAIRED_TYPE,
            ControlEvent::RoutingAckTimeout { .. } => ROUTING_ACK_TIMEOUT_TYPE,
        }
    }

    /// The event for `state`, this replica's (`replica`) new leadership state.
    pub fn leader(replica: &str, state: &LeaderState) -> ControlEvent {
        let (leader, token, holder) = match state {
            LeaderState::Leader { token } => (true, Some(*token), None),
            LeaderState::Follower { holder, token } => (false, *token, holder.clone()),
        };
        ControlEvent::LeaderChanged {
            replica: replica.to_owned(),
            leader,
            token,
            holder,
        }
    }

    /// The event for a sweep of `replica`, or `None` when the sweep changed nothing and
    /// nothing failed (adoptions alone are not repairs).
    pub fn reconciled(replica: &str, sweep: &ReconcileSweep) -> Option<ControlEvent> {
        if sweep.is_quiet() {
            return None;
        }
        let names =
            |ids: &[orchestrator_core::AppId]| ids.iter().map(ToString::to_string).collect();
        Some(ControlEvent::ReconcileRepaired {
            replica: replica.to_owned(),
            interrupted: sweep.interrupted.as_ref().map(|r| r.deployment_id.clone()),
            redeployed: names(&sweep.redeployed),
            workers_restarted: names(&sweep.workers_restarted),
            removed: names(&sweep.removed),
            republished: sweep.republished,
            errors: sweep.errors.clone(),
        })
    }
}

/// Publishes `event`, logging (not returning) a bus error.
pub async fn publish(bus: &dyn EventBus, event: ControlEvent) {
    if let Err(e) = bus.publish_owned(event).await {
        tracing::warn!(error = %e, topic = CONTROL_TOPIC, "could not publish a control-plane event");
    }
}

/// Publishes a [`ControlEvent::LeaderChanged`] each time `leads` flips between leader and
/// follower (the first value counts as a change when it is leader), until `shutdown` or
/// until the channel closes.
pub async fn follow_leadership(
    bus: Arc<dyn EventBus>,
    replica: String,
    mut leads: watch::Receiver<LeaderState>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut was_leader = false;
    loop {
        let state = leads.borrow_and_update().clone();
        if state.is_leader() != was_leader {
            was_leader = state.is_leader();
            publish(bus.as_ref(), ControlEvent::leader(&replica, &state)).await;
        }
        tokio::select! {
            changed = leads.changed() => if changed.is_err() { return },
            _ = stopped(&mut shutdown) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use orchestrator_core::AppId;

    #[test]
    fn a_leader_change_is_tagged_with_its_stream_type() {
        let e = ControlEvent::leader("replica-a", &LeaderState::Leader { token: 7 });
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["kind"], LEADER_CHANGED_TYPE);
        assert_eq!(json["replica"], "replica-a");
        assert_eq!(json["leader"], true);
        assert_eq!(json["token"], 7);
        assert_eq!(serde_json::from_value::<ControlEvent>(json).unwrap(), e);
    }

    #[test]
    fn a_quiet_sweep_is_no_event_and_a_repair_is_one() {
        let mut sweep = ReconcileSweep {
            interrupted: None,
            adopted: vec![AppId::new("bannou-a")],
            redeployed: vec![],
            workers_restarted: vec![],
            removed: vec![],
            republished: false,
            errors: vec![],
        };
        assert_eq!(ControlEvent::reconciled("r", &sweep), None);
        sweep.redeployed.push(AppId::new("bannou-b"));
        let e = ControlEvent::reconciled("r", &sweep).expect("a repair is reported");
        assert_eq!(e.type_name(), RECONCILE_REPAIRED_TYPE);
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["redeployed"], serde_json::json!(["bannou-b"]));
        assert_eq!(json["workersRestarted"], serde_json::json!([]));
    }
}

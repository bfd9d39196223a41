//! What is known about one instance (its state, kept by the aggregator), the status
//! rules applied to it, and the read-only views the aggregator hands out.
//!
//! Invariant: a slot never holds an infrastructure service name.

use std::time::Duration;

use uuid::Uuid;

use super::{DROPPED_HEARTBEATS_KEY, ROUTING_VERSION_KEY};
use crate::events::{
    InstanceCapacity, InstanceHealthStatus, ServiceHealthStatus, ServiceHeartbeatEvent,
};
use crate::names::{AppId, ServiceName};
use crate::time::Timestamp;

// === state ===

/// One service on one instance.
#[derive(Debug, Clone)]
pub(super) struct ServiceSlot {
    /// Interned name (id in [`ServiceIndex`](super::index::ServiceIndex)).
    pub(super) name: usize,
    /// The name as the heartbeat that created this slot carried it. An in-process node
    /// sends the same shared names every beat, so a pointer match stands for the text
    /// comparison; a decoded heartbeat never matches by pointer and is compared as text.
    pub(super) seen: ServiceName,
    pub(super) status: ServiceHealthStatus,
    /// Start of the current non-healthy stretch (by reported state), `None` while healthy.
    pub(super) degraded_since: Option<Timestamp>,
}

/// Everything known about one instance (keyed by its GUID).
#[derive(Debug, Clone)]
pub(super) struct InstanceState {
    pub(super) app_id: AppId,
    pub(super) status: InstanceHealthStatus,
    /// What the instance-level fields (status, issues) contribute to every service's status.
    pub(super) floor: InstanceHealthStatus,
    pub(super) issues: Vec<String>,
    pub(super) capacity: Option<InstanceCapacity>,
    pub(super) first_seen: Timestamp,
    pub(super) last_seen: Timestamp,
    pub(super) routing_version: Option<i64>,
    /// The highest mappings version the instance acknowledged on the bus (D58).
    pub(super) acked_version: Option<i64>,
    pub(super) dropped_heartbeats: Option<u64>,
    pub(super) services: Vec<ServiceSlot>,
}

// === status rules ===

/// Instance-level contribution: shutting down or unavailable makes every service unavailable;
/// degraded, overloaded or any issue makes it degraded.
pub(super) fn instance_floor(
    status: InstanceHealthStatus,
    has_issues: bool,
) -> InstanceHealthStatus {
    match status {
        InstanceHealthStatus::Unavailable | InstanceHealthStatus::ShuttingDown => {
            InstanceHealthStatus::Unavailable
        }
        InstanceHealthStatus::Degraded | InstanceHealthStatus::Overloaded => {
            InstanceHealthStatus::Degraded
        }
        InstanceHealthStatus::Healthy if has_issues => InstanceHealthStatus::Degraded,
        InstanceHealthStatus::Healthy => InstanceHealthStatus::Healthy,
    }
}

/// Reported status of one service on an instance, before the silence rule.
pub(super) fn reported(
    service: ServiceHealthStatus,
    floor: InstanceHealthStatus,
) -> InstanceHealthStatus {
    InstanceHealthStatus::from(service).max(floor)
}

/// Moves `degraded_since` along with the reported status.
pub(super) fn track_degradation(
    since: &mut Option<Timestamp>,
    reported: InstanceHealthStatus,
    now: Timestamp,
) {
    if reported == InstanceHealthStatus::Healthy {
        *since = None;
    } else if since.is_none() {
        *since = Some(now);
    }
}

pub(super) fn routing_version_of(hb: &ServiceHeartbeatEvent) -> Option<i64> {
    hb.metadata.as_ref()?.get(ROUTING_VERSION_KEY)?.as_i64()
}

pub(super) fn dropped_heartbeats_of(hb: &ServiceHeartbeatEvent) -> Option<u64> {
    hb.metadata.as_ref()?.get(DROPPED_HEARTBEATS_KEY)?.as_u64()
}

pub(super) fn is_stale(last_seen: Timestamp, now: Timestamp, timeout: Duration) -> bool {
    now.saturating_since(last_seen) > timeout
}

/// True while `inst` neither said it is shutting down nor has been silent past `timeout`.
pub(super) fn is_live(inst: &InstanceState, now: Timestamp, timeout: Duration) -> bool {
    inst.status != InstanceHealthStatus::ShuttingDown && !is_stale(inst.last_seen, now, timeout)
}

// === views ===

/// One service on one instance, as [`HeartbeatAggregator::instances_of`](super::HeartbeatAggregator::instances_of) shows it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ServiceInstance<'a> {
    /// Service name.
    pub service: &'a str,
    /// Instance GUID (the heartbeat's `serviceId`).
    pub instance_id: Uuid,
    /// The instance's app-id.
    pub app_id: &'a AppId,
    /// Status the service reported in the last heartbeat.
    pub service_status: ServiceHealthStatus,
    /// Status the instance reported in the last heartbeat.
    pub instance_status: InstanceHealthStatus,
    /// Issues of the last heartbeat (empty when none).
    pub issues: &'a [String],
    /// Capacity of the last heartbeat.
    pub capacity: Option<&'a InstanceCapacity>,
    /// Receive time of the instance's first heartbeat.
    pub first_seen: Timestamp,
    /// Receive time of the instance's last heartbeat.
    pub last_seen: Timestamp,
    /// Since when this service has been reported non-healthy on this instance (`None` while healthy).
    pub degraded_since: Option<Timestamp>,
    /// Routing-table version the instance reported applying (`metadata.routingVersion`).
    pub routing_version: Option<i64>,
    /// Beats the instance reported it could not publish (`metadata.droppedHeartbeats`).
    pub dropped_heartbeats: Option<u64>,
    reported: InstanceHealthStatus,
}

impl ServiceInstance<'_> {
    /// The status from the last heartbeat alone (reported service status, instance status, issues):
    /// `Healthy`, `Degraded` or `Unavailable`.
    pub fn reported_status(&self) -> InstanceHealthStatus {
        self.reported
    }

    /// True once the instance has said it is shutting down.
    pub fn is_leaving(&self) -> bool {
        self.instance_status == InstanceHealthStatus::ShuttingDown
    }

    /// True when the last heartbeat is older than `timeout` at `now`.
    pub fn is_silent(&self, now: Timestamp, timeout: Duration) -> bool {
        is_stale(self.last_seen, now, timeout)
    }

    /// Derived status at `now`: `Unavailable` when silent longer than `timeout`, else
    /// [`Self::reported_status`].
    pub fn status_at(&self, now: Timestamp, timeout: Duration) -> InstanceHealthStatus {
        if self.is_silent(now, timeout) {
            InstanceHealthStatus::Unavailable
        } else {
            self.reported
        }
    }

    /// How long the service has been non-healthy at `now` (zero while healthy).
    pub fn degraded_for(&self, now: Timestamp) -> Duration {
        self.degraded_since
            .map_or(Duration::ZERO, |since| now.saturating_since(since))
    }
}

/// An instance whose applied routing version is behind the current one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaggingInstance {
    /// Instance GUID.
    pub instance_id: Uuid,
    /// Its app-id.
    pub app_id: AppId,
    /// The version it reported applying.
    pub applied_version: i64,
}

pub(super) fn view<'a>(
    name: &'a str,
    id: u128,
    inst: &'a InstanceState,
    slot: &'a ServiceSlot,
) -> ServiceInstance<'a> {
    ServiceInstance {
        service: name,
        instance_id: Uuid::from_u128(id),
        app_id: &inst.app_id,
        service_status: slot.status,
        instance_status: inst.status,
        issues: &inst.issues,
        capacity: inst.capacity.as_ref(),
        first_seen: inst.first_seen,
        last_seen: inst.last_seen,
        degraded_since: slot.degraded_since,
        routing_version: inst.routing_version,
        dropped_heartbeats: inst.dropped_heartbeats,
        reported: reported(slot.status, inst.floor),
    }
}

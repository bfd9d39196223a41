//! Heartbeat aggregator: per-service, per-instance health from heartbeats (D4
//! (docs/DECISIONS.md#d4)) and the GetServicesHealth report
//! (docs/COMPATIBILITY.md#health-report).
//!
//! Pure state machine: [`HeartbeatAggregator::ingest`] applies one heartbeat at a given `now`,
//! queries derive status at the `now` they are given. No clock is read here.

use std::time::Duration;

use rustc_hash::{FxHashMap, FxHashSet};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::api::enums::ServiceHealthSource;
use crate::events::{
    InstanceCapacity, InstanceHealthStatus, ServiceHealthStatus, ServiceHeartbeatEvent,
};
use crate::names::{AppId, ServiceName};
use crate::time::Timestamp;

/// Services that are infrastructure, never routed and never tracked
/// (docs/COMPATIBILITY.md#infrastructure-services,
/// docs/COMPATIBILITY.md#heartbeat-consumption step d).
pub const INFRASTRUCTURE_SERVICES: [&str; 3] = ["state", "messaging", "mesh"];

/// True for `state`, `messaging` and `mesh` in any ASCII case.
pub fn is_infrastructure_service(name: &str) -> bool {
    INFRASTRUCTURE_SERVICES
        .iter()
        .any(|s| s.eq_ignore_ascii_case(name))
}

/// Key in a heartbeat's `metadata` where a node reports the routing-table version it applied.
pub const ROUTING_VERSION_KEY: &str = "routingVersion";
/// Heartbeat metadata key of the number of beats the instance could not publish since
/// it started (its bus was unreachable); shown with the instance's services.
pub const DROPPED_HEARTBEATS_KEY: &str = "droppedHeartbeats";

// === HealthConfig ===

/// Why a [`HealthConfig`] was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HealthConfigError {
    /// `HeartbeatTimeoutSeconds` must be at least one second.
    #[error("heartbeat timeout must be at least 1 second, got {0:?}")]
    TimeoutTooShort(Duration),
    /// `DegradationThresholdMinutes` must be positive.
    #[error("degradation threshold must be positive, got {0:?}")]
    ZeroThreshold(Duration),
    /// Silent instances must be kept at least until they are reported unavailable.
    #[error("retention {retention:?} is shorter than the heartbeat timeout {timeout:?}")]
    RetentionBelowTimeout {
        /// The rejected retention.
        retention: Duration,
        /// The heartbeat timeout it must not undercut.
        timeout: Duration,
    },
}

/// Timing rules of the aggregator (docs/COMPATIBILITY.md#configuration-variables names in
/// brackets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthConfig {
    /// An instance silent for longer than this is unavailable [`HeartbeatTimeoutSeconds`, 90 s].
    pub heartbeat_timeout: Duration,
    /// How long a service may stay degraded before a restart is recommended
    /// [`DegradationThresholdMinutes`, 5 min].
    pub degradation_threshold: Duration,
    /// How long a silent instance is kept (and reported unavailable) before
    /// [`HeartbeatAggregator::evict_stale`] forgets it; default 10 x the timeout.
    pub retention: Duration,
}

impl HealthConfig {
    /// Default `HeartbeatTimeoutSeconds`.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(90);
    /// Default `DegradationThresholdMinutes`.
    pub const DEFAULT_THRESHOLD: Duration = Duration::from_secs(5 * 60);
    /// Default retention as a multiple of the timeout.
    pub const RETENTION_FACTOR: u32 = 10;

    /// A validated config with retention = 10 x `heartbeat_timeout`.
    pub fn new(
        heartbeat_timeout: Duration,
        degradation_threshold: Duration,
    ) -> Result<Self, HealthConfigError> {
        let retention = heartbeat_timeout.saturating_mul(Self::RETENTION_FACTOR);
        Self {
            heartbeat_timeout,
            degradation_threshold,
            retention,
        }
        .validated()
    }

    /// From the upstream settings `HeartbeatTimeoutSeconds` and `DegradationThresholdMinutes`.
    pub fn from_settings(
        timeout_seconds: u64,
        threshold_minutes: u64,
    ) -> Result<Self, HealthConfigError> {
        Self::new(
            Duration::from_secs(timeout_seconds),
            Duration::from_secs(threshold_minutes.saturating_mul(60)),
        )
    }

    /// The same config with another retention.
    pub fn with_retention(self, retention: Duration) -> Result<Self, HealthConfigError> {
        Self { retention, ..self }.validated()
    }

    fn validated(self) -> Result<Self, HealthConfigError> {
        if self.heartbeat_timeout < Duration::from_secs(1) {
            return Err(HealthConfigError::TimeoutTooShort(self.heartbeat_timeout));
        }
        if self.degradation_threshold.is_zero() {
            return Err(HealthConfigError::ZeroThreshold(self.degradation_threshold));
        }
        if self.retention < self.heartbeat_timeout {
            return Err(HealthConfigError::RetentionBelowTimeout {
                retention: self.retention,
                timeout: self.heartbeat_timeout,
            });
        }
        Ok(self)
    }
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            heartbeat_timeout: Self::DEFAULT_TIMEOUT,
            degradation_threshold: Self::DEFAULT_THRESHOLD,
            retention: Self::DEFAULT_TIMEOUT.saturating_mul(Self::RETENTION_FACTOR),
        }
    }
}

// === IngestOutcome ===

/// What [`HeartbeatAggregator::ingest`] did with a heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IngestOutcome {
    /// The heartbeat came from the control plane (`bannou`, any case) and was ignored
    /// (docs/COMPATIBILITY.md#heartbeat-consumption).
    IgnoredControlPlane,
    /// The heartbeat came from a node the control plane tore down (see
    /// [`HeartbeatAggregator::forget_node`]) and was ignored: a late beat of a forgotten
    /// instance, or a "shutting down" beat of a new instance of that node.
    IgnoredTornDown,
    /// The heartbeat was recorded.
    Recorded(IngestChanges),
}

/// Changes a recorded heartbeat caused; callers use them to refresh routing or promote workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IngestChanges {
    /// First heartbeat of this instance (or first since it was evicted).
    pub new_instance: bool,
    /// The instance's set of tracked services changed (always true for a new instance with services).
    pub services_changed: bool,
    /// The reported status of at least one (service, instance) changed, or a service was added or removed.
    pub health_changed: bool,
    /// The mappings version the heartbeat reports applying (`metadata.routingVersion`), when
    /// the instance had not reported it before (a new instance's first reported version
    /// counts).
    pub routing_applied: Option<i64>,
    /// Number of services now tracked for the instance (infrastructure excluded); zero means the
    /// heartbeat listed none (docs/COMPATIBILITY.md#heartbeat-consumption step b warns about that).
    pub tracked_services: usize,
}

// === internal state ===

/// One service on one instance.
#[derive(Debug, Clone)]
struct ServiceSlot {
    /// Interned name (id in [`ServiceIndex`]).
    name: usize,
    /// The name as the heartbeat that created this slot carried it. An in-process node
    /// sends the same shared names every beat, so a pointer match stands for the text
    /// comparison; a decoded heartbeat never matches by pointer and is compared as text.
    seen: ServiceName,
    status: ServiceHealthStatus,
    /// Start of the current non-healthy stretch (by reported state), `None` while healthy.
    degraded_since: Option<Timestamp>,
}

/// Everything known about one instance (keyed by its GUID).
#[derive(Debug, Clone)]
struct InstanceState {
    app_id: AppId,
    status: InstanceHealthStatus,
    /// What the instance-level fields (status, issues) contribute to every service's status.
    floor: InstanceHealthStatus,
    issues: Vec<String>,
    capacity: Option<InstanceCapacity>,
    first_seen: Timestamp,
    last_seen: Timestamp,
    routing_version: Option<i64>,
    dropped_heartbeats: Option<u64>,
    services: Vec<ServiceSlot>,
}

/// Interned service names and, per name, the instances running it.
///
/// Slots refer to names by id, so the steady-state comparison reads the incoming name
/// against a small, always-cached table instead of one heap string per slot. Names are
/// never un-interned (the set of service names is small and bounded by the catalog).
#[derive(Debug, Clone, Default)]
struct ServiceIndex {
    ids: FxHashMap<Box<str>, usize>,
    entries: Vec<IndexEntry>,
}

#[derive(Debug, Clone)]
struct IndexEntry {
    name: Box<str>,
    instances: FxHashSet<u128>,
}

impl ServiceIndex {
    fn intern(&mut self, name: &str) -> usize {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let id = self.entries.len();
        self.entries.push(IndexEntry {
            name: name.into(),
            instances: FxHashSet::default(),
        });
        self.ids.insert(name.into(), id);
        id
    }

    fn id(&self, name: &str) -> Option<usize> {
        self.ids.get(name).copied()
    }

    fn name(&self, id: usize) -> &str {
        self.entries.get(id).map_or("", |e| &e.name)
    }

    fn is(&self, id: usize, name: &str) -> bool {
        self.entries.get(id).is_some_and(|e| *e.name == *name)
    }

    fn insert(&mut self, id: usize, instance: u128) {
        if let Some(e) = self.entries.get_mut(id) {
            e.instances.insert(instance);
        }
    }

    fn remove(&mut self, id: usize, instance: u128) {
        if let Some(e) = self.entries.get_mut(id) {
            e.instances.remove(&instance);
        }
    }

    fn members(&self, id: usize) -> impl Iterator<Item = u128> + '_ {
        self.entries
            .get(id)
            .into_iter()
            .flat_map(|e| e.instances.iter().copied())
    }

    /// Names with at least one instance.
    fn live_names(&self) -> impl Iterator<Item = &str> + '_ {
        self.entries
            .iter()
            .filter(|e| !e.instances.is_empty())
            .map(|e| &*e.name)
    }
}

/// Instance-level contribution: shutting down or unavailable makes every service unavailable;
/// degraded, overloaded or any issue makes it degraded.
fn instance_floor(status: InstanceHealthStatus, has_issues: bool) -> InstanceHealthStatus {
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
fn reported(service: ServiceHealthStatus, floor: InstanceHealthStatus) -> InstanceHealthStatus {
    InstanceHealthStatus::from(service).max(floor)
}

/// Moves `degraded_since` along with the reported status.
fn track_degradation(
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

fn routing_version_of(hb: &ServiceHeartbeatEvent) -> Option<i64> {
    hb.metadata.as_ref()?.get(ROUTING_VERSION_KEY)?.as_i64()
}

fn dropped_heartbeats_of(hb: &ServiceHeartbeatEvent) -> Option<u64> {
    hb.metadata.as_ref()?.get(DROPPED_HEARTBEATS_KEY)?.as_u64()
}

fn is_stale(last_seen: Timestamp, now: Timestamp, timeout: Duration) -> bool {
    now.saturating_since(last_seen) > timeout
}

// === views ===

/// One service on one instance, as [`HeartbeatAggregator::instances_of`] shows it.
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

// === report wire types (docs/COMPATIBILITY.md#services-health,
// docs/COMPATIBILITY.md#health-report) ===

/// The request type lives with the other API models; re-exported here for callers of
/// [`HeartbeatAggregator::report`].
pub use crate::api::ServiceHealthRequest;

/// `ServiceHealthEntry`: one service on one node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceHealthEntry {
    /// Service name (D4; upstream put the instance GUID here).
    pub service_id: String,
    /// App-id of the node running it.
    pub app_id: String,
    /// Derived status (`Healthy`, `Degraded` or `Unavailable`).
    pub status: InstanceHealthStatus,
    /// Receive time of the node's last heartbeat (now for control-plane entries).
    pub last_seen: Timestamp,
    /// Capacity from the node's last heartbeat.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<InstanceCapacity>,
    /// `instanceId`, plus `issues`, `degradedSince` and `routingVersion` when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Value>,
}

/// `ServiceHealthReport`: the GetServicesHealth response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceHealthReport {
    /// When the report was generated.
    pub timestamp: Timestamp,
    /// The source filter applied (echo).
    pub source: ServiceHealthSource,
    /// App-id of the control plane.
    pub control_plane_app_id: String,
    /// `healthyServices.len() + unhealthyServices.len()`.
    pub total_services: usize,
    /// Healthy / total x 100, or 0 when total is 0.
    pub health_percentage: f64,
    /// Entries whose status is not `Unavailable`.
    pub healthy_services: Vec<ServiceHealthEntry>,
    /// Entries that are `Unavailable` (reported so, shutting down, or silent past the timeout).
    pub unhealthy_services: Vec<ServiceHealthEntry>,
}

/// Case-insensitive substring test; an empty or absent filter matches everything.
struct NameFilter(Option<String>);

impl NameFilter {
    fn new(filter: Option<&str>) -> Self {
        NameFilter(filter.filter(|f| !f.is_empty()).map(|f| f.to_lowercase()))
    }

    fn matches(&self, name: &str) -> bool {
        match &self.0 {
            None => true,
            Some(needle) => name.to_lowercase().contains(needle.as_str()),
        }
    }
}

// === HeartbeatAggregator ===

/// Health of every deployed instance and service, fed by heartbeats.
///
/// State is per instance (keyed by GUID) with the instance's services in a small vector
/// updated in place; a secondary index maps service names to instances and changes only
/// when an instance's service set changes. The steady-state path (same services and
/// issues as last time) allocates nothing and clones no string.
///
/// A node (app-id) may have several instances: replicas, or a restarted process that
/// came back under a new GUID. An instance is *retired* while it has said it is shutting
/// down or has been silent past the heartbeat timeout, and another instance of the same
/// app-id is live (heard within the timeout, not shutting down): a stopped or replaced
/// instance's last report never outvotes a live instance of its node. Retired instances
/// count in no status, recommendation or report; a new instance's first heartbeat forgets
/// the ones it retires, [`Self::evict_stale`] the others.
///
/// A node the control plane tears down has no successor to retire its instances, so
/// [`Self::forget_node`] drops them at once and remembers the node for the retention
/// period: until then a late beat of a forgotten instance, or a "shutting down" beat of
/// an instance of that node not tracked yet (its final beat racing the teardown), is
/// ignored instead of bringing the node back as a ghost. A live beat of a new instance
/// (the node deployed again) is recorded as usual, and [`Self::node_deployed`] (the
/// control plane starting the node again) lifts the memory at once.
#[derive(Debug, Clone, Default)]
pub struct HeartbeatAggregator {
    config: HealthConfig,
    instances: FxHashMap<u128, InstanceState>,
    index: ServiceIndex,
    /// The instances of each node (app-id), for the retirement rule.
    nodes: FxHashMap<AppId, Vec<u128>>,
    /// Nodes forgotten by [`Self::forget_node`], for the retention period.
    torn_down: FxHashMap<AppId, TornDown>,
}

/// A node forgotten by [`HeartbeatAggregator::forget_node`]: when, and its instances then.
#[derive(Debug, Clone)]
struct TornDown {
    at: Timestamp,
    instances: Vec<u128>,
}

impl HeartbeatAggregator {
    /// An empty aggregator.
    pub fn new(config: HealthConfig) -> Self {
        HeartbeatAggregator {
            config,
            instances: FxHashMap::default(),
            index: ServiceIndex::default(),
            nodes: FxHashMap::default(),
            torn_down: FxHashMap::default(),
        }
    }

    /// The timing rules in use.
    pub fn config(&self) -> &HealthConfig {
        &self.config
    }

    /// Number of tracked instances.
    pub fn instance_count(&self) -> usize {
        self.instances.len()
    }

    /// Names of every tracked service, sorted.
    pub fn service_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.index.live_names().collect();
        names.sort_unstable();
        names
    }

    /// Applies one heartbeat received at `now` (receive time, not the event timestamp).
    ///
    /// Control-plane heartbeats are ignored; infrastructure services are never tracked.
    pub fn ingest(&mut self, hb: &ServiceHeartbeatEvent, now: Timestamp) -> IngestOutcome {
        if hb.app_id.is_control_plane() {
            return IngestOutcome::IgnoredControlPlane;
        }
        let issues: &[String] = hb.issues.as_deref().unwrap_or(&[]);
        let floor = instance_floor(hb.status, !issues.is_empty());
        let routing_version = routing_version_of(hb);
        let dropped_heartbeats = dropped_heartbeats_of(hb);
        let key = hb.service_id.as_u128();
        if self.is_torn_down_beat(hb, key, now) {
            return IngestOutcome::IgnoredTornDown;
        }
        let timeout = self.config.heartbeat_timeout;
        let Self {
            instances,
            index,
            nodes,
            ..
        } = self;

        let Some(inst) = instances.get_mut(&key) else {
            let mut services = Vec::with_capacity(hb.services.len());
            rebuild_slots(&mut services, index, hb, floor, now);
            for slot in &services {
                index.insert(slot.name, key);
            }
            let tracked = services.len();
            nodes.entry(hb.app_id.clone()).or_default().push(key);
            instances.insert(
                key,
                InstanceState {
                    app_id: hb.app_id.clone(),
                    status: hb.status,
                    floor,
                    issues: issues.to_vec(),
                    capacity: hb.capacity.clone(),
                    first_seen: now,
                    last_seen: now,
                    routing_version,
                    dropped_heartbeats,
                    services,
                },
            );
            let retired = if hb.status == InstanceHealthStatus::ShuttingDown {
                0
            } else {
                forget_retired_siblings(instances, index, nodes, key, &hb.app_id, now, timeout)
            };
            return IngestOutcome::Recorded(IngestChanges {
                new_instance: true,
                services_changed: tracked > 0 || retired > 0,
                health_changed: tracked > 0 || retired > 0,
                routing_applied: routing_version,
                tracked_services: tracked,
            });
        };

        if inst.app_id.as_str() != hb.app_id.as_str() {
            if inst.app_id != hb.app_id {
                move_node(nodes, key, &inst.app_id, &hb.app_id);
            }
            inst.app_id = hb.app_id.clone();
        }
        if inst.issues.as_slice() != issues {
            inst.issues.clear();
            inst.issues.extend_from_slice(issues);
        }
        inst.status = hb.status;
        inst.capacity.clone_from(&hb.capacity);
        inst.last_seen = now;
        let routing_applied = routing_version.filter(|v| inst.routing_version != Some(*v));
        inst.routing_version = routing_version;
        inst.dropped_heartbeats = dropped_heartbeats;
        let old_floor = inst.floor;
        inst.floor = floor;

        // Fast path: same services in the same order -> update in place. Slots never hold
        // infrastructure names, so a name matching its slot needs no infrastructure check.
        let mut health_changed = false;
        let mut matched = 0;
        let mut same = true;
        for s in &hb.services {
            match inst.services.get_mut(matched) {
                Some(slot)
                    if slot.seen.ptr_eq(&s.service_name)
                        || index.is(slot.name, &s.service_name) =>
                {
                    let before = reported(slot.status, old_floor);
                    let after = reported(s.status, floor);
                    health_changed |= before != after;
                    slot.status = s.status;
                    track_degradation(&mut slot.degraded_since, after, now);
                    matched += 1;
                }
                _ if is_infrastructure_service(&s.service_name) => {}
                _ => {
                    same = false;
                    break;
                }
            }
        }
        if same && matched == inst.services.len() {
            return IngestOutcome::Recorded(IngestChanges {
                new_instance: false,
                services_changed: false,
                health_changed,
                routing_applied,
                tracked_services: matched,
            });
        }

        // Slow path: the service set changed (or was listed in another order).
        let old = std::mem::take(&mut inst.services);
        let mut services = Vec::with_capacity(hb.services.len());
        rebuild_slots(&mut services, index, hb, floor, now);
        let mut services_changed = old.len() != services.len();
        for slot in &mut services {
            match old.iter().find(|o| o.name == slot.name) {
                Some(prev) => {
                    // Keep the start of an ongoing degradation.
                    if slot.degraded_since.is_some() && prev.degraded_since.is_some() {
                        slot.degraded_since = prev.degraded_since;
                    }
                    health_changed |=
                        reported(prev.status, old_floor) != reported(slot.status, floor);
                }
                None => {
                    services_changed = true;
                    health_changed = true;
                    index.insert(slot.name, key);
                }
            }
        }
        for prev in &old {
            if !services.iter().any(|s| s.name == prev.name) {
                services_changed = true;
                health_changed = true;
                index.remove(prev.name, key);
            }
        }
        let tracked = services.len();
        inst.services = services;
        IngestOutcome::Recorded(IngestChanges {
            new_instance: false,
            services_changed,
            health_changed,
            routing_applied,
            tracked_services: tracked,
        })
    }

    /// True when `hb` (instance `key`) is a beat of a node torn down within the retention
    /// that must not be recorded (see [`HeartbeatAggregator`]).
    fn is_torn_down_beat(&self, hb: &ServiceHeartbeatEvent, key: u128, now: Timestamp) -> bool {
        if self.torn_down.is_empty() || self.instances.contains_key(&key) {
            return false;
        }
        self.torn_down.get(&hb.app_id).is_some_and(|t| {
            !is_stale(t.at, now, self.config.retention)
                && (t.instances.contains(&key)
                    || (hb.status == InstanceHealthStatus::ShuttingDown
                        && !self.nodes.contains_key(&hb.app_id)))
        })
    }

    /// Forgets every instance of node `app_id` (compared case-insensitively) because the
    /// control plane tore it down at `now`, and ignores its late beats for the retention
    /// period (see [`HeartbeatAggregator`]); returns how many instances were dropped.
    pub fn forget_node(&mut self, app_id: &AppId, now: Timestamp) -> usize {
        let ids = self.instances_on(app_id);
        let entry = self
            .torn_down
            .entry(app_id.clone())
            .or_insert_with(|| TornDown {
                at: now,
                instances: Vec::new(),
            });
        entry.at = now;
        entry.instances.extend(ids.iter().map(|id| id.as_u128()));
        for id in &ids {
            forget(
                &mut self.instances,
                &mut self.index,
                &mut self.nodes,
                id.as_u128(),
            );
        }
        ids.len()
    }

    /// The control plane is starting node `app_id` again: its beats count from now on,
    /// whatever instance id they carry (lifts what [`Self::forget_node`] remembered).
    pub fn node_deployed(&mut self, app_id: &AppId) {
        self.torn_down.remove(app_id);
    }

    /// Every tracked instance running `service`, sorted by app-id then instance GUID,
    /// retired ones included (see [`HeartbeatAggregator`]; [`Self::is_retired`] tells
    /// them apart at a given `now`).
    pub fn instances_of(&self, service: &str) -> Vec<ServiceInstance<'_>> {
        let mut out = self.instances_unsorted(service, None);
        out.sort_unstable_by(|a, b| (a.app_id, a.instance_id).cmp(&(b.app_id, b.instance_id)));
        out
    }

    /// True when instance `instance_id` is tracked and retired at `now`: it said it is
    /// shutting down or fell silent, and another instance of its app-id is live.
    pub fn is_retired(&self, instance_id: Uuid, now: Timestamp) -> bool {
        let key = instance_id.as_u128();
        self.instances.get(&key).is_some_and(|inst| {
            is_retired(
                &self.instances,
                &self.nodes,
                key,
                inst,
                now,
                self.config.heartbeat_timeout,
            )
        })
    }

    /// Worst derived status of `service` over its instances at `now` (retired ones left
    /// out), or `None` when no instance runs it.
    pub fn service_status(&self, service: &str, now: Timestamp) -> Option<InstanceHealthStatus> {
        let timeout = self.config.heartbeat_timeout;
        self.instances_unsorted(service, Some(now))
            .iter()
            .map(|si| si.status_at(now, timeout))
            .max()
    }

    /// Worst derived status of `service` over the instances with app-id `app_id` (ASCII
    /// case-insensitive) at `now`, retired ones left out, or `None` when that node has
    /// not reported the service.
    /// What a deploy waits on: "is `auth` healthy on `bannou-auth` yet?".
    pub fn status_on(
        &self,
        service: &str,
        app_id: &str,
        now: Timestamp,
    ) -> Option<InstanceHealthStatus> {
        let timeout = self.config.heartbeat_timeout;
        self.instances_unsorted(service, Some(now))
            .iter()
            .filter(|si| si.app_id.matches(app_id))
            .map(|si| si.status_at(now, timeout))
            .max()
    }

    /// Like [`Self::instances_of`] without the sort (for policies that only aggregate);
    /// with `live_at`, the instances retired at that time are left out.
    pub(crate) fn instances_unsorted(
        &self,
        service: &str,
        live_at: Option<Timestamp>,
    ) -> Vec<ServiceInstance<'_>> {
        let Some(name_id) = self.index.id(service) else {
            return Vec::new();
        };
        let name = self.index.name(name_id);
        let timeout = self.config.heartbeat_timeout;
        self.index
            .members(name_id)
            .filter_map(|id| {
                let inst = self.instances.get(&id)?;
                if let Some(now) = live_at
                    && is_retired(&self.instances, &self.nodes, id, inst, now, timeout)
                {
                    return None;
                }
                let slot = inst.services.iter().find(|s| s.name == name_id)?;
                Some(view(name, id, inst, slot))
            })
            .collect()
    }

    /// Forgets instances that are gone; returns how many were dropped.
    ///
    /// An instance is gone when it has been silent for longer than the retention, or when
    /// it is retired (see [`HeartbeatAggregator`]): it said it is shutting down or has been
    /// silent past the heartbeat timeout, and another instance of its app-id is live (a
    /// restarted container comes back with a new GUID under the same app-id).
    pub fn evict_stale(&mut self, now: Timestamp) -> usize {
        let retention = self.config.retention;
        let timeout = self.config.heartbeat_timeout;
        let gone: Vec<u128> = self
            .instances
            .iter()
            .filter(|(id, inst)| {
                is_stale(inst.last_seen, now, retention)
                    || is_retired(&self.instances, &self.nodes, **id, inst, now, timeout)
            })
            .map(|(id, _)| *id)
            .collect();
        for id in &gone {
            forget(&mut self.instances, &mut self.index, &mut self.nodes, *id);
        }
        self.torn_down
            .retain(|_, t| !is_stale(t.at, now, retention));
        gone.len()
    }

    /// Ids of the instances reporting as node `app_id` (compared case-insensitively, as
    /// upstream compares app-ids), sorted.
    pub fn instances_on(&self, app_id: &AppId) -> Vec<Uuid> {
        let mut ids: Vec<Uuid> = self
            .instances
            .iter()
            .filter(|(_, i)| i.app_id == *app_id)
            .map(|(k, _)| Uuid::from_u128(*k))
            .collect();
        ids.sort_unstable();
        ids
    }

    /// When instance `instance_id` was last heard from, if it is tracked.
    pub fn last_seen_of(&self, instance_id: Uuid) -> Option<Timestamp> {
        self.instances
            .get(&instance_id.as_u128())
            .map(|inst| inst.last_seen)
    }

    /// Forgets one instance at once (e.g. after tearing its node down); true if it was tracked.
    pub fn remove_instance(&mut self, instance_id: Uuid) -> bool {
        forget(
            &mut self.instances,
            &mut self.index,
            &mut self.nodes,
            instance_id.as_u128(),
        )
    }

    /// Instances (not shutting down) whose reported routing version is below `current_version`,
    /// sorted by app-id. Instances that report no version are not listed.
    pub fn lagging_instances(&self, current_version: i64) -> Vec<LaggingInstance> {
        let mut out: Vec<LaggingInstance> = self
            .instances
            .iter()
            .filter(|(_, i)| i.status != InstanceHealthStatus::ShuttingDown)
            .filter_map(|(id, i)| {
                let v = i.routing_version?;
                (v < current_version).then(|| LaggingInstance {
                    instance_id: Uuid::from_u128(*id),
                    app_id: i.app_id.clone(),
                    applied_version: v,
                })
            })
            .collect();
        out.sort_unstable_by(|a, b| (&a.app_id, a.instance_id).cmp(&(&b.app_id, b.instance_id)));
        out
    }

    /// The GetServicesHealth report (docs/COMPATIBILITY.md#health-report, per service per
    /// D4) at `now`.
    ///
    /// Deployed entries come first (sorted by service, app-id, instance), then one
    /// always-healthy entry per control-plane plugin (`control_plane_plugins`, in the given
    /// order, with `appId` = `control_plane_app_id`).
    pub fn report<S: AsRef<str>>(
        &self,
        request: &ServiceHealthRequest,
        control_plane_app_id: &str,
        control_plane_plugins: &[S],
        now: Timestamp,
    ) -> ServiceHealthReport {
        let filter = NameFilter::new(request.service_filter.as_deref());
        let timeout = self.config.heartbeat_timeout;
        let mut healthy = Vec::new();
        let mut unhealthy = Vec::new();

        if request.source != ServiceHealthSource::ControlPlaneOnly {
            for name in self.service_names() {
                if !filter.matches(name) {
                    continue;
                }
                for si in self.instances_of(name) {
                    if self.is_retired(si.instance_id, now) {
                        continue;
                    }
                    let status = si.status_at(now, timeout);
                    let entry = deployed_entry(&si, status);
                    if status == InstanceHealthStatus::Unavailable {
                        unhealthy.push(entry);
                    } else {
                        healthy.push(entry);
                    }
                }
            }
        }
        if request.source != ServiceHealthSource::DeployedOnly {
            for plugin in control_plane_plugins {
                let plugin = plugin.as_ref();
                if filter.matches(plugin) {
                    healthy.push(ServiceHealthEntry {
                        service_id: plugin.to_owned(),
                        app_id: control_plane_app_id.to_owned(),
                        status: InstanceHealthStatus::Healthy,
                        last_seen: now,
                        capacity: None,
                        metadata: None,
                    });
                }
            }
        }

        let total = healthy.len() + unhealthy.len();
        let health_percentage = if total == 0 {
            0.0
        } else {
            healthy.len() as f64 / total as f64 * 100.0
        };
        ServiceHealthReport {
            timestamp: now,
            source: request.source,
            control_plane_app_id: control_plane_app_id.to_owned(),
            total_services: total,
            health_percentage,
            healthy_services: healthy,
            unhealthy_services: unhealthy,
        }
    }
}

/// Drops instance `key` from every map; true if it was tracked.
fn forget(
    instances: &mut FxHashMap<u128, InstanceState>,
    index: &mut ServiceIndex,
    nodes: &mut FxHashMap<AppId, Vec<u128>>,
    key: u128,
) -> bool {
    let Some(inst) = instances.remove(&key) else {
        return false;
    };
    for slot in &inst.services {
        index.remove(slot.name, key);
    }
    if let Some(ids) = nodes.get_mut(&inst.app_id) {
        ids.retain(|id| *id != key);
        if ids.is_empty() {
            nodes.remove(&inst.app_id);
        }
    }
    true
}

/// Moves instance `key` from node `from` to node `to` in the per-node index.
fn move_node(nodes: &mut FxHashMap<AppId, Vec<u128>>, key: u128, from: &AppId, to: &AppId) {
    if let Some(ids) = nodes.get_mut(from) {
        ids.retain(|id| *id != key);
        if ids.is_empty() {
            nodes.remove(from);
        }
    }
    nodes.entry(to.clone()).or_default().push(key);
}

/// True while `inst` neither said it is shutting down nor has been silent past `timeout`.
fn is_live(inst: &InstanceState, now: Timestamp, timeout: Duration) -> bool {
    inst.status != InstanceHealthStatus::ShuttingDown && !is_stale(inst.last_seen, now, timeout)
}

/// The retirement rule (see [`HeartbeatAggregator`]): `inst` (instance `key`) is not live
/// and another instance of its app-id is.
fn is_retired(
    instances: &FxHashMap<u128, InstanceState>,
    nodes: &FxHashMap<AppId, Vec<u128>>,
    key: u128,
    inst: &InstanceState,
    now: Timestamp,
    timeout: Duration,
) -> bool {
    !is_live(inst, now, timeout)
        && nodes.get(&inst.app_id).is_some_and(|ids| {
            ids.iter().any(|id| {
                *id != key
                    && instances
                        .get(id)
                        .is_some_and(|other| is_live(other, now, timeout))
            })
        })
}

/// Forgets the instances of `app_id` other than the live instance `key` that are not
/// live themselves (so retired by it); returns how many.
fn forget_retired_siblings(
    instances: &mut FxHashMap<u128, InstanceState>,
    index: &mut ServiceIndex,
    nodes: &mut FxHashMap<AppId, Vec<u128>>,
    key: u128,
    app_id: &AppId,
    now: Timestamp,
    timeout: Duration,
) -> usize {
    let Some(ids) = nodes.get(app_id) else {
        return 0;
    };
    if ids.len() < 2 {
        return 0;
    }
    let gone: Vec<u128> = ids
        .iter()
        .copied()
        .filter(|id| *id != key)
        .filter(|id| {
            instances
                .get(id)
                .is_some_and(|inst| !is_live(inst, now, timeout))
        })
        .collect();
    for id in &gone {
        forget(instances, index, nodes, *id);
    }
    gone.len()
}

fn view<'a>(
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

fn deployed_entry(si: &ServiceInstance<'_>, status: InstanceHealthStatus) -> ServiceHealthEntry {
    let mut meta = serde_json::Map::new();
    meta.insert(
        "instanceId".to_owned(),
        serde_json::Value::String(si.instance_id.to_string()),
    );
    if !si.issues.is_empty() {
        meta.insert("issues".to_owned(), serde_json::json!(si.issues));
    }
    if let Some(since) = si.degraded_since {
        meta.insert("degradedSince".to_owned(), serde_json::json!(since));
    }
    if let Some(v) = si.routing_version {
        meta.insert(ROUTING_VERSION_KEY.to_owned(), serde_json::json!(v));
    }
    if let Some(n) = si.dropped_heartbeats {
        meta.insert(DROPPED_HEARTBEATS_KEY.to_owned(), serde_json::json!(n));
    }
    ServiceHealthEntry {
        service_id: si.service.to_owned(),
        app_id: si.app_id.as_str().to_owned(),
        status,
        last_seen: si.last_seen,
        capacity: si.capacity.cloned(),
        metadata: Some(serde_json::Value::Object(meta)),
    }
}

/// Fills `out` with the heartbeat's non-infrastructure services, one slot per name (a name
/// listed twice keeps its worst status).
fn rebuild_slots(
    out: &mut Vec<ServiceSlot>,
    index: &mut ServiceIndex,
    hb: &ServiceHeartbeatEvent,
    floor: InstanceHealthStatus,
    now: Timestamp,
) {
    for s in &hb.services {
        if is_infrastructure_service(&s.service_name) {
            continue;
        }
        let name = index.intern(&s.service_name);
        let slot = match out.iter_mut().find(|o| o.name == name) {
            Some(existing) => {
                existing.status = existing.status.max(s.status);
                existing
            }
            None => {
                out.push(ServiceSlot {
                    name,
                    seen: s.service_name.clone(),
                    status: s.status,
                    degraded_since: None,
                });
                let last = out.len() - 1;
                &mut out[last]
            }
        };
        let r = reported(slot.status, floor);
        track_degradation(&mut slot.degraded_since, r, now);
    }
}

/// Small builders shared by the health and restart tests.
#[cfg(test)]
pub(crate) mod test_support {
    use super::*;
    use crate::events::ServiceStatus;

    /// The instant `secs` seconds after a fixed test origin.
    pub(crate) fn t(secs: u64) -> Timestamp {
        Timestamp::from_unix_millis(1_780_000_000_000) + Duration::from_secs(secs)
    }

    /// Builds a heartbeat from instance `n` (GUID derived from `n`) with app-id `app`.
    pub(crate) fn hb(n: u128, app: &str) -> HbBuilder {
        HbBuilder(ServiceHeartbeatEvent {
            event_name: "service.heartbeat".into(),
            event_id: Uuid::from_u128(0xE000 + n),
            timestamp: t(0),
            service_id: Uuid::from_u128(n),
            app_id: AppId::from(app),
            status: InstanceHealthStatus::Healthy,
            services: Vec::new(),
            capacity: None,
            issues: None,
            metadata: None,
        })
    }

    /// Heartbeat builder.
    pub(crate) struct HbBuilder(ServiceHeartbeatEvent);

    impl HbBuilder {
        pub(crate) fn service(mut self, name: &str, status: ServiceHealthStatus) -> Self {
            self.0.services.push(ServiceStatus {
                service_id: Uuid::from_u128(self.0.services.len() as u128 + 1),
                service_name: name.into(),
                status,
                version: None,
                metadata: None,
            });
            self
        }

        pub(crate) fn healthy(self, names: &[&str]) -> Self {
            names
                .iter()
                .fold(self, |b, n| b.service(n, ServiceHealthStatus::Healthy))
        }

        pub(crate) fn status(mut self, status: InstanceHealthStatus) -> Self {
            self.0.status = status;
            self
        }

        pub(crate) fn issue(mut self, issue: &str) -> Self {
            self.0
                .issues
                .get_or_insert_with(Vec::new)
                .push(issue.to_owned());
            self
        }

        pub(crate) fn routing_version(mut self, v: i64) -> Self {
            self.0.metadata = Some(serde_json::json!({ ROUTING_VERSION_KEY: v }));
            self
        }

        pub(crate) fn connections(mut self, current: i64, max: i64) -> Self {
            self.0.capacity = Some(InstanceCapacity {
                max_connections: Some(max),
                current_connections: Some(current),
                ..InstanceCapacity::default()
            });
            self
        }

        pub(crate) fn build(self) -> ServiceHeartbeatEvent {
            self.0
        }
    }

    /// Ingests and unwraps the recorded changes.
    pub(crate) fn feed(
        agg: &mut HeartbeatAggregator,
        hb: HbBuilder,
        now: Timestamp,
    ) -> IngestChanges {
        match agg.ingest(&hb.build(), now) {
            IngestOutcome::Recorded(c) => c,
            other => panic!("heartbeat unexpectedly ignored: {other:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::*;
    use super::*;
    use InstanceHealthStatus as I;
    use ServiceHealthStatus as S;

    fn agg() -> HeartbeatAggregator {
        HeartbeatAggregator::new(HealthConfig::default())
    }

    fn deployed(filter: Option<&str>) -> ServiceHealthRequest {
        ServiceHealthRequest {
            source: ServiceHealthSource::DeployedOnly,
            service_filter: filter.map(str::to_owned),
        }
    }

    const NO_PLUGINS: [&str; 0] = [];

    #[test]
    fn state_is_keyed_per_service_with_the_instance_app_id() {
        let mut a = agg();
        let c = feed(
            &mut a,
            hb(1, "bannou-auth")
                .healthy(&["account", "auth"])
                .service("game-session", S::Degraded),
            t(0),
        );
        assert!(c.new_instance && c.services_changed && c.health_changed);
        assert_eq!(c.tracked_services, 3);
        assert_eq!(a.service_names(), ["account", "auth", "game-session"]);
        let auth = a.instances_of("auth");
        assert_eq!(auth.len(), 1);
        assert_eq!(auth[0].app_id.as_str(), "bannou-auth");
        assert_eq!(auth[0].instance_id, Uuid::from_u128(1));
        assert_eq!(a.service_status("auth", t(1)), Some(I::Healthy));
        assert_eq!(a.service_status("game-session", t(1)), Some(I::Degraded));
        assert_eq!(a.service_status("nope", t(1)), None);
        assert_eq!(
            a.status_on("game-session", "BANNOU-AUTH", t(1)),
            Some(I::Degraded)
        );
        assert_eq!(a.status_on("auth", "other-node", t(1)), None);

        let r = a.report(&deployed(None), "bannou", &NO_PLUGINS, t(1));
        let ids: Vec<_> = r
            .healthy_services
            .iter()
            .map(|e| (e.service_id.as_str(), e.app_id.as_str(), e.status))
            .collect();
        assert_eq!(
            ids,
            [
                ("account", "bannou-auth", I::Healthy),
                ("auth", "bannou-auth", I::Healthy),
                ("game-session", "bannou-auth", I::Degraded),
            ]
        );
    }

    #[test]
    fn worst_instance_wins_and_a_silent_one_turns_unavailable_only_after_the_timeout() {
        let mut a = agg();
        feed(&mut a, hb(1, "node-a").healthy(&["auth"]), t(0));
        feed(&mut a, hb(2, "node-b").service("auth", S::Degraded), t(0));
        assert_eq!(a.service_status("auth", t(10)), Some(I::Degraded));

        // node-b recovers and keeps reporting; node-a goes silent after t(0).
        for s in (30..=300).step_by(30) {
            feed(&mut a, hb(2, "node-b").healthy(&["auth"]), t(s));
            if s <= 90 {
                assert_eq!(a.service_status("auth", t(s)), Some(I::Healthy), "t={s}");
            }
        }
        // Exactly at the timeout it is still fine (spec: unhealthy when age > timeout).
        let at = |s| {
            a.instances_of("auth")
                .iter()
                .map(|i| {
                    (
                        i.app_id.as_str().to_owned(),
                        i.status_at(t(s), a.config().heartbeat_timeout),
                    )
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(at(90)[0], ("node-a".to_owned(), I::Healthy));
        assert_eq!(at(91)[0], ("node-a".to_owned(), I::Unavailable));
        assert_eq!(at(91)[1], ("node-b".to_owned(), I::Healthy));
        assert_eq!(a.service_status("auth", t(91)), Some(I::Unavailable));
    }

    #[test]
    fn degraded_since_survives_repeated_degraded_heartbeats_and_resets_on_healthy() {
        let mut a = agg();
        feed(&mut a, hb(1, "n").healthy(&["auth"]), t(0));
        assert_eq!(a.instances_of("auth")[0].degraded_since, None);

        let c = feed(&mut a, hb(1, "n").service("auth", S::Degraded), t(30));
        assert!(c.health_changed && !c.services_changed);
        for s in [60, 90, 120] {
            let c = feed(&mut a, hb(1, "n").service("auth", S::Degraded), t(s));
            assert!(!c.health_changed);
        }
        let auth = a.instances_of("auth");
        assert_eq!(auth[0].degraded_since, Some(t(30)));
        assert_eq!(auth[0].degraded_for(t(150)), Duration::from_secs(120));

        // Going from degraded to unavailable keeps the start of the bad stretch.
        feed(&mut a, hb(1, "n").service("auth", S::Unavailable), t(150));
        assert_eq!(a.instances_of("auth")[0].degraded_since, Some(t(30)));

        let c = feed(&mut a, hb(1, "n").healthy(&["auth"]), t(180));
        assert!(c.health_changed);
        assert_eq!(a.instances_of("auth")[0].degraded_since, None);

        // Instance-level issues degrade every service and start a new stretch.
        feed(
            &mut a,
            hb(1, "n").healthy(&["auth"]).issue("disk full"),
            t(210),
        );
        let auth = a.instances_of("auth");
        assert_eq!(auth[0].reported_status(), I::Degraded);
        assert_eq!(auth[0].degraded_since, Some(t(210)));
        assert_eq!(auth[0].issues, ["disk full".to_owned()]);
    }

    #[test]
    fn instance_status_counts_for_every_service() {
        let mut a = agg();
        feed(
            &mut a,
            hb(1, "n").healthy(&["auth"]).status(I::Overloaded),
            t(0),
        );
        assert_eq!(a.service_status("auth", t(0)), Some(I::Degraded));
        feed(
            &mut a,
            hb(1, "n").healthy(&["auth"]).status(I::ShuttingDown),
            t(1),
        );
        let auth = a.instances_of("auth");
        assert!(auth[0].is_leaving());
        assert_eq!(
            auth[0].status_at(t(1), Duration::from_secs(90)),
            I::Unavailable
        );
        assert_eq!(a.service_status("auth", t(1)), Some(I::Unavailable));
    }

    #[test]
    fn control_plane_heartbeats_are_ignored_in_any_case() {
        let mut a = agg();
        for app in ["bannou", "BANNOU", "Bannou"] {
            let out = a.ingest(&hb(1, app).healthy(&["auth"]).build(), t(0));
            assert_eq!(out, IngestOutcome::IgnoredControlPlane);
        }
        assert_eq!(a.instance_count(), 0);
        assert!(a.service_names().is_empty());
        // A node whose app-id merely starts with bannou is deployed.
        feed(&mut a, hb(2, "bannou-auth").healthy(&["auth"]), t(0));
        assert_eq!(a.instance_count(), 1);
    }

    #[test]
    fn infrastructure_services_are_never_tracked() {
        let mut a = agg();
        let c = feed(
            &mut a,
            hb(1, "n").healthy(&["State", "MESSAGING", "mesh", "auth"]),
            t(0),
        );
        assert_eq!(c.tracked_services, 1);
        assert_eq!(a.service_names(), ["auth"]);
        assert!(a.instances_of("state").is_empty());

        let c = feed(&mut a, hb(2, "infra").healthy(&["state"]), t(0));
        assert_eq!(c.tracked_services, 0);
        assert!(!c.services_changed);
        assert_eq!(a.instance_count(), 2, "the instance itself is known");
        assert_eq!(a.service_names(), ["auth"]);
    }

    #[test]
    fn changing_the_service_set_moves_the_index_and_keeps_ongoing_degradation() {
        let mut a = agg();
        feed(
            &mut a,
            hb(1, "n")
                .service("auth", S::Degraded)
                .healthy(&["account"]),
            t(0),
        );
        let c = feed(
            &mut a,
            hb(1, "n")
                .healthy(&["game-session"])
                .service("auth", S::Degraded),
            t(30),
        );
        assert!(c.services_changed && c.health_changed && !c.new_instance);
        assert_eq!(a.service_names(), ["auth", "game-session"]);
        assert_eq!(a.instances_of("auth")[0].degraded_since, Some(t(0)));

        // Same set, other order: nothing changes.
        let c = feed(
            &mut a,
            hb(1, "n")
                .service("auth", S::Degraded)
                .healthy(&["game-session"]),
            t(60),
        );
        assert!(!c.services_changed && !c.health_changed);
        assert_eq!(a.instances_of("auth")[0].degraded_since, Some(t(0)));

        // A name listed twice keeps its worst status and is tracked once.
        feed(
            &mut a,
            hb(1, "n")
                .healthy(&["auth"])
                .service("auth", S::Unavailable),
            t(90),
        );
        assert_eq!(a.instances_of("auth").len(), 1);
        assert_eq!(a.service_status("auth", t(90)), Some(I::Unavailable));
    }

    #[test]
    fn instance_fields_follow_the_latest_heartbeat() {
        let mut a = agg();
        feed(
            &mut a,
            hb(1, "old-name")
                .healthy(&["auth"])
                .issue("x")
                .connections(5, 10),
            t(0),
        );
        feed(&mut a, hb(1, "new-name").healthy(&["auth"]), t(40));
        let auth = a.instances_of("auth");
        assert_eq!(auth[0].app_id.as_str(), "new-name");
        assert!(auth[0].issues.is_empty());
        assert_eq!(auth[0].capacity, None);
        assert_eq!((auth[0].first_seen, auth[0].last_seen), (t(0), t(40)));
    }

    #[test]
    fn report_applies_source_and_filter_and_computes_the_percentage() {
        let mut a = agg();
        feed(
            &mut a,
            hb(1, "node-a")
                .healthy(&["auth"])
                .service("account", S::Unavailable)
                .connections(3, 10),
            t(0),
        );
        feed(&mut a, hb(2, "node-b").healthy(&["auth"]), t(0));
        let plugins = ["orchestrator", "auth"];
        let req = |source, filter: Option<&str>| ServiceHealthRequest {
            source,
            service_filter: filter.map(str::to_owned),
        };

        let all = a.report(
            &req(ServiceHealthSource::All, None),
            "bannou",
            &plugins,
            t(5),
        );
        assert_eq!(all.total_services, 5);
        assert_eq!(all.healthy_services.len(), 4);
        assert_eq!(all.unhealthy_services.len(), 1);
        assert_eq!(all.unhealthy_services[0].service_id, "account");
        assert!((all.health_percentage - 80.0).abs() < 1e-9);
        let cp = &all.healthy_services[2];
        assert_eq!(
            (cp.service_id.as_str(), cp.app_id.as_str()),
            ("orchestrator", "bannou")
        );
        assert_eq!((cp.last_seen, cp.status), (t(5), I::Healthy));

        let cp_only = a.report(
            &req(ServiceHealthSource::ControlPlaneOnly, None),
            "bannou",
            &plugins,
            t(5),
        );
        assert_eq!(cp_only.total_services, 2);
        assert!(
            cp_only
                .healthy_services
                .iter()
                .all(|e| e.app_id == "bannou")
        );

        let filtered = a.report(
            &req(ServiceHealthSource::All, Some("AUT")),
            "bannou",
            &plugins,
            t(5),
        );
        let names: Vec<_> = filtered
            .healthy_services
            .iter()
            .map(|e| (e.service_id.as_str(), e.app_id.as_str()))
            .collect();
        assert_eq!(
            names,
            [("auth", "node-a"), ("auth", "node-b"), ("auth", "bannou")]
        );
        assert_eq!(filtered.total_services, 3);
        assert!((filtered.health_percentage - 100.0).abs() < 1e-9);

        // Everything silent past the timeout is unhealthy, nothing is lost.
        let late = a.report(
            &req(ServiceHealthSource::DeployedOnly, Some("")),
            "bannou",
            &plugins,
            t(200),
        );
        assert_eq!(
            (late.healthy_services.len(), late.unhealthy_services.len()),
            (0, 3)
        );
        assert_eq!(late.health_percentage, 0.0);

        let empty = agg().report(&deployed(None), "bannou", &NO_PLUGINS, t(0));
        assert_eq!((empty.total_services, empty.health_percentage), (0, 0.0));
    }

    #[test]
    fn report_uses_upstream_field_names() {
        let mut a = agg();
        feed(
            &mut a,
            hb(7, "node-a")
                .service("auth", S::Degraded)
                .issue("slow db")
                .connections(3, 10)
                .routing_version(4),
            t(0),
        );
        let r = a.report(
            &ServiceHealthRequest::default(),
            "bannou",
            &["orchestrator"],
            t(1),
        );
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["source"], "All");
        assert_eq!(v["controlPlaneAppId"], "bannou");
        assert_eq!(v["totalServices"], 2);
        assert_eq!(v["healthPercentage"], 100.0);
        assert_eq!(v["unhealthyServices"], serde_json::json!([]));
        let e = &v["healthyServices"][0];
        assert_eq!(e["serviceId"], "auth");
        assert_eq!(e["appId"], "node-a");
        assert_eq!(e["status"], "Degraded");
        assert_eq!(e["lastSeen"], t(0).to_string());
        assert_eq!(
            e["capacity"],
            serde_json::json!({"maxConnections": 10, "currentConnections": 3})
        );
        assert_eq!(e["metadata"]["issues"], serde_json::json!(["slow db"]));
        assert_eq!(e["metadata"]["instanceId"], Uuid::from_u128(7).to_string());
        assert_eq!(e["metadata"]["routingVersion"], 4);
        assert_eq!(e["metadata"]["degradedSince"], t(0).to_string());
        let cp = &v["healthyServices"][1];
        assert!(cp.get("capacity").is_none() && cp.get("metadata").is_none());
        assert!(v.get("timestamp").is_some());

        let req: ServiceHealthRequest =
            serde_json::from_str(r#"{"source":"control_plane_only","serviceFilter":"auth"}"#)
                .unwrap();
        assert_eq!(req.source, ServiceHealthSource::ControlPlaneOnly);
        assert_eq!(req.service_filter.as_deref(), Some("auth"));
        let req: ServiceHealthRequest = serde_json::from_str("{}").unwrap();
        assert_eq!(req, ServiceHealthRequest::default());
    }

    #[test]
    fn eviction_forgets_instances_silent_longer_than_the_retention() {
        let config = HealthConfig::default()
            .with_retention(Duration::from_secs(600))
            .unwrap();
        let mut a = HeartbeatAggregator::new(config);
        feed(&mut a, hb(1, "gone").healthy(&["auth"]), t(0));
        feed(&mut a, hb(2, "alive").healthy(&["auth", "account"]), t(0));
        feed(&mut a, hb(2, "alive").healthy(&["auth", "account"]), t(500));

        assert_eq!(
            a.evict_stale(t(600)),
            0,
            "exactly at the retention it is kept"
        );
        assert_eq!(a.evict_stale(t(601)), 1);
        let auth = a.instances_of("auth");
        assert_eq!(auth.len(), 1);
        assert_eq!(auth[0].app_id.as_str(), "alive");

        assert_eq!(a.evict_stale(t(1200)), 1);
        assert_eq!(a.instance_count(), 0);
        assert!(a.service_names().is_empty(), "index emptied too");

        // A returning instance starts over.
        let c = feed(&mut a, hb(1, "gone").healthy(&["auth"]), t(1300));
        assert!(c.new_instance);
        assert_eq!(a.instances_of("auth")[0].first_seen, t(1300));
        assert!(a.remove_instance(Uuid::from_u128(1)));
        assert!(!a.remove_instance(Uuid::from_u128(1)));
        assert!(a.service_names().is_empty());
    }

    #[test]
    fn instances_on_a_node_are_found_by_app_id_in_any_case() {
        let mut a = agg();
        feed(&mut a, hb(3, "Node-A").healthy(&["auth"]), t(0));
        feed(&mut a, hb(1, "node-a").healthy(&["account"]), t(0));
        feed(&mut a, hb(2, "node-b").healthy(&["auth"]), t(0));
        assert_eq!(
            a.instances_on(&AppId::new("NODE-a")),
            vec![Uuid::from_u128(1), Uuid::from_u128(3)]
        );
        assert!(a.instances_on(&AppId::new("node-c")).is_empty());
    }

    #[test]
    fn a_restarted_instance_supersedes_its_ghost() {
        let mut a = agg();
        // Crash: instance 1 of node-a stops at t(0); its replacement (new GUID) starts at t(10).
        feed(&mut a, hb(1, "node-a").healthy(&["auth"]), t(0));
        feed(&mut a, hb(2, "node-a").healthy(&["auth"]), t(10));
        assert_eq!(a.evict_stale(t(60)), 0, "not silent past the timeout yet");
        feed(&mut a, hb(2, "node-a").healthy(&["auth"]), t(70));
        assert!(a.is_retired(Uuid::from_u128(1), t(91)));
        assert!(!a.is_retired(Uuid::from_u128(2), t(91)));
        assert_eq!(
            a.service_status("auth", t(91)),
            Some(I::Healthy),
            "the silent ghost does not outvote its live replacement"
        );
        assert_eq!(a.instances_of("auth").len(), 2, "kept until evicted");
        assert_eq!(a.evict_stale(t(91)), 1);
        assert_eq!(a.service_status("auth", t(91)), Some(I::Healthy));
        assert_eq!(a.instances_of("auth")[0].instance_id, Uuid::from_u128(2));

        // Graceful restart: the goodbye heartbeat is reported until the new one speaks,
        // whose first heartbeat forgets it.
        feed(
            &mut a,
            hb(2, "node-a").healthy(&["auth"]).status(I::ShuttingDown),
            t(100),
        );
        assert_eq!(a.evict_stale(t(101)), 0, "nobody replaced it yet");
        assert_eq!(a.service_status("auth", t(101)), Some(I::Unavailable));
        let c = feed(&mut a, hb(3, "node-a").healthy(&["auth"]), t(105));
        assert!(c.new_instance && c.health_changed);
        assert_eq!(a.instance_count(), 1);
        assert_eq!(a.service_status("auth", t(105)), Some(I::Healthy));

        // Other app-ids are independent: a silent node-b stays (unavailable) until the retention.
        feed(&mut a, hb(4, "node-b").healthy(&["auth"]), t(105));
        assert_eq!(a.evict_stale(t(300)), 0);
        assert_eq!(a.service_status("auth", t(300)), Some(I::Unavailable));
    }

    /// Issue 17, bug 1: a node hosting `account` and `auth` is restarted; its old instance's
    /// goodbye heartbeat (or, after a crash, its last report going stale) kept `account`
    /// unavailable although the new instance of the same node reported it healthy.
    #[test]
    fn a_stopped_or_replaced_instance_never_outvotes_a_live_one_of_its_node() {
        let report_of = |a: &HeartbeatAggregator, now| {
            let r = a.report(&deployed(Some("account")), "bannou", &NO_PLUGINS, now);
            (r.healthy_services.len(), r.unhealthy_services.len())
        };
        // Clean restart: goodbye beat of instance 1, then instance 2's first beat.
        let mut a = agg();
        feed(
            &mut a,
            hb(1, "bannou-auth").healthy(&["account", "auth"]),
            t(0),
        );
        feed(
            &mut a,
            hb(1, "bannou-auth")
                .healthy(&["account", "auth"])
                .status(I::ShuttingDown),
            t(5),
        );
        feed(
            &mut a,
            hb(2, "bannou-auth").healthy(&["account", "auth"]),
            t(6),
        );
        for now in [t(6), t(60), t(95)] {
            assert_eq!(a.service_status("account", now), Some(I::Healthy));
            assert_eq!(a.status_on("account", "BANNOU-AUTH", now), Some(I::Healthy));
            assert_eq!(report_of(&a, now), (1, 0));
            feed(
                &mut a,
                hb(2, "bannou-auth").healthy(&["account", "auth"]),
                now,
            );
        }

        // The goodbye arrives after the new instance's first beat (start-then-stop order):
        // hidden as long as the new instance is live, without waiting for a sweep.
        let mut a = agg();
        feed(
            &mut a,
            hb(1, "bannou-auth").healthy(&["account", "auth"]),
            t(0),
        );
        feed(
            &mut a,
            hb(2, "bannou-auth").healthy(&["account", "auth"]),
            t(1),
        );
        feed(
            &mut a,
            hb(1, "bannou-auth")
                .service("account", S::Unavailable)
                .service("auth", S::Healthy)
                .status(I::ShuttingDown),
            t(2),
        );
        assert_eq!(a.service_status("account", t(2)), Some(I::Healthy));
        assert_eq!(report_of(&a, t(2)), (1, 0));
        assert_eq!(a.evict_stale(t(2)), 1);
        assert_eq!(a.instance_count(), 1);

        // Crash while degraded: the old report counts until it goes silent past the
        // timeout, then the live replacement alone decides, before any sweep.
        let mut a = agg();
        feed(
            &mut a,
            hb(1, "bannou-auth").service("account", S::Degraded),
            t(0),
        );
        feed(&mut a, hb(2, "bannou-auth").healthy(&["account"]), t(10));
        assert_eq!(a.service_status("account", t(10)), Some(I::Degraded));
        feed(&mut a, hb(2, "bannou-auth").healthy(&["account"]), t(80));
        assert_eq!(a.service_status("account", t(91)), Some(I::Healthy));
        assert_eq!(report_of(&a, t(91)), (1, 0));

        // Once the replacement is silent too, nothing is live: the node is unavailable.
        assert_eq!(a.service_status("account", t(171)), Some(I::Unavailable));
        assert!(!a.is_retired(Uuid::from_u128(1), t(171)));
    }

    #[test]
    fn live_replicas_of_one_node_all_count() {
        let mut a = agg();
        feed(&mut a, hb(1, "node-a").healthy(&["auth"]), t(0));
        feed(&mut a, hb(2, "node-a").service("auth", S::Degraded), t(1));
        assert_eq!(a.service_status("auth", t(2)), Some(I::Degraded));
        // A third replica starting forgets no live one.
        feed(&mut a, hb(3, "node-a").healthy(&["auth"]), t(3));
        assert_eq!(a.instance_count(), 3);
        assert_eq!(a.service_status("auth", t(3)), Some(I::Degraded));
        // A replica stopping cleanly while the others live is left out at once.
        feed(
            &mut a,
            hb(2, "node-a")
                .service("auth", S::Degraded)
                .status(I::ShuttingDown),
            t(4),
        );
        assert_eq!(a.service_status("auth", t(4)), Some(I::Healthy));
        // Every replica gone: the last goodbyes are the node's status.
        for n in [1, 3] {
            feed(
                &mut a,
                hb(n, "node-a").healthy(&["auth"]).status(I::ShuttingDown),
                t(5),
            );
        }
        assert_eq!(a.service_status("auth", t(5)), Some(I::Unavailable));
        assert_eq!(a.evict_stale(t(5)), 0);
    }

    #[test]
    fn a_torn_down_node_deployed_again_counts_whatever_instance_id_it_beats_with() {
        let mut a = agg();
        feed(&mut a, hb(1, "bannou-auth").healthy(&["auth"]), t(0));
        a.forget_node(&AppId::from("bannou-auth"), t(1));
        let same_id = hb(1, "bannou-auth").healthy(&["auth"]).build();
        assert_eq!(a.ingest(&same_id, t(2)), IngestOutcome::IgnoredTornDown);
        a.node_deployed(&AppId::from("BANNOU-AUTH"));
        assert!(matches!(
            a.ingest(&same_id, t(3)),
            IngestOutcome::Recorded(_)
        ));
        assert_eq!(a.status_on("auth", "bannou-auth", t(3)), Some(I::Healthy));
    }

    #[test]
    fn a_torn_down_node_leaves_the_report_and_its_late_beats_do_not_bring_it_back() {
        let mut a = agg();
        feed(&mut a, hb(1, "stack-world").healthy(&["actor"]), t(0));
        feed(&mut a, hb(2, "npc-brains").healthy(&["actor"]), t(0));
        assert_eq!(a.forget_node(&AppId::from("Stack-World"), t(1)), 1);
        let report = |a: &HeartbeatAggregator, now| {
            let r = a.report(&deployed(None), "bannou", &[] as &[&str], now);
            let apps = |v: &[ServiceHealthEntry]| -> Vec<String> {
                v.iter().map(|e| e.app_id.clone()).collect()
            };
            (apps(&r.healthy_services), apps(&r.unhealthy_services))
        };
        assert_eq!(report(&a, t(1)), (vec!["npc-brains".to_owned()], vec![]));
        // The forgotten instance's final "shutting down" beat arrives after the teardown,
        // and so does the goodbye of an instance not heard from before.
        for n in [1, 3] {
            let late = hb(n, "stack-world")
                .healthy(&["actor"])
                .status(I::ShuttingDown);
            assert_eq!(
                a.ingest(&late.build(), t(2)),
                IngestOutcome::IgnoredTornDown
            );
        }
        // So does a delayed live beat of the forgotten instance.
        let delayed = hb(1, "stack-world").healthy(&["actor"]).build();
        assert_eq!(a.ingest(&delayed, t(2)), IngestOutcome::IgnoredTornDown);
        assert_eq!(report(&a, t(2)), (vec!["npc-brains".to_owned()], vec![]));
        assert_eq!(
            a.instances_on(&AppId::from("stack-world")),
            Vec::<Uuid>::new()
        );
        // Deployed again: a new instance's live beat is recorded, its goodbye too.
        feed(&mut a, hb(4, "stack-world").healthy(&["actor"]), t(3));
        assert_eq!(a.service_status("actor", t(3)), Some(I::Healthy));
        feed(
            &mut a,
            hb(4, "stack-world")
                .healthy(&["actor"])
                .status(I::ShuttingDown),
            t(4),
        );
        assert_eq!(
            a.status_on("actor", "stack-world", t(4)),
            Some(I::Unavailable)
        );
        // The memory of the teardown lapses with the retention.
        let later = t(1) + a.config().retention + Duration::from_secs(1);
        a.evict_stale(later);
        feed(
            &mut a,
            hb(5, "gone").healthy(&["auth"]).status(I::ShuttingDown),
            later,
        );
        assert_eq!(a.forget_node(&AppId::from("gone"), later), 1);
        let after = later + a.config().retention + Duration::from_secs(1);
        a.evict_stale(after);
        assert!(a.torn_down.is_empty());
        let back = hb(5, "gone").healthy(&["auth"]).status(I::ShuttingDown);
        assert!(matches!(
            a.ingest(&back.build(), after),
            IngestOutcome::Recorded(_)
        ));
    }

    #[test]
    fn lagging_instances_are_those_behind_the_current_version() {
        let mut a = agg();
        feed(
            &mut a,
            hb(1, "b-node").healthy(&["auth"]).routing_version(3),
            t(0),
        );
        feed(
            &mut a,
            hb(2, "a-node").healthy(&["auth"]).routing_version(5),
            t(0),
        );
        feed(
            &mut a,
            hb(3, "c-node").healthy(&["auth"]).routing_version(2),
            t(0),
        );
        feed(&mut a, hb(4, "no-version").healthy(&["auth"]), t(0));
        feed(
            &mut a,
            hb(5, "leaving")
                .healthy(&["auth"])
                .routing_version(1)
                .status(I::ShuttingDown),
            t(0),
        );
        let lag = a.lagging_instances(5);
        assert_eq!(
            lag,
            [
                LaggingInstance {
                    instance_id: Uuid::from_u128(1),
                    app_id: AppId::from("b-node"),
                    applied_version: 3
                },
                LaggingInstance {
                    instance_id: Uuid::from_u128(3),
                    app_id: AppId::from("c-node"),
                    applied_version: 2
                },
            ]
        );
        assert!(a.lagging_instances(2).is_empty());
        // The version follows the latest heartbeat.
        feed(
            &mut a,
            hb(1, "b-node").healthy(&["auth"]).routing_version(5),
            t(1),
        );
        assert_eq!(a.lagging_instances(5).len(), 1);
    }

    #[test]
    fn a_routing_version_is_reported_applied_once_per_new_value() {
        let mut a = agg();
        let beat = |v: Option<i64>| {
            let b = hb(1, "b-node").healthy(&["auth"]);
            match v {
                Some(v) => b.routing_version(v),
                None => b,
            }
        };
        assert_eq!(feed(&mut a, beat(None), t(0)).routing_applied, None);
        assert_eq!(feed(&mut a, beat(Some(3)), t(1)).routing_applied, Some(3));
        // The same version again (fast path) and after a service-set change (slow path).
        assert_eq!(feed(&mut a, beat(Some(3)), t(2)).routing_applied, None);
        let more = hb(1, "b-node")
            .healthy(&["auth", "account"])
            .routing_version(3);
        assert_eq!(feed(&mut a, more, t(3)).routing_applied, None);
        assert_eq!(feed(&mut a, beat(Some(4)), t(4)).routing_applied, Some(4));
        // A new instance's first reported version counts.
        let other = hb(2, "c-node").healthy(&["auth"]).routing_version(4);
        assert_eq!(feed(&mut a, other, t(5)).routing_applied, Some(4));
    }

    #[test]
    fn config_is_validated_and_defaults_follow_spec_19() {
        let d = HealthConfig::default();
        assert_eq!(d.heartbeat_timeout, Duration::from_secs(90));
        assert_eq!(d.degradation_threshold, Duration::from_secs(300));
        assert_eq!(d.retention, Duration::from_secs(900));
        assert_eq!(HealthConfig::from_settings(90, 5), Ok(d));
        assert_eq!(
            HealthConfig::from_settings(0, 5),
            Err(HealthConfigError::TimeoutTooShort(Duration::ZERO))
        );
        assert!(matches!(
            HealthConfig::from_settings(90, 0),
            Err(HealthConfigError::ZeroThreshold(_))
        ));
        let err = d.with_retention(Duration::from_secs(10)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "retention 10s is shorter than the heartbeat timeout 90s"
        );
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;
        use std::collections::{BTreeMap, BTreeSet};

        const NAMES: [&str; 5] = ["auth", "account", "state", "game-session", "Mesh"];

        #[derive(Debug, Clone)]
        struct Step {
            advance_secs: u64,
            instance: u8,
            control_plane: bool,
            services: Vec<(usize, u8)>,
            instance_status: u8,
            issue: bool,
            evict: bool,
        }

        fn step() -> impl Strategy<Value = Step> {
            (
                0u64..150,
                0u8..4,
                prop::bool::weighted(0.1),
                prop::collection::vec((0usize..NAMES.len(), 0u8..3), 0..5),
                0u8..5,
                prop::bool::weighted(0.2),
                prop::bool::weighted(0.2),
            )
                .prop_map(
                    |(
                        advance_secs,
                        instance,
                        control_plane,
                        services,
                        instance_status,
                        issue,
                        evict,
                    )| Step {
                        advance_secs,
                        instance,
                        control_plane,
                        services,
                        instance_status,
                        issue,
                        evict,
                    },
                )
        }

        proptest! {
            #[test]
            fn report_is_consistent(steps in prop::collection::vec(step(), 1..40)) {
                let config = HealthConfig::default()
                    .with_retention(Duration::from_secs(300))
                    .unwrap();
                let timeout = config.heartbeat_timeout;
                let mut a = HeartbeatAggregator::new(config);
                // Model: instance -> (last seen, tracked service names).
                let mut model: BTreeMap<u8, (Timestamp, BTreeSet<String>)> = BTreeMap::new();
                let mut secs = 0;
                for s in steps {
                    secs += s.advance_secs;
                    let now = t(secs);
                    let app = if s.control_plane { "BANNOU".to_owned() } else { format!("node-{}", s.instance) };
                    let mut b = hb(u128::from(s.instance) + 1, &app)
                        .status(I::ALL[usize::from(s.instance_status)]);
                    for (n, st) in &s.services {
                        b = b.service(NAMES[*n], S::ALL[usize::from(*st)]);
                    }
                    if s.issue {
                        b = b.issue("boom");
                    }
                    let out = a.ingest(&b.build(), now);
                    if s.control_plane {
                        prop_assert_eq!(out, IngestOutcome::IgnoredControlPlane);
                    } else {
                        let names: BTreeSet<String> = s
                            .services
                            .iter()
                            .map(|(n, _)| NAMES[*n])
                            .filter(|n| !is_infrastructure_service(n))
                            .map(str::to_owned)
                            .collect();
                        model.insert(s.instance, (now, names));
                    }
                    if s.evict {
                        a.evict_stale(now);
                        model.retain(|_, (seen, _)| now.saturating_since(*seen) <= Duration::from_secs(300));
                    }

                    let r = a.report(&ServiceHealthRequest::default(), "bannou", &["orchestrator"], now);
                    prop_assert_eq!(r.healthy_services.len() + r.unhealthy_services.len(), r.total_services);
                    let mut seen = BTreeMap::new();
                    for (e, healthy) in r
                        .healthy_services
                        .iter()
                        .map(|e| (e, true))
                        .chain(r.unhealthy_services.iter().map(|e| (e, false)))
                    {
                        if e.app_id == "bannou" {
                            prop_assert_eq!(e.service_id.as_str(), "orchestrator");
                            continue;
                        }
                        let id = e.metadata.as_ref().unwrap()["instanceId"].as_str().unwrap().to_owned();
                        *seen.entry((e.service_id.clone(), id)).or_insert(0) += 1;
                        prop_assert_eq!(healthy, e.status != I::Unavailable);
                        if now.saturating_since(e.last_seen) > timeout {
                            prop_assert!(!healthy, "silent entry reported healthy: {:?}", e);
                        }
                    }
                    let expected: BTreeMap<(String, String), i32> = model
                        .iter()
                        .flat_map(|(i, (_, names))| {
                            let id = Uuid::from_u128(u128::from(*i) + 1).to_string();
                            names.iter().map(move |n| ((n.clone(), id.clone()), 1))
                        })
                        .collect();
                    prop_assert_eq!(seen, expected);
                    for (i, (last, _)) in &model {
                        let id = Uuid::from_u128(u128::from(*i) + 1);
                        for name in a.service_names() {
                            for si in a.instances_of(name).iter().filter(|si| si.instance_id == id) {
                                prop_assert_eq!(si.last_seen, *last);
                            }
                        }
                    }
                }
            }
        }

        /// One heartbeat of an instance of `node-a` (all report `auth`), after a pause.
        fn node_beat() -> impl Strategy<Value = (u64, u8, u8, u8, bool)> {
            (0u64..30, 0u8..4, 0u8..3, 0u8..5, prop::bool::weighted(0.2))
        }

        proptest! {
            /// The retirement rule against a model: while an instance of the node is live
            /// (heard within the timeout, not shutting down), the service's status is the
            /// worst over the live instances alone; with none live it is unavailable.
            #[test]
            fn only_live_instances_of_a_node_count_while_there_are_any(
                steps in prop::collection::vec(node_beat(), 1..25),
            ) {
                // At most 25 x 30 s: nothing reaches the retention, so nothing is forgotten
                // that the model would still need.
                let config = HealthConfig::default();
                let timeout = config.heartbeat_timeout;
                let mut a = HeartbeatAggregator::new(config);
                // Model: instance -> (last seen, instance status, reported status).
                let mut model: BTreeMap<u8, (Timestamp, I, I)> = BTreeMap::new();
                let mut secs = 0;
                for (advance, instance, service_status, instance_status, evict) in steps {
                    secs += advance;
                    let now = t(secs);
                    let status = I::ALL[usize::from(instance_status)];
                    let service = S::ALL[usize::from(service_status)];
                    feed(
                        &mut a,
                        hb(u128::from(instance) + 1, "node-a")
                            .service("auth", service)
                            .status(status),
                        now,
                    );
                    model.insert(
                        instance,
                        (now, status, reported(service, instance_floor(status, false))),
                    );
                    if evict {
                        a.evict_stale(now);
                    }
                    for later in [now, now + timeout, now + timeout + Duration::from_secs(1)] {
                        let live: Vec<I> = model
                            .values()
                            .filter(|(seen, st, _)| {
                                *st != I::ShuttingDown && !is_stale(*seen, later, timeout)
                            })
                            .map(|(_, _, reported)| *reported)
                            .collect();
                        let expected = live.into_iter().max().unwrap_or(I::Unavailable);
                        prop_assert_eq!(a.service_status("auth", later), Some(expected));
                        prop_assert_eq!(a.status_on("auth", "NODE-A", later), Some(expected));
                    }
                }
            }
        }
    }
}

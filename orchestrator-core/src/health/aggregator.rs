//! The heartbeat aggregator: applies heartbeats to per-instance state and answers
//! status queries at a given `now`.
//!
//! Invariants: the service index and the per-node index list exactly the tracked
//! instances; a retired instance counts in no status.

use std::time::Duration;

use rustc_hash::FxHashMap;
use uuid::Uuid;

use super::config::HealthConfig;
use super::index::ServiceIndex;
use super::instance::{
    InstanceState, LaggingInstance, ServiceInstance, ServiceSlot, dropped_heartbeats_of,
    instance_floor, is_live, is_stale, reported, routing_version_of, track_degradation, view,
};
use super::is_infrastructure_service;
use crate::events::{InstanceHealthStatus, ServiceHeartbeatEvent};
use crate::names::AppId;
use crate::time::Timestamp;

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
    pub(super) torn_down: FxHashMap<AppId, TornDown>,
}

/// A node forgotten by [`HeartbeatAggregator::forget_node`]: when, and its instances then.
#[derive(Debug, Clone)]
pub(super) struct TornDown {
    at: Timestamp,
    instances: Vec<u128>,
    /// Being stopped (see [`HeartbeatAggregator::node_stopping`]): every beat is ignored.
    stopping: bool,
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
                    acked_version: None,
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
            t.stopping
                || (!is_stale(t.at, now, self.config.retention)
                    && (t.instances.contains(&key)
                        || (hb.status == InstanceHealthStatus::ShuttingDown
                            && !self.nodes.contains_key(&hb.app_id))))
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
                stopping: false,
            });
        entry.at = now;
        entry.stopping = false;
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

    /// The control plane is about to stop node `app_id`: forgets its instances as
    /// [`Self::forget_node`] does, and until [`Self::forget_node`] (it stopped) or
    /// [`Self::node_deployed`] (it did not, or starts again) ignores every beat of the
    /// node, a new instance's included, so that it claims no route while its routes move
    /// away. Returns how many instances were dropped.
    pub fn node_stopping(&mut self, app_id: &AppId, now: Timestamp) -> usize {
        let dropped = self.forget_node(app_id, now);
        if let Some(entry) = self.torn_down.get_mut(app_id) {
            entry.stopping = true;
        }
        dropped
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

    /// Records that instance `instance_id` of node `app_id` acknowledged applying mappings
    /// `version` on the bus (D58 (docs/DECISIONS.md#d58)); true when that raised what the
    /// instance is known to have applied. An instance not tracked yet (no heartbeat heard)
    /// or tracked under another app-id is ignored: it is no consumer the control plane
    /// waits for until its heartbeats make it one.
    pub fn acknowledge_mappings(
        &mut self,
        app_id: &AppId,
        instance_id: Uuid,
        version: i64,
    ) -> bool {
        let Some(inst) = self.instances.get_mut(&instance_id.as_u128()) else {
            return false;
        };
        if inst.app_id != *app_id || applied_version(inst).is_some_and(|v| v >= version) {
            return false;
        }
        inst.acked_version = Some(version);
        true
    }

    /// Per live node (an instance heard within the heartbeat timeout at `now`, not shutting
    /// down, not retired), sorted by app-id: the mappings version it applied, the lowest over
    /// its live instances of the highest each reported in a heartbeat or acknowledged on the
    /// bus; `None` when no live instance of it ever reported one (upstream's nodes). A node
    /// that is no longer live is not listed.
    pub fn applied_mappings(&self, now: Timestamp) -> Vec<(AppId, Option<i64>)> {
        let timeout = self.config.heartbeat_timeout;
        let mut out: Vec<(AppId, Option<i64>)> = Vec::new();
        for (app_id, ids) in &self.nodes {
            let mut node: Option<Option<i64>> = None;
            for inst in ids.iter().filter_map(|id| self.instances.get(id)) {
                if !is_live(inst, now, timeout) {
                    continue;
                }
                let v = applied_version(inst);
                node = Some(match (node.flatten(), v) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                });
            }
            if let Some(v) = node {
                out.push((app_id.clone(), v));
            }
        }
        out.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        out
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
}

/// What `inst` is known to have applied: the higher of its heartbeats' report and its
/// bus acknowledgements.
fn applied_version(inst: &InstanceState) -> Option<i64> {
    inst.routing_version.max(inst.acked_version)
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

//! The orchestrator's authoritative routing table: service -> [`Route`]
//! (docs/COMPATIBILITY.md#routing-records, docs/COMPATIBILITY.md#routing-operations,
//! docs/COMPATIBILITY.md#heartbeat-consumption).
//!
//! Pure and single-owner: operations take `now` and return what changed. The table holds
//! only explicit routes; a service without one resolves to the default app-id. A service
//! may also carry a weighted split of its calls ([`WeightedTargets`], D63
//! (docs/DECISIONS.md#d63)) beside its route, which stays its primary app-id.

use std::collections::BTreeMap;
use std::hash::BuildHasher;
use std::time::Duration;

use orchestrator_core::events::{InstanceHealthStatus, ServiceHealthStatus, ServiceHeartbeatEvent};
use orchestrator_core::names::{AppId, ServiceName};
use orchestrator_core::records::RoutingRecord;
use orchestrator_core::time::Timestamp;
use rustc_hash::{FxBuildHasher, FxHashMap};

use crate::weights::WeightedTargets;

/// Services every node handles locally; never routed
/// (docs/COMPATIBILITY.md#infrastructure-services), compared case-insensitively.
pub const INFRASTRUCTURE_SERVICES: [&str; 3] = ["state", "messaging", "mesh"];

/// The service that always resolves to the control plane
/// (docs/COMPATIBILITY.md#mappings-consumers).
pub const ORCHESTRATOR_SERVICE: &str = "orchestrator";

/// `DefaultServicePort` (docs/COMPATIBILITY.md#configuration-variables): the port written
/// into routes.
pub const DEFAULT_SERVICE_PORT: u16 = 80;

/// `RoutingTtlSeconds` (docs/COMPATIBILITY.md#configuration-variables): a route not
/// refreshed for this long expires.
pub const DEFAULT_ROUTING_TTL: Duration = Duration::from_secs(300);

/// True for `state`, `messaging` and `mesh` in any case
/// (docs/COMPATIBILITY.md#infrastructure-services).
pub fn is_infrastructure(service: &str) -> bool {
    let s = service.trim();
    INFRASTRUCTURE_SERVICES
        .iter()
        .any(|i| i.eq_ignore_ascii_case(s))
}

/// True for `orchestrator` in any case.
pub fn is_orchestrator(service: &str) -> bool {
    service.trim().eq_ignore_ascii_case(ORCHESTRATOR_SERVICE)
}

/// Whether `name` spells the canonical `key` (cheap when lengths differ, as they mostly do).
fn same_service(name: &str, key: &str) -> bool {
    if name.len() == key.len() {
        name.eq_ignore_ascii_case(key)
    } else {
        name.len() > key.len() && name.trim().eq_ignore_ascii_case(key)
    }
}

/// True when `service` is already canonical (no surrounding space, no ASCII upper case).
/// Looks at the end bytes first: only a name that starts or ends outside ASCII needs the
/// full Unicode trim.
fn is_canonical(service: &str) -> bool {
    let bytes = service.as_bytes();
    let trimmed = match (bytes.first(), bytes.last()) {
        (Some(&first), Some(&last)) if first.is_ascii() && last.is_ascii() => {
            !char::from(first).is_whitespace() && !char::from(last).is_whitespace()
        }
        _ => service.trim().len() == service.len(),
    };
    trimmed && !bytes.iter().any(u8::is_ascii_uppercase)
}

/// True for a canonical key that is never routed: infrastructure or `orchestrator`. Same
/// answer as [`is_infrastructure`] or [`is_orchestrator`] for canonical names, without
/// trimming or case folding.
fn is_reserved_canonical(key: &str) -> bool {
    matches!(key, "state" | "messaging" | "mesh" | ORCHESTRATOR_SERVICE)
}

/// The canonical spelling of a service name used as a table key: trimmed, ASCII lower case.
pub fn canonical_service(service: &str) -> String {
    service.trim().to_ascii_lowercase()
}

/// Why a routing operation was refused. Nothing is changed when one is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoutingError {
    /// `state`, `messaging` or `mesh`: handled locally by every node
    /// (docs/COMPATIBILITY.md#infrastructure-services).
    #[error("service `{0}` is infrastructure and is never routed")]
    Infrastructure(String),
    /// `orchestrator` always resolves to the control plane.
    #[error("service `{0}` always resolves to the control plane and cannot be routed")]
    ControlPlaneService(String),
    /// Empty or whitespace-only service name.
    #[error("service name is blank")]
    BlankService,
    /// Empty or whitespace-only app-id for service `service`.
    #[error("app-id for service `{service}` is blank")]
    BlankAppId {
        /// The service the route was for.
        service: String,
    },
}

/// Where one service goes, with the health its owner last reported.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// Target node.
    pub app_id: AppId,
    /// Host name to reach it (the app-id, as upstream writes it).
    pub host: String,
    /// Port (`DefaultServicePort` unless told otherwise).
    pub port: u16,
    /// Health of the service on that node, when known.
    pub status: Option<ServiceHealthStatus>,
    /// Last write (set or heartbeat refresh); drives [`RoutingTable::expire`].
    pub last_updated: Timestamp,
    /// Load in percent, 0..=100 (clamped; 0 when unknown).
    pub load_percent: u8,
}

impl Route {
    /// A healthy route to `app_id` on `port`, written at `now`
    /// (docs/COMPATIBILITY.md#routing-operations SetServiceRouting).
    pub fn healthy(app_id: AppId, port: u16, now: Timestamp) -> Self {
        Route {
            host: app_id.as_str().to_owned(),
            app_id,
            port,
            status: Some(ServiceHealthStatus::Healthy),
            last_updated: now,
            load_percent: 0,
        }
    }

    /// The store record (`orch:rt:{service}`, PascalCase on the wire).
    pub fn to_record(&self) -> RoutingRecord {
        RoutingRecord {
            app_id: self.app_id.as_str().to_owned(),
            host: self.host.clone(),
            port: self.port,
            status: self.status,
            last_updated: self.last_updated,
            load_percent: i32::from(self.load_percent),
        }
    }

    /// A route from a store record; load is clamped to 0..=100, a blank host becomes the
    /// app-id. Returns `None` for a blank app-id.
    pub fn from_record(record: &RoutingRecord) -> Option<Self> {
        let app_id = record.app_id.trim();
        if app_id.is_empty() {
            return None;
        }
        let host = if record.host.trim().is_empty() {
            app_id.to_owned()
        } else {
            record.host.clone()
        };
        Some(Route {
            app_id: AppId::new(app_id),
            host,
            port: record.port,
            status: record.status,
            last_updated: record.last_updated,
            load_percent: u8::try_from(record.load_percent.clamp(0, 100)).unwrap_or(0),
        })
    }
}

/// What [`RoutingTable::set_route`] did to the service -> app-id mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteChange {
    /// The service had no route (it resolved to the default) and now has one.
    Added,
    /// The service moved from `from` to the new app-id.
    Moved {
        /// Previous app-id.
        from: AppId,
    },
    /// Same app-id as before; only the record was rewritten (TTL refresh).
    Unchanged,
    /// The target was the default app-id, so the route was removed; `from` is the app-id
    /// it had, if any. See [`RoutingTable::restore_default`].
    RestoredDefault {
        /// App-id of the removed route, `None` when it already resolved to the default.
        from: Option<AppId>,
    },
}

impl RouteChange {
    /// True when the service -> app-id mapping changed (a broadcast is due).
    pub fn is_change(&self) -> bool {
        match self {
            RouteChange::Added | RouteChange::Moved { .. } => true,
            RouteChange::Unchanged => false,
            RouteChange::RestoredDefault { from } => from.is_some(),
        }
    }
}

/// What one heartbeat did to the table (docs/COMPATIBILITY.md#heartbeat-consumption).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeartbeatRouting {
    /// Services nobody owned that now route to the heartbeat's app-id (a broadcast is due).
    pub created: Vec<String>,
    /// How many services already routed to the heartbeat's app-id had their status and load
    /// refreshed (a count: refreshing is the hot path and must not allocate).
    pub refreshed: usize,
    /// How many listed services another app-id owns (replicas of a node refresh nothing:
    /// the first instance to report a service owns its route). A count, like `refreshed`.
    pub refused: usize,
    /// True when the heartbeat was ignored as a whole (control plane or blank app-id).
    pub ignored: bool,
}

impl HeartbeatRouting {
    /// True when a route was created, i.e. the mappings changed.
    pub fn changed(&self) -> bool {
        !self.created.is_empty()
    }
}

/// `loadPercent` of docs/COMPATIBILITY.md#heartbeat-consumption step c: `trunc(current /
/// max * 100)`, 0 when either is unknown or `max` is not positive; clamped to 0..=100
/// (upstream leaves overload above 100).
pub fn load_percent(heartbeat: &ServiceHeartbeatEvent) -> u8 {
    let Some(cap) = &heartbeat.capacity else {
        return 0;
    };
    match (cap.max_connections, cap.current_connections) {
        (Some(max), Some(cur)) if max > 0 => {
            let pct = i128::from(cur) * 100 / i128::from(max);
            u8::try_from(pct.clamp(0, 100)).unwrap_or(0)
        }
        _ => 0,
    }
}

/// Service -> route, plus the default app-id for services without one.
///
/// Invariants: no infrastructure service and no `orchestrator` key; keys are canonical
/// (trimmed, lower case); explicit routes to the default app-id are never written by
/// [`set_route`](Self::set_route) (they are removed instead), so only routes away from the
/// default are kept (D19 (docs/DECISIONS.md#d19)).
///
/// Routes are hashed (Fx: keys are short service names, and every heartbeat looks up each
/// of its services); the operations that promise an order sort their answers.
///
/// Replicas: most instances report services another instance owns, beat after beat, and
/// their beats change nothing. The table remembers, per sender, the service list of its
/// last beat when every service in it was refused; while no route is added, removed or
/// moved (any such change forgets everything remembered), the same list from the same
/// sender is refused again without looking at each service. Not part of equality.
///
/// Weighted splits (D63 (docs/DECISIONS.md#d63)) are kept apart from the routes: the
/// route (or the default app-id) stays the service's primary, which consumers that do not
/// know weights use; heartbeats and TTL expiry never touch a split; releasing an app-id
/// drops every split that names it, so nothing weighs calls towards a node that stops.
#[derive(Debug, Clone)]
pub struct RoutingTable {
    routes: FxHashMap<String, Route>,
    weights: FxHashMap<String, WeightedTargets>,
    default_app_id: AppId,
    control_plane: AppId,
    replicas: FxHashMap<String, RefusedBeat>,
}

/// A sender's last beat whose every service was refused: its service names, in order
/// (shared with the heartbeat: a node sending the same names again is recognised by
/// pointer before any text is compared).
#[derive(Debug, Clone)]
struct RefusedBeat {
    services: Box<[ServiceName]>,
    refused: usize,
}

impl RefusedBeat {
    fn matches(&self, services: &[orchestrator_core::events::ServiceStatus]) -> bool {
        self.services.len() == services.len()
            && self
                .services
                .iter()
                .zip(services)
                .all(|(a, b)| a.ptr_eq(&b.service_name) || *a == b.service_name)
    }
}

/// `s.trim()`, without the Unicode scan when both ends are visible ASCII (every app-id
/// we make; checked per heartbeat).
fn trimmed(s: &str) -> &str {
    match (s.as_bytes().first(), s.as_bytes().last()) {
        (Some(a), Some(b)) if a.is_ascii_graphic() && b.is_ascii_graphic() => s,
        _ => s.trim(),
    }
}

/// Senders remembered at most; past it the memory starts over (a cache, never a limit).
const REFUSED_BEATS_MAX: usize = 16_384;

impl PartialEq for RoutingTable {
    fn eq(&self, other: &Self) -> bool {
        self.routes == other.routes
            && self.weights == other.weights
            && self.default_app_id == other.default_app_id
            && self.control_plane == other.control_plane
    }
}

impl Default for RoutingTable {
    fn default() -> Self {
        RoutingTable::new(AppId::control_plane())
    }
}

// === impl RoutingTable ===

impl RoutingTable {
    /// An empty table whose unrouted services go to `default_app_id` (`bannou` normally;
    /// a blank one falls back to `bannou`).
    pub fn new(default_app_id: AppId) -> Self {
        let default_app_id = if default_app_id.as_str().trim().is_empty() {
            AppId::control_plane()
        } else {
            default_app_id
        };
        RoutingTable {
            routes: FxHashMap::default(),
            weights: FxHashMap::default(),
            default_app_id,
            control_plane: AppId::control_plane(),
            replicas: FxHashMap::default(),
        }
    }

    /// Where services without a route go.
    pub fn default_app_id(&self) -> &AppId {
        &self.default_app_id
    }

    /// The app-id `service` resolves to: the control plane for `orchestrator`, its route's
    /// app-id, else the default (also for infrastructure, which nodes handle locally anyway).
    pub fn resolve(&self, service: &str) -> &AppId {
        if is_orchestrator(service) {
            return &self.control_plane;
        }
        self.route(service)
            .map(|r| &r.app_id)
            .unwrap_or(&self.default_app_id)
    }

    /// The explicit route of `service` (any case), if it has one.
    pub fn route(&self, service: &str) -> Option<&Route> {
        let key = service.trim();
        self.routes
            .get(key)
            .or_else(|| self.routes.get(&key.to_ascii_lowercase()))
    }

    /// Every explicit route, by canonical service name (sorted).
    pub fn routes(&self) -> impl Iterator<Item = (&str, &Route)> {
        let mut routes: Vec<(&str, &Route)> =
            self.routes.iter().map(|(k, v)| (k.as_str(), v)).collect();
        routes.sort_unstable_by_key(|(k, _)| *k);
        routes.into_iter()
    }

    /// Number of explicit routes.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// True without explicit routes (everything resolves to the default).
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// Service -> app-id of every route away from the default app-id.
    pub fn mappings(&self) -> BTreeMap<String, AppId> {
        self.routes
            .iter()
            .filter(|(_, r)| r.app_id != self.default_app_id)
            .map(|(k, r)| (k.clone(), r.app_id.clone()))
            .collect()
    }

    /// The weighted split of `service` (any case), if it has one.
    pub fn weights(&self, service: &str) -> Option<&WeightedTargets> {
        let key = service.trim();
        self.weights
            .get(key)
            .or_else(|| self.weights.get(&key.to_ascii_lowercase()))
    }

    /// Service -> weighted split, for every service that has one.
    pub fn weighted(&self) -> BTreeMap<String, WeightedTargets> {
        self.weights
            .iter()
            .map(|(k, w)| (k.clone(), w.clone()))
            .collect()
    }

    /// Splits the calls of `service` between app-ids by `weights` (D63
    /// (docs/DECISIONS.md#d63)); its route, or the default, stays the primary. Returns
    /// whether the split changed (a broadcast is due).
    pub fn set_weights(
        &mut self,
        service: &str,
        weights: WeightedTargets,
    ) -> Result<bool, RoutingError> {
        let key = routable_key(service)?;
        let changed = self.weights.get(&key) != Some(&weights);
        self.weights.insert(key, weights);
        Ok(changed)
    }

    /// Removes the weighted split of `service`: every call goes to its primary again.
    /// Returns the split removed (`None`: it had none, nothing changed).
    pub fn clear_weights(&mut self, service: &str) -> Option<WeightedTargets> {
        self.weights.remove(&canonical_service(service))
    }

    /// SetServiceRouting (docs/COMPATIBILITY.md#routing-operations): authoritative route of
    /// `service` to `app_id`, healthy, on `port`, written at `now`. Routing to the default
    /// app-id removes the route instead ([`restore_default`](Self::restore_default)).
    pub fn set_route(
        &mut self,
        service: &str,
        app_id: AppId,
        now: Timestamp,
        port: u16,
    ) -> Result<RouteChange, RoutingError> {
        let key = routable_key(service)?;
        let target = app_id.as_str().trim();
        if target.is_empty() {
            return Err(RoutingError::BlankAppId { service: key });
        }
        let app_id = AppId::new(target);
        self.replicas.clear();
        if app_id == self.default_app_id {
            let from = self.routes.remove(&key).map(|r| r.app_id);
            return Ok(RouteChange::RestoredDefault { from });
        }
        let new = Route::healthy(app_id, port, now);
        let change = match self.routes.insert(key, new.clone()) {
            None => RouteChange::Added,
            Some(old) if old.app_id == new.app_id => RouteChange::Unchanged,
            Some(old) => RouteChange::Moved { from: old.app_id },
        };
        Ok(change)
    }

    /// RestoreServiceRoutingToDefault (docs/COMPATIBILITY.md#routing-operations): removes
    /// the route so `service` falls back to the default app-id (we do not write explicit
    /// default routes). Returns the removed route; `None` when it already resolved to the
    /// default.
    pub fn restore_default(&mut self, service: &str) -> Option<Route> {
        let key = canonical_service(service);
        let removed = self.routes.remove(&key);
        if removed.is_some() {
            self.replicas.clear();
        }
        removed
    }

    /// Returns every service routed to `app_id` (case-insensitive) to the default, as when
    /// its node is torn down, and drops every weighted split that names it (those services
    /// go back to their primary). Returns the services whose route was released, sorted.
    pub fn release_app(&mut self, app_id: &AppId) -> Vec<String> {
        self.weights.retain(|_, w| !w.names(app_id));
        let owned = |r: &Route| r.app_id == *app_id;
        let mut released: Vec<String> = self
            .routes
            .iter()
            .filter(|(_, r)| owned(r))
            .map(|(k, _)| k.clone())
            .collect();
        self.routes.retain(|_, r| !owned(r));
        if !released.is_empty() {
            self.replicas.clear();
        }
        released.sort_unstable();
        released
    }

    /// ResetAllMappingsToDefault (docs/COMPATIBILITY.md#routing-operations): removes every
    /// route and every weighted split. Returns the services that had either, sorted (a
    /// broadcast is due when it is not empty).
    pub fn reset_all(&mut self) -> Vec<String> {
        let mut services: Vec<String> = std::mem::take(&mut self.routes).into_keys().collect();
        services.extend(std::mem::take(&mut self.weights).into_keys());
        self.replicas.clear();
        services.sort_unstable();
        services.dedup();
        services
    }

    /// Applies one heartbeat (docs/COMPATIBILITY.md#heartbeat-consumption): creates routes
    /// for services nobody owns, refreshes status, load and `last_updated` of routes the
    /// sender owns, and never moves a route to another app-id. Heartbeats from the control
    /// plane (`bannou`, any case) or with a blank app-id are ignored entirely;
    /// infrastructure, `orchestrator` and blank service names are skipped. A service listed
    /// twice counts once.
    ///
    /// **Ours:** a `shutting_down` beat (a node's final one,
    /// docs/COMPATIBILITY.md#infrastructure-services) refreshes its own routes but creates
    /// none. Upstream creates them from any beat, so a node torn down right after its
    /// routes were released claimed them back with its final beat and left routes to a node
    /// that no longer runs.
    pub fn apply_heartbeat(
        &mut self,
        heartbeat: &ServiceHeartbeatEvent,
        now: Timestamp,
        port: u16,
    ) -> HeartbeatRouting {
        let sender = trimmed(heartbeat.app_id.as_str());
        if sender.is_empty() || heartbeat.app_id.is_control_plane() {
            return HeartbeatRouting {
                ignored: true,
                ..HeartbeatRouting::default()
            };
        }
        if let Some(beat) = self.replicas.get(sender)
            && beat.matches(&heartbeat.services)
        {
            return HeartbeatRouting {
                refused: beat.refused,
                ..HeartbeatRouting::default()
            };
        }
        let (out, looked_up) = self.apply_services(heartbeat, sender, now, port);
        if out.refused > 0 && out.refused == looked_up {
            if self.replicas.len() >= REFUSED_BEATS_MAX {
                self.replicas.clear();
            }
            let services = heartbeat
                .services
                .iter()
                .map(|s| s.service_name.clone())
                .collect();
            self.replicas.insert(
                sender.to_owned(),
                RefusedBeat {
                    services,
                    refused: out.refused,
                },
            );
        }
        out
    }

    /// [`apply_heartbeat`](Self::apply_heartbeat) service by service; also returns how many
    /// services were looked up in the table (not skipped, not repeated).
    fn apply_services(
        &mut self,
        heartbeat: &ServiceHeartbeatEvent,
        sender: &str,
        now: Timestamp,
        port: u16,
    ) -> (HeartbeatRouting, usize) {
        let mut out = HeartbeatRouting::default();
        let mut looked_up = 0;
        let load = load_percent(heartbeat);
        let may_create = heartbeat.status != InstanceHealthStatus::ShuttingDown;
        // Every heartbeat refreshes the same routes: this path allocates only for names that
        // are not already canonical and for routes it creates.
        // `seen[j]`: hash of entry j's canonical key (0 for skipped entries), so a repeat is
        // found by comparing hashes and only a hash match compares names. Entries past
        // `SEEN` (more services than any node runs) fall back to comparing names.
        const SEEN: usize = 32;
        let mut seen = [0u64; SEEN];
        // The last owner compared with the sender, by the address of its text, and the
        // verdict: a node's routes share one `AppId` (see below), so a replica's beat
        // compares names once instead of once per service. Only compared, never read.
        let mut last_owner: Option<(*const str, bool)> = None;
        // One `AppId` for every route this beat creates (clones share the text).
        let mut sender_id: Option<AppId> = None;
        for (i, entry) in heartbeat.services.iter().enumerate() {
            let owned;
            let key: &str = if is_canonical(&entry.service_name) {
                &entry.service_name
            } else {
                owned = canonical_service(&entry.service_name);
                &owned
            };
            if key.is_empty() || is_reserved_canonical(key) {
                continue;
            }
            let hash = FxBuildHasher.hash_one(key);
            let earlier = &heartbeat.services[..i];
            let listed_before = if i < SEEN {
                seen[..i]
                    .iter()
                    .zip(earlier)
                    .any(|(&h, e)| h == hash && same_service(&e.service_name, key))
            } else {
                earlier.iter().any(|e| same_service(&e.service_name, key))
            };
            if listed_before {
                continue;
            }
            if i < SEEN {
                seen[i] = hash;
            }
            looked_up += 1;
            match self.routes.get_mut(key) {
                Some(route) => {
                    let owner: *const str = route.app_id.as_str();
                    let owned = match last_owner {
                        Some((prev, verdict)) if std::ptr::eq(prev, owner) => verdict,
                        _ => {
                            let verdict = route.app_id.matches(sender);
                            last_owner = Some((owner, verdict));
                            verdict
                        }
                    };
                    if owned {
                        route.status = Some(entry.status);
                        route.load_percent = load;
                        route.last_updated = now;
                        out.refreshed += 1;
                    } else {
                        out.refused += 1;
                    }
                }
                None if !may_create => {}
                None => {
                    let route = Route {
                        host: sender.to_owned(),
                        app_id: sender_id.get_or_insert_with(|| AppId::new(sender)).clone(),
                        port,
                        status: Some(entry.status),
                        last_updated: now,
                        load_percent: load,
                    };
                    self.routes.insert(key.to_owned(), route);
                    self.replicas.clear();
                    out.created.push(key.to_owned());
                }
            }
        }
        (out, looked_up)
    }

    /// Drops routes not written within `ttl` before `now` (a route written at `t` is gone
    /// from `t + ttl` on, like the store's TTL). Returns the dropped services, sorted.
    pub fn expire(&mut self, now: Timestamp, ttl: Duration) -> Vec<String> {
        let mut expired: Vec<String> = self
            .routes
            .iter()
            .filter(|(_, r)| now.saturating_since(r.last_updated) >= ttl)
            .map(|(k, _)| k.clone())
            .collect();
        for k in &expired {
            self.routes.remove(k);
        }
        if !expired.is_empty() {
            self.replicas.clear();
        }
        expired.sort_unstable();
        expired
    }

    /// Every route as a store record, keyed by canonical service name.
    pub fn to_records(&self) -> BTreeMap<String, RoutingRecord> {
        self.routes
            .iter()
            .map(|(k, r)| (k.clone(), r.to_record()))
            .collect()
    }

    /// A table from store records. Keys starting with `_` (the `_index` record), blank keys,
    /// infrastructure, `orchestrator` and records with a blank app-id are skipped and their
    /// keys returned, so a stray record never blocks a load. Routes to the default app-id
    /// are kept as read (they resolve the same way and expire with their TTL).
    pub fn from_records<I>(default_app_id: AppId, records: I) -> (RoutingTable, Vec<String>)
    where
        I: IntoIterator<Item = (String, RoutingRecord)>,
    {
        let mut table = RoutingTable::new(default_app_id);
        let mut skipped = Vec::new();
        for (service, record) in records {
            let route = if service.trim_start().starts_with('_') {
                None
            } else {
                routable_key(&service)
                    .ok()
                    .and_then(|k| Route::from_record(&record).map(|r| (k, r)))
            };
            match route {
                Some((k, r)) => {
                    table.routes.insert(k, r);
                }
                None => skipped.push(service),
            }
        }
        (table, skipped)
    }
}

/// Canonical key of a service that may carry a route, or why it may not.
fn routable_key(service: &str) -> Result<String, RoutingError> {
    let key = canonical_service(service);
    if key.is_empty() {
        Err(RoutingError::BlankService)
    } else if is_infrastructure(&key) {
        Err(RoutingError::Infrastructure(key))
    } else if is_orchestrator(&key) {
        Err(RoutingError::ControlPlaneService(key))
    } else {
        Ok(key)
    }
}

#[cfg(test)]
pub(crate) mod tests;

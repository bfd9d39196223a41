//! Versioned service -> app-id snapshots, their wire form and diffs
//! (docs/COMPATIBILITY.md#mappings-broadcast, docs/COMPATIBILITY.md#mappings-consumers,
//! docs/COMPATIBILITY.md#published-events).
//!
//! A [`MappingsSnapshot`] holds only services routed away from the default app-id, plus
//! the weighted splits (D63 (docs/DECISIONS.md#d63)) in the additive `weightedMappings`
//! field, which leaves `mappings` naming each split service's primary; the consumer side
//! ([`MappingsSnapshot::from_event`], [`MappingsSnapshot::from_json`]) is lenient.

use std::collections::BTreeMap;

use orchestrator_core::events::{FullServiceMappingsEvent, WeightedTarget};
use orchestrator_core::names::AppId;
use orchestrator_core::time::Timestamp;
use serde::Deserialize;
use uuid::Uuid;

use crate::table::{RoutingTable, canonical_service, is_infrastructure, is_orchestrator};
use crate::weights::WeightedTargets;

/// `eventName` of a [`FullServiceMappingsEvent`].
pub const MAPPINGS_EVENT_NAME: &str = "orchestrator.full_service_mappings";

/// One version of the whole routing table as every node sees it.
///
/// Invariants when built by this crate: keys are canonical service names, never
/// infrastructure or `orchestrator`, and no value equals `default_app_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappingsSnapshot {
    /// Monotonic table version (the store's `mappings-version` counter).
    pub version: i64,
    /// Services routed away from the default, by canonical name.
    pub mappings: BTreeMap<String, AppId>,
    /// Where every other service goes (`bannou`).
    pub default_app_id: AppId,
    /// Services whose calls are split between app-ids, by canonical name (D63). Their
    /// entry in `mappings` (or the default) stays their primary.
    pub weights: BTreeMap<String, WeightedTargets>,
}

/// Why a mappings payload could not be read at all (individual bad entries are skipped).
#[derive(Debug, thiserror::Error)]
pub enum MappingsParseError {
    /// Not JSON, or `version` / `mappings` missing or of the wrong type.
    #[error("invalid full service mappings payload: {0}")]
    Json(#[from] serde_json::Error),
}

/// The consumer's view of the wire event: nullable where upstream may send null.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LenientEvent {
    #[serde(default)]
    mappings: Option<BTreeMap<String, Option<String>>>,
    #[serde(default)]
    default_app_id: Option<String>,
    version: i64,
    /// Read by hand, entry by entry: a malformed split is skipped, never the payload.
    #[serde(default)]
    weighted_mappings: Option<serde_json::Value>,
}

/// Whether a service key may carry a mapping or a split on the consumer side
/// (docs/COMPATIBILITY.md#mappings-consumers): not blank, not `_`-prefixed, neither
/// infrastructure nor `orchestrator`. `key` is canonical.
fn consumable_key(key: &str) -> bool {
    !(key.is_empty() || key.starts_with('_') || is_infrastructure(key) || is_orchestrator(key))
}

// === impl MappingsSnapshot ===

impl MappingsSnapshot {
    /// The snapshot of `table` at `version`: every route away from the default app-id.
    pub fn from_table(table: &RoutingTable, version: i64) -> Self {
        MappingsSnapshot {
            version,
            mappings: table.mappings(),
            default_app_id: table.default_app_id().clone(),
            weights: table.weighted(),
        }
    }

    /// This snapshot with the splits `weights` (service, split) added, keys canonicalised;
    /// blank, `_`-prefixed, infrastructure and `orchestrator` keys are skipped.
    pub fn with_weights<I>(mut self, weights: I) -> Self
    where
        I: IntoIterator<Item = (String, WeightedTargets)>,
    {
        for (service, split) in weights {
            let key = canonical_service(&service);
            if consumable_key(&key) {
                self.weights.insert(key, split);
            }
        }
        self
    }

    /// A normalised snapshot from raw entries, applying the consumer rules of
    /// docs/COMPATIBILITY.md#mappings-consumers: keys starting with `_`, blank keys and
    /// blank values are skipped; a blank or missing default becomes `bannou`.
    /// Infrastructure and `orchestrator` entries (never consulted) and entries equal to the
    /// default (same resolution) are dropped too.
    pub fn from_entries<'a, I>(version: i64, default_app_id: Option<&str>, entries: I) -> Self
    where
        I: IntoIterator<Item = (&'a str, Option<&'a str>)>,
    {
        let default_app_id = match default_app_id.map(str::trim) {
            Some(d) if !d.is_empty() => AppId::new(d),
            _ => AppId::control_plane(),
        };
        let mut mappings = BTreeMap::new();
        for (key, value) in entries {
            let key = canonical_service(key);
            let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) else {
                continue;
            };
            if !consumable_key(&key) || default_app_id.matches(value) {
                continue;
            }
            mappings.insert(key, AppId::new(value));
        }
        MappingsSnapshot {
            version,
            mappings,
            default_app_id,
            weights: BTreeMap::new(),
        }
    }

    /// The consumer side of a typed event (docs/COMPATIBILITY.md#mappings-consumers rules,
    /// see [`from_entries`](Self::from_entries)); an invalid split is skipped (its service
    /// goes to its primary).
    pub fn from_event(event: &FullServiceMappingsEvent) -> Self {
        Self::from_entries(
            event.version,
            Some(event.default_app_id.as_str()),
            event
                .mappings
                .iter()
                .map(|(k, v)| (k.as_str(), Some(v.as_str()))),
        )
        .with_weights(event.weighted_mappings.iter().filter_map(|(k, targets)| {
            let split = WeightedTargets::from_wire(targets).ok()?;
            Some((k.clone(), split))
        }))
    }

    /// The consumer side of a raw JSON payload, accepting `null` for `defaultAppId`,
    /// `mappings` and individual values (which the typed event would reject).
    pub fn from_json(payload: &[u8]) -> Result<Self, MappingsParseError> {
        let raw: LenientEvent = serde_json::from_slice(payload)?;
        let mappings = raw.mappings.unwrap_or_default();
        let weights = match raw.weighted_mappings {
            Some(serde_json::Value::Object(entries)) => entries
                .into_iter()
                .filter_map(|(k, v)| {
                    let targets: Vec<WeightedTarget> = serde_json::from_value(v).ok()?;
                    Some((k, WeightedTargets::from_wire(&targets).ok()?))
                })
                .collect(),
            _ => Vec::new(),
        };
        Ok(Self::from_entries(
            raw.version,
            raw.default_app_id.as_deref(),
            mappings.iter().map(|(k, v)| (k.as_str(), v.as_deref())),
        )
        .with_weights(weights))
    }

    /// The wire event (`totalServices` = number of mappings).
    pub fn to_event(
        &self,
        event_id: Uuid,
        timestamp: Timestamp,
        source_instance_id: Uuid,
    ) -> FullServiceMappingsEvent {
        FullServiceMappingsEvent {
            event_name: MAPPINGS_EVENT_NAME.to_owned(),
            event_id,
            timestamp,
            mappings: self
                .mappings
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().to_owned()))
                .collect(),
            default_app_id: self.default_app_id.as_str().to_owned(),
            version: self.version,
            source_instance_id,
            total_services: i64::try_from(self.mappings.len()).unwrap_or(i64::MAX),
            traceparent: None,
            weighted_mappings: self
                .weights
                .iter()
                .map(|(k, w)| (k.clone(), w.to_wire()))
                .collect(),
        }
    }

    /// The app-id `service` resolves to in this snapshot: the control plane for
    /// `orchestrator`, its mapping, else the default (the primary: splits are the
    /// resolver's, per call).
    pub fn resolve(&self, service: &str) -> AppId {
        if is_orchestrator(service) {
            return AppId::control_plane();
        }
        self.mappings
            .get(&canonical_service(service))
            .unwrap_or(&self.default_app_id)
            .clone()
    }

    /// What changed from `self` to `to`.
    pub fn diff(&self, to: &MappingsSnapshot) -> MappingsDiff {
        MappingsDiff::between(self, to)
    }
}

/// What changed between two snapshots' explicit mappings.
///
/// `added` services resolved to the (old) default before, `removed` ones resolve to the
/// (new) default after. Lists are sorted by service name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MappingsDiff {
    /// `(service, from, to)` for services mapped in both with different app-ids.
    pub moved: Vec<(String, AppId, AppId)>,
    /// `(service, to)` for services mapped only in the newer snapshot.
    pub added: Vec<(String, AppId)>,
    /// `(service, from)` for services mapped only in the older snapshot.
    pub removed: Vec<(String, AppId)>,
    /// `(from, to)` when the default app-id changed.
    pub default_app_id: Option<(AppId, AppId)>,
    /// `(service, split)` for services whose weighted split changed; `None`: removed.
    pub reweighted: Vec<(String, Option<WeightedTargets>)>,
}

// === impl MappingsDiff ===

impl MappingsDiff {
    /// The diff from `from` to `to`.
    pub fn between(from: &MappingsSnapshot, to: &MappingsSnapshot) -> Self {
        let mut diff = MappingsDiff::default();
        for (service, old) in &from.mappings {
            match to.mappings.get(service) {
                Some(new) if new != old => {
                    diff.moved.push((service.clone(), old.clone(), new.clone()))
                }
                Some(_) => {}
                None => diff.removed.push((service.clone(), old.clone())),
            }
        }
        for (service, new) in &to.mappings {
            if !from.mappings.contains_key(service) {
                diff.added.push((service.clone(), new.clone()));
            }
        }
        if from.default_app_id != to.default_app_id {
            diff.default_app_id = Some((from.default_app_id.clone(), to.default_app_id.clone()));
        }
        for (service, old) in &from.weights {
            match to.weights.get(service) {
                Some(new) if new != old => {
                    diff.reweighted.push((service.clone(), Some(new.clone())))
                }
                Some(_) => {}
                None => diff.reweighted.push((service.clone(), None)),
            }
        }
        for (service, new) in &to.weights {
            if !from.weights.contains_key(service) {
                diff.reweighted.push((service.clone(), Some(new.clone())));
            }
        }
        diff.reweighted.sort_by(|a, b| a.0.cmp(&b.0));
        diff
    }

    /// The diff between two tables' mappings (versions do not matter).
    pub fn between_tables(from: &RoutingTable, to: &RoutingTable) -> Self {
        Self::between(
            &MappingsSnapshot::from_table(from, 0),
            &MappingsSnapshot::from_table(to, 0),
        )
    }

    /// True when nothing changed.
    pub fn is_empty(&self) -> bool {
        self.moved.is_empty()
            && self.added.is_empty()
            && self.removed.is_empty()
            && self.default_app_id.is_none()
            && self.reweighted.is_empty()
    }

    /// Applies the diff to `base`, giving the newer snapshot's mappings at `version`.
    pub fn apply(&self, base: &MappingsSnapshot, version: i64) -> MappingsSnapshot {
        let mut next = base.clone();
        next.version = version;
        for (service, _) in &self.removed {
            next.mappings.remove(service);
        }
        for (service, _, to) in &self.moved {
            next.mappings.insert(service.clone(), to.clone());
        }
        for (service, to) in &self.added {
            next.mappings.insert(service.clone(), to.clone());
        }
        if let Some((_, to)) = &self.default_app_id {
            next.default_app_id = to.clone();
        }
        for (service, split) in &self.reweighted {
            match split {
                Some(split) => next.weights.insert(service.clone(), split.clone()),
                None => next.weights.remove(service),
            };
        }
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::tests::t;

    fn table(routes: &[(&str, &str)]) -> RoutingTable {
        let mut table = RoutingTable::default();
        for (s, a) in routes {
            table.set_route(s, AppId::from(*a), t(0), 80).unwrap();
        }
        table
    }

    #[test]
    fn snapshot_of_a_table_keeps_only_non_default_routes() {
        let mut table = table(&[("auth", "n1"), ("account", "n2")]);
        let hb = crate::table::tests::heartbeat(
            "other",
            &[(
                "game-session",
                orchestrator_core::events::ServiceHealthStatus::Healthy,
            )],
        );
        table.apply_heartbeat(&hb, t(1), 80);
        let snap = MappingsSnapshot::from_table(&table, 7);
        assert_eq!(snap.version, 7);
        assert_eq!(snap.mappings.len(), 3);
        assert_eq!(snap.resolve("auth").as_str(), "n1");
        assert_eq!(snap.resolve("unknown").as_str(), "bannou");
        assert_eq!(snap.resolve("orchestrator").as_str(), "bannou");
    }

    #[test]
    fn event_round_trip_and_wire_fields() {
        let snap = MappingsSnapshot::from_table(&table(&[("auth", "n1"), ("account", "n2")]), 42);
        let ev = snap.to_event(Uuid::nil(), t(0), Uuid::nil());
        assert_eq!(ev.event_name, "orchestrator.full_service_mappings");
        assert_eq!(ev.total_services, 2);
        assert_eq!(ev.default_app_id, "bannou");
        let json = serde_json::to_value(&ev).unwrap();
        assert_eq!(json["mappings"]["auth"], "n1");
        assert_eq!(json["totalServices"], 2);
        assert_eq!(MappingsSnapshot::from_event(&ev), snap);
        let bytes = serde_json::to_vec(&ev).unwrap();
        assert_eq!(MappingsSnapshot::from_json(&bytes).unwrap(), snap);
    }

    #[test]
    fn consumer_skips_private_blank_and_infrastructure_entries() {
        let payload = br#"{"version": 3, "defaultAppId": null, "mappings": {
            "_meta": "x", "": "n1", "auth": " ", "Account": "n2", "state": "n3",
            "orchestrator": "n4", "leaderboard": null, "chat": "bannou"}}"#;
        let snap = MappingsSnapshot::from_json(payload).unwrap();
        assert_eq!(snap.default_app_id.as_str(), "bannou");
        assert_eq!(snap.version, 3);
        assert_eq!(
            snap.mappings.into_iter().collect::<Vec<_>>(),
            vec![("account".to_owned(), AppId::from("n2"))]
        );
        let empty = MappingsSnapshot::from_json(br#"{"version": 4, "mappings": {}}"#).unwrap();
        assert!(
            empty.mappings.is_empty(),
            "empty mappings mean everything to default"
        );
        assert!(MappingsSnapshot::from_json(b"{\"mappings\": {}}").is_err());
        assert!(MappingsSnapshot::from_json(b"not json").is_err());
    }

    fn split(targets: &[(&str, u32)]) -> WeightedTargets {
        WeightedTargets::new(targets.iter().map(|(a, w)| (AppId::from(*a), *w))).unwrap()
    }

    fn weighted_table() -> RoutingTable {
        let mut table = table(&[("auth", "old")]);
        table
            .set_weights("auth", split(&[("old", 90), ("new", 10)]))
            .unwrap();
        table
    }

    #[test]
    fn weights_travel_in_an_additive_field_beside_the_primary() {
        let snap = MappingsSnapshot::from_table(&weighted_table(), 9);
        let ev = snap.to_event(Uuid::nil(), t(0), Uuid::nil());
        let json = serde_json::to_value(&ev).unwrap();
        assert_eq!(
            json["mappings"]["auth"], "old",
            "the primary, for upstream's nodes"
        );
        assert_eq!(
            json["weightedMappings"]["auth"],
            serde_json::json!([{"appId": "new", "weight": 10}, {"appId": "old", "weight": 90}])
        );
        assert_eq!(MappingsSnapshot::from_event(&ev), snap);
        assert_eq!(
            MappingsSnapshot::from_json(&serde_json::to_vec(&ev).unwrap()).unwrap(),
            snap
        );
        // Without splits the field is absent: the payload is upstream's, byte for byte.
        let plain = MappingsSnapshot::from_table(&table(&[("auth", "old")]), 9);
        let plain = serde_json::to_value(plain.to_event(Uuid::nil(), t(0), Uuid::nil())).unwrap();
        assert!(plain.get("weightedMappings").is_none());
    }

    /// What a consumer that knows only upstream's fields reads (upstream's lib-mesh reads
    /// `mappings`, `defaultAppId` and `version`; unknown members are ignored).
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct UpstreamEvent {
        mappings: BTreeMap<String, String>,
        default_app_id: Option<String>,
        version: i64,
    }

    #[test]
    fn a_consumer_that_knows_only_the_old_fields_gets_the_primary() {
        let ev = MappingsSnapshot::from_table(&weighted_table(), 9).to_event(
            Uuid::nil(),
            t(0),
            Uuid::nil(),
        );
        let payload = serde_json::to_vec(&ev).unwrap();
        let old: UpstreamEvent = serde_json::from_slice(&payload).unwrap();
        let snap = MappingsSnapshot::from_entries(
            old.version,
            old.default_app_id.as_deref(),
            old.mappings
                .iter()
                .map(|(k, v)| (k.as_str(), Some(v.as_str()))),
        );
        assert_eq!(snap.resolve("auth").as_str(), "old");
        assert!(snap.weights.is_empty());
        // And a payload from a publisher that knows no weights reads as no split.
        let upstream = br#"{"eventName": "orchestrator.full_service_mappings",
            "eventId": "0d4e5f6a-7b8c-4d9e-8f01-2a3b4c5d6e7f",
            "timestamp": "2026-03-02T14:06:00.004+00:00", "mappings": {"auth": "old"},
            "defaultAppId": "bannou", "version": 3,
            "sourceInstanceId": "9c8b7a6f-5e4d-4c3b-a2a1-0f9e8d7c6b5a", "totalServices": 1}"#;
        let typed: FullServiceMappingsEvent = serde_json::from_slice(upstream).unwrap();
        assert!(typed.weighted_mappings.is_empty());
        assert!(
            MappingsSnapshot::from_json(upstream)
                .unwrap()
                .weights
                .is_empty()
        );
    }

    #[test]
    fn a_malformed_split_is_skipped_not_the_payload() {
        let payload = br#"{"version": 5, "mappings": {"auth": "old"}, "weightedMappings": {
            "auth": [{"appId": "old", "weight": 90}, {"appId": "new", "weight": 10}],
            "chat": [{"appId": "a", "weight": 0}], "state": [{"appId": "a", "weight": 1}],
            "game": "nonsense", "_x": [{"appId": "a", "weight": 1}]}}"#;
        let snap = MappingsSnapshot::from_json(payload).unwrap();
        assert_eq!(snap.weights.keys().collect::<Vec<_>>(), ["auth"]);
        let garbage = br#"{"version": 5, "mappings": {"auth": "old"}, "weightedMappings": 7}"#;
        let snap = MappingsSnapshot::from_json(garbage).unwrap();
        assert!(snap.weights.is_empty());
        assert_eq!(snap.resolve("auth").as_str(), "old");
    }

    #[test]
    fn diff_reports_reweighted_services_and_applies_back() {
        let a = MappingsSnapshot::from_table(&table(&[("auth", "old")]), 1);
        let b = MappingsSnapshot::from_table(&weighted_table(), 2);
        let diff = a.diff(&b);
        assert!(diff.moved.is_empty() && diff.added.is_empty());
        assert_eq!(
            diff.reweighted,
            vec![("auth".into(), Some(split(&[("old", 90), ("new", 10)])))]
        );
        assert_eq!(diff.apply(&a, 2), b);
        let back = b.diff(&a);
        assert_eq!(back.reweighted, vec![("auth".into(), None)]);
        assert_eq!(back.apply(&b, 1), a);
        assert!(b.diff(&b).is_empty());
    }

    #[test]
    fn diff_reports_moved_added_removed_and_applies_back() {
        let a = MappingsSnapshot::from_table(&table(&[("auth", "n1"), ("account", "n1")]), 1);
        let b = MappingsSnapshot::from_table(&table(&[("auth", "n2"), ("chat", "n3")]), 2);
        let diff = a.diff(&b);
        assert_eq!(diff.moved, vec![("auth".into(), "n1".into(), "n2".into())]);
        assert_eq!(diff.added, vec![("chat".into(), "n3".into())]);
        assert_eq!(diff.removed, vec![("account".into(), "n1".into())]);
        assert_eq!(diff.apply(&a, 2), b);
        assert!(a.diff(&a).is_empty());
        let tables = MappingsDiff::between_tables(&table(&[("auth", "n1")]), &table(&[]));
        assert_eq!(tables.removed, vec![("auth".into(), "n1".into())]);
    }
}

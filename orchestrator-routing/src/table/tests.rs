//! Unit tests of `table`.

use super::*;
use orchestrator_core::events::{InstanceCapacity, ServiceStatus};
use uuid::Uuid;

pub(crate) fn t(secs: i64) -> Timestamp {
    Timestamp::from_unix_millis(1_800_000_000_000 + secs * 1000)
}

pub(crate) fn heartbeat(
    app: &str,
    services: &[(&str, ServiceHealthStatus)],
) -> ServiceHeartbeatEvent {
    ServiceHeartbeatEvent {
        event_name: "service.heartbeat".into(),
        event_id: Uuid::nil(),
        timestamp: t(0),
        service_id: Uuid::nil(),
        app_id: AppId::from(app),
        status: InstanceHealthStatus::Healthy,
        services: services
            .iter()
            .map(|(name, status)| ServiceStatus {
                service_id: Uuid::nil(),
                service_name: (*name).into(),
                status: *status,
                version: None,
                metadata: None,
            })
            .collect(),
        capacity: None,
        issues: None,
        metadata: None,
    }
}

const H: ServiceHealthStatus = ServiceHealthStatus::Healthy;
const D: ServiceHealthStatus = ServiceHealthStatus::Degraded;

#[test]
fn unknown_services_resolve_to_the_default_and_orchestrator_to_the_control_plane() {
    let mut table = RoutingTable::new(AppId::from("fallback"));
    assert_eq!(table.resolve("auth").as_str(), "fallback");
    assert_eq!(table.resolve("Orchestrator").as_str(), "bannou");
    table.set_route("auth", "n1".into(), t(0), 80).unwrap();
    assert_eq!(table.resolve("AUTH").as_str(), "n1");
    assert_eq!(RoutingTable::default().resolve("x").as_str(), "bannou");
}

#[test]
fn infrastructure_and_orchestrator_are_refused_in_any_case() {
    let mut table = RoutingTable::default();
    for s in ["state", "Messaging", " MESH "] {
        assert!(matches!(
            table.set_route(s, "n1".into(), t(0), 80),
            Err(RoutingError::Infrastructure(_))
        ));
    }
    assert!(matches!(
        table.set_route("orchestrator", "n1".into(), t(0), 80),
        Err(RoutingError::ControlPlaneService(_))
    ));
    assert_eq!(
        table.set_route("  ", "n1".into(), t(0), 80),
        Err(RoutingError::BlankService)
    );
    assert!(matches!(
        table.set_route("auth", " ".into(), t(0), 80),
        Err(RoutingError::BlankAppId { .. })
    ));
    assert!(table.is_empty());
}

#[test]
fn set_route_reports_added_moved_unchanged_and_default_removes() {
    let mut table = RoutingTable::default();
    assert_eq!(
        table.set_route("auth", "n1".into(), t(0), 80),
        Ok(RouteChange::Added)
    );
    assert_eq!(
        table.set_route("auth", "n1".into(), t(5), 80),
        Ok(RouteChange::Unchanged)
    );
    assert_eq!(table.route("auth").unwrap().last_updated, t(5));
    assert_eq!(
        table.set_route("auth", "n2".into(), t(6), 80),
        Ok(RouteChange::Moved { from: "n1".into() })
    );
    let change = table.set_route("auth", "bannou".into(), t(7), 80).unwrap();
    assert_eq!(
        change,
        RouteChange::RestoredDefault {
            from: Some("n2".into())
        }
    );
    assert!(change.is_change());
    assert!(table.is_empty(), "no explicit default routes are written");
}

#[test]
fn restore_release_and_reset_fall_back_to_the_default() {
    let mut table = RoutingTable::default();
    for (s, a) in [("auth", "n1"), ("account", "n1"), ("game-session", "n2")] {
        table.set_route(s, a.into(), t(0), 80).unwrap();
    }
    assert_eq!(table.restore_default("Auth").unwrap().app_id.as_str(), "n1");
    assert_eq!(table.restore_default("auth"), None);
    assert_eq!(table.release_app(&"N1".into()), vec!["account".to_owned()]);
    assert_eq!(table.resolve("account").as_str(), "bannou");
    assert_eq!(table.reset_all(), vec!["game-session".to_owned()]);
    assert!(table.is_empty());
}

#[test]
fn a_replica_refused_before_is_refused_again_until_a_route_changes() {
    use ServiceHealthStatus::Healthy;
    let mut table = RoutingTable::default();
    let owner = heartbeat(
        "n1",
        &[("auth", Healthy), ("mesh", Healthy), ("chat", Healthy)],
    );
    assert_eq!(table.apply_heartbeat(&owner, t(0), 80).created.len(), 2);
    let replica = heartbeat(
        "n2",
        &[("auth", Healthy), ("mesh", Healthy), ("chat", Healthy)],
    );
    for at in 1..4 {
        let out = table.apply_heartbeat(&replica, t(at), 80);
        assert_eq!((out.refused, out.refreshed, out.created.len()), (2, 0, 0));
    }
    // Remembered beats are a cache: equality ignores them.
    let mut fresh = RoutingTable::default();
    fresh.apply_heartbeat(&owner, t(0), 80);
    assert_eq!(table, fresh);
    // Another list from the same sender is looked at service by service.
    let more = heartbeat(
        "n2",
        &[("auth", Healthy), ("chat", Healthy), ("quest", Healthy)],
    );
    let out = table.apply_heartbeat(&more, t(4), 80);
    assert_eq!((out.refused, out.created), (2, vec!["quest".to_owned()]));
    // The owner leaves: the replica's next beat (same list as before) takes over.
    assert_eq!(table.release_app(&"n1".into()), ["auth", "chat"]);
    let out = table.apply_heartbeat(&replica, t(5), 80);
    assert_eq!((out.refused, out.created.len()), (0, 2));
    assert_eq!(table.resolve("auth").as_str(), "n2");
    // Every other change forgets too: a route moved to the replica is refreshed by it.
    let third = heartbeat("n3", &[("auth", Healthy)]);
    assert_eq!(table.apply_heartbeat(&third, t(6), 80).refused, 1);
    table.set_route("auth", "n3".into(), t(7), 80).unwrap();
    assert_eq!(table.apply_heartbeat(&third, t(8), 80).refreshed, 1);
}

#[test]
fn a_final_beat_that_could_not_create_is_not_remembered_as_refused() {
    use ServiceHealthStatus::Healthy;
    let mut table = RoutingTable::default();
    table.set_route("auth", "n1".into(), t(0), 80).unwrap();
    let mut hb = heartbeat("n2", &[("auth", Healthy), ("chat", Healthy)]);
    hb.status = InstanceHealthStatus::ShuttingDown;
    let out = table.apply_heartbeat(&hb, t(1), 80);
    assert_eq!((out.refused, out.created.len()), (1, 0));
    hb.status = InstanceHealthStatus::Healthy;
    let out = table.apply_heartbeat(&hb, t(2), 80);
    assert_eq!((out.refused, out.created), (1, vec!["chat".to_owned()]));
}

#[test]
fn heartbeat_creates_unowned_refreshes_own_and_never_moves() {
    let mut table = RoutingTable::default();
    table.set_route("auth", "n1".into(), t(0), 80).unwrap();
    let mut hb = heartbeat(
        "n2",
        &[
            ("auth", D),
            ("account", H),
            ("state", H),
            ("orchestrator", H),
            ("account", D),
        ],
    );
    hb.capacity = Some(InstanceCapacity {
        max_connections: Some(300),
        current_connections: Some(200),
        ..Default::default()
    });
    let out = table.apply_heartbeat(&hb, t(10), 8080);
    assert_eq!(out.created, vec!["account".to_owned()]);
    assert_eq!(out.refused, 1, "auth belongs to n1");
    assert!(out.refreshed == 0 && out.changed());
    let account = table.route("account").unwrap();
    assert_eq!((account.port, account.load_percent), (8080, 66));
    assert_eq!(table.resolve("auth").as_str(), "n1");

    let again = table.apply_heartbeat(&heartbeat("N2", &[("account", D)]), t(20), 80);
    assert_eq!(again.refreshed, 1);
    assert!(!again.changed());
    let account = table.route("account").unwrap();
    assert_eq!(account.status, Some(D));
    assert_eq!(account.last_updated, t(20));
    assert_eq!(account.load_percent, 0);
}

#[test]
fn a_final_shutting_down_beat_refreshes_its_routes_but_claims_none() {
    let mut table = RoutingTable::default();
    table.set_route("auth", "n1".into(), t(0), 80).unwrap();
    let mut hb = heartbeat("n1", &[("auth", D), ("account", H)]);
    hb.status = InstanceHealthStatus::ShuttingDown;
    let out = table.apply_heartbeat(&hb, t(10), 80);
    assert!(out.created.is_empty() && !out.changed());
    assert_eq!(out.refreshed, 1);
    assert_eq!(table.route("auth").unwrap().status, Some(D));
    assert!(
        table.route("account").is_none(),
        "released routes stay released"
    );
}

#[test]
fn control_plane_heartbeats_are_ignored_entirely() {
    let mut table = RoutingTable::default();
    let out = table.apply_heartbeat(&heartbeat("BANNOU", &[("auth", H)]), t(0), 80);
    assert!(out.ignored && out.created.is_empty());
    assert!(table.is_empty());
}

#[test]
fn load_percent_truncates_and_handles_unknowns() {
    let mut hb = heartbeat("n1", &[]);
    assert_eq!(load_percent(&hb), 0);
    let cap = |max, cur| InstanceCapacity {
        max_connections: max,
        current_connections: cur,
        ..Default::default()
    };
    for (max, cur, want) in [
        (Some(3), Some(2), 66),
        (Some(0), Some(2), 0),
        (None, Some(2), 0),
        (Some(10), None, 0),
        (Some(10), Some(25), 100),
        (Some(10), Some(-5), 0),
        (Some(i64::MAX), Some(i64::MAX), 100),
    ] {
        hb.capacity = Some(cap(max, cur));
        assert_eq!(load_percent(&hb), want, "{max:?} {cur:?}");
    }
}

#[test]
fn routes_expire_after_the_ttl_unless_refreshed() {
    let mut table = RoutingTable::default();
    table.set_route("auth", "n1".into(), t(0), 80).unwrap();
    table.set_route("account", "n1".into(), t(0), 80).unwrap();
    table.apply_heartbeat(&heartbeat("n1", &[("auth", H)]), t(200), 80);
    assert!(table.expire(t(299), DEFAULT_ROUTING_TTL).is_empty());
    assert_eq!(
        table.expire(t(300), DEFAULT_ROUTING_TTL),
        vec!["account".to_owned()]
    );
    assert_eq!(
        table.expire(t(500), DEFAULT_ROUTING_TTL),
        vec!["auth".to_owned()]
    );
}

#[test]
fn records_round_trip_and_stray_records_are_skipped() {
    let mut table = RoutingTable::default();
    table.set_route("auth", "n1".into(), t(0), 80).unwrap();
    table.apply_heartbeat(&heartbeat("n2", &[("account", D)]), t(3), 81);
    let mut records: Vec<(String, RoutingRecord)> = table.to_records().into_iter().collect();
    let json = serde_json::to_value(&records[0].1).unwrap();
    assert_eq!(json["AppId"], "n2");
    assert_eq!(json["Status"], "Degraded");
    let stray = records[0].1.clone();
    records.push(("_index".into(), stray.clone()));
    records.push(("State".into(), stray.clone()));
    records.push(("".into(), stray.clone()));
    records.push((
        "x".into(),
        RoutingRecord {
            app_id: " ".into(),
            ..stray.clone()
        },
    ));
    records.push((
        "y".into(),
        RoutingRecord {
            load_percent: 900,
            host: String::new(),
            ..stray
        },
    ));
    let (back, skipped) = RoutingTable::from_records(AppId::control_plane(), records);
    assert_eq!(skipped, vec!["_index", "State", "", "x"]);
    assert_eq!(back.route("auth"), table.route("auth"));
    assert_eq!(back.route("account"), table.route("account"));
    let y = back.route("y").unwrap();
    assert_eq!((y.load_percent, y.host.as_str()), (100, "n2"));
}

fn split(targets: &[(&str, u32)]) -> WeightedTargets {
    WeightedTargets::new(targets.iter().map(|(a, w)| (AppId::from(*a), *w))).unwrap()
}

#[test]
fn weights_sit_beside_the_primary_and_report_whether_they_changed() {
    let mut table = RoutingTable::default();
    table
        .set_route("auth", AppId::from("old"), t(0), 80)
        .unwrap();
    let canary = split(&[("old", 90), ("new", 10)]);
    assert_eq!(table.set_weights("Auth ", canary.clone()), Ok(true));
    assert_eq!(
        table.set_weights("auth", canary.clone()),
        Ok(false),
        "same split"
    );
    assert_eq!(table.weights("AUTH"), Some(&canary));
    assert_eq!(
        table.resolve("auth").as_str(),
        "old",
        "the route stays the primary"
    );
    assert_eq!(table.mappings().len(), 1, "mappings name only the primary");
    // A service without a route may be split too: its primary is the default.
    assert_eq!(
        table.set_weights("chat", split(&[("bannou", 50), ("n2", 50)])),
        Ok(true)
    );
    assert_eq!(table.weighted().len(), 2);
    assert_eq!(
        table.set_weights("state", canary.clone()),
        Err(RoutingError::Infrastructure("state".into()))
    );
    assert_eq!(
        table.set_weights("orchestrator", canary.clone()),
        Err(RoutingError::ControlPlaneService("orchestrator".into()))
    );
    let before = table.clone();
    assert_eq!(
        table.clear_weights("CHAT"),
        Some(split(&[("bannou", 50), ("n2", 50)]))
    );
    assert_eq!(table.clear_weights("chat"), None);
    assert_ne!(table, before, "weights are part of equality");
    // Heartbeats and expiry leave splits alone.
    table.apply_heartbeat(&heartbeat("new", &[("auth", H)]), t(1), 80);
    table.expire(t(10_000), DEFAULT_ROUTING_TTL);
    assert_eq!(table.weights("auth"), Some(&canary));
}

#[test]
fn releasing_an_app_drops_the_splits_that_name_it_and_reset_drops_all() {
    let mut table = RoutingTable::default();
    table
        .set_route("auth", AppId::from("old"), t(0), 80)
        .unwrap();
    table
        .set_weights("auth", split(&[("old", 90), ("new", 10)]))
        .unwrap();
    table
        .set_weights("chat", split(&[("bannou", 90), ("n2", 10)]))
        .unwrap();
    assert!(
        table.release_app(&AppId::from("NEW")).is_empty(),
        "no route was released"
    );
    assert_eq!(
        table.weights("auth"),
        None,
        "no call is weighed towards a stopping node"
    );
    assert!(table.weights("chat").is_some());
    assert_eq!(table.resolve("auth").as_str(), "old");
    assert_eq!(
        table.reset_all(),
        vec!["auth".to_owned(), "chat".to_owned()]
    );
    assert!(table.weighted().is_empty());
}

//! App-ids compare without ASCII case (docs/COMPATIBILITY.md#heartbeat-consumption): the
//! routing table, the mappings snapshot and their diff treat `Auth-Main` and `auth-main`
//! as one node.

use orchestrator_core::events::{ServiceHealthStatus, ServiceHeartbeatEvent};
use orchestrator_core::{AppId, Timestamp};
use orchestrator_routing::{MappingsDiff, MappingsSnapshot, RouteChange, RoutingTable};
use uuid::Uuid;

fn t(secs: i64) -> Timestamp {
    Timestamp::from_unix_millis(1_780_000_000_000 + secs * 1000)
}

fn beat(app: &str, services: &[&str]) -> ServiceHeartbeatEvent {
    ServiceHeartbeatEvent::new(
        Uuid::new_v4(),
        AppId::new(app),
        t(1),
        services.iter().map(|s| (*s, ServiceHealthStatus::Healthy)),
    )
}

#[test]
fn a_route_to_another_spelling_of_its_node_is_unchanged_and_the_default_is_any_case() {
    let mut table = RoutingTable::new(AppId::control_plane());
    assert_eq!(
        table.set_route("auth", AppId::new("Auth-Main"), t(0), 80),
        Ok(RouteChange::Added)
    );
    assert_eq!(
        table.set_route("auth", AppId::new("auth-main"), t(1), 80),
        Ok(RouteChange::Unchanged)
    );
    // Routing to `BANNOU` is routing to the default `bannou`: the route goes away.
    assert!(matches!(
        table.set_route("auth", AppId::new("BANNOU"), t(2), 80),
        Ok(RouteChange::RestoredDefault { .. })
    ));
    assert!(table.mappings().is_empty());
}

#[test]
fn a_node_beating_in_another_case_keeps_its_routes_and_is_released_in_any_case() {
    let mut table = RoutingTable::new(AppId::control_plane());
    let first = table.apply_heartbeat(&beat("Auth-Main", &["auth", "account"]), t(1), 80);
    assert_eq!(first.created.len(), 2);
    let again = table.apply_heartbeat(&beat("AUTH-MAIN", &["auth", "account"]), t(2), 80);
    assert_eq!((again.refreshed, again.refused), (2, 0));
    assert_eq!(table.resolve("auth").as_str(), "Auth-Main");
    assert_eq!(
        table.release_app(&AppId::new("auth-main")),
        ["account", "auth"]
    );
}

#[test]
fn mappings_ignore_the_case_of_app_ids() {
    // An entry naming the default in another case is the default: not a mapping.
    let snap = MappingsSnapshot::from_entries(
        3,
        Some("bannou"),
        [("auth", Some("BANNOU")), ("account", Some("Auth-Main"))],
    );
    assert_eq!(snap.mappings.len(), 1, "{:?}", snap.mappings);
    // The same mappings spelled differently are no change to broadcast.
    let other = MappingsSnapshot::from_entries(4, Some("Bannou"), [("account", Some("auth-main"))]);
    assert!(MappingsDiff::between(&snap, &other).is_empty());
}

//! App-ids compare without ASCII case (docs/COMPATIBILITY.md#heartbeat-consumption):
//! the planner and the health aggregator treat `Auth-Main` and `auth-main` as one node.

use std::collections::BTreeMap;
use std::time::Duration;

use orchestrator_core::events::{InstanceHealthStatus, ServiceHealthStatus, ServiceHeartbeatEvent};
use orchestrator_core::health::{HealthConfig, HeartbeatAggregator};
use orchestrator_core::planner::{ActionKind, PlanOptions, plan};
use orchestrator_core::{AppId, Catalog, ResolvedNode, Timestamp};
use uuid::Uuid;

fn t(secs: u64) -> Timestamp {
    Timestamp::from_unix_millis(1_780_000_000_000 + secs as i64 * 1000)
}

fn beat(instance: u128, app: &str, status: ServiceHealthStatus, at: u64) -> ServiceHeartbeatEvent {
    ServiceHeartbeatEvent::new(
        Uuid::from_u128(instance),
        AppId::new(app),
        t(at),
        [("account", status)],
    )
}

/// A node replaced by one reporting its app-id in another case (a platform that
/// lower-cases names) is the same node: once the old instance is silent, the live
/// replacement alone decides, as for a replacement spelled the same way.
#[test]
fn a_replacement_spelled_in_another_case_outvotes_its_silent_predecessor() {
    let config =
        HealthConfig::new(Duration::from_secs(90), Duration::from_secs(300)).expect("config");
    let mut agg = HeartbeatAggregator::new(config);
    agg.ingest(
        &beat(1, "Auth-Main", ServiceHealthStatus::Degraded, 0),
        t(0),
    );
    agg.ingest(
        &beat(2, "auth-main", ServiceHealthStatus::Healthy, 10),
        t(10),
    );
    agg.ingest(
        &beat(2, "auth-main", ServiceHealthStatus::Healthy, 80),
        t(80),
    );

    assert_eq!(
        agg.service_status("account", t(91)),
        Some(InstanceHealthStatus::Healthy)
    );
    assert_eq!(
        agg.status_on("account", "AUTH-MAIN", t(91)),
        Some(InstanceHealthStatus::Healthy)
    );
    assert_eq!(agg.instances_on(&AppId::new("auth-MAIN")).len(), 2);
}

fn resolved(app: &str, services: &[&str]) -> ResolvedNode {
    let mut environment = BTreeMap::from([
        ("BANNOU_SERVICES_ENABLED".to_owned(), "false".to_owned()),
        ("BANNOU_APP_ID".to_owned(), "auth-main".to_owned()),
    ]);
    for s in services {
        environment.insert(
            orchestrator_core::names::service_enable_flag(s),
            "true".into(),
        );
    }
    ResolvedNode {
        name: "auth".to_owned(),
        app_id: AppId::new(app),
        services: services.iter().map(|s| (*s).to_owned()).collect(),
        routed_services: services.iter().map(|s| (*s).to_owned()).collect(),
        environment,
        replicas: 1,
        mesh_enabled: true,
    }
}

/// The planner matches running and desired nodes by app-id: another spelling of a
/// running node's app-id is that node, unchanged, never a deploy plus a teardown.
#[test]
fn the_planner_keeps_a_node_whose_app_id_changed_case() {
    let current = [resolved("Auth-Main", &["auth", "account"])];
    let desired = [resolved("auth-main", &["auth", "account"])];
    let plan = plan(
        &current,
        &desired,
        Catalog::builtin(),
        &PlanOptions::default(),
    )
    .expect("a plan");
    let actions: Vec<(ActionKind, &str)> = plan
        .waves
        .iter()
        .flat_map(|w| &w.actions)
        .map(|a| (a.kind, a.app_id.as_str()))
        .collect();
    assert!(
        actions.iter().all(|(k, _)| *k != ActionKind::Teardown),
        "{actions:?}"
    );
    assert!(
        actions.iter().all(|(k, _)| *k != ActionKind::Deploy),
        "{actions:?}"
    );
    assert_eq!(plan.unchanged.len(), 1, "{:?}", plan.unchanged);
    assert!(plan.unchanged[0].as_str().eq_ignore_ascii_case("AUTH-MAIN"));
}

use std::time::Duration;

use uuid::Uuid;

use super::fixtures::*;
use super::instance::{instance_floor, is_stale, reported};
use super::*;
use crate::api::enums::ServiceHealthSource;
use crate::events::{InstanceHealthStatus, ServiceHealthStatus};
use crate::names::AppId;
use crate::time::Timestamp;
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
        serde_json::from_str(r#"{"source":"control_plane_only","serviceFilter":"auth"}"#).unwrap();
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

#[test]
fn a_node_being_stopped_claims_nothing_until_stopped_or_deployed_again() {
    let mut a = agg();
    feed(&mut a, hb(1, "bannou-auth").healthy(&["auth"]), t(0));
    assert_eq!(a.node_stopping(&AppId::from("bannou-auth"), t(1)), 1);
    // Neither its known instance nor a new one (a node that had not beaten yet) counts.
    for n in [1, 2] {
        let live = hb(n, "bannou-auth").healthy(&["auth"]).build();
        assert_eq!(a.ingest(&live, t(2)), IngestOutcome::IgnoredTornDown);
    }
    // Its stop failed: it counts again.
    a.node_deployed(&AppId::from("bannou-auth"));
    feed(&mut a, hb(2, "bannou-auth").healthy(&["auth"]), t(3));
    assert_eq!(a.status_on("auth", "bannou-auth", t(3)), Some(I::Healthy));
    // Stopped: the usual torn-down rules, a new instance's live beat is recorded.
    a.node_stopping(&AppId::from("bannou-auth"), t(4));
    a.forget_node(&AppId::from("bannou-auth"), t(5));
    feed(&mut a, hb(3, "bannou-auth").healthy(&["auth"]), t(6));
    assert_eq!(a.status_on("auth", "bannou-auth", t(6)), Some(I::Healthy));
}

#[test]
fn applied_mappings_list_live_nodes_with_the_lowest_version_of_their_instances() {
    let mut a = agg();
    feed(
        &mut a,
        hb(1, "b-node").healthy(&["auth"]).routing_version(4),
        t(0),
    );
    feed(
        &mut a,
        hb(2, "b-node").healthy(&["auth"]).routing_version(6),
        t(0),
    );
    feed(&mut a, hb(3, "a-node").healthy(&["auth"]), t(0));
    let id = |n| Uuid::from_u128(n);
    assert!(a.acknowledge_mappings(&AppId::from("b-node"), id(1), 7));
    assert!(
        !a.acknowledge_mappings(&AppId::from("b-node"), id(1), 6),
        "never lower"
    );
    assert_eq!(
        a.applied_mappings(t(1)),
        vec![
            (AppId::from("a-node"), None),
            (AppId::from("b-node"), Some(6))
        ]
    );
    // a-node acknowledges: known to have applied a version, though its beats say none.
    assert!(a.acknowledge_mappings(&AppId::from("a-node"), id(3), 7));
    assert_eq!(
        a.applied_mappings(t(1))[0],
        (AppId::from("a-node"), Some(7))
    );
    // A node shutting down is no consumer.
    feed(
        &mut a,
        hb(3, "a-node").healthy(&["auth"]).status(I::ShuttingDown),
        t(2),
    );
    assert_eq!(
        a.applied_mappings(t(2)),
        vec![(AppId::from("b-node"), Some(6))]
    );
}

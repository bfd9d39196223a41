//! Conformance suite for `OrchestratorStore` implementations: one scenario per behaviour,
//! each on a fresh store from the caller's factory. Time moves through [`TestTime`], so
//! the in-memory store advances a `ManualClock` while Redis sleeps real (short) time.

use std::collections::BTreeSet;
use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use futures::future::join_all;

use crate::config_history::{CLEARED_PRESET_NAME, RollbackError};
use crate::events::{InstanceHealthStatus, ServiceHealthStatus};
use crate::ports::store::{ConfigRollbackError, OrchestratorStore, RouteClaim, StoreError};
use crate::records::{DeploymentConfiguration, HeartbeatRecord, RoutingRecord};
use crate::time::{ManualClock, Timestamp};

/// Moves the time a store judges TTLs by.
#[async_trait]
pub trait TestTime: Send + Sync {
    /// Lets `d` pass for the store (advance a manual clock, or sleep for a real server).
    async fn advance(&self, d: Duration);
}

/// [`TestTime`] for stores running on a [`ManualClock`].
#[derive(Debug, Clone)]
pub struct ManualTestTime(ManualClock);

impl ManualTestTime {
    /// Controls `clock` (share it with the store under test).
    pub fn new(clock: ManualClock) -> Self {
        ManualTestTime(clock)
    }

    /// The controlled clock.
    pub fn clock(&self) -> &ManualClock {
        &self.0
    }
}

#[async_trait]
impl TestTime for ManualTestTime {
    async fn advance(&self, d: Duration) {
        self.0.advance(d);
    }
}

/// Runs every scenario, each against a fresh `(store, time)` from `make`, and panics with
/// a message naming the scenario on the first violation.
///
/// `unit` scales every TTL and wait: records live `2 * unit` in the expiry scenarios and
/// the suite lets at most about `3 * unit` pass per scenario. Use 1 s for in-memory stores;
/// for Redis (real sleeps) 1 s also works. Fresh means empty: a Redis factory should hand
/// out a store on its own key prefix or a flushed database.
pub async fn store_conformance<S, T, F, Fut>(make: F, unit: Duration)
where
    S: OrchestratorStore,
    T: TestTime,
    F: Fn() -> Fut,
    Fut: Future<Output = (S, T)>,
{
    let (s, _) = make().await;
    ping_answers(&s).await;
    let (s, _) = make().await;
    heartbeats_put_get_list_remove(&s).await;
    let (s, t) = make().await;
    heartbeats_expire(&s, &t, unit).await;
    let (s, _) = make().await;
    routes_put_get_list_remove(&s).await;
    let (s, t) = make().await;
    routes_expire(&s, &t, unit).await;
    let (s, t) = make().await;
    set_route_if_creates_refreshes_never_moves(&s, &t, unit).await;
    let (s, _) = make().await;
    claim_route_follows_spec_6_4(&s).await;
    let (s, _) = make().await;
    zero_ttl_is_rejected(&s).await;
    let (s, _) = make().await;
    mappings_version_is_strictly_monotonic(&s).await;
    let (s, _) = make().await;
    config_saves_are_consecutive(&s).await;
    let (s, _) = make().await;
    config_checked_save_detects_conflicts(&s).await;
    let (s, _) = make().await;
    config_stable_marks(&s).await;
    let (s, t) = make().await;
    config_history_expires_and_prunes(&s, &t, unit).await;
    let (s, _) = make().await;
    config_rollback_clear_and_version_info(&s).await;
    let (s, _) = make().await;
    deploys_in_progress_are_recorded_until_they_end(&s).await;
}

// === helpers ===

fn ts(n: i64) -> Timestamp {
    Timestamp::from_unix_millis(1_700_000_000_000 + n * 1000)
}

const LONG: Duration = Duration::from_secs(3600);

fn heartbeat(app_id: &str, services: &[&str]) -> HeartbeatRecord {
    HeartbeatRecord {
        instance_id: format!("{app_id}-instance"),
        app_id: app_id.to_owned(),
        status: InstanceHealthStatus::Healthy,
        last_seen: ts(0),
        services: services.iter().map(|s| (*s).to_owned()).collect(),
        issues: None,
        max_connections: 100,
        current_connections: 5,
        cpu_usage: 0.25,
        memory_usage: 0.5,
    }
}

fn route(app_id: &str, load: i32) -> RoutingRecord {
    RoutingRecord {
        app_id: app_id.to_owned(),
        host: app_id.to_owned(),
        port: 80,
        status: Some(ServiceHealthStatus::Healthy),
        last_updated: ts(i64::from(load)),
        load_percent: load,
    }
}

fn config(marker: &str) -> DeploymentConfiguration {
    let mut c = DeploymentConfiguration::empty(ts(1));
    c.preset_name = Some(format!("preset-{marker}"));
    c.environment_variables
        .insert("MARKER".to_owned(), marker.to_owned());
    c
}

fn versions(cfgs: &[DeploymentConfiguration]) -> Vec<u64> {
    cfgs.iter().map(|c| c.version).collect()
}

// === scenarios ===

async fn ping_answers<S: OrchestratorStore>(s: &S) {
    s.ping().await.expect("ping: a reachable store answers");
}

async fn heartbeats_put_get_list_remove<S: OrchestratorStore>(s: &S) {
    assert!(
        s.list_heartbeats().await.unwrap().is_empty(),
        "heartbeats: fresh store is empty"
    );
    assert_eq!(s.get_heartbeat("node-a").await.unwrap(), None);
    let b = heartbeat("node-b", &["auth"]);
    let a = heartbeat("node-a", &["accounts", "auth"]);
    s.put_heartbeat(&b, LONG).await.unwrap();
    s.put_heartbeat(&a, LONG).await.unwrap();
    assert_eq!(s.get_heartbeat("node-a").await.unwrap(), Some(a.clone()));
    assert_eq!(
        s.list_heartbeats().await.unwrap(),
        vec![a.clone(), b.clone()],
        "heartbeats: list returns every record ordered by app-id"
    );
    let mut a2 = a.clone();
    a2.status = InstanceHealthStatus::Degraded;
    a2.issues = Some(vec!["slow".to_owned()]);
    s.put_heartbeat(&a2, LONG).await.unwrap();
    assert_eq!(
        s.get_heartbeat("node-a").await.unwrap(),
        Some(a2),
        "heartbeats: a put replaces the record"
    );
    assert!(s.remove_heartbeat("node-a").await.unwrap());
    assert!(
        !s.remove_heartbeat("node-a").await.unwrap(),
        "heartbeats: second remove finds nothing"
    );
    assert_eq!(s.list_heartbeats().await.unwrap(), vec![b]);
}

async fn heartbeats_expire<S: OrchestratorStore, T: TestTime>(s: &S, t: &T, unit: Duration) {
    s.put_heartbeat(&heartbeat("short", &["auth"]), unit * 2)
        .await
        .unwrap();
    s.put_heartbeat(&heartbeat("long", &["auth"]), LONG)
        .await
        .unwrap();
    s.put_heartbeat(&heartbeat("refreshed", &["auth"]), unit * 2)
        .await
        .unwrap();
    t.advance(unit).await;
    assert!(
        s.get_heartbeat("short").await.unwrap().is_some(),
        "heartbeats: live before TTL"
    );
    s.put_heartbeat(&heartbeat("refreshed", &["auth"]), unit * 2)
        .await
        .unwrap();
    t.advance(unit + unit / 2).await;
    assert_eq!(
        s.get_heartbeat("short").await.unwrap(),
        None,
        "heartbeats: gone after TTL"
    );
    let live: Vec<String> = s
        .list_heartbeats()
        .await
        .unwrap()
        .into_iter()
        .map(|h| h.app_id)
        .collect();
    assert_eq!(
        live,
        ["long", "refreshed"],
        "heartbeats: list shows live records only; a put restarts the TTL"
    );
    assert!(
        !s.remove_heartbeat("short").await.unwrap(),
        "heartbeats: expired record cannot be removed"
    );
}

async fn routes_put_get_list_remove<S: OrchestratorStore>(s: &S) {
    assert!(
        s.list_routes().await.unwrap().is_empty(),
        "routes: fresh store is empty"
    );
    s.put_route("auth", &route("node-a", 1), LONG)
        .await
        .unwrap();
    s.put_route("accounts", &route("node-b", 2), LONG)
        .await
        .unwrap();
    assert_eq!(s.get_route("auth").await.unwrap(), Some(route("node-a", 1)));
    // put_route is authoritative: it may move a route.
    s.put_route("auth", &route("node-c", 3), LONG)
        .await
        .unwrap();
    let all = s.list_routes().await.unwrap();
    assert_eq!(
        all.into_iter().collect::<Vec<_>>(),
        vec![
            ("accounts".to_owned(), route("node-b", 2)),
            ("auth".to_owned(), route("node-c", 3))
        ],
        "routes: list returns every route by service"
    );
    assert!(s.remove_route("auth").await.unwrap());
    assert!(!s.remove_route("auth").await.unwrap());
    assert_eq!(s.get_route("auth").await.unwrap(), None);
    assert_eq!(s.list_routes().await.unwrap().len(), 1);
}

async fn routes_expire<S: OrchestratorStore, T: TestTime>(s: &S, t: &T, unit: Duration) {
    s.put_route("short", &route("a", 0), unit * 2)
        .await
        .unwrap();
    s.put_route("long", &route("a", 0), LONG).await.unwrap();
    s.put_route("refreshed", &route("a", 0), unit * 2)
        .await
        .unwrap();
    t.advance(unit).await;
    assert!(
        s.get_route("short").await.unwrap().is_some(),
        "routes: live before TTL"
    );
    s.put_route("refreshed", &route("a", 1), unit * 2)
        .await
        .unwrap();
    t.advance(unit + unit / 2).await;
    assert_eq!(
        s.get_route("short").await.unwrap(),
        None,
        "routes: gone after TTL"
    );
    let names: Vec<String> = s.list_routes().await.unwrap().into_keys().collect();
    assert_eq!(
        names,
        ["long", "refreshed"],
        "routes: list shows live routes only; a write restarts the TTL"
    );
}

async fn set_route_if_creates_refreshes_never_moves<S: OrchestratorStore, T: TestTime>(
    s: &S,
    t: &T,
    unit: Duration,
) {
    let ttl = unit * 2;
    assert!(
        !s.set_route_if("auth", Some("node-a"), &route("node-a", 1), ttl)
            .await
            .unwrap(),
        "set_route_if: refresh of a missing route does nothing"
    );
    assert_eq!(s.get_route("auth").await.unwrap(), None);
    assert!(
        s.set_route_if("auth", None, &route("node-a", 1), ttl)
            .await
            .unwrap(),
        "set_route_if: creates a missing route"
    );
    assert!(
        !s.set_route_if("auth", None, &route("node-b", 2), ttl)
            .await
            .unwrap(),
        "set_route_if: create fails when a route exists"
    );
    assert!(
        !s.set_route_if("auth", Some("node-b"), &route("node-b", 2), ttl)
            .await
            .unwrap(),
        "set_route_if: another app-id cannot move the route"
    );
    assert_eq!(s.get_route("auth").await.unwrap(), Some(route("node-a", 1)));
    t.advance(unit).await;
    assert!(
        s.set_route_if("auth", Some("NODE-A"), &route("node-a", 7), ttl)
            .await
            .unwrap(),
        "set_route_if: the owner refreshes (app-id compared case-insensitively)"
    );
    t.advance(unit + unit / 2).await;
    assert_eq!(
        s.get_route("auth").await.unwrap(),
        Some(route("node-a", 7)),
        "set_route_if: a refresh restarts the TTL"
    );
    t.advance(unit).await;
    assert_eq!(s.get_route("auth").await.unwrap(), None);
    assert!(
        s.set_route_if("auth", None, &route("node-b", 3), ttl)
            .await
            .unwrap(),
        "set_route_if: an expired route can be created anew"
    );
}

async fn claim_route_follows_spec_6_4<S: OrchestratorStore>(s: &S) {
    assert_eq!(
        s.claim_route("auth", &route("node-a", 1), LONG)
            .await
            .unwrap(),
        RouteClaim::Created
    );
    assert_eq!(
        s.claim_route("auth", &route("node-a", 2), LONG)
            .await
            .unwrap(),
        RouteClaim::Refreshed
    );
    assert_eq!(
        s.claim_route("auth", &route("node-b", 3), LONG)
            .await
            .unwrap(),
        RouteClaim::OwnedByOther(route("node-a", 2)),
        "claim_route: a heartbeat never moves a route"
    );
    assert_eq!(s.get_route("auth").await.unwrap(), Some(route("node-a", 2)));
}

async fn zero_ttl_is_rejected<S: OrchestratorStore>(s: &S) {
    let zero = Duration::ZERO;
    let bad = |r: Result<(), StoreError>| matches!(r, Err(StoreError::InvalidInput { .. }));
    assert!(
        bad(s.put_heartbeat(&heartbeat("a", &[]), zero).await),
        "zero TTL: heartbeat"
    );
    assert!(
        bad(s.put_route("auth", &route("a", 0), zero).await),
        "zero TTL: route"
    );
    assert!(matches!(
        s.set_route_if("auth", None, &route("a", 0), zero).await,
        Err(StoreError::InvalidInput { .. })
    ));
    assert!(matches!(
        s.save_config(&config("x"), zero).await,
        Err(StoreError::InvalidInput { .. })
    ));
    assert!(
        s.list_routes().await.unwrap().is_empty(),
        "zero TTL: nothing written"
    );
    assert_eq!(s.latest_config_version().await.unwrap(), 0);
}

async fn mappings_version_is_strictly_monotonic<S: OrchestratorStore>(s: &S) {
    assert_eq!(
        s.mappings_version().await.unwrap(),
        0,
        "mappings: starts at 0"
    );
    assert_eq!(s.next_mappings_version().await.unwrap(), 1);
    assert_eq!(s.next_mappings_version().await.unwrap(), 2);
    assert_eq!(s.mappings_version().await.unwrap(), 2);
    const N: i64 = 64;
    let got: Vec<i64> = join_all((0..N).map(|_| s.next_mappings_version()))
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    let distinct: BTreeSet<i64> = got.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        got.len(),
        "mappings: concurrent increments are distinct"
    );
    assert_eq!(distinct.first(), Some(&3));
    assert_eq!(
        distinct.last(),
        Some(&(N + 2)),
        "mappings: max equals the count"
    );
    assert_eq!(s.mappings_version().await.unwrap(), N + 2);
}

async fn config_saves_are_consecutive<S: OrchestratorStore>(s: &S) {
    assert_eq!(s.latest_config_version().await.unwrap(), 0);
    assert_eq!(s.current_config().await.unwrap(), None);
    assert!(s.config_history(10).await.unwrap().is_empty());
    assert_eq!(s.last_stable_config().await.unwrap(), None);
    let mut first = config("1");
    first.version = 77;
    first.stable = true;
    assert_eq!(s.save_config(&first, LONG).await.unwrap(), 1);
    assert_eq!(s.save_config(&config("2"), LONG).await.unwrap(), 2);
    assert_eq!(s.save_config(&config("3"), LONG).await.unwrap(), 3);
    let v1 = s
        .config_version(1)
        .await
        .unwrap()
        .expect("config: v1 stored");
    let mut expected = first.clone();
    expected.version = 1;
    expected.stable = false;
    assert_eq!(
        v1, expected,
        "config: saved as given, with version assigned and stable cleared"
    );
    let cur = s.current_config().await.unwrap().unwrap();
    assert_eq!(
        (cur.version, cur.environment_variables["MARKER"].as_str()),
        (3, "3")
    );
    assert_eq!(s.config_version(4).await.unwrap(), None);
    assert_eq!(s.config_version(0).await.unwrap(), None);
    assert_eq!(
        versions(&s.config_history(2).await.unwrap()),
        [3, 2],
        "config: history newest first"
    );
    assert_eq!(versions(&s.config_history(10).await.unwrap()), [3, 2, 1]);

    const N: u64 = 20;
    let cfgs: Vec<DeploymentConfiguration> = (0..N).map(|i| config(&format!("c{i}"))).collect();
    let got: BTreeSet<u64> = join_all(cfgs.iter().map(|c| s.save_config(c, LONG)))
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(
        got,
        (4..4 + N).collect::<BTreeSet<u64>>(),
        "config: concurrent saves get consecutive distinct versions"
    );
    let latest = s.latest_config_version().await.unwrap();
    assert_eq!(latest, 3 + N);
    assert_eq!(s.current_config().await.unwrap().unwrap().version, latest);
    for v in 1..=latest {
        let c = s.config_version(v).await.unwrap();
        assert_eq!(
            c.map(|c| c.version),
            Some(v),
            "config: version {v} readable"
        );
    }
}

async fn config_checked_save_detects_conflicts<S: OrchestratorStore>(s: &S) {
    assert_eq!(
        s.save_config_checked(&config("a"), Some(0), LONG)
            .await
            .unwrap(),
        1
    );
    s.save_config(&config("b"), LONG).await.unwrap();
    let err = s.save_config_checked(&config("c"), Some(1), LONG).await;
    assert!(
        matches!(err, Err(StoreError::Conflict { .. })),
        "config: stale expected version is a conflict, got {err:?}"
    );
    assert_eq!(
        s.latest_config_version().await.unwrap(),
        2,
        "config: conflict writes nothing"
    );
    assert_eq!(
        s.current_config()
            .await
            .unwrap()
            .unwrap()
            .environment_variables["MARKER"],
        "b"
    );
    assert_eq!(
        s.save_config_checked(&config("c"), Some(2), LONG)
            .await
            .unwrap(),
        3
    );
}

async fn config_stable_marks<S: OrchestratorStore>(s: &S) {
    assert!(
        !s.mark_config_stable(1).await.unwrap(),
        "stable: unknown version"
    );
    for m in ["1", "2", "3"] {
        s.save_config(&config(m), LONG).await.unwrap();
    }
    assert!(s.mark_config_stable(2).await.unwrap());
    assert!(s.config_version(2).await.unwrap().unwrap().stable);
    assert!(!s.config_version(1).await.unwrap().unwrap().stable);
    let last = s.last_stable_config().await.unwrap().unwrap();
    assert_eq!((last.version, last.stable), (2, true));
    assert!(s.mark_config_stable(3).await.unwrap());
    assert!(
        s.current_config().await.unwrap().unwrap().stable,
        "stable: current flagged"
    );
    assert!(s.mark_config_stable(1).await.unwrap());
    assert_eq!(
        s.last_stable_config().await.unwrap().unwrap().version,
        3,
        "stable: a late mark of an older version keeps the newest"
    );
    assert!(!s.mark_config_stable(9).await.unwrap());
    s.save_config(&config("4"), LONG).await.unwrap();
    assert!(
        !s.current_config().await.unwrap().unwrap().stable,
        "stable: new versions start unproven"
    );
}

async fn config_history_expires_and_prunes<S: OrchestratorStore, T: TestTime>(
    s: &S,
    t: &T,
    unit: Duration,
) {
    let short = unit * 2;
    for m in ["1", "2", "3"] {
        s.save_config(&config(m), short).await.unwrap();
    }
    assert!(s.mark_config_stable(2).await.unwrap());
    t.advance(unit * 3).await;
    assert_eq!(
        s.config_version(1).await.unwrap(),
        None,
        "history: expired entry gone"
    );
    assert_eq!(s.config_version(2).await.unwrap(), None);
    assert_eq!(
        s.config_version(3).await.unwrap().map(|c| c.version),
        Some(3),
        "history: current stays readable by version after its entry expired"
    );
    assert_eq!(versions(&s.config_history(10).await.unwrap()), [3]);
    assert_eq!(
        s.last_stable_config().await.unwrap().map(|c| c.version),
        Some(2),
        "history: last stable outlives its history entry"
    );
    assert_eq!(s.latest_config_version().await.unwrap(), 3);
    s.prune_config_history(None).await.unwrap();
    assert_eq!(versions(&s.config_history(10).await.unwrap()), [3]);

    for m in ["4", "5", "6", "7"] {
        s.save_config(&config(m), LONG).await.unwrap();
    }
    let removed = s.prune_config_history(Some(2)).await.unwrap();
    assert_eq!(removed, 2, "prune: versions 4 and 5 removed");
    assert_eq!(versions(&s.config_history(10).await.unwrap()), [7, 6]);
    assert_eq!(s.config_version(5).await.unwrap(), None);
    assert_eq!(
        s.latest_config_version().await.unwrap(),
        7,
        "prune: counter untouched"
    );
    assert_eq!(s.save_config(&config("8"), LONG).await.unwrap(), 8);
    s.prune_config_history(Some(0)).await.unwrap();
    assert_eq!(
        versions(&s.config_history(10).await.unwrap()),
        [8],
        "prune: current is never removed"
    );
}

async fn config_rollback_clear_and_version_info<S: OrchestratorStore>(s: &S) {
    let now = ts(100);
    let rejected = |r: Result<_, ConfigRollbackError>| match r {
        Err(ConfigRollbackError::Rejected(e)) => e,
        other => panic!("rollback: expected a rejection, got {other:?}"),
    };
    assert_eq!(
        rejected(s.rollback_config(None, now, LONG).await),
        RollbackError::NothingToRollBack { current: 0 }
    );
    let info = s.config_version_info(now).await.unwrap();
    assert_eq!(
        (info.version, info.timestamp, info.has_previous_config),
        (0, now, false)
    );
    for m in ["1", "2", "3", "4", "5"] {
        s.save_config(&config(m), LONG).await.unwrap();
    }
    assert_eq!(
        rejected(s.rollback_config(Some(5), now, LONG).await),
        RollbackError::InvalidTarget {
            target: 5,
            current: 5
        }
    );
    let before: Vec<DeploymentConfiguration> = s.config_history(10).await.unwrap();
    let out = s.rollback_config(Some(3), now, LONG).await.unwrap();
    assert_eq!((out.previous_version, out.current_version), (5, 6));
    assert_eq!(out.changed_keys, ["env.MARKER"]);
    let v6 = s.current_config().await.unwrap().unwrap();
    assert_eq!(v6, out.restored);
    assert_eq!(v6.environment_variables["MARKER"], "3");
    assert_eq!(
        v6.description.as_deref(),
        Some("Rolled back from version 5 to version 3")
    );
    assert_eq!(v6.timestamp, now);
    let after = s.config_history(10).await.unwrap();
    assert_eq!(&after[1..], &before[..], "rollback: versions 1-5 untouched");

    let cleared = s.clear_config(ts(200), LONG).await.unwrap();
    assert_eq!(cleared, 7);
    let cur = s.current_config().await.unwrap().unwrap();
    assert_eq!(cur.preset_name.as_deref(), Some(CLEARED_PRESET_NAME));
    assert!(cur.services.is_empty() && cur.environment_variables.is_empty());
    let info = s.config_version_info(now).await.unwrap();
    assert_eq!(
        (info.version, info.timestamp, info.has_previous_config),
        (7, ts(200), true)
    );
    assert_eq!(info.key_count, 0);

    s.prune_config_history(Some(1)).await.unwrap();
    assert_eq!(
        rejected(s.rollback_config(None, now, LONG).await),
        RollbackError::NotFound { version: 6 }
    );
    assert!(
        !s.config_version_info(now)
            .await
            .unwrap()
            .has_previous_config
    );
    assert_eq!(s.latest_config_version().await.unwrap(), 7);
}

async fn deploys_in_progress_are_recorded_until_they_end<S: OrchestratorStore>(s: &S) {
    assert_eq!(s.deploy_in_progress().await.unwrap(), None);
    assert!(!s.end_deploy("none").await.unwrap(), "nothing to end");
    let mut first = DeploymentConfiguration::empty(Timestamp::from_unix_millis(5));
    first.deployment_id = Some("d-1".to_owned());
    first.preset_name = Some("game-stack".to_owned());
    s.begin_deploy(&first).await.unwrap();
    assert_eq!(s.deploy_in_progress().await.unwrap().as_ref(), Some(&first));
    let mut second = first.clone();
    second.deployment_id = Some("d-2".to_owned());
    s.begin_deploy(&second).await.unwrap();
    assert_eq!(
        s.deploy_in_progress().await.unwrap().as_ref(),
        Some(&second),
        "a later deploy replaces the record"
    );
    assert!(
        !s.end_deploy("d-1").await.unwrap(),
        "another deploy's record"
    );
    assert_eq!(
        s.deploy_in_progress().await.unwrap().as_ref(),
        Some(&second)
    );
    assert!(s.end_deploy("d-2").await.unwrap());
    assert_eq!(s.deploy_in_progress().await.unwrap(), None);
    assert!(!s.end_deploy("d-2").await.unwrap(), "ended once");
}

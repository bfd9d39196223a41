//! Unit tests of `ports::backend`.

use super::*;

fn app(s: &str) -> AppId {
    AppId::from(s)
}

#[test]
fn names_follow_spec_5_3() {
    assert_eq!(container_name(&app("bannou-auth")), "bannou-bannou-auth");
    assert_eq!(
        workload_name("auth-node", &app("bannou-auth")),
        "bannou-auth-node-bannou-auth"
    );
    let id = uuid::Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
    let pid = processor_id("asset", id);
    assert_eq!(pid, "asset-0123456789abcdef0123456789abcdef");
    assert_eq!(
        pool_worker_app_id("asset", &pid),
        app("bannou-pool-asset-89abcdef")
    );
    assert_eq!(pool_worker_app_id("x", "abc"), app("bannou-pool-x-abc"));
    assert_eq!(
        pool_worker_app_id("x", "ééééééééé"),
        app("bannou-pool-x-éééééééé"),
        "counts characters, never splits one"
    );
}

#[test]
fn managed_labels_and_detection() {
    let l = managed_labels(&app("n1"), "auth");
    assert_eq!(l[labels::APP_ID], "n1");
    assert_eq!(l[labels::SERVICE], "auth");
    assert!(is_managed(&l));
    let mut other = l.clone();
    other.insert(labels::MANAGED.to_owned(), "false".to_owned());
    assert!(!is_managed(&other));
    assert!(!is_managed(&BTreeMap::new()));

    let mut node = NodeDeployment::new(app("n1"), "auth", "bannou:latest");
    node.labels
        .insert(labels::APP_ID.to_owned(), "spoof".to_owned());
    node.labels.insert("team".to_owned(), "core".to_owned());
    let eff = node.effective_labels();
    assert_eq!(eff[labels::APP_ID], "n1", "our labels win");
    assert_eq!(eff["team"], "core");
}

#[test]
fn injected_environment_comes_first_and_caller_wins() {
    let caller = BTreeMap::from([
        ("AUTH_SERVICE_ENABLED".to_owned(), "true".to_owned()),
        ("DAEMON_MODE".to_owned(), "false".to_owned()),
    ]);
    let env = docker_injected_environment(&app("n1"), &app("bannou"), false, &caller);
    assert_eq!(env["BANNOU_APP_ID"], "n1");
    assert_eq!(env["BANNOU_MAPPING_SOURCE_APP_ID"], "bannou");
    assert_eq!(env["BANNOU_HTTP_ENDPOINT"], "http://bannou");
    assert_eq!(env["BANNOU_HEARTBEAT_ENABLED"], "true");
    assert_eq!(env["DAEMON_MODE"], "false", "caller env wins");
    assert_eq!(env["AUTH_SERVICE_ENABLED"], "true");
    assert!(!env.contains_key("SSL_CERT_DIR"));
    let with_certs = docker_injected_environment(&app("n1"), &app("bannou"), true, &caller);
    assert_eq!(with_certs["SSL_CERT_DIR"], "/certificates");
}

#[test]
fn infrastructure_patterns_match_substrings_case_insensitively() {
    assert!(is_infrastructure("bannou-Redis-1"));
    assert!(is_infrastructure("postgres:16-alpine"));
    assert!(!is_infrastructure("bannou-auth"));
}

#[test]
fn grace_and_volume_rules() {
    let t = TeardownOptions {
        mode: TeardownMode::PreserveData,
        remove_volumes: true,
        grace: Duration::from_secs(5),
    };
    assert!(!t.removes_volumes());
    assert_eq!(t.effective_grace(), Duration::from_secs(5));
    let force = TeardownOptions {
        mode: TeardownMode::Force,
        remove_volumes: true,
        ..TeardownOptions::default()
    };
    assert!(force.removes_volumes());
    assert_eq!(force.effective_grace(), Duration::ZERO);

    let r = RestartOptions {
        priority: RestartPriority::Immediate,
        ..RestartOptions::default()
    };
    assert_eq!(r.effective_grace(), Duration::ZERO);
    assert_eq!(
        RestartOptions::default().effective_grace(),
        Duration::from_secs(30)
    );
}

#[test]
fn orphans_need_a_real_stop_time_older_than_the_threshold() {
    let now = Timestamp::from_unix_millis(100 * 3_600_000);
    let day = Duration::from_secs(24 * 3600);
    let mut c = ContainerInfo {
        app_id: app("n1"),
        service_name: "auth".to_owned(),
        name: "bannou-n1".to_owned(),
        backend_id: "abc".to_owned(),
        image: "bannou:latest".to_owned(),
        status: ContainerStatusType::Stopped,
        instances: 0,
        created_at: None,
        stopped_at: Some(now - day - Duration::from_secs(1)),
        labels: managed_labels(&app("n1"), "auth"),
    };
    assert!(c.is_orphaned(now, day));
    c.stopped_at = Some(now - day);
    assert!(
        !c.is_orphaned(now, day),
        "strictly older than the threshold"
    );
    c.stopped_at = None;
    assert!(
        !c.is_orphaned(now, day),
        "unknown stop time is never orphaned"
    );
    c.stopped_at = Some(Timestamp::UNIX_EPOCH);
    c.status = ContainerStatusType::Running;
    assert!(!c.is_orphaned(now, day));
    c.status = ContainerStatusType::Stopped;
    c.labels.remove(labels::MANAGED);
    assert!(!c.is_orphaned(now, day), "only our containers");
}

#[test]
fn clean_targets_expand_and_reports_count() {
    let all = expand_clean_targets(&[CleanTarget::All]);
    assert_eq!(all.len(), 4);
    assert!(!all.contains(&CleanTarget::All));
    assert_eq!(
        expand_clean_targets(&[CleanTarget::Images, CleanTarget::Images]).len(),
        1
    );
    let report = PruneReport {
        removed: vec![
            PrunedItem {
                target: CleanTarget::Volumes,
                id: "v1".to_owned(),
            },
            PrunedItem {
                target: CleanTarget::Images,
                id: "sha256:1".to_owned(),
            },
        ],
        reclaimed_bytes: 3 * 1_048_576 - 1,
        errors: Vec::new(),
    };
    assert_eq!(report.count(CleanTarget::Volumes), 1);
    assert_eq!(report.count(CleanTarget::Networks), 0);
    assert_eq!(report.reclaimed_mb(), 2);
}

#[test]
fn errors_name_the_app_and_operation() {
    let e = BackendError::NotFound { app_id: app("n1") };
    assert_eq!(e.to_string(), "no container found with app-id 'n1'");
    let u = BackendError::Unsupported {
        operation: BackendOperation::Scale,
        reason: "one container per node".to_owned(),
    };
    assert!(u.to_string().starts_with("scale is not supported"));
}

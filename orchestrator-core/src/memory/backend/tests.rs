//! Unit tests of `memory::backend`.

use super::*;
use crate::testkit::backend::{BackendSuite, backend_conformance};

fn app(s: &str) -> AppId {
    AppId::from(s)
}

fn fixture() -> (FakeBackend, ManualClock) {
    let clock = ManualClock::new(Timestamp::from_unix_millis(1_767_225_600_000));
    (FakeBackend::new(Arc::new(clock.clone())), clock)
}

async fn deploy(fake: &FakeBackend, id: &str) {
    fake.deploy_node(&NodeDeployment::new(app(id), "auth", "bannou:latest"))
        .await
        .unwrap();
}

#[tokio::test]
async fn passes_the_conformance_suite() {
    backend_conformance(&BackendSuite::default(), || async {
        Arc::new(FakeBackend::default()) as Arc<dyn ContainerBackend>
    })
    .await;
    backend_conformance(&BackendSuite::default(), || async {
        Arc::new(FakeBackend::default().without_scaling()) as Arc<dyn ContainerBackend>
    })
    .await;
}

#[tokio::test]
async fn restart_really_restarts_and_counts() {
    let (fake, clock) = fixture();
    deploy(&fake, "n1").await;
    fake.set_status(&app("n1"), ContainerStatusType::Stopped);
    clock.advance(Duration::from_secs(5));
    let out = fake
        .restart(&app("n1"), &RestartOptions::default())
        .await
        .unwrap();
    assert_eq!(out.current_instances, 1);
    assert_eq!(out.strategy, RestartStrategy::Simultaneous);
    let st = fake.status(&app("n1")).await.unwrap();
    assert_eq!(st.status, ContainerStatusType::Running);
    assert_eq!(st.restart_count, 1);
    assert_eq!(st.started_at, Some(clock.now()));
    assert_eq!(st.stopped_at, None);
}

#[tokio::test]
async fn scripted_failures_hit_once_and_only_their_target() {
    let (fake, _) = fixture();
    deploy(&fake, "n1").await;
    deploy(&fake, "n2").await;
    let boom = BackendError::runtime("boom");
    fake.fail_next(BackendOperation::Status, &app("n2"), boom.clone());
    assert!(
        fake.status(&app("n1")).await.is_ok(),
        "other app unaffected"
    );
    assert_eq!(fake.status(&app("n2")).await, Err(boom.clone()));
    assert!(fake.status(&app("n2")).await.is_ok(), "fails only once");

    fake.fail_next_call(BackendOperation::List, boom.clone());
    assert_eq!(fake.list().await, Err(boom.clone()));
    assert_eq!(fake.list().await.unwrap().len(), 2);

    fake.fail_next(BackendOperation::Deploy, &app("n3"), boom.clone());
    let n3 = NodeDeployment::new(app("n3"), "auth", "bannou:latest");
    assert_eq!(fake.deploy_node(&n3).await, Err(boom.clone()));
    assert!(
        fake.node(&app("n3")).is_none(),
        "a failed deploy changes nothing"
    );

    fake.fail_next_call(BackendOperation::CheckAvailability, boom);
    let a = fake.check_availability().await;
    assert!(!a.available);
    assert!(fake.check_availability().await.available);
}

#[tokio::test]
async fn calls_are_recorded_with_arguments() {
    let (fake, _) = fixture();
    deploy(&fake, "n1").await;
    fake.scale(&app("n1"), 3).await.unwrap();
    let _ = fake
        .teardown(&app("gone"), &TeardownOptions::default())
        .await;
    let calls = fake.take_calls();
    assert_eq!(calls.len(), 3);
    assert!(matches!(&calls[0], BackendCall::Deploy(n) if n.app_id == app("n1")));
    assert_eq!(
        calls[1],
        BackendCall::Scale {
            app_id: app("n1"),
            replicas: 3
        }
    );
    assert_eq!(calls[2].operation(), BackendOperation::Teardown);
    assert_eq!(calls[2].app_id(), Some(&app("gone")));
    assert!(fake.calls().is_empty());
}

#[tokio::test]
async fn logs_filter_by_time_and_tail_in_order() {
    let (fake, clock) = fixture();
    deploy(&fake, "n1").await;
    let start = clock.now();
    for i in 0..5 {
        clock.advance(Duration::from_secs(1));
        let stream = if i % 2 == 0 {
            LogStreamType::Stdout
        } else {
            LogStreamType::Stderr
        };
        fake.push_log(&app("n1"), stream, &format!("line {i}"));
    }
    let all = fake.logs(&app("n1"), &LogQuery::default()).await.unwrap();
    assert_eq!(all.len(), 6, "deploy line plus five");
    let tail = LogQuery {
        tail: Some(2),
        ..LogQuery::default()
    };
    let last: Vec<_> = fake
        .logs(&app("n1"), &tail)
        .await
        .unwrap()
        .into_iter()
        .map(|l| (l.stream, l.message))
        .collect();
    assert_eq!(
        last,
        [
            (LogStreamType::Stderr, "line 3".to_owned()),
            (LogStreamType::Stdout, "line 4".to_owned())
        ]
    );
    let window = LogQuery {
        since: Some(start + Duration::from_secs(2)),
        until: Some(start + Duration::from_secs(4)),
        tail: None,
    };
    let msgs: Vec<_> = fake
        .logs(&app("n1"), &window)
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.message)
        .collect();
    assert_eq!(msgs, ["line 1", "line 2"]);
}

#[tokio::test]
async fn prune_removes_only_old_stopped_nodes_and_scripted_items() {
    let (fake, clock) = fixture();
    for id in ["old", "recent", "running"] {
        deploy(&fake, id).await;
    }
    let day = Duration::from_secs(24 * 3600);
    fake.set_stopped_at(&app("old"), clock.now() - day - day);
    fake.set_stopped_at(&app("recent"), clock.now() - Duration::from_secs(60));
    fake.add_prunable(CleanTarget::Volumes, "logs-data", 2 * 1_048_576);
    fake.add_prunable(CleanTarget::Networks, "bannou_test", 0);

    let containers = BTreeSet::from([CleanTarget::Containers, CleanTarget::Volumes]);
    let report = fake.prune(&containers, Some(day)).await.unwrap();
    assert_eq!(report.count(CleanTarget::Containers), 1);
    assert_eq!(report.count(CleanTarget::Volumes), 1);
    assert_eq!(report.reclaimed_mb(), 2);
    assert_eq!(fake.app_ids(), [app("recent"), app("running")]);

    let everything = BTreeSet::from([CleanTarget::All]);
    let report = fake.prune(&everything, None).await.unwrap();
    assert_eq!(
        report.count(CleanTarget::Containers),
        1,
        "forced: any stopped"
    );
    assert_eq!(report.count(CleanTarget::Networks), 1);
    assert_eq!(fake.app_ids(), [app("running")]);
}

#[tokio::test]
async fn list_reports_stop_times_for_orphan_detection() {
    let (fake, clock) = fixture();
    deploy(&fake, "n1").await;
    let day = Duration::from_secs(24 * 3600);
    fake.set_status(&app("n1"), ContainerStatusType::Stopped);
    clock.advance(day + Duration::from_secs(1));
    let listed = fake.list().await.unwrap();
    assert_eq!(listed[0].instances, 0);
    assert!(listed[0].is_orphaned(clock.now(), day));
    assert!(!listed[0].is_orphaned(clock.now(), day + day));
}

#[tokio::test]
async fn backend_type_and_scaling_are_configurable() {
    let fake = FakeBackend::default()
        .with_backend_type(BackendType::Compose)
        .without_scaling();
    assert_eq!(fake.backend_type(), BackendType::Compose);
    deploy(&fake, "n1").await;
    assert!(matches!(
        fake.scale(&app("n1"), 2).await,
        Err(BackendError::Unsupported {
            operation: BackendOperation::Scale,
            ..
        })
    ));
}

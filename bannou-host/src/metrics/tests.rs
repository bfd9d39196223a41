use std::time::Duration;

use orchestrator_core::api::{DeployRequest, DeployResponse};
use orchestrator_core::events::BackendType;
use tokio::time::Instant;

use super::Metrics;
use crate::orchestrator::service::{Answer, ErrorKind, Outcome, ReconcileSweep, ServiceError};

/// The value of the sample `series` (name and labels exactly as encoded).
fn value(m: &Metrics, series: &str) -> Option<f64> {
    orchestrator_core::testkit::scrape::value(&m.encode(), series)
}

fn answer(success: bool) -> Answer<DeployResponse> {
    Answer::with_outcome(
        if success {
            Outcome::Ok
        } else {
            Outcome::Failed
        },
        DeployResponse {
            success,
            deployment_id: "d".to_owned(),
            backend: BackendType::Compose,
            preset: None,
            duration: "1s".to_owned(),
            topology: None,
            services: None,
            warnings: None,
            routing_laggards: None,
            switched_routes: None,
            canary: None,
        },
    )
}

#[test]
fn deploys_are_counted_by_outcome_and_dry_runs_not_at_all() {
    let m = Metrics::control_plane();
    let reverting = DeployRequest::default();
    let keeping = DeployRequest {
        auto_revert: false,
        ..DeployRequest::default()
    };
    let dry = DeployRequest {
        dry_run: true,
        ..DeployRequest::default()
    };
    let now = Instant::now();
    let announced = BackendType::InProcess;
    m.deploy_answered(&reverting, &Ok(answer(true)), announced, now);
    m.deploy_answered(&reverting, &Ok(answer(false)), announced, now);
    m.deploy_answered(&keeping, &Ok(answer(false)), announced, now);
    m.deploy_answered(
        &keeping,
        &Err(ServiceError::conflict("busy")),
        announced,
        now,
    );
    m.deploy_answered(&dry, &Ok(answer(true)), announced, now);
    for outcome in ["succeeded", "reverted", "failed", "refused"] {
        let series = format!("bannou_orchestrator_deploys_total{{outcome=\"{outcome}\"}}");
        assert_eq!(value(&m, &series), Some(1.0), "{outcome}");
    }
    // Durations of the deploys that ran, by the backend they ran on; refusals have none.
    let ran = "bannou_orchestrator_deploy_duration_seconds_count{backend=\"compose\"}";
    assert_eq!(value(&m, ran), Some(3.0));
    let refused = "bannou_orchestrator_deploy_duration_seconds_count{backend=\"inprocess\"}";
    assert_eq!(value(&m, refused), None);
}

#[test]
fn acquires_are_classified_and_unknown_pools_collapse_to_one_label() {
    let m = Metrics::control_plane();
    let now = Instant::now();
    m.pool_load("known", &orchestrator_pools::model::PoolLoad::default());
    let busy: Result<(), ServiceError> = Err(ServiceError::busy("none free"));
    m.acquire_answered("known", &Ok(()), Duration::ZERO, false, now);
    m.acquire_answered("known", &busy, Duration::ZERO, false, now);
    m.acquire_answered("known", &busy, Duration::from_secs(1), false, now);
    m.acquire_answered("known", &busy, Duration::from_secs(1), true, now);
    m.acquire_answered(
        "known",
        &Err::<(), _>(ServiceError::unavailable("store")),
        Duration::ZERO,
        false,
        now,
    );
    for (pool, outcome) in [
        ("known", "granted"),
        ("known", "exhausted"),
        ("known", "timeout"),
        ("known", "cancelled"),
        ("known", "error"),
    ] {
        let series = format!(
            "bannou_orchestrator_pool_acquire_duration_seconds_count{{pool=\"{pool}\",outcome=\"{outcome}\"}}"
        );
        assert_eq!(value(&m, &series), Some(1.0), "{series}");
    }
    for made_up in ["a", "b", "c"] {
        m.acquire_answered(made_up, &busy, Duration::ZERO, false, now);
    }
    let unknown = "bannou_orchestrator_pool_acquire_duration_seconds_count{pool=\"unconfigured\",outcome=\"exhausted\"}";
    assert_eq!(value(&m, unknown), Some(3.0));
    assert!(!m.encode().contains("pool=\"a\""));
}

#[test]
fn reconcile_sweeps_count_outcomes_and_repairs() {
    let m = Metrics::control_plane();
    let skipped = |e: &ServiceError| e.kind == ErrorKind::Conflict;
    let quiet = ReconcileSweep::default();
    let repaired = ReconcileSweep {
        redeployed: vec!["a".into(), "b".into()],
        removed: vec!["c".into()],
        ..ReconcileSweep::default()
    };
    assert_eq!(m.reconcile_swept(Ok(quiet.clone()), skipped), Ok(quiet));
    m.reconcile_swept(Ok(repaired), skipped).unwrap();
    m.reconcile_swept(Err(ServiceError::conflict("deploying")), skipped)
        .unwrap_err();
    m.reconcile_swept(Err(ServiceError::internal("backend")), skipped)
        .unwrap_err();
    for outcome in ["quiet", "repaired", "skipped", "failed"] {
        let series = format!("bannou_orchestrator_reconcile_sweeps_total{{outcome=\"{outcome}\"}}");
        assert_eq!(value(&m, &series), Some(1.0), "{outcome}");
    }
    let redeployed = "bannou_orchestrator_reconcile_repairs_total{kind=\"redeployed\"}";
    assert_eq!(value(&m, redeployed), Some(2.0));
}

#[test]
fn a_plain_node_exports_only_its_own_families() {
    let node = Metrics::node();
    assert!(
        node.sample_names().iter().all(|n| {
            // The process's own family is in every registry.
            n.starts_with("bannou_orchestrator_node_")
                || n == "bannou_orchestrator_trace_spans_dropped_total"
        }),
        "{:?}",
        node.sample_names()
    );
    node.heartbeat_sent(true);
    node.heartbeat_sent(false);
    node.deploy_finished(
        super::DeployOutcome::Succeeded,
        BackendType::Compose,
        Instant::now(),
    );
    let text = node.encode();
    assert!(
        text.contains("bannou_orchestrator_node_heartbeats_sent_total 1"),
        "{text}"
    );
    assert!(
        text.contains("bannou_orchestrator_node_heartbeats_failed_total 1"),
        "{text}"
    );
    assert!(!text.contains("deploys_total"), "{text}");
}

#[test]
fn recent_acquire_latency_is_a_bounded_window_of_granted_acquires_per_configured_pool() {
    let m = Metrics::control_plane();
    m.pool_load("known", &orchestrator_pools::model::PoolLoad::default());
    assert_eq!(m.recent_acquire_ms("known"), None, "nothing granted yet");
    let busy: Result<(), ServiceError> = Err(ServiceError::busy("none free"));
    let long_ago = Instant::now() - Duration::from_secs(10);
    // A refusal and an unknown pool's grant are not in the window.
    m.acquire_answered("known", &busy, Duration::from_secs(1), false, long_ago);
    m.acquire_answered("other", &Ok(()), Duration::ZERO, false, long_ago);
    assert_eq!(m.recent_acquire_ms("known"), None);
    assert_eq!(m.recent_acquire_ms("other"), None);
    // Slow grants, then a full window of fast ones pushes them all out.
    for _ in 0..200 {
        m.acquire_answered("known", &Ok(()), Duration::ZERO, false, long_ago);
    }
    let (p50, p99) = m.recent_acquire_ms("known").unwrap();
    assert!(p50 >= 10_000.0 && p99 >= 10_000.0, "{p50} {p99}");
    for _ in 0..super::RECENT_ACQUIRES {
        m.acquire_answered("known", &Ok(()), Duration::ZERO, false, Instant::now());
    }
    let (p50, p99) = m.recent_acquire_ms("known").unwrap();
    assert!(p50 < 1_000.0 && p99 < 1_000.0, "{p50} {p99}");
}

//! The wave health wait over HTTP against the whole host in process: each service a
//! wave's node hosts is judged by that node's own heartbeats, wherever the service is
//! routed during the wave (a node leaves a service routed elsewhere out of its beats,
//! docs/COMPATIBILITY.md#mappings-consumers, so only its silence from the start is
//! accepted). Loopback only; every wait is bounded.

mod common;

use std::time::Duration;

use common::{FAULTY, Host, config, deploy, our_presets};

/// The wave's health wait judges each service by the new node's own reports, wherever it
/// is routed: over `local-ten`, `realm` still routes to `local-09` while `faulty-realm`
/// reports it unavailable, and the deploy fails all the same, then reverts to `local-ten`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_reported_unavailable_fails_its_wave_while_routed_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("faulty.yaml"), FAULTY).unwrap();
    std::fs::copy(
        our_presets().join("local-ten.yaml"),
        dir.path().join("local-ten.yaml"),
    )
    .unwrap();
    let mut cfg = config(dir.path());
    cfg.wave_timeout = Duration::from_secs(2);
    let host = Host::start(cfg).await;
    let reply = host.api.deploy(&deploy("local-ten")).await.unwrap();
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(host.route("realm").await.as_deref(), Some("local-09"));

    let reply = host.api.deploy(&deploy("faulty")).await.unwrap();
    assert_eq!(
        reply.status, 500,
        "the faulty deploy fails: {:?}",
        reply.body
    );
    let warnings = reply.body.warnings.clone().unwrap_or_default();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("faulty-realm") && w.contains("realm")),
        "{warnings:?}"
    );
    // Reverted: local-ten runs and routes, the faulty nodes are gone.
    assert!(host.endpoints("faulty-account").is_empty());
    assert!(host.endpoints("faulty-realm").is_empty());
    assert_eq!(host.endpoints("local-09").len(), 1, "local-09 runs");
    assert_eq!(host.route("realm").await.as_deref(), Some("local-09"));
    assert_eq!(host.route("account").await.as_deref(), Some("local-01"));
    host.shutdown().await;
}

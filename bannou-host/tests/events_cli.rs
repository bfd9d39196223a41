//! `deploy --follow` through the real binary against a running `serve`:
//! a failing deploy prints its waves, the failed one with its node, and exits non-zero; a
//! healthy one prints every wave in order, then the summary, and exits 0.
//!
//! Real processes and loopback sockets; every wait is bounded and nothing is asserted
//! about speed.

use std::path::Path;
use std::time::Duration;

use bannou_host::client::ApiClient;

mod common;
use common::{PATIENCE, Running, free_port};

/// Two waves whose second never turns healthy (`tests/fixtures/faults/`).
const FAULTY: &str = include_str!("../../tests/fixtures/faults/faulty.yaml");

fn presets() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let ours = Path::new(env!("CARGO_MANIFEST_DIR")).join("../presets/local-ten.yaml");
    std::fs::copy(ours, dir.path().join("local-ten.yaml")).unwrap();
    std::fs::write(dir.path().join("faulty.yaml"), FAULTY).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_follow_against_serve_prints_the_waves_and_exits_with_the_outcome() {
    let dir = presets();
    let presets_path = dir.path().to_str().unwrap().to_owned();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let env = [
        ("ORCHESTRATOR_PRESETS_HOST_PATH", presets_path.as_str()),
        ("ORCHESTRATOR_WAVE_TIMEOUT_SECONDS", "2"),
    ];
    let mut serve = Running::spawn(&["serve", "--listen", &format!("127.0.0.1:{port}")], &env);
    let api = ApiClient::new(&url)
        .unwrap()
        .with_timeout(Duration::from_secs(10));
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while api.health().await.is_err() {
        assert!(serve.is_running(), "serve exited:\n{}", serve.stderr());
        assert!(
            tokio::time::Instant::now() < deadline,
            "serve never answered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut failing = Running::spawn(&["deploy", "faulty", "--follow", "--api", &url], &[]);
    let exit = failing.wait().await;
    let text = failing.stdout();
    println!("{text}\n{}", failing.stderr());
    assert!(!exit.success(), "a failed deploy exits non-zero: {text}");
    assert!(text.contains("wave 1 healthy"), "{text}");
    assert!(text.contains("wave 2 FAILED"), "{text}");
    assert!(text.contains("faulty-realm"), "{text}");
    assert!(text.contains("deployment failed"), "{text}");

    let mut healthy = Running::spawn(&["deploy", "local-ten", "--follow", "--api", &url], &[]);
    let exit = healthy.wait().await;
    let text = healthy.stdout();
    println!("{text}\n{}", healthy.stderr());
    assert!(exit.success(), "{exit}: {text}\n{}", healthy.stderr());
    let at = |needle: &str| {
        text.find(needle)
            .unwrap_or_else(|| panic!("`{needle}` missing:\n{text}"))
    };
    let order = [
        at("of preset `local-ten` started"),
        at("wave 1/2 (deploy) started"),
        at("wave 1 healthy"),
        at("wave 2/2 (deploy) started"),
        at("wave 2 healthy"),
        at("deployment completed"),
        at("Deployed preset `local-ten`"),
    ];
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{text}");
}

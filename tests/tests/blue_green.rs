//! A blue-green deploy under load (D62, docs/DECISIONS.md#d62): a client calls a service
//! through a gateway node's mesh (`GET /account/ping` on the gateway, forwarded by
//! routing to the node that routes `account`) every few milliseconds for the whole deploy,
//! while the account node changes and comes up beside the old one under its other app-id.
//! No call fails, and once the deploy answers every call lands on the new node. The
//! figures (calls, failures, the window in which both nodes answered, the acknowledgement
//! wait) are printed, never asserted.
//!
//! In-process always; the same on Docker (our static image, `BANNOU_TEST_IMAGE`, see
//! `containers::testing`) is skipped without Docker and redis-server unless
//! `BANNOU_TEST_REQUIRE` names them.

mod common;

use std::time::Duration;

use common::{Host, PATIENCE, config, http, our_presets};
use orchestrator_core::api::{DeployRequest, DeployResponse, DeployStrategy};
use orchestrator_core::events::BackendType;
use tokio::sync::watch;
use tokio::time::Instant;

/// Time between two calls of the client.
const EVERY: Duration = Duration::from_millis(5);

/// [`common::gateway_and_account`] deployed with `strategy`.
fn request(prefix: &str, tag: &str, strategy: DeployStrategy) -> DeployRequest {
    DeployRequest {
        strategy,
        ..common::gateway_and_account(prefix, tag)
    }
}

/// One call's outcome: when it was sent (since `origin`), and the app-id that
/// answered or why it failed.
type Call = (Duration, Result<String, String>);

/// Calls `url` every [`EVERY`] (one call at a time) until `stop` turns true.
async fn call_steadily(url: String, origin: Instant, mut stop: watch::Receiver<bool>) -> Vec<Call> {
    let client = http();
    let mut ticks = tokio::time::interval(EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut calls = Vec::new();
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stop.changed() => return calls,
        }
        let sent = origin.elapsed();
        let outcome = common::mesh_ping(&client, &url).await;
        calls.push((sent, outcome));
    }
}

/// Runs the blue-green deploy of `tag` under load on `url` and checks and prints the
/// figures: 0 failed calls, every call after the answer on `new`.
async fn switch_under_load(
    host: &Host,
    url: &str,
    prefix: &str,
    old: &str,
    new: &str,
    backend: Option<BackendType>,
) {
    let (stop, stopped) = watch::channel(false);
    let origin = Instant::now();
    let load = tokio::spawn(call_steadily(url.to_owned(), origin, stopped));
    // Some calls before the deploy, on the old node.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut req = request(prefix, "2", DeployStrategy::BlueGreen);
    req.backend = backend;
    let sent_at = origin.elapsed();
    let reply = host.api.deploy(&req).await.unwrap();
    let answered_at = origin.elapsed();
    let deploy_took = answered_at - sent_at;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.send(true).unwrap();
    let calls = tokio::time::timeout(PATIENCE, load)
        .await
        .expect("the client stops")
        .unwrap();

    assert_eq!(reply.status, 200, "{:?}", reply.body.warnings);
    let body: DeployResponse = reply.body;
    let switch = body.switched_routes.clone().expect("the switch is named");
    assert_eq!(switch.replaced.get(old).map(String::as_str), Some(new));
    assert_eq!(switch.routes.get("account").map(String::as_str), Some(new));

    let failures: Vec<&Call> = calls.iter().filter(|(_, o)| o.is_err()).collect();
    let by = |app: &str| -> Vec<Duration> {
        calls
            .iter()
            .filter(|(_, o)| o.as_deref() == Ok(app))
            .map(|(t, _)| *t)
            .collect()
    };
    let (on_old, on_new) = (by(old), by(new));
    let first_new = on_new.first().copied();
    let last_old = on_old.last().copied();
    let after_answer: Vec<&Call> = calls.iter().filter(|(t, _)| *t >= answered_at).collect();
    println!(
        "blue-green under load ({}): {} calls every {:?}, {} failed; {} answered by {old}, {} by {new}; \
         deploy {:?}; mappings v{:?}; acknowledgement wait {} ms; both answered between {:?} and {:?} \
         (overlap {:?}); {} calls after the answer",
        backend.map_or("in-process", |b| b.as_str()),
        calls.len(),
        EVERY,
        failures.len(),
        on_old.len(),
        on_new.len(),
        deploy_took,
        switch.mappings_version,
        switch.ack_wait_ms,
        first_new,
        last_old,
        last_old.zip(first_new).map(|(l, f)| l.saturating_sub(f)),
        after_answer.len(),
    );
    assert!(failures.is_empty(), "failed calls: {failures:?}");
    assert!(
        !on_old.is_empty() && !on_new.is_empty(),
        "both nodes answered"
    );
    assert!(!after_answer.is_empty());
    for (t, outcome) in after_answer {
        assert_eq!(
            outcome.as_deref(),
            Ok(new),
            "call at {t:?} after the answer"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blue_green_deploy_under_load_in_process_fails_no_call() {
    let host = Host::start(config(&our_presets())).await;
    let prefix = "lt";
    let first = host
        .api
        .deploy(&request(prefix, "1", DeployStrategy::Replace))
        .await
        .unwrap();
    assert_eq!(first.status, 200, "{:?}", first.body.warnings);
    let gw = host.endpoints("lt-gw");
    assert_eq!(gw.len(), 1);
    let url = format!("{}/account/ping", gw[0]);
    common::until_answered_by(&url, "lt-acct").await;

    switch_under_load(&host, &url, prefix, "lt-acct", "lt-acct-green", None).await;

    assert_eq!(host.listed().await, ["lt-acct-green", "lt-gw"]);
    assert_eq!(
        host.route("account").await.as_deref(),
        Some("lt-acct-green")
    );
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blue_green_deploy_under_load_on_docker_fails_no_call() {
    let test = "a_blue_green_deploy_under_load_on_docker_fails_no_call";
    common::on_docker(test, "bg", |scene| async move {
        let prefix = &scene.prefix;
        let host = Host::start(scene.config()).await;

        let mut first = request(prefix, "1", DeployStrategy::Replace);
        first.backend = Some(BackendType::Compose);
        let reply = host.api.deploy(&first).await.unwrap();
        assert_eq!(reply.status, 200, "{:?}", reply.body.warnings);
        let (gw, old, new) = (
            format!("{prefix}-gw"),
            format!("{prefix}-acct"),
            format!("{prefix}-acct-green"),
        );
        let ip = scene.container_ip(&format!("bannou-{gw}")).await;
        let url = format!("http://{ip}:80/account/ping");
        common::until_answered_by(&url, &old).await;

        switch_under_load(&host, &url, prefix, &old, &new, Some(BackendType::Compose)).await;

        assert_eq!(host.route("account").await.as_deref(), Some(new.as_str()));
        let down = host
            .api
            .teardown(&orchestrator_core::api::TeardownRequest::default())
            .await
            .unwrap();
        assert!(down.errors.is_none(), "{:?}", down.errors);
        host.shutdown().await;
    })
    .await;
}

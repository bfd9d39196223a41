//! The canary split and abort (issue 20, D64 (docs/DECISIONS.md#d64)), in process,
//! through a real node's mesh: a gateway node forwards `GET /account/ping` by routing to
//! the node(s) that route `account`; the answer names the node that served it. A canary
//! deploy at weight 10 splits account between the old node and the new one; over 10,000
//! calls the new node's share is within 3 points of 10 %. Then the canary is aborted while
//! a client keeps calling: no call fails, and every call sent after the abort answered
//! lands on the old node. The figures are printed.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use bannou_host::cli::{Cli, Command};
use clap::Parser;
use common::{Host, PATIENCE, config, http, our_presets};
use orchestrator_core::api::{CanaryActionRequest, CanaryOutcome, DeployRequest, DeployStrategy};
use tokio::sync::watch;
use tokio::time::Instant;

/// Calls of the split measurement.
const CALLS: u32 = 10_000;
/// Concurrent clients sharing them (keeps the run to seconds).
const CLIENTS: u32 = 8;

/// `cn-gw` and `cn-acct` (`TAG=tag`): [`common::gateway_and_account`].
fn request(tag: &str) -> DeployRequest {
    common::gateway_and_account("cn", tag)
}

/// `CALLS` pings of `url` by `CLIENTS` clients: answers per app-id, and the failures.
async fn measure(url: &str) -> (BTreeMap<String, u32>, Vec<String>) {
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let url = url.to_owned();
            tokio::spawn(async move {
                let client = http();
                let mut answered: BTreeMap<String, u32> = BTreeMap::new();
                let mut failed = Vec::new();
                for _ in 0..CALLS / CLIENTS {
                    match common::mesh_ping(&client, &url).await {
                        Ok(app) => *answered.entry(app).or_default() += 1,
                        Err(e) => failed.push(e),
                    }
                }
                (answered, failed)
            })
        })
        .collect();
    let mut answered = BTreeMap::new();
    let mut failed = Vec::new();
    for task in tasks {
        let (a, f) = tokio::time::timeout(PATIENCE, task)
            .await
            .expect("the measurement ends")
            .unwrap();
        for (app, n) in a {
            *answered.entry(app).or_default() += n;
        }
        failed.extend(f);
    }
    (answered, failed)
}

/// Pings `url` one at a time until `stop` turns true: when each was sent (since
/// `origin`) and its outcome.
async fn call_steadily(
    url: String,
    origin: Instant,
    mut stop: watch::Receiver<bool>,
) -> Vec<(Duration, Result<String, String>)> {
    let client = http();
    let mut calls = Vec::new();
    while !*stop.borrow_and_update() {
        let sent = origin.elapsed();
        calls.push((sent, common::mesh_ping(&client, &url).await));
        tokio::task::yield_now().await;
    }
    calls
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_at_weight_10_gets_its_share_and_an_abort_under_load_fails_no_call() {
    let host = Host::start(config(&our_presets())).await;
    let first = host.api.deploy(&request("1")).await.unwrap();
    assert_eq!(first.status, 200, "{:?}", first.body.warnings);
    let gw = host.endpoints("cn-gw");
    assert_eq!(gw.len(), 1);
    let url = format!("{}/account/ping", gw[0]);
    common::until_answered_by(&url, "cn-acct").await;

    // The canary: cn-acct-green beside cn-acct, 10 % of account's calls to it.
    let canary = DeployRequest {
        strategy: DeployStrategy::Canary,
        canary_weight: Some(10),
        ..request("2")
    };
    let reply = host.api.deploy(&canary).await.unwrap();
    assert_eq!(reply.status, 200, "{:?}", reply.body.warnings);
    let status = reply.body.canary.clone().expect("a canary runs");
    assert_eq!(status.services, ["account"]);
    assert_eq!(status.new_nodes, ["cn-acct-green"]);
    assert!(
        reply.body.routing_laggards.is_none(),
        "the gateway applied the split before the answer: {:?}",
        reply.body.routing_laggards
    );
    assert_eq!(host.route("account").await.as_deref(), Some("cn-acct"));
    // While it runs, another deploy is refused with a conflict naming it.
    let refused = host.api.deploy(&request("3")).await.unwrap_err();
    assert_eq!(refused.status(), Some(409), "{refused}");
    assert!(
        refused.to_string().contains(&reply.body.deployment_id),
        "{refused}"
    );

    let begun = Instant::now();
    let (answered, failed) = measure(&url).await;
    let took = begun.elapsed();
    let on_new = answered.get("cn-acct-green").copied().unwrap_or(0);
    let share = f64::from(on_new) * 100.0 / f64::from(CALLS);
    println!(
        "canary split: {CALLS} calls by {CLIENTS} clients in {took:?}: {answered:?}, {} failed; \
         new share {share:.2} % for a weight of 10",
        failed.len()
    );
    assert!(
        failed.is_empty(),
        "failed calls: {:?}",
        &failed[..failed.len().min(5)]
    );
    assert_eq!(answered.values().sum::<u32>(), CALLS);
    assert_eq!(answered.len(), 2, "{answered:?}");
    assert!((share - 10.0).abs() <= 3.0, "new share {share:.2} %");

    // The abort under load.
    let (stop, stopped) = watch::channel(false);
    let origin = Instant::now();
    let load = tokio::spawn(call_steadily(url.clone(), origin, stopped));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let sent_at = origin.elapsed();
    let aborted = host
        .api
        .abort(&CanaryActionRequest::default())
        .await
        .expect("aborted");
    let answered_at = origin.elapsed();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.send(true).unwrap();
    let calls = tokio::time::timeout(PATIENCE, load)
        .await
        .expect("the client stops")
        .unwrap();

    assert_eq!(aborted.outcome, CanaryOutcome::Aborted);
    assert_eq!(aborted.stopped_nodes, ["cn-acct-green"]);
    let failures: Vec<_> = calls.iter().filter(|(_, o)| o.is_err()).collect();
    let during = calls
        .iter()
        .filter(|(t, _)| *t >= sent_at && *t < answered_at)
        .count();
    let after: Vec<_> = calls.iter().filter(|(t, _)| *t >= answered_at).collect();
    println!(
        "canary abort under load: {} calls, {} failed, {during} during the abort ({:?}, \
         mappings v{:?}), {} after it",
        calls.len(),
        failures.len(),
        answered_at - sent_at,
        aborted.mappings_version,
        after.len()
    );
    assert!(failures.is_empty(), "failed calls: {failures:?}");
    assert!(!after.is_empty());
    for (t, outcome) in after {
        assert_eq!(
            outcome.as_deref(),
            Ok("cn-acct"),
            "call at {t:?} after the abort"
        );
    }
    assert_eq!(host.listed().await, ["cn-acct", "cn-gw"]);
    assert_eq!(host.route("account").await.as_deref(), Some("cn-acct"));

    // Nothing runs any more: the CLI's `promote` is refused (404).
    let cli =
        Cli::try_parse_from(["bannou-host", "promote", "--api", &host.server.base_url()]).unwrap();
    let Command::Promote(args) = cli.command else {
        panic!("not promote")
    };
    let mut out = Vec::new();
    let err = bannou_host::cli::canary::run_promote(args, &mut out)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("404"), "{err:#}");
    assert!(err.to_string().contains("no canary"), "{err:#}");
    host.shutdown().await;
}

//! The control plane through the real binary:
//!
//! - its own logs: `POST /orchestrator/logs {}` (target `bannou`) on a running `serve`
//!   answers the process's recent lines, honouring `tail` and `since`, and `bannou-host
//!   logs` without an app-id prints them; a host built in process, where no subscriber
//!   feeds the buffer, still answers 200;
//! - `up` after a crash: `kill -9` of an `up` on Redis leaves its leader lease behind;
//!   the next `up` on the same Redis says whose lease it waits for, leads once it ran out,
//!   deploys and exits 0 (needs redis-server: skipped without it unless
//!   `BANNOU_TEST_REQUIRE` names `redis`).
//!
//! Real processes and loopback sockets; every wait is bounded and nothing is asserted
//! about speed.

use std::time::Duration;

use bannou_host::client::ApiClient;
use bannou_host::config::HostConfig;
use bannou_host::server::Server;
use orchestrator_backends::redis::server::RedisServer;
use orchestrator_core::api::GetLogsRequest;

mod common;
use common::{PATIENCE, Running, answering, free_port};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_control_plane_answers_its_own_logs_over_http_and_the_cli() {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    // No RUST_LOG: the buffer keeps `info` and above by default.
    let mut serve = Running::spawn(&["serve", "--listen", &format!("127.0.0.1:{port}")], &[]);
    let api = ApiClient::new(&url)
        .unwrap()
        .with_timeout(Duration::from_secs(10));
    answering(&api, &mut serve).await;

    // The default target is the control plane: 200 with its own lines, oldest first.
    // (The API answers a moment before `serve` logs that it started and where it serves:
    // poll until the start line and at least one more are in.)
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let all = loop {
        let all = api.logs(&GetLogsRequest::default()).await.unwrap();
        assert_eq!(all.service.as_deref(), Some("bannou"));
        let started = all
            .logs
            .iter()
            .any(|l| l.message.contains("INFO") && l.message.contains("control plane started"));
        if started && all.logs.len() >= 2 {
            break all;
        }
        assert!(tokio::time::Instant::now() < deadline, "{all:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        all.logs
            .windows(2)
            .all(|w| w[0].timestamp <= w[1].timestamp)
    );

    // `tail`: the newest lines only, and the answer says older ones exist.
    let tail = api
        .logs(&GetLogsRequest {
            tail: 1,
            ..GetLogsRequest::default()
        })
        .await
        .unwrap();
    assert_eq!(tail.logs.len(), 1);
    assert!(tail.truncated);
    assert!(tail.logs[0].timestamp >= all.logs.last().unwrap().timestamp);

    // `since`: nothing older than the instant given.
    let since = all.logs.last().unwrap().timestamp;
    let recent = api
        .logs(&GetLogsRequest {
            since: Some(since.to_string()),
            ..GetLogsRequest::default()
        })
        .await
        .unwrap();
    assert!(!recent.logs.is_empty(), "the line `since` was copied from");
    assert!(recent.logs.iter().all(|l| l.timestamp >= since));
    if all.logs[0].timestamp < since {
        assert!(
            recent.logs.iter().all(|l| l.message != all.logs[0].message),
            "the first line ({}) is older than {since}",
            all.logs[0].timestamp
        );
    }

    // The CLI without an app-id prints them.
    let mut logs = Running::spawn(&["logs", "--api", &url], &[]);
    let exit = logs.wait().await;
    assert!(exit.success(), "{exit}\n{}", logs.stderr());
    let printed = logs.stdout();
    assert!(
        printed
            .lines()
            .any(|l| l.contains("Stderr") && l.contains("control plane started")),
        "{printed}"
    );
    let mut last = Running::spawn(&["logs", "--api", &url, "--tail", "1"], &[]);
    let exit = last.wait().await;
    assert!(exit.success(), "{exit}\n{}", last.stderr());
    let printed = last.stdout();
    assert_eq!(
        printed.lines().count(),
        2,
        "one line and `(truncated)`:\n{printed}"
    );
    assert_eq!(printed.lines().last(), Some("(truncated)"));
    println!(
        "serve: {} own lines over HTTP, tail 1, since {since}: {}; `logs` CLI prints them",
        all.logs.len(),
        recent.logs.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_process_host_without_a_subscriber_still_answers_its_logs() {
    let mut config = HostConfig::from_env(|_| None).unwrap();
    config.listen = "127.0.0.1:0".parse().unwrap();
    let server = Server::start(config).await.unwrap();
    let api = ApiClient::new(&server.base_url())
        .unwrap()
        .with_timeout(Duration::from_secs(10));
    let answer = api.logs(&GetLogsRequest::default()).await;
    server.shutdown().await;
    let answer = answer.expect("200, never 404");
    assert_eq!(answer.service.as_deref(), Some("bannou"));
    println!(
        "in-process host, no subscriber: 200 with {} line(s)",
        answer.logs.len()
    );
}

/// One node, one wave.
const SOLO: &str = "\
name: solo
description: one node
topology:
  nodes:
    - name: solo-auth
      services: [auth]
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_after_a_kill_9_waits_for_the_dead_leaders_lease_then_deploys() {
    let test = "up_after_a_kill_9_waits_for_the_dead_leaders_lease_then_deploys";
    let Some(redis) = RedisServer::for_test(test) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let presets = dir.path().join("presets");
    std::fs::create_dir(&presets).unwrap();
    std::fs::write(presets.join("solo.yaml"), SOLO).unwrap();
    let presets = presets.to_str().unwrap();
    let redis_url = redis.url();
    // A short lease keeps the wait short (3 s, renewed every second).
    let env = [("ORCHESTRATOR_LEADER_LEASE_SECONDS", "3")];
    let up = |listen: &str, exit: bool| {
        let mut args = vec![
            "up",
            "solo",
            "--presets",
            presets,
            "--redis",
            &redis_url,
            "--listen",
        ];
        args.push(listen);
        if exit {
            args.push("--exit");
        }
        Running::spawn(&args, &env)
    };

    let port = free_port();
    let mut first = up(&format!("127.0.0.1:{port}"), false);
    first.wait_for_stdout("serving the API on").await;
    let api = ApiClient::new(&format!("http://127.0.0.1:{port}"))
        .unwrap()
        .with_timeout(Duration::from_secs(10));
    let health = answering(&api, &mut first).await;
    assert_eq!(health["leader"], true, "{health}");
    let dead = health["leadership"]["candidate"]
        .as_str()
        .expect("candidate id")
        .to_owned();
    // kill -9: no teardown, no release of the lease.
    first.kill();

    let mut second = up(&format!("127.0.0.1:{}", free_port()), true);
    let exit = second.wait().await;
    let out = second.stdout();
    assert!(exit.success(), "{exit}\n{out}\n{}", second.stderr());
    assert!(
        out.contains(&format!("waiting for the leader lease held by {dead}")),
        "{out}"
    );
    let waited = out.find("leading the control plane").expect("led");
    let deployed = out.find("Deployed preset `solo`").expect("deployed");
    assert!(waited < deployed, "led before deploying:\n{out}");
    assert!(out.contains("Stopped 1 container(s)"), "teardown:\n{out}");
    println!("up after kill -9: waited for {dead}'s lease, deployed, tore down, exit 0:\n{out}");
}

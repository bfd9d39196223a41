//! `GET /orchestrator/events` over HTTP against the whole host in process: a follower connected before a deploy sees every wave in order and the outcome; a
//! reconnect with `Last-Event-ID` misses nothing, and one with an id the replica no longer
//! holds gets `reset`; idle subscribers and one that never reads do not hold up a deploy;
//! `?types=` filters; the bearer token guards the stream; a failing wave shows as
//! `wave.failed` and `deployment.failed`; `deploy --follow` prints the waves and fails
//! with the deploy. With Redis, two replicas on one server: the follower's stream shows
//! the leader's deploy.
//!
//! Loopback only; every wait is bounded by [`PATIENCE`] and nothing is asserted about
//! speed.

mod common;

use std::path::Path;
use std::time::Duration;

use bannou_host::client::{ApiClient, ClientError, EventStream};
use bannou_host::config::Secret;
use common::{FAULTY, Host, PATIENCE, config, deploy, http, our_presets};
use futures::StreamExt;
use orchestrator_backends::redis::server::RedisServer;
use orchestrator_core::api::DeployRequest;
use serde_json::Value;

/// One L1 node hosting `auth`.
const BASE: &str = "\
name: base
description: One auth node
category: testing
topology:
  nodes:
    - name: base-auth
      services: [auth]
";

/// One received event: id, type, data.
#[derive(Debug, Clone)]
struct Seen {
    id: String,
    kind: String,
    data: Value,
}

/// Reads `stream` until `last` says stop (bounded by [`PATIENCE`]).
async fn read_until(stream: &mut EventStream, mut last: impl FnMut(&Seen) -> bool) -> Vec<Seen> {
    let mut seen = Vec::new();
    let read = async {
        while let Some(item) = stream.next().await {
            let e = item.expect("a well-formed event");
            let s = Seen {
                id: e.id,
                kind: e.event,
                data: serde_json::from_str(&e.data).unwrap_or(Value::Null),
            };
            let stop = last(&s);
            seen.push(s);
            if stop {
                return;
            }
        }
        panic!("the stream ended early");
    };
    tokio::time::timeout(PATIENCE, read)
        .await
        .expect("the events arrive in time");
    seen
}

fn is_outcome(s: &Seen) -> bool {
    matches!(
        s.kind.as_str(),
        "deployment.completed" | "deployment.failed"
    )
}

fn kinds(seen: &[Seen]) -> Vec<String> {
    seen.iter()
        .map(|s| match s.data["wave"].as_u64() {
            Some(w) => format!("{} {w}", s.kind),
            None => s.kind.clone(),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_sees_every_wave_in_order_and_a_reconnect_misses_nothing() {
    let host = Host::start(config(&our_presets())).await;
    let mut stream = host
        .api
        .events(Some("deployment,wave"), None, None)
        .await
        .unwrap();
    let reply = host.api.deploy(&deploy("local-ten")).await.unwrap();
    assert_eq!(reply.status, 200, "{:?}", reply.body.warnings);
    let seen = read_until(&mut stream, is_outcome).await;
    println!("seen: {:?}", kinds(&seen));

    let waves = seen[1].data["waves"].as_u64().expect("a wave event second");
    assert!(waves >= 2, "local-ten deploys in two waves or more");
    let mut expected = vec!["deployment.started".to_owned()];
    for w in 1..=waves {
        expected.push(format!("wave.started {w}"));
        expected.push(format!("wave.healthy {w}"));
    }
    expected.push("deployment.completed".to_owned());
    assert_eq!(
        kinds(&seen),
        expected,
        "every wave, in order, then the outcome"
    );
    for s in &seen {
        assert_eq!(
            s.data["deploymentId"], reply.body.deployment_id,
            "{s:?} belongs to the deploy"
        );
    }
    let ids: Vec<u64> = seen.iter().map(|s| s.id.parse().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids grow: {ids:?}");
    let healthy_1 = &seen[2];
    assert!(
        healthy_1.data["nodes"]
            .as_array()
            .is_some_and(|n| n.iter().any(|n| n == "local-01")),
        "wave 1 names its nodes: {healthy_1:?}"
    );

    // Reconnecting after the second event replays the rest, exactly.
    let mut resumed = host
        .api
        .events(Some("deployment,wave"), None, Some(&seen[1].id))
        .await
        .unwrap();
    let replay = read_until(&mut resumed, is_outcome).await;
    assert_eq!(kinds(&replay), kinds(&seen[2..]), "nothing missed");
    assert_eq!(
        replay.iter().map(|s| &s.id).collect::<Vec<_>>(),
        seen[2..].iter().map(|s| &s.id).collect::<Vec<_>>()
    );

    // An id the replica never held (an earlier life's) gets `reset`, then live events.
    let mut stale = host
        .api
        .events(Some("deployment,wave"), None, Some("1"))
        .await
        .unwrap();
    let first = read_until(&mut stale, |_| true).await;
    assert_eq!(first[0].kind, "reset", "{first:?}");
    assert_eq!(first[0].data["requested"], 1);
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_changes_seen_by_the_heartbeat_consumer_are_streamed_not_every_beat() {
    let host = Host::start(config(&our_presets())).await;
    let mut changes = host
        .api
        .events(Some("health.changed"), None, None)
        .await
        .unwrap();
    // Nodes that beat every second.
    let request = DeployRequest {
        environment: Some(
            [(
                "BANNOU_HEARTBEAT_INTERVAL_SECONDS".to_owned(),
                "1".to_owned(),
            )]
            .into(),
        ),
        ..deploy("local-ten")
    };
    let reply = host.api.deploy(&request).await.unwrap();
    assert_eq!(reply.status, 200, "{:?}", reply.body.warnings);
    let seen = read_until(&mut changes, |s| s.data["appId"] == "local-10").await;
    let first = seen
        .iter()
        .find(|s| s.data["appId"] == "local-01")
        .expect("local-01 came up");
    assert_eq!(first.data["newInstance"], true, "{first:?}");
    assert!(
        first.id.parse::<u64>().is_ok(),
        "health changes are numbered"
    );
    // A steady node beats again and again (raw beats, asked for by name, show it); only
    // its changes are streamed.
    let mut beats = host
        .api
        .events(Some("service.heartbeat"), None, None)
        .await
        .unwrap();
    let mut from_local_01 = 0;
    let beat = read_until(&mut beats, |s| {
        from_local_01 += usize::from(s.data["appId"] == "local-01");
        from_local_01 == 2
    })
    .await;
    assert!(beat.iter().all(|s| s.id.is_empty()), "raw beats have no id");
    let more = tokio::time::timeout(Duration::from_millis(200), changes.next()).await;
    assert!(
        more.is_err(),
        "no event for a steady node's beats: {more:?}"
    );
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_subscribers_and_one_that_never_reads_do_not_hold_up_a_deploy() {
    let host = Host::start(config(&our_presets())).await;
    let url = format!("{}/orchestrator/events", host.server.base_url());
    // One that never reads, with raw heartbeats too (the most it could be sent).
    let never_reads = http()
        .get(format!(
            "{url}?types=service.heartbeat,deployment,wave,routing"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(never_reads.status(), 200);
    // Idle subscribers: connected, read by nobody until the deploy is over.
    let mut idle = Vec::new();
    for _ in 0..200 {
        idle.push(host.api.events(None, None, None).await.unwrap());
    }
    let reply = tokio::time::timeout(PATIENCE, host.api.deploy(&deploy("local-ten")))
        .await
        .expect("the deploy ends within its usual bound")
        .unwrap();
    assert_eq!(reply.status, 200, "{:?}", reply.body.warnings);
    // The idle ones still hold every event of the deploy.
    let seen = read_until(&mut idle[199], |s| s.kind == "deployment.completed").await;
    assert_eq!(seen[0].kind, "deployment.started");
    drop(never_reads);
    drop(idle);
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn types_filter_and_the_token_guards_the_stream() {
    let mut cfg = config(&our_presets());
    cfg.api_token = Some(Secret::new("s3cret"));
    let host = Host::start(cfg).await;
    let base = host.server.base_url();

    let anonymous = ApiClient::new(&base).unwrap();
    let err = anonymous.events(None, None, None).await.err().unwrap();
    assert_eq!(err.status(), Some(401), "{err}");
    let wrong = ApiClient::new(&base)
        .unwrap()
        .with_token(Some("nope".to_owned()));
    assert_eq!(
        wrong.events(None, None, None).await.err().unwrap().status(),
        Some(401)
    );

    let api = ApiClient::new(&base)
        .unwrap()
        .with_token(Some("s3cret".to_owned()));
    let err = api
        .events(Some("wave,nonsense"), None, None)
        .await
        .err()
        .unwrap();
    assert!(matches!(err, ClientError::Status { .. }), "{err:?}");
    assert_eq!(err.status(), Some(400));
    assert_eq!(err.api_error().unwrap().field.as_deref(), Some("types"));

    let mut outcomes = api
        .events(Some("deployment.completed"), None, None)
        .await
        .unwrap();
    let mut routing = api.events(Some("routing"), None, None).await.unwrap();
    let reply = api.deploy(&deploy("local-ten")).await.unwrap();
    assert_eq!(reply.status, 200);
    let seen = read_until(&mut outcomes, |_| true).await;
    assert_eq!(
        kinds(&seen),
        ["deployment.completed"],
        "only what was asked"
    );
    let seen = read_until(&mut routing, |_| true).await;
    assert_eq!(seen[0].kind, "routing.published");
    assert!(seen[0].data["version"].as_i64().is_some(), "{seen:?}");

    // `?deployment=` keeps one deployment's events.
    let mut other = api
        .events(None, Some("no-such-deployment"), None)
        .await
        .unwrap();
    let mut this = api
        .events(None, Some(&reply.body.deployment_id), Some(&seen[0].id))
        .await
        .unwrap();
    let replayed = read_until(&mut this, is_outcome).await;
    assert!(
        replayed
            .iter()
            .all(|s| s.data["deploymentId"] == reply.body.deployment_id),
        "{replayed:?}"
    );
    let nothing = tokio::time::timeout(Duration::from_millis(300), other.next()).await;
    assert!(
        nothing.is_err(),
        "no event of another deployment: {nothing:?}"
    );
    host.shutdown().await;
}

fn presets() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("base.yaml"), BASE).unwrap();
    std::fs::write(dir.path().join("faulty.yaml"), FAULTY).unwrap();
    dir
}

async fn host_with_wave_deadline(dir: &Path) -> Host {
    let mut cfg = config(dir);
    cfg.wave_timeout = Duration::from_secs(2);
    Host::start(cfg).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_wave_shows_as_wave_failed_then_deployment_failed() {
    let dir = presets();
    let host = host_with_wave_deadline(dir.path()).await;
    let mut stream = host
        .api
        .events(Some("deployment,wave"), None, None)
        .await
        .unwrap();
    let reply = host.api.deploy(&deploy("faulty")).await.unwrap();
    assert_eq!(reply.status, 500);
    let seen = read_until(&mut stream, |s| s.kind == "deployment.failed").await;
    println!("seen: {:?}", kinds(&seen));
    let failed = seen
        .iter()
        .find(|s| s.kind == "wave.failed")
        .expect("a failed wave");
    assert!(
        failed.data["failures"].as_array().is_some_and(|f| f
            .iter()
            .any(|f| f.as_str().unwrap().contains("faulty-realm"))),
        "{failed:?}"
    );
    host.shutdown().await;
}

/// `deploy --follow` through the CLI's own code against the host: the waves, then the
/// summary; an error (non-zero exit) when the deploy fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_follow_prints_the_waves_and_fails_with_the_deploy() {
    use bannou_host::cli::{Cli, Command, deploy};
    use clap::Parser;

    let dir = presets();
    std::fs::copy(
        our_presets().join("local-ten.yaml"),
        dir.path().join("local-ten.yaml"),
    )
    .unwrap();
    let host = host_with_wave_deadline(dir.path()).await;
    let base = host.server.base_url();
    // The failing deploy first, on an empty host (the case `a_failing_wave...` checks).
    let run = |preset: &str| {
        let cli =
            Cli::try_parse_from(["bannou-host", "deploy", preset, "--follow", "--api", &base])
                .unwrap();
        let Command::Deploy(args) = cli.command else {
            panic!("not a deploy")
        };
        async move {
            let mut out = Vec::new();
            let result = deploy::run_deploy(args, &mut out).await;
            (result, String::from_utf8(out).unwrap())
        }
    };

    let (result, text) = run("faulty").await;
    println!("{text}");
    assert!(result.is_err(), "a failed deploy fails the command: {text}");
    assert!(text.contains("wave 2 FAILED"), "{text}");
    assert!(text.contains("faulty-realm"), "{text}");
    assert!(text.contains("deployment failed"), "{text}");

    let (result, text) = run("local-ten").await;
    println!("{text}");
    result.expect("a healthy deploy exits 0");
    let started = text.find("started").expect("the deployment start");
    let wave1 = text.find("wave 1 healthy").expect("wave 1");
    let wave2 = text.find("wave 2 healthy").expect("wave 2");
    let done = text.find("deployment completed").expect("the outcome");
    let summary = text
        .find("Deployed preset `local-ten`")
        .expect("the summary");
    assert!(
        started < wave1 && wave1 < wave2 && wave2 < done && done < summary,
        "{text}"
    );

    host.shutdown().await;
}

/// Two replicas on one Redis: the follower's stream shows the leader's deploy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_replica_streams_every_replicas_events_over_redis() {
    let Some(redis) = RedisServer::for_test("every_replica_streams_every_replicas_events") else {
        return;
    };
    let mut cfg = config(&our_presets());
    cfg.redis_url = Some(redis.url());
    let first = Host::start(cfg.clone()).await;
    let second = Host::start(cfg).await;
    let mut on_first = first
        .api
        .events(Some("deployment"), None, None)
        .await
        .unwrap();
    let mut on_second = second
        .api
        .events(Some("deployment"), None, None)
        .await
        .unwrap();
    // Whichever leads runs the deploy; the event reaches both streams.
    let leader = if first.api.health().await.unwrap()["leader"] == true {
        &first
    } else {
        &second
    };
    let reply = leader.api.deploy(&deploy("split-auth")).await.unwrap();
    assert_eq!(reply.status, 200, "{:?}", reply.body.warnings);
    for stream in [&mut on_first, &mut on_second] {
        let seen = read_until(stream, is_outcome).await;
        assert_eq!(
            seen.last().unwrap().data["deploymentId"],
            reply.body.deployment_id
        );
    }
    second.shutdown().await;
    first.shutdown().await;
    drop(redis);
}

/// `rollback --follow`: the redeploy of the earlier version, wave by wave, then the
/// usual answer; `teardown --follow`: its start and outcome.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_and_teardown_follow_print_what_happens() {
    use bannou_host::cli::{Cli, Command, config as config_cli};
    use clap::Parser;

    let host = Host::start(config(&our_presets())).await;
    for preset in ["split-auth", "local-ten"] {
        let reply = host.api.deploy(&deploy(preset)).await.unwrap();
        assert_eq!(reply.status, 200, "{preset}: {:?}", reply.body.warnings);
    }
    let base = host.server.base_url();
    let cli = Cli::try_parse_from([
        "bannou-host",
        "rollback",
        "--reason",
        "event stream test",
        "--follow",
        "--api",
        &base,
    ])
    .unwrap();
    let Command::Rollback(args) = cli.command else {
        panic!("not a rollback")
    };
    let mut out = Vec::new();
    let result = config_cli::run_rollback(args, &mut out).await;
    let text = String::from_utf8(out).unwrap();
    println!("{text}");
    result.expect("the rollback succeeds");
    let started = text.find("started").expect("the rollback's start");
    let wave = text.find("wave 1 healthy").expect("a redeploy wave");
    let done = text.find("deployment completed").expect("the outcome");
    let answer = text.find("Rolled back").expect("the answer");
    assert!(started < wave && wave < done && done < answer, "{text}");

    // `teardown --follow`: its start and outcome, then the usual answer.
    let cli = Cli::try_parse_from(["bannou-host", "teardown", "--follow", "--api", &base]).unwrap();
    let Command::Teardown(args) = cli.command else {
        panic!("not a teardown")
    };
    let mut out = Vec::new();
    let result = bannou_host::cli::deploy::run_teardown(args, &mut out).await;
    let text = String::from_utf8(out).unwrap();
    println!("{text}");
    result.expect("the teardown succeeds");
    let started = text.find("teardown ").expect("the teardown's start");
    let done = text.find("deployment completed").expect("the outcome");
    assert!(started < done, "{text}");
    host.shutdown().await;
}

/// `events --since ID`: the buffered events after that id, one line each, then live ones
/// until the host stops (the command then ends without error).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_events_command_replays_after_an_id_and_ends_with_the_host() {
    use bannou_host::cli::{Cli, Command, events};
    use clap::Parser;

    let host = Host::start(config(&our_presets())).await;
    let mut stream = host
        .api
        .events(Some("deployment"), None, None)
        .await
        .unwrap();
    let reply = host.api.deploy(&deploy("local-ten")).await.unwrap();
    assert_eq!(reply.status, 200);
    let started = read_until(&mut stream, |_| true).await;
    let base = host.server.base_url();
    let cli = Cli::try_parse_from([
        "bannou-host",
        "events",
        "--types",
        "wave,deployment",
        "--since",
        &started[0].id,
        "--api",
        &base,
    ])
    .unwrap();
    let Command::Events(args) = cli.command else {
        panic!("not events")
    };
    let mut out = Vec::new();
    // Every replayed line is printed before the host stops.
    let (result, ()) = tokio::time::timeout(PATIENCE, async {
        tokio::join!(events::run_events(args, &mut out), async {
            tokio::time::sleep(Duration::from_millis(500)).await;
            host.shutdown().await;
        })
    })
    .await
    .expect("the command ends with the stream");
    let text = String::from_utf8(out).unwrap();
    println!("{text}");
    result.expect("a stream the server closes ends the command without error");
    assert!(
        !text.contains("deployment.started"),
        "after the id only: {text}"
    );
    let first = text.lines().next().unwrap_or_default();
    assert!(
        first.contains("wave.started: wave 1/2 (deploy) started"),
        "{text}"
    );
    assert!(
        text.contains("deployment.completed: deployment ")
            && text.contains("of preset `local-ten`"),
        "{text}"
    );
}

/// A topology update changes: one with a good change then one missing its services.
const TOPOLOGY_CHANGES: &str = r#"[
  {"action": "add-node", "nodeName": "extra", "services": ["auth"],
   "nodeConfig": {"name": "extra", "services": ["auth"]}},
  {"action": "remove-node", "nodeName": "gone"}
]"#;

/// A topology update is followed like a deploy: its start, one `topology` wave per change
/// in request order (the failing one `wave.failed`), then `deployment.failed`, all under
/// one id; `topology --follow` prints them and fails with the update.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topology_update_is_followed_change_by_change() {
    use bannou_host::cli::{Cli, Command, topology};
    use clap::Parser;

    let host = Host::start(config(&our_presets())).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("changes.json");
    std::fs::write(&file, TOPOLOGY_CHANGES).unwrap();
    let request = topology::read_changes(&file).unwrap();

    // Over HTTP: a follower connected before the update.
    let mut stream = host
        .api
        .events(Some("deployment,wave"), None, None)
        .await
        .unwrap();
    let reply = host.api.update_topology(&request).await.unwrap();
    assert!(reply.applied_changes[0].success, "{reply:?}");
    assert!(!reply.applied_changes[1].success, "{reply:?}");
    // Wave and deployment events travel on different topics: each topic's events arrive
    // in order, the two topics' interleaving is not guaranteed.
    let (mut ended, mut last_wave) = (false, false);
    let seen = read_until(&mut stream, |s| {
        ended |= is_outcome(s);
        last_wave |= s.kind == "wave.failed" && s.data["wave"] == 2;
        ended && last_wave
    })
    .await;
    println!("seen: {:?}", kinds(&seen));
    let (waves, deployment): (Vec<Seen>, Vec<Seen>) = seen
        .iter()
        .cloned()
        .partition(|s| s.kind.starts_with("wave."));
    assert_eq!(
        kinds(&waves),
        [
            "wave.started 1",
            "wave.healthy 1",
            "wave.started 2",
            "wave.failed 2",
        ]
    );
    assert_eq!(
        kinds(&deployment),
        ["deployment.started", "deployment.failed"]
    );
    let seen: Vec<Seen> = [&deployment[..1], &waves[..], &deployment[1..]].concat();
    let id = &seen[0].data["deploymentId"];
    assert!(id.is_string(), "{:?}", seen[0]);
    for s in &seen {
        assert_eq!(&s.data["deploymentId"], id, "{s:?} belongs to the update");
    }
    assert_eq!(seen[1].data["phase"], "topology");
    assert_eq!(seen[1].data["waves"], 2);
    assert_eq!(
        seen[1].data["nodes"],
        serde_json::json!(["bannou-auth-extra"])
    );
    let failure = seen[4].data["failures"][0].as_str().unwrap();
    assert!(failure.contains("Services list is required"), "{failure}");
    assert!(
        seen[5].data["error"]
            .as_str()
            .is_some_and(|e| e.contains("Services list is required")),
        "{:?}",
        seen[5]
    );

    // The CLI: the changes live, then the table; a failed change fails the command.
    let base = host.server.base_url();
    let cli = Cli::try_parse_from([
        "bannou-host",
        "topology",
        file.to_str().unwrap(),
        "--follow",
        "--api",
        &base,
    ])
    .unwrap();
    let Command::Topology(args) = cli.command else {
        panic!("not a topology update")
    };
    let mut out = Vec::new();
    let result = topology::run(args, &mut out).await;
    let text = String::from_utf8(out).unwrap();
    println!("{text}");
    assert!(result.is_err(), "a failed change fails the command: {text}");
    let started = text.find("of topology started").expect("the start");
    let first = text
        .find("wave 1 healthy")
        .expect("the first change applied");
    let second = text
        .find("wave 2 FAILED")
        .expect("the second change failed");
    let done = text.find("deployment failed").expect("the outcome");
    let table = text.find("ACTION").expect("the usual table");
    assert!(
        started < first && first < second && second < done && done < table,
        "{text}"
    );
    host.shutdown().await;
}

/// A replica that takes over the leadership says so on every replica's stream (the
/// event travels on the bus), naming itself and its fencing token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leadership_change_is_streamed_by_the_replica_that_takes_over() {
    let Some(redis) = RedisServer::for_test("a_leadership_change_is_streamed") else {
        return;
    };
    let mut cfg = config(&our_presets());
    cfg.redis_url = Some(redis.url());
    let first = Host::start(cfg.clone()).await;
    let second = Host::start(cfg).await;
    let (leader, follower) = if first.api.health().await.unwrap()["leader"] == true {
        (first, second)
    } else {
        (second, first)
    };
    let health = follower.api.health().await.unwrap();
    assert_eq!(health["leader"], false, "one leader: {health}");
    let heir = health["leadership"]["candidate"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut stream = follower
        .api
        .events(Some("leader"), None, None)
        .await
        .unwrap();
    // A clean shutdown releases the lease: the follower takes it at its next attempt.
    leader.shutdown().await;
    let seen = read_until(&mut stream, |s| s.data["leader"] == true).await;
    let gained = seen.last().unwrap();
    assert_eq!(gained.kind, "leader.changed");
    assert_eq!(gained.data["replica"], heir.as_str(), "{gained:?}");
    assert!(gained.data["token"].as_u64().is_some(), "{gained:?}");
    assert!(gained.id.parse::<u64>().is_ok(), "numbered: {gained:?}");
    follower.shutdown().await;
    drop(redis);
}

/// Each node that applies a mappings version is streamed once as `routing.applied`, with
/// the version the control plane published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_node_applying_the_published_mappings_is_streamed() {
    let dir = presets();
    let host = Host::start(config(dir.path())).await;
    let mut stream = host.api.events(Some("routing"), None, None).await.unwrap();
    let request = DeployRequest {
        environment: Some(
            [(
                "BANNOU_HEARTBEAT_INTERVAL_SECONDS".to_owned(),
                "1".to_owned(),
            )]
            .into(),
        ),
        ..deploy("base")
    };
    let reply = host.api.deploy(&request).await.unwrap();
    assert_eq!(reply.status, 200, "{:?}", reply.body.warnings);
    // The node applies the version published last (each publication is streamed first).
    let mut latest = None;
    let seen = read_until(&mut stream, |s| {
        if s.kind == "routing.published" {
            latest = s.data["version"].as_i64();
        }
        s.kind == "routing.applied" && latest.is_some() && s.data["version"].as_i64() == latest
    })
    .await;
    let version = latest.expect("a version was published");
    let applied = seen.last().unwrap();
    assert_eq!(applied.data["appId"], "base-auth", "{applied:?}");
    assert!(applied.id.parse::<u64>().is_ok(), "numbered: {applied:?}");
    // Steady beats (one a second) of the same version are not streamed again.
    let more = tokio::time::timeout(Duration::from_millis(2500), async {
        loop {
            let e = stream.next().await.unwrap().unwrap();
            let data: Value = serde_json::from_str(&e.data).unwrap_or(Value::Null);
            if e.event == "routing.applied" && data["version"] == version {
                return e;
            }
        }
    })
    .await;
    assert!(more.is_err(), "the same version twice: {more:?}");
    host.shutdown().await;
}

/// A node the backend lost is deployed again by the leader's sweep, which streams what
/// it repaired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconcile_repair_is_streamed() {
    let dir = presets();
    let mut cfg = config(dir.path());
    cfg.reconcile_interval = Duration::from_secs(1);
    cfg.reconcile_grace = Duration::ZERO;
    let host = Host::start(cfg).await;
    let reply = host.api.deploy(&deploy("base")).await.unwrap();
    assert_eq!(reply.status, 200, "{:?}", reply.body.warnings);
    let mut stream = host
        .api
        .events(Some("reconcile"), None, None)
        .await
        .unwrap();
    use orchestrator_core::ports::backend::ContainerBackend;
    let backend = host.server.in_process_backend().expect("control plane");
    backend
        .teardown(
            &orchestrator_core::AppId::from("base-auth"),
            &Default::default(),
        )
        .await
        .unwrap();
    let seen = read_until(&mut stream, |s| s.kind == "reconcile.repaired").await;
    let repaired = seen.last().unwrap();
    assert_eq!(
        repaired.data["redeployed"],
        serde_json::json!(["base-auth"]),
        "{repaired:?}"
    );
    assert!(repaired.data["replica"].is_string(), "{repaired:?}");
    host.shutdown().await;
}

/// A pool of one to three workers on the in-process backend.
const POOL_PRESET: &str = "\
name: stream-pool
description: One pool for the event stream
processingPools:
  - poolType: stream-pool
    plugin: actor
    minInstances: 1
    maxInstances: 4
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_sees_leases_granted_and_released_and_the_pool_scaled() {
    use orchestrator_core::api::{
        AcquireProcessorRequest, GetPoolStatusRequest, ReleaseProcessorRequest, ScalePoolRequest,
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("stream-pool.yaml"), POOL_PRESET).unwrap();
    let host = Host::start(config(dir.path())).await;
    let mut stream = host
        .api
        .events(Some("lease,pool"), None, None)
        .await
        .unwrap();
    let reply = host.api.deploy(&deploy("stream-pool")).await.unwrap();
    assert!(reply.body.success, "{:?}", reply.body.warnings);
    // The deploy starts the pool's minimum: one scale-up.
    let first = read_until(&mut stream, |s| s.kind == "pool.scaled").await;
    let scaled = first.last().unwrap();
    assert_eq!(scaled.data["poolType"], "stream-pool", "{scaled:?}");
    assert_eq!(scaled.data["started"].as_array().map(Vec::len), Some(1));

    // Its worker becomes Available with its first heartbeat.
    let status = GetPoolStatusRequest {
        pool_type: "stream-pool".to_owned(),
        include_metrics: false,
    };
    tokio::time::timeout(PATIENCE, async {
        while host
            .api
            .pool_status(&status)
            .await
            .unwrap()
            .available_instances
            < 1
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the worker becomes available");

    let lease = host
        .api
        .acquire_processor(&AcquireProcessorRequest::new("stream-pool"))
        .await
        .unwrap();
    host.api
        .release_processor(&ReleaseProcessorRequest {
            fencing_token: Some(lease.fencing_token),
            ..ReleaseProcessorRequest::new(lease.lease_id)
        })
        .await
        .unwrap();
    let seen = read_until(&mut stream, |s| s.kind == "lease.released").await;
    let granted = seen
        .iter()
        .find(|s| s.kind == "lease.granted")
        .expect("the grant comes before the release");
    assert_eq!(granted.data["leaseId"], lease.lease_id.to_string());
    assert_eq!(granted.data["processorId"], lease.processor_id);
    assert_eq!(granted.data["fencingToken"], lease.fencing_token);
    let released = seen.last().unwrap();
    assert_eq!(released.data["processorId"], lease.processor_id);
    assert_eq!(released.data["success"], true);

    // A manual scale to the maximum (the autoscaler may have added a worker after the
    // acquire, with an event of its own): reason `steady`, the workers it started.
    let scaled = host
        .api
        .scale_pool(&ScalePoolRequest {
            pool_type: "stream-pool".to_owned(),
            target_instances: 4,
            force: false,
        })
        .await
        .unwrap();
    assert!(scaled.scaled_up >= 1, "{scaled:?}");
    let seen = read_until(&mut stream, |s| {
        s.kind == "pool.scaled" && s.data["reason"] == "steady"
    })
    .await;
    let event = seen.last().unwrap();
    assert_eq!(event.data["poolType"], "stream-pool", "{event:?}");
    assert_eq!(
        event.data["started"].as_array().map(Vec::len),
        usize::try_from(scaled.scaled_up).ok()
    );
    host.shutdown().await;
}

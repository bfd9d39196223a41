//! OpenTelemetry traces through the real binary: an OTLP/HTTP receiver
//! in the test (axum on a loopback port, decoding `ExportTraceServiceRequest` with
//! `opentelemetry-proto`) and `bannou-host serve` with `OTEL_EXPORTER_OTLP_ENDPOINT` at it.
//!
//! - A deploy of `npc-brains` sent with a `traceparent` is one trace under that parent:
//!   the HTTP request span, the `deploy` span (preset, backend), its `wave` spans (wave,
//!   backend), each node's `backend.deploy` call (node, backend) and the `health.wait` of
//!   the wave; the nodes apply the routing table the deploy made in `mappings.apply`
//!   spans of the same trace (the `traceparent` the mappings broadcast carries). A ping
//!   that a node forwards through the mesh reaches the control plane in the caller's
//!   trace. The batch delay is longer than the test: what arrives was flushed on SIGTERM.
//! - With the endpoint on a closed port every API call still answers, and the spans of the
//!   failed exports are counted in `bannou_orchestrator_trace_spans_dropped_total`; so are
//!   the spans that find a one-span batch queue full behind an export that hangs.
//!
//! Real processes and loopback sockets; every wait is bounded and nothing is asserted
//! about speed.

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use prost::Message as _;

mod common;
use bannou_host::client::ApiClient;
use common::{PATIENCE, Running, answering, free_port, repo};

/// One received span, flattened.
#[derive(Debug, Clone)]
struct Got {
    service: String,
    trace_id: String,
    span_id: String,
    parent: String,
    name: String,
    attrs: BTreeMap<String, String>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn text(value: Option<&AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

fn attrs(kvs: &[KeyValue]) -> BTreeMap<String, String> {
    kvs.iter()
        .map(|kv| (kv.key.clone(), text(kv.value.as_ref())))
        .collect()
}

/// An OTLP/HTTP (protobuf) trace receiver on a loopback port: its endpoint and what it got.
async fn receiver() -> (String, Arc<Mutex<Vec<Got>>>) {
    let got: Arc<Mutex<Vec<Got>>> = Arc::default();
    let sink = got.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: Bytes| {
            let sink = sink.clone();
            async move {
                let request = match ExportTraceServiceRequest::decode(body) {
                    Ok(r) => r,
                    Err(e) => return (axum::http::StatusCode::BAD_REQUEST, e.to_string()),
                };
                let mut spans = Vec::new();
                for rs in request.resource_spans {
                    let resource = rs
                        .resource
                        .map(|r| attrs(&r.attributes))
                        .unwrap_or_default();
                    let service = resource.get("service.name").cloned().unwrap_or_default();
                    for span in rs.scope_spans.into_iter().flat_map(|s| s.spans) {
                        spans.push(Got {
                            service: service.clone(),
                            trace_id: hex(&span.trace_id),
                            span_id: hex(&span.span_id),
                            parent: hex(&span.parent_span_id),
                            name: span.name.clone(),
                            attrs: attrs(&span.attributes),
                        });
                    }
                }
                sink.lock().unwrap().extend(spans);
                (axum::http::StatusCode::OK, String::new())
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, got)
}

/// SIGTERM, then the exit status (bounded by [`PATIENCE`]).
async fn stop(serve: &mut Running) -> std::process::ExitStatus {
    let killed = Command::new("kill")
        .args(["-TERM", &serve.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    serve.wait().await
}

fn client() -> reqwest::Client {
    orchestrator_backends::http::install_crypto_provider();
    reqwest::Client::builder()
        .timeout(PATIENCE)
        .build()
        .unwrap()
}

const DEPLOY_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const DEPLOY_CALLER: &str = "00f067aa0ba902b7";
const PING_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const PING_CALLER: &str = "b7ad6b7169203331";

fn traceparent(trace: &str, span: &str) -> String {
    format!("00-{trace}-{span}-01")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_is_one_trace_of_waves_backend_calls_and_health_waits_that_nodes_join() {
    let (collector, got) = receiver().await;
    let port = free_port();
    let api = format!("http://127.0.0.1:{port}");
    let presets = repo().join("presets");
    let mut serve = Running::spawn(
        &[
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--presets",
            presets.to_str().unwrap(),
        ],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.as_str()),
            ("OTEL_SERVICE_NAME", "otlp-test"),
            // Nothing is exported on a timer during the test: only the flush on exit.
            ("OTEL_BSP_SCHEDULE_DELAY", "600000"),
        ],
    );
    let http = client();
    answering(&ApiClient::new(&api).unwrap(), &mut serve).await;

    let deployed = http
        .post(format!("{api}/orchestrator/deploy"))
        .header("traceparent", traceparent(DEPLOY_TRACE, DEPLOY_CALLER))
        // Nodes beat every second, so the node reports the mappings version it applied soon.
        .json(&serde_json::json!({
            "preset": "npc-brains",
            "environment": { "BANNOU_HEARTBEAT_INTERVAL_SECONDS": "1" },
        }))
        .send()
        .await
        .unwrap();
    let status = deployed.status();
    let body = deployed.text().await.unwrap();
    assert_eq!(status, 200, "{body}\n{}", serve.stderr());

    // The node (its address from its log) does not host `leaderboard`: it forwards the
    // ping through the mesh to the control plane, once it has the deploy's table.
    let logs: serde_json::Value = http
        .post(format!("{api}/orchestrator/logs"))
        .json(&serde_json::json!({ "service": "npc-coordinator" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let node = logs["logs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l["message"].as_str())
        .find_map(|m| m.split("listening on ").nth(1))
        .unwrap_or_else(|| panic!("no address in the node's log: {logs}"))
        .trim()
        .to_owned();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let r = http
            .get(format!("{node}/leaderboard/ping"))
            .header("traceparent", traceparent(PING_TRACE, PING_CALLER))
            .send()
            .await
            .unwrap();
        let status = r.status();
        let body: serde_json::Value = r.json().await.unwrap_or_default();
        if status == 200 && body["appId"] == "bannou" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the ping was never forwarded: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The ping may be forwarded before the node has the deploy's table (an unmapped
    // service goes to the control plane anyway): wait until the node reports, in its
    // heartbeat, the mappings version the deploy published, so its `mappings.apply`
    // span has ended before the flush.
    loop {
        let routing: serde_json::Value = http
            .post(format!("{api}/orchestrator/service-routing"))
            .json(&serde_json::json!({}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap_or_default();
        let current = routing["mappingsVersion"].as_i64();
        let applied = routing["nodeVersions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|n| n["appId"] == "npc-coordinator")
            .and_then(|n| n["appliedVersion"].as_i64());
        if current.is_some() && applied >= current {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the node never reported the deploy's mappings version: {routing}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let exit = stop(&mut serve).await;
    assert!(exit.success(), "{exit}\n{}", serve.stderr());
    let spans = got.lock().unwrap().clone();
    assert!(
        !spans.is_empty(),
        "nothing flushed on exit:\n{}",
        serve.stderr()
    );
    assert!(spans.iter().all(|s| s.service == "otlp-test"), "{spans:#?}");

    let deploy_trace: Vec<&Got> = spans
        .iter()
        .filter(|s| s.trace_id == DEPLOY_TRACE)
        .collect();
    let named = |name: &str| -> Vec<&Got> {
        deploy_trace
            .iter()
            .copied()
            .filter(|s| s.name == name)
            .collect()
    };
    let summary = || {
        deploy_trace
            .iter()
            .map(|s| format!("{} {} <- {} {:?}", s.name, s.span_id, s.parent, s.attrs))
            .collect::<Vec<_>>()
            .join("\n")
    };

    // The request span is the child of the caller's; the deploy span of the request's.
    let request = named("POST /orchestrator/deploy");
    assert_eq!(request.len(), 1, "{}", summary());
    assert_eq!(request[0].parent, DEPLOY_CALLER, "{}", summary());
    let deploy = named("deploy");
    assert_eq!(deploy.len(), 1, "{}", summary());
    let deploy = deploy[0];
    assert_eq!(deploy.parent, request[0].span_id, "{}", summary());
    assert_eq!(deploy.attrs["preset"], "npc-brains", "{deploy:?}");
    assert!(!deploy.attrs["backend"].is_empty(), "{deploy:?}");
    assert!(!deploy.attrs["deployment_id"].is_empty(), "{deploy:?}");

    // Its waves, each with its index and backend.
    let waves = named("wave");
    assert!(!waves.is_empty(), "{}", summary());
    for wave in &waves {
        assert_eq!(wave.parent, deploy.span_id, "{}", summary());
        assert!(wave.attrs["wave"].parse::<u64>().is_ok(), "{wave:?}");
        assert_eq!(wave.attrs["backend"], deploy.attrs["backend"], "{wave:?}");
    }
    let in_a_wave = |s: &Got| waves.iter().any(|w| w.span_id == s.parent);

    // Each node's backend call: the preset's node in its wave, the pools' workers (started
    // once the waves are healthy) in the deploy itself.
    let calls = named("backend.deploy");
    let node_of = |c: &Got| c.attrs.get("node").cloned().unwrap_or_default();
    assert!(
        calls
            .iter()
            .any(|c| node_of(c) == "npc-coordinator" && in_a_wave(c)),
        "{}",
        summary()
    );
    assert!(
        calls
            .iter()
            .any(|c| node_of(c).contains("pool") && c.parent == deploy.span_id),
        "{}",
        summary()
    );
    for call in &calls {
        assert!(
            in_a_wave(call) || call.parent == deploy.span_id,
            "{call:?}\n{}",
            summary()
        );
        assert_eq!(call.attrs["backend"], deploy.attrs["backend"], "{call:?}");
    }

    // The wave's wait for health, naming the nodes it waits for.
    let waits = named("health.wait");
    assert!(!waits.is_empty(), "{}", summary());
    for wait in &waits {
        assert!(in_a_wave(wait), "{wait:?}\n{}", summary());
        assert!(wait.attrs["node"].contains("npc-coordinator"), "{wait:?}");
    }

    // The nodes applied the table this deploy routed, in its trace (over the bus).
    let ids: Vec<&str> = deploy_trace.iter().map(|s| s.span_id.as_str()).collect();
    let applied = named("mappings.apply");
    assert!(
        !applied.is_empty(),
        "{}\nelsewhere: {:#?}",
        summary(),
        spans
            .iter()
            .map(|s| format!("{} {}", s.name, s.trace_id))
            .collect::<std::collections::BTreeSet<_>>()
    );
    for apply in &applied {
        assert!(
            ids.contains(&apply.parent.as_str()),
            "{apply:?}\n{}",
            summary()
        );
    }

    // The forwarded ping: the node's request span, its mesh call, and the control plane's
    // request span under that call, all in the caller's trace.
    let ping: Vec<&Got> = spans.iter().filter(|s| s.trace_id == PING_TRACE).collect();
    let mesh_calls: Vec<&&Got> = ping.iter().filter(|s| s.name == "mesh.call").collect();
    assert!(!mesh_calls.is_empty(), "{ping:#?}");
    let at_node = ping
        .iter()
        .filter(|s| s.name == "GET /leaderboard/ping")
        .find(|s| mesh_calls.iter().any(|m| m.span_id == s.parent));
    assert!(at_node.is_some(), "{ping:#?}");
    assert!(
        ping.iter()
            .any(|s| s.name == "GET /leaderboard/ping" && s.parent == PING_CALLER),
        "{ping:#?}"
    );
    println!(
        "deploy trace: {} spans ({} waves, {} backend deploys, {} health waits, {} mappings applied); ping trace: {} spans",
        deploy_trace.len(),
        waves.len(),
        calls.len(),
        waits.len(),
        applied.len(),
        ping.len()
    );
}

/// The counter of spans lost on the way to the collector.
const SPANS_DROPPED: &str = "bannou_orchestrator_trace_spans_dropped_total";

/// [`SPANS_DROPPED`] as the host at `api` reports it now.
async fn spans_dropped(http: &reqwest::Client, api: &str) -> f64 {
    let scrape = http
        .get(format!("{api}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    orchestrator_core::testkit::scrape::sample(&scrape, SPANS_DROPPED, &[])
        .unwrap_or_else(|| panic!("no {SPANS_DROPPED}:\n{scrape}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_collector_fails_no_call_and_its_lost_spans_are_counted() {
    // Bound, then released: nothing listens there.
    let dead = free_port();
    let port = free_port();
    let api = format!("http://127.0.0.1:{port}");
    let mut serve = Running::spawn(
        &["serve", "--listen", &format!("127.0.0.1:{port}")],
        &[
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                &format!("http://127.0.0.1:{dead}"),
            ),
            ("OTEL_BSP_SCHEDULE_DELAY", "50"),
        ],
    );
    let http = client();
    answering(&ApiClient::new(&api).unwrap(), &mut serve).await;

    for i in 0..20 {
        let r = http
            .post(format!("{api}/orchestrator/status"))
            .json(&serde_json::json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "call {i}");
    }
    let name = SPANS_DROPPED;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let dropped = loop {
        let dropped = spans_dropped(&http, &api).await;
        if dropped >= 20.0 {
            break dropped;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} stayed at {dropped}:\n{}",
            serve.stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let exit = stop(&mut serve).await;
    assert!(exit.success(), "{exit}\n{}", serve.stderr());
    println!("20 calls answered with the collector down; {dropped} spans dropped and counted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_that_find_the_batch_queue_full_are_counted() {
    // A collector that accepts connections and never answers: the first export hangs (its
    // timeout is longer than the test), so the one-span queue stays full behind it and no
    // export can fail while the counter is read: every span counted found the queue full.
    let collector = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", collector.local_addr().unwrap());
    let held = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = collector.accept().await {
            held.push(socket);
        }
    });
    let port = free_port();
    let api = format!("http://127.0.0.1:{port}");
    let mut serve = Running::spawn(
        &["serve", "--listen", &format!("127.0.0.1:{port}")],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "600000"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "1"),
            ("OTEL_BSP_SCHEDULE_DELAY", "10"),
        ],
    );
    let http = client();
    answering(&ApiClient::new(&api).unwrap(), &mut serve).await;

    let name = SPANS_DROPPED;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut calls = 0;
    let dropped = loop {
        for _ in 0..20 {
            let r = http
                .post(format!("{api}/orchestrator/status"))
                .json(&serde_json::json!({}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "call {calls}");
            calls += 1;
        }
        let dropped = spans_dropped(&http, &api).await;
        // Each call ends at least one span; at most two fit (one in the queue, one in
        // the hung export).
        if dropped >= 10.0 {
            break dropped;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} stayed at {dropped} after {calls} calls:\n{}",
            serve.stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Closing the held connections fails the hung export, so the shutdown is quick.
    held.abort();
    let exit = stop(&mut serve).await;
    assert!(exit.success(), "{exit}\n{}", serve.stderr());
    println!("{calls} calls with a one-span queue behind a hung export: {dropped} spans dropped");
}

//! `GET /metrics` of a whole host in process, with an API token set: the scrape needs the
//! bearer token like every other protected route; after a deploy of `npc-brains` (plus a
//! refused one) and pool traffic it counts the deploys by outcome, the pool's workers,
//! the acquires by outcome and the releases. Then the real Prometheus tools read it:
//! `promtool check metrics` lints the scrape, and a `prometheus` server started on a
//! loopback port scrapes the host (with the token, through its `authorization` setting)
//! and answers the pool worker gauge and the deploy counter through its query API. The
//! Prometheus tests skip with a printed reason when the binaries are absent, unless
//! `BANNOU_TEST_REQUIRE` names `prometheus`.

mod common;

use std::io::Write as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bannou_host::client::ApiClient;
use common::{Host, config, eventually, http, our_presets};
use orchestrator_backends::require::skip_or_fail;
use orchestrator_core::api::{
    AcquireProcessorRequest, DeployRequest, GetPoolStatusRequest, ReleaseProcessorRequest,
};
use orchestrator_core::testkit::scrape::{sample, samples};

const TOKEN: &str = "metrics-test-token";

fn deploy(preset: &str) -> DeployRequest {
    DeployRequest {
        preset: Some(preset.to_owned()),
        ..DeployRequest::default()
    }
}

/// A host with `ORCHESTRATOR_API_TOKEN` set, and a client that sends it.
async fn host_with_token() -> Host {
    let mut cfg = config(&our_presets());
    cfg.api_token = Some(bannou_host::config::Secret::new(TOKEN.to_owned()));
    let mut host = Host::start(cfg).await;
    host.api = ApiClient::new(&host.server.base_url())
        .unwrap()
        .with_timeout(Duration::from_secs(120))
        .with_token(Some(TOKEN.to_owned()));
    host
}

/// One deploy refused (unknown preset), one succeeded (`npc-brains`), then on the
/// `npc-brain` pool (once both of its workers are available): one acquire granted and
/// released, and one acquire on a pool nobody configured.
async fn deploy_and_pool_traffic(host: &Host) {
    let refused = host.api.deploy(&deploy("no-such-preset")).await;
    assert!(
        refused.is_err(),
        "an unknown preset is refused: {refused:?}"
    );
    let reply = host.api.deploy(&deploy("npc-brains")).await.unwrap();
    assert_eq!(reply.status, 200, "{:?}", reply.body.warnings);
    let status = GetPoolStatusRequest {
        pool_type: "npc-brain".to_owned(),
        include_metrics: false,
    };
    eventually("both npc-brain workers available", || async {
        let s = host.api.pool_status(&status).await.unwrap();
        (s.available_instances == 2).then_some(())
    })
    .await;
    let coordinators = GetPoolStatusRequest {
        pool_type: "npc-event-coordinator".to_owned(),
        include_metrics: false,
    };
    eventually("the npc-event-coordinator worker available", || async {
        let s = host.api.pool_status(&coordinators).await.unwrap();
        (s.available_instances == 1).then_some(())
    })
    .await;
    let lease = host
        .api
        .acquire_processor(&AcquireProcessorRequest::new("npc-brain"))
        .await
        .unwrap();
    host.api
        .release_processor(&ReleaseProcessorRequest {
            fencing_token: Some(lease.fencing_token),
            ..ReleaseProcessorRequest::new(lease.lease_id)
        })
        .await
        .unwrap();
    let nowhere = host
        .api
        .acquire_processor(&AcquireProcessorRequest::new("nowhere"))
        .await;
    assert!(nowhere.is_err(), "no such pool: {nowhere:?}");
}

/// `GET {base}/metrics` with `token` (or none): status and body.
async fn scrape(base: &str, token: Option<&str>) -> (u16, String, String) {
    let mut request = http().get(format!("{base}/metrics"));
    if let Some(t) = token {
        request = request.bearer_auth(t);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (status, content_type, response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_deploys_and_pool_traffic_behind_the_token() {
    let host = host_with_token().await;
    let base = host.server.base_url();
    let (status, _, _) = scrape(&base, None).await;
    assert_eq!(status, 401, "no token, no metrics");
    let (status, _, _) = scrape(&base, Some("wrong")).await;
    assert_eq!(status, 401, "a wrong token is refused too");

    deploy_and_pool_traffic(&host).await;
    // The mappings follow the deploy after the broadcaster's coalescing window (D11): the
    // scrape is taken once the gauge shows a published version.
    let (status, content_type, text) = eventually("a mappings version published", || async {
        let scraped = scrape(&base, Some(TOKEN)).await;
        (sample(
            &scraped.2,
            "bannou_orchestrator_routing_mappings_version",
            &[],
        ) > Some(0.0))
        .then_some(scraped)
    })
    .await;
    assert_eq!(status, 200, "{text}");
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );

    let deploys = "bannou_orchestrator_deploys_total";
    assert_eq!(
        sample(&text, deploys, &[("outcome", "succeeded")]),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, deploys, &[("outcome", "refused")]),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, deploys, &[("outcome", "failed")]),
        Some(0.0),
        "known outcomes start at zero"
    );
    let duration = "bannou_orchestrator_deploy_duration_seconds_count";
    assert_eq!(
        sample(&text, duration, &[("backend", "inprocess")]),
        Some(1.0),
        "{text}"
    );
    let waves = samples(
        &text,
        "bannou_orchestrator_deploy_wave_duration_seconds_count",
        &[],
    );
    assert!(
        !waves.is_empty() && waves.iter().all(|(_, n)| *n >= 1.0),
        "{waves:?}"
    );
    assert_eq!(
        sample(&text, "bannou_orchestrator_deploy_wave_in_progress", &[]),
        Some(0.0)
    );

    // Two workers, whichever state the last acquire or scaler pass saw them in.
    let workers = samples(
        &text,
        "bannou_orchestrator_pool_workers",
        &[("pool", "npc-brain")],
    );
    assert_eq!(workers.len(), 4, "one series per state: {workers:?}");
    assert_eq!(
        workers.iter().map(|(_, v)| v).sum::<f64>(),
        2.0,
        "{workers:?}"
    );
    let acquire = "bannou_orchestrator_pool_acquire_duration_seconds_count";
    let granted = [("pool", "npc-brain"), ("outcome", "granted")];
    assert_eq!(sample(&text, acquire, &granted), Some(1.0), "{text}");
    let unconfigured = [("pool", "unconfigured"), ("outcome", "exhausted")];
    assert_eq!(sample(&text, acquire, &unconfigured), Some(1.0), "{text}");
    let releases = "bannou_orchestrator_pool_releases_total";
    let released = [("pool", "npc-brain"), ("success", "true")];
    assert_eq!(sample(&text, releases, &released), Some(1.0), "{text}");
    assert!(
        sample(
            &text,
            "bannou_orchestrator_pool_scale_decisions_total",
            &[
                ("pool", "npc-brain"),
                ("direction", "up"),
                ("reason", "below_minimum"),
            ]
        ) >= Some(1.0),
        "the deploy started the minimum: {text}"
    );

    // The control plane's node counts its own beats in the same registry.
    assert!(sample(&text, "bannou_orchestrator_node_heartbeats_sent_total", &[]) >= Some(1.0));
    // Every node the deploy started went through the counted backend.
    let backend_calls = "bannou_orchestrator_backend_calls_total";
    let deployed = [
        ("backend", "inprocess"),
        ("operation", "deploy"),
        ("outcome", "ok"),
    ];
    assert!(
        sample(&text, backend_calls, &deployed) >= Some(4.0),
        "{text}"
    );

    // Health, routing, control plane.
    assert!(sample(&text, "bannou_orchestrator_heartbeats_received_total", &[]) > Some(0.0));
    // The coordinator runs `actor`; pool workers report it too until they apply the
    // mappings that route it to the coordinator, so 1 to 4 instances.
    let actor = sample(
        &text,
        "bannou_orchestrator_service_instances",
        &[("service", "actor"), ("status", "healthy")],
    );
    assert!(
        actor >= Some(1.0) && actor <= Some(4.0),
        "{actor:?}: {text}"
    );
    assert!(
        sample(
            &text,
            "bannou_orchestrator_services",
            &[("status", "healthy")]
        ) >= Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "bannou_orchestrator_services",
            &[("status", "unavailable")]
        ),
        Some(0.0),
        "{text}"
    );
    assert!(
        sample(
            &text,
            "bannou_orchestrator_node_last_heartbeat_age_seconds",
            &[("node", "npc-coordinator")]
        )
        .is_some(),
        "{text}"
    );
    assert_eq!(sample(&text, "bannou_orchestrator_leader", &[]), Some(1.0));
    let http_requests = "bannou_orchestrator_http_requests_total";
    let deploy_200 = [
        ("route", "/orchestrator/deploy"),
        ("method", "POST"),
        ("status", "200"),
    ];
    assert_eq!(
        sample(&text, http_requests, &deploy_200),
        Some(1.0),
        "{text}"
    );
    let metrics_401 = [("route", "/metrics"), ("method", "GET"), ("status", "401")];
    assert_eq!(
        sample(&text, http_requests, &metrics_401),
        Some(2.0),
        "{text}"
    );
    assert!(!text.contains(TOKEN));
    // Every sample of the scrape is one the registry says it exports.
    let exported = exported_names();
    let samples_only: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    let scraped = names_in(&samples_only.join("\n"));
    let unlisted: Vec<_> = scraped.difference(&exported).collect();
    assert!(unlisted.is_empty(), "{unlisted:?}");
    // ... and every family of the control plane is in it, but for two that need an event
    // this flow does not cause (a smart restart; a node's beat after it applied mappings).
    let waits_for_an_event = [
        "bannou_orchestrator_service_restarts_total",
        "bannou_orchestrator_routing_node_applied_version",
    ];
    let missing: Vec<_> = bannou_host::metrics::Metrics::control_plane()
        .sample_names()
        .iter()
        .filter(|n| !scraped.contains(*n) && !waits_for_an_event.contains(&n.as_str()))
        .cloned()
        .collect();
    assert!(
        missing.is_empty(),
        "families missing from the scrape: {missing:?}"
    );

    // A plain node serves its own families, without the token; a ping of a service it
    // does not host goes through the mesh and is counted.
    let node = host.endpoints("npc-coordinator").remove(0);
    let (status, body) = common::get_json(&format!("{node}/leaderboard/ping")).await;
    assert_eq!((status, &body["appId"]), (200, &"bannou".into()), "{body}");
    let (status, _, text) = scrape(&node, None).await;
    assert_eq!(status, 200, "{text}");
    assert!(sample(&text, "bannou_orchestrator_node_heartbeats_sent_total", &[]) >= Some(1.0));
    assert_eq!(
        sample(
            &text,
            "bannou_orchestrator_node_heartbeats_failed_total",
            &[]
        ),
        Some(0.0)
    );
    let mesh_ok = [("outcome", "ok")];
    assert_eq!(
        sample(&text, "bannou_orchestrator_node_mesh_calls_total", &mesh_ok),
        Some(1.0),
        "{text}"
    );
    assert!(sample(&text, "bannou_orchestrator_node_mappings_version", &[]).is_some());
    assert_eq!(
        sample(
            &text,
            "bannou_orchestrator_deploys_total",
            &[("outcome", "succeeded")]
        ),
        None,
        "{text}"
    );
    host.shutdown().await;
}

/// Runs `promtool check metrics` on `text`: `None` when promtool is missing.
fn promtool_check(text: &str) -> Option<(bool, String)> {
    let mut child = match Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            skip_or_fail(
                "prometheus",
                "promtool check metrics",
                &format!("promtool: {e}"),
            );
            return None;
        }
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some((out.status.success(), said))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_accepts_a_scrape_after_a_deploy_and_pool_traffic() {
    let host = host_with_token().await;
    deploy_and_pool_traffic(&host).await;
    let (status, _, text) = scrape(&host.server.base_url(), Some(TOKEN)).await;
    assert_eq!(status, 200);
    if let Some((ok, said)) = promtool_check(&text) {
        assert!(ok, "promtool check metrics: {said}\n--- scrape ---\n{text}");
        println!(
            "promtool check metrics: clean ({} lines)",
            text.lines().count()
        );
    }
    host.shutdown().await;
}

/// A `prometheus` server; killed (and waited for) when dropped.
struct Prometheus {
    child: Child,
    base: String,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `prometheus` on a free loopback port, scraping `target` (host:port) every
/// second with the bearer token; `None` when the binary is missing.
fn start_prometheus(dir: &Path, target: &str) -> Option<Prometheus> {
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: bannou-orchestrator\n    metrics_path: /metrics\n    \
             authorization:\n      type: Bearer\n      credentials: {TOKEN}\n    \
             static_configs:\n      - targets: ['{target}']\n"
        ),
    )
    .unwrap();
    let port = free_port();
    let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn();
    match child {
        Ok(child) => Some(Prometheus {
            child,
            base: format!("http://127.0.0.1:{port}"),
        }),
        Err(e) => {
            skip_or_fail(
                "prometheus",
                "real prometheus scrape",
                &format!("prometheus: {e}"),
            );
            None
        }
    }
}

/// The value of the single series `query` answers, once it answers one.
async fn query_value(prom: &Prometheus, query: &str) -> Option<f64> {
    let url = reqwest::Url::parse_with_params(
        &format!("{}/api/v1/query", prom.base),
        &[("query", query)],
    )
    .unwrap();
    let response = http().get(url).send().await.ok()?;
    let body: serde_json::Value = response.json().await.ok()?;
    let result = body["data"]["result"].as_array()?;
    match result.as_slice() {
        [one] => one["value"][1].as_str()?.parse().ok(),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_the_pool_workers_and_the_deploy_counter() {
    let host = host_with_token().await;
    let dir = tempfile::tempdir().unwrap();
    let target = host.server.addr().to_string();
    let Some(prom) = start_prometheus(dir.path(), &target) else {
        host.shutdown().await;
        return;
    };
    deploy_and_pool_traffic(&host).await;
    let deploys =
        "bannou_orchestrator_deploys_total{job=\"bannou-orchestrator\",outcome=\"succeeded\"}";
    let workers = "sum(bannou_orchestrator_pool_workers{pool=\"npc-brain\"})";
    let up = "up{job=\"bannou-orchestrator\"}";
    let what = format!(
        "prometheus answers {deploys} = 1 and {workers} = 2 (log: {})",
        dir.path().join("prometheus.log").display()
    );
    eventually(&what, || async {
        let d = query_value(&prom, deploys).await?;
        let w = query_value(&prom, workers).await?;
        (d == 1.0 && w == 2.0).then_some(())
    })
    .await;
    assert_eq!(
        query_value(&prom, up).await,
        Some(1.0),
        "the scrape with the token succeeds"
    );
    println!(
        "prometheus at {} scraped {target}: deploys 1, npc-brain workers 2",
        prom.base
    );
    drop(prom);
    host.shutdown().await;
}

// === the dashboard and the alert rules ===

fn deploy_file(path: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every PromQL expression of the dashboard, Grafana's variables replaced by values
/// Prometheus accepts.
fn dashboard_queries() -> Vec<String> {
    let dashboard: serde_json::Value =
        serde_json::from_str(&deploy_file("grafana/bannou-orchestrator.json")).unwrap();
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("every target has an expr");
            queries.push(
                expr.replace("$__rate_interval", "5m")
                    .replace("$__range", "1h")
                    .replace("$job", ".*"),
            );
        }
    }
    queries
}

/// Every `bannou_orchestrator_*` name in `text`.
fn names_in(text: &str) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("bannou_orchestrator_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names
}

/// Every sample name the host can export (the control plane's and a plain node's
/// registries).
fn exported_names() -> std::collections::BTreeSet<String> {
    [
        bannou_host::metrics::Metrics::control_plane(),
        bannou_host::metrics::Metrics::node(),
    ]
    .iter()
    .flat_map(|m| m.sample_names().to_vec())
    .collect()
}

#[test]
fn the_dashboard_and_the_alert_rules_name_only_metrics_the_host_exports() {
    let exported = exported_names();
    assert!(
        exported.contains("bannou_orchestrator_deploys_total")
            && exported.contains("bannou_orchestrator_pool_acquire_duration_seconds_bucket")
            && exported.contains("bannou_orchestrator_node_mesh_calls_total"),
        "{exported:?}"
    );
    let queries = dashboard_queries();
    assert!(queries.len() >= 20, "{queries:?}");
    for (file, used) in [
        ("dashboard", names_in(&queries.join("\n"))),
        (
            "alert rules",
            names_in(&deploy_file("prometheus/alerts.yaml")),
        ),
    ] {
        assert!(!used.is_empty(), "{file} names no metric");
        let unknown: Vec<_> = used.difference(&exported).collect();
        assert!(
            unknown.is_empty(),
            "the {file} name metrics the host does not export: {unknown:?}"
        );
    }
}

#[test]
fn promtool_accepts_the_alert_rules_and_every_dashboard_query() {
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/prometheus/alerts.yaml");
    // The dashboard's queries as recording rules: promtool parses each one.
    let dir = tempfile::tempdir().unwrap();
    let recorded = dir.path().join("dashboard-queries.yaml");
    let mut doc = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, q) in dashboard_queries().iter().enumerate() {
        let quoted = serde_json::to_string(q).unwrap();
        doc.push_str(&format!(
            "      - record: dashboard:query_{i}\n        expr: {quoted}\n"
        ));
    }
    std::fs::write(&recorded, doc).unwrap();
    for file in [rules.as_path(), recorded.as_path()] {
        let out = match Command::new("promtool")
            .arg("check")
            .arg("rules")
            .arg(file)
            .output()
        {
            Ok(out) => out,
            Err(e) => {
                skip_or_fail(
                    "prometheus",
                    "promtool check rules",
                    &format!("promtool: {e}"),
                );
                return;
            }
        };
        assert!(
            out.status.success(),
            "promtool check rules {}: {}{}",
            file.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

//! Backend detection (docs/COMPATIBILITY.md#backend-detection) as `bannou-host backends`
//! shows it, with real probes: a kubeconfig pointing at a fake Kubernetes API server
//! started here (it answers `/version`), and a Portainer stand-in
//! (`containers::testing::PortainerProxy`) in front of the local Docker engine, with Redis
//! so that containers could heartbeat.
//!
//! - Kubernetes and Portainer both answer: Kubernetes is picked (priority 1), Portainer is
//!   available at priority 2, each with its endpoint.
//! - No kubeconfig: Portainer is picked; Kubernetes shows `No Kubernetes credentials found`.
//! - A wrong Portainer key: `Portainer returned 401`; an unset URL: `not configured`.
//!
//! Needs Docker (the proxy pings the engine) and redis-server: skipped without them unless
//! `BANNOU_TEST_REQUIRE` names them.

use std::path::{Path, PathBuf};
use std::process::Command;

use axum::Json;
use axum::routing::get;
use bannou_host::config::HostConfig;
use bannou_host::server::Server;
use orchestrator_backends::containers::testing::{PROXY_VERSION, PortainerProxy};
use orchestrator_backends::redis::server::RedisServer;
use orchestrator_backends::require;
use serde_json::{Value, json};

const KEY: &str = "ptr_detect-key";

/// A fake Kubernetes API server answering `GET /version`; its URL.
async fn fake_kubernetes() -> String {
    let app = axum::Router::new().route(
        "/version",
        get(|| async {
            Json(json!({
                "major": "1", "minor": "33", "gitVersion": "v1.33.0-detect",
                "gitCommit": "0", "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z",
                "goVersion": "go1.24", "compiler": "gc", "platform": "linux/amd64"
            }))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    url
}

fn kubeconfig(dir: &Path, server: &str) -> PathBuf {
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    \
             server: {server}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    \
             user: fake\ncurrent-context: fake\nusers:\n- name: fake\n  user:\n    \
             token: detect-token\n"
        ),
    )
    .unwrap();
    path
}

fn config(redis: &RedisServer, kubeconfig: PathBuf) -> HostConfig {
    let mut config = HostConfig::from_env(|_| None).expect("defaults are valid");
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.redis_url = Some(redis.url());
    config.kubeconfig_path = Some(kubeconfig);
    config.kubernetes_namespace = "bannou-detect".to_owned();
    config
}

/// `bannou-host backends --api URL [--json]`: its stdout (the command must succeed).
fn backends_cli(server: &Server, json: bool) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bannou-host"));
    cmd.env_clear()
        .args(["backends", "--api", &server.base_url()]);
    if json {
        cmd.arg("--json");
    }
    let out = cmd.output().expect("bannou-host runs");
    assert!(
        out.status.success(),
        "backends failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn entry<'a>(list: &'a Value, kind: &str) -> &'a Value {
    list["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["type"] == kind)
        .unwrap_or_else(|| panic!("no {kind} entry in {list}"))
}

/// The line of the table for `kind`.
fn row<'a>(table: &'a str, kind: &str) -> &'a str {
    table
        .lines()
        .find(|l| l.split_whitespace().next() == Some(kind))
        .unwrap_or_else(|| panic!("no {kind} row in\n{table}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detection_picks_kubernetes_then_portainer_and_says_why() {
    let test = "detection_picks_kubernetes_then_portainer_and_says_why";
    if require::docker(test).await.is_none() {
        return;
    }
    let Some(redis) = RedisServer::for_test(test) else {
        return;
    };
    orchestrator_backends::http::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let kube_url = fake_kubernetes().await;
    let proxy = PortainerProxy::start(Some(KEY)).await.unwrap();

    // 1. Both answer: Kubernetes first, Portainer second, each with its endpoint.
    let mut cfg = config(&redis, kubeconfig(dir.path(), &kube_url));
    cfg.portainer_url = Some(proxy.url().to_owned());
    cfg.portainer_api_key = Some(bannou_host::config::Secret::new(KEY));
    let server = Server::start(cfg).await.expect("control plane");
    let list: Value = serde_json::from_str(&backends_cli(&server, true)).unwrap();
    assert_eq!(list["recommended"], "Kubernetes", "{list}");
    let k8s = entry(&list, "Kubernetes");
    assert_eq!(k8s["available"], true, "{k8s}");
    assert_eq!(k8s["priority"], 1);
    assert_eq!(k8s["version"], "v1.33.0-detect");
    assert!(
        k8s["endpoint"].as_str().unwrap().starts_with(&kube_url),
        "{k8s}"
    );
    let ptr = entry(&list, "Portainer");
    assert_eq!(ptr["available"], true, "{ptr}");
    assert_eq!(ptr["priority"], 2);
    assert_eq!(ptr["version"], PROXY_VERSION);
    assert_eq!(ptr["endpoint"], format!("{} (endpoint 1)", proxy.url()));
    let table = backends_cli(&server, false);
    assert!(row(&table, "Kubernetes").contains("yes"), "{table}");
    assert!(row(&table, "Portainer").contains(proxy.url()), "{table}");
    assert!(
        table.contains("Recommended: Kubernetes"),
        "the table says which is picked:\n{table}"
    );
    server.shutdown().await;

    // 2. No kubeconfig: Portainer is picked; Kubernetes says why not.
    let mut cfg = config(&redis, dir.path().join("no-such-kubeconfig"));
    cfg.portainer_url = Some(proxy.url().to_owned());
    cfg.portainer_api_key = Some(bannou_host::config::Secret::new(KEY));
    let server = Server::start(cfg).await.expect("control plane");
    let table = backends_cli(&server, false);
    assert!(table.contains("Recommended: Portainer"), "{table}");
    assert!(
        row(&table, "Kubernetes").contains("No Kubernetes credentials found"),
        "{table}"
    );
    server.shutdown().await;

    // 3. A wrong key: Portainer unavailable with Portainer's answer; no URL: not configured.
    let mut cfg = config(&redis, dir.path().join("no-such-kubeconfig"));
    cfg.portainer_url = Some(proxy.url().to_owned());
    cfg.portainer_api_key = Some(bannou_host::config::Secret::new("wrong"));
    let server = Server::start(cfg).await.expect("control plane");
    let table = backends_cli(&server, false);
    assert!(
        row(&table, "Portainer").contains("Portainer returned 401"),
        "{table}"
    );
    assert!(!table.contains("Recommended: Portainer"), "{table}");
    server.shutdown().await;
    let server = Server::start(config(&redis, dir.path().join("no-such-kubeconfig")))
        .await
        .expect("control plane");
    let table = backends_cli(&server, false);
    assert!(
        row(&table, "Portainer").contains("ORCHESTRATOR_PORTAINER_URL not configured"),
        "{table}"
    );
    server.shutdown().await;
    println!(
        "checked: detection picks kubernetes (fake API server) over portainer (proxy), then \
         portainer without a kubeconfig; reasons shown for no credentials, a wrong key (401) \
         and an unset Portainer URL"
    );
}

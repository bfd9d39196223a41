//! Fault handling of the whole host over HTTP: a node whose
//! service reports `unavailable` fails its wave within the wave deadline and the
//! deployment reverts to the last stable version; a malformed request body gets 400
//! naming the field and changes nothing; a preset that does not exist gets 404 and tears
//! nothing down; without the bearer token the API answers 401 when a token is set.
//! Presets are written into a temporary directory for each test.

mod common;

use std::path::Path;
use std::time::Duration;

use bannou_host::client::{ApiClient, ClientError, paths};
use bannou_host::config::Secret;
use common::{FAULTY, Host, PATIENCE, config, deploy, get_json, http};
use orchestrator_core::api::GetStatusRequest;
use serde_json::{Value, json};

/// One L1 node hosting `auth`: the stable deployment every test starts from.
const BASE: &str = "\
name: base
description: One auth node
category: testing
topology:
  nodes:
    - name: base-auth
      services: [auth]
";

fn presets() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("base.yaml"), BASE).unwrap();
    std::fs::write(dir.path().join("faulty.yaml"), FAULTY).unwrap();
    dir
}

/// Starts a host on `dir` (wave deadline 2 s) and deploys `base` on it.
async fn host_with_base(dir: &Path) -> (Host, i64) {
    let mut cfg = config(dir);
    cfg.wave_timeout = Duration::from_secs(2);
    let host = Host::start(cfg).await;
    let reply = host.api.deploy(&deploy("base")).await.unwrap();
    assert_eq!(reply.status, 200, "{:?}", reply.body.warnings);
    let version = host.config_version().await;
    assert_eq!(host.endpoints("base-auth").len(), 1);
    (host, version)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unhealthy_wave_fails_by_its_deadline_and_reverts_to_the_last_stable_version() {
    let dir = presets();
    let (host, base_version) = host_with_base(dir.path()).await;
    let store = &host.server.adapters().store;
    let stable = store.last_stable_config().await.unwrap().unwrap();
    assert_eq!(stable.version, u64::try_from(base_version).unwrap());

    let reply = tokio::time::timeout(PATIENCE, host.api.deploy(&deploy("faulty")))
        .await
        .expect("the failed wave ends the deploy (wave deadline 2 s)")
        .unwrap();
    assert_eq!(reply.status, 500, "{reply:?}");
    assert!(!reply.body.success);
    let warnings = reply.body.warnings.clone().unwrap_or_default();
    assert!(
        warnings.iter().any(|w| w.contains("faulty-realm")),
        "the warnings name the node: {warnings:?}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("faulty-realm") && w.contains("not healthy within 2s")),
        "failed by the wave deadline: {warnings:?}"
    );
    assert!(
        warnings.iter().any(|w| w.contains("reverted")),
        "{warnings:?}"
    );
    println!("faulty deploy -> 500, warnings: {warnings:?}");

    // Reverted: the base node runs and routes, the faulty nodes are gone, and the
    // version marked stable is still the base one.
    assert_eq!(host.endpoints("base-auth").len(), 1, "base-auth runs");
    assert!(host.endpoints("faulty-account").is_empty());
    assert!(host.endpoints("faulty-realm").is_empty());
    assert_eq!(host.listed().await, ["base-auth"]);
    assert_eq!(host.route("auth").await.as_deref(), Some("base-auth"));
    assert_eq!(host.route("account").await, None);
    assert_eq!(host.route("realm").await, None);
    let stable = store.last_stable_config().await.unwrap().unwrap();
    assert_eq!(stable.version, u64::try_from(base_version).unwrap());
    assert_eq!(stable.preset_name.as_deref(), Some("base"));
    let current = store.current_config().await.unwrap().unwrap();
    assert_eq!(current.preset_name.as_deref(), Some("base"), "{current:?}");
    println!(
        "reverted: base-auth runs and routes auth, faulty nodes gone, stable version still v{base_version} \
         (current v{})",
        current.version
    );
    host.shutdown().await;
}

/// Posts a raw JSON body to the deploy endpoint; the answer must be a 400 naming `field`.
async fn rejected(api: &ApiClient, body: Value, field: &str) {
    let err = api
        .post::<Value, Value>(paths::DEPLOY, &body)
        .await
        .expect_err("a malformed body is refused");
    let ClientError::Status { status, error, .. } = &err else {
        panic!("{err}");
    };
    assert_eq!(*status, 400, "{err}");
    let error = error.as_ref().expect("an error body");
    assert_eq!(error.field.as_deref(), Some(field), "{error:?}");
    assert!(error.error.contains(field), "{error:?}");
    println!("deploy {body} -> 400 naming `{field}`: {}", error.error);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_bodies_and_missing_presets_change_nothing() {
    let dir = presets();
    let (host, version) = host_with_base(dir.path()).await;

    rejected(
        &host.api,
        json!({"preset": "faulty", "timeout": "soon"}),
        "timeout",
    )
    .await;
    rejected(
        &host.api,
        json!({"preset": "faulty", "timeout": 0}),
        "timeout",
    )
    .await;
    rejected(
        &host.api,
        json!({"topology": {"nodes": [{"name": "ok"}, {"name": 7}]}}),
        "topology.nodes[1].name",
    )
    .await;
    // Not JSON at all.
    let resp = http()
        .post(host.api.url(paths::DEPLOY))
        .header("content-type", "application/json")
        .body("{\"preset\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);

    let missing = host.api.deploy(&deploy("no-such-preset")).await;
    let status = match &missing {
        Ok(reply) => reply.status,
        Err(e) => e.status().unwrap_or_else(|| panic!("{e}")),
    };
    assert_eq!(status, 404, "{missing:?}");
    println!("deploy of a preset that does not exist -> 404");

    // Nothing changed: same configuration version, the base node still runs and routes.
    assert_eq!(host.config_version().await, version);
    assert_eq!(host.listed().await, ["base-auth"]);
    assert_eq!(host.endpoints("base-auth").len(), 1);
    assert!(host.endpoints("faulty-account").is_empty());
    assert_eq!(host.route("auth").await.as_deref(), Some("base-auth"));
    let node = host.endpoints("base-auth").remove(0);
    let (code, answer) = get_json(&format!("{node}/auth/ping")).await;
    assert_eq!((code, &answer["appId"]), (200, &"base-auth".into()));
    println!(
        "after the refusals: config still v{version}, base-auth still runs, routes and answers"
    );
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_token_is_required() {
    let dir = presets();
    let mut cfg = config(dir.path());
    cfg.api_token = Some(Secret::new("s3cret"));
    let host = Host::start(cfg).await;

    let err = host
        .api
        .status(&GetStatusRequest::default())
        .await
        .expect_err("no token");
    assert_eq!(err.status(), Some(401), "{err}");
    let wrong = host.api.clone().with_token(Some("guess".into()));
    let err = wrong
        .status(&GetStatusRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(401), "{err}");
    let err = host.api.deploy(&deploy("base")).await.unwrap_err();
    assert_eq!(err.status(), Some(401), "{err}");
    assert!(
        host.listed().await.is_empty(),
        "the refused deploy ran nothing"
    );

    let authorized = host.api.clone().with_token(Some("s3cret".into()));
    let status = authorized
        .status(&GetStatusRequest::default())
        .await
        .unwrap();
    assert!(!status.deployed);
    // Liveness stays open.
    assert_eq!(host.api.health().await.unwrap()["status"], "ok");
    println!("token set: no or wrong token -> 401 (deploy ran nothing), right token -> 200");
    host.shutdown().await;
}

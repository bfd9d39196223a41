//! The status page (`GET /`) in a real browser: Debian's `chromium`, headless, driven over
//! WebDriver (`chromedriver`, `fantoccini`) against the whole host in process. The page
//! must show a deployed `game-stack` healthy node by node and service by service (its
//! screenshot lands in `target/test-output/status-page.png`), follow a pool scale and a
//! forced node restart without a reload, replay a deployment's waves to a page opened
//! during a burst of events, and, with an API token set, ask for the token before showing
//! anything.
//!
//! Skipped with a printed reason when `chromium` or `chromedriver` is missing, unless
//! `BANNOU_TEST_REQUIRE` names `browser`.

mod common;

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bannou_host::config::HostConfig;
use common::{Host, PATIENCE, config, our_presets};
use fantoccini::{Client, ClientBuilder, Locator};
use orchestrator_backends::require::skip_or_fail;
use orchestrator_core::api::{
    DeployRequest, ScalePoolRequest, ServiceRestartRequest, TeardownRequest,
};
use orchestrator_core::events::topics;
use orchestrator_core::ports::bus::EventBus;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "chromedriver";

/// A `chromedriver` on a free loopback port, in a process group of its own that holds the
/// browsers it starts: the whole group is killed on drop, so a failed test (which never
/// closes its session) leaves no Chromium behind.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let killed = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        if !killed.is_ok_and(|s| s.success()) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// Why the browser cannot run here, if it cannot.
fn browser_missing() -> Option<String> {
    if !Path::new(CHROMIUM).exists() {
        return Some(format!("{CHROMIUM} not found (Debian package chromium)"));
    }
    match Command::new(CHROMEDRIVER)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(s) if s.success() => None,
        Ok(s) => Some(format!("{CHROMEDRIVER} --version: {s}")),
        Err(e) => Some(format!(
            "{CHROMEDRIVER} not runnable (Debian package chromium-driver): {e}"
        )),
    }
}

/// True when the browser can run here; otherwise skips `test` with the reason (or fails
/// it, when `BANNOU_TEST_REQUIRE` names `browser`).
fn browser_runs(test: &str) -> bool {
    match browser_missing() {
        Some(reason) => {
            skip_or_fail("browser", test, &reason);
            false
        }
        None => true,
    }
}

/// A `chromedriver` and a headless Chromium session on it.
async fn start_browser() -> (Driver, Client) {
    let driver = start_driver().await;
    let client = open_browser(&driver).await;
    (driver, client)
}

/// Closes the session and its driver, then tears the deployment down and stops the host.
async fn finish(client: Client, driver: Driver, host: Host) {
    client.close().await.unwrap();
    drop(driver);
    host.api
        .teardown(&TeardownRequest::default())
        .await
        .unwrap();
    host.shutdown().await;
}

async fn start_driver() -> Driver {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .arg("--allowed-ips=127.0.0.1")
        .process_group(0)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let driver = Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let http = common::http();
    let status = format!("{}/status", driver.url);
    common::eventually("chromedriver answers", || {
        let (http, status) = (http.clone(), status.clone());
        async move {
            let ready = http
                .get(&status)
                .send()
                .await
                .ok()?
                .json::<serde_json::Value>();
            ready.await.ok()?["value"]["ready"].as_bool()?.then_some(())
        }
    })
    .await;
    driver
}

/// A headless Chromium session at 1280x800.
async fn open_browser(driver: &Driver) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".to_owned(),
        serde_json::json!({
            "binary": CHROMIUM,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                     "--window-size=1280,800", "--disable-dev-shm-usage",
                     // No crash handler: it would leave the process group.
                     "--disable-breakpad", "--disable-crash-reporter"],
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a chromium session")
}

/// Evaluates `script` (a function body returning a value) until it returns a value other
/// than `null`/`false`, within [`PATIENCE`]; returns it. Panics naming `what`, with the
/// last value seen.
async fn wait_until(client: &Client, what: &str, script: &str) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let last = match client.execute(script, vec![]).await {
            Ok(v) if !v.is_null() && v != serde_json::Value::Bool(false) => return v,
            Ok(v) => v,
            Err(e) => serde_json::Value::String(e.to_string()),
        };
        if tokio::time::Instant::now() >= deadline {
            let page = client.execute(DESCRIBE_PAGE, vec![]).await;
            panic!("gave up waiting: {what} (last: {last}); the page: {page:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What a failed wait prints: each node and service row with its health, and the errors.
const DESCRIBE_PAGE: &str = "return JSON.stringify({
    state: document.body.dataset.state,
    error: document.getElementById('error').textContent,
    stream: document.getElementById('stream-state').textContent,
    nodes: [...document.querySelectorAll('[data-node]')].map(n => n.dataset.node + '=' + n.dataset.health),
    services: [...document.querySelectorAll('#services tbody tr')]
        .filter(r => r.dataset.health !== 'Healthy')
        .map(r => r.dataset.app + '/' + r.dataset.service + '=' + r.dataset.health),
  });";

/// True once `expected` nodes are on the page and every node, and every service row of a
/// deployed node, is healthy (registrations left by torn-down nodes are listed apart).
fn all_healthy(expected: usize) -> String {
    format!(
        "const nodes = [...document.querySelectorAll('[data-node]')];
         const rows = [...document.querySelectorAll('#services tbody tr[data-deployed=true]')];
         return nodes.length >= {expected} && rows.length > 0
           && nodes.every(n => n.dataset.health === 'healthy')
           && rows.every(r => r.dataset.health === 'Healthy');"
    )
}

fn output_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("../test-output");
    std::fs::create_dir_all(&dir).expect("the test output folder");
    dir
}

async fn screenshot(client: &Client, name: &str) {
    let png = client.screenshot().await.expect("a screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    let path = output_dir().join(name);
    std::fs::write(&path, png).expect("the screenshot is written");
    eprintln!("screenshot: {}", path.display());
}

fn deploy(preset: &str) -> DeployRequest {
    DeployRequest {
        preset: Some(preset.to_owned()),
        ..DeployRequest::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_follows_a_deployment_live() {
    const TEST: &str = "the_status_page_follows_a_deployment_live";
    if !browser_runs(TEST) {
        return;
    }
    let host = Host::start(config(&our_presets())).await;
    let (driver, client) = start_browser().await;

    // 1. game-stack: three nodes in three waves, all healthy on the page.
    // Nodes beat every second, so each reports the mappings version it applied soon.
    let request = DeployRequest {
        environment: Some(
            [(
                "BANNOU_HEARTBEAT_INTERVAL_SECONDS".to_owned(),
                "1".to_owned(),
            )]
            .into(),
        ),
        ..deploy("game-stack")
    };
    let reply = host.api.deploy(&request).await.unwrap();
    assert!(reply.body.success, "{:?}", reply.body.warnings);
    client.goto(&host.server.base_url()).await.unwrap();
    wait_until(&client, "game-stack healthy", &all_healthy(3)).await;
    let preset = client.find(Locator::Id("preset")).await.unwrap();
    assert_eq!(preset.text().await.unwrap(), "game-stack");
    for node in ["stack-auth", "stack-world", "stack-features"] {
        let script = format!(
            "const n = document.querySelector('.node[data-node=\"{node}\"]');
             return n && n.querySelectorAll('.chip[data-health=\"Healthy\"]').length;"
        );
        let chips = wait_until(&client, &format!("{node} with its services"), &script).await;
        assert!(chips.as_u64().unwrap() >= 3, "{node}: {chips}");
    }
    // The waves come from the event stream's buffer, replayed to a page opened later.
    wait_until(
        &client,
        "three healthy waves and the deployment's events",
        "return document.querySelectorAll('.wave[data-state=\"healthy\"]').length === 3
           && !!document.querySelector('#events li[data-type=\"deployment.completed\"]')
           && document.getElementById('stream-state').dataset.state === 'live';",
    )
    .await;
    // Routing lag: the current mappings version and the nodes behind it (a count).
    wait_until(
        &client,
        "the mappings version and the nodes behind it",
        "const v = document.getElementById('mappings-version');
         const b = document.getElementById('nodes-behind');
         return !!v && Number(v.dataset.mappingsVersion) > 0
           && !!b && b.dataset.nodesBehind !== undefined;",
    )
    .await;
    // Each node's applied version follows (`routing.applied` events refresh the page),
    // until none is behind.
    wait_until(
        &client,
        "every node on the current mappings version",
        "const rows = document.querySelectorAll('#node-versions tr[data-node-version]');
         const b = document.getElementById('nodes-behind');
         return rows.length === 3 && b.dataset.nodesBehind === '0';",
    )
    .await;
    screenshot(&client, "status-page.png").await;

    host.api
        .teardown(&TeardownRequest::default())
        .await
        .unwrap();
    host.shutdown().await;

    // 2. npc-brains, a node and two pools, deployed on a fresh host while the page is open:
    // the page follows without a reload. A fresh host because, after a redeploy over
    // game-stack, the torn-down nodes' registrations sometimes linger as `Unavailable` in
    // `/orchestrator/health/services` and fail the restart of `actor` (a host bug of its
    // own, reported with this test).
    let host = Host::start(config(&our_presets())).await;
    client.goto(&host.server.base_url()).await.unwrap();
    wait_until(
        &client,
        "an empty deployment",
        "return document.getElementById('preset').textContent === 'nothing deployed';",
    )
    .await;
    client
        .execute("window.__notReloaded = true; return true;", vec![])
        .await
        .unwrap();
    let reply = host.api.deploy(&deploy("npc-brains")).await.unwrap();
    assert!(reply.body.success, "{:?}", reply.body.warnings);
    wait_until(&client, "npc-brains healthy", &all_healthy(4)).await;
    let workers =
        "const t = document.querySelector('[data-pool=\"npc-brain\"] [data-field=\"total\"]');
                   return t && t.textContent;";
    let before = wait_until(&client, "the npc-brain pool", workers).await;
    assert_eq!(before, "2", "minInstances");
    host.api
        .scale_pool(&ScalePoolRequest {
            pool_type: "npc-brain".to_owned(),
            target_instances: 4,
            force: false,
        })
        .await
        .expect("the pool scales");
    wait_until(
        &client,
        "four npc-brain workers on the page",
        "const t = document.querySelector('[data-pool=\"npc-brain\"] [data-field=\"total\"]');
         return t && t.textContent === '4'
           && document.querySelectorAll('.workers li[data-node^=\"bannou-pool-npc-brain-\"]').length === 4;",
    )
    .await;

    // 3. A forced restart of the node holding `actor`: a new instance, healthy again.
    let instance_of = "const n = document.querySelector('.node[data-node=\"npc-coordinator\"]');
                       return n && n.dataset.instance;";
    let old = wait_until(&client, "npc-coordinator's instance", instance_of).await;
    host.api
        .restart_service(&ServiceRestartRequest {
            service_name: "actor".to_owned(),
            environment: None,
            force: true,
            timeout: 60,
        })
        .await
        .expect("the restart succeeds");
    let script = format!(
        "const n = document.querySelector('.node[data-node=\"npc-coordinator\"]');
         return n && n.dataset.instance !== {old} && n.dataset.instance !== ''
           && n.dataset.health === 'healthy' && n.dataset.instance;"
    );
    let new = wait_until(&client, "npc-coordinator restarted and healthy", &script).await;
    assert_ne!(new, old);
    let kept = client
        .execute("return window.__notReloaded === true;", vec![])
        .await
        .unwrap();
    assert_eq!(kept, serde_json::Value::Bool(true), "no reload");
    screenshot(&client, "status-page-pools.png").await;

    finish(client, driver, host).await;
}

/// A page opened while events keep coming still replays the buffer: the live events that
/// arrive in the same chunk as the stream's `reset` (they are gathered, D57) must not
/// move the page past the deployment's waves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_opened_in_a_burst_of_events_replays_the_deployment() {
    const TEST: &str = "a_page_opened_in_a_burst_of_events_replays_the_deployment";
    if !browser_runs(TEST) {
        return;
    }
    let host = Host::start(config(&our_presets())).await;
    let reply = host.api.deploy(&deploy("game-stack")).await.unwrap();
    assert!(reply.body.success, "{:?}", reply.body.warnings);

    let (driver, client) = start_browser().await;
    // A `service.error` every 2 ms (a type the page follows) until the page shows the
    // waves; at most 5,000, well inside the hub's buffer, so the deployment stays in it.
    let bus = host.server.adapters().bus.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let burst = tokio::spawn({
        let stop = stop.clone();
        async move {
            let mut sent = 0u32;
            while sent < 5_000 && !stop.load(Ordering::Relaxed) {
                let event = serde_json::json!({
                    "eventName": "service.error",
                    "eventId": format!("00000000-0000-4000-8000-{sent:012}"),
                    "timestamp": "2026-12-08T00:00:00Z",
                    "serviceId": "00000000-0000-0000-0000-000000000000",
                    "serviceName": "orchestrator",
                    "appId": "bannou",
                    "operation": "StatusPageTest",
                    "errorType": "burst",
                    "message": format!("burst event {sent}"),
                });
                bus.publish(topics::SERVICE_ERROR, event.to_string().into())
                    .await
                    .expect("the burst is published");
                sent += 1;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            sent
        }
    });

    client.goto(&host.server.base_url()).await.unwrap();
    wait_until(
        &client,
        "the burst on the page",
        "return !!document.querySelector('#events li[data-type=\"service.error\"]');",
    )
    .await;
    wait_until(
        &client,
        "three healthy waves, replayed during the burst",
        "return document.querySelectorAll('.wave[data-state=\"healthy\"]').length === 3;",
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    let sent = burst.await.expect("the burst task ends");
    assert!(
        sent < 5_000,
        "the burst was still running when the page caught up"
    );

    finish(client, driver, host).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_token_the_page_asks_for_it_first() {
    const TEST: &str = "with_a_token_the_page_asks_for_it_first";
    const TOKEN: &str = "page-s3cret";
    if !browser_runs(TEST) {
        return;
    }
    let mut config: HostConfig =
        HostConfig::from_env(|k| (k == "ORCHESTRATOR_API_TOKEN").then(|| TOKEN.to_owned()))
            .expect("valid");
    let defaults = common::config(&our_presets());
    config.listen = defaults.listen;
    config.presets_host_path = defaults.presets_host_path;
    let mut host = Host::start(config).await;
    host.api = host.api.with_token(Some(TOKEN.to_owned()));
    let reply = host.api.deploy(&deploy("game-stack")).await.unwrap();
    assert!(reply.body.success, "{:?}", reply.body.warnings);

    let (driver, client) = start_browser().await;
    client.goto(&host.server.base_url()).await.unwrap();
    wait_until(
        &client,
        "the token form",
        "return document.body.dataset.state === 'token'
           && !document.getElementById('token-form').hidden
           && document.querySelectorAll('[data-node]').length === 0;",
    )
    .await;
    // A wrong token is refused and asked for again.
    let input = client.find(Locator::Id("token-input")).await.unwrap();
    input.send_keys("wrong").await.unwrap();
    client
        .find(Locator::Id("token-submit"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_until(
        &client,
        "the wrong token refused",
        "return document.body.dataset.state === 'token'
           && document.getElementById('token-error').textContent.length > 0;",
    )
    .await;
    let input = client.find(Locator::Id("token-input")).await.unwrap();
    input.send_keys(TOKEN).await.unwrap();
    client
        .find(Locator::Id("token-submit"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_until(
        &client,
        "game-stack healthy after the token",
        &all_healthy(3),
    )
    .await;
    wait_until(
        &client,
        "the event stream live with the token",
        "return document.getElementById('stream-state').dataset.state === 'live';",
    )
    .await;
    let url = client.current_url().await.unwrap();
    assert!(!url.as_str().contains(TOKEN), "{url}");

    finish(client, driver, host).await;
}

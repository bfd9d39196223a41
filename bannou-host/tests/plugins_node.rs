//! The plugin host as a scenario: which services a node runs
//! (docs/COMPATIBILITY.md#enablement-rule), the order they start in, ping served locally
//! and forwarded through the mesh, heartbeats (first, periodic, on change, final) under
//! paused time, and a stop that leaves nothing behind.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bannou_host::clock::TokioClock;
use bannou_host::mesh::{EndpointDirectory, HOP_HEADER, InProcessDirectory};
use bannou_host::plugins::node::{Node, NodeConfig, TaskCounter};
use bannou_host::plugins::{Plugin, PluginContext, PluginError, PluginHealth};
use futures::StreamExt;
use orchestrator_core::events::{
    FullServiceMappingsEvent, InstanceHealthStatus, ServiceHealthStatus, ServiceHeartbeatEvent,
};
use orchestrator_core::layer::Layer;
use orchestrator_core::memory::bus::InMemoryBus;
use orchestrator_core::ports::bus::{EventBus, EventBusExt, EventSubscription};
use orchestrator_core::{AppId, Catalog, Timestamp};
use orchestrator_routing::MappingsSnapshot;
use uuid::Uuid;

// === helpers ===

const T0: i64 = 1_780_000_000_000;

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// A node environment running only `services` (plus L0's required three).
fn only(app: &str, services: &[&str], extra: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut e = env(&[("BANNOU_APP_ID", app), ("BANNOU_SERVICES_ENABLED", "false")]);
    for s in services {
        e.insert(
            orchestrator_core::names::service_enable_flag(s),
            "true".to_owned(),
        );
    }
    e.extend(env(extra));
    e
}

struct World {
    bus: Arc<dyn EventBus>,
    directory: InProcessDirectory,
    tasks: TaskCounter,
}

impl World {
    fn new() -> Self {
        World {
            bus: Arc::new(InMemoryBus::new()),
            directory: InProcessDirectory::new(),
            tasks: TaskCounter::new(),
        }
    }

    fn builder(
        &self,
        environment: BTreeMap<String, String>,
    ) -> bannou_host::plugins::node::NodeBuilder {
        let config = NodeConfig::from_environment(environment).expect("valid node env");
        Node::builder(config, self.bus.clone(), Arc::new(self.directory.clone()))
            .clock(Arc::new(TokioClock::starting_at(
                Timestamp::from_unix_millis(T0),
            )))
            .tasks(self.tasks.clone())
    }

    /// Starts a node and registers it in the directory.
    async fn node(&self, environment: BTreeMap<String, String>) -> Node {
        let node = self
            .builder(environment)
            .start()
            .await
            .expect("node starts");
        self.directory.register(node.app_id(), node.base_url());
        node
    }

    async fn heartbeats(&self) -> EventSubscription<ServiceHeartbeatEvent> {
        self.bus.subscribe_events().await.unwrap()
    }

    async fn publish_mappings(&self, version: i64, routes: &[(&str, &str)]) {
        let snapshot = MappingsSnapshot::from_entries(
            version,
            None,
            routes.iter().map(|(s, a)| (*s, Some(*a))),
        );
        let event: FullServiceMappingsEvent = snapshot.to_event(
            Uuid::new_v4(),
            Timestamp::from_unix_millis(T0),
            Uuid::new_v4(),
        );
        self.bus.publish_event(&event).await.unwrap();
    }
}

async fn next_beat(events: &mut EventSubscription<ServiceHeartbeatEvent>) -> ServiceHeartbeatEvent {
    events.next().await.expect("bus open").expect("a heartbeat")
}

fn names(beat: &ServiceHeartbeatEvent) -> Vec<&str> {
    beat.services
        .iter()
        .map(|s| s.service_name.as_str())
        .collect()
}

/// Waits (yielding, bounded by a generous safety timeout) until `cond` holds.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let wait = async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
}

fn http() -> reqwest::Client {
    orchestrator_backends::http::install_crypto_provider();
    reqwest::Client::new()
}

async fn get_json(url: &str) -> (u16, serde_json::Value) {
    let resp = http().get(url).send().await.expect("reachable");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("json body"))
}

// === enablement and start order ===

#[tokio::test]
async fn enablement_follows_spec_3_3() {
    let world = World::new();
    let catalog = Catalog::builtin();

    // Defaults: everything, L0 included; the orchestrator is never a placeholder.
    let all = world
        .node(env(&[("BANNOU_HEARTBEAT_ENABLED", "false")]))
        .await;
    assert_eq!(all.app_id(), &AppId::from("bannou"), "default app-id");
    assert_eq!(all.enabled_services().len(), catalog.services().len());
    let hosted = all.hosted_services();
    assert_eq!(hosted.len(), catalog.services().len() - 1);
    assert!(!hosted.contains(&"orchestrator".to_owned()));
    all.stop().await;

    // Services mode: only the per-service overrides, plus state/messaging/mesh.
    let auth = world
        .node(only(
            "n1",
            &["auth"],
            &[("BANNOU_HEARTBEAT_ENABLED", "false")],
        ))
        .await;
    assert_eq!(
        auth.enabled_services(),
        ["auth", "mesh", "messaging", "state"]
    );
    auth.stop().await;

    // A layer flag off; a per-service override beats it both ways; blank is no override.
    let mixed = world
        .node(env(&[
            ("BANNOU_HEARTBEAT_ENABLED", "false"),
            ("BANNOU_ENABLE_GAME_FEATURES", "FALSE"),
            ("MATCHMAKING_SERVICE_ENABLED", "true"),
            ("ACCOUNT_SERVICE_ENABLED", "false"),
            ("AUTH_SERVICE_ENABLED", "  "),
        ]))
        .await;
    let enabled = mixed.enabled_services();
    let has = |s: &str| enabled.iter().any(|e| e == s);
    assert!(has("matchmaking"), "override beats the layer flag");
    assert!(!has("analytics"), "L4 off");
    assert!(!has("account"), "override false");
    assert!(has("auth"), "blank override falls through to the layer");
    assert!(has("state") && has("telemetry"), "L0 on");
    mixed.stop().await;
}

/// A plugin that records when it starts and stops.
struct Recording {
    name: &'static str,
    layer: Layer,
    events: Arc<Mutex<Vec<String>>>,
}

#[async_trait::async_trait]
impl Plugin for Recording {
    fn name(&self) -> &str {
        self.name
    }
    fn layer(&self) -> Layer {
        self.layer
    }
    async fn start(&self, ctx: &PluginContext) -> Result<(), PluginError> {
        assert_eq!(ctx.app_id, AppId::from("n1"));
        self.events
            .lock()
            .unwrap()
            .push(format!("start {}", self.name));
        Ok(())
    }
    fn health(&self) -> PluginHealth {
        PluginHealth::healthy()
    }
    fn routes(&self) -> axum::Router {
        axum::Router::new()
    }
    async fn stop(&self) {
        self.events
            .lock()
            .unwrap()
            .push(format!("stop {}", self.name));
    }
}

#[tokio::test]
async fn plugins_start_in_layer_order_and_stop_in_reverse() {
    let world = World::new();
    let events = Arc::new(Mutex::new(Vec::new()));
    let rec = |name, layer| {
        Arc::new(Recording {
            name,
            layer,
            events: events.clone(),
        }) as Arc<dyn Plugin>
    };
    let node = world
        .builder(env(&[
            ("BANNOU_APP_ID", "n1"),
            ("BANNOU_HEARTBEAT_ENABLED", "false"),
        ]))
        .plugin(rec("zz-extension", Layer::Extensions))
        .plugin(rec("orchestrator", Layer::AppFeatures))
        .plugin(rec("aa-foundation", Layer::AppFoundation))
        .start()
        .await
        .unwrap();

    let hosted = node.hosted_services();
    assert_eq!(
        &hosted[..4],
        ["telemetry", "state", "messaging", "mesh"],
        "L0 in its fixed order"
    );
    let catalog = Catalog::builtin();
    let layer_of = |s: &str| match s {
        "zz-extension" => Layer::Extensions,
        "aa-foundation" => Layer::AppFoundation,
        _ => catalog.get(s).unwrap().layer,
    };
    let layers: Vec<Layer> = hosted.iter().map(|s| layer_of(s)).collect();
    assert!(
        layers.windows(2).all(|w| w[0] <= w[1]),
        "layer order: {hosted:?}"
    );
    for w in hosted.windows(2) {
        if layer_of(&w[0]) == layer_of(&w[1]) && layer_of(&w[0]) != Layer::Infrastructure {
            assert!(w[0] < w[1], "alphabetical inside a layer: {w:?}");
        }
    }
    assert_eq!(
        hosted.iter().filter(|s| *s == "orchestrator").count(),
        1,
        "the extra replaces the placeholder"
    );
    assert!(node.health_handle("orchestrator").is_none());
    assert!(node.health_handle("auth").is_some());

    node.stop().await;
    assert_eq!(
        *events.lock().unwrap(),
        [
            "start aa-foundation",
            "start orchestrator",
            "start zz-extension",
            "stop zz-extension",
            "stop orchestrator",
            "stop aa-foundation"
        ]
    );
}

/// A plugin whose start fails.
struct Broken;

#[async_trait::async_trait]
impl Plugin for Broken {
    fn name(&self) -> &str {
        "broken"
    }
    fn layer(&self) -> Layer {
        Layer::Extensions
    }
    async fn start(&self, _ctx: &PluginContext) -> Result<(), PluginError> {
        Err(PluginError {
            plugin: "broken".to_owned(),
            message: "no database".to_owned(),
        })
    }
    fn health(&self) -> PluginHealth {
        PluginHealth::healthy()
    }
    fn routes(&self) -> axum::Router {
        axum::Router::new()
    }
}

#[tokio::test]
async fn a_failing_plugin_stops_the_start_and_leaves_nothing_running() {
    let world = World::new();
    let err = world
        .builder(only("n1", &["auth"], &[]))
        .plugin(Arc::new(Broken))
        .start()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no database"), "{err}");
    assert_eq!(world.tasks.running(), 0);
}

#[tokio::test]
async fn bad_settings_are_named() {
    let err = NodeConfig::from_environment(env(&[("BANNOU_HEARTBEAT_INTERVAL_SECONDS", "soon")]))
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("BANNOU_HEARTBEAT_INTERVAL_SECONDS"),
        "{err}"
    );
    let world = World::new();
    let err = world
        .builder(only("n1", &["auth"], &[("BANNOU_FAULT_AUTH", "on fire")]))
        .start()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("BANNOU_FAULT_AUTH"), "{err}");
}

// === ping ===

#[tokio::test]
async fn ping_is_answered_locally() {
    let world = World::new();
    let node = world
        .node(only(
            "n1",
            &["auth"],
            &[("BANNOU_HEARTBEAT_ENABLED", "false")],
        ))
        .await;
    let (status, body) = get_json(&format!("{}/auth/ping", node.base_url())).await;
    assert_eq!(status, 200);
    assert_eq!(body["service"], "auth");
    assert_eq!(body["appId"], "n1");
    assert_eq!(body["instanceId"], node.instance_id().to_string());
    assert!(body.get("via").is_none());
    let (status, body) = get_json(&format!("{}/nonsense/ping", node.base_url())).await;
    assert_eq!(status, 404);
    assert!(body["error"].as_str().unwrap().contains("unknown service"));
    node.stop().await;
}

#[tokio::test]
async fn ping_is_forwarded_through_the_mesh_once_mappings_arrive() {
    let world = World::new();
    let off = [("BANNOU_HEARTBEAT_ENABLED", "false")];
    let n1 = world.node(only("n1", &["auth"], &off)).await;
    let n2 = world.node(only("n2", &["account"], &off)).await;

    // Before any mappings, account resolves to `bannou`, which is not running here.
    let (status, body) = get_json(&format!("{}/account/ping", n1.base_url())).await;
    assert_eq!(status, 503, "{body}");
    assert!(body["error"].as_str().unwrap().contains("bannou"));

    world
        .publish_mappings(3, &[("auth", "n1"), ("account", "n2")])
        .await;
    eventually("both nodes applied version 3", || {
        n1.routing_version() == Some(3) && n2.routing_version() == Some(3)
    })
    .await;

    let (status, body) = get_json(&format!("{}/account/ping", n1.base_url())).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["service"], "account");
    assert_eq!(body["appId"], "n2", "answered by the node that hosts it");
    assert_eq!(body["via"], "n1");
    let (_, back) = get_json(&format!("{}/auth/ping", n2.base_url())).await;
    assert_eq!(
        (back["appId"].as_str(), back["via"].as_str()),
        (Some("n1"), Some("n2"))
    );

    // A forwarded request is never forwarded again.
    let resp = http()
        .get(format!("{}/account/ping", n1.base_url()))
        .header(HOP_HEADER, "n9")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404);

    // The mesh client is the reusable piece.
    let answer = n1.mesh().get("account", "/account/ping").await.unwrap();
    assert_eq!(answer.app_id, AppId::from("n2"));
    assert_eq!(answer.status, 200);
    assert_eq!(
        world.directory.endpoint(&AppId::from("n2")),
        Some(n2.base_url())
    );

    let logs: Vec<String> = n2
        .log()
        .query(&Default::default())
        .into_iter()
        .map(|l| l.message)
        .collect();
    assert!(
        logs.iter()
            .any(|l| l.contains("ping served for account (via n1)")),
        "{logs:?}"
    );
    n1.stop().await;
    n2.stop().await;
}

/// `calls` forwarded pings of `service` through `node` (one HTTP client), counted by the
/// app-id that answered; the second count is the calls that failed.
async fn forwarded_pings(node: &Node, service: &str, calls: u32) -> (BTreeMap<String, u32>, u32) {
    let client = http();
    let url = format!("{}/{service}/ping", node.base_url());
    let mut answered = BTreeMap::new();
    let mut failed = 0;
    for _ in 0..calls {
        let body = match client.get(&url).send().await {
            Ok(resp) if resp.status().is_success() => resp.json::<serde_json::Value>().await.ok(),
            _ => None,
        };
        match body.as_ref().and_then(|b| b["appId"].as_str()) {
            Some(app) => *answered.entry(app.to_owned()).or_insert(0) += 1,
            None => failed += 1,
        }
    }
    (answered, failed)
}

#[tokio::test]
async fn a_weighted_service_is_split_per_call_through_the_mesh_and_clearing_returns_it_to_the_primary()
 {
    const CALLS: u32 = 2_000;
    let world = World::new();
    let off = [("BANNOU_HEARTBEAT_ENABLED", "false")];
    let caller = world.node(only("caller", &["auth"], &off)).await;
    let old = world.node(only("old", &["account"], &off)).await;
    let new = world.node(only("new", &["account"], &off)).await;

    // Version 1: account's primary is `old` (what upstream's nodes use), 30% to `new`.
    let split = orchestrator_routing::WeightedTargets::new([
        (AppId::from("old"), 70),
        (AppId::from("new"), 30),
    ])
    .unwrap();
    let snapshot = MappingsSnapshot::from_entries(1, None, [("account", Some("old"))])
        .with_weights([("account".to_owned(), split)]);
    let event = snapshot.to_event(
        Uuid::new_v4(),
        Timestamp::from_unix_millis(T0),
        Uuid::new_v4(),
    );
    assert_eq!(event.mappings["account"], "old");
    world.bus.publish_event(&event).await.unwrap();
    eventually("the caller applied version 1", || {
        caller.routing_version() == Some(1)
    })
    .await;

    let (answered, failed) = forwarded_pings(&caller, "account", CALLS).await;
    assert_eq!(failed, 0, "{answered:?}");
    assert_eq!(answered.values().sum::<u32>(), CALLS);
    let share = f64::from(answered.get("new").copied().unwrap_or(0)) * 100.0 / f64::from(CALLS);
    assert!(
        (share - 30.0).abs() <= 4.0,
        "new got {share:.1}% for a weight of 30: {answered:?}"
    );

    // Version 2 clears the split while a client keeps calling: no call fails, and once the
    // caller applied it every call goes to the primary.
    let during = {
        let caller_url = caller.base_url();
        tokio::spawn(async move {
            let client = http();
            let mut failed = 0u32;
            for _ in 0..200 {
                let ok = client
                    .get(format!("{caller_url}/account/ping"))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                failed += u32::from(!ok);
            }
            failed
        })
    };
    world.publish_mappings(2, &[("account", "old")]).await;
    eventually("the caller applied version 2", || {
        caller.routing_version() == Some(2)
    })
    .await;
    assert_eq!(
        during.await.unwrap(),
        0,
        "calls failed while the split was cleared"
    );
    let (answered, failed) = forwarded_pings(&caller, "account", CALLS / 4).await;
    assert_eq!(failed, 0);
    assert_eq!(
        answered.into_iter().collect::<Vec<_>>(),
        [("old".to_owned(), CALLS / 4)]
    );

    for node in [caller, old, new] {
        node.stop().await;
    }
}

// === heartbeats ===

#[tokio::test(start_paused = true)]
async fn heartbeats_first_periodic_on_change_and_final() {
    let world = World::new();
    let mut beats = world.heartbeats().await;
    let node = world.node(only("n1", &["auth"], &[])).await;

    // First beat: as soon as plugins have started.
    let first = next_beat(&mut beats).await;
    assert_eq!(first.app_id, AppId::from("n1"));
    assert_eq!(first.service_id, node.instance_id());
    assert_eq!(first.status, InstanceHealthStatus::Healthy);
    assert_eq!(names(&first), ["state", "messaging", "mesh", "auth"]);
    assert_eq!(first.timestamp, Timestamp::from_unix_millis(T0));
    assert!(first.capacity.is_some());
    assert_eq!(first.metadata, None, "no routing applied yet");

    // Periodic: every 30 s by default, with stable per-plugin ids.
    let second = next_beat(&mut beats).await;
    assert_eq!(second.timestamp, Timestamp::from_unix_millis(T0 + 30_000));
    let third = next_beat(&mut beats).await;
    assert_eq!(third.timestamp, Timestamp::from_unix_millis(T0 + 60_000));
    assert_eq!(first.services[3].service_id, third.services[3].service_id);

    // A status change beats at once.
    tokio::time::advance(Duration::from_secs(7)).await;
    node.health_handle("auth")
        .unwrap()
        .set_status(ServiceHealthStatus::Unavailable, &["database down"]);
    let changed = next_beat(&mut beats).await;
    assert_eq!(changed.timestamp, Timestamp::from_unix_millis(T0 + 67_000));
    assert_eq!(changed.status, InstanceHealthStatus::Unavailable);
    assert_eq!(changed.issues, Some(vec!["auth: database down".to_owned()]));
    assert_eq!(changed.services[3].status, ServiceHealthStatus::Unavailable);

    // Issues alone make the instance degraded.
    node.health_handle("auth").unwrap().set(PluginHealth {
        status: ServiceHealthStatus::Healthy,
        issues: vec!["slow".to_owned()],
    });
    assert_eq!(
        next_beat(&mut beats).await.status,
        InstanceHealthStatus::Degraded
    );

    // The applied routing version rides in the metadata.
    world.publish_mappings(5, &[("auth", "n1")]).await;
    let later = next_beat(&mut beats).await;
    assert_eq!(
        later.timestamp,
        Timestamp::from_unix_millis(T0 + 97_000),
        "interval restarted at the change"
    );
    assert_eq!(
        later.metadata,
        Some(serde_json::json!({ "routingVersion": 5 }))
    );

    // Final beat on stop.
    node.stop().await;
    let last = next_beat(&mut beats).await;
    assert_eq!(last.status, InstanceHealthStatus::ShuttingDown);
    assert_eq!(last.services.len(), 4);
    assert_eq!(world.tasks.running(), 0);
}

#[tokio::test(start_paused = true)]
async fn fault_variable_and_interval_come_from_the_environment() {
    let world = World::new();
    let mut beats = world.heartbeats().await;
    let node = world
        .node(only(
            "n1",
            &["auth", "game-session"],
            &[
                ("BANNOU_FAULT_AUTH", "unavailable:token store unreachable"),
                ("BANNOU_FAULT_GAME_SESSION", "degraded"),
                ("BANNOU_HEARTBEAT_INTERVAL_SECONDS", "5"),
            ],
        ))
        .await;
    let first = next_beat(&mut beats).await;
    assert_eq!(first.status, InstanceHealthStatus::Unavailable);
    let status_of = |b: &ServiceHeartbeatEvent, s: &str| {
        b.services
            .iter()
            .find(|x| x.service_name == s)
            .unwrap()
            .status
    };
    assert_eq!(status_of(&first, "auth"), ServiceHealthStatus::Unavailable);
    assert_eq!(
        status_of(&first, "game-session"),
        ServiceHealthStatus::Degraded
    );
    assert_eq!(status_of(&first, "state"), ServiceHealthStatus::Healthy);
    assert_eq!(
        first.issues,
        Some(vec![
            "auth: token store unreachable".to_owned(),
            "game-session: fault injected by BANNOU_FAULT_GAME_SESSION".to_owned()
        ])
    );
    let second = next_beat(&mut beats).await;
    assert_eq!(second.timestamp, Timestamp::from_unix_millis(T0 + 5_000));
    node.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_service_routed_elsewhere_is_left_out_of_the_beat() {
    let world = World::new();
    let mut beats = world.heartbeats().await;
    let node = world.node(only("n1", &["auth", "account"], &[])).await;
    assert!(names(&next_beat(&mut beats).await).contains(&"account"));
    world.publish_mappings(1, &[("account", "n2")]).await;
    let beat = next_beat(&mut beats).await;
    assert!(
        beat.timestamp < Timestamp::from_unix_millis(T0 + 30_000),
        "a routing change counts as a status change"
    );
    assert_eq!(names(&beat), ["state", "messaging", "mesh", "auth"]);
    node.stop().await;
}

#[tokio::test(start_paused = true)]
async fn heartbeats_can_be_disabled() {
    let world = World::new();
    let mut beats = world.heartbeats().await;
    let node = world
        .node(only(
            "n1",
            &["auth"],
            &[("BANNOU_HEARTBEAT_ENABLED", "false")],
        ))
        .await;
    assert!(
        tokio::time::timeout(Duration::from_secs(300), beats.next())
            .await
            .is_err(),
        "no heartbeat at all"
    );
    node.stop().await;
    assert!(
        tokio::time::timeout(Duration::from_secs(1), beats.next())
            .await
            .is_err(),
        "no final heartbeat either"
    );
}

// === stop ===

#[tokio::test]
async fn stop_closes_the_listener_and_joins_every_task() {
    let world = World::new();
    let node = world.node(only("n1", &["auth"], &[])).await;
    let addr = node.addr();
    assert_eq!(world.tasks.running(), 3, "server, mesh follower, emitter");
    node.stop().await;
    assert_eq!(world.tasks.running(), 0);
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "listener closed"
    );
}

//! Unit tests of `resolver`.

use std::path::Path;

use proptest::prelude::*;

use super::*;
use crate::preset::Preset;

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// A preset of our own test data (`tests/fixtures/presets/`).
fn fixture(name: &str) -> ParsedPreset {
    let path = crate::testkit::require::fixtures_dir()
        .join("presets")
        .join(name);
    Preset::parse(name, &std::fs::read_to_string(path).unwrap()).unwrap()
}

/// An orchestrator environment with something of every kind 5.1 cares about.
fn orchestrator_env() -> BTreeMap<String, String> {
    map(&[
        ("AUTH_JWT_SECRET", "s3cret"),
        ("BANNOU_HTTP_ENDPOINT", "http://bannou"),
        ("ACCOUNT_SERVICE_ENABLED", "false"),
        ("BANNOU_ENABLE_GAME_FEATURES", "false"),
        ("BANNOU_SERVICES_ENABLED", "true"),
        ("BANNOU_APP_ID", "bannou"),
        ("PATH", "/usr/bin"),
        ("HEARTBEAT_INTERVAL", "5"),
    ])
}

fn svc(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn forwarding_keeps_only_whitelisted_keys() {
    let fwd = forwarded_environment(&orchestrator_env(), Catalog::builtin());
    assert_eq!(
        fwd,
        map(&[
            ("AUTH_JWT_SECRET", "s3cret"),
            ("BANNOU_HTTP_ENDPOINT", "http://bannou")
        ])
    );
    assert!(is_forwardable("game_session_max", Catalog::builtin()));
    assert!(!is_forwardable(
        "bannou_enable_extensions",
        Catalog::builtin()
    ));
    assert!(!is_forwardable("Bannou_App_Id", Catalog::builtin()));
}

#[test]
fn a_layer_mode_node_gets_layer_flags_and_routes_only_its_services() {
    let parsed = fixture("identity-split.yaml");
    let request = map(&[("BANNOU_APP_LOGGING_LEVEL", "Trace")]);
    let r =
        Resolved::from_preset(&parsed, &orchestrator_env(), &request, Catalog::builtin()).unwrap();
    assert_eq!(r.nodes.len(), 1);
    assert!(r.pools.is_empty());
    let n = &r.nodes[0];
    assert_eq!(n.app_id.as_str(), "bannou-identity");
    assert_eq!(
        n.environment,
        map(&[
            ("ACCOUNT_SERVICE_ENABLED", "true"),
            ("AUTH_JWT_SECRET", "s3cret"),
            ("AUTH_SERVICE_ENABLED", "true"),
            ("BANNOU_APP_ID", "bannou-identity"),
            ("BANNOU_APP_LOGGING_LEVEL", "Trace"),
            ("BANNOU_ENABLE_APP_FEATURES", "false"),
            ("BANNOU_ENABLE_APP_FOUNDATION", "true"),
            ("BANNOU_ENABLE_EXTENSIONS", "false"),
            ("BANNOU_ENABLE_GAME_FEATURES", "false"),
            ("BANNOU_ENABLE_GAME_FOUNDATION", "false"),
            ("BANNOU_HTTP_ENDPOINT", "http://bannou"),
            ("GAME_SESSION_SERVICE_ENABLED", "true"),
            ("GAME_SESSION_SUPPORTED_GAME_SERVICES", "demo-game"),
            ("IDENTITY_NODE_MARKER", "true"),
        ])
    );
    // Routed services come out sorted, whatever the file order.
    assert_eq!(n.routed_services, svc(&["account", "auth", "game-session"]));
    assert_eq!(
        n.services,
        svc(&[
            "account",
            "auth",
            "chat",
            "connect",
            "contract",
            "game-session",
            "mesh",
            "messaging",
            "permission",
            "resource",
            "state",
            "telemetry"
        ])
    );
    assert_eq!((n.replicas, n.mesh_enabled), (1, true));
}

#[test]
fn the_relayed_connect_node_writes_every_layer_flag() {
    let parsed = fixture("relay-edge.yaml");
    let r = Resolved::from_preset(
        &parsed,
        &BTreeMap::new(),
        &BTreeMap::new(),
        Catalog::builtin(),
    )
    .unwrap();
    let n = &r.nodes[0];
    assert_eq!(
        n.environment,
        map(&[
            ("BANNOU_APP_ID", "bannou-relay"),
            ("BANNOU_APP_LOGGING_LEVEL", "Trace"),
            ("BANNOU_ENABLE_APP_FEATURES", "false"),
            ("BANNOU_ENABLE_APP_FOUNDATION", "true"),
            ("BANNOU_ENABLE_EXTENSIONS", "false"),
            ("BANNOU_ENABLE_GAME_FEATURES", "false"),
            ("BANNOU_ENABLE_GAME_FOUNDATION", "false"),
            ("CONNECT_CONNECTION_MODE", "relayed"),
            ("CONNECT_SERVICE_ENABLED", "true"),
            ("RELAY_NODE_MARKER", "on"),
        ]),
        "layer mode: no BANNOU_SERVICES_ENABLED"
    );
    assert_eq!(n.routed_services, svc(&["connect"]));
    let hosts = |s: &str| n.services.iter().any(|x| x == s);
    assert!(hosts("connect") && hosts("permission") && hosts("state"));
    assert!(!hosts("realm") && !hosts("asset") && !hosts("matchmaking"));
}

#[test]
fn a_services_mode_node_runs_only_its_services() {
    let parsed = fixture("login-solo.yaml");
    let r = Resolved::from_preset(
        &parsed,
        &orchestrator_env(),
        &BTreeMap::new(),
        Catalog::builtin(),
    )
    .unwrap();
    let n = &r.nodes[0];
    assert_eq!(
        n.environment,
        map(&[
            ("ACCOUNT_SERVICE_ENABLED", "true"),
            ("ASPNETCORE_ENVIRONMENT", "Staging"),
            ("AUTH_JWT_SECRET", "s3cret"),
            ("AUTH_SERVICE_ENABLED", "true"),
            ("BANNOU_APP_ID", "bannou-login"),
            ("BANNOU_APP_LOGGING_LEVEL", "Warning"),
            ("BANNOU_HTTP_ENDPOINT", "http://bannou"),
            ("BANNOU_SERVICES_ENABLED", "false"),
            ("BANNOU_WEB_HOST_LOGGING_LEVEL", "Error"),
            ("TESTING_SERVICE_ENABLED", "true"),
        ])
    );
    assert_eq!(
        n.services,
        svc(&["account", "auth", "mesh", "messaging", "state", "testing"])
    );
    assert_eq!(n.routed_services, svc(&["account", "auth", "testing"]));
}

#[test]
fn preset_node_environment_only_fills_missing_keys() {
    let node = NodeInput {
        name: "n".into(),
        app_id: None,
        layers: vec![Layer::GameFoundation],
        services: svc(&["realm"]),
        replicas: 1,
        environment: map(&[
            ("BANNOU_ENABLE_APP_FOUNDATION", "true"),
            ("REALM_SERVICE_ENABLED", "false"),
        ]),
        mesh_enabled: true,
    };
    let env = preset_node_environment(
        &map(&[("X", "preset"), ("BANNOU_ENABLE_EXTENSIONS", "true")]),
        &node,
    );
    assert_eq!(
        env,
        map(&[
            ("BANNOU_ENABLE_APP_FEATURES", "false"),
            ("BANNOU_ENABLE_APP_FOUNDATION", "true"),
            ("BANNOU_ENABLE_EXTENSIONS", "true"),
            ("BANNOU_ENABLE_GAME_FEATURES", "false"),
            ("BANNOU_ENABLE_GAME_FOUNDATION", "true"),
            ("REALM_SERVICE_ENABLED", "false"),
            ("X", "preset"),
        ])
    );
    // No layers and no services: nothing added.
    let bare = NodeInput {
        layers: vec![],
        services: vec![],
        environment: BTreeMap::new(),
        ..node
    };
    assert_eq!(
        preset_node_environment(&BTreeMap::new(), &bare),
        BTreeMap::new()
    );
}

#[test]
fn request_topology_layers_are_ignored_and_services_forced() {
    // An API node: layers listed but no env flags -> services mode
    // (docs/COMPATIBILITY.md#environment-layering).
    let nodes = [NodeInput {
        name: "api-node".into(),
        app_id: Some("custom".into()),
        layers: vec![Layer::AppFoundation],
        services: svc(&["Auth"]),
        replicas: 2,
        environment: map(&[("AUTH_SERVICE_ENABLED", "false")]),
        mesh_enabled: false,
    }];
    let empty = BTreeMap::new();
    let r = resolve(&ResolveInput {
        catalog: Catalog::builtin(),
        orchestrator_environment: &empty,
        preset_environment: &empty,
        request_environment: &empty,
        nodes: &nodes,
        pools: &[],
    })
    .unwrap();
    let n = &r.nodes[0];
    assert_eq!(
        n.environment,
        map(&[
            ("AUTH_SERVICE_ENABLED", "true"),
            ("BANNOU_APP_ID", "custom"),
            ("BANNOU_SERVICES_ENABLED", "false")
        ])
    );
    assert_eq!(n.services, svc(&["auth", "mesh", "messaging", "state"]));
    assert_eq!((n.replicas, n.mesh_enabled), (2, false));
}

#[test]
fn resolve_rejects_bad_request_topologies() {
    let node = |name: &str, app: Option<&str>, services: &[&str]| NodeInput {
        name: name.into(),
        app_id: app.map(Into::into),
        layers: vec![],
        services: svc(services),
        replicas: 1,
        environment: BTreeMap::new(),
        mesh_enabled: true,
    };
    let empty = BTreeMap::new();
    let run = |nodes: &[NodeInput]| {
        resolve(&ResolveInput {
            catalog: Catalog::builtin(),
            orchestrator_environment: &empty,
            preset_environment: &empty,
            request_environment: &empty,
            nodes,
            pools: &[],
        })
    };
    assert_eq!(
        run(&[node(" ", None, &[])]),
        Err(ResolveError::MissingNodeName { index: 0 })
    );
    let err = run(&[node("a", None, &["acount"])]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "node `a`: unknown service `acount` (did you mean `account`?)"
    );
    assert!(matches!(
        run(&[node("a", None, &[]), node("b", Some("A"), &[])]),
        Err(ResolveError::DuplicateAppId { .. })
    ));
    assert!(matches!(
        run(&[node("a", None, &["auth"]), node("b", None, &["auth"])]),
        Err(ResolveError::ServiceRoutedTwice { .. })
    ));
}

#[test]
fn pools_get_worker_env_and_camel_case_json() {
    let parsed = fixture("npc-crowds.yaml");
    let r = Resolved::from_preset(
        &parsed,
        &BTreeMap::new(),
        &BTreeMap::new(),
        Catalog::builtin(),
    )
    .unwrap();
    assert!(r.nodes.is_empty());
    assert_eq!(r.pools.len(), 3);
    let p = &r.pools[0];
    assert_eq!(p.environment["BANNOU_SERVICES_ENABLED"], "false");
    assert_eq!(p.environment["ACTOR_SERVICE_ENABLED"], "true");
    assert_eq!(p.environment["ACTOR_POOL_NODE_CAPACITY"], "40");
    let json = serde_json::to_value(p).unwrap();
    assert_eq!(json["poolType"], "crowd-shared");
    assert_eq!(json["minInstances"], 2);
    assert_eq!(json["maxInstances"], 8);
    assert_eq!(json["scaleUpThreshold"], 0.9);
    assert_eq!(json["idleTimeoutMinutes"], 4);
    // The pool that leaves bounds out gets the documented defaults.
    let json = serde_json::to_value(&r.pools[2]).unwrap();
    assert_eq!(json["poolType"], "crowd-director");
    assert_eq!(json["minInstances"], 1);
    assert_eq!(json["maxInstances"], 4);
    assert_eq!(json["scaleUpThreshold"], 0.8);
    assert_eq!(json["scaleDownThreshold"], 0.2);
    assert_eq!(json["idleTimeoutMinutes"], 5);
    assert_eq!(json["environment"]["CROWD_VERBOSE"], "true");
}

#[test]
fn repo_example_presets_resolve() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../presets");
    let load = |name: &str| {
        let text = std::fs::read_to_string(dir.join(name)).unwrap();
        let parsed = Preset::parse(name, &text).unwrap();
        Resolved::from_preset(
            &parsed,
            &BTreeMap::new(),
            &BTreeMap::new(),
            Catalog::builtin(),
        )
        .unwrap()
    };
    let stack = load("game-stack.yaml");
    let hosted = |i: usize, s: &str| stack.nodes[i].services.iter().any(|x| x == s);
    // L1 node: every L1 service, no L2/L4.
    assert!(hosted(0, "chat") && !hosted(0, "realm") && !hosted(0, "matchmaking"));
    // L2 node: L1 + L2, no L4.
    assert!(hosted(1, "auth") && hosted(1, "quest") && !hosted(1, "analytics"));
    // L4 node: L1 + L2 + L4, no L3.
    assert!(hosted(2, "item") && hosted(2, "behavior") && !hosted(2, "asset"));
    assert_eq!(
        stack.nodes[2].routed_services,
        svc(&["analytics", "leaderboard", "matchmaking"])
    );

    let ten = load("local-ten.yaml");
    assert_eq!(ten.nodes.len(), 10);
    for n in &ten.nodes {
        assert_eq!(n.services.len(), 4, "{}: {:?}", n.name, n.services);
        assert_eq!(n.environment["BANNOU_SERVICES_ENABLED"], "false");
    }
    let app_ids: std::collections::BTreeSet<_> =
        ten.nodes.iter().map(|n| n.app_id.clone()).collect();
    assert_eq!(app_ids.len(), 10);

    let brains = load("npc-brains.yaml");
    assert_eq!(brains.pools.len(), 2);
    assert_eq!(brains.pools[1].max_instances, 3);
    assert_eq!(brains.nodes[0].routed_services, svc(&["actor"]));
}

#[test]
fn service_enablement_follows_spec_3_3() {
    let c = Catalog::builtin();
    let on =
        |svc: &str, pairs: &[(&str, &str)]| is_service_enabled(c.get(svc).unwrap(), &map(pairs));
    assert!(on(
        "state",
        &[
            ("STATE_SERVICE_ENABLED", "false"),
            ("BANNOU_SERVICES_ENABLED", "false")
        ]
    ));
    assert!(on("auth", &[]));
    assert!(on(
        "auth",
        &[
            ("AUTH_SERVICE_ENABLED", "TRUE"),
            ("BANNOU_SERVICES_ENABLED", "false")
        ]
    ));
    assert!(!on("auth", &[("AUTH_SERVICE_ENABLED", "yes")]));
    // A blank per-service flag falls through to the next rule.
    assert!(!on(
        "auth",
        &[
            ("AUTH_SERVICE_ENABLED", " "),
            ("BANNOU_SERVICES_ENABLED", "False")
        ]
    ));
    assert!(!on("auth", &[("BANNOU_ENABLE_APP_FOUNDATION", "false")]));
    assert!(on("realm", &[("BANNOU_ENABLE_APP_FOUNDATION", "false")]));
    assert!(!on("telemetry", &[("BANNOU_SERVICES_ENABLED", "false")]));
    assert!(on(
        "telemetry",
        &[("BANNOU_ENABLE_APP_FOUNDATION", "false")]
    ));
    // Keys are matched case-insensitively when no exact key exists.
    assert!(!on(
        "game-session",
        &[("game_session_service_enabled", "false")]
    ));
    let l1 = enabled_services(
        &map(&[
            ("BANNOU_SERVICES_ENABLED", "false"),
            ("BANNOU_ENABLE_APP_FOUNDATION", "true"),
        ]),
        c,
    );
    assert_eq!(l1, svc(&["mesh", "messaging", "state"]));
    let all = enabled_services(&BTreeMap::new(), c);
    assert_eq!(all.len(), c.services().len());
}

fn key_strategy() -> impl Strategy<Value = String> {
    let prefixes: Vec<String> = Catalog::builtin()
        .services()
        .iter()
        .map(|s| s.env_prefix.clone())
        .collect();
    let word = "[A-Za-z0-9_]{0,8}";
    prop_oneof![
        word.prop_map(|w| format!("BANNOU_{w}")),
        word.prop_map(|w| format!("{w}_SERVICE_ENABLED")),
        word.prop_map(|w| format!("BANNOU_ENABLE_{w}")),
        Just("BANNOU_SERVICES_ENABLED".to_owned()),
        Just("BANNOU_APP_ID".to_owned()),
        (proptest::sample::select(prefixes), word).prop_map(|(p, w)| format!("{p}{w}")),
        "[ -~]{0,16}",
    ]
    .prop_flat_map(|k| {
        // Random case per character.
        let n = k.len();
        (Just(k), proptest::collection::vec(any::<bool>(), n))
    })
    .prop_map(|(k, upper)| {
        k.chars()
            .zip(upper)
            .map(|(c, u)| {
                if u {
                    c.to_ascii_uppercase()
                } else {
                    c.to_ascii_lowercase()
                }
            })
            .collect()
    })
}

/// Independent statement of docs/COMPATIBILITY.md#forwarding-whitelist for the property below.
fn whitelisted(key: &str) -> bool {
    let k = key.to_ascii_uppercase();
    let blocked = k.ends_with("_SERVICE_ENABLED")
        || k.starts_with("BANNOU_ENABLE_")
        || k == "BANNOU_SERVICES_ENABLED"
        || k == "BANNOU_APP_ID";
    let prefixed = k.starts_with("BANNOU_")
        || Catalog::builtin()
            .services()
            .iter()
            .any(|s| k.starts_with(&format!("{}_", crate::names::env_service_name(&s.name))));
    !blocked && prefixed
}

proptest! {
    #[test]
    fn forwarded_env_is_exactly_the_whitelist(
        env in proptest::collection::btree_map(key_strategy(), "[a-z0-9]{0,4}", 0..24)
    ) {
        let fwd = forwarded_environment(&env, Catalog::builtin());
        for (k, v) in &fwd {
            let upper = k.to_ascii_uppercase();
            prop_assert!(!upper.ends_with("_SERVICE_ENABLED"), "{k}");
            prop_assert!(!upper.starts_with("BANNOU_ENABLE_"), "{k}");
            prop_assert!(upper != "BANNOU_SERVICES_ENABLED" && upper != "BANNOU_APP_ID", "{k}");
            prop_assert!(whitelisted(k), "{k}");
            prop_assert_eq!(Some(v), env.get(k));
        }
        for k in env.keys().filter(|k| whitelisted(k)) {
            prop_assert!(fwd.contains_key(k), "dropped {k}");
        }
    }
}

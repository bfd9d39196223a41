//! Unit tests of `planner`.

use super::*;
use crate::resolver::enabled_services;

/// A services-mode node hosting exactly `routed` (plus what 3.3 always enables).
fn node(app: &str, routed: &[&str]) -> ResolvedNode {
    let mut env = BTreeMap::from([
        ("BANNOU_SERVICES_ENABLED".to_owned(), "false".to_owned()),
        ("BANNOU_APP_ID".to_owned(), app.to_owned()),
    ]);
    for s in routed {
        env.insert(crate::names::service_enable_flag(s), "true".to_owned());
    }
    build(app, routed, env)
}

/// A layer-mode node enabling `layers` and routing `routed`.
fn layered(app: &str, layers: &[Layer], routed: &[&str]) -> ResolvedNode {
    let mut env = BTreeMap::from([("BANNOU_APP_ID".to_owned(), app.to_owned())]);
    for l in Layer::TOGGLEABLE {
        env.insert(
            l.enable_flag().unwrap().to_owned(),
            layers.contains(&l).to_string(),
        );
    }
    for s in routed {
        env.insert(crate::names::service_enable_flag(s), "true".to_owned());
    }
    build(app, routed, env)
}

fn build(app: &str, routed: &[&str], env: BTreeMap<String, String>) -> ResolvedNode {
    let mut routed: Vec<String> = routed.iter().map(|s| s.to_string()).collect();
    routed.sort();
    ResolvedNode {
        name: app.to_owned(),
        app_id: AppId::from(app),
        services: enabled_services(&env, Catalog::builtin()),
        routed_services: routed,
        environment: env,
        replicas: 1,
        mesh_enabled: true,
    }
}

fn cp(services: &[&str]) -> PlanOptions {
    PlanOptions {
        control_plane_services: Some(services.iter().map(|s| s.to_string()).collect()),
        strict: false,
    }
}

fn kinds(w: &Wave) -> Vec<(ActionKind, &str)> {
    w.actions
        .iter()
        .map(|a| (a.kind, a.app_id.as_str()))
        .collect()
}

#[test]
fn nodes_go_in_the_wave_of_their_highest_layer_lowest_first() {
    let desired = [
        node("game", &["game-service", "realm"]),
        node("auth", &["account", "auth"]),
        node("feat", &["matchmaking"]),
    ];
    let p = plan(&[], &desired, Catalog::builtin(), &PlanOptions::default()).unwrap();
    let layers: Vec<Layer> = p.waves.iter().map(|w| w.layer).collect();
    assert_eq!(
        layers,
        [
            Layer::AppFoundation,
            Layer::GameFoundation,
            Layer::GameFeatures
        ]
    );
    assert_eq!(kinds(&p.waves[0]), [(ActionKind::Deploy, "auth")]);
    assert_eq!(p.waves[0].actions[0].services, ["account", "auth"]);
    assert_eq!(p.routing["realm"], AppId::from("game"));
    assert_eq!(p.count(ActionKind::Deploy), 3);
}

#[test]
fn a_node_waits_for_the_node_hosting_its_dependency_even_within_a_layer() {
    // actor (L2) needs character (L2) and resource (L1); the control plane runs only L1.
    let l1: Vec<&str> = Catalog::builtin()
        .in_layer(Layer::AppFoundation)
        .map(|d| d.name.as_str())
        .collect();
    let mut cp_services = l1.clone();
    cp_services.extend([
        "telemetry",
        "game-service",
        "realm",
        "species",
        "location",
        "relationship",
        "asset",
    ]);
    let desired = [node("a-actor", &["actor"]), node("z-char", &["character"])];
    let p = plan(&[], &desired, Catalog::builtin(), &cp(&cp_services)).unwrap();
    let order: Vec<&str> = p
        .waves
        .iter()
        .flat_map(|w| w.actions.iter().map(|a| a.app_id.as_str()))
        .collect();
    assert_eq!(order, ["z-char", "a-actor"], "{p}");
    assert_eq!(p.waves.len(), 2);
    assert!(p.waves.iter().all(|w| w.layer == Layer::GameFoundation));
}

#[test]
fn missing_hard_dependency_is_an_error_naming_it() {
    let err = plan(
        &[],
        &[node("n", &["auth"])],
        Catalog::builtin(),
        &cp(&["state", "messaging", "mesh"]),
    )
    .unwrap_err();
    let e = err
        .errors
        .iter()
        .find(|e| e.code == IssueCode::MissingDependency)
        .unwrap();
    assert!(e.services.contains(&"account".to_owned()), "{e}");
    assert!(
        err.to_string().contains("`account` (needed by auth)"),
        "{err}"
    );
}

#[test]
fn game_features_without_game_foundation_anywhere_is_an_error() {
    let only_l1: Vec<&str> = Catalog::builtin()
        .services()
        .iter()
        .filter(|d| d.layer <= Layer::AppFoundation)
        .map(|d| d.name.as_str())
        .collect();
    let err = plan(
        &[],
        &[node("t", &["testing"])],
        Catalog::builtin(),
        &cp(&only_l1),
    )
    .unwrap_err();
    let e = err
        .errors
        .iter()
        .find(|e| e.code == IssueCode::GameFoundationMissing)
        .unwrap();
    assert!(e.message.contains("testing"), "{e}");
    assert!(
        e.services.contains(&"game-service".to_owned()),
        "names the missing layer's services: {e}"
    );
}

#[test]
fn layer_without_its_prerequisites_is_disabled_with_a_warning_or_rejected_when_strict() {
    let n = layered("g", &[Layer::GameFoundation, Layer::GameFeatures], &[]);
    assert!(n.services.contains(&"realm".to_owned()));
    let p = plan(
        &[],
        std::slice::from_ref(&n),
        Catalog::builtin(),
        &PlanOptions::default(),
    )
    .unwrap();
    let fixed = &p.nodes[0];
    assert_eq!(fixed.environment["BANNOU_ENABLE_GAME_FOUNDATION"], "false");
    assert_eq!(
        fixed.environment["BANNOU_ENABLE_GAME_FEATURES"], "false",
        "cascades to L4"
    );
    assert!(!fixed.services.contains(&"realm".to_owned()));
    let coupling: Vec<_> = p
        .warnings
        .iter()
        .filter(|w| w.code == IssueCode::LayerCoupling)
        .collect();
    assert_eq!(coupling.len(), 2, "{:?}", p.warnings);

    let strict = PlanOptions {
        strict: true,
        ..PlanOptions::default()
    };
    let err = plan(&[], &[n], Catalog::builtin(), &strict).unwrap_err();
    assert!(
        err.errors
            .iter()
            .all(|e| e.code == IssueCode::LayerCoupling)
    );
    assert!(
        err.to_string()
            .contains("enables GameFoundation without AppFoundation"),
        "{err}"
    );
}

#[test]
fn incomplete_app_foundation_is_a_warning() {
    let p = plan(
        &[],
        &[node("n", &["account", "auth"])],
        Catalog::builtin(),
        &PlanOptions::default(),
    )
    .unwrap();
    let w = p
        .warnings
        .iter()
        .find(|w| w.code == IssueCode::IncompleteAppFoundation)
        .unwrap();
    assert!(w.services.contains(&"connect".to_owned()));
    let full = layered("full", &[Layer::AppFoundation], &["auth"]);
    let p = plan(&[], &[full], Catalog::builtin(), &PlanOptions::default()).unwrap();
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
}

#[test]
fn diff_distinguishes_redeploy_teardown_routing_moves_and_unchanged() {
    let a = layered("a", &[Layer::AppFoundation], &["auth"]);
    let b = node("b", &["realm", "game-service"]);
    let c = node("c", &["matchmaking"]);
    let current = [a.clone(), b.clone(), c];

    // a: routing only grows (account already hosted via layers) -> MoveRouting, no restart.
    let a2 = layered("a", &[Layer::AppFoundation], &["auth", "account"]);
    // b: env changes -> Redeploy.
    let mut b2 = b.clone();
    b2.environment.insert("REALM_LIMIT".into(), "5".into());
    let d = node("d", &["character"]);
    let p = plan(
        &current,
        &[a2, b2, d],
        Catalog::builtin(),
        &PlanOptions::default(),
    )
    .unwrap();

    assert_eq!(p.count(ActionKind::Redeploy), 1);
    assert_eq!(p.count(ActionKind::Deploy), 1);
    assert_eq!(p.count(ActionKind::Teardown), 1);
    let mv = p
        .waves
        .iter()
        .flat_map(|w| &w.actions)
        .find(|a| a.kind == ActionKind::MoveRouting)
        .unwrap();
    assert_eq!(
        (mv.app_id.as_str(), mv.services.as_slice(), mv.from.as_ref()),
        ("a", &["account".to_owned()][..], None)
    );
    let redeploy = p
        .waves
        .iter()
        .flat_map(|w| &w.actions)
        .find(|a| a.kind == ActionKind::Redeploy)
        .unwrap();
    assert_eq!(redeploy.changes, ["env REALM_LIMIT added"]);
    let last = p.waves.last().unwrap();
    assert_eq!(
        (last.phase, kinds(last)),
        (WavePhase::Teardown, vec![(ActionKind::Teardown, "c")])
    );
    assert_eq!(
        last.actions[0].services,
        ["matchmaking"],
        "routes return to the control plane"
    );
    assert_eq!(
        p.unchanged,
        [AppId::from("a")],
        "a routing move restarts nothing"
    );
    assert_eq!(p.apply_routing(&routing_of(&current)), p.routing);

    let again = plan(
        &p.nodes,
        &p.nodes,
        Catalog::builtin(),
        &PlanOptions::default(),
    )
    .unwrap();
    assert!(again.is_empty() && again.unchanged.len() == 3, "{again}");
}

#[test]
fn duplicate_app_ids_and_double_routing_are_rejected() {
    let err = plan(
        &[],
        &[node("x", &["auth"]), node("x", &["realm"])],
        Catalog::builtin(),
        &PlanOptions::default(),
    )
    .unwrap_err();
    assert!(
        err.errors
            .iter()
            .any(|e| e.code == IssueCode::DuplicateAppId)
    );
    let err = plan(
        &[],
        &[node("x", &["auth"]), node("y", &["auth"])],
        Catalog::builtin(),
        &PlanOptions::default(),
    )
    .unwrap_err();
    assert!(
        err.errors
            .iter()
            .any(|e| e.code == IssueCode::RoutingConflict && e.services == ["auth"])
    );
}

#[test]
fn a_node_may_not_take_the_control_plane_app_id() {
    let err = plan(
        &[],
        &[node("BANNOU", &["auth"])],
        Catalog::builtin(),
        &PlanOptions::default(),
    )
    .unwrap_err();
    assert!(
        err.errors
            .iter()
            .any(|e| e.code == IssueCode::ControlPlaneNode),
        "{err}"
    );
}

#[test]
fn plan_serialises_with_the_documented_json_fields_and_renders_as_text() {
    let p = plan(
        &[],
        &[node("auth", &["auth", "account"])],
        Catalog::builtin(),
        &PlanOptions::default(),
    )
    .unwrap();
    let v = serde_json::to_value(&p).unwrap();
    assert_eq!(v["waves"][0]["layer"], "AppFoundation");
    assert_eq!(v["waves"][0]["actions"][0]["kind"], "Deploy");
    assert_eq!(v["waves"][0]["actions"][0]["appId"], "auth");
    assert_eq!(v["nodes"][0]["appId"], "auth");
    let back: Plan = serde_json::from_value(v).unwrap();
    assert_eq!(back, p);
    let text = p.to_string();
    assert!(text.contains("Wave 1 (L1 AppFoundation):"), "{text}");
    assert!(
        text.contains("deploy    auth (routes account, auth)"),
        "{text}"
    );
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    /// Services a random layout may place on nodes (routable, not always-on).
    fn placeable() -> Vec<&'static str> {
        Catalog::builtin()
            .services()
            .iter()
            .filter(|d| d.routable && !d.required)
            .map(|d| d.name.as_str())
            .collect()
    }

    /// A random deployment: each placeable service lands on one of `n` nodes or stays
    /// on the control plane; the control plane also drops some services it does not
    /// host, so that dependencies really have to be found on nodes.
    fn layout() -> impl Strategy<Value = (Vec<ResolvedNode>, PlanOptions)> {
        let services = placeable();
        let count = services.len();
        (
            1usize..7,
            proptest::collection::vec((0usize..10, proptest::bool::weighted(0.15)), count),
            any::<bool>(),
        )
            .prop_map(move |(n, picks, layered_first)| {
                let mut per_node: Vec<Vec<&str>> = vec![Vec::new(); n];
                let mut cp: BTreeSet<String> = Catalog::builtin()
                    .services()
                    .iter()
                    .map(|d| d.name.clone())
                    .collect();
                for (svc, (slot, drop_from_cp)) in services.iter().zip(picks) {
                    if slot < n {
                        per_node[slot].push(svc);
                        cp.remove(*svc);
                    } else if drop_from_cp {
                        cp.remove(*svc);
                    }
                }
                let nodes = per_node
                    .iter()
                    .enumerate()
                    .map(|(i, svcs)| {
                        let app = format!("node-{i}");
                        if i == 0 && layered_first {
                            layered(&app, &[Layer::AppFoundation, Layer::GameFoundation], svcs)
                        } else {
                            node(&app, svcs)
                        }
                    })
                    .collect();
                (
                    nodes,
                    PlanOptions {
                        control_plane_services: Some(cp),
                        strict: false,
                    },
                )
            })
    }

    /// Every Deploy/Redeploy node's hard dependencies are available when its wave starts.
    fn assert_dependency_order(p: &Plan, opts: &PlanOptions) {
        let catalog = Catalog::builtin();
        let mut available: BTreeSet<String> =
            opts.control_plane_services.clone().unwrap_or_default();
        for id in &p.unchanged {
            let n = p.nodes.iter().find(|n| &n.app_id == id).unwrap();
            available.extend(n.services.iter().cloned());
        }
        for wave in p.waves.iter().filter(|w| w.phase == WavePhase::Deploy) {
            let mut started = Vec::new();
            for a in wave
                .actions
                .iter()
                .filter(|a| matches!(a.kind, ActionKind::Deploy | ActionKind::Redeploy))
            {
                let n = p.nodes.iter().find(|n| n.app_id == a.app_id).unwrap();
                let in_cycle = p.warnings.iter().any(|w| {
                    w.code == IssueCode::DependencyCycle && w.message.contains(a.app_id.as_str())
                });
                for def in n.services.iter().filter_map(|s| catalog.find(s)) {
                    for d in &def.hard_dependencies {
                        let ok = available.contains(d)
                            || n.services.contains(d)
                            || catalog.find(d).unwrap().required
                            || in_cycle;
                        assert!(
                            ok,
                            "wave {} starts {} before `{d}` (needed by {}) is up:\n{p}",
                            wave.index, a.app_id, def.name
                        );
                    }
                }
                started.push(n);
            }
            for n in started {
                available.extend(n.services.iter().cloned());
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn waves_respect_hard_dependencies_and_plans_are_deterministic((nodes, opts) in layout()) {
            let Ok(p) = plan(&[], &nodes, Catalog::builtin(), &opts) else { return Ok(()) };
            assert_dependency_order(&p, &opts);
            prop_assert_eq!(&plan(&[], &nodes, Catalog::builtin(), &opts).unwrap(), &p);
            let mut shuffled = nodes.clone();
            shuffled.reverse();
            prop_assert_eq!(&plan(&[], &shuffled, Catalog::builtin(), &opts).unwrap(), &p, "input order must not matter");
            prop_assert_eq!(p.apply_routing(&BTreeMap::new()), p.routing.clone());
        }

        #[test]
        fn a_to_b_then_b_to_a_restores_routing((a, opts_a) in layout(), (b, opts_b) in layout()) {
            // One control plane for both deployments: the services both leave to it.
            let cp: BTreeSet<String> = opts_a.control_plane_services.unwrap().intersection(&opts_b.control_plane_services.unwrap()).cloned().collect();
            let opts = PlanOptions { control_plane_services: Some(cp), strict: false };
            let (Ok(pa), Ok(pb)) = (plan(&[], &a, Catalog::builtin(), &opts), plan(&[], &b, Catalog::builtin(), &opts)) else { return Ok(()) };
            let (a, b) = (pa.nodes, pb.nodes);
            let ab = plan(&a, &b, Catalog::builtin(), &opts).unwrap();
            assert_dependency_order(&ab, &opts);
            let after_ab = ab.apply_routing(&routing_of(&a));
            prop_assert_eq!(&after_ab, &routing_of(&b));
            let ba = plan(&ab.nodes, &a, Catalog::builtin(), &opts).unwrap();
            prop_assert_eq!(ba.apply_routing(&after_ab), routing_of(&a));
        }
    }
}

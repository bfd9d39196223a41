//! Property tests of the forwarding whitelist (docs/COMPATIBILITY.md#forwarding-whitelist):
//! what of the orchestrator's own environment reaches the nodes it deploys
//! ([`forwarded_environment`], [`is_forwardable`], and end to end through [`resolve`] and
//! [`Resolved::from_validated_preset`]).
//!
//! The whitelist, stated independently of the code (all comparisons ignore ASCII case, as
//! a host reads its flags): a key is forwarded iff it does not end with
//! `_SERVICE_ENABLED`, does not start with `BANNOU_ENABLE_`, is neither
//! `BANNOU_SERVICES_ENABLED` nor `BANNOU_APP_ID`, and starts with `BANNOU_` or with
//! `{SERVICE}_` for a catalog service (`SERVICE` = its name upper-cased, `-` -> `_`:
//! `AUTH_`, `GAME_SESSION_`, `ORCHESTRATOR_`). Values are forwarded unchanged.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use orchestrator_core::Catalog;
use orchestrator_core::preset::{Preset, PresetNode};
use orchestrator_core::resolver::{
    NodeInput, ResolveInput, Resolved, forwarded_environment, is_forwardable, resolve,
};
use proptest::prelude::*;

/// `{SERVICE}_` for every catalog service, derived from the names (not the code's
/// `env_prefix` column, which a separate test compares with this).
fn service_prefixes() -> &'static [String] {
    static PREFIXES: LazyLock<Vec<String>> = LazyLock::new(|| {
        Catalog::builtin()
            .services()
            .iter()
            .map(|s| format!("{}_", s.name.to_ascii_uppercase().replace('-', "_")))
            .collect()
    });
    &PREFIXES
}

/// The rule of docs/COMPATIBILITY.md#forwarding-whitelist, written out for the properties below.
fn whitelisted(key: &str) -> bool {
    let k = key.to_ascii_uppercase();
    let blocked = k.ends_with("_SERVICE_ENABLED")
        || k.starts_with("BANNOU_ENABLE_")
        || k == "BANNOU_SERVICES_ENABLED"
        || k == "BANNOU_APP_ID";
    let prefixed = k.starts_with("BANNOU_") || service_prefixes().iter().any(|p| k.starts_with(p));
    !blocked && prefixed
}

/// A key that must never be forwarded, whatever its case.
fn is_blocked(key: &str) -> bool {
    let k = key.to_ascii_uppercase();
    k.ends_with("_SERVICE_ENABLED")
        || k.starts_with("BANNOU_ENABLE_")
        || k == "BANNOU_SERVICES_ENABLED"
        || k == "BANNOU_APP_ID"
}

/// Every character's ASCII case chosen at random.
fn random_case(key: impl Strategy<Value = String>) -> impl Strategy<Value = String> {
    key.prop_flat_map(|k| {
        let n = k.chars().count();
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

/// Keys the whitelist must refuse: service flags (of catalog services and of anything),
/// layer flags, the master switch and the app-id.
fn blocked_key() -> impl Strategy<Value = String> {
    let word = "[A-Za-z0-9_-]{0,12}";
    random_case(prop_oneof![
        proptest::sample::select(service_prefixes().to_vec())
            .prop_map(|p| format!("{p}SERVICE_ENABLED")),
        word.prop_map(|w| format!("{w}_SERVICE_ENABLED")),
        (proptest::sample::select(service_prefixes().to_vec()), word)
            .prop_map(|(p, w)| format!("{p}{w}_SERVICE_ENABLED")),
        word.prop_map(|w| format!("BANNOU_ENABLE_{w}")),
        Just("BANNOU_SERVICES_ENABLED".to_owned()),
        Just("BANNOU_APP_ID".to_owned()),
    ])
}

/// Near misses of the blocked names; most are whitelisted by prefix, some by nothing.
fn look_alike() -> impl Strategy<Value = String> {
    const NEAR: &[&str] = &[
        "BANNOU_APP_ID_",
        "BANNOU_APP_IDS",
        "BANNOU_APPID",
        "BANNOU-APP-ID",
        "BANNOUAPP_ID",
        " BANNOU_APP_ID",
        "BANNOU_APP_ID ",
        "BANNOU_APP_İD",
        "BANNOU_SERVICES_ENABLED_",
        "BANNOU_SERVICE_ENABLED",
        "BANNOU_ENABLE",
        "BANNOU_ENABLED_X",
        "BANNOU_ENABLEX",
        "AUTH_SERVICE_ENABLE",
        "AUTH_SERVICES_ENABLED",
        "AUTH_SERVICE_ENABLED_",
        "AUTH_SERVICE_ENABLED ",
        "AUTH-SERVICE-ENABLED",
        "AUTH_SERVİCE_ENABLED",
        "AUTH_SERVICE_ENABLEḌ",
        "AUTHSERVICE_ENABLED",
        "AUTH",
        "AUTHX_Y",
        "GAME_SESSIONX",
        "GAME-SESSION_X",
        "ORCHESTRATOR_",
        "BANNOU_",
        "BANNOU",
        "_SERVICE_ENABLED",
        "SERVICE_ENABLED",
        "PATH",
        "HEARTBEAT_INTERVAL",
        "ASPNETCORE_ENVIRONMENT",
        "OPENRESTY_PORT",
        "SERVICES_X",
    ];
    random_case(
        (proptest::sample::select(NEAR), "[A-Za-z_]{0,3}").prop_map(|(n, tail)| {
            // Sometimes exactly the look-alike, sometimes with a tail.
            if tail.len() == 3 {
                n.to_owned()
            } else {
                format!("{n}{tail}")
            }
        }),
    )
}

/// Any key an environment might hold: blocked ones, look-alikes, whitelisted prefixes
/// with random tails, random identifiers and arbitrary Unicode.
fn any_key() -> impl Strategy<Value = String> {
    prop_oneof![
        blocked_key(),
        look_alike(),
        random_case(
            (
                proptest::sample::select(service_prefixes().to_vec()),
                "[A-Za-z0-9_]{0,10}"
            )
                .prop_map(|(p, w)| format!("{p}{w}"))
        ),
        random_case("[A-Za-z0-9_]{0,10}".prop_map(|w| format!("BANNOU_{w}"))),
        "[A-Za-z_][A-Za-z0-9_]{0,20}",
        "\\PC{0,24}",
    ]
}

/// Keys the whitelist accepts: the prefixes with random tails and the accepted
/// look-alikes.
fn whitelisted_key() -> impl Strategy<Value = String> {
    prop_oneof![
        random_case(
            (
                proptest::sample::select(service_prefixes().to_vec()),
                "[A-Za-z0-9_]{0,10}"
            )
                .prop_map(|(p, w)| format!("{p}{w}"))
        ),
        random_case("[A-Za-z0-9_]{0,10}".prop_map(|w| format!("BANNOU_{w}"))),
        look_alike(),
    ]
    .prop_filter("whitelisted", |k| whitelisted(k))
}

/// Arbitrary values, including empty, whitespace and Unicode.
fn any_value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("false".to_owned()),
        Just("true".to_owned()),
        "\\PC{0,16}",
        any::<String>(),
    ]
}

fn any_env() -> impl Strategy<Value = BTreeMap<String, String>> {
    proptest::collection::btree_map(any_key(), any_value(), 0..32)
}

#[test]
fn the_catalog_prefixes_are_the_service_names() {
    let catalog: Vec<String> = Catalog::builtin()
        .services()
        .iter()
        .map(|s| s.env_prefix.clone())
        .collect();
    assert_eq!(catalog, service_prefixes());
    for example in ["AUTH_", "GAME_SESSION_", "ORCHESTRATOR_"] {
        assert!(
            catalog.iter().any(|p| p == example),
            "{example} (docs/COMPATIBILITY.md#forwarding-whitelist)"
        );
    }
}

#[test]
fn look_alikes_are_judged_by_ascii_case_only() {
    let c = Catalog::builtin();
    for key in [
        "AUTH_SERVICE_ENABLED",
        "auth_service_enabled",
        "Auth_Service_Enabled",
        "BANNOU_APP_ID",
        "bannou_app_id",
        "BANNOU_SERVICES_ENABLED",
        "bannou_enable_game_features",
    ] {
        assert!(!is_forwardable(key, c), "{key}");
    }
    for key in [
        "BANNOU_APP_IDS",
        "auth_services_enabled",
        "AUTH_SERVICE_ENABLED_",
        "BANNOU_ENABLED_X",
        "game_session_max",
        "AUTH_SERVİCE_ENABLED",
    ] {
        assert!(is_forwardable(key, c), "{key}");
    }
    for key in [
        "AUTH",
        "PATH",
        "BANNOU",
        "AUTH-SERVICE-X",
        " BANNOU_X",
        "ASPNETCORE_ENVIRONMENT",
    ] {
        assert!(!is_forwardable(key, c), "{key}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    /// `is_forwardable` is exactly the written-out rule, for any key at all.
    #[test]
    fn is_forwardable_is_exactly_the_whitelist(key in any_key()) {
        prop_assert_eq!(is_forwardable(&key, Catalog::builtin()), whitelisted(&key), "{:?}", key);
    }

    /// Service flags, layer flags, the master switch and the app-id are never forwarded,
    /// in any case.
    #[test]
    fn blocked_keys_are_never_forwarded(key in blocked_key(), value in any_value()) {
        prop_assert!(is_blocked(&key));
        let env = BTreeMap::from([(key.clone(), value)]);
        prop_assert!(forwarded_environment(&env, Catalog::builtin()).is_empty(), "{:?}", key);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// The forwarded environment is the whitelisted part of the input, values unchanged:
    /// nothing blocked, nothing unlisted, nothing whitelisted dropped.
    #[test]
    fn forwarded_environment_is_the_whitelisted_subset(env in any_env()) {
        let fwd = forwarded_environment(&env, Catalog::builtin());
        for (k, v) in &fwd {
            prop_assert!(!is_blocked(k), "forwarded blocked key {:?}", k);
            prop_assert!(whitelisted(k), "forwarded unlisted key {:?}", k);
            prop_assert_eq!(Some(v), env.get(k), "value of {:?} changed", k);
        }
        let expected: BTreeMap<String, String> = env
            .iter()
            .filter(|(k, _)| whitelisted(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        prop_assert_eq!(fwd, expected);
    }

    /// An environment of whitelisted keys only is forwarded as it is.
    #[test]
    fn whitelisted_variables_are_forwarded_unchanged(
        env in proptest::collection::btree_map(whitelisted_key(), any_value(), 0..32)
    ) {
        prop_assert_eq!(forwarded_environment(&env, Catalog::builtin()), env);
    }
}

/// A node with nothing of its own, so every key of its environment comes from the
/// orchestrator's environment or from the resolver.
fn bare_node(name: &str) -> NodeInput {
    NodeInput {
        name: name.to_owned(),
        app_id: None,
        layers: Vec::new(),
        services: Vec::new(),
        replicas: 1,
        environment: BTreeMap::new(),
        mesh_enabled: true,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// docs/COMPATIBILITY.md#environment-layering end to end for a request topology: a node
    /// gets the whitelisted part of the orchestrator's environment unchanged, plus services
    /// mode and its own app-id, and nothing else; no orchestrator flag changes what it
    /// runs.
    #[test]
    fn resolve_forwards_only_the_whitelist(env in any_env(), name in "[a-z][a-z0-9-]{0,12}") {
        let catalog = Catalog::builtin();
        let empty = BTreeMap::new();
        let nodes = [bare_node(&name)];
        let resolved = resolve(&ResolveInput {
            catalog,
            orchestrator_environment: &env,
            preset_environment: &empty,
            request_environment: &empty,
            nodes: &nodes,
            pools: &[],
        })
        .unwrap();
        let node = &resolved.nodes[0];
        let mut expected = forwarded_environment(&env, catalog);
        expected.insert("BANNOU_SERVICES_ENABLED".to_owned(), "false".to_owned());
        expected.insert("BANNOU_APP_ID".to_owned(), name.clone());
        prop_assert_eq!(&node.environment, &expected);
        let app_ids: Vec<&String> = node
            .environment
            .keys()
            .filter(|k| k.eq_ignore_ascii_case("BANNOU_APP_ID"))
            .collect();
        prop_assert_eq!(app_ids, vec!["BANNOU_APP_ID"]);
        prop_assert!(!node.environment.keys().any(|k| is_blocked(k)
            && k != "BANNOU_APP_ID" && k != "BANNOU_SERVICES_ENABLED"));
        prop_assert_eq!(node.services.clone(), vec!["mesh", "messaging", "state"]);
    }

    /// Through a preset (docs/COMPATIBILITY.md#preset-to-topology then
    /// docs/COMPATIBILITY.md#environment-layering): a node's routed services are enabled,
    /// and no `*_SERVICE_ENABLED` or app-id of the orchestrator's own reaches it.
    #[test]
    fn preset_nodes_ignore_the_orchestrators_flags(
        env in any_env(),
        service in proptest::sample::select(vec!["auth", "account", "game-session", "actor"]),
    ) {
        let catalog = Catalog::builtin();
        let preset = Preset {
            name: "p".to_owned(),
            description: None,
            category: None,
            nodes: vec![PresetNode {
                name: "worker".to_owned(),
                layers: Vec::new(),
                services: vec![service.to_owned()],
                replicas: 1,
                environment: BTreeMap::new(),
                mesh_enabled: true,
                app_id: Some("bannou-worker".to_owned()),
            }],
            infrastructure: None,
            environment: BTreeMap::new(),
            required_backends: Vec::new(),
            processing_pools: Vec::new(),
        };
        let resolved =
            Resolved::from_validated_preset(&preset, &env, &BTreeMap::new(), catalog).unwrap();
        let node = &resolved.nodes[0];
        let flag = format!("{}_SERVICE_ENABLED", service.to_ascii_uppercase().replace('-', "_"));
        for (k, v) in &node.environment {
            if k == &flag {
                prop_assert_eq!(v, "true");
            } else if k == "BANNOU_APP_ID" {
                prop_assert_eq!(v, "bannou-worker");
            } else if k == "BANNOU_SERVICES_ENABLED" {
                prop_assert_eq!(v, "false");
            } else {
                prop_assert!(whitelisted(k), "{:?} is not whitelisted", k);
                prop_assert_eq!(Some(v), env.get(k), "{:?} changed", k);
            }
        }
        let mut services = vec!["mesh", "messaging", "state", service];
        services.sort_unstable();
        prop_assert_eq!(node.services.clone(), services);
    }
}

//! Fuzz target `preset`: preset file bytes -> what the host does with a preset file.
//!
//! Like `PresetLibrary::load_path`: the bytes must be UTF-8 (`read_to_string` refuses
//! anything else), then `Preset::parse_with_catalog` against the built-in catalog. Every
//! error and warning is rendered (messages quote lines and columns of the input). A preset
//! that validates goes on as a deploy would take it: `Resolved::from_preset`, each pool
//! through `PoolConfig::new`, and the layer planner against an empty environment.
//! Errors are fine; a panic is a crash.

#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use orchestrator_core::Catalog;
use orchestrator_core::planner::{self, PlanOptions};
use orchestrator_core::preset::Preset;
use orchestrator_core::resolver::Resolved;
use orchestrator_pools::{PoolConfig, PoolSpec};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let catalog = Catalog::builtin();
    let parsed = match Preset::parse_with_catalog("presets/fuzz.yaml", text, catalog) {
        Ok(parsed) => parsed,
        Err(errors) => {
            assert!(!errors.errors().is_empty(), "an error without errors");
            std::hint::black_box(errors.to_string());
            return;
        }
    };
    for warning in &parsed.warnings {
        std::hint::black_box(warning.to_string());
    }
    let orchestrator_env = BTreeMap::from([
        (
            "BANNOU_HTTP_ENDPOINT".to_owned(),
            "http://bannou".to_owned(),
        ),
        ("AUTH_JWT_SECRET".to_owned(), "s3cret".to_owned()),
        ("AUTH_SERVICE_ENABLED".to_owned(), "false".to_owned()),
        ("BANNOU_APP_ID".to_owned(), "bannou".to_owned()),
    ]);
    let resolved =
        match Resolved::from_preset(&parsed, &orchestrator_env, &BTreeMap::new(), catalog) {
            Ok(resolved) => resolved,
            Err(e) => {
                std::hint::black_box(e.to_string());
                return;
            }
        };
    for node in &resolved.nodes {
        assert_eq!(
            node.environment.get("BANNOU_APP_ID").map(String::as_str),
            Some(node.app_id.as_str()),
            "every resolved node carries its own app-id"
        );
    }
    for pool in &resolved.pools {
        if let Err(e) = PoolConfig::new(PoolSpec::from(pool)) {
            std::hint::black_box(e.to_string());
        }
    }
    for strict in [false, true] {
        let options = PlanOptions {
            control_plane_services: None,
            strict,
        };
        match planner::plan(&[], &resolved.nodes, catalog, &options) {
            Ok(plan) => std::hint::black_box(format!("{plan:?}")),
            Err(rejected) => std::hint::black_box(rejected.to_string()),
        };
    }
});

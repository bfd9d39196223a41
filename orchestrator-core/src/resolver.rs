//! Preset or request topology -> resolved nodes with app-ids, hosted services and full environments (spec 4.3, 5.1, 5.2).
//!
//! TEMPORARY on main: only the spec 3.3 enablement rule the planner needs; the full
//! resolver arrives from the presets branch.

use std::collections::BTreeMap;

use crate::catalog::{Catalog, ServiceDef};

fn flag(env: &BTreeMap<String, String>, key: &str) -> Option<bool> {
    env.get(key)
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
        .map(|v| v.eq_ignore_ascii_case("true"))
}

/// Spec 3.3: whether a host with `env` enables service `def`.
pub fn is_service_enabled(def: &ServiceDef, env: &BTreeMap<String, String>) -> bool {
    if def.required {
        return true;
    }
    if let Some(v) = flag(env, &def.enable_flag) {
        return v;
    }
    if flag(env, "BANNOU_SERVICES_ENABLED") == Some(false) {
        return false;
    }
    match def.layer.enable_flag() {
        None => true,
        Some(f) => flag(env, f).unwrap_or(true),
    }
}

/// Every service a host with `env` enables, sorted.
pub fn enabled_services(env: &BTreeMap<String, String>, catalog: &Catalog) -> Vec<String> {
    catalog
        .services()
        .iter()
        .filter(|d| is_service_enabled(d, env))
        .map(|d| d.name.clone())
        .collect()
}

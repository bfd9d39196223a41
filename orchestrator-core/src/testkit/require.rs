//! What a test may skip, and where its data lives. Pure: reads environment variables and
//! checks folders, nothing else.
//!
//! - [`skip_or_fail`]: a test whose external service (Redis, Docker) is missing prints why
//!   it skips; under `BANNOU_TEST_REQUIRE=redis,docker,upstream` (what `.ci/run` sets) the
//!   named ones fail instead, so CI can never pass by silently skipping.
//! - [`fixtures_dir`]: the workspace's own test data (`tests/fixtures/`), always present.
//! - [`upstream_data`]: upstream's example files, used only for the extra comparison tests
//!   and only when `BANNOU_UPSTREAM_DATA` names them. No test reads outside the repository
//!   otherwise.

use std::path::{Path, PathBuf};

/// The variable naming the folder of upstream's example files.
pub const UPSTREAM_DATA_VAR: &str = "BANNOU_UPSTREAM_DATA";

/// The sub-folders [`upstream_data`] requires: presets, preset fixtures, event examples.
pub const UPSTREAM_LAYOUT: [&str; 3] = ["presets", "presets/fixtures", "spec/events"];

/// The services named in `BANNOU_TEST_REQUIRE` (comma separated, case-insensitive).
pub fn required_services() -> Vec<String> {
    std::env::var("BANNOU_TEST_REQUIRE")
        .unwrap_or_default()
        .split(',')
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect()
}

/// True when `service` (e.g. `redis`) must be present.
pub fn is_required(service: &str) -> bool {
    required_services()
        .iter()
        .any(|s| s.eq_ignore_ascii_case(service))
}

/// Reports a missing service: panics when it is required, else prints the skip reason.
///
/// Returns normally only when the caller should skip.
pub fn skip_or_fail(service: &str, test: &str, reason: &str) {
    if is_required(service) {
        panic!("{test}: {service} is required (BANNOU_TEST_REQUIRE) but unavailable: {reason}");
    }
    eprintln!(
        "SKIPPED {test}: {service} unavailable ({reason}); set BANNOU_TEST_REQUIRE={service} to make this a failure"
    );
}

/// The workspace root (the folder holding the workspace `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."))
}

/// The workspace's own test data, `tests/fixtures/` (presets, bad presets, events).
pub fn fixtures_dir() -> PathBuf {
    workspace_root().join("tests").join("fixtures")
}

/// Upstream's example files for the comparison test `test`, or `None` when it skips.
///
/// `BANNOU_UPSTREAM_DATA=DIR` names a folder laid out like upstream's (`presets/`,
/// `presets/fixtures/`, `spec/events/`; the catalog comparison also reads
/// `spec/service-catalog.yaml`); a relative `DIR` is taken from the workspace
/// root. Unset or empty: prints `SKIPPED <test>: upstream data not given (set
/// BANNOU_UPSTREAM_DATA=DIR)` and returns `None`, unless `BANNOU_TEST_REQUIRE` names
/// `upstream`, which makes it a failure.
///
/// # Panics
/// When `upstream` is required and the variable is unset, and whenever the named folder
/// lacks one of the [`UPSTREAM_LAYOUT`] sub-folders (a wrong path is a mistake, not an
/// absence).
pub fn upstream_data(test: &str) -> Option<PathBuf> {
    let given = std::env::var_os(UPSTREAM_DATA_VAR).filter(|v| !v.is_empty());
    let Some(given) = given else {
        if is_required("upstream") {
            panic!(
                "{test}: upstream is required (BANNOU_TEST_REQUIRE) but {UPSTREAM_DATA_VAR} is not set"
            );
        }
        eprintln!("SKIPPED {test}: upstream data not given (set {UPSTREAM_DATA_VAR}=DIR)");
        return None;
    };
    let dir = workspace_root().join(given);
    for sub in UPSTREAM_LAYOUT {
        let want = dir.join(sub);
        assert!(
            want.is_dir(),
            "{test}: {UPSTREAM_DATA_VAR}={} has no folder {}",
            dir.display(),
            want.display()
        );
    }
    Some(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixtures_live_in_the_workspace() {
        let dir = fixtures_dir();
        assert!(dir.join("presets").is_dir(), "{}", dir.display());
        assert!(dir.join("events").is_dir(), "{}", dir.display());
        assert!(workspace_root().join("Cargo.toml").is_file());
    }
}

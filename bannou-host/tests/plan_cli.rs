//! `bannou-host plan` end to end: the real binary on every preset of ours (examples and
//! test fixtures) and, when `BANNOU_UPSTREAM_DATA` names them, upstream's; the JSON shape
//! other tools rely on, and clear non-zero exits on bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use orchestrator_core::testkit::require::{fixtures_dir, upstream_data};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn fixture_presets() -> PathBuf {
    fixtures_dir().join("presets")
}

/// Runs the binary with a clean environment (plus `env`), so the orchestrator
/// environment it forwards is exactly what the test sets.
fn plan(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bannou-host"));
    cmd.env_clear().current_dir(repo()).arg("plan").args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("bannou-host runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
}

fn json(o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "exit {:?}: {}", o.status, stderr(o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(o)))
}

/// Plans each file in text and JSON: both succeed, and a preset plans waves exactly when
/// it has nodes.
fn plans_each(files: &[PathBuf]) {
    for f in files {
        let path = f.to_string_lossy().into_owned();
        let out = plan(&[&path], &[]);
        assert!(out.status.success(), "{path}: {}", stderr(&out));
        let text = stdout(&out);
        assert!(text.contains("Plan: "), "{path}: {text}");
        let report = json(&plan(&[&path, "--format", "json"], &[]));
        let nodes = report["nodes"].as_array().unwrap().len();
        let waves = report["waves"].as_array().unwrap().len();
        assert_eq!(
            nodes > 0,
            waves > 0,
            "{path}: a preset with nodes plans waves, one without plans none"
        );
        if nodes > 0 {
            assert!(text.contains("Wave 1 ("), "{path}: {text}");
        }
    }
}

#[test]
fn plans_every_fixture_and_example_preset() {
    let mut files = yaml_files(&fixture_presets());
    files.extend(yaml_files(&repo().join("presets")));
    assert!(
        files.len() >= 16,
        "expected our fixtures and example presets: {files:?}"
    );
    plans_each(&files);
}

/// The extra comparison: upstream's own presets and fixtures plan too.
#[test]
fn plans_every_upstream_preset() {
    let Some(dir) = upstream_data("plans_every_upstream_preset") else {
        return;
    };
    let mut files = yaml_files(&dir.join("presets"));
    files.extend(yaml_files(&dir.join("presets/fixtures")));
    assert!(
        files.len() >= 12,
        "upstream presets and fixtures: {files:?}"
    );
    plans_each(&files);
}

#[test]
fn json_form_has_the_documented_fields() {
    let path = fixture_presets().join("media-pipeline.yaml");
    let r = json(&plan(&[path.to_str().unwrap(), "--format", "json"], &[]));
    let node = &r["nodes"][0];
    assert_eq!(node["name"], "media-coordinator");
    assert_eq!(node["appId"], "bannou-media");
    assert!(
        node["services"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s == "asset")
    );
    assert_eq!(node["environment"]["ASSET_LARGE_FILE_THRESHOLD_MB"], "64");
    assert_eq!(
        node["environment"]["BANNOU_SERVICES_ENABLED"], "false",
        "services-mode node"
    );
    assert_eq!(r["waves"][0]["layer"], "AppFeatures");
    assert_eq!(r["waves"][0]["actions"][0]["kind"], "Deploy");
    assert_eq!(r["waves"][0]["actions"][0]["appId"], "bannou-media");
    // snake_case pool keys (D2 (docs/DECISIONS.md#d2)): all four pools with their bounds.
    let pools = r["pools"].as_array().unwrap();
    assert_eq!(pools.len(), 4);
    assert_eq!(pools[1]["poolType"], "image-resizer");
    assert_eq!(
        (
            pools[1]["minInstances"].as_u64(),
            pools[1]["maxInstances"].as_u64()
        ),
        (Some(1), Some(4))
    );
}

#[test]
fn forwards_only_whitelisted_orchestrator_environment_and_masks_secrets_in_text() {
    let env = [
        ("AUTH_JWT_SECRET", "s3cret"),
        ("BANNOU_LOG_FORMAT", "json"),
        ("BANNOU_APP_ID", "evil"),
        ("ACCOUNT_SERVICE_ENABLED", "false"),
        ("BANNOU_ENABLE_GAME_FEATURES", "true"),
        ("HOME", "/root"),
    ];
    let r = json(&plan(
        &["presets/split-auth.yaml", "--format", "json"],
        &env,
    ));
    let node_env = &r["nodes"][0]["environment"];
    assert_eq!(node_env["AUTH_JWT_SECRET"], "s3cret");
    assert_eq!(node_env["BANNOU_LOG_FORMAT"], "json");
    assert_eq!(node_env["BANNOU_APP_ID"], r["nodes"][0]["appId"]);
    assert_eq!(node_env["ACCOUNT_SERVICE_ENABLED"], "true");
    assert!(node_env.get("HOME").is_none());
    let text = stdout(&plan(&["presets/split-auth.yaml"], &env));
    assert!(
        text.contains("AUTH_JWT_SECRET=******") && !text.contains("s3cret"),
        "{text}"
    );
    let shown = stdout(&plan(&["presets/split-auth.yaml", "--show-secrets"], &env));
    assert!(shown.contains("AUTH_JWT_SECRET=s3cret"));
}

#[test]
fn replanning_against_the_previous_output_changes_nothing_until_the_environment_does() {
    let dir = tempfile::tempdir().unwrap();
    let first = plan(&["presets/game-stack.yaml", "--format", "json"], &[]);
    let current = dir.path().join("current.json");
    std::fs::write(&current, &first.stdout).unwrap();
    let current = current.to_str().unwrap();

    let same = json(&plan(
        &[
            "presets/game-stack.yaml",
            "--current",
            current,
            "--format",
            "json",
        ],
        &[],
    ));
    assert_eq!(same["waves"].as_array().unwrap().len(), 0);
    assert_eq!(same["unchanged"].as_array().unwrap().len(), 3);
    assert!(
        stdout(&plan(
            &["presets/game-stack.yaml", "--current", current],
            &[]
        ))
        .contains("Nothing to do.")
    );

    let changed = json(&plan(
        &[
            "presets/game-stack.yaml",
            "--current",
            current,
            "--format",
            "json",
            "--env",
            "X_TRACE=1",
        ],
        &[],
    ));
    let kinds: Vec<&str> = changed["waves"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|w| w["actions"].as_array().unwrap())
        .map(|a| a["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["Redeploy", "Redeploy", "Redeploy"]);

    let other = json(&plan(
        &[
            "presets/split-auth.yaml",
            "--current",
            current,
            "--format",
            "json",
        ],
        &[],
    ));
    let teardowns = other["waves"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["phase"] == "Teardown")
        .count();
    assert!(
        teardowns >= 1,
        "game-stack nodes not in split-auth are torn down: {other}"
    );
}

#[test]
fn bad_input_exits_non_zero_naming_each_problem() {
    let dir = tempfile::tempdir().unwrap();
    let syntax = dir.path().join("syntax.yaml");
    std::fs::write(
        &syntax,
        "name: broken\ntopology:\n  nodes:\n    - name: a\n     services: [auth]\n",
    )
    .unwrap();
    let out = plan(&[syntax.to_str().unwrap()], &[]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(&format!("{}:5:", syntax.display())),
        "syntax error with file and line: {err}"
    );
    assert!(!err.contains("panicked"), "{err}");

    let unknown = dir.path().join("unknown.yaml");
    std::fs::write(
        &unknown,
        "name: unknown\ntopology:\n  nodes:\n    - name: a\n      layers: [AppFoundaton]\n      services: [acount, auth]\n",
    )
    .unwrap();
    let out = plan(&[unknown.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(":5:16: topology.nodes[0].layers[0]: unknown layer `AppFoundaton`"),
        "{err}"
    );
    assert!(err.contains(":6:18: topology.nodes[0].services[0]: unknown service `acount` (did you mean `account`?)"), "{err}");
    assert!(
        stdout(&out).is_empty(),
        "nothing printed as a result on failure"
    );

    let out = plan(
        &["no-such-preset", "--presets", dir.path().to_str().unwrap()],
        &[],
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("preset `no-such-preset` not found"),
        "{}",
        stderr(&out)
    );

    let out = plan(
        &[
            "presets/split-auth.yaml",
            "--control-plane-services",
            "state,acount",
        ],
        &[],
    );
    assert!(
        stderr(&out).contains("unknown service `acount`"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_restricted_control_plane_makes_missing_dependencies_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("actors.yaml");
    std::fs::write(
        &file,
        "name: actors\ntopology:\n  nodes:\n    - name: brains\n      services: [actor]\n",
    )
    .unwrap();
    let file = file.to_str().unwrap();
    assert!(
        plan(&[file], &[]).status.success(),
        "the all-in-one control plane provides everything"
    );

    let out = plan(
        &[file, "--control-plane-services", "state,messaging,mesh"],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("plan rejected") && err.contains("node `brains`"),
        "{err}"
    );
    assert!(err.contains("`character` (needed by actor)"), "{err}");
}

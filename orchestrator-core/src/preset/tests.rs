//! Preset parsing, validation and library tests.

use std::path::{Path, PathBuf};

use super::*;

fn shared_presets() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/presets")
}

fn repo_presets() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../presets")
}

fn parse_file(path: &Path) -> ParsedPreset {
    let text = std::fs::read_to_string(path).unwrap();
    let label = path.file_name().unwrap().to_string_lossy().into_owned();
    Preset::parse(&label, &text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn shared(name: &str) -> ParsedPreset {
    parse_file(&shared_presets().join(name))
}

fn errors(yaml: &str) -> Vec<PresetError> {
    Preset::parse("t.yaml", yaml).unwrap_err().0
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    v.sort();
    v
}

// === upstream presets and fixtures ===

#[test]
fn every_upstream_preset_and_fixture_parses_without_errors() {
    let mut names = Vec::new();
    for dir in [shared_presets(), shared_presets().join("fixtures")] {
        for f in yaml_files(&dir) {
            let parsed = parse_file(&f);
            // Every shipped file names itself after its file stem.
            assert_eq!(
                parsed.preset.name,
                f.file_stem().unwrap().to_string_lossy(),
                "{}",
                f.display()
            );
            names.push(parsed.preset.name);
        }
    }
    assert_eq!(names.len(), 12, "{names:?}");
}

#[test]
fn actor_pools_has_three_camel_case_pools_with_string_env() {
    let p = shared("actor-pools.yaml").preset;
    assert!(p.nodes.is_empty());
    assert_eq!(p.category.as_deref(), Some("processing"));
    let types: Vec<_> = p
        .processing_pools
        .iter()
        .map(|p| p.pool_type.as_str())
        .collect();
    assert_eq!(
        types,
        ["actor-shared", "actor-npc-brain", "actor-event-coordinator"]
    );
    let brain = &p.processing_pools[1];
    assert_eq!(brain.plugin, "actor");
    assert_eq!((brain.min_instances, brain.max_instances), (1, 20));
    assert_eq!(
        (brain.scale_up_threshold, brain.scale_down_threshold),
        (0.7, 0.3)
    );
    assert_eq!(brain.idle_timeout_minutes, 10);
    assert_eq!(
        p.processing_pools[0].environment["ACTOR_POOL_NODE_CAPACITY"],
        "50"
    );
    assert_eq!(p.environment["ACTOR_CONTROL_PLANE_APP_ID"], "bannou");
    assert_eq!(
        p.required_backends,
        ["docker-compose", "docker-swarm", "kubernetes"]
    );
}

#[test]
fn snake_case_asset_processing_yields_its_four_pools() {
    let parsed = shared("asset-processing.yaml");
    assert!(parsed.warnings.is_empty(), "{:?}", parsed.warnings);
    let p = parsed.preset;
    let types: Vec<_> = p
        .processing_pools
        .iter()
        .map(|p| p.pool_type.as_str())
        .collect();
    assert_eq!(
        types,
        [
            "asset-processor",
            "texture-processor",
            "model-processor",
            "audio-processor"
        ]
    );
    let audio = &p.processing_pools[3];
    assert_eq!((audio.min_instances, audio.max_instances), (1, 2));
    assert_eq!(audio.idle_timeout_minutes, 20);
    assert_eq!(audio.scale_down_threshold, 0.25);
    assert_eq!(p.nodes.len(), 1);
    assert_eq!(p.nodes[0].services, ["asset"]);
    assert_eq!(
        p.nodes[0].environment["ASSET_LARGE_FILE_THRESHOLD_MB"],
        "50"
    );
    let infra = p.infrastructure.as_ref().unwrap();
    assert_eq!(infra["minio"]["bucket"], "bannou-assets");
}

#[test]
fn node_fields_and_defaults() {
    let p = shared("split-auth-routing-test.yaml").preset;
    let n = &p.nodes[0];
    assert_eq!(n.name, "bannou-auth");
    assert_eq!(n.layers, [Layer::AppFoundation]);
    assert_eq!(n.services, ["account", "auth", "game-session"]);
    assert_eq!(
        (n.replicas, n.mesh_enabled, n.app_id.as_deref()),
        (1, true, None)
    );
    assert_eq!(n.effective_app_id().as_str(), "bannou-auth");
    assert_eq!(n.environment["BANNOU_IS_AUTH_NODE"], "true");

    let auth = shared("auth-only.yaml").preset;
    assert_eq!(auth.nodes[0].services, ["account", "auth", "testing"]);
    assert!(auth.nodes[0].layers.is_empty());
}

#[test]
fn fixtures_custom_image_and_minimal_pool() {
    let p = parse_file(&shared_presets().join("fixtures/custom-image-pool.yaml")).preset;
    let pool = &p.processing_pools[0];
    assert_eq!(pool.image.as_deref(), Some("myregistry/asset-processor:v2"));
    // Defaults for the keys the fixture leaves out.
    assert_eq!(
        (pool.scale_up_threshold, pool.scale_down_threshold),
        (0.8, 0.2)
    );
    assert_eq!(pool.idle_timeout(), std::time::Duration::from_secs(300));

    let minimal = parse_file(&shared_presets().join("fixtures/minimal-pool.yaml"));
    let pool = &minimal.preset.processing_pools[0];
    assert_eq!(
        (pool.pool_type.as_str(), pool.plugin.as_str()),
        ("test-pool", "test")
    );
    assert_eq!((pool.min_instances, pool.max_instances), (1, 5));
    assert_eq!(minimal.warnings.len(), 1, "{:?}", minimal.warnings);
    let w = &minimal.warnings[0];
    assert!(matches!(w.kind, PresetWarningKind::UnknownPlugin(_)));
    assert_eq!(w.position.field, "processingPools[0].plugin");
    assert_eq!((w.position.line, w.position.column), (6, 13));

    let empty = parse_file(&shared_presets().join("fixtures/empty-pools.yaml")).preset;
    assert!(empty.processing_pools.is_empty() && empty.nodes.is_empty());
    let two = parse_file(&shared_presets().join("fixtures/preset-two.yaml")).preset;
    assert_eq!(two.required_backends, ["kubernetes", "docker-swarm"]);
    assert_eq!(two.category.as_deref(), Some("production"));
}

#[test]
fn env_scalars_keep_their_text() {
    let yaml = "environment:\n  A: 50\n  B: true\n  C: 1.0\n  D: 0x10\n  E: '007'\n  F:\n";
    let p = Preset::parse("x.yaml", yaml).unwrap().preset;
    let got: Vec<(&str, &str)> = p
        .environment
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("A", "50"),
            ("B", "true"),
            ("C", "1.0"),
            ("D", "0x10"),
            ("E", "007"),
            ("F", "")
        ]
    );
    // No name: the file stem.
    assert_eq!(p.name, "x");
}

#[test]
fn repo_example_presets_parse_cleanly() {
    let files = yaml_files(&repo_presets());
    assert!(files.len() >= 4, "{files:?}");
    for f in &files {
        let parsed = parse_file(f);
        assert!(
            parsed.warnings.is_empty(),
            "{}: {:?}",
            f.display(),
            parsed.warnings
        );
    }
    let ten = parse_file(&repo_presets().join("local-ten.yaml")).preset;
    assert_eq!(ten.nodes.len(), 10);
    let stack = parse_file(&repo_presets().join("game-stack.yaml")).preset;
    assert_eq!(stack.nodes.len(), 3);
    let brains = parse_file(&repo_presets().join("npc-brains.yaml")).preset;
    assert_eq!(brains.processing_pools.len(), 2);
    assert_eq!(
        brains.processing_pools[0].environment["ACTOR_POOL_NODE_CAPACITY"],
        "100"
    );
}

// === errors ===

#[test]
fn unknown_service_names_file_line_column_field_and_near_match() {
    let yaml = "\
name: auth-only
topology:
  nodes:
    - name: a
      services:
        - account
        - acount
";
    let errs = Preset::parse("auth-only.yaml", yaml).unwrap_err();
    assert_eq!(
        errs.to_string(),
        "auth-only.yaml:7:11: topology.nodes[0].services[1]: unknown service `acount` (did you mean `account`?)"
    );
}

#[test]
fn every_problem_is_collected_in_file_order() {
    let yaml = "\
name: ../evil
topology:
  nodes:
    - name: one
      layers: [AppFundation]
      services: [auth, zzz]
    - name: one
      services: [auth]
    - services: [chat]
    - name: two
      appId: One
processingPools:
  - poolType: p
    minInstances: 6
    maxInstances: 2
    scaleUpThreshold: 1.5
  - poolType: p
    scaleUpThreshold: 0.3
    scaleDownThreshold: 0.3
";
    let errs = errors(yaml);
    let got: Vec<(u32, u32, &str)> = errs
        .iter()
        .map(|e| (e.line, e.column, e.field.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (1, 7, "name"),
            (5, 16, "topology.nodes[0].layers[0]"),
            (6, 24, "topology.nodes[0].services[1]"),
            (7, 13, "topology.nodes[1].name"),
            (9, 7, "topology.nodes[2]"),
            (11, 14, "topology.nodes[3].appId"),
            (15, 19, "processingPools[0].maxInstances"),
            (16, 23, "processingPools[0].scaleUpThreshold"),
            (17, 15, "processingPools[1].poolType"),
            (19, 25, "processingPools[1].scaleDownThreshold"),
        ]
    );
    assert!(matches!(errs[0].kind, PresetErrorKind::InvalidName(_)));
    let layer = errs[1].kind.to_string();
    assert!(
        layer.contains("unknown layer `AppFundation`")
            && layer.contains("AppFoundation, GameFoundation"),
        "{layer}"
    );
    assert!(matches!(
        errs[3].kind,
        PresetErrorKind::DuplicateNodeName { first_index: 0, .. }
    ));
    assert_eq!(errs[4].kind, PresetErrorKind::MissingNodeName);
    assert!(
        matches!(&errs[5].kind, PresetErrorKind::DuplicateAppId { first_node, .. } if first_node == "one")
    );
    assert_eq!(
        errs[6].kind,
        PresetErrorKind::MinAboveMax { min: 6, max: 2 }
    );
    assert_eq!(
        errs[7].kind,
        PresetErrorKind::ThresholdOutOfRange { value: 1.5 }
    );
    assert_eq!(errs[8].kind, PresetErrorKind::DuplicatePoolType("p".into()));
    assert_eq!(
        errs[9].kind,
        PresetErrorKind::ThresholdsInverted { down: 0.3, up: 0.3 }
    );
    // Display: one line per error.
    let shown = PresetErrors(errs).to_string();
    assert_eq!(shown.lines().count(), 10);
    assert!(
        shown.starts_with("t.yaml:1:7: name: invalid preset name `../evil`"),
        "{shown}"
    );
}

#[test]
fn a_service_routed_to_two_nodes_is_an_error() {
    let yaml = "topology:\n  nodes:\n    - name: a\n      services: [auth]\n    - name: b\n      services: [AUTH]\n";
    let errs = errors(yaml);
    assert_eq!(errs.len(), 1);
    assert_eq!((errs[0].line, errs[0].column), (6, 18));
    assert_eq!(
        errs[0].kind,
        PresetErrorKind::ServiceRoutedTwice {
            service: "auth".into(),
            first_node: "a".into()
        }
    );
}

#[test]
fn yaml_syntax_and_type_errors_give_one_positioned_error() {
    let errs = errors("name: x\ntopology:\n  nodes: [\n");
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].to_string(), "t.yaml:3:10: unclosed bracket '['");

    let errs = errors("name: x\nname: y\n");
    assert_eq!(
        errs[0].to_string(),
        "t.yaml:2:1: duplicate mapping key: name"
    );
    // Both spellings of one key at once.
    let errs = errors("processingPools:\n  - poolType: a\n    pool_type: b\n");
    assert_eq!(
        errs[0].to_string(),
        "t.yaml:2:5: processingPools[0].poolType: duplicate field `poolType`"
    );

    let errs = errors("name: x\nprocessingPools:\n  - poolType: p\n    maxInstances: lots\n");
    assert_eq!(errs.len(), 1);
    assert_eq!((errs[0].line, errs[0].column), (4, 19));
    let msg = errs[0].to_string();
    assert_eq!(errs[0].field, "processingPools[0].maxInstances");
    assert!(
        msg.starts_with("t.yaml:4:19: processingPools[0].maxInstances: "),
        "{msg}"
    );
    assert!(!msg.contains('\n'), "{msg}");

    assert_eq!(errors("# only a comment\n")[0].kind, PresetErrorKind::Empty);
    assert!(matches!(
        errors("- a\n- b\n")[0].kind,
        PresetErrorKind::Yaml(_)
    ));
}

#[test]
fn unknown_keys_and_empty_pool_types_are_warnings() {
    let yaml = "\
name: w
topology:
  nodes:
    - name: a
      service: [auth]
processingPools:
  - plugin: actor
  - poolType: ok
    plugin: actor
    maxInstance: 3
colour: blue
";
    let parsed = Preset::parse("w.yaml", yaml).unwrap();
    assert_eq!(parsed.preset.processing_pools.len(), 1);
    let got: Vec<String> = parsed.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        got,
        [
            "w.yaml:5:7: topology.nodes[0].service: warning: unknown key `service` is ignored (did you mean `services`?)",
            "w.yaml:7:5: processingPools[0]: warning: pool has no poolType and is skipped",
            "w.yaml:10:5: processingPools[1].maxInstance: warning: unknown key `maxInstance` is ignored (did you mean `maxInstances`?)",
            "w.yaml:11:1: colour: warning: unknown key `colour` is ignored",
        ]
    );
}

// === library ===

/// A temp directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("bannou-presets-{tag}-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.0.join(name), text).unwrap();
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn library_lists_yaml_only_and_skips_invalid_files() {
    let dir = TempDir::new("list");
    dir.write("b.yaml", "name: b\ndescription: B\ncategory: testing\ntopology:\n  nodes:\n    - name: n\n      services: [auth]\n");
    dir.write(
        "a.yaml",
        "processingPools:\n  - poolType: p\n    plugin: actor\n",
    );
    dir.write("c.yml", "name: c\n");
    dir.write(
        "bad.yaml",
        "topology:\n  nodes:\n    - name: n\n      services: [nope]\n",
    );
    let listing = PresetLibrary::new(&dir.0).list().unwrap();
    let names: Vec<_> = listing.presets.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
    let b = &listing.presets[1];
    assert_eq!(
        (
            b.description.as_deref(),
            b.category.as_deref(),
            b.node_count,
            b.pool_count
        ),
        (Some("B"), Some("testing"), 1, 0)
    );
    assert_eq!(listing.presets[0].pool_count, 1);
    assert_eq!(b.file, dir.0.join("b.yaml"));
    assert_eq!(listing.skipped.len(), 1);
    assert_eq!(listing.skipped[0].file, dir.0.join("bad.yaml"));
    let msg = listing.skipped[0].error.to_string();
    assert!(
        msg.starts_with(&format!(
            "{}:4:18: topology.nodes[0].services[0]: unknown service `nope`",
            dir.0.join("bad.yaml").display()
        )),
        "{msg}"
    );
}

#[test]
fn library_load_by_name_not_found_and_invalid_names() {
    let dir = TempDir::new("load");
    dir.write("one.yaml", "description: first\n");
    let lib = PresetLibrary::new(&dir.0);
    let one = lib.load("one").unwrap().preset;
    assert_eq!(
        (one.name.as_str(), one.description.as_deref()),
        ("one", Some("first"))
    );
    match lib.load("two") {
        Err(LibraryError::NotFound { name, dir: d }) => {
            assert_eq!((name.as_str(), d), ("two", dir.0.clone()));
        }
        other => panic!("{other:?}"),
    }
    for bad in ["", " ", "../one", "a/b", "a\\b", ".."] {
        assert!(
            matches!(lib.load(bad), Err(LibraryError::InvalidName { .. })),
            "{bad:?}"
        );
    }
    let missing = PresetLibrary::new(dir.0.join("does-not-exist"))
        .list()
        .unwrap();
    assert!(missing.presets.is_empty() && missing.skipped.is_empty());
}

#[test]
fn library_lists_the_shared_presets() {
    let listing = PresetLibrary::new(shared_presets()).list().unwrap();
    let names: Vec<_> = listing.presets.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "actor-pools",
            "asset-processing",
            "auth-only",
            "relayed-connect",
            "split-auth-routing-test"
        ]
    );
    assert!(listing.skipped.is_empty());
    assert_eq!(listing.presets[1].pool_count, 4);
}

//! Preset parsing, validation and library tests.

use std::path::{Path, PathBuf};

use super::*;
use crate::testkit::require::{fixtures_dir, upstream_data};

/// Our valid preset fixtures (`tests/fixtures/presets/`).
fn fixture_presets() -> PathBuf {
    fixtures_dir().join("presets")
}

/// Our invalid preset fixtures, one per error kind (`tests/fixtures/presets-bad/`).
fn bad_presets() -> PathBuf {
    fixtures_dir().join("presets-bad")
}

fn repo_presets() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../presets")
}

fn parse_file(path: &Path) -> ParsedPreset {
    let text = std::fs::read_to_string(path).unwrap();
    let label = path.file_name().unwrap().to_string_lossy().into_owned();
    Preset::parse(&label, &text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn fixture(name: &str) -> ParsedPreset {
    parse_file(&fixture_presets().join(name))
}

fn errors(yaml: &str) -> Vec<PresetError> {
    Preset::parse("t.yaml", yaml).unwrap_err().0
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml") && p.is_file())
        .collect();
    v.sort();
    v
}

// === our fixtures ===

#[test]
fn every_fixture_preset_parses_and_is_named_after_its_file() {
    let mut names = Vec::new();
    for f in yaml_files(&fixture_presets()) {
        let parsed = parse_file(&f);
        assert_eq!(
            parsed.preset.name,
            f.file_stem().unwrap().to_string_lossy(),
            "{}",
            f.display()
        );
        // Only the unknown pool plugin of pool-minimal is worth a warning.
        let expected_warnings = usize::from(parsed.preset.name == "pool-minimal");
        assert_eq!(
            parsed.warnings.len(),
            expected_warnings,
            "{}: {:?}",
            f.display(),
            parsed.warnings
        );
        names.push(parsed.preset.name);
    }
    assert_eq!(
        names,
        [
            "identity-split",
            "listing-alpha",
            "listing-beta",
            "login-solo",
            "media-pipeline",
            "npc-crowds",
            "pool-custom-image",
            "pool-minimal",
            "pools-empty",
            "relay-edge",
            "single-node",
            "stem-named",
        ]
    );
}

#[test]
fn camel_case_pools_keep_order_bounds_and_string_env() {
    let p = fixture("npc-crowds.yaml").preset;
    assert!(p.nodes.is_empty() && p.infrastructure.is_none());
    assert_eq!(p.category.as_deref(), Some("processing"));
    let types: Vec<_> = p
        .processing_pools
        .iter()
        .map(|p| p.pool_type.as_str())
        .collect();
    assert_eq!(types, ["crowd-shared", "crowd-brain", "crowd-director"]);
    let brain = &p.processing_pools[1];
    assert_eq!(brain.plugin, "actor");
    assert_eq!((brain.min_instances, brain.max_instances), (3, 30));
    assert_eq!(
        (brain.scale_up_threshold, brain.scale_down_threshold),
        (0.65, 0.35)
    );
    assert_eq!(brain.idle_timeout_minutes, 12);
    // Unquoted number, quoted number and boolean all become their text.
    assert_eq!(
        p.processing_pools[0].environment["ACTOR_POOL_NODE_CAPACITY"],
        "40"
    );
    assert_eq!(brain.environment["ACTOR_POOL_NODE_CAPACITY"], "120");
    assert_eq!(p.processing_pools[2].environment["CROWD_VERBOSE"], "true");
    assert_eq!(p.environment["ACTOR_CONTROL_PLANE_APP_ID"], "bannou");
    assert_eq!(
        p.required_backends,
        ["docker-compose", "kubernetes", "docker-swarm"]
    );
}

#[test]
fn snake_case_keys_are_read_like_camel_case() {
    let parsed = fixture("media-pipeline.yaml");
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
            "media-ingest",
            "image-resizer",
            "geometry-baker",
            "sound-encoder"
        ]
    );
    let encoder = &p.processing_pools[3];
    assert_eq!((encoder.min_instances, encoder.max_instances), (2, 2));
    assert_eq!(encoder.idle_timeout_minutes, 30);
    assert_eq!(
        (encoder.scale_up_threshold, encoder.scale_down_threshold),
        (0.7, 0.3)
    );
    let baker = &p.processing_pools[2];
    assert_eq!(
        (baker.scale_up_threshold, baker.idle_timeout_minutes),
        (0.8, 5),
        "left-out keys take the defaults"
    );
    assert_eq!(p.nodes.len(), 1);
    let n = &p.nodes[0];
    assert_eq!(n.services, ["asset"]);
    assert_eq!(
        (n.replicas, n.mesh_enabled, n.app_id.as_deref()),
        (2, false, Some("bannou-media"))
    );
    assert_eq!(n.effective_app_id().as_str(), "bannou-media");
    assert_eq!(n.environment["ASSET_LARGE_FILE_THRESHOLD_MB"], "64");
    assert_eq!(p.environment["ASSET_MAX_UPLOAD_SIZE_MB"], "256");
    assert_eq!(p.required_backends, ["kubernetes"]);
    let infra = p.infrastructure.as_ref().unwrap();
    assert_eq!(infra["minio"]["bucket"], "media-objects");
    assert_eq!(infra["redis"]["version"], "7.2");
}

#[test]
fn node_fields_and_defaults() {
    let p = fixture("identity-split.yaml").preset;
    let n = &p.nodes[0];
    assert_eq!(n.name, "bannou-identity");
    assert_eq!(n.layers, [Layer::AppFoundation]);
    assert_eq!(
        n.services,
        ["auth", "account", "game-session"],
        "file order"
    );
    assert_eq!(
        (n.replicas, n.mesh_enabled, n.app_id.as_deref()),
        (1, true, None)
    );
    assert_eq!(n.effective_app_id().as_str(), "bannou-identity");
    assert_eq!(n.environment["IDENTITY_NODE_MARKER"], "true");

    let solo = fixture("login-solo.yaml").preset;
    assert_eq!(solo.nodes[0].services, ["auth", "account", "testing"]);
    assert!(solo.nodes[0].layers.is_empty(), "services mode");

    // The relayed-connect shape: the layer in UPPER_SNAKE spelling, Connect routed here.
    let relay = fixture("relay-edge.yaml").preset;
    let n = &relay.nodes[0];
    assert_eq!(n.layers, [Layer::AppFoundation]);
    assert_eq!(n.services, ["connect"]);
    assert_eq!(n.environment["CONNECT_CONNECTION_MODE"], "relayed");

    let stem = fixture("stem-named.yaml").preset;
    assert_eq!(
        (stem.name.as_str(), stem.nodes[0].name.as_str()),
        ("stem-named", "stem-node")
    );
}

#[test]
fn pool_fixtures_custom_image_minimal_and_empty() {
    let p = fixture("pool-custom-image.yaml").preset;
    let pool = &p.processing_pools[0];
    assert_eq!(
        pool.image.as_deref(),
        Some("registry.example.test/thumbnailer:3.1")
    );
    assert_eq!((pool.min_instances, pool.max_instances), (2, 4));
    // Defaults for the keys the fixture leaves out.
    assert_eq!(
        (pool.scale_up_threshold, pool.scale_down_threshold),
        (0.8, 0.2)
    );
    assert_eq!(pool.idle_timeout(), std::time::Duration::from_secs(300));

    let minimal = fixture("pool-minimal.yaml");
    let pool = &minimal.preset.processing_pools[0];
    assert_eq!(
        (
            pool.pool_type.as_str(),
            pool.plugin.as_str(),
            pool.image.as_deref()
        ),
        ("scratch-pool", "homebrew", None)
    );
    assert_eq!((pool.min_instances, pool.max_instances), (1, 5));
    assert_eq!(minimal.warnings.len(), 1, "{:?}", minimal.warnings);
    let w = &minimal.warnings[0];
    assert!(matches!(w.kind, PresetWarningKind::UnknownPlugin(_)));
    assert_eq!(w.position.field, "processingPools[0].plugin");
    assert_eq!((w.position.line, w.position.column), (8, 13));
    assert!(
        w.to_string()
            .starts_with("pool-minimal.yaml:8:13: processingPools[0].plugin: warning: pool plugin `homebrew` is not in the service catalog"),
        "{w}"
    );

    let empty = fixture("pools-empty.yaml").preset;
    assert!(empty.processing_pools.is_empty() && empty.nodes.is_empty());
    assert!(empty.required_backends.is_empty() && empty.category.is_none());
    let beta = fixture("listing-beta.yaml").preset;
    assert_eq!(beta.required_backends, ["kubernetes", "docker-swarm"]);
    assert_eq!(beta.category.as_deref(), Some("production"));
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
fn library_lists_the_fixture_presets() {
    let listing = PresetLibrary::new(fixture_presets()).list().unwrap();
    assert!(listing.skipped.is_empty(), "{:?}", listing.skipped);
    let names: Vec<_> = listing.presets.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names.len(), 12, "{names:?}");
    let find = |name: &str| {
        listing
            .presets
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("{name} not listed: {names:?}"))
    };
    let summary = |name: &str| {
        let s = find(name);
        (
            s.description.as_deref(),
            s.category.as_deref(),
            s.node_count,
            s.pool_count,
        )
    };
    assert_eq!(
        summary("listing-alpha"),
        (
            Some("First of the two listing presets"),
            Some("development"),
            0,
            0
        )
    );
    assert_eq!(
        summary("listing-beta"),
        (
            Some("Second of the two listing presets"),
            Some("production"),
            0,
            0
        )
    );
    assert_eq!(
        summary("media-pipeline").2..=summary("media-pipeline").3,
        1..=4
    );
    assert_eq!(summary("npc-crowds").3, 3);
    assert_eq!(summary("pools-empty").3, 0);
    assert_eq!(summary("stem-named").0, Some("Named by its file"));
    assert_eq!(
        find("relay-edge").file,
        fixture_presets().join("relay-edge.yaml")
    );
}

// === bad presets: one fixture per error kind ===

/// One bad fixture: its file stem, where the error is, and a check of its kind.
type BadCase = (
    &'static str,
    u32,
    u32,
    &'static str,
    fn(&PresetErrorKind) -> bool,
);

const BAD_CASES: [BadCase; 14] = [
    ("duplicate-app-id", 8, 14, "topology.nodes[1].appId", |k| {
        matches!(k, PresetErrorKind::DuplicateAppId { app_id, first_node }
            if app_id == "bannou-lobby" && first_node == "bannou-lobby")
    }),
    (
        "duplicate-node-name",
        7,
        13,
        "topology.nodes[1].name",
        |k| {
            *k == PresetErrorKind::DuplicateNodeName {
                name: "twin".into(),
                first_index: 0,
            }
        },
    ),
    (
        "duplicate-pool-type",
        6,
        16,
        "processingPools[1].poolType",
        |k| *k == PresetErrorKind::DuplicatePoolType("renderer".into()),
    ),
    ("empty", 1, 1, "", |k| *k == PresetErrorKind::Empty),
    ("invalid-name", 2, 7, "name", |k| {
        *k == PresetErrorKind::InvalidName("teams/blue".into())
    }),
    (
        "min-above-max",
        7,
        19,
        "processingPools[0].maxInstances",
        |k| *k == PresetErrorKind::MinAboveMax { min: 9, max: 3 },
    ),
    ("missing-node-name", 5, 7, "topology.nodes[0]", |k| {
        *k == PresetErrorKind::MissingNodeName
    }),
    (
        "service-routed-twice",
        8,
        18,
        "topology.nodes[1].services[0]",
        |k| {
            *k == PresetErrorKind::ServiceRoutedTwice {
                service: "voice".into(),
                first_node: "left".into(),
            }
        },
    ),
    (
        "threshold-out-of-range",
        6,
        25,
        "processingPools[0].scaleDownThreshold",
        |k| *k == PresetErrorKind::ThresholdOutOfRange { value: -0.25 },
    ),
    (
        "thresholds-inverted",
        7,
        25,
        "processingPools[0].scaleDownThreshold",
        |k| *k == PresetErrorKind::ThresholdsInverted { down: 0.6, up: 0.4 },
    ),
    (
        "unknown-layer",
        6,
        16,
        "topology.nodes[0].layers[0]",
        |k| matches!(k, PresetErrorKind::UnknownLayer { name } if name == "GameFundation"),
    ),
    (
        "unknown-service",
        7,
        11,
        "topology.nodes[0].services[0]",
        |k| {
            matches!(k, PresetErrorKind::UnknownService(u)
            if u.name == "permision" && u.suggestions.first().is_some_and(|s| s == "permission"))
        },
    ),
    (
        "yaml-syntax",
        4,
        10,
        "",
        |k| matches!(k, PresetErrorKind::Yaml(m) if m.contains("unclosed bracket")),
    ),
    ("yaml-type", 5, 19, "processingPools[0].minInstances", |k| {
        matches!(k, PresetErrorKind::Yaml(_))
    }),
];

#[test]
fn every_bad_preset_fixture_gives_its_error_with_file_position_and_field() {
    let dir = bad_presets();
    let stems: Vec<String> = yaml_files(&dir)
        .iter()
        .map(|f| f.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    let cased: Vec<&str> = BAD_CASES.iter().map(|c| c.0).collect();
    assert_eq!(stems, cased, "one case per bad fixture file");

    let lib = PresetLibrary::new(&dir);
    let mut kinds = std::collections::BTreeSet::new();
    for (stem, line, column, field, is_kind) in BAD_CASES {
        let errs = match lib.load(stem) {
            Err(LibraryError::Invalid(errs)) => errs,
            other => panic!("{stem}: expected an invalid preset, got {other:?}"),
        };
        assert_eq!(errs.errors().len(), 1, "{stem}: {errs}");
        let e = &errs.errors()[0];
        assert!(is_kind(&e.kind), "{stem}: {:?}", e.kind);
        assert_eq!(
            (e.line, e.column, e.field.as_str()),
            (line, column, field),
            "{stem}: {e}"
        );
        // The message names the file (as given to the library), the position and the field.
        let path = dir.join(format!("{stem}.yaml"));
        let mut prefix = format!("{}:{line}:{column}: ", path.display());
        if !field.is_empty() {
            prefix.push_str(&format!("{field}: "));
        }
        let shown = e.to_string();
        assert!(shown.starts_with(&prefix), "{stem}: {shown}");
        assert_eq!(errs.to_string(), shown);
        kinds.insert(kind_index(&e.kind));
    }
    assert_eq!(
        kinds.len(),
        KIND_COUNT,
        "every PresetErrorKind has a fixture"
    );
}

/// Number of [`PresetErrorKind`] variants.
const KIND_COUNT: usize = 13;

/// A distinct number per [`PresetErrorKind`] variant. No wildcard: a new variant does not
/// compile until it is counted here and given a bad fixture.
fn kind_index(kind: &PresetErrorKind) -> usize {
    match kind {
        PresetErrorKind::Yaml(_) => 0,
        PresetErrorKind::Empty => 1,
        PresetErrorKind::UnknownService(_) => 2,
        PresetErrorKind::UnknownLayer { .. } => 3,
        PresetErrorKind::MissingNodeName => 4,
        PresetErrorKind::DuplicateNodeName { .. } => 5,
        PresetErrorKind::DuplicateAppId { .. } => 6,
        PresetErrorKind::ServiceRoutedTwice { .. } => 7,
        PresetErrorKind::MinAboveMax { .. } => 8,
        PresetErrorKind::ThresholdOutOfRange { .. } => 9,
        PresetErrorKind::ThresholdsInverted { .. } => 10,
        PresetErrorKind::DuplicatePoolType(_) => 11,
        PresetErrorKind::InvalidName(_) => 12,
    }
}

#[test]
fn library_errors_from_the_bad_fixtures_folder() {
    let dir = bad_presets();
    let lib = PresetLibrary::new(&dir);
    // A folder named like a preset cannot be read: the I/O error keeps its cause and path.
    match lib.load("folder") {
        Err(e @ LibraryError::Io { .. }) => {
            let LibraryError::Io { path, source } = &e else {
                unreachable!()
            };
            assert_eq!(path, &dir.join("folder.yaml"));
            assert!(std::error::Error::source(&e).is_some(), "{source}");
            assert_eq!(e.to_string(), format!("cannot read {}", path.display()));
        }
        other => panic!("{other:?}"),
    }
    match lib.load("absent") {
        Err(e @ LibraryError::NotFound { .. }) => {
            assert_eq!(
                e.to_string(),
                format!("preset `absent` not found in {}", dir.display())
            );
        }
        other => panic!("{other:?}"),
    }
    match lib.load("../presets/npc-crowds") {
        Err(e @ LibraryError::InvalidName { .. }) => {
            assert!(e.to_string().contains("`../presets/npc-crowds`"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    // Listing skips every bad file with its error, and ignores the folder.
    let listing = lib.list().unwrap();
    assert!(listing.presets.is_empty());
    let skipped: Vec<_> = listing
        .skipped
        .iter()
        .map(|s| s.file.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(skipped, BAD_CASES.map(|c| c.0));
    assert!(
        listing
            .skipped
            .iter()
            .all(|s| matches!(s.error, LibraryError::Invalid(_)))
    );
}

// === upstream's own files (BANNOU_UPSTREAM_DATA): the extra comparison ===

mod upstream {
    use super::*;

    /// Upstream's `presets/` folder, or `None` when the comparison is skipped.
    fn presets(test: &str) -> Option<PathBuf> {
        upstream_data(test).map(|d| d.join("presets"))
    }

    fn parse(dir: &Path, name: &str) -> ParsedPreset {
        parse_file(&dir.join(name))
    }

    #[test]
    fn every_upstream_preset_and_fixture_parses_without_errors() {
        let Some(dir) = presets("every_upstream_preset_and_fixture_parses_without_errors") else {
            return;
        };
        let mut names = Vec::new();
        for d in [dir.clone(), dir.join("fixtures")] {
            for f in yaml_files(&d) {
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
    fn upstream_pools_nodes_and_fixtures_read_as_documented() {
        let Some(dir) = presets("upstream_pools_nodes_and_fixtures_read_as_documented") else {
            return;
        };
        let p = parse(&dir, "actor-pools.yaml").preset;
        let types: Vec<_> = p
            .processing_pools
            .iter()
            .map(|p| p.pool_type.as_str())
            .collect();
        assert_eq!(
            types,
            ["actor-shared", "actor-npc-brain", "actor-event-coordinator"]
        );
        assert_eq!(
            p.processing_pools[0].environment["ACTOR_POOL_NODE_CAPACITY"],
            "50"
        );

        let parsed = parse(&dir, "asset-processing.yaml");
        assert!(parsed.warnings.is_empty(), "{:?}", parsed.warnings);
        assert_eq!(parsed.preset.processing_pools.len(), 4, "snake_case pools");
        assert_eq!(
            parsed.preset.infrastructure.as_ref().unwrap()["minio"]["bucket"],
            "bannou-assets"
        );

        let split = parse(&dir, "split-auth-routing-test.yaml").preset;
        assert_eq!(split.nodes[0].layers, [Layer::AppFoundation]);
        assert_eq!(split.nodes[0].services, ["account", "auth", "game-session"]);
        let auth = parse(&dir, "auth-only.yaml").preset;
        assert!(auth.nodes[0].layers.is_empty());

        let custom = parse(&dir, "fixtures/custom-image-pool.yaml").preset;
        assert_eq!(
            custom.processing_pools[0].image.as_deref(),
            Some("myregistry/asset-processor:v2")
        );
        let minimal = parse(&dir, "fixtures/minimal-pool.yaml");
        assert_eq!(minimal.warnings.len(), 1, "{:?}", minimal.warnings);
        assert!(matches!(
            minimal.warnings[0].kind,
            PresetWarningKind::UnknownPlugin(_)
        ));
        let empty = parse(&dir, "fixtures/empty-pools.yaml").preset;
        assert!(empty.processing_pools.is_empty() && empty.nodes.is_empty());
        let two = parse(&dir, "fixtures/preset-two.yaml").preset;
        assert_eq!(two.required_backends, ["kubernetes", "docker-swarm"]);
    }

    #[test]
    fn library_lists_the_upstream_presets() {
        let Some(dir) = presets("library_lists_the_upstream_presets") else {
            return;
        };
        let listing = PresetLibrary::new(dir).list().unwrap();
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
}

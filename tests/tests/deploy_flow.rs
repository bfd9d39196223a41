//! The domain crates together, as the deploy pipeline (D27, docs/DECISIONS.md#d27) uses
//! them: preset -> resolver -> planner -> routing table -> versioned mappings -> the
//! mesh resolver every node runs, with each deployed configuration recorded in the store
//! and rolled back. No runtime pieces: this is the logic a deploy executes, end to end.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use orchestrator_core::memory::store::InMemoryStore;
use orchestrator_core::planner::{ActionKind, Plan, PlanOptions, WavePhase, plan, routing_of};
use orchestrator_core::ports::store::{DEFAULT_CONFIG_HISTORY_TTL, OrchestratorStore};
use orchestrator_core::preset::PresetLibrary;
use orchestrator_core::records::{DeploymentConfiguration, ServiceDeploymentConfig};
use orchestrator_core::resolver::Resolved;
use orchestrator_core::time::{Clock, ManualClock};
use orchestrator_core::{AppId, Catalog, ResolvedNode, Timestamp};
use orchestrator_routing::mappings::MappingsSnapshot;
use orchestrator_routing::resolver::{MeshResolver, Resolution};
use orchestrator_routing::table::RoutingTable;

fn our_presets() -> PresetLibrary<'static> {
    PresetLibrary::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("../presets"))
}

fn resolve(name: &str) -> Vec<ResolvedNode> {
    let parsed = our_presets().load(name).unwrap();
    Resolved::from_preset(
        &parsed,
        &BTreeMap::new(),
        &BTreeMap::new(),
        Catalog::builtin(),
    )
    .unwrap()
    .nodes
}

/// What the executor does with a plan's routing: the table follows every action.
fn apply_to_table(table: &mut RoutingTable, p: &Plan, now: Timestamp) {
    let target = p.apply_routing(&table.mappings());
    for service in table.mappings().keys() {
        if !target.contains_key(service) {
            table.restore_default(service);
        }
    }
    for (service, app) in &target {
        table.set_route(service, app.clone(), now, 80).unwrap();
    }
}

fn config_of(preset: &str, nodes: &[ResolvedNode], now: Timestamp) -> DeploymentConfiguration {
    let mut cfg = DeploymentConfiguration::empty(now);
    cfg.preset_name = Some(preset.to_owned());
    cfg.nodes = nodes.to_vec();
    for n in nodes {
        for s in &n.routed_services {
            cfg.services.insert(
                s.clone(),
                ServiceDeploymentConfig {
                    enabled: true,
                    app_id: Some(n.app_id.to_string()),
                    replicas: n.replicas,
                    settings: BTreeMap::new(),
                },
            );
        }
    }
    cfg
}

#[tokio::test]
async fn deploy_switch_and_roll_back_keep_routing_config_and_mesh_in_step() {
    let catalog = Catalog::builtin();
    let clock = ManualClock::new(Timestamp::from_unix_millis(1_780_000_000_000));
    let store = InMemoryStore::new(Arc::new(clock.clone()));
    let mut table = RoutingTable::default();
    let (writer, reader) = MeshResolver::new();
    let options = PlanOptions::default();

    // 1. Deploy game-stack from nothing: three waves, L1 then L2 then L4.
    let stack = resolve("game-stack");
    let first = plan(&[], &stack, catalog, &options).unwrap();
    let layers: Vec<_> = first.waves.iter().map(|w| w.layer.to_string()).collect();
    assert_eq!(layers, ["AppFoundation", "GameFoundation", "GameFeatures"]);
    apply_to_table(&mut table, &first, clock.now());
    let v1 = store.next_mappings_version().await.unwrap();
    assert!(matches!(
        writer.apply(&MappingsSnapshot::from_table(&table, v1)),
        orchestrator_routing::resolver::ApplyOutcome::Applied { .. }
    ));
    assert_eq!(reader.resolve("auth"), Resolution::App("stack-auth".into()));
    assert_eq!(
        reader.resolve("realm"),
        Resolution::App("stack-world".into())
    );
    assert_eq!(
        reader.resolve("voice"),
        Resolution::App("bannou".into()),
        "unrouted services go to the default"
    );
    assert_eq!(reader.resolve("state"), Resolution::Local);
    let saved = store
        .save_config(
            &config_of("game-stack", &first.nodes, clock.now()),
            DEFAULT_CONFIG_HISTORY_TTL,
        )
        .await
        .unwrap();
    assert!(store.mark_config_stable(saved).await.unwrap());

    // 2. Switch to split-auth: its node replaces the three; every stack route returns home.
    clock.advance(std::time::Duration::from_secs(60));
    let split = resolve("split-auth");
    let second = plan(&first.nodes, &split, catalog, &options).unwrap();
    assert_eq!(second.count(ActionKind::Teardown), 3);
    assert!(
        second
            .waves
            .iter()
            .skip_while(|w| w.phase == WavePhase::Deploy)
            .all(|w| w.phase == WavePhase::Teardown)
    );
    apply_to_table(&mut table, &second, clock.now());
    assert_eq!(table.mappings(), routing_of(&split));
    let v2 = store.next_mappings_version().await.unwrap();
    assert!(v2 > v1);
    writer.apply(&MappingsSnapshot::from_table(&table, v2));
    assert_eq!(
        reader.resolve("auth"),
        Resolution::App("bannou-auth".into())
    );
    assert_eq!(reader.resolve("realm"), Resolution::App("bannou".into()));
    store
        .save_config(
            &config_of("split-auth", &second.nodes, clock.now()),
            DEFAULT_CONFIG_HISTORY_TTL,
        )
        .await
        .unwrap();

    // A stale broadcast (an older version) never rolls the mesh back.
    writer.apply(&MappingsSnapshot::from_table(&RoutingTable::default(), v1));
    assert_eq!(reader.applied_version(), Some(v2));

    // 3. Roll back: a new version that copies the last stable one, and the plan that
    //    redeploys it restores game-stack's routing exactly.
    let rolled = store
        .rollback_config(None, clock.now(), DEFAULT_CONFIG_HISTORY_TTL)
        .await
        .unwrap();
    assert_eq!((rolled.previous_version, rolled.current_version), (2, 3));
    assert_eq!(rolled.restored.preset_name.as_deref(), Some("game-stack"));
    let back = plan(&second.nodes, &rolled.restored.nodes, catalog, &options).unwrap();
    apply_to_table(&mut table, &back, clock.now());
    let v3 = store.next_mappings_version().await.unwrap();
    writer.apply(&MappingsSnapshot::from_table(&table, v3));
    assert_eq!(table.mappings(), routing_of(&stack));
    assert_eq!(
        reader.resolve("realm"),
        Resolution::App("stack-world".into())
    );
    assert_eq!(reader.applied_version(), Some(v3));
    let current = store.current_config().await.unwrap().unwrap();
    assert_eq!((current.version, current.nodes.len()), (3, 3));
    assert_eq!(AppId::from("stack-auth"), current.nodes[0].app_id);
}

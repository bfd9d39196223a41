//! Planner benchmark: a 1,000-node topology over the full catalog, planned from nothing
//! and re-planned after a change to 10% of the nodes.
//!
//! `cargo bench -p orchestrator-core --bench planner`

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use orchestrator_core::names::service_enable_flag;
use orchestrator_core::planner::{PlanOptions, plan};
use orchestrator_core::resolver::enabled_services;
use orchestrator_core::{AppId, Catalog, ResolvedNode};

/// `count` services-mode nodes, each enabling 5 catalog services round-robin; the first
/// node to host a service routes it, so every routable service is routed somewhere.
fn topology(count: usize) -> Vec<ResolvedNode> {
    let catalog = Catalog::builtin();
    let names: Vec<&str> = catalog
        .services()
        .iter()
        .filter(|d| d.routable)
        .map(|d| d.name.as_str())
        .collect();
    let mut routed_somewhere = std::collections::BTreeSet::new();
    (0..count)
        .map(|i| {
            let app = format!("node-{i:04}");
            let mut env = BTreeMap::from([
                ("BANNOU_SERVICES_ENABLED".to_owned(), "false".to_owned()),
                ("BANNOU_APP_ID".to_owned(), app.clone()),
                ("NODE_INDEX".to_owned(), i.to_string()),
            ]);
            let mut routed = Vec::new();
            for k in 0..5 {
                let s = names[(i * 5 + k) % names.len()];
                env.insert(service_enable_flag(s), "true".to_owned());
                if routed_somewhere.insert(s) {
                    routed.push(s.to_owned());
                }
            }
            routed.sort();
            ResolvedNode {
                name: app.clone(),
                app_id: AppId::from(app),
                services: enabled_services(&env, catalog),
                routed_services: routed,
                environment: env,
                replicas: 1,
                mesh_enabled: true,
            }
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let catalog = Catalog::builtin();
    let opts = PlanOptions::default();
    let desired = topology(1_000);
    assert_eq!(
        plan(&[], &desired, catalog, &opts).unwrap().nodes.len(),
        1_000
    );

    c.bench_function("plan 1000 nodes from empty", |b| {
        b.iter(|| plan(black_box(&[]), black_box(&desired), catalog, &opts).unwrap())
    });

    let mut changed = desired.clone();
    for n in changed.iter_mut().step_by(10) {
        n.environment
            .insert("NODE_INDEX".to_owned(), "changed".to_owned());
    }
    c.bench_function("re-plan 1000 nodes with 100 changed", |b| {
        b.iter(|| plan(black_box(&desired), black_box(&changed), catalog, &opts).unwrap())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);

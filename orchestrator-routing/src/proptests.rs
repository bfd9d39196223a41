//! Property tests over random sequences of routing operations: infrastructure is never
//! routed, resolution always agrees with the table, and diffs replay exactly.

use std::time::Duration;

use orchestrator_core::events::ServiceHealthStatus;
use orchestrator_core::names::AppId;
use proptest::prelude::*;

use crate::mappings::{MappingsDiff, MappingsSnapshot};
use crate::resolver::{MeshResolver, Resolution};
use crate::table::tests::{heartbeat, t};
use crate::table::{RoutingTable, is_infrastructure, is_orchestrator};

const SERVICES: [&str; 10] = [
    "auth",
    "Account",
    "chat",
    "game-session",
    "state",
    "MESSAGING",
    "Mesh",
    "orchestrator",
    "leaderboard",
    "AUTH",
];
const APPS: [&str; 5] = ["n1", "n2", "N2", "bannou", "BANNOU"];

#[derive(Debug, Clone)]
enum Op {
    Set(usize, usize),
    Restore(usize),
    Heartbeat(usize, Vec<usize>, bool),
    Release(usize),
    Reset,
    Expire,
    Advance(u16),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..SERVICES.len(), 0..APPS.len()).prop_map(|(s, a)| Op::Set(s, a)),
        2 => (0..SERVICES.len()).prop_map(Op::Restore),
        4 => (0..APPS.len(), prop::collection::vec(0..SERVICES.len(), 0..6), any::<bool>())
            .prop_map(|(a, s, h)| Op::Heartbeat(a, s, h)),
        1 => (0..APPS.len()).prop_map(Op::Release),
        1 => Just(Op::Reset),
        1 => Just(Op::Expire),
        2 => (0u16..200).prop_map(Op::Advance),
    ]
}

fn apply(table: &mut RoutingTable, op: &Op, now: &mut i64) {
    match op {
        Op::Set(s, a) => {
            let _ = table.set_route(SERVICES[*s], AppId::from(APPS[*a]), t(*now), 80);
        }
        Op::Restore(s) => {
            table.restore_default(SERVICES[*s]);
        }
        Op::Heartbeat(a, services, healthy) => {
            let status = if *healthy {
                ServiceHealthStatus::Healthy
            } else {
                ServiceHealthStatus::Degraded
            };
            let list: Vec<_> = services.iter().map(|s| (SERVICES[*s], status)).collect();
            table.apply_heartbeat(&heartbeat(APPS[*a], &list), t(*now), 80);
        }
        Op::Release(a) => {
            table.release_app(&AppId::from(APPS[*a]));
        }
        Op::Reset => {
            table.reset_all();
        }
        Op::Expire => {
            table.expire(t(*now), Duration::from_secs(300));
        }
        Op::Advance(secs) => *now += i64::from(*secs),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn routing_invariants_hold_for_any_operation_sequence(
        ops in prop::collection::vec(op(), 0..40),
    ) {
        let mut table = RoutingTable::default();
        let mut now = 0i64;
        let mut previous = MappingsSnapshot::from_table(&table, 0);
        let first = previous.clone();
        let (writer, reader) = MeshResolver::new();
        for (i, op) in ops.iter().enumerate() {
            apply(&mut table, op, &mut now);
            let version = i64::try_from(i).unwrap_or(i64::MAX) + 1;
            let snap = MappingsSnapshot::from_table(&table, version);

            // Infrastructure never appears, neither in the table nor in a snapshot.
            prop_assert!(table.routes().all(|(s, _)| !is_infrastructure(s) && !is_orchestrator(s)));
            prop_assert!(snap.mappings.keys().all(|s| !is_infrastructure(s)));
            prop_assert!(snap.mappings.values().all(|a| a != &snap.default_app_id));

            // Resolution equals the route or the default, on the table, the snapshot and
            // the mesh resolver alike.
            writer.apply(&snap);
            for service in SERVICES {
                let expected = if is_orchestrator(service) {
                    AppId::control_plane()
                } else {
                    table.route(service).map(|r| r.app_id.clone())
                        .unwrap_or_else(|| table.default_app_id().clone())
                };
                prop_assert_eq!(table.resolve(service), &expected);
                prop_assert_eq!(snap.resolve(service), expected.clone());
                let mesh = reader.resolve(service);
                if is_infrastructure(service) {
                    prop_assert_eq!(mesh, Resolution::Local);
                } else {
                    prop_assert_eq!(mesh.app_id_or("-"), expected.as_str());
                }
            }

            // The store form round-trips.
            let (back, skipped) =
                RoutingTable::from_records(table.default_app_id().clone(), table.to_records());
            prop_assert!(skipped.is_empty());
            prop_assert_eq!(&back, &table);

            // A diff from the previous snapshot replays exactly.
            let diff = MappingsDiff::between(&previous, &snap);
            prop_assert_eq!(diff.apply(&previous, version), snap.clone());
            previous = snap;
        }
        let last = MappingsSnapshot::from_table(&table, 999);
        prop_assert_eq!(first.diff(&last).apply(&first, 999), last);
    }
}

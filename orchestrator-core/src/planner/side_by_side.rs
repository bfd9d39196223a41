//! Side-by-side slots: the app-ids a changed node takes when it comes up beside its old
//! version instead of replacing it in place (blue-green, D62 (docs/DECISIONS.md#d62)).
//!
//! Every node has two slots: its own app-id `X` (blue) and `X-green`. A node running in
//! one slot comes up in the other; the next side-by-side deploy goes back. The slot a node
//! runs in is recorded in the deployed configuration like any app-id, and
//! [`adopt_running_slots`] lets a later deploy (any strategy), which names the node by its
//! topology app-id `X`, find it in `X-green`. Pure: no I/O.

use std::collections::BTreeSet;

use super::{ActionKind, Plan};
use crate::names::AppId;
use crate::resolver::APP_ID;
use crate::topology::ResolvedNode;

/// The suffix of the second slot.
pub const GREEN_SUFFIX: &str = "-green";

/// The other slot of `app_id`: `X` -> `X-green`, `X-green` -> `X`.
pub fn other_slot(app_id: &AppId) -> AppId {
    let s = app_id.as_str();
    match s.strip_suffix(GREEN_SUFFIX) {
        Some(base) if !base.is_empty() => AppId::new(base),
        _ => AppId::new(format!("{s}{GREEN_SUFFIX}")),
    }
}

/// `node` under another app-id: its `BANNOU_APP_ID` follows (the node's identity in its
/// heartbeats and mesh).
pub fn in_slot(node: &ResolvedNode, app_id: AppId) -> ResolvedNode {
    let mut moved = node.clone();
    moved
        .environment
        .insert(APP_ID.to_owned(), app_id.as_str().to_owned());
    moved.app_id = app_id;
    moved
}

/// Desired nodes named by their topology app-id `X` that run, under the same node name,
/// in `X-green` (a side-by-side deploy put them there) are planned in that slot, so an
/// unchanged node stays untouched and a changed one is replaced where it runs.
pub fn adopt_running_slots(running: &[ResolvedNode], desired: &mut [ResolvedNode]) {
    let taken: BTreeSet<AppId> = desired.iter().map(|n| n.app_id.clone()).collect();
    for node in desired.iter_mut() {
        if running.iter().any(|r| r.app_id == node.app_id) {
            continue;
        }
        let green = other_slot(&node.app_id);
        if node.app_id.as_str().ends_with(GREEN_SUFFIX) || taken.contains(&green) {
            continue;
        }
        if running
            .iter()
            .any(|r| r.app_id == green && r.name == node.name)
        {
            *node = in_slot(node, green);
        }
    }
}

/// A node that comes up beside its old version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotChange {
    /// The node name.
    pub node: String,
    /// The app-id it runs under now (stopped after the switch).
    pub old: AppId,
    /// The app-id it comes up under.
    pub new: AppId,
}

/// The desired nodes of a side-by-side deploy: `plan` (made against what runs) with each
/// redeployed node moved to its other slot, and the slot changes. Planned again against
/// what runs, they give a plan with no redeploy: new nodes (deploys), routing moves, and
/// teardowns of the old slots. `None` names the first node whose other slot is already
/// taken by another node (nothing may be started then).
pub fn side_by_side_nodes(
    plan: &Plan,
    running: &[ResolvedNode],
) -> Result<(Vec<ResolvedNode>, Vec<SlotChange>), SlotTaken> {
    let redeployed: BTreeSet<&AppId> = plan
        .waves
        .iter()
        .flat_map(|w| &w.actions)
        .filter(|a| a.kind == ActionKind::Redeploy)
        .map(|a| &a.app_id)
        .collect();
    let mut used: BTreeSet<AppId> = plan
        .nodes
        .iter()
        .chain(running)
        .map(|n| n.app_id.clone())
        .collect();
    let mut nodes = Vec::with_capacity(plan.nodes.len());
    let mut changes = Vec::new();
    for node in &plan.nodes {
        if !redeployed.contains(&node.app_id) {
            nodes.push(node.clone());
            continue;
        }
        let new = other_slot(&node.app_id);
        if !used.insert(new.clone()) {
            return Err(SlotTaken {
                node: node.name.clone(),
                slot: new,
            });
        }
        changes.push(SlotChange {
            node: node.name.clone(),
            old: node.app_id.clone(),
            new: new.clone(),
        });
        nodes.push(in_slot(node, new));
    }
    Ok((nodes, changes))
}

/// A changed node's other slot is the app-id of another node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "node `{node}` cannot come up beside its old version: app-id `{slot}` is taken by another node"
)]
pub struct SlotTaken {
    /// The node.
    pub node: String,
    /// The slot it needed.
    pub slot: AppId,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::planner::{PlanOptions, plan};
    use crate::resolver::{NodeInput, ResolveInput, resolve};
    use crate::{Catalog, Layer};
    use std::collections::BTreeMap;

    fn nodes(specs: &[(&str, &[&str], &str)]) -> Vec<ResolvedNode> {
        let inputs: Vec<NodeInput> = specs
            .iter()
            .map(|(name, services, tag)| NodeInput {
                name: (*name).to_owned(),
                app_id: None,
                layers: Vec::new(),
                services: services.iter().map(|s| (*s).to_owned()).collect(),
                replicas: 1,
                environment: BTreeMap::from([("TAG".to_owned(), (*tag).to_owned())]),
                mesh_enabled: true,
            })
            .collect();
        resolve(&ResolveInput {
            catalog: Catalog::builtin(),
            orchestrator_environment: &BTreeMap::new(),
            preset_environment: &BTreeMap::new(),
            request_environment: &BTreeMap::new(),
            nodes: &inputs,
            pools: &[],
        })
        .unwrap()
        .nodes
    }

    #[test]
    fn slots_alternate_and_the_identity_follows() {
        let x = AppId::new("n-auth");
        assert_eq!(other_slot(&x), AppId::new("n-auth-green"));
        assert_eq!(other_slot(&other_slot(&x)), x);
        assert_eq!(
            other_slot(&AppId::new("-green")),
            AppId::new("-green-green")
        );
        let node = &nodes(&[("n-auth", &["auth"], "1")])[0];
        let moved = in_slot(node, other_slot(&node.app_id));
        assert_eq!(moved.environment[APP_ID], "n-auth-green");
        assert_eq!(moved.name, "n-auth");
    }

    #[test]
    fn changed_nodes_move_to_their_other_slot_and_the_rest_stay() {
        let catalog = Catalog::builtin();
        let running = nodes(&[("n-auth", &["auth"], "1"), ("n-acct", &["account"], "1")]);
        let desired = nodes(&[("n-auth", &["auth"], "2"), ("n-acct", &["account"], "1")]);
        let first = plan(&running, &desired, catalog, &PlanOptions::default()).unwrap();
        assert_eq!(first.count(ActionKind::Redeploy), 1);
        let (side, changes) = side_by_side_nodes(&first, &running).unwrap();
        assert_eq!(
            changes,
            [SlotChange {
                node: "n-auth".into(),
                old: "n-auth".into(),
                new: "n-auth-green".into(),
            }]
        );
        let second = plan(&running, &side, catalog, &PlanOptions::default()).unwrap();
        assert_eq!(second.count(ActionKind::Redeploy), 0);
        assert_eq!(second.count(ActionKind::Deploy), 1);
        assert_eq!(second.count(ActionKind::Teardown), 1);
        assert_eq!(second.unchanged, [AppId::new("n-acct")]);
        assert_eq!(second.routing["auth"], AppId::new("n-auth-green"));
        let teardown = second.waves.last().unwrap();
        assert!(
            teardown.actions[0].services.is_empty(),
            "no route returns home"
        );
        assert_eq!(teardown.layer, Layer::AppFoundation);

        // A later deploy names the node `n-auth` and finds it in its green slot.
        let mut again = nodes(&[("n-auth", &["auth"], "2"), ("n-acct", &["account"], "1")]);
        adopt_running_slots(&second.nodes, &mut again);
        let auth = again.iter().find(|n| n.name == "n-auth").unwrap();
        assert_eq!(auth.app_id, AppId::new("n-auth-green"));
        let third = plan(&second.nodes, &again, catalog, &PlanOptions::default()).unwrap();
        assert!(third.is_empty(), "{third}");
        // ... and a side-by-side change of it goes back to the blue slot.
        let mut changed = nodes(&[("n-auth", &["auth"], "3"), ("n-acct", &["account"], "1")]);
        adopt_running_slots(&second.nodes, &mut changed);
        let fourth = plan(&second.nodes, &changed, catalog, &PlanOptions::default()).unwrap();
        let (_, back) = side_by_side_nodes(&fourth, &second.nodes).unwrap();
        assert_eq!(back[0].new, AppId::new("n-auth"));
    }

    #[test]
    fn a_taken_slot_is_refused() {
        let catalog = Catalog::builtin();
        let running = nodes(&[
            ("n-auth", &["auth"], "1"),
            ("n-auth-green", &["account"], "1"),
        ]);
        let desired = nodes(&[
            ("n-auth", &["auth"], "2"),
            ("n-auth-green", &["account"], "1"),
        ]);
        let p = plan(&running, &desired, catalog, &PlanOptions::default()).unwrap();
        let err = side_by_side_nodes(&p, &running).unwrap_err();
        assert_eq!(err.slot, AppId::new("n-auth-green"));
    }
}

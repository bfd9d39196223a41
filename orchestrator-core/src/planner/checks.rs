//! The hierarchy checks a desired deployment must pass before it is planned
//! (docs/COMPATIBILITY.md#layer-rules): identity, layer coupling per node, hard
//! dependencies hosted somewhere, GameFeatures only where GameFoundation runs.
//! Each check appends to the plan's errors or warnings; none stops the others.

use std::collections::{BTreeMap, BTreeSet};

use rustc_hash::{FxHashMap, FxHashSet};

use super::{IssueCode, PlanIssue, Severity};
use crate::catalog::Catalog;
use crate::layer::Layer;
use crate::resolver::{enabled_services, is_layer_enabled};
use crate::topology::ResolvedNode;

pub(super) fn check_identity(nodes: &[ResolvedNode], errors: &mut Vec<PlanIssue>) {
    for n in nodes.iter().filter(|n| n.app_id.is_control_plane()) {
        errors.push(PlanIssue {
            severity: Severity::Error,
            code: IssueCode::ControlPlaneNode,
            node: Some(n.name.clone()),
            services: Vec::new(),
            message: format!(
                "uses the control plane's app-id `{}`; the orchestrator never deploys, replaces or tears down the control plane",
                n.app_id
            ),
        });
    }
    for pair in nodes.windows(2) {
        if pair[0].app_id == pair[1].app_id {
            errors.push(PlanIssue {
                severity: Severity::Error,
                code: IssueCode::DuplicateAppId,
                node: Some(pair[1].name.clone()),
                services: Vec::new(),
                message: format!(
                    "app-id `{}` is used by nodes `{}` and `{}`",
                    pair[0].app_id, pair[0].name, pair[1].name
                ),
            });
        }
    }
    let mut owner: BTreeMap<&str, &ResolvedNode> = BTreeMap::new();
    for n in nodes {
        for s in &n.routed_services {
            if let Some(first) = owner.insert(s, n)
                && first.app_id != n.app_id
            {
                errors.push(PlanIssue {
                    severity: Severity::Error,
                    code: IssueCode::RoutingConflict,
                    node: Some(n.name.clone()),
                    services: vec![s.clone()],
                    message: format!(
                        "service `{s}` is routed to both `{}` and `{}`",
                        first.app_id, n.app_id
                    ),
                });
            }
        }
    }
}

/// Disables layers a node enables without the layers they need
/// (docs/COMPATIBILITY.md#layer-rules coupling), lowest first so that the fix cascades (no
/// GameFoundation -> no GameFeatures either).
pub(super) fn fix_layer_coupling(
    node: &mut ResolvedNode,
    catalog: &Catalog,
    strict: bool,
    warnings: &mut Vec<PlanIssue>,
    errors: &mut Vec<PlanIssue>,
) {
    let mut changed = false;
    for layer in Layer::TOGGLEABLE {
        if !is_layer_enabled(layer, &node.environment) {
            continue;
        }
        let missing: Vec<Layer> = layer
            .requires()
            .iter()
            .copied()
            .filter(|r| !is_layer_enabled(*r, &node.environment))
            .collect();
        if missing.is_empty() {
            continue;
        }
        let missing_names = missing
            .iter()
            .map(|l| l.to_string())
            .collect::<Vec<_>>()
            .join(" and ");
        let flag = layer.enable_flag().unwrap_or_default();
        if strict {
            errors.push(PlanIssue {
                severity: Severity::Error,
                code: IssueCode::LayerCoupling,
                node: Some(node.name.clone()),
                services: Vec::new(),
                message: format!("enables {layer} without {missing_names}, which it needs"),
            });
            continue;
        }
        node.environment.insert(flag.to_owned(), "false".to_owned());
        changed = true;
        warnings.push(PlanIssue {
            severity: Severity::Warning,
            code: IssueCode::LayerCoupling,
            node: Some(node.name.clone()),
            services: Vec::new(),
            message: format!(
                "enables {layer} without {missing_names}; {layer} is disabled there ({flag}=false)"
            ),
        });
    }
    if changed {
        node.services = enabled_services(&node.environment, catalog);
    }
}

pub(super) fn warn_incomplete_app_foundation(
    node: &ResolvedNode,
    catalog: &Catalog,
    warnings: &mut Vec<PlanIssue>,
) {
    let hosted: FxHashSet<&str> = node.services.iter().map(String::as_str).collect();
    let missing: Vec<String> = catalog
        .in_layer(Layer::AppFoundation)
        .filter(|d| !hosted.contains(d.name.as_str()))
        .map(|d| d.name.clone())
        .collect();
    if !missing.is_empty() {
        warnings.push(PlanIssue {
            severity: Severity::Warning,
            code: IssueCode::IncompleteAppFoundation,
            node: Some(node.name.clone()),
            message: format!(
                "does not host the whole AppFoundation layer (missing {}); L1 services expect to be co-located",
                missing.join(", ")
            ),
            services: missing,
        });
    }
}

pub(super) fn check_hierarchy(
    nodes: &[ResolvedNode],
    control_plane: &FxHashSet<&str>,
    catalog: &Catalog,
    errors: &mut Vec<PlanIssue>,
) {
    let mut hosted: FxHashSet<&str> = control_plane.clone();
    for n in nodes {
        hosted.extend(n.services.iter().map(String::as_str));
    }

    for n in nodes {
        let mut missing: FxHashMap<&str, Vec<&str>> = FxHashMap::default();
        for def in n.services.iter().filter_map(|s| catalog.find(s)) {
            for d in &def.hard_dependencies {
                let always_local = catalog.find(d).is_some_and(|dd| dd.required);
                if !always_local && !hosted.contains(d.as_str()) {
                    missing
                        .entry(d.as_str())
                        .or_default()
                        .push(def.name.as_str());
                }
            }
        }
        if missing.is_empty() {
            continue;
        }
        let mut deps: Vec<&str> = missing.keys().copied().collect();
        deps.sort_unstable();
        let detail = deps
            .iter()
            .map(|d| format!("`{d}` (needed by {})", missing[d].join(", ")))
            .collect::<Vec<_>>()
            .join(", ");
        errors.push(PlanIssue {
            severity: Severity::Error,
            code: IssueCode::MissingDependency,
            node: Some(n.name.clone()),
            services: deps.iter().map(|d| d.to_string()).collect(),
            message: format!(
                "needs {detail}, which no node hosts and the control plane does not run"
            ),
        });
    }

    let game_features: BTreeSet<&str> = nodes
        .iter()
        .flat_map(|n| n.services.iter())
        .filter(|s| {
            catalog
                .find(s)
                .is_some_and(|d| d.layer == Layer::GameFeatures)
        })
        .map(String::as_str)
        .collect();
    let game_foundation_anywhere = hosted.iter().any(|s| {
        catalog
            .find(s)
            .is_some_and(|d| d.layer == Layer::GameFoundation)
    });
    if !game_features.is_empty() && !game_foundation_anywhere {
        let mut needed: BTreeSet<String> = game_features
            .iter()
            .filter_map(|s| catalog.find(s))
            .flat_map(|d| d.hard_dependencies.iter())
            .filter(|d| {
                catalog
                    .find(d)
                    .is_some_and(|dd| dd.layer == Layer::GameFoundation)
            })
            .cloned()
            .collect();
        if needed.is_empty() {
            needed = catalog
                .in_layer(Layer::GameFoundation)
                .map(|d| d.name.clone())
                .collect();
        }
        errors.push(PlanIssue {
            severity: Severity::Error,
            code: IssueCode::GameFoundationMissing,
            node: None,
            services: needed.iter().cloned().collect(),
            message: format!(
                "GameFeatures services ({}) are enabled but GameFoundation runs nowhere; missing {}",
                game_features.into_iter().collect::<Vec<_>>().join(", "),
                needed.into_iter().collect::<Vec<_>>().join(", ")
            ),
        });
    }
}

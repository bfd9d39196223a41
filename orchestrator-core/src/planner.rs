//! The layer planner: current vs desired deployment -> hierarchy checks and ordered waves
//! of actions.
//!
//! [`plan`] is the entry point. It checks the desired deployment against the service
//! hierarchy (docs/COMPATIBILITY.md#layer-rules: hard dependencies hosted somewhere,
//! GameFeatures only where GameFoundation runs, layer coupling per node), then diffs it
//! against the current one and schedules the changes into [`Wave`]s: a node goes in the
//! wave of the highest layer it hosts, lower layers first, and never before the nodes it
//! depends on. Teardowns come last, highest layer first, so routing never points at a node
//! that is already gone. The result is deterministic, serialisable to JSON and readable as
//! text (`Display`).
//!
//! The hierarchy checks live in `planner/checks.rs`; the side-by-side slots of a
//! blue-green deploy in [`side_by_side`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use rustc_hash::FxHashSet;
use serde::{Deserialize, Serialize};

use crate::catalog::Catalog;
use crate::layer::Layer;
use crate::lenient_enum;
use crate::names::{AppId, CONTROL_PLANE_APP_ID};
use crate::topology::ResolvedNode;

mod checks;
pub mod side_by_side;
#[cfg(test)]
mod tests;

use checks::{check_hierarchy, check_identity, fix_layer_coupling, warn_incomplete_app_foundation};

/// Inputs of [`plan`] besides the two topologies.
#[derive(Debug, Clone, Default)]
pub struct PlanOptions {
    /// Services the control plane (`bannou`) runs itself. `None` means every catalog
    /// service: the all-in-one default, where every dependency is always available.
    pub control_plane_services: Option<BTreeSet<String>>,
    /// Turn layer-coupling fixes into errors instead of warnings (`--strict`).
    pub strict: bool,
}

lenient_enum! {
    /// What an [`Action`] does.
    pub enum ActionKind {
        /// Start a node that does not run yet.
        Deploy => "Deploy",
        /// Replace a running node whose services, environment or replicas changed.
        Redeploy => "Redeploy",
        /// Stop and remove a node the desired deployment no longer has.
        Teardown => "Teardown",
        /// Point services at a node (or back at the control plane) without touching containers.
        MoveRouting => "MoveRouting",
    }
}

lenient_enum! {
    /// Whether a wave brings nodes up or takes them down.
    pub enum WavePhase {
        /// Deploys, redeploys and routing moves, lowest layer first.
        Deploy => "Deploy",
        /// Teardowns, highest layer first, after every deploy wave.
        Teardown => "Teardown",
    }
}

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Action {
    /// What to do.
    pub kind: ActionKind,
    /// The node acted on; for [`ActionKind::MoveRouting`] the routing target (`bannou`
    /// meaning "back to the control plane").
    pub app_id: AppId,
    /// Node name (empty for moves back to the control plane).
    pub node: String,
    /// Deploy/Redeploy: the services routed to the node once the action is done (the node
    /// routes exactly these). MoveRouting: the services moved. Teardown: the services that
    /// return to the control plane.
    pub services: Vec<String>,
    /// MoveRouting only: where the services were routed before (`None` = control plane).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<AppId>,
    /// Human-readable differences that caused a redeploy (`env AUTH_X changed`, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<String>,
}

/// A group of actions that may run in parallel; waves run one after another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Wave {
    /// 1-based position in the plan.
    pub index: usize,
    /// Deploy or teardown.
    pub phase: WavePhase,
    /// The highest layer hosted by the wave's nodes.
    pub layer: Layer,
    /// The actions, sorted by kind then app-id.
    pub actions: Vec<Action>,
}

lenient_enum! {
    /// How serious a [`PlanIssue`] is.
    pub enum Severity {
        /// The plan is still produced.
        Warning => "Warning",
        /// The plan is rejected.
        Error => "Error",
    }
}

lenient_enum! {
    /// What a [`PlanIssue`] is about.
    pub enum IssueCode {
        /// A hosted service's hard dependency runs nowhere.
        MissingDependency => "MissingDependency",
        /// GameFeatures enabled while GameFoundation runs nowhere.
        GameFoundationMissing => "GameFoundationMissing",
        /// A node enables a layer without the layers it needs.
        LayerCoupling => "LayerCoupling",
        /// A node does not host the whole AppFoundation layer.
        IncompleteAppFoundation => "IncompleteAppFoundation",
        /// Nodes depend on each other and are deployed in the same wave.
        DependencyCycle => "DependencyCycle",
        /// Two desired nodes share an app-id.
        DuplicateAppId => "DuplicateAppId",
        /// One service is routed to two desired nodes.
        RoutingConflict => "RoutingConflict",
        /// A desired node claims the control plane's app-id (D8 (docs/DECISIONS.md#d8)).
        ControlPlaneNode => "ControlPlaneNode",
    }
}

/// A warning or error found while planning.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanIssue {
    /// Warning or error.
    pub severity: Severity,
    /// Machine-readable kind.
    pub code: IssueCode,
    /// Node concerned, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Services concerned (missing dependencies, disabled layers' names, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<String>,
    /// Human-readable explanation.
    pub message: String,
}

impl fmt::Display for PlanIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Warning => "warning",
            Severity::Error => "error",
        };
        match &self.node {
            Some(n) => write!(f, "{sev}: node `{n}`: {}", self.message),
            None => write!(f, "{sev}: {}", self.message),
        }
    }
}

/// The planned transition from the current to the desired deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    /// The deployment once the plan has run (desired nodes after layer-coupling fixes),
    /// sorted by app-id.
    pub nodes: Vec<ResolvedNode>,
    /// Ordered waves.
    pub waves: Vec<Wave>,
    /// Resulting routing table: services routed away from the control plane.
    pub routing: BTreeMap<String, AppId>,
    /// Nodes that stay exactly as they are.
    pub unchanged: Vec<AppId>,
    /// Warnings (the plan is valid).
    pub warnings: Vec<PlanIssue>,
}

/// The desired deployment violates the service hierarchy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("plan rejected:\n{}", render_issues(.errors))]
pub struct PlanRejected {
    /// Every error found (at least one).
    pub errors: Vec<PlanIssue>,
    /// Warnings found alongside.
    pub warnings: Vec<PlanIssue>,
}

fn render_issues(issues: &[PlanIssue]) -> String {
    issues
        .iter()
        .map(|i| format!("  {i}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The routing table a list of nodes implies: each routed service -> its node.
pub fn routing_of(nodes: &[ResolvedNode]) -> BTreeMap<String, AppId> {
    let mut table = BTreeMap::new();
    for n in nodes {
        for s in &n.routed_services {
            table.insert(s.clone(), n.app_id.clone());
        }
    }
    table
}

impl Plan {
    /// Applies the plan's actions, in order, to a routing table and returns the result.
    ///
    /// Semantics per action: Deploy/Redeploy make the node route exactly its `services`;
    /// MoveRouting points `services` at `app_id` (removing them when it is the control
    /// plane); Teardown returns everything routed to the node to the control plane.
    pub fn apply_routing(&self, start: &BTreeMap<String, AppId>) -> BTreeMap<String, AppId> {
        let mut table = start.clone();
        for action in self.waves.iter().flat_map(|w| &w.actions) {
            match action.kind {
                ActionKind::Deploy | ActionKind::Redeploy => {
                    table.retain(|_, to| *to != action.app_id);
                    for s in &action.services {
                        table.insert(s.clone(), action.app_id.clone());
                    }
                }
                ActionKind::MoveRouting => {
                    for s in &action.services {
                        if action.app_id.is_control_plane() {
                            table.remove(s);
                        } else {
                            table.insert(s.clone(), action.app_id.clone());
                        }
                    }
                }
                ActionKind::Teardown => table.retain(|_, to| *to != action.app_id),
            }
        }
        table
    }

    /// Number of actions of one kind.
    pub fn count(&self, kind: ActionKind) -> usize {
        self.waves
            .iter()
            .flat_map(|w| &w.actions)
            .filter(|a| a.kind == kind)
            .count()
    }

    /// True when the plan changes nothing.
    pub fn is_empty(&self) -> bool {
        self.waves.is_empty()
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "Plan: {} to deploy, {} to redeploy, {} to tear down, {} routing moves, {} unchanged",
            self.count(ActionKind::Deploy),
            self.count(ActionKind::Redeploy),
            self.count(ActionKind::Teardown),
            self.count(ActionKind::MoveRouting),
            self.unchanged.len()
        )?;
        if self.waves.is_empty() {
            writeln!(f, "Nothing to do.")?;
        }
        for w in &self.waves {
            let phase = match w.phase {
                WavePhase::Deploy => "",
                WavePhase::Teardown => " teardown",
            };
            writeln!(f, "Wave {}{phase} ({} {}):", w.index, w.layer.id(), w.layer)?;
            for a in &w.actions {
                let verb = match a.kind {
                    ActionKind::Deploy => "deploy",
                    ActionKind::Redeploy => "redeploy",
                    ActionKind::Teardown => "teardown",
                    ActionKind::MoveRouting => "route",
                };
                let services = a.services.join(", ");
                match a.kind {
                    ActionKind::MoveRouting => {
                        let from = a.from.as_ref().map_or(CONTROL_PLANE_APP_ID, AppId::as_str);
                        writeln!(f, "  {verb:<9} {services}: {from} -> {}", a.app_id)?;
                    }
                    ActionKind::Teardown if services.is_empty() => {
                        writeln!(f, "  {verb:<9} {}", a.app_id)?
                    }
                    ActionKind::Teardown => writeln!(
                        f,
                        "  {verb:<9} {} (routes {services} back to {CONTROL_PLANE_APP_ID})",
                        a.app_id
                    )?,
                    _ if services.is_empty() => writeln!(f, "  {verb:<9} {}", a.app_id)?,
                    _ => writeln!(f, "  {verb:<9} {} (routes {services})", a.app_id)?,
                }
                for c in &a.changes {
                    writeln!(f, "              {c}")?;
                }
            }
        }
        if !self.routing.is_empty() {
            writeln!(
                f,
                "Routing after the plan (everything else -> {CONTROL_PLANE_APP_ID}):"
            )?;
            for (s, a) in &self.routing {
                writeln!(f, "  {s:<24} -> {a}")?;
            }
        }
        for w in &self.warnings {
            writeln!(f, "{w}")?;
        }
        Ok(())
    }
}

/// The highest layer among a node's services (Infrastructure when it hosts nothing else).
fn node_layer(node: &ResolvedNode, catalog: &Catalog) -> Layer {
    node.services
        .iter()
        .filter_map(|s| catalog.find(s))
        .map(|d| d.layer)
        .max()
        .unwrap_or(Layer::Infrastructure)
}

/// Plans the transition from `current` to `desired`.
///
/// Errors (the whole plan is rejected, every problem listed): a hosted service whose hard
/// dependency runs nowhere (desired nodes plus the control plane), GameFeatures without
/// GameFoundation anywhere, duplicate app-ids, a service routed to two nodes, and under
/// `strict` any layer-coupling problem. Warnings: layers disabled on a node because the
/// layers they need are off there, nodes without the whole AppFoundation layer, and
/// dependency cycles between nodes (deployed together).
pub fn plan(
    current: &[ResolvedNode],
    desired: &[ResolvedNode],
    catalog: &Catalog,
    options: &PlanOptions,
) -> Result<Plan, PlanRejected> {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();

    let mut nodes: Vec<ResolvedNode> = desired.to_vec();
    nodes.sort_by(|a, b| a.app_id.cmp(&b.app_id));
    check_identity(&nodes, &mut errors);
    for node in &mut nodes {
        fix_layer_coupling(node, catalog, options.strict, &mut warnings, &mut errors);
        warn_incomplete_app_foundation(node, catalog, &mut warnings);
    }

    let control_plane: FxHashSet<&str> = match &options.control_plane_services {
        Some(set) => set.iter().map(String::as_str).collect(),
        None => catalog.services().iter().map(|d| d.name.as_str()).collect(),
    };
    check_hierarchy(&nodes, &control_plane, catalog, &mut errors);
    if !errors.is_empty() {
        return Err(PlanRejected { errors, warnings });
    }

    // === Diff ===
    let current_by_id: BTreeMap<&AppId, &ResolvedNode> =
        current.iter().map(|n| (&n.app_id, n)).collect();
    let desired_ids: BTreeSet<&AppId> = nodes.iter().map(|n| &n.app_id).collect();
    let current_routing = routing_of(current);
    let routing = routing_of(&nodes);

    let mut to_start: Vec<(ActionKind, &ResolvedNode, Vec<String>)> = Vec::new();
    let mut unchanged: Vec<&ResolvedNode> = Vec::new();
    for node in &nodes {
        match current_by_id.get(&node.app_id) {
            None => to_start.push((ActionKind::Deploy, node, Vec::new())),
            Some(old) => {
                let changes = container_changes(old, node);
                if changes.is_empty() {
                    unchanged.push(node);
                } else {
                    to_start.push((ActionKind::Redeploy, node, changes));
                }
            }
        }
    }

    // Routing moves on nodes whose containers stay: towards them, or away from them to
    // the control plane. Moves towards started nodes are part of their Deploy/Redeploy.
    let mut moves: Vec<(Layer, Action)> = Vec::new();
    for node in &unchanged {
        let layer = node_layer(node, catalog);
        let mut incoming: BTreeMap<Option<AppId>, Vec<String>> = BTreeMap::new();
        for s in &node.routed_services {
            if current_routing.get(s) != Some(&node.app_id) {
                incoming
                    .entry(current_routing.get(s).cloned())
                    .or_default()
                    .push(s.clone());
            }
        }
        for (from, services) in incoming {
            moves.push((
                layer,
                move_action(node.app_id.clone(), node.name.clone(), services, from),
            ));
        }
        let outgoing: Vec<String> = current_routing
            .iter()
            .filter(|(s, to)| **to == node.app_id && !routing.contains_key(*s))
            .map(|(s, _)| s.clone())
            .collect();
        if !outgoing.is_empty() {
            moves.push((
                layer,
                move_action(
                    AppId::control_plane(),
                    String::new(),
                    outgoing,
                    Some(node.app_id.clone()),
                ),
            ));
        }
    }

    // === Schedule deploys: list scheduling over dependencies, lowest layer first ===
    let mut available: FxHashSet<&str> = control_plane.clone();
    for n in &unchanged {
        available.extend(n.services.iter().map(String::as_str));
    }
    let mut remaining: Vec<Pending<'_>> = to_start
        .into_iter()
        .map(|(kind, node, changes)| {
            let own: FxHashSet<&str> = node.services.iter().map(String::as_str).collect();
            let mut needs: Vec<&str> = node
                .services
                .iter()
                .filter_map(|s| catalog.find(s))
                .flat_map(|d| d.hard_dependencies.iter().map(String::as_str))
                .filter(|d| !own.contains(d) && !catalog.find(d).is_some_and(|def| def.required))
                .collect();
            needs.sort_unstable();
            needs.dedup();
            Pending {
                layer: node_layer(node, catalog),
                kind,
                node,
                changes,
                needs,
            }
        })
        .collect();
    remaining.sort_by(|a, b| (a.layer, &a.node.app_id).cmp(&(b.layer, &b.node.app_id)));

    let mut waves: Vec<Wave> = Vec::new();
    while !remaining.is_empty() {
        let ready_layer = remaining
            .iter()
            .filter(|r| r.needs.iter().all(|d| available.contains(d)))
            .map(|r| r.layer)
            .min();
        let (layer, cycle) = match ready_layer {
            Some(l) => (l, false),
            // Nothing is ready: the rest depend on each other. Start the lowest layer's
            // nodes together (their services retry until their peers are up).
            None => (remaining[0].layer, true),
        };
        let (batch, rest): (Vec<_>, Vec<_>) = remaining.into_iter().partition(|r| {
            r.layer == layer && (cycle || r.needs.iter().all(|d| available.contains(d)))
        });
        remaining = rest;
        if cycle {
            let names: Vec<String> = batch.iter().map(|r| r.node.app_id.to_string()).collect();
            let unmet: BTreeSet<String> = batch
                .iter()
                .flat_map(|r| {
                    r.needs
                        .iter()
                        .filter(|d| !available.contains(*d))
                        .map(|d| d.to_string())
                })
                .collect();
            warnings.push(PlanIssue {
                severity: Severity::Warning,
                code: IssueCode::DependencyCycle,
                node: None,
                services: unmet.iter().cloned().collect(),
                message: format!(
                    "nodes {} depend on each other (through {}); they are deployed in the same wave",
                    names.join(", "),
                    unmet.into_iter().collect::<Vec<_>>().join(", ")
                ),
            });
        }
        let mut actions = Vec::with_capacity(batch.len());
        for Pending {
            kind,
            node,
            changes,
            ..
        } in batch
        {
            available.extend(node.services.iter().map(String::as_str));
            actions.push(Action {
                kind,
                app_id: node.app_id.clone(),
                node: node.name.clone(),
                services: node.routed_services.clone(),
                from: None,
                changes,
            });
        }
        waves.push(Wave {
            index: 0,
            phase: WavePhase::Deploy,
            layer,
            actions,
        });
    }

    // Routing-only moves join the first deploy wave of their layer, or a wave of their own.
    for (layer, action) in moves {
        match waves.iter_mut().find(|w| w.layer == layer) {
            Some(w) => w.actions.push(action),
            None => {
                let at = waves
                    .iter()
                    .position(|w| w.layer > layer)
                    .unwrap_or(waves.len());
                waves.insert(
                    at,
                    Wave {
                        index: 0,
                        phase: WavePhase::Deploy,
                        layer,
                        actions: vec![action],
                    },
                );
            }
        }
    }

    // === Teardowns, highest layer first ===
    let mut teardowns: BTreeMap<std::cmp::Reverse<Layer>, Vec<Action>> = BTreeMap::new();
    for old in current.iter().filter(|n| !desired_ids.contains(&n.app_id)) {
        let returning: Vec<String> = current_routing
            .iter()
            .filter(|(s, to)| **to == old.app_id && !routing.contains_key(*s))
            .map(|(s, _)| s.clone())
            .collect();
        teardowns
            .entry(std::cmp::Reverse(node_layer(old, catalog)))
            .or_default()
            .push(Action {
                kind: ActionKind::Teardown,
                app_id: old.app_id.clone(),
                node: old.name.clone(),
                services: returning,
                from: None,
                changes: Vec::new(),
            });
    }
    for (std::cmp::Reverse(layer), actions) in teardowns {
        waves.push(Wave {
            index: 0,
            phase: WavePhase::Teardown,
            layer,
            actions,
        });
    }

    for (i, w) in waves.iter_mut().enumerate() {
        w.index = i + 1;
        w.actions.sort_by(|a, b| {
            (a.kind, &a.app_id, &a.services).cmp(&(b.kind, &b.app_id, &b.services))
        });
    }

    Ok(Plan {
        unchanged: unchanged.iter().map(|n| n.app_id.clone()).collect(),
        nodes,
        waves,
        routing,
        warnings,
    })
}

/// A node waiting to be scheduled into a deploy wave.
struct Pending<'a> {
    layer: Layer,
    kind: ActionKind,
    node: &'a ResolvedNode,
    changes: Vec<String>,
    /// Hard dependencies other nodes (or the control plane) must provide first.
    needs: Vec<&'a str>,
}

fn move_action(to: AppId, node: String, services: Vec<String>, from: Option<AppId>) -> Action {
    Action {
        kind: ActionKind::MoveRouting,
        app_id: to,
        node,
        services,
        from,
        changes: Vec::new(),
    }
}

/// What differs between two versions of a node in a way that needs its containers replaced.
///
/// Routing alone never does: a `{SVC}_SERVICE_ENABLED=true` that only repeats what the
/// node's layers already enable is ignored, so moving routing does not restart anything.
fn container_changes(old: &ResolvedNode, new: &ResolvedNode) -> Vec<String> {
    let mut changes = Vec::new();
    let added: Vec<&str> = new
        .services
        .iter()
        .filter(|s| !old.services.contains(s))
        .map(String::as_str)
        .collect();
    let removed: Vec<&str> = old
        .services
        .iter()
        .filter(|s| !new.services.contains(s))
        .map(String::as_str)
        .collect();
    if !added.is_empty() {
        changes.push(format!("services added: {}", added.join(", ")));
    }
    if !removed.is_empty() {
        changes.push(format!("services removed: {}", removed.join(", ")));
    }
    if old.replicas != new.replicas {
        changes.push(format!("replicas {} -> {}", old.replicas, new.replicas));
    }
    let redundant = |n: &ResolvedNode, k: &str, v: &str| {
        k.ends_with("_SERVICE_ENABLED")
            && v.eq_ignore_ascii_case("true")
            && n.services
                .iter()
                .any(|s| crate::names::service_enable_flag(s) == k)
    };
    // Walk both sorted maps in step (no copies): the planner diffs thousands of nodes.
    let mut a = old
        .environment
        .iter()
        .filter(|(k, v)| !redundant(old, k, v))
        .peekable();
    let mut b = new
        .environment
        .iter()
        .filter(|(k, v)| !redundant(new, k, v))
        .peekable();
    loop {
        match (a.peek(), b.peek()) {
            (None, None) => break,
            (Some((ka, _)), None) => {
                changes.push(format!("env {ka} removed"));
                a.next();
            }
            (None, Some((kb, _))) => {
                changes.push(format!("env {kb} added"));
                b.next();
            }
            (Some((ka, va)), Some((kb, vb))) => match ka.cmp(kb) {
                std::cmp::Ordering::Less => {
                    changes.push(format!("env {ka} removed"));
                    a.next();
                }
                std::cmp::Ordering::Greater => {
                    changes.push(format!("env {kb} added"));
                    b.next();
                }
                std::cmp::Ordering::Equal => {
                    if va != vb {
                        changes.push(format!("env {ka} changed"));
                    }
                    a.next();
                    b.next();
                }
            },
        }
    }
    changes
}

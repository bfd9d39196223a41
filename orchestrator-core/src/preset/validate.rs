//! Second stage of preset reading: raw structs -> [`Preset`], collecting every problem
//! (unknown services and layers, duplicates, pool bounds) with its position.

use std::collections::{BTreeMap, HashMap};

use serde_saphyr::Spanned;

use super::parse::{RawEnv, RawNode, RawPool, RawPreset, position};
use super::{
    Position, Preset, PresetError, PresetErrorKind, PresetErrors, PresetNode, PresetWarning,
    PresetWarningKind, ProcessingPool,
};
use crate::catalog::Catalog;
use crate::layer::Layer;
use crate::names::AppId;

/// Collects errors and warnings while converting.
struct Checker<'a> {
    source: &'a str,
    errors: Vec<PresetError>,
}

impl Checker<'_> {
    fn pos<T>(&self, s: &Spanned<T>, field: impl Into<String>) -> Position {
        position(self.source, &s.referenced, field)
    }

    fn error(&mut self, pos: Position, kind: PresetErrorKind) {
        self.errors.push(PresetError::at(pos, kind));
    }
}

/// Converts and validates; `warnings` receives the non-fatal findings.
pub(super) fn validate(
    source: &str,
    raw: RawPreset,
    catalog: &Catalog,
    warnings: &mut Vec<PresetWarning>,
) -> Result<Preset, PresetErrors> {
    let mut c = Checker {
        source,
        errors: Vec::new(),
    };

    let name = match raw.name.as_ref().filter(|n| !n.value.trim().is_empty()) {
        Some(n) => {
            let v = n.value.trim().to_owned();
            if v.contains('/') || v.contains('\\') || v.contains("..") {
                c.error(c.pos(n, "name"), PresetErrorKind::InvalidName(v.clone()));
            }
            v
        }
        None => file_stem(source),
    };

    let (raw_nodes, infrastructure) = match raw.topology {
        Some(t) => (t.nodes.unwrap_or_default(), t.infrastructure),
        None => (Vec::new(), None),
    };
    let nodes = validate_nodes(&mut c, raw_nodes, catalog);
    let pools = validate_pools(
        &mut c,
        raw.processing_pools.unwrap_or_default(),
        catalog,
        warnings,
    );

    if !c.errors.is_empty() {
        c.errors.sort_by_key(|e| (e.line, e.column));
        return Err(PresetErrors(c.errors));
    }
    warnings.sort_by_key(|w| (w.position.line, w.position.column));
    Ok(Preset {
        name,
        description: raw.description,
        category: raw.category,
        nodes,
        infrastructure,
        environment: env(raw.environment),
        required_backends: raw.required_backends.unwrap_or_default(),
        processing_pools: pools,
    })
}

/// `dir/auth-only.yaml` -> `auth-only`.
fn file_stem(source: &str) -> String {
    std::path::Path::new(source)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| source.to_owned())
}

/// Env values are kept as written; a null value becomes the empty string.
fn env(raw: Option<RawEnv>) -> BTreeMap<String, String> {
    raw.unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.map(|v| v.value).unwrap_or_default()))
        .collect()
}

fn validate_nodes(
    c: &mut Checker<'_>,
    raw: Vec<Spanned<RawNode>>,
    catalog: &Catalog,
) -> Vec<PresetNode> {
    let mut nodes = Vec::with_capacity(raw.len());
    let mut names: HashMap<String, usize> = HashMap::new();
    let mut app_ids: HashMap<AppId, String> = HashMap::new();
    let mut routed: HashMap<String, String> = HashMap::new();

    for (i, spanned) in raw.into_iter().enumerate() {
        let base = format!("topology.nodes[{i}]");
        let node_pos = c.pos(&spanned, base.clone());
        let n = spanned.value;

        let name = n
            .name
            .as_ref()
            .map(|s| s.value.trim().to_owned())
            .unwrap_or_default();
        let mut name_is_duplicate = false;
        match &n.name {
            _ if name.is_empty() => {
                let pos = match &n.name {
                    Some(s) => c.pos(s, format!("{base}.name")),
                    None => node_pos.clone(),
                };
                c.error(pos, PresetErrorKind::MissingNodeName);
            }
            Some(s) => {
                if let Some(first) = names.get(&name) {
                    name_is_duplicate = true;
                    let kind = PresetErrorKind::DuplicateNodeName {
                        name: name.clone(),
                        first_index: *first,
                    };
                    c.error(c.pos(s, format!("{base}.name")), kind);
                } else {
                    names.insert(name.clone(), i);
                }
            }
            None => {}
        }

        let app_id = n
            .app_id
            .as_ref()
            .map(|s| s.value.trim().to_owned())
            .filter(|s| !s.is_empty());
        let effective = app_id.clone().unwrap_or_else(|| name.clone());
        if !effective.is_empty() && !name_is_duplicate {
            let key = AppId::new(effective.as_str());
            if let Some(first) = app_ids.get(&key) {
                let pos = match &n.app_id {
                    Some(s) => c.pos(s, format!("{base}.appId")),
                    None => match &n.name {
                        Some(s) => c.pos(s, format!("{base}.name")),
                        None => node_pos.clone(),
                    },
                };
                let kind = PresetErrorKind::DuplicateAppId {
                    app_id: effective.clone(),
                    first_node: first.clone(),
                };
                c.error(pos, kind);
            } else {
                app_ids.insert(key, name.clone());
            }
        }

        let mut layers = Vec::new();
        for (j, l) in n.layers.iter().flatten().enumerate() {
            match l.value.trim().parse::<Layer>() {
                Ok(layer) => {
                    if !layers.contains(&layer) {
                        layers.push(layer);
                    }
                }
                Err(_) => {
                    let kind = PresetErrorKind::UnknownLayer {
                        name: l.value.clone(),
                    };
                    c.error(c.pos(l, format!("{base}.layers[{j}]")), kind);
                }
            }
        }

        let mut services: Vec<String> = Vec::new();
        for (j, s) in n.services.iter().flatten().enumerate() {
            match catalog.get(&s.value) {
                Ok(def) => {
                    if services.contains(&def.name) {
                        continue;
                    }
                    match routed.get(&def.name) {
                        Some(first) if *first != name => {
                            let kind = PresetErrorKind::ServiceRoutedTwice {
                                service: def.name.clone(),
                                first_node: first.clone(),
                            };
                            c.error(c.pos(s, format!("{base}.services[{j}]")), kind);
                        }
                        _ => {
                            routed.insert(def.name.clone(), name.clone());
                        }
                    }
                    services.push(def.name.clone());
                }
                Err(unknown) => {
                    let kind = PresetErrorKind::UnknownService(unknown);
                    c.error(c.pos(s, format!("{base}.services[{j}]")), kind);
                }
            }
        }

        nodes.push(PresetNode {
            name,
            layers,
            services,
            replicas: n.replicas.unwrap_or(1),
            environment: env(n.environment),
            mesh_enabled: n.mesh_enabled.unwrap_or(true),
            app_id,
        });
    }
    nodes
}

fn validate_pools(
    c: &mut Checker<'_>,
    raw: Vec<Spanned<RawPool>>,
    catalog: &Catalog,
    warnings: &mut Vec<PresetWarning>,
) -> Vec<ProcessingPool> {
    let mut pools = Vec::with_capacity(raw.len());
    let mut seen: HashMap<String, ()> = HashMap::new();
    for (i, spanned) in raw.into_iter().enumerate() {
        let base = format!("processingPools[{i}]");
        let pool_pos = c.pos(&spanned, base.clone());
        let p = spanned.value;

        let pool_type = p
            .pool_type
            .as_ref()
            .map(|s| s.value.trim().to_owned())
            .unwrap_or_default();
        if pool_type.is_empty() {
            warnings.push(PresetWarning {
                position: pool_pos,
                kind: PresetWarningKind::EmptyPoolType,
            });
            continue;
        }
        if let Some(s) = &p.pool_type
            && seen.insert(pool_type.clone(), ()).is_some()
        {
            let kind = PresetErrorKind::DuplicatePoolType(pool_type.clone());
            c.error(c.pos(s, format!("{base}.poolType")), kind);
        }

        let mut plugin = String::new();
        if let Some(s) = &p.plugin {
            let given = s.value.trim();
            if !given.is_empty() {
                plugin = match catalog.get(given) {
                    Ok(def) => def.name.clone(),
                    Err(unknown) => {
                        warnings.push(PresetWarning {
                            position: c.pos(s, format!("{base}.plugin")),
                            kind: PresetWarningKind::UnknownPlugin(unknown),
                        });
                        given.to_owned()
                    }
                };
            }
        }

        let min = p.min_instances.as_ref().map_or(1, |s| s.value);
        let max = p.max_instances.as_ref().map_or(5, |s| s.value);
        if min > max {
            let pos = match (&p.max_instances, &p.min_instances) {
                (Some(s), _) => c.pos(s, format!("{base}.maxInstances")),
                (None, Some(s)) => c.pos(s, format!("{base}.minInstances")),
                (None, None) => pool_pos.clone(),
            };
            c.error(pos, PresetErrorKind::MinAboveMax { min, max });
        }

        let mut threshold = |s: &Option<Spanned<f64>>, default: f64, key: &str| match s {
            Some(s) if !(0.0..=1.0).contains(&s.value) => {
                let kind = PresetErrorKind::ThresholdOutOfRange { value: s.value };
                c.error(c.pos(s, format!("{base}.{key}")), kind);
                None
            }
            Some(s) => Some(s.value),
            None => Some(default),
        };
        let up = threshold(&p.scale_up_threshold, 0.8, "scaleUpThreshold");
        let down = threshold(&p.scale_down_threshold, 0.2, "scaleDownThreshold");
        if let (Some(up), Some(down)) = (up, down)
            && down >= up
        {
            let pos = match (&p.scale_down_threshold, &p.scale_up_threshold) {
                (Some(s), _) => c.pos(s, format!("{base}.scaleDownThreshold")),
                (None, Some(s)) => c.pos(s, format!("{base}.scaleUpThreshold")),
                (None, None) => pool_pos.clone(),
            };
            c.error(pos, PresetErrorKind::ThresholdsInverted { down, up });
        }

        pools.push(ProcessingPool {
            pool_type,
            plugin,
            image: p.image.filter(|s| !s.trim().is_empty()),
            min_instances: min,
            max_instances: max,
            scale_up_threshold: up.unwrap_or(0.8),
            scale_down_threshold: down.unwrap_or(0.2),
            idle_timeout_minutes: p.idle_timeout_minutes.unwrap_or(5),
            environment: env(p.environment),
        });
    }
    pools
}

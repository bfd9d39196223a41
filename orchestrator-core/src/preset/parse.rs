//! First stage of preset reading: YAML text -> raw, span-carrying structs (both key
//! spellings, scalar env values kept as written), plus the unknown-key pass.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{Location, Spanned};

use super::{
    Position, PresetError, PresetErrorKind, PresetErrors, PresetWarning, PresetWarningKind,
};

/// An environment map as written. A null value (`KEY:` or `KEY: ~`) is `None`.
pub(super) type RawEnv = BTreeMap<String, Option<Spanned<String>>>;

#[derive(Debug, Deserialize)]
pub(super) struct RawPreset {
    pub name: Option<Spanned<String>>,
    pub description: Option<String>,
    pub category: Option<String>,
    pub topology: Option<RawTopology>,
    pub environment: Option<RawEnv>,
    #[serde(rename = "requiredBackends", alias = "required_backends")]
    pub required_backends: Option<Vec<String>>,
    #[serde(rename = "processingPools", alias = "processing_pools")]
    pub processing_pools: Option<Vec<Spanned<RawPool>>>,
}

#[derive(Debug, Deserialize)]
pub(super) struct RawTopology {
    pub nodes: Option<Vec<Spanned<RawNode>>>,
    pub infrastructure: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
pub(super) struct RawNode {
    pub name: Option<Spanned<String>>,
    pub layers: Option<Vec<Spanned<String>>>,
    pub services: Option<Vec<Spanned<String>>>,
    pub replicas: Option<u32>,
    pub environment: Option<RawEnv>,
    #[serde(rename = "meshEnabled", alias = "mesh_enabled")]
    pub mesh_enabled: Option<bool>,
    #[serde(rename = "appId", alias = "app_id")]
    pub app_id: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
pub(super) struct RawPool {
    #[serde(rename = "poolType", alias = "pool_type")]
    pub pool_type: Option<Spanned<String>>,
    pub plugin: Option<Spanned<String>>,
    pub image: Option<String>,
    #[serde(rename = "minInstances", alias = "min_instances")]
    pub min_instances: Option<Spanned<u32>>,
    #[serde(rename = "maxInstances", alias = "max_instances")]
    pub max_instances: Option<Spanned<u32>>,
    #[serde(rename = "scaleUpThreshold", alias = "scale_up_threshold")]
    pub scale_up_threshold: Option<Spanned<f64>>,
    #[serde(rename = "scaleDownThreshold", alias = "scale_down_threshold")]
    pub scale_down_threshold: Option<Spanned<f64>>,
    #[serde(rename = "idleTimeoutMinutes", alias = "idle_timeout_minutes")]
    pub idle_timeout_minutes: Option<u32>,
    pub environment: Option<RawEnv>,
}

/// A position from a serde-saphyr location.
pub(super) fn position(source: &str, loc: &Location, field: impl Into<String>) -> Position {
    let clamp = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
    Position {
        source: source.to_owned(),
        line: clamp(loc.line()),
        column: clamp(loc.column()),
        field: field.into(),
    }
}

/// YAML text -> raw preset; a syntax or shape error becomes one [`PresetError`].
pub(super) fn parse_raw(source: &str, yaml: &str) -> Result<RawPreset, PresetErrors> {
    let is_blank = yaml
        .lines()
        .map(str::trim)
        .all(|l| l.is_empty() || l.starts_with('#') || l == "---" || l == "...");
    if is_blank {
        let pos = Position {
            source: source.to_owned(),
            line: 1,
            column: 1,
            field: String::new(),
        };
        return Err(PresetErrors(vec![PresetError::at(
            pos,
            PresetErrorKind::Empty,
        )]));
    }
    serde_saphyr::from_str::<RawPreset>(yaml).map_err(|e| {
        let pos = match e.location() {
            Some(loc) => {
                let field = field_at(yaml, loc.line(), loc.column()).unwrap_or_default();
                position(source, &loc, field)
            }
            None => Position {
                source: source.to_owned(),
                line: 0,
                column: 0,
                field: String::new(),
            },
        };
        PresetErrors(vec![PresetError::at(
            pos,
            PresetErrorKind::Yaml(short_message(&e)),
        )])
    })
}

/// The parser's message without its source snippet and position prefix.
fn short_message(e: &serde_saphyr::Error) -> String {
    let text = e.to_string();
    let first = text.lines().next().unwrap_or_default().trim();
    let first = first.strip_prefix("error: ").unwrap_or(first);
    // "line 2 column 4: invalid u32" -> "invalid u32" (the position is reported separately).
    let msg = match first
        .strip_prefix("line ")
        .and_then(|rest| rest.split_once(": "))
    {
        Some((_, msg)) => msg,
        None => first,
    };
    // Drop advice about parser options callers cannot set.
    match msg.split_once(", set ") {
        Some((head, _)) => head.to_owned(),
        None => msg.to_owned(),
    }
}

/// The field path of the key or value that starts at `line`:`column`, if any (the
/// deepest one). Used to name the field of a type error the parser reports by position.
fn field_at(yaml: &str, line: u64, column: u64) -> Option<String> {
    fn walk(shape: &Shape, path: &str, at: (u64, u64), best: &mut Option<String>) {
        let here = |loc: &Location| (loc.line(), loc.column()) == at;
        match shape {
            Shape::Map(entries) => {
                for (k, v) in entries {
                    let child = if path.is_empty() {
                        k.value.0.clone()
                    } else {
                        format!("{path}.{}", k.value.0)
                    };
                    if here(&k.referenced) || here(&v.referenced) {
                        *best = Some(child.clone());
                    }
                    walk(&v.value, &child, at, best);
                }
            }
            Shape::Seq(items) => {
                for (i, v) in items.iter().enumerate() {
                    let child = format!("{path}[{i}]");
                    if here(&v.referenced) {
                        *best = Some(child.clone());
                    }
                    walk(&v.value, &child, at, best);
                }
            }
            Shape::Scalar => {}
        }
    }
    let shape = serde_saphyr::from_str::<Shape>(yaml).ok()?;
    let mut best = None;
    walk(&shape, "", (line, column), &mut best);
    best
}

// === unknown-key pass ===

/// The shape of a YAML document with the location of every mapping key.
#[derive(Debug)]
enum Shape {
    Map(Vec<(Spanned<KeyText>, Spanned<Shape>)>),
    Seq(Vec<Spanned<Shape>>),
    Scalar,
}

/// A mapping key of any scalar type, as text.
#[derive(Debug)]
struct KeyText(String);

impl<'de> Deserialize<'de> for KeyText {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = KeyText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a scalar key")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<KeyText, E> {
                Ok(KeyText(v.to_owned()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_unit<E: de::Error>(self) -> Result<KeyText, E> {
                Ok(KeyText(String::new()))
            }
        }
        d.deserialize_string(V)
    }
}

impl<'de> Deserialize<'de> for Shape {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Shape;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any YAML value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Shape, A::Error> {
                let mut entries = Vec::new();
                while let Some(k) = map.next_key::<Spanned<KeyText>>()? {
                    let v = map.next_value::<Spanned<Shape>>()?;
                    entries.push((k, v));
                }
                Ok(Shape::Map(entries))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Shape, A::Error> {
                let mut items = Vec::new();
                while let Some(v) = seq.next_element::<Spanned<Shape>>()? {
                    items.push(v);
                }
                Ok(Shape::Seq(items))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Shape, E> {
                Ok(Shape::Scalar)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Shape, E> {
                Ok(Shape::Scalar)
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Shape, E> {
                Ok(Shape::Scalar)
            }
            fn visit_i128<E: de::Error>(self, _: i128) -> Result<Shape, E> {
                Ok(Shape::Scalar)
            }
            fn visit_u128<E: de::Error>(self, _: u128) -> Result<Shape, E> {
                Ok(Shape::Scalar)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Shape, E> {
                Ok(Shape::Scalar)
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Shape, E> {
                Ok(Shape::Scalar)
            }
            fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<Shape, E> {
                Ok(Shape::Scalar)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Shape, E> {
                Ok(Shape::Scalar)
            }
            fn visit_none<E: de::Error>(self) -> Result<Shape, E> {
                Ok(Shape::Scalar)
            }
            fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Shape, D::Error> {
                Shape::deserialize(d)
            }
        }
        d.deserialize_any(V)
    }
}

/// Known keys per object kind: `(camelCase, snake_case alias)`.
const TOP_KEYS: &[(&str, &str)] = &[
    ("name", "name"),
    ("description", "description"),
    ("category", "category"),
    ("topology", "topology"),
    ("environment", "environment"),
    ("requiredBackends", "required_backends"),
    ("processingPools", "processing_pools"),
];
const TOPOLOGY_KEYS: &[(&str, &str)] = &[("nodes", "nodes"), ("infrastructure", "infrastructure")];
const NODE_KEYS: &[(&str, &str)] = &[
    ("name", "name"),
    ("layers", "layers"),
    ("services", "services"),
    ("replicas", "replicas"),
    ("environment", "environment"),
    ("meshEnabled", "mesh_enabled"),
    ("appId", "app_id"),
];
const POOL_KEYS: &[(&str, &str)] = &[
    ("poolType", "pool_type"),
    ("plugin", "plugin"),
    ("image", "image"),
    ("minInstances", "min_instances"),
    ("maxInstances", "max_instances"),
    ("scaleUpThreshold", "scale_up_threshold"),
    ("scaleDownThreshold", "scale_down_threshold"),
    ("idleTimeoutMinutes", "idle_timeout_minutes"),
    ("environment", "environment"),
];

/// One warning per key the preset format does not define (upstream ignores them silently).
///
/// Runs on a document that already parsed; if this second pass fails it reports nothing.
pub(super) fn unknown_key_warnings(source: &str, yaml: &str) -> Vec<PresetWarning> {
    let Ok(shape) = serde_saphyr::from_str::<Shape>(yaml) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let top = check_keys(source, &shape, TOP_KEYS, "", &mut out);
    if let Some(topo) = find(&top, "topology") {
        let topo_children = check_keys(source, topo, TOPOLOGY_KEYS, "topology", &mut out);
        if let Some(Shape::Seq(nodes)) = find(&topo_children, "nodes") {
            for (i, n) in nodes.iter().enumerate() {
                let path = format!("topology.nodes[{i}]");
                check_keys(source, &n.value, NODE_KEYS, &path, &mut out);
            }
        }
    }
    if let Some(Shape::Seq(pools)) = find(&top, "processingPools") {
        for (i, p) in pools.iter().enumerate() {
            let path = format!("processingPools[{i}]");
            check_keys(source, &p.value, POOL_KEYS, &path, &mut out);
        }
    }
    out
}

fn find<'a>(children: &[(&str, &'a Shape)], name: &str) -> Option<&'a Shape> {
    children.iter().find(|(k, _)| *k == name).map(|(_, v)| *v)
}

/// Warns about unknown keys of one mapping; returns the known children by canonical key.
fn check_keys<'a>(
    source: &str,
    map: &'a Shape,
    known: &[(&'static str, &'static str)],
    path: &str,
    out: &mut Vec<PresetWarning>,
) -> Vec<(&'static str, &'a Shape)> {
    let mut found = Vec::new();
    let Shape::Map(entries) = map else {
        return found;
    };
    for (k, v) in entries {
        let key = k.value.0.as_str();
        match known.iter().find(|(c, s)| *c == key || *s == key) {
            Some((canonical, _)) => found.push((*canonical, &v.value)),
            None => {
                let field = if path.is_empty() {
                    key.to_owned()
                } else {
                    format!("{path}.{key}")
                };
                out.push(PresetWarning {
                    position: position(source, &k.referenced, field),
                    kind: PresetWarningKind::UnknownKey {
                        key: key.to_owned(),
                        suggestion: closest_key(key, known),
                    },
                });
            }
        }
    }
    found
}

fn closest_key(key: &str, known: &[(&str, &str)]) -> Option<String> {
    let lower = key.to_ascii_lowercase();
    known
        .iter()
        .map(|(c, s)| {
            let score = strsim::jaro_winkler(&lower, &c.to_ascii_lowercase())
                .max(strsim::jaro_winkler(&lower, s));
            (score, *c)
        })
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c.to_owned())
}

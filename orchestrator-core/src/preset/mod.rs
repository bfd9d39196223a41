//! Preset YAML (docs/COMPATIBILITY.md#presets): parsing with both key spellings, validation
//! that reports every problem with file, line, column and field, and the preset directory.
//!
//! Start with [`Preset::parse`] (pure: text in, [`ParsedPreset`] or [`PresetErrors`] out);
//! [`PresetLibrary`] lists and loads `*.yaml` files from a directory.

mod library;
mod parse;
mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use crate::catalog::{Catalog, UnknownService};
use crate::layer::Layer;
use crate::names::AppId;

pub use library::{LibraryError, PresetLibrary, PresetListing, PresetSummary, SkippedPreset};

/// A validated preset: the deployable content of one preset file.
#[derive(Debug, Clone, PartialEq)]
pub struct Preset {
    /// Preset identifier (`name`, else the file stem of the source).
    pub name: String,
    /// Human description, if any.
    pub description: Option<String>,
    /// Free-text category (`testing`, `processing`, ...), never validated.
    pub category: Option<String>,
    /// Nodes to deploy (empty for pool-only presets).
    pub nodes: Vec<PresetNode>,
    /// `topology.infrastructure`, kept as opaque data (unused, as upstream).
    pub infrastructure: Option<serde_json::Value>,
    /// Preset-level environment applied to every node.
    pub environment: BTreeMap<String, String>,
    /// Informational backend names (`docker-compose`, ...), never enforced.
    pub required_backends: Vec<String>,
    /// Processing pools (pools with an empty `poolType` are dropped with a warning).
    pub processing_pools: Vec<ProcessingPool>,
}

/// One `topology.nodes[]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresetNode {
    /// Node name; also the default app-id. Never empty in a validated preset.
    pub name: String,
    /// Layers enabled on the node (listed = on, unlisted = off); empty = not layer-mode.
    pub layers: Vec<Layer>,
    /// Services enabled individually and routed to this node, canonical catalog names,
    /// in file order without duplicates.
    pub services: Vec<String>,
    /// Requested replicas (default 1).
    pub replicas: u32,
    /// Node-specific environment (overrides the preset environment).
    pub environment: BTreeMap<String, String>,
    /// Carried through (default true).
    pub mesh_enabled: bool,
    /// Explicit app-id override, if any.
    pub app_id: Option<String>,
}

impl PresetNode {
    /// The app-id the node runs under: `appId` if set, else `name`
    /// (docs/COMPATIBILITY.md#names-and-app-ids).
    pub fn effective_app_id(&self) -> AppId {
        AppId::new(self.app_id.clone().unwrap_or_else(|| self.name.clone()))
    }
}

/// One `processingPools[]` entry (docs/COMPATIBILITY.md#preset-yaml,
/// docs/COMPATIBILITY.md#processing-pools-configuration).
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessingPool {
    /// Pool identifier, never empty.
    pub pool_type: String,
    /// Service enabled on workers (canonical when the catalog knows it; may be empty).
    pub plugin: String,
    /// Worker image override.
    pub image: Option<String>,
    /// Minimum workers (default 1); never above `max_instances`.
    pub min_instances: u32,
    /// Maximum workers (default 5).
    pub max_instances: u32,
    /// Utilisation (0..=1) above which to scale up (default 0.8).
    pub scale_up_threshold: f64,
    /// Utilisation (0..=1) below which to scale down (default 0.2), below `scale_up_threshold`.
    pub scale_down_threshold: f64,
    /// Idle timeout in minutes (default 5).
    pub idle_timeout_minutes: u32,
    /// Worker environment as written in the preset.
    pub environment: BTreeMap<String, String>,
}

impl ProcessingPool {
    /// The idle timeout as a [`Duration`].
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(u64::from(self.idle_timeout_minutes) * 60)
    }
}

/// A successfully parsed preset plus the warnings found on the way.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedPreset {
    /// The validated preset.
    pub preset: Preset,
    /// Non-fatal findings (unknown keys, unknown pool plugins, skipped pools).
    pub warnings: Vec<PresetWarning>,
}

impl Preset {
    /// Parses and validates preset YAML against the built-in catalog.
    ///
    /// `source` names the file in messages (and gives the default `name` as its stem).
    pub fn parse(source: &str, yaml: &str) -> Result<ParsedPreset, PresetErrors> {
        Self::parse_with_catalog(source, yaml, Catalog::builtin())
    }

    /// Like [`Preset::parse`], validating service and plugin names against `catalog`.
    /// Collects every problem; pure (no I/O).
    pub fn parse_with_catalog(
        source: &str,
        yaml: &str,
        catalog: &Catalog,
    ) -> Result<ParsedPreset, PresetErrors> {
        let raw = parse::parse_raw(source, yaml)?;
        let mut warnings = parse::unknown_key_warnings(source, yaml);
        let preset = validate::validate(source, raw, catalog, &mut warnings)?;
        Ok(ParsedPreset { preset, warnings })
    }
}

// === errors and warnings ===

/// Where in a preset file something was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    /// File name (or other source label) as passed to [`Preset::parse`].
    pub source: String,
    /// 1-based line; 0 when unknown.
    pub line: u32,
    /// 1-based column; 0 when unknown.
    pub column: u32,
    /// Field path such as `topology.nodes[0].services[2]`; empty for the whole document.
    pub field: String,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.source)?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        Ok(())
    }
}

/// One problem that makes a preset invalid.
#[derive(Debug, Clone, PartialEq)]
pub struct PresetError {
    /// File name (or other source label) as passed to [`Preset::parse`].
    pub source: String,
    /// 1-based line; 0 when unknown.
    pub line: u32,
    /// 1-based column; 0 when unknown.
    pub column: u32,
    /// Field path such as `topology.nodes[0].services[2]`; empty for document-level errors.
    pub field: String,
    /// What is wrong.
    pub kind: PresetErrorKind,
}

// Written by hand: thiserror would take the `source` field for the error's cause.
impl fmt::Display for PresetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pos = Position {
            source: self.source.clone(),
            line: self.line,
            column: self.column,
            field: self.field.clone(),
        };
        write!(f, "{pos}: {}", self.kind)
    }
}

impl std::error::Error for PresetError {}

impl PresetError {
    pub(crate) fn at(pos: Position, kind: PresetErrorKind) -> Self {
        PresetError {
            source: pos.source,
            line: pos.line,
            column: pos.column,
            field: pos.field,
            kind,
        }
    }
}

/// The kinds of preset errors.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PresetErrorKind {
    /// The text is not YAML of the preset shape (syntax or type error); parser message.
    #[error("{0}")]
    Yaml(String),
    /// The file holds no document.
    #[error("preset is empty")]
    Empty,
    /// A node lists a service the catalog does not know.
    #[error("{0}")]
    UnknownService(UnknownService),
    /// A node lists a layer name that is not one of L0..L5.
    #[error("unknown layer `{name}`; valid layers: {}", valid_layers())]
    UnknownLayer {
        /// The name as written.
        name: String,
    },
    /// A node has no (or an empty) `name`.
    #[error("node has no name")]
    MissingNodeName,
    /// Two nodes share a name.
    #[error("duplicate node name `{name}` (first used by topology.nodes[{first_index}])")]
    DuplicateNodeName {
        /// The repeated name.
        name: String,
        /// Index of the node that used it first.
        first_index: usize,
    },
    /// Two nodes share an effective app-id (`appId`, else `name`).
    #[error("duplicate app-id `{app_id}` (also used by node `{first_node}`)")]
    DuplicateAppId {
        /// The repeated app-id.
        app_id: String,
        /// Name of the node that used it first.
        first_node: String,
    },
    /// The same service is listed in the `services` of two nodes.
    #[error("service `{service}` is already routed to node `{first_node}`")]
    ServiceRoutedTwice {
        /// Canonical service name.
        service: String,
        /// The node that lists it first.
        first_node: String,
    },
    /// `minInstances` greater than `maxInstances`.
    #[error("minInstances ({min}) is greater than maxInstances ({max})")]
    MinAboveMax {
        /// The minimum.
        min: u32,
        /// The maximum.
        max: u32,
    },
    /// A scale threshold outside `0..=1`.
    #[error("threshold {value} is outside 0..=1")]
    ThresholdOutOfRange {
        /// The value as parsed.
        value: f64,
    },
    /// `scaleDownThreshold >= scaleUpThreshold`.
    #[error("scaleDownThreshold ({down}) must be below scaleUpThreshold ({up})")]
    ThresholdsInverted {
        /// Scale-down threshold.
        down: f64,
        /// Scale-up threshold.
        up: f64,
    },
    /// Two pools share a `poolType`.
    #[error("duplicate poolType `{0}`")]
    DuplicatePoolType(String),
    /// The preset `name` contains `/`, `\` or `..`.
    #[error("invalid preset name `{0}`: must not contain `/`, `\\` or `..`")]
    InvalidName(String),
}

fn valid_layers() -> String {
    Layer::ALL
        .iter()
        .map(|l| l.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Every problem found in one preset (never empty). Displays one line per error.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct PresetErrors(pub Vec<PresetError>);

impl PresetErrors {
    /// The errors, in file order.
    pub fn errors(&self) -> &[PresetError] {
        &self.0
    }
}

impl fmt::Display for PresetErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// A non-fatal finding in a preset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresetWarning {
    /// Where it was found.
    pub position: Position,
    /// What was found.
    pub kind: PresetWarningKind,
}

impl fmt::Display for PresetWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: warning: {}", self.position, self.kind)
    }
}

/// The kinds of preset warnings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PresetWarningKind {
    /// A key the format does not define; it is ignored (as upstream does).
    #[error("unknown key `{key}` is ignored{}", suggestion_text(.suggestion))]
    UnknownKey {
        /// The key as written.
        key: String,
        /// A known key it probably meant.
        suggestion: Option<String>,
    },
    /// A pool `plugin` the catalog does not know (third-party plugins exist).
    #[error("pool plugin `{}` is not in the service catalog{}", .0.name, suggestion_text(&.0.suggestions.first().cloned()))]
    UnknownPlugin(UnknownService),
    /// A pool without `poolType`; it is skipped (as upstream does).
    #[error("pool has no poolType and is skipped")]
    EmptyPoolType,
}

fn suggestion_text(s: &Option<String>) -> String {
    match s {
        Some(s) => format!(" (did you mean `{s}`?)"),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests;

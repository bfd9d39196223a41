//! The service catalog: every Bannou plugin with its layer, env names and dependencies.
//!
//! The built-in catalog is compiled into the binary from `data/service-catalog.yaml`
//! ([`Catalog::builtin`]); [`Catalog::from_yaml`] loads another one (tests, third-party
//! plugin sets). Lookups by name are case-insensitive and unknown names produce an
//! [`UnknownService`] error that lists near matches.

use std::collections::HashMap;

use rustc_hash::FxHashMap;
use std::sync::LazyLock;

use serde::Deserialize;

use crate::layer::Layer;
use crate::names::service_enable_flag;

/// The YAML the built-in catalog is built from.
pub const BUILTIN_CATALOG_YAML: &str = include_str!("../data/service-catalog.yaml");

static BUILTIN: LazyLock<Catalog> = LazyLock::new(|| {
    // The data file is part of the source tree and covered by a unit test, so a
    // failure here is a build defect rather than a runtime condition.
    Catalog::from_yaml(BUILTIN_CATALOG_YAML).expect("built-in service catalog must parse")
});

/// One plugin/service of the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceDef {
    /// Canonical (lower-case) name as used in presets, routing tables and heartbeats.
    pub name: String,
    /// Hierarchy layer.
    pub layer: Layer,
    /// Per-service override env var (`ACCOUNT_SERVICE_ENABLED`).
    pub enable_flag: String,
    /// Config prefix forwarded from the orchestrator's environment (`ACCOUNT_`).
    pub env_prefix: String,
    /// L0 plugins that can never be disabled (state, messaging, mesh).
    pub required: bool,
    /// False for state/messaging/mesh: never placed in routing tables
    /// (docs/COMPATIBILITY.md#infrastructure-services).
    pub routable: bool,
    /// Whether upstream ships code for it (false = design-doc only).
    pub implemented: bool,
    /// Every declared dependency, hard and soft.
    pub depends_on: Vec<String>,
    /// The dependencies that must be hosted somewhere for this service to start: those in
    /// layers this service's layer may depend on and not marked soft-only
    /// (docs/COMPATIBILITY.md#layer-rules).
    pub hard_dependencies: Vec<String>,
    /// Services whose generated client the plugin references (code-observed).
    pub client_dependencies: Vec<String>,
}

/// Dependency rules of one layer, from the catalog's `layers` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerRule {
    /// The layer.
    pub layer: Layer,
    /// Layers its services may depend on.
    pub may_depend_on: Vec<Layer>,
    /// Of those, the layers that only ever count as soft dependencies.
    pub soft_only: Vec<Layer>,
}

/// A service catalog. Cheap to share by reference; the built-in one is `'static`.
#[derive(Debug, Clone)]
pub struct Catalog {
    services: Vec<ServiceDef>,
    // Fx: the planner looks names up tens of thousands of times per plan.
    by_lower_name: FxHashMap<String, usize>,
    rules: Vec<LayerRule>,
}

/// A service name the catalog does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown service `{name}`{}", suggestion_text(.suggestions))]
pub struct UnknownService {
    /// The name as given.
    pub name: String,
    /// Near matches, best first (may be empty).
    pub suggestions: Vec<String>,
}

fn suggestion_text(s: &[String]) -> String {
    if s.is_empty() {
        String::new()
    } else {
        format!(
            " (did you mean {}?)",
            s.iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

/// Why a catalog document was rejected.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The YAML did not parse into the catalog shape.
    #[error("service catalog is not valid YAML for the catalog format: {0}")]
    Yaml(#[from] serde_saphyr::Error),
    /// A layer id other than L0..L5.
    #[error("service catalog: unknown layer id `{id}` (on `{owner}`)")]
    UnknownLayer {
        /// The bad id.
        id: String,
        /// Service or layer entry that used it.
        owner: String,
    },
    /// The same service twice.
    #[error("service catalog: service `{0}` is listed twice")]
    Duplicate(String),
}

#[derive(Deserialize)]
struct RawCatalog {
    layers: Vec<RawLayer>,
    services: Vec<RawService>,
}

#[derive(Deserialize)]
struct RawLayer {
    id: String,
    #[serde(default)]
    may_depend_on: Vec<String>,
    #[serde(default)]
    soft_only: Vec<String>,
}

#[derive(Deserialize)]
struct RawService {
    name: String,
    layer: Option<String>,
    enable_flag: Option<String>,
    env_prefix: Option<String>,
    #[serde(default)]
    required: bool,
    routable: Option<bool>,
    #[serde(default = "yes")]
    implemented: bool,
    #[serde(default)]
    depends_on: Vec<String>,
    #[serde(default)]
    client_dependencies: Vec<String>,
}

fn yes() -> bool {
    true
}

impl Catalog {
    /// The catalog compiled into this binary (77 services).
    pub fn builtin() -> &'static Catalog {
        &BUILTIN
    }

    /// Builds a catalog from YAML in the format of `data/service-catalog.yaml`.
    ///
    /// A service without a layer is placed in L4 (upstream's default for undeclared
    /// plugins); missing env names are derived from the service name.
    pub fn from_yaml(yaml: &str) -> Result<Catalog, CatalogError> {
        let raw: RawCatalog = serde_saphyr::from_str(yaml)?;
        let layer = |id: &str, owner: &str| {
            Layer::from_id(id).ok_or_else(|| CatalogError::UnknownLayer {
                id: id.to_owned(),
                owner: owner.to_owned(),
            })
        };
        let mut rules = Vec::new();
        for l in &raw.layers {
            let this = layer(&l.id, &l.id)?;
            rules.push(LayerRule {
                layer: this,
                may_depend_on: l
                    .may_depend_on
                    .iter()
                    .map(|d| layer(d, &l.id))
                    .collect::<Result<_, _>>()?,
                soft_only: l
                    .soft_only
                    .iter()
                    .map(|d| layer(d, &l.id))
                    .collect::<Result<_, _>>()?,
            });
        }

        let mut services = Vec::with_capacity(raw.services.len());
        for s in raw.services {
            let name = s.name.to_ascii_lowercase();
            let lay = match &s.layer {
                Some(id) => layer(id, &name)?,
                None => Layer::GameFeatures,
            };
            let upper = crate::names::env_service_name(&name);
            services.push(ServiceDef {
                enable_flag: s.enable_flag.unwrap_or_else(|| service_enable_flag(&name)),
                env_prefix: s.env_prefix.unwrap_or_else(|| format!("{upper}_")),
                required: s.required,
                routable: s.routable.unwrap_or(true),
                implemented: s.implemented,
                depends_on: s
                    .depends_on
                    .iter()
                    .map(|d| d.to_ascii_lowercase())
                    .collect(),
                hard_dependencies: Vec::new(),
                client_dependencies: s
                    .client_dependencies
                    .iter()
                    .map(|d| d.to_ascii_lowercase())
                    .collect(),
                layer: lay,
                name,
            });
        }
        services.sort_by(|a, b| a.name.cmp(&b.name));

        let mut by_lower_name =
            FxHashMap::with_capacity_and_hasher(services.len(), Default::default());
        for (i, s) in services.iter().enumerate() {
            if by_lower_name.insert(s.name.clone(), i).is_some() {
                return Err(CatalogError::Duplicate(s.name.clone()));
            }
        }

        // Hard dependencies: a dependency in a layer the service may use, not soft-only.
        // Dependencies on names the catalog does not know are kept in `depends_on` only.
        let layer_of: HashMap<String, Layer> =
            services.iter().map(|s| (s.name.clone(), s.layer)).collect();
        for s in &mut services {
            let rule = rules.iter().find(|r| r.layer == s.layer);
            s.hard_dependencies = s
                .depends_on
                .iter()
                .filter(|d| match (layer_of.get(*d), rule) {
                    (Some(dl), Some(r)) => {
                        r.may_depend_on.contains(dl) && !r.soft_only.contains(dl)
                    }
                    (Some(dl), None) => *dl <= s.layer,
                    (None, _) => false,
                })
                .cloned()
                .collect();
        }

        Ok(Catalog {
            services,
            by_lower_name,
            rules,
        })
    }

    /// Every service, sorted by name.
    pub fn services(&self) -> &[ServiceDef] {
        &self.services
    }

    /// Layer rules as declared in the catalog.
    pub fn layer_rules(&self) -> &[LayerRule] {
        &self.rules
    }

    /// Looks a service up by name, case-insensitively.
    pub fn get(&self, name: &str) -> Result<&ServiceDef, UnknownService> {
        self.find(name).ok_or_else(|| UnknownService {
            name: name.to_owned(),
            suggestions: self.near_matches(name),
        })
    }

    /// Like [`Catalog::get`] without the error.
    pub fn find(&self, name: &str) -> Option<&ServiceDef> {
        let i = match self.by_lower_name.get(name) {
            Some(i) => Some(*i),
            None => self
                .by_lower_name
                .get(&name.trim().to_ascii_lowercase())
                .copied(),
        }?;
        Some(&self.services[i])
    }

    /// The index of a service in [`Catalog::services`] (stable for this catalog).
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.find(name).map(|s| self.by_lower_name[&s.name])
    }

    /// Services of one layer, sorted by name.
    pub fn in_layer(&self, layer: Layer) -> impl Iterator<Item = &ServiceDef> {
        self.services.iter().filter(move |s| s.layer == layer)
    }

    /// Up to three known names close to `name`, best first.
    pub fn near_matches(&self, name: &str) -> Vec<String> {
        let lower = name.trim().to_ascii_lowercase();
        let mut scored: Vec<(f64, &str)> = self
            .services
            .iter()
            .map(|s| {
                let mut score = strsim::jaro_winkler(&lower, &s.name);
                if !lower.is_empty() && (s.name.starts_with(&lower) || lower.starts_with(&s.name)) {
                    score = score.max(0.9);
                }
                (score, s.name.as_str())
            })
            .filter(|(score, _)| *score >= 0.8)
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(b.1)));
        scored
            .into_iter()
            .take(3)
            .map(|(_, n)| n.to_owned())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_catalog_has_every_service_with_its_layer() {
        let c = Catalog::builtin();
        assert_eq!(c.services().len(), 77);
        assert_eq!(c.get("account").unwrap().layer, Layer::AppFoundation);
        assert_eq!(
            c.get("GAME-SESSION").unwrap().enable_flag,
            "GAME_SESSION_SERVICE_ENABLED"
        );
        assert_eq!(c.get("testing").unwrap().layer, Layer::GameFeatures);
        let infra: Vec<_> = c
            .in_layer(Layer::Infrastructure)
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(infra, ["mesh", "messaging", "state", "telemetry"]);
        assert!(!c.get("state").unwrap().routable && c.get("state").unwrap().required);
        assert!(c.get("telemetry").unwrap().routable && !c.get("telemetry").unwrap().required);
        assert_eq!(c.in_layer(Layer::AppFoundation).count(), 7);
    }

    #[test]
    fn hard_dependencies_follow_layer_rules() {
        let c = Catalog::builtin();
        // actor (L2) -> character (L2), resource (L1): hard; all L0 hard.
        let actor = c.get("actor").unwrap();
        assert!(actor.hard_dependencies.contains(&"character".to_owned()));
        assert!(actor.hard_dependencies.contains(&"resource".to_owned()));
        // voice (L3) -> connect (L1) hard; L3 -> L3 only soft.
        let voice = c.get("voice").unwrap();
        assert!(voice.hard_dependencies.contains(&"connect".to_owned()));
        // analytics (L4) -> game-service (L2) hard.
        assert!(
            c.get("analytics")
                .unwrap()
                .hard_dependencies
                .contains(&"game-service".to_owned())
        );
        // No hard dependency ever points to a higher layer.
        for s in c.services() {
            for d in &s.hard_dependencies {
                assert!(c.get(d).unwrap().layer <= s.layer, "{} -> {d}", s.name);
            }
        }
    }

    #[test]
    fn unknown_names_list_near_matches() {
        let err = Catalog::builtin().get("acount").unwrap_err();
        assert_eq!(err.suggestions.first().map(String::as_str), Some("account"));
        assert!(err.to_string().contains("did you mean `account`"), "{err}");
        let err = Catalog::builtin().get("zzzzzz").unwrap_err();
        assert!(err.suggestions.is_empty());
        assert_eq!(err.to_string(), "unknown service `zzzzzz`");
    }

    #[test]
    fn custom_catalog_defaults_and_errors() {
        let c = Catalog::from_yaml("layers: []\nservices:\n  - name: Foo-Bar\n").unwrap();
        let s = c.get("foo-bar").unwrap();
        assert_eq!(
            (s.layer, s.enable_flag.as_str(), s.env_prefix.as_str()),
            (Layer::GameFeatures, "FOO_BAR_SERVICE_ENABLED", "FOO_BAR_")
        );
        assert!(matches!(
            Catalog::from_yaml("layers: []\nservices:\n  - name: a\n    layer: L9\n"),
            Err(CatalogError::UnknownLayer { .. })
        ));
        assert!(matches!(
            Catalog::from_yaml("layers: []\nservices:\n  - name: a\n  - name: A\n"),
            Err(CatalogError::Duplicate(_))
        ));
    }
}

//! The service catalog: every Bannou plugin with its layer, env names and dependencies.
//!
//! The built-in catalog is compiled into the binary from `data/catalog.yaml`, our own
//! compact format described in that file's header ([`Catalog::builtin`]);
//! [`Catalog::from_yaml`] loads another one in that format (tests, third-party plugin
//! sets). Lookups by name are case-insensitive and unknown names produce an
//! [`UnknownService`] error that lists near matches.

use std::collections::HashMap;

use rustc_hash::FxHashMap;
use std::sync::LazyLock;

use serde::Deserialize;

use crate::layer::Layer;
use crate::names::service_enable_flag;

/// The YAML the built-in catalog is built from.
pub const BUILTIN_CATALOG_YAML: &str = include_str!("../data/catalog.yaml");

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
    /// A layer that is neither an id `L0`..`L5` nor a layer name.
    #[error("service catalog: unknown layer `{id}` (on `{owner}`)")]
    UnknownLayer {
        /// The layer as written.
        id: String,
        /// Service or layer entry that used it.
        owner: String,
    },
    /// The same service twice.
    #[error("service catalog: service `{0}` is listed twice")]
    Duplicate(String),
}

// The document shape of `data/catalog.yaml`. Unknown keys are errors, so a misspelt
// flag (or a file in another catalog format) is refused instead of silently defaulted.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCatalog {
    layers: Vec<RawLayer>,
    services: Vec<RawService>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLayer {
    layer: String,
    #[serde(default)]
    uses: Vec<String>,
    #[serde(default)]
    soft: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
    name: String,
    layer: Option<String>,
    enable_flag: Option<String>,
    env_prefix: Option<String>,
    #[serde(default)]
    always_on: bool,
    #[serde(default = "yes")]
    routed: bool,
    #[serde(default)]
    design_only: bool,
    #[serde(default)]
    deps: Vec<String>,
    #[serde(default)]
    clients: Vec<String>,
}

fn yes() -> bool {
    true
}

/// A layer written as its id (`L1`) or its name in any spelling presets accept
/// (`AppFoundation`, `APP_FOUNDATION`).
fn parse_layer(text: &str) -> Option<Layer> {
    Layer::from_id(text).or_else(|| text.parse().ok())
}

impl Catalog {
    /// The catalog compiled into this binary (77 services).
    pub fn builtin() -> &'static Catalog {
        &BUILTIN
    }

    /// Builds a catalog from YAML in the format of `data/catalog.yaml`:
    ///
    /// ```yaml
    /// layers:
    ///   - {layer: AppFoundation, uses: [Infrastructure, AppFoundation]}
    ///   - {layer: AppFeatures, uses: [Infrastructure, AppFoundation, AppFeatures], soft: [AppFeatures]}
    /// services:
    ///   - {name: state, layer: Infrastructure, always_on: true, routed: false, deps: [messaging]}
    ///   - {name: account, layer: AppFoundation, deps: [messaging, state], clients: []}
    ///   - {name: my-plugin, layer: L5, design_only: true, env_prefix: MYPLUGIN_}
    /// ```
    ///
    /// Layers are written as ids (`L0`..`L5`) or names. Per service: `always_on` (never
    /// disabled, default false), `routed` (default true), `design_only` (no upstream code,
    /// default false), `deps` (hard and soft; which are hard follows from the layer rules),
    /// `clients`. A service without a layer is placed in L4 (upstream's default for
    /// undeclared plugins); `enable_flag` and `env_prefix` default to
    /// [`service_enable_flag`] and `NAME_` ([`crate::names::env_service_name`]). Unknown
    /// keys are rejected.
    pub fn from_yaml(yaml: &str) -> Result<Catalog, CatalogError> {
        let raw: RawCatalog = serde_saphyr::from_str(yaml)?;
        let layer = |id: &str, owner: &str| {
            parse_layer(id).ok_or_else(|| CatalogError::UnknownLayer {
                id: id.to_owned(),
                owner: owner.to_owned(),
            })
        };
        let mut rules = Vec::new();
        for l in &raw.layers {
            let this = layer(&l.layer, &l.layer)?;
            rules.push(LayerRule {
                layer: this,
                may_depend_on: l
                    .uses
                    .iter()
                    .map(|d| layer(d, &l.layer))
                    .collect::<Result<_, _>>()?,
                soft_only: l
                    .soft
                    .iter()
                    .map(|d| layer(d, &l.layer))
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
                required: s.always_on,
                routable: s.routed,
                implemented: !s.design_only,
                depends_on: s.deps.iter().map(|d| d.to_ascii_lowercase()).collect(),
                hard_dependencies: Vec::new(),
                client_dependencies: s.clients.iter().map(|d| d.to_ascii_lowercase()).collect(),
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
    use std::collections::BTreeSet;

    use super::*;
    use crate::testkit::require::upstream_data;

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

    #[test]
    fn custom_catalog_reads_every_field_of_the_format() {
        let yaml = "\
layers:
  - {layer: L0}
  - {layer: app foundation, uses: [Infrastructure, L1]}
  - {layer: AppFeatures, uses: [L0, L1, L3], soft: [AppFeatures]}
services:
  - {name: st, layer: Infrastructure, always_on: true, routed: false, deps: [st]}
  - {name: base, layer: L1, deps: [st, feat, nowhere]}
  - {name: feat, layer: AppFeatures, design_only: true, deps: [base, other, st], clients: [Base]}
  - {name: other, layer: AppFeatures, enable_flag: OTHER_ON, env_prefix: OTH_}
";
        let c = Catalog::from_yaml(yaml).unwrap();
        let st = c.get("st").unwrap();
        assert_eq!(
            (st.layer, st.required, st.routable, st.implemented),
            (Layer::Infrastructure, true, false, true)
        );
        let base = c.get("base").unwrap();
        assert_eq!(base.layer, Layer::AppFoundation);
        assert_eq!(base.depends_on, ["st", "feat", "nowhere"]);
        // L1 may not use L3, and `nowhere` is unknown: only `st` is hard.
        assert_eq!(base.hard_dependencies, ["st"]);
        let feat = c.get("feat").unwrap();
        assert_eq!(
            (feat.required, feat.routable, feat.implemented),
            (false, true, false)
        );
        // L3 -> L3 is soft only.
        assert_eq!(feat.hard_dependencies, ["base", "st"]);
        assert_eq!(feat.client_dependencies, ["base"]);
        let other = c.get("other").unwrap();
        assert_eq!(
            (other.enable_flag.as_str(), other.env_prefix.as_str()),
            ("OTHER_ON", "OTH_")
        );
        assert_eq!(
            c.layer_rules()[2],
            LayerRule {
                layer: Layer::AppFeatures,
                may_depend_on: vec![
                    Layer::Infrastructure,
                    Layer::AppFoundation,
                    Layer::AppFeatures
                ],
                soft_only: vec![Layer::AppFeatures],
            }
        );
    }

    #[test]
    fn unknown_keys_are_refused() {
        // A misspelt flag, and a service in upstream's field names.
        for yaml in [
            "layers: []\nservices:\n  - {name: a, routable: false}\n",
            "layers: []\nservices:\n  - {name: a, depends_on: [b]}\n",
            "layers:\n  - {id: L1, may_depend_on: [L0]}\nservices: []\n",
        ] {
            assert!(
                matches!(Catalog::from_yaml(yaml), Err(CatalogError::Yaml(_))),
                "{yaml}"
            );
        }
    }

    #[test]
    fn builtin_services_follow_the_naming_rule() {
        for s in Catalog::builtin().services() {
            let upper = crate::names::env_service_name(&s.name);
            assert_eq!(s.enable_flag, service_enable_flag(&s.name));
            assert_eq!(s.env_prefix, format!("{upper}_"));
        }
        assert!(!Catalog::builtin().get("director").unwrap().implemented);
    }

    /// Upstream's catalog format, as far as the comparison below reads it.
    #[derive(Deserialize)]
    struct UpstreamCatalog {
        layers: Vec<UpstreamLayer>,
        services: Vec<UpstreamService>,
    }

    #[derive(Deserialize)]
    struct UpstreamLayer {
        id: String,
        name: String,
        ordinal: u16,
        enable_flag: Option<String>,
        #[serde(default)]
        may_depend_on: Vec<String>,
        #[serde(default)]
        soft_only: Vec<String>,
    }

    #[derive(Deserialize)]
    struct UpstreamService {
        name: String,
        layer: String,
        layer_name: String,
        enable_flag: String,
        env_prefix: String,
        #[serde(default)]
        required: bool,
        #[serde(default = "yes")]
        routable: bool,
        implemented: bool,
        #[serde(default)]
        depends_on: Vec<String>,
        #[serde(default)]
        client_dependencies: Vec<String>,
    }

    /// The facts both catalogs must agree on for one service.
    #[derive(Debug, PartialEq)]
    struct Facts {
        layer: Layer,
        enable_flag: String,
        env_prefix: String,
        required: bool,
        routable: bool,
        implemented: bool,
        depends_on: BTreeSet<String>,
        hard_dependencies: BTreeSet<String>,
        client_dependencies: BTreeSet<String>,
    }

    fn upstream_layer(id: &str) -> Layer {
        Layer::from_id(id).unwrap_or_else(|| panic!("upstream layer id `{id}`"))
    }

    /// The extra check against upstream's own catalog (`BANNOU_UPSTREAM_DATA`): our
    /// built-in catalog states the same facts.
    #[test]
    fn builtin_catalog_matches_upstream_catalog() {
        let test = "builtin_catalog_matches_upstream_catalog";
        let Some(dir) = upstream_data(test) else {
            return;
        };
        let path = dir.join("spec/service-catalog.yaml");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{test}: cannot read {}: {e}", path.display()));
        let up: UpstreamCatalog = serde_saphyr::from_str(&text)
            .unwrap_or_else(|e| panic!("{test}: {} does not parse: {e}", path.display()));
        let ours = Catalog::builtin();

        // Layers: names, ordinals and flags (kept in `Layer`), and the dependency rules.
        let rules = |r: &LayerRule| {
            (
                r.layer,
                r.may_depend_on.iter().copied().collect::<BTreeSet<_>>(),
                r.soft_only.iter().copied().collect::<BTreeSet<_>>(),
            )
        };
        let mut up_rules = Vec::new();
        for l in &up.layers {
            let layer = upstream_layer(&l.id);
            assert_eq!(
                (layer.as_str(), layer.ordinal(), layer.enable_flag()),
                (l.name.as_str(), l.ordinal, l.enable_flag.as_deref()),
                "layer {}",
                l.id
            );
            up_rules.push(rules(&LayerRule {
                layer,
                may_depend_on: l.may_depend_on.iter().map(|d| upstream_layer(d)).collect(),
                soft_only: l.soft_only.iter().map(|d| upstream_layer(d)).collect(),
            }));
        }
        let our_rules: Vec<_> = ours.layer_rules().iter().map(rules).collect();
        assert_eq!(our_rules, up_rules);

        // Services: the same names, then the same facts for each. Hard dependencies come
        // from an upstream-built catalog so the layer rules are applied the same way.
        let up_names: BTreeSet<_> = up.services.iter().map(|s| s.name.as_str()).collect();
        let our_names: BTreeSet<_> = ours.services().iter().map(|s| s.name.as_str()).collect();
        let missing: Vec<_> = up_names.difference(&our_names).collect();
        let extra: Vec<_> = our_names.difference(&up_names).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "missing {missing:?}, not upstream {extra:?}"
        );
        assert_eq!(
            ours.services().len(),
            up.services.len(),
            "duplicates upstream"
        );
        let set = |v: &[String]| v.iter().cloned().collect::<BTreeSet<_>>();
        let facts = |s: &ServiceDef| Facts {
            layer: s.layer,
            enable_flag: s.enable_flag.clone(),
            env_prefix: s.env_prefix.clone(),
            required: s.required,
            routable: s.routable,
            implemented: s.implemented,
            depends_on: set(&s.depends_on),
            hard_dependencies: set(&s.hard_dependencies),
            client_dependencies: set(&s.client_dependencies),
        };
        let layer_of: HashMap<&str, Layer> = up
            .services
            .iter()
            .map(|s| (s.name.as_str(), upstream_layer(&s.layer)))
            .collect();
        for u in &up.services {
            let layer = upstream_layer(&u.layer);
            assert_eq!(layer.as_str(), u.layer_name, "{}", u.name);
            let rule = up_rules.iter().find(|r| r.0 == layer).unwrap();
            let hard = u
                .depends_on
                .iter()
                .filter(|d| {
                    layer_of
                        .get(d.as_str())
                        .is_some_and(|dl| rule.1.contains(dl) && !rule.2.contains(dl))
                })
                .cloned()
                .collect();
            let want = Facts {
                layer,
                enable_flag: u.enable_flag.clone(),
                env_prefix: u.env_prefix.clone(),
                required: u.required,
                routable: u.routable,
                implemented: u.implemented,
                depends_on: set(&u.depends_on),
                hard_dependencies: hard,
                client_dependencies: set(&u.client_dependencies),
            };
            assert_eq!(facts(ours.get(&u.name).unwrap()), want, "{}", u.name);
        }
    }
}

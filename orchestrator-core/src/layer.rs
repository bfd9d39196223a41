//! The service hierarchy layers L0..L5 (docs/COMPATIBILITY.md#layers) and their env flags.

use crate::lenient_enum;

lenient_enum! {
    /// A layer of the service hierarchy. Ordered from the bottom (Infrastructure) up.
    ///
    /// Parsing accepts every spelling presets use (`AppFoundation`, `APP_FOUNDATION`,
    /// `app foundation`, any case).
    pub enum Layer {
        /// L0: state, messaging, mesh (always on), telemetry.
        Infrastructure => "Infrastructure",
        /// L1: account, auth, connect, ...; required in every deployment.
        AppFoundation => "AppFoundation",
        /// L2: game-service, realm, character, ...; required whenever L4 runs.
        GameFoundation => "GameFoundation",
        /// L3: asset, orchestrator, documentation, ...
        AppFeatures => "AppFeatures",
        /// L4: analytics, behavior, matchmaking, ... (the default for undeclared plugins).
        GameFeatures => "GameFeatures",
        /// L5: third-party plugins.
        Extensions => "Extensions",
    }
}

impl Layer {
    /// The layers a node can switch on and off with `BANNOU_ENABLE_*` (all but L0).
    pub const TOGGLEABLE: [Layer; 5] = [
        Layer::AppFoundation,
        Layer::GameFoundation,
        Layer::AppFeatures,
        Layer::GameFeatures,
        Layer::Extensions,
    ];

    /// `L0` .. `L5`.
    pub const fn id(self) -> &'static str {
        match self {
            Layer::Infrastructure => "L0",
            Layer::AppFoundation => "L1",
            Layer::GameFoundation => "L2",
            Layer::AppFeatures => "L3",
            Layer::GameFeatures => "L4",
            Layer::Extensions => "L5",
        }
    }

    /// Parses `L0` .. `L5` (the catalog's ids).
    pub fn from_id(id: &str) -> Option<Layer> {
        Layer::ALL
            .iter()
            .copied()
            .find(|l| l.id().eq_ignore_ascii_case(id))
    }

    /// Upstream's numeric ordinal (0, 100, ..., 500).
    pub const fn ordinal(self) -> u16 {
        (self as u16) * 100
    }

    /// The env suffix (`APP_FOUNDATION`), `None` for L0 which is always on.
    pub const fn env_suffix(self) -> Option<&'static str> {
        match self {
            Layer::Infrastructure => None,
            Layer::AppFoundation => Some("APP_FOUNDATION"),
            Layer::GameFoundation => Some("GAME_FOUNDATION"),
            Layer::AppFeatures => Some("APP_FEATURES"),
            Layer::GameFeatures => Some("GAME_FEATURES"),
            Layer::Extensions => Some("EXTENSIONS"),
        }
    }

    /// The host flag that switches the layer (`BANNOU_ENABLE_APP_FOUNDATION`), `None` for L0.
    pub const fn enable_flag(self) -> Option<&'static str> {
        match self {
            Layer::Infrastructure => None,
            Layer::AppFoundation => Some("BANNOU_ENABLE_APP_FOUNDATION"),
            Layer::GameFoundation => Some("BANNOU_ENABLE_GAME_FOUNDATION"),
            Layer::AppFeatures => Some("BANNOU_ENABLE_APP_FEATURES"),
            Layer::GameFeatures => Some("BANNOU_ENABLE_GAME_FEATURES"),
            Layer::Extensions => Some("BANNOU_ENABLE_EXTENSIONS"),
        }
    }

    /// Layers this layer needs enabled on the same node to make sense
    /// (docs/COMPATIBILITY.md#layer-rules, the documented coupling): L2 and L3 need L1; L4
    /// needs L1 and L2; L5 needs L1.
    pub const fn requires(self) -> &'static [Layer] {
        match self {
            Layer::Infrastructure | Layer::AppFoundation => &[],
            Layer::GameFoundation | Layer::AppFeatures | Layer::Extensions => {
                &[Layer::AppFoundation]
            }
            Layer::GameFeatures => &[Layer::AppFoundation, Layer::GameFoundation],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preset_spellings_parse() {
        for s in [
            "AppFoundation",
            "APP_FOUNDATION",
            "app_foundation",
            "app foundation",
            "appfoundation",
        ] {
            assert_eq!(s.parse::<Layer>().unwrap(), Layer::AppFoundation, "{s}");
        }
        assert!(
            "L1".parse::<Layer>().is_err(),
            "upstream has no L-id aliases in presets"
        );
        assert_eq!(Layer::from_id("l4"), Some(Layer::GameFeatures));
    }

    #[test]
    fn ordinals_and_flags() {
        assert_eq!(Layer::GameFeatures.ordinal(), 400);
        assert_eq!(Layer::Infrastructure.enable_flag(), None);
        assert_eq!(
            Layer::Extensions.enable_flag(),
            Some("BANNOU_ENABLE_EXTENSIONS")
        );
        assert!(Layer::AppFoundation < Layer::GameFeatures);
    }
}

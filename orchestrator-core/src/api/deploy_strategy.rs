//! How a deploy replaces the nodes it changes (ours: D62 (docs/DECISIONS.md#d62)).
//!
//! `replace`, the default and upstream's only behaviour, redeploys a changed node under
//! its own app-id wave by wave; `blue-green` brings the changed nodes up under new
//! app-ids beside the old ones, switches every affected route in one mappings version and
//! stops the old nodes after the routing acknowledgements; `canary` (D64
//! (docs/DECISIONS.md#d64)) brings them up the same way and sends a share of the calls to
//! them until it is promoted or aborted. Old clients omit the field. Code matches the
//! variants explicitly.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// `DeployRequest.strategy` (**Ours**, additive; default [`DeployStrategy::Replace`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeployStrategy {
    /// Changed nodes are redeployed in place, wave by wave (upstream's behaviour).
    #[default]
    Replace,
    /// Changed nodes come up under new app-ids beside the old ones; the routes switch
    /// once all are healthy; the old nodes stop after the acknowledgements.
    BlueGreen,
    /// Changed nodes come up beside the old ones as for blue-green; once healthy, a
    /// weighted split sends `canaryWeight` percent of the moved services' calls to them
    /// until `POST /orchestrator/promote` (the blue-green switch) or
    /// `POST /orchestrator/abort` (D64 (docs/DECISIONS.md#d64)).
    Canary,
}

impl DeployStrategy {
    /// The wire spelling (`replace`, `blue-green`, `canary`).
    pub const fn as_str(self) -> &'static str {
        match self {
            DeployStrategy::Replace => "replace",
            DeployStrategy::BlueGreen => "blue-green",
            DeployStrategy::Canary => "canary",
        }
    }

    /// True for the default (the field is then left out of a request).
    pub fn is_replace(&self) -> bool {
        *self == DeployStrategy::Replace
    }
}

impl fmt::Display for DeployStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `DeployResponse.switchedRoutes` (**Ours**, additive): the one route switch of a
/// side-by-side deploy (blue-green), absent for `replace`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteSwitch {
    /// The mappings version that switched every affected route (absent when it could not
    /// be published).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mappings_version: Option<i64>,
    /// Old app-id -> new app-id of each node that came up beside its old version.
    pub replaced: BTreeMap<String, String>,
    /// The routes after the switch: service -> app-id (services routed away from the
    /// default).
    pub routes: BTreeMap<String, String>,
    /// Milliseconds from the switch to the last live consumer applying it (or to the
    /// acknowledgement timeout, D58 (docs/DECISIONS.md#d58)).
    pub ack_wait_ms: u64,
}

/// An unknown strategy name (the known ones are listed in the message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown deploy strategy `{0}` (expected `replace`, `blue-green` or `canary`)")]
pub struct UnknownStrategy(pub String);

impl FromStr for DeployStrategy {
    type Err = UnknownStrategy;

    /// The wire spelling, ASCII case ignored.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("replace") {
            Ok(DeployStrategy::Replace)
        } else if s.eq_ignore_ascii_case("blue-green") {
            Ok(DeployStrategy::BlueGreen)
        } else if s.eq_ignore_ascii_case("canary") {
            Ok(DeployStrategy::Canary)
        } else {
            Err(UnknownStrategy(s.to_owned()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn wire_spellings_are_kebab_case_and_parse_back() {
        for (strategy, text) in [
            (DeployStrategy::Replace, "replace"),
            (DeployStrategy::BlueGreen, "blue-green"),
            (DeployStrategy::Canary, "canary"),
        ] {
            assert_eq!(serde_json::to_value(strategy).unwrap(), json!(text));
            assert_eq!(
                serde_json::from_value::<DeployStrategy>(json!(text)).unwrap(),
                strategy
            );
            assert_eq!(text.parse::<DeployStrategy>().unwrap(), strategy);
            assert_eq!(strategy.to_string(), text);
        }
        assert_eq!(
            "Blue-Green".parse::<DeployStrategy>().unwrap(),
            DeployStrategy::BlueGreen
        );
        assert!(serde_json::from_value::<DeployStrategy>(json!("rolling")).is_err());
        assert!("rolling".parse::<DeployStrategy>().is_err());
    }
}

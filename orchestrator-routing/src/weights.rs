//! Weighted routes: the split of one service's calls between several app-ids, for canary
//! deploys (D63 (docs/DECISIONS.md#d63), docs/COMPATIBILITY.md#mappings-broadcast).
//!
//! A [`WeightedTargets`] is the whole split: each listed app-id receives `weight / total`
//! of the calls, an app-id not listed receives none. Invariants: at least one target, no
//! blank or repeated app-id (compared in any case), a positive total; targets sorted by
//! app-id so that equal splits compare equal whatever order they were given in.

use orchestrator_core::events::WeightedTarget;
use orchestrator_core::names::AppId;

/// Why a split was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WeightsError {
    /// No target at all.
    #[error("a weighted route needs at least one target")]
    Empty,
    /// A target's app-id is empty or whitespace.
    #[error("a weighted route names a blank app-id")]
    BlankAppId,
    /// The same app-id twice.
    #[error("app-id `{0}` appears twice in a weighted route")]
    Duplicate(String),
    /// Every weight is 0: no target could receive a call.
    #[error("the weights of a weighted route add up to 0")]
    ZeroTotal,
}

/// A validated split of a service's calls between app-ids (see the module invariants).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeightedTargets {
    targets: Box<[(AppId, u32)]>,
    total: u64,
}

impl WeightedTargets {
    /// A split from `(app-id, weight)` pairs (app-ids trimmed), or why it is refused.
    pub fn new<I>(targets: I) -> Result<Self, WeightsError>
    where
        I: IntoIterator<Item = (AppId, u32)>,
    {
        let mut list: Vec<(AppId, u32)> = Vec::new();
        for (app_id, weight) in targets {
            let trimmed = app_id.as_str().trim();
            if trimmed.is_empty() {
                return Err(WeightsError::BlankAppId);
            }
            if list.iter().any(|(a, _)| a.matches(trimmed)) {
                return Err(WeightsError::Duplicate(trimmed.to_owned()));
            }
            list.push((AppId::new(trimmed), weight));
        }
        if list.is_empty() {
            return Err(WeightsError::Empty);
        }
        let total: u64 = list.iter().map(|(_, w)| u64::from(*w)).sum();
        if total == 0 {
            return Err(WeightsError::ZeroTotal);
        }
        list.sort_by(|(a, _), (b, _)| a.cmp(b));
        Ok(WeightedTargets {
            targets: list.into_boxed_slice(),
            total,
        })
    }

    /// The targets and their weights, sorted by app-id.
    pub fn targets(&self) -> &[(AppId, u32)] {
        &self.targets
    }

    /// The sum of the weights (positive).
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The weight of `app_id` (any case); 0 when it is not a target.
    pub fn weight_of(&self, app_id: &AppId) -> u32 {
        self.targets
            .iter()
            .find(|(a, _)| a == app_id)
            .map_or(0, |(_, w)| *w)
    }

    /// True when `app_id` (any case) is one of the targets, whatever its weight.
    pub fn names(&self, app_id: &AppId) -> bool {
        self.targets.iter().any(|(a, _)| a == app_id)
    }

    /// The wire form (`weightedMappings` entries of the mappings broadcast).
    pub fn to_wire(&self) -> Vec<WeightedTarget> {
        self.targets
            .iter()
            .map(|(a, w)| WeightedTarget {
                app_id: a.as_str().to_owned(),
                weight: *w,
            })
            .collect()
    }

    /// A split from its wire form, or why it is refused.
    pub fn from_wire(targets: &[WeightedTarget]) -> Result<Self, WeightsError> {
        Self::new(
            targets
                .iter()
                .map(|t| (AppId::new(t.app_id.as_str()), t.weight)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(targets: &[(&str, u32)]) -> Result<WeightedTargets, WeightsError> {
        WeightedTargets::new(targets.iter().map(|(a, w)| (AppId::from(*a), *w)))
    }

    #[test]
    fn a_split_is_sorted_and_compares_by_content() {
        let a = split(&[("new", 10), (" old ", 90)]).unwrap();
        let b = split(&[("old", 90), ("new", 10)]).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.total(), 100);
        assert_eq!(a.targets()[0].0.as_str(), "new");
        assert_eq!(a.weight_of(&AppId::from("OLD")), 90);
        assert_eq!(a.weight_of(&AppId::from("other")), 0);
        assert!(a.names(&AppId::from("new")));
        assert_eq!(WeightedTargets::from_wire(&a.to_wire()).unwrap(), a);
    }

    #[test]
    fn invalid_splits_are_refused() {
        assert_eq!(split(&[]), Err(WeightsError::Empty));
        assert_eq!(split(&[("a", 1), (" ", 1)]), Err(WeightsError::BlankAppId));
        assert_eq!(
            split(&[("a", 1), ("A", 2)]),
            Err(WeightsError::Duplicate("A".to_owned()))
        );
        assert_eq!(split(&[("a", 0), ("b", 0)]), Err(WeightsError::ZeroTotal));
        assert!(split(&[("a", 0), ("b", 100)]).is_ok(), "0/100 is a split");
    }
}

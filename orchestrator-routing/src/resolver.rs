//! The mesh-side resolver every Bannou node runs: applies newer mappings snapshots and
//! answers `resolve(service)` lock-free (docs/COMPATIBILITY.md#mappings-consumers; kube-rs
//! style writer/reader split).
//!
//! The writer swaps a whole `Arc` table with compare-and-swap, so readers never block and
//! never see a half-applied table, and the applied version never decreases.
//!
//! A service with a weighted split (D63 (docs/DECISIONS.md#d63)) is resolved per call: the
//! table holds the split's cumulative weights, computed once when the snapshot is applied,
//! and each call draws a number below the total from `fastrand`'s thread-local generator
//! (no lock, no allocation) and takes the first target whose cumulative weight exceeds it.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use arc_swap::ArcSwap;
use orchestrator_core::events::ServiceHeartbeatEvent;
use orchestrator_core::names::CONTROL_PLANE_APP_ID;

use crate::mappings::MappingsSnapshot;
use crate::table::{is_infrastructure, is_orchestrator};
use crate::weights::WeightedTargets;

/// Heartbeat `metadata` key under which a node reports the mappings version it applied.
pub const ROUTING_VERSION_METADATA_KEY: &str = "routingVersion";

/// Where a call to a service goes, as the mesh sees it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Resolution {
    /// Infrastructure (`state`, `messaging`, `mesh`): handled by this node itself, never
    /// routed (docs/COMPATIBILITY.md#infrastructure-services). Callers use their own app-id
    /// or a local shortcut.
    Local,
    /// The app-id of the node that serves it. Cheap to clone (shared string).
    App(Arc<str>),
}

impl Resolution {
    /// The target app-id, with `own_app_id` standing in for [`Resolution::Local`].
    pub fn app_id_or<'a>(&'a self, own_app_id: &'a str) -> &'a str {
        match self {
            Resolution::Local => own_app_id,
            Resolution::App(a) => a,
        }
    }
}

impl fmt::Display for Resolution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Resolution::Local => f.write_str("(local)"),
            Resolution::App(a) => f.write_str(a),
        }
    }
}

/// Result of offering a snapshot to [`MappingsWriter::apply`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// The snapshot is now the table; `previous` was the version before (`None`: initial).
    Applied {
        /// Version replaced.
        previous: Option<i64>,
        /// Version now applied.
        version: i64,
    },
    /// Not strictly newer than the applied version; nothing changed.
    Stale {
        /// Version applied.
        current: i64,
        /// Version offered.
        offered: i64,
    },
}

/// Where one service goes in an applied table.
#[derive(Debug)]
enum Target {
    /// Every call to one app-id.
    One(Arc<str>),
    /// Calls split by weight.
    Split(Split),
}

/// A weighted split, ready to draw from: `cumulative[i]` is the sum of the weights of
/// `app_ids[..=i]`, the last one is the (positive) total. A target of weight 0 has the
/// same cumulative weight as the one before it and is never drawn.
#[derive(Debug)]
struct Split {
    app_ids: Box<[Arc<str>]>,
    cumulative: Box<[u64]>,
}

impl Split {
    fn new(weights: &WeightedTargets, intern: &mut impl FnMut(&str) -> Arc<str>) -> Self {
        let mut sum = 0u64;
        let (app_ids, cumulative): (Vec<Arc<str>>, Vec<u64>) = weights
            .targets()
            .iter()
            .map(|(app_id, weight)| {
                sum += u64::from(*weight);
                (intern(app_id.as_str()), sum)
            })
            .unzip();
        Split {
            app_ids: app_ids.into_boxed_slice(),
            cumulative: cumulative.into_boxed_slice(),
        }
    }

    /// The target for `draw`, a number below the total.
    fn pick(&self, draw: u64) -> &Arc<str> {
        let i = self.cumulative.partition_point(|&c| c <= draw);
        &self.app_ids[i.min(self.app_ids.len() - 1)]
    }

    /// The targets that receive calls (weight above 0), in app-id order.
    fn receiving(&self) -> impl Iterator<Item = &Arc<str>> {
        let mut before = 0;
        self.app_ids
            .iter()
            .zip(self.cumulative.iter())
            .filter_map(move |(app_id, &c)| {
                let weight = c - before;
                before = c;
                (weight > 0).then_some(app_id)
            })
    }

    /// A target drawn by weight.
    fn draw(&self) -> &Arc<str> {
        let total = self.cumulative.last().copied().unwrap_or(1);
        self.pick(fastrand::u64(..total))
    }
}

/// One immutable applied table, swapped as a whole.
#[derive(Debug)]
struct MeshTable {
    version: Option<i64>,
    routes: HashMap<Box<str>, Target>,
    default_app_id: Arc<str>,
    control_plane: Arc<str>,
}

impl MeshTable {
    fn initial() -> Self {
        let bannou: Arc<str> = Arc::from(CONTROL_PLANE_APP_ID);
        MeshTable {
            version: None,
            routes: HashMap::new(),
            default_app_id: bannou.clone(),
            control_plane: bannou,
        }
    }

    fn from_snapshot(s: &MappingsSnapshot, control_plane: Arc<str>) -> Self {
        // Values shared: a table where many services go to one node stores it once.
        let mut interned: HashMap<String, Arc<str>> = HashMap::new();
        let mut intern = |v: &str| {
            interned
                .entry(v.to_owned())
                .or_insert_with(|| Arc::from(v))
                .clone()
        };
        let routable = |k: &&String| !is_infrastructure(k) && !is_orchestrator(k);
        let mut routes: HashMap<Box<str>, Target> = s
            .mappings
            .iter()
            .filter(|(k, _)| routable(k))
            .map(|(k, v)| {
                let v = intern(v.as_str());
                (Box::from(k.to_ascii_lowercase()), Target::One(v))
            })
            .collect();
        for (k, weights) in s.weights.iter().filter(|(k, _)| routable(k)) {
            let split = Split::new(weights, &mut intern);
            routes.insert(Box::from(k.to_ascii_lowercase()), Target::Split(split));
        }
        MeshTable {
            version: Some(s.version),
            routes,
            default_app_id: Arc::from(s.default_app_id.as_str()),
            control_plane,
        }
    }

    fn resolve(&self, service: &str) -> Resolution {
        let service = service.trim();
        if is_infrastructure(service) {
            return Resolution::Local;
        }
        if is_orchestrator(service) {
            return Resolution::App(self.control_plane.clone());
        }
        let hit = if service.bytes().any(|b| b.is_ascii_uppercase()) {
            self.routes.get(service.to_ascii_lowercase().as_str())
        } else {
            self.routes.get(service)
        };
        let app_id = match hit {
            Some(Target::One(app_id)) => app_id,
            Some(Target::Split(split)) => split.draw(),
            None => &self.default_app_id,
        };
        Resolution::App(app_id.clone())
    }
}

/// Constructor of a resolver's two halves.
#[derive(Debug)]
pub struct MeshResolver;

impl MeshResolver {
    /// A new resolver with nothing applied (every service resolves to `bannou`, the
    /// orchestrator to the control plane, infrastructure locally): its write side for the
    /// mappings subscription and its read side for request paths.
    // The halves are the product; there is no resolver value to return.
    #[allow(clippy::new_ret_no_self)]
    pub fn new() -> (MappingsWriter, MeshReader) {
        let shared = Arc::new(ArcSwap::from_pointee(MeshTable::initial()));
        (
            MappingsWriter {
                shared: shared.clone(),
            },
            MeshReader { shared },
        )
    }
}

/// Write side: applies snapshots from the mappings subscription.
///
/// Clonable so that overlapping subscriptions (a reconnect, two publishers) may apply
/// concurrently: a compare-and-swap loop keeps the applied version strictly increasing.
#[derive(Debug, Clone)]
pub struct MappingsWriter {
    shared: Arc<ArcSwap<MeshTable>>,
}

impl MappingsWriter {
    /// Applies `snapshot` if its version is strictly greater than the applied one (any
    /// version is accepted first), replacing the whole table at once.
    pub fn apply(&self, snapshot: &MappingsSnapshot) -> ApplyOutcome {
        let mut current = self.shared.load_full();
        if let Some(v) = current.version
            && snapshot.version <= v
        {
            return ApplyOutcome::Stale {
                current: v,
                offered: snapshot.version,
            };
        }
        let next = Arc::new(MeshTable::from_snapshot(
            snapshot,
            current.control_plane.clone(),
        ));
        // Under test, give other appliers a chance to run between the check and the swap,
        // so the concurrency tests exercise the retry path instead of rarely hitting it.
        #[cfg(test)]
        std::thread::yield_now();
        loop {
            let prev = self.shared.compare_and_swap(&current, next.clone());
            if Arc::ptr_eq(&prev, &current) {
                return ApplyOutcome::Applied {
                    previous: current.version,
                    version: snapshot.version,
                };
            }
            // Someone else applied in between: re-check against what is there now.
            current = arc_swap::Guard::into_inner(prev);
            if let Some(v) = current.version
                && snapshot.version <= v
            {
                return ApplyOutcome::Stale {
                    current: v,
                    offered: snapshot.version,
                };
            }
        }
    }

    /// A reader over the same table.
    pub fn reader(&self) -> MeshReader {
        MeshReader {
            shared: self.shared.clone(),
        }
    }
}

/// Read side: cheap to clone, never blocks, never sees a half-applied table.
#[derive(Debug, Clone)]
pub struct MeshReader {
    shared: Arc<ArcSwap<MeshTable>>,
}

impl MeshReader {
    /// Where `service` goes: [`Resolution::Local`] for infrastructure, the control plane
    /// for `orchestrator`, else a target drawn by weight when it has a split, else its
    /// mapping or the default app-id. Case-insensitive.
    pub fn resolve(&self, service: &str) -> Resolution {
        self.shared.load().resolve(service)
    }

    /// Every place calls of `service` may go, without drawing: what [`Self::resolve`]
    /// answers, except that a split service lists each target of positive weight (a node
    /// deciding whether it serves a service asks this, D64 (docs/DECISIONS.md#d64)).
    pub fn candidates(&self, service: &str) -> Vec<Resolution> {
        let table = self.shared.load();
        let key = service.trim();
        let hit = if key.bytes().any(|b| b.is_ascii_uppercase()) {
            table.routes.get(key.to_ascii_lowercase().as_str())
        } else {
            table.routes.get(key)
        };
        match hit {
            Some(Target::Split(split)) if !is_infrastructure(key) && !is_orchestrator(key) => split
                .receiving()
                .map(|a| Resolution::App(a.clone()))
                .collect(),
            _ => vec![table.resolve(service)],
        }
    }

    /// The mappings version applied, `None` before the first snapshot. Nodes report it in
    /// their heartbeat metadata under [`ROUTING_VERSION_METADATA_KEY`].
    pub fn applied_version(&self) -> Option<i64> {
        self.shared.load().version
    }

    /// A consistent view of one applied table, for resolving several services against the
    /// same version.
    pub fn view(&self) -> MeshView {
        MeshView(self.shared.load_full())
    }
}

/// One applied table, held alive while in use; all answers come from the same version.
#[derive(Debug, Clone)]
pub struct MeshView(Arc<MeshTable>);

impl MeshView {
    /// As [`MeshReader::resolve`], against this view's table.
    pub fn resolve(&self, service: &str) -> Resolution {
        self.0.resolve(service)
    }

    /// The version of this view's table (`None`: nothing applied yet).
    pub fn version(&self) -> Option<i64> {
        self.0.version
    }

    /// The default app-id of this view's table.
    pub fn default_app_id(&self) -> &str {
        &self.0.default_app_id
    }
}

/// The `routingVersion` a heartbeat reports in its `metadata`, if any (a number, or a
/// string holding one).
pub fn reported_routing_version(heartbeat: &ServiceHeartbeatEvent) -> Option<i64> {
    let value = heartbeat
        .metadata
        .as_ref()?
        .get(ROUTING_VERSION_METADATA_KEY)?;
    value
        .as_i64()
        .or_else(|| value.as_str().and_then(|s| s.trim().parse().ok()))
}

/// An instance behind the current mappings version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lagging<I> {
    /// The instance as the caller identifies it (app-id, instance GUID, ...).
    pub instance: I,
    /// The version it reported; `None` when it reported none (not applied, or an old build).
    pub reported: Option<i64>,
    /// How many versions behind (`None` when it reported none).
    pub behind: Option<i64>,
}

/// Instances whose reported `routingVersion` is below `current` or missing, in input order.
pub fn lagging_instances<I, It>(current: i64, reported: It) -> Vec<Lagging<I>>
where
    It: IntoIterator<Item = (I, Option<i64>)>,
{
    reported
        .into_iter()
        .filter_map(|(instance, version)| match version {
            Some(v) if v >= current => None,
            Some(v) => Some(Lagging {
                instance,
                reported: Some(v),
                behind: Some(current.saturating_sub(v)),
            }),
            None => Some(Lagging {
                instance,
                reported: None,
                behind: None,
            }),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use orchestrator_core::names::AppId;
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicBool, Ordering};

    fn snapshot(version: i64, routes: &[(&str, &str)]) -> MappingsSnapshot {
        MappingsSnapshot {
            version,
            mappings: routes
                .iter()
                .map(|(s, a)| ((*s).to_owned(), AppId::from(*a)))
                .collect(),
            default_app_id: AppId::control_plane(),
            weights: BTreeMap::new(),
        }
    }

    fn app(a: &str) -> Resolution {
        Resolution::App(Arc::from(a))
    }

    /// Small deterministic PRNG (xorshift64*), so the tests need no extra dependency.
    pub(crate) struct Rng(u64);
    impl Rng {
        pub(crate) fn new(seed: u64) -> Self {
            Rng(seed | 1)
        }
        pub(crate) fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        pub(crate) fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
        pub(crate) fn shuffle<T>(&mut self, v: &mut [T]) {
            for i in (1..v.len()).rev() {
                v.swap(i, self.below(i + 1));
            }
        }
    }

    fn split(targets: &[(&str, u32)]) -> WeightedTargets {
        WeightedTargets::new(targets.iter().map(|(a, w)| (AppId::from(*a), *w))).unwrap()
    }

    /// `calls` resolutions of `service`, counted by app-id.
    fn shares(reader: &MeshReader, service: &str, calls: u32) -> BTreeMap<String, u32> {
        let mut seen = BTreeMap::new();
        for _ in 0..calls {
            *seen.entry(reader.resolve(service).to_string()).or_insert(0) += 1;
        }
        seen
    }

    #[test]
    fn a_split_draws_each_target_by_its_cumulative_weight() {
        let mut intern = |a: &str| Arc::<str>::from(a);
        let s = Split::new(&split(&[("a", 3), ("b", 0), ("c", 2)]), &mut intern);
        let picks: Vec<&str> = (0..5).map(|d| &**s.pick(d)).collect();
        assert_eq!(picks, ["a", "a", "a", "c", "c"], "weight 0 is never drawn");
    }

    #[test]
    fn weighted_shares_are_within_three_points_over_ten_thousand_calls() {
        const CALLS: u32 = 10_000;
        let (writer, reader) = MeshResolver::new();
        let s = snapshot(1, &[("auth", "old"), ("chat", "n1")]).with_weights([
            ("auth".to_owned(), split(&[("old", 90), ("new", 10)])),
            (
                "Chat".to_owned(),
                split(&[("n1", 50), ("n2", 30), ("n3", 20)]),
            ),
        ]);
        writer.apply(&s);
        for (service, weights) in [
            ("auth", vec![("old", 90), ("new", 10)]),
            ("chat", vec![("n1", 50), ("n2", 30), ("n3", 20)]),
        ] {
            let seen = shares(&reader, service, CALLS);
            assert_eq!(seen.values().sum::<u32>(), CALLS);
            assert_eq!(seen.len(), weights.len(), "{service}: {seen:?}");
            for (app, percent) in weights {
                let share = f64::from(seen[app]) * 100.0 / f64::from(CALLS);
                assert!(
                    (share - f64::from(percent)).abs() <= 3.0,
                    "{service}: {app} got {share:.1}% for a weight of {percent}"
                );
            }
        }
        assert_eq!(
            reader.resolve("other"),
            app("bannou"),
            "unsplit services unchanged"
        );
    }

    #[test]
    fn weights_zero_and_hundred_send_everything_one_way() {
        let (writer, reader) = MeshResolver::new();
        writer.apply(
            &snapshot(1, &[("auth", "old")])
                .with_weights([("auth".to_owned(), split(&[("old", 0), ("new", 100)]))]),
        );
        assert_eq!(
            shares(&reader, "AUTH", 2_000)
                .into_iter()
                .collect::<Vec<_>>(),
            [("new".to_owned(), 2_000)]
        );
        writer.apply(
            &snapshot(2, &[("auth", "old")])
                .with_weights([("auth".to_owned(), split(&[("old", 100), ("new", 0)]))]),
        );
        assert_eq!(
            shares(&reader, "auth", 2_000)
                .into_iter()
                .collect::<Vec<_>>(),
            [("old".to_owned(), 2_000)]
        );
    }

    #[test]
    fn candidates_list_every_receiving_target_of_a_split_without_drawing() {
        let (writer, reader) = MeshResolver::new();
        writer.apply(
            &snapshot(1, &[("auth", "old"), ("chat", "n1")]).with_weights([(
                "auth".to_owned(),
                split(&[("old", 90), ("new", 10), ("idle", 0)]),
            )]),
        );
        assert_eq!(reader.candidates("Auth"), [app("new"), app("old")]);
        assert_eq!(reader.candidates("chat"), [app("n1")]);
        assert_eq!(reader.candidates("state"), [Resolution::Local]);
        assert_eq!(reader.candidates("unrouted"), [app("bannou")]);
    }

    #[test]
    fn removing_the_weights_returns_every_call_to_the_primary() {
        let (writer, reader) = MeshResolver::new();
        // A split of a service that has no mapping: its primary is the default app-id.
        writer.apply(&snapshot(1, &[("auth", "old")]).with_weights([
            ("auth".to_owned(), split(&[("old", 50), ("new", 50)])),
            ("chat".to_owned(), split(&[("bannou", 50), ("n2", 50)])),
        ]));
        assert_eq!(shares(&reader, "auth", 1_000).len(), 2);
        assert_eq!(shares(&reader, "chat", 1_000).len(), 2);
        writer.apply(&snapshot(2, &[("auth", "old")]));
        assert_eq!(
            shares(&reader, "auth", 1_000)
                .into_iter()
                .collect::<Vec<_>>(),
            [("old".to_owned(), 1_000)]
        );
        assert_eq!(
            shares(&reader, "chat", 1_000)
                .into_iter()
                .collect::<Vec<_>>(),
            [("bannou".to_owned(), 1_000)]
        );
    }

    #[test]
    fn fresh_resolver_routes_to_default_control_plane_and_local() {
        let (_writer, reader) = MeshResolver::new();
        assert_eq!(reader.applied_version(), None);
        assert_eq!(reader.resolve("auth"), app("bannou"));
        assert_eq!(reader.resolve("Orchestrator"), app("bannou"));
        assert_eq!(reader.resolve("MESH"), Resolution::Local);
        assert_eq!(reader.resolve("state").app_id_or("n7"), "n7");
    }

    #[test]
    fn applies_only_strictly_newer_versions() {
        let (writer, reader) = MeshResolver::new();
        assert_eq!(
            writer.apply(&snapshot(5, &[("auth", "n1")])),
            ApplyOutcome::Applied {
                previous: None,
                version: 5
            }
        );
        assert_eq!(reader.resolve("AUTH"), app("n1"));
        assert_eq!(
            writer.apply(&snapshot(5, &[("auth", "n2")])),
            ApplyOutcome::Stale {
                current: 5,
                offered: 5
            }
        );
        assert_eq!(
            writer.apply(&snapshot(3, &[])),
            ApplyOutcome::Stale {
                current: 5,
                offered: 3
            }
        );
        assert_eq!(reader.resolve("auth"), app("n1"));
        assert!(matches!(
            writer.apply(&snapshot(6, &[])),
            ApplyOutcome::Applied { .. }
        ));
        assert_eq!(
            reader.resolve("auth"),
            app("bannou"),
            "empty means all to default"
        );
        assert_eq!(writer.reader().applied_version(), Some(6));
    }

    #[test]
    fn orchestrator_and_infrastructure_entries_in_a_snapshot_are_ignored() {
        let (writer, reader) = MeshResolver::new();
        let mut s = snapshot(1, &[("orchestrator", "n1"), ("state", "n1")]);
        s.default_app_id = AppId::from("fallback");
        writer.apply(&s);
        assert_eq!(reader.resolve("orchestrator"), app("bannou"));
        assert_eq!(reader.resolve("state"), Resolution::Local);
        assert_eq!(reader.resolve("other"), app("fallback"));
        assert_eq!(reader.view().default_app_id(), "fallback");
    }

    #[test]
    fn lag_lists_instances_behind_or_silent() {
        let lag = lagging_instances(
            10,
            [
                ("a", Some(10)),
                ("b", Some(7)),
                ("c", None),
                ("d", Some(11)),
            ],
        );
        assert_eq!(
            lag,
            vec![
                Lagging {
                    instance: "b",
                    reported: Some(7),
                    behind: Some(3)
                },
                Lagging {
                    instance: "c",
                    reported: None,
                    behind: None
                },
            ]
        );
        let mut hb = crate::table::tests::heartbeat("n1", &[]);
        assert_eq!(reported_routing_version(&hb), None);
        hb.metadata = Some(serde_json::json!({ "routingVersion": 12 }));
        assert_eq!(reported_routing_version(&hb), Some(12));
        hb.metadata = Some(serde_json::json!({ "routingVersion": "13" }));
        assert_eq!(reported_routing_version(&hb), Some(13));
        hb.metadata = Some(serde_json::json!({ "routingVersion": [1] }));
        assert_eq!(reported_routing_version(&hb), None);
    }

    /// A synthetic table whose every app-id encodes its version: `v{version}`.
    fn versioned(version: i64, services: usize) -> MappingsSnapshot {
        let mappings: BTreeMap<String, AppId> = (0..services)
            .map(|i| (format!("svc-{i}"), AppId::new(format!("v{version}"))))
            .collect();
        MappingsSnapshot {
            version,
            mappings,
            default_app_id: AppId::control_plane(),
            weights: BTreeMap::new(),
        }
    }

    #[test]
    fn concurrent_appliers_and_readers_see_whole_tables_and_monotonic_versions() {
        const SERVICES: usize = 20;
        let snapshots: Vec<MappingsSnapshot> =
            (1..=2_000).map(|v| versioned(v, SERVICES)).collect();
        let (writer, reader) = MeshResolver::new();
        let done = AtomicBool::new(false);
        let history = std::sync::Mutex::new(History::new());
        std::thread::scope(|scope| {
            let appliers: Vec<_> = (0..3u64)
                .map(|seed| {
                    let writer = writer.clone();
                    let history = &history;
                    let mut order: Vec<&MappingsSnapshot> = snapshots.iter().collect();
                    scope.spawn(move || {
                        Rng::new(seed + 11).shuffle(&mut order);
                        for s in order {
                            if let ApplyOutcome::Applied { previous, version } = writer.apply(s) {
                                history.lock().unwrap().push((previous, version));
                            }
                        }
                    })
                })
                .collect();
            for _ in 0..3 {
                let reader = reader.clone();
                let done = &done;
                scope.spawn(move || {
                    let mut last = None;
                    let mut reads = 0u32;
                    while !done.load(Ordering::Relaxed) || reads < 100 {
                        reads += 1;
                        let version = reader.applied_version();
                        assert!(version >= last, "applied version went back");
                        last = version;
                        let view = reader.view();
                        let Some(v) = view.version() else { continue };
                        let want = app(&format!("v{v}"));
                        for i in 0..SERVICES {
                            assert_eq!(view.resolve(&format!("svc-{i}")), want, "torn table");
                        }
                        // A single resolve is from some whole table, never older than seen.
                        let Resolution::App(one) = reader.resolve("svc-3") else {
                            panic!()
                        };
                        let seen: i64 = one[1..].parse().unwrap();
                        assert!(seen >= v);
                    }
                });
            }
            for a in appliers {
                a.join().unwrap();
            }
            done.store(true, Ordering::Relaxed);
        });
        assert_eq!(reader.applied_version(), Some(2_000));
        assert_chain(&history.into_inner().unwrap(), 2_000, 0);
    }

    /// `(previous, applied)` for every successful apply of one resolver.
    type History = Vec<(Option<i64>, i64)>;

    /// Every successful apply replaced exactly the one before it and went up: the applied
    /// history is one strictly increasing chain from nothing to `top`, so no lower version
    /// was ever applied after a higher one.
    fn assert_chain(history: &History, top: i64, resolver: usize) {
        let mut history = history.clone();
        history.sort_by_key(|(_, v)| *v);
        let mut expected_previous = None;
        for (previous, version) in history {
            assert_eq!(
                previous, expected_previous,
                "resolver {resolver}: lower after higher"
            );
            assert!(previous < Some(version));
            expected_previous = Some(version);
        }
        assert_eq!(expected_previous, Some(top), "resolver {resolver}");
    }

    #[test]
    fn ten_thousand_versions_from_two_publishers_reach_fifty_resolvers_in_order() {
        const VERSIONS: i64 = 10_000;
        const RESOLVERS: usize = 50;
        // Publisher A owns the odd versions, B the even ones; each delivers its stream in a
        // random order to every resolver, concurrently with the other publisher.
        let snapshots: Vec<Arc<MappingsSnapshot>> = (1..=VERSIONS)
            .map(|v| {
                Arc::new(MappingsSnapshot {
                    version: v,
                    mappings: [("auth".to_owned(), AppId::new(format!("v{v}")))].into(),
                    default_app_id: AppId::control_plane(),
                    weights: BTreeMap::new(),
                })
            })
            .collect();
        let resolvers: Vec<(MappingsWriter, MeshReader)> =
            (0..RESOLVERS).map(|_| MeshResolver::new()).collect();
        let applied: Vec<std::sync::Mutex<History>> =
            (0..RESOLVERS).map(|_| Default::default()).collect();
        std::thread::scope(|scope| {
            for publisher in 0..2u64 {
                let snapshots = &snapshots;
                let resolvers = &resolvers;
                let applied = &applied;
                scope.spawn(move || {
                    let mut rng = Rng::new(0xB0_0000 + publisher);
                    let mut mine: Vec<&Arc<MappingsSnapshot>> = snapshots
                        .iter()
                        .filter(|s| (s.version % 2) as u64 == publisher)
                        .collect();
                    // Both publishers walk the resolvers in the same order, so they race
                    // on the same resolver at the same time; each delivers its own stream
                    // to each resolver in a fresh random order.
                    for (r, (writer, _)) in resolvers.iter().enumerate() {
                        rng.shuffle(&mut mine);
                        for s in &mine {
                            if let ApplyOutcome::Applied { previous, version } = writer.apply(s) {
                                applied[r].lock().unwrap().push((previous, version));
                            }
                        }
                    }
                });
            }
        });
        for (r, (_, reader)) in resolvers.iter().enumerate() {
            assert_eq!(reader.applied_version(), Some(VERSIONS), "resolver {r}");
            assert_eq!(reader.resolve("auth"), app(&format!("v{VERSIONS}")));
            assert_chain(&applied[r].lock().unwrap(), VERSIONS, r);
        }
    }
}

//! Newtypes for identifiers that are easy to mix up: app-ids name containers/nodes,
//! service names name plugins. Both are plain strings on the wire.

use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The app-id of the control plane, the only place the orchestrator runs
/// (docs/COMPATIBILITY.md#placement-and-identity).
pub const CONTROL_PLANE_APP_ID: &str = "bannou";

/// The identity of a Bannou node: what routing tables map services to.
///
/// App-ids compare without regard to ASCII case, as upstream compares them
/// (docs/COMPATIBILITY.md#heartbeat-consumption, docs/COMPATIBILITY.md#names-and-app-ids):
/// `Auth-Main` and `auth-main` name the same node.
/// That is a property of the type: `==`, [`Hash`] and [`Ord`] all ignore ASCII case, so
/// maps and sets keyed by `AppId` agree with every comparison. [`Ord`] orders by the
/// lower-cased bytes, a total order in which two spellings of one app-id are equal.
///
/// The original spelling is kept for display, serialization and [`Self::as_str`]. Where
/// two spellings of one app-id meet, the first one wins: a map keeps the spelling of the
/// key first inserted (`insert` of an equal key replaces the value, not the key), and
/// deduplication keeps the first occurrence. Text derived for storage (Redis keys,
/// container names, labels) uses the spelling, never a folded form, so reading state
/// written before this rule finds the same keys; see [`Self::as_str`].
///
/// Shared text (`Arc<str>`): app-ids are copied into every lease, worker record and route,
/// so a clone is a reference-count increment, not an allocation. A plain string on the wire.
///
/// There is deliberately no `Borrow<str>`: a `str` hashes and compares with case, so a
/// map lookup by `&str` would break the `Borrow` contract. Look up with an `AppId`.
#[derive(Debug, Clone)]
pub struct AppId(Arc<str>);

impl AppId {
    /// Wraps a string as an app-id (no validation: upstream accepts any text).
    pub fn new(s: impl Into<String>) -> Self {
        AppId(Arc::from(s.into()))
    }

    /// The control plane's app-id, `bannou`.
    pub fn control_plane() -> Self {
        AppId(Arc::from(CONTROL_PLANE_APP_ID))
    }

    /// True for `bannou` in any case (docs/COMPATIBILITY.md#heartbeat-consumption compares
    /// case-insensitively).
    pub fn is_control_plane(&self) -> bool {
        self.matches(CONTROL_PLANE_APP_ID)
    }

    /// True when `other` names this app-id, ASCII case ignored (the rule of `==`, for
    /// text that is not an `AppId` yet, such as a record field or a request parameter).
    pub fn matches(&self, other: &str) -> bool {
        same_app_id(&self.0, other)
    }

    /// The text, in the spelling this value was made from. Storage keys and labels are
    /// derived from this spelling (not a folded form): changing that would rename keys
    /// that existing state was written under.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// True when two app-id strings name the same node: equal ignoring ASCII case. The one
/// place the rule lives for text that is not (yet) an [`AppId`].
pub fn same_app_id(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

impl PartialEq for AppId {
    fn eq(&self, other: &AppId) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || same_app_id(&self.0, &other.0)
    }
}

impl Eq for AppId {}

impl PartialEq<str> for AppId {
    fn eq(&self, other: &str) -> bool {
        same_app_id(&self.0, other)
    }
}

impl PartialEq<&str> for AppId {
    fn eq(&self, other: &&str) -> bool {
        same_app_id(&self.0, other)
    }
}

impl std::hash::Hash for AppId {
    /// Hashes the lower-cased bytes, in fixed chunks through a stack buffer (no
    /// allocation), then a terminator as `str` does: equal app-ids hash equally.
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let mut buf = [0u8; 32];
        for chunk in self.0.as_bytes().chunks(buf.len()) {
            let out = &mut buf[..chunk.len()];
            out.copy_from_slice(chunk);
            out.make_ascii_lowercase();
            state.write(out);
        }
        state.write_u8(0xff);
    }
}

impl PartialOrd for AppId {
    fn partial_cmp(&self, other: &AppId) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for AppId {
    /// Orders by the lower-cased bytes; spellings of one app-id compare `Equal`.
    fn cmp(&self, other: &AppId) -> std::cmp::Ordering {
        fn fold(s: &str) -> impl Iterator<Item = u8> + '_ {
            s.bytes().map(|b| b.to_ascii_lowercase())
        }
        fold(&self.0).cmp(fold(&other.0))
    }
}

impl fmt::Display for AppId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for AppId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl From<&str> for AppId {
    fn from(s: &str) -> Self {
        AppId(Arc::from(s))
    }
}

impl From<String> for AppId {
    fn from(s: String) -> Self {
        AppId(Arc::from(s))
    }
}

impl Serialize for AppId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for AppId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(AppId::from)
    }
}

/// The name of a service (plugin) as a heartbeat reports it.
///
/// Shared text (`Arc<str>`), like [`AppId`]: a node's service list is fixed, so each beat
/// reuses the names instead of allocating them again, and a clone is a reference-count
/// increment. A plain string on the wire. Dereferences to `str`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceName(Arc<str>);

impl ServiceName {
    /// Wraps a string as a service name (no validation: upstream accepts any text).
    pub fn new(s: impl Into<String>) -> Self {
        ServiceName(Arc::from(s.into()))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True when both share the same text allocation (a cheap pre-check before comparing).
    pub fn ptr_eq(&self, other: &ServiceName) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl std::ops::Deref for ServiceName {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Borrow<str> for ServiceName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for ServiceName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for ServiceName {
    fn eq(&self, other: &str) -> bool {
        *self.0 == *other
    }
}

impl PartialEq<&str> for ServiceName {
    fn eq(&self, other: &&str) -> bool {
        *self.0 == **other
    }
}

impl PartialEq<String> for ServiceName {
    fn eq(&self, other: &String) -> bool {
        *self.0 == **other
    }
}

impl PartialEq<ServiceName> for str {
    fn eq(&self, other: &ServiceName) -> bool {
        *self == *other.0
    }
}

impl PartialEq<ServiceName> for &str {
    fn eq(&self, other: &ServiceName) -> bool {
        **self == *other.0
    }
}

impl PartialEq<ServiceName> for String {
    fn eq(&self, other: &ServiceName) -> bool {
        **self == *other.0
    }
}

impl From<&str> for ServiceName {
    fn from(s: &str) -> Self {
        ServiceName(Arc::from(s))
    }
}

impl From<String> for ServiceName {
    fn from(s: String) -> Self {
        ServiceName(Arc::from(s))
    }
}

impl From<&String> for ServiceName {
    fn from(s: &String) -> Self {
        ServiceName(Arc::from(s.as_str()))
    }
}

impl From<ServiceName> for String {
    fn from(s: ServiceName) -> Self {
        s.0.as_ref().to_owned()
    }
}

impl Serialize for ServiceName {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ServiceName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(ServiceName::from)
    }
}

/// `{SERVICE}` as used in env names: upper-cased with `-` replaced by `_`
/// (docs/COMPATIBILITY.md#enablement-rule).
pub fn env_service_name(service: &str) -> String {
    service.to_ascii_uppercase().replace('-', "_")
}

/// `{SERVICE}_SERVICE_ENABLED` for a service name (`game-session` -> `GAME_SESSION_SERVICE_ENABLED`).
pub fn service_enable_flag(service: &str) -> String {
    format!("{}_SERVICE_ENABLED", env_service_name(service))
}

/// True when `key` is `{SERVICE}_SERVICE_ENABLED` for `service`, compared without
/// allocating (hot in the planner's environment diff).
pub fn is_service_enable_flag(key: &str, service: &str) -> bool {
    const SUFFIX: &str = "_SERVICE_ENABLED";
    let Some(stem) = key.strip_suffix(SUFFIX) else {
        return false;
    };
    stem.len() == service.len()
        && stem.bytes().zip(service.bytes()).all(|(k, s)| {
            let s = if s == b'-' {
                b'_'
            } else {
                s.to_ascii_uppercase()
            };
            k == s
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enable_flag_follows_spec_3_3() {
        assert_eq!(
            service_enable_flag("game-session"),
            "GAME_SESSION_SERVICE_ENABLED"
        );
        assert_eq!(service_enable_flag("auth"), "AUTH_SERVICE_ENABLED");
        assert!(is_service_enable_flag(
            "GAME_SESSION_SERVICE_ENABLED",
            "game-session"
        ));
        assert!(!is_service_enable_flag(
            "GAME_SESSION_SERVICE_ENABLED",
            "game-sessio"
        ));
        assert!(!is_service_enable_flag("AUTH_ENABLED", "auth"));
        assert!(!is_service_enable_flag(
            "game_session_SERVICE_ENABLED",
            "game-session"
        ));
    }

    #[test]
    fn control_plane_is_case_insensitive() {
        assert!(AppId::from("BANNOU").is_control_plane());
        assert!(!AppId::from("bannou-auth").is_control_plane());
    }

    fn hash_of(a: &AppId) -> u64 {
        use std::hash::{BuildHasher, BuildHasherDefault};
        BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default().hash_one(a)
    }

    #[test]
    fn app_ids_compare_hash_and_order_without_case() {
        let (a, b) = (AppId::from("Auth-Main"), AppId::from("auth-MAIN"));
        assert_eq!(a, b);
        assert_eq!(hash_of(&a), hash_of(&b));
        assert_eq!(a.cmp(&b), std::cmp::Ordering::Equal);
        assert!(a.matches("AUTH-main") && a == "auth-main");
        assert_ne!(a, AppId::from("auth-main2"));
        // Longer than the hash's stack buffer: every chunk is folded.
        let long = "Node-".repeat(20);
        assert_eq!(
            hash_of(&AppId::from(long.as_str())),
            hash_of(&AppId::from(long.to_ascii_uppercase()))
        );
        // Ordered by the lower-cased text: `a` < `B` < `c` whatever the case.
        let mut ids: Vec<AppId> = ["c", "B", "a"].map(AppId::from).into();
        ids.sort();
        assert_eq!(
            ids.iter().map(AppId::as_str).collect::<Vec<_>>(),
            ["a", "B", "c"]
        );
    }

    #[test]
    fn the_spelling_is_kept_and_the_first_one_wins_in_maps() {
        let a = AppId::from("Auth-Main");
        assert_eq!(a.to_string(), "Auth-Main");
        assert_eq!(serde_json::to_string(&a).unwrap(), "\"Auth-Main\"");
        let mut map = std::collections::BTreeMap::new();
        map.insert(a.clone(), 1);
        map.insert(AppId::from("auth-main"), 2);
        assert_eq!(map.len(), 1);
        let (key, value) = map.iter().next().unwrap();
        assert_eq!((key.as_str(), *value), ("Auth-Main", 2));
        let set: std::collections::HashSet<AppId> =
            ["x-Y", "X-y", "x-y"].map(AppId::from).into_iter().collect();
        assert_eq!(set.len(), 1);
        assert!(set.contains(&AppId::from("X-Y")));
    }

    proptest::proptest! {
        /// Eq, Hash and Ord agree with each other and with comparing lower-cased text.
        #[test]
        fn eq_hash_and_ord_are_consistent(
            a in "[a-cA-C_-]{0,40}",
            b in "[a-cA-C_-]{0,40}",
            flips in proptest::collection::vec(proptest::bool::ANY, 40),
        ) {
            let (x, y) = (AppId::from(a.as_str()), AppId::from(b.as_str()));
            let (la, lb) = (a.to_ascii_lowercase(), b.to_ascii_lowercase());
            proptest::prop_assert_eq!(x == y, la == lb);
            proptest::prop_assert_eq!(x.cmp(&y), la.cmp(&lb));
            proptest::prop_assert_eq!(x.partial_cmp(&y), Some(la.cmp(&lb)));
            if x == y {
                proptest::prop_assert_eq!(hash_of(&x), hash_of(&y));
            }
            // Any re-casing of `a` is the same app-id, with the same hash.
            let recased: String = a
                .chars()
                .zip(flips.iter().chain(std::iter::repeat(&false)))
                .map(|(c, &f)| if f { c.to_ascii_uppercase() } else { c.to_ascii_lowercase() })
                .collect();
            let z = AppId::from(recased.as_str());
            proptest::prop_assert_eq!(&x, &z);
            proptest::prop_assert_eq!(hash_of(&x), hash_of(&z));
            proptest::prop_assert_eq!(x.cmp(&z), std::cmp::Ordering::Equal);
        }
    }
}

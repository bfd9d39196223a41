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
/// Shared text (`Arc<str>`): app-ids are copied into every lease, worker record and route,
/// so a clone is a reference-count increment, not an allocation. A plain string on the wire.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
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
        self.0.eq_ignore_ascii_case(CONTROL_PLANE_APP_ID)
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AppId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Borrow<str> for AppId {
    fn borrow(&self) -> &str {
        &self.0
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
}

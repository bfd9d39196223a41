//! Variables accepted (and range-checked) for compatibility with upstream that change
//! nothing in this host, and the one log line that names those a deployment sets.

use super::vars;

/// A variable accepted (and range-checked) for compatibility with upstream that changes
/// nothing in this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoEffect {
    /// The variable.
    pub name: &'static str,
    /// Why it changes nothing.
    pub why: &'static str,
}

/// Every variable of [`NoEffect`] kind. The host logs the ones that are set, once at
/// start ([`HostConfig::log_no_effect`](super::HostConfig::log_no_effect)).
pub const NO_EFFECT: &[NoEffect] = &[
    NoEffect {
        name: vars::SECURE_WEBSOCKET.name,
        why: "this host serves no WebSocket API and registers no WebSocket permissions",
    },
    NoEffect {
        name: vars::HEARTBEAT_TTL.name,
        why: "heartbeats are held by the in-memory health aggregator, never stored as \
              records; ORCHESTRATOR_HEARTBEAT_TIMEOUT_SECONDS expires them",
    },
    NoEffect {
        name: vars::INDEX_UPDATE_MAX_RETRIES.name,
        why: "the store updates a record and its index in one atomic step, with no \
              compare-and-swap to retry (upstream does not read it either)",
    },
    NoEffect {
        name: vars::DEFAULT_POOL_LEASE_TIMEOUT.name,
        why: "upstream falls back to it only for a timeoutSeconds below 1, which \
              validation refuses; an omitted timeoutSeconds is 300",
    },
    NoEffect {
        name: vars::POOL_LOCK_TIMEOUT.name,
        why: "every pool change is one atomic script (D10): there is no lock to expire",
    },
];

/// The one log line naming `set` variables that have no effect, or `None` when `set` is
/// empty.
pub fn no_effect_line(set: &[NoEffect]) -> Option<String> {
    if set.is_empty() {
        return None;
    }
    let names: Vec<&str> = set.iter().map(|v| v.name).collect();
    let reasons: Vec<String> = set
        .iter()
        .map(|v| format!("{}: {}", v.name, v.why))
        .collect();
    Some(format!(
        "accepted for compatibility with upstream, no effect here: {} ({})",
        names.join(", "),
        reasons.join("; ")
    ))
}

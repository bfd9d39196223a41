//! [`ConfigError`]: a configuration value that is missing, malformed or out of range;
//! every error names the variable (or flag) and the value.

use std::net::SocketAddr;

/// A configuration value that is missing, malformed or out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A variable's value does not parse or breaks its constraint.
    #[error("{name}={value:?}: {reason}")]
    Invalid {
        /// The variable (or flag) name.
        name: String,
        /// The rejected value.
        value: String,
        /// What was expected.
        reason: String,
    },
    /// The API would listen beyond loopback without a bearer token (D31 (docs/DECISIONS.md#d31)).
    #[error(
        "refusing to listen on {listen}: it is not a loopback address and no API token is set; \
         set ORCHESTRATOR_API_TOKEN (or --api-token), or listen on 127.0.0.1"
    )]
    ExposedWithoutToken {
        /// The configured listen address.
        listen: SocketAddr,
    },
    /// The orchestrator runs only on the control-plane app-id
    /// (docs/COMPATIBILITY.md#placement-and-identity).
    #[error(
        "the orchestrator runs only on app-id `bannou` (docs/COMPATIBILITY.md#placement-and-identity), \
         but the effective app-id is \
         `{app_id}`; unset BANNOU_APP_ID or set it to bannou"
    )]
    WrongAppId {
        /// The effective app-id.
        app_id: String,
    },
}

impl ConfigError {
    pub(crate) fn invalid(name: &str, value: &str, reason: impl Into<String>) -> Self {
        ConfigError::Invalid {
            name: name.to_owned(),
            value: value.to_owned(),
            reason: reason.into(),
        }
    }
}

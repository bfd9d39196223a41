//! Routes of the `config` group: rollback and version
//! (docs/COMPATIBILITY.md#config-rollback, docs/COMPATIBILITY.md#config-version).

use super::{Endpoint, endpoint};

pub(super) fn endpoints() -> Vec<Endpoint> {
    vec![
        endpoint!("/orchestrator/config/rollback" => rollback),
        endpoint!("/orchestrator/config/version" => config_version),
    ]
}

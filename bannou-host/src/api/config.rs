//! Routes of the `config` group: rollback and version (spec 8.16, 8.17).

use super::{Endpoint, endpoint};

pub(super) fn endpoints() -> Vec<Endpoint> {
    vec![
        endpoint!("/orchestrator/config/rollback" => rollback),
        endpoint!("/orchestrator/config/version" => config_version),
    ]
}

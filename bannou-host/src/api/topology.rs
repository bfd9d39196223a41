//! Routes of the `topology` group: live topology edits (docs/COMPATIBILITY.md#topology).

use super::{Endpoint, endpoint};

pub(super) fn endpoints() -> Vec<Endpoint> {
    vec![endpoint!("/orchestrator/topology" => update_topology)]
}

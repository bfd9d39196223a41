//! Routes of the `topology` group: live topology edits (spec 8.13).

use super::{Endpoint, endpoint};

pub(super) fn endpoints() -> Vec<Endpoint> {
    vec![endpoint!("/orchestrator/topology" => update_topology)]
}

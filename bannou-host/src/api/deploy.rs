//! Routes of the `deploy` group: presets, deploy, service routing, status, teardown
//! (docs/COMPATIBILITY.md#endpoints), and ours: promote and abort a canary
//! (docs/COMPATIBILITY.md#promote-and-abort-a-canary).

use super::{Endpoint, endpoint};

pub(super) fn endpoints() -> Vec<Endpoint> {
    vec![
        endpoint!("/orchestrator/presets/list" => presets),
        endpoint!("/orchestrator/deploy" => deploy),
        endpoint!("/orchestrator/service-routing" => service_routing),
        endpoint!("/orchestrator/status" => status),
        endpoint!("/orchestrator/teardown" => teardown),
        endpoint!("/orchestrator/promote" => promote),
        endpoint!("/orchestrator/abort" => abort),
    ]
}

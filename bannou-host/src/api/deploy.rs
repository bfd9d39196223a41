//! Routes of the `deploy` group: presets, deploy, service routing, status, teardown
//! (spec 8.6-8.10).

use super::{Endpoint, endpoint};

pub(super) fn endpoints() -> Vec<Endpoint> {
    vec![
        endpoint!("/orchestrator/presets/list" => presets),
        endpoint!("/orchestrator/deploy" => deploy),
        endpoint!("/orchestrator/service-routing" => service_routing),
        endpoint!("/orchestrator/status" => status),
        endpoint!("/orchestrator/teardown" => teardown),
    ]
}

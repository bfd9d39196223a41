//! Routes of the `health` group: infrastructure and services health, restart,
//! should-restart (docs/COMPATIBILITY.md#endpoints).

use super::{Endpoint, endpoint};

pub(super) fn endpoints() -> Vec<Endpoint> {
    vec![
        endpoint!("/orchestrator/health/infrastructure" => infrastructure_health),
        endpoint!("/orchestrator/health/services" => services_health),
        endpoint!("/orchestrator/services/restart" => restart_service),
        endpoint!("/orchestrator/services/should-restart" => should_restart),
    ]
}

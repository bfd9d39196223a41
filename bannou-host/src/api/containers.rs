//! Routes of the `containers` group: backends, clean, logs, container restart and
//! status (spec 8.5, 8.11, 8.12, 8.14, 8.15).

use super::{Endpoint, endpoint};

pub(super) fn endpoints() -> Vec<Endpoint> {
    vec![
        endpoint!("/orchestrator/backends/list" => backends),
        endpoint!("/orchestrator/clean" => clean),
        endpoint!("/orchestrator/logs" => logs),
        endpoint!("/orchestrator/containers/request-restart" => request_container_restart),
        endpoint!("/orchestrator/containers/status" => container_status),
    ]
}

//! Routes of the `containers` group: backends, clean, logs, container restart and
//! status (docs/COMPATIBILITY.md#backends-list, docs/COMPATIBILITY.md#clean,
//! docs/COMPATIBILITY.md#logs, docs/COMPATIBILITY.md#request-container-restart,
//! docs/COMPATIBILITY.md#container-status).

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

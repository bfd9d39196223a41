//! Routes of the `pools` group: acquire, release, status, scale, cleanup (spec
//! 8.18-8.22).

use super::{Endpoint, endpoint};

pub(super) fn endpoints() -> Vec<Endpoint> {
    vec![
        endpoint!("/orchestrator/processing-pool/acquire" => acquire),
        endpoint!("/orchestrator/processing-pool/release" => release),
        endpoint!("/orchestrator/processing-pool/status" => pool_status),
        endpoint!("/orchestrator/processing-pool/scale" => scale_pool),
        endpoint!("/orchestrator/processing-pool/cleanup" => cleanup_pool),
    ]
}

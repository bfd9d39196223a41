//! Routes of the `pools` group: acquire, release, status, scale, cleanup
//! (docs/COMPATIBILITY.md#acquire-processor to docs/COMPATIBILITY.md#cleanup-pool), and
//! ours: renew and drain (docs/COMPATIBILITY.md#renew-processor,
//! docs/COMPATIBILITY.md#drain-pool).

use super::{Endpoint, endpoint};

pub(super) fn endpoints() -> Vec<Endpoint> {
    vec![
        endpoint!("/orchestrator/processing-pool/acquire" => acquire),
        endpoint!("/orchestrator/processing-pool/release" => release),
        endpoint!("/orchestrator/processing-pool/renew" => renew),
        endpoint!("/orchestrator/processing-pool/drain" => drain_pool),
        endpoint!("/orchestrator/processing-pool/status" => pool_status),
        endpoint!("/orchestrator/processing-pool/scale" => scale_pool),
        endpoint!("/orchestrator/processing-pool/cleanup" => cleanup_pool),
    ]
}

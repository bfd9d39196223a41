//! Request and response models of the orchestrator HTTP API
//! (docs/COMPATIBILITY.md#api-conventions, docs/COMPATIBILITY.md#endpoints,
//! docs/COMPATIBILITY.md#request-and-response-models), with upstream JSON field names,
//! schema defaults, and [`Validate`] for every request. [`enums`] holds every
//! docs/COMPATIBILITY.md#enum-values enum.
//!
//! # Endpoint map
//!
//! Every endpoint is `POST` with a JSON body. The HTTP layer parses the request type and
//! calls [`Validate::validate`] (both in [`decode_request`]; 400 with an [`ApiError`]
//! naming the field on failure), then answers with the response type.
//!
//! | Path | Request | Response |
//! |---|---|---|
//! | `/orchestrator/health/infrastructure` | [`InfrastructureHealthRequest`] | [`InfrastructureHealthResponse`] |
//! | `/orchestrator/health/services` | [`ServiceHealthRequest`] | `ServiceHealthReport` (in [`crate::health`]) |
//! | `/orchestrator/services/restart` | [`ServiceRestartRequest`] | [`ServiceRestartResult`] |
//! | `/orchestrator/services/should-restart` | [`ShouldRestartServiceRequest`] | `RestartRecommendation` (in [`crate::restart`]) |
//! | `/orchestrator/backends/list` | [`ListBackendsRequest`] | [`BackendsResponse`] |
//! | `/orchestrator/presets/list` | [`ListPresetsRequest`] | [`PresetsResponse`] |
//! | `/orchestrator/deploy` | [`DeployRequest`] | [`DeployResponse`] |
//! | `/orchestrator/service-routing` | [`GetServiceRoutingRequest`] | [`ServiceRoutingResponse`] |
//! | `/orchestrator/status` | [`GetStatusRequest`] | [`EnvironmentStatus`] |
//! | `/orchestrator/teardown` | [`TeardownRequest`] | [`TeardownResponse`] |
//! | `/orchestrator/clean` | [`CleanRequest`] | [`CleanResponse`] |
//! | `/orchestrator/logs` | [`GetLogsRequest`] | [`LogsResponse`] |
//! | `/orchestrator/topology` | [`TopologyUpdateRequest`] | [`TopologyUpdateResponse`] |
//! | `/orchestrator/containers/request-restart` | [`ContainerRestartRequestBody`] | [`ContainerRestartResponse`] |
//! | `/orchestrator/containers/status` | [`GetContainerStatusRequest`] | [`ContainerStatus`] |
//! | `/orchestrator/config/rollback` | [`ConfigRollbackRequest`] | [`ConfigRollbackResponse`] |
//! | `/orchestrator/config/version` | [`GetConfigVersionRequest`] | [`ConfigVersionResponse`] |
//! | `/orchestrator/processing-pool/acquire` | [`AcquireProcessorRequest`] | [`AcquireProcessorResponse`] |
//! | `/orchestrator/processing-pool/release` | [`ReleaseProcessorRequest`] | [`ReleaseProcessorResponse`] |
//! | `/orchestrator/processing-pool/status` | [`GetPoolStatusRequest`] | [`PoolStatusResponse`] |
//! | `/orchestrator/processing-pool/scale` | [`ScalePoolRequest`] | [`ScalePoolResponse`] |
//! | `/orchestrator/processing-pool/cleanup` | [`CleanupPoolRequest`] | [`CleanupPoolResponse`] |
//! | `/orchestrator/processing-pool/renew` (ours) | [`RenewProcessorRequest`] | [`RenewProcessorResponse`] |
//! | `/orchestrator/processing-pool/drain` (ours) | [`DrainPoolRequest`] | [`DrainPoolResponse`] |
//! | `/orchestrator/promote` (ours) | [`CanaryActionRequest`] | [`CanaryActionResponse`] |
//! | `/orchestrator/abort` (ours) | [`CanaryActionRequest`] | [`CanaryActionResponse`] |
//!
//! The services-health report (`ServiceHealthReport`, `ServiceHealthEntry`, `Capacity`)
//! and the should-restart response (`RestartRecommendation`) are defined next to the
//! domain logic that builds them, in [`crate::health`] and [`crate::restart`].
//!
//! # Conventions
//!
//! - Null fields are omitted on output (`skip_serializing_if`), as upstream does.
//! - Schema defaults are applied on input and always written on output.
//! - Enums read any spelling and write upstream's runtime spelling (D1 (docs/DECISIONS.md#d1)).
//! - Unknown request fields are accepted and dropped (upstream's serializer ignores them;
//!   docs/COMPATIBILITY.md#api-conventions requires ignored fields to be accepted).
//! - Integers are `i64` so that out-of-range input (`targetInstances: -1`) parses and is
//!   rejected by [`Validate`] with the field named, rather than by serde.
//! - Our extensions are marked **Ours** in their docs: `DeployRequest::strict`,
//!   `DeployRequest::auto_revert`, `DeployRequest::strategy`, `AcquireProcessorRequest::wait_ms`,
//!   `AcquireProcessorResponse::fencing_token`, `ReleaseProcessorRequest::fencing_token`,
//!   `DeployRequest::canary_weight`, `DeployRequest::canary_promote_after_seconds`,
//!   and the renew, drain, promote and abort endpoints.

pub mod backends;
pub mod canary;
pub mod config;
pub mod containers;
mod defaults;
pub mod deploy;
pub mod deploy_strategy;
pub mod enums;
pub mod error;
pub mod infrastructure;
pub mod logs;
pub mod pools;
pub mod presets;
pub mod routing;
pub mod services;
pub mod status;
pub mod topology;
#[cfg(test)]
mod wire_checks;

pub use backends::*;
pub use canary::*;
pub use config::*;
pub use containers::*;
pub use deploy::*;
pub use deploy_strategy::*;
pub use enums::*;
pub use error::{ApiError, FieldError, Validate, decode_request};
pub use infrastructure::*;
pub use logs::*;
pub use pools::*;
pub use presets::*;
pub use routing::*;
pub use services::*;
pub use status::*;
pub use topology::*;

#[cfg(test)]
mod tests {
    use super::*;
    use serde::de::DeserializeOwned;
    use serde_json::json;

    fn parse_and_validate<T: DeserializeOwned + Validate>(
        body: serde_json::Value,
    ) -> Result<(), String> {
        let req: T = serde_json::from_value(body).map_err(|e| e.to_string())?;
        req.validate().map_err(|e| e.to_string())
    }

    #[test]
    fn endpoints_with_all_optional_fields_accept_an_empty_object() {
        // docs/COMPATIBILITY.md#api-conventions: "Empty objects are accepted where all
        // fields are optional".
        let empty = || json!({});
        parse_and_validate::<InfrastructureHealthRequest>(empty()).unwrap();
        parse_and_validate::<ServiceHealthRequest>(empty()).unwrap();
        parse_and_validate::<ListBackendsRequest>(empty()).unwrap();
        parse_and_validate::<ListPresetsRequest>(empty()).unwrap();
        parse_and_validate::<DeployRequest>(empty()).unwrap();
        parse_and_validate::<GetServiceRoutingRequest>(empty()).unwrap();
        parse_and_validate::<GetStatusRequest>(empty()).unwrap();
        parse_and_validate::<TeardownRequest>(empty()).unwrap();
        parse_and_validate::<GetLogsRequest>(empty()).unwrap();
        parse_and_validate::<GetConfigVersionRequest>(empty()).unwrap();
    }

    #[test]
    fn endpoints_with_required_fields_reject_an_empty_object() {
        let empty = || json!({});
        assert!(parse_and_validate::<ServiceRestartRequest>(empty()).is_err());
        assert!(parse_and_validate::<ShouldRestartServiceRequest>(empty()).is_err());
        assert!(parse_and_validate::<CleanRequest>(empty()).is_err());
        assert!(parse_and_validate::<TopologyUpdateRequest>(empty()).is_err());
        assert!(parse_and_validate::<ContainerRestartRequestBody>(empty()).is_err());
        assert!(parse_and_validate::<GetContainerStatusRequest>(empty()).is_err());
        assert!(parse_and_validate::<ConfigRollbackRequest>(empty()).is_err());
        assert!(parse_and_validate::<AcquireProcessorRequest>(empty()).is_err());
        assert!(parse_and_validate::<ReleaseProcessorRequest>(empty()).is_err());
        assert!(parse_and_validate::<GetPoolStatusRequest>(empty()).is_err());
        assert!(parse_and_validate::<ScalePoolRequest>(empty()).is_err());
        assert!(parse_and_validate::<CleanupPoolRequest>(empty()).is_err());
        assert!(parse_and_validate::<RenewProcessorRequest>(empty()).is_err());
        assert!(parse_and_validate::<DrainPoolRequest>(empty()).is_err());
    }

    #[test]
    fn unknown_fields_are_accepted_and_nulls_mean_absent() {
        let req: DeployRequest = serde_json::from_value(
            json!({"preset": null, "topology": null, "backend": null, "futureField": 1}),
        )
        .unwrap();
        assert_eq!(req, DeployRequest::default());
        let req: GetPoolStatusRequest =
            serde_json::from_value(json!({"poolType": "p", "extra": {"a": 1}})).unwrap();
        assert!(req.validate().is_ok());
    }
}

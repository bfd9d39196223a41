//! Small helpers shared by the operations endpoints (`health.rs`, `containers.rs`,
//! `pools.rs`): request validation, and one mapping from each port's error to an HTTP
//! status, so every endpoint answers the same failure the same way.

use std::time::Duration;

use orchestrator_core::api::{FieldError, Validate};
use orchestrator_core::ports::backend::BackendError;
use orchestrator_pools::{LeaseError, PoolType};

use super::ServiceError;

/// Validates `request` again (the HTTP layer already did; a caller inside the process may
/// not have), naming the field at fault.
pub(super) fn validated<R: Validate>(request: &R) -> Result<(), ServiceError> {
    request.validate().map_err(ServiceError::field)
}

/// The request's `poolType` as a pool name (400 naming `poolType` when it is not one).
pub(super) fn pool_type(name: &str) -> Result<PoolType, ServiceError> {
    PoolType::new(name.trim())
        .map_err(|e| ServiceError::field(FieldError::new("poolType", e.reason)))
}

/// A lease-store failure as an HTTP answer: unknown things are 404, refusals of the
/// caller's state (stale token, expired lease, full pool) 409, an unreachable store 503.
/// Callers with endpoint-specific meanings (an unknown pool on acquire is 429) match first.
pub(super) fn lease_error(e: LeaseError) -> ServiceError {
    match e {
        LeaseError::UnknownPool { .. }
        | LeaseError::UnknownLease { .. }
        | LeaseError::UnknownWorker { .. } => ServiceError::not_found(e.to_string()),
        LeaseError::StaleFencingToken { .. }
        | LeaseError::LeaseExpired { .. }
        | LeaseError::AtCapacity { .. }
        | LeaseError::WorkerConflict { .. } => ServiceError::conflict(e.to_string()),
        LeaseError::Unavailable { message } => {
            ServiceError::unavailable(format!("Redis unavailable: {message}"))
        }
        other => ServiceError::internal(format!("lease store: {other}")),
    }
}

/// A container-backend failure as an HTTP answer: a missing node 404, an unreachable
/// runtime 503, a clash with existing state 409, an operation the backend cannot do 400,
/// anything the runtime reported 500.
pub(super) fn backend_error(e: BackendError) -> ServiceError {
    match &e {
        BackendError::NotFound { .. } => ServiceError::not_found(e.to_string()),
        BackendError::Unavailable { .. } => {
            ServiceError::unavailable(format!("container backend {e}"))
        }
        BackendError::Conflict { .. } => ServiceError::conflict(e.to_string()),
        BackendError::Unsupported { .. } => ServiceError::bad_request(e.to_string()),
        BackendError::Runtime { .. } => ServiceError::internal(format!("container backend {e}")),
    }
}

/// Parses an age such as `24h`, `90m`, `30s` or `7d` (whole numbers only); `None` for
/// anything else, so an unparsable `olderThan` falls back to the configured threshold.
pub(super) fn parse_age(text: &str) -> Option<Duration> {
    let text = text.trim();
    let unit = text.chars().last()?;
    let secs_per_unit = match unit.to_ascii_lowercase() {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return None,
    };
    let n: u64 = text[..text.len() - unit.len_utf8()].trim().parse().ok()?;
    n.checked_mul(secs_per_unit).map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use orchestrator_core::AppId;

    #[test]
    fn ages_parse_in_whole_units_and_reject_the_rest() {
        assert_eq!(parse_age("24h"), Some(Duration::from_secs(86_400)));
        assert_eq!(parse_age(" 90m "), Some(Duration::from_secs(5400)));
        assert_eq!(parse_age("7d"), Some(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_age("30s"), Some(Duration::from_secs(30)));
        for bad in ["", "h", "1.5h", "-1h", "10", "10w", "2026-01-01T00:00:00Z"] {
            assert_eq!(parse_age(bad), None, "{bad}");
        }
    }

    #[test]
    fn errors_map_to_their_statuses() {
        let pool = PoolType::new("p").unwrap();
        assert_eq!(lease_error(LeaseError::UnknownPool { pool }).status, 404);
        let e = lease_error(LeaseError::Unavailable {
            message: "connection refused".into(),
        });
        assert_eq!(e.status, 503);
        assert_eq!(e.body.error, "Redis unavailable: connection refused");
        let app = AppId::new("bannou-auth");
        assert_eq!(
            backend_error(BackendError::NotFound { app_id: app }).status,
            404
        );
        assert_eq!(
            backend_error(BackendError::Unavailable {
                reason: "socket missing".into()
            })
            .status,
            503
        );
        assert_eq!(
            backend_error(BackendError::Runtime {
                message: "boom".into()
            })
            .status,
            500
        );
        assert_eq!(
            pool_type("bad name!").unwrap_err().body.field.as_deref(),
            Some("poolType")
        );
    }
}

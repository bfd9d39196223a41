//! One mapping from each failure the use cases meet (store, lease store, container
//! backend, preset library) to a [`ServiceError`], so every endpoint answers the same
//! failure the same way.

use orchestrator_core::api::FieldError;
use orchestrator_core::ports::backend::BackendError;
use orchestrator_core::ports::store::StoreError;
use orchestrator_core::preset::LibraryError;
use orchestrator_pools::LeaseError;

use super::ServiceError;

/// A store failure as the API answers it (503 unavailable, 500 corrupt, 409 conflict).
pub(super) fn store_error(e: StoreError) -> ServiceError {
    ServiceError::new(e.status_code(), e.to_string())
}

/// Library failures as API answers: a missing preset is 404, a bad name or an invalid
/// file 400 (with file, line and column), an unreadable one 500.
pub(super) fn library_error(e: LibraryError) -> ServiceError {
    match e {
        LibraryError::NotFound { .. } => ServiceError::not_found(e.to_string()),
        LibraryError::InvalidName { .. } => {
            ServiceError::field(FieldError::new("preset", e.to_string()))
        }
        LibraryError::Invalid(_) => ServiceError::bad_request(e.to_string()),
        LibraryError::Io { .. } => {
            let detail = std::error::Error::source(&e)
                .map(|s| format!(": {s}"))
                .unwrap_or_default();
            ServiceError::internal(format!("{e}{detail}"))
        }
    }
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
        | LeaseError::WorkerDraining { .. }
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

#[cfg(test)]
mod tests {
    use orchestrator_core::AppId;
    use orchestrator_pools::PoolType;

    use super::*;

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
    }
}

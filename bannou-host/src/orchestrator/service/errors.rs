//! The service's error, [`ServiceError`]: a kind of failure with the error body of D18
//! and its cause, and one mapping from each failure the use cases meet (store, lease
//! store, container backend, preset library) to it, so every endpoint answers the same
//! failure the same way. Kinds become HTTP statuses only in `crate::api` (decision D61,
//! docs/DECISIONS.md#d61); the body text quotes the cause, `source()` keeps it.

use orchestrator_core::api::{ApiError, FieldError};
use orchestrator_core::config_history::RollbackError;
use orchestrator_core::error_source::ErrorSource;
use orchestrator_core::ports::backend::BackendError;
use orchestrator_core::ports::store::{ConfigRollbackError, StoreError};
use orchestrator_core::preset::LibraryError;
use orchestrator_pools::LeaseError;

/// What kind of failure a [`ServiceError`] is; `crate::api` turns each kind into its HTTP
/// status, in one place (decision D61, docs/DECISIONS.md#d61).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The request is invalid (a bad value, a missing or unknown thing it names in its
    /// body); `body.field` names the field when there is one.
    Invalid,
    /// The thing the request is about does not exist.
    NotFound,
    /// The request clashes with the current state (a deploy running, a stale token).
    Conflict,
    /// Nothing is free to serve the request now (no processor in the pool); try later.
    Busy,
    /// A dependency (the state store, the container backend) did not answer.
    Unavailable,
    /// Our side failed (corrupt data, a runtime error, a bug).
    Internal,
}

/// A refused or failed request: its [`ErrorKind`], the small error body of D18
/// (docs/DECISIONS.md#d18) (`{"error": "...", "field": "..."}`) and the error that caused
/// it, if any (kept for logs and `source()`; the body already quotes it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", body.error)]
pub struct ServiceError {
    /// What kind of failure it is.
    pub kind: ErrorKind,
    /// The error body.
    pub body: ApiError,
    /// The error it comes from.
    #[source]
    source: Option<ErrorSource>,
}

impl ServiceError {
    /// An error of `kind` with `message`.
    pub fn of(kind: ErrorKind, message: impl Into<String>) -> Self {
        ServiceError {
            kind,
            body: ApiError::new(message),
            source: None,
        }
    }

    /// Keeps `source` as the cause (its text should already be in the message).
    pub fn caused_by(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(ErrorSource::new(source));
        self
    }

    /// An invalid request naming the request field at fault.
    pub fn field(e: FieldError) -> Self {
        ServiceError {
            kind: ErrorKind::Invalid,
            body: e.into(),
            source: None,
        }
    }

    /// An invalid request ([`ErrorKind::Invalid`]).
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::of(ErrorKind::Invalid, message)
    }

    /// [`ErrorKind::NotFound`].
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::of(ErrorKind::NotFound, message)
    }

    /// [`ErrorKind::Conflict`].
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::of(ErrorKind::Conflict, message)
    }

    /// [`ErrorKind::Busy`]: nothing free now.
    pub fn busy(message: impl Into<String>) -> Self {
        Self::of(ErrorKind::Busy, message)
    }

    /// [`ErrorKind::Internal`].
    pub fn internal(message: impl Into<String>) -> Self {
        Self::of(ErrorKind::Internal, message)
    }

    /// [`ErrorKind::Unavailable`]: a dependency (Redis, the backend) did not answer.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::of(ErrorKind::Unavailable, message)
    }
}

/// A store failure: unavailable, corrupt (internal), a lost compare-and-set (conflict) or
/// a bad argument of ours (internal).
pub(super) fn store_error(e: StoreError) -> ServiceError {
    let kind = match &e {
        StoreError::Unavailable { .. } => ErrorKind::Unavailable,
        StoreError::Conflict { .. } => ErrorKind::Conflict,
        _ => ErrorKind::Internal,
    };
    ServiceError::of(kind, e.to_string()).caused_by(e)
}

/// A refused rollback is invalid (nothing to roll back, a bad target) or not found (the
/// target expired); a store failure as [`store_error`].
pub(super) fn rollback_error(e: ConfigRollbackError) -> ServiceError {
    match e {
        ConfigRollbackError::Rejected(r) => {
            let kind = match r {
                RollbackError::NotFound { .. } => ErrorKind::NotFound,
                RollbackError::NothingToRollBack { .. } | RollbackError::InvalidTarget { .. } => {
                    ErrorKind::Invalid
                }
            };
            ServiceError::of(kind, r.to_string())
        }
        ConfigRollbackError::Store(s) => store_error(s),
    }
}

/// Library failures: a missing preset is not found, a bad name or an invalid file invalid
/// (with file, line and column), an unreadable one internal.
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
            ServiceError::internal(format!("{e}{detail}")).caused_by(e)
        }
    }
}

/// A lease-store failure: unknown things are not found, refusals of the caller's state
/// (stale token, expired lease, full pool) conflicts, an unreachable store unavailable.
/// Callers with endpoint-specific meanings (an unknown pool on acquire is busy) match
/// first.
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
        LeaseError::Unavailable { ref message, .. } => {
            ServiceError::unavailable(format!("Redis unavailable: {message}")).caused_by(e)
        }
        other => ServiceError::internal(format!("lease store: {other}")).caused_by(other),
    }
}

/// A container-backend failure: a missing node is not found, an unreachable runtime
/// unavailable, a clash with existing state a conflict, an operation the backend cannot
/// do invalid, anything the runtime reported internal.
pub(super) fn backend_error(e: BackendError) -> ServiceError {
    match &e {
        BackendError::NotFound { .. } => ServiceError::not_found(e.to_string()),
        BackendError::Unavailable { .. } => {
            ServiceError::unavailable(format!("container backend {e}")).caused_by(e)
        }
        BackendError::Conflict { .. } => ServiceError::conflict(e.to_string()),
        BackendError::Unsupported { .. } => ServiceError::bad_request(e.to_string()),
        BackendError::Runtime { .. } => {
            ServiceError::internal(format!("container backend {e}")).caused_by(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use orchestrator_core::AppId;
    use orchestrator_pools::PoolType;

    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("connection refused")]
    struct Refused;

    #[test]
    fn errors_map_to_their_kinds() {
        let pool = PoolType::new("p").unwrap();
        assert_eq!(
            lease_error(LeaseError::UnknownPool { pool }).kind,
            ErrorKind::NotFound
        );
        let e = lease_error(LeaseError::unavailable("connection refused"));
        assert_eq!(e.kind, ErrorKind::Unavailable);
        assert_eq!(e.body.error, "Redis unavailable: connection refused");
        let app = AppId::new("bannou-auth");
        assert_eq!(
            backend_error(BackendError::NotFound { app_id: app }).kind,
            ErrorKind::NotFound
        );
        assert_eq!(
            backend_error(BackendError::unavailable("socket missing")).kind,
            ErrorKind::Unavailable
        );
        assert_eq!(
            backend_error(BackendError::runtime("boom")).kind,
            ErrorKind::Internal
        );
        let conflict = StoreError::Conflict {
            key: "k".into(),
            message: "m".into(),
        };
        assert_eq!(store_error(conflict).kind, ErrorKind::Conflict);
        assert_eq!(
            store_error(StoreError::corrupt("k", "m")).kind,
            ErrorKind::Internal
        );
        let missing = rollback_error(RollbackError::NotFound { version: 3 }.into());
        assert_eq!(missing.kind, ErrorKind::NotFound);
        let invalid = rollback_error(RollbackError::NothingToRollBack { current: 1 }.into());
        assert_eq!(invalid.kind, ErrorKind::Invalid);
    }

    #[test]
    fn the_cause_chain_reaches_the_client_error() {
        let e = backend_error(BackendError::unavailable_from(
            "socket: connection refused",
            Refused,
        ));
        assert_eq!(
            e.body.error, "container backend backend unavailable: socket: connection refused",
            "the body is the text it always was"
        );
        let port = std::error::Error::source(&e).expect("the port error is kept");
        let client = port.source().expect("the client error is kept");
        assert!(client.downcast_ref::<Refused>().is_some(), "{client:?}");
        let e = lease_error(LeaseError::unavailable_from(Refused));
        let client = std::error::Error::source(&e)
            .and_then(|port| port.source())
            .expect("the client error is kept");
        assert!(client.downcast_ref::<Refused>().is_some(), "{client:?}");
    }
}

//! The one place where a [`ServiceError`]'s kind, or an answer's [`Outcome`], becomes an
//! HTTP status (decision D61,
//! docs/DECISIONS.md#d61). Below `crate::api` errors carry kinds, never status codes;
//! the body (`{"error", "field"}`, D18) is the error's own and is sent unchanged.

use axum::http::StatusCode;

use crate::orchestrator::service::{ErrorKind, Outcome, ServiceError};

/// The HTTP status of an answer that carries a body: 200, or upstream's 500 and 404 with
/// a body (docs/COMPATIBILITY.md#deploy, docs/COMPATIBILITY.md#container-status).
pub fn outcome_status(outcome: Outcome) -> u16 {
    match outcome {
        Outcome::Ok => 200,
        Outcome::Failed => 500,
        Outcome::NotFound => 404,
    }
}

/// The HTTP status of an error `kind`.
pub fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::Invalid => StatusCode::BAD_REQUEST,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::Busy => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl ServiceError {
    /// The HTTP status this error is answered with ([`status_of`] its kind).
    pub fn status(&self) -> u16 {
        status_of(self.kind).as_u16()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_has_its_status() {
        for (kind, status) in [
            (ErrorKind::Invalid, 400),
            (ErrorKind::NotFound, 404),
            (ErrorKind::Conflict, 409),
            (ErrorKind::Busy, 429),
            (ErrorKind::Unavailable, 503),
            (ErrorKind::Internal, 500),
        ] {
            assert_eq!(status_of(kind).as_u16(), status, "{kind:?}");
            assert_eq!(ServiceError::of(kind, "x").status(), status, "{kind:?}");
        }
        let field = ServiceError::field(orchestrator_core::api::FieldError::new("mode", "bad"));
        assert_eq!(field.status(), 400);
    }
}

//! [`Unoffered`]: a backend detection found unusable on this host (no credentials, no URL,
//! no engine client), registered in its priority place so that the backends list shows
//! why (the reasons of docs/COMPATIBILITY.md#backend-detection, such as `No Kubernetes
//! credentials found`), and a request naming it is refused with that reason instead of "not
//! configured".

use orchestrator_core::events::BackendType;
use orchestrator_core::ports::backend::{Availability, BackendError};

/// A backend of `kind` that is never available, for `reason`. Every operation fails
/// with [`BackendError::Unavailable`] carrying the reason.
#[derive(Debug, Clone)]
pub struct Unoffered {
    kind: BackendType,
    reason: String,
}

impl Unoffered {
    /// `kind`, unusable because of `reason`.
    pub fn new(kind: BackendType, reason: impl Into<String>) -> Self {
        Unoffered {
            kind,
            reason: reason.into(),
        }
    }

    /// Why it is unusable.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    fn refuse<T>(&self) -> Result<T, BackendError> {
        Err(BackendError::unavailable(self.reason.clone()))
    }
}

container_backend! {
    impl for Unoffered {
        fn backend_type(&self) -> BackendType {
            self.kind
        }

        async fn check_availability(&self) -> Availability {
            Availability::unavailable(self.reason.clone())
        }
    }
    (refuse refuse)
    [deploy_node, teardown, scale, restart, status, list, logs, list_infrastructure, prune]
}

#[cfg(test)]
mod tests {
    use super::*;
    use orchestrator_core::AppId;
    use orchestrator_core::ports::backend::ContainerBackend;

    #[tokio::test]
    async fn every_operation_says_why() {
        let b = Unoffered::new(BackendType::Kubernetes, "No Kubernetes credentials found");
        assert_eq!(b.backend_type(), BackendType::Kubernetes);
        let a = b.check_availability().await;
        assert!(!a.available);
        assert_eq!(a.reason.as_deref(), Some("No Kubernetes credentials found"));
        let app = AppId::from("x");
        for e in [
            b.list().await.unwrap_err(),
            b.status(&app).await.unwrap_err(),
            b.scale(&app, 2).await.unwrap_err(),
        ] {
            assert_eq!(
                e.to_string(),
                "backend unavailable: No Kubernetes credentials found"
            );
        }
    }
}

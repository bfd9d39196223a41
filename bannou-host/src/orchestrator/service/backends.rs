//! The container backends a host can drive, in detection priority order, and the active
//! one (D6 (docs/DECISIONS.md#d6): the backend of the last deploy is used by every endpoint).

use std::sync::{Arc, Mutex, PoisonError};

use orchestrator_core::events::BackendType;
use orchestrator_core::ports::backend::{Availability, ContainerBackend};

use super::ServiceError;

/// One candidate backend and what detection said about it.
#[derive(Debug, Clone)]
pub struct Detected {
    /// The backend's type.
    pub backend_type: BackendType,
    /// 1 = best.
    pub priority: u32,
    /// What its availability check answered.
    pub availability: Availability,
}

/// The backends of this host, best first, and the active one.
pub struct BackendRegistry {
    backends: Vec<Arc<dyn ContainerBackend>>,
    default_backend: BackendType,
    active: Mutex<Option<BackendType>>,
}

impl BackendRegistry {
    /// A registry over `backends` (best first). `default_backend` (`DefaultBackend`) is
    /// used when a request names none and nothing has been deployed yet; when it is not
    /// among `backends`, the first available one is.
    pub fn new(backends: Vec<Arc<dyn ContainerBackend>>, default_backend: BackendType) -> Self {
        BackendRegistry {
            backends,
            default_backend,
            active: Mutex::new(None),
        }
    }

    /// Every registered backend, best first.
    pub fn all(&self) -> &[Arc<dyn ContainerBackend>] {
        &self.backends
    }

    /// The registered backend of `kind`.
    pub fn get(&self, kind: BackendType) -> Option<Arc<dyn ContainerBackend>> {
        self.backends
            .iter()
            .find(|b| b.backend_type() == kind)
            .cloned()
    }

    /// Runs every availability check (concurrently), best first.
    pub async fn detect(&self) -> Vec<Detected> {
        let checks = self.backends.iter().map(|b| b.check_availability());
        let results = futures::future::join_all(checks).await;
        self.backends
            .iter()
            .zip(results)
            .enumerate()
            .map(|(i, (b, availability))| Detected {
                backend_type: b.backend_type(),
                priority: i as u32 + 1,
                availability,
            })
            .collect()
    }

    /// `DefaultBackend` when it is registered (available or not).
    pub fn default_type(&self) -> Option<BackendType> {
        self.get(self.default_backend).map(|_| self.default_backend)
    }

    /// The backend of the last deploy, if any (D6).
    pub fn active_type(&self) -> Option<BackendType> {
        *self.active.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records `kind` as the active backend (after a deploy that used it).
    pub fn set_active(&self, kind: BackendType) {
        *self.active.lock().unwrap_or_else(PoisonError::into_inner) = Some(kind);
    }

    /// The backend for a request that names `requested` (or none): the named one, else
    /// the active one, else `DefaultBackend`, else the first available. A named backend
    /// that is not registered or not available is a 400 naming why; an unavailable
    /// `DefaultBackend` a 503 naming why.
    pub async fn select(
        &self,
        requested: Option<BackendType>,
    ) -> Result<Arc<dyn ContainerBackend>, ServiceError> {
        if let Some(kind) = requested {
            let backend = self.get(kind).ok_or_else(|| {
                ServiceError::bad_request(format!(
                    "backend {kind} is not configured on this host (have: {})",
                    self.names()
                ))
            })?;
            let availability = backend.check_availability().await;
            if !availability.available {
                return Err(ServiceError::bad_request(format!(
                    "backend {kind} is not available: {}",
                    availability.reason.as_deref().unwrap_or("no reason given")
                )));
            }
            return Ok(backend);
        }
        if let Some(b) = self.active_type().and_then(|k| self.get(k)) {
            return Ok(b);
        }
        if let Some(b) = self.get(self.default_backend) {
            let availability = b.check_availability().await;
            if availability.available {
                return Ok(b);
            }
            // A configured default that cannot work is said, not replaced silently.
            return Err(ServiceError::unavailable(format!(
                "the default backend {} (ORCHESTRATOR_DEFAULT_BACKEND) is not available: {}",
                self.default_backend,
                availability.reason.as_deref().unwrap_or("no reason given")
            )));
        }
        for b in &self.backends {
            if b.check_availability().await.available {
                return Ok(b.clone());
            }
        }
        Err(ServiceError::unavailable(format!(
            "no container backend is available (have: {})",
            self.names()
        )))
    }

    fn names(&self) -> String {
        let names: Vec<String> = self
            .backends
            .iter()
            .map(|b| b.backend_type().to_string())
            .collect();
        if names.is_empty() {
            "none".to_owned()
        } else {
            names.join(", ")
        }
    }
}

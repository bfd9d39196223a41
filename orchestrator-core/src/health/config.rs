//! Timing rules of the heartbeat aggregator, validated on construction.

use std::time::Duration;

/// Why a [`HealthConfig`] was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HealthConfigError {
    /// `HeartbeatTimeoutSeconds` must be at least one second.
    #[error("heartbeat timeout must be at least 1 second, got {0:?}")]
    TimeoutTooShort(Duration),
    /// `DegradationThresholdMinutes` must be positive.
    #[error("degradation threshold must be positive, got {0:?}")]
    ZeroThreshold(Duration),
    /// Silent instances must be kept at least until they are reported unavailable.
    #[error("retention {retention:?} is shorter than the heartbeat timeout {timeout:?}")]
    RetentionBelowTimeout {
        /// The rejected retention.
        retention: Duration,
        /// The heartbeat timeout it must not undercut.
        timeout: Duration,
    },
}

/// Timing rules of the aggregator (docs/COMPATIBILITY.md#configuration-variables names in
/// brackets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthConfig {
    /// An instance silent for longer than this is unavailable [`HeartbeatTimeoutSeconds`, 90 s].
    pub heartbeat_timeout: Duration,
    /// How long a service may stay degraded before a restart is recommended
    /// [`DegradationThresholdMinutes`, 5 min].
    pub degradation_threshold: Duration,
    /// How long a silent instance is kept (and reported unavailable) before
    /// [`HeartbeatAggregator::evict_stale`](super::HeartbeatAggregator::evict_stale) forgets it; default 10 x the timeout.
    pub retention: Duration,
}

impl HealthConfig {
    /// Default `HeartbeatTimeoutSeconds`.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(90);
    /// Default `DegradationThresholdMinutes`.
    pub const DEFAULT_THRESHOLD: Duration = Duration::from_secs(5 * 60);
    /// Default retention as a multiple of the timeout.
    pub const RETENTION_FACTOR: u32 = 10;

    /// A validated config with retention = 10 x `heartbeat_timeout`.
    pub fn new(
        heartbeat_timeout: Duration,
        degradation_threshold: Duration,
    ) -> Result<Self, HealthConfigError> {
        let retention = heartbeat_timeout.saturating_mul(Self::RETENTION_FACTOR);
        Self {
            heartbeat_timeout,
            degradation_threshold,
            retention,
        }
        .validated()
    }

    /// From the upstream settings `HeartbeatTimeoutSeconds` and `DegradationThresholdMinutes`.
    pub fn from_settings(
        timeout_seconds: u64,
        threshold_minutes: u64,
    ) -> Result<Self, HealthConfigError> {
        Self::new(
            Duration::from_secs(timeout_seconds),
            Duration::from_secs(threshold_minutes.saturating_mul(60)),
        )
    }

    /// The same config with another retention.
    pub fn with_retention(self, retention: Duration) -> Result<Self, HealthConfigError> {
        Self { retention, ..self }.validated()
    }

    fn validated(self) -> Result<Self, HealthConfigError> {
        if self.heartbeat_timeout < Duration::from_secs(1) {
            return Err(HealthConfigError::TimeoutTooShort(self.heartbeat_timeout));
        }
        if self.degradation_threshold.is_zero() {
            return Err(HealthConfigError::ZeroThreshold(self.degradation_threshold));
        }
        if self.retention < self.heartbeat_timeout {
            return Err(HealthConfigError::RetentionBelowTimeout {
                retention: self.retention,
                timeout: self.heartbeat_timeout,
            });
        }
        Ok(self)
    }
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            heartbeat_timeout: Self::DEFAULT_TIMEOUT,
            degradation_threshold: Self::DEFAULT_THRESHOLD,
            retention: Self::DEFAULT_TIMEOUT.saturating_mul(Self::RETENTION_FACTOR),
        }
    }
}

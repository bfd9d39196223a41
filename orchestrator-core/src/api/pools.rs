//! Processing-pool endpoints (docs/COMPATIBILITY.md#processing-pools), with our acquire extensions:
//! bounded waiting (`waitMs`) and lease fencing tokens (`fencingToken`), D28
//! (docs/DECISIONS.md#d28), and our renew and drain endpoints, D60 (docs/DECISIONS.md#d60).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::defaults::yes;
use super::error::{FieldError, Validate, at_least, in_range, non_empty};
use crate::time::Timestamp;

/// Longest `waitMs` an acquire may ask for (ours): one minute keeps a waiting request well
/// inside common HTTP client timeouts.
pub const MAX_ACQUIRE_WAIT_MS: i64 = 60_000;

/// Whole seconds as a duration; negative values (rejected by validation) become zero.
fn secs(n: i64) -> Duration {
    Duration::from_secs(u64::try_from(n).unwrap_or(0))
}

// === AcquireProcessor (docs/COMPATIBILITY.md#acquire-processor) ===

/// `POST /orchestrator/processing-pool/acquire` request (`AcquireProcessorRequest`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AcquireProcessorRequest {
    /// Pool to take a worker from (required, non-empty).
    pub pool_type: String,
    /// Higher is more urgent, at least 0 (default 0). Ours: waiting requests are served
    /// by priority, then arrival (upstream stores it only).
    #[serde(default)]
    pub priority: i64,
    /// Lease duration in seconds, at least 1 (default 300).
    #[serde(default = "default_lease_secs")]
    pub timeout_seconds: i64,
    /// Job metadata stored on the lease.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
    /// **Ours.** How long to wait for a free worker, in milliseconds, 0 to
    /// [`MAX_ACQUIRE_WAIT_MS`] (default 0: answer at once, as upstream). Not the lease
    /// duration, which stays `timeoutSeconds`.
    #[serde(default)]
    pub wait_ms: i64,
}

const fn default_lease_secs() -> i64 {
    300
}

impl AcquireProcessorRequest {
    /// A request for `pool_type` with schema defaults.
    pub fn new(pool_type: impl Into<String>) -> Self {
        AcquireProcessorRequest {
            pool_type: pool_type.into(),
            priority: 0,
            timeout_seconds: 300,
            metadata: None,
            wait_ms: 0,
        }
    }

    /// The lease duration (`timeoutSeconds`).
    pub fn lease_duration(&self) -> Duration {
        secs(self.timeout_seconds)
    }

    /// How long to wait for a worker (`waitMs`); zero means answer at once.
    pub fn wait(&self) -> Duration {
        Duration::from_millis(u64::try_from(self.wait_ms).unwrap_or(0))
    }
}

impl Validate for AcquireProcessorRequest {
    fn validate(&self) -> Result<(), FieldError> {
        non_empty("poolType", &self.pool_type)?;
        at_least("priority", self.priority, 0)?;
        at_least("timeoutSeconds", self.timeout_seconds, 1)?;
        in_range("waitMs", self.wait_ms, 0, MAX_ACQUIRE_WAIT_MS)
    }
}

/// `POST /orchestrator/processing-pool/acquire` response (`AcquireProcessorResponse`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AcquireProcessorResponse {
    /// The leased worker.
    pub processor_id: String,
    /// App-id to invoke the worker at.
    pub app_id: String,
    /// Lease id, needed to release.
    pub lease_id: Uuid,
    /// When the lease lapses.
    pub expires_at: Timestamp,
    /// **Ours.** Strictly increasing per pool with every lease granted; a worker that
    /// sees a token lower than one it already served is talking to a stale lease holder.
    /// Absent from upstream responses, hence 0 when missing on input.
    #[serde(default)]
    pub fencing_token: u64,
}

// === ReleaseProcessor (docs/COMPATIBILITY.md#release-processor) ===

/// `POST /orchestrator/processing-pool/release` request (`ReleaseProcessorRequest`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseProcessorRequest {
    /// The lease to end (UUID; malformed text fails parsing).
    pub lease_id: Uuid,
    /// Whether the job succeeded (default true).
    #[serde(default = "yes")]
    pub success: bool,
    /// Ignored job metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<serde_json::Map<String, serde_json::Value>>,
    /// **Ours.** The `fencingToken` the acquire answered with. When given, a release whose
    /// token is not the lease's current one is refused (409): the caller is a stale
    /// holder. Absent (upstream clients), the release is not fenced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fencing_token: Option<u64>,
}

impl ReleaseProcessorRequest {
    /// A successful, unfenced release of `lease_id`.
    pub fn new(lease_id: Uuid) -> Self {
        ReleaseProcessorRequest {
            lease_id,
            success: true,
            metrics: None,
            fencing_token: None,
        }
    }
}

impl Validate for ReleaseProcessorRequest {
    fn validate(&self) -> Result<(), FieldError> {
        if self.lease_id.is_nil() {
            return Err(FieldError::new("leaseId", "must not be the nil UUID"));
        }
        Ok(())
    }
}

/// `POST /orchestrator/processing-pool/release` response (`ReleaseProcessorResponse`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseProcessorResponse {
    /// The worker returned to the pool.
    pub processor_id: String,
}

// === RenewProcessor (ours, docs/COMPATIBILITY.md#renew-processor) ===

/// Longest extension one renew may ask for (ours): a day. Pools configure no longest
/// lease, so this bounds each step; a holder renews again as it goes.
pub const MAX_RENEW_SECONDS: i64 = 86_400;

/// **Ours.** `POST /orchestrator/processing-pool/renew` request: pushes a lease's expiry
/// back (D60 (docs/DECISIONS.md#d60)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RenewProcessorRequest {
    /// The lease to extend (UUID).
    pub lease_id: Uuid,
    /// The `fencingToken` the acquire answered with (required): a token that is not the
    /// lease's is refused (409) and counted.
    pub fencing_token: u64,
    /// Seconds added to the lease's current expiry, 1 to [`MAX_RENEW_SECONDS`] (default
    /// 300).
    #[serde(default = "default_lease_secs")]
    pub extend_seconds: i64,
    /// The lease's pool, when the caller knows it (default: looked up as a release does).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool_type: Option<String>,
}

impl RenewProcessorRequest {
    /// A renew of `lease_id` with `fencing_token` by the default 300 seconds.
    pub fn new(lease_id: Uuid, fencing_token: u64) -> Self {
        RenewProcessorRequest {
            lease_id,
            fencing_token,
            extend_seconds: default_lease_secs(),
            pool_type: None,
        }
    }

    /// How far the expiry moves (`extendSeconds`).
    pub fn extend_by(&self) -> Duration {
        secs(self.extend_seconds)
    }
}

impl Validate for RenewProcessorRequest {
    fn validate(&self) -> Result<(), FieldError> {
        if self.lease_id.is_nil() {
            return Err(FieldError::new("leaseId", "must not be the nil UUID"));
        }
        if let Some(pool) = &self.pool_type {
            non_empty("poolType", pool)?;
        }
        in_range("extendSeconds", self.extend_seconds, 1, MAX_RENEW_SECONDS)
    }
}

/// **Ours.** `POST /orchestrator/processing-pool/renew` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RenewProcessorResponse {
    /// The leased worker.
    pub processor_id: String,
    /// Its app-id.
    pub app_id: String,
    /// The lease.
    pub lease_id: Uuid,
    /// The new expiry.
    pub expires_at: Timestamp,
    /// The lease's fencing token (unchanged by a renew).
    pub fencing_token: u64,
}

// === DrainPool (ours, docs/COMPATIBILITY.md#drain-pool) ===

/// Longest drain deadline a request may ask for (ours): a day.
pub const MAX_DRAIN_SECONDS: i64 = 86_400;

/// **Ours.** `POST /orchestrator/processing-pool/drain` request: takes one worker, or
/// every worker of a pool, out of service without stopping a job
/// (D60 (docs/DECISIONS.md#d60)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DrainPoolRequest {
    /// The pool (required, non-empty).
    pub pool_type: String,
    /// The worker to drain, by processor id or app-id; absent: every worker of the pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processor_id: Option<String>,
    /// How long a busy worker may keep its lease, 1 to [`MAX_DRAIN_SECONDS`] seconds
    /// (default: `ORCHESTRATOR_POOL_DRAIN_TIMEOUT_SECONDS`, 300).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_seconds: Option<i64>,
}

impl DrainPoolRequest {
    /// A drain of every worker of `pool_type`, with the default deadline.
    pub fn new(pool_type: impl Into<String>) -> Self {
        DrainPoolRequest {
            pool_type: pool_type.into(),
            processor_id: None,
            deadline_seconds: None,
        }
    }

    /// The deadline asked for (`deadlineSeconds`), if any.
    pub fn deadline(&self) -> Option<Duration> {
        self.deadline_seconds.map(secs)
    }
}

impl Validate for DrainPoolRequest {
    fn validate(&self) -> Result<(), FieldError> {
        non_empty("poolType", &self.pool_type)?;
        if let Some(worker) = &self.processor_id {
            non_empty("processorId", worker)?;
        }
        match self.deadline_seconds {
            Some(d) => in_range("deadlineSeconds", d, 1, MAX_DRAIN_SECONDS),
            None => Ok(()),
        }
    }
}

/// **Ours.** `POST /orchestrator/processing-pool/drain` response.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DrainPoolResponse {
    /// App-ids of the workers stopped at once (idle or starting).
    #[serde(default)]
    pub removed: Vec<String>,
    /// App-ids of the busy workers left to finish: never leased again, stopped once their
    /// lease ends, at `deadline` at the latest.
    #[serde(default)]
    pub draining: Vec<String>,
    /// When the draining workers' leases end at the latest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<Timestamp>,
}

// === GetPoolStatus (docs/COMPATIBILITY.md#pool-status) ===

/// `POST /orchestrator/processing-pool/status` request (`GetPoolStatusRequest`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetPoolStatusRequest {
    /// Pool to report (required, non-empty).
    pub pool_type: String,
    /// Include `recentMetrics` (default true).
    #[serde(default = "yes")]
    pub include_metrics: bool,
}

impl Validate for GetPoolStatusRequest {
    fn validate(&self) -> Result<(), FieldError> {
        non_empty("poolType", &self.pool_type)
    }
}

/// `POST /orchestrator/processing-pool/status` response (`PoolStatusResponse`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolStatusResponse {
    /// Workers in the pool.
    pub total_instances: i64,
    /// Workers ready for a lease.
    pub available_instances: i64,
    /// Workers leased.
    pub busy_instances: i64,
    /// Requests waiting for a worker (ours: acquires blocked in `waitMs`).
    #[serde(default)]
    pub queue_depth: i64,
    /// busy / max(total, 1), 0.0 to 1.0.
    pub utilization: f64,
    /// Configured minimum (1 without configuration).
    #[serde(default)]
    pub min_instances: i64,
    /// Configured maximum (5 without configuration).
    #[serde(default)]
    pub max_instances: i64,
    /// Configured scale-up utilisation threshold.
    #[serde(default)]
    pub scale_up_threshold: f64,
    /// Recent figures, when requested and recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recent_metrics: Option<PoolMetrics>,
    /// Ours only: median duration (ms) of the recent acquires this replica granted for the
    /// pool (a bounded window); absent before the first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recent_acquire_p50_ms: Option<f64>,
    /// Ours only: 99th percentile of the same window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recent_acquire_p99_ms: Option<f64>,
}

/// Recent pool figures (`PoolMetrics`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolMetrics {
    /// Jobs completed in the current one-hour window.
    #[serde(default, rename = "jobsCompleted1h")]
    pub jobs_completed_1h: i64,
    /// Jobs failed in the current one-hour window.
    #[serde(default, rename = "jobsFailed1h")]
    pub jobs_failed_1h: i64,
    /// Average lease duration of released jobs, ms.
    #[serde(default)]
    pub avg_processing_time_ms: i64,
    /// Last scale event; `None` when never scaled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scale_event: Option<Timestamp>,
}

// === ScalePool (docs/COMPATIBILITY.md#scale-pool) ===

/// `POST /orchestrator/processing-pool/scale` request (`ScalePoolRequest`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScalePoolRequest {
    /// Pool to scale (required, non-empty).
    pub pool_type: String,
    /// Desired worker count, at least 0 (required). The service also enforces the pool's
    /// [min, max], which needs its configuration.
    pub target_instances: i64,
    /// Also remove leased or pending workers when scaling down (default false).
    #[serde(default)]
    pub force: bool,
}

impl Validate for ScalePoolRequest {
    fn validate(&self) -> Result<(), FieldError> {
        non_empty("poolType", &self.pool_type)?;
        at_least("targetInstances", self.target_instances, 0)
    }
}

/// `POST /orchestrator/processing-pool/scale` response (`ScalePoolResponse`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScalePoolResponse {
    /// Workers before.
    pub previous_instances: i64,
    /// Workers after.
    pub current_instances: i64,
    /// Workers added.
    #[serde(default)]
    pub scaled_up: i64,
    /// Workers removed.
    #[serde(default)]
    pub scaled_down: i64,
}

// === CleanupPool (docs/COMPATIBILITY.md#cleanup-pool) ===

/// `POST /orchestrator/processing-pool/cleanup` request (`CleanupPoolRequest`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CleanupPoolRequest {
    /// Pool to clean (required, non-empty).
    pub pool_type: String,
    /// Keep `minInstances` idle workers (default true).
    #[serde(default = "yes")]
    pub preserve_minimum: bool,
}

impl Validate for CleanupPoolRequest {
    fn validate(&self) -> Result<(), FieldError> {
        non_empty("poolType", &self.pool_type)
    }
}

/// `POST /orchestrator/processing-pool/cleanup` response (`CleanupPoolResponse`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CleanupPoolResponse {
    /// Idle workers removed.
    pub instances_removed: i64,
    /// Workers left.
    #[serde(default)]
    pub current_instances: i64,
}

#[cfg(test)]
mod tests {
    use super::super::wire_checks::{invalid_field, round_trip};
    use super::*;
    use serde_json::json;

    #[test]
    fn acquire_request_defaults_and_extensions() {
        let req: AcquireProcessorRequest = round_trip(
            json!({"poolType": "asset-processor"}),
            json!({"poolType": "asset-processor", "priority": 0, "timeoutSeconds": 300,
                   "waitMs": 0}),
        );
        assert_eq!(req, AcquireProcessorRequest::new("asset-processor"));
        assert_eq!(req.lease_duration(), Duration::from_secs(300));
        assert_eq!(req.wait(), Duration::ZERO);
        let req: AcquireProcessorRequest = round_trip(
            json!({"poolType": "p", "priority": 5, "timeoutSeconds": 30,
                   "metadata": {"assetId": "a-1", "size": 3}, "waitMs": 2500}),
            json!({"poolType": "p", "priority": 5, "timeoutSeconds": 30,
                   "metadata": {"assetId": "a-1", "size": 3}, "waitMs": 2500}),
        );
        assert_eq!(req.wait(), Duration::from_millis(2500));
        assert_eq!(req.lease_duration(), Duration::from_secs(30));
        assert!(req.validate().is_ok());
    }

    #[test]
    fn acquire_validation_names_fields() {
        let field = |v| invalid_field::<AcquireProcessorRequest>(v);
        assert_eq!(field(json!({"poolType": ""})), "poolType");
        assert_eq!(field(json!({"poolType": "p", "priority": -1})), "priority");
        assert_eq!(
            field(json!({"poolType": "p", "timeoutSeconds": 0})),
            "timeoutSeconds"
        );
        assert_eq!(field(json!({"poolType": "p", "waitMs": -1})), "waitMs");
        assert_eq!(field(json!({"poolType": "p", "waitMs": 60_001})), "waitMs");
        assert!(serde_json::from_value::<AcquireProcessorRequest>(json!({})).is_err());
        assert!(
            serde_json::from_value::<AcquireProcessorRequest>(
                json!({"poolType": "p", "metadata": 3})
            )
            .is_err()
        );
    }

    #[test]
    fn acquire_response_carries_fencing_token_and_reads_upstream_shape() {
        let id = "7c9e6679-7425-40de-944b-e07fc1f90ae7";
        let resp: AcquireProcessorResponse = round_trip(
            json!({"processorId": "p-1", "appId": "bannou-pool-p-1", "leaseId": id,
                   "expiresAt": "2026-03-02T14:10:31.512+00:00", "fencingToken": 42}),
            json!({"processorId": "p-1", "appId": "bannou-pool-p-1", "leaseId": id,
                   "expiresAt": "2026-03-02T14:10:31.512+00:00", "fencingToken": 42}),
        );
        assert_eq!(resp.fencing_token, 42);
        let upstream: AcquireProcessorResponse =
            serde_json::from_value(json!({"processorId": "p-1", "appId": "a", "leaseId": id,
                   "expiresAt": "2026-03-02T14:10:31.512+00:00"}))
            .unwrap();
        assert_eq!(upstream.fencing_token, 0);
    }

    #[test]
    fn release_request_defaults_and_validation() {
        let id = "7c9e6679-7425-40de-944b-e07fc1f90ae7";
        let req: ReleaseProcessorRequest = round_trip(
            json!({"leaseId": id}),
            json!({"leaseId": id, "success": true}),
        );
        assert!(req.validate().is_ok());
        round_trip::<ReleaseProcessorRequest>(
            json!({"leaseId": id, "success": false, "metrics": {"durationMs": 10}}),
            json!({"leaseId": id, "success": false, "metrics": {"durationMs": 10}}),
        );
        let fenced: ReleaseProcessorRequest = round_trip(
            json!({"leaseId": id, "fencingToken": 7}),
            json!({"leaseId": id, "success": true, "fencingToken": 7}),
        );
        assert_eq!(fenced.fencing_token, Some(7));
        assert_eq!(req, ReleaseProcessorRequest::new(req.lease_id));
        assert_eq!(
            invalid_field::<ReleaseProcessorRequest>(
                json!({"leaseId": "00000000-0000-0000-0000-000000000000"})
            ),
            "leaseId"
        );
        assert!(
            serde_json::from_value::<ReleaseProcessorRequest>(json!({"leaseId": "nope"})).is_err()
        );
        round_trip::<ReleaseProcessorResponse>(
            json!({"processorId": "p-1"}),
            json!({"processorId": "p-1"}),
        );
    }

    #[test]
    fn renew_request_defaults_and_validation() {
        let id = "7c9e6679-7425-40de-944b-e07fc1f90ae7";
        let req: RenewProcessorRequest = round_trip(
            json!({"leaseId": id, "fencingToken": 4}),
            json!({"leaseId": id, "fencingToken": 4, "extendSeconds": 300}),
        );
        assert!(req.validate().is_ok());
        assert_eq!(req, RenewProcessorRequest::new(req.lease_id, 4));
        assert_eq!(req.extend_by(), Duration::from_secs(300));
        let missing = serde_json::from_value::<RenewProcessorRequest>(json!({"leaseId": id}))
            .unwrap_err()
            .to_string();
        assert!(missing.contains("fencingToken"), "{missing}");
        for bad in [0, -1, MAX_RENEW_SECONDS + 1] {
            assert_eq!(
                invalid_field::<RenewProcessorRequest>(
                    json!({"leaseId": id, "fencingToken": 1, "extendSeconds": bad})
                ),
                "extendSeconds"
            );
        }
        assert_eq!(
            invalid_field::<RenewProcessorRequest>(
                json!({"leaseId": id, "fencingToken": 1, "poolType": " "})
            ),
            "poolType"
        );
        assert_eq!(
            invalid_field::<RenewProcessorRequest>(
                json!({"leaseId": "00000000-0000-0000-0000-000000000000", "fencingToken": 1})
            ),
            "leaseId"
        );
        round_trip::<RenewProcessorResponse>(
            json!({"processorId": "p-1", "appId": "a", "leaseId": id,
                   "expiresAt": "2026-03-02T14:10:31.512Z", "fencingToken": 4}),
            json!({"processorId": "p-1", "appId": "a", "leaseId": id,
                   "expiresAt": "2026-03-02T14:10:31.512+00:00", "fencingToken": 4}),
        );
    }

    #[test]
    fn drain_request_defaults_and_validation() {
        let req: DrainPoolRequest = round_trip(json!({"poolType": "p"}), json!({"poolType": "p"}));
        assert_eq!(req, DrainPoolRequest::new("p"));
        assert_eq!(req.deadline(), None);
        let one: DrainPoolRequest = round_trip(
            json!({"poolType": "p", "processorId": "w-1", "deadlineSeconds": 30}),
            json!({"poolType": "p", "processorId": "w-1", "deadlineSeconds": 30}),
        );
        assert_eq!(one.deadline(), Some(Duration::from_secs(30)));
        assert_eq!(
            invalid_field::<DrainPoolRequest>(json!({"poolType": ""})),
            "poolType"
        );
        assert_eq!(
            invalid_field::<DrainPoolRequest>(json!({"poolType": "p", "processorId": ""})),
            "processorId"
        );
        for bad in [0, MAX_DRAIN_SECONDS + 1] {
            assert_eq!(
                invalid_field::<DrainPoolRequest>(json!({"poolType": "p", "deadlineSeconds": bad})),
                "deadlineSeconds"
            );
        }
        round_trip::<DrainPoolResponse>(
            json!({"removed": ["a"], "draining": ["b"], "deadline": "2026-03-02T14:10:31.512Z"}),
            json!({"removed": ["a"], "draining": ["b"], "deadline": "2026-03-02T14:10:31.512+00:00"}),
        );
    }

    #[test]
    fn pool_status_request_and_response() {
        let req: GetPoolStatusRequest = round_trip(
            json!({"poolType": "p"}),
            json!({"poolType": "p", "includeMetrics": true}),
        );
        assert!(req.validate().is_ok());
        assert_eq!(
            invalid_field::<GetPoolStatusRequest>(json!({"poolType": " "})),
            "poolType"
        );
        let resp: PoolStatusResponse = round_trip(
            json!({"totalInstances": 4, "availableInstances": 3, "busyInstances": 1,
                   "utilization": 0.25, "minInstances": 1, "maxInstances": 5,
                   "scaleUpThreshold": 0.8,
                   "recentMetrics": {"jobsCompleted1h": 7, "jobsFailed1h": 1,
                                     "avgProcessingTimeMs": 1500}}),
            json!({"totalInstances": 4, "availableInstances": 3, "busyInstances": 1,
                   "queueDepth": 0, "utilization": 0.25, "minInstances": 1,
                   "maxInstances": 5, "scaleUpThreshold": 0.8,
                   "recentMetrics": {"jobsCompleted1h": 7, "jobsFailed1h": 1,
                                     "avgProcessingTimeMs": 1500}}),
        );
        let metrics = resp.recent_metrics.unwrap();
        assert_eq!((metrics.jobs_completed_1h, metrics.jobs_failed_1h), (7, 1));
        assert_eq!(metrics.last_scale_event, None);
    }

    #[test]
    fn scale_request_validation_and_round_trip() {
        let req: ScalePoolRequest = round_trip(
            json!({"poolType": "p", "targetInstances": 0}),
            json!({"poolType": "p", "targetInstances": 0, "force": false}),
        );
        assert!(req.validate().is_ok());
        assert_eq!(
            invalid_field::<ScalePoolRequest>(json!({"poolType": "p", "targetInstances": -1})),
            "targetInstances"
        );
        assert_eq!(
            invalid_field::<ScalePoolRequest>(json!({"poolType": "", "targetInstances": 1})),
            "poolType"
        );
        assert!(serde_json::from_value::<ScalePoolRequest>(json!({"poolType": "p"})).is_err());
        round_trip::<ScalePoolResponse>(
            json!({"previousInstances": 1, "currentInstances": 3, "scaledUp": 2}),
            json!({"previousInstances": 1, "currentInstances": 3, "scaledUp": 2,
                   "scaledDown": 0}),
        );
    }

    #[test]
    fn cleanup_request_defaults_and_validation() {
        let req: CleanupPoolRequest = round_trip(
            json!({"poolType": "p"}),
            json!({"poolType": "p", "preserveMinimum": true}),
        );
        assert!(req.validate().is_ok());
        assert_eq!(
            invalid_field::<CleanupPoolRequest>(json!({"poolType": ""})),
            "poolType"
        );
        round_trip::<CleanupPoolResponse>(
            json!({"instancesRemoved": 2, "currentInstances": 1}),
            json!({"instancesRemoved": 2, "currentInstances": 1}),
        );
    }
}

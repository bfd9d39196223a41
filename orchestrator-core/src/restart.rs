//! Should-restart policy (docs/COMPATIBILITY.md#should-restart-rule with the per-service
//! recommendation) and restart outcome texts (docs/COMPATIBILITY.md#restart-manager).
//!
//! [`should_restart`] reads a [`HeartbeatAggregator`] at a given `now`; the text helpers keep
//! the upstream wording (`Restart not needed:`, `Restart failed:`) in one place.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::events::InstanceHealthStatus;
use crate::health::HeartbeatAggregator;
use crate::time::{Timestamp, format_hms};

/// Reason given when no instance has reported the service (tests look for `No heartbeat data found`).
pub const NO_HEARTBEAT_REASON: &str = "No heartbeat data found - service appears to be down";

/// Prefix of a declined restart's reason; the HTTP layer answers 409 when it sees `not needed`.
pub const NOT_NEEDED_PREFIX: &str = "Restart not needed: ";

/// Prefix of a failed restart's reason.
pub const FAILED_PREFIX: &str = "Restart failed: ";

/// The request type lives with the other API models; re-exported here.
pub use crate::api::ShouldRestartServiceRequest;

/// `RestartRecommendation`: the ShouldRestartService response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RestartRecommendation {
    /// Whether a restart is recommended.
    pub should_restart: bool,
    /// Worst status over the service's instances (`Unavailable` when none reported).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_status: Option<InstanceHealthStatus>,
    /// Latest heartbeat receive time over the service's instances (absent when none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<Timestamp>,
    /// How long the service has been degraded, `hh:mm:ss` (only when degraded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub degraded_duration: Option<String>,
    /// Why.
    pub reason: String,
}

/// Renders a threshold the way upstream prints `DegradationThresholdMinutes` (`5`, or `2.5`).
fn minutes(threshold: Duration) -> String {
    let m = threshold.as_secs_f64() / 60.0;
    format!("{m}")
}

/// Decides whether `service` should be restarted at `now`
/// (docs/COMPATIBILITY.md#should-restart-rule, D4 (docs/DECISIONS.md#d4)).
///
/// Entries are the service's instances that are not retired (a stopped or replaced
/// instance of a node that has a live one; see [`HeartbeatAggregator`]); the worst
/// derived status decides. A degraded service is measured by how long it has really
/// been non-healthy (the longest-degraded instance's `degraded_since`), and restarted
/// when that exceeds `threshold` strictly.
pub fn should_restart(
    agg: &HeartbeatAggregator,
    service: &str,
    now: Timestamp,
    threshold: Duration,
) -> RestartRecommendation {
    let timeout = agg.config().heartbeat_timeout;
    let instances = agg.instances_unsorted(service, Some(now));
    let Some(last_seen) = instances.iter().map(|i| i.last_seen).max() else {
        return RestartRecommendation {
            should_restart: true,
            current_status: Some(InstanceHealthStatus::Unavailable),
            last_seen: None,
            degraded_duration: None,
            reason: NO_HEARTBEAT_REASON.to_owned(),
        };
    };
    let worst = instances
        .iter()
        .map(|i| i.status_at(now, timeout))
        .max()
        .unwrap_or(InstanceHealthStatus::Unavailable);

    let (should_restart, degraded_duration, reason) = match worst {
        InstanceHealthStatus::Unavailable => (true, None, format!("Service is {worst}")),
        InstanceHealthStatus::Degraded => {
            let degraded_for = instances
                .iter()
                .filter(|i| i.status_at(now, timeout) == InstanceHealthStatus::Degraded)
                .map(|i| i.degraded_for(now))
                .max()
                .unwrap_or(Duration::ZERO);
            let hms = format_hms(degraded_for);
            let m = minutes(threshold);
            if degraded_for > threshold {
                let reason = format!("Service has been {worst} for {hms} (threshold: {m} minutes)");
                (true, Some(hms), reason)
            } else {
                let reason =
                    format!("Service is {worst} but within threshold ({hms} < {m} minutes)");
                (false, Some(hms), reason)
            }
        }
        _ => (
            false,
            None,
            format!("Service is {worst} - no restart needed"),
        ),
    };
    RestartRecommendation {
        should_restart,
        current_status: Some(worst),
        last_seen: Some(last_seen),
        degraded_duration,
        reason,
    }
}

/// `Restart not needed: {reason}`: the decline reason when a non-forced restart is not recommended.
pub fn not_needed(reason: &str) -> String {
    format!("{NOT_NEEDED_PREFIX}{reason}")
}

/// True for a decline reason produced by [`not_needed`] (upstream checks for `not needed`).
pub fn is_not_needed(decline_reason: &str) -> bool {
    decline_reason.contains("not needed")
}

/// `Restart failed: {message}`: any failure while restarting.
pub fn failed(message: &str) -> String {
    format!("{FAILED_PREFIX}{message}")
}

/// `Service restarted but failed to become healthy within {n} seconds`.
pub fn unhealthy_after_restart(timeout: Duration) -> String {
    format!(
        "Service restarted but failed to become healthy within {} seconds",
        timeout.as_secs()
    )
}

/// `Container for service '{name}' not found`: no container or node runs the service.
pub fn container_not_found(service: &str) -> String {
    format!("Container for service '{service}' not found")
}

/// `Smart restart - previous status: {status}`: the `ServiceRestartEvent` reason (an absent
/// status renders empty, as upstream's string interpolation of null does).
pub fn smart_restart_reason(previous: Option<InstanceHealthStatus>) -> String {
    match previous {
        Some(status) => format!("Smart restart - previous status: {status}"),
        None => "Smart restart - previous status: ".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::ServiceHealthStatus as S;
    use crate::health::fixtures::*;
    use crate::health::{HealthConfig, HeartbeatAggregator};
    use InstanceHealthStatus as I;

    const FIVE_MIN: Duration = Duration::from_secs(300);

    fn agg() -> HeartbeatAggregator {
        HeartbeatAggregator::new(HealthConfig::default())
    }

    /// An aggregator where `auth` on one instance reports `status` every 30 s from `from` to `to`.
    fn reporting(status: S, from: u64, to: u64) -> HeartbeatAggregator {
        let mut a = agg();
        feed(&mut a, hb(1, "node-a").healthy(&["auth"]), t(0));
        for s in (from..=to).step_by(30) {
            feed(&mut a, hb(1, "node-a").service("auth", status), t(s));
        }
        a
    }

    #[test]
    fn no_heartbeat_data_recommends_a_restart() {
        let rec = should_restart(&agg(), "auth", t(0), FIVE_MIN);
        assert_eq!(
            rec,
            RestartRecommendation {
                should_restart: true,
                current_status: Some(I::Unavailable),
                last_seen: None,
                degraded_duration: None,
                reason: "No heartbeat data found - service appears to be down".to_owned(),
            }
        );
        let json = serde_json::to_value(&rec).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"shouldRestart": true, "currentStatus": "Unavailable",
                "reason": "No heartbeat data found - service appears to be down"})
        );
    }

    #[test]
    fn lookup_is_by_service_name_not_instance_or_app_id() {
        let mut a = agg();
        feed(&mut a, hb(1, "node-a").healthy(&["auth"]), t(0));
        assert!(
            should_restart(&a, "auth", t(1), FIVE_MIN)
                .reason
                .contains("no restart needed")
        );
        assert_eq!(
            should_restart(&a, "node-a", t(1), FIVE_MIN).reason,
            NO_HEARTBEAT_REASON
        );
        assert_eq!(
            should_restart(&a, "AUTH", t(1), FIVE_MIN).reason,
            NO_HEARTBEAT_REASON,
            "exact match, as docs/COMPATIBILITY.md#should-restart-rule step 1"
        );
    }

    #[test]
    fn unavailable_restarts_whether_reported_or_silent() {
        let a = reporting(S::Unavailable, 30, 30);
        let rec = should_restart(&a, "auth", t(31), FIVE_MIN);
        assert!(rec.should_restart);
        assert_eq!(rec.reason, "Service is Unavailable");
        assert_eq!(rec.last_seen, Some(t(30)));
        assert_eq!(rec.degraded_duration, None);

        let mut a = agg();
        feed(&mut a, hb(1, "node-a").healthy(&["auth"]), t(0));
        let rec = should_restart(&a, "auth", t(91), FIVE_MIN);
        assert_eq!(
            (rec.should_restart, rec.current_status, rec.reason.as_str()),
            (true, Some(I::Unavailable), "Service is Unavailable")
        );
    }

    #[test]
    fn healthy_needs_no_restart() {
        let rec = should_restart(&reporting(S::Healthy, 30, 120), "auth", t(121), FIVE_MIN);
        assert_eq!(
            rec,
            RestartRecommendation {
                should_restart: false,
                current_status: Some(I::Healthy),
                last_seen: Some(t(120)),
                degraded_duration: None,
                reason: "Service is Healthy - no restart needed".to_owned(),
            }
        );
    }

    #[test]
    fn degraded_is_measured_from_degraded_since_not_the_last_heartbeat() {
        // Degraded since t(30), heartbeats every 30 s up to t(390): 6 minutes degraded while the
        // last heartbeat is only seconds old.
        let a = reporting(S::Degraded, 30, 390);
        let rec = should_restart(&a, "auth", t(391), FIVE_MIN);
        assert!(rec.should_restart);
        assert_eq!(rec.current_status, Some(I::Degraded));
        assert_eq!(rec.last_seen, Some(t(390)));
        assert_eq!(rec.degraded_duration.as_deref(), Some("00:06:01"));
        assert_eq!(
            rec.reason,
            "Service has been Degraded for 00:06:01 (threshold: 5 minutes)"
        );
    }

    #[test]
    fn degraded_threshold_boundary_is_strict() {
        let a = reporting(S::Degraded, 30, 330);
        let within = should_restart(&a, "auth", t(200), FIVE_MIN);
        assert!(!within.should_restart);
        assert_eq!(
            within.reason,
            "Service is Degraded but within threshold (00:02:50 < 5 minutes)"
        );

        let at = should_restart(&a, "auth", t(330), FIVE_MIN);
        assert!(!at.should_restart, "exactly the threshold is not over it");
        assert_eq!(at.degraded_duration.as_deref(), Some("00:05:00"));
        assert_eq!(
            at.reason,
            "Service is Degraded but within threshold (00:05:00 < 5 minutes)"
        );

        let over = should_restart(&a, "auth", t(331), FIVE_MIN);
        assert!(over.should_restart);
        assert_eq!(
            over.reason,
            "Service has been Degraded for 00:05:01 (threshold: 5 minutes)"
        );
    }

    #[test]
    fn recovery_resets_the_degraded_clock() {
        let mut a = reporting(S::Degraded, 30, 270);
        feed(&mut a, hb(1, "node-a").healthy(&["auth"]), t(300));
        feed(&mut a, hb(1, "node-a").service("auth", S::Degraded), t(330));
        let rec = should_restart(&a, "auth", t(400), FIVE_MIN);
        assert!(!rec.should_restart);
        assert_eq!(rec.degraded_duration.as_deref(), Some("00:01:10"));
    }

    #[test]
    fn worst_instance_decides_and_the_longest_degradation_counts() {
        let mut a = agg();
        feed(&mut a, hb(1, "node-a").service("auth", S::Degraded), t(0));
        feed(&mut a, hb(2, "node-b").healthy(&["auth"]), t(0));
        feed(&mut a, hb(2, "node-b").service("auth", S::Degraded), t(200));
        for s in [60, 120, 180, 240, 300] {
            feed(&mut a, hb(1, "node-a").service("auth", S::Degraded), t(s));
        }
        feed(&mut a, hb(2, "node-b").service("auth", S::Degraded), t(320));
        let rec = should_restart(&a, "auth", t(330), FIVE_MIN);
        assert_eq!(rec.last_seen, Some(t(320)));
        assert_eq!(rec.degraded_duration.as_deref(), Some("00:05:30"));
        assert!(rec.should_restart);

        // One unavailable instance outranks any number of degraded ones.
        feed(
            &mut a,
            hb(3, "node-c").service("auth", S::Unavailable),
            t(330),
        );
        let rec = should_restart(&a, "auth", t(331), FIVE_MIN);
        assert_eq!(rec.reason, "Service is Unavailable");
    }

    #[test]
    fn threshold_renders_as_plain_minutes() {
        let a = reporting(S::Degraded, 30, 30);
        let rec = should_restart(&a, "auth", t(40), Duration::from_secs(150));
        assert_eq!(
            rec.reason,
            "Service is Degraded but within threshold (00:00:10 < 2.5 minutes)"
        );
    }

    #[test]
    fn outcome_texts_follow_spec_15() {
        let declined = not_needed("Service is Healthy - no restart needed");
        assert_eq!(
            declined,
            "Restart not needed: Service is Healthy - no restart needed"
        );
        assert!(is_not_needed(&declined));
        assert!(!is_not_needed(&failed("Docker client not initialized")));
        assert_eq!(
            failed("Docker client not initialized"),
            "Restart failed: Docker client not initialized"
        );
        assert_eq!(
            unhealthy_after_restart(Duration::from_secs(120)),
            "Service restarted but failed to become healthy within 120 seconds"
        );
        assert_eq!(
            container_not_found("auth"),
            "Container for service 'auth' not found"
        );
        assert_eq!(
            smart_restart_reason(Some(I::Degraded)),
            "Smart restart - previous status: Degraded"
        );
        assert_eq!(
            smart_restart_reason(None),
            "Smart restart - previous status: "
        );
    }

    #[test]
    fn request_uses_the_schema_field_name() {
        let req: ShouldRestartServiceRequest =
            serde_json::from_str(r#"{"serviceName":"auth"}"#).unwrap();
        assert_eq!(req.service_name, "auth");
        assert!(serde_json::from_str::<ShouldRestartServiceRequest>("{}").is_err());
    }
}

//! Pure reading of Kubernetes objects: a node's state from its Deployment and pods
//! (docs/COMPATIBILITY.md#kubernetes-backend, with every replica state told apart), restart
//! counts, start times, the pod whose logs are read, and the readiness condition the
//! backend waits for.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use orchestrator_core::Timestamp;
use orchestrator_core::api::enums::ContainerStatusType;

use super::manifest::RESTART_COUNT_ANNOTATION;

/// Container waiting reasons that mean the pod will not become ready by itself.
pub const FAILING_REASONS: &[&str] = &[
    "CrashLoopBackOff",
    "ImagePullBackOff",
    "ErrImagePull",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
];

/// Converts a Kubernetes time.
pub fn timestamp(t: &Time) -> Timestamp {
    Timestamp::from_unix_millis(t.0.as_millisecond())
}

/// Desired replicas (`spec.replicas`, 1 when unset as Kubernetes defaults it).
pub fn desired_replicas(d: &Deployment) -> u32 {
    let n = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    u32::try_from(n).unwrap_or(0)
}

/// Ready replicas (`status.readyReplicas`).
pub fn ready_replicas(d: &Deployment) -> u32 {
    let n = d
        .status
        .as_ref()
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0);
    u32::try_from(n).unwrap_or(0)
}

fn condition<'a>(d: &'a Deployment, kind: &str) -> Option<(&'a str, Option<&'a str>)> {
    d.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == kind)
        .map(|c| (c.status.as_str(), c.reason.as_deref()))
}

/// True when the Deployment's latest spec is fully rolled out and available: the
/// controller has seen the latest generation and every desired replica is updated,
/// ready and available. What the backend waits for after a deploy.
pub fn is_rolled_out(d: &Deployment) -> bool {
    let desired = i32::try_from(desired_replicas(d)).unwrap_or(i32::MAX);
    let Some(status) = d.status.as_ref() else {
        return false;
    };
    let generation = d.metadata.generation.unwrap_or(0);
    status.observed_generation.unwrap_or(0) >= generation
        && status.updated_replicas.unwrap_or(0) >= desired
        && status.available_replicas.unwrap_or(0) >= desired
        && status.ready_replicas.unwrap_or(0) >= desired
}

/// Why the node cannot become ready by itself, if something says so: the Deployment's
/// `Progressing=False` (progress deadline exceeded), `ReplicaFailure=True`, a pod in phase
/// `Failed`, or a container waiting for one of [`FAILING_REASONS`].
pub fn failure(d: &Deployment, pods: &[Pod]) -> Option<String> {
    if let Some(("False", reason)) = condition(d, "Progressing") {
        return Some(format!(
            "Progressing=False ({})",
            reason.unwrap_or("no reason")
        ));
    }
    if let Some(("True", reason)) = condition(d, "ReplicaFailure") {
        return Some(format!(
            "ReplicaFailure=True ({})",
            reason.unwrap_or("no reason")
        ));
    }
    for pod in pods {
        let name = pod.metadata.name.as_deref().unwrap_or("?");
        let Some(status) = &pod.status else { continue };
        if status.phase.as_deref() == Some("Failed") {
            return Some(format!("pod {name} failed"));
        }
        for c in status.container_statuses.iter().flatten() {
            let waiting = c.state.as_ref().and_then(|s| s.waiting.as_ref());
            if let Some(reason) = waiting.and_then(|w| w.reason.as_deref())
                && FAILING_REASONS.contains(&reason)
            {
                return Some(format!("pod {name}: {reason}"));
            }
        }
    }
    None
}

/// A node's state (docs/COMPATIBILITY.md#kubernetes-backend, with every replica state told apart):
/// - being deleted: `Stopping`;
/// - 0 desired replicas: `Stopped`, or `Stopping` while pods still terminate;
/// - every desired replica ready and available: `Running`;
/// - something says it cannot become ready ([`failure`]): `Unhealthy`;
/// - otherwise it is progressing (pods pending, starting, or a rollout under way): `Starting`.
pub fn node_status(d: &Deployment, pods: &[Pod]) -> ContainerStatusType {
    if d.metadata.deletion_timestamp.is_some() {
        return ContainerStatusType::Stopping;
    }
    let desired = desired_replicas(d);
    if desired == 0 {
        return if pods.is_empty() {
            ContainerStatusType::Stopped
        } else {
            ContainerStatusType::Stopping
        };
    }
    let status = d.status.as_ref();
    let ready = ready_replicas(d);
    let available = status.and_then(|s| s.available_replicas).unwrap_or(0);
    if ready >= desired && u32::try_from(available).unwrap_or(0) >= desired {
        return ContainerStatusType::Running;
    }
    if failure(d, pods).is_some() {
        return ContainerStatusType::Unhealthy;
    }
    ContainerStatusType::Starting
}

/// True when the pod's `Ready` condition is `True`.
pub fn is_pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// When the pod's current process started: its container's `running.startedAt`, else
/// the pod's `startTime`, else its creation time.
pub fn pod_started_at(pod: &Pod) -> Option<Timestamp> {
    let status = pod.status.as_ref();
    status
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| {
            cs.iter()
                .filter_map(|c| c.state.as_ref()?.running.as_ref()?.started_at.as_ref())
                .map(timestamp)
                .max()
        })
        .or_else(|| status.and_then(|s| s.start_time.as_ref()).map(timestamp))
        .or_else(|| pod.metadata.creation_timestamp.as_ref().map(timestamp))
}

/// Restarts of the node: the kubelet's container restarts in its current pods plus our
/// rollout restarts (the Deployment's [`RESTART_COUNT_ANNOTATION`]).
pub fn restart_count(d: &Deployment, pods: &[Pod]) -> u32 {
    let kubelet: i64 = pods
        .iter()
        .filter_map(|p| p.status.as_ref()?.container_statuses.as_ref())
        .flatten()
        .map(|c| i64::from(c.restart_count))
        .sum();
    u32::try_from(kubelet)
        .unwrap_or(u32::MAX)
        .saturating_add(ours(d))
}

/// Our rollout restarts recorded on the Deployment.
pub fn ours(d: &Deployment) -> u32 {
    d.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(RESTART_COUNT_ANNOTATION))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The pod whose logs are read: the newest ready pod (by start time, then name), else the
/// newest pod; `None` without pods. Terminating pods come last.
pub fn log_pod(pods: &[Pod]) -> Option<&Pod> {
    pods.iter().max_by_key(|p| {
        (
            p.metadata.deletion_timestamp.is_none(),
            is_pod_ready(p),
            pod_started_at(p),
            p.metadata.name.clone(),
        )
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::api::apps::v1::{DeploymentCondition, DeploymentSpec, DeploymentStatus};
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateRunning, ContainerStateWaiting, ContainerStatus,
        PodCondition, PodStatus,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    fn time(s: &str) -> Time {
        Time(s.parse().unwrap())
    }

    fn deployment(desired: i32, ready: i32, available: i32) -> Deployment {
        Deployment {
            metadata: ObjectMeta {
                generation: Some(2),
                ..Default::default()
            },
            spec: Some(DeploymentSpec {
                replicas: Some(desired),
                ..Default::default()
            }),
            status: Some(DeploymentStatus {
                observed_generation: Some(2),
                replicas: Some(ready),
                ready_replicas: Some(ready),
                available_replicas: Some(available),
                updated_replicas: Some(ready),
                ..Default::default()
            }),
        }
    }

    fn pod(name: &str, ready: bool, started: &str, waiting: Option<&str>) -> Pod {
        let state = match waiting {
            Some(r) => ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some(r.to_owned()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            None => ContainerState {
                running: Some(ContainerStateRunning {
                    started_at: Some(time(started)),
                }),
                ..Default::default()
            },
        };
        Pod {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                ..Default::default()
            },
            spec: None,
            status: Some(PodStatus {
                phase: Some("Running".to_owned()),
                start_time: Some(time(started)),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".to_owned(),
                    status: if ready { "True" } else { "False" }.to_owned(),
                    ..Default::default()
                }]),
                container_statuses: Some(vec![ContainerStatus {
                    name: "bannou".to_owned(),
                    restart_count: 2,
                    ready,
                    state: Some(state),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn every_replica_state() {
        use ContainerStatusType::*;
        let t = "2025-01-01T00:00:00Z";
        assert_eq!(node_status(&deployment(2, 2, 2), &[]), Running);
        assert!(is_rolled_out(&deployment(2, 2, 2)));
        assert_eq!(node_status(&deployment(2, 1, 1), &[]), Starting);
        assert!(!is_rolled_out(&deployment(2, 1, 1)));
        assert_eq!(node_status(&deployment(1, 0, 0), &[]), Starting);
        assert_eq!(
            node_status(
                &deployment(1, 0, 0),
                &[pod("p", false, t, Some("CrashLoopBackOff"))]
            ),
            Unhealthy
        );
        let mut stuck = deployment(1, 0, 0);
        stuck.status.as_mut().unwrap().conditions = Some(vec![DeploymentCondition {
            type_: "Progressing".to_owned(),
            status: "False".to_owned(),
            reason: Some("ProgressDeadlineExceeded".to_owned()),
            ..Default::default()
        }]);
        assert_eq!(node_status(&stuck, &[]), Unhealthy);
        assert!(
            failure(&stuck, &[])
                .unwrap()
                .contains("ProgressDeadlineExceeded")
        );
        assert_eq!(node_status(&deployment(0, 0, 0), &[]), Stopped);
        assert_eq!(
            node_status(&deployment(0, 0, 0), &[pod("p", false, t, None)]),
            Stopping
        );
        let mut deleting = deployment(1, 1, 1);
        deleting.metadata.deletion_timestamp = Some(time(t));
        assert_eq!(node_status(&deleting, &[]), Stopping);
        let mut unobserved = deployment(1, 1, 1);
        unobserved.metadata.generation = Some(3);
        assert!(
            !is_rolled_out(&unobserved),
            "a new spec is not rolled out yet"
        );
        let no_status = Deployment::default();
        assert_eq!(desired_replicas(&no_status), 1);
        assert_eq!(node_status(&no_status, &[]), Starting);
    }

    #[test]
    fn restarts_start_times_and_log_pod() {
        let mut d = deployment(2, 2, 2);
        d.metadata.annotations = Some(BTreeMap::from([(
            RESTART_COUNT_ANNOTATION.to_owned(),
            "3".to_owned(),
        )]));
        let old = pod("a-old", true, "2025-01-01T00:00:00Z", None);
        let new_ready = pod("b-new", true, "2025-01-01T00:05:00Z", None);
        let newest_unready = pod("c-newest", false, "2025-01-01T00:09:00Z", None);
        let pods = vec![old.clone(), new_ready.clone(), newest_unready.clone()];
        assert_eq!(restart_count(&d, &pods), 3 + 2 * 3);
        assert_eq!(
            pod_started_at(&new_ready),
            Some(Timestamp::parse("2025-01-01T00:05:00Z").unwrap())
        );
        assert_eq!(
            log_pod(&pods).unwrap().metadata.name.as_deref(),
            Some("b-new"),
            "the newest ready pod"
        );
        assert_eq!(
            log_pod(std::slice::from_ref(&newest_unready))
                .unwrap()
                .metadata
                .name
                .as_deref(),
            Some("c-newest"),
            "else the newest pod"
        );
        assert!(log_pod(&[]).is_none());
    }
}

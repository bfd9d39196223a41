//! Pure mapping between the orchestrator's node model and Swarm's: the service spec of a
//! node, task states, which tasks are a service's current ones, and the node state
//! computed from them (the fix of docs/COMPATIBILITY.md#swarm-backend: status comes from
//! real tasks). No I/O, so all of it is unit tested.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use bollard::models::{
    Limit, Mount, NetworkAttachmentConfig, ServiceSpec, ServiceSpecMode, ServiceSpecModeReplicated,
    ServiceSpecUpdateConfig, ServiceSpecUpdateConfigFailureActionEnum,
    ServiceSpecUpdateConfigOrderEnum, Task, TaskSpec, TaskSpecContainerSpec, TaskSpecResources,
    TaskSpecRestartPolicy, TaskSpecRestartPolicyConditionEnum, TaskState,
};
use orchestrator_core::Timestamp;
use orchestrator_core::api::enums::ContainerStatusType;
use orchestrator_core::names::AppId;
use orchestrator_core::ports::backend::{
    NodeDeployment, ResourceLimits, RestartPolicy, container_name, labels,
};

use crate::containers::docker::model::{aggregate_state, parse_docker_time};

/// Service label holding the image the node was deployed with, as the caller named it
/// (the spec may hold the pinned local image id instead).
pub const IMAGE_LABEL: &str = "bannou.image";
/// Service label holding the task template's `ForceUpdate` counter at deploy time:
/// restarts since deploy are the counter minus this.
pub const RESTART_BASE_LABEL: &str = "bannou.restart-base";
/// Label Swarm puts on a task's container naming its service id.
pub const SWARM_SERVICE_ID_LABEL: &str = "com.docker.swarm.service.id";
/// Longest service name Swarm accepts (it is a DNS label).
pub const MAX_SERVICE_NAME: usize = 63;

/// The node's state for one task state: running => Running; new, allocated, pending,
/// assigned, accepted, preparing, ready, starting => Starting; remove => Stopping;
/// complete and shutdown => Stopped; failed, rejected, orphaned => Unhealthy.
pub fn task_status(state: Option<TaskState>) -> ContainerStatusType {
    use ContainerStatusType::*;
    match state {
        Some(TaskState::RUNNING) => Running,
        Some(
            TaskState::NEW
            | TaskState::ALLOCATED
            | TaskState::PENDING
            | TaskState::ASSIGNED
            | TaskState::ACCEPTED
            | TaskState::PREPARING
            | TaskState::READY
            | TaskState::STARTING,
        ) => Starting,
        Some(TaskState::REMOVE) => Stopping,
        Some(TaskState::COMPLETE | TaskState::SHUTDOWN) => Stopped,
        Some(TaskState::FAILED | TaskState::REJECTED | TaskState::ORPHANED) | None => Unhealthy,
    }
}

/// True when Swarm removes the task's slot (scaled away, or its service removed).
fn retired(task: &Task) -> bool {
    task.desired_state == Some(TaskState::REMOVE)
}

/// The node state of one current task: [`task_status`] of its observed state, except that
/// a task Swarm is shutting down (desired `shutdown`) that still runs or starts is
/// Stopping. A task that ended on its own is also desired `shutdown` and keeps its state
/// (failed => Unhealthy, complete => Stopped).
pub fn current_status(task: &Task) -> ContainerStatusType {
    let observed = task_status(task.status.as_ref().and_then(|s| s.state));
    if task.desired_state == Some(TaskState::SHUTDOWN)
        && matches!(
            observed,
            ContainerStatusType::Running | ContainerStatusType::Starting
        )
    {
        ContainerStatusType::Stopping
    } else {
        observed
    }
}

fn created(task: &Task) -> (Option<Timestamp>, u64) {
    (
        task.created_at.as_deref().and_then(parse_docker_time),
        task.version.as_ref().and_then(|v| v.index).unwrap_or(0),
    )
}

/// The service's current tasks: the newest task of each slot (each node, for a global
/// service), unless Swarm is removing that slot. Older tasks of a slot are history
/// (Swarm keeps a few per slot: restarted, failed or replaced ones).
pub fn current_tasks(tasks: &[Task]) -> Vec<&Task> {
    let mut newest: BTreeMap<String, &Task> = BTreeMap::new();
    for t in tasks {
        let key = match t.slot {
            Some(slot) => format!("slot-{slot:010}"),
            None => format!("node-{}", t.node_id.as_deref().unwrap_or_default()),
        };
        match newest.get(&key) {
            Some(old) if created(old) >= created(t) => {}
            _ => {
                newest.insert(key, t);
            }
        }
    }
    newest.into_values().filter(|t| !retired(t)).collect()
}

/// Ids of the current tasks that run.
pub fn running_task_ids(tasks: &[Task]) -> Vec<String> {
    current_tasks(tasks)
        .into_iter()
        .filter(|t| current_status(t) == ContainerStatusType::Running)
        .filter_map(|t| t.id.clone())
        .collect()
}

/// A node's state computed from its service and the service's tasks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskSummary {
    /// Overall state (see [`task_status`] and [`aggregate_state`]).
    pub status: ContainerStatusType,
    /// Current tasks that run.
    pub running: u32,
    /// Desired replicas (the spec's count; current tasks for a global service).
    pub desired: u32,
    /// When the newest running task started running.
    pub started_at: Option<Timestamp>,
    /// When the last current task ended, if every one has ([`TaskSummary::ended`]).
    pub stopped_at: Option<Timestamp>,
    /// Every current task has ended (completed, failed, rejected or shut down) and Swarm
    /// will not replace it (desired `shutdown`), and no slot waits for a task: nothing of
    /// the node runs or will run until it is changed. (A task that failed under restart
    /// condition `any` is also desired `shutdown` until its replacement appears, after the
    /// policy's delay.)
    pub ended: bool,
    /// Tasks that ended on their own (failed, rejected or complete, then replaced by
    /// Swarm's restart policy) among those Swarm still keeps.
    pub crashes: u32,
    /// The error of a failing current task, if any (e.g. `No such image`).
    pub error: Option<String>,
}

/// True when a task has ended and Swarm does not want it running.
fn has_ended(task: &Task) -> bool {
    matches!(
        task.status.as_ref().and_then(|s| s.state),
        Some(
            TaskState::COMPLETE
                | TaskState::SHUTDOWN
                | TaskState::FAILED
                | TaskState::REJECTED
                | TaskState::ORPHANED
        )
    ) && !matches!(
        task.desired_state,
        Some(TaskState::RUNNING | TaskState::READY)
    )
}

/// Summarises `tasks` for a service with `desired` replicas (`None`: global). Slots
/// without a task yet count as starting.
pub fn summarise(tasks: &[Task], desired: Option<u32>) -> TaskSummary {
    let current = current_tasks(tasks);
    let states: Vec<ContainerStatusType> = current.iter().map(|t| current_status(t)).collect();
    let desired = desired.unwrap_or(u32::try_from(current.len()).unwrap_or(u32::MAX));
    let stamp = |t: &Task| {
        t.status
            .as_ref()
            .and_then(|s| s.timestamp.as_deref())
            .and_then(parse_docker_time)
    };
    let mut started_at = None;
    let mut stopped_at = None;
    let mut error = None;
    for (t, s) in current.iter().zip(&states) {
        match s {
            ContainerStatusType::Running => started_at = started_at.max(stamp(t)),
            ContainerStatusType::Unhealthy if error.is_none() => {
                error = t.status.as_ref().and_then(|st| st.err.clone());
            }
            _ => {}
        }
        if has_ended(t) {
            stopped_at = stopped_at.max(stamp(t));
        }
    }
    let current_ids: Vec<&str> = current.iter().filter_map(|t| t.id.as_deref()).collect();
    let crashes = tasks
        .iter()
        .filter(|t| !t.id.as_deref().is_some_and(|id| current_ids.contains(&id)))
        .filter(|t| {
            matches!(
                t.status.as_ref().and_then(|s| s.state),
                Some(TaskState::FAILED | TaskState::REJECTED | TaskState::COMPLETE)
            )
        })
        .count();
    // A slot Swarm has not made a task for yet (just created or scaled up) is starting;
    // scaled to zero, nothing runs.
    let missing = usize::try_from(desired)
        .unwrap_or(usize::MAX)
        .saturating_sub(current.len());
    let status = if missing > 0 {
        aggregate_state(&[states.as_slice(), &[ContainerStatusType::Starting]].concat())
    } else if states.is_empty() {
        ContainerStatusType::Stopped
    } else {
        aggregate_state(&states)
    };
    let running = states
        .iter()
        .filter(|s| **s == ContainerStatusType::Running)
        .count();
    let ended = missing == 0 && current.iter().all(|t| has_ended(t));
    TaskSummary {
        status,
        running: u32::try_from(running).unwrap_or(u32::MAX),
        desired,
        started_at,
        stopped_at: ended.then_some(stopped_at).flatten(),
        ended,
        crashes: u32::try_from(crashes).unwrap_or(u32::MAX),
        error,
    }
}

/// Swarm's restart condition for ours: `Never` => none, `OnFailure` => on-failure (with
/// its attempt limit), `Always` and `UnlessStopped` => any (upstream's choice).
pub fn swarm_restart_policy(policy: RestartPolicy) -> TaskSpecRestartPolicy {
    let (condition, max_attempts) = match policy {
        RestartPolicy::Never => (TaskSpecRestartPolicyConditionEnum::NONE, None),
        RestartPolicy::OnFailure { max_retries } => (
            TaskSpecRestartPolicyConditionEnum::ON_FAILURE,
            max_retries.map(i64::from),
        ),
        RestartPolicy::Always | RestartPolicy::UnlessStopped => {
            (TaskSpecRestartPolicyConditionEnum::ANY, None)
        }
    };
    TaskSpecRestartPolicy {
        condition: Some(condition),
        max_attempts,
        ..Default::default()
    }
}

/// Docker's `name:ip` extra-host entries in Swarm's `ip name` syntax (an IPv6 address
/// keeps its colons: the name ends at the first one). Entries without `:` are dropped.
pub fn swarm_hosts(extra_hosts: &[String]) -> Vec<String> {
    extra_hosts
        .iter()
        .filter_map(|h| h.split_once(':'))
        .map(|(name, ip)| format!("{ip} {name}"))
        .collect()
}

/// Nanoseconds for Swarm's durations (at most `i64::MAX`).
pub fn nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

fn limits(resources: Option<ResourceLimits>) -> Option<TaskSpecResources> {
    let r = resources?;
    if r.cpu_millis.is_none() && r.memory_bytes.is_none() {
        return None;
    }
    Some(TaskSpecResources {
        limits: Some(Limit {
            nano_cpus: r.cpu_millis.map(|m| i64::from(m) * 1_000_000),
            memory_bytes: r.memory_bytes.map(|b| i64::try_from(b).unwrap_or(i64::MAX)),
            pids: None,
        }),
        ..Default::default()
    })
}

/// Everything [`service_spec`] needs besides the node.
#[derive(Debug, Clone, PartialEq)]
pub struct SpecInputs<'a> {
    /// Service name (`bannou-{serviceName}-{appId}`).
    pub name: &'a str,
    /// Image reference to run (the node's, or the pinned local image id).
    pub image: &'a str,
    /// The node's full environment.
    pub environment: &'a BTreeMap<String, String>,
    /// Id (or name) of our overlay network.
    pub network: &'a str,
    /// `/etc/hosts` entries in Swarm syntax.
    pub hosts: &'a [String],
    /// The container's mounts (`NodeMounts::mounts` of the `mounts` module).
    pub mounts: &'a [Mount],
    /// Stop grace period of the tasks.
    pub stop_grace: Duration,
    /// Replicas.
    pub replicas: u32,
    /// The task template's `ForceUpdate` counter.
    pub force_update: u64,
}

/// The service spec of `node`: labels ([`NodeDeployment::effective_labels`] plus
/// [`IMAGE_LABEL`] and [`RESTART_BASE_LABEL`]) on the service; `bannou.app-id` and
/// `bannou.service` (not the managed label, so the standalone backend never takes task
/// containers for its own) on the containers; attached to our network with the aliases
/// `{appId}` and `bannou-{appId}`; replicated; rolling updates one task at a time,
/// stop-first, pausing on failure.
pub fn service_spec(node: &NodeDeployment, inputs: &SpecInputs<'_>) -> ServiceSpec {
    let mut service_labels: HashMap<String, String> = node.effective_labels().into_iter().collect();
    service_labels.insert(IMAGE_LABEL.to_owned(), node.image.clone());
    service_labels.insert(
        RESTART_BASE_LABEL.to_owned(),
        inputs.force_update.to_string(),
    );
    let container_labels = HashMap::from([
        (labels::APP_ID.to_owned(), node.app_id.to_string()),
        (labels::SERVICE.to_owned(), node.service_name.clone()),
    ]);
    let container_spec = TaskSpecContainerSpec {
        image: Some(inputs.image.to_owned()),
        labels: Some(container_labels),
        env: Some(crate::containers::docker::model::env_list(
            inputs.environment,
        )),
        hosts: (!inputs.hosts.is_empty()).then(|| inputs.hosts.to_vec()),
        mounts: (!inputs.mounts.is_empty()).then(|| inputs.mounts.to_vec()),
        stop_grace_period: Some(nanos(inputs.stop_grace)),
        ..Default::default()
    };
    ServiceSpec {
        name: Some(inputs.name.to_owned()),
        labels: Some(service_labels),
        task_template: Some(TaskSpec {
            container_spec: Some(container_spec),
            resources: limits(node.resources),
            restart_policy: Some(swarm_restart_policy(node.restart_policy)),
            force_update: Some(inputs.force_update),
            networks: Some(vec![NetworkAttachmentConfig {
                target: Some(inputs.network.to_owned()),
                aliases: Some(aliases(&node.app_id)),
                driver_opts: None,
            }]),
            ..Default::default()
        }),
        mode: Some(replicated(inputs.replicas)),
        update_config: Some(update_config(1)),
        ..Default::default()
    }
}

/// The network aliases of a node: `{appId}` and `bannou-{appId}` (as on standalone Docker).
pub fn aliases(app_id: &AppId) -> Vec<String> {
    vec![app_id.to_string(), container_name(app_id)]
}

/// Replicated mode with `replicas`.
pub fn replicated(replicas: u32) -> ServiceSpecMode {
    ServiceSpecMode {
        replicated: Some(ServiceSpecModeReplicated {
            replicas: Some(i64::from(replicas)),
        }),
        ..Default::default()
    }
}

/// Rolling update settings: `parallelism` tasks at a time (0 = all at once), stop-first,
/// pause on failure.
pub fn update_config(parallelism: i64) -> ServiceSpecUpdateConfig {
    ServiceSpecUpdateConfig {
        parallelism: Some(parallelism),
        failure_action: Some(ServiceSpecUpdateConfigFailureActionEnum::PAUSE),
        order: Some(ServiceSpecUpdateConfigOrderEnum::STOP_FIRST),
        ..Default::default()
    }
}

/// The replica count of a spec: `Some(n)` when replicated, `None` for other modes.
pub fn spec_replicas(spec: &ServiceSpec) -> Option<u32> {
    let mode = spec.mode.as_ref()?;
    if mode.global.is_some() || mode.global_job.is_some() || mode.replicated_job.is_some() {
        return None;
    }
    // A spec without a mode is replicated with one task.
    let n = mode
        .replicated
        .as_ref()
        .and_then(|r| r.replicas)
        .unwrap_or(1);
    Some(u32::try_from(n.max(0)).unwrap_or(u32::MAX))
}

/// Restarts since deploy: the spec's `ForceUpdate` above [`RESTART_BASE_LABEL`].
pub fn forced_restarts(spec: &ServiceSpec) -> u32 {
    let current = spec
        .task_template
        .as_ref()
        .and_then(|t| t.force_update)
        .unwrap_or(0);
    let base = spec
        .labels
        .as_ref()
        .and_then(|l| l.get(RESTART_BASE_LABEL))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    u32::try_from(current.saturating_sub(base)).unwrap_or(u32::MAX)
}

/// The image a listing shows: [`IMAGE_LABEL`], else the spec's image without a digest.
pub fn shown_image(spec: &ServiceSpec) -> String {
    if let Some(i) = spec.labels.as_ref().and_then(|l| l.get(IMAGE_LABEL)) {
        return i.clone();
    }
    let image = spec
        .task_template
        .as_ref()
        .and_then(|t| t.container_spec.as_ref())
        .and_then(|c| c.image.clone())
        .unwrap_or_default();
    match image.split_once('@') {
        Some((name, _)) if !name.is_empty() => name.to_owned(),
        _ => image,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::{MountType, ObjectVersion, TaskStatus};

    fn task(id: &str, slot: i64, created: &str, state: TaskState, desired: TaskState) -> Task {
        Task {
            id: Some(id.to_owned()),
            slot: Some(slot),
            created_at: Some(created.to_owned()),
            version: Some(ObjectVersion { index: Some(1) }),
            desired_state: Some(desired),
            status: Some(TaskStatus {
                state: Some(state),
                timestamp: Some(created.replace("00Z", "01Z")),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn task_states_map_to_node_states() {
        use ContainerStatusType::*;
        assert_eq!(task_status(Some(TaskState::RUNNING)), Running);
        assert_eq!(task_status(Some(TaskState::PREPARING)), Starting);
        assert_eq!(task_status(Some(TaskState::PENDING)), Starting);
        assert_eq!(task_status(Some(TaskState::SHUTDOWN)), Stopped);
        assert_eq!(task_status(Some(TaskState::COMPLETE)), Stopped);
        assert_eq!(task_status(Some(TaskState::REMOVE)), Stopping);
        assert_eq!(task_status(Some(TaskState::FAILED)), Unhealthy);
        assert_eq!(task_status(Some(TaskState::REJECTED)), Unhealthy);
        assert_eq!(task_status(None), Unhealthy);
    }

    #[test]
    fn the_newest_task_of_each_slot_is_current() {
        use TaskState::*;
        let tasks = vec![
            task("old1", 1, "2024-01-01T00:00:00Z", SHUTDOWN, SHUTDOWN),
            task("new1", 1, "2024-01-01T00:01:00Z", RUNNING, RUNNING),
            task("crash2", 2, "2024-01-01T00:00:00Z", FAILED, SHUTDOWN),
            task("new2", 2, "2024-01-01T00:02:00Z", STARTING, RUNNING),
            // Scaled away: slot 3's newest task is to be removed.
            task("gone3", 3, "2024-01-01T00:00:00Z", RUNNING, REMOVE),
        ];
        let ids: Vec<_> = current_tasks(&tasks)
            .into_iter()
            .map(|t| t.id.clone().unwrap())
            .collect();
        assert_eq!(ids, vec!["new1", "new2"]);
        let stopping = task("s", 1, "2024-01-01T00:00:00Z", RUNNING, SHUTDOWN);
        assert_eq!(current_status(&stopping), ContainerStatusType::Stopping);
        assert_eq!(running_task_ids(&tasks), vec!["new1"]);
        let s = summarise(&tasks, Some(2));
        assert_eq!(s.status, ContainerStatusType::Running);
        assert_eq!((s.running, s.desired, s.crashes), (1, 2, 1));
        assert_eq!(
            s.started_at,
            Some(Timestamp::parse("2024-01-01T00:01:01Z").unwrap())
        );
        assert_eq!(s.stopped_at, None);
        assert!(!s.ended);
    }

    #[test]
    fn no_tasks_is_stopped_and_failures_are_unhealthy_with_their_error() {
        let s = summarise(&[], Some(0));
        assert_eq!(
            (s.status, s.running, s.desired),
            (ContainerStatusType::Stopped, 0, 0)
        );
        let s = summarise(&[], Some(1));
        assert_eq!(s.status, ContainerStatusType::Starting, "no task made yet");
        let mut t = task(
            "t",
            1,
            "2024-01-01T00:00:00Z",
            TaskState::REJECTED,
            TaskState::RUNNING,
        );
        t.status.as_mut().unwrap().err = Some("No such image: x".into());
        // Swarm marks a task that failed for good as desired `shutdown`.
        let s = summarise(std::slice::from_ref(&t), Some(1));
        assert!(!s.ended, "desired running: Swarm will retry it");
        t.desired_state = Some(TaskState::SHUTDOWN);
        let s = summarise(&[t], Some(1));
        assert!(s.ended);
        assert_eq!(
            s.stopped_at,
            Some(Timestamp::parse("2024-01-01T00:00:01Z").unwrap())
        );
        assert_eq!(s.status, ContainerStatusType::Unhealthy);
        assert_eq!(s.error.as_deref(), Some("No such image: x"));
        let done = task(
            "d",
            1,
            "2024-01-01T00:00:00Z",
            TaskState::COMPLETE,
            TaskState::SHUTDOWN,
        );
        let s = summarise(&[done], Some(1));
        assert_eq!(s.status, ContainerStatusType::Stopped);
        assert_eq!(
            s.stopped_at,
            Some(Timestamp::parse("2024-01-01T00:00:01Z").unwrap())
        );
    }

    #[test]
    fn the_spec_names_labels_attaches_and_limits() {
        let mut node = NodeDeployment::new(AppId::from("bannou-auth"), "auth", "bannou:test");
        node.labels.insert("team".into(), "core".into());
        node.restart_policy = RestartPolicy::OnFailure {
            max_retries: Some(3),
        };
        node.resources = Some(ResourceLimits {
            cpu_millis: Some(250),
            memory_bytes: Some(32 << 20),
        });
        let env = BTreeMap::from([("A".to_owned(), "1".to_owned())]);
        let hosts = swarm_hosts(&["bannou:10.0.0.1".to_owned()]);
        let mounts = crate::containers::mounts::NodeMounts {
            logs_volume: Some("logs-data".into()),
            certificates_host_path: Some("/srv/certs".into()),
            presets_host_path: None,
        }
        .mounts();
        let spec = service_spec(
            &node,
            &SpecInputs {
                name: "bannou-auth-bannou-auth",
                image: "sha256:abc",
                environment: &env,
                network: "netid",
                hosts: &hosts,
                mounts: &mounts,
                stop_grace: Duration::from_secs(2),
                replicas: 3,
                force_update: 7,
            },
        );
        let l = spec.labels.as_ref().unwrap();
        assert_eq!(l[labels::APP_ID], "bannou-auth");
        assert_eq!(l[labels::SERVICE], "auth");
        assert_eq!(l[labels::MANAGED], "true");
        assert_eq!(l["team"], "core");
        assert_eq!(l[IMAGE_LABEL], "bannou:test");
        assert_eq!(shown_image(&spec), "bannou:test");
        assert_eq!(forced_restarts(&spec), 0);
        assert_eq!(spec_replicas(&spec), Some(3));
        let t = spec.task_template.as_ref().unwrap();
        let c = t.container_spec.as_ref().unwrap();
        assert_eq!(c.image.as_deref(), Some("sha256:abc"));
        assert!(
            !c.labels.as_ref().unwrap().contains_key(labels::MANAGED),
            "task containers are not standalone containers of ours"
        );
        assert_eq!(c.env.as_ref().unwrap(), &vec!["A=1".to_owned()]);
        assert_eq!(
            c.hosts.as_ref().unwrap(),
            &vec!["10.0.0.1 bannou".to_owned()]
        );
        assert_eq!(c.stop_grace_period, Some(2_000_000_000));
        let got: Vec<_> = c
            .mounts
            .as_ref()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m.typ.unwrap(),
                    m.source.as_deref().unwrap(),
                    m.target.as_deref().unwrap(),
                    m.read_only,
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (MountType::BIND, "/srv/certs", "/certificates", Some(true)),
                (MountType::VOLUME, "logs-data", "/app/logs", Some(false)),
            ],
            "the task mounts the certificates read-only and the logs volume writable"
        );
        let net = &t.networks.as_ref().unwrap()[0];
        assert_eq!(net.target.as_deref(), Some("netid"));
        assert_eq!(
            net.aliases.as_ref().unwrap(),
            &vec!["bannou-auth".to_owned(), "bannou-bannou-auth".to_owned()]
        );
        let rp = t.restart_policy.as_ref().unwrap();
        assert_eq!(
            rp.condition,
            Some(TaskSpecRestartPolicyConditionEnum::ON_FAILURE)
        );
        assert_eq!(rp.max_attempts, Some(3));
        let lim = t.resources.as_ref().unwrap().limits.as_ref().unwrap();
        assert_eq!(lim.nano_cpus, Some(250_000_000));
        assert_eq!(lim.memory_bytes, Some(32 << 20));
    }

    #[test]
    fn restarts_count_from_the_deploy_base() {
        let node = NodeDeployment::new(AppId::from("a"), "s", "img@sha256:ff");
        let env = BTreeMap::new();
        let mut spec = service_spec(
            &node,
            &SpecInputs {
                name: "bannou-s-a",
                image: "img@sha256:ff",
                environment: &env,
                network: "n",
                hosts: &[],
                mounts: &[],
                stop_grace: Duration::ZERO,
                replicas: 1,
                force_update: 4,
            },
        );
        spec.task_template.as_mut().unwrap().force_update = Some(6);
        assert_eq!(forced_restarts(&spec), 2);
        spec.labels.as_mut().unwrap().remove(IMAGE_LABEL);
        assert_eq!(shown_image(&spec), "img");
        assert!(spec.task_template.as_ref().unwrap().resources.is_none());
        let container = spec.task_template.as_ref().unwrap().container_spec.as_ref();
        assert!(container.unwrap().mounts.is_none(), "no mounts asked, none");
    }

    #[test]
    fn restart_policies_hosts_and_modes() {
        assert_eq!(
            swarm_restart_policy(RestartPolicy::Never).condition,
            Some(TaskSpecRestartPolicyConditionEnum::NONE)
        );
        assert_eq!(
            swarm_restart_policy(RestartPolicy::default()).condition,
            Some(TaskSpecRestartPolicyConditionEnum::ANY)
        );
        assert_eq!(
            swarm_hosts(&["h:::1".to_owned(), "bad".to_owned()]),
            vec!["::1 h".to_owned()]
        );
        let global = ServiceSpec {
            mode: Some(ServiceSpecMode {
                global: Some(HashMap::new()),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(spec_replicas(&global), None);
        assert_eq!(nanos(Duration::from_millis(1)), 1_000_000);
    }
}

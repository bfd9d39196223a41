//! Pure mapping between the orchestrator's node model and Docker's: replica names and
//! labels, the environment list, restart policies, state mapping
//! (docs/COMPATIBILITY.md#docker-compose-backend) and Docker's timestamps. No I/O, so all
//! of it is unit tested.

use std::collections::{BTreeMap, HashMap};

use bollard::models::{RestartPolicy as DockerRestartPolicy, RestartPolicyNameEnum};
use orchestrator_core::Timestamp;
use orchestrator_core::api::enums::ContainerStatusType;
use orchestrator_core::names::AppId;
use orchestrator_core::ports::backend::{RestartPolicy, container_name, labels};

/// Label holding a container's replica number (1 for the primary container).
pub const REPLICA_LABEL: &str = "bannou.replica";
/// Compose v1/v2 label: project name.
pub const COMPOSE_PROJECT: &str = "com.docker.compose.project";
/// Compose label: service name (we write the app-id).
pub const COMPOSE_SERVICE: &str = "com.docker.compose.service";
/// Compose label: replica number (Compose v1 `ps` needs it on every container).
pub const COMPOSE_NUMBER: &str = "com.docker.compose.container-number";
/// Compose label: `False` for service containers.
pub const COMPOSE_ONEOFF: &str = "com.docker.compose.oneoff";
/// Label on the network we create, naming it.
pub const NETWORK_LABEL: &str = "bannou.network";

/// Name of replica `replica` (1-based) of `app_id`: `bannou-{appId}` for the primary
/// (docs/COMPATIBILITY.md#names-and-app-ids), `bannou-{appId}_{n}` for the others. The
/// underscore cannot clash with another ordinary app-id (DNS labels have no `_`); a name
/// already held by another app-id's container is reported as a conflict, never reused.
pub fn replica_name(app_id: &AppId, replica: u32) -> String {
    if replica <= 1 {
        container_name(app_id)
    } else {
        format!("{}_{replica}", container_name(app_id))
    }
}

/// The labels of replica `replica` of a node: `base` (the node's effective labels, which
/// include our managed labels) plus the replica number and the Compose labels that make
/// `docker-compose -p {project} ps` list the node as service `{appId}`.
pub fn replica_labels(
    base: &BTreeMap<String, String>,
    app_id: &AppId,
    project: &str,
    replica: u32,
) -> HashMap<String, String> {
    let mut all: HashMap<String, String> =
        base.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    all.insert(REPLICA_LABEL.to_owned(), replica.to_string());
    all.insert(COMPOSE_PROJECT.to_owned(), project.to_owned());
    all.insert(COMPOSE_SERVICE.to_owned(), app_id.to_string());
    all.insert(COMPOSE_NUMBER.to_owned(), replica.to_string());
    all.insert(COMPOSE_ONEOFF.to_owned(), "False".to_owned());
    all
}

/// The replica number on a container's labels (1 when absent or unreadable).
pub fn replica_of(labels: &HashMap<String, String>) -> u32 {
    labels
        .get(REPLICA_LABEL)
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

/// App name of a container (docs/COMPATIBILITY.md#docker-compose-backend): label
/// `bannou.app-id`, else the Compose service label, else the name without `/`, else the
/// first 12 characters of the id.
pub fn app_name(labels: &HashMap<String, String>, names: &[String], id: &str) -> String {
    labels
        .get(self::labels::APP_ID)
        .or_else(|| labels.get(COMPOSE_SERVICE))
        .cloned()
        .or_else(|| names.first().map(|n| n.trim_start_matches('/').to_owned()))
        .unwrap_or_else(|| short_id(id).to_owned())
}

/// The first 12 characters of a container id (what `docker ps` shows).
pub fn short_id(id: &str) -> &str {
    let id = id.strip_prefix("sha256:").unwrap_or(id);
    id.get(..12).unwrap_or(id)
}

/// `KEY=VALUE` strings for Docker, in key order.
pub fn env_list(env: &BTreeMap<String, String>) -> Vec<String> {
    env.iter().map(|(k, v)| format!("{k}={v}")).collect()
}

/// Docker's restart policy for ours.
pub fn docker_restart_policy(policy: RestartPolicy) -> DockerRestartPolicy {
    let (name, retries) = match policy {
        RestartPolicy::Never => (RestartPolicyNameEnum::NO, None),
        RestartPolicy::OnFailure { max_retries } => (
            RestartPolicyNameEnum::ON_FAILURE,
            max_retries.map(i64::from),
        ),
        RestartPolicy::Always => (RestartPolicyNameEnum::ALWAYS, None),
        RestartPolicy::UnlessStopped => (RestartPolicyNameEnum::UNLESS_STOPPED, None),
    };
    DockerRestartPolicy {
        name: Some(name),
        maximum_retry_count: retries,
    }
}

/// State mapping of docs/COMPATIBILITY.md#docker-compose-backend on Docker's state text:
/// running => Running, restarting => Starting, exited and created => Stopped, paused (and
/// removing/stopping) => Stopping, dead and anything else => Unhealthy.
pub fn map_state(state: &str) -> ContainerStatusType {
    match state.to_ascii_lowercase().as_str() {
        "running" => ContainerStatusType::Running,
        "restarting" => ContainerStatusType::Starting,
        "exited" | "created" => ContainerStatusType::Stopped,
        "paused" | "removing" | "stopping" => ContainerStatusType::Stopping,
        _ => ContainerStatusType::Unhealthy,
    }
}

/// The state of a node from its replicas' states: Running when any replica runs, else
/// Starting, Stopping, Unhealthy, Stopped in that order of precedence.
pub fn aggregate_state(states: &[ContainerStatusType]) -> ContainerStatusType {
    use ContainerStatusType::*;
    [Running, Starting, Stopping, Unhealthy]
        .into_iter()
        .find(|s| states.contains(s))
        .unwrap_or(Stopped)
}

/// Parses Docker's RFC 3339 timestamps (`2024-01-01T12:00:00.123456789Z`). Docker writes
/// `0001-01-01T00:00:00Z` for "never"; that and unreadable text are `None`.
pub fn parse_docker_time(text: &str) -> Option<Timestamp> {
    if text.is_empty() || text.starts_with("0001-01-01") {
        return None;
    }
    Timestamp::parse(text).ok()
}

/// True when `app_id` can be part of a Docker container name and network alias
/// (`[A-Za-z0-9][A-Za-z0-9_.-]*`).
pub fn valid_app_id(app_id: &AppId) -> bool {
    let s = app_id.as_str();
    s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Escapes a container name for Docker's `name` filter (a regular expression) and
/// anchors it, so `^/bannou-a\.b$` matches only that exact name.
pub fn exact_name_filter(name: &str) -> String {
    let mut out = String::from("^/");
    for c in name.chars() {
        if !c.is_ascii_alphanumeric() && c != '-' && c != '_' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('$');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use orchestrator_core::ports::backend::managed_labels;

    #[test]
    fn replica_names_and_labels() {
        let app = AppId::from("bannou-auth");
        assert_eq!(replica_name(&app, 1), "bannou-bannou-auth");
        assert_eq!(replica_name(&app, 3), "bannou-bannou-auth_3");
        let l = replica_labels(&managed_labels(&app, "auth"), &app, "bannou", 2);
        assert_eq!(l[labels::APP_ID], "bannou-auth");
        assert_eq!(l[labels::MANAGED], "true");
        assert_eq!(l[COMPOSE_PROJECT], "bannou");
        assert_eq!(l[COMPOSE_SERVICE], "bannou-auth");
        assert_eq!(l[COMPOSE_NUMBER], "2");
        assert_eq!(l[COMPOSE_ONEOFF], "False");
        assert_eq!(replica_of(&l), 2);
        assert_eq!(replica_of(&HashMap::new()), 1);
    }

    #[test]
    fn app_name_falls_back_like_upstream() {
        let mut l = HashMap::new();
        assert_eq!(app_name(&l, &[], "0123456789abcdef"), "0123456789ab");
        assert_eq!(app_name(&l, &["/redis".to_owned()], "x"), "redis");
        l.insert(COMPOSE_SERVICE.to_owned(), "svc".to_owned());
        assert_eq!(app_name(&l, &["/redis".to_owned()], "x"), "svc");
        l.insert(labels::APP_ID.to_owned(), "app".to_owned());
        assert_eq!(app_name(&l, &[], "x"), "app");
        assert_eq!(short_id("sha256:0123456789abcdef"), "0123456789ab");
        assert_eq!(short_id("abc"), "abc");
    }

    #[test]
    fn states_map_as_spec_18_3() {
        use ContainerStatusType::*;
        assert_eq!(map_state("running"), Running);
        assert_eq!(map_state("restarting"), Starting);
        assert_eq!(map_state("exited"), Stopped);
        assert_eq!(map_state("created"), Stopped);
        assert_eq!(map_state("paused"), Stopping);
        assert_eq!(map_state("dead"), Unhealthy);
        assert_eq!(map_state("weird"), Unhealthy);
        assert_eq!(aggregate_state(&[Stopped, Running]), Running);
        assert_eq!(aggregate_state(&[Stopped, Starting]), Starting);
        assert_eq!(aggregate_state(&[Stopped, Unhealthy]), Unhealthy);
        assert_eq!(aggregate_state(&[Stopped]), Stopped);
        assert_eq!(aggregate_state(&[]), Stopped);
    }

    #[test]
    fn docker_times_and_never() {
        let t = parse_docker_time("2024-01-01T12:00:00.123456789Z").unwrap();
        assert_eq!(t.unix_millis() % 1000, 123);
        assert_eq!(parse_docker_time("0001-01-01T00:00:00Z"), None);
        assert_eq!(parse_docker_time(""), None);
        assert_eq!(parse_docker_time("yesterday"), None);
    }

    #[test]
    fn restart_policies_and_env() {
        let p = docker_restart_policy(RestartPolicy::OnFailure {
            max_retries: Some(3),
        });
        assert_eq!(p.name, Some(RestartPolicyNameEnum::ON_FAILURE));
        assert_eq!(p.maximum_retry_count, Some(3));
        assert_eq!(
            docker_restart_policy(RestartPolicy::default()).name,
            Some(RestartPolicyNameEnum::UNLESS_STOPPED)
        );
        assert_eq!(
            docker_restart_policy(RestartPolicy::Never).name,
            Some(RestartPolicyNameEnum::NO)
        );
        let env = BTreeMap::from([
            ("B".to_owned(), "2".to_owned()),
            ("A".to_owned(), "x=y".to_owned()),
        ]);
        assert_eq!(env_list(&env), vec!["A=x=y", "B=2"]);
    }

    #[test]
    fn app_ids_must_fit_docker_names() {
        assert!(valid_app_id(&AppId::from("bannou-auth")));
        assert!(valid_app_id(&AppId::from("a.b_c")));
        assert!(!valid_app_id(&AppId::from("")));
        assert!(!valid_app_id(&AppId::from("-x")));
        assert!(!valid_app_id(&AppId::from("a/b")));
        assert!(!valid_app_id(&AppId::from("a b")));
    }

    #[test]
    fn name_filters_are_anchored_and_escaped() {
        assert_eq!(exact_name_filter("bannou-a.b"), "^/bannou-a\\.b$");
        assert_eq!(exact_name_filter("bannou-x_2"), "^/bannou-x_2$");
    }
}

//! The Kubernetes objects of one node, built by a pure function ([`node_objects`]) that
//! both the backend (server-side apply) and `bannou-host k8s manifests` (YAML for review
//! or GitOps) use, so what is printed is exactly what a deploy applies.
//!
//! Per node:
//! - an `apps/v1` Deployment `bannou-{serviceName}-{appId}`
//!   (docs/COMPATIBILITY.md#names-and-app-ids) with one container `bannou`, the node's
//!   image, the environment of docs/COMPATIBILITY.md#backend-injected-variables (plus
//!   `ORCHESTRATOR_LISTEN=0.0.0.0:{port}`, the configuration's extra variables and the
//!   node's own, later wins), port `http`, a readiness probe ([`readiness_path`]) and the
//!   pod annotations of docs/COMPATIBILITY.md#kubernetes-backend;
//! - a `v1` Service named by the app-id (ClusterIP, port `{port}` to `http`), so other
//!   nodes reach the node at `http://{appId}:{port}` as they do on Docker (upstream
//!   creates no Service).
//!
//! Both carry [`managed_labels`](orchestrator_core::ports::backend::managed_labels), the
//! node's extra labels and `app.kubernetes.io/managed-by=bannou-orchestrator`; the pod
//! selector is the app-id plus that managed-by label, so a Service never selects pods we
//! did not create.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar, HTTPGetAction, PodSpec, PodTemplateSpec, Probe,
    ResourceRequirements, Service, ServicePort, ServiceSpec, TCPSocketAction,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use orchestrator_core::Catalog;
use orchestrator_core::names::AppId;
use orchestrator_core::ports::backend::{NodeDeployment, labels, workload_name};
use orchestrator_core::resolver::enabled_services;

use super::KubernetesConfig;
use crate::containers::engine::LISTEN_VARIABLE;

/// The standard label naming the tool that manages an object.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Our value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY_VALUE: &str = "bannou-orchestrator";
/// The standard label naming the application.
pub const NAME_LABEL: &str = "app.kubernetes.io/name";
/// Our value of [`NAME_LABEL`].
pub const NAME_VALUE: &str = "bannou";
/// The one container of every node's pods (docs/COMPATIBILITY.md#names-and-app-ids).
pub const CONTAINER_NAME: &str = "bannou";
/// Name of the container port and of the Service's target port.
pub const PORT_NAME: &str = "http";
/// Pod template annotation `kubectl rollout restart` sets; changing it rolls the pods.
pub const RESTARTED_AT_ANNOTATION: &str = "kubectl.kubernetes.io/restartedAt";
/// Deployment annotation counting our restarts (status reports it in `restart_count`).
pub const RESTART_COUNT_ANNOTATION: &str = "bannou.restart-count";
/// Pod annotation of docs/COMPATIBILITY.md#kubernetes-backend: the mesh is enabled.
pub const MESH_ENABLED_ANNOTATION: &str = "bannou.mesh-enabled";
/// Pod annotation of docs/COMPATIBILITY.md#kubernetes-backend: the port the node serves on.
pub const APP_PORT_ANNOTATION: &str = "bannou.app-port";

/// The two objects of one node.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeObjects {
    /// The `apps/v1` Deployment running the node's pods.
    pub deployment: Deployment,
    /// The `v1` Service giving the node its app-id as host name.
    pub service: Service,
}

impl NodeObjects {
    /// The Deployment's name (`bannou-{serviceName}-{appId}`).
    pub fn deployment_name(&self) -> &str {
        self.deployment.metadata.name.as_deref().unwrap_or_default()
    }

    /// The Service's name (the app-id).
    pub fn service_name(&self) -> &str {
        self.service.metadata.name.as_deref().unwrap_or_default()
    }
}

/// Why a node cannot be expressed as Kubernetes objects.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("node '{app_id}' cannot be deployed on Kubernetes: {reason}")]
pub struct InvalidNode {
    /// The node's app-id.
    pub app_id: AppId,
    /// Which rule it breaks.
    pub reason: String,
}

/// True for a DNS-1035 label (`[a-z]([-a-z0-9]*[a-z0-9])?`, at most 63 characters): what
/// a Service name must be.
pub fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_lowercase()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

/// True for a DNS-1123 subdomain (lower-case alphanumerics, `-` and `.`, alphanumeric at
/// both ends, at most 253 characters): what a Deployment name must be.
pub fn is_dns_subdomain(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 253
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-' || *c == b'.')
}

/// True for a valid label value (empty, or at most 63 of `[A-Za-z0-9_.-]` with
/// alphanumerics at both ends).
pub fn is_label_value(s: &str) -> bool {
    let b = s.as_bytes();
    b.is_empty()
        || (b.len() <= 63
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric()
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.')))
}

/// Checks that the node's names fit Kubernetes: the app-id names the Service (DNS-1035
/// label), `bannou-{serviceName}-{appId}` names the Deployment (DNS-1123 subdomain), and
/// the app-id, service name and extra label values are label values.
pub fn validate(node: &NodeDeployment) -> Result<(), InvalidNode> {
    let invalid = |reason: String| InvalidNode {
        app_id: node.app_id.clone(),
        reason,
    };
    let app = node.app_id.as_str();
    if !is_dns_label(app) {
        return Err(invalid(format!(
            "the app-id names its Service, so it must be a DNS label: lower-case letters, \
             digits and '-', starting with a letter, at most 63 characters (got '{app}')"
        )));
    }
    let name = workload_name(&node.service_name, &node.app_id);
    if !is_dns_subdomain(&name) {
        return Err(invalid(format!(
            "Deployment name '{name}' is not a DNS subdomain (lower-case letters, digits, \
             '-' and '.', at most 253 characters)"
        )));
    }
    for (key, value) in node.effective_labels() {
        if !is_label_value(&value) {
            return Err(invalid(format!(
                "label {key}={value}: values are at most 63 characters of letters, digits, \
                 '-', '_' and '.', starting and ending with a letter or digit"
            )));
        }
    }
    if node.image.trim().is_empty() {
        return Err(invalid("the image is empty".to_owned()));
    }
    Ok(())
}

/// The labels of both objects and of the pods: the node's effective labels
/// (`bannou.app-id`, `bannou.service`, `bannou.orchestrator-managed=true` and its extra
/// labels) plus `app.kubernetes.io/managed-by` and `app.kubernetes.io/name`.
pub fn object_labels(node: &NodeDeployment) -> BTreeMap<String, String> {
    let mut all = node.effective_labels();
    all.insert(MANAGED_BY_LABEL.to_owned(), MANAGED_BY_VALUE.to_owned());
    all.insert(NAME_LABEL.to_owned(), NAME_VALUE.to_owned());
    all
}

/// The pod selector of a node's Deployment and Service: its app-id and our managed-by
/// label (immutable once the Deployment exists).
pub fn selector_labels(app_id: &AppId) -> BTreeMap<String, String> {
    BTreeMap::from([
        (labels::APP_ID.to_owned(), app_id.to_string()),
        (MANAGED_BY_LABEL.to_owned(), MANAGED_BY_VALUE.to_owned()),
    ])
}

/// The label selector (`k=v,k=v`) finding every object of ours with `app_id`, in any
/// case: [`validate`] admits only lower-case app-ids (a DNS label), so every app-id label
/// on this backend is lower case and the selector names the lower-cased app-id (the API
/// server matches label values exactly; app-ids compare without case).
pub fn app_selector(app_id: &AppId) -> String {
    format!(
        "{}={},{}={}",
        labels::APP_ID,
        app_id.as_str().to_ascii_lowercase(),
        labels::MANAGED,
        labels::MANAGED_VALUE
    )
}

/// The label selector finding every object of ours.
pub fn managed_selector() -> String {
    format!("{}={}", labels::MANAGED, labels::MANAGED_VALUE)
}

/// The environment of a node's container (docs/COMPATIBILITY.md#backend-injected-variables
/// for Kubernetes, then ours): `{SERVICENAME}_SERVICE_ENABLED=true` (the service name
/// upper-cased, `-` kept, as upstream), `BANNOU_APP_ID`, `DAEMON_MODE=true`,
/// `BANNOU_HEARTBEAT_ENABLED=true`, then `ORCHESTRATOR_LISTEN=0.0.0.0:{port}`,
/// [`KubernetesConfig::extra_environment`] and the node's environment (later wins).
pub fn node_environment(
    node: &NodeDeployment,
    config: &KubernetesConfig,
) -> BTreeMap<String, String> {
    let mut env = BTreeMap::from([
        (
            format!("{}_SERVICE_ENABLED", node.service_name.to_uppercase()),
            "true".to_owned(),
        ),
        ("BANNOU_APP_ID".to_owned(), node.app_id.to_string()),
        ("DAEMON_MODE".to_owned(), "true".to_owned()),
        ("BANNOU_HEARTBEAT_ENABLED".to_owned(), "true".to_owned()),
        (
            LISTEN_VARIABLE.to_owned(),
            format!("0.0.0.0:{}", config.node_port),
        ),
    ]);
    env.extend(config.extra_environment.clone());
    env.extend(node.environment.clone());
    env
}

/// The HTTP path the readiness probe asks: `/{service}/ping` of the first service the
/// node serves, by docs/COMPATIBILITY.md#enablement-rule enablement over `env` (names in
/// order, routable services before infrastructure ones, never the orchestrator, whose
/// plugin serves no ping). Every node runs the always-on infrastructure layer, so there is
/// one; `None` (no service at all) makes the probe a TCP connect.
pub fn readiness_path(env: &BTreeMap<String, String>) -> Option<String> {
    let catalog = Catalog::builtin();
    let enabled: Vec<String> = enabled_services(env, catalog);
    let pinged = |routable: bool| {
        enabled.iter().find(|s| {
            s.as_str() != "orchestrator" && catalog.find(s).is_some_and(|d| d.routable == routable)
        })
    };
    pinged(true)
        .or_else(|| pinged(false))
        .map(|s| format!("/{s}/ping"))
}

/// The readiness probe: HTTP GET of `path` on port `http`, else a TCP connect to it.
fn readiness_probe(path: Option<String>) -> Probe {
    let port = IntOrString::String(PORT_NAME.to_owned());
    let (http_get, tcp_socket) = match path {
        Some(path) => (
            Some(HTTPGetAction {
                path: Some(path),
                port,
                ..Default::default()
            }),
            None,
        ),
        None => (
            None,
            Some(TCPSocketAction {
                port,
                ..Default::default()
            }),
        ),
    };
    Probe {
        http_get,
        tcp_socket,
        period_seconds: Some(5),
        timeout_seconds: Some(2),
        failure_threshold: Some(3),
        ..Default::default()
    }
}

fn resources(node: &NodeDeployment) -> Option<ResourceRequirements> {
    let limits = node.resources?;
    let mut map = BTreeMap::new();
    if let Some(m) = limits.cpu_millis {
        map.insert("cpu".to_owned(), Quantity(format!("{m}m")));
    }
    if let Some(b) = limits.memory_bytes {
        map.insert("memory".to_owned(), Quantity(b.to_string()));
    }
    (!map.is_empty()).then(|| ResourceRequirements {
        limits: Some(map),
        ..Default::default()
    })
}

/// The Deployment and Service of `node` in `config.namespace`. Deterministic (no clock, no
/// random), so applying it twice sends the same patch. Fails when a name does not fit
/// Kubernetes ([`validate`]).
///
/// The node's restart policy is not expressed: Deployment pods always restart.
pub fn node_objects(
    node: &NodeDeployment,
    config: &KubernetesConfig,
) -> Result<NodeObjects, InvalidNode> {
    validate(node)?;
    let labels = object_labels(node);
    let selector = selector_labels(&node.app_id);
    let env = node_environment(node, config);
    let port = i32::from(config.node_port);
    let pod_annotations = BTreeMap::from([
        (MESH_ENABLED_ANNOTATION.to_owned(), "true".to_owned()),
        (labels::APP_ID.to_owned(), node.app_id.to_string()),
        (APP_PORT_ANNOTATION.to_owned(), config.node_port.to_string()),
    ]);
    let container = Container {
        name: CONTAINER_NAME.to_owned(),
        image: Some(node.image.clone()),
        image_pull_policy: config.image_pull_policy.clone(),
        env: Some(
            env.iter()
                .map(|(k, v)| EnvVar {
                    name: k.clone(),
                    value: Some(v.clone()),
                    ..Default::default()
                })
                .collect(),
        ),
        ports: Some(vec![ContainerPort {
            name: Some(PORT_NAME.to_owned()),
            container_port: port,
            protocol: Some("TCP".to_owned()),
            ..Default::default()
        }]),
        readiness_probe: Some(readiness_probe(readiness_path(&env))),
        resources: resources(node),
        ..Default::default()
    };
    let deployment = Deployment {
        metadata: ObjectMeta {
            name: Some(workload_name(&node.service_name, &node.app_id)),
            namespace: Some(config.namespace.clone()),
            labels: Some(labels.clone()),
            ..Default::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(i32::try_from(node.replicas).unwrap_or(i32::MAX)),
            selector: LabelSelector {
                match_labels: Some(selector.clone()),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels.clone()),
                    annotations: Some(pod_annotations),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    service_account_name: config.service_account.clone(),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        status: None,
    };
    let service = Service {
        metadata: ObjectMeta {
            name: Some(node.app_id.to_string()),
            namespace: Some(config.namespace.clone()),
            labels: Some(labels),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".to_owned()),
            selector: Some(selector),
            ports: Some(vec![ServicePort {
                name: Some(PORT_NAME.to_owned()),
                port,
                target_port: Some(IntOrString::String(PORT_NAME.to_owned())),
                protocol: Some("TCP".to_owned()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        status: None,
    };
    Ok(NodeObjects {
        deployment,
        service,
    })
}

/// Renders objects as one multi-document YAML text (`---` before each document), in the
/// given order, each node's Deployment then its Service.
pub fn render_yaml(objects: &[NodeObjects]) -> Result<String, serde_saphyr::SerializeError> {
    let mut out = String::new();
    for o in objects {
        for doc in [
            serde_saphyr::to_string(&o.deployment)?,
            serde_saphyr::to_string(&o.service)?,
        ] {
            out.push_str("---\n");
            out.push_str(&doc);
            if !doc.ends_with('\n') {
                out.push('\n');
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use orchestrator_core::ports::backend::ResourceLimits;

    fn node() -> NodeDeployment {
        let mut n = NodeDeployment::new(AppId::from("bannou-auth"), "auth-node", "bannou:test");
        n.environment = BTreeMap::from([
            ("BANNOU_SERVICES_ENABLED".to_owned(), "false".to_owned()),
            ("AUTH_SERVICE_ENABLED".to_owned(), "true".to_owned()),
            ("ACCOUNT_SERVICE_ENABLED".to_owned(), "true".to_owned()),
        ]);
        n.labels.insert("team".to_owned(), "core".to_owned());
        n
    }

    #[test]
    fn names_labels_and_selector() {
        let o = node_objects(&node(), &KubernetesConfig::default()).unwrap();
        assert_eq!(o.deployment_name(), "bannou-auth-node-bannou-auth");
        assert_eq!(o.service_name(), "bannou-auth");
        let l = o.deployment.metadata.labels.as_ref().unwrap();
        assert_eq!(l[MANAGED_BY_LABEL], MANAGED_BY_VALUE);
        assert_eq!(l[labels::APP_ID], "bannou-auth");
        assert_eq!(l[labels::SERVICE], "auth-node");
        assert_eq!(l[labels::MANAGED], "true");
        assert_eq!(l["team"], "core");
        assert_eq!(o.service.metadata.labels.as_ref(), Some(l));
        let spec = o.deployment.spec.as_ref().unwrap();
        let sel = spec.selector.match_labels.as_ref().unwrap();
        assert_eq!(sel, &selector_labels(&AppId::from("bannou-auth")));
        assert_eq!(
            o.service.spec.as_ref().unwrap().selector.as_ref(),
            Some(sel)
        );
        let template = spec.template.metadata.as_ref().unwrap();
        assert!(
            sel.iter()
                .all(|(k, v)| template.labels.as_ref().unwrap().get(k) == Some(v)),
            "the selector matches the pod template"
        );
        assert_eq!(
            template.annotations.as_ref().unwrap()[APP_PORT_ANNOTATION],
            "80"
        );
        assert_eq!(o.deployment.metadata.namespace.as_deref(), Some("default"));
    }

    #[test]
    fn container_env_port_probe_and_limits() {
        let mut n = node();
        n.resources = Some(ResourceLimits {
            cpu_millis: Some(250),
            memory_bytes: Some(64 << 20),
        });
        n.environment
            .insert("DAEMON_MODE".to_owned(), "false".to_owned());
        let config = KubernetesConfig {
            node_port: 8080,
            extra_environment: BTreeMap::from([("X".to_owned(), "1".to_owned())]),
            ..KubernetesConfig::default()
        };
        let o = node_objects(&n, &config).unwrap();
        let pod = o.deployment.spec.unwrap().template.spec.unwrap();
        let c = &pod.containers[0];
        assert_eq!(c.name, CONTAINER_NAME);
        assert_eq!(c.image.as_deref(), Some("bannou:test"));
        let env: BTreeMap<_, _> = c
            .env
            .as_ref()
            .unwrap()
            .iter()
            .map(|e| (e.name.as_str(), e.value.as_deref().unwrap()))
            .collect();
        assert_eq!(
            env["AUTH-NODE_SERVICE_ENABLED"], "true",
            "docs/COMPATIBILITY.md#backend-injected-variables as upstream"
        );
        assert_eq!(env["BANNOU_APP_ID"], "bannou-auth");
        assert_eq!(env["BANNOU_HEARTBEAT_ENABLED"], "true");
        assert_eq!(env["DAEMON_MODE"], "false", "the node's environment wins");
        assert_eq!(env[LISTEN_VARIABLE], "0.0.0.0:8080");
        assert_eq!(env["X"], "1");
        assert!(
            !env.contains_key("BANNOU_MAPPING_SOURCE_APP_ID"),
            "docs/COMPATIBILITY.md#backend-injected-variables"
        );
        let port = &c.ports.as_ref().unwrap()[0];
        assert_eq!(port.container_port, 8080);
        let probe = c
            .readiness_probe
            .as_ref()
            .unwrap()
            .http_get
            .as_ref()
            .unwrap();
        assert_eq!(probe.path.as_deref(), Some("/account/ping"));
        assert_eq!(probe.port, IntOrString::String(PORT_NAME.to_owned()));
        let limits = c.resources.as_ref().unwrap().limits.as_ref().unwrap();
        assert_eq!(limits["cpu"], Quantity("250m".to_owned()));
        assert_eq!(limits["memory"], Quantity((64u64 << 20).to_string()));
        let svc_port = &o.service.spec.unwrap().ports.unwrap()[0];
        assert_eq!(svc_port.port, 8080);
    }

    #[test]
    fn probe_pings_a_hosted_service_else_connects() {
        let only_orchestrator = BTreeMap::from([
            ("BANNOU_SERVICES_ENABLED".to_owned(), "false".to_owned()),
            ("ORCHESTRATOR_SERVICE_ENABLED".to_owned(), "true".to_owned()),
        ]);
        let path = readiness_path(&only_orchestrator).unwrap();
        assert_ne!(
            path, "/orchestrator/ping",
            "the orchestrator serves no ping"
        );
        assert!(
            path.ends_with("/ping"),
            "{path}: an always-on service's ping"
        );
        let probe = readiness_probe(None);
        assert!(probe.http_get.is_none());
        assert!(probe.tcp_socket.is_some());
    }

    #[test]
    fn invalid_names_are_refused_with_the_rule() {
        let mut n = node();
        n.app_id = AppId::from("Bannou_Auth");
        let e = node_objects(&n, &KubernetesConfig::default()).unwrap_err();
        assert!(e.to_string().contains("DNS label"), "{e}");
        let mut n = node();
        n.labels.insert("x".to_owned(), "a b".to_owned());
        assert!(validate(&n).unwrap_err().reason.contains("label x=a b"));
        assert!(is_dns_label("a-1"));
        assert!(!is_dns_label("1a"));
        assert!(!is_dns_label("a-"));
        assert!(!is_dns_label(&"a".repeat(64)));
        assert!(is_dns_subdomain("bannou-x.y"));
        assert!(!is_dns_subdomain("Bannou"));
        assert!(is_label_value(""));
        assert!(is_label_value("A_b.c-1"));
        assert!(!is_label_value("-a"));
    }

    #[test]
    fn objects_are_deterministic_and_render_as_yaml() {
        let config = KubernetesConfig::default();
        let a = node_objects(&node(), &config).unwrap();
        let b = node_objects(&node(), &config).unwrap();
        assert_eq!(
            serde_json::to_string(&a.deployment).unwrap(),
            serde_json::to_string(&b.deployment).unwrap()
        );
        let yaml = render_yaml(&[a]).unwrap();
        assert_eq!(yaml.matches("---\n").count(), 2);
        assert!(yaml.contains("kind: Deployment"), "{yaml}");
        assert!(yaml.contains("kind: Service"), "{yaml}");
    }
}

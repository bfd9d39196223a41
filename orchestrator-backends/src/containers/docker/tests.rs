//! Unit tests of `containers::docker`.

use super::*;
use orchestrator_core::ports::backend::{ResourceLimits, RestartPolicy};

fn backend(config: DockerConfig) -> DockerBackend {
    DockerBackend::new(engine::tests::unanswered_client(), config)
}

#[test]
fn nodes_get_the_configured_port_and_extra_variables_under_their_own() {
    let mut config = DockerConfig {
        node_port: 8081,
        ..DockerConfig::default()
    };
    config
        .extra_environment
        .insert("DAEMON_MODE".into(), "extra".into());
    let b = backend(config);
    let mut node = NodeDeployment::new(AppId::from("n1"), "auth", "bannou:test");
    assert_eq!(b.node_environment(&node)[LISTEN_VARIABLE], "0.0.0.0:8081");
    assert_eq!(b.node_environment(&node)["DAEMON_MODE"], "extra");
    node.environment.insert("DAEMON_MODE".into(), "node".into());
    assert_eq!(b.node_environment(&node)["DAEMON_MODE"], "node");
}

#[test]
fn create_body_names_labels_network_and_limits() {
    let config = DockerConfig {
        network: "bannou_test".into(),
        mounts: NodeMounts {
            logs_volume: Some("logs-data".into()),
            certificates_host_path: Some("/certs".into()),
            presets_host_path: None,
        },
        extra_hosts: vec!["bannou:172.18.0.1".into()],
        ..DockerConfig::default()
    };
    let b = backend(config);
    let mut node = NodeDeployment::new(AppId::from("bannou-auth"), "auth", "bannou:test");
    node.labels.insert("team".into(), "core".into());
    node.restart_policy = RestartPolicy::Never;
    node.resources = Some(ResourceLimits {
        cpu_millis: Some(500),
        memory_bytes: Some(64 << 20),
    });
    let body = b.create_body(&node, 2);
    let l = body.labels.as_ref().unwrap();
    assert_eq!(l[labels::APP_ID], "bannou-auth");
    assert_eq!(l[labels::SERVICE], "auth");
    assert_eq!(l[labels::MANAGED], "true");
    assert_eq!(l["team"], "core");
    assert_eq!(l[model::REPLICA_LABEL], "2");
    assert_eq!(l[model::COMPOSE_PROJECT], "bannou");
    assert_eq!(l[model::COMPOSE_SERVICE], "bannou-auth");
    let host = body.host_config.as_ref().unwrap();
    assert_eq!(host.network_mode.as_deref(), Some("bannou_test"));
    assert_eq!(host.nano_cpus, Some(500_000_000));
    assert_eq!(host.memory, Some(64 << 20));
    assert_eq!(
        host.mounts.as_ref().unwrap(),
        &b.config().mounts.mounts(),
        "the shared mount list"
    );
    assert_eq!(host.mounts.as_ref().unwrap().len(), 2);
    assert!(host.binds.is_none(), "no legacy binds");
    assert_eq!(host.extra_hosts.as_ref().unwrap()[0], "bannou:172.18.0.1");
    let endpoints = body
        .networking_config
        .as_ref()
        .unwrap()
        .endpoints_config
        .as_ref()
        .unwrap();
    assert_eq!(
        endpoints["bannou_test"].aliases.as_ref().unwrap(),
        &vec!["bannou-auth".to_owned(), "bannou-bannou-auth".to_owned()]
    );
    let env = body.env.unwrap();
    assert!(env.contains(&"SSL_CERT_DIR=/certificates".to_owned()));
    assert!(env.contains(&"ORCHESTRATOR_LISTEN=0.0.0.0:80".to_owned()));
}

#[tokio::test]
async fn an_absent_engine_is_reported_unavailable() {
    let b = backend(DockerConfig::default());
    let a = b.check_availability().await;
    assert!(!a.available);
    assert!(
        a.reason.unwrap().contains("not accessible"),
        "connection error"
    );
    let err = b.list().await.unwrap_err();
    assert!(matches!(err, BackendError::Unavailable { .. }), "{err:?}");
    let err = b.prune(&BTreeSet::from([CleanTarget::All]), None).await;
    assert!(matches!(err, Err(BackendError::Unavailable { .. })));
}

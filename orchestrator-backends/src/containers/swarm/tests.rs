//! Unit tests of `containers::swarm`.

use super::*;

fn backend(config: SwarmConfig) -> SwarmBackend {
    SwarmBackend::new(engine::tests::unanswered_client(), config)
}

#[test]
fn mounted_certificates_and_the_port_reach_the_tasks_environment() {
    let node = NodeDeployment::new(AppId::from("n1"), "auth", "bannou:test");
    let plain = backend(SwarmConfig::default()).node_environment(&node);
    assert!(
        !plain.contains_key("SSL_CERT_DIR"),
        "no certificates mounted"
    );
    assert_eq!(plain["ORCHESTRATOR_LISTEN"], "0.0.0.0:80");
    let with_certs = backend(SwarmConfig {
        node_port: 8081,
        mounts: NodeMounts {
            certificates_host_path: Some("/srv/certs".into()),
            ..NodeMounts::default()
        },
        ..SwarmConfig::default()
    });
    let env = with_certs.node_environment(&node);
    assert_eq!(env["SSL_CERT_DIR"], "/certificates");
    assert_eq!(env["ORCHESTRATOR_LISTEN"], "0.0.0.0:8081");
}

#[tokio::test]
async fn an_absent_engine_is_reported_unavailable() {
    let b = backend(SwarmConfig::default());
    assert_eq!(b.backend_type(), BackendType::Swarm);
    let a = b.check_availability().await;
    assert!(!a.available);
    assert!(a.reason.unwrap().contains("not accessible"));
    assert!(matches!(
        b.list().await,
        Err(BackendError::Unavailable { .. })
    ));
    assert!(matches!(
        b.prune(&BTreeSet::from([CleanTarget::All]), None).await,
        Err(BackendError::Unavailable { .. })
    ));
}

#[tokio::test]
async fn invalid_names_and_too_many_replicas_are_refused_before_any_request() {
    let b = backend(SwarmConfig {
        max_replicas: 2,
        ..SwarmConfig::default()
    });
    let long = "x".repeat(60);
    let node = NodeDeployment::new(AppId::new(long), "svc", "img");
    let err = b.deploy_node(&node).await.unwrap_err();
    assert!(
        matches!(&err, BackendError::Runtime { message, .. } if message.contains("at most 63")),
        "{err:?}"
    );
    let node = NodeDeployment::new(AppId::from("a/b"), "svc", "img");
    assert!(matches!(
        b.deploy_node(&node).await,
        Err(BackendError::Runtime { .. })
    ));
    let mut node = NodeDeployment::new(AppId::from("ok"), "svc", "img");
    node.replicas = 3;
    assert!(matches!(
        b.deploy_node(&node).await,
        Err(BackendError::Unsupported { .. })
    ));
}

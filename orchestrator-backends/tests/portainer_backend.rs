//! The Portainer backend against a stand-in for Portainer started by each test
//! ([`PortainerProxy`]: it checks `X-API-Key`, answers `/api/status`, and forwards
//! `/api/endpoints/1/docker/...` to the local Docker engine). Skips without an engine
//! unless `BANNOU_TEST_REQUIRE=docker`.
//!
//! Checked: availability and its reasons (right key, wrong key, wrong endpoint, nothing
//! listening); the shared backend conformance suite through the proxy; three nodes
//! deployed, running, listed, restarted, their logs read and torn down through the proxy,
//! leaving nothing of ours; every one of those calls really went through the proxy.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use orchestrator_backends::containers::docker::{DockerBackend, DockerConfig};
use orchestrator_backends::containers::portainer::PortainerConfig;
use orchestrator_backends::containers::testing::{
    PROXY_VERSION, PortainerProxy, docker_and_image, eventually, our_container_names, unique,
    with_cleanup,
};
use orchestrator_core::api::enums::{ContainerStatusType, RestartPriority, TeardownMode};
use orchestrator_core::events::BackendType;
use orchestrator_core::names::AppId;
use orchestrator_core::ports::backend::{
    BackendError, ContainerBackend, LogQuery, NodeDeployment, RestartOptions, TeardownOptions,
};
use orchestrator_core::testkit::backend::{BackendSuite, backend_conformance};

const KEY: &str = "ptr_test-key";

fn config(proxy: &PortainerProxy, network: &str) -> PortainerConfig {
    PortainerConfig {
        api_key: Some(KEY.to_owned()),
        request_timeout: Duration::from_secs(30),
        docker: DockerConfig {
            network: network.to_owned(),
            replace_grace: Duration::from_secs(2),
            ..DockerConfig::default()
        },
        ..PortainerConfig::new(proxy.url())
    }
}

async fn backend(config: PortainerConfig) -> DockerBackend {
    DockerBackend::connect_portainer(config)
        .await
        .expect("a Portainer client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn availability_says_why_portainer_cannot_be_used() {
    let test = "availability_says_why_portainer_cannot_be_used";
    let Some((_docker, _image)) = docker_and_image(test).await else {
        return;
    };
    let proxy = PortainerProxy::start(Some(KEY)).await.unwrap();
    let network = unique("bannou_ptr_avail");

    let good = backend(config(&proxy, &network)).await;
    assert_eq!(good.backend_type(), BackendType::Portainer);
    let a = good.check_availability().await;
    assert!(a.available, "{:?}", a.reason);
    assert_eq!(a.version.as_deref(), Some(PROXY_VERSION));
    assert_eq!(
        a.reason.as_deref(),
        Some(format!("{} (endpoint 1)", proxy.url()).as_str()),
        "the endpoint is shown"
    );

    let mut wrong_key = config(&proxy, &network);
    wrong_key.api_key = Some("not-the-key".to_owned());
    let a = backend(wrong_key).await.check_availability().await;
    assert!(!a.available);
    assert_eq!(a.reason.as_deref(), Some("Portainer returned 401"));

    let mut no_key = config(&proxy, &network);
    no_key.api_key = None;
    let b = backend(no_key).await;
    assert_eq!(
        b.check_availability().await.reason.as_deref(),
        Some("Portainer returned 401")
    );
    // A call made anyway fails with Portainer's answer, not a hang or a panic.
    let err = b.list().await.unwrap_err();
    assert!(
        matches!(&err, BackendError::Runtime { message, .. } if message.contains("401")),
        "{err}"
    );

    let mut wrong_endpoint = config(&proxy, &network);
    wrong_endpoint.endpoint_id = 7;
    let a = backend(wrong_endpoint).await.check_availability().await;
    assert!(!a.available);
    let reason = a.reason.unwrap();
    assert!(
        reason.contains("endpoint 7") && reason.contains("404"),
        "{reason}"
    );

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut nobody = config(&proxy, &network);
    nobody.url = format!("http://127.0.0.1:{port}");
    let a = backend(nobody).await.check_availability().await;
    assert!(
        a.reason
            .as_deref()
            .is_some_and(|r| r.starts_with("Connection failed: ")),
        "{a:?}"
    );
    println!(
        "checked: Portainer available (version, endpoint), 401 with a wrong or no key, 404 \
         endpoint, connection refused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portainer_backend_passes_the_conformance_suite() {
    let test = "portainer_backend_passes_the_conformance_suite";
    let Some((docker, image)) = docker_and_image(test).await else {
        return;
    };
    let proxy = PortainerProxy::start(Some(KEY)).await.unwrap();
    let prefix = unique("ptrconf");
    let network = unique("bannou_ptr_conf");
    with_cleanup(&docker, &prefix, Some(&network), async {
        let suite = BackendSuite {
            image: image.clone(),
            app_id_prefix: prefix.clone(),
        };
        let cfg = config(&proxy, &network);
        backend_conformance(&suite, || {
            let cfg = cfg.clone();
            async move {
                let b: Arc<dyn ContainerBackend> = Arc::new(backend(cfg).await);
                b
            }
        })
        .await;
        assert!(proxy.forwarded() > 0, "the calls went through the proxy");
        println!(
            "checked: backend_conformance through the Portainer proxy ({} Docker calls forwarded)",
            proxy.forwarded()
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_deploy_run_log_restart_and_leave_through_portainer() {
    let test = "three_nodes_deploy_run_log_restart_and_leave_through_portainer";
    let Some((docker, image)) = docker_and_image(test).await else {
        return;
    };
    let proxy = PortainerProxy::start(Some(KEY)).await.unwrap();
    let prefix = unique("ptr3");
    let network = unique("bannou_ptr3");
    with_cleanup(&docker, &prefix, Some(&network), async {
        let b = backend(config(&proxy, &network)).await;
        let apps: Vec<AppId> = ["auth", "account", "realm"]
            .iter()
            .map(|s| AppId::new(format!("{prefix}-{s}")))
            .collect();
        for (app, service) in apps.iter().zip(["auth", "account", "realm"]) {
            let mut node = NodeDeployment::new(app.clone(), service, image.clone());
            node.environment = BTreeMap::from([
                ("BANNOU_SERVICES_ENABLED".to_owned(), "false".to_owned()),
                (
                    format!("{}_SERVICE_ENABLED", service.to_uppercase()),
                    "true".to_owned(),
                ),
            ]);
            let deployed = b.deploy_node(&node).await.expect("deploy");
            assert_eq!(deployed.name, format!("bannou-{app}"));
        }
        // The engine itself (asked directly) runs the three, named as the Docker backend
        // names them.
        let expected: Vec<String> = {
            let mut v: Vec<String> = apps.iter().map(|a| format!("/bannou-{a}")).collect();
            v.sort();
            v
        };
        assert_eq!(our_container_names(&docker, &prefix).await, expected);
        for app in &apps {
            eventually("node running", 100, || async {
                b.status(app).await.unwrap().status == ContainerStatusType::Running
            })
            .await;
        }
        let listed = b.list().await.unwrap();
        let mine = listed
            .iter()
            .filter(|c| c.app_id.as_str().starts_with(&prefix))
            .count();
        assert_eq!(mine, 3, "{listed:?}");

        // Logs through the proxy: every node announces itself on stderr.
        for app in &apps {
            eventually("the node announced itself", 100, || async {
                b.logs(app, &LogQuery::default())
                    .await
                    .unwrap()
                    .iter()
                    .any(|l| l.message.contains("listening on"))
            })
            .await;
        }

        // Restart one: its start time moves on.
        let before = b.status(&apps[0]).await.unwrap();
        b.restart(
            &apps[0],
            &RestartOptions {
                priority: RestartPriority::Graceful,
                grace: Duration::from_secs(2),
                reason: "test".to_owned(),
            },
        )
        .await
        .expect("restart");
        let after = b.status(&apps[0]).await.unwrap();
        assert!(after.started_at > before.started_at);
        assert!(after.restart_count > before.restart_count);

        // Teardown: nothing of ours is left on the engine.
        let calls_before = proxy.forwarded();
        for app in &apps {
            let torn = b
                .teardown(
                    app,
                    &TeardownOptions {
                        mode: TeardownMode::Graceful,
                        remove_volumes: true,
                        grace: Duration::from_secs(2),
                    },
                )
                .await
                .expect("teardown");
            assert_eq!(torn.stopped.len(), 1);
        }
        assert!(our_container_names(&docker, &prefix).await.is_empty());
        assert!(
            proxy.forwarded() > calls_before,
            "teardown went through the proxy"
        );
        assert!(matches!(
            b.status(&apps[0]).await,
            Err(BackendError::NotFound { .. })
        ));
        println!(
            "checked: 3 nodes deployed, running, listed, logged, one restarted, all torn down \
             through the Portainer proxy ({} Docker calls forwarded)",
            proxy.forwarded()
        );
    })
    .await;
}

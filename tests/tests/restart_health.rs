//! A node restarted through `POST /orchestrator/services/restart` is healthy again for
//! every service it hosts: its old instance's goodbye heartbeat (or,
//! after a crash, its last report going silent) must not outvote the new instance of the
//! same node. Driven over HTTP on the in-process backend (in memory), and on Docker with
//! our FROM-scratch image (skipped without Docker and redis-server unless
//! `BANNOU_TEST_REQUIRE` names them).

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use bannou_host::client::ApiClient;
use common::{Host, config, our_presets};
use orchestrator_core::api::{
    DeployRequest, ServiceHealthRequest, ServiceRestartRequest, ShouldRestartServiceRequest,
    TeardownRequest,
};
use orchestrator_core::events::{BackendType, InstanceHealthStatus};

/// One node hosting `account` and `auth`.
fn preset(node: &str) -> String {
    format!(
        "name: restart\ndescription: one node with account and auth\ntopology:\n  nodes:\n    \
         - name: {node}\n      services: [account, auth]\n"
    )
}

/// Deploys `restart`, with heartbeats every second so that several beats of the new
/// instance arrive within the test.
fn deploy(backend: Option<BackendType>) -> DeployRequest {
    DeployRequest {
        preset: Some("restart".to_owned()),
        backend,
        environment: Some(BTreeMap::from([(
            "BANNOU_HEARTBEAT_INTERVAL_SECONDS".to_owned(),
            "1".to_owned(),
        )])),
        ..DeployRequest::default()
    }
}

/// How long the services are watched after the restart: a few beats of the new instance.
const WATCH: Duration = Duration::from_secs(3);

/// Restarts `auth` (forced), then checks for [`WATCH`] that `account` and `auth` stay
/// healthy, not due for a restart, with no unhealthy entry for `node`.
async fn restart_and_watch(api: &ApiClient, node: &str) {
    let restarted = api
        .restart_service(&ServiceRestartRequest {
            service_name: "auth".to_owned(),
            environment: None,
            force: true,
            timeout: 60,
        })
        .await
        .expect("the restart succeeds");
    assert_eq!(
        restarted.current_status,
        Some(InstanceHealthStatus::Healthy)
    );

    let until = tokio::time::Instant::now() + WATCH;
    loop {
        for service in ["account", "auth"] {
            let rec = api
                .should_restart_service(&ShouldRestartServiceRequest {
                    service_name: service.to_owned(),
                })
                .await
                .unwrap();
            assert_eq!(
                rec.current_status,
                Some(InstanceHealthStatus::Healthy),
                "{service} after the restart of its node: {rec:?}"
            );
            assert!(!rec.should_restart, "{service}: {rec:?}");
        }
        let report = api
            .services_health(&ServiceHealthRequest::default())
            .await
            .unwrap();
        assert!(
            !report.unhealthy_services.iter().any(|e| e.app_id == node),
            "no unhealthy entry for {node}: {report:?}"
        );
        if tokio::time::Instant::now() >= until {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_is_healthy_again_in_process() {
    let presets = tempfile::tempdir().unwrap();
    std::fs::write(presets.path().join("restart.yaml"), preset("bannou-auth")).unwrap();
    let host = Host::start(config(presets.path())).await;

    let reply = host.api.deploy(&deploy(None)).await.unwrap();
    assert_eq!(reply.status, 200, "{:?}", reply.body.warnings);
    restart_and_watch(&host.api, "bannou-auth").await;

    host.api
        .teardown(&TeardownRequest::default())
        .await
        .unwrap();
    host.shutdown().await;
}

/// Deploying `npc-brains` over a running `game-stack` tears `game-stack`'s nodes down:
/// they leave the health report, their final "shutting down" beats (which may arrive after
/// the teardown) do not bring them back as Unavailable, and so a forced restart of
/// `actor` targets only the node that runs it now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_torn_down_by_a_replacing_deploy_leave_the_health_report() {
    let host = Host::start(config(&our_presets())).await;
    let preset = |name: &str| DeployRequest {
        preset: Some(name.to_owned()),
        environment: Some(BTreeMap::from([(
            "BANNOU_HEARTBEAT_INTERVAL_SECONDS".to_owned(),
            "1".to_owned(),
        )])),
        ..DeployRequest::default()
    };
    let torn_down = ["stack-auth", "stack-world", "stack-features"];
    for round in 0..3 {
        for name in ["game-stack", "npc-brains"] {
            let reply = host.api.deploy(&preset(name)).await.unwrap();
            assert_eq!(reply.status, 200, "round {round}, {name}: {:?}", reply.body);
        }
        // Watch long enough for late beats of the torn-down nodes to arrive.
        let until = tokio::time::Instant::now() + Duration::from_secs(2);
        while tokio::time::Instant::now() < until {
            let report = host
                .api
                .services_health(&ServiceHealthRequest::default())
                .await
                .unwrap();
            let ghosts: Vec<_> = report
                .healthy_services
                .iter()
                .chain(&report.unhealthy_services)
                .filter(|e| torn_down.iter().any(|n| e.app_id.eq_ignore_ascii_case(n)))
                .collect();
            assert!(
                ghosts.is_empty(),
                "round {round}: torn-down nodes reported: {ghosts:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let restarted = host
        .api
        .restart_service(&ServiceRestartRequest {
            service_name: "actor".to_owned(),
            environment: None,
            force: true,
            timeout: 60,
        })
        .await
        .expect("the restart of actor succeeds");
    assert_eq!(
        restarted.current_status,
        Some(InstanceHealthStatus::Healthy)
    );

    host.api
        .teardown(&TeardownRequest::default())
        .await
        .unwrap();
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_is_healthy_again_on_docker() {
    let test = "a_restarted_node_is_healthy_again_on_docker";
    common::on_docker(test, "restart", |scene| async move {
        let node = format!("{}-auth", scene.prefix);
        std::fs::write(scene.presets.path().join("restart.yaml"), preset(&node)).unwrap();
        let host = Host::start(scene.config()).await;

        let reply = host
            .api
            .deploy(&deploy(Some(BackendType::Compose)))
            .await
            .unwrap();
        assert_eq!(reply.status, 200, "{:?}", reply.body.warnings);
        restart_and_watch(&host.api, &node).await;

        let done = host
            .api
            .teardown(&TeardownRequest::default())
            .await
            .unwrap();
        assert!(done.errors.is_none(), "{:?}", done.errors);
        host.shutdown().await;
    })
    .await;
}

//! The Swarm backend against the local engine with our own image (skips without an engine
//! unless `BANNOU_TEST_REQUIRE=docker`).
//!
//! The engine's Swarm mode is process-wide state, so every scenario runs inside the one
//! test of this binary, under one [`SwarmSession`]: when the engine's Swarm is inactive it
//! is initialised (`docker swarm init --advertise-addr 127.0.0.1`, listening on loopback
//! only) and left again afterwards (`docker swarm leave --force`, plus the
//! `docker_gwbridge` network the swarm created), whether the scenarios pass or panic; a
//! drop guard leaves it even if the test is unwound some other way. An engine whose Swarm
//! was already active is used as it is and stays active.
//!
//! Scenarios: the shared conformance suite; a node's life (deploy with the local image,
//! status Running from real tasks, scale to 2 running tasks, a rolling restart that
//! replaces every task, logs with both streams, scale down, teardown and prune leaving no
//! service or network of ours); a node that exits at start (Unhealthy, its error in the
//! logs, pruned) next to a service without our label that prune and list leave alone; a
//! task mounting the logs volume (writable) and the certificates directory (read-only).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bollard::Docker;
use bollard::models::{
    LocalNodeState, ServiceSpec, SwarmInitRequest, TaskSpec, TaskSpecContainerSpec,
    TaskSpecRestartPolicy, TaskSpecRestartPolicyConditionEnum, TaskState,
};
use bollard::query_parameters::{
    InspectNetworkOptions, InspectServiceOptions, LeaveSwarmOptions, ListContainersOptions,
    ListServicesOptions, ListTasksOptions,
};
use futures::FutureExt;
use orchestrator_backends::containers::mounts::{CERTIFICATES_MOUNT, LOGS_MOUNT, NodeMounts};
use orchestrator_backends::containers::swarm::model::IMAGE_LABEL;
use orchestrator_backends::containers::swarm::{SwarmBackend, SwarmConfig};
use orchestrator_backends::containers::testing::{docker_and_image, unique};
use orchestrator_core::api::enums::{
    CleanTarget, ContainerStatusType, LogStreamType, RestartPriority, RestartStrategy, TeardownMode,
};
use orchestrator_core::names::AppId;
use orchestrator_core::ports::backend::{
    BackendError, ContainerBackend, LogQuery, NodeDeployment, RestartOptions, RestartPolicy,
    TeardownOptions, labels, workload_name,
};
use orchestrator_core::testkit::backend::{BackendSuite, backend_conformance};

/// The bridge network Swarm creates for its containers' outside traffic.
const GWBRIDGE: &str = "docker_gwbridge";
/// Swarm's routing-mesh network.
const INGRESS: &str = "ingress";

/// An environment that makes `bannou-host serve` refuse to start (a config value out of
/// range), so the node exits at once with an error on stderr.
const FAILING_ENV: (&str, &str) = ("BANNOU_HEARTBEAT_INTERVAL_SECONDS", "0");

/// The engine in Swarm mode for the length of the test; leaves the swarm again when it
/// joined it.
struct SwarmSession {
    docker: Docker,
    /// True when we initialised the swarm (so we leave it).
    initialised: bool,
    /// Whether `docker_gwbridge` existed before we initialised the swarm.
    gwbridge_existed: bool,
    /// Set once [`SwarmSession::leave`] ran.
    left: AtomicBool,
}

impl SwarmSession {
    /// Joins (initialises) the engine's swarm when inactive. `Err` carries the engine's
    /// exact refusal.
    async fn enter(docker: &Docker) -> Result<SwarmSession, String> {
        let info = docker.info().await.map_err(|e| e.to_string())?;
        let swarm = info.swarm.unwrap_or_default();
        match swarm.local_node_state {
            Some(LocalNodeState::ACTIVE) => {
                if swarm.control_available != Some(true) {
                    return Err("this engine is a Swarm worker; the tests need a manager".into());
                }
                eprintln!("swarm tests: using the engine's active swarm (left as it is)");
                Ok(SwarmSession {
                    docker: docker.clone(),
                    initialised: false,
                    gwbridge_existed: true,
                    left: AtomicBool::new(true),
                })
            }
            Some(LocalNodeState::INACTIVE) | None => {
                let gwbridge_existed = docker
                    .inspect_network(GWBRIDGE, None::<InspectNetworkOptions>)
                    .await
                    .is_ok();
                let request = SwarmInitRequest {
                    listen_addr: Some("127.0.0.1:2377".to_owned()),
                    advertise_addr: Some("127.0.0.1".to_owned()),
                    ..Default::default()
                };
                // From here on the session exists, so even a failed init is undone.
                let session = SwarmSession {
                    docker: docker.clone(),
                    initialised: true,
                    gwbridge_existed,
                    left: AtomicBool::new(false),
                };
                if let Err(e) = docker.init_swarm(request).await {
                    session.leave().await;
                    return Err(format!("docker swarm init refused: {e}"));
                }
                // The routing mesh (`ingress` and its sandbox on `docker_gwbridge`) is set
                // up after init returns; leaving before it is done leaves a stale
                // `ingress` behind, so wait for it.
                let ready = poll(150, || async {
                    docker
                        .inspect_network(INGRESS, None::<InspectNetworkOptions>)
                        .await
                        .is_ok_and(|n| n.containers.is_some_and(|c| !c.is_empty()))
                })
                .await;
                if !ready {
                    eprintln!("swarm tests: the routing mesh did not come up; going on");
                }
                eprintln!("swarm tests: initialised a single-node swarm on 127.0.0.1");
                Ok(session)
            }
            Some(other) => Err(format!(
                "the engine's swarm is {other} ({}); not touching it",
                swarm.error.unwrap_or_default()
            )),
        }
    }

    /// Leaves the swarm we initialised and removes the `docker_gwbridge` it created (when
    /// nothing is attached to it). Idempotent.
    async fn leave(&self) {
        if !self.initialised || self.left.swap(true, Ordering::SeqCst) {
            return;
        }
        if let Err(e) = self
            .docker
            .leave_swarm(Some(LeaveSwarmOptions { force: true }))
            .await
        {
            eprintln!("swarm tests: leaving the swarm failed: {e}");
        }
        let docker = &self.docker;
        let mesh_gone = poll(150, || async {
            docker
                .inspect_network(INGRESS, None::<InspectNetworkOptions>)
                .await
                .is_err()
        })
        .await;
        if !mesh_gone {
            eprintln!("swarm tests: the `ingress` network is still listed after leaving");
        }
        if !self.gwbridge_existed {
            // Removed once the routing mesh's sandbox has let go of it.
            let removed = poll(150, || async {
                match docker
                    .inspect_network(GWBRIDGE, None::<InspectNetworkOptions>)
                    .await
                {
                    Err(_) => true,
                    Ok(n) if n.containers.as_ref().is_none_or(HashMap::is_empty) => {
                        docker.remove_network(GWBRIDGE).await.is_ok()
                    }
                    Ok(_) => false,
                }
            })
            .await;
            if !removed {
                eprintln!("swarm tests: could not remove {GWBRIDGE}");
            }
        }
        eprintln!("swarm tests: left the swarm");
    }
}

impl Drop for SwarmSession {
    /// A last resort when [`SwarmSession::leave`] never ran (the test was unwound before
    /// it): the Docker CLI, synchronously.
    fn drop(&mut self) {
        if self.initialised && !self.left.swap(true, Ordering::SeqCst) {
            let _ = std::process::Command::new("docker")
                .args(["swarm", "leave", "--force"])
                .status();
        }
    }
}

fn config(network: &str) -> SwarmConfig {
    SwarmConfig {
        network: network.to_owned(),
        // Short grace: these nodes hold nothing worth a graceful stop.
        stop_grace: Duration::from_secs(2),
        ..SwarmConfig::default()
    }
}

/// Polls `check` every 200 ms, up to `attempts` times; true once it holds.
async fn poll<F, Fut>(attempts: u32, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..attempts {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

/// Like [`poll`], but panics with `what` when `check` never holds. A bound on attempts,
/// not a timing assertion.
async fn eventually<F, Fut>(what: &str, attempts: u32, check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    if !poll(attempts, check).await {
        panic!("{what}: not reached after {attempts} attempts");
    }
}

/// Names of our services (managed label) whose app-id starts with `prefix`.
async fn our_services(docker: &Docker, prefix: &str) -> Vec<(String, String)> {
    let options = ListServicesOptions {
        filters: Some(HashMap::from([(
            "label".to_owned(),
            vec![format!("{}={}", labels::MANAGED, labels::MANAGED_VALUE)],
        )])),
        ..Default::default()
    };
    docker
        .list_services(Some(options))
        .await
        .unwrap_or_default()
        .into_iter()
        .filter_map(|s| {
            let spec = s.spec?;
            let app = spec.labels?.get(labels::APP_ID)?.clone();
            app.starts_with(prefix)
                .then(|| (s.id.unwrap_or_default(), spec.name.unwrap_or_default()))
        })
        .collect()
}

/// Removes our services of `prefix` (waiting for their containers) and our network.
async fn remove_test_objects(docker: &Docker, prefix: &str, network: &str) {
    let services = our_services(docker, prefix).await;
    for (id, _) in &services {
        let _ = docker.delete_service(id).await;
    }
    for (id, _) in &services {
        for _ in 0..150 {
            let options = ListContainersOptions {
                all: true,
                filters: Some(HashMap::from([(
                    "label".to_owned(),
                    vec![format!("com.docker.swarm.service.id={id}")],
                )])),
                ..Default::default()
            };
            if docker
                .list_containers(Some(options))
                .await
                .map_or(true, |c| c.is_empty())
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    if let Ok(n) = docker
        .inspect_network(network, None::<InspectNetworkOptions>)
        .await
        && n.labels
            .as_ref()
            .and_then(|l| l.get(labels::MANAGED))
            .is_some_and(|v| v == labels::MANAGED_VALUE)
    {
        let _ = docker.remove_network(network).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swarm_backend_on_the_local_engine() {
    let test = "swarm_backend_on_the_local_engine";
    let Some((docker, image)) = docker_and_image(test).await else {
        return;
    };
    let probe = SwarmBackend::new(docker.clone(), SwarmConfig::default());
    let was_active = docker
        .info()
        .await
        .ok()
        .and_then(|i| i.swarm)
        .and_then(|s| s.local_node_state)
        == Some(LocalNodeState::ACTIVE);
    if !was_active {
        let a = probe.check_availability().await;
        assert!(!a.available, "{a:?}");
        assert!(
            a.reason
                .as_deref()
                .is_some_and(|r| r.contains("not active")),
            "{a:?}"
        );
    }
    let session = match SwarmSession::enter(&docker).await {
        Ok(s) => s,
        Err(e) => {
            orchestrator_backends::require::skip_or_fail("docker", test, &e);
            return;
        }
    };
    let prefix = unique("swarm");
    let network = unique("bannou_swarm");
    let outcome = std::panic::AssertUnwindSafe(async {
        conformance(&docker, &image, &prefix, &network).await;
        a_node_lives_scales_restarts_logs_and_leaves_nothing_behind(
            &docker, &image, &prefix, &network,
        )
        .await;
        a_node_that_exits_at_start_is_unhealthy_and_pruned_but_never_a_foreign_service(
            &docker, &image, &prefix, &network,
        )
        .await;
        a_task_mounts_the_logs_volume_writable_and_the_certificates_read_only(
            &docker, &image, &prefix, &network,
        )
        .await;
    })
    .catch_unwind()
    .await;
    remove_test_objects(&docker, &prefix, &network).await;
    session.leave().await;
    if !was_active {
        assert!(
            !probe.check_availability().await.available,
            "the engine's swarm is inactive again"
        );
    }
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

async fn conformance(docker: &Docker, image: &str, prefix: &str, network: &str) {
    let suite = BackendSuite {
        image: image.to_owned(),
        app_id_prefix: format!("{prefix}-c"),
    };
    backend_conformance(&suite, || {
        let b: Arc<dyn ContainerBackend> =
            Arc::new(SwarmBackend::new(docker.clone(), config(network)));
        async move { b }
    })
    .await;
    println!("checked: backend_conformance on Swarm with {image}");
}

async fn a_node_lives_scales_restarts_logs_and_leaves_nothing_behind(
    docker: &Docker,
    image: &str,
    prefix: &str,
    network: &str,
) {
    let b = SwarmBackend::new(docker.clone(), config(network));
    let availability = b.check_availability().await;
    assert!(availability.available, "{availability:?}");
    assert_eq!(
        availability.reason, None,
        "a manager has full functionality"
    );

    let app = AppId::new(format!("{prefix}-node"));
    let mut node = NodeDeployment::new(app.clone(), "life", image.to_owned());
    node.environment = BTreeMap::from([
        ("BANNOU_TEST_MARKER".to_owned(), "1".to_owned()),
        ("BANNOU_SERVICES_ENABLED".to_owned(), "false".to_owned()),
        ("AUTH_SERVICE_ENABLED".to_owned(), "true".to_owned()),
    ]);
    node.labels.insert("team".to_owned(), "core".to_owned());

    // Deploy: the service is named and labelled (docs/COMPATIBILITY.md#names-and-app-ids),
    // runs the local image by id (nothing pulled), and is attached to our overlay network,
    // created and labelled.
    let deployed = b.deploy_node(&node).await.expect("deploy");
    assert_eq!(deployed.name, workload_name("life", &app));
    assert!(!deployed.replaced);
    let service = docker
        .inspect_service(&deployed.backend_id, None::<InspectServiceOptions>)
        .await
        .unwrap();
    let spec = service.spec.unwrap();
    let l = spec.labels.clone().unwrap();
    assert_eq!(l[labels::APP_ID], app.as_str());
    assert_eq!(l[labels::SERVICE], "life");
    assert_eq!(l[labels::MANAGED], "true");
    assert_eq!(l["team"], "core");
    assert_eq!(l[IMAGE_LABEL], image);
    let template = spec.task_template.unwrap();
    let container = template.container_spec.unwrap();
    assert!(
        container.image.as_deref().unwrap().starts_with("sha256:"),
        "pinned to the local image id: {:?}",
        container.image
    );
    let env = container.env.unwrap();
    for want in [
        format!("BANNOU_APP_ID={app}"),
        "ORCHESTRATOR_LISTEN=0.0.0.0:80".to_owned(),
        "BANNOU_HTTP_ENDPOINT=http://bannou".to_owned(),
        "BANNOU_TEST_MARKER=1".to_owned(),
    ] {
        assert!(env.contains(&want), "{want} in {env:?}");
    }
    let net = b.network_info().await.unwrap().expect("network exists");
    assert!(net.managed, "the network we created carries our label");
    let inspected = docker
        .inspect_network(network, None::<InspectNetworkOptions>)
        .await
        .unwrap();
    assert_eq!(inspected.driver.as_deref(), Some("overlay"));
    assert_eq!(inspected.attachable, Some(true));
    let attached = &template.networks.unwrap()[0];
    assert_eq!(attached.target.as_deref(), Some(net.id.as_str()));
    assert!(
        attached
            .aliases
            .as_ref()
            .unwrap()
            .contains(&app.to_string())
    );

    // Status comes from real tasks: Running, one instance.
    eventually("node running", 150, || async {
        let s = b.status(&app).await.unwrap();
        s.status == ContainerStatusType::Running && s.instances == 1
    })
    .await;
    let status = b.status(&app).await.unwrap();
    assert_eq!(status.desired_replicas, 1);
    assert!(
        status.started_at.is_some(),
        "a running task has a start time"
    );
    assert_eq!(status.restart_count, 0);
    let listed = b.list().await.unwrap();
    let mine: Vec<_> = listed.iter().filter(|c| c.app_id == app).collect();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].image, image, "list shows the image as deployed");
    assert_eq!(mine[0].status, ContainerStatusType::Running);

    // Scale to 2: two running tasks.
    let scaled = b.scale(&app, 2).await.expect("scale up");
    assert_eq!((scaled.previous_replicas, scaled.current_replicas), (1, 2));
    eventually("two tasks running", 150, || async {
        b.status(&app).await.unwrap().instances == 2
            && b.running_task_ids(&app).await.unwrap().len() == 2
    })
    .await;
    assert_eq!(b.status(&app).await.unwrap().desired_replicas, 2);
    let listed = b.list().await.unwrap();
    let mine: Vec<_> = listed.iter().filter(|c| c.app_id == app).collect();
    assert_eq!(mine.len(), 1, "replicas list as one node");
    assert_eq!(mine[0].instances, 2);

    // Rolling restart (D5): every task is replaced, the count goes up.
    let before_ids = b.running_task_ids(&app).await.unwrap();
    let before = b.status(&app).await.unwrap();
    let outcome = b
        .restart(
            &app,
            &RestartOptions {
                priority: RestartPriority::Graceful,
                grace: Duration::from_secs(2),
                reason: "test".to_owned(),
            },
        )
        .await
        .expect("restart");
    assert_eq!(outcome.current_instances, 2);
    assert_eq!(outcome.strategy, RestartStrategy::Rolling);
    let after = b.status(&app).await.unwrap();
    assert_eq!(after.restart_count, before.restart_count + 1);
    eventually("two new tasks running", 300, || async {
        let ids = b.running_task_ids(&app).await.unwrap();
        ids.len() == 2 && ids.iter().all(|id| !before_ids.contains(id))
    })
    .await;
    let after = b.status(&app).await.unwrap();
    assert!(
        after.started_at > before.started_at,
        "{before:?} -> {after:?}"
    );

    // Logs: the service's lines from every task, both streams, in time order.
    eventually("the node logged its start", 150, || async {
        b.logs(&app, &LogQuery::default())
            .await
            .unwrap()
            .iter()
            .any(|l| l.message.contains("listening on"))
    })
    .await;
    let lines = b.logs(&app, &LogQuery::default()).await.unwrap();
    assert!(lines.windows(2).all(|w| w[0].timestamp <= w[1].timestamp));
    assert!(
        lines
            .iter()
            .any(|l| l.stream == LogStreamType::Stderr && l.message.contains("listening on")),
        "serve announces itself on stderr: {lines:?}"
    );
    let tail = b
        .logs(
            &app,
            &LogQuery {
                tail: Some(1),
                ..LogQuery::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(tail.len(), 1);

    // Scale down, then tear down: no service of ours is left; prune takes the network.
    let back = b.scale(&app, 1).await.expect("scale down");
    assert_eq!((back.previous_replicas, back.current_replicas), (2, 1));
    eventually("one task running", 150, || async {
        b.running_task_ids(&app).await.unwrap().len() == 1
    })
    .await;
    let torn = b
        .teardown(
            &app,
            &TeardownOptions {
                mode: TeardownMode::Graceful,
                remove_volumes: true,
                grace: Duration::from_secs(2),
            },
        )
        .await
        .expect("teardown");
    assert_eq!(torn.stopped, vec![deployed.backend_id[..12].to_owned()]);
    assert!(our_services(docker, prefix).await.is_empty());
    assert!(matches!(
        b.status(&app).await,
        Err(BackendError::NotFound { .. })
    ));
    assert!(b.list().await.unwrap().iter().all(|c| c.app_id != app));
    let report = b
        .prune(&BTreeSet::from([CleanTarget::Networks]), None)
        .await
        .expect("prune");
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert!(b.network_info().await.unwrap().is_none(), "network pruned");
    println!(
        "checked: swarm deploy, Running from tasks, scale 1->2->1, rolling restart, {} log \
         lines, teardown and prune on {network}",
        lines.len()
    );
}

async fn a_node_that_exits_at_start_is_unhealthy_and_pruned_but_never_a_foreign_service(
    docker: &Docker,
    image: &str,
    prefix: &str,
    network: &str,
) {
    let b = SwarmBackend::new(docker.clone(), config(network));
    let app = AppId::new(format!("{prefix}-fail"));
    let mut node = NodeDeployment::new(app.clone(), "fail", image.to_owned());
    node.environment = BTreeMap::from([(FAILING_ENV.0.to_owned(), FAILING_ENV.1.to_owned())]);
    node.restart_policy = RestartPolicy::Never;
    let deployed = b.deploy_node(&node).await.expect("deploy");

    // A service that is not ours, ended the same way: never listed, never pruned.
    let foreign_name = format!("{prefix}-foreign");
    let image_id = docker.inspect_image(image).await.unwrap().id.unwrap();
    let foreign = docker
        .create_service(
            ServiceSpec {
                name: Some(foreign_name.clone()),
                labels: Some(HashMap::from([(
                    labels::APP_ID.to_owned(),
                    foreign_name.clone(),
                )])),
                task_template: Some(TaskSpec {
                    container_spec: Some(TaskSpecContainerSpec {
                        image: Some(image_id),
                        env: Some(vec![format!("{}={}", FAILING_ENV.0, FAILING_ENV.1)]),
                        ..Default::default()
                    }),
                    restart_policy: Some(TaskSpecRestartPolicy {
                        condition: Some(TaskSpecRestartPolicyConditionEnum::NONE),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            },
            None,
        )
        .await
        .expect("create the foreign service")
        .id
        .unwrap();
    let outcome = std::panic::AssertUnwindSafe(async {
        eventually("the task failed", 150, || async {
            b.status(&app).await.unwrap().status == ContainerStatusType::Unhealthy
        })
        .await;
        let status = b.status(&app).await.unwrap();
        assert_eq!(status.instances, 0);
        assert!(status.stopped_at.is_some(), "{status:?}");
        eventually("the failure is in the logs", 150, || async {
            b.logs(&app, &LogQuery::default())
                .await
                .unwrap()
                .iter()
                .any(|l| l.stream == LogStreamType::Stderr && l.message.contains(FAILING_ENV.0))
        })
        .await;
        let foreign_ended = poll(150, || async {
            docker
                .list_tasks(Some(ListTasksOptions {
                    filters: Some(HashMap::from([(
                        "service".to_owned(),
                        vec![foreign.clone()],
                    )])),
                }))
                .await
                .is_ok_and(|t| {
                    t.iter()
                        .any(|t| t.status.as_ref().and_then(|s| s.state) == Some(TaskState::FAILED))
                })
        })
        .await;
        assert!(foreign_ended, "the foreign service's task failed too");
        assert!(
            b.list()
                .await
                .unwrap()
                .iter()
                .all(|c| c.backend_id != foreign),
            "list shows only our services"
        );

        // Prune: our ended service goes (with the network it held); the foreign one stays.
        let report = b
            .prune(
                &BTreeSet::from([CleanTarget::Containers, CleanTarget::Networks]),
                None,
            )
            .await
            .expect("prune");
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        assert!(
            report
                .removed
                .iter()
                .any(|i| i.target == CleanTarget::Containers
                    && deployed.backend_id.starts_with(&i.id)),
            "{report:?}"
        );
        assert!(matches!(
            b.status(&app).await,
            Err(BackendError::NotFound { .. })
        ));
        assert!(
            docker
                .inspect_service(&foreign, None::<InspectServiceOptions>)
                .await
                .is_ok(),
            "prune never removes a service without our label"
        );
        assert!(b.network_info().await.unwrap().is_none(), "network pruned");
    })
    .catch_unwind()
    .await;
    let _ = docker.delete_service(&foreign).await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
    println!(
        "checked: a failing node is Unhealthy with its error on stderr and pruned; a foreign \
         service is left alone"
    );
}

async fn a_task_mounts_the_logs_volume_writable_and_the_certificates_read_only(
    docker: &Docker,
    image: &str,
    prefix: &str,
    network: &str,
) {
    let volume = unique("bannou-swarm-logs");
    let certs = tempfile::tempdir().expect("a certificates directory");
    let certs_path = certs.path().canonicalize().unwrap();
    let mut cfg = config(network);
    cfg.mounts = NodeMounts {
        logs_volume: Some(volume.clone()),
        certificates_host_path: Some(certs_path.clone()),
        presets_host_path: None,
    };
    let b = SwarmBackend::new(docker.clone(), cfg);
    let app = AppId::new(format!("{prefix}-mounts"));
    let mut node = NodeDeployment::new(app.clone(), "mounts", image.to_owned());
    node.environment = BTreeMap::from([("BANNOU_SERVICES_ENABLED".to_owned(), "false".to_owned())]);
    let deployed = b.deploy_node(&node).await.expect("deploy");

    // The task's container, as the engine runs it (a task's first container may be
    // replaced while the service settles: look until one is running).
    let mut running = None;
    for _ in 0..150 {
        let options = ListContainersOptions {
            all: true,
            filters: Some(HashMap::from([(
                "label".to_owned(),
                vec![format!(
                    "com.docker.swarm.service.id={}",
                    deployed.backend_id
                )],
            )])),
            ..Default::default()
        };
        for id in docker
            .list_containers(Some(options))
            .await
            .unwrap()
            .into_iter()
            .filter_map(|c| c.id)
        {
            if let Ok(i) = docker
                .inspect_container(
                    &id,
                    None::<bollard::query_parameters::InspectContainerOptions>,
                )
                .await
                && i.state.as_ref().and_then(|s| s.running) == Some(true)
            {
                running = Some(i);
            }
        }
        if running.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let inspected = running.expect("a running container of the service's task");
    let mounts = inspected.mounts.clone().unwrap_or_default();
    let at = |target: &str| {
        mounts
            .iter()
            .find(|m| m.destination.as_deref() == Some(target))
            .unwrap_or_else(|| panic!("a mount at {target} in {mounts:?}"))
            .clone()
    };
    let logs = at(LOGS_MOUNT);
    assert_eq!(logs.typ.as_deref(), Some("volume"), "{logs:?}");
    assert_eq!(logs.name.as_deref(), Some(volume.as_str()), "{logs:?}");
    assert_eq!(logs.rw, Some(true), "the logs volume is writable");
    let certificates = at(CERTIFICATES_MOUNT);
    assert_eq!(
        certificates.typ.as_deref(),
        Some("bind"),
        "{certificates:?}"
    );
    assert_eq!(
        certificates.source.as_deref().map(std::path::PathBuf::from),
        Some(certs_path.clone()),
        "{certificates:?}"
    );
    assert_eq!(certificates.rw, Some(false), "certificates are read-only");
    let env = inspected.config.unwrap().env.unwrap();
    assert!(
        env.contains(&"SSL_CERT_DIR=/certificates".to_owned()),
        "{env:?}"
    );
    let volume_labels = docker.inspect_volume(&volume).await.unwrap().labels;
    assert_eq!(
        volume_labels.get(labels::MANAGED).map(String::as_str),
        Some(labels::MANAGED_VALUE),
        "the volume the engine created for the task is ours"
    );

    b.teardown(
        &app,
        &TeardownOptions {
            mode: TeardownMode::Force,
            remove_volumes: false,
            grace: Duration::ZERO,
        },
    )
    .await
    .expect("teardown");
    let _ = docker
        .remove_volume(
            &volume,
            None::<bollard::query_parameters::RemoveVolumeOptions>,
        )
        .await;
    println!(
        "checked: a swarm task mounts {LOGS_MOUNT} <- {volume} (rw), {CERTIFICATES_MOUNT} <- {certs_path:?} (ro)"
    );
}

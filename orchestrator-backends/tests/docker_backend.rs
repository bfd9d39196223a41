//! The Docker backend against the local engine with our own image (skips without an
//! engine unless `BANNOU_TEST_REQUIRE=docker`): the shared conformance suite; a node's life
//! with replicas, restarts and both log streams, after which no container, network or
//! volume of ours is left; prune that never touches an unlabelled container; a node
//! that exits at start reporting its state and last log lines; and a node mounting the logs
//! volume (writable) and the certificates directory (read-only), as inspected.
//!
//! Every test uses its own network and app-id prefix and removes its objects even when it
//! fails. Tests that prune (which is engine-wide by design) hold the lock exclusively.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use bollard::Docker;
use bollard::models::ContainerCreateBody;
use bollard::query_parameters::{
    CreateContainerOptions, InspectContainerOptions, RemoveContainerOptions, StartContainerOptions,
    WaitContainerOptions,
};
use futures::StreamExt;
use orchestrator_backends::containers::docker::{DockerBackend, DockerConfig};
use orchestrator_backends::containers::mounts::{CERTIFICATES_MOUNT, LOGS_MOUNT, NodeMounts};
use orchestrator_backends::containers::testing::{
    docker_and_image, eventually, our_container_names, unique, with_cleanup,
};
use orchestrator_core::api::enums::{
    CleanTarget, ContainerStatusType, LogStreamType, RestartPriority, TeardownMode,
};
use orchestrator_core::names::AppId;
use orchestrator_core::ports::backend::{
    BackendError, ContainerBackend, LogQuery, NodeDeployment, RestartOptions, RestartPolicy,
    TeardownOptions,
};
use orchestrator_core::testkit::backend::{BackendSuite, backend_conformance};
use tokio::sync::RwLock;

/// Prune is engine-wide: pruning tests take this exclusively, the others shared.
static PRUNE_LOCK: RwLock<()> = RwLock::const_new(());

/// An environment that makes `bannou-host serve` refuse to start (a config value out of
/// range), so the node exits at once with an error on stderr.
const FAILING_ENV: (&str, &str) = ("BANNOU_HEARTBEAT_INTERVAL_SECONDS", "0");

fn config(network: &str) -> DockerConfig {
    DockerConfig {
        network: network.to_owned(),
        // Short grace: these nodes hold nothing worth a graceful stop.
        replace_grace: Duration::from_secs(2),
        ..DockerConfig::default()
    }
}

async fn backend(docker: &Docker, network: &str) -> DockerBackend {
    DockerBackend::new(docker.clone(), config(network))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_backend_passes_the_conformance_suite() {
    let test = "docker_backend_passes_the_conformance_suite";
    let Some((docker, image)) = docker_and_image(test).await else {
        return;
    };
    let _shared = PRUNE_LOCK.read().await;
    let prefix = unique("conf");
    let network = unique("bannou_conf");
    with_cleanup(&docker, &prefix, Some(&network), async {
        let suite = BackendSuite {
            image: image.clone(),
            app_id_prefix: prefix.clone(),
        };
        backend_conformance(&suite, || {
            let b: Arc<dyn ContainerBackend> =
                Arc::new(DockerBackend::new(docker.clone(), config(&network)));
            async move { b }
        })
        .await;
        println!("checked: backend_conformance on Docker with {image}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_lives_scales_restarts_logs_and_leaves_nothing_behind() {
    let test = "a_node_lives_scales_restarts_logs_and_leaves_nothing_behind";
    let Some((docker, image)) = docker_and_image(test).await else {
        return;
    };
    let _exclusive = PRUNE_LOCK.write().await;
    let prefix = unique("life");
    let network = unique("bannou_life");
    let volume = unique("bannou-logs");
    with_cleanup(&docker, &prefix, Some(&network), async {
        let mut cfg = config(&network);
        cfg.mounts.logs_volume = Some(volume.clone());
        let b = DockerBackend::new(docker.clone(), cfg);
        let app = AppId::new(format!("{prefix}-node"));
        let mut node = NodeDeployment::new(app.clone(), "life", image.clone());
        node.environment = BTreeMap::from([
            ("BANNOU_TEST_MARKER".to_owned(), "1".to_owned()),
            ("BANNOU_SERVICES_ENABLED".to_owned(), "false".to_owned()),
            ("AUTH_SERVICE_ENABLED".to_owned(), "true".to_owned()),
        ]);

        // Deploy: our network is created and labelled, the container is named and labelled.
        let deployed = b.deploy_node(&node).await.expect("deploy");
        assert_eq!(deployed.name, format!("bannou-{app}"));
        let net = b.network_info().await.unwrap().expect("network exists");
        assert!(net.managed, "the network we created carries our label");
        let inspected = docker
            .inspect_container(&deployed.backend_id, None::<InspectContainerOptions>)
            .await
            .unwrap();
        let l = inspected.config.as_ref().unwrap().labels.clone().unwrap();
        assert_eq!(l["com.docker.compose.project"], "bannou");
        assert_eq!(l["com.docker.compose.service"], app.as_str());
        let env = inspected.config.unwrap().env.unwrap();
        for want in [
            format!("BANNOU_APP_ID={app}"),
            "ORCHESTRATOR_LISTEN=0.0.0.0:80".to_owned(),
            "BANNOU_HTTP_ENDPOINT=http://bannou".to_owned(),
            "BANNOU_TEST_MARKER=1".to_owned(),
        ] {
            assert!(env.contains(&want), "{want} in {env:?}");
        }
        let endpoint = inspected
            .network_settings
            .unwrap()
            .networks
            .unwrap()
            .remove(&network)
            .expect("attached to our network");
        let aliases = endpoint.aliases.unwrap_or_default();
        assert!(aliases.contains(&app.to_string()), "alias = app-id");

        eventually("node running", 100, || async {
            b.status(&app).await.unwrap().status == ContainerStatusType::Running
        })
        .await;

        // The node listens on 0.0.0.0:80 in its container: this machine (the network's
        // gateway) reaches its hosted service's ping at the container's address.
        let ip = endpoint.ip_address.expect("an address on our network");
        orchestrator_backends::http::install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        let url = format!("http://{ip}:80/auth/ping");
        let mut body = serde_json::Value::Null;
        for _ in 0..100 {
            if let Ok(r) = http.get(&url).send().await
                && r.status().is_success()
            {
                body = r.json().await.unwrap_or_default();
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert_eq!(body["appId"], app.as_str(), "{body}");
        assert_eq!(body["service"], "auth", "{body}");

        // Scale to 2 and back.
        let scaled = b.scale(&app, 2).await.expect("scale up");
        assert_eq!((scaled.previous_replicas, scaled.current_replicas), (1, 2));
        eventually("two replicas running", 100, || async {
            b.status(&app).await.unwrap().instances == 2
        })
        .await;
        let names = our_container_names(&docker, &prefix).await;
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(names.contains(&format!("/bannou-{app}_2")), "{names:?}");
        let listed = b.list().await.unwrap();
        let mine: Vec<_> = listed.iter().filter(|c| c.app_id == app).collect();
        assert_eq!(mine.len(), 1, "replicas list as one node");
        assert_eq!(mine[0].instances, 2);
        let back = b.scale(&app, 1).await.expect("scale down");
        assert_eq!((back.previous_replicas, back.current_replicas), (2, 1));
        assert_eq!(our_container_names(&docker, &prefix).await.len(), 1);
        assert!(matches!(
            b.scale(&app, 0).await,
            Err(BackendError::Unsupported { .. })
        ));

        // Restart (D5): the start time moves on and our count goes up.
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
        assert_eq!(outcome.current_instances, 1);
        let after = b.status(&app).await.unwrap();
        assert!(after.restart_count > before.restart_count);
        assert!(after.started_at > before.started_at);

        // Logs: structured lines in time order, bounded by tail. Wait until the restarted
        // node has announced itself, so no line arrives between the reads below.
        let restarted_at = after.started_at;
        eventually("the restarted node announced itself", 100, || async {
            b.logs(&app, &LogQuery::default())
                .await
                .unwrap()
                .iter()
                .any(|l| l.message.contains("listening on") && Some(l.timestamp) >= restarted_at)
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
        assert_eq!(tail.last(), lines.last());
        let since_last = b
            .logs(
                &app,
                &LogQuery {
                    since: lines.last().map(|l| l.timestamp),
                    ..LogQuery::default()
                },
            )
            .await
            .unwrap();
        assert!(!since_last.is_empty() && since_last.len() <= lines.len());

        // Teardown, then prune what the node used: nothing of ours is left.
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
        assert_eq!(torn.stopped.len(), 1);
        assert!(our_container_names(&docker, &prefix).await.is_empty());
        assert!(matches!(
            b.status(&app).await,
            Err(BackendError::NotFound { .. })
        ));
        let report = b
            .prune(
                &BTreeSet::from([CleanTarget::Networks, CleanTarget::Volumes]),
                None,
            )
            .await
            .expect("prune");
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        assert!(b.network_info().await.unwrap().is_none(), "network pruned");
        assert!(
            docker.inspect_volume(&volume).await.is_err(),
            "logs volume pruned"
        );
        println!(
            "checked: deploy, scale 1->2->1, restart, {} log lines, teardown and prune on {network}",
            lines.len()
        );
    })
    .await;
    // The volume if an assertion failed before the prune.
    let _ = docker
        .remove_volume(
            &volume,
            None::<bollard::query_parameters::RemoveVolumeOptions>,
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_mounts_the_logs_volume_writable_and_the_certificates_read_only() {
    let test = "a_node_mounts_the_logs_volume_writable_and_the_certificates_read_only";
    let Some((docker, image)) = docker_and_image(test).await else {
        return;
    };
    let _shared = PRUNE_LOCK.read().await;
    let prefix = unique("mounts");
    let network = unique("bannou_mounts");
    let volume = unique("bannou-logs");
    let certs = tempfile::tempdir().expect("a certificates directory");
    std::fs::write(certs.path().join("ca.pem"), "not a real certificate\n").unwrap();
    let certs_path = certs.path().canonicalize().unwrap();
    with_cleanup(&docker, &prefix, Some(&network), async {
        let mut cfg = config(&network);
        cfg.mounts = NodeMounts {
            logs_volume: Some(volume.clone()),
            certificates_host_path: Some(certs_path.clone()),
            presets_host_path: None,
        };
        let b = DockerBackend::new(docker.clone(), cfg.clone());
        let app = AppId::new(format!("{prefix}-node"));
        let mut node = NodeDeployment::new(app.clone(), "mounts", image.clone());
        node.environment =
            BTreeMap::from([("BANNOU_SERVICES_ENABLED".to_owned(), "false".to_owned())]);
        let deployed = b.deploy_node(&node).await.expect("deploy");
        let inspected = docker
            .inspect_container(&deployed.backend_id, None::<InspectContainerOptions>)
            .await
            .unwrap();
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
        assert_eq!(certificates.typ.as_deref(), Some("bind"), "{certificates:?}");
        assert_eq!(
            certificates.source.as_deref().map(std::path::PathBuf::from),
            Some(certs_path.clone()),
            "{certificates:?}"
        );
        assert_eq!(certificates.rw, Some(false), "certificates are read-only");
        assert_eq!(mounts.len(), 2, "nothing else is mounted: {mounts:?}");
        let env = inspected.config.unwrap().env.unwrap();
        assert!(
            env.contains(&"SSL_CERT_DIR=/certificates".to_owned()),
            "{env:?}"
        );
        let labels = docker.inspect_volume(&volume).await.unwrap().labels;
        assert_eq!(
            labels.get("bannou.orchestrator-managed").map(String::as_str),
            Some("true"),
            "the logs volume we created is ours"
        );
        eventually("node running with its mounts", 100, || async {
            b.status(&app).await.unwrap().status == ContainerStatusType::Running
        })
        .await;

        // A certificates directory missing on the engine's machine is refused at deploy,
        // with the engine's reason, instead of an empty directory created for it.
        let missing = certs_path.join("missing");
        let mut bad_cfg = cfg.clone();
        bad_cfg.mounts.certificates_host_path = Some(missing.clone());
        let bad = DockerBackend::new(docker.clone(), bad_cfg);
        let mut other = node.clone();
        other.app_id = AppId::new(format!("{prefix}-missing"));
        let err = bad.deploy_node(&other).await.expect_err("missing bind source");
        assert!(
            err.to_string().contains(&missing.display().to_string()),
            "the error names the path: {err}"
        );
        assert!(!missing.exists(), "no directory was created for it");
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
        println!("checked: {LOGS_MOUNT} <- volume {volume} (rw), {CERTIFICATES_MOUNT} <- {certs_path:?} (ro)");
    })
    .await;
    let _ = docker
        .remove_volume(
            &volume,
            None::<bollard::query_parameters::RemoveVolumeOptions>,
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_and_clean_never_remove_an_unlabelled_container() {
    let test = "prune_and_clean_never_remove_an_unlabelled_container";
    let Some((docker, image)) = docker_and_image(test).await else {
        return;
    };
    let _exclusive = PRUNE_LOCK.write().await;
    let prefix = unique("prune");
    let network = unique("bannou_prune");
    let stranger = unique("stranger");
    // An unlabelled container from our image, stopped (it prints its version and exits).
    let created = docker
        .create_container(
            Some(CreateContainerOptions {
                name: Some(stranger.clone()),
                ..Default::default()
            }),
            ContainerCreateBody {
                image: Some(image.clone()),
                cmd: Some(vec!["--version".to_owned()]),
                host_config: Some(bollard::models::HostConfig {
                    network_mode: Some("none".to_owned()),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .await
        .expect("create the unlabelled container");
    let stranger_id = created.id.clone();
    with_cleanup(&docker, &prefix, Some(&network), async {
        docker
            .start_container(&stranger_id, None::<StartContainerOptions>)
            .await
            .unwrap();
        let _ = docker
            .wait_container(&stranger_id, None::<WaitContainerOptions>)
            .next()
            .await;

        // One stopped node of ours, to show prune does remove ours.
        let b = backend(&docker, &network).await;
        let app = AppId::new(format!("{prefix}-dead"));
        let mut node = NodeDeployment::new(app.clone(), "prune", image.clone());
        node.restart_policy = RestartPolicy::Never;
        node.environment
            .insert(FAILING_ENV.0.to_owned(), FAILING_ENV.1.to_owned());
        b.deploy_node(&node).await.expect("deploy");
        eventually("our node stopped", 150, || async {
            b.status(&app).await.unwrap().status == ContainerStatusType::Stopped
        })
        .await;

        // Orphan rule (D12): stopped for less than a day is kept.
        let kept = b
            .prune(
                &BTreeSet::from([CleanTarget::Containers]),
                Some(Duration::from_secs(24 * 3600)),
            )
            .await
            .unwrap();
        assert_eq!(kept.count(CleanTarget::Containers), 0, "{kept:?}");
        assert!(b.status(&app).await.is_ok(), "a fresh stop is no orphan");

        // Clean everything (force): ours goes, the stranger stays.
        let report = b
            .prune(&BTreeSet::from([CleanTarget::All]), None)
            .await
            .unwrap();
        assert!(report.count(CleanTarget::Containers) >= 1, "{report:?}");
        assert!(matches!(
            b.status(&app).await,
            Err(BackendError::NotFound { .. })
        ));
        let still = docker
            .inspect_container(&stranger_id, None::<InspectContainerOptions>)
            .await;
        assert!(still.is_ok(), "the unlabelled container must survive prune");
        assert!(
            !report
                .removed
                .iter()
                .any(|i| stranger_id.starts_with(&i.id)),
            "prune reported removing the stranger"
        );
        println!(
            "checked: prune removed {} item(s) of ours and left {stranger} alone",
            report.removed.len()
        );
    })
    .await;
    docker
        .remove_container(
            &stranger_id,
            Some(RemoveContainerOptions {
                force: true,
                ..Default::default()
            }),
        )
        .await
        .expect("remove the unlabelled container");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_exits_at_start_reports_its_state_and_last_log_lines() {
    let test = "a_node_that_exits_at_start_reports_its_state_and_last_log_lines";
    let Some((docker, image)) = docker_and_image(test).await else {
        return;
    };
    let _shared = PRUNE_LOCK.read().await;
    let prefix = unique("exit");
    let network = unique("bannou_exit");
    with_cleanup(&docker, &prefix, Some(&network), async {
        let b = backend(&docker, &network).await;
        let app = AppId::new(format!("{prefix}-node"));
        let mut node = NodeDeployment::new(app.clone(), "exit", image.clone());
        node.restart_policy = RestartPolicy::Never;
        node.environment = BTreeMap::from([(FAILING_ENV.0.to_owned(), FAILING_ENV.1.to_owned())]);
        b.deploy_node(&node).await.expect("deploy");
        eventually("the node stopped", 150, || async {
            b.status(&app).await.unwrap().status == ContainerStatusType::Stopped
        })
        .await;
        let status = b.status(&app).await.unwrap();
        assert_eq!(status.instances, 0);
        assert!(status.stopped_at.is_some(), "real stop time (D12)");
        assert!(status.started_at.is_some());
        let listed = b.list().await.unwrap();
        let info = listed.iter().find(|c| c.app_id == app).expect("listed");
        assert_eq!(info.status, ContainerStatusType::Stopped);
        assert!(info.stopped_at.is_some());
        let lines = b
            .logs(
                &app,
                &LogQuery {
                    tail: Some(5),
                    ..LogQuery::default()
                },
            )
            .await
            .unwrap();
        assert!(!lines.is_empty() && lines.len() <= 5);
        let last = lines.last().unwrap();
        assert_eq!(last.stream, LogStreamType::Stderr, "{lines:?}");
        assert!(
            last.message.contains(FAILING_ENV.0),
            "the error names the bad variable: {lines:?}"
        );
        println!(
            "checked: exit at start -> Stopped, last line {:?}",
            last.message
        );
    })
    .await;
}

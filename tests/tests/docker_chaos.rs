//! Chaos on the local Docker engine: the
//! control plane in this process, Redis on our network's gateway as state, bus and lease
//! store, a pool of two real worker containers. A lease is taken on one worker, then that
//! worker's container is removed behind the control plane's back (`docker rm -f`: killed
//! and gone, so the engine's restart policy cannot bring it back). The leader's
//! reconciliation starts it again under the same identity. Checked afterwards: the lease
//! was never lost (same worker Leased, renews and releases with its fencing token), no
//! worker was ever leased twice (the other acquires get the other worker, then 429), a
//! container with our labels that this control plane started but no longer names is
//! removed, and the mappings version never went back.
//!
//! Needs Docker and redis-server: skipped without them unless `BANNOU_TEST_REQUIRE` names
//! them.

mod common;

use std::time::Duration;

use bollard::query_parameters::RemoveContainerOptions;
use common::{Host, config, eventually};
use orchestrator_backends::containers::testing::{
    docker_and_image, our_container_names, unique, with_cleanup,
};
use orchestrator_core::AppId;
use orchestrator_core::api::{AcquireProcessorRequest, DeployRequest, ReleaseProcessorRequest};
use orchestrator_core::events::BackendType;
use orchestrator_core::ports::backend::{ContainerBackend, NodeDeployment};
use orchestrator_pools::{FencingToken, LeaseId, PoolType, WorkerState};

fn pool_preset(pool: &str) -> String {
    format!(
        "name: chaos-pool\ndescription: two workers, no autoscale\nprocessingPools:\n  \
         - poolType: {pool}\n    plugin: asset\n    minInstances: 2\n    maxInstances: 2\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_container_killed_mid_lease_comes_back_and_keeps_its_lease() {
    let test = "a_worker_container_killed_mid_lease_comes_back_and_keeps_its_lease";
    let Some((docker, image)) = docker_and_image(test).await else {
        return;
    };
    let network = unique("bannou-chaos-net");
    let pool_name = unique("chaos");
    let prefix = format!("bannou-pool-{pool_name}");
    let (cleanup_docker, cleanup_prefix, cleanup_network) =
        (docker.clone(), prefix.clone(), network.clone());
    with_cleanup(&cleanup_docker, &cleanup_prefix, Some(&cleanup_network), async move {
        let Some(redis) = common::redis_on_network(&docker, &network, test).await else {
            return;
        };
        let presets = tempfile::tempdir().unwrap();
        std::fs::write(presets.path().join("chaos-pool.yaml"), pool_preset(&pool_name)).unwrap();
        let mut cfg = config(presets.path());
        cfg.redis_url = Some(redis.url());
        cfg.docker_network = network.clone();
        cfg.docker_image_name = image.clone();
        cfg.default_backend = BackendType::Compose;
        cfg.wave_timeout = Duration::from_secs(60);
        cfg.scaler.autoscale = false;
        cfg.reconcile_interval = Duration::from_secs(1);
        cfg.reconcile_grace = Duration::from_secs(2);
        let host = Host::start(cfg).await;
        let leases = host.server.adapters().leases.clone();
        let store = host.server.adapters().store.clone();
        let pool = PoolType::new(&pool_name).unwrap();
        let clock = bannou_host::clock::TokioClock::system();
        let now = move || orchestrator_core::time::Clock::now(&clock);

        // Two workers, Available once their first heartbeat came in over Redis.
        let reply = host
            .api
            .deploy(&DeployRequest {
                preset: Some("chaos-pool".to_owned()),
                backend: Some(BackendType::Compose),
                ..DeployRequest::default()
            })
            .await
            .unwrap();
        assert_eq!(reply.status, 200, "{:?}", reply.body.warnings);
        eventually("both workers heartbeat and become Available", || {
            let (leases, pool) = (leases.clone(), pool.clone());
            async move {
                let s = leases.status(&pool, now()).await.ok()?;
                (s.workers_in(WorkerState::Available).count() == 2).then_some(())
            }
        })
        .await;
        assert_eq!(our_container_names(&docker, &prefix).await.len(), 2);
        let version_before = store.mappings_version().await.unwrap();

        // A lease, through the API.
        let lease = host
            .api
            .acquire_processor(&AcquireProcessorRequest {
                pool_type: pool_name.clone(),
                priority: 0,
                timeout_seconds: 300,
                metadata: None,
                wait_ms: 0,
            })
            .await
            .unwrap();
        let leased_app = AppId::from(lease.app_id.as_str());
        let docker_nodes = host.server.docker_backend().expect("Docker backend").clone();
        let before = docker_nodes.list().await.unwrap();
        let old_id = before
            .iter()
            .find(|c| c.app_id == leased_app)
            .map(|c| c.backend_id.clone())
            .expect("the leased worker's container");

        // A container this control plane started and no longer names: a worker of its
        // pool whose registration is gone (as after a scale-down whose teardown failed).
        let stray = AppId::from(format!("{prefix}-stray").as_str());
        let mut node = NodeDeployment::new(stray.clone(), "asset", image.as_str());
        node.labels
            .insert(bannou_host::orchestrator::pool_scaler::POOL_LABEL.to_owned(), pool_name.clone());
        docker_nodes.deploy_node(&node).await.unwrap();

        // Kill the leased worker's container and remove it.
        let name = format!("bannou-{leased_app}");
        docker
            .remove_container(
                &name,
                Some(RemoveContainerOptions {
                    force: true,
                    ..Default::default()
                }),
            )
            .await
            .unwrap();
        let killed_at = tokio::time::Instant::now();
        println!("killed {name} (docker rm -f) while leased by lease {}", lease.lease_id);

        // Reconciliation starts it again, under the same app-id, as a new container.
        let new_id = eventually("the killed worker runs again", || {
            let (nodes, app, old) = (docker_nodes.clone(), leased_app.clone(), old_id.clone());
            async move {
                let list = nodes.list().await.ok()?;
                let c = list.into_iter().find(|c| c.app_id == app)?;
                (c.backend_id != old
                    && c.status == orchestrator_core::api::enums::ContainerStatusType::Running)
                    .then_some(c.backend_id)
            }
        })
        .await;
        let back_after = killed_at.elapsed();
        // The stray container is removed once older than the grace.
        eventually("the stray container is removed", || {
            let (docker, prefix, stray) = (docker.clone(), prefix.clone(), stray.clone());
            async move {
                let names = our_container_names(&docker, &prefix).await;
                (!names.iter().any(|n| n.contains(stray.as_str()))).then_some(names)
            }
        })
        .await;

        // The lease was never lost: same worker, still Leased, renews and releases.
        let status = leases.status(&pool, now()).await.unwrap();
        let worker = status
            .workers
            .iter()
            .find(|w| w.app_id == leased_app)
            .expect("the worker is still registered");
        assert_eq!(worker.state, WorkerState::Leased);
        assert_eq!(worker.lease_id, Some(LeaseId(lease.lease_id)));
        let renewed = leases
            .renew(
                &pool,
                LeaseId(lease.lease_id),
                FencingToken(lease.fencing_token),
                Duration::from_secs(60),
                now(),
            )
            .await
            .expect("the lease renews with its fencing token");
        assert_eq!(renewed.app_id, leased_app);

        // Nobody else was given it: the next acquire gets the other worker, then none is
        // free (autoscale off, maxInstances 2).
        let acquire = AcquireProcessorRequest {
            pool_type: pool_name.clone(),
            priority: 0,
            timeout_seconds: 300,
            metadata: None,
            wait_ms: 0,
        };
        let other = host.api.acquire_processor(&acquire).await.unwrap();
        assert_ne!(other.app_id, lease.app_id, "never leased twice");
        assert!(
            host.api.acquire_processor(&acquire).await.is_err(),
            "no third worker to lease"
        );
        for (id, token) in [(lease.lease_id, lease.fencing_token), (other.lease_id, other.fencing_token)] {
            let mut release = ReleaseProcessorRequest::new(id);
            release.fencing_token = Some(token);
            host.api.release_processor(&release).await.unwrap();
        }

        // Nothing of ours left that the configuration does not name.
        let mut running: Vec<String> = our_container_names(&docker, &prefix).await;
        running.sort();
        let mut workers: Vec<String> = leases
            .status(&pool, now())
            .await
            .unwrap()
            .workers
            .iter()
            .map(|w| format!("/bannou-{}", w.app_id))
            .collect();
        workers.sort();
        assert_eq!(running, workers);
        let version_after = store.mappings_version().await.unwrap();
        assert!(version_after >= version_before, "mappings never go back");
        println!(
            "checked: {leased_app} came back after {back_after:.2?} as container {new_id} (was {old_id}) with its lease \
             {} (token {}) kept, renewed and released; the other acquire got {}, a third got \
             none; stray {stray} removed; containers = registered workers {workers:?}; mappings \
             version {version_before} -> {version_after}",
            lease.lease_id, lease.fencing_token, other.app_id
        );
        host.shutdown().await;
    })
    .await;
}

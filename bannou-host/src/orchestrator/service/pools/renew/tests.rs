//! Unit tests of `orchestrator::service::pools::renew`.

use std::time::Duration;

use orchestrator_core::api::*;
use orchestrator_pools::WorkerState;

use super::super::super::testing::World;
use super::super::tests::{acquire, gauge, release, status};

fn renew_req(lease: &AcquireProcessorResponse, extend_seconds: i64) -> RenewProcessorRequest {
    RenewProcessorRequest {
        extend_seconds,
        ..RenewProcessorRequest::new(lease.lease_id, lease.fencing_token)
    }
}

#[tokio::test(start_paused = true)]
async fn renew_extends_the_expiry_and_a_stale_token_is_refused_and_counted() {
    let world = World::new().await;
    let pool = world.pool("renewed", 1, 1).await;
    world.promote_workers(&pool).await;
    let lease = acquire(&world, "renewed").await;
    let stale_renews =
        r#"bannou_orchestrator_pool_stale_fencing_tokens_total{pool="renewed",operation="renew"}"#;
    let stale_releases = r#"bannou_orchestrator_pool_stale_fencing_tokens_total{pool="renewed",operation="release"}"#;

    let renewed = world
        .service
        .renew(renew_req(&lease, 60))
        .await
        .unwrap()
        .body;
    assert_eq!(
        renewed.expires_at,
        lease.expires_at + Duration::from_secs(60)
    );
    assert_eq!(
        (
            renewed.lease_id,
            renewed.fencing_token,
            &renewed.processor_id
        ),
        (lease.lease_id, lease.fencing_token, &lease.processor_id),
        "a renew keeps the lease, its token and its worker"
    );
    // The pool named, and renewing again: from the current expiry.
    let mut named = renew_req(&lease, 30);
    named.pool_type = Some("renewed".to_owned());
    let again = world.service.renew(named).await.unwrap().body;
    assert_eq!(
        again.expires_at,
        renewed.expires_at + Duration::from_secs(30)
    );

    let mut stale = renew_req(&lease, 60);
    stale.fencing_token += 1;
    let err = world.service.renew(stale).await.unwrap_err();
    assert_eq!(err.status(), 409, "{err}");
    assert!(err.to_string().contains("fencing token"), "{err}");
    assert_eq!(gauge(&world, stale_renews), Some(1.0));
    assert_eq!(gauge(&world, stale_releases), Some(0.0));
    let mut stale = ReleaseProcessorRequest::new(lease.lease_id);
    stale.fencing_token = Some(lease.fencing_token + 1);
    assert_eq!(
        world.service.release(stale).await.unwrap_err().status(),
        409
    );
    assert_eq!(gauge(&world, stale_releases), Some(1.0));

    // The refusals changed nothing: the holder still renews from where it was.
    let third = world
        .service
        .renew(renew_req(&lease, 1))
        .await
        .unwrap()
        .body;
    assert_eq!(third.expires_at, again.expires_at + Duration::from_secs(1));
    assert_eq!(status(&world, "renewed").await.busy_instances, 1);

    release(&world, &lease).await.unwrap();
    let gone = world
        .service
        .renew(renew_req(&lease, 60))
        .await
        .unwrap_err();
    assert_eq!(gone.status(), 404, "{gone}");
    let mut elsewhere = renew_req(&lease, 60);
    elsewhere.pool_type = Some("no-such-pool".to_owned());
    assert_eq!(
        world.service.renew(elsewhere).await.unwrap_err().status(),
        404
    );
    assert_eq!(
        gauge(&world, stale_renews),
        Some(1.0),
        "a 404 is not a stale token"
    );
}

#[tokio::test(start_paused = true)]
async fn a_lease_that_expired_is_not_renewed() {
    let world = World::new().await;
    let pool = world.pool("lapsed", 1, 1).await;
    world.promote_workers(&pool).await;
    let mut request = AcquireProcessorRequest::new("lapsed");
    request.timeout_seconds = 1;
    let lease = world.service.acquire(request).await.unwrap().body;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let err = world
        .service
        .renew(renew_req(&lease, 60))
        .await
        .unwrap_err();
    assert_eq!(err.status(), 409, "{err}");
    assert!(err.to_string().contains("expired"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn a_lease_on_a_draining_worker_is_not_extended() {
    let world = World::new().await;
    let pool = world.pool("leaving", 1, 1).await;
    world.promote_workers(&pool).await;
    let lease = acquire(&world, "leaving").await;
    let mut drain = DrainPoolRequest::new("leaving");
    drain.deadline_seconds = Some(30);
    world.service.drain_pool(drain).await.unwrap();
    assert_eq!(world.workers(&pool, WorkerState::Draining).await.len(), 1);

    let err = world
        .service
        .renew(renew_req(&lease, 60))
        .await
        .unwrap_err();
    assert_eq!(err.status(), 409, "{err}");
    assert!(err.to_string().contains("draining"), "{err}");
    // The holder may still finish and release.
    release(&world, &lease).await.unwrap();
}

//! Whether a test may skip when an external service is missing (feature `testkit`).
//!
//! The generic rules live in [`orchestrator_core::testkit::require`] and are re-exported
//! here: tests that need Redis or Docker call [`skip_or_fail`] (or [`docker`]) when the
//! service is absent. On a developer machine the test prints why it skips; under
//! `BANNOU_TEST_REQUIRE=redis,docker,upstream` (what `.ci/run` sets) a missing service
//! fails the test instead, so CI can never pass by silently skipping.

pub use orchestrator_core::testkit::require::{
    fixtures_dir, is_required, required_services, skip_or_fail, upstream_data,
};

/// The local Docker engine for a test (honours `DOCKER_HOST`), with the API version
/// negotiated, or `None` after [`skip_or_fail`] when no engine answers a ping.
pub async fn docker(test: &str) -> Option<bollard::Docker> {
    match crate::containers::docker::connect_negotiated(None).await {
        Ok(d) => match d.ping().await {
            Ok(_) => Some(d),
            Err(e) => {
                skip_or_fail("docker", test, &e.to_string());
                None
            }
        },
        Err(e) => {
            skip_or_fail("docker", test, &e.to_string());
            None
        }
    }
}

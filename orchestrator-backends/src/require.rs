//! Whether a test may skip when an external service is missing.
//!
//! Tests that need Redis or Docker call [`skip_or_fail`] (or [`docker`]) when the service is absent: on a
//! developer machine the test prints why it skips; under `BANNOU_TEST_REQUIRE=redis,docker`
//! (what `.ci/run` sets) a missing service fails the test instead, so CI can never pass
//! by silently skipping.

/// The services named in `BANNOU_TEST_REQUIRE` (comma separated, case-insensitive).
pub fn required_services() -> Vec<String> {
    std::env::var("BANNOU_TEST_REQUIRE")
        .unwrap_or_default()
        .split(',')
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect()
}

/// True when `service` (e.g. `redis`) must be present.
pub fn is_required(service: &str) -> bool {
    required_services()
        .iter()
        .any(|s| s.eq_ignore_ascii_case(service))
}

/// Reports a missing service: panics when it is required, else prints the skip reason.
///
/// Returns normally only when the caller should skip.
pub fn skip_or_fail(service: &str, test: &str, reason: &str) {
    if is_required(service) {
        panic!("{test}: {service} is required (BANNOU_TEST_REQUIRE) but unavailable: {reason}");
    }
    eprintln!(
        "SKIPPED {test}: {service} unavailable ({reason}); set BANNOU_TEST_REQUIRE={service} to make this a failure"
    );
}

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

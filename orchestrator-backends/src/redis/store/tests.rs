//! Unit tests of `redis::store`.

use super::*;

#[test]
fn version_counters_read_both_shapes() {
    assert_eq!(parse_version("k", b"{\"Version\":12}"), Ok(12));
    assert_eq!(parse_version("k", b"7"), Ok(7));
    assert!(matches!(
        parse_version("k", b"{\"Nope\":1}"),
        Err(StoreError::Corrupt { key, .. }) if key == "k"
    ));
}

#[test]
fn configurations_serialise_version_first() {
    let cfg = DeploymentConfiguration::empty(orchestrator_core::Timestamp::from_unix_millis(0));
    let json = serde_json::to_vec(&cfg).unwrap();
    assert!(json.starts_with(b"{\"Version\":0,"));
}

#[test]
fn ttls_are_whole_milliseconds_within_range() {
    assert_eq!(ttl_millis(Duration::from_micros(1500)), 1);
    assert_eq!(ttl_millis(Duration::from_secs(2)), 2000);
    assert!(ttl_millis(Duration::MAX) <= 100 * 365 * 86_400_000);
}

#[test]
fn a_failed_call_keeps_the_redis_error_as_its_source() {
    let err = redis::RedisError::from((redis::ErrorKind::Io, "connection refused"));
    let e = store_error("orch:cfg:current", CallError::Redis(err));
    assert!(matches!(e, StoreError::Unavailable { .. }), "{e:?}");
    assert!(e.to_string().contains("connection refused"), "{e}");
    let cause = std::error::Error::source(&e).expect("the client's error is kept");
    assert!(
        cause.downcast_ref::<redis::RedisError>().is_some(),
        "{cause:?}"
    );
    let timed_out = store_error("k", CallError::TimedOut(std::time::Duration::from_secs(1)));
    assert!(std::error::Error::source(&timed_out).is_none());
}

//! Unit tests of `client`.

use super::*;

#[test]
fn base_url_is_validated_and_trimmed() {
    let c = ApiClient::new("http://127.0.0.1:8080/").unwrap();
    assert_eq!(
        c.url(paths::STATUS),
        "http://127.0.0.1:8080/orchestrator/status"
    );
    assert!(matches!(
        ApiClient::new("127.0.0.1:8080"),
        Err(ClientError::InvalidUrl { .. })
    ));
    assert!(matches!(
        ApiClient::new("ftp://x"),
        Err(ClientError::InvalidUrl { .. })
    ));
}

#[test]
fn status_errors_describe_the_body() {
    let e = status_error(
        "u".into(),
        400,
        br#"{"error":"poolType: must not be empty","field":"poolType"}"#,
    );
    assert_eq!(
        e.to_string(),
        "u: HTTP 400 Bad Request: poolType: must not be empty"
    );
    assert_eq!(e.api_error().unwrap().field.as_deref(), Some("poolType"));
    let e = status_error("u".into(), 500, b"");
    assert_eq!(e.to_string(), "u: HTTP 500 Internal Server Error (no body)");
    assert_eq!(e.status(), Some(500));
    let e = status_error("u".into(), 503, b"oops");
    assert_eq!(e.to_string(), "u: HTTP 503 Service Unavailable: \"oops\"");
    let e = status_error("u".into(), 409, br#"{"error":"locked","field":"x"}"#);
    assert_eq!(e.to_string(), "u: HTTP 409 Conflict: locked (field `x`)");
}

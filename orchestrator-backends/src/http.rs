//! Outgoing HTTP: one shared client, and the OpenResty route-cache invalidation call of
//! docs/COMPATIBILITY.md#openresty-invalidation (best effort, bounded timeout, never fails
//! the caller).

use orchestrator_routing::{InvalidationOutcome, InvalidationRequest};

/// Installs ring as the process's rustls provider (the one provider the workspace uses; no OpenSSL).
/// Idempotent; `main` and tests call it before building any client.
pub fn install_crypto_provider() {
    // Err only means a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A reusable HTTP client (connection pooling).
#[derive(Debug, Clone)]
pub struct HttpClient(reqwest::Client);

impl HttpClient {
    /// A client with rustls on ring. Fails only if the TLS backend cannot initialise.
    pub fn new() -> Result<Self, reqwest::Error> {
        install_crypto_provider();
        Ok(HttpClient(reqwest::Client::builder().build()?))
    }

    /// Sends the invalidation request; every failure (refused, timeout, non-2xx) becomes
    /// [`InvalidationOutcome::Ignored`] with the reason, and is logged at warn level.
    pub async fn invalidate(&self, req: &InvalidationRequest) -> InvalidationOutcome {
        let sent = self
            .0
            .post(&req.url)
            .body(req.body.clone())
            .timeout(req.timeout)
            .send()
            .await;
        let outcome = match sent {
            Ok(resp) if resp.status().is_success() => InvalidationOutcome::Invalidated,
            Ok(resp) => InvalidationOutcome::from_failure(format!(
                "OpenResty answered HTTP {}",
                resp.status().as_u16()
            )),
            Err(e) if e.is_timeout() => {
                InvalidationOutcome::from_failure(format!("no answer within {:?}", req.timeout))
            }
            Err(e) => InvalidationOutcome::from_failure(e),
        };
        if let InvalidationOutcome::Ignored { reason } = &outcome {
            tracing::warn!(url = %req.url, reason = %reason, "OpenResty cache invalidation ignored");
        }
        outcome
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use orchestrator_routing::OpenRestyConfig;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// A one-shot HTTP server on loopback answering `reply` (or never, when `None`); it
    /// returns the request it received.
    async fn server(reply: Option<&'static str>) -> (u16, tokio::task::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let n = sock.read(&mut buf).await.unwrap();
            let request = String::from_utf8_lossy(&buf[..n]).into_owned();
            match reply {
                Some(r) => sock.write_all(r.as_bytes()).await.unwrap(),
                None => tokio::time::sleep(Duration::from_secs(30)).await,
            }
            request
        });
        (port, task)
    }

    fn request(port: u16, timeout: Duration) -> InvalidationRequest {
        OpenRestyConfig::new("127.0.0.1", port, timeout)
            .unwrap()
            .invalidation_request()
    }

    #[tokio::test]
    async fn posts_an_empty_body_to_the_invalidate_path() {
        let (port, seen) =
            server(Some("HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")).await;
        let outcome = HttpClient::new()
            .unwrap()
            .invalidate(&request(port, Duration::from_secs(5)))
            .await;
        assert!(outcome.is_invalidated(), "{outcome:?}");
        let req = seen.await.unwrap();
        assert!(
            req.starts_with("POST /internal/cache/invalidate HTTP/1.1"),
            "{req}"
        );
        // A bodiless POST, as `curl -X POST` sends it: no chunked encoding, nothing after
        // the header block.
        assert!(
            !req.to_ascii_lowercase().contains("transfer-encoding"),
            "{req}"
        );
        assert!(req.ends_with("\r\n\r\n"), "{req:?}");
    }

    #[tokio::test]
    async fn errors_and_silence_are_ignored_within_the_timeout() {
        let client = HttpClient::new().unwrap();
        let (port, _) = server(Some(
            "HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n",
        ))
        .await;
        let outcome = client
            .invalidate(&request(port, Duration::from_secs(5)))
            .await;
        assert_eq!(
            outcome,
            InvalidationOutcome::Ignored {
                reason: "OpenResty answered HTTP 500".into()
            }
        );

        // Nothing listens: refused, ignored.
        let closed = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        assert!(
            !client
                .invalidate(&request(closed, Duration::from_secs(5)))
                .await
                .is_invalidated()
        );

        // Accepts but never answers: the call ends at its timeout (paused clock not needed:
        // the bound is the one under test, 1 s being the spec minimum).
        let (port, _) = server(None).await;
        let started = tokio::time::Instant::now();
        let outcome = client
            .invalidate(&request(port, Duration::from_secs(1)))
            .await;
        let took = started.elapsed();
        assert_eq!(
            outcome,
            InvalidationOutcome::Ignored {
                reason: "no answer within 1s".into()
            }
        );
        assert!(
            took < Duration::from_secs(3),
            "bounded by the timeout, took {took:?}"
        );
    }
}

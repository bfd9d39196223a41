//! The listener every HTTP server of this binary accepts on: each accepted connection has
//! `TCP_NODELAY` set, so a small answer (most of the API's, and every mesh call's) leaves
//! at once instead of waiting on Nagle's algorithm for the peer's delayed ACK.
//!
//! Invariant: a connection whose option cannot be set is still served (logged at debug).

use axum::serve::{Listener, ListenerExt};
use tokio::net::{TcpListener, TcpStream};

/// `listener`, with `TCP_NODELAY` set on every connection it accepts.
pub fn no_delay(
    listener: TcpListener,
) -> impl Listener<Io = TcpStream, Addr = std::net::SocketAddr> {
    listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY on an accepted connection");
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_accepted_connection_has_nodelay_set() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut listener = no_delay(listener);
        for _ in 0..2 {
            let client = TcpStream::connect(addr).await.unwrap();
            let (accepted, peer) = listener.accept().await;
            assert_eq!(peer, client.local_addr().unwrap());
            assert!(accepted.nodelay().unwrap(), "TCP_NODELAY not set");
        }
    }
}

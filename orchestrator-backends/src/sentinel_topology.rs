//! A Redis Sentinel topology for tests (feature `testkit`): a master, [`REPLICAS`]
//! replicas following it and one Sentinel watching it, all on loopback ports, returned
//! only once every replica has synchronised and the Sentinel sees them all. Every wait is
//! bounded ([`SETTLE`]); every process is killed when the topology drops. A missing
//! `redis-server` or `redis-sentinel` skips the test ([`skip_or_fail`]).

use std::time::Duration;

use tokio::time::Instant;

use crate::redis::server::{RedisServer, SentinelServer, ServerError};
use crate::require::skip_or_fail;

/// How many replicas follow the master.
pub const REPLICAS: usize = 2;

/// How long the master must be silent before the Sentinel calls it down.
pub const DOWN_AFTER: Duration = Duration::from_millis(800);

/// The longest the replicas may take to synchronise, and the Sentinel to see them.
pub const SETTLE: Duration = Duration::from_secs(10);

/// A master, its replicas and a Sentinel; killed on drop.
#[derive(Debug)]
pub struct SentinelTopology {
    /// The master the Sentinel watches.
    pub master: RedisServer,
    /// The replicas, synchronised when the topology is returned.
    pub replicas: Vec<RedisServer>,
    /// The Sentinel (quorum 1).
    pub sentinel: SentinelServer,
    name: String,
}

impl SentinelTopology {
    /// Starts a master, replicas following it directly and a Sentinel watching it under
    /// `name` with `failover_timeout` (see [`SentinelServer`]), or `None` after
    /// [`skip_or_fail`] when a server is not installed.
    pub async fn start(
        test: &str,
        name: &str,
        failover_timeout: Duration,
    ) -> Option<SentinelTopology> {
        let master = RedisServer::for_test(test)?;
        let port = master.port();
        Self::around(test, master, port, name, failover_timeout).await
    }

    /// [`SentinelTopology::start`] around a `master` the caller started, with the
    /// replicas following `127.0.0.1:{replicate_from}` (a relay in front of the master,
    /// say) while the Sentinel watches the master itself.
    pub async fn around(
        test: &str,
        master: RedisServer,
        replicate_from: u16,
        name: &str,
        failover_timeout: Duration,
    ) -> Option<SentinelTopology> {
        let from = replicate_from.to_string();
        let replicas = (0..REPLICAS)
            .map(|_| RedisServer::start_with(&["--replicaof", "127.0.0.1", &from]))
            .collect::<Result<Vec<_>, _>>()
            .expect("replicas start");
        for r in &replicas {
            settle("the replica syncs", async || {
                info(r.port(), "replication")
                    .await
                    .contains("master_link_status:up")
            })
            .await;
        }
        let sentinel =
            match SentinelServer::start(name, master.port(), DOWN_AFTER, failover_timeout) {
                Ok(s) => s,
                Err(e @ ServerError::NotInstalled(_)) => {
                    skip_or_fail("sentinel", test, &e.to_string());
                    return None;
                }
                Err(e) => panic!("redis-sentinel: {e}"),
            };
        let sport = sentinel.port();
        settle("the Sentinel sees every replica", async || {
            let Ok(client) = redis::Client::open(format!("redis://127.0.0.1:{sport}/")) else {
                return false;
            };
            let Ok(mut con) = client.get_multiplexed_async_connection().await else {
                return false;
            };
            let seen: Vec<redis::Value> = redis::cmd("SENTINEL")
                .arg("replicas")
                .arg(name)
                .query_async(&mut con)
                .await
                .unwrap_or_default();
            seen.len() == REPLICAS
        })
        .await;
        Some(SentinelTopology {
            master,
            replicas,
            sentinel,
            name: name.to_owned(),
        })
    }

    /// `redis+sentinel://` URL of the master through this Sentinel.
    pub fn url(&self) -> String {
        format!(
            "redis+sentinel://127.0.0.1:{}/{}",
            self.sentinel.port(),
            self.name
        )
    }
}

/// The `INFO` `section` of the server on `127.0.0.1:{port}`, or an empty text when it
/// does not answer.
pub async fn info(port: u16, section: &str) -> String {
    let Ok(client) = redis::Client::open(format!("redis://127.0.0.1:{port}/")) else {
        return String::new();
    };
    let Ok(mut con) = client.get_multiplexed_async_connection().await else {
        return String::new();
    };
    redis::cmd("INFO")
        .arg(section)
        .query_async(&mut con)
        .await
        .unwrap_or_default()
}

/// Waits up to [`SETTLE`] for `check`; panics naming `what` after that.
async fn settle(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + SETTLE;
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what} within {SETTLE:?}");
}

//! The Sentinel topology's connection: the master the Sentinels name, found again in the
//! background after a failover.

use super::*;

/// The connection to the master that Sentinels name. A call that fails the way a failover
/// makes calls fail (connection lost or refused, timeout, `READONLY` from a demoted
/// master) fails as it is, and starts one background search for the master (bounded to
/// [`SENTINEL_SEARCH`]); once found, later calls go to it. Calls are never repeated
/// here: a script may have run before its connection broke, so only its caller can
/// decide.
#[derive(Clone)]
pub struct SentinelConn {
    inner: Arc<SentinelInner>,
}

/// How long one search for the master after a failure keeps asking the Sentinels.
pub const SENTINEL_SEARCH: Duration = Duration::from_secs(30);

struct SentinelInner {
    endpoint: Arc<Endpoint>,
    current: ArcSwap<(String, u16, ConnectionManager)>,
    searching: AtomicBool,
}

impl SentinelConn {
    pub(super) async fn connect(endpoint: Arc<Endpoint>) -> redis::RedisResult<Self> {
        let current = Self::open_master(&endpoint).await?;
        Ok(SentinelConn {
            inner: Arc::new(SentinelInner {
                endpoint,
                current: ArcSwap::from_pointee(current),
                searching: AtomicBool::new(false),
            }),
        })
    }

    async fn open_master(
        endpoint: &Endpoint,
    ) -> redis::RedisResult<(String, u16, ConnectionManager)> {
        let (host, port) = endpoint.find_master().await?;
        let client = endpoint.server_client(&host, port)?;
        let manager =
            ConnectionManager::new_with_config(client, endpoint.config.manager_config()).await?;
        Ok((host, port, manager))
    }

    /// The `host:port` of the master in use.
    pub fn master(&self) -> String {
        let current = self.inner.current.load();
        host_port(&current.0, current.1)
    }

    fn after_error(&self, err: &RedisError) {
        let failover = err.is_io_error()
            || err.is_connection_dropped()
            || err.is_connection_refusal()
            || err.is_timeout()
            || matches!(err.code(), Some("READONLY" | "MASTERDOWN" | "LOADING"));
        if !failover || self.inner.searching.swap(true, Ordering::AcqRel) {
            return;
        }
        let inner = self.inner.clone();
        tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + SENTINEL_SEARCH;
            while tokio::time::Instant::now() < deadline {
                match Self::open_master(&inner.endpoint).await {
                    Ok(found) => {
                        let before = inner.current.load();
                        if (&before.0, before.1) != (&found.0, found.1) {
                            tracing::warn!(
                                from = %host_port(&before.0, before.1),
                                to = %host_port(&found.0, found.1),
                                "Redis master changed (Sentinel): reconnected"
                            );
                        }
                        inner.current.store(Arc::new(found));
                        break;
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "looking for the Redis master through Sentinel");
                        tokio::time::sleep(
                            inner
                                .endpoint
                                .config
                                .reconnect_min_delay
                                .max(Duration::from_millis(100)),
                        )
                        .await;
                    }
                }
            }
            inner.searching.store(false, Ordering::Release);
        });
    }

    fn manager(&self) -> ConnectionManager {
        self.inner.current.load().2.clone()
    }
}

impl ConnectionLike for SentinelConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let mut con = self.manager();
            let res = con.req_packed_command(cmd).await;
            if let Err(e) = &res {
                self.after_error(e);
            }
            res
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let mut con = self.manager();
            let res = con.req_packed_commands(cmd, offset, count).await;
            if let Err(e) = &res {
                self.after_error(e);
            }
            res
        })
    }

    fn get_db(&self) -> i64 {
        self.inner.endpoint.url.db
    }
}

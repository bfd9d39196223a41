//! One Redis connection per process: the [`RedisConfig`] (URL, TLS files, timeouts), the
//! shared [`RedisConnection`] and the bounded call helper every adapter uses so a dead
//! server fails calls fast.
//!
//! Every URL form of [`RedisUrl`] ends up as one [`RedisConn`]: an auto-reconnecting
//! `ConnectionManager` for one server, a cluster connection (which follows slot moves by
//! itself) for a Redis Cluster, or a [`SentinelConn`] that asks the Sentinels for the
//! master again when the one it talks to fails or turns replica. TLS is rustls (the
//! workspace's ring provider); the CA and client certificate come from [`TlsFiles`].
//!
//! Timeouts are layered: the connection and response timeouts stop a single socket
//! operation, a short reconnect policy (few attempts, small delays) keeps callers from
//! waiting out a long backoff, and a hard bound caps every store or bus call at
//! [`RedisConfig::call_timeout`] whatever happens below. No message made here contains
//! the URL's password.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use orchestrator_core::error_source::ErrorSource;
use redis::aio::{
    ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection,
};
use redis::cluster_async::ClusterConnection;
use redis::{AsyncConnectionConfig, Client, Cmd, Pipeline, RedisError, RedisFuture, Value};

pub use super::url::{RedisUrl, TlsFiles, Topology, UrlError};
pub use sentinel::{SENTINEL_SEARCH, SentinelConn};

mod sentinel;

/// How to reach Redis and how long to wait for it.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisConfig {
    /// Any form of [`RedisUrl`] (docs/COMPATIBILITY.md#configuration-variables
    /// `ORCHESTRATOR_REDIS_CONNECTION_STRING`). May hold a password: print it only
    /// through [`super::url::redact`].
    pub url: String,
    /// CA and client certificate of a TLS URL.
    pub tls_files: TlsFiles,
    /// Timeout of one TCP connect attempt.
    pub connection_timeout: Duration,
    /// Timeout of one command's response on the shared connection.
    pub response_timeout: Duration,
    /// How many times the manager retries a failed reconnect before failing the calls
    /// that wait on it (the next call starts a new round).
    pub reconnect_attempts: usize,
    /// First delay between reconnect attempts (grows exponentially up to
    /// [`Self::reconnect_max_delay`]).
    pub reconnect_min_delay: Duration,
    /// Longest delay between reconnect attempts.
    pub reconnect_max_delay: Duration,
    /// Upper bound of one store or bus call, reconnect waits included. A call that takes
    /// longer fails as unavailable.
    pub call_timeout: Duration,
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &super::url::redact(&self.url))
            .field("tls_files", &self.tls_files)
            .field("connection_timeout", &self.connection_timeout)
            .field("response_timeout", &self.response_timeout)
            .field("call_timeout", &self.call_timeout)
            .finish_non_exhaustive()
    }
}

impl RedisConfig {
    /// Defaults tuned for a local server: 500 ms connect, 1 s response, 2 reconnect
    /// attempts 50-500 ms apart, 2 s per call; no TLS files.
    pub fn new(url: impl Into<String>) -> Self {
        RedisConfig {
            url: url.into(),
            tls_files: TlsFiles::default(),
            connection_timeout: Duration::from_millis(500),
            response_timeout: Duration::from_secs(1),
            reconnect_attempts: 2,
            reconnect_min_delay: Duration::from_millis(50),
            reconnect_max_delay: Duration::from_millis(500),
            call_timeout: Duration::from_secs(2),
        }
    }

    /// These settings with `files` for TLS.
    pub fn with_tls_files(mut self, files: TlsFiles) -> Self {
        self.tls_files = files;
        self
    }

    fn manager_config(&self) -> ConnectionManagerConfig {
        ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.connection_timeout))
            .set_response_timeout(Some(self.response_timeout))
            .set_number_of_retries(self.reconnect_attempts)
            .set_min_delay(self.reconnect_min_delay)
            .set_max_delay(self.reconnect_max_delay)
    }

    /// Settings of a dedicated connection (not the shared one) whose commands may block
    /// on the server for up to `blocking` (`XREAD BLOCK`): same connect timeout, response
    /// timeout extended by `blocking`.
    pub fn dedicated_config(&self, blocking: Duration) -> AsyncConnectionConfig {
        AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.connection_timeout))
            .set_response_timeout(Some(blocking + self.response_timeout))
    }
}

/// Why [`RedisConnection::connect`] failed. No variant holds the URL's password.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The URL cannot be parsed.
    #[error(transparent)]
    InvalidUrl(#[from] UrlError),
    /// A TLS file cannot be read.
    #[error("cannot read {variable} `{path}`: {source}")]
    TlsFile {
        /// The setting naming the file.
        variable: &'static str,
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The server did not answer within the configured timeouts.
    #[error("cannot connect to Redis at `{url}`: {message}")]
    Unreachable {
        /// The URL tried, password hidden.
        url: String,
        /// What failed.
        message: String,
        /// The client's error (none when the timeout ran out first).
        #[source]
        source: Option<RedisError>,
    },
}

/// One connection of any topology; implements [`ConnectionLike`], so commands, scripts
/// and pipelines run on it as on a plain connection. Cheap to clone (clones share the
/// connection).
#[derive(Clone)]
pub enum RedisConn {
    /// One server, reconnecting by itself.
    Manager(ConnectionManager),
    /// A dedicated connection to one server (blocking reads).
    Direct(MultiplexedConnection),
    /// A Redis Cluster.
    Cluster(ClusterConnection),
    /// The master named by Sentinels, found again after a failover.
    Sentinel(SentinelConn),
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            RedisConn::Manager(c) => c.req_packed_command(cmd),
            RedisConn::Direct(c) => c.req_packed_command(cmd),
            RedisConn::Cluster(c) => c.req_packed_command(cmd),
            RedisConn::Sentinel(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            RedisConn::Manager(c) => c.req_packed_commands(cmd, offset, count),
            RedisConn::Direct(c) => c.req_packed_commands(cmd, offset, count),
            RedisConn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
            RedisConn::Sentinel(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConn::Manager(c) => c.get_db(),
            RedisConn::Direct(c) => c.get_db(),
            RedisConn::Cluster(c) => c.get_db(),
            RedisConn::Sentinel(c) => c.get_db(),
        }
    }
}

/// Where and how to connect: the parsed URL, its certificates and the timeouts.
struct Endpoint {
    url: RedisUrl,
    certs: Option<redis::TlsCertificates>,
    config: RedisConfig,
}

impl Endpoint {
    fn new(config: RedisConfig) -> Result<Self, ConnectError> {
        let url = RedisUrl::parse(&config.url)?.with_tls_files(config.tls_files.clone());
        let read = |variable: &'static str, path: &Option<std::path::PathBuf>| {
            path.as_ref()
                .map(|p| {
                    std::fs::read(p).map_err(|source| ConnectError::TlsFile {
                        variable,
                        path: p.display().to_string(),
                        source,
                    })
                })
                .transpose()
        };
        let files = &config.tls_files;
        let root_cert = read("ORCHESTRATOR_REDIS_TLS_CA_FILE", &files.ca_file)?;
        let cert = read("ORCHESTRATOR_REDIS_TLS_CERT_FILE", &files.cert_file)?;
        let key = read("ORCHESTRATOR_REDIS_TLS_KEY_FILE", &files.key_file)?;
        let client_tls = match (cert, key) {
            (Some(client_cert), Some(client_key)) => Some(redis::ClientTlsConfig {
                client_cert,
                client_key,
            }),
            (None, None) => None,
            (Some(_), None) => {
                return Err(tls_pair_error("ORCHESTRATOR_REDIS_TLS_KEY_FILE"));
            }
            (None, Some(_)) => {
                return Err(tls_pair_error("ORCHESTRATOR_REDIS_TLS_CERT_FILE"));
            }
        };
        let certs = (url.tls && (root_cert.is_some() || client_tls.is_some())).then_some(
            redis::TlsCertificates {
                client_tls,
                root_cert,
            },
        );
        Ok(Endpoint { url, certs, config })
    }

    fn unreachable(&self, e: RedisError) -> ConnectError {
        self.unreachable_because(e.to_string(), Some(e))
    }

    fn unreachable_because(&self, mut message: String, source: Option<RedisError>) -> ConnectError {
        let lower = message.to_ascii_lowercase();
        if !self.url.tls
            && [
                "reset by peer",
                "connection closed",
                "unexpected end",
                "broken pipe",
            ]
            .iter()
            .any(|m| lower.contains(m))
        {
            message.push_str(
                " (the server closed a plain-TCP connection: if it speaks TLS only, use rediss:// or ?tls=true)",
            );
        }
        ConnectError::Unreachable {
            url: self.url.to_string(),
            message,
            source,
        }
    }

    /// A client of the one server at `host:port` with the URL's credentials and TLS.
    fn server_client(&self, host: &str, port: u16) -> redis::RedisResult<Client> {
        self.client_of(self.url.server_url(host, port))
    }

    fn client_of(&self, url: String) -> redis::RedisResult<Client> {
        match &self.certs {
            Some(certs) => Client::build_with_tls(url, certs.clone()),
            None => Client::open(url),
        }
    }

    fn cluster_client(
        &self,
        response_timeout: Duration,
    ) -> redis::RedisResult<redis::cluster::ClusterClient> {
        let nodes: Vec<String> = self
            .url
            .hosts
            .iter()
            .map(|(h, p)| self.url.server_url(h, *p))
            .collect();
        let mut builder = redis::cluster::ClusterClientBuilder::new(nodes)
            .connection_timeout(self.config.connection_timeout)
            .response_timeout(response_timeout)
            .retries(
                u32::try_from(self.config.reconnect_attempts)
                    .unwrap_or(2)
                    .max(1),
            )
            .min_retry_wait(self.config.reconnect_min_delay.as_millis() as u64)
            .max_retry_wait(self.config.reconnect_max_delay.as_millis() as u64);
        if self.url.tls {
            builder = builder.tls(redis::TlsMode::Secure);
        }
        if let Some(certs) = &self.certs {
            builder = builder.certs(certs.clone());
        }
        builder.build()
    }

    /// The shared connection.
    async fn shared(self: &Arc<Self>) -> Result<RedisConn, ConnectError> {
        match &self.url.topology {
            Topology::Single => {
                let (host, port) = &self.url.hosts[0];
                let client = self
                    .server_client(host, *port)
                    .map_err(|e| self.unreachable(e))?;
                ConnectionManager::new_with_config(client, self.config.manager_config())
                    .await
                    .map(RedisConn::Manager)
                    .map_err(|e| self.unreachable(e))
            }
            Topology::Cluster => self
                .cluster_client(self.config.response_timeout)
                .map_err(|e| self.unreachable(e))?
                .get_async_connection()
                .await
                .map(RedisConn::Cluster)
                .map_err(|e| self.unreachable(e)),
            Topology::Sentinel { .. } => SentinelConn::connect(self.clone())
                .await
                .map(RedisConn::Sentinel)
                .map_err(|e| self.unreachable(e)),
        }
    }

    /// A connection of its own whose commands may block on the server for `blocking`.
    async fn dedicated(&self, blocking: Duration) -> redis::RedisResult<RedisConn> {
        let settings = self.config.dedicated_config(blocking);
        match &self.url.topology {
            Topology::Single => {
                let (host, port) = &self.url.hosts[0];
                self.server_client(host, *port)?
                    .get_multiplexed_async_connection_with_config(&settings)
                    .await
                    .map(RedisConn::Direct)
            }
            Topology::Cluster => self
                .cluster_client(blocking + self.config.response_timeout)?
                .get_async_connection()
                .await
                .map(RedisConn::Cluster),
            Topology::Sentinel { .. } => {
                let (host, port) = self.find_master().await?;
                self.server_client(&host, port)?
                    .get_multiplexed_async_connection_with_config(&settings)
                    .await
                    .map(RedisConn::Direct)
            }
        }
    }

    /// Asks each Sentinel in turn for the master's address, and checks that the server
    /// there calls itself master (a Sentinel may not have seen the failover yet).
    async fn find_master(&self) -> redis::RedisResult<(String, u16)> {
        let Topology::Sentinel { master } = &self.url.topology else {
            return Err(config_error("not a Sentinel URL"));
        };
        let settings = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.config.connection_timeout))
            .set_response_timeout(Some(self.config.response_timeout));
        let mut last = config_error("no Sentinel listed");
        for (host, port) in &self.url.hosts {
            let sentinel = match self.client_of(self.url.sentinel_url(host, *port)) {
                Ok(c) => c,
                Err(e) => {
                    last = e;
                    continue;
                }
            };
            let asked = async {
                let mut con = sentinel
                    .get_multiplexed_async_connection_with_config(&settings)
                    .await?;
                let addr: Option<(String, u16)> = redis::cmd("SENTINEL")
                    .arg("get-master-addr-by-name")
                    .arg(master)
                    .query_async(&mut con)
                    .await?;
                let (mhost, mport) =
                    addr.ok_or_else(|| config_error("the Sentinel does not know the master"))?;
                let mut m = self
                    .server_client(&mhost, mport)?
                    .get_multiplexed_async_connection_with_config(&settings)
                    .await?;
                let role: Vec<Value> = redis::cmd("ROLE").query_async(&mut m).await?;
                match role.first() {
                    Some(Value::BulkString(b)) if b.as_slice() == b"master" => Ok((mhost, mport)),
                    Some(Value::SimpleString(s)) if s == "master" => Ok((mhost, mport)),
                    _ => Err(config_error(
                        "the server the Sentinel names is not master (yet)",
                    )),
                }
            };
            match asked.await {
                Ok(addr) => return Ok(addr),
                Err(e) => last = e,
            }
        }
        Err(last)
    }
}

fn tls_pair_error(missing: &'static str) -> ConnectError {
    ConnectError::TlsFile {
        variable: missing,
        path: String::new(),
        source: std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "a client certificate needs both ORCHESTRATOR_REDIS_TLS_CERT_FILE and ORCHESTRATOR_REDIS_TLS_KEY_FILE",
        ),
    }
}

fn config_error(message: &'static str) -> RedisError {
    RedisError::from((redis::ErrorKind::Io, message))
}

fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The process-wide Redis handle: cheap to clone, shared by the store and the bus.
///
/// Holds one multiplexed, auto-reconnecting connection (it pipelines concurrent requests,
/// so one per process is enough) and what it takes to open dedicated connections
/// (blocking stream reads).
#[derive(Clone)]
pub struct RedisConnection {
    endpoint: Arc<Endpoint>,
    manager: RedisConn,
}

impl std::fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConnection")
            .field("url", &self.endpoint.url)
            .finish_non_exhaustive()
    }
}

impl RedisConnection {
    /// Opens the shared connection and waits (within the configured timeouts) until the
    /// server answers.
    pub async fn connect(config: RedisConfig) -> Result<Self, ConnectError> {
        let endpoint = Arc::new(Endpoint::new(config)?);
        let limit = endpoint.config.call_timeout * 2;
        // Connected and allowed in: a server that wants a password (or another user)
        // refuses the PING.
        let connecting = async {
            let mut manager = endpoint.shared().await?;
            redis::cmd("PING")
                .query_async::<Value>(&mut manager)
                .await
                .map_err(|e| endpoint.unreachable(e))?;
            Ok(manager)
        };
        let manager = match tokio::time::timeout(limit, connecting).await {
            Ok(Ok(m)) => m,
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                return Err(
                    endpoint.unreachable_because(format!("timed out after {limit:?}"), None)
                );
            }
        };
        Ok(RedisConnection { endpoint, manager })
    }

    /// A handle to the shared multiplexed connection.
    pub fn manager(&self) -> RedisConn {
        self.manager.clone()
    }

    /// A new connection of its own, for commands that block on the server for up to
    /// `blocking` (`BLPOP`, `XREAD BLOCK`): they would stall the shared one.
    pub async fn dedicated(&self, blocking: Duration) -> redis::RedisResult<RedisConn> {
        self.endpoint.dedicated(blocking).await
    }

    /// The parsed URL (prints without its password).
    pub fn url(&self) -> &RedisUrl {
        &self.endpoint.url
    }

    /// The settings this connection was made with.
    pub fn config(&self) -> &RedisConfig {
        &self.endpoint.config
    }

    /// Runs `call` against the shared connection, bounded by
    /// [`RedisConfig::call_timeout`].
    pub(crate) async fn bounded<T, F, Fut>(&self, call: F) -> Result<T, CallError>
    where
        F: FnOnce(RedisConn) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        let limit = self.endpoint.config.call_timeout;
        match tokio::time::timeout(limit, call(self.manager())).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(CallError::Redis(e)),
            Err(_) => Err(CallError::TimedOut(limit)),
        }
    }
}

/// A failed bounded call, before each adapter maps it to its port's error.
#[derive(Debug)]
pub(crate) enum CallError {
    /// The client or server reported an error.
    Redis(RedisError),
    /// The call did not finish in time.
    TimedOut(Duration),
}

/// What a failed call means to an adapter: the data under a key cannot be decoded
/// (a script's `CORRUPT key ...` reply, a wrong type or shape), or Redis did not serve the
/// call (connection, timeout, server refusal).
#[derive(Debug)]
pub(crate) enum CallFailure {
    /// Undecodable data under `key`.
    Corrupt {
        /// The key at fault.
        key: String,
        /// What is wrong with it.
        message: String,
        /// The client's error, when it reported one.
        source: Option<ErrorSource>,
    },
    /// Not served; `message` names the key when there is one.
    Unavailable {
        /// What failed.
        message: String,
        /// The client's error, when it reported one (none for a timeout).
        source: Option<ErrorSource>,
    },
}

impl CallError {
    /// Classifies a failed call about `key` (see [`CallFailure`]).
    pub(crate) fn classify(self, key: &str) -> CallFailure {
        let err = match self {
            CallError::Redis(err) => err,
            timed_out @ CallError::TimedOut(_) => {
                return CallFailure::Unavailable {
                    message: timed_out.to_string(),
                    source: None,
                };
            }
        };
        if err.code() == Some("CORRUPT") {
            let detail = err.detail().unwrap_or_default();
            let (key, message) = detail.split_once(' ').unwrap_or((detail, "corrupt"));
            return CallFailure::Corrupt {
                key: key.to_owned(),
                message: message.to_owned(),
                source: Some(ErrorSource::new(err)),
            };
        }
        let corrupt = err.code() == Some("WRONGTYPE")
            || matches!(
                err.kind(),
                redis::ErrorKind::UnexpectedReturnType | redis::ErrorKind::Parse
            );
        if corrupt {
            CallFailure::Corrupt {
                key: key.to_owned(),
                message: err.to_string(),
                source: Some(ErrorSource::new(err)),
            }
        } else {
            CallFailure::Unavailable {
                message: format!("`{key}`: {err}"),
                source: Some(ErrorSource::new(err)),
            }
        }
    }
}

impl std::error::Error for CallError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CallError::Redis(e) => e.source(),
            CallError::TimedOut(_) => None,
        }
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Redis(e) => write!(f, "{e}"),
            CallError::TimedOut(d) => write!(f, "no answer within {d:?}"),
        }
    }
}

/// A TTL as whole milliseconds for `PX`, at least 1 and at most about 100 years (so the
/// server never rejects it as out of range).
pub(crate) fn ttl_millis(ttl: Duration) -> u64 {
    const MAX: u64 = 100 * 365 * 86_400_000;
    u64::try_from(ttl.as_millis()).unwrap_or(MAX).clamp(1, MAX)
}

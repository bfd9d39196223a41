//! One Redis connection per process: the [`RedisConfig`] (URL and timeouts), the shared
//! [`RedisConnection`] (a `redis::Client` plus one auto-reconnecting `ConnectionManager`),
//! and the bounded call helper both adapters use so a dead server fails calls fast.
//!
//! Timeouts are layered: the manager's connection and response timeouts stop a single
//! socket operation, a short reconnect policy (few attempts, small delays) keeps callers
//! from waiting out a long backoff, and a hard bound caps every store or bus call at
//! [`RedisConfig::call_timeout`] whatever happens below.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncConnectionConfig, Client, RedisError};

/// How to reach Redis and how long to wait for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisConfig {
    /// `redis://host:port/db` (docs/COMPATIBILITY.md#configuration-variables
    /// `ORCHESTRATOR_REDIS_CONNECTION_STRING`).
    pub url: String,
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

impl RedisConfig {
    /// Defaults tuned for a local server: 500 ms connect, 1 s response, 2 reconnect
    /// attempts 50-500 ms apart, 2 s per call.
    pub fn new(url: impl Into<String>) -> Self {
        RedisConfig {
            url: url.into(),
            connection_timeout: Duration::from_millis(500),
            response_timeout: Duration::from_secs(1),
            reconnect_attempts: 2,
            reconnect_min_delay: Duration::from_millis(50),
            reconnect_max_delay: Duration::from_millis(500),
            call_timeout: Duration::from_secs(2),
        }
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

/// Why [`RedisConnection::connect`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The URL cannot be parsed.
    #[error("invalid Redis URL `{url}`: {source}")]
    InvalidUrl {
        /// The rejected URL.
        url: String,
        /// The client's message.
        source: RedisError,
    },
    /// The server did not answer within the configured timeouts.
    #[error("cannot connect to Redis at `{url}`: {message}")]
    Unreachable {
        /// The URL tried.
        url: String,
        /// What failed.
        message: String,
    },
}

/// The process-wide Redis handle: cheap to clone, shared by the store and the bus.
///
/// Holds one multiplexed, auto-reconnecting `ConnectionManager` (it pipelines concurrent
/// requests, so one per process is enough) and the `Client` for dedicated connections
/// (blocking stream reads).
#[derive(Clone)]
pub struct RedisConnection {
    client: Client,
    manager: ConnectionManager,
    config: Arc<RedisConfig>,
}

impl std::fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConnection")
            .field("url", &self.config.url)
            .finish_non_exhaustive()
    }
}

impl RedisConnection {
    /// Opens the shared connection and waits (within the configured timeouts) until the
    /// server answers.
    pub async fn connect(config: RedisConfig) -> Result<Self, ConnectError> {
        let client =
            Client::open(config.url.as_str()).map_err(|source| ConnectError::InvalidUrl {
                url: config.url.clone(),
                source,
            })?;
        let unreachable = |message: String| ConnectError::Unreachable {
            url: config.url.clone(),
            message,
        };
        let connecting =
            ConnectionManager::new_with_config(client.clone(), config.manager_config());
        let manager = match tokio::time::timeout(config.call_timeout * 2, connecting).await {
            Ok(Ok(m)) => m,
            Ok(Err(e)) => return Err(unreachable(e.to_string())),
            Err(_) => {
                return Err(unreachable(format!(
                    "timed out after {:?}",
                    config.call_timeout * 2
                )));
            }
        };
        Ok(RedisConnection {
            client,
            manager,
            config: Arc::new(config),
        })
    }

    /// A handle to the shared multiplexed connection.
    pub fn manager(&self) -> ConnectionManager {
        self.manager.clone()
    }

    /// The client, for dedicated connections.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The settings this connection was made with.
    pub fn config(&self) -> &RedisConfig {
        &self.config
    }

    /// Runs `call` against the shared connection, bounded by
    /// [`RedisConfig::call_timeout`].
    pub(crate) async fn bounded<T, F, Fut>(&self, call: F) -> Result<T, CallError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        match tokio::time::timeout(self.config.call_timeout, call(self.manager())).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(CallError::Redis(e)),
            Err(_) => Err(CallError::TimedOut(self.config.call_timeout)),
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
    },
    /// Not served; `message` names the key when there is one.
    Unavailable {
        /// What failed.
        message: String,
    },
}

impl CallError {
    /// Classifies a failed call about `key` (see [`CallFailure`]).
    pub(crate) fn classify(self, key: &str) -> CallFailure {
        let CallError::Redis(err) = &self else {
            return CallFailure::Unavailable {
                message: self.to_string(),
            };
        };
        if err.code() == Some("CORRUPT") {
            let detail = err.detail().unwrap_or_default();
            let (key, message) = detail.split_once(' ').unwrap_or((detail, "corrupt"));
            return CallFailure::Corrupt {
                key: key.to_owned(),
                message: message.to_owned(),
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
            }
        } else {
            CallFailure::Unavailable {
                message: format!("`{key}`: {err}"),
            }
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

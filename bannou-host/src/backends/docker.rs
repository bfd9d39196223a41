//! The Docker backend as the control plane registers it: [`DockerNodes`] wraps
//! `orchestrator_backends`' [`DockerBackend`] with the one thing containers need from the
//! host, a bus they can reach.
//!
//! Deployed containers heartbeat and receive their mappings through the event bus. An
//! in-memory bus lives in this process, out of their reach, so without Redis the backend
//! is listed unavailable with the reason ([`NO_REDIS_REASON`]) and refuses to deploy;
//! choosing it is a clear error, never a wave that silently waits for heartbeats that
//! cannot come.
//!
//! With Redis, every node gets `ORCHESTRATOR_REDIS_CONNECTION_STRING` (unless its own
//! environment sets one): `ORCHESTRATOR_NODE_REDIS_URL` when configured, else the
//! orchestrator's own Redis URL with a loopback host replaced by our network's gateway,
//! the host's address as the containers see it ([`node_redis_url`]). Before the first
//! deploy the address is checked with a TCP connection from this host: a Redis bound to
//! 127.0.0.1 only is refused there, and the deploy fails saying how to fix it (bind the
//! gateway address too, or set `ORCHESTRATOR_NODE_REDIS_URL`).
//!
//! Teardown also removes our network once no container of ours is left on it (the
//! network carries our label; one we did not create is never removed), so a deployment
//! torn down leaves nothing of ours behind. The next deploy creates it again.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use orchestrator_backends::containers::docker::{DockerBackend, DockerConfig};
use orchestrator_backends::containers::mounts::NodeMounts;
use orchestrator_backends::containers::portainer::PortainerConfig;
use orchestrator_backends::redis::url::redact;
use orchestrator_core::AppId;
use orchestrator_core::api::enums::CleanTarget;
use orchestrator_core::events::BackendType;
use orchestrator_core::ports::backend::{
    Availability, BackendError, ContainerBackend, DeployedNode, NodeDeployment, PruneReport,
    TeardownOptions, TeardownResult,
};

use crate::config::HostConfig;

/// Why the Docker backend is unavailable with in-memory state and bus.
pub const NO_REDIS_REASON: &str = "containers heartbeat through Redis: start with --redis \
     (ORCHESTRATOR_REDIS_CONNECTION_STRING)";

/// The variable a node reads its Redis URL from.
pub const NODE_REDIS_VARIABLE: &str = crate::config::vars::REDIS_CONNECTION_STRING;

/// How long the reachability check of the nodes' Redis address waits.
pub const REDIS_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// The bus the containers would use. `Debug` hides the URLs' passwords.
#[derive(Clone, PartialEq, Eq)]
pub enum NodeBus {
    /// In-memory state and bus: containers cannot reach it.
    Memory,
    /// Redis.
    Redis {
        /// The orchestrator's own URL.
        url: String,
        /// `ORCHESTRATOR_NODE_REDIS_URL`, when configured.
        node_url: Option<String>,
    },
}

impl NodeBus {
    /// What `config` says.
    pub fn from_config(config: &HostConfig) -> Self {
        match &config.redis_url {
            None => NodeBus::Memory,
            Some(url) => NodeBus::Redis {
                url: url.clone(),
                node_url: config.node_redis_url.clone(),
            },
        }
    }
}

/// The parts of a `redis://` URL we rewrite.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RedisUrlParts<'a> {
    /// `redis://` or `rediss://` (with the separator).
    scheme: &'a str,
    /// `user:pass@` or empty.
    userinfo: &'a str,
    /// The host, brackets of an IPv6 literal removed.
    host: &'a str,
    /// The port (6379 when absent).
    port: u16,
    /// `/db?...` or empty.
    rest: &'a str,
}

fn parse_redis_url(url: &str) -> Option<RedisUrlParts<'_>> {
    let (scheme, after) = ["redis://", "rediss://"]
        .iter()
        .find_map(|s| url.strip_prefix(s).map(|rest| (*s, rest)))?;
    let end = after.find(['/', '?']).unwrap_or(after.len());
    let (authority, rest) = after.split_at(end);
    let (userinfo, hostport) = match authority.rfind('@') {
        Some(i) => authority.split_at(i + 1),
        None => ("", authority),
    };
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (h, tail) = v6.split_once(']')?;
        let port = match tail.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None => 6379,
        };
        (h, port)
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, p.parse().ok()?),
            None => (hostport, 6379),
        }
    };
    (!host.is_empty()).then_some(RedisUrlParts {
        scheme,
        userinfo,
        host,
        port,
        rest,
    })
}

impl std::fmt::Debug for NodeBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NodeBus::Memory => f.write_str("Memory"),
            NodeBus::Redis { url, node_url } => f
                .debug_struct("Redis")
                .field("url", &redact(url))
                .field("node_url", &node_url.as_deref().map(redact))
                .finish(),
        }
    }
}

/// True for `localhost`, `127.0.0.0/8` and `::1`.
fn is_loopback_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The Redis URL containers get: `configured` when given; else `url` with a loopback host
/// replaced by `gateway` (`None` when the host is loopback and no gateway is known). A
/// non-loopback host is kept as it is.
pub fn node_redis_url(
    url: &str,
    configured: Option<&str>,
    gateway: Option<IpAddr>,
) -> Option<String> {
    if let Some(c) = configured {
        return Some(c.to_owned());
    }
    let Some(parts) = parse_redis_url(url) else {
        // Sentinel and Cluster host lists: every loopback host becomes the gateway.
        return match orchestrator_backends::redis::url::RedisUrl::parse(url) {
            Ok(u) if u.has_loopback_host() => u.node_url(Some(gateway?)),
            _ => Some(url.to_owned()),
        };
    };
    if !is_loopback_host(parts.host) {
        return Some(url.to_owned());
    }
    let host = match gateway? {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    };
    Some(format!(
        "{}{}{host}:{}{}",
        parts.scheme, parts.userinfo, parts.port, parts.rest
    ))
}

/// The socket address of a Redis URL whose host is an IP literal.
fn ip_address(url: &str) -> Option<SocketAddr> {
    let parts = parse_redis_url(url)?;
    let ip: IpAddr = parts.host.parse().ok()?;
    Some(SocketAddr::new(ip, parts.port))
}

/// The Docker backend with the bus rule of the module docs. See there.
pub struct DockerNodes {
    inner: Arc<DockerBackend>,
    bus: NodeBus,
    /// The checked node Redis URL, once a deploy resolved it.
    resolved: tokio::sync::Mutex<Option<String>>,
}

impl std::fmt::Debug for DockerNodes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerNodes")
            .field("inner", &self.inner)
            .field("bus", &self.bus)
            .finish_non_exhaustive()
    }
}

impl DockerNodes {
    /// Wraps `inner`; `bus` says what the containers would heartbeat through.
    pub fn new(inner: DockerBackend, bus: NodeBus) -> Self {
        DockerNodes {
            inner: Arc::new(inner),
            bus,
            resolved: tokio::sync::Mutex::new(None),
        }
    }

    /// The Docker settings of a host configuration: its network, image port, engine and
    /// the nodes' mounts ([`HostConfig::node_mounts`]: logs volume, certificates).
    pub fn docker_config(config: &HostConfig) -> DockerConfig {
        DockerConfig {
            docker_host: Some(config.docker_host.clone()).filter(|h| !h.trim().is_empty()),
            network: config.docker_network.clone(),
            node_port: config.default_service_port,
            mounts: config.node_mounts(),
            ..DockerConfig::default()
        }
    }

    /// Connects to the engine of `config` (no request fails the start: an engine that does
    /// not answer is reported by the availability check).
    pub async fn connect(config: &HostConfig) -> Result<Self, BackendError> {
        let inner = DockerBackend::connect(Self::docker_config(config)).await?;
        Ok(Self::new(inner, NodeBus::from_config(config)))
    }

    /// The Portainer backend of `config` (the Docker backend through Portainer's Docker
    /// proxy), under the same bus rule; `None` when `ORCHESTRATOR_PORTAINER_URL` is unset.
    /// A Portainer that does not answer is reported by the availability check; a URL
    /// that is not `http(s)://host` fails here.
    ///
    /// The loopback-Redis rewrite to our network's gateway assumes Portainer drives this
    /// machine's engine; for a remote engine set `ORCHESTRATOR_NODE_REDIS_URL`. Nodes
    /// mount nothing, as upstream's Portainer backend: the engine's machine is not known to
    /// hold this host's paths.
    pub async fn connect_portainer(config: &HostConfig) -> Option<Result<Self, BackendError>> {
        let url = config.portainer_url.clone()?;
        let portainer = PortainerConfig {
            url,
            api_key: config
                .portainer_api_key
                .as_ref()
                .map(|k| k.expose().to_owned()),
            endpoint_id: config.portainer_endpoint_id,
            request_timeout: config.portainer_request_timeout,
            docker: DockerConfig {
                mounts: NodeMounts::default(),
                ..Self::docker_config(config)
            },
        };
        Some(
            DockerBackend::connect_portainer(portainer)
                .await
                .map(|inner| Self::new(inner, NodeBus::from_config(config))),
        )
    }

    /// The wrapped backend.
    pub fn inner(&self) -> &Arc<DockerBackend> {
        &self.inner
    }

    /// The Redis URL nodes get, checked reachable; resolved once, again after our network
    /// was removed (its gateway may change).
    pub async fn resolve_node_redis_url(&self) -> Result<String, BackendError> {
        let (url, configured) = match &self.bus {
            NodeBus::Memory => {
                return Err(BackendError::unavailable(NO_REDIS_REASON.to_owned()));
            }
            NodeBus::Redis { url, node_url } => (url, node_url.as_deref()),
        };
        let mut resolved = self.resolved.lock().await;
        if let Some(u) = resolved.as_ref() {
            return Ok(u.clone());
        }
        let gateway = match configured {
            Some(_) => None,
            None if parse_redis_url(url).is_some_and(|p| is_loopback_host(p.host))
                || orchestrator_backends::redis::url::RedisUrl::parse(url)
                    .is_ok_and(|u| u.has_loopback_host()) =>
            {
                self.inner.ensure_network().await?.gateway
            }
            None => None,
        };
        let node_url = node_redis_url(url, configured, gateway).ok_or_else(|| {
            BackendError::runtime(format!(
                "network {} has no gateway address to reach Redis at {} from the \
                     containers; set ORCHESTRATOR_NODE_REDIS_URL",
                self.inner.config().network,
                redact(url)
            ))
        })?;
        if let Some(addr) = ip_address(&node_url) {
            let reachable =
                tokio::time::timeout(REDIS_CHECK_TIMEOUT, tokio::net::TcpStream::connect(addr))
                    .await;
            if !matches!(reachable, Ok(Ok(_))) {
                let why = match reachable {
                    Ok(Err(e)) => e.to_string(),
                    _ => format!("no answer within {REDIS_CHECK_TIMEOUT:?}"),
                };
                return Err(BackendError::runtime(format!(
                    "containers would reach Redis at {addr} ({}), but nothing \
                         answers there ({why}): make redis-server listen on that address \
                         too (e.g. `--bind 127.0.0.1 {}`), or set ORCHESTRATOR_NODE_REDIS_URL \
                         to an address the containers can reach",
                    redact(&node_url),
                    addr.ip()
                )));
            }
        }
        tracing::info!(url = %redact(&node_url), "nodes reach Redis here");
        *resolved = Some(node_url.clone());
        Ok(node_url)
    }

    /// Removes our network when no container of ours is left (see the module docs).
    async fn remove_network_if_unused(&self) {
        let Ok(remaining) = self.inner.list().await else {
            return;
        };
        if !remaining.is_empty() {
            return;
        }
        let Ok(Some(info)) = self.inner.network_info().await else {
            return;
        };
        if !info.managed {
            return;
        }
        let mut resolved = self.resolved.lock().await;
        match self.inner.docker().remove_network(&info.name).await {
            Ok(()) => {
                tracing::debug!(network = %info.name, "our network removed: nothing of ours runs on it");
                *resolved = None;
            }
            // Someone else's container may still be attached: leave it.
            Err(e) => tracing::debug!(network = %info.name, error = %e, "network kept"),
        }
    }
}

container_backend! {
    impl for DockerNodes {
        async fn check_availability(&self) -> Availability {
            let engine = self.inner.check_availability().await;
            match (&self.bus, engine.available) {
                (NodeBus::Memory, true) => Availability::unavailable(format!(
                    "{} {} answers, but {NO_REDIS_REASON}",
                    match self.inner.backend_type() {
                        BackendType::Portainer => "Portainer",
                        _ => "Docker",
                    },
                    engine.version.as_deref().unwrap_or("(version unknown)")
                )),
                _ => engine,
            }
        }

        async fn deploy_node(&self, node: &NodeDeployment) -> Result<DeployedNode, BackendError> {
            let url = self.resolve_node_redis_url().await?;
            let mut node = node.clone();
            node.environment
                .entry(NODE_REDIS_VARIABLE.to_owned())
                .or_insert(url);
            self.inner.deploy_node(&node).await
        }

        async fn teardown(
            &self,
            app_id: &AppId,
            options: &TeardownOptions,
        ) -> Result<TeardownResult, BackendError> {
            let result = self.inner.teardown(app_id, options).await;
            if result.is_ok() {
                self.remove_network_if_unused().await;
            }
            result
        }

        async fn prune(
            &self,
            targets: &BTreeSet<CleanTarget>,
            older_than: Option<Duration>,
        ) -> Result<PruneReport, BackendError> {
            let report = self.inner.prune(targets, older_than).await;
            // A pruned network may come back with another gateway.
            *self.resolved.lock().await = None;
            report
        }
    }
    (to inner)
    [backend_type, scale, restart, status, list, logs, list_infrastructure]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_become_the_gateway() {
        let gw: Option<IpAddr> = Some("172.18.0.1".parse().unwrap());
        for (url, expected) in [
            ("redis://127.0.0.1:6455/", "redis://172.18.0.1:6455/"),
            ("redis://localhost:6379", "redis://172.18.0.1:6379"),
            ("redis://[::1]:7000/2", "redis://172.18.0.1:7000/2"),
            (
                "redis://user:pw@127.0.0.1/0?x=1",
                "redis://user:pw@172.18.0.1:6379/0?x=1",
            ),
            ("rediss://127.0.0.1:1", "rediss://172.18.0.1:1"),
        ] {
            assert_eq!(
                node_redis_url(url, None, gw).as_deref(),
                Some(expected),
                "{url}"
            );
        }
    }

    #[test]
    fn other_hosts_and_configured_urls_are_kept() {
        let gw: Option<IpAddr> = Some("172.18.0.1".parse().unwrap());
        assert_eq!(
            node_redis_url("redis://bannou-redis:6379", None, gw).as_deref(),
            Some("redis://bannou-redis:6379")
        );
        assert_eq!(
            node_redis_url("redis://10.0.0.5:6379/", None, None).as_deref(),
            Some("redis://10.0.0.5:6379/")
        );
        assert_eq!(
            node_redis_url("redis://127.0.0.1:1/", Some("redis://r:2/"), gw).as_deref(),
            Some("redis://r:2/")
        );
        assert_eq!(node_redis_url("redis://127.0.0.1:1/", None, None), None);
        assert_eq!(
            ip_address("redis://172.18.0.1:6455/"),
            Some("172.18.0.1:6455".parse().unwrap())
        );
        assert_eq!(ip_address("redis://bannou-redis:6379"), None);
    }

    #[test]
    fn sentinel_and_cluster_host_lists_get_the_gateway() {
        let gw: Option<IpAddr> = Some("172.18.0.1".parse().unwrap());
        assert_eq!(
            node_redis_url(
                "redis+sentinel://u:p@127.0.0.1:26379,10.0.0.2:26379/m",
                None,
                gw
            )
            .as_deref(),
            Some("redis+sentinel://u:p@172.18.0.1:26379,10.0.0.2:26379/m")
        );
        assert_eq!(
            node_redis_url("rediss+cluster://localhost:7000,localhost:7001", None, gw).as_deref(),
            Some("rediss+cluster://172.18.0.1:7000,172.18.0.1:7001")
        );
        assert_eq!(
            node_redis_url("redis+cluster://127.0.0.1:7000", None, None),
            None
        );
    }

    #[tokio::test]
    async fn docker_nodes_mount_the_configured_logs_volume_and_certificates_portainer_none() {
        let config = HostConfig {
            logs_volume_name: "game-logs".to_owned(),
            certificates_host_path: Some("/srv/certs".into()),
            portainer_url: Some("http://127.0.0.1:1".to_owned()),
            ..HostConfig::default()
        };
        let docker = DockerNodes::docker_config(&config);
        assert_eq!(docker.mounts, config.node_mounts());
        assert_eq!(docker.mounts.logs_volume.as_deref(), Some("game-logs"));
        assert_eq!(
            docker.mounts.certificates_host_path.as_deref(),
            Some(std::path::Path::new("/srv/certs"))
        );
        let portainer = DockerNodes::connect_portainer(&config)
            .await
            .expect("a Portainer URL is set")
            .expect("a client");
        assert_eq!(
            portainer.inner().config().mounts,
            NodeMounts::default(),
            "Portainer nodes mount nothing, as upstream"
        );
    }

    #[tokio::test]
    async fn without_redis_it_is_unavailable_and_refuses_to_deploy() {
        // An engine address where nothing listens: the reason is the engine's.
        let config = DockerConfig {
            docker_host: Some("tcp://127.0.0.1:1".to_owned()),
            ..DockerConfig::default()
        };
        let inner = DockerBackend::new(
            orchestrator_backends::containers::docker::connect(config.docker_host.as_deref())
                .unwrap(),
            config,
        );
        let nodes = DockerNodes::new(inner, NodeBus::Memory);
        assert!(!nodes.check_availability().await.available);
        let node = NodeDeployment::new(AppId::from("n1"), "n1", "bannou:test");
        let err = nodes.deploy_node(&node).await.unwrap_err();
        assert!(err.to_string().contains("start with --redis"), "{err}");
    }
}

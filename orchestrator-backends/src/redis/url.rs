//! [`RedisUrl`]: every form of `--redis` / `ORCHESTRATOR_REDIS_CONNECTION_STRING` in one
//! type, with the TLS files that go with it.
//!
//! - `redis://[user:pass@]host[:port][/db]` and `rediss://...` (TLS);
//! - `redis+sentinel://[user:pass@]host:port[,host:port...]/MASTER_NAME[?tls=true]`, with
//!   `sentinel_user=` and `sentinel_password=` in the query for Sentinels that need them;
//! - `redis+cluster://[user:pass@]host:port[,host:port...]` and `rediss+cluster://...`.
//!
//! Invariants: a parse error names the part that is wrong and never contains the password;
//! [`std::fmt::Display`] and [`std::fmt::Debug`] print the password (and the Sentinels'
//! password) as `***`, so a `RedisUrl` can go into a log line, an error, an event, `status`
//! or `/metrics` as it is. Only [`RedisUrl::expose`], [`RedisUrl::server_url`],
//! [`RedisUrl::sentinel_url`] and [`RedisUrl::node_url`] give a password back, for a client
//! or a node that must connect.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use percent_encoding::{AsciiSet, CONTROLS, percent_decode_str, utf8_percent_encode};

/// The default Redis port.
pub const DEFAULT_PORT: u16 = 6379;
/// The default Sentinel port.
pub const DEFAULT_SENTINEL_PORT: u16 = 26379;

/// What a URL points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Topology {
    /// One server (`redis://`, `rediss://`).
    Single,
    /// The master that Sentinels at the hosts name `master` (`redis+sentinel://`).
    Sentinel {
        /// The master's name in the Sentinels' configuration.
        master: String,
    },
    /// A Redis Cluster, reached first through any of the hosts (`redis+cluster://`).
    Cluster,
}

/// Files of a TLS connection (`ORCHESTRATOR_REDIS_TLS_CA_FILE`, `_CERT_FILE`, `_KEY_FILE`),
/// all PEM. Without a CA file the system's roots are trusted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// Certificate authority that signed the server's certificate.
    pub ca_file: Option<PathBuf>,
    /// Client certificate, for servers that ask for one (`tls-auth-clients`).
    pub cert_file: Option<PathBuf>,
    /// The client certificate's private key.
    pub key_file: Option<PathBuf>,
}

impl TlsFiles {
    /// Reads the three variables through `get` (a variable name to its value; blank is
    /// unset).
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Self {
        let path = |name: &str| {
            get(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        TlsFiles {
            ca_file: path("ORCHESTRATOR_REDIS_TLS_CA_FILE"),
            cert_file: path("ORCHESTRATOR_REDIS_TLS_CERT_FILE"),
            key_file: path("ORCHESTRATOR_REDIS_TLS_KEY_FILE"),
        }
    }

    /// Whether no file is set.
    pub fn is_empty(&self) -> bool {
        self.ca_file.is_none() && self.cert_file.is_none() && self.key_file.is_none()
    }
}

/// A parsed Redis URL; see the module docs. Prints with its password hidden.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl {
    /// One server, Sentinel or Cluster.
    pub topology: Topology,
    /// TLS to every server (and Sentinel).
    pub tls: bool,
    /// ACL user (`AUTH user pass`); `None` is the `default` user.
    pub username: Option<String>,
    /// Password; `None` when the server needs none.
    password: Option<String>,
    /// ACL user the Sentinels are asked as (`?sentinel_user=`, Sentinel only); `None` is
    /// their `default` user.
    pub sentinel_username: Option<String>,
    /// Password of the Sentinels (`?sentinel_password=`, Sentinel only); `None` when they
    /// need none.
    sentinel_password: Option<String>,
    /// `(host, port)` of the server, the Sentinels or the cluster's seed nodes; an IPv6
    /// host is kept without brackets.
    pub hosts: Vec<(String, u16)>,
    /// Database number (single server and Sentinel; a cluster has only 0).
    pub db: i64,
    /// TLS files, not part of the URL's text.
    pub tls_files: TlsFiles,
}

/// Why a Redis URL was refused; each names the part that is wrong, and none contains the
/// password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// Unknown or missing scheme.
    #[error(
        "Redis URL `{url}`: scheme `{scheme}` is none of redis://, rediss://, redis+sentinel://, redis+cluster://, rediss+cluster://"
    )]
    Scheme {
        /// The URL, password hidden.
        url: String,
        /// The scheme found.
        scheme: String,
    },
    /// A host or port that does not parse.
    #[error("Redis URL `{url}`: host `{host}`: {reason}")]
    Host {
        /// The URL, password hidden.
        url: String,
        /// The `host:port` at fault.
        host: String,
        /// What is wrong.
        reason: String,
    },
    /// The user or password is not valid percent-encoded UTF-8.
    #[error("Redis URL `{url}`: credentials: {reason}")]
    Credentials {
        /// The URL, password hidden.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// The path: a database number for one server, the master's name for Sentinel,
    /// nothing for a cluster.
    #[error("Redis URL `{url}`: path `{path}`: {reason}")]
    Path {
        /// The URL, password hidden.
        url: String,
        /// The path at fault.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// An unknown or malformed `?name=value` parameter.
    #[error("Redis URL `{url}`: query `{query}`: {reason}")]
    Query {
        /// The URL, password hidden.
        url: String,
        /// The parameter at fault.
        query: String,
        /// What is wrong.
        reason: String,
    },
}

/// Characters escaped in user names and passwords.
const USERINFO: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'@')
    .add(b':')
    .add(b'/')
    .add(b'?')
    .add(b'#')
    .add(b'%')
    .add(b',')
    .add(b'[')
    .add(b']');

/// Characters escaped in query values (as [`USERINFO`], and the query's separators).
const QUERY_VALUE: &AsciiSet = &USERINFO.add(b'&').add(b'=').add(b'+');

/// The query parameter that carries the Sentinels' password.
const SENTINEL_PASSWORD: &str = "sentinel_password";

/// `text` with the password of its `user:pass@` part and the value of its
/// `sentinel_password=` parameter replaced by `***`, for messages about a URL that did not
/// parse and for configuration logged as it was given.
pub fn redact(text: &str) -> String {
    let Some((scheme, rest)) = text.split_once("://") else {
        return text.to_owned();
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let tail = match tail.split_once('?') {
        Some((path, query)) => format!(
            "{path}?{}",
            query
                .split('&')
                .map(redact_param)
                .collect::<Vec<_>>()
                .join("&")
        ),
        None => tail.to_owned(),
    };
    match authority.rfind('@') {
        Some(at) => {
            let userinfo = &authority[..at];
            let user = match userinfo.split_once(':') {
                Some((user, _)) => format!("{user}:***"),
                None => "***".to_owned(),
            };
            format!("{scheme}://{user}@{}{tail}", &authority[at + 1..])
        }
        None => format!("{scheme}://{authority}{tail}"),
    }
}

/// One `name=value` query parameter, its value as `***` when it is a password.
fn redact_param(param: &str) -> String {
    match param.split_once('=') {
        Some((name, _)) if name == SENTINEL_PASSWORD => format!("{name}=***"),
        _ => param.to_owned(),
    }
}

impl FromStr for RedisUrl {
    type Err = UrlError;

    fn from_str(input: &str) -> Result<Self, UrlError> {
        let input = input.trim();
        let shown = redact(input);
        let (scheme, rest) = input.split_once("://").unwrap_or(("", input));
        let (topology, mut tls, default_port) = match scheme.to_ascii_lowercase().as_str() {
            "redis" => (Topology::Single, false, DEFAULT_PORT),
            "rediss" => (Topology::Single, true, DEFAULT_PORT),
            "redis+sentinel" => (
                Topology::Sentinel {
                    master: String::new(),
                },
                false,
                DEFAULT_SENTINEL_PORT,
            ),
            "redis+cluster" => (Topology::Cluster, false, DEFAULT_PORT),
            "rediss+cluster" => (Topology::Cluster, true, DEFAULT_PORT),
            _ => {
                return Err(UrlError::Scheme {
                    url: shown,
                    scheme: scheme.to_owned(),
                });
            }
        };
        let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
        let end = rest.find('/').unwrap_or(rest.len());
        let (authority, path) = rest.split_at(end);
        let path = path.trim_start_matches('/');
        let (userinfo, hostlist) = match authority.rfind('@') {
            Some(at) => (Some(&authority[..at]), &authority[at + 1..]),
            None => (None, authority),
        };
        let decode = |part: &str, what: &str| {
            percent_decode_str(part)
                .decode_utf8()
                .map(|s| s.into_owned())
                .map_err(|e| UrlError::Credentials {
                    url: shown.clone(),
                    reason: format!("{what} is not UTF-8 once percent-decoded: {e}"),
                })
        };
        let (username, password) = match userinfo {
            None => (None, None),
            Some(info) => {
                let (user, pass) = match info.split_once(':') {
                    Some((u, p)) => (u, Some(p)),
                    None => (info, None),
                };
                let user = Some(decode(user, "the user")?).filter(|u| !u.is_empty());
                let pass = pass
                    .map(|p| decode(p, "the password"))
                    .transpose()?
                    .filter(|p| !p.is_empty());
                (user, pass)
            }
        };
        let mut hosts = Vec::new();
        for part in hostlist.split(',') {
            hosts.push(
                parse_host(part, default_port).map_err(|reason| UrlError::Host {
                    url: shown.clone(),
                    host: part.to_owned(),
                    reason,
                })?,
            );
        }
        if hosts.len() > 1 && topology == Topology::Single {
            return Err(UrlError::Host {
                url: shown,
                host: hostlist.to_owned(),
                reason: "one server only; several hosts need redis+sentinel:// or redis+cluster://"
                    .to_owned(),
            });
        }
        let path_error = |reason: &str| UrlError::Path {
            url: shown.clone(),
            path: path.to_owned(),
            reason: reason.to_owned(),
        };
        let mut db = 0;
        let topology = match topology {
            Topology::Single => {
                if !path.is_empty() {
                    db = path
                        .parse::<i64>()
                        .ok()
                        .filter(|d| *d >= 0)
                        .ok_or_else(|| path_error("not a database number"))?;
                }
                Topology::Single
            }
            Topology::Sentinel { .. } => {
                let (master, db_part) = match path.split_once('/') {
                    Some((m, d)) => (m, Some(d)),
                    None => (path, None),
                };
                if master.is_empty() {
                    return Err(path_error(
                        "the master's name is missing (redis+sentinel://host:port/MASTER_NAME)",
                    ));
                }
                if let Some(d) = db_part.filter(|d| !d.is_empty()) {
                    db = d
                        .parse::<i64>()
                        .ok()
                        .filter(|d| *d >= 0)
                        .ok_or_else(|| path_error("not MASTER_NAME or MASTER_NAME/db"))?;
                }
                Topology::Sentinel {
                    master: decode(master, "the master's name").map_err(|_| {
                        path_error("the master's name is not UTF-8 once percent-decoded")
                    })?,
                }
            }
            Topology::Cluster => {
                if !path.is_empty() && path != "0" {
                    return Err(path_error("a cluster has database 0 only"));
                }
                Topology::Cluster
            }
        };
        let (mut sentinel_username, mut sentinel_password) = (None, None);
        for param in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = param.split_once('=').unwrap_or((param, ""));
            let query_error = |reason: &str| UrlError::Query {
                url: shown.clone(),
                query: redact_param(param),
                reason: reason.to_owned(),
            };
            let sentinel_credential = |what: &str| {
                if !matches!(topology, Topology::Sentinel { .. }) {
                    return Err(query_error("applies to redis+sentinel:// only"));
                }
                percent_decode_str(value)
                    .decode_utf8()
                    .map(|v| Some(v.into_owned()).filter(|v| !v.is_empty()))
                    .map_err(|_| query_error(&format!("{what} is not UTF-8 once percent-decoded")))
            };
            match name {
                "tls" => {
                    tls = match value {
                        "true" | "1" | "yes" => true,
                        "false" | "0" | "no" => tls,
                        _ => return Err(query_error("tls is true or false")),
                    }
                }
                "sentinel_user" => sentinel_username = sentinel_credential("the user")?,
                SENTINEL_PASSWORD => sentinel_password = sentinel_credential("the password")?,
                _ => {
                    return Err(query_error(
                        "unknown parameter (tls, sentinel_user, sentinel_password)",
                    ));
                }
            }
        }
        Ok(RedisUrl {
            topology,
            tls,
            username,
            password,
            sentinel_username,
            sentinel_password,
            hosts,
            db,
            tls_files: TlsFiles::default(),
        })
    }
}

/// `host[:port]` or `[v6][:port]`.
fn parse_host(part: &str, default_port: u16) -> Result<(String, u16), String> {
    let (host, port) = if let Some(v6) = part.strip_prefix('[') {
        let (h, tail) = v6
            .split_once(']')
            .ok_or_else(|| "an IPv6 address misses its `]`".to_owned())?;
        (h, tail.strip_prefix(':'))
    } else {
        match part.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (part, None),
        }
    };
    if host.is_empty() {
        return Err("the host is empty".to_owned());
    }
    if host.contains(['/', '@', ' ']) {
        return Err("not a host name".to_owned());
    }
    let port = match port {
        None => default_port,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("port `{p}` is not 1-65535"))?,
    };
    Ok((host.to_owned(), port))
}

impl RedisUrl {
    /// Parses `input` (see the module docs).
    pub fn parse(input: &str) -> Result<Self, UrlError> {
        input.parse()
    }

    /// This URL with `files` for its TLS connections.
    pub fn with_tls_files(mut self, files: TlsFiles) -> Self {
        self.tls_files = files;
        self
    }

    /// The password, for a client that must send it.
    pub fn password(&self) -> Option<&str> {
        self.password.as_deref()
    }

    /// The scheme, without `://`.
    pub fn scheme(&self) -> &'static str {
        match (&self.topology, self.tls) {
            (Topology::Single, false) => "redis",
            (Topology::Single, true) => "rediss",
            (Topology::Sentinel { .. }, _) => "redis+sentinel",
            (Topology::Cluster, false) => "redis+cluster",
            (Topology::Cluster, true) => "rediss+cluster",
        }
    }

    /// The Sentinels' password, for a client that asks them.
    pub fn sentinel_password(&self) -> Option<&str> {
        self.sentinel_password.as_deref()
    }

    /// Writes the URL, its passwords as they are when `reveal`, else as `***`.
    fn write(&self, f: &mut impl fmt::Write, reveal: bool) -> fmt::Result {
        fn shown(secret: &Option<String>, reveal: bool) -> Option<&str> {
            secret.as_deref().map(|s| if reveal { s } else { "***" })
        }
        let password = shown(&self.password, reveal);
        write!(f, "{}://", self.scheme())?;
        if self.username.is_some() || password.is_some() {
            if let Some(user) = &self.username {
                write!(f, "{}", utf8_percent_encode(user, USERINFO))?;
            }
            if let Some(pass) = password {
                write!(f, ":{}", utf8_percent_encode(pass, USERINFO))?;
            }
            f.write_char('@')?;
        }
        for (i, (host, port)) in self.hosts.iter().enumerate() {
            if i > 0 {
                f.write_char(',')?;
            }
            if host.contains(':') {
                write!(f, "[{host}]:{port}")?;
            } else {
                write!(f, "{host}:{port}")?;
            }
        }
        match &self.topology {
            Topology::Single => write!(f, "/{}", self.db)?,
            Topology::Sentinel { master } => {
                write!(f, "/{}", utf8_percent_encode(master, USERINFO))?;
                if self.db != 0 {
                    write!(f, "/{}", self.db)?;
                }
                let mut params = Vec::new();
                if self.tls {
                    params.push("tls=true".to_owned());
                }
                if let Some(user) = &self.sentinel_username {
                    params.push(format!(
                        "sentinel_user={}",
                        utf8_percent_encode(user, QUERY_VALUE)
                    ));
                }
                if let Some(pass) = shown(&self.sentinel_password, reveal) {
                    params.push(format!(
                        "{SENTINEL_PASSWORD}={}",
                        utf8_percent_encode(pass, QUERY_VALUE)
                    ));
                }
                if !params.is_empty() {
                    write!(f, "?{}", params.join("&"))?;
                }
            }
            Topology::Cluster => {}
        }
        Ok(())
    }

    /// The full URL, password included: for a client or a node, never for a message.
    pub fn expose(&self) -> String {
        let mut s = String::new();
        let _ = self.write(&mut s, true);
        s
    }

    /// `redis://` (or `rediss://`) URL of the Sentinel at `host:port` with the Sentinels'
    /// credentials (`sentinel_user`, `sentinel_password`) and TLS, password included: what
    /// a client asking that Sentinel connects with.
    pub fn sentinel_url(&self, host: &str, port: u16) -> String {
        let mut s = format!("{}://", if self.tls { "rediss" } else { "redis" });
        if self.sentinel_username.is_some() || self.sentinel_password.is_some() {
            if let Some(user) = &self.sentinel_username {
                s.extend(utf8_percent_encode(user, USERINFO));
            }
            if let Some(pass) = &self.sentinel_password {
                s.push(':');
                s.extend(utf8_percent_encode(pass, USERINFO));
            }
            s.push('@');
        }
        if host.contains(':') {
            s.push_str(&format!("[{host}]:{port}/"));
        } else {
            s.push_str(&format!("{host}:{port}/"));
        }
        s
    }

    /// `redis://` (or `rediss://`) URL of one server at `host:port` with this URL's
    /// credentials, TLS and database, password included: what a client of one node of a
    /// Sentinel set or cluster connects with.
    pub fn server_url(&self, host: &str, port: u16) -> String {
        RedisUrl {
            topology: Topology::Single,
            hosts: vec![(host.to_owned(), port)],
            sentinel_username: None,
            sentinel_password: None,
            db: if self.topology == Topology::Cluster {
                0
            } else {
                self.db
            },
            ..self.clone()
        }
        .expose()
    }

    /// The URL a node reaches: every loopback host replaced by `gateway` (the host as
    /// containers see it), password included. `None` when a host is loopback and no
    /// gateway is known. A cluster or Sentinel set announces its members' addresses
    /// itself; those must be reachable from the nodes as they are.
    pub fn node_url(&self, gateway: Option<std::net::IpAddr>) -> Option<String> {
        let mut url = self.clone();
        for (host, _) in &mut url.hosts {
            if is_loopback_host(host) {
                *host = gateway?.to_string();
            }
        }
        Some(url.expose())
    }

    /// Whether any host is loopback (`localhost`, `127.0.0.0/8`, `::1`).
    pub fn has_loopback_host(&self) -> bool {
        self.hosts.iter().any(|(h, _)| is_loopback_host(h))
    }
}

/// Whether `key` has a Redis Cluster hash tag: a `{` followed later by a `}` with
/// something between (only that part then decides the key's slot).
pub fn has_hash_tag(key: &str) -> bool {
    key.find('{')
        .and_then(|open| key[open + 1..].find('}'))
        .is_some_and(|len| len > 0)
}

/// True for `localhost`, `127.0.0.0/8` and `::1`.
pub fn is_loopback_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl fmt::Display for RedisUrl {
    /// The URL with its password as `***`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write(f, false)
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisUrl")
            .field("url", &self.to_string())
            .field("tls_files", &self.tls_files)
            .finish()
    }
}

#[cfg(test)]
mod tests;

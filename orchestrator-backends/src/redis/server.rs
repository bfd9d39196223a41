//! A throw-away `redis-server` on a free loopback port, for tests and benches.
//!
//! [`RedisServer::start`] spawns Debian's `redis-server` with persistence off, waits until
//! it answers `PING`, and kills it on drop. `RedisServer::for_test` (feature `testkit`) applies
//! the skip-or-fail rule of `crate::require`. [`RedisServer::start_bound`] listens on more
//! addresses than loopback, e.g. a Docker network's gateway, where containers reach the
//! host. [`RedisServer::start_tls`] listens with TLS only, on certificates it makes
//! (rcgen) in a directory removed with it. [`SentinelServer`] is one `redis-sentinel`
//! watching a master, [`RedisCluster`] a cluster of masters made with
//! `redis-cli --cluster create`; both are killed on drop too.

use std::net::{IpAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Why a server could not be started.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// No `redis-server` binary on `PATH` (or at `REDIS_SERVER_BIN`).
    #[error("`{0}` not found; install Debian's redis-server package")]
    NotInstalled(String),
    /// Spawning or probing failed.
    #[error("redis-server failed to start: {0}")]
    Start(String),
}

/// A running `redis-server` child process, killed on drop.
#[derive(Debug)]
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    binary: PathBuf,
    extra_args: Vec<String>,
    /// Addresses bound besides 127.0.0.1.
    also_bound: Vec<IpAddr>,
    /// Certificates of a TLS-only server.
    tls: Option<TestCertificates>,
    /// Its working directory (a replica's RDB files land there, not in the caller's).
    dir: Option<tempfile::TempDir>,
}

/// A CA, a server certificate for `127.0.0.1` and `localhost`, and a client certificate,
/// all made by rcgen in a temporary directory (removed on drop), PEM files.
#[derive(Debug)]
pub struct TestCertificates {
    dir: tempfile::TempDir,
}

impl TestCertificates {
    /// Makes them.
    pub fn generate() -> Result<Self, ServerError> {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
        let fail = |e: rcgen::Error| ServerError::Start(format!("certificates: {e}"));
        let dir = tempfile::tempdir().map_err(|e| ServerError::Start(e.to_string()))?;
        let ca_key = KeyPair::generate().map_err(fail)?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(fail)?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "bannou test CA");
        let ca = ca_params.self_signed(&ca_key).map_err(fail)?;
        let issuer = Issuer::from_params(&ca_params, &ca_key);
        let mut files = vec![("ca.crt", ca.pem())];
        for (name, sans) in [
            (
                "server",
                vec!["127.0.0.1".to_owned(), "localhost".to_owned()],
            ),
            ("client", vec!["bannou-client".to_owned()]),
        ] {
            let key = KeyPair::generate().map_err(fail)?;
            let cert = CertificateParams::new(sans)
                .map_err(fail)?
                .signed_by(&key, &issuer)
                .map_err(fail)?;
            files.push((
                if name == "server" {
                    "server.crt"
                } else {
                    "client.crt"
                },
                cert.pem(),
            ));
            files.push((
                if name == "server" {
                    "server.key"
                } else {
                    "client.key"
                },
                key.serialize_pem(),
            ));
        }
        for (name, pem) in files {
            std::fs::write(dir.path().join(name), pem)
                .map_err(|e| ServerError::Start(format!("writing {name}: {e}")))?;
        }
        Ok(TestCertificates { dir })
    }

    /// The file `name` (`ca.crt`, `server.crt`, `server.key`, `client.crt`, `client.key`).
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// What a client needs: the CA and the client certificate.
    pub fn client_files(&self) -> crate::redis::url::TlsFiles {
        crate::redis::url::TlsFiles {
            ca_file: Some(self.file("ca.crt")),
            cert_file: Some(self.file("client.crt")),
            key_file: Some(self.file("client.key")),
        }
    }

    /// `redis-server` (or `redis-sentinel`) arguments serving TLS on these certificates
    /// and asking clients for a certificate of the same CA.
    pub fn server_args(&self) -> Vec<String> {
        let path = |n: &str| self.file(n).display().to_string();
        vec![
            "--tls-cert-file".into(),
            path("server.crt"),
            "--tls-key-file".into(),
            path("server.key"),
            "--tls-ca-cert-file".into(),
            path("ca.crt"),
            "--tls-auth-clients".into(),
            "yes".into(),
        ]
    }
}

impl RedisServer {
    /// Starts a server on a free port of 127.0.0.1 and waits (up to 10 s) until it answers.
    pub fn start() -> Result<RedisServer, ServerError> {
        Self::start_with(&[])
    }

    /// Like [`RedisServer::start`], listening on `also` besides 127.0.0.1 (with protected
    /// mode off, which would refuse non-loopback clients of a server without password).
    /// Pick addresses of this machine only, such as a Docker bridge's gateway: the server
    /// has no password.
    pub fn start_bound(also: &[IpAddr]) -> Result<RedisServer, ServerError> {
        let mut server = Self::unstarted(&[])?;
        server.also_bound = also.iter().copied().filter(|a| !a.is_loopback()).collect();
        server.spawn()?;
        Ok(server)
    }

    /// A server that speaks TLS only (`--port 0 --tls-port P`), on certificates made for
    /// it ([`RedisServer::certificates`]); clients must show the client certificate.
    pub fn start_tls() -> Result<RedisServer, ServerError> {
        let mut server = Self::unstarted(&[])?;
        server.tls = Some(TestCertificates::generate()?);
        server.spawn()?;
        Ok(server)
    }

    /// The certificates of a [`RedisServer::start_tls`] server.
    pub fn certificates(&self) -> Option<&TestCertificates> {
        self.tls.as_ref()
    }

    /// Like [`RedisServer::start`] with extra `redis-server` arguments.
    pub fn start_with(extra_args: &[&str]) -> Result<RedisServer, ServerError> {
        let mut server = Self::unstarted(extra_args)?;
        server.spawn()?;
        Ok(server)
    }

    fn unstarted(extra_args: &[&str]) -> Result<RedisServer, ServerError> {
        let binary = PathBuf::from(
            std::env::var("REDIS_SERVER_BIN").unwrap_or_else(|_| "redis-server".to_owned()),
        );
        let port = free_port().map_err(|e| ServerError::Start(format!("no free port: {e}")))?;
        Ok(RedisServer {
            child: None,
            port,
            binary,
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            also_bound: Vec::new(),
            tls: None,
            dir: tempfile::tempdir().ok(),
        })
    }

    /// For tests (feature `testkit`): a server, or `None` after printing why the test
    /// skips. Panics instead when `BANNOU_TEST_REQUIRE` names `redis`.
    #[cfg(feature = "testkit")]
    pub fn for_test(test: &str) -> Option<RedisServer> {
        match RedisServer::start() {
            Ok(s) => Some(s),
            Err(e) => {
                crate::require::skip_or_fail("redis", test, &e.to_string());
                None
            }
        }
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:{port}/`, `rediss://` for a TLS server.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://127.0.0.1:{}/", self.port)
    }

    /// The addresses it listens on besides 127.0.0.1 ([`RedisServer::start_bound`]).
    pub fn also_bound(&self) -> &[IpAddr] {
        &self.also_bound
    }

    /// Kills the server (as `kill -9` would); [`RedisServer::restart`] brings it back on
    /// the same port with an empty dataset.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the server (`SIGSTOP`): connections stay open and requests get no answer,
    /// the nastiest outage for a client (nothing is refused, everything waits). The
    /// dataset is kept; [`RedisServer::resume`] continues it.
    pub fn pause(&self) -> Result<(), ServerError> {
        self.signal("-STOP")
    }

    /// Continues a server frozen by [`RedisServer::pause`] (`SIGCONT`).
    pub fn resume(&self) -> Result<(), ServerError> {
        self.signal("-CONT")
    }

    fn signal(&self, signal: &str) -> Result<(), ServerError> {
        let child = self
            .child
            .as_ref()
            .ok_or_else(|| ServerError::Start("the server is not running".to_owned()))?;
        // `kill(1)` rather than a libc call: the workspace forbids unsafe code.
        let status = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .map_err(|e| ServerError::Start(format!("kill {signal}: {e}")))?;
        if !status.success() {
            return Err(ServerError::Start(format!(
                "kill {signal} failed: {status}"
            )));
        }
        Ok(())
    }

    /// Starts the server again on the same port (after [`RedisServer::kill`]).
    pub fn restart(&mut self) -> Result<(), ServerError> {
        self.kill();
        self.spawn()
    }

    fn spawn(&mut self) -> Result<(), ServerError> {
        let port = self.port.to_string();
        let (port_args, tls_args) = match &self.tls {
            Some(certs) => (
                vec![
                    "--port".to_owned(),
                    "0".to_owned(),
                    "--tls-port".to_owned(),
                    port,
                ],
                certs.server_args(),
            ),
            None => (vec!["--port".to_owned(), port], Vec::new()),
        };
        let bind = std::iter::once("127.0.0.1".to_owned())
            .chain(self.also_bound.iter().map(IpAddr::to_string))
            .collect::<Vec<_>>()
            .join(" ");
        let protected = if self.also_bound.is_empty() {
            "yes"
        } else {
            "no"
        };
        let mut cmd = Command::new(&self.binary);
        if let Some(dir) = &self.dir {
            cmd.arg("--dir").arg(dir.path());
        }
        cmd.args(&port_args)
            .args(&tls_args)
            .args(["--bind", &bind, "--save", "", "--appendonly", "no"])
            .args([
                "--daemonize",
                "no",
                "--protected-mode",
                protected,
                "--loglevel",
                "warning",
            ])
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let child = cmd.spawn().map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                ServerError::NotInstalled(self.binary.display().to_string())
            }
            _ => ServerError::Start(e.to_string()),
        })?;
        self.child = Some(child);
        // Poll with a plain TCP PING (a TLS server: until it accepts connections): no
        // runtime needed, bounded to 10 s.
        for _ in 0..200 {
            if ping(self.port) || (self.tls.is_some() && listening(self.port)) {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                let mut err = String::new();
                if let Some(mut stderr) = child.stderr.take() {
                    use std::io::Read;
                    let _ = stderr.read_to_string(&mut err);
                }
                self.child = None;
                return Err(ServerError::Start(format!(
                    "exited with {status}: {}",
                    err.trim()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill();
        Err(ServerError::Start(format!(
            "no PONG on port {} within 10 s",
            self.port
        )))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Spawns `cmd` and waits (up to 10 s) until `port` answers `PING`; the child is killed
/// when it does not.
fn spawn_ready(mut cmd: Command, port: u16, what: &str) -> Result<Child, ServerError> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => ServerError::NotInstalled(what.to_owned()),
        _ => ServerError::Start(e.to_string()),
    })?;
    for _ in 0..200 {
        if answers(port) {
            return Ok(child);
        }
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            if let Some(mut stderr) = child.stderr.take() {
                use std::io::Read;
                let _ = stderr.read_to_string(&mut err);
            }
            return Err(ServerError::Start(format!(
                "{what} exited with {status}: {}",
                err.trim()
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    Err(ServerError::Start(format!(
        "{what}: no PONG on port {port} within 10 s"
    )))
}

/// One `redis-sentinel` on a free loopback port watching the master at
/// `127.0.0.1:{master_port}` under a name, with a quorum of 1 (a master silent for
/// `down_after` is down; failover right after; a failover that stalls is tried again
/// after twice `failover_timeout`, which is also how long the Sentinel leaves a replica
/// following another address alone). Killed on drop.
#[derive(Debug)]
pub struct SentinelServer {
    child: Option<Child>,
    port: u16,
    _dir: tempfile::TempDir,
}

impl SentinelServer {
    /// Starts it (`REDIS_SENTINEL_BIN`, default `redis-sentinel`).
    pub fn start(
        master_name: &str,
        master_port: u16,
        down_after: Duration,
        failover_timeout: Duration,
    ) -> Result<SentinelServer, ServerError> {
        Self::start_with(master_name, master_port, down_after, failover_timeout, &[])
    }

    /// Starts it with `extra` lines appended to its configuration (`requirepass ...`,
    /// `user ...`).
    pub fn start_with(
        master_name: &str,
        master_port: u16,
        down_after: Duration,
        failover_timeout: Duration,
        extra: &[&str],
    ) -> Result<SentinelServer, ServerError> {
        let binary =
            std::env::var("REDIS_SENTINEL_BIN").unwrap_or_else(|_| "redis-sentinel".to_owned());
        let port = free_port().map_err(|e| ServerError::Start(format!("no free port: {e}")))?;
        let dir = tempfile::tempdir().map_err(|e| ServerError::Start(e.to_string()))?;
        let down = down_after.as_millis().max(100);
        let conf = dir.path().join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\ndaemonize no\nloglevel warning\n\
                 dir {dir}\n\
                 sentinel monitor {master_name} 127.0.0.1 {master_port} 1\n\
                 sentinel down-after-milliseconds {master_name} {down}\n\
                 sentinel failover-timeout {master_name} {failover}\n\
                 sentinel parallel-syncs {master_name} 1\n{extra}",
                dir = dir.path().display(),
                failover = failover_timeout.as_millis().max(1000),
                extra = extra.iter().map(|l| format!("{l}\n")).collect::<String>(),
            ),
        )
        .map_err(|e| ServerError::Start(format!("sentinel.conf: {e}")))?;
        let mut cmd = Command::new(&binary);
        cmd.arg(&conf);
        let child = spawn_ready(cmd, port, &binary)?;
        Ok(SentinelServer {
            child: Some(child),
            port,
            _dir: dir,
        })
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for SentinelServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A Redis Cluster of masters (no replicas) on free loopback ports, each with its own
/// directory for `nodes.conf`; all killed on drop.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
    _dirs: Vec<tempfile::TempDir>,
}

impl RedisCluster {
    /// Starts `masters` servers and joins them with
    /// `redis-cli --cluster create ... --cluster-yes` (`REDIS_CLI_BIN`, default
    /// `redis-cli`), then waits (up to 10 s) until every node reports `cluster_state:ok`.
    pub fn start(masters: usize) -> Result<RedisCluster, ServerError> {
        let mut nodes = Vec::new();
        let mut dirs = Vec::new();
        for _ in 0..masters {
            let dir = tempfile::tempdir().map_err(|e| ServerError::Start(e.to_string()))?;
            let d = dir.path().display().to_string();
            nodes.push(RedisServer::start_with(&[
                "--cluster-enabled",
                "yes",
                "--cluster-node-timeout",
                "2000",
                "--dir",
                &d,
            ])?);
            dirs.push(dir);
        }
        let cli = std::env::var("REDIS_CLI_BIN").unwrap_or_else(|_| "redis-cli".to_owned());
        let out = Command::new(&cli)
            .arg("--cluster")
            .arg("create")
            .args(nodes.iter().map(|n| format!("127.0.0.1:{}", n.port())))
            .arg("--cluster-yes")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => ServerError::NotInstalled(cli.clone()),
                _ => ServerError::Start(e.to_string()),
            })?;
        if !out.status.success() {
            return Err(ServerError::Start(format!(
                "{cli} --cluster create: {}",
                String::from_utf8_lossy(&out.stdout)
            )));
        }
        for _ in 0..200 {
            let ok = nodes.iter().all(|n| {
                Command::new(&cli)
                    .args(["-p", &n.port().to_string(), "cluster", "info"])
                    .output()
                    .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("cluster_state:ok"))
            });
            if ok {
                return Ok(RedisCluster { nodes, _dirs: dirs });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(ServerError::Start(
            "the cluster did not reach cluster_state:ok within 10 s".to_owned(),
        ))
    }

    /// `redis+cluster://127.0.0.1:{p1},127.0.0.1:{p2},...`.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect();
        format!("redis+cluster://{}", hosts.join(","))
    }

    /// The masters.
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn listening(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200))
        .is_ok()
}

fn ping(port: u16) -> bool {
    ping_reply(port).is_some_and(|r| &r == b"+PONG\r\n")
}

/// Whether the server on `port` answers `PING`, with `PONG` or by asking for a password.
fn answers(port: u16) -> bool {
    ping_reply(port).is_some_and(|r| &r == b"+PONG\r\n" || &r == b"-NOAUTH")
}

/// The first 7 bytes of the answer to an inline `PING`.
fn ping_reply(port: u16) -> Option<[u8; 7]> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(
        &([127, 0, 0, 1], port).into(),
        Duration::from_millis(200),
    )
    .ok()?;
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    s.write_all(b"PING\r\n").ok()?;
    let mut buf = [0u8; 7];
    s.read_exact(&mut buf).ok()?;
    Some(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_answers_restarts_and_stops() {
        let Some(mut server) = RedisServer::for_test("starts_answers_restarts_and_stops") else {
            return;
        };
        assert!(ping(server.port()));
        assert!(server.url().starts_with("redis://127.0.0.1:"));
        server.kill();
        assert!(!ping(server.port()), "killed server must not answer");
        server.restart().unwrap();
        assert!(ping(server.port()));
        let port = server.port();
        drop(server);
        assert!(!ping(port), "dropping stops the server");
    }

    #[test]
    fn a_missing_binary_is_a_clear_error() {
        let mut s = RedisServer {
            child: None,
            port: 1,
            binary: "/nonexistent/redis-server".into(),
            extra_args: vec![],
            also_bound: vec![],
            tls: None,
            dir: None,
        };
        let err = s.spawn().unwrap_err();
        assert!(matches!(err, ServerError::NotInstalled(_)), "{err}");
    }
}

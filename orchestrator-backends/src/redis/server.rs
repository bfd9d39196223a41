//! A throw-away `redis-server` on a free loopback port, for tests and benches.
//!
//! [`RedisServer::start`] spawns Debian's `redis-server` with persistence off, waits until
//! it answers `PING`, and kills it on drop. [`RedisServer::for_test`] applies the
//! skip-or-fail rule of [`crate::require`]. [`RedisServer::start_bound`] listens on more
//! addresses than loopback, e.g. a Docker network's gateway, where containers reach the
//! host.

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

    /// `redis://127.0.0.1:{port}/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
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
        cmd.args([
            "--port",
            &port,
            "--bind",
            &bind,
            "--save",
            "",
            "--appendonly",
            "no",
        ])
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
        // Poll with a plain TCP PING: no runtime needed, bounded to 10 s.
        for _ in 0..200 {
            if ping(self.port) {
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

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn ping(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect_timeout(
        &([127, 0, 0, 1], port).into(),
        Duration::from_millis(200),
    ) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 7];
    s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
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
        };
        let err = s.spawn().unwrap_err();
        assert!(matches!(err, ServerError::NotInstalled(_)), "{err}");
    }
}

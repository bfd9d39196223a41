//! What the tests that run the real `bannou-host` binary share: a child process whose
//! output goes to files and that is killed when the test ends, bounded waits on it, and a
//! free loopback port. Every wait is bounded by [`PATIENCE`], never an assertion of speed.

// Each test binary compiles this module and uses a part of it.
#![allow(dead_code)]

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

/// Upper bound of every wait (never an assertion about speed).
pub const PATIENCE: Duration = Duration::from_secs(60);

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A free loopback port (free when asked; the caller binds it soon after).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A child process, killed if the test ends before it exits.
pub struct Running {
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
    _dir: tempfile::TempDir,
}

impl Running {
    /// Starts the binary with `args` and only `env` in its environment, its output in
    /// files (no pipe can fill up and block it).
    pub fn spawn(args: &[&str], env: &[(&str, &str)]) -> Running {
        Self::start(Command::new(env!("CARGO_BIN_EXE_bannou-host")), args, env)
    }

    /// [`Running::spawn`] with `dir` as the working directory.
    pub fn spawn_in(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Running {
        let mut command = Command::new(env!("CARGO_BIN_EXE_bannou-host"));
        command.current_dir(dir);
        Self::start(command, args, env)
    }

    fn start(mut command: Command, args: &[&str], env: &[(&str, &str)]) -> Running {
        let dir = tempfile::tempdir().unwrap();
        let stdout = dir.path().join("stdout");
        let stderr = dir.path().join("stderr");
        let child = command
            .env_clear()
            .envs(env.iter().copied())
            .args(args)
            .stdin(Stdio::null())
            .stdout(File::create(&stdout).unwrap())
            .stderr(File::create(&stderr).unwrap())
            .spawn()
            .expect("bannou-host starts");
        Running {
            child,
            stdout,
            stderr,
            _dir: dir,
        }
    }

    /// The child's process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Kills the process (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits (up to [`PATIENCE`]) for the process to exit.
    pub async fn wait(&mut self) -> ExitStatus {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "bannou-host did not exit; stdout:\n{}\nstderr:\n{}",
                self.stdout(),
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits (up to [`PATIENCE`]) until stdout contains `text`, the process still running.
    pub async fn wait_for_stdout(&mut self, text: &str) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while !self.stdout().contains(text) {
            assert!(
                self.child.try_wait().unwrap().is_none(),
                "exited before printing {text:?}; stdout:\n{}\nstderr:\n{}",
                self.stdout(),
                self.stderr()
            );
            assert!(
                tokio::time::Instant::now() < deadline,
                "never printed {text:?}; stdout:\n{}\nstderr:\n{}",
                self.stdout(),
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Everything the process printed on stdout so far.
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    /// Everything the process printed on stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

/// Polls `/health` of `api` until it answers, `process` still running (up to [`PATIENCE`]).
pub async fn answering(
    api: &bannou_host::client::ApiClient,
    process: &mut Running,
) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Ok(health) = api.health().await {
            return health;
        }
        assert!(process.is_running(), "exited early:\n{}", process.stderr());
        assert!(
            tokio::time::Instant::now() < deadline,
            "never answered /health:\n{}",
            process.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

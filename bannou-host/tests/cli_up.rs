//! The real binary end to end: `bannou-host up presets/local-ten.yaml --exit` from the
//! repository root shows every node and wave as it turns healthy, the tables, the
//! teardown, and exits 0; `bannou-host serve` on a free port answers a client command
//! (`status --api ... --json`) and stops cleanly on SIGTERM. Real processes, real
//! sockets; every wait is bounded and nothing is asserted about speed.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use bannou_host::client::ApiClient;

/// Upper bound of every wait (never an assertion about speed).
const PATIENCE: Duration = Duration::from_secs(60);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A child process that is killed if the test ends before it exits.
struct Running {
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
    _dir: tempfile::TempDir,
}

impl Running {
    /// Starts the binary with `args` in the repository root, a clean environment and its
    /// output captured in files (no pipe can fill up and block it).
    fn spawn(args: &[&str]) -> Running {
        let dir = tempfile::tempdir().unwrap();
        let stdout = dir.path().join("stdout");
        let stderr = dir.path().join("stderr");
        let child = Command::new(env!("CARGO_BIN_EXE_bannou-host"))
            .env_clear()
            .env("RUST_LOG", "info")
            .current_dir(repo())
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

    /// Waits (up to [`PATIENCE`]) for the process to exit.
    async fn wait(&mut self) -> ExitStatus {
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

    fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_deploys_local_ten_shows_every_node_and_wave_and_tears_down() {
    let mut up = Running::spawn(&[
        "up",
        "presets/local-ten.yaml",
        "--listen",
        "127.0.0.1:0",
        "--exit",
    ]);
    let status = up.wait().await;
    let out = up.stdout();
    assert!(status.success(), "{status}\n{out}\n{}", up.stderr());

    assert!(out.contains("deploying `local-ten` in 2 wave(s)"), "{out}");
    for i in 1..=10 {
        let node = format!("local-{i:02}");
        let wave = if i <= 7 { 1 } else { 2 };
        assert!(
            out.lines().any(|l| l
                .trim_start()
                .starts_with(&format!("wave {wave}: {node} healthy"))),
            "progress line of {node}:\n{out}"
        );
    }
    for wave in ["wave 1 healthy", "wave 2 healthy"] {
        assert!(out.lines().any(|l| l.starts_with(wave)), "{wave}:\n{out}");
    }
    assert!(out.contains("Deployed preset `local-ten`"), "{out}");
    assert!(
        out.contains("Stopped 10 container(s)"),
        "teardown line:\n{out}"
    );
    println!("up local-ten --exit: exit 0, 10 node lines, both waves healthy, 10 stopped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_answers_a_client_command_and_stops_on_sigterm() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let api = format!("http://127.0.0.1:{port}");
    let mut serve = Running::spawn(&["serve", "--listen", &format!("127.0.0.1:{port}")]);

    let client = ApiClient::new(&api)
        .unwrap()
        .with_timeout(Duration::from_secs(5));
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if client.health().await.is_ok() {
            break;
        }
        assert!(
            serve.child.try_wait().unwrap().is_none(),
            "serve exited early:\n{}",
            serve.stderr()
        );
        assert!(
            tokio::time::Instant::now() < deadline,
            "serve never answered /health:\n{}",
            serve.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut status = Running::spawn(&["status", "--api", &api, "--json"]);
    let exit = status.wait().await;
    assert!(exit.success(), "{exit}\n{}", status.stderr());
    let json: serde_json::Value = serde_json::from_str(&status.stdout())
        .unwrap_or_else(|e| panic!("{e}: {}", status.stdout()));
    assert_eq!(json["deployed"], false, "{json}");

    let killed = Command::new("kill")
        .args(["-TERM", &serve.child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let exit = serve.wait().await;
    assert!(exit.success(), "{exit}\n{}", serve.stderr());
    assert!(serve.stderr().contains("stopping..."), "{}", serve.stderr());
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err(),
        "the port is released"
    );
    println!(
        "serve on {api}: /health answered, `status --json` says not deployed, SIGTERM -> exit 0"
    );
}

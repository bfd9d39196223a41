//! The real binary end to end: `bannou-host up presets/local-ten.yaml --exit` from the
//! repository root shows every node and wave as it turns healthy, the tables, the
//! teardown, and exits 0; `bannou-host serve` on a free port answers a client command
//! (`status --api ... --json`) and stops cleanly on SIGTERM. Real processes, real
//! sockets; every wait is bounded and nothing is asserted about speed.

use std::process::Command;
use std::time::Duration;

use bannou_host::client::ApiClient;

mod common;
use common::{PATIENCE, Running, repo};

/// The binary with `args`, run from the repository root with logs at `info`.
fn spawn(args: &[&str]) -> Running {
    Running::spawn_in(&repo(), args, &[("RUST_LOG", "info")])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_deploys_local_ten_shows_every_node_and_wave_and_tears_down() {
    let mut up = spawn(&[
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
    let mut serve = spawn(&["serve", "--listen", &format!("127.0.0.1:{port}")]);

    let client = ApiClient::new(&api)
        .unwrap()
        .with_timeout(Duration::from_secs(5));
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if client.health().await.is_ok() {
            break;
        }
        assert!(
            serve.is_running(),
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

    let mut status = spawn(&["status", "--api", &api, "--json"]);
    let exit = status.wait().await;
    assert!(exit.success(), "{exit}\n{}", status.stderr());
    let json: serde_json::Value = serde_json::from_str(&status.stdout())
        .unwrap_or_else(|e| panic!("{e}: {}", status.stdout()));
    assert_eq!(json["deployed"], false, "{json}");

    let killed = Command::new("kill")
        .args(["-TERM", &serve.id().to_string()])
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_up_and_k8s_manifests_read_one_set_of_variables_and_name_a_bad_one() {
    let bad = [("ORCHESTRATOR_WAVE_TIMEOUT_SECONDS", "ten")];
    for args in [
        &["serve", "--listen", "127.0.0.1:0"][..],
        &[
            "up",
            "presets/local-ten.yaml",
            "--listen",
            "127.0.0.1:0",
            "--exit",
        ],
        &["k8s", "manifests", "presets/local-ten.yaml"],
    ] {
        let mut run = Running::spawn_in(&repo(), args, &bad);
        let status = run.wait().await;
        let err = run.stderr();
        assert!(!status.success(), "{args:?} ran with a bad setting: {err}");
        assert!(
            err.contains("ORCHESTRATOR_WAVE_TIMEOUT_SECONDS=\"ten\""),
            "{args:?}: {err}"
        );
        assert!(run.stdout().is_empty(), "{args:?} printed before failing");
    }

    // The namespace, image and port `serve` would use are the manifests' too; flags win.
    let env = [
        ("ORCHESTRATOR_KUBERNETES_NAMESPACE", "games"),
        ("ORCHESTRATOR_DOCKER_IMAGE_NAME", "reg/bannou:3"),
        ("ORCHESTRATOR_DEFAULT_SERVICE_PORT", "8081"),
        ("ORCHESTRATOR_WAVE_TIMEOUT_SECONDS", "2m"),
    ];
    let manifests = |extra: &'static [&'static str]| {
        let mut args = vec!["k8s", "manifests", "presets/local-ten.yaml"];
        args.extend_from_slice(extra);
        Running::spawn_in(&repo(), &args, &env)
    };
    let mut run = manifests(&[]);
    assert!(run.wait().await.success(), "{}", run.stderr());
    let yaml = run.stdout();
    assert!(yaml.contains("namespace: games"), "{yaml}");
    assert!(yaml.contains("image: reg/bannou:3"), "{yaml}");
    assert!(yaml.contains("containerPort: 8081"), "{yaml}");
    let mut run = manifests(&["--namespace", "ops", "--image", "other:1"]);
    assert!(run.wait().await.success(), "{}", run.stderr());
    let yaml = run.stdout();
    assert!(
        yaml.contains("namespace: ops") && !yaml.contains("namespace: games"),
        "{yaml}"
    );
    assert!(yaml.contains("image: other:1"), "{yaml}");
}

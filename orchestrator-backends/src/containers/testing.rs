//! Helpers for tests against the local Docker engine (feature `testkit`): the node image
//! built once per test process, unique names, and cleanup of a test's objects.
//!
//! The image comes from, in order: `BANNOU_TEST_IMAGE` (an existing tag, used as is);
//! `BANNOU_STATIC_BINARY` (a static `bannou-host` to put in [`TEST_IMAGE_TAG`]); else
//! `scripts/build-image.sh --binary-only` is run (an incremental static release build,
//! minutes on a clean clone, a second when fresh; `.ci/run` runs it before the tests) and
//! its binary is built into [`TEST_IMAGE_TAG`] through the API.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use bollard::Docker;
use bollard::models::ContainerSummary;
use bollard::query_parameters::{ListContainersOptions, RemoveContainerOptions};
use futures::FutureExt;
use orchestrator_core::ports::backend::labels;
use tokio::sync::OnceCell;

use super::image::{ImageSpec, build_image};

/// Tag of the image tests build.
pub const TEST_IMAGE_TAG: &str = "bannou:test";

static IMAGE: OnceCell<Result<String, String>> = OnceCell::const_new();

/// The workspace root (the parent of this crate's directory).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The static binary: `BANNOU_STATIC_BINARY`, else built by `scripts/build-image.sh`.
pub async fn static_binary() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("BANNOU_STATIC_BINARY") {
        return Ok(PathBuf::from(p));
    }
    let root = workspace_root();
    let script = root.join("scripts/build-image.sh");
    eprintln!(
        "docker tests: building the static binary ({})",
        script.display()
    );
    let (script2, root2) = (script.clone(), root.clone());
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(&script2)
            .arg("--binary-only")
            .current_dir(&root2)
            .stderr(std::process::Stdio::inherit())
            .output()
    })
    .await
    .map_err(|e| format!("build task failed: {e}"))?
    .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    if !output.status.success() {
        return Err(format!("{} failed: {}", script.display(), output.status));
    }
    let printed = String::from_utf8_lossy(&output.stdout);
    let path = printed
        .lines()
        .last()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .ok_or("build-image.sh printed no binary path")?;
    Ok(root.join(path))
}

async fn build_once() -> Result<String, String> {
    if let Ok(tag) = std::env::var("BANNOU_TEST_IMAGE")
        && !tag.trim().is_empty()
    {
        return Ok(tag.trim().to_owned());
    }
    let binary = static_binary().await?;
    let docker = super::docker::connect_negotiated(None)
        .await
        .map_err(|e| e.to_string())?;
    let built = build_image(&docker, &ImageSpec::new(TEST_IMAGE_TAG, binary), |_| {})
        .await
        .map_err(|e| e.to_string())?;
    eprintln!(
        "docker tests: image {} is {} ({} bytes)",
        built.tag, built.id, built.size_bytes
    );
    Ok(built.tag)
}

/// The engine and the test image tag, or `None` after
/// [`crate::require::skip_or_fail`] when there is no engine. Panics when the image cannot
/// be built (that is a failure, not a reason to skip).
pub async fn docker_and_image(test: &str) -> Option<(Docker, String)> {
    let docker = crate::require::docker(test).await?;
    let tag = IMAGE.get_or_init(build_once).await;
    match tag {
        Ok(t) => Some((docker, t.clone())),
        Err(e) => panic!("{test}: cannot build the test image: {e}"),
    }
}

/// A name unique to this process and call: `{prefix}-{pid}-{n}` (lower case, DNS-safe).
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Removes our containers whose app-id starts with `app_prefix` and, when it carries our
/// label, the network `network`. Objects without our label are never touched.
pub async fn remove_test_objects(docker: &Docker, app_prefix: &str, network: Option<&str>) {
    for c in ours_with_prefix(docker, app_prefix).await {
        if let Some(id) = c.id {
            let _ = docker
                .remove_container(
                    &id,
                    Some(RemoveContainerOptions {
                        force: true,
                        v: true,
                        link: false,
                    }),
                )
                .await;
        }
    }
    if let Some(name) = network
        && let Ok(n) = docker.inspect_network(name, None).await
        && n.labels
            .as_ref()
            .and_then(|l| l.get(labels::MANAGED))
            .is_some_and(|v| v == labels::MANAGED_VALUE)
    {
        let _ = docker.remove_network(name).await;
    }
}

/// Runs `body`, then [`remove_test_objects`] whether it passed or panicked, then passes
/// the panic on.
pub async fn with_cleanup<F: Future<Output = ()>>(
    docker: &Docker,
    app_prefix: &str,
    network: Option<&str>,
    body: F,
) {
    let outcome = std::panic::AssertUnwindSafe(body).catch_unwind().await;
    remove_test_objects(docker, app_prefix, network).await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// A stand-in for Portainer in tests: it checks `X-API-Key`, answers `GET /api/status`
/// like Portainer, and forwards `/api/endpoints/1/docker/{path}` to the local Docker
/// engine's socket (`DOCKER_HOST` when it is `unix://…`, else `/var/run/docker.sock`). Any
/// other endpoint id is Portainer's 404. It counts the Docker calls it forwarded, so a test
/// can tell its traffic really went through the proxy. Stops when dropped.
pub struct PortainerProxy {
    url: String,
    forwarded: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

/// The version the proxy reports at `/api/status`.
pub const PROXY_VERSION: &str = "2.21.0-bannou-test-proxy";

#[derive(Clone)]
struct ProxyState {
    api_key: Option<String>,
    socket: PathBuf,
    forwarded: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl PortainerProxy {
    /// Starts the proxy on `127.0.0.1` (a free port) with `api_key` required when set.
    pub async fn start(api_key: Option<&str>) -> std::io::Result<Self> {
        use axum::routing::{any, get};
        let socket = match std::env::var("DOCKER_HOST") {
            Ok(h) if h.starts_with("unix://") => PathBuf::from(&h["unix://".len()..]),
            _ => PathBuf::from("/var/run/docker.sock"),
        };
        let forwarded = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let state = ProxyState {
            api_key: api_key.map(str::to_owned),
            socket,
            forwarded: forwarded.clone(),
        };
        let app = axum::Router::new()
            .route("/api/status", get(proxy_status))
            .route("/api/endpoints/{id}/docker/{*path}", any(proxy_forward))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(PortainerProxy {
            url,
            forwarded,
            task,
        })
    }

    /// `http://127.0.0.1:{port}`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Docker API calls forwarded so far.
    pub fn forwarded(&self) -> usize {
        self.forwarded.load(Ordering::Relaxed)
    }
}

impl Drop for PortainerProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn proxy_refusal(
    state: &ProxyState,
    headers: &axum::http::HeaderMap,
) -> Option<axum::response::Response> {
    use axum::response::IntoResponse;
    let expected = state.api_key.as_deref()?;
    let given = headers
        .get(super::portainer::API_KEY_HEADER)
        .and_then(|v| v.to_str().ok());
    (given != Some(expected)).then(|| {
        (
            axum::http::StatusCode::UNAUTHORIZED,
            axum::Json(serde_json::json!({
                "message": "Unauthorized",
                "details": "A valid authorisation token is missing"
            })),
        )
            .into_response()
    })
}

async fn proxy_status(
    axum::extract::State(state): axum::extract::State<ProxyState>,
    headers: axum::http::HeaderMap,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if let Some(refused) = proxy_refusal(&state, &headers) {
        return refused;
    }
    axum::Json(serde_json::json!({ "Version": PROXY_VERSION, "InstanceID": "test" }))
        .into_response()
}

async fn proxy_forward(
    axum::extract::State(state): axum::extract::State<ProxyState>,
    axum::extract::Path((id, path)): axum::extract::Path<(String, String)>,
    request: axum::extract::Request,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if let Some(refused) = proxy_refusal(&state, request.headers()) {
        return refused;
    }
    if id != "1" {
        return (
            axum::http::StatusCode::NOT_FOUND,
            axum::Json(serde_json::json!({
                "message": "Unable to find an environment with the specified identifier inside the database",
                "details": "Object not found inside the database"
            })),
        )
            .into_response();
    }
    let (mut parts, body) = request.into_parts();
    let query = parts
        .uri
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    parts.uri = match format!("/{path}{query}").parse() {
        Ok(u) => u,
        Err(e) => return (axum::http::StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    parts.headers.remove(super::portainer::API_KEY_HEADER);
    parts.headers.insert(
        axum::http::header::HOST,
        axum::http::HeaderValue::from_static("docker"),
    );
    let forwarded = async {
        let stream = tokio::net::UnixStream::connect(&state.socket).await?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(std::io::Error::other)?;
        tokio::spawn(connection);
        sender
            .send_request(axum::http::Request::from_parts(parts, body))
            .await
            .map_err(std::io::Error::other)
    };
    match forwarded.await {
        Ok(response) => {
            state.forwarded.fetch_add(1, Ordering::Relaxed);
            response.map(axum::body::Body::new)
        }
        Err(e) => (
            axum::http::StatusCode::BAD_GATEWAY,
            format!("proxy: Docker engine at {}: {e}", state.socket.display()),
        )
            .into_response(),
    }
}

/// Polls `check` every 200 ms, up to `attempts` times; panics with `what` when it never
/// holds. A bound on attempts, not a timing assertion.
pub async fn eventually<F, Fut>(what: &str, attempts: u32, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    for _ in 0..attempts {
        if check().await {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    panic!("{what}: not reached after {attempts} attempts");
}

/// Names (`/bannou-...`) of the containers carrying our label whose app-id starts with
/// `prefix`, sorted, asked of the engine directly.
pub async fn our_container_names(docker: &Docker, prefix: &str) -> Vec<String> {
    let mut names: Vec<String> = ours_with_prefix(docker, prefix)
        .await
        .into_iter()
        .filter_map(|c| c.names.and_then(|n| n.into_iter().next()))
        .collect();
    names.sort();
    names
}

/// The containers carrying our label whose app-id starts with `prefix` (none when the
/// engine cannot list).
async fn ours_with_prefix(docker: &Docker, prefix: &str) -> Vec<ContainerSummary> {
    let options = ListContainersOptions {
        all: true,
        filters: Some(std::collections::HashMap::from([(
            "label".to_owned(),
            vec![format!("{}={}", labels::MANAGED, labels::MANAGED_VALUE)],
        )])),
        ..Default::default()
    };
    docker
        .list_containers(Some(options))
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|c| {
            c.labels
                .as_ref()
                .and_then(|l| l.get(labels::APP_ID))
                .is_some_and(|a| a.starts_with(prefix))
        })
        .collect()
}

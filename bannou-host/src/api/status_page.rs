//! `GET /`: the status page, one HTML page with its stylesheet and script compiled into
//! the binary (`include_str!`; no CDN, no build step outside Cargo).
//!
//! The page and its two assets are static and served without the bearer token; every
//! piece of state the page shows comes from the protected JSON endpoints, which the
//! script calls with the token the operator typed (kept in `sessionStorage`, sent as
//! `Authorization: Bearer`, never in a URL). Correct after any reconnect by construction:
//! the script re-reads the whole state from those endpoints, using the event stream
//! (`GET /orchestrator/events`, read with `fetch`) only as a signal to re-read sooner and
//! as the list of recent events, and re-reads every 2 s regardless.

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

/// The page's path.
pub const PATH: &str = "/";
/// The stylesheet's path.
pub const CSS_PATH: &str = "/status/page.css";
/// The script's path.
pub const JS_PATH: &str = "/status/page.js";
/// Every path this module serves.
pub const PATHS: [&str; 3] = [PATH, CSS_PATH, JS_PATH];

const INDEX_HTML: &str = include_str!("status_page/index.html");
const PAGE_CSS: &str = include_str!("status_page/page.css");
const PAGE_JS: &str = include_str!("status_page/page.js");

/// Only our own origin, no inline script or style: the page loads nothing else.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

/// The page and its assets (no authentication), for any router state.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(
            PATH,
            get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            CSS_PATH,
            get(|| async { asset("text/css; charset=utf-8", PAGE_CSS) }),
        )
        .route(
            JS_PATH,
            get(|| async { asset("text/javascript; charset=utf-8", PAGE_JS) }),
        )
}

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        body,
    )
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    use super::*;

    async fn get_path(path: &str) -> (StatusCode, String, String) {
        let response = routes::<()>()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let content_type = response.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .to_owned();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (
            status,
            content_type,
            String::from_utf8(body.to_vec()).unwrap(),
        )
    }

    #[tokio::test]
    async fn the_page_and_its_assets_are_served_with_their_types() {
        let (status, content_type, html) = get_path(PATH).await;
        assert_eq!(status, StatusCode::OK);
        assert!(content_type.starts_with("text/html"), "{content_type}");
        assert!(html.contains(CSS_PATH) && html.contains(JS_PATH), "{html}");
        let (status, content_type, _) = get_path(CSS_PATH).await;
        assert_eq!(status, StatusCode::OK);
        assert!(content_type.starts_with("text/css"), "{content_type}");
        let (status, content_type, js) = get_path(JS_PATH).await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            content_type.starts_with("text/javascript"),
            "{content_type}"
        );
        assert!(js.contains("/orchestrator/events"));
    }

    #[test]
    fn the_page_loads_nothing_from_elsewhere() {
        for asset in [INDEX_HTML, PAGE_CSS, PAGE_JS] {
            assert!(!asset.contains("http://") && !asset.contains("https://"));
        }
        assert!(!INDEX_HTML.contains("<script>"), "no inline script (CSP)");
        assert!(!INDEX_HTML.contains("style="), "no inline style (CSP)");
    }
}

//! The web UI: static files embedded in the binary and served under `/ui`
//! by the admin server (each sidecar's own spans) and by the collector
//! (everything it stores). The pages read only the JSON API described in
//! the collector's contract (`/api/ui-config` says which server they talk
//! to); nothing here knows about spans.
//!
//! No build step: the files under `src/ui/` are what the browser runs
//! (plain ES modules, no library), so `cargo build` needs neither npm nor
//! node, and nothing is fetched from the internet at run time.
//!
//! A Content-Security-Policy lets the pages load and fetch only from this
//! server, so the rule "nothing from the internet" is the browser's to
//! keep, not only this code's.
//!
//! Every answer carries a strong `ETag` (a hash of the bytes) and
//! `Cache-Control: no-cache`: the file names carry no version, so a browser
//! must revalidate, and a `304` makes that cheap. A path under `/ui/` that
//! names no file and has no extension is a page of the app, answered with
//! `index.html` so that a reload keeps working; one with an extension is a
//! missing file (`404`), so a broken asset reference fails loudly.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::sync::LazyLock;

/// One embedded file.
pub struct Asset {
    /// Its path under `/ui/`.
    pub path: &'static str,
    pub content_type: &'static str,
    pub bytes: &'static [u8],
}

macro_rules! asset {
    ($path:literal, $content_type:expr) => {
        Asset { path: $path, content_type: $content_type, bytes: include_bytes!($path) }
    };
}

const HTML: &str = "text/html; charset=utf-8";
// Module scripts are refused by browsers under any other type.
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const SVG: &str = "image/svg+xml";

// The scripts set styles through the CSSOM (`element.style`), which a
// policy without 'unsafe-inline' allows.
const CSP: &str = "default-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'";

/// Every file of the UI.
pub const ASSETS: &[Asset] = &[
    asset!("index.html", HTML),
    asset!("app.css", CSS),
    asset!("favicon.svg", SVG),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("http.js", JS),
    asset!("sidecar.js", JS),
    asset!("util.js", JS),
    asset!("graph.js", JS),
    asset!("stats.js", JS),
    asset!("search.js", JS),
    asset!("waterfall.js", JS),
    asset!("critical.js", JS),
    asset!("compare.js", JS),
];

/// The ETag of each asset, computed once.
static ETAGS: LazyLock<Vec<HeaderValue>> = LazyLock::new(|| ASSETS.iter().map(|a| etag(a.bytes)).collect());

fn etag(bytes: &[u8]) -> HeaderValue {
    let tag = format!("\"{:08x}-{:x}\"", crc32fast::hash(bytes), bytes.len());
    HeaderValue::from_str(&tag).expect("hex digits are a valid header value")
}

/// `/ui` and everything under it; no state, no fallback of its own, so it
/// merges into the admin or collector router.
pub fn router() -> Router {
    Router::new()
        // index.html's <base href="/ui/"> makes its relative URLs right at
        // `/ui` as at `/ui/`.
        .route("/ui", get(|headers: HeaderMap| async move { serve(0, &headers) }))
        .route("/ui/", get(|headers: HeaderMap| async move { serve(0, &headers) }))
        .route("/ui/{*path}", get(file))
}

async fn file(Path(path): Path<String>, headers: HeaderMap) -> Response {
    if let Some(i) = ASSETS.iter().position(|a| a.path == path) {
        return serve(i, &headers);
    }
    let last = path.rsplit('/').next().unwrap_or_default();
    if last.contains('.') {
        let body = format!("the UI has no file {path}\n");
        return (StatusCode::NOT_FOUND, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response();
    }
    serve(0, &headers)
}

fn serve(i: usize, headers: &HeaderMap) -> Response {
    let asset = &ASSETS[i];
    let tag = &ETAGS[i];
    let cache = [(header::ETAG, tag.clone()), (header::CACHE_CONTROL, HeaderValue::from_static("no-cache"))];
    let fresh = headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim() == "*" || t.trim().trim_start_matches("W/") == tag);
    if fresh {
        return (StatusCode::NOT_MODIFIED, cache).into_response();
    }
    let headers = [
        (header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type)),
        (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        (header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP)),
    ];
    (headers, cache, asset.bytes).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    async fn get(path: &str, if_none_match: Option<&str>) -> Response {
        let mut req = Request::get(path);
        if let Some(tag) = if_none_match {
            req = req.header(header::IF_NONE_MATCH, tag);
        }
        router().oneshot(req.body(Body::empty()).unwrap()).await.unwrap()
    }

    async fn body(r: Response) -> Vec<u8> {
        use http_body_util::BodyExt;
        r.into_body().collect().await.unwrap().to_bytes().to_vec()
    }

    #[tokio::test]
    async fn every_asset_with_its_content_type_and_etag() {
        for asset in ASSETS {
            let r = get(&format!("/ui/{}", asset.path), None).await;
            assert_eq!(r.status(), StatusCode::OK, "{}", asset.path);
            let ext = asset.path.rsplit('.').next().unwrap();
            let want = match ext {
                "html" => "text/html; charset=utf-8",
                "js" => "text/javascript; charset=utf-8",
                "css" => "text/css; charset=utf-8",
                "svg" => "image/svg+xml",
                other => panic!("{}: no content type known for .{other}", asset.path),
            };
            assert_eq!(r.headers()[header::CONTENT_TYPE], want, "{}", asset.path);
            assert_eq!(r.headers()[header::CACHE_CONTROL], "no-cache");
            assert!(r.headers()[header::CONTENT_SECURITY_POLICY].to_str().unwrap().starts_with("default-src 'self'"));
            let tag = r.headers()[header::ETAG].to_str().unwrap().to_string();
            assert_eq!(body(r).await, asset.bytes, "{}", asset.path);

            let again = get(&format!("/ui/{}", asset.path), Some(&tag)).await;
            assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{}", asset.path);
            assert!(body(again).await.is_empty());
            let stale = get(&format!("/ui/{}", asset.path), Some("\"0-0\"")).await;
            assert_eq!(stale.status(), StatusCode::OK, "{}", asset.path);
        }
    }

    #[tokio::test]
    async fn index_at_the_root_and_for_pages_of_the_app() {
        for path in ["/ui", "/ui/", "/ui/traces", "/ui/traces/abc"] {
            let r = get(path, None).await;
            assert_eq!(r.status(), StatusCode::OK, "{path}");
            assert_eq!(r.headers()[header::CONTENT_TYPE], "text/html; charset=utf-8");
            assert_eq!(body(r).await, ASSETS[0].bytes, "{path}");
        }
        let r = get("/ui/missing.js", None).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
    }

    /// Each file the pages import or link is embedded, and each embedded
    /// file is used: a module added to `src/ui/` but not to `ASSETS` would
    /// fail only in a browser.
    #[test]
    fn references_and_assets_agree() {
        let all: String = ASSETS.iter().map(|a| String::from_utf8_lossy(a.bytes)).collect();
        for asset in &ASSETS[1..] {
            assert!(all.contains(&format!("./{}", asset.path)), "{} is embedded but never referenced", asset.path);
        }
        for (i, _) in all.match_indices("from \"./") {
            let name = &all[i + 8..];
            let name = &name[..name.find('"').unwrap()];
            assert!(ASSETS.iter().any(|a| a.path == name), "{name} is imported but not embedded");
        }
    }
}

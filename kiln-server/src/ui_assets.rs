//! The web UI, embedded at build time from `ui/dist` (see `build.rs`), served at `/` with
//! SPA fallback: unknown non-API paths get `index.html`. Files with a precompressed `.gz`
//! twin are sent gzip'd to clients that accept it.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use include_dir::{include_dir, Dir};

static UI: Dir<'static> = include_dir!("$OUT_DIR/ui");

/// Whether the embedded UI is the real one (false: the "UI not built" placeholder).
pub fn ui_built() -> bool {
    UI.get_file("index.html")
        .is_some_and(|f| !String::from_utf8_lossy(f.contents()).contains("UI not built"))
}

pub fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "ico" => "image/x-icon",
        "webp" => "image/webp",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "ttf" => "font/ttf",
        "wasm" => "application/wasm",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

fn is_api(path: &str) -> bool {
    [
        "api/",
        "pyroscope/",
        "push.v1.",
        "querier.v1.",
        "ingest",
        "metrics",
        "healthz",
    ]
    .iter()
    .any(|p| path.starts_with(p))
}

pub async fn serve(uri: Uri, headers: HeaderMap) -> Response {
    let path = uri.path().trim_start_matches('/');
    let path = if path.is_empty() { "index.html" } else { path };
    let (path, file) = match UI.get_file(path) {
        Some(f) => (path, f),
        None => {
            let last = path.rsplit('/').next().unwrap_or("");
            if is_api(path) || last.contains('.') {
                return (StatusCode::NOT_FOUND, "not found\n").into_response();
            }
            match UI.get_file("index.html") {
                Some(f) => ("index.html", f),
                None => return (StatusCode::NOT_FOUND, "not found\n").into_response(),
            }
        }
    };
    let accepts_gzip = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("gzip"));
    let cache = if path.starts_with("assets/") {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let mut resp = match UI.get_file(format!("{path}.gz")).filter(|_| accepts_gzip) {
        Some(gz) => {
            let mut r = gz.contents().into_response();
            r.headers_mut()
                .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            r
        }
        None => file.contents().into_response(),
    };
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(path)),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    resp
}

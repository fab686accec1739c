//! The web console (docs/http-api.md, Console): a page at `/` and its assets at `/console/...`,
//! plain HTML, CSS and JavaScript modules in `console/`, built into the binary. Nothing is
//! fetched from elsewhere at run time and there is no build step: the files served are the files
//! in the repository.
//!
//! The console signs in with a bearer token of the listener's `http_tokens` and then uses the
//! HTTP API as any program would; serving its files takes no credentials (they hold nothing
//! about the broker). Answers carry a Content-Security-Policy that allows scripts, styles and
//! requests only from the listener itself, and an `ETag` so a browser asks again on each visit
//! (`no-cache`) but downloads a file only when a new binary serves another one.

use axum::extract::Path;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG, IF_NONE_MATCH, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
    X_FRAME_OPTIONS,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::error::ApiError;

/// One file of the console.
struct Asset {
    /// Its name under `/console/`.
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

/// The console's files. `index.html` is also served at `/`.
const ASSETS: &[Asset] = &[
    Asset { name: "index.html", content_type: "text/html; charset=utf-8", body: include_bytes!("console/index.html") },
    Asset { name: "console.css", content_type: "text/css; charset=utf-8", body: include_bytes!("console/console.css") },
    Asset { name: "app.js", content_type: "text/javascript; charset=utf-8", body: include_bytes!("console/app.js") },
    Asset { name: "api.js", content_type: "text/javascript; charset=utf-8", body: include_bytes!("console/api.js") },
    Asset { name: "dom.js", content_type: "text/javascript; charset=utf-8", body: include_bytes!("console/dom.js") },
    Asset {
        name: "chart.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("console/chart.js"),
    },
    Asset {
        name: "pages.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("console/pages.js"),
    },
    Asset { name: "icon.svg", content_type: "image/svg+xml", body: include_bytes!("console/icon.svg") },
];

/// Scripts, styles, images and requests from the listener itself only; no inline scripts, no
/// plugins, not framed by other sites.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                      connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// `GET /`: the console's page.
pub(super) async fn index(headers: HeaderMap) -> Response {
    serve(&ASSETS[0], &headers)
}

/// `GET /console/{file}`: one of its files.
pub(super) async fn asset(Path(name): Path<String>, headers: HeaderMap) -> Response {
    match ASSETS.iter().find(|asset| asset.name == name) {
        Some(asset) => serve(asset, &headers),
        None => ApiError::not_found(format!("no such console file: {name}")).into_response(),
    }
}

/// `asset`, or `304 Not Modified` when the browser holds it already (`If-None-Match`).
fn serve(asset: &Asset, headers: &HeaderMap) -> Response {
    let etag = etag(asset.body);
    let fresh = headers
        .get(IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|tag| tag.trim() == etag || tag.trim() == "*"));
    let mut response = if fresh { StatusCode::NOT_MODIFIED.into_response() } else { asset.body.into_response() };
    let headers = response.headers_mut();
    if !fresh {
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    }
    // `etag` is quoted hex digits: always a valid header value.
    headers.insert(ETAG, HeaderValue::from_str(&etag).expect("hex digits in quotes"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(POLICY));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

/// A strong entity tag for `body`: its 64-bit FNV-1a hash (a change detector, not a secret).
fn etag(body: &[u8]) -> String {
    let hash = body
        .iter()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3));
    format!("\"{hash:016x}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file the page and the scripts load is one the listener serves, and none is
    /// fetched from another site.
    #[test]
    fn the_console_loads_only_its_own_files() {
        for asset in ASSETS {
            let text = std::str::from_utf8(asset.body).expect("text files");
            // The SVG namespace is a name, not an address: nothing is fetched from it.
            let text = text.replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
            assert!(!text.contains("http://") && !text.contains("https://"), "{} names a URL", asset.name);
            for reference in text.split(['"', '\'']).filter(|part| part.starts_with("/console/")) {
                let name = &reference["/console/".len()..];
                assert!(ASSETS.iter().any(|known| known.name == name), "{} loads {reference}", asset.name);
            }
            for reference in text.split(['"', '\'']).filter(|part| part.starts_with("./") && part.ends_with(".js")) {
                let name = &reference["./".len()..];
                assert!(ASSETS.iter().any(|known| known.name == name), "{} imports {reference}", asset.name);
            }
        }
    }

    #[tokio::test]
    async fn a_file_the_browser_holds_is_not_sent_again() {
        let first = serve(&ASSETS[1], &HeaderMap::new());
        assert_eq!(first.status(), StatusCode::OK);
        assert_eq!(first.headers()[CONTENT_TYPE], "text/css; charset=utf-8");
        let tag = first.headers()[ETAG].clone();
        let mut again = HeaderMap::new();
        again.insert(IF_NONE_MATCH, tag);
        assert_eq!(serve(&ASSETS[1], &again).status(), StatusCode::NOT_MODIFIED);
        let missing = asset(Path("secret.txt".to_owned()), HeaderMap::new()).await;
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    }
}

//! The web dashboard on the `--http-listen` port: `/` (overview), `/tasks`, `/tasks/{id}`
//! and `/workers`, with its scripts and style sheet under `/assets/`. Everything is
//! embedded in the binary at build time (`master/assets/`), hand-written, no third-party
//! code.
//!
//! The server side is only this file: each page is the same static HTML shell, and the
//! script draws the page from the JSON API (`api`, `/api/v1`) with the token the user
//! logged in with, sent as `authorization: Bearer` (live logs too: the script reads the
//! Server-Sent Events with `fetch`, which can send the header, not with `EventSource`).
//! So the pages carry no data and need no auth of their own, the API's checks and roles
//! are the only ones, and there is no cookie to guard against cross-site requests. The
//! script asks `/api/v1/whoami` what the token may do only to hide the buttons that would
//! be refused.
//!
//! The script is split by page (`core.js` shared, then one file per page, `app.js`
//! last, which starts the page for the address); the shell loads them in that order.
//! The shell names the assets with a hash of their content (`/assets/core.js?v=HASH`):
//! an asset fetched under its current hash may be cached for good, anything else is
//! revalidated with its `etag`. A content security policy allows only the master's own
//! scripts, styles and API, so a value that slipped into the page could not run.

use std::sync::LazyLock;

use axum::extract::{Path, RawQuery};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

/// The page shell, with `{{scripts}}` and `{{css_version}}` where the assets go.
const SHELL: &str = include_str!("../../assets/index.html");

const JS_TYPE: &str = "text/javascript; charset=utf-8";

/// The scripts, in the order the shell loads them (each page file adds to `core.js`'s
/// `CA`; `app.js` starts the page).
static SCRIPTS: [Asset; 6] = [
    Asset::new("core.js", include_str!("../../assets/core.js"), JS_TYPE),
    Asset::new(
        "overview.js",
        include_str!("../../assets/overview.js"),
        JS_TYPE,
    ),
    Asset::new("tasks.js", include_str!("../../assets/tasks.js"), JS_TYPE),
    Asset::new("task.js", include_str!("../../assets/task.js"), JS_TYPE),
    Asset::new(
        "workers.js",
        include_str!("../../assets/workers.js"),
        JS_TYPE,
    ),
    Asset::new("app.js", include_str!("../../assets/app.js"), JS_TYPE),
];
static CSS: Asset = Asset::new(
    "app.css",
    include_str!("../../assets/app.css"),
    "text/css; charset=utf-8",
);

/// Only the master's own script, styles and API; no frames, no plugins.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; \
    frame-ancestors 'none'";

static PAGE: LazyLock<String> = LazyLock::new(|| {
    let scripts: Vec<String> = SCRIPTS
        .iter()
        .map(|a| {
            format!(
                "<script src=\"/assets/{}?v={}\" defer></script>",
                a.name,
                a.version()
            )
        })
        .collect();
    SHELL
        .replace("{{scripts}}", &scripts.join("\n"))
        .replace("{{css_version}}", &CSS.version())
});

/// The dashboard's routes, stateless: every page is the same shell.
pub fn routes() -> Router {
    Router::new()
        .route("/", get(page))
        .route("/tasks", get(page))
        .route("/tasks/:id", get(page))
        .route("/workers", get(page))
        .route("/assets/:name", get(asset))
}

/// An embedded file and the hash that names its version.
struct Asset {
    name: &'static str,
    body: &'static str,
    content_type: &'static str,
    hash: u64,
}

impl Asset {
    const fn new(name: &'static str, body: &'static str, content_type: &'static str) -> Asset {
        Asset {
            name,
            body,
            content_type,
            hash: fnv1a(body.as_bytes()),
        }
    }

    fn version(&self) -> String {
        format!("{:016x}", self.hash)
    }

    fn etag(&self) -> String {
        format!("\"{}\"", self.version())
    }
}

/// FNV-1a, 64 bits: a version tag computed at compile time, not a security measure.
const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        h ^= bytes[i] as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    h
}

const NOSNIFF: (HeaderName, HeaderValue) = (
    header::X_CONTENT_TYPE_OPTIONS,
    HeaderValue::from_static("nosniff"),
);

async fn page() -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            // The shell is small and names the current assets: always ask again.
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CSP),
            ),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
            NOSNIFF,
        ],
        PAGE.as_str(),
    )
        .into_response()
}

/// The embedded asset called `name`, if there is one.
fn find(name: &str) -> Option<&'static Asset> {
    SCRIPTS
        .iter()
        .chain(std::iter::once(&CSS))
        .find(|a| a.name == name)
}

async fn asset(Path(name): Path<String>, RawQuery(q): RawQuery, headers: HeaderMap) -> Response {
    match find(&name) {
        Some(a) => serve(a, q.as_deref(), &headers),
        None => (StatusCode::NOT_FOUND, [NOSNIFF]).into_response(),
    }
}

/// The asset, or 304 when the browser holds this version already.
fn serve(asset: &Asset, query: Option<&str>, headers: &HeaderMap) -> Response {
    let version = asset.version();
    let current = query
        .unwrap_or("")
        .split('&')
        .any(|kv| kv.strip_prefix("v=") == Some(version.as_str()));
    let cache = if current {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let etag = asset.etag();
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let head = [
        (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
        (
            header::ETAG,
            HeaderValue::from_str(&etag).expect("hex in quotes"),
        ),
        NOSNIFF,
    ];
    if fresh {
        return (StatusCode::NOT_MODIFIED, head).into_response();
    }
    (
        head,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        )],
        asset.body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header_of(r: &Response, name: HeaderName) -> &str {
        r.headers()
            .get(name)
            .map(|v| v.to_str().unwrap())
            .unwrap_or("")
    }

    fn js() -> &'static Asset {
        find("core.js").unwrap()
    }

    #[test]
    fn the_shell_names_each_asset_by_its_current_hash_in_order() {
        assert!(!PAGE.contains("{{"), "a placeholder was left: {}", *PAGE);
        let mut at = 0;
        for a in &SCRIPTS {
            let tag = format!(
                "<script src=\"/assets/{}?v={}\" defer>",
                a.name,
                a.version()
            );
            let i = PAGE
                .find(&tag)
                .unwrap_or_else(|| panic!("no {tag} in {}", *PAGE));
            assert!(i > at, "{} is out of order", a.name);
            at = i;
        }
        assert!(PAGE.contains(&format!("/assets/app.css?v={}", CSS.version())));
        assert_eq!(
            SCRIPTS.last().unwrap().name,
            "app.js",
            "the page starts last"
        );
        assert_ne!(js().hash, CSS.hash);
        assert!(find("other.js").is_none());
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[tokio::test]
    async fn pages_are_html_that_is_always_revalidated_and_locked_down() {
        let r = page().await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            header_of(&r, header::CONTENT_TYPE),
            "text/html; charset=utf-8"
        );
        assert_eq!(header_of(&r, header::CACHE_CONTROL), "no-cache");
        assert!(header_of(&r, header::CONTENT_SECURITY_POLICY).contains("script-src 'self'"));
    }

    #[test]
    fn assets_are_cached_for_good_only_under_their_current_hash() {
        let none = HeaderMap::new();
        let v = format!("v={}", js().version());
        let r = serve(js(), Some(&v), &none);
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            header_of(&r, header::CONTENT_TYPE),
            "text/javascript; charset=utf-8"
        );
        assert!(header_of(&r, header::CACHE_CONTROL).contains("immutable"));
        for q in [None, Some("v=0"), Some("x=1")] {
            let r = serve(js(), q, &none);
            assert_eq!(header_of(&r, header::CACHE_CONTROL), "no-cache", "{q:?}");
        }
        let r = serve(&CSS, None, &none);
        assert_eq!(
            header_of(&r, header::CONTENT_TYPE),
            "text/css; charset=utf-8"
        );
    }

    #[test]
    fn a_known_etag_answers_not_modified() {
        let mut h = HeaderMap::new();
        h.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_str(&format!("\"old\", {}", CSS.etag())).unwrap(),
        );
        assert_eq!(serve(&CSS, None, &h).status(), StatusCode::NOT_MODIFIED);
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"old\""));
        assert_eq!(serve(&CSS, None, &h).status(), StatusCode::OK);
    }
}

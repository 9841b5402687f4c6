//! The live plant dashboard at `/`: a static page, its script and its style sheet, all
//! embedded in the binary (ADR 0011).
//!
//! Nothing here needs a token: the page only holds code. It signs in with a bearer token
//! that it keeps in `sessionStorage` and sends on every `/api/v1` call, which enforce
//! the roles as usual; it follows `/api/v1/live` (SSE read with `fetch()`) to update
//! without polling.
//!
//! # Layout
//! - `assets/index.html`: the page; its asset URLs carry a `?v=` content hash that is
//!   filled in when the page is first served.
//! - `assets/app.js`: the whole front end (vanilla JavaScript, SVG charts).
//! - `assets/andon.js`: the andon banner (open alerts, acknowledge), an ES module mounted
//!   into `<div id="andon">`, live on `/api/v1/live` (ADR 0048); the floor app loads it
//!   too.
//! - `assets/losses.js`: the Losses view (the ISO 22400-2 catalogue and changeovers; ADR
//!   0058), an ES module like the andon, drawn when `#losses` is shown.
//! - `assets/spc.js`: the SPC view (control charts, limits, capability, signals; ADR
//!   0056), an ES module like the andon, drawn when `#spc` is shown.
//! - `assets/app.css`: its style sheet; `assets/favicon.svg`: the icon.
//!
//! # The floor app at `/floor` (ADR 0038)
//! - `assets/floor.html`: the page; `assets/floor.js` (views), `assets/outbox.js` (the
//!   offline command queue in IndexedDB), `assets/floor.css`.
//! - `assets/floor-sw.js`: the service worker, served with `Service-Worker-Allowed: /floor`
//!   so that it may control `/floor` although it lives under `/assets/`;
//!   `assets/floor.webmanifest`: the PWA manifest (scope and start URL `/floor`).
//!
//! # Caching
//! Every answer has a strong `ETag` (a hash of its bytes) and honours `If-None-Match`.
//! The page is `no-cache` (revalidated each time, so a new binary is seen at once); an
//! asset asked for with the current `?v=` hash is `immutable` for a year, else
//! `no-cache`. A Content-Security-Policy keeps the page to its own origin: it can load
//! nothing from another host even by mistake.

use std::sync::LazyLock;

use axum::extract::{Path, Query};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/assets/{file}", get(asset))
        .route("/floor", get(floor))
}

/// Only this origin, for everything; inline styles set through the CSSOM are allowed
/// by CSP, inline `<script>` and `style=""` attributes are not.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none'; \
    base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

const INDEX_HTML: &str = include_str!("../assets/index.html");
const FLOOR_HTML: &str = include_str!("../assets/floor.html");

/// The scope the floor app's service worker may control.
const FLOOR_SCOPE: &str = "/floor";

/// An embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const ASSETS: &[Asset] = &[
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../assets/app.js"),
    },
    Asset {
        name: "app.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../assets/app.css"),
    },
    Asset {
        name: "floor.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../assets/floor.js"),
    },
    Asset {
        name: "outbox.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../assets/outbox.js"),
    },
    Asset {
        name: "settings.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../assets/settings.js"),
    },
    Asset {
        name: "quality.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../assets/quality.js"),
    },
    Asset {
        name: "floor.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../assets/floor.css"),
    },
    Asset {
        name: "floor-sw.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../assets/floor-sw.js"),
    },
    Asset {
        name: "floor.webmanifest",
        content_type: "application/manifest+json",
        body: include_bytes!("../assets/floor.webmanifest"),
    },
    Asset {
        name: "andon.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../assets/andon.js"),
    },
    Asset {
        name: "losses.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../assets/losses.js"),
    },
    Asset {
        name: "spc.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../assets/spc.js"),
    },
    Asset {
        name: "favicon.svg",
        content_type: "image/svg+xml",
        body: include_bytes!("../assets/favicon.svg"),
    },
];

/// The first 16 hex digits of the SHA-256 of `bytes`.
fn content_hash(bytes: &[u8]) -> String {
    hex::encode(&Sha256::digest(bytes)[..8])
}

/// The hashes of the assets, in the order of [`ASSETS`].
static ASSET_HASHES: LazyLock<Vec<String>> =
    LazyLock::new(|| ASSETS.iter().map(|a| content_hash(a.body)).collect());

/// `template` with each `{{name}}` placeholder replaced by that asset's hash, and its
/// own hash (the ETag).
fn fill(template: &str) -> (String, String) {
    let mut html = template.to_string();
    for (asset, hash) in ASSETS.iter().zip(ASSET_HASHES.iter()) {
        html = html.replace(&format!("{{{{{}}}}}", asset.name), hash);
    }
    let etag = content_hash(html.as_bytes());
    (html, etag)
}

/// The dashboard page.
static PAGE: LazyLock<(String, String)> = LazyLock::new(|| fill(INDEX_HTML));

/// The floor app's page.
static FLOOR_PAGE: LazyLock<(String, String)> = LazyLock::new(|| fill(FLOOR_HTML));

/// Whether the request's `If-None-Match` names `etag`.
fn not_modified(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .map(|t| t.trim().trim_start_matches("W/"))
                .any(|t| t == "*" || t.trim_matches('"') == etag)
        })
}

/// A 200 (or 304) with the content type, cache policy, ETag and security headers.
fn respond(
    headers: &HeaderMap,
    content_type: &'static str,
    cache: &'static str,
    etag: &str,
    body: impl IntoResponse,
) -> Response {
    let etag_value = HeaderValue::from_str(&format!("\"{etag}\""))
        .unwrap_or_else(|_| HeaderValue::from_static("\"0\""));
    let common = [
        (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
        (header::ETAG, etag_value),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
    ];
    if not_modified(headers, etag) {
        return (StatusCode::NOT_MODIFIED, common).into_response();
    }
    (
        common,
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        body,
    )
        .into_response()
}

/// `GET /`: the dashboard page (no token needed).
#[utoipa::path(get, path = "/", tag = "dashboard",
    params(("If-None-Match" = Option<String>, Header, description = "an ETag of an earlier answer")),
    responses((status = 200, description = "the dashboard page", content_type = "text/html", body = String),
        (status = 304, description = "not modified (If-None-Match)")))]
pub async fn index(headers: HeaderMap) -> Response {
    let (html, etag) = &*PAGE;
    respond(
        &headers,
        "text/html; charset=utf-8",
        "no-cache",
        etag,
        html.clone(),
    )
}

/// `GET /floor`: the floor app (no token needed; it signs in like the dashboard).
#[utoipa::path(get, path = "/floor", tag = "dashboard",
    params(("If-None-Match" = Option<String>, Header, description = "an ETag of an earlier answer")),
    responses((status = 200, description = "the floor app's page", content_type = "text/html", body = String),
        (status = 304, description = "not modified (If-None-Match)")))]
pub async fn floor(headers: HeaderMap) -> Response {
    let (html, etag) = &*FLOOR_PAGE;
    respond(
        &headers,
        "text/html; charset=utf-8",
        "no-cache",
        etag,
        html.clone(),
    )
}

/// `?v=`: the content hash the page asked for.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AssetQuery {
    /// The asset's content hash, as the page names it (the answer is then immutable).
    v: Option<String>,
}

/// `GET /assets/{file}`: an embedded asset; 404 for any other name.
#[utoipa::path(get, path = "/assets/{file}", tag = "dashboard",
    params(("file" = String, Path, description = "app.js, app.css, favicon.svg or a file of the floor app"), AssetQuery,
        ("If-None-Match" = Option<String>, Header, description = "an ETag of an earlier answer")),
    responses((status = 200, description = "the asset", content(
            (String = "text/javascript"), (String = "text/css"), (String = "image/svg+xml"),
            (String = "application/manifest+json"))),
        (status = 304, description = "not modified (If-None-Match)")))]
pub async fn asset(
    Path(file): Path<String>,
    Query(q): Query<AssetQuery>,
    headers: HeaderMap,
) -> Response {
    let Some((asset, hash)) = ASSETS
        .iter()
        .zip(ASSET_HASHES.iter())
        .find(|(a, _)| a.name == file)
    else {
        return ApiError::not_found(format!("no asset {file}")).into_response();
    };
    let cache = if q.v.as_deref() == Some(hash.as_str()) {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let mut answer = respond(&headers, asset.content_type, cache, hash, asset.body);
    if asset.name == "floor-sw.js" {
        answer.headers_mut().insert(
            "service-worker-allowed",
            HeaderValue::from_static(FLOOR_SCOPE),
        );
    }
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_names_every_asset_by_its_hash() {
        let (html, _) = &*PAGE;
        assert!(!html.contains("{{"), "a placeholder is left: {html}");
        let dashboard = ["app.js", "app.css", "favicon.svg", "losses.js", "spc.js"];
        for (asset, hash) in ASSETS
            .iter()
            .zip(ASSET_HASHES.iter())
            .filter(|(a, _)| dashboard.contains(&a.name))
        {
            assert!(
                html.contains(&format!("/assets/{}?v={hash}", asset.name)),
                "{} is not referenced with its hash",
                asset.name
            );
        }
    }

    #[test]
    fn the_floor_page_names_its_assets_by_their_hashes() {
        let (html, _) = &*FLOOR_PAGE;
        assert!(!html.contains("{{"), "a placeholder is left: {html}");
        for name in ["floor.js", "floor.css", "floor.webmanifest", "outbox.js"] {
            let (_, hash) = ASSETS
                .iter()
                .zip(ASSET_HASHES.iter())
                .find(|(a, _)| a.name == name)
                .unwrap();
            assert!(html.contains(&format!("/assets/{name}?v={hash}")), "{name}");
        }
    }

    #[test]
    fn the_page_loads_nothing_from_another_host() {
        let (html, _) = &*PAGE;
        let (floor, _) = &*FLOOR_PAGE;
        let mut texts = vec![html.as_str(), floor.as_str()];
        texts.extend(
            ASSETS
                .iter()
                .filter(|a| a.name != "favicon.svg")
                .map(|a| std::str::from_utf8(a.body).unwrap()),
        );
        for text in texts {
            for needle in ["http://", "https://", "//cdn", "@import", "url(http"] {
                // The SVG namespace is an identifier, never fetched.
                let cleaned = text.replace("http://www.w3.org/2000/svg", "");
                assert!(!cleaned.contains(needle), "found {needle:?}");
            }
        }
    }

    #[test]
    fn if_none_match_is_understood() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_static("W/\"abc\", \"def\""),
        );
        assert!(not_modified(&headers, "def"));
        assert!(not_modified(&headers, "abc"));
        assert!(!not_modified(&headers, "xyz"));
        assert!(!not_modified(&HeaderMap::new(), "def"));
    }
}

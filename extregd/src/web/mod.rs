//! The web catalogue: server-rendered HTML pages over the same
//! [`Catalogue`](crate::catalogue::Catalogue) calls (and so the same caches) as
//! `/api/v1`, plus two small embedded assets. Pages work without
//! JavaScript; `app.js` adds search as you type (through
//! `/api/v1/extensions/search`) and copy buttons.
//!
//! **Safety.** Every piece of backend text goes through `maud`, which
//! escapes it; links to a repository are emitted only for `http(s)` URLs.
//! Every answer carries a strict Content-Security-Policy (`script-src
//! 'self'`, no inline script or style), `X-Content-Type-Options: nosniff`,
//! `Referrer-Policy: no-referrer` and `X-Frame-Options: DENY`.
//!
//! **Cost.** A page view asks the registry for the merged catalogue and an
//! extension's versions, which are cached; backend health is kept for the
//! metadata cache's TTL. A view of a cached catalogue asks no backend.

mod pages;

use crate::api::SharedState;
use crate::error::Error;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use extreg_shared::HealthResponse;
use parking_lot::Mutex;
use serde::Deserialize;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The catalogue's own routes (besides `/api/v1`).
pub const ROUTES: [&str; 5] = [
    "/",
    "/ext/{type}/{name}",
    "/assets/app.js",
    "/assets/style.css",
    "/assets/icon.svg",
];

/// The Content-Security-Policy of every page and asset.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
img-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; \
frame-ancestors 'none'";

const APP_JS: &str = include_str!("assets/app.js");
const STYLE_CSS: &str = include_str!("assets/style.css");
const ICON_SVG: &str = include_str!("assets/icon.svg");

pub struct Web {
    pub(crate) state: SharedState,
    health: Mutex<Option<(Instant, Arc<HealthResponse>)>>,
    health_ttl: Duration,
    refresh: tokio::sync::Mutex<()>,
}

pub type WebState = Arc<Web>;

/// The catalogue router, to merge next to the API's. `health_ttl` is how
/// long a backend health report is shown before it is asked again.
pub fn router(state: SharedState, health_ttl: Duration) -> Router {
    let web = Arc::new(Web {
        state,
        health: Mutex::new(None),
        health_ttl,
        refresh: tokio::sync::Mutex::new(()),
    });
    Router::new()
        .route(ROUTES[0], get(index))
        .route(ROUTES[1], get(extension))
        .route(ROUTES[2], get(app_js))
        .route(ROUTES[3], get(style_css))
        .route(ROUTES[4], get(icon_svg))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(web)
}

async fn security_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    r
}

impl Web {
    /// The last health report, asked again once it is older than the TTL
    /// (one refresh at a time; others show the previous report meanwhile).
    async fn health(&self) -> Arc<HealthResponse> {
        if let Some((at, h)) = self.health.lock().as_ref() {
            if at.elapsed() < self.health_ttl {
                return h.clone();
            }
        }
        let _guard = self.refresh.lock().await;
        if let Some((at, h)) = self.health.lock().as_ref() {
            if at.elapsed() < self.health_ttl {
                return h.clone();
            }
        }
        let h = Arc::new(self.state.health().await);
        *self.health.lock() = Some((Instant::now(), h.clone()));
        h
    }
}

/// `/?q=&type=&source=&page=` — everything as text, each checked here so a
/// bad value is a readable page, not a rejection.
#[derive(Debug, Default, Deserialize)]
pub struct IndexQuery {
    pub q: Option<String>,
    #[serde(rename = "type")]
    pub ext_type: Option<String>,
    pub source: Option<String>,
    pub page: Option<String>,
}

/// Extensions per page.
pub const PAGE_SIZE: usize = 50;

fn html(status: StatusCode, body: maud::Markup) -> Response {
    let mut r = (status, body.into_string()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

async fn index(
    State(web): State<WebState>,
    query: Result<Query<IndexQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let health = web.health().await;
    let Ok(Query(q)) = query else {
        let e = Error::invalid_request("the query string is malformed");
        return html(StatusCode::BAD_REQUEST, pages::error(&e, &health));
    };
    match pages::index(&web, &q, &health).await {
        Ok(m) => html(StatusCode::OK, m),
        Err(e) => html(status_of(&e), pages::error(&e, &health)),
    }
}

async fn extension(
    State(web): State<WebState>,
    Path((ty, name)): Path<(String, String)>,
) -> Response {
    let health = web.health().await;
    match pages::extension(&web, &ty, &name, &health).await {
        Ok(m) => html(StatusCode::OK, m),
        Err(e) => html(status_of(&e), pages::error(&e, &health)),
    }
}

fn status_of(e: &Error) -> StatusCode {
    StatusCode::from_u16(e.kind.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// A strong ETag of an embedded asset (its sha256), for revalidation.
fn asset(body: &'static str, content_type: &'static str, headers: &HeaderMap) -> Response {
    use sha2::Digest;
    let tag = format!("\"{}\"", hex::encode(&sha2::Sha256::digest(body)[..12]));
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag));
    let mut r = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (StatusCode::OK, body).into_response()
    };
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    if let Ok(v) = HeaderValue::from_str(&tag) {
        h.insert(header::ETAG, v);
    }
    r
}

async fn app_js(headers: HeaderMap) -> Response {
    asset(APP_JS, "text/javascript; charset=utf-8", &headers)
}

async fn style_css(headers: HeaderMap) -> Response {
    asset(STYLE_CSS, "text/css; charset=utf-8", &headers)
}

async fn icon_svg(headers: HeaderMap) -> Response {
    asset(ICON_SVG, "image/svg+xml", &headers)
}

#[cfg(test)]
mod tests {
    #[test]
    fn assets_are_small() {
        // "Fast": no framework, a few KiB in all.
        assert!(super::APP_JS.len() + super::STYLE_CSS.len() + super::ICON_SVG.len() < 16 * 1024);
    }

    #[test]
    fn csp_forbids_inline_script() {
        assert!(super::CSP.contains("script-src 'self'"));
        assert!(!super::CSP.contains("unsafe-inline"));
        assert!(!super::CSP.contains("unsafe-eval"));
    }
}

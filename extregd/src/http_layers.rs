//! HTTP layers around the router, from `[server]` (seed 001): CORS for the
//! read-only API and response compression, both from `tower-http`.
//!
//! - **CORS** (`enable_cors`): `GET`, `HEAD` and preflight `OPTIONS` from
//!   `cors_allowed_origins` (any origin when empty or `"*"`); no
//!   credentials (the API has none); `ETag`, `Content-Length`,
//!   `Content-Disposition`, `Content-Range`, `Accept-Ranges` exposed so a
//!   browser can read download metadata; preflights cached for an hour.
//! - **Compression** (`enable_compression`): gzip, br or zstd as the
//!   client's `Accept-Encoding` prefers, on `application/json` answers only
//!   (never on artifact bytes, which are already gzip and carry
//!   `ETag`/`Range` semantics tied to their exact bytes), and not on bodies
//!   under 32 bytes. `Vary: Accept-Encoding` is set.

use crate::config::ServerConfig;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Version};
use axum::Router;
use std::time::Duration;
use tower_http::compression::predicate::{DefaultPredicate, Predicate};
use tower_http::compression::CompressionLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};

/// Wraps `router` in the layers `[server]` switches on.
pub fn apply(router: Router, server: &ServerConfig) -> Router {
    let mut router = router;
    if server.enable_compression {
        router = router.layer(compression());
    }
    if server.enable_cors {
        router = router.layer(cors(&server.cors_allowed_origins));
    }
    router
}

fn is_json(_: StatusCode, _: Version, headers: &HeaderMap, _: &axum::http::Extensions) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"))
}

pub fn compression() -> CompressionLayer<impl Predicate> {
    CompressionLayer::new()
        .gzip(true)
        .br(true)
        .zstd(true)
        .no_deflate()
        .compress_when(DefaultPredicate::new().and(is_json))
}

pub fn cors(origins: &[String]) -> CorsLayer {
    let allow = if origins.is_empty() || origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        // Checked at config validation (deploy::check_cors_origins).
        AllowOrigin::list(
            origins
                .iter()
                .filter_map(|o| HeaderValue::from_str(o).ok())
                .collect::<Vec<_>>(),
        )
    };
    CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([Method::GET, Method::HEAD, Method::OPTIONS])
        .allow_headers([
            header::ACCEPT,
            header::ACCEPT_ENCODING,
            header::RANGE,
            header::IF_NONE_MATCH,
            header::IF_RANGE,
            header::CONTENT_TYPE,
        ])
        .expose_headers([
            header::ETAG,
            header::CONTENT_LENGTH,
            header::CONTENT_DISPOSITION,
            header::CONTENT_RANGE,
            header::ACCEPT_RANGES,
        ])
        .max_age(Duration::from_secs(3600))
}

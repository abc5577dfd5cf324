//! JSON endpoints.

use super::input::{ApiQuery, ExtPath};
use super::openapi::{
    BackendFailures, BadInput, ExtPathDoc, ListQuery, NotFound, ResolveQuery, SearchQuery,
};
use super::SharedState;
use crate::error::Error;
use axum::extract::State;
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use extreg_shared::{CacheStats, Extension, ExtensionVersion, HealthResponse};

pub const LIST_DEFAULT: usize = 100;
pub const LIST_MAX: usize = 1000;
pub const SEARCH_DEFAULT: usize = 50;
pub const SEARCH_MAX: usize = 100;
/// Largest `offset` accepted (a bound every client can represent exactly).
pub const OFFSET_MAX: usize = 1_000_000_000;

static X_TOTAL_COUNT: HeaderName = HeaderName::from_static("x-total-count");

fn json(body: Bytes) -> Response {
    let mut r = (StatusCode::OK, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn json_counted(body: Bytes, total: usize) -> Response {
    let mut r = json(body);
    r.headers_mut()
        .insert(X_TOTAL_COUNT.clone(), HeaderValue::from(total));
    r
}

/// Adds `Age`: seconds since the data behind the answer was fetched from
/// its backend (RFC 9111), as the metadata caches keep answering while
/// they refresh.
fn aged(mut r: Response, age: u64) -> Response {
    r.headers_mut().insert(header::AGE, HeaderValue::from(age));
    r
}

fn json_value<T: serde::Serialize>(v: &T) -> Result<Response, Error> {
    serde_json::to_vec(v)
        .map(|b| json(Bytes::from(b)))
        .map_err(|e| Error::internal(format!("serializing: {e}")))
}

/// List extensions, sorted by type then name: one record per extension,
/// describing its newest stable version.
#[utoipa::path(get, path = "/api/v1/extensions", tag = "extensions", params(ListQuery),
    responses(
        (status = 200, description = "A page of extensions", body = [Extension],
            headers(("X-Total-Count" = u64, description = "Matches before paging (`limit`, `offset`)"))),
        BadInput, BackendFailures,
    ))]
pub async fn list(State(st): State<SharedState>, ApiQuery(q): ApiQuery) -> Result<Response, Error> {
    let r = st
        .catalogue
        .list(
            q.ext_type()?,
            q.source()?,
            q.limit(LIST_DEFAULT, LIST_MAX)?,
            q.offset()?,
        )
        .await?;
    Ok(aged(json_counted(r.body, r.total), r.age))
}

/// Search names, descriptions and tags (case-insensitive). Ranked: exact
/// name, name prefix, name substring, then description or tag matches.
#[utoipa::path(get, path = "/api/v1/extensions/search", tag = "extensions", params(SearchQuery),
    responses(
        (status = 200, description = "The best matches", body = [Extension],
            headers(("X-Total-Count" = u64, description = "Matches before `limit`"))),
        BadInput, BackendFailures,
    ))]
pub async fn search(
    State(st): State<SharedState>,
    ApiQuery(q): ApiQuery,
) -> Result<Response, Error> {
    let raw = q.q.as_deref().unwrap_or_default();
    // Counted in characters as given (before trimming), as the OpenAPI
    // document's maxLength counts.
    let chars = raw.chars().count();
    if chars > extreg_shared::MAX_NAME_LEN {
        return Err(Error::invalid_request(format!(
            "q is {chars} characters long; the limit is {}",
            extreg_shared::MAX_NAME_LEN
        )));
    }
    let text = raw.trim();
    if text.is_empty() {
        return Err(Error::invalid_request(
            "the query parameter q is required, e.g. /api/v1/extensions/search?q=kubernetes",
        ));
    }
    let r = st
        .catalogue
        .search(text, q.ext_type()?, q.limit(SEARCH_DEFAULT, SEARCH_MAX)?)
        .await?;
    Ok(aged(json_counted(r.body, r.total), r.age))
}

/// The record of one extension's newest stable version (the newest
/// pre-release when it has no stable one).
#[utoipa::path(get, path = "/api/v1/extensions/{type}/{name}", tag = "extensions",
    params(ExtPathDoc),
    responses(
        (status = 200, description = "The extension", body = Extension),
        BadInput, NotFound, BackendFailures,
    ))]
pub async fn get_extension(State(st): State<SharedState>, p: ExtPath) -> Result<Response, Error> {
    let (body, age) = st.catalogue.get_aged(p.ext_type, &p.name).await?;
    Ok(aged(json(body), age))
}

/// Every version of one extension, newest first, merged across backends.
#[utoipa::path(get, path = "/api/v1/extensions/{type}/{name}/versions", tag = "extensions",
    params(ExtPathDoc),
    responses(
        (status = 200, description = "The versions, newest first", body = [ExtensionVersion],
            headers(("X-Total-Count" = u64, description = "Number of versions"))),
        BadInput, NotFound, BackendFailures,
    ))]
pub async fn versions(State(st): State<SharedState>, p: ExtPath) -> Result<Response, Error> {
    let a = st.catalogue.versions_answer(p.ext_type, &p.name).await?;
    let v = &a.versions;
    Ok(aged(json_counted(v.body.clone(), v.entries.len()), a.age))
}

/// `GET /extensions/{type}/{name}/resolve?constraint=...&pre=...`: the
/// record of the highest version satisfying the constraint.
#[utoipa::path(get, path = "/api/v1/extensions/{type}/{name}/resolve", tag = "extensions",
    params(ExtPathDoc, ResolveQuery),
    responses(
        (status = 200, description = "The highest satisfying version", body = Extension),
        BadInput, NotFound, super::openapi::Mismatched, BackendFailures,
    ))]
pub async fn resolve(
    State(st): State<SharedState>,
    p: ExtPath,
    ApiQuery(q): ApiQuery,
) -> Result<Response, Error> {
    let constraint = extreg_shared::Constraint::parse(q.constraint.as_deref().unwrap_or(""))?;
    let entry = st
        .catalogue
        .resolve(p.ext_type, &p.name, &constraint, q.pre()?)
        .await?;
    json_value(&entry.record)
}

/// The daemon and each backend kind (asked now, 5 s at most each).
#[utoipa::path(get, path = "/api/v1/health", tag = "system",
    responses((status = 200, description = "`healthy`, or `degraded` when an enabled backend \
fails; the answer is 200 either way", body = HealthResponse)))]
pub async fn health(State(st): State<SharedState>) -> Result<Response, Error> {
    json_value(&st.health().await)
}

/// Prometheus metrics (text exposition format 0.0.4).
#[utoipa::path(get, path = "/api/v1/metrics", tag = "system",
    responses((status = 200, description = "The metrics", body = String,
        content_type = "text/plain; version=0.0.4")))]
pub async fn metrics(State(st): State<SharedState>) -> Response {
    let mut r = (StatusCode::OK, st.metrics.encode()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(prometheus::TEXT_FORMAT),
    );
    r
}

/// Entries, hits and misses of the metadata caches and the artifact cache.
#[utoipa::path(get, path = "/api/v1/cache/stats", tag = "system",
    responses((status = 200, description = "Cache figures", body = CacheStats)))]
pub async fn cache_stats(State(st): State<SharedState>) -> Result<Response, Error> {
    json_value(&st.catalogue.cache_stats())
}

pub async fn no_route(uri: axum::http::Uri) -> Error {
    Error::not_found(format!(
        "no endpoint at {}; see /api/v1/extensions, /api/v1/health",
        super::input::shown(uri.path())
    ))
}

pub async fn method_not_allowed(method: axum::http::Method) -> Response {
    let mut r = Error::invalid_request(format!(
        "method {method} is not allowed here; this API is read-only (GET)"
    ))
    .into_response();
    *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
    r
}

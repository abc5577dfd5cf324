//! JSON endpoints.

use super::input::{ApiQuery, ExtPath};
use super::SharedState;
use crate::error::ApiError;
use axum::extract::State;
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use extreg_shared::{BackendStatus, HealthResponse, Source};
use std::collections::BTreeMap;
use std::time::Duration;

pub const LIST_DEFAULT: usize = 100;
pub const LIST_MAX: usize = 1000;
pub const SEARCH_DEFAULT: usize = 50;
pub const SEARCH_MAX: usize = 100;
/// Skipped repositories named per backend in `/health`.
const MAX_SKIPPED_SHOWN: usize = 20;
/// How long `/health` waits for one backend.
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(5);

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

fn json_value<T: serde::Serialize>(v: &T) -> Result<Response, ApiError> {
    serde_json::to_vec(v)
        .map(|b| json(Bytes::from(b)))
        .map_err(|e| ApiError::internal(format!("serializing: {e}")))
}

pub async fn list(
    State(st): State<SharedState>,
    ApiQuery(q): ApiQuery,
) -> Result<Response, ApiError> {
    let r = st
        .registry
        .list(
            q.ext_type()?,
            q.source()?,
            q.limit(LIST_DEFAULT, LIST_MAX)?,
            q.offset()?,
        )
        .await?;
    Ok(aged(json_counted(r.body, r.total), r.age))
}

pub async fn search(
    State(st): State<SharedState>,
    ApiQuery(q): ApiQuery,
) -> Result<Response, ApiError> {
    let text = q.q.as_deref().map(str::trim).unwrap_or_default();
    if text.is_empty() {
        return Err(ApiError::invalid_request(
            "the query parameter q is required, e.g. /api/v1/extensions/search?q=kubernetes",
        ));
    }
    if text.len() > extreg_shared::MAX_NAME_LEN {
        return Err(ApiError::invalid_request(format!(
            "q is {} bytes long; the limit is {}",
            text.len(),
            extreg_shared::MAX_NAME_LEN
        )));
    }
    let r = st
        .registry
        .search(text, q.ext_type()?, q.limit(SEARCH_DEFAULT, SEARCH_MAX)?)
        .await?;
    Ok(aged(json_counted(r.body, r.total), r.age))
}

pub async fn get_extension(
    State(st): State<SharedState>,
    p: ExtPath,
) -> Result<Response, ApiError> {
    let (body, age) = st.registry.get_aged(p.ext_type, &p.name).await?;
    Ok(aged(json(body), age))
}

pub async fn versions(State(st): State<SharedState>, p: ExtPath) -> Result<Response, ApiError> {
    let a = st.registry.versions_answer(p.ext_type, &p.name).await?;
    let v = &a.versions;
    Ok(aged(json_counted(v.body.clone(), v.entries.len()), a.age))
}

/// `GET /extensions/{type}/{name}/resolve?constraint=...&pre=...`: the
/// record of the highest version satisfying the constraint.
pub async fn resolve(
    State(st): State<SharedState>,
    p: ExtPath,
    ApiQuery(q): ApiQuery,
) -> Result<Response, ApiError> {
    let constraint = extreg_shared::Constraint::parse(q.constraint.as_deref().unwrap_or(""))?;
    let entry = st
        .registry
        .resolve(p.ext_type, &p.name, &constraint, q.pre()?)
        .await?;
    json_value(&entry.record)
}

pub async fn health(State(st): State<SharedState>) -> Result<Response, ApiError> {
    json_value(&health_report(&st).await)
}

/// Asks every backend, concurrently and bounded by [`HEALTH_TIMEOUT`].
pub async fn health_report(st: &super::AppState) -> HealthResponse {
    let checks = futures::future::join_all(st.registry.backends().iter().map(|b| async move {
        let r = match tokio::time::timeout(HEALTH_TIMEOUT, b.health()).await {
            Ok(r) => r,
            Err(_) => Err(crate::backend::BackendError::Timeout(
                HEALTH_TIMEOUT.as_secs(),
            )),
        };
        let mut skipped = b.skipped();
        if skipped.len() > MAX_SKIPPED_SHOWN {
            let more = skipped.len() - MAX_SKIPPED_SHOWN;
            skipped.truncate(MAX_SKIPPED_SHOWN);
            skipped.push(format!("... and {more} more"));
        }
        (b.source(), r, skipped)
    }))
    .await;
    let mut backends = BTreeMap::new();
    for s in Source::ALL {
        backends.insert(
            s.to_string(),
            BackendStatus {
                enabled: false,
                healthy: false,
                error: None,
                skipped: Vec::new(),
            },
        );
    }
    let mut all_ok = true;
    let refresh = st.registry.refresh_states();
    let bound = st.registry.stale_after().as_secs();
    for (s, r, skipped) in checks {
        // A failing refresh counts too: answers are then served from the
        // caches, and marked stale past the bound.
        let failing = refresh.get(&s).and_then(|f| {
            f.failing().map(|(at, e)| {
                let ago = at.elapsed().map(|d| d.as_secs()).unwrap_or(0);
                format!(
                    "the last metadata refresh failed {ago} s ago ({e}); serving cached answers, marked stale after {bound} s"
                )
            })
        });
        let ok = r.is_ok() && failing.is_none();
        // A partial backend (repositories skipped) degrades the whole.
        all_ok &= skipped.is_empty();
        all_ok &= ok;
        let error = match (r.err().map(|e| e.to_string()), failing) {
            (Some(a), Some(b)) => Some(format!("{a}; {b}")),
            (a, b) => a.or(b),
        };
        backends.insert(
            s.to_string(),
            BackendStatus {
                enabled: true,
                healthy: ok,
                error,
                skipped,
            },
        );
    }
    HealthResponse {
        status: if all_ok { "healthy" } else { "degraded" }.into(),
        version: env!("CARGO_PKG_VERSION").into(),
        uptime: st.started.elapsed().as_secs(),
        backends,
    }
}

pub async fn metrics(State(st): State<SharedState>) -> Response {
    let mut r = (StatusCode::OK, st.metrics.encode()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(prometheus::TEXT_FORMAT),
    );
    r
}

pub async fn cache_stats(State(st): State<SharedState>) -> Result<Response, ApiError> {
    json_value(&st.registry.cache_stats())
}

pub async fn no_route(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!(
        "no endpoint at {}; see /api/v1/extensions, /api/v1/health",
        super::input::shown(uri.path())
    ))
}

pub async fn method_not_allowed(method: axum::http::Method) -> Response {
    let mut r = ApiError::invalid_request(format!(
        "method {method} is not allowed here; this API is read-only (GET)"
    ))
    .into_response();
    *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
    r
}

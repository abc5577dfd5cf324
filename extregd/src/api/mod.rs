//! The `/api/v1` REST surface: routes, input extraction and the request
//! metrics middleware. Handlers stay thin: parse, call the application
//! ([`App`](crate::app::App): its operations or its
//! [`Catalogue`](crate::catalogue::Catalogue)), render the answer.

mod artifacts;
mod download;
mod error;
mod handlers;
mod input;
pub mod openapi;

use crate::app::App;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use std::sync::Arc;
use std::time::Instant;

/// The HTTP adapter's state: the application (handlers reach its
/// components and operations through `Deref`) and what only HTTP uses.
pub struct AppState {
    pub app: Arc<App>,
    /// Push invalidation settings (the two cache-only `POST` endpoints).
    pub webhooks: crate::webhook::Webhooks,
}

impl std::ops::Deref for AppState {
    type Target = App;
    fn deref(&self) -> &App {
        &self.app
    }
}

pub type SharedState = Arc<AppState>;

/// Every route template, so metric labels are `&'static str`.
const ROUTES: [&str; 15] = [
    "/api/v1/extensions",
    "/api/v1/extensions/search",
    "/api/v1/extensions/{type}/{name}",
    "/api/v1/extensions/{type}/{name}/versions",
    "/api/v1/extensions/{type}/{name}/{version}",
    "/api/v1/health",
    "/api/v1/metrics",
    "/api/v1/cache/stats",
    "/api/v1/extensions/{type}/{name}/resolve",
    crate::probe::LIVE_PATH,
    crate::probe::READY_PATH,
    "/api/v1/hooks/registry",
    "/api/v1/hooks/gitea",
    openapi::OPENAPI_PATH,
    "/api/v1/oci/artifacts",
];

pub fn router(state: SharedState) -> Router {
    Router::new()
        .route(ROUTES[0], get(handlers::list))
        .route(ROUTES[1], get(handlers::search))
        .route(ROUTES[2], get(handlers::get_extension))
        .route(ROUTES[3], get(handlers::versions))
        .route(ROUTES[4], get(download::download))
        .route(ROUTES[5], get(handlers::health))
        .route(ROUTES[6], get(handlers::metrics))
        .route(ROUTES[7], get(handlers::cache_stats))
        .route(ROUTES[8], get(handlers::resolve))
        .route(ROUTES[9], get(crate::probe::live))
        .route(ROUTES[10], get(crate::probe::ready))
        // The only writing routes, and they write only caches.
        .route(ROUTES[11], post(crate::webhook::registry))
        .route(ROUTES[12], post(crate::webhook::gitea))
        .route(ROUTES[13], get(openapi::openapi_json))
        // Reads only: the body names the namespace to list.
        .route(
            ROUTES[14],
            post(artifacts::list).fallback(artifacts::method_not_allowed),
        )
        .fallback(handlers::no_route)
        .method_not_allowed_fallback(handlers::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(state.clone(), track))
        .with_state(state)
}

fn static_method(m: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *m {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// Counts and times every request by method, route template and status.
async fn track(State(state): State<SharedState>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = static_method(req.method());
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .and_then(|m| ROUTES.iter().copied().find(|r| *r == m.as_str()))
        .unwrap_or("unmatched");
    let resp = next.run(req).await;
    state.metrics.observe_request(
        method,
        route,
        resp.status().as_str(),
        start.elapsed().as_secs_f64(),
    );
    resp
}

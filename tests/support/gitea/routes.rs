//! The routes of the stand-in and the middleware of its knobs.

use super::json::{api_error, json_response, paginate, release_json, repo_json, PageQuery};
use super::{Access, ReleaseFx, RepoFx, Shared, GITEA_VERSION};
use axum::extract::{FromRequestParts, MatchedPath, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::json;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

// ---- HTTP -----------------------------------------------------------------

pub(super) fn router(state: Arc<Shared>) -> Router {
    Router::new()
        .route("/api/v1/version", get(version))
        .route("/api/v1/orgs/{org}/repos", get(org_repos))
        .route("/api/v1/repos/{owner}/{repo}", get(repo))
        .route("/api/v1/repos/{owner}/{repo}/releases", get(releases))
        .route(
            "/{owner}/{repo}/releases/download/{tag}/{asset}",
            get(download),
        )
        .route("/_standin/stats", get(stats))
        .fallback(not_found_route)
        .layer(axum::middleware::from_fn_with_state(state.clone(), knobs))
        .with_state(state)
}

/// Counts, delays and (when failing) refuses every request.
async fn knobs(State(st): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "(no route)".into());
    if route == "/_standin/stats" {
        return next.run(req).await;
    }
    st.total.fetch_add(1, Ordering::Relaxed);
    *st.counts
        .lock()
        .entry(format!("{} {route}", req.method()))
        .or_default() += 1;
    let now = st.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    st.peak.fetch_max(now, Ordering::SeqCst);
    // Counted down however the request ends (a client may drop it).
    let _in_flight = InFlight(&st.in_flight);
    let target = req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("");
    let extra: Duration = st
        .slow_matching
        .lock()
        .iter()
        .filter(|(n, _)| target.contains(n.as_str()))
        .map(|(_, d)| *d)
        .sum();
    let ms = Duration::from_millis(st.latency_ms.load(Ordering::Relaxed)) + extra;
    if !ms.is_zero() {
        tokio::time::sleep(ms).await;
    }
    let matched = st
        .fail_matching
        .lock()
        .iter()
        .any(|n| target.contains(n.as_str()));
    if matched || st.failing.load(Ordering::Relaxed) {
        return api_error(&st, StatusCode::INTERNAL_SERVER_ERROR, "");
    }
    next.run(req).await
}

struct InFlight<'a>(&'a AtomicU64);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Who is asking: `None` anonymous, `Some(access)` a known token; an
/// unknown token is answered 401 before the handler runs.
struct Caller(Option<Access>);

impl FromRequestParts<Arc<Shared>> for Caller {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, st: &Arc<Shared>) -> Result<Self, Response> {
        let Some(v) = parts.headers.get(header::AUTHORIZATION) else {
            return Ok(Caller(None));
        };
        let v = v.to_str().unwrap_or_default();
        let token = v
            .strip_prefix("token ")
            .or_else(|| v.strip_prefix("Bearer "))
            .unwrap_or_default()
            .trim();
        let known = st.world.lock().tokens.get(token).copied();
        match known {
            Some(a) => Ok(Caller(Some(a))),
            None => Err(api_error(
                st,
                StatusCode::UNAUTHORIZED,
                "user does not exist [uid: 0, name: ]",
            )),
        }
    }
}

fn can_see(repo: &RepoFx, access: Option<Access>) -> bool {
    !repo.private || matches!(access, Some(Access::Read | Access::Write))
}

async fn version(Caller(_): Caller) -> Response {
    json_response(json!({ "version": GITEA_VERSION }))
}

async fn org_repos(
    State(st): State<Arc<Shared>>,
    Path(org): Path<String>,
    Query(q): Query<PageQuery>,
    uri: Uri,
    Caller(access): Caller,
) -> Response {
    let items = {
        let w = st.world.lock();
        let Some(o) = w.orgs.get(&org) else {
            drop(w);
            return api_error(&st, StatusCode::NOT_FOUND, "GetOrgByName");
        };
        o.repos
            .values()
            .filter(|r| can_see(r, access))
            .map(|r| repo_json(&st, &org, o.id, r, access))
            .collect()
    };
    paginate(&st, &uri, &q, items)
}

/// The repository when it exists and the caller may see it.
fn find_repo(
    st: &Shared,
    owner: &str,
    repo: &str,
    access: Option<Access>,
) -> Option<(i64, RepoFx)> {
    let w = st.world.lock();
    let o = w.orgs.get(owner)?;
    let r = o.repos.get(repo)?;
    can_see(r, access).then(|| (o.id, r.clone()))
}

async fn repo(
    State(st): State<Arc<Shared>>,
    Path((owner, name)): Path<(String, String)>,
    Caller(access): Caller,
) -> Response {
    match find_repo(&st, &owner, &name, access) {
        Some((org_id, r)) => json_response(repo_json(&st, &owner, org_id, &r, access)),
        None => api_error(&st, StatusCode::NOT_FOUND, "The target couldn't be found."),
    }
}

async fn releases(
    State(st): State<Arc<Shared>>,
    Path((owner, name)): Path<(String, String)>,
    Query(q): Query<PageQuery>,
    uri: Uri,
    Caller(access): Caller,
) -> Response {
    let Some((org_id, r)) = find_repo(&st, &owner, &name, access) else {
        return api_error(&st, StatusCode::NOT_FOUND, "The target couldn't be found.");
    };
    let writer = access == Some(Access::Write);
    let mut rels: Vec<&ReleaseFx> = r.releases.iter().filter(|x| writer || !x.draft).collect();
    // Newest first, as Gitea orders them (created time, then id).
    rels.sort_by_key(|r| std::cmp::Reverse(r.id));
    let items = rels
        .into_iter()
        .map(|x| release_json(&st, &owner, org_id, &r, x))
        .collect();
    paginate(&st, &uri, &q, items)
}

async fn download(
    State(st): State<Arc<Shared>>,
    Path((owner, name, tag, asset)): Path<(String, String, String, String)>,
    Caller(access): Caller,
) -> Response {
    let bytes = {
        let mut w = st.world.lock();
        let found = w
            .orgs
            .get_mut(&owner)
            .and_then(|o| o.repos.get_mut(&name))
            .filter(|r| can_see(r, access))
            .and_then(|r| r.releases.iter_mut().find(|x| x.tag_name == tag))
            .filter(|x| !x.draft || access == Some(Access::Write))
            .and_then(|x| x.assets.iter_mut().find(|a| a.name == asset));
        match found {
            Some(a) => {
                a.download_count += 1;
                a.bytes.clone()
            }
            None => {
                drop(w);
                // Gitea's web routes answer 404 with an HTML page.
                return (StatusCode::NOT_FOUND, "Not found.\n").into_response();
            }
        }
    };
    let len = bytes.len();
    let stall = st.stall_ms.load(Ordering::Relaxed);
    let mut r = if stall > 0 {
        let (a, b) = bytes.split_at(len / 2);
        let (a, b) = (a.to_vec(), b.to_vec());
        let chunks = futures::stream::unfold(0u8, move |step| {
            let (a, b) = (a.clone(), b.clone());
            async move {
                match step {
                    0 => Some((Ok::<_, std::io::Error>(a), 1)),
                    1 => {
                        tokio::time::sleep(Duration::from_millis(stall)).await;
                        Some((Ok(b), 2))
                    }
                    _ => None,
                }
            }
        });
        (StatusCode::OK, axum::body::Body::from_stream(chunks)).into_response()
    } else {
        (StatusCode::OK, bytes).into_response()
    };
    let h = r.headers_mut();
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{asset}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    r
}

async fn stats(State(st): State<Arc<Shared>>) -> Response {
    json_response(json!({
        "total": st.total.load(Ordering::Relaxed),
        "routes": *st.counts.lock(),
        "peak_in_flight": st.peak.load(Ordering::Relaxed),
    }))
}

async fn not_found_route(State(st): State<Arc<Shared>>, uri: Uri) -> Response {
    if uri.path().starts_with("/api/v1/") {
        api_error(&st, StatusCode::NOT_FOUND, "404 page not found")
    } else {
        (StatusCode::NOT_FOUND, "Not found.\n").into_response()
    }
}

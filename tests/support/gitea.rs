//! A Gitea stand-in: an axum server that answers the part of Gitea 1.25's
//! API the Gitea backend uses, the way Gitea does (no Gitea server can be
//! installed here). Its JSON follows the definitions of
//! `../shared/gitea/swagger.v1.json` (`Repository`, `Release`, `Attachment`,
//! `ServerVersion`, `User`, `APIError`), which `tests/e2e/gitea.rs` checks.
//!
//! Behaviour that the schema does not show, copied from Gitea:
//! - `page` (default 1) and `limit` (default 30, silently capped at 50);
//!   `X-Total-Count` and `Link` (`rel="next"`, `"last"`, `"first"`, `"prev"`,
//!   in that order, absolute URLs, joined by `,`) on list endpoints;
//! - drafts listed only for a token with write access; a private repository
//!   the token cannot read answers 404 like a missing one; an unknown token
//!   answers 401 on every route; errors are `{"message", "url"}`;
//! - `published_at` equals `created_at`; asset downloads at
//!   `{ROOT}{owner}/{repo}/releases/download/{tag}/{asset}` (outside
//!   `/api/v1`) accept the same `Authorization` header.
//!
//! Knobs for tests: latency per request, answering 500 to everything,
//! stopping (listener and connections gone), request counts per route, and
//! tampering an asset's bytes after its `SHA256SUMS` was published.
//!
//! Gitea also sends `username` inside `User` objects, a field the schema
//! does not declare; the stand-in leaves it out (the backend does not read
//! it) so the schema test can insist on declared fields only.

use axum::extract::{MatchedPath, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use plain_lock::Mutex;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// `std::sync::Mutex` with the poison unwrapped (a panicking test thread
/// must not hide the real failure behind a poison error).
mod plain_lock {
    pub struct Mutex<T>(std::sync::Mutex<T>);
    impl<T> Mutex<T> {
        pub fn new(v: T) -> Self {
            Mutex(std::sync::Mutex::new(v))
        }
        pub fn lock(&self) -> std::sync::MutexGuard<'_, T> {
            self.0.lock().unwrap_or_else(|p| p.into_inner())
        }
    }
}

pub const GITEA_VERSION: &str = "1.25.4";
/// Gitea's `[api] DEFAULT_PAGING_NUM` and `MAX_RESPONSE_ITEMS`.
pub const DEFAULT_LIMIT: usize = 30;
pub const MAX_LIMIT: usize = 50;

static NEXT_ID: AtomicI64 = AtomicI64::new(1000);

fn next_id() -> i64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// A creation time that grows with each call, in Gitea's format.
fn next_time() -> String {
    static N: AtomicI64 = AtomicI64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    format!(
        "2024-{:02}-{:02}T{:02}:{:02}:00Z",
        1 + (n / (28 * 1440)) % 12,
        1 + (n / 1440) % 28,
        (n / 60) % 24,
        n % 60
    )
}

#[derive(Debug, Clone)]
pub struct AssetFx {
    pub id: i64,
    pub name: String,
    pub bytes: Vec<u8>,
    pub created_at: String,
    pub uuid: String,
    pub download_count: i64,
}

#[derive(Debug, Clone)]
pub struct ReleaseFx {
    pub id: i64,
    pub tag_name: String,
    pub name: String,
    pub body: String,
    pub draft: bool,
    pub prerelease: bool,
    pub created_at: String,
    pub author: String,
    pub assets: Vec<AssetFx>,
}

impl ReleaseFx {
    /// Attaches a file.
    pub fn asset(&mut self, name: &str, bytes: &[u8]) -> &mut Self {
        let id = next_id();
        self.assets.push(AssetFx {
            id,
            name: name.to_string(),
            bytes: bytes.to_vec(),
            created_at: self.created_at.clone(),
            uuid: format!("00000000-0000-4000-8000-{id:012}"),
            download_count: 0,
        });
        self
    }

    /// Attaches `SHA256SUMS` for every asset attached so far.
    pub fn sha256sums(&mut self) -> &mut Self {
        use sha2::Digest;
        let text: String = self
            .assets
            .iter()
            .map(|a| {
                format!(
                    "{}  {}\n",
                    hex::encode(sha2::Sha256::digest(&a.bytes)),
                    a.name
                )
            })
            .collect();
        self.asset("SHA256SUMS", text.as_bytes())
    }

    pub fn draft(&mut self) -> &mut Self {
        self.draft = true;
        self
    }

    pub fn prerelease(&mut self) -> &mut Self {
        self.prerelease = true;
        self
    }
}

#[derive(Debug, Clone)]
pub struct RepoFx {
    pub id: i64,
    pub name: String,
    pub description: String,
    pub topics: Vec<String>,
    pub archived: bool,
    pub private: bool,
    pub created_at: String,
    pub releases: Vec<ReleaseFx>,
}

impl RepoFx {
    pub fn describe(&mut self, description: &str, topics: &[&str]) -> &mut Self {
        self.description = description.to_string();
        self.topics = topics.iter().map(|t| t.to_string()).collect();
        self
    }

    /// Adds (or returns) the release of `tag`.
    pub fn release(&mut self, tag: &str) -> &mut ReleaseFx {
        if let Some(i) = self.releases.iter().position(|r| r.tag_name == tag) {
            return &mut self.releases[i];
        }
        self.releases.push(ReleaseFx {
            id: next_id(),
            tag_name: tag.to_string(),
            name: format!("Release {tag}"),
            body: format!("Notes for {tag}"),
            draft: false,
            prerelease: false,
            created_at: next_time(),
            author: "release-bot".to_string(),
            assets: Vec::new(),
        });
        self.releases.last_mut().unwrap()
    }
}

#[derive(Debug, Clone, Default)]
pub struct OrgFx {
    pub id: i64,
    pub repos: BTreeMap<String, RepoFx>,
}

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Public and private repositories, no write (drafts hidden).
    Read,
    /// Read plus write: drafts are listed.
    Write,
    /// Public repositories only (a token of a user outside the org).
    Outsider,
}

/// Everything the stand-in serves.
#[derive(Debug, Default)]
pub struct World {
    pub orgs: BTreeMap<String, OrgFx>,
    pub tokens: HashMap<String, Access>,
}

impl World {
    pub fn org(&mut self, org: &str) -> &mut OrgFx {
        self.orgs.entry(org.to_string()).or_insert_with(|| OrgFx {
            id: next_id(),
            repos: BTreeMap::new(),
        })
    }

    /// Adds (or returns) a repository of `org`.
    pub fn repo(&mut self, org: &str, name: &str) -> &mut RepoFx {
        self.org(org)
            .repos
            .entry(name.to_string())
            .or_insert_with(|| RepoFx {
                id: next_id(),
                name: name.to_string(),
                description: String::new(),
                topics: Vec::new(),
                archived: false,
                private: false,
                created_at: next_time(),
                releases: Vec::new(),
            })
    }

    pub fn token(&mut self, token: &str, access: Access) {
        self.tokens.insert(token.to_string(), access);
    }
}

/// A running stand-in; stops on drop.
pub struct GiteaStandIn {
    pub url: String,
    pub addr: std::net::SocketAddr,
    state: Arc<Shared>,
    runtime: Option<tokio::runtime::Runtime>,
}

struct Shared {
    world: Mutex<World>,
    /// `http://127.0.0.1:port/`, Gitea's `ROOT_URL`.
    root: String,
    latency_ms: AtomicU64,
    /// When set, asset downloads send half their bytes, then wait this long.
    stall_ms: AtomicU64,
    failing: AtomicBool,
    counts: Mutex<BTreeMap<String, u64>>,
    total: AtomicU64,
}

impl GiteaStandIn {
    /// Starts on a free loopback port with an empty world.
    pub fn start() -> GiteaStandIn {
        Self::start_on("127.0.0.1:0")
    }

    pub fn start_on(addr: &str) -> GiteaStandIn {
        let listener = std::net::TcpListener::bind(addr).expect("bind the gitea stand-in");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let root = format!("http://{addr}/");
        let state = Arc::new(Shared {
            world: Mutex::new(World::default()),
            root: root.clone(),
            latency_ms: AtomicU64::new(0),
            stall_ms: AtomicU64::new(0),
            failing: AtomicBool::new(false),
            counts: Mutex::new(BTreeMap::new()),
            total: AtomicU64::new(0),
        });
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("gitea-standin")
            .enable_all()
            .build()
            .unwrap();
        let app = router(state.clone());
        runtime.spawn(async move {
            let l = tokio::net::TcpListener::from_std(listener).unwrap();
            let _ = axum::serve(l, app).await;
        });
        GiteaStandIn {
            url: root.trim_end_matches('/').to_string(),
            addr,
            state,
            runtime: Some(runtime),
        }
    }

    /// Changes the world (repositories, releases, tokens).
    pub fn with<R>(&self, f: impl FnOnce(&mut World) -> R) -> R {
        f(&mut self.state.world.lock())
    }

    /// Delay added to every request.
    /// Asset downloads send half their bytes, then stall for `d` (a
    /// download in progress, for crash tests).
    pub fn set_stall(&self, d: Duration) {
        self.state
            .stall_ms
            .store(d.as_millis() as u64, Ordering::Relaxed);
    }

    pub fn set_latency(&self, d: Duration) {
        self.state
            .latency_ms
            .store(d.as_millis() as u64, Ordering::Relaxed);
    }

    /// Answer 500 to everything (`true`) or behave again (`false`).
    pub fn set_failing(&self, failing: bool) {
        self.state.failing.store(failing, Ordering::Relaxed);
    }

    /// Goes away: the listener and every open connection are dropped.
    pub fn stop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }

    /// Requests per route template (`GET /api/v1/orgs/{org}/repos`, ...).
    pub fn counts(&self) -> BTreeMap<String, u64> {
        self.state.counts.lock().clone()
    }

    pub fn total_requests(&self) -> u64 {
        self.state.total.load(Ordering::Relaxed)
    }

    pub fn reset_counts(&self) {
        self.state.counts.lock().clear();
        self.state.total.store(0, Ordering::Relaxed);
    }

    /// Replaces the bytes of an asset in place (same id, size and time), as
    /// a corrupted store or a tampering mirror would: its published
    /// `SHA256SUMS` no longer matches.
    pub fn tamper(&self, org: &str, repo: &str, tag: &str, asset: &str) {
        let mut w = self.state.world.lock();
        let a = w
            .orgs
            .get_mut(org)
            .and_then(|o| o.repos.get_mut(repo))
            .and_then(|r| r.releases.iter_mut().find(|x| x.tag_name == tag))
            .and_then(|r| r.assets.iter_mut().find(|a| a.name == asset))
            .expect("asset to tamper exists");
        let last = a.bytes.len() - 1;
        a.bytes[last] ^= 0xff;
    }
}

impl Drop for GiteaStandIn {
    fn drop(&mut self) {
        self.stop();
    }
}

// ---- HTTP -----------------------------------------------------------------

fn router(state: Arc<Shared>) -> Router {
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
    let ms = st.latency_ms.load(Ordering::Relaxed);
    if ms > 0 {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if st.failing.load(Ordering::Relaxed) {
        return api_error(&st, StatusCode::INTERNAL_SERVER_ERROR, "");
    }
    next.run(req).await
}

/// Gitea's error body.
fn api_error(st: &Shared, status: StatusCode, message: &str) -> Response {
    let mut r = (
        status,
        axum::Json(json!({"message": message, "url": format!("{}api/swagger", st.root)})),
    )
        .into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json;charset=utf-8"),
    );
    r
}

fn json_response(v: Value) -> Response {
    let mut r = axum::Json(v).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json;charset=utf-8"),
    );
    r
}

/// Who is asking: `Ok(None)` anonymous, `Ok(Some(access))` a known token,
/// `Err` a 401 for an unknown one.
fn auth(st: &Shared, headers: &HeaderMap) -> Result<Option<Access>, Box<Response>> {
    let Some(v) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let v = v.to_str().unwrap_or_default();
    let token = v
        .strip_prefix("token ")
        .or_else(|| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .trim();
    match st.world.lock().tokens.get(token) {
        Some(a) => Ok(Some(*a)),
        None => Err(Box::new(api_error(
            st,
            StatusCode::UNAUTHORIZED,
            "user does not exist [uid: 0, name: ]",
        ))),
    }
}

fn can_see(repo: &RepoFx, access: Option<Access>) -> bool {
    !repo.private || matches!(access, Some(Access::Read | Access::Write))
}

#[derive(Deserialize)]
struct PageQuery {
    page: Option<i64>,
    limit: Option<i64>,
}

/// Gitea's paging of a full list: the page's items, `X-Total-Count` and
/// `Link` (as `genAPILinks` writes it: next, last, first, prev).
fn paginate(st: &Shared, uri: &Uri, q: &PageQuery, items: Vec<Value>) -> Response {
    let page = q.page.filter(|p| *p > 0).unwrap_or(1) as usize;
    let limit = match q.limit {
        Some(l) if l > 0 => (l as usize).min(MAX_LIMIT),
        _ => DEFAULT_LIMIT,
    };
    let total = items.len();
    let body: Vec<Value> = items
        .into_iter()
        .skip((page - 1).saturating_mul(limit))
        .take(limit)
        .collect();
    let total_pages = if total == 0 { 1 } else { total.div_ceil(limit) };
    let cur = page.min(total_pages);
    let link_to = |p: usize| {
        let mut pairs: BTreeMap<String, String> = uri
            .query()
            .unwrap_or_default()
            .split('&')
            .filter(|kv| !kv.is_empty())
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                (k.to_string(), v.to_string())
            })
            .collect();
        pairs.insert("page".into(), p.to_string());
        let query: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!(
            "{}{}?{}",
            st.root,
            uri.path().trim_start_matches('/'),
            query.join("&")
        )
    };
    let mut links = Vec::new();
    if cur < total_pages {
        links.push(format!("<{}>; rel=\"next\"", link_to(cur + 1)));
        links.push(format!("<{}>; rel=\"last\"", link_to(total_pages)));
    }
    if cur > 1 {
        links.push(format!("<{}>; rel=\"first\"", link_to(1)));
        links.push(format!("<{}>; rel=\"prev\"", link_to(cur - 1)));
    }
    let mut r = json_response(Value::Array(body));
    let h = r.headers_mut();
    h.insert("x-total-count", HeaderValue::from(total));
    if !links.is_empty() {
        h.insert("link", HeaderValue::from_str(&links.join(",")).unwrap());
    }
    h.insert(
        "access-control-expose-headers",
        HeaderValue::from_static("X-Total-Count, Link"),
    );
    r
}

fn user_json(st: &Shared, id: i64, login: &str, is_org: bool) -> Value {
    json!({
        "id": id,
        "login": login,
        "login_name": "",
        "source_id": 0,
        "full_name": if is_org { format!("The {login} organization") } else { String::new() },
        "email": format!("{login}@noreply.localhost"),
        "avatar_url": format!("{}avatars/{id}", st.root),
        "html_url": format!("{}{login}", st.root),
        "language": "",
        "is_admin": false,
        "last_login": "0001-01-01T00:00:00Z",
        "created": "2024-01-01T00:00:00Z",
        "restricted": false,
        "active": false,
        "prohibit_login": false,
        "location": "",
        "website": "",
        "description": "",
        "visibility": "public",
        "followers_count": 0,
        "following_count": 0,
        "starred_repos_count": 0
    })
}

fn repo_json(st: &Shared, org: &str, org_id: i64, r: &RepoFx, access: Option<Access>) -> Value {
    let full = format!("{org}/{}", r.name);
    let html = format!("{}{full}", st.root);
    let host = st
        .root
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .split(':')
        .next()
        .unwrap_or("localhost")
        .to_string();
    let visible_releases = r.releases.iter().filter(|x| !x.draft).count();
    let mut v = json!({
        "id": r.id,
        "owner": user_json(st, org_id, org, true),
        "name": r.name,
        "full_name": full,
        "description": r.description,
        "empty": false,
        "private": r.private,
        "fork": false,
        "template": false,
        "mirror": false,
        "size": 42,
        "language": "",
        "languages_url": format!("{}api/v1/repos/{full}/languages", st.root),
        "html_url": html,
        "url": format!("{}api/v1/repos/{full}", st.root),
        "link": "",
        "ssh_url": format!("git@{host}:{full}.git"),
        "clone_url": format!("{html}.git"),
        "original_url": "",
        "website": "",
        "stars_count": 0,
        "forks_count": 0,
        "watchers_count": 1,
        "open_issues_count": 0,
        "open_pr_counter": 0,
        "release_counter": visible_releases,
        "default_branch": "main",
        "archived": r.archived,
        "created_at": r.created_at,
        "updated_at": r.created_at,
        "archived_at": if r.archived { r.created_at.clone() } else { "1970-01-01T00:00:00Z".to_string() },
    });
    let more = json!({
        "has_code": true,
        "has_issues": true,
        "internal_tracker": {
            "enable_time_tracker": true,
            "allow_only_contributors_to_track_time": true,
            "enable_issue_dependencies": true
        },
        "has_wiki": true,
        "has_pull_requests": true,
        "has_projects": true,
        "projects_mode": "all",
        "has_releases": true,
        "has_packages": true,
        "has_actions": true,
        "ignore_whitespace_conflicts": false,
        "allow_merge_commits": true,
        "allow_rebase": true,
        "allow_rebase_explicit": true,
        "allow_squash_merge": true,
        "allow_fast_forward_only_merge": true,
        "allow_rebase_update": true,
        "allow_manual_merge": false,
        "autodetect_manual_merge": false,
        "default_delete_branch_after_merge": false,
        "default_merge_style": "merge",
        "default_allow_maintainer_edit": false,
        "avatar_url": "",
        "internal": false,
        "mirror_interval": "",
        "object_format_name": "sha1",
        "mirror_updated": "0001-01-01T00:00:00Z",
        "topics": r.topics,
        "licenses": []
    });
    if let (Value::Object(a), Value::Object(b)) = (&mut v, more) {
        a.extend(b);
    }
    if let Some(a) = access {
        v["permissions"] = json!({
            "admin": false,
            "push": a == Access::Write,
            "pull": true
        });
    }
    v
}

fn esc(seg: &str) -> String {
    let mut out = String::new();
    for b in seg.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn release_json(st: &Shared, org: &str, org_id: i64, repo: &RepoFx, r: &ReleaseFx) -> Value {
    let full = format!("{org}/{}", repo.name);
    let api = format!("{}api/v1/repos/{full}", st.root);
    let html = format!("{}{full}", st.root);
    let assets: Vec<Value> = r
        .assets
        .iter()
        .map(|a| {
            json!({
                "id": a.id,
                "name": a.name,
                "size": a.bytes.len(),
                "download_count": a.download_count,
                "created_at": a.created_at,
                "uuid": a.uuid,
                "browser_download_url": format!(
                    "{html}/releases/download/{}/{}", esc(&r.tag_name), esc(&a.name)
                )
            })
        })
        .collect();
    let _ = org_id;
    json!({
        "id": r.id,
        "tag_name": r.tag_name,
        "target_commitish": "main",
        "name": r.name,
        "body": r.body,
        "url": format!("{api}/releases/{}", r.id),
        "html_url": format!("{html}/releases/tag/{}", esc(&r.tag_name)),
        "tarball_url": format!("{html}/archive/{}.tar.gz", esc(&r.tag_name)),
        "zipball_url": format!("{html}/archive/{}.zip", esc(&r.tag_name)),
        "upload_url": format!("{api}/releases/{}/assets", r.id),
        "draft": r.draft,
        "prerelease": r.prerelease,
        "created_at": r.created_at,
        "published_at": r.created_at,
        "author": user_json(st, 7, &r.author, false),
        "assets": assets
    })
}

async fn version(State(st): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Err(r) = auth(&st, &headers) {
        return *r;
    }
    json_response(json!({ "version": GITEA_VERSION }))
}

async fn org_repos(
    State(st): State<Arc<Shared>>,
    Path(org): Path<String>,
    Query(q): Query<PageQuery>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let access = match auth(&st, &headers) {
        Ok(a) => a,
        Err(r) => return *r,
    };
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
    headers: HeaderMap,
) -> Response {
    let access = match auth(&st, &headers) {
        Ok(a) => a,
        Err(r) => return *r,
    };
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
    headers: HeaderMap,
) -> Response {
    let access = match auth(&st, &headers) {
        Ok(a) => a,
        Err(r) => return *r,
    };
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
    headers: HeaderMap,
) -> Response {
    let access = match auth(&st, &headers) {
        Ok(a) => a,
        Err(r) => return *r,
    };
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
    }))
}

async fn not_found_route(State(st): State<Arc<Shared>>, uri: Uri) -> Response {
    if uri.path().starts_with("/api/v1/") {
        api_error(&st, StatusCode::NOT_FOUND, "404 page not found")
    } else {
        (StatusCode::NOT_FOUND, "Not found.\n").into_response()
    }
}

/// A release tarball holding `extension.yaml` for `{ty}/{name} {version}`.
pub fn extension_tarball(ty: &str, name: &str, version: &str, description: &str) -> Vec<u8> {
    crate::tar_gz(&[
        (
            "extension.yaml".to_string(),
            crate::manifest(ty, name, version, description, &[]).into_bytes(),
        ),
        (
            format!("kcl/{name}.k"),
            format!("# {name} {version} from gitea\n").into_bytes(),
        ),
    ])
}

/// Adds a repository `{name}{suffix}` to `org` with one release per version
/// in `versions` (tags as given), each carrying `{repo}.tar.gz` and, with
/// `sums`, a `SHA256SUMS`. Returns the tarballs by tag.
pub fn add_extension(
    w: &mut World,
    org: &str,
    ty: &str,
    name: &str,
    tags: &[&str],
    sums: bool,
) -> BTreeMap<String, Vec<u8>> {
    let suffix = match ty {
        "provider" => "_prov",
        "taskserv" => "_taskserv",
        "cluster" => "_cluster",
        other => panic!("unknown type {other}"),
    };
    let repo_name = format!("{name}{suffix}");
    let repo = w.repo(org, &repo_name);
    repo.describe(&format!("{name} {ty} from gitea"), &[ty, "gitea"]);
    let mut out = BTreeMap::new();
    for tag in tags {
        let version = tag.strip_prefix('v').unwrap_or(tag);
        let tgz = extension_tarball(ty, name, version, &format!("{name} {ty} from gitea"));
        let rel = repo.release(tag);
        rel.asset(&format!("{repo_name}.tar.gz"), &tgz);
        if sums {
            rel.sha256sums();
        }
        out.insert(tag.to_string(), tgz);
    }
    out
}

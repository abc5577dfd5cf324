//! A Gitea stand-in: an axum server that answers the part of Gitea 1.25's
//! API the Gitea backend uses, the way Gitea does (no Gitea server can be
//! installed here). Its JSON follows the definitions of
//! `../shared/gitea/swagger.v1.json` (`Repository`, `Release`, `Attachment`,
//! `ServerVersion`, `User`, `APIError`), which `tests/e2e/gitea/schema.rs` checks.
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
//! Knobs for tests: latency per request (more for the requests matching a
//! text), answering 500 to everything or to the requests matching a text, stopping (listener and connections gone),
//! request counts per route and the peak of requests in flight, and
//! tampering an asset's bytes after its `SHA256SUMS` was published.
//!
//! Gitea also sends `username` inside `User` objects, a field the schema
//! does not declare; the stand-in leaves it out (the backend does not read
//! it) so the schema test can insist on declared fields only.

mod json;
mod routes;
mod world;

use routes::router;

pub use world::*;

use plain_lock::Mutex;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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
    /// Requests being answered now, and the most there were at once.
    in_flight: AtomicU64,
    peak: AtomicU64,
    /// Requests whose path and query contain one of these answer 500.
    fail_matching: Mutex<Vec<String>>,
    /// Requests whose path and query contain the text wait this much more.
    slow_matching: Mutex<Vec<(String, Duration)>>,
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
            in_flight: AtomicU64::new(0),
            peak: AtomicU64::new(0),
            fail_matching: Mutex::new(Vec::new()),
            slow_matching: Mutex::new(Vec::new()),
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
        self.state.peak.store(0, Ordering::Relaxed);
    }

    /// The most requests answered at once since the start or the last
    /// [`GiteaStandIn::reset_counts`] (counted from arrival, through the
    /// latency, until the handler has its answer).
    pub fn peak_in_flight(&self) -> u64 {
        self.state.peak.load(Ordering::Relaxed)
    }

    /// From now on, a request whose path and query contain `needle`
    /// answers 500 (after the latency), as a failing Gitea would.
    pub fn fail_matching(&self, needle: &str) {
        self.state.fail_matching.lock().push(needle.to_string());
    }

    /// From now on, a request whose path and query contain `needle` waits
    /// `d` more before it is answered.
    pub fn slow_matching(&self, needle: &str, d: Duration) {
        self.state
            .slow_matching
            .lock()
            .push((needle.to_string(), d));
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

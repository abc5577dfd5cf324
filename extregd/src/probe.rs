//! Liveness and readiness probes, and the `extregd healthcheck` client.
//!
//! - `GET /api/v1/health/live`: 200 while the process serves HTTP. It asks
//!   no backend, so a slow registry never gets the daemon restarted.
//! - `GET /api/v1/health/ready`: 200 once every configured backend has been
//!   reached at least once since start (its health check passed), or once
//!   something else declared the daemon ready through
//!   [`Readiness::set_ready`] (e.g. a persisted catalogue was loaded);
//!   503 before, naming the backends still waited for. Readiness never goes
//!   back: once reached, a backend that fails later is served from caches
//!   (offline mode), which a load balancer should keep sending traffic to.
//! - `GET /api/v1/health` (the seed's) stays the full report that asks
//!   every backend now.

use crate::api::SharedState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub const LIVE_PATH: &str = "/api/v1/health/live";
pub const READY_PATH: &str = "/api/v1/health/ready";

/// How long one backend check of the readiness watcher may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// The readiness flag. Cheap to read from every probe.
#[derive(Debug)]
pub struct Readiness {
    ready: AtomicBool,
    /// Backends not reached yet, and why the daemon became ready.
    inner: Mutex<(Vec<String>, Option<String>)>,
}

impl Readiness {
    /// Not ready until each of `pending` was reached (or `set_ready`).
    pub fn new(pending: Vec<String>) -> Readiness {
        let r = Readiness {
            ready: AtomicBool::new(false),
            inner: Mutex::new((pending, None)),
        };
        if r.inner.lock().0.is_empty() {
            r.set_ready("no backend to wait for");
        }
        r
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Declares the daemon ready (the hook for other start-up work, e.g. a
    /// persisted catalogue loaded from disk). The first reason is kept.
    pub fn set_ready(&self, reason: &str) {
        let mut g = self.inner.lock();
        if g.1.is_none() {
            g.1 = Some(reason.to_string());
            tracing::info!(reason, "ready");
        }
        self.ready.store(true, Ordering::Release);
    }

    /// Records that `source` answered its health check.
    pub fn reached(&self, source: &str) {
        let all = {
            let mut g = self.inner.lock();
            g.0.retain(|s| s != source);
            g.0.is_empty()
        };
        if all {
            self.set_ready("every configured backend reached");
        }
    }

    /// Backends still waited for.
    pub fn pending(&self) -> Vec<String> {
        self.inner.lock().0.clone()
    }

    pub fn reason(&self) -> Option<String> {
        self.inner.lock().1.clone()
    }
}

/// Checks the backends not reached yet until all were (1 s apart, backing
/// off to 10 s), then stops.
pub fn spawn_watch(state: SharedState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut pause = Duration::from_secs(1);
        loop {
            let pending = state.readiness.pending();
            if pending.is_empty() || state.readiness.is_ready() {
                return;
            }
            let checks = state
                .catalogue
                .backends()
                .iter()
                .filter(|b| pending.iter().any(|p| p == b.source().as_str()))
                .map(|b| async move {
                    let ok = matches!(
                        tokio::time::timeout(CHECK_TIMEOUT, b.health()).await,
                        Ok(Ok(()))
                    );
                    (b.source(), ok)
                });
            for (source, ok) in futures::future::join_all(checks).await {
                if ok {
                    state.readiness.reached(source.as_str());
                } else {
                    tracing::debug!(%source, "readiness: backend not reached yet");
                }
            }
            if state.readiness.is_ready() {
                return;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(10));
        }
    })
}

/// Liveness: the process answers (no backend is asked).
#[utoipa::path(get, path = "/api/v1/health/live", tag = "system",
    responses((status = 200, description = "`{\"status\": \"live\", \"uptime\": seconds}`",
        body = crate::api::openapi::LiveBody)))]
pub async fn live(State(st): State<SharedState>) -> Response {
    axum::Json(serde_json::json!({
        "status": "live",
        "uptime": st.started.elapsed().as_secs(),
    }))
    .into_response()
}

/// Readiness: the daemon can serve (see the readiness hook).
#[utoipa::path(get, path = "/api/v1/health/ready", tag = "system",
    responses(
        (status = 200, description = "Ready", body = crate::api::openapi::ReadyBody),
        (status = 503, description = "Not ready yet", body = crate::api::openapi::NotReadyBody),
    ))]
pub async fn ready(State(st): State<SharedState>) -> Response {
    let r = &st.readiness;
    if r.is_ready() {
        axum::Json(serde_json::json!({
            "status": "ready",
            "reason": r.reason(),
        }))
        .into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({
                "status": "not_ready",
                "waiting_for": r.pending(),
            })),
        )
            .into_response()
    }
}

/// The URL `extregd healthcheck` asks when none is given: the configured
/// listener seen from the same host (a wildcard bind asked on loopback).
pub fn default_url(host: &str, port: u16, ready: bool) -> String {
    let host = match host {
        "0.0.0.0" | "" => "127.0.0.1",
        "::" | "[::]" => "::1",
        "localhost" => "127.0.0.1",
        h => h,
    };
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    let path = if ready { READY_PATH } else { LIVE_PATH };
    format!("http://{host}:{port}{path}")
}

/// One probe request: `Ok(status line)` for a 2xx, `Err(reason)` otherwise.
pub async fn check(url: &str, timeout: Duration) -> Result<String, String> {
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .no_proxy()
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
    let resp = client
        .get(url)
        .send()
        .await
        .map_err(|e| format!("{url}: {}", crate::probe::chain(&e)))?;
    let status = resp.status();
    let body = tokio::time::timeout(timeout, resp.text())
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    let body: String = body.chars().take(300).collect();
    if status.is_success() {
        Ok(format!("{url}: {status} {}", body.trim()))
    } else {
        Err(format!("{url}: {status} {}", body.trim()))
    }
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// The readiness flag for the backends `boot` built.
pub fn readiness_for(backends: &[Arc<dyn crate::backend::Backend>]) -> Arc<Readiness> {
    Arc::new(Readiness::new(
        backends.iter().map(|b| b.source().to_string()).collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_after_every_backend_or_the_hook() {
        let r = Readiness::new(vec!["oci".into(), "gitea".into()]);
        assert!(!r.is_ready());
        r.reached("oci");
        assert!(!r.is_ready());
        assert_eq!(r.pending(), vec!["gitea".to_string()]);
        r.reached("gitea");
        assert!(r.is_ready());
        assert_eq!(r.reason().unwrap(), "every configured backend reached");

        let r = Readiness::new(vec!["oci".into()]);
        r.set_ready("persisted catalogue loaded");
        assert!(r.is_ready());
        r.reached("oci");
        assert_eq!(r.reason().unwrap(), "persisted catalogue loaded");
    }

    #[test]
    fn default_url_asks_loopback_for_wildcards() {
        assert_eq!(
            default_url("0.0.0.0", 8082, false),
            "http://127.0.0.1:8082/api/v1/health/live"
        );
        assert_eq!(
            default_url("::", 80, true),
            "http://[::1]:80/api/v1/health/ready"
        );
        assert_eq!(
            default_url("10.1.2.3", 1, false),
            "http://10.1.2.3:1/api/v1/health/live"
        );
    }
}

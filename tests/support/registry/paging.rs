//! [`PagingProxy`]: a pass-through proxy that pages `tags/list` the way
//! registries that cap it do, and records every request line.

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

struct ProxyState {
    upstream: String,
    cap: usize,
    client: reqwest::Client,
    requests: Mutex<Vec<String>>,
    /// Answer blob GETs with a 307 to this origin instead of serving them.
    redirect_blobs: Option<String>,
}

/// A pass-through proxy in front of a registry that pages `tags/list` at
/// `cap` entries and records every request line (`METHOD /path?query
/// auth=yes|no`, whether an `Authorization` header came with it).
pub struct PagingProxy {
    pub url: String,
    /// `127.0.0.1:PORT`, for `[oci] registry`.
    pub addr: String,
    state: Arc<ProxyState>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl PagingProxy {
    pub fn start(upstream: &str, cap: usize) -> PagingProxy {
        Self::start_with(upstream, cap, None)
    }

    /// Like [`PagingProxy::start`], but blob GETs are redirected (307) to
    /// `origin` (`http://host:port`) with the same path.
    pub fn start_redirecting(upstream: &str, cap: usize, origin: &str) -> PagingProxy {
        Self::start_with(
            upstream,
            cap,
            Some(origin.trim_end_matches('/').to_string()),
        )
    }

    fn start_with(upstream: &str, cap: usize, redirect_blobs: Option<String>) -> PagingProxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let state = Arc::new(ProxyState {
            upstream: upstream.trim_end_matches('/').to_string(),
            cap,
            client: reqwest::Client::new(),
            requests: Mutex::new(Vec::new()),
            redirect_blobs,
        });
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("paging-proxy")
            .enable_all()
            .build()
            .unwrap();
        let st = state.clone();
        let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
            let st = st.clone();
            async move { forward(st, req).await }
        });
        runtime.spawn(async move {
            let l = tokio::net::TcpListener::from_std(listener).unwrap();
            let _ = axum::serve(l, app).await;
        });
        PagingProxy {
            url: format!("http://{addr}"),
            addr,
            state,
            runtime: Some(runtime),
        }
    }

    /// Every request line seen so far.
    pub fn requests(&self) -> Vec<String> {
        self.state.requests.lock().unwrap().clone()
    }

    pub fn count(&self, pred: impl Fn(&str) -> bool) -> usize {
        self.requests().iter().filter(|r| pred(r)).count()
    }
}

impl Drop for PagingProxy {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

async fn forward(st: Arc<ProxyState>, req: axum::extract::Request) -> axum::response::Response {
    use axum::response::IntoResponse;
    let method = req.method().clone();
    let pq = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let auth = if req.headers().contains_key("authorization") {
        "yes"
    } else {
        "no"
    };
    st.requests
        .lock()
        .unwrap()
        .push(format!("{method} {pq} auth={auth}"));
    let path = req.uri().path().to_string();
    if let Some(origin) = &st.redirect_blobs {
        if method == axum::http::Method::GET && path.contains("/blobs/") {
            return (
                axum::http::StatusCode::TEMPORARY_REDIRECT,
                [("location", format!("{origin}{pq}"))],
            )
                .into_response();
        }
    }
    let query: BTreeMap<String, String> = req
        .uri()
        .query()
        .map(|q| {
            q.split('&')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
        .unwrap_or_default();
    let headers = req.headers().clone();
    let body = axum::body::to_bytes(req.into_body(), usize::MAX)
        .await
        .unwrap_or_default();
    let paged = method == axum::http::Method::GET && path.ends_with("/tags/list");
    let target = if paged {
        format!("{}{path}", st.upstream)
    } else {
        format!("{}{pq}", st.upstream)
    };
    let mut out = st
        .client
        .request(
            reqwest::Method::from_bytes(method.as_str().as_bytes()).unwrap(),
            &target,
        )
        .body(body.to_vec());
    for (k, v) in headers.iter() {
        if k != "host" && k != "content-length" {
            out = out.header(k.as_str(), v.as_bytes());
        }
    }
    let resp = match out.send().await {
        Ok(r) => r,
        Err(e) => return (axum::http::StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    };
    let status = axum::http::StatusCode::from_u16(resp.status().as_u16()).unwrap();
    let mut hdrs = axum::http::HeaderMap::new();
    for (k, v) in resp.headers().iter() {
        if k != "content-length" && k != "transfer-encoding" && k != "connection" {
            hdrs.insert(
                axum::http::HeaderName::from_bytes(k.as_str().as_bytes()).unwrap(),
                axum::http::HeaderValue::from_bytes(v.as_bytes()).unwrap(),
            );
        }
    }
    let bytes = resp.bytes().await.unwrap_or_default();
    if !(paged && status.is_success()) {
        return (status, hdrs, bytes.to_vec()).into_response();
    }
    let mut v: Value = serde_json::from_slice(&bytes).unwrap();
    let mut tags: Vec<String> = v["tags"]
        .as_array()
        .map(|a| a.iter().map(|t| t.as_str().unwrap().to_string()).collect())
        .unwrap_or_default();
    tags.sort();
    let n = query
        .get("n")
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(st.cap)
        .min(st.cap);
    let start = match query.get("last") {
        Some(last) => tags.iter().position(|t| t > last).unwrap_or(tags.len()),
        None => 0,
    };
    let page: Vec<String> = tags.iter().skip(start).take(n).cloned().collect();
    if start + page.len() < tags.len() {
        let last = page.last().cloned().unwrap_or_default();
        hdrs.insert(
            "link",
            format!("<{path}?n={n}&last={last}>; rel=\"next\"")
                .parse()
                .unwrap(),
        );
    }
    v["tags"] = json!(page);
    (status, hdrs, serde_json::to_vec(&v).unwrap()).into_response()
}

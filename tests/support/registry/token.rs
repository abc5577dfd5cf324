//! [`TokenIssuer`]: a small token service for the registry's
//! `auth.token` mode (Basic credentials in, RS256 JWTs out).

use super::*;
use serde_json::json;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};

/// `auth.token` settings for [`Registry::start_with_token`].
struct TokenState {
    dir: PathBuf,
    user: String,
    password: String,
    issuer: String,
    service: String,
    x5c: String,
    requests: Mutex<Vec<String>>,
}

/// A small token service for the registry's `auth.token` mode: checks HTTP
/// Basic credentials, grants every scope asked for to its one user, and
/// signs RS256 JWTs (with `openssl`) carrying its self-signed certificate in
/// `x5c`; the registry trusts that certificate (`rootcertbundle`).
pub struct TokenIssuer {
    /// The realm, `http://127.0.0.1:PORT/token`.
    pub realm: String,
    pub cert: PathBuf,
    state: Arc<TokenState>,
    runtime: Option<tokio::runtime::Runtime>,
    _dir: tempfile::TempDir,
}

pub const TOKEN_SERVICE: &str = "extreg-test-registry";
pub const TOKEN_ISSUER: &str = "extreg-test-issuer";

fn b64(data: &[u8], url: bool) -> String {
    const STD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let t = if url { URL } else { STD };
    let mut out = String::new();
    for c in data.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(t[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else if !url {
                out.push('=');
            }
        }
    }
    out
}

fn b64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        } as u32)
    };
    let digits: Vec<u32> = s.bytes().filter_map(val).collect();
    let mut out = Vec::new();
    for c in digits.chunks(4) {
        let mut n = 0u32;
        for (i, d) in c.iter().enumerate() {
            n |= d << (18 - 6 * i);
        }
        for i in 0..c.len().saturating_sub(1) {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    out
}

impl TokenIssuer {
    pub fn start(user: &str, password: &str) -> TokenIssuer {
        let openssl = require_tool("openssl", "openssl");
        let dir = tempfile::Builder::new()
            .prefix("extreg-token-")
            .tempdir()
            .unwrap();
        let key = dir.path().join("key.pem");
        let cert = dir.path().join("cert.pem");
        let out = Command::new(&openssl)
            .args([
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=extreg-test-issuer",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl req: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let der = Command::new(&openssl)
            .args(["x509", "-outform", "DER", "-in"])
            .arg(&cert)
            .output()
            .unwrap();
        assert!(der.status.success());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(TokenState {
            dir: dir.path().to_path_buf(),
            user: user.into(),
            password: password.into(),
            issuer: TOKEN_ISSUER.into(),
            service: TOKEN_SERVICE.into(),
            x5c: b64(&der.stdout, false),
            requests: Mutex::new(Vec::new()),
        });
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let st = state.clone();
        let app = axum::Router::new().route(
            "/token",
            axum::routing::get(move |req: axum::extract::Request| {
                let st = st.clone();
                async move { issue(st, req) }
            }),
        );
        runtime.spawn(async move {
            let l = tokio::net::TcpListener::from_std(listener).unwrap();
            let _ = axum::serve(l, app).await;
        });
        TokenIssuer {
            realm: format!("http://{addr}/token"),
            cert,
            state,
            runtime: Some(runtime),
            _dir: dir,
        }
    }

    /// Every token request's query (`service=..&scope=..`) and whether it
    /// carried valid credentials.
    pub fn requests(&self) -> Vec<String> {
        self.state.requests.lock().unwrap().clone()
    }

    /// The registry's `auth:` section for this issuer.
    pub fn auth_yaml(&self) -> String {
        format!(
            "auth:\n  token:\n    realm: {}\n    service: {TOKEN_SERVICE}\n    issuer: {TOKEN_ISSUER}\n    rootcertbundle: {}\n",
            self.realm,
            self.cert.display()
        )
    }
}

impl Drop for TokenIssuer {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

fn issue(st: Arc<TokenState>, req: axum::extract::Request) -> axum::response::Response {
    use axum::response::IntoResponse;
    let query = req.uri().query().unwrap_or_default().to_string();
    let authorized = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .map(|b| String::from_utf8_lossy(&b64_decode(b)).to_string())
        .is_some_and(|up| up == format!("{}:{}", st.user, st.password));
    st.requests
        .lock()
        .unwrap()
        .push(format!("{query} authorized={authorized}"));
    if !authorized {
        return (
            axum::http::StatusCode::UNAUTHORIZED,
            "{\"details\":\"bad credentials\"}",
        )
            .into_response();
    }
    let mut access = Vec::new();
    for kv in query.split('&') {
        let Some(scope) = kv.strip_prefix("scope=") else {
            continue;
        };
        let scope = scope
            .replace("%3A", ":")
            .replace("%2F", "/")
            .replace("%2C", ",")
            .replace("%2A", "*");
        let parts: Vec<&str> = scope.splitn(3, ':').collect();
        if parts.len() == 3 {
            access.push(json!({"type": parts[0], "name": parts[1],
                "actions": parts[2].split(',').collect::<Vec<_>>()}));
        }
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let header = json!({"typ": "JWT", "alg": "RS256", "x5c": [st.x5c]});
    let claims = json!({"iss": st.issuer, "sub": st.user, "aud": st.service,
        "exp": now + 300, "nbf": now - 10, "iat": now, "jti": format!("{now}-{}", access.len()),
        "access": access});
    let signing_input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes(), true),
        b64(claims.to_string().as_bytes(), true)
    );
    let input_file = st.dir.join(format!(
        "in-{}",
        std::process::id() as u64 * 1000 + next_id()
    ));
    std::fs::write(&input_file, &signing_input).unwrap();
    let sig = Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(st.dir.join("key.pem"))
        .arg(&input_file)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&input_file);
    assert!(sig.status.success());
    let token = format!("{signing_input}.{}", b64(&sig.stdout, true));
    axum::Json(json!({"token": token, "expires_in": 300})).into_response()
}

fn next_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

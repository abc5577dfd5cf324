//! A misbehaving OCI registry (and token service) for the hardening tests:
//! it answers like a registry for well-behaved repositories and, per
//! repository, lies the ways a hostile or broken upstream does — endless
//! chunked manifests, `Link` headers that loop, failing tag lists, error
//! texts quoting the token it issued, 429 with `Retry-After`, layers larger
//! than they announce — while recording every request it saw.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::Digest;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// The token the fake token service issues.
pub const ISSUED_TOKEN: &str = "issued-Tok3n-9f8e7d6c5b4a";

/// How one repository misbehaves.
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    Normal,
    /// `tags/list` answers 500 every time.
    TagsFail,
    /// The manifest is a chunked body of this many bytes (no length).
    HugeManifest(u64),
    /// `tags/list` answers 400 quoting the issued token.
    EchoToken,
    /// `tags/list` names itself as the next page, forever.
    TagsLinkLoop,
    /// `tags/list` answers 429 with `Retry-After: secs` this many times.
    RateLimited {
        times: u32,
        secs: u64,
    },
    /// The manifest announces the layer `size` smaller than the blob is.
    Understated(u64),
}

#[derive(Debug, Clone)]
pub struct Repo {
    pub mode: Mode,
    /// tag -> layer bytes.
    pub tags: BTreeMap<String, Vec<u8>>,
}

/// Bearer token auth through the fake's own token service.
#[derive(Debug, Clone)]
pub struct TokenAuth {
    /// `expires_in` the token service answers with.
    pub expires_in: u64,
    /// The realm announced in challenges; default: this fake's `/token`.
    pub realm: Option<String>,
}

#[derive(Default)]
pub struct World {
    pub repos: BTreeMap<String, Repo>,
    pub token: Option<TokenAuth>,
    /// "METHOD path?query" of every request, in order.
    pub requests: Vec<String>,
    /// `Authorization` headers the token endpoint received.
    pub token_auth_headers: Vec<String>,
}

struct Shared {
    world: Mutex<World>,
    base: String,
}

pub struct Hostile {
    pub url: String,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    state: Arc<Shared>,
    _runtime: tokio::runtime::Runtime,
}

pub fn digest(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(b)))
}

/// A tar.gz holding a valid `extension.yaml`.
pub fn artifact(name: &str, ty: &str, version: &str, filler: usize) -> Vec<u8> {
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    let mut add = |path: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append_data(&mut h, path, data).unwrap();
    };
    add(
        "extension.yaml",
        format!("extension:\n  name: {name}\n  version: {version}\n  type: {ty}\n  description: {name} from the hostile registry\n").as_bytes(),
    );
    // Incompressible filler (xorshift), so sizes are what they say.
    let noise = crate::noise(filler, 0x9E37_79B9_7F4A_7C15);
    add("data.bin", &noise);
    tar.into_inner().unwrap().finish().unwrap()
}

impl Hostile {
    pub fn start() -> Hostile {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let base = format!("http://{addr}");
        let state = Arc::new(Shared {
            world: Mutex::new(World::default()),
            base: base.clone(),
        });
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(state.clone());
        runtime.spawn(async move {
            let l = tokio::net::TcpListener::from_std(listener).unwrap();
            let _ = axum::serve(l, app).await;
        });
        Hostile {
            url: base,
            addr,
            state,
            _runtime: runtime,
        }
    }

    pub fn with<R>(&self, f: impl FnOnce(&mut World) -> R) -> R {
        f(&mut self.state.world.lock().unwrap())
    }

    /// Adds `{ns}/{name}-{ty}` with one tag per version.
    pub fn add(&self, ns: &str, name: &str, ty: &str, versions: &[&str], mode: Mode) {
        self.add_sized(ns, name, ty, versions, mode, 64)
    }

    /// [`Self::add`] with `filler` incompressible bytes in each artifact.
    pub fn add_sized(
        &self,
        ns: &str,
        name: &str,
        ty: &str,
        versions: &[&str],
        mode: Mode,
        filler: usize,
    ) {
        let tags = versions
            .iter()
            .map(|v| (v.to_string(), artifact(name, ty, v, filler)))
            .collect();
        self.with(|w| {
            w.repos
                .insert(format!("{ns}/{name}-{ty}"), Repo { mode, tags });
        });
    }

    pub fn requests(&self) -> Vec<String> {
        self.with(|w| w.requests.clone())
    }

    pub fn count(&self, needle: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.contains(needle))
            .count()
    }
}

fn json(status: StatusCode, v: serde_json::Value) -> Response {
    let mut r = (status, v.to_string()).into_response();
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    r
}

fn manifest_of(layer: &[u8], announced: u64) -> Vec<u8> {
    serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.empty.v1+json",
                   "digest": digest(b"{}"), "size": 2},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": digest(layer), "size": announced}],
        // Annotated (as `ext publish` artifacts are), so a listing reads no
        // blob: every blob request a test counts is a download.
        "annotations": {"org.opencontainers.image.description": "from the hostile registry"},
    })
    .to_string()
    .into_bytes()
}

async fn handle(State(st): State<Arc<Shared>>, req: Request) -> Response {
    let method = req.method().clone();
    let uri = req.uri().clone();
    let path = uri.path().to_string();
    let headers: HeaderMap = req.headers().clone();
    let line = format!(
        "{method} {}",
        uri.path_and_query().map(|p| p.as_str()).unwrap_or("")
    );
    let mut w = st.world.lock().unwrap();
    w.requests.push(line);

    // The token service.
    if path == "/token" {
        let auth = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        w.token_auth_headers.push(auth);
        let exp = w.token.as_ref().map(|t| t.expires_in).unwrap_or(60);
        return json(
            StatusCode::OK,
            serde_json::json!({"token": ISSUED_TOKEN, "expires_in": exp}),
        );
    }
    // Bearer auth on everything else, when configured.
    if let Some(t) = &w.token {
        let ok = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v == format!("Bearer {ISSUED_TOKEN}"));
        if !ok {
            let realm = t.realm.clone().unwrap_or(format!("{}/token", st.base));
            let mut r = json(
                StatusCode::UNAUTHORIZED,
                serde_json::json!({"errors": [{"code": "UNAUTHORIZED", "message": "auth"}]}),
            );
            r.headers_mut().insert(
                "www-authenticate",
                HeaderValue::from_str(&format!(
                    "Bearer realm=\"{realm}\",service=\"hostile\",scope=\"repository:x:pull\""
                ))
                .unwrap(),
            );
            return r;
        }
    }
    // A Gitea that lies about its totals: every page of every list is the
    // same one item, with an absurd X-Total-Count.
    if let Some(rest) = path.strip_prefix("/api/v1/") {
        let lie = |body: serde_json::Value| {
            let mut r = json(StatusCode::OK, body);
            r.headers_mut()
                .insert("x-total-count", HeaderValue::from_static("999999999999"));
            r
        };
        if rest == "version" {
            return json(StatusCode::OK, serde_json::json!({"version": "1.25.4"}));
        }
        if rest.ends_with("/repos") {
            return lie(serde_json::json!([{"id": 1, "name": "web_taskserv",
                "description": "web", "archived": false, "topics": []}]));
        }
        if rest.ends_with("/releases") {
            return lie(
                serde_json::json!([{"id": 7, "tag_name": "1.0.0", "draft": false,
                "prerelease": false, "assets": []}]),
            );
        }
        if rest.ends_with("/web_taskserv") {
            return json(
                StatusCode::OK,
                serde_json::json!({"id": 1, "name": "web_taskserv",
                "description": "web", "archived": false}),
            );
        }
        return StatusCode::NOT_FOUND.into_response();
    }
    if path == "/v2/" {
        return json(StatusCode::OK, serde_json::json!({}));
    }
    if path == "/v2/_catalog" {
        let repos: Vec<&String> = w.repos.keys().collect();
        return json(StatusCode::OK, serde_json::json!({ "repositories": repos }));
    }
    let Some(rest) = path.strip_prefix("/v2/") else {
        return StatusCode::NOT_FOUND.into_response();
    };
    // {repo}/tags/list, {repo}/manifests/{ref}, {repo}/blobs/{digest}
    let (repo, kind, reference) = if let Some(r) = rest.strip_suffix("/tags/list") {
        (r.to_string(), "tags", String::new())
    } else if let Some((r, m)) = rest.split_once("/manifests/") {
        (r.to_string(), "manifest", m.to_string())
    } else if let Some((r, d)) = rest.split_once("/blobs/") {
        (r.to_string(), "blob", d.to_string())
    } else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let Some(repo_state) = w.repos.get_mut(&repo) else {
        return json(
            StatusCode::NOT_FOUND,
            serde_json::json!({"errors": [{"code": "NAME_UNKNOWN", "message": "no such repository"}]}),
        );
    };
    match kind {
        "tags" => match &mut repo_state.mode {
            Mode::TagsFail => json(
                StatusCode::INTERNAL_SERVER_ERROR,
                serde_json::json!({"errors": [{"code": "UNKNOWN", "message": "broken storage"}]}),
            ),
            Mode::EchoToken => json(
                StatusCode::BAD_REQUEST,
                serde_json::json!({"errors": [{"code": "DENIED", "message": format!("bad request with token {ISSUED_TOKEN}")}]}),
            ),
            Mode::RateLimited { times, secs } if *times > 0 => {
                *times -= 1;
                let mut r = json(
                    StatusCode::TOO_MANY_REQUESTS,
                    serde_json::json!({"errors": [{"code": "TOOMANYREQUESTS", "message": "slow down"}]}),
                );
                r.headers_mut()
                    .insert("retry-after", HeaderValue::from(*secs));
                r
            }
            mode => {
                let tags: Vec<&String> = repo_state.tags.keys().collect();
                let mut r = json(
                    StatusCode::OK,
                    serde_json::json!({"name": repo, "tags": tags}),
                );
                if *mode == Mode::TagsLinkLoop {
                    r.headers_mut().insert(
                        "link",
                        HeaderValue::from_str(&format!(
                            "</v2/{repo}/tags/list?n=100>; rel=\"next\""
                        ))
                        .unwrap(),
                    );
                }
                r
            }
        },
        "manifest" => {
            let Some(layer) = repo_state.tags.get(&reference).cloned() else {
                return json(
                    StatusCode::NOT_FOUND,
                    serde_json::json!({"errors": [{"code": "MANIFEST_UNKNOWN", "message": "no"}]}),
                );
            };
            if let Mode::HugeManifest(total) = repo_state.mode {
                // A chunked body that never says how long it is.
                let chunk = bytes::Bytes::from(vec![b' '; 64 * 1024]);
                let n = total / chunk.len() as u64;
                let stream = futures::stream::iter(
                    (0..n).map(move |_| Ok::<_, std::io::Error>(chunk.clone())),
                );
                let mut r = Response::new(Body::from_stream(stream));
                r.headers_mut()
                    .insert("content-type", HeaderValue::from_static(OCI_MANIFEST));
                return r;
            }
            let announced = match repo_state.mode {
                Mode::Understated(n) => n,
                _ => layer.len() as u64,
            };
            let m = manifest_of(&layer, announced);
            let mut r = (StatusCode::OK, m.clone()).into_response();
            r.headers_mut()
                .insert("content-type", HeaderValue::from_static(OCI_MANIFEST));
            r.headers_mut().insert(
                "docker-content-digest",
                HeaderValue::from_str(&digest(&m)).unwrap(),
            );
            if method == axum::http::Method::HEAD {
                *r.body_mut() = Body::empty();
            }
            r
        }
        _ => {
            let blob = repo_state
                .tags
                .values()
                .find(|b| digest(b) == reference)
                .cloned();
            match blob {
                Some(b) => (StatusCode::OK, b).into_response(),
                None => json(
                    StatusCode::NOT_FOUND,
                    serde_json::json!({"errors": [{"code": "BLOB_UNKNOWN", "message": "no"}]}),
                ),
            }
        }
    }
}

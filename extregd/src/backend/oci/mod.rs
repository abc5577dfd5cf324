//! The OCI backend: extensions stored as OCI artifacts in a registry that
//! speaks the OCI Distribution API (`/v2/`), such as `docker-registry`
//! (distribution 2.8), Harbor, Zot or GHCR.
//!
//! **Registry URL rule.** `[oci] registry` is a URL (`http://host:5000`,
//! `https://host`) or a bare `host[:port]`. A bare loopback host
//! (`localhost`, `127.x.y.z`, `::1`) means plain HTTP, any other bare host
//! HTTPS, as container tools do; `insecure = true` makes every bare host
//! plain HTTP. `verify_ssl = false` accepts self-signed certificates.
//!
//! **Naming rule.** Repository `{namespace}/{name}-provider`, `-taskserv` or
//! `-cluster` is the extension `{name}` of that type (`{name}` a valid
//! extension name). Every other repository is ignored. Discovery reads
//! `GET /v2/_catalog?n=100` and follows `Link: <...>; rel="next"` to the last
//! page; a registry refusing `n=100` (distribution answers 400 when `n`
//! exceeds its `catalog.maxentries`) is asked again with its own page size.
//!
//! **Versions.** `GET /v2/{repo}/tags/list?n=100`, every page (`Link`). A tag
//! is a version when it is semver (a leading `v` is dropped); other tags are
//! ignored. Each version's manifest is read with `Accept:` the OCI and
//! Docker v2 manifest types. Manifests are immutable by digest and cached
//! for the life of the process; a tag seen before is checked with a `HEAD`
//! (its `Docker-Content-Digest`) and the manifest is fetched again only when
//! the tag moved. Tag lists are re-read on every `versions()` call (the
//! registry's metadata caches provide the TTL above this backend).
//!
//! **Metadata.** From the manifest's `annotations`:
//!
//! | annotation | record field |
//! |---|---|
//! | `org.opencontainers.image.description` | `description` |
//! | `org.opencontainers.image.authors` | `author` |
//! | `org.opencontainers.image.source` | `repository` |
//! | `org.opencontainers.image.created` | `published_at` (UTC, RFC 3339 seconds) |
//! | `dev.provisioning.extension.tags` | `tags` (comma-separated) |
//! | `org.opencontainers.image.version` | checked against the tag (a mismatch is logged) |
//! | `dev.provisioning.extension.name`, `.type` | when present they must match the repository, else the tag is skipped |
//!
//! `artifactType` (else `config.mediaType`) is read and logged; manifests
//! that are not image manifests (indexes, schema 1) are skipped. The
//! artifact is the first layer whose media type ends in `tar+gzip` or
//! `.tar.gz`-titled, else the only layer; its digest is the version's
//! `checksum` and its size the `size`. `revision` is the manifest digest.
//!
//! **Download.** `GET /v2/{repo}/blobs/{digest}` streamed; the artifact
//! cache verifies it against the layer digest. Redirects (to a CDN or object
//! store) are followed; `Authorization` is never forwarded to another host
//! (reqwest drops sensitive headers on a cross-origin redirect).
//!
//! **Auth.** `auth_token_path` names a file whose first non-empty line is
//! either `user:password` (split at the first `:`) or a bare token. The
//! challenge-driven flow: a request answered `401` with
//! `WWW-Authenticate: Basic ...` is repeated with HTTP Basic credentials
//! (and later requests send them up front); `Bearer realm=..,service=..,
//! scope=..` makes us fetch a token from the realm (with Basic credentials
//! when we have `user:password`, anonymously otherwise), cache it per scope
//! until it expires (`expires_in`, default 60 s), and repeat the request. A
//! bare token is sent as `Authorization: Bearer <token>` as is (a registry
//! access token; no exchange). One re-authentication is tried on a 401 or a
//! 403 `insufficient_scope`; a second refusal is an auth error. Secrets
//! never appear in logs, errors, `Debug` output or `/health`.
//!
//! **Requests.** One `reqwest` client; at most [`MAX_IN_FLIGHT`] requests in
//! flight. Every API request has an overall timeout (`timeout_seconds`);
//! blob downloads a connect timeout and a per-read timeout. Connect errors,
//! 429 and 5xx answers are retried [`MAX_RETRIES`] times with exponential
//! backoff and jitter. Health is `GET /v2/` reachable and authorized.

use super::http::{self, Secrets};
use super::{root_cause, utc, Artifact, Backend, BackendError, VersionEntry};
use async_trait::async_trait;
use bytes::Bytes;
use extreg_shared::{parse_version, validate_name, Extension, ExtensionType, Source};
use futures::{StreamExt, TryStreamExt};
use parking_lot::Mutex;
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::config::OciConfig;

/// Requests in flight at once, per backend.
pub const MAX_IN_FLIGHT: usize = 8;
/// Retries after a connect error, a 429 or a 5xx answer.
pub const MAX_RETRIES: u32 = 3;
/// Page size asked for in `_catalog` and `tags/list`.
pub const PAGE_SIZE: usize = 100;
/// No listing follows more pages than this.
const MAX_PAGES: usize = 1_000;
/// A whole listing (catalog, tags, manifests) gives up after this long.
pub const LIST_DEADLINE: Duration = Duration::from_secs(120);
/// Longest a bearer token is kept, whatever `expires_in` says.
const MAX_TOKEN_LIFE: u64 = 24 * 3600;
/// Largest token service answer read.
const MAX_TOKEN_BYTES: usize = 64 << 10;

/// Largest manifest or JSON answer read.
const MAX_JSON_BYTES: usize = 4 << 20;
/// Cached manifests (and tag -> digest pairs) before the cache is reset.
const MAX_CACHED: usize = 65_536;
/// First backoff step; doubled per retry, plus up to as much jitter.
const BACKOFF_BASE_MS: u64 = 150;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const EMPTY_CONFIG: &str = "application/vnd.oci.empty.v1+json";
/// `sha256` of `{}`, the OCI empty descriptor's content.
pub const EMPTY_DIGEST: &str =
    "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";
/// The `artifactType` extregd publishes.
pub const ARTIFACT_TYPE: &str = "application/vnd.provisioning.extension.v1+tar+gzip";
pub const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

pub const ANN_VERSION: &str = "org.opencontainers.image.version";
pub const ANN_DESCRIPTION: &str = "org.opencontainers.image.description";
pub const ANN_AUTHORS: &str = "org.opencontainers.image.authors";
pub const ANN_CREATED: &str = "org.opencontainers.image.created";
pub const ANN_SOURCE: &str = "org.opencontainers.image.source";
pub const ANN_TITLE: &str = "org.opencontainers.image.title";
pub const ANN_URL: &str = "org.opencontainers.image.url";
pub const ANN_LICENSES: &str = "org.opencontainers.image.licenses";
pub const ANN_TAGS: &str = "dev.provisioning.extension.tags";
pub const ANN_TYPE: &str = "dev.provisioning.extension.type";
pub const ANN_NAME: &str = "dev.provisioning.extension.name";
/// `extension.yaml` `requires`, a JSON array of strings.
pub const ANN_REQUIRES: &str = "dev.provisioning.extension.requires";
/// `extension.yaml` `dependencies`, a JSON array of strings.
pub const ANN_DEPENDENCIES: &str = "dev.provisioning.extension.dependencies";

/// Repository suffix of each extension type.
pub fn repo_suffix(t: ExtensionType) -> &'static str {
    match t {
        ExtensionType::Provider => "-provider",
        ExtensionType::Taskserv => "-taskserv",
        ExtensionType::Cluster => "-cluster",
    }
}

/// The extension a repository stands for, if it is `{namespace}/{name}-{type}`.
pub fn parse_repo<'a>(namespace: &str, repo: &'a str) -> Option<(ExtensionType, &'a str)> {
    let rest = repo.strip_prefix(namespace)?.strip_prefix('/')?;
    if rest.contains('/') {
        return None;
    }
    ExtensionType::ALL.into_iter().find_map(|t| {
        let name = rest.strip_suffix(repo_suffix(t))?;
        validate_name(name).is_ok().then_some((t, name))
    })
}

/// The base URL for `[oci] registry` (see the module's registry URL rule).
pub fn registry_base(registry: &str, insecure: bool) -> Result<Url, String> {
    let r = registry.trim().trim_end_matches('/');
    let text = if r.contains("://") {
        r.to_string()
    } else {
        let host = if let Some(rest) = r.strip_prefix('[') {
            rest.split(']').next().unwrap_or_default()
        } else if r.matches(':').count() > 1 {
            r
        } else {
            r.split(':').next().unwrap_or_default()
        };
        let loopback = host.eq_ignore_ascii_case("localhost")
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        let scheme = if loopback || insecure {
            "http"
        } else {
            "https"
        };
        format!("{scheme}://{r}")
    };
    let url = Url::parse(&text).map_err(|e| format!("[oci] registry '{registry}': {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!(
            "[oci] registry '{registry}' must be host[:port] or an http(s):// URL"
        ));
    }
    Ok(url)
}

// ---- credentials ------------------------------------------------------------

/// What `auth_token_path` holds. `Debug` never shows it.
#[derive(Clone)]
pub enum Credentials {
    Basic { user: String, password: String },
    Token(String),
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Basic { user, .. } => write!(f, "Basic({user}:<redacted>)"),
            Credentials::Token(_) => f.write_str("Token(<redacted>)"),
        }
    }
}

impl Credentials {
    /// The first non-empty line of `text`: `user:password` or a bare token.
    pub fn parse(text: &str) -> Option<Credentials> {
        let line = text.lines().map(str::trim).find(|l| !l.is_empty())?;
        Some(match line.split_once(':') {
            Some((u, p)) if !u.is_empty() => Credentials::Basic {
                user: u.to_string(),
                password: p.to_string(),
            },
            _ => Credentials::Token(line.to_string()),
        })
    }

    fn secret(&self) -> &str {
        match self {
            Credentials::Basic { password, .. } => password,
            Credentials::Token(t) => t,
        }
    }
}

fn read_credentials(path: &Path) -> Result<Credentials, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("[oci] auth_token_path {}: {e}", path.display()))?;
    Credentials::parse(&text).ok_or_else(|| {
        format!(
            "[oci] auth_token_path {}: the file holds no credentials",
            path.display()
        )
    })
}

/// A bearer token and when it stops being used.
struct CachedToken {
    header: HeaderValue,
    until: Instant,
}

/// How the registry asked us to authenticate.
#[derive(Debug, Clone, PartialEq)]
enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
        insufficient_scope: bool,
    },
}

/// Parses `WWW-Authenticate` (one challenge, Basic or Bearer).
fn parse_challenge(h: &str) -> Option<Challenge> {
    let h = h.trim();
    let (scheme, rest) = h.split_once(' ').unwrap_or((h, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut params = HashMap::new();
    let mut s = rest.trim();
    while !s.is_empty() {
        let Some((k, v)) = s.split_once('=') else {
            break;
        };
        let k = k.trim().trim_start_matches(',').trim().to_ascii_lowercase();
        let v = v.trim_start();
        let (val, next) = if let Some(q) = v.strip_prefix('"') {
            match q.find('"') {
                Some(end) => (&q[..end], &q[end + 1..]),
                None => (q, ""),
            }
        } else {
            match v.find(',') {
                Some(end) => (&v[..end], &v[end..]),
                None => (v, ""),
            }
        };
        params.insert(k, val.to_string());
        s = next.trim_start().trim_start_matches(',').trim_start();
    }
    Some(Challenge::Bearer {
        realm: params.remove("realm")?,
        service: params.remove("service"),
        scope: params.remove("scope"),
        insufficient_scope: params
            .get("error")
            .is_some_and(|e| e == "insufficient_scope"),
    })
}

// ---- the backend ------------------------------------------------------------

pub struct OciBackend {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    client: reqwest::Client,
    /// `scheme://host[:port]` (with a sub-path when one was configured).
    base: String,
    /// The registry as shown in messages (no user information).
    shown: String,
    /// `host[:port]` as container tools name it (`{shown_host}/{repo}:{tag}`).
    host: String,
    namespace: String,
    creds: Option<Credentials>,
    /// Configured and issued secrets, scrubbed from every quoted text.
    secrets: Secrets,
    timeout_secs: u64,
    permits: Semaphore,
    /// Repositories the last listing skipped because they failed.
    skipped: Mutex<Vec<String>>,
    /// The scheme the registry challenged with, once known.
    basic: Mutex<bool>,
    /// Bearer tokens by scope.
    tokens: Mutex<HashMap<String, CachedToken>>,
    /// Manifests by digest (immutable).
    manifests: Mutex<HashMap<String, Arc<Parsed>>>,
    /// Last digest seen for `{repo}:{tag}`.
    tag_digests: Mutex<HashMap<String, String>>,
    /// The signature tags (`sha256-<hex>.minisig`) last listed per repository.
    signature_tags: Mutex<HashMap<String, std::collections::HashSet<String>>>,
}

impl fmt::Debug for OciBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OciBackend")
            .field("registry", &self.inner.shown)
            .field("namespace", &self.inner.namespace)
            .field("credentials", &self.inner.creds)
            .field("timeout_seconds", &self.inner.timeout_secs)
            .finish()
    }
}

impl OciBackend {
    /// Builds the backend; reads the credentials file. Errors name the
    /// offending key, never a secret.
    pub fn new(cfg: &OciConfig) -> Result<OciBackend, String> {
        let creds = cfg
            .auth_token_path
            .as_deref()
            .map(read_credentials)
            .transpose()?;
        Self::with_credentials(cfg, creds)
    }

    /// Builds the backend with credentials found elsewhere (see
    /// `crate::auth_files`); `cfg.auth_token_path` is not read.
    pub fn with_credentials(
        cfg: &OciConfig,
        creds: Option<Credentials>,
    ) -> Result<OciBackend, String> {
        let mut url = registry_base(&cfg.registry, cfg.insecure)?;
        let _ = url.set_username("");
        let _ = url.set_password(None);
        let base = url.as_str().trim_end_matches('/').to_string();
        let host = match url.port() {
            Some(p) => format!("{}:{p}", url.host_str().unwrap_or_default()),
            None => url.host_str().unwrap_or_default().to_string(),
        };
        let timeout = Duration::from_secs(cfg.timeout_seconds.max(1));
        let client = crate::deploy::tls_trust(
            reqwest::Client::builder(),
            cfg.verify_ssl,
            cfg.ca_file.as_deref(),
        )
        .map_err(|e| format!("[oci] ca_file {e}"))?
        .connect_timeout(timeout)
        .read_timeout(timeout)
        .user_agent(concat!("extregd/", env!("CARGO_PKG_VERSION")))
        .pool_max_idle_per_host(MAX_IN_FLIGHT)
        .build()
        .map_err(|e| format!("[oci] cannot build the HTTP client: {e}"))?;
        let namespace = cfg.namespace.trim().trim_matches('/').to_string();
        let secrets = Secrets::new(creds.iter().map(|c| c.secret().to_string()));
        Ok(OciBackend {
            inner: Arc::new(Inner {
                client,
                shown: base.clone(),
                base,
                host,
                namespace,
                creds,
                secrets,
                timeout_secs: cfg.timeout_seconds.max(1),
                permits: Semaphore::new(MAX_IN_FLIGHT),
                skipped: Mutex::new(Vec::new()),
                basic: Mutex::new(false),
                tokens: Mutex::new(HashMap::new()),
                manifests: Mutex::new(HashMap::new()),
                tag_digests: Mutex::new(HashMap::new()),
                signature_tags: Mutex::new(HashMap::new()),
            }),
        })
    }

    pub(crate) fn inner(&self) -> &Inner {
        &self.inner
    }

    /// `{namespace}/{name}-{type}`.
    pub fn repository(&self, t: ExtensionType, name: &str) -> String {
        format!("{}/{name}{}", self.inner.namespace, repo_suffix(t))
    }

    /// `host[:port]/{repository}:{tag}`, as skopeo and docker write it.
    pub fn reference(&self, repo: &str, tag: &str) -> String {
        format!("{}/{repo}:{tag}", self.inner.host)
    }

    pub fn namespace(&self) -> &str {
        &self.inner.namespace
    }

    /// `host[:port]` as container tools write it.
    pub fn host(&self) -> &str {
        &self.inner.host
    }

    /// The registry's base URL (no user information).
    pub fn base_url(&self) -> &str {
        &self.inner.shown
    }

    pub fn credentials(&self) -> Option<&Credentials> {
        self.inner.creds.as_ref()
    }
}

// ---- manifests ----------------------------------------------------------------

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Descriptor {
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default)]
    pub annotations: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Deserialize)]
struct RawManifest {
    #[serde(rename = "schemaVersion", default)]
    schema_version: u32,
    #[serde(rename = "mediaType", default)]
    media_type: Option<String>,
    #[serde(rename = "artifactType", default)]
    artifact_type: Option<String>,
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Vec<Descriptor>,
    #[serde(default)]
    annotations: Option<BTreeMap<String, String>>,
}

/// What a manifest says about one version.
#[derive(Debug, Clone)]
pub(crate) struct Parsed {
    pub artifact_type: Option<String>,
    pub layer: Descriptor,
    pub annotations: BTreeMap<String, String>,
}

fn is_digest(d: &str) -> bool {
    d.strip_prefix("sha256:")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Reads an image manifest; `Err` says why it is not an extension artifact.
fn parse_manifest(bytes: &[u8]) -> Result<Parsed, String> {
    let m: RawManifest =
        serde_json::from_slice(bytes).map_err(|e| format!("unreadable manifest: {e}"))?;
    if m.schema_version != 2 {
        return Err(format!("schemaVersion {} is not 2", m.schema_version));
    }
    if let Some(mt) = &m.media_type {
        if mt != OCI_MANIFEST && mt != DOCKER_MANIFEST {
            return Err(format!("media type {mt} is not an image manifest"));
        }
    }
    let config = m.config.ok_or("no config descriptor")?;
    let artifact_type = m
        .artifact_type
        .filter(|a| !a.is_empty())
        .or_else(|| Some(config.media_type.clone()).filter(|a| !a.is_empty()));
    let title = |d: &Descriptor| {
        d.annotations
            .as_ref()
            .and_then(|a| a.get(ANN_TITLE))
            .is_some_and(|t| t.ends_with(".tar.gz") || t.ends_with(".tgz"))
    };
    let layer = m
        .layers
        .iter()
        .find(|d| d.media_type.ends_with("tar+gzip") || title(d))
        .or_else(|| (m.layers.len() == 1).then(|| &m.layers[0]))
        .cloned()
        .ok_or("no tar+gzip layer")?;
    if !is_digest(&layer.digest) {
        return Err(format!("layer digest '{}' is not sha256", layer.digest));
    }
    Ok(Parsed {
        artifact_type,
        layer,
        annotations: m.annotations.unwrap_or_default(),
    })
}

// ---- small helpers --------------------------------------------------------------

/// The `rel="next"` target of a `Link` header.
fn next_link(h: &str) -> Option<String> {
    h.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        params
            .split(';')
            .any(|p| {
                let p = p.trim().replace(' ', "");
                p == "rel=\"next\"" || p == "rel=next"
            })
            .then(|| {
                target
                    .trim()
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_string()
            })
    })
}

fn backoff(attempt: u32) -> Duration {
    let step = BACKOFF_BASE_MS << attempt.min(6);
    Duration::from_millis(step + fastrand::u64(0..=step))
}

/// One request to send (re-sendable: the body is `Bytes`).
pub(crate) struct Req<'a> {
    pub method: Method,
    pub url: String,
    /// `repository:{repo}:{actions}`, or empty for `/v2/` and the catalog.
    pub scope: String,
    pub headers: HeaderMap,
    pub body: Option<Bytes>,
    pub what: &'a str,
    /// Overall timeout; `None` keeps only the client's connect/read timeouts.
    pub timeout: Option<Duration>,
}

impl<'a> Req<'a> {
    pub fn new(method: Method, url: String, scope: String, what: &'a str) -> Req<'a> {
        Req {
            method,
            url,
            scope,
            headers: HeaderMap::new(),
            body: None,
            what,
            timeout: None,
        }
    }
}

pub(crate) fn pull_scope(repo: &str) -> String {
    format!("repository:{repo}:pull")
}

impl Inner {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The HTTP client (for requests `send` cannot make: streamed bodies).
    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.client
    }

    /// Forgets the bearer token cached for `scope` (it was refused).
    pub(crate) fn forget_token(&self, scope: &str) {
        self.tokens.lock().remove(scope);
    }

    pub fn api_timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs)
    }

    pub async fn permit(&self) -> Result<SemaphorePermit<'_>, BackendError> {
        self.permits
            .acquire()
            .await
            .map_err(|_| BackendError::Io("oci backend is shutting down".into()))
    }

    pub(crate) fn same_origin(&self, url: &str) -> bool {
        match (Url::parse(url), Url::parse(&self.base)) {
            (Ok(a), Ok(b)) => a.origin() == b.origin(),
            _ => false,
        }
    }

    /// Removes secrets (configured and issued) from a text quoted from the
    /// registry.
    fn scrub(&self, text: &str) -> String {
        self.secrets.scrub(text)
    }

    pub(crate) fn transport_error(&self, e: reqwest::Error, what: &str) -> BackendError {
        http::transport_error(
            e,
            &self.secrets,
            &self.shown,
            what,
            self.timeout_secs,
            "oci",
        )
    }

    fn read_error(&self, e: http::ReadError, what: &str) -> BackendError {
        http::read_error(
            e,
            &self.secrets,
            &self.shown,
            what,
            self.timeout_secs,
            "oci",
        )
    }

    pub(crate) async fn status_error(&self, resp: reqwest::Response, what: &str) -> BackendError {
        let status = resp.status();
        let retry = http::retry_after(resp.headers()).map(|d| d.as_secs());
        let body = http::error_body(resp).await;
        #[derive(Deserialize)]
        struct Errs {
            #[serde(default)]
            errors: Vec<E>,
        }
        #[derive(Deserialize)]
        struct E {
            #[serde(default)]
            code: String,
            #[serde(default)]
            message: String,
        }
        let message = serde_json::from_slice::<Errs>(&body)
            .ok()
            .and_then(|e| e.errors.into_iter().next())
            .map(|e| format!(": {} {}", e.code, self.scrub(&e.message)))
            .unwrap_or_default();
        match status {
            StatusCode::UNAUTHORIZED => BackendError::Auth(if self.creds.is_some() {
                format!("the registry rejected the credentials for {what} (401){message}")
            } else {
                format!(
                    "the registry requires credentials for {what} (401); set [oci] auth_token_path{message}"
                )
            }),
            StatusCode::FORBIDDEN => {
                BackendError::Auth(format!("the registry refused {what} (403){message}"))
            }
            StatusCode::NOT_FOUND => BackendError::NotFound(format!("{what} (404){message}")),
            StatusCode::TOO_MANY_REQUESTS => BackendError::RateLimited(retry),
            s => BackendError::Upstream(format!(
                "the registry answered {} for {what}{message}",
                s.as_u16()
            )),
        }
    }

    /// The `Authorization` header to send up front for `scope`, if any.
    pub(crate) fn auth_for(&self, scope: &str) -> Option<HeaderValue> {
        match self.creds.as_ref() {
            Some(Credentials::Token(t)) => {
                let mut h = HeaderValue::from_str(&format!("Bearer {t}")).ok()?;
                h.set_sensitive(true);
                return Some(h);
            }
            Some(Credentials::Basic { .. }) if *self.basic.lock() => {
                return self.basic_header();
            }
            _ => {}
        }
        let tokens = self.tokens.lock();
        tokens
            .get(scope)
            .filter(|t| t.until > Instant::now())
            .map(|t| t.header.clone())
    }

    fn basic_header(&self) -> Option<HeaderValue> {
        let Some(Credentials::Basic { user, password }) = &self.creds else {
            return None;
        };
        // reqwest's own encoding, without a request to build.
        let req = self
            .client
            .get(&self.base)
            .basic_auth(user, Some(password))
            .build()
            .ok()?;
        let mut h = req.headers().get(AUTHORIZATION)?.clone();
        h.set_sensitive(true);
        Some(h)
    }

    /// Answers a challenge so the next attempt can succeed.
    async fn authenticate(
        &self,
        ch: Challenge,
        scope: &str,
        what: &str,
    ) -> Result<(), BackendError> {
        match ch {
            Challenge::Basic => match &self.creds {
                Some(Credentials::Basic { .. }) => {
                    *self.basic.lock() = true;
                    Ok(())
                }
                Some(Credentials::Token(_)) => Err(BackendError::Auth(format!(
                    "the registry asks for user:password (Basic) for {what}; the auth file holds a bare token"
                ))),
                None => Err(BackendError::Auth(format!(
                    "the registry requires credentials for {what} (401); set [oci] auth_token_path"
                ))),
            },
            Challenge::Bearer {
                realm,
                service,
                scope: ch_scope,
                ..
            } => {
                if matches!(self.creds, Some(Credentials::Token(_))) {
                    return Err(BackendError::Auth(format!(
                        "the registry rejected the bearer token for {what} (401)"
                    )));
                }
                let mut url = Url::parse(&realm).map_err(|_| {
                    BackendError::Auth(format!(
                        "the registry's token realm is not a URL ({})",
                        self.scrub(&realm)
                    ))
                })?;
                {
                    let mut q = url.query_pairs_mut();
                    if let Some(s) = &service {
                        q.append_pair("service", s);
                    }
                    let wanted = ch_scope.unwrap_or_else(|| scope.to_string());
                    for s in wanted.split(' ').filter(|s| !s.is_empty()) {
                        q.append_pair("scope", s);
                    }
                }
                // Basic credentials go to the realm only on the registry's
                // own origin or over HTTPS: never in clear text elsewhere.
                // (A token service beside the registry on the same loopback
                // host, another port, is allowed: nothing leaves the machine.)
                let same_loopback_host = Url::parse(&self.base).is_ok_and(|b| {
                    b.host_str() == url.host_str()
                        && url.host_str().is_some_and(|h| {
                            h.eq_ignore_ascii_case("localhost")
                                || h.trim_matches(|c| c == '[' || c == ']')
                                    .parse::<std::net::IpAddr>()
                                    .is_ok_and(|ip| ip.is_loopback())
                        })
                });
                let may_send = self.same_origin(url.as_str())
                    || url.scheme() == "https"
                    || same_loopback_host;
                let mut req = self.client.get(url).timeout(self.api_timeout());
                match self.basic_header() {
                    Some(h) if may_send => req = req.header(AUTHORIZATION, h),
                    Some(_) => tracing::warn!(
                        "oci: the token realm is plain HTTP on another origin; asking for a token without sending credentials"
                    ),
                    None => {}
                }
                let resp = req
                    .send()
                    .await
                    .map_err(|e| self.transport_error(e, "a registry token"))?;
                if !resp.status().is_success() {
                    let s = resp.status().as_u16();
                    return Err(BackendError::Auth(format!(
                        "the token service refused a token for {what} ({s})"
                    )));
                }
                #[derive(Deserialize)]
                struct TokenBody {
                    #[serde(default)]
                    token: Option<String>,
                    #[serde(default)]
                    access_token: Option<String>,
                    #[serde(default)]
                    expires_in: Option<u64>,
                }
                let body = http::read_limited(resp, MAX_TOKEN_BYTES)
                    .await
                    .map_err(|e| self.read_error(e, "a registry token"))?;
                let t: TokenBody = serde_json::from_slice(&body).map_err(|_| {
                    BackendError::Auth("the token service sent an unreadable answer".into())
                })?;
                let token = t
                    .token
                    .or(t.access_token)
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| BackendError::Auth("the token service sent no token".into()))?;
                let mut header = HeaderValue::from_str(&format!("Bearer {token}"))
                    .map_err(|_| BackendError::Auth("the token service sent a malformed token".into()))?;
                header.set_sensitive(true);
                self.secrets.issued(&token);
                // Clamped: an absurd `expires_in` must not overflow a clock.
                let life = t.expires_in.unwrap_or(60).clamp(1, MAX_TOKEN_LIFE);
                let margin = (life / 10).min(10);
                let mut tokens = self.tokens.lock();
                if tokens.len() >= MAX_CACHED {
                    tokens.clear();
                }
                tokens.insert(
                    scope.to_string(),
                    CachedToken {
                        header,
                        until: Instant::now()
                            .checked_add(Duration::from_secs(life - margin))
                            .unwrap_or_else(Instant::now),
                    },
                );
                Ok(())
            }
        }
    }

    /// Sends `r` with credentials, answering auth challenges once and
    /// retrying connect errors, 429 and 5xx with backoff. Error statuses
    /// become `BackendError`s; success and redirects-followed answers are
    /// returned.
    pub async fn send(&self, r: &Req<'_>) -> Result<reqwest::Response, BackendError> {
        let mut reauthed = false;
        let mut attempt = 0u32;
        loop {
            let mut req = self
                .client
                .request(r.method.clone(), &r.url)
                .headers(r.headers.clone());
            if let Some(t) = r.timeout {
                req = req.timeout(t);
            }
            if let Some(b) = &r.body {
                req = req.body(b.clone());
            }
            // Credentials go only to the registry's own origin.
            if self.same_origin(&r.url) {
                if let Some(h) = self.auth_for(&r.scope) {
                    req = req.header(AUTHORIZATION, h);
                }
            }
            let resp = match req.send().await {
                Ok(resp) => resp,
                Err(e) => {
                    if (e.is_connect() || e.is_request() && !e.is_timeout())
                        && attempt < MAX_RETRIES
                    {
                        tokio::time::sleep(backoff(attempt)).await;
                        attempt += 1;
                        continue;
                    }
                    return Err(self.transport_error(e, r.what));
                }
            };
            let status = resp.status();
            if status.is_success() {
                return Ok(resp);
            }
            if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                let ch = resp
                    .headers()
                    .get(WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_challenge);
                let retry = match &ch {
                    Some(Challenge::Bearer {
                        insufficient_scope, ..
                    }) => status == StatusCode::UNAUTHORIZED || *insufficient_scope,
                    Some(Challenge::Basic) => status == StatusCode::UNAUTHORIZED,
                    None => false,
                };
                if retry && !reauthed {
                    reauthed = true;
                    self.tokens.lock().remove(&r.scope);
                    self.authenticate(ch.expect("challenge checked"), &r.scope, r.what)
                        .await?;
                    continue;
                }
                return Err(self.status_error(resp, r.what).await);
            }
            if (status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error())
                && attempt < MAX_RETRIES
            {
                tracing::debug!(status = status.as_u16(), what = r.what, "oci: retrying");
                // The registry's own `Retry-After` (bounded) when it sent one.
                let wait = http::retry_after(resp.headers()).unwrap_or_else(|| backoff(attempt));
                drop(resp);
                tokio::time::sleep(wait).await;
                attempt += 1;
                continue;
            }
            return Err(self.status_error(resp, r.what).await);
        }
    }

    /// Sends `r` holding a permit and reads the (small) body.
    pub async fn send_read(&self, r: &Req<'_>) -> Result<(HeaderMap, Bytes), BackendError> {
        let _permit = self.permit().await?;
        let resp = self.send(r).await?;
        let headers = resp.headers().clone();
        // Bounded whether or not a length was announced (chunked answers).
        let bytes = http::read_limited(resp, MAX_JSON_BYTES)
            .await
            .map_err(|e| self.read_error(e, r.what))?;
        Ok((headers, bytes))
    }

    /// Every item of a paged list (`_catalog` or `tags/list`), following
    /// `Link` headers.
    pub(crate) async fn all_pages(
        &self,
        path: &str,
        scope: &str,
        what: &str,
    ) -> Result<Vec<String>, BackendError> {
        #[derive(Deserialize)]
        struct Page {
            #[serde(default)]
            repositories: Option<Vec<String>>,
            #[serde(default)]
            tags: Option<Vec<String>>,
        }
        let mut url = self.url(&format!("{path}?n={PAGE_SIZE}"));
        let mut out = Vec::new();
        let mut pages = 0;
        // Every page URL read: a `Link` back to one of them is a loop.
        let mut seen = std::collections::HashSet::new();
        let mut retried_without_n = false;
        loop {
            seen.insert(url.clone());
            let mut req = Req::new(Method::GET, url.clone(), scope.to_string(), what);
            req.timeout = Some(self.api_timeout());
            let (headers, body) = match self.send_read(&req).await {
                Ok(x) => x,
                // distribution: `n` above `catalog.maxentries` is a 400;
                // ask again with the registry's own page size.
                Err(BackendError::Upstream(m))
                    if pages == 0 && !retried_without_n && m.contains(" 400 ") =>
                {
                    retried_without_n = true;
                    url = self.url(path);
                    continue;
                }
                Err(e) => return Err(e),
            };
            let page: Page = serde_json::from_slice(&body).map_err(|e| {
                BackendError::Upstream(format!(
                    "the registry sent an unreadable page of {what}: {e}"
                ))
            })?;
            let items = page.repositories.or(page.tags).unwrap_or_default();
            let empty = items.is_empty();
            out.extend(items);
            pages += 1;
            let next = headers
                .get_all("link")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .find_map(next_link);
            match next {
                Some(n) if !empty && pages < MAX_PAGES => {
                    let joined = Url::parse(&self.base)
                        .and_then(|b| b.join(&n))
                        .map_err(|_| {
                            BackendError::Upstream(format!(
                                "the registry sent a bad Link for {what}"
                            ))
                        })?;
                    if joined.origin() != Url::parse(&self.base).expect("base parses").origin() {
                        return Err(BackendError::Upstream(format!(
                            "the registry's Link for {what} points to another host"
                        )));
                    }
                    if seen.contains(joined.as_str()) {
                        return Err(BackendError::Upstream(format!(
                            "the registry's Link for {what} loops back to a page already read (page {pages})"
                        )));
                    }
                    url = joined.to_string();
                }
                Some(_) if pages >= MAX_PAGES => {
                    return Err(BackendError::Upstream(format!(
                        "the registry sent more than {MAX_PAGES} pages of {what}; refused"
                    )));
                }
                _ => break,
            }
        }
        Ok(out)
    }

    /// Every `{namespace}/{name}-{type}` repository.
    async fn extension_repos(&self) -> Result<Vec<(ExtensionType, String, String)>, BackendError> {
        let repos = self
            .all_pages("/v2/_catalog", "registry:catalog:*", "the registry catalog")
            .await?;
        let mut out: Vec<(ExtensionType, String, String)> = repos
            .iter()
            .filter_map(|r| {
                parse_repo(&self.namespace, r).map(|(t, n)| (t, n.to_string(), r.clone()))
            })
            .collect();
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// The semver tags of a repository, one per version (a tag without a
    /// leading `v` wins over one with it); empty when the repository is gone.
    async fn version_tags(
        &self,
        repo: &str,
    ) -> Result<Vec<(semver::Version, String)>, BackendError> {
        let what = format!("tags of {repo}");
        let tags = match self
            .all_pages(&format!("/v2/{repo}/tags/list"), &pull_scope(repo), &what)
            .await
        {
            Ok(t) => t,
            Err(BackendError::NotFound(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut by_version: BTreeMap<semver::Version, String> = BTreeMap::new();
        let sigs: std::collections::HashSet<String> = tags
            .iter()
            .filter(|t| crate::signature::is_oci_signature_tag(t))
            .cloned()
            .collect();
        {
            let mut st = self.signature_tags.lock();
            if st.len() >= MAX_CACHED {
                st.clear();
            }
            st.insert(repo.to_string(), sigs);
        }
        for tag in tags {
            let Ok(v) = parse_version(&tag) else {
                tracing::debug!(%repo, %tag, "oci: ignoring a tag that is not a version");
                continue;
            };
            match by_version.get(&v) {
                Some(existing) if !existing.starts_with('v') => {}
                _ => {
                    by_version.insert(v, tag);
                }
            }
        }
        Ok(by_version.into_iter().collect())
    }

    /// The manifest a tag points to (`None` when it is gone or is not an
    /// extension artifact), and its digest.
    async fn manifest(
        &self,
        repo: &str,
        tag: &str,
    ) -> Result<Option<(String, Arc<Parsed>)>, BackendError> {
        let key = format!("{repo}:{tag}");
        let what = format!("manifest {repo}:{tag}");
        let url = self.url(&format!("/v2/{repo}/manifests/{tag}"));
        let accept = HeaderValue::from_static(
            "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json",
        );
        let known = self.tag_digests.lock().get(&key).cloned();
        if known.is_some() {
            let mut req = Req::new(Method::HEAD, url.clone(), pull_scope(repo), &what);
            req.headers.insert(ACCEPT, accept.clone());
            req.timeout = Some(self.api_timeout());
            let head = match self.send_read(&req).await {
                Ok((h, _)) => h,
                Err(BackendError::NotFound(_)) => return Ok(None),
                Err(e) => return Err(e),
            };
            if let Some(d) = head
                .get("docker-content-digest")
                .and_then(|v| v.to_str().ok())
            {
                if let Some(p) = self.manifests.lock().get(d).cloned() {
                    return Ok(Some((d.to_string(), p)));
                }
            }
        }
        let mut req = Req::new(Method::GET, url, pull_scope(repo), &what);
        req.headers.insert(ACCEPT, accept);
        req.timeout = Some(self.api_timeout());
        let (headers, body) = match self.send_read(&req).await {
            Ok(x) => x,
            Err(BackendError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        let digest = crate::backend::sha256_tag(&body);
        if let Some(announced) = headers
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
        {
            if announced.starts_with("sha256:") && !announced.eq_ignore_ascii_case(&digest) {
                return Err(BackendError::Integrity {
                    expected: announced.to_string(),
                    actual: digest,
                });
            }
        }
        let parsed = match parse_manifest(&body) {
            Ok(p) => Arc::new(p),
            Err(why) => {
                tracing::warn!(%repo, %tag, "oci: skipping a tag that is not an extension artifact: {why}");
                return Ok(None);
            }
        };
        {
            let mut m = self.manifests.lock();
            if m.len() >= MAX_CACHED {
                m.clear();
            }
            m.insert(digest.clone(), parsed.clone());
        }
        {
            let mut t = self.tag_digests.lock();
            if t.len() >= MAX_CACHED {
                t.clear();
            }
            t.insert(key, digest.clone());
        }
        Ok(Some((digest, parsed)))
    }

    /// The record of one version, or `None` when its annotations say it
    /// belongs to another extension.
    fn entry(
        &self,
        t: ExtensionType,
        name: &str,
        repo: &str,
        (tag, semver): (&str, semver::Version),
        digest: String,
        m: &Parsed,
    ) -> Option<VersionEntry> {
        let ann = |k: &str| {
            m.annotations
                .get(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        if let Some(n) = ann(ANN_NAME) {
            if n != name {
                tracing::warn!(%repo, %tag, annotated = %n, "oci: skipping a tag annotated with another extension name");
                return None;
            }
        }
        if let Some(ty) = ann(ANN_TYPE) {
            if ty.parse::<ExtensionType>().ok() != Some(t) {
                tracing::warn!(%repo, %tag, annotated = %ty, "oci: skipping a tag annotated with another extension type");
                return None;
            }
        }
        if let Some(v) = ann(ANN_VERSION) {
            if parse_version(&v).ok().as_ref() != Some(&semver) {
                tracing::warn!(%repo, %tag, annotated = %v, "oci: the version annotation differs from the tag; the tag wins");
            }
        }
        tracing::trace!(%repo, %tag, artifact_type = ?m.artifact_type, "oci manifest");
        let tags = ann(ANN_TAGS)
            .map(|s| {
                s.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let list = |k: &str| -> Vec<String> {
            ann(k)
                .map(|s| {
                    serde_json::from_str::<Vec<String>>(&s).unwrap_or_else(|_| {
                        tracing::warn!(%repo, %tag, annotation = k, "oci: not a JSON array of strings; ignored");
                        Vec::new()
                    })
                })
                .unwrap_or_default()
        };
        let layer = m.layer.digest.to_ascii_lowercase();
        let signed = self
            .signature_tags
            .lock()
            .get(repo)
            .is_some_and(|s| s.contains(&crate::signature::oci_signature_tag(&layer)));
        Some(VersionEntry {
            record: Extension {
                name: name.to_string(),
                ext_type: t,
                version: semver.to_string(),
                description: ann(ANN_DESCRIPTION).unwrap_or_default(),
                author: ann(ANN_AUTHORS),
                repository: ann(ANN_SOURCE),
                source: Source::Oci,
                published_at: ann(ANN_CREATED).map(|c| utc(&c)),
                download_url: None,
                checksum: Some(m.layer.digest.to_ascii_lowercase()),
                size: Some(m.layer.size),
                tags,
                prerelease: !semver.pre.is_empty(),
                stale: false,
                requires: list(ANN_REQUIRES),
                dependencies: list(ANN_DEPENDENCIES),
                signature: extreg_shared::SignatureState {
                    signed: Some(signed),
                    ..Default::default()
                },
            },
            semver,
            locator: format!("{repo}@{}", m.layer.digest.to_ascii_lowercase()),
            revision: digest,
        })
    }

    async fn repo_versions(
        &self,
        t: ExtensionType,
        name: &str,
        repo: &str,
    ) -> Result<Vec<VersionEntry>, BackendError> {
        let tags = self.version_tags(repo).await?;
        let found: Vec<Option<VersionEntry>> = futures::stream::iter(tags)
            .map(|(v, tag)| async move {
                Ok::<_, BackendError>(
                    self.manifest(repo, &tag)
                        .await?
                        .and_then(|(d, m)| self.entry(t, name, repo, (&tag, v), d, &m)),
                )
            })
            .buffer_unordered(MAX_IN_FLIGHT * 2)
            .try_collect()
            .await?;
        Ok(found.into_iter().flatten().collect())
    }

    /// The newest version of a repository: tags by precedence (stable
    /// first), the first whose manifest is an extension artifact.
    async fn repo_newest(
        &self,
        t: ExtensionType,
        name: &str,
        repo: &str,
    ) -> Result<Option<Extension>, BackendError> {
        let mut tags = self.version_tags(repo).await?;
        tags.sort_by(|a, b| {
            (a.0.pre.is_empty(), &a.0)
                .cmp(&(b.0.pre.is_empty(), &b.0))
                .reverse()
        });
        for (v, tag) in tags {
            if let Some((d, m)) = self.manifest(repo, &tag).await? {
                if let Some(e) = self.entry(t, name, repo, (&tag, v), d, &m) {
                    return Ok(Some(e.record));
                }
            }
        }
        Ok(None)
    }

    /// The digest a tag points to (`HEAD` of the manifest), `None` when absent.
    pub async fn tag_digest(
        &self,
        repo: &str,
        tag: &str,
        scope: &str,
    ) -> Result<Option<String>, BackendError> {
        let what = format!("manifest {repo}:{tag}");
        let mut req = Req::new(
            Method::HEAD,
            self.url(&format!("/v2/{repo}/manifests/{tag}")),
            scope.to_string(),
            &what,
        );
        req.headers.insert(
            ACCEPT,
            HeaderValue::from_static(
                "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.index.v1+json",
            ),
        );
        req.timeout = Some(self.api_timeout());
        match self.send_read(&req).await {
            Ok((h, _)) => Ok(Some(
                h.get("docker-content-digest")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
                    .ok_or_else(|| {
                        BackendError::Upstream(format!(
                            "the registry sent no Docker-Content-Digest for {what}"
                        ))
                    })?,
            )),
            Err(BackendError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Forgets what is known about a tag (after a push or delete).
    pub fn forget_tag(&self, repo: &str, tag: &str) {
        self.tag_digests.lock().remove(&format!("{repo}:{tag}"));
    }
}

#[async_trait]
impl Backend for OciBackend {
    fn source(&self) -> Source {
        Source::Oci
    }

    /// Every extension; a repository that fails is skipped with a warning
    /// (and shown by [`Backend::skipped`]) instead of failing the whole
    /// listing, which must finish within [`LIST_DEADLINE`].
    async fn list(&self) -> Result<Vec<Extension>, BackendError> {
        let inner = &*self.inner;
        let work = async {
            let repos = inner.extension_repos().await?;
            let results: Vec<(String, Result<Option<Extension>, BackendError>)> =
                futures::stream::iter(repos)
                    .map(|(t, name, repo)| async move {
                        let r = inner.repo_newest(t, &name, &repo).await;
                        (repo, r)
                    })
                    .buffer_unordered(MAX_IN_FLIGHT * 2)
                    .collect()
                    .await;
            super::isolate("oci", results, &inner.skipped)
        };
        match tokio::time::timeout(LIST_DEADLINE, work).await {
            Ok(r) => r,
            Err(_) => Err(BackendError::Timeout(LIST_DEADLINE.as_secs())),
        }
    }

    fn identity(&self) -> String {
        format!("oci:{}/{}", self.inner.base, self.inner.namespace)
    }

    fn skipped(&self) -> Vec<String> {
        self.inner.skipped.lock().clone()
    }

    async fn versions(
        &self,
        ext_type: ExtensionType,
        name: &str,
    ) -> Result<Vec<VersionEntry>, BackendError> {
        let repo = self.repository(ext_type, name);
        // A name no OCI repository can have (upper case, `a.`, `a-.b`)
        // cannot exist here: asking would only earn a 400 NAME_INVALID.
        if validate_name(name).is_err() || !valid_repository(&repo) {
            return Ok(Vec::new());
        }
        let mut out = self.inner.repo_versions(ext_type, name, &repo).await?;
        out.sort_by(|a, b| b.semver.cmp(&a.semver));
        Ok(out)
    }

    async fn fetch(&self, entry: &VersionEntry) -> Result<Artifact, BackendError> {
        let inner = &*self.inner;
        let Some((repo, digest)) = entry.locator.rsplit_once('@') else {
            return Err(BackendError::Upstream(format!(
                "bad oci locator for {} {}",
                entry.record.name, entry.record.version
            )));
        };
        let what = format!(
            "the {} {} {} blob",
            entry.record.ext_type, entry.record.name, entry.record.version
        );
        let req = Req::new(
            Method::GET,
            inner.url(&format!("/v2/{repo}/blobs/{digest}")),
            pull_scope(repo),
            &what,
        );
        let resp = {
            let _permit = inner.permit().await?;
            inner.send(&req).await?
        };
        let size = entry.record.size.or(resp.content_length());
        let stream = resp
            .bytes_stream()
            .map_err(|e| std::io::Error::other(root_cause(&e.without_url())));
        Ok(Artifact {
            stream: Box::pin(stream),
            size,
            digest: Some(digest.to_string()),
        })
    }

    async fn signature(&self, entry: &VersionEntry) -> Result<Option<Vec<u8>>, BackendError> {
        let inner = &*self.inner;
        let Some((repo, layer)) = entry.locator.rsplit_once('@') else {
            return Ok(None);
        };
        let tag = crate::signature::oci_signature_tag(layer);
        let what = format!("signature manifest {repo}:{tag}");
        let mut req = Req::new(
            Method::GET,
            inner.url(&format!("/v2/{repo}/manifests/{tag}")),
            pull_scope(repo),
            &what,
        );
        req.headers
            .insert(ACCEPT, HeaderValue::from_static(OCI_MANIFEST));
        req.timeout = Some(inner.api_timeout());
        let body = match inner.send_read(&req).await {
            Ok((_, b)) => b,
            Err(BackendError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        #[derive(Deserialize)]
        struct Desc {
            digest: String,
            size: u64,
        }
        #[derive(Deserialize)]
        struct SigManifest {
            layers: Vec<Desc>,
        }
        let m: SigManifest = serde_json::from_slice(&body)
            .map_err(|e| BackendError::Upstream(format!("{what} is not a manifest: {e}")))?;
        let Some(l) = m.layers.first().filter(|l| is_digest(&l.digest)) else {
            return Err(BackendError::Upstream(format!(
                "{what} has no signature layer"
            )));
        };
        if l.size > crate::signature::MAX_SIGNATURE_BYTES as u64 {
            return Err(BackendError::Upstream(format!(
                "{what}: the signature layer is too large ({} bytes)",
                l.size
            )));
        }
        let what = format!("signature blob of {repo}:{tag}");
        let mut req = Req::new(
            Method::GET,
            inner.url(&format!("/v2/{repo}/blobs/{}", l.digest)),
            pull_scope(repo),
            &what,
        );
        req.timeout = Some(inner.api_timeout());
        let (_, bytes) = inner.send_read(&req).await?;
        let got = crate::backend::sha256_tag(&bytes);
        if !got.eq_ignore_ascii_case(&l.digest) {
            return Err(BackendError::Integrity {
                expected: l.digest.clone(),
                actual: got,
            });
        }
        Ok(Some(bytes.to_vec()))
    }

    async fn health(&self) -> Result<(), BackendError> {
        let inner = &*self.inner;
        let mut req = Req::new(Method::GET, inner.url("/v2/"), String::new(), "GET /v2/");
        req.timeout = Some(inner.api_timeout());
        inner.send_read(&req).await.map(|_| ())
    }
}

/// The OCI distribution grammar of a repository name: `/`-separated
/// components `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`, 255 bytes at most.
pub fn valid_repository(repo: &str) -> bool {
    fn component(c: &str) -> bool {
        let b = c.as_bytes();
        let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
        if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
            return false;
        }
        let mut i = 0;
        while i < b.len() {
            if alnum(b[i]) {
                i += 1;
                continue;
            }
            let start = i;
            while i < b.len() && !alnum(b[i]) {
                i += 1;
            }
            let sep = &c[start..i];
            if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-')) {
                return false;
            }
        }
        true
    }
    repo.len() <= 255 && repo.split('/').all(component)
}

#[cfg(test)]
mod tests {

    #[test]
    fn repository_names_follow_the_distribution_grammar() {
        for ok in [
            "ns/aws-provider",
            "a/b_c/d__e",
            "ns/my.ext-taskserv",
            "x/a--b",
        ] {
            assert!(super::valid_repository(ok), "{ok}");
        }
        for bad in [
            "ns/AWS-provider",
            "ns/a.-provider",
            "ns/a._b",
            "ns/a___b",
            "ns/-a",
            "ns//a",
            "ns/a.",
        ] {
            assert!(!super::valid_repository(bad), "{bad}");
        }
    }
    use super::*;

    fn cfg(registry: &str) -> OciConfig {
        OciConfig {
            registry: registry.into(),
            namespace: "ns".into(),
            auth_token_path: None,
            timeout_seconds: 5,
            verify_ssl: true,
            insecure: false,
            ca_file: None,
        }
    }

    #[test]
    fn registry_url_rule() {
        let b = |r: &str, i: bool| registry_base(r, i).unwrap().to_string();
        assert_eq!(b("127.0.0.1:5000", false), "http://127.0.0.1:5000/");
        assert_eq!(b("localhost:5000", false), "http://localhost:5000/");
        assert_eq!(b("[::1]:5000", false), "http://[::1]:5000/");
        assert_eq!(b("localhost", false), "http://localhost/");
        assert_eq!(
            b("registry.example.com", false),
            "https://registry.example.com/"
        );
        assert_eq!(b("reg.example:5000", false), "https://reg.example:5000/");
        assert_eq!(b("reg.example:5000", true), "http://reg.example:5000/");
        assert_eq!(
            b("https://127.0.0.1:5000", false),
            "https://127.0.0.1:5000/"
        );
        assert_eq!(b("http://reg.example/", false), "http://reg.example/");
        assert!(registry_base("ftp://x", false).is_err());
    }

    #[test]
    fn repositories_map_to_extensions() {
        assert_eq!(
            parse_repo("ns", "ns/aws-provider"),
            Some((ExtensionType::Provider, "aws"))
        );
        assert_eq!(
            parse_repo("ns", "ns/kubernetes-taskserv"),
            Some((ExtensionType::Taskserv, "kubernetes"))
        );
        assert_eq!(
            parse_repo("a/b", "a/b/web-cluster"),
            Some((ExtensionType::Cluster, "web"))
        );
        assert_eq!(parse_repo("ns", "ns/website"), None);
        assert_eq!(parse_repo("ns", "other/aws-provider"), None);
        assert_eq!(parse_repo("ns", "ns/x/aws-provider"), None);
        assert_eq!(parse_repo("ns", "ns/-provider"), None);
        assert_eq!(parse_repo("ns", "nsx/aws-provider"), None);
    }

    #[test]
    fn challenges_parse() {
        assert_eq!(
            parse_challenge("Basic realm=\"Registry Realm\""),
            Some(Challenge::Basic)
        );
        assert_eq!(
            parse_challenge(
                "Bearer realm=\"https://auth.example/token\",service=\"registry.example\",scope=\"repository:ns/a-provider:pull,push\",error=\"insufficient_scope\""
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.example/token".into(),
                service: Some("registry.example".into()),
                scope: Some("repository:ns/a-provider:pull,push".into()),
                insufficient_scope: true,
            })
        );
        assert_eq!(parse_challenge("Negotiate x"), None);
        assert_eq!(parse_challenge("Bearer service=\"x\""), None);
    }

    #[test]
    fn links_parse() {
        assert_eq!(
            next_link("</v2/_catalog?last=b&n=100>; rel=\"next\"").as_deref(),
            Some("/v2/_catalog?last=b&n=100")
        );
        assert_eq!(next_link("</x>; rel=\"prev\""), None);
        assert_eq!(
            next_link("</a>; rel=\"prev\", </b>; rel=next").as_deref(),
            Some("/b")
        );
    }

    #[test]
    fn credentials_file_formats_and_debug() {
        match Credentials::parse("\n  bob:pa:ss  \n") {
            Some(Credentials::Basic { user, password }) => {
                assert_eq!((user.as_str(), password.as_str()), ("bob", "pa:ss"))
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            Credentials::parse("abc.def.ghi"),
            Some(Credentials::Token(t)) if t == "abc.def.ghi"
        ));
        assert!(Credentials::parse("\n \n").is_none());
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("auth");
        std::fs::write(&p, "robot:s3cr3t-pass\n").unwrap();
        let mut c = cfg("127.0.0.1:1");
        c.auth_token_path = Some(p);
        let b = OciBackend::new(&c).unwrap();
        let shown = format!("{b:?}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(shown.contains("robot:<redacted>"), "{shown}");
    }

    #[test]
    fn manifests_parse() {
        let l = "a".repeat(64);
        let m = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","artifactType":"{ARTIFACT_TYPE}",
            "config":{{"mediaType":"{EMPTY_CONFIG}","digest":"{EMPTY_DIGEST}","size":2}},
            "layers":[{{"mediaType":"{LAYER_MEDIA_TYPE}","digest":"sha256:{l}","size":42}}],
            "annotations":{{"{ANN_TAGS}":"a, b"}}}}"#
        );
        let p = parse_manifest(m.as_bytes()).unwrap();
        assert_eq!(p.layer.size, 42);
        assert_eq!(p.artifact_type.as_deref(), Some(ARTIFACT_TYPE));
        let no_type = m.replace(&format!("\"artifactType\":\"{ARTIFACT_TYPE}\","), "");
        assert_eq!(
            parse_manifest(no_type.as_bytes())
                .unwrap()
                .artifact_type
                .as_deref(),
            Some(EMPTY_CONFIG)
        );
        let index = m.replace(OCI_MANIFEST, "application/vnd.oci.image.index.v1+json");
        assert!(parse_manifest(index.as_bytes()).is_err());
        assert!(parse_manifest(b"{\"schemaVersion\":1}").is_err());
    }

    #[test]
    fn times_become_utc() {
        assert_eq!(utc("2024-05-01T10:00:00+02:00"), "2024-05-01T08:00:00Z");
        assert_eq!(
            utc("2024-05-01T10:00:00.123456789Z"),
            "2024-05-01T10:00:00Z"
        );
        assert_eq!(utc("garbage"), "garbage");
    }

    #[tokio::test]
    async fn unreachable_registry_is_named_without_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("auth");
        std::fs::write(&p, "u:s3cr3t").unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut c = cfg(&format!("127.0.0.1:{port}"));
        c.auth_token_path = Some(p);
        let b = OciBackend::new(&c).unwrap();
        let e = b.health().await.unwrap_err();
        assert!(matches!(e, BackendError::Unreachable(_)), "{e:?}");
        let m = e.to_string();
        assert!(m.contains(&format!("127.0.0.1:{port}")), "{m}");
        assert!(!m.contains("s3cr3t"), "{m}");
    }
}

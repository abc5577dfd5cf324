//! A client of one registry speaking the OCI Distribution API (`/v2/`):
//! typed endpoint methods (catalog, tags, manifest get/head/put/delete,
//! blob get/push), each URL made by the one builder [`RegistryClient::url`],
//! sent with credentials, retries and bounded reads.
//!
//! **Registry URL rule.** `[oci] registry` is a URL (`http://host:5000`,
//! `https://host`) or a bare `host[:port]`. A bare loopback host
//! (`localhost`, `127.x.y.z`, `::1`) means plain HTTP, any other bare host
//! HTTPS, as container tools do; `insecure = true` makes every bare host
//! plain HTTP. `verify_ssl = false` accepts self-signed certificates.
//!
//! **Requests.** One `reqwest` client; at most `[oci] concurrency` requests
//! in flight (see [`RegistryClient::concurrency`]). Every API request has an overall timeout (`timeout_seconds`);
//! blob downloads a connect timeout and a per-read timeout. Connect errors,
//! 429 and 5xx answers are retried [`MAX_RETRIES`] times with exponential
//! backoff and jitter (or the registry's bounded `Retry-After`). One
//! re-authentication is tried on a 401 or a 403 `insufficient_scope` (see
//! [`super::auth`]); a second refusal is an auth error. Credentials go only
//! to the registry's own origin: redirects (to a CDN or object store) are
//! followed without `Authorization` (reqwest drops sensitive headers on a
//! cross-origin redirect), and an upload `Location` elsewhere is refused.
//!
//! **Paging.** `_catalog` and `tags/list` follow `Link` headers (see
//! [`super::paging`]).

use super::auth::{self, Auth, Credentials};
use super::manifest::{MAX_JSON_BYTES, OCI_MANIFEST};
use crate::backend::http::{self, Secrets, Upstream};
use crate::backend::{root_cause, sha256_tag, BackendError, ByteStream};
use crate::config::OciConfig;
use bytes::Bytes;
use futures::TryStreamExt;
use reqwest::header::{
    HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE,
};
use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;
use std::fmt;
use std::time::Duration;
use tokio::sync::{Semaphore, SemaphorePermit};

/// Retries after a connect error, a 429 or a 5xx answer.
pub const MAX_RETRIES: u32 = 3;
/// First backoff step; doubled per retry, plus up to as much jitter.
const BACKOFF_BASE_MS: u64 = 150;

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

/// One endpoint of the Distribution API.
#[derive(Debug, Clone, Copy)]
pub enum Endpoint<'a> {
    /// `/v2/`
    Ping,
    /// `/v2/_catalog`
    Catalog,
    /// `/v2/{repo}/tags/list`
    Tags(&'a str),
    /// `/v2/{repo}/manifests/{reference}` (a tag or a digest)
    Manifest(&'a str, &'a str),
    /// `/v2/{repo}/blobs/{digest}`
    Blob(&'a str, &'a str),
    /// `/v2/{repo}/blobs/uploads/`
    Uploads(&'a str),
}

/// What a request is allowed to do in a repository (its token scope).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Pull,
    Push,
}

impl Access {
    fn scope(self, repo: &str) -> String {
        match self {
            Access::Pull => auth::pull_scope(repo),
            Access::Push => auth::push_scope(repo),
        }
    }
}

/// What a `HEAD` of a manifest told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestHead {
    /// `Docker-Content-Digest`, when the registry sent it.
    pub digest: Option<String>,
}

/// One request to send (re-sendable: the body is `Bytes`).
pub(super) struct Req<'a> {
    pub(super) method: Method,
    pub(super) url: String,
    /// `repository:{repo}:{actions}`, or empty for `/v2/`.
    pub(super) scope: String,
    pub(super) headers: HeaderMap,
    pub(super) body: Option<Bytes>,
    pub(super) what: &'a str,
    /// Overall timeout; `None` keeps only the client's connect/read timeouts.
    pub(super) timeout: Option<Duration>,
}

pub struct RegistryClient {
    pub(super) http: reqwest::Client,
    /// `scheme://host[:port]/` (with a sub-path when one was configured),
    /// no user information.
    pub(super) base: Url,
    /// `host[:port]` as container tools name it.
    host: String,
    pub(super) up: Upstream,
    pub(super) auth: Auth,
    permits: Semaphore,
    /// The permits there are: `[oci] concurrency`, clamped.
    concurrency: usize,
}

impl fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryClient")
            .field("registry", &self.up.shown)
            .field("credentials", &self.auth.credentials())
            .field("timeout_seconds", &self.up.timeout_secs)
            .finish()
    }
}

fn backoff(attempt: u32) -> Duration {
    let step = BACKOFF_BASE_MS << attempt.min(6);
    Duration::from_millis(step + fastrand::u64(0..=step))
}

impl RegistryClient {
    /// A client of `cfg.registry` with `creds` (`cfg.auth_token_path` is
    /// not read here). Errors name the offending key, never a secret.
    pub fn new(cfg: &OciConfig, creds: Option<Credentials>) -> Result<RegistryClient, String> {
        let mut base = registry_base(&cfg.registry, cfg.insecure)?;
        let _ = base.set_username("");
        let _ = base.set_password(None);
        if !base.path().ends_with('/') {
            let p = format!("{}/", base.path());
            base.set_path(&p);
        }
        let host = match base.port() {
            Some(p) => format!("{}:{p}", base.host_str().unwrap_or_default()),
            None => base.host_str().unwrap_or_default().to_string(),
        };
        let timeout = Duration::from_secs(cfg.timeout_seconds.max(1));
        let concurrency = cfg.concurrency.clamp(1, crate::config::MAX_CONCURRENCY);
        let http = crate::deploy::tls_trust(
            reqwest::Client::builder(),
            cfg.verify_ssl,
            cfg.ca_file.as_deref(),
        )
        .map_err(|e| format!("[oci] ca_file {e}"))?
        .connect_timeout(timeout)
        .read_timeout(timeout)
        .user_agent(concat!("extregd/", env!("CARGO_PKG_VERSION")))
        .pool_max_idle_per_host(concurrency)
        .build()
        .map_err(|e| format!("[oci] cannot build the HTTP client: {e}"))?;
        let secrets = Secrets::new(creds.iter().map(|c| c.secret().to_string()));
        Ok(RegistryClient {
            http,
            up: Upstream {
                secrets,
                shown: base.as_str().trim_end_matches('/').to_string(),
                backend: "oci",
                timeout_secs: cfg.timeout_seconds.max(1),
            },
            base,
            host,
            auth: Auth::new(creds),
            permits: Semaphore::new(concurrency),
            concurrency,
        })
    }

    /// Requests in flight at once (`[oci] concurrency`, clamped): also how
    /// many repositories a listing works on at once.
    pub fn concurrency(&self) -> usize {
        self.concurrency
    }

    /// The registry's base URL as shown (no user information, no `/`).
    pub fn base_url(&self) -> &str {
        &self.up.shown
    }

    /// `host[:port]` as container tools write it.
    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn credentials(&self) -> Option<&Credentials> {
        self.auth.credentials()
    }

    pub fn api_timeout(&self) -> Duration {
        self.up.timeout()
    }

    /// **The one URL builder**: every request to the registry's API starts
    /// here. `repo` and the reference are validated by the callers (the
    /// distribution grammar, semver tags, `sha256:` digests).
    pub fn url(&self, ep: Endpoint<'_>) -> String {
        let path = match ep {
            Endpoint::Ping => "v2/".to_string(),
            Endpoint::Catalog => "v2/_catalog".to_string(),
            Endpoint::Tags(repo) => format!("v2/{repo}/tags/list"),
            Endpoint::Manifest(repo, reference) => format!("v2/{repo}/manifests/{reference}"),
            Endpoint::Blob(repo, digest) => format!("v2/{repo}/blobs/{digest}"),
            Endpoint::Uploads(repo) => format!("v2/{repo}/blobs/uploads/"),
        };
        format!("{}{path}", self.base)
    }

    pub(super) fn same_origin(&self, url: &str) -> bool {
        Url::parse(url).is_ok_and(|u| u.origin() == self.base.origin())
    }

    pub(super) async fn permit(&self) -> Result<SemaphorePermit<'_>, BackendError> {
        self.permits
            .acquire()
            .await
            .map_err(|_| BackendError::Io("oci backend is shutting down".into()))
    }

    pub(super) fn req<'a>(
        &self,
        method: Method,
        ep: Endpoint<'_>,
        scope: String,
        what: &'a str,
    ) -> Req<'a> {
        Req {
            method,
            url: self.url(ep),
            scope,
            headers: HeaderMap::new(),
            body: None,
            what,
            timeout: Some(self.api_timeout()),
        }
    }

    /// An error answer as a [`BackendError`] (see [`http::status_error`]),
    /// quoting the registry's own `errors[0]` scrubbed.
    pub(super) async fn status_error(&self, resp: reqwest::Response, what: &str) -> BackendError {
        let status = resp.status();
        let retry = http::retry_after(resp.headers());
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
        let detail = serde_json::from_slice::<Errs>(&body)
            .ok()
            .and_then(|e| e.errors.into_iter().next())
            .map(|e| format!(": {} {}", e.code, self.up.scrub(&e.message)))
            .unwrap_or_default();
        http::status_error(status, retry, "the registry", what, &detail, |s| {
            if s == StatusCode::FORBIDDEN {
                format!("the registry refused {what} (403){detail}")
            } else {
                self.auth.unauthorized(what, &detail)
            }
        })
    }

    /// Sends `r` with credentials, answering auth challenges once and
    /// retrying connect errors, 429 and 5xx with backoff. Error statuses
    /// become `BackendError`s; success answers are returned.
    async fn send(&self, r: &Req<'_>) -> Result<reqwest::Response, BackendError> {
        let mut reauthed = false;
        let mut attempt = 0u32;
        loop {
            let mut req = self
                .http
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
                if let Some(h) = self.auth.header_for(&r.scope) {
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
                    return Err(self.up.transport_error(e, r.what));
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
                    .and_then(auth::parse_challenge);
                let retry = match &ch {
                    Some(auth::Challenge::Bearer {
                        insufficient_scope, ..
                    }) => status == StatusCode::UNAUTHORIZED || *insufficient_scope,
                    Some(auth::Challenge::Basic) => status == StatusCode::UNAUTHORIZED,
                    None => false,
                };
                if let Some(ch) = ch.filter(|_| retry && !reauthed) {
                    reauthed = true;
                    self.auth.forget(&r.scope);
                    self.auth
                        .answer(ch, &r.scope, r.what, &self.http, &self.base, &self.up)
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

    /// Sends `r` holding a permit; the answer's body is not read.
    pub(super) async fn send_held(&self, r: &Req<'_>) -> Result<reqwest::Response, BackendError> {
        let _permit = self.permit().await?;
        self.send(r).await
    }

    /// Sends `r` holding a permit and reads the (small) body, bounded
    /// whether or not a length was announced.
    pub(super) async fn send_read(&self, r: &Req<'_>) -> Result<(HeaderMap, Bytes), BackendError> {
        let _permit = self.permit().await?;
        let resp = self.send(r).await?;
        let headers = resp.headers().clone();
        let bytes = http::read_limited(resp, MAX_JSON_BYTES)
            .await
            .map_err(|e| self.up.read_error(e, r.what))?;
        Ok((headers, bytes))
    }

    // ---- endpoints ----------------------------------------------------------

    /// `GET /v2/`: reachable and authorized.
    pub async fn ping(&self) -> Result<(), BackendError> {
        let req = self.req(Method::GET, Endpoint::Ping, String::new(), "GET /v2/");
        self.send_read(&req).await.map(|_| ())
    }

    /// Every repository of the catalog (all pages).
    pub async fn catalog(&self) -> Result<Vec<String>, BackendError> {
        self.all_pages(
            Endpoint::Catalog,
            auth::CATALOG_SCOPE,
            "the registry catalog",
        )
        .await
    }

    /// Every tag of a repository (all pages); `NotFound` when it is gone.
    pub async fn tags(&self, repo: &str) -> Result<Vec<String>, BackendError> {
        let what = format!("tags of {repo}");
        self.all_pages(Endpoint::Tags(repo), &auth::pull_scope(repo), &what)
            .await
    }

    /// A manifest's bytes and digest (`None` when absent), read bounded
    /// and checked against the `Docker-Content-Digest` the registry sent.
    pub async fn manifest_get(
        &self,
        repo: &str,
        reference: &str,
        accept: &'static str,
    ) -> Result<Option<(String, Bytes)>, BackendError> {
        let what = format!("manifest {repo}:{reference}");
        let mut req = self.req(
            Method::GET,
            Endpoint::Manifest(repo, reference),
            auth::pull_scope(repo),
            &what,
        );
        req.headers.insert(ACCEPT, HeaderValue::from_static(accept));
        let (headers, body) = match self.send_read(&req).await {
            Ok(x) => x,
            Err(BackendError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        let digest = sha256_tag(&body);
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
        Ok(Some((digest, body)))
    }

    /// `HEAD` of a manifest; `None` when absent.
    pub async fn manifest_head(
        &self,
        repo: &str,
        reference: &str,
        accept: &'static str,
        access: Access,
    ) -> Result<Option<ManifestHead>, BackendError> {
        let what = format!("manifest {repo}:{reference}");
        let mut req = self.req(
            Method::HEAD,
            Endpoint::Manifest(repo, reference),
            access.scope(repo),
            &what,
        );
        req.headers.insert(ACCEPT, HeaderValue::from_static(accept));
        match self.send_read(&req).await {
            Ok((h, _)) => Ok(Some(ManifestHead {
                digest: h
                    .get("docker-content-digest")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string),
            })),
            Err(BackendError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The digest a tag points to (`HEAD`, any manifest kind); `None` when
    /// absent, an error when the registry does not say.
    pub async fn manifest_digest(
        &self,
        repo: &str,
        tag: &str,
        access: Access,
    ) -> Result<Option<String>, BackendError> {
        let Some(head) = self
            .manifest_head(repo, tag, super::manifest::ACCEPT_ANY, access)
            .await?
        else {
            return Ok(None);
        };
        head.digest.map(Some).ok_or_else(|| {
            BackendError::Upstream(format!(
                "the registry sent no Docker-Content-Digest for manifest {repo}:{tag}"
            ))
        })
    }

    /// `PUT` an OCI image manifest under a tag (or its digest).
    pub async fn manifest_put(
        &self,
        repo: &str,
        reference: &str,
        manifest: Bytes,
    ) -> Result<(), BackendError> {
        let what = format!("manifest {repo}:{reference}");
        let mut req = self.req(
            Method::PUT,
            Endpoint::Manifest(repo, reference),
            auth::push_scope(repo),
            &what,
        );
        req.headers
            .insert(CONTENT_TYPE, HeaderValue::from_static(OCI_MANIFEST));
        req.body = Some(manifest);
        self.send_held(&req).await.map(|_| ())
    }

    /// `DELETE` a manifest by digest (and so every tag naming it). A
    /// registry that does not allow deletes answers `Status { code: 405 }`.
    pub async fn manifest_delete(
        &self,
        repo: &str,
        digest: &str,
        what: &str,
    ) -> Result<(), BackendError> {
        let req = self.req(
            Method::DELETE,
            Endpoint::Manifest(repo, digest),
            auth::delete_scope(repo),
            what,
        );
        self.send_held(&req).await.map(|_| ())
    }

    /// A blob as a stream (no overall timeout: artifacts may be large; the
    /// connect and per-read timeouts hold) and its announced length.
    pub async fn blob_get(
        &self,
        repo: &str,
        digest: &str,
        what: &str,
    ) -> Result<(ByteStream, Option<u64>), BackendError> {
        let mut req = self.req(
            Method::GET,
            Endpoint::Blob(repo, digest),
            auth::pull_scope(repo),
            what,
        );
        req.timeout = None;
        let resp = self.send_held(&req).await?;
        let size = resp.content_length();
        let stream = resp
            .bytes_stream()
            .map_err(|e| std::io::Error::other(root_cause(&e.without_url())));
        Ok((Box::pin(stream), size))
    }

    /// A small blob read whole (at most [`MAX_JSON_BYTES`]) and checked
    /// against its digest.
    pub async fn blob_read(&self, repo: &str, digest: &str) -> Result<Bytes, BackendError> {
        let what = format!("blob {digest} of {repo}");
        let req = self.req(
            Method::GET,
            Endpoint::Blob(repo, digest),
            auth::pull_scope(repo),
            &what,
        );
        let (_, bytes) = self.send_read(&req).await?;
        let got = sha256_tag(&bytes);
        if !got.eq_ignore_ascii_case(digest) {
            return Err(BackendError::Integrity {
                expected: digest.to_string(),
                actual: got,
            });
        }
        Ok(bytes)
    }

    /// Whether the repository holds a blob (`HEAD`, push scope: asked
    /// before uploading).
    pub async fn blob_exists(&self, repo: &str, digest: &str) -> Result<bool, BackendError> {
        let what = format!("blob {digest} of {repo}");
        let req = self.req(
            Method::HEAD,
            Endpoint::Blob(repo, digest),
            auth::push_scope(repo),
            &what,
        );
        match self.send_read(&req).await {
            Ok(_) => Ok(true),
            Err(BackendError::NotFound(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::oci::tests::cfg;

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
    fn one_builder_makes_every_url() {
        let c = RegistryClient::new(&cfg("http://u:pw@127.0.0.1:5000"), None).unwrap();
        assert_eq!(c.base_url(), "http://127.0.0.1:5000");
        assert_eq!(c.host(), "127.0.0.1:5000");
        assert_eq!(c.url(Endpoint::Ping), "http://127.0.0.1:5000/v2/");
        assert_eq!(
            c.url(Endpoint::Catalog),
            "http://127.0.0.1:5000/v2/_catalog"
        );
        assert_eq!(
            c.url(Endpoint::Tags("ns/a-provider")),
            "http://127.0.0.1:5000/v2/ns/a-provider/tags/list"
        );
        assert_eq!(
            c.url(Endpoint::Manifest("ns/a", "1.0.0")),
            "http://127.0.0.1:5000/v2/ns/a/manifests/1.0.0"
        );
        assert_eq!(
            c.url(Endpoint::Blob("ns/a", "sha256:ab")),
            "http://127.0.0.1:5000/v2/ns/a/blobs/sha256:ab"
        );
        assert_eq!(
            c.url(Endpoint::Uploads("ns/a")),
            "http://127.0.0.1:5000/v2/ns/a/blobs/uploads/"
        );
        // A registry under a sub-path keeps it.
        let c = RegistryClient::new(&cfg("https://reg.example/mirror"), None).unwrap();
        assert_eq!(c.url(Endpoint::Ping), "https://reg.example/mirror/v2/");
    }

    #[tokio::test]
    async fn unreachable_registry_is_named_without_secrets() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let c = RegistryClient::new(
            &cfg(&format!("127.0.0.1:{port}")),
            Credentials::parse("u:s3cr3t"),
        )
        .unwrap();
        let e = c.ping().await.unwrap_err();
        assert!(matches!(e, BackendError::Unreachable(_)), "{e:?}");
        let m = e.to_string();
        assert!(m.contains(&format!("127.0.0.1:{port}")), "{m}");
        assert!(!m.contains("s3cr3t"), "{m}");
        assert!(!format!("{c:?}").contains("s3cr3t"));
    }
}

//! The Gitea backend: extensions published as releases of repositories in
//! one Gitea organization (Gitea 1.25 API, `/api/v1`).
//!
//! **Discovery.** `GET /orgs/{org}/repos`, every page. A repository is an
//! extension when its name is `{name}_prov` (provider), `{name}_taskserv`
//! (taskserv) or `{name}_cluster` (cluster) and `{name}` is a valid
//! extension name; other repositories are ignored. **Archived repositories
//! are skipped**: archiving a repository withdraws its extension (its
//! versions are neither listed nor downloadable through this backend). The
//! repository's `description` is the extension's description, its `topics`
//! its tags and its `html_url` its repository.
//!
//! **Versions.** `GET /repos/{org}/{repo}/releases`, every page. Drafts are
//! never versions (Gitea shows them to tokens with write access). A leading
//! `v` in `tag_name` is dropped (`v1.27.4` is version `1.27.4`; downloads
//! still use the tag as written); tags that are not semver are skipped. A
//! release is a pre-release when Gitea marks it so or its version has a
//! semver pre-release part; [`Backend::list`] picks the newest version that
//! is neither, else the newest of all. `published_at` comes from the release.
//!
//! **Asset rule.** The artifact of a release is, in this order: the asset
//! named `{repo}.tar.gz`; else `{name}-{version}.tar.gz`; else the only asset
//! whose name ends in `.tar.gz`. A release without one is still listed
//! (without size and checksum) but downloading it answers not found, naming
//! the release and the expected asset.
//!
//! **Checksum rule.** When the release also carries a `SHA256SUMS` asset
//! (lines `<hex>  <file>` or `<hex> *<file>`) or `{asset}.sha256`, it is
//! read while listing versions, the version's `checksum` is known before any
//! download, and the download is verified against it (a mismatch is an
//! integrity error and nothing is cached). Otherwise the checksum is computed
//! by the artifact cache on first download. Checksum files are cached by
//! their asset id, size and creation time.
//!
//! **Requests.** One `reqwest` client; at most `[gitea] concurrency` API
//! requests in flight (repository and release pages, checksum files;
//! default [`crate::config::DEFAULT_CONCURRENCY`]), so a cold listing of
//! many repositories runs concurrently but bounded. Pages are requested
//! with `limit=50` (Gitea's default maximum); after the first page,
//! `X-Total-Count` tells how many pages remain and they are fetched
//! concurrently; without it the `Link: rel="next"` header is followed.
//! **The cold listing is pipelined**: the releases of a repository are
//! asked for as soon as the page of the repository list naming it has
//! arrived, and its checksum file as soon as its releases have, instead of
//! each stage waiting for the whole previous one (see `listing.rs`).
//!
//! **Auth.** `Authorization: token <t>`, the first line of `token_path`. The
//! token is sent only to the configured server's origin (a download URL on
//! another origin is rebuilt on the configured one), and never appears in an
//! error, a log line, `Debug` output or `/health`. Gitea answers 404 for a
//! private repository the token cannot read, so such an extension looks
//! absent.

mod client;
mod listing;
mod model;

use super::http::{self, Secrets};
use super::{root_cause, Artifact, Backend, BackendError, VersionEntry};
use async_trait::async_trait;
use extreg_shared::{validate_name, Extension, ExtensionType, Source};
use futures::TryStreamExt;
use model::{Release, Repo, ServerVersion};
use parking_lot::Mutex;
use reqwest::header::HeaderValue;
use reqwest::Url;
use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

use crate::config::GiteaConfig;

/// Page size asked for; Gitea caps it at its `MAX_RESPONSE_ITEMS` (50).
pub const PAGE_LIMIT: u64 = 50;
/// Pages of one list requested ahead at once once `X-Total-Count` is known:
/// 8 pages are 400 repositories of work, enough to keep every permit busy,
/// and an absurd total costs no more than these.
const PAGE_LOOKAHEAD: usize = 8;
/// No listing follows more pages than this (an absurd `X-Total-Count` is
/// cut here, and reading stops at the first short page anyway).
const MAX_PAGES: u64 = 1000;
/// Largest page of a list endpoint read.
const MAX_PAGE_BYTES: usize = 8 << 20;
/// Largest single object (a repository) read.
const MAX_OBJECT_BYTES: usize = 1 << 20;
/// A whole listing gives up after this long.
pub const LIST_DEADLINE: Duration = Duration::from_secs(120);
/// Retries of a request answered 429 or 503.
const MAX_RETRIES: u32 = 2;

/// Largest checksum file read.
const MAX_SUMS_BYTES: usize = 1 << 20;
/// Checksum files remembered before the cache is reset.
const MAX_SUMS_CACHED: usize = 4096;
/// Locator prefix of a version whose release has no tarball asset.
const NO_ASSET: &str = "none:";

/// Repository name suffix of each extension type.
pub fn repo_suffix(t: ExtensionType) -> &'static str {
    match t {
        ExtensionType::Provider => "_prov",
        ExtensionType::Taskserv => "_taskserv",
        ExtensionType::Cluster => "_cluster",
    }
}

/// The extension a repository name stands for, if any.
pub fn parse_repo_name(repo: &str) -> Option<(ExtensionType, &str)> {
    ExtensionType::ALL.into_iter().find_map(|t| {
        let name = repo.strip_suffix(repo_suffix(t))?;
        validate_name(name).is_ok().then_some((t, name))
    })
}

pub struct GiteaBackend {
    inner: Arc<Inner>,
}

struct Inner {
    client: reqwest::Client,
    /// The configured URL without a trailing `/` (may hold a sub-path).
    base: String,
    /// `base` without user information, for messages.
    shown: String,
    org: String,
    token: Option<Token>,
    /// How errors name this Gitea: its origin (`scheme://host[:port]` of
    /// `base`, also the only origin the token goes to), the token as the
    /// secret scrubbed from every text quoted from Gitea, the API timeout.
    up: http::Upstream,
    /// Requests in flight at most (`[gitea] concurrency`, clamped).
    permits: Semaphore,
    concurrency: usize,
    /// Repositories the last listing skipped because they failed.
    skipped: Mutex<Vec<String>>,
    /// Parsed checksum files by `{asset id}:{size}:{created_at}`.
    sums: Mutex<HashMap<String, Arc<HashMap<String, String>>>>,
}

/// The `Authorization` value; its `Debug` never shows it.
struct Token {
    header: HeaderValue,
    /// The bare token, only to scrub it from texts quoted from Gitea.
    raw: String,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Debug for GiteaBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GiteaBackend")
            .field("url", &self.inner.shown)
            .field("organization", &self.inner.org)
            .field("token", &self.inner.token)
            .field("timeout_seconds", &self.inner.up.timeout_secs)
            .finish()
    }
}

/// Reads the token: the first line of the file, trimmed.
fn read_token(path: &Path) -> Result<Token, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("[gitea] token_path {}: {e}", path.display()))?;
    let raw = text.lines().next().unwrap_or_default().trim().to_string();
    if raw.is_empty() {
        return Err(format!(
            "[gitea] token_path {}: the first line is empty",
            path.display()
        ));
    }
    let mut header = HeaderValue::from_str(&format!("token {raw}")).map_err(|_| {
        format!(
            "[gitea] token_path {}: the token holds characters not allowed in an HTTP header",
            path.display()
        )
    })?;
    header.set_sensitive(true);
    Ok(Token { header, raw })
}

impl GiteaBackend {
    /// Builds the backend from its configuration; reads the token file.
    /// Errors name the offending key, never the token.
    pub fn new(cfg: &GiteaConfig) -> Result<GiteaBackend, String> {
        let base = cfg.url.trim_end_matches('/').to_string();
        let url = Url::parse(&base).map_err(|e| format!("[gitea] url '{}': {e}", cfg.url))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(format!(
                "[gitea] url '{}' must be an http:// or https:// URL with a host",
                cfg.url
            ));
        }
        let token = cfg.token_path.as_deref().map(read_token).transpose()?;
        let mut shown = url.clone();
        let _ = shown.set_username("");
        let _ = shown.set_password(None);
        let shown = shown.to_string().trim_end_matches('/').to_string();
        let timeout = Duration::from_secs(cfg.timeout_seconds.max(1));
        let concurrency = cfg.concurrency.clamp(1, crate::config::MAX_CONCURRENCY);
        let client = crate::deploy::tls_trust(
            reqwest::Client::builder(),
            cfg.verify_ssl,
            cfg.ca_file.as_deref(),
        )
        .map_err(|e| format!("[gitea] ca_file {e}"))?
        .connect_timeout(timeout)
        .read_timeout(timeout)
        .user_agent(concat!("extregd/", env!("CARGO_PKG_VERSION")))
        .pool_max_idle_per_host(concurrency)
        .build()
        .map_err(|e| format!("[gitea] cannot build the HTTP client: {e}"))?;
        let secrets = Secrets::new(token.iter().map(|t| t.raw.clone()));
        Ok(GiteaBackend {
            inner: Arc::new(Inner {
                up: http::Upstream {
                    secrets,
                    shown: url.origin().ascii_serialization(),
                    backend: "gitea",
                    timeout_secs: cfg.timeout_seconds.max(1),
                },
                skipped: Mutex::new(Vec::new()),
                client,
                shown,
                base,
                org: cfg.organization.trim().to_string(),
                token,
                permits: Semaphore::new(concurrency),
                concurrency,
                sums: Mutex::new(HashMap::new()),
            }),
        })
    }
}

#[async_trait]
impl Backend for GiteaBackend {
    fn source(&self) -> Source {
        Source::Gitea
    }

    /// Every extension; a repository whose releases fail is skipped with a
    /// warning (and shown by [`Backend::skipped`]) instead of failing the
    /// listing, which must finish within [`LIST_DEADLINE`].
    async fn list(&self) -> Result<Vec<Extension>, BackendError> {
        let work = self.inner.list();
        match tokio::time::timeout(LIST_DEADLINE, work).await {
            Ok(r) => r,
            Err(_) => Err(BackendError::Timeout(LIST_DEADLINE.as_secs())),
        }
    }

    fn identity(&self) -> String {
        format!("gitea:{}/{}", self.inner.shown, self.inner.org)
    }

    fn skipped(&self) -> Vec<String> {
        self.inner.skipped.lock().clone()
    }

    async fn versions(
        &self,
        ext_type: ExtensionType,
        name: &str,
    ) -> Result<Vec<VersionEntry>, BackendError> {
        if validate_name(name).is_err() {
            return Ok(Vec::new());
        }
        let inner = &*self.inner;
        let repo_name = format!("{name}{}", repo_suffix(ext_type));
        let path = inner.repo_path(&repo_name);
        let what_repo = format!("repository {}/{repo_name}", inner.org);
        let what_rel = format!("releases of {}/{repo_name}", inner.org);
        let repo_fut = async {
            let _permit = inner
                .permits
                .acquire()
                .await
                .map_err(|_| BackendError::Io("gitea backend is shutting down".into()))?;
            let resp = inner.get(&inner.api(&path), &what_repo, true).await?;
            let bytes = http::read_limited(resp, MAX_OBJECT_BYTES)
                .await
                .map_err(|e| inner.read_error(e, &what_repo))?;
            serde_json::from_slice::<Repo>(&bytes).map_err(|e| {
                BackendError::Upstream(format!("gitea sent an unreadable {what_repo}: {e}"))
            })
        };
        let rel_path = format!("{path}/releases");
        let rel_fut = inner.all_pages::<Release>(&rel_path, &what_rel);
        let (repo, releases) = tokio::join!(repo_fut, rel_fut);
        let (repo, releases) = match (repo, releases) {
            (Err(BackendError::NotFound(_)), _) | (_, Err(BackendError::NotFound(_))) => {
                return Ok(Vec::new())
            }
            (Err(e), _) | (_, Err(e)) => return Err(e),
            (Ok(r), Ok(rel)) => (r, rel),
        };
        if repo.archived {
            tracing::debug!(repo = %repo_name, "gitea repository is archived; not serving it");
            return Ok(Vec::new());
        }
        inner
            .repo_versions(ext_type, name, &repo, releases, true)
            .await
    }

    async fn fetch(&self, entry: &VersionEntry) -> Result<Artifact, BackendError> {
        let inner = &*self.inner;
        if let Some(rest) = entry.locator.strip_prefix(NO_ASSET) {
            let mut parts = rest.splitn(3, '/');
            let (owner, repo, tag) = (
                parts.next().unwrap_or_default(),
                parts.next().unwrap_or_default(),
                parts.next().unwrap_or_default(),
            );
            return Err(BackendError::NotFound(format!(
                "release {tag} of {owner}/{repo} has no tarball asset (expected {repo}.tar.gz)"
            )));
        }
        let what = format!(
            "the {} {} {} release asset",
            entry.record.ext_type, entry.record.name, entry.record.version
        );
        let resp = inner.get(&entry.locator, &what, false).await?;
        let size = resp.content_length().or(entry.record.size);
        let stream = resp
            .bytes_stream()
            .map_err(|e| std::io::Error::other(root_cause(&e.without_url())));
        Ok(Artifact {
            stream: Box::pin(stream),
            size,
            digest: entry.record.checksum.clone(),
        })
    }

    async fn signature(&self, entry: &VersionEntry) -> Result<Option<Vec<u8>>, BackendError> {
        if entry.record.signature.signed != Some(true) || entry.locator.starts_with(NO_ASSET) {
            return Ok(None);
        }
        let inner = &*self.inner;
        // The `.minisig` asset sits beside the tarball: same URL, suffixed.
        let url = format!("{}.minisig", entry.locator);
        let what = format!(
            "the signature asset of {} {} {}",
            entry.record.ext_type, entry.record.name, entry.record.version
        );
        let resp = match inner.get(&url, &what, true).await {
            Ok(r) => r,
            Err(BackendError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        crate::signature::read_bounded(resp, &what).await.map(Some)
    }

    async fn health(&self) -> Result<(), BackendError> {
        let inner = &*self.inner;
        let what = "the server version";
        let resp = inner.get(&inner.api("/version"), what, true).await?;
        let bytes = http::read_limited(resp, MAX_OBJECT_BYTES)
            .await
            .map_err(|e| inner.read_error(e, what))?;
        let v: ServerVersion = serde_json::from_slice(&bytes).map_err(|_| {
            BackendError::Upstream(format!(
                "{} does not look like Gitea (GET /api/v1/version)",
                inner.shown
            ))
        })?;
        tracing::debug!(version = %v.version, "gitea is up");
        Ok(())
    }
}

#[cfg(test)]
mod tests;

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
//! **Requests.** One `reqwest` client; at most [`MAX_IN_FLIGHT`] API
//! requests in flight (repository and release pages, checksum files), so a
//! cold listing of many repositories runs concurrently but bounded. Pages
//! are requested with `limit=50` (Gitea's default maximum); after the first
//! page, `X-Total-Count` tells how many pages remain and they are fetched
//! concurrently; without it the `Link: rel="next"` header is followed.
//!
//! **Auth.** `Authorization: token <t>`, the first line of `token_path`. The
//! token is sent only to the configured server's origin (a download URL on
//! another origin is rebuilt on the configured one), and never appears in an
//! error, a log line, `Debug` output or `/health`. Gitea answers 404 for a
//! private repository the token cannot read, so such an extension looks
//! absent.

use super::http::{self, Secrets};
use super::{newest, root_cause, utc, Artifact, Backend, BackendError, VersionEntry};
use async_trait::async_trait;
use extreg_shared::{parse_version, validate_name, Extension, ExtensionType, Source};
use futures::{StreamExt, TryStreamExt};
use parking_lot::Mutex;
use reqwest::header::{HeaderValue, AUTHORIZATION};
use reqwest::{StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

use crate::config::GiteaConfig;

/// API requests in flight at once, per backend.
pub const MAX_IN_FLIGHT: usize = 8;
/// Page size asked for; Gitea caps it at its `MAX_RESPONSE_ITEMS` (50).
pub const PAGE_LIMIT: u64 = 50;
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
    /// `scheme://host[:port]` of `base`: the only origin the token goes to.
    origin: String,
    org: String,
    token: Option<Token>,
    /// The token, scrubbed from every text quoted from Gitea.
    secrets: Secrets,
    timeout_secs: u64,
    permits: Semaphore,
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
            .field("timeout_seconds", &self.inner.timeout_secs)
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
        let client = crate::deploy::tls_trust(
            reqwest::Client::builder(),
            cfg.verify_ssl,
            cfg.ca_file.as_deref(),
        )
        .map_err(|e| format!("[gitea] ca_file {e}"))?
        .connect_timeout(timeout)
        .read_timeout(timeout)
        .user_agent(concat!("extregd/", env!("CARGO_PKG_VERSION")))
        .pool_max_idle_per_host(MAX_IN_FLIGHT)
        .build()
        .map_err(|e| format!("[gitea] cannot build the HTTP client: {e}"))?;
        let secrets = Secrets::new(token.iter().map(|t| t.raw.clone()));
        Ok(GiteaBackend {
            inner: Arc::new(Inner {
                secrets,
                skipped: Mutex::new(Vec::new()),
                client,
                origin: url.origin().ascii_serialization(),
                shown,
                base,
                org: cfg.organization.trim().to_string(),
                token,
                timeout_secs: cfg.timeout_seconds.max(1),
                permits: Semaphore::new(MAX_IN_FLIGHT),
                sums: Mutex::new(HashMap::new()),
            }),
        })
    }
}

// ---- Gitea's JSON (only the fields used; unknown ones are ignored) --------

#[derive(Debug, Clone, Deserialize)]
struct Repo {
    #[serde(default)]
    id: i64,
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    html_url: Option<String>,
    #[serde(default)]
    topics: Option<Vec<String>>,
    #[serde(default)]
    archived: bool,
}

#[derive(Debug, Clone, Deserialize)]
struct User {
    #[serde(default)]
    login: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
struct Release {
    #[serde(default)]
    id: i64,
    tag_name: String,
    #[serde(default)]
    draft: bool,
    #[serde(default)]
    prerelease: bool,
    #[serde(default)]
    created_at: Option<String>,
    #[serde(default)]
    published_at: Option<String>,
    #[serde(default)]
    author: Option<User>,
    #[serde(default)]
    assets: Option<Vec<Asset>>,
}

#[derive(Debug, Clone, Deserialize)]
struct Asset {
    #[serde(default)]
    id: i64,
    name: String,
    #[serde(default)]
    size: u64,
    #[serde(default)]
    created_at: Option<String>,
    #[serde(default)]
    browser_download_url: Option<String>,
}

#[derive(Deserialize)]
struct ServerVersion {
    version: String,
}

#[derive(Deserialize)]
struct ApiErrorBody {
    #[serde(default)]
    message: Option<String>,
}

struct Page<T> {
    items: Vec<T>,
    total: Option<u64>,
    has_next: bool,
    /// `sha256:` of the page's body: a page seen twice is a loop.
    digest: String,
}

/// A version whose checksum file is still to be read.
struct SumsRef {
    url: String,
    key: String,
    /// The tarball's name, the line to look for.
    target: String,
    /// `{asset}.sha256` may hold a bare digest.
    single: bool,
}

/// Percent-encodes one path segment.
fn enc(seg: &str) -> String {
    let mut out = String::with_capacity(seg.len());
    for b in seg.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Parses a checksum file into `file name -> lowercase hex`. Lines are
/// `<hex>  <file>` or `<hex> *<file>`; with `bare_for`, a line holding only
/// a digest counts for that file.
fn parse_sums(text: &str, bare_for: Option<&str>) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (hex, rest) = match line.split_once(char::is_whitespace) {
            Some((h, r)) => (h, r.trim_start()),
            None => (line, ""),
        };
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            continue;
        }
        let file = rest.strip_prefix('*').unwrap_or(rest).trim();
        let file = file.strip_prefix("./").unwrap_or(file);
        let file = match (file.is_empty(), bare_for) {
            (false, _) => file,
            (true, Some(b)) => b,
            (true, None) => continue,
        };
        out.insert(file.to_string(), hex.to_ascii_lowercase());
    }
    out
}

/// Picks the tarball asset of a release (see the module's asset rule).
fn pick_asset<'a>(assets: &'a [Asset], repo: &str, name: &str, version: &str) -> Option<&'a Asset> {
    let by_name = |n: &str| assets.iter().find(|a| a.name == n);
    by_name(&format!("{repo}.tar.gz"))
        .or_else(|| by_name(&format!("{name}-{version}.tar.gz")))
        .or_else(|| {
            let mut tgz = assets.iter().filter(|a| a.name.ends_with(".tar.gz"));
            match (tgz.next(), tgz.next()) {
                (Some(a), None) => Some(a),
                _ => None,
            }
        })
}

impl Inner {
    fn api(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.base)
    }

    fn repo_path(&self, repo: &str) -> String {
        format!("/repos/{}/{}", enc(&self.org), enc(repo))
    }

    /// Never lets the token through in a text quoted from Gitea.
    fn scrub(&self, text: &str) -> String {
        self.secrets.scrub(text)
    }

    fn transport_error(&self, e: reqwest::Error, what: &str) -> BackendError {
        http::transport_error(
            e,
            &self.secrets,
            &self.origin,
            what,
            self.timeout_secs,
            "gitea",
        )
    }

    fn read_error(&self, e: http::ReadError, what: &str) -> BackendError {
        http::read_error(
            e,
            &self.secrets,
            &self.origin,
            what,
            self.timeout_secs,
            "gitea",
        )
    }

    async fn status_error(&self, resp: reqwest::Response, what: &str) -> BackendError {
        let status = resp.status();
        let retry = http::retry_after(resp.headers());
        let body = http::error_body(resp).await;
        let message = serde_json::from_slice::<ApiErrorBody>(&body)
            .ok()
            .and_then(|b| b.message)
            .filter(|m| !m.trim().is_empty())
            .map(|m| format!(": {}", self.scrub(m.trim())))
            .unwrap_or_default();
        http::status_error(status, retry, "gitea", what, &message, |s| {
            if s == StatusCode::FORBIDDEN {
                format!("gitea refused {what} to this token (403){message}")
            } else if self.token.is_some() {
                format!("gitea rejected the token (401){message}")
            } else {
                format!("gitea requires a token (401); set [gitea] token_path{message}")
            }
        })
    }

    /// `GET url` with the token (only on our origin); error statuses become
    /// `BackendError`s.
    async fn get(
        &self,
        url: &str,
        what: &str,
        overall_timeout: bool,
    ) -> Result<reqwest::Response, BackendError> {
        let mut attempt = 0;
        loop {
            let mut req = self.client.get(url);
            if overall_timeout {
                req = req.timeout(Duration::from_secs(self.timeout_secs));
            }
            if let Some(t) = &self.token {
                if Url::parse(url).is_ok_and(|u| u.origin().ascii_serialization() == self.origin) {
                    req = req.header(AUTHORIZATION, t.header.clone());
                }
            }
            let resp = req
                .send()
                .await
                .map_err(|e| self.transport_error(e, what))?;
            let status = resp.status();
            if status.is_success() {
                return Ok(resp);
            }
            // 429 and 503: wait as Gitea asks (bounded), then once more.
            if (status == StatusCode::TOO_MANY_REQUESTS
                || status == StatusCode::SERVICE_UNAVAILABLE)
                && attempt < MAX_RETRIES
            {
                let wait = http::retry_after(resp.headers())
                    .unwrap_or(Duration::from_millis(200 << attempt));
                drop(resp);
                tokio::time::sleep(wait).await;
                attempt += 1;
                continue;
            }
            return Err(self.status_error(resp, what).await);
        }
    }

    /// One page of a list endpoint.
    async fn page<T: DeserializeOwned>(
        &self,
        path: &str,
        page: u64,
        what: &str,
    ) -> Result<Page<T>, BackendError> {
        let url = self.api(&format!("{path}?page={page}&limit={PAGE_LIMIT}"));
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| BackendError::Io("gitea backend is shutting down".into()))?;
        let resp = self.get(&url, what, true).await?;
        let header = |n: &str| {
            resp.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let total = header("x-total-count").and_then(|v| v.trim().parse().ok());
        let has_next = header("link").is_some_and(|l| l.contains("rel=\"next\""));
        let bytes = http::read_limited(resp, MAX_PAGE_BYTES)
            .await
            .map_err(|e| self.read_error(e, what))?;
        let digest = crate::backend::sha256_tag(&bytes);
        let items = serde_json::from_slice(&bytes).map_err(|e| {
            BackendError::Upstream(format!("gitea sent an unreadable page of {what}: {e}"))
        })?;
        Ok(Page {
            items,
            total,
            has_next,
            digest,
        })
    }

    /// Every item of a list endpoint: the first page, then the rest —
    /// when `X-Total-Count` says how many, in concurrent batches of
    /// [`MAX_IN_FLIGHT`], else one by one while `Link` names a next page.
    /// **Bounded against a lying server**: at most [`MAX_PAGES`] pages,
    /// reading stops at the first short or empty page (an absurd
    /// `X-Total-Count` costs one batch), and a page whose body was already
    /// seen (a `next` that loops) ends the listing with a warning.
    async fn all_pages<T: DeserializeOwned + Send>(
        &self,
        path: &str,
        what: &str,
    ) -> Result<Vec<T>, BackendError> {
        let first = self.page::<T>(path, 1, what).await?;
        let per = first.items.len() as u64;
        let mut seen = HashSet::from([first.digest.clone()]);
        let mut out = first.items;
        if per == 0 {
            return Ok(out);
        }
        let looped = |page: u64| {
            tracing::warn!(%what, page, "gitea: a page repeats an earlier one; stopping there");
        };
        match first.total {
            Some(total) => {
                let pages = total.div_ceil(per).min(MAX_PAGES);
                let mut next = 2;
                'batches: while next <= pages {
                    let last = (next + MAX_IN_FLIGHT as u64 - 1).min(pages);
                    let batch = futures::future::try_join_all(
                        (next..=last).map(|p| self.page::<T>(path, p, what)),
                    )
                    .await?;
                    for (i, p) in batch.into_iter().enumerate() {
                        if !seen.insert(p.digest) {
                            looped(next + i as u64);
                            break 'batches;
                        }
                        let short = (p.items.len() as u64) < per;
                        out.extend(p.items);
                        if short {
                            break 'batches;
                        }
                    }
                    next = last + 1;
                }
            }
            None => {
                let (mut page, mut next) = (1, first.has_next);
                while next && page < MAX_PAGES {
                    page += 1;
                    let p = self.page::<T>(path, page, what).await?;
                    if !seen.insert(p.digest) {
                        looped(page);
                        break;
                    }
                    next = p.has_next && !p.items.is_empty();
                    out.extend(p.items);
                }
            }
        }
        Ok(out)
    }

    /// The organization's extension repositories (archived ones skipped).
    async fn extension_repos(&self) -> Result<Vec<(ExtensionType, String, Repo)>, BackendError> {
        let what = format!("repositories of organization '{}'", self.org);
        let repos: Vec<Repo> = self
            .all_pages(&format!("/orgs/{}/repos", enc(&self.org)), &what)
            .await
            .map_err(|e| match e {
                BackendError::NotFound(_) => BackendError::Upstream(format!(
                    "organization '{}' not found on {} (404); check [gitea] organization and token access",
                    self.org, self.shown
                )),
                e => e,
            })?;
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for r in repos {
            if !seen.insert(r.id) && r.id != 0 {
                continue;
            }
            let Some((t, name)) = parse_repo_name(&r.name) else {
                continue;
            };
            if r.archived {
                tracing::debug!(repo = %r.name, "skipping archived gitea repository");
                continue;
            }
            out.push((t, name.to_string(), r));
        }
        Ok(out)
    }

    /// The versions of one repository, with checksums read for all of them
    /// (`all_sums`) or only for the newest.
    async fn repo_versions(
        &self,
        t: ExtensionType,
        name: &str,
        repo: &Repo,
        releases: Vec<Release>,
        all_sums: bool,
    ) -> Result<Vec<VersionEntry>, BackendError> {
        let mut seen_ids = HashSet::new();
        let mut by_version: BTreeMap<semver::Version, (VersionEntry, Option<SumsRef>)> =
            BTreeMap::new();
        for rel in releases {
            if rel.draft || (!seen_ids.insert(rel.id) && rel.id != 0) {
                continue;
            }
            let Ok(semver) = parse_version(&rel.tag_name) else {
                tracing::debug!(repo = %repo.name, tag = %rel.tag_name, "skipping a release whose tag is not semver");
                continue;
            };
            if by_version.contains_key(&semver) {
                tracing::debug!(repo = %repo.name, tag = %rel.tag_name, "skipping a second release of the same version");
                continue;
            }
            let entry = self.entry(t, name, repo, &rel, semver.clone());
            by_version.insert(semver, entry);
        }
        let mut entries: Vec<(VersionEntry, Option<SumsRef>)> = by_version.into_values().collect();
        let wanted: Vec<usize> = if all_sums {
            (0..entries.len()).collect()
        } else {
            let plain: Vec<VersionEntry> = entries.iter().map(|(e, _)| e.clone()).collect();
            newest(&plain)
                .and_then(|n| plain.iter().position(|e| e.semver == n.semver))
                .into_iter()
                .collect()
        };
        let jobs: Vec<(usize, SumsRef)> = wanted
            .into_iter()
            .filter_map(|i| entries[i].1.take().map(|s| (i, s)))
            .collect();
        let found: Vec<(usize, Option<String>)> = futures::stream::iter(jobs)
            .map(|(i, s)| async move { self.checksum(&s).await.map(|c| (i, c)) })
            .buffer_unordered(MAX_IN_FLIGHT)
            .try_collect()
            .await?;
        for (i, c) in found {
            entries[i].0.record.checksum = c;
        }
        Ok(entries.into_iter().map(|(e, _)| e).collect())
    }

    fn download_url(&self, repo: &str, tag: &str, asset: &Asset) -> String {
        match &asset.browser_download_url {
            Some(u)
                if Url::parse(u).is_ok_and(|p| p.origin().ascii_serialization() == self.origin) =>
            {
                u.clone()
            }
            _ => format!(
                "{}/{}/{}/releases/download/{}/{}",
                self.base,
                enc(&self.org),
                enc(repo),
                enc(tag),
                enc(&asset.name)
            ),
        }
    }

    fn entry(
        &self,
        t: ExtensionType,
        name: &str,
        repo: &Repo,
        rel: &Release,
        semver: semver::Version,
    ) -> (VersionEntry, Option<SumsRef>) {
        let version = semver.to_string();
        let assets = rel.assets.as_deref().unwrap_or_default();
        let asset = pick_asset(assets, &repo.name, name, &version);
        let mut sums = None;
        let (locator, revision, size) = match asset {
            Some(a) => {
                let single = format!("{}.sha256", a.name);
                let sums_asset = assets
                    .iter()
                    .find(|s| s.name == "SHA256SUMS")
                    .map(|s| (s, false))
                    .or_else(|| assets.iter().find(|s| s.name == single).map(|s| (s, true)));
                sums = sums_asset.map(|(s, single)| SumsRef {
                    url: self.download_url(&repo.name, &rel.tag_name, s),
                    key: format!(
                        "{}:{}:{}",
                        s.id,
                        s.size,
                        s.created_at.as_deref().unwrap_or("")
                    ),
                    target: a.name.clone(),
                    single,
                });
                (
                    self.download_url(&repo.name, &rel.tag_name, a),
                    format!(
                        "gitea:{}:{}:{}",
                        a.id,
                        a.size,
                        a.created_at.as_deref().unwrap_or("")
                    ),
                    Some(a.size),
                )
            }
            None => (
                format!("{NO_ASSET}{}/{}/{}", self.org, repo.name, rel.tag_name),
                format!("gitea:none:{}", rel.id),
                None,
            ),
        };
        let signed = asset.is_some_and(|a| {
            let sig = format!("{}.minisig", a.name);
            assets.iter().any(|s| s.name == sig)
        });
        let entry = VersionEntry {
            record: Extension {
                name: name.to_string(),
                ext_type: t,
                version,
                description: repo.description.clone().unwrap_or_default(),
                author: rel
                    .author
                    .as_ref()
                    .and_then(|a| a.login.clone())
                    .filter(|l| !l.is_empty()),
                repository: repo.html_url.clone().filter(|u| !u.is_empty()),
                source: Source::Gitea,
                published_at: rel
                    .published_at
                    .as_deref()
                    .or(rel.created_at.as_deref())
                    .map(utc),
                download_url: None,
                checksum: None,
                size,
                tags: repo.topics.clone().unwrap_or_default(),
                prerelease: rel.prerelease || !semver.pre.is_empty(),
                stale: false,
                requires: vec![],
                dependencies: vec![],
                signature: extreg_shared::SignatureState {
                    signed: Some(signed),
                    ..Default::default()
                },
            },
            semver,
            locator,
            revision,
        };
        (entry, sums)
    }

    /// The `sha256:<hex>` a checksum file gives for its target, if any.
    async fn checksum(&self, s: &SumsRef) -> Result<Option<String>, BackendError> {
        let cached = self.sums.lock().get(&s.key).cloned();
        let table = match cached {
            Some(t) => t,
            None => {
                let what = format!("checksum file of {}", s.target);
                let text = {
                    let _permit =
                        self.permits.acquire().await.map_err(|_| {
                            BackendError::Io("gitea backend is shutting down".into())
                        })?;
                    let resp = match self.get(&s.url, &what, true).await {
                        Ok(r) => r,
                        Err(BackendError::NotFound(m)) => {
                            tracing::warn!(
                                "gitea: {m}; the download will not be verified against it"
                            );
                            return Ok(None);
                        }
                        Err(e) => return Err(e),
                    };
                    let bytes = http::read_limited(resp, MAX_SUMS_BYTES)
                        .await
                        .map_err(|e| self.read_error(e, &what))?;
                    String::from_utf8_lossy(&bytes).into_owned()
                };
                let table = Arc::new(parse_sums(&text, s.single.then_some(s.target.as_str())));
                let mut cache = self.sums.lock();
                if cache.len() >= MAX_SUMS_CACHED {
                    cache.clear();
                }
                cache.insert(s.key.clone(), table.clone());
                table
            }
        };
        let found = table.get(&s.target).map(|h| format!("sha256:{h}"));
        if found.is_none() {
            tracing::warn!(asset = %s.target, "gitea: the release's checksum file has no line for its tarball");
        }
        Ok(found)
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
        let inner = &*self.inner;
        let work = async {
            let repos = inner.extension_repos().await?;
            let results: Vec<(String, Result<Option<Extension>, BackendError>)> =
                futures::stream::iter(repos)
                    .map(|(t, name, repo)| async move {
                        let what = format!("releases of {}/{}", inner.org, repo.name);
                        let r = async {
                            let releases = match inner
                                .all_pages::<Release>(
                                    &format!("{}/releases", inner.repo_path(&repo.name)),
                                    &what,
                                )
                                .await
                            {
                                Ok(r) => r,
                                // Deleted or hidden since the repository listing.
                                Err(BackendError::NotFound(_)) => return Ok(None),
                                Err(e) => return Err(e),
                            };
                            let entries = inner
                                .repo_versions(t, &name, &repo, releases, false)
                                .await?;
                            Ok(newest(&entries).map(|e| e.record.clone()))
                        }
                        .await;
                        (repo.name.clone(), r)
                    })
                    .buffer_unordered(MAX_IN_FLIGHT * 2)
                    .collect()
                    .await;
            super::isolate("gitea", results, &inner.skipped)
        };
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

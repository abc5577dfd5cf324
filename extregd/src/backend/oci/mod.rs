//! The OCI backend: extensions stored as OCI artifacts in a registry that
//! speaks the OCI Distribution API (`/v2/`), such as `docker-registry`
//! (distribution 2.8), Harbor, Zot or GHCR.
//!
//! The registry is reached through [`client::RegistryClient`] (endpoints,
//! the registry URL rule, retries, paging), which authenticates with
//! [`auth`] (credentials, challenges, tokens) and whose manifests are read
//! and built by [`manifest`] (`oci-spec` types). This file is the
//! [`Backend`] over them: the naming rule and the mapping of manifests to
//! records.
//!
//! **Naming rule.** Repository `{namespace}/{name}-provider`, `-taskserv` or
//! `-cluster` is the extension `{name}` of that type (`{name}` a valid
//! extension name). Every other repository is ignored. Discovery reads the
//! whole catalog ([`RegistryClient::catalog`]).
//!
//! **Versions.** Every tag of the repository, every page. A tag is a
//! version when it is semver (a leading `v` is dropped); other tags are
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
//! | `dev.provisioning.extension.requires`, `.dependencies` | `requires`, `dependencies` (JSON arrays) |
//! | `org.opencontainers.image.version` | checked against the tag (a mismatch is logged) |
//! | `dev.provisioning.extension.name`, `.type` | when present they must match the repository, else the tag is skipped |
//!
//! A manifest with none of these annotations (pushed by ORAS or skopeo as a
//! bare file) is described by the `extension.yaml` inside its layer
//! ([`scan`]: read once per layer digest): description, author, tags,
//! requires, dependencies, repository; a tarball declaring another version,
//! name or type sets the record's `mismatch` (never the newest, refused
//! when asked for; see `catalogue::resolve`).
//!
//! The artifact is the layer [`manifest::parse`] picks; its digest is the
//! version's `checksum` and its size the `size`. `revision` is the manifest
//! digest.
//!
//! **Download.** The layer blob, streamed; the artifact cache verifies it
//! against the layer digest. Health is `GET /v2/` reachable and authorized.
//! Secrets never appear in logs, errors, `Debug` output or `/health`.

pub mod auth;
pub mod client;
pub mod diagnose;
pub mod generic;
pub mod manifest;
mod paging;
pub mod scan;
mod upload;

pub use auth::Credentials;
pub use client::{registry_base, Access, RegistryClient, MAX_RETRIES};
pub use manifest::{
    ANN_AUTHORS, ANN_CREATED, ANN_DEPENDENCIES, ANN_DESCRIPTION, ANN_LICENSES, ANN_NAME,
    ANN_REQUIRES, ANN_SOURCE, ANN_TAGS, ANN_TITLE, ANN_TYPE, ANN_URL, ANN_VERSION, ARTIFACT_TYPE,
    DOCKER_MANIFEST, EMPTY_CONFIG, EMPTY_DIGEST, LAYER_MEDIA_TYPE, OCI_MANIFEST,
};
pub use paging::PAGE_SIZE;
pub use upload::Sent;

use super::{utc, Artifact, Backend, BackendError, VersionEntry};
use async_trait::async_trait;
use extreg_shared::{parse_version, validate_name, Extension, ExtensionType, Source};
use futures::{StreamExt, TryStreamExt};
use manifest::{ManifestCache, Parsed};
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::config::OciConfig;

/// A whole listing (catalog, tags, manifests) gives up after this long.
pub const LIST_DEADLINE: Duration = Duration::from_secs(120);
/// Repositories whose signature tags are remembered before the map is reset.
const MAX_SIGNED_REPOS: usize = 65_536;

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

/// The OCI distribution grammar of a repository name: `/`-separated
/// components `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`, 255 bytes at most.
pub fn valid_repository(repo: &str) -> bool {
    repo.len() <= 255 && repo.split('/').all(extreg_shared::artifact::component)
}

pub struct OciBackend {
    client: Arc<RegistryClient>,
    namespace: String,
    manifests: ManifestCache,
    /// Repositories the last listing skipped because they failed.
    skipped: Mutex<Vec<String>>,
    /// The signature tags (`sha256-<hex>.minisig`) last listed per repository.
    signature_tags: Mutex<HashMap<String, HashSet<String>>>,
    /// `extension.yaml` of artifacts without annotations, by layer digest.
    scans: scan::Scanner,
}

impl fmt::Debug for OciBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OciBackend")
            .field("registry", &self.client.base_url())
            .field("namespace", &self.namespace)
            .field("credentials", &self.client.credentials())
            .field("timeout_seconds", &self.client.api_timeout().as_secs())
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
            .map(Credentials::read)
            .transpose()?;
        Self::with_credentials(cfg, creds)
    }

    /// Builds the backend with credentials found elsewhere (see
    /// `crate::auth_files`); `cfg.auth_token_path` is not read.
    pub fn with_credentials(
        cfg: &OciConfig,
        creds: Option<Credentials>,
    ) -> Result<OciBackend, String> {
        Ok(OciBackend {
            client: Arc::new(RegistryClient::new(cfg, creds)?),
            namespace: cfg.namespace.trim().trim_matches('/').to_string(),
            manifests: ManifestCache::default(),
            skipped: Mutex::new(Vec::new()),
            signature_tags: Mutex::new(HashMap::new()),
            scans: scan::Scanner::default(),
        })
    }

    /// The registry client (for publishing and other direct use).
    pub fn client(&self) -> &RegistryClient {
        &self.client
    }

    /// `{namespace}/{name}-{type}`.
    pub fn repository(&self, t: ExtensionType, name: &str) -> String {
        format!("{}/{name}{}", self.namespace, repo_suffix(t))
    }

    /// `host[:port]/{repository}:{tag}`, as skopeo and docker write it.
    pub fn reference(&self, repo: &str, tag: &str) -> String {
        format!("{}/{repo}:{tag}", self.client.host())
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// `host[:port]` as container tools write it.
    pub fn host(&self) -> &str {
        self.client.host()
    }

    /// The registry's base URL (no user information).
    pub fn base_url(&self) -> &str {
        self.client.base_url()
    }

    pub fn credentials(&self) -> Option<&Credentials> {
        self.client.credentials()
    }

    /// Forgets what is known about a tag (after a push or delete).
    pub fn forget_tag(&self, repo: &str, tag: &str) {
        self.manifests.forget_tag(repo, tag);
    }

    /// Every `{namespace}/{name}-{type}` repository.
    async fn extension_repos(&self) -> Result<Vec<(ExtensionType, String, String)>, BackendError> {
        let repos = self.client.catalog().await?;
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
        let tags = match self.client.tags(repo).await {
            Ok(t) => t,
            Err(BackendError::NotFound(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut by_version: BTreeMap<semver::Version, String> = BTreeMap::new();
        let sigs: HashSet<String> = tags
            .iter()
            .filter(|t| crate::signature::is_oci_signature_tag(t))
            .cloned()
            .collect();
        {
            let mut st = self.signature_tags.lock();
            if st.len() >= MAX_SIGNED_REPOS {
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
    /// artifact), and its digest; cached by digest, a known tag checked
    /// with a `HEAD`.
    pub(crate) async fn manifest(
        &self,
        repo: &str,
        tag: &str,
    ) -> Result<Option<(String, Arc<Parsed>)>, BackendError> {
        if self.manifests.knows_tag(repo, tag) {
            let Some(head) = self
                .client
                .manifest_head(repo, tag, manifest::ACCEPT_IMAGE, Access::Pull)
                .await?
            else {
                return Ok(None);
            };
            if let Some(d) = head.digest {
                if let Some(p) = self.manifests.get(&d) {
                    return Ok(Some((d, p)));
                }
            }
        }
        let Some((digest, body)) = self
            .client
            .manifest_get(repo, tag, manifest::ACCEPT_IMAGE)
            .await?
        else {
            return Ok(None);
        };
        let parsed = match manifest::parse(&body) {
            Ok(p) => Arc::new(p),
            Err(why) => {
                tracing::warn!(%repo, %tag, "oci: skipping a tag that is not an extension artifact: {why}");
                return Ok(None);
            }
        };
        self.manifests.insert(repo, tag, &digest, parsed.clone());
        Ok(Some((digest, parsed)))
    }

    /// The record of one version (see [`Self::entry`]), its metadata read
    /// from the artifact's `extension.yaml` when the manifest has no
    /// metadata annotations ([`scan`]).
    async fn described(
        &self,
        t: ExtensionType,
        name: &str,
        repo: &str,
        tag: (&str, semver::Version),
        digest: String,
        m: &Parsed,
    ) -> Result<Option<VersionEntry>, BackendError> {
        let scanned = if scan::lacks_metadata(m) {
            Some(
                self.scans
                    .scan(&self.client, repo, &m.layer_digest())
                    .await?,
            )
        } else {
            None
        };
        Ok(self.entry(t, name, repo, tag, digest, m, scanned.as_deref()))
    }

    /// The record of one version, or `None` when its annotations say it
    /// belongs to another extension. `scanned` is what the artifact's own
    /// `extension.yaml` says, for manifests without annotations: it fills
    /// the metadata and flags a tag whose tarball declares another version,
    /// name or type (`mismatch`).
    #[allow(clippy::too_many_arguments)]
    fn entry(
        &self,
        t: ExtensionType,
        name: &str,
        repo: &str,
        (tag, semver): (&str, semver::Version),
        digest: String,
        m: &Parsed,
        scanned: Option<&crate::backend::tar_meta::Scan>,
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
        let layer = m.layer_digest();
        let signed = self
            .signature_tags
            .lock()
            .get(repo)
            .is_some_and(|s| s.contains(&crate::signature::oci_signature_tag(&layer)));
        let mut record = Extension {
            name: name.to_string(),
            ext_type: t,
            version: semver.to_string(),
            description: ann(ANN_DESCRIPTION).unwrap_or_default(),
            author: ann(ANN_AUTHORS),
            repository: ann(ANN_SOURCE),
            source: Source::Oci,
            published_at: ann(ANN_CREATED).map(|c| utc(&c)),
            download_url: None,
            checksum: Some(layer.clone()),
            size: Some(m.layer.size()),
            tags,
            prerelease: !semver.pre.is_empty(),
            stale: false,
            requires: list(ANN_REQUIRES),
            dependencies: list(ANN_DEPENDENCIES),
            signature: extreg_shared::SignatureState {
                signed: Some(signed),
                ..Default::default()
            },
            mismatch: None,
        };
        if let Some(crate::backend::tar_meta::Scan::Found(declared)) = scanned {
            crate::backend::tar_meta::fill(&mut record, declared);
            record.mismatch = crate::backend::tar_meta::mismatch(t, name, &semver, declared);
            if let Some(why) = &record.mismatch {
                tracing::warn!(%repo, %tag, "oci: flagging a tag whose artifact is another version: {why}");
            }
        }
        Some(VersionEntry {
            record,
            semver,
            locator: format!("{repo}@{layer}"),
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
                match self.manifest(repo, &tag).await? {
                    Some((d, m)) => self.described(t, name, repo, (&tag, v), d, &m).await,
                    None => Ok(None),
                }
            })
            .buffer_unordered(self.client.concurrency() * 2)
            .try_collect()
            .await?;
        Ok(found.into_iter().flatten().collect())
    }

    /// The newest version of a repository: tags by precedence (stable
    /// first), the first whose manifest is an extension artifact that is
    /// not flagged as a mismatch.
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
                match self.described(t, name, repo, (&tag, v), d, &m).await? {
                    Some(e) if e.record.mismatch.is_none() => return Ok(Some(e.record)),
                    _ => {}
                }
            }
        }
        Ok(None)
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
        let work = async {
            let repos = self.extension_repos().await?;
            let results: Vec<(String, Result<Option<Extension>, BackendError>)> =
                futures::stream::iter(repos)
                    .map(|(t, name, repo)| async move {
                        let r = self.repo_newest(t, &name, &repo).await;
                        (repo, r)
                    })
                    .buffer_unordered(self.client.concurrency() * 2)
                    .collect()
                    .await;
            super::isolate("oci", results, &self.skipped)
        };
        match tokio::time::timeout(LIST_DEADLINE, work).await {
            Ok(r) => r,
            Err(_) => Err(BackendError::Timeout(LIST_DEADLINE.as_secs())),
        }
    }

    fn identity(&self) -> String {
        format!("oci:{}/{}", self.client.base_url(), self.namespace)
    }

    fn skipped(&self) -> Vec<String> {
        self.skipped.lock().clone()
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
        let mut out = self.repo_versions(ext_type, name, &repo).await?;
        out.sort_by(|a, b| b.semver.cmp(&a.semver));
        Ok(out)
    }

    async fn fetch(&self, entry: &VersionEntry) -> Result<Artifact, BackendError> {
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
        let (stream, announced) = self.client.blob_get(repo, digest, &what).await?;
        Ok(Artifact {
            stream,
            size: entry.record.size.or(announced),
            digest: Some(digest.to_string()),
        })
    }

    async fn signature(&self, entry: &VersionEntry) -> Result<Option<Vec<u8>>, BackendError> {
        let Some((repo, layer)) = entry.locator.rsplit_once('@') else {
            return Ok(None);
        };
        let tag = crate::signature::oci_signature_tag(layer);
        let what = format!("signature manifest {repo}:{tag}");
        let Some((_, body)) = self.client.manifest_get(repo, &tag, OCI_MANIFEST).await? else {
            return Ok(None);
        };
        let l = manifest::first_layer(&body)
            .map_err(|e| BackendError::Upstream(format!("{what} has no signature layer: {e}")))?;
        if l.size() > crate::signature::MAX_SIGNATURE_BYTES as u64 {
            return Err(BackendError::Upstream(format!(
                "{what}: the signature layer is too large ({} bytes)",
                l.size()
            )));
        }
        let bytes = self.client.blob_read(repo, l.digest().as_ref()).await?;
        Ok(Some(bytes.to_vec()))
    }

    async fn health(&self) -> Result<(), BackendError> {
        self.client.ping().await
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// `registry` with namespace `ns` and a 5 s timeout.
    pub(crate) fn cfg(registry: &str) -> OciConfig {
        OciConfig {
            namespace: "ns".into(),
            timeout_seconds: 5,
            ..OciConfig::new(registry)
        }
    }

    #[test]
    fn repository_names_follow_the_distribution_grammar() {
        for ok in [
            "ns/aws-provider",
            "a/b_c/d__e",
            "ns/my.ext-taskserv",
            "x/a--b",
        ] {
            assert!(valid_repository(ok), "{ok}");
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
            assert!(!valid_repository(bad), "{bad}");
        }
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
    fn debug_shows_no_secret() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("auth");
        std::fs::write(&p, "robot:s3cr3t-pass\n").unwrap();
        let mut c = cfg("127.0.0.1:1");
        c.auth_token_path = Some(p);
        let b = OciBackend::new(&c).unwrap();
        let shown = format!("{b:?}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(shown.contains("robot:<redacted>"), "{shown}");
        assert_eq!(b.identity(), "oci:http://127.0.0.1:1/ns");
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
}

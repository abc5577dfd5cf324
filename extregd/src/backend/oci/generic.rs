//! Generic OCI artifacts: what lives under a namespace other than the
//! extensions' — KCL packages (`kcl/provisioning-core:1.0.0`, seed 003)
//! and the like. Listed as one record per tag ([`OciArtifact`]), and pulled
//! as their artifact layer (the layer [`manifest::parse`] picks: the
//! `tar+gzip` one, else the only one), verified against its digest.
//!
//! **Bounded like the extension listing.** The catalog and tag lists are
//! read through the client's paged lists (bounded pages, bytes per page);
//! at most [`MAX_REPOSITORIES`] repositories and [`MAX_TAGS`] tags each are
//! read (the rest are left out with a warning), manifests are read bounded
//! and cached by digest, and the whole listing gives up after
//! [`super::LIST_DEADLINE`]. Only repositories directly below the namespace
//! (`{namespace}/{name}`, `{name}` one component) are listed. A repository
//! that fails is left out with a warning; when every one fails, the
//! listing fails.
//!
//! **Which namespaces.** The caller (the application layer) checks the
//! namespace against `[oci] artifact_namespaces` before anything is asked;
//! this module asks the configured registry only, never another.

use super::{manifest, utc, valid_repository, OciBackend, ANN_CREATED};
use crate::backend::BackendError;
use extreg_shared::artifact::{valid_tag, OciArtifact};
use futures::StreamExt;

/// Repositories read per listing.
pub const MAX_REPOSITORIES: usize = 1_000;
/// Tags read per repository.
pub const MAX_TAGS: usize = 1_000;

/// Where one generic artifact's bytes are: its repository and layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    pub record: OciArtifact,
    /// `{namespace}/{name}`.
    pub repository: String,
    /// The manifest digest: the revision of the tag.
    pub revision: String,
}

impl OciBackend {
    /// Every tag of every repository directly under `namespace` (already
    /// checked by the caller), sorted by name then tag.
    pub async fn generic_artifacts(
        &self,
        namespace: &str,
    ) -> Result<Vec<OciArtifact>, BackendError> {
        let deadline = super::LIST_DEADLINE;
        match tokio::time::timeout(deadline, self.generic_listing(namespace)).await {
            Ok(r) => r,
            Err(_) => Err(BackendError::Timeout(deadline.as_secs())),
        }
    }

    async fn generic_listing(&self, namespace: &str) -> Result<Vec<OciArtifact>, BackendError> {
        let prefix = format!("{namespace}/");
        let mut repos: Vec<String> = self
            .client
            .catalog()
            .await?
            .into_iter()
            .filter(|r| {
                r.strip_prefix(&prefix)
                    .is_some_and(|rest| !rest.is_empty() && !rest.contains('/'))
                    && valid_repository(r)
            })
            .collect();
        repos.sort();
        repos.dedup();
        if repos.len() > MAX_REPOSITORIES {
            tracing::warn!(
                namespace,
                found = repos.len(),
                kept = MAX_REPOSITORIES,
                "oci: too many repositories under the namespace; listing the first"
            );
            repos.truncate(MAX_REPOSITORIES);
        }
        let total = repos.len();
        let results: Vec<(String, Result<Vec<OciArtifact>, BackendError>)> =
            futures::stream::iter(repos)
                .map(|repo| async move {
                    let r = self.generic_repo(namespace, &repo).await;
                    (repo, r)
                })
                .buffer_unordered(self.client.concurrency())
                .collect()
                .await;
        let mut out = Vec::new();
        let mut failed = 0;
        let mut first_err = None;
        for (repo, r) in results {
            match r {
                Ok(v) => out.extend(v),
                Err(e) => {
                    tracing::warn!(repository = %repo, error = %e, "oci: leaving out a repository that failed while listing artifacts");
                    failed += 1;
                    first_err.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_err.filter(|_| failed == total) {
            return Err(e);
        }
        out.sort_by(|a, b| (&a.name, &a.version).cmp(&(&b.name, &b.version)));
        Ok(out)
    }

    /// The records of one repository's tags (signature tags and tags whose
    /// manifest is not an image manifest with an artifact layer left out).
    async fn generic_repo(
        &self,
        namespace: &str,
        repo: &str,
    ) -> Result<Vec<OciArtifact>, BackendError> {
        let mut tags = match self.client.tags(repo).await {
            Ok(t) => t,
            Err(BackendError::NotFound(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        tags.retain(|t| valid_tag(t) && !crate::signature::is_oci_signature_tag(t));
        tags.sort();
        tags.dedup();
        if tags.len() > MAX_TAGS {
            tracing::warn!(%repo, found = tags.len(), kept = MAX_TAGS, "oci: too many tags; listing the first");
            tags.truncate(MAX_TAGS);
        }
        let name = repo[namespace.len() + 1..].to_string();
        let found: Vec<Option<OciArtifact>> = futures::stream::iter(tags)
            .map(|tag| {
                let name = name.clone();
                async move {
                    let m = self.manifest(repo, &tag).await?;
                    Ok::<_, BackendError>(
                        m.map(|(digest, p)| record(namespace, &name, &tag, digest, &p)),
                    )
                }
            })
            .buffer_unordered(self.client.concurrency())
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_, _>>()?;
        Ok(found.into_iter().flatten().collect())
    }

    /// One tag of `{namespace}/{name}`, read now (its manifest through the
    /// manifest cache); `None` when the tag does not exist or is not an
    /// artifact.
    pub async fn generic_artifact(
        &self,
        namespace: &str,
        name: &str,
        tag: &str,
    ) -> Result<Option<Located>, BackendError> {
        let repo = format!("{namespace}/{name}");
        if !valid_repository(&repo) || !valid_tag(tag) {
            return Ok(None);
        }
        let Some((digest, p)) = self.manifest(&repo, tag).await? else {
            return Ok(None);
        };
        Ok(Some(Located {
            record: record(namespace, name, tag, digest.clone(), &p),
            repository: repo,
            revision: digest,
        }))
    }

    /// The tags of `{namespace}/{name}` (bounded as a listing), for
    /// choosing the newest when no version is asked for.
    pub async fn generic_tags(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Vec<String>, BackendError> {
        let repo = format!("{namespace}/{name}");
        if !valid_repository(&repo) {
            return Ok(Vec::new());
        }
        let mut tags = match self.client.tags(&repo).await {
            Ok(t) => t,
            Err(BackendError::NotFound(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        tags.retain(|t| valid_tag(t) && !crate::signature::is_oci_signature_tag(t));
        tags.truncate(MAX_TAGS);
        Ok(tags)
    }

    /// The layer blob of a located artifact, as a stream with its size
    /// (the artifact cache hashes and checks it).
    pub async fn generic_blob(
        &self,
        a: &Located,
    ) -> Result<crate::backend::Artifact, BackendError> {
        let what = format!(
            "the {}/{}:{} layer",
            a.record.namespace, a.record.name, a.record.version
        );
        // The client's connect and per-read timeouts hold (no overall one:
        // packages may be large), as for extension downloads.
        let (stream, announced) = self
            .client
            .blob_get(&a.repository, &a.record.layer_digest, &what)
            .await?;
        Ok(crate::backend::Artifact {
            stream,
            size: Some(a.record.size).or(announced),
            digest: Some(a.record.layer_digest.clone()),
        })
    }
}

fn record(
    namespace: &str,
    name: &str,
    tag: &str,
    digest: String,
    p: &manifest::Parsed,
) -> OciArtifact {
    OciArtifact {
        name: name.to_string(),
        version: tag.to_string(),
        digest,
        size: p.layer.size(),
        media_type: p.media_type.clone(),
        created_at: p
            .annotations
            .get(ANN_CREATED)
            .map(|c| c.trim())
            .filter(|c| !c.is_empty())
            .map(utc),
        namespace: namespace.to_string(),
        layer_digest: p.layer_digest(),
        layer_media_type: p.layer.media_type().as_ref().to_string(),
    }
}

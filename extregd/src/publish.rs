//! Publishing to and deleting from the OCI registry (seed 004 `ext publish`,
//! `ext delete`). Reached through the daemon's local socket only; the REST
//! API stays read-only.
//!
//! **Publish.** The folder's `extension.yaml` is validated
//! ([`Manifest::parse`]); its version must equal the version asked for. The
//! folder is packed as a reproducible tar.gz ([`pack_dir`]) and pushed as an
//! OCI artifact to `{namespace}/{name}-{type}:{version}`:
//!
//! - config: the empty descriptor `application/vnd.oci.empty.v1+json` (`{}`);
//! - `artifactType`: [`ARTIFACT_TYPE`];
//! - one layer `application/vnd.oci.image.layer.v1.tar+gzip` annotated with
//!   `org.opencontainers.image.title` = `{name}-{version}.tar.gz`;
//! - manifest annotations: `org.opencontainers.image.version`, `.created`
//!   (now, UTC), `.description`, `.authors`, `.source` (metadata.repository),
//!   `.url` (metadata.homepage), `.licenses`, `.title`, and
//!   `dev.provisioning.extension.name`, `.type`, `.tags` (comma-separated).
//!
//! An existing tag is refused unless `force`. `dry_run` validates and packs
//! but sends nothing to the registry. Blobs already in the repository are
//! not uploaded again (`HEAD` first).
//!
//! **Delete.** The tag is resolved to its manifest digest (`HEAD`) and
//! `DELETE /v2/{repo}/manifests/{digest}` removes it (and every tag naming
//! the same manifest). The registry must allow deletes (distribution:
//! `storage.delete.enabled: true`).

use crate::backend::oci::{
    pull_scope, OciBackend, Req, ANN_AUTHORS, ANN_CREATED, ANN_DESCRIPTION, ANN_LICENSES, ANN_NAME,
    ANN_SOURCE, ANN_TAGS, ANN_TITLE, ANN_TYPE, ANN_URL, ANN_VERSION, ARTIFACT_TYPE, EMPTY_CONFIG,
    EMPTY_DIGEST, LAYER_MEDIA_TYPE, OCI_MANIFEST,
};
use crate::backend::BackendError;
use crate::manifest::Manifest;
use crate::pack::pack_dir;
use bytes::Bytes;
use extreg_shared::{parse_version, validate_name, ExtensionType};
use reqwest::header::{HeaderValue, CONTENT_TYPE, LOCATION};
use reqwest::{Method, Url};
use serde::Serialize;
use std::path::Path;
use std::time::Duration;

/// Largest folder content packed for publishing.
pub const MAX_PUBLISH_BYTES: u64 = 1 << 30;

/// What a publish did (or, with `dry_run`, would do).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PublishReport {
    pub name: String,
    pub ext_type: ExtensionType,
    pub version: String,
    /// `{namespace}/{name}-{type}`.
    pub repository: String,
    pub tag: String,
    /// `host[:port]/{repository}:{tag}`, as skopeo names it.
    pub reference: String,
    /// `sha256:` of the pushed manifest.
    pub manifest_digest: String,
    /// `sha256:` of the tar.gz layer (the download's ETag).
    pub layer_digest: String,
    pub size: u64,
    /// False for a dry run.
    pub pushed: bool,
    /// True when an existing tag was overwritten (`force`).
    pub replaced: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// The folder, its `extension.yaml` or the version asked for is wrong.
    #[error("{0}")]
    Invalid(String),
    /// The tag exists and `force` was not given.
    #[error("{reference} already exists (manifest {digest}); use force to replace it")]
    Exists { reference: String, digest: String },
    /// Delete: no such version in the registry.
    #[error("{0} is not in the registry")]
    NotFound(String),
    /// The registry failed or refused (messages carry no credentials).
    #[error("registry: {0}")]
    Backend(#[from] BackendError),
}

fn push_scope(repo: &str) -> String {
    format!("repository:{repo}:pull,push")
}

/// Validates `dir`, packs it and pushes it (see the module docs).
pub async fn publish(
    backend: &OciBackend,
    dir: &Path,
    version: &str,
    force: bool,
    dry_run: bool,
) -> Result<PublishReport, PublishError> {
    let yaml_path = dir.join("extension.yaml");
    let yaml = tokio::fs::read(&yaml_path)
        .await
        .map_err(|e| PublishError::Invalid(format!("{}: {e}", yaml_path.display())))?;
    let m = Manifest::parse(&yaml)
        .map_err(|e| PublishError::Invalid(format!("{}: {e}", yaml_path.display())))?;
    let asked = parse_version(version)
        .map_err(|e| PublishError::Invalid(format!("version '{version}': {e}")))?;
    if asked != m.version {
        return Err(PublishError::Invalid(format!(
            "version {asked} asked for, but {} says {}",
            yaml_path.display(),
            m.version
        )));
    }
    validate_name(&m.name).map_err(|e| PublishError::Invalid(format!("name: {e}")))?;
    let tag = m.version.to_string();
    if tag.contains('+') {
        return Err(PublishError::Invalid(format!(
            "version {tag}: build metadata (+...) cannot be an OCI tag"
        )));
    }
    let src = dir.to_path_buf();
    let layer = tokio::task::spawn_blocking(move || pack_dir(&src, MAX_PUBLISH_BYTES))
        .await
        .map_err(|e| PublishError::Invalid(format!("packing failed: {e}")))?
        .map_err(|e| PublishError::Invalid(format!("cannot pack {}: {e}", dir.display())))?;
    let layer = Bytes::from(layer);
    let layer_digest = crate::backend::sha256_tag(&layer);
    let repo = backend.repository(m.ext_type, &m.name);
    let title = format!("{}-{tag}.tar.gz", m.name);
    let mut ann = serde_json::Map::new();
    let mut put = |k: &str, v: Option<&str>| {
        if let Some(v) = v.map(str::trim).filter(|v| !v.is_empty()) {
            ann.insert(k.to_string(), v.into());
        }
    };
    let created = crate::backend::rfc3339(std::time::SystemTime::now());
    let tags = m.tags.join(",");
    put(ANN_VERSION, Some(&tag));
    put(ANN_CREATED, Some(&created));
    put(ANN_TITLE, Some(&m.name));
    put(ANN_DESCRIPTION, Some(&m.description));
    put(ANN_AUTHORS, m.author.as_deref());
    put(ANN_SOURCE, m.repository.as_deref());
    put(ANN_URL, m.homepage.as_deref());
    put(ANN_LICENSES, m.license.as_deref());
    put(ANN_NAME, Some(&m.name));
    put(ANN_TYPE, Some(m.ext_type.as_str()));
    put(ANN_TAGS, Some(&tags));
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": ARTIFACT_TYPE,
        "config": {
            "mediaType": EMPTY_CONFIG,
            "digest": EMPTY_DIGEST,
            "size": 2,
            "data": "e30="
        },
        "layers": [{
            "mediaType": LAYER_MEDIA_TYPE,
            "digest": layer_digest,
            "size": layer.len(),
            "annotations": { ANN_TITLE: title }
        }],
        "annotations": ann,
    });
    let manifest = Bytes::from(serde_json::to_vec(&manifest).expect("json"));
    let mut report = PublishReport {
        name: m.name.clone(),
        ext_type: m.ext_type,
        version: tag.clone(),
        repository: repo.clone(),
        tag: tag.clone(),
        reference: backend.reference(&repo, &tag),
        manifest_digest: crate::backend::sha256_tag(&manifest),
        layer_digest: layer_digest.clone(),
        size: layer.len() as u64,
        pushed: false,
        replaced: false,
    };
    if dry_run {
        return Ok(report);
    }
    let inner = backend.inner();
    let scope = push_scope(&repo);
    if let Some(digest) = inner.tag_digest(&repo, &tag, &scope).await? {
        if !force {
            return Err(PublishError::Exists {
                reference: report.reference,
                digest,
            });
        }
        report.replaced = true;
    }
    push_blob(backend, &repo, EMPTY_DIGEST, Bytes::from_static(b"{}")).await?;
    push_blob(backend, &repo, &layer_digest, layer).await?;
    let what = format!("manifest {repo}:{tag}");
    let mut req = Req::new(
        Method::PUT,
        inner.url(&format!("/v2/{repo}/manifests/{tag}")),
        scope,
        &what,
    );
    req.headers
        .insert(CONTENT_TYPE, HeaderValue::from_static(OCI_MANIFEST));
    req.body = Some(manifest);
    req.timeout = Some(inner.api_timeout());
    {
        let _permit = inner.permit().await?;
        inner.send(&req).await?;
    }
    inner.forget_tag(&repo, &tag);
    report.pushed = true;
    tracing::info!(reference = %report.reference, digest = %report.manifest_digest, "published");
    Ok(report)
}

/// Uploads one blob unless the repository already has it: `POST` an upload
/// session, then `PUT` the bytes to its `Location` with `digest=`.
async fn push_blob(
    backend: &OciBackend,
    repo: &str,
    digest: &str,
    data: Bytes,
) -> Result<(), PublishError> {
    let inner = backend.inner();
    let scope = push_scope(repo);
    let what = format!("blob {digest} of {repo}");
    let mut head = Req::new(
        Method::HEAD,
        inner.url(&format!("/v2/{repo}/blobs/{digest}")),
        scope.clone(),
        &what,
    );
    head.timeout = Some(inner.api_timeout());
    match inner.send_read(&head).await {
        Ok(_) => return Ok(()),
        Err(BackendError::NotFound(_)) => {}
        Err(e) => return Err(e.into()),
    }
    let _permit = inner.permit().await?;
    let mut post = Req::new(
        Method::POST,
        inner.url(&format!("/v2/{repo}/blobs/uploads/")),
        scope.clone(),
        &what,
    );
    post.timeout = Some(inner.api_timeout());
    let resp = inner.send(&post).await?;
    let location = resp
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            BackendError::Upstream(format!("the registry opened no upload session for {what}"))
        })?;
    let base = Url::parse(&inner.url("/")).expect("base parses");
    let mut url = base.join(location).map_err(|_| {
        BackendError::Upstream(format!(
            "the registry sent a bad upload Location for {what}"
        ))
    })?;
    if url.origin() != base.origin() {
        return Err(BackendError::Upstream(format!(
            "the registry's upload Location for {what} is on another host; not sending credentials there"
        ))
        .into());
    }
    url.query_pairs_mut().append_pair("digest", digest);
    let mut put = Req::new(Method::PUT, url.to_string(), scope, &what);
    put.headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    // Large layers: the API timeout plus a second per MiB.
    put.timeout = Some(inner.api_timeout() + Duration::from_secs(data.len() as u64 >> 20));
    put.body = Some(data);
    inner.send(&put).await?;
    Ok(())
}

/// Deletes version `version` of an extension: resolves its tag to the
/// manifest digest and deletes the manifest.
pub async fn delete(
    backend: &OciBackend,
    ext_type: ExtensionType,
    name: &str,
    version: &str,
) -> Result<(), PublishError> {
    validate_name(name).map_err(|e| PublishError::Invalid(format!("name: {e}")))?;
    let v = parse_version(version)
        .map_err(|e| PublishError::Invalid(format!("version '{version}': {e}")))?;
    let repo = backend.repository(ext_type, name);
    let tag = v.to_string();
    let inner = backend.inner();
    let mut digest = inner.tag_digest(&repo, &tag, &pull_scope(&repo)).await?;
    let mut shown_tag = tag.clone();
    if digest.is_none() && version.starts_with('v') {
        shown_tag = version.to_string();
        digest = inner.tag_digest(&repo, version, &pull_scope(&repo)).await?;
    }
    let Some(digest) = digest else {
        return Err(PublishError::NotFound(backend.reference(&repo, &tag)));
    };
    let what = format!("manifest {repo}:{shown_tag}");
    let mut req = Req::new(
        Method::DELETE,
        inner.url(&format!("/v2/{repo}/manifests/{digest}")),
        format!("repository:{repo}:delete"),
        &what,
    );
    req.timeout = Some(inner.api_timeout());
    let res = {
        let _permit = inner.permit().await?;
        inner.send(&req).await
    };
    match res {
        Ok(_) => {}
        Err(BackendError::NotFound(_)) => {
            return Err(PublishError::NotFound(backend.reference(&repo, &shown_tag)))
        }
        Err(BackendError::Upstream(m)) if m.contains(" 405 ") => {
            return Err(PublishError::Backend(BackendError::Upstream(format!(
                "the registry does not allow deletes (405); enable them (distribution: storage.delete.enabled: true): {m}"
            ))))
        }
        Err(e) => return Err(e.into()),
    }
    inner.forget_tag(&repo, &shown_tag);
    tracing::info!(%repo, tag = %shown_tag, %digest, "deleted");
    Ok(())
}

//! Publishing to and deleting from an OCI registry (seed 004 `ext publish`,
//! `ext delete`). Reached through the daemon's local socket and the
//! `extregd publish/delete` commands; the REST API stays read-only.
//!
//! **Publish.** The folder's `extension.yaml` is validated
//! ([`Manifest::parse`]); its version must equal the version asked for. The
//! folder is packed as a reproducible tar.gz into an anonymous temp file,
//! hashed while written ([`pack`]), and pushed as an OCI artifact to
//! `{namespace}/{name}-{type}:{version}`:
//!
//! - config: the empty descriptor `application/vnd.oci.empty.v1+json` (`{}`);
//! - `artifactType`: [`ARTIFACT_TYPE`];
//! - one layer [`EXTENSION_LAYER`] annotated with
//!   `org.opencontainers.image.title` = `{name}-{version}.tar.gz`;
//! - manifest annotations ([`annotations`]): `org.opencontainers.image.version`,
//!   `.created` (see [`PublishOptions::created`]), `.description`,
//!   `.authors`, `.source` (metadata.repository), `.url` (metadata.homepage),
//!   `.licenses`, `.title`, and `dev.provisioning.extension.name`, `.type`,
//!   `.tags` (comma-separated).
//!
//! An existing tag is refused unless `force`. `dry_run` validates and packs
//! but sends nothing; it reports the digests the push would produce (same
//! folder, same `created`, same bytes). Blobs already in the repository
//! are not uploaded again (`HEAD` first). The layer goes up as one streamed
//! `PUT` read from the temp file, so memory does not grow with its size.
//!
//! **Delete.** The tag is resolved to its manifest digest (`HEAD`) and
//! `DELETE /v2/{repo}/manifests/{digest}` removes it (and every tag naming
//! the same manifest). The registry must allow deletes (distribution:
//! `storage.delete.enabled: true`).

use crate::backend::oci::manifest::{self, ArtifactSpec};
use crate::backend::oci::{
    Access, OciBackend, ANN_AUTHORS, ANN_CREATED, ANN_DEPENDENCIES, ANN_DESCRIPTION, ANN_LICENSES,
    ANN_NAME, ANN_REQUIRES, ANN_SOURCE, ANN_TAGS, ANN_TITLE, ANN_TYPE, ANN_URL, ANN_VERSION,
    ARTIFACT_TYPE, EMPTY_DIGEST,
};
use crate::backend::BackendError;
use crate::manifest::Manifest;
use crate::pack::{pack_dir_into, HashingWriter};
use crate::progress::ProgressTx;
use bytes::Bytes;
use extreg_shared::protocol::Phase;
use extreg_shared::{parse_version, validate_name, ExtensionType};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

/// Largest folder content packed for publishing.
pub const MAX_PUBLISH_BYTES: u64 = 1 << 30;

/// The layer media type extregd publishes. Ends in `tar+gzip` (so every
/// reader sees a gzipped tarball) but is not the generic
/// `application/vnd.oci.image.layer.v1.tar+gzip`, which the ORAS Python
/// client unpacks as a folder instead of saving the `.tar.gz` named by its
/// title.
pub const EXTENSION_LAYER: &str = "application/vnd.provisioning.extension.layer.v1.tar+gzip";

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
    /// The manifest's `org.opencontainers.image.created`.
    pub created: String,
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

/// How to publish.
#[derive(Debug, Clone, Default)]
pub struct PublishOptions {
    /// Replace an existing tag.
    pub force: bool,
    /// Validate and pack only; send nothing.
    pub dry_run: bool,
    /// `org.opencontainers.image.created` (RFC 3339). Default:
    /// `$SOURCE_DATE_EPOCH` when set, else the newest modification time in
    /// the folder, so a dry run and the push that follows it (or two pushes
    /// of an unchanged folder) produce the same manifest digest.
    pub created: Option<String>,
}

/// A validated folder, packed into an anonymous temp file.
pub struct Packed {
    pub manifest: Manifest,
    pub tag: String,
    /// The reproducible tar.gz (gone when dropped).
    pub file: std::fs::File,
    pub digest: String,
    pub size: u64,
}

/// Validates `dir/extension.yaml` against `version` and packs the folder,
/// hashing while writing (peak memory does not grow with the folder).
pub async fn pack(dir: &Path, version: &str) -> Result<Packed, PublishError> {
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
    let (file, digest, size) = tokio::task::spawn_blocking(move || {
        let tmp = tempfile::tempfile()?;
        let (file, digest, size) =
            pack_dir_into(&src, MAX_PUBLISH_BYTES, HashingWriter::new(tmp))?.finish();
        file.sync_all()?;
        Ok::<_, std::io::Error>((file, digest, size))
    })
    .await
    .map_err(|e| PublishError::Invalid(format!("packing failed: {e}")))?
    .map_err(|e| PublishError::Invalid(format!("cannot pack {}: {e}", dir.display())))?;
    Ok(Packed {
        manifest: m,
        tag,
        file,
        digest,
        size,
    })
}

/// The `created` date: given, `$SOURCE_DATE_EPOCH`, or the folder's newest
/// modification time (seconds, UTC).
pub fn created_date(dir: &Path, given: Option<&str>) -> Result<String, PublishError> {
    if let Some(c) = given {
        let t = humantime::parse_rfc3339_weak(c.trim()).map_err(|_| {
            PublishError::Invalid(format!(
                "created '{c}' is not an RFC 3339 date (2025-10-06T12:00:00Z)"
            ))
        })?;
        return Ok(crate::backend::rfc3339(t));
    }
    if let Ok(epoch) = std::env::var("SOURCE_DATE_EPOCH") {
        let secs = epoch.trim().parse::<u64>().map_err(|_| {
            PublishError::Invalid(format!("SOURCE_DATE_EPOCH '{epoch}' is not Unix seconds"))
        })?;
        return Ok(crate::backend::rfc3339_secs(secs));
    }
    let t = crate::pack::newest_mtime(dir)
        .map_err(|e| PublishError::Invalid(format!("cannot read {}: {e}", dir.display())))?;
    Ok(crate::backend::rfc3339(t))
}

/// The manifest annotations of a published extension.
pub fn annotations(m: &Manifest, tag: &str, created: &str) -> BTreeMap<String, String> {
    let mut ann = BTreeMap::new();
    let mut put = |k: &str, v: Option<&str>| {
        if let Some(v) = v.map(str::trim).filter(|v| !v.is_empty()) {
            ann.insert(k.to_string(), v.to_string());
        }
    };
    let tags = m.tags.join(",");
    put(ANN_VERSION, Some(tag));
    put(ANN_CREATED, Some(created));
    put(ANN_TITLE, Some(&m.name));
    put(ANN_DESCRIPTION, Some(&m.description));
    put(ANN_AUTHORS, m.author.as_deref());
    put(ANN_SOURCE, m.repository.as_deref());
    put(ANN_URL, m.homepage.as_deref());
    put(ANN_LICENSES, m.license.as_deref());
    put(ANN_NAME, Some(&m.name));
    put(ANN_TYPE, Some(m.ext_type.as_str()));
    put(ANN_TAGS, Some(&tags));
    let requires = serde_json::to_string(&m.requires).expect("json");
    let dependencies = serde_json::to_string(&m.dependencies).expect("json");
    put(ANN_REQUIRES, Some(&requires));
    put(ANN_DEPENDENCIES, Some(&dependencies));
    ann
}

/// The artifact manifest for a packed layer (see [`manifest::artifact`]).
pub fn artifact_manifest(
    p: &Packed,
    annotations: BTreeMap<String, String>,
) -> Result<Bytes, PublishError> {
    let title = format!("{}-{}.tar.gz", p.manifest.name, p.tag);
    manifest::artifact(&ArtifactSpec {
        artifact_type: ARTIFACT_TYPE,
        layer_media_type: EXTENSION_LAYER,
        layer_digest: &p.digest,
        layer_size: p.size,
        title: &title,
        annotations,
    })
    .map_err(|e| PublishError::Invalid(format!("cannot build the manifest: {e}")))
}

/// Validates `dir`, packs it and pushes it (see the module docs).
pub async fn publish(
    backend: &OciBackend,
    dir: &Path,
    version: &str,
    force: bool,
    dry_run: bool,
) -> Result<PublishReport, PublishError> {
    let opts = PublishOptions {
        force,
        dry_run,
        created: None,
    };
    publish_with(backend, dir, version, &opts).await
}

/// [`publish`] with every option.
pub async fn publish_with(
    backend: &OciBackend,
    dir: &Path,
    version: &str,
    opts: &PublishOptions,
) -> Result<PublishReport, PublishError> {
    publish_reporting(backend, dir, version, opts, &ProgressTx::none()).await
}

/// [`publish_with`], reporting the layer upload into `progress` (phase
/// `push`, bytes of the layer sent of its size).
pub async fn publish_reporting(
    backend: &OciBackend,
    dir: &Path,
    version: &str,
    opts: &PublishOptions,
    progress: &ProgressTx,
) -> Result<PublishReport, PublishError> {
    let packed = pack(dir, version).await?;
    let created = created_date(dir, opts.created.as_deref())?;
    let m = &packed.manifest;
    let tag = packed.tag.clone();
    let repo = backend.repository(m.ext_type, &m.name);
    let manifest = artifact_manifest(&packed, annotations(m, &tag, &created))?;
    let mut report = PublishReport {
        name: m.name.clone(),
        ext_type: m.ext_type,
        version: tag.clone(),
        repository: repo.clone(),
        tag: tag.clone(),
        reference: backend.reference(&repo, &tag),
        manifest_digest: crate::backend::sha256_tag(&manifest),
        layer_digest: packed.digest.clone(),
        size: packed.size,
        created,
        pushed: false,
        replaced: false,
    };
    if opts.dry_run {
        return Ok(report);
    }
    let client = backend.client();
    if let Some(digest) = client.manifest_digest(&repo, &tag, Access::Push).await? {
        if !opts.force {
            return Err(PublishError::Exists {
                reference: report.reference,
                digest,
            });
        }
        report.replaced = true;
    }
    client
        .blob_push(&repo, EMPTY_DIGEST, Bytes::from_static(b"{}"))
        .await?;
    let total = packed.size;
    let tx = progress.clone();
    progress.send(Phase::Push, 0, Some(total));
    client
        .blob_push_file_counted(
            &repo,
            &packed.digest,
            total,
            &packed.file,
            std::sync::Arc::new(move |n| tx.send(Phase::Push, n.min(total), Some(total))),
        )
        .await?;
    client.manifest_put(&repo, &tag, manifest).await?;
    backend.forget_tag(&repo, &tag);
    report.pushed = true;
    tracing::info!(reference = %report.reference, digest = %report.manifest_digest, "published");
    Ok(report)
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
    let client = backend.client();
    let mut digest = client.manifest_digest(&repo, &tag, Access::Pull).await?;
    let mut shown_tag = tag.clone();
    if digest.is_none() && version.starts_with('v') {
        shown_tag = version.to_string();
        digest = client.manifest_digest(&repo, version, Access::Pull).await?;
    }
    let Some(digest) = digest else {
        return Err(PublishError::NotFound(backend.reference(&repo, &tag)));
    };
    let what = format!("manifest {repo}:{shown_tag}");
    match client.manifest_delete(&repo, &digest, &what).await {
        Ok(()) => {}
        Err(BackendError::NotFound(_)) => {
            return Err(PublishError::NotFound(backend.reference(&repo, &shown_tag)))
        }
        Err(BackendError::Status { code: 405, message }) => {
            return Err(PublishError::Backend(BackendError::Status {
                code: 405,
                message: format!(
                    "the registry does not allow deletes (405); enable them (distribution: storage.delete.enabled: true): {message}"
                ),
            }))
        }
        Err(e) => return Err(e.into()),
    }
    backend.forget_tag(&repo, &shown_tag);
    tracing::info!(%repo, tag = %shown_tag, %digest, "deleted");
    Ok(())
}

//! One extension's versions and records, constraint resolution, and the
//! artifact of a resolved version.

use super::merge::{fetch_versions, merge_versions};
use super::{to_json, Catalogue, Versions, VersionsAnswer};
use crate::artifacts::{ArtifactHandle, Delivery};
use crate::backend::{newest, Backend, VersionEntry};
use crate::error::Error;
use bytes::Bytes;
use extreg_shared::{parse_version, Constraint, Extension, ExtensionType, Source};
use extreg_shared::{ErrorKind, Field};
use std::sync::Arc;
use std::time::Instant;

impl Catalogue {
    /// The type of the extension called `name`, for callers that left it
    /// out: an error when no type or several types hold that name.
    pub async fn resolve_type(&self, name: &str) -> Result<ExtensionType, Error> {
        let view = self.catalog(None).await?;
        let types: Vec<ExtensionType> = view
            .items
            .iter()
            .filter(|e| e.name == name)
            .map(|e| e.ext_type)
            .collect();
        match types.as_slice() {
            [t] => Ok(*t),
            [] => {
                Err(Error::not_found(format!("no extension named '{name}'"))
                    .with_field(Field::Name))
            }
            many => Err(Error::invalid_request(format!(
                "'{name}' exists as {}; say which with --type",
                many.iter()
                    .map(|t| t.as_str())
                    .collect::<Vec<_>>()
                    .join(" and ")
            ))
            .with_field(Field::Name)),
        }
    }

    /// The highest version satisfying `constraint` (pre-releases only when
    /// named or `allow_pre`); 404 with the available versions otherwise.
    pub async fn resolve(
        &self,
        ext_type: ExtensionType,
        name: &str,
        constraint: &Constraint,
        allow_pre: bool,
    ) -> Result<VersionEntry, Error> {
        self.resolve_from(ext_type, name, constraint, allow_pre, None)
            .await
    }

    /// [`Self::resolve`] among the versions of one source only, when given
    /// (`--source`): a version held by several backends can then be taken
    /// from a lower-priority one.
    pub async fn resolve_from(
        &self,
        ext_type: ExtensionType,
        name: &str,
        constraint: &Constraint,
        allow_pre: bool,
        source: Option<Source>,
    ) -> Result<VersionEntry, Error> {
        let versions = match source {
            None => self.versions(ext_type, name).await?,
            Some(s) => self.source_versions(ext_type, name, s).await?,
        };
        // Flagged versions are never chosen; when only a flagged one would
        // satisfy the constraint (it was asked for), say so instead of
        // "not found".
        let sound: Vec<VersionEntry> = versions
            .entries
            .iter()
            .filter(|e| e.record.mismatch.is_none())
            .cloned()
            .collect();
        if sound.len() < versions.entries.len()
            && constraint
                .resolve(&sound, |e| (&e.semver, e.record.prerelease), allow_pre)
                .is_none()
        {
            if let Some(flagged) = constraint.resolve(
                &versions.entries,
                |e| (&e.semver, e.record.prerelease),
                allow_pre,
            ) {
                return Err(mismatch_refusal(flagged));
            }
        }
        constraint
            .resolve(&sound, |e| (&e.semver, e.record.prerelease), allow_pre)
            .cloned()
            .ok_or_else(|| {
                not_found_version(ext_type, name, &constraint.to_string(), &versions).with_message(
                    format!(
                        "no version of {ext_type}/{name} satisfies '{constraint}'{}",
                        if allow_pre {
                            ""
                        } else {
                            " (pre-releases need --pre or a constraint that names one)"
                        }
                    ),
                )
            })
    }

    /// The record of one version (newest stable when `version` is None).
    pub async fn version_record(
        &self,
        ext_type: ExtensionType,
        name: &str,
        version: Option<&str>,
    ) -> Result<Extension, Error> {
        let versions = self.versions(ext_type, name).await?;
        let entry = match version {
            None => newest(&versions.entries),
            Some(v) => {
                let wanted = parse_version(v)?;
                versions.entries.iter().find(|e| e.semver == wanted)
            }
        };
        entry
            .map(|e| e.record.clone())
            .ok_or_else(|| not_found_version(ext_type, name, version.unwrap_or("?"), &versions))
    }

    /// The merged versions of one extension; 404 when no backend holds it.
    pub async fn versions(
        &self,
        ext_type: ExtensionType,
        name: &str,
    ) -> Result<Arc<Versions>, Error> {
        Ok(self.versions_answer(ext_type, name).await?.versions)
    }

    /// [`Self::versions`] with their age. Cached versions are answered at
    /// once, whatever their age; a due entry starts one background refresh.
    pub async fn versions_answer(
        &self,
        ext_type: ExtensionType,
        name: &str,
    ) -> Result<VersionsAnswer, Error> {
        let key = (ext_type, name.to_string());
        if let Some(hit) = self.core.versions.get(&key) {
            if hit.refresh {
                self.core.refresh_versions_bg(key.clone());
            }
            return self.core.answer_of(hit);
        }
        let started = Instant::now();
        let res = self.core.load_versions(key.clone()).await?;
        let mut tag = None;
        if res.complete && self.core.versions.insert(key.clone(), res.clone(), started) {
            self.core.dirty.notify_one();
            tag = self
                .core
                .versions
                .peek(&key)
                .map(|h| (h.generation, h.stale));
        }
        Ok(VersionsAnswer {
            versions: res,
            age: 0,
            tag,
        })
    }

    /// `GET /extensions/{type}/{name}`: the record of the newest version.
    pub async fn get(&self, ext_type: ExtensionType, name: &str) -> Result<Bytes, Error> {
        Ok(self.get_aged(ext_type, name).await?.0)
    }

    /// [`Self::get`] and the age in seconds of the data behind it.
    pub async fn get_aged(
        &self,
        ext_type: ExtensionType,
        name: &str,
    ) -> Result<(Bytes, u64), Error> {
        let key = (ext_type, name.to_string());
        let answer = self.versions_answer(ext_type, name).await?;
        if let Some(tag) = answer.tag {
            if let Some((_, b)) = self.metadata.get_if(&key, |(t, _)| *t == tag) {
                return Ok((b, answer.age));
            }
        } else {
            self.metadata.get_if(&key, |_| false);
        }
        let best = newest(&answer.versions.entries).ok_or_else(|| {
            Error::not_found(format!("Extension {ext_type}/{name} not found"))
                .with_field(Field::Name)
        })?;
        let body = to_json(&best.record)?;
        if let Some(tag) = answer.tag {
            self.metadata.insert(key, (tag, body.clone()));
        }
        Ok((body, answer.age))
    }

    /// The versions of one extension in one backend only (not cached: an
    /// explicit `--source` is rare and must see that backend's own list).
    pub async fn source_versions(
        &self,
        ext_type: ExtensionType,
        name: &str,
        source: Source,
    ) -> Result<Arc<Versions>, Error> {
        let backends: Vec<Arc<dyn Backend>> = self
            .core
            .backends
            .iter()
            .filter(|b| b.source() == source)
            .cloned()
            .collect();
        if backends.is_empty() {
            return Err(Error::invalid_request(format!(
                "the {source} backend is not configured"
            )));
        }
        let results = fetch_versions(&backends, &self.core, ext_type, name).await;
        merge_versions(results, &self.core, ext_type, name).map(Arc::new)
    }

    /// The backend that serves `source`.
    pub(super) fn backend_for(&self, source: Source) -> Result<Arc<dyn Backend>, Error> {
        self.core
            .backends
            .iter()
            .find(|b| b.source() == source)
            .cloned()
            .ok_or_else(|| Error::internal("no backend for this version's source"))
    }

    /// One version's entry and its backend.
    pub(super) async fn entry_and_backend(
        &self,
        ext_type: ExtensionType,
        name: &str,
        version: &str,
    ) -> Result<(VersionEntry, Arc<dyn Backend>), Error> {
        let wanted = parse_version(version)?;
        let versions = self.versions(ext_type, name).await?;
        let entry = versions
            .entries
            .iter()
            .find(|e| e.semver == wanted)
            .ok_or_else(|| not_found_version(ext_type, name, version, &versions))?
            .clone();
        if entry.record.mismatch.is_some() {
            return Err(mismatch_refusal(&entry));
        }
        let backend = self.backend_for(entry.record.source)?;
        Ok((entry, backend))
    }

    /// The artifact of a resolved entry, from its own backend; `force`
    /// fetches again (keeping the cached copy until the new one verifies).
    pub async fn artifact_of(
        &self,
        entry: &VersionEntry,
        force: bool,
    ) -> Result<ArtifactHandle, Error> {
        let backend = self.backend_for(entry.record.source)?;
        if force {
            self.core.artifacts.refetch(entry, backend).await
        } else {
            self.core.artifacts.get_or_fetch(entry, backend).await
        }
    }

    /// One version's entry (its record and revision), without touching the
    /// artifact: what `HEAD` answers from when nothing is cached.
    pub async fn version_entry(
        &self,
        ext_type: ExtensionType,
        name: &str,
        version: &str,
    ) -> Result<VersionEntry, Error> {
        Ok(self.entry_and_backend(ext_type, name, version).await?.0)
    }

    /// One version's artifact for a server: open and complete, or (with
    /// `live_ok`) a large download streamed as it arrives (see
    /// [`crate::artifacts::ArtifactStore::deliver`]).
    pub async fn deliver_artifact(
        &self,
        ext_type: ExtensionType,
        name: &str,
        version: &str,
        live_ok: bool,
    ) -> Result<(VersionEntry, Delivery), Error> {
        let (entry, backend) = self.entry_and_backend(ext_type, name, version).await?;
        let d = self
            .core
            .artifacts
            .deliver(&entry, backend, live_ok)
            .await?;
        Ok((entry, d))
    }
}

/// The refusal of a version flagged as a mismatch (409
/// `artifact_mismatch`, on the version argument): its artifact is not what
/// its tag says, so it is not served as if it were.
fn mismatch_refusal(e: &VersionEntry) -> Error {
    let r = &e.record;
    Error::new(
        ErrorKind::ArtifactMismatch,
        format!(
            "{}/{} {} is flagged: its artifact is not that version ({}); refusing to serve it",
            r.ext_type,
            r.name,
            r.version,
            r.mismatch.as_deref().unwrap_or("mismatch")
        ),
    )
    .with_field(Field::Version)
    .with_details(
        "the tarball's extension.yaml disagrees with the tag it was pushed under; \
         push it under the version it declares, or fix extension.yaml",
    )
}

fn not_found_version(
    ext_type: ExtensionType,
    name: &str,
    version: &str,
    versions: &Versions,
) -> Error {
    Error::not_found(format!(
        "Extension {ext_type}/{name} version {version} not found"
    ))
    .with_field(Field::Version)
    .with_details(format!(
        "available: {}",
        versions
            .entries
            .iter()
            .map(|e| e.record.version.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

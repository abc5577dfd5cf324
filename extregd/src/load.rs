//! `ext load`: resolve a constraint, get the verified artifact (cache or
//! backend), extract it safely into `{dir}/{type}/{name}/{version}/`.
//!
//! **Idempotent.** A folder already extracted for the same artifact digest
//! is returned as is (`already_loaded`); `force` drops the cached artifact,
//! fetches it again and re-extracts. Loads of one destination are
//! serialised, so two concurrent loads never race on the rename.
//! **The loaded set survives restarts**: it is the set of extracted
//! folders carrying an intact `.extregd-load.json` marker.

use crate::catalogue::Catalogue;
use crate::error::Error;
use crate::extract::{self, Limits, LoadMarker};
use crate::progress::ProgressTx;
use extreg_shared::protocol::LoadResult;
use extreg_shared::protocol::Phase;
use extreg_shared::{Constraint, ErrorKind, ExtensionType, Source};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

pub struct Loader {
    dir: PathBuf,
    /// One lock per destination folder.
    locks: parking_lot::Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>,
    limits: Limits,
}

pub struct LoadRequest {
    pub ext_type: ExtensionType,
    pub name: String,
    pub constraint: Constraint,
    pub pre: bool,
    pub source: Option<Source>,
    pub force: bool,
}

fn rfc3339(secs: u64) -> String {
    crate::backend::rfc3339_secs(secs)
}

fn result(
    m: &LoadMarker,
    manifest: &crate::manifest::Manifest,
    path: &Path,
    already: bool,
    from_cache: bool,
) -> LoadResult {
    LoadResult {
        name: m.name.clone(),
        ext_type: m.ext_type,
        version: m.version.clone(),
        source: m.source,
        path: path.display().to_string(),
        checksum: m.checksum.clone(),
        description: manifest.description.clone(),
        author: manifest.author.clone(),
        tags: manifest.tags.clone(),
        requires: manifest.requires.clone(),
        dependencies: manifest.dependencies.clone(),
        homepage: manifest.homepage.clone(),
        license: manifest.license.clone(),
        loaded_at: rfc3339(m.loaded_at),
        already_loaded: already,
        from_cache,
    }
}

/// The result for an extracted folder, reading its marker and manifest.
fn existing(dir: &Path) -> Option<LoadResult> {
    let m = extract::read_marker(dir)?;
    let manifest = crate::manifest::Manifest::parse(
        &crate::manifest::read_bounded(std::fs::File::open(dir.join("extension.yaml")).ok()?)
            .ok()?,
    )
    .ok()?;
    Some(result(&m, &manifest, dir, true, true))
}

impl Loader {
    pub fn new(dir: PathBuf) -> Loader {
        extract::clean_leftovers(&dir);
        Loader {
            dir,
            locks: parking_lot::Mutex::new(HashMap::new()),
            limits: Limits::default(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Every loaded extension, from the markers on disk.
    pub fn loaded(&self) -> Vec<LoadResult> {
        extract::loaded(&self.dir)
            .into_iter()
            .filter_map(|(_, p)| existing(&p))
            .collect()
    }

    /// Loads, reporting progress (resolve, download, verify, extract) into
    /// `progress`.
    pub async fn load(
        &self,
        reg: &Catalogue,
        req: LoadRequest,
        progress: &ProgressTx,
    ) -> Result<LoadResult, Error> {
        progress.send(Phase::Resolve, 0, None);
        let entry = reg
            .resolve_from(
                req.ext_type,
                &req.name,
                &req.constraint,
                req.pre,
                req.source,
            )
            .await?;
        self.load_entry(reg, entry, req.force, progress).await
    }

    /// Loads one resolved version (see [`Self::load`]).
    pub async fn load_entry(
        &self,
        reg: &Catalogue,
        entry: crate::backend::VersionEntry,
        force: bool,
        progress: &ProgressTx,
    ) -> Result<LoadResult, Error> {
        let dest = self
            .dir
            .join(entry.record.ext_type.as_str())
            .join(&entry.record.name)
            .join(&entry.record.version);
        let lock = self.locks.lock().entry(dest.clone()).or_default().clone();
        let res = {
            let _held = lock.lock().await;
            load_into(reg, entry, dest.clone(), force, self.limits, progress).await
        };
        // Drop the lock's entry when no one else holds or waits for it.
        let mut locks = self.locks.lock();
        if Arc::strong_count(&lock) == 2 {
            locks.remove(&dest);
        }
        res
    }
}

async fn load_into(
    reg: &Catalogue,
    entry: crate::backend::VersionEntry,
    dest: PathBuf,
    force: bool,
    limits: Limits,
    progress: &ProgressTx,
) -> Result<LoadResult, Error> {
    if !force {
        if let Some(have) = existing(&dest) {
            match &entry.record.checksum {
                Some(c) if *c == have.checksum => return Ok(have),
                Some(_) => {}
                // No checksum announced: compare with the artifact's digest
                // (cached or fetched), so a re-uploaded asset is noticed.
                None => {
                    let art = crate::progress::artifact(reg, &entry, false, progress).await?;
                    if art.digest == have.checksum {
                        return Ok(LoadResult {
                            from_cache: art.hit,
                            ..have
                        });
                    }
                }
            }
        }
    }
    // With force, the cached artifact is replaced only once the new fetch
    // verifies: offline, a failed --force loses nothing. An offline
    // (`stale`) version cannot be fetched again: --force then re-extracts
    // the verified cached copy.
    let refetch = force && !entry.record.stale;
    let art = crate::progress::artifact(reg, &entry, refetch, progress).await?;
    // The bytes are verified before one is extracted (at once when known
    // good and unchanged on disk, else hashed). A damaged cached blob is
    // evicted by the check and fetched once more. The handle's file stays
    // readable whatever eviction does meanwhile.
    let art = match art.verified().await {
        Ok(a) => a,
        Err(e) if e.kind == ErrorKind::IntegrityError => {
            crate::progress::artifact(reg, &entry, false, progress)
                .await?
                .verified()
                .await
                .map_err(|e| match e.kind {
                    ErrorKind::IntegrityError => Error::new(
                        ErrorKind::IntegrityError,
                        format!(
                            "{}/{} {}: the artifact failed digest verification twice",
                            entry.record.ext_type, entry.record.name, entry.record.version
                        ),
                    ),
                    _ => e,
                })?
        }
        Err(e) => return Err(e),
    };
    let marker = LoadMarker {
        ext_type: entry.record.ext_type,
        name: entry.record.name.clone(),
        version: entry.record.version.clone(),
        source: entry.record.source,
        checksum: art.digest.clone(),
        loaded_at: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    };
    progress.send(Phase::Extract, 0, Some(art.size));
    let hit = art.hit;
    let (m2, dest2) = (marker.clone(), dest.clone());
    let res = tokio::task::spawn_blocking(move || {
        let reader = art.into_reader()?;
        extract::extract(reader, &dest2, &m2, limits)
    })
    .await
    .map_err(|e| Error::internal(format!("extraction task failed: {e}")))?;
    match res {
        Ok(manifest) => Ok(result(&marker, &manifest, &dest, false, hit)),
        Err(e) => {
            let kind = match e {
                extract::ExtractError::Io(_) => ErrorKind::InternalError,
                _ => ErrorKind::InvalidArchive,
            };
            Err(Error::new(
                kind,
                format!(
                    "{}/{} {}: {e}",
                    marker.ext_type, marker.name, marker.version
                ),
            ))
        }
    }
}

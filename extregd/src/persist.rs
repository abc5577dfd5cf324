//! The persisted catalogue: what the metadata caches hold (each backend's
//! listing and each cached extension's merged versions), written to one
//! JSON file so that the first answers after a restart come from it while
//! the backends are asked again.
//!
//! ```text
//! {"format": "extregd-catalog", "version": 1, "written_at": <unix s>,
//!  "identities": {"local": "<sha256>", ...},        which backends wrote it
//!  "sources": [{"source", "fetched_at", "extensions": [Extension]}],
//!  "versions": [{"type", "name", "fetched_at",
//!                "entries": [{"record": Extension, "locator", "revision"}]}]}
//! ```
//!
//! - **Atomic**: written to a temp file in the same folder, fsynced, then
//!   renamed over the old one; mode 0600. A crash leaves the old file (and
//!   maybe a `.catalog-*` temp file, removed at the next start).
//! - **Versioned**: a file of another `format` or `version` is ignored with
//!   a warning, as is a corrupt or oversized one: never fatal.
//! - **Checked against the configuration**: each backend is identified by a
//!   digest of where it points (local roots, registry and namespace, Gitea
//!   URL and organization; never a credential). A listing written by a
//!   backend configured differently is ignored; versions are read only when
//!   every backend and the merge priority are the same as when written.
//! - **Marked**: loaded entries keep their fetch time (the answers' `Age`
//!   header) and are `stale` until a backend confirms them; every loaded
//!   listing is refreshed at start, loaded versions when first read.
//! - Written at most every [`WRITE_DELAY`] after a change.

use crate::backend::VersionEntry;
use crate::catalogue::{Catalogue, Core, Versions};
use crate::config::{Config, Dirs};
use extreg_shared::{Extension, ExtensionType, Source};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub const FORMAT: &str = "extregd-catalog";
pub const VERSION: u32 = 1;
/// Largest file read.
pub const MAX_FILE_BYTES: u64 = 256 << 20;
/// Changes are written this long after the first one (so a burst of
/// refreshes makes one write).
pub const WRITE_DELAY: Duration = Duration::from_millis(300);

#[derive(Serialize, Deserialize)]
struct File {
    format: String,
    version: u32,
    written_at: u64,
    identities: BTreeMap<Source, String>,
    /// `[registry] priority` when written: merged versions depend on it.
    #[serde(default)]
    priority: Vec<Source>,
    sources: Vec<SourceListing>,
    versions: Vec<ExtVersions>,
}

#[derive(Serialize, Deserialize)]
struct SourceListing {
    source: Source,
    fetched_at: u64,
    extensions: Vec<Extension>,
}

#[derive(Serialize, Deserialize)]
struct ExtVersions {
    #[serde(rename = "type")]
    ext_type: ExtensionType,
    name: String,
    fetched_at: u64,
    entries: Vec<Entry>,
}

#[derive(Serialize, Deserialize)]
struct Entry {
    record: Extension,
    locator: String,
    revision: String,
}

/// Only the `format` and `version` fields, read first so that a file of
/// another version is told apart from a corrupt one.
#[derive(Deserialize)]
struct Header {
    format: Option<String>,
    version: Option<u32>,
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn digest(s: &str) -> String {
    crate::backend::sha256_tag(s.as_bytes())
}

/// What identifies each configured backend's data (no credentials: only
/// digests of where it points).
pub fn identities(config: &Config, dirs: &Dirs) -> BTreeMap<Source, String> {
    let mut out = BTreeMap::new();
    let roots = config.local_roots(dirs);
    if !roots.is_empty() {
        let joined: Vec<String> = roots.iter().map(|r| r.display().to_string()).collect();
        out.insert(Source::Local, digest(&joined.join("\n")));
    }
    if let Some(o) = &config.oci {
        out.insert(
            Source::Oci,
            digest(&format!("{}\n{}", o.registry.trim(), o.namespace.trim())),
        );
    }
    if let Some(g) = &config.gitea {
        out.insert(
            Source::Gitea,
            digest(&format!(
                "{}\n{}",
                g.url.trim_end_matches('/'),
                g.organization.trim()
            )),
        );
    }
    out
}

/// Reads the persisted catalogue into the catalogue's caches. Returns how
/// many listings and versions entries were taken; problems are warnings.
pub fn load(
    catalogue: &Catalogue,
    path: &Path,
    identities: &BTreeMap<Source, String>,
    priority: &[Source],
) -> (usize, usize) {
    if let Some(dir) = path.parent() {
        if let Ok(rd) = std::fs::read_dir(dir) {
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().starts_with(".catalog-") {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }
    let file = match read(path) {
        Ok(Some(f)) => f,
        Ok(None) => return (0, 0),
        Err(why) => {
            tracing::warn!(path = %path.display(), "ignoring the persisted catalogue: {why}");
            return (0, 0);
        }
    };
    let core = catalogue.core();
    let now = unix(SystemTime::now());
    let age = |fetched_at: u64| Duration::from_secs(now.saturating_sub(fetched_at));
    let mut listings = 0;
    for l in file.sources {
        let same = identities.get(&l.source).is_some()
            && identities.get(&l.source) == file.identities.get(&l.source);
        if !same {
            tracing::warn!(source = %l.source, "ignoring the persisted listing of a backend configured differently");
            continue;
        }
        core.catalogs
            .insert_loaded(l.source, Arc::new(l.extensions), age(l.fetched_at));
        listings += 1;
    }
    let mut versions = 0;
    if &file.identities == identities && file.priority == priority {
        for v in file.versions {
            let mut entries = Vec::with_capacity(v.entries.len());
            for e in v.entries {
                let Ok(semver) = extreg_shared::parse_version(&e.record.version) else {
                    continue;
                };
                let mut record = e.record;
                record.download_url =
                    Some(catalogue.download_url_of(v.ext_type, &v.name, &record.version));
                entries.push(VersionEntry {
                    record,
                    semver,
                    locator: e.locator,
                    revision: e.revision,
                });
            }
            if entries.is_empty() {
                continue;
            }
            entries.sort_by(|a, b| b.semver.cmp(&a.semver));
            let Ok(vs) = Versions::from_entries(entries) else {
                continue;
            };
            core.versions
                .insert_loaded((v.ext_type, v.name), Arc::new(vs), age(v.fetched_at));
            versions += 1;
        }
    } else if !file.versions.is_empty() {
        tracing::warn!("ignoring the persisted versions: the backends or their priority are configured differently");
    }
    tracing::info!(path = %path.display(), listings, versions, "read the persisted catalogue");
    (listings, versions)
}

/// The file, `None` when there is none.
fn read(path: &Path) -> Result<Option<File>, String> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    if meta.len() > MAX_FILE_BYTES {
        return Err(format!(
            "it is {} bytes, over the {MAX_FILE_BYTES}-byte limit",
            meta.len()
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let header: Header =
        serde_json::from_slice(&bytes).map_err(|e| format!("it is not readable JSON ({e})"))?;
    if header.format.as_deref() != Some(FORMAT) || header.version != Some(VERSION) {
        return Err(format!(
            "it is of format {:?} version {:?}; this daemon reads {FORMAT:?} version {VERSION}",
            header.format.unwrap_or_default(),
            header.version.unwrap_or_default()
        ));
    }
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| format!("it is damaged ({e})"))
}

/// The caches as a file.
fn snapshot(core: &Core, identities: &BTreeMap<Source, String>, priority: &[Source]) -> File {
    let now = SystemTime::now();
    let at = |age: Duration| unix(now.checked_sub(age).unwrap_or(UNIX_EPOCH));
    let sources = core
        .catalogs
        .snapshot()
        .into_iter()
        .map(|(source, list, age, _)| SourceListing {
            source,
            fetched_at: at(age),
            extensions: list.as_ref().clone(),
        })
        .collect();
    let versions = core
        .versions
        .snapshot()
        .into_iter()
        .map(|((ext_type, name), v, age, _)| ExtVersions {
            ext_type,
            name,
            fetched_at: at(age),
            entries: v
                .entries
                .iter()
                .map(|e| {
                    let mut record = e.record.clone();
                    record.download_url = None;
                    Entry {
                        record,
                        locator: e.locator.clone(),
                        revision: e.revision.clone(),
                    }
                })
                .collect(),
        })
        .collect();
    File {
        format: FORMAT.into(),
        version: VERSION,
        written_at: unix(now),
        identities: identities.clone(),
        priority: priority.to_vec(),
        sources,
        versions,
    }
}

/// Writes `file` to `path` atomically (temp file in the same folder,
/// fsync, rename), mode 0600.
fn write(path: &Path, file: &File) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".catalog-")
        .tempfile_in(dir)?;
    {
        let mut w = std::io::BufWriter::new(tmp.as_file_mut());
        serde_json::to_writer(&mut w, file)?;
        w.flush()?;
    }
    tmp.as_file().sync_all()?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Writes the caches to `path` whenever they changed, at most every
/// [`WRITE_DELAY`]. Runs for the life of the daemon.
pub fn spawn_writer(
    catalogue: &Catalogue,
    path: PathBuf,
    identities: BTreeMap<Source, String>,
    priority: Vec<Source>,
) -> tokio::task::JoinHandle<()> {
    let core = catalogue.core().clone();
    tokio::spawn(async move {
        loop {
            core.dirty.notified().await;
            tokio::time::sleep(WRITE_DELAY).await;
            let file = snapshot(&core, &identities, &priority);
            let p = path.clone();
            match tokio::task::spawn_blocking(move || write(&p, &file)).await {
                Ok(Ok(())) => {
                    tracing::debug!(path = %path.display(), "wrote the persisted catalogue")
                }
                Ok(Err(e)) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot write the persisted catalogue")
                }
                Err(e) => tracing::warn!(error = %e, "the catalogue writer failed"),
            }
        }
    })
}

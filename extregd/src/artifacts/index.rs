//! The index: claiming the folder, repair at start, lookups, ref files.

use super::{
    hex_of, now, ArtifactHandle, ArtifactKey, ArtifactStore, IndexEntry, Stamp, Stored, MARKER,
    REF_TMP_PREFIX, TMP_PREFIX,
};
use crate::backend::VersionEntry;
use crate::error::Error;
use crate::metrics::Metrics;
use parking_lot::Mutex;
use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

/// `tempfile`'s default name (`.tmp` and 6 letters or digits), which
/// releases before the marker used in `tmp/` and `refs/`.
fn is_legacy_temp(name: &str) -> bool {
    name.len() == 10
        && name.starts_with(".tmp")
        && name[4..].bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Claims `root` for the store (see [`ArtifactStore::open`]).
fn claim(root: &Path) -> std::io::Result<()> {
    use std::io::ErrorKind;
    let marker = root.join(MARKER);
    match std::fs::symlink_metadata(&marker) {
        Ok(m) if m.is_file() => return Ok(()),
        Ok(_) => {
            return Err(std::io::Error::other(format!(
                "{} is not a regular file; refusing to use {}",
                marker.display(),
                root.display()
            )))
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    match std::fs::read_dir(root) {
        Ok(rd) => {
            let names: Vec<String> = rd
                .flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .collect();
            // An artifact cache of an earlier release: only our layout.
            let ours = names
                .iter()
                .all(|n| matches!(n.as_str(), "blobs" | "refs" | "tmp"));
            if !ours {
                return Err(std::io::Error::other(format!(
                    "{} is not empty and was not created by extregd (no {MARKER}); \
                     choose an empty or new folder for [cache] artifact_dir",
                    root.display()
                )));
            }
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(root)?;
        }
        Err(e) => return Err(e),
    }
    std::fs::write(&marker, b"extregd artifact cache, format 1\n")
}

impl ArtifactStore {
    /// Opens (creating) the cache at `root`, claims it, and repairs it:
    /// refs whose blob is missing or of the wrong size are dropped,
    /// unreferenced blobs and leftovers in `tmp/` are removed.
    ///
    /// **Only the daemon's own files are removed or changed.** The folder
    /// is claimed with [`MARKER`]; a non-empty folder without it (and not
    /// laid out as an artifact cache of an earlier release) is refused.
    /// The sweep removes only names the store creates (temp files with its
    /// prefixes, 64-hex blob names, `*.json` refs), never follows a link,
    /// and leaves anything else where it is (logged once).
    pub fn open(
        root: &Path,
        metrics: Arc<Metrics>,
        max_bytes: Option<u64>,
    ) -> std::io::Result<ArtifactStore> {
        claim(root)?;
        for sub in ["blobs/sha256", "refs", "tmp"] {
            let p = root.join(sub);
            match std::fs::symlink_metadata(&p) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    return Err(std::io::Error::other(format!(
                        "{} is not a folder (a link or a file); refusing to use it",
                        p.display()
                    )))
                }
                Err(_) => std::fs::create_dir_all(&p)?,
            }
        }
        for e in std::fs::read_dir(root.join("tmp"))?.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            let ours = name.starts_with(TMP_PREFIX) || is_legacy_temp(&name);
            if ours && e.file_type().is_ok_and(|t| t.is_file()) {
                let _ = std::fs::remove_file(e.path());
            } else {
                tracing::warn!(path = %e.path().display(), "artifact cache: leaving a file extregd did not create");
            }
        }
        let mut index = HashMap::new();
        let mut refs = Vec::new();
        collect_files(&root.join("refs"), &mut refs);
        for r in refs {
            let entry: Option<IndexEntry> = std::fs::read(&r)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            let valid = entry.as_ref().and_then(|e| {
                let hex = hex_of(&e.digest)?;
                let m = std::fs::symlink_metadata(root.join("blobs/sha256").join(hex)).ok()?;
                (m.is_file() && m.len() == e.size && r == ref_path(root, &e.key())).then_some(())
            });
            match (entry, valid) {
                (Some(e), Some(())) => {
                    index.insert(e.key(), e);
                }
                _ => {
                    tracing::warn!(path = %r.display(), "dropping a damaged artifact cache entry");
                    let _ = std::fs::remove_file(&r);
                }
            }
        }
        let live: HashSet<String> = index
            .values()
            .filter_map(|e| hex_of(&e.digest).map(str::to_string))
            .collect();
        for b in std::fs::read_dir(root.join("blobs/sha256"))?.flatten() {
            let name = b.file_name().to_string_lossy().to_string();
            let blob_name = name.len() == 64 && name.bytes().all(|c| c.is_ascii_hexdigit());
            if !b.file_type().is_ok_and(|t| t.is_file()) || !blob_name {
                tracing::warn!(path = %b.path().display(), "artifact cache: leaving a file extregd did not create");
                continue;
            }
            if !live.contains(&name) {
                let _ = std::fs::remove_file(b.path());
            }
        }
        let store = ArtifactStore {
            root: root.to_path_buf(),
            verified: Mutex::new(HashMap::new()),
            index: Mutex::new(index),
            inflight: Mutex::new(HashMap::new()),
            generations: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            metrics,
            max_bytes,
            verifier: std::sync::OnceLock::new(),
        };
        store.update_gauges();
        Ok(store)
    }

    /// Whether the index holds `entry`'s artifact at its revision (no
    /// fetch, no touch: for answers from metadata such as `HEAD`).
    pub fn is_cached(&self, entry: &VersionEntry) -> bool {
        let key = ArtifactKey {
            kind: super::ArtifactKind::Extension(entry.record.ext_type),
            name: entry.record.name.clone(),
            version: entry.record.version.clone(),
            source: entry.record.source,
        };
        self.index
            .lock()
            .get(&key)
            .is_some_and(|e| e.revision == entry.revision)
    }

    /// The cached artifact of `key` at `revision`, opened **under the
    /// index lock**: removals unlink blobs under the same lock, so the
    /// handle's bytes cannot be taken away afterwards.
    pub(super) fn lookup(
        self: &Arc<Self>,
        key: &ArtifactKey,
        revision: &str,
    ) -> Option<ArtifactHandle> {
        let mut index = self.index.lock();
        let e = index.get_mut(key)?;
        if e.revision != revision {
            return None;
        }
        // Cached before a signature was required: fetch (and verify) again.
        if e.signature_key.is_none()
            && self
                .verifier
                .get()
                .is_some_and(|v| v.policy(key.source) == crate::signature::Policy::Require)
        {
            return None;
        }
        let path = self.blob_path(&e.digest)?;
        // The index is repaired from disk, not trusted: a blob that went
        // away (or changed size) drops its entry and is fetched again.
        let opened = open_blob(&path).ok().filter(|(_, s)| s.size() == e.size);
        let Some((file, stamp)) = opened else {
            tracing::warn!(path = %path.display(), "cached artifact missing or damaged; fetching again");
            let gone = e.key();
            index.remove(&gone);
            let _ = std::fs::remove_file(ref_path(&self.root, &gone));
            return None;
        };
        let t = now();
        let persist = t.saturating_sub(e.last_used) >= 60;
        e.last_used = t;
        let snapshot = e.clone();
        // Under the lock: a concurrent clear cannot be undone by this write
        // (at most once a minute per entry, a small file).
        if persist {
            let _ = self.write_ref(&snapshot);
        }
        drop(index);
        let stored = Stored {
            path,
            size: snapshot.size,
            digest: snapshot.digest,
        };
        Some(ArtifactHandle::new(self.clone(), file, stamp, stored, true))
    }

    /// Opens a blob a download just stored, under the index lock (for a
    /// waiter that joined as the download ended, without its own file).
    pub(super) fn open_stored(self: &Arc<Self>, stored: Stored) -> Result<ArtifactHandle, Error> {
        let index = self.index.lock();
        let (file, stamp) = open_blob(&stored.path)
            .map_err(|e| Error::internal(format!("opening the downloaded artifact: {e}")))?;
        drop(index);
        Ok(ArtifactHandle::new(
            self.clone(),
            file,
            stamp,
            stored,
            false,
        ))
    }

    pub(super) fn write_ref(&self, e: &IndexEntry) -> std::io::Result<()> {
        let path = ref_path(&self.root, &e.key());
        let dir = path.parent().expect("ref has a parent");
        std::fs::create_dir_all(dir)?;
        let mut tmp = tempfile::Builder::new()
            .prefix(REF_TMP_PREFIX)
            .tempfile_in(dir)?;
        tmp.write_all(&serde_json::to_vec_pretty(e).map_err(std::io::Error::other)?)?;
        tmp.as_file().sync_all()?;
        tmp.persist(&path).map_err(|e| e.error)?;
        Ok(())
    }

    pub fn entries(&self) -> Vec<IndexEntry> {
        let mut v: Vec<IndexEntry> = self.index.lock().values().cloned().collect();
        v.sort_by(|a, b| {
            (a.kind, &a.name, &a.version, a.source).cmp(&(b.kind, &b.name, &b.version, b.source))
        });
        v
    }
}

/// Opens a blob for reading without following a link, with its stamp.
fn open_blob(path: &Path) -> std::io::Result<(std::fs::File, Stamp)> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    let m = file.metadata()?;
    if !m.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    Ok((file, Stamp::of(&m)))
}

pub(super) fn ref_path(root: &Path, k: &ArtifactKey) -> PathBuf {
    root.join("refs")
        .join(k.kind.as_str())
        .join(&k.name)
        .join(format!("{}@{}.json", k.version, k.source))
}

/// The ref files under `dir`, without following links. Leftover temp files
/// of an interrupted ref write (our own prefixes) are removed on the way;
/// anything else is left alone.
fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        let name = e.file_name().to_string_lossy().to_string();
        // DirEntry::file_type does not follow links.
        match e.file_type() {
            Ok(t) if t.is_dir() => collect_files(&p, out),
            Ok(t) if t.is_file() && name.ends_with(".json") && !name.starts_with('.') => {
                out.push(p)
            }
            Ok(t) if t.is_file() && (name.starts_with(REF_TMP_PREFIX) || is_legacy_temp(&name)) => {
                let _ = std::fs::remove_file(&p);
            }
            _ => {
                tracing::warn!(path = %p.display(), "artifact cache: leaving a file extregd did not create");
            }
        }
    }
}

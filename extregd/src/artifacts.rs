//! The on-disk artifact cache, content-addressed by sha256.
//!
//! ```text
//! {root}/blobs/sha256/{hex}                          the bytes, immutable
//! {root}/refs/{type}/{name}/{version}@{source}.json  index entry -> digest
//! {root}/tmp/                                        downloads in progress
//! ```
//!
//! **An index entry exists only for a blob that is complete and verified.**
//! Bytes are streamed into `tmp/`, hashed on the way, checked against the
//! digest the backend announced, fsynced and renamed into `blobs/`; only then
//! is the ref written (itself via temp file + rename). A crash at any point
//! leaves at worst an orphan in `tmp/` or `blobs/`, which start-up removes.
//! Concurrent requests for one missing artifact share one fetch.

use crate::backend::{Backend, VersionEntry};
use crate::error::Error;
use crate::metrics::Metrics;
use extreg_shared::{ArtifactCacheStats, ErrorKind, Extension, ExtensionType, Source};
use futures::StreamExt;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ArtifactKey {
    pub ext_type: ExtensionType,
    pub name: String,
    pub version: String,
    pub source: Source,
}

/// One index entry, as stored in its ref file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    #[serde(rename = "type")]
    pub ext_type: ExtensionType,
    pub name: String,
    pub version: String,
    pub source: Source,
    /// `sha256:<hex>`.
    pub digest: String,
    pub size: u64,
    /// The backend's revision of the content when it was fetched.
    pub revision: String,
    /// Unix seconds.
    pub cached_at: u64,
    pub last_used: u64,
    /// The version's record when it was fetched: what offline operation
    /// lists and resolves from when the backend cannot be reached.
    #[serde(default)]
    pub record: Option<Extension>,
    /// The identity of the backend it came from ([`Backend::identity`]):
    /// offline answers use only entries of the same identity.
    #[serde(default)]
    pub backend: String,
    /// Where that backend finds the bytes, so an offline entry can be
    /// fetched again once the backend is back.
    #[serde(default)]
    pub locator: String,
    /// The id of the trusted key whose minisign signature verified these
    /// bytes when they were fetched (see [`crate::signature`]).
    #[serde(default)]
    pub signature_key: Option<String>,
}

impl IndexEntry {
    fn key(&self) -> ArtifactKey {
        ArtifactKey {
            ext_type: self.ext_type,
            name: self.name.clone(),
            version: self.version.clone(),
            source: self.source,
        }
    }
}

/// How far a download in progress has come.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    /// The backend answered; `size` and `digest` are what it announced.
    pub started: bool,
    pub size: Option<u64>,
    pub digest: Option<String>,
    /// Bytes written to the temp file so far.
    pub written: u64,
    /// Set once: the verified artifact, or why it was refused.
    pub done: Option<Result<CachedArtifact, Error>>,
}

struct Inflight {
    /// Tells this flight from a later one for the same key (a new
    /// revision): a superseded flight neither removes nor indexes anything.
    generation: u64,
    tmp_path: PathBuf,
    revision: String,
    rx: tokio::sync::watch::Receiver<Progress>,
    /// Cancellable waiters ([`Waiter`]s) alive: socket clients.
    waiters: usize,
    /// Someone who never cancels joined (a REST reader, an internal
    /// caller): the download then always runs to its end.
    pinned: bool,
    abort: Option<tokio::task::AbortHandle>,
}

impl Inflight {
    /// A reader of this download: the temp file is opened now, so it stays
    /// readable after the rename into `blobs/` (or the removal on failure).
    /// A temp file already gone (the flight is ending) leaves only the
    /// result to wait for.
    fn join(&self) -> Growing {
        Growing {
            file: std::fs::File::open(&self.tmp_path).ok(),
            rx: self.rx.clone(),
            _waiter: None,
        }
    }
}

/// A download in progress, readable while it is written (`file` is None
/// when it ended as it was joined: wait for [`Growing::finished`]).
pub struct Growing {
    pub file: Option<std::fs::File>,
    pub rx: tokio::sync::watch::Receiver<Progress>,
    _waiter: Option<Waiter>,
}

/// A cancellable waiter on a download: when the last one goes and no
/// pinned caller joined, the download is cancelled (its task aborted, its
/// temp file removed, nothing indexed).
struct Waiter {
    store: Arc<ArtifactStore>,
    key: ArtifactKey,
    generation: u64,
}

impl Drop for Waiter {
    fn drop(&mut self) {
        let mut inflight = self.store.inflight.lock();
        let Some(f) = inflight.get_mut(&self.key) else {
            return;
        };
        if f.generation != self.generation {
            return;
        }
        f.waiters = f.waiters.saturating_sub(1);
        if f.waiters == 0 && !f.pinned {
            let f = inflight.remove(&self.key);
            drop(inflight);
            if let Some(a) = f.and_then(|f| f.abort) {
                a.abort();
            }
            tracing::info!(
                name = %self.key.name,
                version = %self.key.version,
                "download cancelled: no client waits for it any more"
            );
        }
    }
}

impl Growing {
    /// Waits until the backend answered (or the download ended).
    pub async fn started(&mut self) -> Progress {
        let p = self
            .rx
            .wait_for(|p| p.started || p.done.is_some())
            .await
            .map(|p| p.clone());
        p.unwrap_or_else(|_| Progress {
            done: Some(Err(Error::internal("the download task ended unexpectedly"))),
            ..Progress::default()
        })
    }

    /// Waits for the end of the download.
    pub async fn finished(mut self) -> Result<CachedArtifact, Error> {
        match self.rx.wait_for(|p| p.done.is_some()).await {
            Ok(p) => p.done.clone().expect("done is set"),
            Err(_) => Err(Error::internal("the download task ended unexpectedly")),
        }
    }

    /// Whether the bytes can be read while they arrive.
    pub fn readable(&self) -> bool {
        self.file.is_some()
    }

    /// The bytes as they arrive. **The last byte is held back until the
    /// digest is verified**, so a client never receives a complete body
    /// that failed verification: on failure the stream ends with an error
    /// (the connection is cut). Call only when [`Self::readable`].
    pub fn stream(self) -> crate::backend::ByteStream {
        use tokio::io::{AsyncReadExt, AsyncSeekExt};
        struct St {
            file: tokio::fs::File,
            rx: tokio::sync::watch::Receiver<Progress>,
            pos: u64,
            finished: bool,
        }
        let st = St {
            file: tokio::fs::File::from_std(self.file.expect("stream() needs a readable download")),
            rx: self.rx,
            pos: 0,
            finished: false,
        };
        Box::pin(futures::stream::unfold(st, |mut st| async move {
            loop {
                if st.finished {
                    return None;
                }
                let p = st.rx.borrow_and_update().clone();
                let (limit, last) = match &p.done {
                    Some(Ok(a)) => (a.size, true),
                    Some(Err(e)) => {
                        st.finished = true;
                        return Some((Err(std::io::Error::other(e.message.clone())), st));
                    }
                    // Hold back the final byte until verification.
                    None => match p.size {
                        Some(n) => (p.written.min(n.saturating_sub(1)), false),
                        None => (p.written.saturating_sub(1), false),
                    },
                };
                if st.pos < limit {
                    let want = (limit - st.pos).min(256 * 1024) as usize;
                    let mut buf = vec![0u8; want];
                    if let Err(e) = st.file.seek(std::io::SeekFrom::Start(st.pos)).await {
                        st.finished = true;
                        return Some((Err(e), st));
                    }
                    return match st.file.read_exact(&mut buf).await {
                        Ok(_) => {
                            st.pos += want as u64;
                            Some((Ok(bytes::Bytes::from(buf)), st))
                        }
                        Err(e) => {
                            st.finished = true;
                            Some((Err(e), st))
                        }
                    };
                }
                if last {
                    return None;
                }
                if st.rx.changed().await.is_err() {
                    st.finished = true;
                    return Some((
                        Err(std::io::Error::other(
                            "the download task ended unexpectedly",
                        )),
                        st,
                    ));
                }
            }
        }))
    }
}

/// Clears a flight whose task ended without finishing (a panic).
struct FlightGuard {
    store: Arc<ArtifactStore>,
    key: ArtifactKey,
    generation: u64,
    tx: Option<tokio::sync::watch::Sender<Progress>>,
}

impl FlightGuard {
    fn disarm(mut self) {
        self.tx = None;
    }
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        let Some(tx) = self.tx.take() else { return };
        let mut inflight = self.store.inflight.lock();
        if inflight
            .get(&self.key)
            .is_some_and(|f| f.generation == self.generation)
        {
            inflight.remove(&self.key);
        }
        drop(inflight);
        tx.send_modify(|p| {
            p.done = Some(Err(Error::internal(
                "the download task failed unexpectedly",
            )))
        });
    }
}

/// A download whose bytes passed verification, not yet visible.
struct Verified {
    tmp: tempfile::TempPath,
    entry: IndexEntry,
}

/// An artifact ready in the cache, or one still arriving.
pub enum Fetched {
    Ready(CachedArtifact),
    Growing(Growing),
}

/// A verified artifact on disk, ready to serve.
#[derive(Debug, Clone)]
pub struct CachedArtifact {
    pub path: PathBuf,
    pub size: u64,
    pub digest: String,
    /// Whether this request was served without a backend fetch.
    pub hit: bool,
}

/// One state of a blob on disk: device, inode, size, modification and
/// change times. The kernel moves `ctime` on every write or metadata
/// change, so a blob whose stamp is unchanged since it was hashed still
/// holds the bytes that were hashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    pub fn of(m: &std::fs::Metadata) -> Stamp {
        use std::os::unix::fs::MetadataExt;
        Stamp {
            dev: m.dev(),
            ino: m.ino(),
            size: m.len(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        }
    }
}

/// A cached blob opened for reading (so it cannot vanish under the
/// reader), with whether its bytes are known good.
pub struct OpenBlob {
    pub file: std::fs::File,
    pub size: u64,
    pub digest: String,
    /// The blob was hashed and matched its digest, and has not changed on
    /// disk since (same [`Stamp`]). When false, the reader must verify.
    pub trusted: bool,
    pub stamp: Stamp,
}

/// What `ext cache verify` found.
#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    pub checked: u64,
    pub bytes: u64,
    /// Entries whose blob did not match its digest (now evicted).
    pub damaged: Vec<IndexEntry>,
}

pub struct ArtifactStore {
    root: PathBuf,
    /// Blobs hashed and found good, by digest, with the stamp they had.
    verified: Mutex<HashMap<String, Stamp>>,
    index: Mutex<HashMap<ArtifactKey, IndexEntry>>,
    /// Downloads in progress, by key.
    inflight: Mutex<HashMap<ArtifactKey, Inflight>>,
    generations: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
    metrics: Arc<Metrics>,
    /// Total size above which least-recently-used entries are evicted.
    max_bytes: Option<u64>,
    /// Signature policies, checked on each download before it is cached.
    verifier: std::sync::OnceLock<Arc<crate::signature::Verifier>>,
}

/// Largest download accepted when the backend announces no size.
const MAX_UNANNOUNCED: u64 = 16 << 30;
/// The file that marks a folder as an extregd artifact cache.
pub const MARKER: &str = ".extregd-artifacts";
/// Prefix of downloads in progress in `tmp/`.
const TMP_PREFIX: &str = ".dl-";
/// Prefix of ref files being written.
const REF_TMP_PREFIX: &str = ".ref-";

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

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn hex_of(digest: &str) -> Option<&str> {
    let hex = digest.strip_prefix("sha256:")?;
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then_some(hex)
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

    /// Sets the signature policies (once, at boot).
    pub fn set_verifier(&self, v: Arc<crate::signature::Verifier>) {
        let _ = self.verifier.set(v);
    }

    /// Fills a record's `signature.verified` and `key_id` from the cached
    /// artifact of the same version and digest, if any.
    pub fn annotate(&self, rec: &mut Extension) {
        let key = ArtifactKey {
            ext_type: rec.ext_type,
            name: rec.name.clone(),
            version: rec.version.clone(),
            source: rec.source,
        };
        if let Some(e) = self.index.lock().get(&key) {
            let same = rec
                .checksum
                .as_deref()
                .is_none_or(|c| c.eq_ignore_ascii_case(&e.digest));
            if same && e.signature_key.is_some() {
                rec.signature.verified = true;
                rec.signature.key_id = e.signature_key.clone();
                rec.signature.signed = Some(true);
            }
        }
    }

    fn blob_path(&self, digest: &str) -> Option<PathBuf> {
        hex_of(digest).map(|h| self.root.join("blobs/sha256").join(h))
    }

    fn update_gauges(&self) {
        let index = self.index.lock();
        self.metrics.artifact_entries.set(index.len() as i64);
        self.metrics
            .artifact_bytes
            .set(index.values().map(|e| e.size).sum::<u64>() as i64);
    }

    /// The artifact of `entry`, from the cache when it holds the same
    /// revision, else fetched from `backend`, verified and stored. Waits for
    /// the whole download.
    pub async fn get_or_fetch(
        self: &Arc<Self>,
        entry: &VersionEntry,
        backend: Arc<dyn Backend>,
    ) -> Result<CachedArtifact, Error> {
        match self.fetch_or_join(entry, backend)? {
            Fetched::Ready(a) => Ok(a),
            Fetched::Growing(g) => g.finished().await,
        }
    }

    /// The artifact of `entry`: ready in the cache, or a download in
    /// progress that the caller can read while it is written. Concurrent
    /// callers for one missing artifact share one backend fetch.
    pub fn fetch_or_join(
        self: &Arc<Self>,
        entry: &VersionEntry,
        backend: Arc<dyn Backend>,
    ) -> Result<Fetched, Error> {
        self.fetch_or_join_opt(entry, backend, false)
    }

    /// Fetches again even when cached; the cached copy stays until the new
    /// one is verified (so a failed refetch loses nothing).
    pub async fn refetch(
        self: &Arc<Self>,
        entry: &VersionEntry,
        backend: Arc<dyn Backend>,
    ) -> Result<CachedArtifact, Error> {
        match self.fetch_or_join_opt(entry, backend, true)? {
            Fetched::Ready(a) => Ok(a),
            Fetched::Growing(g) => g.finished().await,
        }
    }

    /// [`Self::fetch_or_join`], or with `force` a new fetch even when cached
    /// (see [`Self::refetch`]).
    pub fn fetch_or_join_opt(
        self: &Arc<Self>,
        entry: &VersionEntry,
        backend: Arc<dyn Backend>,
        force: bool,
    ) -> Result<Fetched, Error> {
        self.fetch_or_join_as(entry, backend, force, false)
    }

    /// Like [`Self::fetch_or_join_opt`] for a caller that may give up (a
    /// socket client): the download is cancelled when every such caller
    /// dropped its [`Growing`] and no other kind joined.
    pub fn fetch_or_join_cancellable(
        self: &Arc<Self>,
        entry: &VersionEntry,
        backend: Arc<dyn Backend>,
        force: bool,
    ) -> Result<Fetched, Error> {
        self.fetch_or_join_as(entry, backend, force, true)
    }

    fn fetch_or_join_as(
        self: &Arc<Self>,
        entry: &VersionEntry,
        backend: Arc<dyn Backend>,
        force: bool,
        cancellable: bool,
    ) -> Result<Fetched, Error> {
        let key = ArtifactKey {
            ext_type: entry.record.ext_type,
            name: entry.record.name.clone(),
            version: entry.record.version.clone(),
            source: entry.record.source,
        };
        // Lock order: inflight, then index. A finishing download inserts
        // its index entry and leaves `inflight` under this lock, so a caller
        // sees one or the other, never neither.
        let mut inflight = self.inflight.lock();
        if !force {
            if let Some(hit) = self.lookup(&key, &entry.revision) {
                self.hits.fetch_add(1, Ordering::Relaxed);
                return Ok(Fetched::Ready(hit));
            }
        }
        if let Some(f) = inflight.get_mut(&key) {
            if f.revision == entry.revision {
                self.hits.fetch_add(1, Ordering::Relaxed);
                let mut g = f.join();
                if cancellable {
                    f.waiters += 1;
                    g._waiter = Some(Waiter {
                        store: self.clone(),
                        key: key.clone(),
                        generation: f.generation,
                    });
                } else {
                    f.pinned = true;
                }
                return Ok(Fetched::Growing(g));
            }
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let tmp = tempfile::Builder::new()
            .prefix(TMP_PREFIX)
            .tempfile_in(self.root.join("tmp"))
            .map_err(|e| storage_error("artifact cache", e))?;
        let (tx, rx) = tokio::sync::watch::channel(Progress::default());
        let generation = self.generations.fetch_add(1, Ordering::Relaxed);
        let mut flight = Inflight {
            generation,
            tmp_path: tmp.path().to_path_buf(),
            revision: entry.revision.clone(),
            rx,
            waiters: usize::from(cancellable),
            pinned: !cancellable,
            abort: None,
        };
        let mut growing = flight.join();
        if cancellable {
            growing._waiter = Some(Waiter {
                store: self.clone(),
                key: key.clone(),
                generation,
            });
        }
        // Detached: the cache fills even if every client hangs up, unless
        // all of them were cancellable waiters (see `Waiter`). Spawned
        // under the `inflight` lock, so the abort handle is in place before
        // any waiter can leave.
        let this = self.clone();
        let entry = entry.clone();
        let task_key = key.clone();
        let handle = tokio::spawn(async move {
            let key = task_key;
            // If this task dies (a panic in a backend), the guard still
            // clears the flight and tells every waiter.
            let guard = FlightGuard {
                store: this.clone(),
                key: key.clone(),
                generation,
                tx: Some(tx.clone()),
            };
            let res = this.download(&key, &entry, backend, tmp, &tx).await;
            let mut inflight = this.inflight.lock();
            let current = inflight
                .get(&key)
                .is_some_and(|f| f.generation == generation);
            // Cancelled as it finished (no flight, no one listening):
            // keep nothing.
            let res = if !current && tx.is_closed() {
                Err(Error::internal("download cancelled"))
            } else {
                res.and_then(|v| this.commit(&key, v, current))
            };
            if current {
                inflight.remove(&key);
            }
            drop(inflight);
            if let (Ok((_, ie)), true) = (&res, current) {
                if let Err(e) = this.write_ref(ie) {
                    tracing::warn!(error = %e, "artifact cache: writing the index entry failed");
                }
                this.evict_over_cap(&key);
                this.update_gauges();
            }
            tx.send_modify(|p| p.done = Some(res.map(|(a, _)| a)));
            guard.disarm();
        });
        flight.abort = Some(handle.abort_handle());
        inflight.insert(key, flight);
        drop(inflight);
        Ok(Fetched::Growing(growing))
    }

    /// Whether the index holds `entry`'s artifact at its revision (no
    /// fetch, no touch: for answers from metadata such as `HEAD`).
    pub fn is_cached(&self, entry: &VersionEntry) -> bool {
        let key = ArtifactKey {
            ext_type: entry.record.ext_type,
            name: entry.record.name.clone(),
            version: entry.record.version.clone(),
            source: entry.record.source,
        };
        self.index
            .lock()
            .get(&key)
            .is_some_and(|e| e.revision == entry.revision)
    }

    fn lookup(&self, key: &ArtifactKey, revision: &str) -> Option<CachedArtifact> {
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
        if std::fs::metadata(&path).map(|m| m.len()).ok() != Some(e.size) {
            tracing::warn!(path = %path.display(), "cached artifact missing or damaged; fetching again");
            let gone = e.key();
            index.remove(&gone);
            let _ = std::fs::remove_file(ref_path(&self.root, &gone));
            return None;
        }
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
        Some(CachedArtifact {
            path,
            size: snapshot.size,
            digest: snapshot.digest,
            hit: true,
        })
    }

    /// Streams the backend's bytes into `tmp`, hashing them and reporting
    /// progress, verifies them, and renames the file into `blobs/`.
    async fn download(
        &self,
        key: &ArtifactKey,
        entry: &VersionEntry,
        backend: Arc<dyn Backend>,
        tmp: tempfile::NamedTempFile,
        tx: &tokio::sync::watch::Sender<Progress>,
    ) -> Result<Verified, Error> {
        let source = entry.record.source;
        // The cap holds before a byte is fetched: an artifact whose record
        // announces more than the cap is refused without asking the backend.
        self.check_cap(entry, entry.record.size)?;
        let t = std::time::Instant::now();
        let artifact = backend.fetch(entry).await;
        self.metrics
            .backend_timed(source.as_str(), "fetch", artifact.is_ok(), t);
        let fetched_bytes = self
            .metrics
            .ops
            .bytes_fetched
            .with_label_values(&[source.as_str()]);
        let artifact = artifact.map_err(|e| Error::backend(source, &e))?;
        let expected = artifact
            .digest
            .clone()
            .or_else(|| entry.record.checksum.clone());
        // ...and again once the backend answered (a response may announce
        // more than the record did).
        self.check_cap(entry, artifact.size)?;
        tx.send_modify(|p| {
            p.started = true;
            p.size = artifact.size;
            p.digest = expected.clone();
        });
        let (std_file, tmp_path) = tmp.into_parts();
        let mut file = tokio::fs::File::from_std(std_file);
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut stream = artifact.stream;
        use tokio::io::AsyncWriteExt;
        let write_err = |e: std::io::Error| storage_error("artifact cache write", e);
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| {
                Error::backend(source, &crate::backend::BackendError::Io(e.to_string()))
            })?;
            hasher.update(&chunk);
            size += chunk.len() as u64;
            fetched_bytes.inc_by(chunk.len() as u64);
            // Without an announced size, the cache cap (or 16 GiB) bounds it.
            let ceiling = self
                .max_bytes
                .unwrap_or(MAX_UNANNOUNCED)
                .min(MAX_UNANNOUNCED);
            if (artifact.size.is_none() || self.max_bytes.is_some()) && size > ceiling {
                return Err(Error::new(
                    ErrorKind::IntegrityError,
                    format!("the {source} backend sent more than {ceiling} bytes (the cap, or the most accepted without an announced size)"),
                ));
            }
            if artifact.size.is_some_and(|announced| size > announced) {
                return Err(Error::new(
                    ErrorKind::IntegrityError,
                    format!(
                        "the {source} backend sent more bytes than the {} it announced",
                        artifact.size.unwrap_or(0)
                    ),
                ));
            }
            file.write_all(&chunk).await.map_err(write_err)?;
            // Readers may read what is flushed to the file.
            file.flush().await.map_err(write_err)?;
            tx.send_modify(|p| p.written = size);
        }
        file.sync_all()
            .await
            .map_err(|e| storage_error("artifact cache sync", e))?;
        drop(file);
        let digest = format!("sha256:{}", hex::encode(hasher.finalize()));
        if let Some(exp) = &expected {
            if !exp.eq_ignore_ascii_case(&digest) {
                // tmp_path drops here and deletes the partial file.
                return Err(Error::backend(
                    source,
                    &crate::backend::BackendError::Integrity {
                        expected: exp.clone(),
                        actual: digest,
                    },
                ));
            }
        }
        if let Some(announced) = artifact.size {
            if announced != size {
                return Err(Error::new(
                    ErrorKind::IntegrityError,
                    format!("the {source} backend announced {announced} bytes but sent {size}"),
                ));
            }
        }
        // Who signed it, as the backend's policy asks; a refusal drops the
        // temp file (nothing cached).
        let signature_key = match self.verifier.get() {
            Some(v) => v.check(entry, &*backend, &tmp_path, &digest).await?,
            None => None,
        };
        let t = now();
        let ie = IndexEntry {
            ext_type: key.ext_type,
            name: key.name.clone(),
            version: key.version.clone(),
            source,
            digest: digest.clone(),
            size,
            revision: entry.revision.clone(),
            cached_at: t,
            last_used: t,
            record: Some(entry.record.clone()),
            backend: backend.identity(),
            locator: entry.locator.clone(),
            signature_key,
        };
        Ok(Verified {
            tmp: tmp_path,
            entry: ie,
        })
    }

    /// Refuses an artifact announced above `[cache] max_artifact_bytes`.
    fn check_cap(&self, entry: &VersionEntry, announced: Option<u64>) -> Result<(), Error> {
        match (self.max_bytes, announced) {
            (Some(cap), Some(n)) if n > cap => Err(Error::new(
                ErrorKind::InsufficientStorage,
                format!(
                    "{}/{} {} is {n} bytes, over the artifact cache cap ([cache] max_artifact_bytes = {cap})",
                    entry.record.ext_type, entry.record.name, entry.record.version
                ),
            )),
            _ => Ok(()),
        }
    }

    /// Makes a verified download visible: rename into `blobs/` and index
    /// insert in one step under the index lock (so no removal computing
    /// live blobs can run in between). A superseded flight (`current`
    /// false) still moves its blob into place for its own waiters but does
    /// not touch the index; start-up sweeps such an orphan.
    fn commit(
        &self,
        key: &ArtifactKey,
        v: Verified,
        current: bool,
    ) -> Result<(CachedArtifact, IndexEntry), Error> {
        let blob = self
            .blob_path(&v.entry.digest)
            .expect("digest is well-formed");
        let mut index = self.index.lock();
        v.tmp
            .persist(&blob)
            .map_err(|e| Error::internal(format!("artifact cache rename: {}", e.error)))?;
        if current {
            // A new revision replaces the old entry: free its blob unless
            // another entry still uses it.
            if let Some(old) = index.insert(key.clone(), v.entry.clone()) {
                if old.digest != v.entry.digest && !index.values().any(|e| e.digest == old.digest) {
                    if let Some(p) = self.blob_path(&old.digest) {
                        let _ = std::fs::remove_file(p);
                    }
                }
            }
        }
        drop(index);
        // Hashed on the way in: known good until it changes on disk.
        if let Ok(m) = std::fs::symlink_metadata(&blob) {
            self.mark_verified(&v.entry.digest, Stamp::of(&m));
        }
        let a = CachedArtifact {
            path: blob,
            size: v.entry.size,
            digest: v.entry.digest.clone(),
            hit: false,
        };
        Ok((a, v.entry))
    }

    fn write_ref(&self, e: &IndexEntry) -> std::io::Result<()> {
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

    /// Records that the blob of `digest` hashed good in state `stamp`.
    pub fn mark_verified(&self, digest: &str, stamp: Stamp) {
        self.verified.lock().insert(digest.to_string(), stamp);
    }

    /// Opens a cached artifact's blob. `NotFound` when it went away
    /// (evicted or cleared since it was handed out).
    pub fn open_blob(&self, a: &CachedArtifact) -> std::io::Result<OpenBlob> {
        let file = std::fs::File::open(&a.path)?;
        let stamp = Stamp::of(&file.metadata()?);
        let trusted = self.verified.lock().get(&a.digest) == Some(&stamp);
        Ok(OpenBlob {
            file,
            size: a.size,
            digest: a.digest.clone(),
            trusted,
            stamp,
        })
    }

    /// A blob failed verification: every entry using it is dropped and
    /// the blob removed, so the next request fetches it again.
    pub fn evict_damaged(&self, digest: &str) {
        tracing::warn!(%digest, "a cached artifact does not match its digest; evicting it (the next request fetches it again)");
        self.verified.lock().remove(digest);
        let d = digest.to_string();
        self.remove_where(|e| e.digest == d);
    }

    /// Hashes one blob on disk (blocking): whether it matches `digest`, and
    /// its stamp when it was read.
    pub fn hash_matches(path: &Path, digest: &str) -> std::io::Result<(bool, Stamp)> {
        use std::io::Read;
        let mut f = std::fs::File::open(path)?;
        let stamp = Stamp::of(&f.metadata()?);
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        let got = format!("sha256:{}", hex::encode(h.finalize()));
        Ok((got.eq_ignore_ascii_case(digest), stamp))
    }

    /// Makes sure a blob about to be used whole (by `ext load`) is good:
    /// trusted blobs pass at once, others are hashed. A damaged blob is
    /// evicted and `false` returned.
    pub async fn ensure_verified(self: &Arc<Self>, a: &CachedArtifact) -> std::io::Result<bool> {
        let blob = self.open_blob(a)?;
        if blob.trusted {
            return Ok(true);
        }
        let (path, digest) = (a.path.clone(), a.digest.clone());
        let (ok, stamp) = tokio::task::spawn_blocking(move || Self::hash_matches(&path, &digest))
            .await
            .map_err(std::io::Error::other)??;
        if ok && stamp == blob.stamp {
            self.mark_verified(&a.digest, stamp);
        } else if !ok {
            self.evict_damaged(&a.digest);
        }
        Ok(ok)
    }

    /// `ext cache verify`: hashes every blob, evicts the damaged ones.
    pub async fn verify_all(self: &Arc<Self>) -> VerifyReport {
        let mut by_digest: HashMap<String, Vec<IndexEntry>> = HashMap::new();
        for e in self.entries() {
            by_digest.entry(e.digest.clone()).or_default().push(e);
        }
        let mut report = VerifyReport::default();
        for (digest, entries) in by_digest {
            let Some(path) = self.blob_path(&digest) else {
                continue;
            };
            let d2 = digest.clone();
            let res = tokio::task::spawn_blocking(move || Self::hash_matches(&path, &d2)).await;
            report.checked += 1;
            report.bytes += entries[0].size;
            match res {
                Ok(Ok((true, stamp))) => self.mark_verified(&digest, stamp),
                Ok(Ok((false, _))) => {
                    self.evict_damaged(&digest);
                    report.damaged.extend(entries);
                }
                // Gone meanwhile (cleared or evicted): nothing to judge.
                _ => {}
            }
        }
        report.damaged.sort_by(|a, b| {
            (a.ext_type, &a.name, &a.version).cmp(&(b.ext_type, &b.name, &b.version))
        });
        report
    }

    pub fn entries(&self) -> Vec<IndexEntry> {
        let mut v: Vec<IndexEntry> = self.index.lock().values().cloned().collect();
        v.sort_by(|a, b| {
            (a.ext_type, &a.name, &a.version, a.source)
                .cmp(&(b.ext_type, &b.name, &b.version, b.source))
        });
        v
    }

    /// Removes the entries `keep` rejects, and blobs no entry still uses.
    /// Returns (entries removed, bytes freed).
    pub fn remove_where(&self, mut remove: impl FnMut(&IndexEntry) -> bool) -> (u64, u64) {
        let mut index = self.index.lock();
        let doomed: Vec<ArtifactKey> = index
            .iter()
            .filter(|(_, e)| remove(e))
            .map(|(k, _)| k.clone())
            .collect();
        let mut removed = Vec::new();
        for k in doomed {
            if let Some(e) = index.remove(&k) {
                let _ = std::fs::remove_file(ref_path(&self.root, &k));
                removed.push(e);
            }
        }
        let live: HashSet<&str> = index.values().map(|e| e.digest.as_str()).collect();
        let mut bytes = 0;
        let mut freed = HashSet::new();
        for e in &removed {
            if !live.contains(e.digest.as_str()) && freed.insert(e.digest.clone()) {
                if let Some(p) = self.blob_path(&e.digest) {
                    if std::fs::remove_file(p).is_ok() {
                        bytes += e.size;
                    }
                }
            }
        }
        drop(index);
        self.update_gauges();
        (removed.len() as u64, bytes)
    }

    /// With a size cap, removes least-recently-used entries (never `keep`,
    /// the one just stored) until the total fits.
    fn evict_over_cap(&self, keep: &ArtifactKey) {
        let Some(cap) = self.max_bytes else { return };
        let mut victims: Vec<(u64, ArtifactKey, u64, String)> = self
            .index
            .lock()
            .iter()
            .filter(|(k, _)| *k != keep)
            .map(|(k, e)| (e.last_used, k.clone(), e.size, e.digest.clone()))
            .collect();
        victims.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.name.cmp(&b.1.name)));
        let mut total: u64 = self.index.lock().values().map(|e| e.size).sum();
        let mut doomed = HashSet::new();
        for (_, k, size, digest) in victims {
            if total <= cap {
                break;
            }
            total = total.saturating_sub(size);
            doomed.insert((k, digest));
        }
        if !doomed.is_empty() {
            // Only the entries chosen: one replaced meanwhile (same key, new
            // digest) stays.
            let (n, bytes) = self.remove_where(|e| doomed.contains(&(e.key(), e.digest.clone())));
            tracing::info!(
                entries = n,
                bytes,
                cap,
                "evicted least recently used artifacts"
            );
        }
    }

    /// The cached versions of one extension from one source, for offline
    /// operation: records marked stale, revisions as cached (so the bytes
    /// are served from the cache).
    pub fn cached_versions(
        &self,
        backend: &str,
        ext_type: ExtensionType,
        name: &str,
    ) -> Vec<crate::backend::VersionEntry> {
        self.index
            .lock()
            .values()
            .filter(|e| e.backend == backend && e.ext_type == ext_type && e.name == name)
            .filter_map(|e| {
                let mut record = e.record.clone()?;
                record.stale = true;
                if e.signature_key.is_some() {
                    record.signature.verified = true;
                    record.signature.key_id = e.signature_key.clone();
                }
                Some(crate::backend::VersionEntry {
                    semver: extreg_shared::parse_version(&record.version).ok()?,
                    record,
                    locator: e.locator.clone(),
                    revision: e.revision.clone(),
                })
            })
            .collect()
    }

    /// The cached records of one source, newest per extension, marked
    /// stale: the listing used when that backend cannot be reached.
    pub fn cached_catalog(&self, backend: &str) -> Vec<Extension> {
        let mut keys: Vec<(ExtensionType, String)> = self
            .index
            .lock()
            .values()
            .filter(|e| e.backend == backend)
            .map(|e| (e.ext_type, e.name.clone()))
            .collect();
        keys.sort();
        keys.dedup();
        keys.into_iter()
            .filter_map(|(t, n)| {
                let vs = self.cached_versions(backend, t, &n);
                crate::backend::newest(&vs).map(|e| e.record.clone())
            })
            .collect()
    }

    /// Removes entries not used within the last `days` days (0: all).
    pub fn prune(&self, days: u32) -> (u64, u64) {
        self.prune_older_than(u64::from(days) * 86_400)
    }

    /// Removes entries not used within the last `seconds` seconds (0: all).
    pub fn prune_older_than(&self, seconds: u64) -> (u64, u64) {
        let cutoff = now().saturating_sub(seconds);
        self.remove_where(|e| e.last_used <= cutoff)
    }

    pub fn stats(&self) -> ArtifactCacheStats {
        let index = self.index.lock();
        let (hits, misses) = (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        );
        ArtifactCacheStats {
            entries: index.len() as u64,
            bytes: index.values().map(|e| e.size).sum(),
            hits,
            misses,
            hit_ratio: ratio(hits, misses),
            oldest: index
                .values()
                .map(|e| e.cached_at)
                .min()
                .map(crate::backend::rfc3339_secs),
        }
    }
}

pub fn ratio(hits: u64, misses: u64) -> f64 {
    if hits + misses == 0 {
        0.0
    } else {
        hits as f64 / (hits + misses) as f64
    }
}

fn ref_path(root: &Path, k: &ArtifactKey) -> PathBuf {
    root.join("refs")
        .join(k.ext_type.as_str())
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

/// A failure to write the cache: a full disk (or quota) is
/// `insufficient_storage` (507) and logged, anything else internal.
fn storage_error(what: &str, e: std::io::Error) -> Error {
    let full = matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT));
    if full {
        tracing::warn!(error = %e, "{what}: the disk is full; nothing was cached");
        Error::new(
            ErrorKind::InsufficientStorage,
            format!("{what}: the disk holding the artifact cache is full"),
        )
    } else {
        Error::internal(format!("{what}: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Artifact, BackendError};
    use extreg_shared::Extension;

    struct Panicky;

    #[async_trait::async_trait]
    impl Backend for Panicky {
        fn source(&self) -> Source {
            Source::Local
        }
        async fn list(&self) -> Result<Vec<Extension>, BackendError> {
            Ok(vec![])
        }
        async fn versions(
            &self,
            _: ExtensionType,
            _: &str,
        ) -> Result<Vec<VersionEntry>, BackendError> {
            Ok(vec![])
        }
        async fn fetch(&self, _: &VersionEntry) -> Result<Artifact, BackendError> {
            panic!("a backend bug")
        }
        async fn health(&self) -> Result<(), BackendError> {
            Ok(())
        }
        fn identity(&self) -> String {
            "local:panicky".into()
        }
    }

    fn entry() -> VersionEntry {
        VersionEntry {
            record: Extension {
                name: "x".into(),
                ext_type: ExtensionType::Provider,
                version: "1.0.0".into(),
                description: String::new(),
                author: None,
                repository: None,
                source: Source::Local,
                published_at: None,
                download_url: None,
                checksum: None,
                size: None,
                tags: vec![],
                prerelease: false,
                stale: false,
                requires: vec![],
                dependencies: vec![],
                signature: Default::default(),
            },
            semver: "1.0.0".parse().unwrap(),
            locator: String::new(),
            revision: "r1".into(),
        }
    }

    /// Sends 64 KiB every 10 ms, up to 64 MiB (announced), counting chunks.
    struct Slow(Arc<AtomicU64>);

    #[async_trait::async_trait]
    impl Backend for Slow {
        fn source(&self) -> Source {
            Source::Local
        }
        async fn list(&self) -> Result<Vec<Extension>, BackendError> {
            Ok(vec![])
        }
        async fn versions(
            &self,
            _: ExtensionType,
            _: &str,
        ) -> Result<Vec<VersionEntry>, BackendError> {
            Ok(vec![])
        }
        async fn fetch(&self, _: &VersionEntry) -> Result<Artifact, BackendError> {
            let sent = self.0.clone();
            let stream = futures::stream::unfold(0u32, move |i| {
                let sent = sent.clone();
                async move {
                    if i == 1024 {
                        return None;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    sent.fetch_add(1, Ordering::SeqCst);
                    Some((Ok(bytes::Bytes::from(vec![0u8; 64 * 1024])), i + 1))
                }
            });
            Ok(Artifact {
                stream: Box::pin(stream),
                size: Some(64 << 20),
                digest: None,
            })
        }
        async fn health(&self) -> Result<(), BackendError> {
            Ok(())
        }
        fn identity(&self) -> String {
            "local:slow".into()
        }
    }

    fn tmp_files(dir: &Path) -> usize {
        std::fs::read_dir(dir.join("tmp")).unwrap().count()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_download_goes_on_while_a_waiter_remains_and_stops_with_the_last() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            Arc::new(ArtifactStore::open(dir.path(), Arc::new(Metrics::new()), None).unwrap());
        let sent = Arc::new(AtomicU64::new(0));
        let backend: Arc<dyn Backend> = Arc::new(Slow(sent.clone()));
        let grow = |f: Fetched| match f {
            Fetched::Growing(g) => g,
            Fetched::Ready(_) => panic!("nothing is cached yet"),
        };
        let a = grow(
            store
                .fetch_or_join_cancellable(&entry(), backend.clone(), false)
                .unwrap(),
        );
        let b = grow(
            store
                .fetch_or_join_cancellable(&entry(), backend.clone(), false)
                .unwrap(),
        );
        // Wait until bytes flow.
        let mut rx = a.rx.clone();
        rx.wait_for(|p| p.written > 0).await.unwrap();
        // One of two leaves: the download goes on.
        drop(a);
        let at = sent.load(Ordering::SeqCst);
        let mut rx = b.rx.clone();
        rx.wait_for(|p| p.written > (at + 4) * 64 * 1024)
            .await
            .unwrap();
        assert_eq!(store.inflight.lock().len(), 1);
        assert_eq!(tmp_files(dir.path()), 1);
        // The last leaves: cancelled, temp file gone, nothing indexed.
        drop(b);
        drop(rx);
        assert!(store.inflight.lock().is_empty());
        let mut gone = false;
        for _ in 0..200 {
            if tmp_files(dir.path()) == 0 {
                gone = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(gone, "the temp file of a cancelled download stayed");
        let stopped_at = sent.load(Ordering::SeqCst);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert!(
            sent.load(Ordering::SeqCst) <= stopped_at + 1,
            "the backend stream was still read"
        );
        assert!(store.entries().is_empty());

        // A pinned caller (REST) keeps a download alive on its own.
        let sent2 = Arc::new(AtomicU64::new(0));
        let slow2: Arc<dyn Backend> = Arc::new(Slow(sent2.clone()));
        let c = grow(
            store
                .fetch_or_join_cancellable(&entry(), slow2.clone(), false)
                .unwrap(),
        );
        let pinned = grow(store.fetch_or_join(&entry(), slow2).unwrap());
        drop(c);
        drop(pinned);
        let at = sent2.load(Ordering::SeqCst);
        let mut waited = 0;
        while sent2.load(Ordering::SeqCst) < at + 5 && waited < 200 {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            waited += 1;
        }
        assert!(
            sent2.load(Ordering::SeqCst) >= at + 5,
            "a pinned download was cancelled"
        );
    }

    #[tokio::test]
    async fn a_panicking_download_fails_its_waiters_and_clears_the_flight() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            Arc::new(ArtifactStore::open(dir.path(), Arc::new(Metrics::new()), None).unwrap());
        let e = store
            .get_or_fetch(&entry(), Arc::new(Panicky))
            .await
            .unwrap_err();
        assert!(e.message.contains("failed unexpectedly"), "{e}");
        assert!(
            store.inflight.lock().is_empty(),
            "no dead flight left behind"
        );
        // A later request starts afresh (and fails the same way), no hang.
        let again = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            store.get_or_fetch(&entry(), Arc::new(Panicky)),
        )
        .await
        .expect("no hang on a dead flight");
        assert!(again.is_err());
        assert!(std::fs::read_dir(dir.path().join("tmp"))
            .unwrap()
            .next()
            .is_none());
    }
}

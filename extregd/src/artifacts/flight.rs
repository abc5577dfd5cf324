//! Single-flight downloads: one detached task per key, waiters that
//! read the temp file as it grows, cancellation when the last cancellable
//! waiter leaves, and a guard that fails waiters if the task dies.

use super::handle::{ArtifactHandle, Stored};
use super::{storage_error, ArtifactKey, ArtifactStore, Origin, Stamp, TMP_PREFIX};
use crate::backend::{Backend, VersionEntry};
use crate::error::Error;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

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
    pub done: Option<Result<Stored, Error>>,
}

pub(super) struct Inflight {
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
    fn join(&self, store: &Arc<ArtifactStore>) -> Growing {
        Growing {
            file: std::fs::File::open(&self.tmp_path).ok(),
            rx: self.rx.clone(),
            store: store.clone(),
            _waiter: None,
        }
    }
}

/// A download in progress, readable while it is written (`file` is None
/// when it ended as it was joined: wait for [`Growing::finished`]). Its
/// file, opened when the caller joined, becomes the caller's
/// [`ArtifactHandle`] once the download is verified.
pub struct Growing {
    pub(super) file: Option<std::fs::File>,
    pub(super) rx: tokio::sync::watch::Receiver<Progress>,
    store: Arc<ArtifactStore>,
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

    /// Waits for the end of the download: the verified artifact, read
    /// through the file opened when this caller joined.
    pub async fn finished(mut self) -> Result<ArtifactHandle, Error> {
        let stored = match self.rx.wait_for(|p| p.done.is_some()).await {
            Ok(p) => p.done.clone().expect("done is set")?,
            Err(_) => return Err(Error::internal("the download task ended unexpectedly")),
        };
        match self.file.take() {
            Some(file) => {
                let stamp = file.metadata().map_err(|e| {
                    Error::internal(format!("reading the downloaded artifact: {e}"))
                })?;
                Ok(ArtifactHandle::new(
                    self.store.clone(),
                    file,
                    Stamp::of(&stamp),
                    stored,
                    false,
                ))
            }
            // Joined as it ended (a path only a failure takes in practice).
            None => self.store.open_stored(stored),
        }
    }

    /// The download's progress, to report it (`ext load`, `ext pull`).
    pub fn progress(&self) -> tokio::sync::watch::Receiver<Progress> {
        self.rx.clone()
    }

    /// Whether the bytes can be read while they arrive.
    pub fn readable(&self) -> bool {
        self.file.is_some()
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

/// An artifact ready in the cache, or one still arriving.
pub enum Fetched {
    Ready(ArtifactHandle),
    Growing(Growing),
}

impl ArtifactStore {
    /// The artifact of `entry`, from the cache when it holds the same
    /// revision, else fetched from `backend`, verified and stored. Waits for
    /// the whole download.
    pub async fn get_or_fetch(
        self: &Arc<Self>,
        entry: &VersionEntry,
        backend: Arc<dyn Backend>,
    ) -> Result<ArtifactHandle, Error> {
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
    ) -> Result<ArtifactHandle, Error> {
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
        let origin = Origin::Version {
            entry: entry.clone(),
            backend,
        };
        self.fetch_or_join_origin(&origin, force, cancellable)
    }

    /// A generic OCI artifact (a KCL package): cached, or fetched from the
    /// registry and verified against its layer digest, as extensions are
    /// (single flight, cancellable like a socket client's download).
    pub fn fetch_or_join_generic(
        self: &Arc<Self>,
        located: &crate::backend::oci::generic::Located,
        oci: Arc<crate::backend::oci::OciBackend>,
    ) -> Result<Fetched, Error> {
        let origin = Origin::Generic {
            located: located.clone(),
            oci,
        };
        self.fetch_or_join_origin(&origin, false, true)
    }

    fn fetch_or_join_origin(
        self: &Arc<Self>,
        origin: &Origin,
        force: bool,
        cancellable: bool,
    ) -> Result<Fetched, Error> {
        let key = origin.key();
        let revision = origin.revision();
        // Lock order: inflight, then index. A finishing download inserts
        // its index entry and leaves `inflight` under this lock, so a caller
        // sees one or the other, never neither.
        let mut inflight = self.inflight.lock();
        if !force {
            if let Some(hit) = self.lookup(&key, revision) {
                self.hits.fetch_add(1, Ordering::Relaxed);
                return Ok(Fetched::Ready(hit));
            }
        }
        if let Some(f) = inflight.get_mut(&key) {
            if f.revision == revision {
                self.hits.fetch_add(1, Ordering::Relaxed);
                let mut g = f.join(self);
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
            revision: revision.to_string(),
            rx,
            waiters: usize::from(cancellable),
            pinned: !cancellable,
            abort: None,
        };
        let mut growing = flight.join(self);
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
        let origin = origin.clone();
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
            let res = this.download(&key, &origin, tmp, &tx).await;
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
}

//! What the store hands out: an artifact **open for reading**, with the
//! policy for serving its bytes.
//!
//! A handle's file is opened under the index lock (a cache hit) or is the
//! download's own temp file, opened when the caller joined and renamed into
//! `blobs/` since. Removals unlink blobs under the same lock, so eviction,
//! `ext cache clear` or the size cap can take the name away but never the
//! bytes of a handle already given out: callers never see a file vanish.
//!
//! The body policy lives here, not in the HTTP adapter: a blob known good
//! (hashed, and its [`Stamp`] unchanged since) is served as it is; any
//! other whole body is hashed while it streams, its last chunk held back
//! until the digest matches, and evicted on a mismatch. A download still
//! arriving streams with its last byte held back until it is verified.

use super::flight::{Fetched, Growing, Progress};
use super::{ArtifactStore, Stamp};
use crate::backend::{Backend, ByteStream, VersionEntry};
use crate::error::Error;
use extreg_shared::ErrorKind;
use sha2::{Digest, Sha256};
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::Arc;

/// Read size when streaming from disk: small reads cost a trip to the
/// blocking pool each (see COMPONENTS.md); 1 MiB measured best here
/// (docs/benchmarks.md, cached 200 MB download).
pub const CHUNK: usize = 1024 * 1024;

/// Artifacts larger than this stream to a client while they download
/// (the final byte held back until the digest is verified); smaller ones
/// are verified first, so a bad digest is a clean `integrity_error`.
pub const STREAM_ABOVE: u64 = 4 << 20;

/// Where a finished download put its verified bytes: what the download
/// task tells every waiter (each reads through its own open file).
#[derive(Debug, Clone)]
pub struct Stored {
    pub path: PathBuf,
    pub size: u64,
    pub digest: String,
}

/// A verified artifact, open for reading (see the module docs).
pub struct ArtifactHandle {
    file: std::fs::File,
    /// Where the blob was when it was opened: informative (`ext pull`
    /// shows it); its bytes are read through the handle.
    pub path: PathBuf,
    pub size: u64,
    /// `sha256:<hex>`.
    pub digest: String,
    /// Whether this request was served without a backend fetch.
    pub hit: bool,
    stamp: Stamp,
    known_good: bool,
    store: Arc<ArtifactStore>,
}

impl std::fmt::Debug for ArtifactHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArtifactHandle")
            .field("path", &self.path)
            .field("size", &self.size)
            .field("digest", &self.digest)
            .field("hit", &self.hit)
            .field("known_good", &self.known_good)
            .finish()
    }
}

impl ArtifactHandle {
    /// Wraps an open blob; whether it is known good is read from the
    /// store's stamps now.
    pub(super) fn new(
        store: Arc<ArtifactStore>,
        file: std::fs::File,
        stamp: Stamp,
        stored: Stored,
        hit: bool,
    ) -> ArtifactHandle {
        let known_good = store.is_known_good(&stored.digest, stamp);
        ArtifactHandle {
            file,
            path: stored.path,
            size: stored.size,
            digest: stored.digest,
            hit,
            stamp,
            known_good,
            store,
        }
    }

    /// The blob hashed good and has not changed on disk since.
    pub fn known_good(&self) -> bool {
        self.known_good
    }

    /// The bytes to send: `range` (first byte, length) as it is (a part
    /// cannot be verified); the whole artifact as it is when known good,
    /// else hashed while it streams, its last chunk held back until the
    /// digest matches (a mismatch ends the stream with an error and evicts
    /// the blob, so the next request fetches it again).
    pub fn body(self, range: Option<(u64, u64)>) -> Result<ByteStream, Error> {
        use tokio::io::AsyncReadExt;
        let seek_err = |e: std::io::Error| Error::internal(format!("seeking cached artifact: {e}"));
        let mut file = self.file;
        let (start, len) = match range {
            Some(r) => r,
            None if !self.known_good => {
                file.seek(SeekFrom::Start(0)).map_err(seek_err)?;
                return Ok(verified_stream(
                    self.store,
                    file,
                    self.size,
                    self.digest,
                    self.stamp,
                ));
            }
            None => (0, self.size),
        };
        file.seek(SeekFrom::Start(start)).map_err(seek_err)?;
        let file = tokio::fs::File::from_std(file);
        Ok(Box::pin(tokio_util::io::ReaderStream::with_capacity(
            file.take(len),
            CHUNK,
        )))
    }

    /// The same artifact, known good: at once when it is, else hashed
    /// (off the runtime). A mismatch evicts the blob and is an
    /// `integrity_error`; fetching again is the caller's choice.
    pub async fn verified(mut self) -> Result<ArtifactHandle, Error> {
        if self.known_good {
            return Ok(self);
        }
        let (file, digest) = (self.file, self.digest.clone());
        let (file, ok, stamp) = tokio::task::spawn_blocking(move || {
            let mut file = file;
            let ok = hash_file(&mut file, &digest)?;
            let stamp = Stamp::of(&file.metadata()?);
            Ok::<_, std::io::Error>((file, ok, stamp))
        })
        .await
        .map_err(|e| Error::internal(format!("hashing task failed: {e}")))?
        .map_err(|e| Error::internal(format!("reading cached artifact: {e}")))?;
        self.file = file;
        if !ok {
            self.store.evict_damaged(&self.digest);
            return Err(Error::new(
                ErrorKind::IntegrityError,
                format!(
                    "the cached artifact does not match {}; evicted",
                    self.digest
                ),
            ));
        }
        // Unchanged while it was hashed: known good from now on.
        if stamp == self.stamp {
            self.store.mark_verified(&self.digest, stamp);
            self.known_good = true;
        }
        Ok(self)
    }

    /// A blocking reader over the whole artifact, from its first byte.
    pub fn into_reader(self) -> std::io::Result<std::fs::File> {
        let mut file = self.file;
        file.seek(SeekFrom::Start(0))?;
        Ok(file)
    }
}

/// Hashes an open file from its start (blocking): whether it matches
/// `digest`.
pub(super) fn hash_file(f: &mut std::fs::File, digest: &str) -> std::io::Result<bool> {
    f.seek(SeekFrom::Start(0))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    let got = format!("sha256:{}", hex::encode(h.finalize()));
    Ok(got.eq_ignore_ascii_case(digest))
}

/// A download still arriving, sent as it is written.
pub struct LiveDownload {
    /// What the backend announced (no `Content-Length` without it).
    pub size: Option<u64>,
    /// What the backend (or the record) announced (no `ETag` without it).
    pub digest: Option<String>,
    growing: Growing,
}

impl LiveDownload {
    /// The bytes as they arrive. **The last byte is held back until the
    /// digest is verified**, so a client never receives a complete body
    /// that failed verification: on failure the stream ends with an error
    /// (the connection is cut).
    pub fn body(self) -> ByteStream {
        live_stream(self.growing)
    }
}

/// What a server sends for one artifact.
pub enum Delivery {
    /// Complete and open (cached, or a download that finished first).
    Complete(ArtifactHandle),
    /// Large and still arriving: streamed while it downloads.
    Live(LiveDownload),
}

impl ArtifactStore {
    /// The artifact of `entry` for a server: complete, or (with `live_ok`,
    /// when it is large and still arriving) streamed as it downloads. The
    /// store decides; callers never look at a download in flight. Waits
    /// until the backend answered, so an error before the first byte is an
    /// error, not a cut body.
    pub async fn deliver(
        self: &Arc<Self>,
        entry: &VersionEntry,
        backend: Arc<dyn Backend>,
        live_ok: bool,
    ) -> Result<Delivery, Error> {
        let mut g = match self.fetch_or_join(entry, backend)? {
            Fetched::Ready(a) => return Ok(Delivery::Complete(a)),
            Fetched::Growing(g) => g,
        };
        let p = g.started().await;
        if let Some(Err(e)) = p.done {
            return Err(e);
        }
        let live =
            live_ok && p.done.is_none() && g.readable() && p.size.is_some_and(|n| n > STREAM_ABOVE);
        if live {
            Ok(Delivery::Live(LiveDownload {
                size: p.size,
                digest: p.digest,
                growing: g,
            }))
        } else {
            g.finished().await.map(Delivery::Complete)
        }
    }
}

/// A cached blob's bytes, hashed as they are read. **The last chunk is held
/// back until the digest matches**, so a client never receives a complete
/// body that fails verification: on a mismatch the stream ends with an
/// error (the connection is cut) and the blob is evicted, so the next
/// request fetches it again. A blob that matches is marked known good.
fn verified_stream(
    store: Arc<ArtifactStore>,
    file: std::fs::File,
    size: u64,
    digest: String,
    stamp: Stamp,
) -> ByteStream {
    use tokio::io::AsyncReadExt;
    struct St {
        file: tokio::fs::File,
        hasher: Sha256,
        remaining: u64,
        held: Option<bytes::Bytes>,
        done: bool,
        store: Arc<ArtifactStore>,
        digest: String,
        stamp: Stamp,
    }
    let st = St {
        file: tokio::fs::File::from_std(file),
        hasher: Sha256::new(),
        remaining: size,
        held: None,
        done: false,
        store,
        digest,
        stamp,
    };
    Box::pin(futures::stream::unfold(st, |mut st| async move {
        loop {
            if st.done {
                return None;
            }
            if st.remaining == 0 {
                st.done = true;
                let got = format!("sha256:{}", hex::encode(st.hasher.finalize_reset()));
                if got.eq_ignore_ascii_case(&st.digest) {
                    st.store.mark_verified(&st.digest, st.stamp);
                    return st.held.take().map(|b| (Ok(b), st));
                }
                st.store.evict_damaged(&st.digest);
                return Some((
                    Err(std::io::Error::other(format!(
                        "the cached artifact does not match {}; evicted",
                        st.digest
                    ))),
                    st,
                ));
            }
            let want = st.remaining.min(CHUNK as u64) as usize;
            let mut buf = vec![0u8; want];
            if let Err(e) = st.file.read_exact(&mut buf).await {
                st.done = true;
                return Some((Err(e), st));
            }
            st.remaining -= want as u64;
            st.hasher.update(&buf);
            if let Some(prev) = st.held.replace(bytes::Bytes::from(buf)) {
                return Some((Ok(prev), st));
            }
        }
    }))
}

/// A download's bytes as they are written, the last byte held back until
/// the task verified them (see [`LiveDownload::body`]).
fn live_stream(g: Growing) -> ByteStream {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    struct St {
        file: tokio::fs::File,
        rx: tokio::sync::watch::Receiver<Progress>,
        pos: u64,
        finished: bool,
        // Keeps a cancellable waiter alive as long as the body is read.
        _growing: Growing,
    }
    let mut g = g;
    let Some(file) = g.file.take() else {
        return Box::pin(futures::stream::once(async {
            Err(std::io::Error::other(
                "the download ended before it could be read",
            ))
        }));
    };
    let st = St {
        file: tokio::fs::File::from_std(file),
        rx: g.rx.clone(),
        pos: 0,
        finished: false,
        _growing: g,
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

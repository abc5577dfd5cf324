//! Known-good stamps: which blobs hashed good and have not changed since,
//! hashing blobs on demand (`ext load`, `ext cache verify`).

use super::{ArtifactStore, CachedArtifact, IndexEntry};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

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

impl ArtifactStore {
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
}

//! Known-good stamps: which blobs hashed good and have not changed since,
//! hashing blobs on demand (`ext load`, `ext cache verify`).

use super::handle::hash_file;
use super::{ArtifactStore, IndexEntry};
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
    /// The size the blob had.
    pub fn size(&self) -> u64 {
        self.size
    }

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

    /// Whether the blob of `digest`, in state `stamp`, hashed good and
    /// has not changed since.
    pub(super) fn is_known_good(&self, digest: &str, stamp: Stamp) -> bool {
        self.verified.lock().get(digest) == Some(&stamp)
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
        let mut f = std::fs::File::open(path)?;
        let stamp = Stamp::of(&f.metadata()?);
        Ok((hash_file(&mut f, digest)?, stamp))
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
        report
            .damaged
            .sort_by(|a, b| (a.kind, &a.name, &a.version).cmp(&(b.kind, &b.name, &b.version)));
        report
    }
}

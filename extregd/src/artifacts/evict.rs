//! Removal: by predicate, least-recently-used over the size cap, pruning
//! by age.

use super::index::ref_path;
use super::{now, ArtifactKey, ArtifactStore, IndexEntry};
use std::collections::HashSet;

impl ArtifactStore {
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
    pub(super) fn evict_over_cap(&self, keep: &ArtifactKey) {
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

    /// Removes entries not used within the last `days` days (0: all).
    pub fn prune(&self, days: u32) -> (u64, u64) {
        self.prune_older_than(u64::from(days) * 86_400)
    }

    /// Removes entries not used within the last `seconds` seconds (0: all).
    pub fn prune_older_than(&self, seconds: u64) -> (u64, u64) {
        let cutoff = now().saturating_sub(seconds);
        self.remove_where(|e| e.last_used <= cutoff)
    }
}

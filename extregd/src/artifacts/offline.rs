//! Offline answers: the records stored with each verified download, served
//! (marked stale) when their backend cannot be reached.

use super::ArtifactStore;
use extreg_shared::{Extension, ExtensionType};

impl ArtifactStore {
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
            .filter(|e| {
                e.backend == backend
                    && e.kind == super::ArtifactKind::Extension(ext_type)
                    && e.name == name
            })
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
            .filter_map(|e| Some((e.kind.ext_type()?, e.name.clone())))
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
}

//! Merging by priority: per-backend answers (or, offline, what the
//! artifact cache holds of a failed backend) become one answer.

use super::{Core, ExtKey, Tag, Versions};
use crate::backend::{Backend, BackendError, VersionEntry};
use crate::error::Error;
use extreg_shared::{parse_version, Extension, ExtensionType, Source};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

/// `a` should replace `b` in a merged listing: newer version, else keep the
/// earlier (higher-priority) backend's record.
pub(super) fn is_newer(a: &Extension, b: &Extension) -> bool {
    match (parse_version(&a.version), parse_version(&b.version)) {
        (Ok(av), Ok(bv)) => match (a.prerelease, b.prerelease) {
            (false, true) => true,
            (true, false) => false,
            _ => av > bv,
        },
        _ => false,
    }
}

/// Per backend, in priority order: its source, its identity, its answer.
pub(super) type SourceResults = Vec<(Source, String, Result<Vec<VersionEntry>, BackendError>)>;

/// Every backend's versions of one extension, in priority order.
pub(super) async fn fetch_versions(
    backends: &[Arc<dyn Backend>],
    core: &Core,
    ext_type: ExtensionType,
    name: &str,
) -> SourceResults {
    futures::future::join_all(backends.iter().map(|b| async move {
        let t = Instant::now();
        let r = b.versions(ext_type, name).await;
        core.metrics
            .backend_timed(b.source().as_str(), "versions", r.is_ok(), t);
        core.note(b.source(), &r);
        (b.source(), b.identity(), r)
    }))
    .await
}

/// Merges per-backend versions; a backend that failed contributes, at its
/// own place, the versions the artifact cache holds for it (offline).
pub(super) fn merge_versions(
    results: SourceResults,
    core: &Core,
    ext_type: ExtensionType,
    name: &str,
) -> Result<Versions, Error> {
    let base = &core.base_url;
    let url = |v: &str| format!("{base}/api/v1/extensions/{ext_type}/{name}/{v}");
    let mut merged: HashMap<semver::Version, VersionEntry> = HashMap::new();
    let mut failures = Vec::new();
    for (source, identity, r) in results {
        let entries = match r {
            Ok(list) => list,
            Err(BackendError::NotFound(_)) => continue,
            Err(e) => {
                failures.push((source, e));
                // Offline: only what was fetched from this same backend.
                core.artifacts.cached_versions(&identity, ext_type, name)
            }
        };
        for mut e in entries {
            e.record.download_url = Some(url(&e.record.version));
            core.artifacts.annotate(&mut e.record);
            merged.entry(e.semver.clone()).or_insert(e);
        }
    }
    if merged.is_empty() {
        if let Some((s, e)) = failures.first() {
            return Err(Error::backend(*s, e));
        }
        return Err(
            Error::not_found(format!("Extension {ext_type}/{name} not found"))
                .with_field(extreg_shared::Field::Name),
        );
    }
    for (s, e) in &failures {
        tracing::warn!(backend = %s, error = %e, "backend failed while listing versions");
    }
    let mut entries: Vec<VersionEntry> = merged.into_values().collect();
    entries.sort_by(|a, b| b.semver.cmp(&a.semver));
    Versions::build(entries, failures.is_empty())
}

/// A merged catalog and what it was made from.
pub(super) struct CatalogView {
    pub(super) items: Vec<Extension>,
    pub(super) complete: bool,
    pub(super) tag: Tag,
    /// Seconds since the oldest listing in it was fetched.
    pub(super) age: u64,
}

/// `list` with `rec` standing for `key` (or `key` gone when None), sorted
/// by type then name.
pub(super) fn patched(list: &[Extension], key: &ExtKey, rec: Option<&Extension>) -> Vec<Extension> {
    let mut out: Vec<Extension> = list
        .iter()
        .filter(|e| !(e.ext_type == key.0 && e.name == key.1))
        .cloned()
        .collect();
    if let Some(r) = rec {
        out.push(r.clone());
    }
    out.sort_by(|a, b| (a.ext_type, &a.name).cmp(&(b.ext_type, &b.name)));
    out
}

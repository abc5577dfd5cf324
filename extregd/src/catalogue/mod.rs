//! The catalogue: the merged view of every backend (the OCI registry is one
//! of them). Asks the backends, merges their answers, caches them
//! (pre-serialized, so a cache hit costs a clone of `Bytes`), and hands out
//! verified artifacts. Handlers in [`crate::api`] only parse input, call
//! this, and map errors.
//!
//! Layout: this file holds the answer types, the [`Catalogue`] handle and its
//! cache controls; `search.rs` lists and searches, `resolve.rs` answers one
//! extension (versions, records, constraints, artifacts), `merge.rs` merges
//! per-backend answers by priority, `core.rs` is the [`Core`] background
//! refreshes share.
//!
//! **Merging.** Backends are held in priority order (default: local, oci,
//! gitea). Lists merge by `{type}/{name}`, keeping the newest version; version
//! lists are the union, and when two backends hold the same version the one
//! earlier in the order serves it.
//!
//! **Always warm.** What comes from backends (each backend's listing, each
//! extension's merged versions) lives in stale-while-revalidate caches
//! ([`SwrCache`]): after the TTL a reader gets the cached answer at once and
//! one background refresh runs; a refresh that fails keeps the old answer
//! (marked `stale` once older than `[cache] stale_after_seconds`) and is
//! reported in `/health` and the metrics. Lists, searches and records are
//! derived from those and cached with the generation they were derived
//! from, so a refresh or a pushed invalidation ([`Catalogue::invalidate`])
//! makes them be derived again without any backend call. The persisted
//! catalogue ([`crate::persist`]) fills the caches at start.

mod core;
mod merge;
mod resolve;
mod search;

use crate::artifacts::ArtifactStore;
use crate::backend::{Backend, VersionEntry};
use crate::cache::{SingleFlight, SwrCache, TtlLru};
use crate::config::CacheConfig;
use crate::error::Error;
use crate::metrics::Metrics;
use bytes::Bytes;
use extreg_shared::{CacheStats, ErrorKind, Extension, ExtensionType, ExtensionVersion, Source};
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

pub(crate) use self::core::Core;

/// A response body serialized once, with the total count before paging and
/// the age in seconds of the oldest data it was made from.
#[derive(Clone)]
pub struct Rendered {
    pub body: Bytes,
    pub total: usize,
    pub age: u64,
}

/// The merged versions of one extension, newest first.
pub struct Versions {
    pub entries: Vec<VersionEntry>,
    pub body: Bytes,
    /// False when a backend failed and the others answered; such a merge is
    /// served but not cached.
    pub complete: bool,
}

impl Versions {
    fn build(entries: Vec<VersionEntry>, complete: bool) -> Result<Versions, Error> {
        let records: Vec<ExtensionVersion> = entries.iter().map(|e| (&e.record).into()).collect();
        Ok(Versions {
            body: to_json(&records)?,
            entries,
            complete,
        })
    }

    /// Versions already sorted newest first (complete).
    pub(crate) fn from_entries(entries: Vec<VersionEntry>) -> Result<Versions, Error> {
        Versions::build(entries, true)
    }

    /// The same versions with every record marked stale.
    fn marked_stale(&self) -> Result<Versions, Error> {
        let entries = self
            .entries
            .iter()
            .cloned()
            .map(|mut e| {
                e.record.stale = true;
                e
            })
            .collect();
        Versions::build(entries, self.complete)
    }
}

/// The versions of one extension as a reader gets them.
pub struct VersionsAnswer {
    pub versions: Arc<Versions>,
    /// Seconds since they were fetched (0 when fetched for this reader).
    pub age: u64,
    /// The cache generation they come from (None when not cached).
    tag: Option<(u64, bool)>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ListKey {
    List {
        ext_type: Option<ExtensionType>,
        source: Option<Source>,
        limit: usize,
        offset: usize,
    },
    Search {
        q: String,
        ext_type: Option<ExtensionType>,
        limit: usize,
    },
}

pub type ExtKey = (ExtensionType, String);
type Catalog = Arc<Vec<Extension>>;
/// What a derived answer was made from: per asked source, the catalog's
/// generation and whether it was stale.
type Tag = Vec<(u64, bool)>;

/// The outcome of the last metadata call to one backend.
#[derive(Clone, Debug, Default)]
pub struct RefreshState {
    pub last_ok: Option<SystemTime>,
    pub last_error: Option<(SystemTime, String)>,
}

impl RefreshState {
    /// The failure, when the last call failed.
    pub fn failing(&self) -> Option<(SystemTime, &str)> {
        match (&self.last_error, self.last_ok) {
            (Some((at, e)), ok) if ok.is_none_or(|ok| *at >= ok) => Some((*at, e.as_str())),
            _ => None,
        }
    }
}

pub struct Catalogue {
    core: Arc<Core>,
    enabled: Vec<Source>,
    lists: TtlLru<ListKey, (Tag, Rendered)>,
    metadata: TtlLru<ExtKey, ((u64, bool), Bytes)>,
    capacity: usize,
    ttl: Duration,
}

impl Catalogue {
    pub fn new(
        backends: Vec<Arc<dyn Backend>>,
        cache: &CacheConfig,
        artifacts: Arc<ArtifactStore>,
        metrics: Arc<Metrics>,
        base_url: String,
    ) -> Catalogue {
        let ttl = Duration::from_secs(cache.ttl_seconds);
        let stale_after = Duration::from_secs(
            cache
                .stale_after_seconds
                .unwrap_or(cache.ttl_seconds.saturating_mul(2)),
        );
        let cap = cache.capacity;
        let mk = |name: &'static str, enabled: bool| {
            let (h, m) = metrics.cache_counters(name);
            (enabled, h, m)
        };
        let (le, lh, lm) = mk("list", cache.enable_list_cache);
        let (me, mh, mm) = mk("metadata", cache.enable_metadata_cache);
        let (ve, vh, vm) = mk("versions", cache.enable_version_cache);
        // Per-backend listings count as list-cache lookups too.
        let (ch, cm) = metrics.cache_counters("list");
        // Derived entries stay valid while what they were made from does.
        let forever = Duration::MAX;
        Catalogue {
            enabled: backends.iter().map(|b| b.source()).collect(),
            core: Arc::new(Core {
                backends,
                catalogs: SwrCache::new(Source::ALL.len(), ttl, stale_after, le, ch, cm),
                versions: SwrCache::new(cap, ttl, stale_after, ve, vh, vm),
                catalog_flights: SingleFlight::default(),
                version_flights: SingleFlight::default(),
                patches: Mutex::new(HashMap::new()),
                status: Mutex::new(BTreeMap::new()),
                artifacts,
                metrics,
                base_url: base_url.trim_end_matches('/').to_string(),
                dirty: tokio::sync::Notify::new(),
                stale_after,
            }),
            lists: TtlLru::new(cap, forever, le, lh, lm),
            metadata: TtlLru::new(cap, forever, me, mh, mm),
            capacity: cap,
            ttl,
        }
    }

    pub(crate) fn core(&self) -> &Arc<Core> {
        &self.core
    }

    pub fn enabled_sources(&self) -> &[Source] {
        &self.enabled
    }

    pub fn backends(&self) -> &[Arc<dyn Backend>] {
        &self.core.backends
    }

    pub fn artifacts(&self) -> &Arc<ArtifactStore> {
        &self.core.artifacts
    }

    /// This daemon's download URL of one version.
    pub fn download_url_of(&self, ext_type: ExtensionType, name: &str, version: &str) -> String {
        format!(
            "{}/api/v1/extensions/{ext_type}/{name}/{version}",
            self.core.base_url
        )
    }

    /// Age after which an answer whose refreshes fail is marked stale.
    pub fn stale_after(&self) -> Duration {
        self.core.stale_after
    }

    /// The outcome of the last metadata call to each backend.
    pub fn refresh_states(&self) -> BTreeMap<Source, RefreshState> {
        self.core.status.lock().clone()
    }

    /// Starts a background refresh of every backend listing that is due
    /// (those read from the persisted catalogue are).
    pub fn warm_up(&self) {
        for b in &self.core.backends {
            if let Some(hit) = self.core.catalogs.peek(&b.source()) {
                if hit.refresh {
                    self.core.refresh_catalog_bg(b.clone());
                }
            }
        }
    }
}

impl Catalogue {
    pub fn cache_stats(&self) -> CacheStats {
        let list_entries = self.lists.len() + self.core.catalogs.len();
        let metadata_entries = self.metadata.len();
        let version_entries = self.core.versions.len();
        let caches = BTreeMap::from([
            (
                "list".to_string(),
                self.lists.tally().counters(list_entries),
            ),
            (
                "metadata".to_string(),
                self.metadata.tally().counters(metadata_entries),
            ),
            (
                "versions".to_string(),
                self.core.versions.tally().counters(version_entries),
            ),
        ]);
        CacheStats {
            list_entries,
            metadata_entries,
            version_entries,
            total_entries: list_entries + metadata_entries + version_entries,
            capacity: self.capacity as u64,
            ttl_seconds: self.ttl.as_secs(),
            caches,
            artifacts: self.core.artifacts.stats(),
        }
    }

    /// Drops the listing caches so the next answer asks the backends again
    /// (`ext discover --refresh`): all of them, or with `ext_type` the
    /// entries about that type (the per-backend listings hold every type,
    /// so they go in both cases).
    pub fn refresh(&self, ext_type: Option<ExtensionType>) {
        let Some(t) = ext_type else {
            return self.clear_metadata();
        };
        self.core.catalogs.clear();
        self.lists.remove_where(|k| match k {
            ListKey::List { ext_type, .. } | ListKey::Search { ext_type, .. } => {
                ext_type.is_none_or(|x| x == t)
            }
        });
        self.metadata.remove_where(|k| k.0 == t);
        self.core.versions.remove_where(|k| k.0 == t);
        self.core.dirty.notify_one();
    }

    /// Push invalidation: fetches the versions of one extension from every
    /// backend now and replaces what the caches hold for it (its versions,
    /// and its record in each backend's listing), leaving everything else
    /// alone. Returns how many versions it has now.
    pub async fn invalidate(&self, ext_type: ExtensionType, name: &str) -> Result<usize, Error> {
        self.core.invalidate((ext_type, name.to_string())).await
    }

    /// What the per-backend listings hold right now (expired entries too),
    /// without asking any backend, and the sources that have none cached.
    pub fn peek_catalogs(&self) -> (Vec<Extension>, Vec<Source>) {
        let mut out = Vec::new();
        let mut missing = Vec::new();
        for s in &self.enabled {
            match self.core.catalogs.value(s) {
                Some(c) => out.extend(c.iter().cloned()),
                None => missing.push(*s),
            }
        }
        (out, missing)
    }

    /// The merged versions cached for one extension, without asking any
    /// backend (expired entries too).
    pub fn peek_versions(&self, ext_type: ExtensionType, name: &str) -> Option<Vec<String>> {
        self.core
            .versions
            .value(&(ext_type, name.to_string()))
            .map(|v| v.entries.iter().map(|e| e.record.version.clone()).collect())
    }

    /// Drops every metadata cache entry (the artifact cache is untouched).
    pub fn clear_metadata(&self) {
        self.lists.clear();
        self.core.catalogs.clear();
        self.metadata.clear();
        self.core.versions.clear();
        self.core.dirty.notify_one();
    }
}

fn to_json<T: serde::Serialize + ?Sized>(v: &T) -> Result<Bytes, Error> {
    serde_json::to_vec(v)
        .map(Bytes::from)
        .map_err(|e| Error::new(ErrorKind::InternalError, format!("serializing: {e}")))
}

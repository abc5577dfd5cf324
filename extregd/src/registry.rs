//! The registry service: asks the backends, merges their answers, caches
//! them (pre-serialized, so a cache hit costs a clone of `Bytes`), and hands
//! out verified artifacts. Handlers in [`crate::api`] only parse input, call
//! this, and map errors.
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
//! from, so a refresh or a pushed invalidation ([`Registry::invalidate`])
//! makes them be derived again without any backend call. The persisted
//! catalogue ([`crate::persist`]) fills the caches at start.

use crate::artifacts::{ArtifactStore, CachedArtifact, Fetched};
use crate::backend::{newest, Backend, BackendError, VersionEntry};
use crate::cache::{SingleFlight, SwrCache, SwrHit, TtlLru};
use crate::config::CacheConfig;
use crate::error::Error;
use crate::metrics::Metrics;
use bytes::Bytes;
use extreg_shared::{
    parse_version, CacheCounters, CacheStats, Constraint, ErrorKind, Extension, ExtensionType,
    ExtensionVersion, Source,
};
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

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

/// Pushed records by source and extension, with when they were fetched
/// (None: the extension is gone from that source).
type Patches = HashMap<(Source, ExtKey), (Instant, Option<Extension>)>;

/// Patches older than the newest stored listing are dropped; above this
/// many the oldest go.
const MAX_PATCHES: usize = 4096;

/// What background refreshes need: the backends and the caches of what
/// they answered.
pub(crate) struct Core {
    pub(crate) backends: Vec<Arc<dyn Backend>>,
    pub(crate) catalogs: SwrCache<Source, Catalog>,
    pub(crate) versions: SwrCache<ExtKey, Arc<Versions>>,
    catalog_flights: SingleFlight<Source, Result<Catalog, BackendError>>,
    version_flights: SingleFlight<ExtKey, Result<Arc<Versions>, Error>>,
    /// Pushed changes of single extensions, by source, with when they were
    /// fetched: re-applied to a listing that was fetched before them.
    patches: Mutex<Patches>,
    status: Mutex<BTreeMap<Source, RefreshState>>,
    artifacts: Arc<ArtifactStore>,
    metrics: Arc<Metrics>,
    base_url: String,
    /// Woken whenever cached metadata changed (the persister listens).
    pub(crate) dirty: tokio::sync::Notify,
    pub(crate) stale_after: Duration,
}

pub struct Registry {
    core: Arc<Core>,
    enabled: Vec<Source>,
    lists: TtlLru<ListKey, (Tag, Rendered)>,
    metadata: TtlLru<ExtKey, ((u64, bool), Bytes)>,
    capacity: usize,
    ttl: Duration,
}

impl Registry {
    pub fn new(
        backends: Vec<Arc<dyn Backend>>,
        cache: &CacheConfig,
        artifacts: Arc<ArtifactStore>,
        metrics: Arc<Metrics>,
        base_url: String,
    ) -> Registry {
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
        Registry {
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

    /// The merged catalog of the backends matching `source`, sorted by type
    /// then name. `complete` is false when a backend failed but another
    /// answered; when every asked backend failed this is an error.
    async fn catalog(&self, source: Option<Source>) -> Result<CatalogView, Error> {
        self.core.catalog(source).await
    }

    /// Extensions matching the filters, sorted by type then name, and
    /// whether every backend answered.
    pub async fn list_records(
        &self,
        ext_type: Option<ExtensionType>,
        source: Option<Source>,
    ) -> Result<(Vec<Extension>, bool), Error> {
        let view = self.catalog(source).await?;
        let complete = view.complete;
        let out = view
            .items
            .into_iter()
            .filter(|e| ext_type.is_none_or(|t| e.ext_type == t))
            .collect();
        Ok((out, complete))
    }

    /// `GET /extensions`.
    pub async fn list(
        &self,
        ext_type: Option<ExtensionType>,
        source: Option<Source>,
        limit: usize,
        offset: usize,
    ) -> Result<Rendered, Error> {
        let key = ListKey::List {
            ext_type,
            source,
            limit,
            offset,
        };
        if let Some(r) = self.cached_list(&key, source) {
            return Ok(r);
        }
        let view = self.catalog(source).await?;
        let matching: Vec<&Extension> = view
            .items
            .iter()
            .filter(|e| ext_type.is_none_or(|t| e.ext_type == t))
            .collect();
        let total = matching.len();
        let page: Vec<&&Extension> = matching.iter().skip(offset).take(limit).collect();
        let r = Rendered {
            body: to_json(&page)?,
            total,
            age: view.age,
        };
        if view.complete {
            self.lists.insert(key, (view.tag, r.clone()));
        }
        Ok(r)
    }

    /// Case-insensitive substring match on name, description and tags.
    /// Ranked: exact name, name prefix, name substring, then description or
    /// tag matches; ties by type then name. Returns the first `limit`, the
    /// total, and whether every backend answered.
    pub async fn search_records(
        &self,
        q: &str,
        ext_type: Option<ExtensionType>,
        source: Option<Source>,
        limit: usize,
    ) -> Result<(Vec<Extension>, usize, bool), Error> {
        let (page, total, view) = self.search_view(q, ext_type, source, limit).await?;
        Ok((page, total, view.complete))
    }

    async fn search_view(
        &self,
        q: &str,
        ext_type: Option<ExtensionType>,
        source: Option<Source>,
        limit: usize,
    ) -> Result<(Vec<Extension>, usize, CatalogView), Error> {
        let needle = q.to_lowercase();
        let mut view = self.catalog(source).await?;
        let all = std::mem::take(&mut view.items);
        let mut hits: Vec<(u8, Extension)> = all
            .into_iter()
            .filter(|e| ext_type.is_none_or(|t| e.ext_type == t))
            .filter_map(|e| {
                let name = e.name.to_lowercase();
                let rank = if name == needle {
                    0
                } else if name.starts_with(&needle) {
                    1
                } else if name.contains(&needle) {
                    2
                } else if e.description.to_lowercase().contains(&needle)
                    || e.tags.iter().any(|t| t.to_lowercase().contains(&needle))
                {
                    3
                } else {
                    return None;
                };
                Some((rank, e))
            })
            .collect();
        hits.sort_by(|a, b| (a.0, a.1.ext_type, &a.1.name).cmp(&(b.0, b.1.ext_type, &b.1.name)));
        let total = hits.len();
        let page = hits.into_iter().take(limit).map(|(_, e)| e).collect();
        Ok((page, total, view))
    }

    /// `GET /extensions/search`.
    pub async fn search(
        &self,
        q: &str,
        ext_type: Option<ExtensionType>,
        limit: usize,
    ) -> Result<Rendered, Error> {
        let key = ListKey::Search {
            q: q.to_lowercase(),
            ext_type,
            limit,
        };
        if let Some(r) = self.cached_list(&key, None) {
            return Ok(r);
        }
        let (page, total, view) = self.search_view(q, ext_type, None, limit).await?;
        let r = Rendered {
            body: to_json(&page)?,
            total,
            age: view.age,
        };
        if view.complete {
            self.lists.insert(key, (view.tag, r.clone()));
        }
        Ok(r)
    }

    /// A cached list or search answer, when the listings it was made from
    /// are still the cached ones (a due listing starts its refresh here).
    fn cached_list(&self, key: &ListKey, source: Option<Source>) -> Option<Rendered> {
        let (tag, age) = match self.core.catalog_tag(source) {
            Some(t) => t,
            None => {
                // Some listing is not cached: a miss.
                self.lists.get_if(key, |_| false);
                return None;
            }
        };
        self.lists
            .get_if(key, |(t, _)| *t == tag)
            .map(|(_, r)| Rendered { age, ..r })
    }

    /// The type of the extension called `name`, for callers that left it
    /// out: an error when no type or several types hold that name.
    pub async fn resolve_type(&self, name: &str) -> Result<ExtensionType, Error> {
        let view = self.catalog(None).await?;
        let types: Vec<ExtensionType> = view
            .items
            .iter()
            .filter(|e| e.name == name)
            .map(|e| e.ext_type)
            .collect();
        match types.as_slice() {
            [t] => Ok(*t),
            [] => Err(Error::not_found(format!("no extension named '{name}'"))),
            many => Err(Error::invalid_request(format!(
                "'{name}' exists as {}; say which with --type",
                many.iter()
                    .map(|t| t.as_str())
                    .collect::<Vec<_>>()
                    .join(" and ")
            ))),
        }
    }

    /// The highest version satisfying `constraint` (pre-releases only when
    /// named or `allow_pre`); 404 with the available versions otherwise.
    pub async fn resolve(
        &self,
        ext_type: ExtensionType,
        name: &str,
        constraint: &Constraint,
        allow_pre: bool,
    ) -> Result<VersionEntry, Error> {
        self.resolve_from(ext_type, name, constraint, allow_pre, None)
            .await
    }

    /// [`Self::resolve`] among the versions of one source only, when given
    /// (`--source`): a version held by several backends can then be taken
    /// from a lower-priority one.
    pub async fn resolve_from(
        &self,
        ext_type: ExtensionType,
        name: &str,
        constraint: &Constraint,
        allow_pre: bool,
        source: Option<Source>,
    ) -> Result<VersionEntry, Error> {
        let versions = match source {
            None => self.versions(ext_type, name).await?,
            Some(s) => self.source_versions(ext_type, name, s).await?,
        };
        constraint
            .resolve(
                &versions.entries,
                |e| (&e.semver, e.record.prerelease),
                allow_pre,
            )
            .cloned()
            .ok_or_else(|| {
                not_found_version(ext_type, name, &constraint.to_string(), &versions).with_message(
                    format!(
                        "no version of {ext_type}/{name} satisfies '{constraint}'{}",
                        if allow_pre {
                            ""
                        } else {
                            " (pre-releases need --pre or a constraint that names one)"
                        }
                    ),
                )
            })
    }

    /// The record of one version (newest stable when `version` is None).
    pub async fn version_record(
        &self,
        ext_type: ExtensionType,
        name: &str,
        version: Option<&str>,
    ) -> Result<Extension, Error> {
        let versions = self.versions(ext_type, name).await?;
        let entry = match version {
            None => newest(&versions.entries),
            Some(v) => {
                let wanted = parse_version(v)?;
                versions.entries.iter().find(|e| e.semver == wanted)
            }
        };
        entry
            .map(|e| e.record.clone())
            .ok_or_else(|| not_found_version(ext_type, name, version.unwrap_or("?"), &versions))
    }

    /// The merged versions of one extension; 404 when no backend holds it.
    pub async fn versions(
        &self,
        ext_type: ExtensionType,
        name: &str,
    ) -> Result<Arc<Versions>, Error> {
        Ok(self.versions_answer(ext_type, name).await?.versions)
    }

    /// [`Self::versions`] with their age. Cached versions are answered at
    /// once, whatever their age; a due entry starts one background refresh.
    pub async fn versions_answer(
        &self,
        ext_type: ExtensionType,
        name: &str,
    ) -> Result<VersionsAnswer, Error> {
        let key = (ext_type, name.to_string());
        if let Some(hit) = self.core.versions.get(&key) {
            if hit.refresh {
                self.core.refresh_versions_bg(key.clone());
            }
            return self.core.answer_of(hit);
        }
        let started = Instant::now();
        let res = self.core.load_versions(key.clone()).await?;
        let mut tag = None;
        if res.complete && self.core.versions.insert(key.clone(), res.clone(), started) {
            self.core.dirty.notify_one();
            tag = self
                .core
                .versions
                .peek(&key)
                .map(|h| (h.generation, h.stale));
        }
        Ok(VersionsAnswer {
            versions: res,
            age: 0,
            tag,
        })
    }

    /// `GET /extensions/{type}/{name}`: the record of the newest version.
    pub async fn get(&self, ext_type: ExtensionType, name: &str) -> Result<Bytes, Error> {
        Ok(self.get_aged(ext_type, name).await?.0)
    }

    /// [`Self::get`] and the age in seconds of the data behind it.
    pub async fn get_aged(
        &self,
        ext_type: ExtensionType,
        name: &str,
    ) -> Result<(Bytes, u64), Error> {
        let key = (ext_type, name.to_string());
        let answer = self.versions_answer(ext_type, name).await?;
        if let Some(tag) = answer.tag {
            if let Some((_, b)) = self.metadata.get_if(&key, |(t, _)| *t == tag) {
                return Ok((b, answer.age));
            }
        } else {
            self.metadata.get_if(&key, |_| false);
        }
        let best = newest(&answer.versions.entries)
            .ok_or_else(|| Error::not_found(format!("Extension {ext_type}/{name} not found")))?;
        let body = to_json(&best.record)?;
        if let Some(tag) = answer.tag {
            self.metadata.insert(key, (tag, body.clone()));
        }
        Ok((body, answer.age))
    }

    /// The versions of one extension in one backend only (not cached: an
    /// explicit `--source` is rare and must see that backend's own list).
    pub async fn source_versions(
        &self,
        ext_type: ExtensionType,
        name: &str,
        source: Source,
    ) -> Result<Arc<Versions>, Error> {
        let backends: Vec<Arc<dyn Backend>> = self
            .core
            .backends
            .iter()
            .filter(|b| b.source() == source)
            .cloned()
            .collect();
        if backends.is_empty() {
            return Err(Error::invalid_request(format!(
                "the {source} backend is not configured"
            )));
        }
        let results = fetch_versions(&backends, &self.core, ext_type, name).await;
        merge_versions(results, &self.core, ext_type, name).map(Arc::new)
    }

    /// The backend that serves `source`.
    fn backend_for(&self, source: Source) -> Result<Arc<dyn Backend>, Error> {
        self.core
            .backends
            .iter()
            .find(|b| b.source() == source)
            .cloned()
            .ok_or_else(|| Error::internal("no backend for this version's source"))
    }

    /// One version's entry and its backend.
    async fn entry_and_backend(
        &self,
        ext_type: ExtensionType,
        name: &str,
        version: &str,
    ) -> Result<(VersionEntry, Arc<dyn Backend>), Error> {
        let wanted = parse_version(version)?;
        let versions = self.versions(ext_type, name).await?;
        let entry = versions
            .entries
            .iter()
            .find(|e| e.semver == wanted)
            .ok_or_else(|| not_found_version(ext_type, name, version, &versions))?
            .clone();
        let backend = self.backend_for(entry.record.source)?;
        Ok((entry, backend))
    }

    /// The artifact of a resolved entry, from its own backend; `force`
    /// fetches again (keeping the cached copy until the new one verifies).
    pub async fn artifact_of(
        &self,
        entry: &VersionEntry,
        force: bool,
    ) -> Result<CachedArtifact, Error> {
        let backend = self.backend_for(entry.record.source)?;
        if force {
            self.core.artifacts.refetch(entry, backend).await
        } else {
            self.core.artifacts.get_or_fetch(entry, backend).await
        }
    }

    /// One version's entry (its record and revision), without touching the
    /// artifact: what `HEAD` answers from when nothing is cached.
    pub async fn version_entry(
        &self,
        ext_type: ExtensionType,
        name: &str,
        version: &str,
    ) -> Result<VersionEntry, Error> {
        Ok(self.entry_and_backend(ext_type, name, version).await?.0)
    }

    /// One version's artifact, ready or still arriving (see
    /// [`ArtifactStore::fetch_or_join`]).
    pub async fn open_artifact(
        &self,
        ext_type: ExtensionType,
        name: &str,
        version: &str,
    ) -> Result<(VersionEntry, Fetched), Error> {
        let (entry, backend) = self.entry_and_backend(ext_type, name, version).await?;
        let f = self.core.artifacts.fetch_or_join(&entry, backend)?;
        Ok((entry, f))
    }

    pub fn cache_stats(&self) -> CacheStats {
        let counters = |enabled: bool, entries: u64, hits: u64, misses: u64| CacheCounters {
            enabled,
            entries,
            hits,
            misses,
            hit_ratio: crate::artifacts::ratio(hits, misses),
        };
        let list_entries = self.lists.len() + self.core.catalogs.len();
        let metadata_entries = self.metadata.len();
        let version_entries = self.core.versions.len();
        let mut caches = BTreeMap::new();
        caches.insert(
            "list".to_string(),
            counters(
                self.lists.enabled(),
                list_entries,
                self.lists.hits(),
                self.lists.misses(),
            ),
        );
        caches.insert(
            "metadata".to_string(),
            counters(
                self.metadata.enabled(),
                metadata_entries,
                self.metadata.hits(),
                self.metadata.misses(),
            ),
        );
        caches.insert(
            "versions".to_string(),
            counters(
                self.core.versions.enabled(),
                version_entries,
                self.core.versions.hits(),
                self.core.versions.misses(),
            ),
        );
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

    /// `ext discover`: every extension (of `ext_type`) across all backends,
    /// its newest version and the backends holding it.
    pub async fn discover(
        &self,
        ext_type: Option<ExtensionType>,
    ) -> Result<Vec<extreg_shared::protocol::Discovered>, Error> {
        let (merged, _) = self.list_records(ext_type, None).await?;
        // Served from the per-backend caches list_records just filled.
        let mut holders: HashMap<ExtKey, Vec<Source>> = HashMap::new();
        for b in &self.core.backends {
            let records = match self.core.backend_catalog(b).await {
                Ok(c) => c.value.as_ref().clone(),
                Err(_) => self.core.artifacts.cached_catalog(&b.identity()),
            };
            for e in records {
                let v = holders.entry((e.ext_type, e.name.clone())).or_default();
                if !v.contains(&b.source()) {
                    v.push(b.source());
                }
            }
        }
        Ok(merged
            .into_iter()
            .map(|e| extreg_shared::protocol::Discovered {
                sources: holders
                    .remove(&(e.ext_type, e.name.clone()))
                    .unwrap_or_else(|| vec![e.source]),
                name: e.name,
                ext_type: e.ext_type,
                latest: e.version,
                description: e.description,
                source: e.source,
                stale: e.stale,
            })
            .collect())
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

fn not_found_version(
    ext_type: ExtensionType,
    name: &str,
    version: &str,
    versions: &Versions,
) -> Error {
    Error::not_found(format!(
        "Extension {ext_type}/{name} version {version} not found"
    ))
    .with_details(format!(
        "available: {}",
        versions
            .entries
            .iter()
            .map(|e| e.record.version.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

/// `a` should replace `b` in a merged listing: newer version, else keep the
/// earlier (higher-priority) backend's record.
fn is_newer(a: &Extension, b: &Extension) -> bool {
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
type SourceResults = Vec<(Source, String, Result<Vec<VersionEntry>, BackendError>)>;

/// Every backend's versions of one extension, in priority order.
async fn fetch_versions(
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
fn merge_versions(
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
        return Err(Error::not_found(format!(
            "Extension {ext_type}/{name} not found"
        )));
    }
    for (s, e) in &failures {
        tracing::warn!(backend = %s, error = %e, "backend failed while listing versions");
    }
    let mut entries: Vec<VersionEntry> = merged.into_values().collect();
    entries.sort_by(|a, b| b.semver.cmp(&a.semver));
    Versions::build(entries, failures.is_empty())
}

/// A merged catalog and what it was made from.
struct CatalogView {
    items: Vec<Extension>,
    complete: bool,
    tag: Tag,
    /// Seconds since the oldest listing in it was fetched.
    age: u64,
}

/// `list` with `rec` standing for `key` (or `key` gone when None), sorted
/// by type then name.
fn patched(list: &[Extension], key: &ExtKey, rec: Option<&Extension>) -> Vec<Extension> {
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

impl Core {
    fn download_url(&self, e: &Extension) -> String {
        format!(
            "{}/api/v1/extensions/{}/{}/{}",
            self.base_url, e.ext_type, e.name, e.version
        )
    }

    /// Records the outcome of a metadata call to a backend (for `/health`
    /// and `backend_refresh_failing`). Not found is an answer, not a failure.
    fn note<T>(&self, source: Source, r: &Result<T, BackendError>) {
        let now = SystemTime::now();
        let mut st = self.status.lock();
        let s = st.entry(source).or_default();
        match r {
            Ok(_) | Err(BackendError::NotFound(_)) => s.last_ok = Some(now),
            Err(e) => s.last_error = Some((now, e.to_string())),
        }
        let failing = s.failing().is_some();
        drop(st);
        self.metrics
            .backend_refresh_failing
            .with_label_values(&[source.as_str()])
            .set(failing as i64);
    }

    fn refreshed(&self, cache: &str, ok: bool) {
        self.metrics
            .cache_refreshes
            .with_label_values(&[cache, if ok { "ok" } else { "error" }])
            .inc();
    }

    /// One backend's listing from the backend, coalesced.
    async fn fetch_catalog(&self, b: &Arc<dyn Backend>) -> Result<Catalog, BackendError> {
        let source = b.source();
        let b2 = b.clone();
        let metrics = self.metrics.clone();
        let r = self
            .catalog_flights
            .run(source, move || async move {
                let t = Instant::now();
                let r = b2.list().await;
                metrics.backend_timed(source.as_str(), "list", r.is_ok(), t);
                let skipped = b2.skipped().len() as u64;
                if r.is_ok() && skipped > 0 {
                    metrics
                        .skipped_repositories
                        .with_label_values(&[source.as_str()])
                        .inc_by(skipped);
                }
                r.map(Arc::new)
            })
            .await
            .unwrap_or_else(|e| Err(BackendError::Io(e.to_string())));
        self.note(source, &r);
        r
    }

    /// Stores a listing fetched by a fetch that started at `started`,
    /// re-applying the pushed changes that came after that.
    fn store_catalog(&self, source: Source, list: Catalog, started: Instant) -> Catalog {
        let list = {
            let mut patches = self.patches.lock();
            patches.retain(|(s, _), (at, _)| *s != source || *at > started);
            let mut list = list;
            for ((s, key), (_, rec)) in patches.iter() {
                if *s == source {
                    list = Arc::new(patched(&list, key, rec.as_ref()));
                }
            }
            list
        };
        if self.catalogs.insert(source, list.clone(), started) {
            self.dirty.notify_one();
        }
        list
    }

    /// One backend's listing: cached (whatever its age; a due one starts a
    /// background refresh), else fetched now.
    async fn backend_catalog(
        self: &Arc<Self>,
        b: &Arc<dyn Backend>,
    ) -> Result<SwrHit<Catalog>, BackendError> {
        let source = b.source();
        if let Some(hit) = self.catalogs.get(&source) {
            if hit.refresh {
                self.refresh_catalog_bg(b.clone());
            }
            return Ok(hit);
        }
        let started = Instant::now();
        let list = self.fetch_catalog(b).await?;
        let list = self.store_catalog(source, list, started);
        Ok(self.catalogs.peek(&source).unwrap_or(SwrHit {
            value: list,
            age: Duration::ZERO,
            stale: false,
            refresh: false,
            generation: 0,
            fetched: started,
        }))
    }

    /// Refreshes one backend's listing in the background. A failure keeps
    /// the cached listing (the next attempt is due after the retry delay).
    pub(crate) fn refresh_catalog_bg(self: &Arc<Self>, b: Arc<dyn Backend>) {
        let core = self.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            match core.fetch_catalog(&b).await {
                Ok(list) => {
                    core.store_catalog(b.source(), list, started);
                    core.refreshed("list", true);
                }
                Err(e) => {
                    tracing::warn!(backend = %b.source(), error = %e, "refreshing the listing failed; serving the cached one");
                    core.catalogs.refresh_failed(&b.source());
                    core.refreshed("list", false);
                }
            }
        });
    }

    /// The generations of the listings `source` asks for and the age of the
    /// oldest, when all are cached; due ones start their refresh.
    fn catalog_tag(self: &Arc<Self>, source: Option<Source>) -> Option<(Tag, u64)> {
        let mut tag = Vec::with_capacity(self.backends.len());
        let mut age = Duration::ZERO;
        for b in &self.backends {
            if source.is_some_and(|s| s != b.source()) {
                continue;
            }
            let hit = self.catalogs.peek(&b.source())?;
            if hit.refresh {
                self.refresh_catalog_bg(b.clone());
            }
            if hit.stale {
                self.metrics
                    .cache_stale_served
                    .with_label_values(&["list"])
                    .inc();
            }
            age = age.max(hit.age);
            tag.push((hit.generation, hit.stale));
        }
        Some((tag, age.as_secs()))
    }

    async fn catalog(self: &Arc<Self>, source: Option<Source>) -> Result<CatalogView, Error> {
        let asked: Vec<&Arc<dyn Backend>> = self
            .backends
            .iter()
            .filter(|b| source.is_none_or(|s| b.source() == s))
            .collect();
        if asked.is_empty() {
            return Ok(CatalogView {
                items: Vec::new(),
                complete: true,
                tag: Vec::new(),
                age: 0,
            });
        }
        let results =
            futures::future::join_all(asked.iter().map(|b| self.backend_catalog(b))).await;
        let mut merged: BTreeMap<(ExtensionType, String), Extension> = BTreeMap::new();
        let mut failures = Vec::new();
        let mut tag = Vec::with_capacity(asked.len());
        let mut age = Duration::ZERO;
        for (b, r) in asked.iter().zip(results) {
            match r {
                Ok(hit) => {
                    tag.push((hit.generation, hit.stale));
                    age = age.max(hit.age);
                    for e in hit.value.iter() {
                        let key = (e.ext_type, e.name.clone());
                        let replace = match merged.get(&key) {
                            None => true,
                            Some(cur) => is_newer(e, cur),
                        };
                        if replace {
                            let mut e = e.clone();
                            e.download_url = Some(self.download_url(&e));
                            e.stale |= hit.stale;
                            merged.insert(key, e);
                        }
                    }
                }
                Err(e) => {
                    // Offline: what the artifact cache holds of this source.
                    for mut rec in self.artifacts.cached_catalog(&b.identity()) {
                        let key = (rec.ext_type, rec.name.clone());
                        if merged.get(&key).is_none_or(|cur| is_newer(&rec, cur)) {
                            rec.download_url = Some(self.download_url(&rec));
                            merged.insert(key, rec);
                        }
                    }
                    failures.push((b.source(), e))
                }
            }
        }
        if failures.len() == asked.len() && merged.is_empty() {
            let (s, e) = &failures[0];
            return Err(Error::backend(*s, e));
        }
        for (s, e) in &failures {
            tracing::warn!(backend = %s, error = %e, "backend failed while listing; answering with the others");
        }
        let out: Vec<Extension> = merged.into_values().collect();
        if source.is_none() && failures.is_empty() {
            for t in ExtensionType::ALL {
                let n = out.iter().filter(|e| e.ext_type == t).count();
                self.metrics
                    .extensions
                    .with_label_values(&[t.as_str()])
                    .set(n as i64);
            }
        }
        Ok(CatalogView {
            items: out,
            complete: failures.is_empty(),
            tag,
            age: age.as_secs(),
        })
    }

    /// The merged versions of one extension from the backends, coalesced.
    async fn load_versions(self: &Arc<Self>, key: ExtKey) -> Result<Arc<Versions>, Error> {
        let core = self.clone();
        let (t, name) = key.clone();
        self.version_flights
            .run(key, move || async move {
                let results = fetch_versions(&core.backends, &core, t, &name).await;
                merge_versions(results, &core, t, &name).map(Arc::new)
            })
            .await
            .map_err(|e| Error::internal(e.to_string()))?
    }

    /// Refreshes one extension's versions in the background. A failed or
    /// partial refresh keeps the cached versions; an extension that is
    /// gone everywhere is dropped.
    fn refresh_versions_bg(self: &Arc<Self>, key: ExtKey) {
        let core = self.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            match core.load_versions(key.clone()).await {
                Ok(v) if v.complete => {
                    core.versions.insert(key, v, started);
                    core.dirty.notify_one();
                    core.refreshed("versions", true);
                }
                Err(e) if e.kind == ErrorKind::NotFound => {
                    core.versions.remove(&key);
                    core.dirty.notify_one();
                    core.refreshed("versions", true);
                }
                Ok(_) | Err(_) => {
                    core.versions.refresh_failed(&key);
                    tracing::warn!(ext = %format!("{}/{}", key.0, key.1), "refreshing versions failed; serving the cached ones");
                    core.refreshed("versions", false);
                }
            }
        });
    }

    /// A cached versions entry as a reader gets it (marked when stale).
    fn answer_of(&self, hit: SwrHit<Arc<Versions>>) -> Result<VersionsAnswer, Error> {
        let versions = if hit.stale {
            self.metrics
                .cache_stale_served
                .with_label_values(&["versions"])
                .inc();
            Arc::new(hit.value.marked_stale()?)
        } else {
            hit.value
        };
        Ok(VersionsAnswer {
            versions,
            age: hit.age.as_secs(),
            tag: Some((hit.generation, hit.stale)),
        })
    }

    /// See [`Registry::invalidate`].
    async fn invalidate(self: &Arc<Self>, key: ExtKey) -> Result<usize, Error> {
        let started = Instant::now();
        let results = fetch_versions(&self.backends, self, key.0, &key.1).await;
        // Each backend's listing gets this extension's newest record (or
        // loses it); a backend that failed keeps what it had.
        for (source, _, r) in &results {
            let rec = match r {
                Ok(list) => newest(list).map(|e| e.record.clone()),
                Err(BackendError::NotFound(_)) => None,
                Err(_) => continue,
            };
            // Concurrent invalidations of one extension land in the order
            // they started: an older one finishing last changes nothing.
            let mut patches = self.patches.lock();
            if patches
                .get(&(*source, key.clone()))
                .is_some_and(|(at, _)| *at > started)
            {
                continue;
            }
            if patches.len() >= MAX_PATCHES {
                patches.clear();
            }
            patches.insert((*source, key.clone()), (started, rec.clone()));
            self.catalogs
                .update(source, |list| Arc::new(patched(list, &key, rec.as_ref())));
            drop(patches);
        }
        let merged = merge_versions(results, self, key.0, &key.1);
        let n = match merged {
            Ok(v) => {
                let n = v.entries.len();
                if v.complete {
                    self.versions.insert(key, Arc::new(v), started);
                }
                n
            }
            Err(e) if e.kind == ErrorKind::NotFound => {
                self.versions.remove(&key);
                0
            }
            Err(e) => return Err(e),
        };
        self.dirty.notify_one();
        Ok(n)
    }
}

fn to_json<T: serde::Serialize + ?Sized>(v: &T) -> Result<Bytes, Error> {
    serde_json::to_vec(v)
        .map(Bytes::from)
        .map_err(|e| Error::new(ErrorKind::InternalError, format!("serializing: {e}")))
}

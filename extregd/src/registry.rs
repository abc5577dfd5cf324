//! The registry service: asks the backends, merges their answers, caches
//! them (pre-serialized, so a cache hit costs a clone of `Bytes`), and hands
//! out verified artifacts. Handlers in [`crate::api`] only parse input, call
//! this, and map errors.
//!
//! **Merging.** Backends are held in priority order (default: local, oci,
//! gitea). Lists merge by `{type}/{name}`, keeping the newest version; version
//! lists are the union, and when two backends hold the same version the one
//! earlier in the order serves it.

use crate::artifacts::{ArtifactStore, CachedArtifact, Fetched};
use crate::backend::{newest, Backend, BackendError, VersionEntry};
use crate::cache::{SingleFlight, TtlLru};
use crate::config::CacheConfig;
use crate::error::ApiError;
use crate::metrics::Metrics;
use bytes::Bytes;
use extreg_shared::{
    parse_version, CacheCounters, CacheStats, Constraint, ErrorKind, Extension, ExtensionType,
    ExtensionVersion, Source,
};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

/// A response body serialized once, with the total count before paging.
#[derive(Clone)]
pub struct Rendered {
    pub body: Bytes,
    pub total: usize,
}

/// The merged versions of one extension, newest first.
pub struct Versions {
    pub entries: Vec<VersionEntry>,
    pub body: Bytes,
    /// False when a backend failed and the others answered; such a merge is
    /// served but not cached.
    pub complete: bool,
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

type ExtKey = (ExtensionType, String);

pub struct Registry {
    backends: Vec<Arc<dyn Backend>>,
    enabled: Vec<Source>,
    lists: TtlLru<ListKey, Rendered>,
    catalogs: TtlLru<Source, Arc<Vec<Extension>>>,
    metadata: TtlLru<ExtKey, Bytes>,
    versions: TtlLru<ExtKey, Arc<Versions>>,
    catalog_flights: SingleFlight<Source, Result<Arc<Vec<Extension>>, BackendError>>,
    version_flights: SingleFlight<ExtKey, Result<Arc<Versions>, ApiError>>,
    artifacts: Arc<ArtifactStore>,
    metrics: Arc<Metrics>,
    base_url: String,
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
        Registry {
            enabled: backends.iter().map(|b| b.source()).collect(),
            backends,
            lists: TtlLru::new(cap, ttl, le, lh, lm),
            catalogs: TtlLru::new(Source::ALL.len(), ttl, le, ch, cm),
            metadata: TtlLru::new(cap, ttl, me, mh, mm),
            versions: TtlLru::new(cap, ttl, ve, vh, vm),
            catalog_flights: SingleFlight::default(),
            version_flights: SingleFlight::default(),
            artifacts,
            metrics,
            base_url: base_url.trim_end_matches('/').to_string(),
            capacity: cap,
            ttl,
        }
    }

    pub fn enabled_sources(&self) -> &[Source] {
        &self.enabled
    }

    pub fn backends(&self) -> &[Arc<dyn Backend>] {
        &self.backends
    }

    pub fn artifacts(&self) -> &Arc<ArtifactStore> {
        &self.artifacts
    }

    fn download_url(&self, e: &Extension) -> String {
        format!(
            "{}/api/v1/extensions/{}/{}/{}",
            self.base_url, e.ext_type, e.name, e.version
        )
    }

    /// One backend's listing, cached and coalesced.
    async fn backend_catalog(
        &self,
        b: &Arc<dyn Backend>,
    ) -> Result<Arc<Vec<Extension>>, BackendError> {
        let source = b.source();
        if let Some(c) = self.catalogs.get(&source) {
            return Ok(c);
        }
        let b2 = b.clone();
        let metrics = self.metrics.clone();
        let res = self
            .catalog_flights
            .run(source, move || async move {
                let t = std::time::Instant::now();
                let r = b2.list().await;
                metrics.backend_timed(source.as_str(), "list", r.is_ok(), t);
                r.map(Arc::new)
            })
            .await;
        if let Ok(c) = &res {
            self.catalogs.insert(source, c.clone());
        }
        res
    }

    /// The merged catalog of the backends matching `source`, sorted by type
    /// then name. `complete` is false when a backend failed but another
    /// answered; when every asked backend failed this is an error.
    async fn catalog(&self, source: Option<Source>) -> Result<(Vec<Extension>, bool), ApiError> {
        let asked: Vec<&Arc<dyn Backend>> = self
            .backends
            .iter()
            .filter(|b| source.is_none_or(|s| b.source() == s))
            .collect();
        if asked.is_empty() {
            return Ok((Vec::new(), true));
        }
        let results =
            futures::future::join_all(asked.iter().map(|b| self.backend_catalog(b))).await;
        let mut merged: BTreeMap<(ExtensionType, String), Extension> = BTreeMap::new();
        let mut failures = Vec::new();
        for (b, r) in asked.iter().zip(results) {
            match r {
                Ok(list) => {
                    for e in list.iter() {
                        let key = (e.ext_type, e.name.clone());
                        let replace = match merged.get(&key) {
                            None => true,
                            Some(cur) => is_newer(e, cur),
                        };
                        if replace {
                            let mut e = e.clone();
                            e.download_url = Some(self.download_url(&e));
                            merged.insert(key, e);
                        }
                    }
                }
                Err(e) => {
                    // Offline: what the artifact cache holds of this source.
                    for mut rec in self.artifacts.cached_catalog(b.source()) {
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
            return Err(ApiError::backend(*s, e));
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
        Ok((out, failures.is_empty()))
    }

    /// Extensions matching the filters, sorted by type then name, and
    /// whether every backend answered.
    pub async fn list_records(
        &self,
        ext_type: Option<ExtensionType>,
        source: Option<Source>,
    ) -> Result<(Vec<Extension>, bool), ApiError> {
        let (all, complete) = self.catalog(source).await?;
        let out = all
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
    ) -> Result<Rendered, ApiError> {
        let key = ListKey::List {
            ext_type,
            source,
            limit,
            offset,
        };
        if let Some(r) = self.lists.get(&key) {
            return Ok(r);
        }
        let (matching, complete) = self.list_records(ext_type, source).await?;
        let total = matching.len();
        let page: Vec<&Extension> = matching.iter().skip(offset).take(limit).collect();
        let r = Rendered {
            body: to_json(&page)?,
            total,
        };
        if complete {
            self.lists.insert(key, r.clone());
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
    ) -> Result<(Vec<Extension>, usize, bool), ApiError> {
        let needle = q.to_lowercase();
        let (all, complete) = self.catalog(source).await?;
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
        Ok((page, total, complete))
    }

    /// `GET /extensions/search`.
    pub async fn search(
        &self,
        q: &str,
        ext_type: Option<ExtensionType>,
        limit: usize,
    ) -> Result<Rendered, ApiError> {
        let key = ListKey::Search {
            q: q.to_lowercase(),
            ext_type,
            limit,
        };
        if let Some(r) = self.lists.get(&key) {
            return Ok(r);
        }
        let (page, total, complete) = self.search_records(q, ext_type, None, limit).await?;
        let r = Rendered {
            body: to_json(&page)?,
            total,
        };
        if complete {
            self.lists.insert(key, r.clone());
        }
        Ok(r)
    }

    /// The type of the extension called `name`, for callers that left it
    /// out: an error when no type or several types hold that name.
    pub async fn resolve_type(&self, name: &str) -> Result<ExtensionType, ApiError> {
        let (all, _) = self.catalog(None).await?;
        let types: Vec<ExtensionType> = all
            .iter()
            .filter(|e| e.name == name)
            .map(|e| e.ext_type)
            .collect();
        match types.as_slice() {
            [t] => Ok(*t),
            [] => Err(ApiError::not_found(format!("no extension named '{name}'"))),
            many => Err(ApiError::invalid_request(format!(
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
    ) -> Result<VersionEntry, ApiError> {
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
    ) -> Result<VersionEntry, ApiError> {
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
    ) -> Result<Extension, ApiError> {
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
    ) -> Result<Arc<Versions>, ApiError> {
        let key = (ext_type, name.to_string());
        if let Some(v) = self.versions.get(&key) {
            return Ok(v);
        }
        let backends = self.backends.clone();
        let metrics = self.metrics.clone();
        let artifacts = self.artifacts.clone();
        let base = self.base_url.clone();
        let name = name.to_string();
        let res = self
            .version_flights
            .run(key.clone(), move || async move {
                merge_versions(&backends, &metrics, &artifacts, &base, ext_type, &name).await
            })
            .await?;
        if res.complete {
            self.versions.insert(key, res.clone());
        }
        Ok(res)
    }

    /// `GET /extensions/{type}/{name}`: the record of the newest version.
    pub async fn get(&self, ext_type: ExtensionType, name: &str) -> Result<Bytes, ApiError> {
        let key = (ext_type, name.to_string());
        if let Some(b) = self.metadata.get(&key) {
            return Ok(b);
        }
        let versions = self.versions(ext_type, name).await?;
        let best = newest(&versions.entries)
            .ok_or_else(|| ApiError::not_found(format!("Extension {ext_type}/{name} not found")))?;
        let body = to_json(&best.record)?;
        if versions.complete {
            self.metadata.insert(key, body.clone());
        }
        Ok(body)
    }

    /// The versions of one extension in one backend only (not cached: an
    /// explicit `--source` is rare and must see that backend's own list).
    async fn source_versions(
        &self,
        ext_type: ExtensionType,
        name: &str,
        source: Source,
    ) -> Result<Arc<Versions>, ApiError> {
        let backends: Vec<Arc<dyn Backend>> = self
            .backends
            .iter()
            .filter(|b| b.source() == source)
            .cloned()
            .collect();
        if backends.is_empty() {
            return Err(ApiError::invalid_request(format!(
                "the {source} backend is not configured"
            )));
        }
        merge_versions(
            &backends,
            &self.metrics,
            &self.artifacts,
            &self.base_url,
            ext_type,
            name,
        )
        .await
    }

    /// The backend that serves `source`.
    fn backend_for(&self, source: Source) -> Result<Arc<dyn Backend>, ApiError> {
        self.backends
            .iter()
            .find(|b| b.source() == source)
            .cloned()
            .ok_or_else(|| ApiError::internal("no backend for this version's source"))
    }

    /// One version's entry and its backend.
    async fn entry_and_backend(
        &self,
        ext_type: ExtensionType,
        name: &str,
        version: &str,
    ) -> Result<(VersionEntry, Arc<dyn Backend>), ApiError> {
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
    ) -> Result<CachedArtifact, ApiError> {
        let backend = self.backend_for(entry.record.source)?;
        if force {
            self.artifacts.refetch(entry, backend).await
        } else {
            self.artifacts.get_or_fetch(entry, backend).await
        }
    }

    /// One version's entry (its record and revision), without touching the
    /// artifact: what `HEAD` answers from when nothing is cached.
    pub async fn version_entry(
        &self,
        ext_type: ExtensionType,
        name: &str,
        version: &str,
    ) -> Result<VersionEntry, ApiError> {
        Ok(self.entry_and_backend(ext_type, name, version).await?.0)
    }

    /// One version's artifact, ready or still arriving (see
    /// [`ArtifactStore::fetch_or_join`]).
    pub async fn open_artifact(
        &self,
        ext_type: ExtensionType,
        name: &str,
        version: &str,
    ) -> Result<(VersionEntry, Fetched), ApiError> {
        let (entry, backend) = self.entry_and_backend(ext_type, name, version).await?;
        let f = self.artifacts.fetch_or_join(&entry, backend)?;
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
        let list_entries = self.lists.len() + self.catalogs.len();
        let metadata_entries = self.metadata.len();
        let version_entries = self.versions.len();
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
                self.versions.enabled(),
                version_entries,
                self.versions.hits(),
                self.versions.misses(),
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
            artifacts: self.artifacts.stats(),
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
        self.catalogs.clear();
        self.lists.remove_where(|k| match k {
            ListKey::List { ext_type, .. } | ListKey::Search { ext_type, .. } => {
                ext_type.is_none_or(|x| x == t)
            }
        });
        self.metadata.remove_where(|k| k.0 == t);
        self.versions.remove_where(|k| k.0 == t);
    }

    /// `ext discover`: every extension (of `ext_type`) across all backends,
    /// its newest version and the backends holding it.
    pub async fn discover(
        &self,
        ext_type: Option<ExtensionType>,
    ) -> Result<Vec<extreg_shared::protocol::Discovered>, ApiError> {
        let (merged, _) = self.list_records(ext_type, None).await?;
        // Served from the per-backend caches list_records just filled.
        let mut holders: HashMap<ExtKey, Vec<Source>> = HashMap::new();
        for b in &self.backends {
            let records = match self.backend_catalog(b).await {
                Ok(c) => c.as_ref().clone(),
                Err(_) => self.artifacts.cached_catalog(b.source()),
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
            match self.catalogs.peek(s) {
                Some(c) => out.extend(c.iter().cloned()),
                None => missing.push(*s),
            }
        }
        (out, missing)
    }

    /// The merged versions cached for one extension, without asking any
    /// backend (expired entries too).
    pub fn peek_versions(&self, ext_type: ExtensionType, name: &str) -> Option<Vec<String>> {
        self.versions
            .peek(&(ext_type, name.to_string()))
            .map(|v| v.entries.iter().map(|e| e.record.version.clone()).collect())
    }

    /// Drops every metadata cache entry (the artifact cache is untouched).
    pub fn clear_metadata(&self) {
        self.lists.clear();
        self.catalogs.clear();
        self.metadata.clear();
        self.versions.clear();
    }
}

fn not_found_version(
    ext_type: ExtensionType,
    name: &str,
    version: &str,
    versions: &Versions,
) -> ApiError {
    ApiError::not_found(format!(
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

async fn merge_versions(
    backends: &[Arc<dyn Backend>],
    metrics: &Metrics,
    artifacts: &ArtifactStore,
    base: &str,
    ext_type: ExtensionType,
    name: &str,
) -> Result<Arc<Versions>, ApiError> {
    let results = futures::future::join_all(backends.iter().map(|b| async move {
        let t = std::time::Instant::now();
        let r = b.versions(ext_type, name).await;
        metrics.backend_timed(b.source().as_str(), "versions", r.is_ok(), t);
        (b.source(), r)
    }))
    .await;
    // In priority order; a backend that failed contributes, at its own
    // place, the versions the artifact cache holds for it (offline).
    let url = |v: &str| format!("{base}/api/v1/extensions/{ext_type}/{name}/{v}");
    let mut merged: HashMap<semver::Version, VersionEntry> = HashMap::new();
    let mut failures = Vec::new();
    for (source, r) in results {
        let entries = match r {
            Ok(list) => list,
            Err(BackendError::NotFound(_)) => continue,
            Err(e) => {
                failures.push((source, e));
                artifacts.cached_versions(source, ext_type, name)
            }
        };
        for mut e in entries {
            e.record.download_url = Some(url(&e.record.version));
            merged.entry(e.semver.clone()).or_insert(e);
        }
    }
    if merged.is_empty() {
        if let Some((s, e)) = failures.first() {
            return Err(ApiError::backend(*s, e));
        }
        return Err(ApiError::not_found(format!(
            "Extension {ext_type}/{name} not found"
        )));
    }
    for (s, e) in &failures {
        tracing::warn!(backend = %s, error = %e, "backend failed while listing versions");
    }
    let mut entries: Vec<VersionEntry> = merged.into_values().collect();
    entries.sort_by(|a, b| b.semver.cmp(&a.semver));
    let records: Vec<ExtensionVersion> = entries.iter().map(|e| (&e.record).into()).collect();
    let body = to_json(&records)?;
    Ok(Arc::new(Versions {
        entries,
        body,
        complete: failures.is_empty(),
    }))
}

fn to_json<T: serde::Serialize + ?Sized>(v: &T) -> Result<Bytes, ApiError> {
    serde_json::to_vec(v)
        .map(Bytes::from)
        .map_err(|e| ApiError::new(ErrorKind::InternalError, format!("serializing: {e}")))
}

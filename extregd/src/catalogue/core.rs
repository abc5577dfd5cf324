//! The shared core the background refreshes hold: backends, the SWR
//! caches of their answers, flights, refresh outcomes, pushed patches.

use super::merge::{fetch_versions, is_newer, merge_versions, patched, CatalogView};
use super::{Catalog, ExtKey, RefreshState, Tag, Versions, VersionsAnswer};
use crate::artifacts::ArtifactStore;
use crate::backend::{newest, Backend, BackendError};
use crate::cache::{SingleFlight, SwrCache, SwrHit};
use crate::error::Error;
use crate::metrics::Metrics;
use extreg_shared::{ErrorKind, Extension, ExtensionType, Source};
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

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
    pub(super) catalog_flights: SingleFlight<Source, Result<Catalog, BackendError>>,
    pub(super) version_flights: SingleFlight<ExtKey, Result<Arc<Versions>, Error>>,
    /// Pushed changes of single extensions, by source, with when they were
    /// fetched: re-applied to a listing that was fetched before them.
    pub(super) patches: Mutex<Patches>,
    pub(super) status: Mutex<BTreeMap<Source, RefreshState>>,
    pub(super) artifacts: Arc<ArtifactStore>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) base_url: String,
    /// Woken whenever cached metadata changed (the persister listens).
    pub(crate) dirty: tokio::sync::Notify,
    pub(crate) stale_after: Duration,
}

impl Core {
    pub(super) fn download_url(&self, e: &Extension) -> String {
        format!(
            "{}/api/v1/extensions/{}/{}/{}",
            self.base_url, e.ext_type, e.name, e.version
        )
    }

    /// Records the outcome of a metadata call to a backend (for `/health`
    /// and `backend_refresh_failing`). Not found is an answer, not a failure.
    pub(super) fn note<T>(&self, source: Source, r: &Result<T, BackendError>) {
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

    pub(super) fn refreshed(&self, cache: &str, ok: bool) {
        self.metrics
            .cache_refreshes
            .with_label_values(&[cache, if ok { "ok" } else { "error" }])
            .inc();
    }

    /// One backend's listing from the backend, coalesced.
    pub(super) async fn fetch_catalog(
        &self,
        b: &Arc<dyn Backend>,
    ) -> Result<Catalog, BackendError> {
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
    pub(super) fn store_catalog(&self, source: Source, list: Catalog, started: Instant) -> Catalog {
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
    pub(super) async fn backend_catalog(
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
    pub(super) fn catalog_tag(self: &Arc<Self>, source: Option<Source>) -> Option<(Tag, u64)> {
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

    pub(super) async fn catalog(
        self: &Arc<Self>,
        source: Option<Source>,
    ) -> Result<CatalogView, Error> {
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
    pub(super) async fn load_versions(
        self: &Arc<Self>,
        key: ExtKey,
    ) -> Result<Arc<Versions>, Error> {
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
    pub(super) fn refresh_versions_bg(self: &Arc<Self>, key: ExtKey) {
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
    pub(super) fn answer_of(&self, hit: SwrHit<Arc<Versions>>) -> Result<VersionsAnswer, Error> {
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

    /// See [`Catalogue::invalidate`].
    pub(super) async fn invalidate(self: &Arc<Self>, key: ExtKey) -> Result<usize, Error> {
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

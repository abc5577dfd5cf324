//! Listing and searching the merged catalogue: pages, ranking, the
//! derived-answer caches, and `ext discover`.

use super::merge::CatalogView;
use super::{to_json, Catalogue, ExtKey, ListKey, Rendered};
use crate::error::Error;
use extreg_shared::{Extension, ExtensionType, Source};
use std::collections::HashMap;

impl Catalogue {
    /// The merged catalog of the backends matching `source`, sorted by type
    /// then name. `complete` is false when a backend failed but another
    /// answered; when every asked backend failed this is an error.
    pub(super) async fn catalog(&self, source: Option<Source>) -> Result<CatalogView, Error> {
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
        self.keep_rendered(key, &page, total, &view)
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

    pub(super) async fn search_view(
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
        self.keep_rendered(key, &page, total, &view)
    }

    /// Renders one page of a list or search answer and keeps it in the
    /// list cache when every listing it was made from was whole.
    fn keep_rendered<T: serde::Serialize>(
        &self,
        key: ListKey,
        page: &T,
        total: usize,
        view: &CatalogView,
    ) -> Result<Rendered, Error> {
        let r = Rendered {
            body: to_json(page)?,
            total,
            age: view.age,
        };
        if view.complete {
            self.lists.insert(key, (view.tag.clone(), r.clone()));
        }
        Ok(r)
    }

    /// A cached list or search answer, when the listings it was made from
    /// are still the cached ones (a due listing starts its refresh here).
    pub(super) fn cached_list(&self, key: &ListKey, source: Option<Source>) -> Option<Rendered> {
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
}

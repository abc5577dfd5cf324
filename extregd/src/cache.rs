//! The metadata caches: an LRU with a time-to-live per entry, with hit and
//! miss counters that feed both `/metrics` and `/cache/stats`, and a
//! single-flight gate so that concurrent misses for one key make one
//! backend call.

use crate::metrics::Counter;
use futures::future::{BoxFuture, FutureExt, Shared};
use lru::LruCache;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

/// An LRU cache whose entries also expire after `ttl`. A disabled cache
/// stores nothing and counts every lookup as a miss.
pub struct TtlLru<K: Hash + Eq, V: Clone> {
    enabled: bool,
    ttl: Duration,
    inner: Mutex<LruCache<K, (Instant, V)>>,
    hits: Counter,
    misses: Counter,
}

impl<K: Hash + Eq, V: Clone> TtlLru<K, V> {
    pub fn new(
        capacity: usize,
        ttl: Duration,
        enabled: bool,
        hits: Counter,
        misses: Counter,
    ) -> Self {
        let cap = NonZeroUsize::new(capacity.max(1)).expect("capacity >= 1");
        TtlLru {
            enabled,
            ttl,
            inner: Mutex::new(LruCache::new(cap)),
            hits,
            misses,
        }
    }

    pub fn get(&self, key: &K) -> Option<V> {
        if self.enabled {
            let mut inner = self.inner.lock();
            if let Some((at, v)) = inner.get(key) {
                if at.elapsed() < self.ttl {
                    let v = v.clone();
                    drop(inner);
                    self.hits.inc();
                    return Some(v);
                }
                inner.pop(key);
            }
        }
        self.misses.inc();
        None
    }

    pub fn insert(&self, key: K, value: V) {
        if self.enabled {
            self.inner.lock().put(key, (Instant::now(), value));
        }
    }

    pub fn clear(&self) {
        self.inner.lock().clear();
    }

    /// Drops every entry whose key `drop` selects.
    pub fn remove_where(&self, drop: impl Fn(&K) -> bool)
    where
        K: Clone,
    {
        let mut inner = self.inner.lock();
        let doomed: Vec<K> = inner
            .iter()
            .map(|(k, _)| k)
            .filter(|k| drop(k))
            .cloned()
            .collect();
        for k in doomed {
            inner.pop(&k);
        }
    }

    /// The value held for `key`, expired or not, without counting a hit or
    /// a miss or refreshing its LRU position (completion candidates).
    pub fn peek(&self, key: &K) -> Option<V> {
        self.inner.lock().peek(key).map(|(_, v)| v.clone())
    }

    /// Live entries (expired ones still held are not counted).
    pub fn len(&self) -> u64 {
        let inner = self.inner.lock();
        inner
            .iter()
            .filter(|(_, (at, _))| at.elapsed() < self.ttl)
            .count() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    pub fn hits(&self) -> u64 {
        self.hits.get()
    }

    pub fn misses(&self) -> u64 {
        self.misses.get()
    }
}

/// Coalesces concurrent computations of the same key: the first caller
/// starts the work, later callers wait for its result. The work runs as a
/// task of its own, so callers that give up do not leave it half-done.
pub struct SingleFlight<K, V: Clone> {
    inflight: Mutex<HashMap<K, Shared<BoxFuture<'static, V>>>>,
}

impl<K: Hash + Eq + Clone, V: Clone + Send + Sync + 'static> Default for SingleFlight<K, V> {
    fn default() -> Self {
        SingleFlight {
            inflight: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Hash + Eq + Clone, V: Clone + Send + Sync + 'static> SingleFlight<K, V> {
    pub async fn run<F, Fut>(&self, key: K, make: F) -> V
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = V> + Send + 'static,
    {
        let fut = {
            let mut map = self.inflight.lock();
            match map.get(&key) {
                Some(f) => f.clone(),
                None => {
                    // The work runs in its own task: it finishes (and frees
                    // what it holds, such as backend permits) even when
                    // every caller has gone away.
                    let task = tokio::spawn(make());
                    let f = async move {
                        task.await
                            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
                    }
                    .boxed()
                    .shared();
                    map.insert(key.clone(), f.clone());
                    f
                }
            }
        };
        let out = fut.clone().await;
        let mut map = self.inflight.lock();
        if map.get(&key).is_some_and(|f| f.ptr_eq(&fut)) {
            map.remove(&key);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    fn cache(cap: usize, ttl_ms: u64, enabled: bool) -> TtlLru<u32, u32> {
        TtlLru::new(
            cap,
            Duration::from_millis(ttl_ms),
            enabled,
            Counter::new("h", "h").unwrap(),
            Counter::new("m", "m").unwrap(),
        )
    }

    #[test]
    fn remove_where_drops_only_the_selected_keys() {
        let c = cache(8, 10_000, true);
        for k in 0..6 {
            c.insert(k, k * 10);
        }
        c.remove_where(|k| k % 2 == 0);
        assert_eq!((c.get(&0), c.get(&2), c.get(&4)), (None, None, None));
        assert_eq!(
            (c.get(&1), c.get(&3), c.get(&5)),
            (Some(10), Some(30), Some(50))
        );
    }

    #[test]
    fn hit_miss_and_lru_eviction() {
        let c = cache(2, 10_000, true);
        assert_eq!(c.get(&1), None);
        c.insert(1, 10);
        c.insert(2, 20);
        assert_eq!(c.get(&1), Some(10));
        c.insert(3, 30); // evicts 2, the least recently used
        assert_eq!(c.get(&2), None);
        assert_eq!(c.get(&3), Some(30));
        assert_eq!((c.hits(), c.misses()), (2, 2));
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn entries_expire() {
        let c = cache(4, 30, true);
        c.insert(1, 1);
        assert_eq!(c.get(&1), Some(1));
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(c.get(&1), None);
        assert_eq!(c.len(), 0);
    }

    #[test]
    fn disabled_cache_stores_nothing() {
        let c = cache(4, 10_000, false);
        c.insert(1, 1);
        assert_eq!(c.get(&1), None);
        assert_eq!(c.misses(), 1);
    }

    #[tokio::test]
    async fn abandoned_work_still_finishes() {
        let sf: Arc<SingleFlight<u32, u32>> = Arc::new(SingleFlight::default());
        let done = Arc::new(AtomicUsize::new(0));
        let d2 = done.clone();
        let caller = tokio::spawn({
            let sf = sf.clone();
            async move {
                sf.run(1, || async move {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    d2.fetch_add(1, Ordering::SeqCst);
                    7
                })
                .await
            }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        caller.abort();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(done.load(Ordering::SeqCst), 1, "the work ran to the end");
    }

    #[tokio::test]
    async fn concurrent_misses_run_once() {
        let sf: Arc<SingleFlight<u32, u32>> = Arc::new(SingleFlight::default());
        let calls = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let sf = sf.clone();
            let calls = calls.clone();
            tasks.push(tokio::spawn(async move {
                sf.run(7, || async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    42
                })
                .await
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap(), 42);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // Once finished, a new call runs again.
        let c2 = calls.clone();
        sf.run(7, || async move {
            c2.fetch_add(1, Ordering::SeqCst);
            1
        })
        .await;
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }
}

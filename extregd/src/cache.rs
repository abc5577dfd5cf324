//! The metadata caches: a stale-while-revalidate LRU ([`SwrCache`]) for
//! what comes from backends, an LRU with a time-to-live or a validity check
//! ([`TtlLru`]) for what is derived from it, both with hit and miss counters
//! that feed `/metrics` and `/cache/stats`, and a single-flight gate so that
//! concurrent misses (or refreshes) of one key make one backend call.

use crate::metrics::Counter;
use futures::future::{BoxFuture, FutureExt, Shared};
use lru::LruCache;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Whether a cache stores anything, and its hit and miss counters (they
/// feed `/metrics` and `/cache/stats`).
pub struct Tally {
    enabled: bool,
    hits: Counter,
    misses: Counter,
}

impl Tally {
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    pub fn hits(&self) -> u64 {
        self.hits.get()
    }

    pub fn misses(&self) -> u64 {
        self.misses.get()
    }

    /// What `/cache/stats` shows of a cache holding `entries`.
    pub fn counters(&self, entries: u64) -> extreg_shared::CacheCounters {
        let (hits, misses) = (self.hits(), self.misses());
        extreg_shared::CacheCounters {
            enabled: self.enabled,
            entries,
            hits,
            misses,
            hit_ratio: crate::artifacts::ratio(hits, misses),
        }
    }
}

/// Drops every entry of `cache` whose key `drop` selects.
fn pop_where<K: Hash + Eq + Clone, V>(cache: &mut LruCache<K, V>, drop: impl Fn(&K) -> bool) {
    let doomed: Vec<K> = cache
        .iter()
        .map(|(k, _)| k)
        .filter(|k| drop(k))
        .cloned()
        .collect();
    for k in doomed {
        cache.pop(&k);
    }
}

/// An LRU cache whose entries also expire after `ttl`. A disabled cache
/// stores nothing and counts every lookup as a miss.
pub struct TtlLru<K: Hash + Eq, V: Clone> {
    tally: Tally,
    ttl: Duration,
    inner: Mutex<LruCache<K, (Instant, V)>>,
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
            tally: Tally {
                enabled,
                hits,
                misses,
            },
            ttl,
            inner: Mutex::new(LruCache::new(cap)),
        }
    }

    pub fn get(&self, key: &K) -> Option<V> {
        self.get_if(key, |_| true)
    }

    /// The cached value when `valid` accepts it (a derived value whose
    /// source changed is a miss, and is dropped).
    pub fn get_if(&self, key: &K, valid: impl FnOnce(&V) -> bool) -> Option<V> {
        if self.tally.enabled {
            let mut inner = self.inner.lock();
            if let Some((at, v)) = inner.get(key) {
                if at.elapsed() < self.ttl && valid(v) {
                    let v = v.clone();
                    drop(inner);
                    self.tally.hits.inc();
                    return Some(v);
                }
                inner.pop(key);
            }
        }
        self.tally.misses.inc();
        None
    }

    pub fn insert(&self, key: K, value: V) {
        if self.tally.enabled {
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
        pop_where(&mut self.inner.lock(), drop);
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

    /// Whether it stores anything, and its hit and miss counts.
    pub fn tally(&self) -> &Tally {
        &self.tally
    }
}

/// How long a claimed refresh keeps others from starting one, should it
/// never report back (it normally stores a value or fails much sooner).
pub const REFRESH_GUARD: Duration = Duration::from_secs(120);

/// What a stale-while-revalidate cache holds for one key.
struct Slot<V> {
    value: V,
    /// When the fetch that produced `value` started (older data is never
    /// stored over newer).
    fetched: Instant,
    /// When a reader should start the next background refresh.
    refresh_at: Instant,
    /// Loaded from the persisted catalogue, not yet confirmed by a backend.
    loaded: bool,
    /// Changes whenever `value` changes (derived caches compare it).
    generation: u64,
}

/// A cache hit of a [`SwrCache`].
#[derive(Clone)]
pub struct SwrHit<V> {
    pub value: V,
    /// Time since the data was fetched from its backend.
    pub age: Duration,
    /// Served from an old answer: unconfirmed since a restart, or older
    /// than the stale bound because refreshes failed.
    pub stale: bool,
    /// This reader was chosen to start the background refresh (at most one
    /// reader per refresh interval is).
    pub refresh: bool,
    pub generation: u64,
    pub fetched: Instant,
}

/// A stale-while-revalidate LRU: entries never vanish because of their age.
/// After `ttl` the next reader still gets the cached value at once and is
/// told to start one background refresh; until that refresh stores a new
/// value (or fails, after which the next one is due `retry` later: the TTL,
/// at most 30 s) other readers get the cached value without starting another. A value older than
/// `stale_after` (its refreshes keep failing), or loaded from disk and not
/// yet confirmed, is reported `stale`.
pub struct SwrCache<K: Hash + Eq, V: Clone> {
    tally: Tally,
    ttl: Duration,
    stale_after: Duration,
    retry: Duration,
    inner: Mutex<LruCache<K, Slot<V>>>,
    generations: std::sync::atomic::AtomicU64,
}

impl<K: Hash + Eq + Clone, V: Clone> SwrCache<K, V> {
    pub fn new(
        capacity: usize,
        ttl: Duration,
        stale_after: Duration,
        enabled: bool,
        hits: Counter,
        misses: Counter,
    ) -> Self {
        let cap = NonZeroUsize::new(capacity.max(1)).expect("capacity >= 1");
        SwrCache {
            tally: Tally {
                enabled,
                hits,
                misses,
            },
            ttl,
            stale_after,
            retry: ttl.min(Duration::from_secs(30)),
            inner: Mutex::new(LruCache::new(cap)),
            generations: std::sync::atomic::AtomicU64::new(1),
        }
    }

    fn next_generation(&self) -> u64 {
        self.generations
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    fn hit_of(&self, slot: &mut Slot<V>, now: Instant, claim: bool) -> SwrHit<V> {
        let due = now >= slot.refresh_at;
        if due && claim {
            // This reader starts the refresh; the others keep reading
            // until it stores a value or reports its failure.
            slot.refresh_at = now + REFRESH_GUARD;
        }
        let age = now.saturating_duration_since(slot.fetched);
        SwrHit {
            value: slot.value.clone(),
            age,
            stale: slot.loaded || age > self.stale_after,
            refresh: due && claim,
            generation: slot.generation,
            fetched: slot.fetched,
        }
    }

    /// The cached value, whatever its age (counted as a hit or a miss).
    pub fn get(&self, key: &K) -> Option<SwrHit<V>> {
        let hit = self.lookup(key, true);
        match hit {
            Some(_) => self.tally.hits.inc(),
            None => self.tally.misses.inc(),
        }
        hit
    }

    /// Like [`Self::get`] without counting (derived lookups).
    pub fn peek(&self, key: &K) -> Option<SwrHit<V>> {
        self.lookup(key, true)
    }

    /// The cached value, whatever its age, without counting and without
    /// starting a refresh (completion and other peeks).
    pub fn value(&self, key: &K) -> Option<V> {
        self.lookup(key, false).map(|h| h.value)
    }

    fn lookup(&self, key: &K, claim: bool) -> Option<SwrHit<V>> {
        if !self.tally.enabled {
            return None;
        }
        let now = Instant::now();
        let mut inner = self.inner.lock();
        inner.get_mut(key).map(|s| self.hit_of(s, now, claim))
    }

    /// Stores a value fetched by a fetch that started at `started`, unless
    /// a newer fetch already stored one. Returns whether it was stored.
    pub fn insert(&self, key: K, value: V, started: Instant) -> bool {
        if !self.tally.enabled {
            return false;
        }
        let generation = self.next_generation();
        let mut inner = self.inner.lock();
        if let Some(cur) = inner.peek(&key) {
            if !cur.loaded && cur.fetched > started {
                return false;
            }
        }
        inner.put(
            key,
            Slot {
                value,
                fetched: started,
                refresh_at: Instant::now() + self.ttl,
                loaded: false,
                generation,
            },
        );
        true
    }

    /// Stores a value read from the persisted catalogue, fetched `age` ago:
    /// served as stale until a refresh confirms it, and due at once.
    pub fn insert_loaded(&self, key: K, value: V, age: Duration) {
        if !self.tally.enabled {
            return;
        }
        let generation = self.next_generation();
        let now = Instant::now();
        let fetched = now.checked_sub(age).unwrap_or(now);
        let mut inner = self.inner.lock();
        if inner.peek(&key).is_some() {
            return;
        }
        inner.put(
            key,
            Slot {
                value,
                fetched,
                refresh_at: now,
                loaded: true,
                generation,
            },
        );
    }

    /// A refresh of `key` failed: the cached value stays, and the next
    /// reader after the retry delay starts another refresh.
    pub fn refresh_failed(&self, key: &K) {
        if let Some(slot) = self.inner.lock().peek_mut(key) {
            slot.refresh_at = Instant::now() + self.retry;
        }
    }

    /// Changes a cached value in place (keeping its age): a pushed update
    /// of one part of it. Returns false when nothing is cached for `key`.
    pub fn update(&self, key: &K, f: impl FnOnce(&V) -> V) -> bool {
        if !self.tally.enabled {
            return false;
        }
        let generation = self.next_generation();
        let mut inner = self.inner.lock();
        match inner.peek_mut(key) {
            Some(slot) => {
                slot.value = f(&slot.value);
                slot.generation = generation;
                true
            }
            None => false,
        }
    }

    /// Every entry with its age and whether it came from disk unconfirmed,
    /// for persisting.
    pub fn snapshot(&self) -> Vec<(K, V, Duration, bool)> {
        let now = Instant::now();
        self.inner
            .lock()
            .iter()
            .map(|(k, s)| {
                (
                    k.clone(),
                    s.value.clone(),
                    now.saturating_duration_since(s.fetched),
                    s.loaded,
                )
            })
            .collect()
    }

    pub fn remove(&self, key: &K) {
        self.inner.lock().pop(key);
    }

    /// Drops every entry whose key `drop` selects.
    pub fn remove_where(&self, drop: impl Fn(&K) -> bool) {
        pop_where(&mut self.inner.lock(), drop);
    }

    pub fn clear(&self) {
        self.inner.lock().clear();
    }

    pub fn len(&self) -> u64 {
        self.inner.lock().len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether it stores anything, and its hit and miss counts.
    pub fn tally(&self) -> &Tally {
        &self.tally
    }
}

/// Coalesces concurrent computations of the same key: the first caller
/// starts the work, later callers wait for its result. The work runs as a
/// task of its own, so callers that give up do not leave it half-done.
///
/// **A flight always ends and always leaves the map**: the task removes its
/// own entry when the work finishes, panics or is cancelled, so a panic
/// fails only the callers waiting at that moment (with [`FlightFailed`])
/// and the next call starts afresh.
pub struct SingleFlight<K, V: Clone> {
    inflight: Arc<Mutex<HashMap<K, Flight<V>>>>,
    next: AtomicU64,
}

type Flight<V> = (u64, Shared<BoxFuture<'static, Result<V, FlightFailed>>>);

/// The shared work did not produce a value: it panicked (a bug, logged) or
/// was cancelled (the runtime is shutting down).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the shared work failed unexpectedly ({0})")]
pub struct FlightFailed(pub String);

impl<K: Hash + Eq + Clone, V: Clone + Send + Sync + 'static> Default for SingleFlight<K, V> {
    fn default() -> Self {
        SingleFlight {
            inflight: Arc::new(Mutex::new(HashMap::new())),
            next: AtomicU64::new(0),
        }
    }
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".into())
}

impl<K, V> SingleFlight<K, V>
where
    K: Hash + Eq + Clone + Send + 'static,
    V: Clone + Send + Sync + 'static,
{
    pub async fn run<F, Fut>(&self, key: K, make: F) -> Result<V, FlightFailed>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = V> + Send + 'static,
    {
        let fut = {
            let mut map = self.inflight.lock();
            match map.get(&key) {
                Some((_, f)) => f.clone(),
                None => {
                    let generation = self.next.fetch_add(1, Ordering::Relaxed);
                    let work = make();
                    let map_ref = self.inflight.clone();
                    let k = key.clone();
                    // The work runs in its own task: it finishes (and frees
                    // what it holds, such as backend permits) even when
                    // every caller has gone away.
                    let task = tokio::spawn(async move {
                        let r = std::panic::AssertUnwindSafe(work).catch_unwind().await;
                        let mut m = map_ref.lock();
                        if m.get(&k).is_some_and(|(g, _)| *g == generation) {
                            m.remove(&k);
                        }
                        drop(m);
                        r.map_err(|p| {
                            let text = panic_text(&*p);
                            tracing::error!(panic = %text, "shared work panicked; its waiters get an error, later calls start afresh");
                            FlightFailed(format!("panic: {text}"))
                        })
                    });
                    let f = async move {
                        task.await
                            .unwrap_or_else(|e| Err(FlightFailed(e.to_string())))
                    }
                    .boxed()
                    .shared();
                    map.insert(key.clone(), (generation, f.clone()));
                    f
                }
            }
        };
        fut.await
    }

    /// Flights under way (for tests and diagnostics).
    pub fn len(&self) -> usize {
        self.inflight.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

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
        assert_eq!((c.tally().hits(), c.tally().misses()), (2, 2));
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
        assert_eq!(c.tally().misses(), 1);
    }

    fn swr(ttl_ms: u64, stale_ms: u64) -> SwrCache<u32, u32> {
        SwrCache::new(
            4,
            Duration::from_millis(ttl_ms),
            Duration::from_millis(stale_ms),
            true,
            Counter::new("h", "h").unwrap(),
            Counter::new("m", "m").unwrap(),
        )
    }

    #[test]
    fn swr_serves_past_the_ttl_and_elects_one_refresher() {
        let c = swr(30, 10_000);
        assert!(c.get(&1).is_none());
        c.insert(1, 10, Instant::now());
        let h = c.get(&1).unwrap();
        assert_eq!((h.value, h.refresh, h.stale), (10, false, false));
        std::thread::sleep(Duration::from_millis(40));
        let first = c.get(&1).unwrap();
        let second = c.get(&1).unwrap();
        assert_eq!(first.value, 10, "still answered after the TTL");
        assert!(first.refresh, "the first reader refreshes");
        assert!(!second.refresh, "the others do not");
        // A failed refresh: the value stays, the next one is due later.
        c.refresh_failed(&1);
        assert!(!c.get(&1).unwrap().refresh);
        std::thread::sleep(Duration::from_millis(40));
        assert!(
            c.get(&1).unwrap().refresh,
            "due again after the retry delay"
        );
        c.insert(1, 11, Instant::now());
        let h = c.get(&1).unwrap();
        assert_eq!((h.value, h.refresh), (11, false));
        assert_eq!((c.tally().hits(), c.tally().misses()), (6, 1));
    }

    #[test]
    fn swr_marks_old_or_loaded_values_stale_and_keeps_newer_data() {
        let c = swr(10_000, 30);
        let old = Instant::now();
        c.insert(1, 1, old);
        std::thread::sleep(Duration::from_millis(40));
        assert!(c.get(&1).unwrap().stale, "older than the bound");
        let newer = Instant::now();
        c.insert(1, 2, newer);
        assert!(
            !c.insert(1, 3, old),
            "an older fetch never replaces a newer one"
        );
        assert_eq!(c.get(&1).unwrap().value, 2);
        c.insert_loaded(5, 50, Duration::from_secs(7));
        let h = c.get(&5).unwrap();
        assert!(h.stale && h.refresh, "loaded: stale and due at once");
        assert!(h.age >= Duration::from_secs(7));
        let g = h.generation;
        assert!(c.update(&5, |v| v + 1));
        let h = c.get(&5).unwrap();
        assert_eq!(h.value, 51);
        assert_ne!(h.generation, g, "an update is a new generation");
        c.insert(5, 52, Instant::now());
        assert!(!c.get(&5).unwrap().stale, "confirmed by a fetch");
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
            assert_eq!(t.await.unwrap(), Ok(42));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // Once finished, a new call runs again.
        let c2 = calls.clone();
        let again = sf
            .run(7, || async move {
                c2.fetch_add(1, Ordering::SeqCst);
                1
            })
            .await;
        assert_eq!(again, Ok(1));
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_panicking_flight_fails_only_its_waiters_and_leaves_the_map() {
        let sf: Arc<SingleFlight<u32, u32>> = Arc::new(SingleFlight::default());
        let mut waiters = Vec::new();
        for _ in 0..4 {
            let sf = sf.clone();
            waiters.push(tokio::spawn(async move {
                sf.run(1, || async move {
                    tokio::time::sleep(Duration::from_millis(30)).await;
                    panic!("a backend bug");
                    #[allow(unreachable_code)]
                    0
                })
                .await
            }));
        }
        for w in waiters {
            let e = w
                .await
                .expect("the waiter itself does not panic")
                .unwrap_err();
            assert!(e.0.contains("a backend bug"), "{e}");
        }
        assert!(sf.is_empty(), "the dead flight was removed");
        // The next call for the same key runs afresh and succeeds.
        assert_eq!(sf.run(1, || async { 5 }).await, Ok(5));
    }

    #[tokio::test]
    async fn a_flight_whose_callers_all_left_removes_itself() {
        let sf: Arc<SingleFlight<u32, u32>> = Arc::new(SingleFlight::default());
        let caller = tokio::spawn({
            let sf = sf.clone();
            async move {
                sf.run(3, || async {
                    tokio::time::sleep(Duration::from_millis(30)).await;
                    1
                })
                .await
            }
        });
        tokio::time::sleep(Duration::from_millis(5)).await;
        caller.abort();
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert!(
            sf.is_empty(),
            "no finished flight is kept to be served later"
        );
        assert_eq!(sf.run(3, || async { 2 }).await, Ok(2));
    }
}

//! Test doubles for the core's unit tests (compiled only under `cfg(test)`):
//! a scripted [`FakeBackend`] (versions, artifacts, failures, delays, call
//! counters), fixture constructors (records, version entries, tarballs) and
//! a [`Harness`] holding a catalogue over fakes with its artifact store in a
//! temp folder. The tests of the catalogue, the loader and the socket
//! dispatch in the sibling files run in milliseconds, without a binary, a
//! socket or a real backend.

mod catalogue_tests;
mod dispatch_tests;
mod loader_tests;

use crate::artifacts::ArtifactStore;
use crate::backend::{Artifact, Backend, BackendError, VersionEntry};
pub use crate::catalogue::Catalogue;
use crate::config::CacheConfig;
use crate::metrics::Metrics;
use async_trait::async_trait;
use bytes::Bytes;
use extreg_shared::{Extension, ExtensionType, Source};
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How many times each backend method was called.
#[derive(Default)]
pub struct Calls {
    pub list: AtomicUsize,
    pub versions: AtomicUsize,
    pub fetch: AtomicUsize,
    pub health: AtomicUsize,
}

impl Calls {
    pub fn list(&self) -> usize {
        self.list.load(Ordering::SeqCst)
    }
    pub fn versions(&self) -> usize {
        self.versions.load(Ordering::SeqCst)
    }
    pub fn fetch(&self) -> usize {
        self.fetch.load(Ordering::SeqCst)
    }
}

/// What the fake answers; changed by the test at any time.
#[derive(Default)]
struct Script {
    /// Every version it holds, by extension, with its artifact bytes.
    held: BTreeMap<(ExtensionType, String), Vec<(VersionEntry, Bytes)>>,
    /// Every call fails with this (the backend is down).
    down: Option<BackendError>,
    /// Only `fetch` fails with this.
    fetch_error: Option<BackendError>,
    /// Each call waits this long before answering.
    delay: Duration,
}

/// A backend whose answers the test scripts: what it holds
/// ([`FakeBackend::hold`]), whether it is down ([`FakeBackend::go_down`]),
/// whether fetches fail, how slow it is; [`FakeBackend::calls`] counts
/// what it was asked.
pub struct FakeBackend {
    source: Source,
    identity: String,
    script: Mutex<Script>,
    pub calls: Calls,
}

impl FakeBackend {
    pub fn new(source: Source) -> Arc<FakeBackend> {
        FakeBackend::named(source, &format!("fake:{source}"))
    }

    /// A fake with its own identity (another upstream of the same kind).
    pub fn named(source: Source, identity: &str) -> Arc<FakeBackend> {
        Arc::new(FakeBackend {
            source,
            identity: identity.to_string(),
            script: Mutex::new(Script::default()),
            calls: Calls::default(),
        })
    }

    /// Holds one version of an extension whose artifact is `bytes`
    /// (checksum and size announced in the record). Returns its entry.
    pub fn hold(
        &self,
        ext_type: ExtensionType,
        name: &str,
        version: &str,
        bytes: Vec<u8>,
    ) -> VersionEntry {
        let mut rec = record(ext_type, name, version, self.source);
        rec.checksum = Some(crate::backend::sha256_tag(&bytes));
        rec.size = Some(bytes.len() as u64);
        self.hold_record(rec, bytes)
    }

    /// Holds one version with a record the test made (e.g. other tags or
    /// description), and its artifact bytes.
    pub fn hold_record(&self, rec: Extension, bytes: Vec<u8>) -> VersionEntry {
        let e = entry(rec);
        let key = (e.record.ext_type, e.record.name.clone());
        let mut s = self.script.lock();
        let list = s.held.entry(key).or_default();
        list.retain(|(x, _)| x.semver != e.semver);
        list.push((e.clone(), Bytes::from(bytes)));
        e
    }

    /// Every call fails with `err` until [`Self::come_back`].
    pub fn go_down(&self, err: BackendError) {
        self.script.lock().down = Some(err);
    }

    pub fn come_back(&self) {
        self.script.lock().down = None;
    }

    /// Fetches fail with `err` (listings still answer); None: they work.
    pub fn fail_fetches(&self, err: Option<BackendError>) {
        self.script.lock().fetch_error = err;
    }

    /// Every call waits `d` before it answers.
    pub fn set_delay(&self, d: Duration) {
        self.script.lock().delay = d;
    }

    /// Waits the scripted delay, then the scripted failure if down.
    async fn answer(&self) -> Result<(), BackendError> {
        let delay = self.script.lock().delay;
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        match &self.script.lock().down {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }
}

#[async_trait]
impl Backend for FakeBackend {
    fn source(&self) -> Source {
        self.source
    }

    async fn list(&self) -> Result<Vec<Extension>, BackendError> {
        self.calls.list.fetch_add(1, Ordering::SeqCst);
        self.answer().await?;
        let s = self.script.lock();
        Ok(s.held
            .values()
            .filter_map(|vs| {
                let entries: Vec<VersionEntry> = vs.iter().map(|(e, _)| e.clone()).collect();
                crate::backend::newest(&entries).map(|e| e.record.clone())
            })
            .collect())
    }

    async fn versions(
        &self,
        ext_type: ExtensionType,
        name: &str,
    ) -> Result<Vec<VersionEntry>, BackendError> {
        self.calls.versions.fetch_add(1, Ordering::SeqCst);
        self.answer().await?;
        Ok(self
            .script
            .lock()
            .held
            .get(&(ext_type, name.to_string()))
            .map(|vs| vs.iter().map(|(e, _)| e.clone()).collect())
            .unwrap_or_default())
    }

    async fn fetch(&self, entry: &VersionEntry) -> Result<Artifact, BackendError> {
        self.calls.fetch.fetch_add(1, Ordering::SeqCst);
        self.answer().await?;
        let s = self.script.lock();
        if let Some(e) = &s.fetch_error {
            return Err(e.clone());
        }
        let key = (entry.record.ext_type, entry.record.name.clone());
        let bytes = s
            .held
            .get(&key)
            .and_then(|vs| vs.iter().find(|(e, _)| e.semver == entry.semver))
            .map(|(_, b)| b.clone())
            .ok_or_else(|| BackendError::NotFound(entry.locator.clone()))?;
        // Two chunks, so readers see the stream grow.
        let half = bytes.len() / 2;
        let chunks = vec![Ok(bytes.slice(..half)), Ok(bytes.slice(half..))];
        Ok(Artifact {
            size: Some(bytes.len() as u64),
            digest: entry.record.checksum.clone(),
            stream: Box::pin(futures::stream::iter(chunks)),
        })
    }

    async fn health(&self) -> Result<(), BackendError> {
        self.calls.health.fetch_add(1, Ordering::SeqCst);
        self.answer().await
    }

    fn identity(&self) -> String {
        self.identity.clone()
    }
}

/// A record of one version as a backend of `source` would give it.
pub fn record(ext_type: ExtensionType, name: &str, version: &str, source: Source) -> Extension {
    let semver = extreg_shared::parse_version(version).expect("a fixture version is semver");
    Extension {
        name: name.into(),
        ext_type,
        version: version.into(),
        description: format!("{name} {version}"),
        author: Some("tests".into()),
        repository: None,
        source,
        published_at: Some("2025-10-06T12:00:00Z".into()),
        download_url: None,
        checksum: None,
        size: None,
        tags: vec![],
        prerelease: !semver.pre.is_empty(),
        stale: false,
        requires: vec![],
        dependencies: vec![],
        signature: Default::default(),
        mismatch: None,
    }
}

/// The version entry of a record (locator and revision derived from it).
pub fn entry(rec: Extension) -> VersionEntry {
    VersionEntry {
        semver: extreg_shared::parse_version(&rec.version).expect("a fixture version is semver"),
        locator: format!("{}/{}/{}", rec.ext_type, rec.name, rec.version),
        revision: "r1".into(),
        record: rec,
    }
}

/// A valid extension artifact: a tar.gz holding its `extension.yaml` and
/// one schema file (fixed times, so the bytes are reproducible).
pub fn tarball(ext_type: ExtensionType, name: &str, version: &str) -> Vec<u8> {
    let manifest = format!(
        "extension:\n  name: {name}\n  version: {version}\n  type: {ext_type}\n  description: {name} {version}\n  author: tests\n"
    );
    let files = [
        ("extension.yaml".to_string(), manifest.into_bytes()),
        (format!("kcl/{name}.k"), b"schema X:\n  a: int\n".to_vec()),
    ];
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut t = tar::Builder::new(gz);
    for (path, data) in &files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1);
        t.append_data(&mut h, path, &data[..])
            .expect("append to an in-memory tar");
    }
    t.into_inner()
        .and_then(|gz| gz.finish())
        .expect("finish an in-memory tar.gz")
}

/// A catalogue over fake backends (in the order given: their priority),
/// its artifact store in a temp folder that lives as long as the harness.
pub struct Harness {
    pub dir: tempfile::TempDir,
    pub catalogue: Arc<Catalogue>,
    pub store: Arc<ArtifactStore>,
    pub metrics: Arc<Metrics>,
}

impl Harness {
    pub fn new(backends: &[&Arc<FakeBackend>]) -> Harness {
        Harness::with_cache(backends, CacheConfig::default())
    }

    pub fn with_cache(backends: &[&Arc<FakeBackend>], cache: CacheConfig) -> Harness {
        let dir = tempfile::tempdir().expect("temp dir");
        let metrics = Arc::new(Metrics::new());
        let store = Arc::new(
            ArtifactStore::open(&dir.path().join("artifacts"), metrics.clone(), None)
                .expect("artifact store in a temp dir"),
        );
        let catalogue = Harness::catalogue_over(backends, &cache, &store, &metrics);
        Harness {
            dir,
            catalogue,
            store,
            metrics,
        }
    }

    /// The application (what both adapters call) over a catalogue of
    /// `backends` sharing this harness's artifact store: no OCI backend,
    /// extensions extracted below the temp folder.
    pub fn app(&self, backends: &[&Arc<FakeBackend>]) -> Arc<crate::app::App> {
        let catalogue = Arc::try_unwrap(self.restarted(backends))
            .unwrap_or_else(|_| unreachable!("a new catalogue has one owner"));
        Arc::new(crate::app::App {
            catalogue,
            loader: crate::load::Loader::new(self.dir.path().join("extensions")),
            oci: None,
            oci_config: None,
            metrics: self.metrics.clone(),
            started: std::time::Instant::now(),
            readiness: Arc::new(crate::probe::Readiness::new(vec![])),
            generic: crate::app::GenericArtifacts::new(
                vec![],
                &CacheConfig::default(),
                &self.metrics,
            ),
        })
    }

    /// Another catalogue over the same artifact store, with empty metadata
    /// caches: what a restarted daemon has.
    pub fn restarted(&self, backends: &[&Arc<FakeBackend>]) -> Arc<Catalogue> {
        Harness::catalogue_over(
            backends,
            &CacheConfig::default(),
            &self.store,
            &self.metrics,
        )
    }

    fn catalogue_over(
        backends: &[&Arc<FakeBackend>],
        cache: &CacheConfig,
        store: &Arc<ArtifactStore>,
        metrics: &Arc<Metrics>,
    ) -> Arc<Catalogue> {
        let backends: Vec<Arc<dyn Backend>> = backends
            .iter()
            .map(|b| Arc::clone(b) as Arc<dyn Backend>)
            .collect();
        Arc::new(Catalogue::new(
            backends,
            cache,
            store.clone(),
            metrics.clone(),
            "http://127.0.0.1:8082".into(),
        ))
    }
}

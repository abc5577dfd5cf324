//! Unit tests of the artifact store, with their test backends.

use super::*;
use crate::backend::{Artifact, Backend, BackendError, VersionEntry};
use extreg_shared::Extension;
use std::path::Path;

struct Panicky;

#[async_trait::async_trait]
impl Backend for Panicky {
    fn source(&self) -> Source {
        Source::Local
    }
    async fn list(&self) -> Result<Vec<Extension>, BackendError> {
        Ok(vec![])
    }
    async fn versions(&self, _: ExtensionType, _: &str) -> Result<Vec<VersionEntry>, BackendError> {
        Ok(vec![])
    }
    async fn fetch(&self, _: &VersionEntry) -> Result<Artifact, BackendError> {
        panic!("a backend bug")
    }
    async fn health(&self) -> Result<(), BackendError> {
        Ok(())
    }
    fn identity(&self) -> String {
        "local:panicky".into()
    }
}

fn entry() -> VersionEntry {
    let rec = crate::testing::record(ExtensionType::Provider, "x", "1.0.0", Source::Local);
    crate::testing::entry(rec)
}

/// Sends 64 KiB every 10 ms, up to 64 MiB (announced), counting chunks.
struct Slow(Arc<AtomicU64>);

#[async_trait::async_trait]
impl Backend for Slow {
    fn source(&self) -> Source {
        Source::Local
    }
    async fn list(&self) -> Result<Vec<Extension>, BackendError> {
        Ok(vec![])
    }
    async fn versions(&self, _: ExtensionType, _: &str) -> Result<Vec<VersionEntry>, BackendError> {
        Ok(vec![])
    }
    async fn fetch(&self, _: &VersionEntry) -> Result<Artifact, BackendError> {
        let sent = self.0.clone();
        let stream = futures::stream::unfold(0u32, move |i| {
            let sent = sent.clone();
            async move {
                if i == 1024 {
                    return None;
                }
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                sent.fetch_add(1, Ordering::SeqCst);
                Some((Ok(bytes::Bytes::from(vec![0u8; 64 * 1024])), i + 1))
            }
        });
        Ok(Artifact {
            stream: Box::pin(stream),
            size: Some(64 << 20),
            digest: None,
        })
    }
    async fn health(&self) -> Result<(), BackendError> {
        Ok(())
    }
    fn identity(&self) -> String {
        "local:slow".into()
    }
}

fn tmp_files(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("tmp")).unwrap().count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_goes_on_while_a_waiter_remains_and_stops_with_the_last() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(ArtifactStore::open(dir.path(), Arc::new(Metrics::new()), None).unwrap());
    let sent = Arc::new(AtomicU64::new(0));
    let backend: Arc<dyn Backend> = Arc::new(Slow(sent.clone()));
    let grow = |f: Fetched| match f {
        Fetched::Growing(g) => g,
        Fetched::Ready(_) => panic!("nothing is cached yet"),
    };
    let a = grow(
        store
            .fetch_or_join_cancellable(&entry(), backend.clone(), false)
            .unwrap(),
    );
    let b = grow(
        store
            .fetch_or_join_cancellable(&entry(), backend.clone(), false)
            .unwrap(),
    );
    // Wait until bytes flow.
    let mut rx = a.rx.clone();
    rx.wait_for(|p| p.written > 0).await.unwrap();
    // One of two leaves: the download goes on.
    drop(a);
    let at = sent.load(Ordering::SeqCst);
    let mut rx = b.rx.clone();
    rx.wait_for(|p| p.written > (at + 4) * 64 * 1024)
        .await
        .unwrap();
    assert_eq!(store.inflight.lock().len(), 1);
    assert_eq!(tmp_files(dir.path()), 1);
    // The last leaves: cancelled, temp file gone, nothing indexed.
    drop(b);
    drop(rx);
    assert!(store.inflight.lock().is_empty());
    let mut gone = false;
    for _ in 0..200 {
        if tmp_files(dir.path()) == 0 {
            gone = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(gone, "the temp file of a cancelled download stayed");
    let stopped_at = sent.load(Ordering::SeqCst);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert!(
        sent.load(Ordering::SeqCst) <= stopped_at + 1,
        "the backend stream was still read"
    );
    assert!(store.entries().is_empty());

    // A pinned caller (REST) keeps a download alive on its own.
    let sent2 = Arc::new(AtomicU64::new(0));
    let slow2: Arc<dyn Backend> = Arc::new(Slow(sent2.clone()));
    let c = grow(
        store
            .fetch_or_join_cancellable(&entry(), slow2.clone(), false)
            .unwrap(),
    );
    let pinned = grow(store.fetch_or_join(&entry(), slow2).unwrap());
    drop(c);
    drop(pinned);
    let at = sent2.load(Ordering::SeqCst);
    let mut waited = 0;
    while sent2.load(Ordering::SeqCst) < at + 5 && waited < 200 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        waited += 1;
    }
    assert!(
        sent2.load(Ordering::SeqCst) >= at + 5,
        "a pinned download was cancelled"
    );
}

#[tokio::test]
async fn a_panicking_download_fails_its_waiters_and_clears_the_flight() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(ArtifactStore::open(dir.path(), Arc::new(Metrics::new()), None).unwrap());
    let e = store
        .get_or_fetch(&entry(), Arc::new(Panicky))
        .await
        .unwrap_err();
    assert!(e.message.contains("failed unexpectedly"), "{e}");
    assert!(
        store.inflight.lock().is_empty(),
        "no dead flight left behind"
    );
    // A later request starts afresh (and fails the same way), no hang.
    let again = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        store.get_or_fetch(&entry(), Arc::new(Panicky)),
    )
    .await
    .expect("no hang on a dead flight");
    assert!(again.is_err());
    assert!(std::fs::read_dir(dir.path().join("tmp"))
        .unwrap()
        .next()
        .is_none());
}

async fn collect(s: crate::backend::ByteStream) -> (Vec<u8>, Option<std::io::Error>) {
    use futures::StreamExt;
    let mut s = s;
    let mut got = Vec::new();
    while let Some(item) = s.next().await {
        match item {
            Ok(b) => got.extend_from_slice(&b),
            Err(e) => return (got, Some(e)),
        }
    }
    (got, None)
}

fn payload() -> Vec<u8> {
    (0..50_000u32).map(|i| (i % 251) as u8).collect()
}

#[tokio::test]
async fn a_handle_keeps_its_bytes_when_the_blob_is_evicted() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(ArtifactStore::open(dir.path(), Arc::new(Metrics::new()), None).unwrap());
    // A backend holding the payload, announcing its size and digest.
    let fake = crate::testing::FakeBackend::new(Source::Local);
    let held = fake.hold(ExtensionType::Provider, "x", "1.0.0", payload());
    let backend: Arc<dyn Backend> = fake;
    let first = store.get_or_fetch(&held, backend.clone()).await.unwrap();
    assert!(!first.hit);
    assert!(first.known_good(), "hashed on the way in");
    let hit = store.get_or_fetch(&held, backend.clone()).await.unwrap();
    assert!(hit.hit);
    // Cleared while both are held: the names go, the bytes stay readable.
    assert_eq!(store.remove_where(|_| true).0, 1);
    assert!(!hit.path.exists());
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut first.into_reader().unwrap(), &mut bytes).unwrap();
    assert_eq!(bytes, payload());
    let (got, err) = collect(hit.body(None).unwrap()).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(got, payload());
    // A range is served from the same open file.
    let again = store.get_or_fetch(&held, backend).await.unwrap();
    assert!(!again.hit, "the cleared entry was fetched again");
    let (got, _) = collect(again.body(Some((10, 5))).unwrap()).await;
    assert_eq!(got, payload()[10..15]);
}

#[tokio::test]
async fn a_damaged_blob_is_never_served_whole_and_is_evicted() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(ArtifactStore::open(dir.path(), Arc::new(Metrics::new()), None).unwrap());
    // A backend holding the payload, announcing its size and digest.
    let fake = crate::testing::FakeBackend::new(Source::Local);
    let held = fake.hold(ExtensionType::Provider, "x", "1.0.0", payload());
    let backend: Arc<dyn Backend> = fake;
    let a = store.get_or_fetch(&held, backend.clone()).await.unwrap();
    let path = a.path.clone();
    drop(a);
    let mut damaged = payload();
    damaged[49_999] ^= 1;
    std::fs::write(&path, &damaged).unwrap();

    // Streamed whole: every byte but the held-back last chunk, then an
    // error; the entry is gone.
    let hit = store.get_or_fetch(&held, backend.clone()).await.unwrap();
    assert!(hit.hit && !hit.known_good());
    let (got, err) = collect(hit.body(None).unwrap()).await;
    assert!(err.is_some(), "a damaged body ended without an error");
    assert!(got.len() < damaged.len());
    assert!(
        store.entries().is_empty(),
        "the damaged blob stayed indexed"
    );

    // Used whole (ext load): the check refuses it and evicts it.
    let a = store.get_or_fetch(&held, backend.clone()).await.unwrap();
    std::fs::write(&a.path, &damaged).unwrap();
    drop(a);
    let hit = store.get_or_fetch(&held, backend.clone()).await.unwrap();
    let e = hit.verified().await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::IntegrityError);
    assert!(store.entries().is_empty());

    // A good blob that was not known good (a restart) is hashed once and
    // then known good.
    let a = store.get_or_fetch(&held, backend.clone()).await.unwrap();
    drop(a);
    store.verified.lock().clear();
    let hit = store.get_or_fetch(&held, backend.clone()).await.unwrap();
    assert!(!hit.known_good());
    assert!(hit.verified().await.unwrap().known_good());
    let hit = store.get_or_fetch(&held, backend).await.unwrap();
    assert!(hit.known_good());
}

#[test]
fn artifact_kinds_keep_the_stored_type() {
    use super::ArtifactKind;
    let k: ArtifactKind = serde_json::from_str("\"taskserv\"").unwrap();
    assert_eq!(k, ArtifactKind::Extension(ExtensionType::Taskserv));
    let g: ArtifactKind = serde_json::from_str("\"oci-artifact\"").unwrap();
    assert_eq!(g, ArtifactKind::Generic);
    assert_eq!(serde_json::to_string(&g).unwrap(), "\"oci-artifact\"");
    assert_eq!(
        serde_json::to_string(&ArtifactKind::Extension(ExtensionType::Cluster)).unwrap(),
        "\"cluster\""
    );
    assert!(serde_json::from_str::<ArtifactKind>("\"widget\"").is_err());
    assert_eq!(g.ext_type(), None);
}

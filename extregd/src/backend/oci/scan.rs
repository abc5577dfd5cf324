//! `extension.yaml` read from the layer blob of a manifest that carries no
//! metadata annotations (an extension pushed by ORAS or another tool the
//! way their docs show: a file, no annotations), so such a version is
//! listed with its description, author, tags, `requires` and
//! `dependencies`, and a tag whose tarball declares another version, name
//! or type is flagged (`Extension::mismatch`).
//!
//! **When.** Only when none of [`METADATA_ANNOTATIONS`] is set on the
//! manifest. Artifacts from `ext publish` always carry them, so listing
//! them never reads a blob.
//!
//! **Cost and bounds.** The scan itself ([`tar_meta::scan`]) reads at most
//! [`tar_meta::MAX_SCAN_BLOB_BYTES`] of the blob and stops at the first
//! `extension.yaml` (the first few KiB of a well-formed artifact); the
//! request is bounded in time by the registry's API timeout
//! ([`RegistryClient::api_timeout`]) as a whole; at most
//! [`MAX_CONCURRENT_SCANS`] run at once (each holds a blocking thread).
//!
//! **Cache.** An outcome ([`Scan::Found`] or [`Scan::Unreadable`]) is a
//! property of the bytes, so it is kept by layer digest for the life of the
//! process, in an LRU of [`MAX_CACHED_SCANS`] entries. Concurrent scans of
//! one digest (many tags of one artifact) share one read. A failure to read
//! (network, timeout) is an error of the listing and is not cached: the
//! next listing reads again.
//!
//! The bytes read here are not checked against the digest (the scan reads
//! only a prefix): like annotations, what they say is informative. The
//! download that follows is verified as always.

use super::client::RegistryClient;
use super::manifest::{
    Parsed, ANN_AUTHORS, ANN_DEPENDENCIES, ANN_DESCRIPTION, ANN_NAME, ANN_REQUIRES, ANN_TAGS,
    ANN_TYPE, ANN_VERSION,
};
use crate::backend::tar_meta::{self, Scan};
use crate::backend::{BackendError, ByteStream};
use futures::StreamExt;
use lru::LruCache;
use parking_lot::Mutex;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OnceCell, Semaphore};

/// Scan outcomes kept (by layer digest).
pub const MAX_CACHED_SCANS: usize = 4096;
/// Scans running at once.
pub const MAX_CONCURRENT_SCANS: usize = 4;

/// Manifest annotations that make a manifest self-describing: with any of
/// them set, the blob is not read.
pub const METADATA_ANNOTATIONS: [&str; 8] = [
    ANN_VERSION,
    ANN_NAME,
    ANN_TYPE,
    ANN_DESCRIPTION,
    ANN_AUTHORS,
    ANN_TAGS,
    ANN_REQUIRES,
    ANN_DEPENDENCIES,
];

/// Whether a manifest says nothing about the extension it carries.
pub fn lacks_metadata(m: &Parsed) -> bool {
    !METADATA_ANNOTATIONS
        .iter()
        .any(|k| m.annotations.get(*k).is_some_and(|v| !v.trim().is_empty()))
}

type Cell = Arc<OnceCell<Arc<Scan>>>;

/// The scan outcomes by layer digest, and the bound on running scans.
pub struct Scanner {
    outcomes: Mutex<LruCache<String, Cell>>,
    permits: Semaphore,
}

impl Default for Scanner {
    fn default() -> Self {
        Scanner {
            outcomes: Mutex::new(LruCache::new(
                NonZeroUsize::new(MAX_CACHED_SCANS).expect("non-zero"),
            )),
            permits: Semaphore::new(MAX_CONCURRENT_SCANS),
        }
    }
}

impl Scanner {
    /// What the layer `digest` of `repo` says about itself: from the cache,
    /// or read (one read per digest at a time).
    pub async fn scan(
        &self,
        client: &RegistryClient,
        repo: &str,
        digest: &str,
    ) -> Result<Arc<Scan>, BackendError> {
        self.scan_with(digest, || read(client, repo, digest)).await
    }

    /// [`Self::scan`] with the read given (unit tests).
    async fn scan_with<F, Fut>(&self, digest: &str, read: F) -> Result<Arc<Scan>, BackendError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Scan, BackendError>>,
    {
        let cell: Cell = self
            .outcomes
            .lock()
            .get_or_insert(digest.to_string(), Default::default)
            .clone();
        cell.get_or_try_init(|| async {
            let _permit = self
                .permits
                .acquire()
                .await
                .map_err(|_| BackendError::Upstream("the scanner is closed".into()))?;
            read().await.map(Arc::new)
        })
        .await
        .cloned()
    }
}

/// Reads the blob's `extension.yaml` (bounded in bytes by the scan, in
/// time by the API timeout).
async fn read(client: &RegistryClient, repo: &str, digest: &str) -> Result<Scan, BackendError> {
    let what = format!("the blob {digest} of {repo}");
    let limit = client.api_timeout();
    let work = async {
        let (stream, _) = client.blob_get(repo, digest, &what).await?;
        let reader = tokio_util::io::SyncIoBridge::new(tokio_util::io::StreamReader::new(
            with_deadline(stream, limit),
        ));
        tokio::task::spawn_blocking(move || tar_meta::scan(reader))
            .await
            .map_err(|e| BackendError::Upstream(format!("reading {what}: {e}")))?
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::TimedOut => BackendError::Timeout(limit.as_secs()),
                _ => BackendError::Upstream(format!("reading {what}: {e}")),
            })
    };
    let scan = tokio::time::timeout(limit, work)
        .await
        .map_err(|_| BackendError::Timeout(limit.as_secs()))??;
    if let Scan::Unreadable(why) = &scan {
        tracing::info!(%repo, %digest, "oci: an artifact without annotations has no readable extension.yaml: {why}");
    }
    Ok(scan)
}

/// `stream`, failing with `TimedOut` once `limit` has passed (so a blocking
/// reader over it ends even when the registry stops sending).
fn with_deadline(stream: ByteStream, limit: Duration) -> ByteStream {
    let sleep = Box::pin(tokio::time::sleep(limit));
    futures::stream::unfold(
        (stream, sleep, false),
        |(mut s, mut sleep, done)| async move {
            if done {
                return None;
            }
            tokio::select! {
                item = s.next() => item.map(|i| (i, (s, sleep, false))),
                _ = &mut sleep => Some((
                    Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "no complete answer in time")),
                    (s, sleep, true),
                )),
            }
        },
    )
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn parsed(annotations: &[(&str, &str)]) -> Parsed {
        let m = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","digest":"{}","size":2}},
            "layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:{}","size":1}}]}}"#,
            super::super::OCI_MANIFEST,
            super::super::EMPTY_CONFIG,
            super::super::EMPTY_DIGEST,
            "c".repeat(64)
        );
        let mut p = super::super::manifest::parse(m.as_bytes()).unwrap();
        p.annotations = annotations
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>();
        p
    }

    #[test]
    fn only_manifests_without_metadata_annotations_are_scanned() {
        assert!(lacks_metadata(&parsed(&[])));
        // What oras-py or skopeo may add says nothing about the extension.
        assert!(lacks_metadata(&parsed(&[
            ("org.opencontainers.image.created", "2024-01-01T00:00:00Z"),
            ("org.opencontainers.image.title", "x.tar.gz"),
            (ANN_DESCRIPTION, "  "),
        ])));
        for k in METADATA_ANNOTATIONS {
            assert!(!lacks_metadata(&parsed(&[(k, "x")])), "{k}");
        }
    }

    #[tokio::test]
    async fn outcomes_are_kept_by_digest_failures_are_not_and_reads_are_shared() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let s = Arc::new(Scanner::default());
        let reads = Arc::new(AtomicUsize::new(0));
        let read = |result: Result<Scan, BackendError>| {
            let reads = reads.clone();
            move || async move {
                reads.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(30)).await;
                result
            }
        };
        // A failed read is not kept: the next call reads again.
        let e = s
            .scan_with("sha256:a", read(Err(BackendError::Timeout(1))))
            .await;
        assert!(e.is_err());
        let ok = s
            .scan_with("sha256:a", read(Ok(Scan::Unreadable("no yaml".into()))))
            .await
            .unwrap();
        assert_eq!(*ok, Scan::Unreadable("no yaml".into()));
        assert_eq!(reads.load(Ordering::SeqCst), 2);
        // A verdict is kept: no read at all for that digest any more.
        let again = s
            .scan_with("sha256:a", read(Err(BackendError::Timeout(1))))
            .await
            .unwrap();
        assert_eq!(*again, Scan::Unreadable("no yaml".into()));
        assert_eq!(reads.load(Ordering::SeqCst), 2);
        // Many tags of one artifact at once: one read.
        let joins: Vec<_> = (0..10)
            .map(|_| {
                let (s, r) = (s.clone(), read(Ok(Scan::Unreadable("b".into()))));
                tokio::spawn(async move { s.scan_with("sha256:b", r).await.unwrap() })
            })
            .collect();
        for j in joins {
            assert_eq!(*j.await.unwrap(), Scan::Unreadable("b".into()));
        }
        assert_eq!(reads.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_stalled_stream_times_out_as_an_error() {
        let stalled: ByteStream = futures::stream::pending().boxed();
        let mut s = with_deadline(stalled, Duration::from_millis(20));
        let e = s.next().await.unwrap().unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
        assert!(s.next().await.is_none());
    }
}

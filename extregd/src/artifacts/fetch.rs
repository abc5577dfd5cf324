//! Download and verify: backend bytes into `tmp/`, hashed on the way,
//! checked against the announced digest and size (and signature), then
//! committed into `blobs/` and the index together.

use super::flight::Progress;
use super::{
    now, storage_error, ArtifactKey, ArtifactStore, IndexEntry, Origin, Stamp, Stored,
    MAX_UNANNOUNCED,
};
use crate::error::Error;
use extreg_shared::ErrorKind;
use futures::StreamExt;
use sha2::{Digest, Sha256};

/// A download whose bytes passed verification, not yet visible.
pub(super) struct Verified {
    tmp: tempfile::TempPath,
    entry: IndexEntry,
}

impl ArtifactStore {
    /// Streams the backend's bytes into `tmp`, hashing them and reporting
    /// progress, verifies them, and renames the file into `blobs/`.
    pub(super) async fn download(
        &self,
        key: &ArtifactKey,
        origin: &Origin,
        tmp: tempfile::NamedTempFile,
        tx: &tokio::sync::watch::Sender<Progress>,
    ) -> Result<Verified, Error> {
        let source = origin.source();
        // The cap holds before a byte is fetched: an artifact whose record
        // announces more than the cap is refused without asking the backend.
        self.check_cap(origin, origin.announced())?;
        let t = std::time::Instant::now();
        let artifact = origin.fetch().await;
        self.metrics
            .backend_timed(source.as_str(), "fetch", artifact.is_ok(), t);
        let fetched_bytes = self
            .metrics
            .ops
            .bytes_fetched
            .with_label_values(&[source.as_str()]);
        let artifact = artifact.map_err(|e| Error::backend(source, &e))?;
        let expected = artifact.digest.clone().or_else(|| origin.checksum());
        // ...and again once the backend answered (a response may announce
        // more than the record did).
        self.check_cap(origin, artifact.size)?;
        tx.send_modify(|p| {
            p.started = true;
            p.size = artifact.size;
            p.digest = expected.clone();
        });
        let (std_file, tmp_path) = tmp.into_parts();
        let mut file = tokio::fs::File::from_std(std_file);
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut stream = artifact.stream;
        use tokio::io::AsyncWriteExt;
        let write_err = |e: std::io::Error| storage_error("artifact cache write", e);
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| {
                Error::backend(source, &crate::backend::BackendError::Io(e.to_string()))
            })?;
            hasher.update(&chunk);
            size += chunk.len() as u64;
            fetched_bytes.inc_by(chunk.len() as u64);
            // Without an announced size, the cache cap (or 16 GiB) bounds it.
            let ceiling = self
                .max_bytes
                .unwrap_or(MAX_UNANNOUNCED)
                .min(MAX_UNANNOUNCED);
            if (artifact.size.is_none() || self.max_bytes.is_some()) && size > ceiling {
                return Err(Error::new(
                    ErrorKind::IntegrityError,
                    format!("the {source} backend sent more than {ceiling} bytes (the cap, or the most accepted without an announced size)"),
                ));
            }
            if artifact.size.is_some_and(|announced| size > announced) {
                return Err(Error::new(
                    ErrorKind::IntegrityError,
                    format!(
                        "the {source} backend sent more bytes than the {} it announced",
                        artifact.size.unwrap_or(0)
                    ),
                ));
            }
            file.write_all(&chunk).await.map_err(write_err)?;
            // Readers may read what is flushed to the file.
            file.flush().await.map_err(write_err)?;
            tx.send_modify(|p| p.written = size);
        }
        file.sync_all()
            .await
            .map_err(|e| storage_error("artifact cache sync", e))?;
        drop(file);
        let digest = format!("sha256:{}", hex::encode(hasher.finalize()));
        if let Some(exp) = &expected {
            if !exp.eq_ignore_ascii_case(&digest) {
                // tmp_path drops here and deletes the partial file.
                return Err(Error::backend(
                    source,
                    &crate::backend::BackendError::Integrity {
                        expected: exp.clone(),
                        actual: digest,
                    },
                ));
            }
        }
        if let Some(announced) = artifact.size {
            if announced != size {
                return Err(Error::new(
                    ErrorKind::IntegrityError,
                    format!("the {source} backend announced {announced} bytes but sent {size}"),
                ));
            }
        }
        // Who signed it, as the backend's policy asks; a refusal drops the
        // temp file (nothing cached).
        // Signatures are an extension matter: generic artifacts are
        // verified by digest only.
        let signature_key = match (self.verifier.get(), origin) {
            (Some(v), Origin::Version { entry, backend }) => {
                v.check(entry, &**backend, &tmp_path, &digest).await?
            }
            _ => None,
        };
        let t = now();
        let ie = IndexEntry {
            kind: key.kind,
            name: key.name.clone(),
            version: key.version.clone(),
            source,
            digest: digest.clone(),
            size,
            revision: origin.revision().to_string(),
            cached_at: t,
            last_used: t,
            record: origin.record(),
            backend: origin.identity(),
            locator: origin.locator(),
            signature_key,
        };
        Ok(Verified {
            tmp: tmp_path,
            entry: ie,
        })
    }

    /// Refuses an artifact announced above `[cache] max_artifact_bytes`.
    fn check_cap(&self, origin: &Origin, announced: Option<u64>) -> Result<(), Error> {
        match (self.max_bytes, announced) {
            (Some(cap), Some(n)) if n > cap => Err(Error::new(
                ErrorKind::InsufficientStorage,
                format!(
                    "{} is {n} bytes, over the artifact cache cap ([cache] max_artifact_bytes = {cap})",
                    origin.what()
                ),
            )),
            _ => Ok(()),
        }
    }

    /// Makes a verified download visible: rename into `blobs/` and index
    /// insert in one step under the index lock (so no removal computing
    /// live blobs can run in between). A superseded flight (`current`
    /// false) still moves its blob into place for its own waiters but does
    /// not touch the index; start-up sweeps such an orphan.
    pub(super) fn commit(
        &self,
        key: &ArtifactKey,
        v: Verified,
        current: bool,
    ) -> Result<(Stored, IndexEntry), Error> {
        let blob = self
            .blob_path(&v.entry.digest)
            .expect("digest is well-formed");
        let mut index = self.index.lock();
        v.tmp
            .persist(&blob)
            .map_err(|e| Error::internal(format!("artifact cache rename: {}", e.error)))?;
        if current {
            // A new revision replaces the old entry: free its blob unless
            // another entry still uses it.
            if let Some(old) = index.insert(key.clone(), v.entry.clone()) {
                if old.digest != v.entry.digest && !index.values().any(|e| e.digest == old.digest) {
                    if let Some(p) = self.blob_path(&old.digest) {
                        let _ = std::fs::remove_file(p);
                    }
                }
            }
        }
        drop(index);
        // Hashed on the way in: known good until it changes on disk.
        if let Ok(m) = std::fs::symlink_metadata(&blob) {
            self.mark_verified(&v.entry.digest, Stamp::of(&m));
        }
        let a = Stored {
            path: blob,
            size: v.entry.size,
            digest: v.entry.digest.clone(),
        };
        Ok((a, v.entry))
    }
}

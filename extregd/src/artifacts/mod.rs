//! The on-disk artifact cache, content-addressed by sha256.
//!
//! ```text
//! {root}/blobs/sha256/{hex}                          the bytes, immutable
//! {root}/refs/{type}/{name}/{version}@{source}.json  index entry -> digest
//! {root}/refs/oci-artifact/{namespace}/{name}/{tag}@oci.json   (generic)
//! {root}/tmp/                                        downloads in progress
//! ```
//!
//! **An index entry exists only for a blob that is complete and verified.**
//! Bytes are streamed into `tmp/`, hashed on the way, checked against the
//! digest the backend announced, fsynced and renamed into `blobs/`; only then
//! is the ref written (itself via temp file + rename). A crash at any point
//! leaves at worst an orphan in `tmp/` or `blobs/`, which start-up removes.
//! Concurrent requests for one missing artifact share one fetch.

mod evict;
mod fetch;
mod flight;
mod handle;
mod index;
mod offline;
mod origin;
mod verify;

use flight::Inflight;
pub use flight::{Fetched, Growing, Progress};
pub use handle::{ArtifactHandle, Delivery, LiveDownload, Stored, STREAM_ABOVE};
pub use origin::Origin;
pub use verify::{Stamp, VerifyReport};

use crate::error::Error;
use crate::metrics::Metrics;
use extreg_shared::{ArtifactCacheStats, ErrorKind, Extension, ExtensionType, Source};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// What an entry holds: an extension of a type, or a generic OCI artifact
/// (a KCL package), whose `name` is its repository `{namespace}/{name}`
/// and `version` its tag. Stored as the ref's `type`: the extension type,
/// or [`GENERIC`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ArtifactKind {
    Extension(ExtensionType),
    Generic,
}

/// The stored `type` (and ref folder) of a generic artifact.
pub const GENERIC: &str = "oci-artifact";

impl ArtifactKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ArtifactKind::Extension(t) => t.as_str(),
            ArtifactKind::Generic => GENERIC,
        }
    }

    /// The extension type, when it is an extension.
    pub fn ext_type(self) -> Option<ExtensionType> {
        match self {
            ArtifactKind::Extension(t) => Some(t),
            ArtifactKind::Generic => None,
        }
    }
}

impl Serialize for ArtifactKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ArtifactKind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s == GENERIC {
            return Ok(ArtifactKind::Generic);
        }
        s.parse::<ExtensionType>()
            .map(ArtifactKind::Extension)
            .map_err(|_| serde::de::Error::custom(format!("unknown artifact type '{s}'")))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ArtifactKey {
    pub kind: ArtifactKind,
    pub name: String,
    pub version: String,
    pub source: Source,
}

/// One index entry, as stored in its ref file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    #[serde(rename = "type")]
    pub kind: ArtifactKind,
    pub name: String,
    pub version: String,
    pub source: Source,
    /// `sha256:<hex>`.
    pub digest: String,
    pub size: u64,
    /// The backend's revision of the content when it was fetched.
    pub revision: String,
    /// Unix seconds.
    pub cached_at: u64,
    pub last_used: u64,
    /// The version's record when it was fetched: what offline operation
    /// lists and resolves from when the backend cannot be reached.
    #[serde(default)]
    pub record: Option<Extension>,
    /// The identity of the backend it came from ([`Backend::identity`]):
    /// offline answers use only entries of the same identity.
    #[serde(default)]
    pub backend: String,
    /// Where that backend finds the bytes, so an offline entry can be
    /// fetched again once the backend is back.
    #[serde(default)]
    pub locator: String,
    /// The id of the trusted key whose minisign signature verified these
    /// bytes when they were fetched (see [`crate::signature`]).
    #[serde(default)]
    pub signature_key: Option<String>,
}

impl IndexEntry {
    fn key(&self) -> ArtifactKey {
        ArtifactKey {
            kind: self.kind,
            name: self.name.clone(),
            version: self.version.clone(),
            source: self.source,
        }
    }
}

pub struct ArtifactStore {
    root: PathBuf,
    /// Blobs hashed and found good, by digest, with the stamp they had.
    verified: Mutex<HashMap<String, Stamp>>,
    index: Mutex<HashMap<ArtifactKey, IndexEntry>>,
    /// Downloads in progress, by key.
    inflight: Mutex<HashMap<ArtifactKey, Inflight>>,
    generations: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
    metrics: Arc<Metrics>,
    /// Total size above which least-recently-used entries are evicted.
    max_bytes: Option<u64>,
    /// Signature policies, checked on each download before it is cached.
    verifier: std::sync::OnceLock<Arc<crate::signature::Verifier>>,
}

/// Largest download accepted when the backend announces no size.
const MAX_UNANNOUNCED: u64 = 16 << 30;
/// The file that marks a folder as an extregd artifact cache.
pub const MARKER: &str = ".extregd-artifacts";
/// Prefix of downloads in progress in `tmp/`.
const TMP_PREFIX: &str = ".dl-";
/// Prefix of ref files being written.
const REF_TMP_PREFIX: &str = ".ref-";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn hex_of(digest: &str) -> Option<&str> {
    let hex = digest.strip_prefix("sha256:")?;
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then_some(hex)
}

impl ArtifactStore {
    /// Sets the signature policies (once, at boot).
    pub fn set_verifier(&self, v: Arc<crate::signature::Verifier>) {
        let _ = self.verifier.set(v);
    }

    /// Fills a record's `signature.verified` and `key_id` from the cached
    /// artifact of the same version and digest, if any.
    pub fn annotate(&self, rec: &mut Extension) {
        let key = ArtifactKey {
            kind: ArtifactKind::Extension(rec.ext_type),
            name: rec.name.clone(),
            version: rec.version.clone(),
            source: rec.source,
        };
        if let Some(e) = self.index.lock().get(&key) {
            let same = rec
                .checksum
                .as_deref()
                .is_none_or(|c| c.eq_ignore_ascii_case(&e.digest));
            if same && e.signature_key.is_some() {
                rec.signature.verified = true;
                rec.signature.key_id = e.signature_key.clone();
                rec.signature.signed = Some(true);
            }
        }
    }

    fn blob_path(&self, digest: &str) -> Option<PathBuf> {
        hex_of(digest).map(|h| self.root.join("blobs/sha256").join(h))
    }

    fn update_gauges(&self) {
        let index = self.index.lock();
        self.metrics.artifact_entries.set(index.len() as i64);
        self.metrics
            .artifact_bytes
            .set(index.values().map(|e| e.size).sum::<u64>() as i64);
    }

    pub fn stats(&self) -> ArtifactCacheStats {
        let index = self.index.lock();
        let (hits, misses) = (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        );
        ArtifactCacheStats {
            entries: index.len() as u64,
            bytes: index.values().map(|e| e.size).sum(),
            hits,
            misses,
            hit_ratio: ratio(hits, misses),
            oldest: index
                .values()
                .map(|e| e.cached_at)
                .min()
                .map(crate::backend::rfc3339_secs),
        }
    }
}

pub fn ratio(hits: u64, misses: u64) -> f64 {
    if hits + misses == 0 {
        0.0
    } else {
        hits as f64 / (hits + misses) as f64
    }
}

/// A failure to write the cache: a full disk (or quota) is
/// `insufficient_storage` (507) and logged, anything else internal.
fn storage_error(what: &str, e: std::io::Error) -> Error {
    let full = matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT));
    if full {
        tracing::warn!(error = %e, "{what}: the disk is full; nothing was cached");
        Error::new(
            ErrorKind::InsufficientStorage,
            format!("{what}: the disk holding the artifact cache is full"),
        )
    } else {
        Error::internal(format!("{what}: {e}"))
    }
}

#[cfg(test)]
mod tests;

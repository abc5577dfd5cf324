//! Backends: where extensions live. Each one answers the same four questions
//! (what is there, which versions, give me the bytes, are you well) and the
//! [`crate::catalogue::Catalogue`] merges their answers.

pub mod gitea;
pub mod http;
pub mod local;
pub mod oci;
pub mod tar_meta;

use async_trait::async_trait;
use bytes::Bytes;
use extreg_shared::{Extension, ExtensionType, Source};
use futures::stream::BoxStream;

/// Artifact bytes as they arrive.
pub type ByteStream = BoxStream<'static, Result<Bytes, std::io::Error>>;

/// One version as a backend knows it.
#[derive(Debug, Clone)]
pub struct VersionEntry {
    /// The record for this version; `download_url` is left to the registry.
    pub record: Extension,
    pub semver: semver::Version,
    /// Where the backend finds the bytes (a path, a blob digest, a URL).
    pub locator: String,
    /// Changes whenever the bytes behind this version may have changed, so
    /// a cached artifact is never served for content it no longer matches.
    pub revision: String,
}

/// An artifact being fetched.
pub struct Artifact {
    pub stream: ByteStream,
    /// Length in bytes, when the backend knows it up front.
    pub size: Option<u64>,
    /// `sha256:<hex>` the bytes must match, when the backend knows it.
    pub digest: Option<String>,
}

/// What can go wrong inside a backend. Messages never carry credentials.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    #[error("not found: {0}")]
    NotFound(String),
    #[error("authentication failed: {0}")]
    Auth(String),
    /// The upstream answered 429; its `Retry-After` in seconds (bounded),
    /// when it sent one.
    #[error("rate limited by the backend")]
    RateLimited(Option<u64>),
    #[error("no answer within {0} s")]
    Timeout(u64),
    #[error("unreachable: {0}")]
    Unreachable(String),
    #[error("{0}")]
    Upstream(String),
    /// The upstream answered an error status that has no kind of its own
    /// (400, 405, 5xx after retries...). Made only by
    /// [`http::status_error`]; callers decide on `code`, never on `message`.
    #[error("{message}")]
    Status { code: u16, message: String },
    #[error("digest mismatch: expected {expected}, got {actual}")]
    Integrity { expected: String, actual: String },
    #[error("{0}")]
    Io(String),
}

impl From<std::io::Error> for BackendError {
    fn from(e: std::io::Error) -> Self {
        BackendError::Io(e.to_string())
    }
}

#[async_trait]
pub trait Backend: Send + Sync + 'static {
    fn source(&self) -> Source;

    /// Every extension, each with the record of its newest version
    /// (newest stable when there is one). Implementations follow all pages.
    async fn list(&self) -> Result<Vec<Extension>, BackendError>;

    /// Every version of one extension, in any order; empty when the backend
    /// does not hold it.
    async fn versions(
        &self,
        ext_type: ExtensionType,
        name: &str,
    ) -> Result<Vec<VersionEntry>, BackendError>;

    /// The artifact bytes of one version, as a stream.
    async fn fetch(&self, entry: &VersionEntry) -> Result<Artifact, BackendError>;

    /// Whether the backend is reachable and accepts our credentials.
    async fn health(&self) -> Result<(), BackendError>;

    /// Who this backend is beyond its source: the upstream and the place in
    /// it (`oci:https://host/namespace`, `gitea:https://host/org`, the
    /// local roots). Offline answers come only from artifacts fetched from
    /// the same identity.
    fn identity(&self) -> String;

    /// Repositories the last listing skipped because they failed (bounded),
    /// for `/health`; empty when the last listing was whole.
    fn skipped(&self) -> Vec<String> {
        Vec::new()
    }

    /// The minisign signature (`.minisig` text) of one version's artifact,
    /// `None` when there is none (see [`crate::signature`]).
    async fn signature(&self, _entry: &VersionEntry) -> Result<Option<Vec<u8>>, BackendError> {
        Ok(None)
    }
}

/// The newest version not marked pre-release (`record.prerelease`: a
/// semver pre-release part, or the backend's own flag such as Gitea's), else
/// the newest of all.
///
/// A version flagged as a mismatch (`record.mismatch`: its artifact
/// declares another version or name) is never the newest.
pub fn newest(entries: &[VersionEntry]) -> Option<&VersionEntry> {
    let sound = || entries.iter().filter(|e| e.record.mismatch.is_none());
    sound()
        .filter(|e| !e.record.prerelease)
        .max_by(|a, b| a.semver.cmp(&b.semver))
        .or_else(|| sound().max_by(|a, b| a.semver.cmp(&b.semver)))
}

/// Gathers the per-repository results of a listing. **One failing
/// repository does not fail the listing**: it is skipped with a warning and
/// named in `skipped` (for `/health` and the metrics); only
/// when every repository failed is the first failure the listing's error.
/// The records come out sorted by type, then name.
pub(crate) fn isolate(
    backend: &str,
    results: Vec<(String, Result<Option<Extension>, BackendError>)>,
    skipped: &parking_lot::Mutex<Vec<String>>,
) -> Result<Vec<Extension>, BackendError> {
    let total = results.len();
    let mut out = Vec::new();
    let mut failed = Vec::new();
    let mut first_err = None;
    for (repo, r) in results {
        match r {
            Ok(Some(e)) => out.push(e),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(backend, repository = %repo, error = %e, "skipping a repository that failed while listing");
                failed.push(repo);
                first_err.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first_err.filter(|_| failed.len() == total) {
        *skipped.lock() = Vec::new();
        return Err(e);
    }
    failed.sort();
    *skipped.lock() = failed;
    out.sort_by(|a, b| (a.ext_type, &a.name).cmp(&(b.ext_type, &b.name)));
    Ok(out)
}

/// `sha256:<hex>` of some bytes: the form of every digest in records,
/// ETags and OCI descriptors.
pub fn sha256_tag(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

/// RFC 3339 (seconds, UTC) for a file time.
pub fn rfc3339(t: std::time::SystemTime) -> String {
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    rfc3339_secs(secs)
}

/// Latest time humantime can format (9999-12-31T23:59:59Z).
const MAX_FORMATTABLE: u64 = 253_402_300_799;

/// RFC 3339 for Unix seconds, clamped to what can be written, so a damaged
/// timestamp on disk cannot panic a formatter.
pub fn rfc3339_secs(secs: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs.min(MAX_FORMATTABLE));
    humantime::format_rfc3339_seconds(t).to_string()
}

/// An RFC 3339 time as UTC seconds (`2024-05-01T08:00:00Z`). Unparseable
/// input is passed through.
pub(crate) fn utc(t: &str) -> String {
    let t = t.trim();
    let (local, offset_secs) = match t.strip_suffix('Z').or_else(|| t.strip_suffix('z')) {
        Some(l) => (l, 0i64),
        None => {
            if t.len() < 6 || !t.is_char_boundary(t.len() - 6) {
                return t.to_string();
            }
            let (l, off) = t.split_at(t.len() - 6);
            let sign = match off.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return t.to_string(),
            };
            let mut hm = off[1..].split(':');
            let (Some(Ok(h)), Some(Ok(m))) = (
                hm.next().map(str::parse::<i64>),
                hm.next().map(str::parse::<i64>),
            ) else {
                return t.to_string();
            };
            (l, sign * (h * 3600 + m * 60))
        }
    };
    let Ok(st) = humantime::parse_rfc3339_weak(&format!("{local}Z")) else {
        return t.to_string();
    };
    let adjusted = if offset_secs >= 0 {
        st.checked_sub(std::time::Duration::from_secs(offset_secs as u64))
    } else {
        st.checked_add(std::time::Duration::from_secs((-offset_secs) as u64))
    };
    adjusted.map(rfc3339).unwrap_or_else(|| t.to_string())
}

/// The innermost cause of an error, for messages (no URL, no headers).
pub(crate) fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A version entry of `x`; `flagged`: marked pre-release by its backend.
    pub(super) fn entry(v: &str, flagged: bool) -> VersionEntry {
        let mut rec = crate::testing::record(ExtensionType::Provider, "x", v, Source::Local);
        rec.prerelease |= flagged;
        crate::testing::entry(rec)
    }

    #[test]
    fn timestamps_never_panic() {
        assert_eq!(rfc3339_secs(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_secs(u64::MAX), "9999-12-31T23:59:59Z");
    }

    #[test]
    fn newest_prefers_stable() {
        let vs = vec![
            entry("1.0.0", false),
            entry("2.0.0-rc.1", false),
            entry("1.5.0", false),
        ];
        assert_eq!(newest(&vs).unwrap().record.version, "1.5.0");
        let pre = vec![entry("2.0.0-rc.1", false), entry("2.0.0-rc.2", false)];
        assert_eq!(newest(&pre).unwrap().record.version, "2.0.0-rc.2");
        assert!(newest(&[]).is_none());
    }

    #[test]
    fn a_backend_flagged_prerelease_is_not_newest() {
        // Gitea can mark 1.30.0 a pre-release although semver would not.
        let vs = vec![entry("1.29.0", false), entry("1.30.0", true)];
        assert_eq!(newest(&vs).unwrap().record.version, "1.29.0");
    }
}

//! The local-socket protocol between `nu_plugin_ext` (client) and `extregd`
//! (server). Pure data and pure functions; the I/O lives on each side.
//!
//! **Framing.** Every message is one frame: a 4-byte big-endian length, then
//! that many bytes of postcard-encoded [`Envelope`]. A length of 0 or above
//! [`MAX_FRAME`] is refused before anything is read; a payload that does not
//! decode, or has bytes left over, is refused too. The receiver closes the
//! connection on any framing error.
//!
//! **Handshake.** The first frame a client sends is [`Request::Hello`] with
//! its [`PROTOCOL_VERSION`]; the server answers [`Response::Hello`] with its
//! own, or a `version_mismatch` error naming both and closes. Versions are
//! compatible only when equal: the daemon and plugin ship together.
//!
//! **Ids.** Each request carries an id the response echoes, so a client can
//! tell a late answer from the one it waits for.

use crate::types::{
    CacheStats, Extension, ExtensionType, ExtensionVersion, HealthResponse, Source,
};
use crate::{ErrorBody, Field};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Bumped on any change to [`Request`], [`Response`] or the records in them.
pub const PROTOCOL_VERSION: u32 = 4;
/// Largest frame payload either side accepts.
pub const MAX_FRAME: usize = 16 * 1024 * 1024;
pub const HEADER_LEN: usize = 4;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope<T> {
    pub id: u64,
    pub body: T,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Request {
    Hello {
        protocol: u32,
        client: String,
    },
    List {
        ext_type: Option<ExtensionType>,
        source: Option<Source>,
    },
    Search {
        query: String,
        ext_type: Option<ExtensionType>,
        source: Option<Source>,
        limit: u32,
    },
    /// One extension; `ext_type` may be left out when the name is unique.
    Info {
        ext_type: Option<ExtensionType>,
        name: String,
        version: Option<String>,
    },
    Versions {
        ext_type: Option<ExtensionType>,
        name: String,
    },
    /// Fetch the version `constraint` resolves to into the artifact cache
    /// (see `crate::constraint`; empty = newest stable).
    Pull {
        ext_type: Option<ExtensionType>,
        name: String,
        constraint: String,
        pre: bool,
        source: Option<Source>,
    },
    /// Resolve, fetch (unless cached), verify and extract into the
    /// extensions folder; `force` fetches and extracts again.
    Load {
        ext_type: Option<ExtensionType>,
        name: String,
        constraint: String,
        pre: bool,
        source: Option<Source>,
        force: bool,
    },
    /// The extensions extracted by `Load`.
    Loaded,
    /// Pack the folder at `path` (absolute) and push it to the OCI registry
    /// as `{namespace}/{name}-{type}:{version}`.
    Publish {
        path: String,
        version: String,
        dry_run: bool,
        force: bool,
    },
    /// Delete one version from the OCI registry.
    Delete {
        ext_type: ExtensionType,
        name: String,
        version: String,
    },
    Health,
    CacheList,
    CacheStats,
    /// Remove artifact cache entries: all, or those matching type and name.
    CacheClear {
        ext_type: Option<ExtensionType>,
        name: Option<String>,
        all: bool,
    },
    /// Remove artifact cache entries not used for `days` days.
    CachePrune {
        days: u32,
    },
    /// Every extension across all backends with the sources holding it;
    /// `refresh` first drops the listing caches (of `ext_type` only, when
    /// given) so tags pushed by other tools show at once.
    Discover {
        ext_type: Option<ExtensionType>,
        refresh: bool,
    },
    /// `Publish` with a registry and namespace of the caller's choice.
    PublishTo(PublishSpec),
    /// Remove artifact cache entries not used for `seconds` seconds
    /// (`ext cache prune --older-than 30day`).
    CachePruneOlderThan {
        seconds: u64,
    },
    /// Completion candidates, answered only from what the daemon already
    /// holds (metadata caches, artifact index, loaded extensions): never
    /// waits on a backend. `name` asks for that extension's versions too.
    Complete {
        ext_type: Option<ExtensionType>,
        name: Option<String>,
    },
    /// Hash every cached blob against its digest; evict damaged ones.
    CacheVerify,
    /// `Load` with the dependency closure: resolve every dependency
    /// (newest versions satisfying every constraint), load them in
    /// dependency order, then the extension itself.
    LoadTree {
        ext_type: Option<ExtensionType>,
        name: String,
        constraint: String,
        pre: bool,
        source: Option<Source>,
        force: bool,
    },
    /// Load exactly these locked extensions (dependencies first), each the
    /// locked version from the locked source, refusing a digest that differs.
    LoadLocked {
        entries: Vec<crate::lockfile::LockedExtension>,
        force: bool,
    },
    /// The resolved dependency tree of one extension (nothing extracted).
    Deps {
        ext_type: Option<ExtensionType>,
        name: String,
        constraint: String,
        pre: bool,
        source: Option<Source>,
    },
    /// Sign the published artifact of the folder at `path` (absolute) with
    /// the minisign secret key at `secret_key` and push the signature
    /// beside it (`dry_run`: sign, push nothing).
    Sign {
        path: String,
        version: String,
        secret_key: String,
        password: Option<String>,
        dry_run: bool,
    },
    /// Diagnose the OCI backend (`ext test-oci`): reachability, TLS, the
    /// auth challenge and the credentials used, catalog and namespace
    /// access, and push permission when asked (nothing left behind).
    TestOci(TestOciSpec),
    /// The generic OCI artifacts (KCL packages) of one namespace the
    /// daemon reads (`[oci] artifact_namespaces`; `ext kcl list`).
    OciArtifacts {
        namespace: String,
    },
    /// Pull one generic OCI artifact into the artifact cache, verified
    /// against its layer digest (`ext kcl pull`); `version` is the tag,
    /// `None` the newest semantic version.
    OciArtifactPull {
        namespace: String,
        name: String,
        version: Option<String>,
    },
}

/// What `ext test-oci` asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestOciSpec {
    /// Another registry (`host[:port]` or URL; credentials from the usual
    /// auth files). `None`: the configured `[oci] registry`.
    pub registry: Option<String>,
    /// Another namespace; `None`: the configured one.
    pub namespace: Option<String>,
    /// Also check push permission: open an upload session in the
    /// namespace and cancel it.
    pub push: bool,
}

/// What `ext publish` asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishSpec {
    /// The folder holding `extension.yaml` (absolute).
    pub path: String,
    pub version: String,
    pub dry_run: bool,
    pub force: bool,
    /// Another registry (`host[:port]` or URL); credentials come from the
    /// usual auth files. `None`: the configured `[oci] registry`.
    pub registry: Option<String>,
    /// Another namespace; `None`: the configured one.
    pub namespace: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Response {
    Hello {
        protocol: u32,
        server: String,
    },
    /// Second on purpose (see `hello_and_error_keep_their_wire_positions`).
    Error(ErrorBody),
    Extensions {
        items: Vec<Extension>,
        total: u64,
    },
    Extension(Extension),
    Versions(Vec<ExtensionVersion>),
    Pulled(PullResult),
    Loaded(LoadResult),
    LoadedList(Vec<LoadResult>),
    Published(PublishResult),
    Deleted {
        reference: String,
    },
    Health(HealthResponse),
    CacheEntries(Vec<CacheEntry>),
    CacheStats(CacheStats),
    CacheRemoved {
        entries: u64,
        bytes: u64,
    },
    Discovered(Vec<Discovered>),
    /// An interim frame (same request id) while `Pull`, `Load` or `Publish`
    /// work; the final answer follows. Any number of them, or none.
    Progress(ProgressEvent),
    /// The answer to `Complete`.
    Completions(Completions),
    /// What `CacheVerify` found: blobs and bytes hashed, and the entries
    /// whose blob was damaged (evicted).
    CacheVerified {
        checked: u64,
        bytes: u64,
        damaged: Vec<CacheEntry>,
    },
    LoadedTree(TreeLoad),
    DepsTree(DepNode),
    Signed(SignResult),
    /// A request that failed after the handshake: its kind, the input at
    /// fault and the cause. (`Error` stays for handshake refusals, which
    /// peers of other releases must still read.)
    Failed(Failure),
    /// The answer to `TestOci`.
    OciDiagnosis(OciDiagnosis),
    /// The answer to `OciArtifacts`.
    OciArtifacts(Vec<crate::artifact::OciArtifact>),
    /// The answer to `OciArtifactPull`.
    OciArtifactPulled(crate::artifact::ArtifactPull),
}

/// Why a request failed, as the daemon's one domain error renders it on
/// the socket: the kind's code (as in [`ErrorBody::error`]), the message,
/// details (the cause, what is available), and the input at fault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub kind: String,
    pub message: String,
    pub details: Option<String>,
    pub field: Option<Field>,
}

impl From<ErrorBody> for Failure {
    fn from(b: ErrorBody) -> Self {
        Failure {
            kind: b.error,
            message: b.message,
            details: b.details,
            field: None,
        }
    }
}

/// What `ext test-oci` found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OciDiagnosis {
    /// The registry's base URL (no user information).
    pub registry: String,
    pub namespace: String,
    /// Where the credentials came from (`anonymous`, `[oci] auth_token_path
    /// FILE`, an auth file and its key); never the secret.
    pub credentials: String,
    /// Every check that ran passed.
    pub ok: bool,
    pub checks: Vec<OciCheck>,
}

/// One check of `ext test-oci`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OciCheck {
    /// `reachable`, `tls`, `auth`, `catalog`, `namespace` or `push`.
    pub check: String,
    pub ok: bool,
    /// Not run because an earlier check failed (then `ok` is false).
    pub skipped: bool,
    /// What was seen.
    pub detail: String,
    /// Why it failed.
    pub error: Option<String>,
    /// What to do about it.
    pub hint: Option<String>,
}

/// One row of `ext discover`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Discovered {
    pub name: String,
    #[serde(rename = "type")]
    pub ext_type: ExtensionType,
    /// The newest version across every backend (stable first).
    pub latest: String,
    pub description: String,
    /// The backend serving `latest`.
    pub source: Source,
    /// Every backend that holds the extension, in priority order.
    pub sources: Vec<Source>,
    /// Served from the artifact cache because a backend is unreachable.
    pub stale: bool,
}

/// The stage a long request is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// Resolving the version (asking backends).
    Resolve,
    /// Receiving the artifact's bytes.
    Download,
    /// Checking the digest and making the artifact durable.
    Verify,
    /// Unpacking into the extensions folder.
    Extract,
    /// Pushing to the OCI registry.
    Push,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Resolve => "resolve",
            Phase::Download => "download",
            Phase::Verify => "verify",
            Phase::Extract => "extract",
            Phase::Push => "push",
        }
    }
}

/// How far a long request has come: bytes done of `total` (when known).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgressEvent {
    pub phase: Phase,
    pub done: u64,
    pub total: Option<u64>,
}

/// Completion candidates.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Completions {
    /// Known extensions (of the asked type, if any), sorted by name.
    pub names: Vec<CompletionName>,
    /// Versions of the asked name, newest first.
    pub versions: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompletionName {
    pub name: String,
    #[serde(rename = "type")]
    pub ext_type: ExtensionType,
    pub description: String,
}

/// What `ext load` returns with dependencies: every extension loaded,
/// dependencies first and the one asked for last, and the lockfile entries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TreeLoad {
    pub order: Vec<LoadResult>,
    pub locked: Vec<crate::lockfile::LockedExtension>,
}

/// One node of `ext deps`: the version chosen and what it needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DepNode {
    #[serde(rename = "type")]
    pub ext_type: ExtensionType,
    pub name: String,
    pub version: String,
    pub source: Source,
    /// The requirement as its parent wrote it (`""` for the root).
    pub wanted: String,
    pub requires: Vec<String>,
    pub dependencies: Vec<DepNode>,
}

/// What `ext publish --sign` adds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignResult {
    /// `host[:port]/{repository}:sha256-{hex}.minisig`.
    pub reference: String,
    pub key_id: String,
    pub layer_digest: String,
    pub pushed: bool,
}

/// One artifact cache entry as `ext cache list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheEntry {
    #[serde(rename = "type")]
    pub ext_type: ExtensionType,
    pub name: String,
    pub version: String,
    pub source: Source,
    pub size: u64,
    pub digest: String,
    /// RFC 3339.
    pub cached_at: String,
    pub last_used: String,
}

/// What `ext pull` returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PullResult {
    pub extension: Extension,
    pub digest: String,
    pub size: u64,
    /// Where the verified artifact lies in the daemon's cache.
    pub path: String,
    /// True when it was already cached (no backend fetch).
    pub cached: bool,
}

/// What `ext load` returns (and `ext list --loaded` lists).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadResult {
    pub name: String,
    #[serde(rename = "type")]
    pub ext_type: ExtensionType,
    pub version: String,
    pub source: Source,
    /// The extracted folder.
    pub path: String,
    pub checksum: String,
    pub description: String,
    pub author: Option<String>,
    pub tags: Vec<String>,
    pub requires: Vec<String>,
    pub dependencies: Vec<String>,
    pub homepage: Option<String>,
    pub license: Option<String>,
    /// RFC 3339.
    pub loaded_at: String,
    /// Served from the already extracted copy (nothing fetched or unpacked).
    pub already_loaded: bool,
    /// No backend was asked for the bytes (extracted copy or artifact cache).
    pub from_cache: bool,
}

/// What `ext publish` returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishResult {
    pub name: String,
    #[serde(rename = "type")]
    pub ext_type: ExtensionType,
    pub version: String,
    /// `host[:port]/{namespace}/{name}-{type}:{version}`.
    pub reference: String,
    pub manifest_digest: String,
    /// The artifact's digest (its download ETag).
    pub layer_digest: String,
    pub size: u64,
    /// False for a dry run.
    pub pushed: bool,
    /// True when an existing tag was overwritten (`force`).
    pub replaced: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {len} bytes exceeds the {max}-byte limit")]
    TooLarge { len: usize, max: usize },
    #[error("empty frame")]
    Empty,
    #[error("malformed frame: {0}")]
    Malformed(String),
}

/// Encodes one frame: length prefix and postcard payload.
pub fn encode<T: Serialize>(msg: &Envelope<T>) -> Result<Vec<u8>, FrameError> {
    let payload = postcard::to_stdvec(msg).map_err(|e| FrameError::Malformed(e.to_string()))?;
    if payload.len() > MAX_FRAME {
        return Err(FrameError::TooLarge {
            len: payload.len(),
            max: MAX_FRAME,
        });
    }
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}

/// The payload length announced by a frame header, checked against the limit.
pub fn frame_len(header: [u8; HEADER_LEN]) -> Result<usize, FrameError> {
    let len = u32::from_be_bytes(header) as usize;
    match len {
        0 => Err(FrameError::Empty),
        n if n > MAX_FRAME => Err(FrameError::TooLarge {
            len: n,
            max: MAX_FRAME,
        }),
        n => Ok(n),
    }
}

/// Decodes one payload; trailing bytes are an error.
pub fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<Envelope<T>, FrameError> {
    let (msg, rest) = postcard::take_from_bytes::<Envelope<T>>(payload)
        .map_err(|e| FrameError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(FrameError::Malformed(format!(
            "{} bytes left over after the message",
            rest.len()
        )));
    }
    Ok(msg)
}

/// Incremental decoder for a byte stream: feed bytes, take whole frames.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buf: Vec<u8>,
}

impl FrameDecoder {
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete message, `Ok(None)` when more bytes are needed.
    /// After an error the stream is unusable: close the connection.
    pub fn next_frame<T: DeserializeOwned>(&mut self) -> Result<Option<Envelope<T>>, FrameError> {
        if self.buf.len() < HEADER_LEN {
            return Ok(None);
        }
        let mut h = [0u8; HEADER_LEN];
        h.copy_from_slice(&self.buf[..HEADER_LEN]);
        let len = frame_len(h)?;
        if self.buf.len() < HEADER_LEN + len {
            return Ok(None);
        }
        let msg = decode(&self.buf[HEADER_LEN..HEADER_LEN + len]);
        self.buf.drain(..HEADER_LEN + len);
        msg.map(Some)
    }

    /// Bytes held that do not yet form a frame (a truncated frame at EOF).
    pub fn pending(&self) -> usize {
        self.buf.len()
    }
}

/// The answer to a client's hello: `Ok` when the versions match, else the
/// message both sides show.
pub fn check_version(server: u32, client: u32) -> Result<(), String> {
    if server == client {
        Ok(())
    } else {
        Err(format!(
            "protocol version mismatch: extregd speaks version {server}, nu_plugin_ext speaks version {client}; install extregd and nu_plugin_ext from the same release"
        ))
    }
}

/// Where the daemon listens: `$XDG_RUNTIME_DIR/extregd/extregd.sock`, or,
/// without `XDG_RUNTIME_DIR`, `/tmp/extregd-{uid}/extregd.sock`. Both
/// folders are created owner-only (0700) by the daemon.
pub fn default_socket_path(xdg_runtime_dir: Option<&Path>, uid: u32) -> PathBuf {
    match xdg_runtime_dir.filter(|p| p.is_absolute()) {
        Some(dir) => dir.join("extregd").join("extregd.sock"),
        None => PathBuf::from(format!("/tmp/extregd-{uid}")).join("extregd.sock"),
    }
}

#[cfg(test)]
mod tests;

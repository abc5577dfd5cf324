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
pub const PROTOCOL_VERSION: u32 = 3;
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
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample_ext() -> Extension {
        Extension {
            name: "kubernetes".into(),
            ext_type: ExtensionType::Taskserv,
            version: "1.28.0".into(),
            description: "K8s".into(),
            author: None,
            repository: Some("https://x".into()),
            source: Source::Local,
            published_at: Some("2025-10-06T12:00:00Z".into()),
            download_url: None,
            checksum: Some("sha256:00".into()),
            size: Some(10),
            tags: vec!["a".into()],
            prerelease: false,
            stale: false,
            requires: vec![],
            dependencies: vec![],
            signature: Default::default(),
        }
    }

    #[test]
    fn round_trip_every_shape() {
        let reqs = vec![
            Request::Hello {
                protocol: PROTOCOL_VERSION,
                client: "t".into(),
            },
            Request::List {
                ext_type: None,
                source: Some(Source::Oci),
            },
            Request::Search {
                query: "k".into(),
                ext_type: Some(ExtensionType::Cluster),
                source: None,
                limit: 5,
            },
            Request::Info {
                ext_type: None,
                name: "x".into(),
                version: Some("1.0.0".into()),
            },
            Request::CacheClear {
                ext_type: None,
                name: None,
                all: true,
            },
            Request::CachePrune { days: 30 },
            Request::CachePruneOlderThan { seconds: 3600 },
            Request::Complete {
                ext_type: Some(ExtensionType::Taskserv),
                name: Some("k".into()),
            },
        ];
        for (i, r) in reqs.into_iter().enumerate() {
            let env = Envelope {
                id: i as u64,
                body: r,
            };
            let bytes = encode(&env).unwrap();
            let back: Envelope<Request> = decode(&bytes[HEADER_LEN..]).unwrap();
            assert_eq!(back, env);
        }
        let resp = Envelope {
            id: 9,
            body: Response::Extensions {
                items: vec![sample_ext(), sample_ext()],
                total: 2,
            },
        };
        let bytes = encode(&resp).unwrap();
        assert_eq!(decode::<Response>(&bytes[HEADER_LEN..]).unwrap(), resp);
        for body in [
            Response::Failed(Failure {
                kind: "not_found".into(),
                message: "Extension provider/aws version 9.9.9 not found".into(),
                details: Some("available: 1.0.0".into()),
                field: Some(Field::Version),
            }),
            Response::Progress(ProgressEvent {
                phase: Phase::Download,
                done: 5,
                total: Some(10),
            }),
            Response::Completions(Completions {
                names: vec![CompletionName {
                    name: "k".into(),
                    ext_type: ExtensionType::Cluster,
                    description: "d".into(),
                }],
                versions: vec!["1.0.0".into()],
            }),
        ] {
            let env = Envelope { id: 4, body };
            let bytes = encode(&env).unwrap();
            assert_eq!(decode::<Response>(&bytes[HEADER_LEN..]).unwrap(), env);
        }
    }

    /// A peer of another release must still read our hello and our error:
    /// `Request::Hello` (0), `Response::Hello` (0) and `Response::Error` (1)
    /// keep their variant positions (postcard writes the index as the first
    /// byte after the id). New variants go at the end.
    #[test]
    fn hello_and_error_keep_their_wire_positions() {
        let tag = |bytes: Vec<u8>| bytes[HEADER_LEN + 1]; // id 1 is one varint byte
        let req = encode(&Envelope {
            id: 1,
            body: Request::Hello {
                protocol: 1,
                client: String::new(),
            },
        })
        .unwrap();
        assert_eq!(tag(req), 0);
        let hello = encode(&Envelope {
            id: 1,
            body: Response::Hello {
                protocol: 1,
                server: String::new(),
            },
        })
        .unwrap();
        assert_eq!(tag(hello), 0);
        let err = encode(&Envelope {
            id: 1,
            body: Response::Error(ErrorBody {
                error: String::new(),
                message: String::new(),
                details: None,
            }),
        })
        .unwrap();
        assert_eq!(
            tag(err),
            1,
            "Response::Error moved: old and new releases would misread refusals"
        );
    }

    #[test]
    fn header_limits() {
        assert_eq!(frame_len([0, 0, 0, 0]), Err(FrameError::Empty));
        assert!(matches!(
            frame_len([0xff, 0xff, 0xff, 0xff]),
            Err(FrameError::TooLarge { .. })
        ));
        assert_eq!(frame_len([0, 0, 1, 0]), Ok(256));
    }

    #[test]
    fn trailing_bytes_and_garbage_are_malformed() {
        let mut bytes = encode(&Envelope {
            id: 1,
            body: Request::Health,
        })
        .unwrap();
        bytes.push(0);
        assert!(matches!(
            decode::<Request>(&bytes[HEADER_LEN..]),
            Err(FrameError::Malformed(_))
        ));
        assert!(matches!(
            decode::<Request>(&[0xff; 8]),
            Err(FrameError::Malformed(_))
        ));
    }

    #[test]
    fn decoder_reassembles_split_frames() {
        let a = encode(&Envelope {
            id: 1,
            body: Request::Health,
        })
        .unwrap();
        let b = encode(&Envelope {
            id: 2,
            body: Request::CacheStats,
        })
        .unwrap();
        let all = [a, b].concat();
        let mut d = FrameDecoder::default();
        let mut got = Vec::new();
        for byte in all {
            d.push(&[byte]);
            while let Some(m) = d.next_frame::<Request>().unwrap() {
                got.push(m.id);
            }
        }
        assert_eq!(got, vec![1, 2]);
        assert_eq!(d.pending(), 0);
    }

    #[test]
    fn version_check_names_both() {
        assert!(check_version(1, 1).is_ok());
        let e = check_version(1, 2).unwrap_err();
        assert!(e.contains("version 1") && e.contains("version 2"), "{e}");
    }

    #[test]
    fn socket_path_rules() {
        assert_eq!(
            default_socket_path(Some(Path::new("/run/user/1000")), 1000),
            PathBuf::from("/run/user/1000/extregd/extregd.sock")
        );
        assert_eq!(
            default_socket_path(None, 42),
            PathBuf::from("/tmp/extregd-42/extregd.sock")
        );
        assert_eq!(
            default_socket_path(Some(Path::new("relative")), 7),
            PathBuf::from("/tmp/extregd-7/extregd.sock")
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Any bytes, in any chunking: the decoder returns frames or an
        /// error, never panics, and never holds more than it was given.
        #[test]
        fn decoder_never_panics(data in proptest::collection::vec(any::<u8>(), 0..512), cut in 0usize..512) {
            let mut d = FrameDecoder::default();
            let cut = cut.min(data.len());
            d.push(&data[..cut]);
            let _ = d.next_frame::<Request>();
            d.push(&data[cut..]);
            while let Ok(Some(_)) = d.next_frame::<Response>() {}
            prop_assert!(d.pending() <= data.len());
        }

        /// Valid frames with a flipped byte decode or fail cleanly.
        #[test]
        fn corrupted_frames_fail_cleanly(q in ".{0,40}", limit in any::<u32>(), flip in any::<usize>(), bit in 0u8..8) {
            let env = Envelope { id: 3, body: Request::Search { query: q, ext_type: None, source: None, limit } };
            let mut bytes = encode(&env).unwrap();
            let i = flip % bytes.len();
            bytes[i] ^= 1 << bit;
            let mut d = FrameDecoder::default();
            d.push(&bytes);
            let _ = d.next_frame::<Request>();
        }

        #[test]
        fn requests_round_trip(name in "[a-z0-9-]{1,20}", days in any::<u32>(), id in any::<u64>()) {
            for body in [
                Request::Versions { ext_type: Some(ExtensionType::Provider), name: name.clone() },
                Request::CachePrune { days },
                Request::Pull { ext_type: None, name: name.clone(), constraint: "^1".into(), pre: false, source: Some(Source::Gitea) },
                Request::Load { ext_type: None, name: name.clone(), constraint: String::new(), pre: true, source: None, force: true },
            ] {
                let env = Envelope { id, body };
                let bytes = encode(&env).unwrap();
                prop_assert_eq!(decode::<Request>(&bytes[HEADER_LEN..]).unwrap(), env);
            }
        }
    }
}

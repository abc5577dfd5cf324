//! The local-socket API for `nu_plugin_ext` (protocol in
//! `extreg_shared::protocol`). Everything the REST API offers, plus the
//! operations that change state (cache clear and prune), which exist only
//! here.
//!
//! **Only the daemon's own user can talk to it.** The socket's folder is
//! created 0700 and must belong to us, the socket is 0600, and every
//! accepted peer's effective uid is checked against ours.
//!
//! A connection that sends a malformed, truncated or oversized frame is
//! closed with a logged reason; other connections are not affected.
//!
//! Connections are bounded like HTTP ones (`server.rs`): at most
//! `max_socket_connections`, closed after `idle_timeout` without a frame,
//! cut when the peer reads nothing for `write_timeout`, drained on stop.

use crate::api::AppState;
use crate::error::Error;
use crate::server::{self, AcceptErrors, Lifecycle, Limits, RateLimitedWarn};
use extreg_shared::protocol::{
    check_version, decode, encode, frame_len, CacheEntry, Envelope, PullResult, Request, Response,
    HEADER_LEN, PROTOCOL_VERSION,
};
use extreg_shared::{ErrorBody, ErrorKind};
use interprocess::local_socket::tokio::prelude::*;
use interprocess::local_socket::{GenericFilePath, ListenerOptions};
use interprocess::os::unix::local_socket::ListenerOptionsExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// How long a peer may take to send the rest of a frame it started.
const FRAME_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum IpcError {
    #[error("socket folder {path}: {message}")]
    Folder { path: PathBuf, message: String },
    #[error("another extregd is already listening on {0}")]
    InUse(PathBuf),
    #[error("cannot listen on {path}: {source}")]
    Bind {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Creates the socket's folder owner-only (when it does not exist) and
/// clears a stale socket.
///
/// **Only folders the daemon creates get their mode set**: an existing
/// folder is used as it is, never chmodded. It must be a real folder (not a
/// link) and either ours and not writable by others, or a sticky folder of
/// root's such as `/tmp` (where others cannot remove our socket).
fn prepare(path: &Path) -> Result<(), IpcError> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    let folder_err = |message: String| IpcError::Folder {
        path: dir.to_path_buf(),
        message,
    };
    if std::fs::symlink_metadata(dir).is_err() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| folder_err(e.to_string()))?;
    }
    // Not following links: a link planted at the folder's place (say in
    // /tmp) must not make us bind somewhere else.
    let meta = std::fs::symlink_metadata(dir).map_err(|e| folder_err(e.to_string()))?;
    if !meta.is_dir() {
        return Err(folder_err(
            "is not a folder (a symbolic link is refused)".into(),
        ));
    }
    let mode = meta.permissions().mode();
    let sticky = mode & 0o1000 != 0;
    if meta.uid() == euid() {
        if mode & 0o022 != 0 && !sticky {
            return Err(folder_err(format!(
                "is writable by other users (mode {:o}) without the sticky bit, so they could replace the socket; use a folder only you can write (it is not changed for you)",
                mode & 0o7777
            )));
        }
    } else if !(meta.uid() == 0 && sticky) {
        return Err(folder_err(format!(
            "belongs to uid {}, not to us (uid {})",
            meta.uid(),
            euid()
        )));
    }
    if let Ok(m) = std::fs::symlink_metadata(path) {
        use std::os::unix::fs::FileTypeExt;
        if !m.file_type().is_socket() {
            return Err(IpcError::Folder {
                path: path.to_path_buf(),
                message: "exists and is not a socket; not removing it".into(),
            });
        }
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(IpcError::InUse(path.to_path_buf()));
        }
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

/// Binds the socket; the returned listener is served by [`serve`].
pub fn bind(path: &Path) -> Result<LocalSocketListener, IpcError> {
    prepare(path)?;
    let bind_err = |source| IpcError::Bind {
        path: path.to_path_buf(),
        source,
    };
    let name = path.to_fs_name::<GenericFilePath>().map_err(bind_err)?;
    let listener = ListenerOptions::new()
        .name(name)
        .mode(0o600)
        .create_tokio()
        .map_err(bind_err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(bind_err)?;
    Ok(listener)
}

/// Accepts connections until `life.stop`; each is served by its own task
/// tracked by `life.tracker`, at most `limits.max_socket_connections` at
/// once (a peer over the limit gets a `service_unavailable` answer to its
/// hello and is closed).
pub async fn serve(
    listener: LocalSocketListener,
    state: Arc<AppState>,
    limits: Arc<Limits>,
    life: Lifecycle,
) {
    let me = euid();
    let metrics = state.metrics.clone();
    server::register_listener(&metrics, "socket");
    let slots = Arc::new(Semaphore::new(limits.max_socket_connections));
    let refusing = Arc::new(Semaphore::new(MAX_REFUSING));
    let mut errors = AcceptErrors::new("socket");
    let mut full = RateLimitedWarn::default();
    loop {
        let stream = tokio::select! {
            biased;
            _ = life.stop.cancelled() => break,
            r = listener.accept() => match r {
                Ok(s) => {
                    errors.succeeded();
                    s
                }
                Err(e) => {
                    if let Some(wait) = errors.failed(&e, &metrics) {
                        tokio::select! {
                            _ = life.stop.cancelled() => break,
                            _ = tokio::time::sleep(wait) => {}
                        }
                    }
                    continue;
                }
            },
        };
        match stream.peer_creds().map(|c| c.euid()) {
            Ok(Some(uid)) if uid == me => {}
            Ok(uid) => {
                tracing::warn!(peer_uid = ?uid, "refusing a local socket peer of another user");
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "refusing a local socket peer whose credentials are unknown");
                continue;
            }
        }
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            metrics
                .connections_rejected
                .with_label_values(&["socket"])
                .inc();
            if let Some(held_back) = full.due() {
                tracing::warn!(
                    max = limits.max_socket_connections,
                    held_back,
                    "local socket connection limit reached; refusing new connections"
                );
            }
            if let Ok(p) = refusing.clone().try_acquire_owned() {
                life.tracker
                    .spawn(refuse_busy(stream, limits.max_socket_connections, p));
            }
            continue;
        };
        let state = state.clone();
        let limits = limits.clone();
        let life2 = life.clone();
        life.tracker.spawn(async move {
            let _permit = permit;
            let _open = server::OpenGuard::new(&state.metrics, "socket");
            let timed_out = |kind: &str| {
                state
                    .metrics
                    .connections_timed_out
                    .with_label_values(&["socket", kind])
                    .inc();
            };
            // A write that makes no progress for `write_timeout` fails:
            // the peer stopped reading.
            let mut io = tokio_io_timeout::TimeoutStream::new(stream);
            io.set_write_timeout(Some(limits.write_timeout));
            let io = Box::pin(io);
            let outcome = tokio::select! {
                r = connection(io, &state, &limits, &life2.stop) => r,
                _ = life2.cut.cancelled() => {
                    timed_out("shutdown");
                    return;
                }
            };
            match outcome {
                Ok(Closed::Done) => {}
                Ok(Closed::Idle) => {
                    timed_out("idle");
                    tracing::debug!(
                        "closing a local socket connection idle for {:?}",
                        limits.idle_timeout
                    );
                }
                Err(Cut::WriteStalled) => {
                    timed_out("write");
                    tracing::warn!(
                        "closing local socket connection: the peer read nothing for {:?}",
                        limits.write_timeout
                    );
                }
                Err(Cut::Other(reason)) => {
                    tracing::warn!("closing local socket connection: {reason}")
                }
            }
        });
    }
    tracing::debug!("local socket listener closed");
}

/// Peers over the limit being answered at once; more are closed unanswered.
const MAX_REFUSING: usize = 8;

/// Answers a peer over the connection limit: its hello gets a
/// `service_unavailable` error (bounded in bytes and time), then close.
async fn refuse_busy(
    mut stream: LocalSocketStream,
    max: usize,
    _permit: tokio::sync::OwnedSemaphorePermit,
) {
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let mut header = [0u8; HEADER_LEN];
        stream.read_exact(&mut header).await.ok()?;
        let len = frame_len(header).ok().filter(|n| *n <= 4096)?;
        let mut payload = vec![0u8; len];
        stream.read_exact(&mut payload).await.ok()?;
        let req: Envelope<Request> = decode(&payload).ok()?;
        let body = error(
            ErrorKind::ServiceUnavailable,
            format!(
                "extregd is serving its maximum of {max} local socket connections; retry shortly"
            ),
        );
        let bytes = encode(&Envelope { id: req.id, body }).ok()?;
        stream.write_all(&bytes).await.ok()
    })
    .await;
}

/// How a connection ended without a fault.
enum Closed {
    /// The peer hung up, or the daemon is stopping.
    Done,
    /// No frame within the idle timeout.
    Idle,
}

/// Why a connection was cut.
enum Cut {
    WriteStalled,
    Other(String),
}

impl From<String> for Cut {
    fn from(s: String) -> Cut {
        Cut::Other(s)
    }
}

/// Serves one connection until the peer hangs up, idles past the timeout,
/// or `stop` (a request in flight is answered first).
async fn connection<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    state: &Arc<AppState>,
    limits: &Limits,
    stop: &CancellationToken,
) -> Result<Closed, Cut> {
    let (recv, mut send) = tokio::io::split(stream);
    // Buffered, so a hang-up can be noticed during a request without
    // consuming the bytes of a next one (see `serve_request`).
    let mut stream = tokio::io::BufReader::new(recv);
    let mut greeted = false;
    loop {
        let mut header = [0u8; HEADER_LEN];
        tokio::select! {
            r = tokio::time::timeout(limits.idle_timeout, stream.read_exact(&mut header)) => match r {
                Ok(Ok(_)) => {}
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(Closed::Done),
                Ok(Err(e)) => return Err(format!("read failed: {e}").into()),
                Err(_) => return Ok(Closed::Idle),
            },
            _ = stop.cancelled() => return Ok(Closed::Done),
        }
        let len = frame_len(header).map_err(|e| e.to_string())?;
        // Grown as bytes arrive: an announced length costs nothing until
        // the bytes are really sent.
        let mut payload = Vec::with_capacity(len.min(64 * 1024));
        let mut limited = (&mut stream).take(len as u64);
        match tokio::time::timeout(FRAME_TIMEOUT, limited.read_to_end(&mut payload)).await {
            Ok(Ok(n)) if n == len => {}
            Ok(Ok(n)) => {
                return Err(format!(
                    "truncated frame: announced {len} bytes, the peer hung up after {n}"
                )
                .into())
            }
            Ok(Err(e)) => return Err(format!("read failed: {e}").into()),
            Err(_) => {
                return Err(format!(
                    "truncated frame: {len} bytes announced, not sent within {FRAME_TIMEOUT:?}"
                )
                .into())
            }
        }
        let req: Envelope<Request> = decode(&payload).map_err(|e| e.to_string())?;
        let id = req.id;
        let (resp, close) = match (greeted, req.body) {
            (false, Request::Hello { protocol, client }) => {
                match check_version(PROTOCOL_VERSION, protocol) {
                    Ok(()) => {
                        greeted = true;
                        tracing::debug!(%client, "local socket client connected");
                        (
                            Response::Hello {
                                protocol: PROTOCOL_VERSION,
                                server: format!("extregd {}", env!("CARGO_PKG_VERSION")),
                            },
                            false,
                        )
                    }
                    Err(msg) => (error(ErrorKind::VersionMismatch, msg), true),
                }
            }
            (false, _) => (
                error(
                    ErrorKind::InvalidRequest,
                    "the first message must be a hello".into(),
                ),
                true,
            ),
            (true, Request::Hello { .. }) => (
                error(ErrorKind::InvalidRequest, "hello was already sent".into()),
                true,
            ),
            (true, body) => match serve_request(state, id, body, &mut stream, &mut send).await? {
                Some(resp) => (resp, false),
                // The client hung up: its request was dropped (cancelled).
                None => return Ok(Closed::Done),
            },
        };
        let bytes = encode(&Envelope { id, body: resp }).map_err(|e| e.to_string())?;
        send.write_all(&bytes).await.map_err(|e| {
            if e.kind() == std::io::ErrorKind::TimedOut {
                Cut::WriteStalled
            } else {
                Cut::Other(format!("write failed: {e}"))
            }
        })?;
        if close {
            return Err("handshake refused".to_string().into());
        }
        // Stopping: the answer in flight was sent; take no further request.
        if stop.is_cancelled() {
            return Ok(Closed::Done);
        }
    }
}

/// Runs one request. For `Pull`, `Load` and `Publish`, progress frames
/// (`Response::Progress`, same id) are written while it works. Returns the
/// final answer, or `None` when the client hung up first: the request's
/// future is then dropped, which cancels what only it was waiting for
/// (a download other clients wait on goes on).
async fn serve_request<R, W>(
    state: &Arc<AppState>,
    id: u64,
    body: Request,
    recv: &mut tokio::io::BufReader<R>,
    send: &mut W,
) -> Result<Option<Response>, String>
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::AsyncBufReadExt;
    if let Request::Complete { ext_type, name } = &body {
        if let Some(n) = name {
            if let Err(e) = extreg_shared::validate_name(n) {
                return Ok(Some(Response::Failed(Error::from(e).failure())));
            }
        }
        return Ok(Some(Response::Completions(crate::complete::candidates(
            state,
            *ext_type,
            name.as_deref(),
        ))));
    }
    let (progress, mut rx) = crate::progress::ProgressTx::channel();
    let work = dispatch(state, body, &progress);
    tokio::pin!(work);
    let mut watching = true;
    let mut last: Option<(extreg_shared::protocol::Phase, tokio::time::Instant)> = None;
    let mut pending = false;
    let mut next_at = tokio::time::Instant::now();
    loop {
        tokio::select! {
            r = &mut work => return Ok(Some(r.unwrap_or_else(|e| Response::Failed(e.failure())))),
            r = recv.fill_buf(), if watching => match r {
                Ok([]) | Err(_) => return Ok(None),
                // The next request is arriving already: it stays buffered.
                Ok(_) => watching = false,
            },
            ch = rx.changed(), if !pending => {
                if ch.is_err() {
                    continue;
                }
                let phase = rx.borrow().as_ref().map(|e| e.phase);
                let now = tokio::time::Instant::now();
                match (last, phase) {
                    (Some((p, at)), Some(ph)) if p == ph && now < at + crate::progress::FRAME_INTERVAL => {
                        pending = true;
                        next_at = at + crate::progress::FRAME_INTERVAL;
                    }
                    _ => {
                        last = write_progress(&mut rx, id, send).await?.or(last);
                    }
                }
            },
            _ = tokio::time::sleep_until(next_at), if pending => {
                pending = false;
                last = write_progress(&mut rx, id, send).await?.or(last);
            },
        }
    }
}

/// Writes the latest progress event; returns its phase and when it went.
async fn write_progress<W: tokio::io::AsyncWrite + Unpin>(
    rx: &mut tokio::sync::watch::Receiver<Option<extreg_shared::protocol::ProgressEvent>>,
    id: u64,
    send: &mut W,
) -> Result<Option<(extreg_shared::protocol::Phase, tokio::time::Instant)>, String> {
    let Some(ev) = rx.borrow_and_update().clone() else {
        return Ok(None);
    };
    let phase = ev.phase;
    let bytes = encode(&Envelope {
        id,
        body: Response::Progress(ev),
    })
    .map_err(|e| e.to_string())?;
    send.write_all(&bytes)
        .await
        .map_err(|e| format!("write failed: {e}"))?;
    Ok(Some((phase, tokio::time::Instant::now())))
}

/// The type asked for, or the one type that holds `name`.
async fn type_of(
    reg: &crate::catalogue::Catalogue,
    ext_type: Option<extreg_shared::ExtensionType>,
    name: &str,
) -> Result<extreg_shared::ExtensionType, Error> {
    match ext_type {
        Some(t) => Ok(t),
        None => reg.resolve_type(name).await,
    }
}

fn need_oci(state: &AppState) -> Result<&std::sync::Arc<crate::backend::oci::OciBackend>, Error> {
    state.oci.as_ref().ok_or_else(|| {
        Error::invalid_request(
            "publishing needs the OCI backend: configure [oci] registry (or PROVISIONING_OCI_REGISTRY) and restart extregd, or name a registry with --registry",
        )
    })
}

fn publish_error(e: crate::publish::PublishError) -> Error {
    use crate::publish::PublishError as P;
    match e {
        P::Invalid(m) => Error::invalid_request(m),
        P::Exists { .. } => Error::invalid_request(e.to_string()),
        P::NotFound(m) => Error::not_found(format!("{m} is not in the registry")),
        P::Backend(b) => Error::backend(extreg_shared::Source::Oci, &b),
    }
}

/// A handshake refusal: `Response::Error` keeps its wire place for peers
/// of other releases.
fn error(kind: ErrorKind, message: String) -> Response {
    Response::Error(ErrorBody {
        error: kind.code().into(),
        message,
        details: None,
    })
}

fn rfc3339(secs: u64) -> String {
    crate::backend::rfc3339_secs(secs)
}

/// `ext publish`, to the configured registry or the one asked for.
async fn publish_request(
    state: &AppState,
    spec: extreg_shared::protocol::PublishSpec,
) -> Result<Response, Error> {
    let reg = &state.catalogue;
    let elsewhere = spec.registry.is_some() || spec.namespace.is_some();
    let target = if elsewhere {
        let configured = state.oci_config.as_ref().zip(state.oci.as_ref());
        let wanted = crate::remote::Wanted {
            registry: spec.registry.as_deref(),
            namespace: spec.namespace.as_deref(),
            auth_file: None,
        };
        crate::remote::target(configured, &wanted, &crate::auth_files::AuthEnv::from_env())
            .map_err(|m| Error::invalid_request(m).with_field(extreg_shared::Field::Registry))?
            .backend
    } else {
        need_oci(state)?.clone()
    };
    let dir = std::path::PathBuf::from(&spec.path);
    if !dir.is_absolute() || !dir.is_dir() {
        return Err(Error::invalid_request(format!(
            "{} is not a folder (give an absolute path to a folder holding extension.yaml)",
            spec.path
        ))
        .with_field(extreg_shared::Field::Path));
    }
    let opts = crate::publish::PublishOptions {
        force: spec.force,
        dry_run: spec.dry_run,
        created: None,
    };
    let r = crate::publish::publish_with(&target, &dir, &spec.version, &opts)
        .await
        .map_err(publish_error)?;
    if r.pushed {
        reg.clear_metadata();
    }
    Ok(Response::Published(
        extreg_shared::protocol::PublishResult {
            name: r.name,
            ext_type: r.ext_type,
            version: r.version,
            reference: r.reference,
            manifest_digest: r.manifest_digest,
            layer_digest: r.layer_digest,
            size: r.size,
            pushed: r.pushed,
            replaced: r.replaced,
        },
    ))
}

fn cache_entry(e: crate::artifacts::IndexEntry) -> CacheEntry {
    CacheEntry {
        ext_type: e.ext_type,
        name: e.name,
        version: e.version,
        source: e.source,
        size: e.size,
        digest: e.digest,
        cached_at: rfc3339(e.cached_at),
        last_used: rfc3339(e.last_used),
    }
}

async fn dispatch(
    state: &AppState,
    req: Request,
    progress: &crate::progress::ProgressTx,
) -> Result<Response, Error> {
    let reg = &state.catalogue;
    let check_name = |n: &str| extreg_shared::validate_name(n).map_err(Error::from);
    Ok(match req {
        Request::Hello { .. } => unreachable!("handled by the caller"),
        Request::List { ext_type, source } => {
            let (items, _) = reg.list_records(ext_type, source).await?;
            Response::Extensions {
                total: items.len() as u64,
                items,
            }
        }
        Request::Search {
            query,
            ext_type,
            source,
            limit,
        } => {
            if query.trim().is_empty() {
                return Err(Error::invalid_request("the search query is empty"));
            }
            let (items, total, _) = reg
                .search_records(query.trim(), ext_type, source, limit.max(1) as usize)
                .await?;
            Response::Extensions {
                items,
                total: total as u64,
            }
        }
        Request::Info {
            ext_type,
            name,
            version,
        } => {
            check_name(&name)?;
            let t = type_of(reg, ext_type, &name).await?;
            let mut rec = reg.version_record(t, &name, version.as_deref()).await?;
            reg.artifacts().annotate(&mut rec);
            Response::Extension(rec)
        }
        Request::Versions { ext_type, name } => {
            check_name(&name)?;
            let t = type_of(reg, ext_type, &name).await?;
            let v = reg.versions(t, &name).await?;
            Response::Versions(
                v.entries
                    .iter()
                    .map(|e| {
                        let mut rec = e.record.clone();
                        reg.artifacts().annotate(&mut rec);
                        (&rec).into()
                    })
                    .collect(),
            )
        }
        Request::Pull {
            ext_type,
            name,
            constraint,
            pre,
            source,
        } => {
            check_name(&name)?;
            let c = extreg_shared::Constraint::parse(&constraint)?;
            progress.send(extreg_shared::protocol::Phase::Resolve, 0, None);
            let t = type_of(reg, ext_type, &name).await?;
            let entry = reg.resolve_from(t, &name, &c, pre, source).await?;
            let art = crate::progress::artifact(reg, &entry, false, progress).await?;
            Response::Pulled(PullResult {
                extension: entry.record,
                digest: art.digest,
                size: art.size,
                path: art.path.display().to_string(),
                cached: art.hit,
            })
        }
        Request::Load {
            ext_type,
            name,
            constraint,
            pre,
            source,
            force,
        } => {
            check_name(&name)?;
            let constraint = extreg_shared::Constraint::parse(&constraint)?;
            let ext_type = type_of(reg, ext_type, &name).await?;
            Response::Loaded(
                state
                    .loader
                    .load(
                        reg,
                        crate::load::LoadRequest {
                            ext_type,
                            name,
                            constraint,
                            pre,
                            source,
                            force,
                        },
                        progress,
                    )
                    .await?,
            )
        }
        Request::Loaded => Response::LoadedList(state.loader.loaded()),
        Request::Publish {
            path,
            version,
            dry_run,
            force,
        } => {
            progress.send(extreg_shared::protocol::Phase::Push, 0, None);
            publish_request(
                state,
                extreg_shared::protocol::PublishSpec {
                    path,
                    version,
                    dry_run,
                    force,
                    registry: None,
                    namespace: None,
                },
            )
            .await?
        }
        Request::Delete {
            ext_type,
            name,
            version,
        } => {
            check_name(&name)?;
            // Validated as semver, but passed on as written: a tag may carry
            // a leading `v` (the backend lists `v1.2.3` as 1.2.3).
            extreg_shared::parse_version(&version)?;
            let oci = need_oci(state)?;
            crate::publish::delete(oci, ext_type, &name, &version)
                .await
                .map_err(publish_error)?;
            reg.clear_metadata();
            Response::Deleted {
                reference: oci.reference(&oci.repository(ext_type, &name), &version),
            }
        }
        Request::Health => Response::Health(crate::api::health_report(state).await),
        Request::CacheList => Response::CacheEntries(
            reg.artifacts()
                .entries()
                .into_iter()
                .map(cache_entry)
                .collect(),
        ),
        Request::CacheStats => Response::CacheStats(reg.cache_stats()),
        Request::CacheClear {
            ext_type,
            name,
            all,
        } => {
            if let Some(n) = &name {
                check_name(n)?;
            }
            if !all && ext_type.is_none() && name.is_none() {
                return Err(Error::invalid_request(
                    "say what to clear: --all, or --type and/or --name",
                ));
            }
            let (entries, bytes) = reg.artifacts().remove_where(|e| {
                all || (ext_type.is_none_or(|t| e.ext_type == t)
                    && name.as_deref().is_none_or(|n| e.name == n))
            });
            reg.clear_metadata();
            Response::CacheRemoved { entries, bytes }
        }
        Request::CacheVerify => {
            let r = reg.artifacts().verify_all().await;
            reg.clear_metadata();
            Response::CacheVerified {
                checked: r.checked,
                bytes: r.bytes,
                damaged: r.damaged.into_iter().map(cache_entry).collect(),
            }
        }
        Request::CachePrune { days } => {
            let (entries, bytes) = reg.artifacts().prune(days);
            Response::CacheRemoved { entries, bytes }
        }
        Request::PublishTo(spec) => {
            progress.send(extreg_shared::protocol::Phase::Push, 0, None);
            publish_request(state, spec).await?
        }
        Request::Discover { ext_type, refresh } => {
            if refresh {
                reg.refresh(ext_type);
            }
            Response::Discovered(reg.discover(ext_type).await?)
        }
        Request::CachePruneOlderThan { seconds } => {
            let (entries, bytes) = reg.artifacts().prune_older_than(seconds);
            Response::CacheRemoved { entries, bytes }
        }
        Request::Complete { .. } => unreachable!("handled by serve_request"),
        Request::LoadTree {
            ext_type,
            name,
            constraint,
            pre,
            source,
            force,
        } => {
            check_name(&name)?;
            let c = extreg_shared::Constraint::parse(&constraint)?;
            let t = type_of(reg, ext_type, &name).await?;
            Response::LoadedTree(
                crate::deps::load_tree(
                    reg,
                    &state.loader,
                    t,
                    &name,
                    c,
                    &constraint,
                    pre,
                    source,
                    force,
                    progress,
                )
                .await?,
            )
        }
        Request::LoadLocked { entries, force } => Response::LoadedTree(
            crate::deps::load_locked(reg, &state.loader, entries, force, progress).await?,
        ),
        Request::Deps {
            ext_type,
            name,
            constraint,
            pre,
            source,
        } => {
            check_name(&name)?;
            let c = extreg_shared::Constraint::parse(&constraint)?;
            let t = type_of(reg, ext_type, &name).await?;
            let closure =
                crate::deps::resolve(reg, t, &name, c, &constraint, pre, source, None).await?;
            Response::DepsTree(crate::deps::tree(&closure))
        }
        Request::Sign {
            path,
            version,
            secret_key,
            password,
            dry_run,
        } => {
            let oci = need_oci(state)?;
            let dir = std::path::PathBuf::from(&path);
            let key = std::path::PathBuf::from(&secret_key);
            if !dir.is_absolute() || !dir.is_dir() {
                return Err(Error::invalid_request(format!(
                    "{path} is not a folder (give an absolute path to a folder holding extension.yaml)"
                ))
                .with_field(extreg_shared::Field::Path));
            }
            if !key.is_absolute() {
                return Err(Error::invalid_request(format!(
                    "{secret_key}: give the secret key as an absolute path"
                ))
                .with_field(extreg_shared::Field::Path));
            }
            let r = crate::signature::sign_published(oci, &dir, &version, &key, password, dry_run)
                .await?;
            if r.pushed {
                reg.clear_metadata();
            }
            Response::Signed(r)
        }
    })
}

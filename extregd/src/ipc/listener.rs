//! Binding the socket (folder and socket modes, stale sockets) and the
//! accept loop: peer-uid check, connection limits, one task per connection.

use super::connection::{connection, Closed, Cut};
use super::dispatch::error;
use crate::app::App;
use crate::server::{self, AcceptErrors, Lifecycle, Limits};
use extreg_shared::protocol::{decode, encode, frame_len, Envelope, Request, HEADER_LEN};
use extreg_shared::ErrorKind;
use interprocess::local_socket::tokio::prelude::*;
use interprocess::local_socket::{GenericFilePath, ListenerOptions};
use interprocess::os::unix::local_socket::ListenerOptionsExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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
    state: Arc<App>,
    limits: Arc<Limits>,
    life: Lifecycle,
) {
    let me = euid();
    let metrics = state.metrics.clone();
    server::register_listener(&metrics, "socket");
    let mut gate = server::Gate::new("socket", limits.max_socket_connections, MAX_REFUSING);
    let mut errors = AcceptErrors::new("socket");
    while let Some(stream) = errors.next(&life, &metrics, || listener.accept()).await {
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
        let max = limits.max_socket_connections;
        let Some((stream, permit)) =
            gate.admit(stream, &metrics, &life, |s, p| refuse_busy(s, max, p))
        else {
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

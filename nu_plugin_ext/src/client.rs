//! The socket client: connect (starting the daemon when none listens),
//! hello, one request, one response. Failures are classified so the user
//! is told what to do: not running, could not start, version mismatch,
//! the daemon's own error, or a broken exchange.

use crate::settings::Settings;
use extreg_shared::protocol::{
    check_version, decode, encode, frame_len, Envelope, Failure, ProgressEvent, Request, Response,
    HEADER_LEN, PROTOCOL_VERSION,
};
use interprocess::local_socket::tokio::prelude::*;
use interprocess::local_socket::GenericFilePath;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ClientError {
    #[error("extregd is not running (no daemon at {socket}): {detail}")]
    NotRunning { socket: PathBuf, detail: String },
    #[error("could not start extregd: {detail}")]
    StartFailed { detail: String },
    #[error("{0}")]
    VersionMismatch(String),
    #[error("{}", .0.message)]
    Daemon(Failure),
    #[error("talking to extregd failed: {0}")]
    Protocol(String),
    #[error("extregd sent nothing for {0:?}")]
    Timeout(Duration),
    #[error("interrupted: stopped waiting for extregd")]
    Interrupted,
}

impl ClientError {
    /// What the user can do about it.
    pub fn help(&self) -> String {
        match self {
            ClientError::NotRunning { .. } | ClientError::StartFailed { .. } => {
                "start the daemon: `systemctl --user start extregd` (see README), or run `extregd` in a terminal; \
                 set $env.config.plugins.ext.socket if it listens elsewhere"
                    .into()
            }
            ClientError::VersionMismatch(_) => {
                "install extregd and nu_plugin_ext from the same build, then `plugin add` the plugin again".into()
            }
            ClientError::Timeout(_) => {
                "the daemon or a backend may be stuck; raise $env.config.plugins.ext.timeout (the longest silence allowed, not a limit on total time)".into()
            }
            ClientError::Interrupted => {
                "extregd cancels the work unless another client waits for it; nothing half-done is kept".into()
            }
            ClientError::Daemon(b) => b.details.clone().unwrap_or_default(),
            ClientError::Protocol(_) => "check the daemon's log (journalctl --user -u extregd)".into(),
        }
    }
}

pub struct Connection {
    stream: LocalSocketStream,
    next_id: u64,
    timeout: Duration,
}

async fn open(path: &Path) -> std::io::Result<LocalSocketStream> {
    let name = path.to_fs_name::<GenericFilePath>()?;
    LocalSocketStream::connect(name).await
}

fn absent(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
    )
}

/// The daemon binary: the configured one, else `extregd` next to this
/// plugin, else on PATH.
pub fn daemon_binary(settings: &Settings) -> Option<PathBuf> {
    if let Some(d) = &settings.daemon {
        return Some(d.clone());
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("extregd")));
    if let Some(b) = beside.filter(|b| b.is_file()) {
        return Some(b);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("extregd"))
            .find(|p| p.is_file())
    })
}

/// Starts the daemon detached (its own process group, so Ctrl-C in Nushell
/// does not stop it) with the user's default config; its stderr goes to
/// `extregd.log` beside the socket.
fn start_daemon(settings: &Settings) -> Result<std::process::Child, ClientError> {
    use std::os::unix::fs::DirBuilderExt;
    use std::os::unix::process::CommandExt;
    let bin = daemon_binary(settings).ok_or_else(|| ClientError::StartFailed {
        detail:
            "no extregd binary next to the plugin or on PATH (set $env.config.plugins.ext.daemon)"
                .into(),
    })?;
    let dir = settings.socket.parent().unwrap_or(Path::new("/tmp"));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| ClientError::StartFailed {
            detail: format!("cannot create {}: {e}", dir.display()),
        })?;
    // The same checks the daemon makes: our own folder, not a link.
    {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::symlink_metadata(dir).map_err(|e| ClientError::StartFailed {
            detail: format!("{}: {e}", dir.display()),
        })?;
        // SAFETY: geteuid has no preconditions and cannot fail.
        let me = unsafe { libc::geteuid() };
        if !m.is_dir() || m.uid() != me {
            return Err(ClientError::StartFailed {
                detail: format!(
                    "{} is not a folder of ours (a link, or another user's); refusing to use it",
                    dir.display()
                ),
            });
        }
    }
    use std::os::unix::fs::OpenOptionsExt;
    let log_path = dir.join("extregd.log");
    let log = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .custom_flags(libc::O_NOFOLLOW)
        .mode(0o600)
        .open(&log_path)
        .map_err(|e| ClientError::StartFailed {
            detail: format!("cannot write {}: {e}", log_path.display()),
        })?;
    let mut cmd = Command::new(&bin);
    cmd.arg("--socket")
        .arg(&settings.socket)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .process_group(0);
    cmd.spawn().map_err(|e| ClientError::StartFailed {
        detail: format!("{}: {e}", bin.display()),
    })
}

impl Connection {
    /// Connects and says hello, starting the daemon if allowed and needed.
    pub async fn open(settings: &Settings) -> Result<Connection, ClientError> {
        let stream = match open(&settings.socket).await {
            Ok(s) => s,
            Err(e) if absent(&e) && settings.autostart => Self::start_and_wait(settings).await?,
            Err(e) => {
                return Err(ClientError::NotRunning {
                    socket: settings.socket.clone(),
                    detail: e.to_string(),
                })
            }
        };
        let mut conn = Connection {
            stream,
            next_id: 1,
            timeout: settings.timeout,
        };
        let hello = Request::Hello {
            protocol: PROTOCOL_VERSION,
            client: format!("nu_plugin_ext {}", env!("CARGO_PKG_VERSION")),
        };
        match conn.exchange(hello).await? {
            Response::Hello { protocol, .. } => {
                check_version(protocol, PROTOCOL_VERSION).map_err(ClientError::VersionMismatch)?;
                Ok(conn)
            }
            Response::Error(b) if b.error == "version_mismatch" => {
                Err(ClientError::VersionMismatch(b.message))
            }
            Response::Error(b) => Err(ClientError::Daemon(b.into())),
            other => Err(ClientError::Protocol(format!(
                "unexpected answer to hello: {other:?}"
            ))),
        }
    }

    async fn start_and_wait(settings: &Settings) -> Result<LocalSocketStream, ClientError> {
        let mut child = start_daemon(settings)?;
        let mut deadline = Instant::now() + settings.start_timeout;
        let mut exited = None;
        loop {
            match open(&settings.socket).await {
                Ok(s) => return Ok(s),
                Err(e) if !absent(&e) => {
                    return Err(ClientError::StartFailed {
                        detail: e.to_string(),
                    })
                }
                Err(_) => {}
            }
            if exited.is_none() {
                // Another command may have started a daemon at the same
                // moment (ours then lost the race and exits): keep polling
                // for a while before reporting why ours stopped.
                exited = child.try_wait().ok().flatten();
                if exited.is_some() {
                    deadline = deadline.min(Instant::now() + Duration::from_secs(2));
                }
            }
            if let (Some(status), true) = (exited, Instant::now() >= deadline) {
                let log = settings.socket.with_file_name("extregd.log");
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                let tail: String = lines[lines.len().saturating_sub(5)..]
                    .join("\n")
                    .chars()
                    .filter(|c| *c == '\n' || !c.is_control())
                    .collect();
                return Err(ClientError::StartFailed {
                    detail: format!("extregd exited ({status}): {}", tail.trim()),
                });
            }
            if Instant::now() >= deadline {
                return Err(ClientError::StartFailed {
                    detail: format!(
                        "started extregd, but {} did not appear within {:?}",
                        settings.socket.display(),
                        settings.start_timeout
                    ),
                });
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Sends one request and returns its response (an error response as
    /// `ClientError::Daemon`).
    pub async fn call(&mut self, req: Request) -> Result<Response, ClientError> {
        self.call_with(req, &mut |_| {}).await
    }

    /// Like [`Self::call`], handing each progress frame to `on_progress`.
    pub async fn call_with(
        &mut self,
        req: Request,
        on_progress: &mut dyn FnMut(&ProgressEvent),
    ) -> Result<Response, ClientError> {
        match self.exchange_with(req, on_progress).await? {
            Response::Failed(f) => Err(ClientError::Daemon(f)),
            Response::Error(b) => Err(ClientError::Daemon(b.into())),
            r => Ok(r),
        }
    }

    async fn exchange(&mut self, req: Request) -> Result<Response, ClientError> {
        self.exchange_with(req, &mut |_| {}).await
    }

    /// Sends `req` and reads frames until its answer. The timeout bounds
    /// each silence (the wait for the next frame), not the whole exchange:
    /// progress frames keep a long download alive.
    async fn exchange_with(
        &mut self,
        req: Request,
        on_progress: &mut dyn FnMut(&ProgressEvent),
    ) -> Result<Response, ClientError> {
        let id = self.next_id;
        self.next_id += 1;
        let timeout = self.timeout;
        let bytes = encode(&Envelope { id, body: req })
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        tokio::time::timeout(timeout, self.stream.write_all(&bytes))
            .await
            .map_err(|_| ClientError::Timeout(timeout))?
            .map_err(|e| ClientError::Protocol(format!("send: {e}")))?;
        loop {
            let resp = tokio::time::timeout(timeout, self.read_frame())
                .await
                .map_err(|_| ClientError::Timeout(timeout))??;
            if resp.id != id {
                return Err(ClientError::Protocol(format!(
                    "answer {} does not match request {id}",
                    resp.id
                )));
            }
            match resp.body {
                Response::Progress(ev) => on_progress(&ev),
                body => return Ok(body),
            }
        }
    }

    async fn read_frame(&mut self) -> Result<Envelope<Response>, ClientError> {
        let mut header = [0u8; HEADER_LEN];
        self.stream
            .read_exact(&mut header)
            .await
            .map_err(|e| ClientError::Protocol(format!("the daemon closed the connection: {e}")))?;
        let len = frame_len(header).map_err(|e| ClientError::Protocol(e.to_string()))?;
        let mut payload = vec![0u8; len];
        self.stream
            .read_exact(&mut payload)
            .await
            .map_err(|e| ClientError::Protocol(format!("truncated answer: {e}")))?;
        decode(&payload).map_err(|e| ClientError::Protocol(e.to_string()))
    }
}

/// Connect, send one request, return the response.
pub async fn request(settings: &Settings, req: Request) -> Result<Response, ClientError> {
    let mut c = Connection::open(settings).await?;
    c.call(req).await
}

/// Like [`request`], with progress frames handed to `on_progress`, and
/// given up at once (the connection dropped, so the daemon cancels what
/// no one else waits for) when `interrupted` completes.
pub async fn request_with(
    settings: &Settings,
    req: Request,
    on_progress: &mut dyn FnMut(&ProgressEvent),
    interrupted: impl std::future::Future<Output = ()>,
) -> Result<Response, ClientError> {
    let work = async {
        let mut c = Connection::open(settings).await?;
        c.call_with(req, on_progress).await
    };
    tokio::select! {
        r = work => r,
        _ = interrupted => Err(ClientError::Interrupted),
    }
}

/// Asks for completion candidates: never starts the daemon, and gives up
/// after `limit` in all (a Tab must not hang).
pub async fn completions(
    settings: &Settings,
    req: Request,
    limit: Duration,
) -> Result<Response, ClientError> {
    let mut s = settings.clone();
    s.autostart = false;
    s.timeout = limit;
    tokio::time::timeout(limit, request(&s, req))
        .await
        .map_err(|_| ClientError::Timeout(limit))?
}

//! One connection: frames in (bounded in bytes and time), the hello,
//! then requests, each answered after its progress frames; a client that
//! hangs up cancels its request.

use super::dispatch::{answer, dispatch, error, failed};
use crate::app::App;
use crate::server::Limits;
use extreg_shared::protocol::{
    check_version, decode, encode, frame_len, Envelope, Request, Response, HEADER_LEN,
    PROTOCOL_VERSION,
};
use extreg_shared::ErrorKind;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

/// How long a peer may take to send the rest of a frame it started.
const FRAME_TIMEOUT: Duration = Duration::from_secs(30);

/// How a connection ended without a fault.
pub(super) enum Closed {
    /// The peer hung up, or the daemon is stopping.
    Done,
    /// No frame within the idle timeout.
    Idle,
}

/// Why a connection was cut.
pub(super) enum Cut {
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
pub(super) async fn connection<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    state: &Arc<App>,
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
    state: &Arc<App>,
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
    if let Request::Complete { .. } = &body {
        // Answered from caches at once: no progress to forward.
        return Ok(Some(answer(state, body).await));
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
            r = &mut work => return Ok(Some(r.unwrap_or_else(failed))),
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

//! Being a good systemd (and container) citizen:
//!
//! - **Readiness** (`Type=notify`): [`notify_ready`] sends `READY=1` through
//!   `$NOTIFY_SOCKET` (the `sd-notify` crate) once the HTTP listener and the
//!   local socket are bound; a no-op outside systemd.
//! - **Socket activation** (`listenfd`): [`init_activation`] takes the
//!   sockets systemd (or `systemd-socket-activate`) passed in
//!   `LISTEN_FDS`, before the runtime starts threads; `boot` then serves on
//!   the inherited TCP listener and local socket instead of binding.
//! - **journald logs**: when stderr is the journal (`$JOURNAL_STREAM` names
//!   stderr's device and inode), log lines carry no timestamp (journald
//!   stamps them) and start with a `<N>` syslog priority (sd-daemon(3)), so
//!   `journalctl -p warning` works.

use std::os::fd::OwnedFd;
use std::sync::Mutex;

/// Sockets inherited through socket activation, taken once.
#[derive(Debug, Default)]
pub struct Activated {
    pub tcp: Option<std::net::TcpListener>,
    pub unix: Option<std::os::unix::net::UnixListener>,
}

static ACTIVATED: Mutex<Option<Activated>> = Mutex::new(None);

/// Reads `LISTEN_FDS`/`LISTEN_PID` (and clears them, so children do not
/// inherit them): the first TCP and the first unix stream listener passed
/// are kept for `boot`. Call before the async runtime starts.
pub fn init_activation() -> std::io::Result<()> {
    let mut fds = listenfd::ListenFd::from_env();
    let mut got = Activated::default();
    for i in 0..fds.len() {
        if got.tcp.is_none() {
            if let Ok(Some(l)) = fds.take_tcp_listener(i) {
                got.tcp = Some(l);
                continue;
            }
        }
        if got.unix.is_none() {
            if let Ok(Some(l)) = fds.take_unix_listener(i) {
                got.unix = Some(l);
                continue;
            }
        }
        if let Ok(Some(fd)) = fds.take_raw_fd(i) {
            tracing::warn!(
                fd,
                "ignoring an inherited socket that is neither TCP nor a unix stream listener"
            );
        }
    }
    if got.tcp.is_some() || got.unix.is_some() {
        tracing::info!(
            tcp = got.tcp.is_some(),
            unix = got.unix.is_some(),
            "socket activation: serving on inherited sockets"
        );
    }
    *ACTIVATED.lock().unwrap_or_else(|e| e.into_inner()) = Some(got);
    Ok(())
}

/// The inherited TCP listener, if any (as a tokio listener).
pub fn take_tcp() -> std::io::Result<Option<tokio::net::TcpListener>> {
    let l = ACTIVATED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_mut()
        .and_then(|a| a.tcp.take());
    match l {
        Some(l) => {
            l.set_nonblocking(true)?;
            Ok(Some(tokio::net::TcpListener::from_std(l)?))
        }
        None => Ok(None),
    }
}

/// The inherited local socket, if any, with its path.
pub fn take_unix() -> std::io::Result<
    Option<(
        interprocess::local_socket::tokio::Listener,
        std::path::PathBuf,
    )>,
> {
    let l = ACTIVATED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_mut()
        .and_then(|a| a.unix.take());
    let Some(l) = l else { return Ok(None) };
    let path = l
        .local_addr()?
        .as_pathname()
        .map(|p| p.to_path_buf())
        .unwrap_or_default();
    let fd: OwnedFd = l.into();
    let uds = interprocess::os::unix::uds_local_socket::tokio::Listener::try_from(fd)?;
    Ok(Some((uds.into(), path)))
}

/// Tells systemd the daemon is ready (`READY=1` and a status line). A
/// no-op without `$NOTIFY_SOCKET`; a failure is logged, never fatal.
pub fn notify_ready(status: &str) {
    use sd_notify::NotifyState;
    if let Err(e) = sd_notify::notify(&[NotifyState::Ready, NotifyState::Status(status)]) {
        tracing::warn!(error = %e, "cannot notify systemd of readiness");
    }
}

/// Tells systemd the daemon is stopping.
pub fn notify_stopping() {
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
}

/// True when stderr is connected to the journal: `$JOURNAL_STREAM` is
/// `DEV:INODE` of stderr (systemd.exec(5)).
pub fn stderr_is_journal() -> bool {
    let Some(v) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = v.to_str().and_then(|s| s.split_once(':')) else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else {
        return false;
    };
    // fstat of fd 2 through a duplicate (std, no unsafe).
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let Ok(fd) = std::io::stderr().as_fd().try_clone_to_owned() else {
        return false;
    };
    let Ok(meta) = std::fs::File::from(fd).metadata() else {
        return false;
    };
    meta.dev() == dev && meta.ino() == ino
}

/// Log lines for the journal: `<N>target: message key=value`, no time (the
/// journal stamps entries), no colours.
pub struct JournalFormat;

impl<S, N> tracing_subscriber::fmt::FormatEvent<S, N> for JournalFormat
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        use tracing::Level;
        let meta = event.metadata();
        // syslog priorities: err 3, warning 4, info 6, debug 7.
        let prio = match *meta.level() {
            Level::ERROR => 3,
            Level::WARN => 4,
            Level::INFO => 6,
            Level::DEBUG | Level::TRACE => 7,
        };
        write!(writer, "<{prio}>{}: ", meta.target())?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

/// Installs the global log subscriber: journal format when stderr is the
/// journal, else the usual text (colours only on a terminal).
pub fn init_logging(filter: tracing_subscriber::EnvFilter) {
    use std::io::IsTerminal;
    let b = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    if stderr_is_journal() {
        b.with_ansi(false).event_format(JournalFormat).init();
    } else {
        b.with_ansi(std::io::stderr().is_terminal()).init();
    }
}

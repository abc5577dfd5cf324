//! Serving connections: the HTTP accept loop (hyper, HTTP/1.1), the limits
//! and timeouts it shares with the local socket (`ipc/`), graceful
//! shutdown and signals. docs/reliability.md ("Connections") tells the
//! operator's side.
//!
//! **No client can hold the daemon.** Every connection counts against a
//! limit derived from the open-file limit; above it an HTTP client gets a
//! 503 (the seed's error body, `Retry-After`) and a socket client a
//! `service_unavailable` error frame, and both are closed. A connection
//! with no request in progress (idle keep-alive, slow headers, no frame)
//! is closed after `idle_timeout`; one whose client accepts no bytes for
//! `write_timeout` is cut, while a slow client that keeps reading is not.
//! `accept` failures (EMFILE and the like) back off, and are logged at most
//! once a minute per listener.
//!
//! The loop takes an already bound [`TcpListener`], so a socket handed
//! over by the service manager is served the same way.

use crate::config::ServerConfig;
use crate::error::Error;
use crate::metrics::Metrics;
use extreg_shared::ErrorKind;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Default connection limits never go above this, however many files
/// may be open.
pub const MAX_DEFAULT_CONNECTIONS: usize = 16_384;

/// How long an over-the-limit connection may take to be told so.
const REJECT_LINGER: Duration = Duration::from_secs(1);

/// At most one warning per this period for each repeated condition.
const WARN_EVERY: Duration = Duration::from_secs(60);

const BACKOFF_MIN: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// How long connections still open after the shutdown deadline may take
/// to notice they were cut.
const CUT_GRACE: Duration = Duration::from_secs(2);

/// The connection limits and timeouts in force.
#[derive(Debug, Clone)]
pub struct Limits {
    /// The soft `RLIMIT_NOFILE` the limits were derived from.
    pub nofile: u64,
    /// Open HTTP connections at most (`[server] max_connections`).
    pub max_connections: usize,
    /// Open local socket connections at most: a quarter of the above.
    pub max_socket_connections: usize,
    /// Connections beyond the limit being answered "busy" at once; further
    /// ones are closed unanswered.
    pub max_rejecting: usize,
    pub idle_timeout: Duration,
    pub write_timeout: Duration,
    pub shutdown_timeout: Duration,
}

/// Descriptors kept for everything but client connections (listeners,
/// backend connections, artifact downloads, the runtime).
fn reserve(nofile: u64) -> u64 {
    (nofile / 4).min(128)
}

/// The default HTTP connection limit for `nofile` open files. Each HTTP or
/// socket connection may hold two descriptors (itself and a file it
/// serves); the socket gets a quarter as many connections and rejections a
/// sixteenth: 2 + 2/4 + 1/16 = 41/16 descriptors per HTTP connection.
pub fn default_max_connections(nofile: u64) -> usize {
    let usable = nofile.saturating_sub(reserve(nofile));
    (usable.saturating_mul(16) / 41).clamp(1, MAX_DEFAULT_CONNECTIONS as u64) as usize
}

impl Limits {
    pub fn new(server: &ServerConfig, nofile: u64) -> Limits {
        let max = server
            .max_connections
            .unwrap_or_else(|| default_max_connections(nofile))
            .max(1);
        Limits {
            nofile,
            max_connections: max,
            max_socket_connections: (max / 4).max(4),
            max_rejecting: (max / 16).clamp(4, 256),
            idle_timeout: Duration::from_secs(server.idle_timeout_seconds.max(1)),
            write_timeout: Duration::from_secs(server.write_timeout_seconds.max(1)),
            shutdown_timeout: Duration::from_secs(server.shutdown_timeout_seconds),
        }
    }

    /// Descriptors these limits may need at most (see
    /// [`default_max_connections`]).
    pub fn fd_budget(&self) -> u64 {
        2 * self.max_connections as u64
            + 2 * self.max_socket_connections as u64
            + self.max_rejecting as u64
            + reserve(self.nofile)
    }
}

/// Raises the soft open-file limit to the hard one (a service manager's
/// `LimitNOFILE`, else the login's) and returns the soft limit in force.
pub fn raise_nofile_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own and has no other
    // effect.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 1024;
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit reads the struct we own; raising the soft limit
        // up to the hard one is always permitted.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim.rlim_cur = lim.rlim_max;
        }
    }
    // RLIM_INFINITY (or absurd values) count as a large, finite limit.
    lim.rlim_cur.min(1 << 20)
}

/// What every accept loop and connection watches: `stop` (no new
/// connections, finish what is in flight), `cut` (the deadline passed:
/// drop everything), and the tracker of connection tasks.
#[derive(Clone, Default)]
pub struct Lifecycle {
    pub stop: CancellationToken,
    pub cut: CancellationToken,
    pub tracker: TaskTracker,
}

/// A warning logged at most once per [`WARN_EVERY`], telling how many
/// were held back since the last one.
#[derive(Default)]
pub struct RateLimitedWarn {
    last: Option<Instant>,
    held_back: u64,
}

impl RateLimitedWarn {
    /// `Some(held back since the last warning)` when a warning is due now.
    pub fn due(&mut self) -> Option<u64> {
        let now = Instant::now();
        match self.last {
            Some(t) if now.duration_since(t) < WARN_EVERY => {
                self.held_back += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.held_back))
            }
        }
    }
}

/// `accept` failures of one listener: counted, logged at most once a
/// minute, and backed off exponentially (10 ms to 1 s) while the process
/// is out of descriptors or memory, so a full fd table is neither a busy
/// loop nor a log flood.
pub struct AcceptErrors {
    listener: &'static str,
    delay: Duration,
    warn: RateLimitedWarn,
}

fn out_of_resources(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

impl AcceptErrors {
    pub fn new(listener: &'static str) -> AcceptErrors {
        AcceptErrors {
            listener,
            delay: BACKOFF_MIN,
            warn: RateLimitedWarn::default(),
        }
    }

    /// Records a failed accept; returns how long to wait before the next.
    pub fn failed(&mut self, e: &io::Error, metrics: &Metrics) -> Option<Duration> {
        metrics
            .accept_errors
            .with_label_values(&[self.listener])
            .inc();
        // A peer that gave up before we accepted it: nothing to wait for.
        if matches!(
            e.kind(),
            io::ErrorKind::ConnectionAborted
                | io::ErrorKind::ConnectionReset
                | io::ErrorKind::Interrupted
                | io::ErrorKind::WouldBlock
        ) {
            tracing::debug!(listener = self.listener, error = %e, "accept failed");
            return None;
        }
        let starved = out_of_resources(e);
        if let Some(held_back) = self.warn.due() {
            if starved {
                tracing::warn!(
                    listener = self.listener,
                    error = %e,
                    held_back,
                    "accept failed: out of file descriptors or memory; backing off \
                     (raise LimitNOFILE or lower [server] max_connections)"
                );
            } else {
                tracing::warn!(listener = self.listener, error = %e, held_back, "accept failed");
            }
        }
        let wait = self.delay;
        self.delay = (self.delay * 2).min(BACKOFF_MAX);
        Some(wait)
    }

    pub fn succeeded(&mut self) {
        self.delay = BACKOFF_MIN;
    }

    /// The next connection `accept` yields; `None` once `life.stop` fires.
    /// Failures are recorded by [`Self::failed`] and waited out here.
    pub async fn next<T, F>(
        &mut self,
        life: &Lifecycle,
        metrics: &Metrics,
        mut accept: impl FnMut() -> F,
    ) -> Option<T>
    where
        F: std::future::Future<Output = io::Result<T>>,
    {
        loop {
            let r = tokio::select! {
                biased;
                _ = life.stop.cancelled() => return None,
                r = accept() => r,
            };
            match r {
                Ok(s) => {
                    self.succeeded();
                    return Some(s);
                }
                Err(e) => {
                    if let Some(wait) = self.failed(&e, metrics) {
                        tokio::select! {
                            _ = life.stop.cancelled() => return None,
                            _ = tokio::time::sleep(wait) => {}
                        }
                    }
                }
            }
        }
    }
}

/// The admission rule of both listeners: at most `max` connections served
/// at once. One over the limit is counted in `connections_rejected`,
/// warned about at most once per [`WARN_EVERY`], and handed to one of at
/// most `max_refusing` refusal tasks (or dropped when they are all busy:
/// closing costs nothing we do not have).
pub struct Gate {
    transport: &'static str,
    max: usize,
    slots: Arc<Semaphore>,
    refusing: Arc<Semaphore>,
    full: RateLimitedWarn,
}

impl Gate {
    pub fn new(transport: &'static str, max: usize, max_refusing: usize) -> Gate {
        Gate {
            transport,
            max,
            slots: Arc::new(Semaphore::new(max)),
            refusing: Arc::new(Semaphore::new(max_refusing)),
            full: RateLimitedWarn::default(),
        }
    }

    /// A slot for `stream`, or `None` after handing it to `refuse`.
    pub fn admit<S, F>(
        &mut self,
        stream: S,
        metrics: &Metrics,
        life: &Lifecycle,
        refuse: impl FnOnce(S, OwnedSemaphorePermit) -> F,
    ) -> Option<(S, OwnedSemaphorePermit)>
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        if let Ok(permit) = self.slots.clone().try_acquire_owned() {
            return Some((stream, permit));
        }
        metrics
            .connections_rejected
            .with_label_values(&[self.transport])
            .inc();
        if let Some(held_back) = self.full.due() {
            tracing::warn!(
                transport = self.transport,
                max = self.max,
                held_back,
                "connection limit reached; refusing new connections"
            );
        }
        if let Ok(p) = self.refusing.clone().try_acquire_owned() {
            life.tracker.spawn(refuse(stream, p));
        }
        None
    }
}

/// Counts a connection in `connections_open` while it lives.
pub struct OpenGuard(prometheus::IntGauge);

impl OpenGuard {
    pub fn new(metrics: &Metrics, listener: &str) -> OpenGuard {
        let g = metrics.connections_open.with_label_values(&[listener]);
        g.inc();
        OpenGuard(g)
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Makes every connection metric of `listener` visible (at 0) from start.
pub fn register_listener(metrics: &Metrics, listener: &str) {
    metrics.connections_open.with_label_values(&[listener]);
    metrics.connections_rejected.with_label_values(&[listener]);
    metrics.accept_errors.with_label_values(&[listener]);
    for kind in ["idle", "write", "shutdown"] {
        metrics
            .connections_timed_out
            .with_label_values(&[listener, kind]);
    }
}

/// True when `e` (or what caused it) is an I/O timeout: the write timeout
/// of [`tokio_io_timeout::TimeoutStream`].
pub fn is_io_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<io::Error>() {
            if io.kind() == io::ErrorKind::TimedOut {
                return true;
            }
        }
        cur = err.source();
    }
    false
}

/// The whole answer to an HTTP connection over the limit: the seed's error
/// body, `Retry-After`, and `Connection: close`.
fn unavailable_answer(max: usize) -> Arc<[u8]> {
    let e = Error::new(
        ErrorKind::ServiceUnavailable,
        format!(
            "extregd is serving its maximum of {max} connections ([server] max_connections); retry shortly"
        ),
    );
    let body = serde_json::to_vec(&e.body()).unwrap_or_default();
    let mut out = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         retry-after: {}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        e.retry_after_seconds().unwrap_or(1),
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    out.into()
}

/// Serves HTTP/1.1 on `listener` until `life.stop`; the connections it
/// started are tracked by `life.tracker` (see [`drain`]).
pub async fn serve_http(
    listener: TcpListener,
    router: axum::Router,
    limits: Arc<Limits>,
    metrics: Arc<Metrics>,
    life: Lifecycle,
) {
    register_listener(&metrics, "http");
    let mut gate = Gate::new("http", limits.max_connections, limits.max_rejecting);
    let busy = unavailable_answer(limits.max_connections);
    let mut http = hyper::server::conn::http1::Builder::new();
    // The header-read timer starts when a connection opens and again when
    // a response has been sent: it bounds slow heads and idle keep-alive.
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.idle_timeout)
        .keep_alive(true);
    let http = Arc::new(http);
    let mut errors = AcceptErrors::new("http");
    while let Some(stream) = errors
        .next(&life, &metrics, || async {
            listener.accept().await.map(|(s, _)| s)
        })
        .await
    {
        let refuse = |s, p| reject(s, busy.clone(), p);
        if let Some((stream, permit)) = gate.admit(stream, &metrics, &life, refuse) {
            let conn = HttpConn {
                router: router.clone(),
                http: http.clone(),
                limits: limits.clone(),
                metrics: metrics.clone(),
                life: life.clone(),
            };
            life.tracker.spawn(conn.run(stream, permit));
        }
    }
    tracing::debug!("HTTP listener closed");
}

/// Answers 503 and closes, reading what the client sent meanwhile so the
/// close does not reset the answer away (bounded in bytes and time).
async fn reject(mut stream: TcpStream, answer: Arc<[u8]>, _permit: OwnedSemaphorePermit) {
    let _ = tokio::time::timeout(REJECT_LINGER, async {
        stream.write_all(&answer).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 4096];
        let mut total = 0usize;
        while total < 64 * 1024 {
            match stream.read(&mut sink).await? {
                0 => break,
                n => total += n,
            }
        }
        Ok::<_, io::Error>(())
    })
    .await;
}

struct HttpConn {
    router: axum::Router,
    http: Arc<hyper::server::conn::http1::Builder>,
    limits: Arc<Limits>,
    metrics: Arc<Metrics>,
    life: Lifecycle,
}

impl HttpConn {
    async fn run(self, stream: TcpStream, _permit: OwnedSemaphorePermit) {
        let _open = OpenGuard::new(&self.metrics, "http");
        let _ = stream.set_nodelay(true);
        // A write that makes no progress for `write_timeout` fails: the
        // client stopped reading. Progress, however slow, resets it.
        let mut io = tokio_io_timeout::TimeoutStream::new(stream);
        io.set_write_timeout(Some(self.limits.write_timeout));
        let io = TokioIo::new(Box::pin(io));
        let conn = self
            .http
            .serve_connection(io, TowerToHyperService::new(self.router));
        let mut conn = std::pin::pin!(conn);
        let mut stopping = false;
        let timed_out = |kind: &str| {
            self.metrics
                .connections_timed_out
                .with_label_values(&["http", kind])
                .inc();
        };
        loop {
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        if e.is_timeout() {
                            timed_out("idle");
                            tracing::debug!("closing an HTTP connection idle for {:?}", self.limits.idle_timeout);
                        } else if is_io_timeout(&e) {
                            timed_out("write");
                            tracing::debug!("cutting an HTTP client that read nothing for {:?}", self.limits.write_timeout);
                        } else {
                            tracing::debug!(error = %e, "HTTP connection ended with an error");
                        }
                    }
                    return;
                }
                // Finish the request in flight (if any), then close.
                _ = self.life.stop.cancelled(), if !stopping => {
                    stopping = true;
                    conn.as_mut().graceful_shutdown();
                }
                _ = self.life.cut.cancelled() => {
                    timed_out("shutdown");
                    return;
                }
            }
        }
    }
}

/// Stops the accept loops (`accepting`), calls `closed` once their
/// listeners are gone, then gives the open connections `deadline` to finish
/// what they are doing before cutting them.
pub async fn drain(
    life: &Lifecycle,
    deadline: Duration,
    accepting: Vec<tokio::task::JoinHandle<()>>,
    closed: impl FnOnce(),
) {
    life.stop.cancel();
    for l in accepting {
        let _ = l.await;
    }
    closed();
    life.tracker.close();
    let open = life.tracker.len();
    if open > 0 {
        tracing::info!(
            open,
            "stopped accepting; waiting up to {deadline:?} for open connections to finish"
        );
    }
    if tokio::time::timeout(deadline, life.tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            open = life.tracker.len(),
            "shutdown deadline of {deadline:?} passed; cutting the connections still open"
        );
        life.cut.cancel();
        let _ = tokio::time::timeout(CUT_GRACE, life.tracker.wait()).await;
    }
}

/// The signals the daemon acts on, registered before it starts serving
/// (so none is missed in between): SIGTERM and SIGINT stop it gracefully;
/// SIGHUP is logged and ignored (the configuration is not reloaded;
/// restart to apply changes), so a closing terminal or a reload request
/// never kills it.
pub struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    /// Needs a running tokio runtime.
    pub fn install() -> io::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// Resolves at the first SIGTERM or SIGINT.
    pub async fn shutdown(mut self) {
        loop {
            tokio::select! {
                _ = self.term.recv() => {
                    tracing::info!("SIGTERM: shutting down");
                    break;
                }
                _ = self.int.recv() => {
                    tracing::info!("SIGINT: shutting down");
                    break;
                }
                _ = self.hup.recv() => {
                    tracing::info!("SIGHUP ignored: extregd does not reload its configuration; restart it to apply changes");
                }
            }
        }
        // tokio never unregisters a handler: a SIGHUP during the drain is
        // still caught (and dropped), not fatal.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_limits_fit_the_descriptor_budget() {
        for nofile in [64u64, 256, 1024, 4096, 65536, 1 << 20] {
            let cfg = ServerConfig::default();
            let l = Limits::new(&cfg, nofile);
            assert!(l.max_connections >= 1);
            if nofile >= 256 {
                assert!(
                    l.fd_budget() <= nofile,
                    "nofile {nofile}: budget {} for {l:?}",
                    l.fd_budget()
                );
            }
        }
        assert_eq!(default_max_connections(1024), 349);
        assert_eq!(default_max_connections(1 << 20), MAX_DEFAULT_CONNECTIONS);
    }

    #[test]
    fn warnings_are_rate_limited_and_count_what_was_held_back() {
        let mut w = RateLimitedWarn::default();
        assert_eq!(w.due(), Some(0));
        for _ in 0..1000 {
            assert_eq!(w.due(), None);
        }
        w.last = Some(Instant::now() - WARN_EVERY);
        assert_eq!(w.due(), Some(1000));
    }

    #[test]
    fn accept_backoff_grows_to_a_bound_and_resets() {
        let m = Metrics::new();
        let mut a = AcceptErrors::new("http");
        let emfile = io::Error::from_raw_os_error(libc::EMFILE);
        let waits: Vec<_> = (0..10).map(|_| a.failed(&emfile, &m).unwrap()).collect();
        assert_eq!(waits[0], BACKOFF_MIN);
        assert_eq!(*waits.last().unwrap(), BACKOFF_MAX);
        a.succeeded();
        assert_eq!(a.failed(&emfile, &m), Some(BACKOFF_MIN));
        let aborted = io::Error::from(io::ErrorKind::ConnectionAborted);
        assert_eq!(a.failed(&aborted, &m), None);
    }

    #[test]
    fn the_busy_answer_is_the_seed_error_body_with_retry_after() {
        let a = unavailable_answer(7);
        let text = String::from_utf8(a.to_vec()).unwrap();
        assert!(text.starts_with("HTTP/1.1 503 "));
        assert!(text.contains("\r\nretry-after: 1\r\n"));
        let body = text.split("\r\n\r\n").nth(1).unwrap();
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["error"], "service_unavailable");
        assert!(v["message"].as_str().unwrap().contains("maximum of 7"));
        assert!(text.contains(&format!("content-length: {}\r\n", body.len())));
    }
}

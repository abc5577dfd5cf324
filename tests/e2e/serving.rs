//! Connections cannot exhaust the daemon, end to end against the real
//! `extregd` binary: connection limits (503 and a `service_unavailable`
//! frame instead of starving), idle, slow-head and write-stall timeouts,
//! accept back-off without log floods under a small open-file limit,
//! graceful shutdown with a deadline, SIGHUP ignored; and two HTTP edges:
//! `HEAD` answered from metadata, `Retry-After` on our 429 answers.

use extreg_shared::protocol::{self, Request, Response};
use extreg_tests::gitea::{add_extension, Access, GiteaStandIn};
use extreg_tests::socket::{self, read_frame, send_frame};
use extreg_tests::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The daemon's environment: `extra` server keys, the sandbox catalogue,
/// its own artifact cache, and `more` TOML after it.
fn config(sb: &Sandbox, server: &str, more: &str) -> PathBuf {
    sb.write_config(&format!(
        "[server]\n{server}\n[local]\npath = \"{}\"\n[cache]\nartifact_dir = \"{}\"\n{more}",
        sb.catalog().display(),
        sb.path("artifacts").display()
    ))
}

/// Sets the child's open-file limit (soft and hard, so the daemon cannot
/// raise it) before it runs.
fn nofile(n: u64) -> impl FnOnce(&mut Command) {
    move |c: &mut Command| {
        use std::os::unix::process::CommandExt;
        // SAFETY: setrlimit is async-signal-safe and touches only the child.
        unsafe {
            c.pre_exec(move || {
                let l = libc::rlimit {
                    rlim_cur: n as libc::rlim_t,
                    rlim_max: n as libc::rlim_t,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &l) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
}

fn start(sb: &Sandbox, server: &str, limit: Option<u64>) -> Daemon {
    let cfg = config(sb, server, "");
    let args = ["--config", cfg.to_str().unwrap()];
    match limit {
        Some(n) => Daemon::start_with(sb, &args, &[], nofile(n)),
        None => Daemon::start(sb, &args, &[]),
    }
}

fn addr(d: &Daemon) -> String {
    d.url.trim_start_matches("http://").to_string()
}

fn quick_client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(3))
        .build()
        .unwrap()
}

fn signal(d: &Daemon, sig: libc::c_int) {
    // SAFETY: kill has no memory effects; the pid is our own child.
    assert_eq!(unsafe { libc::kill(d.child.id() as libc::pid_t, sig) }, 0);
}

/// Reads until EOF, a reset or `limit`: true when the peer closed.
fn closed_within(s: &mut TcpStream, limit: Duration) -> bool {
    s.set_read_timeout(Some(limit)).unwrap();
    let mut b = [0u8; 4096];
    loop {
        match s.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

/// Reads one response head; returns the status, the lower-cased headers
/// and the body bytes read past the head.
fn read_head(s: &mut TcpStream) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut buf = Vec::new();
    let mut b = [0u8; 16 * 1024];
    let end = loop {
        let n = s.read(&mut b).expect("read a response head");
        assert!(n > 0, "closed before a response head");
        buf.extend_from_slice(&b[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_string();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers, buf[end + 4..].to_vec())
}

fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
    h.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn hello_request() -> Request {
    socket::hello(protocol::PROTOCOL_VERSION, "serving-test")
}

/// Connects, says hello and asks for health; the answers (None when the
/// daemon gave none within 3 s).
fn socket_health(path: &Path) -> Option<(Response, Option<Response>)> {
    let mut s = UnixStream::connect(path).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    // A peer over every limit is closed unanswered: no answer, no panic.
    send_frame(&mut s, 1, hello_request()).ok()?;
    let hello = read_frame(&mut s)?.body;
    if !matches!(hello, Response::Hello { .. }) {
        return Some((hello, None));
    }
    send_frame(&mut s, 2, Request::Health).ok()?;
    Some((hello, read_frame(&mut s).map(|e| e.body)))
}

fn socket_serves(path: &Path) -> bool {
    matches!(
        socket_health(path),
        Some((Response::Hello { .. }, Some(Response::Health(_))))
    )
}

fn count(text: &str, needle: &str) -> usize {
    text.lines().filter(|l| l.contains(needle)).count()
}

/// An uncompressed tar.gz of `mib` MiB of noise with its manifest first,
/// as the tarball form `{catalog}/taskserv/{name}/{name}-1.0.0.tar.gz`.
fn big_tarball(sb: &Sandbox, name: &str, mib: usize) -> Vec<u8> {
    let noise = noise(mib * 1024 * 1024, 0x9E37_79B9_7F4A_7C15);
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::none());
    let mut t = tar::Builder::new(gz);
    for (path, data) in [
        (
            "extension.yaml",
            manifest("taskserv", name, "1.0.0", "big", &[]).into_bytes(),
        ),
        ("payload.bin", noise),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1);
        t.append_data(&mut h, path, &data[..]).unwrap();
    }
    let bytes = t.into_inner().unwrap().finish().unwrap();
    let dir = sb.catalog().join("taskserv").join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{name}-1.0.0.tar.gz")), &bytes).unwrap();
    bytes
}

/// Caps the receive buffer at 64 KiB (no autotuning): what the client
/// does not read stays on the daemon's side.
fn small_rcvbuf(s: &TcpStream) {
    use std::os::fd::AsRawFd;
    let size: libc::c_int = 64 * 1024;
    // SAFETY: setsockopt reads `size` for the given length; fd is open.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            &size as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0);
}

/// A raw `GET` of `path` (keep-alive) with a small receive buffer,
/// returning the connection.
fn raw_get(d: &Daemon, path: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr(d)).unwrap();
    small_rcvbuf(&s);
    write!(s, "GET /api/v1{path} HTTP/1.1\r\nHost: {}\r\n\r\n", addr(d)).unwrap();
    s
}

#[test]
fn idle_and_slow_clients_cannot_starve_http_or_the_socket() {
    // This test process opens hundreds of sockets while other tests run
    // beside it: lift its own soft descriptor limit to the hard one, so a
    // refused connect means the daemon refused, not that we ran out.
    // SAFETY: getrlimit/setrlimit on a local struct.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
    let sb = Sandbox::new();
    write_folder_ext(&sb.catalog(), "provider", "aws", "1.0.0", "AWS", &[]);
    // 256 descriptors: the default limit is 74 HTTP and 18 socket
    // connections; 300 clients would take every descriptor without it.
    let d = start(&sb, "idle_timeout_seconds = 60", Some(256));
    let socket = sandbox_socket(&sb);
    let mut held: Vec<TcpStream> = (0..300)
        .map(|i| {
            let mut s = TcpStream::connect(addr(&d)).unwrap();
            if i % 2 == 1 {
                // A slow head: started, never finished.
                s.write_all(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n")
                    .unwrap();
            }
            s
        })
        .collect();
    // A fresh request is answered 503 with the seed's body, not left hanging.
    let client = quick_client();
    let mut busy = None;
    assert!(
        wait_until(Duration::from_secs(20), || {
            match client.get(d.api("/health")).send() {
                Ok(r) if r.status().as_u16() == 503 => {
                    let retry = r
                        .headers()
                        .get("retry-after")
                        .map(|v| v.to_str().unwrap().to_string());
                    busy = Some((retry, r.text().unwrap()));
                    true
                }
                _ => false,
            }
        }),
        "no 503 while at the connection limit; stderr:\n{}",
        d.stderr()
    );
    let (retry, body) = busy.unwrap();
    let retry: u64 = retry.expect("Retry-After on the 503").parse().unwrap();
    assert!((1..=3600).contains(&retry));
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"], "service_unavailable", "{v}");
    assert!(v["message"].as_str().unwrap().contains("max_connections"));
    // The plugin socket has its own connections: still served.
    assert!(
        wait_until(Duration::from_secs(10), || socket_serves(&socket)),
        "socket starved by HTTP clients"
    );

    // Fill the socket's connections too, one peer after the other, each
    // saying hello: those admitted hold every slot, and the next one gets a
    // clear refusal (or, when every refuser is busy, a close).
    let limit: usize = d
        .stderr()
        .split("max_socket_connections=")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("the daemon logs its socket connection limit");
    let mut idle_socket = Vec::new();
    let (mut served, mut refusal) = (0, None);
    for _ in 0..limit + 8 {
        let mut s = UnixStream::connect(&socket).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        send_frame(&mut s, 1, hello_request()).unwrap();
        match read_frame::<Response>(&mut s).map(|f| f.body) {
            Some(Response::Hello { .. }) => served += 1,
            Some(Response::Error(e)) if refusal.is_none() => refusal = Some(e),
            _ => {}
        }
        idle_socket.push(s);
    }
    assert!(
        (1..=limit).contains(&served),
        "{served} peers served with a limit of {limit}"
    );
    let refusal = refusal.or_else(|| match socket_health(&socket) {
        Some((Response::Error(e), _)) => Some(e),
        _ => None,
    });
    let e = refusal.expect("no refusal while the socket is at its limit");
    assert_eq!(e.error, "service_unavailable", "{e:?}");

    // Slots free up as soon as the clients go.
    drop(idle_socket);
    held.clear();
    assert!(
        wait_until(Duration::from_secs(20), || client
            .get(d.api("/health"))
            .send()
            .is_ok_and(|r| r.status().as_u16() == 200)),
        "HTTP not served again after the idle clients left"
    );
    assert!(
        wait_until(Duration::from_secs(20), || socket_serves(&socket)),
        "socket not served again after the idle peers left"
    );
    assert!(d.metric("connections_rejected_total{listener=\"http\"}") >= 1.0);
    assert!(d.metric("connections_rejected_total{listener=\"socket\"}") >= 1.0);
    // Hundreds of refusals, a bounded number of log lines.
    let log = d.stderr();
    assert!(
        count(&log, "connection limit reached") <= 2,
        "log flood:\n{log}"
    );
    assert_eq!(count(&log, "accept failed"), 0, "{log}");
}

#[test]
fn accept_errors_back_off_without_flooding_the_log() {
    let sb = Sandbox::new();
    write_folder_ext(&sb.catalog(), "provider", "aws", "1.0.0", "AWS", &[]);
    // A limit above what 128 descriptors allow: accept runs out of them.
    let d = start(&sb, "max_connections = 1000", Some(128));
    assert!(
        d.stderr().contains("may need more file descriptors"),
        "{}",
        d.stderr()
    );
    let socket = sandbox_socket(&sb);
    let mut held: Vec<TcpStream> = (0..200)
        .map(|_| TcpStream::connect(addr(&d)).unwrap())
        .collect();
    // Every descriptor taken (HTTP accept failed) before the socket peer
    // comes, so it waits in the backlog while none is free.
    assert!(
        wait_until(Duration::from_secs(20), || count(
            &d.stderr(),
            "accept failed"
        ) >= 1),
        "no accept failure logged:\n{}",
        d.stderr()
    );
    let mut waiting = UnixStream::connect(&socket).unwrap();
    send_frame(&mut waiting, 1, hello_request()).unwrap();
    assert!(
        wait_until(Duration::from_secs(20), || count(
            &d.stderr(),
            "accept failed"
        ) >= 2),
        "no accept failure logged:\n{}",
        d.stderr()
    );
    // The measurement window: a loop retrying every 50 ms would log ~40
    // lines per listener in it.
    std::thread::sleep(Duration::from_secs(2));
    let log = d.stderr();
    assert!(
        count(&log, "accept failed") <= 2,
        "accept failures flood the log:\n{log}"
    );
    // Descriptors come back: both listeners serve again, the waiting
    // peer included.
    held.clear();
    waiting
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    assert!(matches!(
        read_frame(&mut waiting).map(|e| e.body),
        Some(Response::Hello { .. })
    ));
    let client = quick_client();
    assert!(wait_until(Duration::from_secs(20), || client
        .get(d.api("/health"))
        .send()
        .is_ok_and(|r| r.status().as_u16() == 200)));
    assert!(socket_serves(&socket));
    assert!(d.metric("accept_errors_total{listener=\"http\"}") >= 1.0);
}

#[test]
fn idle_connections_and_slow_heads_are_closed_after_the_idle_timeout() {
    let sb = Sandbox::new();
    write_folder_ext(&sb.catalog(), "provider", "aws", "1.0.0", "AWS", &[]);
    let d = start(&sb, "idle_timeout_seconds = 1", None);
    let limit = Duration::from_secs(6);

    // Connected, never a byte.
    let mut idle = TcpStream::connect(addr(&d)).unwrap();
    // A head trickling in a byte every 200 ms: progress, but never done.
    let mut slow = TcpStream::connect(addr(&d)).unwrap();
    let mut trickle = slow.try_clone().unwrap();
    std::thread::spawn(move || {
        for b in b"GET /api/v1/health HTTP/1.1\r\nHost: localhost\r\nX-Long: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" {
            if trickle.write_all(&[*b]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    // A keep-alive connection after its answer.
    let mut kept = raw_get(&d, "/health");
    let (status, _, _) = read_head(&mut kept);
    assert_eq!(status, 200);

    let t = Instant::now();
    assert!(closed_within(&mut idle, limit), "idle connection kept open");
    assert!(closed_within(&mut slow, limit), "slow head kept open");
    assert!(
        closed_within(&mut kept, limit),
        "idle keep-alive connection kept open"
    );
    assert!(t.elapsed() < limit);

    // The socket: a peer that says hello, then nothing.
    let mut s = UnixStream::connect(sandbox_socket(&sb)).unwrap();
    send_frame(&mut s, 1, hello_request()).unwrap();
    assert!(matches!(
        read_frame(&mut s).unwrap().body,
        Response::Hello { .. }
    ));
    s.set_read_timeout(Some(limit)).unwrap();
    let mut b = [0u8; 1];
    assert!(
        matches!(s.read(&mut b), Ok(0)),
        "idle socket connection kept open"
    );

    assert!(d.metric("connections_timed_out_total{kind=\"idle\",listener=\"http\"}") >= 3.0);
    assert!(d.metric("connections_timed_out_total{kind=\"idle\",listener=\"socket\"}") >= 1.0);
    // Closing idle clients is routine: no warning per connection.
    assert_eq!(count(&d.stderr(), "WARN"), 0, "{}", d.stderr());
}

#[test]
fn a_client_that_stops_reading_is_cut_but_a_slow_reader_gets_everything() {
    let sb = Sandbox::new();
    let bytes = big_tarball(&sb, "big", 24);
    let d = start(&sb, "write_timeout_seconds = 2", None);
    let path = "/extensions/taskserv/big/1.0.0";

    // Stops reading after the head.
    let mut staller = raw_get(&d, path);
    let (status, head, _) = read_head(&mut staller);
    assert_eq!(status, 200);
    let len: usize = header(&head, "content-length").unwrap().parse().unwrap();
    assert_eq!(len, bytes.len());

    // Reads all the time, slowly: longer in all than the write timeout.
    let slow = {
        let mut s = raw_get(&d, path);
        std::thread::spawn(move || {
            let t = Instant::now();
            let (status, _, mut body) = read_head(&mut s);
            let mut b = vec![0u8; 128 * 1024];
            while body.len() < len {
                match s.read(&mut b) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => body.extend_from_slice(&b[..n]),
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            (status, body, t.elapsed())
        })
    };

    assert!(
        wait_until(Duration::from_secs(30), || d.metric(
            "connections_timed_out_total{kind=\"write\",listener=\"http\"}"
        ) >= 1.0),
        "a client that read nothing for the write timeout was not cut"
    );
    let mut got = 0usize;
    staller
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut b = vec![0u8; 1 << 20];
    while let Ok(n) = staller.read(&mut b) {
        if n == 0 {
            break;
        }
        got += n;
    }
    assert!(got < len, "the stalled client still got the whole body");

    let (status, body, took) = slow.join().unwrap();
    assert_eq!(status, 200);
    assert_eq!(body.len(), len, "the slow reader was cut");
    assert_eq!(sha256_tag(&body), sha256_tag(&bytes));
    assert!(
        took > Duration::from_secs(2),
        "the slow reader was not slower than the write timeout ({took:?})"
    );
}

#[test]
fn sigterm_finishes_requests_in_flight_and_cuts_streams_at_the_deadline() {
    let g = GiteaStandIn::start();
    g.with(|w| {
        w.token("t0ken-4b1d", Access::Read);
        w.org("ext-org");
        add_extension(w, "ext-org", "provider", "slow", &["v1.0.0"], false);
    });
    let sb = Sandbox::new();
    big_tarball(&sb, "big", 24);
    let tok = sb.path("token.txt");
    std::fs::write(&tok, "t0ken-4b1d\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&tok, std::fs::Permissions::from_mode(0o600)).unwrap();
    let cfg = config(
        &sb,
        "shutdown_timeout_seconds = 4",
        &format!(
            "[gitea]\nurl = \"{}\"\norganization = \"ext-org\"\ntoken_path = \"{}\"\ntimeout_seconds = 10\n",
            g.url,
            tok.display()
        ),
    );
    let mut d = Daemon::start(&sb, &["--config", cfg.to_str().unwrap()], &[]);
    let socket = sandbox_socket(&sb);

    // A stream whose client stopped reading: only the deadline ends it.
    let mut staller = raw_get(&d, "/extensions/taskserv/big/1.0.0");
    let (status, head, _) = read_head(&mut staller);
    assert_eq!(status, 200);
    let len: usize = header(&head, "content-length").unwrap().parse().unwrap();

    // A request in flight when SIGTERM comes (the backend takes a while).
    g.set_latency(Duration::from_millis(700));
    g.reset_counts();
    let url = d.api("/extensions/provider/slow/versions");
    let in_flight = std::thread::spawn(move || {
        let r = Client::new().get(url).send().unwrap();
        (r.status().as_u16(), r.text().unwrap())
    });
    assert!(wait_until(Duration::from_secs(10), || g.total_requests() >= 1));
    let t = Instant::now();
    signal(&d, libc::SIGTERM);

    // No new connections once stopping.
    assert!(
        wait_until(Duration::from_secs(3), || TcpStream::connect(addr(&d))
            .is_err()),
        "still accepting after SIGTERM"
    );
    let (status, body) = in_flight.join().unwrap();
    assert_eq!(
        status, 200,
        "the request in flight was not finished: {body}"
    );
    assert!(body.contains("1.0.0"), "{body}");

    let mut exit = None;
    assert!(
        wait_until(Duration::from_secs(10), || {
            exit = d.child.try_wait().unwrap();
            exit.is_some()
        }),
        "extregd still running 10 s after SIGTERM (deadline 4 s)"
    );
    let took = t.elapsed();
    assert!(exit.unwrap().success(), "exit status {:?}", exit);
    assert!(
        took < Duration::from_secs(7),
        "exit took {took:?} with a deadline of 4 s"
    );
    // The open stream was cut, not finished.
    let mut got = 0usize;
    staller
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut b = vec![0u8; 1 << 20];
    while let Ok(n) = staller.read(&mut b) {
        if n == 0 {
            break;
        }
        got += n;
    }
    assert!(got < len, "the stalled stream was finished, not cut");
    assert!(!socket.exists(), "the socket file was left behind");
    let log = d.stderr();
    assert!(log.contains("cutting the connections still open"), "{log}");
}

#[test]
fn sighup_is_logged_and_ignored() {
    let sb = Sandbox::new();
    write_folder_ext(&sb.catalog(), "provider", "aws", "1.0.0", "AWS", &[]);
    let mut d = start(&sb, "", None);
    signal(&d, libc::SIGHUP);
    assert!(
        wait_until(Duration::from_secs(10), || d
            .stderr()
            .contains("SIGHUP ignored")),
        "no log line for SIGHUP; exit: {:?}; stderr:\n{}",
        d.child.try_wait(),
        d.stderr()
    );
    assert!(
        d.child.try_wait().unwrap().is_none(),
        "SIGHUP stopped extregd"
    );
    let (s, v) = d.get_json("/extensions/provider/aws");
    assert_eq!(s, 200, "{v}");
    assert!(socket_serves(&sandbox_socket(&sb)));
}

#[test]
fn head_answers_from_metadata_without_fetching_the_artifact() {
    let g = GiteaStandIn::start();
    let org = "ext-org";
    let tgz = g.with(|w| {
        w.token("t0ken-4b1d", Access::Read);
        w.org(org);
        add_extension(w, org, "provider", "upcloud", &["v2.1.3"], true)["v2.1.3"].clone()
    });
    let sb = Sandbox::new();
    let d = sb.start_gitea(&g.url, org, "t0ken-4b1d", "", "");
    let assets = |g: &GiteaStandIn| {
        g.counts()
            .get("GET /{owner}/{repo}/releases/download/{tag}/{asset}")
            .copied()
            .unwrap_or(0)
    };
    let path = "/extensions/provider/upcloud/2.1.3";
    let r = d.client.head(d.api(path)).send().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let h = r.headers().clone();
    assert_eq!(
        h["etag"].to_str().unwrap(),
        format!("\"{}\"", sha256_tag(&tgz))
    );
    assert_eq!(h["content-length"].to_str().unwrap(), tgz.len().to_string());
    assert_eq!(h["x-extregd-cache"], "miss");
    assert!(r.bytes().unwrap().is_empty());
    // Only SHA256SUMS was read (for the listing); no artifact fetched.
    assert_eq!(assets(&g), 1, "{:?}", g.counts());
    let (_, stats) = d.get_json("/cache/stats");
    assert_eq!(stats["artifacts"]["misses"], 0, "{stats}");
    assert_eq!(stats["artifacts"]["entries"], 0, "{stats}");
    // If-None-Match on the announced checksum: 304, still nothing fetched.
    let r = d
        .client
        .head(d.api(path))
        .header("if-none-match", format!("\"{}\"", sha256_tag(&tgz)))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 304);
    assert_eq!(assets(&g), 1);

    // Downloaded once, HEAD answers from the cache, as GET would.
    let body = d.get(path).bytes().unwrap();
    assert_eq!(body.as_ref(), &tgz[..]);
    assert_eq!(assets(&g), 2);
    let r = d.client.head(d.api(path)).send().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["x-extregd-cache"], "hit");
    assert_eq!(
        r.headers()["content-length"].to_str().unwrap(),
        tgz.len().to_string()
    );
    assert_eq!(assets(&g), 2);
}

#[test]
fn rate_limited_answers_carry_retry_after() {
    // A Gitea that rate-limits everything.
    let upstream = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", upstream.local_addr().unwrap());
    std::thread::spawn(move || {
        for s in upstream.incoming() {
            let Ok(mut s) = s else { continue };
            std::thread::spawn(move || {
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut buf = Vec::new();
                let mut b = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut b) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&b[..n]),
                    }
                }
                let _ = s.write_all(
                    b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 3\r\ncontent-type: application/json\r\n\
                      content-length: 2\r\nconnection: close\r\n\r\n{}",
                );
            });
        }
    });
    let sb = Sandbox::new();
    let cfg = sb.write_config(&format!(
        "[gitea]\nurl = \"{url}\"\norganization = \"ext-org\"\ntimeout_seconds = 5\n\
         [cache]\nartifact_dir = \"{}\"\n",
        sb.path("artifacts").display()
    ));
    let d = Daemon::start(&sb, &["--config", cfg.to_str().unwrap()], &[]);
    let r = d.get("/extensions/provider/aws/versions");
    assert_eq!(r.status().as_u16(), 429);
    let retry: u64 = r
        .headers()
        .get("retry-after")
        .expect("Retry-After on a 429")
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=3600).contains(&retry), "{retry}");
    let v: serde_json::Value = r.json().unwrap();
    assert_eq!(v["error"], "rate_limit", "{v}");
}

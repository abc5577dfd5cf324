//! Nushell at its best, through the real `nu` 0.115.1: typed values, Tab
//! completion (driven in a real terminal under tmux), progress on a
//! terminal's stderr, long pulls over a throttled registry, and Ctrl-C.

use extreg_tests::registry::{Options, Registry};
use extreg_tests::*;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const NS: &str = "provisioning-extensions";

// --- a terminal: an interactive nu under its own tmux server --------------

struct Tmux {
    socket: String,
}

impl Tmux {
    /// An interactive `nu -n` with the plugin, in `sb`'s environment.
    fn start(sb: &Sandbox, cwd: &Path) -> Tmux {
        let tmux = require_tool("tmux", "tmux");
        let socket = format!(
            "extreg-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        );
        let env = [
            ("PATH", std::env::var("PATH").unwrap_or_default()),
            ("HOME", sb.path("home").display().to_string()),
            ("XDG_CONFIG_HOME", sb.path("config").display().to_string()),
            ("XDG_DATA_HOME", sb.path("data").display().to_string()),
            ("XDG_CACHE_HOME", sb.path("cache").display().to_string()),
            ("XDG_RUNTIME_DIR", sb.path("runtime").display().to_string()),
            ("TERM", "xterm-256color".to_string()),
        ];
        let mut cmd = String::from("env -i");
        for (k, v) in env {
            cmd.push_str(&format!(" {k}='{v}'"));
        }
        cmd.push_str(&format!(
            " '{}' -n --plugins '{}'",
            nu_bin().display(),
            bin("nu_plugin_ext").display()
        ));
        let st = Command::new(&tmux)
            .args(["-L", &socket, "-f", "/dev/null", "new-session", "-d"])
            .args(["-x", "220", "-y", "50", "-s", "main", "-c"])
            .arg(cwd)
            .arg(&cmd)
            .status()
            .unwrap();
        assert!(st.success(), "tmux new-session failed");
        let t = Tmux { socket };
        // The prompt: nu shows the folder it is in.
        assert!(
            t.wait_for(Duration::from_secs(20), |s| s.contains('>')),
            "nu did not start:\n{}",
            t.capture()
        );
        t
    }

    fn tmux(&self) -> Command {
        let mut c = Command::new("tmux");
        c.args(["-L", &self.socket]);
        c
    }

    fn keys(&self, keys: &[&str]) {
        let st = self
            .tmux()
            .args(["send-keys", "-t", "main"])
            .args(keys)
            .status()
            .unwrap();
        assert!(st.success());
    }

    /// Types `text` literally (no key names).
    fn type_text(&self, text: &str) {
        let st = self
            .tmux()
            .args(["send-keys", "-l", "-t", "main", text])
            .status()
            .unwrap();
        assert!(st.success());
    }

    fn capture(&self) -> String {
        let out = self
            .tmux()
            .args(["capture-pane", "-p", "-t", "main"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    fn wait_for(&self, timeout: Duration, mut f: impl FnMut(&str) -> bool) -> bool {
        wait_until(timeout, || f(&self.capture()))
    }

    /// Clears the line being edited (reedline: Ctrl-C on a line clears it).
    fn clear_line(&self) {
        self.keys(&["C-c"]);
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.tmux().arg("kill-server").status();
    }
}

/// The line holding the cursor's command (the last one with `text`).
fn last_line_with<'a>(screen: &'a str, text: &str) -> Option<&'a str> {
    screen.lines().rev().find(|l| l.contains(text))
}

// --- a slow link: a TCP proxy that throttles what flows back ------------

struct Throttle {
    addr: String,
    /// Bytes sent back to clients so far.
    sent: Arc<AtomicU64>,
    /// Connections that carried more than 1 MiB and are still open.
    big_open: Arc<AtomicUsize>,
}

impl Throttle {
    /// Forwards to `upstream` (`host:port`); answers flow back at
    /// `bytes_per_sec`.
    fn start(upstream: &str, bytes_per_sec: u64) -> Throttle {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let sent = Arc::new(AtomicU64::new(0));
        let big_open = Arc::new(AtomicUsize::new(0));
        let (s2, b2, up) = (sent.clone(), big_open.clone(), upstream.to_string());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(&up) else {
                    continue;
                };
                let (mut c_in, mut s_out) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut c_in, &mut s_out);
                    let _ = s_out.shutdown(std::net::Shutdown::Write);
                });
                let (sent, big_open) = (s2.clone(), b2.clone());
                std::thread::spawn(move || {
                    let (mut server, mut client) = (server, client);
                    let start = Instant::now();
                    let mut mine = 0u64;
                    let mut counted = false;
                    let mut buf = vec![0u8; 32 * 1024];
                    loop {
                        let n = match server.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        if client.write_all(&buf[..n]).is_err() {
                            break;
                        }
                        mine += n as u64;
                        sent.fetch_add(n as u64, Ordering::SeqCst);
                        if !counted && mine > 1 << 20 {
                            counted = true;
                            big_open.fetch_add(1, Ordering::SeqCst);
                        }
                        // Stay under the rate: sleep until `mine` bytes are due.
                        let due = Duration::from_secs_f64(mine as f64 / bytes_per_sec as f64);
                        if let Some(wait) = due.checked_sub(start.elapsed()) {
                            std::thread::sleep(wait);
                        }
                    }
                    let _ = client.shutdown(std::net::Shutdown::Both);
                    if counted {
                        big_open.fetch_sub(1, Ordering::SeqCst);
                    }
                });
            }
        });
        Throttle {
            addr,
            sent,
            big_open,
        }
    }
}

/// An extension artifact of about `len` bytes (a stored, not compressed,
/// gzip: the bytes are noise anyway).
fn big_artifact(ty: &str, name: &str, version: &str, len: usize) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::none());
    let mut b = tar::Builder::new(gz);
    let files = [
        (
            "extension.yaml".to_string(),
            manifest(ty, name, version, "A large extension", &[]).into_bytes(),
        ),
        ("payload.bin".to_string(), noise(len, 7)),
    ];
    for (path, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, path, data.as_slice()).unwrap();
    }
    b.into_inner().unwrap().finish().unwrap()
}

fn small_catalog(sb: &Sandbox) {
    let root = sb.catalog();
    for v in ["1.1.0", "1.2.0"] {
        write_folder_ext(&root, "provider", "aws", v, "AWS provider", &[]);
    }
    for v in ["1.27.4", "1.28.0", "1.29.0-rc.1"] {
        write_folder_ext(&root, "taskserv", "kubernetes", v, "Orchestration", &[]);
    }
    write_folder_ext(&root, "taskserv", "k3s", "1.27.5", "Light", &[]);
    write_folder_ext(&root, "cluster", "buildkit", "0.12.0", "Builds", &[]);
}

fn local_daemon(sb: &Sandbox) -> Daemon {
    sb.start_local("")
}

#[test]
fn durations_filesizes_and_dates_are_typed_and_prune_takes_a_duration() {
    let sb = Sandbox::new();
    small_catalog(&sb);
    let _d = local_daemon(&sb);
    let nu = Nu::new(&sb);

    let v = nu.json("ext health | [($in.uptime | describe) ($in.uptime >= 0sec)]");
    assert_eq!(v, serde_json::json!(["duration", true]));
    let v = nu.json("ext cache stats | [($in.ttl | describe) ($in.ttl == 5min) ($in.artifacts.bytes | describe)]");
    assert_eq!(v, serde_json::json!(["duration", true, "filesize"]));

    nu.json("ext pull k3s");
    let v = nu.json(
        "ext cache list | first | [($in.age | describe) ($in.idle | describe) ($in.idle < 1min) ($in.last_used | describe) ($in.size | describe)]",
    );
    assert_eq!(
        v,
        serde_json::json!(["duration", "duration", true, "datetime", "filesize"])
    );
    let v = nu.json("ext cache list | where idle > 30day | length");
    assert_eq!(v, 0);

    // Used just now: a month's pruning keeps it, in days or as a duration.
    let v = nu.json("ext cache prune --older-than 30day");
    assert_eq!(v, serde_json::json!({"removed": 0, "freed": 0}));
    let v = nu.json("ext cache prune --days 30");
    assert_eq!(v["removed"], 0);
    let v = nu.json("ext cache prune --older-than 1hr | get removed");
    assert_eq!(v, 0);

    // Bad input is labelled on the argument.
    nu.fails("ext cache prune --older-than 1day --days 1", &["not both"]);
    nu.fails("ext cache prune", &["--older-than 30day"]);
    nu.fails("ext cache prune --older-than (-1day)", &["out of range"]);
    let out = nu.run("ext cache prune --older-than 30");
    assert!(!out.ok, "an int is not a duration: {}", out.stdout);
    assert_eq!(nu.json("ext cache list | length"), 1, "nothing lost");

    // 0sec: everything not used this very second.
    assert!(wait_until(Duration::from_secs(5), || {
        nu.json("ext cache prune --older-than 0sec | get removed") == 1
    }));
    assert_eq!(nu.json("ext cache list | length"), 0);
}

#[test]
fn tab_completes_names_types_and_versions_and_falls_back_without_a_daemon() {
    let sb = Sandbox::new();
    small_catalog(&sb);
    let mut d = local_daemon(&sb);
    let nu = Nu::new(&sb);
    // Something the daemon has listed and a version list it has cached.
    nu.json("ext versions kubernetes");
    // A file the shell's default completion would offer: it must not be.
    let cwd = sb.path("home");
    std::fs::write(cwd.join("kubeconfig.txt"), "x").unwrap();

    let t = Tmux::start(&sb, &cwd);
    let prompt_at = Duration::from_secs(10);

    // A name, from the daemon's cache.
    t.type_text("ext load kub");
    t.keys(&["Tab"]);
    assert!(
        t.wait_for(prompt_at, |s| s.contains("ext load kubernetes")),
        "name not completed:\n{}",
        t.capture()
    );
    t.clear_line();

    // A type.
    t.type_text("ext list --type ta");
    t.keys(&["Tab"]);
    assert!(
        t.wait_for(prompt_at, |s| s.contains("ext list --type taskserv")),
        "type not completed:\n{}",
        t.capture()
    );
    t.clear_line();

    // A source.
    t.type_text("ext search k --source o");
    t.keys(&["Tab"]);
    assert!(
        t.wait_for(prompt_at, |s| s.contains("ext search k --source oci")),
        "source not completed:\n{}",
        t.capture()
    );
    t.clear_line();

    // The versions of the name already typed: a menu of all three.
    t.type_text("ext load kubernetes --version ");
    t.keys(&["Tab"]);
    assert!(
        t.wait_for(prompt_at, |s| {
            s.contains("1.29.0-rc.1") && s.contains("1.28.0") && s.contains("1.27.4")
        }),
        "versions not offered:\n{}",
        t.capture()
    );
    assert!(
        !t.capture().contains("1.27.5"),
        "k3s's version offered for kubernetes"
    );
    t.keys(&["Escape"]);
    t.clear_line();

    // No daemon: names come back empty (no file names), no hang, and
    // types still complete. Keys are handled in order, so once the type
    // is completed the name's Tab is known to have done nothing.
    d.stop();
    assert!(
        !sandbox_socket(&sb).exists()
            || std::os::unix::net::UnixStream::connect(sandbox_socket(&sb)).is_err()
    );
    // (A line not completed before: nu's menu may reuse the results of an
    // identical line.)
    let before = Instant::now();
    t.type_text("ext info k3");
    t.keys(&["Tab"]);
    assert!(
        t.wait_for(prompt_at, |s| s.contains("NO RECORDS FOUND")),
        "a name completed without a daemon:\n{}",
        t.capture()
    );
    t.keys(&["Escape"]);
    t.type_text(" --type ta");
    t.keys(&["Tab"]);
    assert!(
        t.wait_for(prompt_at, |s| s.contains("ext info k3 --type taskserv")),
        "fallback without a daemon:\n{}",
        t.capture()
    );
    assert!(
        before.elapsed() < Duration::from_secs(5),
        "completion without a daemon took {:?}",
        before.elapsed()
    );
    let screen = t.capture();
    assert!(
        !screen.contains("kubeconfig.txt"),
        "file names offered:\n{screen}"
    );
    assert!(
        !screen.contains("k3s"),
        "a name without a daemon:\n{screen}"
    );
    // And no daemon was started by a Tab.
    assert!(std::os::unix::net::UnixStream::connect(sandbox_socket(&sb)).is_err());
}

#[test]
fn slow_pull_shows_progress_outlasts_the_old_cap_and_ctrl_c_cancels() {
    const SIZE: usize = 100_000_000;
    let reg = Registry::start(Options::default());
    let layer = big_artifact("taskserv", "big", "1.0.0", SIZE);
    let layer_len = layer.len() as u64;
    let pushed = reg.push_artifact(&format!("{NS}/big-taskserv"), &["1.0.0"], &layer, &[]);
    drop(layer);
    // 2.5 MB/s: the 100 MB artifact takes about 40 s.
    let slow = Throttle::start(&reg.addr, 2_500_000);

    let sb = Sandbox::new();
    let d = sb.start_oci(&slow.addr, NS, "timeout_seconds = 10\n");
    let nu = Nu::new(&sb);
    let t = Tmux::start(&sb, &sb.path("home"));
    // Silence of 5 s at most: far less than the whole pull.
    t.type_text("$env.config.plugins.ext = {timeout: 5sec}");
    t.keys(&["Enter"]);

    // A: pulls in the terminal, with a progress bar on stderr.
    t.type_text("ext pull big --type taskserv");
    t.keys(&["Enter"]);
    assert!(
        t.wait_for(Duration::from_secs(30), |s| s.contains("download")
            && s.contains("MiB")),
        "no progress bar in the terminal:\n{}",
        t.capture()
    );
    let bar = t.capture();
    assert!(bar.contains("pull big"), "{bar}");

    // B: the same pull without a terminal, joining A's download.
    let hits_before = d.get_json("/cache/stats").1["artifacts"]["hits"]
        .as_u64()
        .unwrap();
    let registry = nu.registry.clone();
    let sb_env: Vec<(String, String)> = vec![
        (
            "XDG_RUNTIME_DIR".into(),
            sb.path("runtime").display().to_string(),
        ),
        ("HOME".into(), sb.path("home").display().to_string()),
    ];
    let b = std::thread::spawn(move || {
        let start = Instant::now();
        let out = Command::new(nu_bin())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(sb_env)
            .args(["-n", "-c"])
            .arg(format!(
                "plugin use --plugin-config '{}' ext\n$env.config.plugins.ext = {{timeout: 5sec}}\next pull big --type taskserv | to json --raw",
                registry.display()
            ))
            .output()
            .unwrap();
        (out, start.elapsed())
    });
    assert!(
        wait_until(Duration::from_secs(20), || {
            d.get_json("/cache/stats").1["artifacts"]["hits"]
                .as_u64()
                .unwrap()
                > hits_before
        }),
        "the second pull did not join the download"
    );

    // Ctrl-C in A: the wait ends at once with a clear error...
    let sent_at_ctrl_c = Instant::now();
    t.keys(&["C-c"]);
    assert!(
        t.wait_for(Duration::from_secs(3), |s| s.contains("interrupted")),
        "Ctrl-C did not end the pull promptly:\n{}",
        t.capture()
    );
    assert!(sent_at_ctrl_c.elapsed() < Duration::from_secs(3));

    // ...and B, still waiting on the shared download, completes it,
    // outlasting the old 30 s cap. No progress without a terminal.
    let (out, took) = b.join().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "B failed after {took:?}: {stderr}");
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["size"], layer_len);
    assert_eq!(v["digest"], pushed.layer_digest);
    assert!(
        took > Duration::from_secs(30),
        "the pull took only {took:?}"
    );
    assert!(
        stderr.trim().is_empty(),
        "progress drawn without a terminal: {stderr:?}"
    );
    assert_eq!(stdout.lines().count(), 1, "only the record on stdout");
    assert_eq!(
        nu.json("ext cache list | get name"),
        serde_json::json!(["big"])
    );

    // Alone: Ctrl-C cancels the download in the daemon; nothing partial
    // stays in the artifact cache or the extensions folder.
    nu.json("ext cache clear --all");
    t.type_text("ext load big --type taskserv");
    t.keys(&["Enter"]);
    assert!(
        t.wait_for(Duration::from_secs(30), |s| {
            last_line_with(s, "load big").is_some_and(|l| l.contains("MiB"))
        }),
        "no progress for the load:\n{}",
        t.capture()
    );
    let sent_before = slow.sent.load(Ordering::SeqCst);
    t.keys(&["C-c"]);
    assert!(
        t.wait_for(Duration::from_secs(3), |s| s.matches("interrupted").count()
            >= 2),
        "Ctrl-C did not end the load promptly:\n{}",
        t.capture()
    );
    assert!(
        wait_until(Duration::from_secs(10), || slow
            .big_open
            .load(Ordering::SeqCst)
            == 0),
        "the daemon kept downloading after the only waiter left"
    );
    let sent_total = slow.sent.load(Ordering::SeqCst);
    assert!(
        sent_total - sent_before < SIZE as u64,
        "the whole artifact was sent anyway"
    );
    assert!(
        wait_until(Duration::from_secs(5), || entries_under(
            &sb.path("artifacts/tmp")
        )
        .is_empty()),
        "a partial download stayed: {:?}",
        entries_under(&sb.path("artifacts/tmp"))
    );
    assert!(entries_under(&sb.path("artifacts/blobs/sha256")).is_empty());
    assert_eq!(nu.json("ext cache list | length"), 0);
    let ext_dir = sb.path("data/provisioning/extensions");
    assert!(
        entries_under(&ext_dir).is_empty(),
        "left in the extensions folder: {:?}",
        entries_under(&ext_dir)
    );
    // The daemon is fine afterwards.
    assert_eq!(nu.json("ext health | get status"), "healthy");
}

// --- ext publish: upload progress ------------------------------------------

/// A TCP proxy to `upstream` whose requests (uploads) flow on at
/// `bytes_per_sec`; answers come back at once. Returns its address.
fn slow_uploads(upstream: &str, bytes_per_sec: u64) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let up = upstream.to_string();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { continue };
            let Ok(server) = TcpStream::connect(&up) else {
                continue;
            };
            let (mut s_in, mut c_out) = (server.try_clone().unwrap(), client.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut s_in, &mut c_out);
                let _ = c_out.shutdown(std::net::Shutdown::Write);
            });
            std::thread::spawn(move || {
                let (mut client, mut server) = (client, server);
                let start = Instant::now();
                let mut mine = 0u64;
                let mut buf = vec![0u8; 16 * 1024];
                loop {
                    let n = match client.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    if server.write_all(&buf[..n]).is_err() {
                        break;
                    }
                    mine += n as u64;
                    let due = Duration::from_secs_f64(mine as f64 / bytes_per_sec as f64);
                    if let Some(wait) = due.checked_sub(start.elapsed()) {
                        std::thread::sleep(wait);
                    }
                }
                let _ = server.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    addr
}

/// An extension folder with `len` bytes of noise in it.
fn bulky_folder(root: &Path, version: &str, len: usize, seed: u64) -> PathBuf {
    let dir = write_folder_ext(root, "taskserv", "bulky", version, "Bulky", &[]);
    std::fs::write(dir.join("payload.bin"), noise(len, seed)).unwrap();
    dir
}

#[test]
fn publish_shows_upload_progress_on_a_terminal_and_nothing_without_one() {
    const SIZE: usize = 8_000_000;
    let reg = Registry::start(Options::default());
    // 2 MB/s up: the 8 MB layer takes about 4 s.
    let proxy = slow_uploads(&reg.addr, 2_000_000);
    let sb = Sandbox::new();
    let cfg = sb.write_config(&format!(
        "[oci]\nregistry = \"{proxy}\"\nnamespace = \"{NS}\"\ntimeout_seconds = 10\n[cache]\nartifact_dir = \"{}\"\n",
        sb.path("artifacts").display()
    ));
    let _d = Daemon::start(&sb, &["--config", cfg.to_str().unwrap()], &[]);
    let nu = Nu::new(&sb);

    // On a terminal: a byte progress bar in phase `push` on stderr; the
    // record (saved, as stdout would carry it) is the usual one.
    let first = bulky_folder(&sb.path("src"), "1.0.0", SIZE, 5);
    let saved = sb.path("home/published.json");
    let t = Tmux::start(&sb, &sb.path("home"));
    t.type_text(&format!(
        "ext publish '{}' --version 1.0.0 | to json --raw | save -f '{}'",
        first.display(),
        saved.display()
    ));
    t.keys(&["Enter"]);
    assert!(
        t.wait_for(Duration::from_secs(60), |s| {
            last_line_with(s, "publish ").is_some_and(|l| l.contains("push") && l.contains("MiB"))
        }),
        "no upload progress in the terminal:\n{}",
        t.capture()
    );
    assert!(
        wait_until(Duration::from_secs(60), || std::fs::read_to_string(&saved)
            .is_ok_and(|s| s.ends_with('}'))),
        "the publish did not finish:\n{}",
        t.capture()
    );
    let on_tty: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&saved).unwrap()).unwrap();
    assert_eq!(on_tty["pushed"], true, "{on_tty}");
    assert!(on_tty["size"].as_u64().unwrap() > SIZE as u64, "{on_tty}");

    // Without a terminal: just as slow, nothing on stderr, one record on
    // stdout with the same columns.
    let second = bulky_folder(&sb.path("src2"), "1.0.1", SIZE, 6);
    let started = Instant::now();
    let out = nu.run(&format!(
        "ext publish '{}' --version 1.0.1 | to json --raw",
        second.display()
    ));
    let took = started.elapsed();
    assert!(out.ok, "publish failed: {}", out.stderr);
    assert!(
        took > Duration::from_secs(2),
        "too fast ({took:?}) to show that nothing is drawn"
    );
    assert!(
        out.stderr.trim().is_empty(),
        "progress drawn without a terminal: {:?}",
        out.stderr
    );
    assert_eq!(out.stdout.trim().lines().count(), 1, "{}", out.stdout);
    let piped: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
    let keys = |v: &serde_json::Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&piped), keys(&on_tty));
    assert_eq!(piped["version"], "1.0.1");
    assert_eq!(piped["pushed"], true);
    let mut tags = reg.tags(&format!("{NS}/bulky-taskserv"));
    tags.sort();
    assert_eq!(tags, ["1.0.0", "1.0.1"]);
}

//! `nu_plugin_ext` in the real `nu` 0.115.1, against a real `extregd` over
//! its local socket: every command, the pipelines users write, the errors,
//! daemon autostart, and the protocol's defences.

use extreg_shared::protocol::{self, Envelope, Request, Response};
use extreg_tests::socket::{self, read_frame, send_frame};
use extreg_tests::*;
use serde_json::Value;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

fn catalog(sb: &Sandbox) {
    let root = sb.catalog();
    write_folder_ext(
        &root,
        "provider",
        "aws",
        "1.1.0",
        "AWS provider",
        &["cloud"],
    );
    write_folder_ext(
        &root,
        "provider",
        "aws",
        "1.2.0",
        "AWS provider",
        &["cloud"],
    );
    for v in ["1.27.4", "1.28.0", "1.29.0-rc.1"] {
        write_folder_ext(
            &root,
            "taskserv",
            "kubernetes",
            v,
            "Container orchestration",
            &["containers"],
        );
    }
    write_folder_ext(
        &root,
        "taskserv",
        "k3s",
        "1.27.5",
        "Lightweight Kubernetes distribution",
        &[],
    );
    write_folder_ext(
        &root,
        "cluster",
        "buildkit",
        "0.12.0",
        "Image builds on kubernetes",
        &[],
    );
    // The same name as two types: needs --type.
    write_folder_ext(&root, "cluster", "aws", "0.1.0", "An AWS cluster", &[]);
    // Over a megabyte of incompressible bytes, for `where size > 1mb`.
    let big = write_folder_ext(&root, "taskserv", "bigdata", "1.0.0", "Large", &[]);
    let noise = noise(1_500_000, 0x9E3779B97F4A7C15);
    std::fs::write(big.join("payload.bin"), noise).unwrap();
}

fn start(sb: &Sandbox) -> Daemon {
    sb.start_local("")
}

fn names(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect()
}

#[test]
fn search_list_info_versions_as_nushell_tables() {
    let sb = Sandbox::new();
    catalog(&sb);
    let _d = start(&sb);
    let nu = Nu::new(&sb);

    let v = nu.json("ext search kubernetes | where type == taskserv | get name");
    assert_eq!(v, serde_json::json!(["kubernetes", "k3s"]));

    // Columns match the REST JSON; types are Nushell's.
    let v = nu.json("ext list --type taskserv | first | columns");
    assert_eq!(
        v,
        serde_json::json!([
            "name",
            "type",
            "version",
            "description",
            "author",
            "repository",
            "source",
            "published_at",
            "download_url",
            "checksum",
            "size",
            "tags",
            "prerelease",
            "stale",
            "requires",
            "dependencies",
            "signature",
            "mismatch"
        ])
    );
    let v = nu.json("ext list | first | [($in.published_at | describe) ($in.size | describe) ($in.tags | describe)]");
    assert_eq!(
        v,
        serde_json::json!(["datetime", "filesize", "list<string>"])
    );

    let v = nu.json("ext list | where size > 1mb | get name");
    assert_eq!(v, serde_json::json!(["bigdata"]));
    let v = nu.json("ext list --type provider | get name");
    assert_eq!(v, serde_json::json!(["aws"]));
    let v = nu.json("ext list --source oci");
    assert_eq!(v, serde_json::json!([]));

    let v = nu.json("ext versions kubernetes | first");
    assert_eq!(v["version"], "1.29.0-rc.1");
    assert_eq!(v["prerelease"], true);
    let v = nu.json("ext versions kubernetes | where not prerelease | first | get version");
    assert_eq!(v, "1.28.0");

    let v = nu.json("ext info kubernetes");
    assert_eq!(
        (v["name"].as_str(), v["version"].as_str()),
        (Some("kubernetes"), Some("1.28.0"))
    );
    let v = nu.json("ext info aws --type provider --version 1.1.0 | get version");
    assert_eq!(v, "1.1.0");
    let v = nu.json("ext info aws --type cluster | get description");
    assert_eq!(v, "An AWS cluster");
    // KUBE: a name prefix of kubernetes (rank 1) beats k3s's description.
    let v = nu.json("ext search KUBE --limit 1 | get name");
    assert_eq!(v, serde_json::json!(["kubernetes"]));
    let v = nu.json("ext search kubernetes");
    assert_eq!(names(&v), ["kubernetes", "k3s", "buildkit"]);
}

#[test]
fn pull_health_and_cache_commands() {
    let sb = Sandbox::new();
    catalog(&sb);
    let _d = start(&sb);
    let nu = Nu::new(&sb);

    let v = nu.json("ext pull kubernetes --version 1.27.4");
    assert_eq!(v["version"], "1.27.4");
    assert_eq!(v["cached"], false);
    assert!(v["digest"].as_str().unwrap().starts_with("sha256:"));
    let path = v["path"].as_str().unwrap();
    assert_eq!(
        sha256_tag(&std::fs::read(path).unwrap()),
        v["digest"].as_str().unwrap()
    );
    let v = nu.json("ext pull kubernetes --version 1.27.4");
    assert_eq!(v["cached"], true);
    nu.json("ext pull aws --type provider");

    let v = nu.json("ext cache list | sort-by name | get name");
    assert_eq!(v, serde_json::json!(["aws", "kubernetes"]));
    let v = nu.json("ext cache list | first | [($in.cached_at | describe) ($in.size | describe)]");
    assert_eq!(v, serde_json::json!(["datetime", "filesize"]));
    let v = nu.json("ext cache stats | get artifacts.entries");
    assert_eq!(v, 2);

    let v = nu.json("ext cache clear --type taskserv --name kubernetes");
    assert_eq!(v["removed"], 1);
    let v = nu.json("ext cache list | get name");
    assert_eq!(v, serde_json::json!(["aws"]));
    let v = nu.json("ext cache prune --days 1");
    assert_eq!(v["removed"], 0, "used today, so kept");
    let v = nu.json("ext cache prune --days 0");
    assert_eq!(v["removed"], 1);
    let v = nu.json("ext cache clear --all");
    assert_eq!(v["removed"], 0);
    assert!(std::fs::read_dir(sb.path("artifacts/blobs/sha256"))
        .unwrap()
        .next()
        .is_none());

    let v = nu.json("ext health");
    assert_eq!(v["status"], "healthy");
    assert_eq!(v["backends"]["local"]["healthy"], true);
    assert_eq!(v["backends"]["oci"]["enabled"], false);

    let help = nu.run("ext");
    assert!(help.ok, "{}", help.stderr);
    for sub in ["ext search", "ext list", "ext cache"] {
        assert!(
            help.stdout.contains(sub),
            "`ext` help lacks {sub}:\n{}",
            help.stdout
        );
    }
}

/// stderr with miette's line wrapping undone.
fn flat(s: &str) -> String {
    s.lines()
        .map(|l| l.trim().trim_start_matches('|').trim())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The error is a LabeledError whose label points at `needle` in the
/// script, with `message` in its text.
pub(crate) fn assert_labeled(out: &NuOutput, message: &str, needle: &str) {
    assert!(!out.ok, "expected a failure, got: {}", out.stdout);
    assert!(
        flat(&out.stderr).contains(message),
        "expected {message:?} in:\n{}",
        out.stderr
    );
    // miette underlines the labelled span under the source line.
    // The numbered source line (` 2 | ext list --type widget`).
    // Not line 1 (`plugin use` with a random temp path, which may hold
    // the needle by chance).
    let is_source = |l: &str| {
        let t = l.trim_start();
        t.starts_with(|c: char| c.is_ascii_digit())
            && t.contains(" | ")
            && !t.contains("plugin use")
    };
    let src = out
        .stderr
        .lines()
        .find(|l| is_source(l) && l.contains(needle))
        .unwrap_or_else(|| panic!("source line with {needle:?} not shown:\n{}", out.stderr));
    let col = src.find(needle).unwrap();
    let under = out
        .stderr
        .lines()
        .skip_while(|l| *l != src)
        .nth(1)
        .unwrap_or_default();
    let covered = under
        .get(col..col + needle.len())
        .is_some_and(|u| u.chars().all(|c| c == '^' || c == '|'));
    assert!(covered, "label not under {needle:?}:\n{src}\n{under}");
}

#[test]
fn errors_point_at_the_argument_at_fault() {
    let sb = Sandbox::new();
    catalog(&sb);
    let _d = start(&sb);
    let nu = Nu::new(&sb);
    assert_labeled(
        &nu.run("ext list --type widget"),
        "unknown extension type 'widget'",
        "widget",
    );
    assert_labeled(&nu.run("ext list --source s3"), "unknown source 's3'", "s3");
    assert_labeled(
        &nu.run("ext info nosuchthing"),
        "no extension named 'nosuchthing'",
        "nosuchthing",
    );
    assert_labeled(
        &nu.run("ext info aws"),
        "exists as provider and cluster",
        "aws",
    );
    assert_labeled(
        &nu.run("ext info aws --type provider --version 9.9.9"),
        "version 9.9.9 not found",
        "9.9.9",
    );
    assert_labeled(
        &nu.run("ext info aws --type provider --version 1.x"),
        "invalid version",
        "1.x",
    );
    assert_labeled(
        &nu.run("ext versions ../etc"),
        "invalid extension name",
        "../etc",
    );
    assert_labeled(
        &nu.run("ext search kube --limit 0"),
        "--limit 0 is out of range",
        "0",
    );
    assert_labeled(
        &nu.run("ext cache clear --all --name aws"),
        "does not combine",
        "aws",
    );
    nu.fails("ext cache clear", &["say what to clear"]);
    let out = nu.run("ext info nosuchthing");
    assert!(out.stderr.contains("extregd::not_found"), "{}", out.stderr);
}

#[test]
fn the_daemon_is_started_when_none_listens() {
    let sb = Sandbox::new();
    catalog(&sb);
    // The user's default config: the autostarted daemon reads it.
    std::fs::create_dir_all(sb.path("config/provisioning")).unwrap();
    std::fs::write(
        sb.path("config/provisioning/extregd.toml"),
        format!(
            "[server]\nport = 0\n[local]\npath = \"{}\"\n",
            sb.catalog().display()
        ),
    )
    .unwrap();
    let socket = sandbox_socket(&sb);
    assert!(!socket.exists());
    let nu = Nu::new(&sb);
    let v = nu.json("ext list --type provider | get name");
    assert_eq!(v, serde_json::json!(["aws"]));
    assert!(socket.exists(), "the autostarted daemon listens");
    // A second call reuses it rather than starting another.
    let v = nu.json("ext info k3s | get version");
    assert_eq!(v, "1.27.5");
    let pids = pids_with_arg(&socket.display().to_string());
    assert_eq!(pids.len(), 1, "exactly one daemon: {pids:?}");
    for p in pids {
        unsafe_kill(p);
    }
}

#[test]
fn no_daemon_and_no_autostart_is_a_clear_error_not_a_hang() {
    let sb = Sandbox::new();
    let nu = Nu::new(&sb);
    let start = std::time::Instant::now();
    let out = nu.run("$env.config.plugins.ext = {autostart: false}\next list");
    assert!(!out.ok);
    assert!(
        out.stderr.contains("extregd is not running"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("systemctl --user start extregd"),
        "{}",
        out.stderr
    );
    let out = nu.run("$env.config.plugins.ext = {daemon: '/nonexistent/extregd'}\next list");
    assert!(!out.ok);
    assert!(
        out.stderr.contains("could not start extregd"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("/nonexistent/extregd"),
        "{}",
        out.stderr
    );
    // A daemon that exits at once (bad config) is reported with its reason.
    std::fs::create_dir_all(sb.path("config/provisioning")).unwrap();
    std::fs::write(
        sb.path("config/provisioning/extregd.toml"),
        "[cache]\ncapacity = 0\n",
    )
    .unwrap();
    let out = nu.run("ext list");
    assert!(!out.ok);
    assert!(
        out.stderr.contains("capacity must be at least 1"),
        "{}",
        out.stderr
    );
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "took {:?}",
        start.elapsed()
    );
    let out = nu.run("$env.config.plugins.ext = {colour: 'red'}\next list");
    assert!(
        out.stderr.contains("unknown key 'colour'"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_socket_path_from_the_plugin_config_is_used() {
    let sb = Sandbox::new();
    catalog(&sb);
    let custom = sb.path("elsewhere/x.sock");
    let cfg = sb.write_config(&format!("[local]\npath = \"{}\"\n", sb.catalog().display()));
    let _d = Daemon::start(
        &sb,
        &[
            "--config",
            cfg.to_str().unwrap(),
            "--socket",
            custom.to_str().unwrap(),
        ],
        &[],
    );
    let nu = Nu::new(&sb);
    let v = nu.json(&format!(
        "$env.config.plugins.ext = {{socket: '{}', autostart: false}}\next info k3s | get name",
        custom.display()
    ));
    assert_eq!(v, "k3s");
}

/// A fake daemon that answers hello with another protocol version.
#[test]
fn a_version_mismatch_names_both_versions() {
    let sb = Sandbox::new();
    let socket = sandbox_socket(&sb);
    std::fs::create_dir_all(socket.parent().unwrap()).unwrap();
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let req: Envelope<Request> = read_frame(&mut s).unwrap();
        assert!(matches!(
            req.body,
            Request::Hello {
                protocol: protocol::PROTOCOL_VERSION,
                ..
            }
        ));
        let resp = Envelope {
            id: req.id,
            body: Response::Hello {
                protocol: protocol::PROTOCOL_VERSION + 1,
                server: "future".into(),
            },
        };
        s.write_all(&protocol::encode(&resp).unwrap()).unwrap();
    });
    let nu = Nu::new(&sb);
    let out = nu.run("ext list");
    server.join().unwrap();
    assert!(!out.ok);
    let ours = protocol::PROTOCOL_VERSION;
    let theirs = ours + 1;
    let err = flat(&out.stderr);
    assert!(err.contains("protocol version mismatch"), "{err}");
    assert!(
        err.contains(&format!("extregd speaks version {theirs}")),
        "{err}"
    );
    assert!(
        err.contains(&format!("nu_plugin_ext speaks version {ours}")),
        "{err}"
    );
}

fn hello(s: &mut UnixStream, version: u32) -> Envelope<Response> {
    send_frame(s, 1, socket::hello(version, "test")).unwrap();
    read_frame(s).expect("an answer to hello")
}

/// True when the daemon closed this connection (EOF on read).
fn closed(s: &mut UnixStream) -> bool {
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut b = [0u8; 1];
    matches!(s.read(&mut b), Ok(0))
}

#[test]
fn the_daemon_survives_bad_frames_and_refuses_bad_hellos() {
    let sb = Sandbox::new();
    catalog(&sb);
    let d = start(&sb);
    let socket = sandbox_socket(&sb);

    // Owner-only: 0700 folder, 0600 socket.
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(socket.parent().unwrap()), 0o700);
    assert_eq!(mode(&socket), 0o600);

    // A client of another protocol version is told both versions and cut.
    let mut s = UnixStream::connect(&socket).unwrap();
    match hello(&mut s, 999).body {
        Response::Error(b) => {
            assert_eq!(b.error, "version_mismatch");
            assert!(b.message.contains("version 999"), "{}", b.message);
            assert!(b
                .message
                .contains(&format!("version {}", protocol::PROTOCOL_VERSION)));
        }
        other => panic!("expected an error, got {other:?}"),
    }
    assert!(closed(&mut s));

    // A request before hello.
    let mut s = UnixStream::connect(&socket).unwrap();
    s.write_all(
        &protocol::encode(&Envelope {
            id: 5,
            body: Request::Health,
        })
        .unwrap(),
    )
    .unwrap();
    let r: Envelope<Response> = read_frame(&mut s).unwrap();
    assert!(
        matches!(r.body, Response::Error(ref b) if b.message.contains("hello")),
        "{r:?}"
    );
    assert!(closed(&mut s));

    // Oversized, empty, garbage and truncated frames: each connection is cut.
    let cases: Vec<Vec<u8>> = vec![
        0xffff_ffffu32.to_be_bytes().to_vec(),
        0u32.to_be_bytes().to_vec(),
        [&8u32.to_be_bytes()[..], &[0xff; 8][..]].concat(),
    ];
    for bytes in cases {
        let mut s = UnixStream::connect(&socket).unwrap();
        s.write_all(&bytes).unwrap();
        assert!(closed(&mut s), "not closed after {bytes:?}");
    }
    {
        let mut s = UnixStream::connect(&socket).unwrap();
        s.write_all(&100u32.to_be_bytes()).unwrap();
        s.write_all(&[1, 2, 3]).unwrap();
        // hang up mid-frame
    }

    // Everyone else is still served, over the socket and over HTTP.
    let mut s = UnixStream::connect(&socket).unwrap();
    assert!(matches!(
        hello(&mut s, protocol::PROTOCOL_VERSION).body,
        Response::Hello { .. }
    ));
    s.write_all(
        &protocol::encode(&Envelope {
            id: 2,
            body: Request::Versions {
                ext_type: None,
                name: "k3s".into(),
            },
        })
        .unwrap(),
    )
    .unwrap();
    let r: Envelope<Response> = read_frame(&mut s).unwrap();
    assert_eq!(r.id, 2);
    assert!(
        matches!(r.body, Response::Versions(ref v) if v.len() == 1),
        "{r:?}"
    );
    assert_eq!(d.get("/health").status(), 200);
    let log = d.stderr();
    assert!(log.contains("exceeds the 16777216-byte limit"), "{log}");
    assert!(log.contains("truncated frame"), "{log}");
    assert!(log.contains("malformed frame"), "{log}");
}

#[test]
fn peers_of_another_user_are_refused() {
    assert_eq!(
        libc_geteuid(),
        0,
        "this test switches to uid 65534 and so must run as root (CI does)"
    );
    let sb = Sandbox::new();
    catalog(&sb);
    let d = start(&sb);
    let socket = sandbox_socket(&sb);
    // Open the folder and socket so only the daemon's own check stands.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(sb.path("runtime"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(sb.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(
        socket.parent().unwrap(),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o777)).unwrap();
    // python3 as uid 65534: connect, send hello, print how many bytes came
    // back (0 when the daemon hung up, whether before or after the send).
    let script = format!(
        "import socket\ns=socket.socket(socket.AF_UNIX)\ns.connect({:?})\ntry:\n  s.sendall(bytes.fromhex({:?}))\n  s.settimeout(5)\n  print(len(s.recv(100)))\nexcept (BrokenPipeError, ConnectionResetError):\n  print(0)\n",
        socket.display().to_string(),
        hex::encode(protocol::encode(&Envelope { id: 1, body: Request::Hello { protocol: protocol::PROTOCOL_VERSION, client: "x".into() } }).unwrap())
    );
    use std::os::unix::process::CommandExt;
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(&script)
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(
        said,
        "0",
        "another user's peer got an answer: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        d.stderr()
            .contains("refusing a local socket peer of another user"),
        "{}",
        d.stderr()
    );
    // Our own user still gets in.
    let mut s = UnixStream::connect(&socket).unwrap();
    assert!(matches!(
        hello(&mut s, protocol::PROTOCOL_VERSION).body,
        Response::Hello { .. }
    ));
}

fn libc_geteuid() -> u32 {
    std::fs::metadata("/proc/self")
        .map(|m| {
            use std::os::unix::fs::MetadataExt;
            m.uid()
        })
        .unwrap_or(u32::MAX)
}

/// Pids whose command line holds `arg`.
fn pids_with_arg(arg: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd);
            if cmd.split('\0').any(|a| a == arg) && cmd.contains("extregd") {
                out.push(pid);
            }
        }
    }
    out
}

fn unsafe_kill(pid: u32) {
    let _ = std::process::Command::new("kill")
        .arg("-9")
        .arg(pid.to_string())
        .status();
}

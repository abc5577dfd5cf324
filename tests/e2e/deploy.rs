//! Deployment behaviour of the real `extregd` binary (issue 11): the seed's
//! `[server]` switches (CORS, compression), environment overrides, `~`
//! expansion, private-CA TLS to real backends behind a real nginx TLS
//! front, probes and `extregd healthcheck`, systemd readiness, socket
//! activation and journald logs, and the operator metrics.

use extreg_tests::gitea::{add_extension, Access, GiteaStandIn};
use extreg_tests::nginx::{Nginx, TestCa};
use extreg_tests::registry::{free_port, Options, Registry};
use extreg_tests::*;
use serde_json::Value;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const ORG: &str = "provisioning-extensions";
const NS: &str = "provisioning";
const TOKEN: &str = "gitea-read-token-31d7";

fn run(sb: &Sandbox, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut c = sb.command(&bin("extregd"));
    c.args(args).stdin(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run extregd")
}

fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn catalog_daemon(sb: &Sandbox, server: &str) -> Daemon {
    write_folder_ext(
        &sb.catalog(),
        "taskserv",
        "kubernetes",
        "1.28.0",
        "Kubernetes",
        &["k8s"],
    );
    write_folder_ext(&sb.catalog(), "provider", "aws", "1.1.0", "AWS", &[]);
    let cfg = sb.write_config(&format!(
        "[server]\n{server}\n[local]\npath = \"{}\"\n",
        sb.catalog().display()
    ));
    Daemon::start(sb, &["--config", cfg.to_str().unwrap()], &[])
}

fn raw(d: &Daemon, path: &str, headers: &[(&str, &str)]) -> reqwest::blocking::Response {
    let mut r = d.client.get(d.api(path));
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    r.send().unwrap()
}

fn poll(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}

#[test]
fn cors_answers_preflights_and_allows_only_configured_origins() {
    let sb = Sandbox::new();
    let d = catalog_daemon(
        &sb,
        "enable_cors = true\ncors_allowed_origins = [\"https://app.example.com\"]",
    );
    let pre = d
        .client
        .request(reqwest::Method::OPTIONS, d.api("/extensions"))
        .header("Origin", "https://app.example.com")
        .header("Access-Control-Request-Method", "GET")
        .header("Access-Control-Request-Headers", "range")
        .send()
        .unwrap();
    assert_eq!(pre.status(), 200);
    let h = pre.headers();
    assert_eq!(h["access-control-allow-origin"], "https://app.example.com");
    let methods = h["access-control-allow-methods"].to_str().unwrap();
    assert!(
        methods.contains("GET") && !methods.contains("POST"),
        "{methods}"
    );
    assert!(h["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .contains("range"));
    assert_eq!(h["access-control-max-age"], "3600");

    let ok = raw(&d, "/extensions", &[("Origin", "https://app.example.com")]);
    assert_eq!(ok.status(), 200);
    assert_eq!(
        ok.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    assert!(ok.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .contains("etag"));
    let other = raw(&d, "/extensions", &[("Origin", "https://evil.example")]);
    assert_eq!(other.status(), 200);
    assert!(other.headers().get("access-control-allow-origin").is_none());

    // Off by default: no CORS headers at all.
    let sb2 = Sandbox::new();
    let d2 = catalog_daemon(&sb2, "");
    let r = raw(&d2, "/extensions", &[("Origin", "https://app.example.com")]);
    assert!(r.headers().get("access-control-allow-origin").is_none());

    // A malformed origin is a config error naming it.
    let cfg = sb2.write_config(
        "[server]\nenable_cors = true\ncors_allowed_origins = [\"app.example.com/x\"]\n",
    );
    let o = run(
        &sb2,
        &["--config", cfg.to_str().unwrap(), "--check-config"],
        &[],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("app.example.com/x"), "{}", text(&o));
}

fn decode(encoding: &str, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match encoding {
        "gzip" => {
            flate2::read::GzDecoder::new(body)
                .read_to_end(&mut out)
                .unwrap();
        }
        "br" => {
            brotli_decompressor::Decompressor::new(body, 4096)
                .read_to_end(&mut out)
                .unwrap();
        }
        "zstd" => out = zstd::decode_all(body).unwrap(),
        other => panic!("unexpected encoding {other}"),
    }
    out
}

#[test]
fn json_is_compressed_per_accept_encoding_and_artifacts_never_are() {
    let sb = Sandbox::new();
    let d = catalog_daemon(&sb, "enable_compression = true");
    let plain = raw(&d, "/extensions", &[]);
    assert!(plain.headers().get("content-encoding").is_none());
    let plain = plain.bytes().unwrap().to_vec();
    assert!(plain.len() > 100);
    for enc in ["gzip", "br", "zstd"] {
        let r = raw(&d, "/extensions", &[("Accept-Encoding", enc)]);
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-encoding"], enc);
        assert!(r.headers()["vary"]
            .to_str()
            .unwrap()
            .contains("accept-encoding"));
        let body = r.bytes().unwrap();
        assert_ne!(&body[..], &plain[..], "{enc} body was not compressed");
        assert_eq!(
            decode(enc, &body),
            plain,
            "{enc} does not decode to the same JSON"
        );
    }
    // Preference order of the client is honoured.
    let r = raw(
        &d,
        "/extensions",
        &[("Accept-Encoding", "gzip;q=0.5, zstd;q=1.0")],
    );
    assert_eq!(r.headers()["content-encoding"], "zstd");
    // Artifact bytes go out as they are, whatever the client accepts.
    let dl = raw(
        &d,
        "/extensions/taskserv/kubernetes/1.28.0",
        &[("Accept-Encoding", "gzip, br, zstd")],
    );
    assert_eq!(dl.status(), 200);
    assert!(dl.headers().get("content-encoding").is_none());
    let etag = dl.headers()["etag"]
        .to_str()
        .unwrap()
        .trim_matches('"')
        .to_string();
    let bytes = dl.bytes().unwrap();
    assert_eq!(sha256_tag(&bytes), etag);

    // Switched off: never compressed.
    let sb2 = Sandbox::new();
    let d2 = catalog_daemon(&sb2, "enable_compression = false");
    let r = raw(&d2, "/extensions", &[("Accept-Encoding", "gzip, br, zstd")]);
    assert!(r.headers().get("content-encoding").is_none());
}

#[test]
fn env_overrides_server_keys_below_flags_and_bad_values_exit_2() {
    let sb = Sandbox::new();
    let cfg = sb.write_config("[server]\nhost = \"127.0.0.1\"\nport = 8082\nworkers = 4\n");
    let c = cfg.to_str().unwrap();
    let o = run(
        &sb,
        &["--config", c, "--check-config"],
        &[
            ("EXTREGD_HOST", "0.0.0.0"),
            ("EXTREGD_PORT", "9123"),
            ("EXTREGD_WORKERS", "2"),
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("listen = 0.0.0.0:9123"), "{}", text(&o));
    // Flags beat the environment.
    let o = run(
        &sb,
        &[
            "--config",
            c,
            "--check-config",
            "--port",
            "9124",
            "--host",
            "::1",
        ],
        &[("EXTREGD_HOST", "0.0.0.0"), ("EXTREGD_PORT", "9123")],
    );
    assert!(text(&o).contains("listen = ::1:9124"), "{}", text(&o));
    for (k, v) in [("EXTREGD_PORT", "80000"), ("EXTREGD_WORKERS", "many")] {
        let o = run(&sb, &["--config", c, "--check-config"], &[(k, v)]);
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        assert!(text(&o).contains(k) && text(&o).contains(v), "{}", text(&o));
    }
    // A daemon with no config file at all binds where the environment says.
    let port = free_port();
    let mut child = sb
        .command(&bin("extregd"))
        .env("EXTREGD_PORT", port.to_string())
        .env("EXTREGD_HOST", "127.0.0.1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert!(line.contains(&format!("127.0.0.1:{port}")), "{line}");
    let r = reqwest::blocking::get(format!("http://127.0.0.1:{port}/api/v1/health/live")).unwrap();
    assert_eq!(r.status(), 200);
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn tilde_and_home_expand_in_path_keys() {
    let sb = Sandbox::new();
    let home = sb.path("home");
    write_folder_ext(&home.join("exts"), "provider", "aws", "1.0.0", "AWS", &[]);
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(home.join("oci-token"), "user:pass\n").unwrap();
    std::fs::set_permissions(
        home.join("oci-token"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let cfg = sb.write_config(
        "[local]\npath = \"~/exts\"\n[oci]\nregistry = \"127.0.0.1:1\"\nauth_token_path = \"$HOME/oci-token\"\n\
         [cache]\nartifact_dir = \"${HOME}/art\"\n",
    );
    let c = cfg.to_str().unwrap();
    let o = run(&sb, &["--config", c, "--check-config"], &[]);
    assert!(o.status.success(), "{}", text(&o));
    let t = text(&o);
    assert!(
        t.contains(&format!("local = {}/exts", home.display())),
        "{t}"
    );
    assert!(
        t.contains(&format!("artifact_dir = {}/art", home.display())),
        "{t}"
    );
    // It serves from the expanded folder.
    let cfg =
        sb.write_config("[local]\npath = \"~/exts\"\n[cache]\nartifact_dir = \"${HOME}/art\"\n");
    let d = Daemon::start(&sb, &["--config", cfg.to_str().unwrap()], &[]);
    let (s, v) = d.get_json("/extensions/provider/aws");
    assert_eq!(s, 200, "{v}");
    // An unset variable is an error naming the key.
    let cfg = sb.write_config("[local]\npath = \"$NO_SUCH_VAR/x\"\n");
    let o = run(
        &sb,
        &["--config", cfg.to_str().unwrap(), "--check-config"],
        &[],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o).contains("[local] path") && text(&o).contains("NO_SUCH_VAR"),
        "{}",
        text(&o)
    );
}

fn write_secret(sb: &Sandbox, name: &str, content: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = sb.path(name);
    std::fs::write(&p, content).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    p
}

fn gitea_with_one_extension() -> GiteaStandIn {
    let g = GiteaStandIn::start();
    g.with(|w| {
        w.token(TOKEN, Access::Read);
        w.org(ORG);
        add_extension(w, ORG, "taskserv", "redis", &["v7.2.0"], true);
    });
    g
}

fn registry_with_one_extension() -> Registry {
    let reg = Registry::start(Options::default());
    let tgz = extreg_tests::gitea::extension_tarball("provider", "hetzner", "0.3.0", "Hetzner");
    reg.push_artifact(
        &format!("{NS}/hetzner-provider"),
        &["0.3.0"],
        &tgz,
        &[("org.opencontainers.image.description", "Hetzner")],
    );
    reg
}

fn names(v: &Value) -> Vec<String> {
    let mut n: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{}/{}",
                e["type"].as_str().unwrap(),
                e["name"].as_str().unwrap()
            )
        })
        .collect();
    n.sort();
    n
}

#[test]
fn a_private_ca_is_trusted_per_backend_and_through_ssl_cert_file() {
    let ca = TestCa::new();
    let g = gitea_with_one_extension();
    let reg = registry_with_one_extension();
    let gitea_tls = Nginx::tls_front(
        &ca,
        g.url.trim_start_matches("http://").trim_end_matches('/'),
    );
    let oci_tls = Nginx::tls_front(&ca, &reg.addr);
    let sb = Sandbox::new();
    let tok = write_secret(&sb, "gitea-token", &format!("{TOKEN}\n"));
    let conf = |ca_line: &str| {
        format!(
            "[gitea]\nurl = \"{}\"\norganization = \"{ORG}\"\ntoken_path = \"{}\"\ntimeout_seconds = 5\n{ca_line}\n\
             [oci]\nregistry = \"{}\"\nnamespace = \"{NS}\"\ntimeout_seconds = 5\n{ca_line}\n\
             [cache]\nartifact_dir = \"{}\"\n",
            gitea_tls.url("https"),
            tok.display(),
            oci_tls.url("https"),
            sb.path("artifacts").display()
        )
    };
    let want = vec!["provider/hetzner".to_string(), "taskserv/redis".to_string()];

    // 1. ca_file per backend.
    let cfg = sb.write_config(&conf(&format!("ca_file = \"{}\"", ca.ca_pem.display())));
    let d = Daemon::start(&sb, &["--config", cfg.to_str().unwrap()], &[]);
    let (s, v) = d.get_json("/health");
    assert_eq!(s, 200);
    assert_eq!(v["status"], "healthy", "{v}");
    let (_, v) = d.get_json("/extensions");
    assert_eq!(names(&v), want, "{v}");
    let dl = d.get("/extensions/provider/hetzner/0.3.0");
    assert_eq!(dl.status(), 200);
    let dl = d.get("/extensions/taskserv/redis/7.2.0");
    assert_eq!(dl.status(), 200);
    drop(d);

    // 2. Without it the certificate is refused (unknown issuer).
    let sb2 = Sandbox::new();
    let tok2 = write_secret(&sb2, "gitea-token", &format!("{TOKEN}\n"));
    let cfg2 = sb2.write_config(
        &conf("")
            .replace(&tok.display().to_string(), &tok2.display().to_string())
            .replace(
                &sb.path("artifacts").display().to_string(),
                &sb2.path("artifacts").display().to_string(),
            ),
    );
    let d = Daemon::start(&sb2, &["--config", cfg2.to_str().unwrap()], &[]);
    let (_, v) = d.get_json("/health");
    assert_eq!(v["status"], "degraded", "{v}");
    assert_eq!(v["backends"]["oci"]["healthy"], false, "{v}");
    assert_eq!(v["backends"]["gitea"]["healthy"], false, "{v}");
    let (s, _) = d.get_json("/extensions");
    assert_eq!(s, 502);
    drop(d);

    // 3. The system store is honoured: SSL_CERT_FILE naming the CA.
    let d = Daemon::start(
        &sb2,
        &["--config", cfg2.to_str().unwrap()],
        &[("SSL_CERT_FILE", ca.ca_pem.to_str().unwrap())],
    );
    let (_, v) = d.get_json("/health");
    assert_eq!(v["status"], "healthy", "{v}");
    let (_, v) = d.get_json("/extensions");
    assert_eq!(names(&v), want, "{v}");

    // 4. A ca_file that is not a certificate is a config error.
    let bad = write_secret(&sb2, "bad.pem", "hello\n");
    let cfg3 = sb2.write_config(&conf(&format!("ca_file = \"{}\"", bad.display())));
    let o = run(&sb2, &["--config", cfg3.to_str().unwrap()], &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("ca_file") && text(&o).contains("bad.pem"),
        "{}",
        text(&o)
    );
}

/// Seed 001's configuration block, as printed there, with real token files
/// and the URLs pointed at the local stand-ins.
#[test]
fn the_seed_example_config_starts() {
    let g = gitea_with_one_extension();
    let reg = registry_with_one_extension();
    let sb = Sandbox::new();
    let gtok = write_secret(&sb, "gitea-token.txt", &format!("{TOKEN}\n"));
    let otok = write_secret(&sb, "oci-token.txt", "anonymous-bearer-token\n");
    let cfg = sb.write_config(&format!(
        r#"[server]
host = "0.0.0.0"
port = 8082
workers = 4
enable_cors = true
enable_compression = true

[gitea]
url = "{}"
organization = "{ORG}"
token_path = "{}"
timeout_seconds = 30
verify_ssl = true

[oci]
registry = "{}"
namespace = "{NS}"
auth_token_path = "{}"
timeout_seconds = 30
verify_ssl = true

[cache]
capacity = 1000
ttl_seconds = 300
enable_metadata_cache = true
enable_list_cache = true
"#,
        g.url.trim_end_matches('/'),
        gtok.display(),
        reg.addr,
        otok.display()
    ));
    // --host keeps the test on loopback; everything else is the seed's.
    let d = Daemon::start(
        &sb,
        &["--config", cfg.to_str().unwrap(), "--host", "127.0.0.1"],
        &[],
    );
    let (_, v) = d.get_json("/extensions");
    assert_eq!(
        names(&v),
        vec!["provider/hetzner".to_string(), "taskserv/redis".to_string()]
    );
    let r = raw(
        &d,
        "/extensions",
        &[("Origin", "https://x.example"), ("Accept-Encoding", "gzip")],
    );
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    assert_eq!(r.headers()["content-encoding"], "gzip");
    let (s, v) = d.get_json("/health/ready");
    assert!(s == 200 || s == 503, "{v}");
}

fn healthcheck(sb: &Sandbox, args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let mut full = vec!["healthcheck"];
    full.extend(args);
    let o = run(sb, &full, env);
    (o.status.code().unwrap_or(-1), text(&o))
}

#[test]
fn probes_and_healthcheck_follow_backend_reachability() {
    let sb = Sandbox::new();
    // A local folder that does not exist yet: live, not ready.
    let root = sb.path("later");
    let cfg = sb.write_config(&format!("[local]\npath = \"{}\"\n", root.display()));
    let d = Daemon::start(&sb, &["--config", cfg.to_str().unwrap()], &[]);
    let (s, v) = d.get_json("/health/live");
    assert_eq!((s, v["status"].as_str()), (200, Some("live")));
    let (s, v) = d.get_json("/health/ready");
    assert_eq!(s, 503, "{v}");
    assert_eq!(v["status"], "not_ready");
    assert_eq!(v["waiting_for"], serde_json::json!(["local"]));
    let live = d.api("/health/live");
    let ready = d.api("/health/ready");
    let (code, out) = healthcheck(&sb, &["--url", &live], &[]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = healthcheck(&sb, &["--url", &ready], &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("503"), "{out}");
    // The backend becomes reachable: ready, and it stays so.
    write_folder_ext(&root, "provider", "aws", "1.0.0", "AWS", &[]);
    poll("readiness", Duration::from_secs(20), || {
        d.get("/health/ready").status() == 200
    });
    let (code, out) = healthcheck(&sb, &["--url", &ready], &[]);
    assert_eq!(code, 0, "{out}");
    std::fs::remove_dir_all(&root).unwrap();
    assert_eq!(d.get("/health/ready").status(), 200);
    // Probes are counted under their own route template.
    assert!(
        d.metric(
            "http_requests_total{method=\"GET\",route=\"/api/v1/health/ready\",status=\"503\"}"
        ) >= 1.0
    );

    // Without --url: the configured listener (env port, wildcard host
    // asked on loopback).
    let port = d.url.rsplit(':').next().unwrap().to_string();
    let (code, out) = healthcheck(
        &sb,
        &[],
        &[("EXTREGD_PORT", &port), ("EXTREGD_HOST", "0.0.0.0")],
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("127.0.0.1:{port}/api/v1/health/live")),
        "{out}"
    );
    // Nothing listening: exit 1 with the reason.
    let closed = free_port().to_string();
    let (code, out) = healthcheck(&sb, &["--port", &closed, "--timeout", "2"], &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("refused") || out.contains("connect"), "{out}");
}

#[test]
fn systemd_readiness_is_sent_once_the_listener_is_up() {
    let sb = Sandbox::new();
    let sock_path = sb.path("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    write_folder_ext(&sb.catalog(), "provider", "aws", "1.0.0", "AWS", &[]);
    let cfg = sb.write_config(&format!("[local]\npath = \"{}\"\n", sb.catalog().display()));
    let port = free_port();
    let mut child = sb
        .command(&bin("extregd"))
        .args([
            "--config",
            cfg.to_str().unwrap(),
            "--port",
            &port.to_string(),
        ])
        .env("NOTIFY_SOCKET", &sock_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 512];
    let n = sock.recv(&mut buf).expect("no READY=1 from extregd");
    let msg = String::from_utf8_lossy(&buf[..n]).to_string();
    // Ready means ready: the HTTP listener answers right away.
    let r = reqwest::blocking::get(format!("http://127.0.0.1:{port}/api/v1/health/live"));
    let _ = child.kill();
    let _ = child.wait();
    assert!(msg.lines().any(|l| l == "READY=1"), "{msg}");
    assert!(
        msg.contains(&format!("STATUS=serving on http://127.0.0.1:{port}")),
        "{msg}"
    );
    assert_eq!(r.unwrap().status(), 200);
}

#[test]
fn socket_activation_serves_on_inherited_sockets_and_leaves_them() {
    let activate = require_tool("systemd-socket-activate", "systemd");
    let sb = Sandbox::new();
    write_folder_ext(&sb.catalog(), "provider", "aws", "1.0.0", "AWS", &[]);
    let cfg = sb.write_config(&format!("[local]\npath = \"{}\"\n", sb.catalog().display()));
    let port = free_port();
    let sock = sb.path("runtime/activated.sock");
    // systemd-socket-activate binds both sockets and starts extregd on the
    // first connection, passing them as LISTEN_FDS (what the .socket unit
    // does).
    let mut child = sb
        .command(&activate)
        .arg("-l")
        .arg(format!("127.0.0.1:{port}"))
        .arg("-l")
        .arg(&sock)
        .arg(bin("extregd"))
        .args(["--config", cfg.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(sb.path("activate.log")).unwrap())
        .spawn()
        .unwrap();
    poll("the activated TCP socket", Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    // The first request starts the daemon and is answered by it.
    let r = Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
        .get(format!(
            "http://127.0.0.1:{port}/api/v1/extensions/provider/aws"
        ))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    // The local socket is the inherited one: it accepts, and no socket of
    // its own was bound in the default place.
    assert!(std::os::unix::net::UnixStream::connect(&sock).is_ok());
    assert!(!sb.path("runtime/extregd/extregd.sock").exists());
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    let log = std::fs::read_to_string(sb.path("activate.log")).unwrap_or_default();
    assert!(log.contains("socket activation"), "{log}");
    // The socket file belongs to systemd: the daemon left it in place.
    assert!(sock.exists(), "{log}");
}

#[test]
fn logs_carry_priorities_and_no_timestamps_under_journald() {
    use std::os::unix::fs::MetadataExt;
    let sb = Sandbox::new();
    let log = sb.path("stderr.log");
    let f = std::fs::File::create(&log).unwrap();
    let m = f.metadata().unwrap();
    let stream = format!("{}:{}", m.dev(), m.ino());
    // A missing folder makes a warning; the start an info line.
    let cfg = sb.write_config(&format!(
        "[local]\npath = \"{}\"\n",
        sb.path("absent").display()
    ));
    let mut child = sb
        .command(&bin("extregd"))
        .args(["--config", cfg.to_str().unwrap(), "--port", "0"])
        .env("JOURNAL_STREAM", &stream)
        .env("EXTREGD_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(f)
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    poll("the start log line", Duration::from_secs(10), || {
        std::fs::read_to_string(&log)
            .unwrap()
            .contains("serving /api/v1")
    });
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty());
    for l in &lines {
        assert!(l.starts_with('<'), "no priority prefix: {l}");
        assert!(
            !l.contains("Z ") && !l.contains("\u{1b}["),
            "timestamp or colour: {l}"
        );
    }
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("<4>") && l.contains("does not exist")),
        "{text}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("<6>") && l.contains("serving /api/v1")),
        "{text}"
    );

    // Stderr that is not the journal keeps the usual timestamps.
    let sb2 = Sandbox::new();
    let d = Daemon::start(&sb2, &[], &[("JOURNAL_STREAM", "1:2")]);
    poll("a log line", Duration::from_secs(10), || {
        d.stderr().contains("serving")
    });
    let first = d.stderr().lines().next().unwrap_or_default().to_string();
    assert!(first.starts_with("20"), "{first}");
}

#[test]
fn operator_metrics_are_exposed_and_promtool_clean() {
    let promtool = require_tool("promtool", "prometheus");
    let reg = registry_with_one_extension();
    let sb = Sandbox::new();
    let d = sb.start_oci(&reg.addr, NS, "");
    let (s, _) = d.get_json("/extensions");
    assert_eq!(s, 200);
    let r = d.get("/extensions/provider/hetzner/0.3.0");
    assert_eq!(r.status(), 200);
    let n = r.bytes().unwrap().len() as f64;
    let again = d
        .get("/extensions/provider/hetzner/0.3.0")
        .bytes()
        .unwrap()
        .len() as f64;
    let m = d.metrics();
    assert!(m.contains("\nprocess_cpu_seconds_total "), "{m}");
    for name in [
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
    ] {
        assert!(metric_value(&m, name) > 0.0, "{name} missing:\n{m}");
    }
    assert!(
        m.contains("extregd_build_info{rustc=\"")
            && m.contains(&format!("version=\"{}\"}} 1", env!("CARGO_PKG_VERSION"))),
        "{m}"
    );
    for op in ["list", "versions", "fetch"] {
        let c = metric_value(
            &m,
            &format!(
                "backend_request_duration_seconds_count{{backend=\"oci\",operation=\"{op}\"}}"
            ),
        );
        assert!(c >= 1.0, "no {op} duration:\n{m}");
    }
    // Fetched once from the registry, served twice.
    assert_eq!(
        metric_value(&m, "backend_bytes_fetched_total{backend=\"oci\"}"),
        n
    );
    assert_eq!(metric_value(&m, "artifact_bytes_served_total"), n + again);
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(m.as_bytes()).unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(
        o.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

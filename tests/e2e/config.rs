//! The command line and configuration: embedded default, env and flag
//! precedence, validation messages, and the shipped systemd unit.

use extreg_tests::*;
use std::process::Output;

fn run(sb: &Sandbox, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = sb.command(&bin("extregd"));
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run extregd")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn help_and_version() {
    let sb = Sandbox::new();
    let o = run(&sb, &["--help"], &[]);
    assert!(o.status.success());
    let t = text(&o);
    for flag in ["--config", "--host", "--port", "--check-config"] {
        assert!(t.contains(flag), "{flag} missing from --help:\n{t}");
    }
    let o = run(&sb, &["--version"], &[]);
    assert!(text(&o).contains(env!("CARGO_PKG_VERSION")));
}

#[test]
fn embedded_default_serves_the_xdg_extensions_folder_on_loopback() {
    let sb = Sandbox::new();
    let o = run(&sb, &["--check-config"], &[]);
    assert!(o.status.success(), "{}", text(&o));
    let t = text(&o);
    assert!(t.contains("embedded default"), "{t}");
    assert!(t.contains("listen = 127.0.0.1:8082"), "{t}");
    let ext_dir = sb.path("data/provisioning/extensions");
    assert!(t.contains(&format!("local = {}", ext_dir.display())), "{t}");

    write_folder_ext(&ext_dir, "provider", "aws", "1.0.0", "AWS", &[]);
    let d = Daemon::start(&sb, &[], &[]);
    assert!(d.url.starts_with("http://127.0.0.1:"), "{}", d.url);
    let (s, v) = d.get_json("/extensions");
    assert_eq!(s, 200);
    assert_eq!(v[0]["name"], "aws");
    // The artifact cache lands in the XDG cache folder.
    d.get("/extensions/provider/aws/1.0.0");
    assert!(sb
        .path("cache/provisioning/extregd/artifacts/blobs/sha256")
        .read_dir()
        .unwrap()
        .next()
        .is_some());
}

#[test]
fn the_user_config_file_is_read_when_no_config_is_given() {
    let sb = Sandbox::new();
    std::fs::create_dir_all(sb.path("config/provisioning")).unwrap();
    std::fs::write(
        sb.path("config/provisioning/extregd.toml"),
        "[server]\nport = 9191\n",
    )
    .unwrap();
    let o = run(&sb, &["--check-config"], &[]);
    let t = text(&o);
    assert!(t.contains("listen = 127.0.0.1:9191"), "{t}");
    assert!(t.contains("config/provisioning/extregd.toml"), "{t}");
}

#[test]
fn precedence_is_defaults_file_env_flags() {
    let sb = Sandbox::new();
    let cfg = sb.write_config(&format!(
        "[server]\nport = 9000\n[local]\npath = \"{}\"\n[oci]\nregistry = \"file.example:5000\"\nnamespace = \"from-file\"\n",
        sb.path("file-root").display()
    ));
    let c = cfg.to_str().unwrap();
    let t = text(&run(&sb, &["--config", c, "--check-config"], &[]));
    assert!(t.contains("listen = 127.0.0.1:9000"), "{t}");
    assert!(
        t.contains("oci = file.example:5000 namespace from-file"),
        "{t}"
    );

    let env_roots = format!(
        "{}:{}",
        sb.path("env-a").display(),
        sb.path("env-b").display()
    );
    let env = [
        ("PROVISIONING_OCI_REGISTRY", "127.0.0.1:5999"),
        ("PROVISIONING_OCI_NAMESPACE", "from-env"),
        ("PROVISIONING_EXTENSIONS_PATH", env_roots.as_str()),
    ];
    let t = text(&run(
        &sb,
        &[
            "--config",
            c,
            "--check-config",
            "--port",
            "9100",
            "--host",
            "::1",
        ],
        &env,
    ));
    assert!(t.contains("listen = ::1:9100"), "flags beat the file: {t}");
    assert!(
        t.contains("oci = 127.0.0.1:5999 namespace from-env"),
        "env beats the file: {t}"
    );
    let locals: Vec<&str> = t.lines().filter(|l| l.starts_with("local = ")).collect();
    assert_eq!(
        locals,
        [
            format!("local = {}", sb.path("env-a").display()),
            format!("local = {}", sb.path("env-b").display()),
            format!("local = {}", sb.path("file-root").display()),
        ]
    );
}

#[test]
fn env_extension_paths_win_over_the_config_path_when_serving() {
    let sb = Sandbox::new();
    write_folder_ext(
        &sb.catalog(),
        "provider",
        "aws",
        "1.0.0",
        "from the config path",
        &[],
    );
    write_folder_ext(
        &sb.catalog(),
        "provider",
        "gcp",
        "1.0.0",
        "only in the config path",
        &[],
    );
    let env_root = sb.path("env-root");
    write_folder_ext(
        &env_root,
        "provider",
        "aws",
        "1.0.0",
        "from the env path",
        &[],
    );
    let cfg = sb.write_config(&format!("[local]\npath = \"{}\"\n", sb.catalog().display()));
    let d = Daemon::start(
        &sb,
        &["--config", cfg.to_str().unwrap()],
        &[("PROVISIONING_EXTENSIONS_PATH", env_root.to_str().unwrap())],
    );
    let (_, v) = d.get_json("/extensions/provider/aws");
    assert_eq!(v["description"], "from the env path");
    let (_, v) = d.get_json("/extensions/provider/gcp");
    assert_eq!(v["description"], "only in the config path");
}

#[test]
fn invalid_configs_fail_with_clear_messages() {
    let sb = Sandbox::new();
    let token_ok = sb.path("token");
    std::fs::write(&token_ok, "s3cr3t-token-value").unwrap();
    // Checked by the backend's constructor: `--check-config` runs the same
    // constructors as start-up, so it refuses what start-up refuses.
    let token_empty = sb.path("token-empty");
    std::fs::write(&token_empty, "").unwrap();
    let cases: Vec<(String, &str)> = vec![
        ("[cache]\ncapacty = 10\n".into(), "capacty"),
        ("[sever]\nport = 1\n".into(), "sever"),
        ("[server]\nport = 70000\n".into(), "port"),
        ("[server]\nport = \"eighty\"\n".into(), "port"),
        ("[server]\nhost = \"not an ip\"\n".into(), "host"),
        ("[cache]\ncapacity = 0\n".into(), "capacity must be at least 1"),
        ("[cache]\nttl_seconds = 0\n".into(), "ttl_seconds"),
        (
            "[gitea]\nurl = \"http://127.0.0.1:1\"\norganization = \"o\"\ntoken_path = \"/nonexistent/gitea-token\"\n".into(),
            "/nonexistent/gitea-token",
        ),
        (
            "[oci]\nregistry = \"127.0.0.1:1\"\nauth_token_path = \"/nonexistent/oci-token\"\n".into(),
            "/nonexistent/oci-token",
        ),
        ("[gitea]\nurl = \"ftp://x\"\norganization = \"o\"\n".into(), "http://"),
        ("[oci]\nregistry = \"ftp://127.0.0.1:1\"\n".into(), "must be host[:port] or an http(s):// URL"),
        (
            format!(
                "[oci]\nregistry = \"127.0.0.1:1\"\nauth_token_path = \"{}\"\n",
                token_empty.display()
            ),
            "the file holds no credentials",
        ),
        (
            "[gitea]\nurl = \"http://127.0.0.1:1\"\norganization = \"o\"\nconcurrency = 0\n".into(),
            "[gitea] concurrency must be between 1 and 256",
        ),
        (
            "[oci]\nregistry = \"127.0.0.1:1\"\nconcurrency = 100000\n".into(),
            "[oci] concurrency must be between 1 and 256",
        ),
        ("[oci]\nregistry = \"127.0.0.1:1\"\nconcurrency = \"many\"\n".into(), "concurrency"),
        ("this is not toml".into(), "config file"),
    ];
    for (toml, needle) in cases {
        let cfg = sb.write_config(&toml);
        for extra in [&["--check-config"][..], &[][..]] {
            let mut args = vec!["--config", cfg.to_str().unwrap()];
            args.extend_from_slice(extra);
            let o = run(&sb, &args, &[]);
            assert_eq!(o.status.code(), Some(2), "{toml:?} {extra:?}: {}", text(&o));
            let t = text(&o);
            assert!(t.contains(needle), "{toml:?}: expected {needle:?} in: {t}");
            assert!(!t.contains("panicked"), "{t}");
        }
    }
    let o = run(
        &sb,
        &["--config", sb.path("no-such.toml").to_str().unwrap()],
        &[],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("no-such.toml"));
}

#[test]
fn a_token_file_readable_by_others_is_warned_about_without_leaking_it() {
    use std::os::unix::fs::PermissionsExt;
    let sb = Sandbox::new();
    let token = sb.path("oci-token");
    std::fs::write(&token, "s3cr3t-token-value").unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
    let cfg = sb.write_config(&format!(
        "[oci]\nregistry = \"127.0.0.1:1\"\nauth_token_path = \"{}\"\n",
        token.display()
    ));
    let o = run(
        &sb,
        &["--config", cfg.to_str().unwrap(), "--check-config"],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    let t = text(&o);
    assert!(t.contains("readable by other users"), "{t}");
    assert!(t.contains("chmod 600"), "{t}");
    assert!(!t.contains("s3cr3t"), "token leaked: {t}");
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    let t = text(&run(
        &sb,
        &["--config", cfg.to_str().unwrap(), "--check-config"],
        &[],
    ));
    assert!(!t.contains("readable by other users"), "{t}");
}

#[test]
fn a_busy_port_is_a_clear_error() {
    let sb = Sandbox::new();
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port().to_string();
    let o = run(&sb, &["--port", &port], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o).contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{}",
        text(&o)
    );
}

#[test]
fn the_systemd_unit_verifies() {
    let analyze = require_tool("systemd-analyze", "systemd");
    let unit = repo_root().join("dist/systemd/extregd.service");
    let text = std::fs::read_to_string(&unit).unwrap();
    assert!(text.contains("ExecStart=%h/.local/bin/extregd"));
    // systemd-analyze wants the ExecStart binary to exist: point the copy
    // at the freshly built one, keep everything else as shipped.
    let sb = Sandbox::new();
    let copy = sb.path("extregd.service");
    std::fs::write(
        &copy,
        text.replace("%h/.local/bin/extregd", bin("extregd").to_str().unwrap()),
    )
    .unwrap();
    let o = std::process::Command::new(analyze)
        .arg("verify")
        .arg(&copy)
        .env("HOME", sb.path("home"))
        .output()
        .unwrap();
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "systemd-analyze verify failed:\n{out}");
    assert!(!out.contains("extregd.service:"), "unit warnings:\n{out}");
}

#[test]
fn the_readme_run_command_serves_the_example_catalogue() {
    // README: PROVISIONING_EXTENSIONS_PATH=examples/catalog cargo run -p extregd
    let sb = Sandbox::new();
    let catalog = repo_root().join("examples/catalog");
    let d = Daemon::start(
        &sb,
        &[],
        &[("PROVISIONING_EXTENSIONS_PATH", catalog.to_str().unwrap())],
    );
    let (_, v) = d.get_json("/extensions");
    let got: Vec<(String, String)> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap().into(),
                e["name"].as_str().unwrap().into(),
            )
        })
        .collect();
    let want: Vec<(String, String)> = [
        ("provider", "aws"),
        ("provider", "local"),
        ("provider", "upcloud"),
        ("taskserv", "containerd"),
        ("taskserv", "k3s"),
        ("taskserv", "kubernetes"),
        ("cluster", "buildkit"),
        ("cluster", "web"),
    ]
    .iter()
    .map(|(t, n)| (t.to_string(), n.to_string()))
    .collect();
    assert_eq!(
        got, want,
        "every example extension is served (none skipped as broken)"
    );
    assert!(
        !d.stderr().contains("skipping local extension"),
        "{}",
        d.stderr()
    );
    // Both forms download and verify.
    for p in [
        "/extensions/cluster/web/1.0.0",
        "/extensions/taskserv/kubernetes/1.28.0",
    ] {
        let r = d.get(p);
        assert_eq!(r.status(), 200, "{p}");
        let etag = r.headers()["etag"].to_str().unwrap().to_string();
        assert_eq!(etag, format!("\"{}\"", sha256_tag(&r.bytes().unwrap())));
    }
}

/// Threads of a running process, from /proc.
fn threads(pid: u32) -> u32 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn server_workers_sets_the_runtime() {
    for (workers, expected) in [(1u32, 1u32), (3, 4)] {
        let sb = Sandbox::new();
        let cfg = sb.write_config(&format!("[server]\nworkers = {workers}\n"));
        let d = Daemon::start(&sb, &["--config", cfg.to_str().unwrap()], &[]);
        // Before any request: the main thread plus the runtime's workers
        // (one worker is a current-thread runtime on the main thread).
        assert_eq!(threads(d.child.id()), expected, "workers = {workers}");
    }
    let sb = Sandbox::new();
    let cfg = sb.write_config("[server]\nworkers = 0\n");
    let o = sb
        .command(&bin("extregd"))
        .args(["--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("workers must be between 1 and 256"));
}

//! Test support: start the real `extregd` binary in an isolated home,
//! build extension fixtures, and insist on real tools being installed.
//!
//! Every daemon gets its own temp folder holding HOME, the XDG folders, its
//! config and its caches, so no user configuration leaks in and tests run
//! in parallel without sharing anything.

pub mod gitea;
pub mod hostile;
pub mod nginx;
pub mod registry;
pub mod socket;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use reqwest::blocking::Client;

/// The folder holding the workspace's built binaries (`target/debug`).
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/debug/deps/<test> -> target/debug
    exe.parent()
        .and_then(Path::parent)
        .expect("test binary lives in target/<profile>/deps")
        .to_path_buf()
}

/// A workspace binary, built by `cargo build --workspace` (tests/run does
/// it before the tests). Fails loudly when it is missing.
pub fn bin(name: &str) -> PathBuf {
    let env = format!("{}_BIN", name.to_uppercase().replace('-', "_"));
    let p = std::env::var_os(&env)
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join(name));
    assert!(
        p.is_file(),
        "{} is missing: run `cargo build --workspace` first (tests/run does), or set {env}",
        p.display()
    );
    p
}

/// A tool from the machine (promtool, systemd-analyze, ...). End-to-end
/// tests never skip: a missing tool is a failure that says how to install it.
pub fn require_tool(name: &str, package: &str) -> PathBuf {
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        let p = Path::new(dir).join(name);
        if p.is_file() {
            return p;
        }
    }
    panic!("`{name}` is not installed: run tests/run, or apt-get install {package}");
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// An isolated home for one daemon: HOME, XDG folders, config, caches.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
}

impl Default for Sandbox {
    fn default() -> Self {
        Self::new()
    }
}

impl Sandbox {
    pub fn new() -> Sandbox {
        let dir = tempfile::Builder::new()
            .prefix("extreg-e2e-")
            .tempdir()
            .expect("temp dir");
        for sub in ["home", "config", "data", "cache", "runtime", "catalog"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        Sandbox { dir }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// The default local catalogue folder of this sandbox.
    pub fn catalog(&self) -> PathBuf {
        self.path("catalog")
    }

    /// A command for `program` with the environment reduced to this sandbox.
    pub fn command(&self, program: &Path) -> Command {
        let mut c = Command::new(program);
        c.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", self.path("home"))
            .env("XDG_CONFIG_HOME", self.path("config"))
            .env("XDG_DATA_HOME", self.path("data"))
            .env("XDG_CACHE_HOME", self.path("cache"))
            .env("XDG_RUNTIME_DIR", self.path("runtime"))
            .env("EXTREGD_LOG", "extregd=debug,warn");
        c
    }

    /// Writes `config.toml` in the sandbox and returns its path.
    pub fn write_config(&self, toml: &str) -> PathBuf {
        let p = self.path("config.toml");
        std::fs::write(&p, toml).unwrap();
        p
    }

    /// Starts `extregd` on the config `toml` (written by [`Self::write_config`]).
    pub fn start(&self, toml: &str) -> Daemon {
        let cfg = self.write_config(toml);
        Daemon::start(self, &["--config", cfg.to_str().unwrap()], &[])
    }

    /// Starts `extregd` over the sandbox's local catalogue with its own
    /// artifact cache; `extra` (whole TOML sections) is appended.
    pub fn start_local(&self, extra: &str) -> Daemon {
        self.start(&format!(
            "[local]\npath = \"{}\"\n[cache]\nartifact_dir = \"{}\"\n{extra}",
            self.catalog().display(),
            self.path("artifacts").display()
        ))
    }

    /// Writes `text` and a newline to `name` in the sandbox, readable by its
    /// owner only (what extregd asks of token files).
    pub fn secret(&self, name: &str, text: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let p = self.path(name);
        std::fs::write(&p, format!("{text}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        p
    }

    /// The config of a daemon with the Gitea at `url` (organization `org`,
    /// reading with `token` from a 0600 file) as its backend, `gitea_keys`
    /// (lines of that section) and its own artifact cache; `extra` (whole
    /// TOML sections) is appended.
    pub fn gitea_config(
        &self,
        url: &str,
        org: &str,
        token: &str,
        gitea_keys: &str,
        extra: &str,
    ) -> String {
        let tok = self.secret("gitea-token.txt", token);
        format!(
            "[gitea]\nurl = \"{url}\"\norganization = \"{org}\"\ntoken_path = \"{}\"\n{gitea_keys}\
             [cache]\nartifact_dir = \"{}\"\n{extra}",
            tok.display(),
            self.path("artifacts").display()
        )
    }

    /// Starts `extregd` on [`Self::gitea_config`].
    pub fn start_gitea(
        &self,
        url: &str,
        org: &str,
        token: &str,
        gitea_keys: &str,
        extra: &str,
    ) -> Daemon {
        self.start(&self.gitea_config(url, org, token, gitea_keys, extra))
    }

    /// Starts `extregd` with `registry`/`namespace` as its `[oci]` backend
    /// (plus `oci_keys`, lines of that section) and its own artifact cache.
    pub fn start_oci(&self, registry: &str, namespace: &str, oci_keys: &str) -> Daemon {
        self.start(&format!(
            "[oci]\nregistry = \"{registry}\"\nnamespace = \"{namespace}\"\n{oci_keys}[cache]\nartifact_dir = \"{}\"\n",
            self.path("artifacts").display()
        ))
    }
}

/// `len` incompressible bytes (xorshift64 from `seed`), the same for the
/// same seed: artifacts that gzip cannot shrink.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407)
        | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Runs `cmd` and returns its output; panics with its stderr when it fails.
pub fn run_ok(cmd: &mut Command) -> std::process::Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A running `extregd`, killed on drop.
pub struct Daemon {
    pub child: Child,
    pub url: String,
    pub client: Client,
    stderr_path: PathBuf,
}

impl Daemon {
    /// Starts `extregd` with `args` (plus `--port 0`) and waits for its
    /// "listening on" line.
    pub fn start(sb: &Sandbox, args: &[&str], env: &[(&str, &str)]) -> Daemon {
        Self::start_with(sb, args, env, |_| {})
    }

    /// [`Daemon::start`], with `prepare` applied to the command last (for
    /// `pre_exec` resource limits and the like).
    pub fn start_with(
        sb: &Sandbox,
        args: &[&str],
        env: &[(&str, &str)],
        prepare: impl FnOnce(&mut Command),
    ) -> Daemon {
        let stderr_path = sb.path(&format!(
            "extregd-{}.log",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let mut cmd = sb.command(&bin("extregd"));
        cmd.args(args)
            .args(["--port", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr_path).unwrap());
        for (k, v) in env {
            cmd.env(k, v);
        }
        prepare(&mut cmd);
        let mut child = cmd.spawn().expect("spawn extregd");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(Duration::from_secs(20)).unwrap_or_default();
        let url = match line.split("listening on ").nth(1) {
            Some(u) => u.trim().to_string(),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "extregd did not start; stdout: {line:?}; stderr:\n{}",
                    std::fs::read_to_string(&stderr_path).unwrap_or_default()
                );
            }
        };
        Daemon {
            child,
            url,
            client: Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            stderr_path,
        }
    }

    pub fn api(&self, path: &str) -> String {
        format!("{}/api/v1{}", self.url, path)
    }

    pub fn get(&self, path: &str) -> reqwest::blocking::Response {
        self.client.get(self.api(path)).send().expect("request")
    }

    /// `GET` of an API path: status, body and `ETag` (unquoted).
    pub fn download(&self, path: &str) -> (u16, Vec<u8>, Option<String>) {
        let r = self.get(path);
        let status = r.status().as_u16();
        let etag = r
            .headers()
            .get("etag")
            .map(|v| v.to_str().unwrap().trim_matches('"').to_string());
        (status, r.bytes().unwrap().to_vec(), etag)
    }

    pub fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        let r = self.get(path);
        let status = r.status().as_u16();
        let text = r.text().unwrap();
        let v = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("GET {path}: body is not JSON ({e}): {text}"));
        (status, v)
    }

    pub fn metrics(&self) -> String {
        self.get("/metrics").text().unwrap()
    }

    /// The value of one sample in the metrics text, 0 when absent.
    pub fn metric(&self, name_and_labels: &str) -> f64 {
        metric_value(&self.metrics(), name_and_labels)
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

pub fn metric_value(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(name_and_labels)
                .and_then(|rest| rest.strip_prefix(' '))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0.0)
}

/// Writes a folder-form extension `{root}/{type}/{name}/{version}/`.
pub fn write_folder_ext(
    root: &Path,
    ty: &str,
    name: &str,
    version: &str,
    description: &str,
    tags: &[&str],
) -> PathBuf {
    let dir = root.join(ty).join(name).join(version);
    std::fs::create_dir_all(dir.join("kcl")).unwrap();
    std::fs::write(
        dir.join("extension.yaml"),
        manifest(ty, name, version, description, tags),
    )
    .unwrap();
    std::fs::write(
        dir.join("kcl").join(format!("{name}.k")),
        format!("# {name} {version}\n"),
    )
    .unwrap();
    dir
}

pub fn manifest(ty: &str, name: &str, version: &str, description: &str, tags: &[&str]) -> String {
    format!(
        "extension:\n  name: {name}\n  version: {version}\n  type: {ty}\n  description: {description}\n  author: tests\n  tags: [{}]\n",
        tags.join(", ")
    )
}

/// Writes a tarball-form extension `{root}/{type}/{name}/{name}-{version}.tar.gz`
/// and returns its bytes.
pub fn write_tarball_ext(
    root: &Path,
    ty: &str,
    name: &str,
    version: &str,
    description: &str,
) -> Vec<u8> {
    let files = vec![
        (
            "extension.yaml".to_string(),
            manifest(ty, name, version, description, &[]).into_bytes(),
        ),
        (format!("kcl/{name}.k"), b"schema X:\n  a: int\n".to_vec()),
    ];
    let bytes = tar_gz(&files);
    let dir = root.join(ty).join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{name}-{version}.tar.gz")), &bytes).unwrap();
    bytes
}

/// A tar.gz of regular files.
pub fn tar_gz(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut t = tar::Builder::new(gz);
    for (path, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1);
        t.append_data(&mut h, path, &data[..]).unwrap();
    }
    t.into_inner().unwrap().finish().unwrap()
}

pub fn sha256_tag(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

/// Every file below `dir` (none when it does not exist).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    entries_under(dir)
        .into_iter()
        .filter(|p| !p.is_dir())
        .collect()
}

/// Every file and folder below `dir` (none when it does not exist).
pub fn entries_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(entries_under(&p));
        }
        out.push(p);
    }
    out
}

/// Polls `f` until it returns true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

impl Daemon {
    /// Sends `GET {path}` byte for byte over a raw socket (no client-side
    /// URL normalisation: `..` and `%2e%2e` reach the server as written) and
    /// returns the status and body.
    pub fn raw_get(&self, path: &str) -> (u16, String) {
        use std::io::{Read, Write};
        let addr = self.url.trim_start_matches("http://");
        let mut s = std::net::TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(
            s,
            "GET /api/v1{path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).unwrap();
        let text = String::from_utf8_lossy(&buf).to_string();
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = text
            .split("\r\n\r\n")
            .nth(1)
            .unwrap_or_default()
            .to_string();
        (status, body)
    }
}

/// The real `nu` 0.115.1 installed from npm by tests/run (or `NU_BIN`).
pub fn nu_bin() -> PathBuf {
    let p = std::env::var_os("NU_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            repo_root().join("tests/.tools/nu/node_modules/@nushell/linux-x64/bin/nu")
        });
    assert!(
        p.is_file(),
        "nushell is missing at {}: run tests/run (it installs nushell@0.115.1 from npm), or set NU_BIN",
        p.display()
    );
    p
}

/// A `nu` with the plugin registered in this sandbox's own plugin registry
/// file, run with `-n` (no user config) and the sandbox's environment.
pub struct Nu<'a> {
    pub sb: &'a Sandbox,
    pub registry: PathBuf,
}

/// The outcome of one `nu -c` run.
#[derive(Debug)]
pub struct NuOutput {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl NuOutput {
    pub fn json(&self) -> serde_json::Value {
        assert!(self.ok, "nu failed:\n{}", self.stderr);
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("nu output is not JSON ({e}): {}", self.stdout))
    }
}

impl<'a> Nu<'a> {
    /// Registers `target/debug/nu_plugin_ext` in a registry file in `sb`.
    pub fn new(sb: &'a Sandbox) -> Nu<'a> {
        let registry = sb.path("plugins.msgpackz");
        let plugin = bin("nu_plugin_ext");
        run_ok(sb.command(&nu_bin()).args(["-n", "-c"]).arg(format!(
            "plugin add --plugin-config '{}' '{}'",
            registry.display(),
            plugin.display()
        )));
        Nu { sb, registry }
    }

    /// Runs `script` after `plugin use`, with extra environment.
    pub fn run_env(&self, script: &str, env: &[(&str, &str)]) -> NuOutput {
        let mut c = self.sb.command(&nu_bin());
        // In the sandbox: `ext load` writes its lockfile in the current folder.
        c.current_dir(self.sb.path("home"));
        c.args(["-n", "-c"]).arg(format!(
            "plugin use --plugin-config '{}' ext\n{script}",
            self.registry.display()
        ));
        for (k, v) in env {
            c.env(k, v);
        }
        let out = c.output().expect("run nu");
        NuOutput {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).to_string(),
        }
    }

    pub fn run(&self, script: &str) -> NuOutput {
        self.run_env(script, &[])
    }

    /// Runs `script | to json --raw` and parses the result.
    /// Runs `script`, which must fail with every one of `needles` in its
    /// stderr (the error nu printed).
    pub fn fails(&self, script: &str, needles: &[&str]) -> NuOutput {
        let out = self.run(script);
        assert!(!out.ok, "`{script}` succeeded:\n{}", out.stdout);
        for n in needles {
            assert!(
                out.stderr.contains(n),
                "`{script}`: no {n:?} in\n{}",
                out.stderr
            );
        }
        out
    }

    pub fn json(&self, script: &str) -> serde_json::Value {
        self.run(&format!("{script} | to json --raw")).json()
    }
}

/// The default socket path the daemon derives in a sandbox.
pub fn sandbox_socket(sb: &Sandbox) -> PathBuf {
    sb.path("runtime/extregd/extregd.sock")
}

/// One entry of a hand-made (possibly hostile) archive.
pub enum TarItem<'a> {
    File(&'a str, &'a [u8]),
    /// A non-file entry: kind, and link target for links.
    Raw(&'a str, tar::EntryType, Option<&'a str>),
}

/// A tar.gz written header by header: the tar crate's builder refuses `..`
/// and absolute names, so hostile names go into the header bytes directly.
pub fn raw_tar_gz(items: &[TarItem]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut b = tar::Builder::new(gz);
    for it in items {
        let (path, kind, size, link, data): (&str, tar::EntryType, u64, Option<&str>, &[u8]) =
            match it {
                TarItem::File(p, d) => (p, tar::EntryType::Regular, d.len() as u64, None, d),
                TarItem::Raw(p, k, l) => (p, *k, 0, *l, &[]),
            };
        let mut h = tar::Header::new_old();
        {
            let old = h.as_old_mut();
            old.name[..path.len()].copy_from_slice(path.as_bytes());
            if let Some(l) = link {
                old.linkname[..l.len()].copy_from_slice(l.as_bytes());
            }
        }
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(0o644);
        h.set_cksum();
        b.append(&h, data).unwrap();
    }
    b.into_inner().unwrap().finish().unwrap()
}

/// A program from the Python venv that tests/run fills from PyPI
/// (`tests/.tools/venv`: schemathesis, openapi-spec-validator, selenium),
/// or from `EXTREG_VENV`. Fails loudly when it is missing.
pub fn venv_tool(name: &str) -> PathBuf {
    let venv = std::env::var_os("EXTREG_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("tests/.tools/venv"));
    let p = venv.join("bin").join(name);
    assert!(
        p.is_file(),
        "{} is missing: run tests/run (it creates the venv and installs it from PyPI), or set EXTREG_VENV",
        p.display()
    );
    p
}

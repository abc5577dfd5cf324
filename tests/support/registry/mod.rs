//! The real OCI registry for the OCI tests: Debian's `docker-registry`
//! (distribution 2.8.2) on a free loopback port with temp storage, deletes
//! enabled, an optional bcrypt htpasswd file, and its access log captured so
//! tests can count blob GETs. Fixtures are pushed with this module's own
//! code (blocking reqwest, the Distribution upload flow), and OCI image
//! layouts are written for `skopeo copy`.
//!
//! distribution 2.8 does not page `tags/list`; [`PagingProxy`] sits in front
//! of it and pages tag lists the way registries that cap them do (`n`,
//! `last`, `Link: <...>; rel="next"`), passing every other request through
//! and recording each request line.

mod paging;
mod token;

pub use paging::PagingProxy;
pub use token::*;

use crate::require_tool;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const EMPTY_CONFIG: &str = "application/vnd.oci.empty.v1+json";
pub const EMPTY_DIGEST: &str =
    "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";
pub const LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// The layer media type `kcl mod push` gives a KCL package (a plain tar).
pub const KCL_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";

/// A KCL package as `kcl mod push` stores it: a plain tar of the package
/// folder (`kcl.mod`, `main.k`), the same bytes for the same inputs.
pub fn kcl_package(name: &str, version: &str) -> Vec<u8> {
    let mut t = tar::Builder::new(Vec::new());
    let files = [
        (
            "kcl.mod",
            format!(
                "[package]\nname = \"{name}\"\nedition = \"v0.9.0\"\nversion = \"{version}\"\n"
            ),
        ),
        (
            "main.k",
            format!("schema Server:\n    name: str\n    version: str = \"{version}\"\n"),
        ),
    ];
    for (path, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1);
        t.append_data(&mut h, path, data.as_bytes()).unwrap();
    }
    t.into_inner().unwrap()
}

/// How to start a registry.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `Some((user, password))`: htpasswd auth with that one user.
    pub htpasswd: Option<(String, String)>,
    /// `catalog.maxentries` (the largest `_catalog` page); default 100.
    pub catalog_max: Option<usize>,
    /// Bearer token auth through this issuer (see [`TokenIssuer`]).
    pub token_auth: Option<String>,
    /// The port to listen on (default: a free one).
    pub port: Option<u16>,
    /// More top-level configuration (e.g. `notifications:`), appended.
    pub extra_yaml: Option<String>,
}

impl Options {
    /// A registry on `port` that sends its push/delete notifications to
    /// `url` with `Authorization: Bearer {secret}` (what extregd's
    /// `/hooks/registry` takes).
    pub fn notifying(port: u16, url: &str, secret: &str) -> Options {
        Options {
            port: Some(port),
            extra_yaml: Some(format!(
                "notifications:\n  endpoints:\n    - name: extregd\n      url: {url}\n      \
                 headers:\n        Authorization: [Bearer {secret}]\n      \
                 timeout: 2s\n      threshold: 3\n      backoff: 1s\n"
            )),
            ..Default::default()
        }
    }
}

/// A running `docker-registry serve`, stopped on drop.
pub struct Registry {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub port: u16,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    pub storage: PathBuf,
    log: PathBuf,
    config: PathBuf,
    pub auth: Option<(String, String)>,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Registry {
    pub fn start(opts: Options) -> Registry {
        let bin = require_tool("docker-registry", "docker-registry");
        let dir = tempfile::Builder::new()
            .prefix("extreg-registry-")
            .tempdir()
            .unwrap();
        let storage = dir.path().join("storage");
        std::fs::create_dir_all(&storage).unwrap();
        let port = opts.port.unwrap_or_else(free_port);
        let mut auth_yaml = opts.token_auth.clone().unwrap_or_default();
        if let Some((u, p)) = &opts.htpasswd {
            let htpasswd = require_tool("htpasswd", "apache2-utils");
            let out = Command::new(htpasswd)
                .args(["-Bbn", u, p])
                .output()
                .expect("run htpasswd");
            assert!(out.status.success(), "htpasswd failed");
            let file = dir.path().join("htpasswd");
            std::fs::write(&file, &out.stdout).unwrap();
            auth_yaml = format!(
                "auth:\n  htpasswd:\n    realm: extreg-test\n    path: {}\n",
                file.display()
            );
        }
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\n\
                 storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
                 http:\n  addr: 127.0.0.1:{port}\n  secret: extreg-test-secret\n\
                 catalog:\n  maxentries: {}\n{auth_yaml}{}",
                storage.display(),
                opts.catalog_max.unwrap_or(100),
                opts.extra_yaml.as_deref().unwrap_or_default()
            ),
        )
        .unwrap();
        let log = dir.path().join("registry.log");
        let mut r = Registry {
            child: None,
            addr: format!("127.0.0.1:{port}"),
            url: format!("http://127.0.0.1:{port}"),
            port,
            storage,
            log,
            config,
            auth: opts.htpasswd.clone(),
            dir,
        };
        let _ = bin;
        r.spawn();
        r
    }

    /// A handle on a registry started elsewhere (for pushing only; nothing
    /// is stopped on drop).
    pub fn attach(url: &str, auth: Option<(String, String)>) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let url = url.trim_end_matches('/').to_string();
        let addr = url
            .trim_start_matches("http://")
            .trim_start_matches("https://")
            .to_string();
        Registry {
            child: None,
            port: addr
                .rsplit(':')
                .next()
                .and_then(|p| p.parse().ok())
                .unwrap_or(0),
            addr,
            url,
            storage: dir.path().join("storage"),
            log: dir.path().join("registry.log"),
            config: dir.path().join("config.yml"),
            auth,
            dir,
        }
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(require_tool("docker-registry", "docker-registry"))
            .arg("serve")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn docker-registry");
        self.child = Some(child);
        let client = self.client();
        let ok = crate::wait_until(Duration::from_secs(20), || {
            client
                .get(format!("{}/v2/", self.url))
                .send()
                .is_ok_and(|r| r.status() == 200 || r.status() == 401)
        });
        assert!(ok, "docker-registry did not come up:\n{}", self.log());
    }

    /// Stops the registry (its storage stays).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port and storage.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Everything the registry wrote (access log and messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Access-log lines of `GET /v2/{repo}/blobs/{digest}`.
    pub fn blob_gets(&self, repo: &str, digest: &str) -> usize {
        let needle = format!("\"GET /v2/{repo}/blobs/{digest} ");
        self.log().lines().filter(|l| l.contains(&needle)).count()
    }

    /// The file holding a blob's bytes in the registry's storage.
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap();
        self.storage
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    pub fn client(&self) -> reqwest::blocking::Client {
        reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap()
    }

    fn authed(&self, rb: reqwest::blocking::RequestBuilder) -> reqwest::blocking::RequestBuilder {
        match &self.auth {
            Some((u, p)) => rb.basic_auth(u, Some(p)),
            None => rb,
        }
    }

    /// Uploads a blob (POST, then PUT to `Location` + `digest=`).
    pub fn push_blob(&self, repo: &str, data: &[u8]) -> String {
        let digest = crate::sha256_tag(data);
        let c = self.client();
        let r = self
            .authed(c.post(format!("{}/v2/{repo}/blobs/uploads/", self.url)))
            .send()
            .unwrap();
        assert_eq!(
            r.status(),
            202,
            "POST upload: {}",
            r.text().unwrap_or_default()
        );
        let loc = r.headers()["location"].to_str().unwrap().to_string();
        let sep = if loc.contains('?') { '&' } else { '?' };
        let r = self
            .authed(c.put(format!("{loc}{sep}digest={digest}")))
            .header("content-type", "application/octet-stream")
            .body(data.to_vec())
            .send()
            .unwrap();
        assert_eq!(
            r.status(),
            201,
            "PUT blob: {}",
            r.text().unwrap_or_default()
        );
        digest
    }

    /// Puts a manifest under each tag; returns its digest.
    pub fn put_manifest(&self, repo: &str, manifest: &[u8], tags: &[&str]) -> String {
        let c = self.client();
        for t in tags {
            let r = self
                .authed(c.put(format!("{}/v2/{repo}/manifests/{t}", self.url)))
                .header("content-type", OCI_MANIFEST)
                .body(manifest.to_vec())
                .send()
                .unwrap();
            assert_eq!(
                r.status(),
                201,
                "PUT manifest {repo}:{t}: {}",
                r.text().unwrap_or_default()
            );
        }
        crate::sha256_tag(manifest)
    }

    /// Pushes an artifact (empty config, one tar+gzip layer) under `tags`.
    pub fn push_artifact(
        &self,
        repo: &str,
        tags: &[&str],
        layer: &[u8],
        annotations: &[(&str, &str)],
    ) -> Pushed {
        self.push_blob(repo, b"{}");
        let layer_digest = self.push_blob(repo, layer);
        let manifest = artifact_manifest(&layer_digest, layer.len(), annotations);
        let manifest_digest = self.put_manifest(repo, &manifest, tags);
        Pushed {
            layer_digest,
            manifest_digest,
            manifest,
        }
    }

    /// Pushes `{repo}:{tag}` as a KCL package laid out as `kcl mod push`
    /// does (empty config, one [`KCL_LAYER`] layer titled
    /// `{name}_{tag}.tar`, the `org.kcllang.package.*` annotations, and
    /// `org.opencontainers.image.created` when `created` is given).
    pub fn push_kcl(&self, repo: &str, tag: &str, created: Option<&str>) -> Pushed {
        let name = repo.rsplit('/').next().unwrap();
        let layer = kcl_package(name, tag);
        self.push_blob(repo, b"{}");
        let layer_digest = self.push_blob(repo, &layer);
        let mut ann = serde_json::Map::new();
        ann.insert("org.kcllang.package.name".into(), json!(name));
        ann.insert("org.kcllang.package.version".into(), json!(tag));
        if let Some(c) = created {
            ann.insert("org.opencontainers.image.created".into(), json!(c));
        }
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": EMPTY_CONFIG, "digest": EMPTY_DIGEST, "size": 2},
            "layers": [{"mediaType": KCL_LAYER, "digest": layer_digest, "size": layer.len(),
                        "annotations": {"org.opencontainers.image.title": format!("{name}_{tag}.tar")}}],
            "annotations": ann,
        }))
        .unwrap();
        let manifest_digest = self.put_manifest(repo, &manifest, &[tag]);
        Pushed {
            layer_digest,
            manifest_digest,
            manifest,
        }
    }

    /// `GET /v2/{repo}/tags/list` straight from the registry.
    pub fn tags(&self, repo: &str) -> Vec<String> {
        let r = self
            .authed(
                self.client()
                    .get(format!("{}/v2/{repo}/tags/list", self.url)),
            )
            .send()
            .unwrap();
        if r.status() == 404 {
            return vec![];
        }
        let v: Value = r.json().unwrap();
        v["tags"]
            .as_array()
            .map(|a| a.iter().map(|t| t.as_str().unwrap().to_string()).collect())
            .unwrap_or_default()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What [`Registry::push_artifact`] pushed.
pub struct Pushed {
    pub layer_digest: String,
    pub manifest_digest: String,
    pub manifest: Vec<u8>,
}

/// An OCI artifact manifest: empty config, one layer.
pub fn artifact_manifest(layer_digest: &str, size: usize, annotations: &[(&str, &str)]) -> Vec<u8> {
    let ann: BTreeMap<&str, &str> = annotations.iter().copied().collect();
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.provisioning.extension.v1+tar+gzip",
        "config": {"mediaType": EMPTY_CONFIG, "digest": EMPTY_DIGEST, "size": 2},
        "layers": [{"mediaType": LAYER, "digest": layer_digest, "size": size,
                    "annotations": {"org.opencontainers.image.title": "artifact.tar.gz"}}],
        "annotations": ann,
    }))
    .unwrap()
}

/// Writes an OCI image layout holding one artifact tagged `tag` (for
/// `skopeo copy oci:DIR:TAG ...`); returns the layer digest.
pub fn write_oci_layout(
    dir: &Path,
    tag: &str,
    layer: &[u8],
    annotations: &[(&str, &str)],
) -> String {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |data: &[u8]| {
        let d = crate::sha256_tag(data);
        std::fs::write(blobs.join(d.strip_prefix("sha256:").unwrap()), data).unwrap();
        d
    };
    put(b"{}");
    let layer_digest = put(layer);
    let manifest = artifact_manifest(&layer_digest, layer.len(), annotations);
    let md = put(&manifest);
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    std::fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "manifests": [{"mediaType": OCI_MANIFEST, "digest": md, "size": manifest.len(),
                           "annotations": {"org.opencontainers.image.ref.name": tag}}]
        }))
        .unwrap(),
    )
    .unwrap();
    layer_digest
}

/// Runs Debian's `skopeo` (no signature policy) and returns its output;
/// panics with its stderr when it fails.
pub fn skopeo(args: &[&str]) -> std::process::Output {
    crate::run_ok(
        std::process::Command::new(crate::require_tool("skopeo", "skopeo"))
            .arg("--insecure-policy")
            .args(args),
    )
}

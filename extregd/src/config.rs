//! Configuration: TOML file, then environment overrides, then validation.
//!
//! Precedence, lowest to highest: built-in defaults < config file <
//! environment (`PROVISIONING_OCI_REGISTRY`, `PROVISIONING_OCI_NAMESPACE`,
//! `PROVISIONING_EXTENSIONS_PATH`) < command-line flags (`--host`, `--port`).

use serde::Deserialize;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

pub const ENV_OCI_REGISTRY: &str = "PROVISIONING_OCI_REGISTRY";
pub const ENV_OCI_NAMESPACE: &str = "PROVISIONING_OCI_NAMESPACE";
pub const ENV_EXTENSIONS_PATH: &str = "PROVISIONING_EXTENSIONS_PATH";

pub const DEFAULT_PORT: u16 = 8082;
pub const DEFAULT_OCI_NAMESPACE: &str = "provisioning-extensions";

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub gitea: Option<GiteaConfig>,
    pub oci: Option<OciConfig>,
    pub local: Option<LocalConfig>,
    pub cache: CacheConfig,
    pub registry: RegistryConfig,
    pub extensions: ExtensionsConfig,
    pub webhooks: WebhooksConfig,
    pub web: WebConfig,
    /// `[signatures.{local,oci,gitea}]`: policy and trusted minisign keys.
    pub signatures: crate::signature::SignaturesConfig,
    /// From `PROVISIONING_EXTENSIONS_PATH`; never read from the file.
    #[serde(skip)]
    pub extra_local_paths: Vec<PathBuf>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub host: String,
    /// 0 picks a free port (the chosen address is printed at start).
    pub port: u16,
    /// Base URL that `download_url` fields point at; defaults to
    /// `http://{bound address}`.
    pub public_url: Option<String>,
    /// Worker threads of the async runtime; defaults to the number of cores.
    pub workers: Option<usize>,
    /// The local socket for `nu_plugin_ext`; defaults to
    /// `$XDG_RUNTIME_DIR/extregd/extregd.sock` (`/tmp/extregd-{uid}/` without
    /// `XDG_RUNTIME_DIR`).
    pub socket: Option<PathBuf>,
    /// CORS for the read-only API (seed 001): preflights answered, `GET`
    /// and `HEAD` allowed from `cors_allowed_origins`.
    pub enable_cors: bool,
    /// Origins allowed when `enable_cors` is on; empty (the default) or
    /// `["*"]` allows any origin (the API is read-only and credential-free).
    pub cors_allowed_origins: Vec<String>,
    /// gzip/br/zstd on JSON answers per `Accept-Encoding` (seed 001); never
    /// on artifact bytes.
    pub enable_compression: bool,
    /// Open HTTP connections at most; above it a new connection is answered
    /// 503 and closed. Default: derived from the open-file limit (see
    /// `server::Limits`). The local socket gets a quarter of it.
    pub max_connections: Option<usize>,
    /// A connection with no request in progress (idle, or still sending a
    /// request head, or a socket frame) for this long is closed.
    pub idle_timeout_seconds: u64,
    /// A client that accepts no bytes for this long is cut.
    pub write_timeout_seconds: u64,
    /// On SIGTERM, how long requests in flight may take before their
    /// connections are cut.
    pub shutdown_timeout_seconds: u64,
}

pub const DEFAULT_IDLE_TIMEOUT: u64 = 30;
pub const DEFAULT_WRITE_TIMEOUT: u64 = 60;
pub const DEFAULT_SHUTDOWN_TIMEOUT: u64 = 30;

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            host: "127.0.0.1".into(),
            port: DEFAULT_PORT,
            public_url: None,
            workers: None,
            socket: None,
            enable_cors: false,
            cors_allowed_origins: Vec::new(),
            enable_compression: true,
            max_connections: None,
            idle_timeout_seconds: DEFAULT_IDLE_TIMEOUT,
            write_timeout_seconds: DEFAULT_WRITE_TIMEOUT,
            shutdown_timeout_seconds: DEFAULT_SHUTDOWN_TIMEOUT,
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GiteaConfig {
    pub url: String,
    pub organization: String,
    pub token_path: Option<PathBuf>,
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u64,
    /// API requests in flight at once (1 to [`MAX_CONCURRENCY`]).
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    #[serde(default = "yes")]
    pub verify_ssl: bool,
    /// PEM file of extra CA certificates trusted for this backend (a
    /// private CA), on top of the system store.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OciConfig {
    pub registry: String,
    #[serde(default = "default_namespace")]
    pub namespace: String,
    pub auth_token_path: Option<PathBuf>,
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u64,
    /// Requests to the registry in flight at once (1 to [`MAX_CONCURRENCY`]).
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    #[serde(default = "yes")]
    pub verify_ssl: bool,
    /// Plain HTTP even for a non-loopback registry.
    #[serde(default)]
    pub insecure: bool,
    /// PEM file of extra CA certificates trusted for this registry.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Namespaces whose generic artifacts (KCL packages and the like) may be
    /// listed and pulled (`POST /api/v1/oci/artifacts`, `ext kcl`); any
    /// other namespace is refused.
    #[serde(default = "default_artifact_namespaces")]
    pub artifact_namespaces: Vec<String>,
}

impl OciConfig {
    /// `registry` with every other key at the default an empty `[oci]`
    /// section gets (what `PROVISIONING_OCI_REGISTRY` alone configures).
    pub fn new(registry: impl Into<String>) -> OciConfig {
        OciConfig {
            registry: registry.into(),
            namespace: default_namespace(),
            auth_token_path: None,
            timeout_seconds: default_timeout(),
            concurrency: DEFAULT_CONCURRENCY,
            verify_ssl: true,
            insecure: false,
            ca_file: None,
            artifact_namespaces: default_artifact_namespaces(),
        }
    }
}

/// `[web]`: the HTML catalogue at `/`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct WebConfig {
    /// Serve the catalogue. Default: on when `[server] host` is a loopback
    /// address (or `localhost`), off otherwise.
    pub enabled: Option<bool>,
}

/// Where `ext load` extracts extensions.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ExtensionsConfig {
    /// Defaults to `$XDG_DATA_HOME/provisioning/extensions`.
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LocalConfig {
    pub path: PathBuf,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Entries per metadata cache (list, metadata, versions each).
    pub capacity: usize,
    pub ttl_seconds: u64,
    pub enable_metadata_cache: bool,
    pub enable_list_cache: bool,
    pub enable_version_cache: bool,
    /// Folder of the on-disk artifact cache; defaults to the XDG cache dir.
    pub artifact_dir: Option<PathBuf>,
    /// Size cap of the artifact cache in bytes; least recently used
    /// artifacts are evicted above it. No cap by default.
    pub max_artifact_bytes: Option<u64>,
    /// Age after which an answer whose refreshes keep failing is marked
    /// `stale`; defaults to twice `ttl_seconds`.
    pub stale_after_seconds: Option<u64>,
    /// Write the merged metadata to disk and answer from it after a restart.
    pub persist_catalog: bool,
    /// Where; defaults to `$XDG_CACHE_HOME/provisioning/extregd/catalog.json`.
    pub catalog_path: Option<PathBuf>,
}

/// `[webhooks]`: push invalidation (each endpoint is off unless its secret
/// file is configured).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksConfig {
    /// Shared secret of `POST /api/v1/hooks/registry` (docker-registry
    /// notifications, sent as `Authorization: Bearer <secret>`).
    pub registry_secret_path: Option<PathBuf>,
    /// Shared secret of `POST /api/v1/hooks/gitea` (Gitea webhooks,
    /// `X-Gitea-Signature` = HMAC-SHA256 of the body).
    pub gitea_secret_path: Option<PathBuf>,
    /// Largest body accepted.
    pub max_body_bytes: usize,
}

/// Default and ceiling of `[webhooks] max_body_bytes`.
pub const DEFAULT_WEBHOOK_BODY: usize = 1 << 20;
pub const MAX_WEBHOOK_BODY: usize = 16 << 20;

impl Default for WebhooksConfig {
    fn default() -> Self {
        WebhooksConfig {
            registry_secret_path: None,
            gitea_secret_path: None,
            max_body_bytes: DEFAULT_WEBHOOK_BODY,
        }
    }
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            capacity: 1000,
            ttl_seconds: 300,
            enable_metadata_cache: true,
            enable_list_cache: true,
            enable_version_cache: true,
            artifact_dir: None,
            max_artifact_bytes: None,
            stale_after_seconds: None,
            persist_catalog: true,
            catalog_path: None,
        }
    }
}

/// `[registry]`: how the backends' answers are merged.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RegistryConfig {
    /// Sources, highest priority first: when two backends hold the same
    /// version of an extension, the earlier one serves it. Each source at
    /// most once; sources not named follow in [`DEFAULT_PRIORITY`] order.
    pub priority: Vec<extreg_shared::Source>,
}

/// The merge priority when `[registry] priority` does not say.
pub const DEFAULT_PRIORITY: [extreg_shared::Source; 3] = [
    extreg_shared::Source::Local,
    extreg_shared::Source::Oci,
    extreg_shared::Source::Gitea,
];

fn default_timeout() -> u64 {
    30
}
/// `[gitea] concurrency` and `[oci] concurrency` when not set: enough for
/// a cold listing to overlap its pages, per-repository requests and
/// checksum files (a 60-repository Gitea organization is three round trips
/// deep and about 120 requests wide).
pub const DEFAULT_CONCURRENCY: usize = 48;
const _: () = assert!(DEFAULT_CONCURRENCY > 8 && DEFAULT_CONCURRENCY <= MAX_CONCURRENCY);
/// The largest `concurrency` accepted: more would only queue at the server.
pub const MAX_CONCURRENCY: usize = 256;
pub fn default_concurrency() -> usize {
    DEFAULT_CONCURRENCY
}
fn yes() -> bool {
    true
}
fn default_namespace() -> String {
    DEFAULT_OCI_NAMESPACE.into()
}

/// `[oci] artifact_namespaces` when not set: the seed's `kcl`.
pub fn default_artifact_namespaces() -> Vec<String> {
    vec!["kcl".into()]
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// A warning found while validating: printed at start, never fatal.
pub type Warnings = Vec<String>;

/// Where the daemon keeps things when the config does not say.
#[derive(Debug, Clone)]
pub struct Dirs {
    pub data: PathBuf,
    pub cache: PathBuf,
    /// `$XDG_RUNTIME_DIR`, where the local socket goes.
    pub runtime: Option<PathBuf>,
}

impl Dirs {
    /// XDG folders via `directories` (`~/.local/share/provisioning`,
    /// `~/.cache/provisioning`).
    pub fn from_env() -> Dirs {
        let runtime = std::env::var_os("XDG_RUNTIME_DIR")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute());
        match directories::ProjectDirs::from("", "", "provisioning") {
            Some(p) => Dirs {
                data: p.data_dir().to_path_buf(),
                cache: p.cache_dir().to_path_buf(),
                runtime,
            },
            None => Dirs {
                data: std::env::temp_dir().join("provisioning/data"),
                cache: std::env::temp_dir().join("provisioning/cache"),
                runtime,
            },
        }
    }
}

impl Config {
    pub fn from_toml(text: &str, path: &Path) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().replace('\n', "\n  "),
        })
    }

    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut config = Config::from_toml(&text, path)?;
        crate::deploy::expand_config_paths(&mut config, &|k| std::env::var(k).ok())?;
        Ok(config)
    }

    /// Applies the `PROVISIONING_*` environment variables. `get` abstracts
    /// the environment so tests need not mutate the process's own.
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) {
        let non_empty = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        if let Some(registry) = non_empty(ENV_OCI_REGISTRY) {
            match &mut self.oci {
                Some(oci) => oci.registry = registry,
                None => self.oci = Some(OciConfig::new(registry)),
            }
        }
        if let Some(ns) = non_empty(ENV_OCI_NAMESPACE) {
            if let Some(oci) = &mut self.oci {
                oci.namespace = ns;
            }
        }
        self.extra_local_paths = non_empty(ENV_EXTENSIONS_PATH)
            .map(|v| {
                std::env::split_paths(&v)
                    .filter(|p| !p.as_os_str().is_empty())
                    .collect()
            })
            .unwrap_or_default();
    }

    /// Local folders in search order: `PROVISIONING_EXTENSIONS_PATH` entries
    /// first, then `[local] path`. With neither, the XDG data folder's
    /// `extensions/` (the embedded default).
    pub fn local_roots(&self, dirs: &Dirs) -> Vec<PathBuf> {
        let mut roots = self.extra_local_paths.clone();
        if let Some(local) = &self.local {
            roots.push(local.path.clone());
        }
        if roots.is_empty() && self.gitea.is_none() && self.oci.is_none() {
            roots.push(dirs.data.join("extensions"));
        }
        roots
    }

    /// The local socket path: `[server] socket`, else the default.
    pub fn socket_path(&self, xdg_runtime_dir: Option<&Path>) -> PathBuf {
        self.server.socket.clone().unwrap_or_else(|| {
            // SAFETY: geteuid has no preconditions and cannot fail.
            let uid = unsafe { libc::geteuid() };
            extreg_shared::protocol::default_socket_path(xdg_runtime_dir, uid)
        })
    }

    /// Every source in merge priority: `[registry] priority`, then the
    /// sources it leaves out in default order.
    pub fn source_priority(&self) -> Vec<extreg_shared::Source> {
        let mut out = self.registry.priority.clone();
        for s in DEFAULT_PRIORITY {
            if !out.contains(&s) {
                out.push(s);
            }
        }
        out
    }

    /// Whether the web catalogue is served: `[web] enabled`, else on for a
    /// loopback `[server] host` only.
    pub fn web_enabled(&self) -> bool {
        self.web.enabled.unwrap_or_else(|| {
            self.server.host == "localhost"
                || self
                    .server
                    .host
                    .parse::<IpAddr>()
                    .is_ok_and(|a| a.is_loopback())
        })
    }

    /// Where `ext load` extracts: `[extensions] dir`, else `{data}/loaded`
    /// (never the local backend's default root `{data}/extensions`: loading
    /// must not write over the user's own extension folders).
    pub fn load_dir(&self, dirs: &Dirs) -> PathBuf {
        self.extensions
            .dir
            .clone()
            .unwrap_or_else(|| dirs.data.join("loaded"))
    }

    /// **The user's own files are never touched**: the load destination
    /// must neither lie inside nor contain a local backend root, and the
    /// artifact cache must not overlap either. Refused with both paths
    /// named, at start and by `--check-config`.
    pub fn check_paths(&self, dirs: &Dirs) -> Result<(), ConfigError> {
        let load = self.load_dir(dirs);
        let art = self.artifact_dir(dirs);
        let clash = |a_key: &str, a: &Path, b_key: &str, b: &Path| -> Result<(), ConfigError> {
            let (na, nb) = (resolved(a), resolved(b));
            if na.starts_with(&nb) || nb.starts_with(&na) {
                return Err(ConfigError::Invalid(format!(
                    "{a_key} {} overlaps {b_key} {}: they must be separate folders (extregd writes into the first and never touches the second)",
                    a.display(),
                    b.display()
                )));
            }
            Ok(())
        };
        for root in self.local_roots(dirs) {
            clash("[extensions] dir", &load, "local extension folder", &root)?;
            clash(
                "[cache] artifact_dir",
                &art,
                "local extension folder",
                &root,
            )?;
        }
        clash("[cache] artifact_dir", &art, "[extensions] dir", &load)?;
        Ok(())
    }

    pub fn artifact_dir(&self, dirs: &Dirs) -> PathBuf {
        self.cache
            .artifact_dir
            .clone()
            .unwrap_or_else(|| dirs.cache.join("extregd/artifacts"))
    }

    /// The persisted catalogue file, when persisting is on.
    pub fn catalog_path(&self, dirs: &Dirs) -> Option<PathBuf> {
        self.cache.persist_catalog.then(|| {
            self.cache
                .catalog_path
                .clone()
                .unwrap_or_else(|| dirs.cache.join("extregd/catalog.json"))
        })
    }

    /// Age after which a cached answer is marked stale.
    pub fn stale_after(&self) -> std::time::Duration {
        std::time::Duration::from_secs(
            self.cache
                .stale_after_seconds
                .unwrap_or(self.cache.ttl_seconds.saturating_mul(2)),
        )
    }

    /// Checks what TOML types cannot: returns fatal errors or warnings.
    pub fn validate(&self) -> Result<Warnings, ConfigError> {
        let mut warnings = Vec::new();
        if self.server.host.parse::<IpAddr>().is_err() && self.server.host != "localhost" {
            return Err(ConfigError::Invalid(format!(
                "[server] host '{}' is not an IP address (use 127.0.0.1, ::1, 0.0.0.0 or localhost)",
                self.server.host
            )));
        }
        if let Some(url) = &self.server.public_url {
            refuse_userinfo("[server] public_url", url)?;
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(ConfigError::Invalid(format!(
                    "[server] public_url '{url}' must start with http:// or https://"
                )));
            }
        }
        if let Some(w) = self.server.workers {
            if !(1..=256).contains(&w) {
                return Err(ConfigError::Invalid(format!(
                    "[server] workers must be between 1 and 256, not {w}"
                )));
            }
        }
        crate::deploy::check_cors_origins(&self.server.cors_allowed_origins)?;
        if let Some(m) = self.server.max_connections {
            if !(1..=1_000_000).contains(&m) {
                return Err(ConfigError::Invalid(format!(
                    "[server] max_connections must be between 1 and 1000000, not {m}"
                )));
            }
        }
        for (key, v, min) in [
            ("idle_timeout_seconds", self.server.idle_timeout_seconds, 1),
            (
                "write_timeout_seconds",
                self.server.write_timeout_seconds,
                1,
            ),
            (
                "shutdown_timeout_seconds",
                self.server.shutdown_timeout_seconds,
                0,
            ),
        ] {
            if !(min..=3600).contains(&v) {
                return Err(ConfigError::Invalid(format!(
                    "[server] {key} must be between {min} and 3600, not {v}"
                )));
            }
        }
        if self.cache.capacity == 0 {
            return Err(ConfigError::Invalid(
                "[cache] capacity must be at least 1 (disable a cache with enable_*_cache = false)"
                    .into(),
            ));
        }
        crate::signature::Verifier::from_config(&self.signatures).map_err(ConfigError::Invalid)?;
        if self.cache.ttl_seconds == 0 {
            return Err(ConfigError::Invalid(
                "[cache] ttl_seconds must be at least 1".into(),
            ));
        }
        if let Some(s) = self.cache.stale_after_seconds {
            if s < self.cache.ttl_seconds {
                return Err(ConfigError::Invalid(format!(
                    "[cache] stale_after_seconds ({s}) must be at least ttl_seconds ({})",
                    self.cache.ttl_seconds
                )));
            }
        }
        if !(1024..=MAX_WEBHOOK_BODY).contains(&self.webhooks.max_body_bytes) {
            return Err(ConfigError::Invalid(format!(
                "[webhooks] max_body_bytes must be between 1024 and {MAX_WEBHOOK_BODY}, not {}",
                self.webhooks.max_body_bytes
            )));
        }
        for (key, p) in [
            (
                "[webhooks] registry_secret_path",
                &self.webhooks.registry_secret_path,
            ),
            (
                "[webhooks] gitea_secret_path",
                &self.webhooks.gitea_secret_path,
            ),
        ] {
            if let Some(p) = p {
                check_secret_file(key, p, &mut warnings)?;
            }
        }
        if let Some(g) = &self.gitea {
            refuse_userinfo("[gitea] url", &g.url)?;
            if !(g.url.starts_with("http://") || g.url.starts_with("https://")) {
                return Err(ConfigError::Invalid(format!(
                    "[gitea] url '{}' must start with http:// or https://",
                    g.url
                )));
            }
            if g.organization.trim().is_empty() {
                return Err(ConfigError::Invalid("[gitea] organization is empty".into()));
            }
            check_timeout("gitea", g.timeout_seconds)?;
            check_concurrency("gitea", g.concurrency)?;
            if let Some(p) = &g.token_path {
                check_secret_file("[gitea] token_path", p, &mut warnings)?;
            }
            if let Some(p) = &g.ca_file {
                crate::deploy::check_ca_file("[gitea] ca_file", p)?;
            }
        }
        if let Some(o) = &self.oci {
            if o.registry.trim().is_empty() {
                return Err(ConfigError::Invalid("[oci] registry is empty".into()));
            }
            refuse_userinfo("[oci] registry", &o.registry)?;
            if o.namespace.trim().is_empty() {
                return Err(ConfigError::Invalid("[oci] namespace is empty".into()));
            }
            if let Some(bad) = o
                .artifact_namespaces
                .iter()
                .find(|n| extreg_shared::artifact::validate_namespace(n).is_err())
            {
                return Err(ConfigError::Invalid(format!(
                    "[oci] artifact_namespaces: '{bad}' is not a namespace (lower-case letters, digits, '.', '_', '-', components separated by '/')"
                )));
            }
            check_timeout("oci", o.timeout_seconds)?;
            check_concurrency("oci", o.concurrency)?;
            if let Some(p) = &o.auth_token_path {
                check_secret_file("[oci] auth_token_path", p, &mut warnings)?;
            }
            if let Some(p) = &o.ca_file {
                crate::deploy::check_ca_file("[oci] ca_file", p)?;
            }
        }
        for (i, s) in self.registry.priority.iter().enumerate() {
            if self.registry.priority[..i].contains(s) {
                return Err(ConfigError::Invalid(format!(
                    "[registry] priority names '{s}' more than once"
                )));
            }
        }
        Ok(warnings)
    }
}

/// `p` made absolute and lexically clean, with the part that exists
/// resolved through links, so two spellings of one folder compare equal.
fn resolved(p: &Path) -> PathBuf {
    use std::path::Component;
    let abs = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(p)
    };
    let mut clean = PathBuf::new();
    for c in abs.components() {
        match c {
            Component::ParentDir => {
                clean.pop();
            }
            Component::CurDir => {}
            other => clean.push(other),
        }
    }
    // Resolve the longest existing ancestor, keep the rest as written.
    let mut existing = clean.clone();
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = std::fs::canonicalize(&existing) {
            let mut out = real;
            for r in rest.iter().rev() {
                out.push(r);
            }
            return out;
        }
        match (
            existing.file_name().map(|f| f.to_os_string()),
            existing.parent(),
        ) {
            (Some(name), Some(parent)) => {
                rest.push(name);
                existing = parent.to_path_buf();
            }
            _ => return clean,
        }
    }
}

/// Credentials written into a URL (`https://user:pass@host`) are refused:
/// they would show in `--check-config`, logs and errors. The message shows
/// the URL without them.
fn refuse_userinfo(key: &str, value: &str) -> Result<(), ConfigError> {
    let text = if value.contains("://") {
        value.to_string()
    } else {
        format!("http://{value}")
    };
    if let Ok(mut u) = reqwest::Url::parse(text.trim()) {
        if !u.username().is_empty() || u.password().is_some() {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            return Err(ConfigError::Invalid(format!(
                "{key} holds credentials (user:password@); remove them from the URL ({}) and put them in the token file",
                u.host_str().unwrap_or("?")
            )));
        }
    }
    Ok(())
}

fn check_timeout(section: &str, secs: u64) -> Result<(), ConfigError> {
    if secs == 0 || secs > 3600 {
        return Err(ConfigError::Invalid(format!(
            "[{section}] timeout_seconds must be between 1 and 3600, not {secs}"
        )));
    }
    Ok(())
}

fn check_concurrency(section: &str, n: usize) -> Result<(), ConfigError> {
    if n == 0 || n > MAX_CONCURRENCY {
        return Err(ConfigError::Invalid(format!(
            "[{section}] concurrency must be between 1 and {MAX_CONCURRENCY} requests in flight, not {n}"
        )));
    }
    Ok(())
}

/// A secret file must exist and be a readable file; one that other users can
/// read is accepted with a warning.
fn check_secret_file(key: &str, path: &Path, warnings: &mut Warnings) -> Result<(), ConfigError> {
    let meta = std::fs::metadata(path)
        .map_err(|e| ConfigError::Invalid(format!("{key} {}: {e}", path.display())))?;
    if !meta.is_file() {
        return Err(ConfigError::Invalid(format!(
            "{key} {} is not a regular file",
            path.display()
        )));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            warnings.push(format!(
                "{key} {} is readable by other users (mode {:o}); run: chmod 600 {}",
                path.display(),
                mode & 0o777,
                path.display()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;

//! Deployment-facing configuration (issue 11): `~`/`$VAR` expansion in path
//! keys, the `EXTREGD_*` server overrides, CORS origin checks, and the TLS
//! trust of the HTTP backends (system store, `SSL_CERT_FILE`, `ca_file`).

use crate::config::{Config, ConfigError};
use std::path::{Path, PathBuf};

pub const ENV_HOST: &str = "EXTREGD_HOST";
pub const ENV_PORT: &str = "EXTREGD_PORT";
pub const ENV_WORKERS: &str = "EXTREGD_WORKERS";
pub const ENV_PUBLIC_URL: &str = "EXTREGD_PUBLIC_URL";

/// Expands a leading `~` (the home folder) and `$VAR` / `${VAR}` (`$HOME`,
/// `$XDG_RUNTIME_DIR`, ...) in one path key. An undefined variable is an
/// error naming the key, never a silent empty string.
pub fn expand_path(
    key: &str,
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<PathBuf, ConfigError> {
    let Some(text) = path.to_str() else {
        return Ok(path.to_path_buf());
    };
    if !text.starts_with('~') && !text.contains('$') {
        return Ok(path.to_path_buf());
    }
    let home = || env("HOME");
    let out = shellexpand::full_with_context(text, home, |var: &str| match env(var) {
        Some(v) => Ok(Some(v)),
        None => Err(format!("${var} is not set")),
    })
    .map_err(|e| ConfigError::Invalid(format!("{key} '{text}': {}", e.cause)))?;
    if out.starts_with('~') {
        return Err(ConfigError::Invalid(format!(
            "{key} '{text}': HOME is not set, cannot expand ~"
        )));
    }
    Ok(PathBuf::from(out.into_owned()))
}

fn expand_opt(
    key: &str,
    p: &mut Option<PathBuf>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    if let Some(v) = p {
        *v = expand_path(key, v, env)?;
    }
    Ok(())
}

/// Expands every path key of a loaded config file.
pub fn expand_config_paths(
    c: &mut Config,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    expand_opt("[server] socket", &mut c.server.socket, env)?;
    if let Some(l) = &mut c.local {
        l.path = expand_path("[local] path", &l.path, env)?;
    }
    if let Some(g) = &mut c.gitea {
        expand_opt("[gitea] token_path", &mut g.token_path, env)?;
        expand_opt("[gitea] ca_file", &mut g.ca_file, env)?;
    }
    if let Some(o) = &mut c.oci {
        expand_opt("[oci] auth_token_path", &mut o.auth_token_path, env)?;
        expand_opt("[oci] ca_file", &mut o.ca_file, env)?;
    }
    expand_opt("[cache] artifact_dir", &mut c.cache.artifact_dir, env)?;
    expand_opt("[extensions] dir", &mut c.extensions.dir, env)?;
    Ok(())
}

/// `EXTREGD_HOST`, `EXTREGD_PORT`, `EXTREGD_WORKERS`, `EXTREGD_PUBLIC_URL`
/// override `[server]` (so a container binds `0.0.0.0` without a file).
/// Empty values are ignored; a malformed number is an error naming it.
pub fn apply_server_env(
    c: &mut Config,
    get: impl Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    let non_empty = |k: &str| {
        get(k)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    if let Some(h) = non_empty(ENV_HOST) {
        c.server.host = h;
    }
    if let Some(p) = non_empty(ENV_PORT) {
        c.server.port = p.parse().map_err(|_| {
            ConfigError::Invalid(format!("{ENV_PORT}='{p}' is not a port (0-65535)"))
        })?;
    }
    if let Some(w) = non_empty(ENV_WORKERS) {
        c.server.workers = Some(w.parse().map_err(|_| {
            ConfigError::Invalid(format!("{ENV_WORKERS}='{w}' is not a number (1-256)"))
        })?);
    }
    if let Some(u) = non_empty(ENV_PUBLIC_URL) {
        c.server.public_url = Some(u);
    }
    Ok(())
}

/// Each CORS origin is `*` or `scheme://host[:port]` (what browsers send).
pub fn check_cors_origins(origins: &[String]) -> Result<(), ConfigError> {
    for o in origins {
        if o == "*" {
            continue;
        }
        let ok = (o.starts_with("http://") || o.starts_with("https://"))
            && !o.ends_with('/')
            && axum::http::HeaderValue::from_str(o).is_ok()
            && o.split("://")
                .nth(1)
                .is_some_and(|h| !h.is_empty() && !h.contains('/'));
        if !ok {
            return Err(ConfigError::Invalid(format!(
                "[server] cors_allowed_origins: '{o}' is not an origin (like https://app.example.com, no path) or \"*\""
            )));
        }
    }
    Ok(())
}

/// Reads a PEM bundle of CA certificates; at least one must be in it.
pub fn load_ca_file(path: &Path) -> Result<Vec<reqwest::Certificate>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| format!("{}: not a PEM certificate bundle ({e})", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{}: holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        ));
    }
    Ok(certs)
}

pub fn check_ca_file(key: &str, path: &Path) -> Result<(), ConfigError> {
    load_ca_file(path)
        .map(|_| ())
        .map_err(|e| ConfigError::Invalid(format!("{key} {e}")))
}

/// The TLS trust of a backend's HTTP client: the bundled web roots, the
/// system store (`SSL_CERT_FILE` / `SSL_CERT_DIR` honoured, through
/// rustls-native-certs), plus the backend's `ca_file`; `verify_ssl = false`
/// turns verification off altogether.
pub fn tls_trust(
    mut builder: reqwest::ClientBuilder,
    verify_ssl: bool,
    ca_file: Option<&Path>,
) -> Result<reqwest::ClientBuilder, String> {
    builder = builder
        .tls_built_in_root_certs(true)
        .danger_accept_invalid_certs(!verify_ssl);
    if let Some(p) = ca_file {
        for cert in load_ca_file(p)? {
            builder = builder.add_root_certificate(cert);
        }
    }
    Ok(builder)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env<'a>(m: &'a HashMap<&'a str, &'a str>) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| m.get(k).map(|v| v.to_string())
    }

    #[test]
    fn tilde_and_home_expand_and_unknown_vars_are_named() {
        let m: HashMap<&str, &str> =
            [("HOME", "/home/u"), ("XDG_RUNTIME_DIR", "/run/user/7")].into();
        let e = env(&m);
        let x = |s: &str| expand_path("[k] p", Path::new(s), &e);
        assert_eq!(x("~/tok").unwrap(), PathBuf::from("/home/u/tok"));
        assert_eq!(x("~").unwrap(), PathBuf::from("/home/u"));
        assert_eq!(x("$HOME/a").unwrap(), PathBuf::from("/home/u/a"));
        assert_eq!(x("${HOME}/b").unwrap(), PathBuf::from("/home/u/b"));
        assert_eq!(
            x("$XDG_RUNTIME_DIR/s.sock").unwrap(),
            PathBuf::from("/run/user/7/s.sock")
        );
        assert_eq!(x("/abs/x").unwrap(), PathBuf::from("/abs/x"));
        let err = x("$NOPE/x").unwrap_err().to_string();
        assert!(err.contains("[k] p") && err.contains("NOPE"), "{err}");
        let none: HashMap<&str, &str> = HashMap::new();
        let e2 = env(&none);
        let err = expand_path("[k] p", Path::new("~/x"), &e2)
            .unwrap_err()
            .to_string();
        assert!(err.contains("HOME"), "{err}");
    }

    #[test]
    fn server_env_overrides_and_bad_numbers_are_named() {
        let mut c = Config::default();
        let m: HashMap<&str, &str> = [
            (ENV_HOST, "0.0.0.0"),
            (ENV_PORT, "9000"),
            (ENV_WORKERS, "3"),
            (ENV_PUBLIC_URL, ""),
        ]
        .into();
        apply_server_env(&mut c, env(&m)).unwrap();
        assert_eq!(
            (c.server.host.as_str(), c.server.port, c.server.workers),
            ("0.0.0.0", 9000, Some(3))
        );
        assert_eq!(c.server.public_url, None);
        let m: HashMap<&str, &str> = [(ENV_PORT, "80x")].into();
        let err = apply_server_env(&mut c, env(&m)).unwrap_err().to_string();
        assert!(err.contains("EXTREGD_PORT") && err.contains("80x"), "{err}");
    }

    #[test]
    fn cors_origins_are_checked() {
        let ok =
            |v: &[&str]| check_cors_origins(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert!(ok(&["*", "https://a.example", "http://127.0.0.1:3000"]).is_ok());
        for bad in [
            "a.example",
            "https://a.example/",
            "https://a.example/x",
            "ftp://x",
        ] {
            let e = ok(&[bad]).unwrap_err().to_string();
            assert!(e.contains(bad) && e.contains("cors_allowed_origins"), "{e}");
        }
    }

    #[test]
    fn ca_file_must_hold_a_certificate() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("ca.pem");
        std::fs::write(&p, "not a cert").unwrap();
        let e = check_ca_file("[oci] ca_file", &p).unwrap_err().to_string();
        assert!(e.contains("[oci] ca_file") && e.contains("ca.pem"), "{e}");
        let e = check_ca_file("[oci] ca_file", &d.path().join("missing.pem"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing.pem"), "{e}");
    }
}

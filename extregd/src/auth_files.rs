//! Credentials for a registry named on the command line (`ext publish
//! --registry`, `extregd publish/delete/list --registry`), looked up where
//! container tools keep them.
//!
//! **Order** (the first source holding an entry for the registry wins; none
//! means anonymous):
//!
//! 1. `--auth-file FILE` (a Docker/containers JSON auth file), when given;
//! 2. `[oci] auth_token_path`, only when the registry *is* the configured
//!    `[oci] registry` (those credentials never go to another registry);
//! 3. `$REGISTRY_AUTH_FILE`;
//! 4. `$XDG_RUNTIME_DIR/containers/auth.json` (podman, skopeo, buildah);
//! 5. `$XDG_CONFIG_HOME/containers/auth.json` (`~/.config/containers/auth.json`);
//! 6. `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json` (Docker).
//!
//! **Entries.** `{"auths": {KEY: {"auth": base64("user:password")}}}`, or
//! `username` + `password` fields, or `registrytoken` (sent as a bearer
//! token). `KEY` is `host[:port]`, optionally with a scheme (`https://`) or
//! Docker's `/v1/` suffix, or `host[:port]/namespace[/...]` for credentials
//! scoped to part of the registry (the longest matching prefix wins, as in
//! containers-auth.json(5)). Entries that only name a credential helper
//! (`credHelpers`, `credsStore`) cannot be used and are reported in the
//! origin note; the search goes on.
//!
//! Files are read up to 1 MiB. Secrets never leave this module except
//! inside [`Credentials`] (whose `Debug` redacts them); [`Found::origin`]
//! names the file and key only.

use crate::backend::oci::Credentials;
use base64::Engine;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

const MAX_AUTH_FILE: u64 = 1 << 20;

/// Credentials found for a registry and where they came from.
#[derive(Debug, Clone)]
pub struct Found {
    pub creds: Credentials,
    /// e.g. `~/.docker/config.json (auths "127.0.0.1:5000")`; no secret.
    pub origin: String,
}

/// Where to look, taken from the environment (a struct so tests need not
/// mutate the process environment).
#[derive(Debug, Clone, Default)]
pub struct AuthEnv {
    pub registry_auth_file: Option<PathBuf>,
    pub xdg_runtime_dir: Option<PathBuf>,
    pub xdg_config_home: Option<PathBuf>,
    pub docker_config: Option<PathBuf>,
    pub home: Option<PathBuf>,
}

impl AuthEnv {
    pub fn from_env() -> AuthEnv {
        let p = |k: &str| {
            std::env::var_os(k)
                .map(PathBuf::from)
                .filter(|p| !p.as_os_str().is_empty())
        };
        AuthEnv {
            registry_auth_file: p("REGISTRY_AUTH_FILE"),
            xdg_runtime_dir: p("XDG_RUNTIME_DIR"),
            xdg_config_home: p("XDG_CONFIG_HOME"),
            docker_config: p("DOCKER_CONFIG"),
            home: p("HOME"),
        }
    }

    /// The JSON auth files to read, in order, with a label each.
    pub fn files(&self) -> Vec<(&'static str, PathBuf)> {
        let mut out = Vec::new();
        if let Some(f) = &self.registry_auth_file {
            out.push(("REGISTRY_AUTH_FILE", f.clone()));
        }
        if let Some(d) = &self.xdg_runtime_dir {
            out.push(("containers auth.json", d.join("containers/auth.json")));
        }
        match (&self.xdg_config_home, &self.home) {
            (Some(c), _) => out.push(("containers auth.json", c.join("containers/auth.json"))),
            (None, Some(h)) => out.push((
                "containers auth.json",
                h.join(".config/containers/auth.json"),
            )),
            _ => {}
        }
        match (&self.docker_config, &self.home) {
            (Some(d), _) => out.push(("Docker config.json", d.join("config.json"))),
            (None, Some(h)) => out.push(("Docker config.json", h.join(".docker/config.json"))),
            _ => {}
        }
        out
    }
}

#[derive(Deserialize, Default)]
struct AuthFile {
    #[serde(default)]
    auths: BTreeMap<String, Entry>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: BTreeMap<String, String>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
}

#[derive(Deserialize, Default)]
struct Entry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    registrytoken: Option<String>,
}

/// `https://host:5000/v1/` -> `host:5000`; `host/ns` stays `host/ns`.
fn normalize_key(k: &str) -> String {
    let k = k.trim();
    let k = k
        .strip_prefix("https://")
        .or_else(|| k.strip_prefix("http://"))
        .unwrap_or(k);
    let k = k.trim_end_matches('/');
    let k = k
        .strip_suffix("/v1")
        .or_else(|| k.strip_suffix("/v2"))
        .unwrap_or(k);
    k.to_ascii_lowercase()
}

fn entry_credentials(e: &Entry) -> Result<Option<Credentials>, String> {
    if let Some(a) = e.auth.as_deref().filter(|a| !a.trim().is_empty()) {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(a.trim())
            .map_err(|_| "its \"auth\" value is not base64".to_string())?;
        let text = String::from_utf8(raw).map_err(|_| "its \"auth\" is not UTF-8".to_string())?;
        return match text.split_once(':') {
            Some((u, p)) if !u.is_empty() => Ok(Some(Credentials::Basic {
                user: u.to_string(),
                password: p.to_string(),
            })),
            _ => Err("its \"auth\" is not base64 of user:password".into()),
        };
    }
    if let (Some(u), Some(p)) = (&e.username, &e.password) {
        if !u.is_empty() {
            return Ok(Some(Credentials::Basic {
                user: u.clone(),
                password: p.clone(),
            }));
        }
    }
    if let Some(t) = e.registrytoken.as_deref().filter(|t| !t.is_empty()) {
        return Ok(Some(Credentials::Token(t.to_string())));
    }
    Ok(None)
}

fn read_bounded(path: &Path) -> std::io::Result<Vec<u8>> {
    let f = std::fs::File::open(path)?;
    let mut out = Vec::new();
    f.take(MAX_AUTH_FILE + 1).read_to_end(&mut out)?;
    if out.len() as u64 > MAX_AUTH_FILE {
        return Err(std::io::Error::other("larger than 1 MiB"));
    }
    Ok(out)
}

/// The entry of one JSON auth file for `host` (and the repository path
/// `repo`, for namespace-scoped keys). `Ok(None)` when the file holds none;
/// `Err` for an unreadable or malformed file (named, never quoted).
pub fn lookup_file(
    label: &str,
    path: &Path,
    host: &str,
    repo: &str,
    notes: &mut Vec<String>,
) -> Result<Option<Found>, String> {
    let bytes = match read_bounded(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{label} {}: {e}", path.display())),
    };
    let file: AuthFile = serde_json::from_slice(&bytes)
        .map_err(|e| format!("{label} {}: not a JSON auth file ({e})", path.display()))?;
    let host = host.to_ascii_lowercase();
    let repo = repo.trim_matches('/').to_ascii_lowercase();
    // Candidate keys, most specific first: host/a/b, host/a, host.
    let mut wanted = Vec::new();
    let parts: Vec<&str> = repo.split('/').filter(|p| !p.is_empty()).collect();
    for n in (1..=parts.len()).rev() {
        wanted.push(format!("{host}/{}", parts[..n].join("/")));
    }
    wanted.push(host.clone());
    let entries: BTreeMap<String, (&String, &Entry)> = file
        .auths
        .iter()
        .map(|(k, e)| (normalize_key(k), (k, e)))
        .collect();
    for w in &wanted {
        if let Some((key, e)) = entries.get(w) {
            match entry_credentials(e) {
                Ok(Some(creds)) => {
                    return Ok(Some(Found {
                        creds,
                        origin: format!("{label} {} (auths \"{key}\")", path.display()),
                    }))
                }
                Ok(None) => notes.push(format!(
                    "{label} {}: the entry \"{key}\" holds no usable credentials",
                    path.display()
                )),
                Err(why) => {
                    return Err(format!(
                        "{label} {}: the entry \"{key}\": {why}",
                        path.display()
                    ))
                }
            }
        }
    }
    let helper = file
        .cred_helpers
        .iter()
        .find(|(k, _)| normalize_key(k) == host)
        .map(|(_, h)| h.clone())
        .or(file.creds_store.clone());
    if let Some(h) = helper {
        notes.push(format!(
            "{label} {} names the credential helper docker-credential-{h}, which extregd does not run; \
             store the credentials inline (podman login / skopeo login write them so)",
            path.display()
        ));
    }
    Ok(None)
}

/// Looks `host` up in the JSON auth files (`explicit` first, then
/// [`AuthEnv::files`]). `notes` collects why entries were passed over.
pub fn lookup(
    host: &str,
    repo: &str,
    explicit: Option<&Path>,
    env: &AuthEnv,
    notes: &mut Vec<String>,
) -> Result<Option<Found>, String> {
    if let Some(f) = explicit {
        if !f.is_file() {
            return Err(format!("--auth-file {}: no such file", f.display()));
        }
        if let Some(found) = lookup_file("--auth-file", f, host, repo, notes)? {
            return Ok(Some(found));
        }
        notes.push(format!(
            "--auth-file {} holds no entry for {host}",
            f.display()
        ));
    }
    for (label, path) in env.files() {
        if let Some(found) = lookup_file(label, &path, host, repo, notes)? {
            return Ok(Some(found));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn keys_normalize() {
        assert_eq!(
            normalize_key("https://Reg.example:5000/v1/"),
            "reg.example:5000"
        );
        assert_eq!(normalize_key("reg.example/team"), "reg.example/team");
        assert_eq!(normalize_key("http://127.0.0.1:5000"), "127.0.0.1:5000");
    }

    #[test]
    fn order_specific_keys_and_helpers() {
        let dir = tempfile::tempdir().unwrap();
        let runtime = dir.path().join("run");
        let home = dir.path().join("home");
        std::fs::create_dir_all(runtime.join("containers")).unwrap();
        std::fs::create_dir_all(home.join(".docker")).unwrap();
        std::fs::write(
            runtime.join("containers/auth.json"),
            format!(
                r#"{{"auths": {{"reg.example:5000": {{"auth": "{}"}},
                   "reg.example:5000/team": {{"auth": "{}"}}}}}}"#,
                b64("general:pw1"),
                b64("team:pw:2")
            ),
        )
        .unwrap();
        std::fs::write(
            home.join(".docker/config.json"),
            r#"{"auths": {"https://other.example/v1/": {"username": "d", "password": "pw3"}},
                   "credHelpers": {"helped.example": "pass"}}"#,
        )
        .unwrap();
        let env = AuthEnv {
            xdg_runtime_dir: Some(runtime.clone()),
            home: Some(home.clone()),
            ..Default::default()
        };
        let mut notes = vec![];
        let user = |f: Option<Found>| match f.map(|f| f.creds) {
            Some(Credentials::Basic { user, password }) => Some((user, password)),
            _ => None,
        };
        let f = lookup(
            "reg.example:5000",
            "team/x-provider",
            None,
            &env,
            &mut notes,
        )
        .unwrap();
        assert_eq!(user(f), Some(("team".into(), "pw:2".into())));
        let f = lookup("reg.example:5000", "ops/x-provider", None, &env, &mut notes).unwrap();
        let origin = f.as_ref().unwrap().origin.clone();
        assert_eq!(user(f), Some(("general".into(), "pw1".into())));
        assert!(
            origin.contains("containers auth.json") && !origin.contains("pw1"),
            "{origin}"
        );
        let f = lookup("other.example", "ns/a", None, &env, &mut notes).unwrap();
        assert!(f.as_ref().unwrap().origin.contains("Docker config.json"));
        assert_eq!(user(f), Some(("d".into(), "pw3".into())));
        assert!(lookup("helped.example", "ns", None, &env, &mut notes)
            .unwrap()
            .is_none());
        assert!(
            notes.iter().any(|n| n.contains("docker-credential-pass")),
            "{notes:?}"
        );
        // REGISTRY_AUTH_FILE comes before the default files.
        let special = dir.path().join("special.json");
        std::fs::write(
            &special,
            format!(
                r#"{{"auths": {{"reg.example:5000": {{"auth": "{}"}}}}}}"#,
                b64("s:p")
            ),
        )
        .unwrap();
        let env2 = AuthEnv {
            registry_auth_file: Some(special),
            ..env.clone()
        };
        let f = lookup("reg.example:5000", "ops", None, &env2, &mut notes).unwrap();
        assert_eq!(user(f), Some(("s".into(), "p".into())));
        // A malformed entry is an error naming the file, never the value.
        std::fs::write(
            runtime.join("containers/auth.json"),
            r#"{"auths": {"reg.example:5000": {"auth": "%%%secret%%%"}}}"#,
        )
        .unwrap();
        let e = lookup("reg.example:5000", "ops", None, &env, &mut notes).unwrap_err();
        assert!(e.contains("not base64") && !e.contains("secret"), "{e}");
    }
}

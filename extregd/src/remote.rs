//! The registry a publish, delete or listing goes to: the configured
//! `[oci]` backend, or another registry and/or namespace named by the user
//! (`ext publish --registry R --namespace N`, `extregd publish ...`), with
//! credentials from the usual places ([`crate::auth_files`]).
//!
//! The configured `auth_token_path` is used only for the configured
//! registry (same scheme, host and port): a registry named on the command
//! line never receives it.

use crate::auth_files::{self, AuthEnv};
use crate::backend::oci::{registry_base, OciBackend};
use crate::config::OciConfig;
use std::path::Path;
use std::sync::Arc;

/// A registry to talk to and where its credentials came from.
pub struct Target {
    pub backend: Arc<OciBackend>,
    /// `anonymous`, `[oci] auth_token_path /path`, or an auth file and key
    /// (never a secret).
    pub credentials: String,
    /// Why auth-file entries were passed over (credential helpers, ...).
    pub notes: Vec<String>,
}

/// What the user asked for.
#[derive(Debug, Clone, Default)]
pub struct Wanted<'a> {
    pub registry: Option<&'a str>,
    pub namespace: Option<&'a str>,
    /// `--auth-file`: a Docker/containers JSON auth file to read first.
    pub auth_file: Option<&'a Path>,
}

fn check_namespace(ns: &str) -> Result<String, String> {
    let ns = ns.trim().trim_matches('/');
    let ok = !ns.is_empty()
        && ns.len() <= 255
        && ns.split('/').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        });
    if ok {
        Ok(ns.to_string())
    } else {
        Err(format!(
            "namespace '{ns}' is not a valid OCI repository path (lowercase letters, digits, '.', '_', '-', separated by '/')"
        ))
    }
}

fn origin_of(registry: &str, insecure: bool) -> Option<String> {
    registry_base(registry, insecure)
        .ok()
        .map(|u| u.origin().ascii_serialization())
}

/// Resolves the target registry (see the module docs).
pub fn target(
    configured: Option<(&OciConfig, &Arc<OciBackend>)>,
    wanted: &Wanted<'_>,
    env: &AuthEnv,
) -> Result<Target, String> {
    let credentials_of = |c: &OciConfig, b: &OciBackend| match (&c.auth_token_path, b.credentials())
    {
        (Some(p), Some(_)) => format!("[oci] auth_token_path {}", p.display()),
        _ => "anonymous".to_string(),
    };
    if wanted.registry.is_none() && wanted.namespace.is_none() && wanted.auth_file.is_none() {
        let (c, b) = configured.ok_or(
            "no registry: configure [oci] registry (or PROVISIONING_OCI_REGISTRY), or name one with --registry",
        )?;
        return Ok(Target {
            backend: b.clone(),
            credentials: credentials_of(c, b),
            notes: vec![],
        });
    }
    let mut cfg = match (configured, wanted.registry) {
        (Some((c, _)), _) => c.clone(),
        (None, Some(r)) => OciConfig::new(r),
        (None, None) => {
            return Err(
                "no registry: configure [oci] registry (or PROVISIONING_OCI_REGISTRY), or name one with --registry"
                    .into(),
            )
        }
    };
    let same_registry = match (configured, wanted.registry) {
        (_, None) => true,
        (Some((c, _)), Some(r)) => {
            origin_of(&c.registry, c.insecure).is_some()
                && origin_of(&c.registry, c.insecure) == origin_of(r, c.insecure)
        }
        (None, Some(_)) => false,
    };
    if let Some(r) = wanted.registry {
        registry_base(r, cfg.insecure).map_err(|e| e.replace("[oci] registry", "--registry"))?;
        cfg.registry = r.to_string();
    }
    if let Some(ns) = wanted.namespace {
        cfg.namespace = check_namespace(ns)?;
    }
    let mut notes = Vec::new();
    if same_registry && wanted.auth_file.is_none() && cfg.auth_token_path.is_some() {
        let b = OciBackend::new(&cfg)?;
        let credentials = credentials_of(&cfg, &b);
        return Ok(Target {
            backend: Arc::new(b),
            credentials,
            notes,
        });
    }
    cfg.auth_token_path = None;
    // host[:port] as auth files key it.
    let probe = OciBackend::with_credentials(&cfg, None)?;
    let found = auth_files::lookup(
        probe.host(),
        &cfg.namespace,
        wanted.auth_file,
        env,
        &mut notes,
    )?;
    let (creds, credentials) = match found {
        Some(f) => (Some(f.creds), f.origin),
        None => (None, "anonymous".to_string()),
    };
    Ok(Target {
        backend: Arc::new(OciBackend::with_credentials(&cfg, creds)?),
        credentials,
        notes,
    })
}

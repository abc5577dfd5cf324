//! Push invalidation: the two `POST` endpoints of the REST API, and the only
//! ones. They change nothing but the metadata caches: each call names
//! extensions whose versions are fetched again at once (see
//! [`crate::catalogue::Catalogue::invalidate`]).
//!
//! - `POST /api/v1/hooks/registry`: docker-registry (distribution)
//!   notifications. The registry's endpoint config sends
//!   `Authorization: Bearer <secret>` (its `headers`); the body is an
//!   envelope `{"events": [{"action", "target": {"repository", "tag", ...}}]}`
//!   (media type `application/vnd.docker.distribution.events.v1+json`).
//!   `push` and `delete` events on `{namespace}/{name}-{type}` repositories
//!   refresh that extension, at once and once more 400 ms later
//!   (distribution announces a manifest before it links its tag);
//!   everything else is ignored.
//! - `POST /api/v1/hooks/gitea`: Gitea webhooks, signed with
//!   `X-Gitea-Signature` (hex HMAC-SHA256 of the body with the shared
//!   secret). `release` events (published, updated, deleted) and
//!   `repository` events (created, deleted) of the configured
//!   organization's `{name}_prov|_taskserv|_cluster` repositories refresh
//!   that extension; other events are ignored.
//!
//! Each endpoint is off (404) unless its secret file is configured. Every
//! call is authenticated with a constant-time comparison before anything
//! else is looked at, bodies are bounded (`[webhooks] max_body_bytes`, 413
//! above), and a refused call (401) changes nothing. Secrets never appear in
//! answers, logs, `/health` or `--check-config`.

use crate::api::SharedState;
use crate::config::Config;
use crate::error::Error;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use extreg_shared::{ErrorKind, ExtensionType};
use hmac::{Hmac, KeyInit, Mac};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;
use subtle::ConstantTimeEq;

/// Delay of the second refresh after a registry event.
pub const REGISTRY_FOLLOW_UP: std::time::Duration = std::time::Duration::from_millis(400);

/// Extensions one call may name; more is refused (400).
pub const MAX_EXTENSIONS_PER_CALL: usize = 256;

/// A shared secret; `Debug` never shows it.
pub struct Secret(Vec<u8>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Secret {
    /// The first line of `path`, trimmed; an empty one is an error.
    pub fn read(key: &str, path: &Path) -> Result<Secret, String> {
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("{key} {}: {e}", path.display()))?;
        let line = text.lines().next().unwrap_or_default().trim();
        if line.is_empty() {
            return Err(format!("{key} {}: the first line is empty", path.display()));
        }
        Ok(Secret(line.as_bytes().to_vec()))
    }

    /// Constant-time comparison with `given` (digests are compared, so the
    /// time does not depend on where they differ nor on the length).
    fn matches(&self, given: &[u8]) -> bool {
        let a = Sha256::digest(&self.0);
        let b = Sha256::digest(given);
        a.as_slice().ct_eq(b.as_slice()).into()
    }

    /// Whether `sig_hex` is the HMAC-SHA256 of `body` under this secret
    /// (constant-time).
    fn signs(&self, body: &[u8], sig_hex: &str) -> bool {
        let Ok(sig) = hex::decode(sig_hex.trim()) else {
            return false;
        };
        let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0) else {
            return false;
        };
        mac.update(body);
        mac.verify_slice(&sig).is_ok()
    }
}

/// The webhook settings the handlers need.
#[derive(Debug, Default)]
pub struct Webhooks {
    pub registry: Option<Secret>,
    pub gitea: Option<Secret>,
    pub max_body: usize,
    /// `[oci] namespace`, to map repositories to extensions.
    pub oci_namespace: Option<String>,
    /// `[gitea] organization`.
    pub gitea_org: Option<String>,
}

impl Webhooks {
    pub fn from_config(config: &Config) -> Result<Webhooks, String> {
        let w = &config.webhooks;
        Ok(Webhooks {
            registry: w
                .registry_secret_path
                .as_deref()
                .map(|p| Secret::read("[webhooks] registry_secret_path", p))
                .transpose()?,
            gitea: w
                .gitea_secret_path
                .as_deref()
                .map(|p| Secret::read("[webhooks] gitea_secret_path", p))
                .transpose()?,
            max_body: w.max_body_bytes,
            oci_namespace: config
                .oci
                .as_ref()
                .map(|o| o.namespace.trim().trim_matches('/').to_string()),
            gitea_org: config
                .gitea
                .as_ref()
                .map(|g| g.organization.trim().to_string()),
        })
    }
}

fn refused(sender: &'static str, st: &SharedState, message: &str) -> Error {
    st.metrics
        .webhooks
        .with_label_values(&[sender, "refused"])
        .inc();
    Error::new(ErrorKind::AuthError, message)
}

fn off(what: &str, key: &str) -> Error {
    Error::not_found(format!(
        "{what} notifications are off; set [webhooks] {key} to turn them on"
    ))
}

/// Reads at most `limit` bytes of body; more is a 413.
async fn bounded(body: Body, limit: usize) -> Result<bytes::Bytes, Response> {
    axum::body::to_bytes(body, limit).await.map_err(|_| {
        let mut r = Error::invalid_request(format!(
            "the body is larger than {limit} bytes ([webhooks] max_body_bytes)"
        ))
        .into_response();
        *r.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
        r
    })
}

/// Refreshes each extension in the background and answers 202 with what
/// was taken.
fn accept(
    st: &SharedState,
    sender: &'static str,
    exts: BTreeSet<(ExtensionType, String)>,
) -> Response {
    let outcome = if exts.is_empty() {
        "ignored"
    } else {
        "refreshed"
    };
    st.metrics
        .webhooks
        .with_label_values(&[sender, outcome])
        .inc();
    let names: Vec<String> = exts.iter().map(|(t, n)| format!("{t}/{n}")).collect();
    for (t, name) in exts {
        let st = st.clone();
        tokio::spawn(async move {
            // distribution sends a manifest's push event before it links
            // the tag, so registry events are followed up once more.
            let passes = if sender == "registry" { 2 } else { 1 };
            for pass in 0..passes {
                if pass > 0 {
                    tokio::time::sleep(REGISTRY_FOLLOW_UP).await;
                }
                match st.catalogue.invalidate(t, &name).await {
                    Ok(n) => {
                        tracing::info!(sender, ext = %format!("{t}/{name}"), versions = n, "refreshed on notification")
                    }
                    Err(e) => {
                        tracing::warn!(sender, ext = %format!("{t}/{name}"), error = %e.message, "refresh on notification failed")
                    }
                }
            }
        });
    }
    let body = serde_json::json!({ "refreshing": names });
    (StatusCode::ACCEPTED, axum::Json(body)).into_response()
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(default)]
    events: Vec<RegistryEvent>,
}

#[derive(Deserialize)]
struct RegistryEvent {
    #[serde(default)]
    action: String,
    #[serde(default)]
    target: Option<Target>,
}

#[derive(Deserialize)]
struct Target {
    #[serde(default)]
    repository: String,
}

/// A push or delete under a readable generic-artifact namespace (`[oci]
/// artifact_namespaces`, KCL packages) drops that namespace's listing,
/// now and once more after [`REGISTRY_FOLLOW_UP`] (distribution notifies
/// before it links the tag).
fn forget_generic(st: &SharedState, events: &[RegistryEvent]) {
    let namespaces: BTreeSet<String> = events
        .iter()
        .filter(|ev| matches!(ev.action.as_str(), "push" | "delete"))
        .filter_map(|ev| ev.target.as_ref())
        .filter_map(|t| st.generic.namespace_of(&t.repository))
        .map(str::to_string)
        .collect();
    if namespaces.is_empty() {
        return;
    }
    for ns in &namespaces {
        st.generic.forget(ns);
    }
    let st = st.clone();
    tokio::spawn(async move {
        tokio::time::sleep(REGISTRY_FOLLOW_UP).await;
        for ns in &namespaces {
            st.generic.forget(ns);
        }
    });
}

/// `POST /api/v1/hooks/registry`.
pub async fn registry(
    State(st): State<SharedState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Response> {
    let hooks = &st.webhooks;
    let Some(secret) = &hooks.registry else {
        return Err(off("registry", "registry_secret_path").into_response());
    };
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .unwrap_or_default();
    if !secret.matches(given.as_bytes()) {
        return Err(refused(
            "registry",
            &st,
            "missing or wrong Authorization: Bearer secret for registry notifications",
        )
        .into_response());
    }
    let bytes = bounded(body, hooks.max_body).await?;
    let env: Envelope = serde_json::from_slice(&bytes).map_err(|e| {
        Error::invalid_request(format!("not a registry notification envelope: {e}")).into_response()
    })?;
    forget_generic(&st, &env.events);
    let Some(ns) = hooks.oci_namespace.as_deref() else {
        return Ok(accept(&st, "registry", BTreeSet::new()));
    };
    let mut exts = BTreeSet::new();
    for ev in env.events {
        if !matches!(ev.action.as_str(), "push" | "delete") {
            continue;
        }
        let Some(t) = ev.target else { continue };
        if let Some((ty, name)) = crate::backend::oci::parse_repo(ns, &t.repository) {
            exts.insert((ty, name.to_string()));
        }
    }
    if exts.len() > MAX_EXTENSIONS_PER_CALL {
        return Err(Error::invalid_request(format!(
            "one notification names {} extensions; the limit is {MAX_EXTENSIONS_PER_CALL}",
            exts.len()
        ))
        .into_response());
    }
    Ok(accept(&st, "registry", exts))
}

#[derive(Deserialize)]
struct GiteaPayload {
    #[serde(default)]
    repository: Option<GiteaRepo>,
}

#[derive(Deserialize)]
struct GiteaRepo {
    #[serde(default)]
    name: String,
    #[serde(default)]
    full_name: String,
    #[serde(default)]
    owner: Option<GiteaUser>,
}

#[derive(Deserialize)]
struct GiteaUser {
    #[serde(default)]
    login: String,
}

/// `POST /api/v1/hooks/gitea`.
pub async fn gitea(
    State(st): State<SharedState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Response> {
    let hooks = &st.webhooks;
    let Some(secret) = &hooks.gitea else {
        return Err(off("gitea", "gitea_secret_path").into_response());
    };
    let bytes = bounded(body, hooks.max_body).await?;
    let sig = headers
        .get("x-gitea-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !secret.signs(&bytes, sig) {
        return Err(refused(
            "gitea",
            &st,
            "missing or wrong X-Gitea-Signature (HMAC-SHA256 of the body with the shared secret)",
        )
        .into_response());
    }
    let event = headers
        .get("x-gitea-event")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !matches!(event, "release" | "repository") {
        return Ok(accept(&st, "gitea", BTreeSet::new()));
    }
    let p: GiteaPayload = serde_json::from_slice(&bytes).map_err(|e| {
        Error::invalid_request(format!("not a Gitea webhook payload: {e}")).into_response()
    })?;
    let mut exts = BTreeSet::new();
    if let (Some(repo), Some(org)) = (p.repository, hooks.gitea_org.as_deref()) {
        let owner = repo
            .owner
            .map(|o| o.login)
            .filter(|l| !l.is_empty())
            .or_else(|| repo.full_name.split_once('/').map(|(o, _)| o.to_string()))
            .unwrap_or_default();
        if owner.eq_ignore_ascii_case(org) {
            if let Some((t, name)) = crate::backend::gitea::parse_repo_name(&repo.name) {
                exts.insert((t, name.to_string()));
            }
        }
    }
    Ok(accept(&st, "gitea", exts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_and_bearer_secrets() {
        let s = Secret(b"s3cret".to_vec());
        let body = br#"{"action":"published"}"#;
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(b"s3cret").unwrap();
        mac.update(body);
        let good = hex::encode(mac.finalize().into_bytes());
        assert!(s.signs(body, &good));
        assert!(!s.signs(b"{}", &good), "another body");
        assert!(!s.signs(body, "zz"), "not hex");
        assert!(!s.signs(body, ""), "missing");
        let mut other = <Hmac<Sha256> as KeyInit>::new_from_slice(b"other").unwrap();
        other.update(body);
        assert!(!s.signs(body, &hex::encode(other.finalize().into_bytes())));
        assert!(s.matches(b"s3cret"));
        assert!(!s.matches(b"s3cre"));
        assert!(!s.matches(b""));
        assert_eq!(format!("{s:?}"), "<redacted>");
    }
}

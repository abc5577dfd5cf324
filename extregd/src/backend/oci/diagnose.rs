//! `ext test-oci` / `extregd test-oci`: a diagnosis of an OCI registry a
//! user can act on. Each check says what it saw, why it failed and what to
//! do; a check whose prerequisite failed is reported as skipped.
//!
//! | check | how |
//! |---|---|
//! | `reachable` | TCP connect to the registry's host and port |
//! | `tls` | the TLS handshake of an anonymous `GET /v2/` (plain HTTP: nothing to check, said so) |
//! | `api` | that `GET /v2/` answers as a Distribution registry (200 or 401) |
//! | `auth` | the anonymous challenge (scheme, realm, service), then `GET /v2/` with the credentials in use (their source named, never the secret) |
//! | `catalog` | one page of `GET /v2/_catalog` (scope `registry:catalog:*`) |
//! | `namespace` | the `{namespace}/{name}-{type}` repositories in the catalog, and `tags/list` of the first one |
//! | `push` | only when asked: `POST /v2/{namespace}/extregd-test-oci/blobs/uploads/` then `DELETE` of the session, so nothing is left behind |
//!
//! Messages come from our own words and [`BackendError`]s, which never carry
//! credentials.

use super::auth::{pull_scope, push_scope};
use super::client::{Endpoint, Req};
use super::{parse_repo, OciBackend};
use crate::backend::BackendError;
use crate::config::OciConfig;
use bytes::Bytes;
use extreg_shared::protocol::{OciCheck, OciDiagnosis};
use reqwest::header::{HeaderValue, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode, Url};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The repository the push check opens (and cancels) an upload in. It does
/// not follow the `{name}-{type}` rule, so it is never listed even if a
/// registry kept something of it.
pub const PUSH_PROBE_REPO: &str = "extregd-test-oci";
/// No single step of the diagnosis waits longer than this.
const STEP_TIMEOUT: Duration = Duration::from_secs(15);

/// What to diagnose and with what.
pub struct Target<'a> {
    pub backend: &'a OciBackend,
    /// Where the credentials came from (see `crate::remote::Target`).
    pub credentials: &'a str,
    /// `[oci] verify_ssl`.
    pub verify_ssl: bool,
    /// Also check push permission.
    pub push: bool,
}

fn check(name: &str) -> OciCheck {
    OciCheck {
        check: name.to_string(),
        ok: false,
        skipped: false,
        detail: String::new(),
        error: None,
        hint: None,
    }
}

fn passed(name: &str, detail: String) -> OciCheck {
    OciCheck {
        ok: true,
        detail,
        ..check(name)
    }
}

fn failed(name: &str, detail: String, error: String, hint: String) -> OciCheck {
    OciCheck {
        detail,
        error: Some(error),
        hint: Some(hint),
        ..check(name)
    }
}

fn skipped(name: &str, because: &str) -> OciCheck {
    OciCheck {
        skipped: true,
        detail: format!("not checked: {because}"),
        hint: Some(format!("fix '{because}' first")),
        ..check(name)
    }
}

fn ms(t: Instant) -> u128 {
    t.elapsed().as_millis()
}

/// The scheme and parameters of a `WWW-Authenticate` header, for display.
fn challenge_text(h: &str) -> String {
    let h = h.trim();
    let (scheme, rest) = h.split_once(' ').unwrap_or((h, ""));
    let mut shown = vec![];
    for key in ["realm", "service"] {
        let needle = format!("{key}=\"");
        if let Some(start) = rest.to_ascii_lowercase().find(&needle) {
            let v = &rest[start + needle.len()..];
            if let Some(end) = v.find('"') {
                shown.push(format!("{key} \"{}\"", &v[..end]));
            }
        }
    }
    if shown.is_empty() {
        scheme.to_string()
    } else {
        format!("{scheme} ({})", shown.join(", "))
    }
}

/// What a failed TLS handshake (or connection) means for the user.
fn tls_hint(cause: &str, scheme_https: bool) -> String {
    let c = cause.to_ascii_lowercase();
    if c.contains("unknownissuer") || c.contains("unknown issuer") || c.contains("self-signed") {
        "the certificate is signed by a CA this machine does not trust: add it with [oci] ca_file = \"/path/ca.pem\" (or SSL_CERT_FILE); verify_ssl = false only for a test registry".into()
    } else if c.contains("notvalidforname") || c.contains("not valid for name") {
        "the certificate does not name this host: use the host name it was issued for in [oci] registry".into()
    } else if c.contains("expired") || c.contains("notvalidyet") {
        "the certificate is expired or not yet valid: renew it on the registry (and check this machine's clock)".into()
    } else if scheme_https
        && (c.contains("corrupt message")
            || c.contains("invalidcontenttype")
            || c.contains("wrong version"))
    {
        "the registry speaks plain HTTP on this port: write [oci] registry = \"http://HOST:PORT\" or set insecure = true".into()
    } else {
        "check that the registry serves HTTPS on this port with a certificate this machine trusts ([oci] ca_file adds a CA)".into()
    }
}

fn auth_hint(e: &BackendError, credentials: &str) -> String {
    let m = e.to_string();
    if credentials == "anonymous" {
        "the registry wants credentials: put `user:password` (or a token) in a file named by [oci] auth_token_path (mode 600), or for --registry log in with `podman login` / `docker login` (auth.json, config.json)".into()
    } else if m.contains("bare token") {
        format!("the registry asks for user:password (Basic) but {credentials} holds a bare token: write `user:password` there")
    } else if m.contains("token service") {
        format!("the token service refused the credentials from {credentials}: check the user and password, and that the token service is reachable")
    } else {
        format!("the registry rejected the credentials from {credentials}: check the user and password (or renew the token) there")
    }
}

fn access_hint(e: &BackendError, what: &str, credentials: &str) -> String {
    match e {
        BackendError::Auth(_) => format!(
            "the credentials from {credentials} may not {what}: grant that permission on the registry (or use an account that has it)"
        ),
        BackendError::NotFound(_) => format!("the registry does not offer {what}"),
        BackendError::Timeout(_) | BackendError::Unreachable(_) => {
            "the registry stopped answering: check its health and the network, then run test-oci again".into()
        }
        BackendError::RateLimited(_) => "the registry is rate limiting: wait and run test-oci again".into(),
        _ => "see the error; the registry's own log has the details".into(),
    }
}

/// Diagnoses the configured `[oci]` registry, or the registry and/or
/// namespace `spec` names (credentials then from the usual auth files, as
/// for `ext publish --registry`). `Err` is a configuration problem (no
/// registry, a bad `--registry` or `--namespace`).
pub async fn run(
    configured: Option<(&OciConfig, &Arc<OciBackend>)>,
    spec: &extreg_shared::protocol::TestOciSpec,
    env: &crate::auth_files::AuthEnv,
) -> Result<OciDiagnosis, String> {
    let wanted = crate::remote::Wanted {
        registry: spec.registry.as_deref(),
        namespace: spec.namespace.as_deref(),
        auth_file: None,
    };
    let target = crate::remote::target(configured, &wanted, env)?;
    let verify_ssl = configured.is_none_or(|(c, _)| c.verify_ssl);
    Ok(diagnose(Target {
        backend: &target.backend,
        credentials: &target.credentials,
        verify_ssl,
        push: spec.push,
    })
    .await)
}

/// Runs the diagnosis (see the module docs).
pub async fn diagnose(t: Target<'_>) -> OciDiagnosis {
    let b = t.backend;
    let inner = b.client();
    let base = b.base_url().to_string();
    let mut checks = Vec::new();
    let url = Url::parse(&base).ok();
    let https = url.as_ref().is_some_and(|u| u.scheme() == "https");
    let host = url
        .as_ref()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_default();
    let port = url
        .as_ref()
        .and_then(|u| u.port_or_known_default())
        .unwrap_or(443);
    let step = inner.api_timeout().min(STEP_TIMEOUT);

    // reachable: a TCP connection.
    let target = format!("{}:{port}", host.trim_matches(|c| c == '[' || c == ']'));
    let started = Instant::now();
    let tcp = tokio::time::timeout(step, async {
        let addrs: Vec<_> = tokio::net::lookup_host(target.as_str())
            .await
            .map_err(|e| (true, e.to_string()))?
            .collect();
        let mut last = String::from("no address");
        for a in addrs {
            match tokio::net::TcpStream::connect(a).await {
                Ok(_) => return Ok(a),
                Err(e) => last = e.to_string(),
            }
        }
        Err((false, last))
    })
    .await;
    let reachable = match tcp {
        Ok(Ok(addr)) => {
            checks.push(passed(
                "reachable",
                format!(
                    "{target} accepts TCP connections ({addr}, {} ms)",
                    ms(started)
                ),
            ));
            true
        }
        Ok(Err((dns, e))) => {
            checks.push(failed(
                "reachable",
                format!("TCP connect to {target}"),
                if dns {
                    format!("cannot resolve {host}: {e}")
                } else {
                    format!("cannot connect to {target}: {e}")
                },
                if dns {
                    format!("the host name does not resolve: check [oci] registry (now {base}) and DNS")
                } else {
                    format!("is the registry running and listening on {target}? check [oci] registry (now {base}) and any firewall")
                },
            ));
            false
        }
        Err(_) => {
            checks.push(failed(
                "reachable",
                format!("TCP connect to {target}"),
                format!("no connection within {} s", step.as_secs()),
                "packets are dropped on the way (a firewall?) or the host is down".into(),
            ));
            false
        }
    };
    if !reachable {
        for c in ["tls", "api", "auth", "catalog", "namespace"] {
            checks.push(skipped(c, "reachable"));
        }
        if t.push {
            checks.push(skipped("push", "reachable"));
        }
        return finish(b, t.credentials, checks);
    }

    // tls + api: an anonymous GET /v2/ (no credentials: we want the
    // challenge itself).
    let started = Instant::now();
    let anon = inner
        .http
        .get(inner.url(Endpoint::Ping))
        .timeout(step)
        .send()
        .await;
    let anon = match anon {
        Ok(r) => {
            checks.push(if https {
                passed(
                    "tls",
                    if t.verify_ssl {
                        "TLS handshake done; the certificate is trusted and names the host".into()
                    } else {
                        "TLS handshake done; verify_ssl = false: the certificate is NOT verified".into()
                    },
                )
            } else {
                let loopback = host == "localhost"
                    || host
                        .trim_matches(|c| c == '[' || c == ']')
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback());
                OciCheck {
                    hint: (!loopback).then(|| {
                        "credentials and artifacts travel in clear text: serve the registry over https:// unless the network is trusted".to_string()
                    }),
                    ..passed(
                        "tls",
                        format!(
                            "plain HTTP (no TLS){}",
                            if loopback { " on the loopback host" } else { "" }
                        ),
                    )
                }
            });
            r
        }
        Err(e) => {
            let timeout = e.is_timeout();
            let cause = crate::backend::root_cause(&e.without_url());
            if timeout {
                checks.push(failed(
                    "tls",
                    "GET /v2/".into(),
                    format!("no answer within {} s", step.as_secs()),
                    "the port accepts connections but does not answer: is it the registry's port?"
                        .into(),
                ));
            } else {
                checks.push(failed(
                    "tls",
                    format!("{} GET /v2/", if https { "TLS handshake and" } else { "plain HTTP" }),
                    cause.clone(),
                    if https {
                        tls_hint(&cause, https)
                    } else {
                        "the port accepts connections but does not speak HTTP: if the registry serves HTTPS, write https:// in [oci] registry".into()
                    },
                ));
            }
            for c in ["api", "auth", "catalog", "namespace"] {
                checks.push(skipped(c, "tls"));
            }
            if t.push {
                checks.push(skipped("push", "tls"));
            }
            return finish(b, t.credentials, checks);
        }
    };
    let status = anon.status();
    let api_version = anon
        .headers()
        .get("docker-distribution-api-version")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let challenge = anon
        .headers()
        .get(WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .map(challenge_text);
    drop(anon);
    if status == StatusCode::OK || status == StatusCode::UNAUTHORIZED {
        checks.push(passed(
            "api",
            format!(
                "GET /v2/ answered {} in {} ms{}",
                status.as_u16(),
                ms(started),
                api_version
                    .map(|v| format!(" (Docker-Distribution-API-Version {v})"))
                    .unwrap_or_default()
            ),
        ));
    } else {
        checks.push(failed(
            "api",
            "GET /v2/".into(),
            format!("GET /v2/ answered {}", status.as_u16()),
            format!(
                "{base} does not serve the OCI Distribution API at /v2/: check the URL in [oci] registry (a proxy or a path prefix?)"
            ),
        ));
        for c in ["auth", "catalog", "namespace"] {
            checks.push(skipped(c, "api"));
        }
        if t.push {
            checks.push(skipped("push", "api"));
        }
        return finish(b, t.credentials, checks);
    }

    // auth: the challenge, then GET /v2/ with the credentials in use.
    let asked = match (&challenge, status) {
        (_, StatusCode::OK) => "the registry needs no credentials to read".to_string(),
        (Some(c), _) => format!("challenge {c}"),
        (None, _) => "401 without a WWW-Authenticate challenge".to_string(),
    };
    let authed = match tokio::time::timeout(step * 2, inner.ping()).await {
        Ok(r) => r,
        Err(_) => Err(BackendError::Timeout(step.as_secs() * 2)),
    };
    let auth_ok = match authed {
        Ok(()) => {
            checks.push(passed(
                "auth",
                format!(
                    "{asked}; credentials: {}; GET /v2/ authorized",
                    t.credentials
                ),
            ));
            true
        }
        Err(e) => {
            checks.push(failed(
                "auth",
                format!("{asked}; credentials: {}", t.credentials),
                e.to_string(),
                auth_hint(&e, t.credentials),
            ));
            false
        }
    };
    if !auth_ok {
        for c in ["catalog", "namespace"] {
            checks.push(skipped(c, "auth"));
        }
        if t.push {
            checks.push(skipped("push", "auth"));
        }
        return finish(b, t.credentials, checks);
    }

    // catalog: every page (the namespace check needs them all), bounded by
    // the client's own page and time limits.
    let ns = b.namespace().to_string();
    let started = Instant::now();
    let catalog = tokio::time::timeout(super::LIST_DEADLINE.min(step * 4), inner.catalog())
        .await
        .unwrap_or_else(|_| Err(BackendError::Timeout((step * 4).as_secs())));
    let repos = match catalog {
        Ok(repos) => {
            checks.push(passed(
                "catalog",
                format!(
                    "GET /v2/_catalog listed {} repositor{} in {} ms",
                    repos.len(),
                    if repos.len() == 1 { "y" } else { "ies" },
                    ms(started)
                ),
            ));
            Some(repos)
        }
        Err(e) => {
            let hint = match &e {
                BackendError::NotFound(_) => "the registry does not offer /v2/_catalog (GHCR, Docker Hub and some others do not): extregd cannot discover extensions there".to_string(),
                other => access_hint(other, "list the catalog (token scope registry:catalog:*)", t.credentials),
            };
            checks.push(failed(
                "catalog",
                "GET /v2/_catalog".into(),
                e.to_string(),
                hint,
            ));
            None
        }
    };

    // namespace: the extension repositories, and tags of the first.
    match repos {
        None => checks.push(skipped("namespace", "catalog")),
        Some(repos) => {
            let prefix = format!("{ns}/");
            let under: Vec<&String> = repos.iter().filter(|r| r.starts_with(&prefix)).collect();
            let exts: Vec<&String> = under
                .iter()
                .copied()
                .filter(|r| parse_repo(&ns, r).is_some())
                .collect();
            let others: Vec<&str> = under
                .iter()
                .filter(|r| parse_repo(&ns, r).is_none())
                .map(|r| r.as_str())
                .take(3)
                .collect();
            match exts.first() {
                None => checks.push(OciCheck {
                    hint: Some(if others.is_empty() {
                        format!("publish one: `ext publish DIR --version V` (it goes to {ns}/NAME-TYPE)")
                    } else {
                        format!(
                            "repositories under {ns} must be named {ns}/NAME-provider, -taskserv or -cluster to be listed (e.g. {})",
                            others.join(", ")
                        )
                    }),
                    ..passed(
                        "namespace",
                        format!(
                            "no extension repositories under '{ns}' yet ({} other repositor{})",
                            under.len(),
                            if under.len() == 1 { "y" } else { "ies" }
                        ),
                    )
                }),
                Some(first) => {
                    let what = format!("tags of {first}");
                    let mut req =
                        inner.req(Method::GET, Endpoint::Tags(first), pull_scope(first), &what);
                    req.timeout = Some(step);
                    match inner.send_read(&req).await {
                        Ok((_, body)) => {
                            let tags = serde_json::from_slice::<serde_json::Value>(&body)
                                .ok()
                                .and_then(|v| v["tags"].as_array().map(|a| a.len()))
                                .unwrap_or(0);
                            checks.push(passed(
                                "namespace",
                                format!(
                                    "{} extension repositor{} under '{ns}'; {first} lists {tags} tag{}",
                                    exts.len(),
                                    if exts.len() == 1 { "y" } else { "ies" },
                                    if tags == 1 { "" } else { "s" }
                                ),
                            ))
                        }
                        Err(e) => checks.push(failed(
                            "namespace",
                            format!("GET /v2/{first}/tags/list"),
                            e.to_string(),
                            access_hint(&e, &format!("pull from {ns}"), t.credentials),
                        )),
                    }
                }
            }
        }
    }

    if t.push {
        checks.push(push_check(b, &ns, step, t.credentials).await);
    }
    finish(b, t.credentials, checks)
}

/// Opens an upload session in `{ns}/extregd-test-oci` and cancels it.
async fn push_check(b: &OciBackend, ns: &str, step: Duration, credentials: &str) -> OciCheck {
    let inner = b.client();
    let repo = format!("{ns}/{PUSH_PROBE_REPO}");
    let scope = push_scope(&repo);
    let what = format!("an upload to {repo}");
    let mut req = inner.req(Method::POST, Endpoint::Uploads(&repo), scope.clone(), &what);
    req.body = Some(Bytes::new());
    req.timeout = Some(step);
    let resp = match inner.send_held(&req).await {
        Ok(r) => r,
        Err(e) => {
            let hint = match &e {
                BackendError::Status { code: 405, .. } => {
                    "the registry is read-only (or a pull-through cache): push to another one with --registry".to_string()
                }
                other => access_hint(other, &format!("push to {ns}"), credentials),
            };
            return failed(
                "push",
                format!("POST /v2/{repo}/blobs/uploads/"),
                e.to_string(),
                hint,
            );
        }
    };
    let location = resp
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    drop(resp);
    let Some(location) = location else {
        return failed(
            "push",
            format!("POST /v2/{repo}/blobs/uploads/"),
            "the registry opened an upload without a Location".into(),
            "the registry does not follow the Distribution upload flow; publishing will fail too"
                .into(),
        );
    };
    let target = match Url::parse(b.base_url()).and_then(|u| u.join(&location)) {
        Ok(u) if inner.same_origin(u.as_str()) => u.to_string(),
        _ => return failed(
            "push",
            format!("POST /v2/{repo}/blobs/uploads/"),
            "the upload session lives on another host; not cancelled from here".into(),
            "the session expires on the registry's own schedule (distribution: purging uploads)"
                .into(),
        ),
    };
    let mut del = Req {
        url: target.clone(),
        method: Method::DELETE,
        ..inner.req(
            Method::DELETE,
            Endpoint::Uploads(&repo),
            scope.clone(),
            &what,
        )
    };
    del.timeout = Some(step);
    del.headers
        .insert("content-length", HeaderValue::from_static("0"));
    match inner.send_held(&del).await {
        Ok(_) => {
            // The session must be gone: its status now answers 404.
            let mut get = Req {
                url: target,
                ..inner.req(Method::GET, Endpoint::Uploads(&repo), scope, &what)
            };
            get.timeout = Some(step);
            match inner.send_held(&get).await {
                Err(BackendError::NotFound(_)) => passed(
                    "push",
                    format!("opened an upload session in {repo} and cancelled it: pushing is allowed, nothing was left behind"),
                ),
                Ok(_) => failed(
                    "push",
                    format!("opened an upload session in {repo}; the registry accepted its cancellation"),
                    "the upload session still answers after it was cancelled".into(),
                    "pushing is allowed; the registry purges the session on its own schedule".into(),
                ),
                Err(e) => passed(
                    "push",
                    format!("opened an upload session in {repo} and cancelled it: pushing is allowed (its status afterwards: {e})"),
                ),
            }
        }
        Err(e) => failed(
            "push",
            format!("opened an upload session in {repo}; cancelling it (DELETE) failed"),
            e.to_string(),
            "pushing is allowed, but the open session stays until the registry purges old uploads"
                .into(),
        ),
    }
}

fn finish(b: &OciBackend, credentials: &str, checks: Vec<OciCheck>) -> OciDiagnosis {
    OciDiagnosis {
        registry: b.base_url().to_string(),
        namespace: b.namespace().to_string(),
        credentials: credentials.to_string(),
        ok: checks.iter().all(|c| c.ok),
        checks,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_are_shown_without_anything_else() {
        assert_eq!(
            challenge_text("Basic realm=\"extreg-test\""),
            "Basic (realm \"extreg-test\")"
        );
        assert_eq!(
            challenge_text(
                "Bearer realm=\"https://auth.example/token\",service=\"reg\",scope=\"x\""
            ),
            "Bearer (realm \"https://auth.example/token\", service \"reg\")"
        );
        assert_eq!(challenge_text("Negotiate"), "Negotiate");
    }

    #[test]
    fn tls_failures_get_hints() {
        assert!(tls_hint("invalid peer certificate: UnknownIssuer", true).contains("ca_file"));
        assert!(tls_hint("invalid peer certificate: NotValidForName", true).contains("host name"));
        assert!(
            tls_hint("received corrupt message of type InvalidContentType", true)
                .contains("plain HTTP")
        );
    }

    #[tokio::test]
    async fn a_closed_port_is_not_reachable_and_the_rest_is_skipped() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cfg = crate::config::OciConfig {
            namespace: "ns".into(),
            timeout_seconds: 5,
            ..crate::config::OciConfig::new(format!("127.0.0.1:{port}"))
        };
        let b = OciBackend::new(&cfg).unwrap();
        let d = diagnose(Target {
            backend: &b,
            credentials: "anonymous",
            verify_ssl: true,
            push: true,
        })
        .await;
        assert!(!d.ok);
        assert_eq!(d.checks[0].check, "reachable");
        assert!(!d.checks[0].ok);
        assert!(d.checks[0].hint.as_deref().unwrap().contains("running"));
        assert_eq!(d.checks.len(), 7);
        assert!(d.checks[1..].iter().all(|c| c.skipped && !c.ok));
    }
}

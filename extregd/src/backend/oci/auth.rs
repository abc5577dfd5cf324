//! Registry authentication: the credentials file, `WWW-Authenticate`
//! challenges, bearer tokens cached per scope, and the realm rule.
//!
//! **Credentials.** `auth_token_path` names a file whose first non-empty
//! line is either `user:password` (split at the first `:`) or a bare token.
//! `Debug` never shows a secret.
//!
//! **Challenges.** A request answered `401` with `WWW-Authenticate: Basic`
//! is repeated with HTTP Basic credentials (and later requests send them up
//! front); `Bearer realm=..,service=..,scope=..` makes us fetch a token from
//! the realm (with Basic credentials when we have `user:password`,
//! anonymously otherwise), cache it per scope until it expires
//! (`expires_in`, default 60 s, at most a day), and repeat the request. A
//! bare token is sent as `Authorization: Bearer <token>` as is (a registry
//! access token; no exchange).
//!
//! **Realm rule.** Basic credentials go to a token realm only on the
//! registry's own origin, over HTTPS, or on the registry's own loopback host
//! (another port: nothing leaves the machine); never in clear text
//! elsewhere. Tokens the realm issues are remembered so they are scrubbed
//! from every quoted text.

use super::super::http::{self, Upstream};
use super::super::BackendError;
use base64::Engine;
use parking_lot::Mutex;
use reqwest::header::{HeaderValue, AUTHORIZATION};
use reqwest::Url;
use serde::Deserialize;
use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::time::{Duration, Instant};

/// Longest a bearer token is kept, whatever `expires_in` says.
const MAX_TOKEN_LIFE: u64 = 24 * 3600;
/// Largest token service answer read.
const MAX_TOKEN_BYTES: usize = 64 << 10;
/// Cached tokens (one per scope) before the cache is reset.
const MAX_TOKENS: usize = 65_536;

/// The scope of `GET /v2/_catalog`.
pub const CATALOG_SCOPE: &str = "registry:catalog:*";

/// `repository:{repo}:pull`.
pub fn pull_scope(repo: &str) -> String {
    format!("repository:{repo}:pull")
}

/// `repository:{repo}:pull,push`.
pub fn push_scope(repo: &str) -> String {
    format!("repository:{repo}:pull,push")
}

/// `repository:{repo}:delete`.
pub fn delete_scope(repo: &str) -> String {
    format!("repository:{repo}:delete")
}

/// What `auth_token_path` holds. `Debug` never shows it.
#[derive(Clone)]
pub enum Credentials {
    Basic { user: String, password: String },
    Token(String),
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Basic { user, .. } => write!(f, "Basic({user}:<redacted>)"),
            Credentials::Token(_) => f.write_str("Token(<redacted>)"),
        }
    }
}

impl Credentials {
    /// The first non-empty line of `text`: `user:password` or a bare token.
    pub fn parse(text: &str) -> Option<Credentials> {
        let line = text.lines().map(str::trim).find(|l| !l.is_empty())?;
        Some(match line.split_once(':') {
            Some((u, p)) if !u.is_empty() => Credentials::Basic {
                user: u.to_string(),
                password: p.to_string(),
            },
            _ => Credentials::Token(line.to_string()),
        })
    }

    /// The part that must never be shown.
    pub(crate) fn secret(&self) -> &str {
        match self {
            Credentials::Basic { password, .. } => password,
            Credentials::Token(t) => t,
        }
    }

    /// Reads `[oci] auth_token_path`; errors name the file, never a secret.
    pub fn read(path: &Path) -> Result<Credentials, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("[oci] auth_token_path {}: {e}", path.display()))?;
        Credentials::parse(&text).ok_or_else(|| {
            format!(
                "[oci] auth_token_path {}: the file holds no credentials",
                path.display()
            )
        })
    }
}

/// How the registry asked us to authenticate.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
        insufficient_scope: bool,
    },
}

/// Parses `WWW-Authenticate` (one challenge, Basic or Bearer).
pub(crate) fn parse_challenge(h: &str) -> Option<Challenge> {
    let h = h.trim();
    let (scheme, rest) = h.split_once(' ').unwrap_or((h, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut params = HashMap::new();
    let mut s = rest.trim();
    while !s.is_empty() {
        let Some((k, v)) = s.split_once('=') else {
            break;
        };
        let k = k.trim().trim_start_matches(',').trim().to_ascii_lowercase();
        let v = v.trim_start();
        let (val, next) = if let Some(q) = v.strip_prefix('"') {
            match q.find('"') {
                Some(end) => (&q[..end], &q[end + 1..]),
                None => (q, ""),
            }
        } else {
            match v.find(',') {
                Some(end) => (&v[..end], &v[end..]),
                None => (v, ""),
            }
        };
        params.insert(k, val.to_string());
        s = next.trim_start().trim_start_matches(',').trim_start();
    }
    Some(Challenge::Bearer {
        realm: params.remove("realm")?,
        service: params.remove("service"),
        scope: params.remove("scope"),
        insufficient_scope: params
            .get("error")
            .is_some_and(|e| e == "insufficient_scope"),
    })
}

/// The realm rule: whether Basic credentials may go to `realm` when the
/// registry is `base`.
pub(crate) fn may_send_credentials(base: &Url, realm: &Url) -> bool {
    let loopback = |h: &str| {
        h.eq_ignore_ascii_case("localhost")
            || h.trim_matches(|c| c == '[' || c == ']')
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    };
    let same_loopback_host =
        base.host_str() == realm.host_str() && realm.host_str().is_some_and(loopback);
    base.origin() == realm.origin() || realm.scheme() == "https" || same_loopback_host
}

/// A bearer token and when it stops being used.
struct CachedToken {
    header: HeaderValue,
    until: Instant,
}

/// The credentials of one registry and what they earned: the scheme it
/// challenged with and the bearer tokens by scope.
pub(crate) struct Auth {
    creds: Option<Credentials>,
    /// The registry challenged with Basic: send it up front.
    basic: Mutex<bool>,
    tokens: Mutex<HashMap<String, CachedToken>>,
}

impl Auth {
    pub fn new(creds: Option<Credentials>) -> Auth {
        Auth {
            creds,
            basic: Mutex::new(false),
            tokens: Mutex::new(HashMap::new()),
        }
    }

    pub fn credentials(&self) -> Option<&Credentials> {
        self.creds.as_ref()
    }

    /// Forgets the bearer token cached for `scope` (it was refused).
    pub fn forget(&self, scope: &str) {
        self.tokens.lock().remove(scope);
    }

    /// The `Authorization` header to send up front for `scope`, if any.
    pub fn header_for(&self, scope: &str) -> Option<HeaderValue> {
        match self.creds.as_ref() {
            Some(Credentials::Token(t)) => return sensitive(format!("Bearer {t}")),
            Some(Credentials::Basic { .. }) if *self.basic.lock() => return self.basic_header(),
            _ => {}
        }
        let tokens = self.tokens.lock();
        tokens
            .get(scope)
            .filter(|t| t.until > Instant::now())
            .map(|t| t.header.clone())
    }

    fn basic_header(&self) -> Option<HeaderValue> {
        let Some(Credentials::Basic { user, password }) = &self.creds else {
            return None;
        };
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        sensitive(format!("Basic {encoded}"))
    }

    /// The error for a 401 the registry sent without a challenge we answer.
    pub fn unauthorized(&self, what: &str, detail: &str) -> String {
        if self.creds.is_some() {
            format!("the registry rejected the credentials for {what} (401){detail}")
        } else {
            format!(
                "the registry requires credentials for {what} (401); set [oci] auth_token_path{detail}"
            )
        }
    }

    /// Answers a challenge so the next attempt can succeed: remembers Basic,
    /// or fetches a bearer token for `scope` from the realm.
    pub async fn answer(
        &self,
        ch: Challenge,
        scope: &str,
        what: &str,
        client: &reqwest::Client,
        base: &Url,
        up: &Upstream,
    ) -> Result<(), BackendError> {
        let (realm, service, ch_scope) = match ch {
            Challenge::Basic => {
                return match &self.creds {
                    Some(Credentials::Basic { .. }) => {
                        *self.basic.lock() = true;
                        Ok(())
                    }
                    Some(Credentials::Token(_)) => Err(BackendError::Auth(format!(
                        "the registry asks for user:password (Basic) for {what}; the auth file holds a bare token"
                    ))),
                    None => Err(BackendError::Auth(format!(
                        "the registry requires credentials for {what} (401); set [oci] auth_token_path"
                    ))),
                }
            }
            Challenge::Bearer {
                realm,
                service,
                scope,
                ..
            } => (realm, service, scope),
        };
        if matches!(self.creds, Some(Credentials::Token(_))) {
            return Err(BackendError::Auth(format!(
                "the registry rejected the bearer token for {what} (401)"
            )));
        }
        let mut url = Url::parse(&realm).map_err(|_| {
            BackendError::Auth(format!(
                "the registry's token realm is not a URL ({})",
                up.scrub(&realm)
            ))
        })?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = &service {
                q.append_pair("service", s);
            }
            let wanted = ch_scope.unwrap_or_else(|| scope.to_string());
            for s in wanted.split(' ').filter(|s| !s.is_empty()) {
                q.append_pair("scope", s);
            }
        }
        let may_send = may_send_credentials(base, &url);
        let mut req = client.get(url).timeout(up.timeout());
        match self.basic_header() {
            Some(h) if may_send => req = req.header(AUTHORIZATION, h),
            Some(_) => tracing::warn!(
                "oci: the token realm is plain HTTP on another origin; asking for a token without sending credentials"
            ),
            None => {}
        }
        let resp = req
            .send()
            .await
            .map_err(|e| up.transport_error(e, "a registry token"))?;
        if !resp.status().is_success() {
            let s = resp.status().as_u16();
            return Err(BackendError::Auth(format!(
                "the token service refused a token for {what} ({s})"
            )));
        }
        #[derive(Deserialize)]
        struct TokenBody {
            #[serde(default)]
            token: Option<String>,
            #[serde(default)]
            access_token: Option<String>,
            #[serde(default)]
            expires_in: Option<u64>,
        }
        let body = http::read_limited(resp, MAX_TOKEN_BYTES)
            .await
            .map_err(|e| up.read_error(e, "a registry token"))?;
        let t: TokenBody = serde_json::from_slice(&body).map_err(|_| {
            BackendError::Auth("the token service sent an unreadable answer".into())
        })?;
        let token = t
            .token
            .or(t.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| BackendError::Auth("the token service sent no token".into()))?;
        let header = sensitive(format!("Bearer {token}"))
            .ok_or_else(|| BackendError::Auth("the token service sent a malformed token".into()))?;
        up.secrets.issued(&token);
        // Clamped: an absurd `expires_in` must not overflow a clock.
        let life = t.expires_in.unwrap_or(60).clamp(1, MAX_TOKEN_LIFE);
        let margin = (life / 10).min(10);
        let mut tokens = self.tokens.lock();
        if tokens.len() >= MAX_TOKENS {
            tokens.clear();
        }
        tokens.insert(
            scope.to_string(),
            CachedToken {
                header,
                until: Instant::now()
                    .checked_add(Duration::from_secs(life - margin))
                    .unwrap_or_else(Instant::now),
            },
        );
        Ok(())
    }
}

/// A header value marked sensitive (never shown by `Debug`, not cached by
/// HTTP/2 header compression).
fn sensitive(v: String) -> Option<HeaderValue> {
    let mut h = HeaderValue::from_str(&v).ok()?;
    h.set_sensitive(true);
    Some(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_parse() {
        assert_eq!(
            parse_challenge("Basic realm=\"Registry Realm\""),
            Some(Challenge::Basic)
        );
        assert_eq!(
            parse_challenge(
                "Bearer realm=\"https://auth.example/token\",service=\"registry.example\",scope=\"repository:ns/a-provider:pull,push\",error=\"insufficient_scope\""
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.example/token".into(),
                service: Some("registry.example".into()),
                scope: Some("repository:ns/a-provider:pull,push".into()),
                insufficient_scope: true,
            })
        );
        assert_eq!(parse_challenge("Negotiate x"), None);
        assert_eq!(parse_challenge("Bearer service=\"x\""), None);
    }

    #[test]
    fn credentials_file_formats_and_debug() {
        match Credentials::parse("\n  bob:pa:ss  \n") {
            Some(Credentials::Basic { user, password }) => {
                assert_eq!((user.as_str(), password.as_str()), ("bob", "pa:ss"))
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            Credentials::parse("abc.def.ghi"),
            Some(Credentials::Token(t)) if t == "abc.def.ghi"
        ));
        assert!(Credentials::parse("\n \n").is_none());
        let shown = format!("{:?}", Credentials::parse("robot:s3cr3t-pass").unwrap());
        assert_eq!(shown, "Basic(robot:<redacted>)");
        let shown = format!("{:?}", Credentials::parse("tok3n").unwrap());
        assert_eq!(shown, "Token(<redacted>)");
    }

    #[test]
    fn basic_header_is_standard_base64_and_sensitive() {
        let a = Auth::new(Credentials::parse("bob:pa:ss"));
        assert!(a.header_for("x").is_none(), "Basic only after a challenge");
        *a.basic.lock() = true;
        let h = a.header_for("x").unwrap();
        assert!(h.is_sensitive());
        assert_eq!(h.to_str().unwrap(), "Basic Ym9iOnBhOnNz");
    }

    #[test]
    fn the_realm_rule() {
        let u = |s: &str| Url::parse(s).unwrap();
        let base = u("http://127.0.0.1:5000/");
        assert!(may_send_credentials(
            &base,
            &u("http://127.0.0.1:5000/token")
        ));
        assert!(may_send_credentials(
            &base,
            &u("http://127.0.0.1:5001/token")
        ));
        assert!(may_send_credentials(
            &base,
            &u("https://auth.example/token")
        ));
        assert!(!may_send_credentials(
            &base,
            &u("http://auth.example/token")
        ));
        let remote = u("https://reg.example/");
        assert!(!may_send_credentials(
            &remote,
            &u("http://reg.example:81/t")
        ));
        assert!(!may_send_credentials(&remote, &u("http://127.0.0.1/t")));
    }
}

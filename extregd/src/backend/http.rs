//! HTTP pieces both remote backends (Gitea, OCI) share: bounded body reads,
//! `Retry-After`, secret scrubbing, and the classification of transport and
//! status errors into [`BackendError`].
//!
//! **Every body read from an upstream is bounded in bytes**, whether or not
//! a `Content-Length` was announced: [`read_limited`] stops at the limit and
//! fails, so a chunked answer of hundreds of megabytes costs at most the
//! limit in memory.

use super::{root_cause, BackendError};
use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use std::time::Duration;

/// Largest error body read to quote the upstream's message.
pub const MAX_ERROR_BODY: usize = 64 << 10;
/// Longest `Retry-After` honoured; longer waits are cut to this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);
/// Characters of upstream text quoted in an error.
const QUOTED_CHARS: usize = 300;
/// Tokens the daemon was issued, remembered to scrub them from texts.
const MAX_ISSUED: usize = 64;

/// Why a bounded read failed.
#[derive(Debug)]
pub enum ReadError {
    TooLarge(usize),
    Transport(reqwest::Error),
}

/// Reads a whole body, failing once it exceeds `limit` bytes (announced or
/// not). Memory used is at most `limit`.
pub async fn read_limited(mut resp: reqwest::Response, limit: usize) -> Result<Bytes, ReadError> {
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        return Err(ReadError::TooLarge(limit));
    }
    let hint = resp.content_length().unwrap_or(0).min(limit as u64) as usize;
    let mut buf = BytesMut::with_capacity(hint.min(1 << 20));
    while let Some(chunk) = resp.chunk().await.map_err(ReadError::Transport)? {
        if buf.len() + chunk.len() > limit {
            return Err(ReadError::TooLarge(limit));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// `Retry-After` as a wait, in delta-seconds or as an HTTP date, clamped to
/// [`MAX_RETRY_AFTER`]; `None` when absent or unreadable.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    let wait = match v.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => {
            let at = httpdate::parse_http_date(v).ok()?;
            at.duration_since(std::time::SystemTime::now())
                .unwrap_or(Duration::ZERO)
        }
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

/// Secrets that must never appear in a text we quote from an upstream: the
/// configured ones and the tokens the upstream issued to us.
#[derive(Default)]
pub struct Secrets {
    configured: Vec<String>,
    issued: Mutex<Vec<String>>,
}

impl Secrets {
    pub fn new(configured: impl IntoIterator<Item = String>) -> Secrets {
        Secrets {
            configured: configured.into_iter().filter(|s| s.len() >= 4).collect(),
            issued: Mutex::new(Vec::new()),
        }
    }

    /// Remembers a token the upstream issued (the newest [`MAX_ISSUED`]).
    pub fn issued(&self, token: &str) {
        if token.len() < 4 {
            return;
        }
        let mut v = self.issued.lock();
        if v.iter().any(|t| t == token) {
            return;
        }
        if v.len() >= MAX_ISSUED {
            v.remove(0);
        }
        v.push(token.to_string());
    }

    /// `text` with every secret replaced, then cut to a quotable length
    /// (replacing first, so a secret cut in half cannot leak its start).
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.to_string();
        for s in self.configured.iter().chain(self.issued.lock().iter()) {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), "<redacted>");
            }
        }
        out.chars()
            .take(QUOTED_CHARS)
            .filter(|c| !c.is_control() || *c == ' ')
            .collect()
    }
}

/// RFC 3986's unreserved characters stay, every other byte is `%XX`.
const UNRESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes one path segment or query value (everything but the
/// unreserved characters).
pub fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, UNRESERVED).to_string()
}

/// One upstream as its errors name it: its secrets, how it is shown (no
/// user information), the backend's name and its API timeout. The methods
/// are the free functions below with these filled in.
pub struct Upstream {
    pub secrets: Secrets,
    /// The upstream as shown in messages (`scheme://host[:port]`).
    pub shown: String,
    /// `oci`, `gitea`.
    pub backend: &'static str,
    pub timeout_secs: u64,
}

impl Upstream {
    /// `text` without secrets, cut to a quotable length.
    pub fn scrub(&self, text: &str) -> String {
        self.secrets.scrub(text)
    }

    /// The overall timeout of one API request.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs)
    }

    /// A transport failure (connect, timeout, reset) as a backend error
    /// naming the upstream as shown (without credentials), never a URL.
    pub fn transport_error(&self, e: reqwest::Error, what: &str) -> BackendError {
        if e.is_timeout() {
            return BackendError::Timeout(self.timeout_secs);
        }
        let e = e.without_url();
        let cause = self.secrets.scrub(&root_cause(&e));
        if e.is_connect() {
            BackendError::Unreachable(format!("cannot connect to {}: {cause}", self.shown))
        } else {
            let backend = self.backend;
            BackendError::Upstream(format!("{backend} request for {what} failed: {cause}"))
        }
    }

    /// A bounded read's failure as a backend error.
    pub fn read_error(&self, e: ReadError, what: &str) -> BackendError {
        match e {
            ReadError::TooLarge(limit) => BackendError::Upstream(format!(
                "{what} from {} is larger than {limit} bytes; refused",
                self.shown
            )),
            ReadError::Transport(e) => self.transport_error(e, what),
        }
    }
}

/// An error status as a [`BackendError`]: **the one place where status
/// codes are classified**. `who` names the upstream in messages ("the
/// registry", "gitea"), `detail` is its own (scrubbed) explanation, and
/// `auth` words a 401 or 403 for this upstream. 404 is `NotFound`, 429
/// `RateLimited` (with its bounded `Retry-After`), anything else a
/// `Status` carrying the code.
pub fn status_error(
    status: StatusCode,
    retry: Option<Duration>,
    who: &str,
    what: &str,
    detail: &str,
    auth: impl FnOnce(StatusCode) -> String,
) -> BackendError {
    match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => BackendError::Auth(auth(status)),
        StatusCode::NOT_FOUND => BackendError::NotFound(format!("{what} (404){detail}")),
        StatusCode::TOO_MANY_REQUESTS => BackendError::RateLimited(retry.map(|d| d.as_secs())),
        s => BackendError::Status {
            code: s.as_u16(),
            message: format!("{who} answered {} for {what}{detail}", s.as_u16()),
        },
    }
}

/// The body of an error answer, bounded; empty when unreadable.
pub async fn error_body(resp: reqwest::Response) -> Bytes {
    read_limited(resp, MAX_ERROR_BODY).await.unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enc_keeps_only_unreserved_characters() {
        assert_eq!(enc("a-Z_0.9~"), "a-Z_0.9~");
        assert_eq!(
            enc("my org/re po?&=#%"),
            "my%20org%2Fre%20po%3F%26%3D%23%25"
        );
        assert_eq!(enc("ünï"), "%C3%BCn%C3%AF");
    }
    use reqwest::header::{HeaderValue, RETRY_AFTER};

    #[test]
    fn retry_after_is_parsed_and_clamped() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(RETRY_AFTER, HeaderValue::from_static("3"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        h.insert(
            RETRY_AFTER,
            HeaderValue::from_static("18446744073709551615"),
        );
        assert_eq!(retry_after(&h), Some(MAX_RETRY_AFTER));
        h.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
        h.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn statuses_are_classified_by_code() {
        let auth = |s: StatusCode| format!("refused ({})", s.as_u16());
        let e = |code: u16| {
            status_error(
                StatusCode::from_u16(code).unwrap(),
                Some(Duration::from_secs(7)),
                "the registry",
                "tags of x",
                ": detail",
                auth,
            )
        };
        assert_eq!(e(401), BackendError::Auth("refused (401)".into()));
        assert_eq!(e(403), BackendError::Auth("refused (403)".into()));
        assert!(matches!(e(404), BackendError::NotFound(_)));
        assert_eq!(e(429), BackendError::RateLimited(Some(7)));
        assert_eq!(
            e(405),
            BackendError::Status {
                code: 405,
                message: "the registry answered 405 for tags of x: detail".into()
            }
        );
        assert!(matches!(e(500), BackendError::Status { code: 500, .. }));
    }

    #[test]
    fn scrub_removes_configured_and_issued_secrets_before_cutting() {
        let s = Secrets::new(["hunter22".to_string()]);
        s.issued("tok-abcdef");
        let text = format!("{}hunter22 and tok-abcdef", "x".repeat(295));
        let out = s.scrub(&text);
        assert!(!out.contains("hunt"), "{out}");
        assert!(!out.contains("tok-abc"), "{out}");
        assert!(s.scrub("a\nb\x1b[31m").chars().all(|c| !c.is_control()));
    }
}

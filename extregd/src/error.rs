//! The one error type handlers return, and the one place it becomes an HTTP
//! answer: the seed's JSON body with the status of its [`ErrorKind`].

use crate::backend::BackendError;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use extreg_shared::{ErrorBody, ErrorKind, Source, ValidationError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
    pub details: Option<String>,
    /// Seconds for `Retry-After` (429 and 503 answers), when the cause
    /// said (an upstream's own `Retry-After`, bounded); else
    /// [`Error::retry_after_seconds`] picks the kind's default.
    pub retry_after: Option<u64>,
}

/// `Retry-After` of a 429 whose upstream named no delay.
pub const DEFAULT_RATE_LIMIT_RETRY_AFTER: u64 = 10;
/// `Retry-After` of a 503 (connection limit): slots free up quickly.
pub const DEFAULT_UNAVAILABLE_RETRY_AFTER: u64 = 1;
/// Upper bound on any `Retry-After` we send, whatever the upstream said.
pub const MAX_RETRY_AFTER: u64 = 3600;

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            details: None,
            retry_after: None,
        }
    }

    /// Sets the `Retry-After` seconds (clamped to [`MAX_RETRY_AFTER`]).
    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds.min(MAX_RETRY_AFTER));
        self
    }

    /// The `Retry-After` this error is answered with: the one place it is
    /// decided. 429 and 503 always carry one (the cause's, else the kind's
    /// default); other kinds none.
    pub fn retry_after_seconds(&self) -> Option<u64> {
        let default = match self.kind {
            ErrorKind::RateLimit => DEFAULT_RATE_LIMIT_RETRY_AFTER,
            ErrorKind::ServiceUnavailable => DEFAULT_UNAVAILABLE_RETRY_AFTER,
            _ => return None,
        };
        Some(self.retry_after.unwrap_or(default).min(MAX_RETRY_AFTER))
    }

    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = message.into();
        self
    }

    pub fn with_details(mut self, details: impl Into<String>) -> Self {
        self.details = Some(details.into());
        self
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidRequest, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InternalError, message)
    }

    /// A backend failure, named by its source. Backend messages are built
    /// without credentials (see `BackendError`), so they can be shown.
    pub fn backend(source: Source, e: &BackendError) -> Self {
        let (kind, message) = match e {
            BackendError::NotFound(_) => (
                ErrorKind::NotFound,
                format!("not found in the {source} backend"),
            ),
            BackendError::Auth(_) => (
                ErrorKind::AuthError,
                format!("the {source} backend rejected the configured credentials"),
            ),
            BackendError::RateLimited(_) => (
                ErrorKind::RateLimit,
                format!("the {source} backend is rate limiting requests; retry later"),
            ),
            BackendError::Timeout(_) => (
                ErrorKind::BackendTimeout,
                format!("the {source} backend did not answer in time"),
            ),
            BackendError::Integrity { .. } => (
                ErrorKind::IntegrityError,
                format!("the artifact from the {source} backend failed digest verification"),
            ),
            _ => (
                ErrorKind::BackendError,
                format!("the {source} backend failed"),
            ),
        };
        let mut err = Error::new(kind, message).with_details(format!("{source}: {e}"));
        if let BackendError::RateLimited(secs) = e {
            err.retry_after = *secs;
        }
        err
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: self.kind.code().to_string(),
            message: self.message.clone(),
            details: self.details.clone(),
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind.code(), self.message)?;
        if let Some(d) = &self.details {
            write!(f, " ({d})")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

impl From<ValidationError> for Error {
    fn from(e: ValidationError) -> Self {
        let kind = match e {
            ValidationError::EmptyVersion
            | ValidationError::VersionTooLong(_)
            | ValidationError::BadVersion { .. } => ErrorKind::InvalidVersion,
            _ => ErrorKind::InvalidName,
        };
        Error::new(kind, e.to_string())
    }
}

impl From<extreg_shared::ConstraintError> for Error {
    fn from(e: extreg_shared::ConstraintError) -> Self {
        Error::new(ErrorKind::InvalidVersion, e.to_string())
    }
}

impl From<extreg_shared::types::InvalidType> for Error {
    fn from(e: extreg_shared::types::InvalidType) -> Self {
        let shown: String =
            e.0.chars()
                .take(64)
                .flat_map(char::escape_default)
                .collect();
        Error::new(
            ErrorKind::InvalidType,
            format!(
                "invalid extension type '{shown}': expected one of provider, taskserv, cluster"
            ),
        )
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.kind.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status.is_server_error() {
            tracing::warn!(error = %self, "request failed");
        }
        let body = serde_json::to_vec(&self.body()).unwrap_or_default();
        let mut resp = (status, body).into_response();
        resp.headers_mut().insert(
            axum::http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(secs) = self.retry_after_seconds() {
            resp.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

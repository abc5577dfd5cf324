//! The daemon's one domain error: what the catalogue, the artifact store,
//! the loader and the application layer return. It keeps its kind, the
//! input at fault and its cause; the adapters render it once each:
//! `api::error` as the seed's JSON body with the kind's HTTP status, the
//! socket as a [`Failure`] (kind, message, details, field). **No code
//! decides anything by reading an error's message.**

use crate::backend::BackendError;
use extreg_shared::protocol::Failure;
use extreg_shared::{ErrorBody, ErrorKind, Field, Source, ValidationError};
use std::sync::Arc;

#[derive(Debug, Clone)]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
    pub details: Option<String>,
    /// The input at fault, when one is (the plugin labels that argument).
    pub field: Option<Field>,
    /// The lower error this one reports, kept for logs and `source()`.
    pub cause: Option<Arc<dyn std::error::Error + Send + Sync>>,
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
            field: None,
            cause: None,
            retry_after: None,
        }
    }

    /// Names the input at fault.
    pub fn with_field(mut self, field: Field) -> Self {
        self.field = Some(field);
        self
    }

    /// Keeps the lower error this one reports.
    pub fn with_cause(mut self, cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.cause = Some(Arc::new(cause));
        self
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
        let mut err = Error::new(kind, message)
            .with_details(format!("{source}: {e}"))
            .with_cause(e.clone());
        if let BackendError::RateLimited(secs) = e {
            err.retry_after = *secs;
        }
        err
    }

    /// The socket's rendering (see `ipc`).
    pub fn failure(&self) -> Failure {
        Failure {
            kind: self.kind.code().to_string(),
            message: self.message.clone(),
            details: self.details.clone(),
            field: self.field,
        }
    }

    /// The JSON body, for HTTP (see `api::error`) and the handshake.
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

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause
            .as_deref()
            .map(|c| c as &(dyn std::error::Error + 'static))
    }
}

/// Equal when what a caller sees is equal (the cause is not compared).
impl PartialEq for Error {
    fn eq(&self, other: &Self) -> bool {
        (
            self.kind,
            &self.message,
            &self.details,
            self.field,
            self.retry_after,
        ) == (
            other.kind,
            &other.message,
            &other.details,
            other.field,
            other.retry_after,
        )
    }
}

impl Eq for Error {}

impl From<ValidationError> for Error {
    fn from(e: ValidationError) -> Self {
        let (kind, field) = match e {
            ValidationError::EmptyVersion
            | ValidationError::VersionTooLong(_)
            | ValidationError::BadVersion { .. } => (ErrorKind::InvalidVersion, Field::Version),
            _ => (ErrorKind::InvalidName, Field::Name),
        };
        Error::new(kind, e.to_string())
            .with_field(field)
            .with_cause(e)
    }
}

impl From<extreg_shared::ConstraintError> for Error {
    fn from(e: extreg_shared::ConstraintError) -> Self {
        Error::new(ErrorKind::InvalidVersion, e.to_string())
            .with_field(Field::Version)
            .with_cause(e)
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
        .with_field(Field::Type)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_input_at_fault_and_the_cause_survive_to_the_socket() {
        let e: Error = extreg_shared::parse_version("1.x").unwrap_err().into();
        assert_eq!(e.kind, ErrorKind::InvalidVersion);
        assert_eq!(e.failure().field, Some(Field::Version));
        assert!(std::error::Error::source(&e).is_some());
        let e: Error = extreg_shared::validate_name("../etc").unwrap_err().into();
        assert_eq!(e.failure().field, Some(Field::Name));
        let b = Error::backend(Source::Oci, &BackendError::Timeout(5));
        assert_eq!(b.kind, ErrorKind::BackendTimeout);
        let cause = std::error::Error::source(&b).unwrap();
        assert!(cause.downcast_ref::<BackendError>().is_some());
        assert_eq!(b.failure().kind, "backend_timeout");
    }
}

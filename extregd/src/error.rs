//! The one error type handlers return, and the one place it becomes an HTTP
//! answer: the seed's JSON body with the status of its [`ErrorKind`].

use crate::backend::BackendError;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use extreg_shared::{ErrorBody, ErrorKind, Source, ValidationError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub kind: ErrorKind,
    pub message: String,
    pub details: Option<String>,
}

impl ApiError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ApiError {
            kind,
            message: message.into(),
            details: None,
        }
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
            BackendError::RateLimited => (
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
        ApiError::new(kind, message).with_details(format!("{source}: {e}"))
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: self.kind.code().to_string(),
            message: self.message.clone(),
            details: self.details.clone(),
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind.code(), self.message)?;
        if let Some(d) = &self.details {
            write!(f, " ({d})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

impl From<ValidationError> for ApiError {
    fn from(e: ValidationError) -> Self {
        let kind = match e {
            ValidationError::EmptyVersion
            | ValidationError::VersionTooLong(_)
            | ValidationError::BadVersion { .. } => ErrorKind::InvalidVersion,
            _ => ErrorKind::InvalidName,
        };
        ApiError::new(kind, e.to_string())
    }
}

impl From<extreg_shared::ConstraintError> for ApiError {
    fn from(e: extreg_shared::ConstraintError) -> Self {
        ApiError::new(ErrorKind::InvalidVersion, e.to_string())
    }
}

impl From<extreg_shared::types::InvalidType> for ApiError {
    fn from(e: extreg_shared::types::InvalidType) -> Self {
        let shown: String =
            e.0.chars()
                .take(64)
                .flat_map(char::escape_default)
                .collect();
        ApiError::new(
            ErrorKind::InvalidType,
            format!(
                "invalid extension type '{shown}': expected one of provider, taskserv, cluster"
            ),
        )
    }
}

impl IntoResponse for ApiError {
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
        resp
    }
}

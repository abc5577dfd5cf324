//! The JSON error body every failing `/api/v1` request answers with, and the
//! catalogue of error kinds with their HTTP status.

use serde::{Deserialize, Serialize};

/// `{"error": kind, "message": text, "details": optional text}`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error kind (see the table of kinds and statuses).
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::error_code))]
    pub error: String,
    /// What went wrong, for people.
    pub message: String,
    /// More about it: available versions, the failing backend and cause.
    #[serde(default)]
    pub details: Option<String>,
}

/// The input at fault in a failed request: the query parameter over HTTP,
/// the argument or flag in Nushell. Carried on the socket (see
/// [`crate::protocol::Failure`]) so the plugin labels the right argument
/// without reading the message. New fields go at the end (wire order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Field {
    /// The extension's (or package's) name.
    Name,
    /// A version or a version constraint.
    Version,
    /// The extension type.
    Type,
    /// The backend asked for (`source`).
    Source,
    /// Other request parameters (`q`, `limit`, `offset`, ...).
    Query,
    /// A folder or file given by the caller.
    Path,
    /// Another registry or namespace named by the caller.
    Registry,
    /// An age or a duration (`--older-than`, `--days`).
    Age,
    /// An OCI namespace of generic artifacts (`ext kcl --namespace`, the
    /// `namespace` of `POST /api/v1/oci/artifacts`).
    Namespace,
}

impl Field {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Name => "name",
            Self::Version => "version",
            Self::Type => "type",
            Self::Source => "source",
            Self::Query => "query",
            Self::Path => "path",
            Self::Registry => "registry",
            Self::Age => "age",
            Self::Namespace => "namespace",
        }
    }
}

/// Every error kind the API can answer with. The seed names the first seven;
/// the rest cover inputs and failures the seed leaves open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    NotFound,
    InvalidType,
    InvalidVersion,
    AuthError,
    RateLimit,
    ConfigError,
    InternalError,
    /// A name that is empty, too long, or holds `/`, `..`, NUL or other
    /// characters outside `[A-Za-z0-9._-]`.
    InvalidName,
    /// A malformed or out-of-range query parameter (`limit`, `offset`,
    /// `source`, a missing `q`).
    InvalidRequest,
    /// A `Range` header that does not fit the artifact.
    RangeNotSatisfiable,
    /// A backend answered with an error or could not be reached.
    BackendError,
    /// A backend did not answer in time.
    BackendTimeout,
    /// The artifact's bytes did not match the digest the backend announced.
    IntegrityError,
    /// Local socket only: the peer speaks another protocol version.
    VersionMismatch,
    /// An artifact that is not a safe, well-formed extension archive.
    InvalidArchive,
    /// The daemon is at its connection limit (or stopping); retry later.
    ServiceUnavailable,
    /// The artifact cache cannot hold the artifact: over its size cap, or
    /// the disk is full. Nothing was cached.
    InsufficientStorage,
    /// Dependencies that cannot be satisfied together, or form a cycle.
    DependencyError,
    /// The version asked for is flagged: its artifact declares another
    /// version or name than its tag (see `Extension::mismatch`).
    ArtifactMismatch,
}

impl ErrorKind {
    pub fn code(self) -> &'static str {
        match self {
            Self::NotFound => "not_found",
            Self::InvalidType => "invalid_type",
            Self::InvalidVersion => "invalid_version",
            Self::AuthError => "auth_error",
            Self::RateLimit => "rate_limit",
            Self::ConfigError => "config_error",
            Self::InternalError => "internal_error",
            Self::InvalidName => "invalid_name",
            Self::InvalidRequest => "invalid_request",
            Self::RangeNotSatisfiable => "range_not_satisfiable",
            Self::BackendError => "backend_error",
            Self::BackendTimeout => "backend_timeout",
            Self::IntegrityError => "integrity_error",
            Self::VersionMismatch => "version_mismatch",
            Self::InvalidArchive => "invalid_archive",
            Self::ServiceUnavailable => "service_unavailable",
            Self::InsufficientStorage => "insufficient_storage",
            Self::DependencyError => "dependency_error",
            Self::ArtifactMismatch => "artifact_mismatch",
        }
    }

    pub fn status(self) -> u16 {
        match self {
            Self::NotFound => 404,
            Self::InvalidType
            | Self::InvalidVersion
            | Self::InvalidName
            | Self::InvalidRequest
            | Self::VersionMismatch => 400,
            Self::AuthError => 401,
            Self::InvalidArchive => 422,
            Self::DependencyError | Self::ArtifactMismatch => 409,
            Self::RangeNotSatisfiable => 416,
            Self::RateLimit => 429,
            Self::ConfigError | Self::InternalError => 500,
            Self::BackendError | Self::IntegrityError => 502,
            Self::BackendTimeout => 504,
            Self::ServiceUnavailable => 503,
            Self::InsufficientStorage => 507,
        }
    }

    pub fn from_code(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.code() == code)
    }

    pub const ALL: [ErrorKind; 19] = [
        Self::NotFound,
        Self::InvalidType,
        Self::InvalidVersion,
        Self::AuthError,
        Self::RateLimit,
        Self::ConfigError,
        Self::InternalError,
        Self::InvalidName,
        Self::InvalidRequest,
        Self::RangeNotSatisfiable,
        Self::BackendError,
        Self::BackendTimeout,
        Self::IntegrityError,
        Self::VersionMismatch,
        Self::InvalidArchive,
        Self::ServiceUnavailable,
        Self::InsufficientStorage,
        Self::DependencyError,
        Self::ArtifactMismatch,
    ];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for k in ErrorKind::ALL {
            assert!(seen.insert(k.code()));
            assert_eq!(ErrorKind::from_code(k.code()), Some(k));
            assert!((400..600).contains(&k.status()));
        }
    }

    #[test]
    fn details_is_null_when_absent() {
        let b = ErrorBody {
            error: "not_found".into(),
            message: "x".into(),
            details: None,
        };
        assert_eq!(
            serde_json::to_string(&b).unwrap(),
            r#"{"error":"not_found","message":"x","details":null}"#
        );
    }
}

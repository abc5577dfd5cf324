//! Hand-built pieces of the OpenAPI schemas of the wire types (feature
//! `openapi`): the string fields whose values are a closed set. Built from
//! the same constants the code uses, so the document cannot drift.

use crate::ErrorKind;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;

/// `ErrorBody.error`: one of the codes of [`ErrorKind`] that HTTP answers
/// carry (`version_mismatch`, `invalid_archive` and `dependency_error` exist
/// only on the local socket).
pub fn error_code() -> impl Into<RefOr<Schema>> {
    let codes: Vec<&str> = ErrorKind::ALL
        .iter()
        .filter(|k| {
            !matches!(
                k,
                ErrorKind::VersionMismatch | ErrorKind::InvalidArchive | ErrorKind::DependencyError
            )
        })
        .map(|k| k.code())
        .collect();
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some("The error kind; its HTTP status is fixed per kind."))
        .enum_values(Some(codes))
}

/// `HealthResponse.status`.
pub fn health_status() -> impl Into<RefOr<Schema>> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(
            "`healthy` when every enabled backend answers, else `degraded`.",
        ))
        .enum_values(Some(["healthy", "degraded"]))
}

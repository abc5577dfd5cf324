//! `POST /api/v1/oci/artifacts` (seed 003): the generic OCI artifacts (KCL
//! packages) of one configured namespace. The body names the namespace;
//! the answer is the seed's `{"success": true, "data": [...]}`. It only
//! reads: the rules (which namespaces, caching) are the application's
//! ([`crate::app::App::oci_artifacts`]).

use super::openapi::{BackendFailures, NamespaceRefused};
use super::SharedState;
use crate::error::Error;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use extreg_shared::artifact::{ArtifactListing, ArtifactQuery};
use extreg_shared::{ErrorBody, Field};

/// Largest request body read (a namespace is at most 128 bytes).
pub const MAX_BODY: usize = 4096;

/// The generic artifacts (KCL packages and the like) of one namespace:
/// every tag of every repository directly under it, sorted by name then
/// version. Only the namespaces in `[oci] artifact_namespaces` (default
/// `kcl`) can be read; others answer 404 `not_found`, a malformed one 400.
/// Answers are cached for `[cache] ttl_seconds`.
#[utoipa::path(post, path = "/api/v1/oci/artifacts", tag = "oci",
    operation_id = "list_oci_artifacts",
    request_body(content = ArtifactQuery, content_type = "application/json",
        description = "The namespace to list (at most 4096 bytes of JSON)"),
    responses(
        (status = 200, description = "The artifacts of the namespace", body = ArtifactListing),
        (status = 400, description = "`invalid_request`: the body is not JSON of this shape \
(one `namespace` string, no other field), or the namespace breaks the OCI grammar", body = ErrorBody),
        NamespaceRefused, BackendFailures,
    ))]
pub async fn list(
    State(st): State<SharedState>,
    body: axum::body::Body,
) -> Result<Response, Error> {
    // Read bounded: a larger body is refused with the JSON error body.
    let body: Bytes = axum::body::to_bytes(body, MAX_BODY).await.map_err(|_| {
        Error::invalid_request(format!(
            "the request body is over {MAX_BODY} bytes (or could not be read)"
        ))
    })?;
    let q: ArtifactQuery = serde_json::from_slice(&body).map_err(|e| {
        Error::invalid_request(format!(
            "the body must be JSON like {{\"namespace\": \"kcl\"}}: {e}"
        ))
        .with_field(Field::Namespace)
    })?;
    let data = st.oci_artifacts(&q.namespace).await?;
    let listing = ArtifactListing {
        success: true,
        data: data.as_ref().clone(),
    };
    let bytes =
        serde_json::to_vec(&listing).map_err(|e| Error::internal(format!("serializing: {e}")))?;
    let mut r = (StatusCode::OK, bytes).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(r)
}

/// Any other method on this route: it takes only `POST`.
pub async fn method_not_allowed(method: axum::http::Method) -> Response {
    let mut r = Error::invalid_request(format!(
        "method {method} is not allowed here; this endpoint takes POST with {{\"namespace\": \"...\"}}"
    ))
    .into_response();
    *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("POST"));
    r
}

//! `GET /extensions/{type}/{name}/{version}`: the artifact bytes, streamed
//! from the on-disk cache with `Content-Length`, `ETag` (the sha256 digest),
//! `If-None-Match` and single-range `Range` support.

use super::input::ExtPath;
use super::SharedState;
use crate::artifacts::{Delivery, LiveDownload};
use crate::error::Error;
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use extreg_shared::ErrorKind;

/// The artifact (a tar.gz), verified against its digest before the last
/// byte is sent. Honours `If-None-Match` (304) and one `Range` (206/416).
#[utoipa::path(get, path = "/api/v1/extensions/{type}/{name}/{version}", tag = "extensions",
    params(super::openapi::DownloadPath, super::openapi::DownloadHeaders),
    responses(
        (status = 200, description = "The whole artifact", content_type = "application/octet-stream",
            body = super::openapi::Tarball, headers(
                ("ETag" = String, description = "`\"sha256:<hex>\"` of the bytes"),
                ("Content-Length" = u64, description = "Size in bytes"),
                ("Content-Disposition" = String, description = "`attachment; filename=\"{name}-{version}.tar.gz\"`"),
                ("Accept-Ranges" = String, description = "`bytes`"),
                ("X-Extregd-Cache" = String, description = "`hit` when served from the artifact cache, else `miss`"),
            )),
        (status = 206, description = "The requested range", content_type = "application/octet-stream",
            body = super::openapi::Tarball, headers(
                ("Content-Range" = String, description = "`bytes <first>-<last>/<size>`"),
                ("ETag" = String, description = "`\"sha256:<hex>\"` of the whole artifact"),
                ("Content-Length" = u64, description = "Size of the range"),
                ("Content-Disposition" = String, description = "As for 200"),
                ("Accept-Ranges" = String, description = "`bytes`"),
            )),
        (status = 304, description = "`If-None-Match` names the current ETag", headers(
                ("ETag" = String, description = "`\"sha256:<hex>\"`"),
            )),
        (status = 416, description = "`range_not_satisfiable`: the range lies outside the artifact",
            body = extreg_shared::ErrorBody, headers(
                ("Content-Range" = String, description = "`bytes */<size>`"),
            )),
        super::openapi::BadInput, super::openapi::NotFound, super::openapi::Mismatched,
        super::openapi::BackendFailures,
    ))]
pub async fn download(
    State(st): State<SharedState>,
    method: Method,
    p: ExtPath,
    headers: HeaderMap,
) -> Result<Response, Error> {
    if method == Method::HEAD {
        if let Some(r) = head_uncached(&st, &p, &headers).await? {
            return Ok(r);
        }
    }
    let version = p.version.clone().unwrap_or_default();
    // A range is a part of the complete artifact: no live streaming then.
    let live_ok = !headers.contains_key(header::RANGE);
    let (entry, delivery) = st
        .catalogue
        .deliver_artifact(p.ext_type, &p.name, &version, live_ok)
        .await?;
    let filename = format!("{}-{}.tar.gz", entry.record.name, entry.record.version);
    let art = match delivery {
        Delivery::Complete(a) => a,
        Delivery::Live(l) => {
            let served = st.metrics.ops.bytes_served.clone();
            return live(l, &filename, &headers, served);
        }
    };
    let etag = format!("\"{}\"", art.digest);
    let mut base = HeaderMap::new();
    base.insert(header::ETAG, hv(&etag)?);
    base.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    base.insert(
        header::CONTENT_DISPOSITION,
        hv(&format!("attachment; filename=\"{filename}\""))?,
    );
    base.insert(
        "x-extregd-cache",
        HeaderValue::from_static(if art.hit { "hit" } else { "miss" }),
    );

    if let Some(inm) = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
    {
        if etag_matches(inm, &art.digest) {
            return Ok((StatusCode::NOT_MODIFIED, base).into_response());
        }
    }

    // RFC 9110: a Range that cannot be parsed (or an unknown unit) is
    // ignored, as is one whose If-Range does not name the current ETag;
    // only a well-formed range outside the artifact is a 416.
    let if_range_ok = headers
        .get(header::IF_RANGE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|ir| ir.trim() == etag);
    let raw_range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .filter(|_| if_range_ok);
    let range = match raw_range {
        None => None,
        Some(r) => match http_range_header::parse_range_header(r)
            .and_then(|parsed| parsed.validate(art.size))
        {
            Ok(ranges) if ranges.len() == 1 => Some(ranges[0].clone()),
            // Several ranges: answering with the whole body is allowed.
            Ok(_) => None,
            Err(e) if !matches!(e, http_range_header::RangeUnsatisfiableError::Unsatisfiable) => {
                None
            }
            Err(_) => {
                let mut resp = Error::new(
                    ErrorKind::RangeNotSatisfiable,
                    format!(
                        "range '{}' does not fit {} bytes",
                        super::input::shown(r),
                        art.size
                    ),
                )
                .into_response();
                resp.headers_mut()
                    .insert(header::CONTENT_RANGE, hv(&format!("bytes */{}", art.size))?);
                return Ok(resp);
            }
        },
    };

    let (status, start, len) = match &range {
        Some(r) => (
            StatusCode::PARTIAL_CONTENT,
            *r.start(),
            r.end() - r.start() + 1,
        ),
        None => (StatusCode::OK, 0, art.size),
    };
    // The handle's body policy: a range as it is, a whole body as it is
    // when known good, else hashed while sent with its last chunk held back.
    let size = art.size;
    let body = art.body(range.as_ref().map(|_| (start, len)))?;
    let body = Body::from_stream(st.metrics.ops.count_served(body));
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.extend(base);
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if let Some(r) = range {
        h.insert(
            header::CONTENT_RANGE,
            hv(&format!("bytes {}-{}/{}", r.start(), r.end(), size))?,
        );
    }
    Ok(resp)
}

/// A download in progress, sent as it arrives.
fn live(
    l: LiveDownload,
    filename: &str,
    headers: &HeaderMap,
    served: prometheus::IntCounter,
) -> Result<Response, Error> {
    let mut h = HeaderMap::new();
    if let Some(d) = &l.digest {
        let etag = format!("\"{d}\"");
        if let Some(inm) = headers
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
        {
            if etag_matches(inm, d) {
                h.insert(header::ETAG, hv(&etag)?);
                return Ok((StatusCode::NOT_MODIFIED, h).into_response());
            }
        }
        h.insert(header::ETAG, hv(&etag)?);
    }
    uncached_headers(&mut h, l.size, filename)?;
    let stream = crate::metrics_ops::count_bytes(l.body(), served);
    let mut resp = Response::new(Body::from_stream(stream));
    resp.headers_mut().extend(h);
    Ok(resp)
}

/// `HEAD` of an artifact the cache does not hold: answered from the
/// version's record (size, and the checksum as `ETag` when the backend
/// announced one) without fetching the blob. `None` when it is cached:
/// the cached path answers exactly as `GET` would, without a fetch.
async fn head_uncached(
    st: &SharedState,
    p: &ExtPath,
    headers: &HeaderMap,
) -> Result<Option<Response>, Error> {
    let version = p.version.clone().unwrap_or_default();
    let entry = st
        .catalogue
        .version_entry(p.ext_type, &p.name, &version)
        .await?;
    if st.catalogue.artifacts().is_cached(&entry) {
        return Ok(None);
    }
    let rec = &entry.record;
    let mut h = HeaderMap::new();
    if let Some(d) = &rec.checksum {
        let etag = format!("\"{d}\"");
        h.insert(header::ETAG, hv(&etag)?);
        if let Some(inm) = headers
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
        {
            if etag_matches(inm, d) {
                return Ok(Some((StatusCode::NOT_MODIFIED, h).into_response()));
            }
        }
    }
    let filename = format!("{}-{}.tar.gz", rec.name, rec.version);
    uncached_headers(&mut h, rec.size, &filename)?;
    let mut resp = Response::new(Body::empty());
    resp.headers_mut().extend(h);
    Ok(Some(resp))
}

/// The headers of an artifact answered before the cache holds it (a live
/// download or a `HEAD`): its size when known, type, file name, a miss.
fn uncached_headers(h: &mut HeaderMap, size: Option<u64>, filename: &str) -> Result<(), Error> {
    if let Some(n) = size {
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
    }
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(
        header::CONTENT_DISPOSITION,
        hv(&format!("attachment; filename=\"{filename}\""))?,
    );
    h.insert("x-extregd-cache", HeaderValue::from_static("miss"));
    Ok(())
}

fn hv(s: &str) -> Result<HeaderValue, Error> {
    HeaderValue::from_str(s).map_err(|_| Error::internal("header value"))
}

/// `If-None-Match` against our strong ETag: `*`, or any listed tag (weak or
/// strong, quoted or not) equal to the digest.
fn etag_matches(header: &str, digest: &str) -> bool {
    header
        .split(',')
        .map(str::trim)
        .any(|t| t == "*" || t.trim_start_matches("W/").trim_matches('"') == digest)
}

#[cfg(test)]
mod tests {
    #[test]
    fn etag_matching() {
        let d = "sha256:ab";
        assert!(super::etag_matches("\"sha256:ab\"", d));
        assert!(super::etag_matches("W/\"x\", \"sha256:ab\"", d));
        assert!(super::etag_matches("*", d));
        assert!(!super::etag_matches("\"sha256:cd\"", d));
    }
}

//! Extractors that turn path and query input into validated values, or into
//! the seed's error body. Nothing unvalidated reaches the registry.

use crate::error::Error;
use axum::extract::{FromRequestParts, Path, Query};
use axum::http::request::Parts;
use extreg_shared::Field;
use extreg_shared::{validate_name, ExtensionType, Source};
use serde::Deserialize;
use std::collections::HashMap;

/// `{type}/{name}` from the path, validated.
pub struct ExtPath {
    pub ext_type: ExtensionType,
    pub name: String,
    /// Present on the download route.
    pub version: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for ExtPath {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(params): Path<HashMap<String, String>> = Path::from_request_parts(parts, state)
            .await
            .map_err(|e| Error::invalid_request(format!("bad path: {}", e.body_text())))?;
        let raw_type = params.get("type").map(String::as_str).unwrap_or_default();
        let ext_type: ExtensionType = raw_type.parse()?;
        let name = params.get("name").cloned().unwrap_or_default();
        validate_name(&name)?;
        let version = params.get("version").cloned();
        if let Some(v) = &version {
            extreg_shared::parse_version(v)?;
        }
        Ok(ExtPath {
            ext_type,
            name,
            version,
        })
    }
}

/// Query parameters, all as text so each gets its own clear message.
#[derive(Debug, Default, Deserialize)]
pub struct RawQuery {
    #[serde(rename = "type")]
    pub ext_type: Option<String>,
    pub source: Option<String>,
    pub limit: Option<String>,
    pub offset: Option<String>,
    pub q: Option<String>,
    pub constraint: Option<String>,
    pub pre: Option<String>,
}

pub struct ApiQuery(pub RawQuery);

impl<S: Send + Sync> FromRequestParts<S> for ApiQuery {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Query(q) = Query::<RawQuery>::from_request_parts(parts, state)
            .await
            .map_err(|e| Error::invalid_request(format!("bad query string: {}", e.body_text())))?;
        Ok(ApiQuery(q))
    }
}

impl RawQuery {
    // A parameter given empty (`type=`) is refused like any other value
    // outside its documented set (the OpenAPI document lists none empty);
    // only `constraint=` means something when empty (the newest stable).

    pub fn ext_type(&self) -> Result<Option<ExtensionType>, Error> {
        match self.ext_type.as_deref() {
            None => Ok(None),
            Some(t) => Ok(Some(t.parse()?)),
        }
    }

    pub fn source(&self) -> Result<Option<Source>, Error> {
        match self.source.as_deref() {
            None => Ok(None),
            Some(s) => s
                .parse()
                .map(Some)
                .map_err(|e: extreg_shared::types::InvalidSource| {
                    Error::invalid_request(e.to_string()).with_field(Field::Source)
                }),
        }
    }

    /// `limit` in `1..=max`, `default` when absent.
    pub fn limit(&self, default: usize, max: usize) -> Result<usize, Error> {
        match self.limit.as_deref() {
            None => Ok(default),
            Some(s) => match s.parse::<usize>() {
                Ok(n) if (1..=max).contains(&n) => Ok(n),
                _ => Err(Error::invalid_request(format!(
                    "limit must be a whole number from 1 to {max}, not '{}'",
                    shown(s)
                ))
                .with_field(Field::Query)),
            },
        }
    }

    /// `pre=true|false` (also 1/0); absent is false.
    pub fn pre(&self) -> Result<bool, Error> {
        match self.pre.as_deref() {
            None | Some("false") | Some("0") => Ok(false),
            Some("true") | Some("1") => Ok(true),
            Some(other) => Err(Error::invalid_request(format!(
                "pre must be true or false, not '{}'",
                shown(other)
            ))
            .with_field(Field::Query)),
        }
    }

    pub fn offset(&self) -> Result<usize, Error> {
        match self.offset.as_deref() {
            None => Ok(0),
            Some(s) => match s.parse::<usize>() {
                Ok(n) if n <= super::handlers::OFFSET_MAX => Ok(n),
                _ => Err(Error::invalid_request(format!(
                    "offset must be a whole number from 0 to {}, not '{}'",
                    super::handlers::OFFSET_MAX,
                    shown(s)
                ))
                .with_field(Field::Query)),
            },
        }
    }
}

/// Input echoed in a message: bounded and with control characters escaped.
pub fn shown(s: &str) -> String {
    s.chars().take(64).flat_map(char::escape_default).collect()
}

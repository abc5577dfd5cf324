//! Generic OCI artifacts — KCL packages and anything else stored under a
//! namespace of the registry that is not an extension — as
//! `POST /api/v1/oci/artifacts` (seed 003) and `ext kcl` show them. Only
//! the namespaces the daemon is configured to read (`[oci]
//! artifact_namespaces`) are ever asked about.

use serde::{Deserialize, Serialize};

/// Longest namespace accepted, in bytes.
pub const MAX_NAMESPACE_LEN: usize = 128;
/// Longest tag accepted (the OCI distribution grammar's bound).
pub const MAX_TAG_LEN: usize = 128;

/// The OCI distribution grammar of a namespace, as a JSON Schema pattern:
/// `/`-separated components `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
pub const NAMESPACE_PATTERN: &str =
    "^[a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*)*$";

/// One tag of one repository under a namespace.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OciArtifact {
    /// The repository below the namespace (`provisioning-core` for
    /// `kcl/provisioning-core`).
    pub name: String,
    /// The tag.
    pub version: String,
    /// The manifest's digest (`sha256:<hex>`).
    pub digest: String,
    /// Bytes of the artifact's layer: what a pull brings.
    pub size: u64,
    /// The manifest's media type.
    pub media_type: String,
    /// `org.opencontainers.image.created` as RFC 3339 UTC; null when the
    /// manifest does not say.
    pub created_at: Option<String>,
    /// The namespace it was listed from.
    pub namespace: String,
    /// The artifact layer's digest: a pull is verified against it.
    pub layer_digest: String,
    /// The layer's media type (`application/vnd.oci.image.layer.v1.tar`
    /// for a KCL package).
    pub layer_media_type: String,
}

/// The body of `POST /api/v1/oci/artifacts`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArtifactQuery {
    /// One of the namespaces configured in `[oci] artifact_namespaces`.
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            max_length = 128,
            pattern = "^[a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*)*$",
            example = "kcl"
        )
    )]
    pub namespace: String,
}

/// The answer of `POST /api/v1/oci/artifacts` (seed 003's envelope).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactListing {
    /// Always true (failures answer with the error body instead).
    pub success: bool,
    /// Every tag of every repository directly under the namespace, sorted
    /// by name then version.
    pub data: Vec<OciArtifact>,
}

/// What `ext kcl pull` returns: the verified artifact in the daemon's
/// cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactPull {
    pub artifact: OciArtifact,
    /// Where the verified layer lies in the daemon's cache.
    pub path: String,
    /// The digest the cached bytes were verified against (the layer's).
    pub digest: String,
    pub size: u64,
    /// True when it was already cached (no registry fetch).
    pub cached: bool,
}

/// Whether `ns` is a namespace by the OCI distribution grammar (no `..`,
/// no empty component, no upper case, at most [`MAX_NAMESPACE_LEN`] bytes).
pub fn validate_namespace(ns: &str) -> Result<(), String> {
    if ns.is_empty() {
        return Err("the namespace is empty".into());
    }
    if ns.len() > MAX_NAMESPACE_LEN {
        return Err(format!(
            "the namespace is {} bytes long; the limit is {MAX_NAMESPACE_LEN}",
            ns.len()
        ));
    }
    if !ns.split('/').all(component) {
        return Err(format!(
            "'{}' is not a namespace: lower-case letters and digits, separated by '.', '_', '__' or dashes, components joined by single '/'",
            ns.chars()
                .take(64)
                .flat_map(char::escape_default)
                .collect::<String>()
        ));
    }
    Ok(())
}

/// One component of a repository name: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
pub fn component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-')) {
            return false;
        }
    }
    true
}

/// Whether `tag` is an OCI tag: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
pub fn valid_tag(tag: &str) -> bool {
    let b = tag.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_TAG_LEN
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_follow_the_distribution_grammar() {
        for ok in ["kcl", "a/b", "team_1/kcl.pkgs", "x--y", "a__b"] {
            assert!(validate_namespace(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "..", "kcl/..", "../kcl", "/kcl", "kcl/", "a//b", "KCL", "a b", "a.-b", "a___b",
            "%2e%2e", "kcl\0",
        ] {
            assert!(validate_namespace(bad).is_err(), "{bad:?}");
        }
        assert!(validate_namespace(&"a".repeat(129)).is_err());
        assert!(validate_namespace(&"a".repeat(128)).is_ok());
    }

    #[test]
    fn tags() {
        for ok in ["1.0.0", "v1", "latest", "_x", "1.0.0-rc.1"] {
            assert!(valid_tag(ok), "{ok}");
        }
        for bad in ["", ".x", "-x", "a/b", "a:b", "a b"] {
            assert!(!valid_tag(bad), "{bad}");
        }
        assert!(!valid_tag(&"a".repeat(129)));
    }
}

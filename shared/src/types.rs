//! REST records (`/api/v1`): field names follow the seed contract exactly.
//! Optional fields are always present (`null` when unknown), as in the
//! seed's health example: the same structs travel over the local socket as
//! postcard, which needs every field.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// The three kinds of extension the provisioning system knows.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExtensionType {
    Provider,
    Taskserv,
    Cluster,
}

/// `ALL`, `as_str`, `Display` and `FromStr` (with its own error type and
/// message) for a closed set of lowercase names.
macro_rules! named_set {
    ($ty:ident, $err:ident, $what:literal, $($variant:ident => $name:literal),+ $(,)?) => {
        impl $ty {
            pub const ALL: [$ty; [$($name),+].len()] = [$(Self::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $name,)+
                }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        #[doc = concat!("Error for a string that names no ", $what, ".")]
        #[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
        #[error("invalid {}: expected one of {}", format_args!(concat!($what, " '{}'"), .0), [$($name),+].join(", "))]
        pub struct $err(pub String);

        impl FromStr for $ty {
            type Err = $err;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($name => Ok(Self::$variant),)+
                    other => Err($err(other.to_string())),
                }
            }
        }
    };
}

named_set!(ExtensionType, InvalidType, "extension type",
    Provider => "provider", Taskserv => "taskserv", Cluster => "cluster");

/// Where an extension (or one version of it) comes from.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Gitea,
    Oci,
    Local,
}

named_set!(Source, InvalidSource, "source", Gitea => "gitea", Oci => "oci", Local => "local");

/// One extension as listed, fetched or searched (`Extension` in the seed).
/// `version` and the per-artifact fields describe the newest stable version
/// when the record stands for the extension as a whole.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Extension {
    pub name: String,
    #[serde(rename = "type")]
    pub ext_type: ExtensionType,
    pub version: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub author: Option<String>,
    #[serde(default)]
    pub repository: Option<String>,
    pub source: Source,
    /// RFC 3339 timestamp, UTC.
    #[serde(default)]
    pub published_at: Option<String>,
    #[serde(default)]
    pub download_url: Option<String>,
    /// `sha256:<hex>` of the artifact.
    #[serde(default)]
    pub checksum: Option<String>,
    #[serde(default)]
    pub size: Option<u64>,
    #[serde(default)]
    pub tags: Vec<String>,
    /// Whether `version` carries a semver pre-release part.
    #[serde(default)]
    pub prerelease: bool,
    /// Served from the local caches because its backend could not be
    /// reached (offline operation).
    #[serde(default)]
    pub stale: bool,
    /// Host tools the extension needs (`extension.yaml` `requires`).
    #[serde(default)]
    pub requires: Vec<String>,
    /// Other extensions it needs (`extension.yaml` `dependencies`:
    /// `[type/]name[@constraint]`).
    #[serde(default)]
    pub dependencies: Vec<String>,
    /// Whether the artifact is signed and the signature was verified.
    #[serde(default)]
    pub signature: SignatureState,
    /// Why this version's artifact is not what its tag says, when it is not
    /// (`tarball declares 3.4.0`, `tarball declares provider/aws 1.0.0`):
    /// the `extension.yaml` inside an artifact pushed without annotations
    /// names another version, name or type. A flagged version is never
    /// picked as the newest or by a constraint, and asking for it by its
    /// exact version is refused (409 `artifact_mismatch`). `null` when the
    /// artifact matches or nothing says otherwise.
    #[serde(default)]
    pub mismatch: Option<String>,
}

/// What is known of an artifact's minisign signature.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignatureState {
    /// The backend holds a signature for the artifact; `None` when the
    /// backend has no way to carry one (local folders).
    #[serde(default)]
    pub signed: Option<bool>,
    /// The cached artifact's signature was verified against a trusted key.
    #[serde(default)]
    pub verified: bool,
    /// The id of the key that made the verified signature (16 hex digits,
    /// as `minisign` prints it).
    #[serde(default)]
    pub key_id: Option<String>,
}

/// One version of an extension (`ExtensionVersion` in the seed), with the
/// source that serves it: when several backends hold the same extension the
/// version list is their union.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtensionVersion {
    pub version: String,
    #[serde(default)]
    pub published_at: Option<String>,
    #[serde(default)]
    pub download_url: Option<String>,
    #[serde(default)]
    pub checksum: Option<String>,
    #[serde(default)]
    pub size: Option<u64>,
    #[serde(default)]
    pub prerelease: bool,
    pub source: Source,
    #[serde(default)]
    pub stale: bool,
    #[serde(default)]
    pub signature: SignatureState,
    /// See [`Extension::mismatch`].
    #[serde(default)]
    pub mismatch: Option<String>,
}

impl From<&Extension> for ExtensionVersion {
    fn from(e: &Extension) -> Self {
        ExtensionVersion {
            version: e.version.clone(),
            published_at: e.published_at.clone(),
            download_url: e.download_url.clone(),
            checksum: e.checksum.clone(),
            size: e.size,
            prerelease: e.prerelease,
            source: e.source,
            stale: e.stale,
            signature: e.signature.clone(),
            mismatch: e.mismatch.clone(),
        }
    }
}

/// `GET /health` answer.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthResponse {
    /// `healthy` when every enabled backend answers, else `degraded`.
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::health_status))]
    pub status: String,
    pub version: String,
    /// Seconds since the daemon started.
    pub uptime: u64,
    /// One entry per backend kind (`gitea`, `oci`, `local`), enabled or not.
    pub backends: BTreeMap<String, BackendStatus>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendStatus {
    pub enabled: bool,
    pub healthy: bool,
    #[serde(default)]
    pub error: Option<String>,
    /// Repositories the backend's last listing skipped because they failed
    /// (a partial backend: the rest is served). At most 20 named.
    #[serde(default)]
    pub skipped: Vec<String>,
}

/// `GET /cache/stats` answer: the seed's four counts, then hit/miss figures
/// per cache and the on-disk artifact cache.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheStats {
    pub list_entries: u64,
    pub metadata_entries: u64,
    pub version_entries: u64,
    pub total_entries: u64,
    pub capacity: u64,
    pub ttl_seconds: u64,
    pub caches: BTreeMap<String, CacheCounters>,
    pub artifacts: ArtifactCacheStats,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheCounters {
    pub enabled: bool,
    pub entries: u64,
    pub hits: u64,
    pub misses: u64,
    /// hits / (hits + misses), 0 when nothing was asked yet.
    pub hit_ratio: f64,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArtifactCacheStats {
    pub entries: u64,
    pub bytes: u64,
    pub hits: u64,
    pub misses: u64,
    pub hit_ratio: f64,
    /// RFC 3339 time of the oldest entry, if any.
    #[serde(default)]
    pub oldest: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_refusals_say_what_is_expected() {
        for t in ExtensionType::ALL {
            assert_eq!(t.as_str().parse::<ExtensionType>(), Ok(t));
            assert_eq!(t.to_string(), t.as_str());
        }
        for s in Source::ALL {
            assert_eq!(s.as_str().parse::<Source>(), Ok(s));
        }
        assert_eq!(
            "widget".parse::<ExtensionType>().unwrap_err().to_string(),
            "invalid extension type 'widget': expected one of provider, taskserv, cluster"
        );
        assert_eq!(
            "s3".parse::<Source>().unwrap_err().to_string(),
            "invalid source 's3': expected one of gitea, oci, local"
        );
    }

    #[test]
    fn extension_json_uses_seed_field_names() {
        let e = Extension {
            name: "aws".into(),
            ext_type: ExtensionType::Provider,
            version: "1.2.0".into(),
            description: "AWS provider".into(),
            author: Some("team".into()),
            repository: None,
            source: Source::Local,
            published_at: Some("2025-10-06T12:00:00Z".into()),
            download_url: None,
            checksum: Some("sha256:ab".into()),
            size: Some(10),
            tags: vec!["cloud".into()],
            prerelease: false,
            stale: false,
            requires: vec![],
            dependencies: vec!["taskserv/containerd@^1.7".into()],
            signature: SignatureState::default(),
            mismatch: None,
        };
        let v: serde_json::Value = serde_json::to_value(&e).unwrap();
        assert_eq!(v["type"], "provider");
        assert_eq!(v["source"], "local");
        assert_eq!(v["published_at"], "2025-10-06T12:00:00Z");
        assert!(v["repository"].is_null());
        assert_eq!(v["requires"], serde_json::json!([]));
        assert_eq!(v["dependencies"][0], "taskserv/containerd@^1.7");
        assert!(v["signature"]["signed"].is_null());
        let back: Extension = serde_json::from_value(v).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn type_and_source_parse_only_known_words() {
        assert_eq!(
            "taskserv".parse::<ExtensionType>(),
            Ok(ExtensionType::Taskserv)
        );
        assert!("Taskserv".parse::<ExtensionType>().is_err());
        assert!("prov".parse::<ExtensionType>().is_err());
        assert_eq!("oci".parse::<Source>(), Ok(Source::Oci));
        assert!("s3".parse::<Source>().is_err());
        for t in ExtensionType::ALL {
            assert_eq!(t.as_str().parse::<ExtensionType>(), Ok(t));
        }
    }
}

//! `extension.yaml`: the manifest every extension carries (seed 004).
//!
//! ```yaml
//! extension:
//!   name: my-extension        # required
//!   version: 1.0.0            # required, semver
//!   type: taskserv            # required: provider | taskserv | cluster
//!   description: ...
//!   author: Your Name <you@example.com>
//!   tags: [kubernetes, containers]
//!   requires: [docker]
//!   dependencies: [containerd]
//! metadata:
//!   homepage: https://example.com
//!   repository: https://example.com/repo
//!   license: MIT
//! ```

use extreg_shared::{parse_version, validate_name, ExtensionType};
use serde::Deserialize;

/// Largest manifest read, so a hostile archive cannot make us buffer much.
pub const MAX_MANIFEST_BYTES: u64 = 1 << 20;

/// Reads a whole `extension.yaml`, refusing one over [`MAX_MANIFEST_BYTES`]
/// (never truncating it: a cut manifest could still parse).
pub fn read_bounded(r: impl std::io::Read) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut buf = Vec::new();
    r.take(MAX_MANIFEST_BYTES + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(std::io::Error::other(format!(
            "extension.yaml is larger than {MAX_MANIFEST_BYTES} bytes; refused"
        )));
    }
    Ok(buf)
}

#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    pub name: String,
    pub version: semver::Version,
    pub ext_type: ExtensionType,
    pub description: String,
    pub author: Option<String>,
    pub tags: Vec<String>,
    pub requires: Vec<String>,
    pub dependencies: Vec<String>,
    pub homepage: Option<String>,
    pub repository: Option<String>,
    pub license: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("extension.yaml is not valid YAML: {0}")]
    Yaml(String),
    #[error("extension.yaml is missing required field(s): {0}")]
    Missing(String),
    #[error("extension.yaml: {0}")]
    Invalid(String),
}

#[derive(Deserialize)]
struct Raw {
    extension: Option<RawExt>,
    #[serde(default)]
    metadata: Option<RawMeta>,
}

#[derive(Deserialize, Default)]
struct RawExt {
    name: Option<serde_yaml_ng::Value>,
    version: Option<serde_yaml_ng::Value>,
    #[serde(rename = "type")]
    ext_type: Option<serde_yaml_ng::Value>,
    description: Option<String>,
    author: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    requires: Vec<String>,
    #[serde(default)]
    dependencies: Vec<String>,
}

#[derive(Deserialize, Default)]
struct RawMeta {
    homepage: Option<String>,
    repository: Option<String>,
    license: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
}

fn scalar(v: &Option<serde_yaml_ng::Value>) -> Option<String> {
    match v.as_ref()? {
        serde_yaml_ng::Value::String(s) => Some(s.trim().to_string()),
        serde_yaml_ng::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
    .filter(|s| !s.is_empty())
}

impl Manifest {
    pub fn parse(bytes: &[u8]) -> Result<Manifest, ManifestError> {
        let raw: Raw =
            serde_yaml_ng::from_slice(bytes).map_err(|e| ManifestError::Yaml(e.to_string()))?;
        let ext = raw
            .extension
            .ok_or_else(|| ManifestError::Missing("extension (the top-level section)".into()))?;
        let (name, version, ty) = (
            scalar(&ext.name),
            scalar(&ext.version),
            scalar(&ext.ext_type),
        );
        let missing: Vec<&str> = [
            ("extension.name", name.is_none()),
            ("extension.version", version.is_none()),
            ("extension.type", ty.is_none()),
        ]
        .into_iter()
        .filter_map(|(k, m)| m.then_some(k))
        .collect();
        if !missing.is_empty() {
            return Err(ManifestError::Missing(missing.join(", ")));
        }
        let name = name.unwrap_or_default();
        validate_name(&name).map_err(|e| ManifestError::Invalid(format!("extension.name: {e}")))?;
        let version = parse_version(&version.unwrap_or_default())
            .map_err(|e| ManifestError::Invalid(format!("extension.version: {e}")))?;
        let ext_type: ExtensionType = ty
            .unwrap_or_default()
            .parse()
            .map_err(|e| ManifestError::Invalid(format!("extension.type: {e}")))?;
        let meta = raw.metadata.unwrap_or_default();
        let mut tags = ext.tags;
        for t in meta.tags {
            if !tags.contains(&t) {
                tags.push(t);
            }
        }
        Ok(Manifest {
            name,
            version,
            ext_type,
            description: ext.description.unwrap_or_default().trim().to_string(),
            author: ext.author,
            tags,
            requires: ext.requires,
            dependencies: ext.dependencies,
            homepage: meta.homepage,
            repository: meta.repository,
            license: meta.license,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_example_parses() {
        let m = Manifest::parse(
            b"extension:\n  name: my-extension\n  version: 1.0.0\n  type: taskserv\n  description: My awesome extension\n  author: Your Name <you@example.com>\n  requires:\n    - docker\n  dependencies:\n    - containerd\nmetadata:\n  homepage: https://example.com\n  repository: https://github.com/user/extension\n  license: MIT\n",
        )
        .unwrap();
        assert_eq!(m.name, "my-extension");
        assert_eq!(m.version.to_string(), "1.0.0");
        assert_eq!(m.ext_type, ExtensionType::Taskserv);
        assert_eq!(m.requires, vec!["docker"]);
        assert_eq!(m.license.as_deref(), Some("MIT"));
    }

    #[test]
    fn missing_fields_are_named() {
        let e = Manifest::parse(b"extension:\n  description: x\n").unwrap_err();
        assert_eq!(
            e,
            ManifestError::Missing("extension.name, extension.version, extension.type".into())
        );
        let e = Manifest::parse(b"name: x\n").unwrap_err();
        assert!(matches!(e, ManifestError::Missing(_)));
    }

    #[test]
    fn bad_values_are_refused() {
        let e = Manifest::parse(b"extension:\n  name: x\n  version: 1.0\n  type: taskserv\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("extension.version"), "{e}");
        let e = Manifest::parse(b"extension:\n  name: x\n  version: 1.0.0\n  type: widget\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("widget"), "{e}");
        let e = Manifest::parse(b"extension:\n  name: ../x\n  version: 1.0.0\n  type: cluster\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("extension.name"), "{e}");
        assert!(matches!(
            Manifest::parse(b"[unclosed"),
            Err(ManifestError::Yaml(_))
        ));
    }
}

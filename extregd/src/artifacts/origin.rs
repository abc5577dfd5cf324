//! Where the bytes of one artifact come from: an extension version of a
//! backend, or a generic OCI artifact (a KCL package) of the configured
//! registry. The store downloads, verifies and indexes both the same way;
//! only extensions go through the signature policies.

use super::{ArtifactKey, ArtifactKind};
use crate::backend::oci::generic::Located;
use crate::backend::oci::OciBackend;
use crate::backend::{Artifact, Backend, BackendError, VersionEntry};
use extreg_shared::{Extension, Source};
use std::sync::Arc;

#[derive(Clone)]
pub enum Origin {
    /// One version of an extension, from the backend that lists it.
    Version {
        entry: VersionEntry,
        backend: Arc<dyn Backend>,
    },
    /// A generic OCI artifact: its layer blob, from the configured registry.
    Generic {
        located: Located,
        oci: Arc<OciBackend>,
    },
}

impl Origin {
    pub fn key(&self) -> ArtifactKey {
        match self {
            Origin::Version { entry, .. } => ArtifactKey {
                kind: ArtifactKind::Extension(entry.record.ext_type),
                name: entry.record.name.clone(),
                version: entry.record.version.clone(),
                source: entry.record.source,
            },
            Origin::Generic { located, .. } => ArtifactKey {
                kind: ArtifactKind::Generic,
                name: located.repository.clone(),
                version: located.record.version.clone(),
                source: Source::Oci,
            },
        }
    }

    /// Changes whenever the bytes behind it may have changed (for a
    /// generic artifact: its manifest digest).
    pub fn revision(&self) -> &str {
        match self {
            Origin::Version { entry, .. } => &entry.revision,
            Origin::Generic { located, .. } => &located.revision,
        }
    }

    pub fn source(&self) -> Source {
        match self {
            Origin::Version { entry, .. } => entry.record.source,
            Origin::Generic { .. } => Source::Oci,
        }
    }

    /// The size announced before any byte is fetched.
    pub fn announced(&self) -> Option<u64> {
        match self {
            Origin::Version { entry, .. } => entry.record.size,
            Origin::Generic { located, .. } => Some(located.record.size),
        }
    }

    /// The digest the bytes must match when the fetch does not name one.
    pub fn checksum(&self) -> Option<String> {
        match self {
            Origin::Version { entry, .. } => entry.record.checksum.clone(),
            Origin::Generic { located, .. } => Some(located.record.layer_digest.clone()),
        }
    }

    /// How messages name it.
    pub fn what(&self) -> String {
        match self {
            Origin::Version { entry, .. } => format!(
                "{}/{} {}",
                entry.record.ext_type, entry.record.name, entry.record.version
            ),
            Origin::Generic { located, .. } => {
                format!("{}:{}", located.repository, located.record.version)
            }
        }
    }

    /// The record kept with the entry (for offline answers; extensions only).
    pub fn record(&self) -> Option<Extension> {
        match self {
            Origin::Version { entry, .. } => Some(entry.record.clone()),
            Origin::Generic { .. } => None,
        }
    }

    pub fn locator(&self) -> String {
        match self {
            Origin::Version { entry, .. } => entry.locator.clone(),
            Origin::Generic { located, .. } => {
                format!("{}@{}", located.repository, located.record.layer_digest)
            }
        }
    }

    pub fn identity(&self) -> String {
        match self {
            Origin::Version { backend, .. } => backend.identity(),
            Origin::Generic { oci, .. } => oci.identity(),
        }
    }

    pub async fn fetch(&self) -> Result<Artifact, BackendError> {
        match self {
            Origin::Version { entry, backend } => backend.fetch(entry).await,
            Origin::Generic { located, oci } => oci.generic_blob(located).await,
        }
    }
}

//! The application layer: one [`App`] holding the daemon's components, and
//! the operations both adapters call — the REST API ([`crate::api`]) and
//! the local socket ([`crate::ipc`]). Operations take plain values, return
//! the domain error [`crate::error::Error`], and hold the business rules
//! (which caches a write drops); no HTTP or socket type appears here.
//!
//! Shape after rust-lang/crates.io's `App` (components in one struct,
//! shared as `Arc<App>`, the web state dereferencing to it).

mod artifacts;
mod ops;

use crate::catalogue::Catalogue;
use crate::metrics::Metrics;
use std::sync::Arc;
use std::time::Instant;

pub use artifacts::GenericArtifacts;
pub use ops::HEALTH_TIMEOUT;

/// The daemon's components, wired once by [`crate::boot`].
pub struct App {
    pub catalogue: Catalogue,
    pub loader: crate::load::Loader,
    /// The OCI backend, for publish and delete (local socket only).
    pub oci: Option<Arc<crate::backend::oci::OciBackend>>,
    /// `[oci]` as configured (publishing elsewhere starts from it).
    pub oci_config: Option<crate::config::OciConfig>,
    pub metrics: Arc<Metrics>,
    pub started: Instant,
    /// Readiness for `/api/v1/health/ready`; see [`crate::probe`].
    pub readiness: Arc<crate::probe::Readiness>,
    /// Generic OCI artifacts (KCL packages): the readable namespaces and
    /// their listing cache; see [`artifacts`].
    pub generic: GenericArtifacts,
}

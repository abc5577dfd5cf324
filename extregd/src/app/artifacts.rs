//! Generic OCI artifacts (KCL packages and the like, seed 003): listing a
//! configured namespace and pulling one artifact into the artifact cache.
//! Both adapters call these operations: `POST /api/v1/oci/artifacts` and
//! the socket's `OciArtifacts` / `OciArtifactPull` (`ext kcl list`,
//! `ext kcl pull`).
//!
//! **Only configured namespaces are read.** A namespace must pass the OCI
//! grammar ([`validate_namespace`]) and be one of `[oci]
//! artifact_namespaces`; anything else is refused before the registry is
//! asked, so the endpoint cannot probe other namespaces (and it only ever
//! asks the configured registry).
//!
//! **Cached like the other listings**: one entry per namespace for
//! `[cache] ttl_seconds` (`enable_list_cache`), concurrent misses share one
//! listing; `ext discover --refresh` (all types) and `ext cache clear` drop
//! them.

use super::App;
use crate::cache::{SingleFlight, TtlLru};
use crate::config::CacheConfig;
use crate::error::Error;
use crate::metrics::Metrics;
use extreg_shared::artifact::{validate_namespace, OciArtifact};
use extreg_shared::{Field, Source};
use std::sync::Arc;
use std::time::Duration;

/// Namespaces whose listings are cached at once.
const CAPACITY: usize = 64;

type Listing = Arc<Vec<OciArtifact>>;

/// The listing cache and the namespaces that may be read.
pub struct GenericArtifacts {
    namespaces: Vec<String>,
    listings: TtlLru<String, Listing>,
    flights: SingleFlight<String, Result<Listing, Error>>,
}

impl GenericArtifacts {
    pub fn new(namespaces: Vec<String>, cache: &CacheConfig, metrics: &Metrics) -> Self {
        let (hits, misses) = metrics.cache_counters("oci_artifacts");
        GenericArtifacts {
            namespaces,
            listings: TtlLru::new(
                CAPACITY,
                Duration::from_secs(cache.ttl_seconds),
                cache.enable_list_cache,
                hits,
                misses,
            ),
            flights: SingleFlight::default(),
        }
    }

    /// Drops every cached listing.
    pub fn clear(&self) {
        self.listings.clear();
    }

    /// The namespace, when it may be read; else the error naming it.
    pub fn check(&self, namespace: &str) -> Result<(), Error> {
        well_formed(namespace)?;
        if !self.namespaces.iter().any(|n| n == namespace) {
            let allowed = if self.namespaces.is_empty() {
                "none (set [oci] artifact_namespaces)".to_string()
            } else {
                self.namespaces.join(", ")
            };
            return Err(Error::not_found(format!(
                "namespace '{namespace}' is not one of the namespaces this daemon reads ([oci] artifact_namespaces)"
            ))
            .with_details(format!("readable namespaces: {allowed}"))
            .with_field(Field::Namespace));
        }
        Ok(())
    }
}

/// A namespace by the OCI grammar, else a 400 naming the field.
fn well_formed(namespace: &str) -> Result<(), Error> {
    validate_namespace(namespace)
        .map_err(|m| Error::invalid_request(format!("namespace: {m}")).with_field(Field::Namespace))
}

impl App {
    /// The configured registry and a namespace it may be read in, checked
    /// in that order (a malformed namespace is named first).
    fn readable(&self, namespace: &str) -> Result<&Arc<crate::backend::oci::OciBackend>, Error> {
        well_formed(namespace)?;
        let oci = self.need_registry()?;
        self.generic.check(namespace)?;
        Ok(oci)
    }

    fn need_registry(&self) -> Result<&Arc<crate::backend::oci::OciBackend>, Error> {
        self.oci.as_ref().ok_or_else(|| {
            Error::not_found(
                "no OCI registry is configured: set [oci] registry (or PROVISIONING_OCI_REGISTRY) to list or pull OCI artifacts",
            )
        })
    }

    /// Every tag of every repository directly under `namespace` (one of
    /// `[oci] artifact_namespaces`), sorted by name then version; cached.
    pub async fn oci_artifacts(&self, namespace: &str) -> Result<Listing, Error> {
        let oci = self.readable(namespace)?.clone();
        let key = namespace.to_string();
        if let Some(hit) = self.generic.listings.get(&key) {
            return Ok(hit);
        }
        let metrics = self.metrics.clone();
        let ns = key.clone();
        let r = self
            .generic
            .flights
            .run(key.clone(), move || async move {
                let t = std::time::Instant::now();
                let r = oci.generic_artifacts(&ns).await;
                metrics.backend_timed("oci", "list_artifacts", r.is_ok(), t);
                r.map(Arc::new).map_err(|e| Error::backend(Source::Oci, &e))
            })
            .await
            .map_err(|e| Error::internal(e.to_string()))??;
        self.generic.listings.insert(key, r.clone());
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generic(ns: &[&str]) -> GenericArtifacts {
        let metrics = Metrics::new();
        GenericArtifacts::new(
            ns.iter().map(|s| s.to_string()).collect(),
            &CacheConfig::default(),
            &metrics,
        )
    }

    #[test]
    fn only_configured_namespaces_are_read() {
        let g = generic(&["kcl", "team/pkgs"]);
        assert!(g.check("kcl").is_ok());
        assert!(g.check("team/pkgs").is_ok());
        for (ns, kind) in [
            ("other", extreg_shared::ErrorKind::NotFound),
            ("team", extreg_shared::ErrorKind::NotFound),
            ("kcl/..", extreg_shared::ErrorKind::InvalidRequest),
            ("../kcl", extreg_shared::ErrorKind::InvalidRequest),
            ("KCL", extreg_shared::ErrorKind::InvalidRequest),
            ("", extreg_shared::ErrorKind::InvalidRequest),
        ] {
            let e = g.check(ns).unwrap_err();
            assert_eq!(e.kind, kind, "{ns}");
            assert_eq!(e.field, Some(Field::Namespace), "{ns}");
            assert!(e.message.contains("namespace"), "{}", e.message);
        }
        let none = generic(&[]).check("kcl").unwrap_err();
        assert!(none
            .details
            .unwrap()
            .contains("set [oci] artifact_namespaces"));
    }
}

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
use crate::backend::oci::generic::Located;
use crate::cache::{SingleFlight, TtlLru};
use crate::config::CacheConfig;
use crate::error::Error;
use crate::metrics::Metrics;
use extreg_shared::artifact::{valid_tag, validate_namespace, ArtifactPull, OciArtifact};
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

    /// The readable namespace a repository is directly under
    /// (`{namespace}/{name}`), if any.
    pub fn namespace_of<'a>(&'a self, repository: &str) -> Option<&'a str> {
        self.namespaces
            .iter()
            .find(|n| {
                repository
                    .strip_prefix(n.as_str())
                    .and_then(|r| r.strip_prefix('/'))
                    .is_some_and(|name| !name.is_empty() && !name.contains('/'))
            })
            .map(String::as_str)
    }

    /// Drops the cached listing of one namespace (a registry notification
    /// named a repository under it).
    pub fn forget(&self, namespace: &str) {
        self.listings.remove_where(|k| k == namespace);
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

/// Input echoed in a message: bounded, control characters escaped.
fn shown(s: &str) -> String {
    s.chars().take(64).flat_map(char::escape_default).collect()
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

    /// One artifact of `{namespace}/{name}`: the tag `version`, else the
    /// newest tag that is a semantic version (else `latest`).
    pub async fn oci_artifact(
        &self,
        namespace: &str,
        name: &str,
        version: Option<&str>,
    ) -> Result<Located, Error> {
        let oci = self.readable(namespace)?;
        extreg_shared::validate_name(name)?;
        if !crate::backend::oci::valid_repository(&format!("{namespace}/{name}")) {
            return Err(Error::invalid_request(format!(
                "'{name}' is not a repository name (lower-case letters, digits, '.', '_', '-')"
            ))
            .with_field(Field::Name));
        }
        let backend = |e: crate::backend::BackendError| Error::backend(Source::Oci, &e);
        let tag = match version {
            Some(v) => {
                if !valid_tag(v) {
                    return Err(Error::invalid_request(format!(
                        "'{}' is not an OCI tag ([A-Za-z0-9_][A-Za-z0-9._-], at most 128)",
                        shown(v)
                    ))
                    .with_field(Field::Version));
                }
                v.to_string()
            }
            None => {
                let tags = oci.generic_tags(namespace, name).await.map_err(backend)?;
                newest_tag(&tags).ok_or_else(|| {
                    Error::not_found(format!("{namespace}/{name} has no tags"))
                        .with_field(Field::Name)
                })?
            }
        };
        oci.generic_artifact(namespace, name, &tag)
            .await
            .map_err(backend)?
            .ok_or_else(|| {
                Error::not_found(format!(
                    "{namespace}/{name}:{tag} is not in the registry (or is not an artifact)"
                ))
                .with_field(if version.is_some() {
                    Field::Version
                } else {
                    Field::Name
                })
            })
    }

    /// Pulls one artifact into the artifact cache, verified against its
    /// layer digest (a mismatch caches nothing).
    pub async fn pull_oci_artifact(
        &self,
        namespace: &str,
        name: &str,
        version: Option<&str>,
        progress: &crate::progress::ProgressTx,
    ) -> Result<ArtifactPull, Error> {
        let located = self.oci_artifact(namespace, name, version).await?;
        let oci = self.need_registry()?.clone();
        let store = self.catalogue.artifacts();
        let art = crate::progress::generic(store, oci, &located, progress).await?;
        Ok(ArtifactPull {
            artifact: located.record,
            path: art.path.display().to_string(),
            digest: art.digest,
            size: art.size,
            cached: art.hit,
        })
    }
}

/// The newest tag that is a semantic version (stable before pre-release),
/// else `latest` when present.
fn newest_tag(tags: &[String]) -> Option<String> {
    tags.iter()
        .filter_map(|t| extreg_shared::parse_version(t).ok().map(|v| (v, t)))
        .max_by(|a, b| (a.0.pre.is_empty(), &a.0).cmp(&(b.0.pre.is_empty(), &b.0)))
        .map(|(_, t)| t.clone())
        .or_else(|| tags.iter().find(|t| *t == "latest").cloned())
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

    #[test]
    fn repositories_map_to_readable_namespaces() {
        let g = generic(&["kcl", "team/pkgs"]);
        assert_eq!(g.namespace_of("kcl/provisioning-core"), Some("kcl"));
        assert_eq!(g.namespace_of("team/pkgs/base"), Some("team/pkgs"));
        for other in ["kcl", "kcl/", "kcl/a/b", "kclx/a", "team/a", "other/kcl"] {
            assert_eq!(g.namespace_of(other), None, "{other}");
        }
    }

    #[test]
    fn the_newest_semver_tag_wins() {
        let t = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            newest_tag(&t(&["1.0.0", "1.10.0", "1.9.0", "2.0.0-rc.1", "latest"])),
            Some("1.10.0".into())
        );
        assert_eq!(newest_tag(&t(&["2.0.0-rc.1"])), Some("2.0.0-rc.1".into()));
        assert_eq!(newest_tag(&t(&["main", "latest"])), Some("latest".into()));
        assert_eq!(newest_tag(&t(&["main"])), None);
    }
}

//! The operations: health, reads that need more than one component, and
//! every write (publish, delete, sign, cache clear/prune/verify) with the
//! caches each one drops.

use super::App;
use crate::artifacts::{ArtifactKind, IndexEntry, VerifyReport};
use crate::backend::oci::OciBackend;
use crate::error::Error;
use extreg_shared::protocol::{PublishResult, PublishSpec, SignResult};
use extreg_shared::{BackendStatus, ExtensionType, Field, HealthResponse, Source};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Skipped repositories named per backend in the health report.
const MAX_SKIPPED_SHOWN: usize = 20;
/// How long the health report waits for one backend.
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(5);

fn publish_error(e: crate::publish::PublishError) -> Error {
    use crate::publish::PublishError as P;
    match e {
        P::Invalid(m) => Error::invalid_request(m),
        P::Exists { .. } => Error::invalid_request(e.to_string()),
        P::NotFound(m) => Error::not_found(format!("{m} is not in the registry")),
        P::Backend(b) => Error::backend(Source::Oci, &b),
    }
}

/// An absolute path to an existing folder (what publish and sign read).
fn folder(path: &str) -> Result<PathBuf, Error> {
    let dir = PathBuf::from(path);
    if !dir.is_absolute() || !dir.is_dir() {
        return Err(Error::invalid_request(format!(
            "{path} is not a folder (give an absolute path to a folder holding extension.yaml)"
        ))
        .with_field(Field::Path));
    }
    Ok(dir)
}

impl App {
    /// The type asked for, or the one type that holds `name` (checked
    /// first: a bad name is the error, not "not found").
    pub async fn type_of(
        &self,
        ext_type: Option<ExtensionType>,
        name: &str,
    ) -> Result<ExtensionType, Error> {
        extreg_shared::validate_name(name)?;
        self.settle_type(ext_type, name).await
    }

    /// The type asked for, or the one type that holds `name` (checked).
    async fn settle_type(
        &self,
        ext_type: Option<ExtensionType>,
        name: &str,
    ) -> Result<ExtensionType, Error> {
        match ext_type {
            Some(t) => Ok(t),
            None => self.catalogue.resolve_type(name).await,
        }
    }

    /// What a pull, load or deps asks for: the name checked, then the
    /// constraint parsed, then the type settled, in that order, so the
    /// error names the first bad input.
    pub async fn target(
        &self,
        ext_type: Option<ExtensionType>,
        name: &str,
        constraint: &str,
    ) -> Result<(ExtensionType, extreg_shared::Constraint), Error> {
        extreg_shared::validate_name(name)?;
        let c = extreg_shared::Constraint::parse(constraint)?;
        Ok((self.settle_type(ext_type, name).await?, c))
    }

    /// [`Self::target`] as the root of a dependency resolution.
    pub async fn root<'a>(
        &self,
        ext_type: Option<ExtensionType>,
        name: &'a str,
        constraint: &'a str,
        pre: bool,
        source: Option<extreg_shared::Source>,
    ) -> Result<crate::deps::Root<'a>, Error> {
        let (ext_type, c) = self.target(ext_type, name, constraint).await?;
        Ok(crate::deps::Root {
            ext_type,
            name,
            constraint: c,
            text: constraint,
            pre,
            source,
        })
    }

    /// The configured OCI backend (publish, delete and sign need it).
    pub fn need_oci(&self) -> Result<&Arc<OciBackend>, Error> {
        self.oci.as_ref().ok_or_else(|| {
            Error::invalid_request(
                "publishing needs the OCI backend: configure [oci] registry (or PROVISIONING_OCI_REGISTRY) and restart extregd, or name a registry with --registry",
            )
        })
    }

    /// Asks every backend, concurrently and bounded by [`HEALTH_TIMEOUT`].
    pub async fn health(&self) -> HealthResponse {
        let checks =
            futures::future::join_all(self.catalogue.backends().iter().map(|b| async move {
                let r = match tokio::time::timeout(HEALTH_TIMEOUT, b.health()).await {
                    Ok(r) => r,
                    Err(_) => Err(crate::backend::BackendError::Timeout(
                        HEALTH_TIMEOUT.as_secs(),
                    )),
                };
                let mut skipped = b.skipped();
                if skipped.len() > MAX_SKIPPED_SHOWN {
                    let more = skipped.len() - MAX_SKIPPED_SHOWN;
                    skipped.truncate(MAX_SKIPPED_SHOWN);
                    skipped.push(format!("... and {more} more"));
                }
                (b.source(), r, skipped)
            }))
            .await;
        let mut backends = BTreeMap::new();
        for s in Source::ALL {
            backends.insert(
                s.to_string(),
                BackendStatus {
                    enabled: false,
                    healthy: false,
                    error: None,
                    skipped: Vec::new(),
                },
            );
        }
        let mut all_ok = true;
        let refresh = self.catalogue.refresh_states();
        let bound = self.catalogue.stale_after().as_secs();
        for (s, r, skipped) in checks {
            self.metrics.backend_call(s.as_str(), "health", r.is_ok());
            // A failing refresh counts too: answers are then served from the
            // caches, and marked stale past the bound.
            let failing = refresh.get(&s).and_then(|f| {
                f.failing().map(|(at, e)| {
                    let ago = at.elapsed().map(|d| d.as_secs()).unwrap_or(0);
                    format!(
                        "the last metadata refresh failed {ago} s ago ({e}); serving cached answers, marked stale after {bound} s"
                    )
                })
            });
            let ok = r.is_ok() && failing.is_none();
            // A partial backend (repositories skipped) degrades the whole.
            all_ok &= skipped.is_empty();
            all_ok &= ok;
            let error = match (r.err().map(|e| e.to_string()), failing) {
                (Some(a), Some(b)) => Some(format!("{a}; {b}")),
                (a, b) => a.or(b),
            };
            backends.insert(
                s.to_string(),
                BackendStatus {
                    enabled: true,
                    healthy: ok,
                    error,
                    skipped,
                },
            );
        }
        HealthResponse {
            status: if all_ok { "healthy" } else { "degraded" }.into(),
            version: env!("CARGO_PKG_VERSION").into(),
            uptime: self.started.elapsed().as_secs(),
            backends,
        }
    }

    /// `ext publish`, to the configured registry or the one asked for. A
    /// push drops the metadata caches so the new version shows at once.
    pub async fn publish(&self, spec: PublishSpec) -> Result<PublishResult, Error> {
        self.publish_reporting(spec, &crate::progress::ProgressTx::none())
            .await
    }

    /// [`Self::publish`], reporting the layer upload into `progress`
    /// (phase `push`, bytes sent of the layer's size).
    pub async fn publish_reporting(
        &self,
        spec: PublishSpec,
        progress: &crate::progress::ProgressTx,
    ) -> Result<PublishResult, Error> {
        let elsewhere = spec.registry.is_some() || spec.namespace.is_some();
        let target = if elsewhere {
            let configured = self.oci_config.as_ref().zip(self.oci.as_ref());
            let wanted = crate::remote::Wanted {
                registry: spec.registry.as_deref(),
                namespace: spec.namespace.as_deref(),
                auth_file: None,
            };
            crate::remote::target(configured, &wanted, &crate::auth_files::AuthEnv::from_env())
                .map_err(|m| Error::invalid_request(m).with_field(Field::Registry))?
                .backend
        } else {
            self.need_oci()?.clone()
        };
        let dir = folder(&spec.path)?;
        let opts = crate::publish::PublishOptions {
            force: spec.force,
            dry_run: spec.dry_run,
            created: None,
        };
        let r = crate::publish::publish_reporting(&target, &dir, &spec.version, &opts, progress)
            .await
            .map_err(publish_error)?;
        if r.pushed {
            self.catalogue.clear_metadata();
        }
        Ok(PublishResult {
            name: r.name,
            ext_type: r.ext_type,
            version: r.version,
            reference: r.reference,
            manifest_digest: r.manifest_digest,
            layer_digest: r.layer_digest,
            size: r.size,
            pushed: r.pushed,
            replaced: r.replaced,
        })
    }

    /// Deletes one version from the configured registry; returns its
    /// reference. Drops the metadata caches.
    pub async fn delete(
        &self,
        ext_type: ExtensionType,
        name: &str,
        version: &str,
    ) -> Result<String, Error> {
        extreg_shared::validate_name(name)?;
        // Validated as semver, but passed on as written: a tag may carry
        // a leading `v` (the backend lists `v1.2.3` as 1.2.3).
        extreg_shared::parse_version(version)?;
        let oci = self.need_oci()?;
        crate::publish::delete(oci, ext_type, name, version)
            .await
            .map_err(publish_error)?;
        self.catalogue.clear_metadata();
        Ok(oci.reference(&oci.repository(ext_type, name), version))
    }

    /// Signs a published version (`ext publish --sign`); a pushed signature
    /// drops the metadata caches.
    pub async fn sign(
        &self,
        path: &str,
        version: &str,
        secret_key: &str,
        password: Option<String>,
        dry_run: bool,
    ) -> Result<SignResult, Error> {
        let oci = self.need_oci()?;
        let dir = folder(path)?;
        let key = PathBuf::from(secret_key);
        if !key.is_absolute() {
            return Err(Error::invalid_request(format!(
                "{secret_key}: give the secret key as an absolute path"
            ))
            .with_field(Field::Path));
        }
        let r =
            crate::signature::sign_published(oci, &dir, version, &key, password, dry_run).await?;
        if r.pushed {
            self.catalogue.clear_metadata();
        }
        Ok(r)
    }

    /// Removes cached artifacts (all, or those matching type and/or name)
    /// and drops the metadata caches; returns entries and bytes removed.
    pub fn cache_clear(
        &self,
        ext_type: Option<ExtensionType>,
        name: Option<&str>,
        all: bool,
    ) -> Result<(u64, u64), Error> {
        if let Some(n) = name {
            extreg_shared::validate_name(n)?;
        }
        if !all && ext_type.is_none() && name.is_none() {
            return Err(Error::invalid_request(
                "say what to clear: --all, or --type and/or --name",
            ));
        }
        let removed = self.catalogue.artifacts().remove_where(|e| {
            all || (ext_type.is_none_or(|t| e.kind == ArtifactKind::Extension(t))
                && name.is_none_or(|n| e.name == n))
        });
        self.catalogue.clear_metadata();
        self.generic.clear();
        Ok(removed)
    }

    /// Re-hashes every cached artifact (damaged ones are evicted) and drops
    /// the metadata caches.
    pub async fn cache_verify(&self) -> VerifyReport {
        let r = self.catalogue.artifacts().verify_all().await;
        self.catalogue.clear_metadata();
        r
    }

    /// Removes artifacts unused for `days` days.
    pub fn cache_prune(&self, days: u32) -> (u64, u64) {
        self.catalogue.artifacts().prune(days)
    }

    /// Removes artifacts unused for `seconds` seconds.
    pub fn cache_prune_older_than(&self, seconds: u64) -> (u64, u64) {
        self.catalogue.artifacts().prune_older_than(seconds)
    }

    /// What the artifact cache holds.
    pub fn cache_entries(&self) -> Vec<IndexEntry> {
        self.catalogue.artifacts().entries()
    }

    /// `ext discover`: every extension with the backends holding it;
    /// `refresh` first drops the listing caches (of `ext_type`), so
    /// something pushed by another tool shows at once.
    pub async fn discover(
        &self,
        ext_type: Option<ExtensionType>,
        refresh: bool,
    ) -> Result<Vec<extreg_shared::protocol::Discovered>, Error> {
        if refresh {
            self.catalogue.refresh(ext_type);
            if ext_type.is_none() {
                self.generic.clear();
            }
        }
        self.catalogue.discover(ext_type).await
    }
}

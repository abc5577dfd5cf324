//! Request → operation → response.

use crate::api::AppState;
use crate::error::Error;
use extreg_shared::protocol::{CacheEntry, PullResult, Request, Response};
use extreg_shared::{ErrorBody, ErrorKind};

/// The type asked for, or the one type that holds `name`.
async fn type_of(
    reg: &crate::catalogue::Catalogue,
    ext_type: Option<extreg_shared::ExtensionType>,
    name: &str,
) -> Result<extreg_shared::ExtensionType, Error> {
    match ext_type {
        Some(t) => Ok(t),
        None => reg.resolve_type(name).await,
    }
}

fn need_oci(state: &AppState) -> Result<&std::sync::Arc<crate::backend::oci::OciBackend>, Error> {
    state.oci.as_ref().ok_or_else(|| {
        Error::invalid_request(
            "publishing needs the OCI backend: configure [oci] registry (or PROVISIONING_OCI_REGISTRY) and restart extregd, or name a registry with --registry",
        )
    })
}

fn publish_error(e: crate::publish::PublishError) -> Error {
    use crate::publish::PublishError as P;
    match e {
        P::Invalid(m) => Error::invalid_request(m),
        P::Exists { .. } => Error::invalid_request(e.to_string()),
        P::NotFound(m) => Error::not_found(format!("{m} is not in the registry")),
        P::Backend(b) => Error::backend(extreg_shared::Source::Oci, &b),
    }
}

/// A handshake refusal: `Response::Error` keeps its wire place for peers
/// of other releases.
pub(super) fn error(kind: ErrorKind, message: String) -> Response {
    Response::Error(ErrorBody {
        error: kind.code().into(),
        message,
        details: None,
    })
}

fn rfc3339(secs: u64) -> String {
    crate::backend::rfc3339_secs(secs)
}

/// `ext publish`, to the configured registry or the one asked for.
async fn publish_request(
    state: &AppState,
    spec: extreg_shared::protocol::PublishSpec,
) -> Result<Response, Error> {
    let reg = &state.catalogue;
    let elsewhere = spec.registry.is_some() || spec.namespace.is_some();
    let target = if elsewhere {
        let configured = state.oci_config.as_ref().zip(state.oci.as_ref());
        let wanted = crate::remote::Wanted {
            registry: spec.registry.as_deref(),
            namespace: spec.namespace.as_deref(),
            auth_file: None,
        };
        crate::remote::target(configured, &wanted, &crate::auth_files::AuthEnv::from_env())
            .map_err(|m| Error::invalid_request(m).with_field(extreg_shared::Field::Registry))?
            .backend
    } else {
        need_oci(state)?.clone()
    };
    let dir = std::path::PathBuf::from(&spec.path);
    if !dir.is_absolute() || !dir.is_dir() {
        return Err(Error::invalid_request(format!(
            "{} is not a folder (give an absolute path to a folder holding extension.yaml)",
            spec.path
        ))
        .with_field(extreg_shared::Field::Path));
    }
    let opts = crate::publish::PublishOptions {
        force: spec.force,
        dry_run: spec.dry_run,
        created: None,
    };
    let r = crate::publish::publish_with(&target, &dir, &spec.version, &opts)
        .await
        .map_err(publish_error)?;
    if r.pushed {
        reg.clear_metadata();
    }
    Ok(Response::Published(
        extreg_shared::protocol::PublishResult {
            name: r.name,
            ext_type: r.ext_type,
            version: r.version,
            reference: r.reference,
            manifest_digest: r.manifest_digest,
            layer_digest: r.layer_digest,
            size: r.size,
            pushed: r.pushed,
            replaced: r.replaced,
        },
    ))
}

fn cache_entry(e: crate::artifacts::IndexEntry) -> CacheEntry {
    CacheEntry {
        ext_type: e.ext_type,
        name: e.name,
        version: e.version,
        source: e.source,
        size: e.size,
        digest: e.digest,
        cached_at: rfc3339(e.cached_at),
        last_used: rfc3339(e.last_used),
    }
}

pub(super) async fn dispatch(
    state: &AppState,
    req: Request,
    progress: &crate::progress::ProgressTx,
) -> Result<Response, Error> {
    let reg = &state.catalogue;
    let check_name = |n: &str| extreg_shared::validate_name(n).map_err(Error::from);
    Ok(match req {
        Request::Hello { .. } => unreachable!("handled by the caller"),
        Request::List { ext_type, source } => {
            let (items, _) = reg.list_records(ext_type, source).await?;
            Response::Extensions {
                total: items.len() as u64,
                items,
            }
        }
        Request::Search {
            query,
            ext_type,
            source,
            limit,
        } => {
            if query.trim().is_empty() {
                return Err(Error::invalid_request("the search query is empty"));
            }
            let (items, total, _) = reg
                .search_records(query.trim(), ext_type, source, limit.max(1) as usize)
                .await?;
            Response::Extensions {
                items,
                total: total as u64,
            }
        }
        Request::Info {
            ext_type,
            name,
            version,
        } => {
            check_name(&name)?;
            let t = type_of(reg, ext_type, &name).await?;
            let mut rec = reg.version_record(t, &name, version.as_deref()).await?;
            reg.artifacts().annotate(&mut rec);
            Response::Extension(rec)
        }
        Request::Versions { ext_type, name } => {
            check_name(&name)?;
            let t = type_of(reg, ext_type, &name).await?;
            let v = reg.versions(t, &name).await?;
            Response::Versions(
                v.entries
                    .iter()
                    .map(|e| {
                        let mut rec = e.record.clone();
                        reg.artifacts().annotate(&mut rec);
                        (&rec).into()
                    })
                    .collect(),
            )
        }
        Request::Pull {
            ext_type,
            name,
            constraint,
            pre,
            source,
        } => {
            check_name(&name)?;
            let c = extreg_shared::Constraint::parse(&constraint)?;
            progress.send(extreg_shared::protocol::Phase::Resolve, 0, None);
            let t = type_of(reg, ext_type, &name).await?;
            let entry = reg.resolve_from(t, &name, &c, pre, source).await?;
            let art = crate::progress::artifact(reg, &entry, false, progress).await?;
            Response::Pulled(PullResult {
                extension: entry.record,
                digest: art.digest,
                size: art.size,
                path: art.path.display().to_string(),
                cached: art.hit,
            })
        }
        Request::Load {
            ext_type,
            name,
            constraint,
            pre,
            source,
            force,
        } => {
            check_name(&name)?;
            let constraint = extreg_shared::Constraint::parse(&constraint)?;
            let ext_type = type_of(reg, ext_type, &name).await?;
            Response::Loaded(
                state
                    .loader
                    .load(
                        reg,
                        crate::load::LoadRequest {
                            ext_type,
                            name,
                            constraint,
                            pre,
                            source,
                            force,
                        },
                        progress,
                    )
                    .await?,
            )
        }
        Request::Loaded => Response::LoadedList(state.loader.loaded()),
        Request::Publish {
            path,
            version,
            dry_run,
            force,
        } => {
            progress.send(extreg_shared::protocol::Phase::Push, 0, None);
            publish_request(
                state,
                extreg_shared::protocol::PublishSpec {
                    path,
                    version,
                    dry_run,
                    force,
                    registry: None,
                    namespace: None,
                },
            )
            .await?
        }
        Request::Delete {
            ext_type,
            name,
            version,
        } => {
            check_name(&name)?;
            // Validated as semver, but passed on as written: a tag may carry
            // a leading `v` (the backend lists `v1.2.3` as 1.2.3).
            extreg_shared::parse_version(&version)?;
            let oci = need_oci(state)?;
            crate::publish::delete(oci, ext_type, &name, &version)
                .await
                .map_err(publish_error)?;
            reg.clear_metadata();
            Response::Deleted {
                reference: oci.reference(&oci.repository(ext_type, &name), &version),
            }
        }
        Request::Health => Response::Health(crate::api::health_report(state).await),
        Request::CacheList => Response::CacheEntries(
            reg.artifacts()
                .entries()
                .into_iter()
                .map(cache_entry)
                .collect(),
        ),
        Request::CacheStats => Response::CacheStats(reg.cache_stats()),
        Request::CacheClear {
            ext_type,
            name,
            all,
        } => {
            if let Some(n) = &name {
                check_name(n)?;
            }
            if !all && ext_type.is_none() && name.is_none() {
                return Err(Error::invalid_request(
                    "say what to clear: --all, or --type and/or --name",
                ));
            }
            let (entries, bytes) = reg.artifacts().remove_where(|e| {
                all || (ext_type.is_none_or(|t| e.ext_type == t)
                    && name.as_deref().is_none_or(|n| e.name == n))
            });
            reg.clear_metadata();
            Response::CacheRemoved { entries, bytes }
        }
        Request::CacheVerify => {
            let r = reg.artifacts().verify_all().await;
            reg.clear_metadata();
            Response::CacheVerified {
                checked: r.checked,
                bytes: r.bytes,
                damaged: r.damaged.into_iter().map(cache_entry).collect(),
            }
        }
        Request::CachePrune { days } => {
            let (entries, bytes) = reg.artifacts().prune(days);
            Response::CacheRemoved { entries, bytes }
        }
        Request::PublishTo(spec) => {
            progress.send(extreg_shared::protocol::Phase::Push, 0, None);
            publish_request(state, spec).await?
        }
        Request::Discover { ext_type, refresh } => {
            if refresh {
                reg.refresh(ext_type);
            }
            Response::Discovered(reg.discover(ext_type).await?)
        }
        Request::CachePruneOlderThan { seconds } => {
            let (entries, bytes) = reg.artifacts().prune_older_than(seconds);
            Response::CacheRemoved { entries, bytes }
        }
        Request::Complete { .. } => unreachable!("handled by serve_request"),
        Request::LoadTree {
            ext_type,
            name,
            constraint,
            pre,
            source,
            force,
        } => {
            check_name(&name)?;
            let c = extreg_shared::Constraint::parse(&constraint)?;
            let t = type_of(reg, ext_type, &name).await?;
            Response::LoadedTree(
                crate::deps::load_tree(
                    reg,
                    &state.loader,
                    t,
                    &name,
                    c,
                    &constraint,
                    pre,
                    source,
                    force,
                    progress,
                )
                .await?,
            )
        }
        Request::LoadLocked { entries, force } => Response::LoadedTree(
            crate::deps::load_locked(reg, &state.loader, entries, force, progress).await?,
        ),
        Request::Deps {
            ext_type,
            name,
            constraint,
            pre,
            source,
        } => {
            check_name(&name)?;
            let c = extreg_shared::Constraint::parse(&constraint)?;
            let t = type_of(reg, ext_type, &name).await?;
            let closure =
                crate::deps::resolve(reg, t, &name, c, &constraint, pre, source, None).await?;
            Response::DepsTree(crate::deps::tree(&closure))
        }
        Request::Sign {
            path,
            version,
            secret_key,
            password,
            dry_run,
        } => {
            let oci = need_oci(state)?;
            let dir = std::path::PathBuf::from(&path);
            let key = std::path::PathBuf::from(&secret_key);
            if !dir.is_absolute() || !dir.is_dir() {
                return Err(Error::invalid_request(format!(
                    "{path} is not a folder (give an absolute path to a folder holding extension.yaml)"
                ))
                .with_field(extreg_shared::Field::Path));
            }
            if !key.is_absolute() {
                return Err(Error::invalid_request(format!(
                    "{secret_key}: give the secret key as an absolute path"
                ))
                .with_field(extreg_shared::Field::Path));
            }
            let r = crate::signature::sign_published(oci, &dir, &version, &key, password, dry_run)
                .await?;
            if r.pushed {
                reg.clear_metadata();
            }
            Response::Signed(r)
        }
    })
}

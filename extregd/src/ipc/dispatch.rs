//! Request → application operation → response. Input that only the
//! socket receives unchecked (names, constraints, versions) is parsed here;
//! the rules live in [`crate::app`].

use crate::app::App;
use crate::error::Error;
use extreg_shared::protocol::{CacheEntry, PullResult, Request, Response};
use extreg_shared::{ErrorBody, ErrorKind};
use std::sync::Arc;

/// A handshake refusal: `Response::Error` keeps its wire place for peers
/// of other releases.
pub(super) fn error(kind: ErrorKind, message: String) -> Response {
    Response::Error(ErrorBody {
        error: kind.code().into(),
        message,
        details: None,
    })
}

/// How a failed request is answered: the one rendering of the domain
/// error on the socket.
pub(super) fn failed(e: Error) -> Response {
    Response::Failed(e.failure())
}

/// An extension's cache entry as `ext cache list` shows it (generic
/// artifacts, which have no extension type, are not shown there).
fn cache_entry(e: crate::artifacts::IndexEntry) -> Option<CacheEntry> {
    Some(CacheEntry {
        ext_type: e.kind.ext_type()?,
        name: e.name,
        version: e.version,
        source: e.source,
        size: e.size,
        digest: e.digest,
        cached_at: crate::backend::rfc3339_secs(e.cached_at),
        last_used: crate::backend::rfc3339_secs(e.last_used),
    })
}

/// The final answer to one request, without a socket: what a connection
/// sends after the request's progress frames (errors rendered by
/// [`failed`]). For tests and in-process callers.
pub async fn answer(app: &Arc<App>, req: Request) -> Response {
    let (progress, _rx) = crate::progress::ProgressTx::channel();
    dispatch(app, req, &progress).await.unwrap_or_else(failed)
}

/// Runs one request against `app`, reporting progress into `progress`.
/// `Hello` is the connection's business: here it is refused.
pub(super) async fn dispatch(
    app: &Arc<App>,
    req: Request,
    progress: &crate::progress::ProgressTx,
) -> Result<Response, Error> {
    let reg = &app.catalogue;
    Ok(match req {
        Request::Hello { .. } => return Err(Error::invalid_request("hello was already sent")),
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
            let t = app.type_of(ext_type, &name).await?;
            let mut rec = reg.version_record(t, &name, version.as_deref()).await?;
            reg.artifacts().annotate(&mut rec);
            Response::Extension(rec)
        }
        Request::Versions { ext_type, name } => {
            let t = app.type_of(ext_type, &name).await?;
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
            progress.send(extreg_shared::protocol::Phase::Resolve, 0, None);
            let (t, c) = app.target(ext_type, &name, &constraint).await?;
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
            let (ext_type, constraint) = app.target(ext_type, &name, &constraint).await?;
            Response::Loaded(
                app.loader
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
        Request::Loaded => Response::LoadedList(app.loader.loaded()),
        Request::Publish {
            path,
            version,
            dry_run,
            force,
        } => {
            progress.send(extreg_shared::protocol::Phase::Push, 0, None);
            Response::Published(
                app.publish_reporting(
                    extreg_shared::protocol::PublishSpec {
                        path,
                        version,
                        dry_run,
                        force,
                        registry: None,
                        namespace: None,
                    },
                    progress,
                )
                .await?,
            )
        }
        Request::Delete {
            ext_type,
            name,
            version,
        } => Response::Deleted {
            reference: app.delete(ext_type, &name, &version).await?,
        },
        Request::Health => Response::Health(app.health().await),
        Request::CacheList => Response::CacheEntries(
            app.cache_entries()
                .into_iter()
                .filter_map(cache_entry)
                .collect(),
        ),
        Request::CacheStats => Response::CacheStats(reg.cache_stats()),
        Request::CacheClear {
            ext_type,
            name,
            all,
        } => {
            let (entries, bytes) = app.cache_clear(ext_type, name.as_deref(), all)?;
            Response::CacheRemoved { entries, bytes }
        }
        Request::CacheVerify => {
            let r = app.cache_verify().await;
            Response::CacheVerified {
                checked: r.checked,
                bytes: r.bytes,
                damaged: r.damaged.into_iter().filter_map(cache_entry).collect(),
            }
        }
        Request::CachePrune { days } => {
            let (entries, bytes) = app.cache_prune(days);
            Response::CacheRemoved { entries, bytes }
        }
        Request::PublishTo(spec) => {
            progress.send(extreg_shared::protocol::Phase::Push, 0, None);
            Response::Published(app.publish_reporting(spec, progress).await?)
        }
        Request::TestOci(spec) => {
            let configured = app.oci_config.as_ref().zip(app.oci.as_ref());
            Response::OciDiagnosis(
                crate::backend::oci::diagnose::run(
                    configured,
                    &spec,
                    &crate::auth_files::AuthEnv::from_env(),
                )
                .await
                .map_err(|m| {
                    Error::invalid_request(m).with_field(extreg_shared::Field::Registry)
                })?,
            )
        }
        Request::OciArtifacts { namespace } => {
            Response::OciArtifacts(app.oci_artifacts(&namespace).await?.as_ref().clone())
        }
        Request::OciArtifactPull {
            namespace,
            name,
            version,
        } => Response::OciArtifactPulled(
            app.pull_oci_artifact(&namespace, &name, version.as_deref(), progress)
                .await?,
        ),
        Request::Discover { ext_type, refresh } => {
            Response::Discovered(app.discover(ext_type, refresh).await?)
        }
        Request::CachePruneOlderThan { seconds } => {
            let (entries, bytes) = app.cache_prune_older_than(seconds);
            Response::CacheRemoved { entries, bytes }
        }
        Request::Complete { ext_type, name } => {
            if let Some(n) = &name {
                extreg_shared::validate_name(n)?;
            }
            Response::Completions(crate::complete::candidates(app, ext_type, name.as_deref()))
        }
        Request::LoadTree {
            ext_type,
            name,
            constraint,
            pre,
            source,
            force,
        } => {
            let root = app.root(ext_type, &name, &constraint, pre, source).await?;
            Response::LoadedTree(
                crate::deps::load_tree(reg, &app.loader, root, force, progress).await?,
            )
        }
        Request::LoadLocked { entries, force } => Response::LoadedTree(
            crate::deps::load_locked(reg, &app.loader, entries, force, progress).await?,
        ),
        Request::Deps {
            ext_type,
            name,
            constraint,
            pre,
            source,
        } => {
            let root = app.root(ext_type, &name, &constraint, pre, source).await?;
            let closure = crate::deps::resolve(reg, root, None).await?;
            Response::DepsTree(crate::deps::tree(&closure))
        }
        Request::Sign {
            path,
            version,
            secret_key,
            password,
            dry_run,
        } => Response::Signed(
            app.sign(&path, &version, &secret_key, password, dry_run)
                .await?,
        ),
    })
}

//! From repositories and releases to extension records: discovery, the
//! version entries of a repository, and checksum files.

use super::model::{enc, parse_sums, pick_asset, Asset, Release, Repo, SumsRef};
use super::{parse_repo_name, Inner, MAX_SUMS_BYTES, MAX_SUMS_CACHED, NO_ASSET};
use crate::backend::{http, newest, utc, BackendError, VersionEntry};
use extreg_shared::{parse_version, Extension, ExtensionType, Source};
use futures::{StreamExt, TryStreamExt};
use reqwest::Url;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

impl Inner {
    /// Every extension, **pipelined**: the release listing of a repository
    /// starts as soon as the page of the repository list naming it has
    /// arrived, while later pages are still on the way; at most
    /// `concurrency` requests are in flight in all (the permits), and up to
    /// twice as many repositories are worked on at once. A repository whose
    /// releases fail is skipped (see [`crate::backend::isolate`]); a page of
    /// the repository list that fails after the first one is skipped the
    /// same way, named `{org} repositories after page N`, and the
    /// repositories of the pages before it are still listed.
    pub(super) async fn list(&self) -> Result<Vec<Extension>, BackendError> {
        let (tx, rx) = futures::channel::mpsc::unbounded();
        let discover = async move {
            self.extension_repos(|found| {
                // The receiver lives until every repository is done.
                let _ = tx.unbounded_send(found);
            })
            .await
            // `tx` drops here: the stream of repositories ends.
        };
        let work = rx
            .map(|(t, name, repo)| self.list_repo(t, name, repo))
            .buffer_unordered(self.concurrency * 2)
            .collect::<Vec<_>>();
        let (discovered, mut results) = tokio::join!(discover, work);
        if let Err((pages, e)) = discovered {
            if pages == 0 {
                return Err(e);
            }
            results.push((
                format!("{} repositories after page {pages}", self.org),
                Err(e),
            ));
        }
        super::super::isolate("gitea", results, &self.skipped)
    }

    /// The newest version of one repository, for [`Inner::list`].
    async fn list_repo(
        &self,
        t: ExtensionType,
        name: String,
        repo: Repo,
    ) -> (String, Result<Option<Extension>, BackendError>) {
        let what = format!("releases of {}/{}", self.org, repo.name);
        let path = format!("{}/releases", self.repo_path(&repo.name));
        let r = async {
            let releases = match self.all_pages::<Release>(&path, &what).await {
                Ok(r) => r,
                // Deleted or hidden since the repository listing.
                Err(BackendError::NotFound(_)) => return Ok(None),
                Err(e) => return Err(e),
            };
            let entries = self.repo_versions(t, &name, &repo, releases, false).await?;
            Ok(newest(&entries).map(|e| e.record.clone()))
        }
        .await;
        (repo.name, r)
    }

    /// Hands each extension repository of the organization to `found` as
    /// its page arrives (archived ones and repeats skipped). On failure,
    /// the error comes with the number of pages handed over before it.
    pub(super) async fn extension_repos(
        &self,
        mut found: impl FnMut((ExtensionType, String, Repo)),
    ) -> Result<(), (u64, BackendError)> {
        let what = format!("repositories of organization '{}'", self.org);
        let mut seen = HashSet::new();
        let mut pages = 0;
        self.each_page(&format!("/orgs/{}/repos", enc(&self.org)), &what, |repos: Vec<Repo>| {
            pages += 1;
            for r in repos {
                if !seen.insert(r.id) && r.id != 0 {
                    continue;
                }
                let Some((t, name)) = parse_repo_name(&r.name) else {
                    continue;
                };
                if r.archived {
                    tracing::debug!(repo = %r.name, "skipping archived gitea repository");
                    continue;
                }
                found((t, name.to_string(), r));
            }
        })
        .await
        .map_err(|e| {
            let e = match e {
                BackendError::NotFound(_) => BackendError::Upstream(format!(
                    "organization '{}' not found on {} (404); check [gitea] organization and token access",
                    self.org, self.shown
                )),
                e => e,
            };
            (pages, e)
        })
    }

    /// The versions of one repository, with checksums read for all of them
    /// (`all_sums`) or only for the newest.
    pub(super) async fn repo_versions(
        &self,
        t: ExtensionType,
        name: &str,
        repo: &Repo,
        releases: Vec<Release>,
        all_sums: bool,
    ) -> Result<Vec<VersionEntry>, BackendError> {
        let mut seen_ids = HashSet::new();
        let mut by_version: BTreeMap<semver::Version, (VersionEntry, Option<SumsRef>)> =
            BTreeMap::new();
        for rel in releases {
            if rel.draft || (!seen_ids.insert(rel.id) && rel.id != 0) {
                continue;
            }
            let Ok(semver) = parse_version(&rel.tag_name) else {
                tracing::debug!(repo = %repo.name, tag = %rel.tag_name, "skipping a release whose tag is not semver");
                continue;
            };
            if by_version.contains_key(&semver) {
                tracing::debug!(repo = %repo.name, tag = %rel.tag_name, "skipping a second release of the same version");
                continue;
            }
            let entry = self.entry(t, name, repo, &rel, semver.clone());
            by_version.insert(semver, entry);
        }
        let mut entries: Vec<(VersionEntry, Option<SumsRef>)> = by_version.into_values().collect();
        let wanted: Vec<usize> = if all_sums {
            (0..entries.len()).collect()
        } else {
            let plain: Vec<VersionEntry> = entries.iter().map(|(e, _)| e.clone()).collect();
            newest(&plain)
                .and_then(|n| plain.iter().position(|e| e.semver == n.semver))
                .into_iter()
                .collect()
        };
        let jobs: Vec<(usize, SumsRef)> = wanted
            .into_iter()
            .filter_map(|i| entries[i].1.take().map(|s| (i, s)))
            .collect();
        let found: Vec<(usize, Option<String>)> = futures::stream::iter(jobs)
            .map(|(i, s)| async move { self.checksum(&s).await.map(|c| (i, c)) })
            .buffer_unordered(self.concurrency)
            .try_collect()
            .await?;
        for (i, c) in found {
            entries[i].0.record.checksum = c;
        }
        Ok(entries.into_iter().map(|(e, _)| e).collect())
    }

    pub(super) fn download_url(&self, repo: &str, tag: &str, asset: &Asset) -> String {
        match &asset.browser_download_url {
            Some(u)
                if Url::parse(u)
                    .is_ok_and(|p| p.origin().ascii_serialization() == self.up.shown) =>
            {
                u.clone()
            }
            _ => format!(
                "{}/{}/{}/releases/download/{}/{}",
                self.base,
                enc(&self.org),
                enc(repo),
                enc(tag),
                enc(&asset.name)
            ),
        }
    }

    pub(super) fn entry(
        &self,
        t: ExtensionType,
        name: &str,
        repo: &Repo,
        rel: &Release,
        semver: semver::Version,
    ) -> (VersionEntry, Option<SumsRef>) {
        let version = semver.to_string();
        let assets = rel.assets.as_deref().unwrap_or_default();
        let asset = pick_asset(assets, &repo.name, name, &version);
        let mut sums = None;
        let (locator, revision, size) = match asset {
            Some(a) => {
                let single = format!("{}.sha256", a.name);
                let sums_asset = assets
                    .iter()
                    .find(|s| s.name == "SHA256SUMS")
                    .map(|s| (s, false))
                    .or_else(|| assets.iter().find(|s| s.name == single).map(|s| (s, true)));
                sums = sums_asset.map(|(s, single)| SumsRef {
                    url: self.download_url(&repo.name, &rel.tag_name, s),
                    key: format!(
                        "{}:{}:{}",
                        s.id,
                        s.size,
                        s.created_at.as_deref().unwrap_or("")
                    ),
                    target: a.name.clone(),
                    single,
                });
                (
                    self.download_url(&repo.name, &rel.tag_name, a),
                    format!(
                        "gitea:{}:{}:{}",
                        a.id,
                        a.size,
                        a.created_at.as_deref().unwrap_or("")
                    ),
                    Some(a.size),
                )
            }
            None => (
                format!("{NO_ASSET}{}/{}/{}", self.org, repo.name, rel.tag_name),
                format!("gitea:none:{}", rel.id),
                None,
            ),
        };
        let signed = asset.is_some_and(|a| {
            let sig = format!("{}.minisig", a.name);
            assets.iter().any(|s| s.name == sig)
        });
        let entry = VersionEntry {
            record: Extension {
                name: name.to_string(),
                ext_type: t,
                version,
                description: repo.description.clone().unwrap_or_default(),
                author: rel
                    .author
                    .as_ref()
                    .and_then(|a| a.login.clone())
                    .filter(|l| !l.is_empty()),
                repository: repo.html_url.clone().filter(|u| !u.is_empty()),
                source: Source::Gitea,
                published_at: rel
                    .published_at
                    .as_deref()
                    .or(rel.created_at.as_deref())
                    .map(utc),
                download_url: None,
                checksum: None,
                size,
                tags: repo.topics.clone().unwrap_or_default(),
                prerelease: rel.prerelease || !semver.pre.is_empty(),
                stale: false,
                requires: vec![],
                dependencies: vec![],
                signature: extreg_shared::SignatureState {
                    signed: Some(signed),
                    ..Default::default()
                },
                mismatch: None,
            },
            semver,
            locator,
            revision,
        };
        (entry, sums)
    }

    /// The `sha256:<hex>` a checksum file gives for its target, if any.
    pub(super) async fn checksum(&self, s: &SumsRef) -> Result<Option<String>, BackendError> {
        let cached = self.sums.lock().get(&s.key).cloned();
        let table = match cached {
            Some(t) => t,
            None => {
                let what = format!("checksum file of {}", s.target);
                let text = {
                    let _permit =
                        self.permits.acquire().await.map_err(|_| {
                            BackendError::Io("gitea backend is shutting down".into())
                        })?;
                    let resp = match self.get(&s.url, &what, true).await {
                        Ok(r) => r,
                        Err(BackendError::NotFound(m)) => {
                            tracing::warn!(
                                "gitea: {m}; the download will not be verified against it"
                            );
                            return Ok(None);
                        }
                        Err(e) => return Err(e),
                    };
                    let bytes = http::read_limited(resp, MAX_SUMS_BYTES)
                        .await
                        .map_err(|e| self.read_error(e, &what))?;
                    String::from_utf8_lossy(&bytes).into_owned()
                };
                let table = Arc::new(parse_sums(&text, s.single.then_some(s.target.as_str())));
                let mut cache = self.sums.lock();
                if cache.len() >= MAX_SUMS_CACHED {
                    cache.clear();
                }
                cache.insert(s.key.clone(), table.clone());
                table
            }
        };
        let found = table.get(&s.target).map(|h| format!("sha256:{h}"));
        if found.is_none() {
            tracing::warn!(asset = %s.target, "gitea: the release's checksum file has no line for its tarball");
        }
        Ok(found)
    }
}

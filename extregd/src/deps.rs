//! Dependencies between extensions: the `dependencies` of `extension.yaml`.
//!
//! **Syntax** of one entry: `[type/]name[@constraint]`:
//!
//! | written | means |
//! |---|---|
//! | `containerd` | the newest stable `containerd` of the one type that has that name |
//! | `taskserv/containerd` | the newest stable taskserv `containerd` |
//! | `taskserv/containerd@^1.7` | a version satisfying `^1.7` (constraints as `ext load --version`) |
//! | `containerd@>=1.6, <2` | any constraint, spaces and commas allowed after the `@` |
//!
//! **Resolution** ([`solve`], pure): a depth-first search that takes, for
//! each extension reached, its newest version satisfying every requirement
//! seen so far, adds that version's own dependencies, and backtracks to an
//! older version when a choice leads to a conflict. So the extension asked
//! for gets the newest version for which the whole closure can be satisfied,
//! and so on down. A requirement that no version can meet, or a dependency
//! cycle among the chosen versions, is an error naming the chain of
//! requirements that led to it. Pre-releases are chosen for a dependency only
//! when its constraint names one.
//!
//! **Source of truth.** A version's dependencies are read from the
//! `extension.yaml` inside its verified artifact (fetched into the artifact
//! cache on first use), never from listing metadata alone.

use crate::backend::VersionEntry;
use crate::catalogue::Catalogue;
use crate::error::Error;
use crate::manifest::Manifest;
use extreg_shared::protocol::DepNode;
use extreg_shared::{validate_name, Constraint, ErrorKind, ExtensionType, Source};
use semver::Version;
use std::collections::{BTreeMap, HashMap};

/// `(type, name)` of an extension.
pub type Key = (ExtensionType, String);

fn show(k: &Key) -> String {
    format!("{}/{}", k.0, k.1)
}

/// One parsed `dependencies` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DepSpec {
    pub ext_type: Option<ExtensionType>,
    pub name: String,
    pub constraint: Constraint,
    /// As written.
    pub text: String,
}

impl DepSpec {
    pub fn parse(s: &str) -> Result<DepSpec, String> {
        let text = s.trim();
        let (target, constraint) = match text.split_once('@') {
            Some((t, c)) => (t.trim(), c.trim()),
            None => (text, ""),
        };
        let (ext_type, name) = match target.split_once('/') {
            Some((t, n)) => (
                Some(
                    t.trim()
                        .parse::<ExtensionType>()
                        .map_err(|e| format!("dependency '{text}': {e}"))?,
                ),
                n.trim(),
            ),
            None => (None, target),
        };
        validate_name(name).map_err(|e| format!("dependency '{text}': {e}"))?;
        if constraint.is_empty() && text.contains('@') {
            return Err(format!("dependency '{text}': nothing after '@'"));
        }
        let constraint =
            Constraint::parse(constraint).map_err(|e| format!("dependency '{text}': {e}"))?;
        Ok(DepSpec {
            ext_type,
            name: name.to_string(),
            constraint,
            text: text.to_string(),
        })
    }
}

/// A requirement on one extension, with the type already known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    pub target: Key,
    pub constraint: Constraint,
    pub text: String,
    pub allow_pre: bool,
}

/// A version as the resolver sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub version: Version,
    /// Flagged pre-release by its backend.
    pub prerelease: bool,
}

/// What the resolver knows; `None` means "not known yet, go and find out".
pub trait Universe {
    fn versions(&self, key: &Key) -> Option<Vec<Candidate>>;
    fn deps(&self, key: &Key, v: &Version) -> Option<Vec<Requirement>>;
}

/// What the resolver needs to know before it can go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Need {
    Versions(Key),
    Deps(Key, Version),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Cycle(String),
    #[error("dependency resolution gave up after {0} steps (too many combinations)")]
    TooComplex(usize),
}

/// The chosen versions, and their dependency edges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Solution {
    pub picks: BTreeMap<Key, Version>,
    /// Every chosen extension, dependencies before their dependents, the
    /// root last.
    pub order: Vec<Key>,
    /// The requirements of each chosen version, in declared order.
    pub edges: BTreeMap<Key, Vec<Requirement>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Done(Solution),
    Need(Need),
}

/// Bound on versions tried in one resolution.
pub const MAX_STEPS: usize = 10_000;

struct Req {
    r: Requirement,
    from: Option<Key>,
}

struct Search<'a, U: Universe> {
    u: &'a U,
    reqs: Vec<Req>,
    picks: Vec<(Key, Candidate)>,
    steps: usize,
    failure: Option<String>,
}

enum Stop {
    Dead,
    Need(Need),
    Limit,
}

impl<U: Universe> Search<'_, U> {
    fn pick(&self, k: &Key) -> Option<&Candidate> {
        self.picks.iter().find(|(x, _)| x == k).map(|(_, c)| c)
    }

    /// The requirement chain that brought `k` in: root first.
    fn chain(&self, k: &Key) -> String {
        let mut parts = Vec::new();
        let mut cur = Some(k.clone());
        let mut guard = 0;
        while let Some(key) = cur {
            guard += 1;
            let v = self
                .pick(&key)
                .map(|c| format!(" {}", c.version))
                .unwrap_or_default();
            parts.push(format!("{}{v}", show(&key)));
            cur = self
                .reqs
                .iter()
                .find(|r| r.r.target == key)
                .and_then(|r| r.from.clone());
            if guard > self.picks.len() + 1 {
                break;
            }
        }
        parts.reverse();
        parts.join(" -> ")
    }

    fn why(&self, r: &Req) -> String {
        match &r.from {
            None => format!("'{}' asked for", r.r.text),
            Some(f) => format!("'{}' required by {}", r.r.text, self.chain(f)),
        }
    }

    fn fail(&mut self, msg: String) {
        if self.failure.is_none() {
            self.failure = Some(msg);
        }
    }

    fn go(&mut self) -> Result<(), Stop> {
        let Some(key) = self
            .reqs
            .iter()
            .find(|r| self.pick(&r.r.target).is_none())
            .map(|r| r.r.target.clone())
        else {
            return Ok(());
        };
        let versions = self
            .u
            .versions(&key)
            .ok_or_else(|| Stop::Need(Need::Versions(key.clone())))?;
        let on_key: Vec<usize> = (0..self.reqs.len())
            .filter(|&i| self.reqs[i].r.target == key)
            .collect();
        let mut cands: Vec<Candidate> = versions
            .iter()
            .filter(|c| {
                on_key.iter().all(|&i| {
                    let r = &self.reqs[i].r;
                    r.constraint.matches(&c.version, c.prerelease, r.allow_pre)
                })
            })
            .cloned()
            .collect();
        cands.sort_by(|a, b| b.version.cmp(&a.version));
        if cands.is_empty() {
            let reasons: Vec<String> = on_key.iter().map(|&i| self.why(&self.reqs[i])).collect();
            let msg = if versions.is_empty() {
                format!(
                    "{} is not held by any backend ({})",
                    show(&key),
                    reasons.join("; ")
                )
            } else {
                let mut avail: Vec<&Version> = versions.iter().map(|c| &c.version).collect();
                avail.sort_by(|a, b| b.cmp(a));
                format!(
                    "no version of {} satisfies every requirement: {}; available: {}",
                    show(&key),
                    reasons.join("; "),
                    avail
                        .iter()
                        .map(|v| v.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            self.fail(msg);
            return Err(Stop::Dead);
        }
        for c in cands {
            let deps = self
                .u
                .deps(&key, &c.version)
                .ok_or_else(|| Stop::Need(Need::Deps(key.clone(), c.version.clone())))?;
            self.steps += 1;
            if self.steps > MAX_STEPS {
                return Err(Stop::Limit);
            }
            let (np, nr) = (self.picks.len(), self.reqs.len());
            self.picks.push((key.clone(), c.clone()));
            for d in deps {
                self.reqs.push(Req {
                    r: d,
                    from: Some(key.clone()),
                });
            }
            // The new requirements must hold for versions already chosen.
            let clash = self.reqs[nr..].iter().position(|r| {
                self.pick(&r.r.target).is_some_and(|p| {
                    !r.r.constraint
                        .matches(&p.version, p.prerelease, r.r.allow_pre)
                })
            });
            let res = match clash {
                Some(i) => {
                    let r = &self.reqs[nr + i];
                    let p = self.pick(&r.r.target).expect("picked").version.clone();
                    let msg = format!(
                        "conflict: {} 's requirement '{}' does not admit {} {p}, chosen for {}",
                        self.chain(&key),
                        r.r.text,
                        show(&r.r.target),
                        self.chain(&r.r.target),
                    )
                    .replace(" 's", "'s");
                    self.fail(msg);
                    Err(Stop::Dead)
                }
                None => self.go(),
            };
            match res {
                Ok(()) => return Ok(()),
                Err(Stop::Dead) => {
                    self.picks.truncate(np);
                    self.reqs.truncate(nr);
                }
                Err(other) => return Err(other),
            }
        }
        Err(Stop::Dead)
    }
}

/// Resolves `root` and everything it needs against what `u` knows: the
/// solution, what to find out first, or why there is none.
pub fn solve(u: &impl Universe, root: &Requirement) -> Result<Step, ResolveError> {
    let mut s = Search {
        u,
        reqs: vec![Req {
            r: root.clone(),
            from: None,
        }],
        picks: Vec::new(),
        steps: 0,
        failure: None,
    };
    match s.go() {
        Ok(()) => {}
        Err(Stop::Need(n)) => return Ok(Step::Need(n)),
        Err(Stop::Limit) => return Err(ResolveError::TooComplex(MAX_STEPS)),
        Err(Stop::Dead) => {
            return Err(ResolveError::Conflict(
                s.failure
                    .unwrap_or_else(|| format!("'{}' cannot be resolved", root.text)),
            ))
        }
    }
    let picks: BTreeMap<Key, Version> = s
        .picks
        .iter()
        .map(|(k, c)| (k.clone(), c.version.clone()))
        .collect();
    let mut edges: BTreeMap<Key, Vec<Requirement>> = BTreeMap::new();
    for (k, _) in &s.picks {
        edges.entry(k.clone()).or_default();
    }
    for r in &s.reqs {
        if let Some(f) = &r.from {
            edges.entry(f.clone()).or_default().push(r.r.clone());
        }
    }
    // Post-order from the root: dependencies first; a back edge is a cycle.
    let mut order = Vec::new();
    let mut stack: Vec<Key> = Vec::new();
    fn visit(
        k: &Key,
        picks: &BTreeMap<Key, Version>,
        edges: &BTreeMap<Key, Vec<Requirement>>,
        order: &mut Vec<Key>,
        stack: &mut Vec<Key>,
    ) -> Result<(), ResolveError> {
        if order.contains(k) {
            return Ok(());
        }
        if let Some(at) = stack.iter().position(|x| x == k) {
            let mut cyc: Vec<String> = stack[at..]
                .iter()
                .map(|x| format!("{} {}", show(x), picks[x]))
                .collect();
            cyc.push(format!("{} {}", show(k), picks[k]));
            return Err(ResolveError::Cycle(format!(
                "dependency cycle: {}",
                cyc.join(" -> ")
            )));
        }
        stack.push(k.clone());
        for r in edges.get(k).map(Vec::as_slice).unwrap_or_default() {
            visit(&r.target, picks, edges, order, stack)?;
        }
        stack.pop();
        order.push(k.clone());
        Ok(())
    }
    visit(&root.target, &picks, &edges, &mut order, &mut stack)?;
    Ok(Step::Done(Solution {
        picks,
        order,
        edges,
    }))
}

/// One chosen version with what was read from its artifact.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub entry: VersionEntry,
    pub manifest: Manifest,
    /// The artifact digest the dependencies were read from.
    pub digest: String,
    /// Resolution downloaded the artifact (it was not in the cache before).
    pub fetched: bool,
}

/// A resolution against the registry: every chosen version, dependencies
/// first, and the tree.
pub struct Closure {
    pub order: Vec<Resolved>,
    pub solution: Solution,
}

#[derive(Default)]
struct Known {
    versions: HashMap<Key, Vec<VersionEntry>>,
    deps: HashMap<(Key, Version), Vec<Requirement>>,
    read: HashMap<(Key, Version), (Manifest, String)>,
}

impl Universe for Known {
    fn versions(&self, key: &Key) -> Option<Vec<Candidate>> {
        self.versions.get(key).map(|vs| {
            vs.iter()
                .map(|e| Candidate {
                    version: e.semver.clone(),
                    prerelease: e.record.prerelease,
                })
                .collect()
        })
    }
    fn deps(&self, key: &Key, v: &Version) -> Option<Vec<Requirement>> {
        self.deps.get(&(key.clone(), v.clone())).cloned()
    }
}

fn dep_error(msg: String) -> Error {
    Error::new(ErrorKind::DependencyError, msg)
}

/// The manifest inside a verified artifact.
pub async fn manifest_of(art: crate::artifacts::ArtifactHandle) -> Result<Manifest, String> {
    tokio::task::spawn_blocking(move || {
        let reader = art.into_reader().map_err(|e| e.to_string())?;
        let bytes = crate::backend::local::manifest_from_reader(reader)?;
        Manifest::parse(&bytes).map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| format!("reading the manifest failed: {e}"))?
}

/// What `ext deps` and `ext load` (with dependencies) name: the root of a
/// resolution.
pub struct Root<'a> {
    pub ext_type: ExtensionType,
    pub name: &'a str,
    pub constraint: Constraint,
    /// The constraint as the user wrote it (kept in messages and the lock).
    pub text: &'a str,
    /// Whether pre-releases may be chosen.
    pub pre: bool,
    /// The backend the root must come from (not its dependencies).
    pub source: Option<Source>,
}

/// Resolves the closure of `root` against the registry (see the module
/// docs). With `progress`, downloads made to read manifests report
/// progress.
pub async fn resolve(
    reg: &Catalogue,
    root: Root<'_>,
    progress: Option<&crate::progress::ProgressTx>,
) -> Result<Closure, Error> {
    let Root {
        ext_type,
        name,
        constraint,
        text,
        pre,
        source,
    } = root;
    let root_key: Key = (ext_type, name.to_string());
    let root = Requirement {
        target: root_key.clone(),
        constraint,
        text: if text.trim().is_empty() {
            format!("{ext_type}/{name}")
        } else {
            format!("{ext_type}/{name}@{text}")
        },
        allow_pre: pre,
    };
    // The root's own version first: a constraint nothing satisfies is the
    // same labelled not-found error as a plain load.
    reg.resolve_from(ext_type, name, &root.constraint, pre, source)
        .await?;
    let mut known = Known::default();
    let mut fetched = std::collections::HashSet::new();
    for _ in 0..MAX_STEPS {
        match solve(&known, &root).map_err(|e| dep_error(e.to_string()))? {
            Step::Need(Need::Versions(k)) => {
                let vs = match source.filter(|_| k == root_key) {
                    Some(src) => reg
                        .source_versions(k.0, &k.1, src)
                        .await
                        .map(|v| v.entries.clone()),
                    None => reg.versions(k.0, &k.1).await.map(|v| v.entries.clone()),
                };
                let vs = match vs {
                    // A flagged version (artifact of another version) is
                    // never a candidate.
                    Ok(mut v) => {
                        v.retain(|e| e.record.mismatch.is_none());
                        v
                    }
                    Err(e) if e.kind == ErrorKind::NotFound && k != root_key => Vec::new(),
                    Err(e) => return Err(e),
                };
                known.versions.insert(k, vs);
            }
            Step::Need(Need::Deps(k, v)) => {
                let entry = known.versions[&k]
                    .iter()
                    .find(|e| e.semver == v)
                    .cloned()
                    .expect("a candidate comes from the known versions");
                let (m, digest, was_fetched) = read_entry(reg, &entry, progress).await?;
                if was_fetched {
                    fetched.insert((k.clone(), v.clone()));
                }
                let mut reqs = Vec::new();
                for d in &m.dependencies {
                    let spec = DepSpec::parse(d).map_err(|e| {
                        Error::new(
                            ErrorKind::InvalidArchive,
                            format!("extension.yaml of {} {v}: {e}", show(&k)),
                        )
                    })?;
                    let t = match spec.ext_type {
                        Some(t) => t,
                        None => reg.resolve_type(&spec.name).await.map_err(|e| {
                            dep_error(format!(
                                "{} {v} depends on '{}': {}",
                                show(&k),
                                spec.text,
                                e.message
                            ))
                        })?,
                    };
                    reqs.push(Requirement {
                        target: (t, spec.name),
                        constraint: spec.constraint,
                        text: spec.text,
                        allow_pre: false,
                    });
                }
                known.deps.insert((k.clone(), v.clone()), reqs);
                known.read.insert((k, v), (m, digest));
            }
            Step::Done(solution) => {
                let mut order = Vec::new();
                for k in &solution.order {
                    let v = &solution.picks[k];
                    let entry = known.versions[k]
                        .iter()
                        .find(|e| &e.semver == v)
                        .cloned()
                        .expect("chosen from the known versions");
                    let (manifest, digest) = known.read[&(k.clone(), v.clone())].clone();
                    order.push(Resolved {
                        entry,
                        manifest,
                        digest,
                        fetched: fetched.contains(&(k.clone(), v.clone())),
                    });
                }
                return Ok(Closure { order, solution });
            }
        }
    }
    Err(dep_error(format!(
        "dependency resolution of {} gave up",
        show(&root_key)
    )))
}

/// Fetches (or takes from the cache) one version's verified artifact and
/// reads its `extension.yaml`, which must name that version.
async fn read_entry(
    reg: &Catalogue,
    entry: &VersionEntry,
    progress: Option<&crate::progress::ProgressTx>,
) -> Result<(Manifest, String, bool), Error> {
    // A download made while resolving is this load's download: it reports
    // progress (and can be cancelled) like the load's own fetch.
    let art = match progress {
        Some(p) => crate::progress::artifact(reg, entry, false, p).await?,
        None => reg.artifact_of(entry, false).await?,
    };
    let (digest, hit) = (art.digest.clone(), art.hit);
    let m = manifest_of(art).await.map_err(|e| {
        Error::new(
            ErrorKind::InvalidArchive,
            format!(
                "{}/{} {}: {e}",
                entry.record.ext_type, entry.record.name, entry.record.version
            ),
        )
    })?;
    if m.name != entry.record.name
        || m.ext_type != entry.record.ext_type
        || m.version != entry.semver
    {
        return Err(Error::new(
            ErrorKind::InvalidArchive,
            format!(
                "the artifact of {}/{} {} holds extension.yaml of {}/{} {}",
                entry.record.ext_type,
                entry.record.name,
                entry.record.version,
                m.ext_type,
                m.name,
                m.version
            ),
        ));
    }
    Ok((m, digest, !hit))
}

/// The tree of a closure, from its root.
pub fn tree(c: &Closure) -> DepNode {
    fn node(c: &Closure, k: &Key, wanted: String, depth: usize) -> DepNode {
        let r = c
            .order
            .iter()
            .find(|r| r.entry.record.ext_type == k.0 && r.entry.record.name == k.1)
            .expect("every key of the solution is resolved");
        let children = if depth > 64 {
            Vec::new()
        } else {
            c.solution
                .edges
                .get(k)
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(|req| node(c, &req.target, req.text.clone(), depth + 1))
                .collect()
        };
        DepNode {
            ext_type: k.0,
            name: k.1.clone(),
            version: r.entry.record.version.clone(),
            source: r.entry.record.source,
            wanted,
            requires: r.manifest.requires.clone(),
            dependencies: children,
        }
    }
    let root = c.order.last().expect("a closure has its root");
    let k = (root.entry.record.ext_type, root.entry.record.name.clone());
    node(c, &k, String::new(), 0)
}

/// `ext load` with dependencies: resolve the closure, load it in
/// dependency order, and say what to lock.
pub async fn load_tree(
    reg: &Catalogue,
    loader: &crate::load::Loader,
    root: Root<'_>,
    force: bool,
    progress: &crate::progress::ProgressTx,
) -> Result<extreg_shared::protocol::TreeLoad, Error> {
    let root_key = (root.ext_type, root.name.to_string());
    let c = resolve(reg, root, Some(progress)).await?;
    let root = root_key;
    let mut order = Vec::new();
    let mut locked = Vec::new();
    for r in &c.order {
        let mut res = loader
            .load_entry(reg, r.entry.clone(), force, progress)
            .await?;
        // Resolution read the manifest from this artifact: a download it
        // made is this load's download.
        if r.fetched {
            res.from_cache = false;
        }
        if !res.checksum.eq_ignore_ascii_case(&r.digest) {
            return Err(Error::new(
                ErrorKind::IntegrityError,
                format!(
                    "{}/{} {} changed while loading: resolved from {}, loaded {}",
                    res.ext_type, res.name, res.version, r.digest, res.checksum
                ),
            ));
        }
        let k = (res.ext_type, res.name.clone());
        locked.push(extreg_shared::lockfile::LockedExtension {
            ext_type: res.ext_type,
            name: res.name.clone(),
            version: res.version.clone(),
            source: res.source,
            digest: res.checksum.clone(),
            dependencies: c
                .solution
                .edges
                .get(&k)
                .map(|rs| rs.iter().map(|r| show(&r.target)).collect())
                .unwrap_or_default(),
            root: k == root,
        });
        order.push(res);
    }
    Ok(extreg_shared::protocol::TreeLoad { order, locked })
}

/// `ext load --locked`: exactly these versions from these sources, in the
/// order given (dependencies first), refusing any digest that differs.
pub async fn load_locked(
    reg: &Catalogue,
    loader: &crate::load::Loader,
    entries: Vec<extreg_shared::lockfile::LockedExtension>,
    force: bool,
    progress: &crate::progress::ProgressTx,
) -> Result<extreg_shared::protocol::TreeLoad, Error> {
    let mut order = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        validate_name(&e.name)?;
        let v = extreg_shared::parse_version(&e.version)?;
        for d in &e.dependencies {
            if !entries[..i].iter().any(|x| &x.key() == d) {
                return Err(Error::invalid_request(format!(
                    "the lockfile's {} needs {d}, which is not locked before it",
                    e.key()
                )));
            }
        }
        let exact = Constraint::parse(&format!("={v}"))?;
        let entry = reg
            .resolve_from(e.ext_type, &e.name, &exact, true, Some(e.source))
            .await?;
        let differs = |now: &str| {
            Error::new(
                ErrorKind::IntegrityError,
                format!(
                    "{} {} from {}: the lockfile says {}, but the {} backend now has {now}; refusing to load (run `ext load` without --locked to update the lockfile)",
                    e.key(),
                    e.version,
                    e.source,
                    e.digest,
                    e.source
                ),
            )
        };
        if let Some(c) = &entry.record.checksum {
            if !c.eq_ignore_ascii_case(&e.digest) {
                return Err(differs(c));
            }
        }
        let res = loader.load_entry(reg, entry, force, progress).await?;
        if !res.checksum.eq_ignore_ascii_case(&e.digest) {
            return Err(differs(&res.checksum));
        }
        order.push(res);
    }
    Ok(extreg_shared::protocol::TreeLoad {
        order,
        locked: entries,
    })
}

#[cfg(test)]
mod tests;

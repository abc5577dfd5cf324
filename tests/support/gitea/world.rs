//! What the stand-in serves: organizations, repositories, releases,
//! assets and tokens, and builders for tests.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, Ordering};

static NEXT_ID: AtomicI64 = AtomicI64::new(1000);

fn next_id() -> i64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// A creation time that grows with each call, in Gitea's format.
fn next_time() -> String {
    static N: AtomicI64 = AtomicI64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    format!(
        "2024-{:02}-{:02}T{:02}:{:02}:00Z",
        1 + (n / (28 * 1440)) % 12,
        1 + (n / 1440) % 28,
        (n / 60) % 24,
        n % 60
    )
}

#[derive(Debug, Clone)]
pub struct AssetFx {
    pub id: i64,
    pub name: String,
    pub bytes: Vec<u8>,
    pub created_at: String,
    pub uuid: String,
    pub download_count: i64,
}

#[derive(Debug, Clone)]
pub struct ReleaseFx {
    pub id: i64,
    pub tag_name: String,
    pub name: String,
    pub body: String,
    pub draft: bool,
    pub prerelease: bool,
    pub created_at: String,
    pub author: String,
    pub assets: Vec<AssetFx>,
}

impl ReleaseFx {
    /// Attaches a file.
    pub fn asset(&mut self, name: &str, bytes: &[u8]) -> &mut Self {
        let id = next_id();
        self.assets.push(AssetFx {
            id,
            name: name.to_string(),
            bytes: bytes.to_vec(),
            created_at: self.created_at.clone(),
            uuid: format!("00000000-0000-4000-8000-{id:012}"),
            download_count: 0,
        });
        self
    }

    /// Attaches `SHA256SUMS` for every asset attached so far.
    pub fn sha256sums(&mut self) -> &mut Self {
        use sha2::Digest;
        let text: String = self
            .assets
            .iter()
            .map(|a| {
                format!(
                    "{}  {}\n",
                    hex::encode(sha2::Sha256::digest(&a.bytes)),
                    a.name
                )
            })
            .collect();
        self.asset("SHA256SUMS", text.as_bytes())
    }

    pub fn draft(&mut self) -> &mut Self {
        self.draft = true;
        self
    }

    pub fn prerelease(&mut self) -> &mut Self {
        self.prerelease = true;
        self
    }
}

#[derive(Debug, Clone)]
pub struct RepoFx {
    pub id: i64,
    pub name: String,
    pub description: String,
    pub topics: Vec<String>,
    pub archived: bool,
    pub private: bool,
    pub created_at: String,
    pub releases: Vec<ReleaseFx>,
}

impl RepoFx {
    pub fn describe(&mut self, description: &str, topics: &[&str]) -> &mut Self {
        self.description = description.to_string();
        self.topics = topics.iter().map(|t| t.to_string()).collect();
        self
    }

    /// Adds (or returns) the release of `tag`.
    pub fn release(&mut self, tag: &str) -> &mut ReleaseFx {
        if let Some(i) = self.releases.iter().position(|r| r.tag_name == tag) {
            return &mut self.releases[i];
        }
        self.releases.push(ReleaseFx {
            id: next_id(),
            tag_name: tag.to_string(),
            name: format!("Release {tag}"),
            body: format!("Notes for {tag}"),
            draft: false,
            prerelease: false,
            created_at: next_time(),
            author: "release-bot".to_string(),
            assets: Vec::new(),
        });
        self.releases.last_mut().unwrap()
    }
}

#[derive(Debug, Clone, Default)]
pub struct OrgFx {
    pub id: i64,
    pub repos: BTreeMap<String, RepoFx>,
}

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Public and private repositories, no write (drafts hidden).
    Read,
    /// Read plus write: drafts are listed.
    Write,
    /// Public repositories only (a token of a user outside the org).
    Outsider,
}

/// Everything the stand-in serves.
#[derive(Debug, Default)]
pub struct World {
    pub orgs: BTreeMap<String, OrgFx>,
    pub tokens: HashMap<String, Access>,
}

impl World {
    pub fn org(&mut self, org: &str) -> &mut OrgFx {
        self.orgs.entry(org.to_string()).or_insert_with(|| OrgFx {
            id: next_id(),
            repos: BTreeMap::new(),
        })
    }

    /// Adds (or returns) a repository of `org`.
    pub fn repo(&mut self, org: &str, name: &str) -> &mut RepoFx {
        self.org(org)
            .repos
            .entry(name.to_string())
            .or_insert_with(|| RepoFx {
                id: next_id(),
                name: name.to_string(),
                description: String::new(),
                topics: Vec::new(),
                archived: false,
                private: false,
                created_at: next_time(),
                releases: Vec::new(),
            })
    }

    pub fn token(&mut self, token: &str, access: Access) {
        self.tokens.insert(token.to_string(), access);
    }
}

/// A release tarball holding `extension.yaml` for `{ty}/{name} {version}`.
pub fn extension_tarball(ty: &str, name: &str, version: &str, description: &str) -> Vec<u8> {
    crate::tar_gz(&[
        (
            "extension.yaml".to_string(),
            crate::manifest(ty, name, version, description, &[]).into_bytes(),
        ),
        (
            format!("kcl/{name}.k"),
            format!("# {name} {version} from gitea\n").into_bytes(),
        ),
    ])
}

/// Adds a repository `{name}{suffix}` to `org` with one release per version
/// in `versions` (tags as given), each carrying `{repo}.tar.gz` and, with
/// `sums`, a `SHA256SUMS`. Returns the tarballs by tag.
pub fn add_extension(
    w: &mut World,
    org: &str,
    ty: &str,
    name: &str,
    tags: &[&str],
    sums: bool,
) -> BTreeMap<String, Vec<u8>> {
    let suffix = match ty {
        "provider" => "_prov",
        "taskserv" => "_taskserv",
        "cluster" => "_cluster",
        other => panic!("unknown type {other}"),
    };
    let repo_name = format!("{name}{suffix}");
    let repo = w.repo(org, &repo_name);
    repo.describe(&format!("{name} {ty} from gitea"), &[ty, "gitea"]);
    let mut out = BTreeMap::new();
    for tag in tags {
        let version = tag.strip_prefix('v').unwrap_or(tag);
        let tgz = extension_tarball(ty, name, version, &format!("{name} {ty} from gitea"));
        let rel = repo.release(tag);
        rel.asset(&format!("{repo_name}.tar.gz"), &tgz);
        if sums {
            rel.sha256sums();
        }
        out.insert(tag.to_string(), tgz);
    }
    out
}

/// Adds `n` extension repositories `{prefix}00`, `{prefix}01`, ... to `org`,
/// of types provider, taskserv and cluster in turn, each with a release per
/// tag in `tags` (see [`add_extension`]).
pub fn add_extensions(w: &mut World, org: &str, prefix: &str, n: usize, tags: &[&str], sums: bool) {
    let types = ["provider", "taskserv", "cluster"];
    for i in 0..n {
        add_extension(w, org, types[i % 3], &format!("{prefix}{i:02}"), tags, sums);
    }
}

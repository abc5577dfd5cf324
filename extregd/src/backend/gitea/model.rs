//! Gitea's JSON (only the fields used; unknown ones are ignored) and the
//! pure rules applied to it: path encoding, checksum files, the asset rule.

use serde::Deserialize;
use std::collections::HashMap;

#[derive(Debug, Clone, Deserialize)]
pub(super) struct Repo {
    #[serde(default)]
    pub(super) id: i64,
    pub(super) name: String,
    #[serde(default)]
    pub(super) description: Option<String>,
    #[serde(default)]
    pub(super) html_url: Option<String>,
    #[serde(default)]
    pub(super) topics: Option<Vec<String>>,
    #[serde(default)]
    pub(super) archived: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub(super) struct User {
    #[serde(default)]
    pub(super) login: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub(super) struct Release {
    #[serde(default)]
    pub(super) id: i64,
    pub(super) tag_name: String,
    #[serde(default)]
    pub(super) draft: bool,
    #[serde(default)]
    pub(super) prerelease: bool,
    #[serde(default)]
    pub(super) created_at: Option<String>,
    #[serde(default)]
    pub(super) published_at: Option<String>,
    #[serde(default)]
    pub(super) author: Option<User>,
    #[serde(default)]
    pub(super) assets: Option<Vec<Asset>>,
}

#[derive(Debug, Clone, Deserialize)]
pub(super) struct Asset {
    #[serde(default)]
    pub(super) id: i64,
    pub(super) name: String,
    #[serde(default)]
    pub(super) size: u64,
    #[serde(default)]
    pub(super) created_at: Option<String>,
    #[serde(default)]
    pub(super) browser_download_url: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct ServerVersion {
    pub(super) version: String,
}

#[derive(Deserialize)]
pub(super) struct ApiErrorBody {
    #[serde(default)]
    pub(super) message: Option<String>,
}

pub(super) struct Page<T> {
    pub(super) items: Vec<T>,
    pub(super) total: Option<u64>,
    pub(super) has_next: bool,
    /// `sha256:` of the page's body: a page seen twice is a loop.
    pub(super) digest: String,
}

/// A version whose checksum file is still to be read.
pub(super) struct SumsRef {
    pub(super) url: String,
    pub(super) key: String,
    /// The tarball's name, the line to look for.
    pub(super) target: String,
    /// `{asset}.sha256` may hold a bare digest.
    pub(super) single: bool,
}

pub(super) use crate::backend::http::enc;

/// Parses a checksum file into `file name -> lowercase hex`. Lines are
/// `<hex>  <file>` or `<hex> *<file>`; with `bare_for`, a line holding only
/// a digest counts for that file.
pub(super) fn parse_sums(text: &str, bare_for: Option<&str>) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (hex, rest) = match line.split_once(char::is_whitespace) {
            Some((h, r)) => (h, r.trim_start()),
            None => (line, ""),
        };
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            continue;
        }
        let file = rest.strip_prefix('*').unwrap_or(rest).trim();
        let file = file.strip_prefix("./").unwrap_or(file);
        let file = match (file.is_empty(), bare_for) {
            (false, _) => file,
            (true, Some(b)) => b,
            (true, None) => continue,
        };
        out.insert(file.to_string(), hex.to_ascii_lowercase());
    }
    out
}

/// Picks the tarball asset of a release (see the module's asset rule).
pub(super) fn pick_asset<'a>(
    assets: &'a [Asset],
    repo: &str,
    name: &str,
    version: &str,
) -> Option<&'a Asset> {
    let by_name = |n: &str| assets.iter().find(|a| a.name == n);
    by_name(&format!("{repo}.tar.gz"))
        .or_else(|| by_name(&format!("{name}-{version}.tar.gz")))
        .or_else(|| {
            let mut tgz = assets.iter().filter(|a| a.name.ends_with(".tar.gz"));
            match (tgz.next(), tgz.next()) {
                (Some(a), None) => Some(a),
                _ => None,
            }
        })
}

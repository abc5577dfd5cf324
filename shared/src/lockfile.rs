//! `extensions.lock`: what `ext load` loaded, so another machine (or a
//! fresh daemon, offline) loads exactly the same bytes with `--locked`.
//!
//! TOML, one `[[extension]]` table per extension, sorted by type then name:
//!
//! ```toml
//! # extensions.lock: written by `ext load`; `ext load --locked` loads exactly this.
//! version = 1
//!
//! [[extension]]
//! type = "taskserv"
//! name = "kubernetes"
//! version = "1.28.0"
//! source = "oci"
//! digest = "sha256:…"
//! dependencies = ["taskserv/containerd"]
//! root = true
//! ```
//!
//! `dependencies` names the locked entries this one needs (`type/name`);
//! `root` marks what was asked for by name (the rest came in as
//! dependencies). Pure data: the plugin reads and writes the file.

use crate::types::{ExtensionType, Source};
use serde::{Deserialize, Serialize};

pub const LOCKFILE_NAME: &str = "extensions.lock";
pub const LOCKFILE_VERSION: u32 = 1;
/// A lockfile larger than this is refused.
pub const MAX_LOCKFILE_BYTES: usize = 4 << 20;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedExtension {
    #[serde(rename = "type")]
    pub ext_type: ExtensionType,
    pub name: String,
    pub version: String,
    pub source: Source,
    /// `sha256:<hex>` of the artifact.
    pub digest: String,
    /// `type/name` of the locked extensions this one depends on.
    #[serde(default)]
    pub dependencies: Vec<String>,
    #[serde(default)]
    pub root: bool,
}

impl LockedExtension {
    pub fn key(&self) -> String {
        format!("{}/{}", self.ext_type, self.name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lockfile {
    pub version: u32,
    #[serde(default, rename = "extension")]
    pub extensions: Vec<LockedExtension>,
}

impl Default for Lockfile {
    fn default() -> Self {
        Lockfile {
            version: LOCKFILE_VERSION,
            extensions: Vec::new(),
        }
    }
}

impl Lockfile {
    /// Parses and checks a lockfile: known version, valid names and
    /// versions, `sha256:` digests, each `type/name` at most once, every
    /// dependency present.
    pub fn parse(text: &str) -> Result<Lockfile, String> {
        if text.len() > MAX_LOCKFILE_BYTES {
            return Err(format!("larger than {MAX_LOCKFILE_BYTES} bytes"));
        }
        let lf: Lockfile = toml::from_str(text).map_err(|e| e.to_string())?;
        if lf.version != LOCKFILE_VERSION {
            return Err(format!(
                "lockfile version {} is not supported (this release writes {LOCKFILE_VERSION})",
                lf.version
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for e in &lf.extensions {
            crate::validate_name(&e.name).map_err(|err| format!("{}: {err}", e.key()))?;
            crate::parse_version(&e.version).map_err(|err| format!("{}: {err}", e.key()))?;
            let hex = e.digest.strip_prefix("sha256:").unwrap_or("");
            if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!(
                    "{}: digest '{}' is not sha256:<hex>",
                    e.key(),
                    e.digest
                ));
            }
            if !seen.insert(e.key()) {
                return Err(format!("{} is locked twice", e.key()));
            }
        }
        for e in &lf.extensions {
            for d in &e.dependencies {
                if !seen.contains(d) {
                    return Err(format!(
                        "{} depends on {d}, which the lockfile does not hold",
                        e.key()
                    ));
                }
            }
        }
        Ok(lf)
    }

    pub fn render(&self) -> String {
        let mut sorted = self.clone();
        sorted
            .extensions
            .sort_by(|a, b| (a.ext_type, &a.name).cmp(&(b.ext_type, &b.name)));
        let body = toml::to_string(&sorted).expect("a lockfile always serializes");
        format!(
            "# {LOCKFILE_NAME}: written by `ext load`; `ext load --locked` loads exactly this.\n{body}"
        )
    }

    /// Replaces the entries of the same `type/name` by `new` ones (keeping
    /// `root` of an entry that was a root before).
    pub fn merge(&mut self, new: Vec<LockedExtension>) {
        for mut n in new {
            match self.extensions.iter_mut().find(|e| e.key() == n.key()) {
                Some(old) => {
                    n.root |= old.root;
                    *old = n;
                }
                None => self.extensions.push(n),
            }
        }
    }

    /// The entry for `name` (and type, when given), with everything it
    /// depends on, dependencies first. `None` for the whole file's roots.
    pub fn closure(
        &self,
        root: Option<(Option<ExtensionType>, &str)>,
    ) -> Result<Vec<LockedExtension>, String> {
        let starts: Vec<&LockedExtension> = match root {
            None => self.extensions.iter().filter(|e| e.root).collect(),
            Some((t, name)) => {
                let found: Vec<&LockedExtension> = self
                    .extensions
                    .iter()
                    .filter(|e| e.name == name && t.is_none_or(|t| e.ext_type == t))
                    .collect();
                match found.len() {
                    0 => return Err(format!("{name} is not in the lockfile")),
                    1 => found,
                    _ => {
                        return Err(format!(
                            "{name} is locked as several types; say which with --type"
                        ))
                    }
                }
            }
        };
        let mut out: Vec<LockedExtension> = Vec::new();
        let mut visiting = Vec::new();
        for s in starts {
            self.visit(s, &mut out, &mut visiting)?;
        }
        Ok(out)
    }

    fn visit(
        &self,
        e: &LockedExtension,
        out: &mut Vec<LockedExtension>,
        visiting: &mut Vec<String>,
    ) -> Result<(), String> {
        let k = e.key();
        if out.iter().any(|o| o.key() == k) {
            return Ok(());
        }
        if visiting.contains(&k) {
            visiting.push(k);
            return Err(format!(
                "dependency cycle in the lockfile: {}",
                visiting.join(" -> ")
            ));
        }
        visiting.push(k);
        for d in &e.dependencies {
            let dep = self
                .extensions
                .iter()
                .find(|x| &x.key() == d)
                .ok_or_else(|| {
                    format!(
                        "{} depends on {d}, which the lockfile does not hold",
                        e.key()
                    )
                })?;
            self.visit(dep, out, visiting)?;
        }
        visiting.pop();
        out.push(e.clone());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ent(t: ExtensionType, n: &str, deps: &[&str], root: bool) -> LockedExtension {
        LockedExtension {
            ext_type: t,
            name: n.into(),
            version: "1.0.0".into(),
            source: Source::Local,
            digest: format!("sha256:{}", "a".repeat(64)),
            dependencies: deps.iter().map(|s| s.to_string()).collect(),
            root,
        }
    }

    #[test]
    fn round_trip_and_closure_order() {
        let lf = Lockfile {
            version: 1,
            extensions: vec![
                ent(ExtensionType::Cluster, "app", &["taskserv/db"], true),
                ent(ExtensionType::Taskserv, "db", &["taskserv/base"], false),
                ent(ExtensionType::Taskserv, "base", &[], false),
            ],
        };
        let text = lf.render();
        assert!(text.starts_with("# extensions.lock"));
        let back = Lockfile::parse(&text).unwrap();
        assert_eq!(back.extensions.len(), 3);
        let order: Vec<String> = back
            .closure(None)
            .unwrap()
            .iter()
            .map(|e| e.key())
            .collect();
        assert_eq!(order, ["taskserv/base", "taskserv/db", "cluster/app"]);
        let db: Vec<String> = back
            .closure(Some((None, "db")))
            .unwrap()
            .iter()
            .map(|e| e.key())
            .collect();
        assert_eq!(db, ["taskserv/base", "taskserv/db"]);
        assert!(back.closure(Some((None, "nope"))).is_err());
    }

    #[test]
    fn bad_lockfiles_are_refused() {
        let mut lf = Lockfile::default();
        lf.extensions
            .push(ent(ExtensionType::Taskserv, "a", &["taskserv/b"], true));
        assert!(Lockfile::parse(&lf.render())
            .unwrap_err()
            .contains("taskserv/b"));
        lf.extensions[0].dependencies.clear();
        lf.extensions[0].digest = "md5:x".into();
        assert!(Lockfile::parse(&lf.render())
            .unwrap_err()
            .contains("digest"));
        assert!(Lockfile::parse("version = 9\n")
            .unwrap_err()
            .contains("version 9"));
        assert!(Lockfile::parse("version = 1\nbogus = 2\n").is_err());
    }

    #[test]
    fn merge_replaces_and_keeps_roots() {
        let mut lf = Lockfile::default();
        lf.merge(vec![ent(ExtensionType::Taskserv, "a", &[], true)]);
        let mut newer = ent(ExtensionType::Taskserv, "a", &[], false);
        newer.version = "2.0.0".into();
        lf.merge(vec![newer, ent(ExtensionType::Taskserv, "b", &[], false)]);
        assert_eq!(lf.extensions.len(), 2);
        assert_eq!(lf.extensions[0].version, "2.0.0");
        assert!(lf.extensions[0].root);
    }

    #[test]
    fn cycles_in_a_lockfile_are_named() {
        let lf = Lockfile {
            version: 1,
            extensions: vec![
                ent(ExtensionType::Taskserv, "a", &["taskserv/b"], true),
                ent(ExtensionType::Taskserv, "b", &["taskserv/a"], false),
            ],
        };
        let e = lf.closure(None).unwrap_err();
        assert!(e.contains("taskserv/a -> taskserv/b -> taskserv/a"), "{e}");
    }
}

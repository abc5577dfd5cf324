//! Safe, atomic extraction of a verified artifact into the extensions
//! folder, `{dir}/{type}/{name}/{version}/`.
//!
//! **Nothing half-done is ever visible.** The archive is unpacked into a
//! temp folder beside the destination, checked, and renamed into place (an
//! existing copy is swapped out the same way). Any refusal removes the temp
//! folder, so a bad archive leaves nothing behind.
//!
//! Refused: absolute paths, `..` components, symbolic or hard links whose
//! target leaves the folder, entries written through a link, device files
//! and FIFOs, more than [`Limits::max_entries`] entries or
//! [`Limits::max_bytes`] of content (a compression bomb stops there, not
//! after filling the disk). Modes are kept to `rwx` for the owner and
//! `r-x` for others (no setuid, no group or world write).
//!
//! The archive's `extension.yaml` (at its top, or in its single top folder)
//! must exist and name the type, name and version that were asked for.

use crate::manifest::Manifest;
use extreg_shared::ExtensionType;
use serde::{Deserialize, Serialize};
use std::io::Read;
use std::path::{Component, Path, PathBuf};

/// Marker written into each extracted folder: what was loaded, from where.
pub const MARKER: &str = ".extregd-load.json";

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_bytes: u64,
    pub max_entries: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: 512 << 20,
            max_entries: 20_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExtractError {
    #[error("unsafe archive: entry '{0}' has an absolute path")]
    Absolute(String),
    #[error("unsafe archive: entry '{0}' climbs out with '..'")]
    DotDot(String),
    #[error("unsafe archive: link '{entry}' points outside the extension ({target})")]
    LinkEscapes { entry: String, target: String },
    #[error("unsafe archive: entry '{0}' would be written through a link")]
    ThroughLink(String),
    #[error("unsafe archive: entry '{0}' is a device file or FIFO")]
    Special(String),
    #[error("unsafe archive: it expands beyond {0} bytes")]
    TooLarge(u64),
    #[error("unsafe archive: more than {0} entries")]
    TooMany(usize),
    #[error("the archive is not a readable tar.gz: {0}")]
    Corrupt(String),
    #[error("the archive holds no extension.yaml")]
    NoManifest,
    #[error("{0}")]
    Manifest(String),
    #[error("extension.yaml says {found} but {wanted} was asked for")]
    Mismatch { found: String, wanted: String },
    #[error("extracting failed: {0}")]
    Io(String),
}

impl From<std::io::Error> for ExtractError {
    fn from(e: std::io::Error) -> Self {
        ExtractError::Io(e.to_string())
    }
}

/// What was loaded, recorded in [`MARKER`] beside the files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadMarker {
    #[serde(rename = "type")]
    pub ext_type: ExtensionType,
    pub name: String,
    pub version: String,
    pub source: extreg_shared::Source,
    pub checksum: String,
    /// Unix seconds.
    pub loaded_at: u64,
}

/// Lexically normalises `rel` (no `.`), refusing absolute paths and `..`.
fn clean(raw: &Path) -> Result<PathBuf, ExtractError> {
    let shown = raw.display().to_string();
    let mut out = PathBuf::new();
    for c in raw.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            Component::ParentDir => return Err(ExtractError::DotDot(shown)),
            Component::RootDir | Component::Prefix(_) => return Err(ExtractError::Absolute(shown)),
        }
    }
    Ok(out)
}

/// Whether `target`, seen from the folder `from` (relative to the root),
/// stays inside the root.
fn link_stays_inside(from: &Path, target: &Path) -> bool {
    if target.is_absolute() {
        return false;
    }
    let mut depth: Vec<&std::ffi::OsStr> = from.iter().collect();
    for c in target.components() {
        match c {
            Component::Normal(p) => depth.push(p),
            Component::CurDir => {}
            Component::ParentDir => {
                if depth.pop().is_none() {
                    return false;
                }
            }
            _ => return false,
        }
    }
    true
}

/// Refuses `rel` if any folder on its way inside `root` is a link.
fn no_link_on_the_way(root: &Path, rel: &Path) -> Result<(), ExtractError> {
    let mut cur = root.to_path_buf();
    if let Some(parent) = rel.parent() {
        for c in parent.components() {
            cur.push(c);
            if let Ok(m) = std::fs::symlink_metadata(&cur) {
                if m.file_type().is_symlink() {
                    return Err(ExtractError::ThroughLink(rel.display().to_string()));
                }
            }
        }
    }
    if let Ok(m) = std::fs::symlink_metadata(root.join(rel)) {
        if m.file_type().is_symlink() {
            return Err(ExtractError::ThroughLink(rel.display().to_string()));
        }
    }
    Ok(())
}

/// Unpacks `archive` into the folder `into` (which must exist and be empty).
fn unpack(archive: impl Read, into: &Path, limits: Limits) -> Result<(), ExtractError> {
    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(archive));
    let mut total = 0u64;
    let mut count = 0usize;
    let corrupt = |e: std::io::Error| ExtractError::Corrupt(e.to_string());
    for entry in ar.entries().map_err(corrupt)? {
        let mut entry = entry.map_err(corrupt)?;
        count += 1;
        if count > limits.max_entries {
            return Err(ExtractError::TooMany(limits.max_entries));
        }
        let raw = entry.path().map_err(corrupt)?.into_owned();
        let rel = clean(&raw)?;
        let kind = entry.header().entry_type();
        if rel.as_os_str().is_empty() {
            continue; // the archive's own "./"
        }
        no_link_on_the_way(into, &rel)?;
        // A failure to create what the entry describes (a file where a
        // folder is, a name twice) is the archive's fault.
        let bad =
            |e: std::io::Error| ExtractError::Corrupt(format!("entry '{}': {e}", raw.display()));
        let dest = into.join(&rel);
        let mode = entry.header().mode().unwrap_or(0o644) & 0o755;
        use tar::EntryType as E;
        match kind {
            E::Directory => std::fs::create_dir_all(&dest).map_err(bad)?,
            E::Regular | E::Continuous => {
                if let Some(p) = dest.parent() {
                    std::fs::create_dir_all(p).map_err(bad)?;
                }
                let room = limits.max_bytes.saturating_sub(total);
                let mut out = std::fs::File::create(&dest).map_err(bad)?;
                let n = std::io::copy(&mut (&mut entry).take(room + 1), &mut out)?;
                total += n;
                if n > room {
                    return Err(ExtractError::TooLarge(limits.max_bytes));
                }
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(mode | 0o600))?;
            }
            E::Symlink | E::Link => {
                let target = entry
                    .link_name()
                    .map_err(corrupt)?
                    .ok_or_else(|| {
                        ExtractError::Corrupt(format!("link '{}' has no target", raw.display()))
                    })?
                    .into_owned();
                let from = rel.parent().unwrap_or(Path::new(""));
                let escapes = || ExtractError::LinkEscapes {
                    entry: raw.display().to_string(),
                    target: target.display().to_string(),
                };
                if let Some(p) = dest.parent() {
                    std::fs::create_dir_all(p)?;
                }
                if kind == E::Symlink {
                    if !link_stays_inside(from, &target) {
                        return Err(escapes());
                    }
                    std::os::unix::fs::symlink(&target, &dest).map_err(bad)?;
                } else {
                    // Hard link targets are archive paths from the root. A
                    // real hard link takes no space, so links cannot
                    // multiply a file past the size limit.
                    let t = clean(&target).map_err(|_| escapes())?;
                    no_link_on_the_way(into, &t).map_err(|_| escapes())?;
                    let src = into.join(&t);
                    let is_file = std::fs::symlink_metadata(&src)
                        .map(|m| m.file_type().is_file())
                        .unwrap_or(false);
                    if !is_file {
                        return Err(escapes());
                    }
                    std::fs::hard_link(&src, &dest).map_err(bad)?;
                }
            }
            E::Char | E::Block | E::Fifo => {
                return Err(ExtractError::Special(raw.display().to_string()))
            }
            // pax and GNU long-name headers are consumed by the tar crate;
            // anything else carries no file.
            _ => {}
        }
    }
    Ok(())
}

/// After unpacking: every symbolic link must resolve, through any chain of
/// links, to something inside `stage`. Checking each target as text is not
/// enough (`a -> ../..` inside a deep folder, then `b -> a/../..`).
fn links_resolve_inside(stage: &Path) -> Result<(), ExtractError> {
    let root = std::fs::canonicalize(stage)?;
    let mut stack = vec![stage.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir)? {
            let e = e?;
            let t = e.file_type()?;
            let p = e.path();
            if t.is_symlink() {
                let target = std::fs::read_link(&p).unwrap_or_default();
                let shown = p.strip_prefix(stage).unwrap_or(&p).display().to_string();
                let escapes = || ExtractError::LinkEscapes {
                    entry: shown.clone(),
                    target: target.display().to_string(),
                };
                // A dangling link could point outside once its target
                // appears: refuse it too.
                let resolved = std::fs::canonicalize(&p).map_err(|_| escapes())?;
                if !resolved.starts_with(&root) {
                    return Err(escapes());
                }
            } else if t.is_dir() {
                stack.push(p);
            }
        }
    }
    Ok(())
}

/// Finds the extension's root inside `dir`: `dir` itself when it holds
/// `extension.yaml`, else its single sub-folder that does.
fn find_root(dir: &Path) -> Result<PathBuf, ExtractError> {
    if dir.join("extension.yaml").is_file() {
        return Ok(dir.to_path_buf());
    }
    let subs: Vec<PathBuf> = std::fs::read_dir(dir)?
        .flatten()
        .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
        .map(|e| e.path())
        .collect();
    match subs.as_slice() {
        [one] if one.join("extension.yaml").is_file() => Ok(one.clone()),
        _ => Err(ExtractError::NoManifest),
    }
}

/// Extracts `archive` (the bytes of a tar.gz, e.g. an open artifact) to `dest` (`.../{type}/{name}/{version}`), checking
/// its manifest against the request and writing `marker`. Replaces an
/// existing `dest` only after the new copy is complete.
pub fn extract(
    archive: impl Read,
    dest: &Path,
    marker: &LoadMarker,
    limits: Limits,
) -> Result<Manifest, ExtractError> {
    let parent = dest
        .parent()
        .ok_or_else(|| ExtractError::Io("destination has no parent".into()))?;
    std::fs::create_dir_all(parent)?;
    let tmp = tempfile::Builder::new()
        .prefix(".extracting-")
        .tempdir_in(parent)?;
    let stage = tmp.path().join("x");
    std::fs::create_dir(&stage)?;
    unpack(archive, &stage, limits)?;
    let root = find_root(&stage)?;
    // Against the folder that will be moved into place (a single top
    // folder is all that moves, so `..` from it must not count as inside).
    links_resolve_inside(&root)?;
    // Bounded: a small archive can expand to a huge extension.yaml.
    let bytes = crate::manifest::read_bounded(std::fs::File::open(root.join("extension.yaml"))?)
        .map_err(|e| ExtractError::Manifest(e.to_string()))?;
    let m = Manifest::parse(&bytes).map_err(|e| ExtractError::Manifest(e.to_string()))?;
    let wanted = format!("{}/{} {}", marker.ext_type, marker.name, marker.version);
    let found = format!("{}/{} {}", m.ext_type, m.name, m.version);
    if found != wanted {
        return Err(ExtractError::Mismatch { found, wanted });
    }
    // The archive may carry an entry of this name (even a link): replace
    // it, never write through it.
    if let Ok(m) = std::fs::symlink_metadata(root.join(MARKER)) {
        if m.is_dir() {
            return Err(ExtractError::Corrupt(format!(
                "entry '{MARKER}' is a folder"
            )));
        }
        std::fs::remove_file(root.join(MARKER))?;
    }
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(root.join(MARKER))?;
        f.write_all(
            &serde_json::to_vec_pretty(marker).map_err(|e| ExtractError::Io(e.to_string()))?,
        )?;
    }
    if dest.exists() {
        // Swap in one step: readers see the old copy or the new one, never
        // neither; the old one ends up in `tmp` and goes with it.
        if exchange(&root, dest).is_err() {
            let old = tmp.path().join("old");
            std::fs::rename(dest, &old)?;
            std::fs::rename(&root, dest)?;
        }
    } else {
        std::fs::rename(&root, dest)?;
    }
    // `tmp` (with any old copy) is removed on drop.
    Ok(m)
}

/// Atomically exchanges two paths (Linux `renameat2(RENAME_EXCHANGE)`).
fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let ca = std::ffi::CString::new(a.as_os_str().as_bytes())?;
    let cb = std::ffi::CString::new(b.as_os_str().as_bytes())?;
    // SAFETY: both are valid NUL-terminated paths; AT_FDCWD makes them
    // relative to the working directory when not absolute.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            ca.as_ptr(),
            libc::AT_FDCWD,
            cb.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Every entry of every `dir/{type}/{name}/` folder (versions, and the
/// `.extracting-*` folders of extractions under way or cut short).
fn entries_of_names(dir: &Path) -> impl Iterator<Item = std::fs::DirEntry> + '_ {
    ExtensionType::ALL
        .into_iter()
        .filter_map(move |t| std::fs::read_dir(dir.join(t.as_str())).ok())
        .flat_map(|names| names.flatten())
        .filter_map(|n| std::fs::read_dir(n.path()).ok())
        .flat_map(|entries| entries.flatten())
}

/// Removes `.extracting-*` folders a crash left under `dir/{type}/{name}/`.
pub fn clean_leftovers(dir: &Path) {
    for e in entries_of_names(dir) {
        if e.file_name().to_string_lossy().starts_with(".extracting-") {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// The marker of an extracted folder, if it is one of ours and intact.
pub fn read_marker(dir: &Path) -> Option<LoadMarker> {
    let m: LoadMarker = serde_json::from_slice(&std::fs::read(dir.join(MARKER)).ok()?).ok()?;
    dir.join("extension.yaml").is_file().then_some(m)
}

/// Every loaded extension under `dir` (`{type}/{name}/{version}`).
pub fn loaded(dir: &Path) -> Vec<(LoadMarker, PathBuf)> {
    let mut out: Vec<(LoadMarker, PathBuf)> = entries_of_names(dir)
        .filter_map(|v| read_marker(&v.path()).map(|m| (m, v.path())))
        .collect();
    out.sort_by(|a, b| {
        (a.0.ext_type, &a.0.name, &a.0.version).cmp(&(b.0.ext_type, &b.0.name, &b.0.version))
    });
    out
}

#[cfg(test)]
mod tests;

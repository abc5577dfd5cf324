//! Reproducible tar.gz of a folder: the same tree always gives the same
//! bytes, so its sha256 (the ETag) is stable across runs and machines.
//!
//! Entries are sorted by path, stored relative to the folder (no leading
//! `./`), with mtime fixed at 1980-01-01, uid/gid 0, no user or group names,
//! mode 0755 for folders and executables and 0644 otherwise, and a gzip
//! header without name or time. Symlinks and special files are skipped.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// 1980-01-01T00:00:00Z, the epoch zip tools use for "no date".
pub const FIXED_MTIME: u64 = 315_532_800;

/// Packs `dir` into a tar.gz in memory, refusing trees above `limit` bytes
/// of file content. Large trees should go through [`pack_dir_into`].
pub fn pack_dir(dir: &Path, limit: u64) -> io::Result<Vec<u8>> {
    pack_dir_into(dir, limit, Vec::new())
}

/// Packs `dir` into `out` (a file, a hashing writer, ...), streaming: only
/// one read buffer is held at a time, whatever the folder's size.
pub fn pack_dir_into<W: Write>(dir: &Path, limit: u64, out: W) -> io::Result<W> {
    let mut files = Vec::new();
    walk(dir, Path::new(""), &mut files)?;
    files.sort();
    let total: u64 = files
        .iter()
        .filter(|(_, is_dir)| !is_dir)
        .map(|(rel, _)| {
            std::fs::metadata(dir.join(rel))
                .map(|m| m.len())
                .unwrap_or(0)
        })
        .sum();
    if total > limit {
        return Err(io::Error::other(format!(
            "folder {} holds {total} bytes, over the {limit}-byte packing limit",
            dir.display()
        )));
    }
    let gz = flate2::GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(out, flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    tar.mode(tar::HeaderMode::Deterministic);
    for (rel, is_dir) in &files {
        let full = dir.join(rel);
        let mut header = tar::Header::new_gnu();
        header.set_mtime(FIXED_MTIME);
        header.set_uid(0);
        header.set_gid(0);
        if *is_dir {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_mode(0o755);
            header.set_size(0);
            tar.append_data(&mut header, rel, io::empty())?;
        } else {
            let meta = std::fs::metadata(&full)?;
            header.set_entry_type(tar::EntryType::Regular);
            header.set_mode(if is_executable(&meta) { 0o755 } else { 0o644 });
            header.set_size(meta.len());
            let f = std::fs::File::open(&full)?;
            tar.append_data(&mut header, rel, f)?;
        }
    }
    let mut gz = tar.into_inner()?;
    gz.flush()?;
    gz.finish()
}

/// The newest modification time of the files and folders under `dir`
/// (what a reproducible `created` date can be derived from).
pub fn newest_mtime(dir: &Path) -> io::Result<std::time::SystemTime> {
    let mut files = Vec::new();
    walk(dir, Path::new(""), &mut files)?;
    let mut newest = std::fs::metadata(dir)?.modified()?;
    for (rel, _) in files {
        let t = std::fs::metadata(dir.join(rel))?.modified()?;
        newest = newest.max(t);
    }
    Ok(newest)
}

/// A writer that hashes (sha256) and counts what passes through it.
pub struct HashingWriter<W> {
    inner: W,
    hasher: sha2::Sha256,
    written: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        use sha2::Digest;
        HashingWriter {
            inner,
            hasher: sha2::Sha256::new(),
            written: 0,
        }
    }

    /// The inner writer, `sha256:<hex>` and the byte count.
    pub fn finish(self) -> (W, String, u64) {
        use sha2::Digest;
        let digest = format!("sha256:{}", hex::encode(self.hasher.finalize()));
        (self.inner, digest, self.written)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        use sha2::Digest;
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn walk(root: &Path, rel: &Path, out: &mut Vec<(PathBuf, bool)>) -> io::Result<()> {
    for entry in std::fs::read_dir(root.join(rel))? {
        let entry = entry?;
        let ft = entry.file_type()?;
        let child = rel.join(entry.file_name());
        if ft.is_dir() {
            out.push((child.clone(), true));
            walk(root, &child, out)?;
        } else if ft.is_file() {
            out.push((child, false));
        } else {
            tracing::warn!(path = %root.join(&child).display(), "skipping a symlink or special file while packing");
        }
    }
    Ok(())
}

#[cfg(unix)]
fn is_executable(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o111 != 0
}
#[cfg(not(unix))]
fn is_executable(_: &std::fs::Metadata) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(dir: &Path) {
        std::fs::create_dir_all(dir.join("kcl")).unwrap();
        std::fs::write(dir.join("extension.yaml"), "extension: {}\n").unwrap();
        std::fs::write(dir.join("kcl/a.k"), "schema A:\n  x: int\n").unwrap();
    }

    #[test]
    fn same_tree_same_bytes_whatever_the_times() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        tree(a.path());
        std::thread::sleep(std::time::Duration::from_millis(20));
        tree(b.path());
        let pa = pack_dir(a.path(), 1 << 20).unwrap();
        let pb = pack_dir(b.path(), 1 << 20).unwrap();
        assert_eq!(pa, pb);
        std::fs::write(b.path().join("kcl/a.k"), "changed").unwrap();
        assert_ne!(pa, pack_dir(b.path(), 1 << 20).unwrap());
    }

    #[test]
    fn packed_entries_are_sorted_and_relative() {
        let a = tempfile::tempdir().unwrap();
        tree(a.path());
        let bytes = pack_dir(a.path(), 1 << 20).unwrap();
        let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(&bytes[..]));
        let names: Vec<String> = ar
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(names, vec!["extension.yaml", "kcl", "kcl/a.k"]);
    }

    #[test]
    fn streamed_packing_hashes_what_it_writes() {
        let a = tempfile::tempdir().unwrap();
        tree(a.path());
        let mem = pack_dir(a.path(), 1 << 20).unwrap();
        let (file, digest, n) = pack_dir_into(
            a.path(),
            1 << 20,
            HashingWriter::new(tempfile::tempfile().unwrap()),
        )
        .unwrap()
        .finish();
        assert_eq!(n, mem.len() as u64);
        assert_eq!(digest, crate::backend::sha256_tag(&mem));
        assert_eq!(file.metadata().unwrap().len(), n);
    }

    #[test]
    fn limit_is_enforced() {
        let a = tempfile::tempdir().unwrap();
        tree(a.path());
        let e = pack_dir(a.path(), 4).unwrap_err();
        assert!(e.to_string().contains("packing limit"));
    }
}

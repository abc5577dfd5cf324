//! `extension.yaml` read from an artifact's bytes while they stream in, for
//! artifacts whose listing metadata is missing (an extension pushed by ORAS
//! or any tool without annotations), and the checks made with it.
//!
//! **Bounds.** At most [`MAX_SCAN_BLOB_BYTES`] of the (compressed) blob are
//! read and at most [`MAX_SCAN_EXPANDED_BYTES`] of tar stream are expanded
//! while looking; `extension.yaml` itself is read whole up to
//! [`crate::manifest::MAX_MANIFEST_BYTES`] and refused above. The scan stops
//! at the first `extension.yaml` at the top of the archive or in its single
//! top folder (the rule `ext load` uses), so a well-formed artifact costs
//! the first few KiB of its blob.
//!
//! **Outcomes.** [`Scan::Found`] and [`Scan::Unreadable`] are properties of
//! the bytes (immutable for a digest: cache them); a failure of the
//! underlying reader (the network) is an `Err` and must not be cached.

use crate::manifest::Manifest;
use extreg_shared::{Extension, ExtensionType};
use std::io::Read;

/// Most blob bytes read while looking for `extension.yaml`.
pub const MAX_SCAN_BLOB_BYTES: u64 = 16 << 20;
/// Most tar bytes expanded while looking for `extension.yaml`.
pub const MAX_SCAN_EXPANDED_BYTES: u64 = 64 << 20;

/// What the bytes of an artifact say about themselves.
#[derive(Debug, Clone, PartialEq)]
pub enum Scan {
    Found(Box<Manifest>),
    /// Not a gzipped tarball, no `extension.yaml` within the bounds, or an
    /// `extension.yaml` that does not parse: why, in a few words.
    Unreadable(String),
}

/// Counts what the inner reader hands out and remembers whether it failed
/// (a network error), as opposed to the bytes being bad.
struct Guard<R> {
    inner: R,
    read: u64,
    limit: u64,
    failed: Option<std::io::Error>,
}

impl<R: Read> Read for Guard<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.limit.saturating_sub(self.read);
        if left == 0 {
            return Ok(0);
        }
        let max = buf.len().min(left.min(usize::MAX as u64) as usize);
        match self.inner.read(&mut buf[..max]) {
            Ok(n) => {
                self.read += n as u64;
                Ok(n)
            }
            Err(e) => {
                let shown = std::io::Error::new(e.kind(), e.to_string());
                self.failed = Some(e);
                Err(shown)
            }
        }
    }
}

/// Looks for `extension.yaml` in a gzipped tarball read from `r` (see the
/// module docs for the bounds). `Err` only when `r` itself failed.
pub fn scan(r: impl Read) -> Result<Scan, std::io::Error> {
    let mut guard = Guard {
        inner: r,
        read: 0,
        limit: MAX_SCAN_BLOB_BYTES,
        failed: None,
    };
    let found = find_manifest(&mut guard, MAX_SCAN_EXPANDED_BYTES);
    if let Some(e) = guard.failed.take() {
        return Err(e);
    }
    Ok(match found {
        Ok(bytes) => match Manifest::parse(&bytes) {
            Ok(m) => Scan::Found(Box::new(m)),
            Err(e) => Scan::Unreadable(e.to_string()),
        },
        Err(why) => Scan::Unreadable(if guard.read >= MAX_SCAN_BLOB_BYTES {
            format!("no extension.yaml in the first {MAX_SCAN_BLOB_BYTES} bytes of the artifact")
        } else {
            why
        }),
    })
}

/// The bytes of the first `extension.yaml` at the top of a gzipped tarball
/// or in its single top folder (the rule `ext load` uses), expanding at
/// most `max_expanded` bytes of tar stream while looking.
pub(crate) fn find_manifest(r: impl Read, max_expanded: u64) -> Result<Vec<u8>, String> {
    let gz = flate2::read::GzDecoder::new(r).take(max_expanded);
    let mut ar = tar::Archive::new(gz);
    let entries = ar.entries().map_err(|e| format!("not a tar.gz: {e}"))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| format!("not a tar.gz: {e}"))?;
        let p = entry.path().map_err(|e| e.to_string())?.into_owned();
        let comps: Vec<_> = p
            .components()
            .filter(|c| !matches!(c, std::path::Component::CurDir))
            .collect();
        let is_manifest = comps.len() <= 2
            && comps.last().map(|c| c.as_os_str() == "extension.yaml") == Some(true)
            && entry.header().entry_type().is_file();
        if is_manifest {
            return crate::manifest::read_bounded(&mut entry).map_err(|e| e.to_string());
        }
    }
    Err("the artifact holds no extension.yaml".into())
}

/// Why a version's artifact is not what its repository and tag say
/// (`tarball declares 3.4.0`, `tarball declares provider/aws 1.0.0`), or
/// `None` when it matches.
pub fn mismatch(
    ext_type: ExtensionType,
    name: &str,
    version: &semver::Version,
    m: &Manifest,
) -> Option<String> {
    if m.ext_type != ext_type || m.name != name {
        return Some(format!(
            "tarball declares {}/{} {}",
            m.ext_type, m.name, m.version
        ));
    }
    (m.version != *version).then(|| format!("tarball declares {}", m.version))
}

/// Fills what a record lacks from the artifact's `extension.yaml`:
/// description, author, tags, requires, dependencies and repository.
/// Fields the record already has (from annotations) win.
pub fn fill(record: &mut Extension, m: &Manifest) {
    if record.description.trim().is_empty() {
        record.description = m.description.clone();
    }
    if record.author.is_none() {
        record.author = m.author.clone().filter(|a| !a.trim().is_empty());
    }
    if record.repository.is_none() {
        record.repository = m.repository.clone().or_else(|| m.homepage.clone());
    }
    if record.tags.is_empty() {
        record.tags = m.tags.clone();
    }
    if record.requires.is_empty() {
        record.requires = m.requires.clone();
    }
    if record.dependencies.is_empty() {
        record.dependencies = m.dependencies.clone();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_gz(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(flate2::write::GzEncoder::new(
            Vec::new(),
            flate2::Compression::fast(),
        ));
        for (path, data) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, path, *data).unwrap();
        }
        b.into_inner().unwrap().finish().unwrap()
    }

    const YAML: &[u8] = b"extension:\n  name: etcd\n  version: 3.5.0\n  type: taskserv\n  description: etcd by oras\n  author: Ops <ops@example.org>\n  tags: [kv]\n  requires: [etcdctl]\n";

    fn found(s: Scan) -> Manifest {
        match s {
            Scan::Found(m) => *m,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn finds_the_manifest_at_the_top_or_in_one_folder() {
        let m = found(scan(&tar_gz(&[("extension.yaml", YAML)])[..]).unwrap());
        assert_eq!(m.name, "etcd");
        assert_eq!(m.tags, vec!["kv"]);
        let m = found(
            scan(&tar_gz(&[("etcd/kcl/a.k", b"x"), ("etcd/extension.yaml", YAML)])[..]).unwrap(),
        );
        assert_eq!(m.version.to_string(), "3.5.0");
    }

    #[test]
    fn unreadable_artifacts_say_why() {
        let s = scan(&b"not gzip at all"[..]).unwrap();
        assert!(
            matches!(&s, Scan::Unreadable(w) if w.contains("tar.gz")),
            "{s:?}"
        );
        let s = scan(&tar_gz(&[("README.md", b"hi")])[..]).unwrap();
        assert!(
            matches!(&s, Scan::Unreadable(w) if w.contains("no extension.yaml")),
            "{s:?}"
        );
        let s = scan(&tar_gz(&[("a/b/extension.yaml", YAML)])[..]).unwrap();
        assert!(matches!(s, Scan::Unreadable(_)), "too deep: {s:?}");
        let s = scan(&tar_gz(&[("extension.yaml", b"extension:\n  name: x\n")])[..]).unwrap();
        assert!(
            matches!(&s, Scan::Unreadable(w) if w.contains("missing")),
            "{s:?}"
        );
    }

    #[test]
    fn reads_are_bounded() {
        // A large first entry (incompressible) pushes extension.yaml past
        // the blob bound: the scan gives up there instead of reading on.
        let mut noise = vec![0u8; (MAX_SCAN_BLOB_BYTES + (1 << 20)) as usize];
        let mut x = 0x9e37_79b9u32;
        for b in noise.iter_mut() {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            *b = x as u8;
        }
        let blob = tar_gz(&[("big.bin", &noise), ("extension.yaml", YAML)]);
        struct Counting<'a>(&'a [u8], u64);
        impl Read for Counting<'_> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let n = self.0.read(buf)?;
                self.1 += n as u64;
                Ok(n)
            }
        }
        let mut c = Counting(&blob, 0);
        let s = scan(&mut c).unwrap();
        assert!(
            matches!(&s, Scan::Unreadable(w) if w.contains("first")),
            "{s:?}"
        );
        assert!(c.1 <= MAX_SCAN_BLOB_BYTES, "read {} bytes", c.1);
        // A highly compressible bomb stops at the expansion bound.
        let zeros = vec![0u8; (MAX_SCAN_EXPANDED_BYTES + (1 << 20)) as usize];
        let blob = tar_gz(&[("zeros", &zeros), ("extension.yaml", YAML)]);
        assert!((blob.len() as u64) < MAX_SCAN_BLOB_BYTES);
        let s = scan(&blob[..]).unwrap();
        assert!(matches!(s, Scan::Unreadable(_)), "{s:?}");
    }

    #[test]
    fn reader_failures_are_errors_not_verdicts() {
        struct Broken(usize);
        impl Read for Broken {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                if self.0 == 0 {
                    return Err(std::io::Error::other("connection reset"));
                }
                let blob = tar_gz(&[("extension.yaml", YAML)]);
                let n = buf.len().min(self.0).min(4);
                buf[..n].copy_from_slice(&blob[..n]);
                self.0 = 0;
                Ok(n)
            }
        }
        assert!(scan(Broken(4)).is_err());
    }

    #[test]
    fn mismatches_are_named_and_fill_keeps_annotations() {
        let m = found(scan(&tar_gz(&[("extension.yaml", YAML)])[..]).unwrap());
        let v = |s: &str| s.parse::<semver::Version>().unwrap();
        assert_eq!(
            mismatch(ExtensionType::Taskserv, "etcd", &v("3.5.0"), &m),
            None
        );
        assert_eq!(
            mismatch(ExtensionType::Taskserv, "etcd", &v("3.4.0"), &m).as_deref(),
            Some("tarball declares 3.5.0")
        );
        assert_eq!(
            mismatch(ExtensionType::Provider, "etcd", &v("3.5.0"), &m).as_deref(),
            Some("tarball declares taskserv/etcd 3.5.0")
        );
        let mut r = crate::testing::record(
            ExtensionType::Taskserv,
            "etcd",
            "3.5.0",
            extreg_shared::Source::Oci,
        );
        r.description = "from an annotation".into();
        r.author = None;

        fill(&mut r, &m);
        assert_eq!(r.description, "from an annotation");
        assert_eq!(r.author.as_deref(), Some("Ops <ops@example.org>"));
        assert_eq!(r.tags, vec!["kv"]);
        assert_eq!(r.requires, vec!["etcdctl"]);
    }
}

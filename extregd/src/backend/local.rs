//! The local backend: extensions in folders on this machine.
//!
//! Layout under each root (type folders may also be plural: `providers/`,
//! `taskservs/`, `clusters/`):
//!
//! ```text
//! {root}/{type}/{name}/{version}/extension.yaml        folder form
//! {root}/{type}/{name}/{name}-{version}.tar.gz         tarball form
//! ```
//!
//! The manifest's name, type and version must match the path; entries that
//! do not are skipped with a warning. Roots are searched in order and the
//! first root holding a `{type}/{name}/{version}` wins. A folder-form version
//! is served as a reproducible tar.gz (see [`crate::pack`]).

use super::{newest, rfc3339, Artifact, Backend, BackendError, VersionEntry};
use crate::manifest::Manifest;
use async_trait::async_trait;
use extreg_shared::{parse_version, validate_name, Extension, ExtensionType, Source};
use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

/// Largest folder packed for download.
pub const MAX_PACK_BYTES: u64 = 256 << 20;
/// Read size when streaming from disk (see COMPONENTS.md: small reads cost
/// a trip to the blocking pool each).
const STREAM_CHUNK: usize = 256 * 1024;

/// Passes bytes on to `inner` while hashing and counting them.
struct HashingWriter<W> {
    inner: W,
    hash: Sha256,
    len: u64,
}

impl<W: std::io::Write> HashingWriter<W> {
    fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hash: Sha256::new(),
            len: 0,
        }
    }

    /// The writer, `sha256:<hex>` and the byte count.
    fn finish(self) -> (W, String, u64) {
        (
            self.inner,
            format!("sha256:{}", hex::encode(self.hash.finalize())),
            self.len,
        )
    }
}

impl<W: std::io::Write> std::io::Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

pub struct LocalBackend {
    inner: Arc<Inner>,
}

struct Inner {
    roots: Vec<PathBuf>,
    /// Digest and size of each artifact, keyed by path and revision, so a
    /// tree is hashed (or packed) once until it changes.
    digests: Mutex<HashMap<PathBuf, (String, String, u64)>>,
}

impl LocalBackend {
    pub fn new(roots: Vec<PathBuf>) -> Self {
        LocalBackend {
            inner: Arc::new(Inner {
                roots,
                digests: Mutex::new(HashMap::new()),
            }),
        }
    }

    pub fn roots(&self) -> &[PathBuf] {
        &self.inner.roots
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner) -> T + Send + 'static,
    ) -> Result<T, BackendError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(|e| BackendError::Io(format!("local backend task failed: {e}")))
    }
}

#[async_trait]
impl Backend for LocalBackend {
    fn source(&self) -> Source {
        Source::Local
    }

    async fn list(&self) -> Result<Vec<Extension>, BackendError> {
        self.blocking(|inner| {
            let mut out = Vec::new();
            for ty in ExtensionType::ALL {
                for name in inner.names(ty) {
                    let versions = inner.versions(ty, &name);
                    if let Some(best) = newest(&versions) {
                        out.push(best.record.clone());
                    }
                }
            }
            out
        })
        .await
    }

    async fn versions(
        &self,
        ext_type: ExtensionType,
        name: &str,
    ) -> Result<Vec<VersionEntry>, BackendError> {
        let name = name.to_string();
        self.blocking(move |inner| inner.versions(ext_type, &name))
            .await
    }

    /// Streams the artifact from disk: a tarball as it is, a folder packed
    /// into an unnamed temp file first (hashed while written). Memory stays
    /// flat whatever the size.
    async fn fetch(&self, entry: &VersionEntry) -> Result<Artifact, BackendError> {
        let path = PathBuf::from(&entry.locator);
        let (file, size, digest) = self
            .blocking(
                move |inner| -> Result<(std::fs::File, u64, String), BackendError> {
                    let rev = revision(&path).unwrap_or_default();
                    let (file, digest, size) = if path.is_dir() {
                        let tmp = tempfile::tempfile()?;
                        let w = HashingWriter::new(std::io::BufWriter::with_capacity(
                            STREAM_CHUNK,
                            tmp,
                        ));
                        let w = crate::pack::pack_dir_into(&path, MAX_PACK_BYTES, w)?;
                        let (buf, digest, size) = w.finish();
                        let mut tmp = buf.into_inner().map_err(|e| e.into_error())?;
                        use std::io::Seek;
                        tmp.seek(std::io::SeekFrom::Start(0))?;
                        (tmp, digest, size)
                    } else {
                        let f = std::fs::File::open(&path)?;
                        let (digest, size) = inner.digest(&path, &rev)?;
                        (f, digest, size)
                    };
                    inner
                        .digests
                        .lock()
                        .insert(path, (rev, digest.clone(), size));
                    Ok((file, size, digest))
                },
            )
            .await??;
        let reader = tokio::io::AsyncReadExt::take(tokio::fs::File::from_std(file), size);
        Ok(Artifact {
            stream: Box::pin(tokio_util::io::ReaderStream::with_capacity(
                reader,
                STREAM_CHUNK,
            )),
            size: Some(size),
            digest: Some(digest),
        })
    }

    fn identity(&self) -> String {
        let roots: Vec<String> = self
            .inner
            .roots
            .iter()
            .map(|r| r.display().to_string())
            .collect();
        format!("local:{}", roots.join(":"))
    }

    async fn health(&self) -> Result<(), BackendError> {
        let roots = self.inner.roots.clone();
        let missing: Vec<String> = roots
            .iter()
            .filter(|r| !r.is_dir())
            .map(|r| r.display().to_string())
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(BackendError::NotFound(format!(
                "extension folder(s) missing: {}",
                missing.join(", ")
            )))
        }
    }
}

fn type_dirs(root: &Path, ty: ExtensionType) -> [PathBuf; 2] {
    [
        root.join(ty.as_str()),
        root.join(format!("{}s", ty.as_str())),
    ]
}

pub use super::sha256_tag;

/// A cheap fingerprint of a file or tree: sizes and modification times.
/// Links are not followed (a link's own target text counts), so a dangling
/// link inside a folder neither fails nor hides the version.
fn revision(path: &Path) -> std::io::Result<String> {
    let mut h = Sha256::new();
    fn feed(h: &mut Sha256, p: &Path, rel: &Path) -> std::io::Result<()> {
        let meta = if rel.as_os_str().is_empty() {
            std::fs::metadata(p)?
        } else {
            std::fs::symlink_metadata(p)?
        };
        if meta.file_type().is_symlink() {
            h.update(rel.as_os_str().as_encoded_bytes());
            h.update(b"->");
            h.update(std::fs::read_link(p)?.as_os_str().as_encoded_bytes());
            return Ok(());
        }
        let mtime = meta
            .modified()?
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        h.update(rel.as_os_str().as_encoded_bytes());
        h.update(meta.len().to_le_bytes());
        h.update(mtime.to_le_bytes());
        if meta.is_dir() {
            let mut kids: Vec<_> = std::fs::read_dir(p)?
                .filter_map(|e| e.ok())
                .map(|e| e.file_name())
                .collect();
            kids.sort();
            for k in kids {
                feed(h, &p.join(&k), &rel.join(&k))?;
            }
        }
        Ok(())
    }
    feed(&mut h, path, Path::new(""))?;
    Ok(hex::encode(&h.finalize()[..12]))
}

impl Inner {
    fn names(&self, ty: ExtensionType) -> Vec<String> {
        let mut names = std::collections::BTreeSet::new();
        for root in &self.roots {
            for dir in type_dirs(root, ty) {
                let Ok(rd) = std::fs::read_dir(&dir) else {
                    continue;
                };
                for e in rd.flatten() {
                    let Ok(name) = e.file_name().into_string() else {
                        continue;
                    };
                    if e.path().is_dir() && validate_name(&name).is_ok() {
                        names.insert(name);
                    }
                }
            }
        }
        names.into_iter().collect()
    }

    fn versions(&self, ty: ExtensionType, name: &str) -> Vec<VersionEntry> {
        if validate_name(name).is_err() {
            return Vec::new();
        }
        // First root wins for a version; BTreeMap keeps a stable order.
        let mut found: BTreeMap<semver::Version, VersionEntry> = BTreeMap::new();
        for root in &self.roots {
            for dir in type_dirs(root, ty) {
                let dir = dir.join(name);
                let Ok(rd) = std::fs::read_dir(&dir) else {
                    continue;
                };
                let mut paths: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
                paths.sort();
                for p in paths {
                    match self.entry(ty, name, &p) {
                        Ok(Some(e)) => {
                            found.entry(e.semver.clone()).or_insert(e);
                        }
                        Ok(None) => {}
                        Err(why) => {
                            tracing::warn!(path = %p.display(), "skipping local extension: {why}")
                        }
                    }
                }
            }
        }
        found.into_values().collect()
    }

    /// The version at `path`, `Ok(None)` when the path is no extension
    /// version at all, `Err` when it looks like one but is broken.
    fn entry(
        &self,
        ty: ExtensionType,
        name: &str,
        path: &Path,
    ) -> Result<Option<VersionEntry>, String> {
        let file = path
            .file_name()
            .and_then(|f| f.to_str())
            .unwrap_or_default();
        let (version_str, manifest_bytes) = if path.is_dir() {
            let yaml = path.join("extension.yaml");
            if !yaml.is_file() {
                return Ok(None);
            }
            (
                file.to_string(),
                read_limited(&yaml).map_err(|e| e.to_string())?,
            )
        } else if let Some(v) = file
            .strip_prefix(name)
            .and_then(|r| r.strip_prefix('-'))
            .and_then(|r| r.strip_suffix(".tar.gz"))
        {
            (v.to_string(), manifest_from_tarball(path)?)
        } else {
            return Ok(None);
        };
        let semver = parse_version(&version_str).map_err(|e| e.to_string())?;
        let m = Manifest::parse(&manifest_bytes).map_err(|e| e.to_string())?;
        if m.name != name || m.ext_type != ty || m.version != semver {
            return Err(format!(
                "extension.yaml says {}/{} {} but the path says {ty}/{name} {semver}",
                m.ext_type, m.name, m.version
            ));
        }
        let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
        let published = if path.is_dir() {
            std::fs::metadata(path.join("extension.yaml")).and_then(|m| m.modified())
        } else {
            meta.modified()
        }
        .map(rfc3339)
        .ok();
        let rev = revision(path).map_err(|e| e.to_string())?;
        let (digest, size) = self.digest(path, &rev).map_err(|e| e.to_string())?;
        Ok(Some(VersionEntry {
            record: Extension {
                name: name.to_string(),
                ext_type: ty,
                version: semver.to_string(),
                description: m.description,
                author: m.author,
                repository: m.repository.or(m.homepage),
                source: Source::Local,
                published_at: published,
                download_url: None,
                checksum: Some(digest),
                size: Some(size),
                tags: m.tags,
                prerelease: !semver.pre.is_empty(),
                stale: false,
                requires: m.requires,
                dependencies: m.dependencies,
                signature: Default::default(),
                mismatch: None,
            },
            semver,
            locator: path.display().to_string(),
            revision: rev,
        }))
    }

    fn digest(&self, path: &Path, rev: &str) -> std::io::Result<(String, u64)> {
        if let Some((r, d, s)) = self.digests.lock().get(path) {
            if r == rev {
                return Ok((d.clone(), *s));
            }
        }
        let (d, s) = if path.is_dir() {
            let w = crate::pack::pack_dir_into(
                path,
                MAX_PACK_BYTES,
                HashingWriter::new(std::io::sink()),
            )?;
            let (_, d, s) = w.finish();
            (d, s)
        } else {
            let mut f = std::fs::File::open(path)?;
            let mut h = Sha256::new();
            let mut buf = vec![0u8; 256 * 1024];
            let mut n = 0u64;
            loop {
                let k = f.read(&mut buf)?;
                if k == 0 {
                    break;
                }
                h.update(&buf[..k]);
                n += k as u64;
            }
            (format!("sha256:{}", hex::encode(h.finalize())), n)
        };
        self.digests
            .lock()
            .insert(path.to_path_buf(), (rev.to_string(), d.clone(), s));
        Ok((d, s))
    }
}

fn read_limited(path: &Path) -> std::io::Result<Vec<u8>> {
    crate::manifest::read_bounded(std::fs::File::open(path)?)
}

/// Finds `extension.yaml` at the top of a tarball or one folder down.
pub(crate) fn manifest_from_tarball(path: &Path) -> Result<Vec<u8>, String> {
    manifest_from_reader(std::fs::File::open(path).map_err(|e| e.to_string())?)
}

/// [`manifest_from_tarball`] over the bytes of a tar.gz (an open artifact,
/// whose size its source already bounds).
pub(crate) fn manifest_from_reader(r: impl std::io::Read) -> Result<Vec<u8>, String> {
    super::tar_meta::find_manifest(r, u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_ext(root: &Path, ty: &str, name: &str, version: &str) -> PathBuf {
        let dir = root.join(ty).join(name).join(version);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("extension.yaml"),
            format!("extension:\n  name: {name}\n  version: {version}\n  type: {ty}\n  description: The {name} one\n  tags: [t1]\n"),
        )
        .unwrap();
        dir
    }

    #[tokio::test]
    async fn lists_newest_stable_and_versions() {
        let d = tempfile::tempdir().unwrap();
        write_ext(d.path(), "taskserv", "kubernetes", "1.27.4");
        write_ext(d.path(), "taskserv", "kubernetes", "1.28.0");
        write_ext(d.path(), "taskserv", "kubernetes", "1.29.0-rc.1");
        write_ext(d.path(), "provider", "aws", "1.0.0");
        let b = LocalBackend::new(vec![d.path().to_path_buf()]);
        let list = b.list().await.unwrap();
        assert_eq!(list.len(), 2);
        let k = list.iter().find(|e| e.name == "kubernetes").unwrap();
        assert_eq!(k.version, "1.28.0");
        assert!(k.checksum.as_ref().unwrap().starts_with("sha256:"));
        let vs = b
            .versions(ExtensionType::Taskserv, "kubernetes")
            .await
            .unwrap();
        assert_eq!(vs.len(), 3);
        assert!(vs.iter().any(|v| v.record.prerelease));
        assert!(b
            .versions(ExtensionType::Provider, "kubernetes")
            .await
            .unwrap()
            .is_empty());
    }

    #[tokio::test]
    async fn mismatched_manifest_is_skipped() {
        let d = tempfile::tempdir().unwrap();
        let dir = write_ext(d.path(), "provider", "aws", "1.0.0");
        std::fs::rename(&dir, d.path().join("provider/aws/2.0.0")).unwrap();
        let b = LocalBackend::new(vec![d.path().to_path_buf()]);
        assert!(b
            .versions(ExtensionType::Provider, "aws")
            .await
            .unwrap()
            .is_empty());
    }

    #[tokio::test]
    async fn folder_fetch_matches_listed_checksum_and_is_stable() {
        let d = tempfile::tempdir().unwrap();
        write_ext(d.path(), "cluster", "buildkit", "0.1.0");
        let b = LocalBackend::new(vec![d.path().to_path_buf()]);
        let v = b
            .versions(ExtensionType::Cluster, "buildkit")
            .await
            .unwrap();
        use futures::StreamExt;
        let mut got = Vec::new();
        for _ in 0..2 {
            let a = b.fetch(&v[0]).await.unwrap();
            let bytes: Vec<u8> = a.stream.map(|c| c.unwrap().to_vec()).concat().await;
            assert_eq!(Some(sha256_tag(&bytes)), v[0].record.checksum);
            assert_eq!(Some(bytes.len() as u64), v[0].record.size);
            got.push(bytes);
        }
        assert_eq!(got[0], got[1]);
    }

    #[tokio::test]
    async fn tarball_form_and_first_root_wins() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let src = write_ext(a.path(), "provider", "aws", "1.0.0");
        std::fs::write(src.join("extension.yaml"), "extension:\n  name: aws\n  version: 1.0.0\n  type: provider\n  description: first root\n").unwrap();
        // Plural type folder, tarball form; packed from a folder elsewhere.
        let staging = tempfile::tempdir().unwrap();
        let other = write_ext(staging.path(), "provider", "aws", "1.0.0");
        let tgz = crate::pack::pack_dir(&other, 1 << 20).unwrap();
        std::fs::create_dir_all(b.path().join("providers/aws")).unwrap();
        std::fs::write(b.path().join("providers/aws/aws-1.1.0.tar.gz"), &tgz).unwrap();
        // The tarball says 1.0.0 inside, so a 1.1.0 name is a mismatch.
        let be = LocalBackend::new(vec![a.path().to_path_buf(), b.path().to_path_buf()]);
        let vs = be.versions(ExtensionType::Provider, "aws").await.unwrap();
        assert_eq!(vs.len(), 1);
        assert_eq!(vs[0].record.description, "first root");
        std::fs::rename(
            b.path().join("providers/aws/aws-1.1.0.tar.gz"),
            b.path().join("providers/aws/aws-1.0.0.tar.gz"),
        )
        .unwrap();
        let only_b = LocalBackend::new(vec![b.path().to_path_buf()]);
        let vs = only_b
            .versions(ExtensionType::Provider, "aws")
            .await
            .unwrap();
        assert_eq!(vs.len(), 1);
        assert_eq!(vs[0].record.checksum, Some(sha256_tag(&tgz)));
    }
}

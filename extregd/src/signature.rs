//! Minisign signatures: who published an artifact, on top of the digest
//! that proves its integrity.
//!
//! **Where signatures live.**
//! - Gitea: the release asset `{asset}.minisig` beside the tarball asset
//!   (what `minisign -S -m {asset}` writes).
//! - OCI: a separate manifest in the same repository, tagged
//!   `sha256-{hex}.minisig` where `{hex}` is the artifact layer's digest
//!   (works on registries without the referrers API). Its one layer, of
//!   media type [`SIGNATURE_MEDIA_TYPE`], holds the `.minisig` text;
//!   `artifactType` is [`SIGNATURE_ARTIFACT_TYPE`]. The signature covers the
//!   tar.gz bytes, exactly as for Gitea.
//! - Local folders carry none (`signed` is null).
//!
//! **Policy per backend** (`[signatures.{local,oci,gitea}]`): `off` (never
//! looked at), `verify-if-present` (a signature, when there is one, must
//! verify against a trusted key), `require` (no signature, or one that does
//! not verify, refuses the artifact). A refused artifact is not cached and
//! not loaded; the error names the artifact and the key.
//!
//! Verification streams the downloaded file through `minisign-verify`
//! (pre-hashed signatures, minisign's default since 0.8; legacy
//! signatures are refused). Signing runs the `minisign` program (see
//! [`sign`]).

use crate::backend::{Backend, BackendError, VersionEntry};
use crate::error::Error;
use extreg_shared::{ErrorKind, Source};
use serde::Deserialize;
use std::io::Read;
use std::path::Path;

/// Largest signature file read from a backend.
pub const MAX_SIGNATURE_BYTES: usize = 64 * 1024;
/// `artifactType` of the OCI manifest that carries a signature.
pub const SIGNATURE_ARTIFACT_TYPE: &str = "application/vnd.provisioning.extension.signature.v1";
/// Media type of its layer (the `.minisig` text).
pub const SIGNATURE_MEDIA_TYPE: &str = "application/vnd.provisioning.minisign.signature.v1";

/// The OCI tag holding the signature of the layer `digest` (`sha256:<hex>`).
pub fn oci_signature_tag(digest: &str) -> String {
    format!(
        "sha256-{}.minisig",
        digest.strip_prefix("sha256:").unwrap_or(digest)
    )
}

pub fn is_oci_signature_tag(tag: &str) -> bool {
    tag.strip_prefix("sha256-")
        .and_then(|r| r.strip_suffix(".minisig"))
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    #[default]
    Off,
    VerifyIfPresent,
    Require,
}

impl Policy {
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Off => "off",
            Policy::VerifyIfPresent => "verify-if-present",
            Policy::Require => "require",
        }
    }
}

/// `[signatures.<backend>]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendPolicy {
    #[serde(default)]
    pub policy: Policy,
    /// Minisign public keys: the base64 line (`RW...`) or the path of a
    /// `.pub` file as `minisign -G` writes it.
    #[serde(default)]
    pub trusted_keys: Vec<String>,
}

/// `[signatures]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignaturesConfig {
    #[serde(default)]
    pub local: BackendPolicy,
    #[serde(default)]
    pub oci: BackendPolicy,
    #[serde(default)]
    pub gitea: BackendPolicy,
}

impl SignaturesConfig {
    fn of(&self, s: Source) -> &BackendPolicy {
        match s {
            Source::Local => &self.local,
            Source::Oci => &self.oci,
            Source::Gitea => &self.gitea,
        }
    }
}

/// A trusted public key and its id as `minisign` prints it.
#[derive(Clone)]
struct TrustedKey {
    id: String,
    key: minisign_verify::PublicKey,
}

/// The id of 8 key-id bytes (a little-endian u64, as minisign shows it).
fn key_id_hex(bytes: &[u8]) -> String {
    let mut le = [0u8; 8];
    le.copy_from_slice(&bytes[..8]);
    // As minisign prints it: hexadecimal, upper case, no leading zeros.
    format!("{:X}", u64::from_le_bytes(le))
}

fn b64(s: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .ok()
}

fn parse_key(spec: &str) -> Result<TrustedKey, String> {
    let spec = spec.trim();
    let inline = spec.starts_with("RW") && b64(spec).is_some_and(|b| b.len() == 42);
    let line = if inline {
        spec.to_string()
    } else {
        let text = std::fs::read_to_string(spec).map_err(|e| format!("{spec}: {e}"))?;
        text.lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with("untrusted comment:"))
            .ok_or_else(|| format!("{spec}: no public key line"))?
            .to_string()
    };
    let key = minisign_verify::PublicKey::from_base64(&line)
        .map_err(|e| format!("'{line}' is not a minisign public key: {e}"))?;
    let raw = b64(&line).ok_or_else(|| format!("'{line}' is not base64"))?;
    Ok(TrustedKey {
        id: key_id_hex(&raw[2..10]),
        key,
    })
}

/// The key id a `.minisig` text names (its second line).
pub fn signature_key_id(text: &str) -> Option<String> {
    let raw = b64(text.lines().nth(1)?)?;
    (raw.len() == 74).then(|| key_id_hex(&raw[2..10]))
}

/// The configured policies with their keys parsed.
pub struct Verifier {
    per: Vec<(Source, Policy, Vec<TrustedKey>)>,
}

impl Verifier {
    /// Parses every key; errors name the key in `[signatures.<backend>]`.
    pub fn from_config(cfg: &SignaturesConfig) -> Result<Verifier, String> {
        let mut per = Vec::new();
        for s in Source::ALL {
            let bp = cfg.of(s);
            let keys = bp
                .trusted_keys
                .iter()
                .map(|k| parse_key(k).map_err(|e| format!("[signatures.{s}] trusted_keys: {e}")))
                .collect::<Result<Vec<_>, _>>()?;
            if bp.policy != Policy::Off && keys.is_empty() {
                return Err(format!(
                    "[signatures.{s}] policy = \"{}\" needs at least one key in trusted_keys",
                    bp.policy.as_str()
                ));
            }
            per.push((s, bp.policy, keys));
        }
        Ok(Verifier { per })
    }

    pub fn policy(&self, s: Source) -> Policy {
        self.per
            .iter()
            .find(|(x, _, _)| *x == s)
            .map(|(_, p, _)| *p)
            .unwrap_or_default()
    }

    fn keys(&self, s: Source) -> &[TrustedKey] {
        self.per
            .iter()
            .find(|(x, _, _)| *x == s)
            .map(|(_, _, k)| k.as_slice())
            .unwrap_or_default()
    }

    /// Checks the signature of a downloaded artifact (`file`, digest
    /// `digest`) as the policy of its backend says. `Ok(Some(key id))` when
    /// verified, `Ok(None)` when not checked (policy off, or no signature
    /// under `verify-if-present`), `Err` refuses the artifact.
    pub async fn check(
        &self,
        entry: &VersionEntry,
        backend: &dyn Backend,
        file: &Path,
        digest: &str,
    ) -> Result<Option<String>, Error> {
        let source = entry.record.source;
        let policy = self.policy(source);
        if policy == Policy::Off {
            return Ok(None);
        }
        let what = format!(
            "{}/{} {} ({source} artifact {digest})",
            entry.record.ext_type, entry.record.name, entry.record.version
        );
        let refuse = |why: String| {
            Error::new(
                ErrorKind::IntegrityError,
                format!("signature check failed for {what}: {why}"),
            )
            .with_details(format!(
                "[signatures.{source}] policy = \"{}\"; nothing was cached",
                policy.as_str()
            ))
        };
        let sig = backend
            .signature(entry)
            .await
            .map_err(|e| Error::backend(source, &e))?;
        let Some(sig) = sig else {
            return match policy {
                Policy::Require => Err(refuse(format!(
                    "no signature found ({}), and one is required",
                    match source {
                        Source::Oci => format!("expected tag {}", oci_signature_tag(digest)),
                        Source::Gitea => "expected the release asset <asset>.minisig".into(),
                        Source::Local => "local folders carry none".into(),
                    }
                ))),
                _ => Ok(None),
            };
        };
        let text =
            String::from_utf8(sig).map_err(|_| refuse("the signature is not text".into()))?;
        let parsed = minisign_verify::Signature::decode(&text)
            .map_err(|e| refuse(format!("malformed signature: {e}")))?;
        let id = signature_key_id(&text).unwrap_or_else(|| "?".into());
        let keys = self.keys(source);
        let Some(k) = keys.iter().find(|k| k.id == id) else {
            return Err(refuse(format!(
                "signed by key {id}, which is not trusted (trusted keys: {})",
                keys.iter()
                    .map(|k| k.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        };
        let (key, path) = (k.key.clone(), file.to_path_buf());
        let res = tokio::task::spawn_blocking(move || -> Result<(), String> {
            let mut v = key.verify_stream(&parsed).map_err(|e| e.to_string())?;
            let mut f = std::fs::File::open(&path).map_err(|e| e.to_string())?;
            let mut buf = vec![0u8; 256 * 1024];
            loop {
                let n = f.read(&mut buf).map_err(|e| e.to_string())?;
                if n == 0 {
                    break;
                }
                v.update(&buf[..n]);
            }
            v.finalize().map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| Error::internal(format!("signature task failed: {e}")))?;
        match res {
            Ok(()) => Ok(Some(id)),
            Err(e) => Err(refuse(format!(
                "the signature by key {id} does not match the artifact's bytes ({e})"
            ))),
        }
    }
}

/// Signs `bytes` with the minisign secret key at `key_path` by running the
/// `minisign` program (`-S -s KEY -m FILE -x SIG -t COMMENT`); an encrypted
/// key reads `password` on its standard input. Returns the `.minisig` text
/// and the key id.
///
/// The program rather than the `minisign` crate: keys made with
/// `minisign -G -W` (minisign 0.11, Debian's) carry a zero checksum that the
/// crate refuses as corrupted, and the program is the reference for its own
/// key formats.
pub fn sign(
    key_path: &Path,
    password: Option<String>,
    bytes: &[u8],
    trusted_comment: &str,
) -> Result<(String, String), String> {
    use std::io::Write;
    let prog = std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join("minisign"))
        .find(|p| p.is_file())
        .ok_or("signing needs the `minisign` program on the PATH of extregd (Debian: apt-get install minisign)")?;
    let dir = tempfile::tempdir().map_err(|e| format!("temp folder: {e}"))?;
    let file = dir.path().join("artifact.tar.gz");
    let sig = dir.path().join("artifact.tar.gz.minisig");
    std::fs::write(&file, bytes).map_err(|e| format!("temp file: {e}"))?;
    let mut child = std::process::Command::new(prog)
        .arg("-S")
        .arg("-s")
        .arg(key_path)
        .arg("-m")
        .arg(&file)
        .arg("-x")
        .arg(&sig)
        .arg("-t")
        .arg(trusted_comment)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run minisign: {e}"))?;
    if let (Some(mut stdin), Some(p)) = (child.stdin.take(), password) {
        let _ = stdin.write_all(format!("{p}\n").as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("minisign: {e}"))?;
    if !out.status.success() {
        let err: String = String::from_utf8_lossy(&out.stderr)
            .trim()
            .chars()
            .take(300)
            .collect();
        return Err(format!(
            "minisign could not sign with {}: {err} (an encrypted key needs MINISIGN_PASSWORD in the environment of nu)",
            key_path.display()
        ));
    }
    let text = std::fs::read_to_string(&sig).map_err(|e| format!("reading the signature: {e}"))?;
    let id = signature_key_id(&text).ok_or("minisign wrote no signature")?;
    Ok((text, id))
}

/// Fetches at most [`MAX_SIGNATURE_BYTES`] of a response body.
pub async fn read_bounded(resp: reqwest::Response, what: &str) -> Result<Vec<u8>, BackendError> {
    if resp.content_length().unwrap_or(0) > MAX_SIGNATURE_BYTES as u64 {
        return Err(BackendError::Upstream(format!(
            "{what} is larger than {MAX_SIGNATURE_BYTES} bytes"
        )));
    }
    let mut out = Vec::new();
    let mut stream = resp.bytes_stream();
    use futures::StreamExt;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| BackendError::Io(format!("{what}: {e}")))?;
        out.extend_from_slice(&chunk);
        if out.len() > MAX_SIGNATURE_BYTES {
            return Err(BackendError::Upstream(format!(
                "{what} is larger than {MAX_SIGNATURE_BYTES} bytes"
            )));
        }
    }
    Ok(out)
}

/// `ext publish --sign`: packs the folder again (packing is reproducible),
/// checks the registry holds exactly those bytes for that version, signs
/// them and pushes the signature as tag `sha256-{hex}.minisig` (see the
/// module docs). `dry_run` signs and pushes nothing.
pub async fn sign_published(
    backend: &crate::backend::oci::OciBackend,
    dir: &Path,
    version: &str,
    key: &Path,
    password: Option<String>,
    dry_run: bool,
) -> Result<extreg_shared::protocol::SignResult, Error> {
    use crate::backend::oci::manifest::{self, ArtifactSpec};
    use crate::backend::oci::EMPTY_DIGEST;
    use crate::publish::MAX_PUBLISH_BYTES;
    let invalid = Error::invalid_request;
    let yaml_path = dir.join("extension.yaml");
    let yaml = tokio::fs::read(&yaml_path)
        .await
        .map_err(|e| invalid(format!("{}: {e}", yaml_path.display())))?;
    let m = crate::manifest::Manifest::parse(&yaml)
        .map_err(|e| invalid(format!("{}: {e}", yaml_path.display())))?;
    let v = extreg_shared::parse_version(version)?;
    if v != m.version {
        return Err(invalid(format!(
            "version {v} asked for, but {} says {}",
            yaml_path.display(),
            m.version
        )));
    }
    let src = dir.to_path_buf();
    let layer = tokio::task::spawn_blocking(move || crate::pack::pack_dir(&src, MAX_PUBLISH_BYTES))
        .await
        .map_err(|e| Error::internal(format!("packing failed: {e}")))?
        .map_err(|e| invalid(format!("cannot pack {}: {e}", dir.display())))?;
    let digest = crate::backend::sha256_tag(&layer);
    let repo = backend.repository(m.ext_type, &m.name);
    let tag = oci_signature_tag(&digest);
    let reference = backend.reference(&repo, &tag);
    if !dry_run {
        let held = Backend::versions(backend, m.ext_type, &m.name)
            .await
            .map_err(|e| Error::backend(Source::Oci, &e))?
            .into_iter()
            .find(|e| e.semver == v)
            .and_then(|e| e.record.checksum);
        if held.as_deref() != Some(digest.as_str()) {
            return Err(invalid(format!(
                "{} holds {} but {} packs to {digest}: publish it first (signing signs exactly the published bytes)",
                backend.reference(&repo, &v.to_string()),
                held.as_deref().unwrap_or("nothing"),
                dir.display()
            )));
        }
    }
    let comment = format!("extension {}/{} {} {digest}", m.ext_type, m.name, m.version);
    let key = key.to_path_buf();
    let (text, key_id) =
        tokio::task::spawn_blocking(move || sign(&key, password, &layer, &comment))
            .await
            .map_err(|e| Error::internal(format!("signing failed: {e}")))?
            .map_err(invalid)?;
    if dry_run {
        return Ok(extreg_shared::protocol::SignResult {
            reference,
            key_id,
            layer_digest: digest,
            pushed: false,
        });
    }
    let backend_err = |e: BackendError| Error::backend(Source::Oci, &e);
    let client = backend.client();
    let sig = bytes::Bytes::from(text.into_bytes());
    let sig_digest = crate::backend::sha256_tag(&sig);
    client
        .blob_push(&repo, EMPTY_DIGEST, bytes::Bytes::from_static(b"{}"))
        .await
        .map_err(backend_err)?;
    client
        .blob_push(&repo, &sig_digest, sig.clone())
        .await
        .map_err(backend_err)?;
    let title = format!("{}-{}.tar.gz.minisig", m.name, m.version);
    let manifest = manifest::artifact(&ArtifactSpec {
        artifact_type: SIGNATURE_ARTIFACT_TYPE,
        layer_media_type: SIGNATURE_MEDIA_TYPE,
        layer_digest: &sig_digest,
        layer_size: sig.len() as u64,
        title: &title,
        annotations: std::collections::BTreeMap::from([
            (
                "dev.provisioning.extension.signature.of".to_string(),
                digest.clone(),
            ),
            (
                "dev.provisioning.extension.signature.key".to_string(),
                key_id.clone(),
            ),
        ]),
    })
    .map_err(Error::internal)?;
    client
        .manifest_put(&repo, &tag, manifest)
        .await
        .map_err(backend_err)?;
    tracing::info!(%reference, %key_id, "signature pushed");
    Ok(extreg_shared::protocol::SignResult {
        reference,
        key_id,
        layer_digest: digest,
        pushed: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oci_signature_tags() {
        let d = format!("sha256:{}", "ab".repeat(32));
        let t = oci_signature_tag(&d);
        assert_eq!(t, format!("sha256-{}.minisig", "ab".repeat(32)));
        assert!(is_oci_signature_tag(&t));
        assert!(!is_oci_signature_tag("1.0.0"));
        assert!(!is_oci_signature_tag("sha256-abc.minisig"));
    }

    /// Made by `minisign -G -W` and `minisign -S` (0.11) over "hi\n".
    const PUB: &str = "untrusted comment: minisign public key 6F0BBF541044B24D\nRWRNskQQVL8Lb3ebX15yvCxcqaN3G+OJdOx7uCyri977jcCBa3hL9fSs\n";
    const SIG: &str = "untrusted comment: signature from minisign secret key\nRURNskQQVL8Lb7L85+pMm3PF7Gypn5wFPZTodZu7iW3NwDDpAz+y7Wm9jGZzhhMpwfixZBGyZn7wHcilfw8vOrfZGLFZ/bgCswo=\ntrusted comment: timestamp:1795972556\tfile:f\thashed\nQ6lJCwn6GyOgUiOvNxB2tLlzUmsrmve31jwtwuSVZRHwqzyTMZJIzEByhunB2tL2wtcrpUA4Iv9bXJw4d/GhDw==\n";

    #[test]
    fn minisign_keys_and_signatures_verify_and_tampering_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k.pub");
        std::fs::write(&p, PUB).unwrap();
        let from_file = parse_key(p.to_str().unwrap()).unwrap();
        let inline = parse_key(PUB.lines().nth(1).unwrap()).unwrap();
        assert_eq!(from_file.id, "6F0BBF541044B24D");
        assert_eq!(inline.id, from_file.id);
        assert_eq!(signature_key_id(SIG).as_deref(), Some("6F0BBF541044B24D"));
        let sig = minisign_verify::Signature::decode(SIG).unwrap();
        let mut v = inline.key.verify_stream(&sig).unwrap();
        v.update(b"hi\n");
        v.finalize().unwrap();
        let mut v = inline.key.verify_stream(&sig).unwrap();
        v.update(b"hI\n");
        assert!(v.finalize().is_err());
    }

    #[test]
    fn policies_need_keys_and_bad_keys_are_named() {
        let mut cfg = SignaturesConfig::default();
        cfg.oci.policy = Policy::Require;
        let e = Verifier::from_config(&cfg).err().unwrap();
        assert!(e.contains("[signatures.oci]"), "{e}");
        cfg.oci.trusted_keys = vec!["RWnotakey".into()];
        let e = Verifier::from_config(&cfg).err().unwrap();
        assert!(e.contains("trusted_keys"), "{e}");
        assert_eq!(
            Verifier::from_config(&SignaturesConfig::default())
                .unwrap()
                .policy(Source::Gitea),
            Policy::Off
        );
    }
}

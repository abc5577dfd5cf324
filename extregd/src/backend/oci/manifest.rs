//! OCI manifests: the media types and annotations extregd reads and
//! writes, reading an image manifest into what one version needs
//! ([`parse`]), building the artifact manifests it pushes ([`artifact`]),
//! and the cache of manifests by digest.
//!
//! The types are `oci-spec`'s ([`ImageManifest`], [`Descriptor`],
//! [`MediaType`]), not our own. What stays ours: the bytes are read bounded
//! and checked against the registry's `Docker-Content-Digest` by the client
//! before they get here, and the built manifests are serialized with sorted
//! keys, so the same inputs always give the same bytes (a dry run and the
//! push after it report one digest, whatever the map order in memory).
//!
//! **Which layer is the artifact.** The first layer whose media type ends in
//! `tar+gzip` or whose title ends in `.tar.gz`/`.tgz`, else the only layer;
//! its digest must be `sha256`. `artifactType` (else `config.mediaType`) is
//! read and logged; manifests that are not image manifests (indexes,
//! schema 1) are refused.

use bytes::Bytes;
use oci_spec::image::{
    Descriptor, DescriptorBuilder, Digest, DigestAlgorithm, ImageManifest, ImageManifestBuilder,
    MediaType,
};
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::sync::Arc;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const EMPTY_CONFIG: &str = "application/vnd.oci.empty.v1+json";
/// `sha256` of `{}`, the OCI empty descriptor's content.
pub const EMPTY_DIGEST: &str =
    "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";
/// The `artifactType` extregd publishes.
pub const ARTIFACT_TYPE: &str = "application/vnd.provisioning.extension.v1+tar+gzip";
pub const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// `Accept` when reading a version's manifest.
pub const ACCEPT_IMAGE: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";
/// `Accept` when only asking whether a tag exists (any manifest kind).
pub const ACCEPT_ANY: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.index.v1+json";

pub const ANN_VERSION: &str = "org.opencontainers.image.version";
pub const ANN_DESCRIPTION: &str = "org.opencontainers.image.description";
pub const ANN_AUTHORS: &str = "org.opencontainers.image.authors";
pub const ANN_CREATED: &str = "org.opencontainers.image.created";
pub const ANN_SOURCE: &str = "org.opencontainers.image.source";
pub const ANN_TITLE: &str = "org.opencontainers.image.title";
pub const ANN_URL: &str = "org.opencontainers.image.url";
pub const ANN_LICENSES: &str = "org.opencontainers.image.licenses";
pub const ANN_TAGS: &str = "dev.provisioning.extension.tags";
pub const ANN_TYPE: &str = "dev.provisioning.extension.type";
pub const ANN_NAME: &str = "dev.provisioning.extension.name";
/// `extension.yaml` `requires`, a JSON array of strings.
pub const ANN_REQUIRES: &str = "dev.provisioning.extension.requires";
/// `extension.yaml` `dependencies`, a JSON array of strings.
pub const ANN_DEPENDENCIES: &str = "dev.provisioning.extension.dependencies";

/// Largest manifest (or other JSON answer) read.
pub const MAX_JSON_BYTES: usize = 4 << 20;
/// Cached manifests (and tag -> digest pairs) before the cache is reset.
const MAX_CACHED: usize = 65_536;

/// What a manifest says about one version.
#[derive(Debug, Clone)]
pub struct Parsed {
    pub artifact_type: Option<String>,
    /// The artifact's layer (a `sha256` digest).
    pub layer: Descriptor,
    pub annotations: BTreeMap<String, String>,
    /// The manifest's own media type (OCI when it names none).
    pub media_type: String,
}

impl Parsed {
    /// The layer digest, lower case (`sha256:<hex>`).
    pub fn layer_digest(&self) -> String {
        self.layer.digest().to_string().to_ascii_lowercase()
    }
}

fn is_sha256(d: &Digest) -> bool {
    *d.algorithm() == DigestAlgorithm::Sha256
}

/// Reads an image manifest.
pub fn read(bytes: &[u8]) -> Result<ImageManifest, String> {
    let m: ImageManifest =
        serde_json::from_slice(bytes).map_err(|e| format!("unreadable manifest: {e}"))?;
    if m.schema_version() != 2 {
        return Err(format!("schemaVersion {} is not 2", m.schema_version()));
    }
    if let Some(mt) = m.media_type() {
        let mt = mt.as_ref();
        if mt != OCI_MANIFEST && mt != DOCKER_MANIFEST {
            return Err(format!("media type {mt} is not an image manifest"));
        }
    }
    Ok(m)
}

/// Reads an image manifest for the artifact it carries; `Err` says why it
/// is not one.
pub fn parse(bytes: &[u8]) -> Result<Parsed, String> {
    let m = read(bytes)?;
    let config_type = m.config().media_type().as_ref().to_string();
    let artifact_type = m
        .artifact_type()
        .as_ref()
        .map(|a| a.as_ref().to_string())
        .filter(|a| !a.is_empty())
        .or_else(|| Some(config_type).filter(|a| !a.is_empty()));
    let title = |d: &Descriptor| {
        d.annotations()
            .as_ref()
            .and_then(|a| a.get(ANN_TITLE))
            .is_some_and(|t| t.ends_with(".tar.gz") || t.ends_with(".tgz"))
    };
    let layers = m.layers();
    let layer = layers
        .iter()
        .find(|d| d.media_type().as_ref().ends_with("tar+gzip") || title(d))
        .or_else(|| (layers.len() == 1).then(|| &layers[0]))
        .cloned()
        .ok_or("no tar+gzip layer")?;
    if !is_sha256(layer.digest()) {
        return Err(format!("layer digest '{}' is not sha256", layer.digest()));
    }
    Ok(Parsed {
        artifact_type,
        layer,
        media_type: m
            .media_type()
            .as_ref()
            .map(|t| t.as_ref().to_string())
            .unwrap_or_else(|| OCI_MANIFEST.to_string()),
        annotations: m
            .annotations()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect(),
    })
}

/// The first layer of a manifest (a signature's), checked to be `sha256`.
pub fn first_layer(bytes: &[u8]) -> Result<Descriptor, String> {
    let m = read(bytes)?;
    m.layers()
        .first()
        .filter(|l| is_sha256(l.digest()))
        .cloned()
        .ok_or_else(|| "no sha256 layer".to_string())
}

/// What one pushed artifact consists of: one layer over the empty config.
pub struct ArtifactSpec<'a> {
    pub artifact_type: &'a str,
    pub layer_media_type: &'a str,
    pub layer_digest: &'a str,
    pub layer_size: u64,
    /// `org.opencontainers.image.title` of the layer (the file name).
    pub title: &'a str,
    pub annotations: BTreeMap<String, String>,
}

/// The manifest of an artifact (OCI image manifest, empty config carried
/// inline), serialized with sorted keys: the same spec, the same bytes.
pub fn artifact(spec: &ArtifactSpec<'_>) -> Result<Bytes, String> {
    let digest = |d: &str| Digest::from_str(d).map_err(|e| format!("digest '{d}': {e}"));
    let config = DescriptorBuilder::default()
        .media_type(MediaType::EmptyJSON)
        .digest(digest(EMPTY_DIGEST)?)
        .size(2u64)
        .data("e30=")
        .build()
        .map_err(|e| e.to_string())?;
    let layer = DescriptorBuilder::default()
        .media_type(MediaType::from(spec.layer_media_type))
        .digest(digest(spec.layer_digest)?)
        .size(spec.layer_size)
        .annotations(HashMap::from([(
            ANN_TITLE.to_string(),
            spec.title.to_string(),
        )]))
        .build()
        .map_err(|e| e.to_string())?;
    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .artifact_type(MediaType::from(spec.artifact_type))
        .config(config)
        .layers(vec![layer])
        .annotations(
            spec.annotations
                .clone()
                .into_iter()
                .collect::<HashMap<_, _>>(),
        )
        .build()
        .map_err(|e| e.to_string())?;
    // Through `Value`, whose maps are sorted: `HashMap` order never leaks.
    let value = serde_json::to_value(&manifest).map_err(|e| e.to_string())?;
    Ok(Bytes::from(
        serde_json::to_vec(&sorted(value)).map_err(|e| e.to_string())?,
    ))
}

/// `v` with every object's keys in order (whatever `serde_json`'s map is).
fn sorted(v: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Object(m) => {
            let mut pairs: Vec<(String, Value)> = m.into_iter().collect();
            pairs.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(pairs.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Value::Array(a) => Value::Array(a.into_iter().map(sorted).collect()),
        other => other,
    }
}

/// Manifests by digest (immutable, kept for the life of the process) and
/// the digest last seen for each `{repo}:{tag}`; both bounded.
#[derive(Default)]
pub struct ManifestCache {
    by_digest: Mutex<HashMap<String, Arc<Parsed>>>,
    tags: Mutex<HashMap<String, String>>,
}

impl ManifestCache {
    pub fn get(&self, digest: &str) -> Option<Arc<Parsed>> {
        self.by_digest.lock().get(digest).cloned()
    }

    /// Whether a tag has been seen (so a `HEAD` can tell if it moved).
    pub fn knows_tag(&self, repo: &str, tag: &str) -> bool {
        self.tags.lock().contains_key(&format!("{repo}:{tag}"))
    }

    pub fn insert(&self, repo: &str, tag: &str, digest: &str, parsed: Arc<Parsed>) {
        {
            let mut m = self.by_digest.lock();
            if m.len() >= MAX_CACHED {
                m.clear();
            }
            m.insert(digest.to_string(), parsed);
        }
        let mut t = self.tags.lock();
        if t.len() >= MAX_CACHED {
            t.clear();
        }
        t.insert(format!("{repo}:{tag}"), digest.to_string());
    }

    /// Forgets what is known about a tag (after a push or delete).
    pub fn forget_tag(&self, repo: &str, tag: &str) {
        self.tags.lock().remove(&format!("{repo}:{tag}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(l: &str) -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","artifactType":"{ARTIFACT_TYPE}",
            "config":{{"mediaType":"{EMPTY_CONFIG}","digest":"{EMPTY_DIGEST}","size":2}},
            "layers":[{{"mediaType":"{LAYER_MEDIA_TYPE}","digest":"sha256:{l}","size":42}}],
            "annotations":{{"{ANN_TAGS}":"a, b"}}}}"#
        )
    }

    #[test]
    fn manifests_parse() {
        let m = sample(&"a".repeat(64));
        let p = parse(m.as_bytes()).unwrap();
        assert_eq!(p.layer.size(), 42);
        assert_eq!(p.artifact_type.as_deref(), Some(ARTIFACT_TYPE));
        assert_eq!(p.annotations[ANN_TAGS], "a, b");
        let no_type = m.replace(&format!("\"artifactType\":\"{ARTIFACT_TYPE}\","), "");
        assert_eq!(
            parse(no_type.as_bytes()).unwrap().artifact_type.as_deref(),
            Some(EMPTY_CONFIG)
        );
        let index = m.replace(OCI_MANIFEST, OCI_INDEX);
        assert!(parse(index.as_bytes()).is_err());
        assert!(parse(b"{\"schemaVersion\":1}").is_err());
        let docker = m.replace(OCI_MANIFEST, DOCKER_MANIFEST);
        assert!(parse(docker.as_bytes()).is_ok());
        let sha512 = m.replace(
            &format!("sha256:{}", "a".repeat(64)),
            &format!("sha512:{}", "a".repeat(128)),
        );
        assert!(parse(sha512.as_bytes()).unwrap_err().contains("not sha256"));
    }

    #[test]
    fn built_manifests_are_the_sorted_json_of_their_parts() {
        let digest = format!("sha256:{}", "b".repeat(64));
        let spec = ArtifactSpec {
            artifact_type: ARTIFACT_TYPE,
            layer_media_type: LAYER_MEDIA_TYPE,
            layer_digest: &digest,
            layer_size: 7,
            title: "x-1.0.0.tar.gz",
            annotations: BTreeMap::from([
                (ANN_VERSION.to_string(), "1.0.0".to_string()),
                (ANN_NAME.to_string(), "x".to_string()),
            ]),
        };
        let built = artifact(&spec).unwrap();
        // The hand-written form extregd published before `oci-spec`: the
        // same bytes, so manifest digests did not change.
        let expected = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": ARTIFACT_TYPE,
            "config": {"mediaType": EMPTY_CONFIG, "digest": EMPTY_DIGEST, "size": 2, "data": "e30="},
            "layers": [{
                "mediaType": LAYER_MEDIA_TYPE, "digest": digest, "size": 7,
                "annotations": {ANN_TITLE: "x-1.0.0.tar.gz"}
            }],
            "annotations": {ANN_VERSION: "1.0.0", ANN_NAME: "x"},
        });
        assert_eq!(
            std::str::from_utf8(&built).unwrap(),
            serde_json::to_string(&expected).unwrap()
        );
        for _ in 0..5 {
            assert_eq!(artifact(&spec).unwrap(), built);
        }
        let p = parse(&built).unwrap();
        assert_eq!(p.layer_digest(), digest);
        assert_eq!(first_layer(&built).unwrap().size(), 7);
    }
}

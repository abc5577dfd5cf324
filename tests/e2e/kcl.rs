//! KCL packages and generic OCI artifacts (seed 003): `POST
//! /api/v1/oci/artifacts` against the real `docker-registry`, with KCL
//! packages pushed by the tests' own OCI code the way `kcl mod push` lays
//! them out (one `application/vnd.oci.image.layer.v1.tar` layer, the
//! `org.kcllang.package.*` annotations).

use extreg_tests::registry::{Options, Registry, EMPTY_CONFIG, EMPTY_DIGEST, OCI_MANIFEST};
use extreg_tests::*;
use serde_json::{json, Value};

const NS: &str = "provisioning-extensions";
const KCL_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";

/// A KCL package as `kcl mod push` stores it: a plain tar of the package
/// folder.
fn kcl_tar(name: &str, version: &str) -> Vec<u8> {
    let mut t = tar::Builder::new(Vec::new());
    let files = [
        (
            "kcl.mod".to_string(),
            format!(
                "[package]\nname = \"{name}\"\nedition = \"v0.9.0\"\nversion = \"{version}\"\n"
            ),
        ),
        (
            "main.k".to_string(),
            format!("schema Server:\n    name: str\n    version: str = \"{version}\"\n"),
        ),
    ];
    for (path, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1);
        t.append_data(&mut h, path, data.as_bytes()).unwrap();
    }
    t.into_inner().unwrap()
}

/// What one pushed KCL package is.
struct Pkg {
    layer: Vec<u8>,
    layer_digest: String,
    manifest_digest: String,
}

/// Pushes `{repo}:{tag}` as a KCL package; `created` goes into
/// `org.opencontainers.image.created` when given.
fn push_kcl(reg: &Registry, repo: &str, tag: &str, created: Option<&str>) -> Pkg {
    let name = repo.rsplit('/').next().unwrap();
    let layer = kcl_tar(name, tag);
    reg.push_blob(repo, b"{}");
    let layer_digest = reg.push_blob(repo, &layer);
    let mut ann = serde_json::Map::new();
    ann.insert("org.kcllang.package.name".into(), json!(name));
    ann.insert("org.kcllang.package.version".into(), json!(tag));
    if let Some(c) = created {
        ann.insert("org.opencontainers.image.created".into(), json!(c));
    }
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": EMPTY_CONFIG, "digest": EMPTY_DIGEST, "size": 2},
        "layers": [{"mediaType": KCL_LAYER, "digest": layer_digest, "size": layer.len(),
                    "annotations": {"org.opencontainers.image.title": format!("{name}_{tag}.tar")}}],
        "annotations": ann,
    }))
    .unwrap();
    let manifest_digest = reg.put_manifest(repo, &manifest, &[tag]);
    Pkg {
        layer,
        layer_digest,
        manifest_digest,
    }
}

fn start(sb: &Sandbox, reg: &Registry, extra_oci: &str) -> Daemon {
    let cfg = sb.write_config(&format!(
        "[oci]\nregistry = \"{}\"\nnamespace = \"{NS}\"\ntimeout_seconds = 10\n{extra_oci}\n\
         [cache]\nartifact_dir = \"{}\"\n",
        reg.addr,
        sb.path("artifacts").display()
    ));
    Daemon::start(sb, &["--config", cfg.to_str().unwrap()], &[])
}

fn post(d: &Daemon, body: &str) -> (u16, Value, reqwest::header::HeaderMap) {
    let r = d
        .client
        .post(d.api("/oci/artifacts"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().unwrap();
    let v = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("POST {body}: not JSON ({e}): {text}"));
    (status, v, headers)
}

fn expected(name: &str, tag: &str, p: &Pkg, created: Option<&str>, ns: &str) -> Value {
    json!({
        "name": name,
        "version": tag,
        "digest": p.manifest_digest,
        "size": p.layer.len(),
        "media_type": OCI_MANIFEST,
        "created_at": created,
        "namespace": ns,
        "layer_digest": p.layer_digest,
        "layer_media_type": KCL_LAYER,
    })
}

#[test]
fn kcl_packages_are_listed_in_the_seed_shape() {
    let reg = Registry::start(Options::default());
    let core1 = push_kcl(
        &reg,
        "kcl/provisioning-core",
        "1.0.0",
        Some("2025-10-06T14:00:00+02:00"),
    );
    let core2 = push_kcl(&reg, "kcl/provisioning-core", "1.1.0", None);
    let k8s = push_kcl(&reg, "kcl/k8s", "0.2.0", Some("2025-01-02T03:04:05Z"));
    // Not listed: deeper than one level, another namespace, a namespace
    // that only starts the same.
    push_kcl(&reg, "kcl/deep/nested", "1.0.0", None);
    push_kcl(&reg, "private/secret", "1.0.0", None);
    push_kcl(&reg, "kclx/other", "1.0.0", None);
    // An extension of the configured namespace is not a generic artifact.
    reg.push_artifact(
        &format!("{NS}/redis-taskserv"),
        &["1.0.0"],
        &tar_gz(&[(
            "extension.yaml".into(),
            manifest("taskserv", "redis", "1.0.0", "Redis", &[]).into_bytes(),
        )]),
        &[],
    );
    let sb = Sandbox::new();
    let d = start(&sb, &reg, "");

    let (s, v, h) = post(&d, r#"{"namespace": "kcl"}"#);
    assert_eq!(s, 200, "{v}");
    assert_eq!(h["content-type"], "application/json");
    assert_eq!(
        v,
        json!({
            "success": true,
            "data": [
                expected("k8s", "0.2.0", &k8s, Some("2025-01-02T03:04:05Z"), "kcl"),
                expected("provisioning-core", "1.0.0", &core1, Some("2025-10-06T12:00:00Z"), "kcl"),
                expected("provisioning-core", "1.1.0", &core2, None, "kcl"),
            ]
        })
    );
    // The digests are the registry's own.
    assert_eq!(
        sha256_tag(&core1.layer),
        v["data"][1]["layer_digest"].as_str().unwrap()
    );

    // Cached: a tag pushed now is not listed until the cache is dropped.
    let core3 = push_kcl(&reg, "kcl/provisioning-core", "1.2.0", None);
    let (_, again, _) = post(&d, r#"{"namespace":"kcl"}"#);
    assert_eq!(again["data"].as_array().unwrap().len(), 3, "{again}");
    assert!(d.metric("cache_hits_total{cache=\"oci_artifacts\"}") >= 1.0);
    let nu = Nu::new(&sb);
    nu.json("ext discover --refresh");
    let (_, fresh, _) = post(&d, r#"{"namespace":"kcl"}"#);
    let rows = fresh["data"].as_array().unwrap();
    assert_eq!(rows.len(), 4, "{fresh}");
    assert_eq!(
        rows[3],
        expected("provisioning-core", "1.2.0", &core3, None, "kcl")
    );
}

#[test]
fn only_configured_namespaces_are_read() {
    let reg = Registry::start(Options::default());
    push_kcl(&reg, "private/secret", "1.0.0", None);
    let team = push_kcl(&reg, "team/pkgs/base", "2.0.0", None);
    let sb = Sandbox::new();
    let d = start(&sb, &reg, "artifact_namespaces = [\"kcl\", \"team/pkgs\"]");
    let before = reg.log().lines().count();

    // Refused before the registry is asked.
    for (body, status, kind) in [
        (r#"{"namespace": "private"}"#, 404, "not_found"),
        (r#"{"namespace": "team"}"#, 404, "not_found"),
        (r#"{"namespace": "../private"}"#, 400, "invalid_request"),
        (r#"{"namespace": "kcl/.."}"#, 400, "invalid_request"),
        (r#"{"namespace": "KCL"}"#, 400, "invalid_request"),
        (r#"{"namespace": ""}"#, 400, "invalid_request"),
        (
            r#"{"namespace": "kcl", "registry": "evil:5000"}"#,
            400,
            "invalid_request",
        ),
        (r#"{"namespace": 7}"#, 400, "invalid_request"),
        (r#"{}"#, 400, "invalid_request"),
        (r#"not json"#, 400, "invalid_request"),
    ] {
        let (s, v, h) = post(&d, body);
        assert_eq!(s, status, "{body}: {v}");
        assert_eq!(h["content-type"], "application/json", "{body}");
        assert_eq!(v["error"], kind, "{body}: {v}");
        assert!(
            v["message"].as_str().unwrap().contains("namespace"),
            "{body}: the message names the field: {v}"
        );
    }
    let (_, v, _) = post(&d, r#"{"namespace": "private"}"#);
    assert_eq!(v["details"], "readable namespaces: kcl, team/pkgs", "{v}");
    let big = format!(r#"{{"namespace": "{}"}}"#, "a".repeat(8000));
    let (s, v, _) = post(&d, &big);
    assert_eq!(
        (s, v["error"].as_str()),
        (400, Some("invalid_request")),
        "{v}"
    );
    let after = reg.log().lines().count();
    assert_eq!(before, after, "the registry was asked:\n{}", reg.log());

    // A configured namespace of two components is read.
    let (s, v, _) = post(&d, r#"{"namespace": "team/pkgs"}"#);
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v["data"],
        json!([expected("base", "2.0.0", &team, None, "team/pkgs")])
    );

    // Other methods: 405 naming POST, with the JSON body.
    let r = d.client.get(d.api("/oci/artifacts")).send().unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "POST");
    let v: Value = r.json().unwrap();
    assert_eq!(v["error"], "invalid_request");
}

#[test]
fn without_a_registry_the_listing_is_a_json_404() {
    let sb = Sandbox::new();
    let cfg = sb.write_config(&format!(
        "[cache]\nartifact_dir = \"{}\"\n",
        sb.path("artifacts").display()
    ));
    let d = Daemon::start(&sb, &["--config", cfg.to_str().unwrap()], &[]);
    let (s, v, _) = post(&d, r#"{"namespace": "kcl"}"#);
    assert_eq!(s, 404, "{v}");
    assert_eq!(v["error"], "not_found");
    assert!(
        v["message"].as_str().unwrap().contains("[oci] registry"),
        "{v}"
    );
}

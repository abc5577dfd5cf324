//! KCL packages and generic OCI artifacts (seed 003): `POST
//! /api/v1/oci/artifacts`, `ext kcl list` and `ext kcl pull` against the
//! real `docker-registry` and the real `nu`, with KCL packages pushed by
//! the tests' own OCI code the way `kcl mod push` lays them out
//! (`Registry::push_kcl`: one `application/vnd.oci.image.layer.v1.tar`
//! layer, the `org.kcllang.package.*` annotations).

use extreg_tests::registry::{kcl_package, Options, Registry, KCL_LAYER, OCI_MANIFEST};
use extreg_tests::*;
use serde_json::{json, Value};

const NS: &str = "provisioning-extensions";
/// What one pushed KCL package is.
struct Pkg {
    layer: Vec<u8>,
    layer_digest: String,
    manifest_digest: String,
}

/// Pushes `{repo}:{tag}` as a KCL package (see `Registry::push_kcl`).
fn push_kcl(reg: &Registry, repo: &str, tag: &str, created: Option<&str>) -> Pkg {
    let p = reg.push_kcl(repo, tag, created);
    Pkg {
        layer: kcl_package(repo.rsplit('/').next().unwrap(), tag),
        layer_digest: p.layer_digest,
        manifest_digest: p.manifest_digest,
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

#[test]
fn kcl_packages_are_listed_and_pulled_from_nushell() {
    let reg = Registry::start(Options::default());
    let core1 = push_kcl(
        &reg,
        "kcl/provisioning-core",
        "1.0.0",
        Some("2025-10-06T12:00:00Z"),
    );
    let core2 = push_kcl(
        &reg,
        "kcl/provisioning-core",
        "1.1.0",
        Some("2025-11-01T08:30:00Z"),
    );
    push_kcl(&reg, "kcl/provisioning-core", "2.0.0-rc.1", None);
    let sb = Sandbox::new();
    let _d = start(&sb, &reg, "");
    let nu = Nu::new(&sb);

    // Typed columns: filesize and datetime.
    let types = nu.json(
        "ext kcl list | where version == 1.0.0 | get 0 | \
         {size: ($in.size | describe), created_at: ($in.created_at | describe)}",
    );
    assert_eq!(
        types,
        json!({"size": "filesize", "created_at": "datetime"}),
        "{types}"
    );
    let rows = nu.json("ext kcl list");
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert_eq!(rows[0]["name"], "provisioning-core");
    assert_eq!(rows[0]["version"], "1.0.0");
    assert_eq!(rows[0]["size"], core1.layer.len());
    assert_eq!(rows[0]["digest"], core1.manifest_digest);
    assert_eq!(rows[0]["layer_digest"], core1.layer_digest);
    assert_eq!(rows[0]["created_at"], "2025-10-06T12:00:00+00:00");
    assert_eq!(rows[0]["media_type"], OCI_MANIFEST);
    assert_eq!(rows[2]["version"], "2.0.0-rc.1");
    assert_eq!(rows[2]["created_at"], Value::Null);

    // Pull a version: the bytes in the daemon's cache are the pushed blob.
    let p = nu.json("ext kcl pull provisioning-core --version 1.0.0");
    assert_eq!(p["version"], "1.0.0", "{p}");
    assert_eq!(p["layer_digest"], core1.layer_digest);
    assert_eq!(p["size"], core1.layer.len());
    assert_eq!(p["cached"], false);
    let path = std::path::PathBuf::from(p["path"].as_str().unwrap());
    assert!(path.starts_with(sb.path("artifacts")), "{}", path.display());
    assert_eq!(std::fs::read(&path).unwrap(), core1.layer);
    assert_eq!(
        sha256_tag(&std::fs::read(&path).unwrap()),
        core1.layer_digest
    );
    let again = nu.json("ext kcl pull provisioning-core --version 1.0.0");
    assert_eq!(again["cached"], true, "{again}");
    assert_eq!(again["path"], p["path"]);
    assert_eq!(
        reg.blob_gets("kcl/provisioning-core", &core1.layer_digest),
        1,
        "the second pull came from the cache"
    );

    // Without --version: the newest stable tag.
    let newest = nu.json("ext kcl pull provisioning-core");
    assert_eq!(newest["version"], "1.1.0", "{newest}");
    assert_eq!(
        std::fs::read(newest["path"].as_str().unwrap()).unwrap(),
        core2.layer
    );
    // The cache holds them as generic artifacts, not as extensions.
    let refs: Vec<String> = files_under(&sb.path("artifacts/refs"))
        .iter()
        .map(|p| {
            p.strip_prefix(sb.path("artifacts/refs"))
                .unwrap()
                .display()
                .to_string()
        })
        .collect();
    let mut refs = refs;
    refs.sort();
    assert_eq!(
        refs,
        [
            "oci-artifact/kcl/provisioning-core/1.0.0@oci.json",
            "oci-artifact/kcl/provisioning-core/1.1.0@oci.json"
        ]
    );
    assert_eq!(nu.json("ext cache list"), json!([]));
    let stats = nu.json("ext cache stats");
    assert_eq!(stats["artifacts"]["entries"], 2, "{stats}");
    // A cleared cache drops them.
    nu.json("ext cache clear --all");
    assert!(files_under(&sb.path("artifacts/blobs")).is_empty());
}

/// Whether nu's rendered error underlines `word` of the source line
/// holding `line` (the underline, `^^^|^^^` without a terminal, starts
/// under its first char).
fn underlined(stderr: &str, line: &str, word: &str) -> bool {
    let lines: Vec<&str> = stderr.lines().collect();
    let Some(i) = lines.iter().position(|l| l.contains(line)) else {
        return false;
    };
    let col = |l: &str, pat: &str| l.find(pat).map(|b| l[..b].chars().count());
    let Some(want) = col(lines[i], line).map(|c| c + line.find(word).unwrap()) else {
        return false;
    };
    lines
        .get(i + 1)
        .and_then(|u| col(u, "^").or_else(|| col(u, "─")))
        .is_some_and(|c| c == want)
}

#[test]
fn bad_namespaces_names_and_versions_are_labelled_in_nushell() {
    let reg = Registry::start(Options::default());
    push_kcl(&reg, "private/secret", "1.0.0", None);
    push_kcl(&reg, "kcl/provisioning-core", "1.0.0", None);
    let sb = Sandbox::new();
    let _d = start(&sb, &reg, "");
    let nu = Nu::new(&sb);
    let before = reg.log().lines().count();

    // The daemon refuses a namespace it does not read; the error points
    // at --namespace.
    let out = nu.run("ext kcl list --namespace private");
    assert!(!out.ok);
    assert!(
        out.stderr.contains("namespace 'private' is not one of"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("extregd::not_found"), "{}", out.stderr);
    assert!(
        underlined(
            &out.stderr,
            "ext kcl list --namespace private",
            "--namespace"
        ),
        "the label points at the namespace:\n{}",
        out.stderr
    );
    let out = nu.run("ext kcl pull secret --namespace private");
    assert!(!out.ok);
    assert!(out.stderr.contains("is not one of"), "{}", out.stderr);
    // Malformed input is refused by the plugin before any I/O.
    for (cmd, what) in [
        ("ext kcl list --namespace ../private", "invalid namespace"),
        ("ext kcl pull ../etc", "invalid package name"),
        (
            "ext kcl pull provisioning-core --version 'a/b'",
            "invalid version",
        ),
    ] {
        let out = nu.run(cmd);
        assert!(!out.ok, "{cmd}");
        assert!(out.stderr.contains(what), "{cmd}: {}", out.stderr);
    }
    assert_eq!(
        before,
        reg.log().lines().count(),
        "the registry was asked:\n{}",
        reg.log()
    );
    // A tag that does not exist: not_found on --version.
    let out = nu.run("ext kcl pull provisioning-core --version 9.9.9");
    assert!(!out.ok);
    assert!(
        out.stderr
            .contains("kcl/provisioning-core:9.9.9 is not in the registry"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_tampered_kcl_package_is_refused_and_nothing_is_cached() {
    let reg = Registry::start(Options::default());
    let pkg = push_kcl(&reg, "kcl/provisioning-core", "1.0.0", None);
    // The registry now serves other bytes of the same length.
    let file = reg.blob_file(&pkg.layer_digest);
    let mut data = std::fs::read(&file).unwrap();
    for b in data.iter_mut().take(64) {
        *b ^= 0x5a;
    }
    std::fs::write(&file, &data).unwrap();
    let sb = Sandbox::new();
    let _d = start(&sb, &reg, "");
    let nu = Nu::new(&sb);
    for _ in 0..2 {
        let out = nu.run("ext kcl pull provisioning-core --version 1.0.0");
        assert!(!out.ok);
        assert!(
            out.stderr.contains("extregd::integrity_error"),
            "{}",
            out.stderr
        );
    }
    let left: Vec<_> = ["blobs", "refs", "tmp"]
        .iter()
        .flat_map(|d| files_under(&sb.path("artifacts").join(d)))
        .collect();
    assert!(left.is_empty(), "nothing cached: {left:?}");
    assert_eq!(
        reg.blob_gets("kcl/provisioning-core", &pkg.layer_digest),
        2,
        "each pull fetched (and refused) the bytes"
    );
}

#[test]
fn the_kcl_command_examples_run_in_real_nu() {
    let reg = Registry::start(Options::default());
    let core = push_kcl(
        &reg,
        "kcl/provisioning-core",
        "1.0.0",
        Some("2025-10-06T12:00:00Z"),
    );
    let sb = Sandbox::new();
    let _d = start(&sb, &reg, "");
    let nu = Nu::new(&sb);
    std::fs::create_dir_all(sb.path("home/vendor")).unwrap();
    let last = nu.json(
        "ext kcl list | where name == provisioning-core | sort-by created_at | last | get version",
    );
    assert_eq!(last, "1.0.0");
    let big = nu.json("ext kcl list --namespace kcl | where size > 1kb | select name version size");
    assert_eq!(
        big,
        json!([{"name": "provisioning-core", "version": "1.0.0", "size": core.layer.len()}])
    );
    assert!(core.layer.len() > 1000);
    let out = nu.run("ext kcl pull provisioning-core --version 1.0.0");
    assert!(out.ok, "{}", out.stderr);
    let out = nu.run("tar -xf (ext kcl pull provisioning-core).path -C ./vendor");
    assert!(out.ok, "{}", out.stderr);
    let kcl_mod = std::fs::read_to_string(sb.path("home/vendor/kcl.mod")).unwrap();
    assert!(
        kcl_mod.contains("name = \"provisioning-core\""),
        "{kcl_mod}"
    );
    assert_eq!(nu.json("ext kcl | describe"), "string");
}

#[test]
fn registry_notifications_drop_the_cached_kcl_listing() {
    const SECRET: &str = "kcl-hook-secret-0123456789";
    let sb = Sandbox::new();
    let secret = sb.path("registry-hook");
    std::fs::write(&secret, SECRET).unwrap();
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let port = extreg_tests::registry::free_port();
    let cfg = sb.write_config(&format!(
        "[oci]\nregistry = \"127.0.0.1:{port}\"\nnamespace = \"{NS}\"\ntimeout_seconds = 5\n\
         [cache]\nartifact_dir = \"{}\"\nttl_seconds = 3600\n\
         [webhooks]\nregistry_secret_path = \"{}\"\n",
        sb.path("artifacts").display(),
        secret.display()
    ));
    let d = Daemon::start(&sb, &["--config", cfg.to_str().unwrap()], &[]);
    let reg = Registry::start(Options::notifying(port, &d.api("/hooks/registry"), SECRET));
    let versions = |d: &Daemon| -> Vec<String> {
        let (s, v, _) = post(d, r#"{"namespace": "kcl"}"#);
        assert_eq!(s, 200, "{v}");
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["version"].as_str().unwrap().to_string())
            .collect()
    };
    push_kcl(&reg, "kcl/provisioning-core", "1.0.0", None);
    assert!(wait_until(std::time::Duration::from_secs(10), || versions(
        &d
    ) == [
        "1.0.0"
    ]));
    // The listing is cached for an hour; the registry's notification of the
    // next push drops it.
    push_kcl(&reg, "kcl/provisioning-core", "1.1.0", None);
    assert!(
        wait_until(std::time::Duration::from_secs(5), || versions(&d)
            == ["1.0.0", "1.1.0"]),
        "the pushed tag never appeared (ttl is an hour); registry log:\n{}",
        reg.log()
    );
}

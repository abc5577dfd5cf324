//! The OCI backend, end to end: the real `extregd` binary against the real
//! `docker-registry` (Debian, distribution 2.8.2), driven through `/api/v1`;
//! publishing through the library (`extregd::publish`), checked with
//! `skopeo`.

use extreg_shared::ExtensionType;
use extreg_tests::registry::{skopeo, write_oci_layout, Options, PagingProxy, Registry};
use extreg_tests::*;
use extregd::backend::oci::OciBackend;
use extregd::config::OciConfig;
use extregd::publish::{self, PublishError};
use serde_json::Value;
use std::time::Duration;

const NS: &str = "provisioning-extensions";

fn start_daemon(sb: &Sandbox, registry: &str, auth: Option<&str>, extra: &str) -> Daemon {
    let mut toml =
        format!("[oci]\nregistry = \"{registry}\"\nnamespace = \"{NS}\"\ntimeout_seconds = 5\n");
    if let Some(a) = auth {
        use std::os::unix::fs::PermissionsExt;
        let p = sb.path("oci-auth.txt");
        std::fs::write(&p, format!("{a}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        toml.push_str(&format!("auth_token_path = \"{}\"\n", p.display()));
    }
    toml.push_str(&format!(
        "[cache]\nartifact_dir = \"{}\"\n{extra}",
        sb.path("artifacts").display()
    ));
    let cfg = sb.write_config(&toml);
    Daemon::start(sb, &["--config", cfg.to_str().unwrap()], &[])
}

fn json_ok(d: &Daemon, path: &str) -> Value {
    let (s, v) = d.get_json(path);
    assert_eq!(s, 200, "GET {path}: {v}");
    v
}

fn versions(d: &Daemon, path: &str) -> Vec<String> {
    json_ok(d, path)
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_str().unwrap().to_string())
        .collect()
}

fn artifact(name: &str, version: &str) -> Vec<u8> {
    tar_gz(&[(
        "extension.yaml".to_string(),
        manifest("provider", name, version, "x", &[]).into_bytes(),
    )])
}

#[test]
fn listing_follows_pages_ignores_strangers_and_maps_annotations() {
    let reg = Registry::start(Options {
        catalog_max: Some(3),
        ..Default::default()
    });
    // 118 stable versions, a pre-release, a `v`-prefixed one and a tag that
    // is not a version: 121 tags, more than one page of 100.
    let mut big_tags: Vec<String> = (0..118).map(|i| format!("1.{i}.0")).collect();
    big_tags.extend(["2.0.0-rc.1", "v0.9.0", "latest"].map(String::from));
    let tag_refs: Vec<&str> = big_tags.iter().map(String::as_str).collect();
    // Annotated: 121 tags of one artifact that says 1.0.0 inside would
    // otherwise be flagged as mismatches (tested in seed_oci).
    reg.push_artifact(
        &format!("{NS}/big-provider"),
        &tag_refs,
        &artifact("big", "1.0.0"),
        &[("org.opencontainers.image.description", "big")],
    );
    let k_layer = artifact("kubernetes", "1.28.0");
    let k = reg.push_artifact(
        &format!("{NS}/kubernetes-taskserv"),
        &["1.28.0"],
        &k_layer,
        &[
            ("org.opencontainers.image.version", "1.28.0"),
            (
                "org.opencontainers.image.description",
                "Kubernetes orchestration",
            ),
            ("org.opencontainers.image.authors", "provisioning-team"),
            ("org.opencontainers.image.source", "https://example.org/k8s"),
            (
                "org.opencontainers.image.created",
                "2024-05-01T10:00:00+02:00",
            ),
            ("dev.provisioning.extension.tags", "kubernetes, containers"),
            ("dev.provisioning.extension.type", "taskserv"),
            ("dev.provisioning.extension.name", "kubernetes"),
        ],
    );
    reg.push_artifact(
        &format!("{NS}/kubernetes-taskserv"),
        &["1.29.0-beta.1"],
        &artifact("kubernetes", "1.29.0-beta.1"),
        &[("org.opencontainers.image.description", "beta")],
    );
    // No annotations: its metadata comes from its own extension.yaml.
    reg.push_artifact(
        &format!("{NS}/web-cluster"),
        &["0.1.0"],
        &tar_gz(&[(
            "extension.yaml".to_string(),
            manifest("cluster", "web", "0.1.0", "web from its tarball", &[]).into_bytes(),
        )]),
        &[],
    );
    // Not extensions: wrong suffix, other namespace, no version tags, and a
    // tag annotated as another extension.
    reg.push_artifact(
        &format!("{NS}/website"),
        &["1.0.0"],
        &artifact("w", "1.0.0"),
        &[],
    );
    reg.push_artifact(
        "other/foo-provider",
        &["1.0.0"],
        &artifact("foo", "1.0.0"),
        &[],
    );
    reg.push_artifact(
        &format!("{NS}/nover-provider"),
        &["latest", "main"],
        &artifact("n", "1"),
        &[],
    );
    reg.push_artifact(
        &format!("{NS}/liar-provider"),
        &["1.0.0"],
        &artifact("liar", "1.0.0"),
        &[("dev.provisioning.extension.name", "someone-else")],
    );
    assert_eq!(reg.tags(&format!("{NS}/big-provider")).len(), 121);

    // A front that pages tag lists at 50, as registries that cap them do.
    let proxy = PagingProxy::start(&reg.url, 50);
    let sb = Sandbox::new();
    let d = start_daemon(&sb, &proxy.addr, None, "");

    let list = json_ok(&d, "/extensions");
    let got: Vec<(String, String, String)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            assert_eq!(e["source"], "oci", "{e}");
            (
                e["type"].as_str().unwrap().to_string(),
                e["name"].as_str().unwrap().to_string(),
                e["version"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let mut want = vec![
        (
            "provider".to_string(),
            "big".to_string(),
            "1.117.0".to_string(),
        ),
        ("taskserv".into(), "kubernetes".into(), "1.28.0".into()),
        ("cluster".into(), "web".into(), "0.1.0".into()),
    ];
    let mut got_sorted = got.clone();
    got_sorted.sort();
    want.sort();
    assert_eq!(got_sorted, want, "{list}");

    // The catalog was read in pages of 3 (n=100 refused, then Link).
    let catalog_pages = proxy.count(|r| r.starts_with("GET /v2/_catalog"));
    assert!(
        catalog_pages >= 4,
        "catalog requests: {:?}",
        proxy.requests()
    );

    // Every version of the big provider, across three pages of tags.
    let before = proxy.count(|r| r.contains("/big-provider/tags/list"));
    let vs = versions(&d, "/extensions/provider/big/versions");
    let pages = proxy.count(|r| r.contains("/big-provider/tags/list")) - before;
    assert_eq!(pages, 3, "tag pages: {:?}", proxy.requests());
    assert_eq!(vs.len(), 120, "{vs:?}");
    assert_eq!(vs[0], "2.0.0-rc.1");
    assert_eq!(vs[1], "1.117.0");
    assert_eq!(vs[2], "1.116.0");
    assert_eq!(vs.last().unwrap(), "0.9.0");
    assert!(!vs.contains(&"latest".to_string()));
    let full = json_ok(&d, "/extensions/provider/big/versions");
    assert_eq!(full[0]["prerelease"], true);
    assert_eq!(full[1]["prerelease"], false);

    // No annotations -> the tarball's extension.yaml.
    let web = json_ok(&d, "/extensions/cluster/web");
    assert_eq!(web["description"], "web from its tarball", "{web}");
    assert_eq!(web["author"], "tests", "{web}");

    // Annotations -> record fields.
    let rec = json_ok(&d, "/extensions/taskserv/kubernetes");
    assert_eq!(rec["version"], "1.28.0");
    assert_eq!(rec["description"], "Kubernetes orchestration");
    assert_eq!(rec["author"], "provisioning-team");
    assert_eq!(rec["repository"], "https://example.org/k8s");
    assert_eq!(rec["published_at"], "2024-05-01T08:00:00Z");
    assert_eq!(rec["tags"], serde_json::json!(["kubernetes", "containers"]));
    assert_eq!(rec["checksum"], k.layer_digest.as_str());
    assert_eq!(rec["size"], k_layer.len() as u64);
    let kv = json_ok(&d, "/extensions/taskserv/kubernetes/versions");
    assert_eq!(kv[0]["version"], "1.29.0-beta.1");
    assert_eq!(kv[0]["prerelease"], true);
    assert_eq!(kv[1]["version"], "1.28.0");

    // Strangers are absent.
    for p in [
        "/extensions/provider/nover",
        "/extensions/provider/foo",
        "/extensions/provider/liar",
    ] {
        let (s, v) = d.get_json(p);
        assert_eq!(s, 404, "{p}: {v}");
    }
}

#[test]
fn downloads_are_verified_streamed_once_and_cached() {
    let reg = Registry::start(Options::default());
    let repo = format!("{NS}/blob-provider");
    let layer = noise(3 << 20, 7);
    // Annotated, so listing it reads no blob: the blob counts are downloads.
    let pushed = reg.push_artifact(
        &repo,
        &["1.0.0"],
        &layer,
        &[("org.opencontainers.image.description", "noise")],
    );
    let sb = Sandbox::new();
    let d = start_daemon(&sb, &reg.addr, None, "");
    let path = "/extensions/provider/blob/1.0.0";
    // 20 concurrent cold downloads.
    let results: Vec<(u16, Vec<u8>, Option<String>)> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..20).map(|_| s.spawn(|| d.download(path))).collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (status, bytes, etag) in &results {
        assert_eq!(*status, 200);
        assert!(
            bytes == &layer,
            "bytes differ ({} vs {})",
            bytes.len(),
            layer.len()
        );
        assert_eq!(etag.as_deref(), Some(pushed.layer_digest.as_str()));
    }
    assert_eq!(
        reg.blob_gets(&repo, &pushed.layer_digest),
        1,
        "{}",
        reg.log()
    );
    // Warm: served from the cache, no new upstream fetch.
    let (s, bytes, _) = d.download(path);
    assert_eq!(s, 200);
    assert!(bytes == layer);
    assert_eq!(reg.blob_gets(&repo, &pushed.layer_digest), 1);
    let hex = pushed.layer_digest.strip_prefix("sha256:").unwrap();
    assert!(
        files_under(&sb.path("artifacts"))
            .iter()
            .any(|p| p.ends_with(hex)),
        "the blob is cached by its digest"
    );
}

#[test]
fn a_corrupted_blob_is_an_integrity_error_and_not_cached() {
    let reg = Registry::start(Options::default());
    let repo = format!("{NS}/bad-provider");
    let layer = noise(256 << 10, 3);
    // Annotated, so listing it reads no blob: the blob counts are downloads.
    let pushed = reg.push_artifact(
        &repo,
        &["1.0.0"],
        &layer,
        &[("org.opencontainers.image.description", "noise")],
    );
    // Same length, different bytes.
    let file = reg.blob_file(&pushed.layer_digest);
    let mut data = std::fs::read(&file).unwrap();
    for b in data.iter_mut().take(4096) {
        *b ^= 0x5a;
    }
    std::fs::write(&file, &data).unwrap();
    let sb = Sandbox::new();
    let d = start_daemon(&sb, &reg.addr, None, "");
    for _ in 0..2 {
        let (s, v) = d.get_json("/extensions/provider/bad/1.0.0");
        assert_eq!(s, 502, "{v}");
        assert_eq!(v["error"], "integrity_error", "{v}");
    }
    let hex = pushed.layer_digest.strip_prefix("sha256:").unwrap();
    let cached: Vec<_> = files_under(&sb.path("artifacts"))
        .into_iter()
        .filter(|p| p.to_string_lossy().contains("/blobs/") || p.ends_with(hex))
        .collect();
    assert!(cached.is_empty(), "nothing cached: {cached:?}");
    assert_eq!(reg.blob_gets(&repo, &pushed.layer_digest), 2);
}

#[test]
fn htpasswd_registry_needs_credentials_and_never_shows_them() {
    const PASSWORD: &str = "Pa55-w0rd-4e1f9c";
    const WRONG: &str = "wr0ng-pa55-77ab";
    let reg = Registry::start(Options {
        htpasswd: Some(("robot".into(), PASSWORD.into())),
        ..Default::default()
    });
    let repo = format!("{NS}/private-provider");
    let layer = artifact("private", "1.0.0");
    let pushed = reg.push_artifact(&repo, &["1.0.0"], &layer, &[]);
    // The registry really refuses anonymous requests.
    let r = reg.client().get(format!("{}/v2/", reg.url)).send().unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Basic"));

    let sb = Sandbox::new();
    let anon = start_daemon(&sb, &reg.addr, None, "");
    let h = json_ok(&anon, "/health");
    assert_eq!(h["status"], "degraded", "{h}");
    assert_eq!(h["backends"]["oci"]["healthy"], false, "{h}");
    let (s, v) = anon.get_json("/extensions");
    assert_eq!(s, 401, "{v}");
    assert_eq!(v["error"], "auth_error", "{v}");

    let sb2 = Sandbox::new();
    let wrong = start_daemon(&sb2, &reg.addr, Some(&format!("robot:{WRONG}")), "");
    let (s, v) = wrong.get_json("/extensions/provider/private/versions");
    assert_eq!(s, 401, "{v}");
    assert_eq!(v["error"], "auth_error");
    let h = json_ok(&wrong, "/health");
    assert_eq!(h["status"], "degraded");
    let seen = format!("{v}{h}{}{}", wrong.metrics(), wrong.stderr());
    assert!(!seen.contains(WRONG), "the wrong password leaked:\n{seen}");

    let sb3 = Sandbox::new();
    let d = start_daemon(&sb3, &reg.addr, Some(&format!("robot:{PASSWORD}")), "");
    let h = json_ok(&d, "/health");
    assert_eq!(h["status"], "healthy", "{h}");
    let list = json_ok(&d, "/extensions");
    assert_eq!(list[0]["name"], "private", "{list}");
    let (s, bytes, etag) = d.download("/extensions/provider/private/1.0.0");
    assert_eq!(s, 200);
    assert_eq!(bytes, layer);
    assert_eq!(etag.as_deref(), Some(pushed.layer_digest.as_str()));
    let mut seen = format!("{list}{h}{}", d.metrics());
    seen.push_str(&versions(&d, "/extensions/provider/private/versions").join(","));
    seen.push_str(&json_ok(&d, "/cache/stats").to_string());
    seen.push_str(&d.stderr());
    assert!(!seen.contains(PASSWORD), "the password leaked:\n{seen}");
    assert!(!anon.stderr().contains(PASSWORD));
}

#[test]
fn registry_down_means_degraded_health_and_a_clear_502() {
    let mut reg = Registry::start(Options::default());
    reg.push_artifact(
        &format!("{NS}/up-provider"),
        &["1.0.0"],
        &artifact("up", "1.0.0"),
        &[],
    );
    let sb = Sandbox::new();
    let d = start_daemon(&sb, &reg.addr, None, "");
    assert_eq!(json_ok(&d, "/health")["status"], "healthy");
    reg.stop();
    let h = json_ok(&d, "/health");
    assert_eq!(h["status"], "degraded", "{h}");
    assert_eq!(h["backends"]["oci"]["healthy"], false);
    let err = h["backends"]["oci"]["error"].as_str().unwrap_or_default();
    assert!(err.contains(&reg.addr), "{h}");
    let (s, v) = d.get_json("/extensions/provider/up/versions");
    assert_eq!(s, 502, "{v}");
    assert_eq!(v["error"], "backend_error", "{v}");
    let details = v["details"].as_str().unwrap_or_default();
    assert!(
        details.contains("cannot connect") && details.contains(&reg.addr),
        "{v}"
    );
}

fn backend_for(reg: &Registry) -> OciBackend {
    OciBackend::new(&OciConfig {
        namespace: NS.into(),
        timeout_seconds: 10,
        ..OciConfig::new(&reg.addr)
    })
    .unwrap()
}

#[test]
fn published_artifacts_interoperate_and_can_be_deleted() {
    let reg = Registry::start(Options::default());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let b = backend_for(&reg);
    let src = tempfile::tempdir().unwrap();
    let v710 = write_folder_ext(
        src.path(),
        "taskserv",
        "redis",
        "7.1.0",
        "Redis",
        &["db", "cache"],
    );
    let v720 = write_folder_ext(
        src.path(),
        "taskserv",
        "redis",
        "7.2.0",
        "Redis",
        &["db", "cache"],
    );
    let repo = format!("{NS}/redis-taskserv");

    // Validation: the version must match extension.yaml.
    let e = rt
        .block_on(publish::publish(&b, &v720, "7.3.0", false, false))
        .unwrap_err();
    assert!(matches!(e, PublishError::Invalid(_)), "{e:?}");
    // Dry run: validated and packed, nothing pushed.
    let dry = rt
        .block_on(publish::publish(&b, &v720, "7.2.0", false, true))
        .unwrap();
    assert!(!dry.pushed);
    assert!(reg.tags(&repo).is_empty());
    assert!(
        !reg.log().contains("PUT /v2/"),
        "a dry run pushed something"
    );

    let r = rt
        .block_on(publish::publish(&b, &v720, "7.2.0", false, false))
        .unwrap();
    assert!(r.pushed && !r.replaced);
    assert_eq!(r.layer_digest, dry.layer_digest, "packing is reproducible");
    assert_eq!(r.reference, format!("{}/{repo}:7.2.0", reg.addr));
    rt.block_on(publish::publish(&b, &v710, "v7.1.0", false, false))
        .unwrap();
    let mut tags = reg.tags(&repo);
    tags.sort();
    assert_eq!(tags, ["7.1.0", "7.2.0"]);

    // Not again, unless forced.
    let e = rt
        .block_on(publish::publish(&b, &v720, "7.2.0", false, false))
        .unwrap_err();
    assert!(matches!(e, PublishError::Exists { .. }), "{e:?}");
    let forced = rt
        .block_on(publish::publish(&b, &v720, "7.2.0", true, false))
        .unwrap();
    assert!(forced.pushed && forced.replaced);

    // skopeo reads what we wrote.
    let docker_ref = format!("docker://{}/{repo}:7.2.0", reg.addr);
    let raw = skopeo(&["inspect", "--raw", "--tls-verify=false", &docker_ref]);
    let m: Value = serde_json::from_slice(&raw.stdout).unwrap();
    assert_eq!(m["artifactType"], extregd::backend::oci::ARTIFACT_TYPE);
    assert_eq!(
        m["config"]["mediaType"],
        "application/vnd.oci.empty.v1+json"
    );
    assert_eq!(m["config"]["size"], 2);
    assert_eq!(m["layers"][0]["digest"], r.layer_digest.as_str());
    assert_eq!(
        m["layers"][0]["annotations"]["org.opencontainers.image.title"],
        "redis-7.2.0.tar.gz"
    );
    assert_eq!(
        m["annotations"]["org.opencontainers.image.version"],
        "7.2.0"
    );
    assert_eq!(
        m["annotations"]["dev.provisioning.extension.type"],
        "taskserv"
    );
    assert_eq!(
        m["annotations"]["dev.provisioning.extension.tags"],
        "db,cache"
    );
    let lt = skopeo(&[
        "list-tags",
        "--tls-verify=false",
        &format!("docker://{}/{repo}", reg.addr),
    ]);
    assert!(String::from_utf8_lossy(&lt.stdout).contains("7.1.0"));
    let layout = tempfile::tempdir().unwrap();
    let oci_ref = format!("oci:{}:7.2.0", layout.path().display());
    skopeo(&["copy", "--src-tls-verify=false", &docker_ref, &oci_ref]);
    let hex = r.layer_digest.strip_prefix("sha256:").unwrap();
    let copied = std::fs::read(layout.path().join("blobs/sha256").join(hex)).unwrap();
    assert_eq!(sha256_tag(&copied), r.layer_digest);

    // The daemon serves it, with the same bytes skopeo copied.
    let sb = Sandbox::new();
    let d = start_daemon(&sb, &reg.addr, None, "ttl_seconds = 1\n");
    assert_eq!(
        versions(&d, "/extensions/taskserv/redis/versions"),
        ["7.2.0", "7.1.0"]
    );
    let rec = json_ok(&d, "/extensions/taskserv/redis");
    assert_eq!(rec["description"], "Redis");
    assert_eq!(rec["tags"], serde_json::json!(["db", "cache"]));
    let (s, bytes, etag) = d.download("/extensions/taskserv/redis/7.2.0");
    assert_eq!(s, 200);
    assert_eq!(bytes, copied);
    assert_eq!(etag.as_deref(), Some(r.layer_digest.as_str()));

    // Delete: gone from the registry and, after the TTL, from the daemon.
    rt.block_on(publish::delete(
        &b,
        ExtensionType::Taskserv,
        "redis",
        "7.2.0",
    ))
    .unwrap();
    assert_eq!(reg.tags(&repo), ["7.1.0"]);
    std::thread::sleep(Duration::from_millis(1300));
    // Past the TTL a read answers from cache and refreshes in the
    // background (stale-while-revalidate): the deletion shows once that
    // refresh is done.
    assert!(
        wait_until(Duration::from_secs(10), || versions(
            &d,
            "/extensions/taskserv/redis/versions"
        ) == ["7.1.0"]),
        "the deleted version is still listed"
    );
    let e = rt
        .block_on(publish::delete(
            &b,
            ExtensionType::Taskserv,
            "redis",
            "7.2.0",
        ))
        .unwrap_err();
    assert!(matches!(e, PublishError::NotFound(_)), "{e:?}");
}

#[test]
fn an_artifact_pushed_by_skopeo_is_listed() {
    let reg = Registry::start(Options::default());
    let layout = tempfile::tempdir().unwrap();
    let layer = artifact("skopeo", "1.2.0");
    let layer_digest = write_oci_layout(
        layout.path(),
        "1.2.0",
        &layer,
        &[("org.opencontainers.image.description", "pushed by skopeo")],
    );
    let dest = format!("docker://{}/{NS}/skopeo-cluster:1.2.0", reg.addr);
    skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        &format!("oci:{}:1.2.0", layout.path().display()),
        &dest,
    ]);
    let sb = Sandbox::new();
    let d = start_daemon(&sb, &reg.addr, None, "");
    let list = json_ok(&d, "/extensions");
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["name"], "skopeo");
    assert_eq!(list[0]["type"], "cluster");
    assert_eq!(list[0]["version"], "1.2.0");
    assert_eq!(list[0]["description"], "pushed by skopeo");
    assert_eq!(list[0]["checksum"], layer_digest.as_str());
    let (s, bytes, _) = d.download("/extensions/cluster/skopeo/1.2.0");
    assert_eq!(s, 200);
    assert_eq!(bytes, layer);
}

#[test]
fn bearer_token_auth_flow() {
    use extreg_tests::registry::TokenIssuer;
    const PASSWORD: &str = "t0ken-Pa55-93c1d";
    let issuer = TokenIssuer::start("robot", PASSWORD);
    let reg = Registry::start(Options {
        token_auth: Some(issuer.auth_yaml()),
        ..Default::default()
    });
    let r = reg.client().get(format!("{}/v2/", reg.url)).send().unwrap();
    assert_eq!(r.status(), 401);
    let challenge = r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        challenge.starts_with(&format!("Bearer realm=\"{}\"", issuer.realm)),
        "{challenge}"
    );

    // Publish through the token flow (scope pull,push).
    let sb = Sandbox::new();
    let auth = sb.path("publisher-auth.txt");
    std::fs::write(&auth, format!("robot:{PASSWORD}\n")).unwrap();
    let b = OciBackend::new(&OciConfig {
        namespace: NS.into(),
        auth_token_path: Some(auth),
        timeout_seconds: 10,
        ..OciConfig::new(&reg.addr)
    })
    .unwrap();
    let src = tempfile::tempdir().unwrap();
    let dir = write_folder_ext(
        src.path(),
        "provider",
        "tokened",
        "1.0.0",
        "Behind tokens",
        &[],
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let rep = rt
        .block_on(publish::publish(&b, &dir, "1.0.0", false, false))
        .unwrap();
    assert!(rep.pushed);
    assert!(
        issuer
            .requests()
            .iter()
            .any(|q| q.contains("push") && q.ends_with("authorized=true")),
        "{:?}",
        issuer.requests()
    );

    // Without credentials: the issuer refuses, the daemon says auth_error.
    let anon_sb = Sandbox::new();
    let anon = start_daemon(&anon_sb, &reg.addr, None, "");
    let (s, v) = anon.get_json("/extensions/provider/tokened/versions");
    assert_eq!(s, 401, "{v}");
    assert_eq!(v["error"], "auth_error");
    assert_eq!(json_ok(&anon, "/health")["status"], "degraded");
    // Stopped: a daemon that is not ready keeps probing its backend (the
    // readiness watch), which would add anonymous token requests below.
    drop(anon);

    // With credentials: tokens fetched per scope, then reused.
    let sb2 = Sandbox::new();
    let d = start_daemon(
        &sb2,
        &reg.addr,
        Some(&format!("robot:{PASSWORD}")),
        "ttl_seconds = 1\n",
    );
    assert_eq!(json_ok(&d, "/health")["status"], "healthy");
    let list = json_ok(&d, "/extensions");
    assert_eq!(list[0]["name"], "tokened", "{list}");
    assert_eq!(
        versions(&d, "/extensions/provider/tokened/versions"),
        ["1.0.0"]
    );
    let (s, bytes, etag) = d.download("/extensions/provider/tokened/1.0.0");
    assert_eq!(s, 200);
    assert_eq!(sha256_tag(&bytes), rep.layer_digest);
    assert_eq!(etag.as_deref(), Some(rep.layer_digest.as_str()));
    let tokens = issuer.requests().len();
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(
        versions(&d, "/extensions/provider/tokened/versions"),
        ["1.0.0"]
    );
    assert_eq!(
        issuer.requests().len(),
        tokens,
        "the cached token was reused: {:?}",
        issuer.requests()
    );
    let seen = format!("{list}{}{}", d.metrics(), d.stderr());
    assert!(!seen.contains(PASSWORD), "the password leaked");
}

#[test]
fn redirects_are_followed_without_forwarding_credentials() {
    let reg = Registry::start(Options::default());
    let repo = format!("{NS}/moved-provider");
    let layer = noise(64 << 10, 11);
    // Annotated, so listing it reads no blob: the blob counts are downloads.
    let pushed = reg.push_artifact(
        &repo,
        &["1.0.0"],
        &layer,
        &[("org.opencontainers.image.description", "noise")],
    );
    // The blob store: another host name (localhost, not 127.0.0.1) and port.
    let store = PagingProxy::start(&reg.url, 1000);
    let store_port = store.addr.rsplit(':').next().unwrap();
    let front =
        PagingProxy::start_redirecting(&reg.url, 1000, &format!("http://localhost:{store_port}"));
    let sb = Sandbox::new();
    // A bare token is sent up front on every request to the registry.
    let d = start_daemon(&sb, &front.addr, Some("bare-registry-token-1f3a"), "");
    let (s, bytes, etag) = d.download("/extensions/provider/moved/1.0.0");
    assert_eq!(s, 200);
    assert!(bytes == layer);
    assert_eq!(etag.as_deref(), Some(pushed.layer_digest.as_str()));
    let blob = format!("GET /v2/{repo}/blobs/{}", pushed.layer_digest);
    assert_eq!(
        front.count(|r| r.starts_with(&blob) && r.ends_with("auth=yes")),
        1,
        "{:?}",
        front.requests()
    );
    assert_eq!(
        store.count(|r| r.starts_with(&blob) && r.ends_with("auth=no")),
        1,
        "{:?}",
        store.requests()
    );
    assert_eq!(store.count(|r| r.ends_with("auth=yes")), 0);
}

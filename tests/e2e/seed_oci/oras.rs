//! ORAS interop in both directions (issue 12): the ORAS Python client
//! pulls what `ext publish` pushed, and extensions pushed by ORAS (with
//! annotations, or with only `extension.yaml` to speak for them) are
//! listed, loaded, and flagged when the tarball disagrees with the tag.

use super::*;
use extreg_tests::registry::{Options, Registry};
use extreg_tests::*;
use serde_json::Value;

/// The Python of the shared venv tests/run fills (`VENV_PYTHON` overrides).
fn venv_python() -> std::path::PathBuf {
    let p = std::env::var_os("VENV_PYTHON")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| repo_root().join("tests/.tools/venv/bin/python"));
    assert!(
        p.is_file(),
        "{} is missing: run tests/run (it pip-installs oras into tests/.tools/venv)",
        p.display()
    );
    p
}

#[test]
fn oras_python_client_pulls_a_published_extension_as_its_tar_gz() {
    let reg = Registry::start(Options::default());
    let sb = Sandbox::new();
    let src = write_folder_ext(&sb.path("src"), "cluster", "web", "0.3.0", "Web", &[]);
    let at = [
        "--registry",
        reg.addr.as_str(),
        "--namespace",
        "team",
        "--json",
    ];
    let r = extregd_json(
        &sb,
        &[
            &["publish", src.to_str().unwrap(), "--version", "0.3.0"][..],
            &at,
        ]
        .concat(),
    );
    let out_dir = sb.path("oras-out");
    let script = format!(
        "import json, oras.client\n\
         c = oras.client.OrasClient(insecure=True)\n\
         print(json.dumps(c.pull(target='{}/team/web-cluster:0.3.0', outdir='{}')))\n",
        reg.addr,
        out_dir.display()
    );
    let out = std::process::Command::new(venv_python())
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "oras pull failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let files: Vec<String> = serde_json::from_slice(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .unwrap_or_default()
            .as_bytes(),
    )
    .unwrap();
    assert_eq!(files.len(), 1, "{files:?}");
    let path = std::path::Path::new(&files[0]);
    assert_eq!(path.file_name().unwrap(), "web-0.3.0.tar.gz");
    assert!(
        path.is_file(),
        "oras-py returned {path:?}, which is not a file"
    );
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(sha256_tag(&bytes), r["layer_digest"].as_str().unwrap());
}

/// `extension.yaml` with every listing field set.
fn etcd_yaml(name: &str, version: &str) -> Vec<u8> {
    format!(
        "extension:\n  name: {name}\n  version: {version}\n  type: taskserv\n  \
         description: etcd by oras\n  author: Ops <ops@example.org>\n  tags: [kv, storage]\n  \
         requires: [etcdctl-not-installed]\n"
    )
    .into_bytes()
}

/// Pushes each `(repository, file name, bytes, tag, manifest annotations)`
/// with the ORAS Python client the way its docs show: a file, pushed from
/// its folder, with the annotations given as a Python dict (`None`: none).
fn oras_push(reg: &Registry, work: &std::path::Path, files: &[(&str, &str, &[u8], &str, &str)]) {
    std::fs::create_dir_all(work).unwrap();
    let mut script =
        String::from("import oras.client\nc = oras.client.OrasClient(insecure=True)\n");
    for (repo, file, bytes, tag, annotations) in files {
        std::fs::write(work.join(file), bytes).unwrap();
        script.push_str(&format!(
            "c.push(files=['{file}'], target='{}/{repo}:{tag}', manifest_annotations={annotations})\n",
            reg.addr
        ));
    }
    let out = std::process::Command::new(venv_python())
        .args(["-c", &script])
        .current_dir(work)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "oras push failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn an_extension_pushed_by_oras_without_annotations_is_listed_and_loaded() {
    let reg = Registry::start(Options::default());
    let sb = Sandbox::new();
    let tarball = tar_gz(&[
        ("extension.yaml".to_string(), etcd_yaml("etcd", "3.5.0")),
        ("kcl/etcd.k".to_string(), b"schema E:\n  a: int\n".to_vec()),
    ]);
    let repo = format!("{NS}/etcd-taskserv");
    oras_push(
        &reg,
        &sb.path("oras-push"),
        &[(&repo, "etcd-3.5.0.tar.gz", &tarball, "3.5.0", "None")],
    );
    let m: Value = serde_json::from_slice(
        &reg.client()
            .get(format!("{}/v2/{NS}/etcd-taskserv/manifests/3.5.0", reg.url))
            .header("Accept", "application/vnd.oci.image.manifest.v1+json")
            .send()
            .unwrap()
            .bytes()
            .unwrap(),
    )
    .unwrap();
    assert!(
        m["annotations"]
            .get("org.opencontainers.image.description")
            .is_none(),
        "oras-py added a description: {m}"
    );
    let cfg = oci_config(&sb, &reg.addr, "");
    let d = Daemon::start(&sb, &["--config", cfg.to_str().unwrap()], &[]);
    let (s, v) = d.get_json("/extensions/taskserv/etcd/versions");
    assert_eq!(s, 200, "{v}");
    assert_eq!(v[0]["version"], "3.5.0");
    assert_eq!(v[0]["checksum"], sha256_tag(&tarball));
    assert!(v[0]["mismatch"].is_null(), "{v}");
    // Listing metadata read from the extension.yaml inside the tarball.
    for rec in [
        d.get_json("/extensions/taskserv/etcd").1,
        row(&d.get_json("/extensions").1, "etcd").clone(),
    ] {
        assert_eq!(rec["description"], "etcd by oras", "{rec}");
        assert_eq!(rec["author"], "Ops <ops@example.org>", "{rec}");
        assert_eq!(rec["tags"], serde_json::json!(["kv", "storage"]), "{rec}");
        assert_eq!(
            rec["requires"],
            serde_json::json!(["etcdctl-not-installed"]),
            "{rec}"
        );
        assert_eq!(rec["dependencies"], serde_json::json!([]), "{rec}");
        assert!(rec["mismatch"].is_null(), "{rec}");
    }
    let (s, found) = d.get_json("/extensions/search?q=storage");
    assert_eq!(s, 200, "{found}");
    assert_eq!(
        found[0]["name"], "etcd",
        "found by a tag from extension.yaml"
    );
    let r = d.get("/extensions/taskserv/etcd/3.5.0");
    assert_eq!(r.status(), 200);
    assert!(r.bytes().unwrap() == tarball);
    let nu = Nu::new(&sb);
    let info = nu.json("ext info etcd");
    assert_eq!(
        (info["author"].as_str(), info["description"].as_str()),
        (Some("Ops <ops@example.org>"), Some("etcd by oras"))
    );
    assert_eq!(info["tags"], serde_json::json!(["kv", "storage"]));
    let l = nu.json("ext load etcd");
    assert_eq!(
        (l["source"].as_str(), l["version"].as_str()),
        (Some("oci"), Some("3.5.0"))
    );
    assert_eq!(l["description"], "etcd by oras");
    assert_eq!(
        l["missing_tools"][0]["tool"], "etcdctl-not-installed",
        "{l}"
    );
    assert!(std::path::Path::new(l["path"].as_str().unwrap())
        .join("kcl/etcd.k")
        .is_file());
}

#[test]
fn a_tag_whose_oras_tarball_declares_another_version_is_flagged_and_refused() {
    let reg = Registry::start(Options::default());
    let sb = Sandbox::new();
    let repo = format!("{NS}/etcd-taskserv");
    let good = tar_gz(&[("extension.yaml".to_string(), etcd_yaml("etcd", "3.5.0"))]);
    // Tagged 3.6.0 and 3.7.0 (above the good one), declaring otherwise.
    let old = tar_gz(&[("extension.yaml".to_string(), etcd_yaml("etcd", "3.4.0"))]);
    let other = tar_gz(&[("extension.yaml".to_string(), etcd_yaml("consul", "3.7.0"))]);
    // Beside it, pushed by ORAS with annotations: the manifest speaks and
    // listing it reads no blob (its tarball would say "from a tool").
    let redis_repo = format!("{NS}/redis-taskserv");
    let redis = artifact("taskserv", "redis", "1.0.0");
    oras_push(
        &reg,
        &sb.path("oras-push"),
        &[
            (&repo, "etcd-3.5.0.tar.gz", &good, "3.5.0", "None"),
            (&repo, "etcd-3.6.0.tar.gz", &old, "3.6.0", "None"),
            (&repo, "etcd-3.7.0.tar.gz", &other, "3.7.0", "None"),
            (
                &redis_repo,
                "redis-1.0.0.tar.gz",
                &redis,
                "1.0.0",
                "{'org.opencontainers.image.description': 'Redis by annotation', \
                  'dev.provisioning.extension.tags': 'cache, kv'}",
            ),
        ],
    );
    let cfg = oci_config(&sb, &reg.addr, "");
    let d = Daemon::start(&sb, &["--config", cfg.to_str().unwrap()], &[]);

    let (s, v) = d.get_json("/extensions/taskserv/etcd/versions");
    assert_eq!(s, 200, "{v}");
    let by = |ver: &str| {
        v.as_array()
            .unwrap()
            .iter()
            .find(|x| x["version"] == ver)
            .unwrap_or_else(|| panic!("no {ver} in {v}"))
            .clone()
    };
    assert_eq!(by("3.6.0")["mismatch"], "tarball declares 3.4.0", "{v}");
    assert_eq!(
        by("3.7.0")["mismatch"],
        "tarball declares taskserv/consul 3.7.0",
        "{v}"
    );
    assert!(by("3.5.0")["mismatch"].is_null(), "{v}");
    // Not the newest: the record, the listing and resolution skip them.
    let (_, rec) = d.get_json("/extensions/taskserv/etcd");
    assert_eq!(rec["version"], "3.5.0", "{rec}");
    assert_eq!(
        row(&d.get_json("/extensions").1, "etcd")["version"],
        "3.5.0"
    );
    let (s, r) = d.get_json("/extensions/taskserv/etcd/resolve?constraint=%5E3");
    assert_eq!((s, r["version"].as_str()), (200, Some("3.5.0")), "{r}");
    // Asked for explicitly: refused, not served as if it matched.
    for path in [
        "/extensions/taskserv/etcd/3.6.0",
        "/extensions/taskserv/etcd/resolve?constraint=3.6.0",
    ] {
        let (s, e) = d.get_json(path);
        assert_eq!(s, 409, "{path}: {e}");
        assert_eq!(e["error"], "artifact_mismatch", "{e}");
        assert!(
            e["message"]
                .as_str()
                .unwrap()
                .contains("tarball declares 3.4.0"),
            "{e}"
        );
    }
    let (_, r) = d.get_json("/extensions/taskserv/redis");
    assert_eq!(r["description"], "Redis by annotation", "{r}");
    assert_eq!(r["tags"], serde_json::json!(["cache", "kv"]), "{r}");
    assert!(r["author"].is_null(), "not read from the tarball: {r}");
    assert_eq!(
        reg.blob_gets(&redis_repo, &sha256_tag(&redis)),
        0,
        "the annotated artifact's blob was read:\n{}",
        reg.log()
    );

    let nu = Nu::new(&sb);
    let vs = nu.json("ext versions etcd | select version mismatch");
    assert_eq!(
        vs,
        serde_json::json!([
            {"version": "3.7.0", "mismatch": "tarball declares taskserv/consul 3.7.0"},
            {"version": "3.6.0", "mismatch": "tarball declares 3.4.0"},
            {"version": "3.5.0", "mismatch": null},
        ])
    );
    let info = nu.json("ext info etcd --version 3.6.0");
    assert_eq!(info["mismatch"], "tarball declares 3.4.0", "{info}");
    assert_eq!(nu.json("ext info etcd")["version"], "3.5.0");
    for cmd in [
        "ext pull etcd --version 3.6.0",
        "ext load etcd --version 3.6.0",
    ] {
        crate::plugin::assert_labeled(&nu.run(cmd), "tarball declares 3.4.0", "3.6.0");
    }
    // Nothing of the refused version reached the cache or the extensions.
    let hex = sha256_tag(&old);
    let hex = hex.strip_prefix("sha256:").unwrap();
    let cached = walk(&sb.path("artifacts"));
    assert!(!cached.iter().any(|p| p.contains(hex)), "{cached:?}");
    let l = nu.json("ext load etcd");
    assert_eq!(l["version"], "3.5.0", "{l}");
}

//! Seed parity for OCI and the CLI (seeds 003 and 004): `ext discover
//! --refresh`, publishing anywhere (`extregd publish`, credentials from
//! auth files, dry-run digests), against the real `docker-registry` and
//! `skopeo`.

use extreg_tests::registry::{skopeo, write_oci_layout, Options, Registry};
use extreg_tests::*;
use serde_json::Value;

const NS: &str = "provisioning-extensions";

fn oci_config(sb: &Sandbox, registry: &str, extra: &str) -> std::path::PathBuf {
    sb.write_config(&format!(
        "[oci]\nregistry = \"{registry}\"\nnamespace = \"{NS}\"\ntimeout_seconds = 10\n\
         [cache]\nartifact_dir = \"{}\"\n{extra}",
        sb.path("artifacts").display()
    ))
}

fn artifact(ty: &str, name: &str, version: &str) -> Vec<u8> {
    tar_gz(&[(
        "extension.yaml".to_string(),
        manifest(ty, name, version, "from a tool", &[]).into_bytes(),
    )])
}

fn row<'a>(rows: &'a Value, name: &str) -> &'a Value {
    rows.as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("no row {name} in {rows}"))
}

#[test]
fn discover_refresh_shows_a_tag_pushed_by_skopeo_at_once() {
    let reg = Registry::start(Options::default());
    let repo = format!("{NS}/redis-taskserv");
    reg.push_artifact(
        &repo,
        &["1.0.0"],
        &artifact("taskserv", "redis", "1.0.0"),
        &[("org.opencontainers.image.description", "Redis")],
    );
    let sb = Sandbox::new();
    write_folder_ext(&sb.catalog(), "taskserv", "redis", "0.9.0", "Redis", &[]);
    write_folder_ext(&sb.catalog(), "provider", "aws", "2.0.0", "AWS", &[]);
    let cfg = oci_config(
        &sb,
        &reg.addr,
        &format!("[local]\npath = \"{}\"\n", sb.catalog().display()),
    );
    let _d = Daemon::start(&sb, &["--config", cfg.to_str().unwrap()], &[]);
    let nu = Nu::new(&sb);

    let all = nu.json("ext discover");
    let redis = row(&all, "redis");
    assert_eq!(redis["latest"], "1.0.0");
    assert_eq!(redis["source"], "oci");
    assert_eq!(redis["sources"], serde_json::json!(["local", "oci"]));
    assert_eq!(row(&all, "aws")["sources"], serde_json::json!(["local"]));
    let only = nu.json("ext discover --type provider");
    assert_eq!(only.as_array().unwrap().len(), 1, "{only}");
    assert_eq!(nu.json("ext info redis")["version"], "1.0.0");

    // Another tool pushes 1.1.0 behind the daemon's back.
    let layout = sb.path("layout");
    write_oci_layout(
        &layout,
        "1.1.0",
        &artifact("taskserv", "redis", "1.1.0"),
        &[],
    );
    skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        &format!("oci:{}:1.1.0", layout.display()),
        &format!("docker://{}/{repo}:1.1.0", reg.addr),
    ]);
    // Cached listings (TTL 300 s) still say 1.0.0 ...
    assert_eq!(row(&nu.json("ext discover"), "redis")["latest"], "1.0.0");
    assert_eq!(nu.json("ext info redis")["version"], "1.0.0");
    // ... a refresh of another type keeps the taskservs' version lists
    // (the per-backend listings hold every type and are always dropped) ...
    nu.json("ext discover --refresh --type cluster");
    assert_eq!(nu.json("ext info redis")["version"], "1.0.0");
    // ... and a refresh of taskservs shows it at once, everywhere.
    let fresh = nu.json("ext discover --refresh --type taskserv");
    assert_eq!(row(&fresh, "redis")["latest"], "1.1.0");
    assert_eq!(nu.json("ext info redis")["version"], "1.1.0");

    nu.fails("ext discover --type widget", &["unknown extension type"]);
}

fn b64(s: &str) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let d = s.as_bytes();
    let mut out = String::new();
    for c in d.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Writes containers' `auth.json` in the sandbox's `$XDG_RUNTIME_DIR`.
fn write_auth_json(sb: &Sandbox, host: &str, user: &str, password: &str) {
    let dir = sb.path("runtime/containers");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("auth.json"),
        serde_json::json!({"auths": {host: {"auth": b64(&format!("{user}:{password}"))}}})
            .to_string(),
    )
    .unwrap();
}

/// Runs `extregd ARGS` (no daemon) in the sandbox.
fn extregd(sb: &Sandbox, args: &[&str]) -> (bool, String, String) {
    let out = sb.command(&bin("extregd")).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn extregd_json(sb: &Sandbox, args: &[&str]) -> Value {
    let (ok, out, err) = extregd(sb, args);
    assert!(ok, "extregd {args:?} failed:\n{err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

#[test]
fn cli_publishes_to_another_registry_with_auth_json_and_dry_run_digests_match() {
    let reg = Registry::start(Options {
        htpasswd: Some(("ci".into(), "s3cret-pw".into())),
        ..Default::default()
    });
    let sb = Sandbox::new();
    let src = write_folder_ext(
        &sb.path("src"),
        "taskserv",
        "redis",
        "7.0.0",
        "Redis",
        &["db"],
    );
    let dir = src.to_str().unwrap();
    let at = [
        "--registry",
        reg.addr.as_str(),
        "--namespace",
        "team",
        "--json",
    ];

    // Anonymous: the registry's refusal, named, and nothing pushed.
    let (ok, _, err) = extregd(
        &sb,
        &[&["publish", dir, "--version", "7.0.0"][..], &at].concat(),
    );
    assert!(!ok && err.contains("requires credentials"), "{err}");

    // A wrong password from auth.json: refused, the password never shown.
    write_auth_json(&sb, &reg.addr, "ci", "wrong-pw");
    let (ok, _, err) = extregd(
        &sb,
        &[&["publish", dir, "--version", "7.0.0"][..], &at].concat(),
    );
    assert!(!ok && err.contains("rejected the credentials"), "{err}");
    assert!(!err.contains("wrong-pw"), "{err}");

    write_auth_json(&sb, &reg.addr, "ci", "s3cret-pw");
    let dry = extregd_json(
        &sb,
        &[
            &["publish", dir, "--version", "7.0.0", "--dry-run"][..],
            &at,
        ]
        .concat(),
    );
    assert_eq!(dry["pushed"], false);
    assert!(
        reg.tags("team/redis-taskserv").is_empty(),
        "a dry run pushes nothing"
    );
    let real = extregd_json(
        &sb,
        &[&["publish", dir, "--version", "7.0.0"][..], &at].concat(),
    );
    assert_eq!(real["pushed"], true);
    assert_eq!(
        real["reference"],
        format!("{}/team/redis-taskserv:7.0.0", reg.addr)
    );
    let cred = real["credentials"].as_str().unwrap();
    assert!(
        cred.contains("containers auth.json") && cred.contains(&reg.addr),
        "{cred}"
    );
    assert!(!real.to_string().contains("s3cret"), "{real}");
    // The dry run announced exactly what was pushed.
    for k in ["manifest_digest", "layer_digest", "size", "created"] {
        assert_eq!(dry[k], real[k], "{k}");
    }
    assert_eq!(reg.tags("team/redis-taskserv"), vec!["7.0.0"]);
    let m = reg
        .client()
        .get(format!(
            "{}/v2/team/redis-taskserv/manifests/7.0.0",
            reg.url
        ))
        .basic_auth("ci", Some("s3cret-pw"))
        .header("accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    assert_eq!(sha256_tag(&m), real["manifest_digest"].as_str().unwrap());
    let mv: Value = serde_json::from_slice(&m).unwrap();
    assert_eq!(
        mv["layers"][0]["annotations"]["org.opencontainers.image.title"],
        "redis-7.0.0.tar.gz"
    );
    assert_eq!(
        mv["annotations"]["org.opencontainers.image.created"],
        real["created"]
    );
    let blob = reg
        .client()
        .get(format!(
            "{}/v2/team/redis-taskserv/blobs/{}",
            reg.url,
            real["layer_digest"].as_str().unwrap()
        ))
        .basic_auth("ci", Some("s3cret-pw"))
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    assert_eq!(sha256_tag(&blob), real["layer_digest"].as_str().unwrap());

    // A second push of the unchanged folder is refused, --force replaces
    // it with the same manifest.
    let (ok, _, err) = extregd(
        &sb,
        &[&["publish", dir, "--version", "7.0.0"][..], &at].concat(),
    );
    assert!(!ok && err.contains("already exists"), "{err}");
    let again = extregd_json(
        &sb,
        &[&["publish", dir, "--version", "7.0.0", "--force"][..], &at].concat(),
    );
    assert_eq!(again["replaced"], true);
    assert_eq!(again["manifest_digest"], real["manifest_digest"]);

    let list = extregd_json(&sb, &[&["list"][..], &at].concat());
    assert_eq!(list[0]["name"], "redis");
    assert_eq!(list[0]["version"], "7.0.0");
    assert_eq!(list[0]["checksum"], real["layer_digest"]);
    let del = extregd_json(
        &sb,
        &[&["delete", "redis", "7.0.0", "--type", "taskserv"][..], &at].concat(),
    );
    assert_eq!(del["deleted"], real["reference"]);
    assert!(reg.tags("team/redis-taskserv").is_empty());

    // Bad input: named, exit code 1 or 2, nothing pushed.
    let (ok, _, err) = extregd(
        &sb,
        &[&["publish", dir, "--version", "7.0.1"][..], &at].concat(),
    );
    assert!(!ok && err.contains("extension.yaml says 7.0.0"), "{err}");
    let (ok, _, err) = extregd(
        &sb,
        &[
            "publish",
            dir,
            "--version",
            "7.0.0",
            "--registry",
            &reg.addr,
            "--namespace",
            "Bad NS",
        ],
    );
    assert!(!ok && err.contains("namespace 'Bad NS'"), "{err}");
    let (ok, _, err) = extregd(&sb, &["publish", dir, "--version", "7.0.0"]);
    assert!(!ok && err.contains("no registry"), "{err}");
}

#[test]
fn ext_publish_to_another_registry_and_namespace_through_nu() {
    let home = Registry::start(Options::default());
    let other = Registry::start(Options {
        htpasswd: Some(("bob".into(), "pw-of-bob".into())),
        ..Default::default()
    });
    let sb = Sandbox::new();
    write_auth_json(&sb, &other.addr, "bob", "pw-of-bob");
    let cfg = oci_config(&sb, &home.addr, "");
    let _d = Daemon::start(&sb, &["--config", cfg.to_str().unwrap()], &[]);
    let nu = Nu::new(&sb);
    let src = write_folder_ext(&sb.path("src"), "provider", "aws", "2.0.0", "AWS", &[]);
    let p = src.display();
    let dry = nu.json(&format!(
        "ext publish '{p}' --version 2.0.0 --registry {} --namespace ops --dry-run",
        other.addr
    ));
    let v = nu.json(&format!(
        "ext publish '{p}' --version 2.0.0 --registry {} --namespace ops",
        other.addr
    ));
    assert_eq!(v["pushed"], true);
    assert_eq!(
        v["reference"],
        format!("{}/ops/aws-provider:2.0.0", other.addr)
    );
    assert_eq!(dry["manifest_digest"], v["manifest_digest"]);
    assert_eq!(other.tags("ops/aws-provider"), vec!["2.0.0"]);
    assert!(home.tags(&format!("{NS}/aws-provider")).is_empty());
    // Another namespace of the configured registry.
    let v = nu.json(&format!(
        "ext publish '{p}' --version 2.0.0 --namespace staging"
    ));
    assert_eq!(
        v["reference"],
        format!("{}/staging/aws-provider:2.0.0", home.addr)
    );
    assert_eq!(home.tags("staging/aws-provider"), vec!["2.0.0"]);
    nu.fails(
        &format!("ext publish '{p}' --version 2.0.0 --registry ''"),
        &["--registry is empty"],
    );
}

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

fn check<'a>(d: &'a Value, name: &str) -> &'a Value {
    d["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {d}"))
}

#[test]
fn test_oci_passes_on_a_healthy_registry_and_push_leaves_nothing_behind() {
    let reg = Registry::start(Options::default());
    reg.push_artifact(
        &format!("{NS}/redis-taskserv"),
        &["1.0.0", "1.1.0"],
        &artifact("taskserv", "redis", "1.0.0"),
        &[],
    );
    let sb = Sandbox::new();
    let cfg = oci_config(&sb, &reg.addr, "");
    let _d = Daemon::start(&sb, &["--config", cfg.to_str().unwrap()], &[]);
    let nu = Nu::new(&sb);

    let d = nu.json("ext test-oci");
    assert_eq!(d["ok"], true, "{d}");
    assert_eq!(d["registry"], reg.url);
    assert_eq!(d["namespace"], NS);
    assert_eq!(d["credentials"], "anonymous");
    let names: Vec<&str> = d["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["check"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["reachable", "tls", "api", "auth", "catalog", "namespace"],
        "no push check unless asked"
    );
    for c in d["checks"].as_array().unwrap() {
        assert_eq!(c["ok"], true, "{c}");
        assert!(c["error"].is_null() && !c["detail"].as_str().unwrap().is_empty());
    }
    assert!(
        check(&d, "tls")["detail"]
            .as_str()
            .unwrap()
            .contains("plain HTTP"),
        "{d}"
    );
    let ns = check(&d, "namespace")["detail"].as_str().unwrap();
    assert!(
        ns.contains("1 extension repository") && ns.contains("2 tags"),
        "{ns}"
    );

    let before = walk(&reg.storage);
    let d = nu.json("ext test-oci --push");
    let push = check(&d, "push");
    assert_eq!(push["ok"], true, "{d}");
    assert!(
        push["detail"]
            .as_str()
            .unwrap()
            .contains("nothing was left behind"),
        "{push}"
    );
    // The registry shows nothing of the probe: no repository in the
    // catalog, no tags, and no upload left open in its storage.
    let catalog: Value = reg
        .client()
        .get(format!("{}/v2/_catalog", reg.url))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        catalog["repositories"],
        serde_json::json!([format!("{NS}/redis-taskserv")]),
        "{catalog}"
    );
    assert!(reg.tags(&format!("{NS}/extregd-test-oci")).is_empty());
    let log = reg.log();
    // distribution 2.8 rewrites the session's hash state after removing a
    // cancelled upload (its purger removes it later): no data, no session.
    let after = walk(&reg.storage);
    let uploads: Vec<&String> = after
        .iter()
        .filter(|p| p.contains("_uploads/") && !p.contains("/hashstates/"))
        .collect();
    assert!(uploads.is_empty(), "upload left behind: {uploads:?}");
    assert!(
        log.lines().any(|l| {
            l.contains("GET /v2/provisioning-extensions/extregd-test-oci/blobs/uploads/")
                && l.contains("\" 404 ")
        }),
        "the cancelled session was not checked to be gone"
    );
    assert!(
        after
            .iter()
            .filter(|p| !before.contains(p))
            .all(|p| !p.contains("_manifests") && !p.contains("_layers")),
        "the push probe left files: {:?}",
        after
            .iter()
            .filter(|p| !before.contains(p))
            .collect::<Vec<_>>()
    );
    assert!(
        log.contains("DELETE /v2/provisioning-extensions/extregd-test-oci/blobs/uploads/"),
        "the upload session was not cancelled"
    );

    // Another namespace with no extension repositories: ok, with a hint.
    let d = nu.json("ext test-oci --namespace empty-ns");
    let ns = check(&d, "namespace");
    assert_eq!(ns["ok"], true);
    assert!(ns["hint"].as_str().unwrap().contains("ext publish"), "{ns}");
    let out = nu.run("ext test-oci --namespace 'Bad NS'");
    assert!(
        !out.ok
            && out.stderr.contains("namespace 'Bad NS'")
            && out.stderr.contains("invalid request"),
        "{}",
        out.stderr
    );
}

/// Every file below `root`, as paths relative to it.
fn walk(root: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    out
}

#[test]
fn test_oci_names_rejected_credentials_without_the_secret() {
    let reg = Registry::start(Options {
        htpasswd: Some(("ops".into(), "right-pw".into())),
        ..Default::default()
    });
    let sb = Sandbox::new();
    let auth = sb.path("oci-auth.txt");
    std::fs::write(&auth, "ops:wrong-pw-s3cret\n").unwrap();
    let cfg = oci_config(&sb, &reg.addr, "");
    // auth_token_path belongs to [oci]: written into that table.
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "timeout_seconds = 10\n",
        &format!(
            "timeout_seconds = 10\nauth_token_path = \"{}\"\n",
            auth.display()
        ),
    );
    std::fs::write(&cfg, text).unwrap();
    let _d = Daemon::start(&sb, &["--config", cfg.to_str().unwrap()], &[]);
    let nu = Nu::new(&sb);
    let out = nu.run("ext test-oci --push | to json --raw");
    assert!(out.ok, "{}", out.stderr);
    assert!(!out.stdout.contains("wrong-pw"), "{}", out.stdout);
    let d: Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(d["ok"], false);
    assert_eq!(
        d["credentials"],
        format!("[oci] auth_token_path {}", auth.display())
    );
    assert_eq!(check(&d, "reachable")["ok"], true);
    assert_eq!(check(&d, "api")["ok"], true);
    let a = check(&d, "auth");
    assert_eq!(a["ok"], false, "{a}");
    assert!(
        a["detail"]
            .as_str()
            .unwrap()
            .contains("Basic (realm \"extreg-test\")"),
        "{a}"
    );
    assert!(
        a["error"]
            .as_str()
            .unwrap()
            .contains("rejected the credentials"),
        "{a}"
    );
    assert!(
        a["hint"].as_str().unwrap().contains("auth_token_path"),
        "{a}"
    );
    for c in ["catalog", "namespace", "push"] {
        assert_eq!(check(&d, c)["skipped"], true, "{c}: {d}");
    }

    // The same registry from the CLI, anonymous and then with the right
    // password from containers' auth.json, push included.
    let (ok, out, _) = extregd(&sb, &["test-oci", "--registry", &reg.addr, "--json"]);
    assert!(!ok);
    let d: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(d["credentials"], "anonymous");
    assert!(
        check(&d, "auth")["hint"]
            .as_str()
            .unwrap()
            .contains("login"),
        "{d}"
    );
    write_auth_json(&sb, &reg.addr, "ops", "right-pw");
    let (ok, out, err) = extregd(
        &sb,
        &["test-oci", "--registry", &reg.addr, "--push", "--json"],
    );
    assert!(ok, "{err}\n{out}");
    assert!(!out.contains("right-pw"), "{out}");
    let d: Value = serde_json::from_str(&out).unwrap();
    assert!(
        d["credentials"]
            .as_str()
            .unwrap()
            .contains("containers auth.json"),
        "{d}"
    );
    assert_eq!(check(&d, "push")["ok"], true, "{d}");
}

#[test]
fn test_oci_on_a_closed_port_says_it_is_unreachable() {
    let port = extreg_tests::registry::free_port();
    let sb = Sandbox::new();
    let cfg = oci_config(&sb, &format!("127.0.0.1:{port}"), "");
    let _d = Daemon::start(&sb, &["--config", cfg.to_str().unwrap()], &[]);
    let nu = Nu::new(&sb);
    let d = nu.json("ext test-oci --push");
    assert_eq!(d["ok"], false);
    let r = check(&d, "reachable");
    assert_eq!(r["ok"], false, "{r}");
    assert!(
        r["error"].as_str().unwrap().contains("Connection refused"),
        "{r}"
    );
    assert!(
        r["hint"]
            .as_str()
            .unwrap()
            .contains(&format!("listening on 127.0.0.1:{port}")),
        "{r}"
    );
    for c in ["tls", "api", "auth", "catalog", "namespace", "push"] {
        let x = check(&d, c);
        assert!(x["skipped"] == true && x["ok"] == false, "{x}");
    }
    // A daemon error is labelled on the flag at fault.
    let out = nu.run("ext test-oci --registry 'ftp://x'");
    assert!(
        !out.ok
            && out.stderr.contains("--registry 'ftp://x'")
            && out.stderr.contains("invalid request"),
        "{}",
        out.stderr
    );
}

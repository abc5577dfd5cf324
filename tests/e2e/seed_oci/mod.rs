//! Seed parity for OCI and the CLI (seeds 003 and 004): `ext discover
//! --refresh`, publishing anywhere (`extregd publish`, credentials from
//! auth files, dry-run digests), against the real `docker-registry` and
//! `skopeo`.

mod oras;
mod test_oci;

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

/// Every file below `root`, as paths relative to it.
pub(crate) fn walk(root: &std::path::Path) -> Vec<String> {
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

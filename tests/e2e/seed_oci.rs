//! Seed parity for OCI and the CLI (seeds 003 and 004): `ext discover
//! --refresh`, publishing anywhere (`extregd publish`, credentials from
//! auth files, dry-run digests), against the real `docker-registry` and
//! `skopeo`.

use extreg_tests::registry::{write_oci_layout, Options, Registry};
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

fn skopeo(args: &[&str]) {
    let out = std::process::Command::new(require_tool("skopeo", "skopeo"))
        .arg("--insecure-policy")
        .args(args)
        .output()
        .expect("run skopeo");
    assert!(
        out.status.success(),
        "skopeo {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
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

    let out = nu.run("ext discover --type widget");
    assert!(
        !out.ok && out.stderr.contains("unknown extension type"),
        "{}",
        out.stderr
    );
}

//! Reproducible, trusted loads through the real `nu`: dependencies across
//! the OCI (real `docker-registry`) and local backends, the lockfile (also
//! offline), and minisign signatures made by Debian's `minisign` for OCI
//! and the Gitea stand-in.

use extreg_tests::gitea::{extension_tarball, Access, GiteaStandIn};
use extreg_tests::registry::{artifact_manifest, Options, Registry};
use extreg_tests::*;
use serde_json::Value;
use std::path::{Path, PathBuf};

const NS: &str = "team";

/// A folder-form extension with `requires` and `dependencies`.
fn ext_dir(
    root: &Path,
    ty: &str,
    name: &str,
    version: &str,
    requires: &[&str],
    deps: &[&str],
) -> PathBuf {
    let dir = root.join(ty).join(name).join(version);
    std::fs::create_dir_all(&dir).unwrap();
    let list = |v: &[&str]| {
        v.iter()
            .map(|s| format!("\"{s}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    std::fs::write(
        dir.join("extension.yaml"),
        format!(
            "extension:\n  name: {name}\n  version: {version}\n  type: {ty}\n  description: {name} for trust tests\n  requires: [{}]\n  dependencies: [{}]\n",
            list(requires),
            list(deps)
        ),
    )
    .unwrap();
    std::fs::write(dir.join("README.md"), format!("{name} {version}\n")).unwrap();
    dir
}

/// nu's error report with miette's wrapping undone (it breaks lines inside
/// words too): markers dropped, all whitespace removed. Compare with
/// [`has`].
fn flat(stderr: &str) -> Flat {
    Flat(
        stderr
            .lines()
            .map(|l| {
                let t = l.trim_start();
                t.strip_prefix("x ")
                    .or_else(|| t.strip_prefix("| "))
                    .unwrap_or(t)
            })
            .collect::<String>()
            .split_whitespace()
            .collect(),
    )
}

struct Flat(String);

impl Flat {
    fn contains(&self, needle: &str) -> bool {
        let n: String = needle.split_whitespace().collect();
        self.0.contains(&n)
    }
}

fn names(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| {
            format!(
                "{}/{} {} {}",
                x["type"].as_str().unwrap(),
                x["name"].as_str().unwrap(),
                x["version"].as_str().unwrap(),
                x["source"].as_str().unwrap()
            )
        })
        .collect()
}

fn oci_config(sb: &Sandbox, reg: &Registry, extra: &str) -> PathBuf {
    sb.write_config(&format!(
        "[oci]\nregistry = \"{}\"\nnamespace = \"{NS}\"\ntimeout_seconds = 5\n\
         [local]\npath = \"{}\"\n[cache]\nartifact_dir = \"{}\"\n[extensions]\ndir = \"{}\"\n{extra}",
        reg.addr,
        sb.catalog().display(),
        sb.path("artifacts").display(),
        sb.path("loaded").display()
    ))
}

#[test]
fn a_chain_over_oci_and_local_loads_in_order_locks_and_reproduces_offline() {
    let mut reg = Registry::start(Options::default());
    let sb = Sandbox::new();
    let cat = sb.catalog();
    ext_dir(
        &cat,
        "cluster",
        "app",
        "1.0.0",
        &[],
        &["taskserv/db@^2", "web"],
    );
    ext_dir(
        &cat,
        "taskserv",
        "web",
        "1.0.0",
        &["sh", "no-such-tool-e2e"],
        &["taskserv/db@~2.0"],
    );
    for v in ["1.0.0", "1.0.5", "1.1.0"] {
        ext_dir(&cat, "taskserv", "base", v, &[], &[]);
    }
    let cfg = oci_config(&sb, &reg, "");
    let mut d = Daemon::start(&sb, &["--config", cfg.to_str().unwrap()], &[]);
    let nu = Nu::new(&sb);
    // db lives in the registry only, published by `ext publish` (which
    // writes requires/dependencies as annotations).
    let src = sb.path("src");
    for (v, deps) in [
        ("2.0.0", vec!["taskserv/base@~1.0"]),
        ("2.1.0", vec!["taskserv/base@~1.0"]),
        ("3.0.0", vec![]),
    ] {
        let dir = ext_dir(&src, "taskserv", "db", v, &["no-such-db-tool-e2e"], &deps);
        nu.json(&format!("ext publish '{}' --version {v}", dir.display()));
    }

    // Records carry requires and dependencies (empty lists when absent).
    let (_, db) = d.get_json("/extensions/taskserv/db");
    assert_eq!(db["version"], "3.0.0");
    assert_eq!(db["dependencies"], serde_json::json!([]));
    assert_eq!(db["requires"], serde_json::json!(["no-such-db-tool-e2e"]));
    let info = nu.json("ext info db --version 2.0.0");
    assert_eq!(
        info["dependencies"],
        serde_json::json!(["taskserv/base@~1.0"])
    );
    assert_eq!(info["source"], "oci");
    let (_, web) = d.get_json("/extensions/taskserv/web");
    assert_eq!(
        web["requires"],
        serde_json::json!(["sh", "no-such-tool-e2e"])
    );
    let (_, base) = d.get_json("/extensions/taskserv/base");
    assert_eq!(base["dependencies"], serde_json::json!([]));

    // The tree.
    let t = nu.json("ext deps app --type cluster");
    assert_eq!(
        (t["name"].as_str(), t["version"].as_str()),
        (Some("app"), Some("1.0.0"))
    );
    let kids = t["dependencies"].as_array().unwrap();
    assert_eq!(kids.len(), 2);
    assert_eq!(
        (
            kids[0]["name"].as_str(),
            kids[0]["version"].as_str(),
            kids[0]["source"].as_str()
        ),
        (Some("db"), Some("2.0.0"), Some("oci"))
    );
    assert_eq!(kids[0]["wanted"], "taskserv/db@^2");
    assert_eq!(kids[0]["dependencies"][0]["name"], "base");
    assert_eq!(kids[0]["dependencies"][0]["version"], "1.0.5");
    assert_eq!(kids[1]["dependencies"][0]["wanted"], "taskserv/db@~2.0");

    // Load: dependencies first, newest versions satisfying every constraint.
    let l = nu.json("ext load app --type cluster");
    assert_eq!(
        names(&l["loaded"]),
        [
            "taskserv/base 1.0.5 local",
            "taskserv/db 2.0.0 oci",
            "taskserv/web 1.0.0 local",
            "cluster/app 1.0.0 local"
        ]
    );
    for x in l["loaded"].as_array().unwrap() {
        assert!(Path::new(x["path"].as_str().unwrap())
            .join("extension.yaml")
            .is_file());
    }
    let missing: Vec<&str> = l["missing_tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["tool"].as_str().unwrap())
        .collect();
    assert!(
        missing.contains(&"no-such-tool-e2e") && missing.contains(&"no-such-db-tool-e2e"),
        "{missing:?}"
    );
    assert!(!missing.contains(&"sh"), "sh is on PATH: {missing:?}");
    let lock_path = sb.path("home/extensions.lock");
    assert_eq!(l["lockfile"], lock_path.display().to_string());
    let lock = nu.json("open --raw extensions.lock | from toml");
    let locked = lock["extension"].as_array().unwrap();
    assert_eq!(locked.len(), 4);
    let db_lock = locked.iter().find(|e| e["name"] == "db").unwrap();
    assert_eq!(
        (db_lock["version"].as_str(), db_lock["source"].as_str()),
        (Some("2.0.0"), Some("oci"))
    );
    assert_eq!(
        db_lock["dependencies"],
        serde_json::json!(["taskserv/base"])
    );
    let digest_of = |n: &str| {
        l["loaded"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["name"] == n)
            .unwrap()["checksum"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(db_lock["digest"].as_str().unwrap(), digest_of("db"));
    assert_eq!(
        locked.iter().find(|e| e["name"] == "app").unwrap()["root"],
        true
    );

    // A fresh daemon, the registry stopped, only the artifact cache kept:
    // --locked loads the same set.
    d.stop();
    reg.stop();
    std::fs::remove_dir_all(sb.path("loaded")).unwrap();
    let d2 = Daemon::start(&sb, &["--config", cfg.to_str().unwrap()], &[]);
    let l2 = nu.json("ext load --locked");
    assert_eq!(names(&l2["loaded"]), names(&l["loaded"]));
    for x in l2["loaded"].as_array().unwrap() {
        assert_eq!(
            x["checksum"].as_str().unwrap(),
            digest_of(x["name"].as_str().unwrap())
        );
        assert_eq!(x["already_loaded"], false, "extracted afresh");
    }
    assert_eq!(
        nu.json("open --raw extensions.lock | from toml"),
        lock,
        "--locked leaves the lockfile alone"
    );
    drop(d2);

    // Upstream changes db 2.0.0 under the same tag: --locked refuses, naming
    // both digests.
    reg.restart();
    let changed = ext_dir(
        &src,
        "taskserv",
        "db",
        "2.0.0",
        &["no-such-db-tool-e2e", "pg_dump"],
        &["taskserv/base@~1.0"],
    );
    let d3 = Daemon::start(&sb, &["--config", cfg.to_str().unwrap()], &[]);
    let p = nu.json(&format!(
        "ext publish '{}' --version 2.0.0 --force",
        changed.display()
    ));
    let new_digest = p["layer_digest"].as_str().unwrap().to_string();
    assert_ne!(new_digest, digest_of("db"));
    let out = nu.run("ext load --locked");
    assert!(!out.ok);
    assert!(
        flat(&out.stderr).contains(&digest_of("db")) && flat(&out.stderr).contains(&new_digest),
        "{}",
        out.stderr
    );
    assert!(flat(&out.stderr).contains("taskserv/db"), "{}", out.stderr);
    // Without --locked the new bytes load and the lockfile follows.
    let l3 = nu.json("ext load app --type cluster");
    assert!(names(&l3["loaded"]).contains(&"taskserv/db 2.0.0 oci".to_string()));
    let lock3 = nu.json("open --raw extensions.lock | from toml");
    let db3 = lock3["extension"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "db")
        .unwrap()
        .clone();
    assert_eq!(db3["digest"].as_str().unwrap(), new_digest);
    drop(d3);
}

#[test]
fn a_cycle_and_a_conflict_fail_with_the_chain() {
    let sb = Sandbox::new();
    let cat = sb.catalog();
    ext_dir(&cat, "taskserv", "a", "1.0.0", &[], &["taskserv/b"]);
    ext_dir(&cat, "taskserv", "b", "1.0.0", &[], &["a@^1"]);
    ext_dir(
        &cat,
        "cluster",
        "c",
        "1.0.0",
        &[],
        &["taskserv/d@^1", "taskserv/e"],
    );
    ext_dir(&cat, "taskserv", "d", "1.0.0", &[], &[]);
    ext_dir(&cat, "taskserv", "d", "2.0.0", &[], &[]);
    ext_dir(&cat, "taskserv", "e", "1.0.0", &[], &["taskserv/d@^2"]);
    ext_dir(
        &cat,
        "cluster",
        "f",
        "1.0.0",
        &[],
        &["taskserv/g", "taskserv/d@^1"],
    );
    ext_dir(&cat, "taskserv", "g", "1.0.0", &[], &["taskserv/d@>=3"]);
    let cfg = sb.write_config(&format!(
        "[local]\npath = \"{}\"\n[extensions]\ndir = \"{}\"\n",
        cat.display(),
        sb.path("loaded").display()
    ));
    let _d = Daemon::start(&sb, &["--config", cfg.to_str().unwrap()], &[]);
    let nu = Nu::new(&sb);
    let out = nu.run("ext load a");
    assert!(!out.ok);
    assert!(
        flat(&out.stderr)
            .contains("dependency cycle: taskserv/a 1.0.0 -> taskserv/b 1.0.0 -> taskserv/a 1.0.0"),
        "{}",
        out.stderr
    );
    let out = nu.run("ext load c");
    assert!(!out.ok);
    assert!(
        flat(&out.stderr).contains("conflict: cluster/c 1.0.0 -> taskserv/e 1.0.0's requirement 'taskserv/d@^2' does not admit taskserv/d 1.0.0, chosen for cluster/c 1.0.0 -> taskserv/d 1.0.0"),
        "{}",
        out.stderr
    );
    // No version at all: the requirements and what is available.
    let out = nu.run("ext load f");
    assert!(!out.ok);
    assert!(
        flat(&out.stderr).contains("no version of taskserv/d satisfies every requirement"),
        "{}",
        out.stderr
    );
    assert!(
        flat(&out.stderr)
            .contains("'taskserv/d@>=3' required by cluster/f 1.0.0 -> taskserv/g 1.0.0"),
        "{}",
        out.stderr
    );
    assert!(
        flat(&out.stderr).contains("available: 2.0.0, 1.0.0"),
        "{}",
        out.stderr
    );
    let out = nu.run("ext deps c");
    assert!(
        !out.ok && flat(&out.stderr).contains("dependency_error"),
        "{}",
        out.stderr
    );
    // Nothing was extracted, no lockfile written.
    assert_eq!(nu.json("ext list --loaded | length"), 0);
    assert!(!sb.path("home/extensions.lock").exists());
}

/// A minisign key pair made by the `minisign` command: (secret, public, id).
fn keypair(sb: &Sandbox, name: &str) -> (PathBuf, PathBuf, String) {
    let mini = require_tool("minisign", "minisign");
    let (sk, pk) = (
        sb.path(&format!("{name}.key")),
        sb.path(&format!("{name}.pub")),
    );
    let out = std::process::Command::new(&mini)
        .args(["-G", "-W", "-p"])
        .arg(&pk)
        .arg("-s")
        .arg(&sk)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&pk).unwrap();
    let id = text
        .lines()
        .next()
        .unwrap()
        .rsplit(' ')
        .next()
        .unwrap()
        .to_string();
    (sk, pk, id)
}

/// `minisign -S` over `bytes`: the `.minisig` text.
fn minisign_sign(sb: &Sandbox, sk: &Path, bytes: &[u8]) -> Vec<u8> {
    let f = sb.path(&format!("to-sign-{}", sha256_tag(bytes).split_at(15).1));
    std::fs::write(&f, bytes).unwrap();
    let out = std::process::Command::new(require_tool("minisign", "minisign"))
        .arg("-S")
        .arg("-s")
        .arg(sk)
        .arg("-m")
        .arg(&f)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read(format!("{}.minisig", f.display())).unwrap()
}

/// Pushes `sig` as the signature of `layer_digest` the documented way.
fn push_signature(reg: &Registry, repo: &str, layer_digest: &str, sig: &[u8]) {
    let d = reg.push_blob(repo, sig);
    reg.push_blob(repo, b"{}");
    let m = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/vnd.provisioning.extension.signature.v1",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": sha256_tag(b"{}"), "size": 2},
        "layers": [{"mediaType": "application/vnd.provisioning.minisign.signature.v1", "digest": d, "size": sig.len()}]
    });
    let tag = format!(
        "sha256-{}.minisig",
        layer_digest.trim_start_matches("sha256:")
    );
    reg.put_manifest(repo, &serde_json::to_vec(&m).unwrap(), &[&tag]);
}

#[test]
fn oci_signatures_verify_and_bad_or_missing_ones_are_refused() {
    let reg = Registry::start(Options::default());
    let sb = Sandbox::new();
    let (sk, pk, id) = keypair(&sb, "trusted");
    let (rogue_sk, _, rogue_id) = keypair(&sb, "rogue");
    let cfg = oci_config(
        &sb,
        &reg,
        &format!(
            "[signatures.oci]\npolicy = \"require\"\ntrusted_keys = [\"{}\"]\n",
            pk.display()
        ),
    );
    let _d = Daemon::start(&sb, &["--config", cfg.to_str().unwrap()], &[]);
    let nu = Nu::new(&sb);
    let src = sb.path("src");

    // Signed by `ext publish --sign` (a key minisign made): verifies.
    let dir = ext_dir(&src, "taskserv", "good", "1.0.0", &[], &[]);
    let p = nu.json(&format!(
        "ext publish '{}' --version 1.0.0 --sign '{}'",
        dir.display(),
        sk.display()
    ));
    assert_eq!(p["signature"]["key_id"], id);
    assert_eq!(p["signature"]["pushed"], true);
    let before = nu.json("ext versions good");
    assert_eq!(before[0]["signature"]["signed"], true);
    assert_eq!(before[0]["signature"]["verified"], false, "not fetched yet");
    let l = nu.json("ext load good");
    assert_eq!(l["loaded"][0]["name"], "good");
    let after = nu.json("ext info good");
    assert_eq!(
        (
            after["signature"]["verified"].as_bool(),
            after["signature"]["key_id"].as_str()
        ),
        (Some(true), Some(id.as_str()))
    );
    assert_eq!(
        nu.json("ext versions good")[0]["signature"]["verified"],
        true
    );

    // Signed by the minisign command itself, pushed beside the artifact.
    let cli = ext_dir(&src, "taskserv", "cli", "1.0.0", &[], &[]);
    let p = nu.json(&format!("ext publish '{}' --version 1.0.0", cli.display()));
    let layer = p["layer_digest"].as_str().unwrap().to_string();
    let blob = std::fs::read(reg.blob_file(&layer)).unwrap();
    push_signature(
        &reg,
        &format!("{NS}/cli-taskserv"),
        &layer,
        &minisign_sign(&sb, &sk, &blob),
    );
    nu.run("ext cache clear --all");
    let l = nu.json("ext load cli");
    assert_eq!(l["checksum"], layer);

    // No signature under `require`: refused, nothing cached or extracted.
    let nosig = ext_dir(&src, "taskserv", "nosig", "1.0.0", &[], &[]);
    let p = nu.json(&format!(
        "ext publish '{}' --version 1.0.0",
        nosig.display()
    ));
    let out = nu.run("ext load nosig");
    assert!(!out.ok);
    assert!(
        flat(&out.stderr).contains("no signature found")
            && flat(&out.stderr).contains(&format!(
                "sha256-{}",
                p["layer_digest"]
                    .as_str()
                    .unwrap()
                    .trim_start_matches("sha256:")
            )),
        "{}",
        out.stderr
    );
    assert!(
        flat(&out.stderr).contains("taskserv/nosig 1.0.0"),
        "{}",
        out.stderr
    );

    // Signed by a key that is not trusted: refused, naming the key.
    let rogue = ext_dir(&src, "taskserv", "rogue", "1.0.0", &[], &[]);
    nu.json(&format!(
        "ext publish '{}' --version 1.0.0 --sign '{}'",
        rogue.display(),
        rogue_sk.display()
    ));
    let out = nu.run("ext load rogue");
    assert!(
        !out.ok
            && flat(&out.stderr)
                .contains(&format!("signed by key {rogue_id}, which is not trusted")),
        "{}",
        out.stderr
    );
    assert!(
        flat(&out.stderr).contains(&id),
        "the trusted keys are named: {}",
        out.stderr
    );

    // A tampered artifact: other bytes pushed under the tag, with the
    // signature of the original copied beside them.
    let orig = tar_gz(&[(
        "extension.yaml".into(),
        manifest("taskserv", "tamper", "1.0.0", "orig", &[]).into_bytes(),
    )]);
    let evil = tar_gz(&[(
        "extension.yaml".into(),
        manifest("taskserv", "tamper", "1.0.0", "evil", &[]).into_bytes(),
    )]);
    let repo = format!("{NS}/tamper-taskserv");
    let evil_digest = reg.push_blob(&repo, &evil);
    reg.push_blob(&repo, b"{}");
    reg.put_manifest(
        &repo,
        &artifact_manifest(&evil_digest, evil.len(), &[]),
        &["1.0.0"],
    );
    push_signature(&reg, &repo, &evil_digest, &minisign_sign(&sb, &sk, &orig));
    nu.run("ext cache clear --all"); // drops the listings cached before the push
    let out = nu.run("ext load tamper");
    assert!(
        !out.ok && flat(&out.stderr).contains(&format!("the signature by key {id} does not match")),
        "{}",
        out.stderr
    );

    // Nothing of the refused ones was cached or extracted.
    let cached: Vec<String> = nu
        .json("ext cache list | get name")
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    for n in ["nosig", "rogue", "tamper"] {
        assert!(!cached.contains(&n.to_string()), "{n} cached: {cached:?}");
        assert!(!sb.path(&format!("loaded/taskserv/{n}")).exists());
    }
    assert!(std::fs::read_dir(sb.path("artifacts/tmp"))
        .unwrap()
        .next()
        .is_none());
}

#[test]
fn gitea_minisig_assets_verify_and_bad_or_missing_ones_are_refused() {
    const ORG: &str = "provisioning-extensions";
    const TOKEN: &str = "read-token-trust";
    let g = GiteaStandIn::start();
    let sb = Sandbox::new();
    let (sk, pk, id) = keypair(&sb, "trusted");
    let (rogue_sk, _, rogue_id) = keypair(&sb, "rogue");
    let good = extension_tarball("taskserv", "good", "1.0.0", "good");
    let rogue = extension_tarball("taskserv", "rogue", "1.0.0", "rogue");
    let tampered = extension_tarball("taskserv", "tampered", "1.0.0", "tampered");
    let evil = extension_tarball("taskserv", "tampered", "1.0.0", "evil");
    let unsigned = extension_tarball("taskserv", "unsigned", "1.0.0", "unsigned");
    let sigs = [
        minisign_sign(&sb, &sk, &good),
        minisign_sign(&sb, &rogue_sk, &rogue),
        minisign_sign(&sb, &sk, &tampered),
    ];
    g.with(|w| {
        w.token(TOKEN, Access::Read);
        w.org(ORG);
        let mut add = |name: &str, tgz: &[u8], sig: Option<&[u8]>| {
            let repo = format!("{name}_taskserv");
            w.repo(ORG, &repo).describe(name, &[]);
            let rel = w.repo(ORG, &repo).release("v1.0.0");
            rel.asset(&format!("{repo}.tar.gz"), tgz);
            if let Some(s) = sig {
                rel.asset(&format!("{repo}.tar.gz.minisig"), s);
            }
        };
        add("good", &good, Some(&sigs[0]));
        add("rogue", &rogue, Some(&sigs[1]));
        add("tampered", &evil, Some(&sigs[2]));
        add("unsigned", &unsigned, None);
    });
    let extra = format!(
        "[extensions]\ndir = \"{}\"\n[signatures.gitea]\npolicy = \"require\"\ntrusted_keys = [\"{}\"]\n",
        sb.path("loaded").display(),
        std::fs::read_to_string(&pk).unwrap().lines().nth(1).unwrap()
    );
    let d = sb.start_gitea(&g.url, ORG, TOKEN, "timeout_seconds = 5\n", &extra);
    let nu = Nu::new(&sb);

    let v = nu.json("ext versions good");
    assert_eq!(
        (
            v[0]["signature"]["signed"].as_bool(),
            v[0]["signature"]["verified"].as_bool()
        ),
        (Some(true), Some(false))
    );
    assert_eq!(
        nu.json("ext versions unsigned")[0]["signature"]["signed"],
        false
    );
    let l = nu.json("ext load good");
    assert_eq!(l["checksum"], sha256_tag(&good));
    let i = nu.json("ext info good");
    assert_eq!(
        (
            i["signature"]["verified"].as_bool(),
            i["signature"]["key_id"].as_str()
        ),
        (Some(true), Some(id.as_str()))
    );

    let out = nu.run("ext load unsigned");
    assert!(
        !out.ok && flat(&out.stderr).contains("no signature found"),
        "{}",
        out.stderr
    );
    let out = nu.run("ext load rogue");
    assert!(
        !out.ok
            && flat(&out.stderr)
                .contains(&format!("signed by key {rogue_id}, which is not trusted")),
        "{}",
        out.stderr
    );
    let out = nu.run("ext load tampered");
    assert!(
        !out.ok && flat(&out.stderr).contains("does not match the artifact"),
        "{}",
        out.stderr
    );
    // Over REST too: the download is refused with the seed's error body.
    let (s, body) = d.get_json("/extensions/taskserv/tampered/1.0.0");
    assert_eq!(
        (s, body["error"].as_str()),
        (502, Some("integrity_error")),
        "{body}"
    );
    let cached: Vec<String> = nu
        .json("ext cache list | get name")
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(cached, ["good"]);
}

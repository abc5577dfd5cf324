//! `ext test-oci` / `extregd test-oci`: a diagnosis against a healthy, an
//! unauthorized and an unreachable registry.

use super::*;
use extreg_tests::registry::{Options, Registry};
use extreg_tests::*;
use serde_json::Value;

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
    // The command's own examples (the plugin's example harness has no
    // get/where/select), as `help ext test-oci` shows them.
    let failed = nu.json("ext test-oci | get checks | where not ok | select check error hint");
    assert_eq!(failed[0]["check"], "reachable", "{failed}");
    assert!(
        failed[0]["hint"].as_str().is_some_and(|h| !h.is_empty()),
        "{failed}"
    );
    let first = nu.json("ext test-oci --registry 127.0.0.1:1 | get checks.0 | select check ok");
    assert_eq!(
        first,
        serde_json::json!({"check": "reachable", "ok": false})
    );
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

//! The OpenAPI document at `/api/v1/openapi.json`: valid OpenAPI 3.1
//! (`openapi-spec-validator`), and the daemon holds to it under
//! `schemathesis` (every check, a bounded number of examples) over each
//! backend kind: the local example catalogue, the Gitea stand-in and the
//! real `docker-registry`. Both tools come from PyPI into the venv that
//! tests/run creates (`tests/.tools/venv`).

use extreg_tests::gitea::{add_extension, Access, GiteaStandIn};
use extreg_tests::registry::{Options, Registry};
use extreg_tests::*;
use std::path::PathBuf;
use std::process::Command;

/// Examples per operation and phase: bounded so the three runs take a few
/// minutes on two cores. `EXTREG_SCHEMATHESIS_EXAMPLES` raises it.
const EXAMPLES: &str = "25";
/// Fixed so a CI failure replays; `EXTREG_SCHEMATHESIS_SEED` varies it.
const SEED: &str = "20261129";

fn spec_path(d: &Daemon, sb: &Sandbox) -> PathBuf {
    let r = d.get("/openapi.json");
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        "application/json"
    );
    let p = sb.path("openapi.json");
    std::fs::write(&p, r.bytes().unwrap()).unwrap();
    p
}

fn schemathesis(d: &Daemon, sb: &Sandbox, label: &str) {
    // Fuzz a ready daemon: before its first backend check `/health/ready`
    // rightly answers 503.
    assert!(
        wait_until(std::time::Duration::from_secs(30), || d
            .get("/health/ready")
            .status()
            == 200),
        "{label}: the daemon never became ready:\n{}",
        d.stderr()
    );
    let st = venv_tool("schemathesis");
    let work = sb.path(&format!("schemathesis-{label}"));
    std::fs::create_dir_all(&work).unwrap();
    let examples =
        std::env::var("EXTREG_SCHEMATHESIS_EXAMPLES").unwrap_or_else(|_| EXAMPLES.to_string());
    let seed = std::env::var("EXTREG_SCHEMATHESIS_SEED").unwrap_or_else(|_| SEED.to_string());
    let out = Command::new(st)
        .current_dir(&work)
        .env(
            "SCHEMATHESIS_HOOKS",
            repo_root().join("tests/openapi/hooks.py"),
        )
        .env("NO_COLOR", "1")
        .args(["run", &format!("{}/api/v1/openapi.json", d.url)])
        .args(["--url", &d.url])
        .args(["--checks", "all"])
        .args(["--max-examples", &examples])
        .args(["--seed", &seed])
        .args(["--request-timeout", "30"])
        .args(["--report", "junit", "--report-dir"])
        .arg(work.join("report"))
        .output()
        .expect("run schemathesis");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "schemathesis found problems with the {label} backend (seed {seed}):\n{stdout}\n{stderr}\n--- daemon log ---\n{}",
        d.stderr()
    );
    // It really tested every operation it selected, and selected all.
    let figure = |prefix: &str| -> String {
        stdout
            .lines()
            .find_map(|l| l.trim().strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no '{prefix}' line in:\n{stdout}"))
            .trim()
            .to_string()
    };
    let selected = figure("Selected:");
    let tested: usize = figure("Tested:").parse().unwrap();
    let (a, b) = selected.split_once('/').unwrap();
    assert_eq!(a, b, "not every operation was selected:\n{stdout}");
    assert_eq!(a.parse::<usize>().unwrap(), tested, "{stdout}");
    assert!(tested >= 11, "only {tested} operations tested:\n{stdout}");
    println!("{label}: {}", stdout.lines().last().unwrap_or_default());
}

#[test]
fn the_document_is_valid_openapi_3_1_and_covers_every_route() {
    let sb = Sandbox::new();
    let d = Daemon::start(
        &sb,
        &[],
        &[(
            "PROVISIONING_EXTENSIONS_PATH",
            repo_root().join("examples/catalog").to_str().unwrap(),
        )],
    );
    let p = spec_path(&d, &sb);
    let out = Command::new(venv_tool("openapi-spec-validator"))
        .arg(&p)
        .output()
        .expect("run openapi-spec-validator");
    assert!(
        out.status.success(),
        "openapi-spec-validator: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    for path in [
        "/api/v1/extensions",
        "/api/v1/extensions/search",
        "/api/v1/extensions/{type}/{name}",
        "/api/v1/extensions/{type}/{name}/versions",
        "/api/v1/extensions/{type}/{name}/resolve",
        "/api/v1/extensions/{type}/{name}/{version}",
        "/api/v1/health",
        "/api/v1/metrics",
        "/api/v1/cache/stats",
        "/api/v1/openapi.json",
        "/api/v1/health/live",
        "/api/v1/health/ready",
    ] {
        assert!(paths.contains_key(path), "{path} is not documented");
    }
    // The shared wire types are the schemas, field for field.
    let (_, ext) = d.get_json("/extensions/taskserv/kubernetes");
    let props = doc["components"]["schemas"]["Extension"]["properties"]
        .as_object()
        .unwrap();
    for k in ext.as_object().unwrap().keys() {
        assert!(
            props.contains_key(k),
            "Extension field {k} is not in the schema"
        );
    }
    assert_eq!(props.len(), ext.as_object().unwrap().len());
}

#[test]
fn schemathesis_passes_on_the_local_backend() {
    let sb = Sandbox::new();
    let d = Daemon::start(
        &sb,
        &[],
        &[(
            "PROVISIONING_EXTENSIONS_PATH",
            repo_root().join("examples/catalog").to_str().unwrap(),
        )],
    );
    schemathesis(&d, &sb, "local");
}

#[test]
fn schemathesis_passes_on_the_gitea_backend() {
    const ORG: &str = "provisioning-extensions";
    const TOKEN: &str = "read-token-openapi-31";
    let g = GiteaStandIn::start();
    g.with(|w| {
        w.token(TOKEN, Access::Read);
        w.org(ORG);
        add_extension(w, ORG, "provider", "aws", &["v1.1.0", "v1.2.0"], true);
        add_extension(
            w,
            ORG,
            "taskserv",
            "kubernetes",
            &["1.27.4", "1.28.0-rc.1"],
            false,
        );
        add_extension(w, ORG, "cluster", "web", &["0.1.0"], true);
    });
    let sb = Sandbox::new();
    let d = sb.start_gitea(&g.url, ORG, TOKEN, "timeout_seconds = 5\n", "");
    schemathesis(&d, &sb, "gitea");
    assert!(g.total_requests() > 0, "the stand-in was asked");
}

#[test]
fn schemathesis_passes_on_the_oci_backend() {
    const NS: &str = "provisioning-extensions";
    let reg = Registry::start(Options::default());
    for (name, ty, tags) in [
        ("aws", "provider", &["1.1.0", "1.2.0"][..]),
        (
            "kubernetes",
            "taskserv",
            &["1.28.0", "1.29.0-rc.1", "latest"][..],
        ),
        ("web", "cluster", &["v0.1.0"][..]),
    ] {
        for tag in tags {
            let layer = gitea::extension_tarball(ty, name, tag.trim_start_matches('v'), "from oci");
            reg.push_artifact(
                &format!("{NS}/{name}-{ty}"),
                &[tag],
                &layer,
                &[
                    ("org.opencontainers.image.description", "from oci"),
                    ("org.opencontainers.image.created", "2026-01-02T03:04:05Z"),
                    ("dev.provisioning.extension.tags", "oci,test"),
                ],
            );
        }
    }
    let sb = Sandbox::new();
    let cfg = sb.write_config(&format!(
        "[oci]\nregistry = \"{}\"\nnamespace = \"{NS}\"\ntimeout_seconds = 5\n\
         [cache]\nartifact_dir = \"{}\"\n",
        reg.addr,
        sb.path("artifacts").display()
    ));
    let d = Daemon::start(&sb, &["--config", cfg.to_str().unwrap()], &[]);
    schemathesis(&d, &sb, "oci");
}

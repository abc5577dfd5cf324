//! The Gitea backend, end to end: the real `extregd` binary against the
//! Gitea stand-in of `support/gitea/`, driven through `/api/v1`.
//! `schema.rs` holds the stand-in to Gitea 1.25's published schema;
//! `fanout.rs` checks the cold listing's concurrency and pipelining.

use extreg_tests::gitea::{add_extension, add_extensions, extension_tarball, Access, GiteaStandIn};
use extreg_tests::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const ORG: &str = "provisioning-extensions";
const TOKEN: &str = "read-token-7c1e0d9a5b";
const WRITE_TOKEN: &str = "write-token-4f2a88e1c3";

fn standin() -> GiteaStandIn {
    let g = GiteaStandIn::start();
    g.with(|w| {
        w.token(TOKEN, Access::Read);
        w.token(WRITE_TOKEN, Access::Write);
        w.org(ORG);
    });
    g
}

fn write_token(sb: &Sandbox, token: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = sb.path("gitea-token.txt");
    std::fs::write(&p, format!("{token}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    p
}

fn config(sb: &Sandbox, g: &GiteaStandIn, token: &str, extra: &str) -> std::path::PathBuf {
    config_with(sb, g, token, "", extra)
}

/// [`config`] with more `[gitea]` keys (`gitea_keys`, whole lines).
fn config_with(
    sb: &Sandbox,
    g: &GiteaStandIn,
    token: &str,
    gitea_keys: &str,
    extra: &str,
) -> std::path::PathBuf {
    let tok = write_token(sb, token);
    sb.write_config(&format!(
        "[gitea]\nurl = \"{}\"\norganization = \"{ORG}\"\ntoken_path = \"{}\"\ntimeout_seconds = 5\n{gitea_keys}\
         [cache]\nartifact_dir = \"{}\"\n{extra}",
        g.url,
        tok.display(),
        sb.path("artifacts").display()
    ))
}

fn start(sb: &Sandbox, g: &GiteaStandIn, token: &str, extra: &str) -> Daemon {
    let cfg = config(sb, g, token, extra);
    Daemon::start(sb, &["--config", cfg.to_str().unwrap()], &[])
}

fn versions(d: &Daemon, path: &str) -> Vec<Value> {
    let (s, v) = d.get_json(path);
    assert_eq!(s, 200, "GET {path}: {v}");
    v.as_array().unwrap().clone()
}

/// `(version, source)` of each version record.
fn version_sources(vs: &[Value]) -> Vec<(String, String)> {
    vs.iter()
        .map(|v| {
            (
                v["version"].as_str().unwrap().to_string(),
                v["source"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn version_strings(vs: &[Value]) -> Vec<String> {
    vs.iter()
        .map(|v| v["version"].as_str().unwrap().to_string())
        .collect()
}

/// A field left out or `null`.
fn absent(v: &Value, key: &str) -> bool {
    v.get(key).is_none_or(Value::is_null)
}

mod fanout;
mod schema;
use schema::raw_get;

// ---- through the daemon ----------------------------------------------------

#[test]
fn two_page_org_lists_every_extension_and_skips_others() {
    let g = standin();
    g.with(|w| {
        add_extensions(w, ORG, "ext", 55, &["v1.0.0", "v1.1.0"], true);
        for other in ["website", "docs", "ext99_provider", "_prov"] {
            w.repo(ORG, other).release("v1.0.0");
        }
        add_extension(w, ORG, "provider", "oldie", &["v1.0.0"], false);
        w.repo(ORG, "oldie_prov").archived = true;
        add_extension(w, ORG, "taskserv", "secret", &["1.0.0"], false);
        w.repo(ORG, "secret_taskserv").private = true;
    });
    let sb = Sandbox::new();
    let d = start(&sb, &g, TOKEN, "");
    let r = d.get("/extensions?limit=1000");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-total-count"], "56");
    let all: Value = r.json().unwrap();
    let names: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 56, "{names:?}");
    assert!(names.contains(&"ext00") && names.contains(&"ext54"));
    assert!(
        names.contains(&"secret"),
        "private repo readable by the token"
    );
    assert!(
        !names.contains(&"oldie"),
        "archived repositories are skipped"
    );
    assert!(!names
        .iter()
        .any(|n| ["website", "docs", "ext99"].contains(n)));
    // Two org pages (55+4+2 repositories at 50 per page), one release page
    // per extension repository, and no release listing of skipped ones.
    let counts = g.counts();
    assert_eq!(counts["GET /api/v1/orgs/{org}/repos"], 2, "{counts:?}");
    assert_eq!(
        counts["GET /api/v1/repos/{owner}/{repo}/releases"], 56,
        "{counts:?}"
    );

    let e = all
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "ext01")
        .unwrap();
    assert_eq!(e["type"], "taskserv");
    assert_eq!(e["version"], "1.1.0");
    assert_eq!(e["source"], "gitea");
    assert_eq!(e["description"], "ext01 taskserv from gitea");
    assert_eq!(e["tags"], json!(["taskserv", "gitea"]));
    assert_eq!(e["repository"], format!("{}/{ORG}/ext01_taskserv", g.url));
    assert_eq!(e["author"], "release-bot");
    assert!(e["published_at"].as_str().unwrap().ends_with('Z'));
    let tgz = extension_tarball("taskserv", "ext01", "1.1.0", "ext01 taskserv from gitea");
    assert_eq!(e["checksum"], sha256_tag(&tgz));
    assert_eq!(e["size"], tgz.len());
    assert_eq!(
        e["download_url"],
        format!("{}/api/v1/extensions/taskserv/ext01/1.1.0", d.url)
    );
    let (_, v) = d.get_json("/extensions?source=gitea&type=cluster&limit=1000");
    assert_eq!(v.as_array().unwrap().len(), 18);
    let (s, _) = d.get_json("/extensions/provider/oldie/versions");
    assert_eq!(s, 404, "an archived repository serves no versions");
    let (s, v) = d.get_json("/extensions/search?q=ext42");
    assert_eq!(s, 200);
    assert_eq!(v[0]["name"], "ext42");
}

#[test]
fn drafts_are_never_versions_even_for_a_write_token() {
    let g = standin();
    g.with(|w| {
        add_extension(w, ORG, "provider", "aws", &["v1.0.0", "v1.1.0"], false);
        w.repo(ORG, "aws_prov").release("v1.1.0").draft();
    });
    // The write token does see the draft in Gitea's API...
    let raw: Value = raw_get(
        &format!("{}/api/v1/repos/{ORG}/aws_prov/releases", g.url),
        Some(WRITE_TOKEN),
    )
    .json()
    .unwrap();
    assert_eq!(raw.as_array().unwrap().len(), 2);
    // ...the daemon does not make it a version.
    let sb = Sandbox::new();
    let d = start(&sb, &g, WRITE_TOKEN, "");
    let vs = versions(&d, "/extensions/provider/aws/versions");
    assert_eq!(version_strings(&vs), ["1.0.0"]);
    let (_, e) = d.get_json("/extensions/provider/aws");
    assert_eq!(e["version"], "1.0.0");
    let (_, list) = d.get_json("/extensions");
    assert_eq!(list[0]["version"], "1.0.0");
    let (s, _, _) = d.download("/extensions/provider/aws/1.1.0");
    assert_eq!(s, 404);
}

#[test]
fn prereleases_v_tags_and_non_semver_tags() {
    let g = standin();
    let tarballs = g.with(|w| {
        let t = add_extension(
            w,
            ORG,
            "taskserv",
            "kubernetes",
            &[
                "v1.27.4",
                "v1.28.0",
                "v1.29.0-rc.1",
                "1.30.0",
                "latest",
                "release-2",
            ],
            false,
        );
        let repo = w.repo(ORG, "kubernetes_taskserv");
        repo.release("v1.29.0-rc.1").prerelease();
        // Marked pre-release by Gitea only, not by its version.
        repo.release("1.30.0").prerelease();
        // Gitea writes its server's offset; the record says UTC.
        repo.release("v1.28.0").created_at = "2024-03-01T12:00:00+02:00".into();
        t
    });
    let sb = Sandbox::new();
    let d = start(&sb, &g, TOKEN, "");
    let vs = versions(&d, "/extensions/taskserv/kubernetes/versions");
    assert_eq!(
        version_strings(&vs),
        ["1.30.0", "1.29.0-rc.1", "1.28.0", "1.27.4"],
        "non-semver tags are skipped, v is dropped"
    );
    let pre: Vec<bool> = vs
        .iter()
        .map(|v| v["prerelease"].as_bool().unwrap())
        .collect();
    assert_eq!(pre, [true, true, false, false]);
    assert!(vs.iter().all(|v| v["source"] == "gitea"));
    assert_eq!(vs[2]["published_at"], "2024-03-01T10:00:00Z");
    // The listing picks the newest that is no pre-release.
    let (_, list) = d.get_json("/extensions?type=taskserv");
    assert_eq!(list[0]["name"], "kubernetes");
    assert_eq!(list[0]["version"], "1.28.0");
    assert_eq!(list[0]["prerelease"], false);
    // Downloads map the version back to the v-tag.
    for (path, tag) in [
        ("/extensions/taskserv/kubernetes/1.28.0", "v1.28.0"),
        ("/extensions/taskserv/kubernetes/v1.27.4", "v1.27.4"),
        (
            "/extensions/taskserv/kubernetes/1.29.0-rc.1",
            "v1.29.0-rc.1",
        ),
        ("/extensions/taskserv/kubernetes/1.30.0", "1.30.0"),
    ] {
        let (s, bytes, etag) = d.download(path);
        assert_eq!(s, 200, "{path}");
        assert_eq!(bytes, tarballs[tag], "{path}");
        assert_eq!(etag.unwrap(), sha256_tag(&bytes));
    }
    let (s, v) = d.get_json("/extensions/taskserv/kubernetes/latest");
    assert_eq!(s, 400, "{v}");
}

#[test]
fn sha256sums_give_checksums_before_download_and_verify_it() {
    let g = standin();
    let (sums, single, none) = g.with(|w| {
        let a = add_extension(w, ORG, "provider", "upcloud", &["v2.1.3"], true);
        // `{asset}.sha256` holding a bare digest.
        let b = extension_tarball("provider", "hetzner", "1.0.0", "hetzner");
        let r = w.repo(ORG, "hetzner_prov").release("v1.0.0");
        r.asset("hetzner_prov.tar.gz", &b);
        use sha2::Digest;
        let hex = hex::encode(sha2::Sha256::digest(&b));
        r.asset("hetzner_prov.tar.gz.sha256", format!("{hex}\n").as_bytes());
        let c = add_extension(w, ORG, "provider", "plain", &["v0.1.0"], false);
        (a["v2.1.3"].clone(), b, c["v0.1.0"].clone())
    });
    let sb = Sandbox::new();
    let d = start(&sb, &g, TOKEN, "");
    let vs = versions(&d, "/extensions/provider/upcloud/versions");
    assert_eq!(vs[0]["checksum"], sha256_tag(&sums));
    assert_eq!(vs[0]["size"], sums.len());
    let vs = versions(&d, "/extensions/provider/hetzner/versions");
    assert_eq!(vs[0]["checksum"], sha256_tag(&single));
    let vs = versions(&d, "/extensions/provider/plain/versions");
    assert!(
        absent(&vs[0], "checksum"),
        "no checksum file: unknown until downloaded: {vs:?}"
    );
    let downloads = |g: &GiteaStandIn| {
        g.counts()
            .get("GET /{owner}/{repo}/releases/download/{tag}/{asset}")
            .copied()
            .unwrap_or(0)
    };
    // The checksum files were read, no tarball yet.
    assert_eq!(downloads(&g), 2);

    let (s, bytes, etag) = d.download("/extensions/provider/upcloud/2.1.3");
    assert_eq!(s, 200);
    assert_eq!(bytes, sums);
    assert_eq!(etag.unwrap(), sha256_tag(&sums));
    let (s, bytes, etag) = d.download("/extensions/provider/plain/0.1.0");
    assert_eq!(s, 200);
    assert_eq!(bytes, none);
    // Computed on first download and recorded in the artifact cache.
    assert_eq!(etag.clone().unwrap(), sha256_tag(&none));
    let refs = files_under(&sb.path("artifacts/refs/provider/plain"));
    assert_eq!(refs.len(), 1, "{refs:?}");
    let entry: Value = serde_json::from_slice(&std::fs::read(&refs[0]).unwrap()).unwrap();
    assert_eq!(entry["digest"], sha256_tag(&none));
    assert_eq!(entry["source"], "gitea");
    // A second download is served from the cache.
    let before = downloads(&g);
    let (s, _, _) = d.download("/extensions/provider/upcloud/2.1.3");
    assert_eq!(s, 200);
    assert_eq!(downloads(&g), before);
}

#[test]
fn tampered_asset_is_rejected_and_nothing_is_cached() {
    let g = standin();
    let good =
        g.with(|w| add_extension(w, ORG, "cluster", "buildkit", &["v0.12.0", "v0.13.0"], true));
    g.tamper(
        ORG,
        "buildkit_cluster",
        "v0.13.0",
        "buildkit_cluster.tar.gz",
    );
    let sb = Sandbox::new();
    let d = start(&sb, &g, TOKEN, "");
    let vs = versions(&d, "/extensions/cluster/buildkit/versions");
    assert_eq!(vs[0]["checksum"], sha256_tag(&good["v0.13.0"]));
    let (s, v) = d.get_json("/extensions/cluster/buildkit/0.13.0");
    assert_eq!(s, 502, "{v}");
    assert_eq!(v["error"], "integrity_error");
    assert!(
        v["details"]
            .as_str()
            .unwrap()
            .contains(&sha256_tag(&good["v0.13.0"])),
        "{v}"
    );
    assert!(files_under(&sb.path("artifacts/tmp")).is_empty());
    assert!(files_under(&sb.path("artifacts/blobs")).is_empty());
    assert!(!sb
        .path("artifacts/refs/cluster/buildkit/0.13.0@gitea.json")
        .exists());
    let (_, stats) = d.get_json("/cache/stats");
    assert_eq!(stats["artifacts"]["entries"], 0);
    // Asking again fails again (nothing half-trusted was kept).
    let (s, v) = d.get_json("/extensions/cluster/buildkit/0.13.0");
    assert_eq!((s, v["error"].as_str()), (502, Some("integrity_error")));
    // The untampered version is fine.
    let (s, bytes, _) = d.download("/extensions/cluster/buildkit/0.12.0");
    assert_eq!(s, 200);
    assert_eq!(bytes, good["v0.12.0"]);
    assert!(sb
        .path("artifacts/refs/cluster/buildkit/0.12.0@gitea.json")
        .exists());
}

#[test]
fn release_without_tarball_is_listed_but_not_downloadable() {
    let g = standin();
    g.with(|w| {
        add_extension(w, ORG, "taskserv", "cilium", &["v1.0.0"], false);
        w.repo(ORG, "cilium_taskserv")
            .release("v2.0.0")
            .asset("NOTES.txt", b"no tarball here");
    });
    let sb = Sandbox::new();
    let d = start(&sb, &g, TOKEN, "");
    let vs = versions(&d, "/extensions/taskserv/cilium/versions");
    assert_eq!(version_strings(&vs), ["2.0.0", "1.0.0"]);
    assert!(
        absent(&vs[0], "size") && absent(&vs[0], "checksum"),
        "{vs:?}"
    );
    let (s, v) = d.get_json("/extensions/taskserv/cilium/2.0.0");
    assert_eq!(s, 404, "{v}");
    assert_eq!(v["error"], "not_found");
    let details = v["details"].as_str().unwrap();
    assert!(
        details.contains(&format!(
            "release v2.0.0 of {ORG}/cilium_taskserv has no tarball asset (expected cilium_taskserv.tar.gz)"
        )),
        "{v}"
    );
    let (s, _, _) = d.download("/extensions/taskserv/cilium/1.0.0");
    assert_eq!(s, 200);
}

#[test]
fn wrong_token_is_an_auth_error_and_never_shown() {
    let g = standin();
    g.with(|w| {
        add_extension(w, ORG, "provider", "aws", &["v1.0.0"], true);
    });
    let bad = "tok-BAD-5ecr3t-value-91";
    let sb = Sandbox::new();
    let d = start(&sb, &g, bad, "");
    let mut bodies = String::new();
    for path in [
        "/extensions",
        "/extensions/provider/aws/versions",
        "/extensions/provider/aws",
        "/extensions/provider/aws/1.0.0",
    ] {
        let r = d.get(path);
        assert_eq!(r.status(), 401, "{path}");
        let v: Value = r.json().unwrap();
        assert_eq!(v["error"], "auth_error", "{path}: {v}");
        assert!(v["details"].as_str().unwrap().contains("401"), "{v}");
        bodies.push_str(&v.to_string());
    }
    let (s, h) = d.get_json("/health");
    assert_eq!(s, 200);
    assert_eq!(h["status"], "degraded");
    assert_eq!(h["backends"]["gitea"]["enabled"], true);
    assert_eq!(h["backends"]["gitea"]["healthy"], false);
    assert!(
        h["backends"]["gitea"]["error"]
            .as_str()
            .unwrap()
            .contains("401"),
        "{h}"
    );
    bodies.push_str(&h.to_string());
    bodies.push_str(&d.metrics());
    assert!(!bodies.contains(bad), "the token leaked: {bodies}");
    assert!(!bodies.contains("5ecr3t"));
    let log = d.stderr();
    assert!(
        !log.contains(bad) && !log.contains("5ecr3t"),
        "the token is in the log:\n{log}"
    );
    // The same daemon with the right token works.
    drop(d);
    let d = start(&sb, &g, TOKEN, "");
    let (s, _) = d.get_json("/extensions/provider/aws/versions");
    assert_eq!(s, 200);
    let (_, h) = d.get_json("/health");
    assert_eq!(h["backends"]["gitea"]["healthy"], true);
    assert_eq!(h["status"], "healthy");
}

#[test]
fn backend_down_degrades_health_and_answers_502() {
    let mut g = standin();
    g.with(|w| {
        add_extension(w, ORG, "provider", "aws", &["v1.0.0"], false);
    });
    let sb = Sandbox::new();
    write_folder_ext(
        &sb.catalog(),
        "provider",
        "local-only",
        "1.0.0",
        "here",
        &[],
    );
    let d = start(
        &sb,
        &g,
        TOKEN,
        &format!("[local]\npath = \"{}\"\n", sb.catalog().display()),
    );
    // Gitea answers 500 to everything.
    g.set_failing(true);
    let (s, v) = d.get_json("/extensions/provider/aws/versions");
    assert_eq!(s, 502, "{v}");
    assert_eq!(v["error"], "backend_error");
    assert!(
        v["details"]
            .as_str()
            .unwrap()
            .contains("gitea answered 500"),
        "{v}"
    );
    let (_, h) = d.get_json("/health");
    assert_eq!(h["status"], "degraded");
    assert_eq!(h["backends"]["gitea"]["healthy"], false);
    assert_eq!(h["backends"]["local"]["healthy"], true);
    // The list answers from the backend that works.
    let (s, v) = d.get_json("/extensions");
    assert_eq!(s, 200);
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["name"], "local-only");

    // Gitea goes away altogether.
    g.set_failing(false);
    g.stop();
    // A keep-alive connection pooled before the stop may fail first with
    // "connection closed"; once it is gone, a fresh connect is refused.
    let mut v = Value::Null;
    for _ in 0..3 {
        let (s, body) = d.get_json("/extensions/provider/aws/versions");
        assert_eq!(s, 502, "{body}");
        assert_eq!(body["error"], "backend_error");
        v = body;
        if v["details"].as_str().unwrap().contains("cannot connect to") {
            break;
        }
    }
    let details = v["details"].as_str().unwrap();
    assert!(details.contains("cannot connect to"), "{v}");
    assert!(!details.contains(TOKEN));
    let (_, h) = d.get_json("/health");
    assert_eq!(h["status"], "degraded");
    assert_eq!(h["backends"]["gitea"]["healthy"], false);
    assert!(
        h["backends"]["gitea"]["error"]
            .as_str()
            .unwrap()
            .contains("unreachable"),
        "{h}"
    );
    let (s, v) = d.get_json("/extensions?source=gitea");
    assert_eq!(s, 502, "{v}");
}

#[test]
fn same_extension_in_local_and_gitea_merges_by_priority() {
    let g = standin();
    let gitea = g.with(|w| add_extension(w, ORG, "provider", "aws", &["v1.1.0", "v1.2.0"], true));
    let sb = Sandbox::new();
    write_folder_ext(&sb.catalog(), "provider", "aws", "1.0.0", "AWS local", &[]);
    write_folder_ext(&sb.catalog(), "provider", "aws", "1.1.0", "AWS local", &[]);
    let local = format!("[local]\npath = \"{}\"\n", sb.catalog().display());

    let d = start(&sb, &g, TOKEN, &local);
    let vs = versions(&d, "/extensions/provider/aws/versions");
    let got = version_sources(&vs);
    let pairs = |p: &[(&str, &str)]| -> Vec<(String, String)> {
        p.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    };
    // Default priority: local before gitea.
    assert_eq!(
        got,
        pairs(&[("1.2.0", "gitea"), ("1.1.0", "local"), ("1.0.0", "local")])
    );
    let (s, bytes, _) = d.download("/extensions/provider/aws/1.1.0");
    assert_eq!(s, 200);
    assert_ne!(bytes, gitea["v1.1.0"], "local serves the shared version");
    assert_eq!(sha256_tag(&bytes), vs[1]["checksum"].as_str().unwrap());
    let (s, bytes, _) = d.download("/extensions/provider/aws/1.2.0");
    assert_eq!((s, &bytes), (200, &gitea["v1.2.0"]));
    let (_, list) = d.get_json("/extensions?type=provider");
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["version"], "1.2.0");
    assert_eq!(list[0]["source"], "gitea");
    drop(d);

    // Flipped: gitea first.
    let d = start(
        &sb,
        &g,
        TOKEN,
        &format!("{local}[registry]\npriority = [\"gitea\", \"local\"]\n"),
    );
    let vs = versions(&d, "/extensions/provider/aws/versions");
    let got = version_sources(&vs);
    assert_eq!(
        got,
        pairs(&[("1.2.0", "gitea"), ("1.1.0", "gitea"), ("1.0.0", "local")])
    );
    let (s, bytes, _) = d.download("/extensions/provider/aws/1.1.0");
    assert_eq!((s, &bytes), (200, &gitea["v1.1.0"]));
    drop(d);

    // A source named twice or unknown stops the daemon with a message.
    let cfg = config(
        &sb,
        &g,
        TOKEN,
        &format!("{local}[registry]\npriority = [\"gitea\", \"gitlab\"]\n"),
    );
    let out = sb
        .command(&bin("extregd"))
        .args(["--config", cfg.to_str().unwrap(), "--check-config"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("gitlab") && text.contains("priority"),
        "{text}"
    );
}

#[test]
fn cold_list_under_latency_is_concurrent() {
    let g = standin();
    g.with(|w| {
        add_extensions(w, ORG, "lat", 60, &["v1.0.0", "v1.1.0"], true);
    });
    let sb = Sandbox::new();
    let d = start(&sb, &g, TOKEN, "");
    g.set_latency(Duration::from_millis(20));
    g.reset_counts();
    let t = Instant::now();
    let r = d.get("/extensions?limit=1000");
    let cold = t.elapsed();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-total-count"], "60");
    let requests = g.total_requests();
    let serial = Duration::from_millis(20 * requests);
    let t = Instant::now();
    assert_eq!(d.get("/extensions?limit=1000").status(), 200);
    let warm = t.elapsed();
    println!(
        "gitea cold list: 60 repos, {requests} requests at 20 ms each: {:.0} ms \
         (serial lower bound {:.0} ms, ratio {:.2}); warm {:.1} ms",
        cold.as_secs_f64() * 1e3,
        serial.as_secs_f64() * 1e3,
        cold.as_secs_f64() / serial.as_secs_f64(),
        warm.as_secs_f64() * 1e3
    );
    // Org pages + one release page and one SHA256SUMS per repository.
    assert_eq!(requests, 2 + 60 + 60, "{:?}", g.counts());
    assert!(cold < Duration::from_secs(1), "cold list took {cold:?}");
    assert!(cold < serial / 4, "cold list {cold:?} vs serial {serial:?}");
    assert_eq!(g.total_requests(), requests, "the warm list is cached");
}

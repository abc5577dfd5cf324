//! Issue 6 end to end: version constraints over REST, `ext load` and
//! `ext pull` through the real `nu`, safe extraction of hostile archives,
//! the artifact cache's size cap and crash repair, and offline operation.

use extreg_tests::gitea::{add_extension, Access, GiteaStandIn};
use extreg_tests::*;
use serde_json::Value;
use std::time::Duration;

fn catalog(sb: &Sandbox) {
    let root = sb.catalog();
    for v in ["1.27.4", "1.28.0", "1.29.0-rc.1"] {
        write_folder_ext(&root, "taskserv", "kubernetes", v, "K8s", &["containers"]);
    }
    for v in ["1.1.0", "1.2.0", "1.3.5", "2.0.0"] {
        write_folder_ext(&root, "provider", "aws", v, "AWS", &[]);
    }
}

fn start(sb: &Sandbox, extra: &str) -> Daemon {
    sb.start_local(extra)
}

fn loaded_dir(sb: &Sandbox) -> std::path::PathBuf {
    // The default load destination, apart from the local backend's root.
    sb.path("data/provisioning/loaded")
}

#[test]
fn resolve_endpoint_follows_constraints() {
    let sb = Sandbox::new();
    catalog(&sb);
    let d = start(&sb, "");
    let resolve =
        |ty: &str, name: &str, q: &str| d.get_json(&format!("/extensions/{ty}/{name}/resolve{q}"));
    let cases = [
        ("?constraint=%5E1.2", "1.3.5"),
        ("?constraint=~1.2.0", "1.2.0"),
        ("?constraint=%3E%3D1.2%2C%20%3C2", "1.3.5"),
        ("?constraint=1.1.0%20-%201.2.0", "1.2.0"),
        ("?constraint=1.1.0-1.3.5", "1.3.5"),
        ("?constraint=1.1.0", "1.1.0"),
        ("?constraint=latest", "2.0.0"),
        ("", "2.0.0"),
    ];
    for (q, want) in cases {
        let (s, v) = resolve("provider", "aws", q);
        assert_eq!((s, v["version"].as_str()), (200, Some(want)), "{q}: {v}");
        assert_eq!(v["name"], "aws");
    }
    let (_, v) = resolve("taskserv", "kubernetes", "");
    assert_eq!(v["version"], "1.28.0");
    let (_, v) = resolve("taskserv", "kubernetes", "?pre=true");
    assert_eq!(v["version"], "1.29.0-rc.1");
    let (_, v) = resolve("taskserv", "kubernetes", "?constraint=1.29.0-rc.1");
    assert_eq!(
        v["version"], "1.29.0-rc.1",
        "a named pre-release needs no flag"
    );
    let (s, v) = resolve("provider", "aws", "?constraint=%5E3");
    assert_eq!(s, 404, "{v}");
    assert_eq!(v["error"], "not_found");
    assert!(
        v["message"].as_str().unwrap().contains("satisfies '^3'"),
        "{v}"
    );
    assert_eq!(v["details"], "available: 2.0.0, 1.3.5, 1.2.0, 1.1.0");
    let (s, v) = resolve("provider", "aws", "?constraint=%3E%3Dbanana");
    assert_eq!(
        (s, v["error"].as_str()),
        (400, Some("invalid_version")),
        "{v}"
    );
    let (s, v) = resolve("provider", "aws", "?pre=maybe");
    assert_eq!(
        (s, v["error"].as_str()),
        (400, Some("invalid_request")),
        "{v}"
    );
    let (s, _) = resolve("provider", "nope", "");
    assert_eq!(s, 404);
}

#[test]
fn load_extracts_atomically_and_is_idempotent() {
    let sb = Sandbox::new();
    catalog(&sb);
    let d = start(&sb, "");
    let nu = Nu::new(&sb);
    let v = nu.json("ext load kubernetes --version '^1.27'");
    let dest = loaded_dir(&sb).join("taskserv/kubernetes/1.28.0");
    assert_eq!(v["version"], "1.28.0");
    assert_eq!(v["path"], dest.display().to_string());
    assert_eq!(
        (v["already_loaded"].as_bool(), v["from_cache"].as_bool()),
        (Some(false), Some(false))
    );
    assert_eq!(v["description"], "K8s");
    assert_eq!(v["tags"], serde_json::json!(["containers"]));
    assert!(v["checksum"].as_str().unwrap().starts_with("sha256:"));
    assert!(dest.join("extension.yaml").is_file() && dest.join("kcl/kubernetes.k").is_file());
    let siblings: Vec<_> = std::fs::read_dir(dest.parent().unwrap())
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(siblings.len(), 1, "no temp folder left beside it");

    let v = nu.json("ext load kubernetes --version '^1.27'");
    assert_eq!(
        v["already_loaded"], true,
        "second load is the extracted copy"
    );
    let fetches = r#"backend_requests_total{backend="local",operation="fetch",outcome="ok"}"#;
    assert_eq!(d.metric(fetches), 1.0);

    std::fs::write(dest.join("local-edit"), "x").unwrap();
    let v = nu.json("ext load kubernetes --version 1.28.0 --force");
    assert_eq!(
        (v["already_loaded"].as_bool(), v["from_cache"].as_bool()),
        (Some(false), Some(false))
    );
    assert_eq!(d.metric(fetches), 2.0, "--force fetches again");
    assert!(!dest.join("local-edit").exists(), "--force re-extracts");

    let v = nu.json("ext load kubernetes --pre | get version");
    assert_eq!(v, "1.29.0-rc.1");
    let v = nu.json("ext list --loaded | get version");
    assert_eq!(v, serde_json::json!(["1.28.0", "1.29.0-rc.1"]));
    let v = nu.json("ext pull aws --version '~1.2' | get version");
    assert_eq!(v, "1.2.0");

    // The loaded set survives a restart (it lives on disk).
    drop(d);
    let _d = start(&sb, "");
    let v = nu.json("ext list --loaded --type taskserv | get version");
    assert_eq!(v, serde_json::json!(["1.28.0", "1.29.0-rc.1"]));
}

#[test]
fn constraint_errors_are_labelled() {
    let sb = Sandbox::new();
    catalog(&sb);
    let _d = start(&sb, "");
    let nu = Nu::new(&sb);
    let out = nu.run("ext load aws --version '>=banana'");
    assert!(!out.ok);
    assert!(
        out.stderr.contains("invalid version constraint"),
        "{}",
        out.stderr
    );
    let out = nu.run("ext load aws --version '^9'");
    assert!(!out.ok);
    assert!(out.stderr.contains("satisfies '^9'"), "{}", out.stderr);
    assert!(
        out.stderr.contains("available: 2.0.0, 1.3.5, 1.2.0, 1.1.0"),
        "{}",
        out.stderr
    );
    assert!(!loaded_dir(&sb).join("provider").exists());
}

#[test]
fn hostile_archives_are_refused_and_leave_nothing() {
    use tar::EntryType as E;
    let sb = Sandbox::new();
    let manifest = |n: &str| manifest("taskserv", n, "1.0.0", "hostile", &[]);
    // (extension name, extra entries: path and, for non-files, kind + link)
    type Extra<'a> = Vec<(String, Option<(E, &'a str)>)>;
    let cases: Vec<(&str, Extra)> = vec![
        ("dotdot", vec![("../../escaped".into(), None)]),
        ("absolute", vec![("/tmp/extregd-escaped".into(), None)]),
        (
            "symlink",
            vec![("up".into(), Some((E::Symlink, "../../../..")))],
        ),
        (
            "hardlink",
            vec![("hl".into(), Some((E::Link, "../../outside")))],
        ),
        ("device", vec![("dev".into(), Some((E::Char, "")))]),
        ("fifo", vec![("pipe".into(), Some((E::Fifo, "")))]),
    ];
    for (name, extra) in &cases {
        let m = manifest(name);
        let mut items = vec![TarItem::File("extension.yaml", m.as_bytes())];
        for (p, kind) in extra {
            items.push(match kind {
                None => TarItem::File(p, b"evil"),
                Some((k, l)) => TarItem::Raw(p, *k, if l.is_empty() { None } else { Some(l) }),
            });
        }
        let dir = sb.catalog().join("taskserv").join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}-1.0.0.tar.gz")), raw_tar_gz(&items)).unwrap();
    }
    let _d = start(&sb, "");
    let nu = Nu::new(&sb);
    for (name, _) in &cases {
        let out = nu.run(&format!("ext load {name} --type taskserv"));
        assert!(!out.ok, "{name} was loaded");
        assert!(
            out.stderr.contains("unsafe archive"),
            "{name}: {}",
            out.stderr
        );
        assert!(
            out.stderr.contains("invalid_archive"),
            "{name}: {}",
            out.stderr
        );
        let parent = loaded_dir(&sb).join("taskserv").join(name);
        let left: Vec<_> = std::fs::read_dir(&parent)
            .map(|r| r.flatten().collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "{name}: left behind {left:?}");
    }
    assert!(!std::path::Path::new("/tmp/extregd-escaped").exists());
    assert!(!sb.path("escaped").exists() && !sb.path("data/escaped").exists());
    let v = nu.json("ext list --loaded");
    assert_eq!(v, serde_json::json!([]));
}

#[test]
fn the_size_cap_evicts_the_least_recently_used() {
    let sb = Sandbox::new();
    // Three extensions of ~60 KB each (incompressible), cap 150 KB.
    for (i, n) in ["alpha", "beta", "gamma"].iter().enumerate() {
        let dir = write_folder_ext(&sb.catalog(), "cluster", n, "1.0.0", n, &[]);
        let noise = noise(60_000, (2463534242 + i) as u64);
        std::fs::write(dir.join("blob"), noise).unwrap();
    }
    let d = start(&sb, "max_artifact_bytes = 150000\n");
    for n in ["alpha", "beta"] {
        assert_eq!(
            d.get(&format!("/extensions/cluster/{n}/1.0.0")).status(),
            200
        );
        std::thread::sleep(Duration::from_millis(1100)); // distinct last_used seconds
    }
    // Touch alpha again: beta is now the least recently used.
    let r = d.get("/extensions/cluster/alpha/1.0.0");
    assert_eq!(r.headers()["x-extregd-cache"], "hit");
    std::thread::sleep(Duration::from_millis(1100));
    // alpha's last use was persisted only if a minute passed; the index in
    // memory knows it now.
    assert_eq!(d.get("/extensions/cluster/gamma/1.0.0").status(), 200);
    let (_, stats) = d.get_json("/cache/stats");
    assert!(
        stats["artifacts"]["bytes"].as_u64().unwrap() <= 150_000,
        "{stats}"
    );
    assert_eq!(stats["artifacts"]["entries"], 2);
    let nu = Nu::new(&sb);
    let v = nu.json("ext cache list | get name | sort");
    assert_eq!(v, serde_json::json!(["alpha", "gamma"]));
}

const ORG: &str = "exts";
const TOKEN: &str = "t0k3n-load-tests";

fn gitea_daemon(sb: &Sandbox, g: &GiteaStandIn, extra: &str) -> Daemon {
    sb.start_gitea(&g.url, ORG, TOKEN, "timeout_seconds = 3\n", extra)
}

#[test]
fn offline_cached_versions_are_listed_resolved_served_and_loaded() {
    let sb = Sandbox::new();
    let mut g = GiteaStandIn::start();
    let tgz = g.with(|w| {
        w.token(TOKEN, Access::Read);
        w.org(ORG);
        add_extension(w, ORG, "taskserv", "redis", &["1.0.0", "1.1.0"], true)
    });
    let mut d = gitea_daemon(&sb, &g, "ttl_seconds = 1\npersist_catalog = false\n");
    let nu = Nu::new(&sb);
    let v = nu.json("ext pull redis --version 1.0.0");
    assert_eq!(v["cached"], false);

    // Gitea goes away and the daemon restarts without any metadata (no
    // persisted catalogue): only the artifact cache is left to answer from.
    // (A running daemon keeps serving its last answers instead: see
    // tests/e2e/warm.rs.)
    g.stop();
    d.stop();
    let d = gitea_daemon(&sb, &g, "ttl_seconds = 1\npersist_catalog = false\n");
    let (s, h) = d.get_json("/health");
    assert_eq!((s, h["status"].as_str()), (200, Some("degraded")));

    let (s, list) = d.get_json("/extensions");
    assert_eq!(s, 200, "{list}");
    assert_eq!(list[0]["name"], "redis");
    assert_eq!(
        list[0]["version"], "1.0.0",
        "only the cached version is known offline"
    );
    assert_eq!(list[0]["stale"], true);
    let (s, vs) = d.get_json("/extensions/taskserv/redis/versions");
    assert_eq!(s, 200, "{vs}");
    assert_eq!(vs.as_array().unwrap().len(), 1);
    assert_eq!(vs[0]["stale"], true);
    let (s, r) = d.get_json("/extensions/taskserv/redis/resolve?constraint=%5E1");
    assert_eq!((s, r["version"].as_str()), (200, Some("1.0.0")), "{r}");
    let resp = d.get("/extensions/taskserv/redis/1.0.0");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-extregd-cache"], "hit");
    assert_eq!(&resp.bytes().unwrap()[..], &tgz["1.0.0"][..]);

    let v = nu.json("ext load redis");
    assert_eq!(v["version"], "1.0.0");
    assert_eq!(v["from_cache"], true, "no backend at all");
    assert!(loaded_dir(&sb)
        .join("taskserv/redis/1.0.0/extension.yaml")
        .is_file());
    let v = nu.json("ext versions redis | get stale");
    assert_eq!(v, serde_json::json!([true]));
    // What was never cached cannot be had offline, and says why.
    let (s, e) = d.get_json("/extensions/taskserv/redis/1.1.0");
    assert_eq!(s, 404, "{e}");
}

#[test]
fn a_daemon_killed_mid_download_leaves_no_entry() {
    let sb = Sandbox::new();
    let g = GiteaStandIn::start();
    let big = noise(400_000, 88172645463325252);
    let tgz = g.with(|w| {
        w.token(TOKEN, Access::Read);
        w.org(ORG);
        let files = vec![
            (
                "extension.yaml".to_string(),
                manifest("cluster", "big", "1.0.0", "big", &[]).into_bytes(),
            ),
            ("payload".to_string(), big.clone()),
        ];
        let tgz = tar_gz(&files);
        w.repo(ORG, "big_cluster")
            .release("1.0.0")
            .asset("big_cluster.tar.gz", &tgz);
        tgz
    });
    g.set_stall(Duration::from_secs(30));
    let mut d = gitea_daemon(&sb, &g, "");
    let url = d.api("/extensions/cluster/big/1.0.0");
    std::thread::spawn(move || {
        let _ = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap()
            .get(url)
            .send()
            .and_then(|r| r.bytes());
    });
    // Half the bytes arrive, then the stand-in stalls: a partial temp file.
    let tmp = sb.path("artifacts/tmp");
    let partial = wait_until(Duration::from_secs(20), || {
        std::fs::read_dir(&tmp)
            .map(|r| {
                r.flatten()
                    .any(|e| e.metadata().map(|m| m.len() > 0).unwrap_or(false))
            })
            .unwrap_or(false)
    });
    assert!(partial, "no partial download appeared");
    let pid = d.child.id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-9", &pid])
        .status()
        .unwrap()
        .success());
    let _ = d.child.wait();
    assert!(
        std::fs::read_dir(&tmp).unwrap().next().is_some(),
        "the partial file is there"
    );

    g.set_stall(Duration::ZERO);
    let d = gitea_daemon(&sb, &g, "");
    assert!(
        std::fs::read_dir(&tmp).unwrap().next().is_none(),
        "start-up removed the partial file"
    );
    let (_, stats) = d.get_json("/cache/stats");
    assert_eq!(stats["artifacts"]["entries"], 0);
    let r = d.get("/extensions/cluster/big/1.0.0");
    assert_eq!(r.headers()["x-extregd-cache"], "miss");
    assert_eq!(&r.bytes().unwrap()[..], &tgz[..]);
    let v: Value = d.get_json("/cache/stats").1;
    assert_eq!(v["artifacts"]["entries"], 1);
}

#[test]
fn large_downloads_stream_while_they_are_written_and_are_verified() {
    use std::io::Read;
    let sb = Sandbox::new();
    let g = GiteaStandIn::start();
    let (good, bad) = g.with(|w| {
        w.token(TOKEN, Access::Read);
        w.org(ORG);
        let mk = |name: &str, seed: u64| {
            tar_gz(&[
                (
                    "extension.yaml".to_string(),
                    manifest("cluster", name, "1.0.0", name, &[]).into_bytes(),
                ),
                ("payload".to_string(), noise(6 << 20, seed)),
            ])
        };
        let good = mk("huge", 1);
        w.repo(ORG, "huge_cluster")
            .release("1.0.0")
            .asset("huge_cluster.tar.gz", &good)
            .sha256sums();
        let bad = mk("forged", 2);
        w.repo(ORG, "forged_cluster")
            .release("1.0.0")
            .asset("forged_cluster.tar.gz", &bad)
            .sha256sums();
        (good, bad)
    });
    assert!(good.len() > 5 << 20, "over the streaming threshold");
    g.tamper(ORG, "forged_cluster", "1.0.0", "forged_cluster.tar.gz");
    // Half the bytes, then a pause shorter than the 3 s read timeout.
    g.set_stall(Duration::from_millis(1500));
    let d = gitea_daemon(&sb, &g, "");

    let mut r = d.get("/extensions/cluster/huge/1.0.0");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-length"], good.len().to_string());
    assert_eq!(r.headers()["etag"], format!("\"{}\"", sha256_tag(&good)));
    let mut first = vec![0u8; 1 << 20];
    r.read_exact(&mut first).unwrap();
    // Bytes reached the client while the download is still in progress.
    let (_, stats) = d.get_json("/cache/stats");
    assert_eq!(
        stats["artifacts"]["entries"], 0,
        "not finished, not in the cache yet"
    );
    // A second client joins the same download.
    let second = std::thread::spawn({
        let url = d.api("/extensions/cluster/huge/1.0.0");
        move || {
            reqwest::blocking::get(url)
                .unwrap()
                .bytes()
                .unwrap()
                .to_vec()
        }
    });
    let mut rest = Vec::new();
    r.read_to_end(&mut rest).unwrap();
    first.extend(rest);
    assert_eq!(first, good);
    assert_eq!(second.join().unwrap(), good);
    let downloads = g.with(|w| {
        w.orgs[ORG].repos["huge_cluster"].releases[0]
            .assets
            .iter()
            .find(|a| a.name == "huge_cluster.tar.gz")
            .unwrap()
            .download_count
    });
    assert_eq!(
        downloads, 1,
        "one upstream fetch of the tarball for both clients"
    );
    let (_, stats) = d.get_json("/cache/stats");
    assert_eq!(stats["artifacts"]["entries"], 1);

    // A tampered large artifact never arrives whole, and is not cached.
    let r = d.get("/extensions/cluster/forged/1.0.0");
    let got = if r.status() == 200 {
        r.bytes().map(|b| b.to_vec()).ok()
    } else {
        None
    };
    assert!(
        got.is_none_or(|b| b.len() < bad.len()),
        "the full body of a bad artifact was delivered"
    );
    let (_, stats) = d.get_json("/cache/stats");
    assert_eq!(
        stats["artifacts"]["entries"], 1,
        "the forged one was not cached"
    );
    assert!(std::fs::read_dir(sb.path("artifacts/tmp"))
        .unwrap()
        .next()
        .is_none());
    // Afterwards it answers with a clean error (the digest is known up front).
    g.set_stall(Duration::ZERO);
    let r = d.get("/extensions/cluster/forged/1.0.0");
    let status = r.status().as_u16();
    let body = r.bytes().map(|b| b.to_vec()).unwrap_or_default();
    assert!(status != 200 || body.len() < bad.len(), "status {status}");
}

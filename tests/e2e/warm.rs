//! Always warm, always fresh (issue 13), end to end through the real
//! `extregd`: stale-while-revalidate against the Gitea stand-in slowed or
//! failing, the persisted catalogue across restarts, and push invalidation
//! from the real `docker-registry`'s notifications and from signed Gitea
//! webhooks.

use extreg_tests::gitea::{add_extension, Access, GiteaStandIn};
use extreg_tests::registry::{Options, Registry};
use extreg_tests::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const ORG: &str = "warm-org";
const TOKEN: &str = "warm-read-token-51d0";
const HOOK_SECRET: &str = "hook-s3cret-8a7b6c";

fn standin() -> GiteaStandIn {
    let g = GiteaStandIn::start();
    g.with(|w| {
        w.token(TOKEN, Access::Read);
        w.org(ORG);
        add_extension(w, ORG, "taskserv", "redis", &["v1.0.0"], true);
        add_extension(w, ORG, "provider", "aws", &["v2.0.0"], true);
    });
    g
}

fn gitea_config(sb: &Sandbox, g: &GiteaStandIn, extra: &str) -> std::path::PathBuf {
    sb.write_config(&sb.gitea_config(&g.url, ORG, TOKEN, "timeout_seconds = 10\n", extra))
}

fn start(sb: &Sandbox, cfg: &std::path::Path) -> Daemon {
    Daemon::start(sb, &["--config", cfg.to_str().unwrap()], &[])
}

/// `name -> (version, stale)` of a list answer.
fn listed(v: &Value) -> Vec<(String, String, bool)> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_string(),
                e["version"].as_str().unwrap().to_string(),
                e["stale"].as_bool().unwrap(),
            )
        })
        .collect()
}

fn version_of(d: &Daemon, name: &str) -> Option<(String, bool)> {
    let (s, v) = d.get_json("/extensions");
    assert_eq!(s, 200, "{v}");
    listed(&v)
        .into_iter()
        .find(|(n, _, _)| n == name)
        .map(|(_, v, s)| (v, s))
}

fn catalog_file(sb: &Sandbox) -> std::path::PathBuf {
    sb.path("cache/provisioning/extregd/catalog.json")
}

#[test]
fn a_read_after_the_ttl_answers_from_cache_while_one_refresh_runs() {
    let g = standin();
    let sb = Sandbox::new();
    let d = start(
        &sb,
        &gitea_config(&sb, &g, "ttl_seconds = 1\nstale_after_seconds = 60\n"),
    );
    assert_eq!(version_of(&d, "redis"), Some(("1.0.0".into(), false)));
    let (s, _) = d.get_json("/extensions/taskserv/redis/versions");
    assert_eq!(s, 200);

    // A new release, a slow backend, and the TTL passes.
    g.with(|w| {
        add_extension(w, ORG, "taskserv", "redis", &["v1.1.0"], true);
    });
    g.set_latency(Duration::from_millis(1500));
    std::thread::sleep(Duration::from_millis(1100));
    g.reset_counts();

    let mut slowest = Duration::ZERO;
    for _ in 0..5 {
        let t = Instant::now();
        let r = d.get("/extensions");
        slowest = slowest.max(t.elapsed());
        assert_eq!(r.status(), 200);
        assert!(r.headers().contains_key("age"), "answers carry Age");
        let v: Value = r.json().unwrap();
        assert!(
            listed(&v).contains(&("redis".into(), "1.0.0".into(), false)),
            "the cached answer, not yet stale: {v}"
        );
        let t = Instant::now();
        let (s, vs) = d.get_json("/extensions/taskserv/redis/versions");
        slowest = slowest.max(t.elapsed());
        assert_eq!((s, vs.as_array().unwrap().len()), (200, 1), "{vs}");
    }
    println!("reads after the TTL, backend at 1.5 s per request: slowest {slowest:?}");
    assert!(
        slowest < Duration::from_millis(500),
        "no reader waits for the refetch: {slowest:?}"
    );
    // The background refreshes finish and the new release shows: one
    // refresh of the listing for all those readers (the next is due a TTL
    // after it landed).
    assert!(
        wait_until(Duration::from_secs(20), || version_of(&d, "redis")
            == Some(("1.1.0".into(), false))),
        "the refresh never landed"
    );
    let counts = g.counts();
    assert_eq!(
        counts.get("GET /api/v1/orgs/{org}/repos"),
        Some(&1),
        "{counts:?}"
    );
    assert!(wait_until(Duration::from_secs(5), || d
        .metric(r#"cache_refreshes_total{cache="list",outcome="ok"}"#)
        == 1.0));
    assert!(wait_until(Duration::from_secs(20), || {
        let (_, vs) = d.get_json("/extensions/taskserv/redis/versions");
        vs.as_array().unwrap().len() == 2
    }));
    assert!(d.metric(r#"cache_refreshes_total{cache="versions",outcome="ok"}"#) >= 1.0);
}

#[test]
fn a_failing_refresh_keeps_the_answer_then_marks_it_stale_and_reports_it() {
    let g = standin();
    let sb = Sandbox::new();
    let d = start(
        &sb,
        &gitea_config(&sb, &g, "ttl_seconds = 1\nstale_after_seconds = 3\n"),
    );
    assert_eq!(version_of(&d, "redis"), Some(("1.0.0".into(), false)));
    let fetched = Instant::now();
    g.set_failing(true);
    std::thread::sleep(Duration::from_millis(1100));
    // Past the TTL, before the bound: the old answer, not stale.
    assert_eq!(version_of(&d, "redis"), Some(("1.0.0".into(), false)));
    assert!(
        wait_until(Duration::from_secs(10), || d
            .metric(r#"backend_refresh_failing{backend="gitea"}"#)
            == 1.0),
        "the failed refresh shows in the metrics"
    );
    let (_, h) = d.get_json("/health");
    assert_eq!(h["status"], "degraded");
    let err = h["backends"]["gitea"]["error"].as_str().unwrap_or_default();
    assert!(
        err.contains("last metadata refresh failed") && err.contains("stale after 3 s"),
        "{h}"
    );
    assert!(!err.contains(TOKEN));
    assert!(d.metric(r#"cache_refreshes_total{cache="list",outcome="error"}"#) >= 1.0);
    // Past the bound: still answered, marked stale.
    let wait = Duration::from_millis(3200).saturating_sub(fetched.elapsed());
    std::thread::sleep(wait);
    let (s, v) = d.get_json("/extensions");
    assert_eq!(s, 200);
    assert!(listed(&v).iter().all(|(_, _, stale)| *stale), "{v}");
    assert!(d.metric(r#"cache_stale_served_total{cache="list"}"#) >= 1.0);
    // The backend is back: the next refresh clears it all.
    g.set_failing(false);
    assert!(
        wait_until(Duration::from_secs(10), || version_of(&d, "redis")
            == Some(("1.0.0".into(), false))),
        "a successful refresh clears stale"
    );
    assert!(wait_until(Duration::from_secs(10), || d
        .metric(r#"backend_refresh_failing{backend="gitea"}"#)
        == 0.0));
}

#[test]
fn a_restart_answers_from_the_persisted_catalogue_while_it_refreshes() {
    let g = standin();
    let sb = Sandbox::new();
    let cfg = gitea_config(&sb, &g, "");
    let mut d = start(&sb, &cfg);
    assert_eq!(version_of(&d, "redis"), Some(("1.0.0".into(), false)));
    let (s, _) = d.get_json("/extensions/taskserv/redis/versions");
    assert_eq!(s, 200);
    let file = catalog_file(&sb);
    assert!(
        wait_until(Duration::from_secs(5), || {
            std::fs::read_to_string(&file)
                .ok()
                .and_then(|t| serde_json::from_str::<Value>(&t).ok())
                .is_some_and(|v| {
                    v["format"] == "extregd-catalog"
                        && v["version"] == 1
                        && v["versions"].as_array().is_some_and(|a| !a.is_empty())
                })
        }),
        "the catalogue is written"
    );
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(!std::fs::read_to_string(&file).unwrap().contains(TOKEN));
    }
    d.stop();

    // A slow backend: the first answers come from the file at once.
    g.set_latency(Duration::from_millis(2000));
    g.reset_counts();
    let t0 = Instant::now();
    let d = start(&sb, &cfg);
    let t = Instant::now();
    let r = d.get("/extensions");
    let first = t.elapsed();
    assert_eq!(r.status(), 200);
    let age: u64 = r.headers()["age"].to_str().unwrap().parse().unwrap();
    let v: Value = r.json().unwrap();
    let t = Instant::now();
    let (s, vs) = d.get_json("/extensions/taskserv/redis/versions");
    let first_versions = t.elapsed();
    println!(
        "after a restart, backend at 2 s per request: first list {first:?}, first versions {first_versions:?} (start to answer {:?}), Age {age}",
        t0.elapsed()
    );
    assert!(first < Duration::from_millis(1000), "{first:?}");
    assert!(first_versions < Duration::from_millis(1000));
    assert!(
        listed(&v).contains(&("redis".into(), "1.0.0".into(), true)),
        "from the file, marked stale until confirmed: {v}"
    );
    assert_eq!(s, 200);
    assert_eq!(vs[0]["stale"], true);
    assert!(
        vs[0]["download_url"].as_str().unwrap().starts_with(&d.url),
        "download URLs point at this daemon: {vs}"
    );
    // The refresh started at boot confirms it.
    assert!(
        wait_until(Duration::from_secs(20), || version_of(&d, "redis")
            == Some(("1.0.0".into(), false))),
        "the refresh at start confirms the catalogue"
    );
}

#[test]
fn a_corrupt_or_old_persisted_catalogue_is_ignored() {
    let g = standin();
    for (what, text) in [
        (
            "corrupt",
            "{\"format\": \"extregd-catalog\", \"vers".to_string(),
        ),
        (
            "old",
            json!({"format": "extregd-catalog", "version": 0, "sources": "whatever"}).to_string(),
        ),
    ] {
        let sb = Sandbox::new();
        let file = catalog_file(&sb);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, &text).unwrap();
        let d = start(&sb, &gitea_config(&sb, &g, ""));
        assert_eq!(
            version_of(&d, "redis"),
            Some(("1.0.0".into(), false)),
            "{what}"
        );
        let log = d.stderr();
        assert!(
            log.contains("ignoring the persisted catalogue"),
            "{what}: {log}"
        );
        if what == "old" {
            assert!(log.contains("version 0"), "{log}");
        }
        // And it is replaced by a good one.
        assert!(
            wait_until(Duration::from_secs(5), || std::fs::read_to_string(&file)
                .ok()
                .and_then(|t| serde_json::from_str::<Value>(&t).ok())
                .is_some_and(|v| v["version"] == 1)),
            "{what}"
        );
    }
}

/// HMAC-SHA256, written out here (RFC 2104) so the test does not share
/// the daemon's implementation.
fn hmac_sha256(key: &[u8], msg: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(k.map(|b| b ^ 0x36));
    inner.update(msg);
    let mut outer = Sha256::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    hex::encode(outer.finalize())
}

/// A Gitea `release` webhook body (Gitea's `ReleasePayload`).
fn release_payload(repo: &str, tag: &str) -> String {
    json!({
        "action": "published",
        "release": {"id": 77, "tag_name": tag, "name": tag, "draft": false, "prerelease": false,
                    "author": {"id": 3, "login": "release-bot"}},
        "repository": {"id": 12, "name": repo, "full_name": format!("{ORG}/{repo}"),
                       "owner": {"id": 2, "login": ORG}, "private": false},
        "sender": {"id": 3, "login": "release-bot"}
    })
    .to_string()
}

#[test]
fn a_signed_gitea_webhook_refreshes_one_extension_and_a_wrongly_signed_one_is_refused() {
    let g = standin();
    let sb = Sandbox::new();
    let secret = sb.secret("hook-secret", HOOK_SECRET);
    let d = start(
        &sb,
        &gitea_config(
            &sb,
            &g,
            &format!(
                "ttl_seconds = 3600\n[webhooks]\ngitea_secret_path = \"{}\"\n",
                secret.display()
            ),
        ),
    );
    assert_eq!(version_of(&d, "redis"), Some(("1.0.0".into(), false)));
    let (_, before_versions) = d.get_json("/extensions/taskserv/redis/versions");
    g.with(|w| {
        add_extension(w, ORG, "taskserv", "redis", &["v1.1.0"], true);
    });
    g.reset_counts();
    let hook = d.api("/hooks/gitea");
    let body = release_payload("redis_taskserv", "v1.1.0");
    let post = |sig: Option<&str>, body: &str| {
        let mut r = d
            .client
            .post(&hook)
            .header("content-type", "application/json")
            .header("x-gitea-event", "release")
            .header("x-gitea-event-type", "release")
            .body(body.to_string());
        if let Some(s) = sig {
            r = r.header("x-gitea-signature", s);
        }
        r.send().unwrap()
    };

    // Wrongly signed, unsigned, signed with another secret: 401, nothing changes.
    for sig in [
        Some("00".repeat(32)),
        None,
        Some(hmac_sha256(b"another-secret", body.as_bytes())),
        Some(hmac_sha256(HOOK_SECRET.as_bytes(), b"another body")),
    ] {
        let r = post(sig.as_deref(), &body);
        assert_eq!(r.status(), 401);
        let e: Value = r.json().unwrap();
        assert_eq!(e["error"], "auth_error");
        assert!(!e.to_string().contains(HOOK_SECRET));
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(g.total_requests(), 0, "a refused call asks nothing");
    assert_eq!(version_of(&d, "redis"), Some(("1.0.0".into(), false)));
    assert_eq!(
        d.get_json("/extensions/taskserv/redis/versions").1,
        before_versions
    );
    assert_eq!(
        d.metric(r#"webhook_events_total{outcome="refused",sender="gitea"}"#),
        4.0
    );

    // Signed: refreshed within a second, and only that extension.
    let t = Instant::now();
    let r = post(
        Some(&hmac_sha256(HOOK_SECRET.as_bytes(), body.as_bytes())),
        &body,
    );
    assert_eq!(r.status(), 202);
    let v: Value = r.json().unwrap();
    assert_eq!(v["refreshing"], json!(["taskserv/redis"]));
    assert!(wait_until(Duration::from_secs(5), || version_of(
        &d, "redis"
    ) == Some((
        "1.1.0".into(),
        false
    ))));
    let took = t.elapsed();
    println!("signed gitea webhook to a refreshed listing: {took:?}");
    assert!(took < Duration::from_secs(1), "{took:?}");
    let (_, vs) = d.get_json("/extensions/taskserv/redis/versions");
    assert_eq!(vs.as_array().unwrap().len(), 2, "{vs}");
    let counts = g.counts();
    assert_eq!(
        counts.get("GET /api/v1/orgs/{org}/repos"),
        None,
        "{counts:?}"
    );
    assert_eq!(
        counts.get("GET /api/v1/repos/{owner}/{repo}/releases"),
        Some(&1),
        "one extension's releases, nothing else: {counts:?}"
    );
    // Events that are not about extensions are taken and ignored.
    let other = json!({"ref": "refs/heads/main", "repository": {"name": "website", "owner": {"login": ORG}}}).to_string();
    let r = d
        .client
        .post(&hook)
        .header("x-gitea-event", "push")
        .header(
            "x-gitea-signature",
            hmac_sha256(HOOK_SECRET.as_bytes(), other.as_bytes()),
        )
        .body(other)
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    // The registry endpoint is off without its secret; bodies are bounded.
    let r = d
        .client
        .post(d.api("/hooks/registry"))
        .body("{}")
        .send()
        .unwrap();
    assert_eq!(r.status(), 404);
    // Reading stays GET-only everywhere else.
    let r = d.client.post(d.api("/extensions")).send().unwrap();
    assert_eq!(r.status(), 405);
    // Last: the server closes this connection after refusing the body.
    let big = "x".repeat(2 << 20);
    let r = post(
        Some(&hmac_sha256(HOOK_SECRET.as_bytes(), big.as_bytes())),
        &big,
    );
    assert_eq!(r.status(), 413);
}

#[test]
fn a_tag_pushed_with_registry_notifications_on_appears_without_waiting_for_the_ttl() {
    const NS: &str = "warm-ns";
    let sb = Sandbox::new();
    let secret = sb.secret("registry-hook", HOOK_SECRET);
    let port = registry::free_port();
    let cfg = sb.write_config(&format!(
        "[oci]\nregistry = \"127.0.0.1:{port}\"\nnamespace = \"{NS}\"\ntimeout_seconds = 5\n\
         [cache]\nartifact_dir = \"{}\"\nttl_seconds = 3600\n\
         [webhooks]\nregistry_secret_path = \"{}\"\n",
        sb.path("artifacts").display(),
        secret.display()
    ));
    let d = start(&sb, &cfg);
    let reg = Registry::start(Options::notifying(
        port,
        &d.api("/hooks/registry"),
        HOOK_SECRET,
    ));
    let repo = format!("{NS}/redis-taskserv");
    let layer = |v: &str| {
        tar_gz(&[(
            "extension.yaml".to_string(),
            manifest("taskserv", "redis", v, "redis from oci", &[]).into_bytes(),
        )])
    };
    reg.push_artifact(&repo, &["1.0.0"], &layer("1.0.0"), &[]);
    assert!(wait_until(Duration::from_secs(10), || version_of(
        &d, "redis"
    ) == Some((
        "1.0.0".into(),
        false
    ))));
    let (s, vs) = d.get_json("/extensions/taskserv/redis/versions");
    assert_eq!((s, vs.as_array().unwrap().len()), (200, 1));

    let t = Instant::now();
    reg.push_artifact(&repo, &["1.1.0"], &layer("1.1.0"), &[]);
    let pushed = t.elapsed();
    assert!(
        wait_until(Duration::from_secs(5), || version_of(&d, "redis")
            == Some(("1.1.0".into(), false))),
        "the pushed tag never appeared (ttl is an hour); registry log:\n{}",
        reg.log()
    );
    let took = t.elapsed();
    println!("registry push ({pushed:?}) to a refreshed listing: {took:?}");
    assert!(took < pushed + Duration::from_secs(1), "{took:?}");
    let (_, vs) = d.get_json("/extensions/taskserv/redis/versions");
    assert_eq!(vs.as_array().unwrap().len(), 2, "{vs}");
    assert!(d.metric(r#"webhook_events_total{outcome="refreshed",sender="registry"}"#) >= 1.0);

    // A call without the secret is refused and changes nothing.
    let env =
        json!({"events": [{"action": "push", "target": {"repository": repo, "tag": "9.9.9"}}]})
            .to_string();
    for auth in ["Bearer wrong", "", "Basic d3Jvbmc="] {
        let mut r = d.client.post(d.api("/hooks/registry")).body(env.clone());
        if !auth.is_empty() {
            r = r.header("authorization", auth);
        }
        assert_eq!(r.send().unwrap().status(), 401);
    }
}

//! The `/api/v1` contract, driven over HTTP against the real `extregd`
//! binary serving a local catalogue built by each test.

use extreg_tests::*;
use serde_json::Value;
use std::path::Path;

/// A catalogue with every form and type, and names chosen for ranking.
fn standard_catalog(root: &Path) -> Vec<u8> {
    write_folder_ext(
        root,
        "provider",
        "aws",
        "1.1.0",
        "AWS provider",
        &["cloud", "aws"],
    );
    write_folder_ext(
        root,
        "provider",
        "aws",
        "1.2.0",
        "AWS provider",
        &["cloud", "aws"],
    );
    let upcloud = write_tarball_ext(root, "provider", "upcloud", "2.1.3", "UpCloud provider");
    for v in ["1.27.4", "1.28.0", "1.29.0-rc.1"] {
        write_folder_ext(
            root,
            "taskserv",
            "kubernetes",
            v,
            "Container orchestration",
            &["containers"],
        );
    }
    write_folder_ext(
        root,
        "taskserv",
        "kubernetes-dashboard",
        "2.7.0",
        "Web UI",
        &["ui"],
    );
    write_folder_ext(
        root,
        "taskserv",
        "k3s",
        "1.27.5",
        "Lightweight Kubernetes distribution",
        &["edge"],
    );
    write_folder_ext(
        root,
        "cluster",
        "buildkit",
        "0.12.0",
        "Image builds",
        &["Kubernetes", "build"],
    );
    upcloud
}

fn start_with(sb: &Sandbox, extra_toml: &str) -> Daemon {
    sb.start_local(extra_toml)
}

fn start() -> (Sandbox, Daemon, Vec<u8>) {
    let sb = Sandbox::new();
    let upcloud = standard_catalog(&sb.catalog());
    let d = start_with(&sb, "");
    (sb, d, upcloud)
}

fn names(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect()
}

fn assert_error(d: &Daemon, path: &str, status: u16, code: &str) -> Value {
    let (s, text) = d.raw_get(path);
    let body: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("GET {path}: body is not JSON ({e}): {text}"));
    assert_eq!(s, status, "GET {path}: {body}");
    assert_eq!(body["error"], code, "GET {path}: {body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "GET {path}: message missing: {body}"
    );
    body
}

#[test]
fn list_returns_every_extension_with_seed_fields() {
    let (_sb, d, _) = start();
    let r = d.get("/extensions");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    assert_eq!(r.headers()["x-total-count"], "6");
    let v: Value = r.json().unwrap();
    assert_eq!(
        names(&v),
        [
            "aws",
            "upcloud",
            "k3s",
            "kubernetes",
            "kubernetes-dashboard",
            "buildkit"
        ]
    );
    let k = v
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "kubernetes")
        .unwrap();
    // Newest stable, not the release candidate.
    assert_eq!(k["version"], "1.28.0");
    assert_eq!(k["type"], "taskserv");
    assert_eq!(k["source"], "local");
    assert_eq!(k["description"], "Container orchestration");
    assert_eq!(k["author"], "tests");
    assert_eq!(k["tags"], serde_json::json!(["containers"]));
    assert_eq!(k["prerelease"], false);
    assert!(k["checksum"].as_str().unwrap().starts_with("sha256:"));
    assert!(k["size"].as_u64().unwrap() > 0);
    assert!(k["published_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(
        k["download_url"],
        format!("{}/api/v1/extensions/taskserv/kubernetes/1.28.0", d.url)
    );
}

#[test]
fn list_filters_and_pages() {
    let (_sb, d, _) = start();
    let (_, v) = d.get_json("/extensions?type=provider");
    assert_eq!(names(&v), ["aws", "upcloud"]);
    let (_, v) = d.get_json("/extensions?source=local&type=cluster");
    assert_eq!(names(&v), ["buildkit"]);
    let (_, v) = d.get_json("/extensions?source=oci");
    assert_eq!(v, serde_json::json!([]));
    let r = d.get("/extensions?limit=2&offset=2");
    assert_eq!(r.headers()["x-total-count"], "6");
    assert_eq!(names(&r.json().unwrap()), ["k3s", "kubernetes"]);
    let (_, v) = d.get_json("/extensions?limit=2&offset=6");
    assert_eq!(v, serde_json::json!([]));
    let (s, v) = d.get_json("/extensions?limit=1000");
    assert_eq!((s, v.as_array().unwrap().len()), (200, 6));
}

#[test]
fn get_returns_the_newest_stable_version() {
    let (_sb, d, _) = start();
    let (s, v) = d.get_json("/extensions/provider/aws");
    assert_eq!(s, 200);
    assert_eq!(v["name"], "aws");
    assert_eq!(v["version"], "1.2.0");
    let (_, v) = d.get_json("/extensions/taskserv/kubernetes");
    assert_eq!(v["version"], "1.28.0");
    let body = assert_error(&d, "/extensions/provider/nonexistent", 404, "not_found");
    assert_eq!(body["message"], "Extension provider/nonexistent not found");
    // Right name, wrong type.
    assert_error(&d, "/extensions/cluster/aws", 404, "not_found");
}

#[test]
fn versions_are_newest_first_with_prereleases_marked() {
    let (_sb, d, _) = start();
    let r = d.get("/extensions/taskserv/kubernetes/versions");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-total-count"], "3");
    let v: Value = r.json().unwrap();
    let vs: Vec<(&str, bool)> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["version"].as_str().unwrap(),
                e["prerelease"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        vs,
        [("1.29.0-rc.1", true), ("1.28.0", false), ("1.27.4", false)]
    );
    for e in v.as_array().unwrap() {
        assert_eq!(e["source"], "local");
        assert!(e["checksum"].as_str().unwrap().starts_with("sha256:"));
        assert!(e["download_url"]
            .as_str()
            .unwrap()
            .ends_with(e["version"].as_str().unwrap()));
    }
    assert_error(&d, "/extensions/taskserv/nope/versions", 404, "not_found");
}

#[test]
fn download_streams_verified_bytes_with_http_semantics() {
    let (sb, d, upcloud) = start();
    // Tarball form: the file's own bytes.
    let r = d.get("/extensions/provider/upcloud/2.1.3");
    assert_eq!(r.status(), 200);
    let h = r.headers().clone();
    let body = r.bytes().unwrap();
    assert_eq!(&body[..], &upcloud[..]);
    assert_eq!(h["content-type"], "application/octet-stream");
    assert_eq!(h["content-length"], upcloud.len().to_string());
    assert_eq!(
        h["content-disposition"],
        "attachment; filename=\"upcloud-2.1.3.tar.gz\""
    );
    assert_eq!(h["etag"], format!("\"{}\"", sha256_tag(&upcloud)));
    assert_eq!(h["accept-ranges"], "bytes");

    // Folder form: a tar.gz whose digest is the listed checksum and ETag.
    let (_, rec) = d.get_json("/extensions/provider/aws");
    let r = d.get("/extensions/provider/aws/1.2.0");
    let etag = r.headers()["etag"].to_str().unwrap().to_string();
    let bytes = r.bytes().unwrap();
    assert_eq!(rec["checksum"], sha256_tag(&bytes));
    assert_eq!(etag, format!("\"{}\"", sha256_tag(&bytes)));
    assert_eq!(rec["size"], bytes.len());
    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(&bytes[..]));
    let entries: Vec<String> = ar
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    assert!(
        entries.contains(&"extension.yaml".to_string()),
        "{entries:?}"
    );

    // If-None-Match -> 304 without a body; a different tag -> 200.
    let r = d
        .client
        .get(d.api("/extensions/provider/aws/1.2.0"))
        .header("If-None-Match", &etag)
        .send()
        .unwrap();
    assert_eq!(r.status(), 304);
    assert_eq!(r.headers()["etag"], etag.as_str());
    assert!(r.bytes().unwrap().is_empty());
    let r = d
        .client
        .get(d.api("/extensions/provider/aws/1.2.0"))
        .header("If-None-Match", "\"sha256:0000\"")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);

    // Range: one slice, then the tail, then one that does not fit.
    let r = d
        .client
        .get(d.api("/extensions/provider/upcloud/2.1.3"))
        .header("Range", "bytes=10-19")
        .send()
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(
        r.headers()["content-range"],
        format!("bytes 10-19/{}", upcloud.len())
    );
    assert_eq!(r.headers()["content-length"], "10");
    assert_eq!(&r.bytes().unwrap()[..], &upcloud[10..20]);
    let r = d
        .client
        .get(d.api("/extensions/provider/upcloud/2.1.3"))
        .header("Range", "bytes=-5")
        .send()
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(&r.bytes().unwrap()[..], &upcloud[upcloud.len() - 5..]);
    let r = d
        .client
        .get(d.api("/extensions/provider/upcloud/2.1.3"))
        .header("Range", "bytes=999999-")
        .send()
        .unwrap();
    assert_eq!(r.status(), 416);
    assert_eq!(
        r.headers()["content-range"],
        format!("bytes */{}", upcloud.len())
    );
    let v: Value = r.json().unwrap();
    assert_eq!(v["error"], "range_not_satisfiable");

    assert_error(&d, "/extensions/provider/aws/9.9.9", 404, "not_found");
    assert_error(&d, "/extensions/provider/ghost/1.0.0", 404, "not_found");
    drop(sb);
}

#[test]
fn folder_downloads_are_reproducible_across_daemons() {
    let (sb, d, _) = start();
    let first = d.get("/extensions/taskserv/k3s/1.27.5").bytes().unwrap();
    drop(d);
    // A new daemon with an empty artifact cache packs the folder again.
    std::fs::remove_dir_all(sb.path("artifacts")).unwrap();
    let d = start_with(&sb, "");
    let r = d.get("/extensions/taskserv/k3s/1.27.5");
    assert_eq!(r.headers()["x-extregd-cache"], "miss");
    assert_eq!(r.bytes().unwrap(), first);
}

#[test]
fn search_is_case_insensitive_and_ranks_exact_names_first() {
    let (_sb, d, _) = start();
    let r = d.get("/extensions/search?q=KUBERNETES");
    assert_eq!(r.status(), 200);
    let v: Value = r.json().unwrap();
    // exact name, name prefix, then description/tag matches by type, name.
    assert_eq!(
        names(&v),
        ["kubernetes", "kubernetes-dashboard", "k3s", "buildkit"]
    );
    let (_, v) = d.get_json("/extensions/search?q=kubernetes&type=taskserv");
    assert_eq!(names(&v), ["kubernetes", "kubernetes-dashboard", "k3s"]);
    let (_, v) = d.get_json("/extensions/search?q=EDGE");
    assert_eq!(names(&v), ["k3s"], "tags are searched");
    let r = d.get("/extensions/search?q=kubernetes&limit=1");
    assert_eq!(r.headers()["x-total-count"], "4");
    assert_eq!(names(&r.json().unwrap()), ["kubernetes"]);
    let (_, v) = d.get_json("/extensions/search?q=zzz");
    assert_eq!(v, serde_json::json!([]));
    assert_error(&d, "/extensions/search", 400, "invalid_request");
    assert_error(&d, "/extensions/search?q=", 400, "invalid_request");
    assert_error(
        &d,
        "/extensions/search?q=a&limit=101",
        400,
        "invalid_request",
    );
    assert_error(&d, "/extensions/search?q=a&limit=0", 400, "invalid_request");
    assert_error(
        &d,
        "/extensions/search?q=a&type=widget",
        400,
        "invalid_type",
    );
    let (s, _) = d.get_json("/extensions/search?q=a&limit=100");
    assert_eq!(s, 200);
}

#[test]
fn every_bad_input_gets_the_seed_error_body() {
    let (_sb, d, _) = start();
    let long = "a".repeat(129);
    let cases: Vec<(String, u16, &str)> = vec![
        ("/extensions/widget/aws".into(), 400, "invalid_type"),
        ("/extensions?type=Provider".into(), 400, "invalid_type"),
        (
            "/extensions/provider/aws/1.2".into(),
            400,
            "invalid_version",
        ),
        (
            "/extensions/provider/aws/latest".into(),
            400,
            "invalid_version",
        ),
        (
            "/extensions/provider/aws/1.2.0%00".into(),
            400,
            "invalid_version",
        ),
        (
            format!("/extensions/provider/aws/1.0.0-{long}"),
            400,
            "invalid_version",
        ),
        ("/extensions/provider/a%2Fb".into(), 400, "invalid_name"),
        (
            "/extensions/provider/a%2fb/versions".into(),
            400,
            "invalid_name",
        ),
        ("/extensions/provider/%2e%2e".into(), 400, "invalid_name"),
        (
            "/extensions/provider/%2E%2E/versions".into(),
            400,
            "invalid_name",
        ),
        ("/extensions/provider/..".into(), 400, "invalid_name"),
        ("/extensions/provider/a%00b".into(), 400, "invalid_name"),
        (format!("/extensions/provider/{long}"), 400, "invalid_name"),
        (
            "/extensions/provider/%2e%2e/1.0.0".into(),
            400,
            "invalid_name",
        ),
        ("/extensions?limit=0".into(), 400, "invalid_request"),
        ("/extensions?limit=1001".into(), 400, "invalid_request"),
        ("/extensions?limit=-1".into(), 400, "invalid_request"),
        ("/extensions?limit=ten".into(), 400, "invalid_request"),
        ("/extensions?offset=-3".into(), 400, "invalid_request"),
        ("/extensions?source=s3".into(), 400, "invalid_request"),
        ("/extensions/provider/nope".into(), 404, "not_found"),
        ("/extensions/provider/aws/3.0.0".into(), 404, "not_found"),
        ("/nothing/here".into(), 404, "not_found"),
        ("/extensions/a/b/c/d/e".into(), 404, "not_found"),
    ];
    for (path, status, code) in &cases {
        let body = assert_error(&d, path, *status, code);
        let msg = body["message"].as_str().unwrap();
        assert!(!msg.contains('\0'), "raw NUL echoed for {path}");
    }
    // A name of exactly 128 bytes is valid (and simply unknown).
    assert_error(
        &d,
        &format!("/extensions/provider/{}", "a".repeat(128)),
        404,
        "not_found",
    );
    // Writes are not part of the REST API.
    let r = d
        .client
        .delete(d.api("/extensions/provider/aws/1.2.0"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 405);
    let v: Value = r.json().unwrap();
    assert_eq!(v["error"], "invalid_request");
    // The daemon is still serving after all of that.
    assert_eq!(d.get("/health").status(), 200);
}

#[test]
fn health_reports_backends_and_degrades() {
    let (_sb, d, _) = start();
    let (s, v) = d.get_json("/health");
    assert_eq!(s, 200);
    assert_eq!(v["status"], "healthy");
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    assert!(v["uptime"].is_u64());
    assert_eq!(v["backends"]["local"]["enabled"], true);
    assert_eq!(v["backends"]["local"]["healthy"], true);
    assert_eq!(v["backends"]["gitea"]["enabled"], false);
    assert_eq!(v["backends"]["oci"]["enabled"], false);

    let sb = Sandbox::new();
    let cfg = sb.write_config(&format!(
        "[local]\npath = \"{}\"\n",
        sb.path("missing-folder").display()
    ));
    let d = Daemon::start(&sb, &["--config", cfg.to_str().unwrap()], &[]);
    let (s, v) = d.get_json("/health");
    assert_eq!(s, 200);
    assert_eq!(v["status"], "degraded");
    assert_eq!(v["backends"]["local"]["healthy"], false);
    assert!(v["backends"]["local"]["error"]
        .as_str()
        .unwrap()
        .contains("missing-folder"));
}

#[test]
fn backend_failure_is_a_5xx_with_details_not_a_crash() {
    let (sb, d, _) = start();
    let (_, v) = d.get_json("/extensions/provider/aws/versions");
    assert_eq!(v.as_array().unwrap().len(), 2);
    // The folder vanishes after it was listed: the fetch fails.
    std::fs::remove_dir_all(sb.catalog().join("provider/aws/1.1.0")).unwrap();
    let body = assert_error(&d, "/extensions/provider/aws/1.1.0", 502, "backend_error");
    assert!(
        body["details"].as_str().unwrap().starts_with("local:"),
        "{body}"
    );
    assert!(std::fs::read_dir(sb.path("artifacts/tmp"))
        .unwrap()
        .next()
        .is_none());
    assert_eq!(d.get("/extensions/provider/aws/1.2.0").status(), 200);
}

#[test]
fn metrics_pass_promtool_and_label_routes_by_template() {
    let promtool = require_tool("promtool", "prometheus");
    let (_sb, d, _) = start();
    for p in [
        "/extensions",
        "/extensions/provider/aws",
        "/extensions/provider/aws/versions",
        "/extensions/provider/aws/1.2.0",
        "/extensions/search?q=aws",
        "/extensions/provider/random-name-123",
        "/cache/stats",
        "/health",
        "/no/such/path",
    ] {
        d.get(p);
    }
    let text = d.metrics();
    let mut child = std::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for name in [
        "http_requests_total",
        "http_request_duration_seconds_bucket",
        "cache_hits_total",
        "cache_misses_total",
        "extensions{",
        "backend_requests_total",
    ] {
        assert!(text.contains(name), "{name} missing from metrics");
    }
    assert!(text.contains(r#"route="/api/v1/extensions/{type}/{name}",status="404""#));
    assert!(text.contains(r#"route="unmatched",status="404""#));
    assert!(
        !text.contains("random-name-123"),
        "raw path leaked into labels"
    );
    assert_eq!(d.metric(r#"extensions{type="taskserv"}"#), 3.0);
}

#[test]
fn repeated_requests_are_served_from_cache_without_backend_calls() {
    let (_sb, d, _) = start();
    let list = r#"backend_requests_total{backend="local",operation="list",outcome="ok"}"#;
    let versions = r#"backend_requests_total{backend="local",operation="versions",outcome="ok"}"#;
    let fetch = r#"backend_requests_total{backend="local",operation="fetch",outcome="ok"}"#;

    // A burst of concurrent cold requests: one backend listing.
    std::thread::scope(|s| {
        for _ in 0..16 {
            s.spawn(|| assert_eq!(d.get("/extensions").status(), 200));
        }
    });
    assert_eq!(d.metric(list), 1.0);
    d.get("/extensions?type=provider");
    d.get("/extensions/search?q=aws");
    d.get("/extensions");
    assert_eq!(
        d.metric(list),
        1.0,
        "list and search reuse the cached listing"
    );

    d.get("/extensions/provider/aws");
    d.get("/extensions/provider/aws/versions");
    assert_eq!(d.metric(versions), 1.0);
    d.get("/extensions/provider/aws");
    d.get("/extensions/provider/aws/versions");
    assert_eq!(d.metric(versions), 1.0);

    let r = d.get("/extensions/provider/aws/1.2.0");
    assert_eq!(r.headers()["x-extregd-cache"], "miss");
    let r = d.get("/extensions/provider/aws/1.2.0");
    assert_eq!(r.headers()["x-extregd-cache"], "hit");
    assert_eq!(d.metric(fetch), 1.0);
    assert_eq!(d.metric(versions), 1.0);

    let (_, stats) = d.get_json("/cache/stats");
    for k in [
        "list_entries",
        "metadata_entries",
        "version_entries",
        "total_entries",
    ] {
        assert!(stats[k].is_u64(), "{k} missing: {stats}");
    }
    assert!(stats["list_entries"].as_u64().unwrap() >= 2);
    assert_eq!(stats["metadata_entries"], 1);
    assert_eq!(stats["version_entries"], 1);
    assert_eq!(
        stats["total_entries"].as_u64().unwrap(),
        stats["list_entries"].as_u64().unwrap() + 2
    );
    assert!(stats["caches"]["list"]["hits"].as_u64().unwrap() >= 2);
    assert_eq!(stats["artifacts"]["entries"], 1);
    assert_eq!(stats["artifacts"]["hits"], 1);
    assert_eq!(stats["artifacts"]["misses"], 1);
}

#[test]
fn disabled_caches_call_the_backend_every_time() {
    let sb = Sandbox::new();
    standard_catalog(&sb.catalog());
    let d = start_with(
        &sb,
        "enable_list_cache = false\nenable_metadata_cache = false\nenable_version_cache = false\n",
    );
    let list = r#"backend_requests_total{backend="local",operation="list",outcome="ok"}"#;
    let versions = r#"backend_requests_total{backend="local",operation="versions",outcome="ok"}"#;
    d.get("/extensions");
    d.get("/extensions");
    assert_eq!(d.metric(list), 2.0);
    d.get("/extensions/provider/aws");
    d.get("/extensions/provider/aws");
    assert_eq!(d.metric(versions), 2.0);
    let (_, stats) = d.get_json("/cache/stats");
    assert_eq!(stats["total_entries"], 0);
    assert_eq!(stats["caches"]["list"]["enabled"], false);
}

#[test]
fn entries_expire_after_the_ttl() {
    let sb = Sandbox::new();
    standard_catalog(&sb.catalog());
    let d = start_with(&sb, "ttl_seconds = 1\n");
    let list = r#"backend_requests_total{backend="local",operation="list",outcome="ok"}"#;
    d.get("/extensions");
    d.get("/extensions");
    assert_eq!(d.metric(list), 1.0);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    // After the TTL the cached answer comes at once and one background
    // refresh asks the backend again.
    assert_eq!(d.get("/extensions").status(), 200);
    d.get("/extensions");
    assert!(wait_until(std::time::Duration::from_secs(5), || d
        .metric(list)
        == 2.0));
    assert_eq!(d.metric(list), 2.0, "one refresh for both readers");
}

#[test]
fn artifact_cache_survives_restarts_and_repairs_itself() {
    let (sb, d, upcloud) = start();
    assert_eq!(
        d.get("/extensions/provider/upcloud/2.1.3").headers()["x-extregd-cache"],
        "miss"
    );
    d.get("/extensions/provider/aws/1.2.0");
    drop(d);

    let d = start_with(&sb, "");
    let r = d.get("/extensions/provider/upcloud/2.1.3");
    assert_eq!(
        r.headers()["x-extregd-cache"],
        "hit",
        "index survived the restart"
    );
    assert_eq!(&r.bytes().unwrap()[..], &upcloud[..]);
    drop(d);

    // Delete the blobs behind the index: start-up drops those entries and
    // the next download fetches again, with the right bytes.
    let blobs = sb.path("artifacts/blobs/sha256");
    for e in std::fs::read_dir(&blobs).unwrap() {
        std::fs::remove_file(e.unwrap().path()).unwrap();
    }
    let d = start_with(&sb, "");
    let (_, stats) = d.get_json("/cache/stats");
    assert_eq!(stats["artifacts"]["entries"], 0);
    let r = d.get("/extensions/provider/upcloud/2.1.3");
    assert_eq!(r.headers()["x-extregd-cache"], "miss");
    assert_eq!(&r.bytes().unwrap()[..], &upcloud[..]);
}

#[test]
fn a_changed_local_artifact_is_not_served_stale() {
    let sb = Sandbox::new();
    standard_catalog(&sb.catalog());
    let d = start_with(&sb, "ttl_seconds = 1\n");
    let first = d.get("/extensions/provider/aws/1.2.0").bytes().unwrap();
    std::fs::write(
        sb.catalog().join("provider/aws/1.2.0/kcl/aws.k"),
        "# changed\n",
    )
    .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    // The first read after the TTL answers from cache and starts the
    // refresh; once it landed the new revision is fetched, never the old
    // bytes under the new record.
    let (_, rec) = d.get_json("/extensions/provider/aws");
    let old = rec["checksum"].clone();
    assert!(wait_until(std::time::Duration::from_secs(5), || {
        d.get_json("/extensions/provider/aws/versions").1[0]["checksum"] != old
    }));
    let r = d.get("/extensions/provider/aws/1.2.0");
    assert_eq!(r.headers()["x-extregd-cache"], "miss");
    let second = r.bytes().unwrap();
    assert_ne!(first, second);
    let (_, rec) = d.get_json("/extensions/provider/aws");
    assert_eq!(rec["checksum"], sha256_tag(&second));
}

#[test]
fn range_edge_cases_follow_rfc_9110() {
    let (_sb, d, upcloud) = start();
    let get = |hs: &[(&str, &str)]| {
        let mut req = d.client.get(d.api("/extensions/provider/upcloud/2.1.3"));
        for (k, v) in hs {
            req = req.header(*k, *v);
        }
        let r = req.send().unwrap();
        (r.status().as_u16(), r.bytes().unwrap().len())
    };
    let n = upcloud.len();
    // Malformed ranges and unknown units are ignored: the whole body.
    assert_eq!(get(&[("Range", "bytes=abc")]), (200, n));
    assert_eq!(get(&[("Range", "bytes=5-2")]), (200, n));
    assert_eq!(get(&[("Range", "items=0-5")]), (200, n));
    assert_eq!(get(&[("Range", "bytes=0-")]), (206, n));
    assert_eq!(
        get(&[("Range", "bytes=-999999")]),
        (206, n),
        "a suffix larger than the file is the file"
    );
    assert_eq!(get(&[("Range", &format!("bytes={n}-"))]).0, 416);
    // If-Range: the current ETag honours the range, any other ignores it.
    let etag = format!("\"{}\"", sha256_tag(&upcloud));
    assert_eq!(
        get(&[("Range", "bytes=0-9"), ("If-Range", &etag)]),
        (206, 10)
    );
    assert_eq!(
        get(&[("Range", "bytes=0-9"), ("If-Range", "\"sha256:old\"")]),
        (200, n)
    );
}

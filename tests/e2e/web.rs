//! The web catalogue, end to end: pages from the real binary over HTTP
//! (escaping, security headers, the config switch, cost through the
//! caches), and a real browser (Debian's chromium + chromedriver, driven by
//! Selenium from the venv) running `tests/browser/catalogue.py`.

use extreg_tests::gitea::{add_extension, Access, GiteaStandIn};
use extreg_tests::*;
use std::path::Path;
use std::process::Command;

/// What a hostile backend could put in a description.
const EVIL_DESC: &str =
    "<script>window.__pwned=1;document.title='pwned'</script><img src=x onerror=\"window.__pwned=2\"> & </p>";

/// The example catalogue plus `provider/evil`, whose description, tags
/// and repository carry markup and a `javascript:` URL.
fn catalogue(sb: &Sandbox) -> std::path::PathBuf {
    let root = sb.catalog();
    copy_dir(&repo_root().join("examples/catalog"), &root);
    let dir = root.join("provider/evil/0.1.0");
    std::fs::create_dir_all(&dir).unwrap();
    let yaml = serde_json::json!({
        "extension": {
            "name": "evil",
            "version": "0.1.0",
            "type": "provider",
            "description": EVIL_DESC,
            "author": "<b>mallory</b>",
            "tags": ["\"><svg onload=alert(1)>", "ok"],
        },
        "metadata": { "repository": "javascript:alert(1)" },
    });
    // JSON is YAML: every string quoted, nothing for YAML to interpret.
    std::fs::write(dir.join("extension.yaml"), yaml.to_string()).unwrap();
    std::fs::write(dir.join("evil.k"), "# evil\n").unwrap();
    root
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

fn start_local(sb: &Sandbox, extra_toml: &str) -> Daemon {
    let root = catalogue(sb);
    let cfg = sb.write_config(&format!(
        "[local]\npath = \"{}\"\n[cache]\nartifact_dir = \"{}\"\n{extra_toml}",
        root.display(),
        sb.path("artifacts").display()
    ));
    Daemon::start(sb, &["--config", cfg.to_str().unwrap()], &[])
}

fn page(d: &Daemon, path: &str) -> (u16, reqwest::header::HeaderMap, String) {
    let r = d
        .client
        .get(format!("{}{path}", d.url))
        .send()
        .expect("request");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.text().unwrap())
}

#[test]
fn pages_escape_backend_text_and_carry_a_strict_policy() {
    let sb = Sandbox::new();
    let d = start_local(&sb, "");
    let (s, h, body) = page(&d, "/ext/provider/evil");
    assert_eq!(s, 200, "{body}");
    assert_eq!(h["content-type"], "text/html; charset=utf-8");
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["referrer-policy"], "no-referrer");
    // The markup arrives as text.
    assert!(!body.contains("<script>window"), "{body}");
    assert!(!body.contains("<img src=x"), "{body}");
    assert!(!body.contains("<svg"), "{body}");
    assert!(!body.contains("<b>mallory"), "{body}");
    assert!(body.contains("&lt;script&gt;window.__pwned=1;"), "{body}");
    assert!(body.contains("&lt;b&gt;mallory&lt;/b&gt;"), "{body}");
    // A javascript: repository is shown, never linked.
    assert!(!body.contains("href=\"javascript:"), "{body}");
    assert!(body.contains("<code>javascript:alert(1)</code>"), "{body}");
    // The only script is the external, same-origin one; no inline handlers.
    assert_eq!(body.matches("<script").count(), 1, "{body}");
    assert!(body.contains("<script src=\"/assets/app.js\""));
    // No element carries an event handler (the text may mention one).
    for tag in body.split('<').skip(1) {
        let tag = tag.split('>').next().unwrap_or_default();
        assert!(!tag.contains(" on"), "event handler in <{tag}>");
    }

    // The list and search pages escape too.
    let (s, _, body) = page(&d, "/?q=evil");
    assert_eq!(s, 200);
    assert!(body.contains("&lt;script&gt;"), "{body}");
    assert!(!body.contains("<script>window"), "{body}");

    // Assets: served with the right types and the same headers.
    for (path, ty) in [
        ("/assets/app.js", "text/javascript; charset=utf-8"),
        ("/assets/style.css", "text/css; charset=utf-8"),
    ] {
        let (s, h, body) = page(&d, path);
        assert_eq!(s, 200);
        assert_eq!(h["content-type"], ty);
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert!(h.contains_key("content-security-policy"));
        assert!(
            !body.is_empty() && body.len() < 12 * 1024,
            "{path} is small"
        );
        let etag = h["etag"].to_str().unwrap().to_string();
        let r = d
            .client
            .get(format!("{}{path}", d.url))
            .header("if-none-match", &etag)
            .send()
            .unwrap();
        assert_eq!(r.status(), 304);
    }
}

#[test]
fn pages_show_versions_checksums_downloads_and_the_load_command() {
    let sb = Sandbox::new();
    let d = start_local(&sb, "");
    let (s, _, body) = page(&d, "/ext/taskserv/kubernetes");
    assert_eq!(s, 200, "{body}");
    let (_, versions) = d.get_json("/extensions/taskserv/kubernetes/versions");
    for v in versions.as_array().unwrap() {
        let version = v["version"].as_str().unwrap();
        let checksum = v["checksum"].as_str().unwrap();
        assert!(body.contains(checksum), "checksum of {version} shown");
        assert!(
            body.contains(&format!(
                "href=\"/api/v1/extensions/taskserv/kubernetes/{version}\""
            )),
            "download link of {version}"
        );
        if v["prerelease"] == true {
            assert!(
                body.contains(&format!("{version} <span class=\"badge pre\">pre-release")),
                "{version} is marked as a pre-release: {body}"
            );
        }
    }
    assert!(body.contains("ext load kubernetes --type taskserv --version 1.28.0"));
    assert!(body.contains("href=\"https://example.org/extensions/kubernetes\""));
    // Backend health is shown.
    assert!(body.contains("class=\"backend ok\""), "{body}");

    // Browse by type and source; unknown values are a readable 400 page.
    let (s, _, body) = page(&d, "/?type=cluster&source=local");
    assert_eq!(s, 200);
    assert!(body.contains("/ext/cluster/buildkit") && !body.contains("/ext/taskserv/"));
    let (s, h, body) = page(&d, "/?type=widget");
    assert_eq!(s, 400);
    assert_eq!(h["content-type"], "text/html; charset=utf-8");
    assert!(body.contains("invalid extension type"), "{body}");
    let (s, _, _) = page(&d, "/ext/provider/nothing-here");
    assert_eq!(s, 404);
    let (s, _, _) = page(&d, "/ext/provider/..");
    assert!(s == 400 || s == 404, "{s}");
}

#[test]
fn the_catalogue_can_be_switched_off() {
    let sb = Sandbox::new();
    let d = start_local(&sb, "[web]\nenabled = false\n");
    let (s, h, body) = page(&d, "/");
    assert_eq!(s, 404);
    assert_eq!(h["content-type"], "application/json", "{body}");
    let (s, _, _) = page(&d, "/ext/taskserv/kubernetes");
    assert_eq!(s, 404);
    let (s, _) = d.get_json("/extensions");
    assert_eq!(s, 200, "the API stays");
    let out = sb
        .command(&bin("extregd"))
        .args(["--check-config", "--host", "0.0.0.0"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("web = off"),
        "off by default when not on loopback"
    );
}

fn backend_calls(d: &Daemon) -> f64 {
    d.metrics()
        .lines()
        .filter(|l| l.starts_with("backend_requests_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn a_page_view_of_a_cached_catalogue_asks_no_backend() {
    const ORG: &str = "provisioning-extensions";
    const TOKEN: &str = "read-token-web-3f9a";
    let g = GiteaStandIn::start();
    g.with(|w| {
        w.token(TOKEN, Access::Read);
        w.org(ORG);
        add_extension(w, ORG, "provider", "aws", &["v1.1.0", "v1.2.0"], true);
        add_extension(w, ORG, "taskserv", "kubernetes", &["1.28.0"], true);
    });
    let sb = Sandbox::new();
    let d = sb.start_gitea(&g.url, ORG, TOKEN, "", "ttl_seconds = 300\n");
    let views = ["/", "/?type=provider", "/?q=aws", "/ext/provider/aws"];
    // Cold: the catalogue and the versions are fetched.
    for v in views {
        let (s, _, body) = page(&d, v);
        assert_eq!(s, 200, "{v}: {body}");
    }
    let (_, _, body) = page(&d, "/ext/provider/aws");
    assert!(body.contains("1.1.0") && body.contains("1.2.0"), "{body}");
    assert!(body.contains("aws provider from gitea"), "{body}");
    let calls = backend_calls(&d);
    let upstream = g.total_requests();
    assert!(calls > 0.0, "the cold views asked the backend");
    // Warm: the same views, again and again, cost nothing upstream.
    for _ in 0..3 {
        for v in views {
            let (s, _, _) = page(&d, v);
            assert_eq!(s, 200);
        }
    }
    assert_eq!(backend_calls(&d), calls, "backend_requests_total moved");
    assert_eq!(g.total_requests(), upstream, "the Gitea stand-in was asked");
}

/// Debian's browser and its driver; never downloaded at run time.
fn chromium() -> (std::path::PathBuf, std::path::PathBuf) {
    (
        require_tool("chromium", "chromium"),
        require_tool("chromedriver", "chromium-driver"),
    )
}

#[test]
fn a_real_browser_searches_opens_downloads_and_sees_markup_as_text() {
    let (browser, driver) = chromium();
    let python = venv_tool("python");
    let sb = Sandbox::new();
    let d = start_local(&sb, "");
    // Screenshots are kept under target/ (not committed).
    let shots = target_dir().join("browser-artifacts");
    let _ = std::fs::remove_dir_all(&shots);
    std::fs::create_dir_all(&shots).unwrap();
    let out = Command::new(python)
        .arg(repo_root().join("tests/browser/catalogue.py"))
        .arg(&d.url)
        .arg(&shots)
        .arg(sb.path("downloads"))
        .arg(sb.path("chrome-profile"))
        .env("CHROMIUM", browser)
        .env("CHROMEDRIVER", driver)
        .env("HOME", sb.path("home"))
        .output()
        .expect("run the browser test");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "browser test failed:\n{stdout}\n{stderr}\n--- daemon ---\n{}",
        d.stderr()
    );
    assert!(
        stdout.contains("browser test: all checks passed"),
        "{stdout}"
    );
    for shot in ["catalogue.png", "search.png", "extension.png", "evil.png"] {
        let p = shots.join(shot);
        let len = std::fs::metadata(&p)
            .unwrap_or_else(|_| panic!("{} missing", p.display()))
            .len();
        assert!(len > 1000, "{shot} is an image");
    }
}

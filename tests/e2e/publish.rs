//! `ext publish` and `ext delete` through the real nu, the daemon's local
//! socket and the real `docker-registry` (writing operations are not on REST).

use extreg_tests::registry::{Options, Registry};
use extreg_tests::*;

const NS: &str = "team";

#[test]
fn publish_and_delete_through_nu() {
    let reg = Registry::start(Options::default());
    let sb = Sandbox::new();
    let d = sb.start_oci(&reg.addr, NS, "");
    let nu = Nu::new(&sb);
    let src = write_folder_ext(
        &sb.path("src"),
        "taskserv",
        "redis",
        "7.0.0",
        "Redis",
        &["db"],
    );
    let p = src.display();

    let v = nu.json(&format!("ext publish '{p}' --version 7.0.0 --dry-run"));
    assert_eq!(v["pushed"], false);
    assert!(
        reg.tags(&format!("{NS}/redis-taskserv")).is_empty(),
        "a dry run pushes nothing"
    );

    let v = nu.json(&format!("ext publish '{p}' --version 7.0.0"));
    assert_eq!(
        (v["pushed"].as_bool(), v["replaced"].as_bool()),
        (Some(true), Some(false))
    );
    assert_eq!(
        v["reference"],
        format!("{}/{NS}/redis-taskserv:7.0.0", reg.addr)
    );
    assert_eq!(reg.tags(&format!("{NS}/redis-taskserv")), vec!["7.0.0"]);
    // Visible at once (the daemon drops its metadata caches after a push),
    // over REST and through the plugin, and loadable.
    let (_, rec) = d.get_json("/extensions/taskserv/redis");
    assert_eq!(
        (rec["source"].as_str(), rec["checksum"].as_str()),
        (Some("oci"), v["layer_digest"].as_str())
    );
    let l = nu.json("ext load redis");
    assert_eq!(l["source"], "oci");
    assert!(std::path::Path::new(l["path"].as_str().unwrap())
        .join("extension.yaml")
        .is_file());

    nu.fails(
        &format!("ext publish '{p}' --version 7.0.0"),
        &["already exists"],
    );
    let v = nu.json(&format!("ext publish '{p}' --version 7.0.0 --force"));
    assert_eq!(v["replaced"], true);

    nu.fails(
        &format!("ext publish '{p}' --version 7.0.1"),
        &["extension.yaml"],
    );
    // A relative path is taken from nu's current directory.
    let v = nu.json(&format!(
        "cd '{}'; ext publish 7.0.0 --version 7.0.0 --dry-run",
        src.parent().unwrap().display()
    ));
    assert_eq!(v["name"], "redis");
    nu.fails(
        "ext publish /nonexistent --version 1.0.0",
        &["holds no extension.yaml"],
    );

    let v = nu.json("ext delete redis 7.0.0 --type taskserv");
    assert_eq!(
        v["deleted"],
        format!("{}/{NS}/redis-taskserv:7.0.0", reg.addr)
    );
    assert!(reg.tags(&format!("{NS}/redis-taskserv")).is_empty());
    nu.fails(
        "ext delete redis 7.0.0 --type taskserv",
        &["not in the registry"],
    );
    nu.fails("ext delete redis 7.x --type taskserv", &["invalid version"]);
}

#[test]
fn publishing_needs_the_oci_backend() {
    let sb = Sandbox::new();
    let cfg = sb.write_config(&format!("[local]\npath = \"{}\"\n", sb.catalog().display()));
    let _d = Daemon::start(&sb, &["--config", cfg.to_str().unwrap()], &[]);
    let nu = Nu::new(&sb);
    let src = write_folder_ext(&sb.path("src"), "provider", "x", "1.0.0", "X", &[]);
    let out = nu.run(&format!("ext publish '{}' --version 1.0.0", src.display()));
    assert!(!out.ok);
    assert!(
        out.stderr.contains("publishing needs the OCI backend"),
        "{}",
        out.stderr
    );
}

//! The `.nu` tests in `nushell/tests/`, run by the real `nu` with the plugin
//! loaded, against a real daemon.

use extreg_tests::*;

#[test]
fn nushell_module_tests_pass() {
    let sb = Sandbox::new();
    let root = sb.catalog();
    for v in ["1.1.0", "1.2.0"] {
        write_folder_ext(&root, "provider", "aws", v, "AWS", &[]);
    }
    for v in ["1.27.4", "1.28.0"] {
        write_folder_ext(&root, "taskserv", "kubernetes", v, "K8s", &[]);
    }
    write_folder_ext(&root, "cluster", "buildkit", "0.12.0", "Builds", &[]);
    let cfg = sb.write_config(&format!("[local]\npath = \"{}\"\n", root.display()));
    let _d = Daemon::start(&sb, &["--config", cfg.to_str().unwrap()], &[]);
    let script = repo_root().join("nushell/tests/test_ext.nu");
    let out = sb
        .command(&nu_bin())
        .arg("-n")
        .arg("--plugins")
        .arg(bin("nu_plugin_ext"))
        .arg(&script)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("5 passed, 0 failed"), "{stdout}\n{stderr}");
}

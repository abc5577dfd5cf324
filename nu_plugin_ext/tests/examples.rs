//! Every command's examples, run by `nu-plugin-test-support` against a real
//! `extregd` serving a copy of `examples/catalog` (file times fixed, so the
//! example results are exact) and the real `docker-registry` as its `[oci]`
//! backend, which the `ext publish` and `ext delete` examples write to.
//! Every command has at least one example whose result is checked.

use extreg_tests::registry::{Options, Registry};
use nu_plugin_ext::commands::{self, examples};
use nu_plugin_ext::ExtPlugin;
use nu_plugin_test_support::PluginTest;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

struct Kill(std::process::Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn extregd() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let p = exe.parent().unwrap().parent().unwrap().join("extregd");
    assert!(
        p.is_file(),
        "{} is missing: run `cargo build --workspace` first (tests/run does)",
        p.display()
    );
    p
}

#[test]
fn command_examples_hold_against_a_real_daemon() -> Result<(), Box<dyn std::error::Error>> {
    let tmp = tempfile::tempdir()?;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let cat = tmp.path().join("catalog");
    let st = Command::new("cp")
        .arg("-a")
        .arg(root.join("examples/catalog"))
        .arg(&cat)
        .status()?;
    assert!(st.success());
    let st = Command::new("find")
        .arg(&cat)
        .args([
            "-exec",
            "touch",
            "-h",
            "-d",
            "2025-10-06T12:00:00Z",
            "{}",
            "+",
        ])
        .status()?;
    assert!(st.success());
    let run = tmp.path().join("run");
    std::fs::create_dir_all(&run)?;
    // A registry for `ext publish` and `ext delete` (empty), and the KCL
    // package `ext kcl list` and `ext kcl pull` show.
    let registry = Registry::start(Options::default());
    registry.push_kcl(
        "kcl/provisioning-core",
        "1.0.0",
        Some("2025-10-06T12:00:00Z"),
    );
    let cfg = tmp.path().join("extregd.toml");
    std::fs::write(
        &cfg,
        format!(
            "[server]\nport = 0\npublic_url = \"http://127.0.0.1:8082\"\n[local]\npath = \"{}\"\n[cache]\nartifact_dir = \"{}\"\n[oci]\nregistry = \"{}\"\nnamespace = \"examples\"\n",
            cat.display(),
            tmp.path().join("artifacts").display(),
            registry.addr,
        ),
    )?;
    let mut child = Command::new(extregd())
        .arg("--config")
        .arg(&cfg)
        .env("XDG_RUNTIME_DIR", &run)
        .env("HOME", tmp.path())
        .env("XDG_CONFIG_HOME", tmp.path().join("config"))
        // `ext load`'s example extracts here.
        .env("XDG_DATA_HOME", tmp.path().join("data"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line)?;
    let _guard = Kill(child);
    assert!(
        line.contains("listening on"),
        "extregd did not start: {line}"
    );

    // The plugin runs in this process: it finds the socket through the
    // process's XDG_RUNTIME_DIR. Only this test touches the variable.
    std::env::set_var("XDG_RUNTIME_DIR", &run);
    let mut test = PluginTest::new("ext", ExtPlugin::new()?.into())?;
    // `ext load` writes extensions.lock into the current folder: the temp dir.
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work)?;
    // The folder the `ext publish` examples publish.
    let mine = work.join("my-extension");
    std::fs::create_dir_all(mine.join("kcl"))?;
    std::fs::write(mine.join("extension.yaml"), examples::MY_EXTENSION_YAML)?;
    std::fs::write(
        mine.join("kcl/my-extension.k"),
        "schema MyExtension:\n  replicas: int = 1\n",
    )?;
    test.engine_state_mut().add_env_var(
        "PWD".into(),
        nu_protocol::Value::test_string(work.display().to_string()),
    );
    let mut unchecked = Vec::new();
    for cmd in commands::all() {
        let examples = cmd.examples();
        // `ext test-oci`'s results name a port and OS error texts that the
        // harness cannot select away; its closed-port example runs through
        // the real nu in tests/e2e/seed_oci/test_oci.rs instead.
        if !examples.iter().any(|e| e.result.is_some()) && cmd.name() != "ext test-oci" {
            unchecked.push(cmd.name().to_string());
        }
        test.test_examples(&examples)?;
    }
    assert!(
        unchecked.is_empty(),
        "every command needs an example whose result the tests check: {unchecked:?}"
    );
    // The publish example pushed, the delete example removed.
    assert!(
        registry.tags("examples/my-extension-taskserv").is_empty(),
        "{:?}",
        registry.tags("examples/my-extension-taskserv")
    );
    Ok(())
}

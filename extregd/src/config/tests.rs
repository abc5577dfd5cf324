use super::*;
use std::collections::HashMap;

fn parse(t: &str) -> Result<Config, ConfigError> {
    Config::from_toml(t, Path::new("test.toml"))
}

#[test]
fn seed_example_parses() {
    let c = parse(
        r#"
[server]
host = "127.0.0.1"
port = 8082
[gitea]
url = "https://gitea.example.com"
organization = "provisioning-extensions"
[oci]
registry = "registry.example.com"
namespace = "provisioning"
[cache]
capacity = 1000
ttl_seconds = 300
enable_metadata_cache = true
enable_list_cache = true
"#,
    )
    .unwrap();
    assert_eq!(c.server.port, 8082);
    assert_eq!(c.gitea.unwrap().timeout_seconds, 30);
    assert_eq!(c.oci.unwrap().namespace, "provisioning");
}

#[test]
fn web_is_on_for_loopback_only_unless_set() {
    let mut c = Config::default();
    assert!(c.web_enabled(), "127.0.0.1 by default");
    for (host, on) in [
        ("::1", true),
        ("localhost", true),
        ("0.0.0.0", false),
        ("10.1.2.3", false),
        ("::", false),
    ] {
        c.server.host = host.into();
        assert_eq!(c.web_enabled(), on, "{host}");
    }
    let c = parse("[server]\nhost = \"0.0.0.0\"\n[web]\nenabled = true\n").unwrap();
    assert!(c.web_enabled());
    let c = parse("[web]\nenabled = false\n").unwrap();
    assert!(!c.web_enabled());
    assert!(
        parse("[web]\nenable = true\n").is_err(),
        "unknown keys are refused"
    );
}

#[test]
fn empty_file_is_the_default() {
    assert_eq!(parse("").unwrap(), Config::default());
    assert_eq!(Config::default().server.host, "127.0.0.1");
}

#[test]
fn unknown_key_names_the_key() {
    let e = parse("[cache]\ncapacty = 5\n").unwrap_err().to_string();
    assert!(e.contains("capacty"), "{e}");
    let e = parse("[srever]\n").unwrap_err().to_string();
    assert!(e.contains("srever"), "{e}");
}

#[test]
fn bad_port_is_refused() {
    let e = parse("[server]\nport = 70000\n").unwrap_err().to_string();
    assert!(e.contains("port"), "{e}");
    assert!(parse("[server]\nport = \"x\"\n").is_err());
}

#[test]
fn capacity_zero_is_refused() {
    let c = parse("[cache]\ncapacity = 0\n").unwrap();
    let e = c.validate().unwrap_err().to_string();
    assert!(e.contains("capacity"), "{e}");
}

#[test]
fn missing_token_file_is_refused_and_open_one_warned() {
    let c = parse(
            "[gitea]\nurl = \"http://127.0.0.1:1\"\norganization = \"o\"\ntoken_path = \"/nonexistent/tok\"\n",
        )
        .unwrap();
    let e = c.validate().unwrap_err().to_string();
    assert!(e.contains("/nonexistent/tok"), "{e}");

    let dir = tempfile::tempdir().unwrap();
    let tok = dir.path().join("tok");
    std::fs::write(&tok, "secret-value").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&tok, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut c = c;
    c.gitea.as_mut().unwrap().token_path = Some(tok.clone());
    let w = c.validate().unwrap();
    assert_eq!(w.len(), 1);
    assert!(w[0].contains("chmod 600"));
    assert!(!w[0].contains("secret-value"));
    std::fs::set_permissions(&tok, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(c.validate().unwrap().is_empty());
}

#[test]
fn env_overrides_file_and_paths_come_first() {
    let mut c = parse(
            "[oci]\nregistry = \"file.example\"\nnamespace = \"filens\"\n[local]\npath = \"/from/file\"\n",
        )
        .unwrap();
    let env: HashMap<&str, &str> = [
        (ENV_OCI_REGISTRY, "127.0.0.1:5000"),
        (ENV_OCI_NAMESPACE, "envns"),
        (ENV_EXTENSIONS_PATH, "/a:/b"),
    ]
    .into();
    c.apply_env(|k| env.get(k).map(|v| v.to_string()));
    let oci = c.oci.clone().unwrap();
    assert_eq!(oci.registry, "127.0.0.1:5000");
    assert_eq!(oci.namespace, "envns");
    let dirs = Dirs {
        data: "/d".into(),
        cache: "/c".into(),
        runtime: None,
    };
    assert_eq!(
        c.local_roots(&dirs),
        vec![
            PathBuf::from("/a"),
            PathBuf::from("/b"),
            PathBuf::from("/from/file")
        ]
    );
}

#[test]
fn env_registry_alone_enables_oci_with_default_namespace() {
    let mut c = Config::default();
    c.apply_env(|k| (k == ENV_OCI_REGISTRY).then(|| "reg:5000".to_string()));
    assert_eq!(c.oci.unwrap().namespace, DEFAULT_OCI_NAMESPACE);
}

#[test]
fn embedded_default_is_the_xdg_extensions_folder() {
    let c = Config::default();
    let dirs = Dirs {
        data: "/d".into(),
        cache: "/c".into(),
        runtime: None,
    };
    assert_eq!(c.local_roots(&dirs), vec![PathBuf::from("/d/extensions")]);
    assert_eq!(c.artifact_dir(&dirs), PathBuf::from("/c/extregd/artifacts"));
}

#[test]
fn default_load_dir_is_not_the_local_root() {
    let c = Config::default();
    let dirs = Dirs {
        data: "/d".into(),
        cache: "/c".into(),
        runtime: None,
    };
    assert_ne!(c.load_dir(&dirs), c.local_roots(&dirs)[0]);
    c.check_paths(&dirs).unwrap();
}

#[test]
fn overlapping_load_cache_and_backend_folders_are_refused_naming_both() {
    let d = tempfile::tempdir().unwrap();
    let dirs = Dirs {
        data: d.path().join("data"),
        cache: d.path().join("cache"),
        runtime: None,
    };
    let root = d.path().join("exts");
    let cases = [
        format!(
            "[local]\npath = {:?}\n[extensions]\ndir = {:?}\n",
            root, root
        ),
        format!(
            "[local]\npath = {:?}\n[extensions]\ndir = {:?}\n",
            root,
            root.join("sub")
        ),
        format!(
            "[local]\npath = {:?}\n[extensions]\ndir = {:?}\n",
            root.join("a"),
            root
        ),
        format!(
            "[local]\npath = {:?}\n[cache]\nartifact_dir = {:?}\n",
            root,
            root.join("../exts/c")
        ),
    ];
    for toml in cases {
        let c = parse(&toml).unwrap();
        let e = c.check_paths(&dirs).unwrap_err().to_string();
        assert!(
            e.contains("overlaps") && e.contains(root.to_str().unwrap()),
            "{e}"
        );
    }
    let ok = parse(&format!(
        "[local]\npath = {:?}\n[extensions]\ndir = {:?}\n",
        root,
        d.path().join("loaded")
    ))
    .unwrap();
    ok.check_paths(&dirs).unwrap();
}

#[test]
fn credentials_in_urls_are_refused_without_being_echoed() {
    for toml in [
        "[oci]\nregistry = \"https://bob:s3cret@reg.example\"\n",
        "[oci]\nregistry = \"bob:s3cret@reg.example:5000\"\n",
        "[gitea]\nurl = \"https://bob:s3cret@git.example\"\norganization = \"o\"\n",
        "[server]\npublic_url = \"https://bob:s3cret@x.example\"\n",
    ] {
        let e = parse(toml).unwrap().validate().unwrap_err().to_string();
        assert!(e.contains("credentials"), "{e}");
        assert!(!e.contains("s3cret") && !e.contains("bob"), "{e}");
    }
}

#[test]
fn registry_priority_defaults_orders_and_rejects_bad_names() {
    use extreg_shared::Source;
    let c = Config::default();
    assert_eq!(c.source_priority(), DEFAULT_PRIORITY.to_vec());
    assert_eq!(
        DEFAULT_PRIORITY,
        [Source::Local, Source::Oci, Source::Gitea]
    );
    let c = parse("[registry]\npriority = [\"gitea\"]\n").unwrap();
    c.validate().unwrap();
    assert_eq!(
        c.source_priority(),
        vec![Source::Gitea, Source::Local, Source::Oci]
    );
    let e = parse("[registry]\npriority = [\"gitlab\"]\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("gitlab") && e.contains("priority"), "{e}");
    let c = parse("[registry]\npriority = [\"oci\", \"local\", \"oci\"]\n").unwrap();
    let e = c.validate().unwrap_err().to_string();
    assert!(e.contains("'oci' more than once"), "{e}");
    assert!(parse("[registry]\norder = []\n").is_err());
}

#[test]
fn concurrency_defaults_above_8_and_is_refused_outside_its_range() {
    let c =
        parse("[gitea]\nurl = \"http://g\"\norganization = \"o\"\n[oci]\nregistry = \"r:5000\"\n")
            .unwrap();
    assert_eq!(c.gitea.as_ref().unwrap().concurrency, DEFAULT_CONCURRENCY);
    assert_eq!(c.oci.as_ref().unwrap().concurrency, DEFAULT_CONCURRENCY);
    c.validate().unwrap();
    for (text, key) in [
        (
            "[gitea]\nurl = \"http://g\"\norganization = \"o\"\nconcurrency = 0\n",
            "[gitea]",
        ),
        ("[oci]\nregistry = \"r:5000\"\nconcurrency = 257\n", "[oci]"),
    ] {
        let e = parse(text).unwrap().validate().unwrap_err().to_string();
        assert!(
            e.contains(&format!("{key} concurrency must be between 1 and 256")),
            "{e}"
        );
    }
    let c = parse("[oci]\nregistry = \"r:5000\"\nconcurrency = 256\n").unwrap();
    assert_eq!(c.oci.as_ref().unwrap().concurrency, 256);
    c.validate().unwrap();
    let e = parse("[gitea]\nurl = \"http://g\"\norganization = \"o\"\nconcurrency = -1\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("concurrency"), "{e}");
}

#[test]
fn artifact_namespaces_default_to_kcl_and_are_checked() {
    let c = parse("[oci]\nregistry = \"127.0.0.1:5000\"\n").unwrap();
    assert_eq!(c.oci.as_ref().unwrap().artifact_namespaces, ["kcl"]);
    let c = parse("[oci]\nregistry = \"r:5000\"\nartifact_namespaces = [\"kcl\", \"team/pkgs\"]\n")
        .unwrap();
    assert_eq!(
        c.oci.as_ref().unwrap().artifact_namespaces,
        ["kcl", "team/pkgs"]
    );
    for bad in ["..", "kcl/..", "KCL", "a//b", ""] {
        let c = parse(&format!(
            "[oci]\nregistry = \"r:5000\"\nartifact_namespaces = [\"{bad}\"]\n"
        ))
        .unwrap();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("artifact_namespaces"), "{bad}: {e}");
    }
    let e = parse("[oci]\nregistry = \"r\"\nartifact_namespace = [\"kcl\"]\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("artifact_namespace"), "{e}");
}

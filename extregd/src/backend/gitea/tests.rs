use super::model::{parse_sums, pick_asset, Asset};
use super::*;
use crate::backend::tests::entry;
use crate::backend::{newest, utc};

fn asset(id: i64, name: &str) -> Asset {
    Asset {
        id,
        name: name.into(),
        size: 10,
        created_at: None,
        browser_download_url: None,
    }
}

/// The configuration of a backend of organization `org` on `url`.
fn cfg(url: &str, token_path: Option<std::path::PathBuf>) -> GiteaConfig {
    GiteaConfig {
        url: url.into(),
        organization: "org".into(),
        token_path,
        timeout_seconds: 5,
        concurrency: crate::config::DEFAULT_CONCURRENCY,
        verify_ssl: true,
        ca_file: None,
    }
}

#[test]
fn repo_names_map_to_extensions() {
    assert_eq!(
        parse_repo_name("aws_prov"),
        Some((ExtensionType::Provider, "aws"))
    );
    assert_eq!(
        parse_repo_name("kubernetes_taskserv"),
        Some((ExtensionType::Taskserv, "kubernetes"))
    );
    assert_eq!(
        parse_repo_name("buildkit_cluster"),
        Some((ExtensionType::Cluster, "buildkit"))
    );
    assert_eq!(parse_repo_name("website"), None);
    assert_eq!(parse_repo_name("_prov"), None);
    assert_eq!(parse_repo_name("aws_provider"), None);
}

#[test]
fn asset_rule_order() {
    let a = [
        asset(1, "notes.tar.gz"),
        asset(2, "aws-1.0.0.tar.gz"),
        asset(3, "aws_prov.tar.gz"),
    ];
    assert_eq!(pick_asset(&a, "aws_prov", "aws", "1.0.0").unwrap().id, 3);
    assert_eq!(
        pick_asset(&a[..2], "aws_prov", "aws", "1.0.0").unwrap().id,
        2
    );
    assert_eq!(
        pick_asset(&a[..1], "aws_prov", "aws", "1.0.0").unwrap().id,
        1
    );
    // Two candidates and neither named by the rule: ambiguous, none.
    let b = [asset(1, "x.tar.gz"), asset(2, "y.tar.gz")];
    assert!(pick_asset(&b, "aws_prov", "aws", "1.0.0").is_none());
    assert!(pick_asset(&[asset(1, "aws.zip")], "aws_prov", "aws", "1.0.0").is_none());
}

#[test]
fn sums_formats() {
    let h1 = "a".repeat(64);
    let h2 = "B".repeat(64);
    let text = format!("# comment\n{h1}  aws_prov.tar.gz\n{h2} *./other.tar.gz\nnot a line\n");
    let m = parse_sums(&text, None);
    assert_eq!(m.get("aws_prov.tar.gz"), Some(&h1));
    assert_eq!(m.get("other.tar.gz"), Some(&"b".repeat(64)));
    assert_eq!(m.len(), 2);
    let bare = parse_sums(&format!("{h1}\n"), Some("x.tar.gz"));
    assert_eq!(bare.get("x.tar.gz"), Some(&h1));
    assert!(parse_sums(&format!("{h1}\n"), None).is_empty());
}

#[test]
fn times_become_utc() {
    assert_eq!(utc("2024-05-01T10:00:00+02:00"), "2024-05-01T08:00:00Z");
    assert_eq!(utc("2024-05-01T10:00:00-01:30"), "2024-05-01T11:30:00Z");
    assert_eq!(utc("2024-05-01T10:00:00Z"), "2024-05-01T10:00:00Z");
    assert_eq!(utc("garbage"), "garbage");
}

#[test]
fn debug_never_shows_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("tok");
    std::fs::write(&p, "s3cr3t-token-value\nsecond line\n").unwrap();
    let b = GiteaBackend::new(&cfg("http://127.0.0.1:1/", Some(p.clone()))).unwrap();
    let shown = format!("{b:?}");
    assert!(!shown.contains("s3cr3t"), "{shown}");
    assert!(shown.contains("<redacted>"), "{shown}");
    assert_eq!(
        b.inner.token.as_ref().unwrap().header.to_str().unwrap(),
        "token s3cr3t-token-value"
    );
    assert_eq!(b.inner.base, "http://127.0.0.1:1");
    std::fs::write(&p, "\n").unwrap();
    let e = GiteaBackend::new(&cfg("http://127.0.0.1:1", Some(p))).unwrap_err();
    assert!(e.contains("empty"), "{e}");
    let b = GiteaBackend::new(&cfg("https://bot:pa55word@gitea.example/sub/", None)).unwrap();
    let shown = format!("{b:?}");
    assert!(!shown.contains("pa55word"), "{shown}");
    assert!(shown.contains("https://gitea.example/sub"), "{shown}");
    assert_eq!(b.inner.up.shown, "https://gitea.example");
}

#[tokio::test]
async fn unreachable_server_is_named_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("tok");
    std::fs::write(&p, "s3cr3t").unwrap();
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let b = GiteaBackend::new(&cfg(&format!("http://127.0.0.1:{port}"), Some(p))).unwrap();
    let e = b.health().await.unwrap_err();
    assert!(matches!(e, BackendError::Unreachable(_)), "{e:?}");
    let m = e.to_string();
    assert!(m.contains(&format!("127.0.0.1:{port}")), "{m}");
    assert!(!m.contains("s3cr3t") && !m.contains("/api/v1"), "{m}");
}

#[test]
fn newest_skips_flagged_prereleases() {
    let e = [
        entry("1.0.0", false),
        entry("1.1.0", true),
        entry("1.2.0-rc.1", true),
    ];
    assert_eq!(newest(&e).unwrap().record.version, "1.0.0");
    assert_eq!(newest(&e[1..]).unwrap().record.version, "1.2.0-rc.1");
}

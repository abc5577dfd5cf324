//! The socket's dispatch over scripted backends, without a socket:
//! [`crate::ipc::answer`] is what a connection sends after a request's
//! progress frames. Input is checked in the order the plugin labels it
//! (name, then version, then which type), failures carry their kind and field,
//! and the read operations answer what the catalogue holds.

use super::{record, tarball, FakeBackend, Harness};
use crate::ipc::answer;
use extreg_shared::protocol::{Failure, PublishSpec, Request, Response};
use extreg_shared::{ExtensionType, Field, Source};
use sha2::Digest;

const T: ExtensionType = ExtensionType::Taskserv;

fn failure(r: Response) -> Failure {
    match r {
        Response::Failed(f) => f,
        other => panic!("expected a failure, got {other:?}"),
    }
}

fn pull(ext_type: Option<ExtensionType>, name: &str, constraint: &str) -> Request {
    Request::Pull {
        ext_type,
        name: name.into(),
        constraint: constraint.into(),
        pre: false,
        source: None,
    }
}

#[tokio::test]
async fn input_is_checked_name_first_then_version_then_which_type() {
    let local = FakeBackend::new(Source::Local);
    local.hold(T, "redis", "1.0.0", tarball(T, "redis", "1.0.0"));
    let cluster = ExtensionType::Cluster;
    local.hold(
        cluster,
        "redis",
        "1.0.0",
        tarball(cluster, "redis", "1.0.0"),
    );
    let h = Harness::new(&[&local]);
    let app = h.app(&[&local]);

    // A bad name and a bad constraint: the name is at fault.
    let f = failure(answer(&app, pull(None, "../etc", "not a version")).await);
    assert_eq!(
        (f.kind.as_str(), f.field),
        ("invalid_name", Some(Field::Name))
    );
    // A good name, a bad constraint: the version is at fault.
    let f = failure(answer(&app, pull(None, "redis", "not a version")).await);
    assert_eq!(f.field, Some(Field::Version), "{f:?}");
    // Both are fine but the name is in two types: the name is labelled
    // (no --type was given to label) and the message says to add one.
    let f = failure(answer(&app, pull(None, "redis", "^1")).await);
    assert_eq!(f.field, Some(Field::Name), "{f:?}");
    assert!(
        f.message.contains("cluster") && f.message.contains("--type"),
        "{f:?}"
    );
    // Nothing was fetched for any of them.
    assert_eq!(local.calls.fetch(), 0);
}

#[tokio::test]
async fn a_pull_answers_the_verified_artifact_and_the_second_is_a_cache_hit() {
    let gitea = FakeBackend::new(Source::Gitea);
    let bytes = tarball(T, "k8s", "1.2.0");
    gitea.hold(T, "k8s", "1.1.0", tarball(T, "k8s", "1.1.0"));
    gitea.hold(T, "k8s", "1.2.0", bytes.clone());
    let h = Harness::new(&[&gitea]);
    let app = h.app(&[&gitea]);

    let first = match answer(&app, pull(None, "k8s", "^1")).await {
        Response::Pulled(p) => p,
        other => panic!("{other:?}"),
    };
    assert_eq!(first.extension.version, "1.2.0");
    let want = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&bytes)));
    assert_eq!(
        (first.digest.as_str(), first.size),
        (want.as_str(), bytes.len() as u64)
    );
    assert_eq!(std::fs::read(&first.path).unwrap(), bytes);
    assert!(!first.cached);

    let second = match answer(&app, pull(Some(T), "k8s", "=1.2.0")).await {
        Response::Pulled(p) => p,
        other => panic!("{other:?}"),
    };
    assert!(second.cached);
    assert_eq!(second.digest, first.digest);
    assert_eq!(gitea.calls.fetch(), 1);
}

#[tokio::test]
async fn reads_answer_what_the_catalogue_holds_and_unknown_names_are_not_found() {
    let local = FakeBackend::new(Source::Local);
    let oci = FakeBackend::new(Source::Oci);
    local.hold_record(
        record(T, "redis", "1.0.0", Source::Local),
        tarball(T, "redis", "1.0.0"),
    );
    oci.hold_record(
        record(T, "redis", "2.0.0", Source::Oci),
        tarball(T, "redis", "2.0.0"),
    );
    oci.hold(ExtensionType::Provider, "aws", "0.1.0", vec![1, 2, 3]);
    let h = Harness::new(&[&local, &oci]);
    let app = h.app(&[&local, &oci]);

    match answer(
        &app,
        Request::List {
            ext_type: Some(T),
            source: None,
        },
    )
    .await
    {
        Response::Extensions { items, total } => {
            assert_eq!(total, 1);
            assert_eq!(
                (items[0].name.as_str(), items[0].version.as_str()),
                ("redis", "2.0.0")
            );
        }
        other => panic!("{other:?}"),
    }
    match answer(
        &app,
        Request::Versions {
            ext_type: None,
            name: "redis".into(),
        },
    )
    .await
    {
        Response::Versions(vs) => {
            let got: Vec<_> = vs.iter().map(|v| (v.version.as_str(), v.source)).collect();
            assert_eq!(got, [("2.0.0", Source::Oci), ("1.0.0", Source::Local)]);
        }
        other => panic!("{other:?}"),
    }
    let info = Request::Info {
        ext_type: None,
        name: "nope".into(),
        version: None,
    };
    let f = failure(answer(&app, info).await);
    assert_eq!(
        (f.kind.as_str(), f.field),
        ("not_found", Some(Field::Name)),
        "{f:?}"
    );
    let search = Request::Search {
        query: "  ".into(),
        ext_type: None,
        source: None,
        limit: 5,
    };
    let f = failure(answer(&app, search).await);
    assert_eq!(f.kind, "invalid_request", "{f:?}");
}

#[tokio::test]
async fn writes_without_an_oci_backend_say_what_to_configure() {
    let local = FakeBackend::new(Source::Local);
    let h = Harness::new(&[&local]);
    let app = h.app(&[&local]);
    let spec = PublishSpec {
        path: h.dir.path().display().to_string(),
        version: "1.0.0".into(),
        dry_run: true,
        force: false,
        registry: None,
        namespace: None,
    };
    let f = failure(answer(&app, Request::PublishTo(spec)).await);
    assert_eq!(f.kind, "invalid_request", "{f:?}");
    assert!(f.message.contains("[oci] registry"), "{f:?}");
    let del = Request::Delete {
        ext_type: T,
        name: "redis".into(),
        version: "1.0.0".into(),
    };
    let f = failure(answer(&app, del).await);
    assert!(f.message.contains("[oci] registry"), "{f:?}");
    // A second hello on a connection that already said it is refused.
    let hello = Request::Hello {
        protocol: extreg_shared::protocol::PROTOCOL_VERSION,
        client: "x".into(),
    };
    let f = failure(answer(&app, hello).await);
    assert_eq!(f.kind, "invalid_request", "{f:?}");
}

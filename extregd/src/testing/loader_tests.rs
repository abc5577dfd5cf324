//! The loader over scripted backends: loading twice is a no-op, `force`
//! fetches and extracts again, a failed fetch leaves nothing, progress is
//! reported in order.

use super::{tarball, FakeBackend, Harness};
use crate::backend::BackendError;
use crate::load::{LoadRequest, Loader};
use crate::progress::ProgressTx;
use extreg_shared::protocol::Phase;
use extreg_shared::{Constraint, ErrorKind, ExtensionType, Source};

const T: ExtensionType = ExtensionType::Taskserv;

fn request(name: &str, constraint: &str, force: bool) -> LoadRequest {
    LoadRequest {
        ext_type: T,
        name: name.into(),
        constraint: Constraint::parse(constraint).unwrap(),
        pre: false,
        source: None,
        force,
    }
}

/// Every file below `dir`, relative, sorted.
fn files(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn loading_twice_is_a_no_op_and_force_loads_again() {
    let gitea = FakeBackend::new(Source::Gitea);
    gitea.hold(T, "k8s", "1.0.0", tarball(T, "k8s", "1.0.0"));
    gitea.hold(T, "k8s", "1.1.0", tarball(T, "k8s", "1.1.0"));
    let h = Harness::new(&[&gitea]);
    let loader = Loader::new(h.dir.path().join("extensions"));
    let none = ProgressTx::none();

    let first = loader
        .load(&h.catalogue, request("k8s", "^1", false), &none)
        .await
        .unwrap();
    assert_eq!(first.version, "1.1.0");
    assert!(!first.already_loaded && !first.from_cache);
    let dest = std::path::Path::new(&first.path);
    assert!(dest.ends_with("taskserv/k8s/1.1.0"), "{}", first.path);
    let before = files(loader.dir());
    assert!(
        before.contains(&"taskserv/k8s/1.1.0/extension.yaml".to_string()),
        "{before:?}"
    );
    let marker_before = std::fs::read(dest.join(".extregd-load.json")).unwrap();

    let second = loader
        .load(&h.catalogue, request("k8s", "^1", false), &none)
        .await
        .unwrap();
    assert!(second.already_loaded);
    assert_eq!(second.checksum, first.checksum);
    assert_eq!(gitea.calls.fetch(), 1, "nothing fetched again");
    assert_eq!(files(loader.dir()), before, "nothing written again");
    assert_eq!(
        std::fs::read(dest.join(".extregd-load.json")).unwrap(),
        marker_before
    );
    assert_eq!(loader.loaded().len(), 1);

    // --force fetches again (the cached copy is replaced once the new one
    // verifies) and extracts again.
    let forced = loader
        .load(&h.catalogue, request("k8s", "^1", true), &none)
        .await
        .unwrap();
    assert!(!forced.already_loaded);
    assert_eq!(forced.checksum, first.checksum);
    assert_eq!(gitea.calls.fetch(), 2);
    assert_eq!(files(loader.dir()), before);

    // A second loader over the same folder (a restart) knows it is loaded.
    let again = Loader::new(h.dir.path().join("extensions"));
    assert_eq!(again.loaded().len(), 1);
    let r = again
        .load(&h.catalogue, request("k8s", "1.1.0", false), &none)
        .await
        .unwrap();
    assert!(r.already_loaded);
}

#[tokio::test]
async fn concurrent_loads_of_one_version_extract_it_once() {
    let local = FakeBackend::new(Source::Local);
    local.hold(T, "k8s", "1.0.0", tarball(T, "k8s", "1.0.0"));
    local.set_delay(std::time::Duration::from_millis(20));
    let h = Harness::new(&[&local]);
    let loader = Loader::new(h.dir.path().join("extensions"));
    let none = ProgressTx::none();
    let loads = (0..4).map(|_| loader.load(&h.catalogue, request("k8s", "1.0.0", false), &none));
    let results: Vec<_> = futures::future::join_all(loads)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let fresh = results.iter().filter(|r| !r.already_loaded).count();
    assert_eq!(fresh, 1, "one extraction, the others find it done");
    assert_eq!(local.calls.fetch(), 1);
}

#[tokio::test]
async fn a_failed_fetch_leaves_nothing_and_the_next_load_works() {
    let oci = FakeBackend::new(Source::Oci);
    oci.hold(T, "k8s", "1.0.0", tarball(T, "k8s", "1.0.0"));
    oci.fail_fetches(Some(BackendError::Unreachable("reset by peer".into())));
    let h = Harness::new(&[&oci]);
    let loader = Loader::new(h.dir.path().join("extensions"));
    let none = ProgressTx::none();
    let err = loader
        .load(&h.catalogue, request("k8s", "1.0.0", false), &none)
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::BackendError, "{err:?}");
    assert!(files(loader.dir()).is_empty(), "{:?}", files(loader.dir()));
    assert!(h.store.entries().is_empty());

    oci.fail_fetches(None);
    let r = loader
        .load(&h.catalogue, request("k8s", "1.0.0", false), &none)
        .await
        .unwrap();
    assert!(!r.already_loaded);
    assert_eq!(h.store.entries().len(), 1);
}

#[tokio::test]
async fn bytes_that_do_not_match_the_announced_digest_are_refused_and_not_kept() {
    let local = FakeBackend::new(Source::Local);
    let mut rec = super::record(T, "k8s", "1.0.0", Source::Local);
    rec.checksum = Some(crate::backend::sha256_tag(b"something else"));
    local.hold_record(rec, tarball(T, "k8s", "1.0.0"));
    let h = Harness::new(&[&local]);
    let loader = Loader::new(h.dir.path().join("extensions"));
    let err = loader
        .load(
            &h.catalogue,
            request("k8s", "1.0.0", false),
            &ProgressTx::none(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::IntegrityError, "{err:?}");
    assert!(files(loader.dir()).is_empty());
    assert!(h.store.entries().is_empty());
}

#[tokio::test]
async fn progress_goes_resolve_then_download_then_extract() {
    let local = FakeBackend::new(Source::Local);
    let bytes = tarball(T, "k8s", "1.0.0");
    let len = bytes.len() as u64;
    local.hold(T, "k8s", "1.0.0", bytes);
    // Each backend call yields, so the watcher sees each phase as it comes.
    local.set_delay(std::time::Duration::from_millis(5));
    let h = Harness::new(&[&local]);
    let loader = Loader::new(h.dir.path().join("extensions"));
    let (tx, mut rx) = ProgressTx::channel();
    let seen = std::sync::Arc::new(parking_lot::Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    let watcher = tokio::spawn(async move {
        while rx.changed().await.is_ok() {
            if let Some(ev) = rx.borrow_and_update().clone() {
                seen2.lock().push(ev);
            }
        }
    });
    loader
        .load(&h.catalogue, request("k8s", "1.0.0", false), &tx)
        .await
        .unwrap();
    drop(tx);
    watcher.await.unwrap();
    let seen = seen.lock().clone();
    let phases: Vec<Phase> = seen.iter().map(|e| e.phase).collect();
    assert_eq!(phases.first(), Some(&Phase::Resolve), "{seen:?}");
    assert_eq!(phases.last(), Some(&Phase::Extract), "{seen:?}");
    let last = seen.last().unwrap();
    assert_eq!(last.total, Some(len));
    // Phases never go back.
    let order = |p: &Phase| match p {
        Phase::Resolve => 0,
        Phase::Download => 1,
        Phase::Verify => 2,
        Phase::Extract => 3,
        _ => 4,
    };
    assert!(
        phases.windows(2).all(|w| order(&w[0]) <= order(&w[1])),
        "{seen:?}"
    );
}

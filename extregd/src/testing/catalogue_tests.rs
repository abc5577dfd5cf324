//! The catalogue over scripted backends: merge by priority, offline
//! answers from verified artifacts, partial answers, search ranking, and
//! what the caches spare the backends.

use super::{record, tarball, FakeBackend, Harness};
use crate::backend::BackendError;
use extreg_shared::{ErrorKind, Extension, ExtensionType, Source};

const P: ExtensionType = ExtensionType::Provider;
const T: ExtensionType = ExtensionType::Taskserv;

fn versions_of(list: &[crate::backend::VersionEntry]) -> Vec<(String, Source)> {
    list.iter()
        .map(|e| (e.record.version.clone(), e.record.source))
        .collect()
}

fn names(list: &[Extension]) -> Vec<String> {
    list.iter()
        .map(|e| format!("{}/{}", e.ext_type, e.name))
        .collect()
}

/// The error of a call that must fail.
fn failure<T>(r: Result<T, crate::error::Error>) -> crate::error::Error {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e,
    }
}

fn down() -> BackendError {
    BackendError::Unreachable("connection refused".into())
}

#[tokio::test]
async fn the_same_version_in_two_backends_is_served_by_the_earlier_one() {
    let local = FakeBackend::new(Source::Local);
    let oci = FakeBackend::new(Source::Oci);
    local.hold(P, "aws", "1.0.0", b"local bytes".to_vec());
    oci.hold(P, "aws", "1.0.0", b"oci bytes".to_vec());
    oci.hold(P, "aws", "1.1.0", b"newer".to_vec());
    let h = Harness::new(&[&local, &oci]);

    let v = h.catalogue.versions(P, "aws").await.unwrap();
    assert_eq!(
        versions_of(&v.entries),
        [
            ("1.1.0".into(), Source::Oci),
            ("1.0.0".into(), Source::Local)
        ],
        "union, newest first, the shared version from the first backend"
    );
    assert!(v.complete);
    assert_eq!(
        v.entries[1].record.download_url.as_deref(),
        Some("http://127.0.0.1:8082/api/v1/extensions/provider/aws/1.0.0")
    );
    // The listing keeps the newest version, from whichever backend has it.
    let (list, complete) = h.catalogue.list_records(None, None).await.unwrap();
    assert!(complete);
    assert_eq!(list.len(), 1);
    assert_eq!(
        (list[0].version.as_str(), list[0].source),
        ("1.1.0", Source::Oci)
    );

    // The other order: the other backend serves the shared version.
    let h = Harness::new(&[&oci, &local]);
    let v = h.catalogue.versions(P, "aws").await.unwrap();
    assert_eq!(v.entries[1].record.source, Source::Oci);
    let art = h.catalogue.artifact_of(&v.entries[1], false).await.unwrap();
    assert_eq!(art.digest, crate::backend::sha256_tag(b"oci bytes"));
}

#[tokio::test]
async fn an_equal_newest_version_in_the_listing_comes_from_the_earlier_backend() {
    let local = FakeBackend::new(Source::Local);
    let gitea = FakeBackend::new(Source::Gitea);
    local.hold(T, "k8s", "2.0.0", vec![1]);
    gitea.hold(T, "k8s", "2.0.0", vec![2]);
    // A pre-release never replaces a stable version, however high.
    gitea.hold(T, "k8s", "3.0.0-rc.1", vec![3]);
    let h = Harness::new(&[&local, &gitea]);
    let (list, _) = h.catalogue.list_records(Some(T), None).await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(
        (list[0].version.as_str(), list[0].source),
        ("2.0.0", Source::Local)
    );
    // `source` asks one backend only.
    let (list, _) = h
        .catalogue
        .list_records(None, Some(Source::Gitea))
        .await
        .unwrap();
    assert_eq!(list[0].source, Source::Gitea);
}

#[tokio::test]
async fn a_backend_down_is_answered_from_its_verified_artifacts_marked_stale() {
    let oci = FakeBackend::new(Source::Oci);
    oci.hold(P, "aws", "1.0.0", tarball(P, "aws", "1.0.0"));
    oci.hold(P, "aws", "1.1.0", tarball(P, "aws", "1.1.0"));
    oci.hold(T, "k8s", "1.0.0", tarball(T, "k8s", "1.0.0"));
    let h = Harness::new(&[&oci]);
    // One version was downloaded (and so verified and cached) while online.
    let e = h.catalogue.version_entry(P, "aws", "1.0.0").await.unwrap();
    let online = h.catalogue.artifact_of(&e, false).await.unwrap();
    assert_eq!(oci.calls.fetch(), 1);

    oci.go_down(down());
    let restarted = h.restarted(&[&oci]);
    let v = restarted.versions(P, "aws").await.unwrap();
    assert_eq!(
        versions_of(&v.entries),
        [("1.0.0".into(), Source::Oci)],
        "only what was verified is offered offline"
    );
    assert!(v.entries[0].record.stale);
    assert!(!v.complete, "an offline answer is not cached as whole");
    let (list, complete) = restarted.list_records(None, None).await.unwrap();
    assert!(!complete);
    assert_eq!(names(&list), ["provider/aws"]);
    assert!(list[0].stale);
    // The bytes come from the cache, with no fetch.
    let art = restarted.artifact_of(&v.entries[0], false).await.unwrap();
    assert!(art.hit);
    assert_eq!(art.digest, online.digest);
    assert_eq!(oci.calls.fetch(), 1);
    // Nothing cached for an extension: the backend's failure, as a 5xx.
    let err = failure(restarted.versions(T, "k8s").await);
    assert_eq!(err.kind, ErrorKind::BackendError, "{err:?}");
}

#[tokio::test]
async fn offline_answers_come_only_from_the_same_backend_identity() {
    let oci = FakeBackend::new(Source::Oci);
    oci.hold(P, "aws", "1.0.0", tarball(P, "aws", "1.0.0"));
    let h = Harness::new(&[&oci]);
    let e = h.catalogue.version_entry(P, "aws", "1.0.0").await.unwrap();
    h.catalogue.artifact_of(&e, false).await.unwrap();

    // Another registry configured as the OCI backend, unreachable: the
    // artifacts of the first are not its answers.
    let other = FakeBackend::named(Source::Oci, "fake:oci:other-registry");
    other.go_down(down());
    let restarted = h.restarted(&[&other]);
    assert!(restarted.versions(P, "aws").await.is_err());
    assert!(restarted.list_records(None, None).await.is_err());
}

#[tokio::test]
async fn one_backend_failing_gives_the_others_answer_noted_and_not_cached() {
    let local = FakeBackend::new(Source::Local);
    let gitea = FakeBackend::new(Source::Gitea);
    local.hold(P, "aws", "1.0.0", vec![1]);
    gitea.hold(T, "k8s", "1.0.0", vec![2]);
    gitea.go_down(BackendError::Timeout(10));
    let h = Harness::new(&[&local, &gitea]);

    let (list, complete) = h.catalogue.list_records(None, None).await.unwrap();
    assert_eq!(names(&list), ["provider/aws"]);
    assert!(!complete, "the answer says it is partial");
    // The failure is noted for /health, with the backend's words.
    let states = h.catalogue.refresh_states();
    let (_, why) = states[&Source::Gitea].failing().expect("gitea is failing");
    assert!(why.contains("10 s"), "{why}");
    assert!(states[&Source::Local].failing().is_none());
    let r = h.catalogue.list(None, None, 50, 0).await.unwrap();
    assert_eq!(r.total, 1);

    // A partial answer is not cached: once Gitea is back, its extensions
    // are there without waiting for a TTL.
    gitea.come_back();
    let (list, complete) = h.catalogue.list_records(None, None).await.unwrap();
    assert!(complete);
    assert_eq!(names(&list), ["provider/aws", "taskserv/k8s"]);
    assert!(h.catalogue.refresh_states()[&Source::Gitea]
        .failing()
        .is_none());
    // Every backend down and nothing cached: an error, not an empty list.
    local.go_down(down());
    gitea.go_down(down());
    let err = Harness::new(&[&local, &gitea])
        .catalogue
        .list_records(None, None)
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::BackendError, "{err:?}");
}

#[tokio::test]
async fn versions_merge_when_one_backend_fails_and_are_fetched_again_next_time() {
    let local = FakeBackend::new(Source::Local);
    let oci = FakeBackend::new(Source::Oci);
    local.hold(P, "aws", "1.0.0", vec![1]);
    oci.hold(P, "aws", "2.0.0", vec![2]);
    oci.go_down(down());
    let h = Harness::new(&[&local, &oci]);
    let v = h.catalogue.versions(P, "aws").await.unwrap();
    assert_eq!(versions_of(&v.entries), [("1.0.0".into(), Source::Local)]);
    assert!(!v.complete);
    oci.come_back();
    let v = h.catalogue.versions(P, "aws").await.unwrap();
    assert_eq!(
        versions_of(&v.entries),
        [
            ("2.0.0".into(), Source::Oci),
            ("1.0.0".into(), Source::Local)
        ]
    );
    assert_eq!(
        local.calls.versions(),
        2,
        "the partial merge was not cached"
    );
    // The whole one is.
    h.catalogue.versions(P, "aws").await.unwrap();
    assert_eq!(local.calls.versions(), 2);
}

#[tokio::test]
async fn search_ranks_exact_then_prefix_then_substring_then_description_or_tag() {
    let local = FakeBackend::new(Source::Local);
    let mut described = record(T, "cilium", "1.0.0", Source::Local);
    described.description = "Networking for KUBErnetes".into();
    let mut tagged = record(ExtensionType::Cluster, "buildkit", "1.0.0", Source::Local);
    tagged.tags = vec!["Kube".into()];
    local.hold_record(described, vec![1]);
    local.hold_record(tagged, vec![2]);
    local.hold(T, "kubernetes", "1.28.0", vec![3]);
    local.hold(T, "kube", "0.1.0", vec![4]);
    local.hold(P, "aws-kube", "1.0.0", vec![5]);
    local.hold(P, "kubevirt", "1.0.0", vec![6]);
    local.hold(P, "aws", "1.0.0", vec![7]);
    let h = Harness::new(&[&local]);

    let (page, total, complete) = h
        .catalogue
        .search_records("KuBe", None, None, 50)
        .await
        .unwrap();
    assert!(complete);
    assert_eq!(total, 6);
    assert_eq!(
        names(&page),
        [
            "taskserv/kube",       // exact name
            "provider/kubevirt",   // prefix (provider before taskserv)
            "taskserv/kubernetes", // prefix
            "provider/aws-kube",   // substring
            "taskserv/cilium",     // description (taskserv before cluster)
            "cluster/buildkit",    // tag
        ]
    );
    // The limit cuts the page, not the total; a type filter narrows both.
    let (page, total, _) = h
        .catalogue
        .search_records("kube", None, None, 2)
        .await
        .unwrap();
    assert_eq!((page.len(), total), (2, 6));
    let (page, total, _) = h
        .catalogue
        .search_records("kube", Some(P), None, 50)
        .await
        .unwrap();
    assert_eq!(names(&page), ["provider/kubevirt", "provider/aws-kube"]);
    assert_eq!(total, 2);
    let (page, total, _) = h
        .catalogue
        .search_records("nothing-like-it", None, None, 50)
        .await
        .unwrap();
    assert!(page.is_empty());
    assert_eq!(total, 0);
}

#[tokio::test]
async fn cached_answers_ask_no_backend_and_a_clear_asks_again() {
    let local = FakeBackend::new(Source::Local);
    local.hold(P, "aws", "1.0.0", vec![1]);
    local.hold(P, "aws", "1.1.0", vec![2]);
    let h = Harness::new(&[&local]);
    for _ in 0..3 {
        let r = h.catalogue.list(None, None, 50, 0).await.unwrap();
        assert_eq!(r.total, 1);
        h.catalogue.search("aws", None, 10).await.unwrap();
        h.catalogue.get(P, "aws").await.unwrap();
    }
    assert_eq!(local.calls.list(), 1);
    assert_eq!(local.calls.versions(), 1);
    h.catalogue.clear_metadata();
    h.catalogue.list(None, None, 50, 0).await.unwrap();
    assert_eq!(local.calls.list(), 2);
}

#[tokio::test]
async fn concurrent_readers_of_a_cold_listing_share_one_backend_call() {
    let local = FakeBackend::new(Source::Local);
    local.hold(P, "aws", "1.0.0", vec![1]);
    local.set_delay(std::time::Duration::from_millis(50));
    let h = Harness::new(&[&local]);
    let reads = (0..8).map(|_| h.catalogue.list_records(None, None));
    for r in futures::future::join_all(reads).await {
        assert_eq!(names(&r.unwrap().0), ["provider/aws"]);
    }
    assert_eq!(local.calls.list(), 1);
}

#[tokio::test]
async fn an_unknown_name_is_not_found_and_an_ambiguous_one_asks_for_the_type() {
    let local = FakeBackend::new(Source::Local);
    local.hold(P, "shared", "1.0.0", vec![1]);
    local.hold(T, "shared", "1.0.0", vec![2]);
    local.hold(T, "k8s", "1.0.0", vec![3]);
    let h = Harness::new(&[&local]);
    assert_eq!(h.catalogue.resolve_type("k8s").await.unwrap(), T);
    let err = h.catalogue.resolve_type("shared").await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidRequest);
    assert!(
        err.message.contains("provider and taskserv"),
        "{}",
        err.message
    );
    let err = h.catalogue.resolve_type("nope").await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound);
    let err = failure(h.catalogue.versions(P, "nope").await);
    assert_eq!(err.kind, ErrorKind::NotFound);
    let err = h
        .catalogue
        .version_record(T, "k8s", Some("9.9.9"))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound);
    assert_eq!(err.details.as_deref(), Some("available: 1.0.0"));
}

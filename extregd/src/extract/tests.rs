use super::*;
use extreg_shared::Source;

fn marker() -> LoadMarker {
    LoadMarker {
        ext_type: ExtensionType::Taskserv,
        name: "k8s".into(),
        version: "1.0.0".into(),
        source: Source::Local,
        checksum: "sha256:x".into(),
        loaded_at: 0,
    }
}

const MANIFEST: &[u8] = b"extension:\n  name: k8s\n  version: 1.0.0\n  type: taskserv\n";

/// A raw header: the tar crate's builder refuses `..` and absolute
/// paths, so hostile names are written into the header bytes directly.
fn raw_header(path: &str, kind: tar::EntryType, size: u64, link: Option<&str>) -> tar::Header {
    let mut h = tar::Header::new_old();
    {
        let old = h.as_old_mut();
        old.name[..path.len()].copy_from_slice(path.as_bytes());
        if let Some(l) = link {
            old.linkname[..l.len()].copy_from_slice(l.as_bytes());
        }
    }
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(0o644);
    h.set_cksum();
    h
}

enum Item<'a> {
    File(&'a str, &'a [u8]),
    Raw(&'a str, tar::EntryType, Option<&'a str>),
}

fn archive(dir: &Path, items: &[Item]) -> PathBuf {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut b = tar::Builder::new(gz);
    for it in items {
        match it {
            Item::File(p, data) => {
                let h = raw_header(p, tar::EntryType::Regular, data.len() as u64, None);
                b.append(&h, *data).unwrap();
            }
            Item::Raw(p, kind, link) => {
                let h = raw_header(p, *kind, 0, *link);
                b.append(&h, std::io::empty()).unwrap();
            }
        }
    }
    let bytes = b.into_inner().unwrap().finish().unwrap();
    let p = dir.join("a.tar.gz");
    std::fs::write(&p, bytes).unwrap();
    p
}

fn try_extract(items: &[Item]) -> (Result<Manifest, ExtractError>, tempfile::TempDir) {
    let d = tempfile::tempdir().unwrap();
    let a = archive(d.path(), items);
    let dest = d.path().join("ext/taskserv/k8s/1.0.0");
    let r = extract(
        std::fs::File::open(&a).unwrap(),
        &dest,
        &marker(),
        Limits {
            max_bytes: 1 << 20,
            max_entries: 100,
        },
    );
    (r, d)
}

/// After a refusal nothing is left in the extensions folder.
fn nothing_left(d: &tempfile::TempDir) {
    let parent = d.path().join("ext/taskserv/k8s");
    let left: Vec<_> = std::fs::read_dir(&parent)
        .map(|r| r.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn a_good_archive_lands_atomically_with_its_marker() {
    let (r, d) = try_extract(&[
        Item::File("extension.yaml", MANIFEST),
        Item::File("kcl/a.k", b"x"),
    ]);
    assert_eq!(r.unwrap().name, "k8s");
    let dest = d.path().join("ext/taskserv/k8s/1.0.0");
    assert_eq!(std::fs::read(dest.join("kcl/a.k")).unwrap(), b"x");
    assert_eq!(read_marker(&dest).unwrap(), marker());
    assert_eq!(loaded(&d.path().join("ext")).len(), 1);
    let others: Vec<_> = std::fs::read_dir(d.path().join("ext/taskserv/k8s"))
        .unwrap()
        .collect();
    assert_eq!(others.len(), 1, "no temp folder left");
}

#[test]
fn a_single_top_folder_is_stripped() {
    let (r, d) = try_extract(&[
        Item::File("k8s/extension.yaml", MANIFEST),
        Item::File("k8s/x", b"1"),
    ]);
    r.unwrap();
    assert!(d.path().join("ext/taskserv/k8s/1.0.0/x").is_file());
}

/// An archive, and a check of the error it must be refused with.
type Case<'a> = (Vec<Item<'a>>, fn(&ExtractError) -> bool);

#[test]
fn hostile_archives_are_refused_and_leave_nothing() {
    use tar::EntryType as E;
    let cases: Vec<Case> = vec![
        (
            vec![
                Item::File("extension.yaml", MANIFEST),
                Item::File("/etc/evil", b"x"),
            ],
            |e| matches!(e, ExtractError::Absolute(_)),
        ),
        (
            vec![
                Item::File("extension.yaml", MANIFEST),
                Item::File("../evil", b"x"),
            ],
            |e| matches!(e, ExtractError::DotDot(_)),
        ),
        (
            vec![
                Item::File("extension.yaml", MANIFEST),
                Item::File("a/../../evil", b"x"),
            ],
            |e| matches!(e, ExtractError::DotDot(_)),
        ),
        (
            vec![
                Item::File("extension.yaml", MANIFEST),
                Item::Raw("up", E::Symlink, Some("../../..")),
            ],
            |e| matches!(e, ExtractError::LinkEscapes { .. }),
        ),
        (
            vec![
                Item::File("extension.yaml", MANIFEST),
                Item::Raw("abs", E::Symlink, Some("/etc/passwd")),
            ],
            |e| matches!(e, ExtractError::LinkEscapes { .. }),
        ),
        (
            vec![
                Item::File("extension.yaml", MANIFEST),
                Item::Raw("hard", E::Link, Some("../outside")),
            ],
            |e| matches!(e, ExtractError::LinkEscapes { .. }),
        ),
        // A link that stays inside, then a file written through it.
        (
            vec![
                Item::File("extension.yaml", MANIFEST),
                Item::Raw("sub", E::Directory, None),
                Item::Raw("l", E::Symlink, Some("sub")),
                Item::File("l/x", b"x"),
            ],
            |e| matches!(e, ExtractError::ThroughLink(_)),
        ),
        (
            vec![
                Item::File("extension.yaml", MANIFEST),
                Item::Raw("dev", E::Char, None),
            ],
            |e| matches!(e, ExtractError::Special(_)),
        ),
        (
            vec![
                Item::File("extension.yaml", MANIFEST),
                Item::Raw("blk", E::Block, None),
            ],
            |e| matches!(e, ExtractError::Special(_)),
        ),
        (
            vec![
                Item::File("extension.yaml", MANIFEST),
                Item::Raw("fifo", E::Fifo, None),
            ],
            |e| matches!(e, ExtractError::Special(_)),
        ),
        (vec![Item::File("kcl/a.k", b"x")], |e| {
            matches!(e, ExtractError::NoManifest)
        }),
        (
            vec![Item::File(
                "extension.yaml",
                b"extension:\n  name: other\n  version: 1.0.0\n  type: taskserv\n",
            )],
            |e| matches!(e, ExtractError::Mismatch { .. }),
        ),
        (
            vec![Item::File(
                "extension.yaml",
                b"extension:\n  description: x\n",
            )],
            |e| {
                e.to_string()
                    .contains("extension.name, extension.version, extension.type")
            },
        ),
    ];
    for (i, (items, ok)) in cases.into_iter().enumerate() {
        let (r, d) = try_extract(&items);
        let e = r.expect_err(&format!("case {i} was accepted"));
        assert!(ok(&e), "case {i}: unexpected error {e}");
        nothing_left(&d);
    }
}

#[test]
fn a_compression_bomb_stops_at_the_limit() {
    let d = tempfile::tempdir().unwrap();
    let zeros = vec![0u8; 4 << 20];
    let a = archive(
        d.path(),
        &[
            Item::File("extension.yaml", MANIFEST),
            Item::File("zeros", &zeros),
        ],
    );
    assert!(
        std::fs::metadata(&a).unwrap().len() < 64 << 10,
        "it compresses well"
    );
    let dest = d.path().join("ext/taskserv/k8s/1.0.0");
    let e = extract(
        std::fs::File::open(&a).unwrap(),
        &dest,
        &marker(),
        Limits {
            max_bytes: 1 << 20,
            max_entries: 100,
        },
    )
    .unwrap_err();
    assert_eq!(e, ExtractError::TooLarge(1 << 20));
    nothing_left(&d);
    let many: Vec<Item> = (0..200).map(|_| Item::File("f", b"")).collect();
    let (r, d) = try_extract(&many);
    assert_eq!(r.unwrap_err(), ExtractError::TooMany(100));
    nothing_left(&d);
}

#[test]
fn a_chain_of_links_cannot_escape() {
    use tar::EntryType as E;
    let (r, d) = try_extract(&[
        Item::File("extension.yaml", MANIFEST),
        Item::Raw("a/b/c/d/e/f/g/h", E::Directory, None),
        Item::Raw(
            "a/b/c/d/e/f/g/h/l",
            E::Symlink,
            Some("../../../../../../../.."),
        ),
        Item::Raw(
            ".extregd-load.json",
            E::Symlink,
            Some("a/b/c/d/e/f/g/h/l/../../../../../../../../victim"),
        ),
    ]);
    let e = r.expect_err("the chain was accepted");
    assert!(matches!(e, ExtractError::LinkEscapes { .. }), "{e}");
    nothing_left(&d);
    assert!(!d.path().join("ext/taskserv/victim").exists());
}

#[test]
fn hard_links_do_not_multiply_the_size() {
    use tar::EntryType as E;
    let big = vec![7u8; 600 << 10];
    let mut items = vec![
        Item::File("extension.yaml", MANIFEST),
        Item::File("big", &big),
    ];
    let names: Vec<String> = (0..50).map(|i| format!("h{i}")).collect();
    for n in &names {
        items.push(Item::Raw(n, E::Link, Some("big")));
    }
    let (r, d) = try_extract(&items);
    r.expect("hard links inside the folder are fine and take no space");
    let dest = d.path().join("ext/taskserv/k8s/1.0.0");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::metadata(dest.join("h7")).unwrap().ino(),
        std::fs::metadata(dest.join("big")).unwrap().ino()
    );
}

#[test]
fn a_marker_in_the_archive_is_replaced_not_followed() {
    use tar::EntryType as E;
    let (r, d) = try_extract(&[
        Item::File("extension.yaml", MANIFEST),
        Item::File("inside", b"keep me"),
        Item::Raw(".extregd-load.json", E::Symlink, Some("inside")),
    ]);
    r.unwrap();
    let dest = d.path().join("ext/taskserv/k8s/1.0.0");
    assert_eq!(std::fs::read(dest.join("inside")).unwrap(), b"keep me");
    assert_eq!(read_marker(&dest).unwrap(), marker());
}

#[test]
fn links_are_checked_against_the_folder_that_moves() {
    use tar::EntryType as E;
    let (r, d) = try_extract(&[
        Item::File("k8s/extension.yaml", MANIFEST),
        Item::Raw("k8s/up", E::Symlink, Some("..")),
    ]);
    assert!(matches!(r, Err(ExtractError::LinkEscapes { .. })), "{r:?}");
    nothing_left(&d);
    let (r, _d) = try_extract(&[
        Item::File("extension.yaml", MANIFEST),
        Item::Raw(".extregd-load.json", E::Directory, None),
    ]);
    assert!(matches!(r, Err(ExtractError::Corrupt(_))), "{r:?}");
}

#[test]
fn conflicting_entries_are_the_archives_fault() {
    use tar::EntryType as E;
    let (r, d) = try_extract(&[
        Item::File("extension.yaml", MANIFEST),
        Item::File("x", b"a file"),
        Item::Raw("x/y", E::Directory, None),
    ]);
    assert!(matches!(r, Err(ExtractError::Corrupt(_))), "{r:?}");
    nothing_left(&d);
}

#[test]
fn leftovers_of_a_crash_are_cleaned() {
    let d = tempfile::tempdir().unwrap();
    let left = d.path().join("taskserv/k8s/.extracting-abc/x");
    std::fs::create_dir_all(&left).unwrap();
    clean_leftovers(d.path());
    assert!(!d.path().join("taskserv/k8s/.extracting-abc").exists());
}

#[test]
fn corrupt_archives_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let a = d.path().join("a.tar.gz");
    std::fs::write(&a, b"not gzip at all").unwrap();
    let e = extract(
        std::fs::File::open(&a).unwrap(),
        &d.path().join("ext/t/n/1.0.0"),
        &marker(),
        Limits::default(),
    )
    .unwrap_err();
    assert!(matches!(e, ExtractError::Corrupt(_)), "{e}");
}

#[test]
fn a_reload_swaps_the_old_copy_out() {
    let d = tempfile::tempdir().unwrap();
    let dest = d.path().join("ext/taskserv/k8s/1.0.0");
    let a = archive(
        d.path(),
        &[
            Item::File("extension.yaml", MANIFEST),
            Item::File("v", b"1"),
        ],
    );
    extract(
        std::fs::File::open(&a).unwrap(),
        &dest,
        &marker(),
        Limits::default(),
    )
    .unwrap();
    std::fs::write(dest.join("stray"), b"local edit").unwrap();
    let a = archive(
        d.path(),
        &[
            Item::File("extension.yaml", MANIFEST),
            Item::File("v", b"2"),
        ],
    );
    extract(
        std::fs::File::open(&a).unwrap(),
        &dest,
        &marker(),
        Limits::default(),
    )
    .unwrap();
    assert_eq!(std::fs::read(dest.join("v")).unwrap(), b"2");
    assert!(!dest.join("stray").exists());
}

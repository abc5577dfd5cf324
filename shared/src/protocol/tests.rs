use super::*;
use proptest::prelude::*;

fn sample_ext() -> Extension {
    Extension {
        name: "kubernetes".into(),
        ext_type: ExtensionType::Taskserv,
        version: "1.28.0".into(),
        description: "K8s".into(),
        author: None,
        repository: Some("https://x".into()),
        source: Source::Local,
        published_at: Some("2025-10-06T12:00:00Z".into()),
        download_url: None,
        checksum: Some("sha256:00".into()),
        size: Some(10),
        tags: vec!["a".into()],
        prerelease: false,
        stale: false,
        requires: vec![],
        dependencies: vec![],
        signature: Default::default(),
        mismatch: None,
    }
}

#[test]
fn round_trip_every_shape() {
    let reqs = vec![
        Request::Hello {
            protocol: PROTOCOL_VERSION,
            client: "t".into(),
        },
        Request::List {
            ext_type: None,
            source: Some(Source::Oci),
        },
        Request::Search {
            query: "k".into(),
            ext_type: Some(ExtensionType::Cluster),
            source: None,
            limit: 5,
        },
        Request::Info {
            ext_type: None,
            name: "x".into(),
            version: Some("1.0.0".into()),
        },
        Request::CacheClear {
            ext_type: None,
            name: None,
            all: true,
        },
        Request::CachePrune { days: 30 },
        Request::CachePruneOlderThan { seconds: 3600 },
        Request::Complete {
            ext_type: Some(ExtensionType::Taskserv),
            name: Some("k".into()),
        },
    ];
    for (i, r) in reqs.into_iter().enumerate() {
        let env = Envelope {
            id: i as u64,
            body: r,
        };
        let bytes = encode(&env).unwrap();
        let back: Envelope<Request> = decode(&bytes[HEADER_LEN..]).unwrap();
        assert_eq!(back, env);
    }
    let resp = Envelope {
        id: 9,
        body: Response::Extensions {
            items: vec![sample_ext(), sample_ext()],
            total: 2,
        },
    };
    let bytes = encode(&resp).unwrap();
    assert_eq!(decode::<Response>(&bytes[HEADER_LEN..]).unwrap(), resp);
    for body in [
        Response::Failed(Failure {
            kind: "not_found".into(),
            message: "Extension provider/aws version 9.9.9 not found".into(),
            details: Some("available: 1.0.0".into()),
            field: Some(Field::Version),
        }),
        Response::Progress(ProgressEvent {
            phase: Phase::Download,
            done: 5,
            total: Some(10),
        }),
        Response::Completions(Completions {
            names: vec![CompletionName {
                name: "k".into(),
                ext_type: ExtensionType::Cluster,
                description: "d".into(),
            }],
            versions: vec!["1.0.0".into()],
        }),
    ] {
        let env = Envelope { id: 4, body };
        let bytes = encode(&env).unwrap();
        assert_eq!(decode::<Response>(&bytes[HEADER_LEN..]).unwrap(), env);
    }
}

/// A peer of another release must still read our hello and our error:
/// `Request::Hello` (0), `Response::Hello` (0) and `Response::Error` (1)
/// keep their variant positions (postcard writes the index as the first
/// byte after the id). New variants go at the end.
#[test]
fn hello_and_error_keep_their_wire_positions() {
    let tag = |bytes: Vec<u8>| bytes[HEADER_LEN + 1]; // id 1 is one varint byte
    let req = encode(&Envelope {
        id: 1,
        body: Request::Hello {
            protocol: 1,
            client: String::new(),
        },
    })
    .unwrap();
    assert_eq!(tag(req), 0);
    let hello = encode(&Envelope {
        id: 1,
        body: Response::Hello {
            protocol: 1,
            server: String::new(),
        },
    })
    .unwrap();
    assert_eq!(tag(hello), 0);
    let err = encode(&Envelope {
        id: 1,
        body: Response::Error(ErrorBody {
            error: String::new(),
            message: String::new(),
            details: None,
        }),
    })
    .unwrap();
    assert_eq!(
        tag(err),
        1,
        "Response::Error moved: old and new releases would misread refusals"
    );
}

#[test]
fn header_limits() {
    assert_eq!(frame_len([0, 0, 0, 0]), Err(FrameError::Empty));
    assert!(matches!(
        frame_len([0xff, 0xff, 0xff, 0xff]),
        Err(FrameError::TooLarge { .. })
    ));
    assert_eq!(frame_len([0, 0, 1, 0]), Ok(256));
}

#[test]
fn trailing_bytes_and_garbage_are_malformed() {
    let mut bytes = encode(&Envelope {
        id: 1,
        body: Request::Health,
    })
    .unwrap();
    bytes.push(0);
    assert!(matches!(
        decode::<Request>(&bytes[HEADER_LEN..]),
        Err(FrameError::Malformed(_))
    ));
    assert!(matches!(
        decode::<Request>(&[0xff; 8]),
        Err(FrameError::Malformed(_))
    ));
}

#[test]
fn decoder_reassembles_split_frames() {
    let a = encode(&Envelope {
        id: 1,
        body: Request::Health,
    })
    .unwrap();
    let b = encode(&Envelope {
        id: 2,
        body: Request::CacheStats,
    })
    .unwrap();
    let all = [a, b].concat();
    let mut d = FrameDecoder::default();
    let mut got = Vec::new();
    for byte in all {
        d.push(&[byte]);
        while let Some(m) = d.next_frame::<Request>().unwrap() {
            got.push(m.id);
        }
    }
    assert_eq!(got, vec![1, 2]);
    assert_eq!(d.pending(), 0);
}

#[test]
fn version_check_names_both() {
    assert!(check_version(1, 1).is_ok());
    let e = check_version(1, 2).unwrap_err();
    assert!(e.contains("version 1") && e.contains("version 2"), "{e}");
}

#[test]
fn socket_path_rules() {
    assert_eq!(
        default_socket_path(Some(Path::new("/run/user/1000")), 1000),
        PathBuf::from("/run/user/1000/extregd/extregd.sock")
    );
    assert_eq!(
        default_socket_path(None, 42),
        PathBuf::from("/tmp/extregd-42/extregd.sock")
    );
    assert_eq!(
        default_socket_path(Some(Path::new("relative")), 7),
        PathBuf::from("/tmp/extregd-7/extregd.sock")
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Any bytes, in any chunking: the decoder returns frames or an
    /// error, never panics, and never holds more than it was given.
    #[test]
    fn decoder_never_panics(data in proptest::collection::vec(any::<u8>(), 0..512), cut in 0usize..512) {
        let mut d = FrameDecoder::default();
        let cut = cut.min(data.len());
        d.push(&data[..cut]);
        let _ = d.next_frame::<Request>();
        d.push(&data[cut..]);
        while let Ok(Some(_)) = d.next_frame::<Response>() {}
        prop_assert!(d.pending() <= data.len());
    }

    /// Valid frames with a flipped byte decode or fail cleanly.
    #[test]
    fn corrupted_frames_fail_cleanly(q in ".{0,40}", limit in any::<u32>(), flip in any::<usize>(), bit in 0u8..8) {
        let env = Envelope { id: 3, body: Request::Search { query: q, ext_type: None, source: None, limit } };
        let mut bytes = encode(&env).unwrap();
        let i = flip % bytes.len();
        bytes[i] ^= 1 << bit;
        let mut d = FrameDecoder::default();
        d.push(&bytes);
        let _ = d.next_frame::<Request>();
    }

    #[test]
    fn requests_round_trip(name in "[a-z0-9-]{1,20}", days in any::<u32>(), id in any::<u64>()) {
        for body in [
            Request::Versions { ext_type: Some(ExtensionType::Provider), name: name.clone() },
            Request::CachePrune { days },
            Request::Pull { ext_type: None, name: name.clone(), constraint: "^1".into(), pre: false, source: Some(Source::Gitea) },
            Request::Load { ext_type: None, name: name.clone(), constraint: String::new(), pre: true, source: None, force: true },
        ] {
            let env = Envelope { id, body };
            let bytes = encode(&env).unwrap();
            prop_assert_eq!(decode::<Request>(&bytes[HEADER_LEN..]).unwrap(), env);
        }
    }
}

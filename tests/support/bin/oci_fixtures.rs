//! Pushes benchmark fixtures to a running registry, for `bench/oci.sh`:
//!
//!   oci-fixtures URL NAMESPACE EXTENSIONS VERSIONS [BIG_FILE]
//!
//! EXTENSIONS repositories `{NAMESPACE}/bench{i}-{type}`, each with VERSIONS
//! tags `1.{v}.0` (one manifest per version, annotated, sharing one small
//! layer per repository), pushed by 4 threads. With BIG_FILE, that file is
//! also pushed as `{NAMESPACE}/big-provider:1.0.0` and its layer digest
//! printed.

use extreg_tests::registry::{artifact_manifest, Registry};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 {
        eprintln!("usage: oci-fixtures URL NAMESPACE EXTENSIONS VERSIONS [BIG_FILE]");
        std::process::exit(2);
    }
    let (url, ns) = (&args[1], &args[2]);
    let exts: usize = args[3].parse().expect("EXTENSIONS");
    let versions: usize = args[4].parse().expect("VERSIONS");
    let types = ["provider", "taskserv", "cluster"];
    std::thread::scope(|s| {
        for worker in 0..4 {
            s.spawn(move || {
                let reg = Registry::attach(url, None);
                for i in (0..exts).filter(|i| i % 4 == worker) {
                    let t = types[i % 3];
                    let name = format!("bench{i}");
                    let repo = format!("{ns}/{name}-{t}");
                    let layer = extreg_tests::tar_gz(&[(
                        "extension.yaml".to_string(),
                        extreg_tests::manifest(t, &name, "1.0.0", "bench", &[]).into_bytes(),
                    )]);
                    reg.push_blob(&repo, b"{}");
                    let digest = reg.push_blob(&repo, &layer);
                    for v in 0..versions {
                        let version = format!("1.{v}.0");
                        let desc = format!("Benchmark extension {i}");
                        let m = artifact_manifest(
                            &digest,
                            layer.len(),
                            &[
                                ("org.opencontainers.image.version", &version),
                                ("org.opencontainers.image.description", &desc),
                                ("org.opencontainers.image.created", "2026-01-01T00:00:00Z"),
                            ],
                        );
                        reg.put_manifest(&repo, &m, &[&version]);
                    }
                }
            });
        }
    });
    if let Some(big) = args.get(5) {
        let data = std::fs::read(big).expect("BIG_FILE");
        let reg = Registry::attach(url, None);
        let p = reg.push_artifact(&format!("{ns}/big-provider"), &["1.0.0"], &data, &[]);
        println!("{}", p.layer_digest);
    }
}

//! Results of the command examples, computed over the repository's example
//! catalogue (`examples/catalog`) served with `public_url =
//! "http://127.0.0.1:8082"` and file times of 2025-10-06T12:00:00Z, and an
//! empty OCI registry that `ext publish` and `ext delete` write to (the
//! folder they publish, `./my-extension`, is [`MY_EXTENSION_YAML`]). The
//! examples double as tests (`tests/examples.rs`), so these values are
//! checked against a real daemon on every run.

use nu_protocol::{Record, Span, Value};

const URL: &str = "http://127.0.0.1:8082/api/v1/extensions";
const PUBLISHED: &str = "2025-10-06T12:00:00Z";

fn s(v: &str) -> Value {
    Value::string(v, Span::unknown())
}

fn date() -> Value {
    crate::values::date(PUBLISHED, Span::unknown())
}

fn list(items: Vec<Value>) -> Value {
    Value::list(items, Span::unknown())
}

/// One version row as `ext versions` prints it.
pub fn version_row(ty: &str, name: &str, version: &str, checksum: &str, size: i64) -> Value {
    let mut r = Record::new();
    r.push("version", s(version));
    r.push("published_at", date());
    r.push("download_url", s(&format!("{URL}/{ty}/{name}/{version}")));
    r.push("checksum", s(checksum));
    r.push("size", Value::filesize(size, Span::unknown()));
    r.push("prerelease", Value::bool(false, Span::unknown()));
    r.push("source", s("local"));
    r.push("stale", Value::bool(false, Span::unknown()));
    r.push("signature", unsigned_local());
    r.push("mismatch", Value::nothing(Span::unknown()));
    Value::record(r, Span::unknown())
}

/// The signature state of a local-folder version: no signatures there.
fn unsigned_local() -> Value {
    let mut r = Record::new();
    r.push("signed", Value::nothing(Span::unknown()));
    r.push("verified", Value::bool(false, Span::unknown()));
    r.push("key_id", Value::nothing(Span::unknown()));
    Value::record(r, Span::unknown())
}

/// One extension row as `ext list`, `ext search` and `ext info` print it.
pub struct Row<'a> {
    pub ty: &'a str,
    pub name: &'a str,
    pub version: &'a str,
    pub description: &'a str,
    pub author: &'a str,
    pub checksum: &'a str,
    pub size: i64,
    pub tags: &'a [&'a str],
}

pub fn extension_row(x: Row<'_>) -> Value {
    let mut r = Record::new();
    r.push("name", s(x.name));
    r.push("type", s(x.ty));
    r.push("version", s(x.version));
    r.push("description", s(x.description));
    r.push("author", s(x.author));
    r.push(
        "repository",
        s(&format!("https://example.org/extensions/{}", x.name)),
    );
    r.push("source", s("local"));
    r.push("published_at", date());
    r.push(
        "download_url",
        s(&format!("{URL}/{}/{}/{}", x.ty, x.name, x.version)),
    );
    r.push("checksum", s(x.checksum));
    r.push("size", Value::filesize(x.size, Span::unknown()));
    r.push("tags", list(x.tags.iter().map(|t| s(t)).collect()));
    r.push("prerelease", Value::bool(false, Span::unknown()));
    r.push("stale", Value::bool(false, Span::unknown()));
    r.push("requires", list(vec![]));
    r.push("dependencies", list(vec![]));
    r.push("signature", unsigned_local());
    r.push("mismatch", Value::nothing(Span::unknown()));
    Value::record(r, Span::unknown())
}

pub fn k3s_versions() -> Value {
    list(vec![version_row(
        "taskserv",
        "k3s",
        "1.27.5",
        "sha256:04f55cfccb9b2be3e6d759aa3d3b2ea2e65ee1b2961ab91a239637c38c5fde4e",
        469,
    )])
}

pub fn aws_1_1_0() -> Value {
    extension_row(Row {
        ty: "provider",
        name: "aws",
        version: "1.1.0",
        description: "AWS provider for provisioning infrastructure",
        author: "provisioning-team",
        checksum: "sha256:1b54f3cc557ae123cfd161081e4559a29501abf6215576095d69921a43c1571b",
        size: 467,
        tags: &["cloud", "aws", "infrastructure"],
    })
}

pub fn clusters() -> Value {
    list(vec![
        extension_row(Row {
            ty: "cluster",
            name: "buildkit",
            version: "0.12.0",
            description: "BuildKit cluster for container image builds",
            author: "provisioning-team",
            checksum: "sha256:c2b926dd3e96ecd15e3271c8bdb1b479c55a7948f46265ec3013eab4045e7b77",
            size: 469,
            tags: &["containers", "build"],
        }),
        extension_row(Row {
            ty: "cluster",
            name: "web",
            version: "1.0.0",
            description: "Web cluster: load balancer and app servers",
            author: "community",
            checksum: "sha256:f1b04b70b74808feefb1cd5139ee6623412d5e395259011a90bf52851461c0ed",
            size: 479,
            tags: &["web", "nginx"],
        }),
    ])
}

pub fn empty() -> Value {
    list(vec![])
}

/// k3s 1.27.5's artifact digest in the example catalogue.
pub const K3S_DIGEST: &str =
    "sha256:04f55cfccb9b2be3e6d759aa3d3b2ea2e65ee1b2961ab91a239637c38c5fde4e";

/// The layer digest of the KCL package `kcl/provisioning-core:1.0.0` the
/// examples test pushes (`extreg_tests::registry::kcl_package`).
pub const KCL_CORE_DIGEST: &str =
    "sha256:ce45a3f1fa13cb6b19c3454db49cd8767e763915a1dc546cba45061199b6331b";

/// The record `ext cache clear` and `ext cache prune` return.
pub fn removed(entries: i64, bytes: i64) -> Value {
    let mut r = Record::new();
    r.push("removed", Value::int(entries, Span::unknown()));
    r.push("freed", Value::filesize(bytes, Span::unknown()));
    Value::record(r, Span::unknown())
}

pub fn nothing_removed() -> Value {
    removed(0, 0)
}

/// `extension.yaml` of `./my-extension`, the folder the `ext publish`
/// examples publish (the examples test writes it into the current folder).
pub const MY_EXTENSION_YAML: &str = "extension:\n  name: my-extension\n  version: 1.0.0\n  type: taskserv\n  description: An example extension\n  author: examples\n";

/// The names of the example catalogue's clusters.
pub fn cluster_names() -> Value {
    list(vec![s("buildkit"), s("web")])
}

//! `ext kcl`, `ext kcl list`, `ext kcl pull`: KCL packages (and other
//! generic OCI artifacts) in the namespaces the daemon reads (`[oci]
//! artifact_namespaces`, seed 003). The daemon lists and pulls; the
//! plugin only shapes the answer (filesize and date columns).

use super::{example, example_with, ArgSpans, Ctx, ExtCommand};
use extreg_shared::artifact::{ArtifactPull, OciArtifact};
use extreg_shared::protocol::{Request, Response};
use nu_plugin::EvaluatedCall;
use nu_protocol::{Example, LabeledError, Record, Signature, Span, SyntaxShape, Value};

/// The namespace when none is given: the seed's KCL namespace.
pub const DEFAULT_NAMESPACE: &str = "kcl";

pub struct Kcl;
pub struct KclList;
pub struct KclPull;

/// One artifact as a row: `size` a filesize, `created_at` a date.
fn row(a: &OciArtifact, span: Span) -> Record {
    let mut r = Record::new();
    r.push("name", Value::string(&a.name, span));
    r.push("version", Value::string(&a.version, span));
    r.push("namespace", Value::string(&a.namespace, span));
    r.push(
        "size",
        Value::filesize(a.size.min(i64::MAX as u64) as i64, span),
    );
    r.push(
        "created_at",
        a.created_at
            .as_deref()
            .map(|c| crate::values::date(c, span))
            .unwrap_or_else(|| Value::nothing(span)),
    );
    r.push("digest", Value::string(&a.digest, span));
    r.push("media_type", Value::string(&a.media_type, span));
    r.push("layer_digest", Value::string(&a.layer_digest, span));
    r.push("layer_media_type", Value::string(&a.layer_media_type, span));
    r
}

fn pulled(p: &ArtifactPull, span: Span) -> Value {
    let mut r = row(&p.artifact, span);
    r.push("path", Value::string(&p.path, span));
    r.push("cached", Value::bool(p.cached, span));
    Value::record(r, span)
}

/// `--namespace`: a namespace by the OCI grammar (checked here, so a typo
/// is labelled before any I/O); the default `kcl`.
fn namespace_flag(call: &EvaluatedCall) -> Result<(String, Option<Span>), LabeledError> {
    let Some(v) = super::flag_value(call, "namespace") else {
        return Ok((DEFAULT_NAMESPACE.to_string(), None));
    };
    let span = v.span();
    let s = v.as_str().map_err(|_| {
        LabeledError::new("--namespace takes a string").with_label("not a string", span)
    })?;
    extreg_shared::artifact::validate_namespace(s).map_err(|m| {
        LabeledError::new("invalid namespace")
            .with_label(m, span)
            .with_help("a namespace listed in extregd's [oci] artifact_namespaces, e.g. kcl")
    })?;
    Ok((s.to_string(), Some(span)))
}

fn namespace_signature(sig: Signature) -> Signature {
    sig.named(
        "namespace",
        SyntaxShape::String,
        "the OCI namespace (one of extregd's [oci] artifact_namespaces; default kcl)",
        Some('n'),
    )
}

impl ExtCommand for Kcl {
    fn search_terms(&self) -> Vec<&str> {
        vec!["kcl", "oci", "package", "artifact"]
    }

    fn examples(&self) -> Vec<Example<'_>> {
        vec![example_with(
            "ext kcl | describe",
            "The help text, listing the kcl subcommands",
            Value::test_string("string"),
        )]
    }

    fn run(&self, cx: &Ctx) -> Result<Value, LabeledError> {
        super::help(cx)
    }
}

impl ExtCommand for KclList {
    fn extra_description(&self) -> &str {
        "Columns: name, version, namespace, size (the package layer), created_at (null when the \
         manifest does not say), digest (the manifest's), media_type, layer_digest (what `ext kcl pull` \
         verifies), layer_media_type. Only the namespaces in extregd's [oci] artifact_namespaces \
         can be read. Cached by the daemon for [cache] ttl_seconds; `ext discover --refresh` drops it."
    }

    fn arguments(&self, sig: Signature) -> Signature {
        namespace_signature(sig)
    }

    fn search_terms(&self) -> Vec<&str> {
        vec!["kcl", "oci", "package", "artifact", "list"]
    }

    fn examples(&self) -> Vec<Example<'_>> {
        vec![
            example_with(
                "(ext kcl list).0.version",
                "The first package's version (over the example registry)",
                Value::test_string("1.0.0"),
            ),
            // Need `where`, `sort-by`, `select`: run through the real nu
            // in tests/e2e/kcl.rs (the plugin test harness has none).
            example(
                "ext kcl list | where name == provisioning-core | sort-by created_at | last",
                "The newest provisioning-core package",
            ),
            example(
                "ext kcl list --namespace kcl | where size > 1kb | select name version size",
                "Packages over 1 kB",
            ),
        ]
    }

    fn run(&self, cx: &Ctx) -> Result<Value, LabeledError> {
        let (namespace, ns_span) = namespace_flag(cx.call)?;
        let spans = ArgSpans {
            registry: ns_span,
            ..Default::default()
        };
        crate::answer!(cx, cx.ask(spans, Request::OciArtifacts { namespace })?,
            Response::OciArtifacts(items) => cx.table(&items, |a, span| Value::record(row(a, span), span)))
    }
}

impl ExtCommand for KclPull {
    fn extra_description(&self) -> &str {
        "Returns the package's listing row plus path (the verified layer in the daemon's cache: a \
         .tar for KCL packages) and cached (true when no registry fetch was needed). Without \
         --version, the newest tag that is a semantic version (stable first), else `latest`. Bytes \
         that do not match the digest are refused and nothing is cached."
    }

    fn arguments(&self, sig: Signature) -> Signature {
        namespace_signature(
            sig.required(
                "name",
                SyntaxShape::String,
                "package name (the repository below the namespace)",
            )
            .named(
                "version",
                SyntaxShape::String,
                "the tag (default: the newest semantic version)",
                Some('v'),
            ),
        )
    }

    fn search_terms(&self) -> Vec<&str> {
        vec!["kcl", "oci", "package", "artifact", "download", "pull"]
    }

    fn examples(&self) -> Vec<Example<'_>> {
        vec![
            example_with(
                "(ext kcl pull provisioning-core --version 1.0.0).layer_digest",
                "Cache provisioning-core 1.0.0 (seed 003): the digest its bytes were verified against",
                Value::test_string(super::examples::KCL_CORE_DIGEST),
            ),
            // Runs `tar`: checked through the real nu in tests/e2e/kcl.rs.
            example(
                "tar -xf (ext kcl pull provisioning-core).path -C ./vendor",
                "Unpack the newest provisioning-core package into ./vendor",
            ),
        ]
    }

    fn run(&self, cx: &Ctx) -> Result<Value, LabeledError> {
        let call = cx.call;
        let name_v: Value = call.req(0)?;
        let name_span = name_v.span();
        let name = name_v
            .as_str()
            .map_err(|_| {
                LabeledError::new("the name must be a string").with_label("not a string", name_span)
            })?
            .to_string();
        extreg_shared::validate_name(&name).map_err(|e| {
            LabeledError::new("invalid package name").with_label(e.to_string(), name_span)
        })?;
        let (version, version_span) = match super::flag_value(call, "version") {
            None => (None, None),
            Some(v) => {
                let span = v.span();
                let s = v.as_str().map_err(|_| {
                    LabeledError::new("--version takes a string").with_label("not a string", span)
                })?;
                if !extreg_shared::artifact::valid_tag(s) {
                    return Err(LabeledError::new("invalid version").with_label(
                        "not an OCI tag ([A-Za-z0-9_][A-Za-z0-9._-], at most 128)",
                        span,
                    ));
                }
                (Some(s.to_string()), Some(span))
            }
        };
        let (namespace, ns_span) = namespace_flag(call)?;
        let spans = ArgSpans {
            name: Some(name_span),
            version: version_span,
            registry: ns_span,
            ..Default::default()
        };
        let label = format!("pull {namespace}/{name}");
        let req = Request::OciArtifactPull {
            namespace,
            name,
            version,
        };
        crate::answer!(cx, cx.ask_with_progress(spans, req, label)?,
            Response::OciArtifactPulled(p) => pulled(&p, cx.head()))
    }
}

use super::{example, example_with, type_flag, ArgSpans, Args, Ctx};
use crate::completion::Spec;
use crate::values;
use extreg_shared::protocol::{Request, Response};
use nu_protocol::{Example, LabeledError, Signature, Value};

/// `ext discover`: every extension across all backends, with the backends
/// holding it; `--refresh` asks the backends again instead of the caches.
pub struct Discover;

impl super::ExtCommand for Discover {
    fn extra_description(&self) -> &str {
        "Answers come from extregd's listing caches (TTL [cache] ttl_seconds). --refresh drops them first \
         (all, or those of --type), so a version pushed by another tool (skopeo, oras, a CI job) shows at once."
    }

    fn search_terms(&self) -> Vec<&str> {
        vec!["refresh", "sources", "backends"]
    }

    fn arguments(&self, sig: Signature) -> Signature {
        sig.type_filter().switch(
            "refresh",
            "drop the listing caches first and ask the backends again",
            Some('r'),
        )
    }

    fn examples(&self) -> Vec<Example<'_>> {
        vec![
            example(
                "ext discover --type taskserv",
                "Every task service, newest version and where it lives",
            ),
            example_with(
                "(ext discover --type cluster).name",
                "The clusters (over the example catalogue)",
                super::examples::cluster_names(),
            ),
            example(
                "ext discover --refresh | where oci in $it.sources",
                "Ask the backends again; keep what the OCI registry holds",
            ),
        ]
    }

    fn completion(&self) -> Option<Spec> {
        Some(Spec::default())
    }

    fn run(&self, cx: &Ctx) -> Result<Value, LabeledError> {
        let (ext_type, ts) = type_flag(cx.call)?;
        let spans = ArgSpans {
            ext_type: ts,
            ..Default::default()
        };
        let req = Request::Discover {
            ext_type,
            refresh: cx.call.has_flag("refresh")?,
        };
        crate::answer!(cx, cx.ask(spans, req)?, Response::Discovered(items) => cx.table(&items, values::from_serde))
    }
}

use super::{example, example_with, name_arg, type_flag, ArgSpans, Ctx};
use crate::completion::Spec;
use extreg_shared::protocol::{Request, Response};
use nu_protocol::{Example, LabeledError, Record, Signature, SyntaxShape, Value};

/// `ext delete <name> <version> --type <t>`: remove a version from the OCI
/// registry.
pub struct Delete;

impl super::ExtCommand for Delete {
    fn arguments(&self, sig: Signature) -> Signature {
        sig.required("name", SyntaxShape::String, "extension name")
            .required("version", SyntaxShape::String, "the exact version")
            .required_named(
                "type",
                SyntaxShape::String,
                "provider, taskserv or cluster",
                Some('t'),
            )
    }

    fn examples(&self) -> Vec<Example<'_>> {
        vec![
            example(
                "ext delete my-extension 1.0.0 --type taskserv",
                "Remove version 1.0.0",
            ),
            example_with(
                "(ext delete my-extension 1.0.0 --type taskserv).deleted ends-with '/my-extension-taskserv:1.0.0'",
                "The reference it removed: {registry}/{namespace}/{name}-{type}:{version} (after the ext publish examples)",
                Value::test_bool(true),
            ),
        ]
    }

    fn completion(&self) -> Option<Spec> {
        Some(Spec {
            name_at: Some(0),
            version_at: Some(1),
        })
    }

    fn run(&self, cx: &Ctx) -> Result<Value, LabeledError> {
        let (name, ns) = name_arg(cx.call, 0)?;
        let v: Value = cx.call.req(1)?;
        let vspan = v.span();
        let version = v.as_str()?.to_string();
        extreg_shared::parse_version(&version)
            .map_err(|e| LabeledError::new("invalid version").with_label(e.to_string(), vspan))?;
        let (ext_type, ts) = type_flag(cx.call)?;
        let ext_type = ext_type
            .ok_or_else(|| LabeledError::new("--type is required").with_label("here", cx.head()))?;
        let spans = ArgSpans {
            name: Some(ns),
            ext_type: ts,
            version: Some(vspan),
            ..Default::default()
        };
        let req = Request::Delete {
            ext_type,
            name,
            version,
        };
        crate::answer!(cx, cx.ask(spans, req)?, Response::Deleted { reference } => {
            let mut r = Record::new();
            r.push("deleted", Value::string(reference, cx.head()));
            Value::record(r, cx.head())
        })
    }
}

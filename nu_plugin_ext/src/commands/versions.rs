use super::{example, example_with, name_arg, type_flag, ArgSpans, Args, Ctx};
use crate::completion::Spec;
use crate::values;
use extreg_shared::protocol::{Request, Response};
use nu_protocol::{Example, LabeledError, Signature, Value};

/// `ext versions <name>`.
pub struct Versions;

impl super::ExtCommand for Versions {
    fn arguments(&self, sig: Signature) -> Signature {
        sig.name_arg().type_of_name()
    }

    fn examples(&self) -> Vec<Example<'_>> {
        vec![
            example_with(
                "ext versions k3s --type taskserv",
                "Every version of k3s (over the example catalogue)",
                super::examples::k3s_versions(),
            ),
            example(
                "ext versions kubernetes | where not prerelease | first",
                "The newest stable version",
            ),
        ]
    }

    fn completion(&self) -> Option<Spec> {
        Some(Spec::NAME_FIRST)
    }

    fn run(&self, cx: &Ctx) -> Result<Value, LabeledError> {
        let (name, ns) = name_arg(cx.call, 0)?;
        let (ext_type, ts) = type_flag(cx.call)?;
        let spans = ArgSpans {
            name: Some(ns),
            ext_type: ts,
            ..Default::default()
        };
        let req = Request::Versions { ext_type, name };
        crate::answer!(cx, cx.ask(spans, req)?, Response::Versions(vs) => cx.table(&vs, values::version))
    }
}

use super::{example, example_with, name_arg, type_flag, version_flag, ArgSpans, Args, Ctx};
use crate::completion::Spec;
use crate::values;
use extreg_shared::protocol::{Request, Response};
use nu_protocol::{Example, LabeledError, Signature, Value};

/// `ext info <name>`.
pub struct Info;

impl super::ExtCommand for Info {
    fn arguments(&self, sig: Signature) -> Signature {
        sig.name_arg()
            .type_of_name()
            .version_flag("an exact version instead of the newest")
    }

    fn examples(&self) -> Vec<Example<'_>> {
        vec![
            example(
                "ext info kubernetes",
                "The newest stable kubernetes extension",
            ),
            example_with(
                "ext info aws --type provider --version 1.1.0",
                "One exact version (over the example catalogue)",
                super::examples::aws_1_1_0(),
            ),
        ]
    }

    fn completion(&self) -> Option<Spec> {
        Some(Spec::NAME_FIRST)
    }

    fn run(&self, cx: &Ctx) -> Result<Value, LabeledError> {
        let (name, ns) = name_arg(cx.call, 0)?;
        let (ext_type, ts) = type_flag(cx.call)?;
        let (version, vs) = version_flag(cx.call)?;
        let spans = ArgSpans {
            name: Some(ns),
            ext_type: ts,
            version: vs,
            ..Default::default()
        };
        let req = Request::Info {
            ext_type,
            name,
            version,
        };
        crate::answer!(cx, cx.ask(spans, req)?, Response::Extension(e) => values::extension(&e, cx.head()))
    }
}

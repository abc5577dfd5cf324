use super::{
    example, example_with, name_arg, Args, Ctx, Resolve, CONSTRAINT_HELP, SOURCE_CHOICE_HELP,
};
use crate::completion::Spec;
use crate::values;
use extreg_shared::protocol::{Request, Response};
use nu_protocol::{Example, LabeledError, Signature, Value};

/// `ext pull <name>`: fill the daemon's artifact cache without extracting.
pub struct Pull;

impl super::ExtCommand for Pull {
    fn arguments(&self, sig: Signature) -> Signature {
        sig.name_arg()
            .type_of_name()
            .version_flag(CONSTRAINT_HELP)
            .switch("pre", "allow pre-releases", None)
            .source_choice(SOURCE_CHOICE_HELP)
    }

    fn examples(&self) -> Vec<Example<'_>> {
        vec![
            example(
                "ext pull kubernetes --version 1.28.0",
                "Cache kubernetes 1.28.0",
            ),
            example(
                "ext pull kubernetes --version '~1.27'",
                "Cache the newest 1.27.x",
            ),
            example_with(
                "(ext pull k3s --version 1.27.5).digest",
                "The verified digest (over the example catalogue)",
                Value::test_string(super::examples::K3S_DIGEST),
            ),
        ]
    }

    fn completion(&self) -> Option<Spec> {
        Some(Spec::NAME_FIRST)
    }

    fn run(&self, cx: &Ctx) -> Result<Value, LabeledError> {
        let r = Resolve::read(cx.call, Some(name_arg(cx.call, 0)?))?;
        let name = r.name.unwrap_or_default();
        let label = format!("pull {name}");
        let req = Request::Pull {
            ext_type: r.ext_type,
            name,
            constraint: r.constraint,
            pre: cx.call.has_flag("pre")?,
            source: r.source,
        };
        crate::answer!(cx, cx.ask_with_progress(r.spans, req, label)?, Response::Pulled(p) => values::pulled(&p, cx.head()))
    }
}

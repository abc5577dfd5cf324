use super::{example, example_with, name_arg, Args, Ctx, Resolve};
use crate::values;
use extreg_shared::protocol::{Request, Response};
use nu_protocol::{Example, LabeledError, Signature, Value};

/// `ext deps <name>`: the resolved dependency tree.
pub struct Deps;

impl super::ExtCommand for Deps {
    fn extra_description(&self) -> &str {
        "A record: name, type, version, source, wanted (the requirement as its parent wrote it), \
         requires (host tools) and dependencies (the same records, nested). The daemon fetches the \
         artifacts into its cache to read their extension.yaml; nothing is extracted. A conflict or a \
         cycle is an error naming the chain of requirements that caused it."
    }

    fn arguments(&self, sig: Signature) -> Signature {
        sig.name_arg()
            .type_of_name()
            .version_flag("a version or constraint for the extension itself")
            .source_choice("insist on this backend for the extension itself")
            .switch("pre", "allow a pre-release of the extension itself", None)
    }

    fn examples(&self) -> Vec<Example<'_>> {
        vec![
            example("ext deps web --type cluster", "The tree of the web cluster"),
            example(
                "ext deps web | get dependencies | select name version",
                "Its direct dependencies as a table",
            ),
            example_with(
                "(ext deps k3s).version",
                "The version ext load would choose (over the example catalogue)",
                Value::test_string("1.27.5"),
            ),
        ]
    }

    fn run(&self, cx: &Ctx) -> Result<Value, LabeledError> {
        let r = Resolve::read(cx.call, Some(name_arg(cx.call, 0)?))?;
        let req = Request::Deps {
            ext_type: r.ext_type,
            name: r.name.unwrap_or_default(),
            constraint: r.constraint,
            pre: cx.call.has_flag("pre")?,
            source: r.source,
        };
        crate::answer!(cx, cx.ask(r.spans, req)?, Response::DepsTree(n) => values::dep_node(&n, cx.head()))
    }
}

use super::{constraint_flag, name_arg, request, source_flag, type_flag, unexpected, ArgSpans};
use crate::{values, ExtPlugin};
use extreg_shared::protocol::{Request, Response};
use nu_plugin::{EngineInterface, EvaluatedCall, SimplePluginCommand};
use nu_protocol::{Example, LabeledError, Signature, SyntaxShape, Type, Value};

/// `ext deps <name>`: the resolved dependency tree.
pub struct Deps;

impl SimplePluginCommand for Deps {
    type Plugin = ExtPlugin;

    fn name(&self) -> &str {
        "ext deps"
    }

    fn description(&self) -> &str {
        "Show the resolved dependency tree of an extension: the version ext load would choose for it and for everything it needs."
    }

    fn extra_description(&self) -> &str {
        "A record: name, type, version, source, wanted (the requirement as its parent wrote it), \
         requires (host tools) and dependencies (the same records, nested). The daemon fetches the \
         artifacts into its cache to read their extension.yaml; nothing is extracted. A conflict or a \
         cycle is an error naming the chain of requirements that caused it."
    }

    fn signature(&self) -> Signature {
        Signature::build(self.name())
            .required("name", SyntaxShape::String, "extension name")
            .named(
                "type",
                SyntaxShape::String,
                super::TYPE_FLAG_HELP,
                Some('t'),
            )
            .named(
                "version",
                SyntaxShape::String,
                "a version or constraint for the extension itself",
                Some('v'),
            )
            .named(
                "source",
                SyntaxShape::String,
                "insist on this backend for the extension itself",
                Some('s'),
            )
            .switch("pre", "allow a pre-release of the extension itself", None)
            .input_output_type(Type::Nothing, Type::record())
            .category(super::category())
    }

    fn examples(&self) -> Vec<Example<'_>> {
        vec![
            Example {
                example: "ext deps web --type cluster",
                description: "The tree of the web cluster",
                result: None,
            },
            Example {
                example: "ext deps web | get dependencies | select name version",
                description: "Its direct dependencies as a table",
                result: None,
            },
        ]
    }

    fn run(
        &self,
        plugin: &ExtPlugin,
        engine: &EngineInterface,
        call: &EvaluatedCall,
        _input: &Value,
    ) -> Result<Value, LabeledError> {
        let (name, ns) = name_arg(call, 0)?;
        let (ext_type, ts) = type_flag(call)?;
        let (constraint, vs) = constraint_flag(call)?;
        let (source, ss) = source_flag(call)?;
        let spans = ArgSpans {
            name: Some(ns),
            ext_type: ts,
            version: vs,
            source: ss,
            registry: None,
        };
        let req = Request::Deps {
            ext_type,
            name,
            constraint,
            pre: call.has_flag("pre")?,
            source,
        };
        match request(plugin, engine, call, spans, req)? {
            Response::DepsTree(n) => Ok(values::dep_node(&n, call.head)),
            other => Err(unexpected(other, call.head)),
        }
    }
}

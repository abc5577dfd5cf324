use super::{
    constraint_flag, name_arg, request_with_progress, source_flag, type_flag, unexpected, ArgSpans,
};
use crate::{values, ExtPlugin};
use extreg_shared::protocol::{Request, Response};
use nu_plugin::{EngineInterface, EvaluatedCall, SimplePluginCommand};
use nu_protocol::{Example, LabeledError, Signature, SyntaxShape, Type, Value};

/// `ext pull <name>`: fill the daemon's artifact cache without extracting.
pub struct Pull;

impl SimplePluginCommand for Pull {
    type Plugin = ExtPlugin;

    crate::completes!(crate::completion::Spec::NAME_FIRST);

    fn name(&self) -> &str {
        "ext pull"
    }

    fn description(&self) -> &str {
        "Fetch one version of an extension into the daemon's artifact cache (verified), without extracting it."
    }

    fn signature(&self) -> Signature {
        Signature::build(self.name())
            .required("name", SyntaxShape::String, "extension name")
            .named("type", SyntaxShape::String, super::TYPE_FLAG_HELP, Some('t'))
            .named(
                "version",
                SyntaxShape::String,
                "a version or constraint: 1.2.3, ^1.2, >=1.2, <2, 1.2.0 - 1.5.0 (default: newest stable)",
                Some('v'),
            )
            .switch("pre", "allow pre-releases", None)
            .named(
                "source",
                SyntaxShape::String,
                "insist on this backend: gitea, oci or local",
                Some('s'),
            )
            .input_output_type(Type::Nothing, Type::record())
            .category(super::category())
    }

    fn examples(&self) -> Vec<Example<'_>> {
        vec![
            Example {
                example: "ext pull kubernetes --version 1.28.0",
                description: "Cache kubernetes 1.28.0",
                result: None,
            },
            Example {
                example: "ext pull kubernetes --version '~1.27'",
                description: "Cache the newest 1.27.x",
                result: None,
            },
            Example {
                example: "(ext pull k3s --version 1.27.5).digest",
                description: "The verified digest (over the example catalogue)",
                result: Some(Value::test_string(super::examples::K3S_DIGEST)),
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
        let pre = call.has_flag("pre")?;
        let spans = ArgSpans {
            name: Some(ns),
            ext_type: ts,
            version: vs,
            source: ss,
            registry: None,
        };
        let label = format!("pull {name}");
        let req = Request::Pull {
            ext_type,
            name,
            constraint,
            pre,
            source,
        };
        match request_with_progress(plugin, engine, call, spans, req, Some(label))? {
            Response::Pulled(p) => Ok(values::pulled(&p, call.head)),
            other => Err(unexpected(other, call.head)),
        }
    }
}

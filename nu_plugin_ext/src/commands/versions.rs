use super::{name_arg, request, type_flag, unexpected, ArgSpans};
use crate::{values, ExtPlugin};
use extreg_shared::protocol::{Request, Response};
use nu_plugin::{EngineInterface, EvaluatedCall, SimplePluginCommand};
use nu_protocol::{Example, LabeledError, Signature, SyntaxShape, Type, Value};

/// `ext versions <name>`.
pub struct Versions;

impl SimplePluginCommand for Versions {
    type Plugin = ExtPlugin;

    crate::completes!(crate::completion::Spec::NAME_FIRST);

    fn name(&self) -> &str {
        "ext versions"
    }

    fn description(&self) -> &str {
        "List the versions of one extension, newest first, pre-releases marked."
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
            .input_output_type(Type::Nothing, Type::table())
            .category(super::category())
    }

    fn examples(&self) -> Vec<Example<'_>> {
        vec![
            Example {
                example: "ext versions k3s --type taskserv",
                description: "Every version of k3s (over the example catalogue)",
                result: Some(super::examples::k3s_versions()),
            },
            Example {
                example: "ext versions kubernetes | where not prerelease | first",
                description: "The newest stable version",
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
        let spans = ArgSpans {
            name: Some(ns),
            ext_type: ts,
            ..Default::default()
        };
        match request(
            plugin,
            engine,
            call,
            spans,
            Request::Versions { ext_type, name },
        )? {
            Response::Versions(vs) => Ok(Value::list(
                vs.iter().map(|v| values::version(v, call.head)).collect(),
                call.head,
            )),
            other => Err(unexpected(other, call.head)),
        }
    }
}

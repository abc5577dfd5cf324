use super::{name_arg, request, type_flag, unexpected, version_flag, ArgSpans};
use crate::{values, ExtPlugin};
use extreg_shared::protocol::{Request, Response};
use nu_plugin::{EngineInterface, EvaluatedCall, SimplePluginCommand};
use nu_protocol::{Example, LabeledError, Signature, SyntaxShape, Type, Value};

/// `ext info <name>`.
pub struct Info;

impl SimplePluginCommand for Info {
    type Plugin = ExtPlugin;

    crate::completes!(crate::completion::Spec::NAME_FIRST);

    fn name(&self) -> &str {
        "ext info"
    }

    fn description(&self) -> &str {
        "Show one extension: its newest stable version, or the version given."
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
                "an exact version instead of the newest",
                Some('v'),
            )
            .input_output_type(Type::Nothing, Type::record())
            .category(super::category())
    }

    fn examples(&self) -> Vec<Example<'_>> {
        vec![
            Example {
                example: "ext info kubernetes",
                description: "The newest stable kubernetes extension",
                result: None,
            },
            Example {
                example: "ext info aws --type provider --version 1.1.0",
                description: "One exact version (over the example catalogue)",
                result: Some(super::examples::aws_1_1_0()),
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
        let (version, vs) = version_flag(call)?;
        let spans = ArgSpans {
            name: Some(ns),
            ext_type: ts,
            version: vs,
            ..Default::default()
        };
        match request(
            plugin,
            engine,
            call,
            spans,
            Request::Info {
                ext_type,
                name,
                version,
            },
        )? {
            Response::Extension(e) => Ok(values::extension(&e, call.head)),
            other => Err(unexpected(other, call.head)),
        }
    }
}

use super::{
    constraint_flag, name_arg, request_with_progress, source_flag, type_flag, unexpected, ArgSpans,
};
use crate::{values, ExtPlugin};
use extreg_shared::protocol::{Request, Response};
use nu_plugin::{EngineInterface, EvaluatedCall, SimplePluginCommand};
use nu_protocol::{Example, LabeledError, Signature, SyntaxShape, Type, Value};

/// `ext load <name>`: resolve, fetch (through the daemon), verify, extract.
pub struct Load;

impl SimplePluginCommand for Load {
    type Plugin = ExtPlugin;

    crate::completes!(crate::completion::Spec::NAME_FIRST);

    fn name(&self) -> &str {
        "ext load"
    }

    fn description(&self) -> &str {
        "Load an extension: resolve the version constraint, fetch and verify the artifact (the daemon does), and extract it into the extensions folder."
    }

    fn extra_description(&self) -> &str {
        "Idempotent: a version already extracted is returned as is (already_loaded: true). \
         --force fetches the artifact again and re-extracts it. Archives with absolute paths, '..', \
         links leaving the folder or device files are refused and leave nothing behind."
    }

    fn signature(&self) -> Signature {
        Signature::build(self.name())
            .required("name", SyntaxShape::String, "extension name")
            .named("type", SyntaxShape::String, super::TYPE_FLAG_HELP, Some('t'))
            .named("version", SyntaxShape::String, "a version or constraint: 1.2.3, ^1.2, ~1.2.0, >=1.2, <2, 1.2.0 - 1.5.0 (default: newest stable)", Some('v'))
            .named("source", SyntaxShape::String, "insist on this backend: gitea, oci or local", Some('s'))
            .switch("pre", "allow pre-releases", None)
            .switch("force", "fetch and extract again even if loaded", Some('f'))
            .input_output_type(Type::Nothing, Type::record())
            .category(super::category())
    }

    fn examples(&self) -> Vec<Example<'_>> {
        vec![
            Example {
                example: "ext load kubernetes",
                description: "The newest stable kubernetes",
                result: None,
            },
            Example {
                example: "ext load kubernetes --version '^1.27' | get path",
                description: "Where the newest 1.x (from 1.27) was extracted",
                result: None,
            },
            Example {
                example: "ext load aws --type provider --force",
                description: "Fetch and extract again",
                result: None,
            },
            Example {
                example: "(ext load k3s --version '^1.27').version",
                description: "The version a constraint resolved to (over the example catalogue)",
                result: Some(Value::test_string("1.27.5")),
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
        let force = call.has_flag("force")?;
        let spans = ArgSpans {
            name: Some(ns),
            ext_type: ts,
            version: vs,
            source: ss,
        };
        let label = format!("load {name}");
        let req = Request::Load {
            ext_type,
            name,
            constraint,
            pre,
            source,
            force,
        };
        match request_with_progress(plugin, engine, call, spans, req, Some(label))? {
            Response::Loaded(l) => Ok(values::loaded(&l, call.head)),
            other => Err(unexpected(other, call.head)),
        }
    }
}

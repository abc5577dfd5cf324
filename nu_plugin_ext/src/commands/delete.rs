use super::{name_arg, request, type_flag, unexpected, ArgSpans};
use crate::ExtPlugin;
use extreg_shared::protocol::{Request, Response};
use nu_plugin::{EngineInterface, EvaluatedCall, SimplePluginCommand};
use nu_protocol::{Example, LabeledError, Record, Signature, SyntaxShape, Type, Value};

/// `ext delete <name> <version> --type <t>`: remove a version from the OCI
/// registry.
pub struct Delete;

impl SimplePluginCommand for Delete {
    type Plugin = ExtPlugin;

    crate::completes!(crate::completion::Spec {
        name_at: Some(0),
        version_at: Some(1)
    });

    fn name(&self) -> &str {
        "ext delete"
    }

    fn description(&self) -> &str {
        "Delete one version of an extension from the OCI registry."
    }

    fn signature(&self) -> Signature {
        Signature::build(self.name())
            .required("name", SyntaxShape::String, "extension name")
            .required("version", SyntaxShape::String, "the exact version")
            .required_named(
                "type",
                SyntaxShape::String,
                "provider, taskserv or cluster",
                Some('t'),
            )
            .input_output_type(Type::Nothing, Type::record())
            .category(super::category())
    }

    fn examples(&self) -> Vec<Example<'_>> {
        vec![Example {
            example: "ext delete my-extension 1.0.0 --type taskserv",
            description: "Remove version 1.0.0",
            result: None,
        }]
    }

    fn run(
        &self,
        plugin: &ExtPlugin,
        engine: &EngineInterface,
        call: &EvaluatedCall,
        _input: &Value,
    ) -> Result<Value, LabeledError> {
        let (name, ns) = name_arg(call, 0)?;
        let v: Value = call.req(1)?;
        let vspan = v.span();
        let raw = v.as_str()?.to_string();
        extreg_shared::parse_version(&raw)
            .map_err(|e| LabeledError::new("invalid version").with_label(e.to_string(), vspan))?;
        let version = raw;
        let (ext_type, ts) = type_flag(call)?;
        let ext_type = ext_type
            .ok_or_else(|| LabeledError::new("--type is required").with_label("here", call.head))?;
        let spans = ArgSpans {
            name: Some(ns),
            ext_type: ts,
            version: Some(vspan),
            ..Default::default()
        };
        match request(
            plugin,
            engine,
            call,
            spans,
            Request::Delete {
                ext_type,
                name,
                version,
            },
        )? {
            Response::Deleted { reference } => {
                let mut r = Record::new();
                r.push("deleted", Value::string(reference, call.head));
                Ok(Value::record(r, call.head))
            }
            other => Err(unexpected(other, call.head)),
        }
    }
}

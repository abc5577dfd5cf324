use super::{request, source_flag, type_flag, unexpected, ArgSpans};
use crate::{values, ExtPlugin};
use extreg_shared::protocol::{Request, Response};
use nu_plugin::{EngineInterface, EvaluatedCall, SimplePluginCommand};
use nu_protocol::{Example, LabeledError, Signature, SyntaxShape, Type, Value};

/// `ext list`: every extension, newest version each.
pub struct List;

impl SimplePluginCommand for List {
    type Plugin = ExtPlugin;

    crate::completes!(crate::completion::Spec::default());

    fn name(&self) -> &str {
        "ext list"
    }

    fn description(&self) -> &str {
        "List extensions from every backend, one row per extension with its newest version."
    }

    fn signature(&self) -> Signature {
        Signature::build(self.name())
            .named(
                "type",
                SyntaxShape::String,
                "only this type: provider, taskserv or cluster",
                Some('t'),
            )
            .named(
                "source",
                SyntaxShape::String,
                "only this backend: gitea, oci or local",
                Some('s'),
            )
            .switch(
                "loaded",
                "list the extensions `ext load` extracted instead",
                Some('l'),
            )
            .input_output_type(Type::Nothing, Type::table())
            .category(super::category())
    }

    fn examples(&self) -> Vec<Example<'_>> {
        vec![
            Example {
                example: "ext list --type cluster",
                description: "Every cluster (over the example catalogue)",
                result: Some(super::examples::clusters()),
            },
            Example {
                example: "ext list --type taskserv | select name version",
                description: "Task services with their newest version",
                result: None,
            },
            Example {
                example: "ext list --loaded | select name version path",
                description: "What `ext load` has extracted",
                result: None,
            },
            Example {
                example: "ext list | where size > 1mb",
                description: "Extensions whose artifact is over a megabyte",
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
        let (ext_type, ts) = type_flag(call)?;
        let (source, ss) = source_flag(call)?;
        let spans = ArgSpans {
            ext_type: ts,
            source: ss,
            ..Default::default()
        };
        if call.has_flag("loaded")? {
            return match request(plugin, engine, call, spans, Request::Loaded)? {
                Response::LoadedList(items) => Ok(Value::list(
                    items
                        .iter()
                        .filter(|l| ext_type.is_none_or(|t| l.ext_type == t))
                        .filter(|l| source.is_none_or(|s| l.source == s))
                        .map(|l| values::loaded(l, call.head))
                        .collect(),
                    call.head,
                )),
                other => Err(unexpected(other, call.head)),
            };
        }
        match request(
            plugin,
            engine,
            call,
            spans,
            Request::List { ext_type, source },
        )? {
            Response::Extensions { items, .. } => Ok(Value::list(
                items
                    .iter()
                    .map(|e| values::extension(e, call.head))
                    .collect(),
                call.head,
            )),
            other => Err(unexpected(other, call.head)),
        }
    }
}

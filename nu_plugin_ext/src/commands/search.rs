use super::{request, source_flag, type_flag, unexpected, ArgSpans};
use crate::{values, ExtPlugin};
use extreg_shared::protocol::{Request, Response};
use nu_plugin::{EngineInterface, EvaluatedCall, SimplePluginCommand};
use nu_protocol::{Example, LabeledError, Signature, SyntaxShape, Type, Value};

pub const DEFAULT_LIMIT: i64 = 50;

/// `ext search <query>`.
pub struct Search;

impl SimplePluginCommand for Search {
    type Plugin = ExtPlugin;

    crate::completes!(crate::completion::Spec::NAME_FIRST);

    fn name(&self) -> &str {
        "ext search"
    }

    fn description(&self) -> &str {
        "Search extensions by name, description and tags (case-insensitive); exact names first."
    }

    fn signature(&self) -> Signature {
        Signature::build(self.name())
            .required("query", SyntaxShape::String, "text to look for")
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
            .named(
                "limit",
                SyntaxShape::Int,
                "at most this many results (1-1000, default 50)",
                Some('l'),
            )
            .input_output_type(Type::Nothing, Type::table())
            .category(super::category())
    }

    fn examples(&self) -> Vec<Example<'_>> {
        vec![
            Example {
                example: "ext search kubernetes",
                description: "Everything about Kubernetes",
                result: None,
            },
            Example {
                example: "ext search kubernetes | where type == taskserv",
                description: "Only task services",
                result: None,
            },
            Example {
                example: "ext search no-such-extension",
                description: "No match is an empty table, not an error",
                result: Some(super::examples::empty()),
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
        let q: Value = call.req(0)?;
        let qspan = q.span();
        let query = q.as_str()?.trim().to_string();
        if query.is_empty() {
            return Err(
                LabeledError::new("the search query is empty").with_label("give some text", qspan)
            );
        }
        let (ext_type, ts) = type_flag(call)?;
        let (source, ss) = source_flag(call)?;
        let limit = match super::flag_value(call, "limit") {
            None => DEFAULT_LIMIT,
            Some(v) => {
                let n = v.as_int()?;
                if !(1..=1000).contains(&n) {
                    return Err(LabeledError::new(format!("--limit {n} is out of range"))
                        .with_label("expected 1 to 1000", v.span()));
                }
                n
            }
        };
        let spans = ArgSpans {
            name: Some(qspan),
            ext_type: ts,
            source: ss,
            ..Default::default()
        };
        let req = Request::Search {
            query,
            ext_type,
            source,
            limit: limit as u32,
        };
        match request(plugin, engine, call, spans, req)? {
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

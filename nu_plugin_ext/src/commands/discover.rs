use super::{request, type_flag, unexpected, ArgSpans};
use crate::{values, ExtPlugin};
use extreg_shared::protocol::{Request, Response};
use nu_plugin::{EngineInterface, EvaluatedCall, SimplePluginCommand};
use nu_protocol::{Example, LabeledError, Signature, SyntaxShape, Type, Value};

/// `ext discover`: every extension across all backends, with the backends
/// holding it; `--refresh` asks the backends again instead of the caches.
pub struct Discover;

impl SimplePluginCommand for Discover {
    type Plugin = ExtPlugin;
    crate::completes!(crate::completion::Spec::default());

    fn name(&self) -> &str {
        "ext discover"
    }

    fn description(&self) -> &str {
        "Discover extensions across every backend: newest version, the backend serving it and every backend holding it."
    }

    fn extra_description(&self) -> &str {
        "Answers come from extregd's listing caches (TTL [cache] ttl_seconds). --refresh drops them first \
         (all, or those of --type), so a version pushed by another tool (skopeo, oras, a CI job) shows at once."
    }

    fn signature(&self) -> Signature {
        Signature::build(self.name())
            .named(
                "type",
                SyntaxShape::String,
                "only this type: provider, taskserv or cluster",
                Some('t'),
            )
            .switch(
                "refresh",
                "drop the listing caches first and ask the backends again",
                Some('r'),
            )
            .input_output_type(Type::Nothing, Type::table())
            .category(super::category())
    }

    fn search_terms(&self) -> Vec<&str> {
        vec!["refresh", "sources", "backends"]
    }

    fn examples(&self) -> Vec<Example<'_>> {
        vec![
            Example {
                example: "ext discover --type taskserv",
                description: "Every task service, newest version and where it lives",
                result: None,
            },
            Example {
                example: "ext discover --refresh | where oci in $it.sources",
                description: "Ask the backends again; keep what the OCI registry holds",
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
        let spans = ArgSpans {
            ext_type: ts,
            ..Default::default()
        };
        let req = Request::Discover {
            ext_type,
            refresh: call.has_flag("refresh")?,
        };
        match request(plugin, engine, call, spans, req)? {
            Response::Discovered(items) => Ok(Value::list(
                items
                    .iter()
                    .map(|d| values::from_serde(d, call.head))
                    .collect(),
                call.head,
            )),
            other => Err(unexpected(other, call.head)),
        }
    }
}

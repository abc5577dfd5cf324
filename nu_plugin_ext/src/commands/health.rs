use super::{request, unexpected, ArgSpans};
use crate::{values, ExtPlugin};
use extreg_shared::protocol::{Request, Response};
use nu_plugin::{EngineInterface, EvaluatedCall, SimplePluginCommand};
use nu_protocol::{Example, LabeledError, Signature, Type, Value};

/// `ext health`: the daemon and each backend (covers seed 004's
/// `test-oci` and discovery checks).
pub struct Health;

impl SimplePluginCommand for Health {
    type Plugin = ExtPlugin;

    fn name(&self) -> &str {
        "ext health"
    }

    fn description(&self) -> &str {
        "Ask extregd whether it and each backend (local, oci, gitea) are reachable."
    }

    fn signature(&self) -> Signature {
        Signature::build(self.name())
            .input_output_type(Type::Nothing, Type::record())
            .category(super::category())
    }

    fn examples(&self) -> Vec<Example<'_>> {
        vec![
            Example {
                example: "ext health | get backends.oci",
                description: "Is the OCI registry reachable?",
                result: None,
            },
            Example {
                example: "(ext health).status",
                description: "healthy when every enabled backend answers",
                result: Some(Value::test_string("healthy")),
            },
            Example {
                example: "(ext health).uptime | describe",
                description: "How long the daemon has run, as a duration",
                result: Some(Value::test_string("duration")),
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
        match request(plugin, engine, call, ArgSpans::default(), Request::Health)? {
            Response::Health(h) => Ok(values::from_serde(&h, call.head)),
            other => Err(unexpected(other, call.head)),
        }
    }
}

use crate::ExtPlugin;
use nu_plugin::{EngineInterface, EvaluatedCall, SimplePluginCommand};
use nu_protocol::{Example, LabeledError, Signature, Type, Value};

/// `ext`: the command group's help.
pub struct Ext;

impl SimplePluginCommand for Ext {
    type Plugin = ExtPlugin;

    fn name(&self) -> &str {
        "ext"
    }

    fn description(&self) -> &str {
        "Find, inspect and fetch provisioning extensions (providers, taskservs, clusters) through extregd."
    }

    fn extra_description(&self) -> &str {
        "Subcommands talk to the extregd daemon over its local socket, starting it when none listens. \
         Configure with $env.config.plugins.ext = {socket, daemon, autostart, timeout}."
    }

    fn signature(&self) -> Signature {
        Signature::build(self.name())
            .input_output_type(Type::Nothing, Type::String)
            .category(super::category())
    }

    fn examples(&self) -> Vec<Example<'_>> {
        vec![Example {
            example: "ext | describe",
            description: "The help text, listing the subcommands",
            result: Some(Value::test_string("string")),
        }]
    }

    fn search_terms(&self) -> Vec<&str> {
        vec!["extension", "registry", "provider", "taskserv", "cluster"]
    }

    fn run(
        &self,
        _plugin: &ExtPlugin,
        engine: &EngineInterface,
        call: &EvaluatedCall,
        _input: &Value,
    ) -> Result<Value, LabeledError> {
        Ok(Value::string(engine.get_help()?, call.head))
    }
}

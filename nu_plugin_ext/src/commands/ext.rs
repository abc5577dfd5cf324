use super::{example_with, Ctx};
use nu_protocol::{Example, LabeledError, Type, Value};

/// `ext`: the command group's help.
pub struct Ext;

impl super::ExtCommand for Ext {
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

    fn search_terms(&self) -> Vec<&str> {
        vec!["extension", "registry", "provider", "taskserv", "cluster"]
    }

    fn output(&self) -> Type {
        Type::String
    }

    fn examples(&self) -> Vec<Example<'_>> {
        vec![example_with(
            "ext | describe",
            "The help text, listing the subcommands",
            Value::test_string("string"),
        )]
    }

    fn run(&self, cx: &Ctx) -> Result<Value, LabeledError> {
        super::help(cx)
    }
}

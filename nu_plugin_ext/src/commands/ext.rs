use super::{example_with, Ctx};
use nu_protocol::{Example, LabeledError, Value};

/// `ext`: the command group's help.
pub struct Ext;

impl super::ExtCommand for Ext {
    fn extra_description(&self) -> &str {
        "Subcommands talk to the extregd daemon over its local socket, starting it when none listens. \
         Configure with $env.config.plugins.ext = {socket, daemon, autostart, timeout}."
    }

    fn search_terms(&self) -> Vec<&str> {
        vec!["extension", "registry", "provider", "taskserv", "cluster"]
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

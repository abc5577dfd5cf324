use super::{example, example_with, ArgSpans, Ctx};
use crate::values;
use extreg_shared::protocol::{Request, Response};
use nu_protocol::{Example, LabeledError, Value};

/// `ext health`: the daemon and each backend (covers seed 004's
/// `test-oci` and discovery checks).
pub struct Health;

impl super::ExtCommand for Health {
    fn examples(&self) -> Vec<Example<'_>> {
        vec![
            example(
                "ext health | get backends.oci",
                "Is the OCI registry reachable?",
            ),
            example_with(
                "(ext health).status",
                "healthy when every enabled backend answers",
                Value::test_string("healthy"),
            ),
            example_with(
                "(ext health).uptime | describe",
                "How long the daemon has run, as a duration",
                Value::test_string("duration"),
            ),
        ]
    }

    fn run(&self, cx: &Ctx) -> Result<Value, LabeledError> {
        crate::answer!(cx, cx.ask(ArgSpans::default(), Request::Health)?, Response::Health(h) => values::from_serde(&h, cx.head()))
    }
}

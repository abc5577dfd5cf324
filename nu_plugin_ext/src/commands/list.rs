use super::{example, example_with, source_flag, type_flag, ArgSpans, Args, Ctx};
use crate::completion::Spec;
use crate::values;
use extreg_shared::protocol::{Request, Response};
use nu_protocol::{Example, LabeledError, Signature, Value};

/// `ext list`: every extension, newest version each.
pub struct List;

impl super::ExtCommand for List {
    fn arguments(&self, sig: Signature) -> Signature {
        sig.type_filter().source_filter().switch(
            "loaded",
            "list the extensions `ext load` extracted instead",
            Some('l'),
        )
    }

    fn examples(&self) -> Vec<Example<'_>> {
        vec![
            example_with(
                "ext list --type cluster",
                "Every cluster (over the example catalogue)",
                super::examples::clusters(),
            ),
            example(
                "ext list --type taskserv | select name version",
                "Task services with their newest version",
            ),
            example(
                "ext list --loaded | select name version path",
                "What `ext load` has extracted",
            ),
            example(
                "ext list | where size > 1mb",
                "Extensions whose artifact is over a megabyte",
            ),
        ]
    }

    fn completion(&self) -> Option<Spec> {
        Some(Spec::default())
    }

    fn run(&self, cx: &Ctx) -> Result<Value, LabeledError> {
        let (ext_type, ts) = type_flag(cx.call)?;
        let (source, ss) = source_flag(cx.call)?;
        let spans = ArgSpans {
            ext_type: ts,
            source: ss,
            ..Default::default()
        };
        if cx.call.has_flag("loaded")? {
            return crate::answer!(cx, cx.ask(spans, Request::Loaded)?, Response::LoadedList(items) => {
                let wanted: Vec<_> = items
                    .into_iter()
                    .filter(|l| ext_type.is_none_or(|t| l.ext_type == t))
                    .filter(|l| source.is_none_or(|s| l.source == s))
                    .collect();
                cx.table(&wanted, values::loaded)
            });
        }
        let req = Request::List { ext_type, source };
        crate::answer!(cx, cx.ask(spans, req)?, Response::Extensions { items, .. } => cx.table(&items, values::extension))
    }
}

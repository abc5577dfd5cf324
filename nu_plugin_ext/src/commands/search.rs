use super::{example, example_with, source_flag, type_flag, ArgSpans, Args, Ctx};
use crate::completion::Spec;
use crate::values;
use extreg_shared::protocol::{Request, Response};
use nu_protocol::{Example, LabeledError, Signature, SyntaxShape, Value};

pub const DEFAULT_LIMIT: i64 = 50;

/// `ext search <query>`.
pub struct Search;

impl super::ExtCommand for Search {
    fn arguments(&self, sig: Signature) -> Signature {
        sig.required("query", SyntaxShape::String, "text to look for")
            .type_filter()
            .source_filter()
            .named(
                "limit",
                SyntaxShape::Int,
                "at most this many results (1-1000, default 50)",
                Some('l'),
            )
    }

    fn examples(&self) -> Vec<Example<'_>> {
        vec![
            example("ext search kubernetes", "Everything about Kubernetes"),
            example(
                "ext search kubernetes | where type == taskserv",
                "Only task services",
            ),
            example_with(
                "ext search no-such-extension",
                "No match is an empty table, not an error",
                super::examples::empty(),
            ),
        ]
    }

    fn completion(&self) -> Option<Spec> {
        Some(Spec::NAME_FIRST)
    }

    fn run(&self, cx: &Ctx) -> Result<Value, LabeledError> {
        let q: Value = cx.call.req(0)?;
        let qspan = q.span();
        let query = q.as_str()?.trim().to_string();
        if query.is_empty() {
            return Err(
                LabeledError::new("the search query is empty").with_label("give some text", qspan)
            );
        }
        let (ext_type, ts) = type_flag(cx.call)?;
        let (source, ss) = source_flag(cx.call)?;
        let limit = match super::flag_value(cx.call, "limit") {
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
        crate::answer!(cx, cx.ask(spans, req)?, Response::Extensions { items, .. } => cx.table(&items, values::extension))
    }
}

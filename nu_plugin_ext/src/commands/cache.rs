//! `ext cache` and its subcommands: the daemon's artifact cache.

use super::{example, example_with, type_flag, ArgSpans, Ctx, ExtCommand};
use crate::completion::Spec;
use crate::values;
use extreg_shared::protocol::{Request, Response};
use nu_protocol::{Example, LabeledError, Record, Signature, SyntaxShape, Value};

pub struct Cache;
pub struct CacheList;
pub struct CacheStats;
pub struct CacheClear;
pub struct CachePrune;
pub struct CacheVerify;

/// `{removed, freed}` of a clear or prune.
fn removed(cx: &Ctx, spans: ArgSpans, req: Request) -> Result<Value, LabeledError> {
    let head = cx.head();
    crate::answer!(cx, cx.ask(spans, req)?, Response::CacheRemoved { entries, bytes } => {
        let mut r = Record::new();
        r.push("removed", Value::int(entries as i64, head));
        r.push("freed", Value::filesize(bytes as i64, head));
        Value::record(r, head)
    })
}

impl ExtCommand for Cache {
    fn examples(&self) -> Vec<Example<'_>> {
        vec![example_with(
            "ext cache | describe",
            "The help text, listing the cache subcommands",
            Value::test_string("string"),
        )]
    }
    fn run(&self, cx: &Ctx) -> Result<Value, LabeledError> {
        super::help(cx)
    }
}

impl ExtCommand for CacheList {
    fn examples(&self) -> Vec<Example<'_>> {
        vec![
            example(
                "ext cache list | sort-by last_used",
                "Least recently used first",
            ),
            example(
                "ext cache list | where idle > 30day",
                "Not used for a month (age and idle are durations)",
            ),
            example_with(
                "(ext cache list).name",
                "What is cached (after the examples above pulled k3s)",
                Value::test_list(vec![Value::test_string("k3s")]),
            ),
        ]
    }
    fn run(&self, cx: &Ctx) -> Result<Value, LabeledError> {
        crate::answer!(cx, cx.ask(ArgSpans::default(), Request::CacheList)?, Response::CacheEntries(es) => cx.table(&es, values::cache_entry))
    }
}

impl ExtCommand for CacheStats {
    fn examples(&self) -> Vec<Example<'_>> {
        vec![
            example_with(
                "(ext cache stats).ttl",
                "How long metadata answers are kept",
                Value::test_duration(300 * 1_000_000_000),
            ),
            example_with(
                "(ext cache stats).artifacts.bytes",
                "Bytes in the artifact cache (k3s, after the examples above)",
                Value::test_filesize(469),
            ),
        ]
    }
    fn run(&self, cx: &Ctx) -> Result<Value, LabeledError> {
        crate::answer!(cx, cx.ask(ArgSpans::default(), Request::CacheStats)?, Response::CacheStats(s) => values::from_serde(&s, cx.head()))
    }
}

impl ExtCommand for CacheClear {
    fn arguments(&self, sig: Signature) -> Signature {
        sig.named("type", SyntaxShape::String, "only this type", Some('t'))
            .named(
                "name",
                SyntaxShape::String,
                "only this extension",
                Some('n'),
            )
            .switch("all", "everything", Some('a'))
    }
    fn examples(&self) -> Vec<Example<'_>> {
        vec![
            example_with(
                "ext cache clear --type taskserv --name kubernetes",
                "Forget every cached kubernetes artifact (none, over the example catalogue)",
                super::examples::nothing_removed(),
            ),
            example_with(
                "ext cache clear --all",
                "Empty the cache (k3s, after the examples above)",
                super::examples::removed(1, 469),
            ),
        ]
    }
    fn completion(&self) -> Option<Spec> {
        Some(Spec::default())
    }
    fn run(&self, cx: &Ctx) -> Result<Value, LabeledError> {
        let call = cx.call;
        let (ext_type, ts) = type_flag(call)?;
        let all = call.has_flag("all")?;
        let (name, ns) = match super::flag_value(call, "name") {
            None => (None, None),
            Some(v) => {
                let span = v.span();
                let n = v.as_str()?.to_string();
                extreg_shared::validate_name(&n).map_err(|e| {
                    LabeledError::new("invalid extension name").with_label(e.to_string(), span)
                })?;
                (Some(n), Some(span))
            }
        };
        if all && (ext_type.is_some() || name.is_some()) {
            let span = ts.or(ns).unwrap_or(call.head);
            return Err(LabeledError::new(
                "--all clears everything; it does not combine with --type or --name",
            )
            .with_label("drop this, or drop --all", span));
        }
        if !all && ext_type.is_none() && name.is_none() {
            return Err(LabeledError::new("say what to clear")
                .with_label("needs --all, or --type and/or --name", call.head));
        }
        let spans = ArgSpans {
            name: ns,
            ext_type: ts,
            ..Default::default()
        };
        let req = Request::CacheClear {
            ext_type,
            name,
            all,
        };
        removed(cx, spans, req)
    }
}

impl ExtCommand for CachePrune {
    fn arguments(&self, sig: Signature) -> Signature {
        sig.named(
            "older-than",
            SyntaxShape::Duration,
            "unused for at least this long (e.g. 30day, 12hr)",
            Some('o'),
        )
        .named(
            "days",
            SyntaxShape::Int,
            "unused for at least this many days (like --older-than Nday)",
            Some('d'),
        )
    }
    fn examples(&self) -> Vec<Example<'_>> {
        vec![
            example_with(
                "ext cache prune --older-than 30day",
                "Drop what was not used in a month (nothing, over the example catalogue)",
                super::examples::nothing_removed(),
            ),
            example_with(
                "ext cache prune --days 30",
                "The same, counted in days",
                super::examples::nothing_removed(),
            ),
        ]
    }
    fn run(&self, cx: &Ctx) -> Result<Value, LabeledError> {
        /// 100 years: anything longer is a typo.
        const MAX_SECS: i64 = 36_500 * 86_400;
        let older = super::flag_value(cx.call, "older-than");
        let days = super::flag_value(cx.call, "days");
        let seconds = match (older, days) {
            (Some(o), Some(d)) => {
                return Err(LabeledError::new("give --older-than or --days, not both")
                    .with_label("drop this", d.span())
                    .with_label("or this", o.span()))
            }
            (None, None) => {
                return Err(
                    LabeledError::new("say how old: --older-than 30day (or --days 30)")
                        .with_label("needs --older-than or --days", cx.head()),
                )
            }
            (Some(o), None) => {
                let ns = o.as_duration()?;
                let secs = ns / 1_000_000_000;
                if !(0..=MAX_SECS).contains(&secs) {
                    return Err(LabeledError::new("--older-than is out of range")
                        .with_label("expected 0sec to 36500day", o.span()));
                }
                secs as u64
            }
            (None, Some(d)) => {
                let n = d.as_int()?;
                if !(0..=36_500).contains(&n) {
                    return Err(LabeledError::new(format!("--days {n} is out of range"))
                        .with_label("expected 0 to 36500", d.span()));
                }
                n as u64 * 86_400
            }
        };
        removed(
            cx,
            ArgSpans::default(),
            Request::CachePruneOlderThan { seconds },
        )
    }
}

impl ExtCommand for CacheVerify {
    fn examples(&self) -> Vec<Example<'_>> {
        vec![
            example(
                "ext cache verify | get damaged",
                "Scrub the cache and list what was damaged",
            ),
            example_with(
                "(ext cache verify).damaged == []",
                "Nothing damaged (the examples above emptied the cache)",
                Value::test_bool(true),
            ),
        ]
    }
    fn run(&self, cx: &Ctx) -> Result<Value, LabeledError> {
        let head = cx.head();
        crate::answer!(cx, cx.ask(ArgSpans::default(), Request::CacheVerify)?, Response::CacheVerified { checked, bytes, damaged } => {
            let mut r = Record::new();
            r.push("checked", Value::int(checked as i64, head));
            r.push("bytes", Value::filesize(bytes as i64, head));
            r.push("damaged", cx.table(&damaged, values::cache_entry));
            Value::record(r, head)
        })
    }
}

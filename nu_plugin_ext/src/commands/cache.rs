//! `ext cache` and its subcommands: the daemon's artifact cache.

use super::{request, type_flag, unexpected, ArgSpans};
use crate::{values, ExtPlugin};
use extreg_shared::protocol::{Request, Response};
use nu_plugin::{EngineInterface, EvaluatedCall, SimplePluginCommand};
use nu_protocol::{Example, LabeledError, Record, Signature, SyntaxShape, Type, Value};

pub struct Cache;
pub struct CacheList;
pub struct CacheStats;
pub struct CacheClear;
pub struct CachePrune;

fn removed(resp: Response, head: nu_protocol::Span) -> Result<Value, LabeledError> {
    match resp {
        Response::CacheRemoved { entries, bytes } => {
            let mut r = Record::new();
            r.push("removed", Value::int(entries as i64, head));
            r.push("freed", Value::filesize(bytes as i64, head));
            Ok(Value::record(r, head))
        }
        other => Err(unexpected(other, head)),
    }
}

impl SimplePluginCommand for Cache {
    type Plugin = ExtPlugin;
    fn name(&self) -> &str {
        "ext cache"
    }
    fn description(&self) -> &str {
        "Manage the daemon's artifact cache: list, stats, clear, prune."
    }
    fn signature(&self) -> Signature {
        Signature::build(self.name())
            .input_output_type(Type::Nothing, Type::String)
            .category(super::category())
    }
    fn examples(&self) -> Vec<Example<'_>> {
        vec![Example {
            example: "ext cache | describe",
            description: "The help text, listing the cache subcommands",
            result: Some(Value::test_string("string")),
        }]
    }
    fn run(
        &self,
        _: &ExtPlugin,
        engine: &EngineInterface,
        call: &EvaluatedCall,
        _: &Value,
    ) -> Result<Value, LabeledError> {
        Ok(Value::string(engine.get_help()?, call.head))
    }
}

impl SimplePluginCommand for CacheList {
    type Plugin = ExtPlugin;
    fn name(&self) -> &str {
        "ext cache list"
    }
    fn description(&self) -> &str {
        "List cached artifacts: type, name, version, source, size, digest, cached_at, last_used."
    }
    fn signature(&self) -> Signature {
        Signature::build(self.name())
            .input_output_type(Type::Nothing, Type::table())
            .category(super::category())
    }
    fn examples(&self) -> Vec<Example<'_>> {
        vec![
            Example {
                example: "ext cache list | sort-by last_used",
                description: "Least recently used first",
                result: None,
            },
            Example {
                example: "ext cache list | where idle > 30day",
                description: "Not used for a month (age and idle are durations)",
                result: None,
            },
            Example {
                example: "(ext cache list).name",
                description: "What is cached (after the examples above pulled k3s)",
                result: Some(Value::test_list(vec![Value::test_string("k3s")])),
            },
        ]
    }
    fn run(
        &self,
        plugin: &ExtPlugin,
        engine: &EngineInterface,
        call: &EvaluatedCall,
        _: &Value,
    ) -> Result<Value, LabeledError> {
        match request(
            plugin,
            engine,
            call,
            ArgSpans::default(),
            Request::CacheList,
        )? {
            Response::CacheEntries(es) => Ok(Value::list(
                es.iter()
                    .map(|e| values::cache_entry(e, call.head))
                    .collect(),
                call.head,
            )),
            other => Err(unexpected(other, call.head)),
        }
    }
}

impl SimplePluginCommand for CacheStats {
    type Plugin = ExtPlugin;
    fn name(&self) -> &str {
        "ext cache stats"
    }
    fn description(&self) -> &str {
        "Cache figures: metadata caches (entries, hits, misses, ttl) and the artifact cache (entries, bytes, hit ratio, oldest)."
    }
    fn signature(&self) -> Signature {
        Signature::build(self.name())
            .input_output_type(Type::Nothing, Type::record())
            .category(super::category())
    }
    fn examples(&self) -> Vec<Example<'_>> {
        vec![
            Example {
                example: "(ext cache stats).ttl",
                description: "How long metadata answers are kept",
                result: Some(Value::test_duration(300 * 1_000_000_000)),
            },
            Example {
                example: "(ext cache stats).artifacts.bytes",
                description: "Bytes in the artifact cache (k3s, after the examples above)",
                result: Some(Value::test_filesize(469)),
            },
        ]
    }
    fn run(
        &self,
        plugin: &ExtPlugin,
        engine: &EngineInterface,
        call: &EvaluatedCall,
        _: &Value,
    ) -> Result<Value, LabeledError> {
        match request(
            plugin,
            engine,
            call,
            ArgSpans::default(),
            Request::CacheStats,
        )? {
            Response::CacheStats(s) => Ok(values::from_serde(&s, call.head)),
            other => Err(unexpected(other, call.head)),
        }
    }
}

impl SimplePluginCommand for CacheClear {
    type Plugin = ExtPlugin;
    crate::completes!(crate::completion::Spec::default());
    fn name(&self) -> &str {
        "ext cache clear"
    }
    fn description(&self) -> &str {
        "Remove cached artifacts: all of them, or those of one type and/or name."
    }
    fn signature(&self) -> Signature {
        Signature::build(self.name())
            .named("type", SyntaxShape::String, "only this type", Some('t'))
            .named(
                "name",
                SyntaxShape::String,
                "only this extension",
                Some('n'),
            )
            .switch("all", "everything", Some('a'))
            .input_output_type(Type::Nothing, Type::record())
            .category(super::category())
    }
    fn examples(&self) -> Vec<Example<'_>> {
        vec![
            Example {
                example: "ext cache clear --type taskserv --name kubernetes",
                description:
                    "Forget every cached kubernetes artifact (none, over the example catalogue)",
                result: Some(super::examples::nothing_removed()),
            },
            Example {
                example: "ext cache clear --all",
                description: "Empty the cache (k3s, after the examples above)",
                result: Some(super::examples::removed(1, 469)),
            },
        ]
    }
    fn run(
        &self,
        plugin: &ExtPlugin,
        engine: &EngineInterface,
        call: &EvaluatedCall,
        _: &Value,
    ) -> Result<Value, LabeledError> {
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
        removed(
            request(
                plugin,
                engine,
                call,
                spans,
                Request::CacheClear {
                    ext_type,
                    name,
                    all,
                },
            )?,
            call.head,
        )
    }
}

impl SimplePluginCommand for CachePrune {
    type Plugin = ExtPlugin;
    fn name(&self) -> &str {
        "ext cache prune"
    }
    fn description(&self) -> &str {
        "Remove cached artifacts not used for a while: --older-than 30day (or --days 30)."
    }
    fn signature(&self) -> Signature {
        Signature::build(self.name())
            .named(
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
            .input_output_type(Type::Nothing, Type::record())
            .category(super::category())
    }
    fn examples(&self) -> Vec<Example<'_>> {
        vec![
            Example {
                example: "ext cache prune --older-than 30day",
                description:
                    "Drop what was not used in a month (nothing, over the example catalogue)",
                result: Some(super::examples::nothing_removed()),
            },
            Example {
                example: "ext cache prune --days 30",
                description: "The same, counted in days",
                result: Some(super::examples::nothing_removed()),
            },
        ]
    }
    fn run(
        &self,
        plugin: &ExtPlugin,
        engine: &EngineInterface,
        call: &EvaluatedCall,
        _: &Value,
    ) -> Result<Value, LabeledError> {
        /// 100 years: anything longer is a typo.
        const MAX_SECS: i64 = 36_500 * 86_400;
        let older = super::flag_value(call, "older-than");
        let days = super::flag_value(call, "days");
        let seconds = match (older, days) {
            (Some(o), Some(d)) => {
                return Err(LabeledError::new("give --older-than or --days, not both")
                    .with_label("drop this", d.span())
                    .with_label("or this", o.span()))
            }
            (None, None) => {
                return Err(
                    LabeledError::new("say how old: --older-than 30day (or --days 30)")
                        .with_label("needs --older-than or --days", call.head),
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
            request(
                plugin,
                engine,
                call,
                ArgSpans::default(),
                Request::CachePruneOlderThan { seconds },
            )?,
            call.head,
        )
    }
}

pub struct CacheVerify;

impl SimplePluginCommand for CacheVerify {
    type Plugin = ExtPlugin;
    fn name(&self) -> &str {
        "ext cache verify"
    }
    fn description(&self) -> &str {
        "Hash every cached artifact against its digest; damaged ones are evicted (the next use fetches them again)."
    }
    fn signature(&self) -> Signature {
        Signature::build(self.name())
            .input_output_type(Type::Nothing, Type::record())
            .category(super::category())
    }
    fn examples(&self) -> Vec<Example<'_>> {
        vec![Example {
            example: "ext cache verify | get damaged",
            description: "Scrub the cache and list what was damaged",
            result: None,
        }]
    }
    fn run(
        &self,
        plugin: &ExtPlugin,
        engine: &EngineInterface,
        call: &EvaluatedCall,
        _: &Value,
    ) -> Result<Value, LabeledError> {
        match request(
            plugin,
            engine,
            call,
            ArgSpans::default(),
            Request::CacheVerify,
        )? {
            Response::CacheVerified {
                checked,
                bytes,
                damaged,
            } => {
                let head = call.head;
                let mut r = Record::new();
                r.push("checked", Value::int(checked as i64, head));
                r.push("bytes", Value::filesize(bytes as i64, head));
                r.push(
                    "damaged",
                    Value::list(
                        damaged
                            .iter()
                            .map(|e| values::cache_entry(e, head))
                            .collect(),
                        head,
                    ),
                );
                Ok(Value::record(r, head))
            }
            other => Err(unexpected(other, call.head)),
        }
    }
}

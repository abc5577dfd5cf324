//! Tab completion for the `ext` commands (nu-plugin's dynamic completion):
//! extension names and versions from the daemon's caches, types and
//! sources from the fixed lists.
//!
//! Asking the daemon is bounded by [`LIMIT`] in all, never starts it, and
//! it answers only from what it already holds (`Request::Complete`), so a
//! Tab never waits on a backend. Without a daemon, types and sources still
//! complete and names and versions come back empty (not file names).
//!
//! A command opts in with `ExtCommand::completion`: a [`Spec`] saying
//! where its name and version are (`commands::Cmd` then calls
//! [`complete`]).

use crate::ExtPlugin;
use extreg_shared::protocol::{Completions, Request, Response};
use extreg_shared::{ExtensionType, Source};
use nu_plugin::{DynamicCompletionCall, EngineInterface};
use nu_protocol::engine::ArgType;
use nu_protocol::DynamicSuggestion;
use std::time::Duration;

/// Longest a Tab waits for the daemon.
pub const LIMIT: Duration = Duration::from_millis(500);

/// Where a command takes the extension name and version.
#[derive(Debug, Clone, Copy, Default)]
pub struct Spec {
    /// Positional index of the extension name.
    pub name_at: Option<usize>,
    /// Positional index of a version (else `--version` is one).
    pub version_at: Option<usize>,
}

impl Spec {
    /// `<name>` first, `--version` as a flag: info, versions, pull, load.
    pub const NAME_FIRST: Spec = Spec {
        name_at: Some(0),
        version_at: None,
    };
}

fn suggestion(value: &str, description: Option<String>) -> DynamicSuggestion {
    DynamicSuggestion {
        value: value.to_string(),
        description,
        ..Default::default()
    }
}

/// `--type` values.
pub fn types() -> Vec<DynamicSuggestion> {
    ExtensionType::ALL
        .iter()
        .map(|t| suggestion(t.as_str(), None))
        .collect()
}

/// `--source` values.
pub fn sources() -> Vec<DynamicSuggestion> {
    Source::ALL
        .iter()
        .map(|s| suggestion(s.as_str(), None))
        .collect()
}

/// A string literal the user typed for flag `flag` (not the one being
/// completed: that one holds the cursor's placeholder).
fn typed_flag(call: &DynamicCompletionCall, flag: &str) -> Option<String> {
    call.call.get_flag_expr(flag).and_then(|e| e.as_string())
}

fn typed_positional(call: &DynamicCompletionCall, i: usize) -> Option<String> {
    call.call
        .positional_iter()
        .nth(i)
        .and_then(|e| e.as_string())
}

/// Asks the daemon (bounded, no autostart); empty on any failure.
pub fn ask(
    plugin: &ExtPlugin,
    engine: &EngineInterface,
    ext_type: Option<ExtensionType>,
    name: Option<String>,
) -> Completions {
    let settings = match crate::commands::settings(engine) {
        Ok(s) => s,
        Err(_) => crate::settings::Settings::defaults(
            std::env::var_os("XDG_RUNTIME_DIR").map(std::path::PathBuf::from),
        ),
    };
    let name = name.filter(|n| extreg_shared::validate_name(n).is_ok());
    let req = Request::Complete { ext_type, name };
    match plugin
        .runtime
        .block_on(crate::client::completions(&settings, req, LIMIT))
    {
        Ok(Response::Completions(c)) => c,
        _ => Completions::default(),
    }
}

/// Extension names (of the typed `--type`, if any), described by type and
/// description.
pub fn names(
    plugin: &ExtPlugin,
    engine: &EngineInterface,
    call: &DynamicCompletionCall,
) -> Vec<DynamicSuggestion> {
    let ext_type = typed_flag(call, "type").and_then(|t| t.parse().ok());
    let c = ask(plugin, engine, ext_type, None);
    let mut out: Vec<DynamicSuggestion> = Vec::new();
    for n in c.names {
        let what = if n.description.is_empty() {
            n.ext_type.to_string()
        } else {
            format!("{}: {}", n.ext_type, n.description)
        };
        match out.iter_mut().find(|s| s.value == n.name) {
            // One name, several types: say so.
            Some(s) => {
                let d = s.description.get_or_insert_with(String::new);
                d.push_str("; ");
                d.push_str(&what);
            }
            None => out.push(suggestion(&n.name, Some(what))),
        }
    }
    out
}

/// Versions of the extension named at `name_at` (or by `--name`), newest
/// first.
pub fn versions(
    plugin: &ExtPlugin,
    engine: &EngineInterface,
    call: &DynamicCompletionCall,
    name_at: Option<usize>,
) -> Vec<DynamicSuggestion> {
    let name = name_at
        .and_then(|i| typed_positional(call, i))
        .or_else(|| typed_flag(call, "name"));
    let Some(name) = name else { return Vec::new() };
    let ext_type = typed_flag(call, "type").and_then(|t| t.parse().ok());
    ask(plugin, engine, ext_type, Some(name))
        .versions
        .iter()
        .map(|v| suggestion(v, None))
        .collect()
}

/// The completion of `arg` for a command shaped like `spec`: `--type`,
/// `--source`, `--name`, `--version` and the name/version positionals.
/// `None` (the shell's default completion) for anything else.
pub fn complete(
    plugin: &ExtPlugin,
    engine: &EngineInterface,
    call: &DynamicCompletionCall,
    arg: &ArgType,
    spec: Spec,
) -> Option<Vec<DynamicSuggestion>> {
    match arg {
        ArgType::Flag(f) => match f.as_ref() {
            "type" => Some(types()),
            "source" => Some(sources()),
            "name" => Some(names(plugin, engine, call)),
            "version" if spec.version_at.is_none() => {
                Some(versions(plugin, engine, call, spec.name_at))
            }
            _ => None,
        },
        ArgType::Positional(i) if Some(*i) == spec.name_at => Some(names(plugin, engine, call)),
        ArgType::Positional(i) if Some(*i) == spec.version_at => {
            Some(versions(plugin, engine, call, spec.name_at))
        }
        _ => None,
    }
}

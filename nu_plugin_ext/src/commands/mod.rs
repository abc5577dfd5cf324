//! One file per command. Shared here: reading flags into typed values, and
//! turning failures into `LabeledError`s that point at the argument at
//! fault and say what to do.

mod cache;
mod delete;
mod deps;
mod discover;
pub mod examples;
mod ext;
mod health;
mod info;
mod list;
mod load;
mod publish;
mod pull;
mod search;
mod test_oci;
mod versions;

use crate::client::{self, ClientError};
use crate::settings::Settings;
use crate::ExtPlugin;
use extreg_shared::protocol::{Request, Response};
use extreg_shared::{ExtensionType, Source};
use nu_plugin::{EngineInterface, EvaluatedCall, PluginCommand};
use nu_protocol::{LabeledError, Span, Value};

pub const CATEGORY: &str = "extensions";

/// `--type` on commands that take one extension name.
pub const TYPE_FLAG_HELP: &str =
    "provider, taskserv or cluster (needed when the name is in several)";

pub fn all() -> Vec<Box<dyn PluginCommand<Plugin = ExtPlugin>>> {
    vec![
        Box::new(ext::Ext),
        Box::new(list::List),
        Box::new(search::Search),
        Box::new(info::Info),
        Box::new(versions::Versions),
        Box::new(pull::Pull),
        Box::new(load::Load),
        Box::new(publish::Publish),
        Box::new(delete::Delete),
        Box::new(health::Health),
        Box::new(cache::Cache),
        Box::new(cache::CacheList),
        Box::new(cache::CacheStats),
        Box::new(cache::CacheClear),
        Box::new(cache::CachePrune),
        Box::new(discover::Discover),
        Box::new(cache::CacheVerify),
        Box::new(deps::Deps),
        Box::new(test_oci::TestOci),
    ]
}

pub fn category() -> nu_protocol::Category {
    nu_protocol::Category::Custom(CATEGORY.into())
}

/// Spans of the arguments a daemon error may be about.
#[derive(Default, Clone, Copy)]
pub struct ArgSpans {
    pub name: Option<Span>,
    pub ext_type: Option<Span>,
    pub version: Option<Span>,
    pub source: Option<Span>,
    /// `--registry` or `--namespace` (another registry named by the caller).
    pub registry: Option<Span>,
}

/// A flag's value; `null` counts as not given, so scripts can pass
/// `--type ($row.type? | default null)`.
pub fn flag_value(call: &EvaluatedCall, name: &str) -> Option<Value> {
    call.get_flag_value(name).filter(|v| !v.is_nothing())
}

/// `--type`, checked here so a typo is caught before any I/O.
pub fn type_flag(
    call: &EvaluatedCall,
) -> Result<(Option<ExtensionType>, Option<Span>), LabeledError> {
    let Some(v) = flag_value(call, "type") else {
        return Ok((None, None));
    };
    let span = v.span();
    let s = v
        .as_str()
        .map_err(|_| LabeledError::new("--type takes a string").with_label("not a string", span))?;
    let t = s.parse::<ExtensionType>().map_err(|_| {
        LabeledError::new(format!("unknown extension type '{s}'"))
            .with_label("expected provider, taskserv or cluster", span)
    })?;
    Ok((Some(t), Some(span)))
}

pub fn source_flag(call: &EvaluatedCall) -> Result<(Option<Source>, Option<Span>), LabeledError> {
    let Some(v) = flag_value(call, "source") else {
        return Ok((None, None));
    };
    let span = v.span();
    let s = v.as_str().map_err(|_| {
        LabeledError::new("--source takes a string").with_label("not a string", span)
    })?;
    let src = s.parse::<Source>().map_err(|_| {
        LabeledError::new(format!("unknown source '{s}'"))
            .with_label("expected gitea, oci or local", span)
    })?;
    Ok((Some(src), Some(span)))
}

/// `--version`: an exact semantic version (a leading `v` is accepted).
pub fn version_flag(call: &EvaluatedCall) -> Result<(Option<String>, Option<Span>), LabeledError> {
    let Some(v) = flag_value(call, "version") else {
        return Ok((None, None));
    };
    let span = v.span();
    let s = v.as_str().map_err(|_| {
        LabeledError::new("--version takes a string").with_label("not a string", span)
    })?;
    let parsed = extreg_shared::parse_version(s)
        .map_err(|e| LabeledError::new("invalid version").with_label(e.to_string(), span))?;
    Ok((Some(parsed.to_string()), Some(span)))
}

/// `--version` as a constraint (`^1.2`, `>=1.2, <2`, `1.2.0 - 1.5.0`,
/// `latest`, ...), checked here so a typo is labelled before any I/O.
pub fn constraint_flag(call: &EvaluatedCall) -> Result<(String, Option<Span>), LabeledError> {
    let Some(v) = flag_value(call, "version") else {
        return Ok((String::new(), None));
    };
    let span = v.span();
    let s = v.as_str().map_err(|_| {
        LabeledError::new("--version takes a string").with_label("not a string", span)
    })?;
    extreg_shared::Constraint::parse(s).map_err(|e| {
        LabeledError::new("invalid version constraint")
            .with_label(e.reason.clone(), span)
            .with_help("examples: 1.2.3, ^1.2, ~1.2.0, >=1.2, <2, 1.2.0 - 1.5.0, latest")
    })?;
    Ok((s.to_string(), Some(span)))
}

/// The positional extension name at `pos`, validated.
pub fn name_arg(call: &EvaluatedCall, pos: usize) -> Result<(String, Span), LabeledError> {
    let v: Value = call.req(pos)?;
    let span = v.span();
    let s = v.as_str().map_err(|_| {
        LabeledError::new("the name must be a string").with_label("not a string", span)
    })?;
    extreg_shared::validate_name(s)
        .map_err(|e| LabeledError::new("invalid extension name").with_label(e.to_string(), span))?;
    Ok((s.to_string(), span))
}

/// The plugin's settings: `$env.config.plugins.ext` over the defaults.
pub fn settings(engine: &EngineInterface) -> Result<Settings, LabeledError> {
    let config = engine.get_plugin_config().map_err(LabeledError::from)?;
    // Nushell's $env first, then the plugin process's own environment.
    let runtime_dir = engine
        .get_env_var("XDG_RUNTIME_DIR")
        .ok()
        .flatten()
        .and_then(|v| v.as_str().ok().map(std::path::PathBuf::from))
        .or_else(|| std::env::var_os("XDG_RUNTIME_DIR").map(std::path::PathBuf::from));
    Settings::from_config(config, runtime_dir)
}

/// Sends one request to the daemon, on the plugin's runtime. Ctrl-C stops
/// waiting at once (the daemon then cancels what no one else waits for).
pub fn request(
    plugin: &ExtPlugin,
    engine: &EngineInterface,
    call: &EvaluatedCall,
    spans: ArgSpans,
    req: Request,
) -> Result<Response, LabeledError> {
    request_with_progress(plugin, engine, call, spans, req, None)
}

/// [`request`] for the long operations: progress frames drive a bar on
/// stderr (only when it is a terminal) labelled `label`.
pub fn request_with_progress(
    plugin: &ExtPlugin,
    engine: &EngineInterface,
    call: &EvaluatedCall,
    spans: ArgSpans,
    req: Request,
    label: Option<String>,
) -> Result<Response, LabeledError> {
    let mut settings = settings(engine)?;
    if matches!(
        req,
        Request::Publish { .. }
            | Request::PublishTo(_)
            | Request::Delete { .. }
            | Request::Sign { .. }
            | Request::LoadTree { .. }
            | Request::LoadLocked { .. }
            | Request::Deps { .. }
            | Request::TestOci(_)
    ) {
        // A push reports no bytes while it goes (only its phase), and can
        // take long for up to 1 GiB; the daemon bounds it itself.
        settings.timeout = settings.timeout.max(std::time::Duration::from_secs(3600));
    }
    let interrupt = std::sync::Arc::new(tokio::sync::Notify::new());
    let notify = interrupt.clone();
    let _guard = engine
        .register_signal_handler(Box::new(move |action| {
            if matches!(action, nu_protocol::SignalAction::Interrupt) {
                notify.notify_one();
            }
        }))
        .map_err(LabeledError::from)?;
    if engine.signals().interrupted() {
        return Err(to_labeled(ClientError::Interrupted, call.head, spans));
    }
    let mut bar = label.map(crate::progress::Bar::new);
    let mut on_progress = |ev: &extreg_shared::protocol::ProgressEvent| {
        if let Some(b) = bar.as_mut() {
            b.update(ev)
        }
    };
    let res = plugin.runtime.block_on(client::request_with(
        &settings,
        req,
        &mut on_progress,
        interrupt.notified(),
    ));
    drop(bar);
    res.map_err(|e| to_labeled(e, call.head, spans))
}

/// A failure as the user sees it: the message, a label on the argument it
/// is about (or the command), and what to do.
pub fn to_labeled(e: ClientError, head: Span, spans: ArgSpans) -> LabeledError {
    let help = e.help();
    let err = match &e {
        ClientError::Daemon(f) => {
            use extreg_shared::Field;
            // The daemon names the input at fault; nothing here reads the
            // message.
            let span = match f.field {
                Some(Field::Name) => spans.name,
                Some(Field::Version) => spans.version,
                Some(Field::Type) => spans.ext_type,
                Some(Field::Source) => spans.source,
                Some(Field::Registry) => spans.registry,
                _ => None,
            };
            let label = f.kind.replace('_', " ");
            LabeledError::new(f.message.clone())
                .with_code(format!("extregd::{}", f.kind))
                .with_label(label, span.unwrap_or(head))
        }
        other => {
            LabeledError::new(other.to_string()).with_label("while running this command", head)
        }
    };
    if help.is_empty() {
        err
    } else {
        err.with_help(help)
    }
}

pub fn unexpected(resp: Response, head: Span) -> LabeledError {
    LabeledError::new(format!("extregd sent an unexpected answer: {resp:?}"))
        .with_label("while running this command", head)
}

//! One file per command, each an [`ExtCommand`]: its words, arguments,
//! examples and what it does with a [`Ctx`]. Shared here: [`Cmd`], which
//! makes an `ExtCommand` a Nushell command (category, input, Tab
//! completion); the flags several commands take ([`Args`]); reading flags
//! into typed values; asking the daemon ([`Ctx::ask`], [`answer!`]); and
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
mod kcl;
mod list;
mod load;
mod publish;
mod pull;
mod search;
mod test_oci;
mod versions;

use crate::client::{self, ClientError};
use crate::completion::Spec;
use crate::settings::Settings;
use crate::ExtPlugin;
use extreg_shared::protocol::{Request, Response};
use extreg_shared::{ExtensionType, Source};
use nu_plugin::SimplePluginCommand;
use nu_plugin::{DynamicCompletionCall, EngineInterface, EvaluatedCall, PluginCommand};
use nu_protocol::engine::ArgType;
use nu_protocol::{
    DynamicSuggestion, Example, LabeledError, Signature, Span, SyntaxShape, Type, Value,
};

pub const CATEGORY: &str = "extensions";

/// `--type` on commands that take one extension name.
pub const TYPE_FLAG_HELP: &str =
    "provider, taskserv or cluster (needed when the name is in several)";

/// The `ext` family: each command's words, output type and one-line
/// description, in the order `help ext` lists them. What each takes and
/// does is in its file.
pub fn all() -> Vec<Box<dyn PluginCommand<Plugin = ExtPlugin>>> {
    use Type as T;
    vec![
        cmd("ext", T::String, ext::Ext,
            "Find, inspect and fetch provisioning extensions (providers, taskservs, clusters) through extregd."),
        cmd("ext list", T::table(), list::List,
            "List extensions from every backend, one row per extension with its newest version."),
        cmd("ext search", T::table(), search::Search,
            "Search extensions by name, description and tags (case-insensitive); exact names first."),
        cmd("ext info", T::record(), info::Info,
            "Show one extension: its newest stable version, or the version given."),
        cmd("ext versions", T::table(), versions::Versions,
            "List the versions of one extension, newest first, pre-releases marked."),
        cmd("ext pull", T::record(), pull::Pull,
            "Fetch one version of an extension into the daemon's artifact cache (verified), without extracting it."),
        cmd("ext load", T::record(), load::Load,
            "Load an extension: resolve the version constraint, fetch and verify the artifact (the daemon does), and extract it into the extensions folder."),
        cmd("ext publish", T::record(), publish::Publish,
            "Publish an extension folder (with extension.yaml) to an OCI registry as {namespace}/{name}-{type}:{version}."),
        cmd("ext delete", T::record(), delete::Delete,
            "Delete one version of an extension from the OCI registry."),
        cmd("ext health", T::record(), health::Health,
            "Ask extregd whether it and each backend (local, oci, gitea) are reachable."),
        cmd("ext cache", T::String, cache::Cache,
            "Manage the daemon's artifact cache: list, stats, clear, prune."),
        cmd("ext cache list", T::table(), cache::CacheList,
            "List cached artifacts: type, name, version, source, size, digest, cached_at, last_used."),
        cmd("ext cache stats", T::record(), cache::CacheStats,
            "Cache figures: metadata caches (entries, hits, misses, ttl) and the artifact cache (entries, bytes, hit ratio, oldest)."),
        cmd("ext cache clear", T::record(), cache::CacheClear,
            "Remove cached artifacts: all of them, or those of one type and/or name."),
        cmd("ext cache prune", T::record(), cache::CachePrune,
            "Remove cached artifacts not used for a while: --older-than 30day (or --days 30)."),
        cmd("ext discover", T::table(), discover::Discover,
            "Discover extensions across every backend: newest version, the backend serving it and every backend holding it."),
        cmd("ext cache verify", T::record(), cache::CacheVerify,
            "Hash every cached artifact against its digest; damaged ones are evicted (the next use fetches them again)."),
        cmd("ext deps", T::record(), deps::Deps,
            "Show the resolved dependency tree of an extension: the version ext load would choose for it and for everything it needs."),
        cmd("ext test-oci", T::record(), test_oci::TestOci,
            "Diagnose the OCI registry: reachable, TLS, the Distribution API, auth (challenge and which credentials), catalog and namespace access, and push permission with --push."),
        cmd("ext kcl", T::String, kcl::Kcl,
            "KCL packages in the OCI registry (seed 003): list, pull."),
        cmd("ext kcl list", T::table(), kcl::KclList,
            "List the KCL packages (every tag of every repository) in an OCI namespace the daemon reads."),
        cmd("ext kcl pull", T::record(), kcl::KclPull,
            "Fetch one KCL package into the daemon's artifact cache, verified against its layer digest."),
    ]
}

pub fn category() -> nu_protocol::Category {
    nu_protocol::Category::Custom(CATEGORY.into())
}

/// One `ext` command. [`Cmd`] adds what all of them share: the category,
/// `nothing` as input, and Tab completion where [`ExtCommand::completion`]
/// says.
pub trait ExtCommand: Send + Sync + 'static {
    fn extra_description(&self) -> &str {
        ""
    }
    fn search_terms(&self) -> Vec<&str> {
        vec![]
    }
    /// The positionals and flags, added to `Signature::build(name)`.
    fn arguments(&self, sig: Signature) -> Signature {
        sig
    }
    fn examples(&self) -> Vec<Example<'_>>;
    /// Where the command takes a name and a version, for Tab completion;
    /// None: the shell's own completion.
    fn completion(&self) -> Option<Spec> {
        None
    }
    fn run(&self, cx: &Ctx) -> Result<Value, LabeledError>;
}

/// An [`ExtCommand`] as a Nushell plugin command: its words, output type
/// (every command takes nothing as input) and description, and the command.
pub struct Cmd<C> {
    name: &'static str,
    output: Type,
    description: &'static str,
    cmd: C,
}

/// One row of [`all`].
fn cmd<C: ExtCommand>(
    name: &'static str,
    output: Type,
    cmd: C,
    description: &'static str,
) -> Box<dyn PluginCommand<Plugin = ExtPlugin>> {
    Box::new(Cmd {
        name,
        output,
        description,
        cmd,
    })
}

impl<C: ExtCommand> SimplePluginCommand for Cmd<C> {
    type Plugin = ExtPlugin;

    fn name(&self) -> &str {
        self.name
    }

    fn description(&self) -> &str {
        self.description
    }

    fn extra_description(&self) -> &str {
        self.cmd.extra_description()
    }

    fn search_terms(&self) -> Vec<&str> {
        self.cmd.search_terms()
    }

    fn signature(&self) -> Signature {
        self.cmd
            .arguments(Signature::build(self.name))
            .input_output_type(Type::Nothing, self.output.clone())
            .category(category())
    }

    fn examples(&self) -> Vec<Example<'_>> {
        self.cmd.examples()
    }

    #[allow(deprecated)]
    fn get_dynamic_completion(
        &self,
        plugin: &ExtPlugin,
        engine: &EngineInterface,
        call: DynamicCompletionCall,
        arg_type: ArgType,
        _experimental: nu_protocol::engine::ExperimentalMarker,
    ) -> Option<Vec<DynamicSuggestion>> {
        let spec = self.cmd.completion()?;
        crate::completion::complete(plugin, engine, &call, &arg_type, spec)
    }

    fn run(
        &self,
        plugin: &ExtPlugin,
        engine: &EngineInterface,
        call: &EvaluatedCall,
        _input: &Value,
    ) -> Result<Value, LabeledError> {
        self.cmd.run(&Ctx {
            plugin,
            engine,
            call,
        })
    }
}

/// What a command runs with: the plugin, the engine and the call.
pub struct Ctx<'a> {
    pub plugin: &'a ExtPlugin,
    pub engine: &'a EngineInterface,
    pub call: &'a EvaluatedCall,
}

impl Ctx<'_> {
    /// The span of the command itself.
    pub fn head(&self) -> Span {
        self.call.head
    }

    /// Sends one request to the daemon (see [`request`]).
    pub fn ask(&self, spans: ArgSpans, req: Request) -> Result<Response, LabeledError> {
        request(self.plugin, self.engine, self.call, spans, req)
    }

    /// [`Self::ask`] with a progress bar labelled `label` on a terminal's
    /// stderr (see [`request_with_progress`]).
    pub fn ask_with_progress(
        &self,
        spans: ArgSpans,
        req: Request,
        label: String,
    ) -> Result<Response, LabeledError> {
        request_with_progress(self.plugin, self.engine, self.call, spans, req, Some(label))
    }

    /// A list of `items`, each made a value by `f`, all on the command's span.
    pub fn table<T>(&self, items: &[T], f: impl Fn(&T, Span) -> Value) -> Value {
        let head = self.head();
        Value::list(items.iter().map(|x| f(x, head)).collect(), head)
    }
}

/// The command's help text (the command groups `ext` and `ext cache`).
pub fn help(cx: &Ctx) -> Result<Value, LabeledError> {
    Ok(Value::string(cx.engine.get_help()?, cx.head()))
}

/// The value of the answer the command expects, or the "unexpected
/// answer" error for any other: `answer!(cx, resp, Response::X(x) => value)`.
#[macro_export]
macro_rules! answer {
    ($cx:expr, $resp:expr, $pat:pat => $value:expr) => {
        match $resp {
            $pat => Ok($value),
            other => Err($crate::commands::unexpected(other, $cx.head())),
        }
    };
}

/// An example whose result is not checked (it needs other data than the
/// example catalogue's).
pub fn example(example: &'static str, description: &'static str) -> Example<'static> {
    Example {
        example,
        description,
        result: None,
    }
}

/// An example whose result the tests check against a real daemon serving
/// the example catalogue (see [`examples`]).
pub fn example_with(
    example: &'static str,
    description: &'static str,
    result: Value,
) -> Example<'static> {
    Example {
        example,
        description,
        result: Some(result),
    }
}

/// The arguments several commands take, each with its one help text.
pub trait Args {
    /// `<name>`: the extension name, first.
    fn name_arg(self) -> Self;
    /// `--type` for one extension (needed when the name is in several).
    fn type_of_name(self) -> Self;
    /// `--type` as a filter.
    fn type_filter(self) -> Self;
    /// `--source` as a filter.
    fn source_filter(self) -> Self;
    /// `--version` as a constraint, with its help text.
    fn version_flag(self, help: &str) -> Self;
    /// `--source` the version must come from, with its help text.
    fn source_choice(self, help: &str) -> Self;
}

impl Args for Signature {
    fn name_arg(self) -> Self {
        self.required("name", SyntaxShape::String, "extension name")
    }

    fn type_of_name(self) -> Self {
        self.named("type", SyntaxShape::String, TYPE_FLAG_HELP, Some('t'))
    }

    fn type_filter(self) -> Self {
        self.named(
            "type",
            SyntaxShape::String,
            "only this type: provider, taskserv or cluster",
            Some('t'),
        )
    }

    fn source_filter(self) -> Self {
        self.named(
            "source",
            SyntaxShape::String,
            "only this backend: gitea, oci or local",
            Some('s'),
        )
    }

    fn version_flag(self, help: &str) -> Self {
        self.named("version", SyntaxShape::String, help, Some('v'))
    }

    fn source_choice(self, help: &str) -> Self {
        self.named("source", SyntaxShape::String, help, Some('s'))
    }
}

/// `--version` of the commands that take a constraint (pull, load).
pub const CONSTRAINT_HELP: &str =
    "a version or constraint: 1.2.3, ^1.2, ~1.2.0, >=1.2, <2, 1.2.0 - 1.5.0 (default: newest stable)";
/// `--source` of the commands that fetch (pull, load).
pub const SOURCE_CHOICE_HELP: &str = "insist on this backend: gitea, oci or local";

/// `<name>`, `--type`, `--version` (a constraint) and `--source` of the
/// commands that resolve one extension (pull, load, deps), read and
/// checked, with their spans.
pub struct Resolve {
    pub name: Option<String>,
    pub ext_type: Option<ExtensionType>,
    pub constraint: String,
    pub source: Option<Source>,
    pub spans: ArgSpans,
}

impl Resolve {
    /// Reads them; `name` is the name already read (or None).
    pub fn read(
        call: &EvaluatedCall,
        name: Option<(String, Span)>,
    ) -> Result<Resolve, LabeledError> {
        let (ext_type, ts) = type_flag(call)?;
        let (constraint, vs) = constraint_flag(call)?;
        let (source, ss) = source_flag(call)?;
        Ok(Resolve {
            spans: ArgSpans {
                name: name.as_ref().map(|(_, s)| *s),
                ext_type: ts,
                version: vs,
                source: ss,
                registry: None,
            },
            name: name.map(|(n, _)| n),
            ext_type,
            constraint,
            source,
        })
    }
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

/// A flag taking free text (`--registry`, `--namespace`): trimmed; an empty
/// one is refused on its span.
pub fn text_flag(call: &EvaluatedCall, name: &str) -> Result<Option<String>, LabeledError> {
    let Some(v) = flag_value(call, name) else {
        return Ok(None);
    };
    let span = v.span();
    let s = v.as_str().map_err(|_| {
        LabeledError::new(format!("--{name} takes a string")).with_label("not a string", span)
    })?;
    if s.trim().is_empty() {
        return Err(
            LabeledError::new(format!("--{name} is empty")).with_label("give a value", span)
        );
    }
    Ok(Some(s.trim().to_string()))
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
        // These can go long without a progress frame (packing a folder
        // before its upload is counted, signing, resolving a tree, a
        // registry diagnosis); the daemon bounds each itself.
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
                // `--namespace` of `ext kcl` shares the span of
                // `--registry`/`--namespace` elsewhere.
                Some(Field::Registry) | Some(Field::Namespace) => spans.registry,
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

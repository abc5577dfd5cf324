use super::{
    example, example_with, name_arg, Args, Ctx, Resolve, CONSTRAINT_HELP, SOURCE_CHOICE_HELP,
};
use crate::completion::Spec;
use crate::{lockfile, values};
use extreg_shared::protocol::{Request, Response};
use nu_protocol::{Example, LabeledError, Record, Signature, SyntaxShape, Value};

/// `ext load <name>`: resolve, fetch (through the daemon), verify, extract.
pub struct Load;

impl super::ExtCommand for Load {
    fn extra_description(&self) -> &str {
        "Dependencies (extension.yaml `dependencies`, `[type/]name[@constraint]`) are resolved across \
         backends and loaded first (column `loaded`, in load order); host tools in `requires` that are \
         not on $env.PATH are listed in `missing_tools` (never installed). The result is written to the \
         lockfile (extensions.lock in the current folder, or --lockfile); --locked loads exactly what it \
         says and refuses a changed digest. \
         Idempotent: a version already extracted is returned as is (already_loaded: true). \
         --force fetches the artifact again and re-extracts it. Archives with absolute paths, '..', \
         links leaving the folder or device files are refused and leave nothing behind."
    }

    fn arguments(&self, sig: Signature) -> Signature {
        sig.optional("name", SyntaxShape::String, "extension name (optional with --locked: then every extension the lockfile was asked for)")
            .type_of_name()
            .version_flag(CONSTRAINT_HELP)
            .source_choice(SOURCE_CHOICE_HELP)
            .switch("pre", "allow pre-releases", None)
            .switch("force", "fetch and extract again even if loaded", Some('f'))
            .switch("locked", "load exactly what the lockfile says (same versions, sources and digests)", None)
            .named("lockfile", SyntaxShape::Filepath, "the lockfile (default: extensions.lock in the current folder)", None)
            .switch("no-lock", "do not write the lockfile", None)
    }

    fn examples(&self) -> Vec<Example<'_>> {
        vec![
            example("ext load kubernetes", "The newest stable kubernetes"),
            example(
                "ext load kubernetes --version '^1.27' | get path",
                "Where the newest 1.x (from 1.27) was extracted",
            ),
            example(
                "ext load aws --type provider --force",
                "Fetch and extract again",
            ),
            example_with(
                "(ext load k3s --version '^1.27').version",
                "The version a constraint resolved to (over the example catalogue)",
                Value::test_string("1.27.5"),
            ),
        ]
    }

    fn completion(&self) -> Option<Spec> {
        Some(Spec::NAME_FIRST)
    }

    fn run(&self, cx: &Ctx) -> Result<Value, LabeledError> {
        let (engine, call) = (cx.engine, cx.call);
        let locked = call.has_flag("locked")?;
        let name = match call.opt::<Value>(0)? {
            Some(_) => Some(name_arg(call, 0)?),
            None if locked => None,
            None => {
                return Err(LabeledError::new("which extension? give a name")
                    .with_label("missing name", call.head)
                    .with_help("ext load NAME, or ext load --locked to load the lockfile"))
            }
        };
        let Resolve {
            name,
            ext_type,
            constraint,
            source,
            spans,
        } = Resolve::read(call, name)?;
        let pre = call.has_flag("pre")?;
        let force = call.has_flag("force")?;
        let (lock_path, lock_span) = lockfile::path(engine, call)?;
        let req = if locked {
            if let Some(span) = spans.version.or(spans.source) {
                return Err(
                    LabeledError::new("--locked loads the locked version and source")
                        .with_label("not with --locked", span),
                );
            }
            let lf = lockfile::read(&lock_path, lock_span)?.ok_or_else(|| {
                LabeledError::new(format!("no lockfile at {}", lock_path.display()))
                    .with_label("--locked needs a lockfile", lock_span)
                    .with_help("run `ext load NAME` once to write it")
            })?;
            let entries = lf
                .closure(name.as_ref().map(|n| (ext_type, n.as_str())))
                .map_err(|e| {
                    LabeledError::new(format!("{}: {e}", lock_path.display()))
                        .with_label("in the lockfile", spans.name.unwrap_or(lock_span))
                })?;
            Request::LoadLocked { entries, force }
        } else {
            Request::LoadTree {
                ext_type,
                name: name.clone().unwrap_or_default(),
                constraint,
                pre,
                source,
                force,
            }
        };
        let label = match &name {
            Some(n) => format!("load {n}"),
            None => "load (locked)".to_string(),
        };
        let tree = crate::answer!(cx, cx.ask_with_progress(spans, req, label)?, Response::LoadedTree(t) => t)?;
        let Some(root) = tree.order.last() else {
            return Err(LabeledError::new("the lockfile locks nothing to load")
                .with_label("empty", lock_span));
        };
        let wrote = if !locked && !call.has_flag("no-lock")? {
            lockfile::update(&lock_path, lock_span, tree.locked.clone())?;
            Some(lock_path.display().to_string())
        } else if locked {
            Some(lock_path.display().to_string())
        } else {
            None
        };
        let h = call.head;
        let Value::Record { val, .. } = values::loaded(root, h) else {
            unreachable!("loaded() builds a record")
        };
        let mut rec = val.into_owned();
        rec.push(
            "loaded",
            Value::list(
                tree.order
                    .iter()
                    .map(|l| {
                        let mut r = Record::new();
                        r.push("type", Value::string(l.ext_type.as_str(), h));
                        r.push("name", Value::string(&l.name, h));
                        r.push("version", Value::string(&l.version, h));
                        r.push("source", Value::string(l.source.as_str(), h));
                        r.push("checksum", Value::string(&l.checksum, h));
                        r.push("path", Value::string(&l.path, h));
                        r.push("already_loaded", Value::bool(l.already_loaded, h));
                        Value::record(r, h)
                    })
                    .collect(),
                h,
            ),
        );
        let path_dirs = lockfile::search_path(engine);
        let mut missing = Vec::new();
        for l in &tree.order {
            for tool in &l.requires {
                if lockfile::find_tool(tool, &path_dirs).is_none() {
                    let mut r = Record::new();
                    r.push("tool", Value::string(tool, h));
                    r.push(
                        "needed_by",
                        Value::string(format!("{}/{}", l.ext_type, l.name), h),
                    );
                    missing.push(Value::record(r, h));
                }
            }
        }
        rec.push("missing_tools", Value::list(missing, h));
        rec.push(
            "lockfile",
            wrote
                .map(|p| Value::string(p, h))
                .unwrap_or_else(|| Value::nothing(h)),
        );
        Ok(Value::record(rec, h))
    }
}

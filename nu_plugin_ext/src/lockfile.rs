//! The lockfile on disk (format in `extreg_shared::lockfile`) and the host
//! tool check of `ext load`. The plugin owns both: the lockfile belongs to
//! the workspace of the nu session (its current folder), and `requires`
//! names tools the session itself will run, so they are looked up on the
//! session's `$env.PATH`.

use extreg_shared::lockfile::{LockedExtension, Lockfile, LOCKFILE_NAME, MAX_LOCKFILE_BYTES};
use nu_plugin::{EngineInterface, EvaluatedCall};
use nu_protocol::{LabeledError, Span, Value};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// `--lockfile` (relative to the session's folder), else
/// `./extensions.lock`; and the span to blame.
pub fn path(
    engine: &EngineInterface,
    call: &EvaluatedCall,
) -> Result<(PathBuf, Span), LabeledError> {
    let cwd = PathBuf::from(engine.get_current_dir()?);
    match crate::commands::flag_value(call, "lockfile") {
        Some(v) => {
            let span = v.span();
            let p = PathBuf::from(v.coerce_str()?.as_ref());
            Ok((if p.is_absolute() { p } else { cwd.join(p) }, span))
        }
        None => Ok((cwd.join(LOCKFILE_NAME), call.head)),
    }
}

/// The lockfile, `None` when there is none.
pub fn read(path: &Path, span: Span) -> Result<Option<Lockfile>, LabeledError> {
    let bad = |msg: String| {
        LabeledError::new(format!("{}: {msg}", path.display())).with_label("this lockfile", span)
    };
    let f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(bad(e.to_string())),
    };
    let mut text = String::new();
    f.take(MAX_LOCKFILE_BYTES as u64 + 1)
        .read_to_string(&mut text)
        .map_err(|e| bad(e.to_string()))?;
    Lockfile::parse(&text)
        .map(Some)
        .map_err(|e| bad(format!("{e} (fix it, or delete it to start afresh)")))
}

/// Merges `entries` into the lockfile and writes it atomically (a temp
/// file beside it, fsynced, renamed over it). A lockfile that does not
/// parse is left alone and reported.
pub fn update(path: &Path, span: Span, entries: Vec<LockedExtension>) -> Result<(), LabeledError> {
    let mut lf = read(path, span)?.unwrap_or_default();
    lf.merge(entries);
    let text = lf.render();
    let fail = |e: std::io::Error| {
        LabeledError::new(format!("cannot write {}: {e}", path.display()))
            .with_label("the lockfile", span)
    };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp.{}",
        path.file_name()
            .and_then(|f| f.to_str())
            .unwrap_or(LOCKFILE_NAME),
        std::process::id()
    ));
    let res = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res.map_err(fail)
}

/// The folders of the session's `$env.PATH` (a list, or a `:`-joined
/// string), else of the plugin's own environment.
pub fn search_path(engine: &EngineInterface) -> Vec<PathBuf> {
    match engine.get_env_var("PATH").ok().flatten() {
        Some(Value::List { vals, .. }) => vals
            .iter()
            .filter_map(|v| v.as_str().ok().map(PathBuf::from))
            .collect(),
        Some(Value::String { val, .. }) => std::env::split_paths(&val).collect(),
        _ => std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).collect())
            .unwrap_or_default(),
    }
}

/// Where `tool` is found: an executable file of that name in one of `dirs`
/// (a name with a `/` is taken as a path).
pub fn find_tool(tool: &str, dirs: &[PathBuf]) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let exec = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if tool.contains('/') {
        let p = PathBuf::from(tool);
        return exec(&p).then_some(p);
    }
    dirs.iter().map(|d| d.join(tool)).find(|p| exec(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tools_are_found_only_when_executable() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let t = d.path().join("mytool");
        std::fs::write(&t, "#!/bin/sh\n").unwrap();
        let dirs = vec![d.path().to_path_buf()];
        assert_eq!(find_tool("mytool", &dirs), None, "not executable");
        std::fs::set_permissions(&t, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(find_tool("mytool", &dirs), Some(t));
        assert_eq!(find_tool("other", &dirs), None);
    }

    #[test]
    fn updates_are_atomic_merges() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("extensions.lock");
        let e = LockedExtension {
            ext_type: extreg_shared::ExtensionType::Taskserv,
            name: "a".into(),
            version: "1.0.0".into(),
            source: extreg_shared::Source::Local,
            digest: format!("sha256:{}", "b".repeat(64)),
            dependencies: vec![],
            root: true,
        };
        update(&p, Span::unknown(), vec![e.clone()]).unwrap();
        update(&p, Span::unknown(), vec![e]).unwrap();
        let lf = read(&p, Span::unknown()).unwrap().unwrap();
        assert_eq!(lf.extensions.len(), 1);
        assert_eq!(
            std::fs::read_dir(d.path()).unwrap().count(),
            1,
            "no temp file left"
        );
        std::fs::write(&p, "garbage = [").unwrap();
        assert!(update(&p, Span::unknown(), vec![]).is_err());
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            "garbage = [",
            "a broken lockfile is kept"
        );
    }
}

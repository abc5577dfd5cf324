//! Where the daemon is and how to reach it. Read from
//! `$env.config.plugins.ext` (all keys optional):
//!
//! ```nu
//! $env.config.plugins.ext = {
//!     socket: "/run/user/1000/extregd/extregd.sock"  # default: see below
//!     daemon: "/usr/local/bin/extregd"   # default: next to the plugin, then PATH
//!     autostart: true                    # start the daemon when none listens
//!     timeout: 30sec                     # longest silence from the daemon (not total time)
//! }
//! ```
//!
//! The default socket is `$XDG_RUNTIME_DIR/extregd/extregd.sock`, or
//! `/tmp/extregd-{uid}/extregd.sock` without `XDG_RUNTIME_DIR` (the same rule
//! as the daemon's, from `extreg_shared::protocol::default_socket_path`).

use nu_protocol::{LabeledError, Value};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub socket: PathBuf,
    pub daemon: Option<PathBuf>,
    pub autostart: bool,
    pub timeout: Duration,
    /// How long to wait for an autostarted daemon's socket.
    pub start_timeout: Duration,
}

impl Settings {
    pub fn defaults(xdg_runtime_dir: Option<PathBuf>) -> Settings {
        // SAFETY: geteuid has no preconditions and cannot fail.
        let uid = unsafe { libc::geteuid() };
        Settings {
            socket: extreg_shared::protocol::default_socket_path(xdg_runtime_dir.as_deref(), uid),
            daemon: None,
            autostart: true,
            timeout: Duration::from_secs(30),
            start_timeout: Duration::from_secs(10),
        }
    }

    /// Defaults overlaid with the plugin config record, if any.
    pub fn from_config(
        config: Option<Value>,
        xdg_runtime_dir: Option<PathBuf>,
    ) -> Result<Settings, LabeledError> {
        let mut s = Settings::defaults(xdg_runtime_dir);
        let Some(config) = config else { return Ok(s) };
        let span = config.span();
        let record = config.into_record().map_err(|_| {
            LabeledError::new("$env.config.plugins.ext must be a record")
                .with_label("not a record", span)
        })?;
        for (key, value) in record.iter() {
            let bad = |what: &str| {
                LabeledError::new(format!("$env.config.plugins.ext.{key}: expected {what}"))
                    .with_label(format!("expected {what}"), value.span())
            };
            match key.as_str() {
                "socket" => s.socket = PathBuf::from(value.as_str().map_err(|_| bad("a path"))?),
                "daemon" => {
                    s.daemon = Some(PathBuf::from(value.as_str().map_err(|_| bad("a path"))?))
                }
                "autostart" => s.autostart = value.as_bool().map_err(|_| bad("a bool"))?,
                "timeout" => {
                    let ns = match value {
                        Value::Duration { val, .. } => *val,
                        Value::Int { val, .. } => val.saturating_mul(1_000_000_000),
                        _ => return Err(bad("a duration")),
                    };
                    if ns <= 0 {
                        return Err(bad("a positive duration"));
                    }
                    s.timeout = Duration::from_nanos(ns as u64);
                }
                other => {
                    return Err(LabeledError::new(format!(
                        "unknown key '{other}' in $env.config.plugins.ext"
                    ))
                    .with_label("unknown key", value.span())
                    .with_help("known keys: socket, daemon, autostart, timeout"))
                }
            }
        }
        Ok(s)
    }
}

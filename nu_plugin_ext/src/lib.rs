//! `nu_plugin_ext`: native Nushell commands (`ext list`, `ext search`, ...)
//! that ask `extregd` over its local socket and return Nushell tables.
//!
//! Nothing is kept open between commands: each call connects, says hello,
//! sends one request and disconnects (Nushell stops idle plugins anyway).
//! The plugin never downloads by itself; the daemon does.

pub mod client;
pub mod commands;
pub mod completion;
pub mod lockfile;
pub mod progress;
pub mod settings;
pub mod values;

use nu_plugin::{Plugin, PluginCommand};

/// The plugin. It owns a small current-thread tokio runtime for the socket
/// I/O; commands block on it.
pub struct ExtPlugin {
    pub runtime: tokio::runtime::Runtime,
}

impl ExtPlugin {
    pub fn new() -> std::io::Result<ExtPlugin> {
        Ok(ExtPlugin {
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?,
        })
    }
}

impl Plugin for ExtPlugin {
    fn version(&self) -> String {
        env!("CARGO_PKG_VERSION").into()
    }

    fn commands(&self) -> Vec<Box<dyn PluginCommand<Plugin = Self>>> {
        commands::all()
    }
}

//! The local-socket API for `nu_plugin_ext` (protocol in
//! `extreg_shared::protocol`). Everything the REST API offers, plus the
//! operations that change state (cache clear and prune), which exist only
//! here.
//!
//! **Only the daemon's own user can talk to it.** The socket's folder is
//! created 0700 and must belong to us, the socket is 0600, and every
//! accepted peer's effective uid is checked against ours.
//!
//! A connection that sends a malformed, truncated or oversized frame is
//! closed with a logged reason; other connections are not affected.
//!
//! Connections are bounded like HTTP ones (`server.rs`): at most
//! `max_socket_connections`, closed after `idle_timeout` without a frame,
//! cut when the peer reads nothing for `write_timeout`, drained on stop.

mod connection;
mod dispatch;
mod listener;

pub use dispatch::answer;
pub use listener::{bind, serve, IpcError};

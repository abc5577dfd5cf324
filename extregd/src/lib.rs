//! `extregd`: the extension registry daemon. See ARCHITECTURE.md for the map.

pub mod api;
pub mod app;
pub mod artifacts;
pub mod auth_files;
pub mod backend;
pub mod cache;
pub mod catalogue;
pub mod cli;
pub mod complete;
pub mod config;
pub mod deploy;
pub mod deps;
pub mod error;
pub mod extract;
pub mod http_layers;
pub mod ipc;
pub mod load;
pub mod manifest;
pub mod metrics;
pub mod metrics_ops;
pub mod pack;
pub mod persist;
pub mod probe;
pub mod progress;
pub mod publish;
pub mod remote;
pub mod server;
pub mod signature;
pub mod systemd;
pub mod web;
pub mod webhook;

#[cfg(test)]
mod testing;

use crate::backend::local::LocalBackend;
use crate::backend::Backend;
use crate::config::{Config, Dirs};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// A booted daemon: bound, wired, not yet serving.
pub struct Daemon {
    pub listener: tokio::net::TcpListener,
    pub addr: SocketAddr,
    pub router: axum::Router,
    pub state: api::SharedState,
    /// The local socket for `nu_plugin_ext`, and its path.
    pub ipc: interprocess::local_socket::tokio::Listener,
    pub socket: std::path::PathBuf,
    /// The local socket came from socket activation: its file belongs to
    /// systemd and stays when the daemon stops.
    pub socket_activated: bool,
    /// Connection limits and timeouts (`[server]`, open-file limit).
    pub limits: server::Limits,
}

#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("cannot open the artifact cache at {path}: {source}")]
    Artifacts {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Ipc(#[from] ipc::IpcError),
}

/// Builds the backends in merge priority order: `[registry] priority`,
/// by default local, oci, gitea (see [`Config::source_priority`]); `oci_out`
/// receives the OCI backend itself (publishing needs more than the
/// `Backend` trait). Start-up and `--check-config` both call it, so the
/// config checks of the backends' constructors (registry URL, credentials
/// file, CA file) are the same in both.
pub fn backends(
    config: &Config,
    dirs: &Dirs,
    oci_out: &mut Option<Arc<backend::oci::OciBackend>>,
) -> Result<Vec<Arc<dyn Backend>>, BootError> {
    let mut out: Vec<Arc<dyn Backend>> = Vec::new();
    let roots = config.local_roots(dirs);
    if !roots.is_empty() {
        for r in &roots {
            if !r.is_dir() {
                tracing::warn!(path = %r.display(), "local extension folder does not exist (yet)");
            }
        }
        out.push(Arc::new(LocalBackend::new(roots)));
    }
    if let Some(o) = &config.oci {
        let oci = Arc::new(
            backend::oci::OciBackend::new(o)
                .map_err(|e| BootError::Config(crate::config::ConfigError::Invalid(e)))?,
        );
        *oci_out = Some(oci.clone());
        out.push(oci);
    }
    if let Some(g) = &config.gitea {
        let gitea = backend::gitea::GiteaBackend::new(g)
            .map_err(|e| BootError::Config(crate::config::ConfigError::Invalid(e)))?;
        out.push(Arc::new(gitea));
    }
    let priority = config.source_priority();
    out.sort_by_key(|b| priority.iter().position(|s| *s == b.source()));
    Ok(out)
}

/// Wires the components: config -> backends, caches, metrics -> router, and
/// binds the listener.
pub async fn boot(config: Config, dirs: Dirs) -> Result<Daemon, BootError> {
    // Warnings are printed by the caller (main); errors stop here too.
    config.validate()?;
    config.check_paths(&dirs)?;
    let host = if config.server.host == "localhost" {
        "127.0.0.1".to_string()
    } else {
        config.server.host.clone()
    };
    let bind = if host.contains(':') {
        format!("[{host}]:{}", config.server.port)
    } else {
        format!("{host}:{}", config.server.port)
    };
    // Socket activation (systemd::init_activation) hands a bound listener.
    let activated = systemd::take_tcp().map_err(|source| BootError::Bind {
        addr: "inherited socket (LISTEN_FDS)".into(),
        source,
    })?;
    let listener = match activated {
        Some(l) => l,
        None => tokio::net::TcpListener::bind(&bind)
            .await
            .map_err(|source| BootError::Bind {
                addr: bind.clone(),
                source,
            })?,
    };
    let addr = listener.local_addr().map_err(|source| BootError::Bind {
        addr: bind.clone(),
        source,
    })?;
    let (ipc, socket, socket_activated) =
        match systemd::take_unix().map_err(|source| BootError::Bind {
            addr: "inherited local socket (LISTEN_FDS)".into(),
            source,
        })? {
            Some((l, path)) => (l, path, true),
            None => {
                let socket = config.socket_path(dirs.runtime.as_deref());
                (ipc::bind(&socket)?, socket, false)
            }
        };
    let limits = server::Limits::new(&config.server, server::raise_nofile_limit());
    if limits.fd_budget() > limits.nofile {
        tracing::warn!(
            nofile = limits.nofile,
            max_connections = limits.max_connections,
            "[server] max_connections may need more file descriptors than the open-file limit allows; \
             accepting will back off when they run out"
        );
    }
    tracing::info!(
        nofile = limits.nofile,
        max_connections = limits.max_connections,
        max_socket_connections = limits.max_socket_connections,
        "connection limits"
    );
    let metrics = Arc::new(metrics::Metrics::new());
    let art_dir = config.artifact_dir(&dirs);
    let artifacts =
        artifacts::ArtifactStore::open(&art_dir, metrics.clone(), config.cache.max_artifact_bytes)
            .map_err(|source| BootError::Artifacts {
                path: art_dir.display().to_string(),
                source,
            })?;
    let verifier = signature::Verifier::from_config(&config.signatures)
        .map_err(|e| BootError::Config(crate::config::ConfigError::Invalid(e)))?;
    artifacts.set_verifier(Arc::new(verifier));
    let base_url = config
        .server
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"));
    let mut oci = None;
    let catalogue = catalogue::Catalogue::new(
        backends(&config, &dirs, &mut oci)?,
        &config.cache,
        Arc::new(artifacts),
        metrics.clone(),
        base_url,
    );
    // The persisted catalogue: read now (so the first answers come from
    // it), written whenever the caches change, refreshed in the background.
    let readiness = probe::readiness_for(catalogue.backends());
    if let Some(path) = config.catalog_path(&dirs) {
        let ids = persist::identities(&config, &dirs);
        let priority = config.source_priority();
        let (listings, _) = persist::load(&catalogue, &path, &ids, &priority);
        if listings > 0 {
            // Answers can be given from it at once.
            readiness.set_ready("persisted catalogue loaded");
        }
        persist::spawn_writer(&catalogue, path, ids, priority);
    }
    catalogue.warm_up();
    let webhooks = webhook::Webhooks::from_config(&config)
        .map_err(|e| BootError::Config(crate::config::ConfigError::Invalid(e)))?;
    let generic = app::GenericArtifacts::new(
        config
            .oci
            .as_ref()
            .map(|o| o.artifact_namespaces.clone())
            .unwrap_or_default(),
        &config.cache,
        &metrics,
    );
    let app = Arc::new(app::App {
        readiness,
        generic,
        loader: load::Loader::new(config.load_dir(&dirs)),
        oci,
        oci_config: config.oci.clone(),
        catalogue,
        metrics,
        started: Instant::now(),
    });
    let state = Arc::new(api::AppState { app, webhooks });
    probe::spawn_watch(state.clone());
    let mut router = api::router(state.clone());
    if config.web_enabled() {
        let ttl = std::time::Duration::from_secs(config.cache.ttl_seconds);
        router = router.merge(web::router(state.clone(), ttl));
    }
    Ok(Daemon {
        router: http_layers::apply(router, &config.server),
        listener,
        addr,
        state,
        ipc,
        socket,
        socket_activated,
        limits,
    })
}

impl Daemon {
    /// Serves until `shutdown` resolves, then stops accepting, lets the
    /// requests in flight finish for up to `[server]
    /// shutdown_timeout_seconds` and cuts what is still open.
    pub async fn serve(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let life = server::Lifecycle::default();
        let limits = Arc::new(self.limits);
        let http = tokio::spawn(server::serve_http(
            self.listener,
            self.router,
            limits.clone(),
            self.state.metrics.clone(),
            life.clone(),
        ));
        let ipc = tokio::spawn(ipc::serve(
            self.ipc,
            self.state.app.clone(),
            limits.clone(),
            life.clone(),
        ));
        shutdown.await;
        let (socket, activated) = (self.socket, self.socket_activated);
        server::drain(&life, limits.shutdown_timeout, vec![http, ipc], || {
            // A socket-activated socket's file belongs to systemd.
            if !activated {
                let _ = std::fs::remove_file(&socket);
            }
        })
        .await;
        Ok(())
    }
}

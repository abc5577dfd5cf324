use clap::Parser;
use extregd::config::{Config, Dirs};
use std::path::PathBuf;
use std::process::ExitCode;

/// Extension registry daemon: serves provider, taskserv and cluster
/// extensions from local folders, OCI registries and Gitea releases over the
/// /api/v1 REST API.
#[derive(Parser, Debug)]
#[command(version, about, long_about = None)]
struct Cli {
    /// Config file (TOML). Without it, $XDG_CONFIG_HOME/provisioning/extregd.toml
    /// is read if present, else the embedded default (local folder only).
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address to bind, overriding [server] host.
    #[arg(long)]
    host: Option<String>,
    /// Port to bind, overriding [server] port (0 picks a free one).
    #[arg(long)]
    port: Option<u16>,
    /// Local socket for nu_plugin_ext, overriding [server] socket.
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Validate the configuration, print the effective one, and exit.
    #[arg(long)]
    check_config: bool,
}

fn default_config_path() -> Option<PathBuf> {
    let p = directories::ProjectDirs::from("", "", "provisioning")?
        .config_dir()
        .join("extregd.toml");
    p.is_file().then_some(p)
}

fn load(cli: &Cli) -> Result<(Config, Option<PathBuf>), extregd::config::ConfigError> {
    let path = cli.config.clone().or_else(default_config_path);
    let mut config = match &path {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    config.apply_env(|k| std::env::var(k).ok());
    if let Some(h) = &cli.host {
        config.server.host = h.clone();
    }
    if let Some(p) = cli.port {
        config.server.port = p;
    }
    if let Some(s) = &cli.socket {
        config.server.socket = Some(s.clone());
    }
    Ok((config, path))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // Colours only on a terminal: logs in files and journals stay text.
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("EXTREGD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let (config, path) = match load(&cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("extregd: {e}");
            return ExitCode::from(2);
        }
    };
    let dirs = Dirs::from_env();
    if cli.check_config {
        return match config.validate() {
            Ok(warnings) => {
                for w in warnings {
                    eprintln!("extregd: warning: {w}");
                }
                println!(
                    "config ok ({})",
                    path.map(|p| p.display().to_string())
                        .unwrap_or_else(|| "embedded default".into())
                );
                println!("listen = {}:{}", config.server.host, config.server.port);
                for r in config.local_roots(&dirs) {
                    println!("local = {}", r.display());
                }
                if let Some(o) = &config.oci {
                    println!("oci = {} namespace {}", o.registry, o.namespace);
                }
                if let Some(g) = &config.gitea {
                    println!("gitea = {} organization {}", g.url, g.organization);
                }
                println!("artifact_dir = {}", config.artifact_dir(&dirs).display());
                println!(
                    "socket = {}",
                    config.socket_path(dirs.runtime.as_deref()).display()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("extregd: {e}");
                ExitCode::from(2)
            }
        };
    }
    // Validate before building the runtime: `workers` shapes it.
    match config.validate() {
        Ok(warnings) => {
            for w in warnings {
                tracing::warn!("{w}");
            }
        }
        Err(e) => {
            eprintln!("extregd: {e}");
            return ExitCode::from(2);
        }
    }
    // One worker: a current-thread runtime (no cross-thread wake-ups);
    // otherwise a multi-thread runtime with `workers` (default: cores).
    let mut builder = match config.server.workers {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(n) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n);
            b
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    let rt = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("extregd: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        let daemon = match extregd::boot(config, dirs).await {
            Ok(d) => d,
            Err(e) => {
                eprintln!("extregd: {e}");
                return ExitCode::from(2);
            }
        };
        // One line on stdout that scripts (and tests) can wait for.
        println!(
            "extregd {} listening on http://{}",
            env!("CARGO_PKG_VERSION"),
            daemon.addr
        );
        tracing::info!(addr = %daemon.addr, socket = %daemon.socket.display(), "serving /api/v1 and the local socket");
        match daemon.serve(shutdown_signal()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("extregd: server error: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("shutting down");
}

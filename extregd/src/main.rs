use clap::Parser;
use extregd::config::{Config, Dirs};
use std::path::PathBuf;
use std::process::ExitCode;

/// Extension registry daemon: serves provider, taskserv and cluster
/// extensions from local folders, OCI registries and Gitea releases over the
/// /api/v1 REST API. Without a subcommand it serves.
#[derive(Parser, Debug)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Config file (TOML). Without it, $XDG_CONFIG_HOME/provisioning/extregd.toml
    /// is read if present, else the embedded default (local folder only).
    #[arg(short, long, value_name = "FILE", global = true)]
    config: Option<PathBuf>,
    /// Address to bind, overriding [server] host and EXTREGD_HOST.
    #[arg(long, global = true)]
    host: Option<String>,
    /// Port to bind, overriding [server] port and EXTREGD_PORT (0 picks a free one).
    #[arg(long, global = true)]
    port: Option<u16>,
    /// Local socket for nu_plugin_ext, overriding [server] socket.
    #[arg(long, value_name = "PATH", global = true)]
    socket: Option<PathBuf>,
    /// Validate the configuration, print the effective one, and exit.
    #[arg(long)]
    check_config: bool,
}

/// Subcommands; serving is the default when none is given.
#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Probe a running daemon over HTTP and exit 0 (healthy) or 1, for
    /// container HEALTHCHECKs in images without a shell.
    Healthcheck {
        /// URL to ask; default: the configured listener's
        /// /api/v1/health/live (/ready with --ready), seen from this host.
        #[arg(long, value_name = "URL")]
        url: Option<String>,
        /// Ask the readiness probe instead of the liveness probe.
        #[arg(long)]
        ready: bool,
        /// Give up after this many seconds.
        #[arg(long, value_name = "SECONDS", default_value_t = 5)]
        timeout: u64,
    },
    /// publish, delete, list: OCI operations without a daemon (for CI).
    #[command(flatten)]
    Oci(extregd::cli::OciCommand),
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
    extregd::deploy::apply_server_env(&mut config, |k| std::env::var(k).ok())?;
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
    extregd::systemd::init_logging(
        tracing_subscriber::EnvFilter::try_from_env("EXTREGD_LOG")
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
    );
    if let Some(Command::Healthcheck {
        url,
        ready,
        timeout,
    }) = &cli.command
    {
        return healthcheck(&cli, url.as_deref(), *ready, *timeout);
    }
    // Inherited sockets (systemd socket activation), before any thread.
    if let Err(e) = extregd::systemd::init_activation() {
        eprintln!("extregd: socket activation: {e}");
        return ExitCode::from(2);
    }
    let (config, path) = match load(&cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("extregd: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(Command::Oci(cmd)) = cli.command {
        return extregd::cli::run(cmd, &config);
    }
    let dirs = Dirs::from_env();
    if cli.check_config {
        let checked = config
            .validate()
            .and_then(|w| config.check_paths(&dirs).map(|()| w))
            .map_err(extregd::BootError::from)
            .and_then(|w| extregd::backends(&config, &dirs, &mut None).map(|_| w));
        return match checked {
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
                println!("web = {}", if config.web_enabled() { "on" } else { "off" });
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
                println!("load_dir = {}", config.load_dir(&dirs).display());
                for (s, p) in [
                    ("local", &config.signatures.local),
                    ("oci", &config.signatures.oci),
                    ("gitea", &config.signatures.gitea),
                ] {
                    println!(
                        "signatures.{s} = {} ({} trusted keys)",
                        p.policy.as_str(),
                        p.trusted_keys.len()
                    );
                }
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
    let code = rt.block_on(async move {
        // Before anything is printed: a SIGHUP or SIGTERM right after the
        // "listening" line must find its handler in place.
        let signals = match extregd::server::Signals::install() {
            Ok(s) => s,
            Err(e) => {
                eprintln!("extregd: cannot install signal handlers: {e}");
                return ExitCode::FAILURE;
            }
        };
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
        extregd::systemd::notify_ready(&format!("serving on http://{}", daemon.addr));
        match daemon.serve(signals.shutdown()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("extregd: server error: {e}");
                ExitCode::FAILURE
            }
        }
    });
    // Detached work (artifact downloads, blocking file reads) gets a
    // moment, not a veto: the shutdown deadline holds.
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    code
}

/// `extregd healthcheck`: one probe request, exit 0 on a 2xx, else 1.
fn healthcheck(cli: &Cli, url: Option<&str>, ready: bool, timeout: u64) -> ExitCode {
    let url = match url {
        Some(u) => u.to_string(),
        None => match load(cli) {
            Ok((c, _)) => extregd::probe::default_url(&c.server.host, c.server.port, ready),
            Err(e) => {
                eprintln!("extregd healthcheck: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("extregd healthcheck: {e}");
            return ExitCode::FAILURE;
        }
    };
    let timeout = std::time::Duration::from_secs(timeout.clamp(1, 300));
    match rt.block_on(extregd::probe::check(&url, timeout)) {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("extregd healthcheck: {e}");
            ExitCode::FAILURE
        }
    }
}

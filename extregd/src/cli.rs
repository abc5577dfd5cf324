//! `extregd publish | delete | list | test-oci`: the OCI operations from the command
//! line, for CI and scripts, with neither a daemon nor nu. They read the
//! same configuration as the daemon (`--config`, `PROVISIONING_OCI_*`) and,
//! for another registry, the usual auth files ([`crate::auth_files`]).
//!
//! Output: one human line per result on stdout, or JSON with `--json`;
//! errors on stderr with exit code 1 (2 for a configuration error).

use crate::auth_files::AuthEnv;
use crate::backend::Backend;
use crate::config::Config;
use crate::publish::{PublishError, PublishOptions};
use crate::remote::{target, Target, Wanted};
use clap::{Args, Subcommand};
use extreg_shared::ExtensionType;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// Where to publish, delete or list (shared by the three commands).
#[derive(Args, Debug, Clone, Default)]
pub struct RegistryArgs {
    /// Registry (host[:port] or http(s)://URL); default: [oci] registry.
    #[arg(long, value_name = "REGISTRY")]
    pub registry: Option<String>,
    /// Namespace; default: [oci] namespace (provisioning-extensions).
    #[arg(long, value_name = "NAMESPACE")]
    pub namespace: Option<String>,
    /// A Docker/containers JSON auth file to read before the usual ones.
    #[arg(long, value_name = "FILE")]
    pub auth_file: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand, Debug, Clone)]
pub enum OciCommand {
    /// Pack a folder holding extension.yaml and push it as an OCI artifact.
    Publish {
        /// The extension folder.
        dir: PathBuf,
        /// The version to publish (must equal extension.yaml's).
        #[arg(long, short = 'v')]
        version: String,
        /// Replace the version if it exists.
        #[arg(long, short = 'f')]
        force: bool,
        /// Validate and pack only; print the digests a push would produce.
        #[arg(long)]
        dry_run: bool,
        /// org.opencontainers.image.created (RFC 3339); default
        /// $SOURCE_DATE_EPOCH, else the folder's newest modification time.
        #[arg(long, value_name = "RFC3339")]
        created: Option<String>,
        #[command(flatten)]
        at: RegistryArgs,
    },
    /// Delete one version of an extension from the registry.
    Delete {
        name: String,
        version: String,
        /// provider, taskserv or cluster.
        #[arg(long = "type", short = 't')]
        ext_type: ExtensionType,
        #[command(flatten)]
        at: RegistryArgs,
    },
    /// List the extensions in the registry (newest version each).
    List {
        /// Only this type.
        #[arg(long = "type", short = 't')]
        ext_type: Option<ExtensionType>,
        #[command(flatten)]
        at: RegistryArgs,
    },
    /// Diagnose the registry: reachable, TLS, API, auth (and which
    /// credentials), catalog, namespace; exit code 1 when a check fails.
    #[command(name = "test-oci")]
    TestOci {
        /// Also check push permission (an upload session opened and
        /// cancelled: nothing is left behind).
        #[arg(long)]
        push: bool,
        #[command(flatten)]
        at: RegistryArgs,
    },
}

impl OciCommand {
    fn at(&self) -> &RegistryArgs {
        match self {
            OciCommand::Publish { at, .. }
            | OciCommand::Delete { at, .. }
            | OciCommand::List { at, .. }
            | OciCommand::TestOci { at, .. } => at,
        }
    }
}

fn resolve(config: &Config, at: &RegistryArgs) -> Result<Target, String> {
    let configured_backend = match &config.oci {
        Some(c) => Some(Arc::new(crate::backend::oci::OciBackend::new(c)?)),
        None => None,
    };
    let configured = config.oci.as_ref().zip(configured_backend.as_ref());
    let wanted = Wanted {
        registry: at.registry.as_deref(),
        namespace: at.namespace.as_deref(),
        auth_file: at.auth_file.as_deref(),
    };
    target(configured, &wanted, &AuthEnv::from_env())
}

fn print_json<T: serde::Serialize>(v: &T) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).unwrap_or_else(|_| "null".into())
    );
}

/// Runs one command; `config` is the loaded (not yet validated) config.
pub fn run(cmd: OciCommand, config: &Config) -> ExitCode {
    if let Some(o) = &config.oci {
        if o.registry.trim().is_empty() {
            eprintln!("extregd: invalid configuration: [oci] registry is empty");
            return ExitCode::from(2);
        }
    }
    let t = match resolve(config, cmd.at()) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("extregd: {e}");
            return ExitCode::from(2);
        }
    };
    for n in &t.notes {
        eprintln!("extregd: note: {n}");
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("extregd: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let json = cmd.at().json;
    let res: Result<(), String> = rt.block_on(async {
        match &cmd {
            OciCommand::Publish {
                dir,
                version,
                force,
                dry_run,
                created,
                ..
            } => {
                let dir =
                    std::path::absolute(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
                if !dir.join("extension.yaml").is_file() {
                    return Err(format!("{} holds no extension.yaml", dir.display()));
                }
                let opts = PublishOptions {
                    force: *force,
                    dry_run: *dry_run,
                    created: created.clone(),
                };
                let r = crate::publish::publish_with(&t.backend, &dir, version, &opts)
                    .await
                    .map_err(|e| shown(&e))?;
                if json {
                    let mut v = serde_json::to_value(&r).unwrap_or_default();
                    v["credentials"] = t.credentials.clone().into();
                    print_json(&v);
                } else {
                    let verb = match (r.pushed, r.replaced) {
                        (false, _) => "would push",
                        (true, false) => "pushed",
                        (true, true) => "replaced",
                    };
                    println!("{verb} {}", r.reference);
                    println!("manifest {}", r.manifest_digest);
                    println!("layer    {} ({} bytes)", r.layer_digest, r.size);
                    println!("created  {}", r.created);
                    println!("credentials: {}", t.credentials);
                }
                Ok(())
            }
            OciCommand::Delete {
                name,
                version,
                ext_type,
                ..
            } => {
                crate::publish::delete(&t.backend, *ext_type, name, version)
                    .await
                    .map_err(|e| shown(&e))?;
                let reference = t
                    .backend
                    .reference(&t.backend.repository(*ext_type, name), version);
                if json {
                    print_json(&serde_json::json!({"deleted": reference}));
                } else {
                    println!("deleted {reference}");
                }
                Ok(())
            }
            OciCommand::TestOci { push, .. } => {
                let verify_ssl = config.oci.as_ref().is_none_or(|c| c.verify_ssl);
                let d = crate::backend::oci::diagnose::diagnose(
                    crate::backend::oci::diagnose::Target {
                        backend: &t.backend,
                        credentials: &t.credentials,
                        verify_ssl,
                        push: *push,
                    },
                )
                .await;
                if json {
                    print_json(&d);
                } else {
                    println!("registry    {}", d.registry);
                    println!("namespace   {}", d.namespace);
                    println!("credentials {}", d.credentials);
                    for c in &d.checks {
                        let mark = match (c.ok, c.skipped) {
                            (true, _) => "ok  ",
                            (false, true) => "skip",
                            (false, false) => "FAIL",
                        };
                        println!("{mark} {:<9} {}", c.check, c.detail);
                        if let Some(e) = &c.error {
                            println!("     error: {e}");
                        }
                        if let Some(h) = c.hint.as_ref().filter(|_| !c.skipped) {
                            println!("     hint:  {h}");
                        }
                    }
                }
                if d.ok {
                    Ok(())
                } else {
                    Err(format!(
                        "test-oci: {} check(s) failed",
                        d.checks.iter().filter(|c| !c.ok && !c.skipped).count()
                    ))
                }
            }
            OciCommand::List { ext_type, .. } => {
                let all = t
                    .backend
                    .list()
                    .await
                    .map_err(|e| format!("registry: {e}"))?;
                let rows: Vec<_> = all
                    .into_iter()
                    .filter(|e| ext_type.is_none_or(|t| e.ext_type == t))
                    .collect();
                if json {
                    print_json(&rows);
                } else {
                    for e in &rows {
                        println!(
                            "{:<9} {:<24} {:<12} {}",
                            e.ext_type, e.name, e.version, e.description
                        );
                    }
                }
                Ok(())
            }
        }
    });
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("extregd: {e}");
            ExitCode::FAILURE
        }
    }
}

fn shown(e: &PublishError) -> String {
    match e {
        PublishError::Exists { .. } => format!("{e} (--force)"),
        other => other.to_string(),
    }
}

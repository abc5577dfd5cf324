use super::{example, example_with, unexpected, version_flag, ArgSpans, Ctx};
use extreg_shared::protocol::{Request, Response};
use nu_plugin::{EngineInterface, EvaluatedCall};
use nu_protocol::{Example, LabeledError, Record, Signature, SyntaxShape, Value};

/// `ext publish <path> --version <v>`: push a folder to the OCI registry.
pub struct Publish;

impl super::ExtCommand for Publish {
    fn extra_description(&self) -> &str {
        "The folder is validated (extension.yaml's version must equal --version), packed as a reproducible tar.gz \
         and pushed by extregd. An existing version is refused unless --force. Without --registry it goes to \
         extregd's [oci] registry; with it, credentials come from $REGISTRY_AUTH_FILE, containers' auth.json \
         or Docker's config.json (see the README). Without a daemon or nu: `extregd publish`."
    }

    fn arguments(&self, sig: Signature) -> Signature {
        sig.required(
                "path",
                SyntaxShape::Filepath,
                "folder holding extension.yaml",
            )
            .required_named(
                "version",
                SyntaxShape::String,
                "the version to publish (must match extension.yaml)",
                Some('v'),
            )
            .named(
                "registry",
                SyntaxShape::String,
                "push to this registry (host[:port] or URL) instead of extregd's [oci] registry; credentials from the usual auth files",
                Some('r'),
            )
            .named(
                "namespace",
                SyntaxShape::String,
                "push under this namespace instead of the configured one",
                Some('n'),
            )
            .switch("dry-run", "validate and pack only; push nothing (reports the digests a push would produce)", None)
            .switch("force", "replace the version if it exists", Some('f'))
            .named(
                "sign",
                SyntaxShape::Filepath,
                "minisign secret key: sign the artifact and push the signature beside it (tag sha256-<hex>.minisig); an encrypted key reads $env.MINISIGN_PASSWORD",
                None,
            )
    }

    fn examples(&self) -> Vec<Example<'_>> {
        vec![
            example_with(
                "(ext publish ./my-extension --version 1.0.0 --dry-run).pushed",
                "Check a folder and compute its digests without pushing",
                Value::test_bool(false),
            ),
            example_with(
                "(ext publish ./my-extension --version 1.0.0).pushed",
                "Publish it to extregd's [oci] registry",
                Value::test_bool(true),
            ),
            example(
                "ext publish ./my-extension --version 1.0.0 --dry-run | select name type version digest",
                "What would be pushed, and under which digest",
            ),
            example(
                "ext publish ./my-extension --version 1.0.0 --registry localhost:5000 --namespace my-namespace",
                "Publish to another registry and namespace",
            ),
        ]
    }

    fn run(&self, cx: &Ctx) -> Result<Value, LabeledError> {
        let (engine, call) = (cx.engine, cx.call);
        let p: Value = call.req(0)?;
        let pspan = p.span();
        let raw = std::path::PathBuf::from(p.as_str()?);
        let path = if raw.is_absolute() {
            raw
        } else {
            std::path::PathBuf::from(engine.get_current_dir()?).join(raw)
        };
        if !path.join("extension.yaml").is_file() {
            return Err(
                LabeledError::new(format!("{} holds no extension.yaml", path.display()))
                    .with_label("not an extension folder", pspan),
            );
        }
        let (version, vs) = version_flag(call)?;
        let version = version.ok_or_else(|| {
            LabeledError::new("--version is required").with_label("here", call.head)
        })?;
        let spans = ArgSpans {
            name: Some(pspan),
            version: vs,
            registry: super::flag_value(call, "registry")
                .or_else(|| super::flag_value(call, "namespace"))
                .map(|v| v.span()),
            ..Default::default()
        };
        let label = format!("publish {}", path.display());
        let sign_key = sign_key(engine, call)?;
        let dry_run = call.has_flag("dry-run")?;
        let registry = super::text_flag(call, "registry")?;
        let namespace = super::text_flag(call, "namespace")?;
        if let (Some((_, kspan)), true) = (&sign_key, registry.is_some() || namespace.is_some()) {
            return Err(LabeledError::new(
                "--sign pushes the signature to the configured [oci] registry and namespace only",
            )
            .with_label("not with --registry/--namespace", *kspan));
        }
        let req = Request::PublishTo(extreg_shared::protocol::PublishSpec {
            path: path.display().to_string(),
            version: version.clone(),
            dry_run,
            force: call.has_flag("force")?,
            registry,
            namespace,
        });
        match cx.ask_with_progress(spans, req, label)? {
            Response::Published(r) => {
                let h = call.head;
                let mut rec = Record::new();
                rec.push("name", Value::string(&r.name, h));
                rec.push("type", Value::string(r.ext_type.as_str(), h));
                rec.push("version", Value::string(&r.version, h));
                rec.push("reference", Value::string(&r.reference, h));
                rec.push("manifest_digest", Value::string(&r.manifest_digest, h));
                rec.push("layer_digest", Value::string(&r.layer_digest, h));
                rec.push("size", Value::filesize(r.size as i64, h));
                rec.push("pushed", Value::bool(r.pushed, h));
                rec.push("replaced", Value::bool(r.replaced, h));
                if let Some((key, kspan)) = sign_key {
                    let password = engine
                        .get_env_var("MINISIGN_PASSWORD")
                        .ok()
                        .flatten()
                        .and_then(|v| v.as_str().ok().map(str::to_string));
                    let sreq = Request::Sign {
                        path: path.display().to_string(),
                        version,
                        secret_key: key.display().to_string(),
                        password,
                        dry_run,
                    };
                    let sspans = ArgSpans {
                        name: Some(kspan),
                        ..spans
                    };
                    match cx.ask(sspans, sreq)? {
                        Response::Signed(s) => {
                            let mut sr = Record::new();
                            sr.push("reference", Value::string(&s.reference, h));
                            sr.push("key_id", Value::string(&s.key_id, h));
                            sr.push("pushed", Value::bool(s.pushed, h));
                            rec.push("signature", Value::record(sr, h));
                        }
                        other => return Err(unexpected(other, h)),
                    }
                }
                Ok(Value::record(rec, h))
            }
            other => Err(unexpected(other, call.head)),
        }
    }
}

/// `--sign KEY`: the minisign secret key file, absolute, checked to exist.
fn sign_key(
    engine: &EngineInterface,
    call: &EvaluatedCall,
) -> Result<Option<(std::path::PathBuf, nu_protocol::Span)>, LabeledError> {
    let Some(v) = super::flag_value(call, "sign") else {
        return Ok(None);
    };
    let span = v.span();
    let raw = std::path::PathBuf::from(v.coerce_str()?.as_ref());
    let key = if raw.is_absolute() {
        raw
    } else {
        std::path::PathBuf::from(engine.get_current_dir()?).join(raw)
    };
    if !key.is_file() {
        return Err(
            LabeledError::new(format!("no secret key at {}", key.display()))
                .with_label("not a file", span)
                .with_help("a minisign secret key, as `minisign -G -W -s KEY -p KEY.pub` makes it"),
        );
    }
    Ok(Some((key, span)))
}

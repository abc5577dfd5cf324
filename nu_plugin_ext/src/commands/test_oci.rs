use super::{example, ArgSpans, Ctx, ExtCommand};
use crate::values;
use extreg_shared::protocol::{Request, Response, TestOciSpec};
use nu_protocol::{Example, LabeledError, Signature, SyntaxShape, Value};

/// `ext test-oci`: a diagnosis of the OCI registry (seed 004).
pub struct TestOci;

impl ExtCommand for TestOci {
    fn extra_description(&self) -> &str {
        "Returns {registry, namespace, credentials, ok, checks}; each check has check, ok, skipped, detail, \
         error and hint. A check whose prerequisite failed is skipped. `credentials` names where they came from \
         (anonymous, [oci] auth_token_path, an auth.json/config.json entry), never the secret. --push opens an \
         upload session in {namespace}/extregd-test-oci and cancels it: nothing is left behind."
    }

    fn arguments(&self, sig: Signature) -> Signature {
        sig.named(
                "registry",
                SyntaxShape::String,
                "diagnose this registry (host[:port] or URL) instead of extregd's [oci] registry; credentials from the usual auth files",
                Some('r'),
            )
            .named(
                "namespace",
                SyntaxShape::String,
                "check this namespace instead of the configured one",
                Some('n'),
            )
            .switch(
                "push",
                "also check push permission (opens an upload session and cancels it)",
                Some('p'),
            )
    }

    fn search_terms(&self) -> Vec<&str> {
        vec!["oci", "registry", "diagnose", "auth", "connection"]
    }

    fn examples(&self) -> Vec<Example<'_>> {
        vec![
            example(
                "ext test-oci | get checks | where not ok | select check error hint",
                "What is wrong with the configured OCI registry, and what to do",
            ),
            example(
                "ext test-oci --push",
                "Also check that the credentials may push (nothing is left behind)",
            ),
            // Checked through the real nu in tests/e2e/seed_oci/test_oci.rs
            // (`test_oci_on_a_closed_port_says_it_is_unreachable`): the
            // plugin test harness has no `get`/`select`.
            example(
                "ext test-oci --registry 127.0.0.1:1 | get checks.0 | select check ok",
                "A registry nothing listens for: not reachable (and the hint says what to check)",
            ),
        ]
    }

    fn run(&self, cx: &Ctx) -> Result<Value, LabeledError> {
        let call = cx.call;
        let spec = TestOciSpec {
            registry: super::text_flag(call, "registry")?,
            namespace: super::text_flag(call, "namespace")?,
            push: call.has_flag("push")?,
        };
        let spans = ArgSpans {
            registry: super::flag_value(call, "registry")
                .or_else(|| super::flag_value(call, "namespace"))
                .map(|v| v.span()),
            ..Default::default()
        };
        crate::answer!(cx, cx.ask(spans, Request::TestOci(spec))?, Response::OciDiagnosis(d) => values::from_serde(&d, cx.head()))
    }
}

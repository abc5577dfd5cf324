//! Every end-to-end test, in one test binary: each file of `tests/e2e/` is
//! a module here (one link for all of them instead of one per file). The
//! tests drive the real binaries (`bin("extregd")`, the real `nu`) in
//! per-test sandboxes (`extreg_tests::Sandbox`), so they run in parallel
//! whatever module they are in.
//!
//! Run one module or one test:
//! `cargo test -p extreg-tests --test e2e oci::` or
//! `cargo test -p extreg-tests --test e2e oci::bearer_token_auth_flow`.
//! A new test file is added as a `mod` below, not as a `[[test]]`.

mod api;
mod config;
mod deploy;
mod dist;
mod gitea;
mod hardening;
mod kcl;
mod load;
mod nu_ux;
mod nushell;
mod oci;
mod openapi;
mod plugin;
mod publish;
mod seed_oci;
mod serving;
mod trust;
mod warm;
mod web;

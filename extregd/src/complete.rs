//! Completion candidates for the plugin's Tab (`Request::Complete`).
//!
//! **Never waits on a backend.** Candidates come only from what the daemon
//! already holds: the per-backend listings and version lists in the
//! metadata caches (expired ones too: a stale name is still a good
//! suggestion), the artifact cache's index and the loaded extensions. When
//! a listing is not cached yet, a refresh is started in the background (the
//! single-flight gate merges it with any other), so the next Tab finds it.

use crate::app::App;
use extreg_shared::protocol::{CompletionName, Completions};
use extreg_shared::{parse_version, ExtensionType};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Most names returned (the shell's menu shows far fewer).
const MAX_NAMES: usize = 2000;

pub fn candidates(
    state: &Arc<App>,
    ext_type: Option<ExtensionType>,
    name: Option<&str>,
) -> Completions {
    let reg = &state.catalogue;
    let (listed, missing) = reg.peek_catalogs();
    if !missing.is_empty() {
        let st = state.clone();
        tokio::spawn(async move {
            let _ = st.catalogue.list_records(None, None).await;
        });
    }
    // (type, name) -> description; the first seen wins.
    let mut names: BTreeMap<(String, ExtensionType), String> = BTreeMap::new();
    for e in listed {
        names.entry((e.name, e.ext_type)).or_insert(e.description);
    }
    let cached = reg.artifacts().entries();
    for e in &cached {
        // Extensions only: a generic artifact (KCL package) has no type.
        let Some(t) = e.kind.ext_type() else { continue };
        let desc = e
            .record
            .as_ref()
            .map(|r| r.description.clone())
            .unwrap_or_default();
        names.entry((e.name.clone(), t)).or_insert(desc);
    }
    let loaded = state.loader.loaded();
    for l in &loaded {
        names
            .entry((l.name.clone(), l.ext_type))
            .or_insert_with(|| l.description.clone());
    }
    let names_out: Vec<CompletionName> = names
        .iter()
        .filter(|((_, t), _)| ext_type.is_none_or(|want| *t == want))
        .take(MAX_NAMES)
        .map(|((n, t), d)| CompletionName {
            name: n.clone(),
            ext_type: *t,
            description: d.clone(),
        })
        .collect();

    let mut versions = Vec::new();
    if let Some(n) = name {
        let types: Vec<ExtensionType> = match ext_type {
            Some(t) => vec![t],
            None => ExtensionType::ALL
                .into_iter()
                .filter(|t| names.contains_key(&(n.to_string(), *t)))
                .collect(),
        };
        for t in &types {
            match reg.peek_versions(*t, n) {
                Some(vs) => versions.extend(vs),
                None => {
                    // Known name, versions not cached: fetch them for the
                    // next Tab, in the background.
                    let (st, t, n) = (state.clone(), *t, n.to_string());
                    tokio::spawn(async move {
                        let _ = st.catalogue.versions(t, &n).await;
                    });
                }
            }
        }
        versions.extend(
            cached
                .iter()
                .filter(|e| e.name == n && e.kind.ext_type().is_some_and(|t| types.contains(&t)))
                .map(|e| e.version.clone()),
        );
        versions.extend(
            loaded
                .iter()
                .filter(|l| l.name == n && types.contains(&l.ext_type))
                .map(|l| l.version.clone()),
        );
        let mut parsed: Vec<(semver::Version, String)> = versions
            .into_iter()
            .filter_map(|v| parse_version(&v).ok().map(|p| (p, v)))
            .collect();
        parsed.sort_by(|a, b| b.0.cmp(&a.0));
        parsed.dedup_by(|a, b| a.0 == b.0);
        versions = parsed.into_iter().map(|(p, _)| p.to_string()).collect();
    }
    Completions {
        names: names_out,
        versions,
    }
}

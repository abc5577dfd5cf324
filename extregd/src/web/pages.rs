//! The catalogue's pages, as `maud` templates: every `(value)` splice is
//! HTML-escaped, so backend text (descriptions, tags, authors, error
//! details) can never become markup.

use super::{IndexQuery, Web, PAGE_SIZE};
use crate::error::Error;
use extreg_shared::{validate_name, Extension, ExtensionType, HealthResponse, Source};
use maud::{html, Markup, DOCTYPE};

fn layout(title: &str, health: &HealthResponse, main: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · extregd" }
                link rel="icon" href="/assets/icon.svg" type="image/svg+xml";
                link rel="stylesheet" href="/assets/style.css";
                script src="/assets/app.js" defer {}
            }
            body {
                a class="skip" href="#main" { "Skip to content" }
                header role="banner" {
                    nav aria-label="Site" {
                        a class="brand" href="/" { "extregd catalogue" }
                        ul {
                            @for t in ExtensionType::ALL {
                                li { a href={ "/?type=" (t) } { (plural(t)) } }
                            }
                            li { a href="/api/v1/openapi.json" { "API (OpenAPI)" } }
                        }
                    }
                }
                main id="main" tabindex="-1" { (main) }
                (health_panel(health))
                footer role="contentinfo" {
                    p {
                        "extregd " (health.version)
                        " · " a href="/api/v1/health" { "health (JSON)" }
                        " · " a href="/api/v1/extensions" { "extensions (JSON)" }
                    }
                }
            }
        }
    }
}

fn plural(t: ExtensionType) -> &'static str {
    match t {
        ExtensionType::Provider => "Providers",
        ExtensionType::Taskserv => "Task services",
        ExtensionType::Cluster => "Clusters",
    }
}

fn health_panel(h: &HealthResponse) -> Markup {
    html! {
        aside class="health" aria-labelledby="health-h" {
            h2 id="health-h" {
                "Backends: "
                span class={ "status " (h.status) } { (h.status) }
            }
            ul {
                @for (name, b) in &h.backends {
                    @if b.enabled {
                        li class={ "backend " @if b.healthy { "ok" } @else { "down" } } {
                            strong { (name) } " "
                            @if b.healthy { "healthy" } @else { "unreachable" }
                            @if let Some(e) = &b.error { ": " span class="error" { (e) } }
                        }
                    }
                }
            }
        }
    }
}

/// Text as given, or an error page naming the parameter.
fn parse_type(raw: Option<&str>) -> Result<Option<ExtensionType>, Error> {
    match raw {
        None | Some("") => Ok(None),
        Some(t) => Ok(Some(t.parse()?)),
    }
}

fn parse_source(raw: Option<&str>) -> Result<Option<Source>, Error> {
    match raw {
        None | Some("") => Ok(None),
        Some(s) => s
            .parse()
            .map(Some)
            .map_err(|e: extreg_shared::types::InvalidSource| {
                Error::invalid_request(e.to_string())
            }),
    }
}

pub async fn index(web: &Web, q: &IndexQuery, health: &HealthResponse) -> Result<Markup, Error> {
    let reg = &web.state.catalogue;
    let ext_type = parse_type(q.ext_type.as_deref())?;
    let source = parse_source(q.source.as_deref())?;
    let page: usize = match q.page.as_deref() {
        None | Some("") => 1,
        Some(p) => match p.parse::<usize>() {
            Ok(n) if (1..=1_000_000).contains(&n) => n,
            _ => return Err(Error::invalid_request("page must be a whole number from 1")),
        },
    };
    let text = q.q.as_deref().map(str::trim).unwrap_or_default();
    if text.chars().count() > extreg_shared::MAX_NAME_LEN {
        return Err(Error::invalid_request(format!(
            "the search text is over {} characters",
            extreg_shared::MAX_NAME_LEN
        )));
    }
    let (records, total, complete) = if text.is_empty() {
        let (all, complete) = reg.list_records(ext_type, source).await?;
        let total = all.len();
        let page_items = all
            .into_iter()
            .skip((page - 1) * PAGE_SIZE)
            .take(PAGE_SIZE)
            .collect::<Vec<_>>();
        (page_items, total, complete)
    } else {
        reg.search_records(text, ext_type, source, PAGE_SIZE)
            .await?
    };
    let heading = match (text.is_empty(), ext_type) {
        (false, _) => format!("Search: {text}"),
        (true, Some(t)) => plural(t).to_string(),
        (true, None) => "All extensions".to_string(),
    };
    let pages = total.div_ceil(PAGE_SIZE).max(1);
    let link = |p: usize| {
        let mut s = format!("/?page={p}");
        if let Some(t) = ext_type {
            s.push_str(&format!("&type={t}"));
        }
        if let Some(src) = source {
            s.push_str(&format!("&source={src}"));
        }
        s
    };
    let main = html! {
        h1 { (heading) }
        form class="search" role="search" method="get" action="/" {
            div class="field" {
                label for="q" { "Search extensions" }
                input type="search" id="q" name="q" value=(text) maxlength="128"
                    autocomplete="off" spellcheck="false"
                    aria-describedby="q-help" aria-controls="results";
                small id="q-help" { "Name, description or tag; results update as you type." }
            }
            div class="field" {
                label for="type" { "Type" }
                select id="type" name="type" {
                    option value="" selected[ext_type.is_none()] { "Any type" }
                    @for t in ExtensionType::ALL {
                        option value=(t) selected[ext_type == Some(t)] { (t) }
                    }
                }
            }
            div class="field" {
                label for="source" { "Source" }
                select id="source" name="source" {
                    option value="" selected[source.is_none()] { "Any source" }
                    @for s in reg.enabled_sources() {
                        option value=(s) selected[source == Some(*s)] { (s) }
                    }
                }
            }
            button type="submit" { "Search" }
        }
        @if !complete {
            p class="warning" role="status" {
                "A backend did not answer; the list shows what the others hold."
            }
        }
        p id="count" role="status" aria-live="polite" {
            (total) @if total == 1 { " extension" } @else { " extensions" }
            @if !text.is_empty() && total > records.len() { ", showing the best " (records.len()) }
        }
        ul id="results" class="results" {
            @for e in &records { (card(e)) }
        }
        @if text.is_empty() && pages > 1 {
            nav class="pages" aria-label="Pages" {
                @if page > 1 { a rel="prev" href=(link(page - 1)) { "← Previous" } " " }
                span { "Page " (page) " of " (pages) }
                @if page < pages { " " a rel="next" href=(link(page + 1)) { "Next →" } }
            }
        }
    };
    Ok(layout(&heading, health, main))
}

fn card(e: &Extension) -> Markup {
    html! {
        li class="card" {
            h2 {
                a href={ "/ext/" (e.ext_type) "/" (e.name) } { (e.name) }
            }
            p class="meta" {
                span class="badge type" { (e.ext_type) } " "
                span class="version" { (e.version) } " "
                @if e.prerelease { span class="badge pre" { "pre-release" } " " }
                @if e.stale { span class="badge stale" title="served from the local cache; its backend is unreachable" { "stale" } " " }
                span class="badge source" { (e.source) }
            }
            @if !e.description.is_empty() { p class="desc" { (e.description) } }
        }
    }
}

/// An `http(s)` URL, or nothing: other schemes (`javascript:`) never
/// become links.
fn web_url(u: &str) -> Option<&str> {
    let lower = u.trim().to_ascii_lowercase();
    (lower.starts_with("https://") || lower.starts_with("http://")).then_some(u.trim())
}

fn size(n: Option<u64>) -> String {
    match n {
        None => "—".into(),
        Some(b) if b < 1024 => format!("{b} B"),
        Some(b) if b < 1024 * 1024 => format!("{:.1} KiB", b as f64 / 1024.0),
        Some(b) => format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0)),
    }
}

/// `requires` / `dependencies`, when the record carries them (lists of
/// names or of records), as text lines.
fn dependency_lines(e: &Extension) -> Vec<(String, Vec<String>)> {
    let v = serde_json::to_value(e).unwrap_or_default();
    let mut out = Vec::new();
    for key in ["requires", "dependencies"] {
        let items: Vec<String> = match v.get(key) {
            Some(serde_json::Value::Array(a)) => a.iter().map(dep_text).collect(),
            Some(serde_json::Value::Object(m)) => m
                .iter()
                .map(|(k, v)| match v {
                    serde_json::Value::String(s) => format!("{k} {s}"),
                    serde_json::Value::Null => k.clone(),
                    other => format!("{k} {other}"),
                })
                .collect(),
            _ => continue,
        };
        if !items.is_empty() {
            out.push((key.to_string(), items));
        }
    }
    out
}

fn dep_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Object(m) => {
            let part = |k: &str| m.get(k).and_then(|x| x.as_str()).unwrap_or("");
            let s = [
                part("type"),
                part("name"),
                part("version"),
                part("constraint"),
            ]
            .iter()
            .filter(|p| !p.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join(" ");
            if s.is_empty() {
                v.to_string()
            } else {
                s
            }
        }
        other => other.to_string(),
    }
}

pub async fn extension(
    web: &Web,
    ty: &str,
    name: &str,
    health: &HealthResponse,
) -> Result<Markup, Error> {
    let ext_type: ExtensionType = ty.parse()?;
    validate_name(name)?;
    let versions = web.state.catalogue.versions(ext_type, name).await?;
    let Some(best) = crate::backend::newest(&versions.entries) else {
        return Err(Error::not_found(format!(
            "Extension {ext_type}/{name} not found"
        )));
    };
    let e = &best.record;
    let load = format!(
        "ext load {} --type {} --version {}",
        e.name, e.ext_type, e.version
    );
    let deps = dependency_lines(e);
    let dl = |v: &str| format!("/api/v1/extensions/{}/{}/{}", e.ext_type, e.name, v);
    let main = html! {
        nav aria-label="Breadcrumb" class="crumbs" {
            a href="/" { "All" } " / "
            a href={ "/?type=" (e.ext_type) } { (plural(e.ext_type)) } " / "
            span aria-current="page" { (e.name) }
        }
        h1 { (e.name) " " span class="badge type" { (e.ext_type) } }
        @if !versions.complete {
            p class="warning" role="status" { "A backend did not answer; some versions may be missing." }
        }
        p class="desc" id="description" { (e.description) }
        dl class="facts" {
            dt { "Newest version" } dd { (e.version)
                @if e.prerelease { " " span class="badge pre" { "pre-release" } }
                @if e.stale { " " span class="badge stale" { "stale" } } }
            dt { "Author" } dd { (e.author.as_deref().unwrap_or("—")) }
            dt { "Repository" } dd {
                @match e.repository.as_deref() {
                    Some(r) => @match web_url(r) {
                        Some(u) => a href=(u) rel="noopener noreferrer nofollow" { (u) },
                        None => code { (r) },
                    },
                    None => "—",
                }
            }
            dt { "Source" } dd { (e.source) }
            dt { "Tags" } dd {
                @if e.tags.is_empty() { "—" } @else {
                    ul class="tags" { @for t in &e.tags { li { a href={ "/?q=" (urlenc(t)) } { (t) } } } }
                }
            }
            @for (key, items) in &deps {
                dt { @if key == "requires" { "Requires" } @else { "Dependencies" } }
                dd { ul class="deps" { @for d in items { li { (d) } } } }
            }
        }
        section aria-labelledby="load-h" {
            h2 id="load-h" { "Load it in Nushell" }
            div class="copy" {
                pre { code id="load-cmd" { (load) } }
                button type="button" class="copy-btn" data-copy="load-cmd" hidden { "Copy" }
            }
        }
        section aria-labelledby="versions-h" {
            h2 id="versions-h" { "Versions" }
            div class="table-wrap" {
                table id="versions" {
                    caption { (versions.entries.len()) " versions, newest first" }
                    thead { tr {
                        th scope="col" { "Version" }
                        th scope="col" { "Published" }
                        th scope="col" { "Source" }
                        th scope="col" { "Size" }
                        th scope="col" { "Checksum" }
                        th scope="col" { "Download" }
                    } }
                    tbody {
                        @for v in &versions.entries {
                            @let r = &v.record;
                            tr data-version=(r.version) {
                                th scope="row" { (r.version)
                                    @if r.prerelease { " " span class="badge pre" { "pre-release" } }
                                    @if r.stale { " " span class="badge stale" { "stale" } } }
                                td { (r.published_at.as_deref().unwrap_or("—")) }
                                td { (r.source) }
                                td { span title={ (r.size.map(|s| s.to_string()).unwrap_or_default()) " bytes" } { (size(r.size)) } }
                                td class="checksum" { code { (r.checksum.as_deref().unwrap_or("—")) } }
                                td { a class="download" href=(dl(&r.version)) download
                                    aria-label={ "Download " (r.name) " " (r.version) } { "tar.gz" } }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(layout(&e.name, health, main))
}

use crate::backend::http::enc as urlenc;

pub fn error(e: &Error, health: &HealthResponse) -> Markup {
    let main = html! {
        h1 { "Sorry" }
        p class="error" role="alert" { (e.message) }
        @if let Some(d) = &e.details { p class="details" { (d) } }
        p { a href="/" { "Back to the catalogue" } }
    };
    layout("Error", health, main)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_http_urls_become_links() {
        assert_eq!(web_url("https://x.org/a"), Some("https://x.org/a"));
        assert_eq!(web_url("javascript:alert(1)"), None);
        assert_eq!(web_url(" JavaScript:alert(1)"), None);
        assert_eq!(web_url("data:text/html,x"), None);
    }

    #[test]
    fn backend_text_is_escaped() {
        let m = html! { p { ("<script>alert(1)</script>\"'&") } };
        let s = m.into_string();
        assert!(!s.contains("<script>"), "{s}");
        assert!(s.contains("&lt;script&gt;"), "{s}");
    }
}

//! Daemon records as Nushell values. Columns match the REST JSON field
//! names; `published_at`/`cached_at`/`last_used` become dates and `size`
//! a filesize, so `where size > 1mb` and date arithmetic just work.

use extreg_shared::protocol::{CacheEntry, DepNode, LoadResult, PullResult};
use extreg_shared::{Extension, ExtensionVersion, SignatureState};
use nu_protocol::{Record, Span, Value};

fn opt_str(v: &Option<String>, span: Span) -> Value {
    v.as_ref()
        .map(|s| Value::string(s.clone(), span))
        .unwrap_or_else(|| Value::nothing(span))
}

/// An RFC 3339 string as a date; anything unparsable stays a string.
pub fn date(v: &str, span: Span) -> Value {
    match chrono::DateTime::parse_from_rfc3339(v) {
        Ok(d) => Value::date(d, span),
        Err(_) => Value::string(v, span),
    }
}

fn opt_date(v: &Option<String>, span: Span) -> Value {
    v.as_deref()
        .map(|s| date(s, span))
        .unwrap_or_else(|| Value::nothing(span))
}

fn size(v: Option<u64>, span: Span) -> Value {
    v.map(|n| Value::filesize(n.min(i64::MAX as u64) as i64, span))
        .unwrap_or_else(|| Value::nothing(span))
}

pub fn extension(e: &Extension, span: Span) -> Value {
    let mut r = Record::new();
    r.push("name", Value::string(&e.name, span));
    r.push("type", Value::string(e.ext_type.as_str(), span));
    r.push("version", Value::string(&e.version, span));
    r.push("description", Value::string(&e.description, span));
    r.push("author", opt_str(&e.author, span));
    r.push("repository", opt_str(&e.repository, span));
    r.push("source", Value::string(e.source.as_str(), span));
    r.push("published_at", opt_date(&e.published_at, span));
    r.push("download_url", opt_str(&e.download_url, span));
    r.push("checksum", opt_str(&e.checksum, span));
    r.push("size", size(e.size, span));
    r.push(
        "tags",
        Value::list(
            e.tags.iter().map(|t| Value::string(t, span)).collect(),
            span,
        ),
    );
    r.push("prerelease", Value::bool(e.prerelease, span));
    r.push("stale", Value::bool(e.stale, span));
    r.push("requires", strings(&e.requires, span));
    r.push("dependencies", strings(&e.dependencies, span));
    r.push("signature", signature(&e.signature, span));
    r.push("mismatch", opt_str(&e.mismatch, span));
    Value::record(r, span)
}

fn strings(v: &[String], span: Span) -> Value {
    Value::list(v.iter().map(|t| Value::string(t, span)).collect(), span)
}

/// `{signed, verified, key_id}` (`signed` null when the backend cannot
/// carry signatures).
pub fn signature(s: &SignatureState, span: Span) -> Value {
    let mut r = Record::new();
    r.push(
        "signed",
        s.signed
            .map(|b| Value::bool(b, span))
            .unwrap_or_else(|| Value::nothing(span)),
    );
    r.push("verified", Value::bool(s.verified, span));
    r.push("key_id", opt_str(&s.key_id, span));
    Value::record(r, span)
}

/// One node of `ext deps`, its dependencies nested.
pub fn dep_node(n: &DepNode, span: Span) -> Value {
    let mut r = Record::new();
    r.push("name", Value::string(&n.name, span));
    r.push("type", Value::string(n.ext_type.as_str(), span));
    r.push("version", Value::string(&n.version, span));
    r.push("source", Value::string(n.source.as_str(), span));
    r.push("wanted", Value::string(&n.wanted, span));
    r.push("requires", strings(&n.requires, span));
    r.push(
        "dependencies",
        Value::list(
            n.dependencies.iter().map(|d| dep_node(d, span)).collect(),
            span,
        ),
    );
    Value::record(r, span)
}

pub fn version(v: &ExtensionVersion, span: Span) -> Value {
    let mut r = Record::new();
    r.push("version", Value::string(&v.version, span));
    r.push("published_at", opt_date(&v.published_at, span));
    r.push("download_url", opt_str(&v.download_url, span));
    r.push("checksum", opt_str(&v.checksum, span));
    r.push("size", size(v.size, span));
    r.push("prerelease", Value::bool(v.prerelease, span));
    r.push("source", Value::string(v.source.as_str(), span));
    r.push("stale", Value::bool(v.stale, span));
    r.push("signature", signature(&v.signature, span));
    r.push("mismatch", opt_str(&v.mismatch, span));
    Value::record(r, span)
}

/// Seconds as a Nushell duration.
pub fn duration_secs(secs: u64, span: Span) -> Value {
    Value::duration(
        (secs.min(i64::MAX as u64 / 1_000_000_000) as i64) * 1_000_000_000,
        span,
    )
}

/// The time from an RFC 3339 instant until now (never negative), or
/// nothing when it does not parse.
fn since(v: &str, span: Span) -> Value {
    match chrono::DateTime::parse_from_rfc3339(v) {
        Ok(d) => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0);
            let secs = (now - d.timestamp()).max(0);
            duration_secs(secs as u64, span)
        }
        Err(_) => Value::nothing(span),
    }
}

/// A cache entry: `age` (since cached) and `idle` (since last used) are
/// durations, so `where idle > 30day` reads as it should.
pub fn cache_entry(e: &CacheEntry, span: Span) -> Value {
    let mut r = Record::new();
    r.push("type", Value::string(e.ext_type.as_str(), span));
    r.push("name", Value::string(&e.name, span));
    r.push("version", Value::string(&e.version, span));
    r.push("source", Value::string(e.source.as_str(), span));
    r.push("size", size(Some(e.size), span));
    r.push("digest", Value::string(&e.digest, span));
    r.push("cached_at", date(&e.cached_at, span));
    r.push("last_used", date(&e.last_used, span));
    r.push("age", since(&e.cached_at, span));
    r.push("idle", since(&e.last_used, span));
    Value::record(r, span)
}

pub fn pulled(p: &PullResult, span: Span) -> Value {
    let mut r = Record::new();
    r.push("name", Value::string(&p.extension.name, span));
    r.push("type", Value::string(p.extension.ext_type.as_str(), span));
    r.push("version", Value::string(&p.extension.version, span));
    r.push("source", Value::string(p.extension.source.as_str(), span));
    r.push("digest", Value::string(&p.digest, span));
    r.push("size", size(Some(p.size), span));
    r.push("path", Value::string(&p.path, span));
    r.push("cached", Value::bool(p.cached, span));
    Value::record(r, span)
}

pub fn loaded(l: &LoadResult, span: Span) -> Value {
    let strs = |v: &[String]| Value::list(v.iter().map(|t| Value::string(t, span)).collect(), span);
    let mut r = Record::new();
    r.push("name", Value::string(&l.name, span));
    r.push("type", Value::string(l.ext_type.as_str(), span));
    r.push("version", Value::string(&l.version, span));
    r.push("source", Value::string(l.source.as_str(), span));
    r.push("path", Value::string(&l.path, span));
    r.push("checksum", Value::string(&l.checksum, span));
    r.push("description", Value::string(&l.description, span));
    r.push("author", opt_str(&l.author, span));
    r.push("tags", strs(&l.tags));
    r.push("requires", strs(&l.requires));
    r.push("dependencies", strs(&l.dependencies));
    r.push("homepage", opt_str(&l.homepage, span));
    r.push("license", opt_str(&l.license, span));
    r.push("loaded_at", date(&l.loaded_at, span));
    r.push("already_loaded", Value::bool(l.already_loaded, span));
    r.push("from_cache", Value::bool(l.from_cache, span));
    Value::record(r, span)
}

/// Any serializable record (health, cache stats) as a Nushell value, via
/// its JSON form. Keys named like dates become dates.
pub fn from_serde<T: serde::Serialize>(v: &T, span: Span) -> Value {
    json(
        serde_json::to_value(v).unwrap_or(serde_json::Value::Null),
        span,
        "",
    )
}

fn json(v: serde_json::Value, span: Span, key: &str) -> Value {
    use serde_json::Value as J;
    match v {
        J::Null => Value::nothing(span),
        J::Bool(b) => Value::bool(b, span),
        J::Number(n) => match n.as_i64() {
            Some(i) if key == "bytes" || key == "size" => Value::filesize(i, span),
            Some(i) if key == "uptime" || key.ends_with("_seconds") => {
                duration_secs(i.max(0) as u64, span)
            }
            Some(i) => Value::int(i, span),
            None => Value::float(n.as_f64().unwrap_or(0.0), span),
        },
        J::String(s) if key == "oldest" || key.ends_with("_at") => date(&s, span),
        J::String(s) => Value::string(s, span),
        J::Array(a) => Value::list(a.into_iter().map(|x| json(x, span, "")).collect(), span),
        J::Object(o) => {
            let mut r = Record::new();
            for (k, x) in o {
                let val = json(x, span, &k);
                // `ttl_seconds: 300` reads as `ttl: 5min`.
                let k = match k.strip_suffix("_seconds") {
                    Some(base) if matches!(val, Value::Duration { .. }) => base.to_string(),
                    _ => k,
                };
                r.push(k, val);
            }
            Value::record(r, span)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use extreg_shared::{ExtensionType, Source};

    #[test]
    fn extension_columns_and_types() {
        let e = Extension {
            name: "k".into(),
            ext_type: ExtensionType::Taskserv,
            version: "1.0.0".into(),
            description: "d".into(),
            author: None,
            repository: None,
            source: Source::Local,
            published_at: Some("2025-10-06T12:00:00Z".into()),
            download_url: None,
            checksum: None,
            size: Some(2048),
            tags: vec!["x".into()],
            prerelease: false,
            stale: false,
            requires: vec![],
            dependencies: vec![],
            signature: Default::default(),
            mismatch: None,
        };
        let v = extension(&e, Span::test_data());
        let r = v.as_record().unwrap();
        let cols: Vec<&str> = r.columns().map(|c| c.as_str()).collect();
        assert_eq!(
            cols,
            [
                "name",
                "type",
                "version",
                "description",
                "author",
                "repository",
                "source",
                "published_at",
                "download_url",
                "checksum",
                "size",
                "tags",
                "prerelease",
                "stale",
                "requires",
                "dependencies",
                "signature",
                "mismatch"
            ]
        );
        assert!(matches!(r.get("published_at"), Some(Value::Date { .. })));
        assert!(matches!(r.get("size"), Some(Value::Filesize { .. })));
        assert!(matches!(r.get("author"), Some(Value::Nothing { .. })));
    }
}

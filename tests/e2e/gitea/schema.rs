//! The stand-in held to Gitea 1.25's published schema
//! (`../shared/gitea/swagger.v1.json`, beside the repository).

use super::*;

fn swagger() -> Value {
    let p = repo_root().join("../shared/gitea/swagger.v1.json");
    let text = std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("{}: {e} (Gitea 1.25.4's API schema)", p.display()));
    serde_json::from_str(&text).unwrap()
}

/// Follows `$ref: #/definitions/X`.
fn resolve<'a>(defs: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let name = r.strip_prefix("#/definitions/").expect("local $ref");
            resolve(defs, &defs[name])
        }
        None => schema,
    }
}

/// Every object key in `v` that `schema` does not declare, as paths.
fn undeclared(defs: &Value, schema: &Value, v: &Value, at: &str, out: &mut Vec<String>) {
    let schema = resolve(defs, schema);
    match v {
        Value::Object(m) => {
            let props = schema.get("properties").and_then(Value::as_object);
            assert!(
                props.is_some(),
                "{at}: the schema declares no properties here: {schema}"
            );
            for (k, x) in m {
                match props.unwrap().get(k) {
                    None => out.push(format!("{at}.{k}")),
                    Some(s) => undeclared(defs, s, x, &format!("{at}.{k}"), out),
                }
            }
        }
        Value::Array(a) => {
            if let Some(items) = schema.get("items") {
                for (i, x) in a.iter().enumerate() {
                    undeclared(defs, items, x, &format!("{at}[{i}]"), out);
                }
            }
        }
        _ => {}
    }
}

/// Validates `v` against `definitions.{def}` (or an array of it) with a
/// JSON-Schema validator, and insists every emitted field is declared.
fn check_against(sw: &Value, def: &str, array: bool, v: &Value) {
    let defs = &sw["definitions"];
    assert!(defs.get(def).is_some(), "no definition {def}");
    let item = json!({ "$ref": format!("#/definitions/{def}") });
    let schema = if array {
        json!({ "definitions": defs, "type": "array", "items": item.clone() })
    } else {
        json!({ "definitions": defs, "allOf": [item.clone()] })
    };
    let validator = jsonschema::draft4::options()
        .should_validate_formats(true)
        .build(&schema)
        .expect("swagger definitions compile as JSON Schema draft 4");
    let errors: Vec<String> = validator
        .iter_errors(v)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{def}: {errors:#?}\n{v:#}");
    let mut extra = Vec::new();
    let walk = if array {
        json!({ "type": "array", "items": item })
    } else {
        item
    };
    undeclared(defs, &walk, v, def, &mut extra);
    assert!(
        extra.is_empty(),
        "{def}: fields not declared by Gitea's schema: {extra:?}"
    );
}

pub(super) fn raw_get(url: &str, token: Option<&str>) -> reqwest::blocking::Response {
    let mut r = Client::new().get(url);
    if let Some(t) = token {
        r = r.header("Authorization", format!("token {t}"));
    }
    r.send().unwrap()
}

fn link_rels(r: &reqwest::blocking::Response) -> Vec<(String, String)> {
    r.headers()
        .get("link")
        .map(|l| l.to_str().unwrap().to_string())
        .unwrap_or_default()
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|part| {
            let (url, rel) = part.split_once(">; rel=\"").expect("<url>; rel=\"x\"");
            (
                rel.trim_end_matches('"').to_string(),
                url.trim_start_matches('<').to_string(),
            )
        })
        .collect()
}

#[test]
fn standin_answers_as_gitea_1_25_schema_says() {
    let sw = swagger();
    assert_eq!(sw["info"]["version"], "1.25.4");
    let g = standin();
    g.with(|w| {
        for i in 0..55 {
            add_extension(w, ORG, "provider", &format!("p{i:02}"), &["v1.0.0"], i == 0);
        }
        let r = w.repo(ORG, "hidden_prov");
        r.private = true;
        r.release("v0.1.0").draft();
    });
    let api = format!("{}/api/v1", g.url);

    let r = raw_get(&format!("{api}/version"), Some(TOKEN));
    assert_eq!(r.status(), 200);
    check_against(&sw, "ServerVersion", false, &r.json().unwrap());

    // Default page size 30; limit capped at 50 silently; headers as Gitea.
    let r = raw_get(&format!("{api}/orgs/{ORG}/repos"), Some(TOKEN));
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-total-count"], "56");
    let rels = link_rels(&r);
    assert_eq!(
        rels.iter().map(|(r, _)| r.as_str()).collect::<Vec<_>>(),
        ["next", "last"]
    );
    assert_eq!(rels[0].1, format!("{api}/orgs/{ORG}/repos?page=2"));
    let page1: Value = r.json().unwrap();
    assert_eq!(page1.as_array().unwrap().len(), 30);
    check_against(&sw, "Repository", true, &page1);

    let r = raw_get(
        &format!("{api}/orgs/{ORG}/repos?limit=100&page=1"),
        Some(TOKEN),
    );
    assert_eq!(r.headers()["x-total-count"], "56");
    assert_eq!(
        link_rels(&r)[0].1,
        format!("{api}/orgs/{ORG}/repos?limit=100&page=2")
    );
    assert_eq!(r.json::<Value>().unwrap().as_array().unwrap().len(), 50);
    let r = raw_get(
        &format!("{api}/orgs/{ORG}/repos?limit=50&page=2"),
        Some(TOKEN),
    );
    let rels = link_rels(&r);
    assert_eq!(
        rels.iter().map(|(r, _)| r.as_str()).collect::<Vec<_>>(),
        ["first", "prev"]
    );
    let page2: Value = r.json().unwrap();
    assert_eq!(page2.as_array().unwrap().len(), 6);
    check_against(&sw, "Repository", true, &page2);
    // Without a token the private repository is not listed.
    let r = raw_get(&format!("{api}/orgs/{ORG}/repos?limit=50&page=2"), None);
    assert_eq!(r.headers()["x-total-count"], "55");

    let r = raw_get(&format!("{api}/repos/{ORG}/p00_prov"), Some(TOKEN));
    let repo: Value = r.json().unwrap();
    check_against(&sw, "Repository", false, &repo);
    for f in [
        "id",
        "name",
        "full_name",
        "owner",
        "description",
        "html_url",
        "topics",
        "archived",
        "private",
        "created_at",
    ] {
        assert!(repo.get(f).is_some(), "Repository lacks {f}");
    }

    let r = raw_get(&format!("{api}/repos/{ORG}/p00_prov/releases"), Some(TOKEN));
    assert_eq!(r.headers()["x-total-count"], "1");
    assert!(r.headers().get("link").is_none());
    let rels: Value = r.json().unwrap();
    check_against(&sw, "Release", true, &rels);
    let rel = &rels[0];
    for f in [
        "id",
        "tag_name",
        "name",
        "body",
        "draft",
        "prerelease",
        "created_at",
        "published_at",
        "assets",
    ] {
        assert!(rel.get(f).is_some(), "Release lacks {f}");
    }
    assert_eq!(rel["published_at"], rel["created_at"]);
    let asset = &rel["assets"][0];
    check_against(&sw, "Attachment", false, asset);
    for f in [
        "id",
        "name",
        "size",
        "download_count",
        "created_at",
        "uuid",
        "browser_download_url",
    ] {
        assert!(asset.get(f).is_some(), "Attachment lacks {f}");
    }
    assert_eq!(
        asset["browser_download_url"],
        format!(
            "{}/{ORG}/p00_prov/releases/download/v1.0.0/p00_prov.tar.gz",
            g.url
        )
    );
    // The download URL serves the bytes (with the same token header).
    let r = raw_get(asset["browser_download_url"].as_str().unwrap(), Some(TOKEN));
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.bytes().unwrap().len() as u64,
        asset["size"].as_u64().unwrap()
    );

    // Drafts: hidden from a read token, listed for a write token.
    let url = format!("{api}/repos/{ORG}/hidden_prov/releases");
    let r: Value = raw_get(&url, Some(TOKEN)).json().unwrap();
    assert_eq!(r, json!([]));
    let r: Value = raw_get(&url, Some(WRITE_TOKEN)).json().unwrap();
    assert_eq!(r[0]["draft"], true);
    check_against(&sw, "Release", true, &r);

    // Errors: APIError bodies; a private repository without access is 404.
    for (url, token, status) in [
        (format!("{api}/repos/{ORG}/hidden_prov"), None, 404),
        (
            format!("{api}/repos/{ORG}/nope_prov/releases"),
            Some(TOKEN),
            404,
        ),
        (format!("{api}/orgs/no-such-org/repos"), Some(TOKEN), 404),
        (format!("{api}/version"), Some("wrong"), 401),
    ] {
        let r = raw_get(&url, token);
        assert_eq!(r.status().as_u16(), status, "{url}");
        let body: Value = r.json().unwrap();
        check_against(&sw, "APIError", false, &body);
        assert!(body["message"].is_string() && body["url"].is_string());
    }
}

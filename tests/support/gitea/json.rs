//! Gitea's JSON: error bodies, paging headers, and the `User`,
//! `Repository` and `Release` objects as Gitea 1.25 writes them.

use super::{Access, ReleaseFx, RepoFx, Shared, DEFAULT_LIMIT, MAX_LIMIT};
use axum::http::{header, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Gitea's error body.
pub(super) fn api_error(st: &Shared, status: StatusCode, message: &str) -> Response {
    let mut r = (
        status,
        axum::Json(json!({"message": message, "url": format!("{}api/swagger", st.root)})),
    )
        .into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json;charset=utf-8"),
    );
    r
}

pub(super) fn json_response(v: Value) -> Response {
    let mut r = axum::Json(v).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json;charset=utf-8"),
    );
    r
}

#[derive(Deserialize)]
pub(super) struct PageQuery {
    page: Option<i64>,
    limit: Option<i64>,
}

/// Gitea's paging of a full list: the page's items, `X-Total-Count` and
/// `Link` (as `genAPILinks` writes it: next, last, first, prev).
pub(super) fn paginate(st: &Shared, uri: &Uri, q: &PageQuery, items: Vec<Value>) -> Response {
    let page = q.page.filter(|p| *p > 0).unwrap_or(1) as usize;
    let limit = match q.limit {
        Some(l) if l > 0 => (l as usize).min(MAX_LIMIT),
        _ => DEFAULT_LIMIT,
    };
    let total = items.len();
    let body: Vec<Value> = items
        .into_iter()
        .skip((page - 1).saturating_mul(limit))
        .take(limit)
        .collect();
    let total_pages = if total == 0 { 1 } else { total.div_ceil(limit) };
    let cur = page.min(total_pages);
    let link_to = |p: usize| {
        let mut pairs: BTreeMap<String, String> = uri
            .query()
            .unwrap_or_default()
            .split('&')
            .filter(|kv| !kv.is_empty())
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                (k.to_string(), v.to_string())
            })
            .collect();
        pairs.insert("page".into(), p.to_string());
        let query: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!(
            "{}{}?{}",
            st.root,
            uri.path().trim_start_matches('/'),
            query.join("&")
        )
    };
    let mut links = Vec::new();
    if cur < total_pages {
        links.push(format!("<{}>; rel=\"next\"", link_to(cur + 1)));
        links.push(format!("<{}>; rel=\"last\"", link_to(total_pages)));
    }
    if cur > 1 {
        links.push(format!("<{}>; rel=\"first\"", link_to(1)));
        links.push(format!("<{}>; rel=\"prev\"", link_to(cur - 1)));
    }
    let mut r = json_response(Value::Array(body));
    let h = r.headers_mut();
    h.insert("x-total-count", HeaderValue::from(total));
    if !links.is_empty() {
        h.insert("link", HeaderValue::from_str(&links.join(",")).unwrap());
    }
    h.insert(
        "access-control-expose-headers",
        HeaderValue::from_static("X-Total-Count, Link"),
    );
    r
}

pub(super) fn user_json(st: &Shared, id: i64, login: &str, is_org: bool) -> Value {
    json!({
        "id": id,
        "login": login,
        "login_name": "",
        "source_id": 0,
        "full_name": if is_org { format!("The {login} organization") } else { String::new() },
        "email": format!("{login}@noreply.localhost"),
        "avatar_url": format!("{}avatars/{id}", st.root),
        "html_url": format!("{}{login}", st.root),
        "language": "",
        "is_admin": false,
        "last_login": "0001-01-01T00:00:00Z",
        "created": "2024-01-01T00:00:00Z",
        "restricted": false,
        "active": false,
        "prohibit_login": false,
        "location": "",
        "website": "",
        "description": "",
        "visibility": "public",
        "followers_count": 0,
        "following_count": 0,
        "starred_repos_count": 0
    })
}

pub(super) fn repo_json(
    st: &Shared,
    org: &str,
    org_id: i64,
    r: &RepoFx,
    access: Option<Access>,
) -> Value {
    let full = format!("{org}/{}", r.name);
    let html = format!("{}{full}", st.root);
    let host = st
        .root
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .split(':')
        .next()
        .unwrap_or("localhost")
        .to_string();
    let visible_releases = r.releases.iter().filter(|x| !x.draft).count();
    let mut v = json!({
        "id": r.id,
        "owner": user_json(st, org_id, org, true),
        "name": r.name,
        "full_name": full,
        "description": r.description,
        "empty": false,
        "private": r.private,
        "fork": false,
        "template": false,
        "mirror": false,
        "size": 42,
        "language": "",
        "languages_url": format!("{}api/v1/repos/{full}/languages", st.root),
        "html_url": html,
        "url": format!("{}api/v1/repos/{full}", st.root),
        "link": "",
        "ssh_url": format!("git@{host}:{full}.git"),
        "clone_url": format!("{html}.git"),
        "original_url": "",
        "website": "",
        "stars_count": 0,
        "forks_count": 0,
        "watchers_count": 1,
        "open_issues_count": 0,
        "open_pr_counter": 0,
        "release_counter": visible_releases,
        "default_branch": "main",
        "archived": r.archived,
        "created_at": r.created_at,
        "updated_at": r.created_at,
        "archived_at": if r.archived { r.created_at.clone() } else { "1970-01-01T00:00:00Z".to_string() },
    });
    let more = json!({
        "has_code": true,
        "has_issues": true,
        "internal_tracker": {
            "enable_time_tracker": true,
            "allow_only_contributors_to_track_time": true,
            "enable_issue_dependencies": true
        },
        "has_wiki": true,
        "has_pull_requests": true,
        "has_projects": true,
        "projects_mode": "all",
        "has_releases": true,
        "has_packages": true,
        "has_actions": true,
        "ignore_whitespace_conflicts": false,
        "allow_merge_commits": true,
        "allow_rebase": true,
        "allow_rebase_explicit": true,
        "allow_squash_merge": true,
        "allow_fast_forward_only_merge": true,
        "allow_rebase_update": true,
        "allow_manual_merge": false,
        "autodetect_manual_merge": false,
        "default_delete_branch_after_merge": false,
        "default_merge_style": "merge",
        "default_allow_maintainer_edit": false,
        "avatar_url": "",
        "internal": false,
        "mirror_interval": "",
        "object_format_name": "sha1",
        "mirror_updated": "0001-01-01T00:00:00Z",
        "topics": r.topics,
        "licenses": []
    });
    if let (Value::Object(a), Value::Object(b)) = (&mut v, more) {
        a.extend(b);
    }
    if let Some(a) = access {
        v["permissions"] = json!({
            "admin": false,
            "push": a == Access::Write,
            "pull": true
        });
    }
    v
}

/// Percent-encodes one path segment (all but RFC 3986's unreserved).
pub(super) fn esc(seg: &str) -> String {
    const UNRESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(seg, UNRESERVED).to_string()
}

pub(super) fn release_json(
    st: &Shared,
    org: &str,
    org_id: i64,
    repo: &RepoFx,
    r: &ReleaseFx,
) -> Value {
    let full = format!("{org}/{}", repo.name);
    let api = format!("{}api/v1/repos/{full}", st.root);
    let html = format!("{}{full}", st.root);
    let assets: Vec<Value> = r
        .assets
        .iter()
        .map(|a| {
            json!({
                "id": a.id,
                "name": a.name,
                "size": a.bytes.len(),
                "download_count": a.download_count,
                "created_at": a.created_at,
                "uuid": a.uuid,
                "browser_download_url": format!(
                    "{html}/releases/download/{}/{}", esc(&r.tag_name), esc(&a.name)
                )
            })
        })
        .collect();
    let _ = org_id;
    json!({
        "id": r.id,
        "tag_name": r.tag_name,
        "target_commitish": "main",
        "name": r.name,
        "body": r.body,
        "url": format!("{api}/releases/{}", r.id),
        "html_url": format!("{html}/releases/tag/{}", esc(&r.tag_name)),
        "tarball_url": format!("{html}/archive/{}.tar.gz", esc(&r.tag_name)),
        "zipball_url": format!("{html}/archive/{}.zip", esc(&r.tag_name)),
        "upload_url": format!("{api}/releases/{}/assets", r.id),
        "draft": r.draft,
        "prerelease": r.prerelease,
        "created_at": r.created_at,
        "published_at": r.created_at,
        "author": user_json(st, 7, &r.author, false),
        "assets": assets
    })
}

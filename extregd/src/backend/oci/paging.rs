//! Paged lists (`_catalog`, `tags/list`): ask for [`PAGE_SIZE`] items and
//! follow `Link: <...>; rel="next"` (same origin, no loops, at most
//! [`MAX_PAGES`]); a registry refusing `n` with a 400 (distribution: `n`
//! above `catalog.maxentries`) is asked again with its own page size. The
//! 400 is recognised by its status code, never by its text.

use super::client::{Endpoint, RegistryClient};
use crate::backend::BackendError;
use reqwest::Method;
use serde::Deserialize;

/// Page size asked for in `_catalog` and `tags/list`.
pub const PAGE_SIZE: usize = 100;
/// No listing follows more pages than this.
const MAX_PAGES: usize = 1_000;

/// The `rel="next"` target of a `Link` header.
pub(crate) fn next_link(h: &str) -> Option<String> {
    h.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        params
            .split(';')
            .any(|p| {
                let p = p.trim().replace(' ', "");
                p == "rel=\"next\"" || p == "rel=next"
            })
            .then(|| {
                target
                    .trim()
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_string()
            })
    })
}

impl RegistryClient {
    /// Every item of a paged list (`_catalog` or `tags/list`).
    pub(super) async fn all_pages(
        &self,
        ep: Endpoint<'_>,
        scope: &str,
        what: &str,
    ) -> Result<Vec<String>, BackendError> {
        #[derive(Deserialize)]
        struct Page {
            #[serde(default)]
            repositories: Option<Vec<String>>,
            #[serde(default)]
            tags: Option<Vec<String>>,
        }
        let first = self.url(ep);
        let mut url = format!("{first}?n={PAGE_SIZE}");
        let mut out = Vec::new();
        let mut pages = 0;
        // Every page URL read: a `Link` back to one of them is a loop.
        let mut seen = std::collections::HashSet::new();
        let mut retried_without_n = false;
        loop {
            seen.insert(url.clone());
            let mut req = self.req(Method::GET, ep, scope.to_string(), what);
            req.url = url.clone();
            let (headers, body) = match self.send_read(&req).await {
                Ok(x) => x,
                // distribution: `n` above `catalog.maxentries` is a 400;
                // ask again with the registry's own page size.
                Err(BackendError::Status { code: 400, .. }) if pages == 0 && !retried_without_n => {
                    retried_without_n = true;
                    url = first.clone();
                    continue;
                }
                Err(e) => return Err(e),
            };
            let page: Page = serde_json::from_slice(&body).map_err(|e| {
                BackendError::Upstream(format!(
                    "the registry sent an unreadable page of {what}: {e}"
                ))
            })?;
            let items = page.repositories.or(page.tags).unwrap_or_default();
            let empty = items.is_empty();
            out.extend(items);
            pages += 1;
            let next = headers
                .get_all("link")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .find_map(next_link);
            match next {
                Some(n) if !empty && pages < MAX_PAGES => {
                    let joined = self.base.join(&n).map_err(|_| {
                        BackendError::Upstream(format!("the registry sent a bad Link for {what}"))
                    })?;
                    if joined.origin() != self.base.origin() {
                        return Err(BackendError::Upstream(format!(
                            "the registry's Link for {what} points to another host"
                        )));
                    }
                    if seen.contains(joined.as_str()) {
                        return Err(BackendError::Upstream(format!(
                            "the registry's Link for {what} loops back to a page already read (page {pages})"
                        )));
                    }
                    url = joined.to_string();
                }
                Some(_) if pages >= MAX_PAGES => {
                    return Err(BackendError::Upstream(format!(
                        "the registry sent more than {MAX_PAGES} pages of {what}; refused"
                    )));
                }
                _ => break,
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_parse() {
        assert_eq!(
            next_link("</v2/_catalog?last=b&n=100>; rel=\"next\"").as_deref(),
            Some("/v2/_catalog?last=b&n=100")
        );
        assert_eq!(next_link("</x>; rel=\"prev\""), None);
        assert_eq!(
            next_link("</a>; rel=\"prev\", </b>; rel=next").as_deref(),
            Some("/b")
        );
    }
}

//! Requests to Gitea: URLs, the token, retries, error mapping and paging.

use super::model::{enc, ApiErrorBody, Page};
use super::{Inner, MAX_PAGES, MAX_PAGE_BYTES, MAX_RETRIES, PAGE_LIMIT, PAGE_LOOKAHEAD};
use crate::backend::http;
use crate::backend::BackendError;
use futures::StreamExt;
use reqwest::header::AUTHORIZATION;
use reqwest::{StatusCode, Url};
use serde::de::DeserializeOwned;
use std::collections::HashSet;
use std::time::Duration;

impl Inner {
    pub(super) fn api(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.base)
    }

    pub(super) fn repo_path(&self, repo: &str) -> String {
        format!("/repos/{}/{}", enc(&self.org), enc(repo))
    }

    /// Never lets the token through in a text quoted from Gitea.
    pub(super) fn scrub(&self, text: &str) -> String {
        self.up.scrub(text)
    }

    pub(super) fn transport_error(&self, e: reqwest::Error, what: &str) -> BackendError {
        self.up.transport_error(e, what)
    }

    pub(super) fn read_error(&self, e: http::ReadError, what: &str) -> BackendError {
        self.up.read_error(e, what)
    }

    pub(super) async fn status_error(&self, resp: reqwest::Response, what: &str) -> BackendError {
        let status = resp.status();
        let retry = http::retry_after(resp.headers());
        let body = http::error_body(resp).await;
        let message = serde_json::from_slice::<ApiErrorBody>(&body)
            .ok()
            .and_then(|b| b.message)
            .filter(|m| !m.trim().is_empty())
            .map(|m| format!(": {}", self.scrub(m.trim())))
            .unwrap_or_default();
        http::status_error(status, retry, "gitea", what, &message, |s| {
            if s == StatusCode::FORBIDDEN {
                format!("gitea refused {what} to this token (403){message}")
            } else if self.token.is_some() {
                format!("gitea rejected the token (401){message}")
            } else {
                format!("gitea requires a token (401); set [gitea] token_path{message}")
            }
        })
    }

    /// `GET url` with the token (only on our origin); error statuses become
    /// `BackendError`s.
    pub(super) async fn get(
        &self,
        url: &str,
        what: &str,
        overall_timeout: bool,
    ) -> Result<reqwest::Response, BackendError> {
        let mut attempt = 0;
        loop {
            let mut req = self.client.get(url);
            if overall_timeout {
                req = req.timeout(self.up.timeout());
            }
            if let Some(t) = &self.token {
                if Url::parse(url).is_ok_and(|u| u.origin().ascii_serialization() == self.up.shown)
                {
                    req = req.header(AUTHORIZATION, t.header.clone());
                }
            }
            let resp = req
                .send()
                .await
                .map_err(|e| self.transport_error(e, what))?;
            let status = resp.status();
            if status.is_success() {
                return Ok(resp);
            }
            // 429 and 503: wait as Gitea asks (bounded), then once more.
            if (status == StatusCode::TOO_MANY_REQUESTS
                || status == StatusCode::SERVICE_UNAVAILABLE)
                && attempt < MAX_RETRIES
            {
                let wait = http::retry_after(resp.headers())
                    .unwrap_or(Duration::from_millis(200 << attempt));
                drop(resp);
                tokio::time::sleep(wait).await;
                attempt += 1;
                continue;
            }
            return Err(self.status_error(resp, what).await);
        }
    }

    /// One page of a list endpoint.
    pub(super) async fn page<T: DeserializeOwned>(
        &self,
        path: &str,
        page: u64,
        what: &str,
    ) -> Result<Page<T>, BackendError> {
        let url = self.api(&format!("{path}?page={page}&limit={PAGE_LIMIT}"));
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| BackendError::Io("gitea backend is shutting down".into()))?;
        let resp = self.get(&url, what, true).await?;
        let header = |n: &str| {
            resp.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let total = header("x-total-count").and_then(|v| v.trim().parse().ok());
        let has_next = header("link").is_some_and(|l| l.contains("rel=\"next\""));
        let bytes = http::read_limited(resp, MAX_PAGE_BYTES)
            .await
            .map_err(|e| self.read_error(e, what))?;
        let digest = crate::backend::sha256_tag(&bytes);
        let items = serde_json::from_slice(&bytes).map_err(|e| {
            BackendError::Upstream(format!("gitea sent an unreadable page of {what}: {e}"))
        })?;
        Ok(Page {
            items,
            total,
            has_next,
            digest,
        })
    }

    /// Every item of a list endpoint, in order (see [`Inner::each_page`]).
    pub(super) async fn all_pages<T: DeserializeOwned + Send>(
        &self,
        path: &str,
        what: &str,
    ) -> Result<Vec<T>, BackendError> {
        let mut out = Vec::new();
        self.each_page(path, what, |items| out.extend(items))
            .await?;
        Ok(out)
    }

    /// Hands each page of a list endpoint to `on_page` as soon as it has
    /// arrived, in page order, so the caller can start work on its items
    /// while later pages are still on the way: the first page, then the
    /// rest — when `X-Total-Count` says how many, [`PAGE_LOOKAHEAD`] at a
    /// time (each also takes a permit), else one by one while `Link` names
    /// a next page.
    /// An error after some pages were handed over leaves those with the
    /// caller (the count of pages handed over tells where it stopped).
    /// **Bounded against a lying server**: at most [`MAX_PAGES`] pages,
    /// reading stops at the first short or empty page (requests already
    /// started for later pages are dropped: an absurd `X-Total-Count` costs
    /// at most [`PAGE_LOOKAHEAD`] requests), and a page whose body was already
    /// seen (a `next` that loops) ends the listing with a warning.
    pub(super) async fn each_page<T: DeserializeOwned + Send>(
        &self,
        path: &str,
        what: &str,
        mut on_page: impl FnMut(Vec<T>),
    ) -> Result<(), BackendError> {
        let first = self.page::<T>(path, 1, what).await?;
        let per = first.items.len() as u64;
        let mut seen = HashSet::from([first.digest.clone()]);
        let (total, has_next) = (first.total, first.has_next);
        on_page(first.items);
        if per == 0 {
            return Ok(());
        }
        let looped = |page: u64| {
            tracing::warn!(%what, page, "gitea: a page repeats an earlier one; stopping there");
        };
        match total {
            Some(total) => {
                let pages = total.div_ceil(per).min(MAX_PAGES);
                let mut rest = futures::stream::iter(2..=pages)
                    .map(|n| async move { (n, self.page::<T>(path, n, what).await) })
                    .buffered(PAGE_LOOKAHEAD.min(self.concurrency));
                while let Some((n, p)) = rest.next().await {
                    let p = p?;
                    if !seen.insert(p.digest) {
                        looped(n);
                        break;
                    }
                    let short = (p.items.len() as u64) < per;
                    on_page(p.items);
                    if short {
                        break;
                    }
                }
            }
            None => {
                let (mut page, mut next) = (1, has_next);
                while next && page < MAX_PAGES {
                    page += 1;
                    let p = self.page::<T>(path, page, what).await?;
                    if !seen.insert(p.digest) {
                        looped(page);
                        break;
                    }
                    next = p.has_next && !p.items.is_empty();
                    on_page(p.items);
                }
            }
        }
        Ok(())
    }
}

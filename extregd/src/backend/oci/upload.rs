//! Pushing blobs: upload sessions (`POST .../blobs/uploads/`, then one
//! `PUT` with `digest=`), small blobs from memory and large ones streamed
//! from a file. Part of [`RegistryClient`]; the session's `Location` must be
//! on the registry's own origin (credentials go nowhere else).

use super::auth;
use super::client::{Endpoint, RegistryClient};
use crate::backend::BackendError;
use bytes::Bytes;
use futures::TryStreamExt;
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use reqwest::{Method, StatusCode, Url};
use std::sync::Arc;
use std::time::Duration;

/// Read size when streaming a file to the registry.
const UPLOAD_CHUNK: usize = 256 * 1024;

/// Told the bytes of an upload's body sent so far (progress).
pub type Sent = Arc<dyn Fn(u64) + Send + Sync>;

impl RegistryClient {
    /// Opens an upload session (`POST .../blobs/uploads/`) and returns its
    /// `Location` with `digest=` appended; it must be on the registry's own
    /// origin (credentials go nowhere else).
    async fn open_upload(&self, repo: &str, digest: &str) -> Result<Url, BackendError> {
        let what = format!("blob {digest} of {repo}");
        let req = self.req(
            Method::POST,
            Endpoint::Uploads(repo),
            auth::push_scope(repo),
            &what,
        );
        let resp = self.send_held(&req).await?;
        let location = resp
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                BackendError::Upstream(format!("the registry opened no upload session for {what}"))
            })?;
        let mut url = self.base.join(location).map_err(|_| {
            BackendError::Upstream(format!(
                "the registry sent a bad upload Location for {what}"
            ))
        })?;
        if url.origin() != self.base.origin() {
            return Err(BackendError::Upstream(format!(
                "the registry's upload Location for {what} is on another host; not sending credentials there"
            )));
        }
        url.query_pairs_mut().append_pair("digest", digest);
        Ok(url)
    }

    /// Uploads a small blob unless the repository already has it: `POST`
    /// an upload session, then `PUT` the bytes with `digest=`.
    pub async fn blob_push(
        &self,
        repo: &str,
        digest: &str,
        data: Bytes,
    ) -> Result<(), BackendError> {
        if self.blob_exists(repo, digest).await? {
            return Ok(());
        }
        let url = self.open_upload(repo, digest).await?;
        let what = format!("blob {digest} of {repo}");
        let mut put = self.req(
            Method::PUT,
            Endpoint::Uploads(repo),
            auth::push_scope(repo),
            &what,
        );
        put.url = url.to_string();
        put.headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        put.body = Some(data);
        self.send_held(&put).await.map(|_| ())
    }

    /// Uploads a file's bytes (`size` long, hashing to `digest`) unless the
    /// repository already has them, as one streamed `PUT` read
    /// [`UPLOAD_CHUNK`] bytes at a time (memory does not grow with the
    /// file). A refusal of the credentials mid-way (an expired token) opens
    /// a new session once.
    pub async fn blob_push_file(
        &self,
        repo: &str,
        digest: &str,
        size: u64,
        file: &std::fs::File,
    ) -> Result<(), BackendError> {
        self.blob_push_file_counted(repo, digest, size, file, Arc::new(|_| {}))
            .await
    }

    /// [`Self::blob_push_file`], calling `sent` with the bytes of the body
    /// handed to the connection so far (from 0 again if a new session is
    /// opened; `size` at once when the registry already has the blob).
    pub async fn blob_push_file_counted(
        &self,
        repo: &str,
        digest: &str,
        size: u64,
        file: &std::fs::File,
        sent: Sent,
    ) -> Result<(), BackendError> {
        if self.blob_exists(repo, digest).await? {
            sent(size);
            return Ok(());
        }
        let scope = auth::push_scope(repo);
        let what = format!("blob {digest} of {repo}");
        let mut attempt = 0;
        loop {
            let url = self.open_upload(repo, digest).await?;
            let mut file = file.try_clone()?;
            {
                use std::io::Seek;
                file.seek(std::io::SeekFrom::Start(0))?;
            }
            sent(0);
            let counter = sent.clone();
            let mut so_far = 0u64;
            let stream = tokio_util::io::ReaderStream::with_capacity(
                tokio::fs::File::from_std(file),
                UPLOAD_CHUNK,
            )
            .inspect_ok(move |chunk| {
                so_far += chunk.len() as u64;
                counter(so_far);
            });
            let mut req = self
                .http
                .put(url.as_str())
                .header(CONTENT_TYPE, "application/octet-stream")
                .header(CONTENT_LENGTH, size)
                // Large layers: the API timeout plus a second per MiB.
                .timeout(self.api_timeout() + Duration::from_secs(size >> 20))
                .body(reqwest::Body::wrap_stream(stream));
            if self.same_origin(url.as_str()) {
                if let Some(h) = self.auth.header_for(&scope) {
                    req = req.header(AUTHORIZATION, h);
                }
            }
            let resp = {
                let _permit = self.permit().await?;
                req.send()
                    .await
                    .map_err(|e| self.up.transport_error(e, &what))?
            };
            if resp.status().is_success() {
                return Ok(());
            }
            if resp.status() == StatusCode::UNAUTHORIZED && attempt == 0 {
                attempt += 1;
                self.auth.forget(&scope);
                continue;
            }
            return Err(self.status_error(resp, &what).await);
        }
    }
}

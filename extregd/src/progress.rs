//! Progress of the long local-socket requests (`Pull`, `Load`, `Publish`).
//!
//! The work reports into a [`ProgressTx`] (a `watch` channel: only the
//! latest state matters); the connection forwards it to the client as
//! `Response::Progress` frames with the request's id, at most every
//! [`FRAME_INTERVAL`] and on each phase change, before the final answer.
//! Callers without a client (REST) pass [`ProgressTx::none`].

use crate::artifacts::{ArtifactHandle, Fetched, Growing};
use crate::backend::VersionEntry;
use crate::catalogue::Catalogue;
use crate::error::Error;
use extreg_shared::protocol::{Phase, ProgressEvent};
use std::time::Duration;
use tokio::sync::watch;

/// Least time between two progress frames of one request (phase changes
/// are sent at once).
pub const FRAME_INTERVAL: Duration = Duration::from_millis(100);

/// Where a long request reports how far it has come.
#[derive(Clone, Default)]
pub struct ProgressTx(Option<std::sync::Arc<watch::Sender<Option<ProgressEvent>>>>);

impl ProgressTx {
    /// A sink that drops everything.
    pub fn none() -> ProgressTx {
        ProgressTx(None)
    }

    /// A sink and the receiver the connection forwards from.
    pub fn channel() -> (ProgressTx, watch::Receiver<Option<ProgressEvent>>) {
        let (tx, rx) = watch::channel(None);
        (ProgressTx(Some(std::sync::Arc::new(tx))), rx)
    }

    pub fn send(&self, phase: Phase, done: u64, total: Option<u64>) {
        if let Some(tx) = &self.0 {
            let ev = ProgressEvent { phase, done, total };
            tx.send_if_modified(|cur| {
                if cur.as_ref() == Some(&ev) {
                    false
                } else {
                    *cur = Some(ev);
                    true
                }
            });
        }
    }
}

/// Follows a download in progress, reporting bytes received (`Download`)
/// and then `Verify` once every announced byte is in, until it ends.
pub async fn follow(g: Growing, progress: &ProgressTx) -> Result<ArtifactHandle, Error> {
    let mut rx = g.progress();
    loop {
        let p = rx.borrow_and_update().clone();
        if p.done.is_some() {
            drop(rx);
            return g.finished().await;
        }
        if p.started {
            let phase = match p.size {
                Some(n) if p.written >= n => Phase::Verify,
                _ => Phase::Download,
            };
            progress.send(phase, p.written, p.size);
        }
        if rx.changed().await.is_err() {
            drop(g);
            return Err(Error::internal("the download task ended unexpectedly"));
        }
    }
}

/// The artifact of a resolved entry (like `Catalogue::artifact_of`) for a
/// socket client, reporting the download's progress.
pub async fn artifact(
    reg: &Catalogue,
    entry: &VersionEntry,
    force: bool,
    progress: &ProgressTx,
) -> Result<ArtifactHandle, Error> {
    let backend = reg
        .backends()
        .iter()
        .find(|b| b.source() == entry.record.source)
        .cloned()
        .ok_or_else(|| Error::internal("no backend for this version's source"))?;
    // Cancellable: when this client hangs up (its request is dropped) and
    // no one else waits, the download stops.
    match reg
        .artifacts()
        .fetch_or_join_cancellable(entry, backend, force)?
    {
        Fetched::Ready(a) => Ok(a),
        Fetched::Growing(g) => follow(g, progress).await,
    }
}

/// A generic OCI artifact (a KCL package) for a socket client: cached,
/// or downloaded and verified against its layer digest, reporting the
/// download's progress; a cached copy is hashed again unless known good.
pub async fn generic(
    store: &std::sync::Arc<crate::artifacts::ArtifactStore>,
    oci: std::sync::Arc<crate::backend::oci::OciBackend>,
    located: &crate::backend::oci::generic::Located,
    progress: &ProgressTx,
) -> Result<ArtifactHandle, Error> {
    let handle = match store.fetch_or_join_generic(located, oci)? {
        Fetched::Ready(a) => a,
        Fetched::Growing(g) => follow(g, progress).await?,
    };
    progress.send(Phase::Verify, handle.size, Some(handle.size));
    handle.verified().await
}

//! Group commit: many concurrent appends, one transaction.
//!
//! Appends are serialized by the log head lock (ADR 2), so one transaction per
//! command would cap throughput at one commit (and fsync) at a time. The
//! [`GroupCommitter`] funnels appends from many tasks to one writer, which takes
//! whatever has queued while the previous transaction committed and appends it
//! all with [`EventStore::append_batch`]: each request still gets its own
//! expected-version check and its own result, but they share one commit.

use tokio::sync::{mpsc, oneshot};
use tracing::warn;

use crate::model::{AppendRequest, AppendResult};
use crate::{EventStore, StoreError};

struct Pending {
    request: AppendRequest,
    reply: oneshot::Sender<Result<AppendResult, StoreError>>,
}

/// A handle to the group-commit writer. Cheap to clone; the writer stops when
/// the last handle is dropped, after finishing what was queued.
#[derive(Clone)]
pub struct GroupCommitter {
    tx: mpsc::Sender<Pending>,
}

impl std::fmt::Debug for GroupCommitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommitter").finish_non_exhaustive()
    }
}

impl GroupCommitter {
    /// Starts the writer (on the current tokio runtime). `max_batch` bounds the
    /// requests in one transaction.
    pub fn start(store: EventStore, max_batch: usize) -> Self {
        let max_batch = max_batch.max(1);
        let (tx, mut rx) = mpsc::channel::<Pending>(max_batch * 4);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(max_batch);
            while let Some(first) = rx.recv().await {
                batch.push(first);
                while batch.len() < max_batch {
                    match rx.try_recv() {
                        Ok(p) => batch.push(p),
                        Err(_) => break,
                    }
                }
                let (requests, replies): (Vec<_>, Vec<_>) =
                    batch.drain(..).map(|p| (p.request, p.reply)).unzip();
                metrics::histogram!("shopfloor_group_commit_batch_size")
                    .record(requests.len() as f64);
                match store.append_batch(requests).await {
                    Ok(results) => {
                        for (reply, result) in replies.into_iter().zip(results) {
                            let _ = reply.send(result);
                        }
                    }
                    Err(e) => {
                        warn!(error = %e, "group commit failed; nothing of it was written");
                        let message = e.to_string();
                        for reply in replies {
                            let _ = reply.send(Err(StoreError::Unavailable(message.clone())));
                        }
                    }
                }
            }
        });
        Self { tx }
    }

    /// Appends one request as part of the next group.
    pub async fn append(&self, request: AppendRequest) -> Result<AppendResult, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Pending { request, reply })
            .await
            .map_err(|_| StoreError::Unavailable("the group-commit writer has stopped".into()))?;
        rx.await
            .map_err(|_| StoreError::Unavailable("the group-commit writer has stopped".into()))?
    }
}

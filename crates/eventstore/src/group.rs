//! Group commit: many concurrent appends, few transactions, one round trip each.
//!
//! Appends are serialized by the log head lock (ADR 2), so one transaction per
//! command would cap throughput at one commit (and fsync) at a time. The
//! [`GroupCommitter`] funnels appends from many tasks to one writer, which takes
//! whatever has queued and appends it as one batch: each request still gets its
//! own expected-version check and its own result, but they share one commit.
//!
//! # One round trip per batch (ADR 14)
//! The writer remembers the log head its last batch left (the *tip*) and lays the
//! next batch out on top of it: positions, versions and the hash chain are
//! computed here, and the batch goes to PostgreSQL as one statement
//! (`shopfloor_append`) that checks, under the head lock, that the head is still
//! that tip and every stream is where the batch expects it, then inserts and
//! commits. The head lock is held for one statement and its commit, not for five
//! client round trips.
//!
//! If that statement refuses the batch (another process appended, a stream moved,
//! an event id was used before, a lost connection), nothing of it was written and
//! the writer redoes it as the lock-lookup-insert transaction of
//! [`EventStore::append_batch`], which gives every request its precise result
//! (conflict, duplicate, appended); the next batch starts from the head that
//! transaction saw. The first batch always goes that way, to learn the head.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

use crate::model::{AppendRequest, AppendResult};
use crate::store::{Prepared, Tip};
use crate::{EventStore, StoreError};

type Reply = oneshot::Sender<Result<AppendResult, StoreError>>;

struct Pending {
    request: AppendRequest,
    reply: Reply,
}

/// A handle to the group-commit writer. Cheap to clone; the writer stops when
/// the last handle is dropped, after finishing what was queued.
#[derive(Clone)]
pub struct GroupCommitter {
    tx: mpsc::Sender<Pending>,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for GroupCommitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommitter").finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Counters {
    batches: AtomicU64,
    requests: AtomicU64,
    fallbacks: AtomicU64,
    busy_micros: AtomicU64,
}

/// What the writer has done so far (for benchmarks and diagnostics).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct GroupStats {
    /// Batches written.
    pub batches: u64,
    /// Requests they carried.
    pub requests: u64,
    /// Batches that went through the lock-lookup-insert transaction (the first
    /// one, and any whose one-statement append failed).
    pub fallbacks: u64,
    /// Time spent appending batches, in seconds.
    pub busy_secs: f64,
}

impl GroupStats {
    /// What was done after `earlier` was taken.
    pub fn since(&self, earlier: &GroupStats) -> GroupStats {
        GroupStats {
            batches: self.batches - earlier.batches,
            requests: self.requests - earlier.requests,
            fallbacks: self.fallbacks - earlier.fallbacks,
            busy_secs: self.busy_secs - earlier.busy_secs,
        }
    }

    /// Requests per batch, on average.
    pub fn mean_batch(&self) -> f64 {
        self.requests as f64 / self.batches.max(1) as f64
    }

    /// Milliseconds from sending a batch to its commit, on average.
    pub fn mean_transaction_ms(&self) -> f64 {
        self.busy_secs * 1000.0 / self.batches.max(1) as f64
    }
}

impl GroupCommitter {
    /// Starts the writer (on the current tokio runtime). `max_batch` bounds the
    /// requests in one batch.
    pub fn start(store: EventStore, max_batch: usize) -> Self {
        let max_batch = max_batch.max(1);
        let (tx, rx) = mpsc::channel::<Pending>(max_batch * 4);
        let counters = Arc::new(Counters::default());
        let writer = Writer {
            store,
            counters: counters.clone(),
            tip: None,
        };
        tokio::spawn(writer.run(rx, max_batch));
        Self { tx, counters }
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

    /// What the writer has done so far.
    pub fn stats(&self) -> GroupStats {
        let c = &self.counters;
        GroupStats {
            batches: c.batches.load(Ordering::Relaxed),
            requests: c.requests.load(Ordering::Relaxed),
            fallbacks: c.fallbacks.load(Ordering::Relaxed),
            busy_secs: c.busy_micros.load(Ordering::Relaxed) as f64 / 1e6,
        }
    }
}

struct Writer {
    store: EventStore,
    counters: Arc<Counters>,
    /// The log head after the last batch, when known.
    tip: Option<Tip>,
}

impl Writer {
    async fn run(mut self, mut rx: mpsc::Receiver<Pending>, max_batch: usize) {
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
            self.counters.batches.fetch_add(1, Ordering::Relaxed);
            self.counters
                .requests
                .fetch_add(requests.len() as u64, Ordering::Relaxed);
            metrics::histogram!("shopfloor_group_commit_batch_size").record(requests.len() as f64);
            let started = Instant::now();
            let requests = match self.tip.take() {
                Some(tip) => match Prepared::new(requests, &tip, Utc::now()) {
                    Ok(prepared) => match self.store.append_prepared(&prepared).await {
                        Ok(()) => {
                            self.add_busy(started);
                            for (reply, result) in replies.into_iter().zip(prepared.results()) {
                                let _ = reply.send(result);
                            }
                            self.tip = Some(prepared.after);
                            continue;
                        }
                        Err(e) => {
                            debug!(error = %e, "one-statement append refused; redoing the batch");
                            prepared.requests
                        }
                    },
                    Err(requests) => requests,
                },
                None => requests,
            };
            self.fall_back(requests, replies).await;
        }
    }

    /// Appends a batch with the lock-lookup-insert transaction.
    async fn fall_back(&mut self, requests: Vec<AppendRequest>, replies: Vec<Reply>) {
        self.counters.fallbacks.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let appended = self.store.append_batch_tip(&requests).await;
        self.add_busy(started);
        match appended {
            Ok((results, tip)) => {
                self.tip = Some(tip);
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

    fn add_busy(&self, started: Instant) {
        self.counters.busy_micros.fetch_add(
            u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }
}

//! Group commit: many concurrent appends, few transactions, one round trip each.
//!
//! Appends are serialized by the log head lock (ADR 2), so one transaction per
//! command would cap throughput at one commit (and fsync) at a time. The
//! [`GroupCommitter`] funnels appends from many tasks to one writer, which takes
//! whatever has queued and appends it as one batch: each request still gets its
//! own expected-version check and its own result, but they share one commit.
//!
//! # Units (ADR 0035)
//! A caller hands the writer all-or-nothing *units* of requests
//! ([`GroupCommitter::append_units`]): an HTTP batch across machines is one unit, each
//! stream of an ingest batch another. A unit is written whole or not at all; units of
//! one batch stand on their own. When a commit is cut off (a lost connection), the
//! writer retries the same batch for up to 15 s (`SETTLE_FOR`) — the event ids are fixed, so
//! a commit that happened is found — before telling its callers the outcome is unknown.
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
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

use crate::model::{AppendRequest, AppendResult};
use crate::store::{Prepared, Tip};
use crate::{EventStore, StoreError};

/// How long a cut-off commit is retried before its outcome is reported unknown.
const SETTLE_FOR: Duration = Duration::from_secs(15);

/// Every request's result, in the unit's order.
type Reply = oneshot::Sender<Vec<Result<AppendResult, StoreError>>>;

/// One all-or-nothing unit of requests, and where its answer goes.
struct Pending {
    requests: Vec<AppendRequest>,
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
            settle_for: SETTLE_FOR,
        };
        tokio::spawn(writer.run(rx, max_batch));
        Self { tx, counters }
    }

    /// Appends one request as part of the next group.
    pub async fn append(&self, request: AppendRequest) -> Result<AppendResult, StoreError> {
        let mut done = self.append_all(vec![request]).await?;
        done.pop()
            .ok_or_else(|| StoreError::Invalid("an append without a result".into()))
    }

    /// Appends `requests` as one all-or-nothing unit of the next group: every one
    /// of them, or (on the first refusal, which is returned) none.
    pub async fn append_all(
        &self,
        requests: Vec<AppendRequest>,
    ) -> Result<Vec<AppendResult>, StoreError> {
        let n = requests.len();
        unit_result(self.append_units(vec![requests]).await, n)
    }

    /// Appends several all-or-nothing units, queued in this order (so units of one
    /// stream reach the writer in the order given). Returns every request's result,
    /// in order: within a refused unit, the refusal, [`StoreError::Aborted`] for
    /// the requests it kept out, and the original result of any request that was
    /// appended before (a duplicate).
    pub async fn append_units(
        &self,
        units: Vec<Vec<AppendRequest>>,
    ) -> Vec<Result<AppendResult, StoreError>> {
        let stopped = || StoreError::Unavailable("the group-commit writer has stopped".into());
        let mut waiting = Vec::with_capacity(units.len());
        for requests in units {
            let n = requests.len();
            if n == 0 {
                continue;
            }
            let (reply, rx) = oneshot::channel();
            let sent = self.tx.send(Pending { requests, reply }).await;
            waiting.push((n, sent.ok().map(|()| rx)));
        }
        let mut results = Vec::new();
        for (n, rx) in waiting {
            match rx {
                Some(rx) => match rx.await {
                    Ok(unit) => results.extend(unit),
                    Err(_) => results.extend((0..n).map(|_| Err(stopped()))),
                },
                None => results.extend((0..n).map(|_| Err(stopped()))),
            }
        }
        results
    }

    /// Appends waiting for the writer (not yet taken into a batch).
    pub fn queued(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
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
    /// How long a batch whose commit was cut off is retried, to settle whether it
    /// was written, before its callers are told the outcome is unknown.
    settle_for: Duration,
}

/// A batch taken from the queue: the units' requests, laid end to end.
struct Batch {
    requests: Vec<AppendRequest>,
    units: Vec<usize>,
    replies: Vec<Reply>,
}

impl Batch {
    /// Sends each unit its requests' results.
    fn answer(self, results: Vec<Result<AppendResult, StoreError>>) {
        let mut results = results.into_iter();
        for (&size, reply) in self.units.iter().zip(self.replies) {
            let _ = reply.send(results.by_ref().take(size).collect());
        }
    }

    /// Sends every request the failure that ended the batch, as it reads to each
    /// ([`StoreError::shared`]).
    fn fail(self, error: &StoreError, cut_off: bool) {
        for (&size, reply) in self.units.iter().zip(self.replies) {
            let _ = reply.send((0..size).map(|_| Err(error.shared(cut_off))).collect());
        }
    }

    /// One batch per unit, so that a failure that is not transient (a value
    /// PostgreSQL refuses, say) reaches only the unit that caused it.
    fn split(self) -> Vec<Batch> {
        let mut requests = self.requests.into_iter();
        self.units
            .into_iter()
            .zip(self.replies)
            .map(|(size, reply)| Batch {
                requests: requests.by_ref().take(size).collect(),
                units: vec![size],
                replies: vec![reply],
            })
            .collect()
    }
}

/// A unit's answer as one result: every request's, or the refusal that kept the
/// unit out (not the [`StoreError::Aborted`] of its innocent companions).
pub(crate) fn unit_result(
    unit: Vec<Result<AppendResult, StoreError>>,
    expected: usize,
) -> Result<Vec<AppendResult>, StoreError> {
    if unit.len() == expected && unit.iter().all(Result::is_ok) {
        return Ok(unit.into_iter().flatten().collect());
    }
    let mut aborted = None;
    for r in unit {
        match r {
            Err(StoreError::Aborted { failed }) => aborted = Some(StoreError::Aborted { failed }),
            Err(e) => return Err(e),
            Ok(_) => {}
        }
    }
    Err(aborted.unwrap_or_else(|| StoreError::Invalid("a unit without all its results".into())))
}

impl Writer {
    async fn run(mut self, mut rx: mpsc::Receiver<Pending>, max_batch: usize) {
        while let Some(first) = rx.recv().await {
            let mut batch = Batch {
                requests: Vec::with_capacity(max_batch),
                units: Vec::new(),
                replies: Vec::new(),
            };
            let mut next = Some(first);
            while let Some(p) = next.take() {
                batch.units.push(p.requests.len());
                batch.requests.extend(p.requests);
                batch.replies.push(p.reply);
                if batch.requests.len() < max_batch {
                    next = rx.try_recv().ok();
                }
            }
            self.counters.batches.fetch_add(1, Ordering::Relaxed);
            self.counters
                .requests
                .fetch_add(batch.requests.len() as u64, Ordering::Relaxed);
            metrics::histogram!("shopfloor_group_commit_batch_size")
                .record(batch.requests.len() as f64);
            self.write(batch).await;
        }
    }

    /// Appends a batch in one statement on the known tip, else through the
    /// lock-lookup-insert transaction.
    async fn write(&mut self, mut batch: Batch) {
        let started = Instant::now();
        let mut cut_off = false;
        if let Some(tip) = self.tip.take() {
            let requests = std::mem::take(&mut batch.requests);
            match Prepared::new(requests, &tip, Utc::now()) {
                Ok(prepared) => match self.store.append_prepared(&prepared).await {
                    Ok(()) => {
                        self.add_busy(started);
                        self.tip = Some(prepared.after.clone());
                        batch.answer(prepared.results());
                        return;
                    }
                    Err(e) => {
                        debug!(error = %e, "one-statement append refused; redoing the batch");
                        // A statement cut off may have committed: the redo settles it.
                        cut_off = e.is_transient();
                        batch.requests = prepared.requests;
                    }
                },
                Err(requests) => batch.requests = requests,
            }
        }
        self.fall_back(batch, cut_off).await;
    }

    /// Appends a batch with the lock-lookup-insert transaction. A transient
    /// failure is retried (the event ids are fixed, so a redo after a commit that
    /// did happen finds them and writes nothing) until the store answers or
    /// `settle_for` has passed; only then is the batch failed: as unknown when a
    /// commit may have happened, as unavailable when none can have.
    async fn fall_back(&mut self, batch: Batch, cut_off: bool) {
        let mut queue = vec![(batch, cut_off)];
        while let Some((batch, cut_off)) = queue.pop() {
            if let Some((batch, cut_off)) = self.settle(batch, cut_off).await {
                // In reverse, so the units are retried in the order they came.
                queue.extend(batch.split().into_iter().rev().map(|b| (b, cut_off)));
            }
        }
    }

    /// Appends one batch, retrying a transient failure until `settle_for` has
    /// passed. A batch of several units that fails otherwise is handed back, to
    /// be retried unit by unit; every other outcome is answered here.
    async fn settle(&mut self, batch: Batch, mut cut_off: bool) -> Option<(Batch, bool)> {
        self.counters.fallbacks.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let deadline = started + self.settle_for;
        let mut delay = Duration::from_millis(20);
        loop {
            let appended = self
                .store
                .append_batch_tip(&batch.requests, &batch.units)
                .await;
            let e = match appended {
                Ok((results, tip)) => {
                    self.add_busy(started);
                    self.tip = Some(tip);
                    batch.answer(results);
                    return None;
                }
                Err(e) => e,
            };
            cut_off |= matches!(e, StoreError::UnknownOutcome(_));
            if !e.is_transient() && batch.replies.len() > 1 {
                self.add_busy(started);
                debug!(error = %e, units = batch.replies.len(), "group commit refused; retrying unit by unit");
                return Some((batch, cut_off));
            }
            if !e.is_transient() || Instant::now() + delay > deadline {
                self.add_busy(started);
                warn!(error = %e, cut_off, "group commit failed");
                batch.fail(&e, cut_off);
                return None;
            }
            debug!(error = %e, "group commit interrupted; retrying to settle it");
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_millis(500));
        }
    }

    fn add_busy(&self, started: Instant) {
        self.counters.busy_micros.fetch_add(
            u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }
}

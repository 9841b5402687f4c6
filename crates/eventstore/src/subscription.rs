//! A catch-up subscription over the global log: history first, then live events.
//!
//! The subscription `LISTEN`s before it reads anything, then pages through
//! `position > last` until it is caught up, and then waits for a `NOTIFY` from a
//! commit (or, as a safety net for a lost notification, a slow poll). Every wake
//! reads from the last position delivered, so the switch from history to live
//! has no gap (the listener was up before the last page was read) and no
//! duplicate (we only ever read past the last delivered position).

use std::collections::VecDeque;
use std::time::Duration;

use sqlx::postgres::PgListener;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::model::{EventFilter, RecordedEvent};
use crate::store::{EventStore, NOTIFY_CHANNEL};
use crate::StoreError;

/// Delivers every event after a position, in position order, exactly once.
pub struct Subscription {
    store: EventStore,
    listener: Option<PgListener>,
    buffer: VecDeque<RecordedEvent>,
    /// Position of the last event handed out.
    position: i64,
    /// With a filter: how far the log has been read (events skipped included).
    scanned: i64,
    filter: Option<EventFilter>,
    page_size: usize,
    /// How long to wait for a notification before reading anyway.
    poll_interval: Duration,
    cancel: CancellationToken,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("position", &self.position)
            .field("buffered", &self.buffer.len())
            .finish()
    }
}

impl EventStore {
    /// Subscribes to the global log from just after `after` (0: from the start).
    /// The subscription ends (`next` returns `None`) when `cancel` fires.
    pub fn subscribe_all(&self, after: i64, cancel: CancellationToken) -> Subscription {
        Subscription {
            store: self.clone(),
            listener: None,
            buffer: VecDeque::new(),
            position: after,
            scanned: after,
            filter: None,
            page_size: 1_000,
            poll_interval: Duration::from_secs(5),
            cancel,
        }
    }
}

impl Subscription {
    /// Sets how many events one read fetches.
    pub fn page_size(mut self, n: usize) -> Self {
        self.page_size = n.max(1);
        self
    }

    /// Delivers only the events `filter` lets through; the others are skipped in the
    /// database (never read), so a reader of a few event types does not pay for the rest
    /// of the log.
    pub fn filter(mut self, filter: EventFilter) -> Self {
        self.filter = Some(filter);
        self
    }

    /// Sets the safety-net poll interval used when no notification comes.
    pub fn poll_interval(mut self, d: Duration) -> Self {
        self.poll_interval = d;
        self
    }

    /// The position of the last event delivered.
    pub fn position(&self) -> i64 {
        self.position
    }

    /// The next event, `None` once cancelled. An error (the database went away)
    /// leaves the subscription usable: the next call resumes after the last
    /// event delivered.
    pub async fn next(&mut self) -> Option<Result<RecordedEvent, StoreError>> {
        loop {
            if self.cancel.is_cancelled() {
                return None;
            }
            if let Some(event) = self.buffer.pop_front() {
                self.position = event.position;
                return Some(Ok(event));
            }
            if self.listener.is_none() {
                match self.listen().await {
                    Ok(l) => self.listener = Some(l),
                    Err(e) => return Some(Err(e)),
                }
            }
            let page = tokio::select! {
                _ = self.cancel.cancelled() => return None,
                page = self.read_page() => page,
            };
            let page = page.map(|(page, scanned)| {
                if let Some(scanned) = scanned {
                    self.scanned = scanned;
                }
                page
            });
            match page {
                Ok(page) if !page.is_empty() => {
                    self.buffer.extend(page);
                    continue;
                }
                Ok(_) => {}
                Err(e) => return Some(Err(e)),
            }
            // Caught up: wait for a commit.
            let Some(listener) = self.listener.as_mut() else {
                continue;
            };
            tokio::select! {
                _ = self.cancel.cancelled() => return None,
                // Any outcome leads to a fresh read: a notification, or `Ok(None)`
                // when the connection dropped (sqlx reconnects it on the next call
                // and notifications sent meanwhile are lost, hence the re-read).
                n = listener.try_recv() => {
                    if let Err(e) = n {
                        warn!(error = %e, "event notification listener failed; reconnecting");
                        self.listener = None;
                    }
                }
                _ = tokio::time::sleep(self.poll_interval) => {}
            }
        }
    }

    /// The next events, as many as are already at hand up to `max` (at least one;
    /// waits for the first). `None` once cancelled.
    pub async fn next_batch(
        &mut self,
        max: usize,
    ) -> Option<Result<Vec<RecordedEvent>, StoreError>> {
        let first = match self.next().await? {
            Ok(e) => e,
            Err(e) => return Some(Err(e)),
        };
        let mut out = vec![first];
        while out.len() < max {
            let Some(e) = self.buffer.pop_front() else {
                break;
            };
            self.position = e.position;
            out.push(e);
        }
        Some(Ok(out))
    }

    /// The next page after what has been delivered (or, with a filter, scanned), and
    /// with a filter how far the log has now been scanned.
    async fn read_page(&self) -> Result<(Vec<RecordedEvent>, Option<i64>), StoreError> {
        let Some(filter) = &self.filter else {
            let page = self.store.read_all(self.position, self.page_size).await?;
            return Ok((page, None));
        };
        let after = self.position.max(self.scanned);
        let (page, scanned) = self
            .store
            .read_all_filtered(after, self.page_size, filter)
            .await?;
        Ok((page, Some(scanned)))
    }

    async fn listen(&self) -> Result<PgListener, StoreError> {
        let mut listener = PgListener::connect_with(self.store.pool()).await?;
        listener.listen(NOTIFY_CHANNEL).await?;
        Ok(listener)
    }
}

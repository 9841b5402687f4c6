//! The relay: the committed event log, in global order, to JetStream.
//!
//! Never publish from the command path after commit — a crash between commit and
//! publish would lose the event (DESIGN.md). The relay instead tails the store
//! with a catch-up subscription and publishes each event to
//! `{ns}.events.{stream_type}.{stream_id}` in the stream `{ns}_EVENTS`, with the
//! event id as `Nats-Msg-Id` and the position and event type in headers.
//!
//! # Guarantees
//! - **At least once, in order.** Publishes are pipelined (a batch is sent, then
//!   all acks awaited); the checkpoint in PostgreSQL moves only after every ack up
//!   to it. A failure restarts from the checkpoint. Republished events are
//!   deduplicated by JetStream within its window and by the projectors always.
//! - **One active relay per namespace, fenced** (ADR 0043). A session advisory
//!   lock elects it; a second instance stands by until the lock is free. The
//!   active relay checks, on the lock's own session, that it still holds the lock
//!   before each batch, and moves its checkpoint only in a transaction on that
//!   session that checks it again: a relay whose PostgreSQL session died cannot
//!   move the checkpoint and stops before its next publish. What it may still have
//!   in flight is deduplicated by JetStream (the event id is the `Nats-Msg-Id`,
//!   within the stream's 2-minute duplicate window) and by the projectors.
//! - **A JetStream leader election is ridden out**, not handed over: a failed
//!   batch is published again (idempotent by message id) with a bounded back-off
//!   for up to [`RIDE_OUT`], the lock kept and checked between attempts; JetStream
//!   requests time out after [`PUBLISH_TIMEOUT`] so no attempt hangs. Past that, the
//!   relay still keeps its lock and resumes from its checkpoint: a standby could
//!   not do better against the same NATS.
//! - **NATS losing its tail** (it acknowledges before it fsyncs): the checkpoint
//!   records the JetStream sequence of the last ack; when the stream's last
//!   sequence is below it, the relay rewinds to the position of the stream's last
//!   message (or to the start) and republishes. PostgreSQL is the source of truth.
//! - **NATS down:** publishing fails, the relay backs off and resumes.
//! - **The plant calendar** (settings, not events; ADR 0061 amendment): with
//!   [`Relay::with_calendar`] (the `relay` role) the active relay also publishes it
//!   whole to `{ns}.settings.calendar` in the same stream, when it starts leading
//!   and whenever its fingerprint (checked every [`CALENDAR_EVERY`]) changed, for
//!   the plant group. A failure there is logged and retried; it never holds up the
//!   events.

use std::time::Duration;

use async_nats::jetstream::{self, context::Publish, stream};
use bytes::Bytes;
use shopfloor_eventstore::{
    leader, Checkpoint, CheckpointError, EventStore, LeaderError, LeaderFlag, Leadership, Reader,
    RecordedEvent, StoreError,
};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, instrument, warn};

use crate::{calendar_sync, names};

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("event store: {0}")]
    Store(#[from] StoreError),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("JetStream: {0}")]
    JetStream(String),
    #[error("checkpoint: {0}")]
    Checkpoint(#[from] CheckpointError),
    #[error("JetStream sequence {0} is out of range")]
    Sequence(String),
    #[error("event {0} cannot be serialized: {1}")]
    Encode(i64, serde_json::Error),
    #[error(transparent)]
    Leader(#[from] LeaderError),
}

impl RelayError {
    /// Only NATS failed: the lock is kept and the relay resumes.
    fn is_jetstream(&self) -> bool {
        matches!(self, RelayError::JetStream(_))
    }
}

/// How long one JetStream request of a projector (consumer, stream info) may take.
pub const JS_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one JetStream request of the relay (a publish's ack, stream info) may
/// take: an ack normally takes milliseconds, and a publish sent while the stream has
/// no leader is never answered, so this bounds how long the relay waits past the
/// election. A spurious timeout only costs an idempotent republish.
pub const PUBLISH_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a failed batch is retried in place (JetStream needs about 5 s to
/// elect a new stream leader).
pub const RIDE_OUT: Duration = Duration::from_secs(20);

/// How often the active relay checks the plant calendar's fingerprint (one small
/// query) and publishes the calendar when it changed.
pub const CALENDAR_EVERY: Duration = Duration::from_secs(2);

fn js_err(e: impl std::fmt::Display) -> RelayError {
    RelayError::JetStream(e.to_string())
}

/// Where the relay stands: its [`Checkpoint`] in the log, and the JetStream
/// sequence of the last acknowledged publish (kept beside it in
/// `relay_checkpoints`, to notice NATS losing its tail).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayCheckpoint {
    pub checkpoint: Checkpoint,
    pub js_sequence: u64,
}

impl RelayCheckpoint {
    /// The position of the last event published and acknowledged.
    pub fn position(&self) -> i64 {
        self.checkpoint.position()
    }
}

/// The relay of one namespace.
#[derive(Clone)]
pub struct Relay {
    store: EventStore,
    jetstream: jetstream::Context,
    namespace: String,
    /// Most events published before waiting for their acks.
    batch: usize,
    /// Back-off after a failure.
    retry: Duration,
    /// Replicas of the stream (created or updated with them).
    replicas: usize,
    /// Raised while this instance is the active relay.
    flag: LeaderFlag,
    /// How often the plant calendar's fingerprint is checked; None: the calendar is
    /// not published.
    calendar_every: Option<Duration>,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl Relay {
    pub fn new(store: EventStore, nats: async_nats::Client, namespace: impl Into<String>) -> Self {
        let mut jetstream = jetstream::new(nats);
        jetstream.set_timeout(PUBLISH_TIMEOUT);
        Self {
            store,
            jetstream,
            namespace: namespace.into(),
            batch: 1_000,
            retry: Duration::from_secs(1),
            replicas: 1,
            flag: LeaderFlag::new("relay"),
            calendar_every: None,
        }
    }

    /// The stream's replicas (`SHOPFLOOR_STREAM_REPLICAS`).
    pub fn with_replicas(mut self, n: usize) -> Self {
        self.replicas = n.max(1);
        self
    }

    /// Shows this instance's leadership in `flag` (shared with `/readyz`).
    pub fn with_flag(mut self, flag: LeaderFlag) -> Self {
        self.flag = flag;
        self
    }

    /// Also publishes the plant calendar on `{ns}.settings.calendar`, checked every
    /// [`CALENDAR_EVERY`] (the `relay` role does; for the plant group, ADR 0061).
    pub fn with_calendar(mut self) -> Self {
        self.calendar_every = Some(CALENDAR_EVERY);
        self
    }

    pub fn with_batch(mut self, n: usize) -> Self {
        self.batch = n.max(1);
        self
    }

    pub fn with_retry(mut self, d: Duration) -> Self {
        self.retry = d;
        self
    }

    fn pool(&self) -> &PgPool {
        self.store.pool()
    }

    /// Runs until `cancel` fires: waits to be the active relay, then publishes.
    /// A NATS failure keeps the lock (the relay resumes from its checkpoint); a
    /// lost lock or PostgreSQL failure gives it up.
    pub async fn run(&self, cancel: CancellationToken) {
        loop {
            let flag = Some(self.flag.clone());
            let lock = Leadership::acquire_flagged(
                self.pool(),
                &self.lock_key(),
                self.retry,
                &cancel,
                flag,
            )
            .await;
            let Some(mut lock) = lock else { return };
            info!(namespace = %self.namespace, "relay active");
            let outcome = loop {
                match self.lead(&mut lock, &cancel).await {
                    Err(e) if e.is_jetstream() => {
                        warn!(error = %e, "JetStream failed; keeping the lead and resuming");
                        metrics::counter!("shopfloor_relay_failures_total").increment(1);
                        tokio::select! {
                            _ = cancel.cancelled() => break Ok(()),
                            _ = tokio::time::sleep(self.retry) => {}
                        }
                        if let Err(e) = lock.check().await {
                            break Err(RelayError::from(e));
                        }
                    }
                    other => break other,
                }
            };
            lock.release().await;
            match outcome {
                Ok(()) => return,
                Err(e) => {
                    warn!(error = %e, "relay stepped down; resuming from its checkpoint");
                    metrics::counter!("shopfloor_relay_failures_total").increment(1);
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = tokio::time::sleep(self.retry) => {}
                    }
                }
            }
        }
    }

    fn lock_key(&self) -> String {
        format!("shopfloor-relay:{}", self.namespace)
    }

    /// Makes sure the JetStream stream exists, with the asked replicas.
    pub async fn ensure_stream(&self) -> Result<stream::Stream, RelayError> {
        names::ensure_events_stream(&self.jetstream, &self.namespace, self.replicas)
            .await
            .map_err(js_err)
    }

    /// Where the relay stands (at 0 when it never published).
    pub async fn checkpoint(&self) -> Result<RelayCheckpoint, RelayError> {
        load(self.pool(), &self.namespace).await
    }

    /// The checkpoint, rewound if JetStream lost messages we had published.
    async fn reconcile(
        &self,
        stream: &mut stream::Stream,
        lock: &mut Leadership,
    ) -> Result<RelayCheckpoint, RelayError> {
        let mut checkpoint = self.checkpoint().await?;
        let last = stream.info().await.map_err(js_err)?.state.last_sequence;
        if last >= checkpoint.js_sequence {
            return Ok(checkpoint);
        }
        let position = if last == 0 {
            0
        } else {
            let msg = stream.get_raw_message(last).await.map_err(js_err)?;
            // A value from NATS, not the database: a last message without a
            // readable position (not one of ours) means republishing from the
            // start, the safe side (the projectors skip what they hold).
            msg.headers
                .get(names::POSITION_HEADER)
                .and_then(|v| v.as_str().parse::<i64>().ok())
                .unwrap_or(0)
                .min(checkpoint.position())
        };
        warn!(
            namespace = %self.namespace,
            stream_last_sequence = last,
            acknowledged_sequence = checkpoint.js_sequence,
            from_position = position,
            "JetStream lost its tail; republishing from the event store"
        );
        metrics::counter!("shopfloor_relay_rewinds_total").increment(1);
        let mut tx = lock.fenced().await?;
        save_in(&mut tx, &mut checkpoint, position, last, Move::Rewind).await?;
        tx.commit().await?;
        Ok(checkpoint)
    }

    /// Publishes from the checkpoint on, until cancelled (Ok) or a failure (Err).
    #[instrument(skip_all, fields(namespace = %self.namespace))]
    async fn lead(
        &self,
        lock: &mut Leadership,
        cancel: &CancellationToken,
    ) -> Result<(), RelayError> {
        let mut stream = self.ensure_stream().await?;
        let mut checkpoint = self.reconcile(&mut stream, lock).await?;
        let sub_cancel = cancel.child_token();
        let _stop_subscription = sub_cancel.clone().drop_guard();
        let mut subscription = self
            .store
            .subscribe_all(checkpoint.position(), sub_cancel)
            .page_size(self.batch);
        // An idle relay re-checks its lock too, so it steps down within about a
        // second of losing PostgreSQL (the subscription alone would wait for the
        // pool's acquire timeout).
        let mut fence = tokio::time::interval(leader::CHECK_EVERY);
        fence.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The plant calendar (ADR 0061 amendment): published when leading starts,
        // then whenever its fingerprint changes.
        let mut calendar = self.calendar_every.map(|every| {
            let mut i = tokio::time::interval(every);
            i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            i
        });
        let mut published_calendar: Option<String> = None;
        loop {
            let next = tokio::select! {
                next = subscription.next_batch(self.batch) => next,
                _ = fence.tick() => {
                    lock.check().await?;
                    continue;
                }
                _ = tick(&mut calendar) => {
                    lock.check().await?;
                    self.calendar(&mut published_calendar, checkpoint.position()).await;
                    continue;
                }
            };
            let batch = match next {
                None => return Ok(()),
                Some(batch) => batch?,
            };
            // Still the leader, on the lock's own session?
            lock.check().await?;
            let js_sequence = self.publish_riding_out(&batch, lock).await?;
            if let Some(last) = batch.last() {
                let mut tx = lock.fenced().await?;
                save_in(
                    &mut tx,
                    &mut checkpoint,
                    last.position,
                    js_sequence,
                    Move::Advance,
                )
                .await?;
                tx.commit().await?;
                metrics::counter!("shopfloor_relay_published_total").increment(batch.len() as u64);
                metrics::gauge!("shopfloor_relay_position").set(last.position as f64);
                debug!(position = last.position, n = batch.len(), "published");
            }
        }
    }

    /// [`Relay::publish`], again with a bounded back-off while JetStream fails
    /// (a stream leader election), for up to [`RIDE_OUT`], checking the lock
    /// before each attempt. Republishing is idempotent: the event id is the
    /// message id, and a duplicate's ack carries the original's sequence.
    async fn publish_riding_out(
        &self,
        batch: &[RecordedEvent],
        lock: &mut Leadership,
    ) -> Result<u64, RelayError> {
        let started = tokio::time::Instant::now();
        let mut backoff = Duration::from_millis(50);
        loop {
            match self.publish(batch).await {
                Ok(sequence) => {
                    let stalled = started.elapsed();
                    if stalled > PUBLISH_TIMEOUT {
                        info!(
                            stalled_ms = stalled.as_millis() as u64,
                            "JetStream accepts publishes again"
                        );
                    }
                    return Ok(sequence);
                }
                Err(e) if e.is_jetstream() && started.elapsed() + backoff < RIDE_OUT => {
                    debug!(error = %e, "publish failed; retrying");
                    metrics::counter!("shopfloor_relay_publish_retries_total").increment(1);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_millis(250));
                    lock.check().await?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Publishes the plant calendar when its fingerprint differs from the one
    /// `published` last (None: not yet since leading began). Failures are logged and
    /// counted, never returned: the events go on, and the next tick tries again.
    async fn calendar(&self, published: &mut Option<String>, position: i64) {
        match self.publish_calendar(published.as_deref(), position).await {
            Ok(Some(fingerprint)) => {
                metrics::counter!("shopfloor_relay_calendar_published_total").increment(1);
                *published = Some(fingerprint);
            }
            Ok(None) => {}
            Err(e) => {
                warn!(error = %e, "publishing the plant calendar failed; will retry");
                metrics::counter!("shopfloor_relay_calendar_failures_total").increment(1);
            }
        }
    }

    /// Takes and publishes the calendar snapshot unless its fingerprint is
    /// `published`; the fingerprint published, if any. Its `Nats-Msg-Id` is the
    /// body's SHA-256 (a retried publish is deduplicated), and its position header
    /// is the relay's checkpoint, every event up to which is already in the stream
    /// (so a rewind that finds it last starts there).
    async fn publish_calendar(
        &self,
        published: Option<&str>,
        position: i64,
    ) -> Result<Option<String>, RelayError> {
        if published.is_some() {
            let now = calendar_sync::fingerprint(self.pool()).await?;
            if published == Some(now.as_str()) {
                return Ok(None);
            }
        }
        let snapshot = calendar_sync::take(self.pool()).await?;
        let (body, hash) = snapshot
            .encode()
            .map_err(|e| RelayError::JetStream(format!("the calendar does not encode: {e}")))?;
        let publish = Publish::build()
            .payload(Bytes::from(body))
            .message_id(hash)
            .header(names::POSITION_HEADER, position.to_string().as_str());
        self.jetstream
            .send_publish(names::calendar_subject(&self.namespace), publish)
            .await
            .map_err(js_err)?
            .await
            .map_err(js_err)?;
        info!(namespace = %self.namespace, taken_at = %snapshot.taken_at, "plant calendar published");
        Ok(Some(snapshot.fingerprint))
    }

    /// Publishes a batch pipelined; returns the sequence of the last ack.
    async fn publish(&self, batch: &[RecordedEvent]) -> Result<u64, RelayError> {
        let mut acks = Vec::with_capacity(batch.len());
        for event in batch {
            let body =
                serde_json::to_vec(event).map_err(|e| RelayError::Encode(event.position, e))?;
            let publish = Publish::build()
                .payload(Bytes::from(body))
                .message_id(event.event_id.to_string())
                .header(names::POSITION_HEADER, event.position.to_string().as_str())
                .header(names::EVENT_TYPE_HEADER, event.event_type.as_str());
            let subject =
                names::event_subject(&self.namespace, &event.stream_type, &event.stream_id);
            acks.push(
                self.jetstream
                    .send_publish(subject, publish)
                    .await
                    .map_err(js_err)?,
            );
        }
        let mut last = 0;
        for ack in acks {
            let ack = ack.await.map_err(js_err)?;
            // A duplicate ack carries the sequence of the original message.
            last = last.max(ack.sequence);
        }
        Ok(last)
    }
}

/// The next tick of `interval`; never without one.
async fn tick(interval: &mut Option<tokio::time::Interval>) {
    match interval {
        Some(i) => {
            i.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// How a save moves the relay's checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Move {
    Advance,
    Rewind,
}

async fn load(pool: &PgPool, namespace: &str) -> Result<RelayCheckpoint, RelayError> {
    let checkpoint = Checkpoint::load(pool, Reader::Relay, namespace).await?;
    let stored: Option<i64> =
        sqlx::query_scalar("SELECT js_sequence FROM relay_checkpoints WHERE namespace = $1")
            .bind(namespace)
            .fetch_optional(pool)
            .await?;
    let js_sequence = match stored {
        None => 0,
        Some(s) => u64::try_from(s).map_err(|_| RelayError::Sequence(s.to_string()))?,
    };
    Ok(RelayCheckpoint {
        checkpoint,
        js_sequence,
    })
}

/// Moves the relay's checkpoint to `position` and its JetStream sequence to
/// `js_sequence`, both in one transaction.
async fn save(
    pool: &PgPool,
    state: &mut RelayCheckpoint,
    position: i64,
    js_sequence: u64,
    how: Move,
) -> Result<(), RelayError> {
    let mut tx = pool.begin().await?;
    save_in(&mut tx, state, position, js_sequence, how).await?;
    tx.commit().await?;
    Ok(())
}

/// [`save`] within `tx` (the relay's fenced transaction), not committed.
async fn save_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    state: &mut RelayCheckpoint,
    position: i64,
    js_sequence: u64,
    how: Move,
) -> Result<(), RelayError> {
    let stored =
        i64::try_from(js_sequence).map_err(|_| RelayError::Sequence(js_sequence.to_string()))?;
    match how {
        Move::Advance => state.checkpoint.advance(&mut **tx, position).await?,
        Move::Rewind => state.checkpoint.rewind(&mut **tx, position).await?,
    }
    sqlx::query("UPDATE relay_checkpoints SET js_sequence = $2 WHERE namespace = $1")
        .bind(state.checkpoint.name())
        .bind(stored)
        .execute(&mut **tx)
        .await?;
    // The in-memory state moves when the caller commits; a failed commit ends
    // the lead, and the next one reloads the checkpoint.
    state.js_sequence = js_sequence;
    Ok(())
}

/// Sets the relay of `namespace` to start after `position`, with no JetStream
/// sequence known (after a restore: the restored events were published before).
pub async fn mark_restored(
    pool: &PgPool,
    namespace: &str,
    position: i64,
) -> Result<(), RelayError> {
    let mut state = RelayCheckpoint {
        checkpoint: Checkpoint::new(Reader::Relay, namespace),
        js_sequence: 0,
    };
    save(pool, &mut state, position, 0, Move::Rewind).await
}

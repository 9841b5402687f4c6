//! The `projector` role: one durable JetStream pull consumer per read model.
//!
//! Each [`Projector`] consumes `{ns}_EVENTS` through its durable consumer
//! `{ns}_{projection}` (every event subject, `{ns}.events.>`: positions stay
//! contiguous, so a gap is visible; the stream's `{ns}.settings.>` is not an
//! event and not consumed), gathers what is ready into a batch, hands it to
//! [`projection::process`] (one transaction per chunk, checkpoint included; gaps
//! filled from the event store; poison events parked), announces the changes to
//! the [`LiveHub`], and only then acknowledges (ack-all up to the batch's highest
//! stream sequence). A crash before the ack means redelivery, which the
//! checkpoint turns into a no-op.
//!
//! On every (re)start a projector first catches up from the event store to its
//! head, so a restart after a crash does not wait for JetStream's ack timeout to
//! redeliver; what JetStream then delivers is at or below the checkpoint and
//! skipped. A failure (database or NATS down) is logged, waited out and retried
//! from the checkpoint; every loop ends on the cancellation token.

use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use futures::{FutureExt, StreamExt};
use shopfloor_eventstore::{EventStore, RecordedEvent};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, instrument, warn};

use crate::error::ProjectionError;
use crate::live::LiveHub;
use crate::names;
use crate::projection::{self, Applied, Projection};

/// Tuning of the projectors.
#[derive(Debug, Clone)]
pub struct ProjectorOptions {
    /// Most messages gathered into one batch.
    pub batch: usize,
    /// Back-off after a failure.
    pub retry: Duration,
    /// How long JetStream waits for an ack before redelivering.
    pub ack_wait: Duration,
    /// Replicas of the event stream when a projector creates it.
    pub replicas: usize,
    /// With no message for this long, a projector reads the committed log from
    /// PostgreSQL (read models never wait for NATS: a leader election or outage).
    pub idle_catch_up: Duration,
}

impl Default for ProjectorOptions {
    fn default() -> Self {
        Self {
            batch: 500,
            retry: Duration::from_secs(1),
            ack_wait: Duration::from_secs(30),
            replicas: 1,
            idle_catch_up: Duration::from_millis(750),
        }
    }
}

fn js_err(e: impl std::fmt::Display) -> ProjectionError {
    ProjectionError::JetStream(e.to_string())
}

/// The projector of one read model.
#[derive(Clone)]
pub struct Projector {
    projection: Projection,
    pool: PgPool,
    store: EventStore,
    jetstream: jetstream::Context,
    namespace: String,
    hub: LiveHub,
    options: ProjectorOptions,
}

impl std::fmt::Debug for Projector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Projector")
            .field("projection", &self.projection)
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

/// Runs every projector of the namespace until `cancel` fires (the `projector`
/// role). Returns once all of them have stopped.
pub async fn run_projectors(
    pool: PgPool,
    nats: async_nats::Client,
    namespace: &str,
    hub: LiveHub,
    cancel: CancellationToken,
) {
    run_projectors_with(
        pool,
        nats,
        namespace,
        hub,
        ProjectorOptions::default(),
        cancel,
    )
    .await;
}

/// [`run_projectors`] with explicit options.
pub async fn run_projectors_with(
    pool: PgPool,
    nats: async_nats::Client,
    namespace: &str,
    hub: LiveHub,
    options: ProjectorOptions,
    cancel: CancellationToken,
) {
    let mut tasks = tokio::task::JoinSet::new();
    for projection in Projection::ALL {
        let projector = Projector::new(
            projection,
            pool.clone(),
            nats.clone(),
            namespace,
            hub.clone(),
        )
        .with_options(options.clone());
        let cancel = cancel.clone();
        tasks.spawn(async move { projector.run(cancel).await });
    }
    while let Some(done) = tasks.join_next().await {
        if let Err(e) = done {
            warn!(error = %e, "a projector task failed");
        }
    }
}

impl Projector {
    pub fn new(
        projection: Projection,
        pool: PgPool,
        nats: async_nats::Client,
        namespace: &str,
        hub: LiveHub,
    ) -> Self {
        let mut jetstream = jetstream::new(nats);
        jetstream.set_timeout(crate::relay::JS_TIMEOUT);
        Self {
            projection,
            store: EventStore::new(pool.clone()),
            pool,
            jetstream,
            namespace: namespace.to_owned(),
            hub,
            options: ProjectorOptions::default(),
        }
    }

    pub fn with_options(mut self, options: ProjectorOptions) -> Self {
        self.options = options;
        self.options.batch = self.options.batch.max(1);
        self
    }

    pub fn projection(&self) -> Projection {
        self.projection
    }

    /// The durable consumer's name.
    pub fn consumer_name(&self) -> String {
        names::projector_consumer(&self.namespace, self.projection.name())
    }

    /// Runs until `cancel` fires, resuming from the checkpoint after a failure.
    pub async fn run(&self, cancel: CancellationToken) {
        info!(projection = self.projection.name(), namespace = %self.namespace, "projector started");
        loop {
            match self.consume(&cancel).await {
                Ok(()) => return,
                Err(e) => {
                    warn!(projection = self.projection.name(), error = %e, "projector interrupted; resuming from its checkpoint");
                    metrics::counter!("shopfloor_projection_failures_total", "projection" => self.projection.name())
                        .increment(1);
                    // NATS may be what failed: the read model keeps up from the store.
                    if let Err(e) = self.catch_up().await {
                        debug!(error = %e, "catch-up from the store failed too");
                    }
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = tokio::time::sleep(self.options.retry) => {}
                    }
                }
            }
        }
    }

    /// Applies the events of the store up to its head (used at start).
    pub async fn catch_up(&self) -> Result<Applied, ProjectionError> {
        let head = self.store.head_position().await?;
        let applied = projection::catch_up(
            &self.pool,
            &self.store,
            self.projection,
            None,
            head,
            &|_| {},
        )
        .await?;
        self.announce(&applied);
        Ok(applied)
    }

    fn announce(&self, applied: &Applied) {
        for update in &applied.updates {
            self.hub.notify(update.topic.clone(), update.data.clone());
        }
        if applied.applied + applied.parked > 0 {
            metrics::counter!("shopfloor_projection_events_total", "projection" => self.projection.name())
                .increment((applied.applied + applied.parked) as u64);
        }
        metrics::gauge!("shopfloor_projection_position", "projection" => self.projection.name())
            .set(applied.position as f64);
    }

    /// The durable consumer (created when missing).
    async fn consumer(&self) -> Result<consumer::PullConsumer, ProjectionError> {
        let stream =
            names::ensure_events_stream(&self.jetstream, &self.namespace, self.options.replicas)
                .await
                .map_err(js_err)?;
        let name = self.consumer_name();
        stream
            .get_or_create_consumer(
                &name,
                consumer::pull::Config {
                    durable_name: Some(name.clone()),
                    ack_policy: consumer::AckPolicy::All,
                    deliver_policy: consumer::DeliverPolicy::All,
                    // Events only: the stream also carries the plant's settings
                    // (`{ns}.settings.>`, for the plant group).
                    filter_subject: names::events_wildcard(&self.namespace),
                    ack_wait: self.options.ack_wait,
                    max_ack_pending: 20_000,
                    ..Default::default()
                },
            )
            .await
            .map_err(js_err)
    }

    /// Catches up, then consumes until cancelled (Ok) or a failure (Err).
    #[instrument(skip_all, fields(projection = self.projection.name(), namespace = %self.namespace))]
    async fn consume(&self, cancel: &CancellationToken) -> Result<(), ProjectionError> {
        self.catch_up().await?;
        let consumer = self.consumer().await?;
        let mut messages = consumer
            .stream()
            .max_messages_per_batch(self.options.batch)
            .messages()
            .await
            .map_err(js_err)?;
        let mut idle = tokio::time::interval(self.options.idle_catch_up);
        idle.reset();
        loop {
            let first = tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                m = messages.next() => m,
                _ = idle.tick() => {
                    // Nothing from JetStream for a while: whatever is committed
                    // meanwhile is applied from the store (what JetStream
                    // delivers later is at or below the checkpoint, skipped).
                    self.catch_up().await?;
                    continue;
                }
            };
            idle.reset();
            let Some(first) = first else {
                return Err(ProjectionError::JetStream(
                    "the message stream ended".into(),
                ));
            };
            let mut batch = vec![first.map_err(js_err)?];
            while batch.len() < self.options.batch {
                match messages.next().now_or_never() {
                    Some(Some(Ok(m))) => batch.push(m),
                    Some(Some(Err(e))) => return Err(js_err(e)),
                    Some(None) | None => break,
                }
            }
            let mut events = Vec::with_capacity(batch.len());
            // A consumer made before the settings subject has no filter: its
            // settings messages are acknowledged with the batch and not applied.
            let events_prefix = format!("{}.events.", self.namespace);
            for m in batch
                .iter()
                .filter(|m| m.subject.starts_with(&events_prefix))
            {
                match serde_json::from_slice::<RecordedEvent>(&m.payload) {
                    Ok(e) => events.push(e),
                    // Not an event of ours: its position is unknown; the gap (if
                    // any) is filled from the store.
                    Err(e) => {
                        warn!(subject = %m.subject, error = %e, "message is not an event; skipped")
                    }
                }
            }
            let applied =
                projection::process(&self.pool, &self.store, self.projection, events, None).await?;
            self.announce(&applied);
            let last = batch
                .iter()
                .max_by_key(|m| m.info().map(|i| i.stream_sequence).unwrap_or(0));
            if let Some(last) = last {
                last.ack().await.map_err(js_err)?;
            }
            debug!(
                n = batch.len(),
                position = applied.position,
                applied = applied.applied,
                parked = applied.parked,
                "batch done"
            );
        }
    }
}

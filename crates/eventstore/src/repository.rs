//! The `cqrs-es` side: [`AggregateRepository`] implements [`cqrs_es::EventStore`]
//! so that `CqrsFramework` loads and commits aggregates through our store.
//!
//! # Events in the store
//! Domain event enums are internally tagged (`#[serde(tag = "event_type")]`, the
//! tag equal to `DomainEvent::event_type()`). The tag is stored in the
//! `event_type` column and removed from the payload, so the payload holds just
//! the event's fields; it is put back when an event is decoded.
//!
//! # Snapshots (ADR 0003)
//! `cqrs-es` 0.5's own snapshot store applies every new event twice (once in
//! `EventSink::write`, again when it updates the snapshot). Ours does not: when a
//! commit crosses a multiple of `snapshot_every`, the aggregate in the context —
//! which `EventSink::write` has already brought up to date — is stored as it is,
//! at the new stream version. Loading starts from the snapshot and applies only
//! the events after it. A snapshot that no longer deserializes is ignored.
//!
//! # Idempotent commands
//! When the command metadata carries a `command_id`, event ids are derived from
//! it (UUID v5 over stream and index), so a retried command appends nothing new.

use std::collections::HashMap;
use std::marker::PhantomData;

use chrono::{DateTime, Utc};
use cqrs_es::{Aggregate, AggregateContext, AggregateError, DomainEvent, EventEnvelope};
use serde_json::Value;
use tracing::warn;
use uuid::Uuid;

use crate::model::{EventMetadata, ExpectedVersion, NewEvent, RecordedEvent, Source, StreamRef};
use crate::{EventStore, StoreError};

/// Keys of the `cqrs-es` metadata map that become typed event metadata.
pub mod meta {
    pub const ACTOR: &str = "actor";
    pub const CORRELATION_ID: &str = "correlation_id";
    pub const CAUSATION_ID: &str = "causation_id";
    pub const SOURCE: &str = "source";
    /// RFC 3339 floor time of the command.
    pub const OCCURRED_AT: &str = "occurred_at";
    /// Makes the command idempotent: event ids are derived from it.
    pub const COMMAND_ID: &str = "command_id";
    /// Added to envelopes handed back by a commit.
    pub const EVENT_ID: &str = "event_id";
    pub const POSITION: &str = "position";
}

/// Namespace of the UUID v5 event ids derived from command ids.
const EVENT_ID_NAMESPACE: Uuid = Uuid::from_u128(0x5f0c_7a1e_93d4_4c8b_a2f1_6e0d_b3c4_9a17);

/// The event id of the `index`-th event of a command on a stream.
pub fn derived_event_id(stream: &StreamRef, command_id: &str, index: usize) -> Uuid {
    let name = format!(
        "{}\u{1f}{}\u{1f}{}\u{1f}{}",
        stream.stream_type, stream.stream_id, command_id, index
    );
    Uuid::new_v5(&EVENT_ID_NAMESPACE, name.as_bytes())
}

impl EventMetadata {
    /// Typed metadata from a `cqrs-es` metadata map; unknown keys go to `extra`.
    pub fn from_map(map: &HashMap<String, String>) -> Self {
        let mut m = EventMetadata::default();
        for (k, v) in map {
            match k.as_str() {
                meta::ACTOR => m.actor = Some(v.clone()),
                meta::CORRELATION_ID => m.correlation_id = Some(v.clone()),
                meta::CAUSATION_ID => m.causation_id = Some(v.clone()),
                meta::SOURCE => m.source = Source::parse(v).unwrap_or_default(),
                meta::OCCURRED_AT => {
                    m.occurred_at = DateTime::parse_from_rfc3339(v)
                        .ok()
                        .map(|t| t.with_timezone(&Utc))
                }
                _ => {
                    m.extra.insert(k.clone(), v.clone());
                }
            }
        }
        m
    }

    /// The metadata as a flat map (for `cqrs-es` envelopes).
    pub fn to_map(&self) -> HashMap<String, String> {
        let mut map: HashMap<String, String> = self
            .extra
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut put = |k: &str, v: &Option<String>| {
            if let Some(v) = v {
                map.insert(k.to_string(), v.clone());
            }
        };
        put(meta::ACTOR, &self.actor);
        put(meta::CORRELATION_ID, &self.correlation_id);
        put(meta::CAUSATION_ID, &self.causation_id);
        put(meta::OCCURRED_AT, &self.occurred_at.map(|t| t.to_rfc3339()));
        map.insert(meta::SOURCE.to_string(), self.source.as_str().to_string());
        map
    }
}

/// Serializes a domain event into the store's (type, schema version, payload).
pub fn encode_event<E: DomainEvent>(event: &E) -> Result<(String, i32, Value), StoreError> {
    let event_type = event.event_type();
    let bad = |reason: String| StoreError::Decode {
        position: 0,
        event_type: event_type.clone(),
        reason,
    };
    let version: i32 = event.event_version().parse().map_err(|_| {
        bad(format!(
            "event version {:?} is not an integer",
            event.event_version()
        ))
    })?;
    let mut payload = serde_json::to_value(event).map_err(|e| bad(e.to_string()))?;
    match payload.as_object_mut().map(|m| m.remove("event_type")) {
        Some(Some(Value::String(tag))) if tag == event_type => {}
        _ => {
            return Err(bad(
                "events must be internally tagged with `event_type` equal to event_type()".into(),
            ))
        }
    }
    Ok((event_type, version, payload))
}

/// Deserializes a recorded event's payload back into the domain event.
pub fn decode_event<E: DomainEvent>(recorded: &RecordedEvent) -> Result<E, StoreError> {
    let mut payload = recorded.payload.clone();
    if let Some(map) = payload.as_object_mut() {
        map.insert(
            "event_type".into(),
            Value::String(recorded.event_type.clone()),
        );
    }
    serde_json::from_value(payload).map_err(|e| StoreError::Decode {
        position: recorded.position,
        event_type: recorded.event_type.clone(),
        reason: e.to_string(),
    })
}

/// Loads and commits aggregates of type `A` through the [`EventStore`].
pub struct AggregateRepository<A> {
    store: EventStore,
    /// Take a snapshot each time a stream's version crosses a multiple of this.
    snapshot_every: Option<u64>,
    _aggregate: PhantomData<fn() -> A>,
}

impl<A> Clone for AggregateRepository<A> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            snapshot_every: self.snapshot_every,
            _aggregate: PhantomData,
        }
    }
}

impl<A> std::fmt::Debug for AggregateRepository<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AggregateRepository")
            .field("snapshot_every", &self.snapshot_every)
            .finish()
    }
}

/// An aggregate loaded for a command, and the version it was loaded at.
#[derive(Debug)]
pub struct RepositoryContext<A> {
    pub aggregate_id: String,
    pub version: u64,
    pub aggregate: A,
}

impl<A: Aggregate> AggregateContext<A> for RepositoryContext<A> {
    fn aggregate(&mut self) -> &mut A {
        &mut self.aggregate
    }
}

impl<A: Aggregate> AggregateRepository<A> {
    pub fn new(store: EventStore) -> Self {
        Self {
            store,
            snapshot_every: None,
            _aggregate: PhantomData,
        }
    }

    /// Snapshots every `n` events (0 turns snapshots off).
    pub fn with_snapshots(mut self, n: u64) -> Self {
        self.snapshot_every = (n > 0).then_some(n);
        self
    }

    pub fn store(&self) -> &EventStore {
        &self.store
    }

    pub fn stream(id: &str) -> StreamRef {
        StreamRef::new(A::TYPE, id)
    }

    /// The aggregate now and its version, starting from a snapshot where there is one.
    pub async fn load(&self, id: &str) -> Result<(A, u64), StoreError> {
        let stream = Self::stream(id);
        let (mut aggregate, mut version) = self.snapshot(&stream).await?.unwrap_or_default();
        for recorded in self.store.read_stream_all(&stream, version + 1).await? {
            aggregate.apply(decode_event(&recorded)?);
            version = recorded.version;
        }
        Ok((aggregate, version))
    }

    /// The aggregate replayed from its first event, ignoring snapshots.
    pub async fn load_replayed(&self, id: &str) -> Result<(A, u64), StoreError> {
        self.load_until(id, u64::MAX, None).await
    }

    /// The aggregate as it was at `version` and/or with the events recorded by `at`.
    pub async fn load_until(
        &self,
        id: &str,
        version: u64,
        at: Option<DateTime<Utc>>,
    ) -> Result<(A, u64), StoreError> {
        let stream = Self::stream(id);
        let events = match at {
            Some(t) => self.store.read_stream_recorded_by(&stream, t).await?,
            None => self.store.read_stream_all(&stream, 1).await?,
        };
        let mut aggregate = A::default();
        let mut current = 0;
        for recorded in events.iter().take_while(|e| e.version <= version) {
            aggregate.apply(decode_event(recorded)?);
            current = recorded.version;
        }
        Ok((aggregate, current))
    }

    async fn snapshot(&self, stream: &StreamRef) -> Result<Option<(A, u64)>, StoreError> {
        let row: Option<(i64, Value)> = sqlx::query_as(
            "SELECT version, state FROM snapshots WHERE stream_type = $1 AND stream_id = $2",
        )
        .bind(&stream.stream_type)
        .bind(&stream.stream_id)
        .fetch_optional(self.store.pool())
        .await?;
        let Some((version, state)) = row else {
            return Ok(None);
        };
        match serde_json::from_value::<A>(state) {
            Ok(a) => Ok(Some((a, u64::try_from(version).unwrap_or(0)))),
            Err(e) => {
                warn!(%stream, error = %e, "ignoring a snapshot that no longer deserializes");
                Ok(None)
            }
        }
    }

    /// Stores `aggregate` as the state of the stream at `version`.
    pub async fn save_snapshot(
        &self,
        id: &str,
        version: u64,
        aggregate: &A,
    ) -> Result<(), StoreError> {
        let state = serde_json::to_value(aggregate).map_err(|e| StoreError::Decode {
            position: 0,
            event_type: A::TYPE.to_string(),
            reason: format!("snapshot: {e}"),
        })?;
        sqlx::query(
            "INSERT INTO snapshots (stream_type, stream_id, version, state) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (stream_type, stream_id) DO UPDATE \
             SET version = excluded.version, state = excluded.state, taken_at = now() \
             WHERE snapshots.version < excluded.version",
        )
        .bind(A::TYPE)
        .bind(id)
        .bind(i64::try_from(version).unwrap_or(i64::MAX))
        .bind(state)
        .execute(self.store.pool())
        .await?;
        Ok(())
    }

    /// Encodes a command's events for an append, with ids derived from the command id.
    pub fn new_events(
        stream: &StreamRef,
        events: &[A::Event],
        metadata: &HashMap<String, String>,
    ) -> Result<Vec<NewEvent>, StoreError> {
        let meta = EventMetadata::from_map(metadata);
        let command_id = metadata.get(meta::COMMAND_ID).map(String::as_str);
        encode_events(stream, events, &meta, command_id)
    }
}

/// Encodes a command's events for an append: ids derived from `command_id` when
/// there is one (so appending them again writes nothing), random otherwise.
pub fn encode_events<E: DomainEvent>(
    stream: &StreamRef,
    events: &[E],
    metadata: &EventMetadata,
    command_id: Option<&str>,
) -> Result<Vec<NewEvent>, StoreError> {
    events
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let (event_type, schema_version, payload) = encode_event(e)?;
            Ok(NewEvent {
                event_id: match command_id {
                    Some(c) => derived_event_id(stream, c, i),
                    None => Uuid::new_v4(),
                },
                event_type,
                schema_version,
                payload,
                metadata: metadata.clone(),
            })
        })
        .collect()
}

fn to_aggregate_error<E: std::error::Error>(e: StoreError) -> AggregateError<E> {
    match e {
        StoreError::Conflict { .. } => AggregateError::AggregateConflict,
        StoreError::Decode { .. } => AggregateError::DeserializationError(Box::new(e)),
        StoreError::Database(_) => AggregateError::DatabaseConnectionError(Box::new(e)),
        other => AggregateError::UnexpectedError(Box::new(other)),
    }
}

impl<A: Aggregate> cqrs_es::EventStore<A> for AggregateRepository<A> {
    type AC = RepositoryContext<A>;

    async fn load_events(
        &self,
        aggregate_id: &str,
    ) -> Result<Vec<EventEnvelope<A>>, AggregateError<A::Error>> {
        let recorded = self
            .store
            .read_stream_all(&Self::stream(aggregate_id), 1)
            .await
            .map_err(to_aggregate_error)?;
        recorded
            .iter()
            .map(|r| {
                Ok(EventEnvelope {
                    aggregate_id: aggregate_id.to_string(),
                    sequence: usize::try_from(r.version).unwrap_or(usize::MAX),
                    payload: decode_event(r).map_err(to_aggregate_error)?,
                    metadata: envelope_metadata(&r.metadata, r.event_id, r.position),
                })
            })
            .collect()
    }

    async fn load_aggregate(
        &self,
        aggregate_id: &str,
    ) -> Result<RepositoryContext<A>, AggregateError<A::Error>> {
        let (aggregate, version) = self.load(aggregate_id).await.map_err(to_aggregate_error)?;
        Ok(RepositoryContext {
            aggregate_id: aggregate_id.to_string(),
            version,
            aggregate,
        })
    }

    async fn commit(
        &self,
        events: Vec<A::Event>,
        context: RepositoryContext<A>,
        metadata: HashMap<String, String>,
    ) -> Result<Vec<EventEnvelope<A>>, AggregateError<A::Error>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let stream = Self::stream(&context.aggregate_id);
        let new_events =
            Self::new_events(&stream, &events, &metadata).map_err(to_aggregate_error)?;
        let expected = match context.version {
            0 => ExpectedVersion::NoStream,
            v => ExpectedVersion::Exact(v),
        };
        let ids: Vec<Uuid> = new_events.iter().map(|e| e.event_id).collect();
        let result = self
            .store
            .append(&stream, expected, new_events)
            .await
            .map_err(to_aggregate_error)?;
        if let (Some(n), false) = (self.snapshot_every, result.duplicate) {
            if result.stream_version / n > context.version / n {
                // `EventSink::write` has already applied these events to the context's
                // aggregate: it is the state at `result.stream_version` as it is.
                if let Err(e) = self
                    .save_snapshot(
                        &context.aggregate_id,
                        result.stream_version,
                        &context.aggregate,
                    )
                    .await
                {
                    warn!(%stream, error = %e, "snapshot not saved; loads replay instead");
                }
            }
        }
        let first_version = result.stream_version + 1 - events.len() as u64;
        Ok(events
            .into_iter()
            .zip(ids)
            .enumerate()
            .map(|(i, (payload, id))| {
                let mut md = metadata.clone();
                md.insert(meta::EVENT_ID.into(), id.to_string());
                md.insert(
                    meta::POSITION.into(),
                    (result.first_position + i as i64).to_string(),
                );
                EventEnvelope {
                    aggregate_id: context.aggregate_id.clone(),
                    sequence: usize::try_from(first_version + i as u64).unwrap_or(usize::MAX),
                    payload,
                    metadata: md,
                }
            })
            .collect())
    }
}

fn envelope_metadata(m: &EventMetadata, id: Uuid, position: i64) -> HashMap<String, String> {
    let mut map = m.to_map();
    map.insert(meta::EVENT_ID.into(), id.to_string());
    map.insert(meta::POSITION.into(), position.to_string());
    map
}

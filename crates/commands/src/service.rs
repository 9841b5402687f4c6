//! [`CommandService`]: one domain command, from load to durable append.
//!
//! For each command:
//! 1. **Load** the aggregate: from the in-memory cache, else from its snapshot
//!    and later events.
//! 2. **Idempotency.** With a `command_id` (an HTTP Idempotency-Key, an MQTT message
//!    id, a process manager's deterministic id), event ids are derived from it, so
//!    appending them again writes nothing and returns the original outcome. When
//!    the aggregate has moved on and now refuses the command, the log is searched
//!    for the command's first event id: if it is there, the original outcome is
//!    returned instead of the refusal.
//! 3. **Expected version** (HTTP `If-Match`): a mismatch refuses the command.
//! 4. **Decide**: the pure domain decision; a refusal writes nothing.
//! 5. **Append** with the loaded version as the expected one. If another writer
//!    got there first, go back to 2 (a few times, with jittered back-off), unless
//!    the caller pinned a version, in which case that is a mismatch.
//!
//! Commands on the same stream within this process take turns (a per-stream
//! lock), so a hot machine with many concurrent reports queues instead of losing
//! optimistic races; conflicts then only come from other processes.

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use shopfloor_domain::process::Target;
use shopfloor_domain::{
    Decide, InventoryItem, Machine, MaintenancePolicy, MaintenanceTask, ProductionOrder,
};
use shopfloor_eventstore::repository::{derived_event_id, meta};
use shopfloor_eventstore::{
    AggregateRepository, AppendRequest, Direction, EventStore, ExpectedVersion, GroupCommitter,
    GroupStats, Source, StoreError, StreamRef,
};
use tracing::instrument;
use uuid::Uuid;

use crate::error::{Classify, CommandError};

/// Who sends a command, why, and under which conditions.
#[derive(Debug, Clone, Default)]
pub struct CommandContext {
    /// The authenticated principal or component.
    pub actor: String,
    pub source: Source,
    pub correlation_id: Option<String>,
    pub causation_id: Option<String>,
    pub request_id: Option<String>,
    /// Makes the command idempotent (see the module docs).
    pub command_id: Option<String>,
    /// Floor time of what the command reports.
    pub occurred_at: Option<DateTime<Utc>>,
    /// The stream version the caller expects (If-Match).
    pub expected_version: Option<u64>,
}

impl CommandContext {
    pub fn new(actor: impl Into<String>, source: Source) -> Self {
        Self {
            actor: actor.into(),
            source,
            ..Default::default()
        }
    }

    fn metadata(&self) -> HashMap<String, String> {
        let mut m = HashMap::new();
        m.insert(meta::ACTOR.to_string(), self.actor.clone());
        m.insert(meta::SOURCE.to_string(), self.source.as_str().to_string());
        let mut put = |k: &str, v: &Option<String>| {
            if let Some(v) = v {
                m.insert(k.to_string(), v.clone());
            }
        };
        put(meta::CORRELATION_ID, &self.correlation_id);
        put(meta::CAUSATION_ID, &self.causation_id);
        put("request_id", &self.request_id);
        put(meta::COMMAND_ID, &self.command_id);
        put(meta::OCCURRED_AT, &self.occurred_at.map(|t| t.to_rfc3339()));
        m
    }
}

/// An event a command appended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedEvent {
    pub position: i64,
    pub version: u64,
    pub event_id: Uuid,
    pub event_type: String,
}

/// What a command did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub stream_type: &'static str,
    pub stream_id: String,
    /// The stream's version after the command.
    pub stream_version: u64,
    pub events: Vec<CommittedEvent>,
    /// True when the command had been done before and nothing was written now.
    pub duplicate: bool,
}

/// One async lock per stream that has a command in flight in this process.
#[derive(Debug, Default)]
struct StreamLocks {
    locks: Mutex<HashMap<StreamRef, Arc<tokio::sync::Mutex<()>>>>,
}

impl StreamLocks {
    async fn lock(self: &Arc<Self>, stream: &StreamRef) -> StreamGuard {
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
            locks.entry(stream.clone()).or_default().clone()
        };
        let guard = lock.clone().lock_owned().await;
        StreamGuard {
            locks: self.clone(),
            stream: stream.clone(),
            lock,
            _guard: Some(guard),
        }
    }
}

/// Holds a stream's turn; forgets the stream's lock when nobody else waits for it.
struct StreamGuard {
    locks: Arc<StreamLocks>,
    stream: StreamRef,
    lock: Arc<tokio::sync::Mutex<()>>,
    _guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self._guard = None;
        let mut locks = self.locks.locks.lock().unwrap_or_else(|p| p.into_inner());
        // Ours, plus the map's: nobody else holds or waits for it.
        if Arc::strong_count(&self.lock) <= 2 {
            locks.remove(&self.stream);
        }
    }
}

/// A cached aggregate (type-erased) and its stream version.
type CachedAggregate = (Box<dyn Any + Send>, u64);

/// Aggregates kept between commands, keyed by stream. Only touched while the
/// stream's turn is held, so an entry is taken out, used, and put back.
#[derive(Debug)]
struct AggregateCache {
    capacity: usize,
    entries: Mutex<HashMap<StreamRef, CachedAggregate>>,
}

impl AggregateCache {
    fn new(capacity: usize) -> Self {
        Self {
            capacity,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn take<A: 'static>(&self, stream: &StreamRef) -> Option<(A, u64)> {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let (boxed, version) = entries.remove(stream)?;
        boxed.downcast::<A>().ok().map(|a| (*a, version))
    }

    fn put<A: Send + 'static>(&self, stream: StreamRef, aggregate: A, version: u64) {
        if self.capacity == 0 {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= self.capacity {
            // Crude but bounded: forget half (arbitrary ones; they reload on use).
            let drop: Vec<StreamRef> = entries
                .keys()
                .take(self.capacity / 2 + 1)
                .cloned()
                .collect();
            for k in drop {
                entries.remove(&k);
            }
        }
        entries.insert(stream, (Box::new(aggregate), version));
    }
}

/// Executes commands. Cheap to clone.
#[derive(Debug, Clone)]
pub struct CommandService {
    store: EventStore,
    locks: Arc<StreamLocks>,
    /// Recently used aggregates with their versions; a stale one (another
    /// process wrote) shows as a conflict at append and is reloaded.
    cache: Arc<AggregateCache>,
    /// When set, appends go through one group-commit writer.
    group: Option<GroupCommitter>,
    /// Snapshot every this many events of a stream.
    snapshot_every: u64,
    /// Attempts before giving up on a stream that other writers keep changing.
    max_attempts: u32,
}

impl CommandService {
    pub fn new(store: EventStore) -> Self {
        Self {
            store,
            locks: Arc::default(),
            cache: Arc::new(AggregateCache::new(50_000)),
            group: None,
            snapshot_every: 200,
            max_attempts: 8,
        }
    }

    /// Sends appends through a group-commit writer (started on the current
    /// runtime) that puts up to `max_batch` concurrent commands in one transaction.
    pub fn with_group_commit(mut self, max_batch: usize) -> Self {
        self.group = Some(GroupCommitter::start(self.store.clone(), max_batch));
        self
    }

    /// Keeps at most `n` aggregates in memory (0: none).
    pub fn with_cache_capacity(mut self, n: usize) -> Self {
        self.cache = Arc::new(AggregateCache::new(n));
        self
    }

    pub fn with_snapshot_every(mut self, n: u64) -> Self {
        self.snapshot_every = n;
        self
    }

    pub fn store(&self) -> &EventStore {
        &self.store
    }

    /// The group-commit writer's figures, when appends go through one.
    pub fn group_stats(&self) -> Option<GroupStats> {
        self.group.as_ref().map(GroupCommitter::stats)
    }

    /// Executes a command on the aggregate it is addressed to.
    pub async fn execute(
        &self,
        target: Target,
        ctx: &CommandContext,
    ) -> Result<Outcome, CommandError> {
        match target {
            Target::ProductionOrder { order_id, command } => {
                self.run::<ProductionOrder>(order_id.as_str(), command, ctx)
                    .await
            }
            Target::Machine {
                machine_id,
                command,
            } => self.run::<Machine>(machine_id.as_str(), command, ctx).await,
            Target::MaintenanceTask { task_id, command } => {
                self.run::<MaintenanceTask>(task_id.as_str(), command, ctx)
                    .await
            }
            Target::InventoryItem { item_id, command } => {
                self.run::<InventoryItem>(item_id.as_str(), command, ctx)
                    .await
            }
            Target::MaintenancePolicy { policy_id, command } => {
                self.run::<MaintenancePolicy>(policy_id.as_str(), command, ctx)
                    .await
            }
        }
    }

    /// Loads an aggregate as it is now, with its version.
    pub async fn load<A: Aggregate>(&self, id: &str) -> Result<(A, u64), StoreError> {
        self.repository::<A>().load(id).await
    }

    fn repository<A: Aggregate>(&self) -> AggregateRepository<A> {
        AggregateRepository::<A>::new(self.store.clone()).with_snapshots(self.snapshot_every)
    }

    /// Executes a command on aggregate `A` with id `id`.
    #[instrument(skip_all, fields(stream_type = A::TYPE, stream_id = id), err(Display))]
    pub async fn run<A>(
        &self,
        id: &str,
        command: A::Command,
        ctx: &CommandContext,
    ) -> Result<Outcome, CommandError>
    where
        A: Decide + 'static,
        A::Command: Clone,
        A::Error: Classify,
    {
        let repo = self.repository::<A>();
        let stream = StreamRef::new(A::TYPE, id);
        let metadata = ctx.metadata();
        let _turn = self.locks.lock(&stream).await;
        for attempt in 0..self.max_attempts {
            let (mut aggregate, mut version) = match self.cache.take::<A>(&stream) {
                Some(cached) => cached,
                None => repo.load(id).await?,
            };
            if let Some(expected) = ctx.expected_version {
                if expected != version {
                    // The cached version may be stale (another writer): ask the store.
                    (aggregate, version) = repo.load(id).await?;
                }
                if expected != version {
                    self.cache.put(stream.clone(), aggregate, version);
                    return Err(CommandError::VersionMismatch {
                        stream_type: A::TYPE.to_string(),
                        expected,
                        actual: version,
                    });
                }
            }
            let events = match aggregate.decide(command.clone()) {
                Ok(events) => events,
                Err(e) => {
                    self.cache.put(stream.clone(), aggregate, version);
                    // Refused now, but perhaps done before under the same command id
                    // (a retried request after the aggregate moved on).
                    if let Some(command_id) = &ctx.command_id {
                        if let Some(done) = self.already_done::<A>(&stream, command_id).await? {
                            metrics::counter!("shopfloor_commands_total", "aggregate" => A::TYPE, "outcome" => "duplicate").increment(1);
                            return Ok(done);
                        }
                    }
                    metrics::counter!("shopfloor_commands_total", "aggregate" => A::TYPE, "outcome" => "rejected").increment(1);
                    return Err(CommandError::Rejected {
                        kind: e.kind(),
                        message: e.to_string(),
                    });
                }
            };
            if events.is_empty() {
                self.cache.put(stream.clone(), aggregate, version);
                return Ok(Outcome {
                    stream_type: A::TYPE,
                    stream_id: id.to_string(),
                    stream_version: version,
                    events: Vec::new(),
                    duplicate: false,
                });
            }
            let new_events = AggregateRepository::<A>::new_events(&stream, &events, &metadata)?;
            let expected = match version {
                0 => ExpectedVersion::NoStream,
                v => ExpectedVersion::Exact(v),
            };
            let described: Vec<(Uuid, String)> = new_events
                .iter()
                .map(|e| (e.event_id, e.event_type.clone()))
                .collect();
            let request = AppendRequest {
                stream: stream.clone(),
                expected,
                events: new_events,
            };
            let appended = match &self.group {
                Some(group) => group.append(request).await,
                None => {
                    self.store
                        .append(&request.stream, request.expected, request.events)
                        .await
                }
            };
            match appended {
                Ok(result) if result.duplicate => {
                    // Done before (the ids exist): the aggregate we decided on is not
                    // the stream's state; forget it and report the original.
                    if let Some(command_id) = &ctx.command_id {
                        if let Some(done) = self.already_done::<A>(&stream, command_id).await? {
                            return Ok(done);
                        }
                    }
                    return Ok(Outcome {
                        stream_type: A::TYPE,
                        stream_id: id.to_string(),
                        stream_version: result.stream_version,
                        events: Vec::new(),
                        duplicate: true,
                    });
                }
                Ok(result) => {
                    for e in events {
                        aggregate.apply(e);
                    }
                    let n = self.snapshot_every;
                    if n > 0 && result.stream_version / n > version / n {
                        if let Err(e) = repo
                            .save_snapshot(id, result.stream_version, &aggregate)
                            .await
                        {
                            tracing::warn!(error = %e, "snapshot not saved");
                        }
                    }
                    self.cache
                        .put(stream.clone(), aggregate, result.stream_version);
                    metrics::counter!("shopfloor_commands_total", "aggregate" => A::TYPE, "outcome" => "accepted").increment(1);
                    let first_version = result.stream_version + 1 - described.len() as u64;
                    return Ok(Outcome {
                        stream_type: A::TYPE,
                        stream_id: id.to_string(),
                        stream_version: result.stream_version,
                        events: described
                            .into_iter()
                            .enumerate()
                            .map(|(i, (event_id, event_type))| CommittedEvent {
                                position: result.first_position + i as i64,
                                version: first_version + i as u64,
                                event_id,
                                event_type,
                            })
                            .collect(),
                        duplicate: false,
                    });
                }
                Err(StoreError::Conflict { actual, .. }) => {
                    // The cached or loaded state is stale: it is not put back.
                    if let Some(expected) = ctx.expected_version {
                        return Err(CommandError::VersionMismatch {
                            stream_type: A::TYPE.to_string(),
                            expected,
                            actual,
                        });
                    }
                    metrics::counter!("shopfloor_command_conflicts_total", "aggregate" => A::TYPE)
                        .increment(1);
                    // Another process wrote to this stream: back off a little, with jitter.
                    let cap = 2u64 << attempt.min(6);
                    let jitter = u64::from(Uuid::new_v4().as_u128() as u16) % cap;
                    tokio::time::sleep(Duration::from_millis(jitter)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(CommandError::Contention {
            stream_type: A::TYPE.to_string(),
            stream_id: id.to_string(),
        })
    }

    /// The outcome of a command done before, found by its first derived event id.
    async fn already_done<A: Aggregate>(
        &self,
        stream: &StreamRef,
        command_id: &str,
    ) -> Result<Option<Outcome>, CommandError> {
        let first = derived_event_id(stream, command_id, 0);
        let found: Option<(String, String, i64)> = sqlx::query_as(
            "SELECT stream_type, stream_id, version FROM events WHERE event_id = $1",
        )
        .bind(first)
        .fetch_optional(self.store.pool())
        .await
        .map_err(StoreError::from)?;
        let Some((st, sid, version)) = found else {
            return Ok(None);
        };
        if st != stream.stream_type || sid != stream.stream_id {
            return Err(CommandError::Rejected {
                kind: crate::RejectionKind::Conflict,
                message: "this idempotency key was already used for another command".into(),
            });
        }
        let from = u64::try_from(version).unwrap_or(1);
        let mut events = Vec::new();
        for e in self
            .store
            .read_stream(stream, Direction::Forward, from, 1_000)
            .await?
        {
            if e.event_id != derived_event_id(stream, command_id, events.len()) {
                break;
            }
            events.push(CommittedEvent {
                position: e.position,
                version: e.version,
                event_id: e.event_id,
                event_type: e.event_type,
            });
        }
        Ok(Some(Outcome {
            stream_type: A::TYPE,
            stream_id: stream.stream_id.clone(),
            stream_version: events.last().map_or(from, |e| e.version),
            events,
            duplicate: true,
        }))
    }
}

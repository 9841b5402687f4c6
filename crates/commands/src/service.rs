//! [`CommandService`]: the one writer. Every command of Shopfloor — an HTTP request,
//! a batch of machine events, an MQTT message, a process manager's follow-up —
//! goes from load to durable append through [`CommandService::execute_batch`].
//!
//! For a batch of commands (one command is a batch of one):
//! 1. **Turns.** The batch takes the turn of every stream it touches, in stream
//!    order (so two batches never wait on each other in a cycle). Commands on one
//!    stream within this process therefore queue instead of racing; conflicts can
//!    only come from other processes.
//! 2. **Plan** ([`Plan`]): each stream's aggregate comes from the in-memory cache,
//!    else from its snapshot and later events. Each command is decided in batch
//!    order on its aggregate (the pure domain decision), later commands seeing the
//!    events of earlier ones. A refusal writes nothing; with a `command_id` (an
//!    HTTP Idempotency-Key, an MQTT message id, a process manager's deterministic
//!    id) the log is first searched for the command's first derived event id, and
//!    if it is there the original outcome is returned instead of the refusal.
//! 3. **Commit** through the group-commit writer, so concurrent batches share one
//!    transaction and one fsync. [`Atomicity::AllOrNothing`] sends the whole batch
//!    as one unit; [`Atomicity::EachOnItsOwn`] sends one unit per stream (the
//!    commands of one stream follow each other), so a refusal of one stream's
//!    append keeps only that stream out.
//! 4. **Settle**: an append refused because another process wrote first (a
//!    version conflict) is planned again on the reloaded aggregate, a few times
//!    with jittered back-off, unless the caller pinned a version (If-Match).
//!
//! Event ids are derived from the command id, so appending a command again (a
//! retried request, a redelivered message) writes nothing and returns the
//! original positions.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use futures::StreamExt;
use shopfloor_domain::process::Target;
use shopfloor_domain::reason::ReasonCatalogue;
use shopfloor_domain::StreamType;
use shopfloor_eventstore::repository::derived_event_id;
use shopfloor_eventstore::{
    AggregateRepository, AppendRequest, AppendResult, Direction, EventMetadata, EventStore,
    ExpectedVersion, GroupCommitter, GroupStats, Source, StoreError, StreamRef,
};
use tracing::instrument;
use uuid::Uuid;

use crate::aggregate::{AnyAggregate, FromAny};
use crate::error::{CommandError, RejectionKind};
use crate::reasons::ReasonsCache;

/// Requests per group-commit transaction unless [`CommandService::with_group_commit`]
/// says otherwise.
const DEFAULT_GROUP: usize = 256;

/// Streams a batch reads from the store at once (each read is a snapshot lookup
/// and a stream read on a pooled connection).
const LOAD_CONCURRENCY: usize = 8;

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
    /// More metadata kept verbatim with the events (an MQTT topic, ...).
    pub extra: BTreeMap<String, String>,
}

impl CommandContext {
    pub fn new(actor: impl Into<String>, source: Source) -> Self {
        Self {
            actor: actor.into(),
            source,
            ..Default::default()
        }
    }

    /// The metadata every event of the command carries.
    fn event_metadata(&self) -> EventMetadata {
        let mut extra = self.extra.clone();
        if let Some(v) = &self.request_id {
            extra.insert("request_id".into(), v.clone());
        }
        if let Some(v) = &self.command_id {
            extra.insert("command_id".into(), v.clone());
        }
        EventMetadata {
            actor: Some(self.actor.clone()),
            correlation_id: self.correlation_id.clone(),
            causation_id: self.causation_id.clone(),
            source: self.source,
            occurred_at: self.occurred_at,
            extra,
        }
    }
}

/// One command of a batch: where it goes, and who sends it.
#[derive(Debug, Clone)]
pub struct BatchItem {
    pub target: Target,
    pub ctx: CommandContext,
}

impl BatchItem {
    pub fn new(target: Target, ctx: CommandContext) -> Self {
        Self { target, ctx }
    }

    fn stream(&self) -> StreamRef {
        StreamRef::new(self.target.stream_type().as_str(), self.target.stream_id())
    }
}

/// A batch as a round sees it: the commands, their streams, and how they commit.
#[derive(Clone, Copy)]
struct Batch<'a> {
    items: &'a [BatchItem],
    streams: &'a [StreamRef],
    atomicity: Atomicity,
}

/// Whether a batch is recorded whole or command by command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Atomicity {
    /// Every command is recorded, or none: the first refusal fails the batch, and
    /// every other command gets [`CommandError::Aborted`].
    AllOrNothing,
    /// Each command stands on its own: a refused one does not keep the others out.
    EachOnItsOwn,
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
    pub stream_type: StreamType,
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

/// Aggregates kept between commands, keyed by stream, with their versions. Only
/// touched while the stream's turn is held, so an entry is taken out, used, and
/// put back.
#[derive(Debug)]
struct AggregateCache {
    capacity: usize,
    entries: Mutex<HashMap<StreamRef, (AnyAggregate, u64)>>,
}

impl AggregateCache {
    fn new(capacity: usize) -> Self {
        Self {
            capacity,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn take(&self, stream: &StreamRef) -> Option<(AnyAggregate, u64)> {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.remove(stream)
    }

    fn put(&self, stream: StreamRef, aggregate: AnyAggregate, version: u64) {
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
        entries.insert(stream, (aggregate, version));
    }
}

/// A stream's aggregate while a batch works on it.
struct Slot {
    aggregate: AnyAggregate,
    /// The version it was loaded at.
    loaded: u64,
    /// The version after the events planned so far.
    next: u64,
    /// Taken from the cache, not read from the store for this batch: another
    /// process may have written since.
    cached: bool,
}

impl Slot {
    fn new(aggregate: AnyAggregate, version: u64) -> Self {
        Self {
            aggregate,
            loaded: version,
            next: version,
            cached: false,
        }
    }

    fn cached(aggregate: AnyAggregate, version: u64) -> Self {
        Self {
            cached: true,
            ..Self::new(aggregate, version)
        }
    }
}

/// The plan of one round: per open command, its append or its settled result.
#[derive(Default)]
struct Plan {
    /// (command index, request), in batch order.
    appends: Vec<(usize, AppendRequest)>,
    /// Commands settled without an append (no events, refused, done before).
    settled: Vec<(usize, Result<Outcome, CommandError>)>,
    /// Refused commands with a command id: perhaps done before.
    refused: Vec<(usize, CommandError)>,
}

/// A command's append and what came of it.
struct Appended {
    index: usize,
    stream: StreamRef,
    /// The ids and types of the events it carried.
    events: Vec<(Uuid, String)>,
    result: Result<AppendResult, StoreError>,
}

/// Executes commands. Cheap to clone.
#[derive(Debug, Clone)]
pub struct CommandService {
    store: EventStore,
    locks: Arc<StreamLocks>,
    /// Recently used aggregates with their versions; a stale one (another
    /// process wrote) shows as a conflict at append and is reloaded.
    cache: Arc<AggregateCache>,
    /// Every append goes through it, so concurrent commands share a transaction
    /// and a cut-off commit is settled before anyone is answered.
    writer: GroupCommitter,
    /// Snapshot every this many events of a stream.
    snapshot_every: u64,
    /// Rounds before giving up on streams that other processes keep changing.
    max_attempts: u32,
    /// The plant's reason catalogue, for machines' decisions.
    reasons: Arc<ReasonsCache>,
}

impl CommandService {
    /// A service whose appends go through a group-commit writer of up to 256
    /// requests a transaction, started on the current Tokio runtime.
    pub fn new(store: EventStore) -> Self {
        Self {
            writer: GroupCommitter::start(store.clone(), DEFAULT_GROUP),
            store,
            locks: Arc::default(),
            cache: Arc::new(AggregateCache::new(50_000)),
            snapshot_every: 200,
            max_attempts: 16,
            reasons: Arc::default(),
        }
    }

    /// Sends appends through a group-commit writer (started on the current
    /// runtime) that puts up to `max_batch` concurrent requests in one transaction.
    pub fn with_group_commit(mut self, max_batch: usize) -> Self {
        self.writer = GroupCommitter::start(self.store.clone(), max_batch);
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

    /// The group-commit writer's figures.
    pub fn group_stats(&self) -> GroupStats {
        self.writer.stats()
    }

    /// Loads an aggregate as it is now, with its version.
    pub async fn load<A: Aggregate>(&self, id: &str) -> Result<(A, u64), StoreError> {
        AggregateRepository::<A>::new(self.store.clone())
            .with_snapshots(self.snapshot_every)
            .load(id)
            .await
    }

    /// An aggregate at `version` or later, with its version: from the cache when it
    /// holds the stream at that version or later (exact: history does not change),
    /// else from the store. For the answer to a command this process just executed
    /// (its `Outcome::stream_version`), this reads nothing.
    pub async fn load_at_least<A: Aggregate + FromAny>(
        &self,
        id: &str,
        version: u64,
    ) -> Result<(A, u64), StoreError> {
        let stream = StreamRef::new(A::TYPE, id);
        {
            let _turn = self.locks.lock(&stream).await;
            if let Some((any, v)) = self.cache.take(&stream) {
                let hit = (v >= version).then(|| A::from_any(&any)).flatten();
                self.cache.put(stream.clone(), any, v);
                if let Some(a) = hit {
                    return Ok((a, v));
                }
            }
        }
        self.load(id).await
    }

    /// Executes one command on the aggregate it is addressed to.
    pub async fn execute(
        &self,
        target: Target,
        ctx: &CommandContext,
    ) -> Result<Outcome, CommandError> {
        self.execute_batch(
            vec![BatchItem::new(target, ctx.clone())],
            Atomicity::EachOnItsOwn,
        )
        .await
        .pop()
        .unwrap_or_else(|| Err(StoreError::Invalid("a command without a result".into()).into()))
    }

    /// Executes a batch of commands (see the module docs); returns each command's
    /// result, in order.
    #[instrument(skip_all, fields(commands = items.len(), ?atomicity))]
    pub async fn execute_batch(
        &self,
        items: Vec<BatchItem>,
        atomicity: Atomicity,
    ) -> Vec<Result<Outcome, CommandError>> {
        if items.is_empty() {
            return Vec::new();
        }
        let streams: Vec<StreamRef> = items.iter().map(BatchItem::stream).collect();
        let mut turns = Vec::new();
        for stream in streams.iter().collect::<BTreeSet<_>>() {
            turns.push(self.locks.lock(stream).await);
        }
        let mut results: Vec<Option<Result<Outcome, CommandError>>> =
            (0..items.len()).map(|_| None).collect();
        let mut open: Vec<usize> = (0..items.len()).collect();
        let mut slots: HashMap<StreamRef, Slot> = HashMap::new();
        for attempt in 0..self.max_attempts {
            if attempt > 0 {
                backoff(attempt).await;
            }
            let first = attempt == 0;
            let batch = Batch {
                items: &items,
                streams: &streams,
                atomicity,
            };
            open = match self
                .round(batch, open, &mut slots, &mut results, first)
                .await
            {
                Ok(open) => open,
                Err(e) => {
                    fail_open(&mut results, e, atomicity);
                    open = Vec::new();
                    break;
                }
            };
            if open.is_empty() {
                break;
            }
        }
        for i in open {
            let stream = &streams[i];
            results[i].get_or_insert_with(|| {
                Err(CommandError::Contention {
                    stream_type: stream.stream_type.clone(),
                    stream_id: stream.stream_id.clone(),
                })
            });
        }
        drop(turns);
        if items
            .iter()
            .any(|item| matches!(item.target, Target::ReasonCatalogue { .. }))
        {
            self.reasons.forget();
        }
        let results: Vec<_> = results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(CommandError::Aborted { index: None })))
            .collect();
        count(&items, &results);
        results
    }

    /// One round: plan the open commands, append, settle. Returns the commands to
    /// plan again (their streams changed under them), or the error that ends the
    /// batch.
    async fn round(
        &self,
        batch: Batch<'_>,
        open: Vec<usize>,
        slots: &mut HashMap<StreamRef, Slot>,
        results: &mut [Option<Result<Outcome, CommandError>>],
        first: bool,
    ) -> Result<Vec<usize>, (usize, CommandError)> {
        let Batch {
            items,
            streams,
            atomicity,
        } = batch;
        // Read before the streams, so that it never widens the window between
        // loading a stream and appending to it (another process's write in that
        // window is a conflict).
        let plant = self
            .plant_reasons(items, &open)
            .await
            .map_err(|e| (open[0], e.into()))?;
        self.load_slots(items, streams, &open, slots, first)
            .await
            .map_err(|e| (open[0], e.into()))?;
        let reasons = plant.as_deref().unwrap_or(ReasonCatalogue::builtin());
        let mut plan = plan(items, streams, &open, slots, reasons);
        if self
            .decided_on_stale(&plan, streams, slots)
            .await
            .map_err(|e| (open[0], e.into()))?
        {
            // A refusal or a no-op decided on an aggregate another process has
            // moved past: nothing would notice at append (nothing is appended), so
            // decide again on what the store holds.
            slots.clear();
            self.load_slots(items, streams, &open, slots, false)
                .await
                .map_err(|e| (open[0], e.into()))?;
            plan = self::plan(items, streams, &open, slots, reasons);
        }
        let done = self.done_before(items, streams, &plan.refused).await;
        let mut done = done.map_err(|e| (open[0], e))?;
        for (i, refusal) in std::mem::take(&mut plan.refused) {
            let settled = match done.remove(&i) {
                Some(original) => Ok(original),
                None => Err(refusal),
            };
            plan.settled.push((i, settled));
        }
        plan.settled.sort_by_key(|(i, _)| *i);
        if atomicity == Atomicity::AllOrNothing {
            if let Some(k) = plan.settled.iter().position(|(_, r)| r.is_err()) {
                // Some aggregates took events of commands before it: forget them.
                slots.clear();
                let (i, r) = plan.settled.swap_remove(k);
                return Err((i, r.err().unwrap_or(CommandError::Aborted { index: None })));
            }
        }
        for (i, r) in plan.settled.drain(..) {
            results[i] = Some(r);
        }
        let appended = self.commit(plan.appends, atomicity).await;
        self.settle(items, appended, slots, results, atomicity)
            .await
    }

    /// Whether a command settled without an append (refused, or deciding nothing)
    /// was decided on a cached aggregate that is behind the store. An append is
    /// checked by its expected version; these are not, so their cached streams'
    /// versions are compared with the store's (one query, only when there are any).
    async fn decided_on_stale(
        &self,
        plan: &Plan,
        streams: &[StreamRef],
        slots: &HashMap<StreamRef, Slot>,
    ) -> Result<bool, StoreError> {
        let unappended = plan
            .settled
            .iter()
            .map(|(i, _)| *i)
            .chain(plan.refused.iter().map(|(i, _)| *i));
        let mut suspects: Vec<StreamRef> = unappended
            .map(|i| &streams[i])
            .filter(|s| slots.get(*s).is_some_and(|slot| slot.cached))
            .cloned()
            .collect();
        if suspects.is_empty() {
            return Ok(false);
        }
        suspects.sort();
        suspects.dedup();
        let current = self.store.stream_versions(&suspects).await?;
        Ok(suspects
            .iter()
            .any(|s| current.get(s).copied().unwrap_or(0) != slots[s].loaded))
    }

    /// The plant's reason catalogue when an open command goes to a machine (the only
    /// aggregate that decides with it); `None` otherwise.
    async fn plant_reasons(
        &self,
        items: &[BatchItem],
        open: &[usize],
    ) -> Result<Option<Arc<ReasonCatalogue>>, StoreError> {
        if !open
            .iter()
            .any(|&i| matches!(items[i].target, Target::Machine { .. }))
        {
            return Ok(None);
        }
        let catalogue = self.reasons.get(&self.store, self.snapshot_every).await?;
        Ok(Some(catalogue))
    }

    /// Brings every open command's stream into `slots`: from the cache, else
    /// from the store. A stream with a pinned version (If-Match) is read from the
    /// store, so that a stale cache never refuses it. Streams read from the store
    /// load [`LOAD_CONCURRENCY`] at a time: a batch of new streams (an evaluator's
    /// alerts, a first report of many machines) costs a few round trips, not two
    /// per stream one after the other.
    async fn load_slots(
        &self,
        items: &[BatchItem],
        streams: &[StreamRef],
        open: &[usize],
        slots: &mut HashMap<StreamRef, Slot>,
        first: bool,
    ) -> Result<(), StoreError> {
        let mut wanted: Vec<(StreamRef, StreamType)> = Vec::new();
        for &i in open {
            let stream = &streams[i];
            if slots.contains_key(stream) || wanted.iter().any(|(s, _)| s == stream) {
                continue;
            }
            let cached = match items[i].ctx.expected_version {
                Some(_) => None,
                None => self.cache.take(stream),
            };
            let stream_type = items[i].target.stream_type();
            match cached {
                Some((aggregate, version)) => {
                    slots.insert(stream.clone(), Slot::cached(aggregate, version));
                }
                // A creation is decided on an empty aggregate without a read (its append
                // expects no stream); after a conflict it is read like any other.
                None if first
                    && items[i].ctx.expected_version.is_none()
                    && items[i].target.creates_stream() =>
                {
                    slots.insert(
                        stream.clone(),
                        Slot::new(AnyAggregate::empty(stream_type), 0),
                    );
                }
                None => wanted.push((stream.clone(), stream_type)),
            }
        }
        let loads = wanted.into_iter().map(|(stream, stream_type)| async move {
            let loaded = AnyAggregate::load(
                &self.store,
                self.snapshot_every,
                stream_type,
                &stream.stream_id,
            )
            .await;
            loaded.map(|(aggregate, version)| (stream, Slot::new(aggregate, version)))
        });
        let mut loaded = futures::stream::iter(loads).buffer_unordered(LOAD_CONCURRENCY);
        while let Some(result) = loaded.next().await {
            let (stream, slot) = result?;
            slots.insert(stream, slot);
        }
        Ok(())
    }

    /// Appends the planned requests: one unit for the whole batch, or one per
    /// stream. Returns each command's result, in the order planned.
    async fn commit(
        &self,
        appends: Vec<(usize, AppendRequest)>,
        atomicity: Atomicity,
    ) -> Vec<Appended> {
        let mut unit_of: HashMap<StreamRef, usize> = HashMap::new();
        let mut grouped: Vec<Vec<(usize, AppendRequest)>> = Vec::new();
        for (i, request) in appends {
            let k = match atomicity {
                Atomicity::AllOrNothing => 0,
                Atomicity::EachOnItsOwn => *unit_of
                    .entry(request.stream.clone())
                    .or_insert(grouped.len()),
            };
            if k == grouped.len() {
                grouped.push(Vec::new());
            }
            grouped[k].push((i, request));
        }
        let mut order = Vec::new();
        let mut units = Vec::with_capacity(grouped.len());
        for unit in grouped {
            let mut requests = Vec::with_capacity(unit.len());
            for (i, request) in unit {
                let events = request
                    .events
                    .iter()
                    .map(|e| (e.event_id, e.event_type.clone()))
                    .collect();
                order.push((i, request.stream.clone(), events));
                requests.push(request);
            }
            units.push(requests);
        }
        if units.iter().all(Vec::is_empty) {
            return Vec::new();
        }
        let results = self.writer.append_units(units).await;
        order
            .into_iter()
            .zip(results)
            .map(|((index, stream, events), result)| Appended {
                index,
                stream,
                events,
                result,
            })
            .collect()
    }

    /// Turns append results into outcomes; keeps the aggregates of streams that
    /// took all their events, forgets the others, and returns the commands to
    /// plan again.
    async fn settle(
        &self,
        items: &[BatchItem],
        appended: Vec<Appended>,
        slots: &mut HashMap<StreamRef, Slot>,
        results: &mut [Option<Result<Outcome, CommandError>>],
        atomicity: Atomicity,
    ) -> Result<Vec<usize>, (usize, CommandError)> {
        let mut again = Vec::new();
        let mut stale: BTreeSet<StreamRef> = BTreeSet::new();
        let mut versions: HashMap<StreamRef, u64> = HashMap::new();
        for Appended {
            index: i,
            stream,
            events,
            result,
        } in appended
        {
            match result {
                Ok(r) => {
                    if r.duplicate {
                        stale.insert(stream.clone());
                    }
                    versions.insert(stream.clone(), r.stream_version);
                    results[i] = Some(Ok(outcome(&items[i], &stream, events, &r)));
                }
                Err(StoreError::Conflict { actual, .. }) => {
                    stale.insert(stream.clone());
                    match items[i].ctx.expected_version {
                        Some(expected) => {
                            let e = CommandError::VersionMismatch {
                                stream_type: stream.stream_type.clone(),
                                expected,
                                actual,
                            };
                            if atomicity == Atomicity::AllOrNothing {
                                return Err((i, e));
                            }
                            results[i] = Some(Err(e));
                        }
                        None => again.push(i),
                    }
                    metrics::counter!("shopfloor_command_conflicts_total", "aggregate" => items[i].target.stream_type().as_str()).increment(1);
                }
                Err(StoreError::Aborted { .. }) => {
                    stale.insert(stream.clone());
                    again.push(i);
                }
                Err(e) => {
                    stale.insert(stream.clone());
                    let e = match e {
                        StoreError::IdempotencyMismatch { .. } => CommandError::Rejected {
                            kind: RejectionKind::Conflict,
                            message: "this idempotency key was already used for another command"
                                .into(),
                        },
                        e => e.into(),
                    };
                    if atomicity == Atomicity::AllOrNothing {
                        return Err((i, e));
                    }
                    results[i] = Some(Err(e));
                }
            }
        }
        self.keep_slots(slots, &stale, &versions).await;
        again.sort_unstable();
        Ok(again)
    }

    /// Puts the aggregates of streams that took all their events back in the
    /// cache (snapshotting a stream that crossed a multiple of `snapshot_every`),
    /// and forgets the stale ones.
    async fn keep_slots(
        &self,
        slots: &mut HashMap<StreamRef, Slot>,
        stale: &BTreeSet<StreamRef>,
        versions: &HashMap<StreamRef, u64>,
    ) {
        for (stream, slot) in slots.drain() {
            if stale.contains(&stream) {
                continue;
            }
            let version = versions.get(&stream).copied().unwrap_or(slot.loaded);
            if version != slot.next {
                continue;
            }
            let n = self.snapshot_every;
            if n > 0 && version / n > slot.loaded / n {
                if let Err(e) = slot
                    .aggregate
                    .save_snapshot(&self.store, &stream.stream_id, version)
                    .await
                {
                    tracing::warn!(%stream, error = %e, "snapshot not saved");
                }
            }
            self.cache.put(stream, slot.aggregate, version);
        }
    }

    /// The outcomes of refused commands that were done before under the same
    /// command id (a retried request after the aggregate moved on), found by
    /// their first derived event ids in one query.
    async fn done_before(
        &self,
        items: &[BatchItem],
        streams: &[StreamRef],
        refused: &[(usize, CommandError)],
    ) -> Result<HashMap<usize, Outcome>, CommandError> {
        let keyed: Vec<(usize, &str)> = refused
            .iter()
            .filter_map(|(i, _)| items[*i].ctx.command_id.as_deref().map(|c| (*i, c)))
            .collect();
        if keyed.is_empty() {
            return Ok(HashMap::new());
        }
        let ids: Vec<Uuid> = keyed
            .iter()
            .map(|&(i, c)| derived_event_id(&streams[i], c, 0))
            .collect();
        let found: Vec<(Uuid, String, String, i64)> = sqlx::query_as(
            "SELECT event_id, stream_type, stream_id, version FROM events WHERE event_id = ANY($1)",
        )
        .bind(&ids)
        .persistent(false)
        .fetch_all(self.store.pool())
        .await
        .map_err(StoreError::from)?;
        let mut done = HashMap::new();
        for (event_id, stream_type, stream_id, version) in found {
            let Some(k) = ids.iter().position(|id| *id == event_id) else {
                continue;
            };
            let (i, command_id) = keyed[k];
            let stream = &streams[i];
            if stream_type != stream.stream_type || stream_id != stream.stream_id {
                continue;
            }
            let from = u64::try_from(version).map_err(|_| {
                StoreError::Invalid(format!("event {event_id} has a negative version"))
            })?;
            done.insert(i, self.original(&items[i], stream, command_id, from).await?);
        }
        Ok(done)
    }

    /// The outcome of a command done before: its events from `from` on.
    async fn original(
        &self,
        item: &BatchItem,
        stream: &StreamRef,
        command_id: &str,
        from: u64,
    ) -> Result<Outcome, CommandError> {
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
        Ok(Outcome {
            stream_type: item.target.stream_type(),
            stream_id: stream.stream_id.clone(),
            stream_version: events.last().map_or(from, |e| e.version),
            events,
            duplicate: true,
        })
    }
}

/// Decides every open command in batch order on its stream's slot (pure: no I/O).
fn plan(
    items: &[BatchItem],
    streams: &[StreamRef],
    open: &[usize],
    slots: &mut HashMap<StreamRef, Slot>,
    reasons: &ReasonCatalogue,
) -> Plan {
    let mut plan = Plan::default();
    for &i in open {
        let item = &items[i];
        let stream = &streams[i];
        let Some(slot) = slots.get_mut(stream) else {
            continue;
        };
        if let Some(expected) = item.ctx.expected_version {
            if expected != slot.next {
                let e = CommandError::VersionMismatch {
                    stream_type: stream.stream_type.clone(),
                    expected,
                    actual: slot.next,
                };
                plan.settled.push((i, Err(e)));
                continue;
            }
        }
        let metadata = item.ctx.event_metadata();
        let command_id = item.ctx.command_id.as_deref();
        match slot
            .aggregate
            .decide(item.target.clone(), reasons, stream, &metadata, command_id)
        {
            Ok(events) if events.is_empty() => {
                plan.settled.push((i, Ok(nothing(item, stream, slot.next))));
            }
            Ok(events) => {
                let expected = match slot.next {
                    0 => ExpectedVersion::NoStream,
                    v => ExpectedVersion::Exact(v),
                };
                slot.next += events.len() as u64;
                let request = AppendRequest {
                    stream: stream.clone(),
                    expected,
                    events,
                };
                plan.appends.push((i, request));
            }
            Err(e @ CommandError::Rejected { .. }) if item.ctx.command_id.is_some() => {
                plan.refused.push((i, e));
            }
            Err(e) => plan.settled.push((i, Err(e))),
        }
    }
    plan
}

/// The outcome of a command that decided no events.
fn nothing(item: &BatchItem, stream: &StreamRef, version: u64) -> Outcome {
    Outcome {
        stream_type: item.target.stream_type(),
        stream_id: stream.stream_id.clone(),
        stream_version: version,
        events: Vec::new(),
        duplicate: false,
    }
}

/// The outcome of an appended (or earlier appended) command.
fn outcome(
    item: &BatchItem,
    stream: &StreamRef,
    events: Vec<(Uuid, String)>,
    r: &AppendResult,
) -> Outcome {
    let events = if r.duplicate {
        Vec::new()
    } else {
        let first_version = (r.stream_version + 1).saturating_sub(events.len() as u64);
        events
            .into_iter()
            .enumerate()
            .map(|(k, (event_id, event_type))| CommittedEvent {
                position: r.first_position + k as i64,
                version: first_version + k as u64,
                event_id,
                event_type,
            })
            .collect()
    };
    Outcome {
        stream_type: item.target.stream_type(),
        stream_id: stream.stream_id.clone(),
        stream_version: r.stream_version,
        events,
        duplicate: r.duplicate,
    }
}

/// Fails every command still without a result: the one that failed with its
/// error; the others with a copy of it, or (all or nothing) as aborted by it.
fn fail_open(
    results: &mut [Option<Result<Outcome, CommandError>>],
    (failed, e): (usize, CommandError),
    atomicity: Atomicity,
) {
    for (i, r) in results.iter_mut().enumerate() {
        if i == failed || r.is_some() {
            continue;
        }
        *r = Some(Err(match atomicity {
            Atomicity::AllOrNothing => CommandError::Aborted {
                index: Some(failed),
            },
            Atomicity::EachOnItsOwn => e.replicate(),
        }));
    }
    results[failed] = Some(Err(e));
}

/// Waits a little before planning again, with jitter, longer each round.
async fn backoff(attempt: u32) {
    let cap = 2u64 << attempt.min(6);
    let jitter = u64::from(Uuid::new_v4().as_u128() as u16) % cap;
    tokio::time::sleep(Duration::from_millis(jitter)).await;
}

/// Counts each command's outcome.
fn count(items: &[BatchItem], results: &[Result<Outcome, CommandError>]) {
    for (item, r) in items.iter().zip(results) {
        let outcome = match r {
            Ok(o) if o.duplicate => "duplicate",
            Ok(_) => "accepted",
            Err(CommandError::Rejected { .. } | CommandError::VersionMismatch { .. }) => "rejected",
            Err(_) => "failed",
        };
        metrics::counter!("shopfloor_commands_total", "aggregate" => item.target.stream_type().as_str(), "outcome" => outcome).increment(1);
    }
}

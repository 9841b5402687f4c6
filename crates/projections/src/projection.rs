//! The projection framework: which read models exist, and how a batch of events
//! is applied to one of them exactly once.
//!
//! # Exactly once, on top of at-least-once delivery
//! A batch is applied in one PostgreSQL transaction that first locks the
//! projection's checkpoint row, skips every event at or below it, applies the
//! rest in position order and moves the checkpoint to the last one. A redelivered
//! event is therefore a no-op, a crash mid-batch rolls everything back, and two
//! instances of one projector serialise on the checkpoint row (ADR 0006).
//!
//! Positions in the log are gapless (ADR 0002). When the events handed in do not
//! start right after the checkpoint (JetStream redelivered out of order, a message
//! went to another instance, NATS lost its tail), the missing events are read
//! from the event store first: PostgreSQL is the source of truth, JetStream the
//! transport.
//!
//! # Set-based application
//! A chunk is applied in one savepoint by its read model's one implementation:
//! the model folds the chunk in memory and writes it with a few statements
//! (facts with one binary COPY per table; status rows loaded once, folded,
//! upserted once per key; see `models`). A single event is a chunk of one.
//! Live projectors, catch-up, replay and verify all go through it. Catch-up,
//! replay and verify read the log once, in pages of [`CATCH_UP_CHUNK`] events
//! decoded once, and apply each page to every projection side by side
//! (`catch_up_all`).
//!
//! # Poison events
//! An event that cannot be applied (it does not decode, a value does not fit,
//! or the database refuses its data) is parked in `projection_parked` with its
//! error and the checkpoint moves past it: one bad event never stops the others.
//! Events that do not decode are left out of the chunk and parked. When anything
//! else in a chunk fails, the chunk is rolled back to its savepoint and split in
//! halves, applied in order, down to the single events that fail on their own,
//! which are parked; so the common case costs no extra round trips and a poison
//! event costs a few.
//!
//! # Schemas
//! Every statement of the models uses unqualified table names. Replay and verify
//! run the same code with `SET LOCAL search_path` pointing at a scratch schema.

use std::collections::HashMap;
use std::ops::Range;

use shopfloor_eventstore::{
    Checkpoint, CheckpointError, EventStore, Reader, RecordedEvent, StoreError,
};
use sqlx::{Acquire, PgConnection, PgPool};
use tracing::{debug, warn};

use crate::error::{ApplyError, ProjectionError};
use crate::live::LiveUpdate;
use crate::models::{self, Decoded};

/// Most events applied in one transaction from a batch handed in (projectors).
pub const MAX_CHUNK: usize = 1_000;

/// Most events read and applied in one transaction when reading the store
/// directly (catch-up, replay, verify). Set-based application makes a chunk
/// cost a few statements whatever its size; beyond a few thousand events bigger
/// chunks only cost memory (a page of decoded events is held while the next one
/// is read): replaying 500k events took the same time with pages of 5k to 40k
/// events, at 70 MB to 380 MB of peak memory.
pub const CATCH_UP_CHUNK: usize = 5_000;

/// A read model and the projector that builds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Projection {
    /// `rm_machines`: the machine status board.
    Machines,
    /// `rm_state_facts`, `rm_stop_classifications`, `rm_parts_facts`: the facts
    /// KPIs, state intervals and downtime reports are computed from.
    MachineHistory,
    /// `rm_orders`: production orders, progress, yield.
    Orders,
    /// `rm_maintenance_tasks`: the maintenance schedule.
    Maintenance,
    /// `rm_inventory_levels`, `rm_inventory_movements`: stock and its ledger; `rm_lots`,
    /// `rm_lot_stock`, `rm_lot_edges`, `rm_lot_movements`: lots and genealogy (ADR 0057).
    Inventory,
    /// `rm_operators`, `rm_labour_sessions`: operators and their clock-ons (ADR 0036).
    People,
    /// `rm_spc_characteristics`, `rm_spc_points`, `rm_spc_signals`: SPC charts (ADR 0056).
    Spc,
    /// `rm_hierarchy_nodes`, `rm_hierarchy_parents`, `rm_hierarchy_placements`: the
    /// equipment hierarchy with its history (ADR 0062).
    Hierarchy,
}

impl Projection {
    pub const ALL: [Projection; 8] = [
        Projection::Machines,
        Projection::MachineHistory,
        Projection::Orders,
        Projection::Maintenance,
        Projection::Inventory,
        Projection::People,
        Projection::Spc,
        Projection::Hierarchy,
    ];

    /// The stable name: checkpoint key, consumer name suffix, `--projection` value.
    pub fn name(self) -> &'static str {
        match self {
            Projection::Machines => "machines",
            Projection::MachineHistory => "machine_history",
            Projection::Orders => "orders",
            Projection::Maintenance => "maintenance",
            Projection::Inventory => "inventory",
            Projection::People => "people",
            Projection::Spc => "spc",
            Projection::Hierarchy => "hierarchy",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }

    /// The read-model tables it owns.
    pub fn tables(self) -> &'static [&'static str] {
        match self {
            Projection::Machines => &["rm_machines"],
            Projection::MachineHistory => &[
                "rm_state_facts",
                "rm_stop_classifications",
                "rm_parts_facts",
            ],
            Projection::Orders => &["rm_orders", "rm_order_facts"],
            Projection::Maintenance => &["rm_maintenance_tasks"],
            Projection::Inventory => &[
                "rm_inventory_levels",
                "rm_inventory_movements",
                "rm_lots",
                "rm_lot_stock",
                "rm_lot_edges",
                "rm_lot_movements",
            ],
            Projection::People => &["rm_operators", "rm_labour_sessions"],
            Projection::Spc => &["rm_spc_characteristics", "rm_spc_points", "rm_spc_signals"],
            Projection::Hierarchy => &[
                "rm_hierarchy_nodes",
                "rm_hierarchy_parents",
                "rm_hierarchy_placements",
            ],
        }
    }

    /// The stream type whose events it reads.
    pub(crate) fn stream_type(self) -> &'static str {
        match self {
            Projection::Machines | Projection::MachineHistory => "machine",
            Projection::Orders => "production_order",
            Projection::Maintenance => "maintenance_task",
            Projection::Inventory => "inventory_item",
            Projection::People => "operator",
            Projection::Spc => "spc_characteristic",
            Projection::Hierarchy => "equipment_hierarchy",
        }
    }
}

impl std::fmt::Display for Projection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What applying events did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Applied {
    /// The checkpoint afterwards.
    pub position: i64,
    /// Events applied (not counting skipped duplicates).
    pub applied: usize,
    /// Events parked as poison.
    pub parked: usize,
    /// Live updates, at most one per topic (the last).
    pub updates: Vec<LiveUpdate>,
}

/// Points the transaction on `conn` at `schema` (for replay into a scratch schema).
pub(crate) async fn set_schema(conn: &mut PgConnection, schema: &str) -> Result<(), sqlx::Error> {
    sqlx::query(&format!("SET LOCAL search_path TO {}", quote_ident(schema)))
        .execute(conn)
        .await?;
    Ok(())
}

/// `"name"`, with inner quotes doubled.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Locks the projection's checkpoint row until the transaction on `conn` ends
/// (creating it at 0) and returns it.
pub(crate) async fn lock_checkpoint(
    conn: &mut PgConnection,
    projection: Projection,
) -> Result<Checkpoint, CheckpointError> {
    Checkpoint::lock(conn, Reader::Projection, projection.name()).await
}

/// The checkpoint of a projection (0 when it never ran).
pub async fn checkpoint(pool: &PgPool, projection: Projection) -> Result<i64, CheckpointError> {
    Ok(
        Checkpoint::load(pool, Reader::Projection, projection.name())
            .await?
            .position(),
    )
}

/// Applies `events` (contiguous, in position order, all after the checkpoint) in
/// the transaction open on `conn`, parking poison events; `decoded` holds the
/// events decoded (at least for this projection's stream type). Returns the
/// number applied and parked.
pub(crate) async fn apply_events(
    conn: &mut PgConnection,
    projection: Projection,
    events: &[RecordedEvent],
    decoded: &[Decoded],
    updates: &mut Vec<LiveUpdate>,
) -> Result<(usize, usize), sqlx::Error> {
    debug_assert_eq!(events.len(), decoded.len());
    if !events
        .iter()
        .any(|e| e.stream_type == projection.stream_type())
    {
        // Nothing for this read model: no statement at all.
        return Ok((events.len(), 0));
    }
    // Events that do not decode are left out of the chunks and parked.
    let undecodable: Vec<(&RecordedEvent, &str)> = events
        .iter()
        .zip(decoded)
        .filter_map(|(event, d)| match d {
            Decoded::Poison(error) if event.stream_type == projection.stream_type() => {
                Some((event, error.as_str()))
            }
            _ => None,
        })
        .collect();
    let mut parked = apply_or_split(conn, projection, events, decoded, updates).await?;
    for (event, error) in &undecodable {
        park(conn, projection, event, error).await?;
    }
    parked += undecodable.len();
    Ok((events.len() - parked, parked))
}

/// Applies `events` as one chunk, in a savepoint; a chunk that holds a poison
/// event is rolled back and split in halves, applied in order, down to single
/// events: the ones that fail on their own are parked. Every event is therefore
/// applied to the state the events before it left, however the log was cut into
/// chunks, and a chunk with one poison event costs a few more statements, not
/// one per event. Returns the number of events parked.
async fn apply_or_split(
    conn: &mut PgConnection,
    projection: Projection,
    events: &[RecordedEvent],
    decoded: &[Decoded],
    updates: &mut Vec<LiveUpdate>,
) -> Result<usize, sqlx::Error> {
    let mut parked = 0;
    // Ranges still to apply, the next one last.
    let mut pending: Vec<Range<usize>> = Vec::new();
    pending.push(0..events.len());
    while let Some(range) = pending.pop() {
        let chunk = (&events[range.clone()], &decoded[range.clone()]);
        let mut sp = conn.begin().await?;
        match models::apply_chunk(projection, &mut sp, chunk.0, chunk.1).await {
            Ok(u) => {
                sp.commit().await?;
                updates.extend(u);
            }
            Err(ApplyError::Poison(reason)) => {
                sp.rollback().await?;
                if let [event] = chunk.0 {
                    park(conn, projection, event, &reason).await?;
                    parked += 1;
                    continue;
                }
                debug!(
                    projection = projection.name(),
                    first = chunk.0.first().map(|e| e.position),
                    n = chunk.0.len(),
                    %reason,
                    "chunk split"
                );
                metrics::counter!("shopfloor_projection_slow_chunks_total", "projection" => projection.name())
                    .increment(1);
                let middle = range.start + range.len() / 2;
                pending.push(middle..range.end);
                pending.push(range.start..middle);
            }
            Err(ApplyError::Transient(e)) => return Err(e),
        }
    }
    Ok(parked)
}

async fn park(
    conn: &mut PgConnection,
    projection: Projection,
    event: &RecordedEvent,
    error: &str,
) -> Result<(), sqlx::Error> {
    warn!(
        projection = projection.name(),
        position = event.position,
        event_type = %event.event_type,
        %error,
        "event parked"
    );
    metrics::counter!("shopfloor_projection_parked_total", "projection" => projection.name())
        .increment(1);
    sqlx::query(
        "INSERT INTO projection_parked \
         (projection, position, event_id, stream_type, stream_id, event_type, error, recorded_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (projection, position) DO NOTHING",
    )
    .bind(projection.name())
    .bind(event.position)
    .bind(event.event_id)
    .bind(&event.stream_type)
    .bind(&event.stream_id)
    .bind(&event.event_type)
    .bind(error)
    .bind(event.recorded_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// Applies `incoming` events to `projection` exactly once: skips what is at or
/// below the checkpoint, fills gaps from the event store, commits a transaction
/// per chunk. With `schema`, works on that schema's tables (replay/verify).
pub async fn process(
    pool: &PgPool,
    store: &EventStore,
    projection: Projection,
    mut incoming: Vec<RecordedEvent>,
    schema: Option<&str>,
) -> Result<Applied, ProjectionError> {
    incoming.sort_by_key(|e| e.position);
    incoming.dedup_by_key(|e| e.position);
    let decoded = Decoded::all(&incoming, &[projection]);
    let mut updates = Vec::new();
    let mut result = process_decoded(
        pool,
        store,
        projection,
        &incoming,
        &decoded,
        schema,
        MAX_CHUNK,
        &mut updates,
    )
    .await?;
    result.updates = coalesce(updates);
    Ok(result)
}

/// [`process`] of events sorted by position, without duplicates, decoded at
/// least for `projection`, in transactions of at most `chunk` events; the live
/// updates are appended to `updates` (not coalesced).
#[allow(clippy::too_many_arguments)]
async fn process_decoded(
    pool: &PgPool,
    store: &EventStore,
    projection: Projection,
    incoming: &[RecordedEvent],
    decoded: &[Decoded],
    schema: Option<&str>,
    chunk: usize,
    updates: &mut Vec<LiveUpdate>,
) -> Result<Applied, ProjectionError> {
    let mut result = Applied::default();
    let mut next = 0;
    loop {
        let mut tx = pool.begin().await?;
        if let Some(schema) = schema {
            set_schema(&mut tx, schema).await?;
        }
        let mut locked = lock_checkpoint(&mut tx, projection).await?;
        let checkpoint = locked.position();
        result.position = checkpoint;
        while next < incoming.len() && incoming[next].position <= checkpoint {
            next += 1;
        }
        let Some(first) = incoming.get(next) else {
            tx.commit().await?;
            break;
        };
        let gap_fill;
        let gap_decoded;
        let (events, decoded): (&[RecordedEvent], &[Decoded]) = if first.position == checkpoint + 1
        {
            // The contiguous run from the checkpoint on.
            let mut end = next + 1;
            while end < incoming.len()
                && end - next < chunk
                && incoming[end].position == incoming[end - 1].position + 1
            {
                end += 1;
            }
            let run = (&incoming[next..end], &decoded[next..end]);
            next = end;
            run
        } else {
            let missing = usize::try_from(first.position - checkpoint - 1).unwrap_or(chunk);
            gap_fill = store.read_all(checkpoint, missing.min(chunk)).await?;
            metrics::counter!("shopfloor_projection_gap_filled_total", "projection" => projection.name())
                    .increment(gap_fill.len() as u64);
            gap_decoded = Decoded::all(&gap_fill, &[projection]);
            (&gap_fill, &gap_decoded)
        };
        let Some(last) = events.last() else {
            // The store has nothing after the checkpoint: nothing to fill from.
            tx.commit().await?;
            break;
        };
        let last = last.position;
        let (applied, parked) = apply_events(&mut tx, projection, events, decoded, updates).await?;
        locked.advance(&mut *tx, last).await?;
        tx.commit().await?;
        result.position = last;
        result.applied += applied;
        result.parked += parked;
    }
    Ok(result)
}

/// The last update of each topic, in the order of their last occurrence.
fn coalesce(updates: Vec<LiveUpdate>) -> Vec<LiveUpdate> {
    let mut last: HashMap<String, usize> = HashMap::new();
    for (i, u) in updates.iter().enumerate() {
        last.insert(u.topic.clone(), i);
    }
    updates
        .into_iter()
        .enumerate()
        .filter(|(i, u)| last.get(&u.topic) == Some(i))
        .map(|(_, u)| u)
        .collect()
}

/// Brings `projection` up to the head of the event store, reading the store
/// directly (no NATS). What a projector does at start; handy for tools and tests.
pub async fn apply_from_store(
    pool: &PgPool,
    projection: Projection,
) -> Result<Applied, ProjectionError> {
    let store = EventStore::new(pool.clone());
    let head = store.head_position().await?;
    catch_up(pool, &store, projection, None, head, &|_| {}).await
}

/// Applies the store's events after the projection's checkpoint up to `up_to`
/// (inclusive), in chunks; `progress` gets the checkpoint after each chunk.
pub(crate) async fn catch_up(
    pool: &PgPool,
    store: &EventStore,
    projection: Projection,
    schema: Option<&str>,
    up_to: i64,
    progress: &(dyn Fn(i64) + Send + Sync),
) -> Result<Applied, ProjectionError> {
    let mut all = catch_up_all(pool, store, &[(projection, up_to)], schema, progress).await?;
    Ok(all.pop().unwrap_or_default())
}

/// The events of one page of the log, decoded once for every projection.
struct Page {
    events: Vec<RecordedEvent>,
    decoded: Vec<Decoded>,
}

/// Aborts the task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Brings each `(projection, up_to)` from its checkpoint up to `up_to`
/// (inclusive), reading the store once for all of them: a reader task reads
/// the log a page ([`CATCH_UP_CHUNK`] events) ahead and decodes each event once;
/// each page is applied to every projection side by side, one transaction per
/// projection and page, each on its own connection. `progress` gets the lowest
/// checkpoint after each page. Returns what was applied, per projection.
pub(crate) async fn catch_up_all(
    pool: &PgPool,
    store: &EventStore,
    targets: &[(Projection, i64)],
    schema: Option<&str>,
    progress: &(dyn Fn(i64) + Send + Sync),
) -> Result<Vec<Applied>, ProjectionError> {
    // Where each one stands.
    let mut totals = Vec::with_capacity(targets.len());
    for (p, _) in targets {
        let mut ignored = Vec::new();
        let at = process_decoded(
            pool,
            store,
            *p,
            &[],
            &[],
            schema,
            CATCH_UP_CHUNK,
            &mut ignored,
        )
        .await?;
        totals.push(at);
    }
    let mut updates: Vec<Vec<LiveUpdate>> = targets.iter().map(|_| Vec::new()).collect();
    let behind = |totals: &[Applied]| -> Vec<usize> {
        (0..targets.len())
            .filter(|&i| totals[i].position < targets[i].1)
            .collect()
    };
    let start = behind(&totals)
        .into_iter()
        .map(|i| totals[i].position)
        .min();
    let end = targets.iter().map(|t| t.1).max().unwrap_or(0);
    if let Some(start) = start {
        let projections: Vec<Projection> = targets.iter().map(|t| t.0).collect();
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Page, StoreError>>(1);
        let reader_store = store.clone();
        let _reader = AbortOnDrop(tokio::spawn(async move {
            let mut after = start;
            while after < end {
                let limit = usize::try_from(end - after)
                    .unwrap_or(CATCH_UP_CHUNK)
                    .min(CATCH_UP_CHUNK);
                let events = match reader_store.read_all(after, limit).await {
                    Ok(events) => events,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                };
                let Some(last) = events.last() else { return };
                after = last.position;
                let decoded = Decoded::all(&events, &projections);
                if tx.send(Ok(Page { events, decoded })).await.is_err() {
                    return;
                }
            }
        }));
        while let Some(page) = rx.recv().await {
            let page = page?;
            let work = behind(&totals).into_iter().map(|i| {
                let (projection, up_to) = targets[i];
                let page = &page;
                async move {
                    let n = page.events.partition_point(|e| e.position <= up_to);
                    let mut u = Vec::new();
                    let done = process_decoded(
                        pool,
                        store,
                        projection,
                        &page.events[..n],
                        &page.decoded[..n],
                        schema,
                        CATCH_UP_CHUNK,
                        &mut u,
                    )
                    .await?;
                    Ok::<_, ProjectionError>((i, done, u))
                }
            });
            for (i, done, u) in futures::future::try_join_all(work).await? {
                totals[i].position = done.position;
                totals[i].applied += done.applied;
                totals[i].parked += done.parked;
                updates[i].extend(u);
            }
            // Freeing a page's events takes a while: not on the way of the next.
            drop(tokio::task::spawn_blocking(move || drop(page)));
            let lowest = (0..targets.len())
                .map(|i| totals[i].position.min(targets[i].1))
                .min()
                .unwrap_or(0);
            progress(lowest);
            if behind(&totals).is_empty() {
                break;
            }
        }
    }
    for (total, u) in totals.iter_mut().zip(updates) {
        total.updates = coalesce(u);
    }
    Ok(totals)
}

/// Applies the store's events after the checkpoint up to `up_to` inside the
/// transaction open on `conn` (whose `search_path` chooses the schema). Only
/// one short-lived pool connection is used besides `conn` (to read the store),
/// so it is safe while other sessions wait on locks this transaction holds.
/// Returns the checkpoint reached.
pub(crate) async fn top_up_in(
    conn: &mut PgConnection,
    store: &EventStore,
    projection: Projection,
    up_to: i64,
) -> Result<i64, ProjectionError> {
    let mut checkpoint = lock_checkpoint(conn, projection).await?;
    let mut position = checkpoint.position();
    let mut ignored = Vec::new();
    while position < up_to {
        let limit = usize::try_from(up_to - position)
            .unwrap_or(CATCH_UP_CHUNK)
            .min(CATCH_UP_CHUNK);
        let events = store.read_all(position, limit).await?;
        let Some(last) = events.last().map(|e| e.position) else {
            break;
        };
        let decoded = Decoded::all(&events, &[projection]);
        apply_events(conn, projection, &events, &decoded, &mut ignored).await?;
        checkpoint.advance(&mut *conn, last).await?;
        position = last;
        ignored.clear();
    }
    Ok(position)
}

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
//! # Poison events
//! An event that cannot be applied (it does not decode, or the database refuses
//! its data) is parked in `projection_parked` with its error and the checkpoint
//! moves past it: one bad event never stops the others. The batch is first tried
//! in one savepoint; only when an event fails is it redone with one savepoint per
//! event, so the common case costs no extra round trips.
//!
//! # Schemas
//! Every statement of the models uses unqualified table names. Replay and verify
//! run the same code with `SET LOCAL search_path` pointing at a scratch schema.

use std::collections::HashMap;

use shopfloor_eventstore::{EventStore, RecordedEvent};
use sqlx::{Acquire, PgConnection, PgPool};
use tracing::warn;

use crate::error::{ApplyError, ProjectionError};
use crate::live::LiveUpdate;
use crate::models;

/// Most events applied in one transaction.
pub const MAX_CHUNK: usize = 1_000;

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
    /// `rm_inventory_levels`, `rm_inventory_movements`: stock and its ledger.
    Inventory,
}

impl Projection {
    pub const ALL: [Projection; 5] = [
        Projection::Machines,
        Projection::MachineHistory,
        Projection::Orders,
        Projection::Maintenance,
        Projection::Inventory,
    ];

    /// The stable name: checkpoint key, consumer name suffix, `--projection` value.
    pub fn name(self) -> &'static str {
        match self {
            Projection::Machines => "machines",
            Projection::MachineHistory => "machine_history",
            Projection::Orders => "orders",
            Projection::Maintenance => "maintenance",
            Projection::Inventory => "inventory",
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
            Projection::Orders => &["rm_orders"],
            Projection::Maintenance => &["rm_maintenance_tasks"],
            Projection::Inventory => &["rm_inventory_levels", "rm_inventory_movements"],
        }
    }

    /// Applies one event; the live updates it causes.
    pub(crate) async fn apply(
        self,
        conn: &mut PgConnection,
        event: &RecordedEvent,
    ) -> Result<Vec<LiveUpdate>, ApplyError> {
        match self {
            Projection::Machines => models::machines::apply(conn, event).await,
            Projection::MachineHistory => models::history::apply(conn, event).await,
            Projection::Orders => models::orders::apply(conn, event).await,
            Projection::Maintenance => models::maintenance::apply(conn, event).await,
            Projection::Inventory => models::inventory::apply(conn, event).await,
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

/// Locks the projection's checkpoint row (creating it at 0) and returns it.
pub(crate) async fn lock_checkpoint(
    conn: &mut PgConnection,
    projection: Projection,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO projection_checkpoints (projection, position) VALUES ($1, 0) \
         ON CONFLICT (projection) DO UPDATE SET position = projection_checkpoints.position \
         RETURNING position",
    )
    .bind(projection.name())
    .fetch_one(conn)
    .await
}

pub(crate) async fn save_checkpoint(
    conn: &mut PgConnection,
    projection: Projection,
    position: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE projection_checkpoints SET position = $2 WHERE projection = $1")
        .bind(projection.name())
        .bind(position)
        .execute(conn)
        .await?;
    Ok(())
}

/// The checkpoint of a projection (0 when it never ran).
pub async fn checkpoint(pool: &PgPool, projection: Projection) -> Result<i64, sqlx::Error> {
    let p: Option<i64> =
        sqlx::query_scalar("SELECT position FROM projection_checkpoints WHERE projection = $1")
            .bind(projection.name())
            .fetch_optional(pool)
            .await?;
    Ok(p.unwrap_or(0))
}

/// Applies `events` (contiguous, in position order, all after the checkpoint) in
/// the transaction open on `conn`, parking poison events. Returns the number
/// applied and parked.
pub(crate) async fn apply_events(
    conn: &mut PgConnection,
    projection: Projection,
    events: &[RecordedEvent],
    updates: &mut Vec<LiveUpdate>,
) -> Result<(usize, usize), sqlx::Error> {
    // Fast path: the whole chunk in one savepoint.
    let mut fast = Vec::new();
    let mut poisoned = false;
    {
        let mut sp = conn.begin().await?;
        for event in events {
            match projection.apply(&mut sp, event).await {
                Ok(u) => fast.extend(u),
                Err(ApplyError::Poison(_)) => {
                    poisoned = true;
                    break;
                }
                Err(ApplyError::Transient(e)) => return Err(e),
            }
        }
        if poisoned {
            sp.rollback().await?;
        } else {
            sp.commit().await?;
        }
    }
    if !poisoned {
        updates.extend(fast);
        return Ok((events.len(), 0));
    }
    // Slow path: one savepoint per event, parking those that fail.
    let (mut applied, mut parked) = (0, 0);
    for event in events {
        let mut sp = conn.begin().await?;
        match projection.apply(&mut sp, event).await {
            Ok(u) => {
                sp.commit().await?;
                updates.extend(u);
                applied += 1;
            }
            Err(ApplyError::Poison(error)) => {
                sp.rollback().await?;
                park(conn, projection, event, &error).await?;
                parked += 1;
            }
            Err(ApplyError::Transient(e)) => return Err(e),
        }
    }
    Ok((applied, parked))
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
    let mut result = Applied::default();
    let mut updates = Vec::new();
    let mut next = 0;
    loop {
        let mut tx = pool.begin().await?;
        if let Some(schema) = schema {
            set_schema(&mut tx, schema).await?;
        }
        let checkpoint = lock_checkpoint(&mut tx, projection).await?;
        result.position = checkpoint;
        while next < incoming.len() && incoming[next].position <= checkpoint {
            next += 1;
        }
        let Some(first) = incoming.get(next) else {
            tx.commit().await?;
            break;
        };
        let gap_fill;
        let chunk: &[RecordedEvent] = if first.position == checkpoint + 1 {
            // The contiguous run from the checkpoint on.
            let mut end = next + 1;
            while end < incoming.len()
                && end - next < MAX_CHUNK
                && incoming[end].position == incoming[end - 1].position + 1
            {
                end += 1;
            }
            let chunk = &incoming[next..end];
            next = end;
            chunk
        } else {
            let missing = usize::try_from(first.position - checkpoint - 1).unwrap_or(MAX_CHUNK);
            gap_fill = store.read_all(checkpoint, missing.min(MAX_CHUNK)).await?;
            metrics::counter!("shopfloor_projection_gap_filled_total", "projection" => projection.name())
                .increment(gap_fill.len() as u64);
            &gap_fill
        };
        let Some(last) = chunk.last() else {
            // The store has nothing after the checkpoint: nothing to fill from.
            tx.commit().await?;
            break;
        };
        let last = last.position;
        let (applied, parked) = apply_events(&mut tx, projection, chunk, &mut updates).await?;
        save_checkpoint(&mut tx, projection, last).await?;
        tx.commit().await?;
        result.position = last;
        result.applied += applied;
        result.parked += parked;
    }
    result.updates = coalesce(updates);
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
    let mut total = process(pool, store, projection, Vec::new(), schema).await?;
    let mut updates = Vec::new();
    while total.position < up_to {
        let limit = usize::try_from(up_to - total.position)
            .unwrap_or(MAX_CHUNK)
            .min(MAX_CHUNK);
        let events = store.read_all(total.position, limit).await?;
        if events.is_empty() {
            break;
        }
        let done = process(pool, store, projection, events, schema).await?;
        if done.position <= total.position {
            break;
        }
        total.position = done.position;
        total.applied += done.applied;
        total.parked += done.parked;
        updates.extend(done.updates);
        progress(total.position);
    }
    total.updates = coalesce(updates);
    Ok(total)
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
    let mut position = lock_checkpoint(conn, projection).await?;
    let mut ignored = Vec::new();
    while position < up_to {
        let limit = usize::try_from(up_to - position)
            .unwrap_or(MAX_CHUNK)
            .min(MAX_CHUNK);
        let events = store.read_all(position, limit).await?;
        let Some(last) = events.last().map(|e| e.position) else {
            break;
        };
        apply_events(conn, projection, &events, &mut ignored).await?;
        save_checkpoint(conn, projection, last).await?;
        position = last;
        ignored.clear();
    }
    Ok(position)
}

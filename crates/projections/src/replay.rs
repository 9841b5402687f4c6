//! Replay and verify: read models rebuilt from the event store alone (no NATS).
//!
//! Both build into a scratch schema (`shopfloor_scratch_<id>`, unlogged tables
//! created `LIKE` the live ones, the append-only fact tables without indexes)
//! with the very code the projectors run, pointed there by `search_path`: the
//! same history always gives the same rows, because every column is derived from
//! the events (never from the clock). The log is read once, in pages shared by
//! every read model (`projection::catch_up_all`), and applied set-based.
//!
//! - [`replay()`] rebuilds the chosen read models without stopping anything: it
//!   builds the scratch copy, then, in one transaction holding the projections'
//!   checkpoint rows (projectors wait), tops it up to the log's head and swaps its
//!   rows and checkpoint into the live tables. Readers see the old rows until the
//!   commit, never a half-built model.
//! - [`verify`] builds every read model up to the live checkpoints, then, in one
//!   `REPEATABLE READ` transaction (a snapshot of the live tables and their
//!   checkpoints; projectors are not held up), tops the scratch copy up to those
//!   checkpoints and compares every table row by row (`EXCEPT ALL` both ways),
//!   plus the set of parked events. Projectors that lag behind the log are
//!   therefore compared at their own position.
//!
//! The final top-ups run on the transaction's own connection, so sessions
//! waiting on its locks (projectors, during a replay's swap) cannot starve it of
//! pool connections.

use std::fmt;

use serde::Serialize;
use shopfloor_eventstore::{Checkpoint, EventStore, Reader};
use sqlx::PgPool;
use tracing::{info, instrument, warn};
use uuid::Uuid;

use crate::error::ProjectionError;
use crate::projection::{self, quote_ident, Projection};

/// The tables only ever appended to, keyed by their event's position.
const APPEND_ONLY: [&str; 6] = [
    "rm_state_facts",
    "rm_stop_classifications",
    "rm_parts_facts",
    "rm_inventory_movements",
    "rm_lot_edges",
    "rm_lot_movements",
];

/// Most differences reported per table.
const MAX_DIFFERENCES_PER_TABLE: i64 = 1_000;

/// Which side a differing row is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// In the live read model, not in the rebuilt one.
    LiveOnly,
    /// In the rebuilt read model, not in the live one.
    RebuiltOnly,
}

/// One row that differs between the live and the rebuilt read model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Difference {
    pub projection: String,
    pub table: String,
    pub side: Side,
    pub row: serde_json::Value,
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let side = match self.side {
            Side::LiveOnly => "only in the live read model",
            Side::RebuiltOnly => "only in the rebuilt read model",
        };
        write!(
            f,
            "{}.{}: {side}: {}",
            self.projection, self.table, self.row
        )
    }
}

/// What a replay did, per projection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Replayed {
    pub projection: String,
    /// The checkpoint the rebuilt read model stands at.
    pub position: i64,
    pub parked: usize,
}

fn select(projection: Option<&str>) -> Result<Vec<Projection>, ProjectionError> {
    match projection {
        None => Ok(Projection::ALL.to_vec()),
        Some(name) => Projection::from_name(name)
            .map(|p| vec![p])
            .ok_or_else(|| ProjectionError::UnknownProjection(name.to_owned())),
    }
}

/// A scratch schema with empty copies of the projections' tables.
struct Scratch {
    live: String,
    schema: String,
}

impl Scratch {
    async fn create(pool: &PgPool, projections: &[Projection]) -> Result<Self, ProjectionError> {
        let live: String = sqlx::query_scalar("SELECT current_schema()")
            .fetch_one(pool)
            .await?;
        let schema = format!(
            "shopfloor_scratch_{}",
            &Uuid::new_v4().simple().to_string()[..12]
        );
        let mut tx = pool.begin().await?;
        sqlx::query(&format!("CREATE SCHEMA {}", quote_ident(&schema)))
            .execute(&mut *tx)
            .await?;
        let mut tables = vec!["projection_checkpoints", "projection_parked"];
        for p in projections {
            tables.extend_from_slice(p.tables());
        }
        for t in tables {
            // Scratch tables are unlogged (they are thrown away after a crash
            // anyway), and the append-only fact tables get no indexes: nothing
            // reads them while they are built, and their keys contain the event's
            // position, which each projection applies once. The live tables keep
            // every index and check every key again when the rows are swapped in.
            let indexes = if APPEND_ONLY.contains(&t) {
                "EXCLUDING INDEXES"
            } else {
                ""
            };
            sqlx::query(&format!(
                "CREATE UNLOGGED TABLE {s}.{t} (LIKE {l}.{t} INCLUDING ALL {indexes})",
                s = quote_ident(&schema),
                l = quote_ident(&live),
                t = quote_ident(t),
            ))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(Self { live, schema })
    }

    async fn drop(self, pool: &PgPool) {
        let dropped = sqlx::query(&format!(
            "DROP SCHEMA IF EXISTS {} CASCADE",
            quote_ident(&self.schema)
        ))
        .execute(pool)
        .await;
        if let Err(e) = dropped {
            warn!(schema = %self.schema, error = %e, "scratch schema not dropped");
        }
    }

    fn live(&self, table: &str) -> String {
        format!("{}.{}", quote_ident(&self.live), quote_ident(table))
    }

    fn scratch(&self, table: &str) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(table))
    }
}

/// Rebuilds `projection` (or every read model) from the event store and swaps
/// the result into the live tables. `progress(position, head)` is called as the
/// rebuild advances.
#[instrument(skip(pool, progress), err)]
pub async fn replay(
    pool: &PgPool,
    projection: Option<&str>,
    progress: impl Fn(i64, i64) + Send + Sync,
) -> Result<Vec<Replayed>, ProjectionError> {
    let projections = select(projection)?;
    let scratch = Scratch::create(pool, &projections).await?;
    let result = replay_into(pool, &projections, &scratch, &progress).await;
    scratch.drop(pool).await;
    result
}

async fn replay_into(
    pool: &PgPool,
    projections: &[Projection],
    scratch: &Scratch,
    progress: &(dyn Fn(i64, i64) + Send + Sync),
) -> Result<Vec<Replayed>, ProjectionError> {
    let store = EventStore::new(pool.clone());
    let head = store.head_position().await?;
    // The read models are independent (their own tables and checkpoint rows): the
    // log is read once and each page applied to all of them side by side, each on
    // its own connection.
    let targets: Vec<(Projection, i64)> = projections.iter().map(|p| (*p, head)).collect();
    let started = std::time::Instant::now();
    projection::catch_up_all(pool, &store, &targets, Some(&scratch.schema), &|pos| {
        progress(pos, head)
    })
    .await?;
    info!(
        head,
        secs = started.elapsed().as_secs_f64(),
        "read models rebuilt in the scratch schema"
    );
    let started = std::time::Instant::now();
    // Swap: hold the live checkpoints (projectors wait), top up, copy.
    let mut tx = pool.begin().await?;
    let mut live = Vec::with_capacity(projections.len());
    for p in projections {
        live.push(projection::lock_checkpoint(&mut tx, *p).await?);
    }
    let head = store.head_position().await?;
    let mut report = Vec::new();
    for (p, live) in projections.iter().zip(&mut live) {
        // The top-up runs in this transaction, on the scratch schema.
        projection::set_schema(&mut tx, &scratch.schema).await?;
        let position = projection::top_up_in(&mut tx, &store, *p, head).await?;
        projection::set_schema(&mut tx, &scratch.live).await?;
        for t in p.tables() {
            sqlx::query(&format!("DELETE FROM {}", scratch.live(t)))
                .execute(&mut *tx)
                .await?;
            sqlx::query(&format!(
                "INSERT INTO {} SELECT * FROM {}",
                scratch.live(t),
                scratch.scratch(t)
            ))
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(&format!(
            "DELETE FROM {} WHERE projection = $1",
            scratch.live("projection_parked")
        ))
        .bind(p.name())
        .execute(&mut *tx)
        .await?;
        let parked = sqlx::query(&format!(
            "INSERT INTO {} SELECT * FROM {} WHERE projection = $1",
            scratch.live("projection_parked"),
            scratch.scratch("projection_parked")
        ))
        .bind(p.name())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        live.advance(&mut *tx, position).await?;
        info!(projection = p.name(), position, "read model rebuilt");
        report.push(Replayed {
            projection: p.name().to_owned(),
            position,
            parked: usize::try_from(parked).unwrap_or(usize::MAX),
        });
    }
    tx.commit().await?;
    info!(
        head,
        secs = started.elapsed().as_secs_f64(),
        "rebuilt read models swapped in"
    );
    progress(head, head);
    Ok(report)
}

/// Rebuilds every read model into a scratch schema, up to the live checkpoints,
/// and returns the rows that differ from the live read models (empty: equal).
#[instrument(skip(pool), err)]
pub async fn verify(pool: &PgPool) -> Result<Vec<Difference>, ProjectionError> {
    let projections = Projection::ALL.to_vec();
    let scratch = Scratch::create(pool, &projections).await?;
    let result = verify_into(pool, &projections, &scratch).await;
    scratch.drop(pool).await;
    result
}

async fn verify_into(
    pool: &PgPool,
    projections: &[Projection],
    scratch: &Scratch,
) -> Result<Vec<Difference>, ProjectionError> {
    let store = EventStore::new(pool.clone());
    let mut targets = Vec::with_capacity(projections.len());
    for p in projections {
        targets.push((*p, projection::checkpoint(pool, *p).await?));
    }
    projection::catch_up_all(pool, &store, &targets, Some(&scratch.schema), &|_| {}).await?;
    // One snapshot for the comparison: the live tables and their checkpoints as
    // they stand at its start; projectors are not held up. The scratch copy is
    // topped up to those checkpoints inside the same transaction.
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        .execute(&mut *tx)
        .await?;
    let mut live_positions = Vec::with_capacity(projections.len());
    for p in projections {
        let live = Checkpoint::load(&mut *tx, Reader::Projection, p.name()).await?;
        live_positions.push(live.position());
    }
    projection::set_schema(&mut tx, &scratch.schema).await?;
    let mut differences = Vec::new();
    for (p, live) in projections.iter().zip(live_positions) {
        let rebuilt_position = projection::top_up_in(&mut tx, &store, *p, live).await?;
        if rebuilt_position != live {
            differences.push(Difference {
                projection: p.name().to_owned(),
                table: "projection_checkpoints".to_owned(),
                side: Side::LiveOnly,
                row: serde_json::json!({
                    "live_position": live,
                    "rebuilt_position": rebuilt_position,
                }),
            });
        }
        for t in p.tables() {
            let rows: Vec<(String, serde_json::Value)> = sqlx::query_as(&format!(
                "(SELECT 'live_only', to_jsonb(x) FROM \
                   (SELECT * FROM {l} EXCEPT ALL SELECT * FROM {s}) x LIMIT {n}) \
                 UNION ALL \
                 (SELECT 'rebuilt_only', to_jsonb(y) FROM \
                   (SELECT * FROM {s} EXCEPT ALL SELECT * FROM {l}) y LIMIT {n})",
                l = scratch.live(t),
                s = scratch.scratch(t),
                n = MAX_DIFFERENCES_PER_TABLE,
            ))
            .fetch_all(&mut *tx)
            .await?;
            differences.extend(rows.into_iter().map(|(side, row)| Difference {
                projection: p.name().to_owned(),
                table: (*t).to_owned(),
                side: if side == "live_only" {
                    Side::LiveOnly
                } else {
                    Side::RebuiltOnly
                },
                row,
            }));
        }
        // The same events must have been parked.
        let parked: Vec<(String, serde_json::Value)> = sqlx::query_as(&format!(
            "(SELECT 'live_only', to_jsonb(x) FROM \
               (SELECT position, event_id FROM {l} WHERE projection = $1 EXCEPT ALL \
                SELECT position, event_id FROM {s} WHERE projection = $1) x) \
             UNION ALL \
             (SELECT 'rebuilt_only', to_jsonb(y) FROM \
               (SELECT position, event_id FROM {s} WHERE projection = $1 EXCEPT ALL \
                SELECT position, event_id FROM {l} WHERE projection = $1) y)",
            l = scratch.live("projection_parked"),
            s = scratch.scratch("projection_parked"),
        ))
        .bind(p.name())
        .fetch_all(&mut *tx)
        .await?;
        differences.extend(parked.into_iter().map(|(side, row)| Difference {
            projection: p.name().to_owned(),
            table: "projection_parked".to_owned(),
            side: if side == "live_only" {
                Side::LiveOnly
            } else {
                Side::RebuiltOnly
            },
            row,
        }));
    }
    tx.commit().await?;
    Ok(differences)
}

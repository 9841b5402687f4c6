//! Choosing the log position a report is computed at, and waiting until the KPI
//! read model holds every event up to it.
//!
//! The anchor is the head of the log, read under the head's row lock (the lock
//! every append takes, ADR 0002), with `as_of` = the later of the head's recorded
//! time and the database clock then. Every event up to the head has a recorded
//! time at or before `as_of`; every later append takes the lock afterwards and is
//! recorded at `greatest(head, clock)`, later than `as_of` (the clock moves on).
//! So filtering the facts on `recorded_at <= as_of` gives exactly the events up to
//! the anchor's position, now and on every regeneration.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::error::ReportError;
use crate::model::Anchor;

/// The projection whose facts the KPI queries read.
pub const KPI_PROJECTION: &str = "machine_history";

/// The head of the log, as a report's anchor.
pub async fn take_anchor(pool: &PgPool) -> Result<Anchor, ReportError> {
    let mut tx = pool.begin().await?;
    let (position, hash, as_of): (i64, Vec<u8>, DateTime<Utc>) = sqlx::query_as(
        "SELECT position, last_hash, greatest(recorded_at, clock_timestamp()) \
         FROM event_log_head WHERE id FOR UPDATE",
    )
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Anchor {
        position,
        chain_hash: hex::encode(hash),
        as_of,
    })
}

/// The position the KPI read model has applied.
pub async fn kpi_checkpoint(pool: &PgPool) -> Result<i64, ReportError> {
    let at: Option<i64> =
        sqlx::query_scalar("SELECT position FROM projection_checkpoints WHERE projection = $1")
            .bind(KPI_PROJECTION)
            .fetch_optional(pool)
            .await?;
    Ok(at.unwrap_or(0))
}

/// Waits (up to `timeout`) until the KPI read model has applied `position`.
pub async fn await_projection(
    pool: &PgPool,
    position: i64,
    timeout: Duration,
) -> Result<(), ReportError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut pause = Duration::from_millis(5);
    loop {
        let at = kpi_checkpoint(pool).await?;
        if at >= position {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(ReportError::Behind { at, head: position });
        }
        // The projector commits its checkpoint with no notification to wait on: poll,
        // backing off, until the deadline.
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

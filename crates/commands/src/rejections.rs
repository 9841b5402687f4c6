//! The follow-up commands the process manager sent and the domain refused: a
//! parts report on an unknown or completed order, a maintenance record for a
//! machine that is gone. The causing event stays a fact; the refusal is kept in
//! `process_rejections` (written by [`crate::process`]) for people to see.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

/// One refused follow-up command.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct ProcessRejection {
    /// The deterministic id of the refused command.
    pub command_id: String,
    /// The log position of the event that caused it.
    pub position: i64,
    pub event_id: Uuid,
    pub event_type: String,
    /// The stream the command was meant for (`production_order:O-1`, ...).
    pub target: String,
    pub reason: String,
    pub recorded_at: DateTime<Utc>,
}

/// The newest refusals first; `limit` is clamped to 1..=1000.
pub async fn list(pool: &PgPool, limit: i64) -> Result<Vec<ProcessRejection>, sqlx::Error> {
    sqlx::query_as(
        "SELECT command_id, position, event_id, event_type, target, reason, recorded_at \
         FROM process_rejections ORDER BY recorded_at DESC, position DESC LIMIT $1",
    )
    .bind(limit.clamp(1, 1000))
    .fetch_all(pool)
    .await
}

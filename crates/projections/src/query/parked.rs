//! Poison events parked by the projectors, and where each projection stands.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use tracing::instrument;
use uuid::Uuid;

use crate::error::QueryError;
use crate::projection::Projection;

/// Filters of [`parked_events`].
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ParkedFilter {
    pub projection: Option<String>,
    /// At most this many (default 100, at most 1000).
    pub limit: Option<i64>,
}

/// An event a projection could not apply, with the error.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct ParkedEvent {
    pub projection: String,
    pub position: i64,
    pub event_id: Uuid,
    pub stream_type: String,
    pub stream_id: String,
    pub event_type: String,
    pub error: String,
    pub recorded_at: DateTime<Utc>,
    pub parked_at: DateTime<Utc>,
}

/// Parked events, newest position first.
#[instrument(skip(pool), err)]
pub async fn parked_events(
    pool: &PgPool,
    filter: &ParkedFilter,
) -> Result<Vec<ParkedEvent>, QueryError> {
    let limit = filter.limit.unwrap_or(100).clamp(1, 1000);
    let rows = sqlx::query_as::<_, ParkedEvent>(
        "SELECT projection, position, event_id, stream_type, stream_id, event_type, error, \
         recorded_at, parked_at FROM projection_parked WHERE ($1::text IS NULL OR projection = $1) \
         ORDER BY position DESC, projection LIMIT $2",
    )
    .bind(filter.projection.as_deref())
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows)
}

/// Where a projection stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProjectionStatus {
    pub projection: String,
    /// Its checkpoint: the position of the last event applied.
    pub position: i64,
    /// The head of the event log: `head - position` is its lag.
    pub head: i64,
    pub parked: i64,
}

/// Every projection's checkpoint, lag and parked count.
#[instrument(skip(pool), err)]
pub async fn projection_status(pool: &PgPool) -> Result<Vec<ProjectionStatus>, QueryError> {
    let head: i64 = sqlx::query_scalar("SELECT position FROM event_log_head")
        .fetch_one(pool)
        .await?;
    let rows: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT p.name, coalesce(c.position, 0), \
         (SELECT count(*) FROM projection_parked k WHERE k.projection = p.name) \
         FROM unnest($1::text[]) AS p(name) \
         LEFT JOIN projection_checkpoints c ON c.projection = p.name ORDER BY p.name",
    )
    .bind(Projection::ALL.iter().map(|p| p.name()).collect::<Vec<_>>())
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(projection, position, parked)| ProjectionStatus {
            projection,
            position,
            head,
            parked,
        })
        .collect())
}

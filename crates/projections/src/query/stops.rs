//! Stops waiting for a reason: unplanned idle/down state events recorded as
//! `unclassified` that no later `MachineStopClassified` has given a code, across
//! the plant (the supervisor's list; the operator view filters by machine).

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use tracing::instrument;

use crate::error::QueryError;

/// Filters of [`unclassified_stops`].
#[derive(Debug, Clone, Default)]
pub struct StopFilter {
    pub machine_id: Option<String>,
    pub line: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// At most this many (default 200, at most 5000).
    pub limit: Option<i64>,
}

/// One stop without a reason.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct UnclassifiedStop {
    pub machine_id: String,
    pub line: Option<String>,
    /// The floor time the stop began: what classifying it names (`stop_at`).
    pub stop_at: DateTime<Utc>,
    /// `idle` or `down`.
    pub state: String,
    /// The free text the floor sent, if any.
    pub reason: Option<String>,
    /// When the machine's next state began; null while the stop goes on.
    pub ended_at: Option<DateTime<Utc>>,
    /// Seconds from `stop_at` to `ended_at` (or to now).
    pub duration_s: f64,
}

/// Unclassified stops, newest first.
#[instrument(skip(pool), err)]
pub async fn unclassified_stops(
    pool: &PgPool,
    filter: &StopFilter,
    now: DateTime<Utc>,
) -> Result<Vec<UnclassifiedStop>, QueryError> {
    let limit = filter.limit.unwrap_or(200).clamp(1, 5000);
    let rows = sqlx::query_as::<_, UnclassifiedStop>(
        "SELECT f.machine_id, m.line, f.at AS stop_at, f.state, f.reason, n.at AS ended_at, \
             EXTRACT(EPOCH FROM (COALESCE(n.at, GREATEST($6, f.at)) - f.at))::float8 AS duration_s \
         FROM rm_state_facts f \
         LEFT JOIN rm_machines m ON m.machine_id = f.machine_id \
         LEFT JOIN LATERAL (SELECT x.at FROM rm_state_facts x \
             WHERE x.machine_id = f.machine_id AND (x.at, x.position) > (f.at, f.position) \
             ORDER BY x.at, x.position LIMIT 1) n ON true \
         WHERE f.state IN ('idle', 'down') AND NOT f.planned \
           AND COALESCE(f.reason_code, 'unclassified') = 'unclassified' \
           AND NOT EXISTS (SELECT 1 FROM rm_stop_classifications c \
               WHERE c.machine_id = f.machine_id AND c.stop_at = f.at) \
           AND ($1::text IS NULL OR f.machine_id = $1) AND ($2::text IS NULL OR m.line = $2) \
           AND ($3::timestamptz IS NULL OR f.at >= $3) AND ($4::timestamptz IS NULL OR f.at < $4) \
         ORDER BY f.at DESC, f.machine_id LIMIT $5",
    )
    .bind(filter.machine_id.as_deref())
    .bind(filter.line.as_deref())
    .bind(filter.from)
    .bind(filter.to)
    .bind(limit)
    .bind(now)
    .fetch_all(pool)
    .await?;
    Ok(rows)
}

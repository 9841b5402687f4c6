//! The alerts read model as clients see it: one shape for `GET /api/v1/alerts` and for the
//! `alert:{alert_id}` updates of the live feed (ADR 0048), read by the queries of this
//! module only (the SQL of the alerts tables stays in this crate).

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use utoipa::ToSchema;

/// An alert.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema, sqlx::FromRow)]
pub struct AlertView {
    pub alert_id: String,
    pub rule_id: String,
    pub kind: String,
    pub severity: String,
    pub machine_id: Option<String>,
    /// The task or item the alert is about, for kinds that name one.
    pub subject: Option<String>,
    /// `open`, `acknowledged` or `resolved`.
    pub state: String,
    /// Floor time the condition started.
    pub since: DateTime<Utc>,
    /// Floor time the rule's threshold passed.
    pub raised_at: DateTime<Utc>,
    pub acknowledged_by: Option<String>,
    pub acknowledged_at: Option<DateTime<Utc>>,
    pub escalations: i32,
    pub resolved_at: Option<DateTime<Utc>>,
    /// Who resolved it by hand; `null` when the condition cleared.
    pub resolved_by: Option<String>,
    pub resolved_reason: Option<String>,
}

const COLUMNS: &str = "alert_id, rule_id, kind, severity, machine_id, subject, state, since, \
     raised_at, acknowledged_by, acknowledged_at, escalations, resolved_at, resolved_by, resolved_reason";

/// Which alerts [`list`] returns.
#[derive(Debug, Clone, Default)]
pub struct AlertFilter {
    /// `open`, `acknowledged` or `resolved`.
    pub state: Option<String>,
    pub machine_id: Option<String>,
    /// `info`, `warning` or `critical`.
    pub severity: Option<String>,
    /// At most this many (at least 1).
    pub limit: i64,
}

/// The alerts, newest raise first, filtered.
pub async fn list(pool: &PgPool, filter: AlertFilter) -> Result<Vec<AlertView>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM alerts WHERE ($1::text IS NULL OR state = $1) \
         AND ($2::text IS NULL OR machine_id = $2) AND ($3::text IS NULL OR severity = $3) \
         ORDER BY raised_recorded DESC, alert_id LIMIT $4"
    ))
    .bind(filter.state)
    .bind(filter.machine_id)
    .bind(filter.severity)
    .bind(filter.limit.max(1))
    .fetch_all(pool)
    .await
}

/// These alerts as they are now (those that exist), in no particular order.
pub async fn load(pool: &PgPool, alert_ids: &[String]) -> Result<Vec<AlertView>, sqlx::Error> {
    if alert_ids.is_empty() {
        return Ok(Vec::new());
    }
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM alerts WHERE alert_id = ANY($1)"
    ))
    .bind(alert_ids)
    .fetch_all(pool)
    .await
}

/// One alert as it is now, if it exists.
pub async fn load_one(pool: &PgPool, alert_id: &str) -> Result<Option<AlertView>, sqlx::Error> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM alerts WHERE alert_id = $1"))
        .bind(alert_id)
        .fetch_optional(pool)
        .await
}

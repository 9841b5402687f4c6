//! Maintenance tasks: the schedule, with `overdue` derived from the clock (an
//! open task, scheduled or in progress, past its scheduled date).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use tracing::instrument;

use crate::error::QueryError;

/// Filters of [`list_tasks`].
#[derive(Debug, Clone, Default, Deserialize)]
pub struct TaskFilter {
    pub machine_id: Option<String>,
    /// `scheduled`, `in_progress`, `completed`, `cancelled`.
    pub status: Option<String>,
    /// `preventive`, `predictive`, `corrective`.
    pub kind: Option<String>,
    /// Only overdue tasks (true) or only the others (false).
    pub overdue: Option<bool>,
}

/// One maintenance task.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct TaskView {
    pub task_id: String,
    pub machine_id: String,
    pub scheduled_date: DateTime<Utc>,
    pub status: String,
    pub kind: String,
    pub description: Option<String>,
    /// Open and past its scheduled date (as of the query).
    pub overdue: bool,
    /// What a predictive alert saw (sensor, observed value, baseline, ...).
    pub evidence: Option<serde_json::Value>,
    pub policy_id: Option<String>,
    /// When it was scheduled.
    pub scheduled_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub cancelled_at: Option<DateTime<Utc>>,
    pub notes: Option<String>,
    pub cancel_reason: Option<String>,
    /// `[{item_id, qty}]`.
    pub parts_used: serde_json::Value,
    /// Who acknowledged the task on the floor first (a token's name), and when (ADR 0050).
    pub acknowledged_by: Option<String>,
    pub acknowledged_at: Option<DateTime<Utc>>,
}

const SELECT: &str = "SELECT task_id, machine_id, scheduled_date, status, kind, description, \
    (status IN ('scheduled', 'in_progress') AND scheduled_date < now()) AS overdue, \
    evidence, policy_id, scheduled_at, started_at, completed_at, cancelled_at, notes, \
    cancel_reason, parts_used, acknowledged_by, acknowledged_at FROM rm_maintenance_tasks";

/// Tasks by scheduled date.
#[instrument(skip(pool), err)]
pub async fn list_tasks(pool: &PgPool, filter: &TaskFilter) -> Result<Vec<TaskView>, QueryError> {
    let rows = sqlx::query_as::<_, TaskView>(&format!(
        "SELECT * FROM ({SELECT}) t WHERE ($1::text IS NULL OR machine_id = $1) \
         AND ($2::text IS NULL OR status = $2) AND ($3::text IS NULL OR kind = $3) \
         AND ($4::boolean IS NULL OR overdue = $4) ORDER BY scheduled_date, task_id"
    ))
    .bind(filter.machine_id.as_deref())
    .bind(filter.status.as_deref())
    .bind(filter.kind.as_deref())
    .bind(filter.overdue)
    .fetch_all(pool)
    .await?;
    Ok(rows)
}

/// One task, or `None` when unknown.
#[instrument(skip(pool), err)]
pub async fn get_task(pool: &PgPool, task_id: &str) -> Result<Option<TaskView>, QueryError> {
    let row = sqlx::query_as::<_, TaskView>(&format!("{SELECT} WHERE task_id = $1"))
        .bind(task_id)
        .fetch_optional(pool)
        .await?;
    Ok(row)
}

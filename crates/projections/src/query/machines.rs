//! The machine status board.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use tracing::instrument;

use crate::error::QueryError;

/// Filters of [`list_machines`].
#[derive(Debug, Clone, Default, Deserialize)]
pub struct MachineFilter {
    pub line: Option<String>,
    /// `running`, `idle`, `down` or `unknown`.
    pub status: Option<String>,
    /// The part of the equipment hierarchy, as it stands now (ADR 0062).
    #[serde(default)]
    pub scope: super::hierarchy::Scope,
}

/// One machine on the board.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct MachineView {
    pub machine_id: String,
    #[serde(rename = "type")]
    pub machine_type: String,
    pub line: String,
    /// `running`, `idle`, `down`, or `unknown` before the first state event.
    pub current_status: String,
    /// Floor time the current state began.
    pub status_since: Option<DateTime<Utc>>,
    /// The reason as given with the state.
    pub reason: Option<String>,
    /// The catalogue code it resolved to (or the later classification).
    pub reason_code: Option<String>,
    pub category: Option<String>,
    pub loss: Option<String>,
    pub planned: Option<bool>,
    /// The order in progress (else on hold) on this machine.
    pub current_order: Option<String>,
    /// Floor time of the last maintenance performed.
    pub last_maintenance: Option<DateTime<Utc>>,
    pub last_maintenance_task: Option<String>,
    pub ideal_cycle_time_s: f64,
    pub registered_at: DateTime<Utc>,
    /// Parts counted over the machine's life.
    pub good_count: i64,
    pub scrap_count: i64,
    pub last_parts_at: Option<DateTime<Utc>>,
}

const SELECT: &str = "SELECT m.machine_id, m.machine_type, m.line, \
    coalesce(m.current_status, 'unknown') AS current_status, m.status_since, m.reason, \
    m.reason_code, m.category, m.loss, m.planned, \
    (SELECT o.order_id FROM rm_orders o WHERE o.assigned_machine = m.machine_id \
       AND o.status IN ('in_progress', 'on_hold') \
       ORDER BY (o.status = 'in_progress') DESC, o.started_at DESC NULLS LAST, o.order_id \
       LIMIT 1) AS current_order, \
    m.last_maintenance, m.last_maintenance_task, m.ideal_cycle_time_s, m.registered_at, \
    m.good_count, m.scrap_count, m.last_parts_at \
    FROM rm_machines m";

/// Every machine, by id.
#[instrument(skip(pool), err)]
pub async fn list_machines(
    pool: &PgPool,
    filter: &MachineFilter,
) -> Result<Vec<MachineView>, QueryError> {
    let rows = sqlx::query_as::<_, MachineView>(&format!(
        "{SELECT} WHERE ($1::text IS NULL OR m.line = $1) \
         AND ($2::text IS NULL OR coalesce(m.current_status, 'unknown') = $2) \
         ORDER BY m.machine_id"
    ))
    .bind(filter.line.as_deref())
    .bind(filter.status.as_deref())
    .fetch_all(pool)
    .await?;
    if filter.scope.is_empty() {
        return Ok(rows);
    }
    let ids = rows
        .iter()
        .map(|m| (m.machine_id.clone(), m.line.clone()))
        .collect();
    let now = Utc::now();
    let kept: std::collections::HashSet<String> =
        super::hierarchy::filter_machines(pool, ids, &filter.scope, now, None)
            .await?
            .into_iter()
            .map(|m| m.0)
            .collect();
    Ok(rows
        .into_iter()
        .filter(|m| kept.contains(&m.machine_id))
        .collect())
}

/// One machine, or `None` when unknown.
#[instrument(skip(pool), err)]
pub async fn get_machine(
    pool: &PgPool,
    machine_id: &str,
) -> Result<Option<MachineView>, QueryError> {
    let row = sqlx::query_as::<_, MachineView>(&format!("{SELECT} WHERE m.machine_id = $1"))
        .bind(machine_id)
        .fetch_optional(pool)
        .await?;
    Ok(row)
}

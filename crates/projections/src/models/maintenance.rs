//! Projection `maintenance`: the maintenance schedule (`rm_maintenance_tasks`).
//! Overdue is not stored: it depends on the clock, so queries derive it (an open
//! task past its scheduled date).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde_json::json;
use shopfloor_domain::maintenance::{PartUsed, TaskEvent};
use shopfloor_domain::values::{MachineId, TaskId};
use shopfloor_eventstore::RecordedEvent;
use sqlx::PgConnection;

use super::{decode, fallback, json_text, last_updates, name_of, number, pg_ts};
use crate::error::ApplyError;
use crate::live::LiveUpdate;

fn parts_json(parts: &[PartUsed]) -> serde_json::Value {
    serde_json::Value::Array(
        parts
            .iter()
            .map(|p| json!({"item_id": p.item_id.as_str(), "qty": number(p.qty.value())}))
            .collect(),
    )
}

pub(crate) async fn apply(
    conn: &mut PgConnection,
    event: &RecordedEvent,
) -> Result<Vec<LiveUpdate>, ApplyError> {
    if event.stream_type != "maintenance_task" {
        return Ok(Vec::new());
    }
    let e: TaskEvent = decode(event)?;
    let (task_id, machine_id) = match &e {
        TaskEvent::MaintenanceTaskScheduled {
            task_id,
            machine_id,
            kind,
            scheduled_date,
            description,
            evidence,
            policy_id,
            at,
        } => {
            let evidence = match evidence {
                Some(ev) => {
                    Some(serde_json::to_value(ev).map_err(|e| ApplyError::Poison(e.to_string()))?)
                }
                None => None,
            };
            sqlx::query(
                "INSERT INTO rm_maintenance_tasks (task_id, machine_id, kind, status, scheduled_date, \
                 description, evidence, policy_id, scheduled_at) \
                 VALUES ($1, $2, $3, 'scheduled', $4, $5, $6, $7, $8) ON CONFLICT (task_id) DO NOTHING",
            )
            .bind(task_id.as_str())
            .bind(machine_id.as_str())
            .bind(name_of(kind))
            .bind(scheduled_date)
            .bind(description.as_ref().map(|d| d.as_str()))
            .bind(evidence)
            .bind(policy_id.as_ref().map(|p| p.as_str()))
            .bind(at)
            .execute(&mut *conn)
            .await?;
            (task_id, machine_id)
        }
        TaskEvent::MaintenanceTaskStarted {
            task_id,
            machine_id,
            at,
        } => {
            sqlx::query(
                "UPDATE rm_maintenance_tasks SET status = 'in_progress', started_at = $2 WHERE task_id = $1",
            )
            .bind(task_id.as_str())
            .bind(at)
            .execute(&mut *conn)
            .await?;
            (task_id, machine_id)
        }
        TaskEvent::MaintenanceTaskCompleted {
            task_id,
            machine_id,
            notes,
            parts_used,
            at,
            ..
        } => {
            sqlx::query(
                "UPDATE rm_maintenance_tasks SET status = 'completed', completed_at = $2, notes = $3, \
                 parts_used = $4 WHERE task_id = $1",
            )
            .bind(task_id.as_str())
            .bind(at)
            .bind(notes.as_ref().map(|n| n.as_str()))
            .bind(parts_json(parts_used))
            .execute(&mut *conn)
            .await?;
            (task_id, machine_id)
        }
        TaskEvent::MaintenanceTaskCancelled {
            task_id,
            machine_id,
            reason,
            at,
            ..
        } => {
            sqlx::query(
                "UPDATE rm_maintenance_tasks SET status = 'cancelled', cancelled_at = $2, \
                 cancel_reason = $3 WHERE task_id = $1",
            )
            .bind(task_id.as_str())
            .bind(at)
            .bind(reason.as_str())
            .execute(&mut *conn)
            .await?;
            (task_id, machine_id)
        }
    };
    Ok(vec![update(event, task_id, machine_id)])
}

fn update(event: &RecordedEvent, task_id: &TaskId, machine_id: &MachineId) -> LiveUpdate {
    LiveUpdate {
        topic: format!("task:{task_id}"),
        data: json!({
            "task_id": task_id.as_str(),
            "machine_id": machine_id.as_str(),
            "event_type": event.event_type,
            "position": event.position,
        }),
    }
}

fn ids(e: &TaskEvent) -> (&TaskId, &MachineId) {
    match e {
        TaskEvent::MaintenanceTaskScheduled {
            task_id,
            machine_id,
            ..
        }
        | TaskEvent::MaintenanceTaskStarted {
            task_id,
            machine_id,
            ..
        }
        | TaskEvent::MaintenanceTaskCompleted {
            task_id,
            machine_id,
            ..
        }
        | TaskEvent::MaintenanceTaskCancelled {
            task_id,
            machine_id,
            ..
        } => (task_id, machine_id),
    }
}

/// A row of `rm_maintenance_tasks` (jsonb columns as their JSON text).
#[derive(Debug, Clone, sqlx::FromRow)]
struct Row {
    task_id: String,
    machine_id: String,
    kind: String,
    status: String,
    scheduled_date: DateTime<Utc>,
    description: Option<String>,
    evidence: Option<String>,
    policy_id: Option<String>,
    scheduled_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
    completed_at: Option<DateTime<Utc>>,
    cancelled_at: Option<DateTime<Utc>>,
    notes: Option<String>,
    cancel_reason: Option<String>,
    parts_used: String,
}

const COLUMNS: &str = "task_id, machine_id, kind, status, scheduled_date, description, evidence, \
     policy_id, scheduled_at, started_at, completed_at, cancelled_at, notes, cancel_reason, parts_used";

/// Folds one event into the task's row (None: not scheduled), exactly as the
/// statement of [`apply`] changes it.
fn fold(row: &mut Option<Row>, e: &TaskEvent) -> Result<(), ApplyError> {
    match e {
        TaskEvent::MaintenanceTaskScheduled {
            task_id,
            machine_id,
            kind,
            scheduled_date,
            description,
            evidence,
            policy_id,
            at,
        } => {
            let evidence = match evidence {
                Some(ev) => Some(json_text(
                    &serde_json::to_value(ev).map_err(|e| ApplyError::Poison(e.to_string()))?,
                )?),
                None => None,
            };
            let scheduled_date = pg_ts(scheduled_date)?;
            let at = pg_ts(at)?;
            if row.is_none() {
                *row = Some(Row {
                    task_id: task_id.as_str().to_owned(),
                    machine_id: machine_id.as_str().to_owned(),
                    kind: name_of(kind),
                    status: "scheduled".to_owned(),
                    scheduled_date,
                    description: description.as_ref().map(|d| d.as_str().to_owned()),
                    evidence,
                    policy_id: policy_id.as_ref().map(|p| p.as_str().to_owned()),
                    scheduled_at: at,
                    started_at: None,
                    completed_at: None,
                    cancelled_at: None,
                    notes: None,
                    cancel_reason: None,
                    parts_used: "[]".to_owned(),
                });
            }
        }
        TaskEvent::MaintenanceTaskStarted { at, .. } => {
            let at = pg_ts(at)?;
            if let Some(r) = row {
                r.status = "in_progress".to_owned();
                r.started_at = Some(at);
            }
        }
        TaskEvent::MaintenanceTaskCompleted {
            notes,
            parts_used,
            at,
            ..
        } => {
            let parts = json_text(&parts_json(parts_used))?;
            let at = pg_ts(at)?;
            if let Some(r) = row {
                r.status = "completed".to_owned();
                r.completed_at = Some(at);
                r.notes = notes.as_ref().map(|n| n.as_str().to_owned());
                r.parts_used = parts;
            }
        }
        TaskEvent::MaintenanceTaskCancelled { reason, at, .. } => {
            let at = pg_ts(at)?;
            if let Some(r) = row {
                r.status = "cancelled".to_owned();
                r.cancelled_at = Some(at);
                r.cancel_reason = Some(reason.as_str().to_owned());
            }
        }
    }
    Ok(())
}

/// Set-based [`apply`]: the touched tasks' rows are loaded once, every event is
/// folded into them in position order, and each row is written back once.
pub(crate) async fn apply_chunk(
    conn: &mut PgConnection,
    items: &[(&RecordedEvent, &TaskEvent)],
) -> Result<Vec<LiveUpdate>, ApplyError> {
    if items.is_empty() {
        return Ok(Vec::new());
    }
    let mut rows: HashMap<&str, Option<Row>> = HashMap::new();
    for (_, e) in items {
        rows.entry(ids(e).0.as_str()).or_default();
    }
    let keys: Vec<&str> = rows.keys().copied().collect();
    let loaded: Vec<Row> = sqlx::query_as(&format!(
        "SELECT {} FROM rm_maintenance_tasks WHERE task_id = ANY($1)",
        COLUMNS
            .replace("evidence,", "evidence::text AS evidence,")
            .replace("parts_used", "parts_used::text AS parts_used")
    ))
    .bind(&keys)
    .fetch_all(&mut *conn)
    .await?;
    let mut found: HashMap<String, Row> =
        loaded.into_iter().map(|r| (r.task_id.clone(), r)).collect();
    for (k, v) in rows.iter_mut() {
        *v = found.remove(*k);
    }
    for (_, e) in items {
        let row = rows
            .get_mut(ids(e).0.as_str())
            .ok_or_else(|| fallback("task not loaded"))?;
        fold(row, e)?;
    }
    let rows: Vec<Row> = rows.into_values().flatten().collect();
    write(conn, &rows).await?;
    Ok(last_updates(
        items,
        |e| Some(ids(e).0.as_str()),
        |event, e| {
            let (task_id, machine_id) = ids(e);
            Some(update(event, task_id, machine_id))
        },
    ))
}

/// Upserts `rows` with one statement.
async fn write(conn: &mut PgConnection, rows: &[Row]) -> Result<(), ApplyError> {
    if rows.is_empty() {
        return Ok(());
    }
    fn col<T: Clone>(rows: &[Row], f: impl Fn(&Row) -> &T) -> Vec<T> {
        rows.iter().map(|r| f(r).clone()).collect()
    }
    sqlx::query(&format!(
        "INSERT INTO rm_maintenance_tasks ({COLUMNS}) \
         SELECT task_id, machine_id, kind, status, scheduled_date, description, evidence::jsonb, \
             policy_id, scheduled_at, started_at, completed_at, cancelled_at, notes, cancel_reason, \
             parts_used::jsonb \
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], \
             $6::text[], $7::text[], $8::text[], $9::timestamptz[], $10::timestamptz[], \
             $11::timestamptz[], $12::timestamptz[], $13::text[], $14::text[], $15::text[]) \
             AS t({COLUMNS}) \
         ON CONFLICT (task_id) DO UPDATE SET machine_id = excluded.machine_id, \
             kind = excluded.kind, status = excluded.status, \
             scheduled_date = excluded.scheduled_date, description = excluded.description, \
             evidence = excluded.evidence, policy_id = excluded.policy_id, \
             scheduled_at = excluded.scheduled_at, started_at = excluded.started_at, \
             completed_at = excluded.completed_at, cancelled_at = excluded.cancelled_at, \
             notes = excluded.notes, cancel_reason = excluded.cancel_reason, \
             parts_used = excluded.parts_used"
    ))
    .bind(col(rows, |r| &r.task_id))
    .bind(col(rows, |r| &r.machine_id))
    .bind(col(rows, |r| &r.kind))
    .bind(col(rows, |r| &r.status))
    .bind(col(rows, |r| &r.scheduled_date))
    .bind(col(rows, |r| &r.description))
    .bind(col(rows, |r| &r.evidence))
    .bind(col(rows, |r| &r.policy_id))
    .bind(col(rows, |r| &r.scheduled_at))
    .bind(col(rows, |r| &r.started_at))
    .bind(col(rows, |r| &r.completed_at))
    .bind(col(rows, |r| &r.cancelled_at))
    .bind(col(rows, |r| &r.notes))
    .bind(col(rows, |r| &r.cancel_reason))
    .bind(col(rows, |r| &r.parts_used))
    .execute(conn)
    .await?;
    Ok(())
}

//! Projection `maintenance`: the maintenance schedule (`rm_maintenance_tasks`).
//! Overdue is not stored: it depends on the clock, so queries derive it (an open
//! task past its scheduled date).

use chrono::{DateTime, Utc};
use serde_json::json;
use shopfloor_domain::maintenance::{PartUsed, TaskEvent};
use shopfloor_domain::values::{MachineId, TaskId};
use shopfloor_eventstore::RecordedEvent;

use super::rows::{col, Bound, RowModel};
use super::{json_text, name_of, number, pg_ts, poison};
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
        }
        | TaskEvent::MaintenanceTaskAcknowledged {
            task_id,
            machine_id,
            ..
        } => (task_id, machine_id),
    }
}

/// A row of `rm_maintenance_tasks` (jsonb columns as their JSON text).
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct Row {
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
    acknowledged_by: Option<String>,
    acknowledged_at: Option<DateTime<Utc>>,
}

const COLUMNS: &str = "task_id, machine_id, kind, status, scheduled_date, description, evidence, \
     policy_id, scheduled_at, started_at, completed_at, cancelled_at, notes, cancel_reason, parts_used, \
     acknowledged_by, acknowledged_at";

/// Folds one event into the task's row (None: not scheduled): the semantics of
/// the maintenance read model.
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
                    &serde_json::to_value(ev).map_err(|e| poison(e.to_string()))?,
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
                    acknowledged_by: None,
                    acknowledged_at: None,
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
        TaskEvent::MaintenanceTaskAcknowledged { by, at, .. } => {
            let at = pg_ts(at)?;
            if let Some(r) = row {
                if r.acknowledged_by.is_none() {
                    r.acknowledged_by = Some(by.as_str().to_owned());
                    r.acknowledged_at = Some(at);
                }
            }
        }
    }
    Ok(())
}

/// The maintenance schedule, folded row by row.
pub(crate) struct Tasks;

impl RowModel for Tasks {
    type Event = TaskEvent;
    type Row = Row;

    fn load_sql() -> String {
        format!(
            "SELECT {} FROM rm_maintenance_tasks WHERE task_id = ANY($1)",
            COLUMNS
                .replace("evidence,", "evidence::text AS evidence,")
                .replace("parts_used", "parts_used::text AS parts_used")
        )
    }

    fn upsert_sql() -> String {
        format!(
        "INSERT INTO rm_maintenance_tasks ({COLUMNS}) \
         SELECT task_id, machine_id, kind, status, scheduled_date, description, evidence::jsonb, \
             policy_id, scheduled_at, started_at, completed_at, cancelled_at, notes, cancel_reason, \
             parts_used::jsonb, acknowledged_by, acknowledged_at \
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], \
             $6::text[], $7::text[], $8::text[], $9::timestamptz[], $10::timestamptz[], \
             $11::timestamptz[], $12::timestamptz[], $13::text[], $14::text[], $15::text[], \
             $16::text[], $17::timestamptz[]) \
             AS t({COLUMNS}) \
         ON CONFLICT (task_id) DO UPDATE SET machine_id = excluded.machine_id, \
             kind = excluded.kind, status = excluded.status, \
             scheduled_date = excluded.scheduled_date, description = excluded.description, \
             evidence = excluded.evidence, policy_id = excluded.policy_id, \
             scheduled_at = excluded.scheduled_at, started_at = excluded.started_at, \
             completed_at = excluded.completed_at, cancelled_at = excluded.cancelled_at, \
             notes = excluded.notes, cancel_reason = excluded.cancel_reason, \
             parts_used = excluded.parts_used, acknowledged_by = excluded.acknowledged_by, \
             acknowledged_at = excluded.acknowledged_at"
        )
    }

    fn bind<'q>(query: Bound<'q>, rows: &[Row]) -> Bound<'q> {
        query
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
            .bind(col(rows, |r| &r.acknowledged_by))
            .bind(col(rows, |r| &r.acknowledged_at))
    }

    fn key(e: &TaskEvent) -> &str {
        ids(e).0.as_str()
    }

    fn row_key(row: &Row) -> &str {
        &row.task_id
    }

    fn fold(row: &mut Option<Row>, e: &TaskEvent) -> Result<(), ApplyError> {
        fold(row, e)
    }

    fn update(event: &RecordedEvent, e: &TaskEvent) -> LiveUpdate {
        let (task_id, machine_id) = ids(e);
        update(event, task_id, machine_id)
    }
}

//! Projection `maintenance`: the maintenance schedule (`rm_maintenance_tasks`).
//! Overdue is not stored: it depends on the clock, so queries derive it (an open
//! task past its scheduled date).

use serde_json::json;
use shopfloor_domain::maintenance::{PartUsed, TaskEvent};
use shopfloor_eventstore::RecordedEvent;
use sqlx::PgConnection;

use super::{decode, name_of, number};
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
    Ok(vec![LiveUpdate {
        topic: format!("task:{task_id}"),
        data: json!({
            "task_id": task_id.as_str(),
            "machine_id": machine_id.as_str(),
            "event_type": event.event_type,
            "position": event.position,
        }),
    }])
}

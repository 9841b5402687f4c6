//! Projection `people`: operators (`rm_operators`) and their labour sessions
//! (`rm_labour_sessions`, one row per clock-on, closed by its clock-off).
//!
//! Operators change rarely and clock on a few times a shift, so the chunk is
//! applied event by event, in position order, with one small statement each:
//! the volume never calls for the set-based form of the busy read models. Every
//! value comes from the event (ADR 0030), so a replay gives the same rows.
//! Labour figures are not stored: they are computed at query time from the
//! sessions and the parts facts by floor time (`query::labour`).

use serde_json::json;
use shopfloor_domain::operator::OperatorEvent;
use shopfloor_eventstore::RecordedEvent;
use sqlx::PgConnection;

use super::{json_text, last_updates, pg_ts};
use crate::error::ApplyError;
use crate::live::LiveUpdate;

fn update(event: &RecordedEvent, e: &OperatorEvent) -> LiveUpdate {
    let operator_id = e.operator_id().as_str();
    LiveUpdate {
        topic: format!("operator:{operator_id}"),
        data: json!({
            "operator_id": operator_id,
            "event_type": event.event_type,
            "position": event.position,
        }),
    }
}

fn ids<T: AsRef<str>>(values: &[T]) -> Result<String, ApplyError> {
    json_text(&serde_json::Value::Array(
        values.iter().map(|v| json!(v.as_ref())).collect(),
    ))
}

/// Applies one event.
async fn apply(
    conn: &mut PgConnection,
    event: &RecordedEvent,
    e: &OperatorEvent,
) -> Result<(), ApplyError> {
    let operator_id = e.operator_id().as_str();
    match e {
        OperatorEvent::OperatorRegistered {
            name,
            badge_id,
            skills,
            lines,
            at,
            ..
        } => {
            sqlx::query(
                "INSERT INTO rm_operators (operator_id, name, badge_id, skills, lines, active, \
                     registered_at, updated_at) \
                 VALUES ($1, $2, $3, $4::jsonb, $5::jsonb, true, $6, $6) \
                 ON CONFLICT (operator_id) DO NOTHING",
            )
            .bind(operator_id)
            .bind(name.as_str())
            .bind(badge_id.as_ref().map(|b| b.as_str()))
            .bind(ids(skills)?)
            .bind(ids(lines)?)
            .bind(pg_ts(at)?)
            .execute(&mut *conn)
            .await?;
        }
        OperatorEvent::OperatorUpdated {
            name,
            badge_id,
            skills,
            lines,
            at,
            ..
        } => {
            sqlx::query(
                "UPDATE rm_operators SET name = $2, badge_id = $3, skills = $4::jsonb, \
                     lines = $5::jsonb, updated_at = GREATEST(updated_at, $6) \
                 WHERE operator_id = $1",
            )
            .bind(operator_id)
            .bind(name.as_str())
            .bind(badge_id.as_ref().map(|b| b.as_str()))
            .bind(ids(skills)?)
            .bind(ids(lines)?)
            .bind(pg_ts(at)?)
            .execute(&mut *conn)
            .await?;
        }
        OperatorEvent::OperatorDeactivated { at, .. } => {
            sqlx::query(
                "UPDATE rm_operators SET active = false, deactivated_at = $2, \
                     updated_at = GREATEST(updated_at, $2) WHERE operator_id = $1",
            )
            .bind(operator_id)
            .bind(pg_ts(at)?)
            .execute(&mut *conn)
            .await?;
        }
        OperatorEvent::OperatorReactivated { at, .. } => {
            sqlx::query(
                "UPDATE rm_operators SET active = true, deactivated_at = NULL, \
                     updated_at = GREATEST(updated_at, $2) WHERE operator_id = $1",
            )
            .bind(operator_id)
            .bind(pg_ts(at)?)
            .execute(&mut *conn)
            .await?;
        }
        OperatorEvent::OperatorClockedOn {
            order_id,
            machine_id,
            at,
            ..
        } => {
            sqlx::query(
                "INSERT INTO rm_labour_sessions (operator_id, order_id, on_at, machine_id, \
                     on_position) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (operator_id, order_id, on_at) DO NOTHING",
            )
            .bind(operator_id)
            .bind(order_id.as_str())
            .bind(pg_ts(at)?)
            .bind(machine_id.as_ref().map(|m| m.as_str()))
            .bind(event.position)
            .execute(&mut *conn)
            .await?;
        }
        OperatorEvent::OperatorClockedOff {
            order_id,
            clocked_on_at,
            at,
            ..
        } => {
            sqlx::query(
                "UPDATE rm_labour_sessions SET off_at = $4, off_position = $5 \
                 WHERE operator_id = $1 AND order_id = $2 AND on_at = $3",
            )
            .bind(operator_id)
            .bind(order_id.as_str())
            .bind(pg_ts(clocked_on_at)?)
            .bind(pg_ts(at)?)
            .bind(event.position)
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(())
}

/// Applies a chunk, event by event in position order.
pub(crate) async fn apply_chunk(
    conn: &mut PgConnection,
    items: &[(&RecordedEvent, &OperatorEvent)],
) -> Result<Vec<LiveUpdate>, ApplyError> {
    for (event, e) in items {
        apply(conn, event, e).await?;
    }
    Ok(last_updates(
        items,
        |e| Some(e.operator_id().as_str()),
        |event, e| Some(update(event, e)),
    ))
}

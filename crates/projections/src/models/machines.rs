//! Projection `machines`: the machine status board (`rm_machines`).
//!
//! The current state is the one with the latest floor time (ties: the later
//! event), so a late event never moves the board backwards. The current order is
//! not stored here: queries take it from `rm_orders` (the order in progress on
//! the machine).

use serde_json::json;
use shopfloor_domain::machine::MachineEvent;
use shopfloor_eventstore::RecordedEvent;
use sqlx::PgConnection;

use super::{count, decode, name_of};
use crate::error::ApplyError;
use crate::live::LiveUpdate;

pub(crate) async fn apply(
    conn: &mut PgConnection,
    event: &RecordedEvent,
) -> Result<Vec<LiveUpdate>, ApplyError> {
    if event.stream_type != "machine" {
        return Ok(Vec::new());
    }
    let e: MachineEvent = decode(event)?;
    let machine_id = match &e {
        MachineEvent::MachineRegistered {
            machine_id,
            machine_type,
            line,
            ideal_cycle_time_s,
            at,
        } => {
            sqlx::query(
                "INSERT INTO rm_machines (machine_id, machine_type, line, ideal_cycle_time_s, registered_at) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (machine_id) DO NOTHING",
            )
            .bind(machine_id.as_str())
            .bind(machine_type.as_str())
            .bind(line.as_str())
            .bind(ideal_cycle_time_s.seconds())
            .bind(at)
            .execute(&mut *conn)
            .await?;
            machine_id
        }
        MachineEvent::MachineStateChanged {
            machine_id,
            state,
            reason,
            reason_code,
            category,
            loss,
            planned,
            at,
        } => {
            sqlx::query(
                "UPDATE rm_machines SET current_status = $2, status_since = $3, reason = $4, \
                 reason_code = $5, category = $6, loss = $7, planned = $8 \
                 WHERE machine_id = $1 AND (status_since IS NULL OR status_since <= $3)",
            )
            .bind(machine_id.as_str())
            .bind(name_of(state))
            .bind(at)
            .bind(reason.as_ref().map(|r| r.as_str()))
            .bind(reason_code.as_ref().map(|r| r.as_str()))
            .bind(category.as_ref().map(name_of))
            .bind(loss.as_ref().map(name_of))
            .bind(planned)
            .execute(&mut *conn)
            .await?;
            machine_id
        }
        MachineEvent::MachinePartsProduced {
            machine_id,
            good,
            scrap,
            order_id,
            at,
            ..
        } => {
            sqlx::query(
                "UPDATE rm_machines SET good_count = good_count + $2, scrap_count = scrap_count + $3, \
                 last_parts_order = CASE WHEN last_parts_at IS NULL OR last_parts_at <= $4 \
                     THEN $5 ELSE last_parts_order END, \
                 last_parts_at = CASE WHEN last_parts_at IS NULL OR last_parts_at <= $4 \
                     THEN $4 ELSE last_parts_at END \
                 WHERE machine_id = $1",
            )
            .bind(machine_id.as_str())
            .bind(count(*good)?)
            .bind(count(*scrap)?)
            .bind(at)
            .bind(order_id.as_ref().map(|o| o.as_str()))
            .execute(&mut *conn)
            .await?;
            machine_id
        }
        MachineEvent::MachineIdealCycleTimeChanged {
            machine_id,
            ideal_cycle_time_s,
            effective_from,
            ..
        } => {
            sqlx::query(
                "UPDATE rm_machines SET ideal_cycle_time_s = $2, ideal_cycle_time_from = $3 \
                 WHERE machine_id = $1 AND (ideal_cycle_time_from IS NULL OR ideal_cycle_time_from <= $3)",
            )
            .bind(machine_id.as_str())
            .bind(ideal_cycle_time_s.seconds())
            .bind(effective_from)
            .execute(&mut *conn)
            .await?;
            machine_id
        }
        MachineEvent::MachineMaintenancePerformed {
            machine_id,
            task_id,
            at,
            ..
        } => {
            sqlx::query(
                "UPDATE rm_machines SET last_maintenance = $2, last_maintenance_task = $3 \
                 WHERE machine_id = $1 AND (last_maintenance IS NULL OR last_maintenance <= $2)",
            )
            .bind(machine_id.as_str())
            .bind(at)
            .bind(task_id.as_str())
            .execute(&mut *conn)
            .await?;
            machine_id
        }
        MachineEvent::MachineStopClassified {
            machine_id,
            stop_at,
            reason_code,
            category,
            loss,
            planned,
            ..
        } => {
            // Only matters to the board while that stop is the current state.
            sqlx::query(
                "UPDATE rm_machines SET reason_code = $3, category = $4, loss = $5, planned = $6 \
                 WHERE machine_id = $1 AND status_since = $2",
            )
            .bind(machine_id.as_str())
            .bind(stop_at)
            .bind(reason_code.as_str())
            .bind(name_of(category))
            .bind(loss.as_ref().map(name_of))
            .bind(planned)
            .execute(&mut *conn)
            .await?;
            machine_id
        }
    };
    Ok(vec![LiveUpdate {
        topic: format!("machine:{machine_id}"),
        data: json!({
            "machine_id": machine_id.as_str(),
            "event_type": event.event_type,
            "position": event.position,
        }),
    }])
}

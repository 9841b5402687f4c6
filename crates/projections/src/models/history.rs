//! Projection `machine_history`: the raw facts of every machine, by floor time.
//!
//! State changes, stop classifications and parts reports are stored as they
//! happened (floor time `at`) with the position and `recorded_at` of their event.
//! Nothing is pre-computed: KPIs, state intervals and downtime reports are
//! computed at query time from these facts (`lead()` over floor time gives each
//! state's end), so late and out-of-order events correct every figure they touch
//! and `as_of` is a filter on `recorded_at` (see `query::kpi`, ADR 0005).

use chrono::{DateTime, Utc};
use serde_json::json;
use shopfloor_domain::machine::MachineEvent;
use shopfloor_domain::values::MachineId;
use shopfloor_eventstore::RecordedEvent;
use sqlx::PgConnection;

use super::copy::CopyRows;
use super::{count, last_updates, name_of};
use crate::error::ApplyError;
use crate::live::LiveUpdate;

fn update(event: &RecordedEvent, machine_id: &MachineId, at: &DateTime<Utc>) -> LiveUpdate {
    LiveUpdate {
        topic: format!("kpi:{machine_id}"),
        data: json!({
            "machine_id": machine_id.as_str(),
            "event_type": event.event_type,
            "at": at,
            "position": event.position,
        }),
    }
}

/// The fact an event adds, with the floor time its update names.
fn fact(e: &MachineEvent) -> Option<(&MachineId, &DateTime<Utc>)> {
    match e {
        MachineEvent::MachineStateChanged { machine_id, at, .. }
        | MachineEvent::MachinePartsProduced { machine_id, at, .. } => Some((machine_id, at)),
        MachineEvent::MachineStopClassified {
            machine_id,
            stop_at,
            ..
        } => Some((machine_id, stop_at)),
        MachineEvent::MachineRegistered { .. }
        | MachineEvent::MachineIdealCycleTimeChanged { .. }
        | MachineEvent::MachineMaintenancePerformed { .. } => None,
    }
}

const COPY_STATE: &str = "COPY rm_state_facts (machine_id, at, position, state, planned, reason, \
     reason_code, category, loss, recorded_at) FROM STDIN (FORMAT binary)";
const COPY_STOPS: &str =
    "COPY rm_stop_classifications (machine_id, stop_at, position, reason_code, \
     category, loss, planned, classified_by, recorded_at) FROM STDIN (FORMAT binary)";
const COPY_PARTS: &str = "COPY rm_parts_facts (machine_id, at, position, good, scrap, \
     ideal_cycle_time_s, order_id, recorded_at, scrap_reason) FROM STDIN (FORMAT binary)";

/// Applies a chunk (of any size, a single event included): its facts as one
/// binary COPY per table.
///
/// COPY has no `ON CONFLICT DO NOTHING`: a fact that is already there (its
/// event applied before, which cannot happen while the checkpoint is kept in the
/// same transaction) makes the COPY fail, and the event that carries it is
/// parked like any event the database refuses.
pub(crate) async fn apply_chunk(
    conn: &mut PgConnection,
    items: &[(&RecordedEvent, &MachineEvent)],
) -> Result<Vec<LiveUpdate>, ApplyError> {
    let mut states = CopyRows::new();
    let mut stops = CopyRows::new();
    let mut parts = CopyRows::new();
    for (event, e) in items {
        match e {
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
                let r = &mut states;
                r.row(10);
                r.text(machine_id.as_str());
                r.timestamptz(at)?;
                r.bigint(event.position);
                r.text(&name_of(state));
                r.boolean(*planned);
                r.opt_text(reason.as_ref().map(|x| x.as_str()));
                r.opt_text(reason_code.as_ref().map(|x| x.as_str()));
                r.opt_text(category.as_ref().map(name_of).as_deref());
                r.opt_text(loss.as_ref().map(name_of).as_deref());
                r.timestamptz(&event.recorded_at)?;
            }
            MachineEvent::MachineStopClassified {
                machine_id,
                stop_at,
                reason_code,
                category,
                loss,
                planned,
                by,
                ..
            } => {
                let r = &mut stops;
                r.row(9);
                r.text(machine_id.as_str());
                r.timestamptz(stop_at)?;
                r.bigint(event.position);
                r.text(reason_code.as_str());
                r.text(&name_of(category));
                r.opt_text(loss.as_ref().map(name_of).as_deref());
                r.boolean(*planned);
                r.text(by.as_str());
                r.timestamptz(&event.recorded_at)?;
            }
            MachineEvent::MachinePartsProduced {
                machine_id,
                good,
                scrap,
                order_id,
                ideal_cycle_time_s,
                at,
                scrap_reason,
            } => {
                let r = &mut parts;
                r.row(9);
                r.text(machine_id.as_str());
                r.timestamptz(at)?;
                r.bigint(event.position);
                r.bigint(count(*good)?);
                r.bigint(count(*scrap)?);
                r.float8(ideal_cycle_time_s.seconds());
                r.opt_text(order_id.as_ref().map(|o| o.as_str()));
                r.timestamptz(&event.recorded_at)?;
                r.opt_text(scrap_reason.as_ref().map(|c| c.as_str()));
            }
            MachineEvent::MachineRegistered { .. }
            | MachineEvent::MachineIdealCycleTimeChanged { .. }
            | MachineEvent::MachineMaintenancePerformed { .. } => {}
        }
    }
    states.send(conn, COPY_STATE).await?;
    stops.send(conn, COPY_STOPS).await?;
    parts.send(conn, COPY_PARTS).await?;
    Ok(last_updates(
        items,
        |e| fact(e).map(|(m, _)| m.as_str()),
        |event, e| fact(e).map(|(m, at)| update(event, m, at)),
    ))
}

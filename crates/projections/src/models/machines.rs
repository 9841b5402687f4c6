//! Projection `machines`: the machine status board (`rm_machines`).
//!
//! The current state is the one with the latest floor time (ties: the later
//! event), so a late event never moves the board backwards. The current order is
//! not stored here: queries take it from `rm_orders` (the order in progress on
//! the machine).

use chrono::{DateTime, Utc};
use serde_json::json;
use shopfloor_domain::machine::MachineEvent;
use shopfloor_domain::values::MachineId;
use shopfloor_eventstore::RecordedEvent;

use super::rows::{col, Bound, RowModel};
use super::{add, count, name_of, pg_ts};
use crate::error::ApplyError;
use crate::live::LiveUpdate;

fn update(event: &RecordedEvent, machine_id: &MachineId) -> LiveUpdate {
    LiveUpdate {
        topic: format!("machine:{machine_id}"),
        data: json!({
            "machine_id": machine_id.as_str(),
            "event_type": event.event_type,
            "position": event.position,
        }),
    }
}

fn machine_id(e: &MachineEvent) -> &MachineId {
    match e {
        MachineEvent::MachineRegistered { machine_id, .. }
        | MachineEvent::MachineStateChanged { machine_id, .. }
        | MachineEvent::MachinePartsProduced { machine_id, .. }
        | MachineEvent::MachineIdealCycleTimeChanged { machine_id, .. }
        | MachineEvent::MachineMaintenancePerformed { machine_id, .. }
        | MachineEvent::MachineStopClassified { machine_id, .. } => machine_id,
    }
}

/// A row of `rm_machines`.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct Row {
    machine_id: String,
    machine_type: String,
    line: String,
    ideal_cycle_time_s: f64,
    ideal_cycle_time_from: Option<DateTime<Utc>>,
    registered_at: DateTime<Utc>,
    current_status: Option<String>,
    status_since: Option<DateTime<Utc>>,
    reason: Option<String>,
    reason_code: Option<String>,
    category: Option<String>,
    loss: Option<String>,
    planned: Option<bool>,
    last_maintenance: Option<DateTime<Utc>>,
    last_maintenance_task: Option<String>,
    good_count: i64,
    scrap_count: i64,
    last_parts_at: Option<DateTime<Utc>>,
    last_parts_order: Option<String>,
}

const COLUMNS: &str = "machine_id, machine_type, line, ideal_cycle_time_s, ideal_cycle_time_from, \
     registered_at, current_status, status_since, reason, reason_code, category, loss, planned, \
     last_maintenance, last_maintenance_task, good_count, scrap_count, last_parts_at, last_parts_order";

/// Folds one event into the machine's row (None: not registered): the
/// semantics of the board. Timestamps are compared as PostgreSQL stores them.
fn fold(row: &mut Option<Row>, e: &MachineEvent) -> Result<(), ApplyError> {
    match e {
        MachineEvent::MachineRegistered {
            machine_id,
            machine_type,
            line,
            ideal_cycle_time_s,
            at,
        } => {
            let at = pg_ts(at)?;
            if row.is_none() {
                *row = Some(Row {
                    machine_id: machine_id.as_str().to_owned(),
                    machine_type: machine_type.as_str().to_owned(),
                    line: line.as_str().to_owned(),
                    ideal_cycle_time_s: ideal_cycle_time_s.seconds(),
                    ideal_cycle_time_from: None,
                    registered_at: at,
                    current_status: None,
                    status_since: None,
                    reason: None,
                    reason_code: None,
                    category: None,
                    loss: None,
                    planned: None,
                    last_maintenance: None,
                    last_maintenance_task: None,
                    good_count: 0,
                    scrap_count: 0,
                    last_parts_at: None,
                    last_parts_order: None,
                });
            }
        }
        MachineEvent::MachineStateChanged {
            state,
            reason,
            reason_code,
            category,
            loss,
            planned,
            at,
            ..
        } => {
            let at = pg_ts(at)?;
            if let Some(r) = row {
                if r.status_since.is_none_or(|s| s <= at) {
                    r.current_status = Some(name_of(state));
                    r.status_since = Some(at);
                    r.reason = reason.as_ref().map(|x| x.as_str().to_owned());
                    r.reason_code = reason_code.as_ref().map(|x| x.as_str().to_owned());
                    r.category = category.as_ref().map(name_of);
                    r.loss = loss.as_ref().map(name_of);
                    r.planned = Some(*planned);
                }
            }
        }
        MachineEvent::MachinePartsProduced {
            good,
            scrap,
            order_id,
            at,
            ..
        } => {
            let (good, scrap) = (count(*good)?, count(*scrap)?);
            let at = pg_ts(at)?;
            if let Some(r) = row {
                r.good_count = add(r.good_count, good)?;
                r.scrap_count = add(r.scrap_count, scrap)?;
                if r.last_parts_at.is_none_or(|p| p <= at) {
                    r.last_parts_order = order_id.as_ref().map(|o| o.as_str().to_owned());
                    r.last_parts_at = Some(at);
                }
            }
        }
        MachineEvent::MachineIdealCycleTimeChanged {
            ideal_cycle_time_s,
            effective_from,
            ..
        } => {
            let from = pg_ts(effective_from)?;
            if let Some(r) = row {
                if r.ideal_cycle_time_from.is_none_or(|f| f <= from) {
                    r.ideal_cycle_time_s = ideal_cycle_time_s.seconds();
                    r.ideal_cycle_time_from = Some(from);
                }
            }
        }
        MachineEvent::MachineMaintenancePerformed { task_id, at, .. } => {
            let at = pg_ts(at)?;
            if let Some(r) = row {
                if r.last_maintenance.is_none_or(|m| m <= at) {
                    r.last_maintenance = Some(at);
                    r.last_maintenance_task = Some(task_id.as_str().to_owned());
                }
            }
        }
        MachineEvent::MachineStopClassified {
            stop_at,
            reason_code,
            category,
            loss,
            planned,
            ..
        } => {
            let stop_at = pg_ts(stop_at)?;
            if let Some(r) = row {
                if r.status_since == Some(stop_at) {
                    r.reason_code = Some(reason_code.as_str().to_owned());
                    r.category = Some(name_of(category));
                    r.loss = loss.as_ref().map(name_of);
                    r.planned = Some(*planned);
                }
            }
        }
    }
    Ok(())
}

/// The machine status board, folded row by row.
pub(crate) struct Machines;

impl RowModel for Machines {
    type Event = MachineEvent;
    type Row = Row;

    fn load_sql() -> String {
        format!("SELECT {COLUMNS} FROM rm_machines WHERE machine_id = ANY($1)")
    }

    fn upsert_sql() -> String {
        format!(
        "INSERT INTO rm_machines ({COLUMNS}) \
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::float8[], $5::timestamptz[], \
             $6::timestamptz[], $7::text[], $8::timestamptz[], $9::text[], $10::text[], $11::text[], \
             $12::text[], $13::bool[], $14::timestamptz[], $15::text[], $16::int8[], $17::int8[], \
             $18::timestamptz[], $19::text[]) \
         ON CONFLICT (machine_id) DO UPDATE SET machine_type = excluded.machine_type, \
             line = excluded.line, ideal_cycle_time_s = excluded.ideal_cycle_time_s, \
             ideal_cycle_time_from = excluded.ideal_cycle_time_from, \
             registered_at = excluded.registered_at, current_status = excluded.current_status, \
             status_since = excluded.status_since, reason = excluded.reason, \
             reason_code = excluded.reason_code, category = excluded.category, \
             loss = excluded.loss, planned = excluded.planned, \
             last_maintenance = excluded.last_maintenance, \
             last_maintenance_task = excluded.last_maintenance_task, \
             good_count = excluded.good_count, scrap_count = excluded.scrap_count, \
             last_parts_at = excluded.last_parts_at, last_parts_order = excluded.last_parts_order"
        )
    }

    fn bind<'q>(query: Bound<'q>, rows: &[Row]) -> Bound<'q> {
        query
            .bind(col(rows, |r| &r.machine_id))
            .bind(col(rows, |r| &r.machine_type))
            .bind(col(rows, |r| &r.line))
            .bind(col(rows, |r| &r.ideal_cycle_time_s))
            .bind(col(rows, |r| &r.ideal_cycle_time_from))
            .bind(col(rows, |r| &r.registered_at))
            .bind(col(rows, |r| &r.current_status))
            .bind(col(rows, |r| &r.status_since))
            .bind(col(rows, |r| &r.reason))
            .bind(col(rows, |r| &r.reason_code))
            .bind(col(rows, |r| &r.category))
            .bind(col(rows, |r| &r.loss))
            .bind(col(rows, |r| &r.planned))
            .bind(col(rows, |r| &r.last_maintenance))
            .bind(col(rows, |r| &r.last_maintenance_task))
            .bind(col(rows, |r| &r.good_count))
            .bind(col(rows, |r| &r.scrap_count))
            .bind(col(rows, |r| &r.last_parts_at))
            .bind(col(rows, |r| &r.last_parts_order))
    }

    fn key(e: &MachineEvent) -> &str {
        machine_id(e).as_str()
    }

    fn row_key(row: &Row) -> &str {
        &row.machine_id
    }

    fn fold(row: &mut Option<Row>, e: &MachineEvent) -> Result<(), ApplyError> {
        fold(row, e)
    }

    fn update(event: &RecordedEvent, e: &MachineEvent) -> LiveUpdate {
        update(event, machine_id(e))
    }
}

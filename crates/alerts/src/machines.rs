//! The evaluator's view of machines (`alert_machines`): their line and their current state
//! by floor time. Read and written set-based, a round trip per batch for each, whatever the
//! number of machine events in it.

use std::collections::HashMap;

use chrono::{DateTime, SubsecRound, Utc};
use serde_json::Value;
use shopfloor_eventstore::RecordedEvent;
use sqlx::PgPool;
use uuid::Uuid;

use crate::plan::{MachineFact, MachineFold, MachineRow, StateFact};
use crate::AlertsError;

/// `alert_machines` columns: machine, state, planned, classified, state_at, state_event_id.
type MachineTuple = (
    String,
    Option<String>,
    bool,
    bool,
    Option<DateTime<Utc>>,
    Option<Uuid>,
);

/// An open alert of a timed kind: alert, kind, cause, machine.
pub(crate) type OpenTimed = (String, String, String, String);

/// A time in an event's payload, cut to microseconds (what PostgreSQL keeps of the times
/// compared later).
fn payload_time(payload: &Value, key: &str) -> Option<DateTime<Utc>> {
    payload
        .get(key)
        .and_then(Value::as_str)
        .and_then(|a| a.parse::<DateTime<Utc>>().ok())
        .map(|a| a.trunc_subsecs(6))
}

/// What a machine event tells the evaluator, if anything.
pub(crate) fn fact_of(event: &RecordedEvent) -> Option<MachineFact> {
    if event.stream_type != "machine" {
        return None;
    }
    let p = &event.payload;
    let planned = p.get("planned").and_then(Value::as_bool).unwrap_or(false);
    match event.event_type.as_str() {
        "MachineRegistered" => Some(MachineFact::Registered {
            line: p.get("line").and_then(Value::as_str).map(str::to_string),
        }),
        "MachineStateChanged" => Some(MachineFact::State(StateFact {
            state: p
                .get("state")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            planned,
            classified: p
                .get("reason_code")
                .and_then(Value::as_str)
                .is_some_and(|c| c != shopfloor_domain::reason::UNCLASSIFIED),
            at: payload_time(p, "at")
                .or(event.metadata.occurred_at)
                .unwrap_or(event.recorded_at),
            event_id: event.event_id,
        })),
        "MachineStopClassified" => Some(MachineFact::Classified {
            stop_at: payload_time(p, "stop_at")?,
            planned,
        }),
        _ => None,
    }
}

/// The stored rows of `machines` (a machine without one is missing from the map).
pub(crate) async fn load(
    pool: &PgPool,
    machines: &[&str],
) -> Result<HashMap<String, MachineRow>, AlertsError> {
    if machines.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<MachineTuple> = sqlx::query_as(
        "SELECT machine_id, state, planned, classified, state_at, state_event_id \
         FROM alert_machines WHERE machine_id = ANY($1)",
    )
    .bind(machines)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(id, state, planned, classified, state_at, state_event_id)| {
                let row = MachineRow {
                    state,
                    planned,
                    classified,
                    state_at,
                    state_event_id,
                };
                (id, row)
            },
        )
        .collect())
}

/// One machine's stored row (the default when it has none).
pub(crate) async fn one(pool: &PgPool, machine: &str) -> Result<MachineRow, AlertsError> {
    Ok(load(pool, &[machine])
        .await?
        .remove(machine)
        .unwrap_or_default())
}

/// Writes a batch's registrations and changed states: one statement each.
pub(crate) async fn save(pool: &PgPool, fold: &MachineFold) -> Result<(), AlertsError> {
    if !fold.registered.is_empty() {
        let (ids, lines): (Vec<&str>, Vec<Option<&str>>) = fold
            .registered
            .iter()
            .map(|(id, line)| (id.as_str(), line.as_deref()))
            .unzip();
        sqlx::query(
            "INSERT INTO alert_machines (machine_id, line) \
             SELECT * FROM unnest($1::text[], $2::text[]) \
             ON CONFLICT (machine_id) DO UPDATE SET line = excluded.line",
        )
        .bind(ids)
        .bind(lines)
        .execute(pool)
        .await?;
    }
    if fold.changed.is_empty() {
        return Ok(());
    }
    let mut ids = Vec::with_capacity(fold.changed.len());
    let (mut states, mut planned, mut classified, mut at, mut cause) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (id, changed) in &fold.changed {
        let row = &changed.row;
        ids.push(id.as_str());
        states.push(row.state.as_deref());
        planned.push(row.planned);
        classified.push(row.classified);
        at.push(row.state_at);
        cause.push(row.state_event_id);
    }
    sqlx::query(
        "INSERT INTO alert_machines (machine_id, state, planned, classified, state_at, \
         state_event_id) \
         SELECT * FROM unnest($1::text[], $2::text[], $3::bool[], $4::bool[], \
         $5::timestamptz[], $6::uuid[]) \
         ON CONFLICT (machine_id) DO UPDATE SET state = excluded.state, \
         planned = excluded.planned, classified = excluded.classified, \
         state_at = excluded.state_at, state_event_id = excluded.state_event_id",
    )
    .bind(ids)
    .bind(states)
    .bind(planned)
    .bind(classified)
    .bind(at)
    .bind(cause)
    .execute(pool)
    .await?;
    Ok(())
}

/// The open alerts of timed kinds on `machines`.
pub(crate) async fn open_timed(
    pool: &PgPool,
    machines: &[&str],
) -> Result<Vec<OpenTimed>, AlertsError> {
    if machines.is_empty() {
        return Ok(Vec::new());
    }
    Ok(sqlx::query_as(
        "SELECT alert_id, kind, cause_event_id, machine_id FROM alerts \
         WHERE machine_id = ANY($1) AND state <> 'resolved' \
         AND kind IN ('machine_down', 'unclassified_stop')",
    )
    .bind(machines)
    .fetch_all(pool)
    .await?)
}

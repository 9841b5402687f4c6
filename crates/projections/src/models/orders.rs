//! Projection `orders`: production orders (`rm_orders`): status, machine, counts,
//! inspections. Counts are set from the running totals the events carry, so the
//! row always matches the aggregate. Ratios (yield, scrap rate, progress) are
//! derived at query time.

use chrono::{DateTime, Utc};
use serde_json::json;
use shopfloor_domain::order::{BomLine, OrderEvent};
use shopfloor_domain::values::OrderId;
use shopfloor_eventstore::RecordedEvent;
use sqlx::PgConnection;

use super::copy::CopyRows;
use super::rows::{col, Bound, RowModel};
use super::{add, count, json_text, number, pg_ts};
use crate::error::ApplyError;
use crate::live::LiveUpdate;

fn update(event: &RecordedEvent, order_id: &OrderId) -> LiveUpdate {
    LiveUpdate {
        topic: format!("order:{order_id}"),
        data: json!({
            "order_id": order_id.as_str(),
            "event_type": event.event_type,
            "position": event.position,
        }),
    }
}

fn bom_json(bom: &[BomLine]) -> serde_json::Value {
    serde_json::Value::Array(
        bom.iter()
            .map(|l| {
                let mut line = json!({"item_id": l.item_id.as_str(), "qty_per_unit": number(l.qty_per_unit.value())});
                if !l.lots.is_empty() {
                    line["lots"] = json!(l.lots.iter().map(|x| x.as_str()).collect::<Vec<_>>());
                }
                line
            })
            .collect(),
    )
}

fn order_id(e: &OrderEvent) -> &OrderId {
    match e {
        OrderEvent::OrderCreated { order_id, .. }
        | OrderEvent::OrderAssigned { order_id, .. }
        | OrderEvent::OrderStarted { order_id, .. }
        | OrderEvent::OrderHeld { order_id, .. }
        | OrderEvent::OrderResumed { order_id, .. }
        | OrderEvent::OrderCompleted { order_id, .. }
        | OrderEvent::OrderCancelled { order_id, .. }
        | OrderEvent::OrderPartsReported { order_id, .. }
        | OrderEvent::OrderInspectionRecorded { order_id, .. } => order_id,
    }
}

/// A row of `rm_orders` (`bom` as its JSON text).
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct Row {
    order_id: String,
    product_id: String,
    quantity: i64,
    status: String,
    assigned_machine: Option<String>,
    good_count: i64,
    scrap_count: i64,
    bom: String,
    input_location: Option<String>,
    output_location: String,
    hold_reason: Option<String>,
    cancel_reason: Option<String>,
    inspections: i64,
    inspections_failed: i64,
    inspected_parts: i64,
    defects: i64,
    created_at: DateTime<Utc>,
    assigned_at: Option<DateTime<Utc>>,
    started_at: Option<DateTime<Utc>>,
    completed_at: Option<DateTime<Utc>>,
    cancelled_at: Option<DateTime<Utc>>,
    updated_at: DateTime<Utc>,
    /// JSON text of the operator ids.
    assigned_operators: String,
}

const COLUMNS: &str = "order_id, product_id, quantity, status, assigned_machine, good_count, \
     scrap_count, bom, input_location, output_location, hold_reason, cancel_reason, inspections, \
     inspections_failed, inspected_parts, defects, created_at, assigned_at, started_at, \
     completed_at, cancelled_at, updated_at, assigned_operators";

/// Folds one event into the order's row (None: not created): the semantics of
/// the orders read model.
fn fold(row: &mut Option<Row>, e: &OrderEvent) -> Result<(), ApplyError> {
    match e {
        OrderEvent::OrderCreated {
            order_id,
            product_id,
            quantity,
            bom,
            input_location,
            output_location,
            at,
        } => {
            let quantity = count(quantity.value())?;
            let bom = json_text(&bom_json(bom))?;
            let at = pg_ts(at)?;
            if row.is_none() {
                *row = Some(Row {
                    order_id: order_id.as_str().to_owned(),
                    product_id: product_id.as_str().to_owned(),
                    quantity,
                    status: "created".to_owned(),
                    assigned_machine: None,
                    good_count: 0,
                    scrap_count: 0,
                    bom,
                    input_location: input_location.as_ref().map(|l| l.as_str().to_owned()),
                    output_location: output_location.as_str().to_owned(),
                    hold_reason: None,
                    cancel_reason: None,
                    inspections: 0,
                    inspections_failed: 0,
                    inspected_parts: 0,
                    defects: 0,
                    created_at: at,
                    assigned_at: None,
                    started_at: None,
                    completed_at: None,
                    cancelled_at: None,
                    updated_at: at,
                    assigned_operators: "[]".to_owned(),
                });
            }
        }
        OrderEvent::OrderAssigned {
            machine_id,
            operator_ids,
            at,
            ..
        } => {
            let at = pg_ts(at)?;
            let operators = operator_ids
                .as_ref()
                .map(|ids| {
                    json_text(&serde_json::Value::Array(
                        ids.iter().map(|i| json!(i.as_str())).collect(),
                    ))
                })
                .transpose()?;
            if let Some(r) = row {
                if let Some(operators) = operators {
                    r.assigned_operators = operators;
                }
                r.status = "assigned".to_owned();
                r.assigned_machine = Some(machine_id.as_str().to_owned());
                r.assigned_at = Some(at);
                r.updated_at = at;
            }
        }
        OrderEvent::OrderStarted { machine_id, at, .. } => {
            let at = pg_ts(at)?;
            if let Some(r) = row {
                r.status = "in_progress".to_owned();
                r.assigned_machine = Some(machine_id.as_str().to_owned());
                r.started_at = Some(at);
                r.updated_at = at;
            }
        }
        OrderEvent::OrderHeld { reason, at, .. } => {
            let at = pg_ts(at)?;
            if let Some(r) = row {
                r.status = "on_hold".to_owned();
                r.hold_reason = Some(reason.as_str().to_owned());
                r.updated_at = at;
            }
        }
        OrderEvent::OrderResumed { at, .. } => {
            let at = pg_ts(at)?;
            if let Some(r) = row {
                r.status = "in_progress".to_owned();
                r.hold_reason = None;
                r.updated_at = at;
            }
        }
        OrderEvent::OrderCompleted {
            good_count,
            scrap_count,
            at,
            ..
        } => {
            let (good, scrap) = (count(*good_count)?, count(*scrap_count)?);
            let at = pg_ts(at)?;
            if let Some(r) = row {
                r.status = "completed".to_owned();
                r.good_count = good;
                r.scrap_count = scrap;
                r.completed_at = Some(at);
                r.updated_at = at;
            }
        }
        OrderEvent::OrderCancelled { reason, at, .. } => {
            let at = pg_ts(at)?;
            if let Some(r) = row {
                r.status = "cancelled".to_owned();
                r.cancel_reason = reason.as_ref().map(|x| x.as_str().to_owned());
                r.cancelled_at = Some(at);
                r.updated_at = at;
            }
        }
        OrderEvent::OrderPartsReported {
            good_count,
            scrap_count,
            at,
            ..
        } => {
            let (good, scrap) = (count(*good_count)?, count(*scrap_count)?);
            let at = pg_ts(at)?;
            if let Some(r) = row {
                r.good_count = good;
                r.scrap_count = scrap;
                r.updated_at = r.updated_at.max(at);
            }
        }
        OrderEvent::OrderInspectionRecorded {
            sample_size,
            defects,
            passed,
            at,
            ..
        } => {
            let (sample_size, defects) = (count(*sample_size)?, count(*defects)?);
            let at = pg_ts(at)?;
            if let Some(r) = row {
                r.inspections = add(r.inspections, 1)?;
                r.inspections_failed = add(r.inspections_failed, if *passed { 0 } else { 1 })?;
                r.inspected_parts = add(r.inspected_parts, sample_size)?;
                r.defects = add(r.defects, defects)?;
                r.updated_at = r.updated_at.max(at);
            }
        }
    }
    Ok(())
}

/// Production orders, folded row by row.
pub(crate) struct Orders;

impl RowModel for Orders {
    type Event = OrderEvent;
    type Row = Row;

    fn load_sql() -> String {
        format!(
            "SELECT {} FROM rm_orders WHERE order_id = ANY($1)",
            COLUMNS.replace("bom,", "bom::text AS bom,").replace(
                "assigned_operators",
                "assigned_operators::text AS assigned_operators"
            )
        )
    }

    fn upsert_sql() -> String {
        format!(
        "INSERT INTO rm_orders ({COLUMNS}) \
         SELECT order_id, product_id, quantity, status, assigned_machine, good_count, scrap_count, \
             bom::jsonb, input_location, output_location, hold_reason, cancel_reason, inspections, \
             inspections_failed, inspected_parts, defects, created_at, assigned_at, started_at, \
             completed_at, cancelled_at, updated_at, assigned_operators::jsonb \
         FROM UNNEST($1::text[], $2::text[], $3::int8[], $4::text[], $5::text[], $6::int8[], \
             $7::int8[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::int8[], \
             $14::int8[], $15::int8[], $16::int8[], $17::timestamptz[], $18::timestamptz[], \
             $19::timestamptz[], $20::timestamptz[], $21::timestamptz[], $22::timestamptz[], \
             $23::text[]) \
             AS t({COLUMNS}) \
         ON CONFLICT (order_id) DO UPDATE SET product_id = excluded.product_id, \
             quantity = excluded.quantity, status = excluded.status, \
             assigned_machine = excluded.assigned_machine, good_count = excluded.good_count, \
             scrap_count = excluded.scrap_count, bom = excluded.bom, \
             input_location = excluded.input_location, output_location = excluded.output_location, \
             hold_reason = excluded.hold_reason, cancel_reason = excluded.cancel_reason, \
             inspections = excluded.inspections, inspections_failed = excluded.inspections_failed, \
             inspected_parts = excluded.inspected_parts, defects = excluded.defects, \
             created_at = excluded.created_at, assigned_at = excluded.assigned_at, \
             started_at = excluded.started_at, completed_at = excluded.completed_at, \
             cancelled_at = excluded.cancelled_at, updated_at = excluded.updated_at, \
             assigned_operators = excluded.assigned_operators"
        )
    }

    fn bind<'q>(query: Bound<'q>, rows: &[Row]) -> Bound<'q> {
        query
            .bind(col(rows, |r| &r.order_id))
            .bind(col(rows, |r| &r.product_id))
            .bind(col(rows, |r| &r.quantity))
            .bind(col(rows, |r| &r.status))
            .bind(col(rows, |r| &r.assigned_machine))
            .bind(col(rows, |r| &r.good_count))
            .bind(col(rows, |r| &r.scrap_count))
            .bind(col(rows, |r| &r.bom))
            .bind(col(rows, |r| &r.input_location))
            .bind(col(rows, |r| &r.output_location))
            .bind(col(rows, |r| &r.hold_reason))
            .bind(col(rows, |r| &r.cancel_reason))
            .bind(col(rows, |r| &r.inspections))
            .bind(col(rows, |r| &r.inspections_failed))
            .bind(col(rows, |r| &r.inspected_parts))
            .bind(col(rows, |r| &r.defects))
            .bind(col(rows, |r| &r.created_at))
            .bind(col(rows, |r| &r.assigned_at))
            .bind(col(rows, |r| &r.started_at))
            .bind(col(rows, |r| &r.completed_at))
            .bind(col(rows, |r| &r.cancelled_at))
            .bind(col(rows, |r| &r.updated_at))
            .bind(col(rows, |r| &r.assigned_operators))
    }

    fn key(e: &OrderEvent) -> &str {
        order_id(e).as_str()
    }

    fn row_key(row: &Row) -> &str {
        &row.order_id
    }

    fn fold(row: &mut Option<Row>, e: &OrderEvent) -> Result<(), ApplyError> {
        fold(row, e)
    }

    fn update(event: &RecordedEvent, e: &OrderEvent) -> LiveUpdate {
        update(event, order_id(e))
    }
}

const COPY_FACTS: &str = "COPY rm_order_facts (order_id, position, kind, machine_id, \
     sample_size, defects, at, recorded_at) FROM STDIN (FORMAT binary)";

/// An order fact: its kind, the machine (starts) and the inspection's counts.
type Fact<'a> = (&'a str, Option<&'a str>, Option<(u64, u64)>);

/// The fact `e` adds to `rm_order_facts`, if any.
fn fact(e: &OrderEvent) -> Option<(&OrderId, Fact<'_>, &DateTime<Utc>)> {
    Some(match e {
        OrderEvent::OrderStarted {
            order_id,
            machine_id,
            at,
        } => (order_id, ("started", Some(machine_id.as_str()), None), at),
        OrderEvent::OrderCompleted { order_id, at, .. } => {
            (order_id, ("completed", None, None), at)
        }
        OrderEvent::OrderCancelled { order_id, at, .. } => {
            (order_id, ("cancelled", None, None), at)
        }
        OrderEvent::OrderInspectionRecorded {
            order_id,
            sample_size,
            defects,
            at,
            ..
        } => (
            order_id,
            ("inspected", None, Some((*sample_size, *defects))),
            at,
        ),
        _ => return None,
    })
}

/// Writes the start, completion, cancellation and inspections of the orders in
/// `items` to `rm_order_facts` (one binary COPY): the facts changeovers, order
/// execution time and first pass yield are computed from at query time (ADR 0058).
pub(crate) async fn copy_facts(
    conn: &mut PgConnection,
    items: &[(&RecordedEvent, &OrderEvent)],
) -> Result<(), ApplyError> {
    let mut facts = CopyRows::new();
    for (event, e) in items {
        let Some((order_id, (kind, machine_id, inspected), at)) = fact(e) else {
            continue;
        };
        facts.row(8);
        facts.text(order_id.as_str());
        facts.bigint(event.position);
        facts.text(kind);
        facts.opt_text(machine_id);
        match inspected {
            Some((sample, defects)) => {
                facts.bigint(count(sample)?);
                facts.bigint(count(defects)?);
            }
            None => {
                facts.null();
                facts.null();
            }
        }
        facts.timestamptz(at)?;
        facts.timestamptz(&event.recorded_at)?;
    }
    facts.send(conn, COPY_FACTS).await
}

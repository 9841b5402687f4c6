//! Projection `orders`: production orders (`rm_orders`): status, machine, counts,
//! inspections. Counts are set from the running totals the events carry, so the
//! row always matches the aggregate. Ratios (yield, scrap rate, progress) are
//! derived at query time.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde_json::json;
use shopfloor_domain::order::{BomLine, OrderEvent};
use shopfloor_domain::values::OrderId;
use shopfloor_eventstore::RecordedEvent;
use sqlx::PgConnection;

use super::{add, count, decode, fallback, json_text, last_updates, number, pg_ts};
use crate::error::ApplyError;
use crate::live::LiveUpdate;

pub(crate) async fn apply(
    conn: &mut PgConnection,
    event: &RecordedEvent,
) -> Result<Vec<LiveUpdate>, ApplyError> {
    if event.stream_type != "production_order" {
        return Ok(Vec::new());
    }
    let e: OrderEvent = decode(event)?;
    let order_id = match &e {
        OrderEvent::OrderCreated {
            order_id,
            product_id,
            quantity,
            bom,
            input_location,
            output_location,
            at,
        } => {
            sqlx::query(
                "INSERT INTO rm_orders (order_id, product_id, quantity, status, bom, input_location, \
                 output_location, created_at, updated_at) \
                 VALUES ($1, $2, $3, 'created', $4, $5, $6, $7, $7) ON CONFLICT (order_id) DO NOTHING",
            )
            .bind(order_id.as_str())
            .bind(product_id.as_str())
            .bind(count(quantity.value())?)
            .bind(bom_json(bom))
            .bind(input_location.as_ref().map(|l| l.as_str()))
            .bind(output_location.as_str())
            .bind(at)
            .execute(&mut *conn)
            .await?;
            order_id
        }
        OrderEvent::OrderAssigned {
            order_id,
            machine_id,
            at,
            ..
        } => {
            sqlx::query(
                "UPDATE rm_orders SET status = 'assigned', assigned_machine = $2, assigned_at = $3, \
                 updated_at = $3 WHERE order_id = $1",
            )
            .bind(order_id.as_str())
            .bind(machine_id.as_str())
            .bind(at)
            .execute(&mut *conn)
            .await?;
            order_id
        }
        OrderEvent::OrderStarted {
            order_id,
            machine_id,
            at,
        } => {
            sqlx::query(
                "UPDATE rm_orders SET status = 'in_progress', assigned_machine = $2, started_at = $3, \
                 updated_at = $3 WHERE order_id = $1",
            )
            .bind(order_id.as_str())
            .bind(machine_id.as_str())
            .bind(at)
            .execute(&mut *conn)
            .await?;
            order_id
        }
        OrderEvent::OrderHeld {
            order_id,
            reason,
            at,
        } => {
            sqlx::query(
                "UPDATE rm_orders SET status = 'on_hold', hold_reason = $2, updated_at = $3 \
                 WHERE order_id = $1",
            )
            .bind(order_id.as_str())
            .bind(reason.as_str())
            .bind(at)
            .execute(&mut *conn)
            .await?;
            order_id
        }
        OrderEvent::OrderResumed { order_id, at } => {
            sqlx::query(
                "UPDATE rm_orders SET status = 'in_progress', hold_reason = NULL, updated_at = $2 \
                 WHERE order_id = $1",
            )
            .bind(order_id.as_str())
            .bind(at)
            .execute(&mut *conn)
            .await?;
            order_id
        }
        OrderEvent::OrderCompleted {
            order_id,
            good_count,
            scrap_count,
            at,
        } => {
            sqlx::query(
                "UPDATE rm_orders SET status = 'completed', good_count = $2, scrap_count = $3, \
                 completed_at = $4, updated_at = $4 WHERE order_id = $1",
            )
            .bind(order_id.as_str())
            .bind(count(*good_count)?)
            .bind(count(*scrap_count)?)
            .bind(at)
            .execute(&mut *conn)
            .await?;
            order_id
        }
        OrderEvent::OrderCancelled {
            order_id,
            reason,
            at,
            ..
        } => {
            sqlx::query(
                "UPDATE rm_orders SET status = 'cancelled', cancel_reason = $2, cancelled_at = $3, \
                 updated_at = $3 WHERE order_id = $1",
            )
            .bind(order_id.as_str())
            .bind(reason.as_ref().map(|r| r.as_str()))
            .bind(at)
            .execute(&mut *conn)
            .await?;
            order_id
        }
        OrderEvent::OrderPartsReported {
            order_id,
            good_count,
            scrap_count,
            at,
            ..
        } => {
            sqlx::query(
                "UPDATE rm_orders SET good_count = $2, scrap_count = $3, \
                 updated_at = greatest(updated_at, $4) WHERE order_id = $1",
            )
            .bind(order_id.as_str())
            .bind(count(*good_count)?)
            .bind(count(*scrap_count)?)
            .bind(at)
            .execute(&mut *conn)
            .await?;
            order_id
        }
        OrderEvent::OrderInspectionRecorded {
            order_id,
            sample_size,
            defects,
            passed,
            at,
            ..
        } => {
            sqlx::query(
                "UPDATE rm_orders SET inspections = inspections + 1, \
                 inspections_failed = inspections_failed + CASE WHEN $2 THEN 0 ELSE 1 END, \
                 inspected_parts = inspected_parts + $3, defects = defects + $4, \
                 updated_at = greatest(updated_at, $5) WHERE order_id = $1",
            )
            .bind(order_id.as_str())
            .bind(passed)
            .bind(count(*sample_size)?)
            .bind(count(*defects)?)
            .bind(at)
            .execute(&mut *conn)
            .await?;
            order_id
        }
    };
    Ok(vec![update(event, order_id)])
}

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
            .map(|l| json!({"item_id": l.item_id.as_str(), "qty_per_unit": number(l.qty_per_unit.value())}))
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
struct Row {
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
}

const COLUMNS: &str = "order_id, product_id, quantity, status, assigned_machine, good_count, \
     scrap_count, bom, input_location, output_location, hold_reason, cancel_reason, inspections, \
     inspections_failed, inspected_parts, defects, created_at, assigned_at, started_at, \
     completed_at, cancelled_at, updated_at";

/// Folds one event into the order's row (None: not created), exactly as the
/// statement of [`apply`] changes it.
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
                });
            }
        }
        OrderEvent::OrderAssigned { machine_id, at, .. } => {
            let at = pg_ts(at)?;
            if let Some(r) = row {
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

/// Set-based [`apply`]: the touched orders' rows are loaded once, every event is
/// folded into them in position order, and each row is written back once.
pub(crate) async fn apply_chunk(
    conn: &mut PgConnection,
    items: &[(&RecordedEvent, &OrderEvent)],
) -> Result<Vec<LiveUpdate>, ApplyError> {
    if items.is_empty() {
        return Ok(Vec::new());
    }
    let mut rows: HashMap<&str, Option<Row>> = HashMap::new();
    for (_, e) in items {
        rows.entry(order_id(e).as_str()).or_default();
    }
    let keys: Vec<&str> = rows.keys().copied().collect();
    let loaded: Vec<Row> = sqlx::query_as(&format!(
        "SELECT {} FROM rm_orders WHERE order_id = ANY($1)",
        COLUMNS.replace("bom,", "bom::text AS bom,")
    ))
    .bind(&keys)
    .fetch_all(&mut *conn)
    .await?;
    let mut found: HashMap<String, Row> = loaded
        .into_iter()
        .map(|r| (r.order_id.clone(), r))
        .collect();
    for (k, v) in rows.iter_mut() {
        *v = found.remove(*k);
    }
    for (_, e) in items {
        let row = rows
            .get_mut(order_id(e).as_str())
            .ok_or_else(|| fallback("order not loaded"))?;
        fold(row, e)?;
    }
    let rows: Vec<Row> = rows.into_values().flatten().collect();
    write(conn, &rows).await?;
    Ok(last_updates(
        items,
        |e| Some(order_id(e).as_str()),
        |event, e| Some(update(event, order_id(e))),
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
        "INSERT INTO rm_orders ({COLUMNS}) \
         SELECT order_id, product_id, quantity, status, assigned_machine, good_count, scrap_count, \
             bom::jsonb, input_location, output_location, hold_reason, cancel_reason, inspections, \
             inspections_failed, inspected_parts, defects, created_at, assigned_at, started_at, \
             completed_at, cancelled_at, updated_at \
         FROM UNNEST($1::text[], $2::text[], $3::int8[], $4::text[], $5::text[], $6::int8[], \
             $7::int8[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::int8[], \
             $14::int8[], $15::int8[], $16::int8[], $17::timestamptz[], $18::timestamptz[], \
             $19::timestamptz[], $20::timestamptz[], $21::timestamptz[], $22::timestamptz[]) \
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
             cancelled_at = excluded.cancelled_at, updated_at = excluded.updated_at"
    ))
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
    .execute(conn)
    .await?;
    Ok(())
}

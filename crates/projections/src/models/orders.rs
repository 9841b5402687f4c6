//! Projection `orders`: production orders (`rm_orders`): status, machine, counts,
//! inspections. Counts are set from the running totals the events carry, so the
//! row always matches the aggregate. Ratios (yield, scrap rate, progress) are
//! derived at query time.

use serde_json::json;
use shopfloor_domain::order::OrderEvent;
use shopfloor_eventstore::RecordedEvent;
use sqlx::PgConnection;

use super::{count, decode, number};
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
            let bom: Vec<serde_json::Value> = bom
                .iter()
                .map(|l| json!({"item_id": l.item_id.as_str(), "qty_per_unit": number(l.qty_per_unit.value())}))
                .collect();
            sqlx::query(
                "INSERT INTO rm_orders (order_id, product_id, quantity, status, bom, input_location, \
                 output_location, created_at, updated_at) \
                 VALUES ($1, $2, $3, 'created', $4, $5, $6, $7, $7) ON CONFLICT (order_id) DO NOTHING",
            )
            .bind(order_id.as_str())
            .bind(product_id.as_str())
            .bind(count(quantity.value())?)
            .bind(serde_json::Value::Array(bom))
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
    Ok(vec![LiveUpdate {
        topic: format!("order:{order_id}"),
        data: json!({
            "order_id": order_id.as_str(),
            "event_type": event.event_type,
            "position": event.position,
        }),
    }])
}

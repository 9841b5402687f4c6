//! Projection `inventory`: stock levels per item and location
//! (`rm_inventory_levels`, set from the new levels the events carry) and the
//! movement ledger (`rm_inventory_movements`: who, why, which order).

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde_json::json;
use shopfloor_domain::inventory::{InventoryEvent, ItemType};
use shopfloor_domain::values::{ItemId, Location};
use shopfloor_eventstore::RecordedEvent;
use sqlx::PgConnection;

use super::{decode, name_of};
use crate::error::ApplyError;
use crate::live::LiveUpdate;

/// One ledger row.
struct Movement<'a> {
    seq: i32,
    location: Option<&'a str>,
    kind: &'static str,
    delta: Decimal,
    new_level: Option<Decimal>,
    shortage: Decimal,
    reason: Option<&'a str>,
    order_id: Option<&'a str>,
}

struct Ctx<'a> {
    event: &'a RecordedEvent,
    item_id: &'a ItemId,
    item_type: String,
    at: DateTime<Utc>,
}

async fn set_level(
    conn: &mut PgConnection,
    ctx: &Ctx<'_>,
    location: &Location,
    level: Decimal,
) -> Result<(), ApplyError> {
    sqlx::query(
        "INSERT INTO rm_inventory_levels (item_id, location, item_type, quantity, updated_at) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (item_id, location) DO UPDATE SET \
         item_type = excluded.item_type, quantity = excluded.quantity, updated_at = excluded.updated_at",
    )
    .bind(ctx.item_id.as_str())
    .bind(location.as_str())
    .bind(&ctx.item_type)
    .bind(level)
    .bind(ctx.at)
    .execute(conn)
    .await?;
    Ok(())
}

async fn record(conn: &mut PgConnection, ctx: &Ctx<'_>, m: Movement<'_>) -> Result<(), ApplyError> {
    sqlx::query(
        "INSERT INTO rm_inventory_movements (position, seq, item_id, item_type, location, kind, \
         delta, new_level, shortage, reason, order_id, actor, at, recorded_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) ON CONFLICT DO NOTHING",
    )
    .bind(ctx.event.position)
    .bind(m.seq)
    .bind(ctx.item_id.as_str())
    .bind(&ctx.item_type)
    .bind(m.location)
    .bind(m.kind)
    .bind(m.delta)
    .bind(m.new_level)
    .bind(m.shortage)
    .bind(m.reason)
    .bind(m.order_id)
    .bind(ctx.event.metadata.actor.as_deref())
    .bind(ctx.at)
    .bind(ctx.event.recorded_at)
    .execute(conn)
    .await?;
    Ok(())
}

fn ctx<'a>(
    event: &'a RecordedEvent,
    item_id: &'a ItemId,
    item_type: &ItemType,
    at: DateTime<Utc>,
) -> Ctx<'a> {
    Ctx {
        event,
        item_id,
        item_type: name_of(item_type),
        at,
    }
}

pub(crate) async fn apply(
    conn: &mut PgConnection,
    event: &RecordedEvent,
) -> Result<Vec<LiveUpdate>, ApplyError> {
    if event.stream_type != "inventory_item" {
        return Ok(Vec::new());
    }
    let e: InventoryEvent = decode(event)?;
    let item_id = match &e {
        InventoryEvent::InventoryReceived {
            item_id,
            item_type,
            location,
            qty,
            new_level,
            reason,
            at,
        } => {
            let c = ctx(event, item_id, item_type, *at);
            set_level(conn, &c, location, *new_level).await?;
            let m = Movement {
                seq: 0,
                location: Some(location.as_str()),
                kind: "received",
                delta: qty.value(),
                new_level: Some(*new_level),
                shortage: Decimal::ZERO,
                reason: reason.as_ref().map(|r| r.as_str()),
                order_id: None,
            };
            record(conn, &c, m).await?;
            item_id
        }
        InventoryEvent::InventoryAdjusted {
            item_id,
            item_type,
            location,
            delta,
            new_level,
            reason,
            at,
        } => {
            let c = ctx(event, item_id, item_type, *at);
            set_level(conn, &c, location, *new_level).await?;
            let m = Movement {
                seq: 0,
                location: Some(location.as_str()),
                kind: "adjusted",
                delta: delta.value(),
                new_level: Some(*new_level),
                shortage: Decimal::ZERO,
                reason: Some(reason.as_str()),
                order_id: None,
            };
            record(conn, &c, m).await?;
            item_id
        }
        InventoryEvent::InventoryConsumed {
            item_id,
            item_type,
            order_id,
            location,
            allocations,
            shortage,
            at,
            ..
        } => {
            let c = ctx(event, item_id, item_type, *at);
            let mut seq = 0;
            for a in allocations {
                set_level(conn, &c, &a.location, a.new_level).await?;
                let m = Movement {
                    seq,
                    location: Some(a.location.as_str()),
                    kind: "consumed",
                    delta: -a.qty,
                    new_level: Some(a.new_level),
                    shortage: Decimal::ZERO,
                    reason: Some("backflush"),
                    order_id: Some(order_id.as_str()),
                };
                record(conn, &c, m).await?;
                seq += 1;
            }
            if *shortage > Decimal::ZERO {
                let m = Movement {
                    seq,
                    location: location.as_ref().map(|l| l.as_str()),
                    kind: "shortage",
                    delta: Decimal::ZERO,
                    new_level: None,
                    shortage: *shortage,
                    reason: Some("backflush: not enough stock"),
                    order_id: Some(order_id.as_str()),
                };
                record(conn, &c, m).await?;
            }
            item_id
        }
        InventoryEvent::InventoryProduced {
            item_id,
            item_type,
            order_id,
            location,
            qty,
            new_level,
            at,
        } => {
            let c = ctx(event, item_id, item_type, *at);
            set_level(conn, &c, location, *new_level).await?;
            let m = Movement {
                seq: 0,
                location: Some(location.as_str()),
                kind: "produced",
                delta: qty.value(),
                new_level: Some(*new_level),
                shortage: Decimal::ZERO,
                reason: Some("production"),
                order_id: Some(order_id.as_str()),
            };
            record(conn, &c, m).await?;
            item_id
        }
    };
    Ok(vec![LiveUpdate {
        topic: format!("inventory:{item_id}"),
        data: json!({
            "item_id": item_id.as_str(),
            "event_type": event.event_type,
            "position": event.position,
        }),
    }])
}

//! Projection `inventory`: stock levels per item and location
//! (`rm_inventory_levels`, set from the new levels the events carry) and the
//! movement ledger (`rm_inventory_movements`: who, why, which order).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde_json::json;
use shopfloor_domain::inventory::InventoryEvent;
use shopfloor_domain::values::ItemId;
use shopfloor_eventstore::RecordedEvent;
use sqlx::PgConnection;

use super::{last_updates, name_of, pg_ts};
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

fn update(event: &RecordedEvent, item_id: &ItemId) -> LiveUpdate {
    LiveUpdate {
        topic: format!("inventory:{item_id}"),
        data: json!({
            "item_id": item_id.as_str(),
            "event_type": event.event_type,
            "position": event.position,
        }),
    }
}

fn item_id(e: &InventoryEvent) -> &ItemId {
    e.item().0
}

/// The rows a chunk writes: the last level of each (item, location), and the
/// ledger rows as columns.
#[derive(Default)]
struct Rows<'a> {
    levels: HashMap<(&'a str, &'a str), (String, Decimal, DateTime<Utc>)>,
    position: Vec<i64>,
    seq: Vec<i32>,
    item_id: Vec<&'a str>,
    item_type: Vec<String>,
    location: Vec<Option<&'a str>>,
    kind: Vec<&'static str>,
    delta: Vec<Decimal>,
    new_level: Vec<Option<Decimal>>,
    shortage: Vec<Decimal>,
    reason: Vec<Option<&'a str>>,
    order_id: Vec<Option<&'a str>>,
    actor: Vec<Option<&'a str>>,
    at: Vec<DateTime<Utc>>,
    recorded_at: Vec<DateTime<Utc>>,
}

impl<'a> Rows<'a> {
    fn level(
        &mut self,
        item_id: &'a str,
        location: &'a str,
        item_type: &str,
        level: Decimal,
        at: DateTime<Utc>,
    ) {
        self.levels
            .insert((item_id, location), (item_type.to_owned(), level, at));
    }

    fn movement(
        &mut self,
        event: &'a RecordedEvent,
        item_id: &'a str,
        item_type: &str,
        at: DateTime<Utc>,
        m: Movement<'a>,
    ) {
        self.position.push(event.position);
        self.seq.push(m.seq);
        self.item_id.push(item_id);
        self.item_type.push(item_type.to_owned());
        self.location.push(m.location);
        self.kind.push(m.kind);
        self.delta.push(m.delta);
        self.new_level.push(m.new_level);
        self.shortage.push(m.shortage);
        self.reason.push(m.reason);
        self.order_id.push(m.order_id);
        self.actor.push(event.metadata.actor.as_deref());
        self.at.push(at);
        self.recorded_at.push(event.recorded_at);
    }

    /// Adds one event: the semantics of the inventory read model.
    fn add(&mut self, event: &'a RecordedEvent, e: &'a InventoryEvent) -> Result<(), ApplyError> {
        match e {
            InventoryEvent::InventoryReceived {
                item_id,
                item_type,
                location,
                qty,
                new_level,
                reason,
                at,
            } => {
                let (t, at) = (name_of(item_type), pg_ts(at)?);
                self.level(item_id.as_str(), location.as_str(), &t, *new_level, at);
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
                self.movement(event, item_id.as_str(), &t, at, m);
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
                let (t, at) = (name_of(item_type), pg_ts(at)?);
                self.level(item_id.as_str(), location.as_str(), &t, *new_level, at);
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
                self.movement(event, item_id.as_str(), &t, at, m);
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
                let (t, at) = (name_of(item_type), pg_ts(at)?);
                let mut seq = 0;
                for a in allocations {
                    self.level(item_id.as_str(), a.location.as_str(), &t, a.new_level, at);
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
                    self.movement(event, item_id.as_str(), &t, at, m);
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
                    self.movement(event, item_id.as_str(), &t, at, m);
                }
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
                let (t, at) = (name_of(item_type), pg_ts(at)?);
                self.level(item_id.as_str(), location.as_str(), &t, *new_level, at);
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
                self.movement(event, item_id.as_str(), &t, at, m);
            }
            InventoryEvent::InventoryLotMoved {
                item_id,
                item_type,
                from,
                to,
                qty,
                from_new_level,
                to_new_level,
                reason,
                ..
            } => {
                let (t, at) = (name_of(item_type), pg_ts(e_at(e))?);
                let reason = reason.as_ref().map(|r| r.as_str()).or(Some("lot moved"));
                for (seq, location, delta, level) in [
                    (0, from, -*qty, from_new_level),
                    (1, to, *qty, to_new_level),
                ] {
                    self.level(item_id.as_str(), location.as_str(), &t, *level, at);
                    let m = Movement {
                        seq,
                        location: Some(location.as_str()),
                        kind: if seq == 0 { "moved_out" } else { "moved_in" },
                        delta,
                        new_level: Some(*level),
                        shortage: Decimal::ZERO,
                        reason,
                        order_id: None,
                    };
                    self.movement(event, item_id.as_str(), &t, at, m);
                }
            }
            InventoryEvent::InventoryLotScrapped {
                item_id,
                item_type,
                allocations,
                reason,
                ..
            } => {
                let (t, at) = (name_of(item_type), pg_ts(e_at(e))?);
                for (seq, a) in allocations.iter().enumerate() {
                    self.level(item_id.as_str(), a.location.as_str(), &t, a.new_level, at);
                    let m = Movement {
                        seq: i32::try_from(seq).unwrap_or(i32::MAX),
                        location: Some(a.location.as_str()),
                        kind: "scrapped",
                        delta: -a.qty,
                        new_level: Some(a.new_level),
                        shortage: Decimal::ZERO,
                        reason: Some(reason.as_str()),
                        order_id: None,
                    };
                    self.movement(event, item_id.as_str(), &t, at, m);
                }
            }
            // Lot facts without a level change: the lot tables only (`lots`).
            InventoryEvent::InventoryLotReceived { .. }
            | InventoryEvent::InventoryLotProduced { .. }
            | InventoryEvent::InventoryLotsTaken { .. }
            | InventoryEvent::InventoryLotSplit { .. }
            | InventoryEvent::InventoryLotsMerged { .. }
            | InventoryEvent::InventoryLotHeld { .. }
            | InventoryEvent::InventoryLotReleased { .. }
            | InventoryEvent::InventoryLotRuleSet { .. } => {}
        }
        Ok(())
    }
}

/// The floor time of a lot event that changes levels.
fn e_at(e: &InventoryEvent) -> &DateTime<Utc> {
    match e {
        InventoryEvent::InventoryLotMoved { at, .. }
        | InventoryEvent::InventoryLotScrapped { at, .. } => at,
        InventoryEvent::InventoryReceived { at, .. }
        | InventoryEvent::InventoryAdjusted { at, .. }
        | InventoryEvent::InventoryConsumed { at, .. }
        | InventoryEvent::InventoryProduced { at, .. }
        | InventoryEvent::InventoryLotReceived { at, .. }
        | InventoryEvent::InventoryLotProduced { at, .. }
        | InventoryEvent::InventoryLotsTaken { at, .. }
        | InventoryEvent::InventoryLotSplit { at, .. }
        | InventoryEvent::InventoryLotsMerged { at, .. }
        | InventoryEvent::InventoryLotHeld { at, .. }
        | InventoryEvent::InventoryLotReleased { at, .. }
        | InventoryEvent::InventoryLotRuleSet { at, .. } => at,
    }
}

/// Applies a chunk (of any size, a single event included): the levels upserted
/// once per (item, location) (the last one wins, as it does event by event), the
/// ledger rows inserted with one statement (a row already there is left as it is).
pub(crate) async fn apply_chunk(
    conn: &mut PgConnection,
    items: &[(&RecordedEvent, &InventoryEvent)],
) -> Result<Vec<LiveUpdate>, ApplyError> {
    if items.is_empty() {
        return Ok(Vec::new());
    }
    let mut rows = Rows::default();
    for (event, e) in items {
        rows.add(event, e)?;
    }
    if !rows.levels.is_empty() {
        let mut item_id = Vec::with_capacity(rows.levels.len());
        let mut location = Vec::with_capacity(rows.levels.len());
        let mut item_type = Vec::with_capacity(rows.levels.len());
        let mut quantity = Vec::with_capacity(rows.levels.len());
        let mut updated_at = Vec::with_capacity(rows.levels.len());
        for ((i, l), (t, q, at)) in &rows.levels {
            item_id.push(*i);
            location.push(*l);
            item_type.push(t.as_str());
            quantity.push(*q);
            updated_at.push(*at);
        }
        sqlx::query(
            "INSERT INTO rm_inventory_levels (item_id, location, item_type, quantity, updated_at) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::numeric[], $5::timestamptz[]) \
             ON CONFLICT (item_id, location) DO UPDATE SET item_type = excluded.item_type, \
             quantity = excluded.quantity, updated_at = excluded.updated_at",
        )
        .bind(&item_id)
        .bind(&location)
        .bind(&item_type)
        .bind(&quantity)
        .bind(&updated_at)
        .execute(&mut *conn)
        .await?;
    }
    super::lots::apply_chunk(conn, items).await?;
    if !rows.position.is_empty() {
        sqlx::query(
            "INSERT INTO rm_inventory_movements (position, seq, item_id, item_type, location, kind, \
             delta, new_level, shortage, reason, order_id, actor, at, recorded_at) \
             SELECT * FROM UNNEST($1::int8[], $2::int4[], $3::text[], $4::text[], $5::text[], \
                 $6::text[], $7::numeric[], $8::numeric[], $9::numeric[], $10::text[], $11::text[], \
                 $12::text[], $13::timestamptz[], $14::timestamptz[]) \
             ON CONFLICT DO NOTHING",
        )
        .bind(&rows.position)
        .bind(&rows.seq)
        .bind(&rows.item_id)
        .bind(&rows.item_type)
        .bind(&rows.location)
        .bind(&rows.kind)
        .bind(&rows.delta)
        .bind(&rows.new_level)
        .bind(&rows.shortage)
        .bind(&rows.reason)
        .bind(&rows.order_id)
        .bind(&rows.actor)
        .bind(&rows.at)
        .bind(&rows.recorded_at)
        .execute(&mut *conn)
        .await?;
    }
    Ok(last_updates(
        items,
        |e| Some(item_id(e).as_str()),
        |event, e| Some(update(event, item_id(e))),
    ))
}

//! Lots and genealogy (ADR 0057), part of projection `inventory`: `rm_lots` (one row per
//! lot, loaded, folded and upserted once per chunk), `rm_lot_stock` (per lot and location,
//! the last quantity wins), and the append-only `rm_lot_edges` (what went into what) and
//! `rm_lot_movements` (every lot change with its actor, for a lot's ledger and its state as
//! of a time).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use shopfloor_domain::inventory::{InventoryEvent, TakeCause};
use shopfloor_domain::lot::LotStatus;
use shopfloor_eventstore::RecordedEvent;
use sqlx::PgConnection;

use super::{name_of, pg_ts};
use crate::error::ApplyError;

/// A row of `rm_lots`.
#[derive(Debug, Clone, sqlx::FromRow)]
struct LotRow {
    item_id: String,
    lot_id: String,
    item_type: String,
    supplier_lot: Option<String>,
    expiry: Option<DateTime<Utc>>,
    origin: String,
    parent_lot: Option<String>,
    order_id: Option<String>,
    machine_id: Option<String>,
    status: String,
    hold_reason: Option<String>,
    hold_id: Option<String>,
    created_at: DateTime<Utc>,
    created_by: Option<String>,
    created_recorded: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    produced_from: Option<DateTime<Utc>>,
    produced_to: Option<DateTime<Utc>>,
}

type Key = (String, String);

/// What a chunk writes.
#[derive(Default)]
struct Fold {
    lots: HashMap<Key, Option<LotRow>>,
    stock: HashMap<(String, String, String), (Decimal, DateTime<Utc>)>,
    edges: Vec<Edge>,
    movements: Vec<Movement>,
}

struct Edge {
    position: i64,
    seq: i32,
    from: Key,
    to: Key,
    qty: Decimal,
    kind: &'static str,
    order_id: Option<String>,
    at: DateTime<Utc>,
    recorded_at: DateTime<Utc>,
}

struct Movement {
    position: i64,
    seq: i32,
    item_id: String,
    lot_id: String,
    location: Option<String>,
    kind: &'static str,
    delta: Decimal,
    new_qty: Option<Decimal>,
    status: String,
    reason: Option<String>,
    order_id: Option<String>,
    actor: Option<String>,
    at: DateTime<Utc>,
    recorded_at: DateTime<Utc>,
}

/// One lot change, before its row is written.
struct Change<'a> {
    lot: &'a str,
    location: Option<&'a str>,
    kind: &'static str,
    delta: Decimal,
    new_qty: Option<Decimal>,
    reason: Option<&'a str>,
    order_id: Option<&'a str>,
}

fn status_name(status: LotStatus) -> String {
    name_of(&status)
}

/// The lots an event touches (to load their rows first).
fn keys(e: &InventoryEvent) -> Vec<Key> {
    use InventoryEvent as E;
    let item = e.item().0.as_str().to_owned();
    let k = |lot: &str| (item.clone(), lot.to_owned());
    match e {
        E::InventoryLotReceived { lot_id, .. }
        | E::InventoryLotProduced { lot_id, .. }
        | E::InventoryLotMoved { lot_id, .. }
        | E::InventoryLotHeld { lot_id, .. }
        | E::InventoryLotReleased { lot_id, .. }
        | E::InventoryLotScrapped { lot_id, .. } => vec![k(lot_id.as_str())],
        E::InventoryLotSplit {
            lot_id, new_lot_id, ..
        } => vec![k(lot_id.as_str()), k(new_lot_id.as_str())],
        E::InventoryLotsMerged { sources, into, .. } => sources
            .iter()
            .filter_map(|s| s.lot_id.as_ref().map(|l| k(l.as_str())))
            .chain([k(into.as_str())])
            .collect(),
        E::InventoryLotsTaken { takes, .. } => takes
            .iter()
            .filter_map(|t| t.lot_id.as_ref().map(|l| k(l.as_str())))
            .collect(),
        _ => Vec::new(),
    }
}

impl Fold {
    fn new_lot(
        &mut self,
        event: &RecordedEvent,
        item: &str,
        item_type: &str,
        lot: &str,
        origin: &str,
        at: DateTime<Utc>,
    ) -> &mut LotRow {
        let slot = self
            .lots
            .entry((item.to_owned(), lot.to_owned()))
            .or_default();
        slot.get_or_insert_with(|| LotRow {
            item_id: item.to_owned(),
            lot_id: lot.to_owned(),
            item_type: item_type.to_owned(),
            supplier_lot: None,
            expiry: None,
            origin: origin.to_owned(),
            parent_lot: None,
            order_id: None,
            machine_id: None,
            status: status_name(LotStatus::Available),
            hold_reason: None,
            hold_id: None,
            created_at: at,
            created_by: event.metadata.actor.clone(),
            created_recorded: event.recorded_at,
            updated_at: at,
            produced_from: None,
            produced_to: None,
        })
    }

    fn row(&mut self, item: &str, lot: &str) -> Option<&mut LotRow> {
        self.lots
            .get_mut(&(item.to_owned(), lot.to_owned()))
            .and_then(Option::as_mut)
    }

    /// Records a change of `item`'s lot: its stock row, its ledger row (with its status
    /// afterwards) and its `updated_at`.
    fn change(&mut self, event: &RecordedEvent, item: &str, at: DateTime<Utc>, c: Change<'_>) {
        let status = match self.row(item, c.lot) {
            Some(row) => {
                row.updated_at = row.updated_at.max(at);
                row.status.clone()
            }
            None => status_name(LotStatus::Available),
        };
        if let (Some(location), Some(q)) = (c.location, c.new_qty) {
            self.stock.insert(
                (item.to_owned(), c.lot.to_owned(), location.to_owned()),
                (q, at),
            );
        }
        let seq = self
            .movements
            .iter()
            .rev()
            .take_while(|m| m.position == event.position)
            .count() as i32;
        self.movements.push(Movement {
            position: event.position,
            seq,
            item_id: item.to_owned(),
            lot_id: c.lot.to_owned(),
            location: c.location.map(str::to_owned),
            kind: c.kind,
            delta: c.delta,
            new_qty: c.new_qty,
            status,
            reason: c.reason.map(str::to_owned),
            order_id: c.order_id.map(str::to_owned),
            actor: event.metadata.actor.clone(),
            at,
            recorded_at: event.recorded_at,
        });
    }

    #[allow(clippy::too_many_arguments)]
    fn edge(
        &mut self,
        event: &RecordedEvent,
        from: Key,
        to: Key,
        qty: Decimal,
        kind: &'static str,
        order_id: Option<&str>,
        at: DateTime<Utc>,
    ) {
        let seq = self
            .edges
            .iter()
            .rev()
            .take_while(|e| e.position == event.position)
            .count() as i32;
        self.edges.push(Edge {
            position: event.position,
            seq,
            from,
            to,
            qty,
            kind,
            order_id: order_id.map(str::to_owned),
            at,
            recorded_at: event.recorded_at,
        });
    }

    /// Folds one event (the semantics of the lot read model).
    fn add(&mut self, event: &RecordedEvent, e: &InventoryEvent) -> Result<(), ApplyError> {
        use InventoryEvent as E;
        let (item_id, item_type) = e.item();
        let (item, t) = (item_id.as_str(), name_of(&item_type));
        match e {
            E::InventoryLotReceived {
                lot_id,
                supplier_lot,
                location,
                qty,
                expiry,
                at,
                ..
            } => {
                let at = pg_ts(at)?;
                let expiry = expiry.as_ref().map(pg_ts).transpose()?;
                let row = self.new_lot(event, item, &t, lot_id.as_str(), "received", at);
                row.supplier_lot = supplier_lot.as_ref().map(|s| s.as_str().to_owned());
                row.expiry = expiry;
                let c = Change {
                    lot: lot_id.as_str(),
                    location: Some(location.as_str()),
                    kind: "received",
                    delta: qty.value(),
                    new_qty: Some(qty.value()),
                    reason: None,
                    order_id: None,
                };
                self.change(event, item, at, c);
            }
            E::InventoryLotProduced {
                lot_id,
                order_id,
                machine_id,
                location,
                qty,
                new_qty,
                at,
                ..
            } => {
                let at = pg_ts(at)?;
                let row = self.new_lot(event, item, &t, lot_id.as_str(), "produced", at);
                row.order_id = Some(order_id.as_str().to_owned());
                row.produced_from = Some(row.produced_from.map_or(at, |f| f.min(at)));
                row.produced_to = Some(row.produced_to.map_or(at, |t| t.max(at)));
                if let Some(m) = machine_id {
                    row.machine_id = Some(m.as_str().to_owned());
                }
                let c = Change {
                    lot: lot_id.as_str(),
                    location: Some(location.as_str()),
                    kind: "produced",
                    delta: qty.value(),
                    new_qty: Some(*new_qty),
                    reason: None,
                    order_id: Some(order_id.as_str()),
                };
                self.change(event, item, at, c);
            }
            E::InventoryLotsTaken {
                cause,
                order_id,
                into,
                takes,
                at,
                ..
            } => {
                let at = pg_ts(at)?;
                let kind = match cause {
                    TakeCause::Backflush => "consumed",
                    TakeCause::Adjustment => "adjusted",
                };
                let order = order_id.as_ref().map(|o| o.as_str());
                for take in takes {
                    let Some(lot) = &take.lot_id else { continue };
                    let c = Change {
                        lot: lot.as_str(),
                        location: Some(take.location.as_str()),
                        kind,
                        delta: -take.qty,
                        new_qty: Some(take.new_qty),
                        reason: None,
                        order_id: order,
                    };
                    self.change(event, item, at, c);
                    if let Some(into) = into {
                        let from = (item.to_owned(), lot.as_str().to_owned());
                        let to = (
                            into.item_id.as_str().to_owned(),
                            into.lot_id.as_str().to_owned(),
                        );
                        self.edge(event, from, to, take.qty, "consumed", order, at);
                    }
                }
            }
            _ => return self.add_lot_change(event, e, item, &t),
        }
        Ok(())
    }

    /// Folds the events that split, merge, move, hold, release or scrap a lot.
    fn add_lot_change(
        &mut self,
        event: &RecordedEvent,
        e: &InventoryEvent,
        item: &str,
        t: &str,
    ) -> Result<(), ApplyError> {
        use InventoryEvent as E;
        match e {
            E::InventoryLotSplit {
                lot_id,
                new_lot_id,
                location,
                qty,
                from_new_qty,
                reason,
                at,
                ..
            } => {
                let at = pg_ts(at)?;
                let parent = self.row(item, lot_id.as_str()).cloned();
                let row = self.new_lot(event, item, t, new_lot_id.as_str(), "split", at);
                row.parent_lot = Some(lot_id.as_str().to_owned());
                if let Some(p) = parent {
                    row.supplier_lot = p.supplier_lot;
                    row.expiry = p.expiry;
                    row.order_id = p.order_id;
                    row.machine_id = p.machine_id;
                    row.status = p.status;
                    row.hold_reason = p.hold_reason;
                    row.hold_id = p.hold_id;
                }
                let reason = reason.as_ref().map(|r| r.as_str());
                let loc = Some(location.as_str());
                let out = Change {
                    lot: lot_id.as_str(),
                    location: loc,
                    kind: "split_out",
                    delta: -qty.value(),
                    new_qty: Some(*from_new_qty),
                    reason,
                    order_id: None,
                };
                self.change(event, item, at, out);
                let into = Change {
                    lot: new_lot_id.as_str(),
                    location: loc,
                    kind: "split_in",
                    delta: qty.value(),
                    new_qty: Some(qty.value()),
                    reason,
                    order_id: None,
                };
                self.change(event, item, at, into);
                let from = (item.to_owned(), lot_id.as_str().to_owned());
                let to = (item.to_owned(), new_lot_id.as_str().to_owned());
                self.edge(event, from, to, qty.value(), "split", None, at);
            }
            E::InventoryLotsMerged {
                sources,
                into,
                location,
                into_new_qty,
                expiry,
                supplier_lot,
                reason,
                at,
                ..
            } => {
                let at = pg_ts(at)?;
                let expiry = expiry.as_ref().map(pg_ts).transpose()?;
                let existed = self.row(item, into.as_str()).is_some();
                let row = self.new_lot(event, item, t, into.as_str(), "merged", at);
                if !existed {
                    row.expiry = expiry;
                    row.supplier_lot = supplier_lot.as_ref().map(|s| s.as_str().to_owned());
                }
                let reason = reason.as_ref().map(|r| r.as_str());
                let mut total = Decimal::ZERO;
                for s in sources {
                    let Some(lot) = &s.lot_id else { continue };
                    total += s.qty;
                    let c = Change {
                        lot: lot.as_str(),
                        location: Some(location.as_str()),
                        kind: "merged_out",
                        delta: -s.qty,
                        new_qty: Some(s.new_qty),
                        reason,
                        order_id: None,
                    };
                    self.change(event, item, at, c);
                    let from = (item.to_owned(), lot.as_str().to_owned());
                    let to = (item.to_owned(), into.as_str().to_owned());
                    self.edge(event, from, to, s.qty, "merged", None, at);
                }
                let c = Change {
                    lot: into.as_str(),
                    location: Some(location.as_str()),
                    kind: "merged_in",
                    delta: total,
                    new_qty: Some(*into_new_qty),
                    reason,
                    order_id: None,
                };
                self.change(event, item, at, c);
            }
            E::InventoryLotMoved {
                lot_id,
                from,
                to,
                qty,
                from_new_qty,
                to_new_qty,
                reason,
                at,
                ..
            } => {
                let at = pg_ts(at)?;
                let reason = reason.as_ref().map(|r| r.as_str());
                for (location, kind, delta, new_qty) in [
                    (from, "moved_out", -*qty, from_new_qty),
                    (to, "moved_in", *qty, to_new_qty),
                ] {
                    let c = Change {
                        lot: lot_id.as_str(),
                        location: Some(location.as_str()),
                        kind,
                        delta,
                        new_qty: Some(*new_qty),
                        reason,
                        order_id: None,
                    };
                    self.change(event, item, at, c);
                }
            }
            E::InventoryLotHeld {
                lot_id,
                hold_id,
                reason,
                at,
                ..
            } => {
                let at = pg_ts(at)?;
                if let Some(row) = self.row(item, lot_id.as_str()) {
                    row.status = status_name(LotStatus::Held);
                    row.hold_reason = Some(reason.as_str().to_owned());
                    row.hold_id = hold_id.as_ref().map(|h| h.as_str().to_owned());
                }
                self.status_change(event, item, lot_id.as_str(), "held", reason.as_str(), at);
            }
            E::InventoryLotReleased {
                lot_id, reason, at, ..
            } => {
                let at = pg_ts(at)?;
                if let Some(row) = self.row(item, lot_id.as_str()) {
                    row.status = status_name(LotStatus::Available);
                    row.hold_reason = None;
                    row.hold_id = None;
                }
                let r = reason.as_str();
                self.status_change(event, item, lot_id.as_str(), "released", r, at);
            }
            E::InventoryLotScrapped {
                lot_id,
                allocations,
                reason,
                at,
                ..
            } => {
                let at = pg_ts(at)?;
                if let Some(row) = self.row(item, lot_id.as_str()) {
                    row.status = status_name(LotStatus::Scrapped);
                }
                if allocations.is_empty() {
                    let r = reason.as_str();
                    self.status_change(event, item, lot_id.as_str(), "scrapped", r, at);
                }
                for a in allocations {
                    let c = Change {
                        lot: lot_id.as_str(),
                        location: Some(a.location.as_str()),
                        kind: "scrapped",
                        delta: -a.qty,
                        new_qty: Some(Decimal::ZERO),
                        reason: Some(reason.as_str()),
                        order_id: None,
                    };
                    self.change(event, item, at, c);
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn status_change(
        &mut self,
        event: &RecordedEvent,
        item: &str,
        lot: &str,
        kind: &'static str,
        reason: &str,
        at: DateTime<Utc>,
    ) {
        let c = Change {
            lot,
            location: None,
            kind,
            delta: Decimal::ZERO,
            new_qty: None,
            reason: Some(reason),
            order_id: None,
        };
        self.change(event, item, at, c);
    }
}

/// Applies a chunk of inventory events to the lot tables.
pub(crate) async fn apply_chunk(
    conn: &mut PgConnection,
    items: &[(&RecordedEvent, &InventoryEvent)],
) -> Result<(), ApplyError> {
    let mut fold = Fold::default();
    for (_, e) in items {
        for k in keys(e) {
            fold.lots.entry(k).or_default();
        }
    }
    if fold.lots.is_empty() {
        return Ok(());
    }
    let (item_ids, lot_ids): (Vec<&str>, Vec<&str>) = fold
        .lots
        .keys()
        .map(|(i, l)| (i.as_str(), l.as_str()))
        .unzip();
    let loaded: Vec<LotRow> = sqlx::query_as(
        "SELECT l.* FROM rm_lots l JOIN UNNEST($1::text[], $2::text[]) AS k(item_id, lot_id) \
         ON l.item_id = k.item_id AND l.lot_id = k.lot_id",
    )
    .bind(&item_ids)
    .bind(&lot_ids)
    .fetch_all(&mut *conn)
    .await?;
    for row in loaded {
        fold.lots
            .insert((row.item_id.clone(), row.lot_id.clone()), Some(row));
    }
    for (event, e) in items {
        fold.add(event, e)?;
    }
    write_lots(conn, &fold).await?;
    write_stock(conn, &fold).await?;
    write_edges(conn, &fold).await?;
    write_movements(conn, &fold).await
}

async fn write_lots(conn: &mut PgConnection, fold: &Fold) -> Result<(), ApplyError> {
    let rows: Vec<&LotRow> = fold.lots.values().flatten().collect();
    if rows.is_empty() {
        return Ok(());
    }
    fn col<'a, T>(rows: &[&'a LotRow], f: impl Fn(&'a LotRow) -> T) -> Vec<T> {
        rows.iter().map(|r| f(r)).collect()
    }
    sqlx::query(
        "INSERT INTO rm_lots (item_id, lot_id, item_type, supplier_lot, expiry, origin, parent_lot, \
         order_id, machine_id, status, hold_reason, hold_id, created_at, created_by, \
         created_recorded, updated_at, produced_from, produced_to) \
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], \
             $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], \
             $13::timestamptz[], $14::text[], $15::timestamptz[], $16::timestamptz[], \
             $17::timestamptz[], $18::timestamptz[]) \
         ON CONFLICT (item_id, lot_id) DO UPDATE SET item_type = excluded.item_type, \
         supplier_lot = excluded.supplier_lot, expiry = excluded.expiry, origin = excluded.origin, \
         parent_lot = excluded.parent_lot, order_id = excluded.order_id, \
         machine_id = excluded.machine_id, status = excluded.status, \
         hold_reason = excluded.hold_reason, hold_id = excluded.hold_id, \
         created_at = excluded.created_at, created_by = excluded.created_by, \
         created_recorded = excluded.created_recorded, updated_at = excluded.updated_at, \
         produced_from = excluded.produced_from, produced_to = excluded.produced_to",
    )
    .bind(col(&rows, |r| r.item_id.as_str()))
    .bind(col(&rows, |r| r.lot_id.as_str()))
    .bind(col(&rows, |r| r.item_type.as_str()))
    .bind(col(&rows, |r| r.supplier_lot.as_deref()))
    .bind(col(&rows, |r| r.expiry))
    .bind(col(&rows, |r| r.origin.as_str()))
    .bind(col(&rows, |r| r.parent_lot.as_deref()))
    .bind(col(&rows, |r| r.order_id.as_deref()))
    .bind(col(&rows, |r| r.machine_id.as_deref()))
    .bind(col(&rows, |r| r.status.as_str()))
    .bind(col(&rows, |r| r.hold_reason.as_deref()))
    .bind(col(&rows, |r| r.hold_id.as_deref()))
    .bind(col(&rows, |r| r.created_at))
    .bind(col(&rows, |r| r.created_by.as_deref()))
    .bind(col(&rows, |r| r.created_recorded))
    .bind(col(&rows, |r| r.updated_at))
    .bind(col(&rows, |r| r.produced_from))
    .bind(col(&rows, |r| r.produced_to))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn write_stock(conn: &mut PgConnection, fold: &Fold) -> Result<(), ApplyError> {
    if fold.stock.is_empty() {
        return Ok(());
    }
    let stock: Vec<_> = fold.stock.iter().collect();
    let items: Vec<&str> = stock.iter().map(|(k, _)| k.0.as_str()).collect();
    let lots: Vec<&str> = stock.iter().map(|(k, _)| k.1.as_str()).collect();
    let locations: Vec<&str> = stock.iter().map(|(k, _)| k.2.as_str()).collect();
    let quantities: Vec<Decimal> = stock.iter().map(|(_, v)| v.0).collect();
    let updated: Vec<DateTime<Utc>> = stock.iter().map(|(_, v)| v.1).collect();
    sqlx::query(
        "INSERT INTO rm_lot_stock (item_id, lot_id, location, quantity, updated_at) \
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::numeric[], $5::timestamptz[]) \
         ON CONFLICT (item_id, lot_id, location) DO UPDATE SET quantity = excluded.quantity, \
         updated_at = excluded.updated_at",
    )
    .bind(&items)
    .bind(&lots)
    .bind(&locations)
    .bind(&quantities)
    .bind(&updated)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn write_edges(conn: &mut PgConnection, fold: &Fold) -> Result<(), ApplyError> {
    if fold.edges.is_empty() {
        return Ok(());
    }
    let e = &fold.edges;
    sqlx::query(
        "INSERT INTO rm_lot_edges (position, seq, from_item, from_lot, to_item, to_lot, qty, kind, \
         order_id, at, recorded_at) \
         SELECT * FROM UNNEST($1::int8[], $2::int4[], $3::text[], $4::text[], $5::text[], \
             $6::text[], $7::numeric[], $8::text[], $9::text[], $10::timestamptz[], \
             $11::timestamptz[]) ON CONFLICT DO NOTHING",
    )
    .bind(e.iter().map(|x| x.position).collect::<Vec<_>>())
    .bind(e.iter().map(|x| x.seq).collect::<Vec<_>>())
    .bind(e.iter().map(|x| x.from.0.as_str()).collect::<Vec<_>>())
    .bind(e.iter().map(|x| x.from.1.as_str()).collect::<Vec<_>>())
    .bind(e.iter().map(|x| x.to.0.as_str()).collect::<Vec<_>>())
    .bind(e.iter().map(|x| x.to.1.as_str()).collect::<Vec<_>>())
    .bind(e.iter().map(|x| x.qty).collect::<Vec<_>>())
    .bind(e.iter().map(|x| x.kind).collect::<Vec<_>>())
    .bind(e.iter().map(|x| x.order_id.as_deref()).collect::<Vec<_>>())
    .bind(e.iter().map(|x| x.at).collect::<Vec<_>>())
    .bind(e.iter().map(|x| x.recorded_at).collect::<Vec<_>>())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn write_movements(conn: &mut PgConnection, fold: &Fold) -> Result<(), ApplyError> {
    if fold.movements.is_empty() {
        return Ok(());
    }
    let m = &fold.movements;
    sqlx::query(
        "INSERT INTO rm_lot_movements (position, seq, item_id, lot_id, location, kind, delta, \
         new_qty, status, reason, order_id, actor, at, recorded_at) \
         SELECT * FROM UNNEST($1::int8[], $2::int4[], $3::text[], $4::text[], $5::text[], \
             $6::text[], $7::numeric[], $8::numeric[], $9::text[], $10::text[], $11::text[], \
             $12::text[], $13::timestamptz[], $14::timestamptz[]) ON CONFLICT DO NOTHING",
    )
    .bind(m.iter().map(|x| x.position).collect::<Vec<_>>())
    .bind(m.iter().map(|x| x.seq).collect::<Vec<_>>())
    .bind(m.iter().map(|x| x.item_id.as_str()).collect::<Vec<_>>())
    .bind(m.iter().map(|x| x.lot_id.as_str()).collect::<Vec<_>>())
    .bind(m.iter().map(|x| x.location.as_deref()).collect::<Vec<_>>())
    .bind(m.iter().map(|x| x.kind).collect::<Vec<_>>())
    .bind(m.iter().map(|x| x.delta).collect::<Vec<_>>())
    .bind(m.iter().map(|x| x.new_qty).collect::<Vec<_>>())
    .bind(m.iter().map(|x| x.status.as_str()).collect::<Vec<_>>())
    .bind(m.iter().map(|x| x.reason.as_deref()).collect::<Vec<_>>())
    .bind(m.iter().map(|x| x.order_id.as_deref()).collect::<Vec<_>>())
    .bind(m.iter().map(|x| x.actor.as_deref()).collect::<Vec<_>>())
    .bind(m.iter().map(|x| x.at).collect::<Vec<_>>())
    .bind(m.iter().map(|x| x.recorded_at).collect::<Vec<_>>())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

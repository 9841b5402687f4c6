//! Lots and genealogy (ADR 0057) over a 3-level BOM with a split lot, the events decided by
//! the real aggregates and process flow, appended to the store and projected; the traces are
//! checked against figures worked out by hand.
//!
//! The plant:
//! - steel: lots S1 (supplier SUP-A) and S2 (SUP-B), 100 each at RAW; paint: P1 (SUP-C), 50.
//! - bracket = 2 steel. Order O-BR (output lot per order, "O-BR"): 30 good → 60 steel from
//!   S1 (FIFO; S1 40 left); 30 good → 60 steel: S1 40, S2 20 (S2 80 left). O-BR holds 60.
//! - O-BR is split: 20 into O-BR-a (O-BR 40, O-BR-a 20; both at FG).
//! - frame = 1 bracket + 0.5 paint. Order O-FR: 50 good → 50 bracket: O-BR 40, O-BR-a 10
//!   (FIFO: O-BR was created first), 25 paint from P1. O-FR holds 50.
//! - widget = 2 frame. Order O-WG: 10 good → 20 frame from O-FR (30 left). O-WG holds 10.
//!
//! Backward from widget/O-WG: O-FR (depth 1); O-BR, O-BR-a, P1 (2); S1, S2 (3): edges
//! S1→O-BR 100, S2→O-BR 20, O-BR→O-BR-a 20 (split), O-BR→O-FR 40, O-BR-a→O-FR 10,
//! P1→O-FR 25, O-FR→O-WG 20.
//! Forward from steel/S2: O-BR (1); O-BR-a, O-FR (2); O-WG (3), whose 10 sit at FG.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use shopfloor_domain::inventory::{InventoryCommand, ItemType};
use shopfloor_domain::lot::{OutputLots, ReceiveLot, SplitLot};
use shopfloor_domain::machine::MachineEvent;
use shopfloor_domain::order::BomLine;
use shopfloor_domain::process::{on_parts_produced_into, OrderFacts, Target};
use shopfloor_domain::values::{CycleTime, Quantity, Text};
use shopfloor_domain::{Decide, InventoryItem};
use shopfloor_projections::projection::apply_from_store;
use shopfloor_projections::query::lots::{self, Direction, LotFilter, Trace};
use shopfloor_projections::Projection;
use sqlx::PgPool;

use crate::floor::{at, Floor};

fn d(s: &str) -> Decimal {
    s.parse().unwrap()
}

fn q(s: &str) -> Quantity {
    Quantity::new(d(s)).unwrap()
}

struct Plant {
    floor: Floor,
    items: HashMap<String, InventoryItem>,
    reports: u32,
}

impl Plant {
    async fn run(&mut self, item: &str, command: InventoryCommand) {
        let aggregate = self.items.entry(item.to_owned()).or_default();
        for e in aggregate.execute(command).unwrap() {
            self.floor.append("inventory_item", item, e).await;
        }
    }

    async fn receive(&mut self, item: &str, lot: &str, supplier: &str, qty: &str) {
        let command = InventoryCommand::ReceiveLot(ReceiveLot {
            item_id: item.parse().unwrap(),
            item_type: ItemType::Raw,
            lot_id: lot.parse().unwrap(),
            supplier_lot: Some(Text::new(supplier).unwrap()),
            location: "RAW".parse().unwrap(),
            qty: q(qty),
            expiry: None,
            reason: None,
            at: at("06:00"),
        });
        self.run(item, command).await;
    }

    /// What the process manager does for a parts report on `order` (output lot per order).
    async fn report(&mut self, order: &str, product: &str, bom: &[(&str, &str)], good: u64) {
        self.reports += 1;
        let facts = OrderFacts {
            order_id: order.parse().unwrap(),
            product_id: product.parse().unwrap(),
            bom: bom
                .iter()
                .map(|(item, per)| BomLine {
                    item_id: item.parse().unwrap(),
                    qty_per_unit: q(per),
                    lots: Vec::new(),
                })
                .collect(),
            input_location: None,
            output_location: "FG".parse().unwrap(),
        };
        let event = MachineEvent::MachinePartsProduced {
            scrap_reason: None,
            machine_id: "M1".parse().unwrap(),
            good,
            scrap: 0,
            order_id: Some(order.parse().unwrap()),
            ideal_cycle_time_s: CycleTime::new(1.0).unwrap(),
            at: at("08:00") + chrono::Duration::minutes(i64::from(self.reports)),
        };
        let id = format!("ev-{}", self.reports);
        for c in on_parts_produced_into(&id, &event, &facts, &OutputLots::PerOrder) {
            if let Target::InventoryItem { item_id, command } = c.target {
                self.run(item_id.as_str(), command).await;
            }
        }
    }
}

async fn now(pool: &PgPool) -> DateTime<Utc> {
    sqlx::query_scalar("SELECT clock_timestamp()")
        .fetch_one(pool)
        .await
        .unwrap()
}

/// (item/lot → depth) of a trace.
fn depths(t: &Trace) -> BTreeMap<String, u32> {
    t.lots
        .iter()
        .map(|l| (format!("{}/{}", l.lot.item_id, l.lot.lot_id), l.depth))
        .collect()
}

/// (from → to, kind) → qty of a trace.
fn edges(t: &Trace) -> BTreeMap<String, Decimal> {
    t.edges
        .iter()
        .map(|e| {
            (
                format!("{}→{} {}", e.from_lot, e.to_lot, e.kind),
                e.qty.normalize(),
            )
        })
        .collect()
}

fn expect<V: Clone>(pairs: &[(&str, V)]) -> BTreeMap<String, V> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn backward_and_forward_traces_over_a_three_level_bom_with_a_split_lot(pool: PgPool) {
    let mut p = Plant {
        floor: Floor::new(&pool),
        items: HashMap::new(),
        reports: 0,
    };
    p.receive("steel", "S1", "SUP-A", "100").await;
    p.receive("steel", "S2", "SUP-B", "100").await;
    p.receive("paint", "P1", "SUP-C", "50").await;
    p.report("O-BR", "bracket", &[("steel", "2")], 30).await;
    p.report("O-BR", "bracket", &[("steel", "2")], 30).await;
    p.run(
        "bracket",
        InventoryCommand::SplitLot(SplitLot {
            item_id: "bracket".parse().unwrap(),
            lot_id: "O-BR".parse().unwrap(),
            new_lot_id: "O-BR-a".parse().unwrap(),
            location: "FG".parse().unwrap(),
            qty: q("20"),
            reason: None,
            at: at("09:00"),
        }),
    )
    .await;
    let frame_bom = [("bracket", "1"), ("paint", "0.5")];
    p.report("O-FR", "frame", &frame_bom, 50).await;
    let before_widgets = now(&pool).await;
    p.report("O-WG", "widget", &[("frame", "2")], 10).await;
    apply_from_store(&pool, Projection::Inventory)
        .await
        .unwrap();

    let back = lots::trace(&pool, "widget", "O-WG", Direction::Backward, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        depths(&back),
        expect(&[
            ("widget/O-WG", 0),
            ("frame/O-FR", 1),
            ("bracket/O-BR", 2),
            ("bracket/O-BR-a", 2),
            ("paint/P1", 2),
            ("steel/S1", 3),
            ("steel/S2", 3),
        ])
    );
    assert_eq!(back.depth, 3);
    assert_eq!(
        edges(&back),
        expect(&[
            ("S1→O-BR consumed", d("100")),
            ("S2→O-BR consumed", d("20")),
            ("O-BR→O-BR-a split", d("20")),
            ("O-BR→O-FR consumed", d("40")),
            ("O-BR-a→O-FR consumed", d("10")),
            ("P1→O-FR consumed", d("25")),
            ("O-FR→O-WG consumed", d("20")),
        ])
    );
    let frame = back.lots.iter().find(|l| l.lot.lot_id == "O-FR").unwrap();
    assert_eq!(frame.lot.machine_id.as_deref(), Some("M1"));
    assert_eq!(frame.lot.order_id.as_deref(), Some("O-FR"));
    assert_eq!(frame.lot.origin, "produced");
    assert_eq!(frame.lot.produced_from, Some(at("08:03")));
    let brackets = back.lots.iter().find(|l| l.lot.lot_id == "O-BR").unwrap();
    assert_eq!(
        (brackets.lot.produced_from, brackets.lot.produced_to),
        (Some(at("08:01")), Some(at("08:02"))),
        "two reports into the per-order lot"
    );
    let s2 = back.lots.iter().find(|l| l.lot.lot_id == "S2").unwrap();
    assert_eq!(s2.lot.supplier_lot.as_deref(), Some("SUP-B"));
    assert_eq!(s2.lot.quantity, d("80"));

    let fwd = lots::trace(&pool, "steel", "S2", Direction::Forward, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        depths(&fwd),
        expect(&[
            ("steel/S2", 0),
            ("bracket/O-BR", 1),
            ("bracket/O-BR-a", 2),
            ("frame/O-FR", 2),
            ("widget/O-WG", 3),
        ])
    );
    assert_eq!(fwd.edges.len(), 5);
    let widgets = fwd.lots.iter().find(|l| l.lot.lot_id == "O-WG").unwrap();
    assert_eq!(widgets.lot.stock.len(), 1);
    assert_eq!(widgets.lot.stock[0].location, "FG");
    assert_eq!(widgets.lot.stock[0].quantity, d("10"));
    let frames = fwd.lots.iter().find(|l| l.lot.lot_id == "O-FR").unwrap();
    assert_eq!(frames.lot.quantity, d("30"));

    // As of before the widgets: the widget lot did not exist, S2 fed no widget yet.
    let then = Some(before_widgets);
    assert!(
        lots::trace(&pool, "widget", "O-WG", Direction::Backward, then)
            .await
            .unwrap()
            .is_none()
    );
    let fwd_then = lots::trace(&pool, "steel", "S2", Direction::Forward, then)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(fwd_then.lots.len(), 4);
    let frames_then = fwd_then
        .lots
        .iter()
        .find(|l| l.lot.lot_id == "O-FR")
        .unwrap();
    assert_eq!(
        frames_then.lot.quantity,
        d("50"),
        "before the widgets took 20"
    );

    // Recall: which lots hold supplier lot SUP-B, and which finished lots it reached.
    let by_supplier = lots::list_lots(
        &pool,
        &LotFilter {
            supplier_lot: Some("SUP-B".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(by_supplier.len(), 1);
    assert_eq!(by_supplier[0].lot_id, "S2");
    let on_m1 = lots::list_lots(
        &pool,
        &LotFilter {
            machine_id: Some("M1".into()),
            from: Some(at("08:00")),
            to: Some(at("08:03")),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let names: Vec<&str> = on_m1.iter().map(|l| l.lot_id.as_str()).collect();
    assert_eq!(
        names,
        vec!["O-BR"],
        "only the bracket reports ran 08:00–08:03"
    );
}

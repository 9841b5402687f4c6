//! Lots (ADR 0057): receipts, the backflush order (FIFO, FEFO, untracked last), holds that
//! block consumption, split / merge / move, quality decisions, output lots by rule, and the
//! plan of a forward hold. Every expected figure is worked out by hand in the comments.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use shopfloor_domain::inventory::*;
use shopfloor_domain::lot::*;
use shopfloor_domain::machine::MachineEvent;
use shopfloor_domain::order::BomLine;
use shopfloor_domain::process::*;
use shopfloor_domain::values::{CycleTime, ItemId, Location, LotId};
use shopfloor_domain::{Decide, InventoryItem};

use crate::support::{day, dec, delta, id, qty, t, text};

fn receive_lot(
    lot: &str,
    location: &str,
    q: &str,
    expiry: Option<DateTime<Utc>>,
) -> InventoryCommand {
    InventoryCommand::ReceiveLot(ReceiveLot {
        item_id: id("steel"),
        item_type: ItemType::Raw,
        lot_id: id(lot),
        supplier_lot: Some(text(&format!("SUP-{lot}"))),
        location: id(location),
        qty: qty(q),
        expiry,
        reason: None,
        at: t(7, 0),
    })
}

fn receive_untracked(location: &str, q: &str) -> InventoryCommand {
    InventoryCommand::ReceiveStock(ReceiveStock {
        item_id: id("steel"),
        item_type: ItemType::Raw,
        location: id(location),
        qty: qty(q),
        reason: None,
        at: t(7, 30),
    })
}

fn consume(q: &str, location: Option<&str>, into: Option<&str>) -> InventoryCommand {
    consume_preferring(q, location, into, &[])
}

fn consume_preferring(
    q: &str,
    location: Option<&str>,
    into: Option<&str>,
    prefer: &[&str],
) -> InventoryCommand {
    InventoryCommand::ConsumeLots(ConsumeLots {
        consume: ConsumeStock {
            item_id: id("steel"),
            order_id: id("PO-1"),
            qty: qty(q),
            location: location.map(id),
            at: t(9, 0),
        },
        into: into.map(|lot| LotRef {
            item_id: id("widget"),
            lot_id: id(lot),
        }),
        prefer: prefer.iter().map(|l| id(l)).collect(),
    })
}

fn hold(lot: &str) -> InventoryCommand {
    InventoryCommand::HoldLot(HoldLot {
        item_id: id("steel"),
        lot_id: id(lot),
        reason: text("supplier recall"),
        hold_id: None,
        at: t(8, 0),
    })
}

fn take(lot: Option<&str>, location: &str, q: &str, left: &str) -> LotTake {
    LotTake {
        lot_id: lot.map(id),
        location: id(location),
        qty: dec(q),
        new_qty: dec(left),
    }
}

fn steel(commands: Vec<InventoryCommand>) -> InventoryItem {
    let mut item = InventoryItem::default();
    for c in commands {
        item.execute(c).unwrap();
    }
    item
}

fn lot_qty(item: &InventoryItem, lot: &str, location: &str) -> Decimal {
    let lot_id: LotId = id(lot);
    let location: Location = id(location);
    item.item().unwrap().lots[&lot_id].at(&location)
}

/// Levels equal untracked plus lot stock at every location.
fn assert_consistent(item: &InventoryItem) {
    let item = item.item().unwrap();
    for (location, level) in &item.levels {
        assert_eq!(
            *level,
            item.untracked(location) + item.in_lots(location),
            "at {location}"
        );
    }
}

#[test]
fn a_lot_receipt_raises_the_level_then_records_the_lot() {
    let mut item = InventoryItem::default();
    let events = item
        .execute(receive_lot("L1", "RAW", "10", Some(day(20))))
        .unwrap();
    assert_eq!(events.len(), 2);
    assert!(
        matches!(&events[0], InventoryEvent::InventoryReceived { new_level, .. } if *new_level == dec("10"))
    );
    assert!(
        matches!(&events[1], InventoryEvent::InventoryLotReceived { lot_id, .. } if lot_id.as_str() == "L1")
    );
    assert_eq!(lot_qty(&item, "L1", "RAW"), dec("10"));
    assert_eq!(
        item.execute(receive_lot("L1", "RAW", "1", None)),
        Err(InventoryError::LotExists { lot_id: id("L1") })
    );
}

#[test]
fn backflush_takes_lots_fifo_then_untracked_stock_and_names_the_output_lot() {
    // RAW holds L1 10, L2 10 and 5 untracked: level 25. Taking 23: L1 10 (→ 0), L2 10 (→ 0),
    // untracked 3 (→ 2); the level goes 25 → 2.
    let mut item = steel(vec![
        receive_lot("L1", "RAW", "10", None),
        receive_lot("L2", "RAW", "10", None),
        receive_untracked("RAW", "5"),
    ]);
    let events = item.execute(consume("23", None, Some("PO-1"))).unwrap();
    assert_eq!(
        events,
        vec![
            InventoryEvent::InventoryConsumed {
                item_id: id("steel"),
                item_type: ItemType::Raw,
                order_id: id("PO-1"),
                requested: qty("23"),
                location: None,
                allocations: vec![Allocation {
                    location: id("RAW"),
                    qty: dec("23"),
                    new_level: dec("2"),
                }],
                shortage: dec("0"),
                at: t(9, 0),
            },
            InventoryEvent::InventoryLotsTaken {
                item_id: id("steel"),
                item_type: ItemType::Raw,
                cause: TakeCause::Backflush,
                order_id: Some(id("PO-1")),
                into: Some(LotRef {
                    item_id: id("widget"),
                    lot_id: id("PO-1"),
                }),
                takes: vec![
                    take(Some("L1"), "RAW", "10", "0"),
                    take(Some("L2"), "RAW", "10", "0"),
                    take(None, "RAW", "3", "2"),
                ],
                at: t(9, 0),
            },
        ]
    );
    assert_consistent(&item);
}

#[test]
fn fefo_takes_the_earliest_expiry_first_and_lots_without_expiry_last() {
    // L1 expires on the 20th, L2 on the 10th, L3 never: FEFO takes L2 10, then L1 5.
    let mut item = steel(vec![
        receive_lot("L1", "RAW", "10", Some(day(20))),
        receive_lot("L2", "RAW", "10", Some(day(10))),
        receive_lot("L3", "RAW", "10", None),
        InventoryCommand::SetLotRule(SetLotRule {
            item_id: id("steel"),
            item_type: ItemType::Raw,
            rule: LotRule {
                output: OutputLots::None,
                pick: PickOrder::Fefo,
                ..LotRule::default()
            },
            at: t(7, 0),
        }),
    ]);
    let events = item.execute(consume("15", None, None)).unwrap();
    let InventoryEvent::InventoryLotsTaken { takes, into, .. } = &events[1] else {
        panic!("no lot split: {events:?}");
    };
    assert_eq!(into, &None);
    assert_eq!(
        takes,
        &vec![
            take(Some("L2"), "RAW", "10", "0"),
            take(Some("L1"), "RAW", "5", "5"),
        ]
    );
}

#[test]
fn a_held_lot_is_never_consumed_and_what_is_missing_is_a_shortage() {
    // L1 10 held, L2 5: a backflush of 12 takes L2 5 and records a shortage of 7; the level
    // goes 15 → 10 (the held lot's stock).
    let mut item = steel(vec![
        receive_lot("L1", "RAW", "10", None),
        receive_lot("L2", "RAW", "5", None),
        hold("L1"),
    ]);
    let events = item
        .execute(consume("12", Some("RAW"), Some("PO-1")))
        .unwrap();
    let InventoryEvent::InventoryConsumed {
        allocations,
        shortage,
        ..
    } = &events[0]
    else {
        panic!("{events:?}");
    };
    assert_eq!(*shortage, dec("7"));
    assert_eq!(allocations[0].new_level, dec("10"));
    let InventoryEvent::InventoryLotsTaken { takes, .. } = &events[1] else {
        panic!("{events:?}");
    };
    assert_eq!(takes, &vec![take(Some("L2"), "RAW", "5", "0")]);
    assert_eq!(lot_qty(&item, "L1", "RAW"), dec("10"));
    // Released, it is taken again.
    item.execute(InventoryCommand::ReleaseLot(ReleaseLot {
        item_id: id("steel"),
        lot_id: id("L1"),
        reason: text("retested"),
        at: t(10, 0),
    }))
    .unwrap();
    let events = item.execute(consume("4", None, None)).unwrap();
    assert!(
        matches!(&events[1], InventoryEvent::InventoryLotsTaken { takes, .. }
        if takes == &vec![take(Some("L1"), "RAW", "4", "6")])
    );
}

#[test]
fn held_stock_does_not_count_when_choosing_the_location() {
    // A: 10 in a held lot + 2 untracked (available 2); B: 5 untracked. The largest available
    // stock is B's, so 4 come from B 4 (level 5 → 1), not from A.
    let mut item = steel(vec![
        receive_lot("L1", "A", "10", None),
        receive_untracked("A", "2"),
        receive_untracked("B", "5"),
        hold("L1"),
    ]);
    let events = item.execute(consume("4", None, None)).unwrap();
    assert_eq!(events.len(), 1, "no lot was taken: no lot event");
    let InventoryEvent::InventoryConsumed { allocations, .. } = &events[0] else {
        panic!("{events:?}");
    };
    assert_eq!(
        allocations,
        &vec![Allocation {
            location: id("B"),
            qty: dec("4"),
            new_level: dec("1"),
        }]
    );
}

#[test]
fn holds_releases_and_scraps_are_decisions_with_their_rules() {
    let mut item = steel(vec![receive_lot("L1", "RAW", "10", None)]);
    assert_eq!(item.execute(hold("L1")).unwrap().len(), 1);
    assert_eq!(
        item.execute(hold("L1")).unwrap(),
        vec![],
        "held already: nothing"
    );
    let events = item
        .execute(InventoryCommand::ScrapLot(ScrapLot {
            item_id: id("steel"),
            lot_id: id("L1"),
            reason: text("contaminated"),
            at: t(11, 0),
        }))
        .unwrap();
    assert!(
        matches!(&events[0], InventoryEvent::InventoryLotScrapped { allocations, .. }
        if allocations == &vec![Allocation { location: id("RAW"), qty: dec("10"), new_level: dec("0") }])
    );
    assert_eq!(item.item().unwrap().level("RAW"), dec("0"));
    assert_eq!(
        item.execute(hold("L1")),
        Err(InventoryError::LotScrapped { lot_id: id("L1") })
    );
    assert_eq!(
        item.execute(hold("L9")),
        Err(InventoryError::LotNotFound {
            item_id: id("steel"),
            lot_id: id("L9")
        })
    );
    let mut other = steel(vec![receive_lot("L1", "RAW", "10", None)]);
    assert_eq!(
        other.execute(InventoryCommand::ReleaseLot(ReleaseLot {
            item_id: id("steel"),
            lot_id: id("L1"),
            reason: text("?"),
            at: t(9, 0),
        })),
        Err(InventoryError::LotNotHeld { lot_id: id("L1") })
    );
}

#[test]
fn split_merge_and_move_keep_levels_and_lots_consistent() {
    let mut item = steel(vec![
        receive_lot("L1", "RAW", "10", Some(day(20))),
        receive_lot("L2", "RAW", "4", Some(day(12))),
    ]);
    // Split 3 of L1 into L1a: L1 7, L1a 3 (same expiry), level still 14.
    item.execute(InventoryCommand::SplitLot(SplitLot {
        item_id: id("steel"),
        lot_id: id("L1"),
        new_lot_id: id("L1a"),
        location: id("RAW"),
        qty: qty("3"),
        reason: None,
        at: t(8, 0),
    }))
    .unwrap();
    assert_eq!(lot_qty(&item, "L1", "RAW"), dec("7"));
    assert_eq!(lot_qty(&item, "L1a", "RAW"), dec("3"));
    assert_eq!(
        item.item().unwrap().lots[&id::<LotId>("L1a")].expiry,
        Some(day(20))
    );
    // Merge L1a and L2 into a new M1: 7 in M1, expiry the earliest (the 12th).
    item.execute(InventoryCommand::MergeLots(MergeLots {
        item_id: id("steel"),
        sources: vec![id("L1a"), id("L2")],
        into: id("M1"),
        location: id("RAW"),
        reason: None,
        at: t(8, 30),
    }))
    .unwrap();
    assert_eq!(lot_qty(&item, "M1", "RAW"), dec("7"));
    assert_eq!(
        item.item().unwrap().lots[&id::<LotId>("M1")].expiry,
        Some(day(12))
    );
    // Move 5 of M1 to LINE: RAW 14 → 9, LINE 0 → 5.
    item.execute(InventoryCommand::MoveLot(MoveLot {
        item_id: id("steel"),
        lot_id: id("M1"),
        from: id("RAW"),
        to: id("LINE"),
        qty: Some(qty("5")),
        reason: None,
        at: t(9, 0),
    }))
    .unwrap();
    let state = item.item().unwrap();
    assert_eq!(state.level("RAW"), dec("9"));
    assert_eq!(state.level("LINE"), dec("5"));
    assert_consistent(&item);
    // A held lot cannot be merged; a move cannot take more than the lot holds.
    item.execute(hold("L1")).unwrap();
    assert_eq!(
        item.execute(InventoryCommand::MergeLots(MergeLots {
            item_id: id("steel"),
            sources: vec![id("L1")],
            into: id("M1"),
            location: id("RAW"),
            reason: None,
            at: t(9, 0),
        })),
        Err(InventoryError::LotNotAvailable {
            lot_id: id("L1"),
            status: LotStatus::Held
        })
    );
    assert!(matches!(
        item.execute(InventoryCommand::MoveLot(MoveLot {
            item_id: id("steel"),
            lot_id: id("M1"),
            from: id("LINE"),
            to: id("RAW"),
            qty: Some(qty("6")),
            reason: None,
            at: t(9, 0),
        })),
        Err(InventoryError::InsufficientLotStock { .. })
    ));
}

#[test]
fn a_count_below_the_lots_shrinks_untracked_stock_first_then_lots_fifo() {
    // RAW: L1 10 + 2 untracked = 12. Adjust −5 → 7: untracked 2 (→ 0), then L1 3 (→ 7).
    let mut item = steel(vec![
        receive_lot("L1", "RAW", "10", None),
        receive_untracked("RAW", "2"),
    ]);
    let events = item
        .execute(InventoryCommand::AdjustStock(AdjustStock {
            item_id: id("steel"),
            item_type: ItemType::Raw,
            location: id("RAW"),
            delta: delta("-5"),
            reason: text("count"),
            at: t(12, 0),
        }))
        .unwrap();
    assert!(
        matches!(&events[1], InventoryEvent::InventoryLotsTaken { cause: TakeCause::Adjustment, takes, .. }
        if takes == &vec![take(None, "RAW", "2", "0"), take(Some("L1"), "RAW", "3", "7")])
    );
    assert_consistent(&item);
}

#[test]
fn output_lots_follow_the_rule() {
    let order = id("PO-7");
    assert_eq!(output_lot(&OutputLots::None, &order, t(9, 0)), None);
    assert_eq!(
        output_lot(&OutputLots::PerOrder, &order, t(9, 0)),
        Some(id("PO-7"))
    );
    let shifts = OutputLots::PerShift {
        hours: 8,
        start_hour: 6,
    };
    // 06–14 is S1, 14–22 S2, 22–06 S3 of the day it started.
    assert_eq!(
        output_lot(&shifts, &order, t(6, 0)),
        Some(id("PO-7-20240301-S1"))
    );
    assert_eq!(
        output_lot(&shifts, &order, t(21, 59)),
        Some(id("PO-7-20240301-S2"))
    );
    assert_eq!(
        output_lot(&shifts, &order, t(23, 0)),
        Some(id("PO-7-20240301-S3"))
    );
    assert_eq!(
        output_lot(&shifts, &order, t(5, 0)),
        Some(id("PO-7-20240229-S3"))
    );
}

#[test]
fn a_forward_hold_plans_one_hold_per_lot_with_stable_ids() {
    let lot = |item: &str, lot: &str| LotRef {
        item_id: id(item),
        lot_id: id(lot),
    };
    let lots = vec![lot("steel", "L1"), lot("frame", "PO-1"), lot("steel", "L1")];
    let plan = plan_forward_hold(&text("HOLD-1"), &text("recall"), &lots, t(9, 0));
    let ids: Vec<&str> = plan.iter().map(|c| c.command_id.as_str()).collect();
    assert_eq!(ids, vec!["HOLD-1/steel/L1", "HOLD-1/frame/PO-1"]);
    assert_eq!(
        plan,
        plan_forward_hold(&text("HOLD-1"), &text("recall"), &lots, t(9, 0))
    );
    let Target::InventoryItem { item_id, command } = &plan[1].target else {
        panic!("{plan:?}");
    };
    assert_eq!(item_id, &id::<ItemId>("frame"));
    assert!(matches!(command, InventoryCommand::HoldLot(h) if h.hold_id == Some(text("HOLD-1"))));
}

#[test]
fn parts_for_a_lot_tracked_product_fill_its_output_lot_and_feed_it() {
    let order = OrderFacts {
        order_id: id("PO-1"),
        product_id: id("widget"),
        bom: vec![BomLine {
            item_id: id("steel"),
            qty_per_unit: qty("2"),
            lots: Vec::new(),
        }],
        input_location: None,
        output_location: id("FG"),
    };
    let event = MachineEvent::MachinePartsProduced {
        scrap_reason: None,
        machine_id: id("M1"),
        good: 3,
        scrap: 1,
        order_id: Some(id("PO-1")),
        ideal_cycle_time_s: CycleTime::new(2.0).unwrap(),
        at: t(9, 0),
    };
    let commands = on_parts_produced_into("ev", &event, &order, &OutputLots::PerOrder);
    let ids: Vec<&str> = commands.iter().map(|c| c.command_id.as_str()).collect();
    assert_eq!(
        ids,
        vec!["ev/order", "ev/produce/widget", "ev/consume/steel"]
    );
    assert!(matches!(&commands[1].target, Target::InventoryItem {
        command: InventoryCommand::ProduceLot(p), ..
    } if p.lot_id.as_str() == "PO-1" && p.machine_id == Some(id("M1")) && p.produce.qty == qty("3")));
    assert!(matches!(&commands[2].target, Target::InventoryItem {
        command: InventoryCommand::ConsumeLots(c), ..
    } if c.consume.qty == qty("8") && c.into == Some(LotRef { item_id: id("widget"), lot_id: id("PO-1") })));
    // Without a rule, the commands are those of before lots.
    let plain = on_parts_produced_into("ev", &event, &order, &OutputLots::None);
    assert_eq!(plain, on_parts_produced("ev", &event, &order));
}

/// Lots named on the order are taken first, in the order named, wherever they are (a
/// held one is skipped), then the item's pick order takes the rest; the allocation per
/// location sums both, so levels and lots stay consistent.
#[test]
fn lots_named_on_the_order_are_taken_first() {
    // RAW holds L1 10 and L2 10; B holds L3 6. FIFO would take L1 first.
    let mut item = steel(vec![
        receive_lot("L1", "RAW", "10", None),
        receive_lot("L2", "RAW", "10", None),
        receive_lot("L3", "B", "6", None),
        hold("L2"),
    ]);
    // Named: L3 (at B), then the held L2 (skipped); 14 more come from L1 by FIFO.
    let events = item
        .execute(consume_preferring("20", None, Some("PO-1"), &["L3", "L2"]))
        .unwrap();
    let InventoryEvent::InventoryConsumed {
        allocations,
        shortage,
        ..
    } = &events[0]
    else {
        panic!("{events:?}");
    };
    assert_eq!(
        allocations,
        &vec![
            Allocation {
                location: id("B"),
                qty: dec("6"),
                new_level: dec("0"),
            },
            Allocation {
                location: id("RAW"),
                qty: dec("10"),
                new_level: dec("10"),
            },
        ]
    );
    assert_eq!(
        *shortage,
        dec("4"),
        "L2 is held: only L1's 10 were left at RAW"
    );
    let InventoryEvent::InventoryLotsTaken { takes, .. } = &events[1] else {
        panic!("{events:?}");
    };
    assert_eq!(
        takes,
        &vec![
            take(Some("L3"), "B", "6", "0"),
            take(Some("L1"), "RAW", "10", "0"),
        ]
    );
    assert_eq!(lot_qty(&item, "L2", "RAW"), dec("10"));
    assert_consistent(&item);

    // A named lot with more than needed, at the named location only.
    let mut item = steel(vec![
        receive_lot("L1", "RAW", "10", None),
        receive_lot("L2", "RAW", "10", None),
    ]);
    item.execute(consume_preferring("4", Some("RAW"), None, &["L2"]))
        .unwrap();
    assert_eq!(
        (lot_qty(&item, "L1", "RAW"), lot_qty(&item, "L2", "RAW")),
        (dec("10"), dec("6"))
    );
    assert_consistent(&item);
}

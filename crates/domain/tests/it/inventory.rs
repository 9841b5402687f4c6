//! Inventory: direct changes never below zero; backflush never refused.

use cqrs_es::test::TestFramework;
use rust_decimal::Decimal;
use shopfloor_domain::inventory::*;
use shopfloor_domain::Decide;

use crate::support::{dec, delta, id, qty, t, text};

fn framework() -> TestFramework<InventoryItem> {
    TestFramework::with(())
}

fn received(location: &str, qty_: &str, new_level: &str) -> InventoryEvent {
    InventoryEvent::InventoryReceived {
        item_id: id("steel"),
        item_type: ItemType::Raw,
        location: id(location),
        qty: qty(qty_),
        new_level: dec(new_level),
        reason: None,
        at: t(7, 0),
    }
}

fn receive_cmd(location: &str, qty_: &str, item_type: ItemType) -> InventoryCommand {
    InventoryCommand::ReceiveStock(ReceiveStock {
        item_id: id("steel"),
        item_type,
        location: id(location),
        qty: qty(qty_),
        reason: None,
        at: t(7, 0),
    })
}

fn adjust_cmd(location: &str, d: &str, item_type: ItemType) -> InventoryCommand {
    InventoryCommand::AdjustStock(AdjustStock {
        item_id: id("steel"),
        item_type,
        location: id(location),
        delta: delta(d),
        reason: text("cycle count"),
        at: t(8, 0),
    })
}

fn consume_cmd(qty_: &str, location: Option<&str>) -> InventoryCommand {
    InventoryCommand::ConsumeStock(ConsumeStock {
        item_id: id("steel"),
        order_id: id("PO-1"),
        qty: qty(qty_),
        location: location.map(id),
        at: t(9, 0),
    })
}

fn allocation(location: &str, qty_: &str, new_level: &str) -> Allocation {
    Allocation {
        location: id(location),
        qty: dec(qty_),
        new_level: dec(new_level),
    }
}

#[test]
fn receive_stock_into_a_new_item() {
    framework()
        .given_no_previous_events()
        .when(receive_cmd("RAW-A", "10.50", ItemType::Raw))
        .then_expect_events(vec![received("RAW-A", "10.5", "10.5")]);
}

#[test]
fn receive_stock_adds_to_the_level() {
    framework()
        .given(vec![received("RAW-A", "10", "10")])
        .when(receive_cmd("RAW-A", "5", ItemType::Raw))
        .then_expect_events(vec![received("RAW-A", "5", "15")]);
}

#[test]
fn receiving_as_another_item_type_is_refused() {
    framework()
        .given(vec![received("RAW-A", "10", "10")])
        .when(receive_cmd("RAW-A", "5", ItemType::Finished))
        .then_expect_error(InventoryError::ItemTypeMismatch {
            item_id: id("steel"),
            recorded: ItemType::Raw,
            given: ItemType::Finished,
        });
}

#[test]
fn a_command_for_another_item_is_refused() {
    framework()
        .given(vec![received("RAW-A", "10", "10")])
        .when(InventoryCommand::ReceiveStock(ReceiveStock {
            item_id: id("copper"),
            item_type: ItemType::Raw,
            location: id("RAW-A"),
            qty: qty("1"),
            reason: None,
            at: t(7, 0),
        }))
        .then_expect_error(InventoryError::WrongItem {
            expected: id("steel"),
            given: id("copper"),
        });
}

#[test]
fn a_level_that_would_overflow_is_refused() {
    framework()
        .given(vec![InventoryEvent::InventoryReceived {
            item_id: id("steel"),
            item_type: ItemType::Raw,
            location: id("RAW-A"),
            qty: qty("1"),
            new_level: Decimal::MAX,
            reason: None,
            at: t(7, 0),
        }])
        .when(receive_cmd("RAW-A", "1", ItemType::Raw))
        .then_expect_error(InventoryError::LevelOverflow {
            item_id: id("steel"),
            location: id("RAW-A"),
        });
}

#[test]
fn adjust_stock_up_and_down() {
    framework()
        .given(vec![received("RAW-A", "10", "10")])
        .when(adjust_cmd("RAW-A", "-10", ItemType::Raw))
        .then_expect_events(vec![InventoryEvent::InventoryAdjusted {
            item_id: id("steel"),
            item_type: ItemType::Raw,
            location: id("RAW-A"),
            delta: delta("-10"),
            new_level: dec("0"),
            reason: text("cycle count"),
            at: t(8, 0),
        }]);
    framework()
        .given_no_previous_events()
        .when(adjust_cmd("RAW-B", "2.5", ItemType::Raw))
        .then_expect_events(vec![InventoryEvent::InventoryAdjusted {
            item_id: id("steel"),
            item_type: ItemType::Raw,
            location: id("RAW-B"),
            delta: delta("2.5"),
            new_level: dec("2.5"),
            reason: text("cycle count"),
            at: t(8, 0),
        }]);
}

#[test]
fn adjusting_below_zero_is_refused_with_the_available_quantity() {
    framework()
        .given(vec![received("RAW-A", "10", "10")])
        .when(adjust_cmd("RAW-A", "-10.001", ItemType::Raw))
        .then_expect_error(InventoryError::InsufficientStock {
            item_id: id("steel"),
            location: id("RAW-A"),
            available: dec("10"),
            requested: dec("10.001"),
        });
    framework()
        .given_no_previous_events()
        .when(adjust_cmd("RAW-A", "-1", ItemType::Raw))
        .then_expect_error(InventoryError::InsufficientStock {
            item_id: id("steel"),
            location: id("RAW-A"),
            available: dec("0"),
            requested: dec("1"),
        });
}

#[test]
fn a_refused_adjustment_changes_nothing() {
    let mut item = InventoryItem::replay([received("RAW-A", "10", "10")]);
    let before = item.clone();
    assert!(item
        .execute(adjust_cmd("RAW-A", "-11", ItemType::Raw))
        .is_err());
    assert_eq!(item, before);
    assert_eq!(
        InventoryError::InsufficientStock {
            item_id: id("steel"),
            location: id("RAW-A"),
            available: dec("10"),
            requested: dec("11"),
        }
        .to_string(),
        "only 10 of item steel at RAW-A; cannot take 11"
    );
}

#[test]
fn adjusting_as_another_item_type_is_refused() {
    framework()
        .given(vec![received("RAW-A", "10", "10")])
        .when(adjust_cmd("RAW-A", "1", ItemType::Finished))
        .then_expect_error(InventoryError::ItemTypeMismatch {
            item_id: id("steel"),
            recorded: ItemType::Raw,
            given: ItemType::Finished,
        });
}

#[test]
fn consume_from_the_named_location_and_record_the_shortage() {
    framework()
        .given(vec![
            received("RAW-A", "3", "3"),
            received("RAW-B", "50", "50"),
        ])
        .when(consume_cmd("5", Some("RAW-A")))
        .then_expect_events(vec![InventoryEvent::InventoryConsumed {
            item_id: id("steel"),
            item_type: ItemType::Raw,
            order_id: id("PO-1"),
            requested: qty("5"),
            location: Some(id("RAW-A")),
            allocations: vec![allocation("RAW-A", "3", "0")],
            shortage: dec("2"),
            at: t(9, 0),
        }]);
}

#[test]
fn consume_from_the_largest_stock_first_ties_by_location_name() {
    framework()
        .given(vec![
            received("C", "4", "4"),
            received("B", "6", "6"),
            received("A", "4", "4"),
            received("D", "0.5", "0.5"),
        ])
        .when(consume_cmd("12", None))
        .then_expect_events(vec![InventoryEvent::InventoryConsumed {
            item_id: id("steel"),
            item_type: ItemType::Raw,
            order_id: id("PO-1"),
            requested: qty("12"),
            location: None,
            allocations: vec![
                allocation("B", "6", "0"),
                allocation("A", "4", "0"),
                allocation("C", "2", "2"),
            ],
            shortage: dec("0"),
            at: t(9, 0),
        }]);
}

#[test]
fn production_is_never_refused_even_without_any_stock() {
    framework()
        .given_no_previous_events()
        .when(consume_cmd("7", None))
        .then_expect_events(vec![InventoryEvent::InventoryConsumed {
            item_id: id("steel"),
            item_type: ItemType::Raw,
            order_id: id("PO-1"),
            requested: qty("7"),
            location: None,
            allocations: vec![],
            shortage: dec("7"),
            at: t(9, 0),
        }]);
    let mut item = InventoryItem::default();
    item.execute(consume_cmd("7", None)).unwrap();
    item.execute(consume_cmd("1", Some("RAW-A"))).unwrap();
    assert_eq!(item.item().unwrap().shortage_total, dec("8"));
    assert_eq!(item.item().unwrap().total(), dec("0"));
}

#[test]
fn produce_stock_adds_finished_goods() {
    framework()
        .given_no_previous_events()
        .when(InventoryCommand::ProduceStock(ProduceStock {
            item_id: id("steel"),
            order_id: id("PO-1"),
            location: id("FG"),
            qty: qty("40"),
            at: t(9, 0),
        }))
        .then_expect_events(vec![InventoryEvent::InventoryProduced {
            item_id: id("steel"),
            item_type: ItemType::Finished,
            order_id: id("PO-1"),
            location: id("FG"),
            qty: qty("40"),
            new_level: dec("40"),
            at: t(9, 0),
        }]);
}

#[test]
fn backflush_keeps_the_recorded_item_type() {
    // A sub-assembly stocked as raw material, produced by an order: never refused.
    framework()
        .given(vec![received("FG", "1", "1")])
        .when(InventoryCommand::ProduceStock(ProduceStock {
            item_id: id("steel"),
            order_id: id("PO-1"),
            location: id("FG"),
            qty: qty("2"),
            at: t(9, 0),
        }))
        .then_expect_events(vec![InventoryEvent::InventoryProduced {
            item_id: id("steel"),
            item_type: ItemType::Raw,
            order_id: id("PO-1"),
            location: id("FG"),
            qty: qty("2"),
            new_level: dec("3"),
            at: t(9, 0),
        }]);
}

#[test]
fn backflush_for_another_item_is_refused() {
    framework()
        .given(vec![received("RAW-A", "1", "1")])
        .when(InventoryCommand::ConsumeStock(ConsumeStock {
            item_id: id("copper"),
            order_id: id("PO-1"),
            qty: qty("1"),
            location: None,
            at: t(9, 0),
        }))
        .then_expect_error(InventoryError::WrongItem {
            expected: id("steel"),
            given: id("copper"),
        });
}

#[test]
fn levels_fold_per_location() {
    let mut item = InventoryItem::default();
    item.execute(receive_cmd("B", "5", ItemType::Raw)).unwrap();
    item.execute(receive_cmd("A", "5", ItemType::Raw)).unwrap();
    item.execute(consume_cmd("6", None)).unwrap();
    let levels: Vec<(String, Decimal)> = item
        .item()
        .unwrap()
        .levels
        .iter()
        .map(|(l, q)| (l.to_string(), *q))
        .collect();
    assert_eq!(
        levels,
        vec![(String::from("A"), dec("0")), (String::from("B"), dec("4"))]
    );
}

#[test]
fn a_production_that_would_overflow_the_level_is_refused() {
    framework()
        .given(vec![InventoryEvent::InventoryProduced {
            item_id: id("steel"),
            item_type: ItemType::Finished,
            order_id: id("PO-1"),
            location: id("FG"),
            qty: qty("1"),
            new_level: Decimal::MAX,
            at: t(9, 0),
        }])
        .when(InventoryCommand::ProduceStock(ProduceStock {
            item_id: id("steel"),
            order_id: id("PO-1"),
            location: id("FG"),
            qty: qty("1"),
            at: t(9, 0),
        }))
        .then_expect_error(InventoryError::LevelOverflow {
            item_id: id("steel"),
            location: id("FG"),
        });
}

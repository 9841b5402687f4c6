//! Snapshot of the serialized JSON of one event of every type, pinned in
//! `tests/fixtures/events.v1.json`. A change to an event's shape fails here: either it is a
//! mistake, or it is a schema change that needs a new `event_version` and an upcaster. Stored
//! payloads must also keep deserializing into the same events.
//!
//! Regenerate (after deciding the change is intended) with
//! `UPDATE_SNAPSHOTS=1 cargo test -p shopfloor-domain snapshots`.

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::num::{NonZeroU32, NonZeroU64};

use cqrs_es::{Aggregate, DomainEvent};
use serde_json::{json, Value};
use shopfloor_domain::inventory::*;
use shopfloor_domain::machine::*;
use shopfloor_domain::maintenance::*;
use shopfloor_domain::operator::*;
use shopfloor_domain::order::*;
use shopfloor_domain::policy::*;
use shopfloor_domain::reason::{Loss, ReasonCategory};
use shopfloor_domain::values::{CycleTime, OrderQuantity};

use crate::support::{day, dec, delta, id, qty, t, text};

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/events.v1.json");

/// Every event type the domain emits.
const ALL_EVENT_TYPES: [&str; 44] = [
    "OrderCreated",
    "OrderAssigned",
    "OrderStarted",
    "OrderHeld",
    "OrderResumed",
    "OrderCompleted",
    "OrderCancelled",
    "OrderPartsReported",
    "OrderInspectionRecorded",
    "MachineRegistered",
    "MachineStateChanged",
    "MachinePartsProduced",
    "MachineIdealCycleTimeChanged",
    "MachineMaintenancePerformed",
    "MachineStopClassified",
    "MaintenanceTaskScheduled",
    "MaintenanceTaskStarted",
    "MaintenanceTaskCompleted",
    "MaintenanceTaskCancelled",
    "InventoryReceived",
    "InventoryAdjusted",
    "InventoryConsumed",
    "InventoryProduced",
    "InventoryLotReceived",
    "InventoryLotProduced",
    "InventoryLotsTaken",
    "InventoryLotSplit",
    "InventoryLotsMerged",
    "InventoryLotMoved",
    "InventoryLotHeld",
    "InventoryLotReleased",
    "InventoryLotScrapped",
    "InventoryLotRuleSet",
    "PolicyDefined",
    "PolicyDue",
    "PolicyTaskCompleted",
    "PolicyTaskCancelled",
    "PolicyDisabled",
    "OperatorRegistered",
    "OperatorUpdated",
    "OperatorDeactivated",
    "OperatorReactivated",
    "OperatorClockedOn",
    "OperatorClockedOff",
];

fn order_events() -> Vec<OrderEvent> {
    vec![
        OrderEvent::OrderCreated {
            order_id: id("PO-1"),
            product_id: id("widget"),
            quantity: OrderQuantity::new(100).unwrap(),
            bom: vec![BomLine {
                item_id: id("steel"),
                qty_per_unit: qty("2.5"),
                lots: Vec::new(),
            }],
            input_location: Some(id("RAW-A")),
            output_location: id("FG"),
            at: t(8, 0),
        },
        OrderEvent::OrderAssigned {
            operator_ids: None,
            order_id: id("PO-1"),
            machine_id: id("M2"),
            previous_machine_id: Some(id("M1")),
            at: t(8, 5),
        },
        OrderEvent::OrderStarted {
            order_id: id("PO-1"),
            machine_id: id("M2"),
            at: t(8, 10),
        },
        OrderEvent::OrderHeld {
            order_id: id("PO-1"),
            reason: text("material missing"),
            at: t(9, 0),
        },
        OrderEvent::OrderResumed {
            order_id: id("PO-1"),
            at: t(9, 30),
        },
        OrderEvent::OrderCompleted {
            order_id: id("PO-1"),
            good_count: 98,
            scrap_count: 3,
            at: t(12, 0),
        },
        OrderEvent::OrderCancelled {
            order_id: id("PO-1"),
            reason: Some(text("customer withdrew")),
            previous_status: OrderStatus::OnHold,
            at: t(12, 0),
        },
        OrderEvent::OrderPartsReported {
            order_id: id("PO-1"),
            product_id: id("widget"),
            machine_id: id("M2"),
            good: 10,
            scrap: 1,
            good_count: 50,
            scrap_count: 2,
            at: t(10, 0),
        },
        OrderEvent::OrderInspectionRecorded {
            order_id: id("PO-1"),
            inspection_id: id("I1"),
            sample_size: 20,
            defects: 1,
            passed: true,
            inspector: id("qa-anna"),
            notes: Some(text("one scratch")),
            measurements: Vec::new(),
            at: t(10, 30),
        },
    ]
}

fn machine_events() -> Vec<MachineEvent> {
    vec![
        MachineEvent::MachineRegistered {
            machine_id: id("M1"),
            machine_type: id("press"),
            line: id("L1"),
            ideal_cycle_time_s: CycleTime::new(2.5).unwrap(),
            at: t(6, 0),
        },
        MachineEvent::MachineStateChanged {
            machine_id: id("M1"),
            state: MachineStatus::Down,
            reason: Some(text("motor smoking")),
            reason_code: Some(id("unclassified")),
            category: Some(ReasonCategory::Unplanned),
            loss: None,
            planned: false,
            at: t(9, 0),
        },
        MachineEvent::MachinePartsProduced {
            scrap_reason: None,
            machine_id: id("M1"),
            good: 10,
            scrap: 1,
            order_id: Some(id("PO-1")),
            ideal_cycle_time_s: CycleTime::new(2.5).unwrap(),
            at: t(9, 5),
        },
        MachineEvent::MachineIdealCycleTimeChanged {
            machine_id: id("M1"),
            ideal_cycle_time_s: CycleTime::new(2.0).unwrap(),
            previous_ideal_cycle_time_s: CycleTime::new(2.5).unwrap(),
            effective_from: t(12, 0),
            at: t(11, 0),
        },
        MachineEvent::MachineMaintenancePerformed {
            machine_id: id("M1"),
            task_id: id("T1"),
            notes: Some(text("bearings replaced")),
            at: t(14, 0),
        },
        MachineEvent::MachineStopClassified {
            machine_id: id("M1"),
            stop_at: t(9, 0),
            state: MachineStatus::Down,
            reason_code: id("breakdown.electrical"),
            category: ReasonCategory::Unplanned,
            loss: Some(Loss::Breakdown),
            planned: false,
            by: id("supervisor-sam"),
            at: t(15, 0),
        },
    ]
}

fn task_events() -> Vec<TaskEvent> {
    let mut details = BTreeMap::new();
    details.insert(String::from("model"), json!("ewma"));
    vec![
        TaskEvent::MaintenanceTaskScheduled {
            task_id: id("T1"),
            machine_id: id("M1"),
            kind: TaskKind::Predictive,
            scheduled_date: day(5),
            description: Some(text("check spindle")),
            evidence: Some(PredictiveEvidence {
                sensor: String::from("vibration_mm_s"),
                observed_value: 9.5,
                baseline_mean: 2.0,
                baseline_std_dev: 0.5,
                deviation_sigma: 15.0,
                samples: 600,
                window_start: t(8, 0),
                window_end: t(9, 0),
                details,
            }),
            policy_id: None,
            at: day(1),
        },
        TaskEvent::MaintenanceTaskStarted {
            task_id: id("T1"),
            machine_id: id("M1"),
            at: day(5),
        },
        TaskEvent::MaintenanceTaskCompleted {
            task_id: id("P1-1"),
            machine_id: id("M1"),
            kind: TaskKind::Preventive,
            policy_id: Some(id("P1")),
            notes: Some(text("greased")),
            parts_used: vec![PartUsed {
                item_id: id("grease"),
                qty: qty("0.25"),
            }],
            at: day(6),
        },
        TaskEvent::MaintenanceTaskCancelled {
            task_id: id("T2"),
            machine_id: id("M1"),
            kind: TaskKind::Corrective,
            policy_id: None,
            reason: text("duplicate"),
            previous_status: TaskStatus::Scheduled,
            at: day(2),
        },
    ]
}

fn inventory_events() -> Vec<InventoryEvent> {
    vec![
        InventoryEvent::InventoryReceived {
            item_id: id("steel"),
            item_type: ItemType::Raw,
            location: id("RAW-A"),
            qty: qty("100.5"),
            new_level: dec("120.5"),
            reason: Some(text("PO 4711")),
            at: t(7, 0),
        },
        InventoryEvent::InventoryAdjusted {
            item_id: id("steel"),
            item_type: ItemType::Raw,
            location: id("RAW-A"),
            delta: delta("-0.5"),
            new_level: dec("120"),
            reason: text("cycle count"),
            at: t(8, 0),
        },
        InventoryEvent::InventoryConsumed {
            item_id: id("steel"),
            item_type: ItemType::Raw,
            order_id: id("PO-1"),
            requested: qty("130"),
            location: None,
            allocations: vec![Allocation {
                location: id("RAW-A"),
                qty: dec("120"),
                new_level: dec("0"),
            }],
            shortage: dec("10"),
            at: t(9, 0),
        },
        InventoryEvent::InventoryProduced {
            item_id: id("widget"),
            item_type: ItemType::Finished,
            order_id: id("PO-1"),
            location: id("FG"),
            qty: qty("10"),
            new_level: dec("52"),
            at: t(9, 0),
        },
    ]
}

fn lot_events() -> Vec<InventoryEvent> {
    use shopfloor_domain::lot::{LotRef, LotRule, LotTake, OutputLots, PickOrder};
    let take = |lot: Option<&str>, q: &str, left: &str| LotTake {
        lot_id: lot.map(id),
        location: id("RAW-A"),
        qty: dec(q),
        new_qty: dec(left),
    };
    vec![
        InventoryEvent::InventoryLotReceived {
            item_id: id("steel"),
            item_type: ItemType::Raw,
            lot_id: id("L-1"),
            supplier_lot: Some(text("SUP-9")),
            location: id("RAW-A"),
            qty: qty("100.5"),
            expiry: Some(day(30)),
            at: t(7, 0),
        },
        InventoryEvent::InventoryLotProduced {
            item_id: id("widget"),
            item_type: ItemType::Finished,
            lot_id: id("PO-1"),
            order_id: id("PO-1"),
            machine_id: Some(id("M1")),
            location: id("FG"),
            qty: qty("10"),
            new_qty: dec("30"),
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
            takes: vec![take(Some("L-1"), "20", "80.5"), take(None, "5", "0")],
            at: t(9, 0),
        },
        InventoryEvent::InventoryLotSplit {
            item_id: id("steel"),
            item_type: ItemType::Raw,
            lot_id: id("L-1"),
            new_lot_id: id("L-1a"),
            location: id("RAW-A"),
            qty: qty("30"),
            from_new_qty: dec("50.5"),
            reason: Some(text("second press")),
            at: t(10, 0),
        },
        InventoryEvent::InventoryLotsMerged {
            item_id: id("steel"),
            item_type: ItemType::Raw,
            sources: vec![take(Some("L-1a"), "30", "0")],
            into: id("L-1"),
            location: id("RAW-A"),
            into_new_qty: dec("80.5"),
            expiry: Some(day(30)),
            supplier_lot: Some(text("SUP-9")),
            reason: None,
            at: t(11, 0),
        },
        InventoryEvent::InventoryLotMoved {
            item_id: id("steel"),
            item_type: ItemType::Raw,
            lot_id: id("L-1"),
            from: id("RAW-A"),
            to: id("QUARANTINE"),
            qty: dec("80.5"),
            from_new_qty: dec("0"),
            to_new_qty: dec("80.5"),
            from_new_level: dec("0"),
            to_new_level: dec("80.5"),
            reason: Some(text("hold area")),
            at: t(12, 0),
        },
        InventoryEvent::InventoryLotHeld {
            item_id: id("steel"),
            item_type: ItemType::Raw,
            lot_id: id("L-1"),
            hold_id: Some(text("HOLD-1")),
            reason: text("supplier recall"),
            at: t(12, 0),
        },
        InventoryEvent::InventoryLotReleased {
            item_id: id("steel"),
            item_type: ItemType::Raw,
            lot_id: id("L-1"),
            reason: text("retested ok"),
            at: t(13, 0),
        },
        InventoryEvent::InventoryLotScrapped {
            item_id: id("steel"),
            item_type: ItemType::Raw,
            lot_id: id("L-1"),
            allocations: vec![Allocation {
                location: id("QUARANTINE"),
                qty: dec("80.5"),
                new_level: dec("0"),
            }],
            reason: text("contaminated"),
            at: t(14, 0),
        },
        InventoryEvent::InventoryLotRuleSet {
            item_id: id("widget"),
            item_type: ItemType::Finished,
            rule: LotRule {
                output: OutputLots::PerShift {
                    hours: 8,
                    start_hour: 6,
                },
                pick: PickOrder::Fefo,
                ..LotRule::default()
            },
            at: t(6, 0),
        },
    ]
}

fn policy_events() -> Vec<PolicyEvent> {
    let trigger = PolicyTrigger::EveryCycles(NonZeroU64::new(1000).unwrap());
    vec![
        PolicyEvent::PolicyDefined {
            policy_id: id("P1"),
            machine_id: id("M1"),
            trigger: PolicyTrigger::EveryDays(NonZeroU32::new(7).unwrap()),
            description: text("lubricate"),
            run_seconds: 3600,
            cycles: 500,
            at: day(1),
        },
        PolicyEvent::PolicyDue {
            policy_id: id("P1"),
            machine_id: id("M1"),
            occurrence: 1,
            task_id: id("P1-1"),
            trigger,
            description: text("lubricate"),
            run_seconds: 7200,
            cycles: 1500,
            due_at: day(2),
        },
        PolicyEvent::PolicyTaskCompleted {
            policy_id: id("P1"),
            machine_id: id("M1"),
            occurrence: 1,
            task_id: id("P1-1"),
            run_seconds: 7300,
            cycles: 1600,
            at: day(3),
        },
        PolicyEvent::PolicyTaskCancelled {
            policy_id: id("P1"),
            machine_id: id("M1"),
            occurrence: 2,
            task_id: id("P1-2"),
            at: day(4),
        },
        PolicyEvent::PolicyDisabled {
            policy_id: id("P1"),
            machine_id: id("M1"),
            reason: Some(text("machine sold")),
            at: day(5),
        },
    ]
}

fn operator_events() -> Vec<OperatorEvent> {
    vec![
        OperatorEvent::OperatorRegistered {
            operator_id: id("OP-1"),
            name: text("Ada Moreau"),
            badge_id: Some(id("B-17")),
            skills: vec![id("press"), id("welding")],
            lines: vec![id("L1")],
            at: day(1),
        },
        OperatorEvent::OperatorUpdated {
            operator_id: id("OP-1"),
            name: text("Ada Moreau"),
            badge_id: None,
            skills: vec![id("press")],
            lines: vec![id("L1"), id("L2")],
            at: day(2),
        },
        OperatorEvent::OperatorDeactivated {
            operator_id: id("OP-1"),
            reason: Some(text("moved to another plant")),
            at: day(3),
        },
        OperatorEvent::OperatorReactivated {
            operator_id: id("OP-1"),
            at: day(4),
        },
        OperatorEvent::OperatorClockedOn {
            operator_id: id("OP-1"),
            order_id: id("PO-1"),
            machine_id: Some(id("M1")),
            at: day(5),
        },
        OperatorEvent::OperatorClockedOff {
            operator_id: id("OP-1"),
            order_id: id("PO-1"),
            machine_id: Some(id("M1")),
            clocked_on_at: day(5),
            at: day(6),
        },
    ]
}

/// The order event whose shape grew (operators named on assignment): pinned as a version of
/// its own, beside the form stored before (ADR 0036).
fn grown_order_events() -> Vec<OrderEvent> {
    vec![OrderEvent::OrderAssigned {
        order_id: id("PO-1"),
        machine_id: id("M1"),
        previous_machine_id: None,
        operator_ids: Some(vec![id("OP-1"), id("OP-2")]),
        at: day(1),
    }]
}

fn entries<A: Aggregate>(events: Vec<A::Event>) -> Vec<Value> {
    events
        .into_iter()
        .map(|event| {
            let payload = serde_json::to_value(&event).unwrap();
            // Stored payloads keep deserializing into the same event.
            let back: A::Event = serde_json::from_value(payload.clone()).unwrap();
            assert_eq!(back, event);
            json!({
                "stream_type": A::TYPE,
                "event_type": event.event_type(),
                "event_version": event.event_version(),
                "payload": payload,
            })
        })
        .collect()
}

fn all_entries() -> Vec<Value> {
    let mut all = Vec::new();
    all.extend(entries::<ProductionOrder>(order_events()));
    all.extend(entries::<Machine>(machine_events()));
    all.extend(entries::<MaintenanceTask>(task_events()));
    all.extend(entries::<InventoryItem>(inventory_events()));
    all.extend(entries::<MaintenancePolicy>(policy_events()));
    all.extend(entries::<Operator>(operator_events()));
    all.extend(entries::<ProductionOrder>(grown_order_events()));
    all.extend(entries::<InventoryItem>(lot_events()));
    all
}

#[test]
fn event_types_are_the_tags_unique_and_all_covered() {
    let entries = all_entries();
    let mut seen = BTreeSet::new();
    for entry in &entries {
        let event_type = entry["event_type"].as_str().unwrap();
        assert_eq!(entry["payload"]["event_type"], event_type);
        assert_eq!(entry["event_version"], "1");
        let grown = event_type == "OrderAssigned" && entry["payload"].get("operator_ids").is_some();
        assert!(
            grown || seen.insert(event_type.to_owned()),
            "{event_type} twice"
        );
        let prefix_ok = match entry["stream_type"].as_str().unwrap() {
            "production_order" => event_type.starts_with("Order"),
            "machine" => {
                event_type.starts_with("Machine") && !event_type.starts_with("Maintenance")
            }
            "maintenance_task" => event_type.starts_with("MaintenanceTask"),
            "inventory_item" => event_type.starts_with("Inventory"),
            "maintenance_policy" => event_type.starts_with("Policy"),
            "operator" => event_type.starts_with("Operator"),
            other => panic!("unknown stream type {other}"),
        };
        assert!(prefix_ok, "{event_type}");
    }
    let expected: BTreeSet<String> = ALL_EVENT_TYPES.iter().map(|s| (*s).to_owned()).collect();
    assert_eq!(seen, expected);
}

#[test]
fn serialized_events_match_the_pinned_snapshot() {
    let actual = Value::Array(all_entries());
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        let text = serde_json::to_string_pretty(&actual).unwrap() + "\n";
        std::fs::write(FIXTURE, text).unwrap();
    }
    let pinned: Value = serde_json::from_str(
        &std::fs::read_to_string(FIXTURE).expect("run with UPDATE_SNAPSHOTS=1 to create it"),
    )
    .unwrap();
    let (Value::Array(actual), Value::Array(pinned)) = (actual, pinned) else {
        panic!("the snapshot is a JSON array");
    };
    assert_eq!(actual.len(), pinned.len());
    for (actual, pinned) in actual.iter().zip(&pinned) {
        assert_eq!(actual, pinned, "{} changed shape", pinned["event_type"]);
    }
}

#[test]
fn pinned_payloads_still_deserialize() {
    let pinned: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(FIXTURE).unwrap()).unwrap();
    for entry in pinned {
        let payload = entry["payload"].clone();
        let event_type = match entry["stream_type"].as_str().unwrap() {
            "production_order" => serde_json::from_value::<OrderEvent>(payload)
                .unwrap()
                .event_type(),
            "machine" => serde_json::from_value::<MachineEvent>(payload)
                .unwrap()
                .event_type(),
            "maintenance_task" => serde_json::from_value::<TaskEvent>(payload)
                .unwrap()
                .event_type(),
            "inventory_item" => serde_json::from_value::<InventoryEvent>(payload)
                .unwrap()
                .event_type(),
            "maintenance_policy" => serde_json::from_value::<PolicyEvent>(payload)
                .unwrap()
                .event_type(),
            "operator" => serde_json::from_value::<OperatorEvent>(payload)
                .unwrap()
                .event_type(),
            other => panic!("unknown stream type {other}"),
        };
        assert_eq!(entry["event_type"], event_type);
    }
}

//! A read model has one implementation, which folds a chunk of events of any
//! size; the result must not depend on how the log is cut into chunks. A varied
//! generated history (the same keys many times per chunk, floor times out of
//! order and with sub-microsecond digits or before year 1, events before their
//! aggregate exists, poison events mid-chunk) is applied in batches of random
//! sizes from one event (a chunk of its own: what a projector fed one message at
//! a time does) up, in whole chunks, caught up from the store, replayed and
//! verified, and every table is compared both ways with `EXCEPT ALL`, the
//! parked events and live updates included. A short history is also applied one
//! event at a time and compared.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Duration, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rust_decimal::Decimal;
use serde_json::json;
use shopfloor_domain::inventory::{Allocation, InventoryEvent, ItemType, TakeCause};
use shopfloor_domain::lot::{LotRef, LotTake};
use shopfloor_domain::machine::MachineEvent;
use shopfloor_domain::maintenance::{PartUsed, PredictiveEvidence, TaskEvent, TaskKind};
use shopfloor_domain::operator::OperatorEvent;
use shopfloor_domain::order::{BomLine, OrderEvent, OrderStatus};
use shopfloor_domain::spc::{
    Band, ChartKind, ChartPart, ControlLimits, LimitsBasis, Rule, RuleSet, SampleSource, SpcEvent,
    SpecLimits, Subgroup,
};
use shopfloor_domain::values::*;
use shopfloor_eventstore::RecordedEvent;
use shopfloor_projections::projection;
use shopfloor_projections::{LiveUpdate, Projection};
use sqlx::PgPool;

use shopfloor_projections::query::{get_machine, parked_events, ParkedFilter};

use crate::floor::*;

const MACHINES: [&str; 5] = ["M0", "M1", "M2", "M3", "M4"]; // M4 is never registered
const ORDERS: [&str; 6] = ["O0", "O1", "O2", "O3", "O4", "O5"]; // O5 is never created
const TASKS: [&str; 4] = ["T0", "T1", "T2", "T3"];
const ITEMS: [&str; 3] = ["steel", "bolt", "widget"];
const LOCATIONS: [&str; 3] = ["A", "B", "FG"];
const REASONS: [Option<&str>; 5] = [
    None,
    Some("breakdown.mechanical"),
    Some("setup.changeover"),
    Some("planned.meeting"),
    Some("something unheard of"),
];

fn pick<'a, T>(rng: &mut StdRng, xs: &'a [T]) -> &'a T {
    &xs[rng.gen_range(0..xs.len())]
}

/// A floor time in a narrow window (ties and out-of-order arrival are common),
/// sometimes with sub-microsecond digits, sometimes just before 2000-01-01 (where
/// truncating to microseconds rounds up).
fn floor_time(rng: &mut StdRng) -> DateTime<Utc> {
    let base = if rng.gen_bool(0.1) {
        t("1999-12-31T23:40:00Z")
    } else {
        t("2024-01-01T06:00:00Z")
    };
    let mut when = base + Duration::seconds(rng.gen_range(0..40) * 30);
    if rng.gen_bool(0.2) {
        when += Duration::nanoseconds(rng.gen_range(1..2_000_000_000));
    }
    when
}

fn qty(rng: &mut StdRng) -> Decimal {
    Decimal::new(rng.gen_range(1..100_000), rng.gen_range(0..4))
}

/// Appends `n` events of every kind; with `poison`, also events that cannot be
/// applied (counts that do not fit, sums that overflow) and timestamps before
/// year 1.
/// The `k`th hierarchy event: a small tree first, then moves, renames and placements
/// (appended as they are, not decided: the read model must follow whatever the log holds).
fn hierarchy_event(rng: &mut StdRng, k: usize) -> shopfloor_domain::hierarchy::HierarchyEvent {
    use shopfloor_domain::hierarchy::{HierarchyEvent as H, Level};
    let node = |s: &str| NodeId::new(s).unwrap();
    let by = Actor::new("sup").unwrap();
    let at = floor_time(rng);
    let tree = [
        ("S1", Level::Site, None),
        ("A1", Level::Area, Some("S1")),
        ("A2", Level::Area, Some("S1")),
        ("L1", Level::Line, Some("A1")),
        ("C1", Level::WorkCell, Some("L1")),
    ];
    if let Some((id, level, parent)) = tree.get(k) {
        return H::HierarchyNodeCreated {
            node_id: node(id),
            level: *level,
            name: Text::new(format!("{id} name")).unwrap(),
            parent: parent.map(node),
            by,
            at,
        };
    }
    match rng.gen_range(0..3) {
        0 => H::HierarchyNodeMoved {
            node_id: node("L1"),
            level: Level::Line,
            from_parent: None,
            parent: Some(node(pick::<&str>(rng, &["A1", "A2"]))),
            effective_from: floor_time(rng),
            by,
            at,
        },
        1 => H::HierarchyNodeRenamed {
            node_id: node(pick::<&str>(rng, &["S1", "A1", "L1"])),
            name: Text::new(format!("name {k}")).unwrap(),
            by,
            at,
        },
        _ => H::HierarchyMachinePlaced {
            machine_id: MachineId::new(*pick(rng, &MACHINES)).unwrap(),
            line: LineId::new("L1").unwrap(),
            cell: pick(rng, &[None, Some("C1")]).map(node),
            effective_from: floor_time(rng),
            by,
            at,
        },
    }
}

async fn generate(f: &Floor, rng: &mut StdRng, n: usize, poison: bool) {
    let mut state_times: HashMap<&str, Vec<DateTime<Utc>>> = HashMap::new();
    for m in &MACHINES[..3] {
        f.register(m, "L1", 30.0).await;
    }
    let mut people = StdRng::seed_from_u64(n as u64);
    let mut charts = StdRng::seed_from_u64(n as u64 + 7);
    let mut tree = StdRng::seed_from_u64(n as u64 + 11);
    let mut clock_ons = Vec::new();
    for i in 0..n {
        // The equipment hierarchy (ADR 0062), from a generator of its own too.
        if i % 7 == 3 {
            let e = hierarchy_event(&mut tree, i / 7);
            f.append("equipment_hierarchy", "plant", e).await;
        }
        // SPC characteristics (ADR 0056), from a generator of their own too.
        if i % 5 == 2 {
            let (c, e) = spc_event(&mut charts);
            f.append("spc_characteristic", c, e).await;
        }
        // Operators (ADR 0036), from a generator of their own so the other events stay
        // those they were.
        if i % 4 == 0 {
            let (op, e) = operator_event(&mut people, &mut clock_ons);
            f.append("operator", op, e).await;
        }
        match rng.gen_range(0..100) {
            0..=29 => {
                let m = *pick(rng, &MACHINES);
                let when = floor_time(rng);
                let state = *pick(rng, &["running", "idle", "down"]);
                let reason = *pick(rng, &REASONS);
                let planned = *pick(rng, &[None, Some(true), Some(false)]);
                state_times.entry(m).or_default().push(when);
                f.state(m, state, reason, planned, when).await;
            }
            30..=49 => {
                let m = *pick(rng, &MACHINES);
                let order =
                    pick(rng, &[None, Some("O1"), Some("O2")]).map(|o| OrderId::new(o).unwrap());
                f.machine(MachineEvent::MachinePartsProduced {
                    scrap_reason: None,
                    machine_id: MachineId::new(m).unwrap(),
                    good: rng.gen_range(0..300),
                    scrap: rng.gen_range(0..10),
                    order_id: order,
                    ideal_cycle_time_s: CycleTime::new(rng.gen_range(1.0..60.0)).unwrap(),
                    at: floor_time(rng),
                })
                .await;
            }
            50..=52 => {
                let m = *pick(rng, &MACHINES);
                let stop_at = match state_times.get(m) {
                    Some(times) if rng.gen_bool(0.8) => *pick(rng, times),
                    _ => floor_time(rng),
                };
                let code = *pick(
                    rng,
                    &["breakdown.tooling", "small_stop.jam", "planned.no_demand"],
                );
                f.classify(m, stop_at, code).await;
            }
            53..=54 => {
                let m = *pick(rng, &MACHINES);
                f.machine(MachineEvent::MachineIdealCycleTimeChanged {
                    machine_id: MachineId::new(m).unwrap(),
                    ideal_cycle_time_s: CycleTime::new(rng.gen_range(1.0..60.0)).unwrap(),
                    previous_ideal_cycle_time_s: CycleTime::new(30.0).unwrap(),
                    effective_from: floor_time(rng),
                    at: floor_time(rng),
                })
                .await;
            }
            55..=56 => {
                let m = *pick(rng, &MACHINES);
                f.machine(MachineEvent::MachineMaintenancePerformed {
                    machine_id: MachineId::new(m).unwrap(),
                    task_id: TaskId::new(*pick(rng, &TASKS)).unwrap(),
                    notes: None,
                    at: floor_time(rng),
                })
                .await;
            }
            57 => {
                // A late registration (M3) or a second one (ignored).
                let m = *pick(rng, &MACHINES[..4]);
                f.register(m, "L2", 12.5).await;
            }
            58..=71 => {
                let o = *pick(rng, &ORDERS);
                let e = order_event(rng, o);
                f.append("production_order", o, e).await;
            }
            72..=79 => {
                let task = *pick(rng, &TASKS);
                let e = task_event(rng, task);
                f.append("maintenance_task", task, e).await;
            }
            80..=93 => {
                let item = *pick(rng, &ITEMS);
                let e = inventory_event(rng, item);
                f.append("inventory_item", item, e).await;
            }
            94..=95 => {
                // Poison: does not decode.
                let st = *pick(
                    rng,
                    &[
                        "machine",
                        "production_order",
                        "maintenance_task",
                        "inventory_item",
                    ],
                );
                f.raw(st, "X1", "SomethingExploded", 1, json!({"boom": i}))
                    .await;
            }
            96 => {
                // Not read by any read model.
                f.raw("telemetry", "X2", "Whatever", 1, json!({"i": i}))
                    .await;
            }
            _ if poison => match rng.gen_range(0..4) {
                0 => {
                    // Decodes; its count does not fit a bigint.
                    f.raw(
                        "machine",
                        "M0",
                        "MachinePartsProduced",
                        1,
                        json!({"machine_id": "M0", "good": u64::MAX, "scrap": 0, "order_id": null,
                               "ideal_cycle_time_s": 30.0, "at": "2024-01-01T08:00:00Z"}),
                    )
                    .await;
                }
                1 => {
                    // A floor time in year 0 (PostgreSQL takes it).
                    let mut e = state_event("M1", "down", None, None, at("08:00"));
                    if let MachineEvent::MachineStateChanged { at, .. } = &mut e {
                        *at = t("0000-06-01T00:00:00Z");
                    }
                    f.machine(e).await;
                }
                2 => {
                    // The order count overflows a bigint only after adding up.
                    f.raw(
                        "production_order",
                        "O1",
                        "OrderInspectionRecorded",
                        1,
                        json!({"order_id": "O1", "inspection_id": "I1", "sample_size": i64::MAX as u64,
                               "defects": 0, "passed": true, "inspector": "q", "notes": null,
                               "at": "2024-01-01T08:00:00Z"}),
                    )
                    .await;
                }
                _ => {
                    // A parts count that overflows the machine's running total.
                    f.machine(MachineEvent::MachinePartsProduced {
                        scrap_reason: None,
                        machine_id: MachineId::new("M2").unwrap(),
                        good: i64::MAX as u64,
                        scrap: 0,
                        order_id: None,
                        ideal_cycle_time_s: CycleTime::new(30.0).unwrap(),
                        at: floor_time(rng),
                    })
                    .await;
                }
            },
            _ => {
                f.parts("M1", 1, 0, 30.0, floor_time(rng)).await;
            }
        }
    }
}

fn order_event(rng: &mut StdRng, o: &str) -> OrderEvent {
    let order_id = OrderId::new(o).unwrap();
    let machine_id = MachineId::new(*pick(rng, &MACHINES)).unwrap();
    let at = floor_time(rng);
    match rng.gen_range(0..10) {
        0 | 1 => OrderEvent::OrderCreated {
            order_id,
            product_id: ProductId::new("widget").unwrap(),
            quantity: OrderQuantity::new(rng.gen_range(1..1000)).unwrap(),
            bom: (0..rng.gen_range(0..3))
                .map(|_| BomLine {
                    item_id: ItemId::new(*pick(rng, &ITEMS)).unwrap(),
                    qty_per_unit: Quantity::new(qty(rng)).unwrap(),
                    lots: Vec::new(),
                })
                .collect(),
            input_location: pick(rng, &[None, Some("A")]).map(|l| Location::new(l).unwrap()),
            output_location: Location::new("FG").unwrap(),
            at,
        },
        2 => OrderEvent::OrderAssigned {
            operator_ids: None,
            order_id,
            machine_id,
            previous_machine_id: None,
            at,
        },
        3 => OrderEvent::OrderStarted {
            order_id,
            machine_id,
            at,
        },
        4 => OrderEvent::OrderHeld {
            order_id,
            reason: Text::new("waiting for steel").unwrap(),
            at,
        },
        5 => OrderEvent::OrderResumed { order_id, at },
        6 => OrderEvent::OrderCompleted {
            order_id,
            good_count: rng.gen_range(0..1000),
            scrap_count: rng.gen_range(0..50),
            at,
        },
        7 => OrderEvent::OrderCancelled {
            order_id,
            reason: pick(rng, &[None, Some("customer")]).map(|r| Text::new(r).unwrap()),
            previous_status: OrderStatus::Created,
            at,
        },
        8 => OrderEvent::OrderPartsReported {
            order_id,
            product_id: ProductId::new("widget").unwrap(),
            machine_id,
            good: 5,
            scrap: 1,
            good_count: rng.gen_range(0..1000),
            scrap_count: rng.gen_range(0..50),
            at,
        },
        _ => OrderEvent::OrderInspectionRecorded {
            order_id,
            inspection_id: InspectionId::new("I1").unwrap(),
            sample_size: rng.gen_range(1..20),
            defects: rng.gen_range(0..3),
            passed: rng.gen_bool(0.7),
            inspector: Actor::new("qa").unwrap(),
            notes: None,
            measurements: Vec::new(),
            at,
        },
    }
}

fn task_event(rng: &mut StdRng, task: &str) -> TaskEvent {
    let task_id = TaskId::new(task).unwrap();
    let machine_id = MachineId::new(*pick(rng, &MACHINES)).unwrap();
    let at = floor_time(rng);
    match rng.gen_range(0..5) {
        0 | 1 => TaskEvent::MaintenanceTaskScheduled {
            task_id,
            machine_id,
            kind: TaskKind::Predictive,
            scheduled_date: floor_time(rng),
            description: pick(rng, &[None, Some("grease")]).map(|d| Text::new(d).unwrap()),
            evidence: rng.gen_bool(0.5).then(|| PredictiveEvidence {
                sensor: "vibration_mm_s".into(),
                observed_value: rng.gen_range(0.0..10.0),
                baseline_mean: 0.1,
                baseline_std_dev: 1e-300,
                deviation_sigma: 3.3,
                samples: u64::MAX,
                window_start: floor_time(rng),
                window_end: floor_time(rng),
                details: BTreeMap::from([
                    ("big".to_owned(), json!(12345678901234567890u64)),
                    ("huge".to_owned(), json!(1e300)),
                    ("nested".to_owned(), json!({"b": [1, 2.5, "x"], "a": null})),
                ]),
            }),
            policy_id: None,
            at,
        },
        2 => TaskEvent::MaintenanceTaskStarted {
            task_id,
            machine_id,
            at,
        },
        3 => TaskEvent::MaintenanceTaskCompleted {
            task_id,
            machine_id,
            kind: TaskKind::Predictive,
            policy_id: None,
            notes: pick(rng, &[None, Some("done")]).map(|n| Text::new(n).unwrap()),
            parts_used: (0..rng.gen_range(0..3))
                .map(|_| PartUsed {
                    item_id: ItemId::new(*pick(rng, &ITEMS)).unwrap(),
                    qty: Quantity::new(qty(rng)).unwrap(),
                })
                .collect(),
            at,
        },
        _ => TaskEvent::MaintenanceTaskCancelled {
            task_id,
            machine_id,
            kind: TaskKind::Predictive,
            policy_id: None,
            reason: Text::new("not needed").unwrap(),
            previous_status: shopfloor_domain::maintenance::TaskStatus::Scheduled,
            at,
        },
    }
}

fn inventory_event(rng: &mut StdRng, item: &str) -> InventoryEvent {
    let item_id = ItemId::new(item).unwrap();
    let item_type = *pick(rng, &[ItemType::Raw, ItemType::Finished]);
    let location = Location::new(*pick(rng, &LOCATIONS)).unwrap();
    let at = floor_time(rng);
    if rng.gen_range(0..9) >= 4 {
        return lot_event(rng, item_id, item_type, location, at);
    }
    match rng.gen_range(0..4) {
        0 => InventoryEvent::InventoryReceived {
            item_id,
            item_type,
            location,
            qty: Quantity::new(qty(rng)).unwrap(),
            new_level: qty(rng),
            reason: pick(rng, &[None, Some("delivery")]).map(|r| Text::new(r).unwrap()),
            at,
        },
        1 => InventoryEvent::InventoryAdjusted {
            item_id,
            item_type,
            location,
            delta: StockDelta::new(-qty(rng)).unwrap(),
            new_level: qty(rng),
            reason: Text::new("count").unwrap(),
            at,
        },
        2 => {
            let allocations: Vec<Allocation> = (0..rng.gen_range(0..4))
                .map(|_| Allocation {
                    location: Location::new(*pick(rng, &LOCATIONS)).unwrap(),
                    qty: qty(rng),
                    new_level: qty(rng),
                })
                .collect();
            InventoryEvent::InventoryConsumed {
                item_id,
                item_type,
                order_id: OrderId::new(*pick(rng, &ORDERS)).unwrap(),
                requested: Quantity::new(qty(rng)).unwrap(),
                location: pick(rng, &[None, Some("A")]).map(|l| Location::new(l).unwrap()),
                allocations,
                shortage: *pick(rng, &[Decimal::ZERO, Decimal::new(25, 1)]),
                at,
            }
        }
        _ => InventoryEvent::InventoryProduced {
            item_id,
            item_type,
            order_id: OrderId::new(*pick(rng, &ORDERS)).unwrap(),
            location,
            qty: Quantity::new(qty(rng)).unwrap(),
            new_level: qty(rng),
            at,
        },
    }
}

const CHARACTERISTICS: [&str; 3] = ["C0", "C1", "C2"]; // C2 is never defined

/// A random SPC event (samples with repeated numbers and signals before any definition
/// included: the read model must not depend on how the log is cut).
fn spc_event(rng: &mut StdRng) -> (&'static str, SpcEvent) {
    let c = *pick(rng, &CHARACTERISTICS);
    let characteristic_id = CharacteristicId::new(c).unwrap();
    let at = floor_time(rng);
    let e = match rng.gen_range(0..10) {
        0 => SpcEvent::SpcCharacteristicDefined {
            characteristic_id,
            name: Text::new(format!("Characteristic {c}")).unwrap(),
            chart: *pick(rng, &[ChartKind::Imr, ChartKind::P]),
            subgroup_size: 1,
            spec: SpecLimits {
                lsl: Some(1.0),
                usl: pick(rng, &[None, Some(9.0)]).to_owned(),
                target: None,
            },
            rules: RuleSet::Nelson.rules(),
            source: SampleSource::Manual,
            machine_id: pick(rng, &[None, Some("M0")]).map(|m| MachineId::new(m).unwrap()),
            by: Actor::new("qe").unwrap(),
            at,
        },
        1..=6 => SpcEvent::SpcSampleRecorded {
            characteristic_id,
            index: rng.gen_range(1..40),
            subgroup: Subgroup {
                value: rng.gen_range(0.0..10.0),
                spread: pick(rng, &[None, Some(1.5)]).to_owned(),
                size: 1,
                count: None,
            },
            values: vec![rng.gen_range(0.0..10.0)],
            order_id: pick(rng, &[None, Some("O1")]).map(|o| OrderId::new(o).unwrap()),
            inspection_id: None,
            limits_version: pick(rng, &[None, Some(1)]).to_owned(),
            z: pick(rng, &[None, Some(0.5)]).to_owned(),
            at,
        },
        7 => SpcEvent::SpcControlLimitsFrozen {
            characteristic_id,
            version: rng.gen_range(1..4),
            basis: LimitsBasis::Baseline {
                from_index: 1,
                to_index: 20,
            },
            limits: ControlLimits {
                chart: ChartKind::Imr,
                size: 1,
                primary: Band {
                    center: 5.0,
                    ucl: 8.0,
                    lcl: 2.0,
                    sigma: 1.0,
                },
                spread: None,
                process_sigma: Some(1.0),
            },
            from_sample: 21,
            baseline_flags: vec![],
            by: Actor::new("qe").unwrap(),
            at,
        },
        _ => SpcEvent::SpcSignalRaised {
            characteristic_id,
            rule: *pick(rng, &Rule::ALL),
            part: ChartPart::Primary,
            index: rng.gen_range(1..40),
            value: 9.5,
            z: 4.5,
            limits_version: 1,
            machine_id: None,
            at,
        },
    };
    (c, e)
}

const LOTS: [&str; 3] = ["L0", "L1", "L2"];

/// A random lot event (ADR 0057) of a few lots per item.
fn lot_event(
    rng: &mut StdRng,
    item_id: ItemId,
    item_type: ItemType,
    location: Location,
    at: DateTime<Utc>,
) -> InventoryEvent {
    let lot_id = LotId::new(*pick(rng, &LOTS)).unwrap();
    let other = LotId::new(*pick(rng, &LOTS)).unwrap();
    let take = |rng: &mut StdRng| LotTake {
        lot_id: Some(LotId::new(*pick(rng, &LOTS)).unwrap()),
        location: Location::new(*pick(rng, &LOCATIONS)).unwrap(),
        qty: qty(rng),
        new_qty: qty(rng),
    };
    match rng.gen_range(0..7) {
        0 => InventoryEvent::InventoryLotReceived {
            item_id,
            item_type,
            lot_id,
            supplier_lot: pick(rng, &[None, Some("SUP")]).map(|r| Text::new(r).unwrap()),
            location,
            qty: Quantity::new(qty(rng)).unwrap(),
            expiry: Some(at + Duration::days(30)),
            at,
        },
        1 => InventoryEvent::InventoryLotProduced {
            item_id,
            item_type,
            lot_id,
            order_id: OrderId::new(*pick(rng, &ORDERS)).unwrap(),
            machine_id: Some(MachineId::new("M0").unwrap()),
            location,
            qty: Quantity::new(qty(rng)).unwrap(),
            new_qty: qty(rng),
            at,
        },
        2 => InventoryEvent::InventoryLotsTaken {
            item_id,
            item_type,
            cause: TakeCause::Backflush,
            order_id: Some(OrderId::new(*pick(rng, &ORDERS)).unwrap()),
            into: Some(LotRef {
                item_id: ItemId::new("widget").unwrap(),
                lot_id: other,
            }),
            takes: (0..rng.gen_range(1..3)).map(|_| take(rng)).collect(),
            at,
        },
        3 => InventoryEvent::InventoryLotSplit {
            item_id,
            item_type,
            lot_id,
            new_lot_id: other,
            location,
            qty: Quantity::new(qty(rng)).unwrap(),
            from_new_qty: qty(rng),
            reason: None,
            at,
        },
        4 => InventoryEvent::InventoryLotHeld {
            item_id,
            item_type,
            lot_id,
            hold_id: Some(Text::new("H").unwrap()),
            reason: Text::new("recall").unwrap(),
            at,
        },
        5 => InventoryEvent::InventoryLotReleased {
            item_id,
            item_type,
            lot_id,
            reason: Text::new("ok").unwrap(),
            at,
        },
        _ => InventoryEvent::InventoryLotMoved {
            item_id,
            item_type,
            lot_id,
            from: location,
            to: Location::new("Q").unwrap(),
            qty: qty(rng),
            from_new_qty: qty(rng),
            to_new_qty: qty(rng),
            from_new_level: qty(rng),
            to_new_level: qty(rng),
            reason: None,
            at,
        },
    }
}

const OPERATORS: [&str; 3] = ["P0", "P1", "P2"];

/// A random operator event; clock-offs mostly close an earlier clock-on.
fn operator_event(
    rng: &mut StdRng,
    clock_ons: &mut Vec<(&'static str, &'static str, DateTime<Utc>)>,
) -> (&'static str, OperatorEvent) {
    let op = *pick(rng, &OPERATORS);
    let operator_id = OperatorId::new(op).unwrap();
    let at = floor_time(rng);
    let e = match rng.gen_range(0..10) {
        0..=2 => OperatorEvent::OperatorRegistered {
            operator_id,
            name: Text::new(format!("Name {op}")).unwrap(),
            badge_id: pick(rng, &[None, Some("B1")]).map(|b| BadgeId::new(b).unwrap()),
            skills: vec![Skill::new("press").unwrap()],
            lines: vec![LineId::new("L1").unwrap()],
            at,
        },
        3 => OperatorEvent::OperatorUpdated {
            operator_id,
            name: Text::new(format!("Renamed {op}")).unwrap(),
            badge_id: None,
            skills: vec![],
            lines: vec![LineId::new("L2").unwrap()],
            at,
        },
        4 => OperatorEvent::OperatorDeactivated {
            operator_id,
            reason: None,
            at,
        },
        5 => OperatorEvent::OperatorReactivated { operator_id, at },
        6..=7 => {
            let order = *pick(rng, &ORDERS);
            clock_ons.push((op, order, at));
            OperatorEvent::OperatorClockedOn {
                operator_id,
                order_id: OrderId::new(order).unwrap(),
                machine_id: pick(rng, &[None, Some("M0")]).map(|m| MachineId::new(m).unwrap()),
                at,
            }
        }
        _ => {
            let (op, order, on) = if clock_ons.is_empty() || rng.gen_bool(0.1) {
                (op, *pick(rng, &ORDERS), floor_time(rng))
            } else {
                let k = rng.gen_range(0..clock_ons.len());
                clock_ons.swap_remove(k)
            };
            return (
                op,
                OperatorEvent::OperatorClockedOff {
                    operator_id: OperatorId::new(op).unwrap(),
                    order_id: OrderId::new(order).unwrap(),
                    machine_id: None,
                    clocked_on_at: on,
                    at: on + Duration::minutes(rng.gen_range(0..240)),
                },
            );
        }
    };
    (op, e)
}

/// Every table of the read models, and the framework's.
fn tables() -> Vec<&'static str> {
    let mut tables = vec!["projection_checkpoints", "projection_parked"];
    for p in Projection::ALL {
        tables.extend_from_slice(p.tables());
    }
    tables
}

/// A schema with empty copies of every table.
async fn schema(pool: &PgPool, name: &str) {
    sqlx::query(&format!("CREATE SCHEMA {name}"))
        .execute(pool)
        .await
        .unwrap();
    for t in tables() {
        sqlx::query(&format!(
            "CREATE TABLE {name}.{t} (LIKE public.{t} INCLUDING ALL)"
        ))
        .execute(pool)
        .await
        .unwrap();
    }
}

fn coalesce(updates: Vec<LiveUpdate>) -> Vec<LiveUpdate> {
    let mut last = HashMap::new();
    for (i, u) in updates.iter().enumerate() {
        last.insert(u.topic.clone(), i);
    }
    updates
        .into_iter()
        .enumerate()
        .filter(|(i, u)| last[&u.topic] == *i)
        .map(|(_, u)| u)
        .collect()
}

/// The rows of `table` in schema `a` and not in `b` (`EXCEPT ALL`), as JSON.
async fn only_in(pool: &PgPool, a: &str, b: &str, table: &str) -> Vec<serde_json::Value> {
    let columns = if table == "projection_parked" {
        // When it was parked is the clock's.
        "projection, position, event_id, stream_type, stream_id, event_type, error, recorded_at"
    } else if table == "projection_checkpoints" {
        "projection, position"
    } else {
        "*"
    };
    sqlx::query_scalar(&format!(
        "SELECT to_jsonb(x) FROM (SELECT {columns} FROM {a}.{table} \
         EXCEPT ALL SELECT {columns} FROM {b}.{table}) x"
    ))
    .fetch_all(pool)
    .await
    .unwrap()
}

async fn assert_same(pool: &PgPool, reference: &str, other: &str) {
    for t in tables() {
        let missing = only_in(pool, reference, other, t).await;
        let extra = only_in(pool, other, reference, t).await;
        assert!(
            missing.is_empty() && extra.is_empty(),
            "{other}.{t} differs from {reference}:\n\
             missing {missing:#?}\nextra {extra:#?}"
        );
    }
}

async fn count(pool: &PgPool, schema: &str, table: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT count(*) FROM {schema}.{table}"))
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Applies the whole log with `process` (what projectors do), in batches of
/// the sizes `sizes` gives, into `name`; the coalesced live updates of each
/// projection over all batches.
async fn in_batches(
    pool: &PgPool,
    f: &Floor,
    name: &str,
    events: &[RecordedEvent],
    mut sizes: impl FnMut() -> usize,
) -> HashMap<Projection, Vec<LiveUpdate>> {
    schema(pool, name).await;
    let mut updates: HashMap<Projection, Vec<LiveUpdate>> = HashMap::new();
    let mut rest = events;
    while !rest.is_empty() {
        let n = sizes().clamp(1, rest.len());
        let (batch, tail) = rest.split_at(n);
        for p in Projection::ALL {
            let done = projection::process(pool, &f.store, p, batch.to_vec(), Some(name))
                .await
                .unwrap();
            assert_eq!(done.position, batch.last().unwrap().position);
            updates.entry(p).or_default().extend(done.updates);
        }
        rest = tail;
    }
    updates.into_iter().map(|(p, u)| (p, coalesce(u))).collect()
}

async fn run(pool: PgPool, seed: u64, n: usize, poison: bool) {
    let f = Floor::new(&pool);
    let mut rng = StdRng::seed_from_u64(seed);
    generate(&f, &mut rng, n, poison).await;
    let events = f.store.read_all(0, 100_000).await.unwrap();
    // Projectors: batches of every size from one event (a chunk of its own) to
    // a few dozen.
    let mut sizes = StdRng::seed_from_u64(seed + 1);
    let small = in_batches(&pool, &f, "small", &events, || sizes.gen_range(1..40)).await;
    // The history is varied enough to mean something.
    for t in tables() {
        assert!(count(&pool, "small", t).await > 0, "no rows in {t}");
    }
    // One batch of everything (several chunks): the same rows, parked events
    // and live updates.
    let whole = in_batches(&pool, &f, "whole", &events, || usize::MAX).await;
    assert_same(&pool, "small", "whole").await;
    for p in Projection::ALL {
        assert_eq!(whole[&p], small[&p], "live updates of {p}");
    }

    // Catch-up from the store (one chunk), into the live schema.
    for p in Projection::ALL {
        projection::apply_from_store(&pool, p).await.unwrap();
    }
    assert_same(&pool, "small", "public").await;

    // Replay (scratch schema, swap) and verify.
    shopfloor_projections::replay(&pool, None, |_, _| {})
        .await
        .unwrap();
    assert_same(&pool, "small", "public").await;
    let differences = shopfloor_projections::verify(&pool).await.unwrap();
    assert!(differences.is_empty(), "{differences:#?}");
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn chunks_of_any_size_give_the_same_read_models(pool: PgPool) {
    run(pool, 7, 1200, false).await;
}

#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn poison_mid_chunk_is_parked_whatever_the_chunks(pool: PgPool) {
    run(pool, 11, 900, true).await;
}

/// A poison event in the middle of a chunk is parked on its own: the events
/// before and after it in the chunk apply, each to the state the ones before it
/// left, exactly as when every event is a chunk of its own.
#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn a_poison_event_mid_chunk_is_parked_and_the_rest_applied(pool: PgPool) {
    let f = Floor::new(&pool);
    f.register("M1", "L1", 30.0).await;
    f.parts("M1", 3, 0, 30.0, at("08:00")).await;
    // Fits a bigint, but the machine's running total overflows.
    let overflow = f
        .machine(MachineEvent::MachinePartsProduced {
            scrap_reason: None,
            machine_id: MachineId::new("M1").unwrap(),
            good: i64::MAX as u64,
            scrap: 0,
            order_id: None,
            ideal_cycle_time_s: CycleTime::new(30.0).unwrap(),
            at: at("08:01"),
        })
        .await;
    f.parts("M1", 4, 1, 30.0, at("08:02")).await;
    let undecodable = f
        .raw("machine", "M1", "MachineExploded", 1, json!({"boom": true}))
        .await;
    // Year 0: PostgreSQL takes it, and so does the board (it is not the latest).
    f.state("M1", "down", None, None, t("0000-06-01T00:00:00Z"))
        .await;
    f.state("M1", "running", None, None, at("08:03")).await;
    let events = f.store.read_all(0, 100).await.unwrap();

    let mut done = HashMap::new();
    for p in Projection::ALL {
        let applied = projection::process(&pool, &f.store, p, events.clone(), None)
            .await
            .unwrap();
        done.insert(p, applied);
    }
    let whole = &done[&Projection::Machines];
    assert_eq!((whole.applied, whole.parked), (events.len() - 2, 2));
    let m = get_machine(&pool, "M1").await.unwrap().unwrap();
    assert_eq!((m.good_count, m.scrap_count), (7, 1));
    assert_eq!(m.current_status, "running");
    let history = &done[&Projection::MachineHistory];
    // The facts do not add up: only the undecodable event is poison to them.
    assert_eq!(history.parked, 1);
    let facts: i64 = sqlx::query_scalar("SELECT count(*) FROM rm_state_facts")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(facts, 2);
    let parked = parked_events(&pool, &ParkedFilter::default())
        .await
        .unwrap();
    let mut parked: Vec<(String, i64)> = parked
        .into_iter()
        .map(|p| (p.projection, p.position))
        .collect();
    parked.sort();
    assert_eq!(
        parked,
        vec![
            ("machine_history".to_owned(), undecodable),
            ("machines".to_owned(), overflow),
            ("machines".to_owned(), undecodable),
        ]
    );
    let error: String =
        sqlx::query_scalar("SELECT error FROM projection_parked WHERE position = $1")
            .bind(overflow)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(error.contains("out of range"), "{error}");

    // Event by event, into another schema: the same rows and parked events.
    let one = in_batches(&pool, &f, "one", &events, || 1).await;
    assert_same(&pool, "one", "public").await;
    assert_eq!(one[&Projection::Machines].len(), 1);
}

/// A fact that is already there (its checkpoint lost) makes the COPY of its
/// chunk fail: the event that carries it is parked, the others apply, and the
/// fact stays as it was.
#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn a_fact_already_there_parks_its_event(pool: PgPool) {
    let f = Floor::new(&pool);
    f.register("M1", "L1", 30.0).await;
    let first = f.state("M1", "running", None, None, at("08:00")).await;
    f.parts("M1", 3, 0, 30.0, at("08:05")).await;
    f.state("M1", "down", None, None, at("09:00")).await;
    // As if the checkpoint had been lost after the first state fact was written.
    sqlx::query(
        "INSERT INTO rm_state_facts (machine_id, at, position, state, planned, recorded_at) \
         VALUES ('M1', $1, $2, 'idle', true, $1)",
    )
    .bind(at("08:00"))
    .bind(first)
    .execute(&pool)
    .await
    .unwrap();
    let done = projection::apply_from_store(&pool, Projection::MachineHistory)
        .await
        .unwrap();
    assert_eq!((done.applied, done.parked), (3, 1));
    let parked = parked_events(&pool, &ParkedFilter::default())
        .await
        .unwrap();
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].position, first);
    assert!(
        parked[0].error.contains("duplicate key"),
        "{}",
        parked[0].error
    );
    let state: String = sqlx::query_scalar("SELECT state FROM rm_state_facts WHERE position = $1")
        .bind(first)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(state, "idle");
    assert_eq!(count(&pool, "public", "rm_state_facts").await, 2);
    assert_eq!(count(&pool, "public", "rm_parts_facts").await, 1);
}

/// Appends `events` to one stream in one go (fast enough for long histories).
async fn bulk<E: cqrs_es::DomainEvent>(f: &Floor, stream_type: &str, id: &str, events: &[E]) {
    let new = events
        .iter()
        .map(|e| {
            let (event_type, schema_version, payload) =
                shopfloor_eventstore::repository::encode_event(e).unwrap();
            shopfloor_eventstore::NewEvent {
                event_id: uuid::Uuid::new_v4(),
                event_type,
                schema_version,
                payload,
                metadata: Default::default(),
            }
        })
        .collect();
    f.store
        .append(
            &shopfloor_eventstore::StreamRef::new(stream_type, id),
            shopfloor_eventstore::ExpectedVersion::Any,
            new,
        )
        .await
        .unwrap();
}

/// Catch-up, verify and replay read the log in pages shared by every projection,
/// each projection up to its own position: a history of several pages, with
/// projections standing at different checkpoints.
#[sqlx::test(migrator = "shopfloor_eventstore::MIGRATOR")]
async fn pages_shared_by_projections_at_different_checkpoints(pool: PgPool) {
    let f = Floor::new(&pool);
    let mut rng = StdRng::seed_from_u64(3);
    for m in &MACHINES[..4] {
        f.register(m, "L1", 30.0).await;
    }
    let pages = 2 * projection::CATCH_UP_CHUNK + 1_000;
    while (f.store.head_position().await.unwrap() as usize) < pages {
        for m in MACHINES {
            let events: Vec<MachineEvent> = (0..400)
                .map(|_| {
                    if rng.gen_bool(0.3) {
                        let state = *pick(&mut rng, &["running", "idle", "down"]);
                        let reason = *pick(&mut rng, &REASONS);
                        state_event(m, state, reason, None, floor_time(&mut rng))
                    } else {
                        MachineEvent::MachinePartsProduced {
                            scrap_reason: None,
                            machine_id: MachineId::new(m).unwrap(),
                            good: rng.gen_range(0..300),
                            scrap: rng.gen_range(0..10),
                            order_id: None,
                            ideal_cycle_time_s: CycleTime::new(30.0).unwrap(),
                            at: floor_time(&mut rng),
                        }
                    }
                })
                .collect();
            bulk(&f, "machine", m, &events).await;
        }
        let orders: Vec<OrderEvent> = (0..50).map(|_| order_event(&mut rng, "O1")).collect();
        bulk(&f, "production_order", "O1", &orders).await;
        let stock: Vec<InventoryEvent> = (0..50)
            .map(|_| inventory_event(&mut rng, "steel"))
            .collect();
        bulk(&f, "inventory_item", "steel", &stock).await;
        f.raw("machine", "M1", "SomethingExploded", 1, json!({}))
            .await;
    }
    let events = f.store.read_all(0, 1_000_000).await.unwrap();
    assert!(events.len() > pages);

    // The live read models at different positions: machines part of the way
    // (as a projector would have it), the others nowhere yet.
    let part = &events[..projection::CATCH_UP_CHUNK + 123];
    projection::process(&pool, &f.store, Projection::Machines, part.to_vec(), None)
        .await
        .unwrap();
    let differences = shopfloor_projections::verify(&pool).await.unwrap();
    assert!(differences.is_empty(), "{differences:#?}");

    // Batches of many sizes, for reference.
    let mut sizes = StdRng::seed_from_u64(4);
    in_batches(&pool, &f, "ref", &events, || sizes.gen_range(1..3_000)).await;
    // Each projection catching up on its own, then replay of them all.
    for p in Projection::ALL {
        let done = projection::apply_from_store(&pool, p).await.unwrap();
        assert_eq!(done.position, events.last().unwrap().position);
    }
    assert_same(&pool, "ref", "public").await;
    shopfloor_projections::replay(&pool, None, |_, _| {})
        .await
        .unwrap();
    assert_same(&pool, "ref", "public").await;
    assert!(shopfloor_projections::verify(&pool)
        .await
        .unwrap()
        .is_empty());
}

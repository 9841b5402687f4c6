//! Process managers: commands that follow from events, with deterministic ids, and the whole
//! chain run through the aggregates.

use shopfloor_domain::inventory::*;
use shopfloor_domain::machine::*;
use shopfloor_domain::maintenance::*;
use shopfloor_domain::order::*;
use shopfloor_domain::policy::*;
use shopfloor_domain::process::*;
use shopfloor_domain::values::{CycleTime, OrderQuantity};
use shopfloor_domain::Decide;

use crate::support::{day, dec, id, qty, t, text};

fn order_facts(input_location: Option<&str>) -> OrderFacts {
    OrderFacts {
        order_id: id("PO-1"),
        product_id: id("widget"),
        bom: vec![
            BomLine {
                item_id: id("steel"),
                qty_per_unit: qty("2.5"),
                lots: Vec::new(),
            },
            BomLine {
                item_id: id("bolt"),
                qty_per_unit: qty("4"),
                lots: Vec::new(),
            },
        ],
        input_location: input_location.map(id),
        output_location: id("FG"),
    }
}

fn parts(good: u64, scrap: u64, order: Option<&str>) -> MachineEvent {
    MachineEvent::MachinePartsProduced {
        scrap_reason: None,
        machine_id: id("M1"),
        good,
        scrap,
        order_id: order.map(id),
        ideal_cycle_time_s: CycleTime::new(2.0).unwrap(),
        at: t(9, 0),
    }
}

#[test]
fn parts_for_an_order_report_production_and_backflush() {
    let event = parts(10, 2, Some("PO-1"));
    assert_eq!(order_of_parts(&event), Some(&id("PO-1")));
    let commands = on_parts_produced("ev-1", &event, &order_facts(Some("RAW-A")));
    assert_eq!(
        commands,
        vec![
            IssuedCommand {
                command_id: String::from("ev-1/order"),
                target: Target::ProductionOrder {
                    order_id: id("PO-1"),
                    command: OrderCommand::ReportProduction(ReportProduction {
                        machine_id: id("M1"),
                        good: 10,
                        scrap: 2,
                        at: t(9, 0),
                    }),
                },
            },
            IssuedCommand {
                command_id: String::from("ev-1/produce/widget"),
                target: Target::InventoryItem {
                    item_id: id("widget"),
                    command: InventoryCommand::ProduceStock(ProduceStock {
                        item_id: id("widget"),
                        order_id: id("PO-1"),
                        location: id("FG"),
                        qty: qty("10"),
                        at: t(9, 0),
                    }),
                },
            },
            IssuedCommand {
                command_id: String::from("ev-1/consume/steel"),
                target: Target::InventoryItem {
                    item_id: id("steel"),
                    command: InventoryCommand::ConsumeStock(ConsumeStock {
                        item_id: id("steel"),
                        order_id: id("PO-1"),
                        qty: qty("30"),
                        location: Some(id("RAW-A")),
                        at: t(9, 0),
                    }),
                },
            },
            IssuedCommand {
                command_id: String::from("ev-1/consume/bolt"),
                target: Target::InventoryItem {
                    item_id: id("bolt"),
                    command: InventoryCommand::ConsumeStock(ConsumeStock {
                        item_id: id("bolt"),
                        order_id: id("PO-1"),
                        qty: qty("48"),
                        location: Some(id("RAW-A")),
                        at: t(9, 0),
                    }),
                },
            },
        ]
    );
    assert_eq!(
        commands[0].target.stream_type(),
        shopfloor_domain::StreamType::ProductionOrder
    );
    assert_eq!(commands[0].target.stream_id(), "PO-1");
    assert_eq!(
        commands[1].target.stream_type(),
        shopfloor_domain::StreamType::InventoryItem
    );
    // Deterministic: the same event gives the same commands.
    assert_eq!(
        commands,
        on_parts_produced("ev-1", &event, &order_facts(Some("RAW-A")))
    );
}

#[test]
fn scrap_only_consumes_material_and_produces_nothing() {
    let commands = on_parts_produced("ev-2", &parts(0, 3, Some("PO-1")), &order_facts(None));
    let ids: Vec<&str> = commands.iter().map(|c| c.command_id.as_str()).collect();
    assert_eq!(
        ids,
        ["ev-2/order", "ev-2/consume/steel", "ev-2/consume/bolt"]
    );
}

#[test]
fn parts_without_or_for_another_order_issue_nothing() {
    let no_order = parts(5, 0, None);
    assert_eq!(order_of_parts(&no_order), None);
    assert!(on_parts_produced("ev", &no_order, &order_facts(None)).is_empty());
    assert!(on_parts_produced("ev", &parts(5, 0, Some("PO-2")), &order_facts(None)).is_empty());
}

fn task_completed(policy: Option<&str>) -> TaskEvent {
    TaskEvent::MaintenanceTaskCompleted {
        task_id: id("P1-1"),
        machine_id: id("M1"),
        kind: TaskKind::Preventive,
        policy_id: policy.map(id),
        notes: Some(text("greased")),
        parts_used: vec![],
        at: day(3),
    }
}

#[test]
fn a_completed_task_records_maintenance_and_resets_its_policy() {
    let usage = MachineUsage {
        run_seconds: 7200,
        cycles: 1600,
    };
    let commands = on_task_finished("ev-3", &task_completed(Some("P1")), usage);
    assert_eq!(
        commands,
        vec![
            IssuedCommand {
                command_id: String::from("ev-3/machine"),
                target: Target::Machine {
                    machine_id: id("M1"),
                    command: MachineCommand::RecordMaintenancePerformed(
                        RecordMaintenancePerformed {
                            task_id: id("P1-1"),
                            notes: Some(text("greased")),
                            at: day(3),
                        }
                    ),
                },
            },
            IssuedCommand {
                command_id: String::from("ev-3/policy"),
                target: Target::MaintenancePolicy {
                    policy_id: id("P1"),
                    command: PolicyCommand::RecordPolicyTaskCompleted(RecordPolicyTaskCompleted {
                        task_id: id("P1-1"),
                        usage,
                        at: day(3),
                    }),
                },
            },
        ]
    );
    assert_eq!(
        on_task_finished("ev-4", &task_completed(None), usage).len(),
        1
    );
}

#[test]
fn a_cancelled_policy_task_is_reported_to_its_policy() {
    let cancelled = |policy: Option<&str>| TaskEvent::MaintenanceTaskCancelled {
        task_id: id("P1-1"),
        machine_id: id("M1"),
        kind: TaskKind::Preventive,
        policy_id: policy.map(id),
        reason: text("duplicate"),
        previous_status: TaskStatus::Scheduled,
        at: day(3),
    };
    assert_eq!(
        on_task_finished("ev-5", &cancelled(Some("P1")), MachineUsage::default()),
        vec![IssuedCommand {
            command_id: String::from("ev-5/policy"),
            target: Target::MaintenancePolicy {
                policy_id: id("P1"),
                command: PolicyCommand::RecordPolicyTaskCancelled(RecordPolicyTaskCancelled {
                    task_id: id("P1-1"),
                    at: day(3),
                }),
            },
        }]
    );
    assert!(on_task_finished("ev-6", &cancelled(None), MachineUsage::default()).is_empty());
    let started = TaskEvent::MaintenanceTaskStarted {
        task_id: id("T1"),
        machine_id: id("M1"),
        at: day(3),
    };
    assert!(on_task_finished("ev-7", &started, MachineUsage::default()).is_empty());
}

#[test]
fn machine_usage_checks_each_policy() {
    let usage = MachineUsage {
        run_seconds: 10,
        cycles: 12,
    };
    let commands = on_machine_usage(
        "ev-8",
        &parts(10, 2, None),
        &[id("P1"), id("P2")],
        usage,
        t(9, 1),
    );
    assert_eq!(
        commands,
        vec![
            IssuedCommand {
                command_id: String::from("ev-8/check/P1"),
                target: Target::MaintenancePolicy {
                    policy_id: id("P1"),
                    command: PolicyCommand::CheckDue(CheckDue {
                        now: t(9, 1),
                        usage,
                    }),
                },
            },
            IssuedCommand {
                command_id: String::from("ev-8/check/P2"),
                target: Target::MaintenancePolicy {
                    policy_id: id("P2"),
                    command: PolicyCommand::CheckDue(CheckDue {
                        now: t(9, 1),
                        usage,
                    }),
                },
            },
        ]
    );
    let maintenance = MachineEvent::MachineMaintenancePerformed {
        machine_id: id("M1"),
        task_id: id("T1"),
        notes: None,
        at: t(9, 0),
    };
    assert!(on_machine_usage("ev-9", &maintenance, &[id("P1")], usage, t(9, 1)).is_empty());
}

#[test]
fn a_due_policy_schedules_its_preventive_task() {
    let event = PolicyEvent::PolicyDue {
        policy_id: id("P1"),
        machine_id: id("M1"),
        occurrence: 1,
        task_id: id("P1-1"),
        trigger: PolicyTrigger::EveryCycles(std::num::NonZeroU64::new(1000).unwrap()),
        description: text("lubricate"),
        run_seconds: 0,
        cycles: 1500,
        due_at: day(2),
    };
    assert_eq!(
        on_policy_due("ev-10", &event),
        vec![IssuedCommand {
            command_id: String::from("ev-10/schedule"),
            target: Target::MaintenanceTask {
                task_id: id("P1-1"),
                command: TaskCommand::ScheduleTask(ScheduleTask {
                    task_id: id("P1-1"),
                    machine_id: id("M1"),
                    kind: TaskKind::Preventive,
                    scheduled_date: day(2),
                    description: Some(text("lubricate")),
                    evidence: None,
                    policy_id: Some(id("P1")),
                    at: day(2),
                }),
            },
        }]
    );
}

/// The whole production chain: machine parts → order report, finished goods, raw consumption
/// with a shortage.
#[test]
fn production_chain_through_the_aggregates() {
    let mut machine = Machine::default();
    machine
        .execute(MachineCommand::RegisterMachine(RegisterMachine {
            machine_id: id("M1"),
            machine_type: id("press"),
            line: id("L1"),
            ideal_cycle_time_s: CycleTime::new(2.0).unwrap(),
            at: t(6, 0),
        }))
        .unwrap();
    let mut order = ProductionOrder::default();
    order
        .execute(OrderCommand::CreateOrder(CreateOrder {
            order_id: id("PO-1"),
            product_id: id("widget"),
            quantity: OrderQuantity::new(100).unwrap(),
            bom: order_facts(None).bom,
            input_location: None,
            output_location: None,
            at: t(7, 0),
        }))
        .unwrap();
    for command in [
        OrderCommand::AssignOrder(AssignOrder {
            operator_ids: None,
            machine_id: id("M1"),
            at: t(7, 1),
        }),
        OrderCommand::StartOrder(StartOrder { at: t(7, 2) }),
    ] {
        order.execute(command).unwrap();
    }
    let mut steel = InventoryItem::default();
    steel
        .execute(InventoryCommand::ReceiveStock(ReceiveStock {
            item_id: id("steel"),
            item_type: ItemType::Raw,
            location: id("RAW-A"),
            qty: qty("20"),
            reason: None,
            at: t(6, 0),
        }))
        .unwrap();
    let mut bolt = InventoryItem::default();
    let mut widget = InventoryItem::default();

    let events = machine
        .execute(MachineCommand::RecordParts(RecordParts {
            good: 8,
            scrap: 2,
            order_id: Some(id("PO-1")),
            at: t(9, 0),
        }))
        .unwrap();
    let facts = OrderFacts::from(order.order().unwrap());
    for issued in on_parts_produced("ev-1", &events[0], &facts) {
        match issued.target {
            Target::ProductionOrder { command, .. } => {
                order.execute(command).unwrap();
            }
            Target::InventoryItem { item_id, command } => {
                let item = match item_id.as_str() {
                    "steel" => &mut steel,
                    "bolt" => &mut bolt,
                    _ => &mut widget,
                };
                item.execute(command).unwrap();
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let record = order.order().unwrap();
    assert_eq!((record.good_count, record.scrap_count), (8, 2));
    assert_eq!(widget.item().unwrap().level("FG"), dec("8"));
    assert_eq!(widget.item().unwrap().item_type, ItemType::Finished);
    assert_eq!(steel.item().unwrap().level("RAW-A"), dec("0"));
    assert_eq!(steel.item().unwrap().shortage_total, dec("5"));
    assert_eq!(bolt.item().unwrap().shortage_total, dec("40"));
}

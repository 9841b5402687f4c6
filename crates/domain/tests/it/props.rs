//! Property tests: any sequence of valid or invalid commands, applied to each aggregate through
//! its real `handle`, never panics; a refusal leaves the state exactly as it was; every emitted
//! event round-trips through JSON with its `event_type` tag; replaying the history rebuilds the
//! state; and the state survives a snapshot round trip.

use std::fmt::Debug;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use chrono::{DateTime, Duration, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::select;
use shopfloor_domain::inventory::*;
use shopfloor_domain::machine::*;
use shopfloor_domain::maintenance::*;
use shopfloor_domain::order::*;
use shopfloor_domain::policy::*;
use shopfloor_domain::values::{CycleTime, OrderQuantity};
use shopfloor_domain::{Decide, MAX_PARTS_PER_REPORT};

use crate::support::{delta, id, qty, t, text};

/// Runs a future that never waits (our `handle`s only lock an uncontended mutex).
fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
    }
}

fn check_event<E: DomainEvent>(event: &E) {
    let json = serde_json::to_value(event).unwrap();
    assert_eq!(json["event_type"], event.event_type());
    assert_eq!(event.event_version(), "1");
    let back: E = serde_json::from_value(json).unwrap();
    assert_eq!(&back, event);
}

/// Applies `commands` through `handle`, checking the properties; returns the history.
fn run<A>(commands: Vec<A::Command>, invariant: impl Fn(&A)) -> Vec<A::Event>
where
    A: Decide<Services = ()> + Clone + PartialEq + Debug,
    A::Command: Clone,
    A::Error: PartialEq + Debug,
{
    let mut aggregate = A::default();
    let mut history = Vec::new();
    for command in commands {
        let before = aggregate.clone();
        let decided = aggregate.decide(command.clone());
        let sink = EventSink::default();
        let handled = block_on(aggregate.handle(command, &(), &sink));
        let written = block_on(sink.collect());
        match (decided, handled) {
            (Ok(events), Ok(())) => {
                assert_eq!(events, written);
                events.iter().for_each(check_event);
                history.extend(events);
            }
            (Err(decided), Err(handled)) => {
                assert_eq!(decided, handled);
                assert!(!handled.to_string().is_empty());
                assert!(written.is_empty());
                assert_eq!(aggregate, before, "a refusal changed the state");
            }
            other => panic!("decide and handle disagree: {other:?}"),
        }
        invariant(&aggregate);
    }
    assert_eq!(A::replay(history.clone()), aggregate);
    let snapshot = serde_json::to_string(&aggregate).unwrap();
    assert_eq!(serde_json::from_str::<A>(&snapshot).unwrap(), aggregate);
    history
}

/// Times within one hour, so that commands often name the same instant.
fn at() -> impl Strategy<Value = DateTime<Utc>> {
    (0i64..60).prop_map(|m| t(6, 0) + Duration::minutes(m))
}

fn count() -> impl Strategy<Value = u64> {
    prop_oneof![4 => 0u64..5, 1 => Just(MAX_PARTS_PER_REPORT)]
}

fn quantity() -> impl Strategy<Value = shopfloor_domain::values::Quantity> {
    select(vec!["0.5", "1", "2.25", "7", "1000000000000"]).prop_map(qty)
}

fn note() -> impl Strategy<Value = shopfloor_domain::values::Text> {
    select(vec!["waiting", "planned.break", "breakdown.mechanical"]).prop_map(text)
}

fn order_command() -> impl Strategy<Value = OrderCommand> {
    let bom_line =
        (select(vec!["steel", "bolt", "paint"]), quantity()).prop_map(|(item, q)| BomLine {
            item_id: id(item),
            qty_per_unit: q,
            lots: Vec::new(),
        });
    let location = option::of(select(vec!["FG", "RAW-A"]).prop_map(id));
    prop_oneof![
        (
            select(vec!["PO-1", "PO-2"]),
            1u64..200,
            vec(bom_line, 0..3),
            location.clone(),
            location,
            at()
        )
            .prop_map(|(order, quantity, bom, input, output, at)| {
                OrderCommand::CreateOrder(CreateOrder {
                    order_id: id(order),
                    product_id: id("widget"),
                    quantity: OrderQuantity::new(quantity).unwrap(),
                    bom,
                    input_location: input,
                    output_location: output,
                    at,
                })
            }),
        (select(vec!["M1", "M2"]), at()).prop_map(|(machine, at)| {
            OrderCommand::AssignOrder(AssignOrder {
                operator_ids: None,
                machine_id: id(machine),
                at,
            })
        }),
        at().prop_map(|at| OrderCommand::StartOrder(StartOrder { at })),
        (note(), at()).prop_map(|(reason, at)| OrderCommand::HoldOrder(HoldOrder { reason, at })),
        at().prop_map(|at| OrderCommand::ResumeOrder(ResumeOrder { at })),
        at().prop_map(|at| OrderCommand::CompleteOrder(CompleteOrder { at })),
        (option::of(note()), at())
            .prop_map(|(reason, at)| OrderCommand::CancelOrder(CancelOrder { reason, at })),
        (select(vec!["M1", "M2"]), count(), count(), at()).prop_map(
            |(machine, good, scrap, at)| {
                OrderCommand::ReportProduction(ReportProduction {
                    machine_id: id(machine),
                    good,
                    scrap,
                    at,
                })
            }
        ),
        (
            select(vec!["I1", "I2"]),
            0u64..4,
            0u64..6,
            any::<bool>(),
            at()
        )
            .prop_map(|(inspection, sample_size, defects, passed, at)| {
                OrderCommand::RecordInspection(RecordInspection {
                    inspection_id: id(inspection),
                    sample_size,
                    defects,
                    passed,
                    inspector: id("qa"),
                    notes: None,
                    measurements: Vec::new(),
                    at,
                })
            }),
    ]
}

fn machine_command() -> impl Strategy<Value = MachineCommand> {
    let cycle_time = select(vec![0.5, 2.0, 30.0]).prop_map(|s| CycleTime::new(s).unwrap());
    let state = select(vec![
        MachineStatus::Running,
        MachineStatus::Idle,
        MachineStatus::Down,
    ]);
    let code = select(vec![
        "breakdown.mechanical",
        "planned.break",
        "unclassified",
        "coffee",
    ]);
    prop_oneof![
        1 => (cycle_time.clone(), at()).prop_map(|(ideal, at)| {
            MachineCommand::RegisterMachine(RegisterMachine {
                machine_id: id("M1"),
                machine_type: id("press"),
                line: id("L1"),
                ideal_cycle_time_s: ideal,
                at,
            })
        }),
        3 => (state, option::of(note()), option::of(any::<bool>()), at()).prop_map(
            |(state, reason, planned, at)| {
                MachineCommand::ChangeState(ChangeState {
                    state,
                    reason,
                    planned,
                    at,
                })
            }
        ),
        1 => (count(), count(), option::of(Just("PO-1")), at()).prop_map(
            |(good, scrap, order, at)| {
                MachineCommand::RecordParts(RecordParts {
                    good,
                    scrap,
                    order_id: order.map(id),
                    at,
                })
            }
        ),
        1 => (cycle_time, at(), at()).prop_map(|(ideal, effective_from, at)| {
            MachineCommand::ChangeIdealCycleTime(ChangeIdealCycleTime {
                ideal_cycle_time_s: ideal,
                effective_from,
                at,
            })
        }),
        1 => (select(vec!["T1", "T2"]), at()).prop_map(|(task, at)| {
            MachineCommand::RecordMaintenancePerformed(RecordMaintenancePerformed {
                task_id: id(task),
                notes: None,
                at,
            })
        }),
        1 => (at(), code, at()).prop_map(|(stop_at, code, at)| {
            MachineCommand::ClassifyStop(ClassifyStop {
                stop_at,
                reason_code: id(code),
                by: id("sam"),
                at,
            })
        }),
    ]
}

fn task_command() -> impl Strategy<Value = TaskCommand> {
    let kind = select(vec![
        TaskKind::Preventive,
        TaskKind::Predictive,
        TaskKind::Corrective,
    ]);
    let evidence = option::of(at().prop_map(|at| PredictiveEvidence {
        sensor: String::from("temperature_c"),
        observed_value: 91.5,
        baseline_mean: 60.0,
        baseline_std_dev: 4.0,
        deviation_sigma: 7.875,
        samples: 100,
        window_start: at,
        window_end: at,
        details: Default::default(),
    }));
    let part = (select(vec!["grease", "belt"]), quantity()).prop_map(|(item, q)| PartUsed {
        item_id: id(item),
        qty: q,
    });
    prop_oneof![
        (kind, evidence, option::of(Just("P1")), at()).prop_map(|(kind, evidence, policy, at)| {
            TaskCommand::ScheduleTask(ScheduleTask {
                task_id: id("T1"),
                machine_id: id("M1"),
                kind,
                scheduled_date: at,
                description: None,
                evidence,
                policy_id: policy.map(id),
                at,
            })
        }),
        at().prop_map(|at| TaskCommand::StartTask(StartTask { at })),
        (vec(part, 0..3), at()).prop_map(|(parts_used, at)| {
            TaskCommand::CompleteTask(CompleteTask {
                notes: None,
                parts_used,
                at,
            })
        }),
        (note(), at()).prop_map(|(reason, at)| TaskCommand::CancelTask(CancelTask { reason, at })),
    ]
}

fn inventory_command() -> impl Strategy<Value = InventoryCommand> {
    let item = prop_oneof![9 => Just("steel"), 1 => Just("copper")].prop_map(id);
    let item_type = select(vec![ItemType::Raw, ItemType::Finished]);
    let location = select(vec!["A", "B", "C"]).prop_map(id);
    let change = select(vec!["-5", "-0.5", "1", "3", "-1000000000000"]).prop_map(delta);
    prop_oneof![
        (
            item.clone(),
            item_type.clone(),
            location.clone(),
            quantity(),
            at()
        )
            .prop_map(|(item_id, item_type, location, qty, at)| {
                InventoryCommand::ReceiveStock(ReceiveStock {
                    item_id,
                    item_type,
                    location,
                    qty,
                    reason: None,
                    at,
                })
            }),
        (item.clone(), item_type, location.clone(), change, at()).prop_map(
            |(item_id, item_type, location, delta, at)| {
                InventoryCommand::AdjustStock(AdjustStock {
                    item_id,
                    item_type,
                    location,
                    delta,
                    reason: text("count"),
                    at,
                })
            }
        ),
        (item.clone(), quantity(), option::of(location.clone()), at()).prop_map(
            |(item_id, qty, location, at)| {
                InventoryCommand::ConsumeStock(ConsumeStock {
                    item_id,
                    order_id: id("PO-1"),
                    qty,
                    location,
                    at,
                })
            }
        ),
        (item, location, quantity(), at()).prop_map(|(item_id, location, qty, at)| {
            InventoryCommand::ProduceStock(ProduceStock {
                item_id,
                order_id: id("PO-1"),
                location,
                qty,
                at,
            })
        }),
    ]
}

fn policy_command() -> impl Strategy<Value = PolicyCommand> {
    let trigger = select(vec![
        PolicyTrigger::EveryDays(std::num::NonZeroU32::new(1).unwrap()),
        PolicyTrigger::EveryRunHours(std::num::NonZeroU32::new(1).unwrap()),
        PolicyTrigger::EveryCycles(std::num::NonZeroU64::new(100).unwrap()),
    ]);
    let usage = (0u64..20_000, 0u64..1_000).prop_map(|(run_seconds, cycles)| MachineUsage {
        run_seconds,
        cycles,
    });
    let now = (0i64..72).prop_map(|h| t(0, 0) + Duration::hours(h));
    let task = select(vec!["P1-1", "P1-2", "P1-3", "other"]).prop_map(id);
    prop_oneof![
        1 => (trigger, usage.clone(), now.clone()).prop_map(|(trigger, usage, at)| {
            PolicyCommand::DefinePolicy(DefinePolicy {
                policy_id: id("P1"),
                machine_id: id("M1"),
                trigger,
                description: text("lubricate"),
                usage,
                at,
            })
        }),
        3 => (now.clone(), usage.clone())
            .prop_map(|(now, usage)| PolicyCommand::CheckDue(CheckDue { now, usage })),
        2 => (task.clone(), usage, now.clone()).prop_map(|(task_id, usage, at)| {
            PolicyCommand::RecordPolicyTaskCompleted(RecordPolicyTaskCompleted {
                task_id,
                usage,
                at,
            })
        }),
        1 => (task, now.clone()).prop_map(|(task_id, at)| {
            PolicyCommand::RecordPolicyTaskCancelled(RecordPolicyTaskCancelled { task_id, at })
        }),
        1 => now.prop_map(|at| PolicyCommand::DisablePolicy(DisablePolicy { reason: None, at })),
    ]
}

proptest! {
    #[test]
    fn production_orders_never_panic_and_refusals_change_nothing(
        commands in vec(order_command(), 0..40)
    ) {
        let history = run::<ProductionOrder>(commands, |order| {
            if let Some(order) = order.order() {
                if let Some(y) = order.production_yield() {
                    assert!((0.0..=1.0).contains(&y));
                }
            }
        });
        // Running totals in the events add up.
        let mut good = 0;
        for event in &history {
            if let OrderEvent::OrderPartsReported { good: g, good_count, .. } = event {
                good += g;
                prop_assert_eq!(*good_count, good);
            }
        }
    }

    #[test]
    fn machines_never_panic_and_refusals_change_nothing(
        commands in vec(machine_command(), 0..40)
    ) {
        run::<Machine>(commands, |machine| {
            if let Some(record) = machine.machine() {
                assert!(record.run_time_ms <= 60 * 60 * 1000);
                assert!(record.stops.len() <= MAX_TRACKED_STOPS);
            }
        });
    }

    #[test]
    fn maintenance_tasks_never_panic_and_refusals_change_nothing(
        commands in vec(task_command(), 0..20)
    ) {
        run::<MaintenanceTask>(commands, |_| {});
    }

    #[test]
    fn inventory_never_panics_never_goes_negative_and_refusals_change_nothing(
        commands in vec(inventory_command(), 0..40)
    ) {
        run::<InventoryItem>(commands, |item| {
            if let Some(item) = item.item() {
                for level in item.levels.values() {
                    assert!(!level.is_sign_negative(), "negative level {level}");
                }
            }
        });
    }

    #[test]
    fn policies_never_panic_and_fall_due_once_per_occurrence(
        commands in vec(policy_command(), 0..40)
    ) {
        let history = run::<MaintenancePolicy>(commands, |policy| {
            if let Some(policy) = policy.policy() {
                if let Some(open) = &policy.open {
                    assert_eq!(open.occurrence, policy.occurrences);
                }
            }
        });
        let occurrences: Vec<u64> = history
            .iter()
            .filter_map(|event| match event {
                PolicyEvent::PolicyDue { occurrence, .. } => Some(*occurrence),
                _ => None,
            })
            .collect();
        let expected: Vec<u64> = (1..=occurrences.len() as u64).collect();
        prop_assert_eq!(occurrences, expected);
    }
}

/// The aggregates' stream types, as the event store and URLs know them.
#[test]
fn stream_types() {
    assert_eq!(ProductionOrder::TYPE, "production_order");
    assert_eq!(Machine::TYPE, "machine");
    assert_eq!(MaintenanceTask::TYPE, "maintenance_task");
    assert_eq!(InventoryItem::TYPE, "inventory_item");
    assert_eq!(MaintenancePolicy::TYPE, "maintenance_policy");
}

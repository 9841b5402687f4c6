//! Production order: given events, when a command, then events or the exact error.

use cqrs_es::test::TestFramework;
use shopfloor_domain::order::*;
use shopfloor_domain::values::OrderQuantity;
use shopfloor_domain::{Decide, MAX_PARTS_PER_REPORT};

use crate::support::{id, qty, t, text};

type Framework = TestFramework<ProductionOrder>;

fn framework() -> Framework {
    TestFramework::with(())
}

fn bom() -> Vec<BomLine> {
    vec![
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
    ]
}

fn create_cmd() -> CreateOrder {
    CreateOrder {
        order_id: id("PO-1"),
        product_id: id("widget"),
        quantity: OrderQuantity::new(100).unwrap(),
        bom: bom(),
        input_location: None,
        output_location: None,
        at: t(8, 0),
    }
}

fn created() -> OrderEvent {
    OrderEvent::OrderCreated {
        order_id: id("PO-1"),
        product_id: id("widget"),
        quantity: OrderQuantity::new(100).unwrap(),
        bom: bom(),
        input_location: None,
        output_location: id("FG"),
        at: t(8, 0),
    }
}

fn assigned(machine: &str) -> OrderEvent {
    OrderEvent::OrderAssigned {
        operator_ids: None,
        order_id: id("PO-1"),
        machine_id: id(machine),
        previous_machine_id: None,
        at: t(8, 5),
    }
}

fn started() -> OrderEvent {
    OrderEvent::OrderStarted {
        order_id: id("PO-1"),
        machine_id: id("M1"),
        at: t(8, 10),
    }
}

fn held() -> OrderEvent {
    OrderEvent::OrderHeld {
        order_id: id("PO-1"),
        reason: text("material missing"),
        at: t(9, 0),
    }
}

fn reported(good: u64, scrap: u64, good_count: u64, scrap_count: u64) -> OrderEvent {
    OrderEvent::OrderPartsReported {
        order_id: id("PO-1"),
        product_id: id("widget"),
        machine_id: id("M1"),
        good,
        scrap,
        good_count,
        scrap_count,
        at: t(8, 30),
    }
}

/// The history that leaves the order in `status`.
fn history(status: OrderStatus) -> Vec<OrderEvent> {
    use OrderStatus as S;
    let mut events = vec![created()];
    match status {
        S::Created => {}
        S::Assigned => events.push(assigned("M1")),
        S::InProgress => events.extend([assigned("M1"), started()]),
        S::OnHold => events.extend([assigned("M1"), started(), held()]),
        S::Completed => events.extend([
            assigned("M1"),
            started(),
            OrderEvent::OrderCompleted {
                order_id: id("PO-1"),
                good_count: 0,
                scrap_count: 0,
                at: t(10, 0),
            },
        ]),
        S::Cancelled => events.push(OrderEvent::OrderCancelled {
            order_id: id("PO-1"),
            reason: None,
            previous_status: S::Created,
            at: t(10, 0),
        }),
    }
    events
}

const ALL: [OrderStatus; 6] = [
    OrderStatus::Created,
    OrderStatus::Assigned,
    OrderStatus::InProgress,
    OrderStatus::OnHold,
    OrderStatus::Completed,
    OrderStatus::Cancelled,
];

fn report_cmd(good: u64, scrap: u64) -> OrderCommand {
    OrderCommand::ReportProduction(ReportProduction {
        machine_id: id("M1"),
        good,
        scrap,
        at: t(8, 30),
    })
}

fn inspection_cmd(inspection: &str, sample_size: u64, defects: u64) -> OrderCommand {
    OrderCommand::RecordInspection(RecordInspection {
        inspection_id: id(inspection),
        sample_size,
        defects,
        passed: defects == 0,
        inspector: id("qa-anna"),
        notes: Some(text("visual check")),
        measurements: Vec::new(),
        at: t(9, 30),
    })
}

#[test]
fn create_order_records_the_default_output_location() {
    framework()
        .given_no_previous_events()
        .when(OrderCommand::CreateOrder(create_cmd()))
        .then_expect_events(vec![created()]);
}

#[test]
fn create_order_keeps_explicit_locations() {
    let cmd = CreateOrder {
        input_location: Some(id("RAW-A")),
        output_location: Some(id("WH2")),
        ..create_cmd()
    };
    framework()
        .given_no_previous_events()
        .when(OrderCommand::CreateOrder(cmd))
        .then_expect_events(vec![OrderEvent::OrderCreated {
            order_id: id("PO-1"),
            product_id: id("widget"),
            quantity: OrderQuantity::new(100).unwrap(),
            bom: bom(),
            input_location: Some(id("RAW-A")),
            output_location: id("WH2"),
            at: t(8, 0),
        }]);
}

#[test]
fn create_order_twice_is_refused() {
    framework()
        .given(vec![created()])
        .when(OrderCommand::CreateOrder(create_cmd()))
        .then_expect_error(OrderError::AlreadyExists {
            order_id: id("PO-1"),
        });
}

#[test]
fn create_order_with_a_repeated_bom_item_is_refused() {
    let mut cmd = create_cmd();
    cmd.bom.push(BomLine {
        item_id: id("steel"),
        qty_per_unit: qty("1"),
        lots: Vec::new(),
    });
    framework()
        .given_no_previous_events()
        .when(OrderCommand::CreateOrder(cmd))
        .then_expect_error(OrderError::DuplicateBomItem {
            item_id: id("steel"),
        });
}

#[test]
fn commands_to_a_missing_order_are_refused() {
    let commands = vec![
        OrderCommand::AssignOrder(AssignOrder {
            operator_ids: None,
            machine_id: id("M1"),
            at: t(8, 0),
        }),
        OrderCommand::StartOrder(StartOrder { at: t(8, 0) }),
        OrderCommand::HoldOrder(HoldOrder {
            reason: text("x"),
            at: t(8, 0),
        }),
        OrderCommand::ResumeOrder(ResumeOrder { at: t(8, 0) }),
        OrderCommand::CompleteOrder(CompleteOrder { at: t(8, 0) }),
        OrderCommand::CancelOrder(CancelOrder {
            reason: None,
            at: t(8, 0),
        }),
        report_cmd(1, 0),
        inspection_cmd("I1", 5, 0),
    ];
    for command in commands {
        framework()
            .given_no_previous_events()
            .when(command)
            .then_expect_error(OrderError::NotFound);
    }
}

#[test]
fn assign_a_created_order() {
    framework()
        .given(history(OrderStatus::Created))
        .when(OrderCommand::AssignOrder(AssignOrder {
            operator_ids: None,
            machine_id: id("M1"),
            at: t(8, 5),
        }))
        .then_expect_events(vec![assigned("M1")]);
}

#[test]
fn reassign_an_assigned_order_names_the_previous_machine() {
    framework()
        .given(history(OrderStatus::Assigned))
        .when(OrderCommand::AssignOrder(AssignOrder {
            operator_ids: None,
            machine_id: id("M2"),
            at: t(8, 6),
        }))
        .then_expect_events(vec![OrderEvent::OrderAssigned {
            operator_ids: None,
            order_id: id("PO-1"),
            machine_id: id("M2"),
            previous_machine_id: Some(id("M1")),
            at: t(8, 6),
        }]);
}

#[test]
fn assigning_the_same_machine_again_emits_nothing() {
    framework()
        .given(history(OrderStatus::Assigned))
        .when(OrderCommand::AssignOrder(AssignOrder {
            operator_ids: None,
            machine_id: id("M1"),
            at: t(8, 6),
        }))
        .then_expect_events(vec![]);
}

#[test]
fn start_an_assigned_order() {
    framework()
        .given(history(OrderStatus::Assigned))
        .when(OrderCommand::StartOrder(StartOrder { at: t(8, 10) }))
        .then_expect_events(vec![started()]);
}

#[test]
fn hold_an_order_in_progress() {
    framework()
        .given(history(OrderStatus::InProgress))
        .when(OrderCommand::HoldOrder(HoldOrder {
            reason: text("material missing"),
            at: t(9, 0),
        }))
        .then_expect_events(vec![held()]);
}

#[test]
fn resume_an_order_on_hold() {
    framework()
        .given(history(OrderStatus::OnHold))
        .when(OrderCommand::ResumeOrder(ResumeOrder { at: t(9, 15) }))
        .then_expect_events(vec![OrderEvent::OrderResumed {
            order_id: id("PO-1"),
            at: t(9, 15),
        }]);
}

#[test]
fn complete_an_order_in_progress_records_the_totals() {
    let mut given = history(OrderStatus::InProgress);
    given.push(reported(40, 2, 40, 2));
    framework()
        .given(given)
        .when(OrderCommand::CompleteOrder(CompleteOrder { at: t(11, 0) }))
        .then_expect_events(vec![OrderEvent::OrderCompleted {
            order_id: id("PO-1"),
            good_count: 40,
            scrap_count: 2,
            at: t(11, 0),
        }]);
}

#[test]
fn cancel_from_every_open_status() {
    for status in [
        OrderStatus::Created,
        OrderStatus::Assigned,
        OrderStatus::InProgress,
        OrderStatus::OnHold,
    ] {
        framework()
            .given(history(status))
            .when(OrderCommand::CancelOrder(CancelOrder {
                reason: Some(text("customer withdrew")),
                at: t(12, 0),
            }))
            .then_expect_events(vec![OrderEvent::OrderCancelled {
                order_id: id("PO-1"),
                reason: Some(text("customer withdrew")),
                previous_status: status,
                at: t(12, 0),
            }]);
    }
}

/// Every (status, action) pair not allowed by the contract is refused with the current status.
#[test]
fn every_forbidden_transition_is_refused_with_the_current_status() {
    use OrderStatus as S;
    let actions: Vec<(OrderAction, OrderCommand, &[OrderStatus])> = vec![
        (
            OrderAction::Assign,
            OrderCommand::AssignOrder(AssignOrder {
                operator_ids: None,
                machine_id: id("M9"),
                at: t(12, 0),
            }),
            &[S::Created, S::Assigned],
        ),
        (
            OrderAction::Start,
            OrderCommand::StartOrder(StartOrder { at: t(12, 0) }),
            &[S::Assigned],
        ),
        (
            OrderAction::Hold,
            OrderCommand::HoldOrder(HoldOrder {
                reason: text("x"),
                at: t(12, 0),
            }),
            &[S::InProgress],
        ),
        (
            OrderAction::Resume,
            OrderCommand::ResumeOrder(ResumeOrder { at: t(12, 0) }),
            &[S::OnHold],
        ),
        (
            OrderAction::Complete,
            OrderCommand::CompleteOrder(CompleteOrder { at: t(12, 0) }),
            &[S::InProgress],
        ),
        (
            OrderAction::Cancel,
            OrderCommand::CancelOrder(CancelOrder {
                reason: None,
                at: t(12, 0),
            }),
            &[S::Created, S::Assigned, S::InProgress, S::OnHold],
        ),
        (
            OrderAction::ReportProduction,
            report_cmd(1, 0),
            &[S::Assigned, S::InProgress, S::OnHold],
        ),
        (
            OrderAction::RecordInspection,
            inspection_cmd("I9", 5, 1),
            &[
                S::Created,
                S::Assigned,
                S::InProgress,
                S::OnHold,
                S::Completed,
            ],
        ),
    ];
    let mut refusals = 0;
    for (action, command, allowed) in actions {
        for status in ALL {
            let order = ProductionOrder::replay(history(status));
            let result = order.decide(command.clone());
            if allowed.contains(&status) {
                assert!(result.is_ok(), "{action:?} from {status:?}: {result:?}");
            } else {
                refusals += 1;
                assert_eq!(
                    result,
                    Err(OrderError::InvalidTransition { action, status }),
                    "{action:?} from {status:?}"
                );
            }
        }
    }
    assert_eq!(refusals, 30);
}

#[test]
fn a_refusal_reads_well() {
    let error = OrderError::InvalidTransition {
        action: OrderAction::Start,
        status: OrderStatus::InProgress,
    };
    assert_eq!(
        error.to_string(),
        "cannot start an order that is in progress"
    );
    let error = OrderError::InvalidTransition {
        action: OrderAction::ReportProduction,
        status: OrderStatus::Cancelled,
    };
    assert_eq!(
        error.to_string(),
        "cannot report production on an order that is cancelled"
    );
}

#[test]
fn report_production_carries_the_product_and_running_totals() {
    let mut given = history(OrderStatus::InProgress);
    given.push(reported(10, 1, 10, 1));
    framework()
        .given(given)
        .when(report_cmd(5, 2))
        .then_expect_events(vec![reported(5, 2, 15, 3)]);
}

#[test]
fn report_production_on_a_cancelled_order_is_refused() {
    framework()
        .given(history(OrderStatus::Cancelled))
        .when(report_cmd(5, 0))
        .then_expect_error(OrderError::InvalidTransition {
            action: OrderAction::ReportProduction,
            status: OrderStatus::Cancelled,
        });
}

#[test]
fn report_production_of_nothing_is_refused() {
    framework()
        .given(history(OrderStatus::InProgress))
        .when(report_cmd(0, 0))
        .then_expect_error(OrderError::EmptyReport);
}

#[test]
fn report_production_of_an_implausible_count_is_refused() {
    framework()
        .given(history(OrderStatus::InProgress))
        .when(report_cmd(MAX_PARTS_PER_REPORT, 1))
        .then_expect_error(OrderError::TooManyParts {
            max: MAX_PARTS_PER_REPORT,
        });
}

#[test]
fn record_an_inspection() {
    framework()
        .given(history(OrderStatus::InProgress))
        .when(inspection_cmd("I1", 20, 1))
        .then_expect_events(vec![OrderEvent::OrderInspectionRecorded {
            order_id: id("PO-1"),
            inspection_id: id("I1"),
            sample_size: 20,
            defects: 1,
            passed: false,
            inspector: id("qa-anna"),
            notes: Some(text("visual check")),
            measurements: Vec::new(),
            at: t(9, 30),
        }]);
}

#[test]
fn an_inspection_without_a_sample_is_refused() {
    framework()
        .given(history(OrderStatus::InProgress))
        .when(inspection_cmd("I1", 0, 0))
        .then_expect_error(OrderError::EmptySample);
}

/// Issue 16: an inspection of more parts than one report may count (a sample of 2^63 parts) is
/// refused: the orders read model keeps sample sizes as PostgreSQL bigints.
#[test]
fn an_absurd_sample_is_refused() {
    framework()
        .given(history(OrderStatus::InProgress))
        .when(inspection_cmd("I1", 9_223_372_036_854_775_808, 0))
        .then_expect_error(OrderError::SampleTooLarge {
            max: shopfloor_domain::MAX_PARTS_PER_REPORT,
        });
}

#[test]
fn an_inspection_with_more_defects_than_samples_is_refused() {
    framework()
        .given(history(OrderStatus::InProgress))
        .when(inspection_cmd("I1", 3, 4))
        .then_expect_error(OrderError::DefectsExceedSample {
            defects: 4,
            sample_size: 3,
        });
}

#[test]
fn an_inspection_id_is_recorded_once() {
    let mut order = ProductionOrder::replay(history(OrderStatus::InProgress));
    order.execute(inspection_cmd("I1", 5, 0)).unwrap();
    let before = order.clone();
    assert_eq!(
        order.execute(inspection_cmd("I1", 5, 0)),
        Err(OrderError::DuplicateInspection {
            inspection_id: id("I1"),
        })
    );
    assert_eq!(order, before);
}

#[test]
fn derived_figures() {
    let mut given = history(OrderStatus::InProgress);
    let empty = ProductionOrder::replay(given.clone());
    let order = empty.order().unwrap();
    assert_eq!(order.total_count(), 0);
    assert_eq!(order.production_yield(), None);
    assert_eq!(order.scrap_rate(), None);
    assert_eq!(order.progress(), 0.0);

    given.push(reported(45, 5, 45, 5));
    given.push(OrderEvent::OrderInspectionRecorded {
        order_id: id("PO-1"),
        inspection_id: id("I1"),
        sample_size: 10,
        defects: 0,
        passed: true,
        inspector: id("qa-anna"),
        notes: None,
        measurements: Vec::new(),
        at: t(9, 0),
    });
    let aggregate = ProductionOrder::replay(given);
    let order = aggregate.order().unwrap();
    assert_eq!(order.status, OrderStatus::InProgress);
    assert_eq!(order.assigned_machine, Some(id("M1")));
    assert_eq!((order.good_count, order.scrap_count), (45, 5));
    assert_eq!(order.total_count(), 50);
    assert_eq!(order.production_yield(), Some(0.9));
    assert_eq!(order.scrap_rate(), Some(0.1));
    assert_eq!(order.progress(), 0.45);
    assert_eq!(order.inspections.len(), 1);
}

#[test]
fn status_serializes_in_snake_case() {
    let names: Vec<String> = ALL
        .iter()
        .map(|s| {
            serde_json::to_value(s)
                .unwrap()
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        names,
        [
            "created",
            "assigned",
            "in_progress",
            "on_hold",
            "completed",
            "cancelled"
        ]
    );
    for status in ALL {
        assert_eq!(serde_json::to_value(status).unwrap(), status.as_str());
    }
}

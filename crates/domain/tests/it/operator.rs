//! Operators: given events, when a command, then events or the exact error (ADR 0036).

use cqrs_es::test::TestFramework;
use shopfloor_domain::operator::*;
use shopfloor_domain::order::{AssignOrder, OrderCommand, OrderEvent};
use shopfloor_domain::{Decide, Operator, ProductionOrder};

use crate::support::{id, t, text};

type Framework = TestFramework<Operator>;

fn framework() -> Framework {
    TestFramework::with(())
}

fn registered() -> OperatorEvent {
    OperatorEvent::OperatorRegistered {
        operator_id: id("OP-1"),
        name: text("Ada"),
        badge_id: None,
        skills: vec![id("press"), id("welding")],
        lines: vec![id("L1")],
        at: t(6, 0),
    }
}

fn on(order: &str, h: u32, m: u32) -> OperatorEvent {
    OperatorEvent::OperatorClockedOn {
        operator_id: id("OP-1"),
        order_id: id(order),
        machine_id: Some(id("M1")),
        at: t(h, m),
    }
}

fn clock_on(order: &str, h: u32, m: u32) -> OperatorCommand {
    OperatorCommand::ClockOn(ClockOn {
        order_id: id(order),
        machine_id: Some(id("M1")),
        at: t(h, m),
    })
}

#[test]
fn registering_keeps_skills_and_lines_as_sets() {
    framework()
        .given_no_previous_events()
        .when(OperatorCommand::RegisterOperator(RegisterOperator {
            operator_id: id("OP-1"),
            name: text("Ada"),
            badge_id: None,
            skills: vec![id("welding"), id("press"), id("welding")],
            lines: vec![id("L1"), id("L1")],
            at: t(6, 0),
        }))
        .then_expect_events(vec![registered()]);
    framework()
        .given(vec![registered()])
        .when(OperatorCommand::RegisterOperator(RegisterOperator {
            operator_id: id("OP-1"),
            name: text("Again"),
            badge_id: None,
            skills: vec![],
            lines: vec![],
            at: t(7, 0),
        }))
        .then_expect_error(OperatorError::AlreadyRegistered {
            operator_id: id("OP-1"),
        });
}

#[test]
fn an_update_that_changes_nothing_emits_nothing() {
    let same = UpdateOperator {
        name: Some(text("Ada")),
        badge_id: None,
        skills: Some(vec![id("welding"), id("press")]),
        lines: None,
        at: t(7, 0),
    };
    framework()
        .given(vec![registered()])
        .when(OperatorCommand::UpdateOperator(same))
        .then_expect_events(vec![]);
}

#[test]
fn an_operator_may_be_clocked_on_two_orders_but_not_twice_on_one() {
    framework()
        .given(vec![registered(), on("PO-1", 8, 0)])
        .when(clock_on("PO-2", 8, 30))
        .then_expect_events(vec![on("PO-2", 8, 30)]);
    framework()
        .given(vec![registered(), on("PO-1", 8, 0)])
        .when(clock_on("PO-1", 8, 30))
        .then_expect_error(OperatorError::AlreadyClockedOn {
            order_id: id("PO-1"),
        });
}

#[test]
fn clocking_off_closes_the_session_it_names() {
    framework()
        .given(vec![registered(), on("PO-1", 8, 0)])
        .when(OperatorCommand::ClockOff(ClockOff {
            order_id: id("PO-1"),
            at: t(9, 0),
        }))
        .then_expect_events(vec![OperatorEvent::OperatorClockedOff {
            operator_id: id("OP-1"),
            order_id: id("PO-1"),
            machine_id: Some(id("M1")),
            clocked_on_at: t(8, 0),
            at: t(9, 0),
        }]);
    framework()
        .given(vec![registered(), on("PO-1", 8, 0)])
        .when(OperatorCommand::ClockOff(ClockOff {
            order_id: id("PO-1"),
            at: t(7, 59),
        }))
        .then_expect_error(OperatorError::OffBeforeOn {
            at: t(7, 59),
            clocked_on_at: t(8, 0),
        });
    framework()
        .given(vec![registered()])
        .when(OperatorCommand::ClockOff(ClockOff {
            order_id: id("PO-1"),
            at: t(9, 0),
        }))
        .then_expect_error(OperatorError::NotClockedOn {
            order_id: id("PO-1"),
        });
}

#[test]
fn labour_never_belongs_to_nobody() {
    framework()
        .given(vec![registered(), on("PO-1", 8, 0)])
        .when(OperatorCommand::DeactivateOperator(DeactivateOperator {
            reason: None,
            at: t(9, 0),
        }))
        .then_expect_error(OperatorError::StillClockedOn {
            orders: "PO-1".into(),
        });
    let deactivated = OperatorEvent::OperatorDeactivated {
        operator_id: id("OP-1"),
        reason: None,
        at: t(9, 0),
    };
    framework()
        .given(vec![registered(), deactivated.clone()])
        .when(clock_on("PO-1", 10, 0))
        .then_expect_error(OperatorError::Inactive {
            operator_id: id("OP-1"),
        });
    framework()
        .given(vec![registered(), deactivated])
        .when(OperatorCommand::DeactivateOperator(DeactivateOperator {
            reason: None,
            at: t(10, 0),
        }))
        .then_expect_events(vec![]);
}

#[test]
fn assigning_operators_replaces_them_and_leaving_them_out_keeps_them() {
    let mut order = ProductionOrder::default();
    order
        .execute(OrderCommand::CreateOrder(
            shopfloor_domain::order::CreateOrder {
                order_id: id("PO-1"),
                product_id: id("W"),
                quantity: shopfloor_domain::values::OrderQuantity::new(5).unwrap(),
                bom: vec![],
                input_location: None,
                output_location: None,
                at: t(8, 0),
            },
        ))
        .unwrap();
    let assign = |ops: Option<Vec<&str>>| {
        OrderCommand::AssignOrder(AssignOrder {
            machine_id: id("M1"),
            operator_ids: ops.map(|o| o.into_iter().map(id).collect()),
            at: t(8, 1),
        })
    };
    let events = order
        .execute(assign(Some(vec!["OP-2", "OP-1", "OP-2"])))
        .unwrap();
    assert!(matches!(
        &events[..],
        [OrderEvent::OrderAssigned { operator_ids: Some(ids), .. }] if ids == &vec![id("OP-1"), id("OP-2")]
    ));
    assert!(order.execute(assign(None)).unwrap().is_empty());
    assert!(order
        .execute(assign(Some(vec!["OP-1", "OP-2"])))
        .unwrap()
        .is_empty());
    assert_eq!(order.order().unwrap().assigned_operators.len(), 2);
    let events = order.execute(assign(Some(vec![]))).unwrap();
    assert_eq!(events.len(), 1);
    assert!(order.order().unwrap().assigned_operators.is_empty());
}

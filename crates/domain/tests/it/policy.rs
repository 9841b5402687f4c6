//! Preventive-maintenance policies: due exactly once per occurrence, reset on completion.

use std::num::{NonZeroU32, NonZeroU64};

use cqrs_es::test::TestFramework;
use shopfloor_domain::machine::MachineUsage;
use shopfloor_domain::policy::*;
use shopfloor_domain::Decide;

use crate::support::{day, id, text};

fn framework() -> TestFramework<MaintenancePolicy> {
    TestFramework::with(())
}

fn usage(run_seconds: u64, cycles: u64) -> MachineUsage {
    MachineUsage {
        run_seconds,
        cycles,
    }
}

fn cycles_trigger() -> PolicyTrigger {
    PolicyTrigger::EveryCycles(NonZeroU64::new(1000).unwrap())
}

fn defined(trigger: PolicyTrigger) -> PolicyEvent {
    PolicyEvent::PolicyDefined {
        policy_id: id("P1"),
        machine_id: id("M1"),
        trigger,
        description: text("lubricate"),
        run_seconds: 100,
        cycles: 500,
        at: day(1),
    }
}

fn check(now_day: u32, run_seconds: u64, cycles: u64) -> PolicyCommand {
    PolicyCommand::CheckDue(CheckDue {
        now: day(now_day),
        usage: usage(run_seconds, cycles),
    })
}

fn due(
    occurrence: u64,
    task: &str,
    trigger: PolicyTrigger,
    now_day: u32,
    run_seconds: u64,
    cycles: u64,
) -> PolicyEvent {
    PolicyEvent::PolicyDue {
        policy_id: id("P1"),
        machine_id: id("M1"),
        occurrence,
        task_id: id(task),
        trigger,
        description: text("lubricate"),
        run_seconds,
        cycles,
        due_at: day(now_day),
    }
}

fn task_completed(task: &str, occurrence: u64, run_seconds: u64, cycles: u64) -> PolicyEvent {
    PolicyEvent::PolicyTaskCompleted {
        policy_id: id("P1"),
        machine_id: id("M1"),
        occurrence,
        task_id: id(task),
        run_seconds,
        cycles,
        at: day(3),
    }
}

#[test]
fn define_a_policy_from_the_current_usage() {
    framework()
        .given_no_previous_events()
        .when(PolicyCommand::DefinePolicy(DefinePolicy {
            policy_id: id("P1"),
            machine_id: id("M1"),
            trigger: cycles_trigger(),
            description: text("lubricate"),
            usage: usage(100, 500),
            at: day(1),
        }))
        .then_expect_events(vec![defined(cycles_trigger())]);
}

#[test]
fn define_twice_is_refused() {
    framework()
        .given(vec![defined(cycles_trigger())])
        .when(PolicyCommand::DefinePolicy(DefinePolicy {
            policy_id: id("P1"),
            machine_id: id("M1"),
            trigger: cycles_trigger(),
            description: text("lubricate"),
            usage: usage(0, 0),
            at: day(2),
        }))
        .then_expect_error(PolicyError::AlreadyDefined {
            policy_id: id("P1"),
        });
}

#[test]
fn commands_to_a_missing_policy_are_refused() {
    for command in [
        check(2, 0, 0),
        PolicyCommand::RecordPolicyTaskCompleted(RecordPolicyTaskCompleted {
            task_id: id("P1-1"),
            usage: usage(0, 0),
            at: day(2),
        }),
        PolicyCommand::RecordPolicyTaskCancelled(RecordPolicyTaskCancelled {
            task_id: id("P1-1"),
            at: day(2),
        }),
        PolicyCommand::DisablePolicy(DisablePolicy {
            reason: None,
            at: day(2),
        }),
    ] {
        framework()
            .given_no_previous_events()
            .when(command)
            .then_expect_error(PolicyError::NotFound);
    }
}

#[test]
fn not_due_before_the_interval_counted_from_the_baseline() {
    framework()
        .given(vec![defined(cycles_trigger())])
        .when(check(2, 0, 1499))
        .then_expect_events(vec![]);
}

#[test]
fn due_once_with_a_deterministic_task_id() {
    framework()
        .given(vec![defined(cycles_trigger())])
        .when(check(2, 0, 1500))
        .then_expect_events(vec![due(1, "P1-1", cycles_trigger(), 2, 0, 1500)]);
    // The same, a lower or a higher usage while the occurrence is open: nothing.
    for cycles in [1500, 1400, 9000] {
        framework()
            .given(vec![
                defined(cycles_trigger()),
                due(1, "P1-1", cycles_trigger(), 2, 0, 1500),
            ])
            .when(check(2, 0, cycles))
            .then_expect_events(vec![]);
    }
}

#[test]
fn completion_moves_the_baseline_and_the_next_occurrence_counts_from_it() {
    let given = vec![
        defined(cycles_trigger()),
        due(1, "P1-1", cycles_trigger(), 2, 0, 1500),
        task_completed("P1-1", 1, 0, 1600),
    ];
    framework()
        .given(given.clone())
        .when(check(4, 0, 1600))
        .then_expect_events(vec![]);
    framework()
        .given(given.clone())
        .when(check(4, 0, 2599))
        .then_expect_events(vec![]);
    framework()
        .given(given)
        .when(check(4, 0, 2600))
        .then_expect_events(vec![due(2, "P1-2", cycles_trigger(), 4, 0, 2600)]);
}

#[test]
fn record_task_completed() {
    framework()
        .given(vec![
            defined(cycles_trigger()),
            due(1, "P1-1", cycles_trigger(), 2, 0, 1500),
        ])
        .when(PolicyCommand::RecordPolicyTaskCompleted(
            RecordPolicyTaskCompleted {
                task_id: id("P1-1"),
                usage: usage(0, 1600),
                at: day(3),
            },
        ))
        .then_expect_events(vec![task_completed("P1-1", 1, 0, 1600)]);
}

#[test]
fn completing_a_task_that_is_not_open_is_refused() {
    for given in [
        vec![defined(cycles_trigger())],
        vec![
            defined(cycles_trigger()),
            due(1, "P1-1", cycles_trigger(), 2, 0, 1500),
        ],
    ] {
        framework()
            .given(given)
            .when(PolicyCommand::RecordPolicyTaskCompleted(
                RecordPolicyTaskCompleted {
                    task_id: id("other"),
                    usage: usage(0, 1600),
                    at: day(3),
                },
            ))
            .then_expect_error(PolicyError::TaskNotOpen {
                task_id: id("other"),
            });
    }
}

#[test]
fn a_cancelled_task_leaves_the_work_due_and_raises_a_new_occurrence() {
    let cancelled = PolicyEvent::PolicyTaskCancelled {
        policy_id: id("P1"),
        machine_id: id("M1"),
        occurrence: 1,
        task_id: id("P1-1"),
        at: day(3),
    };
    framework()
        .given(vec![
            defined(cycles_trigger()),
            due(1, "P1-1", cycles_trigger(), 2, 0, 1500),
        ])
        .when(PolicyCommand::RecordPolicyTaskCancelled(
            RecordPolicyTaskCancelled {
                task_id: id("P1-1"),
                at: day(3),
            },
        ))
        .then_expect_events(vec![cancelled.clone()]);
    framework()
        .given(vec![
            defined(cycles_trigger()),
            due(1, "P1-1", cycles_trigger(), 2, 0, 1500),
            cancelled,
        ])
        .when(check(3, 0, 1500))
        .then_expect_events(vec![due(2, "P1-2", cycles_trigger(), 3, 0, 1500)]);
}

#[test]
fn cancelling_a_task_that_is_not_open_is_refused() {
    framework()
        .given(vec![defined(cycles_trigger())])
        .when(PolicyCommand::RecordPolicyTaskCancelled(
            RecordPolicyTaskCancelled {
                task_id: id("P1-1"),
                at: day(3),
            },
        ))
        .then_expect_error(PolicyError::TaskNotOpen {
            task_id: id("P1-1"),
        });
}

#[test]
fn every_days_counts_calendar_time() {
    let trigger = PolicyTrigger::EveryDays(NonZeroU32::new(7).unwrap());
    framework()
        .given(vec![defined(trigger)])
        .when(check(7, 0, 0))
        .then_expect_events(vec![]);
    framework()
        .given(vec![defined(trigger)])
        .when(check(8, 0, 0))
        .then_expect_events(vec![due(1, "P1-1", trigger, 8, 0, 0)]);
}

#[test]
fn every_run_hours_counts_run_seconds() {
    let trigger = PolicyTrigger::EveryRunHours(NonZeroU32::new(10).unwrap());
    framework()
        .given(vec![defined(trigger)])
        .when(check(2, 100 + 35_999, 0))
        .then_expect_events(vec![]);
    framework()
        .given(vec![defined(trigger)])
        .when(check(2, 100 + 36_000, 0))
        .then_expect_events(vec![due(1, "P1-1", trigger, 2, 36_100, 0)]);
}

#[test]
fn disable_a_policy_and_it_is_never_due_again() {
    let disabled = PolicyEvent::PolicyDisabled {
        policy_id: id("P1"),
        machine_id: id("M1"),
        reason: Some(text("machine sold")),
        at: day(2),
    };
    framework()
        .given(vec![defined(cycles_trigger())])
        .when(PolicyCommand::DisablePolicy(DisablePolicy {
            reason: Some(text("machine sold")),
            at: day(2),
        }))
        .then_expect_events(vec![disabled.clone()]);
    framework()
        .given(vec![defined(cycles_trigger()), disabled.clone()])
        .when(check(30, 0, 1_000_000))
        .then_expect_events(vec![]);
    framework()
        .given(vec![defined(cycles_trigger()), disabled])
        .when(PolicyCommand::DisablePolicy(DisablePolicy {
            reason: None,
            at: day(3),
        }))
        .then_expect_error(PolicyError::AlreadyDisabled);
}

#[test]
fn triggers_serialize_with_kind_and_value() {
    assert_eq!(
        serde_json::to_value(cycles_trigger()).unwrap(),
        serde_json::json!({"kind": "every_cycles", "value": 1000})
    );
    assert!(serde_json::from_value::<PolicyTrigger>(
        serde_json::json!({"kind": "every_days", "value": 0})
    )
    .is_err());
    let policy = MaintenancePolicy::replay([defined(cycles_trigger())]);
    assert_eq!(policy.policy().unwrap().baseline.cycles, 500);
}

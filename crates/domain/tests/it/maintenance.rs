//! Maintenance task: scheduling, start, completion, cancellation, overdue.

use std::collections::BTreeMap;

use cqrs_es::test::TestFramework;
use shopfloor_domain::maintenance::*;
use shopfloor_domain::Decide;

use crate::support::{day, id, qty, t, text};

fn framework() -> TestFramework<MaintenanceTask> {
    TestFramework::with(())
}

fn evidence() -> PredictiveEvidence {
    PredictiveEvidence {
        sensor: String::from("vibration_mm_s"),
        observed_value: 9.5,
        baseline_mean: 2.0,
        baseline_std_dev: 0.5,
        deviation_sigma: 15.0,
        samples: 600,
        window_start: t(8, 0),
        window_end: t(9, 0),
        details: BTreeMap::new(),
    }
}

fn schedule_cmd(kind: TaskKind) -> ScheduleTask {
    ScheduleTask {
        task_id: id("T1"),
        machine_id: id("M1"),
        kind,
        scheduled_date: day(5),
        description: Some(text("replace bearings")),
        evidence: None,
        policy_id: None,
        at: day(1),
    }
}

fn scheduled() -> TaskEvent {
    TaskEvent::MaintenanceTaskScheduled {
        task_id: id("T1"),
        machine_id: id("M1"),
        kind: TaskKind::Preventive,
        scheduled_date: day(5),
        description: Some(text("replace bearings")),
        evidence: None,
        policy_id: Some(id("P1")),
        at: day(1),
    }
}

fn started() -> TaskEvent {
    TaskEvent::MaintenanceTaskStarted {
        task_id: id("T1"),
        machine_id: id("M1"),
        at: day(5),
    }
}

fn completed() -> TaskEvent {
    TaskEvent::MaintenanceTaskCompleted {
        task_id: id("T1"),
        machine_id: id("M1"),
        kind: TaskKind::Preventive,
        policy_id: Some(id("P1")),
        notes: None,
        parts_used: vec![],
        at: day(6),
    }
}

fn cancelled() -> TaskEvent {
    TaskEvent::MaintenanceTaskCancelled {
        task_id: id("T1"),
        machine_id: id("M1"),
        kind: TaskKind::Preventive,
        policy_id: Some(id("P1")),
        reason: text("machine scrapped"),
        previous_status: TaskStatus::Scheduled,
        at: day(2),
    }
}

fn complete_cmd(parts_used: Vec<PartUsed>) -> TaskCommand {
    TaskCommand::CompleteTask(CompleteTask {
        notes: Some(text("done")),
        parts_used,
        at: day(6),
    })
}

fn cancel_cmd() -> TaskCommand {
    TaskCommand::CancelTask(CancelTask {
        reason: text("machine scrapped"),
        at: day(2),
    })
}

#[test]
fn schedule_a_task() {
    framework()
        .given_no_previous_events()
        .when(TaskCommand::ScheduleTask(ScheduleTask {
            policy_id: Some(id("P1")),
            ..schedule_cmd(TaskKind::Preventive)
        }))
        .then_expect_events(vec![scheduled()]);
}

#[test]
fn schedule_a_predictive_task_with_evidence() {
    framework()
        .given_no_previous_events()
        .when(TaskCommand::ScheduleTask(ScheduleTask {
            evidence: Some(evidence()),
            ..schedule_cmd(TaskKind::Predictive)
        }))
        .then_expect_events(vec![TaskEvent::MaintenanceTaskScheduled {
            task_id: id("T1"),
            machine_id: id("M1"),
            kind: TaskKind::Predictive,
            scheduled_date: day(5),
            description: Some(text("replace bearings")),
            evidence: Some(evidence()),
            policy_id: None,
            at: day(1),
        }]);
}

#[test]
fn schedule_twice_is_refused() {
    framework()
        .given(vec![scheduled()])
        .when(TaskCommand::ScheduleTask(schedule_cmd(
            TaskKind::Corrective,
        )))
        .then_expect_error(TaskError::AlreadyExists { task_id: id("T1") });
}

#[test]
fn evidence_on_a_task_that_is_not_predictive_is_refused() {
    framework()
        .given_no_previous_events()
        .when(TaskCommand::ScheduleTask(ScheduleTask {
            evidence: Some(evidence()),
            ..schedule_cmd(TaskKind::Corrective)
        }))
        .then_expect_error(TaskError::EvidenceOnlyForPredictive);
}

#[test]
fn a_policy_on_a_task_that_is_not_preventive_is_refused() {
    framework()
        .given_no_previous_events()
        .when(TaskCommand::ScheduleTask(ScheduleTask {
            policy_id: Some(id("P1")),
            ..schedule_cmd(TaskKind::Corrective)
        }))
        .then_expect_error(TaskError::PolicyOnlyForPreventive);
}

#[test]
fn commands_to_a_missing_task_are_refused() {
    for command in [
        TaskCommand::StartTask(StartTask { at: day(5) }),
        complete_cmd(vec![]),
        cancel_cmd(),
    ] {
        framework()
            .given_no_previous_events()
            .when(command)
            .then_expect_error(TaskError::NotFound);
    }
}

#[test]
fn start_a_scheduled_task() {
    framework()
        .given(vec![scheduled()])
        .when(TaskCommand::StartTask(StartTask { at: day(5) }))
        .then_expect_events(vec![started()]);
}

#[test]
fn complete_a_task_in_progress() {
    let parts = vec![
        PartUsed {
            item_id: id("bearing-6204"),
            qty: qty("2"),
        },
        PartUsed {
            item_id: id("grease"),
            qty: qty("0.25"),
        },
    ];
    framework()
        .given(vec![scheduled(), started()])
        .when(complete_cmd(parts.clone()))
        .then_expect_events(vec![TaskEvent::MaintenanceTaskCompleted {
            task_id: id("T1"),
            machine_id: id("M1"),
            kind: TaskKind::Preventive,
            policy_id: Some(id("P1")),
            notes: Some(text("done")),
            parts_used: parts,
            at: day(6),
        }]);
}

#[test]
fn a_part_listed_twice_is_refused() {
    let part = PartUsed {
        item_id: id("grease"),
        qty: qty("1"),
    };
    framework()
        .given(vec![scheduled(), started()])
        .when(complete_cmd(vec![part.clone(), part]))
        .then_expect_error(TaskError::DuplicatePart {
            item_id: id("grease"),
        });
}

#[test]
fn cancel_an_open_task() {
    framework()
        .given(vec![scheduled()])
        .when(cancel_cmd())
        .then_expect_events(vec![cancelled()]);
    framework()
        .given(vec![scheduled(), started()])
        .when(cancel_cmd())
        .then_expect_events(vec![TaskEvent::MaintenanceTaskCancelled {
            task_id: id("T1"),
            machine_id: id("M1"),
            kind: TaskKind::Preventive,
            policy_id: Some(id("P1")),
            reason: text("machine scrapped"),
            previous_status: TaskStatus::InProgress,
            at: day(2),
        }]);
}

#[test]
fn every_forbidden_transition_is_refused_with_the_current_status() {
    let histories = [
        (TaskStatus::Scheduled, vec![scheduled()]),
        (TaskStatus::InProgress, vec![scheduled(), started()]),
        (
            TaskStatus::Completed,
            vec![scheduled(), started(), completed()],
        ),
        (TaskStatus::Cancelled, vec![scheduled(), cancelled()]),
    ];
    let actions = [
        (
            TaskAction::Start,
            TaskCommand::StartTask(StartTask { at: day(5) }),
            vec![TaskStatus::Scheduled],
        ),
        (
            TaskAction::Complete,
            complete_cmd(vec![]),
            vec![TaskStatus::InProgress],
        ),
        (
            TaskAction::Cancel,
            cancel_cmd(),
            vec![TaskStatus::Scheduled, TaskStatus::InProgress],
        ),
    ];
    let mut refusals = 0;
    for (action, command, allowed) in &actions {
        for (status, history) in &histories {
            let task = MaintenanceTask::replay(history.clone());
            let result = task.decide(command.clone());
            if allowed.contains(status) {
                assert!(result.is_ok());
            } else {
                refusals += 1;
                assert_eq!(
                    result,
                    Err(TaskError::InvalidTransition {
                        action: *action,
                        status: *status,
                    })
                );
            }
        }
    }
    assert_eq!(refusals, 8);
    assert_eq!(
        TaskError::InvalidTransition {
            action: TaskAction::Complete,
            status: TaskStatus::Scheduled,
        }
        .to_string(),
        "cannot complete a maintenance task that is scheduled"
    );
}

#[test]
fn overdue_is_derived_from_the_scheduled_date_while_open() {
    let scheduled_task = MaintenanceTask::replay([scheduled()]);
    assert!(!scheduled_task.is_overdue(day(5)));
    assert!(scheduled_task.is_overdue(day(6)));
    assert!(MaintenanceTask::replay([scheduled(), started()]).is_overdue(day(6)));
    assert!(!MaintenanceTask::replay([scheduled(), started(), completed()]).is_overdue(day(9)));
    assert!(!MaintenanceTask::replay([scheduled(), cancelled()]).is_overdue(day(9)));
    assert!(!MaintenanceTask::default().is_overdue(day(9)));
}

#[test]
fn status_and_kind_serialize_in_snake_case() {
    assert_eq!(
        serde_json::to_value([
            TaskStatus::Scheduled,
            TaskStatus::InProgress,
            TaskStatus::Completed,
            TaskStatus::Cancelled
        ])
        .unwrap(),
        serde_json::json!(["scheduled", "in_progress", "completed", "cancelled"])
    );
    assert_eq!(
        serde_json::to_value([
            TaskKind::Preventive,
            TaskKind::Predictive,
            TaskKind::Corrective
        ])
        .unwrap(),
        serde_json::json!(["preventive", "predictive", "corrective"])
    );
}

fn acknowledge_cmd(by: &str, h: u32) -> TaskCommand {
    TaskCommand::AcknowledgeTask(AcknowledgeTask {
        by: id(by),
        at: t(h, 0),
    })
}

fn acknowledged(by: &str, h: u32) -> TaskEvent {
    TaskEvent::MaintenanceTaskAcknowledged {
        task_id: id("T1"),
        machine_id: id("M1"),
        by: id(by),
        at: t(h, 0),
    }
}

#[test]
fn an_open_task_is_acknowledged_once() {
    framework()
        .given(vec![scheduled()])
        .when(acknowledge_cmd("anna", 7))
        .then_expect_events(vec![acknowledged("anna", 7)]);
    framework()
        .given(vec![scheduled(), started()])
        .when(acknowledge_cmd("anna", 7))
        .then_expect_events(vec![acknowledged("anna", 7)]);
    // Twice: nothing more; the first acknowledgement stands, whoever asks again.
    framework()
        .given(vec![scheduled(), acknowledged("anna", 7)])
        .when(acknowledge_cmd("ben", 8))
        .then_expect_events(vec![]);
    let task = MaintenanceTask::replay([scheduled(), acknowledged("anna", 7)]);
    let task = task.task().unwrap();
    assert_eq!(task.acknowledged_by, Some(id("anna")));
    assert_eq!(task.acknowledged_at, Some(t(7, 0)));
    assert_eq!(task.status, TaskStatus::Scheduled);
}

#[test]
fn a_finished_or_missing_task_cannot_be_acknowledged() {
    for (given, status) in [
        (
            vec![scheduled(), started(), completed()],
            TaskStatus::Completed,
        ),
        (vec![scheduled(), cancelled()], TaskStatus::Cancelled),
    ] {
        framework()
            .given(given)
            .when(acknowledge_cmd("anna", 9))
            .then_expect_error(TaskError::InvalidTransition {
                action: TaskAction::Acknowledge,
                status,
            });
    }
    framework()
        .given(vec![])
        .when(acknowledge_cmd("anna", 9))
        .then_expect_error(TaskError::NotFound);
}

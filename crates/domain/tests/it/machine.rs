//! Machine: registration, states by floor time, reasons, parts, cycle time, classification.

use chrono::Duration;
use cqrs_es::test::TestFramework;
use shopfloor_domain::machine::*;
use shopfloor_domain::reason::{Loss, ReasonCategory};
use shopfloor_domain::values::CycleTime;
use shopfloor_domain::{Decide, MAX_PARTS_PER_REPORT};

use crate::support::{id, t, text};

fn framework() -> TestFramework<Machine> {
    TestFramework::with(())
}

fn ct(seconds: f64) -> CycleTime {
    CycleTime::new(seconds).unwrap()
}

fn registered() -> MachineEvent {
    MachineEvent::MachineRegistered {
        machine_id: id("M1"),
        machine_type: id("press"),
        line: id("L1"),
        ideal_cycle_time_s: ct(2.5),
        at: t(6, 0),
    }
}

fn change(
    state: MachineStatus,
    reason: Option<&str>,
    planned: Option<bool>,
    at: chrono::DateTime<chrono::Utc>,
) -> MachineCommand {
    MachineCommand::ChangeState(ChangeState {
        state,
        reason: reason.map(text),
        planned,
        at,
    })
}

fn state_event(state: MachineStatus, at: chrono::DateTime<chrono::Utc>) -> MachineEvent {
    Machine::replay([registered()])
        .decide(change(state, None, None, at))
        .unwrap()
        .remove(0)
}

fn parts_cmd(good: u64, scrap: u64, at: chrono::DateTime<chrono::Utc>) -> MachineCommand {
    MachineCommand::RecordParts(RecordParts {
        good,
        scrap,
        order_id: Some(id("PO-1")),
        at,
    })
}

fn classify(stop_at: chrono::DateTime<chrono::Utc>, code: &str) -> MachineCommand {
    MachineCommand::ClassifyStop(ClassifyStop {
        stop_at,
        reason_code: id(code),
        by: id("supervisor-sam"),
        at: t(15, 0),
    })
}

#[test]
fn register_a_machine() {
    framework()
        .given_no_previous_events()
        .when(MachineCommand::RegisterMachine(RegisterMachine {
            machine_id: id("M1"),
            machine_type: id("press"),
            line: id("L1"),
            ideal_cycle_time_s: ct(2.5),
            at: t(6, 0),
        }))
        .then_expect_events(vec![registered()]);
}

#[test]
fn register_twice_is_refused() {
    framework()
        .given(vec![registered()])
        .when(MachineCommand::RegisterMachine(RegisterMachine {
            machine_id: id("M1"),
            machine_type: id("lathe"),
            line: id("L2"),
            ideal_cycle_time_s: ct(1.0),
            at: t(7, 0),
        }))
        .then_expect_error(MachineError::AlreadyRegistered {
            machine_id: id("M1"),
        });
}

#[test]
fn every_command_to_an_unregistered_machine_is_refused() {
    let commands = vec![
        change(MachineStatus::Running, None, None, t(8, 0)),
        parts_cmd(1, 0, t(8, 0)),
        MachineCommand::ChangeIdealCycleTime(ChangeIdealCycleTime {
            ideal_cycle_time_s: ct(1.0),
            effective_from: t(8, 0),
            at: t(8, 0),
        }),
        MachineCommand::RecordMaintenancePerformed(RecordMaintenancePerformed {
            task_id: id("T1"),
            notes: None,
            at: t(8, 0),
        }),
        classify(t(8, 0), "breakdown.mechanical"),
    ];
    for command in commands {
        framework()
            .given_no_previous_events()
            .when(command)
            .then_expect_error(MachineError::NotRegistered);
    }
}

#[test]
fn a_known_reason_code_is_recorded_with_its_category_and_loss() {
    framework()
        .given(vec![registered()])
        .when(change(
            MachineStatus::Down,
            Some("breakdown.mechanical"),
            None,
            t(9, 0),
        ))
        .then_expect_events(vec![MachineEvent::MachineStateChanged {
            machine_id: id("M1"),
            state: MachineStatus::Down,
            reason: Some(text("breakdown.mechanical")),
            reason_code: Some(id("breakdown.mechanical")),
            category: Some(ReasonCategory::Unplanned),
            loss: Some(Loss::Breakdown),
            planned: false,
            at: t(9, 0),
        }]);
}

#[test]
fn a_planned_code_makes_the_state_planned_when_no_flag_is_given() {
    framework()
        .given(vec![registered()])
        .when(change(
            MachineStatus::Idle,
            Some("planned.break"),
            None,
            t(10, 0),
        ))
        .then_expect_events(vec![MachineEvent::MachineStateChanged {
            machine_id: id("M1"),
            state: MachineStatus::Idle,
            reason: Some(text("planned.break")),
            reason_code: Some(id("planned.break")),
            category: Some(ReasonCategory::Planned),
            loss: None,
            planned: true,
            at: t(10, 0),
        }]);
}

#[test]
fn free_text_is_kept_and_recorded_as_unclassified() {
    framework()
        .given(vec![registered()])
        .when(change(
            MachineStatus::Idle,
            Some("waiting for forklift"),
            Some(false),
            t(10, 0),
        ))
        .then_expect_events(vec![MachineEvent::MachineStateChanged {
            machine_id: id("M1"),
            state: MachineStatus::Idle,
            reason: Some(text("waiting for forklift")),
            reason_code: Some(id("unclassified")),
            category: Some(ReasonCategory::Unplanned),
            loss: None,
            planned: false,
            at: t(10, 0),
        }]);
}

#[test]
fn an_explicit_planned_flag_wins_and_sets_the_category_of_an_unclassified_stop() {
    framework()
        .given(vec![registered()])
        .when(change(
            MachineStatus::Idle,
            Some("lunch"),
            Some(true),
            t(12, 0),
        ))
        .then_expect_events(vec![MachineEvent::MachineStateChanged {
            machine_id: id("M1"),
            state: MachineStatus::Idle,
            reason: Some(text("lunch")),
            reason_code: Some(id("unclassified")),
            category: Some(ReasonCategory::Planned),
            loss: None,
            planned: true,
            at: t(12, 0),
        }]);
}

#[test]
fn a_stop_without_reason_is_unclassified_and_running_has_no_reason() {
    framework()
        .given(vec![registered()])
        .when(change(MachineStatus::Down, None, None, t(9, 0)))
        .then_expect_events(vec![MachineEvent::MachineStateChanged {
            machine_id: id("M1"),
            state: MachineStatus::Down,
            reason: None,
            reason_code: Some(id("unclassified")),
            category: Some(ReasonCategory::Unplanned),
            loss: None,
            planned: false,
            at: t(9, 0),
        }]);
    framework()
        .given(vec![registered()])
        .when(change(MachineStatus::Running, None, None, t(9, 0)))
        .then_expect_events(vec![MachineEvent::MachineStateChanged {
            machine_id: id("M1"),
            state: MachineStatus::Running,
            reason: None,
            reason_code: None,
            category: None,
            loss: None,
            planned: false,
            at: t(9, 0),
        }]);
}

#[test]
fn a_late_state_is_accepted_but_does_not_move_the_current_state_back() {
    let mut machine = Machine::replay([registered()]);
    machine
        .execute(change(MachineStatus::Running, None, None, t(10, 0)))
        .unwrap();
    let late = machine
        .execute(change(
            MachineStatus::Down,
            Some("small_stop.jam"),
            None,
            t(9, 0),
        ))
        .unwrap();
    assert_eq!(late.len(), 1, "the late event is recorded");
    let record = machine.machine().unwrap();
    let current = record.current.as_ref().unwrap();
    assert_eq!(current.state, MachineStatus::Running);
    assert_eq!(current.since, t(10, 0));
    // The late stop can still be classified.
    assert!(machine
        .decide(classify(t(9, 0), "breakdown.electrical"))
        .is_ok());
}

#[test]
fn run_time_accrues_from_running_intervals_in_floor_order() {
    let mut machine = Machine::replay([registered()]);
    machine
        .execute(change(MachineStatus::Running, None, None, t(8, 0)))
        .unwrap();
    machine
        .execute(change(MachineStatus::Idle, None, None, t(8, 30)))
        .unwrap();
    machine
        .execute(change(MachineStatus::Running, None, None, t(9, 0)))
        .unwrap();
    // Late: older than the current state, adds nothing.
    machine
        .execute(change(MachineStatus::Running, None, None, t(7, 0)))
        .unwrap();
    machine.execute(parts_cmd(10, 2, t(9, 5))).unwrap();
    let record = machine.machine().unwrap();
    assert_eq!(record.run_time_ms, 30 * 60 * 1000);
    assert_eq!(
        record.usage_as_of(t(9, 10)),
        MachineUsage {
            run_seconds: 40 * 60,
            cycles: 12,
        }
    );
    // A `now` before the current state's start adds nothing negative.
    assert_eq!(record.usage_as_of(t(8, 0)).run_seconds, 30 * 60);
}

#[test]
fn record_parts_carries_the_ideal_cycle_time_in_force_at_floor_time() {
    let given = vec![
        registered(),
        MachineEvent::MachineIdealCycleTimeChanged {
            machine_id: id("M1"),
            ideal_cycle_time_s: ct(2.0),
            previous_ideal_cycle_time_s: ct(2.5),
            effective_from: t(12, 0),
            at: t(11, 0),
        },
    ];
    framework()
        .given(given.clone())
        .when(parts_cmd(10, 1, t(11, 59)))
        .then_expect_events(vec![MachineEvent::MachinePartsProduced {
            scrap_reason: None,
            machine_id: id("M1"),
            good: 10,
            scrap: 1,
            order_id: Some(id("PO-1")),
            ideal_cycle_time_s: ct(2.5),
            at: t(11, 59),
        }]);
    framework()
        .given(given)
        .when(parts_cmd(10, 0, t(12, 0)))
        .then_expect_events(vec![MachineEvent::MachinePartsProduced {
            scrap_reason: None,
            machine_id: id("M1"),
            good: 10,
            scrap: 0,
            order_id: Some(id("PO-1")),
            ideal_cycle_time_s: ct(2.0),
            at: t(12, 0),
        }]);
}

#[test]
fn record_parts_of_nothing_is_a_heartbeat_that_records_nothing() {
    framework()
        .given(vec![registered()])
        .when(parts_cmd(0, 0, t(9, 0)))
        .then_expect_events(vec![]);
}

#[test]
fn record_parts_of_an_implausible_count_is_refused() {
    framework()
        .given(vec![registered()])
        .when(parts_cmd(0, MAX_PARTS_PER_REPORT + 1, t(9, 0)))
        .then_expect_error(MachineError::TooManyParts {
            max: MAX_PARTS_PER_REPORT,
        });
}

#[test]
fn change_the_ideal_cycle_time() {
    framework()
        .given(vec![registered()])
        .when(MachineCommand::ChangeIdealCycleTime(ChangeIdealCycleTime {
            ideal_cycle_time_s: ct(2.0),
            effective_from: t(12, 0),
            at: t(11, 0),
        }))
        .then_expect_events(vec![MachineEvent::MachineIdealCycleTimeChanged {
            machine_id: id("M1"),
            ideal_cycle_time_s: ct(2.0),
            previous_ideal_cycle_time_s: ct(2.5),
            effective_from: t(12, 0),
            at: t(11, 0),
        }]);
}

#[test]
fn record_maintenance_performed_once_per_task() {
    let performed = MachineEvent::MachineMaintenancePerformed {
        machine_id: id("M1"),
        task_id: id("T1"),
        notes: Some(text("bearings replaced")),
        at: t(14, 0),
    };
    let command = MachineCommand::RecordMaintenancePerformed(RecordMaintenancePerformed {
        task_id: id("T1"),
        notes: Some(text("bearings replaced")),
        at: t(14, 0),
    });
    framework()
        .given(vec![registered()])
        .when(command.clone())
        .then_expect_events(vec![performed.clone()]);
    framework()
        .given(vec![registered(), performed])
        .when(command)
        .then_expect_events(vec![]);
}

#[test]
fn classify_a_stop_keeps_the_original_and_records_the_code() {
    let stop = state_event(MachineStatus::Down, t(9, 0));
    framework()
        .given(vec![registered(), stop.clone()])
        .when(classify(t(9, 0), "breakdown.electrical"))
        .then_expect_events(vec![MachineEvent::MachineStopClassified {
            machine_id: id("M1"),
            stop_at: t(9, 0),
            state: MachineStatus::Down,
            reason_code: id("breakdown.electrical"),
            category: ReasonCategory::Unplanned,
            loss: Some(Loss::Breakdown),
            planned: false,
            by: id("supervisor-sam"),
            at: t(15, 0),
        }]);
    let mut machine = Machine::replay([registered(), stop]);
    machine
        .execute(classify(t(9, 0), "planned.maintenance"))
        .unwrap();
    let current = machine.machine().unwrap().current.clone().unwrap();
    assert_eq!(current.reason_code, Some(id("planned.maintenance")));
    assert!(current.planned);
}

#[test]
fn classify_with_an_unknown_code_is_refused() {
    framework()
        .given(vec![
            registered(),
            state_event(MachineStatus::Down, t(9, 0)),
        ])
        .when(classify(t(9, 0), "coffee"))
        .then_expect_error(MachineError::UnknownReasonCode { code: id("coffee") });
}

#[test]
fn classify_as_unclassified_is_refused() {
    framework()
        .given(vec![
            registered(),
            state_event(MachineStatus::Down, t(9, 0)),
        ])
        .when(classify(t(9, 0), "unclassified"))
        .then_expect_error(MachineError::ClassifiedAsUnclassified);
}

#[test]
fn classify_without_a_stop_at_that_time_is_refused() {
    framework()
        .given(vec![
            registered(),
            state_event(MachineStatus::Down, t(9, 0)),
        ])
        .when(classify(t(9, 1), "breakdown.mechanical"))
        .then_expect_error(MachineError::StopNotFound { stop_at: t(9, 1) });
    framework()
        .given(vec![
            registered(),
            state_event(MachineStatus::Running, t(9, 0)),
        ])
        .when(classify(t(9, 0), "breakdown.mechanical"))
        .then_expect_error(MachineError::StopNotFound { stop_at: t(9, 0) });
}

#[test]
fn only_the_latest_stops_are_kept_for_classification() {
    let mut events = vec![registered()];
    for i in 0..=MAX_TRACKED_STOPS {
        let at = t(0, 0) + Duration::minutes(i64::try_from(i).unwrap());
        events.push(state_event(MachineStatus::Idle, at));
    }
    let machine = Machine::replay(events);
    let record = machine.machine().unwrap();
    assert_eq!(record.stops.len(), MAX_TRACKED_STOPS);
    assert_eq!(record.forgotten_stops_until, Some(t(0, 0)));
    assert_eq!(
        machine.decide(classify(t(0, 0), "small_stop.jam")),
        Err(MachineError::StopTooOld { stop_at: t(0, 0) })
    );
    assert!(machine.decide(classify(t(0, 1), "small_stop.jam")).is_ok());
}

#[test]
fn machine_status_serializes_in_snake_case() {
    assert_eq!(
        serde_json::to_value([
            MachineStatus::Running,
            MachineStatus::Idle,
            MachineStatus::Down
        ])
        .unwrap(),
        serde_json::json!(["running", "idle", "down"])
    );
}

#[test]
fn a_stop_named_to_the_microsecond_is_found_when_its_event_had_nanoseconds() {
    let at = t(10, 0) + chrono::Duration::nanoseconds(123_456_789);
    let mut machine = Machine::replay([registered(), state_event(MachineStatus::Down, at)]);
    let shown = t(10, 0) + chrono::Duration::microseconds(123_456);
    let events = machine
        .execute(classify(shown, "breakdown.electrical"))
        .unwrap();
    assert!(
        matches!(&events[..], [MachineEvent::MachineStopClassified { stop_at, .. }] if *stop_at == at),
        "the event names the stop's own time: {events:?}"
    );
    let other = t(10, 0) + chrono::Duration::microseconds(123_457);
    assert!(machine
        .execute(classify(other, "breakdown.electrical"))
        .is_err());
}

fn parts_with_reason(good: u64, scrap: u64, reason: &str) -> MachineCommand {
    MachineCommand::RecordPartsWithScrapReason(RecordPartsWithScrapReason {
        parts: RecordParts {
            good,
            scrap,
            order_id: None,
            at: t(9, 0),
        },
        scrap_reason: id(reason),
    })
}

#[test]
fn record_parts_with_a_scrap_reason_records_the_catalogue_code() {
    // Matched ignoring case, recorded as the catalogue spells it.
    framework()
        .given(vec![registered()])
        .when(parts_with_reason(10, 2, "Scrap.Dimensional"))
        .then_expect_events(vec![MachineEvent::MachinePartsProduced {
            machine_id: id("M1"),
            good: 10,
            scrap: 2,
            order_id: None,
            ideal_cycle_time_s: ct(2.5),
            at: t(9, 0),
            scrap_reason: Some(id("scrap.dimensional")),
        }]);
}

#[test]
fn record_parts_with_an_unknown_scrap_reason_or_without_scrap_is_refused() {
    framework()
        .given(vec![registered()])
        .when(parts_with_reason(10, 2, "breakdown.mechanical"))
        .then_expect_error(MachineError::UnknownScrapReason {
            code: id("breakdown.mechanical"),
        });
    framework()
        .given(vec![registered()])
        .when(parts_with_reason(10, 0, "scrap.surface"))
        .then_expect_error(MachineError::ScrapReasonWithoutScrap);
}

#[test]
fn a_parts_event_without_scrap_reason_keeps_its_old_payload() {
    let old = r#"{"event_type":"MachinePartsProduced","machine_id":"M1","good":10,"scrap":1,"order_id":null,"ideal_cycle_time_s":2.5,"at":"2026-03-02T09:00:00Z"}"#;
    let event: MachineEvent = serde_json::from_str(old).unwrap();
    assert!(matches!(
        &event,
        MachineEvent::MachinePartsProduced {
            scrap_reason: None,
            ..
        }
    ));
    assert_eq!(serde_json::to_string(&event).unwrap(), old);
    let with = Machine::replay([registered()])
        .decide(parts_with_reason(1, 1, "scrap.material"))
        .unwrap();
    let json = serde_json::to_value(&with[0]).unwrap();
    assert_eq!(json["scrap_reason"], "scrap.material");
}

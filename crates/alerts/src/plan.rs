//! The pure half of alerting: machine state by floor time, whether a rule's condition holds,
//! deterministic alert ids, what each alert event delivers, and the retry schedule.
//!
//! Nothing here does I/O; the evaluator and the delivery worker look the facts up and act on
//! what these functions return.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use shopfloor_domain::alert::AlertKind;
use uuid::Uuid;

/// A machine as the evaluator sees it: the state with the latest floor time, and the event
/// that started it (the cause of the alerts it raises).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MachineRow {
    pub state: Option<String>,
    pub planned: bool,
    /// Whether the current stop has a reason code (given, or classified later).
    pub classified: bool,
    pub state_at: Option<DateTime<Utc>>,
    pub state_event_id: Option<Uuid>,
}

/// A state event of a machine.
#[derive(Debug, Clone, PartialEq)]
pub struct StateFact {
    pub state: String,
    pub planned: bool,
    pub classified: bool,
    pub at: DateTime<Utc>,
    pub event_id: Uuid,
}

fn is_stop(state: Option<&str>) -> bool {
    matches!(state, Some("down" | "idle"))
}

/// The machine after a state event, or `None` when the event changes nothing: one older (by
/// floor time) than the current state is history, not the present. A stop that goes on in the
/// same state and category (down → down with another reason) keeps its start and its cause, so
/// it raises no second alert.
pub fn on_state(row: &MachineRow, fact: &StateFact) -> Option<MachineRow> {
    if row.state_at.is_some_and(|at| fact.at < at) {
        return None;
    }
    let continues = is_stop(row.state.as_deref())
        && row.state.as_deref() == Some(fact.state.as_str())
        && row.planned == fact.planned;
    if continues {
        return Some(MachineRow {
            classified: row.classified || fact.classified,
            ..row.clone()
        });
    }
    Some(MachineRow {
        state: Some(fact.state.clone()),
        planned: fact.planned,
        classified: fact.classified,
        state_at: Some(fact.at),
        state_event_id: Some(fact.event_id),
    })
}

/// The machine after its stop at `stop_at` was classified; `None` when that is not the
/// current stop (a past stop's classification changes no alert of the present).
pub fn on_classified(
    row: &MachineRow,
    stop_at: DateTime<Utc>,
    planned: bool,
) -> Option<MachineRow> {
    (row.state_at == Some(stop_at) && is_stop(row.state.as_deref())).then(|| MachineRow {
        planned,
        classified: true,
        ..row.clone()
    })
}

/// What a machine event tells the evaluator.
#[derive(Debug, Clone, PartialEq)]
pub enum MachineFact {
    /// The machine was registered (or re-registered) on a line.
    Registered { line: Option<String> },
    /// A state event.
    State(StateFact),
    /// The stop that began at `stop_at` was classified.
    Classified {
        stop_at: DateTime<Utc>,
        planned: bool,
    },
}

/// A machine whose state a batch changed: its row afterwards, and the event that last
/// changed it (the cause of what that change resolves).
#[derive(Debug, Clone, PartialEq)]
pub struct Changed {
    pub row: MachineRow,
    pub because: Uuid,
}

/// A batch's machine facts folded, in log order, onto the rows as stored.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MachineFold {
    /// Registrations: machine → line (the last one wins).
    pub registered: BTreeMap<String, Option<String>>,
    /// Machines whose state row changed.
    pub changed: BTreeMap<String, Changed>,
    /// Every machine a state or classification event touched (changed or not): their
    /// timed rules are checked at once.
    pub touched: BTreeSet<String>,
}

/// Folds `facts` (machine, event id, fact), in log order, onto `stored` (the rows before the
/// batch; a machine missing from it has none yet).
pub fn fold_machines<'a>(
    stored: &HashMap<String, MachineRow>,
    facts: impl IntoIterator<Item = (&'a str, Uuid, MachineFact)>,
) -> MachineFold {
    let mut fold = MachineFold::default();
    for (machine, event_id, fact) in facts {
        let current = || {
            fold.changed
                .get(machine)
                .map(|c| c.row.clone())
                .or_else(|| stored.get(machine).cloned())
                .unwrap_or_default()
        };
        let next = match fact {
            MachineFact::Registered { line } => {
                fold.registered.insert(machine.to_string(), line);
                continue;
            }
            MachineFact::State(fact) => on_state(&current(), &fact),
            MachineFact::Classified { stop_at, planned } => {
                on_classified(&current(), stop_at, planned)
            }
        };
        fold.touched.insert(machine.to_string());
        if let Some(row) = next {
            let because = event_id;
            fold.changed
                .insert(machine.to_string(), Changed { row, because });
        }
    }
    fold
}

/// The kind a stored name (`machine_down`, …) stands for.
pub fn kind_of(name: &str) -> Option<AlertKind> {
    serde_json::from_value(Value::String(name.to_string())).ok()
}

/// Whether an alert of `kind` caused by `cause` still holds for the machine.
pub fn holds(kind: AlertKind, cause: &str, row: &MachineRow) -> bool {
    let same_cause = row.state_event_id.is_some_and(|id| id.to_string() == cause);
    same_cause
        && match kind {
            AlertKind::MachineDown => row.state.as_deref() == Some("down") && !row.planned,
            AlertKind::UnclassifiedStop => is_stop(row.state.as_deref()) && !row.classified,
            AlertKind::PredictiveAlert
            | AlertKind::InventoryShortage
            | AlertKind::MaintenanceOverdue
            | AlertKind::BelowReorderPoint
            | AlertKind::IngestSilent
            | AlertKind::RejectedMessages
            | AlertKind::KpiBelowTarget
            | AlertKind::SpcSignal => true,
        }
}

/// A condition rule's condition, holding now for one subject.
#[derive(Debug, Clone, PartialEq)]
pub struct Holding {
    pub rule_id: String,
    pub kind: AlertKind,
    pub severity: String,
    pub machine_id: Option<String>,
    /// The task, item, scope or source it is about.
    pub subject: Option<String>,
    /// Names this occurrence of the condition (with the rule, the alert's id).
    pub cause: String,
    /// When the condition started (floor time), where known; else when it was first seen.
    pub since: DateTime<Utc>,
}

/// An unresolved alert of a condition rule.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Unresolved {
    pub alert_id: String,
    pub rule_id: String,
    pub machine_id: Option<String>,
    pub subject: Option<String>,
}

/// What a condition check does: the conditions to raise an alert for (no unresolved alert of
/// the same rule and subject exists), and the unresolved alerts of the checked rules whose
/// condition no longer holds.
pub fn plan_conditions(
    checked: &BTreeSet<String>,
    holding: Vec<Holding>,
    unresolved: &[Unresolved],
) -> (Vec<Holding>, Vec<String>) {
    type Key<'a> = (&'a str, Option<&'a str>, Option<&'a str>);
    let open: BTreeSet<Key<'_>> = unresolved
        .iter()
        .map(|u| {
            (
                u.rule_id.as_str(),
                u.machine_id.as_deref(),
                u.subject.as_deref(),
            )
        })
        .collect();
    let held: BTreeSet<Key<'_>> = holding
        .iter()
        .map(|h| {
            (
                h.rule_id.as_str(),
                h.machine_id.as_deref(),
                h.subject.as_deref(),
            )
        })
        .collect();
    let resolve = unresolved
        .iter()
        .filter(|u| checked.contains(&u.rule_id))
        .filter(|u| {
            !held.contains(&(
                u.rule_id.as_str(),
                u.machine_id.as_deref(),
                u.subject.as_deref(),
            ))
        })
        .map(|u| u.alert_id.clone())
        .collect();
    let mut seen = BTreeSet::new();
    let raise = holding
        .iter()
        .filter(|h| {
            let key = (
                h.rule_id.as_str(),
                h.machine_id.as_deref(),
                h.subject.as_deref(),
            );
            !open.contains(&key) && seen.insert(key)
        })
        .cloned()
        .collect();
    (raise, resolve)
}

/// The alert id of a rule and the event that caused it: the same pair always names the same
/// alert, so evaluating an event again (after a restart) raises nothing twice.
pub fn alert_id(rule_id: &str, cause_event_id: &str) -> String {
    let id = Uuid::new_v5(
        &Uuid::NAMESPACE_OID,
        format!("shopfloor-alert/{rule_id}/{cause_event_id}").as_bytes(),
    );
    format!("AL-{}", id.simple())
}

/// The floor time a timed rule's threshold passes.
pub fn threshold(since: DateTime<Utc>, after_minutes: f64) -> DateTime<Utc> {
    let millis = (after_minutes * 60_000.0).round() as i64;
    since + chrono::TimeDelta::milliseconds(millis)
}

/// What a stage of an alert tells whom: `(channel list, webhooks only)`. The rule's channels
/// (list 0) hear of the raise and, webhooks only, of each later step; the escalation's
/// channels (list 1) hear of the escalation.
pub fn audience(stage: &str) -> Option<(i32, bool)> {
    match stage {
        "raised" => Some((0, false)),
        "acknowledged" | "resolved" => Some((0, true)),
        "escalated" => Some((1, false)),
        _ => None,
    }
}

/// The alert as the channels see it.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertFacts {
    pub alert_id: String,
    pub rule_id: String,
    pub kind: String,
    pub severity: String,
    pub machine_id: Option<String>,
    pub subject: Option<String>,
    pub state: String,
    pub since: DateTime<Utc>,
    pub raised_at: DateTime<Utc>,
    pub acknowledged_by: Option<String>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub escalations: i32,
}

/// The JSON body of a delivery (a webhook's body; an email's facts).
pub fn payload(facts: &AlertFacts, stage: &str, event_id: Uuid, at: DateTime<Utc>) -> Value {
    json!({
        "alert_id": facts.alert_id,
        "rule_id": facts.rule_id,
        "kind": facts.kind,
        "severity": facts.severity,
        "machine_id": facts.machine_id,
        "subject": facts.subject,
        "state": facts.state,
        "stage": stage,
        "since": facts.since,
        "raised_at": facts.raised_at,
        "acknowledged_by": facts.acknowledged_by,
        "resolved_at": facts.resolved_at,
        "escalation_level": facts.escalations,
        "event_id": event_id,
        "at": at,
    })
}

/// When a failed delivery is tried again: `base × 2^(attempts − 1)`, at most `max`.
pub fn backoff(attempts: i32, base: Duration, max: Duration) -> Duration {
    let exp = attempts.clamp(1, 30) as u32 - 1;
    base.saturating_mul(1u32 << exp.min(20)).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap()
    }

    fn fact(state: &str, planned: bool, at: i64, id: u128) -> StateFact {
        StateFact {
            state: state.into(),
            planned,
            classified: true,
            at: t(at),
            event_id: Uuid::from_u128(id),
        }
    }

    #[test]
    fn a_stop_that_goes_on_keeps_its_cause_and_a_late_event_changes_nothing() {
        let row = on_state(&MachineRow::default(), &fact("down", false, 10, 1)).unwrap();
        let again = on_state(&row, &fact("down", false, 20, 2)).unwrap();
        assert_eq!(again.state_event_id, Some(Uuid::from_u128(1)));
        assert_eq!(again.state_at, Some(t(10)));
        assert!(on_state(&again, &fact("running", false, 5, 3)).is_none());
        let up = on_state(&again, &fact("running", false, 30, 4)).unwrap();
        assert!(!holds(
            AlertKind::MachineDown,
            &Uuid::from_u128(1).to_string(),
            &up
        ));
    }

    #[test]
    fn reclassifying_the_current_stop_as_planned_clears_machine_down() {
        let row = on_state(&MachineRow::default(), &fact("down", false, 10, 1)).unwrap();
        let cause = Uuid::from_u128(1).to_string();
        assert!(holds(AlertKind::MachineDown, &cause, &row));
        assert!(on_classified(&row, t(9), true).is_none());
        let planned = on_classified(&row, t(10), true).unwrap();
        assert!(!holds(AlertKind::MachineDown, &cause, &planned));
    }

    #[test]
    fn a_batch_folds_in_log_order_and_keeps_the_last_change_per_machine() {
        let mut stored = HashMap::new();
        stored.insert(
            "M1".to_string(),
            on_state(&MachineRow::default(), &fact("down", false, 10, 1)).unwrap(),
        );
        let facts = vec![
            (
                "M1",
                Uuid::from_u128(2),
                MachineFact::State(fact("running", false, 20, 2)),
            ),
            (
                "M2",
                Uuid::from_u128(3),
                MachineFact::Registered {
                    line: Some("L".into()),
                },
            ),
            (
                "M1",
                Uuid::from_u128(4),
                MachineFact::State(fact("down", false, 30, 4)),
            ),
            // A machine with no row yet.
            (
                "M3",
                Uuid::from_u128(5),
                MachineFact::State(fact("down", false, 5, 5)),
            ),
            // Older than M1's current state (30): history, no change.
            (
                "M1",
                Uuid::from_u128(6),
                MachineFact::State(fact("down", false, 15, 6)),
            ),
        ];
        let fold = fold_machines(&stored, facts);
        let m1 = &fold.changed["M1"];
        assert_eq!(m1.because, Uuid::from_u128(4));
        assert_eq!(m1.row.state_event_id, Some(Uuid::from_u128(4)));
        assert_eq!(m1.row.state_at, Some(t(30)));
        assert_eq!(fold.registered["M2"], Some("L".to_string()));
        assert!(fold.changed.contains_key("M3"));
        assert!(!fold.touched.contains("M2"));
        assert_eq!(fold.touched.len(), 2);
    }

    fn holding(rule: &str, subject: &str, cause: &str) -> Holding {
        Holding {
            rule_id: rule.into(),
            kind: AlertKind::MaintenanceOverdue,
            severity: "critical".into(),
            machine_id: None,
            subject: Some(subject.into()),
            cause: cause.into(),
            since: t(0),
        }
    }

    fn unresolved(id: &str, rule: &str, subject: &str) -> Unresolved {
        Unresolved {
            alert_id: id.into(),
            rule_id: rule.into(),
            machine_id: None,
            subject: Some(subject.into()),
        }
    }

    #[test]
    fn a_condition_raises_once_per_subject_and_resolves_when_it_stops_holding() {
        let checked: BTreeSet<String> = ["R1".to_string()].into();
        let holding = vec![
            holding("R1", "T-1", "a"),
            holding("R1", "T-2", "b"),
            holding("R1", "T-2", "b"),
        ];
        // T-1 already has an alert; T-3's condition cleared; R2 was not checked this time.
        let open = vec![
            unresolved("AL-1", "R1", "T-1"),
            unresolved("AL-3", "R1", "T-3"),
            unresolved("AL-9", "R2", "T-9"),
        ];
        let (raise, resolve) = plan_conditions(&checked, holding, &open);
        assert_eq!(raise.len(), 1);
        assert_eq!(raise[0].subject.as_deref(), Some("T-2"));
        assert_eq!(resolve, vec!["AL-3".to_string()]);
    }

    #[test]
    fn alert_ids_are_deterministic_and_backoff_doubles_up_to_its_cap() {
        assert_eq!(alert_id("R", "E"), alert_id("R", "E"));
        assert_ne!(alert_id("R", "E"), alert_id("R", "F"));
        let (b, m) = (Duration::from_millis(100), Duration::from_secs(1));
        assert_eq!(backoff(1, b, m), Duration::from_millis(100));
        assert_eq!(backoff(3, b, m), Duration::from_millis(400));
        assert_eq!(backoff(9, b, m), m);
        assert_eq!(threshold(t(0), 1.5), t(90));
    }
}

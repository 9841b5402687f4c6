//! The noise filter of one machine: debounce, duplicates, counters to deltas, no signal.
//!
//! Pure and time-injected: every function takes the floor time of what it sees and
//! the wall-clock `now`, and returns the commands to issue ([`Action`]) plus what it
//! filtered (counted in `/metrics`) or refused (set aside). The state
//! ([`MachineState`]) is serializable: the engine stores it in the same transaction
//! as the events it led to, so a restart resumes exactly (ADR 0007).
//!
//! # Debounce (minimum dwell)
//! A new state is held *pending* until it has lasted `min_dwell`: either a later
//! message shows it lasted that long in floor time, or `min_dwell` of wall time
//! passes with nothing new ([`MachineState::tick`]). A pending state undone within
//! the dwell (a flap) is dropped; one replaced within it by a third state is dropped
//! for the third. Late states (older than the last recorded one) and Sparkplug
//! historical ones bypass the debounce: the domain places them by floor time.
//!
//! # Counters
//! Deltas pass through. Running totals become deltas against the last total: a
//! lower total is a rollover when wrapping at the counter's width gives a plausible
//! count (≤ `max_parts_per_message`), else a reset to zero (the delta is the new
//! total). Each counter has its own width (a Sparkplug datatype is per metric). The
//! first total only sets the baseline. A Sparkplug historical total (store and
//! forward) newer than the last one counts at its own time, like any total; a total
//! older than the last one (out of order) is ignored and counted as `late_counter`.
//!
//! # No signal
//! Silent for `no_signal_timeout` (wall time): `down`, reason `small_stop.no_signal`,
//! unplanned. The next message brings the machine back: a state message says where
//! it is; anything else restores the state it was in before. A Sparkplug birth
//! re-sends each metric with the time it last changed, which can be older than the
//! loss of signal: a birth restores the state it reports from the birth on.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use shopfloor_domain::machine::MachineStatus;
use shopfloor_domain::reason::NO_SIGNAL;
use shopfloor_domain::values::{OrderId, ReasonCode};

use crate::config::MachineSettings;
use crate::message::{CountReport, Counter, StateReport};
use crate::predictive::Baseline;

/// A command the filter decided on, with its deterministic command id.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    ChangeState {
        report: StateReport,
        command_id: String,
    },
    RecordParts {
        good: u64,
        scrap: u64,
        at: DateTime<Utc>,
        command_id: String,
        order_id: Option<OrderId>,
        /// Only when the message counts scrap.
        scrap_reason: Option<ReasonCode>,
    },
}

/// A state waiting out its dwell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pending {
    pub report: StateReport,
    pub command_id: String,
    /// Wall-clock arrival: the dwell also ends when this much time passes.
    pub arrived: DateTime<Utc>,
}

/// The machine fell silent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignalLost {
    pub since: DateTime<Utc>,
    /// The state to restore when it speaks again (if not by a state message).
    pub previous: Option<StateReport>,
}

/// The last running total of one counter.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CounterState {
    pub last: u64,
    pub at: DateTime<Utc>,
}

/// Everything the ingest remembers about one machine.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MachineState {
    /// The last state recorded (sent to the domain).
    pub last_state: Option<StateReport>,
    pub pending: Option<Pending>,
    /// Wall-clock arrival of the last accepted message.
    pub last_seen: Option<DateTime<Utc>>,
    pub signal_lost: Option<SignalLost>,
    pub counters: BTreeMap<String, CounterState>,
    /// Predictive baselines by sensor.
    pub baselines: BTreeMap<String, Baseline>,
    /// The message id of the last accepted message (names the no-signal command).
    pub last_message: Option<String>,
}

/// What the filter did with one observation.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Outcome {
    pub actions: Vec<Action>,
    /// Why a message is set aside.
    pub rejections: Vec<String>,
    /// Filtered on purpose (metric label values): `debounced`, `duplicate`, ...
    pub filtered: Vec<&'static str>,
}

fn no_signal_report(at: DateTime<Utc>) -> StateReport {
    StateReport {
        state: MachineStatus::Down,
        reason: Some(NO_SIGNAL.to_string()),
        planned: Some(false),
        at,
        birth_at: None,
    }
}

impl MachineState {
    /// The state the machine is in as far as the ingest knows (pending included).
    pub fn effective_state(&self) -> Option<&StateReport> {
        self.pending
            .as_ref()
            .map(|p| &p.report)
            .or(self.last_state.as_ref())
    }

    /// Notes that a message arrived; if the machine had fallen silent, it is back.
    /// `is_state`: the message itself says the state (nothing to restore).
    pub fn touch(
        &mut self,
        message_id: &str,
        arrived: DateTime<Utc>,
        floor_time: DateTime<Utc>,
        is_state: bool,
        out: &mut Outcome,
    ) {
        self.last_seen = Some(self.last_seen.map_or(arrived, |t| t.max(arrived)));
        self.last_message = Some(message_id.to_string());
        if is_state {
            // The state message says where the machine is ([`Self::observe_state`]
            // takes the loss of signal).
            return;
        }
        if let Some(lost) = self.signal_lost.take() {
            if let Some(previous) = lost.previous {
                let report = StateReport {
                    at: floor_time.max(lost.since),
                    ..previous
                };
                self.last_state = Some(report.clone());
                out.actions.push(Action::ChangeState {
                    report,
                    command_id: format!("{message_id}:signal-back"),
                });
            }
        }
    }

    /// A state message.
    pub fn observe_state(
        &mut self,
        settings: &MachineSettings,
        report: StateReport,
        historical: bool,
        message_id: &str,
        arrived: DateTime<Utc>,
        out: &mut Outcome,
    ) {
        let command_id = format!("{message_id}:state");
        let lost = self.signal_lost.take();
        let report = match (&lost, report.birth_at) {
            (Some(lost), Some(birth_at)) if report.at < lost.since => {
                out.filtered.push("birth_restores_state");
                StateReport {
                    at: birth_at.max(lost.since),
                    ..report
                }
            }
            _ => report,
        };
        let late = historical
            || self.last_state.as_ref().is_some_and(|l| report.at < l.at)
            || self
                .pending
                .as_ref()
                .is_some_and(|p| report.at < p.report.at);
        if late {
            out.filtered.push("late_state");
            out.actions.push(Action::ChangeState { report, command_id });
            return;
        }
        let dwell = settings.min_dwell();
        if let Some(pending) = self.pending.take() {
            if report.at - pending.report.at >= dwell {
                self.commit_pending(pending, out);
            } else if self.last_state.as_ref().is_some_and(|l| l.same_as(&report)) {
                out.filtered.push("debounced");
                return;
            } else if pending.report.same_as(&report) {
                self.pending = Some(pending);
                out.filtered.push("duplicate");
                return;
            } else {
                out.filtered.push("debounced");
                self.pending = Some(Pending {
                    report,
                    command_id,
                    arrived,
                });
                return;
            }
        }
        if self.last_state.as_ref().is_some_and(|l| l.same_as(&report)) {
            out.filtered.push("duplicate");
            return;
        }
        if dwell <= chrono::Duration::zero() {
            self.last_state = Some(report.clone());
            out.actions.push(Action::ChangeState { report, command_id });
        } else {
            self.pending = Some(Pending {
                report,
                command_id,
                arrived,
            });
        }
    }

    fn commit_pending(&mut self, pending: Pending, out: &mut Outcome) {
        self.last_state = Some(pending.report.clone());
        out.actions.push(Action::ChangeState {
            report: pending.report,
            command_id: pending.command_id,
        });
    }

    /// A count message.
    pub fn observe_count(
        &mut self,
        settings: &MachineSettings,
        report: &CountReport,
        historical: bool,
        message_id: &str,
        out: &mut Outcome,
    ) {
        let mut delta =
            |name: &str, counter: Option<Counter>, bits: Option<u32>, out: &mut Outcome| -> u64 {
                match counter {
                    None => 0,
                    Some(Counter::Delta(v)) => v,
                    Some(Counter::Total(v)) => {
                        let previous = self.counters.get(name).copied();
                        match previous {
                            Some(p) if report.at < p.at => {
                                out.filtered.push("late_counter");
                                return 0;
                            }
                            _ if historical => out.filtered.push("historical_counter"),
                            _ => {}
                        }
                        self.counters.insert(
                            name.to_string(),
                            CounterState {
                                last: v,
                                at: report.at,
                            },
                        );
                        let Some(p) = previous else {
                            out.filtered.push("counter_baseline");
                            return 0;
                        };
                        if v >= p.last {
                            return v - p.last;
                        }
                        let max = match bits {
                            Some(16) => u64::from(u16::MAX),
                            Some(32) => u64::from(u32::MAX),
                            Some(_) => u64::MAX,
                            None => settings.counter_max(),
                        };
                        if p.last <= max {
                            let wrapped = (max - p.last).saturating_add(v).saturating_add(1);
                            if wrapped <= settings.max_parts_per_message {
                                out.filtered.push("counter_rollover");
                                return wrapped;
                            }
                        }
                        out.filtered.push("counter_reset");
                        v
                    }
                }
            };
        let good = delta("good", report.good, report.good_bits, out);
        let scrap = delta("scrap", report.scrap, report.scrap_bits, out);
        let total = good.saturating_add(scrap);
        if total > settings.max_parts_per_message {
            out.rejections.push(format!(
                "impossible count: {total} parts in one message (at most {})",
                settings.max_parts_per_message
            ));
            return;
        }
        if total == 0 {
            out.filtered.push("zero_count");
            return;
        }
        out.actions.push(Action::RecordParts {
            good,
            scrap,
            order_id: report.order_id.clone(),
            scrap_reason: report.scrap_reason.clone().filter(|_| scrap > 0),
            at: report.at,
            command_id: match &report.tag {
                None => format!("{message_id}:parts"),
                Some(tag) => format!("{message_id}:parts:{tag}"),
            },
        });
    }

    /// The edge node or device died: the machine's signal is lost now.
    pub fn lose_signal(&mut self, at: DateTime<Utc>, command_id: String, out: &mut Outcome) {
        if self.signal_lost.is_some() {
            out.filtered.push("duplicate");
            return;
        }
        if let Some(pending) = self.pending.take() {
            self.commit_pending(pending, out);
        }
        let at = self.last_state.as_ref().map_or(at, |l| l.at.max(at));
        let report = no_signal_report(at);
        self.signal_lost = Some(SignalLost {
            since: at,
            previous: self.last_state.clone(),
        });
        self.last_state = Some(report.clone());
        out.actions.push(Action::ChangeState { report, command_id });
    }

    /// Timers: a pending state that waited out its dwell is recorded; a machine
    /// silent for longer than its timeout loses its signal.
    pub fn tick(
        &mut self,
        settings: &MachineSettings,
        machine_id: &str,
        now: DateTime<Utc>,
        out: &mut Outcome,
    ) {
        if let Some(pending) = self.pending.take() {
            if pending.arrived + settings.min_dwell() <= now {
                self.commit_pending(pending, out);
            } else {
                self.pending = Some(pending);
            }
        }
        if settings.no_signal_timeout_s == 0 || self.signal_lost.is_some() {
            return;
        }
        let timeout = chrono::Duration::seconds(
            i64::try_from(settings.no_signal_timeout_s).unwrap_or(i64::MAX / 4),
        );
        if let Some(seen) = self.last_seen {
            if seen + timeout <= now {
                let command_id = format!(
                    "no-signal:{machine_id}:{}",
                    self.last_message.as_deref().unwrap_or("-")
                );
                self.lose_signal(now, command_id, out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn t(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + s, 0)
            .single()
            .expect("time")
    }

    fn settings(dwell_ms: u64, bits: u32, max_parts: u64) -> MachineSettings {
        MachineSettings {
            min_dwell_ms: dwell_ms,
            counter_bits: bits,
            max_parts_per_message: max_parts,
            no_signal_timeout_s: 30,
            ..Default::default()
        }
    }

    fn total(v: u64, at: i64) -> CountReport {
        CountReport {
            good: Some(Counter::Total(v)),
            scrap: None,
            good_bits: None,
            scrap_bits: None,
            at: t(at),
            tag: None,
            order_id: None,
            scrap_reason: None,
        }
    }

    fn parts(out: &Outcome) -> Vec<u64> {
        out.actions
            .iter()
            .filter_map(|a| match a {
                Action::RecordParts { good, .. } => Some(*good),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_16_bit_counter_rolls_over_and_a_reset_counts_from_zero() {
        let s = settings(0, 16, 1000);
        let mut m = MachineState::default();
        let mut out = Outcome::default();
        for (i, v) in [65_530, 65_535, 3, 900, 5].into_iter().enumerate() {
            m.observe_count(&s, &total(v, i as i64), false, &format!("m{i}"), &mut out);
        }
        assert_eq!(parts(&out), [5, 4, 897, 5]);
        assert!(out.filtered.contains(&"counter_rollover"));
        assert!(out.filtered.contains(&"counter_reset"));
    }

    #[test]
    fn the_dwell_also_ends_in_wall_time_and_a_silent_machine_loses_its_signal() {
        let s = settings(1000, 32, 1000);
        let mut m = MachineState::default();
        let mut out = Outcome::default();
        let report = StateReport {
            state: MachineStatus::Running,
            reason: None,
            planned: None,
            at: t(0),
            birth_at: None,
        };
        m.touch("a", t(0), t(0), true, &mut out);
        m.observe_state(&s, report, false, "a", t(0), &mut out);
        assert!(out.actions.is_empty());
        m.tick(
            &s,
            "m1",
            t(0) + chrono::Duration::milliseconds(999),
            &mut out,
        );
        assert!(out.actions.is_empty());
        m.tick(&s, "m1", t(1), &mut out);
        assert_eq!(out.actions.len(), 1);
        m.tick(&s, "m1", t(31), &mut out);
        assert_eq!(out.actions.len(), 2);
        let Action::ChangeState { report, .. } = &out.actions[1] else {
            panic!("a state change");
        };
        assert_eq!(report.reason.as_deref(), Some(NO_SIGNAL));
        m.tick(&s, "m1", t(90), &mut out);
        assert_eq!(
            out.actions.len(),
            2,
            "one no-signal event, not one per tick"
        );
    }

    #[test]
    fn a_birth_restores_its_state_after_a_loss_of_signal_and_a_plain_late_state_does_not() {
        let s = settings(0, 32, 1000);
        let running = |at: i64, birth: Option<i64>| StateReport {
            state: MachineStatus::Running,
            reason: None,
            planned: None,
            at: t(at),
            birth_at: birth.map(t),
        };
        for (birth, expected_at) in [(Some(20), t(20)), (None, t(0))] {
            let mut m = MachineState::default();
            let mut out = Outcome::default();
            m.touch("a", t(0), t(0), true, &mut out);
            m.observe_state(&s, running(0, None), false, "a", t(0), &mut out);
            m.lose_signal(t(10), "lost".into(), &mut out);
            m.touch("b", t(20), t(0), true, &mut out);
            m.observe_state(&s, running(0, birth), false, "b", t(20), &mut out);
            let Some(Action::ChangeState { report, .. }) = out.actions.last() else {
                panic!("a state change");
            };
            assert_eq!(
                (report.state, report.at),
                (MachineStatus::Running, expected_at)
            );
            assert_eq!(m.signal_lost, None);
        }
    }

    #[test]
    fn each_counter_rolls_over_at_its_own_width_and_historical_totals_count_in_order() {
        let s = settings(0, 64, 1000);
        let mut m = MachineState::default();
        let mut out = Outcome::default();
        let report = |good, scrap, at: i64| CountReport {
            good: Some(Counter::Total(good)),
            scrap: Some(Counter::Total(scrap)),
            good_bits: Some(64),
            scrap_bits: Some(32),
            at: t(at),
            tag: None,
            order_id: None,
            scrap_reason: None,
        };
        m.observe_count(
            &s,
            &report(1_000_000, 4_294_967_290, 0),
            false,
            "a",
            &mut out,
        );
        m.observe_count(&s, &report(1_000_050, 3, 1), true, "b", &mut out);
        m.observe_count(&s, &report(1_000_040, 2, 0), true, "c", &mut out);
        let got: Vec<(u64, u64)> = out
            .actions
            .iter()
            .filter_map(|a| match a {
                Action::RecordParts { good, scrap, .. } => Some((*good, *scrap)),
                _ => None,
            })
            .collect();
        assert_eq!(
            got,
            [(50, 9)],
            "a historical total in order counts; an older one not"
        );
        assert!(out.filtered.contains(&"late_counter"));
    }

    proptest! {
        /// Whatever the totals, no delta exceeds the per-message bound, and a
        /// monotonic counter's deltas add up to its growth.
        #[test]
        fn deltas_are_bounded_and_exact_for_monotonic_counters(steps in proptest::collection::vec(0u64..500, 1..60), start in 0u64..70_000) {
            let s = settings(0, 16, 1000);
            let mut m = MachineState::default();
            let mut out = Outcome::default();
            let mut v = start % 65_536;
            m.observe_count(&s, &total(v, 0), false, "first", &mut out);
            let mut grown = 0;
            for (i, step) in steps.iter().enumerate() {
                grown += step;
                v = (v + step) % 65_536;
                m.observe_count(&s, &total(v, i as i64 + 1), false, &format!("m{i}"), &mut out);
            }
            prop_assert!(parts(&out).iter().all(|p| *p <= 1000));
            prop_assert_eq!(parts(&out).iter().sum::<u64>(), grown);
        }
    }
}

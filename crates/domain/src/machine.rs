//! Machines: registration, states and parts by floor time, ideal cycle time, stop
//! classification and the usage counters that preventive maintenance runs on.
//!
//! Stream type `machine`, one stream per [`MachineId`]. Commands to an unregistered machine are
//! refused ([`MachineError::NotRegistered`]), as is a second registration.
//!
//! # Floor time
//! Every state and parts event carries `at`, when it happened on the floor, which may be long
//! before it arrives. A late event is accepted (it is a fact, and the read side orders by floor
//! time) but never moves the *current* state backwards: the current state is the one with the
//! latest floor time seen.
//!
//! # Reasons
//! The free-text `reason` of a state change is resolved against the [`ReasonCatalogue`] in
//! force (the plant's, [`Machine::decide_with`]; the built-in one by default): a known code is recorded as itself; unknown text, or no reason on an
//! idle/down state, is recorded as `unclassified` with the raw text kept in `reason`. The
//! `planned` flag is the one given; when none is given it is the code's own (`planned.*` codes are
//! planned). `ClassifyStop` later gives a stop a real code through a separate
//! `MachineStopClassified` event: the original state event stays in history untouched.
//!
//! # What the aggregate remembers (it is snapshotted; a busy machine emits millions of events)
//! - The stop timestamps that `ClassifyStop` may name: the most recent [`MAX_TRACKED_STOPS`]
//!   idle/down state events by floor time, in a `BTreeMap`. Older stops are forgotten, and
//!   classifying one is refused with [`MachineError::StopTooOld`] rather than "not found".
//!   Keeping all of them would make every snapshot grow with the machine's whole history;
//!   classification is a task of the same shift or week, so a bounded window suffices.
//! - Ideal cycle time changes (rare) by `effective_from`, so each parts event carries the ideal
//!   cycle time in force at its floor time.
//! - Usage counters for preventive policies: cumulative cycles (good + scrap of every report,
//!   exact whatever the arrival order) and cumulative run time. Run time is accrued when a state
//!   event arrives in floor order and the state it ends was `running`; a late event (older than
//!   the current state) adds nothing. So run time is exact for in-order streams and may fall
//!   short for late ones: good enough to trigger maintenance, while KPIs are computed exactly by
//!   the read side from the events themselves.

use std::collections::BTreeMap;

use chrono::{DateTime, SubsecRound, Utc};
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use crate::reason::{
    scrap_reason, Loss, ReasonCatalogue, ReasonCategory, ReasonDefinition, UNCLASSIFIED,
};
use crate::values::{
    Actor, CycleTime, LineId, MachineId, MachineType, OrderId, ReasonCode, TaskId, Text,
};
use crate::{Decide, MAX_PARTS_PER_REPORT};

/// How many recent stops (idle/down state events) a machine keeps for classification.
pub const MAX_TRACKED_STOPS: usize = 1000;

/// The state of a machine on the floor; serialized in snake_case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MachineStatus {
    Running,
    Idle,
    Down,
}

/// Registers a new machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegisterMachine {
    pub machine_id: MachineId,
    pub machine_type: MachineType,
    pub line: LineId,
    pub ideal_cycle_time_s: CycleTime,
    pub at: DateTime<Utc>,
}

/// Records that the machine entered `state` at floor time `at`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeState {
    pub state: MachineStatus,
    /// Free text as sent by the floor; a known reason code is recognised as such.
    pub reason: Option<Text>,
    /// `None`: take the planned flag of the reason code (false when unknown).
    pub planned: Option<bool>,
    pub at: DateTime<Utc>,
}

/// Records parts made at floor time `at`, optionally for an order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordParts {
    pub good: u64,
    pub scrap: u64,
    pub order_id: Option<OrderId>,
    pub at: DateTime<Utc>,
}

/// Records parts like [`RecordParts`], with the reason the scrap among them was rejected: a
/// code of the built-in scrap reasons ([`crate::reason::scrap_reasons`], ADR 0050).
///
/// A command of its own rather than a field of [`RecordParts`], so that every existing caller
/// of `RecordParts` keeps building unchanged; both emit `MachinePartsProduced`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordPartsWithScrapReason {
    pub parts: RecordParts,
    pub scrap_reason: ReasonCode,
}

/// Sets a new ideal cycle time from `effective_from` on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeIdealCycleTime {
    pub ideal_cycle_time_s: CycleTime,
    pub effective_from: DateTime<Utc>,
    pub at: DateTime<Utc>,
}

/// Records that a maintenance task was done on the machine (issued by the process manager).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordMaintenancePerformed {
    pub task_id: TaskId,
    pub notes: Option<Text>,
    pub at: DateTime<Utc>,
}

/// Gives the stop that began at `stop_at` (the floor time of an idle/down state event) a
/// catalogue reason code.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassifyStop {
    pub stop_at: DateTime<Utc>,
    pub reason_code: ReasonCode,
    pub by: Actor,
    pub at: DateTime<Utc>,
}

/// Every command a machine accepts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum MachineCommand {
    RegisterMachine(RegisterMachine),
    ChangeState(ChangeState),
    RecordParts(RecordParts),
    RecordPartsWithScrapReason(RecordPartsWithScrapReason),
    ChangeIdealCycleTime(ChangeIdealCycleTime),
    RecordMaintenancePerformed(RecordMaintenancePerformed),
    ClassifyStop(ClassifyStop),
}

/// What happened to a machine. Serialized with an `event_type` tag equal to the variant name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event_type")]
pub enum MachineEvent {
    MachineRegistered {
        machine_id: MachineId,
        machine_type: MachineType,
        line: LineId,
        ideal_cycle_time_s: CycleTime,
        at: DateTime<Utc>,
    },
    MachineStateChanged {
        machine_id: MachineId,
        state: MachineStatus,
        /// The raw reason as given.
        reason: Option<Text>,
        /// The resolved code: `None` only for a running state without reason.
        reason_code: Option<ReasonCode>,
        category: Option<ReasonCategory>,
        loss: Option<Loss>,
        /// Whether this state is excluded from planned production time.
        planned: bool,
        at: DateTime<Utc>,
    },
    MachinePartsProduced {
        machine_id: MachineId,
        good: u64,
        scrap: u64,
        order_id: Option<OrderId>,
        /// The ideal cycle time in force at `at`, for the performance KPI.
        ideal_cycle_time_s: CycleTime,
        at: DateTime<Utc>,
        /// Why the scrap was rejected (a scrap reason code, ADR 0050). Absent from the payload
        /// when not given, so events written before the field existed keep their bytes.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        scrap_reason: Option<ReasonCode>,
    },
    MachineIdealCycleTimeChanged {
        machine_id: MachineId,
        ideal_cycle_time_s: CycleTime,
        /// The value that was in force at `effective_from` before this change.
        previous_ideal_cycle_time_s: CycleTime,
        effective_from: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    MachineMaintenancePerformed {
        machine_id: MachineId,
        task_id: TaskId,
        notes: Option<Text>,
        at: DateTime<Utc>,
    },
    MachineStopClassified {
        machine_id: MachineId,
        /// The floor time of the state event classified.
        stop_at: DateTime<Utc>,
        /// The state of that event (idle or down).
        state: MachineStatus,
        reason_code: ReasonCode,
        category: ReasonCategory,
        loss: Option<Loss>,
        planned: bool,
        by: Actor,
        at: DateTime<Utc>,
    },
}

impl DomainEvent for MachineEvent {
    fn event_type(&self) -> String {
        match self {
            Self::MachineRegistered { .. } => "MachineRegistered",
            Self::MachineStateChanged { .. } => "MachineStateChanged",
            Self::MachinePartsProduced { .. } => "MachinePartsProduced",
            Self::MachineIdealCycleTimeChanged { .. } => "MachineIdealCycleTimeChanged",
            Self::MachineMaintenancePerformed { .. } => "MachineMaintenancePerformed",
            Self::MachineStopClassified { .. } => "MachineStopClassified",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        String::from("1")
    }
}

/// Why a command on a machine was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MachineError {
    #[error("machine {machine_id} is already registered")]
    AlreadyRegistered { machine_id: MachineId },
    #[error("the machine is not registered")]
    NotRegistered,
    #[error("a parts report may count at most {max} parts")]
    TooManyParts { max: u64 },
    #[error("{code} is not a known scrap reason code (see /api/v1/scrap-reasons)")]
    UnknownScrapReason { code: ReasonCode },
    #[error("a scrap reason is given but the report has no scrap")]
    ScrapReasonWithoutScrap,
    #[error("{code} is not a known reason code")]
    UnknownReasonCode { code: ReasonCode },
    #[error("a stop must be classified with a real reason code, not as unclassified")]
    ClassifiedAsUnclassified,
    #[error("the machine has no idle or down state at {stop_at}")]
    StopNotFound { stop_at: DateTime<Utc> },
    #[error("the stop at {stop_at} is too old to classify: only the latest {MAX_TRACKED_STOPS} stops are kept")]
    StopTooOld { stop_at: DateTime<Utc> },
}

/// The state the machine is in now (by latest floor time).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CurrentState {
    pub state: MachineStatus,
    pub reason_code: Option<ReasonCode>,
    pub planned: bool,
    pub since: DateTime<Utc>,
}

/// A stop kept for classification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StopRecord {
    pub state: MachineStatus,
    pub reason_code: Option<ReasonCode>,
    pub planned: bool,
}

/// The last maintenance performed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MaintenanceRecord {
    pub task_id: TaskId,
    pub at: DateTime<Utc>,
}

/// Usage counters as preventive-maintenance policies read them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MachineUsage {
    pub run_seconds: u64,
    pub cycles: u64,
}

/// The state of a registered machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MachineRecord {
    pub machine_id: MachineId,
    pub machine_type: MachineType,
    pub line: LineId,
    pub registered_at: DateTime<Utc>,
    /// The ideal cycle time given at registration: in force before any change.
    pub base_ideal_cycle_time_s: CycleTime,
    /// Later ideal cycle times by `effective_from`.
    pub ideal_cycle_time_changes: BTreeMap<DateTime<Utc>, CycleTime>,
    pub current: Option<CurrentState>,
    /// Accrued running time in milliseconds (see the module docs for late events).
    pub run_time_ms: u64,
    pub good_count: u64,
    pub scrap_count: u64,
    pub last_maintenance: Option<MaintenanceRecord>,
    /// Recent stops by floor time, at most [`MAX_TRACKED_STOPS`].
    pub stops: BTreeMap<DateTime<Utc>, StopRecord>,
    /// The latest floor time of a stop dropped from `stops`.
    pub forgotten_stops_until: Option<DateTime<Utc>>,
}

impl MachineRecord {
    /// The ideal cycle time in force at floor time `at`.
    pub fn ideal_cycle_time_at(&self, at: DateTime<Utc>) -> CycleTime {
        self.ideal_cycle_time_changes
            .range(..=at)
            .next_back()
            .map_or(self.base_ideal_cycle_time_s, |(_, value)| *value)
    }

    /// The latest ideal cycle time.
    pub fn ideal_cycle_time(&self) -> CycleTime {
        self.ideal_cycle_time_changes
            .values()
            .next_back()
            .copied()
            .unwrap_or(self.base_ideal_cycle_time_s)
    }

    /// Cumulative cycles: good plus scrap.
    pub fn cycles(&self) -> u64 {
        self.good_count.saturating_add(self.scrap_count)
    }

    /// Usage as of `now`: accrued run time plus, when the machine is running, the time since it
    /// started running.
    pub fn usage_as_of(&self, now: DateTime<Utc>) -> MachineUsage {
        let open_ms = match &self.current {
            Some(current) if current.state == MachineStatus::Running => {
                elapsed_ms(current.since, now)
            }
            _ => 0,
        };
        MachineUsage {
            run_seconds: self.run_time_ms.saturating_add(open_ms) / 1000,
            cycles: self.cycles(),
        }
    }
}

fn elapsed_ms(from: DateTime<Utc>, to: DateTime<Utc>) -> u64 {
    u64::try_from((to - from).num_milliseconds()).unwrap_or(0)
}

/// The machine aggregate: `None` until registered.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    machine: Option<MachineRecord>,
}

impl Machine {
    /// The machine, once registered.
    pub fn machine(&self) -> Option<&MachineRecord> {
        self.machine.as_ref()
    }
}

/// The catalogue definition a state change resolves to, and its planned flag.
/// The stop that began at `stop_at`: exactly, or else the one within the same microsecond.
/// Read models and the API give times to the microsecond (what PostgreSQL keeps), while a
/// state event may carry nanoseconds; a stop named as the stop list shows it must be found.
fn find_stop(
    stops: &BTreeMap<DateTime<Utc>, StopRecord>,
    stop_at: DateTime<Utc>,
) -> Option<(DateTime<Utc>, &StopRecord)> {
    if let Some(stop) = stops.get(&stop_at) {
        return Some((stop_at, stop));
    }
    let from = stop_at.trunc_subsecs(6);
    stops
        .range(from..from + chrono::Duration::microseconds(1))
        .next()
        .map(|(at, stop)| (*at, stop))
}

/// The parts event of a report, or `None` for a report of no parts (a PLC's heartbeat:
/// accepted, and it changes no count).
fn parts_produced(
    machine: &MachineRecord,
    cmd: RecordParts,
    scrap_reason: Option<ReasonCode>,
) -> Result<Option<MachineEvent>, MachineError> {
    let parts = cmd.good.saturating_add(cmd.scrap);
    if parts == 0 {
        return Ok(None);
    }
    if parts > MAX_PARTS_PER_REPORT {
        return Err(MachineError::TooManyParts {
            max: MAX_PARTS_PER_REPORT,
        });
    }
    Ok(Some(MachineEvent::MachinePartsProduced {
        machine_id: machine.machine_id.clone(),
        good: cmd.good,
        scrap: cmd.scrap,
        order_id: cmd.order_id,
        ideal_cycle_time_s: machine.ideal_cycle_time_at(cmd.at),
        at: cmd.at,
        scrap_reason,
    }))
}

fn resolve_reason<'c>(
    catalogue: &'c ReasonCatalogue,
    state: MachineStatus,
    reason: Option<&Text>,
    planned: Option<bool>,
) -> (Option<&'c ReasonDefinition>, bool) {
    let definition = match reason {
        Some(text) => catalogue
            .get(text.as_str())
            .or_else(|| catalogue.unclassified()),
        None if state == MachineStatus::Running => None,
        None => catalogue.unclassified(),
    };
    let planned = planned.unwrap_or_else(|| definition.is_some_and(ReasonDefinition::planned));
    (definition, planned)
}

impl Decide for Machine {
    /// Decides against the built-in reason catalogue; the writer uses
    /// [`Machine::decide_with`] and the plant's catalogue.
    fn decide(&self, command: MachineCommand) -> Result<Vec<MachineEvent>, MachineError> {
        self.decide_with(command, ReasonCatalogue::builtin())
    }
}

impl Machine {
    /// Decides `command` with `reasons` as the catalogue in force: the plant's
    /// (ADR 0053). The events record the code's category and loss as decided, so a
    /// later change to the catalogue never rewrites history.
    pub fn decide_with(
        &self,
        command: MachineCommand,
        reasons: &ReasonCatalogue,
    ) -> Result<Vec<MachineEvent>, MachineError> {
        if let MachineCommand::RegisterMachine(cmd) = command {
            if let Some(machine) = &self.machine {
                return Err(MachineError::AlreadyRegistered {
                    machine_id: machine.machine_id.clone(),
                });
            }
            return Ok(vec![MachineEvent::MachineRegistered {
                machine_id: cmd.machine_id,
                machine_type: cmd.machine_type,
                line: cmd.line,
                ideal_cycle_time_s: cmd.ideal_cycle_time_s,
                at: cmd.at,
            }]);
        }
        let machine = self.machine.as_ref().ok_or(MachineError::NotRegistered)?;
        let machine_id = machine.machine_id.clone();
        let event = match command {
            MachineCommand::RegisterMachine(_) => {
                return Err(MachineError::AlreadyRegistered { machine_id })
            }
            MachineCommand::ChangeState(cmd) => {
                let (definition, planned) =
                    resolve_reason(reasons, cmd.state, cmd.reason.as_ref(), cmd.planned);
                let category = definition.map(|d| {
                    if d.code.as_str() == UNCLASSIFIED && planned {
                        ReasonCategory::Planned
                    } else {
                        d.category
                    }
                });
                MachineEvent::MachineStateChanged {
                    machine_id,
                    state: cmd.state,
                    reason: cmd.reason,
                    reason_code: definition.map(|d| d.code.clone()),
                    category,
                    loss: definition.and_then(|d| d.loss),
                    planned,
                    at: cmd.at,
                }
            }
            MachineCommand::RecordParts(cmd) => match parts_produced(machine, cmd, None)? {
                Some(event) => event,
                None => return Ok(Vec::new()),
            },
            MachineCommand::RecordPartsWithScrapReason(cmd) => {
                let definition = scrap_reason(cmd.scrap_reason.as_str()).ok_or(
                    MachineError::UnknownScrapReason {
                        code: cmd.scrap_reason.clone(),
                    },
                )?;
                if cmd.parts.scrap == 0 {
                    return Err(MachineError::ScrapReasonWithoutScrap);
                }
                match parts_produced(machine, cmd.parts, Some(definition.code.clone()))? {
                    Some(event) => event,
                    None => return Ok(Vec::new()),
                }
            }
            MachineCommand::ChangeIdealCycleTime(cmd) => {
                MachineEvent::MachineIdealCycleTimeChanged {
                    machine_id,
                    ideal_cycle_time_s: cmd.ideal_cycle_time_s,
                    previous_ideal_cycle_time_s: machine.ideal_cycle_time_at(cmd.effective_from),
                    effective_from: cmd.effective_from,
                    at: cmd.at,
                }
            }
            MachineCommand::RecordMaintenancePerformed(cmd) => {
                let repeated = machine
                    .last_maintenance
                    .as_ref()
                    .is_some_and(|m| m.task_id == cmd.task_id);
                if repeated {
                    return Ok(vec![]);
                }
                MachineEvent::MachineMaintenancePerformed {
                    machine_id,
                    task_id: cmd.task_id,
                    notes: cmd.notes,
                    at: cmd.at,
                }
            }
            MachineCommand::ClassifyStop(cmd) => {
                let definition = reasons.get(cmd.reason_code.as_str()).ok_or(
                    MachineError::UnknownReasonCode {
                        code: cmd.reason_code.clone(),
                    },
                )?;
                if definition.code.as_str() == UNCLASSIFIED {
                    return Err(MachineError::ClassifiedAsUnclassified);
                }
                let Some((stop_at, stop)) = find_stop(&machine.stops, cmd.stop_at) else {
                    let forgotten = machine
                        .forgotten_stops_until
                        .is_some_and(|until| cmd.stop_at <= until);
                    return Err(if forgotten {
                        MachineError::StopTooOld {
                            stop_at: cmd.stop_at,
                        }
                    } else {
                        MachineError::StopNotFound {
                            stop_at: cmd.stop_at,
                        }
                    });
                };
                MachineEvent::MachineStopClassified {
                    machine_id,
                    stop_at,
                    state: stop.state,
                    reason_code: definition.code.clone(),
                    category: definition.category,
                    loss: definition.loss,
                    planned: definition.planned(),
                    by: cmd.by,
                    at: cmd.at,
                }
            }
        };
        Ok(vec![event])
    }
}

impl Aggregate for Machine {
    const TYPE: &'static str = crate::StreamType::Machine.as_str();
    type Command = MachineCommand;
    type Event = MachineEvent;
    type Error = MachineError;
    type Services = ();

    crate::handle_by_deciding!();

    fn apply(&mut self, event: Self::Event) {
        if let MachineEvent::MachineRegistered {
            machine_id,
            machine_type,
            line,
            ideal_cycle_time_s,
            at,
        } = event
        {
            self.machine = Some(MachineRecord {
                machine_id,
                machine_type,
                line,
                registered_at: at,
                base_ideal_cycle_time_s: ideal_cycle_time_s,
                ideal_cycle_time_changes: BTreeMap::new(),
                current: None,
                run_time_ms: 0,
                good_count: 0,
                scrap_count: 0,
                last_maintenance: None,
                stops: BTreeMap::new(),
                forgotten_stops_until: None,
            });
            return;
        }
        let Some(machine) = self.machine.as_mut() else {
            return;
        };
        match event {
            MachineEvent::MachineRegistered { .. } => {}
            MachineEvent::MachineStateChanged {
                state,
                reason_code,
                planned,
                at,
                ..
            } => {
                if state != MachineStatus::Running {
                    machine.stops.insert(
                        at,
                        StopRecord {
                            state,
                            reason_code: reason_code.clone(),
                            planned,
                        },
                    );
                    while machine.stops.len() > MAX_TRACKED_STOPS {
                        if let Some((dropped, _)) = machine.stops.pop_first() {
                            machine.forgotten_stops_until = machine
                                .forgotten_stops_until
                                .map_or(Some(dropped), |until| Some(until.max(dropped)));
                        }
                    }
                }
                let in_order = machine.current.as_ref().is_none_or(|c| at >= c.since);
                if in_order {
                    if let Some(current) = &machine.current {
                        if current.state == MachineStatus::Running {
                            machine.run_time_ms = machine
                                .run_time_ms
                                .saturating_add(elapsed_ms(current.since, at));
                        }
                    }
                    machine.current = Some(CurrentState {
                        state,
                        reason_code,
                        planned,
                        since: at,
                    });
                }
            }
            MachineEvent::MachinePartsProduced { good, scrap, .. } => {
                machine.good_count = machine.good_count.saturating_add(good);
                machine.scrap_count = machine.scrap_count.saturating_add(scrap);
            }
            MachineEvent::MachineIdealCycleTimeChanged {
                ideal_cycle_time_s,
                effective_from,
                ..
            } => {
                machine
                    .ideal_cycle_time_changes
                    .insert(effective_from, ideal_cycle_time_s);
            }
            MachineEvent::MachineMaintenancePerformed { task_id, at, .. } => {
                let newer = machine.last_maintenance.as_ref().is_none_or(|m| at >= m.at);
                if newer {
                    machine.last_maintenance = Some(MaintenanceRecord { task_id, at });
                }
            }
            MachineEvent::MachineStopClassified {
                stop_at,
                reason_code,
                planned,
                ..
            } => {
                if let Some(stop) = machine.stops.get_mut(&stop_at) {
                    stop.reason_code = Some(reason_code.clone());
                    stop.planned = planned;
                }
                if let Some(current) = machine.current.as_mut() {
                    if current.since == stop_at && current.state != MachineStatus::Running {
                        current.reason_code = Some(reason_code);
                        current.planned = planned;
                    }
                }
            }
        }
    }
}

//! Operators: the people who work on the floor, and the time they spend on orders.
//!
//! Stream type `operator`, one stream per [`OperatorId`] (ADR 0036). An operator has a name, an
//! optional badge id, skills and the lines they may work; they can be updated, deactivated (they
//! left, or moved away) and reactivated. The operator's stream also holds their labour: clocking
//! on an order (optionally at a machine or workstation) and clocking off it, each at a floor time
//! that may lie in the past (an offline terminal sends it later).
//!
//! Decisions (ADR 0036):
//! - An operator may be clocked on several orders at once (one person tending two machines is
//!   ordinary): each session counts in full to its order, so an operator's labour time over a
//!   window can exceed the window. Clocking on an order they are already clocked on is refused.
//! - Clocking off names the order; the event carries the floor time of the clock-on it closes, so
//!   the labour read model closes exactly that session. A clock-off before its clock-on is
//!   refused.
//! - A deactivated operator cannot clock on, and an operator still clocked on cannot be
//!   deactivated: labour never belongs to nobody.
//! - Skills and lines are sets: kept sorted, duplicates dropped.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use crate::values::{BadgeId, LineId, MachineId, OperatorId, OrderId, Skill, Text};
use crate::Decide;

/// Registers a new operator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegisterOperator {
    pub operator_id: OperatorId,
    pub name: Text,
    pub badge_id: Option<BadgeId>,
    pub skills: Vec<Skill>,
    pub lines: Vec<LineId>,
    pub at: DateTime<Utc>,
}

/// Changes an operator's details; `None` leaves a field as it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpdateOperator {
    pub name: Option<Text>,
    /// `Some(None)` removes the badge.
    pub badge_id: Option<Option<BadgeId>>,
    pub skills: Option<Vec<Skill>>,
    pub lines: Option<Vec<LineId>>,
    pub at: DateTime<Utc>,
}

/// Deactivates an operator (idempotent).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeactivateOperator {
    pub reason: Option<Text>,
    pub at: DateTime<Utc>,
}

/// Reactivates a deactivated operator (idempotent).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReactivateOperator {
    pub at: DateTime<Utc>,
}

/// Clocks the operator on an order at floor time `at`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClockOn {
    pub order_id: OrderId,
    /// The machine or workstation they work at, when they say.
    pub machine_id: Option<MachineId>,
    pub at: DateTime<Utc>,
}

/// Clocks the operator off an order at floor time `at`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClockOff {
    pub order_id: OrderId,
    pub at: DateTime<Utc>,
}

/// Every command an operator accepts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum OperatorCommand {
    RegisterOperator(RegisterOperator),
    UpdateOperator(UpdateOperator),
    DeactivateOperator(DeactivateOperator),
    ReactivateOperator(ReactivateOperator),
    ClockOn(ClockOn),
    ClockOff(ClockOff),
}

/// What happened to an operator. Serialized with an `event_type` tag equal to the variant name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event_type")]
pub enum OperatorEvent {
    OperatorRegistered {
        operator_id: OperatorId,
        name: Text,
        badge_id: Option<BadgeId>,
        skills: Vec<Skill>,
        lines: Vec<LineId>,
        at: DateTime<Utc>,
    },
    /// The details after the change (all of them, so a reader sets rather than merges).
    OperatorUpdated {
        operator_id: OperatorId,
        name: Text,
        badge_id: Option<BadgeId>,
        skills: Vec<Skill>,
        lines: Vec<LineId>,
        at: DateTime<Utc>,
    },
    OperatorDeactivated {
        operator_id: OperatorId,
        reason: Option<Text>,
        at: DateTime<Utc>,
    },
    OperatorReactivated {
        operator_id: OperatorId,
        at: DateTime<Utc>,
    },
    OperatorClockedOn {
        operator_id: OperatorId,
        order_id: OrderId,
        machine_id: Option<MachineId>,
        at: DateTime<Utc>,
    },
    OperatorClockedOff {
        operator_id: OperatorId,
        order_id: OrderId,
        machine_id: Option<MachineId>,
        /// The floor time of the clock-on this ends.
        clocked_on_at: DateTime<Utc>,
        at: DateTime<Utc>,
    },
}

impl OperatorEvent {
    /// The operator the event is about.
    pub fn operator_id(&self) -> &OperatorId {
        match self {
            Self::OperatorRegistered { operator_id, .. }
            | Self::OperatorUpdated { operator_id, .. }
            | Self::OperatorDeactivated { operator_id, .. }
            | Self::OperatorReactivated { operator_id, .. }
            | Self::OperatorClockedOn { operator_id, .. }
            | Self::OperatorClockedOff { operator_id, .. } => operator_id,
        }
    }
}

impl DomainEvent for OperatorEvent {
    fn event_type(&self) -> String {
        match self {
            Self::OperatorRegistered { .. } => "OperatorRegistered",
            Self::OperatorUpdated { .. } => "OperatorUpdated",
            Self::OperatorDeactivated { .. } => "OperatorDeactivated",
            Self::OperatorReactivated { .. } => "OperatorReactivated",
            Self::OperatorClockedOn { .. } => "OperatorClockedOn",
            Self::OperatorClockedOff { .. } => "OperatorClockedOff",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        String::from("1")
    }
}

/// Why a command on an operator was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OperatorError {
    #[error("operator {operator_id} is already registered")]
    AlreadyRegistered { operator_id: OperatorId },
    #[error("the operator is not registered")]
    NotFound,
    #[error("operator {operator_id} is deactivated")]
    Inactive { operator_id: OperatorId },
    #[error("the operator is already clocked on order {order_id}")]
    AlreadyClockedOn { order_id: OrderId },
    #[error("the operator is not clocked on order {order_id}")]
    NotClockedOn { order_id: OrderId },
    #[error("clock-off at {at} is before the clock-on at {clocked_on_at}")]
    OffBeforeOn {
        at: DateTime<Utc>,
        clocked_on_at: DateTime<Utc>,
    },
    #[error("the operator is still clocked on {orders}: clock off first")]
    StillClockedOn { orders: String },
}

/// An open labour session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    pub machine_id: Option<MachineId>,
    pub since: DateTime<Utc>,
}

/// The state of a registered operator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperatorRecord {
    pub operator_id: OperatorId,
    pub name: Text,
    pub badge_id: Option<BadgeId>,
    pub skills: Vec<Skill>,
    pub lines: Vec<LineId>,
    pub active: bool,
    /// The orders the operator is clocked on now.
    pub clocked_on: BTreeMap<OrderId, Session>,
    pub registered_at: DateTime<Utc>,
    pub deactivated_at: Option<DateTime<Utc>>,
}

/// The operator aggregate: `None` until registered.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Operator {
    operator: Option<OperatorRecord>,
}

impl Operator {
    /// The operator, once registered.
    pub fn operator(&self) -> Option<&OperatorRecord> {
        self.operator.as_ref()
    }
}

/// A set: sorted, without duplicates.
fn set<T: Ord>(mut values: Vec<T>) -> Vec<T> {
    values.sort();
    values.dedup();
    values
}

fn decide_update(o: &OperatorRecord, cmd: UpdateOperator) -> Vec<OperatorEvent> {
    let name = cmd.name.unwrap_or_else(|| o.name.clone());
    let badge_id = cmd.badge_id.unwrap_or_else(|| o.badge_id.clone());
    let skills = cmd.skills.map_or_else(|| o.skills.clone(), set);
    let lines = cmd.lines.map_or_else(|| o.lines.clone(), set);
    if name == o.name && badge_id == o.badge_id && skills == o.skills && lines == o.lines {
        return Vec::new();
    }
    vec![OperatorEvent::OperatorUpdated {
        operator_id: o.operator_id.clone(),
        name,
        badge_id,
        skills,
        lines,
        at: cmd.at,
    }]
}

fn decide_clock(
    o: &OperatorRecord,
    command: OperatorCommand,
) -> Result<Vec<OperatorEvent>, OperatorError> {
    let operator_id = o.operator_id.clone();
    match command {
        OperatorCommand::ClockOn(cmd) => {
            if !o.active {
                return Err(OperatorError::Inactive { operator_id });
            }
            if o.clocked_on.contains_key(&cmd.order_id) {
                return Err(OperatorError::AlreadyClockedOn {
                    order_id: cmd.order_id,
                });
            }
            Ok(vec![OperatorEvent::OperatorClockedOn {
                operator_id,
                order_id: cmd.order_id,
                machine_id: cmd.machine_id,
                at: cmd.at,
            }])
        }
        OperatorCommand::ClockOff(cmd) => {
            let Some(session) = o.clocked_on.get(&cmd.order_id) else {
                return Err(OperatorError::NotClockedOn {
                    order_id: cmd.order_id,
                });
            };
            if cmd.at < session.since {
                return Err(OperatorError::OffBeforeOn {
                    at: cmd.at,
                    clocked_on_at: session.since,
                });
            }
            Ok(vec![OperatorEvent::OperatorClockedOff {
                operator_id,
                order_id: cmd.order_id,
                machine_id: session.machine_id.clone(),
                clocked_on_at: session.since,
                at: cmd.at,
            }])
        }
        _ => Ok(Vec::new()),
    }
}

impl Decide for Operator {
    fn decide(&self, command: OperatorCommand) -> Result<Vec<OperatorEvent>, OperatorError> {
        if let OperatorCommand::RegisterOperator(cmd) = command {
            if let Some(o) = &self.operator {
                return Err(OperatorError::AlreadyRegistered {
                    operator_id: o.operator_id.clone(),
                });
            }
            return Ok(vec![OperatorEvent::OperatorRegistered {
                operator_id: cmd.operator_id,
                name: cmd.name,
                badge_id: cmd.badge_id,
                skills: set(cmd.skills),
                lines: set(cmd.lines),
                at: cmd.at,
            }]);
        }
        let o = self.operator.as_ref().ok_or(OperatorError::NotFound)?;
        let operator_id = o.operator_id.clone();
        match command {
            OperatorCommand::RegisterOperator(_) => Err(OperatorError::NotFound),
            OperatorCommand::UpdateOperator(cmd) => Ok(decide_update(o, cmd)),
            OperatorCommand::DeactivateOperator(cmd) => {
                if !o.active {
                    return Ok(Vec::new());
                }
                if !o.clocked_on.is_empty() {
                    let orders: Vec<&str> = o.clocked_on.keys().map(OrderId::as_str).collect();
                    return Err(OperatorError::StillClockedOn {
                        orders: orders.join(", "),
                    });
                }
                Ok(vec![OperatorEvent::OperatorDeactivated {
                    operator_id,
                    reason: cmd.reason,
                    at: cmd.at,
                }])
            }
            OperatorCommand::ReactivateOperator(cmd) => Ok(if o.active {
                Vec::new()
            } else {
                vec![OperatorEvent::OperatorReactivated {
                    operator_id,
                    at: cmd.at,
                }]
            }),
            clock => decide_clock(o, clock),
        }
    }
}

impl Aggregate for Operator {
    const TYPE: &'static str = crate::StreamType::Operator.as_str();
    type Command = OperatorCommand;
    type Event = OperatorEvent;
    type Error = OperatorError;
    type Services = ();

    crate::handle_by_deciding!();

    fn apply(&mut self, event: Self::Event) {
        if let OperatorEvent::OperatorRegistered {
            operator_id,
            name,
            badge_id,
            skills,
            lines,
            at,
        } = event
        {
            self.operator = Some(OperatorRecord {
                operator_id,
                name,
                badge_id,
                skills,
                lines,
                active: true,
                clocked_on: BTreeMap::new(),
                registered_at: at,
                deactivated_at: None,
            });
            return;
        }
        let Some(o) = self.operator.as_mut() else {
            return;
        };
        match event {
            OperatorEvent::OperatorRegistered { .. } => {}
            OperatorEvent::OperatorUpdated {
                name,
                badge_id,
                skills,
                lines,
                ..
            } => {
                o.name = name;
                o.badge_id = badge_id;
                o.skills = skills;
                o.lines = lines;
            }
            OperatorEvent::OperatorDeactivated { at, .. } => {
                o.active = false;
                o.deactivated_at = Some(at);
            }
            OperatorEvent::OperatorReactivated { .. } => {
                o.active = true;
                o.deactivated_at = None;
            }
            OperatorEvent::OperatorClockedOn {
                order_id,
                machine_id,
                at,
                ..
            } => {
                o.clocked_on.insert(
                    order_id,
                    Session {
                        machine_id,
                        since: at,
                    },
                );
            }
            OperatorEvent::OperatorClockedOff { order_id, .. } => {
                o.clocked_on.remove(&order_id);
            }
        }
    }
}

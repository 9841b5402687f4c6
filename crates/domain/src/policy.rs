//! Preventive-maintenance policies: "every N days / run hours / cycles, do this".
//!
//! Stream type `maintenance_policy`, one stream per [`PolicyId`]. A policy counts from a
//! baseline (its definition, then the completion of its last task) and, when `CheckDue` finds
//! the interval reached, emits `PolicyDue` with a deterministic task id
//! (`{policy_id}-{occurrence}`); the process manager turns that into a `ScheduleTask`.
//!
//! Exactly once per occurrence: while an occurrence is open (its task neither completed nor
//! cancelled) `CheckDue` emits nothing, whatever the usage; after `RecordPolicyTaskCompleted`
//! the baseline moves to the completion (time and the machine usage then), so calling `CheckDue`
//! again with the same or lower usage emits nothing. When the task is cancelled
//! (`RecordPolicyTaskCancelled`) the baseline stays: the work is still due, so the next check
//! raises a new occurrence with a new task id.
//!
//! Machine usage (run seconds and cycles, see [`crate::machine::MachineUsage`]) is an outside
//! fact: the caller reads it from the machine and puts it into the command. `CheckDue` on a
//! disabled policy emits nothing (the process manager fires it on every machine usage update).
//! A disabled policy is not re-enabled: define a new one.

use std::fmt;
use std::num::{NonZeroU32, NonZeroU64};

use chrono::{DateTime, TimeDelta, Utc};
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use crate::machine::MachineUsage;
use crate::values::{MachineId, PolicyId, TaskId, Text};
use crate::Decide;

/// When a policy falls due, counted from its baseline. Serialized as
/// `{"kind": "every_days", "value": 7}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum PolicyTrigger {
    EveryDays(NonZeroU32),
    EveryRunHours(NonZeroU32),
    EveryCycles(NonZeroU64),
}

impl fmt::Display for PolicyTrigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::EveryDays(n) => write!(f, "every {n} days"),
            Self::EveryRunHours(n) => write!(f, "every {n} run hours"),
            Self::EveryCycles(n) => write!(f, "every {n} cycles"),
        }
    }
}

/// Where counting starts: time and machine usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Baseline {
    pub at: DateTime<Utc>,
    pub run_seconds: u64,
    pub cycles: u64,
}

impl PolicyTrigger {
    /// Whether the interval has passed since `baseline`, at `now` with `usage`.
    pub fn is_due(&self, baseline: &Baseline, now: DateTime<Utc>, usage: MachineUsage) -> bool {
        match *self {
            Self::EveryDays(days) => TimeDelta::try_days(i64::from(days.get()))
                .and_then(|delta| baseline.at.checked_add_signed(delta))
                .is_some_and(|due| now >= due),
            Self::EveryRunHours(hours) => {
                usage.run_seconds
                    >= baseline
                        .run_seconds
                        .saturating_add(u64::from(hours.get()) * 3600)
            }
            Self::EveryCycles(cycles) => {
                usage.cycles >= baseline.cycles.saturating_add(cycles.get())
            }
        }
    }
}

/// Defines a policy; `usage` is the machine's usage now, the first baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DefinePolicy {
    pub policy_id: PolicyId,
    pub machine_id: MachineId,
    pub trigger: PolicyTrigger,
    pub description: Text,
    pub usage: MachineUsage,
    pub at: DateTime<Utc>,
}

/// Checks whether the policy is due at `now` with the machine's `usage`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckDue {
    pub now: DateTime<Utc>,
    pub usage: MachineUsage,
}

/// The task of the open occurrence was completed; counting restarts from `usage` at `at`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordPolicyTaskCompleted {
    pub task_id: TaskId,
    pub usage: MachineUsage,
    pub at: DateTime<Utc>,
}

/// The task of the open occurrence was cancelled; the work is still due.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordPolicyTaskCancelled {
    pub task_id: TaskId,
    pub at: DateTime<Utc>,
}

/// Disables the policy for good.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DisablePolicy {
    pub reason: Option<Text>,
    pub at: DateTime<Utc>,
}

/// Every command a maintenance policy accepts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum PolicyCommand {
    DefinePolicy(DefinePolicy),
    CheckDue(CheckDue),
    RecordPolicyTaskCompleted(RecordPolicyTaskCompleted),
    RecordPolicyTaskCancelled(RecordPolicyTaskCancelled),
    DisablePolicy(DisablePolicy),
}

/// What happened to a policy. Serialized with an `event_type` tag equal to the variant name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event_type")]
pub enum PolicyEvent {
    PolicyDefined {
        policy_id: PolicyId,
        machine_id: MachineId,
        trigger: PolicyTrigger,
        description: Text,
        run_seconds: u64,
        cycles: u64,
        at: DateTime<Utc>,
    },
    /// An occurrence fell due; a task `task_id` is to be scheduled.
    PolicyDue {
        policy_id: PolicyId,
        machine_id: MachineId,
        occurrence: u64,
        task_id: TaskId,
        trigger: PolicyTrigger,
        description: Text,
        /// The usage when found due.
        run_seconds: u64,
        cycles: u64,
        due_at: DateTime<Utc>,
    },
    PolicyTaskCompleted {
        policy_id: PolicyId,
        machine_id: MachineId,
        occurrence: u64,
        task_id: TaskId,
        /// The new baseline.
        run_seconds: u64,
        cycles: u64,
        at: DateTime<Utc>,
    },
    PolicyTaskCancelled {
        policy_id: PolicyId,
        machine_id: MachineId,
        occurrence: u64,
        task_id: TaskId,
        at: DateTime<Utc>,
    },
    PolicyDisabled {
        policy_id: PolicyId,
        machine_id: MachineId,
        reason: Option<Text>,
        at: DateTime<Utc>,
    },
}

impl DomainEvent for PolicyEvent {
    fn event_type(&self) -> String {
        match self {
            Self::PolicyDefined { .. } => "PolicyDefined",
            Self::PolicyDue { .. } => "PolicyDue",
            Self::PolicyTaskCompleted { .. } => "PolicyTaskCompleted",
            Self::PolicyTaskCancelled { .. } => "PolicyTaskCancelled",
            Self::PolicyDisabled { .. } => "PolicyDisabled",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        String::from("1")
    }
}

/// Why a command on a maintenance policy was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("maintenance policy {policy_id} already exists")]
    AlreadyDefined { policy_id: PolicyId },
    #[error("the maintenance policy does not exist")]
    NotFound,
    #[error("the maintenance policy is already disabled")]
    AlreadyDisabled,
    #[error("task {task_id} is not the open task of this maintenance policy")]
    TaskNotOpen { task_id: TaskId },
}

/// The occurrence whose task is still open.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenOccurrence {
    pub occurrence: u64,
    pub task_id: TaskId,
    pub due_at: DateTime<Utc>,
}

/// The state of a defined policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Policy {
    pub policy_id: PolicyId,
    pub machine_id: MachineId,
    pub trigger: PolicyTrigger,
    pub description: Text,
    pub enabled: bool,
    /// How many occurrences have fallen due so far.
    pub occurrences: u64,
    pub open: Option<OpenOccurrence>,
    pub baseline: Baseline,
    pub defined_at: DateTime<Utc>,
}

/// The maintenance policy aggregate: `None` until defined.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MaintenancePolicy {
    policy: Option<Policy>,
}

impl MaintenancePolicy {
    /// The policy, once defined.
    pub fn policy(&self) -> Option<&Policy> {
        self.policy.as_ref()
    }
}

fn open_task<'a>(policy: &'a Policy, task_id: &TaskId) -> Result<&'a OpenOccurrence, PolicyError> {
    policy
        .open
        .as_ref()
        .filter(|open| open.task_id == *task_id)
        .ok_or_else(|| PolicyError::TaskNotOpen {
            task_id: task_id.clone(),
        })
}

impl Decide for MaintenancePolicy {
    fn decide(&self, command: PolicyCommand) -> Result<Vec<PolicyEvent>, PolicyError> {
        if let PolicyCommand::DefinePolicy(cmd) = command {
            if let Some(policy) = &self.policy {
                return Err(PolicyError::AlreadyDefined {
                    policy_id: policy.policy_id.clone(),
                });
            }
            return Ok(vec![PolicyEvent::PolicyDefined {
                policy_id: cmd.policy_id,
                machine_id: cmd.machine_id,
                trigger: cmd.trigger,
                description: cmd.description,
                run_seconds: cmd.usage.run_seconds,
                cycles: cmd.usage.cycles,
                at: cmd.at,
            }]);
        }
        let policy = self.policy.as_ref().ok_or(PolicyError::NotFound)?;
        let policy_id = policy.policy_id.clone();
        let machine_id = policy.machine_id.clone();
        let event = match command {
            PolicyCommand::DefinePolicy(_) => {
                return Err(PolicyError::AlreadyDefined { policy_id });
            }
            PolicyCommand::CheckDue(cmd) => {
                let due = policy.enabled
                    && policy.open.is_none()
                    && policy.trigger.is_due(&policy.baseline, cmd.now, cmd.usage);
                if !due {
                    return Ok(vec![]);
                }
                let occurrence = policy.occurrences.saturating_add(1);
                PolicyEvent::PolicyDue {
                    task_id: TaskId::for_policy_occurrence(&policy_id, occurrence),
                    policy_id,
                    machine_id,
                    occurrence,
                    trigger: policy.trigger,
                    description: policy.description.clone(),
                    run_seconds: cmd.usage.run_seconds,
                    cycles: cmd.usage.cycles,
                    due_at: cmd.now,
                }
            }
            PolicyCommand::RecordPolicyTaskCompleted(cmd) => {
                let open = open_task(policy, &cmd.task_id)?;
                PolicyEvent::PolicyTaskCompleted {
                    policy_id,
                    machine_id,
                    occurrence: open.occurrence,
                    task_id: cmd.task_id,
                    run_seconds: cmd.usage.run_seconds,
                    cycles: cmd.usage.cycles,
                    at: cmd.at,
                }
            }
            PolicyCommand::RecordPolicyTaskCancelled(cmd) => {
                let open = open_task(policy, &cmd.task_id)?;
                PolicyEvent::PolicyTaskCancelled {
                    policy_id,
                    machine_id,
                    occurrence: open.occurrence,
                    task_id: cmd.task_id,
                    at: cmd.at,
                }
            }
            PolicyCommand::DisablePolicy(cmd) => {
                if !policy.enabled {
                    return Err(PolicyError::AlreadyDisabled);
                }
                PolicyEvent::PolicyDisabled {
                    policy_id,
                    machine_id,
                    reason: cmd.reason,
                    at: cmd.at,
                }
            }
        };
        Ok(vec![event])
    }
}

impl Aggregate for MaintenancePolicy {
    const TYPE: &'static str = crate::StreamType::MaintenancePolicy.as_str();
    type Command = PolicyCommand;
    type Event = PolicyEvent;
    type Error = PolicyError;
    type Services = ();

    crate::handle_by_deciding!();

    fn apply(&mut self, event: Self::Event) {
        if let PolicyEvent::PolicyDefined {
            policy_id,
            machine_id,
            trigger,
            description,
            run_seconds,
            cycles,
            at,
        } = event
        {
            self.policy = Some(Policy {
                policy_id,
                machine_id,
                trigger,
                description,
                enabled: true,
                occurrences: 0,
                open: None,
                baseline: Baseline {
                    at,
                    run_seconds,
                    cycles,
                },
                defined_at: at,
            });
            return;
        }
        let Some(policy) = self.policy.as_mut() else {
            return;
        };
        match event {
            PolicyEvent::PolicyDefined { .. } => {}
            PolicyEvent::PolicyDue {
                occurrence,
                task_id,
                due_at,
                ..
            } => {
                policy.occurrences = occurrence;
                policy.open = Some(OpenOccurrence {
                    occurrence,
                    task_id,
                    due_at,
                });
            }
            PolicyEvent::PolicyTaskCompleted {
                run_seconds,
                cycles,
                at,
                ..
            } => {
                policy.open = None;
                policy.baseline = Baseline {
                    at,
                    run_seconds,
                    cycles,
                };
            }
            PolicyEvent::PolicyTaskCancelled { .. } => policy.open = None,
            PolicyEvent::PolicyDisabled { .. } => policy.enabled = false,
        }
    }
}

//! Maintenance tasks: preventive, predictive or corrective work on one machine.
//!
//! Stream type `maintenance_task`, one stream per [`TaskId`].
//!
//! ```text
//! scheduled ─start─> in_progress ─complete─> completed
//!     │                   │
//!     └──────cancel───────┴──> cancelled
//! ```
//!
//! Any other transition is refused with [`TaskError::InvalidTransition`] carrying the current
//! status. Decisions where the brief leaves room:
//! - `CompleteTask` only from `in_progress` (the work must have been started; the API can issue
//!   start and complete back to back for a quick job).
//! - `evidence` (what a predictive alert saw) is only accepted on `predictive` tasks, and a
//!   `policy_id` only on `preventive` ones, so a read model can trust the kind.
//! - Overdue is derived, not stored: [`Task::is_overdue`] is true while the task is still open
//!   (scheduled or in progress) after its scheduled date.
//! - Parts used are recorded on the task (for the task history); the stock movement of spare
//!   parts is an inventory command of its own.
//! - `AcknowledgeTask` (ADR 0050): an operator says they have seen a task due on their
//!   machine. It changes no status; it is accepted while the task is open (scheduled or in
//!   progress), and a second acknowledgement of the same task emits nothing (the first one
//!   stands: who saw it first, and when).

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use crate::values::{Actor, ItemId, MachineId, PolicyId, Quantity, TaskId, Text};
use crate::Decide;

/// Why the task exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    /// Scheduled ahead, by calendar or usage (often from a policy).
    Preventive,
    /// Raised by condition monitoring: a sensor drifted from its baseline.
    Predictive,
    /// Repair after a failure.
    Corrective,
}

/// Where a task is in its life; serialized in snake_case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    Scheduled,
    InProgress,
    Completed,
    Cancelled,
}

impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Scheduled => "scheduled",
            Self::InProgress => "in progress",
            Self::Completed => "completed",
            Self::Cancelled => "cancelled",
        })
    }
}

/// What was attempted, for [`TaskError::InvalidTransition`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskAction {
    Start,
    Complete,
    Cancel,
    Acknowledge,
}

impl fmt::Display for TaskAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Start => "start",
            Self::Complete => "complete",
            Self::Cancel => "cancel",
            Self::Acknowledge => "acknowledge",
        })
    }
}

/// What a predictive alert saw: the sensor, the observed value and the learned baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PredictiveEvidence {
    /// The telemetry field, e.g. `vibration_mm_s`.
    pub sensor: String,
    pub observed_value: f64,
    pub baseline_mean: f64,
    pub baseline_std_dev: f64,
    /// How many standard deviations the observation lies from the mean.
    pub deviation_sigma: f64,
    pub samples: u64,
    pub window_start: DateTime<Utc>,
    pub window_end: DateTime<Utc>,
    /// Anything else the detector wants to keep (model name, trend slope, ...).
    #[serde(default)]
    pub details: BTreeMap<String, serde_json::Value>,
}

/// A spare part used by a task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartUsed {
    pub item_id: ItemId,
    pub qty: Quantity,
}

/// Schedules a new task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduleTask {
    pub task_id: TaskId,
    pub machine_id: MachineId,
    pub kind: TaskKind,
    pub scheduled_date: DateTime<Utc>,
    pub description: Option<Text>,
    /// Only for predictive tasks.
    pub evidence: Option<PredictiveEvidence>,
    /// Only for preventive tasks raised by a policy.
    pub policy_id: Option<PolicyId>,
    pub at: DateTime<Utc>,
}

/// Starts the work.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StartTask {
    pub at: DateTime<Utc>,
}

/// Completes the work.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompleteTask {
    pub notes: Option<Text>,
    pub parts_used: Vec<PartUsed>,
    pub at: DateTime<Utc>,
}

/// Cancels an open task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CancelTask {
    pub reason: Text,
    pub at: DateTime<Utc>,
}

/// Records that `by` has seen the task (an operator at the machine, say).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AcknowledgeTask {
    pub by: Actor,
    pub at: DateTime<Utc>,
}

/// Every command a maintenance task accepts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum TaskCommand {
    ScheduleTask(ScheduleTask),
    StartTask(StartTask),
    CompleteTask(CompleteTask),
    CancelTask(CancelTask),
    AcknowledgeTask(AcknowledgeTask),
}

/// What happened to a maintenance task. Serialized with an `event_type` tag equal to the
/// variant name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event_type")]
pub enum TaskEvent {
    MaintenanceTaskScheduled {
        task_id: TaskId,
        machine_id: MachineId,
        kind: TaskKind,
        scheduled_date: DateTime<Utc>,
        description: Option<Text>,
        evidence: Option<PredictiveEvidence>,
        policy_id: Option<PolicyId>,
        at: DateTime<Utc>,
    },
    MaintenanceTaskStarted {
        task_id: TaskId,
        machine_id: MachineId,
        at: DateTime<Utc>,
    },
    MaintenanceTaskCompleted {
        task_id: TaskId,
        machine_id: MachineId,
        kind: TaskKind,
        policy_id: Option<PolicyId>,
        notes: Option<Text>,
        parts_used: Vec<PartUsed>,
        at: DateTime<Utc>,
    },
    MaintenanceTaskCancelled {
        task_id: TaskId,
        machine_id: MachineId,
        kind: TaskKind,
        policy_id: Option<PolicyId>,
        reason: Text,
        previous_status: TaskStatus,
        at: DateTime<Utc>,
    },
    MaintenanceTaskAcknowledged {
        task_id: TaskId,
        machine_id: MachineId,
        by: Actor,
        at: DateTime<Utc>,
    },
}

impl DomainEvent for TaskEvent {
    fn event_type(&self) -> String {
        match self {
            Self::MaintenanceTaskScheduled { .. } => "MaintenanceTaskScheduled",
            Self::MaintenanceTaskStarted { .. } => "MaintenanceTaskStarted",
            Self::MaintenanceTaskCompleted { .. } => "MaintenanceTaskCompleted",
            Self::MaintenanceTaskCancelled { .. } => "MaintenanceTaskCancelled",
            Self::MaintenanceTaskAcknowledged { .. } => "MaintenanceTaskAcknowledged",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        String::from("1")
    }
}

/// Why a command on a maintenance task was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaskError {
    #[error("maintenance task {task_id} already exists")]
    AlreadyExists { task_id: TaskId },
    #[error("the maintenance task does not exist")]
    NotFound,
    #[error("cannot {action} a maintenance task that is {status}")]
    InvalidTransition {
        action: TaskAction,
        status: TaskStatus,
    },
    #[error("only predictive tasks carry evidence")]
    EvidenceOnlyForPredictive,
    #[error("only preventive tasks come from a maintenance policy")]
    PolicyOnlyForPreventive,
    #[error("part {item_id} is listed more than once")]
    DuplicatePart { item_id: ItemId },
}

/// The state of an existing task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub task_id: TaskId,
    pub machine_id: MachineId,
    pub kind: TaskKind,
    pub scheduled_date: DateTime<Utc>,
    pub description: Option<Text>,
    pub evidence: Option<PredictiveEvidence>,
    pub policy_id: Option<PolicyId>,
    pub status: TaskStatus,
    pub scheduled_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub notes: Option<Text>,
    pub parts_used: Vec<PartUsed>,
    pub cancelled_at: Option<DateTime<Utc>>,
    pub cancel_reason: Option<Text>,
    /// Who acknowledged the task first, and when (absent from older snapshots).
    #[serde(default)]
    pub acknowledged_by: Option<Actor>,
    #[serde(default)]
    pub acknowledged_at: Option<DateTime<Utc>>,
}

impl Task {
    /// Whether the task is still open (scheduled or in progress) after its scheduled date.
    pub fn is_overdue(&self, now: DateTime<Utc>) -> bool {
        matches!(self.status, TaskStatus::Scheduled | TaskStatus::InProgress)
            && self.scheduled_date < now
    }
}

/// The maintenance task aggregate: `None` until scheduled.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MaintenanceTask {
    task: Option<Task>,
}

impl MaintenanceTask {
    /// The task, once scheduled.
    pub fn task(&self) -> Option<&Task> {
        self.task.as_ref()
    }

    /// See [`Task::is_overdue`]; false before the task exists.
    pub fn is_overdue(&self, now: DateTime<Utc>) -> bool {
        self.task.as_ref().is_some_and(|t| t.is_overdue(now))
    }
}

impl Decide for MaintenanceTask {
    fn decide(&self, command: TaskCommand) -> Result<Vec<TaskEvent>, TaskError> {
        use TaskStatus as S;
        if let TaskCommand::ScheduleTask(cmd) = command {
            if let Some(task) = &self.task {
                return Err(TaskError::AlreadyExists {
                    task_id: task.task_id.clone(),
                });
            }
            if cmd.evidence.is_some() && cmd.kind != TaskKind::Predictive {
                return Err(TaskError::EvidenceOnlyForPredictive);
            }
            if cmd.policy_id.is_some() && cmd.kind != TaskKind::Preventive {
                return Err(TaskError::PolicyOnlyForPreventive);
            }
            return Ok(vec![TaskEvent::MaintenanceTaskScheduled {
                task_id: cmd.task_id,
                machine_id: cmd.machine_id,
                kind: cmd.kind,
                scheduled_date: cmd.scheduled_date,
                description: cmd.description,
                evidence: cmd.evidence,
                policy_id: cmd.policy_id,
                at: cmd.at,
            }]);
        }
        let task = self.task.as_ref().ok_or(TaskError::NotFound)?;
        let refuse = |action| TaskError::InvalidTransition {
            action,
            status: task.status,
        };
        let event = match command {
            TaskCommand::ScheduleTask(_) => {
                return Err(TaskError::AlreadyExists {
                    task_id: task.task_id.clone(),
                })
            }
            TaskCommand::StartTask(cmd) => {
                if task.status != S::Scheduled {
                    return Err(refuse(TaskAction::Start));
                }
                TaskEvent::MaintenanceTaskStarted {
                    task_id: task.task_id.clone(),
                    machine_id: task.machine_id.clone(),
                    at: cmd.at,
                }
            }
            TaskCommand::CompleteTask(cmd) => {
                if task.status != S::InProgress {
                    return Err(refuse(TaskAction::Complete));
                }
                for (i, part) in cmd.parts_used.iter().enumerate() {
                    if cmd.parts_used[..i]
                        .iter()
                        .any(|p| p.item_id == part.item_id)
                    {
                        return Err(TaskError::DuplicatePart {
                            item_id: part.item_id.clone(),
                        });
                    }
                }
                TaskEvent::MaintenanceTaskCompleted {
                    task_id: task.task_id.clone(),
                    machine_id: task.machine_id.clone(),
                    kind: task.kind,
                    policy_id: task.policy_id.clone(),
                    notes: cmd.notes,
                    parts_used: cmd.parts_used,
                    at: cmd.at,
                }
            }
            TaskCommand::CancelTask(cmd) => {
                if !matches!(task.status, S::Scheduled | S::InProgress) {
                    return Err(refuse(TaskAction::Cancel));
                }
                TaskEvent::MaintenanceTaskCancelled {
                    task_id: task.task_id.clone(),
                    machine_id: task.machine_id.clone(),
                    kind: task.kind,
                    policy_id: task.policy_id.clone(),
                    reason: cmd.reason,
                    previous_status: task.status,
                    at: cmd.at,
                }
            }
            TaskCommand::AcknowledgeTask(cmd) => {
                if !matches!(task.status, S::Scheduled | S::InProgress) {
                    return Err(refuse(TaskAction::Acknowledge));
                }
                if task.acknowledged_by.is_some() {
                    return Ok(Vec::new());
                }
                TaskEvent::MaintenanceTaskAcknowledged {
                    task_id: task.task_id.clone(),
                    machine_id: task.machine_id.clone(),
                    by: cmd.by,
                    at: cmd.at,
                }
            }
        };
        Ok(vec![event])
    }
}

impl Aggregate for MaintenanceTask {
    const TYPE: &'static str = crate::StreamType::MaintenanceTask.as_str();
    type Command = TaskCommand;
    type Event = TaskEvent;
    type Error = TaskError;
    type Services = ();

    crate::handle_by_deciding!();

    fn apply(&mut self, event: Self::Event) {
        if let TaskEvent::MaintenanceTaskScheduled {
            task_id,
            machine_id,
            kind,
            scheduled_date,
            description,
            evidence,
            policy_id,
            at,
        } = event
        {
            self.task = Some(Task {
                task_id,
                machine_id,
                kind,
                scheduled_date,
                description,
                evidence,
                policy_id,
                status: TaskStatus::Scheduled,
                scheduled_at: at,
                started_at: None,
                completed_at: None,
                notes: None,
                parts_used: Vec::new(),
                cancelled_at: None,
                cancel_reason: None,
                acknowledged_by: None,
                acknowledged_at: None,
            });
            return;
        }
        let Some(task) = self.task.as_mut() else {
            return;
        };
        match event {
            TaskEvent::MaintenanceTaskScheduled { .. } => {}
            TaskEvent::MaintenanceTaskStarted { at, .. } => {
                task.status = TaskStatus::InProgress;
                task.started_at = Some(at);
            }
            TaskEvent::MaintenanceTaskCompleted {
                notes,
                parts_used,
                at,
                ..
            } => {
                task.status = TaskStatus::Completed;
                task.completed_at = Some(at);
                task.notes = notes;
                task.parts_used = parts_used;
            }
            TaskEvent::MaintenanceTaskCancelled { reason, at, .. } => {
                task.status = TaskStatus::Cancelled;
                task.cancelled_at = Some(at);
                task.cancel_reason = Some(reason);
            }
            TaskEvent::MaintenanceTaskAcknowledged { by, at, .. } => {
                task.acknowledged_by = Some(by);
                task.acknowledged_at = Some(at);
            }
        }
    }
}

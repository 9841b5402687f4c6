//! What can go wrong with a command, classified for the API.

use shopfloor_domain::alert::{AlertError, AlertRuleError};
use shopfloor_domain::inventory::InventoryError;
use shopfloor_domain::machine::MachineError;
use shopfloor_domain::maintenance::TaskError;
use shopfloor_domain::operator::OperatorError;
use shopfloor_domain::order::OrderError;
use shopfloor_domain::policy::PolicyError;
use shopfloor_domain::reason_codes::ReasonCodeError;
use shopfloor_eventstore::StoreError;

/// How a domain refusal reads to a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectionKind {
    /// The aggregate does not exist (404).
    NotFound,
    /// The command does not fit the aggregate's state (409).
    Conflict,
    /// The command itself is wrong (400).
    Invalid,
}

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// A business rule refused the command; nothing was written.
    #[error("{message}")]
    Rejected {
        kind: RejectionKind,
        message: String,
    },
    /// The caller expected another stream version (If-Match); nothing was written.
    #[error("the {stream_type} is at version {actual}, not {expected}")]
    VersionMismatch {
        stream_type: String,
        expected: u64,
        actual: u64,
    },
    /// Concurrent writers kept winning; nothing was written. Retrying may succeed.
    #[error("the {stream_type} {stream_id} is too busy; try again")]
    Contention {
        stream_type: String,
        stream_id: String,
    },
    /// Not written because another command of its all-or-nothing batch (at
    /// `index`, when known) was refused or failed.
    #[error("not recorded: another command of the batch was refused")]
    Aborted { index: Option<usize> },
    /// The store failed (unreachable database, ...).
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl CommandError {
    /// The same failure for another command of the batch it ended: refusals
    /// exactly; a store failure as what it means to a caller (unknown outcome,
    /// unavailable, or a fault), with its message.
    pub fn replicate(&self) -> CommandError {
        match self {
            CommandError::Rejected { kind, message } => CommandError::Rejected {
                kind: *kind,
                message: message.clone(),
            },
            CommandError::VersionMismatch {
                stream_type,
                expected,
                actual,
            } => CommandError::VersionMismatch {
                stream_type: stream_type.clone(),
                expected: *expected,
                actual: *actual,
            },
            CommandError::Contention {
                stream_type,
                stream_id,
            } => CommandError::Contention {
                stream_type: stream_type.clone(),
                stream_id: stream_id.clone(),
            },
            CommandError::Aborted { index } => CommandError::Aborted { index: *index },
            CommandError::Store(e) => CommandError::Store(e.shared(false)),
        }
    }

    /// True when the command may succeed if sent again later.
    pub fn is_transient(&self) -> bool {
        match self {
            CommandError::Contention { .. } => true,
            CommandError::Store(e) => e.is_transient(),
            _ => false,
        }
    }
}

/// Sorts a domain error into a [`RejectionKind`].
pub trait Classify: std::error::Error {
    fn kind(&self) -> RejectionKind;
}

use RejectionKind::{Conflict, Invalid, NotFound};

impl Classify for MachineError {
    fn kind(&self) -> RejectionKind {
        match self {
            MachineError::NotRegistered | MachineError::StopNotFound { .. } => NotFound,
            MachineError::AlreadyRegistered { .. } | MachineError::StopTooOld { .. } => Conflict,
            _ => Invalid,
        }
    }
}

impl Classify for OrderError {
    fn kind(&self) -> RejectionKind {
        match self {
            OrderError::NotFound => NotFound,
            OrderError::AlreadyExists { .. }
            | OrderError::InvalidTransition { .. }
            | OrderError::DuplicateInspection { .. } => Conflict,
            _ => Invalid,
        }
    }
}

impl Classify for TaskError {
    fn kind(&self) -> RejectionKind {
        match self {
            TaskError::NotFound => NotFound,
            TaskError::AlreadyExists { .. } | TaskError::InvalidTransition { .. } => Conflict,
            _ => Invalid,
        }
    }
}

impl Classify for InventoryError {
    fn kind(&self) -> RejectionKind {
        match self {
            InventoryError::InsufficientStock { .. }
            | InventoryError::ItemTypeMismatch { .. }
            | InventoryError::LotExists { .. }
            | InventoryError::InsufficientLotStock { .. }
            | InventoryError::LotScrapped { .. }
            | InventoryError::LotNotHeld { .. }
            | InventoryError::LotNotAvailable { .. } => Conflict,
            InventoryError::LotNotFound { .. } => NotFound,
            _ => Invalid,
        }
    }
}

impl Classify for PolicyError {
    fn kind(&self) -> RejectionKind {
        match self {
            PolicyError::NotFound => NotFound,
            _ => Conflict,
        }
    }
}

impl Classify for OperatorError {
    fn kind(&self) -> RejectionKind {
        match self {
            OperatorError::NotFound => NotFound,
            OperatorError::OffBeforeOn { .. } => Invalid,
            _ => Conflict,
        }
    }
}

impl Classify for AlertRuleError {
    fn kind(&self) -> RejectionKind {
        match self {
            AlertRuleError::NotFound => NotFound,
            AlertRuleError::Invalid(_) => Invalid,
            _ => Conflict,
        }
    }
}

impl Classify for AlertError {
    fn kind(&self) -> RejectionKind {
        match self {
            AlertError::NotFound => NotFound,
            AlertError::Resolved => Conflict,
        }
    }
}

impl Classify for ReasonCodeError {
    fn kind(&self) -> RejectionKind {
        match self {
            ReasonCodeError::NotFound { .. } => NotFound,
            _ => Invalid,
        }
    }
}

impl Classify for shopfloor_domain::spc::SpcError {
    fn kind(&self) -> RejectionKind {
        use shopfloor_domain::spc::SpcError as E;
        match self {
            E::NotFound => NotFound,
            E::AlreadyExists { .. } => Conflict,
            _ => Invalid,
        }
    }
}

impl Classify for shopfloor_domain::hierarchy::HierarchyError {
    fn kind(&self) -> RejectionKind {
        use shopfloor_domain::hierarchy::HierarchyError as E;
        match self {
            E::NotFound { .. } => NotFound,
            E::AlreadyExists { .. }
            | E::CellHoldsMachines { .. }
            | E::EffectiveBeforePrevious { .. } => Conflict,
            _ => Invalid,
        }
    }
}

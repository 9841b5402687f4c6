//! Production orders: what to make, on which machine, and what was made.
//!
//! Stream type `production_order`, one stream per [`OrderId`]. The status follows the contract:
//!
//! ```text
//! created ─assign─> assigned ─start─> in_progress ─complete─> completed
//!            (assign again: re-assign)  │    ▲
//!                                     hold  resume
//!                                       ▼    │
//!                                      on_hold
//! cancel: from created, assigned, in_progress or on_hold, to cancelled
//! ```
//!
//! Any other transition is refused with [`OrderError::InvalidTransition`], which carries the
//! current status; a refusal emits nothing and so changes nothing.
//!
//! Decisions where the contract leaves room:
//! - `AssignOrder` is accepted from `created` and `assigned` only (re-assignment before start);
//!   assigning the machine it already has emits nothing (idempotent).
//! - `ReportProduction` is accepted on `assigned`, `in_progress` and `on_hold` orders (a machine
//!   may count the first parts before the operator presses start, and an order put on hold may
//!   still be flushing its last cycles); refused on `created` (no machine yet), `completed` and
//!   `cancelled`. The machine reporting need not be the assigned one (a part of the order may run
//!   elsewhere): the event names the machine.
//! - `RecordInspection` is accepted in every status but `cancelled`: inspecting the parts of a
//!   completed order is ordinary quality work. Inspection ids are unique within the order.
//! - The output location defaults to `FG`, written explicitly into [`OrderEvent::OrderCreated`],
//!   so no reader has to know the default.

use std::fmt;

use chrono::{DateTime, Utc};
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use crate::spc::Measurement;
use crate::values::{
    default_output_location, Actor, InspectionId, ItemId, Location, LotId, MachineId, OperatorId,
    OrderId, OrderQuantity, ProductId, Quantity, Text,
};
use crate::{Decide, MAX_PARTS_PER_REPORT};

/// One line of an order's bill of materials: `qty_per_unit` of `item_id` per unit made (good or
/// scrap: a scrapped part used its material too).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BomLine {
    pub item_id: ItemId,
    pub qty_per_unit: Quantity,
    /// Lots of the item this order consumes first, in this order (ADR 0057): backflush
    /// takes them while they are available, then the item's pick order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lots: Vec<LotId>,
}

/// Where an order is in its life; serialized in snake_case as the contract lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    Created,
    Assigned,
    InProgress,
    OnHold,
    Completed,
    Cancelled,
}

impl OrderStatus {
    /// The status as the API spells it (`in_progress`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Assigned => "assigned",
            Self::InProgress => "in_progress",
            Self::OnHold => "on_hold",
            Self::Completed => "completed",
            Self::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for OrderStatus {
    /// Human wording for messages ("in progress").
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::InProgress => "in progress",
            Self::OnHold => "on hold",
            other => other.as_str(),
        })
    }
}

/// What was attempted, for [`OrderError::InvalidTransition`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderAction {
    Assign,
    Start,
    Hold,
    Resume,
    Complete,
    Cancel,
    ReportProduction,
    RecordInspection,
}

impl fmt::Display for OrderAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Assign => "assign",
            Self::Start => "start",
            Self::Hold => "put on hold",
            Self::Resume => "resume",
            Self::Complete => "complete",
            Self::Cancel => "cancel",
            Self::ReportProduction => "report production on",
            Self::RecordInspection => "record an inspection on",
        })
    }
}

/// Creates the order. `output_location` `None` means `FG`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreateOrder {
    pub order_id: OrderId,
    pub product_id: ProductId,
    pub quantity: OrderQuantity,
    pub bom: Vec<BomLine>,
    pub input_location: Option<Location>,
    pub output_location: Option<Location>,
    pub at: DateTime<Utc>,
}

/// Assigns (or re-assigns) the order to a machine (or workstation) and, optionally, operators.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssignOrder {
    pub machine_id: MachineId,
    /// `None` keeps the operators assigned before; `Some` replaces them (`Some([])` clears).
    /// Their existence is looked up by the caller (they live in other streams).
    #[serde(default)]
    pub operator_ids: Option<Vec<OperatorId>>,
    pub at: DateTime<Utc>,
}

/// Starts production of an assigned order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StartOrder {
    pub at: DateTime<Utc>,
}

/// Puts an order in progress on hold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HoldOrder {
    pub reason: Text,
    pub at: DateTime<Utc>,
}

/// Resumes an order on hold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResumeOrder {
    pub at: DateTime<Utc>,
}

/// Completes an order in progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompleteOrder {
    pub at: DateTime<Utc>,
}

/// Cancels an order that is neither completed nor cancelled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CancelOrder {
    pub reason: Option<Text>,
    pub at: DateTime<Utc>,
}

/// Records parts a machine made for the order (issued by the process manager from
/// `MachinePartsProduced`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportProduction {
    pub machine_id: MachineId,
    pub good: u64,
    pub scrap: u64,
    pub at: DateTime<Utc>,
}

/// Records a quality inspection of a sample of the order's parts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordInspection {
    pub inspection_id: InspectionId,
    pub sample_size: u64,
    pub defects: u64,
    pub passed: bool,
    pub inspector: Actor,
    pub notes: Option<Text>,
    /// Measured values of characteristics (one subgroup each; ADR 0056); empty for an
    /// attribute-only inspection.
    #[serde(default)]
    pub measurements: Vec<Measurement>,
    pub at: DateTime<Utc>,
}

/// Every command a production order accepts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum OrderCommand {
    CreateOrder(CreateOrder),
    AssignOrder(AssignOrder),
    StartOrder(StartOrder),
    HoldOrder(HoldOrder),
    ResumeOrder(ResumeOrder),
    CompleteOrder(CompleteOrder),
    CancelOrder(CancelOrder),
    ReportProduction(ReportProduction),
    RecordInspection(RecordInspection),
}

/// What happened to a production order. Serialized with an `event_type` tag equal to the
/// variant name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event_type")]
pub enum OrderEvent {
    OrderCreated {
        order_id: OrderId,
        product_id: ProductId,
        quantity: OrderQuantity,
        bom: Vec<BomLine>,
        input_location: Option<Location>,
        /// Always explicit: `FG` when the command named none.
        output_location: Location,
        at: DateTime<Utc>,
    },
    OrderAssigned {
        order_id: OrderId,
        machine_id: MachineId,
        /// The machine it was assigned to before, on a re-assignment.
        previous_machine_id: Option<MachineId>,
        /// The operators assigned from now on (a set, sorted); absent: unchanged.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        operator_ids: Option<Vec<OperatorId>>,
        at: DateTime<Utc>,
    },
    OrderStarted {
        order_id: OrderId,
        machine_id: MachineId,
        at: DateTime<Utc>,
    },
    OrderHeld {
        order_id: OrderId,
        reason: Text,
        at: DateTime<Utc>,
    },
    OrderResumed {
        order_id: OrderId,
        at: DateTime<Utc>,
    },
    OrderCompleted {
        order_id: OrderId,
        /// Totals at completion.
        good_count: u64,
        scrap_count: u64,
        at: DateTime<Utc>,
    },
    OrderCancelled {
        order_id: OrderId,
        reason: Option<Text>,
        previous_status: OrderStatus,
        at: DateTime<Utc>,
    },
    OrderPartsReported {
        order_id: OrderId,
        product_id: ProductId,
        machine_id: MachineId,
        good: u64,
        scrap: u64,
        /// Running totals after this report, so a read model can set rather than add.
        good_count: u64,
        scrap_count: u64,
        at: DateTime<Utc>,
    },
    OrderInspectionRecorded {
        order_id: OrderId,
        inspection_id: InspectionId,
        sample_size: u64,
        defects: u64,
        passed: bool,
        inspector: Actor,
        notes: Option<Text>,
        /// Measured values of characteristics (ADR 0056); absent when none.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        measurements: Vec<Measurement>,
        at: DateTime<Utc>,
    },
}

impl DomainEvent for OrderEvent {
    fn event_type(&self) -> String {
        match self {
            Self::OrderCreated { .. } => "OrderCreated",
            Self::OrderAssigned { .. } => "OrderAssigned",
            Self::OrderStarted { .. } => "OrderStarted",
            Self::OrderHeld { .. } => "OrderHeld",
            Self::OrderResumed { .. } => "OrderResumed",
            Self::OrderCompleted { .. } => "OrderCompleted",
            Self::OrderCancelled { .. } => "OrderCancelled",
            Self::OrderPartsReported { .. } => "OrderPartsReported",
            Self::OrderInspectionRecorded { .. } => "OrderInspectionRecorded",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        String::from("1")
    }
}

/// Why a command on a production order was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderError {
    #[error("production order {order_id} already exists")]
    AlreadyExists { order_id: OrderId },
    #[error("the production order does not exist")]
    NotFound,
    #[error("cannot {action} an order that is {status}")]
    InvalidTransition {
        action: OrderAction,
        status: OrderStatus,
    },
    #[error("the bill of materials lists item {item_id} more than once")]
    DuplicateBomItem { item_id: ItemId },
    #[error("a production report must count at least one part")]
    EmptyReport,
    #[error("a production report may count at most {max} parts")]
    TooManyParts { max: u64 },
    #[error("an inspection must sample at least one part")]
    EmptySample,
    #[error("an inspection may sample at most {max} parts")]
    SampleTooLarge { max: u64 },
    #[error("an inspection cannot find {defects} defects in a sample of {sample_size} parts")]
    DefectsExceedSample { defects: u64, sample_size: u64 },
    #[error("inspection {inspection_id} is already recorded on this order")]
    DuplicateInspection { inspection_id: InspectionId },
}

/// A recorded quality inspection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Inspection {
    pub inspection_id: InspectionId,
    pub sample_size: u64,
    pub defects: u64,
    pub passed: bool,
    pub inspector: Actor,
    pub notes: Option<Text>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub measurements: Vec<Measurement>,
    pub at: DateTime<Utc>,
}

/// The state of an existing order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Order {
    pub order_id: OrderId,
    pub product_id: ProductId,
    pub quantity: OrderQuantity,
    pub bom: Vec<BomLine>,
    pub input_location: Option<Location>,
    pub output_location: Location,
    pub status: OrderStatus,
    pub assigned_machine: Option<MachineId>,
    /// The operators assigned to the order (a set, sorted).
    #[serde(default)]
    pub assigned_operators: Vec<OperatorId>,
    pub good_count: u64,
    pub scrap_count: u64,
    pub inspections: Vec<Inspection>,
    pub hold_reason: Option<Text>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub cancelled_at: Option<DateTime<Utc>>,
}

impl Order {
    /// Good plus scrap.
    pub fn total_count(&self) -> u64 {
        self.good_count.saturating_add(self.scrap_count)
    }

    /// good / total; `None` before any part.
    pub fn production_yield(&self) -> Option<f64> {
        ratio(self.good_count, self.total_count())
    }

    /// scrap / total; `None` before any part.
    pub fn scrap_rate(&self) -> Option<f64> {
        ratio(self.scrap_count, self.total_count())
    }

    /// good / ordered quantity; may exceed 1 when more was made than ordered.
    pub fn progress(&self) -> f64 {
        ratio(self.good_count, self.quantity.value()).unwrap_or(0.0)
    }
}

#[allow(clippy::cast_precision_loss)]
fn ratio(numerator: u64, denominator: u64) -> Option<f64> {
    (denominator != 0).then(|| numerator as f64 / denominator as f64)
}

/// The production order aggregate: `None` until created.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProductionOrder {
    order: Option<Order>,
}

impl ProductionOrder {
    /// The order, once created.
    pub fn order(&self) -> Option<&Order> {
        self.order.as_ref()
    }

    fn existing(&self) -> Result<&Order, OrderError> {
        self.order.as_ref().ok_or(OrderError::NotFound)
    }
}

fn refuse(action: OrderAction, status: OrderStatus) -> OrderError {
    OrderError::InvalidTransition { action, status }
}

impl Decide for ProductionOrder {
    fn decide(&self, command: OrderCommand) -> Result<Vec<OrderEvent>, OrderError> {
        use OrderStatus as S;
        if let OrderCommand::CreateOrder(cmd) = command {
            if let Some(order) = &self.order {
                return Err(OrderError::AlreadyExists {
                    order_id: order.order_id.clone(),
                });
            }
            for (i, line) in cmd.bom.iter().enumerate() {
                if cmd.bom[..i].iter().any(|l| l.item_id == line.item_id) {
                    return Err(OrderError::DuplicateBomItem {
                        item_id: line.item_id.clone(),
                    });
                }
            }
            return Ok(vec![OrderEvent::OrderCreated {
                order_id: cmd.order_id,
                product_id: cmd.product_id,
                quantity: cmd.quantity,
                bom: cmd.bom,
                input_location: cmd.input_location,
                output_location: cmd.output_location.unwrap_or_else(default_output_location),
                at: cmd.at,
            }]);
        }
        let order = self.existing()?;
        let order_id = order.order_id.clone();
        let status = order.status;
        let event = match command {
            OrderCommand::CreateOrder(_) => return Err(OrderError::NotFound),
            OrderCommand::AssignOrder(cmd) => {
                if !matches!(status, S::Created | S::Assigned) {
                    return Err(refuse(OrderAction::Assign, status));
                }
                let operator_ids = cmd.operator_ids.map(|mut ids| {
                    ids.sort();
                    ids.dedup();
                    ids
                });
                let same_operators = operator_ids
                    .as_ref()
                    .is_none_or(|ids| *ids == order.assigned_operators);
                if order.assigned_machine.as_ref() == Some(&cmd.machine_id) && same_operators {
                    return Ok(vec![]);
                }
                OrderEvent::OrderAssigned {
                    order_id,
                    machine_id: cmd.machine_id,
                    previous_machine_id: order.assigned_machine.clone(),
                    operator_ids,
                    at: cmd.at,
                }
            }
            OrderCommand::StartOrder(cmd) => match (&order.assigned_machine, status) {
                (Some(machine_id), S::Assigned) => OrderEvent::OrderStarted {
                    order_id,
                    machine_id: machine_id.clone(),
                    at: cmd.at,
                },
                _ => return Err(refuse(OrderAction::Start, status)),
            },
            OrderCommand::HoldOrder(cmd) => {
                if status != S::InProgress {
                    return Err(refuse(OrderAction::Hold, status));
                }
                OrderEvent::OrderHeld {
                    order_id,
                    reason: cmd.reason,
                    at: cmd.at,
                }
            }
            OrderCommand::ResumeOrder(cmd) => {
                if status != S::OnHold {
                    return Err(refuse(OrderAction::Resume, status));
                }
                OrderEvent::OrderResumed {
                    order_id,
                    at: cmd.at,
                }
            }
            OrderCommand::CompleteOrder(cmd) => {
                if status != S::InProgress {
                    return Err(refuse(OrderAction::Complete, status));
                }
                OrderEvent::OrderCompleted {
                    order_id,
                    good_count: order.good_count,
                    scrap_count: order.scrap_count,
                    at: cmd.at,
                }
            }
            OrderCommand::CancelOrder(cmd) => {
                if matches!(status, S::Completed | S::Cancelled) {
                    return Err(refuse(OrderAction::Cancel, status));
                }
                OrderEvent::OrderCancelled {
                    order_id,
                    reason: cmd.reason,
                    previous_status: status,
                    at: cmd.at,
                }
            }
            OrderCommand::ReportProduction(cmd) => {
                if !matches!(status, S::Assigned | S::InProgress | S::OnHold) {
                    return Err(refuse(OrderAction::ReportProduction, status));
                }
                let parts = cmd.good.saturating_add(cmd.scrap);
                if parts == 0 {
                    return Err(OrderError::EmptyReport);
                }
                if parts > MAX_PARTS_PER_REPORT {
                    return Err(OrderError::TooManyParts {
                        max: MAX_PARTS_PER_REPORT,
                    });
                }
                OrderEvent::OrderPartsReported {
                    order_id,
                    product_id: order.product_id.clone(),
                    machine_id: cmd.machine_id,
                    good: cmd.good,
                    scrap: cmd.scrap,
                    good_count: order.good_count.saturating_add(cmd.good),
                    scrap_count: order.scrap_count.saturating_add(cmd.scrap),
                    at: cmd.at,
                }
            }
            OrderCommand::RecordInspection(cmd) => {
                if status == S::Cancelled {
                    return Err(refuse(OrderAction::RecordInspection, status));
                }
                if cmd.sample_size == 0 {
                    return Err(OrderError::EmptySample);
                }
                if cmd.sample_size > MAX_PARTS_PER_REPORT {
                    return Err(OrderError::SampleTooLarge {
                        max: MAX_PARTS_PER_REPORT,
                    });
                }
                if cmd.defects > cmd.sample_size {
                    return Err(OrderError::DefectsExceedSample {
                        defects: cmd.defects,
                        sample_size: cmd.sample_size,
                    });
                }
                if order
                    .inspections
                    .iter()
                    .any(|i| i.inspection_id == cmd.inspection_id)
                {
                    return Err(OrderError::DuplicateInspection {
                        inspection_id: cmd.inspection_id,
                    });
                }
                OrderEvent::OrderInspectionRecorded {
                    order_id,
                    inspection_id: cmd.inspection_id,
                    sample_size: cmd.sample_size,
                    defects: cmd.defects,
                    passed: cmd.passed,
                    inspector: cmd.inspector,
                    notes: cmd.notes,
                    measurements: cmd.measurements,
                    at: cmd.at,
                }
            }
        };
        Ok(vec![event])
    }
}

impl Aggregate for ProductionOrder {
    const TYPE: &'static str = crate::StreamType::ProductionOrder.as_str();
    type Command = OrderCommand;
    type Event = OrderEvent;
    type Error = OrderError;
    type Services = ();

    crate::handle_by_deciding!();

    fn apply(&mut self, event: Self::Event) {
        if let OrderEvent::OrderCreated {
            order_id,
            product_id,
            quantity,
            bom,
            input_location,
            output_location,
            at,
        } = event
        {
            self.order = Some(Order {
                order_id,
                product_id,
                quantity,
                bom,
                input_location,
                output_location,
                status: OrderStatus::Created,
                assigned_machine: None,
                assigned_operators: Vec::new(),
                good_count: 0,
                scrap_count: 0,
                inspections: Vec::new(),
                hold_reason: None,
                created_at: at,
                started_at: None,
                completed_at: None,
                cancelled_at: None,
            });
            return;
        }
        let Some(order) = self.order.as_mut() else {
            return;
        };
        match event {
            OrderEvent::OrderCreated { .. } => {}
            OrderEvent::OrderAssigned {
                machine_id,
                operator_ids,
                ..
            } => {
                order.assigned_machine = Some(machine_id);
                if let Some(ids) = operator_ids {
                    order.assigned_operators = ids;
                }
                order.status = OrderStatus::Assigned;
            }
            OrderEvent::OrderStarted { machine_id, at, .. } => {
                order.assigned_machine = Some(machine_id);
                order.status = OrderStatus::InProgress;
                order.started_at = Some(at);
            }
            OrderEvent::OrderHeld { reason, .. } => {
                order.status = OrderStatus::OnHold;
                order.hold_reason = Some(reason);
            }
            OrderEvent::OrderResumed { .. } => {
                order.status = OrderStatus::InProgress;
                order.hold_reason = None;
            }
            OrderEvent::OrderCompleted { at, .. } => {
                order.status = OrderStatus::Completed;
                order.completed_at = Some(at);
            }
            OrderEvent::OrderCancelled { at, .. } => {
                order.status = OrderStatus::Cancelled;
                order.cancelled_at = Some(at);
            }
            OrderEvent::OrderPartsReported {
                good_count,
                scrap_count,
                ..
            } => {
                order.good_count = good_count;
                order.scrap_count = scrap_count;
            }
            OrderEvent::OrderInspectionRecorded {
                inspection_id,
                sample_size,
                defects,
                passed,
                inspector,
                notes,
                measurements,
                at,
                ..
            } => order.inspections.push(Inspection {
                inspection_id,
                sample_size,
                defects,
                passed,
                inspector,
                notes,
                measurements,
                at,
            }),
        }
    }
}

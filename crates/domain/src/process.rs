//! The pure half of the process managers: which commands follow from an event.
//!
//! A driver outside this crate tails the event log, looks up the facts these functions need
//! (the order of a parts report, the policies of a machine, the machine's usage), calls them,
//! and sends the returned commands. Each [`IssuedCommand`] has a deterministic `command_id`
//! made of the causing event's id and a suffix naming the target, so a driver that handles the
//! same event twice issues the same ids and the event store's idempotent append turns the retry
//! into a no-op.
//!
//! The flows:
//! 1. [`on_parts_produced`]: `MachinePartsProduced` with an `order_id` → `ReportProduction` on the
//!    order; `ProduceStock` of the good units of the order's product at its output location;
//!    `ConsumeStock` of `qty_per_unit × (good + scrap)` for every BOM line, from the order's input
//!    location if it names one.
//! 2. [`on_task_finished`]: `MaintenanceTaskCompleted` → `RecordMaintenancePerformed` on the
//!    machine and, for a policy's task, `RecordPolicyTaskCompleted` (the policy counts again
//!    from then); `MaintenanceTaskCancelled` of a policy's task → `RecordPolicyTaskCancelled`.
//! 3. [`on_machine_usage`]: a state or parts event of a machine → `CheckDue` on each of its
//!    policies.
//! 4. [`on_policy_due`]: `PolicyDue` → `ScheduleTask` (preventive, with the policy's task id).
//!
//! A command the target refuses (a report on a cancelled order, say) is the driver's to log;
//! the causing event stays a fact.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::alert::{AlertCommand, AlertRuleCommand};
use crate::hierarchy::HierarchyCommand;
use crate::inventory::{ConsumeStock, InventoryCommand, ProduceStock};
use crate::lot::{output_lot, ConsumeLots, LotRef, OutputLots, ProduceLot};
use crate::machine::{MachineCommand, MachineEvent, MachineUsage, RecordMaintenancePerformed};
use crate::maintenance::{ScheduleTask, TaskCommand, TaskEvent, TaskKind};
use crate::operator::OperatorCommand;
use crate::order::{BomLine, Order, OrderCommand, ReportProduction};
use crate::policy::{
    CheckDue, PolicyCommand, PolicyEvent, RecordPolicyTaskCancelled, RecordPolicyTaskCompleted,
};
use crate::reason_codes::ReasonCodeCommand;
use crate::spc::SpcCommand;
use crate::values::{
    AlertId, AlertRuleId, CharacteristicId, ItemId, Location, MachineId, OperatorId, OrderId,
    PolicyId, ProductId, Quantity, TaskId,
};
use crate::StreamType;

/// A command addressed to one aggregate instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Target {
    ProductionOrder {
        order_id: OrderId,
        command: OrderCommand,
    },
    Machine {
        machine_id: MachineId,
        command: MachineCommand,
    },
    MaintenanceTask {
        task_id: TaskId,
        command: TaskCommand,
    },
    InventoryItem {
        item_id: ItemId,
        command: InventoryCommand,
    },
    MaintenancePolicy {
        policy_id: PolicyId,
        command: PolicyCommand,
    },
    Operator {
        operator_id: OperatorId,
        command: OperatorCommand,
    },
    AlertRule {
        rule_id: AlertRuleId,
        command: AlertRuleCommand,
    },
    Alert {
        alert_id: AlertId,
        command: AlertCommand,
    },
    /// The plant's reason codes: one stream, [`crate::reason_codes::PLANT_STREAM`].
    ReasonCatalogue { command: ReasonCodeCommand },
    SpcCharacteristic {
        characteristic_id: CharacteristicId,
        command: SpcCommand,
    },
    /// The plant's equipment hierarchy: one stream, [`crate::hierarchy::PLANT_STREAM`].
    EquipmentHierarchy { command: HierarchyCommand },
}

impl Target {
    /// The stream type (aggregate) the command goes to.
    pub fn stream_type(&self) -> StreamType {
        match self {
            Self::ProductionOrder { .. } => StreamType::ProductionOrder,
            Self::Machine { .. } => StreamType::Machine,
            Self::MaintenanceTask { .. } => StreamType::MaintenanceTask,
            Self::InventoryItem { .. } => StreamType::InventoryItem,
            Self::MaintenancePolicy { .. } => StreamType::MaintenancePolicy,
            Self::Operator { .. } => StreamType::Operator,
            Self::AlertRule { .. } => StreamType::AlertRule,
            Self::Alert { .. } => StreamType::Alert,
            Self::ReasonCatalogue { .. } => StreamType::ReasonCatalogue,
            Self::SpcCharacteristic { .. } => StreamType::SpcCharacteristic,
            Self::EquipmentHierarchy { .. } => StreamType::EquipmentHierarchy,
        }
    }

    /// Whether the command is one that starts its stream (a creation, registration,
    /// schedule, definition or raise). The writer may decide such a command on an empty
    /// aggregate without reading the store first: the append expects no stream, so if
    /// the stream exists after all the store refuses it and the command is decided
    /// again on the stream as stored.
    pub fn creates_stream(&self) -> bool {
        use crate::alert::AlertCommand as A;
        use crate::alert::AlertRuleCommand as R;
        use crate::machine::MachineCommand as M;
        use crate::maintenance::TaskCommand as T;
        use crate::operator::OperatorCommand as O;
        use crate::order::OrderCommand as P;
        use crate::policy::PolicyCommand as Q;
        matches!(
            self,
            Self::ProductionOrder {
                command: P::CreateOrder(_),
                ..
            } | Self::Machine {
                command: M::RegisterMachine(_),
                ..
            } | Self::MaintenanceTask {
                command: T::ScheduleTask(_),
                ..
            } | Self::Operator {
                command: O::RegisterOperator(_),
                ..
            } | Self::MaintenancePolicy {
                command: Q::DefinePolicy(_),
                ..
            } | Self::AlertRule {
                command: R::DefineRule(_),
                ..
            } | Self::Alert {
                command: A::RaiseAlert(_),
                ..
            } | Self::SpcCharacteristic {
                command: crate::spc::SpcCommand::DefineCharacteristic(_),
                ..
            }
        )
    }

    /// The stream id (aggregate id) the command goes to.
    pub fn stream_id(&self) -> &str {
        match self {
            Self::ProductionOrder { order_id, .. } => order_id.as_str(),
            Self::Machine { machine_id, .. } => machine_id.as_str(),
            Self::MaintenanceTask { task_id, .. } => task_id.as_str(),
            Self::InventoryItem { item_id, .. } => item_id.as_str(),
            Self::MaintenancePolicy { policy_id, .. } => policy_id.as_str(),
            Self::Operator { operator_id, .. } => operator_id.as_str(),
            Self::AlertRule { rule_id, .. } => rule_id.as_str(),
            Self::Alert { alert_id, .. } => alert_id.as_str(),
            Self::ReasonCatalogue { .. } => crate::reason_codes::PLANT_STREAM,
            Self::SpcCharacteristic {
                characteristic_id, ..
            } => characteristic_id.as_str(),
            Self::EquipmentHierarchy { .. } => crate::hierarchy::PLANT_STREAM,
        }
    }
}

/// A command to issue, with its deterministic id (`{causing event id}/{suffix}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IssuedCommand {
    pub command_id: String,
    pub target: Target,
}

fn issue(event_id: &str, suffix: &str, target: Target) -> IssuedCommand {
    IssuedCommand {
        command_id: format!("{event_id}/{suffix}"),
        target,
    }
}

/// What the production flow needs to know about an order, looked up by the driver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderFacts {
    pub order_id: OrderId,
    pub product_id: ProductId,
    pub bom: Vec<BomLine>,
    pub input_location: Option<Location>,
    pub output_location: Location,
}

impl From<&Order> for OrderFacts {
    fn from(order: &Order) -> Self {
        Self {
            order_id: order.order_id.clone(),
            product_id: order.product_id.clone(),
            bom: order.bom.clone(),
            input_location: order.input_location.clone(),
            output_location: order.output_location.clone(),
        }
    }
}

/// The order a machine event reports parts for, which the driver must look up before calling
/// [`on_parts_produced`]; `None` when there is nothing to do.
pub fn order_of_parts(event: &MachineEvent) -> Option<&OrderId> {
    match event {
        MachineEvent::MachinePartsProduced {
            order_id: Some(order_id),
            ..
        } => Some(order_id),
        _ => None,
    }
}

/// Flow 1: parts produced for an order → the order's report and the inventory backflush.
/// Returns nothing unless `event` reports parts for `order.order_id`.
pub fn on_parts_produced(
    event_id: &str,
    event: &MachineEvent,
    order: &OrderFacts,
) -> Vec<IssuedCommand> {
    on_parts_produced_into(event_id, event, order, &OutputLots::None)
}

/// Flow 1 with lots (ADR 0057): where the product's lot rule names an output lot for the
/// report ([`crate::lot::output_lot`]), the good units go into that lot (`ProduceLot`, with
/// the machine) and every BOM consumption records that it fed it (`ConsumeLots`); the command
/// ids are those of [`on_parts_produced`].
pub fn on_parts_produced_into(
    event_id: &str,
    event: &MachineEvent,
    order: &OrderFacts,
    output: &OutputLots,
) -> Vec<IssuedCommand> {
    let MachineEvent::MachinePartsProduced {
        machine_id,
        good,
        scrap,
        order_id: Some(order_id),
        at,
        ..
    } = event
    else {
        return Vec::new();
    };
    if *order_id != order.order_id {
        return Vec::new();
    }
    let mut commands = vec![issue(
        event_id,
        "order",
        Target::ProductionOrder {
            order_id: order_id.clone(),
            command: OrderCommand::ReportProduction(ReportProduction {
                machine_id: machine_id.clone(),
                good: *good,
                scrap: *scrap,
                at: *at,
            }),
        },
    )];
    let product = ItemId::from(order.product_id.clone());
    let into = output_lot(output, order_id, *at).map(|lot_id| LotRef {
        item_id: product.clone(),
        lot_id,
    });
    if let Ok(qty) = Quantity::new(Decimal::from(*good)) {
        let produce = ProduceStock {
            item_id: product.clone(),
            order_id: order_id.clone(),
            location: order.output_location.clone(),
            qty,
            at: *at,
        };
        let command = match &into {
            Some(lot) => InventoryCommand::ProduceLot(ProduceLot {
                produce,
                lot_id: lot.lot_id.clone(),
                machine_id: Some(machine_id.clone()),
            }),
            None => InventoryCommand::ProduceStock(produce),
        };
        commands.push(issue(
            event_id,
            &format!("produce/{product}"),
            Target::InventoryItem {
                item_id: product.clone(),
                command,
            },
        ));
    }
    let units = Decimal::from(good.saturating_add(*scrap));
    for line in &order.bom {
        let Some(qty) = line
            .qty_per_unit
            .value()
            .checked_mul(units)
            .and_then(|qty| Quantity::new(qty).ok())
        else {
            continue;
        };
        let consume = ConsumeStock {
            item_id: line.item_id.clone(),
            order_id: order_id.clone(),
            qty,
            location: order.input_location.clone(),
            at: *at,
        };
        // Lots named on the order are taken first, with or without an output lot.
        let command = if into.is_some() || !line.lots.is_empty() {
            InventoryCommand::ConsumeLots(ConsumeLots {
                consume,
                into: into.clone(),
                prefer: line.lots.clone(),
            })
        } else {
            InventoryCommand::ConsumeStock(consume)
        };
        commands.push(issue(
            event_id,
            &format!("consume/{}", line.item_id),
            Target::InventoryItem {
                item_id: line.item_id.clone(),
                command,
            },
        ));
    }
    commands
}

/// Flow 2: a maintenance task finished. `usage` is the machine's usage now (the new baseline of
/// the task's policy, if any).
pub fn on_task_finished(
    event_id: &str,
    event: &TaskEvent,
    usage: MachineUsage,
) -> Vec<IssuedCommand> {
    match event {
        TaskEvent::MaintenanceTaskCompleted {
            task_id,
            machine_id,
            policy_id,
            notes,
            at,
            ..
        } => {
            let mut commands = vec![issue(
                event_id,
                "machine",
                Target::Machine {
                    machine_id: machine_id.clone(),
                    command: MachineCommand::RecordMaintenancePerformed(
                        RecordMaintenancePerformed {
                            task_id: task_id.clone(),
                            notes: notes.clone(),
                            at: *at,
                        },
                    ),
                },
            )];
            if let Some(policy_id) = policy_id {
                commands.push(issue(
                    event_id,
                    "policy",
                    Target::MaintenancePolicy {
                        policy_id: policy_id.clone(),
                        command: PolicyCommand::RecordPolicyTaskCompleted(
                            RecordPolicyTaskCompleted {
                                task_id: task_id.clone(),
                                usage,
                                at: *at,
                            },
                        ),
                    },
                ));
            }
            commands
        }
        TaskEvent::MaintenanceTaskCancelled {
            task_id,
            policy_id: Some(policy_id),
            at,
            ..
        } => vec![issue(
            event_id,
            "policy",
            Target::MaintenancePolicy {
                policy_id: policy_id.clone(),
                command: PolicyCommand::RecordPolicyTaskCancelled(RecordPolicyTaskCancelled {
                    task_id: task_id.clone(),
                    at: *at,
                }),
            },
        )],
        _ => Vec::new(),
    }
}

/// Flow 3: a machine's usage changed (a state or parts event) → check each of its `policies`
/// at `now` with its `usage` (both looked up by the driver).
pub fn on_machine_usage(
    event_id: &str,
    event: &MachineEvent,
    policies: &[PolicyId],
    usage: MachineUsage,
    now: DateTime<Utc>,
) -> Vec<IssuedCommand> {
    if !matches!(
        event,
        MachineEvent::MachineStateChanged { .. } | MachineEvent::MachinePartsProduced { .. }
    ) {
        return Vec::new();
    }
    policies
        .iter()
        .map(|policy_id| {
            issue(
                event_id,
                &format!("check/{policy_id}"),
                Target::MaintenancePolicy {
                    policy_id: policy_id.clone(),
                    command: PolicyCommand::CheckDue(CheckDue { now, usage }),
                },
            )
        })
        .collect()
}

/// Flow 4: a policy fell due → schedule its preventive task.
pub fn on_policy_due(event_id: &str, event: &PolicyEvent) -> Vec<IssuedCommand> {
    let PolicyEvent::PolicyDue {
        policy_id,
        machine_id,
        task_id,
        description,
        due_at,
        ..
    } = event
    else {
        return Vec::new();
    };
    vec![issue(
        event_id,
        "schedule",
        Target::MaintenanceTask {
            task_id: task_id.clone(),
            command: TaskCommand::ScheduleTask(ScheduleTask {
                task_id: task_id.clone(),
                machine_id: machine_id.clone(),
                kind: TaskKind::Preventive,
                scheduled_date: *due_at,
                description: Some(description.clone()),
                evidence: None,
                policy_id: Some(policy_id.clone()),
                at: *due_at,
            }),
        },
    )]
}

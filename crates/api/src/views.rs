//! What the API answers about single entities, built from the aggregates (read-your-writes).
//!
//! Field names follow CONTRACT.md; material quantities are JSON numbers; times RFC 3339.
//! Lists come from the read models instead (see [`crate::routes::reads`]).

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use shopfloor_domain::inventory::Item;
use shopfloor_domain::machine::MachineRecord;
use shopfloor_domain::maintenance::Task;
use shopfloor_domain::order::{Inspection, Order};
use utoipa::ToSchema;

/// The snake_case name of a serializable domain enum (`in_progress`).
pub fn name_of<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}

/// A production order.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OrderView {
    pub order_id: String,
    /// `created`, `assigned`, `in_progress`, `on_hold`, `completed` or `cancelled`.
    pub status: String,
    pub product_id: String,
    pub quantity: u64,
    pub assigned_machine: Option<String>,
    /// The operator ids assigned to the order.
    pub assigned_operators: Vec<String>,
    pub good_count: u64,
    pub scrap_count: u64,
    pub total_count: u64,
    /// good / total; null before any part.
    pub production_yield: Option<f64>,
    /// good / quantity.
    pub progress: f64,
    pub bom: Vec<BomLineView>,
    pub input_location: Option<String>,
    pub output_location: String,
    pub hold_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub cancelled_at: Option<DateTime<Utc>>,
    pub inspections: Vec<InspectionView>,
    /// The stream version (for If-Match).
    pub version: u64,
}

/// One line of a bill of materials.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BomLineView {
    pub item_id: String,
    #[serde(with = "rust_decimal::serde::float")]
    #[schema(value_type = f64)]
    pub qty_per_unit: Decimal,
    /// Lots of the item this order consumes first (absent: the item's pick order).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub lots: Vec<String>,
}

/// A quality inspection recorded on an order.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct InspectionView {
    pub inspection_id: String,
    pub sample_size: u64,
    pub defects: u64,
    pub passed: bool,
    pub inspector: String,
    pub notes: Option<String>,
    /// Measured values of SPC characteristics (ADR 0056); empty when none were given.
    pub measurements: Vec<MeasurementView>,
    pub at: DateTime<Utc>,
}

/// The measured values of one characteristic in an inspection (one subgroup).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MeasurementView {
    pub characteristic: String,
    pub values: Vec<f64>,
}

impl From<&Inspection> for InspectionView {
    fn from(i: &Inspection) -> Self {
        Self {
            inspection_id: i.inspection_id.to_string(),
            sample_size: i.sample_size,
            defects: i.defects,
            passed: i.passed,
            inspector: i.inspector.to_string(),
            notes: i.notes.as_ref().map(ToString::to_string),
            measurements: i
                .measurements
                .iter()
                .map(|m| MeasurementView {
                    characteristic: m.characteristic.to_string(),
                    values: m.values.clone(),
                })
                .collect(),
            at: i.at,
        }
    }
}

impl OrderView {
    pub fn new(o: &Order, version: u64) -> Self {
        Self {
            order_id: o.order_id.to_string(),
            status: o.status.as_str().to_string(),
            product_id: o.product_id.to_string(),
            quantity: o.quantity.value(),
            assigned_machine: o.assigned_machine.as_ref().map(ToString::to_string),
            assigned_operators: o
                .assigned_operators
                .iter()
                .map(ToString::to_string)
                .collect(),
            good_count: o.good_count,
            scrap_count: o.scrap_count,
            total_count: o.total_count(),
            production_yield: o.production_yield(),
            progress: o.progress(),
            bom: o
                .bom
                .iter()
                .map(|l| BomLineView {
                    item_id: l.item_id.to_string(),
                    qty_per_unit: l.qty_per_unit.value(),
                    lots: l.lots.iter().map(ToString::to_string).collect(),
                })
                .collect(),
            input_location: o.input_location.as_ref().map(ToString::to_string),
            output_location: o.output_location.to_string(),
            hold_reason: o.hold_reason.as_ref().map(ToString::to_string),
            created_at: o.created_at,
            started_at: o.started_at,
            completed_at: o.completed_at,
            cancelled_at: o.cancelled_at,
            inspections: o.inspections.iter().map(InspectionView::from).collect(),
            version,
        }
    }
}

/// A machine as it is now.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MachineView {
    pub machine_id: String,
    #[serde(rename = "type")]
    pub machine_type: String,
    pub line: String,
    /// The ideal cycle time in force now, in seconds.
    pub ideal_cycle_time_s: f64,
    /// `running`, `idle` or `down`; null before the first state event.
    pub current_status: Option<String>,
    pub current_state: Option<CurrentStateView>,
    pub last_maintenance: Option<MaintenanceView>,
    pub good_count: u64,
    pub scrap_count: u64,
    /// Accrued running time in seconds (usage counter for preventive maintenance).
    pub run_time_s: u64,
    pub registered_at: DateTime<Utc>,
    pub version: u64,
}

/// The state a machine is in, by latest floor time.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CurrentStateView {
    pub state: String,
    pub reason_code: Option<String>,
    pub planned: bool,
    pub since: DateTime<Utc>,
}

/// The last maintenance performed on a machine.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MaintenanceView {
    pub task_id: String,
    pub at: DateTime<Utc>,
}

impl MachineView {
    pub fn new(m: &MachineRecord, version: u64) -> Self {
        Self {
            machine_id: m.machine_id.to_string(),
            machine_type: m.machine_type.to_string(),
            line: m.line.to_string(),
            ideal_cycle_time_s: m.ideal_cycle_time().seconds(),
            current_status: m.current.as_ref().map(|c| name_of(&c.state)),
            current_state: m.current.as_ref().map(|c| CurrentStateView {
                state: name_of(&c.state),
                reason_code: c.reason_code.as_ref().map(ToString::to_string),
                planned: c.planned,
                since: c.since,
            }),
            last_maintenance: m.last_maintenance.as_ref().map(|r| MaintenanceView {
                task_id: r.task_id.to_string(),
                at: r.at,
            }),
            good_count: m.good_count,
            scrap_count: m.scrap_count,
            run_time_s: m.run_time_ms / 1000,
            registered_at: m.registered_at,
            version,
        }
    }
}

/// A maintenance task.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TaskView {
    pub task_id: String,
    pub machine_id: String,
    /// `preventive`, `predictive` or `corrective`.
    pub kind: String,
    /// `scheduled`, `in_progress`, `completed` or `cancelled`.
    pub status: String,
    pub scheduled_date: DateTime<Utc>,
    pub description: Option<String>,
    pub policy_id: Option<String>,
    /// What a predictive alert saw.
    #[schema(value_type = Option<Object>)]
    pub evidence: Option<Value>,
    /// Still open after its scheduled date.
    pub overdue: bool,
    pub scheduled_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub notes: Option<String>,
    pub parts_used: Vec<PartView>,
    pub cancelled_at: Option<DateTime<Utc>>,
    pub cancel_reason: Option<String>,
    /// Who acknowledged the task on the floor first (a token's name), and when (ADR 0050).
    pub acknowledged_by: Option<String>,
    pub acknowledged_at: Option<DateTime<Utc>>,
    pub version: u64,
}

/// A spare part used by a task.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PartView {
    pub item_id: String,
    #[serde(with = "rust_decimal::serde::float")]
    #[schema(value_type = f64)]
    pub qty: Decimal,
}

impl TaskView {
    pub fn new(t: &Task, version: u64, now: DateTime<Utc>) -> Self {
        Self {
            task_id: t.task_id.to_string(),
            machine_id: t.machine_id.to_string(),
            kind: name_of(&t.kind),
            status: name_of(&t.status),
            scheduled_date: t.scheduled_date,
            description: t.description.as_ref().map(ToString::to_string),
            policy_id: t.policy_id.as_ref().map(ToString::to_string),
            evidence: t
                .evidence
                .as_ref()
                .and_then(|e| serde_json::to_value(e).ok()),
            overdue: t.is_overdue(now),
            scheduled_at: t.scheduled_at,
            started_at: t.started_at,
            completed_at: t.completed_at,
            notes: t.notes.as_ref().map(ToString::to_string),
            parts_used: t
                .parts_used
                .iter()
                .map(|p| PartView {
                    item_id: p.item_id.to_string(),
                    qty: p.qty.value(),
                })
                .collect(),
            cancelled_at: t.cancelled_at,
            cancel_reason: t.cancel_reason.as_ref().map(ToString::to_string),
            acknowledged_by: t.acknowledged_by.as_ref().map(ToString::to_string),
            acknowledged_at: t.acknowledged_at,
            version,
        }
    }
}

/// The stock level of an item at a location.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LevelView {
    pub item_id: String,
    /// `raw` or `finished`.
    pub item_type: String,
    pub location: String,
    #[serde(with = "rust_decimal::serde::float")]
    #[schema(value_type = f64)]
    pub quantity: Decimal,
}

/// An item's stock across locations.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ItemView {
    pub item_id: String,
    pub item_type: String,
    pub levels: Vec<LevelView>,
    #[serde(with = "rust_decimal::serde::float")]
    #[schema(value_type = f64)]
    pub total: Decimal,
    /// Sum of the shortages recorded by backflush.
    #[serde(with = "rust_decimal::serde::float")]
    #[schema(value_type = f64)]
    pub shortage_total: Decimal,
    pub version: u64,
}

impl ItemView {
    pub fn new(i: &Item, version: u64) -> Self {
        let item_type = name_of(&i.item_type);
        Self {
            item_id: i.item_id.to_string(),
            levels: i
                .levels
                .iter()
                .map(|(location, quantity)| LevelView {
                    item_id: i.item_id.to_string(),
                    item_type: item_type.clone(),
                    location: location.to_string(),
                    quantity: *quantity,
                })
                .collect(),
            item_type,
            total: i.total(),
            shortage_total: i.shortage_total,
            version,
        }
    }
}

/// An operator as it is now (from their stream).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OperatorView {
    pub operator_id: String,
    pub name: String,
    pub badge_id: Option<String>,
    pub skills: Vec<String>,
    /// The lines they may work.
    pub lines: Vec<String>,
    pub active: bool,
    /// The orders they are clocked on now.
    pub clocked_on: Vec<String>,
    /// The open sessions: order, machine or workstation, since when.
    pub sessions: Vec<SessionView>,
    pub registered_at: DateTime<Utc>,
    pub deactivated_at: Option<DateTime<Utc>>,
    pub version: u64,
}

/// An open labour session.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SessionView {
    pub order_id: String,
    pub machine_id: Option<String>,
    pub since: DateTime<Utc>,
}

impl OperatorView {
    pub fn new(o: &shopfloor_domain::operator::OperatorRecord, version: u64) -> Self {
        Self {
            operator_id: o.operator_id.to_string(),
            name: o.name.to_string(),
            badge_id: o.badge_id.as_ref().map(ToString::to_string),
            skills: o.skills.iter().map(ToString::to_string).collect(),
            lines: o.lines.iter().map(ToString::to_string).collect(),
            active: o.active,
            clocked_on: o.clocked_on.keys().map(ToString::to_string).collect(),
            sessions: o
                .clocked_on
                .iter()
                .map(|(order_id, s)| SessionView {
                    order_id: order_id.to_string(),
                    machine_id: s.machine_id.as_ref().map(ToString::to_string),
                    since: s.since,
                })
                .collect(),
            registered_at: o.registered_at,
            deactivated_at: o.deactivated_at,
            version,
        }
    }
}

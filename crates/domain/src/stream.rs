//! [`StreamType`]: the kinds of stream in the log, one per aggregate.
//!
//! Stream types appear in the event store, NATS subjects, read-model routing and
//! the audit API; naming them by this enum instead of string literals means a new
//! aggregate or a misspelling is a compile error, not a silently empty read model.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The kind of a stream: the aggregate type whose events it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamType {
    ProductionOrder,
    Machine,
    MaintenanceTask,
    InventoryItem,
    MaintenancePolicy,
    Operator,
    AlertRule,
    Alert,
    ReasonCatalogue,
    SpcCharacteristic,
    EquipmentHierarchy,
}

impl StreamType {
    /// Every stream type.
    pub const ALL: [StreamType; 11] = [
        StreamType::ProductionOrder,
        StreamType::Machine,
        StreamType::MaintenanceTask,
        StreamType::InventoryItem,
        StreamType::MaintenancePolicy,
        StreamType::Operator,
        StreamType::AlertRule,
        StreamType::Alert,
        StreamType::ReasonCatalogue,
        StreamType::SpcCharacteristic,
        StreamType::EquipmentHierarchy,
    ];

    /// The stored name (also the aggregate's `TYPE`).
    pub const fn as_str(self) -> &'static str {
        match self {
            StreamType::ProductionOrder => "production_order",
            StreamType::Machine => "machine",
            StreamType::MaintenanceTask => "maintenance_task",
            StreamType::InventoryItem => "inventory_item",
            StreamType::MaintenancePolicy => "maintenance_policy",
            StreamType::Operator => "operator",
            StreamType::AlertRule => "alert_rule",
            StreamType::Alert => "alert",
            StreamType::ReasonCatalogue => "reason_catalogue",
            StreamType::SpcCharacteristic => "spc_characteristic",
            StreamType::EquipmentHierarchy => "equipment_hierarchy",
        }
    }

    /// The stream type of a stored name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == name)
    }
}

impl fmt::Display for StreamType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<str> for StreamType {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<StreamType> for str {
    fn eq(&self, other: &StreamType) -> bool {
        self == other.as_str()
    }
}

impl PartialEq<StreamType> for String {
    fn eq(&self, other: &StreamType) -> bool {
        self.as_str() == other.as_str()
    }
}

//! The pure domain of Shopfloor: aggregates, their commands, events and business rules.
//!
//! Nothing here does I/O or knows about tokio, sqlx, axum or NATS. Each aggregate implements
//! [`cqrs_es::Aggregate`] with `Services = ()`; its `handle` only calls the synchronous, pure
//! [`Decide::decide`] and writes the resulting events to the sink, and its `apply` only folds
//! an event into state (it never fails). Facts owned by someone else (the current time, the
//! order's bill of materials, a machine's usage counters, ...) are looked up by the caller and
//! put into the command.
//!
//! # Layout
//! - [`values`]: validated identifiers, free text and quantities used by every command and event.
//! - [`reason`]: the downtime reason-code catalogue (planned/unplanned, six big losses).
//! - [`order`]: production orders (`production_order`): status, production reports, inspections.
//! - [`machine`]: machines (`machine`): states by floor time, parts, cycle time, stop
//!   classification, usage counters for preventive maintenance.
//! - [`maintenance`]: maintenance tasks (`maintenance_task`).
//! - [`operator`]: operators (`operator`): who they are, the lines they may work, and their
//!   labour (clock on / clock off an order by floor time).
//! - [`inventory`]: stock of one item across locations (`inventory_item`), backflush.
//! - [`lot`]: lots inside an item's stream: receipt, output lots, split, merge, move, quality
//!   holds, pick order, and the plan of a hold over a forward trace (ADR 0057).
//! - [`policy`]: preventive-maintenance policies (`maintenance_policy`).
//! - [`alert`]: alert rules (`alert_rule`) and alerts (`alert`): raised, acknowledged,
//!   escalated, resolved.
//! - [`spc`]: statistical process control (`spc_characteristic`): control charts, frozen
//!   and versioned limits, run-rule signals, capability (ADR 0056).
//! - [`hierarchy`]: the ISA-95 equipment hierarchy (`equipment_hierarchy`): enterprise,
//!   sites, areas, lines, work cells and where machines stand, with effective times
//!   (ADR 0062).
//! - [`stream`]: [`StreamType`], the kinds of stream in the log.
//! - [`process`]: the pure half of the process managers: given an event and looked-up facts,
//!   the commands to issue next, each with a deterministic command id.
//!
//! # Event convention
//! Every event enum is internally tagged `#[serde(tag = "event_type")]`; every variant is a
//! struct variant named in PascalCase past tense with a per-aggregate prefix (`Order*`,
//! `Machine*`, `MaintenanceTask*`, `Inventory*`, `Policy*`), so names are unique across the
//! system; `DomainEvent::event_type()` returns the variant name and `event_version()` returns
//! `"1"`. The serialized JSON of each event is pinned by a snapshot test.

pub mod alert;
pub mod hierarchy;
pub mod inventory;
pub mod lot;
pub mod machine;
pub mod maintenance;
pub mod operator;
pub mod order;
pub mod policy;
pub mod process;
pub mod reason;
pub mod reason_codes;
pub mod spc;
pub mod stream;
pub mod values;

pub use alert::{Alert, AlertRule};
pub use hierarchy::EquipmentHierarchy;
pub use inventory::InventoryItem;
pub use machine::Machine;
pub use maintenance::MaintenanceTask;
pub use operator::Operator;
pub use order::ProductionOrder;
pub use policy::MaintenancePolicy;
pub use reason_codes::PlantReasons;
pub use spc::SpcCharacteristic;
pub use stream::StreamType;

use cqrs_es::Aggregate;

/// The most parts (good + scrap) one production report may count. A single report above this is
/// a counter glitch, not production; the bound also keeps every sum and product in the domain
/// far from overflow.
pub const MAX_PARTS_PER_REPORT: u64 = 100_000_000;

/// The `cqrs_es::Aggregate::handle` of an aggregate that implements [`Decide`]: decide, then
/// write each event to the sink. One body for every aggregate, used inside its
/// `impl Aggregate` block.
#[macro_export]
macro_rules! handle_by_deciding {
    () => {
        async fn handle(
            &mut self,
            command: Self::Command,
            _services: &Self::Services,
            sink: &cqrs_es::event_sink::EventSink<Self>,
        ) -> Result<(), Self::Error> {
            for event in $crate::Decide::decide(self, command)? {
                sink.write(event, self).await;
            }
            Ok(())
        }
    };
}

/// The pure decision of an aggregate: the events a command produces in the current state, or the
/// business rule it breaks. Deciding never changes the state; a refusal therefore changes
/// nothing.
pub trait Decide: Aggregate {
    /// Decides `command` against the current state.
    fn decide(&self, command: Self::Command) -> Result<Vec<Self::Event>, Self::Error>;

    /// Decides `command` and applies the resulting events (synchronously; for tests and tools).
    fn execute(&mut self, command: Self::Command) -> Result<Vec<Self::Event>, Self::Error> {
        let events = self.decide(command)?;
        for event in &events {
            self.apply(event.clone());
        }
        Ok(events)
    }

    /// The state after folding `events` into the empty aggregate.
    fn replay(events: impl IntoIterator<Item = Self::Event>) -> Self {
        let mut aggregate = Self::default();
        for event in events {
            aggregate.apply(event);
        }
        aggregate
    }
}

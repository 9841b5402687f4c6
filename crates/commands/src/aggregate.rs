//! [`AnyAggregate`]: every aggregate type behind one enum, so one batch can hold
//! commands for machines, orders, tasks, stock and policies, and one cache can
//! keep them all, without type erasure.

use cqrs_es::Aggregate;
use shopfloor_domain::process::Target;
use shopfloor_domain::reason::ReasonCatalogue;
use shopfloor_domain::{
    Alert, AlertRule, Decide, EquipmentHierarchy, InventoryItem, Machine, MaintenancePolicy,
    MaintenanceTask, Operator, PlantReasons, ProductionOrder, SpcCharacteristic, StreamType,
};
use shopfloor_eventstore::repository::encode_events;
use shopfloor_eventstore::{
    AggregateRepository, EventMetadata, EventStore, NewEvent, StoreError, StreamRef,
};

use crate::error::{Classify, CommandError};

/// One aggregate of any type, as loaded or as a batch has left it.
#[derive(Debug, Clone)]
pub enum AnyAggregate {
    ProductionOrder(ProductionOrder),
    Machine(Machine),
    MaintenanceTask(MaintenanceTask),
    InventoryItem(InventoryItem),
    MaintenancePolicy(MaintenancePolicy),
    Operator(Operator),
    AlertRule(AlertRule),
    Alert(Alert),
    PlantReasons(PlantReasons),
    SpcCharacteristic(SpcCharacteristic),
    EquipmentHierarchy(EquipmentHierarchy),
}

/// A command decided: the events to append, already applied to the aggregate.
pub(crate) type Decided = Vec<NewEvent>;

/// The store's view of a stream, for one aggregate type.
fn repo<A: Aggregate>(store: &EventStore, snapshot_every: u64) -> AggregateRepository<A> {
    AggregateRepository::<A>::new(store.clone()).with_snapshots(snapshot_every)
}

/// Decides `command` on `aggregate`; on success applies the events to it and
/// encodes them for `stream`.
fn decide_on<A>(
    aggregate: &mut A,
    command: A::Command,
    stream: &StreamRef,
    metadata: &EventMetadata,
    command_id: Option<&str>,
) -> Result<Decided, CommandError>
where
    A: Decide,
    A::Error: Classify,
{
    let events = aggregate.decide(command);
    carry_out(aggregate, events, stream, metadata, command_id)
}

/// Encodes the events of a decision for `stream` and applies them to `aggregate`,
/// or turns a refusal into [`CommandError::Rejected`].
fn carry_out<A>(
    aggregate: &mut A,
    decided: Result<Vec<A::Event>, A::Error>,
    stream: &StreamRef,
    metadata: &EventMetadata,
    command_id: Option<&str>,
) -> Result<Decided, CommandError>
where
    A: Aggregate,
    A::Error: Classify,
{
    let events = decided.map_err(|e| CommandError::Rejected {
        kind: e.kind(),
        message: e.to_string(),
    })?;
    let encoded = encode_events(stream, &events, metadata, command_id)?;
    for e in events {
        aggregate.apply(e);
    }
    Ok(encoded)
}

impl AnyAggregate {
    /// The aggregate of a stream that has no events yet.
    pub(crate) fn empty(stream_type: StreamType) -> Self {
        match stream_type {
            StreamType::ProductionOrder => Self::ProductionOrder(ProductionOrder::default()),
            StreamType::Machine => Self::Machine(Machine::default()),
            StreamType::MaintenanceTask => Self::MaintenanceTask(MaintenanceTask::default()),
            StreamType::InventoryItem => Self::InventoryItem(InventoryItem::default()),
            StreamType::MaintenancePolicy => Self::MaintenancePolicy(MaintenancePolicy::default()),
            StreamType::Operator => Self::Operator(Operator::default()),
            StreamType::AlertRule => Self::AlertRule(AlertRule::default()),
            StreamType::Alert => Self::Alert(Alert::default()),
            StreamType::ReasonCatalogue => Self::PlantReasons(PlantReasons::default()),
            StreamType::SpcCharacteristic => Self::SpcCharacteristic(SpcCharacteristic::default()),
            StreamType::EquipmentHierarchy => {
                Self::EquipmentHierarchy(EquipmentHierarchy::default())
            }
        }
    }

    /// Loads a stream as it is now (snapshot-aware), with its version.
    pub(crate) async fn load(
        store: &EventStore,
        snapshot_every: u64,
        stream_type: StreamType,
        id: &str,
    ) -> Result<(Self, u64), StoreError> {
        Ok(match stream_type {
            StreamType::ProductionOrder => {
                let (a, v) = repo::<ProductionOrder>(store, snapshot_every)
                    .load(id)
                    .await?;
                (Self::ProductionOrder(a), v)
            }
            StreamType::Machine => {
                let (a, v) = repo::<Machine>(store, snapshot_every).load(id).await?;
                (Self::Machine(a), v)
            }
            StreamType::MaintenanceTask => {
                let (a, v) = repo::<MaintenanceTask>(store, snapshot_every)
                    .load(id)
                    .await?;
                (Self::MaintenanceTask(a), v)
            }
            StreamType::InventoryItem => {
                let (a, v) = repo::<InventoryItem>(store, snapshot_every)
                    .load(id)
                    .await?;
                (Self::InventoryItem(a), v)
            }
            StreamType::MaintenancePolicy => {
                let (a, v) = repo::<MaintenancePolicy>(store, snapshot_every)
                    .load(id)
                    .await?;
                (Self::MaintenancePolicy(a), v)
            }
            StreamType::Operator => {
                let (a, v) = repo::<Operator>(store, snapshot_every).load(id).await?;
                (Self::Operator(a), v)
            }
            StreamType::AlertRule => {
                let (a, v) = repo::<AlertRule>(store, snapshot_every).load(id).await?;
                (Self::AlertRule(a), v)
            }
            StreamType::Alert => {
                let (a, v) = repo::<Alert>(store, snapshot_every).load(id).await?;
                (Self::Alert(a), v)
            }
            StreamType::ReasonCatalogue => {
                let (a, v) = repo::<PlantReasons>(store, snapshot_every).load(id).await?;
                (Self::PlantReasons(a), v)
            }
            StreamType::SpcCharacteristic => {
                let (a, v) = repo::<SpcCharacteristic>(store, snapshot_every)
                    .load(id)
                    .await?;
                (Self::SpcCharacteristic(a), v)
            }
            StreamType::EquipmentHierarchy => {
                let (a, v) = repo::<EquipmentHierarchy>(store, snapshot_every)
                    .load(id)
                    .await?;
                (Self::EquipmentHierarchy(a), v)
            }
        })
    }

    /// Decides a command addressed to this aggregate, with `reasons` as the plant's
    /// reason catalogue; on success the events are applied here and returned
    /// encoded. A refusal leaves the aggregate as it was.
    pub(crate) fn decide(
        &mut self,
        target: Target,
        reasons: &ReasonCatalogue,
        stream: &StreamRef,
        metadata: &EventMetadata,
        command_id: Option<&str>,
    ) -> Result<Decided, CommandError> {
        match (self, target) {
            (Self::ProductionOrder(a), Target::ProductionOrder { command, .. }) => {
                decide_on(a, command, stream, metadata, command_id)
            }
            (Self::Machine(a), Target::Machine { command, .. }) => {
                let decided = a.decide_with(command, reasons);
                carry_out(a, decided, stream, metadata, command_id)
            }
            (Self::MaintenanceTask(a), Target::MaintenanceTask { command, .. }) => {
                decide_on(a, command, stream, metadata, command_id)
            }
            (Self::InventoryItem(a), Target::InventoryItem { command, .. }) => {
                decide_on(a, command, stream, metadata, command_id)
            }
            (Self::MaintenancePolicy(a), Target::MaintenancePolicy { command, .. }) => {
                decide_on(a, command, stream, metadata, command_id)
            }
            (Self::Operator(a), Target::Operator { command, .. }) => {
                decide_on(a, command, stream, metadata, command_id)
            }
            (Self::AlertRule(a), Target::AlertRule { command, .. }) => {
                decide_on(a, command, stream, metadata, command_id)
            }
            (Self::Alert(a), Target::Alert { command, .. }) => {
                decide_on(a, command, stream, metadata, command_id)
            }
            (Self::PlantReasons(a), Target::ReasonCatalogue { command }) => {
                decide_on(a, command, stream, metadata, command_id)
            }
            (Self::SpcCharacteristic(a), Target::SpcCharacteristic { command, .. }) => {
                decide_on(a, command, stream, metadata, command_id)
            }
            (Self::EquipmentHierarchy(a), Target::EquipmentHierarchy { command }) => {
                decide_on(a, command, stream, metadata, command_id)
            }
            (_, target) => Err(CommandError::Store(StoreError::Invalid(format!(
                "a {} command sent to another aggregate type",
                target.stream_type()
            )))),
        }
    }

    /// Stores this aggregate as the snapshot of its stream at `version`.
    pub(crate) async fn save_snapshot(
        &self,
        store: &EventStore,
        id: &str,
        version: u64,
    ) -> Result<(), StoreError> {
        match self {
            Self::ProductionOrder(a) => repo(store, 1).save_snapshot(id, version, a).await,
            Self::Machine(a) => repo(store, 1).save_snapshot(id, version, a).await,
            Self::MaintenanceTask(a) => repo(store, 1).save_snapshot(id, version, a).await,
            Self::InventoryItem(a) => repo(store, 1).save_snapshot(id, version, a).await,
            Self::MaintenancePolicy(a) => repo(store, 1).save_snapshot(id, version, a).await,
            Self::Operator(a) => repo(store, 1).save_snapshot(id, version, a).await,
            Self::AlertRule(a) => repo(store, 1).save_snapshot(id, version, a).await,
            Self::Alert(a) => repo(store, 1).save_snapshot(id, version, a).await,
            Self::PlantReasons(a) => repo(store, 1).save_snapshot(id, version, a).await,
            Self::SpcCharacteristic(a) => repo(store, 1).save_snapshot(id, version, a).await,
            Self::EquipmentHierarchy(a) => repo(store, 1).save_snapshot(id, version, a).await,
        }
    }
}

/// A typed aggregate out of [`AnyAggregate`].
pub trait FromAny: Sized {
    fn from_any(any: &AnyAggregate) -> Option<Self>;
}

macro_rules! from_any {
    ($($variant:ident),*) => {$(
        impl FromAny for $variant {
            fn from_any(any: &AnyAggregate) -> Option<Self> {
                match any {
                    AnyAggregate::$variant(a) => Some(a.clone()),
                    _ => None,
                }
            }
        }
    )*};
}

from_any!(
    ProductionOrder,
    Machine,
    MaintenanceTask,
    InventoryItem,
    MaintenancePolicy,
    Operator,
    AlertRule,
    Alert,
    PlantReasons,
    SpcCharacteristic,
    EquipmentHierarchy
);

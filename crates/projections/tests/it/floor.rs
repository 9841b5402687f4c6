//! Helpers that write domain events straight into the event store, with the
//! floor times a test needs.

use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use rust_decimal::Decimal;
use shopfloor_domain::inventory::{Allocation, InventoryEvent, ItemType};
use shopfloor_domain::machine::{MachineEvent, MachineStatus};
use shopfloor_domain::maintenance::{TaskEvent, TaskKind};
use shopfloor_domain::order::OrderEvent;
use shopfloor_domain::reason::{ReasonCatalogue, ReasonCategory};
use shopfloor_domain::values::*;
use shopfloor_eventstore::repository::encode_event;
use shopfloor_eventstore::{EventMetadata, EventStore, ExpectedVersion, NewEvent, StreamRef};
use shopfloor_projections::projection::apply_from_store;
use shopfloor_projections::Projection;
use sqlx::PgPool;
use uuid::Uuid;

pub fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// `2024-01-01T{hh:mm}:00Z`.
pub fn at(hhmm: &str) -> DateTime<Utc> {
    t(&format!("2024-01-01T{hhmm}:00Z"))
}

pub struct Floor {
    pub store: EventStore,
}

impl Floor {
    pub fn new(pool: &PgPool) -> Self {
        Self {
            store: EventStore::new(pool.clone()),
        }
    }

    pub async fn append<E: DomainEvent>(&self, stream_type: &str, id: &str, e: E) -> i64 {
        let (event_type, schema_version, payload) = encode_event(&e).unwrap();
        self.raw(stream_type, id, &event_type, schema_version, payload)
            .await
    }

    pub async fn raw(
        &self,
        stream_type: &str,
        id: &str,
        event_type: &str,
        schema_version: i32,
        payload: serde_json::Value,
    ) -> i64 {
        let e = NewEvent {
            event_id: Uuid::new_v4(),
            event_type: event_type.into(),
            schema_version,
            payload,
            metadata: EventMetadata {
                actor: Some("tester".into()),
                ..Default::default()
            },
        };
        self.store
            .append(
                &StreamRef::new(stream_type, id),
                ExpectedVersion::Any,
                vec![e],
            )
            .await
            .unwrap()
            .last_position
    }

    pub async fn machine(&self, e: MachineEvent) -> i64 {
        let id = match &e {
            MachineEvent::MachineRegistered { machine_id, .. }
            | MachineEvent::MachineStateChanged { machine_id, .. }
            | MachineEvent::MachinePartsProduced { machine_id, .. }
            | MachineEvent::MachineIdealCycleTimeChanged { machine_id, .. }
            | MachineEvent::MachineMaintenancePerformed { machine_id, .. }
            | MachineEvent::MachineStopClassified { machine_id, .. } => machine_id.to_string(),
        };
        self.append("machine", &id, e).await
    }

    pub async fn register(&self, id: &str, line: &str, ict: f64) {
        self.machine(MachineEvent::MachineRegistered {
            machine_id: MachineId::new(id).unwrap(),
            machine_type: MachineType::new("press").unwrap(),
            line: LineId::new(line).unwrap(),
            ideal_cycle_time_s: CycleTime::new(ict).unwrap(),
            at: t("2023-12-01T00:00:00Z"),
        })
        .await;
    }

    /// A state change; `reason` is resolved against the catalogue as the domain does.
    pub async fn state(
        &self,
        id: &str,
        state: &str,
        reason: Option<&str>,
        planned: Option<bool>,
        when: DateTime<Utc>,
    ) -> i64 {
        self.machine(state_event(id, state, reason, planned, when))
            .await
    }

    pub async fn parts(
        &self,
        id: &str,
        good: u64,
        scrap: u64,
        ict: f64,
        when: DateTime<Utc>,
    ) -> i64 {
        self.machine(MachineEvent::MachinePartsProduced {
            scrap_reason: None,
            machine_id: MachineId::new(id).unwrap(),
            good,
            scrap,
            order_id: None,
            ideal_cycle_time_s: CycleTime::new(ict).unwrap(),
            at: when,
        })
        .await
    }

    /// A parts report whose scrap has `reason` (a scrap reason code), or none.
    pub async fn scrap(
        &self,
        id: &str,
        good: u64,
        scrap: u64,
        reason: Option<&str>,
        when: DateTime<Utc>,
    ) -> i64 {
        self.machine(MachineEvent::MachinePartsProduced {
            machine_id: MachineId::new(id).unwrap(),
            good,
            scrap,
            order_id: None,
            ideal_cycle_time_s: CycleTime::new(30.0).unwrap(),
            at: when,
            scrap_reason: reason.map(|r| ReasonCode::new(r).unwrap()),
        })
        .await
    }

    pub async fn classify(&self, id: &str, stop_at: DateTime<Utc>, code: &str) -> i64 {
        let def = ReasonCatalogue::builtin().get(code).unwrap().clone();
        self.machine(MachineEvent::MachineStopClassified {
            machine_id: MachineId::new(id).unwrap(),
            stop_at,
            state: MachineStatus::Down,
            reason_code: def.code.clone(),
            category: def.category,
            loss: def.loss,
            planned: def.planned(),
            by: Actor::new("supervisor").unwrap(),
            at: stop_at,
        })
        .await
    }
}

pub fn state_event(
    id: &str,
    state: &str,
    reason: Option<&str>,
    planned: Option<bool>,
    when: DateTime<Utc>,
) -> MachineEvent {
    let status = match state {
        "running" => MachineStatus::Running,
        "idle" => MachineStatus::Idle,
        _ => MachineStatus::Down,
    };
    let catalogue = ReasonCatalogue::builtin();
    let def = match reason {
        Some(r) => catalogue.get(r).or_else(|| catalogue.unclassified()),
        None if status == MachineStatus::Running => None,
        None => catalogue.unclassified(),
    };
    let planned = planned.unwrap_or_else(|| def.is_some_and(|d| d.planned()));
    MachineEvent::MachineStateChanged {
        machine_id: MachineId::new(id).unwrap(),
        state: status,
        reason: reason.map(|r| Text::new(r).unwrap()),
        reason_code: def.map(|d| d.code.clone()),
        category: def.map(|d| {
            if planned {
                ReasonCategory::Planned
            } else {
                d.category
            }
        }),
        loss: def.and_then(|d| d.loss),
        planned,
        at: when,
    }
}

pub fn order_created(id: &str, product: &str, qty: u64, when: DateTime<Utc>) -> OrderEvent {
    OrderEvent::OrderCreated {
        order_id: OrderId::new(id).unwrap(),
        product_id: ProductId::new(product).unwrap(),
        quantity: OrderQuantity::new(qty).unwrap(),
        bom: vec![],
        input_location: None,
        output_location: Location::new("FG").unwrap(),
        at: when,
    }
}

pub fn task_scheduled(id: &str, machine: &str, date: DateTime<Utc>) -> TaskEvent {
    TaskEvent::MaintenanceTaskScheduled {
        task_id: TaskId::new(id).unwrap(),
        machine_id: MachineId::new(machine).unwrap(),
        kind: TaskKind::Preventive,
        scheduled_date: date,
        description: Some(Text::new("grease the press").unwrap()),
        evidence: None,
        policy_id: None,
        at: date,
    }
}

pub fn received(item: &str, location: &str, qty: i64, level: i64) -> InventoryEvent {
    InventoryEvent::InventoryReceived {
        item_id: ItemId::new(item).unwrap(),
        item_type: ItemType::Raw,
        location: Location::new(location).unwrap(),
        qty: Quantity::new(Decimal::from(qty)).unwrap(),
        new_level: Decimal::from(level),
        reason: Some(Text::new("delivery").unwrap()),
        at: at("07:00"),
    }
}

pub fn consumed(
    item: &str,
    order: &str,
    takes: &[(&str, i64, i64)],
    shortage: i64,
) -> InventoryEvent {
    let requested: i64 = takes.iter().map(|x| x.1).sum::<i64>() + shortage;
    InventoryEvent::InventoryConsumed {
        item_id: ItemId::new(item).unwrap(),
        item_type: ItemType::Raw,
        order_id: OrderId::new(order).unwrap(),
        requested: Quantity::new(Decimal::from(requested)).unwrap(),
        location: None,
        allocations: takes
            .iter()
            .map(|(l, q, lvl)| Allocation {
                location: Location::new(l).unwrap(),
                qty: Decimal::from(*q),
                new_level: Decimal::from(*lvl),
            })
            .collect(),
        shortage: Decimal::from(shortage),
        at: at("09:00"),
    }
}

/// Every read model brought up to the store's head.
pub async fn project_all(pool: &PgPool) {
    for p in Projection::ALL {
        apply_from_store(pool, p).await.unwrap();
    }
}

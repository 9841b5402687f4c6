//! Helpers: registering machines, building messages, reading streams.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use shopfloor_commands::CommandService;
use shopfloor_domain::machine::{MachineCommand, RegisterMachine};
use shopfloor_domain::values::{CycleTime, LineId, MachineId, MachineType};
use shopfloor_domain::{Decide, Machine};
use shopfloor_eventstore::repository::meta;
use shopfloor_eventstore::{
    AggregateRepository, EventStore, ExpectedVersion, RecordedEvent, StreamRef,
};
use shopfloor_ingest::{Engine, Incoming, Mapping};
use sqlx::PgPool;

pub fn ts(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("test timestamp")
        .with_timezone(&Utc)
}

/// Registers a machine directly through the domain and the store.
pub async fn register(pool: &PgPool, id: &str) {
    let machine = Machine::default();
    let events = machine
        .decide(MachineCommand::RegisterMachine(RegisterMachine {
            machine_id: MachineId::new(id).expect("id"),
            machine_type: MachineType::new("press").expect("type"),
            line: LineId::new("line-1").expect("line"),
            ideal_cycle_time_s: CycleTime::new(2.0).expect("cycle"),
            at: ts("2024-01-01T00:00:00Z"),
        }))
        .expect("register");
    let stream = StreamRef::new(Machine::TYPE, id);
    let mut md = HashMap::new();
    md.insert(meta::ACTOR.to_string(), "test".to_string());
    let new = AggregateRepository::<Machine>::new_events(&stream, &events, &md).expect("encode");
    EventStore::new(pool.clone())
        .append(&stream, ExpectedVersion::NoStream, new)
        .await
        .expect("append");
}

pub async fn events(pool: &PgPool, stream_type: &str, id: &str) -> Vec<RecordedEvent> {
    EventStore::new(pool.clone())
        .read_stream_all(&StreamRef::new(stream_type, id), 1)
        .await
        .expect("read")
}

/// The events of a machine after its registration, as (type, payload).
pub async fn machine_events(pool: &PgPool, id: &str) -> Vec<(String, serde_json::Value)> {
    events(pool, "machine", id)
        .await
        .into_iter()
        .skip(1)
        .map(|e| (e.event_type, e.payload))
        .collect()
}

pub async fn predictive_tasks(pool: &PgPool, machine_id: &str) -> Vec<serde_json::Value> {
    let rows: Vec<serde_json::Value> = sqlx::query_scalar(
        "SELECT payload FROM events WHERE stream_type = 'maintenance_task' \
         AND event_type = 'MaintenanceTaskScheduled' AND payload->>'machine_id' = $1 ORDER BY position",
    )
    .bind(machine_id)
    .fetch_all(pool)
    .await
    .expect("tasks");
    rows
}

/// A message published once (a fresh identity, or its `msg_id`'s): clone it to
/// stand for a redelivery.
pub fn msg(topic: &str, payload: impl Into<Vec<u8>>, at: DateTime<Utc>) -> Incoming {
    Incoming::at(topic, bytes::Bytes::from(payload.into()), at)
}

pub fn mapping(json: &str) -> Arc<Mapping> {
    Arc::new(Mapping::from_json(json).expect("mapping"))
}

/// A mapping with debounce off and no-signal off, unless `extra` (merged into
/// `defaults`) says otherwise.
pub fn plain_mapping() -> Arc<Mapping> {
    mapping(r#"{"defaults": {"min_dwell_ms": 0, "no_signal_timeout_s": 0}}"#)
}

/// The one writer, as `serve` builds it (group commit).
pub fn writer(pool: &PgPool) -> CommandService {
    CommandService::new(EventStore::new(pool.clone())).with_group_commit(256)
}

pub async fn engine(pool: &PgPool, ns: &str, mapping: Arc<Mapping>, now: DateTime<Utc>) -> Engine {
    Engine::load(writer(pool), ns, mapping, now)
        .await
        .expect("engine")
}

/// Polls `check` until it returns true or `timeout` passes.
pub async fn eventually<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A unique namespace per test.
pub fn namespace(test: &str) -> String {
    format!(
        "t{}-{test}",
        uuid::Uuid::new_v4()
            .simple()
            .to_string()
            .get(..8)
            .unwrap_or("x")
    )
}

//! All-or-nothing batches of machine events.
//!
//! Each machine is its own stream, so a batch over several machines cannot be one
//! `CommandService` command. Instead:
//! 1. the caller has already parsed every item into a domain command (any bad item → 400
//!    naming its index, before anything is loaded);
//! 2. each machine of the batch is loaded once, and every item is decided in batch order
//!    on its machine, the events applied as they come so later items see earlier ones; a
//!    refusal (unregistered machine, ...) fails the whole batch, naming the item;
//! 3. one [`AppendRequest`] per machine, each expecting the version it was loaded at, are
//!    appended in ONE transaction ([`EventStore::append_in`]); if any request fails the
//!    transaction is rolled back, so nothing of the batch is written;
//! 4. a version conflict (another writer got to a machine first) retries from 2.
//!
//! Idempotency: with an Idempotency-Key, item `i` gets the command id `{key id}/{i}`, from
//! which its event id is derived; a retried batch is recognised by the store as a duplicate
//! and appends nothing.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use serde_json::json;
use shopfloor_commands::error::Classify;
use shopfloor_commands::RejectionKind;
use shopfloor_domain::machine::MachineCommand;
use shopfloor_domain::values::MachineId;
use shopfloor_domain::{Decide, Machine};
use shopfloor_eventstore::repository::meta;
use shopfloor_eventstore::{
    AggregateRepository, AppendRequest, EventStore, ExpectedVersion, NewEvent, StoreError,
    StreamRef,
};
use tracing::instrument;

use crate::error::ApiError;
use crate::extract::Ctx;
use crate::AppState;

/// Attempts before a batch that keeps losing races gives up (503).
const MAX_ATTEMPTS: u32 = 8;
/// Same cadence as the command service: snapshot when a stream crosses a multiple.
const SNAPSHOT_EVERY: u64 = 200;

/// One item of a batch, already validated.
#[derive(Debug, Clone)]
pub struct MachineItem {
    pub machine_id: MachineId,
    pub command: MachineCommand,
    /// Floor time of the event.
    pub at: DateTime<Utc>,
}

struct Slot {
    machine_id: MachineId,
    aggregate: Machine,
    version: u64,
    events: Vec<NewEvent>,
}

/// Decides and appends the whole batch atomically; returns how many items were accepted.
#[instrument(skip_all, fields(items = items.len()))]
pub async fn append_machine_events(
    state: &AppState,
    ctx: &Ctx,
    items: &[MachineItem],
) -> Result<usize, ApiError> {
    if items.is_empty() {
        return Ok(0);
    }
    let repo =
        AggregateRepository::<Machine>::new(state.store.clone()).with_snapshots(SNAPSHOT_EVERY);
    let base_command_id = ctx.command_id();
    let mut order: Vec<MachineId> = Vec::new();
    for item in items {
        if !order.contains(&item.machine_id) {
            order.push(item.machine_id.clone());
        }
    }
    if ctx.expected_version.is_some() && order.len() > 1 {
        return Err(ApiError::bad_request(
            "If-Match applies to one stream: send the events of one machine only",
        ));
    }
    for _ in 0..MAX_ATTEMPTS {
        let mut slots: Vec<Slot> = Vec::with_capacity(order.len());
        let mut index: HashMap<&MachineId, usize> = HashMap::new();
        for id in &order {
            let (aggregate, version) = repo.load(id.as_str()).await?;
            if let Some(expected) = ctx.expected_version {
                if expected != version {
                    return Err(shopfloor_commands::CommandError::VersionMismatch {
                        stream_type: Machine::TYPE.to_string(),
                        expected,
                        actual: version,
                    }
                    .into());
                }
            }
            index.insert(id, slots.len());
            slots.push(Slot {
                machine_id: id.clone(),
                aggregate,
                version,
                events: Vec::new(),
            });
        }
        for (i, item) in items.iter().enumerate() {
            let Some(slot) = index.get(&item.machine_id).and_then(|&k| slots.get_mut(k)) else {
                return Err(ApiError::internal("batch slot missing"));
            };
            let events = slot
                .aggregate
                .decide(item.command.clone())
                .map_err(|e| refused(i, items.len(), &item.machine_id, &e))?;
            let stream = StreamRef::new(Machine::TYPE, slot.machine_id.as_str());
            let command_id = base_command_id.as_ref().map(|b| format!("{b}/{i}"));
            let metadata = metadata(ctx, command_id.as_deref(), item.at);
            slot.events
                .extend(AggregateRepository::<Machine>::new_events(
                    &stream, &events, &metadata,
                )?);
            for e in events {
                slot.aggregate.apply(e);
            }
        }
        let requests: Vec<AppendRequest> = slots
            .iter()
            .filter(|s| !s.events.is_empty())
            .map(|s| AppendRequest {
                stream: StreamRef::new(Machine::TYPE, s.machine_id.as_str()),
                expected: match s.version {
                    0 => ExpectedVersion::NoStream,
                    v => ExpectedVersion::Exact(v),
                },
                events: s.events.clone(),
            })
            .collect();
        let mut tx = state.pool.begin().await?;
        let results = EventStore::append_in(&mut tx, &requests).await?;
        let failure = results.iter().find_map(|r| r.as_ref().err());
        match failure {
            None => {
                tx.commit().await?;
                for (slot, result) in slots.iter().filter(|s| !s.events.is_empty()).zip(&results) {
                    let Ok(result) = result else { continue };
                    if !result.duplicate
                        && result.stream_version / SNAPSHOT_EVERY > slot.version / SNAPSHOT_EVERY
                    {
                        if let Err(e) = repo
                            .save_snapshot(
                                slot.machine_id.as_str(),
                                result.stream_version,
                                &slot.aggregate,
                            )
                            .await
                        {
                            tracing::warn!(error = %e, "snapshot not saved");
                        }
                    }
                }
                metrics::counter!("shopfloor_machine_events_accepted_total")
                    .increment(items.len() as u64);
                return Ok(items.len());
            }
            Some(StoreError::Conflict { actual, .. }) => {
                let actual = *actual;
                tx.rollback().await?;
                if let Some(expected) = ctx.expected_version {
                    return Err(shopfloor_commands::CommandError::VersionMismatch {
                        stream_type: Machine::TYPE.to_string(),
                        expected,
                        actual,
                    }
                    .into());
                }
                metrics::counter!("shopfloor_command_conflicts_total", "aggregate" => Machine::TYPE).increment(1);
                tokio::task::yield_now().await;
            }
            Some(StoreError::IdempotencyMismatch { .. }) => {
                tx.rollback().await?;
                return Err(ApiError::conflict(
                    "this Idempotency-Key was already used for other events",
                ));
            }
            Some(other) => {
                let e = ApiError::internal(other.to_string());
                tx.rollback().await?;
                return Err(e);
            }
        }
    }
    Err(ApiError::unavailable(
        "machine batch kept conflicting with other writers",
        1,
    ))
}

/// The event metadata of one item (what `CommandContext` would give a single command).
fn metadata(ctx: &Ctx, command_id: Option<&str>, at: DateTime<Utc>) -> HashMap<String, String> {
    let c = ctx.command(Some(at));
    let mut m = HashMap::new();
    m.insert(meta::ACTOR.to_string(), c.actor);
    m.insert(meta::SOURCE.to_string(), c.source.as_str().to_string());
    if let Some(v) = c.correlation_id {
        m.insert(meta::CORRELATION_ID.to_string(), v);
    }
    if let Some(v) = c.request_id {
        m.insert("request_id".to_string(), v);
    }
    if let Some(v) = command_id {
        m.insert(meta::COMMAND_ID.to_string(), v.to_string());
    }
    m.insert(meta::OCCURRED_AT.to_string(), at.to_rfc3339());
    m
}

/// The refusal of item `i`, failing the whole batch.
fn refused<E: Classify>(i: usize, n: usize, machine_id: &MachineId, e: &E) -> ApiError {
    let detail = if n > 1 {
        format!("events[{i}] (machine {machine_id}): {e}; nothing of the batch was recorded")
    } else {
        format!("machine {machine_id}: {e}")
    };
    let error = match e.kind() {
        RejectionKind::NotFound => ApiError::not_found(detail),
        RejectionKind::Conflict => ApiError::conflict(detail),
        RejectionKind::Invalid => ApiError::bad_request(detail).with_title("Event refused"),
    };
    error.with_extensions(json!({ "index": i }))
}

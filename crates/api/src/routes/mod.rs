//! The `/api/v1` routes, one module per resource, and the lookups they share.
//!
//! # Layout
//! - [`machines`]: register machines, their events (single or batch), a machine's state.
//! - [`orders`]: production orders, their transitions and inspections.
//! - [`people`]: operators, clocking on and off orders, labour (ADR 0036).
//! - [`stops`]: unclassified stops, classifying a stop.
//! - [`maintenance`]: maintenance tasks.
//! - [`inventory`]: inventory updates and an item's stock.
//! - [`lots`]: lots, genealogy (backward and forward traces) and quality holds (ADR 0057).
//! - [`tokens`]: bearer tokens (admin).
//! - [`audit`]: the global log, stream histories and states as of a version or time.
//! - [`reference`]: the plant's reason codes (editable, ADR 0053) and the scrap reasons.
//! - [`calendar`]: the plant's time zone and the lines' shifts (editable settings).
//! - [`hierarchy`]: the equipment hierarchy: nodes, machine placements, the tree (ADR 0062).
//! - [`reads`]: lists, levels, KPIs and reports from the read models.
//! - [`alerts`]: alert rules, alerts (acknowledge, resolve) and their delivery log.
//! - [`live`]: read-model changes as Server-Sent Events.
//! - [`reports`]: shift, day and week reports (PDF, CSV, JSON), their schedules and verification.
//! - [`spc`]: statistical process control: characteristics, samples, limits, charts, signals.
//! - [`docs`]: the OpenAPI document and its offline docs page.

pub mod alerts;
pub mod audit;
pub mod calendar;
pub mod docs;
pub mod hierarchy;
pub mod inventory;
pub mod live;
pub mod lots;
pub mod machines;
pub mod maintenance;
pub mod orders;
pub mod people;
pub mod reads;
pub mod reference;
pub mod reports;
pub mod spc;
pub mod stops;
pub mod tokens;

use chrono::{DateTime, Utc};
use shopfloor_domain::values::{ItemId, MachineId, OrderId, TaskId};
use shopfloor_domain::{InventoryItem, Machine, MaintenanceTask, ProductionOrder};

use cqrs_es::Aggregate;
use shopfloor_commands::aggregate::FromAny;

use crate::error::ApiError;
use crate::views::{ItemView, MachineView, OrderView, TaskView};
use crate::AppState;

/// The server's time, for commands that report something happening now.
pub(crate) fn now() -> DateTime<Utc> {
    Utc::now()
}

/// Which state of an aggregate a view shows.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Seen {
    /// As it is now: read from the store.
    Now,
    /// At this version or later: the answer to a command this process just executed,
    /// from the writer's cache without a read.
    AtLeast(u64),
}

/// An aggregate as [`Seen`] says, with its version.
pub(crate) async fn load_seen<A: Aggregate + FromAny>(
    state: &AppState,
    id: &str,
    seen: Seen,
) -> Result<(A, u64), ApiError> {
    Ok(match seen {
        Seen::Now => state.commands.load::<A>(id).await?,
        Seen::AtLeast(version) => state.commands.load_at_least::<A>(id, version).await?,
    })
}

/// A machine; 404 when it is not registered.
pub(crate) async fn machine_view(
    state: &AppState,
    id: &MachineId,
    seen: Seen,
) -> Result<MachineView, ApiError> {
    let (machine, version) = load_seen::<Machine>(state, id.as_str(), seen).await?;
    machine
        .machine()
        .map(|m| MachineView::new(m, version))
        .ok_or_else(|| ApiError::not_found(format!("machine {id} is not registered")))
}

/// 404 unless the machine is registered.
pub(crate) async fn require_machine(state: &AppState, id: &MachineId) -> Result<(), ApiError> {
    machine_view(state, id, Seen::Now).await.map(|_| ())
}

/// An order; 404 when it does not exist.
pub(crate) async fn order_view(
    state: &AppState,
    id: &OrderId,
    seen: Seen,
) -> Result<OrderView, ApiError> {
    let (order, version) = load_seen::<ProductionOrder>(state, id.as_str(), seen).await?;
    order
        .order()
        .map(|o| OrderView::new(o, version))
        .ok_or_else(|| ApiError::not_found(format!("production order {id} does not exist")))
}

/// A task as it is now; 404 when it does not exist.
pub(crate) async fn task_view(state: &AppState, id: &TaskId) -> Result<TaskView, ApiError> {
    let (task, version) = state.commands.load::<MaintenanceTask>(id.as_str()).await?;
    task.task()
        .map(|t| TaskView::new(t, version, now()))
        .ok_or_else(|| ApiError::not_found(format!("maintenance task {id} does not exist")))
}

/// An item's stock as it is now; 404 when it never had an event.
pub(crate) async fn item_view(state: &AppState, id: &ItemId) -> Result<ItemView, ApiError> {
    let (item, version) = state.commands.load::<InventoryItem>(id.as_str()).await?;
    item.item()
        .map(|i| ItemView::new(i, version))
        .ok_or_else(|| ApiError::not_found(format!("inventory item {id} does not exist")))
}

/// A short id for an entity the client did not name: derived from the Idempotency-Key when
/// there is one (so a retry addresses the same entity), random otherwise.
pub(crate) fn generated_id(prefix: &str, command_id: Option<&str>) -> String {
    let tail = match command_id {
        Some(c) => c
            .trim_start_matches("http:")
            .chars()
            .take(12)
            .collect::<String>(),
        None => uuid::Uuid::new_v4().simple().to_string()[..12].to_string(),
    };
    format!("{prefix}-{}", tail.to_uppercase())
}

//! The `/api/v1` routes, one module per resource, and the lookups they share.
//!
//! # Layout
//! - [`machines`]: register machines, their events (single or batch), a machine's state.
//! - [`orders`]: production orders, their transitions and inspections.
//! - [`maintenance`]: maintenance tasks.
//! - [`inventory`]: inventory updates and an item's stock.
//! - [`tokens`]: bearer tokens (admin).
//! - [`audit`]: the global log, stream histories and states as of a version or time.
//! - [`reference`]: the reason-code catalogue.
//! - [`reads`]: lists, levels, KPIs and reports from the read models.
//! - [`live`]: read-model changes as Server-Sent Events.
//! - [`docs`]: the OpenAPI document and its offline docs page.

pub mod audit;
pub mod docs;
pub mod inventory;
pub mod live;
pub mod machines;
pub mod maintenance;
pub mod orders;
pub mod reads;
pub mod reference;
pub mod tokens;

use chrono::{DateTime, Utc};
use shopfloor_domain::values::{ItemId, MachineId, OrderId, TaskId};
use shopfloor_domain::{InventoryItem, Machine, MaintenanceTask, ProductionOrder};

use crate::error::ApiError;
use crate::views::{ItemView, MachineView, OrderView, TaskView};
use crate::AppState;

/// The server's time, for commands that report something happening now.
pub(crate) fn now() -> DateTime<Utc> {
    Utc::now()
}

/// A machine as it is now; 404 when it is not registered.
pub(crate) async fn machine_view(
    state: &AppState,
    id: &MachineId,
) -> Result<MachineView, ApiError> {
    let (machine, version) = state.commands.load::<Machine>(id.as_str()).await?;
    machine
        .machine()
        .map(|m| MachineView::new(m, version))
        .ok_or_else(|| ApiError::not_found(format!("machine {id} is not registered")))
}

/// 404 unless the machine is registered.
pub(crate) async fn require_machine(state: &AppState, id: &MachineId) -> Result<(), ApiError> {
    machine_view(state, id).await.map(|_| ())
}

/// An order as it is now; 404 when it does not exist.
pub(crate) async fn order_view(state: &AppState, id: &OrderId) -> Result<OrderView, ApiError> {
    let (order, version) = state.commands.load::<ProductionOrder>(id.as_str()).await?;
    order
        .order()
        .map(|o| OrderView::new(o, version))
        .ok_or_else(|| ApiError::not_found(format!("production order {id} does not exist")))
}

/// An order at `version` or later (the answer to a command just executed here: from
/// the writer's cache, without a read); 404 when it does not exist.
pub(crate) async fn order_view_at(
    state: &AppState,
    id: &OrderId,
    version: u64,
) -> Result<OrderView, ApiError> {
    let (order, version) = state
        .commands
        .load_at_least::<ProductionOrder>(id.as_str(), version)
        .await?;
    order
        .order()
        .map(|o| OrderView::new(o, version))
        .ok_or_else(|| ApiError::not_found(format!("production order {id} does not exist")))
}

/// A machine at `version` or later (see [`order_view_at`]).
pub(crate) async fn machine_view_at(
    state: &AppState,
    id: &MachineId,
    version: u64,
) -> Result<MachineView, ApiError> {
    let (machine, version) = state
        .commands
        .load_at_least::<Machine>(id.as_str(), version)
        .await?;
    machine
        .machine()
        .map(|m| MachineView::new(m, version))
        .ok_or_else(|| ApiError::not_found(format!("machine {id} is not registered")))
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

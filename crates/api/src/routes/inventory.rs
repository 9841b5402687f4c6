//! Inventory: direct updates (receive or adjust) and an item's stock.

use axum::extract::State;
use axum::routing::{get, patch};
use axum::{Json, Router};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use shopfloor_domain::inventory::{AdjustStock, InventoryCommand, ItemType, ReceiveStock};
use shopfloor_domain::process::Target;
use shopfloor_domain::values::{ItemId, Location, Quantity, StockDelta, Text};
use utoipa::ToSchema;

use crate::auth::{perm, Auth};
use crate::error::{ApiError, FieldContext, ProblemDocument};
use crate::extract::{ApiJson, ApiPath, Ctx};
use crate::routes::{item_view, now};
use crate::views::{name_of, ItemView};
use crate::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/inventory/update", patch(update))
        .route("/api/v1/inventory/items/{item_id}", get(get_item))
}

/// Raw material or finished goods.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ItemTypeName {
    Raw,
    Finished,
}

impl From<ItemTypeName> for ItemType {
    fn from(t: ItemTypeName) -> Self {
        match t {
            ItemTypeName::Raw => ItemType::Raw,
            ItemTypeName::Finished => ItemType::Finished,
        }
    }
}

/// How a positive delta is recorded.
#[derive(Debug, Clone, Copy, Default, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum UpdateKind {
    /// Goods received (the default for a positive delta).
    #[default]
    Receive,
    /// A correction (count, damage...); the only kind for a negative delta.
    Adjust,
}

/// `PATCH /api/v1/inventory/update`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct UpdateBody {
    pub item_id: String,
    pub item_type: ItemTypeName,
    pub location: String,
    /// Non-zero; positive receives (or adjusts up), negative adjusts down.
    #[schema(value_type = f64)]
    pub delta: Decimal,
    pub reason: String,
    /// `receive` (default) or `adjust`, for a positive delta.
    pub kind: Option<UpdateKind>,
}

/// The new level after an update.
#[derive(Debug, Serialize, ToSchema)]
pub struct UpdatedLevel {
    pub item_id: String,
    pub item_type: String,
    pub location: String,
    /// The level at the location now.
    #[serde(with = "rust_decimal::serde::float")]
    #[schema(value_type = f64)]
    pub quantity: Decimal,
    #[serde(with = "rust_decimal::serde::float")]
    #[schema(value_type = f64)]
    pub delta: Decimal,
    /// The item's stream version.
    pub version: u64,
}

/// Receives or adjusts stock at a location; refused (409) where the level would go below
/// zero, or where the item is stocked with the other type.
#[utoipa::path(patch, path = "/api/v1/inventory/update", tag = "inventory",
    request_body = UpdateBody,
    responses((status = 200, body = UpdatedLevel), (status = 400, body = ProblemDocument),
        (status = 409, description = "the level would go below zero", body = ProblemDocument)),
    security(("bearer" = [])))]
pub async fn update(
    State(state): State<AppState>,
    _: Auth<perm::Inventory>,
    ctx: Ctx,
    ApiJson(body): ApiJson<UpdateBody>,
) -> Result<Json<UpdatedLevel>, ApiError> {
    let item_id = ItemId::new(body.item_id).field("item_id")?;
    let location = Location::new(body.location).field("location")?;
    let reason = Text::new(body.reason).field("reason")?;
    let delta = StockDelta::new(body.delta).field("delta")?;
    let item_type: ItemType = body.item_type.into();
    let at = now();
    let command = if delta.value() > Decimal::ZERO && !matches!(body.kind, Some(UpdateKind::Adjust))
    {
        InventoryCommand::ReceiveStock(ReceiveStock {
            item_id: item_id.clone(),
            item_type,
            location: location.clone(),
            qty: Quantity::new(delta.value()).field("delta")?,
            reason: Some(reason),
            at,
        })
    } else {
        InventoryCommand::AdjustStock(AdjustStock {
            item_id: item_id.clone(),
            item_type,
            location: location.clone(),
            delta,
            reason,
            at,
        })
    };
    let target = Target::InventoryItem {
        item_id: item_id.clone(),
        command,
    };
    state
        .commands
        .execute(target, &ctx.command(Some(at)))
        .await?;
    let item = item_view(&state, &item_id).await?;
    let quantity = item
        .levels
        .iter()
        .find(|l| l.location == location.as_str())
        .map_or(Decimal::ZERO, |l| l.quantity);
    Ok(Json(UpdatedLevel {
        item_id: item.item_id,
        item_type: name_of(&item_type),
        location: location.to_string(),
        quantity,
        delta: delta.value(),
        version: item.version,
    }))
}

/// An item's stock at every location (read-your-writes).
#[utoipa::path(get, path = "/api/v1/inventory/items/{item_id}", tag = "inventory",
    params(("item_id" = String, Path)),
    responses((status = 200, body = ItemView), (status = 404, body = ProblemDocument)),
    security(("bearer" = [])))]
pub async fn get_item(
    State(state): State<AppState>,
    _: Auth<perm::Read>,
    ApiPath(raw): ApiPath<String>,
) -> Result<Json<ItemView>, ApiError> {
    let id = ItemId::new(&raw)
        .map_err(|_| ApiError::not_found(format!("inventory item {raw} does not exist")))?;
    Ok(Json(item_view(&state, &id).await?))
}

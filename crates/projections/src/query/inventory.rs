//! Inventory: levels per item and location, and the movement ledger.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use tracing::instrument;

use crate::error::QueryError;

/// Filters of [`inventory_levels`].
#[derive(Debug, Clone, Default, Deserialize)]
pub struct InventoryFilter {
    pub item_id: Option<String>,
    pub location: Option<String>,
}

/// The stock of one item at one location.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct InventoryLevel {
    pub item_id: String,
    /// `raw` or `finished`.
    pub item_type: String,
    pub location: String,
    #[serde(with = "rust_decimal::serde::float")]
    pub quantity: Decimal,
    /// Floor time of the last movement.
    pub updated_at: DateTime<Utc>,
}

/// Levels by item and location.
#[instrument(skip(pool), err)]
pub async fn inventory_levels(
    pool: &PgPool,
    filter: &InventoryFilter,
) -> Result<Vec<InventoryLevel>, QueryError> {
    let rows = sqlx::query_as::<_, InventoryLevel>(
        "SELECT item_id, item_type, location, quantity, updated_at FROM rm_inventory_levels \
         WHERE ($1::text IS NULL OR item_id = $1) AND ($2::text IS NULL OR location = $2) \
         ORDER BY item_id, location",
    )
    .bind(filter.item_id.as_deref())
    .bind(filter.location.as_deref())
    .fetch_all(pool)
    .await?;
    Ok(rows)
}

/// Filters of [`inventory_movements`].
#[derive(Debug, Clone, Default, Deserialize)]
pub struct MovementFilter {
    pub item_id: Option<String>,
    pub location: Option<String>,
    pub order_id: Option<String>,
    /// Only movements of events before this position (paging, newest first).
    pub before: Option<i64>,
    /// At most this many (default 100, at most 1000).
    pub limit: Option<i64>,
}

/// One row of the ledger.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct MovementView {
    /// Position of the event in the log (with `seq`, the row's key).
    pub position: i64,
    pub seq: i32,
    pub item_id: String,
    pub item_type: String,
    /// None for a shortage without a named input location.
    pub location: Option<String>,
    /// `received`, `adjusted`, `consumed`, `produced` or `shortage`.
    pub kind: String,
    /// The change of the level (negative when taken).
    #[serde(with = "rust_decimal::serde::float")]
    pub delta: Decimal,
    #[serde(with = "rust_decimal::serde::float_option")]
    pub new_level: Option<Decimal>,
    /// What a backflush could not take (shortage rows only).
    #[serde(with = "rust_decimal::serde::float")]
    pub shortage: Decimal,
    /// Why: the reason given, `backflush` or `production`.
    pub reason: Option<String>,
    /// Which order, for backflush and production.
    pub order_id: Option<String>,
    /// Who.
    pub actor: Option<String>,
    /// Floor time.
    pub at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
}

/// The ledger, newest first.
#[instrument(skip(pool), err)]
pub async fn inventory_movements(
    pool: &PgPool,
    filter: &MovementFilter,
) -> Result<Vec<MovementView>, QueryError> {
    let limit = filter.limit.unwrap_or(100).clamp(1, 1000);
    let rows = sqlx::query_as::<_, MovementView>(
        "SELECT position, seq, item_id, item_type, location, kind, delta, new_level, shortage, \
         reason, order_id, actor, at, recorded_at FROM rm_inventory_movements \
         WHERE ($1::text IS NULL OR item_id = $1) AND ($2::text IS NULL OR location = $2) \
         AND ($3::text IS NULL OR order_id = $3) AND ($4::bigint IS NULL OR position < $4) \
         ORDER BY position DESC, seq DESC LIMIT $5",
    )
    .bind(filter.item_id.as_deref())
    .bind(filter.location.as_deref())
    .bind(filter.order_id.as_deref())
    .bind(filter.before)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows)
}

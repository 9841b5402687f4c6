//! Production orders: status, machine, counts, progress, yield, scrap rate.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use tracing::instrument;

use super::ratio;
use crate::error::QueryError;

/// Filters of [`list_orders`].
#[derive(Debug, Clone, Default, Deserialize)]
pub struct OrderFilter {
    pub status: Option<String>,
    /// Orders assigned to this machine.
    pub machine_id: Option<String>,
    pub product_id: Option<String>,
    /// Orders this operator is assigned to.
    pub operator_id: Option<String>,
    /// At most this many (default 1000, at most 10000).
    pub limit: Option<i64>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
struct OrderRow {
    order_id: String,
    product_id: String,
    quantity: i64,
    status: String,
    assigned_machine: Option<String>,
    good_count: i64,
    scrap_count: i64,
    bom: serde_json::Value,
    input_location: Option<String>,
    output_location: String,
    hold_reason: Option<String>,
    cancel_reason: Option<String>,
    inspections: i64,
    inspections_failed: i64,
    inspected_parts: i64,
    defects: i64,
    created_at: DateTime<Utc>,
    assigned_at: Option<DateTime<Utc>>,
    started_at: Option<DateTime<Utc>>,
    completed_at: Option<DateTime<Utc>>,
    cancelled_at: Option<DateTime<Utc>>,
    updated_at: DateTime<Utc>,
    assigned_operators: serde_json::Value,
}

/// One production order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OrderView {
    pub order_id: String,
    /// `created`, `assigned`, `in_progress`, `on_hold`, `completed`, `cancelled`.
    pub status: String,
    pub product_id: String,
    pub quantity: i64,
    pub assigned_machine: Option<String>,
    /// The operator ids assigned to the order.
    pub assigned_operators: Vec<String>,
    pub good_count: i64,
    pub scrap_count: i64,
    pub total_count: i64,
    /// good / total; null before the first part.
    pub production_yield: Option<f64>,
    /// scrap / total; null before the first part.
    pub scrap_rate: Option<f64>,
    /// good / quantity (may exceed 1 on over-production).
    pub progress: f64,
    /// Good parts still to make (never below 0).
    pub remaining: i64,
    /// `[{item_id, qty_per_unit, lots?}]`.
    pub bom: serde_json::Value,
    pub input_location: Option<String>,
    pub output_location: String,
    pub hold_reason: Option<String>,
    pub cancel_reason: Option<String>,
    pub inspections: i64,
    pub inspections_failed: i64,
    pub inspected_parts: i64,
    pub defects: i64,
    pub created_at: DateTime<Utc>,
    pub assigned_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub cancelled_at: Option<DateTime<Utc>>,
    /// Floor time of the last change.
    pub updated_at: DateTime<Utc>,
}

impl From<OrderRow> for OrderView {
    fn from(r: OrderRow) -> Self {
        let total = r.good_count.saturating_add(r.scrap_count);
        Self {
            production_yield: ratio(r.good_count as f64, total as f64),
            scrap_rate: ratio(r.scrap_count as f64, total as f64),
            progress: ratio(r.good_count as f64, r.quantity as f64).unwrap_or(0.0),
            remaining: (r.quantity - r.good_count).max(0),
            total_count: total,
            order_id: r.order_id,
            status: r.status,
            product_id: r.product_id,
            quantity: r.quantity,
            assigned_machine: r.assigned_machine,
            assigned_operators: serde_json::from_value(r.assigned_operators).unwrap_or_default(),
            good_count: r.good_count,
            scrap_count: r.scrap_count,
            bom: r.bom,
            input_location: r.input_location,
            output_location: r.output_location,
            hold_reason: r.hold_reason,
            cancel_reason: r.cancel_reason,
            inspections: r.inspections,
            inspections_failed: r.inspections_failed,
            inspected_parts: r.inspected_parts,
            defects: r.defects,
            created_at: r.created_at,
            assigned_at: r.assigned_at,
            started_at: r.started_at,
            completed_at: r.completed_at,
            cancelled_at: r.cancelled_at,
            updated_at: r.updated_at,
        }
    }
}

/// Orders, newest first.
#[instrument(skip(pool), err)]
pub async fn list_orders(
    pool: &PgPool,
    filter: &OrderFilter,
) -> Result<Vec<OrderView>, QueryError> {
    let limit = filter.limit.unwrap_or(1000).clamp(1, 10_000);
    let rows = sqlx::query_as::<_, OrderRow>(
        "SELECT * FROM rm_orders WHERE ($1::text IS NULL OR status = $1) \
         AND ($2::text IS NULL OR assigned_machine = $2) \
         AND ($3::text IS NULL OR product_id = $3) \
         AND ($5::text IS NULL OR assigned_operators ? $5) \
         ORDER BY created_at DESC, order_id LIMIT $4",
    )
    .bind(filter.status.as_deref())
    .bind(filter.machine_id.as_deref())
    .bind(filter.product_id.as_deref())
    .bind(limit)
    .bind(filter.operator_id.as_deref())
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(OrderView::from).collect())
}

/// One order, or `None` when unknown.
#[instrument(skip(pool), err)]
pub async fn get_order(pool: &PgPool, order_id: &str) -> Result<Option<OrderView>, QueryError> {
    let row = sqlx::query_as::<_, OrderRow>("SELECT * FROM rm_orders WHERE order_id = $1")
        .bind(order_id)
        .fetch_optional(pool)
        .await?;
    Ok(row.map(OrderView::from))
}

//! SPC characteristics and their signals (ADR 0056), from the `spc` read model. A chart's
//! points, limits and capability are answered from the characteristic's aggregate
//! (read-your-writes over its last 1,000 points); older points are in `rm_spc_points`.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use tracing::instrument;

use crate::error::QueryError;

/// One characteristic with the limits in force and its signal count.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct CharacteristicRow {
    pub characteristic_id: String,
    pub name: String,
    pub chart: String,
    pub subgroup_size: i32,
    pub source_kind: String,
    pub product_id: Option<String>,
    pub machine_id: Option<String>,
    pub lsl: Option<f64>,
    pub usl: Option<f64>,
    pub target: Option<f64>,
    pub rules: serde_json::Value,
    pub samples: i64,
    pub limits_version: Option<i32>,
    pub center: Option<f64>,
    pub ucl: Option<f64>,
    pub lcl: Option<f64>,
    pub process_sigma: Option<f64>,
    pub signals: i64,
    pub last_signal_at: Option<DateTime<Utc>>,
    pub defined_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Characteristics by id, optionally of one machine.
#[instrument(skip(pool), err)]
pub async fn list_characteristics(
    pool: &PgPool,
    machine_id: Option<&str>,
) -> Result<Vec<CharacteristicRow>, QueryError> {
    Ok(sqlx::query_as::<_, CharacteristicRow>(
        "SELECT characteristic_id, name, chart, subgroup_size, source_kind, product_id, \
             machine_id, lsl, usl, target, rules, samples, limits_version, center, ucl, lcl, \
             process_sigma, signals, last_signal_at, defined_at, updated_at \
         FROM rm_spc_characteristics WHERE ($1::text IS NULL OR machine_id = $1) \
         ORDER BY characteristic_id",
    )
    .bind(machine_id)
    .fetch_all(pool)
    .await?)
}

/// One signal on the log.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct SignalRow {
    /// Its event's position in the global log.
    pub position: i64,
    pub characteristic_id: String,
    /// The sample that completed the pattern.
    #[sqlx(rename = "idx")]
    pub index: i64,
    pub rule: String,
    /// `primary` (X̄, X, p, np, c, u) or `spread` (R, S, MR).
    pub part: String,
    pub value: f64,
    pub z: f64,
    pub limits_version: i32,
    pub machine_id: Option<String>,
    pub at: DateTime<Utc>,
}

/// Filters of [`list_signals`].
#[derive(Debug, Clone, Default)]
pub struct SignalQuery {
    pub characteristic_id: Option<String>,
    pub machine_id: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub limit: i64,
}

/// Signals, newest (by floor time) first.
#[instrument(skip(pool), err)]
pub async fn list_signals(pool: &PgPool, q: &SignalQuery) -> Result<Vec<SignalRow>, QueryError> {
    Ok(sqlx::query_as::<_, SignalRow>(
        "SELECT position, characteristic_id, idx, rule, part, value, z, limits_version, \
             machine_id, at FROM rm_spc_signals \
         WHERE ($1::text IS NULL OR characteristic_id = $1) \
           AND ($2::text IS NULL OR machine_id = $2) \
           AND ($3::timestamptz IS NULL OR at >= $3) AND ($4::timestamptz IS NULL OR at < $4) \
         ORDER BY at DESC, position DESC LIMIT $5",
    )
    .bind(&q.characteristic_id)
    .bind(&q.machine_id)
    .bind(q.from)
    .bind(q.to)
    .bind(q.limit)
    .fetch_all(pool)
    .await?)
}

//! Scrap by reason: the scrap of the parts facts (`rm_parts_facts`) over a window of
//! floor time, summed per scrap reason code (ADR 0050). Reports that gave no reason
//! count under `scrap_reason: null`; late reports correct the figures of their floor
//! time, and `as_of` keeps only the reports recorded by then.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use shopfloor_domain::reason::scrap_reason;
use sqlx::PgPool;
use tracing::instrument;

use super::kpi::select_machines;
use super::ratio;
use crate::error::QueryError;

/// What to sum: one machine, or every machine (of `line`, when given).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ScrapQuery {
    pub machine_id: Option<String>,
    pub line: Option<String>,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub as_of: Option<DateTime<Utc>>,
    /// The part of the equipment hierarchy (ADR 0062).
    #[serde(default)]
    pub scope: super::hierarchy::Scope,
}

/// The scrap of one reason.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScrapByReason {
    /// The scrap reason code; `null` for scrap reported without a reason.
    pub scrap_reason: Option<String>,
    /// The code's display name (`Not given` for `null`).
    pub name: String,
    /// Scrapped parts.
    pub scrap: i64,
    /// Parts reports that scrapped them.
    pub reports: i64,
    /// Share of the window's scrap.
    pub share: Option<f64>,
}

/// Scrap by reason for a scope and window, largest first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScrapReport {
    pub machine_id: Option<String>,
    pub line: Option<String>,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub as_of: Option<DateTime<Utc>>,
    /// Good parts in the window.
    pub good_count: i64,
    /// Scrapped parts in the window: the sum of `by_reason`.
    pub scrap_count: i64,
    pub by_reason: Vec<ScrapByReason>,
}

#[derive(sqlx::FromRow)]
struct Row {
    scrap_reason: Option<String>,
    good: i64,
    scrap: i64,
    reports: i64,
}

/// Sums the scrap of the scope's parts reports with floor time in [from, to) by reason.
#[instrument(skip(pool), err)]
pub async fn scrap_by_reason(pool: &PgPool, q: &ScrapQuery) -> Result<ScrapReport, QueryError> {
    if q.from >= q.to {
        return Err(QueryError::Invalid("`from` must be before `to`".into()));
    }
    let machines: Vec<String> = select_machines(
        pool,
        q.machine_id.as_deref(),
        q.line.as_deref(),
        &q.scope,
        q.to,
        q.as_of,
    )
    .await?
    .into_iter()
    .map(|(id, _)| id)
    .collect();
    let rows = sqlx::query_as::<_, Row>(
        "SELECT scrap_reason, sum(good)::bigint AS good, sum(scrap)::bigint AS scrap, \
             count(*) FILTER (WHERE scrap > 0) AS reports \
         FROM rm_parts_facts \
         WHERE machine_id = ANY($1) AND at >= $2 AND at < $3 \
           AND ($4::timestamptz IS NULL OR recorded_at <= $4) \
         GROUP BY scrap_reason",
    )
    .bind(&machines)
    .bind(q.from)
    .bind(q.to)
    .bind(q.as_of)
    .fetch_all(pool)
    .await?;
    Ok(report(q, &rows))
}

fn report(q: &ScrapQuery, rows: &[Row]) -> ScrapReport {
    let good_count = rows.iter().map(|r| r.good).sum();
    let scrap_count: i64 = rows.iter().map(|r| r.scrap).sum();
    let mut by_reason: Vec<ScrapByReason> = rows
        .iter()
        .filter(|r| r.scrap > 0)
        .map(|r| ScrapByReason {
            scrap_reason: r.scrap_reason.clone(),
            name: r
                .scrap_reason
                .as_deref()
                .map_or("Not given", |c| {
                    scrap_reason(c).map_or(c, |d| d.name.as_str())
                })
                .to_owned(),
            scrap: r.scrap,
            reports: r.reports,
            share: ratio(r.scrap as f64, scrap_count as f64),
        })
        .collect();
    by_reason.sort_by(|a, b| {
        b.scrap
            .cmp(&a.scrap)
            .then_with(|| a.scrap_reason.cmp(&b.scrap_reason))
    });
    ScrapReport {
        machine_id: q.machine_id.clone(),
        line: q.line.clone(),
        from: q.from,
        to: q.to,
        as_of: q.as_of,
        good_count,
        scrap_count,
        by_reason,
    }
}

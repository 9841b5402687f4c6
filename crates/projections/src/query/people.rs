//! Operators and their labour (ADR 0036).
//!
//! Labour is computed at query time from the clock-on sessions
//! (`rm_labour_sessions`) and the parts facts (`rm_parts_facts`), both by floor
//! time, so a late clock-off or a late parts report corrects every figure it
//! touches:
//! - a session lasts from its clock-on to its clock-off, or to `now` while open,
//!   clipped to the window asked for;
//! - parts count to a session when they were reported for the session's order,
//!   at the session's machine if it names one, at a floor time inside the clipped
//!   session (half-open: a report at the clock-off instant belongs to the next
//!   session). Every operator clocked on is credited (a crew of two both made
//!   the parts), so per-operator parts may add up to more than the order's.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use tracing::instrument;

use crate::error::QueryError;

/// One operator.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct OperatorRow {
    pub operator_id: String,
    pub name: String,
    pub badge_id: Option<String>,
    pub skills: serde_json::Value,
    pub lines: serde_json::Value,
    pub active: bool,
    pub registered_at: DateTime<Utc>,
    pub deactivated_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
    /// The orders the operator is clocked on now.
    pub clocked_on: serde_json::Value,
}

/// Operators by id; `active` filters on the flag, `line` on the lines they may work.
#[instrument(skip(pool), err)]
pub async fn list_operators(
    pool: &PgPool,
    active: Option<bool>,
    line: Option<&str>,
) -> Result<Vec<OperatorRow>, QueryError> {
    let rows = sqlx::query_as::<_, OperatorRow>(
        "SELECT o.operator_id, o.name, o.badge_id, o.skills, o.lines, o.active, o.registered_at, \
             o.deactivated_at, o.updated_at, \
             COALESCE((SELECT jsonb_agg(s.order_id ORDER BY s.order_id) FROM rm_labour_sessions s \
                 WHERE s.operator_id = o.operator_id AND s.off_at IS NULL), '[]') AS clocked_on \
         FROM rm_operators o \
         WHERE ($1::bool IS NULL OR o.active = $1) AND ($2::text IS NULL OR o.lines ? $2) \
         ORDER BY o.operator_id",
    )
    .bind(active)
    .bind(line)
    .fetch_all(pool)
    .await?;
    Ok(rows)
}

/// Whose labour to compute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabourOf {
    Operator(String),
    Order(String),
}

/// One labour session, clipped to the window.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct LabourSession {
    pub operator_id: String,
    pub order_id: String,
    pub machine_id: Option<String>,
    pub clocked_on_at: DateTime<Utc>,
    /// Null while the operator is still clocked on.
    pub clocked_off_at: Option<DateTime<Utc>>,
    /// Seconds inside the window.
    pub time_s: f64,
    pub good_count: i64,
    pub scrap_count: i64,
}

/// Labour summed per operator or per order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LabourLine {
    /// The operator (in an order's report) or the order (in an operator's report).
    pub id: String,
    pub time_s: f64,
    pub good_count: i64,
    pub scrap_count: i64,
}

/// The labour of an operator or an order over a window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LabourReport {
    pub from: Option<DateTime<Utc>>,
    pub to: DateTime<Utc>,
    /// Labour time: the sum of the sessions' time in the window.
    pub time_s: f64,
    /// Parts made while clocked on: an operator's over their sessions; an order's while at
    /// least one operator was clocked on (each part once, however large the crew).
    pub good_count: i64,
    pub scrap_count: i64,
    /// Per order (an operator's report) or per operator (an order's report).
    pub lines: Vec<LabourLine>,
    pub sessions: Vec<LabourSession>,
}

/// Sums sessions per operator or per order (pure).
pub fn summarise(
    of: &LabourOf,
    from: Option<DateTime<Utc>>,
    to: DateTime<Utc>,
    sessions: Vec<LabourSession>,
) -> LabourReport {
    let mut lines: Vec<LabourLine> = Vec::new();
    for s in &sessions {
        let id = match of {
            LabourOf::Operator(_) => &s.order_id,
            LabourOf::Order(_) => &s.operator_id,
        };
        let line = match lines.iter_mut().find(|l| &l.id == id) {
            Some(line) => line,
            None => {
                lines.push(LabourLine {
                    id: id.clone(),
                    time_s: 0.0,
                    good_count: 0,
                    scrap_count: 0,
                });
                let last = lines.len() - 1;
                &mut lines[last]
            }
        };
        line.time_s += s.time_s;
        line.good_count = line.good_count.saturating_add(s.good_count);
        line.scrap_count = line.scrap_count.saturating_add(s.scrap_count);
    }
    lines.sort_by(|a, b| a.id.cmp(&b.id));
    LabourReport {
        from,
        to,
        time_s: lines.iter().map(|l| l.time_s).sum(),
        good_count: lines.iter().map(|l| l.good_count).sum(),
        scrap_count: lines.iter().map(|l| l.scrap_count).sum(),
        lines,
        sessions,
    }
}

/// The labour of an operator or an order in `[from, to)` (from: since the
/// beginning), open sessions counting until `now` (or `to` when earlier).
#[instrument(skip(pool), err)]
pub async fn labour(
    pool: &PgPool,
    of: &LabourOf,
    from: Option<DateTime<Utc>>,
    to: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<LabourReport, QueryError> {
    let (operator, order) = match of {
        LabourOf::Operator(id) => (Some(id.as_str()), None),
        LabourOf::Order(id) => (None, Some(id.as_str())),
    };
    let sessions = sqlx::query_as::<_, LabourSession>(
        "WITH s AS ( \
             SELECT operator_id, order_id, machine_id, on_at, off_at, \
                 GREATEST(on_at, COALESCE($3, on_at)) AS a, \
                 LEAST(COALESCE(off_at, GREATEST($5, on_at)), $4) AS b \
             FROM rm_labour_sessions \
             WHERE ($1::text IS NULL OR operator_id = $1) AND ($2::text IS NULL OR order_id = $2) \
         ) \
         SELECT s.operator_id, s.order_id, s.machine_id, s.on_at AS clocked_on_at, \
             s.off_at AS clocked_off_at, \
             EXTRACT(EPOCH FROM (s.b - s.a))::float8 AS time_s, \
             COALESCE(p.good, 0)::int8 AS good_count, COALESCE(p.scrap, 0)::int8 AS scrap_count \
         FROM s LEFT JOIN LATERAL ( \
             SELECT sum(f.good) AS good, sum(f.scrap) AS scrap FROM rm_parts_facts f \
             WHERE f.order_id = s.order_id \
               AND (s.machine_id IS NULL OR f.machine_id = s.machine_id) \
               AND f.at >= s.a AND f.at < s.b \
         ) p ON true \
         WHERE s.b > s.a OR (s.b = s.a AND s.off_at IS NOT NULL AND s.on_at = s.off_at \
             AND s.on_at >= COALESCE($3, s.on_at) AND s.on_at < $4) \
         ORDER BY s.on_at, s.operator_id, s.order_id",
    )
    .bind(operator)
    .bind(order)
    .bind(from)
    .bind(to)
    .bind(now)
    .fetch_all(pool)
    .await?;
    let mut report = summarise(of, from, to, sessions);
    if let LabourOf::Order(order_id) = of {
        let (good, scrap) = staffed_parts(pool, order_id, from, to, now).await?;
        report.good_count = good;
        report.scrap_count = scrap;
    }
    Ok(report)
}

/// The parts of an order made in the window while at least one operator was clocked on it
/// (at the session's machine, if it names one), each counted once.
async fn staffed_parts(
    pool: &PgPool,
    order_id: &str,
    from: Option<DateTime<Utc>>,
    to: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<(i64, i64), QueryError> {
    let row: (i64, i64) = sqlx::query_as(
        "SELECT COALESCE(sum(f.good), 0)::int8, COALESCE(sum(f.scrap), 0)::int8 \
         FROM rm_parts_facts f \
         WHERE f.order_id = $1 AND ($2::timestamptz IS NULL OR f.at >= $2) AND f.at < $3 \
           AND EXISTS (SELECT 1 FROM rm_labour_sessions s \
               WHERE s.order_id = f.order_id \
                 AND (s.machine_id IS NULL OR s.machine_id = f.machine_id) \
                 AND f.at >= s.on_at AND f.at < COALESCE(s.off_at, GREATEST($4, s.on_at)))",
    )
    .bind(order_id)
    .bind(from)
    .bind(to)
    .bind(now)
    .fetch_one(pool)
    .await?;
    Ok(row)
}

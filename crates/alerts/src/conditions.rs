//! Condition rules (ADR 0049): what holds now, read from the read models on the evaluator's
//! condition timer. One query per rule and kind; [`plan::plan_conditions`] decides what to
//! raise and resolve.
//!
//! | kind | holds for | subject | started |
//! | --- | --- | --- | --- |
//! | `maintenance_overdue` | an open task `after_minutes` past its scheduled date | the task | its scheduled date |
//! | `below_reorder_point` | an item whose stock (all locations) is below `target` | the item | first seen |
//! | `ingest_silent` | a machine whose last ingest message is `after_minutes` old | the machine | its last message |
//! | `rejected_messages` | `target` or more messages rejected in the last `after_minutes` | `ingest` | first seen |
//! | `kpi_below_target` | the scope's `metric` below `target` over the running shift, once `after_minutes` of it passed | the scope | the shift's start |

use std::collections::BTreeSet;

use chrono::{DateTime, TimeDelta, Utc};
use shopfloor_domain::alert::AlertKind;
use shopfloor_projections::query::{kpi_metrics, Calendar, KpiQuery};
use sqlx::PgPool;

use crate::plan::{self, Holding, Unresolved};
use crate::AlertsError;

/// An enabled condition rule as the evaluator stored it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct ConditionRule {
    pub rule_id: String,
    pub kind: String,
    pub severity: String,
    pub machine_id: Option<String>,
    pub line: Option<String>,
    pub after_minutes: f64,
    pub target: Option<f64>,
    pub item_id: Option<String>,
    pub metric: Option<String>,
}

impl ConditionRule {
    fn holding(
        &self,
        kind: AlertKind,
        machine_id: Option<String>,
        subject: String,
        since: DateTime<Utc>,
    ) -> Holding {
        Holding {
            rule_id: self.rule_id.clone(),
            kind,
            severity: self.severity.clone(),
            machine_id,
            cause: format!("{}:{subject}@{}", kind.as_str(), since.to_rfc3339()),
            subject: Some(subject),
            since,
        }
    }

    fn after(&self) -> TimeDelta {
        TimeDelta::milliseconds((self.after_minutes * 60_000.0).round() as i64)
    }
}

fn kinds() -> Vec<&'static str> {
    [
        AlertKind::MaintenanceOverdue,
        AlertKind::BelowReorderPoint,
        AlertKind::IngestSilent,
        AlertKind::RejectedMessages,
        AlertKind::KpiBelowTarget,
    ]
    .iter()
    .map(|k| k.as_str())
    .collect()
}

/// The enabled condition rules.
pub(crate) async fn rules(pool: &PgPool) -> Result<Vec<ConditionRule>, AlertsError> {
    Ok(sqlx::query_as(
        "SELECT rule_id, kind, severity, machine_id, line, after_minutes, target, item_id, \
         metric FROM alert_rules WHERE enabled AND kind = ANY($1) ORDER BY rule_id",
    )
    .bind(kinds())
    .fetch_all(pool)
    .await?)
}

/// The unresolved alerts of condition rules.
pub(crate) async fn unresolved(pool: &PgPool) -> Result<Vec<Unresolved>, AlertsError> {
    Ok(sqlx::query_as(
        "SELECT alert_id, rule_id, machine_id, subject FROM alerts \
         WHERE state <> 'resolved' AND kind = ANY($1)",
    )
    .bind(kinds())
    .fetch_all(pool)
    .await?)
}

/// Which of `ids` name alerts that exist (in any state).
pub(crate) async fn existing(
    pool: &PgPool,
    ids: &[String],
) -> Result<BTreeSet<String>, AlertsError> {
    if ids.is_empty() {
        return Ok(BTreeSet::new());
    }
    let found: Vec<String> =
        sqlx::query_scalar("SELECT alert_id FROM alerts WHERE alert_id = ANY($1)")
            .bind(ids)
            .fetch_all(pool)
            .await?;
    Ok(found.into_iter().collect())
}

/// What holds now for one rule.
pub(crate) async fn holding(
    pool: &PgPool,
    rule: &ConditionRule,
    now: DateTime<Utc>,
) -> Result<Vec<Holding>, AlertsError> {
    match plan::kind_of(&rule.kind) {
        Some(k @ AlertKind::MaintenanceOverdue) => overdue(pool, rule, k, now).await,
        Some(k @ AlertKind::BelowReorderPoint) => below_reorder(pool, rule, k, now).await,
        Some(k @ AlertKind::IngestSilent) => silent(pool, rule, k, now).await,
        Some(k @ AlertKind::RejectedMessages) => rejected(pool, rule, k, now).await,
        Some(k @ AlertKind::KpiBelowTarget) => kpi_below(pool, rule, k, now).await,
        _ => Ok(Vec::new()),
    }
}

async fn overdue(
    pool: &PgPool,
    rule: &ConditionRule,
    kind: AlertKind,
    now: DateTime<Utc>,
) -> Result<Vec<Holding>, AlertsError> {
    let rows: Vec<(String, String, DateTime<Utc>)> = sqlx::query_as(
        "SELECT t.task_id, t.machine_id, t.scheduled_date FROM rm_maintenance_tasks t \
         LEFT JOIN rm_machines m USING (machine_id) \
         WHERE t.status NOT IN ('completed', 'cancelled') AND t.scheduled_date <= $1 \
         AND ($2::text IS NULL OR t.machine_id = $2) AND ($3::text IS NULL OR m.line = $3)",
    )
    .bind(now - rule.after())
    .bind(&rule.machine_id)
    .bind(&rule.line)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(task, machine, due)| rule.holding(kind, Some(machine), task, due))
        .collect())
}

async fn below_reorder(
    pool: &PgPool,
    rule: &ConditionRule,
    kind: AlertKind,
    now: DateTime<Utc>,
) -> Result<Vec<Holding>, AlertsError> {
    let (Some(item), Some(target)) = (&rule.item_id, rule.target) else {
        return Ok(Vec::new());
    };
    let stock: f64 = sqlx::query_scalar(
        "SELECT COALESCE(sum(quantity), 0)::float8 FROM rm_inventory_levels WHERE item_id = $1",
    )
    .bind(item)
    .fetch_one(pool)
    .await?;
    Ok(if stock < target {
        vec![rule.holding(kind, None, item.clone(), now)]
    } else {
        Vec::new()
    })
}

async fn silent(
    pool: &PgPool,
    rule: &ConditionRule,
    kind: AlertKind,
    now: DateTime<Utc>,
) -> Result<Vec<Holding>, AlertsError> {
    let rows: Vec<(String, DateTime<Utc>)> = sqlx::query_as(
        "SELECT s.machine_id, max(s.updated_at) FROM ingest_machine_state s \
         LEFT JOIN rm_machines m USING (machine_id) \
         WHERE ($2::text IS NULL OR s.machine_id = $2) AND ($3::text IS NULL OR m.line = $3) \
         GROUP BY s.machine_id HAVING max(s.updated_at) <= $1",
    )
    .bind(now - rule.after())
    .bind(&rule.machine_id)
    .bind(&rule.line)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(machine, last)| rule.holding(kind, Some(machine.clone()), machine, last))
        .collect())
}

async fn rejected(
    pool: &PgPool,
    rule: &ConditionRule,
    kind: AlertKind,
    now: DateTime<Utc>,
) -> Result<Vec<Holding>, AlertsError> {
    let Some(target) = rule.target else {
        return Ok(Vec::new());
    };
    let count: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM ingest_rejected WHERE disposition = 'rejected' AND received_at > $1",
    )
    .bind(now - rule.after())
    .fetch_one(pool)
    .await?;
    Ok(if count as f64 >= target {
        vec![rule.holding(kind, None, "ingest".into(), now)]
    } else {
        Vec::new()
    })
}

/// The window a KPI rule judges: the running shift of the scope's line, or the plant-local
/// day so far where the line has no calendar (or the scope is the plant). `None` between
/// shifts (no planned time to judge).
async fn kpi_window(
    pool: &PgPool,
    rule: &ConditionRule,
    now: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, AlertsError> {
    let line = match (&rule.line, &rule.machine_id) {
        (Some(line), _) => Some(line.clone()),
        (None, Some(machine)) => {
            sqlx::query_scalar("SELECT line FROM rm_machines WHERE machine_id = $1")
                .bind(machine)
                .fetch_optional(pool)
                .await?
        }
        (None, None) => None,
    };
    let lines: Vec<String> = line.iter().cloned().collect();
    let calendar = Calendar::load(pool, &lines)
        .await
        .map_err(AlertsError::value)?;
    let day_ago = now - TimeDelta::days(1);
    if let Some(windows) = line
        .as_deref()
        .and_then(|l| calendar.shift_windows(l, day_ago, now))
    {
        // The running shift is the one clipped at `now`.
        return Ok(windows
            .into_iter()
            .rev()
            .find(|w| w.to == now)
            .map(|w| w.from));
    }
    Ok(calendar.days(day_ago, now).last().map(|(from, _)| *from))
}

async fn kpi_below(
    pool: &PgPool,
    rule: &ConditionRule,
    kind: AlertKind,
    now: DateTime<Utc>,
) -> Result<Vec<Holding>, AlertsError> {
    let (Some(metric), Some(target)) = (&rule.metric, rule.target) else {
        return Ok(Vec::new());
    };
    let Some(from) = kpi_window(pool, rule, now).await? else {
        return Ok(Vec::new());
    };
    if now - from < rule.after().max(TimeDelta::seconds(1)) {
        return Ok(Vec::new());
    }
    let query = KpiQuery {
        machine_id: rule.machine_id.clone(),
        line: rule.line.clone(),
        from,
        to: now,
        as_of: None,
        granularity: None,
        rollup: true,
        scope: Default::default(),
    };
    let rows = kpi_metrics(pool, &query)
        .await
        .map_err(AlertsError::value)?;
    let value = rows.first().and_then(|r| match metric.as_str() {
        "oee" => r.oee,
        "availability" => r.availability,
        "performance" => r.performance,
        "quality" => r.quality,
        _ => None,
    });
    let scope = match (&rule.machine_id, &rule.line) {
        (Some(m), _) => format!("machine:{m}"),
        (None, Some(l)) => format!("line:{l}"),
        (None, None) => "plant".to_string(),
    };
    Ok(match value {
        Some(v) if v < target => {
            vec![rule.holding(
                kind,
                rule.machine_id.clone(),
                format!("{metric} {scope}"),
                from,
            )]
        }
        _ => Vec::new(),
    })
}

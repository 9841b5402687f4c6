//! Scheduled reports: a shift report at the end of each shift of a line's
//! calendar (`shift_end`), a day report of each plant-local day at a local
//! time the next day (`daily`), and a week report of each plant-local ISO week at a
//! local time the Monday after (`weekly`). Each tick also makes the corrected
//! version of a scheduled report a late event changed ([`supersede`], ADR 0051).
//!
//! One instance leads (a PostgreSQL advisory lock, as the relay and the process
//! manager do: `shopfloor_eventstore::Leadership`). Each tick it plans the due
//! periods of every schedule from the calendar and the clock ([`due`], pure),
//! leaves out those already made (the catalogue has one row per schedule and
//! period: a unique index), and generates the rest. A restart picks up where the
//! catalogue says it stopped; nothing is made twice.

use std::time::Duration;

use chrono::{DateTime, Datelike, NaiveTime, Utc};
use serde::{Deserialize, Serialize};
use shopfloor_projections::query::Calendar;
use sqlx::PgPool;
use tracing::warn;

use crate::catalog;
use crate::deliver;
use crate::error::ReportError;
use crate::model::{Format, ReportKind, ReportRequest};
use crate::service::Reports;
use shopfloor_domain::alert::Channel;

/// How far back a schedule looks for periods it has not made yet.
pub const LOOKBACK: chrono::TimeDelta = chrono::TimeDelta::days(3);
/// How long after a period's end its report is made (late events settle).
pub const GRACE: chrono::TimeDelta = chrono::TimeDelta::minutes(1);
/// The name of the leader lock.
pub const LEADER_KEY: &str = "shopfloor-report-scheduler";

/// When a schedule makes a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    ShiftEnd,
    Daily,
    /// A week report of each plant-local ISO week (Monday to Monday), made at
    /// `at_local` on the Monday after (ADR 0051).
    Weekly,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ShiftEnd => "shift_end",
            Self::Daily => "daily",
            Self::Weekly => "weekly",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::ShiftEnd, Self::Daily, Self::Weekly]
            .into_iter()
            .find(|t| t.as_str() == s)
    }

    /// The kind of report it makes.
    pub fn kind(self) -> ReportKind {
        match self {
            Self::ShiftEnd => ReportKind::Shift,
            Self::Daily => ReportKind::Day,
            Self::Weekly => ReportKind::Week,
        }
    }
}

/// A report schedule.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Schedule {
    pub schedule_id: String,
    pub trigger: Trigger,
    pub line: Option<String>,
    pub format: Format,
    /// Plant-local time of day a daily report is made (for the day before).
    pub at_local: NaiveTime,
    /// Periods ending before this are not made.
    pub not_before: DateTime<Utc>,
    pub created_by: String,
    /// Where each report it makes is delivered (webhooks, ADR 0051; e-mails, ADR 0055);
    /// never serialized (a webhook's secret).
    #[serde(skip)]
    pub channels: Vec<Channel>,
}

/// Records a schedule.
pub async fn create(pool: &PgPool, s: &Schedule) -> Result<(), ReportError> {
    if s.trigger == Trigger::ShiftEnd && s.line.is_none() {
        return Err(ReportError::Invalid(
            "a shift_end schedule needs a `line` (shifts are per line)".into(),
        ));
    }
    deliver::validate(&s.channels)?;
    let channels = serde_json::to_value(&s.channels)
        .map_err(|e| ReportError::Invalid(format!("channels: {e}")))?;
    sqlx::query(
        "INSERT INTO report_schedules (schedule_id, trigger, line, format, at_local, not_before, \
           created_by, channels) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&s.schedule_id)
    .bind(s.trigger.as_str())
    .bind(&s.line)
    .bind(s.format.as_str())
    .bind(s.at_local)
    .bind(s.not_before)
    .bind(&s.created_by)
    .bind(channels)
    .execute(pool)
    .await
    .map_err(|e| match e {
        sqlx::Error::Database(d) if d.is_unique_violation() => {
            ReportError::Invalid(format!("schedule {} exists already", s.schedule_id))
        }
        e => e.into(),
    })?;
    Ok(())
}

/// Every schedule, by id.
pub async fn list(pool: &PgPool) -> Result<Vec<Schedule>, ReportError> {
    type Row = (
        String,
        String,
        Option<String>,
        String,
        NaiveTime,
        DateTime<Utc>,
        String,
        serde_json::Value,
    );
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT schedule_id, trigger, line, format, at_local, not_before, created_by, channels \
         FROM report_schedules ORDER BY schedule_id",
    )
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|r| {
            Ok(Schedule {
                trigger: Trigger::parse(&r.1).ok_or_else(|| {
                    ReportError::Invalid(format!("trigger {:?} in report_schedules", r.1))
                })?,
                format: Format::parse(&r.3).ok_or_else(|| {
                    ReportError::Invalid(format!("format {:?} in report_schedules", r.3))
                })?,
                schedule_id: r.0,
                line: r.2,
                at_local: r.4,
                not_before: r.5,
                created_by: r.6,
                channels: serde_json::from_value(r.7).map_err(|e| {
                    ReportError::Invalid(format!("channels in report_schedules: {e}"))
                })?,
            })
        })
        .collect()
}

/// The periods a schedule should have made by `now` (pure): whole shifts (or
/// plant-local days) ending after `not_before` and within the lookback, whose
/// time has come (`GRACE` after the end; daily: `at_local` the next day).
pub fn due(
    s: &Schedule,
    calendar: &Calendar,
    now: DateTime<Utc>,
) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    // A day more than the lookback, so the first period is seen whole (a window
    // clipped at the start of the query is left out).
    let from = (now - LOOKBACK).max(s.not_before) - chrono::TimeDelta::days(1);
    match s.trigger {
        Trigger::ShiftEnd => {
            let Some(line) = &s.line else {
                return Vec::new();
            };
            calendar
                .shift_windows(line, from, now)
                .unwrap_or_default()
                .into_iter()
                .filter(|w| w.from > from && w.to >= s.not_before && w.to + GRACE <= now)
                .map(|w| (w.from, w.to))
                .collect()
        }
        Trigger::Daily => calendar
            .days(from, now)
            .into_iter()
            .filter(|&(a, b)| {
                let made_at = calendar.utc(
                    b.with_timezone(&calendar.tz)
                        .date_naive()
                        .and_time(s.at_local),
                );
                a > from && b >= s.not_before && made_at.max(b + GRACE) <= now
            })
            .collect(),
        Trigger::Weekly => weeks(s, calendar, from - chrono::TimeDelta::days(7), now),
    }
}

/// The plant-local ISO weeks starting after `from` whose report is due by `now` (pure).
fn weeks(
    s: &Schedule,
    calendar: &Calendar,
    from: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    let tz = calendar.tz;
    let local = |t: DateTime<Utc>| t.with_timezone(&tz).date_naive();
    let first = local(from);
    let monday = first - chrono::TimeDelta::days(i64::from(first.weekday().num_days_from_monday()));
    let mut out = Vec::new();
    let mut day = monday;
    while day <= local(now) {
        let next = day + chrono::TimeDelta::days(7);
        let (a, b) = (
            calendar.utc(day.and_time(NaiveTime::MIN)),
            calendar.utc(next.and_time(NaiveTime::MIN)),
        );
        let made_at = calendar.utc(next.and_time(s.at_local));
        if a > from && b >= s.not_before && made_at.max(b + GRACE) <= now {
            out.push((a, b));
        }
        day = next;
    }
    out
}

/// Whether the schedule's report of a period exists.
async fn made(
    pool: &PgPool,
    id: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<bool, ReportError> {
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM reports WHERE schedule_id = $1 AND period_from = $2 \
         AND period_to = $3)",
    )
    .bind(id)
    .bind(from)
    .bind(to)
    .fetch_one(pool)
    .await?)
}

/// One pass: makes every due report not made yet; returns how many were made.
pub async fn tick(reports: &Reports, now: DateTime<Utc>) -> Result<usize, ReportError> {
    let pool = reports.pool();
    let schedules = list(pool).await?;
    let lines: Vec<String> = schedules.iter().filter_map(|s| s.line.clone()).collect();
    let calendar = Calendar::load(pool, &lines).await?;
    let mut n = 0;
    for s in &schedules {
        for (from, to) in due(s, &calendar, now) {
            if made(pool, &s.schedule_id, from, to).await? {
                continue;
            }
            let req = ReportRequest {
                kind: s.trigger.kind(),
                line: s.line.clone(),
                from,
                to,
                format: s.format,
                order_id: None,
            };
            let by = format!("schedule:{}", s.schedule_id);
            match reports.generate(&req, &by, Some(&s.schedule_id)).await {
                Ok(meta) => {
                    deliver::enqueue(pool, &meta.report_id, &s.channels).await?;
                    n += 1;
                }
                Err(e) => warn!(schedule = %s.schedule_id, error = %e, "scheduled report failed"),
            }
        }
    }
    Ok(n + supersede(reports, now).await?)
}

/// How far back a late event still makes a corrected version of a scheduled report.
pub const SUPERSEDE_WINDOW: chrono::TimeDelta = chrono::TimeDelta::days(31);

/// Makes the corrected version of every live scheduled report that a later event
/// changed (ADR 0051); returns how many were made.
pub async fn supersede(reports: &Reports, now: DateTime<Utc>) -> Result<usize, ReportError> {
    let since = now - SUPERSEDE_WINDOW;
    let head = catalog::head(reports.pool()).await?;
    let candidates = catalog::with_late_events(reports.pool(), since, head).await?;
    let ids: Vec<String> = candidates.iter().map(|c| c.report_id.clone()).collect();
    catalog::mark_all_checked(reports.pool(), since, head, &ids).await?;
    if candidates.is_empty() {
        return Ok(0);
    }
    let schedules = list(reports.pool()).await?;
    let mut n = 0;
    for old in &candidates {
        match reports.supersede(old).await {
            Ok(Some(new)) => {
                let channels = schedules
                    .iter()
                    .find(|s| Some(&s.schedule_id) == old.schedule_id.as_ref())
                    .map(|s| s.channels.as_slice())
                    .unwrap_or_default();
                deliver::enqueue(reports.pool(), &new.report_id, channels).await?;
                n += 1;
            }
            Ok(None) => {}
            Err(e) => warn!(report = %old.report_id, error = %e, "corrected report failed"),
        }
    }
    Ok(n)
}

/// Runs the schedules while this instance leads, until cancelled; after each tick,
/// sends the deliveries that are due (e-mails through `smtp`, when it is set).
pub async fn run(
    reports: Reports,
    every: Duration,
    smtp: Option<shopfloor_alerts::SmtpSettings>,
    cancel: tokio_util::sync::CancellationToken,
) {
    let pool = reports.pool().clone();
    let deliverer =
        deliver::Deliverer::new(pool.clone(), Duration::from_secs(10)).and_then(|d| match &smtp {
            Some(s) => d.with_email(s, reports.clone()),
            None => Ok(d),
        });
    let deliverer = match deliverer {
        Ok(d) => Some(d),
        Err(e) => {
            warn!(error = %e, "report delivery is off");
            None
        }
    };
    while let Some(mut lead) =
        shopfloor_eventstore::Leadership::acquire(&pool, LEADER_KEY, every, &cancel).await
    {
        loop {
            if lead.check().await.is_err() {
                break;
            }
            if let Err(e) = tick(&reports, Utc::now()).await {
                warn!(error = %e, "report schedules");
            }
            if let Some(d) = &deliverer {
                if let Err(e) = d.pass().await {
                    warn!(error = %e, "report deliveries");
                }
            }
            tokio::select! {
                _ = cancel.cancelled() => {
                    lead.release().await;
                    return;
                }
                _ = tokio::time::sleep(every) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn triggers_have_their_stored_names() {
        assert_eq!(Trigger::ShiftEnd.as_str(), "shift_end");
        assert_eq!(Trigger::Daily.as_str(), "daily");
        assert_eq!(
            serde_json::from_str::<Trigger>("\"shift_end\"").unwrap(),
            Trigger::ShiftEnd
        );
    }
}

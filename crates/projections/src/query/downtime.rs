//! State intervals and downtime reports, from the facts of `machine_history`.
//!
//! - [`state_intervals`]: each state of a machine on floor time, clipped to the
//!   window, with its reason as recorded and as finally classified (a
//!   `MachineStopClassified` event reclassifies a stop later; `as_of` shows the
//!   classification known then). Time before the first state event is an
//!   `unknown` interval (ADR 0005).
//! - [`downtime_report`]: per machine and window, Paretos of unplanned stop time
//!   by reason code and by loss category, both as first recorded and as finally
//!   classified; micro-stops (unplanned stops shorter than a threshold, default
//!   60 s); MTBF and MTTR (failures: unplanned `down` stops starting in the
//!   window; MTTR = their mean duration; MTBF = run time / failures).
//!
//! Time here is floor time clipped to the window and to the evaluation time (now,
//! or `as_of`); shift calendars are not applied (the KPIs apply them).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use tracing::instrument;

use super::kpi::{evaluation_time, fetch_intervals, secs, select_machines, us, IntervalRow};
use super::ratio;
use crate::error::QueryError;

/// Default micro-stop threshold in seconds.
pub const DEFAULT_MICRO_STOP_S: f64 = 60.0;

/// The states of one machine over a window.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct IntervalQuery {
    pub machine_id: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub as_of: Option<DateTime<Utc>>,
}

/// One state interval.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StateInterval {
    pub machine_id: String,
    /// `running`, `idle`, `down`, or `unknown` (before the first state event).
    pub state: String,
    /// When the state began (may be before the window).
    pub start: DateTime<Utc>,
    /// When the next state began; `null` while it lasts.
    pub end: Option<DateTime<Utc>>,
    /// Seconds inside the window (and up to now / `as_of`).
    pub duration_s: f64,
    /// Planned flag in force (the classification's, else the recorded one).
    pub planned: bool,
    pub reason: Option<String>,
    /// As first recorded.
    pub reason_code: Option<String>,
    pub category: Option<String>,
    pub loss: Option<String>,
    /// As classified later, if it was.
    pub classified_reason_code: Option<String>,
    pub classified_category: Option<String>,
    pub classified_loss: Option<String>,
    /// The classification, else the recorded code.
    pub final_reason_code: Option<String>,
}

fn interval_view(i: &IntervalRow, from: i64, end: i64) -> StateInterval {
    let start = us(i.at).max(from);
    let stop = i.next_at.map_or(i64::MAX, us).min(end);
    StateInterval {
        machine_id: i.machine_id.clone(),
        state: i.state.clone(),
        start: i.at,
        end: i.next_at,
        duration_s: secs((stop - start).max(0)),
        planned: i.effective_planned(),
        reason: i.reason.clone(),
        reason_code: i.reason_code.clone(),
        category: i.category.clone(),
        loss: i.loss.clone(),
        classified_reason_code: i.class_reason_code.clone(),
        classified_category: i.class_category.clone(),
        classified_loss: i.class_loss.clone(),
        final_reason_code: i
            .class_reason_code
            .clone()
            .or_else(|| i.reason_code.clone()),
    }
}

fn check_window(from: DateTime<Utc>, to: DateTime<Utc>) -> Result<(), QueryError> {
    if from >= to {
        return Err(QueryError::Invalid("`from` must be before `to`".into()));
    }
    Ok(())
}

/// The state intervals of one machine overlapping [from, to), by floor time.
#[instrument(skip(pool), err)]
pub async fn state_intervals(
    pool: &PgPool,
    q: &IntervalQuery,
) -> Result<Vec<StateInterval>, QueryError> {
    check_window(q.from, q.to)?;
    select_machines(
        pool,
        Some(&q.machine_id),
        None,
        &Default::default(),
        q.to,
        q.as_of,
    )
    .await?;
    let rows = fetch_intervals(
        pool,
        std::slice::from_ref(&q.machine_id),
        q.from,
        q.to,
        q.as_of,
    )
    .await?;
    let (from, end) = (us(q.from), us(q.to.min(evaluation_time(q.as_of))));
    let mut out = Vec::with_capacity(rows.len() + 1);
    let first = rows.first().map_or(end, |r| us(r.at));
    if first > from && end > from {
        out.push(StateInterval {
            machine_id: q.machine_id.clone(),
            state: "unknown".into(),
            start: q.from,
            end: rows.first().map(|r| r.at),
            duration_s: secs(first.min(end) - from),
            planned: false,
            reason: None,
            reason_code: None,
            category: None,
            loss: None,
            classified_reason_code: None,
            classified_category: None,
            classified_loss: None,
            final_reason_code: None,
        });
    }
    out.extend(rows.iter().map(|r| interval_view(r, from, end)));
    Ok(out)
}

/// What to report on.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct DowntimeQuery {
    /// One machine; else every machine (of `line`, when given).
    pub machine_id: Option<String>,
    pub line: Option<String>,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub as_of: Option<DateTime<Utc>>,
    /// Stops shorter than this are micro-stops (default 60 s).
    pub micro_stop_threshold_s: Option<f64>,
    /// The part of the equipment hierarchy (ADR 0062).
    #[serde(default)]
    pub scope: super::hierarchy::Scope,
}

/// One bar of a Pareto: a reason code or loss category and its stop time.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ParetoEntry {
    pub key: String,
    pub stops: u64,
    pub duration_s: f64,
    /// Share of the Pareto's total time.
    pub share: Option<f64>,
    /// Running share, largest first.
    pub cumulative_share: Option<f64>,
}

/// Micro-stops of a machine.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MicroStops {
    pub threshold_s: f64,
    pub count: u64,
    pub duration_s: f64,
    /// By reason code as finally classified.
    pub by_reason: Vec<ParetoEntry>,
}

/// The downtime report of one machine and window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DowntimeReport {
    pub machine_id: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub as_of: Option<DateTime<Utc>>,
    /// Unplanned stops (idle or down) overlapping the window, as classified.
    pub stops: u64,
    /// Their time inside the window.
    pub downtime_s: f64,
    pub planned_stop_time_s: f64,
    pub run_time_s: f64,
    /// Time before the first state event.
    pub unknown_time_s: f64,
    pub pareto_by_reason_recorded: Vec<ParetoEntry>,
    pub pareto_by_reason_classified: Vec<ParetoEntry>,
    pub pareto_by_loss_recorded: Vec<ParetoEntry>,
    pub pareto_by_loss_classified: Vec<ParetoEntry>,
    pub micro_stops: MicroStops,
    /// Unplanned `down` stops starting in the window.
    pub failures: u64,
    /// Mean time between failures: run time / failures.
    pub mtbf_s: Option<f64>,
    /// Mean time to repair: mean duration of those failures.
    pub mttr_s: Option<f64>,
}

#[derive(Default)]
struct Bars(HashMap<String, (u64, i64)>);

impl Bars {
    fn add(&mut self, key: &str, d: i64) {
        let e = self.0.entry(key.to_owned()).or_default();
        e.0 += 1;
        e.1 += d;
    }

    fn pareto(self) -> Vec<ParetoEntry> {
        let total: i64 = self.0.values().map(|v| v.1).sum();
        let mut v: Vec<(String, u64, i64)> =
            self.0.into_iter().map(|(k, (n, d))| (k, n, d)).collect();
        v.sort_by(|a, b| b.2.cmp(&a.2).then(b.1.cmp(&a.1)).then(a.0.cmp(&b.0)));
        let mut cumulative = 0;
        v.into_iter()
            .map(|(key, stops, d)| {
                cumulative += d;
                ParetoEntry {
                    key,
                    stops,
                    duration_s: secs(d),
                    share: ratio(d as f64, total as f64),
                    cumulative_share: ratio(cumulative as f64, total as f64),
                }
            })
            .collect()
    }
}

fn loss_key(loss: Option<&str>, planned: bool) -> String {
    match loss {
        Some(l) => l.to_owned(),
        None if planned => "planned".to_owned(),
        None => "unclassified".to_owned(),
    }
}

/// A failure's whole length in microseconds (to `end` while it lasts), if `s` is
/// one of the window [from, end): an unplanned `down` stop starting in it whose
/// loss in force is not setup and adjustment (a setup is no failure). A failure
/// counts in the window it starts in, with its whole length even when it ends
/// after the window (ADR 0058).
pub(crate) fn failure(s: &IntervalRow, from: i64, end: i64) -> Option<i64> {
    let start = us(s.at);
    let starts_inside = start >= from && start < end;
    let setup = s.effective_loss() == Some("setup_adjustment");
    (starts_inside && s.state == "down" && !s.effective_planned() && !setup)
        .then(|| s.next_at.map_or(end, us) - start)
        .map(|d| d.max(0))
}

/// Downtime reports, one per selected machine.
#[instrument(skip(pool), err)]
pub async fn downtime_report(
    pool: &PgPool,
    q: &DowntimeQuery,
) -> Result<Vec<DowntimeReport>, QueryError> {
    check_window(q.from, q.to)?;
    let threshold = q.micro_stop_threshold_s.unwrap_or(DEFAULT_MICRO_STOP_S);
    if !(threshold.is_finite() && threshold >= 0.0) {
        return Err(QueryError::Invalid(
            "micro_stop_threshold_s must be a number >= 0".into(),
        ));
    }
    let threshold_us = (threshold * 1e6).round() as i64;
    let machines = select_machines(
        pool,
        q.machine_id.as_deref(),
        q.line.as_deref(),
        &q.scope,
        q.to,
        q.as_of,
    )
    .await?;
    let ids: Vec<String> = machines.iter().map(|m| m.0.clone()).collect();
    let rows = fetch_intervals(pool, &ids, q.from, q.to, q.as_of).await?;
    let mut by_machine: HashMap<&str, Vec<&IntervalRow>> = HashMap::new();
    for r in &rows {
        by_machine.entry(r.machine_id.as_str()).or_default().push(r);
    }
    let eval = evaluation_time(q.as_of);
    let (from, end) = (us(q.from), us(q.to.min(eval)).max(us(q.from)));
    let mut reports = Vec::with_capacity(ids.len());
    for id in &ids {
        let states = by_machine.get(id.as_str()).map_or(&[][..], Vec::as_slice);
        let mut reason_rec = Bars::default();
        let mut reason_cls = Bars::default();
        let mut loss_rec = Bars::default();
        let mut loss_cls = Bars::default();
        let mut micro = Bars::default();
        let (mut stops, mut downtime, mut planned_stop, mut run) = (0u64, 0i64, 0i64, 0i64);
        let (mut failures, mut failure_time) = (0u64, 0i64);
        let first = states.first().map_or(end, |s| us(s.at));
        let unknown = (first.min(end) - from).max(0);
        for s in states {
            let start = us(s.at);
            let stop = s.next_at.map_or(i64::MAX, us);
            let d = (stop.min(end) - start.max(from)).max(0);
            // A stop's whole length when it has ended; else up to the window's end.
            let full = if s.next_at.is_some() {
                stop - start
            } else {
                end - start
            };
            if s.state == "running" {
                if !s.effective_planned() {
                    run += d;
                }
                continue;
            }
            if d == 0 {
                continue;
            }
            let recorded_code = s.reason_code.as_deref().unwrap_or("unclassified");
            if !s.planned {
                reason_rec.add(recorded_code, d);
                loss_rec.add(&loss_key(s.loss.as_deref(), false), d);
            }
            if s.effective_planned() {
                planned_stop += d;
                continue;
            }
            stops += 1;
            downtime += d;
            let code = s.class_reason_code.as_deref().unwrap_or(recorded_code);
            let loss = s.effective_loss();
            reason_cls.add(code, d);
            loss_cls.add(&loss_key(loss, false), d);
            let starts_inside = start >= from && start < end;
            if starts_inside && s.next_at.is_some() && full < threshold_us {
                micro.add(code, full);
            }
            if let Some(length) = failure(s, from, end) {
                failures += 1;
                failure_time += length;
            }
        }
        let micro_count: u64 = micro.0.values().map(|v| v.0).sum();
        let micro_time: i64 = micro.0.values().map(|v| v.1).sum();
        reports.push(DowntimeReport {
            machine_id: id.clone(),
            from: q.from,
            to: q.to,
            as_of: q.as_of,
            stops,
            downtime_s: secs(downtime),
            planned_stop_time_s: secs(planned_stop),
            run_time_s: secs(run),
            unknown_time_s: secs(unknown),
            pareto_by_reason_recorded: reason_rec.pareto(),
            pareto_by_reason_classified: reason_cls.pareto(),
            pareto_by_loss_recorded: loss_rec.pareto(),
            pareto_by_loss_classified: loss_cls.pareto(),
            micro_stops: MicroStops {
                threshold_s: threshold,
                count: micro_count,
                duration_s: secs(micro_time),
                by_reason: micro.pareto(),
            },
            failures,
            mtbf_s: (failures > 0).then(|| secs(run) / failures as f64),
            mttr_s: (failures > 0).then(|| secs(failure_time) / failures as f64),
        });
    }
    Ok(reports)
}

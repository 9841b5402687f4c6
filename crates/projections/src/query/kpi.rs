//! KPIs (ISO 22400-2) for any window [from, to), exact to the microsecond,
//! computed at query time from the facts of `machine_history` (ADR 0005).
//!
//! For a machine and a window:
//! - a state lasts from its floor time until the machine's next state event (by
//!   floor time); `lead()` over (floor time, position) gives its end;
//! - **planned production time** = the scheduled, elapsed part of the window
//!   (inside the line's shifts when it has a calendar; up to the evaluation time:
//!   now, or `as_of`), less time in states flagged planned (a later stop
//!   classification's flag wins over the recorded one);
//! - **run time** = time in `running` inside planned production time;
//!   **downtime** = planned production time − run time (down, idle, and unknown
//!   time before the machine's first state event: ADR 0005), in minutes;
//! - availability = run / planned; performance = Σ(ideal cycle time × count) /
//!   run (each parts report carries the cycle time in force); quality =
//!   production_yield = good / total; oee = availability × performance × quality.
//!   A zero denominator gives `null` (and so does a product with a `null`).
//!   Performance above 1 is reported as it is, with `performance_exceeds_one`.
//! - parts count at their floor time, in the window (or bucket) they fall in.
//! - `as_of`: only facts recorded by then, and elapsed time up to then.
//!
//! Roll-ups sum times and counts over machines and recompute the ratios (never an
//! average of ratios). Series (`granularity`): plant-local hours or days, or the
//! line's shifts (a line without a calendar falls back to days).

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use tracing::instrument;

use super::calendar::{Calendar, ShiftWindow};
use super::hierarchy::{filter_machines, membership_instant, Scope};
use super::{out_of_range, ratio};
use crate::error::QueryError;

/// Most buckets one query may ask for (machines × buckets).
const MAX_CELLS: usize = 200_000;

/// The bucket size of a KPI series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Granularity {
    Hour,
    Shift,
    Day,
}

impl std::str::FromStr for Granularity {
    type Err = QueryError;
    fn from_str(s: &str) -> Result<Self, QueryError> {
        match s {
            "hour" => Ok(Self::Hour),
            "shift" => Ok(Self::Shift),
            "day" => Ok(Self::Day),
            other => Err(QueryError::Invalid(format!(
                "granularity {other:?} is not one of hour, shift, day"
            ))),
        }
    }
}

/// What to compute.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct KpiQuery {
    /// One machine; else every machine (of `line`, when given).
    pub machine_id: Option<String>,
    pub line: Option<String>,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// Figures as known then: only events recorded by `as_of`.
    pub as_of: Option<DateTime<Utc>>,
    /// A series instead of one row per machine.
    pub granularity: Option<Granularity>,
    /// One row (per bucket) for all selected machines together, `machine_id` `*`.
    #[serde(default)]
    pub rollup: bool,
    /// The part of the equipment hierarchy (ADR 0062).
    #[serde(default)]
    pub scope: Scope,
}

impl KpiQuery {
    /// A query for one machine and window.
    pub fn machine(machine_id: impl Into<String>, from: DateTime<Utc>, to: DateTime<Utc>) -> Self {
        Self {
            machine_id: Some(machine_id.into()),
            line: None,
            from,
            to,
            as_of: None,
            granularity: None,
            rollup: false,
            scope: Scope::default(),
        }
    }
}

/// KPIs of one machine (or a roll-up) over one window or bucket.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KpiRow {
    /// The machine, or `*` for a roll-up.
    pub machine_id: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub planned_production_time_s: f64,
    pub run_time_s: f64,
    pub downtime_minutes: f64,
    pub availability: Option<f64>,
    pub performance: Option<f64>,
    pub quality: Option<f64>,
    pub oee: Option<f64>,
    pub good_count: i64,
    pub scrap_count: i64,
    pub total_count: i64,
    pub production_yield: Option<f64>,
    /// Performance above 1: a wrong ideal cycle time or double-counted parts.
    pub performance_exceeds_one: bool,
    /// scrap / total.
    pub scrap_rate: Option<f64>,
    /// The machine's line (a roll-up: the line asked for, if any).
    pub line: Option<String>,
    /// The shift of a `granularity=shift` bucket.
    pub shift: Option<String>,
    /// The crew of that shift, when its rotation names one (ADR 0060).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    /// How many machines the row covers.
    pub machine_count: usize,
    /// Time in states flagged planned (excluded from planned production time).
    pub planned_stop_time_s: f64,
    /// Downtime in seconds (= downtime_minutes × 60).
    pub downtime_s: f64,
    /// Part of the downtime before the machine's first known state (ADR 0005).
    pub unknown_time_s: f64,
    /// Time of the window outside the shifts, or not yet elapsed.
    pub not_scheduled_time_s: f64,
    /// Σ ideal cycle time × count: the time the parts would ideally take.
    pub ideal_time_s: f64,
    pub as_of: Option<DateTime<Utc>>,
}

/// Accumulated microseconds and counts of one cell.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Figures {
    scheduled_us: i64,
    planned_stop_us: i64,
    run_us: i64,
    unknown_us: i64,
    good: i64,
    scrap: i64,
    ideal_s: f64,
}

impl Figures {
    fn add(&mut self, o: &Figures) {
        self.scheduled_us += o.scheduled_us;
        self.planned_stop_us += o.planned_stop_us;
        self.run_us += o.run_us;
        self.unknown_us += o.unknown_us;
        self.good += o.good;
        self.scrap += o.scrap;
        self.ideal_s += o.ideal_s;
    }
}

/// A state interval as the KPI and downtime queries read it.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub(crate) struct IntervalRow {
    pub machine_id: String,
    pub at: DateTime<Utc>,
    /// The next state's floor time; None while it lasts.
    pub next_at: Option<DateTime<Utc>>,
    pub state: String,
    pub planned: bool,
    pub reason: Option<String>,
    pub reason_code: Option<String>,
    pub category: Option<String>,
    pub loss: Option<String>,
    pub class_reason_code: Option<String>,
    pub class_category: Option<String>,
    pub class_loss: Option<String>,
    pub class_planned: Option<bool>,
}

impl IntervalRow {
    /// The planned flag in force: the latest classification's, else the recorded.
    pub fn effective_planned(&self) -> bool {
        self.class_planned.unwrap_or(self.planned)
    }

    /// The loss in force: the latest classification's, else the recorded.
    pub fn effective_loss(&self) -> Option<&str> {
        if self.class_reason_code.is_some() {
            self.class_loss.as_deref()
        } else {
            self.loss.as_deref()
        }
    }
}

/// The state intervals of `machines` overlapping [from, to) as known at `as_of`:
/// the last state starting at or before `from`, every state starting before
/// `to`, each with the floor time of the next state (even past `to`).
pub(crate) async fn fetch_intervals(
    pool: &PgPool,
    machines: &[String],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    as_of: Option<DateTime<Utc>>,
) -> Result<Vec<IntervalRow>, sqlx::Error> {
    // Two texts: without `as_of` the recorded-time filters are left out rather than
    // written `($4 IS NULL OR …)`, so that PostgreSQL can keep one cached plan for
    // the common query instead of planning it again on every request.
    const SQL: &str = "WITH ids AS (SELECT unnest($1::text[]) AS machine_id), \
         firsts AS ( \
           SELECT ids.machine_id, \
             (SELECT f.at FROM rm_state_facts f WHERE f.machine_id = ids.machine_id AND f.at <= $2 \
                AND ($4::timestamptz IS NULL OR f.recorded_at <= $4) \
              ORDER BY f.at DESC, f.position DESC LIMIT 1) AS first_at \
           FROM ids), \
         facts AS ( \
           SELECT f.machine_id, f.at, f.position, false AS extra FROM firsts \
           JOIN rm_state_facts f ON f.machine_id = firsts.machine_id \
             AND f.at >= coalesce(firsts.first_at, '-infinity'::timestamptz) AND f.at < $3 \
             AND ($4::timestamptz IS NULL OR f.recorded_at <= $4) \
           UNION ALL \
           SELECT ids.machine_id, n.at, n.position, true FROM ids CROSS JOIN LATERAL ( \
             SELECT g.at, g.position FROM rm_state_facts g WHERE g.machine_id = ids.machine_id \
               AND g.at >= $3 AND ($4::timestamptz IS NULL OR g.recorded_at <= $4) \
             ORDER BY g.at, g.position LIMIT 1) n), \
         ordered AS ( \
           SELECT machine_id, at, position, extra, \
             lead(at) OVER (PARTITION BY machine_id ORDER BY at, position) AS next_at \
           FROM facts) \
         SELECT o.machine_id, o.at, o.next_at, f.state, f.planned, f.reason, f.reason_code, \
           f.category, f.loss, c.reason_code AS class_reason_code, c.category AS class_category, \
           c.loss AS class_loss, c.planned AS class_planned \
         FROM ordered o \
         JOIN rm_state_facts f ON f.machine_id = o.machine_id AND f.at = o.at AND f.position = o.position \
         LEFT JOIN LATERAL ( \
           SELECT c.reason_code, c.category, c.loss, c.planned FROM rm_stop_classifications c \
           WHERE c.machine_id = o.machine_id AND c.stop_at = o.at \
             AND ($4::timestamptz IS NULL OR c.recorded_at <= $4) \
           ORDER BY c.position DESC LIMIT 1) c ON true \
         WHERE NOT o.extra \
         ORDER BY o.machine_id, o.at, o.position";
    let filter = |alias: &str| match as_of {
        Some(_) => format!("({alias}.recorded_at <= $4)"),
        None => "true".to_owned(),
    };
    let sql = SQL
        .replace(
            "($4::timestamptz IS NULL OR f.recorded_at <= $4)",
            &filter("f"),
        )
        .replace(
            "($4::timestamptz IS NULL OR g.recorded_at <= $4)",
            &filter("g"),
        )
        .replace(
            "($4::timestamptz IS NULL OR c.recorded_at <= $4)",
            &filter("c"),
        );
    let query = sqlx::query_as::<_, IntervalRow>(sql.as_str())
        .bind(machines)
        .bind(from)
        .bind(to);
    match as_of {
        Some(t) => query.bind(t).fetch_all(pool).await,
        None => query.fetch_all(pool).await,
    }
}

/// The machines a query of window [.., `to`) selects, with their lines, by id: by id,
/// line and hierarchy `scope` (membership as the tree stood at the end of the window,
/// as known by `as_of`: ADR 0062).
pub(crate) async fn select_machines(
    pool: &PgPool,
    machine_id: Option<&str>,
    line: Option<&str>,
    scope: &Scope,
    to: DateTime<Utc>,
    as_of: Option<DateTime<Utc>>,
) -> Result<Vec<(String, String)>, QueryError> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT machine_id, line FROM rm_machines WHERE ($1::text IS NULL OR machine_id = $1) \
         AND ($2::text IS NULL OR line = $2) ORDER BY machine_id",
    )
    .bind(machine_id)
    .bind(line)
    .fetch_all(pool)
    .await?;
    if let (Some(id), true) = (machine_id, rows.is_empty()) {
        return Err(QueryError::NotFound {
            kind: "machine",
            id: id.to_owned(),
        });
    }
    let at = membership_instant(to, evaluation_time(as_of));
    filter_machines(pool, rows, scope, at, as_of).await
}

/// The evaluation time: what has elapsed (now, or `as_of`).
pub(crate) fn evaluation_time(as_of: Option<DateTime<Utc>>) -> DateTime<Utc> {
    let now = Utc::now();
    as_of.map_or(now, |a| a.min(now))
}

pub(crate) fn us(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

pub(crate) fn secs(us: i64) -> f64 {
    us as f64 / 1e6
}

/// Length of the overlap of [a, b) with sorted, disjoint `segments`.
pub(crate) fn overlap(a: i64, b: i64, segments: &[(i64, i64)]) -> i64 {
    let first = segments.partition_point(|s| s.1 <= a);
    segments[first..]
        .iter()
        .take_while(|s| s.0 < b)
        .map(|s| (b.min(s.1) - a.max(s.0)).max(0))
        .sum()
}

/// Sorted, disjoint union of intervals.
fn merge(mut v: Vec<(i64, i64)>) -> Vec<(i64, i64)> {
    v.retain(|s| s.0 < s.1);
    v.sort_unstable();
    let mut out: Vec<(i64, i64)> = Vec::with_capacity(v.len());
    for s in v {
        match out.last_mut() {
            Some(last) if s.0 <= last.1 => last.1 = last.1.max(s.1),
            _ => out.push(s),
        }
    }
    out
}

/// The scheduled, elapsed segments of [from, to) in microseconds, sorted and
/// disjoint: inside `shifts` when the line has a calendar, up to `eval`.
pub(crate) fn scheduled_segments(
    shifts: Option<&[ShiftWindow]>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    eval: DateTime<Utc>,
) -> Vec<(i64, i64)> {
    let scheduled = match shifts {
        Some(windows) => merge(windows.iter().map(|w| (us(w.from), us(w.to))).collect()),
        None => vec![(us(from), us(to))],
    };
    scheduled
        .into_iter()
        .map(|(a, b)| (a, b.min(us(eval))))
        .filter(|(a, b)| a < b)
        .collect()
}

/// The breaks of `shifts` (planned time inside them) in microseconds, sorted and
/// disjoint, up to `eval` (ADR 0060).
pub(crate) fn break_segments(
    shifts: Option<&[ShiftWindow]>,
    eval: DateTime<Utc>,
) -> Vec<(i64, i64)> {
    merge(
        shifts
            .into_iter()
            .flatten()
            .flat_map(|w| w.breaks.iter())
            .map(|&(a, b)| (us(a), us(b).min(us(eval))))
            .collect(),
    )
}

/// How a machine's scheduled time in [a, b) splits, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Split {
    pub scheduled: i64,
    /// States flagged planned, and any other stop or unknown time in a break.
    pub planned: i64,
    /// Unplanned `running`.
    pub run: i64,
    /// Unplanned stops outside breaks.
    pub stopped: i64,
    /// Outside breaks, before the machine's first known state.
    pub unknown: i64,
}

/// Splits the time of `states` (one machine's, by floor time) in the scheduled
/// `segments` and [a, b): a break is planned time unless the machine runs
/// through it (ADR 0060). The one semantics of the KPIs and the catalogue.
pub(crate) fn split_time(
    states: &[&IntervalRow],
    segments: &[(i64, i64)],
    breaks: &[(i64, i64)],
    a: i64,
    b: i64,
) -> Split {
    let mut t = Split {
        scheduled: overlap(a, b, segments),
        ..Split::default()
    };
    let break_total = overlap(a, b, breaks);
    let (mut covered, mut covered_in_breaks) = (0, 0);
    for s in states {
        let start = us(s.at).max(a);
        let end = s.next_at.map_or(i64::MAX, us).min(b);
        if start >= end {
            continue;
        }
        let d = overlap(start, end, segments);
        let in_breaks = overlap(start, end, breaks);
        covered += d;
        covered_in_breaks += in_breaks;
        if s.effective_planned() {
            t.planned += d;
        } else if s.state == "running" {
            t.run += d;
        } else {
            t.planned += in_breaks;
            t.stopped += d - in_breaks;
        }
    }
    let unknown_in_breaks = (break_total - covered_in_breaks).max(0);
    t.planned += unknown_in_breaks;
    t.unknown = (t.scheduled - covered - unknown_in_breaks).max(0);
    t
}

/// One bucket of a machine's series.
#[derive(Debug, Clone, PartialEq)]
struct Bucket {
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    shift: Option<String>,
    team: Option<String>,
}

/// KPI rows: one per machine (and bucket), or roll-ups.
#[instrument(skip(pool), err)]
pub async fn kpi_metrics(pool: &PgPool, q: &KpiQuery) -> Result<Vec<KpiRow>, QueryError> {
    if q.from >= q.to {
        return Err(QueryError::Invalid("`from` must be before `to`".into()));
    }
    let machines = select_machines(
        pool,
        q.machine_id.as_deref(),
        q.line.as_deref(),
        &q.scope,
        q.to,
        q.as_of,
    )
    .await?;
    if machines.is_empty() {
        return Ok(Vec::new());
    }
    let mut lines: Vec<String> = machines.iter().map(|m| m.1.clone()).collect();
    lines.sort();
    lines.dedup();
    // The state intervals do not depend on the calendar: fetch them while the
    // calendar, the buckets and the parts are worked out (two connections, so one
    // round trip less of latency).
    let ids: Vec<String> = machines.iter().map(|m| m.0.clone()).collect();
    let (intervals, (buckets_of, scheduled_of, breaks_of, parts)) = tokio::try_join!(
        async {
            fetch_intervals(pool, &ids, q.from, q.to, q.as_of)
                .await
                .map_err(QueryError::from)
        },
        buckets_and_parts(pool, q, &machines, &lines),
    )?;
    let mut by_machine: HashMap<&str, Vec<&IntervalRow>> = HashMap::new();
    for i in &intervals {
        by_machine.entry(i.machine_id.as_str()).or_default().push(i);
    }

    let mut rows = Vec::new();
    for (machine_id, line) in &machines {
        let (Some(buckets), Some(scheduled)) = (buckets_of.get(line), scheduled_of.get(line))
        else {
            continue;
        };
        let states = by_machine
            .get(machine_id.as_str())
            .map_or(&[][..], Vec::as_slice);
        let breaks = breaks_of.get(line).map_or(&[][..], Vec::as_slice);
        for (idx, bucket) in buckets.iter().enumerate() {
            let (b0, b1) = (us(bucket.from), us(bucket.to));
            let split = split_time(states, scheduled, breaks, b0, b1);
            let mut f = Figures {
                scheduled_us: split.scheduled,
                planned_stop_us: split.planned,
                run_us: split.run,
                unknown_us: split.unknown,
                ..Figures::default()
            };
            if let Some(&(good, scrap, ideal)) = parts.get(&(machine_id.clone(), idx)) {
                f.good = good;
                f.scrap = scrap;
                f.ideal_s = ideal;
            }
            rows.push(row(machine_id, Some(line.clone()), bucket, &f, 1, q.as_of));
        }
    }
    if q.rollup {
        return Ok(roll_up(rows, q));
    }
    Ok(rows)
}

/// Buckets and scheduled (elapsed, in-shift) segments per line, and the parts per
/// (machine, bucket).
type BucketsAndParts = (
    HashMap<String, Vec<Bucket>>,
    HashMap<String, Vec<(i64, i64)>>,
    HashMap<String, Vec<(i64, i64)>>,
    HashMap<(String, usize), (i64, i64, f64)>,
);

async fn buckets_and_parts(
    pool: &PgPool,
    q: &KpiQuery,
    machines: &[(String, String)],
    lines: &[String],
) -> Result<BucketsAndParts, QueryError> {
    let calendar = Calendar::load_as_of(pool, lines, q.as_of).await?;
    let eval = evaluation_time(q.as_of);
    let (from, to) = (q.from, q.to);

    // Buckets and scheduled segments per line.
    let mut buckets_of: HashMap<String, Vec<Bucket>> = HashMap::new();
    let mut scheduled_of: HashMap<String, Vec<(i64, i64)>> = HashMap::new();
    let mut breaks_of: HashMap<String, Vec<(i64, i64)>> = HashMap::new();
    for line in lines {
        let shifts = calendar.shift_windows(line, from, to);
        let buckets: Vec<Bucket> = match q.granularity {
            None => vec![Bucket {
                from,
                to,
                shift: None,
                team: None,
            }],
            Some(Granularity::Hour) => calendar
                .hours(from, to)
                .into_iter()
                .map(|(a, b)| Bucket {
                    from: a,
                    to: b,
                    shift: None,
                    team: None,
                })
                .collect(),
            Some(Granularity::Day) => calendar
                .days(from, to)
                .into_iter()
                .map(|(a, b)| Bucket {
                    from: a,
                    to: b,
                    shift: None,
                    team: None,
                })
                .collect(),
            Some(Granularity::Shift) => match &shifts {
                Some(windows) => windows
                    .iter()
                    .map(|w| Bucket {
                        from: w.from,
                        to: w.to,
                        shift: Some(w.name.clone()),
                        team: w.team.clone(),
                    })
                    .collect(),
                None => calendar
                    .days(from, to)
                    .into_iter()
                    .map(|(a, b)| Bucket {
                        from: a,
                        to: b,
                        shift: None,
                        team: None,
                    })
                    .collect(),
            },
        };
        buckets_of.insert(line.clone(), buckets);
        breaks_of.insert(line.clone(), break_segments(shifts.as_deref(), eval));
        scheduled_of.insert(
            line.clone(),
            scheduled_segments(shifts.as_deref(), from, to, eval),
        );
    }
    let cells: usize = machines
        .iter()
        .map(|(_, line)| buckets_of.get(line).map_or(0, Vec::len))
        .sum();
    if cells > MAX_CELLS {
        return Err(QueryError::Invalid(format!(
            "the query asks for {cells} rows; narrow the window or coarsen the granularity"
        )));
    }

    // Parts per machine and bucket, one query per distinct bucket set (line).
    let mut parts: HashMap<(String, usize), (i64, i64, f64)> = HashMap::new();
    for line in lines {
        let Some(buckets) = buckets_of.get(line) else {
            continue;
        };
        let line_ids: Vec<String> = machines
            .iter()
            .filter(|m| &m.1 == line)
            .map(|m| m.0.clone())
            .collect();
        let starts: Vec<DateTime<Utc>> = buckets.iter().map(|b| b.from).collect();
        let ends: Vec<DateTime<Utc>> = buckets.iter().map(|b| b.to).collect();
        let sql = "SELECT p.machine_id, b.idx, sum(p.good)::bigint, sum(p.scrap)::bigint, \
               sum(p.ideal_cycle_time_s * (p.good + p.scrap))::float8 \
             FROM unnest($2::timestamptz[], $3::timestamptz[]) WITH ORDINALITY AS b(s, e, idx) \
             JOIN rm_parts_facts p ON p.machine_id = ANY($1) AND p.at >= b.s AND p.at < b.e \
               AND {} \
             GROUP BY p.machine_id, b.idx";
        // As for the intervals: no `($4 IS NULL OR …)`, so the plan can be cached.
        let sql = sql.replace(
            "{}",
            if q.as_of.is_some() {
                "p.recorded_at <= $4"
            } else {
                "true"
            },
        );
        let query = sqlx::query_as(sql.as_str())
            .bind(&line_ids)
            .bind(&starts)
            .bind(&ends);
        let rows: Vec<(String, i64, i64, i64, f64)> = match q.as_of {
            Some(t) => query.bind(t).fetch_all(pool).await?,
            None => query.fetch_all(pool).await?,
        };
        for (machine, idx, good, scrap, ideal) in rows {
            // WITH ORDINALITY counts from 1; anything else is the database's fault.
            let idx = idx
                .checked_sub(1)
                .and_then(|i| usize::try_from(i).ok())
                .ok_or_else(|| out_of_range("bucket index", idx))?;
            parts.insert((machine, idx), (good, scrap, ideal));
        }
    }

    Ok((buckets_of, scheduled_of, breaks_of, parts))
}

fn row(
    machine_id: &str,
    line: Option<String>,
    bucket: &Bucket,
    f: &Figures,
    machine_count: usize,
    as_of: Option<DateTime<Utc>>,
) -> KpiRow {
    let planned = secs(f.scheduled_us - f.planned_stop_us);
    let run = secs(f.run_us);
    let downtime = secs(f.scheduled_us - f.planned_stop_us - f.run_us);
    let total = f.good + f.scrap;
    let availability = ratio(run, planned);
    let performance = ratio(f.ideal_s, run);
    let quality = ratio(f.good as f64, total as f64);
    let oee = match (availability, performance, quality) {
        (Some(a), Some(p), Some(q)) => Some(a * p * q),
        _ => None,
    };
    let window_us = us(bucket.to) - us(bucket.from);
    KpiRow {
        machine_id: machine_id.to_owned(),
        from: bucket.from,
        to: bucket.to,
        planned_production_time_s: planned,
        run_time_s: run,
        downtime_minutes: downtime / 60.0,
        availability,
        performance,
        quality,
        oee,
        good_count: f.good,
        scrap_count: f.scrap,
        total_count: total,
        production_yield: quality,
        performance_exceeds_one: performance.is_some_and(|p| p > 1.0 + 1e-9),
        scrap_rate: ratio(f.scrap as f64, total as f64),
        line,
        shift: bucket.shift.clone(),
        team: bucket.team.clone(),
        machine_count,
        planned_stop_time_s: secs(f.planned_stop_us),
        downtime_s: downtime,
        unknown_time_s: secs(f.unknown_us),
        not_scheduled_time_s: secs((window_us * machine_count as i64 - f.scheduled_us).max(0)),
        ideal_time_s: f.ideal_s,
        as_of,
    }
}

/// Sums rows with the same bucket (and shift) and recomputes the ratios: what
/// `rollup` does, for a caller that selected the rows itself (the reports).
pub fn roll_up(rows: Vec<KpiRow>, q: &KpiQuery) -> Vec<KpiRow> {
    type Cell = (DateTime<Utc>, DateTime<Utc>, Option<String>);
    let mut cells: BTreeMap<Cell, (Figures, usize)> = BTreeMap::new();
    for r in rows {
        let f = Figures {
            scheduled_us: ((r.planned_production_time_s + r.planned_stop_time_s) * 1e6).round()
                as i64,
            planned_stop_us: (r.planned_stop_time_s * 1e6).round() as i64,
            run_us: (r.run_time_s * 1e6).round() as i64,
            unknown_us: (r.unknown_time_s * 1e6).round() as i64,
            good: r.good_count,
            scrap: r.scrap_count,
            ideal_s: r.ideal_time_s,
        };
        let cell = cells.entry((r.from, r.to, r.shift)).or_default();
        cell.0.add(&f);
        cell.1 += 1;
    }
    cells
        .into_iter()
        .map(|((from, to, shift), (f, n))| {
            row(
                "*",
                q.line.clone(),
                &Bucket {
                    from,
                    to,
                    shift,
                    team: None,
                },
                &f,
                n,
                q.as_of,
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlap_of_sorted_segments() {
        let segs = [(0, 10), (20, 30), (40, 50)];
        assert_eq!(overlap(5, 25, &segs), 10);
        assert_eq!(overlap(0, 100, &segs), 30);
        assert_eq!(overlap(10, 20, &segs), 0);
        assert_eq!(overlap(45, i64::MAX, &segs), 5);
    }

    #[test]
    fn merge_joins_overlapping_segments() {
        assert_eq!(
            merge(vec![(5, 8), (0, 6), (10, 12), (12, 13)]),
            vec![(0, 8), (10, 13)]
        );
    }
}

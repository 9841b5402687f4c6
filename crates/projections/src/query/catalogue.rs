//! The ISO 22400-2 KPI catalogue (ADR 0058), per machine or rolled up, computed
//! at query time from the facts like OEE (ADR 0005), and exact on floor time.
//!
//! Time elements of a machine over [from, to), up to the evaluation time (now,
//! or `as_of`), in seconds:
//! - CT, calendar time: the elapsed window, 24 h a day;
//! - POT, planned operation time: its scheduled part (the line's shifts);
//! - PDT, planned downtime: stops flagged planned, inside POT;
//! - PBT, planned busy time = POT − PDT (`planned_production_time_s` of
//!   `/kpi-metrics`);
//! - APT, actual production time: `running` inside PBT;
//! - AUST, actual unit setup time: the time of changeovers (see
//!   [`super::changeovers`]) in which the machine was stopped, inside PBT;
//! - AUBT, actual unit busy time = APT + AUST;
//! - ADOT, actual unit downtime = PBT − AUBT (stops other than setups, and
//!   unknown time);
//! - AOET, actual order execution time: the union of the machine's orders from
//!   their start to their completion or cancellation (holds included), inside
//!   the elapsed window.
//!
//! The KPIs (a zero denominator gives `null`):
//! availability = APT / PBT; effectiveness = Σ ideal cycle time × parts / APT;
//! quality ratio = good / produced; OEE = their product; loading = PBT / CT;
//! TEEP = OEE × loading; utilisation efficiency = APT / AUBT; allocation
//! efficiency = AUBT / PBT; allocation ratio = AUBT inside AOET / AOET; NEE =
//! utilisation efficiency × effectiveness × quality ratio; setup ratio = AUST /
//! AUBT; throughput rate = parts reported for orders / AOET (per hour); scrap ratio = scrap / produced;
//! first pass yield = (inspected − defective) / inspected, over the inspections
//! of the machine's orders in the window; MTTF = APT / failures; MTTR = time to
//! repair / failures; MTBF = MTTF + MTTR; worker efficiency = labour time while
//! the machine ran / labour time clocked on its orders.
//!
//! Roll-ups sum the time elements and counts and recompute every ratio.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use tracing::instrument;

use super::calendar::Calendar;
use super::changeovers::{changeovers_from, Changeover};
use super::downtime::failure;
use super::kpi::{
    break_segments, evaluation_time, fetch_intervals, overlap, scheduled_segments, secs,
    select_machines, split_time, us, IntervalRow,
};
use super::ratio;
use crate::error::QueryError;

/// What to compute.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct CatalogueQuery {
    pub machine_id: Option<String>,
    pub line: Option<String>,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub as_of: Option<DateTime<Utc>>,
    /// One row for all selected machines together, `machine_id` `*`.
    #[serde(default)]
    pub rollup: bool,
    /// The part of the equipment hierarchy (ADR 0062).
    #[serde(default)]
    pub scope: super::hierarchy::Scope,
}

/// The summed facts of one machine (or of a roll-up), in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Elements {
    pub calendar_us: i64,
    pub operation_us: i64,
    pub planned_down_us: i64,
    pub production_us: i64,
    pub setup_us: i64,
    pub order_execution_us: i64,
    /// AUBT inside the order execution time.
    pub order_busy_us: i64,
    /// Parts reported for an order.
    pub order_parts: i64,
    pub ideal_s: f64,
    pub good: i64,
    pub scrap: i64,
    pub inspected: i64,
    pub defective: i64,
    pub failures: i64,
    pub repair_us: i64,
    /// `None` under `as_of` (clock-ons carry no recorded time).
    pub labour: Option<(i64, i64)>,
}

impl Elements {
    fn add(&mut self, o: &Elements) {
        self.calendar_us += o.calendar_us;
        self.operation_us += o.operation_us;
        self.planned_down_us += o.planned_down_us;
        self.production_us += o.production_us;
        self.setup_us += o.setup_us;
        self.order_execution_us += o.order_execution_us;
        self.order_busy_us += o.order_busy_us;
        self.order_parts += o.order_parts;
        self.ideal_s += o.ideal_s;
        self.good += o.good;
        self.scrap += o.scrap;
        self.inspected += o.inspected;
        self.defective += o.defective;
        self.failures += o.failures;
        self.repair_us += o.repair_us;
        self.labour = match (self.labour, o.labour) {
            (Some(a), Some(b)) => Some((a.0 + b.0, a.1 + b.1)),
            _ => None,
        };
    }
}

/// The ISO 22400-2 time elements, counts and KPIs of one machine or roll-up.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IsoKpis {
    /// The machine, or `*` for a roll-up.
    pub machine_id: String,
    pub line: Option<String>,
    pub machine_count: usize,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub as_of: Option<DateTime<Utc>>,
    pub calendar_time_s: f64,
    pub planned_operation_time_s: f64,
    pub planned_downtime_s: f64,
    pub planned_busy_time_s: f64,
    pub actual_production_time_s: f64,
    pub actual_setup_time_s: f64,
    pub actual_busy_time_s: f64,
    pub actual_downtime_s: f64,
    pub order_execution_time_s: f64,
    pub produced_quantity: i64,
    pub good_quantity: i64,
    pub scrap_quantity: i64,
    pub inspected_quantity: i64,
    pub defective_quantity: i64,
    pub failures: i64,
    pub time_to_repair_s: f64,
    /// Clocked-on time on the machine's orders (`null` under `as_of`).
    pub labour_time_s: Option<f64>,
    /// The part of it while the machine ran.
    pub productive_labour_time_s: Option<f64>,
    pub availability: Option<f64>,
    pub effectiveness: Option<f64>,
    pub quality_ratio: Option<f64>,
    pub oee: Option<f64>,
    pub loading: Option<f64>,
    pub teep: Option<f64>,
    pub nee: Option<f64>,
    pub utilisation_efficiency: Option<f64>,
    pub allocation_efficiency: Option<f64>,
    pub allocation_ratio: Option<f64>,
    pub setup_ratio: Option<f64>,
    /// Parts per hour of order execution time.
    pub throughput_rate_per_h: Option<f64>,
    pub scrap_ratio: Option<f64>,
    pub first_pass_yield: Option<f64>,
    pub mttf_s: Option<f64>,
    pub mtbf_s: Option<f64>,
    pub mttr_s: Option<f64>,
    pub worker_efficiency: Option<f64>,
}

fn product(values: &[Option<f64>]) -> Option<f64> {
    values.iter().try_fold(1.0, |acc, v| v.map(|v| acc * v))
}

/// The KPIs of `e`: pure, the formulas of ADR 0058.
pub(crate) fn kpis(
    machine_id: &str,
    line: Option<String>,
    machine_count: usize,
    q: &CatalogueQuery,
    e: &Elements,
) -> IsoKpis {
    let pbt = secs(e.operation_us - e.planned_down_us);
    let apt = secs(e.production_us);
    let aust = secs(e.setup_us);
    let aubt = apt + aust;
    let aoet = secs(e.order_execution_us);
    let produced = e.good + e.scrap;
    let availability = ratio(apt, pbt);
    let effectiveness = ratio(e.ideal_s, apt);
    let quality = ratio(e.good as f64, produced as f64);
    let oee = product(&[availability, effectiveness, quality]);
    let loading = ratio(pbt, secs(e.calendar_us));
    let utilisation = ratio(apt, aubt);
    let failures = e.failures as f64;
    let mttf = ratio(apt, failures);
    let mttr = ratio(secs(e.repair_us), failures);
    IsoKpis {
        machine_id: machine_id.to_owned(),
        line,
        machine_count,
        from: q.from,
        to: q.to,
        as_of: q.as_of,
        calendar_time_s: secs(e.calendar_us),
        planned_operation_time_s: secs(e.operation_us),
        planned_downtime_s: secs(e.planned_down_us),
        planned_busy_time_s: pbt,
        actual_production_time_s: apt,
        actual_setup_time_s: aust,
        actual_busy_time_s: aubt,
        actual_downtime_s: (pbt - aubt).max(0.0),
        order_execution_time_s: aoet,
        produced_quantity: produced,
        good_quantity: e.good,
        scrap_quantity: e.scrap,
        inspected_quantity: e.inspected,
        defective_quantity: e.defective,
        failures: e.failures,
        time_to_repair_s: secs(e.repair_us),
        labour_time_s: e.labour.map(|l| secs(l.0)),
        productive_labour_time_s: e.labour.map(|l| secs(l.1)),
        availability,
        effectiveness,
        quality_ratio: quality,
        oee,
        loading,
        teep: product(&[oee, loading]),
        nee: product(&[utilisation, effectiveness, quality]),
        utilisation_efficiency: utilisation,
        allocation_efficiency: ratio(aubt, pbt),
        allocation_ratio: ratio(secs(e.order_busy_us), aoet),
        setup_ratio: ratio(aust, aubt),
        throughput_rate_per_h: ratio(e.order_parts as f64, aoet / 3600.0),
        scrap_ratio: ratio(e.scrap as f64, produced as f64),
        first_pass_yield: ratio((e.inspected - e.defective) as f64, e.inspected as f64),
        mttf_s: mttf,
        mtbf_s: mttf.zip(mttr).map(|(f, r)| f + r),
        mttr_s: mttr,
        worker_efficiency: e.labour.and_then(|l| ratio(l.1 as f64, l.0 as f64)),
    }
}

/// The stopped, unplanned, scheduled time inside the changeovers, outside
/// breaks: AUST.
fn setup_time(
    changeovers: &[&Changeover],
    states: &[&IntervalRow],
    segments: &[(i64, i64)],
    breaks: &[(i64, i64)],
    (a, b): (i64, i64),
) -> i64 {
    changeovers
        .iter()
        .map(|c| {
            let (start, end) = (us(c.start).max(a), c.end.map_or(b, us).min(b));
            if start >= end {
                return 0;
            }
            split_time(states, segments, breaks, start, end).stopped
        })
        .sum()
}

/// The union of `intervals` (microseconds) clipped to [a, b): sorted, disjoint.
fn union(mut intervals: Vec<(i64, i64)>, a: i64, b: i64) -> Vec<(i64, i64)> {
    intervals.sort_unstable();
    let mut out: Vec<(i64, i64)> = Vec::new();
    for (s, e) in intervals {
        let (s, e) = (s.max(a), e.min(b));
        if s >= e {
            continue;
        }
        match out.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

/// Per machine: the order execution intervals, inspections and labour sessions.
#[derive(Default)]
struct OrderFacts {
    executions: Vec<(i64, i64)>,
    inspected: i64,
    defective: i64,
    sessions: Vec<(i64, i64)>,
    /// Parts reported for an order while it ran on the machine, in the window.
    parts: i64,
}

async fn fetch_order_facts(
    pool: &PgPool,
    ids: &[String],
    q: &CatalogueQuery,
    eval: DateTime<Utc>,
) -> Result<HashMap<String, OrderFacts>, QueryError> {
    let executions: Vec<(String, DateTime<Utc>, Option<DateTime<Utc>>)> = sqlx::query_as(
        "SELECT s.machine_id, s.at, e.at FROM rm_order_facts s LEFT JOIN LATERAL ( \
           SELECT min(f.at) AS at FROM rm_order_facts f WHERE f.order_id = s.order_id \
             AND f.kind IN ('completed', 'cancelled') \
             AND ($4::timestamptz IS NULL OR f.recorded_at <= $4)) e ON true \
         WHERE s.kind = 'started' AND s.machine_id = ANY($1) AND s.at < $3 \
           AND ($4::timestamptz IS NULL OR s.recorded_at <= $4) AND (e.at IS NULL OR e.at > $2)",
    )
    .bind(ids)
    .bind(q.from)
    .bind(q.to)
    .bind(q.as_of)
    .fetch_all(pool)
    .await?;
    let inspections: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT s.machine_id, sum(i.sample_size)::bigint, sum(i.defects)::bigint \
         FROM rm_order_facts i JOIN rm_order_facts s ON s.order_id = i.order_id \
           AND s.kind = 'started' \
         WHERE i.kind = 'inspected' AND s.machine_id = ANY($1) AND i.at >= $2 AND i.at < $3 \
           AND ($4::timestamptz IS NULL OR i.recorded_at <= $4) GROUP BY 1",
    )
    .bind(ids)
    .bind(q.from)
    .bind(q.to)
    .bind(q.as_of)
    .fetch_all(pool)
    .await?;
    let parts: Vec<(String, i64)> = sqlx::query_as(
        "SELECT p.machine_id, sum(p.good + p.scrap)::bigint FROM rm_parts_facts p \
         JOIN rm_order_facts s ON s.order_id = p.order_id AND s.kind = 'started' \
           AND s.machine_id = p.machine_id AND s.at <= p.at \
           AND ($4::timestamptz IS NULL OR s.recorded_at <= $4) \
         WHERE p.machine_id = ANY($1) AND p.at >= $2 AND p.at < $3 \
           AND ($4::timestamptz IS NULL OR p.recorded_at <= $4) \
           AND NOT EXISTS (SELECT 1 FROM rm_order_facts e WHERE e.order_id = p.order_id \
             AND e.kind IN ('completed', 'cancelled') AND e.at < p.at \
             AND ($4::timestamptz IS NULL OR e.recorded_at <= $4)) \
         GROUP BY 1",
    )
    .bind(ids)
    .bind(q.from)
    .bind(q.to)
    .bind(q.as_of)
    .fetch_all(pool)
    .await?;
    let sessions: Vec<(String, DateTime<Utc>, Option<DateTime<Utc>>)> = sqlx::query_as(
        "SELECT machine_id, on_at, off_at FROM rm_labour_sessions WHERE machine_id = ANY($1) \
           AND on_at < $3 AND (off_at IS NULL OR off_at > $2)",
    )
    .bind(ids)
    .bind(q.from)
    .bind(q.to)
    .fetch_all(pool)
    .await?;
    let end = us(eval);
    let mut out: HashMap<String, OrderFacts> = HashMap::new();
    for (m, s, e) in executions {
        let span = (us(s), e.map_or(end, us));
        out.entry(m).or_default().executions.push(span);
    }
    for (m, inspected, defective) in inspections {
        let f = out.entry(m).or_default();
        f.inspected = inspected;
        f.defective = defective;
    }
    for (m, n) in parts {
        out.entry(m).or_default().parts = n;
    }
    for (m, on, off) in sessions {
        let span = (us(on), off.map_or(end, us));
        out.entry(m).or_default().sessions.push(span);
    }
    Ok(out)
}

/// The ISO 22400-2 catalogue for the selected machines (or their roll-up).
#[instrument(skip(pool), err)]
pub async fn iso_kpis(pool: &PgPool, q: &CatalogueQuery) -> Result<Vec<IsoKpis>, QueryError> {
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
    let ids: Vec<String> = machines.iter().map(|m| m.0.clone()).collect();
    let mut lines: Vec<String> = machines.iter().map(|m| m.1.clone()).collect();
    lines.sort();
    lines.dedup();
    let eval = evaluation_time(q.as_of);
    let (calendar, intervals, facts, parts) = tokio::try_join!(
        Calendar::load_as_of(pool, &lines, q.as_of),
        async { Ok(fetch_intervals(pool, &ids, q.from, q.to, q.as_of).await?) },
        fetch_order_facts(pool, &ids, q, eval),
        fetch_parts(pool, &ids, q),
    )?;
    let changeovers = changeovers_from(pool, &ids, &intervals, q.from, q.to, q.as_of).await?;
    let (a, b) = (us(q.from), us(q.to.min(eval)).max(us(q.from)));
    // Each machine's intervals and changeovers, grouped once (not filtered per machine).
    let mut states_of: HashMap<&str, Vec<&IntervalRow>> = HashMap::new();
    for i in &intervals {
        states_of.entry(i.machine_id.as_str()).or_default().push(i);
    }
    let mut changeovers_of: HashMap<&str, Vec<&Changeover>> = HashMap::new();
    for c in &changeovers {
        changeovers_of
            .entry(c.machine_id.as_str())
            .or_default()
            .push(c);
    }
    let mut rows = Vec::with_capacity(machines.len());
    let mut total = Elements::default();
    for (id, line) in &machines {
        let states = states_of.remove(id.as_str()).unwrap_or_default();
        let mine = changeovers_of.remove(id.as_str()).unwrap_or_default();
        let shifts = calendar.shift_windows(line, q.from, q.to);
        let segments = scheduled_segments(shifts.as_deref(), q.from, q.to, eval);
        let breaks = break_segments(shifts.as_deref(), eval);
        let split = split_time(&states, &segments, &breaks, a, b);
        let mut e = Elements {
            calendar_us: b - a,
            operation_us: split.scheduled,
            planned_down_us: split.planned,
            production_us: split.run,
            setup_us: setup_time(&mine, &states, &segments, &breaks, (a, b)),
            ..Elements::default()
        };
        for s in &states {
            if let Some(length) = failure(s, a, b) {
                e.failures += 1;
                e.repair_us += length;
            }
        }
        if let Some(&(good, scrap, ideal)) = parts.get(id) {
            (e.good, e.scrap, e.ideal_s) = (good, scrap, ideal);
        }
        let f = facts.get(id);
        if let Some(f) = f {
            let pieces = union(f.executions.clone(), a, b);
            e.order_execution_us = pieces.iter().map(|(s, e)| e - s).sum();
            e.order_busy_us = pieces
                .iter()
                .map(|&(s, t)| {
                    split_time(&states, &segments, &breaks, s, t).run
                        + setup_time(&mine, &states, &segments, &breaks, (s, t))
                })
                .sum();
            e.order_parts = f.parts;
            (e.inspected, e.defective) = (f.inspected, f.defective);
        }
        e.labour = q.as_of.is_none().then(|| labour(f, &states, a, b));
        total.add(&e);
        rows.push(kpis(id, Some(line.clone()), 1, q, &e));
    }
    if q.rollup {
        if machines.is_empty() {
            total.labour = None;
        }
        return Ok(vec![kpis("*", q.line.clone(), machines.len(), q, &total)]);
    }
    Ok(rows)
}

/// Clocked-on time on the machine's orders in [a, b), and its part while the
/// machine ran.
fn labour(f: Option<&OrderFacts>, states: &[&IntervalRow], a: i64, b: i64) -> (i64, i64) {
    let running: Vec<(i64, i64)> = states
        .iter()
        .filter(|s| s.state == "running" && !s.effective_planned())
        .map(|s| (us(s.at), s.next_at.map_or(i64::MAX, us)))
        .collect();
    f.map_or((0, 0), |f| {
        f.sessions.iter().fold((0, 0), |(on, productive), &(s, e)| {
            let (s, e) = (s.max(a), e.min(b));
            if s >= e {
                return (on, productive);
            }
            (on + (e - s), productive + overlap(s, e, &running))
        })
    })
}

/// Good, scrap and ideal time per machine in the window, as known at `as_of`.
async fn fetch_parts(
    pool: &PgPool,
    ids: &[String],
    q: &CatalogueQuery,
) -> Result<HashMap<String, (i64, i64, f64)>, QueryError> {
    let rows: Vec<(String, i64, i64, f64)> = sqlx::query_as(
        "SELECT machine_id, sum(good)::bigint, sum(scrap)::bigint, \
           sum(ideal_cycle_time_s * (good + scrap))::float8 FROM rm_parts_facts \
         WHERE machine_id = ANY($1) AND at >= $2 AND at < $3 \
           AND ($4::timestamptz IS NULL OR recorded_at <= $4) GROUP BY 1",
    )
    .bind(ids)
    .bind(q.from)
    .bind(q.to)
    .bind(q.as_of)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(m, g, s, i)| (m, (g, s, i)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn union_of_overlapping_orders_is_counted_once() {
        assert_eq!(
            union(vec![(0, 10), (5, 20), (30, 40)], 0, 35),
            vec![(0, 20), (30, 35)]
        );
        assert_eq!(union(vec![(-5, 3)], 0, 100), vec![(0, 3)]);
    }

    #[test]
    fn hand_computed_catalogue_of_one_shift() {
        // An 8 h shift in a 24 h day: 30 min planned break, 6 h running,
        // 40 min changeover stopped, the rest other stops; 3 failures with 45 min
        // of repair; 2,000 parts at an ideal 9 s (5 h), 1,900 good; order
        // execution 7 h; 200 inspected, 6 defective; 7 h clocked on, 5.5 h while
        // running.
        let h = 3_600_000_000i64;
        let e = Elements {
            calendar_us: 24 * h,
            operation_us: 8 * h,
            planned_down_us: h / 2,
            production_us: 6 * h,
            setup_us: 40 * 60_000_000,
            order_execution_us: 7 * h,
            order_busy_us: 6 * h,
            order_parts: 1_800,
            ideal_s: 2000.0 * 9.0,
            good: 1900,
            scrap: 100,
            inspected: 200,
            defective: 6,
            failures: 3,
            repair_us: 45 * 60_000_000,
            labour: Some((7 * h, 11 * h / 2)),
        };
        let q = CatalogueQuery {
            machine_id: None,
            line: None,
            from: DateTime::UNIX_EPOCH,
            to: DateTime::UNIX_EPOCH + chrono::Duration::hours(24),
            as_of: None,
            rollup: false,
            scope: Default::default(),
        };
        let k = kpis("m1", None, 1, &q, &e);
        let close = |a: Option<f64>, b: f64| {
            assert!((a.unwrap() - b).abs() < 1e-12, "{a:?} != {b}");
        };
        assert_eq!(k.planned_busy_time_s, 27_000.0); // 7.5 h
        assert_eq!(k.actual_busy_time_s, 21_600.0 + 2_400.0);
        assert_eq!(k.actual_downtime_s, 27_000.0 - 24_000.0);
        close(k.availability, 21_600.0 / 27_000.0); // 0.8
        close(k.effectiveness, 18_000.0 / 21_600.0); // 5 h / 6 h
        close(k.quality_ratio, 0.95);
        close(k.oee, 0.8 * (5.0 / 6.0) * 0.95);
        close(k.loading, 7.5 / 24.0);
        close(k.teep, 0.8 * (5.0 / 6.0) * 0.95 * 7.5 / 24.0);
        close(k.utilisation_efficiency, 21_600.0 / 24_000.0); // 0.9
        close(k.nee, 0.9 * (5.0 / 6.0) * 0.95);
        close(k.allocation_efficiency, 24_000.0 / 27_000.0);
        close(k.allocation_ratio, 6.0 / 7.0);
        close(k.setup_ratio, 2_400.0 / 24_000.0); // 0.1
        close(k.throughput_rate_per_h, 1_800.0 / 7.0);
        close(k.scrap_ratio, 0.05);
        close(k.first_pass_yield, 0.97);
        close(k.mttf_s, 7_200.0);
        close(k.mttr_s, 900.0);
        close(k.mtbf_s, 8_100.0);
        close(k.worker_efficiency, 5.5 / 7.0);
    }

    #[test]
    fn zero_denominators_give_null() {
        let q = CatalogueQuery {
            machine_id: None,
            line: None,
            from: DateTime::UNIX_EPOCH,
            to: DateTime::UNIX_EPOCH + chrono::Duration::hours(1),
            as_of: None,
            rollup: false,
            scope: Default::default(),
        };
        let k = kpis("m1", None, 1, &q, &Elements::default());
        assert_eq!(
            (k.availability, k.oee, k.teep, k.mtbf_s),
            (None, None, None, None)
        );
        assert_eq!(k.worker_efficiency, None);
    }
}

//! Gathering a report's figures at an [`Anchor`]: the only step that reads the
//! database. Every figure comes from the query code the API serves
//! (`shopfloor_projections::query`): KPIs from `kpi_metrics` (and its `roll_up`),
//! Paretos and failures from `downtime_report`, stops and timelines from
//! `state_intervals`, all with `as_of` = the anchor's time. Nothing here reads the
//! clock, so gathering again at the same anchor gives the same [`ReportData`].
//!
//! Two things the log does not version are read as they are now: the plant's time
//! zone and shift calendar (which shape the windows of the series). A machine
//! registered after the anchor is left out (its registration is in the log).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use shopfloor_projections::query::{
    self, DowntimeQuery, DowntimeReport, Granularity, IntervalQuery, KpiQuery, KpiRow, ParetoEntry,
    StateInterval,
};
use sqlx::PgPool;

use crate::error::ReportError;
use crate::model::{
    Anchor, MachineFigures, ReportData, ReportKind, ReportRequest, Segment, Stop, Timeline, Trend,
};
use crate::order;
use crate::sections::{self, Scope, Sections};

/// How many per-machine interval queries one report runs at once.
const INTERVAL_QUERIES_AT_ONCE: usize = 4;

/// How many of the longest stops a report lists.
pub const LONGEST_STOPS: usize = 10;

/// What a report is gathered for: the request, its id and the plant's name.
#[derive(Debug, Clone, PartialEq)]
pub struct GatherInput<'a> {
    pub report_id: &'a str,
    pub plant: &'a str,
    pub request: &'a ReportRequest,
    pub anchor: &'a Anchor,
    /// 1: the figures of ADR 0041; 2: with the sections of ADR 0051.
    pub layout: i16,
}

/// The figures of a report at its anchor.
pub async fn gather(pool: &PgPool, input: &GatherInput<'_>) -> Result<ReportData, ReportError> {
    let GatherInput {
        request, anchor, ..
    } = input;
    if request.kind == ReportKind::Order {
        return gather_order(pool, input).await;
    }
    if request.from >= request.to {
        return Err(ReportError::Invalid("`from` must be before `to`".into()));
    }
    let as_of = Some(anchor.as_of);
    let kq = KpiQuery {
        machine_id: None,
        line: request.line.clone(),
        from: request.from,
        to: request.to,
        as_of,
        granularity: None,
        rollup: false,
        scope: Default::default(),
    };
    let rows = query::kpi_metrics(pool, &kq).await?;
    let known = registered_by(pool, &rows, anchor.position).await?;
    let rows: Vec<KpiRow> = rows
        .into_iter()
        .filter(|r| known.contains(&r.machine_id))
        .collect();
    let total = roll_up_one(&rows, &kq);
    let downtime = query::downtime_report(
        pool,
        &DowntimeQuery {
            machine_id: None,
            line: request.line.clone(),
            from: request.from,
            to: request.to,
            as_of,
            micro_stop_threshold_s: None,
            scope: Default::default(),
        },
    )
    .await?;
    let downtime: Vec<DowntimeReport> = downtime
        .into_iter()
        .filter(|d| known.contains(&d.machine_id))
        .collect();
    // One query per machine, a few at a time (in machine order: `buffered` keeps it).
    let (from, to) = (request.from, request.to);
    let intervals: Vec<(String, Vec<StateInterval>)> = futures::stream::iter(known.clone())
        .map(|machine_id| {
            let pool = pool.clone();
            async move {
                let q = IntervalQuery {
                    machine_id,
                    from,
                    to,
                    as_of,
                };
                let rows = query::state_intervals(&pool, &q).await?;
                Ok::<_, ReportError>((q.machine_id, rows))
            }
        })
        .buffered(INTERVAL_QUERIES_AT_ONCE)
        .try_collect()
        .await?;
    let (series, trend) = match request.kind {
        ReportKind::Shift | ReportKind::Order => (Vec::new(), None),
        ReportKind::Day | ReportKind::Week => {
            let series = series(pool, &kq, request.kind, &known).await?;
            let trend = trend(pool, &kq, &known, &total).await?;
            (series, Some(trend))
        }
    };
    let sections = if input.layout >= 2 {
        let scope = Scope {
            line: request.line.as_deref(),
            machines: &known,
            from: request.from,
            to: request.to,
            as_of: anchor.as_of,
            position: anchor.position,
        };
        Some(sections::gather(pool, &scope).await?)
    } else {
        None
    };
    let time_zone = query::plant_time_zone(pool).await?;
    Ok(assemble(
        input,
        Gathered {
            sections,
            time_zone,
            rows,
            total,
            downtime,
            intervals,
            series,
            trend,
        },
    ))
}

/// What [`gather`] read, before it is put together.
#[derive(Debug)]
struct Gathered {
    sections: Option<Sections>,
    time_zone: String,
    rows: Vec<KpiRow>,
    total: KpiRow,
    downtime: Vec<DowntimeReport>,
    intervals: Vec<(String, Vec<StateInterval>)>,
    series: Vec<KpiRow>,
    trend: Option<Trend>,
}

/// The machines of `rows` whose registration is at or before `position`, by id.
async fn registered_by(
    pool: &PgPool,
    rows: &[KpiRow],
    position: i64,
) -> Result<Vec<String>, ReportError> {
    let ids: Vec<String> = rows.iter().map(|r| r.machine_id.clone()).collect();
    let mut known: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT stream_id FROM events WHERE stream_type = 'machine' \
         AND stream_id = ANY($1) AND position <= $2",
    )
    .bind(&ids)
    .bind(position)
    .fetch_all(pool)
    .await?;
    known.sort();
    Ok(known)
}

/// The roll-up of `rows` (one row; an empty scope gives a row of zeros).
fn roll_up_one(rows: &[KpiRow], kq: &KpiQuery) -> KpiRow {
    let q = KpiQuery {
        rollup: true,
        ..kq.clone()
    };
    query::roll_up(rows.to_vec(), &q)
        .into_iter()
        .next()
        .unwrap_or_else(|| empty_row(kq))
}

fn empty_row(kq: &KpiQuery) -> KpiRow {
    KpiRow {
        machine_id: "*".into(),
        from: kq.from,
        to: kq.to,
        planned_production_time_s: 0.0,
        run_time_s: 0.0,
        downtime_minutes: 0.0,
        availability: None,
        performance: None,
        quality: None,
        oee: None,
        good_count: 0,
        scrap_count: 0,
        total_count: 0,
        production_yield: None,
        performance_exceeds_one: false,
        scrap_rate: None,
        line: kq.line.clone(),
        shift: None,
        team: None,
        machine_count: 0,
        planned_stop_time_s: 0.0,
        downtime_s: 0.0,
        unknown_time_s: 0.0,
        not_scheduled_time_s: 0.0,
        ideal_time_s: 0.0,
        as_of: kq.as_of,
    }
}

/// The scope per shift (day report) or per day (week report), rolled up.
async fn series(
    pool: &PgPool,
    kq: &KpiQuery,
    kind: ReportKind,
    known: &[String],
) -> Result<Vec<KpiRow>, ReportError> {
    let q = KpiQuery {
        granularity: Some(match kind {
            ReportKind::Week => Granularity::Day,
            _ => Granularity::Shift,
        }),
        ..kq.clone()
    };
    let rows: Vec<KpiRow> = query::kpi_metrics(pool, &q)
        .await?
        .into_iter()
        .filter(|r| known.contains(&r.machine_id))
        .collect();
    Ok(query::roll_up(rows, &KpiQuery { rollup: true, ..q }))
}

/// The scope over the period of the same length just before, and the changes.
async fn trend(
    pool: &PgPool,
    kq: &KpiQuery,
    known: &[String],
    total: &KpiRow,
) -> Result<Trend, ReportError> {
    let len = kq.to - kq.from;
    let q = KpiQuery {
        from: kq.from - len,
        to: kq.from,
        ..kq.clone()
    };
    let rows: Vec<KpiRow> = query::kpi_metrics(pool, &q)
        .await?
        .into_iter()
        .filter(|r| known.contains(&r.machine_id))
        .collect();
    let previous = roll_up_one(&rows, &q);
    Ok(trend_of(total, previous))
}

fn change(now: Option<f64>, before: Option<f64>) -> Option<f64> {
    Some(now? - before?)
}

/// The change of each figure from `previous` to `total` (pure).
pub fn trend_of(total: &KpiRow, previous: KpiRow) -> Trend {
    Trend {
        previous_from: previous.from,
        previous_to: previous.to,
        oee_change: change(total.oee, previous.oee),
        availability_change: change(total.availability, previous.availability),
        performance_change: change(total.performance, previous.performance),
        quality_change: change(total.quality, previous.quality),
        good_change: total.good_count - previous.good_count,
        scrap_change: total.scrap_count - previous.scrap_count,
        previous,
    }
}

/// Puts the gathered figures together (pure).
fn assemble(input: &GatherInput<'_>, g: Gathered) -> ReportData {
    let req = input.request;
    let by_id: BTreeMap<&str, &DowntimeReport> = g
        .downtime
        .iter()
        .map(|d| (d.machine_id.as_str(), d))
        .collect();
    let machines = g
        .rows
        .iter()
        .map(|r| {
            let d = by_id.get(r.machine_id.as_str());
            MachineFigures {
                machine_id: r.machine_id.clone(),
                line: r.line.clone(),
                kpi: r.clone(),
                stops: d.map_or(0, |d| d.stops),
                failures: d.map_or(0, |d| d.failures),
                mtbf_s: d.and_then(|d| d.mtbf_s),
                mttr_s: d.and_then(|d| d.mttr_s),
                micro_stops: d.map_or(0, |d| d.micro_stops.count),
            }
        })
        .collect();
    let end = req.to.min(input.anchor.as_of).max(req.from);
    ReportData {
        report_id: input.report_id.to_owned(),
        plant: input.plant.to_owned(),
        time_zone: g.time_zone,
        kind: req.kind,
        line: req.line.clone(),
        from: req.from,
        to: req.to,
        anchor: input.anchor.clone(),
        total: g.total,
        machines,
        pareto_by_reason: merge_paretos(g.downtime.iter().map(|d| &d.pareto_by_reason_classified)),
        pareto_by_loss: merge_paretos(g.downtime.iter().map(|d| &d.pareto_by_loss_classified)),
        longest_stops: longest_stops(&g.intervals, LONGEST_STOPS),
        timelines: g
            .intervals
            .iter()
            .map(|(id, iv)| timeline(id, iv, req.from, end))
            .collect(),
        series: g.series,
        trend: g.trend,
        sections: g.sections,
        order: None,
        corrections: None,
    }
}

/// The order report: the order's life, and the KPIs of the machines that worked it
/// over that life.
async fn gather_order(pool: &PgPool, input: &GatherInput<'_>) -> Result<ReportData, ReportError> {
    let anchor = input.anchor;
    let order_id = input
        .request
        .order_id
        .as_deref()
        .ok_or_else(|| ReportError::Invalid("an order report needs an `order_id`".into()))?;
    let (facts, from, to) =
        order::order_facts(pool, order_id, anchor.position, anchor.as_of).await?;
    let life = order::gather(pool, order_id, &facts, to, anchor.position, anchor.as_of).await?;
    let machines = sections::fold_order(facts.iter(), None).machines;
    let kq = KpiQuery {
        machine_id: None,
        line: None,
        from,
        to,
        as_of: Some(anchor.as_of),
        granularity: None,
        rollup: false,
        scope: Default::default(),
    };
    let mut rows = Vec::new();
    for m in &machines {
        let q = KpiQuery {
            machine_id: Some(m.clone()),
            ..kq.clone()
        };
        rows.extend(query::kpi_metrics(pool, &q).await?);
    }
    let known = registered_by(pool, &rows, anchor.position).await?;
    rows.retain(|r| known.contains(&r.machine_id));
    let total = roll_up_one(&rows, &kq);
    let time_zone = query::plant_time_zone(pool).await?;
    let request = ReportRequest {
        from,
        to,
        ..input.request.clone()
    };
    let mut data = assemble(
        &GatherInput {
            request: &request,
            ..input.clone()
        },
        Gathered {
            sections: None,
            time_zone,
            rows,
            total,
            downtime: Vec::new(),
            intervals: Vec::new(),
            series: Vec::new(),
            trend: None,
        },
    );
    data.order = Some(life);
    Ok(data)
}

/// The Paretos of several machines as one: stops and time summed per key, the
/// shares recomputed, largest first (ties: more stops, then key).
pub fn merge_paretos<'a>(paretos: impl Iterator<Item = &'a Vec<ParetoEntry>>) -> Vec<ParetoEntry> {
    let mut sum: BTreeMap<&str, (u64, f64)> = BTreeMap::new();
    for p in paretos {
        for e in p {
            let s = sum.entry(e.key.as_str()).or_default();
            s.0 += e.stops;
            s.1 += e.duration_s;
        }
    }
    let total: f64 = sum.values().map(|v| v.1).sum();
    let mut v: Vec<(&str, u64, f64)> = sum.into_iter().map(|(k, (n, d))| (k, n, d)).collect();
    v.sort_by(|a, b| b.2.total_cmp(&a.2).then(b.1.cmp(&a.1)).then(a.0.cmp(b.0)));
    let mut cumulative = 0.0;
    v.into_iter()
        .map(|(key, stops, d)| {
            cumulative += d;
            ParetoEntry {
                key: key.to_owned(),
                stops,
                duration_s: d,
                share: (total != 0.0).then(|| d / total),
                cumulative_share: (total != 0.0).then(|| cumulative / total),
            }
        })
        .collect()
}

/// The `n` longest stops (not running, not unknown) of all machines.
pub fn longest_stops(intervals: &[(String, Vec<StateInterval>)], n: usize) -> Vec<Stop> {
    let mut stops: Vec<Stop> = intervals
        .iter()
        .flat_map(|(_, iv)| iv.iter())
        .filter(|i| i.state != "running" && i.state != "unknown" && i.duration_s > 0.0)
        .map(|i| Stop {
            machine_id: i.machine_id.clone(),
            state: i.state.clone(),
            start: i.start,
            end: i.end,
            duration_s: i.duration_s,
            planned: i.planned,
            reason_code: i.final_reason_code.clone(),
            loss: i.classified_loss.clone().or_else(|| i.loss.clone()),
        })
        .collect();
    stops.sort_by(|a, b| {
        b.duration_s
            .total_cmp(&a.duration_s)
            .then(a.start.cmp(&b.start))
            .then(a.machine_id.cmp(&b.machine_id))
    });
    stops.truncate(n);
    stops
}

/// A machine's states clipped to [from, end).
pub fn timeline(
    machine_id: &str,
    intervals: &[StateInterval],
    from: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Timeline {
    let segments = intervals
        .iter()
        .filter_map(|i| {
            let start = i.start.max(from);
            let stop = i.end.unwrap_or(end).min(end);
            (start < stop).then(|| Segment {
                state: i.state.clone(),
                planned: i.planned,
                start,
                end: stop,
            })
        })
        .collect();
    Timeline {
        machine_id: machine_id.to_owned(),
        segments,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &str, stops: u64, d: f64) -> ParetoEntry {
        ParetoEntry {
            key: key.into(),
            stops,
            duration_s: d,
            share: None,
            cumulative_share: None,
        }
    }

    fn interval(
        machine: &str,
        state: &str,
        start_h: u32,
        end_h: Option<u32>,
        d: f64,
    ) -> StateInterval {
        let at = |h: u32| {
            format!("2026-03-01T{h:02}:00:00Z")
                .parse::<DateTime<Utc>>()
                .unwrap()
        };
        StateInterval {
            machine_id: machine.into(),
            state: state.into(),
            start: at(start_h),
            end: end_h.map(at),
            duration_s: d,
            planned: false,
            reason: None,
            reason_code: Some("r".into()),
            category: None,
            loss: None,
            classified_reason_code: None,
            classified_category: None,
            classified_loss: None,
            final_reason_code: Some("r".into()),
        }
    }

    #[test]
    fn paretos_merge_by_key_largest_first() {
        let a = vec![entry("jam", 2, 100.0), entry("setup", 1, 50.0)];
        let b = vec![entry("setup", 3, 200.0), entry("blocked", 1, 50.0)];
        let m = merge_paretos([&a, &b].into_iter());
        let keys: Vec<&str> = m.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["setup", "jam", "blocked"]);
        assert_eq!((m[0].stops, m[0].duration_s), (4, 250.0));
        assert_eq!(m[0].share, Some(250.0 / 400.0));
        assert_eq!(m[2].cumulative_share, Some(1.0));
        assert!(merge_paretos(std::iter::empty()).is_empty());
    }

    #[test]
    fn longest_stops_leave_out_running_and_unknown() {
        let iv = vec![(
            "M".to_owned(),
            vec![
                interval("M", "unknown", 5, Some(6), 3600.0),
                interval("M", "running", 6, Some(8), 7200.0),
                interval("M", "down", 8, Some(9), 3600.0),
                interval("M", "idle", 9, Some(11), 7200.0),
            ],
        )];
        let s = longest_stops(&iv, 10);
        let states: Vec<&str> = s.iter().map(|s| s.state.as_str()).collect();
        assert_eq!(states, ["idle", "down"]);
        assert_eq!(longest_stops(&iv, 1).len(), 1);
    }

    #[test]
    fn timelines_are_clipped_to_the_window() {
        let iv = vec![
            interval("M", "running", 5, Some(8), 0.0),
            interval("M", "down", 8, None, 0.0),
        ];
        let at = |h: u32| {
            format!("2026-03-01T{h:02}:00:00Z")
                .parse::<DateTime<Utc>>()
                .unwrap()
        };
        let t = timeline("M", &iv, at(6), at(10));
        assert_eq!(t.segments.len(), 2);
        assert_eq!((t.segments[0].start, t.segments[0].end), (at(6), at(8)));
        assert_eq!((t.segments[1].start, t.segments[1].end), (at(8), at(10)));
    }
}

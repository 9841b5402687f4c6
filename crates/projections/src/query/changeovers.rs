//! Changeovers (ADR 0058): setup time per changeover, per product pair and per
//! machine, computed at query time from the order and machine facts.
//!
//! A changeover of a machine opens at its first trigger:
//! - an order started on the machine whose product differs from the product of
//!   the order started on it before (by floor time); or
//! - an explicit setup: an unplanned stop whose loss in force (a later
//!   classification's, else the recorded one) is `setup_adjustment`.
//!
//! It lasts until the first good part the machine reports after it opened (a
//! parts fact with `good > 0` at a later floor time): a "marked end" is that
//! part. Triggers with the same first good part after them are one changeover
//! (nothing good came between them). Until that part it is `ongoing`, its
//! duration counted up to the evaluation time (now, or `as_of`).
//!
//! A changeover belongs to the window its first trigger falls in. Its products
//! are the one in force before it opened and the one in force when it ended.
//! `as_of` reads only facts recorded by then, as the KPIs do (ADR 0005).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use tracing::instrument;

use super::kpi::{evaluation_time, fetch_intervals, secs, select_machines, us, IntervalRow};
use crate::error::QueryError;

/// The loss of an explicit setup stop.
const SETUP_LOSS: &str = "setup_adjustment";

/// Which changeovers to report.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ChangeoverQuery {
    pub machine_id: Option<String>,
    pub line: Option<String>,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub as_of: Option<DateTime<Utc>>,
    /// The part of the equipment hierarchy (ADR 0062).
    #[serde(default)]
    pub scope: super::hierarchy::Scope,
}

/// What opened a changeover.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// An order with another product started.
    ProductChange,
    /// A stop classified as setup and adjustment, without a product change.
    SetupStop,
}

/// One changeover of one machine.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Changeover {
    pub machine_id: String,
    pub trigger: Trigger,
    /// The product in force before it opened (`null`: none known).
    pub from_product: Option<String>,
    /// The product in force when it ended (or now, while ongoing).
    pub to_product: Option<String>,
    /// The order started by it, if a product change opened it.
    pub to_order: Option<String>,
    pub start: DateTime<Utc>,
    /// The first good part's floor time; `null` while ongoing.
    pub end: Option<DateTime<Utc>>,
    /// Start to end (to the evaluation time while ongoing).
    pub duration_s: f64,
    pub ongoing: bool,
}

/// Setup time over a group of ended changeovers (a product pair or a machine).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChangeoverStats {
    pub machine_id: Option<String>,
    pub from_product: Option<String>,
    pub to_product: Option<String>,
    /// Ended changeovers.
    pub count: usize,
    pub ongoing: usize,
    pub total_s: f64,
    pub mean_s: Option<f64>,
    pub min_s: Option<f64>,
    pub max_s: Option<f64>,
    /// The last one's duration.
    pub last_s: Option<f64>,
    /// Least-squares slope of duration against changeover number, in seconds
    /// per changeover (negative: setups are getting shorter); `null` below 2.
    pub trend_s_per_changeover: Option<f64>,
}

/// The changeovers of a window with their setup-time figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChangeoverReport {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub as_of: Option<DateTime<Utc>>,
    pub changeovers: Vec<Changeover>,
    pub by_pair: Vec<ChangeoverStats>,
    pub by_machine: Vec<ChangeoverStats>,
}

/// An order's start on a machine.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub(crate) struct Start {
    pub machine_id: String,
    pub order_id: String,
    pub product_id: String,
    pub at: DateTime<Utc>,
}

/// A moment that opens a changeover, with the start it is (product changes).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Opening<'a> {
    pub at: DateTime<Utc>,
    pub start: Option<&'a Start>,
}

/// The openings of one machine, by floor time: its product changes (`starts`
/// sorted by floor time; the first has no known predecessor and opens nothing)
/// and the starts of its setup stops.
pub(crate) fn openings<'a>(starts: &'a [Start], setups: &[DateTime<Utc>]) -> Vec<Opening<'a>> {
    let mut out: Vec<Opening<'a>> = starts
        .windows(2)
        .filter(|w| w[0].product_id != w[1].product_id)
        .map(|w| Opening {
            at: w[1].at,
            start: Some(&w[1]),
        })
        .chain(setups.iter().map(|&at| Opening { at, start: None }))
        .collect();
    out.sort_by_key(|o| (o.at, o.start.is_none()));
    out
}

/// The product in force at `t` (the last start at or before it; `strict`:
/// before it).
fn product_at(starts: &[Start], t: DateTime<Utc>, strict: bool) -> Option<&Start> {
    starts
        .iter()
        .rev()
        .find(|s| if strict { s.at < t } else { s.at <= t })
}

/// Groups one machine's `openings` into changeovers: `first_good[i]` is the
/// first good part after opening `i`; openings sharing it are one changeover.
/// Pure: the plan of [`changeover_report`].
pub(crate) fn plan(
    machine_id: &str,
    starts: &[Start],
    openings: &[Opening<'_>],
    first_good: &[Option<DateTime<Utc>>],
    eval: DateTime<Utc>,
) -> Vec<Changeover> {
    let mut out: Vec<Changeover> = Vec::new();
    let mut i = 0;
    while i < openings.len() {
        let end = first_good[i];
        let mut j = i;
        while j + 1 < openings.len() && first_good[j + 1] == end {
            j += 1;
        }
        let group = &openings[i..=j];
        let start = group[0].at;
        let last_start = group.iter().rev().find_map(|o| o.start);
        let before = product_at(starts, start, group[0].start.is_some());
        let after = match end {
            Some(e) => product_at(starts, e, false),
            None => product_at(starts, eval.max(start), false),
        };
        let stop = end.unwrap_or(eval).max(start);
        out.push(Changeover {
            machine_id: machine_id.to_owned(),
            trigger: if last_start.is_some() {
                Trigger::ProductChange
            } else {
                Trigger::SetupStop
            },
            from_product: before.map(|s| s.product_id.clone()),
            to_product: after.map(|s| s.product_id.clone()),
            to_order: last_start.map(|s| s.order_id.clone()),
            start,
            end,
            duration_s: secs(us(stop) - us(start)),
            ongoing: end.is_none(),
        });
        i = j + 1;
    }
    out
}

/// Setup-time figures of `changeovers` (in start order).
pub(crate) fn stats(
    machine_id: Option<String>,
    pair: Option<(Option<String>, Option<String>)>,
    changeovers: &[&Changeover],
) -> ChangeoverStats {
    let ended: Vec<f64> = changeovers
        .iter()
        .filter(|c| !c.ongoing)
        .map(|c| c.duration_s)
        .collect();
    let n = ended.len();
    let total: f64 = ended.iter().sum();
    let (from_product, to_product) = pair.unwrap_or((None, None));
    ChangeoverStats {
        machine_id,
        from_product,
        to_product,
        count: n,
        ongoing: changeovers.len() - n,
        total_s: total,
        mean_s: (n > 0).then(|| total / n as f64),
        min_s: ended.iter().copied().reduce(f64::min),
        max_s: ended.iter().copied().reduce(f64::max),
        last_s: ended.last().copied(),
        trend_s_per_changeover: slope(&ended),
    }
}

/// Least-squares slope of `ys` against 0, 1, 2, …; `None` below two points.
fn slope(ys: &[f64]) -> Option<f64> {
    let n = ys.len() as f64;
    if ys.len() < 2 {
        return None;
    }
    let mean_x = (n - 1.0) / 2.0;
    let mean_y = ys.iter().sum::<f64>() / n;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for (i, y) in ys.iter().enumerate() {
        let dx = i as f64 - mean_x;
        sxy += dx * (y - mean_y);
        sxx += dx * dx;
    }
    Some(sxy / sxx)
}

/// The starts of `machines` in [from, to), with the two before `from` (the
/// products in force when the window opens), as known at `as_of`.
async fn fetch_starts(
    pool: &PgPool,
    machines: &[String],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    as_of: Option<DateTime<Utc>>,
) -> Result<Vec<Start>, sqlx::Error> {
    sqlx::query_as(
        "WITH ids AS (SELECT unnest($1::text[]) AS machine_id) \
         SELECT s.machine_id, s.order_id, o.product_id, s.at FROM ids CROSS JOIN LATERAL ( \
           (SELECT f.machine_id, f.order_id, f.at, f.position FROM rm_order_facts f \
            WHERE f.kind = 'started' AND f.machine_id = ids.machine_id AND f.at < $2 \
              AND ($4::timestamptz IS NULL OR f.recorded_at <= $4) \
            ORDER BY f.at DESC, f.position DESC LIMIT 2) \
           UNION ALL \
           (SELECT f.machine_id, f.order_id, f.at, f.position FROM rm_order_facts f \
            WHERE f.kind = 'started' AND f.machine_id = ids.machine_id AND f.at >= $2 \
              AND f.at < $3 AND ($4::timestamptz IS NULL OR f.recorded_at <= $4)) \
         ) s JOIN rm_orders o ON o.order_id = s.order_id \
         ORDER BY s.machine_id, s.at, s.position",
    )
    .bind(machines)
    .bind(from)
    .bind(to)
    .bind(as_of)
    .fetch_all(pool)
    .await
}

/// For each (machine, moment): the floor time of the machine's first good part
/// after it and before `eval`, as known at `as_of`.
async fn fetch_first_good(
    pool: &PgPool,
    at: &[(String, DateTime<Utc>)],
    eval: DateTime<Utc>,
    as_of: Option<DateTime<Utc>>,
) -> Result<Vec<Option<DateTime<Utc>>>, sqlx::Error> {
    let machines: Vec<&str> = at.iter().map(|a| a.0.as_str()).collect();
    let times: Vec<DateTime<Utc>> = at.iter().map(|a| a.1).collect();
    let rows: Vec<(i64, Option<DateTime<Utc>>)> = sqlx::query_as(
        "SELECT x.i, (SELECT p.at FROM rm_parts_facts p WHERE p.machine_id = x.m \
             AND p.at > x.t AND p.at <= $3 AND p.good > 0 \
             AND ($4::timestamptz IS NULL OR p.recorded_at <= $4) \
           ORDER BY p.at LIMIT 1) \
         FROM unnest($1::text[], $2::timestamptz[]) WITH ORDINALITY AS x(m, t, i) ORDER BY x.i",
    )
    .bind(&machines)
    .bind(&times)
    .bind(eval)
    .bind(as_of)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|r| r.1).collect())
}

/// Whether a state interval is an explicit setup: an unplanned stop whose loss
/// in force is setup and adjustment.
fn is_setup(s: &IntervalRow) -> bool {
    s.state != "running" && !s.effective_planned() && s.effective_loss() == Some(SETUP_LOSS)
}

/// The changeovers of `machines` opening in [from, to), by machine and start;
/// `intervals` are their state intervals over the window ([`fetch_intervals`]).
pub(crate) async fn changeovers_from(
    pool: &PgPool,
    machines: &[String],
    intervals: &[IntervalRow],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    as_of: Option<DateTime<Utc>>,
) -> Result<Vec<Changeover>, QueryError> {
    let eval = evaluation_time(as_of);
    let starts = fetch_starts(pool, machines, from, to, as_of).await?;
    let mut per_machine: BTreeMap<&str, (Vec<Start>, Vec<DateTime<Utc>>)> = BTreeMap::new();
    let selected: std::collections::HashSet<&str> = machines.iter().map(String::as_str).collect();
    for s in starts {
        if let Some(m) = selected.get(s.machine_id.as_str()) {
            per_machine.entry(m).or_default().0.push(s);
        }
    }
    for i in intervals.iter().filter(|i| is_setup(i)) {
        per_machine
            .entry(i.machine_id.as_str())
            .or_default()
            .1
            .push(i.at);
    }
    let mut asks = Vec::new();
    let mut plans = Vec::new();
    for (machine, (starts, setups)) in &per_machine {
        let opens = openings(starts, setups);
        asks.extend(opens.iter().map(|o| (machine.to_string(), o.at)));
        plans.push((*machine, starts, opens));
    }
    let first_good = fetch_first_good(pool, &asks, eval, as_of).await?;
    let mut out = Vec::new();
    let mut offset = 0;
    for (machine, starts, opens) in plans {
        let goods = &first_good[offset..offset + opens.len()];
        offset += opens.len();
        out.extend(
            plan(machine, starts, &opens, goods, eval)
                .into_iter()
                .filter(|c| c.start >= from && c.start < to),
        );
    }
    Ok(out)
}

/// Changeovers and their setup-time figures for the selected machines.
#[instrument(skip(pool), err)]
pub async fn changeover_report(
    pool: &PgPool,
    q: &ChangeoverQuery,
) -> Result<ChangeoverReport, QueryError> {
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
    let ids: Vec<String> = machines.into_iter().map(|m| m.0).collect();
    let intervals = fetch_intervals(pool, &ids, q.from, q.to, q.as_of).await?;
    let changeovers = changeovers_from(pool, &ids, &intervals, q.from, q.to, q.as_of).await?;
    let mut sorted: Vec<&Changeover> = changeovers.iter().collect();
    sorted.sort_by_key(|c| c.start);
    type Pair = (Option<String>, Option<String>);
    let mut pairs: BTreeMap<Pair, Vec<&Changeover>> = BTreeMap::new();
    let mut by_machine: BTreeMap<&str, Vec<&Changeover>> = BTreeMap::new();
    for c in &sorted {
        pairs
            .entry((c.from_product.clone(), c.to_product.clone()))
            .or_default()
            .push(c);
        by_machine.entry(c.machine_id.as_str()).or_default().push(c);
    }
    Ok(ChangeoverReport {
        from: q.from,
        to: q.to,
        as_of: q.as_of,
        by_pair: pairs
            .into_iter()
            .map(|(pair, cs)| stats(None, Some(pair), &cs))
            .collect(),
        by_machine: by_machine
            .into_iter()
            .map(|(m, cs)| stats(Some(m.to_owned()), None, &cs))
            .collect(),
        changeovers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(min: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 2, 6, 0, 0).unwrap() + chrono::Duration::minutes(min)
    }

    fn start(order: &str, product: &str, min: i64) -> Start {
        Start {
            machine_id: "m1".into(),
            order_id: order.into(),
            product_id: product.into(),
            at: t(min),
        }
    }

    #[test]
    fn a_product_change_lasts_until_the_first_good_part() {
        let starts = [start("o1", "A", 0), start("o2", "B", 60)];
        let opens = openings(&starts, &[]);
        assert_eq!(opens.len(), 1, "the first start has no predecessor");
        let plan = plan("m1", &starts, &opens, &[Some(t(85))], t(120));
        assert_eq!(plan.len(), 1);
        let c = &plan[0];
        assert_eq!((c.start, c.end), (t(60), Some(t(85))));
        assert_eq!(c.duration_s, 25.0 * 60.0);
        assert_eq!(c.from_product.as_deref(), Some("A"));
        assert_eq!(c.to_product.as_deref(), Some("B"));
        assert_eq!(c.to_order.as_deref(), Some("o2"));
        assert_eq!(c.trigger, Trigger::ProductChange);
    }

    #[test]
    fn a_setup_stop_before_the_new_order_opens_the_same_changeover() {
        let starts = [start("o1", "A", 0), start("o2", "B", 60)];
        // Setup at 0:50, the order at 1:00, the first good part at 1:20: one
        // changeover of 30 min, A → B.
        let opens = openings(&starts, &[t(50)]);
        let plan = plan("m1", &starts, &opens, &[Some(t(80)), Some(t(80))], t(120));
        assert_eq!(plan.len(), 1);
        assert_eq!((plan[0].start, plan[0].end), (t(50), Some(t(80))));
        assert_eq!(plan[0].duration_s, 1800.0);
        assert_eq!(plan[0].from_product.as_deref(), Some("A"));
        assert_eq!(plan[0].to_product.as_deref(), Some("B"));
        assert_eq!(plan[0].trigger, Trigger::ProductChange);
    }

    #[test]
    fn the_same_product_again_is_no_changeover_but_an_adjustment_is() {
        let starts = [start("o1", "A", 0), start("o2", "A", 60)];
        assert!(openings(&starts, &[]).is_empty());
        let opens = openings(&starts, &[t(90)]);
        let plan = plan("m1", &starts, &opens, &[None], t(100));
        assert_eq!(plan.len(), 1);
        let c = &plan[0];
        assert!(c.ongoing, "no good part yet");
        assert_eq!(c.duration_s, 600.0, "up to the evaluation time");
        assert_eq!(c.trigger, Trigger::SetupStop);
        assert_eq!(
            (c.from_product.as_deref(), c.to_product.as_deref()),
            (Some("A"), Some("A"))
        );
    }

    #[test]
    fn stats_and_trend_of_ended_changeovers() {
        let mk = |d: f64, ongoing: bool| Changeover {
            machine_id: "m1".into(),
            trigger: Trigger::ProductChange,
            from_product: Some("A".into()),
            to_product: Some("B".into()),
            to_order: None,
            start: t(0),
            end: (!ongoing).then(|| t(1)),
            duration_s: d,
            ongoing,
        };
        let cs = [
            mk(600.0, false),
            mk(480.0, false),
            mk(420.0, false),
            mk(5.0, true),
        ];
        let refs: Vec<&Changeover> = cs.iter().collect();
        let s = stats(Some("m1".into()), None, &refs);
        assert_eq!((s.count, s.ongoing), (3, 1));
        assert_eq!(s.total_s, 1500.0);
        assert_eq!(s.mean_s, Some(500.0));
        assert_eq!(
            (s.min_s, s.max_s, s.last_s),
            (Some(420.0), Some(600.0), Some(420.0))
        );
        // Slope of 600, 480, 420 over 0, 1, 2: Σdx·dy / Σdx² = (-1·100 + 1·-80) / 2.
        assert_eq!(s.trend_s_per_changeover, Some(-90.0));
    }
}
